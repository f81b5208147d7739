//! Quality of service in the simulator: the egress scheduler in the data
//! path of real nodes, under floods, in virtual time.
//!
//! Each scenario is two or three nodes of a full mesh; the sender's node has
//! a QoS config, flows of UDP packets marked with a DSCP come in through its
//! TUN, and the receiver's TUN says what arrived when. Rates are measured as
//! the simulator's links count them: every datagram with its IPv4 and UDP
//! headers (what the node's shapers count too), from arrival times over a
//! 10 s window. Where the link itself is the bottleneck (its bandwidth
//! model with a bounded queue stands for a modem), the node shapes to a
//! little less, so the queue forms inside weft where it can be scheduled.
//!
//! Every scenario is deterministic from its seed (`WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{converge, link_event, ms, new_sim, secs};
use weft_core::qos::{QosConfig, RateLimit, Rule};
use weft_core::{Event, TUNNEL_OVERHEAD};
use weft_sim::{
    FlowId, FlowSpec, HostId, LinkConfig, MeshBuilder, Sim, UNDERLAY_HEADER, parse_udp, set_dscp,
    udp_packet,
};

/// IPv4 and UDP headers of a flow packet (the overlay packet itself).
const INNER_HEADERS: usize = 20 + 8;
/// DSCP values of the default rules: EF (realtime), AF11 (bulk), 0
/// (unmatched: interactive).
const EF: u8 = 46;
const AF11: u8 = 10;
const BEST_EFFORT: u8 = 0;

/// Bits a flow packet with `payload` bytes of UDP payload takes on the
/// underlay (and in the shapers): inner headers, tunnel overhead, outer
/// IPv4 and UDP headers.
fn wire_bits(payload: usize) -> u64 {
    ((payload + INNER_HEADERS + TUNNEL_OVERHEAD + UNDERLAY_HEADER) * 8) as u64
}

/// The interval between packets of `payload` bytes that offers `bps` on
/// the wire.
fn interval_for(payload: usize, bps: u64) -> Duration {
    Duration::from_nanos(wire_bits(payload) * 1_000_000_000 / bps)
}

/// Wire rate (bits per second) of the flow's packets that arrived in
/// `[from, to)`.
fn arrival_rate(sim: &Sim, flow: FlowId, payload: usize, from: Duration, to: Duration) -> f64 {
    let arrived = sim
        .flow(flow)
        .arrived
        .iter()
        .flatten()
        .filter(|at| **at >= from && **at < to)
        .count() as u64;
    (arrived * wire_bits(payload)) as f64 / (to - from).as_secs_f64()
}

/// The `p`-th percentile (0..=1) of `samples` (nearest rank).
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn mbit(bps: f64) -> f64 {
    bps / 1e6
}

/// A full mesh of `count` nodes on `link`, with `qos` on `n0` only,
/// converged.
fn mesh(seed: u64, count: usize, link: LinkConfig, qos: QosConfig) -> (Sim, Vec<HostId>) {
    let mut sim = new_sim(seed);
    let mesh = MeshBuilder::new(count)
        .with_link(link)
        .with_node_qos(0, qos)
        .build(&mut sim)
        .expect("mesh builds");
    converge(&mut sim, &mesh.hosts, secs(10));
    (sim, mesh.hosts)
}

fn link_with_bandwidth(bps: u64) -> LinkConfig {
    LinkConfig {
        bandwidth: Some(bps),
        ..LinkConfig::default()
    }
}

/// The class statistics of `class` at `host`.
fn class_stats(sim: &Sim, host: HostId, class: &str) -> weft_core::qos::ClassStats {
    let stats = sim
        .node(host)
        .expect("host runs")
        .qos_stats(sim.now())
        .classes;
    stats
        .into_iter()
        .find(|c| c.name == class)
        .unwrap_or_else(|| panic!("no class {class}"))
}

