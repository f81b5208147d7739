//! The member mesh: members of a group find each other through the
//! group's rendezvous in the DHT and keep sessions with each other, so a
//! group is connected whatever the overlay between them. In a chain of
//! twelve nodes whose members sit at both ends and in the middle (no two
//! share a neighbour), every member gets every packet once; before the
//! mesh, the tree listed the far members as unreached. Only members keep
//! mesh sessions, and rendezvous entries sit on a bounded set of DHT
//! holders.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weft_core::NeighbourConfig;
use weft_sim::{
    HostId, NodeSpec, Sim, add_node, mesh_ipv4, parse_udp, peer_config, test_ca, udp_packet,
};

use common::{counter, ms, new_sim, secs};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 7, 7, 7);

/// `n` nodes in a chain of configured sessions (node i calls node i − 1),
/// with no neighbours picked from the DHT: the overlay is the chain, while
/// the underlay lets any two nodes reach each other.
fn chain(sim: &mut Sim, n: usize) -> Vec<HostId> {
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let mut hosts: Vec<HostId> = Vec::new();
    for i in 0..n {
        let mut spec = NodeSpec::new(sim, &format!("n{i}"), i as u64);
        spec.ipv4 = Some(mesh_ipv4(i));
        spec.neighbours = NeighbourConfig {
            max: 0,
            random: 0,
            ..NeighbourConfig::default()
        };
        if let Some(&previous) = hosts.last() {
            spec.peers = vec![peer_config(sim, previous)];
        }
        hosts.push(add_node(sim, &ca, &spec).unwrap());
    }
    hosts
}

fn received(sim: &Sim, host: HostId) -> Vec<u32> {
    let mut seqs: Vec<u32> = sim
        .tun(host)
        .iter()
        .filter_map(|d| {
            let udp = parse_udp(&d.packet)?;
            if udp.destination.ip() != IpAddr::V4(GROUP) {
                return None;
            }
            std::str::from_utf8(udp.payload).ok()?.parse().ok()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn members_far_apart_in_a_chain_are_meshed_and_get_every_packet_once() {
    let mut sim = new_sim(131);
    let hosts = chain(&mut sim, 12);
    sim.run_for(secs(10));
    let members = [hosts[0], hosts[6], hosts[11]];
    for &m in &members {
        sim.with_node(m, |node, now| node.join_group(now, IpAddr::V4(GROUP)))
            .unwrap()
            .unwrap();
    }
    // Rendezvous, sessions, settled links, records.
    sim.run_for(secs(15));
    for &source in &members {
        let tree = sim
            .with_node(source, |node, now| {
                node.multicast_tree(now, None, IpAddr::V4(GROUP))
            })
            .unwrap()
            .unwrap();
        assert_eq!(tree.members.len(), 2, "{tree:?}");
        assert!(tree.unreached.is_empty(), "{tree:?}");
    }
    let source = members[0];
    let from = SocketAddr::new(IpAddr::V4(sim.overlay_ipv4(source).unwrap()), 4000);
    let to = SocketAddr::new(IpAddr::V4(GROUP), 5000);
    let start = sim.elapsed() + ms(1);
    for i in 0..100u32 {
        let packet = udp_packet(from, to, i.to_string().as_bytes()).unwrap();
        sim.schedule_tun(start + ms(10) * i, source, packet);
    }
    sim.run_for(secs(3));
    for &m in &members[1..] {
        assert_eq!(
            received(&sim, m),
            (0..100).collect::<Vec<_>>(),
            "{}",
            sim.name(m)
        );
    }
    for &h in &hosts {
        if !members.contains(&h) {
            assert!(received(&sim, h).is_empty(), "{} is no member", sim.name(h));
        }
        assert_eq!(counter(&sim, h, "mcast_duplicates"), 0, "{}", sim.name(h));
    }
    // Rendezvous state sits only on DHT holders: each of the three entries
    // on at most `replication` (8) nodes.
    let held: usize = hosts
        .iter()
        .map(|&h| sim.node(h).unwrap().rendezvous_entries_held())
        .sum();
    assert!((1..=3 * 8).contains(&held), "{held} entries held");
}
