//! Figures of one distribution tree on the underlay, and of the two
//! yardsticks: naive unicast fan-out and the IP-multicast optimum.
//!
//! - **Stretch** of a member: the delay along the tree (each tree edge costs
//!   its underlay one-way delay; forwarding itself is free here) over the
//!   direct unicast delay from the source. Naive unicast and IP multicast
//!   both have stretch 1 by construction (both follow the underlay's
//!   shortest paths).
//! - **Link stress**: copies of one packet crossing an underlay link, either
//!   direction (Narada's definition). A tree edge adds one to every link of
//!   its underlay path. Max and mean are over links that carry at least one
//!   copy. Naive unicast: the source's path to each member; IP multicast:
//!   the shortest-path tree from the source's router to the members'
//!   routers, one copy per used link.
//! - **Source fan-out**: copies the source host sends (its access link's
//!   load): its tree children; every member for naive unicast; 1 for IP
//!   multicast.
//! - **Bytes**: Σ over links of copies × packet size (the same size for all
//!   three; weft's per-hop tunnel and frame overhead is not added).
//! - **Delivery** and **duplicates**: a packet is forwarded from the source
//!   down `Tree::children`, as a weft forwarder does, dropped beyond
//!   [`MAX_MULTICAST_HOPS`] forwards; every reception is counted, so a
//!   member reached twice shows as a duplicate and one never reached (or
//!   only beyond the hop bound) as undelivered.

use std::collections::BTreeSet;

use weft_core::NodeId;
use weft_core::mcast::{MAX_MULTICAST_HOPS, Tree};

use super::overlay::Group;
use super::underlay::{RouterKind, Underlay};

/// Figures of one way of delivering a packet to the group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchemeFigures {
    /// Mean stretch over the members reached (source excluded).
    pub mean_stretch: f64,
    /// 95th percentile stretch.
    pub p95_stretch: f64,
    /// Smallest stretch (never below 1 for a tree over shortest underlay
    /// paths: the triangle inequality).
    pub min_stretch: f64,
    /// Largest stretch.
    pub max_stretch: f64,
    /// Largest link stress (copies in both directions together).
    pub max_stress: u32,
    /// Largest stress in one direction of a link (full-duplex links carry
    /// each direction separately).
    pub max_stress_directed: u32,
    /// Mean stress over links that carry a copy.
    pub mean_stress: f64,
    /// Underlay links that carry a copy.
    pub used_links: usize,
    /// Copies the source sends.
    pub source_fanout: usize,
    /// Copies over all underlay links (Σ stress).
    pub link_copies: u64,
    /// Largest stress per link class: transit–transit, transit–stub,
    /// stub–stub.
    pub max_stress_by_class: [u32; 3],
}

/// What forwarding one packet down a tree delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeDelivery {
    /// Members (source excluded) that received the packet at least once.
    pub delivered: usize,
    /// Members (source excluded) that should have.
    pub expected: usize,
    /// Receptions beyond the first, over all nodes.
    pub duplicates: usize,
    /// Members in the tree but deeper than the hop bound.
    pub beyond_hop_limit: usize,
    /// Deepest member, in overlay hops.
    pub max_depth: usize,
}

impl TreeDelivery {
    /// delivered / expected (1 when nothing was expected).
    pub fn ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }
}

/// Structural checks of a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeShape {
    /// Most children of any node.
    pub max_children: usize,
    /// Nodes (source excluded) whose parent does not list them as a child,
    /// or listed as a child by more than one node.
    pub parent_mismatches: usize,
    /// Edges in the tree.
    pub edges: usize,
    /// Non-member forwarders (always 0 here: the overlay holds members only).
    pub relays: usize,
    /// Children beyond the fan-out bound (`Tree::over_fanout`: where a
    /// member was reachable through full nodes only).
    pub over_fanout: usize,
}

