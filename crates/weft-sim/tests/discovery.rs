//! Discovery through the DHT at the node level: nodes that each know only
//! one bootstrap endpoint find every other by overlay address (sessions on
//! demand, first packets queued rather than dropped), keep a bounded
//! neighbourhood, answer unknown addresses with ICMP unreachable, survive
//! the loss of the bootstrap node, and route around a failed neighbour
//! link through the neighbourhood.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weft_core::dht::{LookupError, Target};
use weft_core::{Event, Metric, NeighbourConfig, SessionState};
use weft_sim::{FlowSpec, HostId, NodeSpec, Sim, add_node, mesh_ipv4, test_ca, udp_packet};

use common::{counter, ms, new_sim, path, run_until_checked, secs};

/// `count` nodes; node i > 0 bootstraps from node `bootstrap(i)` only.
fn build(
    sim: &mut Sim,
    count: usize,
    neighbours: NeighbourConfig,
    bootstrap: impl Fn(usize) -> usize,
) -> Vec<HostId> {
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let mut hosts = Vec::new();
    for i in 0..count {
        let mut spec = NodeSpec::new(sim, &format!("n{i}"), i as u64);
        spec.ipv4 = Some(mesh_ipv4(i));
        spec.neighbours = neighbours;
        if i > 0 {
            spec.bootstrap = vec![sim.address(hosts[bootstrap(i)])];
        }
        hosts.push(add_node(sim, &ca, &spec).unwrap());
    }
    hosts
}

fn joined(sim: &Sim, hosts: &[HostId], min_contacts: usize) -> bool {
    hosts.iter().all(|&h| {
        sim.node(h)
            .is_none_or(|n| n.dht_contacts().len() >= min_contacts)
    })
}

/// Starts a short flow between every ordered pair and returns them.
fn all_pairs(sim: &mut Sim, hosts: &[HostId], count: u32) -> Vec<weft_sim::FlowId> {
    let start = sim.elapsed();
    let mut flows = Vec::new();
    for &a in hosts {
        for &b in hosts {
            if a != b {
                let spec = FlowSpec::new(a, b)
                    .with_start(start)
                    .with_count(count)
                    .with_interval(ms(20));
                flows.push(sim.start_flow(&spec).unwrap());
            }
        }
    }
    flows
}

/// Every packet of every flow arrived.
fn assert_nothing_lost(sim: &Sim, flows: &[weft_sim::FlowId]) {
    for &flow in flows {
        let report = sim.flow(flow);
        assert_eq!(
            report.total().lost(),
            0,
            "{} -> {}",
            sim.name(report.from),
            sim.name(report.to)
        );
    }
}

#[test]
fn nodes_that_know_one_bootstrap_peer_reach_every_other_with_a_bounded_neighbourhood() {
    let mut sim = new_sim(71);
    let neighbours = NeighbourConfig {
        max: 4,
        random: 1,
        ..NeighbourConfig::default()
    };
    let hosts = build(&mut sim, 16, neighbours, |_| 0);
    assert!(
        run_until_checked(&mut sim, secs(20), ms(100), |s| joined(s, &hosts, 4)),
        "every node joins the DHT"
    );
    sim.run_for(secs(3));
    let now = sim.now();
    for &h in &hosts {
        let node = sim.node(h).unwrap();
        let picked = node.picked_neighbours();
        assert!(
            !picked.is_empty() && picked.len() <= neighbours.max,
            "{}: {} picks",
            sim.name(h),
            picked.len()
        );
        // Every pick is a live session.
        let established = node
            .peers(now)
            .into_iter()
            .filter(|p| p.state == SessionState::Established)
            .filter_map(|p| p.node_id)
            .collect::<Vec<_>>();
        for id in &picked {
            assert!(
                established.contains(id),
                "{}: pick not connected",
                sim.name(h)
            );
        }
    }
    // Every pair, including those that are not neighbours: the first
    // packets wait for the lookup and the handshake instead of being lost.
    let flows = all_pairs(&mut sim, &hosts, 3);
    sim.run_for(secs(5));
    assert_nothing_lost(&sim, &flows);
    assert_eq!(sim.misdelivered(), 0);
    // Pairs that talked end up on direct links (found through the DHT),
    // not on relays through the neighbourhood.
    sim.run_for(secs(3));
    let mut relayed_routes = Vec::new();
    for &a in &hosts {
        for &b in &hosts {
            if a != b && path(&sim, a, b, Metric::Latency).is_some_and(|p| p.len() > 1) {
                relayed_routes.push(format!("{}->{}", sim.name(a), sim.name(b)));
            }
        }
    }
    assert!(
        relayed_routes.is_empty(),
        "still relayed: {relayed_routes:?}"
    );
}

