//! NAT traversal at the node level: two members behind NAT routers, a
//! public member r both reach, and a flow from a to b. Where both NATs map
//! endpoint-independently the pair ends up direct (`Punched`) without
//! losing a packet on the way from the relay, and again after a router
//! forgets its mappings; a symmetric NAT against a port-restricted one,
//! or two symmetric ones, stay relayed through r with nothing lost from
//! the first packet; two members behind one router use their LAN.
//!
//! The routers are the simulator's (`weft_sim::NatConfig`):
//! port-restricted filtering, no hairpinning, unsolicited packets dropped.
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use weft_core::{Metric, PathKind};
use weft_sim::nat_world::{NatWorld, lan_address};
use weft_sim::{HostId, NatMapping, Sim};

use common::{counter, ms, new_sim, path, run_until_checked, secs};

fn build(sim: &mut Sim, a_nat: NatMapping, b_nat: Option<NatMapping>) -> NatWorld {
    NatWorld::build(sim, a_nat, b_nat).unwrap()
}

fn path_kind(sim: &Sim, from: HostId, to: HostId) -> Option<PathKind> {
    NatWorld::path_kind(sim, from, to)
}

/// Sessions with r, and link state about each other through it.
fn settle(sim: &mut Sim, w: &NatWorld) {
    assert!(
        run_until_checked(sim, secs(20), ms(100), |s| w.settled(s)),
        "a and b reach r and know of each other"
    );
}

fn flow(sim: &mut Sim, w: &NatWorld, duration: Duration) -> weft_sim::FlowId {
    w.flow(sim, duration).unwrap()
}

#[test]
fn endpoint_independent_nats_go_direct_without_loss_and_again_after_a_reboot() {
    let mut sim = new_sim(61);
    let w = build(
        &mut sim,
        NatMapping::EndpointIndependent,
        Some(NatMapping::EndpointIndependent),
    );
    settle(&mut sim, &w);
    let start = sim.elapsed();
    let f = flow(&mut sim, &w, secs(30));
    assert!(
        run_until_checked(&mut sim, start + secs(5), ms(10), |s| {
            path_kind(s, w.a, w.b) == Some(PathKind::Punched)
                && path_kind(s, w.b, w.a) == Some(PathKind::Punched)
                && path(s, w.a, w.b, Metric::Latency).is_some_and(|p| p == ["b"])
        }),
        "direct within 5 s: a sees {:?}, b sees {:?}",
        sim.peer_status(w.a, w.b),
        sim.peer_status(w.b, w.a)
    );
    let direct_after = sim.elapsed() - start;
    assert!(direct_after < secs(3), "{direct_after:?}");
    // The relay carries nothing of the flow any more.
    let relayed = counter(&sim, w.r, "relayed");
    sim.run_until(sim.elapsed() + secs(2));
    assert!(counter(&sim, w.r, "relayed") - relayed < 5);

    // a's router forgets its mappings: the flow takes r again, and the
    // direct path comes back.
    let reboot = sim.elapsed();
    sim.reboot_nat(weft_sim::NatId(0));
    assert!(
        run_until_checked(&mut sim, reboot + secs(10), ms(10), |s| {
            s.elapsed() > reboot + secs(1)
                && path_kind(s, w.a, w.b) == Some(PathKind::Punched)
                && path(s, w.a, w.b, Metric::Latency).is_some_and(|p| p == ["b"])
        }),
        "direct again: {:?}",
        sim.peer_status(w.a, w.b)
    );
    sim.run_until(start + secs(31));
    let report = sim.flow(f);
    let before_reboot = report.window(Duration::ZERO, reboot);
    assert_eq!(before_reboot.lost(), 0, "lost before the reboot");
    let outage = report.outage_after(reboot).unwrap_or_default();
    println!(
        "direct {direct_after:?} after the first packet; after the reboot an outage of {outage:?}, {} lost; punches a {} b {}, pings a {} b {}",
        report.total().lost(),
        counter(&sim, w.a, "punch_succeeded"),
        counter(&sim, w.b, "punch_succeeded"),
        counter(&sim, w.a, "punch_pings_sent"),
        counter(&sim, w.b, "punch_pings_sent"),
    );
    assert!(outage < secs(2), "{outage:?}");
}

#[test]
fn symmetric_against_port_restricted_stays_relayed_without_loss() {
    let mut sim = new_sim(62);
    let w = build(
        &mut sim,
        NatMapping::Symmetric,
        Some(NatMapping::EndpointIndependent),
    );
    settle(&mut sim, &w);
    let f = flow(&mut sim, &w, secs(20));
    sim.run_until(sim.elapsed() + secs(21));
    assert_eq!(path_kind(&sim, w.a, w.b), Some(PathKind::Relayed));
    assert_eq!(sim.peer_status(w.a, w.b).unwrap().via, ["r"]);
    assert_eq!(sim.flow(f).total().lost(), 0);
}

