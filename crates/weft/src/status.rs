//! `weft status`: asks the running daemon over its control socket and shows
//! its peers as a table (or the raw status object with `--json`).
//!
//! [`NodeStatus`] and [`PeerInfo`] are the status object of the control
//! protocol (see `daemon::control`): the daemon fills them in, this module
//! and the testbed read them back with [`request_status`]. The client is
//! blocking std code with timeouts: it never waits forever on a stuck daemon;
//! [`request`] and [`ControlArgs`] serve every command that talks to the
//! daemon (`weft routes`, `weft route`, `weft trace` too). `--qos` appends
//! the QoS table of `weft qos` (see `qos.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::config::locate;
use crate::firewall::FirewallInfo;
use crate::group::MulticastInfo;

/// How long the client waits for the daemon to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest response line the client accepts.
const MAX_RESPONSE: u64 = 16 << 20;

/// Which running node to talk to: every command that asks the daemon
/// takes these. Without either, the node configured in `$WEFT_CONFIG` or
/// else `/etc/weft/weft.toml` (see [`crate::config::locate`]).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ControlArgs {
    /// The node's config file, to find its control socket [default:
    /// $WEFT_CONFIG, else /etc/weft/weft.toml].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The control socket, instead of the one the config names.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

impl ControlArgs {
    /// The control socket: `--socket`, or the one the config names.
    pub fn socket(&self) -> anyhow::Result<PathBuf> {
        match &self.socket {
            Some(socket) => Ok(socket.clone()),
            None => Ok(locate(self.config.as_deref()).load()?.control.socket),
        }
    }
}

/// Arguments of `weft status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show the QoS classes too (as `weft qos` does); with `--json`, the
    /// status object gains a `qos` member.
    #[arg(long)]
    pub qos: bool,
    /// Show every firewall rule with the packets it decided (the JSON
    /// always has them, under `firewall`).
    #[arg(long)]
    pub firewall: bool,
}

/// The status object of a running node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's certificate name.
    pub name: String,
    /// Its node id (hex).
    pub node_id: String,
    /// Its overlay IPv6 address.
    pub overlay_ipv6: Ipv6Addr,
    /// Its overlay IPv4 address with prefix (`198.19.0.1/16`), if any.
    pub overlay_ipv4: Option<String>,
    /// The UDP address it listens on.
    pub listen: SocketAddr,
    /// The TUN interface's name.
    pub tun: String,
    /// The TUN interface's MTU.
    pub mtu: u16,
    /// Its peers, sorted by name.
    pub peers: Vec<PeerInfo>,
    /// Node-wide counters by name.
    pub stats: BTreeMap<String, u64>,
    /// The node's part in the DHT (absent from daemons before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dht: Option<DhtInfo>,
    /// The node's multicast groups (absent from daemons before them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast: Option<MulticastInfo>,
    /// The node's firewall (absent from daemons before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallInfo>,
    /// When the node's certificate expires, unix seconds (absent from
    /// daemons before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<u64>,
    /// The version of the revocation list the node holds (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_version: Option<u64>,
    /// Names and overlay IPv4 addresses two node ids claim (the CA signed
    /// them twice), with the node that holds each (docs/PROTOCOL.md §9.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictInfo>,
    /// The endpoint candidates the node advertises to its peers, most
    /// preferred first (absent from daemons before NAT traversal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateInfo>,
}

/// One conflicting claim in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictInfo {
    /// `name` or `ipv4`.
    pub kind: String,
    /// The contested name or address.
    pub value: String,
    /// The node id (hex) that holds it.
    pub winner: String,
    /// The node id (hex) that claims it too and does not get it.
    pub loser: String,
}

impl ConflictInfo {
    /// The status form of a core conflict.
    pub fn from_core(conflict: &weft_core::ClaimConflict) -> Self {
        let (kind, value) = match &conflict.claim {
            weft_core::Claim::Name(name) => ("name", name.clone()),
            weft_core::Claim::Ipv4(addr) => ("ipv4", addr.to_string()),
        };
        Self {
            kind: kind.to_owned(),
            value,
            winner: conflict.winner.to_string(),
            loser: conflict.loser.to_string(),
        }
    }
}

