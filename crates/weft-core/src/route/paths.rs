//! Path computation over the link-state graph.
//!
//! Shortest paths with at most `max_hops` links (Bellman–Ford by layers:
//! a few nodes' worth of tens, so this is cheap), under a per-link cost
//! that depends on the [`Metric`]. Costs are strictly positive, so a
//! cheapest path never repeats a node. For relayed best paths with one
//! intermediate, the other one-intermediate paths within 10 % of its cost
//! are returned as alternates, over which flows are spread.
//!
//! Routes are recomputed up to fifty times a second while records flood,
//! over every link of every record held, so the graph finds nodes by a
//! hash of their id, keeps its allocations from one computation to the
//! next ([`Graph::clear`]), and alternates are found through an index of
//! the first hops' links rather than by scanning them per destination.

use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::Metric;
use crate::identity::NodeId;

/// Alternates may cost this much more than the best path, in percent.
pub(crate) const ALTERNATE_SLACK_PERCENT: u64 = 10;

/// The measured quality of one directed link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LinkQuality {
    pub(crate) rtt_us: u32,
    pub(crate) loss: f32,
}

/// The cost of a link under `metric`: microseconds for latency (a lost
/// share `p` adds `p` seconds), millionths of `-ln(1-p)` for loss (with a
/// hundredth of the RTT in µs as a tie breaker). Never zero.
/// Whether a path with fewer relays, costing `shorter`, is preferred to a
/// longer one costing `longer`: when it costs at most 5 % and 200 units
/// (0.2 ms of RTT for the latency metric) more. Relaying spends other
/// members' bandwidth and CPU, and on a LAN the RTTs of a direct link and
/// a detour differ by less than their jitter; without this tolerance a
/// path chosen while a direct link was still settling kept its relay.
pub(crate) fn fewer_relays_win(shorter: u64, longer: u64) -> bool {
    shorter <= longer.saturating_add(longer / 20).saturating_add(200)
}

pub(crate) fn link_cost(metric: Metric, quality: LinkQuality) -> u64 {
    let loss = f64::from(quality.loss.clamp(0.0, 0.999));
    let rtt = u64::from(quality.rtt_us);
    let cost = match metric {
        Metric::Latency => rtt + (loss * 1e6) as u64,
        Metric::Loss => (-(1.0 - loss).ln() * 1e6) as u64 + rtt / 100,
    };
    cost.max(1)
}

/// A hash map for keys that are hashes already (node ids and their
/// prefixes). Only for lookups: iterating it would make an output depend
/// on its order, which is why clippy bans `HashMap` elsewhere.
#[allow(clippy::disallowed_types)]
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default, Clone)]
pub(crate) struct Graph {
    /// Nodes in the order they were first named: ties between equal
    /// paths go to the smaller index.
    nodes: Vec<NodeId>,
    /// Never iterated: `nodes` is the order.
    index: IdMap<NodeId, usize>,
    /// Out-links of `nodes[i]`; entries past `nodes.len()` are empty
    /// lists kept for reuse.
    edges: Vec<Vec<(usize, LinkQuality)>>,
    /// Per node `to`: the [`Graph::add_links`] call (its stamp) that last
    /// saw a link to it, and where that link is in its origin's list.
    seen: Vec<(u64, usize)>,
    stamp: u64,
}

