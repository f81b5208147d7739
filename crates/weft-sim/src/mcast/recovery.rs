//! Derived (not simulated) recovery times after members fail at once.
//!
//! Why derived: the figures above come from trees alone; how long a repair
//! takes depends on the link monitor, the link-state flood and the
//! recomputation, which this model replays from weft's rules instead of
//! running nodes. What it follows:
//!
//! - **Detection** (`weft_core::link::monitor`, [`RoutingConfig::default`]):
//!   a link is declared down once three probes in a row are unanswered and
//!   the oldest was sent at least the link timeout `T = max(150 ms, 2·RTT)`
//!   ago (no RTT variation on this underlay). A link that carries data from
//!   this end is probed every 40 ms: down `T` + U(0, 40 ms) after the
//!   failure (150–190 ms on a LAN, what docs/BENCHMARKS.md's failover bench
//!   measured). An idle link is probed every second: down 2 s + U(0, 1 s)
//!   after (at least `T`). Only a tree parent sends to the failed node, so
//!   only that link is active; the links from its children and other
//!   neighbours are idle (receiving does not make a link active).
//! - **Topology** (`weft_core::node::multicast`, `advertised_topology`): a
//!   link is in the trees' graph while both ends advertise it, so a failed
//!   node's link leaves everyone's graph when its live end declares it down
//!   and floods that (the failed end's record lingers until it expires).
//!   The failed node stays a member (its membership record lingers too).
//! - **Repair**: after each withdrawal (in time order) the tree is rebuilt
//!   with `build_tree` on the graph without the links withdrawn so far. A
//!   cut-off member is recovered at the first withdrawal after which its
//!   tree path avoids every failed node, plus the flood delay (overlay
//!   one-way delay over live links) from the withdrawing node to the
//!   farthest forwarder on that path whose children changed.
//!   Recomputation is not added (a build_tree call costs well under a
//!   millisecond; the bench prints it). To bound the work, withdrawals
//!   within 20 ms of each other are applied together and judged at the
//!   last of them, with the flood from the farthest of their nodes: the
//!   times are upper bounds, at most that much late.
//!
//! Two figures per cut-off member ([`Recovery`]): `per_link_ms` as above,
//! and `parent_report_ms`, the same with a failed node dropped from the
//! graph entirely at its tree parent's report (its fast, active-link
//! detection), the lower bound a node-level "down" report would give.

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
    /// Links leave the graph as their live ends detect the failure (weft's
    /// rule: a link counts while both ends advertise it).
    pub per_link_ms: f64,
    /// A failed node leaves the graph at once when its tree parent reports
    /// it (a lower bound; slower when the parent failed too).
    pub parent_report_ms: f64,
}

/// One withdrawal: `live` declares its link to `failed` down at `at_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Withdrawal {
    at_us: u64,
    live: usize,
    failed: usize,
}

/// Recovery times of every live member whose old tree path crosses a failed
/// node, in member order.
#[allow(clippy::too_many_arguments)] // one trial's fixed inputs
pub(super) fn recovery(
    group: &Group,
    old: &Tree,
    source: usize,
    failed: &BTreeSet<usize>,
    fanout: usize,
    cost_exponent: u32,
    rng: &mut ChaCha20Rng,
) -> Vec<Recovery> {
    let config = RoutingConfig::default();
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
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

    // When each live end declares its link to a failed node down.
    let mut withdrawals = Vec::new();
    for &(a, b) in &group.edges {
        let (live, dead) = match (failed.contains(&a), failed.contains(&b)) {
            (false, true) => (a, b),
            (true, false) => (b, a),
            _ => continue,
        };
        let rtt = Duration::from_micros(2 * group.delay_us(live, dead));
        let timeout = config.min_link_timeout.max(rtt * 2);
        let sends_to_it = old.parent(&group.ids[dead]) == Some(group.ids[live]);
        let at = if sends_to_it {
            us(timeout) + below_us(rng, us(config.probe_active))
        } else {
            (us(config.probe_idle) * 2 + below_us(rng, us(config.probe_idle))).max(us(timeout))
        };
        withdrawals.push(Withdrawal {
            at_us: at,
            live,
            failed: dead,
        });
    }
    withdrawals.sort();

    let members = ids(group, &(0..group.len()).collect());
    let mut floods: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let per_link = replay(
        group,
        old,
        source,
        failed,
        &cut,
        &withdrawals,
        |gone, w| {
            gone.insert(w.failed_link());
        },
        &members,
        fanout,
        cost_exponent,
        &mut floods,
    );
    // Parent reports: the first withdrawal by the failed node's tree parent
    // drops all of its links.
    let parent_report = replay(
        group,
        old,
        source,
        failed,
        &cut,
        &withdrawals,
        |gone, w| {
            if old.parent(&group.ids[w.failed]) == Some(group.ids[w.live]) {
                for &(a, b) in &group.edges {
                    if a == w.failed || b == w.failed {
                        gone.insert((a, b));
                    }
                }
            } else {
                gone.insert(w.failed_link());
            }
        },
        &members,
        fanout,
        cost_exponent,
        &mut floods,
    );
    cut.iter()
        .map(|m| Recovery {
            per_link_ms: per_link[m] as f64 / 1e3,
            parent_report_ms: parent_report[m] as f64 / 1e3,
        })
        .collect()
}

