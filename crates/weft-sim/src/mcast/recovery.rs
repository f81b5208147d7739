//! Derived (not simulated) recovery times after members fail at once.
//!
//! Why derived: the figures above come from trees alone; how long a repair
//! takes depends on the link monitor, the link-state flood and the
//! recomputation, which this model replays from weft's rules instead of
//! running nodes (`noderun` runs real nodes, on fewer members, and prints
//! this model beside what it measured). What it follows:
//!
//! - **Detection** (`weft_core::link::monitor`, with the nodes' [`RoutingConfig`]):
//!   every live neighbour `X` of a failed node `F` keeps probing it, every
//!   second while idle and every 40 ms while `X` sends data to `F`; none is
//!   answered. The link is declared down once three probes sent after the
//!   failure are unanswered and the first of them was sent at least the
//!   link timeout `T = max(150 ms, 2·RTT)` ago (no RTT variation here). So
//!   the tree parent of `F`, which sends the stream to it, detects in
//!   `T` + 0–40 ms; an idle neighbour in 2–3 s, unless it becomes `F`'s
//!   tree parent on the way and starts sending to it (then from that moment
//!   at the active rate).
//! - **Topology** (`weft_core::node::multicast`, `advertised_topology`): a
//!   link is in the trees' graph while both ends advertise it, so `F`'s
//!   link to `X` leaves everyone's graph when `X` declares it down and
//!   floods that (`F`'s own record lingers until it expires). `F` stays a
//!   member meanwhile (so do its membership records). And since the first
//!   such report, `F` is suspect: a leaf at most, never a forwarder, until
//!   it speaks again (weft's rule; modelled as `F` leaving the graph at the
//!   first report, which gives the cut-off members the same repair).
//! - **Repair**: withdrawals are taken in time order; after each the tree is
//!   rebuilt with `build_tree` on the graph without the links withdrawn so
//!   far. A node that becomes the tree parent of a failed node starts
//!   sending to it once the withdrawal's flood reaches it. A cut-off member
//!   is recovered at the first withdrawal after which its tree path avoids
//!   every failed node, plus the flood delay (overlay one-way delay over
//!   live links) from the withdrawing node to the farthest forwarder on
//!   that path whose children changed. Recomputation is not added (a
//!   build_tree call costs well under a millisecond; the bench prints it).
//!   To bound the work, withdrawals within 20 ms of each other are applied
//!   together and judged at the last of them, with the flood from the
//!   farthest of their nodes: the times are upper bounds, that much late.
//!
//! Two figures per cut-off member ([`Recovery`]): `node_report_ms`, a
//! failed node out of every tree's interior at the first report of any of
//! its links (weft's rule), and `per_link_ms`, with only the reported links
//! leaving the graph (weft's rule before the suspect rule: a failed node
//! could still be chosen as a forwarder over links not yet reported).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use weft_core::RoutingConfig;
use weft_core::mcast::{Tree, build_tree};

use super::measure::ids;
use super::overlay::Group;

/// Derived recovery time of one live member the old tree cut off (see the
/// module `recovery`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Recovery {
    /// Only links leave the graph, as their live ends detect the failure
    /// (the rule before suspects).
    pub per_link_ms: f64,
    /// A failed node forwards in no tree from the first report of any of
    /// its links (weft's rule: suspects are leaf-only).
    pub node_report_ms: f64,
}

/// Withdrawals this close together are judged together.
const BUCKET_US: u64 = 20_000;
/// Unanswered probes that take a link down (`link::monitor::DOWN_AFTER`).
const DOWN_AFTER: usize = 3;