/// The `dht` object of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DhtInfo {
    /// Contacts in the routing table.
    pub contacts: usize,
    /// Records held for other nodes.
    pub stored_records: usize,
    /// Neighbours picked from the DHT (names, or short ids), beyond
    /// configured peers.
    #[serde(default)]
    pub neighbours: Vec<String>,
    /// Lookups started.
    pub lookups: u64,
    /// Lookups that found their record.
    pub lookups_ok: u64,
    /// Lookups that failed.
    pub lookups_failed: u64,
    /// Queries sent.
    pub queries: u64,
    /// Queries that timed out.
    pub query_timeouts: u64,
    /// DHT datagrams received.
    pub rx: u64,
    /// DHT datagrams sent.
    pub tx: u64,
    /// Datagrams refused (bad certificate or signature, unsolicited).
    pub rejected: u64,
    /// Undecodable datagrams.
    pub malformed: u64,
}

/// One peer in [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its certificate name (or configured name).
    pub name: Option<String>,
    /// Its node id (hex), once known.
    pub node_id: Option<String>,
    /// Its overlay IPv6 address, once known.
    pub overlay_ipv6: Option<Ipv6Addr>,
    /// Its overlay IPv4 address, if its certificate has one.
    pub overlay_ipv4: Option<Ipv4Addr>,
    /// Where it is reached.
    pub endpoint: Option<SocketAddr>,
    /// `established`, `handshaking` or `awaiting_peer`.
    pub state: String,
    /// Smoothed round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Payload bytes received from it.
    pub bytes_in: u64,
    /// Payload bytes sent to it.
    pub bytes_out: u64,
    /// Data packets received from it.
    pub packets_in: u64,
    /// Data packets sent to it.
    pub packets_out: u64,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs: Option<f64>,
    /// Completed handshakes with it.
    pub handshakes: u64,
    /// Health of the direct link: `up`, `down` or `unknown`.
    #[serde(default = "unknown")]
    pub link: String,
    /// Loss rate (0 to 1) of the direct link.
    #[serde(default)]
    pub loss: f64,
    /// Intermediate nodes that latency-sensitive traffic to it goes
    /// through; empty when it goes direct.
    #[serde(default)]
    pub via: Vec<String>,
    /// Whether it is a configured peer (`[[peers]]`), whose session the
    /// node keeps up.
    #[serde(default)]
    pub configured: bool,
    /// When the certificate of its session expires, unix seconds (once
    /// known; a renewed one shows after the next handshake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<u64>,
    /// How packets to it travel: `direct`, `direct-lan` (to an address in
    /// one of this node's subnets), `punched` (a direct path found by
    /// hole punching), `relayed` (through `via`) or `none`.
    #[serde(default = "unknown")]
    pub path: String,
    /// The candidates tried in the last attempt to punch a direct path.
    #[serde(default)]
    pub candidates_tried: Vec<CandidateInfo>,
}

/// An endpoint candidate: this node's own, or one of a peer's that this
/// node tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateInfo {
    /// The address and port.
    pub endpoint: SocketAddr,
    /// `local` (an interface's address) or `reflexive` (as others see it).
    pub kind: String,
    /// Pings sent to it in the last attempt (own candidates: 0).
    #[serde(default)]
    pub pings: u32,
    /// Whether it answered.
    #[serde(default)]
    pub answered: bool,
}

