//! The route table: the path in use per destination and metric, with
//! hysteresis, and the operator's pins.
//!
//! A working path is replaced only by one at least 20 % cheaper (and, for
//! latency, at least 1 ms faster) or by one with fewer hops that costs no
//! more, and not within `hold_down` of its last change; a path with a
//! missing link is replaced at once. A flow picks
//! one of the route's candidate paths (the path and its alternates) by its
//! hash, so flows spread over equal relays and each flow keeps its path.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::Metric;
use super::paths::{Computed, Graph};
use crate::identity::NodeId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// Nodes after this one, ending with the destination.
    pub(crate) path: Vec<NodeId>,
    pub(crate) alternates: Vec<Vec<NodeId>>,
    pub(crate) cost: u64,
    pub(crate) since: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteChange {
    pub(crate) destination: NodeId,
    pub(crate) metric: Metric,
    /// The old path (empty: none).
    pub(crate) from: Vec<NodeId>,
    /// The new path (empty: none).
    pub(crate) to: Vec<NodeId>,
}

#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    /// The routes of each metric, in [`Metric::ALL`] order.
    routes: [BTreeMap<NodeId, Route>; 2],
    pins: BTreeMap<NodeId, (Vec<NodeId>, Instant)>,
    /// The earliest time a route kept only by its hold-down may be
    /// replaced by the better path found for it, since
    /// [`RouteTable::clear_held`].
    held_until: Option<Instant>,
}

impl RouteTable {
    /// Brings the routes of `metric` in line with freshly computed best
    /// paths, with hysteresis; returns what changed, by destination.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        metric: Metric,
        computed: &BTreeMap<NodeId, Computed>,
        graph: &Graph,
        source: &NodeId,
        hold_down: Duration,
    ) -> Vec<RouteChange> {
        let routes = &mut self.routes[slot(metric)];
        let mut changes = Vec::new();
        // Both maps are sorted by destination: one walk pairs them.
        let mut added: Vec<(NodeId, &Computed)> = Vec::new();
        let mut gone: Vec<NodeId> = Vec::new();
        let mut best_paths = computed.iter().peekable();
        for (destination, current) in routes.iter_mut() {
            while let Some((new, best)) = best_paths.next_if(|(d, _)| *d < destination) {
                added.push((*new, best));
            }
            let Some((_, best)) = best_paths.next_if(|(d, _)| *d == destination) else {
                gone.push(*destination);
                continue;
            };
            let context = Context {
                now,
                metric,
                graph,
                source,
                hold_down,
            };
            let (replacement, held) = context.follow(current, best);
            if let Some(until) = held {
                self.held_until = Some(self.held_until.map_or(until, |t| t.min(until)));
            }
            if let Some(to) = replacement {
                changes.push(RouteChange {
                    destination: *destination,
                    metric,
                    from: std::mem::replace(current, to).path,
                    to: current.path.clone(),
                });
            }
        }
        added.extend(best_paths.map(|(d, best)| (*d, best)));
        for destination in gone {
            if let Some(old) = routes.remove(&destination) {
                changes.push(RouteChange {
                    destination,
                    metric,
                    from: old.path,
                    to: Vec::new(),
                });
            }
        }
        for (destination, best) in added {
            changes.push(RouteChange {
                destination,
                metric,
                from: Vec::new(),
                to: best.path.clone(),
            });
            routes.insert(destination, route(best, now));
        }
        // One change at most per destination, so this is the order of a
        // walk over all destinations.
        changes.sort_by_key(|change| change.destination);
        changes
    }

    /// Forgets the routes held by their hold-down (before updating every
    /// metric's routes again).
    pub(crate) fn clear_held(&mut self) {
        self.held_until = None;
    }

    /// When a route kept by its hold-down could first change: the routes
    /// must be computed again then even if nothing else changed.
    pub(crate) fn held_until(&self) -> Option<Instant> {
        self.held_until
    }

    /// The route of `destination` under `metric`.
    pub(crate) fn get(&self, destination: &NodeId, metric: Metric) -> Option<&Route> {
        self.routes[slot(metric)].get(destination)
    }

    /// The path a flow with hash `flow` takes.
    pub(crate) fn select(
        &self,
        destination: &NodeId,
        metric: Metric,
        flow: u64,
    ) -> Option<&[NodeId]> {
        let route = self.get(destination, metric)?;
        if route.alternates.is_empty() {
            return Some(&route.path);
        }
        let choice = (flow % (route.alternates.len() as u64 + 1)) as usize;
        Some(if choice == 0 {
            &route.path
        } else {
            &route.alternates[choice - 1]
        })
    }

    pub(crate) fn pin(&mut self, now: Instant, destination: NodeId, path: Vec<NodeId>) {
        self.pins.insert(destination, (path, now));
    }

    pub(crate) fn unpin(&mut self, destination: &NodeId) -> bool {
        self.pins.remove(destination).is_some()
    }

    /// The pinned path to `destination` and when it was pinned.
    pub(crate) fn pinned(&self, destination: &NodeId) -> Option<(&[NodeId], Instant)> {
        self.pins
            .get(destination)
            .map(|(p, at)| (p.as_slice(), *at))
    }
}

