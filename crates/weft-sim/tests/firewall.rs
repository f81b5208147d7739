//! The firewall between simulated nodes: group rules decide who reaches a
//! port, replies of allowed flows pass, rejected connections get a reset at
//! once, relays forward what they cannot judge while the endpoints judge it,
//! and multicast is filtered by group at the members.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, SocketAddr};

use weft_core::firewall::{Action, FirewallConfig, PortMatch, Protocol, Rule};
use weft_core::mcast::MulticastConfig;
use weft_core::qos::PortRange;
use weft_sim::{HostId, MeshBuilder, Sim, parse_tcp, parse_udp, tcp_packet, udp_packet};

use common::{converge, counter, new_sim, relayed, secs};

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;
const POSTGRES: u16 = 5432;

fn address(sim: &Sim, host: HostId, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(sim.overlay_ipv4(host).unwrap()), port)
}

/// Hosts in group `db` accept TCP 5432 only from group `app`.
fn db_firewall(default: Action) -> FirewallConfig {
    FirewallConfig {
        inbound: vec![Rule {
            name: Some("postgres-from-app".into()),
            protocol: Some(Protocol::Tcp),
            ports: vec![PortMatch::Range(PortRange::single(POSTGRES))],
            groups: vec!["app".into()],
            ..Rule::default()
        }],
        inbound_default: default,
        ..FirewallConfig::enabled()
    }
}

/// n0 is a database host (group `db`, with the firewall), n1 an
/// application host (group `app`), n2 another member (no group).
fn database_mesh(seed: u64, default: Action) -> (Sim, [HostId; 3]) {
    let mut sim = new_sim(seed);
    let mesh = MeshBuilder::new(3)
        .with_node_groups(0, &["db"])
        .with_node_groups(1, &["app"])
        .with_node_firewall(0, db_firewall(default))
        .build(&mut sim)
        .unwrap();
    converge(&mut sim, &mesh.hosts, secs(10));
    let hosts = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2]];
    (sim, hosts)
}

/// The TCP segments `host`'s TUN received since `since` (an index into its
/// record).
fn segments(sim: &Sim, host: HostId, since: usize) -> Vec<weft_sim::TcpSegment> {
    sim.tun(host)[since..]
        .iter()
        .filter_map(|d| parse_tcp(&d.packet))
        .collect()
}

#[test]
fn only_the_group_the_rule_names_reaches_the_port_and_replies_pass() {
    let (mut sim, [db, app, other]) = database_mesh(71, Action::Drop);
    let before = sim.tun(db).len();
    let syn = |sim: &Sim, from: HostId, port: u16| {
        tcp_packet(
            address(sim, from, 40000),
            address(sim, db, port),
            1000,
            0,
            SYN,
        )
        .unwrap()
    };
    let packet = syn(&sim, app, POSTGRES);
    sim.inject_tun(app, &packet);
    let packet = syn(&sim, other, POSTGRES);
    sim.inject_tun(other, &packet);
    let packet = syn(&sim, app, 22);
    sim.inject_tun(app, &packet);
    sim.run_for(secs(1));
    let arrived = segments(&sim, db, before);
    assert_eq!(arrived.len(), 1, "{arrived:?}");
    assert_eq!(arrived[0].source, address(&sim, app, 40000));

    // The database answers; the answer leaves and arrives, and so does the
    // rest of the connection, both ways.
    let app_before = sim.tun(app).len();
    let syn_ack = tcp_packet(
        address(&sim, db, POSTGRES),
        address(&sim, app, 40000),
        5000,
        1001,
        SYN | ACK,
    )
    .unwrap();
    sim.inject_tun(db, &syn_ack);
    sim.run_for(secs(1));
    let ack = tcp_packet(
        address(&sim, app, 40000),
        address(&sim, db, POSTGRES),
        1001,
        5001,
        ACK,
    )
    .unwrap();
    sim.inject_tun(app, &ack);
    sim.run_for(secs(1));
    assert_eq!(segments(&sim, app, app_before).len(), 1);
    assert_eq!(segments(&sim, db, before).len(), 2);

    let stats = sim.node(db).unwrap().firewall_stats();
    assert_eq!(stats.inbound.rules[0].packets, 1, "one flow allowed");
    assert_eq!(
        stats.inbound.default_packets, 2,
        "two refused by the default"
    );
    assert_eq!(counter(&sim, db, "firewall_inbound_dropped"), 2);
    assert_eq!(stats.tracked, 2, "the answer out and the ACK in");
    // The others have no firewall: nothing counted there.
    assert_eq!(counter(&sim, app, "firewall_outbound_dropped"), 0);
    assert!(!sim.node(app).unwrap().firewall_stats().enabled);
}

#[test]
fn a_rejected_connection_gets_a_reset_at_once() {
    let (mut sim, [db, _app, other]) = database_mesh(72, Action::Reject);
    let before = sim.tun(other).len();
    let syn = tcp_packet(
        address(&sim, other, 40000),
        address(&sim, db, POSTGRES),
        1000,
        0,
        SYN,
    )
    .unwrap();
    sim.inject_tun(other, &syn);
    sim.run_for(secs(1));
    let answers = segments(&sim, other, before);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let reset = answers[0];
    assert_eq!(reset.source, address(&sim, db, POSTGRES));
    assert_eq!(reset.destination, address(&sim, other, 40000));
    assert_eq!(reset.flags, RST | ACK);
    assert_eq!(reset.ack, 1001, "acknowledges the SYN");
    assert_eq!(counter(&sim, db, "firewall_rejected"), 1);
    assert_eq!(segments(&sim, db, 0).len(), 0);
}

