//! Multicast trees at scale, measured: weft's own distribution trees
//! ([`weft_core::mcast::build_tree`]) on a 1,000-router transit-stub
//! underlay, against naive unicast fan-out and the IP-multicast optimum
//! (issue 5, item 4).
//!
//! Why a model and not [`crate::Sim`]: stretch, stress and bytes depend only
//! on which tree weft computes over which overlay, and on the underlay paths
//! its edges take; a model measures them for 512-member groups on 1,000
//! routers in milliseconds, with weft's tree code and nothing re-implemented
//! but the neighbour choice (see [`OverlayShape`]).
//!
//! One trial ([`McastScenario`]): a transit-stub underlay
//! ([`Underlay::transit_stub`]) from the seed; `members` members at distinct
//! random stub routers; weft's overlay among them; then for each of
//! `sources` random source members, `build_tree(topology, source, members,
//! fanout)` and its figures (module `measure`): stretch, link stress,
//! source fan-out, bytes, delivery, duplicates, depth; naive unicast and IP
//! multicast from the same source for comparison. Then a failure: a
//! fraction `fail` of the other members fails at once; reported are the
//! delivery ratio of the old tree right after (live members cut off by
//! failed forwarders are lost) and of the tree rebuilt over the surviving
//! overlay, and a **derived** recovery time per cut-off member (not a
//! simulation; see [`Recovery`]).
//!
//! Determinism: the same scenario gives the same [`McastReport`], bit for
//! bit ([`McastReport::digest`]).

mod bound;
mod measure;
mod noderun;
mod overlay;
mod recovery;
mod underlay;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use weft_core::NodeId;
use weft_core::mcast::{DEFAULT_FANOUT, Topology, build_tree};

pub use bound::StressTwoBound;
pub use measure::{SchemeFigures, TreeDelivery, TreeShape};
pub use noderun::{MemberOutage, NodeRecoveryRun, NodeRecoveryScenario, run_node_recovery};
pub use overlay::OverlayShape;
pub use recovery::Recovery;
pub use underlay::{Link, RouterKind, ShortestPaths, TransitStubParams, Underlay, UnderlayError};

use measure::{forward, ids, mean, percentile};
use overlay::Group;
use underlay::below;

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct McastScenario {
    /// Underlay routers (transit-stub, [`TransitStubParams::new`]).
    pub routers: usize,
    /// Group members.
    pub members: usize,
    /// Seed of the first underlay; underlay `i` uses `seed + i`.
    pub seed: u64,
    /// Underlays (and member placements) to average over.
    pub seeds: usize,
    /// Random sources per underlay.
    pub sources: usize,
    /// Fan-out bound given to `build_tree`.
    pub fanout: usize,
    /// The overlay among the members.
    pub overlay: OverlayShape,
    /// Fraction of the members (source excluded) that fail at once.
    pub fail: f64,
    /// Size of one packet, for the byte counts.
    pub packet_bytes: u64,
    /// Tree link cost: RTT (1, weft's) or RTT to this power (an experiment:
    /// a convex cost makes trees prefer several short overlay links to one
    /// long one, so fewer copies cross the long-haul links).
    pub cost_exponent: f64,
    /// Leave out overlay links whose RTT exceeds this (after the neighbour
    /// choice): what weft's links look like while a direct link with an RTT
    /// above the 150 ms link-timeout floor cannot come up at one end.
    pub max_link_rtt: Option<std::time::Duration>,
}

impl McastScenario {
    /// weft's defaults: fan-out 8, neighbours 16 of which 4 random, 5 %
    /// failures, 1,000-byte packets, 10 underlays × 4 sources.
    pub fn new(routers: usize, members: usize, seed: u64) -> Self {
        Self {
            routers,
            members,
            seed,
            seeds: 10,
            sources: 4,
            fanout: DEFAULT_FANOUT,
            overlay: OverlayShape::weft_default(),
            fail: 0.05,
            packet_bytes: 1000,
            cost_exponent: weft_core::mcast::TREE_COST_EXPONENT,
            max_link_rtt: None,
        }
    }
}

/// Figures of one (underlay, source) trial.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Underlay seed.
    pub seed: u64,
    /// The source member's index.
    pub source: usize,
    /// weft's tree.
    pub weft: SchemeFigures,
    /// Naive unicast from the source.
    pub unicast: SchemeFigures,
    /// IP multicast (shortest-path tree on the underlay).
    pub ip_multicast: SchemeFigures,
    /// The least mean stretch any tree with max link stress ≤ 2 could have.
    pub stress_two: StressTwoBound,
    /// Forwarding one packet down weft's tree, nobody failed.
    pub delivery: TreeDelivery,
    /// The tree's structure.
    pub shape: TreeShape,
    /// The failure part.
    pub failure: Failure,
}