/// Forwards one packet from the tree's source down `children`, as weft
/// forwarders do, and counts receptions. `alive(i)` says whether member `i`
/// forwards and receives (failed members do neither).
pub(super) fn forward(
    group: &Group,
    tree: &Tree,
    expected: &BTreeSet<usize>,
    alive: impl Fn(usize) -> bool,
) -> TreeDelivery {
    let n = group.len();
    let mut received = vec![0usize; n];
    let mut depth = vec![0usize; n];
    let mut beyond = BTreeSet::new();
    let source = tree.source();
    let mut queue = std::collections::VecDeque::new();
    queue.push_back((source, 0usize));
    // Bounded: every node forwards at most once per reception and a
    // reception beyond the hop bound is dropped; the budget guards against
    // a tree that lists a node under several parents in a cycle.
    let mut budget = n * (usize::from(MAX_MULTICAST_HOPS) + 2) * 64;
    while let Some((at, hops)) = queue.pop_front() {
        if budget == 0 {
            break;
        }
        budget -= 1;
        for child in tree.children(&at) {
            let Some(&c) = group.index.get(child) else {
                continue;
            };
            if !alive(c) {
                continue;
            }
            let h = hops + 1;
            if h > usize::from(MAX_MULTICAST_HOPS) {
                beyond.insert(c);
                continue;
            }
            received[c] += 1;
            if received[c] == 1 {
                depth[c] = h;
                queue.push_back((*child, h));
            }
        }
    }
    let s = group.index.get(&source).copied();
    TreeDelivery {
        delivered: expected
            .iter()
            .filter(|&&i| Some(i) != s && received[i] > 0)
            .count(),
        expected: expected.iter().filter(|&&i| Some(i) != s).count(),
        duplicates: received.iter().map(|&r| r.saturating_sub(1)).sum(),
        beyond_hop_limit: beyond.iter().filter(|&&i| received[i] == 0).count(),
        max_depth: depth.iter().copied().max().unwrap_or(0),
    }
}

/// Structural checks: fan-out, one parent per node.
pub(super) fn shape(group: &Group, tree: &Tree) -> TreeShape {
    let mut listed = vec![0usize; group.len()];
    let mut max_children = 0;
    let mut mismatches = 0;
    let edges = tree.edges();
    for (parent, child) in &edges {
        if let Some(&c) = group.index.get(child) {
            listed[c] += 1;
        }
        if tree.parent(child) != Some(*parent) {
            mismatches += 1;
        }
    }
    for id in &group.ids {
        max_children = max_children.max(tree.children(id).len());
    }
    mismatches += listed.iter().filter(|&&l| l > 1).count();
    TreeShape {
        max_children,
        parent_mismatches: mismatches,
        edges: edges.len(),
        relays: edges
            .iter()
            .filter(|(p, _)| !group.index.contains_key(p))
            .count(),
        over_fanout: tree.over_fanout(),
    }
}

/// Stretch and stress of the tree: members reached along `Tree::path`.
pub(super) fn tree_figures(underlay: &Underlay, group: &Group, tree: &Tree) -> SchemeFigures {
    let Some(&s) = group.index.get(&tree.source()) else {
        return SchemeFigures::default();
    };
    let mut stretches = Vec::new();
    for m in 0..group.len() {
        if m == s {
            continue;
        }
        if let Some(d) = tree_delay_us(group, tree, m) {
            stretches.push(d as f64 / group.delay_us(s, m).max(1) as f64);
        }
    }
    let mut stress = Stress::new(underlay);
    for (parent, child) in tree.edges() {
        let (Some(&p), Some(&c)) = (group.index.get(&parent), group.index.get(&child)) else {
            continue;
        };
        group.paths[p].for_each_hop(underlay, group.routers[c], |l, ab| stress.add(l, ab));
    }
    let fanout = tree.children(&tree.source()).len();
    figures(underlay, &stretches, &stress, fanout)
}

/// Tree delay from the source to member `m` in µs (None: not in the tree).
pub(super) fn tree_delay_us(group: &Group, tree: &Tree, m: usize) -> Option<u64> {
    let path = tree.path(&group.ids[m])?;
    let mut total = 0u64;
    for hop in path.windows(2) {
        let (Some(&a), Some(&b)) = (group.index.get(&hop[0]), group.index.get(&hop[1])) else {
            return None;
        };
        total += group.delay_us(a, b);
    }
    Some(total)
}

