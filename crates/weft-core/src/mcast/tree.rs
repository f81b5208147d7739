//! Distribution trees: source-rooted, fan-out-bounded shortest-path trees
//! over the measured overlay graph.
//!
//! Every node computes the tree of a (source, group) pair from its own copy
//! of the link-state graph; nodes with the same graph get the same tree, so
//! a forwarder needs no tree state from others. The algorithm is a
//! degree-constrained Dijkstra (greedy):
//!
//! 1. The tree starts as the source alone. Repeatedly attach the node `v`
//!    outside the tree with the smallest `dist(u) + cost(u, v)` over tree
//!    nodes `u` that still have fewer than `fanout` children, `u` becoming
//!    its parent. Ties go to the smaller `v`, then the smaller `u` (node ids
//!    compare as bytes), so all nodes agree.
//! 2. When no such pair is left but a member is still outside the tree and
//!    reachable, the bound is relaxed for one attachment: the cheapest pair
//!    whose `u` is full attaches `v` anyway, and the greedy goes on under
//!    the bound. A member is therefore never left out because its only way
//!    in passes a full node; [`Tree::over_fanout`] counts the excess
//!    children that remain after pruning.
//!    Throughout, a node at depth [`MAX_TREE_DEPTH`] (the most overlay
//!    hops a multicast frame may cross) takes no children: a member below
//!    it would never receive; nor does a node marked leaf-only
//!    ([`Topology::set_leaf_only`]: probably gone). The relaxation prefers
//!    parents that are only full to parents that are too deep or
//!    leaf-only.
//! 3. The growth stops once every member is attached (later nodes could
//!    only hang below them and would be pruned), and the tree is pruned to
//!    the branches that lead to members.
//!
//! With an unbounded fan-out this is exactly Dijkstra's shortest-path tree
//! (with positive costs: the parent of `v` is its smallest-id neighbour on a
//! shortest path). Each directed link is pushed on a binary heap at most
//! once: O((V + E) log E) time and O(V + E) memory.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use crate::identity::NodeId;
use crate::wire::MAX_MULTICAST_HOPS;

/// Deepest a tree node may sit (hops from the source): a frame crosses at
/// most [`MAX_MULTICAST_HOPS`] overlay links, so nothing below would
/// receive it.
pub const MAX_TREE_DEPTH: usize = MAX_MULTICAST_HOPS as usize;

/// RTTs below this are equal as tree costs.
pub const COST_FLOOR_US: u64 = 500;

/// Exponent of the RTT in weft's tree cost (see [`tree_cost`]).
pub const TREE_COST_EXPONENT: f64 = 1.5;

/// The cost of an overlay link with this RTT (µs) in a distribution tree,
/// as every node computes it (they must agree, so that each derives the
/// same tree): the RTT rounded up to the next step of a geometric ladder
/// (0.5 ms, then 25 % apart), so that jitter within a step changes no
/// tree, then raised to `exponent` (RTT in ms, times 1,000).
///
/// An exponent above 1 makes the tree prefer two short links to one long
/// one of the same total delay. On an Internet-like underlay long links
/// are the ones that cross shared transit and access links, so a convex
/// cost halves link stress and bytes at a small cost in stretch (measured
/// in docs/BENCHMARKS.md, "Multicast trees"); weft uses
/// [`TREE_COST_EXPONENT`].
pub fn tree_cost(rtt_us: u64, exponent: f64) -> u64 {
    // An RTT above 1,000 s is not an RTT; capping it keeps the ladder finite.
    let rtt_us = rtt_us.min(1_000_000_000);
    let mut step = COST_FLOOR_US;
    while step < rtt_us {
        step = step + step / 4 + 1;
    }
    if exponent == 1.0 {
        return step;
    }
    let ms = step as f64 / 1e3;
    // Saturating float-to-int conversion: an absurd RTT costs u64::MAX / 2^8
    // at most, so sums along a tree path cannot overflow either.
    let cost = (ms.powf(exponent.clamp(0.5, 8.0)) * 1e3).round();
    (cost as u64).clamp(1, u64::MAX >> 8)
}

/// A directed, weighted graph of overlay nodes (cost: e.g. RTT in µs).
#[derive(Debug, Clone, Default)]
pub struct Topology {
    index: BTreeMap<NodeId, usize>,
    ids: Vec<NodeId>,
    /// Outgoing links per node index: (target index, cost).
    links: Vec<Vec<(usize, u64)>>,
    /// Incoming links per node index: (origin index, cost).
    incoming: Vec<Vec<(usize, u64)>>,
    /// Nodes that may only be leaves (see [`Topology::set_leaf_only`]).
    leaf_only: Vec<bool>,
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node without links (a no-op if it is known).
    pub fn add_node(&mut self, id: NodeId) {
        self.node(id);
    }

    /// Lets `id` be a leaf of trees but not a forwarder, unless no other
    /// way reaches a member: for a node that is probably gone (a neighbour
    /// reported its link down), so that no member waits behind it.
    pub fn set_leaf_only(&mut self, id: NodeId) {
        let i = self.node(id);
        self.leaf_only[i] = true;
    }

    /// Whether `id` was marked with [`Topology::set_leaf_only`].
    pub fn is_leaf_only(&self, id: &NodeId) -> bool {
        self.index.get(id).is_some_and(|&i| self.leaf_only[i])
    }