/// Delivery when some members fail at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failure {
    /// Members that failed.
    pub failed: usize,
    /// The old tree, right after the failure (live members only).
    pub old_tree: TreeDelivery,
    /// The tree rebuilt over the surviving overlay.
    pub rebuilt: TreeDelivery,
    /// Mean stretch of the rebuilt tree.
    pub rebuilt_mean_stretch: f64,
    /// Derived recovery time of each live member the old tree cut off.
    pub recovery: Vec<Recovery>,
}

/// Averages over all trials of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct McastReport {
    /// What was measured.
    pub scenario: McastScenario,
    /// Every trial.
    pub trials: Vec<Trial>,
    /// Mean overlay degree (over underlays).
    pub mean_degree: f64,
    /// Largest overlay degree.
    pub max_degree: usize,
    /// Underlay links (of the first underlay).
    pub underlay_links: usize,
    /// Share of the overlay links whose RTT is above 150 ms (over
    /// underlays).
    pub long_links: f64,
}

/// Why a scenario could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum McastSimError {
    /// The underlay could not be made.
    Underlay(UnderlayError),
    /// More members than stub routers, or fewer than two.
    Members {
        /// Asked for.
        asked: usize,
        /// Stub routers available.
        stub_routers: usize,
    },
    /// Zero seeds, sources or fan-out.
    Empty,
    /// The node simulation failed (setup, a command, or sessions that did
    /// not come up).
    Sim(String),
}

impl std::fmt::Display for McastSimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Underlay(e) => write!(f, "underlay: {e}"),
            Self::Members {
                asked,
                stub_routers,
            } => write!(
                f,
                "{asked} members do not fit: need 2 to {stub_routers} (one per stub router)"
            ),
            Self::Empty => f.write_str("seeds, sources and fan-out must be at least 1"),
            Self::Sim(e) => write!(f, "node simulation: {e}"),
        }
    }
}

impl std::error::Error for McastSimError {}

/// Runs every trial of `scenario`.
pub fn run_mcast_scenario(scenario: &McastScenario) -> Result<McastReport, McastSimError> {
    if scenario.seeds == 0 || scenario.sources == 0 || scenario.fanout == 0 {
        return Err(McastSimError::Empty);
    }
    let mut trials = Vec::new();
    let mut degrees = Vec::new();
    let mut underlay_links = 0;
    let (mut long, mut links) = (0usize, 0usize);
    for i in 0..scenario.seeds {
        let seed = scenario.seed.wrapping_add(i as u64);
        let (underlay, group) = world(scenario, seed)?;
        if i == 0 {
            underlay_links = underlay.links().len();
        }
        degrees.extend(group.degrees());
        links += group.edges.len();
        long += group
            .edges
            .iter()
            .filter(|&&(i, j)| 2 * group.delay_us(i, j) > 150_000)
            .count();
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x736f_7572_6365_7321);
        let topology = group.topology(&BTreeSet::new(), scenario.cost_exponent);
        let all: BTreeSet<usize> = (0..group.len()).collect();
        for k in 0..scenario.sources {
            let source = below(&mut rng, group.len());
            // The failure part draws from its own stream, so the sources
            // (and the figures without failures) do not depend on it.
            let mut failures =
                ChaCha20Rng::seed_from_u64(seed ^ 0x6661_696c_7572_6573 ^ (k as u64) << 48);
            trials.push(trial(
                scenario,
                &underlay,
                &group,
                &topology,
                &all,
                seed,
                source,
                &mut failures,
            ));
        }
    }
    let mean_degree = mean(&degrees.iter().map(|&d| d as f64).collect::<Vec<_>>());
    Ok(McastReport {
        scenario: scenario.clone(),
        trials,
        mean_degree,
        max_degree: degrees.iter().copied().max().unwrap_or(0),
        underlay_links,
        long_links: long as f64 / links.max(1) as f64,
    })
}