#[test]
fn a_capped_class_gets_its_rate_under_fourfold_overload() {
    // Bulk capped at 5 Mbit/s, no uplink shaping, a link without a
    // bandwidth limit: the cap alone holds the class back.
    let cap = 5_000_000;
    let mut qos = QosConfig::default();
    let bulk = qos.class_id("bulk").expect("default class");
    qos.classes[bulk.index()].rate_limit = Some(RateLimit::BitsPerSecond(cap));
    let (mut sim, hosts) = mesh(61, 2, LinkConfig::default(), qos);
    let (a, b) = (hosts[0], hosts[1]);

    let start = sim.elapsed() + ms(500);
    let end = start + secs(12);
    let payload = 1200;
    let bulk_flow = FlowSpec::new(a, b)
        .with_start(start)
        .with_interval(interval_for(payload, 20_000_000))
        .with_payload(payload)
        .with_dscp(AF11)
        .with_port(7001)
        .until(end);
    let bulk_flow = sim.start_flow(&bulk_flow).expect("flow starts");
    // Unmarked traffic beside it is not held back by bulk's cap.
    let other = FlowSpec::new(a, b)
        .with_start(start)
        .with_interval(interval_for(payload, 2_000_000))
        .with_payload(payload)
        .with_dscp(BEST_EFFORT)
        .with_port(7002)
        .until(end);
    let other = sim.start_flow(&other).expect("flow starts");
    sim.run_until(end + secs(1));

    let (from, to) = (start + secs(1), start + secs(11));
    let rate = arrival_rate(&sim, bulk_flow, payload, from, to);
    let error = (rate - cap as f64).abs() / cap as f64;
    let stats = class_stats(&sim, a, "bulk");
    println!(
        "bulk capped at {:.3} Mbit/s, offered 20: {:.3} Mbit/s over 10 s ({:.2} % off); \
         dropped {} (queue full) + {} (AQM); mean sojourn {:?}",
        mbit(cap as f64),
        mbit(rate),
        100.0 * error,
        stats.dropped_full_packets,
        stats.dropped_aqm_packets,
        stats.sojourn_avg,
    );
    assert!(error < 0.05, "bulk got {rate} bit/s, cap {cap}");
    assert_eq!(stats.rate_limit_bps, Some(cap));
    assert!(stats.dropped_packets() > 0, "an overloaded class drops");
    let other = sim.flow(other).window(from, to);
    assert_eq!(other.lost(), 0, "unmarked traffic beside the capped class");
    assert_eq!(sim.stats().timer_stalls, 0);
    assert_eq!(sim.misdelivered(), 0);
}

/// What one run of the realtime-versus-bulk scenario measured.
#[derive(Debug)]
struct RealtimeRun {
    idle_p99: Duration,
    loaded_p99: Duration,
    loaded_max: Duration,
    realtime_lost: usize,
    realtime_sent: usize,
    bulk_bps: f64,
    realtime_bps: f64,
}

