//! Whole nodes at (CI) scale, checked for correctness, not timed: 40
//! complete `Node`s (sessions, link monitors, routing, DHT, multicast and
//! QoS all on, default `[neighbours]`), each bootstrapping from one earlier
//! node chosen at random, as `bench/scale.sh` runs them. After they settle,
//! no control datagram is over `MAX_CONTROL_DATAGRAM`, every node's state is
//! within its stated bounds, and 40 random pairs (sessions on demand)
//! deliver every packet.
//!
//! 40 and not 1,000: a debug build of whole nodes costs about a second of
//! wall time per node per simulated minute here, and the CI run must stay
//! well under its budget; `bench/scale.sh` runs larger N in release and
//! records them in docs/BENCHMARKS.md.

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use common::{ms, new_sim, secs};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use weft_core::wire::MAX_CONTROL_DATAGRAM;
use weft_core::{NeighbourConfig, SessionState};
use weft_sim::{FlowSpec, HostId, NodeSpec, add_node, mesh_ipv4, test_ca};

const NODES: usize = 40;
const PAIRS: usize = 40;

#[test]
fn forty_whole_nodes_stay_within_bounds_and_every_sampled_pair_delivers() {
    forty_whole_nodes(NeighbourConfig::default());
}

/// Runs the scenario; returns the peers evicted over all nodes.
fn forty_whole_nodes(neighbours: NeighbourConfig) -> u64 {
    let mut sim = new_sim(61);
    let mut rng = ChaCha20Rng::seed_from_u64(61);
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let mut hosts: Vec<HostId> = Vec::new();
    for i in 0..NODES {
        let mut spec = NodeSpec::new(&sim, &format!("n{i}"), i as u64);
        spec.ipv4 = Some(mesh_ipv4(i));
        spec.neighbours = neighbours;
        if i > 0 {
            let at = (rng.next_u64() % i as u64) as usize;
            spec.bootstrap = vec![sim.address(hosts[at])];
        }
        hosts.push(add_node(&mut sim, &ca, &spec).unwrap());
        sim.run_for(ms(100));
    }
    sim.run_for(secs(60));

    // Idle so far: every datagram was control traffic.
    let largest = sim.stats().largest_datagram;
    assert!(
        largest <= MAX_CONTROL_DATAGRAM,
        "a {largest}-byte control datagram (limit {MAX_CONTROL_DATAGRAM})"
    );
    let now = sim.now();
    for &h in &hosts {
        let node = sim.node(h).unwrap();
        let sessions = node
            .peers(now)
            .iter()
            .filter(|p| p.state == SessionState::Established)
            .count();
        assert!(
            sessions <= neighbours.max_sessions,
            "{} holds {sessions} sessions",
            sim.name(h)
        );
        assert!(
            node.picked_neighbours().len() <= neighbours.max,
            "{} picked {} neighbours",
            sim.name(h),
            node.picked_neighbours().len()
        );
        assert!(
            node.peer_count() <= neighbours.max_peers,
            "{} holds {} peers",
            sim.name(h),
            node.peer_count()
        );
        assert!(node.certificates_held() <= NODES, "{}", sim.name(h));
        assert_eq!(node.stats().lsa_rejected, 0, "{}", sim.name(h));
    }

    let start = sim.elapsed();
    let mut flows = Vec::new();
    for _ in 0..PAIRS {
        let a = hosts[(rng.next_u64() % NODES as u64) as usize];
        let mut b = a;
        while b == a {
            b = hosts[(rng.next_u64() % NODES as u64) as usize];
        }
        let spec = FlowSpec::new(a, b)
            .with_start(start)
            .with_count(10)
            .with_interval(ms(100));
        flows.push((a, b, sim.start_flow(&spec).unwrap()));
    }
    sim.run_for(secs(10));
    let broken: Vec<String> = flows
        .iter()
        .filter(|(_, _, f)| !sim.flow(*f).arrived.iter().all(Option::is_some))
        .map(|(a, b, _)| format!("{}→{}", sim.name(*a), sim.name(*b)))
        .collect();
    assert!(broken.is_empty(), "pairs that lost packets: {broken:?}");
    for &h in &hosts {
        let node = sim.node(h).unwrap();
        assert!(node.peer_count() <= neighbours.max_peers, "{}", sim.name(h));
    }
    hosts
        .iter()
        .map(|&h| sim.node(h).unwrap().stats().peers_evicted)
        .sum()
}
