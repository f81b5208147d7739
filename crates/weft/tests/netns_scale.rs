//! Real-host scale test: 24 daemons with a small bounded neighbourhood,
//! each knowing one bootstrap endpoint, reach each other by name, and a
//! cut link carrying a flow is routed around within a second.
//!
//! 24 hosts h0..h23, one network namespace each on one bridge, underlay
//! 198.18.0.1 up (in 198.18.0.0/15). No `[[peers]]` anywhere: host i > 0
//! names exactly one DHT bootstrap endpoint, an earlier host (h((i-1)/2),
//! so the bootstrap graph is a tree rooted at h0, which names none).
//! `[neighbours] max = 4` (one of them random) keeps each node's monitored
//! neighbourhood far below the 23 others, so paths go through relays and
//! sessions open on demand. The test asserts, with deadlines and never
//! fixed sleeps:
//!
//! 1. every node joins the DHT, and before any data flows no node holds a
//!    session with every other (the neighbourhood is bounded: a full mesh
//!    would make the rest of the test say nothing about it);
//! 2. a cut link carrying a flow is routed around within a second: the
//!    test picks two nodes a and b that are neighbours (a session both
//!    ways, each routes to the other directly) and share a neighbour c,
//!    pings b's overlay address from a every 10 ms, cuts the a–b underlay
//!    path with nftables drop rules in both namespaces, and asserts that
//!    the longest silence between replies (last reply before the cut to the
//!    first after) is under 1 s; then it restores the link;
//! 3. every ordered pair, all 24 × 23 = 552 of them, pings by name
//!    (`ping -c 1 -W 2 hJ.weft`, each namespace's resolver pointed at its
//!    own daemon's DNS responder, retried until a deadline).
//!
//! Needs root, nftables and iputils `ping` (scripts/install-test-deps.sh);
//! without them it prints a notice and passes. The daemons run debug
//! builds (CI builds no release binary before the tests) at log level
//! `info`; the whole test took 48 to 82 s on two shared cores (its
//! deadlines fail it after about 2.5 min at most). The test bed removes its namespaces,
//! rules and `/etc/netns` directories also when the test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use weft::testbed::{Testbed, TestbedOptions, have_nft, is_root, outage, overlay_ipv4};

#[path = "support/pairs.rs"]
mod pairs;
use pairs::{have_ping, now, ordered_pairs, ping_pairs};

const HOSTS: usize = 24;
const NEIGHBOURS_MAX: usize = 4;
/// Every node must have DHT contacts this soon after the start.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Two neighbours with a common neighbour, routing to each other directly.
const PAIR_TIMEOUT: Duration = Duration::from_secs(60);
/// The flow must be answered before the cut this soon.
const FLOW_TIMEOUT: Duration = Duration::from_secs(10);
/// Traffic must resume this soon after the cut (the limit below is what
/// is asserted; this only bounds the wait).
const RESUME_TIMEOUT: Duration = Duration::from_secs(5);
/// The outage a cut may cause.
const OUTAGE_LIMIT: Duration = Duration::from_secs(1);
/// Replies counted after the first one past the cut, so a second silence
/// right after the switch would show too.
const AFTER_RESUME: Duration = Duration::from_secs(2);
/// Every ordered pair must ping by name this soon after the cut test (it
/// takes about a minute: the first ping of a new pair often waits out its
/// 2 s while the session forms, and a batch waits for its slowest ping).
const ALL_PAIRS_TIMEOUT: Duration = Duration::from_secs(120);
const INTERVAL: Duration = Duration::from_millis(10);
const STREAM_LIMIT: Duration = Duration::from_secs(60);
const METRIC: &str = "latency";

#[test]
fn twenty_four_nodes_with_small_neighbourhoods_reach_each_other_and_route_around_a_cut() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    if !have_ping() || !have_nft() {
        weft::testbed::skip(
            "ping or nft is not installed (run scripts/install-test-deps.sh as root)",
        );
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.bootstrap = Some((1..HOSTS).map(|i| (i, vec![(i - 1) / 2])).collect());
    options.extra_config = format!("[neighbours]\nmax = {NEIGHBOURS_MAX}\nrandom = 1\n");
    let testbed = Testbed::new(HOSTS, options).expect("building the test bed");
    let start = now();
    for host in testbed.hosts() {
        host.set_resolver(IpAddr::V4(overlay_ipv4(host.index())))
            .unwrap();
    }

    wait_joined(&testbed);
    eprintln!(
        "all {HOSTS} nodes joined the DHT {:.2?} after start",
        start.elapsed()
    );
    let (a, b, c) = wait_neighbours_with_a_common_neighbour(&testbed);
    let sessions = established(&testbed);
    let per_node: Vec<usize> = (0..HOSTS)
        .map(|i| sessions.iter().filter(|&&(x, _)| x == i).count())
        .collect();
    eprintln!(
        "{:.2?} after start: h{a} and h{b} are neighbours with h{c} in common; \
         sessions per node before any data: {per_node:?}",
        start.elapsed()
    );
    assert!(
        per_node.iter().all(|&n| n < HOSTS - 1),
        "a node holds a session with every other before any data flowed, \
         so the neighbourhood is not bounded: {per_node:?}"
    );

    cut_flow_is_routed_around(&testbed, a, b);

    let all = ordered_pairs(&(0..HOSTS).collect::<Vec<_>>());
    let pinging = now();
    let (reached, rounds) = ping_pairs(&testbed, &all, ALL_PAIRS_TIMEOUT);
    let slowest = reached.values().max().copied().unwrap_or(pinging);
    eprintln!(
        "every ordered pair of {HOSTS} nodes ({} pairs) pinged by name in {rounds} round(s), \
         {:.2?} after the pings began, {:.2?} after the daemons started",
        reached.len(),
        slowest.saturating_duration_since(pinging),
        slowest.saturating_duration_since(start)
    );
}

