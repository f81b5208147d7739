//! Routing mechanics in a small mesh: pinned paths (one and two
//! intermediates) and their errors, what a relay can see of the packets it
//! carries, and the spreading of many flows over equal relays.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use weft_core::{Metric, RouteError, SessionState};
use weft_sim::{Endpoints, FLOW_MARKER, FlowSpec, HostId, MeshBuilder, Sim};

use common::{converge, counter, ms, names, new_sim, path, relayed, secs, snapshot, trace};

fn pin(sim: &mut Sim, host: HostId, destination: &str, via: &[&str]) -> Result<(), RouteError> {
    sim.with_node(host, |node, now| node.pin_route(now, destination, via))
        .unwrap()
}

fn unpin(sim: &mut Sim, host: HostId, destination: &str) -> Result<(), RouteError> {
    sim.with_node(host, |node, now| node.unpin_route(now, destination))
        .unwrap()
}

#[test]
fn a_pinned_path_carries_traffic_through_the_named_relays_until_unpinned() {
    let mut sim = new_sim(41);
    let mesh = MeshBuilder::new(5).build(&mut sim).unwrap();
    let [a, b, c, d] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2], mesh.hosts[3]];
    converge(&mut sim, &mesh.hosts, secs(10));
    assert_eq!(path(&sim, a, b, Metric::Latency), Some(names(&sim, &[b])));

    // One intermediate, although the direct link is up.
    pin(&mut sim, a, "n1", &["n2"]).unwrap();
    for metric in Metric::ALL {
        let route = trace(&sim, a, b, metric).unwrap();
        assert!(route.pinned, "{metric}");
        let hops: Vec<_> = route.path.iter().map(|h| h.name.clone()).collect();
        assert_eq!(hops, names(&sim, &[c, b]), "{metric}");
    }
    assert!(
        sim.node(a)
            .unwrap()
            .routes(sim.now())
            .iter()
            .any(|r| r.name == "n1" && r.pinned),
        "the table shows the pin"
    );
    let before = (relayed(&sim, c), relayed(&sim, d));
    let via_relay_before = counter(&sim, b, "rx_via_relay");
    let start = sim.elapsed();
    let flow = sim
        .start_flow(&FlowSpec::new(a, b).with_start(start).with_count(100))
        .unwrap();
    sim.run_for(secs(2));
    assert_eq!(sim.flow(flow).total().lost(), 0);
    assert!(relayed(&sim, c) >= before.0 + 100, "C relays every packet");
    assert_eq!(relayed(&sim, d), before.1, "D relays nothing");
    assert!(counter(&sim, b, "rx_via_relay") >= via_relay_before + 100);

    // Two intermediates, one named by its node id.
    let d_id = sim.node_id(d).to_string();
    pin(&mut sim, a, "n1", &["n2", &d_id]).unwrap();
    assert_eq!(
        path(&sim, a, b, Metric::Latency),
        Some(names(&sim, &[c, d, b]))
    );
    let before = (relayed(&sim, c), relayed(&sim, d));
    let start = sim.elapsed();
    let flow = sim
        .start_flow(&FlowSpec::new(a, b).with_start(start).with_count(100))
        .unwrap();
    sim.run_for(secs(2));
    assert_eq!(sim.flow(flow).total().lost(), 0);
    assert!(relayed(&sim, c) >= before.0 + 100);
    assert!(relayed(&sim, d) >= before.1 + 100);

    // Unpinned: direct again, and the relays carry nothing more.
    unpin(&mut sim, a, "n1").unwrap();
    assert_eq!(path(&sim, a, b, Metric::Latency), Some(names(&sim, &[b])));
    assert!(!trace(&sim, a, b, Metric::Latency).unwrap().pinned);
    sim.run_for(ms(100));
    let before = (relayed(&sim, c), relayed(&sim, d));
    let start = sim.elapsed();
    let flow = sim
        .start_flow(&FlowSpec::new(a, b).with_start(start).with_count(100))
        .unwrap();
    sim.run_for(secs(2));
    assert_eq!(sim.flow(flow).total().lost(), 0);
    assert_eq!((relayed(&sim, c), relayed(&sim, d)), before);
    assert_eq!(sim.misdelivered(), 0);
}

