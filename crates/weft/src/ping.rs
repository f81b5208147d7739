//! `weft ping`: ICMP echo over the overlay, without the `ping` binary.
//!
//! Sends ICMPv4 or ICMPv6 echo requests from a raw socket (root), or from an
//! unprivileged datagram ICMP socket when the raw one is refused and
//! `net.ipv4.ping_group_range` allows it. The socket is connected to the
//! target, so the kernel hands it only packets from that address; replies
//! are then matched on identifier (raw sockets only: for datagram sockets
//! the kernel owns the identifier), sequence number and a random token in
//! the payload, so other pings running at the same time never count.
//!
//! Bounded: at most `count` requests, `interval` apart (10 ms at the
//! least from the CLI), and the whole run ends `timeout` after the last
//! request at the latest, or at the `deadline` if one is given, whichever
//! comes first. Requests go out on a fixed schedule (the n-th at
//! `start + n × interval`, never in a burst to catch up), so the per-request
//! records of a run (`--json`: `replies`, each with its send time and RTT,
//! or a null RTT when lost) show when an outage began and ended to within
//! one interval; the testbed measures failover with them. The ICMPv4 checksum
//! is computed here; for ICMPv6 the kernel fills it in (RFC 3542 §3.1).
//! [`ping`] is also the library entry that `weft demo` calls in-process,
//! inside a namespace, through `testbed::Host::enter`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Arguments of `weft ping`.
#[derive(clap::Args, Debug)]
pub struct PingArgs {
    /// What to ping: an IP address (an overlay address goes through the
    /// overlay), or a node's name (`db1` or `db1.weft`) or node id, which
    /// the running node looks up.
    pub target: String,
    /// Ping a named node's overlay IPv6 address even if it has an IPv4 one.
    #[arg(long, short = '6')]
    pub ipv6: bool,
    /// The node's config file, to find the control socket that names are
    /// looked up through [default: $WEFT_CONFIG, else /etc/weft/weft.toml].
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// That control socket, instead of the one the config names.
    #[arg(long)]
    pub socket: Option<std::path::PathBuf>,
    /// Number of echo requests.
    #[arg(long, short, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Milliseconds between requests (10 at the least).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub interval_ms: u64,
    /// Milliseconds to wait for each reply.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
    /// Stop the whole run after this many milliseconds, whatever is still
    /// to send or outstanding (like ping's -w).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub deadline_ms: Option<u64>,
    /// Print one JSON object instead of text: the summary and a record per
    /// request (`replies`: seq, sent_ms, rtt_ms or null when lost).
    #[arg(long)]
    pub json: bool,
}

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingOptions {
    /// Number of echo requests.
    pub count: u32,
    /// Time between requests.
    pub interval: Duration,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// The whole run ends this long after it started, if given.
    pub deadline: Option<Duration>,
}

/// One echo reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reply {
    /// Number of the request in this run, from 1 (never wraps).
    pub seq: u32,
    /// ICMP sequence number on the wire (wraps at 65535, like ping's).
    pub sequence: u16,
    /// ICMP message length.
    pub bytes: usize,
    /// When the request was sent.
    pub sent: Instant,
    /// Round-trip time.
    pub rtt: Duration,
}

/// What happened to each request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A reply arrived.
    Reply(Reply),
    /// No reply in time for request `seq` (wire sequence `sequence`), sent at `sent`.
    Timeout {
        /// Number of the request in this run, from 1.
        seq: u32,
        /// ICMP sequence number on the wire.
        sequence: u16,
        /// When it was sent.
        sent: Instant,
    },
    /// Request `seq` could not be sent.
    SendError {
        /// Number of the request in this run, from 1.
        seq: u32,
        /// ICMP sequence number on the wire.
        sequence: u16,
        /// When the send was attempted.
        sent: Instant,
        /// The OS error.
        error: String,
    },
}

/// What became of one request, as `--json` prints it in `replies`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Record {
    /// Number of the request in this run, from 1.
    pub seq: u32,
    /// When it was sent, in milliseconds since the run started.
    pub sent_ms: f64,
    /// Its round-trip time in milliseconds, or `None` (JSON null) if it was lost.
    pub rtt_ms: Option<f64>,
}

