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

/// A directed, weighted graph of overlay nodes (cost: e.g. RTT in µs).
#[derive(Debug, Clone, Default)]
pub struct Topology {
    index: BTreeMap<NodeId, usize>,
    ids: Vec<NodeId>,
    /// Outgoing links per node index: (target index, cost).
    links: Vec<Vec<(usize, u64)>>,
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
        return Tree {
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
        };
    };
    let n = topology.ids.len();
    // Node ids in index order; ranks order them as ids compare.
    let mut rank = vec![0u32; n];
    for (r, &i) in topology.index.values().enumerate() {
        rank[i] = r as u32;
    }
    let mut is_member = vec![false; n];
    let mut members_left = 0usize;
    for member in members {
        if let Some(&i) = topology.index.get(member) {
            is_member[i] = true;
            if i != root {
                members_left += 1;
            }
        }
    }

    const NONE: usize = usize::MAX;
    let mut parent = vec![NONE; n];
    let mut dist = vec![u64::MAX; n];
    let mut child_count = vec![0usize; n];
    let mut in_tree = vec![false; n];
    let mut open: BinaryHeap<Candidate> = BinaryHeap::new();
    let mut blocked: BinaryHeap<Candidate> = BinaryHeap::new();
    let mut order = Vec::with_capacity(n);

    in_tree[root] = true;
    dist[root] = 0;
    order.push(root);
    push_links(topology, root, 0, &rank, &in_tree, &mut open);
    while members_left > 0 {
        let (candidate, relaxed) = match open.pop() {
            Some(c) => (c, false),
            None => match blocked.pop() {
                Some(c) => (c, true),
                None => break,
            },
        };
        let Reverse((d, _, _, v, u)) = candidate;
        if in_tree[v] {
            continue;
        }
        if !relaxed && child_count[u] >= fanout {
            blocked.push(candidate);
            continue;
        }
        in_tree[v] = true;
        parent[v] = u;
        dist[v] = d;
        child_count[u] += 1;
        order.push(v);
        if is_member[v] {
            members_left -= 1;
        }
        push_links(topology, v, d, &rank, &in_tree, &mut open);
    }

    // Prune: keep the source and every ancestor of an attached member.
    let mut keep = vec![false; n];
    keep[root] = true;
    for &v in &order {
        if !is_member[v] {
            continue;
        }
        let mut at = v;
        while !keep[at] {
            keep[at] = true;
            at = parent[at];
        }
    }
    let mut nodes = BTreeMap::new();
    for &v in &order {
        if !keep[v] {
            continue;
        }
        let parent_id = (parent[v] != NONE).then(|| topology.ids[parent[v]]);
        nodes.insert(
            topology.ids[v],
            TreeNode {
                parent: parent_id,
                children: Vec::new(),
                cost: dist[v],
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
        .map(|node| node.children.len().saturating_sub(fanout))
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

/// A way to attach `v` below `u`: (dist(u) + cost, rank v, rank u, v, u),
/// smallest first.
type Candidate = Reverse<(u64, u32, u32, usize, usize)>;

fn push_links(
    topology: &Topology,
    u: usize,
    dist_u: u64,
    rank: &[u32],
    in_tree: &[bool],
    open: &mut BinaryHeap<Candidate>,
) {
    for &(v, cost) in &topology.links[u] {
        if !in_tree[v] {
            open.push(Reverse((
                dist_u.saturating_add(cost),
                rank[v],
                rank[u],
                v,
                u,
            )));
        }
    }
}

#[cfg(test)]
mod tests {
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
}