/// A 20 Mbit/s link from `n0` to `n1` (64 KiB of queue, as a modem might
/// have); `n0` sends a small EF stream every 20 ms, alone for 2 s, then
/// beside a bulk flood offering 25 Mbit/s for 12 s.
fn realtime_beside_bulk(qos: QosConfig) -> RealtimeRun {
    let (mut sim, hosts) = mesh(62, 2, link_with_bandwidth(20_000_000), qos);
    let (a, b) = (hosts[0], hosts[1]);
    let t0 = sim.elapsed() + ms(100);
    let flood_start = t0 + secs(2);
    let end = flood_start + secs(12);
    let (rt_payload, bulk_payload) = (160, 1200);
    let rt_interval = ms(20);
    let realtime = FlowSpec::new(a, b)
        .with_start(t0)
        .with_interval(rt_interval)
        .with_payload(rt_payload)
        .with_dscp(EF)
        .with_port(5004)
        .until(end);
    let realtime = sim.start_flow(&realtime).expect("flow starts");
    let bulk = FlowSpec::new(a, b)
        .with_start(flood_start)
        .with_interval(interval_for(bulk_payload, 25_000_000))
        .with_payload(bulk_payload)
        .with_dscp(AF11)
        .with_port(6000)
        .until(end);
    let bulk = sim.start_flow(&bulk).expect("flow starts");
    sim.run_until(end + secs(1));

    let (from, to) = (flood_start + secs(1), flood_start + secs(11));
    let report = sim.flow(realtime);
    let idle = report.latencies(t0, flood_start);
    let loaded = report.latencies(from, to);
    let total = report.total();
    assert_eq!(sim.stats().timer_stalls, 0);
    assert_eq!(sim.misdelivered(), 0);
    RealtimeRun {
        idle_p99: percentile(&idle, 0.99),
        loaded_p99: percentile(&loaded, 0.99),
        loaded_max: percentile(&loaded, 1.0),
        realtime_lost: total.lost(),
        realtime_sent: total.sent,
        bulk_bps: arrival_rate(&sim, bulk, bulk_payload, from, to),
        realtime_bps: wire_bits(rt_payload) as f64 / rt_interval.as_secs_f64(),
    }
}

#[test]
fn realtime_stays_fast_and_whole_while_bulk_fills_the_uplink() {
    let uplink = 19_000_000;
    let shaped = realtime_beside_bulk(QosConfig {
        uplink_bps: Some(uplink),
        ..QosConfig::default()
    });
    let unshaped = realtime_beside_bulk(QosConfig::default());
    for (name, run) in [("qos on ", &shaped), ("qos off", &unshaped)] {
        println!(
            "{name}: realtime one-way p99 idle {:?}, loaded p99 {:?} max {:?}, lost {}/{}; \
             bulk {:.2} Mbit/s",
            run.idle_p99,
            run.loaded_p99,
            run.loaded_max,
            run.realtime_lost,
            run.realtime_sent,
            mbit(run.bulk_bps),
        );
    }
    // The targets: realtime p99 within 5 ms of idle, no loss, and
    // bulk at least 90 % of what realtime leaves of the shaped uplink.
    assert_eq!(shaped.realtime_lost, 0, "{shaped:?}");
    assert!(
        shaped.loaded_p99 <= shaped.idle_p99 + ms(5),
        "realtime p99 under load {:?}, idle {:?}",
        shaped.loaded_p99,
        shaped.idle_p99
    );
    // The queueing delay a realtime packet sees is about one bulk packet's
    // transmission time (0.5 ms at 19 Mbit/s) plus the shaper's burst.
    assert!(
        shaped.loaded_max <= shaped.idle_p99 + ms(3),
        "worst realtime delay {:?}, idle p99 {:?}",
        shaped.loaded_max,
        shaped.idle_p99
    );
    let remaining = uplink as f64 - shaped.realtime_bps;
    assert!(
        shaped.bulk_bps >= 0.9 * remaining,
        "bulk {:.2} Mbit/s of {:.2} left",
        mbit(shaped.bulk_bps),
        mbit(remaining)
    );
    // Without shaping the same flood queues in the link: the scenario does
    // build the queue that QoS keeps out of the realtime path.
    assert!(
        unshaped.loaded_p99 > unshaped.idle_p99 + ms(10),
        "no queue without QoS? {unshaped:?}"
    );
}