/// Recovery times of every live member whose old tree path crosses a failed
/// node, in member order.
#[allow(clippy::too_many_arguments)] // one trial's fixed inputs
pub(super) fn recovery(
    group: &Group,
    old: &Tree,
    source: usize,
    failed: &BTreeSet<usize>,
    fanout: usize,
    cost_exponent: f64,
    config: &RoutingConfig,
    rng: &mut ChaCha20Rng,
) -> Vec<Recovery> {
    let cut: Vec<usize> = (0..group.len())
        .filter(|m| *m != source && !failed.contains(m))
        .filter(|&m| {
            old.path(&group.ids[m]).is_some_and(|p| {
                p.iter()
                    .any(|id| group.index.get(id).is_some_and(|i| failed.contains(i)))
            })
        })
        .collect();
    if cut.is_empty() {
        return Vec::new();
    }
    // The links of failed nodes, each with its probe timing, drawn once so
    // that both replays see the same failure.
    let mut links = BTreeMap::new();
    for &(a, b) in &group.edges {
        let (live, dead) = match (failed.contains(&a), failed.contains(&b)) {
            (false, true) => (a, b),
            (true, false) => (b, a),
            _ => continue,
        };
        let rtt = 2 * group.delay_us(live, dead);
        let probe = Probing {
            timeout_us: us(config.min_link_timeout).max(2 * rtt),
            idle_us: us(config.probe_idle),
            active_us: us(config.probe_active),
            idle_phase_us: below(rng, us(config.probe_idle)),
            active_phase_us: below(rng, us(config.probe_active)),
        };
        links.insert((live, dead), probe);
    }
    let replay = Replay {
        group,
        old,
        source,
        failed,
        members: ids(group, &(0..group.len()).collect()),
        fanout,
        cost_exponent,
        links: &links,
        lifetime_us: us(config.lsa_lifetime),
    };
    let per_link = replay.run(&cut, false);
    let node_report = replay.run(&cut, true);
    cut.iter()
        .map(|m| Recovery {
            per_link_ms: per_link[m] as f64 / 1e3,
            node_report_ms: node_report[m] as f64 / 1e3,
        })
        .collect()
}

/// How the live end of a failed node's link probes it.
#[derive(Clone, Copy, Debug)]
struct Probing {
    timeout_us: u64,
    idle_us: u64,
    active_us: u64,
    /// When the first idle probe after the failure goes.
    idle_phase_us: u64,
    /// When the first active probe after the failure goes, for the parent.
    active_phase_us: u64,
}

impl Probing {
    /// When the link is declared down if the live end sends data to the
    /// failed node from `active_from` on (None: never).
    fn down_at(&self, active_from: Option<u64>) -> u64 {
        let mut sent = Vec::with_capacity(DOWN_AFTER);
        // Active before the failure: no idle probes at all.
        let mut idle = if active_from == Some(0) {
            u64::MAX
        } else {
            self.idle_phase_us
        };
        let mut active = active_from.map(|s| s + self.active_phase_us % self.active_us.max(1));
        while sent.len() < DOWN_AFTER {
            match active {
                Some(a) if a <= idle => {
                    sent.push(a);
                    active = Some(a + self.active_us);
                    // Idle probes stop once the link is active.
                    idle = u64::MAX;
                }
                _ => {
                    sent.push(idle);
                    idle += self.idle_us;
                }
            }
        }
        sent[DOWN_AFTER - 1].max(sent[0] + self.timeout_us)
    }
}

struct Replay<'a> {
    group: &'a Group,
    old: &'a Tree,
    source: usize,
    failed: &'a BTreeSet<usize>,
    members: BTreeSet<weft_core::NodeId>,
    fanout: usize,
    cost_exponent: f64,
    links: &'a BTreeMap<(usize, usize), Probing>,
    lifetime_us: u64,
}

