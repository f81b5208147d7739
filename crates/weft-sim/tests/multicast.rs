//! Overlay multicast at the node level: members get every packet of a
//! group exactly once and non-members none; trees respect the fan-out
//! bound; a cut tree link is repaired within a second; leaving stops
//! delivery; a policy changed at run time (a config reload on every node)
//! drops a member it no longer admits while the others lose nothing.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use weft_core::mcast::{GroupRule, MulticastConfig};
use weft_core::{GroupError, RoutingConfig};
use weft_sim::{HostId, MeshBuilder, Sim, parse_udp, udp_packet};

use common::{converge, counter, ms, new_sim, secs};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

fn join(sim: &mut Sim, host: HostId, group: IpAddr) -> Result<(), GroupError> {
    sim.with_node(host, |node, now| node.join_group(now, group))
        .unwrap()
}

/// Schedules `count` numbered datagrams from `from` to the group, every
/// `interval` from now; returns when the first goes.
fn stream(sim: &mut Sim, from: HostId, count: u32, interval: Duration) -> Duration {
    let start = sim.elapsed() + ms(1);
    let source = SocketAddr::new(IpAddr::V4(sim.overlay_ipv4(from).unwrap()), 4000);
    let group = SocketAddr::new(IpAddr::V4(GROUP), 5000);
    for i in 0..count {
        let payload = format!("mcast {i:06}");
        let packet = udp_packet(source, group, payload.as_bytes()).unwrap();
        sim.schedule_tun(start + interval * i, from, packet);
    }
    start
}

/// The sequence numbers (and arrival times) of the group datagrams a host's
/// TUN got.
fn received(sim: &Sim, host: HostId) -> Vec<(u32, Duration)> {
    sim.tun(host)
        .iter()
        .filter_map(|d| {
            let udp = parse_udp(&d.packet)?;
            if udp.destination.ip() != IpAddr::V4(GROUP) {
                return None;
            }
            let text = std::str::from_utf8(udp.payload).ok()?;
            Some((text.strip_prefix("mcast ")?.parse().ok()?, d.at))
        })
        .collect()
}

/// The tree of the group from `source`, as `source` computes it.
fn tree_from(sim: &mut Sim, source: HostId) -> weft_core::TreeStatus {
    sim.with_node(source, |node, now| {
        node.multicast_tree(now, None, IpAddr::V4(GROUP))
    })
    .unwrap()
    .unwrap()
}

fn mesh(sim: &mut Sim, n: usize, fanout: usize) -> Vec<HostId> {
    let multicast = MulticastConfig {
        fanout,
        ..MulticastConfig::default()
    };
    let mesh = MeshBuilder::new(n)
        .with_routing(RoutingConfig::default())
        .with_multicast(multicast)
        .build(sim)
        .unwrap();
    mesh.hosts
}

#[test]
fn members_get_every_packet_once_and_non_members_none() {
    let mut sim = new_sim(81);
    let hosts = mesh(&mut sim, 8, 2);
    converge(&mut sim, &hosts, secs(10));
    let (source, members, others) = (hosts[0], &hosts[1..6], &hosts[6..]);
    for &m in members {
        join(&mut sim, m, IpAddr::V4(GROUP)).unwrap();
    }
    // Membership floods with the link state.
    sim.run_for(secs(1));
    let tree = tree_from(&mut sim, source);
    assert_eq!(tree.members.len(), members.len(), "{tree:?}");
    assert!(tree.unreached.is_empty(), "{tree:?}");
    let from_source = tree.edges.iter().filter(|(p, _)| *p == tree.source).count();
    assert!(from_source <= 2, "fan-out bound: {tree:?}");
    let mut children = std::collections::BTreeMap::new();
    for (parent, _) in &tree.edges {
        *children.entry(parent.clone()).or_insert(0) += 1;
    }
    assert!(children.values().all(|&c| c <= 2), "{tree:?}");

    stream(&mut sim, source, 200, ms(10));
    sim.run_for(secs(3));
    for &m in members {
        let got = received(&sim, m);
        let mut seqs: Vec<u32> = got.iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>(), "{}", sim.name(m));
        // The original source address, unchanged.
        let packet = &sim
            .tun(m)
            .iter()
            .find(|d| parse_udp(&d.packet).is_some())
            .unwrap()
            .packet;
        assert_eq!(
            parse_udp(packet).unwrap().source.ip(),
            IpAddr::V4(sim.overlay_ipv4(source).unwrap())
        );
    }
    for &o in others {
        assert!(received(&sim, o).is_empty(), "{} is no member", sim.name(o));
    }
    assert!(
        received(&sim, source).is_empty(),
        "the source does not get its own"
    );
    let duplicates: u64 = hosts
        .iter()
        .map(|&h| counter(&sim, h, "mcast_duplicates"))
        .sum();
    assert_eq!(duplicates, 0);
    assert_eq!(counter(&sim, source, "mcast_sent"), 200);
}