impl Graph {
    /// Empties the graph, keeping its allocations.
    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
        self.index.clear();
        for links in &mut self.edges {
            links.clear();
        }
    }

    /// Adds or updates one link: the reference [`Graph::add_links`] is
    /// held to, and the way tests build graphs.
    #[cfg(test)]
    pub(crate) fn add_edge(&mut self, from: NodeId, to: NodeId, quality: LinkQuality) {
        if from == to {
            return;
        }
        let from = self.node(from);
        let to = self.node(to);
        if let Some(existing) = self.edges[from].iter_mut().find(|(n, _)| *n == to) {
            existing.1 = quality;
        } else {
            self.edges[from].push((to, quality));
        }
    }

    /// Adds links out of `from`, exactly as [`Graph::add_edge`] would one
    /// after another, but finding a repeated link in constant time rather
    /// than by a scan of `from`'s links (records carry tens of links).
    pub(crate) fn add_links(
        &mut self,
        from: NodeId,
        links: impl IntoIterator<Item = (NodeId, LinkQuality)>,
    ) {
        self.stamp += 1;
        let stamp = self.stamp;
        let mut origin = None;
        for (to, quality) in links {
            if to == from {
                continue;
            }
            let f = match origin {
                Some(f) => f,
                None => {
                    let f = self.node(from);
                    for (at, &(n, _)) in self.edges[f].iter().enumerate() {
                        self.seen[n] = (stamp, at);
                    }
                    origin = Some(f);
                    f
                }
            };
            let t = self.node(to);
            let (seen_in, at) = self.seen[t];
            if seen_in == stamp {
                self.edges[f][at].1 = quality;
            } else {
                self.seen[t] = (stamp, self.edges[f].len());
                self.edges[f].push((t, quality));
            }
        }
    }

    /// The quality of the link `from → to`, if the graph has it.
    pub(crate) fn edge(&self, from: &NodeId, to: &NodeId) -> Option<LinkQuality> {
        let from = *self.index.get(from)?;
        let to = *self.index.get(to)?;
        self.edges[from]
            .iter()
            .find(|(n, _)| *n == to)
            .map(|(_, q)| *q)
    }

    /// The links out of `from`, in the order they were added.
    pub(crate) fn out_links(
        &self,
        from: &NodeId,
    ) -> impl Iterator<Item = (NodeId, LinkQuality)> + '_ {
        let links = self
            .index
            .get(from)
            .map_or(&[][..], |&f| self.edges[f].as_slice());
        links.iter().map(|&(to, quality)| (self.nodes[to], quality))
    }

    /// The cost of `source → path[0] → … → path[last]` under `metric`, or
    /// `None` if a link of it is missing.
    pub(crate) fn path_cost(
        &self,
        metric: Metric,
        source: &NodeId,
        path: &[NodeId],
    ) -> Option<u64> {
        let mut from = source;
        let mut total = 0u64;
        for to in path {
            total = total.saturating_add(link_cost(metric, self.edge(from, to)?));
            from = to;
        }
        Some(total)
    }

    fn node(&mut self, id: NodeId) -> usize {
        let next = self.nodes.len();
        let i = *self.index.entry(id).or_insert(next);
        if i == next {
            self.nodes.push(id);
            if self.edges.len() < self.nodes.len() {
                self.edges.push(Vec::new());
                self.seen.push((0, 0));
            }
        }
        i
    }
}

/// Hashes a node id by folding its bytes eight at a time: ids are hashes
/// already (derived with BLAKE3), and SipHash over 32 bytes cost more than
/// the rest of building a graph.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

/// The best path to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Computed {
    /// The nodes after the source, ending with the destination.
    pub(crate) path: Vec<NodeId>,
    pub(crate) cost: u64,
    /// Other paths of the same length within the slack (one-intermediate
    /// best paths only).
    pub(crate) alternates: Vec<Vec<NodeId>>,
}

/// Best paths from `source` to every reachable node, with at most
/// `max_hops` links each.
pub(crate) fn compute_paths(
    graph: &Graph,
    source: &NodeId,
    metric: Metric,
    max_hops: usize,
) -> BTreeMap<NodeId, Computed> {
    let mut out = BTreeMap::new();
    let Some(&s) = graph.index.get(source) else {
        return out;
    };
    let n = graph.nodes.len();
    // layers[h][v]: cheapest cost with exactly h links, and the previous
    // node on it (in layer h - 1); one allocation, layer after layer.
    let mut cells: Vec<Option<(u64, usize)>> = vec![None; n * (max_hops + 1)];
    cells[s] = Some((0, s));
    for h in 1..=max_hops {
        let (done, rest) = cells.split_at_mut(h * n);
        let previous = &done[(h - 1) * n..];
        let layer = &mut rest[..n];
        for (u, reached) in previous.iter().enumerate() {
            let Some((cost_u, _)) = *reached else {
                continue;
            };
            for &(v, quality) in &graph.edges[u] {
                if v == s {
                    continue;
                }
                let cost = cost_u.saturating_add(link_cost(metric, quality));
                // Ties go to the smaller node index, so the result does not
                // depend on edge order.
                let better = match layer[v] {
                    None => true,
                    Some((old, old_u)) => cost < old || (cost == old && u < old_u),
                };
                if better {
                    layer[v] = Some((cost, u));
                }
            }
        }
    }
    let layers: Vec<&[Option<(u64, usize)>]> = cells.chunks(n.max(1)).collect();
    let second_links = SecondLinks::new(graph, s);
    for v in 0..n {
        if v == s {
            continue;
        }
        // Fewest links among paths about as cheap as the cheapest.
        let Some(cheapest) = (1..=max_hops)
            .filter_map(|h| layers[h][v].map(|(c, _)| c))
            .min()
        else {
            continue;
        };
        let best = (1..=max_hops)
            .filter_map(|h| layers[h][v].map(|(c, _)| (c, h)))
            .find(|&(c, _)| fewer_relays_win(c, cheapest));
        let Some((cost, hops)) = best else {
            continue;
        };
        let mut path = Vec::with_capacity(hops);
        let mut at = v;
        for h in (1..=hops).rev() {
            path.push(graph.nodes[at]);
            at = layers[h][at].map_or(s, |(_, prev)| prev);
        }
        path.reverse();
        let alternates = if hops == 2 {
            alternates(graph, &second_links, metric, v, path[0], cost)
        } else {
            Vec::new()
        };
        out.insert(
            graph.nodes[v],
            Computed {
                path,
                cost,
                alternates,
            },
        );
    }
    out
}