/// The inputs of the first trial's `build_tree` call (topology, source,
/// members), for timing the tree computation outside the library.
pub fn first_tree_inputs(
    scenario: &McastScenario,
) -> Result<(Topology, NodeId, BTreeSet<NodeId>), McastSimError> {
    let (_, group) = world(scenario, scenario.seed)?;
    let mut rng = ChaCha20Rng::seed_from_u64(scenario.seed ^ 0x736f_7572_6365_7321);
    let source = below(&mut rng, group.len());
    let all: BTreeSet<usize> = (0..group.len()).collect();
    Ok((
        group.topology(&BTreeSet::new(), scenario.cost_exponent),
        group.ids[source],
        ids(&group, &all),
    ))
}

fn world(scenario: &McastScenario, seed: u64) -> Result<(Underlay, Group), McastSimError> {
    let underlay = Underlay::transit_stub(TransitStubParams::new(scenario.routers), seed)
        .map_err(McastSimError::Underlay)?;
    let stubs = underlay.stub_routers().len();
    if scenario.members < 2 || scenario.members > stubs {
        return Err(McastSimError::Members {
            asked: scenario.members,
            stub_routers: stubs,
        });
    }
    let mut group = Group::new(&underlay, scenario.members, scenario.overlay, seed);
    if let Some(max) = scenario.max_link_rtt {
        let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        let keep: std::collections::BTreeSet<(usize, usize)> = group
            .edges
            .iter()
            .copied()
            .filter(|&(i, j)| 2 * group.delay_us(i, j) <= max_us)
            .collect();
        group.edges = keep;
    }
    Ok((underlay, group))
}

#[allow(clippy::too_many_arguments)] // one trial's fixed inputs
fn trial(
    scenario: &McastScenario,
    underlay: &Underlay,
    group: &Group,
    topology: &Topology,
    all: &BTreeSet<usize>,
    seed: u64,
    source: usize,
    rng: &mut ChaCha20Rng,
) -> Trial {
    let tree = build_tree(
        topology,
        group.ids[source],
        &ids(group, all),
        scenario.fanout,
    );
    let weft = measure::tree_figures(underlay, group, &tree);
    let delivery = forward(group, &tree, all, |_| true);
    let shape = measure::shape(group, &tree);

    // Failure: a fraction of the other members, at once.
    let others: Vec<usize> = (0..group.len()).filter(|&m| m != source).collect();
    let count = ((others.len() as f64 * scenario.fail).round() as usize).min(others.len());
    let mut pool = others;
    let mut failed = BTreeSet::new();
    for _ in 0..count {
        let at = below(rng, pool.len());
        failed.insert(pool.swap_remove(at));
    }
    let live: BTreeSet<usize> = all.difference(&failed).copied().collect();
    let old_tree = forward(group, &tree, &live, |m| !failed.contains(&m));
    let rebuilt_tree = build_tree(
        &group.topology(&failed, scenario.cost_exponent),
        group.ids[source],
        &ids(group, &live),
        scenario.fanout,
    );
    let rebuilt = forward(group, &rebuilt_tree, &live, |m| !failed.contains(&m));
    let rebuilt_mean_stretch = measure::tree_figures(underlay, group, &rebuilt_tree).mean_stretch;
    let recovery = recovery::recovery(
        group,
        &tree,
        source,
        &failed,
        scenario.fanout,
        scenario.cost_exponent,
        &weft_core::RoutingConfig::default(),
        rng,
    );

    Trial {
        seed,
        source,
        weft,
        unicast: measure::unicast_figures(underlay, group, source),
        ip_multicast: measure::ip_multicast_figures(underlay, group, source),
        stress_two: bound::stress_two_bound(underlay, group, source),
        delivery,
        shape,
        failure: Failure {
            failed: failed.len(),
            old_tree,
            rebuilt,
            rebuilt_mean_stretch,
            recovery,
        },
    }
}

/// Averages and extremes of one scheme over the trials.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SchemeSummary {
    /// Mean of the trials' mean stretch.
    pub mean_stretch: f64,
    /// Mean of the trials' 95th percentile stretch.
    pub p95_stretch: f64,
    /// Mean of the trials' max link stress.
    pub max_stress_mean: f64,
    /// Worst max link stress of any trial.
    pub max_stress_worst: u32,
    /// Mean of the trials' max stress in one direction of a link.
    pub max_stress_directed_mean: f64,
    /// Worst of those.
    pub max_stress_directed_worst: u32,
    /// Mean of the trials' mean stress over used links.
    pub mean_stress: f64,
    /// Mean source fan-out.
    pub source_fanout: f64,
    /// Mean underlay links used.
    pub used_links: f64,
    /// Mean bytes on underlay links per packet.
    pub bytes: f64,
    /// Mean of the trials' max stress per link class (transit–transit,
    /// transit–stub, stub–stub).
    pub max_stress_by_class: [f64; 3],
}

