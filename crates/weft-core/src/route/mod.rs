//! Resilient routing: link state, path choice, forwarding through relays.
//!
//! Every node measures its direct links (see `link`), advertises them in a
//! signed link-state record flooded to every member, and computes for each
//! destination the best path (direct, or through one or two intermediate
//! nodes) under each [`Metric`]. Packets to a destination follow its path
//! by source routing: the sender seals the packet end to end for the
//! destination, then wraps it in a relay frame for the first hop that names
//! the hops still to go. A relay learns only where to send it next.
//!
//! Design notes:
//! - Metrics: [`Metric::Latency`] costs a link its smoothed RTT plus one
//!   second per unit of loss (30 % loss costs as much as 300 ms of RTT), so
//!   interactive traffic leaves a lossy link too; [`Metric::Loss`] costs a
//!   link `-ln(1 - loss)` (loss along a path multiplies) with RTT as a tie
//!   breaker, for bulk traffic.
//! - Hysteresis: a working path is replaced only by one at least 20 %
//!   cheaper (and 1 ms for latency) or by a shorter one that costs no more,
//!   and not within a second of the last change; a broken path (a link on
//!   it down or gone) is replaced at once.
//! - Spreading: when the best path is relayed, every other path with the
//!   same number of hops whose cost is within 10 % of it is a candidate,
//!   and each flow (hash of its addresses, protocol and ports) sticks to
//!   one candidate, so many flows do not pile onto one relay.
//! - Loops cannot form: the path is fixed by the sender and each relay
//!   removes itself from the list, which holds at most
//!   [`MAX_INTERMEDIATES`] nodes.

mod brake;
mod lsdb;
mod paths;
mod table;

use std::fmt;
use std::time::Duration;

pub(crate) use brake::{Brake, Bucket};
pub(crate) use lsdb::{LinkStateDb, LsaError, verify as verify_lsa};
pub(crate) use paths::{Graph, IdMap, LinkQuality, compute_paths};
pub(crate) use table::RouteTable;

use crate::identity::NodeId;
use crate::qos::PathMetric;

/// Most intermediate nodes on a path: the default overlay MTU leaves room
/// for the relay header of this many.
pub const MAX_INTERMEDIATES: usize = 2;

/// What a path is optimised for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Lowest latency (interactive traffic), loss counted as delay.
    Latency,
    /// Lowest loss (bulk traffic), latency as a tie breaker.
    Loss,
}

impl Metric {
    /// Both metrics, in table order.
    pub const ALL: [Metric; 2] = [Metric::Latency, Metric::Loss];
}

/// Each traffic class names the metric its paths are optimised for (see
/// `qos`): latency for realtime and interactive, loss for bulk and
/// background by default.
impl From<PathMetric> for Metric {
    fn from(metric: PathMetric) -> Self {
        match metric {
            PathMetric::Latency => Metric::Latency,
            PathMetric::Loss => Metric::Loss,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Latency => "latency",
            Metric::Loss => "loss",
        })
    }
}

/// Timing of link monitoring and link state.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// Probe interval per neighbour while no traffic uses the link: the
    /// idle cost is one ping and one pong (69 bytes each over IPv4) per
    /// interval, and an idle failure is noticed after three intervals.
    pub probe_idle: Duration,
    /// Probe interval while traffic uses the link (sub-second detection).
    pub probe_active: Duration,
    /// Probe interval while the link is down (how fast recovery is seen).
    pub probe_down: Duration,
    /// A link counts as active this long after traffic last used it.
    pub active_for: Duration,
    /// Shortest silence that marks a link down (the RTT-based timeout is
    /// used when longer).
    pub min_link_timeout: Duration,
    /// A node re-advertises its links at least this often.
    pub lsa_refresh: Duration,
    /// Receivers drop a link-state record this long after it was made.
    pub lsa_lifetime: Duration,
    /// Shortest time between two routing changes of a working path.
    pub hold_down: Duration,
    /// Whether to route through other nodes at all.
    pub relaying: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            probe_idle: Duration::from_secs(1),
            probe_active: Duration::from_millis(40),
            probe_down: Duration::from_millis(250),
            active_for: Duration::from_secs(1),
            min_link_timeout: Duration::from_millis(150),
            // Changes are sent at once; the refresh only keeps records
            // from expiring and repairs a lost copy, and it is most of
            // the idle cost of link state (each record crosses about d²
            // links within its radius).
            lsa_refresh: Duration::from_secs(60),
            lsa_lifetime: Duration::from_secs(185),
            hold_down: Duration::from_secs(1),
            relaying: true,
        }
    }
}

/// One hop of a path: the node reached and the link that reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// The node.
    pub node: NodeId,
    /// Its certificate name, if known.
    pub name: String,
    /// Smoothed RTT of the link from the previous node.
    pub rtt: Option<Duration>,
    /// Loss rate (0 to 1) of that link.
    pub loss: f32,
}

/// A destination's route under one metric, as `weft routes` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStatus {
    /// The destination.
    pub destination: NodeId,
    /// Its certificate name.
    pub name: String,
    /// The metric this route is for.
    pub metric: Metric,
    /// The hops, ending with the destination; one hop means direct.
    pub path: Vec<Hop>,
    /// Other paths flows are spread over (relayed routes only).
    pub alternates: usize,
    /// Those other paths, as names along each, ending with the
    /// destination: each flow keeps to `path` or one of these.
    pub alternate_paths: Vec<Vec<String>>,
    /// The path's cost: latency for [`Metric::Latency`], or the loss rate
    /// in millionths (`-ln(1-p)` scaled) for [`Metric::Loss`].
    pub cost: u64,
    /// Time since the route last changed.
    pub age: Duration,
    /// Whether an operator pinned it.
    pub pinned: bool,
    /// Whether `path` is the last resort straight to the destination's
    /// endpoint because the table has no route yet or its route's first
    /// hop cannot carry packets now (link down, no session); `age` is
    /// then zero.
    pub fallback: bool,
}

/// Why a routing command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No member of that name or id is known.
    #[error("no known node is called '{0}'")]
    UnknownNode(String),
    /// The path names this node, repeats a node, or ends at a relay.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// Too many intermediates for the overlay MTU.
    #[error("a path may have at most {MAX_INTERMEDIATES} intermediate nodes")]
    TooLong,
    /// No path to the destination is known.
    #[error("no path to '{0}' is known")]
    Unreachable(String),
}
