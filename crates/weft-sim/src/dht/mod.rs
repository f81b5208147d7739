//! The DHT at scale: thousands of [`weft_core::dht::Dht`] engines in one
//! process, in virtual time, measured.
//!
//! Why a second simulator: [`crate::Sim`] runs whole [`weft_core::Node`]s
//! with sessions, routing and links as data, which costs too much per node
//! for 10,000 of them. Kademlia needs none of that: this module drives the
//! DHT engines directly with a plain discrete-event loop (a binary heap of
//! timed events, ordered by time, then insertion), with real certificates
//! and real signatures on every datagram.
//!
//! The scenario ([`DhtScenario`]):
//! 1. *Join*: nodes join one by one, [`DhtScenario::join_interval`] apart;
//!    each advertises its underlay endpoint and bootstraps from ONE random
//!    earlier live node (the first node has no one to ask).
//! 2. *Settle* for [`DhtScenario::settle`].
//! 3. *Lookups*: [`DhtScenario::lookups`] lookups spread evenly over
//!    [`DhtScenario::lookup_phase`], each from a random live node for a
//!    random other live node (70 % by node id, 10 % by name, 10 % by overlay
//!    IPv4, 10 % by overlay IPv6). With churn, a fraction
//!    [`DhtScenario::churn`] of the initial nodes leaves silently (their
//!    datagrams are dropped from then on) and as many new nodes join, spread
//!    over the same phase. Targets and sources are live nodes that joined at
//!    least [`DhtScenario::min_age`] ago (a node cannot be found before its
//!    record is published) and whose engine reported joining; a node never
//!    leaves with a lookup in flight (it could not report it).
//! 4. Lookups still running at the end of the phase get
//!    [`weft_core::dht::DhtConfig::lookup_timeout`] plus a margin to finish.
//!
//! A lookup succeeds when its [`DhtEvent::LookupDone`] carries the record
//! of the node it looked for. Hops and latency come from the engine's
//! [`weft_core::dht::LookupTrace`]; the RTTs between nodes from
//! [`RttModel`] (datagrams take half the pair's RTT, optionally lost with
//! probability [`DhtScenario::loss`]).
//!
//! Addresses: underlay endpoints are `198.18.0.0/15` port
//! [`crate::UNDERLAY_PORT`] (never sent anywhere: the network is in memory);
//! node `i` is named `n{i}` with overlay IPv4 `198.19.0.0/16` + `i + 1`.
//!
//! Determinism: the same [`DhtScenario`] (seed included) gives the same
//! [`DhtReport`], bit for bit ([`DhtReport::digest`] folds every lookup's
//! outcome, hops and latency).
//!
//! [`DhtEvent::LookupDone`]: weft_core::dht::DhtEvent::LookupDone

mod rtt;
mod world;

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use weft_core::CertError;
use weft_core::dht::DhtConfig;

pub use rtt::{Place, REGIONS, Region, RttModel};

/// What to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct DhtScenario {
    /// Nodes that join before the lookups.
    pub nodes: usize,
    /// Lookups in the lookup phase.
    pub lookups: usize,
    /// Fraction of `nodes` that leave (and as many that join) during the
    /// lookup phase; 0 for no churn.
    pub churn: f64,
    /// Seed of everything random: keys, places, choices, loss, engines.
    pub seed: u64,
    /// Time between two joins.
    pub join_interval: Duration,
    /// Quiet time between the last join and the first lookup.
    pub settle: Duration,
    /// The lookups (and the churn) are spread over this long.
    pub lookup_phase: Duration,
    /// A node is a lookup source or target only this long after it joined.
    pub min_age: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Every engine's configuration.
    pub dht: DhtConfig,
    /// Latency between nodes.
    pub rtt: RttModel,
    /// Random node pairs sampled for the RTT distribution.
    pub rtt_samples: usize,
    /// All engines verify certificates through one
    /// [`weft_core::dht::CertificateCache`] (sized for every node), so a
    /// certificate's CA signature is checked once per process instead of
    /// once per engine that meets it. Changes no output, only CPU time and
    /// memory: every datagram's own signature is still checked by its
    /// receiver. A real node has a private cache, so per-node memory is
    /// lower with sharing than in a daemon.
    pub shared_certificate_cache: bool,
}