/// The two-link paths out of the source, grouped by where they end: for
/// each node `d`, every first hop `r` with a link `r → d`, and both links'
/// qualities. A graph has at most one link per ordered pair.
struct SecondLinks {
    /// `starts[d]..starts[d + 1]` is `d`'s range of `entries`.
    starts: Vec<usize>,
    /// (first hop, source → first hop, first hop → d).
    entries: Vec<(usize, LinkQuality, LinkQuality)>,
}

impl SecondLinks {
    fn new(graph: &Graph, s: usize) -> Self {
        let n = graph.nodes.len();
        let mut starts = vec![0; n + 1];
        for &(r, _) in &graph.edges[s] {
            for &(d, _) in &graph.edges[r] {
                starts[d + 1] += 1;
            }
        }
        for d in 0..n {
            starts[d + 1] += starts[d];
        }
        let unset = LinkQuality {
            rtt_us: 0,
            loss: 0.0,
        };
        let mut entries = vec![(0, unset, unset); starts[n]];
        let mut next = starts.clone();
        for &(r, first) in &graph.edges[s] {
            for &(d, second) in &graph.edges[r] {
                entries[next[d]] = (r, first, second);
                next[d] += 1;
            }
        }
        Self { starts, entries }
    }

    fn ending_at(&self, d: usize) -> &[(usize, LinkQuality, LinkQuality)] {
        &self.entries[self.starts[d]..self.starts[d + 1]]
    }
}