#[test]
fn without_a_neighbourhood_every_session_is_made_on_demand_and_nothing_is_lost() {
    let mut sim = new_sim(75);
    // No picks: the only sessions are those that traffic asks for, so every
    // destination must be looked up (no link state to learn it from).
    let hosts = build(
        &mut sim,
        8,
        NeighbourConfig {
            max: 0,
            random: 0,
            ..NeighbourConfig::default()
        },
        |_| 0,
    );
    assert!(run_until_checked(&mut sim, secs(20), ms(100), |s| joined(
        s, &hosts, 3
    )));
    let now = sim.now();
    for &h in &hosts {
        let sessions = sim.node(h).unwrap().peers(now).len();
        assert_eq!(sessions, 0, "{}: no sessions before traffic", sim.name(h));
    }
    let flows = all_pairs(&mut sim, &hosts, 3);
    sim.run_for(secs(5));
    assert_nothing_lost(&sim, &flows);
    for &h in &hosts {
        assert!(counter(&sim, h, "lookups_on_demand") > 0, "{}", sim.name(h));
        assert_eq!(counter(&sim, h, "unreachable"), 0);
    }
}

#[test]
fn lookups_by_name_id_and_address_and_the_unknown_gets_icmp_unreachable() {
    let mut sim = new_sim(72);
    let hosts = build(&mut sim, 10, NeighbourConfig::default(), |i| i - 1);
    assert!(run_until_checked(&mut sim, secs(20), ms(100), |s| joined(
        s, &hosts, 3
    )));
    let (a, b) = (hosts[0], hosts[9]);
    let targets = [
        Target::Name("n9".into()),
        Target::Id(sim.node_id(b)),
        Target::Ipv4(sim.overlay_ipv4(b).unwrap()),
        Target::Ipv6(sim.overlay_ipv6(b)),
        Target::Name("nobody".into()),
    ];
    let ids: Vec<_> = targets
        .iter()
        .map(|t| {
            sim.with_node(a, |node, now| node.lookup(now, t.clone()))
                .unwrap()
        })
        .collect();
    sim.run_for(secs(12));
    for (target, id) in targets.iter().zip(&ids) {
        let result = sim
            .events(a)
            .iter()
            .find_map(|(_, e)| match e {
                Event::LookupDone {
                    id: done, result, ..
                } if done == id => Some(result.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no answer for {target:?}"));
        match target {
            Target::Name(n) if n == "nobody" => {
                assert_eq!(result.unwrap_err(), LookupError::NotFound)
            }
            _ => assert_eq!(result.unwrap().name(), "n9", "{target:?}"),
        }
    }

    // An overlay address nobody holds: ICMP host unreachable, quickly.
    let source = SocketAddr::new(IpAddr::V4(sim.overlay_ipv4(a).unwrap()), 5000);
    let nobody = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 250)), 5000);
    let packet = udp_packet(source, nobody, b"anyone?").unwrap();
    let before = sim.tun(a).len();
    let sent_at = sim.elapsed();
    sim.inject_tun(a, &packet);
    let answered = run_until_checked(&mut sim, sent_at + secs(12), ms(50), |s| {
        s.tun(a)[before..]
            .iter()
            .any(|d| d.packet.get(9) == Some(&1) && d.packet.get(20) == Some(&3))
    });
    assert!(answered, "ICMP unreachable reaches the TUN");
    assert_eq!(counter(&sim, a, "unreachable"), 1);
    // Asked again at once: answered from memory, without a new lookup.
    let lookups = counter(&sim, a, "lookups_on_demand");
    sim.inject_tun(a, &packet);
    sim.run_for(ms(1));
    assert_eq!(counter(&sim, a, "unreachable"), 2);
    assert_eq!(counter(&sim, a, "lookups_on_demand"), lookups);
}