impl DhtScenario {
    /// The benchmark's scenario for `nodes` nodes and `lookups` lookups:
    /// 50 joins per second, 30 s to settle, lookups over 60 s, default
    /// engine configuration, no churn, no loss, a private certificate cache
    /// per engine.
    pub fn new(nodes: usize, lookups: usize, seed: u64) -> Self {
        Self {
            nodes,
            lookups,
            churn: 0.0,
            seed,
            join_interval: Duration::from_millis(20),
            settle: Duration::from_secs(30),
            lookup_phase: Duration::from_secs(60),
            min_age: Duration::from_secs(10),
            loss: 0.0,
            dht: DhtConfig::default(),
            rtt: RttModel::default(),
            rtt_samples: 100_000,
            shared_certificate_cache: false,
        }
    }

    /// Nodes that leave, and nodes that join, during the lookup phase.
    pub fn churn_count(&self) -> usize {
        (self.churn * self.nodes as f64).round() as usize
    }
}

/// Where a run is, for progress reports and memory probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhtPhase {
    /// Before the first node exists (the CA does).
    Start,
    /// During the joins: this many nodes have joined.
    Joining(usize),
    /// After the settle time, before the first lookup.
    Settled,
    /// After the last lookup ended; the engines still exist.
    Done,
}

/// A snapshot handed to the probe at each [`DhtPhase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhtProgress {
    /// Where the run is.
    pub phase: DhtPhase,
    /// Simulated time since the start.
    pub simulated: Duration,
    /// Events processed so far.
    pub events: u64,
    /// Nodes alive now.
    pub live: usize,
}

/// Why a scenario could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtSimError {
    /// The CA refused to sign.
    Certificate(CertError),
    /// More nodes than the overlay IPv4 /16 holds.
    TooManyNodes(usize),
    /// A node asked to be woken at the same instant over and over: the
    /// engine's timer never advances.
    TimerStall {
        /// Which node (`n{index}`).
        node: usize,
        /// Simulated time.
        at: Duration,
    },
}

impl fmt::Display for DhtSimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(e) => write!(f, "certificate: {e}"),
            Self::TooManyNodes(n) => {
                write!(f, "{n} nodes: at most {MAX_NODES} fit the overlay /16")
            }
            Self::TimerStall { node, at } => write!(
                f,
                "node n{node} asks to be woken at {at:?} again and again (its timer does not advance)"
            ),
        }
    }
}

impl std::error::Error for DhtSimError {}

impl From<CertError> for DhtSimError {
    fn from(e: CertError) -> Self {
        Self::Certificate(e)
    }
}

/// How lookups of one kind of target went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCount {
    /// Started.
    pub started: usize,
    /// Found the right record.
    pub ok: usize,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct DhtReport {
    /// The scenario's initial size.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Nodes that left during the lookup phase.
    pub left: usize,
    /// Nodes that joined during the lookup phase.
    pub joined_late: usize,
    /// Median RTT of sampled node pairs.
    pub rtt_median: Duration,
    /// 99th percentile RTT of sampled node pairs.
    pub rtt_p99: Duration,
    /// Nodes whose engine reported [`weft_core::dht::DhtEvent::Joined`].
    pub joined_events: usize,
    /// Mean routing-table size when the lookups started.
    pub contacts_mean: f64,
    /// Smallest routing table when the lookups started.
    pub contacts_min: usize,
    /// Mean number of records held for others when the lookups started.
    pub stored_mean: f64,
    /// Mean number of certificates in an engine's cache when the lookups
    /// started (the shared cache's size if shared).
    pub certificates_mean: f64,
    /// When the lookups started: sizes of the connected components of the
    /// contact graph (node A–B if either has the other in its routing
    /// table), largest first. One component: no island of nodes that the
    /// rest cannot reach.
    pub components: Vec<usize>,
    /// When the lookups started: live nodes in no live node's routing
    /// table (nobody would ever return them in an answer).
    pub unreferenced: usize,
    /// [`DhtReport::components`] at the end of the run.
    pub components_end: Vec<usize>,
    /// [`DhtReport::unreferenced`] at the end of the run.
    pub unreferenced_end: usize,
    /// When the lookups started: live nodes whose engine had not reported
    /// [`weft_core::dht::DhtEvent::Joined`] (they are no lookup source or
    /// target).
    pub unjoined: usize,
    /// [`DhtReport::unjoined`] at the end of the run (churn: nodes that
    /// joined in the last seconds, or whose only bootstrap contact left
    /// before answering).
    pub unjoined_end: usize,
    /// Lookups started.
    pub lookups: usize,
    /// Lookups that found the right record.
    pub ok: usize,
    /// Failed: the engine says no such node.
    pub not_found: usize,
    /// Failed: the engine had no contacts.
    pub no_contacts: usize,
    /// Failed: the lookup ran out of time.
    pub timed_out: usize,
    /// Failed: a record of another node came back.
    pub wrong_record: usize,
    /// Not finished when the run ended.
    pub unfinished: usize,
    /// Answered from the source's own store (hops 0).
    pub local: usize,
    /// By target kind: id, name, IPv4, IPv6.
    pub by_kind: [KindCount; 4],
    /// Mean hops of successful lookups.
    pub hops_mean: f64,
    /// 99th percentile hops of successful lookups.
    pub hops_p99: u32,
    /// Most hops of a successful lookup.
    pub hops_max: u32,
    /// Median latency of successful lookups.
    pub latency_median: Duration,
    /// 99th percentile latency of successful lookups.
    pub latency_p99: Duration,
    /// Mean queries a lookup sent.
    pub queries_per_lookup: f64,
    /// Datagrams sent by all nodes over the run.
    pub datagrams: u64,
    /// Bytes sent by all nodes over the run.
    pub bytes: u64,
    /// Datagrams sent during the join and settle phases.
    pub datagrams_setup: u64,
    /// Bytes sent during the join and settle phases.
    pub bytes_setup: u64,
    /// Datagrams sent from the first lookup to the end.
    pub datagrams_lookup_phase: u64,
    /// Datagrams that reached a node that had left.
    pub dropped_dead: u64,
    /// Datagrams lost at random.
    pub dropped_loss: u64,
    /// Datagrams sent to an address that is no node.
    pub dropped_unknown: u64,
    /// Queries that timed out (engine counter, summed over all nodes).
    pub query_timeouts: u64,
    /// Datagrams rejected or malformed (engine counters, summed).
    pub rejected: u64,
    /// Nodes created over the run.
    pub nodes_total: usize,
    /// Simulated time of the run.
    pub simulated: Duration,
    /// Events processed.
    pub events: u64,
    /// Folds every lookup's outcome, hops and latency, and the datagram
    /// count: equal digests, equal runs.
    pub digest: u64,
    /// The first failed lookups, each in words (who looked for whom, how,
    /// what came of each query).
    pub failures: Vec<String>,
}