#[test]
fn both_symmetric_stay_relayed_from_the_first_packet() {
    let mut sim = new_sim(63);
    let w = build(&mut sim, NatMapping::Symmetric, Some(NatMapping::Symmetric));
    settle(&mut sim, &w);
    let f = flow(&mut sim, &w, secs(20));
    sim.run_until(sim.elapsed() + secs(21));
    assert_eq!(path_kind(&sim, w.a, w.b), Some(PathKind::Relayed));
    assert_eq!(path_kind(&sim, w.b, w.a), Some(PathKind::Relayed));
    let report = sim.flow(f);
    assert_eq!(report.total().lost(), 0);
    // The first packet waited only for the relayed handshake.
    let first = report.arrived[0].unwrap() - report.sent[0];
    assert!(first < ms(100), "{first:?}");
    assert!(counter(&sim, w.a, "punch_failed") + counter(&sim, w.b, "punch_failed") >= 1);
}

#[test]
fn members_behind_one_router_use_their_lan() {
    let mut sim = new_sim(64);
    let w = build(&mut sim, NatMapping::EndpointIndependent, None);
    settle(&mut sim, &w);
    let start = sim.elapsed();
    let f = flow(&mut sim, &w, secs(10));
    assert!(
        run_until_checked(&mut sim, start + secs(5), ms(10), |s| {
            path_kind(s, w.a, w.b) == Some(PathKind::DirectLan)
                && path_kind(s, w.b, w.a) == Some(PathKind::DirectLan)
                && path(s, w.a, w.b, Metric::Latency).is_some_and(|p| p == ["b"])
        }),
        "LAN path: {:?}",
        sim.peer_status(w.a, w.b)
    );
    assert_eq!(
        sim.peer_status(w.a, w.b).unwrap().endpoint,
        Some(lan_address(1, 3))
    );
    sim.run_until(start + secs(11));
    assert_eq!(sim.flow(f).total().lost(), 0);
}

#[test]
fn an_idle_punched_link_costs_under_50_bytes_a_second_and_stays_open() {
    let mut sim = new_sim(65);
    let w = build(
        &mut sim,
        NatMapping::EndpointIndependent,
        Some(NatMapping::EndpointIndependent),
    );
    settle(&mut sim, &w);
    let f = flow(&mut sim, &w, secs(2));
    let deadline = sim.elapsed() + secs(5);
    assert!(
        run_until_checked(&mut sim, deadline, ms(10), |s| {
            path_kind(s, w.a, w.b) == Some(PathKind::Punched)
        }),
        "punched: {:?}",
        sim.peer_status(w.a, w.b)
    );
    // Idle from here: whatever a and b send each other keeps the link.
    sim.run_until(sim.elapsed() + secs(5));
    assert_eq!(sim.flow(f).total().lost(), 0);
    let window = secs(120);
    let ab = sim.capture(w.a, w.b);
    let ba = sim.capture(w.b, w.a);
    sim.run_until(sim.elapsed() + window);
    sim.stop_capture(ab);
    sim.stop_capture(ba);
    // UDP payload, and on the wire with 28 bytes of IPv4 and UDP headers.
    // What keeps the link and its mappings alive: probes and their
    // answers (41 bytes: header, ping or pong frame, tag) and keepalives
    // (33 bytes). Link-state records, DHT upkeep and candidate updates
    // also cross it, as they cross any link; they are counted apart.
    let sizes: Vec<usize> = [ab, ba]
        .iter()
        .flat_map(|&c| sim.captured(c).iter().map(|d| d.bytes.len()))
        .collect();
    let keepalive: Vec<usize> = sizes
        .iter()
        .copied()
        .filter(|&len| len == 41 || len == 33)
        .collect();
    let per_second = |bytes: usize| bytes as f64 / window.as_secs_f64();
    let mut histogram = std::collections::BTreeMap::<usize, usize>::new();
    for len in &sizes {
        *histogram.entry(*len).or_default() += 1;
    }
    println!("datagram sizes (bytes: count) over {window:?}: {histogram:?}");
    println!(
        "a to b {}, b to a {}; paths {:?} {:?}",
        sim.captured(ab)
            .iter()
            .filter(|d| d.bytes.len() == 41)
            .count(),
        sim.captured(ba)
            .iter()
            .filter(|d| d.bytes.len() == 41)
            .count(),
        path_kind(&sim, w.a, w.b),
        path_kind(&sim, w.b, w.a)
    );
    let times: Vec<String> = sim
        .captured(ab)
        .iter()
        .filter(|d| d.bytes.len() == 41)
        .skip(20)
        .take(40)
        .map(|d| format!("{:?}", d.sent_at))
        .collect();
    println!("a to b probe times: {times:?}");
    let payload: usize = keepalive.iter().sum();
    let wire = payload + 28 * keepalive.len();
    let all: usize = sizes.iter().sum::<usize>() + 28 * sizes.len();
    println!(
        "idle punched link, both directions: keepalive {:.1} B/s of UDP payload, {:.1} B/s on the wire; all traffic {:.1} B/s on the wire",
        per_second(payload),
        per_second(wire),
        per_second(all)
    );
    assert!(per_second(wire) <= 50.0, "{} B/s", per_second(wire));
    // Still direct and still working: the mappings stayed open.
    assert_eq!(path_kind(&sim, w.a, w.b), Some(PathKind::Punched));
    assert_eq!(
        sim.peer_status(w.a, w.b).unwrap().link,
        weft_core::LinkHealth::Up
    );
}
