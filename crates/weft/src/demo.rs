//! `weft demo`: a small overlay on this machine that a newcomer can watch.
//!
//! Builds a [`Testbed`] of N nodes (network namespaces on one bridge, a real
//! daemon in each), waits for the encrypted sessions, prints one node's
//! `weft status` and the URL of the live network map (h0's HTTP API,
//! relayed to 127.0.0.1 of the root namespace: see `demo/map.rs`), then
//! runs a scenario. `tour` (the default) runs `overlay`, then `failover`
//! (3 nodes or more), `multicast` and `qos` (4 or more; qos only where
//! iperf3 is installed) one after the other, so the map shows the overlay,
//! a path moving around a cut link and a multicast tree. `overlay` pings
//! every node from every other one over the overlay, IPv4 and IPv6, and
//! prints the round-trip times as matrices. `failover` cuts the h0–h1 underlay
//! path while h0 pings h1 every 10 ms and shows the overlay routing around
//! it (see `demo/failover.rs`; `--trials N` makes it a benchmark).
//! `multicast` streams UDP multicast from h0 to ordinary sockets that
//! joined a group, shows the group, its tree and what each node received,
//! then cuts a tree link under the stream (see `demo/multicast.rs`).
//! `qos` makes h0's underlay a 20 Mbit/s bottleneck and times a realtime
//! stream through it under a bulk iperf3 transfer, without and with weft's
//! QoS, then a capped class (see `demo/qos.rs`; needs iperf3).
//! `nat` puts h1 and h2 behind NAT routers of their own and shows h1's
//! traffic to h2 going from relayed (through h0) to direct, with the time
//! it took (see `demo/nat.rs`; needs nftables).
//! Every phase that cuts a link restores it before it ends, and before each
//! phase of the tour the demo waits until every direct link is up again and
//! prints the overlay's state: links, and paths that go through a relay
//! (see `demo/state.rs`).
//! After the scenario the overlay stays up for `--duration` seconds, or,
//! without it, until Ctrl-C when run in a terminal (not at all otherwise,
//! as in tests and scripts), so the user can keep watching the map; Ctrl-C
//! in that phase is the normal end (exit 0).
//! Everything it made is removed before it exits, also on Ctrl-C or
//! SIGTERM: a signal only sets a flag, and the demo unwinds normally so the
//! test bed's `Drop` runs. Exit codes: 0 all pairs reached each other (or
//! traffic resumed after every cut), 1 not (or a step failed), 2 not root,
//! 130 interrupted.

mod discovery;
mod failover;
mod map;
mod multicast;
mod nat;
mod qos;
mod state;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::ping::{PingOptions, ping};
use crate::testbed::{Testbed, TestbedOptions, is_root};

/// Arguments of `weft demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Number of nodes (the failover and discovery scenarios need at least
    /// 3, the multicast one 4).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=16))]
    pub nodes: u16,
    /// What to show.
    #[arg(long, value_enum, default_value_t = Scenario::Tour)]
    pub scenario: Scenario,
    /// failover: how many times to cut and restore the link; with more than
    /// one, a table of outages with the median and worst (0: no cuts, e.g.
    /// to measure only the loss phase on a fresh overlay).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub trials: u32,
    /// failover: afterwards, drop this percentage of the h0–h1 packets at
    /// random for 10 s and report the end-to-end loss (needs nftables).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub loss_percent: Option<u8>,
    /// failover: seconds of idle traffic over which the probe cost is measured.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub idle_secs: u64,
    /// Keep the overlay (and its map) up this many seconds after the
    /// scenario; default: until Ctrl-C in a terminal, else not at all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub duration: Option<u64>,
    /// Port of the network map on 127.0.0.1 (any free port if taken).
    #[arg(long, default_value_t = 4880)]
    pub map_port: u16,
}

/// The scenarios of `weft demo`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The overlay pings, then failover, multicast and QoS as the node
    /// count (and iperf3) allow, with the live network map.
    Tour,
    /// Ping every node from every other one, IPv4 and IPv6.
    Overlay,
    /// Cut the h0–h1 link under a 10 ms ping stream and measure the outage.
    Failover,
    /// Nodes that know only h0's endpoint find each other through the DHT;
    /// then h0 is killed.
    Discovery,
    /// UDP multicast from h0 to sockets that joined a group: the group, its
    /// tree, delivery counts, and a tree link cut under the stream.
    Multicast,
    /// A realtime stream through a 20 Mbit/s bottleneck that bulk TCP fills,
    /// without and with QoS, and a class capped at 5 Mbit/s (needs iperf3).
    Qos,
    /// Two members behind NAT routers of their own, strangers to each
    /// other: traffic starts relayed through h0 and goes direct once both
    /// NATs are punched (3 nodes).
    Nat,
}

