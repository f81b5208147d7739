//! Group members on the underlay and weft's overlay among them.
//!
//! Members sit at distinct random stub routers (so no two share a router
//! and every unicast delay is positive). Each gets a random [`NodeId`]
//! (tree tie-breaks go by node id, which must not correlate with place).
//!
//! The overlay is the neighbour relation weft builds (see
//! `weft_core::node::discovery`, `select_neighbours`): every member keeps
//! sessions with its `max - random` nearest members by RTT (ties by node
//! id) plus `random` members picked uniformly among the rest; a session
//! either side opened is a link, so the relation is the symmetric union of
//! those picks. Idealisation: every member knows every other member's RTT
//! (weft ranks its DHT contacts, which with proximity neighbour selection
//! hold mostly near nodes but not necessarily all of them), and the overlay
//! holds the group's members only (in a real network non-members are
//! overlay nodes too and may forward). [`OverlayShape::FullMesh`] links
//! every pair instead (for comparison).
//!
//! Link cost given to [`Topology::add_link`]: the underlay RTT in µs
//! (twice the one-way shortest-path delay), as weft's link monitor would
//! measure it on a jitter-free underlay, mapped by
//! [`weft_core::mcast::tree_cost`] as the node does (25 % ladder, then the
//! scenario's exponent; the node uses `TREE_COST_EXPONENT`).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use weft_core::NodeId;
use weft_core::mcast::{Topology, tree_cost};

use super::underlay::{ShortestPaths, Underlay, below};

/// Which overlay links the members have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayShape {
    /// weft's bounded neighbourhood: `max` picks per member, of which
    /// `random` random ones (weft's defaults: 16 and 4).
    Neighbours {
        /// Neighbours picked per member.
        max: usize,
        /// Of which picked at random.
        random: usize,
    },
    /// Every member linked to every other.
    FullMesh,
}

impl OverlayShape {
    /// weft's default neighbourhood (`NeighbourConfig::default()`).
    pub fn weft_default() -> Self {
        let d = weft_core::NeighbourConfig::default();
        Self::Neighbours {
            max: d.max,
            random: d.random,
        }
    }
}

/// The members of one group: where they are and how they are linked.
pub(super) struct Group {
    pub(super) ids: Vec<NodeId>,
    pub(super) index: BTreeMap<NodeId, usize>,
    pub(super) routers: Vec<u32>,
    /// Shortest paths from each member's router.
    pub(super) paths: Vec<ShortestPaths>,
    /// Overlay links (i < j).
    pub(super) edges: BTreeSet<(usize, usize)>,
}

