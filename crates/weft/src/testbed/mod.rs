//! A test bed of real weft daemons, one per network namespace, on one machine.
//!
//! [`Testbed::new`] builds N hosts: each a network namespace with a veth
//! link (`u0`, 198.18.0.{i+1}/24) into a Linux bridge that lives in one more
//! namespace, a key pair, a certificate `h{i}` with overlay IPv4
//! 198.19.0.{i+1}/16, a full-mesh config (every other host as a static peer
//! by name and endpoint) or, with [`TestbedOptions::bootstrap`], a config
//! without peers that only names DHT bootstrap endpoints, and a running
//! `weft up` whose output goes to a log file. Each daemon answers DNS for
//! `.weft` names on its overlay addresses; [`Host::set_resolver`] points
//! the namespace's resolver at it (`/etc/netns/NS/resolv.conf`, which `ip
//! netns exec` mounts over `/etc/resolv.conf`). The daemons never touch
//! the host's resolver (`configure_resolver = false`). Everything is made with iproute2 and the `weft` binary itself
//! (`weft ca init`, `weft init`, `weft ca sign`), so the test bed also
//! exercises the CLI the way an operator would.
//!
//! Links can be impaired per host pair (see `impair.rs`: a cut or random
//! loss with nftables, a cut with iproute2 blackhole routes) and delayed
//! through an impairment relay (see `relay.rs`); `stream.rs` pings through
//! it all and measures outages; `mcast.rs` sends and receives multicast
//! with ordinary UDP sockets inside the namespaces.
//! `neigh.rs` makes room in the kernel's neighbour tables, which all
//! namespaces share, for test beds of more than 16 hosts.
//! `qos.rs` shapes a host's underlay with `tc tbf`, loads it with `iperf3`
//! and measures a realtime UDP echo stream through it (the QoS test and demo).
//!
//! Guarantees: names are unique per test bed (see `netns.rs`), so tests may
//! build test beds in parallel. Dropping a [`Testbed`] — also while
//! unwinding from a panic — stops every daemon by PID (SIGTERM, then SIGKILL
//! after a deadline), deletes every namespace it made with its
//! `/etc/netns` directory, and removes its temp dir (kept if
//! `WEFT_TESTBED_KEEP` is set). [`Testbed::new`] first removes
//! what crashed earlier runs left behind. Every wait is bounded. Needs root.

mod command;
mod host;
mod impair;
mod mcast;
mod nat;
mod neigh;
mod netns;
mod qos;
mod relay;
mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

pub use host::{Host, path_names};
pub use impair::have_nft;
pub use mcast::{Arrival, Deliveries, MAGIC, McastReceiver, McastSender, tree_link_to_cut};
pub use nat::{NatMapping, NatRouter, nat_gateway_ipv4, nat_wan_ipv4};
pub use qos::{
    BULK_PORT, CAPPED_LENGTH, CAPPED_PORT, CapResult, ECHO_PORT, ECHO_TIMEOUT, EchoServer,
    Iperf3Client, Iperf3Options, Iperf3Result, Iperf3Server, PEER_PORT, QosPhase, QosPlan,
    QosReport, RealtimeOptions, RealtimeRecord, TOS_EF, TUNNEL_UNDERLAY_OVERHEAD, boost_daemon,
    boost_thread, have_iperf3, qdisc_stats, realtime_stream, run_qos_experiment, underlay_bps,
};
pub use relay::{ImpairmentRelay, RELAY_IPV4, relay_address};
pub use stream::{Outage, PingStream, Probe, REPLY_TIMEOUT, StreamRecord, loss_between, outage};

use crate::config::DEFAULT_MTU;
use command::{now, run};
use neigh::NeighbourRoom;
use netns::{add_namespace, delete_namespace, ip, remove_etc_netns, step};

/// UDP port every daemon listens on.
pub const PORT: u16 = 4800;
/// Name of every host's TUN device.
pub const TUN_NAME: &str = "weft0";
/// Most hosts a test bed holds (the underlay is one /24).
pub const MAX_HOSTS: usize = 200;

/// How long stopping daemons may take before they are SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between polls in [`Testbed::wait_until`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Log lines shown per daemon when a wait fails.
const LOG_TAIL_LINES: usize = 15;