/// Runs the demo.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if !is_root() {
        eprintln!(
            "weft demo needs root: it creates network namespaces, veth links and TUN devices; run it with sudo"
        );
        return Ok(ExitCode::from(2));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let _signals = SignalWatch::install(Arc::clone(&interrupted))?;
    let mut options =
        TestbedOptions::new(std::env::current_exe().context("finding the weft binary")?);
    options.cancel = Some(Arc::clone(&interrupted));
    if args.scenario == Scenario::Failover && args.nodes < 3 {
        eprintln!(
            "weft demo: the failover scenario needs --nodes 3 or more (a relay besides h0 and h1)"
        );
        return Ok(ExitCode::from(2));
    }
    if args.scenario == Scenario::Tour && args.nodes >= 4 {
        options.extra_config.push_str(multicast::MULTICAST);
    }
    if args.scenario == Scenario::Multicast {
        if args.nodes < 4 {
            eprintln!(
                "weft demo: the multicast scenario needs --nodes 4 or more (a sender, two members, a non-member)"
            );
            return Ok(ExitCode::from(2));
        }
        options.extra_config.push_str(multicast::MULTICAST);
    }
    if args.scenario == Scenario::Qos && !crate::testbed::have_iperf3() {
        eprintln!(
            "weft demo: the qos scenario needs iperf3 (apt-get install iperf3, or scripts/install-test-deps.sh)"
        );
        return Ok(ExitCode::from(2));
    }
    if args.scenario == Scenario::Discovery {
        if args.nodes < 3 {
            eprintln!("weft demo: the discovery scenario needs --nodes 3 or more");
            return Ok(ExitCode::from(2));
        }
        let n = usize::from(args.nodes);
        options.bootstrap = Some((1..n).map(|i| (i, vec![0])).collect());
        options.extra_config.push_str(discovery::NEIGHBOURS);
        options.dht_tuning.push_str(discovery::DHT_TUNING);
    }
    if args.scenario == Scenario::Nat {
        if args.nodes != 3 {
            eprintln!("weft demo: the nat scenario runs on 3 nodes (--nodes 3)");
            return Ok(ExitCode::from(2));
        }
        if !crate::testbed::have_nft() {
            eprintln!(
                "weft demo: the nat scenario needs nftables for its NAT routers (apt-get install nftables)"
            );
            return Ok(ExitCode::from(2));
        }
        nat::configure(&mut options);
    }
    let result = demo(args, options, &interrupted);
    // The test bed is gone by now: `demo` owned it.
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("weft demo: interrupted; everything it made has been removed");
        return Ok(ExitCode::from(130));
    }
    match result {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => Ok(ExitCode::FAILURE),
        Err(error) => {
            eprintln!("weft demo: {error:#}");
            eprintln!("weft demo: everything it made has been removed");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The demo proper; returns whether the scenario succeeded.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
fn demo(
    args: &DemoArgs,
    options: TestbedOptions,
    interrupted: &AtomicBool,
) -> anyhow::Result<bool> {
    let n = usize::from(args.nodes);
    println!(
        "weft demo: building {n} nodes, each in its own network namespace, on one virtual bridge ..."
    );
    let testbed = Testbed::new(n, options)?;
    println!(
        "  temp dir (keys, certificates, configs, logs): {}",
        testbed.dir().display()
    );
    if args.scenario == Scenario::Nat {
        let direct = nat::run(&testbed, interrupted)?;
        println!("tearing down ...");
        drop(testbed);
        println!("done: all namespaces, NAT routers, links, daemons and files removed.");
        return Ok(direct);
    }
    if args.scenario == Scenario::Discovery {
        let reached = discovery::run(&testbed, interrupted)?;
        println!("{}", discovery_explanation());
        println!("tearing down ...");
        drop(testbed);
        println!("done: all namespaces, links, daemons and files removed.");
        return Ok(reached);
    }
    println!("waiting for the nodes to authenticate each other and set up sessions ...");
    testbed.wait_established(establish_timeout(n))?;

    let first = testbed.host(0);
    println!(
        "\n$ weft status      (on {}, namespace {})",
        first.name(),
        first.netns()
    );
    print!("{}", first.status_table()?);

    let proxy = match map::MapProxy::start(first, args.map_port) {
        Ok(proxy) => {
            println!(
                "\nlive network map of the overlay, as {} sees it: open {}",
                first.name(),
                proxy.url("")
            );
            Some(proxy)
        }
        Err(error) => {
            println!("\n(no network map: {error:#})");
            None
        }
    };
    let map_url = |query: &str| {
        proxy
            .as_ref()
            .map(|p| format!(" (map: {})", p.url(query)))
            .unwrap_or_default()
    };

    let ok = match args.scenario {
        Scenario::Failover => failover::run(&testbed, &failover_plan(args), interrupted)?,
        Scenario::Multicast => multicast::run(&testbed, interrupted)?,
        Scenario::Qos => qos::run(&testbed, interrupted)?,
        Scenario::Overlay => overlay(&testbed, interrupted)?,
        Scenario::Tour => {
            let mut ok = overlay(&testbed, interrupted)?;
            if n >= 3 {
                ok &= state::settle(&testbed, "before failover")?;
                println!(
                    "\nNext, failover: the h0-h1 link is cut, then restored; on the map the link turns grey and the path to h1 moves through another node, and back{}",
                    map_url("destination=h1")
                );
                linger(PAUSE, interrupted);
                let plan = failover::FailoverPlan {
                    trials: 1,
                    ..failover_plan(args)
                };
                ok &= failover::run(&testbed, &plan, interrupted)?;
            }
            if n >= 4 {
                ok &= state::settle(&testbed, "before multicast")?;
                println!(
                    "\nNext, multicast: pick the group 239.1.2.3 on the map to see its tree; a link of the tree is cut, then restored{}",
                    map_url("group=239.1.2.3")
                );
                linger(PAUSE, interrupted);
                ok &= multicast::run(&testbed, interrupted)?;
                if crate::testbed::have_iperf3() {
                    ok &= state::settle(&testbed, "before QoS")?;
                    println!("\nNext, QoS{}", map_url(""));
                    linger(PAUSE, interrupted);
                    ok &= qos::run(&testbed, interrupted)?;
                } else {
                    println!(
                        "\n(the QoS scenario needs iperf3: apt-get install iperf3, then weft demo --scenario qos)"
                    );
                }
            }
            ok
        }
        // Returned above, before the sessions are awaited.
        Scenario::Discovery => bail!("the discovery scenario runs on its own"),
        Scenario::Nat => bail!("the nat scenario runs on its own"),
    };
    // What the user watches on the map from here on.
    let ok = state::settle(&testbed, "now")? && ok;
    if let Some(proxy) = &proxy {
        keep_up(args, proxy, interrupted);
    }
    drop(proxy);
    println!("tearing down ...");
    drop(testbed);
    println!("done: all namespaces, links, daemons and files removed.");
    Ok(ok)
}

/// Pause before a tour step when someone watches (a terminal), so the map
/// can be opened; none in scripts and tests.
const PAUSE: Duration = Duration::from_secs(5);

fn failover_plan(args: &DemoArgs) -> failover::FailoverPlan {
    failover::FailoverPlan {
        trials: args.trials,
        loss_percent: args.loss_percent,
        idle: Duration::from_secs(args.idle_secs),
    }
}

/// Whether a person is watching: stdin and stdout are terminals.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Waits `pause` if interactive, or until interrupted.
fn linger(pause: Duration, interrupted: &AtomicBool) {
    if interactive() {
        wait(Some(pause), interrupted);
    }
}

/// Sleeps in short steps until `limit` (`None`: forever) or a signal.
fn wait(limit: Option<Duration>, interrupted: &AtomicBool) {
    #[allow(clippy::disallowed_methods)] // the demo's own wall clock
    let start = std::time::Instant::now();
    while !interrupted.load(Ordering::Relaxed) && limit.is_none_or(|l| start.elapsed() < l) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keeps the overlay up for the user (see the module doc); a Ctrl-C here
/// is the normal end, not an interruption.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
fn keep_up(args: &DemoArgs, proxy: &map::MapProxy, interrupted: &AtomicBool) {
    let limit = match args.duration {
        Some(0) => return,
        Some(secs) => Some(Duration::from_secs(secs)),
        None if interactive() => None,
        None => return,
    };
    if interrupted.load(Ordering::Relaxed) {
        return;
    }
    match limit {
        Some(limit) => println!(
            "\nthe overlay stays up for {} s; the map: {}",
            limit.as_secs(),
            proxy.url("")
        ),
        None => println!(
            "\nthe overlay stays up until Ctrl-C; the map: {}\n(pick a destination for its path, a group for its tree)",
            proxy.url("")
        ),
    }
    wait(limit, interrupted);
    interrupted.store(false, Ordering::Relaxed);
}

/// The overlay scenario: ping matrices over IPv4 and IPv6; whether every
/// pair replied.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
fn overlay(testbed: &Testbed, interrupted: &AtomicBool) -> anyhow::Result<bool> {
    let n = testbed.hosts().len();
    let names: Vec<String> = testbed
        .hosts()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    let ipv4: Vec<IpAddr> = testbed
        .hosts()
        .iter()
        .map(|h| h.overlay_ipv4().map(IpAddr::V4))
        .collect::<anyhow::Result<_>>()?;
    let ipv6: Vec<IpAddr> = testbed
        .hosts()
        .iter()
        .map(|h| h.overlay_ipv6().map(IpAddr::V6))
        .collect::<anyhow::Result<_>>()?;
    let mut all_ok = true;
    for (family, targets) in [("IPv4", &ipv4), ("IPv6", &ipv6)] {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        println!("\n{family} overlay ping, round-trip time in ms (row pings column):");
        let matrix = ping_matrix(testbed, targets)?;
        print!("{}", render_matrix(&names, targets, &matrix));
        all_ok &= every_pair_replied(&matrix);
    }

    println!("{}", explanation(n));
    if all_ok {
        println!("every node reached every other one over the overlay.");
    } else {
        println!(
            "some pairs could not reach each other (marked FAIL). Logs are in {}",
            testbed.dir().display()
        );
        println!("{}", testbed.log_tails());
    }
    Ok(all_ok)
}

/// RTT in ms for every (from, to) pair; `None` on the diagonal and where
/// no reply came.
type Matrix = Vec<Vec<Option<f64>>>;
/// A (from, to) pair and its mean RTT in ms, if any reply came.
type PairResult = ((usize, usize), anyhow::Result<Option<f64>>);

/// Handshakes verify certificates (Ed25519) and do X25519: a debug build
/// (`cargo run`) needs a while when many nodes share two cores.
fn establish_timeout(n: usize) -> Duration {
    Duration::from_secs(10 + 2 * n as u64)
}
const PING: PingOptions = PingOptions {
    count: 3,
    interval: Duration::from_millis(100),
    timeout: Duration::from_millis(1500),
    deadline: None,
};
/// Pings running at once (each is a thread in a namespace).
const PARALLEL_PINGS: usize = 32;

/// Pings all pairs at once, a bounded number of threads at a time.
fn ping_matrix(testbed: &Testbed, targets: &[IpAddr]) -> anyhow::Result<Matrix> {
    ping_matrix_from(testbed, 0, targets)
}

/// [`ping_matrix`] with the hosts from `first` on as rows (host `first + a`
/// pings `targets[b]`).
fn ping_matrix_from(testbed: &Testbed, first: usize, targets: &[IpAddr]) -> anyhow::Result<Matrix> {
    let n = targets.len();
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect();
    let mut matrix = vec![vec![None; n]; n];
    for chunk in pairs.chunks(PARALLEL_PINGS) {
        let results: Vec<PairResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(a, b)| {
                    let target = targets[b];
                    let host = testbed.host(first + a);
                    let handle = scope.spawn(move || {
                        host.enter(|| ping(target, &PING, |_| {}))
                            .and_then(|report| Ok(report?.avg_ms))
                    });
                    ((a, b), handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(pair, handle)| {
                    let result = handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("ping thread panicked")));
                    (pair, result)
                })
                .collect()
        });
        for ((a, b), result) in results {
            matrix[a][b] = result?;
        }
    }
    Ok(matrix)
}