#[test]
fn losing_the_bootstrap_node_changes_nothing() {
    let mut sim = new_sim(73);
    let hosts = build(
        &mut sim,
        10,
        NeighbourConfig {
            max: 3,
            random: 1,
            ..NeighbourConfig::default()
        },
        |_| 0,
    );
    assert!(run_until_checked(&mut sim, secs(20), ms(100), |s| joined(
        s, &hosts, 3
    )));
    sim.run_for(secs(2));
    sim.crash(hosts[0]).unwrap();
    // The bootstrap node is an ordinary neighbour too, and paths may go
    // through it: packets sent through it in the instant it crashes are
    // lost like through any crashed relay (failover has its own tests).
    // What must not change is everything after: lookups, sessions and
    // routes without the node everyone joined through.
    sim.run_for(secs(3));
    let rest = &hosts[1..];
    let flows = all_pairs(&mut sim, rest, 3);
    sim.run_for(secs(8));
    assert_nothing_lost(&sim, &flows);
}

#[test]
fn a_failed_neighbour_link_is_routed_around_through_the_neighbourhood() {
    let mut sim = new_sim(74);
    let hosts = build(
        &mut sim,
        12,
        NeighbourConfig {
            max: 4,
            random: 1,
            ..NeighbourConfig::default()
        },
        |_| 0,
    );
    assert!(run_until_checked(&mut sim, secs(20), ms(100), |s| joined(
        s, &hosts, 4
    )));
    // Let link state settle over the neighbourhood.
    sim.run_for(secs(15));
    let a = hosts[5];
    let pick = sim.node(a).unwrap().picked_neighbours()[0];
    let b = *hosts.iter().find(|&&h| sim.node_id(h) == pick).unwrap();
    let start = sim.elapsed();
    let flow = sim
        .start_flow(
            &FlowSpec::new(a, b)
                .with_start(start)
                .with_interval(ms(10))
                .with_count(600),
        )
        .unwrap();
    sim.run_for(secs(2));
    let cut_at = sim.elapsed();
    sim.cut(a, b);
    sim.run_for(secs(5));
    let report = sim.flow(flow);
    let outage = report.outage_after(cut_at).expect("traffic resumes");
    assert!(
        outage < secs(1),
        "rerouted through the neighbourhood in {outage:?}"
    );
    let after = report.window(cut_at + secs(1), cut_at + secs(4));
    assert_eq!(after.lost(), 0, "no loss once rerouted");
}