#[test]
fn relays_forward_what_the_endpoints_judge() {
    let mut sim = new_sim(73);
    // n1 would refuse everything that crossed its own TUN; it only relays.
    let closed = FirewallConfig {
        outbound_default: Action::Drop,
        ..FirewallConfig::enabled()
    };
    let mesh = MeshBuilder::new(3)
        .with_node_groups(0, &["app"])
        .with_node_firewall(1, closed)
        .with_node_firewall(2, db_firewall(Action::Drop))
        .build(&mut sim)
        .unwrap();
    let [a, relay, b] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2]];
    converge(&mut sim, &mesh.hosts, secs(10));
    sim.with_node(a, |node, now| node.pin_route(now, "n2", &["n1"]))
        .unwrap()
        .unwrap();
    let before = (sim.tun(b).len(), relayed(&sim, relay));
    for (i, port) in [POSTGRES, 22].into_iter().enumerate() {
        let syn = tcp_packet(
            address(&sim, a, 40000 + i as u16),
            address(&sim, b, port),
            1,
            0,
            SYN,
        )
        .unwrap();
        sim.inject_tun(a, &syn);
    }
    sim.run_for(secs(1));
    assert!(
        relayed(&sim, relay) >= before.1 + 2,
        "both went through the relay"
    );
    let arrived = segments(&sim, b, before.0);
    assert_eq!(
        arrived.len(),
        1,
        "the endpoint let one through: {arrived:?}"
    );
    assert_eq!(arrived[0].destination.port(), POSTGRES);
    let relay_stats = sim.node(relay).unwrap().firewall_stats();
    assert_eq!(
        relay_stats.inbound.default_packets + relay_stats.outbound.default_packets,
        0
    );
    assert_eq!(counter(&sim, b, "firewall_inbound_dropped"), 1);
}

#[test]
fn multicast_is_delivered_by_group_rules_at_each_member() {
    let mut sim = new_sim(74);
    let group: IpAddr = "239.1.2.3".parse().unwrap();
    let multicast = MulticastConfig {
        groups: vec![group],
        ..MulticastConfig::default()
    };
    // n1 admits the group, n2 has a firewall without a rule for it.
    let admits = FirewallConfig {
        inbound: vec![Rule {
            protocol: Some(Protocol::Udp),
            local_cidrs: vec![(group, 32)],
            ..Rule::default()
        }],
        ..FirewallConfig::enabled()
    };
    let mesh = MeshBuilder::new(3)
        .with_multicast(multicast)
        .with_node_firewall(1, admits)
        .with_node_firewall(2, FirewallConfig::enabled())
        .build(&mut sim)
        .unwrap();
    let [source, open, closed] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2]];
    converge(&mut sim, &mesh.hosts, secs(10));
    sim.run_for(secs(3));
    let before = [sim.tun(open).len(), sim.tun(closed).len()];
    for i in 0..5u8 {
        let packet = udp_packet(
            address(&sim, source, 5000),
            SocketAddr::new(group, 5000),
            &[i],
        )
        .unwrap();
        sim.inject_tun(source, &packet);
    }
    sim.run_for(secs(1));
    let received = |host: HostId, since: usize| {
        sim.tun(host)[since..]
            .iter()
            .filter(|d| parse_udp(&d.packet).is_some_and(|u| u.destination.ip() == group))
            .count()
    };
    assert_eq!(received(open, before[0]), 5);
    assert_eq!(received(closed, before[1]), 0);
    assert_eq!(counter(&sim, closed, "firewall_inbound_dropped"), 5);
    assert_eq!(
        sim.node(closed).unwrap().firewall_stats().conntrack_entries,
        0
    );
}

#[test]
fn an_outbound_reject_resets_the_local_application_over_ipv4_and_ipv6() {
    let mut sim = new_sim(75);
    let no_smtp = FirewallConfig {
        outbound: vec![Rule {
            name: Some("no-smtp".into()),
            action: Action::Reject,
            protocol: Some(Protocol::Tcp),
            ports: vec![PortMatch::Range(PortRange::single(25))],
            ..Rule::default()
        }],
        ..FirewallConfig::enabled()
    };
    let mesh = MeshBuilder::new(2)
        .with_node_firewall(0, no_smtp)
        .build(&mut sim)
        .unwrap();
    let [a, b] = [mesh.hosts[0], mesh.hosts[1]];
    converge(&mut sim, &mesh.hosts, secs(10));
    let v6 = |sim: &Sim, host: HostId, port: u16| {
        SocketAddr::new(IpAddr::V6(sim.overlay_ipv6(host)), port)
    };
    let (before_a, before_b) = (sim.tun(a).len(), sim.tun(b).len());
    for (from, to) in [
        (address(&sim, a, 40000), address(&sim, b, 25)),
        (v6(&sim, a, 40001), v6(&sim, b, 25)),
    ] {
        let syn = tcp_packet(from, to, 7000, 0, SYN).unwrap();
        sim.inject_tun(a, &syn);
    }
    sim.run_for(secs(1));
    let resets = segments(&sim, a, before_a);
    assert_eq!(resets.len(), 2, "{resets:?}");
    for reset in &resets {
        assert_eq!(reset.source.port(), 25, "from the refused destination");
        assert_eq!(reset.flags, RST | ACK);
        assert_eq!(reset.ack, 7001);
    }
    assert!(resets[1].source.is_ipv6());
    assert_eq!(segments(&sim, b, before_b).len(), 0, "nothing left a");
    let stats = sim.node(a).unwrap().firewall_stats();
    assert_eq!(stats.outbound.rules[0].packets, 2);
    assert_eq!(counter(&sim, a, "firewall_outbound_dropped"), 2);
    assert_eq!(counter(&sim, a, "firewall_rejected"), 2);
}