impl Group {
    /// Places `members` members (at most the number of stub routers) and
    /// links them as `shape` says.
    pub(super) fn new(underlay: &Underlay, members: usize, shape: OverlayShape, seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6d63_6173_745f_6772);
        let mut stubs = underlay.stub_routers();
        let mut routers = Vec::with_capacity(members);
        while routers.len() < members && !stubs.is_empty() {
            let at = below(&mut rng, stubs.len());
            routers.push(stubs.swap_remove(at));
        }
        let ids: Vec<NodeId> = routers
            .iter()
            .map(|_| {
                let mut bytes = [0u8; 32];
                rng.fill_bytes(&mut bytes);
                NodeId::from_bytes(bytes)
            })
            .collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let paths = routers
            .iter()
            .map(|&r| underlay.shortest_paths(r))
            .collect();
        let mut group = Self {
            ids,
            index,
            routers,
            paths,
            edges: BTreeSet::new(),
        };
        group.edges = group.pick_links(shape, &mut rng);
        group
    }

    /// Gives the members other node ids (e.g. those of simulated nodes);
    /// the links stay as they are.
    pub(super) fn set_ids(&mut self, ids: Vec<NodeId>) {
        self.index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        self.ids = ids;
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// One-way underlay delay between members `i` and `j`, µs.
    pub(super) fn delay_us(&self, i: usize, j: usize) -> u64 {
        self.paths[i]
            .delay_us(self.routers[j])
            .unwrap_or(u64::MAX / 4)
    }

    fn pick_links(&self, shape: OverlayShape, rng: &mut ChaCha20Rng) -> BTreeSet<(usize, usize)> {
        let n = self.len();
        let mut edges = BTreeSet::new();
        let (max, random) = match shape {
            OverlayShape::FullMesh => {
                for i in 0..n {
                    for j in i + 1..n {
                        edges.insert((i, j));
                    }
                }
                return edges;
            }
            OverlayShape::Neighbours { max, random } => (max, random.min(max)),
        };
        for i in 0..n {
            let mut ranked: Vec<(u64, NodeId, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (self.delay_us(i, j), self.ids[j], j))
                .collect();
            ranked.sort();
            let near = max - random;
            let mut picked: Vec<usize> = ranked.iter().take(near).map(|r| r.2).collect();
            let mut rest: Vec<usize> = ranked.iter().skip(near).map(|r| r.2).collect();
            for _ in 0..random {
                if rest.is_empty() {
                    break;
                }
                let at = below(rng, rest.len());
                picked.push(rest.swap_remove(at));
            }
            for j in picked {
                edges.insert((i.min(j), i.max(j)));
            }
        }
        edges
    }

    /// weft's view of the overlay among the members not in `failed`: a
    /// [`Topology`] whose link costs are `tree_cost(RTT, cost_exponent)`
    /// (the node uses `TREE_COST_EXPONENT`): `RTT^e` with the RTT
    /// in ms, times 1,000 (so that 1 ms still costs 1,000).
    pub(super) fn topology(&self, failed: &BTreeSet<usize>, cost_exponent: f64) -> Topology {
        let mut t = Topology::default();
        for &(i, j) in &self.edges {
            if failed.contains(&i) || failed.contains(&j) {
                continue;
            }
            t.add_link(self.ids[i], self.ids[j], self.cost(i, j, cost_exponent));
        }
        t
    }

    fn cost(&self, i: usize, j: usize, cost_exponent: f64) -> u64 {
        tree_cost(2 * self.delay_us(i, j), cost_exponent)
    }

    /// The overlay's [`Topology`] without the links in `gone` (pairs i < j),
    /// costs as in [`Self::topology`].
    pub(super) fn topology_without(
        &self,
        gone: &BTreeSet<(usize, usize)>,
        cost_exponent: f64,
    ) -> Topology {
        let mut t = Topology::default();
        for &(i, j) in self.edges.difference(gone) {
            t.add_link(self.ids[i], self.ids[j], self.cost(i, j, cost_exponent));
        }
        t
    }

    /// Overlay one-way delays (µs) from member `from` to every member over
    /// the overlay links among members not in `failed` (u64::MAX: cut off).
    pub(super) fn overlay_delays(&self, from: usize, failed: &BTreeSet<usize>) -> Vec<u64> {
        let n = self.len();
        let mut adjacency = vec![Vec::new(); n];
        for &(i, j) in &self.edges {
            if !failed.contains(&i) && !failed.contains(&j) {
                adjacency[i].push(j);
                adjacency[j].push(i);
            }
        }
        let mut dist = vec![u64::MAX; n];
        let mut heap = BinaryHeap::new();
        dist[from] = 0;
        heap.push(std::cmp::Reverse((0u64, from)));
        while let Some(std::cmp::Reverse((d, at))) = heap.pop() {
            if d > dist[at] {
                continue;
            }
            for &next in &adjacency[at] {
                let nd = d + self.delay_us(at, next);
                if nd < dist[next] {
                    dist[next] = nd;
                    heap.push(std::cmp::Reverse((nd, next)));
                }
            }
        }
        dist
    }

    /// Overlay degree of every member.
    pub(super) fn degrees(&self) -> Vec<usize> {
        let mut d = vec![0; self.len()];
        for &(i, j) in &self.edges {
            d[i] += 1;
            d[j] += 1;
        }
        d
    }
}