impl Replay<'_> {
    /// When each cut-off member is reached again (µs after the failure).
    /// `node_report`: the first withdrawal of a failed node's link drops all
    /// of its links. Members never reached in the replay get its end plus
    /// the record lifetime (when the failed nodes' records expire).
    fn run(&self, cut: &[usize], node_report: bool) -> BTreeMap<usize, u64> {
        let g = self.group;
        // Detection time of every link not yet withdrawn; the tree parents
        // of failed nodes send to them from the start.
        let mut pending_links: BTreeMap<(usize, usize), u64> = self
            .links
            .iter()
            .map(|(&(live, dead), p)| {
                let parent = self.old.parent(&g.ids[dead]) == Some(g.ids[live]);
                ((live, dead), p.down_at(parent.then_some(0)))
            })
            .collect();
        let mut active_since: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        let mut gone: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut floods: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        let mut pending: BTreeSet<usize> = cut.iter().copied().collect();
        let mut out = BTreeMap::new();
        let mut now = 0;
        while !pending.is_empty() {
            let Some(start) = pending_links.values().copied().min() else {
                break;
            };
            // Every withdrawal within the bucket.
            let bucket: Vec<((usize, usize), u64)> = pending_links
                .iter()
                .filter(|(_, at)| **at < start + BUCKET_US)
                .map(|(&k, &at)| (k, at))
                .collect();
            now = bucket.iter().map(|b| b.1).max().unwrap_or(start).max(now);
            for &((live, dead), _) in &bucket {
                pending_links.remove(&(live, dead));
                if node_report {
                    for &(a, b) in &g.edges {
                        if a == dead || b == dead {
                            gone.insert((a, b));
                            pending_links.remove(&(if a == dead { b } else { a }, dead));
                        }
                    }
                } else {
                    gone.insert((live.min(dead), live.max(dead)));
                }
            }
            let withdrawers: Vec<usize> = bucket.iter().map(|b| (b.0).0).collect();
            let topology = g.topology_without(&gone, self.cost_exponent);
            let tree = build_tree(&topology, g.ids[self.source], &self.members, self.fanout);
            let flood_to = |x: usize, floods: &mut BTreeMap<usize, Vec<u64>>| -> u64 {
                let mut worst = 0;
                for &w in &withdrawers {
                    let dist = floods
                        .entry(w)
                        .or_insert_with(|| g.overlay_delays(w, self.failed));
                    if dist[x] != u64::MAX {
                        worst = worst.max(dist[x]);
                    }
                }
                worst
            };
            // New tree parents of failed nodes start sending to them.
            for &dead in self.failed {
                let Some(parent) = tree.parent(&g.ids[dead]) else {
                    continue;
                };
                let Some(&live) = g.index.get(&parent) else {
                    continue;
                };
                let key = (live, dead);
                if self.failed.contains(&live) || active_since.contains_key(&key) {
                    continue;
                }
                let Some(&at) = pending_links.get(&key) else {
                    continue;
                };
                let from = now + flood_to(live, &mut floods);
                active_since.insert(key, from);
                if let Some(p) = self.links.get(&key) {
                    pending_links.insert(key, at.min(p.down_at(Some(from))));
                }
            }
            let reached: Vec<(usize, Vec<usize>)> = pending
                .iter()
                .filter_map(|&m| {
                    let path: Vec<usize> = tree
                        .path(&g.ids[m])?
                        .iter()
                        .filter_map(|id| g.index.get(id).copied())
                        .collect();
                    (!path.iter().any(|i| self.failed.contains(i))).then_some((m, path))
                })
                .collect();
            for (m, path) in reached {
                // Forwarders whose children must change for m to be reached.
                let mut flood = 0;
                for hop in path.windows(2) {
                    if !self.old.children(&g.ids[hop[0]]).contains(&g.ids[hop[1]]) {
                        flood = flood.max(flood_to(hop[0], &mut floods));
                    }
                }
                out.insert(m, now + flood);
                pending.remove(&m);
            }
        }
        for m in pending {
            out.insert(m, now + self.lifetime_us);
        }
        out
    }
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 4)
}

/// A uniform count below `bound` (0 when `bound` is 0).
fn below(rng: &mut ChaCha20Rng, bound: u64) -> u64 {
    rng.next_u64() % bound.max(1)
}
