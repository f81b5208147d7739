//! Control messages fit one datagram, whatever the neighbourhood: in a full
//! mesh larger than a link-state record can list (each node has more
//! sessions than `wire::max_links` allows for its certificate), every node
//! still gets every other node's record and no node ever sends a datagram
//! over `wire::MAX_CONTROL_DATAGRAM` bytes. Before records were capped, a
//! node with more than about 54 sessions signed a record larger than a
//! datagram and link state stopped spreading.

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use common::{new_sim, secs};
use weft_core::wire::{MAX_CONTROL_DATAGRAM, max_links};
use weft_sim::MeshBuilder;

#[test]
fn a_full_mesh_larger_than_a_record_spreads_every_record_in_datagrams_that_fit() {
    let mut sim = new_sim(41);
    let certificate_len = {
        // The mesh's certificates are all alike in size; size it from one.
        let probe = MeshBuilder::new(1).build(&mut sim).unwrap();
        sim.config(probe.hosts[0]).certificate.to_bytes().len()
    };
    let limit = max_links(certificate_len);
    let n = limit + 4;
    let mesh = MeshBuilder::new(n).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    assert!(sim.run_until_condition(secs(30), |s| s.all_established(&hosts)));
    sim.run_for(secs(5));
    let now = sim.now();
    let mut capped = 0;
    for &h in &hosts {
        let node = sim.node(h).unwrap();
        let topology = node.topology(now);
        let known = topology.nodes.iter().filter(|t| t.advertised).count();
        // Its own and every other mesh node's record (the probe host of
        // the sizing step is not in this mesh).
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