#[test]
fn a_peer_rate_limit_holds_without_slowing_other_peers() {
    let limit = 4_000_000;
    let qos = QosConfig {
        peer_rates: vec![("n1".to_owned(), limit)],
        ..QosConfig::default()
    };
    let (mut sim, hosts) = mesh(63, 3, LinkConfig::default(), qos);
    let (a, b, c) = (hosts[0], hosts[1], hosts[2]);
    let start = sim.elapsed() + ms(500);
    let end = start + secs(12);
    let payload = 1000;
    let interval = interval_for(payload, 10_000_000);
    let flow = |to: HostId, port: u16| {
        FlowSpec::new(a, to)
            .with_start(start)
            .with_interval(interval)
            .with_payload(payload)
            .with_dscp(BEST_EFFORT)
            .with_port(port)
            .until(end)
    };
    let limited = sim.start_flow(&flow(b, 7100)).expect("flow starts");
    let free = sim.start_flow(&flow(c, 7200)).expect("flow starts");
    sim.run_until(end + secs(1));

    let (from, to) = (start + secs(1), start + secs(11));
    let rate = arrival_rate(&sim, limited, payload, from, to);
    let error = (rate - limit as f64).abs() / limit as f64;
    let free_window = sim.flow(free).window(from, to);
    let peers = sim.node(a).expect("runs").qos_stats(sim.now()).peers;
    println!(
        "n1 limited to {:.2} Mbit/s, offered 10: {:.3} Mbit/s ({:.2} % off); \
         n2 unlimited: {}/{} delivered; peer stats {peers:?}",
        mbit(limit as f64),
        mbit(rate),
        100.0 * error,
        free_window.delivered,
        free_window.sent,
    );
    assert!(error < 0.05, "n1 got {rate} bit/s, limit {limit}");
    assert_eq!(free_window.lost(), 0, "n2 is slowed by n1's limit");
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].name, "n1");
    assert!(peers[0].dropped_packets > 0);
    assert_eq!(sim.stats().timer_stalls, 0);
    assert_eq!(sim.misdelivered(), 0);
}

#[test]
fn probes_and_sessions_survive_a_saturating_flood() {
    let (mut sim, hosts) = mesh(
        64,
        2,
        link_with_bandwidth(20_000_000),
        QosConfig {
            uplink_bps: Some(19_000_000),
            ..QosConfig::default()
        },
    );
    let (a, b) = (hosts[0], hosts[1]);
    let rtt = |sim: &Sim| {
        let peer = sim.peer_status(a, b).expect("a knows b");
        peer.rtt.expect("a measured b")
    };
    let idle_rtt = rtt(&sim);
    let probes_before = common::counter(&sim, a, "probe_tx_bytes");
    let start = sim.elapsed() + ms(100);
    let end = start + secs(10);
    let payload = 1200;
    // Twice what the link carries, unmarked: the interactive class, the
    // one control traffic would share a queue with if it had one.
    let flood = FlowSpec::new(a, b)
        .with_start(start)
        .with_interval(interval_for(payload, 40_000_000))
        .with_payload(payload)
        .with_dscp(BEST_EFFORT)
        .with_port(8000)
        .until(end);
    let flood = sim.start_flow(&flood).expect("flow starts");
    let mut worst_rtt = Duration::ZERO;
    while sim.elapsed() < end {
        let next = sim.elapsed() + ms(250);
        sim.run_until(next);
        worst_rtt = worst_rtt.max(rtt(&sim));
    }
    let probes = common::counter(&sim, a, "probe_tx_bytes") - probes_before;
    let delivered = sim.flow(flood).window(start, end);
    println!(
        "flood 40 Mbit/s into 19: {}/{} delivered; probe bytes sent {probes}; \
         RTT idle {idle_rtt:?}, worst smoothed under flood {worst_rtt:?}",
        delivered.delivered, delivered.sent,
    );
    assert!(!link_event(&sim, a, b, false, start), "a saw the link down");
    assert!(!link_event(&sim, b, a, false, start), "b saw the link down");
    let lost = |host: HostId| {
        sim.events(host)
            .iter()
            .any(|(at, e)| *at >= start && matches!(e, Event::SessionLost { .. }))
    };
    assert!(!lost(a) && !lost(b), "a session was lost under the flood");
    // While traffic uses the link it is probed at the active rate (40 ms):
    // about 250 probes of 41 bytes in 10 s; well over half must have gone.
    assert!(probes >= 41 * 150, "only {probes} probe bytes in 10 s");
    assert!(
        worst_rtt <= idle_rtt + ms(5),
        "probes waited behind data: RTT {worst_rtt:?}, idle {idle_rtt:?}"
    );
    assert_eq!(sim.stats().timer_stalls, 0);
}