impl CandidateInfo {
    /// The wire kind's name.
    pub fn kind_name(kind: weft_core::wire::CandidateKind) -> &'static str {
        match kind {
            weft_core::wire::CandidateKind::Local => "local",
            weft_core::wire::CandidateKind::Reflexive => "reflexive",
        }
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

/// Runs `weft status`.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let socket = args.target.socket()?;
    if args.json {
        let response = request(&socket, &serde_json::json!({ "command": "status" }))?;
        let mut status = response
            .get("status")
            .cloned()
            .context("the daemon's answer has no status")?;
        if args.qos
            && let Some(object) = status.as_object_mut()
        {
            let qos = crate::qos::request_qos(&socket)?;
            object.insert("qos".to_owned(), serde_json::to_value(qos)?);
        }
        emit(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
    } else {
        let status = request_status(&socket)?;
        let mut text = render_table(&status);
        if args.firewall
            && let Some(firewall) = &status.firewall
        {
            text.push('\n');
            text.push_str(&crate::firewall::render_rules(firewall));
        }
        if args.qos {
            text.push('\n');
            text.push_str(&crate::qos::render_table(&crate::qos::request_qos(
                &socket,
            )?));
        }
        emit(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a command's output to stdout. A closed pipe (`weft routes |
/// head`) ends the output quietly instead of panicking as `print!` would.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// Asks the daemon listening on `socket` for its status.
pub fn request_status(socket: &Path) -> anyhow::Result<NodeStatus> {
    let response = request(socket, &serde_json::json!({ "command": "status" }))?;
    let status = response
        .get("status")
        .cloned()
        .context("the daemon's answer has no status")?;
    serde_json::from_value(status).context("the daemon's status is not in the expected form")
}

/// Sends one request to the daemon's control socket and returns its answer
/// (the whole response object, `ok` is true). A `{"ok":false}` answer
/// becomes an error carrying the daemon's message.
pub fn request(socket: &Path, request: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let response = request_raw(socket, request, TIMEOUT)?;
    if response.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
        let error = response
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no reason given");
        bail!("the daemon refused: {error}");
    }
    Ok(response)
}

/// Sends one request and returns the daemon's whole answer, `{"ok":false}`
/// included, waiting at most `timeout` for each read and write.
pub fn request_raw(
    socket: &Path,
    request: &serde_json::Value,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => bail!(connect_error(socket, &e)),
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .with_context(|| format!("cannot send to the daemon at {}", socket.display()))?;
    let mut answer = String::new();
    BufReader::new(std::io::Read::take(stream, MAX_RESPONSE))
        .read_line(&mut answer)
        .with_context(|| format!("no answer from the daemon at {}", socket.display()))?;
    if answer.trim().is_empty() {
        bail!(
            "the daemon at {} closed the connection without answering",
            socket.display()
        );
    }
    serde_json::from_str(&answer).context("the daemon's answer is not JSON")
}

/// What a failed connection to the control socket means, in the
/// operator's terms.
fn connect_error(socket: &Path, error: &std::io::Error) -> String {
    let socket = socket.display();
    match error.kind() {
        std::io::ErrorKind::NotFound => {
            format!("is the daemon running? no control socket at {socket} ({error})")
        }
        // The file is there but nobody listens: a daemon that was killed
        // (or crashed) left it behind.
        std::io::ErrorKind::ConnectionRefused => format!(
            "the control socket {socket} is stale: the daemon is not running (it left the socket behind when it stopped); start it with `weft up` or `systemctl start weft`"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot connect to the control socket {socket}: permission denied ({error}); it is open to root and to the user the daemon runs as only: use sudo"
        ),
        _ => format!("cannot connect to the control socket {socket}: {error}"),
    }
}

/// The status as the text `weft status` prints: a line about the node,
/// then one row per peer.
pub fn render_table(status: &NodeStatus) -> String {
    let mut out = format!(
        "node {}  id {}  overlay {}{}  listen {}  tun {} (mtu {})\n",
        status.name,
        status.node_id.get(..16).unwrap_or(&status.node_id),
        status.overlay_ipv6,
        status
            .overlay_ipv4
            .as_ref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        status.listen,
        status.tun,
        status.mtu
    );
    if let Some(dht) = &status.dht {
        out.push_str(&format!(
            "dht {} contacts  {} records held  lookups {} ok, {} failed  {} picked neighbours\n",
            dht.contacts,
            dht.stored_records,
            dht.lookups_ok,
            dht.lookups_failed,
            dht.neighbours.len()
        ));
    }
    if let Some(multicast) = &status.multicast
        && (multicast.groups > 0 || !multicast.joined.is_empty())
    {
        let joined: Vec<String> = multicast.joined.iter().map(ToString::to_string).collect();
        out.push_str(&format!(
            "multicast joined {}  {} groups with members\n",
            if joined.is_empty() {
                "none".to_owned()
            } else {
                joined.join(", ")
            },
            multicast.groups
        ));
    }
    if let Some(firewall) = &status.firewall
        && firewall.enabled
    {
        out.push_str(&crate::firewall::render_line(firewall));
    }
    if let Some(version) = status.revocation_version {
        out.push_str(&format!("revocation list version {version}\n"));
    }
    if !status.candidates.is_empty() {
        let list: Vec<String> = status
            .candidates
            .iter()
            .map(|c| format!("{} {}", c.kind, c.endpoint))
            .collect();
        out.push_str(&format!("candidates {}\n", list.join(", ")));
    }
    for c in &status.conflicts {
        out.push_str(&format!(
            "CONFLICT {} {} claimed by two nodes: {} holds it, {} does not (the CA signed it twice; revoke one)\n",
            c.kind,
            c.value,
            c.winner.get(..16).unwrap_or(&c.winner),
            c.loser.get(..16).unwrap_or(&c.loser)
        ));
    }
    if let Some(not_after) = status.certificate_not_after
        && let Ok(now) = crate::pki::unix_now()
        && not_after < now + weft_core::CERTIFICATE_WARNING_MAX.as_secs()
    {
        out.push_str(&if not_after <= now {
            format!(
                "certificate EXPIRED at {}: renew it (weft ca renew) and reload the node (weft reload)\n",
                crate::cert::utc(not_after)
            )
        } else {
            format!(
                "certificate expires in {} ({}): renew it (weft ca renew) and reload the node (weft reload)\n",
                crate::cert::human_duration(not_after - now),
                crate::cert::utc(not_after)
            )
        });
    }
    if status.peers.is_empty() {
        out.push_str("no peers\n");
        return out;
    }
    let header = [
        "NAME",
        "OVERLAY",
        "ENDPOINT",
        "STATE",
        "LINK",
        "PATH",
        "RTT",
        "IN",
        "OUT",
        "LAST HANDSHAKE",
    ]
    .map(String::from);
    let dash = || "-".to_owned();
    let rows: Vec<[String; 10]> = status
        .peers
        .iter()
        .map(|p| {
            let overlay = match (p.overlay_ipv6, p.overlay_ipv4) {
                (Some(v6), Some(v4)) => format!("{v6} {v4}"),
                (Some(v6), None) => v6.to_string(),
                (None, Some(v4)) => v4.to_string(),
                (None, None) => dash(),
            };
            [
                p.name.clone().unwrap_or_else(dash),
                overlay,
                p.endpoint.map(|e| e.to_string()).unwrap_or_else(dash),
                p.state.clone(),
                if p.loss > 0.0 {
                    format!("{} ({} loss)", p.link, format_percent(p.loss))
                } else {
                    p.link.clone()
                },
                path_text(p),
                p.rtt_ms.map(format_ms).unwrap_or_else(dash),
                human_bytes(p.bytes_in),
                human_bytes(p.bytes_out),
                p.last_handshake_secs
                    .map(|s| format!("{} ago", format_secs(s)))
                    .unwrap_or_else(dash),
            ]
        })
        .collect();
    out.push_str(&render_columns(&header, &rows));
    out
}

/// The PATH column: how packets to the peer travel, and for a relayed
/// peer the candidates that were tried.
fn path_text(p: &PeerInfo) -> String {
    let mut text = match p.path.as_str() {
        "relayed" => format!("via {}", p.via.join(", ")),
        "direct-lan" => "direct (LAN)".to_owned(),
        "punched" => "direct (punched)".to_owned(),
        "none" => "-".to_owned(),
        // An older daemon says nothing of the path kind.
        _ if !p.via.is_empty() => format!("via {}", p.via.join(", ")),
        _ => "direct".to_owned(),
    };
    if p.path == "relayed" && !p.candidates_tried.is_empty() {
        let tried: Vec<String> = p
            .candidates_tried
            .iter()
            .map(|c| c.endpoint.to_string())
            .collect();
        text.push_str(&format!(" (tried {})", tried.join(" ")));
    }
    text
}

/// Left-aligned columns two spaces apart, a header row first, no trailing
/// spaces.
pub(crate) fn render_columns<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Milliseconds: `0.42 ms`, `12 ms`.
pub(crate) fn format_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A rate from 0 to 1 in percent: `0%`, `0.05%`, `30.0%`.
pub(crate) fn format_percent(rate: f64) -> String {
    let percent = rate * 100.0;
    if percent <= 0.0 {
        "0%".to_owned()
    } else if percent < 1.0 {
        format!("{percent:.2}%")
    } else {
        format!("{percent:.1}%")
    }
}

/// A duration in seconds, short: `5s`, `1m15s`, `2h03m`.
pub(crate) fn format_secs(secs: f64) -> String {
    let whole = secs as u64;
    match whole {
        0..60 => format!("{secs:.0}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NodeStatus {
        NodeStatus {
            name: "a".into(),
            node_id: "00".repeat(32),
            overlay_ipv6: "fd77:6566::1".parse().unwrap(),
            overlay_ipv4: Some("198.19.0.1/16".into()),
            listen: "0.0.0.0:4800".parse().unwrap(),
            tun: "weft0".into(),
            mtu: 1380,
            peers: vec![PeerInfo {
                name: Some("b".into()),
                node_id: Some("11".repeat(32)),
                overlay_ipv6: Some("fd77:6566::2".parse().unwrap()),
                overlay_ipv4: Some("198.19.0.2".parse().unwrap()),
                endpoint: Some("198.18.0.2:4800".parse().unwrap()),
                state: "established".into(),
                rtt_ms: Some(0.42),
                bytes_in: 1536,
                bytes_out: 12 << 20,
                packets_in: 3,
                packets_out: 4,
                last_handshake_secs: Some(75.0),
                handshakes: 1,
                link: "up".into(),
                loss: 0.25,
                via: vec!["c".into()],
                configured: true,
                certificate_not_after: None,
                path: "relayed".into(),
                candidates_tried: vec![CandidateInfo {
                    endpoint: "198.18.0.200:4800".parse().unwrap(),
                    kind: "reflexive".into(),
                    pings: 8,
                    answered: false,
                }],
            }],
            candidates: Vec::new(),
            stats: BTreeMap::new(),
            dht: None,
            multicast: None,
            firewall: None,
            certificate_not_after: None,
            revocation_version: None,
            conflicts: Vec::new(),
        }
    }

    #[test]
    fn conflicting_claims_are_shown_and_round_trip() {
        let mut status = status();
        assert!(!render_table(&status).contains("CONFLICT"));
        status.conflicts.push(ConflictInfo {
            kind: "name".into(),
            value: "c".into(),
            winner: "22".repeat(32),
            loser: "33".repeat(32),
        });
        let table = render_table(&status);
        assert!(
            table.contains("CONFLICT name c claimed by two nodes: 2222222222222222 holds it, 3333333333333333 does not"),
            "{table}"
        );
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<NodeStatus>(&json).unwrap(), status);
    }

    #[test]
    fn the_path_column_names_the_kind_and_the_candidates_a_relayed_peer_tried() {
        let mut status = status();
        let table = render_table(&status);
        assert!(table.contains("via c (tried 198.18.0.200:4800)"), "{table}");
        for (path, shown) in [
            ("punched", "direct (punched)"),
            ("direct-lan", "direct (LAN)"),
            ("direct", "direct"),
        ] {
            status.peers[0].path = path.into();
            status.peers[0].via.clear();
            let table = render_table(&status);
            assert!(table.contains(shown), "{path}: {table}");
            assert!(!table.contains("tried"), "{path}: {table}");
        }
        status.candidates = vec![CandidateInfo {
            endpoint: "198.18.1.2:4800".parse().unwrap(),
            kind: "local".into(),
            pings: 0,
            answered: false,
        }];
        assert!(render_table(&status).contains("candidates local 198.18.1.2:4800\n"));
    }

    #[test]
    fn peers_from_an_older_daemon_have_an_unknown_path_shown_from_via() {
        let mut json = serde_json::to_value(status()).unwrap();
        let peer = json["peers"][0].as_object_mut().unwrap();
        peer.remove("path");
        peer.remove("candidates_tried");
        let status: NodeStatus = serde_json::from_value(json).unwrap();
        assert_eq!(status.peers[0].path, "unknown");
        assert!(status.peers[0].candidates_tried.is_empty());
        assert!(render_table(&status).contains("via c"));
    }

    #[test]
    fn table_has_header_and_a_row_per_peer() {
        let table = render_table(&status());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].starts_with("node a  id 0000000000000000  overlay fd77:6566::1 198.19.0.1/16  listen 0.0.0.0:4800"),
            "{table}"
        );
        assert!(lines[1].starts_with("NAME"), "{table}");
        for cell in [
            "b",
            "198.19.0.2",
            "198.18.0.2:4800",
            "established",
            "up (25.0% loss)",
            "via c",
            "0.42 ms",
            "1.5 KiB",
            "12.0 MiB",
            "1m15s ago",
        ] {
            assert!(lines[2].contains(cell), "{cell} missing: {table}");
        }
    }

    #[test]
    fn the_revocation_list_held_is_shown() {
        let mut status = status();
        assert!(!render_table(&status).contains("revocation"));
        status.revocation_version = Some(4);
        assert!(render_table(&status).contains("revocation list version 4"));
    }

    #[test]
    fn a_certificate_close_to_expiry_is_announced() {
        let now = crate::pki::unix_now().unwrap();
        let mut status = status();
        status.certificate_not_after = Some(now + 30 * 86_400);
        assert!(!render_table(&status).contains("certificate"));
        status.certificate_not_after = Some(now + 3 * 86_400 + 60);
        let table = render_table(&status);
        assert!(table.contains("certificate expires in 3 days ("), "{table}");
        status.certificate_not_after = Some(now - 10);
        assert!(render_table(&status).contains("certificate EXPIRED at"));
    }

    #[test]
    fn dht_line_follows_the_node_line() {
        let mut status = status();
        status.dht = Some(DhtInfo {
            contacts: 7,
            stored_records: 3,
            lookups_ok: 5,
            lookups_failed: 1,
            neighbours: vec!["b".into()],
            ..DhtInfo::default()
        });
        let table = render_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1], "dht 7 contacts  3 records held  lookups 5 ok, 1 failed  1 picked neighbours",
            "{table}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["dht"]["contacts"], 7);
        assert_eq!(serde_json::from_value::<NodeStatus>(json).unwrap(), status);
    }