    /// Adds the link between `a` and `b` in both directions with `cost`,
    /// replacing the cost of either direction if present. Self-links are
    /// ignored.
    pub fn add_link(&mut self, a: NodeId, b: NodeId, cost: u64) {
        self.add_edge(a, b, cost);
        self.add_edge(b, a, cost);
    }

    /// Adds the link from `from` to `to` only (replacing its cost).
    /// Self-links are ignored.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId, cost: u64) {
        if from == to {
            return;
        }
        let from = self.node(from);
        let to = self.node(to);
        let out = &mut self.links[from];
        match out.iter_mut().find(|(target, _)| *target == to) {
            Some(link) => link.1 = cost,
            None => out.push((to, cost)),
        }
        let incoming = &mut self.incoming[to];
        match incoming.iter_mut().find(|(origin, _)| *origin == from) {
            Some(link) => link.1 = cost,
            None => incoming.push((from, cost)),
        }
    }

    /// The nodes, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.index.keys()
    }

    /// Whether `id` is a node of the graph.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.index.contains_key(id)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no node.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The number of directed links.
    pub fn link_count(&self) -> usize {
        self.links.iter().map(Vec::len).sum()
    }

    /// The cost of the link from `from` to `to`, if there is one.
    pub fn cost(&self, from: &NodeId, to: &NodeId) -> Option<u64> {
        let from = *self.index.get(from)?;
        let to = *self.index.get(to)?;
        self.links[from]
            .iter()
            .find(|(target, _)| *target == to)
            .map(|(_, cost)| *cost)
    }

    /// The links out of `id`, with their costs, in the order they were
    /// added.
    pub fn links(&self, id: &NodeId) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.index
            .get(id)
            .map(|&i| self.links[i].as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&(to, cost)| (self.ids[to], cost))
    }

    /// Shortest-path costs from `source` to every node it reaches
    /// (plain Dijkstra; the reference for stretch).
    pub fn distances(&self, source: &NodeId) -> BTreeMap<NodeId, u64> {
        let mut out = BTreeMap::new();
        let Some(&source) = self.index.get(source) else {
            return out;
        };
        let mut dist = vec![u64::MAX; self.ids.len()];
        let mut heap = BinaryHeap::new();
        dist[source] = 0;
        heap.push(Reverse((0u64, source)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if d > dist[v] {
                continue;
            }
            for &(w, cost) in &self.links[v] {
                let next = d.saturating_add(cost);
                if next < dist[w] {
                    dist[w] = next;
                    heap.push(Reverse((next, w)));
                }
            }
        }
        for (i, d) in dist.into_iter().enumerate() {
            if d != u64::MAX {
                out.insert(self.ids[i], d);
            }
        }
        out
    }

    fn node(&mut self, id: NodeId) -> usize {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        let i = self.ids.len();
        self.index.insert(id, i);
        self.ids.push(id);
        self.links.push(Vec::new());
        self.incoming.push(Vec::new());
        self.leaf_only.push(false);
        i
    }
}

/// A distribution tree, pruned to the branches that lead to members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    source: NodeId,
    nodes: BTreeMap<NodeId, TreeNode>,
    unreached: Vec<NodeId>,
    over_fanout: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TreeNode {
    parent: Option<NodeId>,
    /// In id order.
    children: Vec<NodeId>,
    /// Sum of the link costs from the source.
    cost: u64,
}

impl Tree {
    /// The root.
    pub fn source(&self) -> NodeId {
        self.source
    }

    /// The children of `node`, in id order (empty if it has none or is not
    /// in the tree).
    pub fn children(&self, node: &NodeId) -> &[NodeId] {
        self.nodes
            .get(node)
            .map(|n| n.children.as_slice())
            .unwrap_or_default()
    }

    /// The parent of `node` (`None` for the source and for nodes not in the
    /// tree).
    pub fn parent(&self, node: &NodeId) -> Option<NodeId> {
        self.nodes.get(node).and_then(|n| n.parent)
    }

    /// Whether `node` is in the tree (the source always is).
    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.contains_key(node)
    }

    /// The (parent, child) links, depth first from the source, children in
    /// id order.
    pub fn edges(&self) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::with_capacity(self.nodes.len().saturating_sub(1));
        let mut stack = vec![self.source];
        while let Some(node) = stack.pop() {
            let children = self.children(&node);
            out.extend(children.iter().map(|child| (node, *child)));
            stack.extend(children.iter().rev());
        }
        out
    }

    /// The nodes from the source to `node`, both included.
    pub fn path(&self, node: &NodeId) -> Option<Vec<NodeId>> {
        let mut path = vec![*node];
        let mut at = self.nodes.get(node)?;
        while let Some(parent) = at.parent {
            path.push(parent);
            // Invariant: every parent of a tree node is in the tree.
            at = self.nodes.get(&parent)?;
        }
        path.reverse();
        Some(path)
    }

    /// The sum of the link costs on the tree path from the source to
    /// `node`.
    pub fn cost(&self, node: &NodeId) -> Option<u64> {
        self.nodes.get(node).map(|n| n.cost)
    }

    /// Members the tree could not reach (not connected to the source in the
    /// topology), in id order.
    pub fn unreached(&self) -> Vec<NodeId> {
        self.unreached.clone()
    }

    /// Children beyond the fan-out bound, summed over all nodes: nonzero
    /// only where a member could be reached through full nodes alone.
    pub fn over_fanout(&self) -> usize {
        self.over_fanout
    }

    /// The number of nodes, the source included (so never zero).
    #[allow(clippy::len_without_is_empty)] // a tree always holds its source
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The tree's nodes in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.nodes.keys()
    }
}