impl Withdrawal {
    fn failed_link(&self) -> (usize, usize) {
        (self.live.min(self.failed), self.live.max(self.failed))
    }
}

/// Replays the withdrawals in order, `apply` removing links from the graph,
/// and returns when each cut-off member is reached again (µs; members never
/// reached within the replay get the last withdrawal's time plus the
/// record lifetime, i.e. when the failed nodes' own records expire).
#[allow(clippy::too_many_arguments)] // the replay's fixed inputs
fn replay(
    group: &Group,
    old: &Tree,
    source: usize,
    failed: &BTreeSet<usize>,
    cut: &[usize],
    withdrawals: &[Withdrawal],
    apply: impl Fn(&mut BTreeSet<(usize, usize)>, &Withdrawal),
    members: &BTreeSet<weft_core::NodeId>,
    fanout: usize,
    cost_exponent: u32,
    floods: &mut BTreeMap<usize, Vec<u64>>,
) -> BTreeMap<usize, u64> {
    let mut gone = BTreeSet::new();
    let mut pending: BTreeSet<usize> = cut.iter().copied().collect();
    let mut out = BTreeMap::new();
    let mut next = 0;
    while next < withdrawals.len() && !pending.is_empty() {
        // Withdrawals within one bucket are applied together and the tree
        // judged once, at the bucket's last one (at most BUCKET_US late).
        let start = withdrawals[next].at_us;
        let mut end = next;
        while end < withdrawals.len() && withdrawals[end].at_us < start + BUCKET_US {
            apply(&mut gone, &withdrawals[end]);
            end += 1;
        }
        let bucket = &withdrawals[next..end];
        next = end;
        let at_us = bucket.last().map_or(start, |w| w.at_us);
        let topology = group.topology_without(&gone, cost_exponent);
        let tree = build_tree(&topology, group.ids[source], members, fanout);
        let reached: Vec<(usize, Vec<usize>)> = pending
            .iter()
            .filter_map(|&m| {
                let path: Vec<usize> = tree
                    .path(&group.ids[m])?
                    .iter()
                    .filter_map(|id| group.index.get(id).copied())
                    .collect();
                (!path.iter().any(|i| failed.contains(i))).then_some((m, path))
            })
            .collect();
        for (m, path) in reached {
            // Forwarders whose children must change for m to be reached,
            // and the flood from the farthest withdrawing node of the
            // bucket (an upper bound: the one that mattered may be nearer).
            let changed: Vec<usize> = path
                .windows(2)
                .filter(|hop| {
                    !old.children(&group.ids[hop[0]])
                        .contains(&group.ids[hop[1]])
                })
                .map(|hop| hop[0])
                .collect();
            let mut flood = 0;
            for w in bucket {
                let dist = floods
                    .entry(w.live)
                    .or_insert_with(|| group.overlay_delays(w.live, failed));
                for &x in &changed {
                    if dist[x] != u64::MAX {
                        flood = flood.max(dist[x]);
                    }
                }
            }
            out.insert(m, at_us + flood);
            pending.remove(&m);
        }
    }
    let last = withdrawals.last().map_or(0, |w| w.at_us);
    let lifetime =
        u64::try_from(RoutingConfig::default().lsa_lifetime.as_micros()).unwrap_or(u64::MAX / 2);
    for m in pending {
        out.insert(m, last + lifetime);
    }
    out
}

/// Withdrawals this close together are judged together.
const BUCKET_US: u64 = 20_000;

/// A uniform count of microseconds below `bound` (0 when `bound` is 0).
fn below_us(rng: &mut ChaCha20Rng, bound: u64) -> u64 {
    rng.next_u64() % bound.max(1)
}