/// What a route is compared with its new best path under.
struct Context<'a> {
    now: Instant,
    metric: Metric,
    graph: &'a Graph,
    source: &'a NodeId,
    hold_down: Duration,
}

impl Context<'_> {
    /// Updates a route that has a new best path: its cost and alternates
    /// if it is kept, or the route to replace it with; and, if it is kept
    /// only by its hold-down, when that ends.
    fn follow(&self, current: &mut Route, best: &Computed) -> (Option<Route>, Option<Instant>) {
        let Self {
            now,
            metric,
            graph,
            source,
            hold_down,
        } = *self;
        if current.path == best.path {
            current.cost = best.cost;
            if current.alternates != best.alternates {
                current.alternates.clone_from(&best.alternates);
            }
            return (None, None);
        }
        // A path with a missing link is replaced at once.
        let Some(cost) = graph.path_cost(metric, source, &current.path) else {
            return (Some(route(best, now)), None);
        };
        let much_better = best.cost.saturating_mul(5) < cost.saturating_mul(4)
            && (metric != Metric::Latency || cost - best.cost >= 1_000);
        // Fewer relays at no higher cost is better too: relaying spends
        // other members' bandwidth, and on a LAN a healed direct link may
        // be only a fraction of a millisecond faster than the detour.
        let shorter =
            best.path.len() < current.path.len() && super::paths::fewer_relays_win(best.cost, cost);
        let held = if much_better || shorter {
            let until = current.since + hold_down;
            if now >= until {
                return (Some(route(best, now)), None);
            }
            Some(until)
        } else {
            None
        };
        current.cost = cost;
        // The kept path's alternates are the other one-relay paths now
        // within the slack of it: the best path and its alternates
        // (computed on this graph), not whatever was equal when it was
        // chosen.
        let limit = cost.saturating_mul(100 + super::paths::ALTERNATE_SLACK_PERCENT) / 100;
        current.alternates = if current.path.len() == 2 {
            std::iter::once(&best.path)
                .chain(best.alternates.iter())
                .filter(|p| p.len() == 2 && **p != current.path)
                .filter(|p| {
                    graph
                        .path_cost(metric, source, p)
                        .is_some_and(|c| c <= limit)
                })
                .cloned()
                .collect::<BTreeSet<_>>()
                // Sorted: the order maps flows to paths.
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        (None, held)
    }
}

/// A metric's place in [`Metric::ALL`].
fn slot(metric: Metric) -> usize {
    match metric {
        Metric::Latency => 0,
        Metric::Loss => 1,
    }
}

