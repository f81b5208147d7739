//! Fuzzes the multicast building blocks that read untrusted bytes or build
//! on them: the IGMP/MLD report parser (whatever the TUN delivers) and the
//! tree builder over an arbitrary graph.
//!
//! Input: any bytes go to `parse_reports`. The same bytes also describe a
//! graph: byte 0 the fan-out, byte 1 the source, bytes 2..10 a member bitmap
//! over nodes 0..64, then `[a][b][cost]` triples (node numbers mod 64). The
//! tree must not panic and must keep its promises: members reached or
//! listed as unreached, edges are links, costs add up, the fan-out excess
//! is what `over_fanout` says.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use weft_core::NodeId;
use weft_core::mcast::{GroupReport, Topology, build_tree, is_carried, parse_reports};

fuzz_target!(|data: &[u8]| {
    if let Ok(reports) = parse_reports(data) {
        for report in reports {
            let (GroupReport::Join(group) | GroupReport::Leave(group)) = report;
            assert!(is_carried(group), "a local group was reported");
        }
    }
    check_tree(data);
});

fn id(n: u8) -> NodeId {
    let mut bytes = [0u8; 32];
    // Spread the ids so id order is not number order.
    bytes[0] = n.wrapping_mul(37);
    bytes[1] = n;
    NodeId::from_bytes(bytes)
}

fn check_tree(data: &[u8]) {
    let (Some(&fanout), Some(&source), Some(bitmap)) = (data.first(), data.get(1), data.get(2..10))
    else {
        return;
    };
    let fanout = usize::from(fanout % 6);
    let source = id(source % 64);
    let bits = u64::from_be_bytes(bitmap.try_into().unwrap_or([0; 8]));
    let members: BTreeSet<NodeId> = (0..64u8).filter(|i| bits >> i & 1 == 1).map(id).collect();
    let mut topology = Topology::new();
    for triple in data[10..].chunks_exact(3) {
        topology.add_link(id(triple[0] % 64), id(triple[1] % 64), u64::from(triple[2]));
    }
    let tree = build_tree(&topology, source, &members, fanout);
    let distances = topology.distances(&source);
    assert!(tree.contains(&source));
    let mut excess = 0;
    for node in tree.nodes() {
        excess += tree.children(node).len().saturating_sub(fanout.max(1));
        if let Some(parent) = tree.parent(node) {
            let cost = topology.cost(&parent, node).expect("tree edge is a link");
            assert_eq!(tree.cost(node), tree.cost(&parent).map(|c| c + cost));
        }
    }
    assert_eq!(excess, tree.over_fanout());
    for member in &members {
        let reachable = *member == source || distances.contains_key(member);
        assert_eq!(tree.contains(member), reachable);
        assert_eq!(tree.unreached().contains(member), !reachable);
    }
    assert_eq!(tree.edges().len(), tree.len() - 1);
}