impl McastReport {
    /// Summary of one scheme.
    pub fn summary(&self, pick: impl Fn(&Trial) -> &SchemeFigures) -> SchemeSummary {
        let f: Vec<&SchemeFigures> = self.trials.iter().map(&pick).collect();
        let avg =
            |g: &dyn Fn(&SchemeFigures) -> f64| mean(&f.iter().map(|x| g(x)).collect::<Vec<_>>());
        SchemeSummary {
            mean_stretch: avg(&|x| x.mean_stretch),
            p95_stretch: avg(&|x| x.p95_stretch),
            max_stress_mean: avg(&|x| f64::from(x.max_stress)),
            max_stress_worst: f.iter().map(|x| x.max_stress).max().unwrap_or(0),
            max_stress_directed_mean: avg(&|x| f64::from(x.max_stress_directed)),
            max_stress_directed_worst: f.iter().map(|x| x.max_stress_directed).max().unwrap_or(0),
            mean_stress: avg(&|x| x.mean_stress),
            source_fanout: avg(&|x| x.source_fanout as f64),
            used_links: avg(&|x| x.used_links as f64),
            bytes: avg(&|x| (x.link_copies * self.scenario.packet_bytes) as f64),
            max_stress_by_class: [0, 1, 2]
                .map(|c| avg(&|x: &SchemeFigures| f64::from(x.max_stress_by_class[c]))),
        }
    }

    /// Lowest delivery ratio of any trial without failures.
    pub fn min_delivery(&self) -> f64 {
        self.trials
            .iter()
            .map(|t| t.delivery.ratio())
            .fold(1.0, f64::min)
    }

    /// Duplicates over all trials (without failures, old and rebuilt trees).
    pub fn duplicates(&self) -> usize {
        self.trials
            .iter()
            .map(|t| {
                t.delivery.duplicates + t.failure.old_tree.duplicates + t.failure.rebuilt.duplicates
            })
            .sum()
    }

    /// Largest number of children of any node in any tree.
    pub fn max_children(&self) -> usize {
        self.trials
            .iter()
            .map(|t| t.shape.max_children)
            .max()
            .unwrap_or(0)
    }

    /// Deepest member of any tree, in overlay hops.
    pub fn max_depth(&self) -> usize {
        self.trials
            .iter()
            .map(|t| t.delivery.max_depth)
            .max()
            .unwrap_or(0)
    }

    /// Recovery times in ms over all cut-off members of all trials:
    /// ([`Recovery::per_link_ms`], [`Recovery::node_report_ms`]).
    pub fn recovery_ms(&self) -> (Vec<f64>, Vec<f64>) {
        let r: Vec<&Recovery> = self
            .trials
            .iter()
            .flat_map(|t| &t.failure.recovery)
            .collect();
        (
            r.iter().map(|x| x.per_link_ms).collect(),
            r.iter().map(|x| x.node_report_ms).collect(),
        )
    }