#[test]
fn an_ef_flood_is_held_to_the_realtime_cap_and_bulk_keeps_the_rest() {
    // Strict priority for realtime, but capped (30 % of the uplink by
    // default): traffic marked EF cannot starve the other classes.
    let uplink = 19_000_000;
    let (mut sim, hosts) = mesh(
        65,
        2,
        link_with_bandwidth(20_000_000),
        QosConfig {
            uplink_bps: Some(uplink),
            ..QosConfig::default()
        },
    );
    let (a, b) = (hosts[0], hosts[1]);
    let start = sim.elapsed() + ms(100);
    let end = start + secs(12);
    let payload = 1200;
    let flow = |dscp: u8, port: u16| {
        FlowSpec::new(a, b)
            .with_start(start)
            .with_interval(interval_for(payload, 20_000_000))
            .with_payload(payload)
            .with_dscp(dscp)
            .with_port(port)
            .until(end)
    };
    let ef = sim.start_flow(&flow(EF, 5006)).expect("flow starts");
    let bulk = sim.start_flow(&flow(AF11, 6001)).expect("flow starts");
    sim.run_until(end + secs(1));

    let (from, to) = (start + secs(1), start + secs(11));
    let cap = 0.3 * uplink as f64;
    let ef_rate = arrival_rate(&sim, ef, payload, from, to);
    let bulk_rate = arrival_rate(&sim, bulk, payload, from, to);
    println!(
        "EF flood: {:.2} Mbit/s (cap {:.2}); bulk beside it {:.2} Mbit/s",
        mbit(ef_rate),
        mbit(cap),
        mbit(bulk_rate)
    );
    assert!((ef_rate - cap).abs() / cap < 0.05, "EF got {ef_rate} bit/s");
    assert!(
        bulk_rate >= 0.9 * (uplink as f64 - cap),
        "bulk got {bulk_rate} bit/s"
    );
    assert_eq!(sim.stats().timer_stalls, 0);
}

#[test]
fn rules_on_the_destination_peer_pick_the_class() {
    // Everything to n1 is background, whatever its DSCP; n2 keeps the
    // default rules.
    let mut qos = QosConfig::default();
    qos.rules.insert(
        0,
        Rule {
            class: "background".to_owned(),
            dst_peers: vec!["n1".to_owned()],
            ..Rule::default()
        },
    );
    let (mut sim, hosts) = mesh(66, 3, LinkConfig::default(), qos);
    let (a, b, c) = (hosts[0], hosts[1], hosts[2]);
    let start = sim.elapsed() + ms(10);
    let flow = |to: HostId, port: u16| {
        FlowSpec::new(a, to)
            .with_start(start)
            .with_count(20)
            .with_dscp(EF)
            .with_port(port)
    };
    let to_b = sim.start_flow(&flow(b, 7300)).expect("flow starts");
    let to_c = sim.start_flow(&flow(c, 7400)).expect("flow starts");
    sim.run_until(start + secs(1));

    assert_eq!(sim.flow(to_b).total().lost(), 0);
    assert_eq!(sim.flow(to_c).total().lost(), 0);
    assert_eq!(class_stats(&sim, a, "background").sent_packets, 20);
    assert_eq!(class_stats(&sim, a, "realtime").sent_packets, 20);
    let node = sim.node(a).expect("runs");
    let packet = weft_sim::udp_packet(
        "198.19.0.1:1".parse().expect("address"),
        "198.19.0.2:2".parse().expect("address"),
        b"x",
    )
    .expect("packet builds");
    assert_eq!(
        node.qos_classify(&packet, Some("n1")).as_deref(),
        Some("background")
    );
    assert_eq!(
        node.qos_classify(&packet, Some("n2")).as_deref(),
        Some("interactive")
    );
    assert_eq!(
        node.qos_classify(&packet, None).as_deref(),
        Some("interactive")
    );
}