/// One row of [`DhtReport::rows`]: a figure and, if the issue sets one, its
/// target and whether it is met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    /// What.
    pub metric: String,
    /// How much.
    pub value: String,
    /// The target and whether it is met.
    pub target: Option<(String, bool)>,
}

impl ReportRow {
    /// A row without a target.
    pub fn plain(metric: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            value: value.into(),
            target: None,
        }
    }

    /// A row with a target.
    pub fn with_target(
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Self {
        Self {
            metric: metric.into(),
            value: value.into(),
            target: Some((target.into(), met)),
        }
    }
}

impl DhtReport {
    /// Successful lookups over started ones, in percent (100 if none).
    pub fn success_percent(&self) -> f64 {
        if self.lookups == 0 {
            return 100.0;
        }
        100.0 * self.ok as f64 / self.lookups as f64
    }

    /// Median lookup latency over median RTT.
    pub fn latency_over_rtt(&self) -> f64 {
        if self.rtt_median.is_zero() {
            return 0.0;
        }
        self.latency_median.as_secs_f64() / self.rtt_median.as_secs_f64()
    }

    /// The headline figures with the targets (no churn: 100 %
    /// success, mean hops at most 4, median latency at most 3 × median RTT;
    /// churn: at least 99 % success).
    pub fn rows(&self) -> Vec<ReportRow> {
        let churn = self.left > 0 || self.joined_late > 0;
        let n = self.nodes_total.max(1) as f64;
        let initial = self.nodes.max(1) as f64;
        let mut rows = vec![
            ReportRow::plain(
                "nodes",
                if churn {
                    format!(
                        "{} (+{} joined, -{} left during lookups)",
                        self.nodes, self.joined_late, self.left
                    )
                } else {
                    self.nodes.to_string()
                },
            ),
            ReportRow::plain(
                "pairwise RTT (sampled)",
                format!("median {}, p99 {}", ms(self.rtt_median), ms(self.rtt_p99)),
            ),
            ReportRow::plain(
                "routing table at first lookup",
                format!(
                    "mean {:.1} contacts (min {}), {:.1} records stored, {:.0} certificates cached per node",
                    self.contacts_mean, self.contacts_min, self.stored_mean, self.certificates_mean
                ),
            ),
        ];
        rows.push(ReportRow::plain(
            "contact graph (first lookup; end)",
            format!(
                "{}, {} nodes in no table, {} not joined; {}, {} in no table, {} not joined",
                components(&self.components),
                self.unreferenced,
                self.unjoined,
                components(&self.components_end),
                self.unreferenced_end,
                self.unjoined_end
            ),
        ));
        let success = self.success_percent();
        let failures = format!(
            "{} / {} ({:.2} %); failed: {} not found, {} timed out, {} no contacts, {} wrong record, {} unfinished",
            self.ok,
            self.lookups,
            success,
            self.not_found,
            self.timed_out,
            self.no_contacts,
            self.wrong_record,
            self.unfinished
        );
        rows.push(if churn {
            ReportRow::with_target("lookup success", failures, "≥ 99 %", success >= 99.0)
        } else {
            ReportRow::with_target("lookup success", failures, "100 %", self.ok == self.lookups)
        });
        let kinds = ["id", "name", "IPv4", "IPv6"];
        rows.push(ReportRow::plain(
            "success by target",
            kinds
                .iter()
                .zip(self.by_kind.iter())
                .map(|(k, c)| format!("{k} {}/{}", c.ok, c.started))
                .collect::<Vec<_>>()
                .join(", "),
        ));
        let hops = format!(
            "mean {:.2}, p99 {}, max {} ({} answered locally)",
            self.hops_mean, self.hops_p99, self.hops_max, self.local
        );
        rows.push(if churn {
            ReportRow::plain("hops", hops)
        } else {
            ReportRow::with_target("hops", hops, "mean ≤ 4", self.hops_mean <= 4.0)
        });
        let ratio = self.latency_over_rtt();
        let latency = format!(
            "median {} ({:.2} × median RTT), p99 {}",
            ms(self.latency_median),
            ratio,
            ms(self.latency_p99)
        );
        rows.push(if churn {
            ReportRow::plain("lookup latency", latency)
        } else {
            ReportRow::with_target("lookup latency", latency, "median ≤ 3 × RTT", ratio <= 3.0)
        });
        rows.push(ReportRow::plain(
            "queries per lookup",
            format!("{:.1}", self.queries_per_lookup),
        ));
        rows.push(ReportRow::plain(
            "datagrams sent per node",
            format!(
                "joins and settle {:.0} ({:.1} kB) per initial node; lookup phase {:.0} per live node (lookups, maintenance and, with churn, joins); whole run {:.0} over all {} nodes",
                self.datagrams_setup as f64 / initial,
                self.bytes_setup as f64 / initial / 1e3,
                self.datagrams_lookup_phase as f64 / initial,
                self.datagrams as f64 / n,
                self.nodes_total
            ),
        ));
        rows.push(ReportRow::plain(
            "datagrams dropped",
            format!(
                "{} to departed nodes, {} lost, {} misaddressed; {} query timeouts, {} rejected",
                self.dropped_dead,
                self.dropped_loss,
                self.dropped_unknown,
                self.query_timeouts,
                self.rejected
            ),
        ));
        rows.push(ReportRow::plain(
            "simulated",
            format!(
                "{:.0} s, {} events, digest {:016x}",
                self.simulated.as_secs_f64(),
                self.events,
                self.digest
            ),
        ));
        rows
    }
}