/// Builds the distribution tree from `source` to `members` with at most
/// `fanout` children per node (a fan-out of 0 counts as 1). See the module
/// doc for the algorithm. Members outside the topology or not connected to
/// the source are listed by [`Tree::unreached`]; the source is in the tree
/// whether or not it is a member or in the topology.
pub fn build_tree(
    topology: &Topology,
    source: NodeId,
    members: &BTreeSet<NodeId>,
    fanout: usize,
) -> Tree {
    let fanout = fanout.max(1);
    let Some(&root) = topology.index.get(&source) else {
        return lone_source(source, members);
    };
    let mut growth = Growth::new(topology, root, members, fanout);
    growth.run();
    growth.into_tree(source, members)
}

/// The state of one greedy growth, on node indices.
///
/// Implementation note: rather than pushing every (tree node, neighbour)
/// pair, each outside node `v` keeps one heap entry, its best candidate
/// `best[v]` = (dist(u) + cost, rank u) so far (lazy Dijkstra). When that
/// entry comes off the heap and its `u` has filled up meanwhile, `v`'s
/// incoming links are scanned for the best parent that still has room. This
/// gives exactly the pairs the plain greedy would pick (the tests compare
/// with it) with a few times fewer heap operations.
struct Growth<'a> {
    topology: &'a Topology,
    fanout: usize,
    /// Rank of each index in id order (ties are broken on ranks).
    rank: Vec<u32>,
    is_member: Vec<bool>,
    members_left: usize,
    parent: Vec<usize>,
    dist: Vec<u64>,
    child_count: Vec<usize>,
    /// Hops from the root.
    depth: Vec<usize>,
    in_tree: Vec<bool>,
    /// Key of the entry `v` has on `open`: (dist(u) + cost, rank u).
    best: Vec<(u64, u32)>,
    open: BinaryHeap<Candidate>,
    /// Candidates whose parent was full when they came up: the ones the
    /// relaxation chooses from first.
    blocked: BinaryHeap<Candidate>,
    /// Candidates whose parent sits at [`MAX_TREE_DEPTH`] or is leaf-only:
    /// the last resort.
    too_deep: BinaryHeap<Candidate>,
    /// Attachment order (parents before children).
    order: Vec<usize>,
}

/// A way to attach `v` below `u`: (dist(u) + cost, rank v, rank u, v, u),
/// smallest first.
type Candidate = Reverse<(u64, u32, u32, usize, usize)>;

const NONE: usize = usize::MAX;
const NO_KEY: (u64, u32) = (u64::MAX, u32::MAX);

impl<'a> Growth<'a> {
    fn new(topology: &'a Topology, root: usize, members: &BTreeSet<NodeId>, fanout: usize) -> Self {
        let n = topology.ids.len();
        let mut rank = vec![0u32; n];
        for (r, &i) in topology.index.values().enumerate() {
            rank[i] = r as u32;
        }
        let mut is_member = vec![false; n];
        let mut members_left = 0;
        for member in members {
            if let Some(&i) = topology.index.get(member) {
                is_member[i] = true;
                // (The root's own attachment counts it off.)
                members_left += 1;
            }
        }
        let mut growth = Self {
            topology,
            fanout,
            rank,
            is_member,
            members_left,
            parent: vec![NONE; n],
            dist: vec![u64::MAX; n],
            child_count: vec![0; n],
            depth: vec![0; n],
            in_tree: vec![false; n],
            best: vec![NO_KEY; n],
            open: BinaryHeap::new(),
            blocked: BinaryHeap::new(),
            too_deep: BinaryHeap::new(),
            order: Vec::with_capacity(n),
        };
        growth.attach(root, NONE, 0);
        growth
    }

    fn run(&mut self) {
        while self.members_left > 0 {
            let (candidate, relaxed) = match self.open.pop() {
                Some(c) => (c, false),
                None => match self.blocked.pop().or_else(|| self.too_deep.pop()) {
                    Some(c) => (c, true),
                    None => break,
                },
            };
            let Reverse((d, _, rank_u, v, u)) = candidate;
            if self.in_tree[v] {
                continue;
            }
            if relaxed || self.has_room(u) {
                self.attach(v, u, d);
                continue;
            }
            if self.depth[u] >= MAX_TREE_DEPTH || self.topology.leaf_only[u] {
                self.too_deep.push(candidate);
            } else {
                self.blocked.push(candidate);
            }
            if self.best[v] == (d, rank_u) {
                self.reoffer(v);
            }
        }
    }