/// Member `m` of a 500-datagram stream got nothing twice, went silent for
/// less than a second after `since`, and got the stream to its end.
fn assert_resumed_within_a_second(sim: &Sim, m: HostId, since: Duration) {
    let got = received(sim, m);
    let mut seqs: Vec<u32> = got.iter().map(|(s, _)| *s).collect();
    let before = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), before, "{}: no duplicates", sim.name(m));
    // The longest gap in arrivals after `since`.
    let gap = got
        .windows(2)
        .filter(|w| w[1].1 > since)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default();
    assert!(
        gap < secs(1),
        "{}: delivery stopped for {gap:?}",
        sim.name(m)
    );
    assert!(
        seqs.last().is_some_and(|&s| s >= 490),
        "{}: delivery resumed to the end",
        sim.name(m)
    );
}

#[test]
fn a_cut_tree_link_is_repaired_within_a_second() {
    let mut sim = new_sim(82);
    let hosts = mesh(&mut sim, 6, 2);
    converge(&mut sim, &hosts, secs(10));
    let source = hosts[0];
    for &m in &hosts[1..] {
        join(&mut sim, m, IpAddr::V4(GROUP)).unwrap();
    }
    sim.run_for(secs(1));
    let tree = tree_from(&mut sim, source);
    // A link from the source to a child that forwards to others.
    let (_, child) = tree
        .edges
        .iter()
        .find(|(p, c)| *p == tree.source && tree.edges.iter().any(|(pp, _)| pp == c))
        .or_else(|| tree.edges.iter().find(|(p, _)| *p == tree.source))
        .unwrap()
        .clone();
    let child = *hosts.iter().find(|&&h| sim.name(h) == child).unwrap();
    let start = stream(&mut sim, source, 500, ms(10));
    sim.run_until(start + secs(1));
    let cut_at = sim.elapsed();
    sim.cut(source, child);
    sim.run_until(start + secs(6));
    for &m in &hosts[1..] {
        assert_resumed_within_a_second(&sim, m, cut_at);
    }
}

#[test]
fn a_crashed_forwarder_is_routed_around_within_a_second() {
    let mut sim = new_sim(83);
    let hosts = mesh(&mut sim, 10, 2);
    converge(&mut sim, &hosts, secs(10));
    let source = hosts[0];
    for &m in &hosts[1..] {
        join(&mut sim, m, IpAddr::V4(GROUP)).unwrap();
    }
    sim.run_for(secs(1));
    let tree = tree_from(&mut sim, source);
    // A forwarder: a node with children of its own (fan-out 2 and nine
    // members make some).
    let (_, forwarder) = tree
        .edges
        .iter()
        .find(|(_, c)| tree.edges.iter().any(|(p, _)| p == c))
        .unwrap()
        .clone();
    let crashed = *hosts.iter().find(|&&h| sim.name(h) == forwarder).unwrap();
    let start = stream(&mut sim, source, 500, ms(10));
    sim.run_until(start + secs(1));
    let crash_at = sim.elapsed();
    sim.crash(crashed).unwrap();
    // Its tree parent, sending to it, reports the link down after the
    // 150 ms link timeout and three unanswered 40 ms probes. From then on
    // the crashed node forwards for nobody: it is suspect (leaf-only),
    // although its links to the idle other ends are still advertised, so
    // no second parent has to find it dead too.
    sim.run_until(crash_at + ms(350));
    let tree = tree_from(&mut sim, source);
    assert!(
        !tree.edges.iter().any(|(p, _)| *p == forwarder),
        "{forwarder} still forwards: {tree:?}"
    );
    sim.run_until(start + secs(6));
    for &m in hosts[1..].iter().filter(|&&h| h != crashed) {
        assert_resumed_within_a_second(&sim, m, crash_at);
    }
}