/// A Markdown table of `rows`.
pub fn markdown_table(rows: &[ReportRow]) -> String {
    let mut out = String::from("| metric | value | target |\n| --- | --- | --- |\n");
    for row in rows {
        let target = match &row.target {
            Some((t, true)) => format!("{t}: met"),
            Some((t, false)) => format!("{t}: **NOT MET**"),
            None => String::new(),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "| {} | {} | {} |", row.metric, row.value, target);
    }
    out
}

/// Runs `scenario` in virtual time starting at `base`; `probe` is called at
/// each [`DhtPhase`] (the benchmark reads its allocator there).
pub fn run_dht_scenario(
    base: Instant,
    scenario: &DhtScenario,
    probe: &mut dyn FnMut(DhtProgress),
) -> Result<DhtReport, DhtSimError> {
    let total = scenario.nodes + scenario.churn_count();
    if total > MAX_NODES {
        return Err(DhtSimError::TooManyNodes(total));
    }
    world::World::new(base, scenario)?.run(probe)
}

/// Nodes that fit 198.19.0.0/16 (all but the network and broadcast
/// addresses).
pub const MAX_NODES: usize = 65_534;

/// `1 component` or `3 components (980, 19, 1)`, at most 8 sizes listed.
fn components(sizes: &[usize]) -> String {
    match sizes {
        [] => "no nodes".into(),
        [_] => "1 component".into(),
        _ => {
            let mut listed: Vec<String> = sizes.iter().take(8).map(|n| n.to_string()).collect();
            if sizes.len() > 8 {
                listed.push("...".into());
            }
            format!("{} components ({})", sizes.len(), listed.join(", "))
        }
    }
}

/// `12.3 ms`.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