#[test]
fn pins_through_unknown_or_invalid_nodes_are_refused() {
    let mut sim = new_sim(42);
    let mesh = MeshBuilder::new(5).build(&mut sim).unwrap();
    let a = mesh.hosts[0];
    converge(&mut sim, &mesh.hosts, secs(10));
    assert!(matches!(
        pin(&mut sim, a, "n1", &["nosuch"]),
        Err(RouteError::UnknownNode(name)) if name == "nosuch"
    ));
    assert!(matches!(
        pin(&mut sim, a, "nosuch", &["n2"]),
        Err(RouteError::UnknownNode(_))
    ));
    let unknown_id = "ab".repeat(32);
    assert!(matches!(
        pin(&mut sim, a, "n1", &[&unknown_id]),
        Err(RouteError::UnknownNode(_))
    ));
    assert!(matches!(
        pin(&mut sim, a, "n1", &["n0"]),
        Err(RouteError::InvalidPath(_))
    ));
    assert!(matches!(
        pin(&mut sim, a, "n1", &["n2", "n2"]),
        Err(RouteError::InvalidPath(_))
    ));
    assert!(matches!(
        pin(&mut sim, a, "n1", &["n1"]),
        Err(RouteError::InvalidPath(_))
    ));
    assert!(matches!(
        pin(&mut sim, a, "n1", &["n2", "n3", "n4"]),
        Err(RouteError::TooLong)
    ));
    assert!(matches!(
        unpin(&mut sim, a, "nosuch"),
        Err(RouteError::UnknownNode(_))
    ));
    // Nothing was pinned by the refused commands.
    assert!(
        sim.node(a)
            .unwrap()
            .routes(sim.now())
            .iter()
            .all(|r| !r.pinned)
    );
}

#[test]
fn a_relay_forwards_packets_it_cannot_read() {
    let mut sim = new_sim(43);
    let mesh = MeshBuilder::new(3).build(&mut sim).unwrap();
    let [a, b, c] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2]];
    converge(&mut sim, &mesh.hosts, secs(10));
    pin(&mut sim, a, "n1", &["n2"]).unwrap();
    let to_relay = sim.capture(a, c);
    let from_relay = sim.capture(c, b);
    let before = relayed(&sim, c);
    let tun_before = sim.tun(c).len();
    let start = sim.elapsed();
    let flow = sim
        .start_flow(
            &FlowSpec::new(a, b)
                .with_start(start)
                .with_count(50)
                .with_payload(200),
        )
        .unwrap();
    sim.run_for(secs(1));

    assert_eq!(sim.flow(flow).total().lost(), 0, "B gets every packet");
    assert!(relayed(&sim, c) >= before + 50, "C forwards them");
    assert_eq!(sim.tun(c).len(), tun_before, "C's TUN gets nothing");
    assert_eq!(counter(&sim, c, "rx_delivered"), 0);
    // The payload never appears in clear on either hop.
    for capture in [to_relay, from_relay] {
        let datagrams = sim.captured(capture);
        assert!(datagrams.len() >= 50);
        assert!(
            datagrams
                .iter()
                .all(|d| !d.bytes.windows(FLOW_MARKER.len()).any(|w| w == FLOW_MARKER)),
            "a datagram carries the payload in clear"
        );
    }
    assert_eq!(sim.misdelivered(), 0);
}

#[test]
fn many_flows_needing_a_relay_spread_over_the_equal_relays() {
    let mut sim = new_sim(44);
    let mesh = MeshBuilder::new(6).build(&mut sim).unwrap();
    let [a, b] = [mesh.hosts[0], mesh.hosts[1]];
    let relays = mesh.hosts[2..].to_vec();
    converge(&mut sim, &mesh.hosts, secs(10));
    cut_and_reroute(&mut sim, a, b);
    let route = trace(&sim, a, b, Metric::Latency).unwrap();
    assert!(
        route.alternates >= 1,
        "equal relays are alternates: {route:?}"
    );

    let before: Vec<u64> = relays.iter().map(|&r| relayed(&sim, r)).collect();
    let start = sim.elapsed();
    const FLOWS: u16 = 32;
    const PACKETS: u32 = 20;
    let flows: Vec<_> = (0..FLOWS)
        .map(|i| {
            let spec = FlowSpec::new(a, b)
                .with_start(start)
                .with_interval(ms(20))
                .with_count(PACKETS)
                .with_port(20_000 + i);
            sim.start_flow(&spec).unwrap()
        })
        .collect();
    sim.run_for(secs(2));
    for &flow in &flows {
        assert_eq!(sim.flow(flow).total().lost(), 0);
    }
    let carried: Vec<u64> = relays
        .iter()
        .zip(&before)
        .map(|(&r, &b)| relayed(&sim, r) - b)
        .collect();
    let used = carried.iter().filter(|&&n| n > 0).count();
    let total = u64::from(FLOWS) * u64::from(PACKETS);
    assert!(
        used >= 2,
        "flows spread over more than one relay: {carried:?}"
    );
    assert!(
        carried.iter().all(|&n| n < total),
        "no relay carries everything: {carried:?}"
    );
    assert_eq!(sim.misdelivered(), 0);
    snapshot(
        "failover",
        "spread_32_flows_4_relays",
        &[
            ("alternates", route.alternates.to_string()),
            (
                "per_relay",
                carried
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ],
    );
}

/// `weft trace` must show the paths packets actually take (issue 3). With
/// flows spread over equal relays, each flow takes one of the candidate
/// paths by its hash: the trace names the main path and the alternates.
#[test]
fn trace_names_every_relay_that_carries_traffic() {
    let mut sim = new_sim(45);
    let mesh = MeshBuilder::new(4).build(&mut sim).unwrap();
    let [a, b, c, d] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2], mesh.hosts[3]];
    converge(&mut sim, &mesh.hosts, secs(10));
    cut_and_reroute(&mut sim, a, b);
    let before = [relayed(&sim, c), relayed(&sim, d)];
    let start = sim.elapsed();
    for port in 0..8 {
        let spec = FlowSpec::new(a, b)
            .with_start(start)
            .with_count(20)
            .with_port(30_000 + port);
        sim.start_flow(&spec).unwrap();
    }
    sim.run_for(secs(1));
    let carrying: Vec<String> = [c, d]
        .into_iter()
        .zip(before)
        .filter(|&(r, n)| relayed(&sim, r) > n)
        .map(|(r, _)| sim.name(r).to_owned())
        .collect();
    let route = trace(&sim, a, b, Metric::Latency).unwrap();
    let mut traced: Vec<String> = route.path.into_iter().map(|h| h.name).collect();
    traced.extend(route.alternate_paths.into_iter().flatten());
    assert!(
        carrying.iter().all(|r| traced.contains(r)),
        "trace shows {traced:?}; traffic goes through {carrying:?}"
    );
}

