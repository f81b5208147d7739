//! A large full mesh under random link failures: whenever the graph of
//! working links stays connected, every pair of nodes stays reachable.
//!
//! 50 nodes (1225 links) in release builds; 30 in debug builds, where the
//! unoptimised core would take too long for the test suite's budget. The
//! simulator's own breadth-first search over its link states decides which
//! pairs must reach each other; a random sample of pairs sends a packet
//! every 250 ms, and after each change every sampled pair must be whole
//! again within a few seconds. Deterministic from the seed
//! (`WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use weft_core::{Event, MAX_INTERMEDIATES, Metric};
use weft_sim::{Endpoints, FlowId, FlowSpec, HostId, LinkChange, MeshBuilder, Sim};

use common::{converge, millis, ms, new_sim, path, path_changes, secs, snapshot};

/// Nodes in the mesh: fewer in debug builds (see the module doc), or
/// `WEFT_SIM_MESH_NODES`.
const NODES: usize = if cfg!(debug_assertions) { 20 } else { 50 };
const NODES_ENV: &str = "WEFT_SIM_MESH_NODES";
/// Share of links cut in each round.
const CUT_SHARE: f64 = 0.2;
/// Rounds of new random cuts.
const ROUNDS: usize = 4;
/// How long each round lasts.
const ROUND: Duration = Duration::from_secs(5);
/// How soon after a change every sampled pair must be whole again: a cut
/// idle link is noticed only after three unanswered idle probes (3 s with
/// the default `probe_idle` of 1 s), and until then a path may still lead
/// over it; one more second for link state to spread and routes to move.
const BUDGET: Duration = Duration::from_secs(4);
/// Ordered pairs that send traffic.
const SAMPLED_PAIRS: usize = 200;

#[test]
fn every_connected_pair_stays_reachable_while_random_links_fail() {
    let nodes = std::env::var(NODES_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(NODES);
    let mut sim = new_sim(36);
    let mesh = MeshBuilder::new(nodes)
        .with_endpoints(Endpoints::OlderCallsNewer)
        .build(&mut sim)
        .unwrap();
    let hosts = mesh.hosts.clone();
    converge(&mut sim, &hosts, secs(20));
    let converged_at = sim.elapsed();

    let mut rng = ChaCha20Rng::seed_from_u64(sim.seed());
    let links: Vec<(HostId, HostId)> = hosts
        .iter()
        .enumerate()
        .flat_map(|(i, &a)| hosts[i + 1..].iter().map(move |&b| (a, b)))
        .collect();
    let pairs = sample_pairs(&mut rng, &hosts);

    let start = sim.elapsed();
    let end = start + ROUND * ROUNDS as u32;
    let flows: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, &(from, to))| {
            // Spread the packets over the interval rather than sending
            // them all at once.
            let offset = ms(250) * i as u32 / pairs.len() as u32;
            let spec = FlowSpec::new(from, to)
                .with_start(start + offset)
                .with_interval(ms(250))
                .until(end);
            sim.start_flow(&spec).unwrap()
        })
        .collect();

    let mut cut: BTreeSet<(HostId, HostId)> = BTreeSet::new();
    let mut worst = Duration::ZERO;
    let mut checked_rounds = 0;
    for round in 0..ROUNDS {
        let changed_at = start + ROUND * round as u32;
        sim.run_until(changed_at);
        let next: BTreeSet<_> = links
            .iter()
            .copied()
            .filter(|_| unit(&mut rng) < CUT_SHARE)
            .collect();
        for &(a, b) in cut.difference(&next) {
            sim.change_link(a, b, LinkChange::Up);
            sim.change_link(b, a, LinkChange::Up);
        }
        for &(a, b) in next.difference(&cut) {
            sim.change_link(a, b, LinkChange::Down);
            sim.change_link(b, a, LinkChange::Down);
        }
        cut = next;
        let components = sim.components(&hosts);
        let round_end = changed_at + ROUND;
        sim.run_until(round_end + ms(500));
        if components.len() != 1 {
            eprintln!(
                "round {round}: {} components; not checked",
                components.len()
            );
            continue;
        }
        checked_rounds += 1;
        for (&(from, to), &flow) in pairs.iter().zip(&flows) {
            let hops = hops(&sim, &hosts, from, to);
            assert!(
                hops <= MAX_INTERMEDIATES + 1,
                "round {round}: {} -> {} is {hops} hops apart",
                sim.name(from),
                sim.name(to)
            );
            let report = sim.flow(flow);
            let whole = report.whole_from(changed_at, round_end).unwrap_or_else(|| {
                panic!(
                    "round {round}: {} -> {} unreachable at the end of the round; \
                     lost {} of {}",
                    sim.name(from),
                    sim.name(to),
                    report.window(changed_at, round_end).lost(),
                    report.window(changed_at, round_end).sent,
                )
            });
            let took = whole.saturating_sub(changed_at);
            assert!(
                took <= BUDGET,
                "round {round} (changed at {changed_at:?}): {} -> {} whole again only after \
                 {took:?}\n{}",
                sim.name(from),
                sim.name(to),
                diagnose(&sim, flow, changed_at)
            );
            worst = worst.max(took);
        }
    }
    assert!(checked_rounds > 0, "no round left the mesh connected");
    assert_eq!(sim.misdelivered(), 0);
    assert_eq!(sim.stats().timer_stalls, 0);
    let lost: usize = flows.iter().map(|&f| sim.flow(f).total().lost()).sum();
    let sent: usize = flows.iter().map(|&f| sim.flow(f).total().sent).sum();
    snapshot(
        "failover",
        &format!("mesh_{nodes}_random_cuts"),
        &[
            ("converge_ms", millis(converged_at).to_string()),
            ("rounds_checked", checked_rounds.to_string()),
            ("worst_whole_ms", millis(worst).to_string()),
            ("lost", format!("{lost}/{sent}")),
            ("events", sim.stats().events.to_string()),
        ],
    );
}