    /// A digest of every figure of every trial (equal reports, equal
    /// digests; for determinism checks).
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::default();
        for t in &self.trials {
            h.u64(t.seed);
            h.u64(t.source as u64);
            for s in [&t.weft, &t.unicast, &t.ip_multicast] {
                h.f64(s.mean_stretch);
                h.f64(s.p95_stretch);
                h.f64(s.max_stretch);
                h.u64(u64::from(s.max_stress));
                h.u64(s.link_copies);
                h.u64(s.source_fanout as u64);
            }
            for d in [&t.delivery, &t.failure.old_tree, &t.failure.rebuilt] {
                h.u64(d.delivered as u64);
                h.u64(d.duplicates as u64);
                h.u64(d.max_depth as u64);
            }
            for r in &t.failure.recovery {
                h.f64(r.per_link_ms);
                h.f64(r.node_report_ms);
            }
        }
        h.0
    }

    /// The per-scheme table of this report, Markdown.
    pub fn markdown(&self) -> String {
        let sc = &self.scenario;
        let w = self.summary(|t| &t.weft);
        let u = self.summary(|t| &t.unicast);
        let ip = self.summary(|t| &t.ip_multicast);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} members on {} routers ({} links), {} underlays × {} sources, fan-out {}, overlay {}, mean degree {:.1} (max {}), {:.0} % of overlay links with RTT > 150 ms, tree cost {}",
            sc.members,
            sc.routers,
            self.underlay_links,
            sc.seeds,
            sc.sources,
            sc.fanout,
            overlay_name(sc.overlay),
            self.mean_degree,
            self.max_degree,
            self.long_links * 100.0,
            if sc.cost_exponent == weft_core::mcast::TREE_COST_EXPONENT {
                format!("RTT^{} (weft's)", sc.cost_exponent)
            } else {
                format!("RTT^{}", sc.cost_exponent)
            },
        );
        s.push('\n');
        s.push_str("| measure | weft tree | naive unicast | IP multicast |\n");
        s.push_str("|:--|--:|--:|--:|\n");
        let row = |s: &mut String, name: &str, f: &dyn Fn(&SchemeSummary) -> String| {
            let _ = writeln!(s, "| {name} | {} | {} | {} |", f(&w), f(&u), f(&ip));
        };
        row(&mut s, "mean stretch", &|x| {
            format!("{:.2}", x.mean_stretch)
        });
        row(&mut s, "p95 stretch", &|x| format!("{:.2}", x.p95_stretch));
        row(&mut s, "max link stress, mean / worst", &|x| {
            format!("{:.1} / {}", x.max_stress_mean, x.max_stress_worst)
        });
        row(&mut s, "max stress in one direction, mean / worst", &|x| {
            format!(
                "{:.1} / {}",
                x.max_stress_directed_mean, x.max_stress_directed_worst
            )
        });
        row(
            &mut s,
            "max stress by link class: transit–transit / transit–stub / stub–stub",
            &|x| {
                let c = x.max_stress_by_class;
                format!("{:.1} / {:.1} / {:.1}", c[0], c[1], c[2])
            },
        );
        row(&mut s, "mean stress (used links)", &|x| {
            format!("{:.2}", x.mean_stress)
        });
        row(&mut s, "source fan-out", &|x| {
            format!("{:.1}", x.source_fanout)
        });
        row(&mut s, "underlay links used", &|x| {
            format!("{:.0}", x.used_links)
        });
        row(&mut s, "kB on links per packet", &|x| {
            format!("{:.0}", x.bytes / 1e3)
        });
        s
    }
}

/// The summary table over several reports (one per group size), Markdown.
pub fn mcast_markdown_table(reports: &[McastReport]) -> String {
    let mut s = String::from(
        "| members | mean stretch | p95 stretch | max stress mean / worst | mean stress | source fan-out | kB per packet (unicast / IP mc) | unicast max stress | delivery | duplicates | max children | depth | failures: old tree | rebuilt tree | recovery ms, median / p95 / max | links-only rule (before): median / p95 / max |\n",
    );
    s.push_str("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in reports {
        let w = r.summary(|t| &t.weft);
        let u = r.summary(|t| &t.unicast);
        let ip = r.summary(|t| &t.ip_multicast);
        let old = mean(
            &r.trials
                .iter()
                .map(|t| t.failure.old_tree.ratio())
                .collect::<Vec<_>>(),
        );
        let rebuilt = r
            .trials
            .iter()
            .map(|t| t.failure.rebuilt.ratio())
            .fold(1.0, f64::min);
        let (per_link, parent) = r.recovery_ms();
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.1} / {} | {:.2} | {:.1} | {:.0} ({:.0} / {:.0}) | {:.0} | {:.1} % | {} | {} | {} | {:.1} % | {:.1} % | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} |",
            r.scenario.members,
            w.mean_stretch,
            w.p95_stretch,
            w.max_stress_mean,
            w.max_stress_worst,
            w.mean_stress,
            w.source_fanout,
            w.bytes / 1e3,
            u.bytes / 1e3,
            ip.bytes / 1e3,
            u.max_stress_mean,
            r.min_delivery() * 100.0,
            r.duplicates(),
            r.max_children(),
            r.max_depth(),
            old * 100.0,
            rebuilt * 100.0,
            percentile(&parent, 0.5),
            percentile(&parent, 0.95),
            parent.iter().copied().fold(0.0, f64::max),
            percentile(&per_link, 0.5),
            percentile(&per_link, 0.95),
            per_link.iter().copied().fold(0.0, f64::max),
        );
    }
    s
}

fn overlay_name(shape: OverlayShape) -> String {
    match shape {
        OverlayShape::Neighbours { max, random } => {
            format!("{max} neighbours ({random} random)")
        }
        OverlayShape::FullMesh => "full mesh".into(),
    }
}

/// FNV-1a over the figures' bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
}