fn route(best: &Computed, now: Instant) -> Route {
    Route {
        path: best.path.clone(),
        alternates: best.alternates.clone(),
        cost: best.cost,
        since: now,
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;
    use crate::route::paths::{LinkQuality, compute_paths};

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn triangle(direct_ms: u32) -> Graph {
        let mut g = Graph::default();
        let q = |ms: u32| LinkQuality {
            rtt_us: ms * 1000,
            loss: 0.0,
        };
        for (a, b, ms) in [(1, 2, direct_ms), (1, 3, 10), (3, 2, 10)] {
            g.add_edge(id(a), id(b), q(ms));
            g.add_edge(id(b), id(a), q(ms));
        }
        g
    }

    fn step(table: &mut RouteTable, now: Instant, g: &Graph) -> Vec<RouteChange> {
        let computed = compute_paths(g, &id(1), Metric::Latency, 3);
        table.update(
            now,
            Metric::Latency,
            &computed,
            g,
            &id(1),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn small_improvements_do_not_move_a_working_path() {
        let start = Instant::now();
        let mut table = RouteTable::default();
        step(&mut table, start, &triangle(19));
        assert_eq!(
            table.get(&id(2), Metric::Latency).unwrap().path,
            vec![id(2)]
        );
        // The relay (20 ms) is now 9 % better than direct: not enough.
        let changes = step(&mut table, start + Duration::from_secs(5), &triangle(22));
        assert!(changes.is_empty());
        // 50 % better, but within the hold-down of the last change.
        let start2 = start + Duration::from_secs(10);
        let mut table2 = RouteTable::default();
        step(&mut table2, start2, &triangle(30));
        assert_eq!(table2.held_until(), None);
        assert!(
            step(
                &mut table2,
                start2 + Duration::from_millis(500),
                &triangle(10)
            )
            .is_empty()
        );
        // The table says when the held route may change: the node computes
        // again then, although nothing else changed.
        assert_eq!(table2.held_until(), Some(start2 + Duration::from_secs(1)));
        table2.clear_held();
        let changes = step(&mut table2, start2 + Duration::from_secs(1), &triangle(10));
        assert_eq!(changes[0].to, vec![id(2)]);
        assert_eq!(table2.held_until(), None);
    }

    #[test]
    fn a_healed_direct_link_wins_back_even_by_a_fraction_of_a_millisecond() {
        let start = Instant::now();
        let mut table = RouteTable::default();
        let sub_ms = |direct_us: u32| {
            let mut g = Graph::default();
            let q = |us: u32| LinkQuality {
                rtt_us: us,
                loss: 0.0,
            };
            for (a, b, us) in [(1, 2, direct_us), (1, 3, 300), (3, 2, 300)] {
                g.add_edge(id(a), id(b), q(us));
                g.add_edge(id(b), id(a), q(us));
            }
            g
        };
        step(&mut table, start, &sub_ms(5_000));
        assert_eq!(table.get(&id(2), Metric::Latency).unwrap().path.len(), 2);
        let changes = step(&mut table, start + Duration::from_secs(2), &sub_ms(400));
        assert_eq!(changes[0].to, vec![id(2)]);
    }

    #[test]
    fn broken_path_is_replaced_at_once() {
        let start = Instant::now();
        let mut table = RouteTable::default();
        step(&mut table, start, &triangle(5));
        assert_eq!(
            table.get(&id(2), Metric::Latency).unwrap().path,
            vec![id(2)]
        );
        let mut cut = triangle(5);
        cut = {
            let mut g = Graph::default();
            for (a, b) in [(1, 3), (3, 1), (3, 2), (2, 3)] {
                g.add_edge(id(a), id(b), cut.edge(&id(a), &id(b)).unwrap());
            }
            g
        };
        let changes = step(&mut table, start + Duration::from_millis(10), &cut);
        assert_eq!(
            changes,
            vec![RouteChange {
                destination: id(2),
                metric: Metric::Latency,
                from: vec![id(2)],
                to: vec![id(3), id(2)],
            }]
        );
    }

    #[test]
    fn flows_spread_over_alternates_and_stick() {
        let mut g = Graph::default();
        let q = LinkQuality {
            rtt_us: 5_000,
            loss: 0.0,
        };
        for r in 3..=5 {
            g.add_edge(id(1), id(r), q);
            g.add_edge(id(r), id(2), q);
        }
        let mut table = RouteTable::default();
        let computed = compute_paths(&g, &id(1), Metric::Latency, 3);
        table.update(
            Instant::now(),
            Metric::Latency,
            &computed,
            &g,
            &id(1),
            Duration::from_secs(1),
        );
        let relays: BTreeSet<NodeId> = (0..30u64)
            .map(|flow| table.select(&id(2), Metric::Latency, flow).unwrap()[0])
            .collect();
        assert_eq!(relays.len(), 3);
        assert_eq!(
            table.select(&id(2), Metric::Latency, 7),
            table.select(&id(2), Metric::Latency, 7)
        );
    }
}