fn every_pair_replied(matrix: &Matrix) -> bool {
    matrix.iter().enumerate().all(|(a, row)| {
        row.iter()
            .enumerate()
            .all(|(b, cell)| a == b || cell.is_some())
    })
}

fn render_matrix(names: &[String], targets: &[IpAddr], matrix: &Matrix) -> String {
    let width = 9;
    let mut text = format!("{:>width$}", "");
    for name in names {
        let _ = write!(text, "{name:>width$}");
    }
    text.push('\n');
    for (a, row) in matrix.iter().enumerate() {
        let _ = write!(text, "{:>width$}", names[a]);
        for (b, cell) in row.iter().enumerate() {
            let cell = match cell {
                _ if a == b => "-".to_owned(),
                Some(ms) => format!("{ms:.2}"),
                None => "FAIL".to_owned(),
            };
            let _ = write!(text, "{cell:>width$}");
        }
        text.push('\n');
    }
    let addresses: Vec<String> = names
        .iter()
        .zip(targets)
        .map(|(n, t)| format!("{n}={t}"))
        .collect();
    let _ = writeln!(text, "  ({})", addresses.join(", "));
    text
}

fn discovery_explanation() -> &'static str {
    "\nWhat you just saw:\n\
     - No node was configured with any peer: each knew only h0's underlay endpoint, and joined the\n  \
       Kademlia DHT through it (signed messages over the same UDP socket, members only).\n\
     - Each node published a record signed with its own key (certificate, endpoints) under its node id,\n  \
       name and overlay address; `weft lookup` showed the queries that found one.\n\
     - A ping to a node that was not a peer yet started a lookup of that address and a handshake; the\n  \
       first packet waited in a small queue meanwhile. Names work too: each daemon answers NAME.weft\n  \
       (A and AAAA) on its overlay addresses, port 53.\n\
     - Killing h0 changed nothing: the DHT has no central server."
}