#[test]
fn a_peer_configured_by_name_and_found_in_the_dht_has_one_slot() {
    let mut sim = new_sim(47);
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let mut hosts = Vec::new();
    for i in 0..4 {
        let mut spec = NodeSpec::new(&sim, &format!("n{i}"), i as u64);
        spec.ipv4 = Some(mesh_ipv4(i));
        if i > 0 {
            spec.bootstrap = vec![sim.address(hosts[0])];
        }
        if i == 1 {
            // Known by name only: it is to call, or the DHT to find it.
            spec.peers = vec![weft_core::PeerConfig {
                name: Some("n3".into()),
                ..weft_core::PeerConfig::default()
            }];
        }
        hosts.push(add_node(&mut sim, &ca, &spec).unwrap());
    }
    let established = |sim: &Sim| {
        let now = sim.now();
        sim.node(hosts[1]).is_some_and(|n| {
            n.peers(now).iter().any(|p| {
                p.name.as_deref() == Some("n3") && p.state == weft_core::SessionState::Established
            })
        })
    };
    assert!(run_until_checked(&mut sim, secs(30), ms(100), established));
    sim.run_for(secs(5));
    let now = sim.now();
    let entries: Vec<_> = sim
        .node(hosts[1])
        .unwrap()
        .peers(now)
        .into_iter()
        .filter(|p| p.name.as_deref() == Some("n3"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:#?}");
}

/// Sessions are bounded: a session nobody wants any more (no configured
/// peer, no picked neighbour, no data for two minutes) lapses when it
/// expires instead of being rekeyed for ever, and a node whose table is full
/// ends its longest idle session to accept a new one. Here n0 allows 3
/// sessions; seven nodes talk to it one after the other, 45 s apart, and
/// each gets through; n0 never holds more than 3 sessions and ends idle ones
/// to make room; when the talking stops, every session lapses.
#[test]
fn idle_sessions_lapse_and_a_full_table_makes_room_for_a_new_caller() {
    let mut sim = new_sim(77);
    let neighbours = NeighbourConfig {
        max: 0,
        random: 0,
        max_sessions: 3,
        ..NeighbourConfig::default()
    };
    let hosts = build(&mut sim, 8, neighbours, |_| 0);
    assert!(run_until_checked(&mut sim, secs(20), ms(100), |s| joined(
        s, &hosts, 3
    )));
    // Records settle first (a node's own endpoints come from what others
    // see of it).
    sim.run_for(secs(5));
    let server = hosts[0];
    let mut flows = Vec::new();
    let mut most = 0;
    for &caller in &hosts[1..] {
        let spec = FlowSpec::new(caller, server)
            .with_start(sim.elapsed())
            .with_count(5)
            .with_interval(ms(20));
        flows.push(sim.start_flow(&spec).unwrap());
        // Callers 45 s apart: the fourth finds three sessions, the oldest
        // idle for two minutes (it lapses only at three), and takes its
        // place.
        for _ in 0..45 {
            sim.run_for(secs(1));
            let now = sim.now();
            let held = sim
                .node(server)
                .unwrap()
                .peers(now)
                .iter()
                .filter(|p| p.state == weft_core::SessionState::Established)
                .count();
            most = most.max(held);
        }
    }
    assert_nothing_lost(&sim, &flows);
    assert!(most <= 3, "n0 held {most} sessions (bound 3)");
    assert!(counter(&sim, server, "sessions_evicted") > 0);
    // Silence: every session lapses within the idle time plus a session's
    // lifetime.
    sim.run_for(secs(120 + 180 + 10));
    let now = sim.now();
    for &h in &hosts {
        let established = sim
            .node(h)
            .unwrap()
            .peers(now)
            .iter()
            .filter(|p| p.state == weft_core::SessionState::Established)
            .count();
        assert_eq!(
            established,
            0,
            "{} still holds {established} sessions",
            sim.name(h)
        );
    }
}

/// Links each node holds with others (established sessions).
fn links(sim: &Sim, h: HostId) -> usize {
    let now = sim.now();
    sim.node(h).map_or(0, |n| {
        n.peers(now)
            .iter()
            .filter(|p| p.state == SessionState::Established)
            .count()
    })
}

#[test]
fn links_stay_near_the_neighbour_bound_although_others_pick_a_node_too() {
    // Each node picks `max` neighbours; without counting the links others
    // opened to it, a node ends up with its own picks plus everyone else's
    // picks of it (nearly twice `max`), and link-state cost grows with the
    // cube of a node's links (PROTOCOL.md §7.8, "Picks").
    let mut sim = new_sim(75);
    let neighbours = NeighbourConfig {
        max: 6,
        random: 1,
        ..NeighbourConfig::default()
    };
    let count = 24;
    let hosts = build(&mut sim, count, neighbours, |i| (i * 7) % i);
    // Past `reject_after_time` (180 s), so that the sessions of picks let
    // go have lapsed.
    sim.run_for(secs(240));
    let per_node: Vec<usize> = hosts.iter().map(|&h| links(&sim, h)).collect();
    let mean = per_node.iter().sum::<usize>() as f64 / count as f64;
    // Before others' links counted: mean 10.2, largest 22 on this seed.
    assert!(
        mean <= (neighbours.max + 2) as f64,
        "mean links per node {mean:.1} for max {}: {per_node:?}",
        neighbours.max
    );
    assert!(per_node.iter().all(|&l| l >= 1), "{per_node:?}");
    // Still one network: a sample of pairs, first packets included.
    let sample: Vec<HostId> = hosts.iter().step_by(5).copied().collect();
    let flows = all_pairs(&mut sim, &sample, 3);
    sim.run_for(secs(5));
    assert_nothing_lost(&sim, &flows);
    // The sessions that lapsed left no timer in the past: a rekey due for
    // a session no longer wanted woke its node again and again until the
    // session ended (180,130 stalls on this seed), and so did a NAT wait
    // of a peer without a session. What is left is one per node at most:
    // a new neighbour's handshake asked for at the instant of the
    // selection that picked it.
    let stalls = sim.stats().timer_stalls;
    assert!(stalls <= count as u64, "{stalls} timer stalls");
}