/// How to build a [`Testbed`].
#[derive(Debug, Clone)]
pub struct TestbedOptions {
    /// The `weft` binary to run (tests: `env!("CARGO_BIN_EXE_weft")`).
    pub weft_binary: PathBuf,
    /// Listen on 0.0.0.0:4800 instead of the host's underlay address.
    pub listen_wildcard: bool,
    /// The daemons' `[log] level`.
    pub log_level: String,
    /// Hosts whose certificates a second, unrelated CA signs. They are still
    /// in everyone's peer list, but no session with them can form.
    pub foreign_ca_hosts: BTreeSet<usize>,
    /// TOML appended to every config (e.g. a `[session]` table).
    pub extra_config: String,
    /// Lines for every config's `[daemon]` table (e.g. `user = "nobody"`):
    /// the test bed writes that table itself, to give each host a state
    /// directory of its own beside its config.
    pub daemon_config: String,
    /// TOML appended to host `i`'s config only, after `extra_config` (e.g.
    /// a `[firewall]`).
    pub host_config: BTreeMap<usize, String>,
    /// Certificate groups of host `i` (`weft ca sign --groups`).
    pub groups: BTreeMap<usize, Vec<String>>,
    /// `(i, j) -> address`: host `i`'s config names this endpoint for peer
    /// `j` instead of `j`'s underlay address.
    pub endpoint_overrides: BTreeMap<(usize, usize), SocketAddr>,
    /// Host pairs `(a, b)` whose traffic goes through an impairment relay
    /// (the k-th pair through [`Testbed::relay`]`(k)`, no delay until set).
    pub impairment_relays: Vec<(usize, usize)>,
    /// When set (e.g. by a Ctrl-C handler), waits stop with an error.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Discovery instead of a full mesh: when set, the configs name no
    /// `[[peers]]`, and host `i` joins the DHT through the underlay
    /// endpoints of the hosts listed for it (none listed: it waits to be
    /// found).
    pub bootstrap: Option<BTreeMap<usize, Vec<usize>>>,
    /// Lines added to every config's `[dht]` table (e.g. `k = 4`).
    pub dht_tuning: String,
    /// NAT routers and the hosts behind them (see `nat.rs`). A host behind
    /// one listens on the wildcard address, and the others' configs name
    /// it without an endpoint: it cannot be reached before it calls.
    pub nats: Vec<NatRouter>,
    /// `(i, j)`: host `i`'s config does not list host `j` at all (it
    /// learns of it from link state or the DHT, as of any member).
    pub unlisted: BTreeSet<(usize, usize)>,
}

impl TestbedOptions {
    /// Defaults: listen on the underlay address, log level `info`, one CA.
    pub fn new(weft_binary: impl Into<PathBuf>) -> Self {
        TestbedOptions {
            weft_binary: weft_binary.into(),
            listen_wildcard: false,
            log_level: "info".to_owned(),
            foreign_ca_hosts: BTreeSet::new(),
            extra_config: String::new(),
            daemon_config: String::new(),
            host_config: BTreeMap::new(),
            groups: BTreeMap::new(),
            endpoint_overrides: BTreeMap::new(),
            impairment_relays: Vec::new(),
            cancel: None,
            bootstrap: None,
            dht_tuning: String::new(),
            nats: Vec::new(),
            unlisted: BTreeSet::new(),
        }
    }
}

/// N weft daemons in network namespaces on one bridge. See the module doc.
#[derive(Debug)]
pub struct Testbed {
    stem: String,
    dir: PathBuf,
    bridge: Option<String>,
    /// Namespaces made so far, for cleanup: the bridge first, then hosts.
    namespaces: Vec<String>,
    hosts: Vec<Host>,
    relays: Vec<ImpairmentRelay>,
    options: TestbedOptions,
    /// Dropped after the namespaces are gone (fields drop after `drop`).
    _neighbour_room: NeighbourRoom,
}