/// Cuts the a–b link, waits until a routes to b through one relay, then
/// lets the new route carry traffic for two seconds.
fn cut_and_reroute(sim: &mut weft_sim::Sim, a: weft_sim::HostId, b: weft_sim::HostId) {
    sim.cut(a, b);
    assert!(
        sim.run_until_condition(sim.elapsed() + secs(5), |s| {
            path(s, a, b, Metric::Latency).is_some_and(|p| p.len() == 2)
        }),
        "A routes around the cut"
    );
    sim.run_for(secs(2));
}

#[test]
fn a_link_longer_than_the_timeout_floor_comes_up_at_both_ends() {
    // 152 ms RTT: above the 150 ms floor of the link timeout that applies
    // before the first RTT sample, so every first answer is late. The late
    // answers must still count for RTT (and prove the link), or one end
    // keeps the link down for good while a relay exists.
    let mut sim = new_sim(45);
    let mesh = MeshBuilder::new(3).build(&mut sim).unwrap();
    let [a, b] = [mesh.hosts[0], mesh.hosts[1]];
    sim.set_link_both(
        a,
        b,
        weft_sim::LinkConfig {
            latency: ms(76),
            ..weft_sim::LinkConfig::default()
        },
    );
    sim.run_for(secs(30));
    for (from, to) in [(a, b), (b, a)] {
        let status = sim.peer_status(from, to).unwrap();
        assert_eq!(
            status.link,
            weft_core::LinkHealth::Up,
            "{} sees {}: {status:?}",
            sim.name(from),
            sim.name(to)
        );
        let rtt = status.rtt.unwrap();
        assert!(rtt >= ms(150) && rtt < ms(200), "{rtt:?}");
    }
}

/// Two members three links apart in a chain (n0 - n1 - n2 - n3; no other
/// pair can reach each other; each knows the others by name and key):
/// n0's handshake with n3 travels over both relays, along its route, and
/// n3's response must come back over both too. It was sent through the
/// last relay alone, which has no session with n0 and dropped it: n0 timed
/// out, retried the same way, and the pair never talked.
#[test]
fn a_handshake_over_two_relays_is_answered_over_two_relays() {
    let mut sim = new_sim(43);
    let mesh = MeshBuilder::new(4)
        .with_endpoints(Endpoints::OlderCallsNewer)
        .build(&mut sim)
        .unwrap();
    let hosts = mesh.hosts.clone();
    for a in 0..hosts.len() {
        for b in a + 2..hosts.len() {
            sim.cut(hosts[a], hosts[b]);
        }
    }
    let (n0, n3) = (hosts[0], hosts[3]);
    // n0 holds n2's record, which lists n3: a route of two relays.
    assert!(
        sim.run_until_condition(secs(60), |s| path(s, n0, n3, Metric::Latency)
            .is_some_and(|p| p.len() == 3)),
        "n0 never had a two-relay route to n3: {:?}",
        path(&sim, n0, n3, Metric::Latency)
    );
    let established = |s: &Sim| {
        s.node(n0)
            .unwrap()
            .peers(s.now())
            .iter()
            .any(|p| p.name.as_deref() == Some("n3") && p.state == SessionState::Established)
    };
    assert!(
        sim.run_until_condition(sim.elapsed() + secs(30), established),
        "n0 and n3 never had a session; n0's timeouts: {}",
        counter(&sim, n0, "handshake_timeouts")
    );
    let flow = sim
        .start_flow(
            &FlowSpec::new(n0, n3)
                .with_start(sim.elapsed() + ms(10))
                .with_interval(ms(10))
                .with_count(50),
        )
        .unwrap();
    sim.run_for(secs(2));
    assert_eq!(sim.flow(flow).total().lost(), 0);
    assert_eq!(sim.misdelivered(), 0);
}
