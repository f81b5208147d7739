//! Conflicting claims: a CA that signs one name, or one overlay IPv4
//! address, for two keys. Every node detects the conflict (counts it once,
//! lists it) and resolves it alike: the certificate issued first holds the
//! name or address (docs/PROTOCOL.md §9.3), whichever certificate it met
//! first or last.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, SocketAddr};

use weft_core::dht::Target;
use weft_core::{Claim, Event, Metric};
use weft_sim::{HostId, NodeSpec, Sim, add_node, mesh_ipv4, test_ca, udp_packet};

use common::{counter, ms, new_sim, run_until_checked, secs};

/// a, b and c, then an impostor of c (same name, later certificate) and an
/// impostor of b's address (another name, b's IPv4, later certificate).
/// Nodes bootstrap from a; the impostors join first, so most nodes meet
/// the later certificate before the earlier one.
fn build(sim: &mut Sim) -> (Vec<HostId>, [HostId; 5]) {
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let now = sim.unix_time();
    let spec = |name: &str, key: u64, ip: usize, age: u64| {
        let mut s = NodeSpec::new(sim, name, key);
        s.ipv4 = Some(mesh_ipv4(ip));
        s.not_before = now - age;
        s
    };
    let specs = [
        spec("a", 0, 0, 7200),
        spec("c", 3, 5, 600), // impostor of c's name
        spec("d", 4, 1, 600), // impostor of b's address
        spec("b", 1, 1, 7200),
        spec("c", 2, 2, 7200),
    ];
    let mut hosts = Vec::new();
    for mut s in specs {
        if let Some(&first) = hosts.first() {
            s.bootstrap = vec![sim.address(first)];
        }
        hosts.push(add_node(sim, &ca, &s).unwrap());
    }
    let [a, fake_c, d, b, c] = hosts.clone().try_into().unwrap();
    (hosts, [a, b, c, fake_c, d])
}

fn id(sim: &Sim, host: HostId) -> weft_core::NodeId {
    sim.node(host).unwrap().node_id()
}

#[test]
fn every_node_gives_a_doubly_signed_name_and_address_to_the_first_certificate() {
    let mut sim = new_sim(151);
    let (hosts, [_, b, c, fake_c, d]) = build(&mut sim);
    let (b_id, c_id) = (id(&sim, b), id(&sim, c));

    // Everyone learns every certificate (sessions, link state, DHT).
    let converged = run_until_checked(&mut sim, secs(60), ms(200), |s| {
        hosts.iter().all(|&h| {
            let node = s.node(h).unwrap();
            let now = s.now();
            hosts.iter().filter(|&&o| o != h).all(|&o| {
                node.trace(
                    now,
                    &s.node(o).unwrap().node_id().to_string(),
                    Metric::Latency,
                )
                .is_ok()
            })
        })
    });
    assert!(converged, "every node reaches every other");

    for &h in &hosts {
        let node = sim.node(h).unwrap();
        let now = sim.now();
        // The name: the earlier certificate of c, at every node, even at
        // the impostor itself.
        let route = node.trace(now, "c", Metric::Latency);
        if h != c {
            assert_eq!(
                route.unwrap().destination,
                c_id,
                "{} resolves c",
                sim.name(h)
            );
        }
        // Each conflict counted once and listed by every node that saw
        // both certificates.
        let conflicts = node.conflicts();
        assert_eq!(counter(&sim, h, "claim_conflicts"), 2, "{}", sim.name(h));
        let name = conflicts
            .iter()
            .find(|x| x.claim == Claim::Name("c".into()))
            .unwrap();
        assert_eq!((name.winner, name.loser), (c_id, id(&sim, fake_c)));
        let address = conflicts
            .iter()
            .find(|x| x.claim == Claim::Ipv4(mesh_ipv4(1).addr))
            .unwrap();
        assert_eq!((address.winner, address.loser), (b_id, id(&sim, d)));
    }

    // DHT lookups (what the DNS answers from): the holder, everywhere.
    let targets = [
        (Target::Name("c".into()), c_id),
        (Target::Ipv4(mesh_ipv4(1).addr), b_id),
    ];
    let mut asked = Vec::new();
    for &h in &hosts {
        for (target, holder) in &targets {
            let id = sim
                .with_node(h, |node, now| node.lookup(now, target.clone()))
                .unwrap();
            asked.push((h, id, target.clone(), *holder));
        }
    }
    sim.run_for(secs(12));
    for (h, id, target, holder) in asked {
        let result = sim
            .events(h)
            .iter()
            .find_map(|(_, e)| match e {
                Event::LookupDone {
                    id: done, result, ..
                } if *done == id => Some(result.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{} got no answer for {target:?}", sim.name(h)));
        assert_eq!(
            result.unwrap().node_id(),
            holder,
            "{} looks up {target:?}",
            sim.name(h)
        );
    }

    // The address: packets to b's IPv4 reach b, from every other node.
    for &from in &hosts {
        if from == b || from == d {
            continue;
        }
        let source = SocketAddr::new(IpAddr::V4(sim.overlay_ipv4(from).unwrap()), 5000);
        let to = SocketAddr::new(IpAddr::V4(mesh_ipv4(1).addr), 5000);
        let packet = udp_packet(source, to, b"who holds .2?").unwrap();
        let (at_b, at_d) = (sim.tun(b).len(), sim.tun(d).len());
        sim.inject_tun(from, &packet);
        let deadline = sim.elapsed() + secs(5);
        let arrived = run_until_checked(&mut sim, deadline, ms(20), |s| s.tun(b).len() > at_b);
        assert!(arrived, "from {} to b's address", sim.name(from));
        assert_eq!(sim.tun(d).len(), at_d, "nothing for the impostor");
    }
}