#[test]
fn multicast_copies_are_classified_and_realtime_ones_pass_a_bulk_flood() {
    // n0 sends an EF stream to a group that n1 and n2 joined, beside a bulk
    // flood to n1 into its 19 Mbit/s shaper; each copy is queued in the
    // class of the packet it carries.
    let group = Ipv4Addr::new(239, 7, 0, 1);
    let uplink = 19_000_000;
    let (mut sim, hosts) = mesh(
        67,
        3,
        link_with_bandwidth(20_000_000),
        QosConfig {
            uplink_bps: Some(uplink),
            ..QosConfig::default()
        },
    );
    let (a, b, c) = (hosts[0], hosts[1], hosts[2]);
    for member in [b, c] {
        sim.with_node(member, |node, now| node.join_group(now, IpAddr::V4(group)))
            .expect("member runs")
            .expect("group joins");
    }
    sim.run_for(secs(1));
    let start = sim.elapsed() + ms(100);
    let flood_start = start + secs(2);
    let end = flood_start + secs(6);
    let interval = ms(20);
    let count = ((end - start).as_nanos() / interval.as_nanos()) as u32;
    let source = SocketAddr::new(IpAddr::V4(sim.overlay_ipv4(a).expect("ipv4")), 5004);
    let destination = SocketAddr::new(IpAddr::V4(group), 5004);
    for i in 0..count {
        let payload = format!("mcast {i:06}");
        let mut packet = udp_packet(source, destination, payload.as_bytes()).expect("builds");
        set_dscp(&mut packet, EF);
        sim.schedule_tun(start + interval * i, a, packet);
    }
    let bulk_payload = 1200;
    let bulk = FlowSpec::new(a, b)
        .with_start(flood_start)
        .with_interval(interval_for(bulk_payload, 25_000_000))
        .with_payload(bulk_payload)
        .with_dscp(AF11)
        .with_port(6002)
        .until(end);
    let bulk = sim.start_flow(&bulk).expect("flow starts");
    sim.run_until(end + secs(1));

    let delays = |host: HostId, from: Duration, to: Duration| -> Vec<Duration> {
        sim.tun(host)
            .iter()
            .filter_map(|d| {
                let udp = parse_udp(&d.packet)?;
                if udp.destination != destination {
                    return None;
                }
                let text = std::str::from_utf8(udp.payload).ok()?;
                let i: u32 = text.strip_prefix("mcast ")?.parse().ok()?;
                let sent = start + interval * i;
                (sent >= from && sent < to).then(|| d.at - sent)
            })
            .collect()
    };
    for member in [b, c] {
        let idle = delays(member, start, flood_start);
        let loaded = delays(member, flood_start + secs(1), end);
        let all = delays(member, start, end);
        let (idle_p99, loaded_max) = (percentile(&idle, 0.99), percentile(&loaded, 1.0));
        println!(
            "{}: {} of {count} multicast packets; idle p99 {idle_p99:?}, worst under the flood \
             {loaded_max:?}",
            sim.name(member),
            all.len()
        );
        assert_eq!(
            all.len(),
            count as usize,
            "a member missed multicast packets"
        );
        assert!(
            loaded_max <= idle_p99 + ms(3),
            "{loaded_max:?} vs {idle_p99:?}"
        );
    }
    let bulk_rate = arrival_rate(&sim, bulk, bulk_payload, flood_start + secs(1), end);
    assert!(bulk_rate >= 0.9 * uplink as f64, "bulk {bulk_rate}");
    // Two copies of every packet in the realtime class, whatever else n0
    // sent there.
    assert!(class_stats(&sim, a, "realtime").sent_packets >= 2 * u64::from(count));
    assert_eq!(sim.stats().timer_stalls, 0);
}