#[test]
fn leaving_stops_delivery_and_bad_groups_are_refused() {
    let mut sim = new_sim(83);
    let hosts = mesh(&mut sim, 4, 8);
    converge(&mut sim, &hosts, secs(10));
    let (source, member) = (hosts[0], hosts[1]);
    join(&mut sim, member, IpAddr::V4(GROUP)).unwrap();
    sim.run_for(secs(1));
    stream(&mut sim, source, 10, ms(10));
    sim.run_for(secs(1));
    assert_eq!(received(&sim, member).len(), 10);
    sim.with_node(member, |node, now| node.leave_group(now, IpAddr::V4(GROUP)))
        .unwrap()
        .unwrap();
    sim.run_for(secs(1));
    stream(&mut sim, source, 10, ms(10));
    sim.run_for(secs(1));
    assert_eq!(received(&sim, member).len(), 10, "nothing after leaving");
    assert!(counter(&sim, source, "mcast_no_members") >= 10);
    for bad in ["224.0.0.5", "10.0.0.1", "ff02::1"] {
        let group: IpAddr = bad.parse().unwrap();
        assert_eq!(
            join(&mut sim, member, group),
            Err(GroupError::NotCarried(group))
        );
    }
}

#[test]
fn ipv6_groups_are_carried_too() {
    let mut sim = new_sim(84);
    let hosts = mesh(&mut sim, 5, 8);
    converge(&mut sim, &hosts, secs(10));
    let group: IpAddr = "ff0e::1234".parse().unwrap();
    for &m in &hosts[2..] {
        join(&mut sim, m, group).unwrap();
    }
    sim.run_for(secs(1));
    let source = SocketAddr::new(IpAddr::V6(sim.overlay_ipv6(hosts[0])), 4000);
    let start = sim.elapsed() + ms(1);
    for i in 0..20u32 {
        let packet = udp_packet(source, SocketAddr::new(group, 5000), &i.to_be_bytes()).unwrap();
        sim.schedule_tun(start + ms(10) * i, hosts[0], packet);
    }
    sim.run_for(secs(2));
    let count = |h: HostId| {
        sim.tun(h)
            .iter()
            .filter(|d| parse_udp(&d.packet).is_some_and(|u| u.destination.ip() == group))
            .count()
    };
    for &m in &hosts[2..] {
        assert_eq!(count(m), 20, "{}", sim.name(m));
    }
    assert_eq!(count(hosts[1]), 0, "no member");
}

#[test]
fn a_reloaded_policy_drops_a_member_it_no_longer_admits_and_the_others_lose_nothing() {
    let mut sim = new_sim(84);
    let mut builder = MeshBuilder::new(6)
        .with_routing(RoutingConfig::default())
        .with_multicast(MulticastConfig {
            fanout: 2,
            ..MulticastConfig::default()
        });
    for i in 1..=4 {
        builder = builder.with_node_groups(i, &["media"]);
    }
    let hosts = builder.build(&mut sim).unwrap().hosts;
    converge(&mut sim, &hosts, secs(10));
    let (source, admitted, dropped) = (hosts[0], &hosts[1..5], hosts[5]);
    for &m in &hosts[1..] {
        join(&mut sim, m, IpAddr::V4(GROUP)).unwrap();
    }
    sim.run_for(secs(1));
    assert_eq!(tree_from(&mut sim, source).members.len(), 5);

    // 300 datagrams over 3 s; a second in, every node reloads a policy
    // that lets only holders of "media" join 239/8.
    stream(&mut sim, source, 300, ms(10));
    sim.run_for(secs(1));
    let rules = vec![GroupRule {
        groups: (IpAddr::V4(Ipv4Addr::new(239, 0, 0, 0)), 8),
        members: vec!["media".into()],
        senders: Vec::new(),
    }];
    let change = sim.elapsed();
    for &h in &hosts {
        let left = sim
            .with_node(h, |node, now| {
                node.set_multicast_policy(now, 2, rules.clone())
            })
            .unwrap();
        let expected: &[IpAddr] = if h == dropped {
            &[IpAddr::V4(GROUP)]
        } else {
            &[]
        };
        assert_eq!(left, expected, "{}", sim.name(h));
    }
    sim.run_for(secs(3));

    let tree = tree_from(&mut sim, source);
    assert_eq!(tree.members.len(), 4, "{tree:?}");
    assert!(!tree.members.contains(&sim.name(dropped).to_owned()));
    for &m in admitted {
        let mut seqs: Vec<u32> = received(&sim, m).iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..300).collect::<Vec<_>>(), "{}", sim.name(m));
    }
    let late = received(&sim, dropped)
        .iter()
        .filter(|(_, at)| *at > change)
        .count();
    assert_eq!(
        late, 0,
        "nothing reaches the dropped member after the change"
    );
    assert!(
        !received(&sim, dropped).is_empty(),
        "it was a member before"
    );
    let duplicates: u64 = hosts
        .iter()
        .map(|&h| counter(&sim, h, "mcast_duplicates"))
        .sum();
    assert_eq!(duplicates, 0);
}