impl Testbed {
    /// Builds `n` hosts and starts their daemons. Does not wait for
    /// sessions: see [`Testbed::wait_established`]. On error, whatever was
    /// made so far is removed again.
    pub fn new(n: usize, options: TestbedOptions) -> anyhow::Result<Self> {
        if !(1..=MAX_HOSTS).contains(&n) {
            bail!("a test bed holds 1 to {MAX_HOSTS} hosts, not {n}");
        }
        if !options.weft_binary.is_file() {
            bail!("weft binary {} not found", options.weft_binary.display());
        }
        let neighbour_room = NeighbourRoom::for_hosts(n)?;
        let temp_root = std::env::temp_dir();
        netns::remove_leftovers(&temp_root);
        let stem = netns::new_stem()?;
        let dir = temp_root.join(&stem);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut testbed = Testbed {
            stem,
            dir,
            bridge: None,
            namespaces: Vec::new(),
            hosts: Vec::new(),
            relays: Vec::new(),
            options,
            _neighbour_room: neighbour_room,
        };
        // From here on, an early return drops `testbed`, which cleans up.
        testbed.make_credentials(n)?;
        testbed.make_network()?;
        testbed.start_relays()?;
        for host in &testbed.hosts {
            host.start_daemon()?;
        }
        Ok(testbed)
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i`.
    ///
    /// # Panics
    /// If `i` is out of range: a bug in the calling test.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The impairment relay of the k-th pair of
    /// [`TestbedOptions::impairment_relays`].
    ///
    /// # Panics
    /// If there is no such relay: a bug in the calling test.
    pub fn relay(&self, k: usize) -> &ImpairmentRelay {
        &self.relays[k]
    }

    /// The temp dir holding CA, keys, configs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unique stem of every name this test bed made.
    pub fn stem(&self) -> &str {
        &self.stem
    }

    /// Waits until every host of the main CA lists every other such host
    /// as "established" (hosts of the foreign CA never get there).
    pub fn wait_established(&self, timeout: Duration) -> anyhow::Result<()> {
        let members: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| !self.hosts[i].foreign_ca)
            .collect();
        self.wait_sessions(&members, timeout)
    }

    /// Waits until hosts `a` and `b` list each other as "established".
    pub fn wait_pair(&self, a: usize, b: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_sessions(&[a, b], timeout)
    }

    /// Polls `condition` until it returns true, for at most `timeout`. The
    /// error says what was awaited, shows each daemon's log tail, and comes
    /// early if a daemon died or the cancel flag was set.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = now() + timeout;
        let mut last_error = None;
        loop {
            self.check_cancel()?;
            for host in self
                .hosts
                .iter()
                .filter(|h| !h.stopped.load(Ordering::Relaxed))
            {
                if let Err(error) = host.check_running() {
                    bail!("{error:#} while waiting for {what}\n{}", self.log_tails());
                }
            }
            match condition() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => last_error = Some(error),
            }
            if now() >= deadline {
                let last = last_error
                    .map(|e| format!(" (last error: {e:#})"))
                    .unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what}{last}\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Stops host `i`'s daemon and starts it again with the same config.
    pub fn restart(&self, i: usize) -> anyhow::Result<()> {
        let host = &self.hosts[i];
        host.signal_stop();
        host.wait_stopped(now() + STOP_TIMEOUT);
        host.start_daemon()?;
        host.stopped.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Kills host `i`'s daemon with SIGKILL (a crash: no goodbye to
    /// anyone), by its PID, and reaps it. Waits no longer expect it to run.
    /// Returns the PID it had.
    pub fn kill(&self, i: usize) -> anyhow::Result<u32> {
        let host = &self.hosts[i];
        let pid = host
            .daemon_pid()
            .with_context(|| format!("{}: daemon is not running", host.name))?;
        host.stopped.store(true, Ordering::Relaxed);
        host.kill_daemon();
        Ok(pid)
    }

    /// Cuts host `i` off the underlay: its bridge port goes down, so its
    /// packets vanish silently in both directions (no nftables needed).
    pub fn cut_link(&self, i: usize) -> anyhow::Result<()> {
        self.set_link(i, "down")
    }

    /// Undoes [`Testbed::cut_link`].
    pub fn restore_link(&self, i: usize) -> anyhow::Result<()> {
        self.set_link(i, "up")
    }

    /// Each daemon's log tail, for error messages.
    pub fn log_tails(&self) -> String {
        let mut text = String::new();
        for host in &self.hosts {
            let _ = writeln!(
                text,
                "--- {} ({}) log tail:\n{}",
                host.name,
                host.log.display(),
                host.log_tail(LOG_TAIL_LINES)
            );
        }
        text
    }

    fn wait_sessions(&self, members: &[usize], timeout: Duration) -> anyhow::Result<()> {
        let mut missing = String::new();
        let result = self.wait_until(timeout, "sessions to be established", || {
            missing.clear();
            for &i in members {
                let status = self.hosts[i].status()?;
                for &j in members {
                    if i == j {
                        continue;
                    }
                    let peer = &self.hosts[j].name;
                    let state = host::peer_state_in(&status, peer);
                    if state.as_deref() != Some("established") {
                        let _ = write!(
                            missing,
                            " {}->{}:{}",
                            self.hosts[i].name,
                            peer,
                            state.as_deref().unwrap_or("absent")
                        );
                    }
                }
            }
            Ok(missing.is_empty())
        });
        if missing.is_empty() {
            return result;
        }
        result.with_context(|| format!("not established:{missing}"))
    }

    fn check_cancel(&self) -> anyhow::Result<()> {
        if self
            .options
            .cancel
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
        {
            bail!("interrupted");
        }
        Ok(())
    }

    fn set_link(&self, i: usize, state: &str) -> anyhow::Result<()> {
        let Some(bridge) = &self.bridge else {
            bail!("the test bed has no bridge");
        };
        let port = bridge_port(i);
        run(ip().args(["-n", bridge, "link", "set", "dev", &port, state]))?;
        Ok(())
    }

    /// CA(s), keys, certificates and configs, all through the `weft` CLI.
    fn make_credentials(&mut self, n: usize) -> anyhow::Result<()> {
        let ca_dir = self.dir.join("ca");
        let foreign_ca_dir = self.dir.join("ca-foreign");
        self.weft(&["ca", "init", "--name", "weft-testbed", "--dir"], &ca_dir)?;
        if !self.options.foreign_ca_hosts.is_empty() {
            self.weft(
                &["ca", "init", "--name", "weft-foreign", "--dir"],
                &foreign_ca_dir,
            )?;
        }
        for i in 0..n {
            let name = format!("h{i}");
            let dir = self.dir.join(&name);
            let foreign_ca = self.options.foreign_ca_hosts.contains(&i);
            let ca = if foreign_ca { &foreign_ca_dir } else { &ca_dir };
            step(&format!("making the credentials of {name}"), || {
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                self.weft(&["init", "--dir"], &dir)?;
                let ipv4 = format!("{}/16", overlay_ipv4(i));
                let mut sign = std::process::Command::new(&self.options.weft_binary);
                sign.args(["ca", "sign", "--ca-key"])
                    .arg(ca.join("ca.key"))
                    .arg("--public-key")
                    .arg(dir.join("node.pub"))
                    .args(["--name", &name, "--ipv4", &ipv4]);
                if let Some(groups) = self.options.groups.get(&i) {
                    sign.args(["--groups", &groups.join(",")]);
                }
                run(sign.arg("--out").arg(dir.join("node.crt")))?;
                fs::copy(ca.join("ca.crt"), dir.join("ca.crt")).context("copying ca.crt")?;
                Ok(())
            })?;
            let config = dir.join("weft.toml");
            let socket = dir.join("control.sock");
            let endpoints = endpoints(&self.options, n, i);
            fs::write(
                &config,
                config_text(&self.options, n, i, &socket, &endpoints),
            )
            .with_context(|| format!("writing {}", config.display()))?;
            self.hosts.push(Host {
                index: i,
                netns: format!("{}h{i}", self.stem),
                log: dir.join("weft.log"),
                underlay: host_ipv4(&self.options, i),
                weft_binary: self.options.weft_binary.clone(),
                foreign_ca,
                daemon: std::sync::Mutex::new(None),
                stopped: AtomicBool::new(false),
                overlay: std::sync::OnceLock::new(),
                name,
                dir,
                config,
                socket,
            });
        }
        Ok(())
    }

    /// The bridge namespace, then per host a namespace with a veth pair.
    fn make_network(&mut self) -> anyhow::Result<()> {
        let bridge = format!("{}br", self.stem);
        add_namespace(&bridge)?;
        self.namespaces.push(bridge.clone());
        self.bridge = Some(bridge.clone());
        run(ip().args(["-n", &bridge, "link", "add", "br0", "type", "bridge"]))?;
        run(ip().args(["-n", &bridge, "link", "set", "br0", "up"]))?;
        for i in 0..self.hosts.len() {
            let netns = self.hosts[i].netns.clone();
            add_namespace(&netns)?;
            self.namespaces.push(netns.clone());
            if nat::nat_of(&self.options, i).is_some() {
                continue;
            }
            let port = bridge_port(i);
            let address = format!("{}/24", underlay_ipv4(i));
            step(&format!("linking {netns} to the bridge"), || {
                run(ip()
                    .args([
                        "-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "u0",
                        "netns",
                    ])
                    .arg(&netns))?;
                run(ip().args(["-n", &bridge, "link", "set", &port, "master", "br0", "up"]))?;
                run(ip().args(["-n", &netns, "addr", "add", &address, "dev", "u0"]))?;
                run(ip().args(["-n", &netns, "link", "set", "u0", "up"]))?;
                Ok(())
            })?;
        }
        self.make_nats()
    }

    /// The bridge namespace gets [`RELAY_IPV4`], then one relay per pair.
    fn start_relays(&mut self) -> anyhow::Result<()> {
        if self.options.impairment_relays.is_empty() {
            return Ok(());
        }
        let Some(bridge) = self.bridge.clone() else {
            bail!("the test bed has no bridge");
        };
        let address = format!("{RELAY_IPV4}/24");
        run(ip().args(["-n", &bridge, "addr", "add", &address, "dev", "br0"]))?;
        for (k, &(a, b)) in self.options.impairment_relays.iter().enumerate() {
            let daemon = |i: usize| SocketAddr::from((underlay_ipv4(i), PORT));
            let relay = step(&format!("starting the relay between h{a} and h{b}"), || {
                ImpairmentRelay::start(&bridge, relay_address(k), daemon(a), daemon(b))
            })?;
            self.relays.push(relay);
        }
        Ok(())
    }

    /// Runs `weft ARGS DIR` in this process's namespace.
    fn weft(&self, args: &[&str], dir: &Path) -> anyhow::Result<()> {
        run(std::process::Command::new(&self.options.weft_binary)
            .args(args)
            .arg(dir))
        .map(drop)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // SIGTERM all first, so the daemons stop in parallel.
        for host in &self.hosts {
            host.signal_stop();
        }
        let deadline = now() + STOP_TIMEOUT;
        for host in &self.hosts {
            host.wait_stopped(deadline);
        }
        // Their sockets would keep the bridge namespace alive.
        self.relays.clear();
        for namespace in self.namespaces.iter().rev() {
            if let Err(error) = delete_namespace(namespace) {
                eprintln!("weft testbed: could not delete namespace {namespace}: {error:#}");
            }
            if let Err(error) = remove_etc_netns(namespace) {
                eprintln!(
                    "weft testbed: could not remove the /etc/netns directory of {namespace}: {error:#}"
                );
            }
        }
        if std::env::var_os("WEFT_TESTBED_KEEP").is_some() {
            eprintln!("weft testbed: keeping {}", self.dir.display());
        } else if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "weft testbed: could not remove {}: {error}",
                self.dir.display()
            );
        }
    }
}

/// Host `i`'s underlay address.
pub fn underlay_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, host_octet(i))
}

/// The overlay IPv4 address in host `i`'s certificate.
pub fn overlay_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, host_octet(i))
}

/// Host `i`'s own address: on the bridge, or on its NAT router's LAN.
fn host_ipv4(options: &TestbedOptions, i: usize) -> Ipv4Addr {
    match nat::nat_of(options, i) {
        Some(k) => nat::lan_ipv4(k, i),
        None => underlay_ipv4(i),
    }
}

/// Whether this process runs as root (the test bed needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The environment variable naming a file where tests that skip
/// themselves leave a line (see [`skip`]).
pub const SKIPS_ENV: &str = "WEFT_TEST_SKIPS";

/// Tells that the calling test skips itself because of `reason` (the test
/// then returns). The harness would show it as a plain "ok" and hide this
/// notice (it shows a passing test's output only with --nocapture), so when
/// [`SKIPS_ENV`] names a file a line "TEST: REASON" is appended there too,
/// and `scripts/test` lists those lines after the run.
pub fn skip(reason: &str) {
    use std::io::Write;
    eprintln!("skipping: {reason}");
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // One short write with O_APPEND: lines from concurrent test processes
    // do not interleave.
    let line = format!("{test}: {reason}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!(
            "cannot note the skip in {}: {error}",
            Path::new(&path).display()
        );
    }
}

fn host_octet(i: usize) -> u8 {
    // Testbed::new caps hosts at MAX_HOSTS (< 255), so this never saturates there.
    u8::try_from(i + 1).unwrap_or(u8::MAX)
}

/// The endpoint host `i`'s config names for each other host: its underlay
/// address, unless overridden or relayed.
fn endpoints(options: &TestbedOptions, n: usize, i: usize) -> BTreeMap<usize, SocketAddr> {
    let mut endpoints: BTreeMap<usize, SocketAddr> = (0..n)
        .filter(|&j| j != i && nat::nat_of(options, j).is_none())
        .map(|j| (j, SocketAddr::from((underlay_ipv4(j), PORT))))
        .collect();
    for (k, &(a, b)) in options.impairment_relays.iter().enumerate() {
        if i == a {
            endpoints.insert(b, relay_address(k));
        } else if i == b {
            endpoints.insert(a, relay_address(k));
        }
    }
    for (&(from, to), &address) in &options.endpoint_overrides {
        if from == i && to != i && to < n {
            endpoints.insert(to, address);
        }
    }
    endpoints.retain(|&j, _| !options.unlisted.contains(&(i, j)));
    endpoints
}

/// Host `i`'s config file.
fn config_text(
    options: &TestbedOptions,
    n: usize,
    i: usize,
    socket: &Path,
    endpoints: &BTreeMap<usize, SocketAddr>,
) -> String {
    let listen = if options.listen_wildcard || nat::nat_of(options, i).is_some() {
        format!("0.0.0.0:{PORT}")
    } else {
        format!("{}:{PORT}", underlay_ipv4(i))
    };
    let mut text = format!(
        "# Written by the weft test bed: host h{i} of {n}.\n\
         [node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\nlisten = \"{listen}\"\n\n\
         [tun]\nname = \"{TUN_NAME}\"\nmtu = {DEFAULT_MTU}\n\n\
         [control]\nsocket = {}\n\n\
         [log]\nlevel = {}\n",
        toml_string(&socket.to_string_lossy()),
        toml_string(&options.log_level),
    );
    // The host's resolver is never the daemons' business in a test.
    text.push_str("\n[dns]\nconfigure_resolver = false\n");
    // Each host keeps its state beside its config, not in the machine's
    // /var/lib/weft, which tests running at once would share.
    text.push_str("\n[daemon]\nstate_dir = \"state\"\n");
    text.push_str(&options.daemon_config);
    let bootstrap: Vec<String> = options
        .bootstrap
        .as_ref()
        .and_then(|bootstrap| bootstrap.get(&i))
        .into_iter()
        .flatten()
        .filter(|&&j| j != i && j < n)
        .map(|&j| toml_string(&SocketAddr::from((underlay_ipv4(j), PORT)).to_string()))
        .collect();
    if options.bootstrap.is_some() || !options.dht_tuning.is_empty() {
        let _ = write!(text, "\n[dht]\nbootstrap = [{}]\n", bootstrap.join(", "));
        if !options.dht_tuning.is_empty() {
            text.push_str(options.dht_tuning.trim_end());
            text.push('\n');
        }
    }
    if options.bootstrap.is_none() {
        for (j, endpoint) in endpoints {
            let _ = write!(
                text,
                "\n[[peers]]\nname = \"h{j}\"\nendpoint = \"{endpoint}\"\n"
            );
        }
        // Hosts behind a NAT have no endpoint anyone could name.
        let unlisted = |j: usize| options.unlisted.contains(&(i, j));
        for j in (0..n).filter(|&j| j != i && !endpoints.contains_key(&j) && !unlisted(j)) {
            let _ = write!(text, "\n[[peers]]\nname = \"h{j}\"\n");
        }
    }
    if !options.extra_config.is_empty() {
        text.push('\n');
        text.push_str(&options.extra_config);
        text.push('\n');
    }
    if let Some(extra) = options.host_config.get(&i) {
        text.push('\n');
        text.push_str(extra);
        text.push('\n');
    }
    text
}

/// Host `i`'s veth end in the bridge namespace.
fn bridge_port(i: usize) -> String {
    format!("h{i}")
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_a_full_mesh_with_endpoints() {
        let options = TestbedOptions::new("/bin/true");
        let endpoints = endpoints(&options, 3, 1);
        let text = config_text(
            &options,
            3,
            1,
            Path::new("/tmp/x/h1/control.sock"),
            &endpoints,
        );
        let value: toml::Table = text.parse().unwrap();
        assert_eq!(value["node"]["listen"].as_str(), Some("198.18.0.2:4800"));
        assert_eq!(
            value["control"]["socket"].as_str(),
            Some("/tmp/x/h1/control.sock")
        );
        let peers = value["peers"].as_array().unwrap();
        let names: Vec<_> = peers.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["h0", "h2"]);
        assert_eq!(peers[1]["endpoint"].as_str(), Some("198.18.0.3:4800"));
    }

    #[test]
    fn bootstrap_configs_name_no_peers_and_parse() {
        let mut options = TestbedOptions::new("/bin/true");
        options.bootstrap = Some(BTreeMap::from([(1, vec![0]), (2, vec![0, 1])]));
        options.dht_tuning = "k = 4\nreplication = 2\n".to_owned();
        let socket = Path::new("/tmp/x/h2/control.sock");
        let text = config_text(&options, 3, 2, socket, &endpoints(&options, 3, 2));
        let value: toml::Table = text.parse().unwrap();
        assert!(value.get("peers").is_none(), "{text}");
        let bootstrap: Vec<_> = value["dht"]["bootstrap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(bootstrap, ["198.18.0.1:4800", "198.18.0.2:4800"]);
        assert_eq!(value["dht"]["k"].as_integer(), Some(4));
        assert_eq!(value["dns"]["configure_resolver"].as_bool(), Some(false));
        let file = Path::new("/tmp/x/h2/weft.toml");
        let config = crate::config::Config::parse(file, &text).unwrap();
        assert_eq!(config.dht.config.replication, 2);
        assert!(!config.dns.configure_resolver);
        // Host 0 is the one everybody else joins through.
        let text = config_text(&options, 3, 0, socket, &endpoints(&options, 3, 0));
        let config = crate::config::Config::parse(file, &text).unwrap();
        assert!(config.dht.bootstrap.is_empty() && config.peers.is_empty());
    }

    #[test]
    fn relayed_pairs_name_the_relay_on_both_sides_and_overrides_win() {
        let mut options = TestbedOptions::new("/bin/true");
        options.impairment_relays = vec![(0, 2)];
        options
            .endpoint_overrides
            .insert((1, 2), "198.18.0.99:4800".parse().unwrap());
        let relay = relay_address(0);
        assert_eq!(endpoints(&options, 3, 0)[&2], relay);
        assert_eq!(endpoints(&options, 3, 2)[&0], relay);
        assert_eq!(endpoints(&options, 3, 0)[&1].to_string(), "198.18.0.2:4800");
        assert_eq!(
            endpoints(&options, 3, 1)[&2].to_string(),
            "198.18.0.99:4800"
        );
        assert_eq!(endpoints(&options, 3, 1).len(), 2);
    }

    #[test]
    fn hosts_behind_a_nat_listen_on_the_wildcard_and_are_named_without_endpoint() {
        let mut options = TestbedOptions::new("/bin/true");
        options.nats = vec![NatRouter::new(NatMapping::EndpointIndependent, vec![1])];
        let socket = Path::new("/tmp/x/h1/control.sock");
        let text = config_text(&options, 3, 1, socket, &endpoints(&options, 3, 1));
        let value: toml::Table = text.parse().unwrap();
        assert_eq!(value["node"]["listen"].as_str(), Some("0.0.0.0:4800"));
        let text = config_text(&options, 3, 0, socket, &endpoints(&options, 3, 0));
        let value: toml::Table = text.parse().unwrap();
        let peers = value["peers"].as_array().unwrap();
        let h1 = peers
            .iter()
            .find(|p| p["name"].as_str() == Some("h1"))
            .unwrap();
        assert!(h1.get("endpoint").is_none(), "{text}");
        assert_eq!(host_ipv4(&options, 1).to_string(), "198.18.1.2");
        assert_eq!(nat_wan_ipv4(0).to_string(), "198.18.0.201");
    }

    #[test]
    fn peer_state_prefers_an_established_entry() {
        let status = serde_json::json!({"peers": [
            {"name": "h1", "state": "handshaking"},
            {"name": "h1", "state": "established"},
            {"name": "h2", "state": "awaiting_peer"},
        ]});
        assert_eq!(
            host::peer_state_in(&status, "h1").as_deref(),
            Some("established")
        );
        assert_eq!(
            host::peer_state_in(&status, "h2").as_deref(),
            Some("awaiting_peer")
        );
        assert_eq!(host::peer_state_in(&status, "h3"), None);
    }
}