/// Waits until every node has DHT contacts.
fn wait_joined(testbed: &Testbed) {
    testbed
        .wait_until(JOIN_TIMEOUT, "every node to have DHT contacts", || {
            for host in testbed.hosts() {
                if host.status()?["dht"]["contacts"].as_u64().unwrap_or(0) == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .unwrap();
}

/// Ordered pairs (i, j): host i lists j's session as established.
fn established(testbed: &Testbed) -> BTreeSet<(usize, usize)> {
    let mut pairs = BTreeSet::new();
    for host in testbed.hosts() {
        let Ok(status) = host.status() else {
            continue;
        };
        for peer in status["peers"].as_array().into_iter().flatten() {
            let Some(j) = peer["name"]
                .as_str()
                .and_then(|name| name.strip_prefix('h'))
                .and_then(|index| index.parse::<usize>().ok())
            else {
                continue;
            };
            if peer["state"] == "established" {
                pairs.insert((host.index(), j));
            }
        }
    }
    pairs
}

/// Waits for hosts a and b with a session both ways and a direct route
/// each way, and a host c with sessions both ways to each of them (so a
/// detour exists when a–b is cut); returns (a, b, c), the first such
/// triple in order.
fn wait_neighbours_with_a_common_neighbour(testbed: &Testbed) -> (usize, usize, usize) {
    let mut found = None;
    testbed
        .wait_until(
            PAIR_TIMEOUT,
            "two neighbours routing directly with a neighbour in common",
            || {
                let sessions = established(testbed);
                let linked =
                    |x: usize, y: usize| sessions.contains(&(x, y)) && sessions.contains(&(y, x));
                for a in 0..HOSTS {
                    for b in a + 1..HOSTS {
                        if !linked(a, b) {
                            continue;
                        }
                        let Some(c) =
                            (0..HOSTS).find(|&c| c != a && c != b && linked(a, c) && linked(c, b))
                        else {
                            continue;
                        };
                        let direct = |x: usize, y: usize| -> anyhow::Result<bool> {
                            Ok(testbed
                                .host(x)
                                .route_path(&format!("h{y}"), METRIC)?
                                .is_some_and(|path| path.len() == 1))
                        };
                        if direct(a, b)? && direct(b, a)? {
                            found = Some((a, b, c));
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            },
        )
        .unwrap();
    found.unwrap()
}

/// A 10 ms ping stream from a to b over their direct link; the a–b
/// underlay path is cut; the longest silence between replies must stay
/// under [`OUTAGE_LIMIT`]. Restores the link afterwards.
fn cut_flow_is_routed_around(testbed: &Testbed, a: usize, b: usize) {
    let target = IpAddr::V4(overlay_ipv4(b));
    let stream = testbed.host(a).ping_stream(target, INTERVAL, STREAM_LIMIT);
    testbed
        .wait_until(FLOW_TIMEOUT, "replies before the cut", || {
            Ok(stream.replies() >= 100)
        })
        .unwrap();
    let cut = now();
    testbed.cut_pair(a, b).unwrap();
    let cut_done = now();
    testbed
        .wait_until(RESUME_TIMEOUT, "traffic to resume after the cut", || {
            Ok(stream.replies_sent_after(cut_done) > 0)
        })
        .unwrap();
    let resumed = now();
    testbed
        .wait_until(
            AFTER_RESUME + FLOW_TIMEOUT,
            "replies after traffic resumed",
            || {
                Ok(stream
                    .probes()
                    .iter()
                    .any(|probe| probe.sent >= resumed + AFTER_RESUME))
            },
        )
        .unwrap();
    let end = now();
    let path = testbed.host(a).route_path(&format!("h{b}"), METRIC);
    let record = stream.stop().unwrap();
    testbed.restore_pair(a, b).unwrap();
    let outage = outage(&record.probes, cut, end).expect("traffic resumed after the cut");
    eprintln!(
        "cut h{a}-h{b} under a 10 ms ping: outage {:.0} ms ({} requests lost), \
         h{a}'s path to h{b} during the cut {path:?}",
        outage.gap.as_secs_f64() * 1000.0,
        outage.lost
    );
    assert!(
        outage.gap < OUTAGE_LIMIT,
        "the flow h{a} -> h{b} was cut off for {:?} (limit {OUTAGE_LIMIT:?}), \
         path during the cut {path:?}",
        outage.gap
    );
}