/// What the sender saw of a pair that took too long: lost packets, path
/// changes and link events since `since`, and the path now.
fn diagnose(sim: &Sim, flow: FlowId, since: Duration) -> String {
    let report = sim.flow(flow);
    let (from, to) = (report.from, report.to);
    let lost: Vec<_> = report
        .sent
        .iter()
        .zip(&report.arrived)
        .filter(|(sent, arrived)| **sent >= since && arrived.is_none())
        .map(|(sent, _)| *sent)
        .collect();
    let mut out = format!("lost (sent at): {lost:?}\n");
    let names = |path: &[String]| path.join(",");
    for change in path_changes(sim, from, to, Metric::Latency, since) {
        out += &format!(
            "  {:?} path [{}] -> [{}]\n",
            change.at,
            names(&change.from),
            names(&change.to)
        );
    }
    for (at, event) in sim.events(from) {
        if *at >= since && matches!(event, Event::LinkDown { .. } | Event::LinkUp { .. }) {
            out += &format!("  {at:?} {event:?}\n");
        }
    }
    out += &format!("  now: {:?}", path(sim, from, to, Metric::Latency));
    out
}

/// `SAMPLED_PAIRS` distinct ordered pairs of distinct hosts (all of them
/// if there are fewer).
fn sample_pairs(rng: &mut ChaCha20Rng, hosts: &[HostId]) -> Vec<(HostId, HostId)> {
    let all = hosts.len() * (hosts.len() - 1);
    let mut pairs = BTreeSet::new();
    while pairs.len() < SAMPLED_PAIRS.min(all) {
        let a = hosts[(rng.next_u64() % hosts.len() as u64) as usize];
        let b = hosts[(rng.next_u64() % hosts.len() as u64) as usize];
        if a != b {
            pairs.insert((a, b));
        }
    }
    pairs.into_iter().collect()
}

/// Hops on the shortest path of working links from `from` to `to` (by the
/// simulator's link states); `usize::MAX` if none.
fn hops(sim: &Sim, hosts: &[HostId], from: HostId, to: HostId) -> usize {
    let mut distance = vec![usize::MAX; hosts.len()];
    let index = |h: HostId| hosts.iter().position(|&x| x == h).unwrap();
    distance[index(from)] = 0;
    let mut queue = VecDeque::from([from]);
    while let Some(h) = queue.pop_front() {
        let d = distance[index(h)];
        if h == to {
            return d;
        }
        for &next in hosts {
            let i = index(next);
            if distance[i] == usize::MAX && sim.connected(h, next) {
                distance[i] = d + 1;
                queue.push_back(next);
            }
        }
    }
    usize::MAX
}

/// A uniform draw from `[0, 1)`.
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
