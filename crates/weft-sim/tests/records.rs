//! Control messages fit one datagram, whatever the neighbourhood: in a full
//! mesh larger than a link-state record can list (each node has more
//! sessions than `wire::MAX_LINKS`), every node still gets every other
//! node's record and no node ever sends a datagram over
//! `wire::MAX_CONTROL_DATAGRAM` bytes. Before records were capped, a node
//! with more than about 54 sessions signed a record larger than a datagram
//! and link state stopped spreading.
//!
//! Records name their origin's certificate by fingerprint: a node that
//! gets a record of a node it never had a session with fetches the
//! certificate from the neighbour that passed the record on. Records
//! travel two links from their origin (a multicast member's everywhere).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use common::{new_sim, secs};
use weft_core::wire::{MAX_CONTROL_DATAGRAM, MAX_LINKS};
use weft_sim::MeshBuilder;

#[test]
fn a_full_mesh_larger_than_a_record_spreads_every_record_in_datagrams_that_fit() {
    let mut sim = new_sim(41);
    let limit = MAX_LINKS;
    let n = limit + 2;
    let mesh = MeshBuilder::new(n).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    assert!(sim.run_until_condition(secs(30), |s| s.all_established(&hosts)));
    sim.run_for(secs(5));
    // Idle, a full record is not signed again because of the links it has
    // no room for (each of their probes made one, at the brake's rate,
    // before: a hundred nodes sent three times the traffic of before the
    // cap). Refresh is 30 s away, and nothing changes.
    let signed = |sim: &weft_sim::Sim| -> Vec<u64> {
        hosts
            .iter()
            .map(|&h| sim.node(h).unwrap().stats().lsa_originated)
            .collect()
    };
    let before = signed(&sim);
    sim.run_for(secs(10));
    let idle: Vec<u64> = signed(&sim)
        .iter()
        .zip(&before)
        .map(|(after, before)| after - before)
        .collect();
    assert!(
        idle.iter().all(|&n| n <= 1),
        "records signed per node in 10 idle seconds: {idle:?}"
    );
    let now = sim.now();
    let mut capped = 0;
    for &h in &hosts {
        let node = sim.node(h).unwrap();
        let topology = node.topology(now);
        let known = topology.nodes.iter().filter(|t| t.advertised).count();
        // Its own and every other mesh node's record.
        assert!(known >= n, "{} holds {known} records of {n}", sim.name(h));
        assert_eq!(node.stats().lsa_rejected, 0);
        capped += node.stats().lsa_links_capped;
    }
    assert!(
        capped > 0,
        "no record reached the cap: the test proves nothing"
    );
    let largest = sim.stats().largest_datagram;
    assert!(
        largest <= MAX_CONTROL_DATAGRAM,
        "a {largest}-byte datagram (limit {MAX_CONTROL_DATAGRAM}, {limit} links a record)"
    );
}

#[test]
fn records_reach_two_links_out_with_fetched_certificates_and_members_reach_everyone() {
    let mut sim = new_sim(42);
    let n = 6;
    let mesh = MeshBuilder::new(n).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    // A chain: n0 - n1 - n2 - n3 - n4 - n5; no other pair can reach each
    // other, so n0 never has a session with n2 and beyond and never sees
    // their certificates in a handshake.
    for a in 0..n {
        for b in a + 2..n {
            sim.cut(hosts[a], hosts[b]);
        }
    }
    let n0 = hosts[0];
    let advertised = |sim: &weft_sim::Sim| -> Vec<String> {
        let topology = sim.node(n0).unwrap().topology(sim.now());
        topology
            .nodes
            .iter()
            .filter(|t| t.advertised)
            .map(|t| t.name.clone())
            .collect()
    };
    let in_scope = |names: &[String]| -> bool {
        ["n0", "n1", "n2"]
            .iter()
            .all(|name| names.iter().any(|n| n == name))
    };
    assert!(
        sim.run_until_condition(secs(30), |s| in_scope(&advertised(s))),
        "n0 never held the records of n1 and n2: {:?}",
        advertised(&sim)
    );
    // Three refreshes later, still nothing from beyond two links: a path
    // has at most three links, and n0 needs no record from further.
    sim.run_for(secs(100));
    let mut held = advertised(&sim);
    held.sort();
    assert_eq!(held, ["n0", "n1", "n2"], "the records n0 holds");
    let mut requested = 0;
    let mut received = 0;
    for &h in &hosts {
        let node = sim.node(h).unwrap();
        let stats = node.stats();
        assert_eq!(stats.lsa_rejected, 0, "{}", sim.name(h));
        assert_eq!(stats.certificates_rejected, 0, "{}", sim.name(h));
        requested += stats.certificates_requested;
        received += stats.certificates_received;
        assert!(node.certificates_held() <= n, "{}", sim.name(h));
    }
    assert!(
        received > 0 && requested >= received,
        "{requested} asked, {received} received"
    );
    // n0 holds the certificates of n1 (from their handshake) and of n2,
    // fetched.
    assert!(sim.node(n0).unwrap().certificates_held() >= 2);

    // A multicast member's record reaches every node: the far end joins a
    // group, and n0 gets its record (and the certificate to check it).
    let group = "239.1.2.3".parse().unwrap();
    sim.with_node(hosts[n - 1], |node, now| node.join_group(now, group))
        .unwrap()
        .unwrap();
    let far = format!("n{}", n - 1);
    assert!(
        sim.run_until_condition(sim.elapsed() + secs(2), |s| advertised(s).contains(&far)),
        "the member's record never reached n0: {:?}",
        advertised(&sim)
    );
}