    fn attach(&mut self, v: usize, u: usize, d: u64) {
        self.in_tree[v] = true;
        self.parent[v] = u;
        self.dist[v] = d;
        if u != NONE {
            self.child_count[u] += 1;
            self.depth[v] = self.depth[u] + 1;
        }
        self.order.push(v);
        if self.is_member[v] {
            self.members_left -= 1;
        }
        for &(w, cost) in &self.topology.links[v] {
            if self.in_tree[w] {
                continue;
            }
            let key = (d.saturating_add(cost), self.rank[v]);
            if key < self.best[w] {
                self.best[w] = key;
                self.open.push(Reverse((key.0, self.rank[w], key.1, w, v)));
            }
        }
    }

    /// Whether tree node `u` may take another child under the bounds.
    fn has_room(&self, u: usize) -> bool {
        self.child_count[u] < self.fanout
            && self.depth[u] < MAX_TREE_DEPTH
            && !self.topology.leaf_only[u]
    }

    /// `v`'s best parent filled up: offer its best parent with room.
    fn reoffer(&mut self, v: usize) {
        let mut best: Option<((u64, u32), usize)> = None;
        for &(u, cost) in &self.topology.incoming[v] {
            if !self.in_tree[u] || !self.has_room(u) {
                continue;
            }
            let key = (self.dist[u].saturating_add(cost), self.rank[u]);
            if best.is_none_or(|(b, _)| key < b) {
                best = Some((key, u));
            }
        }
        match best {
            Some((key, u)) => {
                self.best[v] = key;
                self.open.push(Reverse((key.0, self.rank[v], key.1, v, u)));
            }
            None => self.best[v] = NO_KEY,
        }
    }

    /// Prunes to the members' branches and converts to ids.
    fn into_tree(self, source: NodeId, members: &BTreeSet<NodeId>) -> Tree {
        let ids = &self.topology.ids;
        let n = ids.len();
        let mut keep = vec![false; n];
        if let Some(&root) = self.order.first() {
            keep[root] = true;
        }
        for &v in &self.order {
            if !self.is_member[v] {
                continue;
            }
            // Invariant: parents are attached before their children and the
            // root is kept, so this walk ends at a kept node.
            let mut at = v;
            while at != NONE && !keep[at] {
                keep[at] = true;
                at = self.parent[at];
            }
        }
        let mut nodes = BTreeMap::new();
        for &v in self.order.iter().filter(|v| keep[**v]) {
            let parent = self.parent[v];
            nodes.insert(
                ids[v],
                TreeNode {
                    parent: (parent != NONE).then(|| ids[parent]),
                    children: Vec::new(),
                    cost: self.dist[v],
                },
            );
        }
        let edges: Vec<(NodeId, NodeId)> = nodes
            .iter()
            .filter_map(|(id, node)| node.parent.map(|p| (p, *id)))
            .collect();
        // Children come out in id order: `edges` is sorted by child id.
        for (p, child) in edges {
            if let Some(node) = nodes.get_mut(&p) {
                node.children.push(child);
            }
        }
        let over_fanout = nodes
            .values()
            .map(|node| node.children.len().saturating_sub(self.fanout))
            .sum();
        let unreached = members
            .iter()
            .filter(|m| !nodes.contains_key(m))
            .copied()
            .collect();
        Tree {
            source,
            nodes,
            unreached,
            over_fanout,
        }
    }
}