    #[test]
    fn multicast_line_shows_joined_groups_when_there_are_any() {
        let mut status = status();
        status.multicast = Some(MulticastInfo {
            joined: vec!["239.1.2.3".parse().unwrap(), "ff0e::1".parse().unwrap()],
            groups: 3,
            fanout: 8,
        });
        let table = render_table(&status);
        assert_eq!(
            table.lines().nth(1),
            Some("multicast joined 239.1.2.3, ff0e::1  3 groups with members"),
            "{table}"
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["multicast"]["joined"][0], "239.1.2.3");
        assert_eq!(json["multicast"]["fanout"], 8);
        assert_eq!(serde_json::from_value::<NodeStatus>(json).unwrap(), status);
        status.multicast = Some(MulticastInfo::default());
        assert!(!render_table(&status).contains("multicast"));
    }

    #[test]
    fn status_round_trips_through_json() {
        let json = serde_json::to_value(status()).unwrap();
        assert_eq!(json["peers"][0]["state"], "established");
        assert_eq!(
            serde_json::from_value::<NodeStatus>(json).unwrap(),
            status()
        );
    }

    #[test]
    fn peers_from_an_older_daemon_default_the_link_fields() {
        let mut json = serde_json::to_value(status()).unwrap();
        for field in ["link", "loss", "via"] {
            json["peers"][0].as_object_mut().unwrap().remove(field);
        }
        let peer = &serde_json::from_value::<NodeStatus>(json).unwrap().peers[0];
        assert_eq!(
            (peer.link.as_str(), peer.loss, peer.via.len()),
            ("unknown", 0.0, 0)
        );
    }

    #[test]
    fn missing_socket_asks_whether_the_daemon_runs() {
        let error = request_status(Path::new("/nonexistent/weft.sock"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("is the daemon running? no control socket at /nonexistent/weft.sock"),
            "{error}"
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 + 1), "10.0 MiB");
    }
}