/// Naive unicast: the source sends one copy to every other member along the
/// underlay's shortest path.
pub(super) fn unicast_figures(underlay: &Underlay, group: &Group, source: usize) -> SchemeFigures {
    let mut stress = Stress::new(underlay);
    for m in 0..group.len() {
        if m != source {
            group.paths[source].for_each_hop(underlay, group.routers[m], |l, ab| {
                stress.add(l, ab);
            });
        }
    }
    let ones = vec![1.0; group.len().saturating_sub(1)];
    figures(underlay, &ones, &stress, group.len().saturating_sub(1))
}

/// IP multicast: the union of the shortest paths from the source's router,
/// one copy per link.
pub(super) fn ip_multicast_figures(
    underlay: &Underlay,
    group: &Group,
    source: usize,
) -> SchemeFigures {
    let mut stress = Stress::new(underlay);
    for m in 0..group.len() {
        if m != source {
            group.paths[source].for_each_hop(underlay, group.routers[m], |l, ab| {
                stress.set_one(l, ab);
            });
        }
    }
    let ones = vec![1.0; group.len().saturating_sub(1)];
    figures(underlay, &ones, &stress, 1)
}

/// Copies per link and direction.
struct Stress {
    /// Per link: (a to b, b to a).
    copies: Vec<(u32, u32)>,
}

impl Stress {
    fn new(underlay: &Underlay) -> Self {
        Self {
            copies: vec![(0, 0); underlay.links().len()],
        }
    }

    fn add(&mut self, link: u32, a_to_b: bool) {
        let c = &mut self.copies[link as usize];
        if a_to_b { c.0 += 1 } else { c.1 += 1 }
    }

    /// One copy at most (IP multicast: a router forwards a packet once per
    /// outgoing link).
    fn set_one(&mut self, link: u32, a_to_b: bool) {
        let c = &mut self.copies[link as usize];
        if a_to_b { c.0 = 1 } else { c.1 = 1 }
    }
}

fn figures(
    underlay: &Underlay,
    stretches: &[f64],
    stress: &Stress,
    source_fanout: usize,
) -> SchemeFigures {
    let max_stress_directed = stress
        .copies
        .iter()
        .map(|&(x, y)| x.max(y))
        .max()
        .unwrap_or(0);
    let both: Vec<u32> = stress.copies.iter().map(|(x, y)| x + y).collect();
    let stress = &both;
    let used: Vec<u32> = stress.iter().copied().filter(|&s| s > 0).collect();
    let mut by_class = [0u32; 3];
    for (link, &s) in underlay.links().iter().zip(stress) {
        let transit = |r: u32| matches!(underlay.kind(r), Some(RouterKind::Transit { .. }));
        let class = match (transit(link.a), transit(link.b)) {
            (true, true) => 0,
            (true, false) | (false, true) => 1,
            (false, false) => 2,
        };
        by_class[class] = by_class[class].max(s);
    }
    let link_copies: u64 = used.iter().map(|&s| u64::from(s)).sum();
    SchemeFigures {
        mean_stretch: mean(stretches),
        p95_stretch: percentile(stretches, 0.95),
        min_stretch: stretches.iter().copied().fold(f64::INFINITY, f64::min),
        max_stretch: stretches.iter().copied().fold(0.0, f64::max),
        max_stress: used.iter().copied().max().unwrap_or(0),
        max_stress_directed,
        mean_stress: if used.is_empty() {
            0.0
        } else {
            link_copies as f64 / used.len() as f64
        },
        used_links: used.len(),
        source_fanout,
        link_copies,
        max_stress_by_class: by_class,
    }
}

pub(super) fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Nearest-rank percentile (`q` in 0..=1); 0 for no samples.
pub(super) fn percentile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The ids of a set of member indices.
pub(super) fn ids(group: &Group, members: &BTreeSet<usize>) -> BTreeSet<NodeId> {
    members.iter().map(|&i| group.ids[i]).collect()
}