/// The tree of a source outside the topology: itself alone.
fn lone_source(source: NodeId, members: &BTreeSet<NodeId>) -> Tree {
    Tree {
        source,
        nodes: BTreeMap::from([(
            source,
            TreeNode {
                parent: None,
                children: Vec::new(),
                cost: 0,
            },
        )]),
        unreached: members.iter().filter(|m| **m != source).copied().collect(),
        over_fanout: 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(n: u16) -> NodeId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        NodeId::from_bytes(bytes)
    }

    fn set(ids: &[u16]) -> BTreeSet<NodeId> {
        ids.iter().map(|n| id(*n)).collect()
    }

    #[test]
    fn unbounded_tree_follows_shortest_paths_and_is_pruned() {
        // 0 -1- 1 -1- 2 ; 0 -5- 2 ; 0 -1- 3 (3 is no member).
        let mut t = Topology::new();
        t.add_link(id(0), id(1), 1);
        t.add_link(id(1), id(2), 1);
        t.add_link(id(0), id(2), 5);
        t.add_link(id(0), id(3), 1);
        let tree = build_tree(&t, id(0), &set(&[2]), 8);
        assert_eq!(tree.edges(), vec![(id(0), id(1)), (id(1), id(2))]);
        assert_eq!(tree.path(&id(2)), Some(vec![id(0), id(1), id(2)]));
        assert_eq!(tree.cost(&id(2)), Some(2));
        assert!(!tree.contains(&id(3)));
        assert_eq!(tree.len(), 3);
        assert_eq!(tree.parent(&id(2)), Some(id(1)));
        assert_eq!(tree.parent(&id(0)), None);
        assert!(tree.unreached().is_empty());
    }

    #[test]
    fn fanout_bound_pushes_members_a_level_down() {
        // The source reaches 1..=4 at cost 10; they also link to each other at
        // cost 1. With fan-out 2 the source takes 1 and 2 (smaller ids on
        // equal costs), and 3 and 4 hang below 1 at cost 11.
        let mut t = Topology::new();
        for v in 1..=4 {
            t.add_link(id(0), id(v), 10);
        }
        for a in 1..=4 {
            for b in a + 1..=4 {
                t.add_link(id(a), id(b), 1);
            }
        }
        let tree = build_tree(&t, id(0), &set(&[1, 2, 3, 4]), 2);
        assert_eq!(tree.children(&id(0)), &[id(1), id(2)][..]);
        assert_eq!(tree.children(&id(1)), &[id(3), id(4)][..]);
        assert_eq!(tree.cost(&id(4)), Some(11));
        assert_eq!(tree.over_fanout(), 0);
        // Fan-out 1: a chain.
        let tree = build_tree(&t, id(0), &set(&[1, 2, 3, 4]), 1);
        assert_eq!(
            tree.path(&id(4)),
            Some(vec![id(0), id(1), id(2), id(3), id(4)])
        );
        let unbounded = build_tree(&t, id(0), &set(&[1, 2, 3, 4]), usize::MAX);
        assert_eq!(
            unbounded.children(&id(0)),
            &[id(1), id(2), id(3), id(4)][..]
        );
    }

    #[test]
    fn ties_go_to_the_smaller_node_id() {
        // Two equal paths to 3: via 1 and via 2.
        let mut t = Topology::new();
        t.add_link(id(0), id(2), 5);
        t.add_link(id(0), id(1), 5);
        t.add_link(id(2), id(3), 5);
        t.add_link(id(1), id(3), 5);
        let tree = build_tree(&t, id(0), &set(&[3]), 8);
        assert_eq!(tree.path(&id(3)), Some(vec![id(0), id(1), id(3)]));
    }

    #[test]
    fn a_member_behind_full_nodes_only_relaxes_the_bound() {
        // A star: the source alone links to four members; fan-out 2.
        let mut t = Topology::new();
        for v in 1..=4 {
            t.add_link(id(0), id(v), u64::from(v));
        }
        let tree = build_tree(&t, id(0), &set(&[1, 2, 3, 4]), 2);
        assert_eq!(tree.children(&id(0)).len(), 4);
        assert_eq!(tree.over_fanout(), 2);
        assert!(tree.unreached().is_empty());
        // Non-members behind the full source do not count once pruned.
        let tree = build_tree(&t, id(0), &set(&[1, 4]), 2);
        assert_eq!(tree.children(&id(0)), &[id(1), id(4)][..]);
        assert_eq!(tree.over_fanout(), 0);
    }

    #[test]
    fn no_node_is_attached_below_the_hop_limit_when_another_way_exists() {
        // A cheap chain 0 - 1 - ... - 24 and an expensive star from 0 to
        // every chain node: the shortest-path tree would be the chain, 24
        // hops deep, but nothing below MAX_TREE_DEPTH would receive.
        let mut t = Topology::new();
        for n in 0..24u16 {
            t.add_link(id(n), id(n + 1), 1_000);
        }
        for n in 2..=24u16 {
            t.add_link(id(0), id(n), 1_000_000);
        }
        let members = set(&(1..=24).collect::<Vec<_>>());
        let tree = build_tree(&t, id(0), &members, 8);
        assert!(tree.unreached().is_empty());
        for n in 1..=24u16 {
            let hops = tree.path(&id(n)).unwrap().len() - 1;
            assert!(hops <= MAX_TREE_DEPTH, "node {n} at depth {hops}");
        }
        // The chain is followed as deep as it may go.
        assert_eq!(tree.path(&id(16)).unwrap().len() - 1, 16);
        assert_eq!(tree.parent(&id(17)), Some(id(0)));
    }

    #[test]
    fn a_member_only_reachable_too_deep_is_still_attached() {
        let mut t = Topology::new();
        for n in 0..20u16 {
            t.add_link(id(n), id(n + 1), 1_000);
        }
        let tree = build_tree(&t, id(0), &set(&[20]), 8);
        assert!(tree.unreached().is_empty());
        assert_eq!(tree.path(&id(20)).unwrap().len() - 1, 20);
    }

    #[test]
    fn a_leaf_only_node_forwards_only_when_nothing_else_reaches() {
        // 0 - 1 - 2 cheap, 0 - 2 dear; 1 - 3 the only way to 3.
        let mut t = Topology::new();
        t.add_link(id(0), id(1), 1_000);
        t.add_link(id(1), id(2), 1_000);
        t.add_link(id(0), id(2), 10_000);
        let tree = build_tree(&t, id(0), &set(&[1, 2]), 8);
        assert_eq!(tree.parent(&id(2)), Some(id(1)));
        t.set_leaf_only(id(1));
        assert!(t.is_leaf_only(&id(1)) && !t.is_leaf_only(&id(2)));
        let tree = build_tree(&t, id(0), &set(&[1, 2]), 8);
        assert_eq!(
            tree.parent(&id(2)),
            Some(id(0)),
            "around the leaf-only node"
        );
        assert_eq!(tree.parent(&id(1)), Some(id(0)), "still a leaf");
        t.add_link(id(1), id(3), 1_000);
        let tree = build_tree(&t, id(0), &set(&[2, 3]), 8);
        assert_eq!(tree.parent(&id(3)), Some(id(1)), "the only way");
        assert_eq!(tree.parent(&id(2)), Some(id(0)));
    }

    #[test]
    fn tree_cost_rounds_then_raises() {
        assert_eq!(tree_cost(0, 1.0), COST_FLOOR_US);
        assert_eq!(tree_cost(500, 1.0), 500);
        assert_eq!(tree_cost(501, 1.0), 626);
        // 626 µs -> 0.626 ms -> 0.626^2 ms * 1000.
        assert_eq!(tree_cost(501, 2.0), 392);
        assert!(tree_cost(10_000, 1.5) < tree_cost(20_000, 1.5));
        // Convex: two 10 ms links cost less than one 20 ms link.
        let (short, long) = (tree_cost(10_000, 2.0), tree_cost(20_000, 2.0));
        assert!(2 * short < long);
        // Absurd inputs saturate instead of overflowing.
        assert!(tree_cost(u64::MAX, 8.0) <= u64::MAX >> 8);
    }

    #[test]
    fn unreachable_and_unknown_members_are_listed() {
        let mut t = Topology::new();
        t.add_link(id(0), id(1), 1);
        t.add_link(id(5), id(6), 1);
        let tree = build_tree(&t, id(0), &set(&[0, 1, 6, 9]), 8);
        assert_eq!(tree.unreached(), vec![id(6), id(9)]);
        assert_eq!(tree.edges(), vec![(id(0), id(1))]);
        // A source outside the topology is a tree of one.
        let tree = build_tree(&t, id(7), &set(&[1, 7]), 8);
        assert_eq!(tree.len(), 1);
        assert!(tree.contains(&id(7)));
        assert_eq!(tree.source(), id(7));
        assert_eq!(tree.unreached(), vec![id(1)]);
        assert_eq!(tree.children(&id(7)), &[] as &[NodeId]);
        assert_eq!(tree.path(&id(7)), Some(vec![id(7)]));
        assert_eq!(tree.path(&id(1)), None);
    }

    #[test]
    fn directed_links_are_followed_one_way() {
        let mut t = Topology::new();
        t.add_edge(id(1), id(0), 1);
        let tree = build_tree(&t, id(0), &set(&[1]), 8);
        assert_eq!(tree.unreached(), vec![id(1)]);
        assert_eq!(t.cost(&id(1), &id(0)), Some(1));
        assert_eq!(t.cost(&id(0), &id(1)), None);
        t.add_link(id(0), id(1), 3);
        assert_eq!(t.cost(&id(1), &id(0)), Some(3), "replaced");
        assert_eq!(t.link_count(), 2);
        assert_eq!(t.len(), 2);
    }

    /// The plain greedy of the module doc, pushing every (tree node,
    /// neighbour) pair: the reference for the lazy implementation.
    fn plain_greedy(
        t: &Topology,
        source: NodeId,
        members: &BTreeSet<NodeId>,
        fanout: usize,
    ) -> Tree {
        let fanout = fanout.max(1);
        let Some(&root) = t.index.get(&source) else {
            return lone_source(source, members);
        };
        let mut g = Growth::new(t, root, members, fanout);
        // Start over from the root with every pair on the heap.
        g.open.clear();
        for &(v, cost) in &t.links[root] {
            g.open
                .push(Reverse((cost, g.rank[v], g.rank[root], v, root)));
        }
        while g.members_left > 0 {
            let (candidate, relaxed) = match g.open.pop() {
                Some(c) => (c, false),
                None => match g.blocked.pop().or_else(|| g.too_deep.pop()) {
                    Some(c) => (c, true),
                    None => break,
                },
            };
            let Reverse((d, _, _, v, u)) = candidate;
            if g.in_tree[v] {
                continue;
            }
            if !relaxed && (g.depth[u] >= MAX_TREE_DEPTH || t.leaf_only[u]) {
                g.too_deep.push(candidate);
                continue;
            }
            if !relaxed && g.child_count[u] >= fanout {
                g.blocked.push(candidate);
                continue;
            }
            g.in_tree[v] = true;
            g.parent[v] = u;
            g.dist[v] = d;
            g.depth[v] = g.depth[u] + 1;
            g.child_count[u] += 1;
            g.order.push(v);
            if g.is_member[v] {
                g.members_left -= 1;
            }
            for &(w, cost) in &t.links[v] {
                if !g.in_tree[w] {
                    g.open.push(Reverse((d + cost, g.rank[w], g.rank[v], w, v)));
                }
            }
        }
        g.into_tree(source, members)
    }

    /// The reference: Dijkstra's tree with each node's parent its
    /// smallest-id neighbour on a shortest path (costs are positive),
    /// pruned to the members.
    fn reference_tree(t: &Topology, source: NodeId, members: &BTreeSet<NodeId>) -> Tree {
        let dist = t.distances(&source);
        let mut nodes = BTreeMap::new();
        nodes.insert(
            source,
            TreeNode {
                parent: None,
                children: Vec::new(),
                cost: 0,
            },
        );
        for member in members.iter().filter(|m| dist.contains_key(m)) {
            let mut at = *member;
            while !nodes.contains_key(&at) {
                let parent = dist
                    .iter()
                    .filter(|(u, du)| t.cost(u, &at).is_some_and(|c| **du + c == dist[&at]))
                    .map(|(u, _)| *u)
                    .next()
                    .unwrap();
                nodes.insert(
                    at,
                    TreeNode {
                        parent: Some(parent),
                        children: Vec::new(),
                        cost: dist[&at],
                    },
                );
                at = parent;
            }
        }
        let edges: Vec<(NodeId, NodeId)> = nodes
            .iter()
            .filter_map(|(id, n)| n.parent.map(|p| (p, *id)))
            .collect();
        for (p, c) in edges {
            nodes.get_mut(&p).unwrap().children.push(c);
        }
        Tree {
            source,
            unreached: members
                .iter()
                .filter(|m| !nodes.contains_key(m))
                .copied()
                .collect(),
            nodes,
            over_fanout: 0,
        }
    }

    /// Every structural promise of [`build_tree`], for one tree.
    fn check_tree(t: &Topology, tree: &Tree, members: &BTreeSet<NodeId>, fanout: usize) {
        let dist = t.distances(&tree.source());
        let source = tree.source();
        assert!(tree.contains(&source));
        assert_eq!(tree.parent(&source), None);
        assert_eq!(tree.cost(&source), Some(0));
        // Reachable members are in, the others listed as unreached.
        let unreached: Vec<NodeId> = members
            .iter()
            .filter(|m| **m != source && !dist.contains_key(m))
            .copied()
            .collect();
        assert_eq!(tree.unreached(), unreached);
        for member in members.iter().filter(|m| !unreached.contains(m)) {
            assert!(tree.contains(member));
        }
        // Edges are topology links; costs add up; never below shortest.
        let edges = tree.edges();
        assert_eq!(edges.len(), tree.len() - 1, "a tree spans its nodes");
        let mut excess = 0;
        for node in tree.nodes() {
            let children = tree.children(node);
            excess += children.len().saturating_sub(fanout.max(1));
            assert!(children.windows(2).all(|w| w[0] < w[1]));
            // Pruned: every node is the source, a member or leads to one.
            assert!(*node == source || members.contains(node) || !children.is_empty());
            if let Some(parent) = tree.parent(node) {
                let link = t.cost(&parent, node).expect("tree edge is a link");
                assert_eq!(tree.cost(node), Some(tree.cost(&parent).unwrap() + link));
                assert!(tree.children(&parent).contains(node));
            }
            // (The source may be outside the topology.)
            assert!(tree.cost(node).unwrap() >= dist.get(node).copied().unwrap_or(0));
            let path = tree.path(node).unwrap();
            assert_eq!(path.first(), Some(&source));
            assert_eq!(path.last(), Some(node));
            for pair in path.windows(2) {
                assert_eq!(tree.parent(&pair[1]), Some(pair[0]));
            }
        }
        assert_eq!(excess, tree.over_fanout());
        for (p, c) in edges {
            assert_eq!(tree.parent(&c), Some(p));
        }
    }

    fn graph_strategy() -> impl Strategy<Value = (u16, Vec<(u16, u16, u64)>)> {
        (2u16..40).prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec((0..n, 0..n, 1u64..100), 0..(n as usize * 4)),
            )
        })
    }

    fn topology(links: &[(u16, u16, u64)]) -> Topology {
        let mut t = Topology::new();
        for &(a, b, cost) in links {
            t.add_link(id(a), id(b), cost);
        }
        t
    }

    proptest! {
        #[test]
        fn trees_keep_their_promises(
            (n, links) in graph_strategy(),
            member_bits in any::<u64>(),
            source in 0u16..40,
            fanout in 0usize..5,
            leaf_bits in any::<u64>(),
        ) {
            let mut t = topology(&links);
            // About one node in eight leaf-only.
            for i in (0..n).filter(|i| leaf_bits >> (i % 64) & 1 == 1 && i % 4 == 0) {
                t.set_leaf_only(id(i));
            }
            let source = id(source % n);
            let members: BTreeSet<NodeId> =
                (0..n).filter(|i| member_bits >> (i % 64) & 1 == 1).map(id).collect();
            let tree = build_tree(&t, source, &members, fanout);
            check_tree(&t, &tree, &members, fanout);
        }

        #[test]
        fn lazy_growth_picks_what_the_plain_greedy_picks(
            (n, links) in graph_strategy(),
            member_bits in any::<u64>(),
            source in 0u16..40,
            fanout in 0usize..5,
        ) {
            let t = topology(&links);
            let source = id(source % n);
            let members: BTreeSet<NodeId> =
                (0..n).filter(|i| member_bits >> (i % 64) & 1 == 1).map(id).collect();
            prop_assert_eq!(
                build_tree(&t, source, &members, fanout),
                plain_greedy(&t, source, &members, fanout)
            );
        }

        #[test]
        fn unbounded_fanout_gives_the_shortest_path_tree(
            (n, links) in graph_strategy(),
            member_bits in any::<u64>(),
            source in 0u16..40,
        ) {
            let t = topology(&links);
            let source = id(source % n);
            let members: BTreeSet<NodeId> =
                (0..n).filter(|i| member_bits >> (i % 64) & 1 == 1).map(id).collect();
            let tree = build_tree(&t, source, &members, usize::MAX);
            prop_assert_eq!(&tree, &reference_tree(&t, source, &members));
            prop_assert_eq!(tree.over_fanout(), 0);
        }

        #[test]
        fn the_bound_holds_where_degrees_allow_it(
            (n, links) in graph_strategy(),
            source in 0u16..40,
            fanout in 1usize..4,
        ) {
            // Keep a link only while both ends stay within fanout + 1 links
            // and the source within fanout: then any spanning tree fits the
            // bound, and the greedy never needs to relax it.
            let source = source % n;
            let mut degree = BTreeMap::new();
            let mut kept = Vec::new();
            for (a, b, cost) in links {
                let cap = |v: u16| if v == source { fanout } else { fanout + 1 };
                let (da, db) = (degree.get(&a).copied().unwrap_or(0), degree.get(&b).copied().unwrap_or(0));
                if a == b || kept.iter().any(|&(x, y, _)| (x, y) == (a, b) || (x, y) == (b, a)) {
                    continue;
                }
                if da < cap(a) && db < cap(b) {
                    *degree.entry(a).or_insert(0) += 1;
                    *degree.entry(b).or_insert(0) += 1;
                    kept.push((a, b, cost));
                }
            }
            let t = topology(&kept);
            let members: BTreeSet<NodeId> = (0..n).map(id).collect();
            let tree = build_tree(&t, id(source), &members, fanout);
            check_tree(&t, &tree, &members, fanout);
            prop_assert_eq!(tree.over_fanout(), 0);
        }

        #[test]
        fn link_order_does_not_change_the_tree(
            (n, links) in graph_strategy(),
            member_bits in any::<u64>(),
            fanout in 1usize..4,
        ) {
            // Distinct costs per pair so that replacing a cost is no
            // order effect.
            let mut unique = BTreeMap::new();
            for (a, b, cost) in links {
                unique.entry((a.min(b), a.max(b))).or_insert(cost);
            }
            let links: Vec<(u16, u16, u64)> = unique.into_iter().map(|((a, b), c)| (a, b, c)).collect();
            let mut reversed = links.clone();
            reversed.reverse();
            let members: BTreeSet<NodeId> =
                (0..n).filter(|i| member_bits >> (i % 64) & 1 == 1).map(id).collect();
            let a = build_tree(&topology(&links), id(0), &members, fanout);
            let b = build_tree(&topology(&reversed), id(0), &members, fanout);
            prop_assert_eq!(a, b);
        }
    }

    /// A random graph like the simulator's: `n` nodes, each opening links
    /// to `per_node` random others (so about `2 * per_node` links each),
    /// RTTs from 1 to 100 ms in µs; ids are hashes so id order is not
    /// index order.
    fn random_overlay(n: u32, per_node: u32, seed: u64) -> (Topology, Vec<NodeId>) {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let ids: Vec<NodeId> = (0..n)
            .map(|i| NodeId::from_bytes(*blake3::hash(&i.to_be_bytes()).as_bytes()))
            .collect();
        let mut t = Topology::new();
        for a in 0..n {
            for _ in 0..per_node {
                let b = (next() % u64::from(n)) as u32;
                let cost = 1_000 + next() % 99_000;
                t.add_link(ids[a as usize], ids[b as usize], cost);
            }
        }
        (t, ids)
    }

    #[test]
    fn a_thousand_node_overlay_gets_complete_bounded_trees() {
        let (t, ids) = random_overlay(1_000, 8, 7);
        for group in [16usize, 128, 512] {
            let members: BTreeSet<NodeId> = ids
                .iter()
                .skip(1)
                .step_by(999 / group)
                .take(group)
                .copied()
                .collect();
            let tree = build_tree(&t, ids[0], &members, 8);
            check_tree(&t, &tree, &members, 8);
            assert_eq!(tree, plain_greedy(&t, ids[0], &members, 8));
            let narrow = build_tree(&t, ids[0], &members, 2);
            check_tree(&t, &narrow, &members, 2);
            assert_eq!(narrow, plain_greedy(&t, ids[0], &members, 2));
            assert!(tree.unreached().is_empty());
            assert_eq!(tree.over_fanout(), 0);
        }
    }

    /// Build times at the simulator's scale (run with `--ignored
    /// --nocapture`, in release for meaningful numbers). Wall time suffers
    /// from other processes on a shared machine; the thread's CPU time
    /// (from `/proc/thread-self/schedstat`, Linux) much less.
    #[test]
    #[ignore]
    #[allow(clippy::disallowed_methods)] // timing a benchmark-like test
    fn tree_build_time_at_a_thousand_nodes() {
        fn cpu_ns() -> u64 {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        }
        let (t, ids) = random_overlay(1_000, 8, 7);
        eprintln!("{} nodes, {} directed links", t.len(), t.link_count());
        for group in [16usize, 128, 512, 999] {
            let members: BTreeSet<NodeId> = ids
                .iter()
                .skip(1)
                .step_by(999 / group)
                .take(group)
                .copied()
                .collect();
            let rounds = 200;
            let started = std::time::Instant::now();
            let cpu = cpu_ns();
            let mut size = 0;
            for i in 0..rounds {
                size += build_tree(&t, ids[i % 50], &members, 8).len();
            }
            let cpu_each = (cpu_ns() - cpu) / rounds as u64;
            let each = started.elapsed() / rounds as u32;
            eprintln!(
                "group {group:4}: {each:?} wall, {} µs CPU per tree ({} nodes on average)",
                cpu_each / 1_000,
                size / rounds
            );
        }
    }
}