fn alternates(
    graph: &Graph,
    second_links: &SecondLinks,
    metric: Metric,
    d: usize,
    chosen: NodeId,
    best: u64,
) -> Vec<Vec<NodeId>> {
    let limit = best.saturating_mul(100 + ALTERNATE_SLACK_PERCENT) / 100;
    let mut found: Vec<(u64, NodeId)> = second_links
        .ending_at(d)
        .iter()
        .filter(|(r, _, _)| *r != d && graph.nodes[*r] != chosen)
        .filter_map(|&(r, first, second)| {
            let cost = link_cost(metric, first).saturating_add(link_cost(metric, second));
            (cost <= limit).then_some((cost, graph.nodes[r]))
        })
        .collect();
    // By relay, not by cost: the order maps flows to paths, and costs
    // that trade places by a few microseconds must not move flows.
    found.sort_by_key(|&(_, relay)| relay);
    found
        .into_iter()
        .map(|(_, r)| vec![r, graph.nodes[d]])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn q(rtt_ms: u32, loss: f32) -> LinkQuality {
        LinkQuality {
            rtt_us: rtt_ms * 1000,
            loss,
        }
    }

    fn both(g: &mut Graph, a: u8, b: u8, quality: LinkQuality) {
        g.add_edge(id(a), id(b), quality);
        g.add_edge(id(b), id(a), quality);
    }

    #[test]
    fn adding_links_at_once_builds_the_graph_edge_by_edge_would() {
        let links = [(2, 10), (3, 20), (1, 5), (2, 30), (4, 40)];
        let mut one_by_one = Graph::default();
        one_by_one.add_edge(id(4), id(1), q(7, 0.0));
        one_by_one.add_edge(id(1), id(3), q(1, 0.0));
        for (to, ms) in links {
            one_by_one.add_edge(id(1), id(to), q(ms, 0.0));
        }
        let mut at_once = Graph::default();
        at_once.add_links(id(4), [(id(1), q(7, 0.0))]);
        at_once.add_links(id(1), [(id(3), q(1, 0.0))]);
        at_once.add_links(id(1), links.map(|(to, ms)| (id(to), q(ms, 0.0))));
        assert_eq!(at_once.nodes, one_by_one.nodes);
        assert_eq!(
            at_once.edges[..at_once.nodes.len()],
            one_by_one.edges[..one_by_one.nodes.len()]
        );
        assert_eq!(at_once.edge(&id(1), &id(2)), Some(q(30, 0.0)));
        assert_eq!(at_once.edges[at_once.index[&id(1)]].len(), 3);
    }

    #[test]
    fn direct_link_wins_when_it_is_cheapest() {
        let mut g = Graph::default();
        both(&mut g, 1, 2, q(10, 0.0));
        both(&mut g, 1, 3, q(10, 0.0));
        both(&mut g, 3, 2, q(10, 0.0));
        let paths = compute_paths(&g, &id(1), Metric::Latency, 3);
        assert_eq!(paths[&id(2)].path, vec![id(2)]);
        assert_eq!(paths[&id(2)].cost, 10_000);
    }

    #[test]
    fn slow_direct_link_loses_to_a_fast_two_hop_path() {
        let mut g = Graph::default();
        both(&mut g, 1, 2, q(200, 0.0));
        both(&mut g, 1, 3, q(10, 0.0));
        both(&mut g, 3, 2, q(10, 0.0));
        let paths = compute_paths(&g, &id(1), Metric::Latency, 3);
        assert_eq!(paths[&id(2)].path, vec![id(3), id(2)]);
    }

    #[test]
    fn lossy_link_is_avoided_under_both_metrics() {
        let mut g = Graph::default();
        both(&mut g, 1, 2, q(2, 0.3));
        both(&mut g, 1, 3, q(2, 0.0));
        both(&mut g, 3, 2, q(2, 0.0));
        for metric in Metric::ALL {
            let paths = compute_paths(&g, &id(1), metric, 3);
            assert_eq!(paths[&id(2)].path, vec![id(3), id(2)], "{metric}");
        }
    }

    #[test]
    fn hop_limit_is_respected() {
        let mut g = Graph::default();
        both(&mut g, 1, 2, q(1, 0.0));
        both(&mut g, 2, 3, q(1, 0.0));
        both(&mut g, 3, 4, q(1, 0.0));
        both(&mut g, 4, 5, q(1, 0.0));
        let paths = compute_paths(&g, &id(1), Metric::Latency, 3);
        assert_eq!(paths[&id(4)].path, vec![id(2), id(3), id(4)]);
        assert!(!paths.contains_key(&id(5)));
    }

    #[test]
    fn equal_relays_are_alternates() {
        let mut g = Graph::default();
        for r in 3..=6 {
            both(&mut g, 1, r, q(5, 0.0));
            both(&mut g, r, 2, q(5, 0.0));
        }
        both(&mut g, 1, 7, q(50, 0.0));
        both(&mut g, 7, 2, q(50, 0.0));
        let paths = compute_paths(&g, &id(1), Metric::Latency, 3);
        let best = &paths[&id(2)];
        assert_eq!(best.path.len(), 2);
        assert_eq!(best.alternates.len(), 3);
        assert!(
            best.alternates
                .iter()
                .all(|p| p[1] == id(2) && p[0] != best.path[0] && p[0] != id(7))
        );
    }

    #[test]
    fn path_cost_needs_every_link() {
        let mut g = Graph::default();
        both(&mut g, 1, 3, q(1, 0.0));
        g.add_edge(id(3), id(2), q(1, 0.0));
        assert_eq!(
            g.path_cost(Metric::Latency, &id(1), &[id(3), id(2)]),
            Some(2_000)
        );
        assert_eq!(g.path_cost(Metric::Latency, &id(2), &[id(3), id(1)]), None);
    }
}
