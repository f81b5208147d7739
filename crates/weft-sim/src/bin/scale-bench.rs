//! `scale-bench`: whole `weft_core::Node`s at scale, measured.
//!
//! Builds N complete nodes (sessions, link monitors, routing, DHT,
//! multicast and QoS all on, default `[neighbours]`), each bootstrapping
//! from one earlier node chosen at random, over the simulator's default
//! underlay; lets them settle; then measures, with no data traffic, every
//! datagram each node sends and receives (probes, keepalives, link state,
//! membership, DHT maintenance: all of it) over a window, and samples the
//! sessions each node holds and the link-state records it holds. Then it
//! starts traffic between random pairs (sessions on demand) and reports how
//! many delivered every packet; then gives one node a CA-signed revocation
//! list and measures how long the list takes to reach every other node.
//! Memory is the process's resident set divided by N: the simulator's own
//! state is in it too, so it is an upper bound per node.
//!
//! Prints one Markdown table row per run; `bench/scale.sh` runs several N
//! and records them in docs/BENCHMARKS.md. Figures are from whole nodes in
//! virtual time, not from real daemons.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use std::time::{Duration, Instant};

use clap::Parser;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use weft_core::{NeighbourConfig, RevocationList, RevocationTemplate, SessionState};
use weft_sim::{FlowSpec, HostId, NodeSpec, Sim, add_node, mesh_ipv4, test_ca};

#[derive(Parser, Debug)]
#[command(
    about = "Whole weft nodes at scale in the simulator: idle control traffic, sessions, reachability"
)]
struct Args {
    /// Nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Seed of the simulator and of the choices here.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds to settle before measuring.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Simulated seconds of idle traffic measured: at least one
    /// `lsa_refresh` (60 s), or the window may hold a burst of refreshes
    /// or none.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Random pairs that exchange traffic after the window.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Print the table's header first.
    #[arg(long)]
    header: bool,
}