/// The result of a ping run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PingReport {
    /// The address pinged.
    pub target: IpAddr,
    /// Requests sent (including ones the kernel refused).
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Round-trip time of each reply, in arrival order, in milliseconds.
    pub rtt_ms: Vec<f64>,
    /// Shortest round trip.
    pub min_ms: Option<f64>,
    /// Mean round trip.
    pub avg_ms: Option<f64>,
    /// Longest round trip.
    pub max_ms: Option<f64>,
    /// Every request in order of `seq`: when it was sent and its RTT, or
    /// null if no reply came in time (or before the deadline).
    pub replies: Vec<Record>,
}

/// Runs `weft ping`.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub fn run(args: &PingArgs) -> anyhow::Result<ExitCode> {
    let options = PingOptions {
        count: args.count,
        interval: Duration::from_millis(args.interval_ms),
        timeout: Duration::from_millis(args.timeout_ms),
        deadline: args.deadline_ms.map(Duration::from_millis),
    };
    let text = !args.json;
    let target = resolve_target(args)?;
    if text {
        if target.to_string() == args.target {
            println!("PING {target}: {PAYLOAD_LEN} data bytes");
        } else {
            println!("PING {} ({target}): {PAYLOAD_LEN} data bytes", args.target);
        }
    }
    let report = ping(target, &options, |outcome| {
        if !text {
            return;
        }
        match outcome {
            Outcome::Reply(reply) => println!(
                "{} bytes from {}: icmp_seq={} time={:.3} ms",
                reply.bytes,
                target,
                reply.sequence,
                millis(reply.rtt)
            ),
            Outcome::Timeout { sequence, .. } => {
                println!("no reply from {target} for icmp_seq={sequence}")
            }
            Outcome::SendError {
                sequence, error, ..
            } => {
                eprintln!("weft ping: icmp_seq={sequence}: send: {error}")
            }
        }
    })?;
    if text {
        let loss = 100.0 * f64::from(report.sent - report.received) / f64::from(report.sent.max(1));
        println!("--- {} ping statistics ---", report.target);
        println!(
            "{} packets transmitted, {} received, {loss:.0}% packet loss",
            report.sent, report.received
        );
        if let (Some(min), Some(avg), Some(max)) = (report.min_ms, report.avg_ms, report.max_ms) {
            println!("rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms");
        }
    } else {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(if report.received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The address to ping: the target itself if it is an IP address, else the
/// overlay address of the node it names, as the running node finds it
/// (IPv4 if the node's certificate has one, unless `--ipv6`).
fn resolve_target(args: &PingArgs) -> anyhow::Result<IpAddr> {
    if let Ok(address) = args.target.parse::<IpAddr>() {
        return Ok(address);
    }
    let control = crate::status::ControlArgs {
        config: args.config.clone(),
        socket: args.socket.clone(),
    };
    let socket = control.socket().with_context(|| {
        format!(
            "'{}' is not an IP address, so the running node must look it up",
            args.target
        )
    })?;
    let record = crate::lookup::find(&socket, &args.target)?;
    Ok(match record.overlay_ipv4 {
        Some(ipv4) if !args.ipv6 => IpAddr::V4(ipv4),
        _ => IpAddr::V6(record.overlay_ipv6),
    })
}

/// Pings `target` and calls `on_outcome` as each request is answered, times
/// out or fails to send.
pub fn ping(
    target: IpAddr,
    options: &PingOptions,
    on_outcome: impl FnMut(&Outcome),
) -> anyhow::Result<PingReport> {
    ping_until(target, options, &AtomicBool::new(false), on_outcome)
}

/// Like [`ping`], but stops sending as soon as `stop` is set (checked at
/// least every [`STOP_POLL`]); requests already sent still get their
/// `timeout` (within the deadline). For pings that run while something
/// else happens, e.g. a link cut in the testbed.
pub fn ping_until(
    target: IpAddr,
    options: &PingOptions,
    stop: &AtomicBool,
    mut on_outcome: impl FnMut(&Outcome),
) -> anyhow::Result<PingReport> {
    let mut token = [0u8; TOKEN_LEN];
    let mut identifier = [0u8; 2];
    let random = ring::rand::SystemRandom::new();
    ring::rand::SecureRandom::fill(&random, &mut token)
        .map_err(|_| anyhow::anyhow!("the OS random source failed"))?;
    ring::rand::SecureRandom::fill(&random, &mut identifier)
        .map_err(|_| anyhow::anyhow!("the OS random source failed"))?;
    let identifier = u16::from_be_bytes(identifier);
    let (socket, kind) = open_socket(target)?;
    let family = Family::of(target);

    let start = now();
    let end = options.deadline.map(|deadline| start + deadline);
    // Wire sequence -> (seq in this run, send time). Wire sequences repeat
    // only after 65535 requests, far longer than any reply timeout at the
    // CLI's shortest interval (10 ms x 65535 = 655 s > 600 s).
    let mut outstanding: BTreeMap<u16, (u32, Instant)> = BTreeMap::new();
    let mut records: Vec<Record> = Vec::new();
    let mut report = PingReport {
        target,
        sent: 0,
        received: 0,
        rtt_ms: Vec::new(),
        min_ms: None,
        avg_ms: None,
        max_ms: None,
        replies: Vec::new(),
    };
    let mut request = Vec::with_capacity(ICMP_HEADER_LEN + PAYLOAD_LEN);
    let mut buffer = [0u8; 2048];
    let mut next_send = start;
    loop {
        let current = now();
        let stopped = stop.load(Ordering::Relaxed);
        let past_deadline = end.is_some_and(|end| current >= end);
        let sending = report.sent < options.count && !stopped && !past_deadline;
        // Send when due.
        if sending && current >= next_send {
            // Sequence numbers wrap at u16 like ping's.
            let sequence = (report.sent % u32::from(u16::MAX)) as u16 + 1;
            report.sent += 1;
            let seq = report.sent;
            encode_request(family, identifier, sequence, &token, &mut request);
            records.push(Record {
                seq,
                sent_ms: millis(current.saturating_duration_since(start)),
                rtt_ms: None,
            });
            match socket.send(&request) {
                Ok(_) => {
                    outstanding.insert(sequence, (seq, current));
                }
                Err(error) => on_outcome(&Outcome::SendError {
                    seq,
                    sequence,
                    sent: current,
                    error: error.to_string(),
                }),
            }
            // A fixed schedule; after a stall, carry on from now (no burst).
            next_send += options.interval;
            if next_send < current {
                next_send = current + options.interval;
            }
            continue;
        }
        // Expire requests whose replies are overdue (all of them at the deadline).
        let expired: Vec<u16> = outstanding
            .iter()
            .filter(|(_, (_, sent))| past_deadline || current >= *sent + options.timeout)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in expired {
            if let Some((seq, sent)) = outstanding.remove(&sequence) {
                on_outcome(&Outcome::Timeout {
                    seq,
                    sequence,
                    sent,
                });
            }
        }
        if !sending && outstanding.is_empty() {
            break;
        }
        // Wait for a reply until the next send, the next expiry, the
        // deadline, or the next look at the stop flag.
        let mut wake = outstanding
            .values()
            .map(|(_, sent)| *sent + options.timeout)
            .min()
            .unwrap_or(current + STOP_POLL);
        if sending {
            wake = wake.min(next_send).min(current + STOP_POLL);
        }
        if let Some(end) = end {
            wake = wake.min(end);
        }
        let wait = wake
            .saturating_duration_since(current)
            .max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(wait))
            .context("setting the socket timeout")?;
        let len = match (&socket).read(&mut buffer) {
            Ok(len) => len,
            Err(error) if is_transient(&error) => continue,
            Err(error) => return Err(error).context("receiving ICMP"),
        };
        let received_at = now();
        let Some((sequence, bytes)) = parse_reply(family, kind, identifier, &token, &buffer[..len])
        else {
            continue;
        };
        let Some((seq, sent)) = outstanding.remove(&sequence) else {
            continue; // a duplicate, or a reply after its timeout
        };
        let rtt = received_at.saturating_duration_since(sent);
        report.received += 1;
        report.rtt_ms.push(millis(rtt));
        if let Some(record) = records.get_mut((seq as usize).saturating_sub(1)) {
            record.rtt_ms = Some(millis(rtt));
        }
        on_outcome(&Outcome::Reply(Reply {
            seq,
            sequence,
            bytes,
            sent,
            rtt,
        }));
    }
    if !report.rtt_ms.is_empty() {
        let sum: f64 = report.rtt_ms.iter().sum();
        report.min_ms = report.rtt_ms.iter().copied().reduce(f64::min);
        report.max_ms = report.rtt_ms.iter().copied().reduce(f64::max);
        report.avg_ms = Some(sum / report.rtt_ms.len() as f64);
    }
    report.replies = records;
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(target: IpAddr) -> Self {
        if target.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn echo_request(self) -> u8 {
        match self {
            Family::V4 => 8,
            Family::V6 => 128,
        }
    }

    fn echo_reply(self) -> u8 {
        match self {
            Family::V4 => 0,
            Family::V6 => 129,
        }
    }
}

/// Raw sockets see the IPv4 header and keep our identifier; datagram ICMP
/// sockets see neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketKind {
    Raw,
    Datagram,
}

#[allow(clippy::disallowed_methods)] // a CLI driver: real time is its input
fn now() -> Instant {
    Instant::now()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn open_socket(target: IpAddr) -> anyhow::Result<(Socket, SocketKind)> {
    let (domain, protocol) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let (socket, kind) = match Socket::new(domain, Type::RAW, Some(protocol)) {
        Ok(socket) => (socket, SocketKind::Raw),
        Err(raw_error) => match Socket::new(domain, Type::DGRAM, Some(protocol)) {
            Ok(socket) => (socket, SocketKind::Datagram),
            Err(_) => bail!(
                "cannot open an ICMP socket ({raw_error}): run as root, or allow \
                 unprivileged ping with sysctl net.ipv4.ping_group_range"
            ),
        },
    };
    // Connected, the socket receives only packets from the target.
    socket
        .connect(&SockAddr::from(SocketAddr::new(target, 0)))
        .with_context(|| format!("cannot reach {target}"))?;
    Ok((socket, kind))
}

fn encode_request(
    family: Family,
    identifier: u16,
    sequence: u16,
    token: &[u8; TOKEN_LEN],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&[family.echo_request(), 0, 0, 0]);
    out.extend_from_slice(&identifier.to_be_bytes());
    out.extend_from_slice(&sequence.to_be_bytes());
    out.extend_from_slice(token);
    out.extend((0..PAYLOAD_LEN - TOKEN_LEN).map(|i| i as u8));
    if family == Family::V4 {
        let sum = checksum(out);
        out[2..4].copy_from_slice(&sum.to_be_bytes());
    }
}

/// Returns the sequence number and ICMP length of an echo reply that
/// answers one of our requests, or `None` for anything else.
fn parse_reply(
    family: Family,
    kind: SocketKind,
    identifier: u16,
    token: &[u8; TOKEN_LEN],
    packet: &[u8],
) -> Option<(u16, usize)> {
    let icmp = match (family, kind) {
        (Family::V4, SocketKind::Raw) => {
            let first = *packet.first()?;
            if first >> 4 != 4 || packet.get(9) != Some(&1) {
                return None;
            }
            packet.get(usize::from(first & 0x0f) * 4..)?
        }
        _ => packet,
    };
    let header = icmp.get(..ICMP_HEADER_LEN)?;
    if header[0] != family.echo_reply() || header[1] != 0 {
        return None;
    }
    if kind == SocketKind::Raw && u16::from_be_bytes([header[4], header[5]]) != identifier {
        return None;
    }
    if icmp.get(ICMP_HEADER_LEN..ICMP_HEADER_LEN + TOKEN_LEN)? != token {
        return None;
    }
    Some((u16::from_be_bytes([header[6], header[7]]), icmp.len()))
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn is_transient(error: &std::io::Error) -> bool {
    // Timeouts, signals, and ICMP errors reported on the connected socket
    // (e.g. host unreachable) only mean this request got no reply.
    matches!(
        error.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
    ) || matches!(
        error.raw_os_error(),
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ECONNREFUSED)
    )
}

/// Bytes after the ICMP header: the token, then filler (56 in all, as ping).
pub const PAYLOAD_LEN: usize = 56;
/// Longest a run goes without looking at its stop flag.
pub const STOP_POLL: Duration = Duration::from_millis(20);
const TOKEN_LEN: usize = 8;
const ICMP_HEADER_LEN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies_to_zero() {
        let mut request = Vec::new();
        encode_request(Family::V4, 0x1234, 7, &[9; TOKEN_LEN], &mut request);
        assert_eq!(request.len(), ICMP_HEADER_LEN + PAYLOAD_LEN);
        assert_eq!(checksum(&request), 0);
        // RFC 1071's example: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    fn reply_from(request: &[u8], reply_type: u8) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = reply_type;
        reply
    }

    #[test]
    fn replies_are_matched_by_identifier_token_and_type() {
        let token = [5; TOKEN_LEN];
        let mut request = Vec::new();
        encode_request(Family::V6, 42, 3, &token, &mut request);
        let reply = reply_from(&request, 129);
        assert_eq!(
            parse_reply(Family::V6, SocketKind::Raw, 42, &token, &reply),
            Some((3, 64))
        );
        assert_eq!(
            parse_reply(Family::V6, SocketKind::Raw, 43, &token, &reply),
            None
        );
        // Datagram sockets: the kernel rewrote the identifier.
        assert_eq!(
            parse_reply(Family::V6, SocketKind::Datagram, 43, &token, &reply),
            Some((3, 64))
        );
        assert_eq!(
            parse_reply(Family::V6, SocketKind::Raw, 42, &[6; TOKEN_LEN], &reply),
            None
        );
        assert_eq!(
            parse_reply(Family::V6, SocketKind::Raw, 42, &token, &request),
            None
        );
    }

    #[test]
    fn ipv4_raw_replies_skip_the_ip_header() {
        let token = [1; TOKEN_LEN];
        let mut request = Vec::new();
        encode_request(Family::V4, 7, 1, &token, &mut request);
        let mut packet = vec![
            0x46, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 198, 19, 0, 2, 198, 19, 0, 1, 0, 0, 0, 0,
        ];
        packet.extend(reply_from(&request, 0));
        assert_eq!(
            parse_reply(Family::V4, SocketKind::Raw, 7, &token, &packet),
            Some((1, 64))
        );
        packet[9] = 17; // UDP, not ICMP
        assert_eq!(
            parse_reply(Family::V4, SocketKind::Raw, 7, &token, &packet),
            None
        );
    }

    #[test]
    fn parse_reply_never_panics_on_short_or_odd_input() {
        let token = [0; TOKEN_LEN];
        for len in 0..80 {
            for fill in [0u8, 0x45, 0x4f, 0xff] {
                let packet = vec![fill; len];
                for family in [Family::V4, Family::V6] {
                    for kind in [SocketKind::Raw, SocketKind::Datagram] {
                        let _ = parse_reply(family, kind, 0, &token, &packet);
                    }
                }
            }
        }
    }

    #[test]
    fn ping_of_loopback_gets_replies() {
        // Needs root or ping_group_range; skip quietly otherwise.
        let options = PingOptions {
            count: 2,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            deadline: None,
        };
        let Ok(report) = ping(IpAddr::from([127, 0, 0, 1]), &options, |_| {}) else {
            crate::testbed::skip("no ICMP socket");
            return;
        };
        assert_eq!(report.sent, 2);
        assert_eq!(report.received, 2);
        if std::net::UdpSocket::bind("[::1]:0").is_err() {
            crate::testbed::skip("the IPv6 part: no ::1 here");
            return;
        }
        let report = ping("::1".parse().unwrap(), &options, |_| {}).unwrap();
        assert_eq!(report.received, 2);
    }

    #[test]
    fn records_cover_every_request_and_stop_ends_the_run_early() {
        let options = PingOptions {
            count: 100_000,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            deadline: Some(Duration::from_secs(30)),
        };
        let stop = AtomicBool::new(false);
        let mut outcomes = 0;
        let result = ping_until(IpAddr::from([127, 0, 0, 1]), &options, &stop, |outcome| {
            outcomes += 1;
            if matches!(outcome, Outcome::Reply(reply) if reply.seq >= 5) {
                stop.store(true, Ordering::Relaxed);
            }
        });
        let Ok(report) = result else {
            crate::testbed::skip("no ICMP socket");
            return;
        };
        assert!((5..100).contains(&report.sent), "{report:?}");
        assert_eq!(report.replies.len(), report.sent as usize);
        assert_eq!(outcomes, report.sent);
        for (i, record) in report.replies.iter().enumerate() {
            assert_eq!(record.seq as usize, i + 1);
            assert!(record.rtt_ms.is_some(), "{record:?}");
        }
        // The schedule is fixed: the n-th request goes out near (n-1) x 10 ms.
        let last = report.replies.last().unwrap();
        assert!(
            last.sent_ms >= f64::from(last.seq - 1) * 10.0 - 1.0,
            "{last:?}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["replies"][0]["seq"], 1);
    }

    #[test]
    fn deadline_bounds_a_run_and_counts_the_rest_lost() {
        let options = PingOptions {
            count: 100_000,
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(60),
            deadline: Some(Duration::from_millis(100)),
        };
        let start = now();
        let Ok(report) = ping(IpAddr::from([127, 0, 0, 1]), &options, |_| {}) else {
            crate::testbed::skip("no ICMP socket");
            return;
        };
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!((1..=12).contains(&report.sent), "{report:?}");
        assert_eq!(report.replies.len(), report.sent as usize);
    }
}
