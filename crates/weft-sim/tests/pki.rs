//! Certificates over a node's life in the simulator: the node warns before
//! its own certificate expires, and at expiry; a revocation list given to
//! one node spreads to all, shuts the revoked node out and lets it back in
//! when a newer list no longer names it; lost pieces are sent again.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use weft_core::{Event, RevocationList, RevocationTemplate};
use weft_sim::{HostId, MeshBuilder, NodeSpec, Sim, add_node, peer_config, test_ca};

use common::{converge, counter, new_sim, secs};

#[test]
fn a_node_warns_before_its_certificate_expires_and_at_expiry() {
    let mut sim = new_sim(81);
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let mut spec = NodeSpec::new(&sim, "short", 0);
    // Valid from an hour ago for two hours: a quarter of the lifetime (30
    // min) is the warning window, which opens in 30 minutes.
    spec.not_after = sim.unix_time() + 3600;
    let host = add_node(&mut sim, &ca, &spec).unwrap();

    sim.run_until(secs(3700));
    let warnings: Vec<(Duration, Duration)> = sim
        .events(host)
        .iter()
        .filter_map(|(at, event)| match event {
            Event::CertificateExpiring { remaining, .. } => Some((*at, *remaining)),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings,
        [(secs(1800), secs(1800)), (secs(3600), Duration::ZERO)],
        "once when the window opens, once at expiry"
    );
}

/// A list signed by the mesh's CA, revoking `node_ids` and some filler
/// names (so that it travels in several pieces).
fn revocation_list(
    ca: &weft_core::CaSecret,
    version: u64,
    node_ids: Vec<weft_core::NodeId>,
    filler: usize,
) -> RevocationList {
    RevocationList::sign(
        ca,
        &RevocationTemplate {
            version,
            issued_at: 1,
            node_ids,
            certificates: Vec::new(),
            names: (0..filler).map(|i| format!("retired-{i}")).collect(),
        },
    )
    .unwrap()
}

fn version_at(sim: &Sim, host: HostId) -> u64 {
    sim.node(host)
        .and_then(|n| n.revocation_list().map(RevocationList::version))
        .unwrap_or(0)
}

#[test]
fn a_revocation_given_to_one_node_spreads_and_shuts_the_revoked_node_out() {
    let mut sim = new_sim(82);
    let mesh = MeshBuilder::new(4).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    let revoked = hosts[3];
    converge(&mut sim, &hosts, secs(10));
    // Several pieces: 400 names of ~12 bytes.
    let list = revocation_list(&mesh.ca, 1, vec![sim.node_id(revoked)], 400);
    assert!(list.to_bytes().len() > 2 * weft_core::wire::REVOCATION_CHUNK_LEN);
    let start = sim.elapsed();
    let installed = sim
        .with_node(hosts[0], |node, now| {
            node.set_revocations(now, list.clone())
        })
        .unwrap();
    assert_eq!(installed, Ok(true));
    assert!(!sim.established(hosts[0], revoked), "ended at once");

    let members = &hosts[..3];
    assert!(
        sim.run_until_condition(start + secs(5), |s| members
            .iter()
            .all(|&h| version_at(s, h) == 1)),
        "the list reaches every member: {:?}",
        members
            .iter()
            .map(|&h| version_at(&sim, h))
            .collect::<Vec<_>>()
    );
    // Past dead_after (30 s): n3, whose packets nobody answers now, has
    // given up its side of the sessions too.
    sim.run_for(secs(40));
    for &host in members {
        assert!(
            !sim.established(host, revoked),
            "{} still talks to n3",
            sim.name(host)
        );
        assert!(!sim.established(revoked, host));
        let ended = sim.events(host).iter().any(
            |(_, e)| matches!(e, Event::PeerRevoked { peer, .. } if *peer == sim.node_id(revoked)),
        );
        assert!(ended, "{} reported no PeerRevoked", sim.name(host));
    }
    for (i, &a) in members.iter().enumerate() {
        for &b in &members[i + 1..] {
            assert!(sim.established(a, b), "members keep their sessions");
        }
    }
    // Its link-state record is refused too: no route goes through it.
    for &host in members {
        let node = sim.node(host).unwrap();
        for route in node.routes(sim.now()) {
            if route.destination == sim.node_id(revoked) {
                continue;
            }
            let names: Vec<&str> = route.path.iter().map(|h| h.name.as_str()).collect();
            assert!(
                !names.contains(&"n3"),
                "{} routes to {} via {names:?}",
                sim.name(host),
                route.name
            );
        }
    }
    let refused: u64 = members
        .iter()
        .map(|&h| counter(&sim, h, "handshake_rejected_revoked"))
        .sum();
    assert!(refused > 0, "n3 keeps calling and is refused");
    // The DHT neither holds, serves nor finds its record any more.
    let target = weft_core::dht::Target::Name("n3".into());
    let lookup = sim
        .with_node(hosts[1], |node, now| node.lookup(now, target.clone()))
        .unwrap();
    let asked = sim.elapsed();
    let done = |s: &Sim| {
        s.events(hosts[1]).iter().find_map(|(_, e)| match e {
            Event::LookupDone { id, result, .. } if *id == lookup => Some(result.is_ok()),
            _ => None,
        })
    };
    assert!(sim.run_until_condition(asked + secs(30), |s| done(s).is_some()));
    assert_eq!(
        done(&sim),
        Some(false),
        "a member still finds n3 in the DHT"
    );
    let received: u64 = members
        .iter()
        .map(|&h| counter(&sim, h, "revocation_lists_received"))
        .sum();
    assert_eq!(received, 2, "each other member got it once");

    // A newer list that revokes nobody wins over the older one, and lets
    // the node back in; an older one changes nothing.
    let amnesty = revocation_list(&mesh.ca, 2, Vec::new(), 0);
    let installed = sim
        .with_node(hosts[1], |node, now| {
            node.set_revocations(now, amnesty.clone())
        })
        .unwrap();
    assert_eq!(installed, Ok(true));
    let older = sim
        .with_node(hosts[2], |node, now| {
            node.set_revocations(now, list.clone())
        })
        .unwrap();
    assert_eq!(older, Ok(false));
    let back = sim.elapsed();
    assert!(
        sim.run_until_condition(back + secs(30), |s| members
            .iter()
            .all(|&h| version_at(s, h) == 2 && s.established(h, revoked))),
        "the amnesty spreads and n3 is back"
    );
}

#[test]
fn a_list_of_another_ca_is_refused() {
    let mut sim = new_sim(83);
    let mesh = MeshBuilder::new(2).build(&mut sim).unwrap();
    converge(&mut sim, &mesh.hosts, secs(10));
    let other = test_ca(9, sim.unix_time()).unwrap();
    let list = revocation_list(&other, 5, vec![sim.node_id(mesh.hosts[1])], 0);
    let result = sim
        .with_node(mesh.hosts[0], |node, now| node.set_revocations(now, list))
        .unwrap();
    assert_eq!(result, Err(weft_core::RevocationError::WrongCa));
    sim.run_for(secs(5));
    assert!(sim.established(mesh.hosts[0], mesh.hosts[1]));
}

#[test]
fn lost_pieces_are_sent_again_by_the_periodic_offer() {
    let mut sim = new_sim(84);
    let mesh = MeshBuilder::new(3).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    converge(&mut sim, &hosts, secs(10));
    // 20 % loss on every link while the list (9 pieces) goes out: one
    // push seldom gets every piece through.
    for (i, &a) in hosts.iter().enumerate() {
        for &b in &hosts[i + 1..] {
            sim.link_mut(a, b).loss = 0.2;
            sim.link_mut(b, a).loss = 0.2;
        }
    }
    let list = revocation_list(&mesh.ca, 1, Vec::new(), 800);
    sim.with_node(hosts[0], |node, now| node.set_revocations(now, list))
        .unwrap()
        .unwrap();
    let start = sim.elapsed();
    assert!(
        sim.run_until_condition(start + secs(600), |s| hosts
            .iter()
            .all(|&h| version_at(s, h) == 1)),
        "every node gets the list in the end: {:?}",
        hosts
            .iter()
            .map(|&h| version_at(&sim, h))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_blocklisted_certificate_is_refused_by_that_node_only() {
    let mut sim = new_sim(85);
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let blocked_spec = NodeSpec::new(&sim, "n1", 1);
    let blocked_certificate = blocked_spec.config(&ca).unwrap().certificate;
    let mut strict = NodeSpec::new(&sim, "n0", 0);
    strict.revocation.blocklist = vec![blocked_certificate.fingerprint()];
    let n0 = add_node(&mut sim, &ca, &strict).unwrap();
    let mut blocked_spec = blocked_spec;
    blocked_spec.peers = vec![peer_config(&sim, n0)];
    let n1 = add_node(&mut sim, &ca, &blocked_spec).unwrap();
    let mut other = NodeSpec::new(&sim, "n2", 2);
    other.peers = vec![peer_config(&sim, n0), peer_config(&sim, n1)];
    let n2 = add_node(&mut sim, &ca, &other).unwrap();
    sim.run_for(secs(10));
    assert!(sim.established(n2, n0) && sim.established(n0, n2));
    assert!(sim.established(n2, n1), "the blocklist is n0's alone");
    assert!(!sim.established(n1, n0) && !sim.established(n0, n1));
    assert!(counter(&sim, n0, "handshake_rejected_revoked") > 0);
    let rejected = sim.events(n0).iter().any(|(_, e)| {
        matches!(e, Event::HandshakeRejected { reason, .. } if reason.contains("'n1' is revoked"))
    });
    assert!(rejected);
}