fn main() {
    let args = Args::parse();
    #[allow(clippy::disallowed_methods)] // a benchmark measures its own wall time
    let wall = Instant::now();
    #[allow(clippy::disallowed_methods)] // the simulator needs a base instant
    let mut sim = Sim::new(Instant::now(), args.seed);
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let ca = match test_ca(1, sim.unix_time()) {
        Ok(ca) => ca,
        Err(error) => return eprintln!("test CA: {error}"),
    };
    let mut hosts: Vec<HostId> = Vec::new();
    for i in 0..args.nodes {
        let mut spec = NodeSpec::new(&sim, &format!("n{i}"), i as u64);
        spec.ipv4 = Some(mesh_ipv4(i % 60_000));
        spec.neighbours = NeighbourConfig::default();
        if i > 0 {
            let at = (rng.next_u64() % i as u64) as usize;
            spec.bootstrap = vec![sim.address(hosts[at])];
        }
        match add_node(&mut sim, &ca, &spec) {
            Ok(host) => hosts.push(host),
            Err(error) => return eprintln!("node {i}: {error}"),
        }
        // Joins spread over the first ten seconds.
        sim.run_for(Duration::from_millis(10_000 / args.nodes.max(1) as u64));
    }
    sim.run_for(Duration::from_secs(args.settle));

    let before: Vec<_> = hosts.iter().map(|&h| sim.traffic(h)).collect();
    let counted =
        |sim: &Sim, name: &str| -> u64 { hosts.iter().filter_map(|&h| sim.counter(h, name)).sum() };
    let lsa_before = counted(&sim, "lsa_tx_bytes");
    // What makes records and sessions change at idle, summed over nodes
    // for the window (printed to stderr, beside the table).
    const CAUSES: [&str; 11] = [
        "lsa_originated_change",
        "lsa_originated_drift",
        "lsa_originated_refresh",
        "lsa_held",
        "links_up",
        "links_down",
        "handshakes_completed",
        "handshake_timeouts",
        "peers_lost",
        "sessions_evicted",
        "route_computations",
    ];
    let causes_before: Vec<u64> = CAUSES.iter().map(|c| counted(&sim, c)).collect();
    let probe_before = counted(&sim, "probe_tx_bytes");
    let mut peak_sessions = vec![0usize; hosts.len()];
    for _ in 0..args.window {
        sim.run_for(Duration::from_secs(1));
        let now = sim.now();
        for (i, &h) in hosts.iter().enumerate() {
            if let Some(node) = sim.node(h) {
                let held = node
                    .peers(now)
                    .iter()
                    .filter(|p| p.state == SessionState::Established)
                    .count();
                peak_sessions[i] = peak_sessions[i].max(held);
            }
        }
    }
    let records: Vec<f64> = hosts
        .iter()
        .filter_map(|&h| sim.node(h))
        .map(|n| {
            n.topology(sim.now())
                .nodes
                .iter()
                .filter(|t| t.advertised && !t.this_node)
                .count() as f64
        })
        .collect();
    let rss_per_node = resident_bytes() as f64 / args.nodes.max(1) as f64;
    let window = args.window.max(1) as f64;
    let causes: Vec<String> = CAUSES
        .iter()
        .zip(&causes_before)
        .map(|(c, b)| format!("{c} {}", counted(&sim, c) - b))
        .collect();
    eprintln!(
        "{} nodes, idle window of {} s, summed over nodes: {}; timer stalls so far {}",
        args.nodes,
        args.window,
        causes.join(", "),
        sim.stats().timer_stalls,
    );
    let mut sent: Vec<f64> = hosts
        .iter()
        .zip(&before)
        .map(|(&h, b)| (sim.traffic(h).sent_bytes - b.sent_bytes) as f64 / window)
        .collect();
    let all_sent: f64 = sent.iter().sum::<f64>() * window;
    let share = |bytes: u64| 100.0 * bytes as f64 / all_sent.max(1.0);
    let lsa_share = share(counted(&sim, "lsa_tx_bytes") - lsa_before);
    let probe_share = share(counted(&sim, "probe_tx_bytes") - probe_before);
    let mut received: Vec<f64> = hosts
        .iter()
        .zip(&before)
        .map(|(&h, b)| (sim.traffic(h).received_bytes - b.received_bytes) as f64 / window)
        .collect();

    let mut flows = Vec::new();
    let start = sim.elapsed();
    // Every node's counters as the pairs start, for the slow-first-packet
    // report below.
    let stats_at_start: std::collections::BTreeMap<HostId, weft_core::Stats> = hosts
        .iter()
        .filter_map(|&h| Some((h, sim.node(h)?.stats().clone())))
        .collect();
    let failed_lookups =
        |sim: &Sim, h: HostId| sim.node(h).map_or(0, |n| n.dht_stats().lookups_failed);
    let pair_counters = |sim: &Sim, h: HostId| {
        (
            failed_lookups(sim, h),
            sim.counter(h, "unreachable").unwrap_or(0),
            sim.counter(h, "tx_no_path").unwrap_or(0),
        )
    };
    let mut pair_before = Vec::new();
    for _ in 0..args.pairs {
        let a = hosts[(rng.next_u64() % hosts.len() as u64) as usize];
        let mut b = a;
        while b == a && hosts.len() > 1 {
            b = hosts[(rng.next_u64() % hosts.len() as u64) as usize];
        }
        let spec = FlowSpec::new(a, b)
            .with_start(start)
            .with_count(10)
            .with_interval(Duration::from_millis(100));
        if let Ok(flow) = sim.start_flow(&spec) {
            flows.push(flow);
            pair_before.push((a, b, pair_counters(&sim, a)));
        }
    }
    sim.run_for(Duration::from_secs(10));
    let whole = flows
        .iter()
        .filter(|&&f| sim.flow(f).arrived.iter().all(Option::is_some))
        .count();
    // Why a pair lost packets: what its sender counted meanwhile (lookups
    // that failed, unreachables written to its TUN, packets with no path).
    for (&f, &(a, b, before)) in flows.iter().zip(&pair_before) {
        let report = sim.flow(f);
        let lost = report.arrived.iter().filter(|x| x.is_none()).count();
        if lost > 0 {
            let after = pair_counters(&sim, a);
            let status = sim.peer_status(a, b).map(|p| {
                format!(
                    "state {:?}, endpoint {:?}, path {:?} via {:?}, link {:?}",
                    p.state, p.endpoint, p.path, p.via, p.link
                )
            });
            let ok_lookups = sim.node(a).map_or(0, |n| n.dht_stats().lookups_ok);
            // Every handshake and relay counter of both ends that is not 0.
            let counters = |h: HostId| -> String {
                nonzero_counters(&sim, h, |name| {
                    name.starts_with("handshake")
                        || name.contains("cookie")
                        || name.contains("relay")
                })
            };
            eprintln!("  sender: {}", counters(a));
            eprintln!("  receiver: {}", counters(b));
            let relay_no_route: u64 = hosts
                .iter()
                .filter_map(|&h| sim.counter(h, "relay_no_route"))
                .sum();
            eprintln!("  relay_no_route over all nodes: {relay_no_route}");
            eprintln!(
                "pair {} -> {}: {lost} of {} lost; sender's failed lookups +{}, unreachables +{}, no path +{}, on-demand lookups {}, lookups ok {}; sender's view of the receiver at the end: {}",
                sim.name(a),
                sim.name(b),
                report.arrived.len(),
                after.0 - before.0,
                after.1 - before.1,
                after.2 - before.2,
                sim.counter(a, "lookups_on_demand").unwrap_or(0),
                ok_lookups,
                status.unwrap_or_else(|| "no peer entry".into()),
            );
        }
    }
    // Revocation: node 0 is given a list revoking one other node; how long
    // until every other node holds it.
    let revoked = hosts[hosts.len() - 1];
    let list = RevocationList::sign(
        &ca,
        &RevocationTemplate {
            version: 1,
            issued_at: sim.unix_time(),
            node_ids: vec![sim.node_id(revoked)],
            certificates: Vec::new(),
            names: Vec::new(),
        },
    );
    let holds = |sim: &Sim, h: HostId| {
        sim.node(h)
            .and_then(|n| n.revocation_list().map(RevocationList::version))
            == Some(1)
    };
    let revocation = match list {
        Ok(list) if hosts.len() > 2 => {
            let _ = sim.with_node(hosts[0], |node, now| node.set_revocations(now, list));
            let issued = sim.elapsed();
            let others: Vec<HostId> = hosts[1..hosts.len() - 1].to_vec();
            let reached = sim.run_until_condition(issued + Duration::from_secs(60), |s| {
                others.iter().all(|&h| holds(s, h))
            });
            let got = others.iter().filter(|&&h| holds(&sim, h)).count();
            if reached {
                format!("{:.2} s", (sim.elapsed() - issued).as_secs_f64())
            } else {
                format!("{got}/{} in 60 s", others.len())
            }
        }
        Ok(_) => "n/a".into(),
        Err(error) => format!("list: {error}"),
    };
    let first_packet: Vec<Duration> = flows
        .iter()
        .filter_map(|&f| {
            let report = sim.flow(f);
            Some(report.arrived.first().copied()?? - *report.sent.first()?)
        })
        .collect();
    // A slow first packet: what its sender did meanwhile (to stderr).
    for &f in &flows {
        let report = sim.flow(f);
        let (Some(Some(arrived)), Some(sent)) = (report.arrived.first(), report.sent.first())
        else {
            continue;
        };
        let delay = *arrived - *sent;
        if delay > Duration::from_millis(200) {
            // What changed on each end since the pairs started, leaving
            // out the byte and packet counts every flow moves.
            let counters = |h: HostId| -> String {
                let (Some(node), Some(before)) = (sim.node(h), stats_at_start.get(&h)) else {
                    return String::new();
                };
                node.stats()
                    .iter()
                    .zip(before.iter())
                    .filter(|((name, _), _)| {
                        !name.ends_with("_bytes") && !name.ends_with("_packets")
                    })
                    .filter(|((_, now), (_, was))| now > was)
                    .map(|((name, now), (_, was))| format!("{name} +{}", now - was))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            eprintln!(
                "slow first packet {} -> {}: {} ms; sender: {}; receiver: {}",
                sim.name(report.from),
                sim.name(report.to),
                delay.as_millis(),
                counters(report.from),
                counters(report.to),
            );
        }
    }

    if args.header {
        println!(
            "| nodes | control sent per node, B/s: mean / p99 / max | of which link state / probes | received: mean / max | sessions per node (peak): mean / max | records held per node: mean / max | memory per node (process RSS / N) | pairs whole | first packet of a new pair: median / max | revocation reaches all | simulated s | wall s |"
        );
        println!("| ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: | ---: |");
    }
    let sessions: Vec<f64> = peak_sessions.iter().map(|&s| s as f64).collect();
    let mut first_ms: Vec<f64> = first_packet.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    println!(
        "| {} | {:.0} / {:.0} / {:.0} | {:.0} % / {:.0} % | {:.0} / {:.0} | {:.1} / {:.0} | {:.1} / {:.0} | {:.2} MiB | {whole}/{} | {:.0} ms / {:.0} ms | {revocation} | {:.0} | {:.1} |",
        args.nodes,
        mean(&sent),
        percentile(&mut sent, 0.99),
        percentile(&mut sent, 1.0),
        lsa_share,
        probe_share,
        mean(&received),
        percentile(&mut received, 1.0),
        mean(&sessions),
        sessions.iter().copied().fold(0.0, f64::max),
        mean(&records),
        records.iter().copied().fold(0.0, f64::max),
        rss_per_node / (1024.0 * 1024.0),
        flows.len(),
        percentile(&mut first_ms, 0.5),
        percentile(&mut first_ms, 1.0),
        sim.elapsed().as_secs_f64(),
        wall.elapsed().as_secs_f64(),
    );
}

/// The process's resident set in bytes (0 where /proc is not there).
/// `host`'s counters that are not 0 and whose names `wanted` picks, as
/// "name value, ...".
fn nonzero_counters(sim: &Sim, host: HostId, wanted: impl Fn(&str) -> bool) -> String {
    sim.node(host).map_or(String::new(), |n| {
        n.stats()
            .iter()
            .filter(|(name, v)| *v > 0 && wanted(name))
            .map(|(name, v)| format!("{name} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let at = ((values.len() - 1) as f64 * q).round() as usize;
    values[at.min(values.len() - 1)]
}