fn explanation(n: usize) -> String {
    format!(
        "\nWhat you just saw:\n\
         - {n} weft daemons ran, each in its own network namespace: a separate network stack, as if on\n  \
           its own machine. Their only link is a virtual Ethernet bridge, the \"underlay\" 198.18.0.0/24.\n\
         - A throwaway network CA signed a certificate for each node (name, keys, overlay IPv4). The nodes\n  \
           proved their certificates to each other in a Noise IX handshake; only members of the same CA\n  \
           can join.\n\
         - Each daemon made a TUN device, weft0, with two overlay addresses: an IPv6 address in\n  \
           fd77:6566::/32 derived from its public key (nobody else can claim it) and the IPv4 address\n  \
           from its certificate (198.19.0.0/16).\n\
         - Every ping above was an ordinary ICMP packet sent to weft0: the sending daemon encrypted it\n  \
           (ChaCha20-Poly1305) and sent it as UDP to port 4800 of the peer's underlay address; the peer\n  \
           decrypted, checked it came from that peer's overlay address, and delivered it to its weft0.\n\
         - Try it yourself on two machines: see README.md (weft ca init, weft init, weft ca sign, weft up).\n"
    )
}

/// Turns SIGINT and SIGTERM into a flag while it lives, so that the demo
/// can unwind and clean up instead of dying mid-way.
struct SignalWatch {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SignalWatch {
    fn install(flag: Arc<AtomicBool>) -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the signal watcher")?;
        // Register the handlers here, before the test bed exists, so no
        // signal can slip through with its default (fatal) action.
        let (mut interrupt, mut terminate) = {
            let _guard = runtime.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                loop {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                        _ = &mut stopped => return,
                    }
                    eprintln!("\nweft demo: signal received, cleaning up ...");
                    flag.store(true, Ordering::Relaxed);
                }
            });
        });
        Ok(SignalWatch {
            thread: Some(thread),
            stop: Some(stop),
        })
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_marks_failures_and_the_diagonal() {
        let names = vec!["h0".to_owned(), "h1".to_owned()];
        let targets: Vec<IpAddr> =
            vec!["198.19.0.1".parse().unwrap(), "198.19.0.2".parse().unwrap()];
        let matrix = vec![vec![None, Some(0.5)], vec![None, None]];
        let text = render_matrix(&names, &targets, &matrix);
        assert!(text.contains("0.50"), "{text}");
        assert!(text.contains("FAIL"), "{text}");
        assert_eq!(text.matches('-').count(), 2, "{text}");
        assert!(!every_pair_replied(&matrix));
        assert!(every_pair_replied(&vec![
            vec![None, Some(1.0)],
            vec![Some(1.0), None]
        ]));
    }
}
