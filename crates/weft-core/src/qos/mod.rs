//! Quality of service: traffic classes, the packet classifier, and the
//! per-egress scheduler that prioritises, shares, shapes and drops.
//!
//! Everything here is pure and sans-IO: time comes in as `now`, nothing
//! touches the OS, the same calls give the same results. The node composes
//! it: it classifies each data packet ([`Classifier::classify`]), queues it
//! in the egress [`Scheduler`], dequeues what the shapers allow and sets a
//! timer for [`Scheduler::next_send_time`]. Control traffic (handshakes,
//! probes, link state, DHT, membership) bypasses the scheduler entirely.
//!
//! # Design note
//!
//! - **Classes** ([`ClassConfig`]): a handful (default realtime,
//!   interactive, bulk, background), each with a priority, a DRR weight, an
//!   optional hard rate cap, queue limits and CoDel parameters, and the path
//!   metric the router should use for it ([`PathMetric`]: latency for
//!   realtime and interactive, loss for bulk and background).
//! - **Classification**: ordered rules on DSCP, protocol, ports and the
//!   certificate name and groups of both ends; first match wins; unmatched
//!   is interactive. The default rules follow RFC 4594's DSCP service
//!   classes, so marked traffic is served sensibly without configuration.
//!   Parsing is total and allocation-free.
//! - **Scheduling**: realtime classes go strictly first, but only while
//!   under their cap (default 30 % of the uplink), so a flood marked EF
//!   cannot starve the rest. Normal classes share what is left by deficit
//!   round robin (byte-accurate weighted fairness at O(1) per packet,
//!   unlike WFQ's sorted virtual times). Caps are hard: traffic above them
//!   waits even if the uplink is idle, which is what "hold a class to its
//!   rate" means to an operator.
//! - **Shaping**: token buckets for the whole egress (at `uplink_bps`, a
//!   little below the real uplink, so the queue forms here where it can be
//!   scheduled, not in a modem), for each capped class, and for each
//!   rate-limited peer. A bucket lets a packet go while not in debt and
//!   then charges its whole length, so it never stalls on a large packet
//!   and its long-run rate is exact; depth is [`DEFAULT_BURST`] (5 ms) of
//!   its rate. A realtime packet therefore waits at most one packet's
//!   transmission time behind bulk traffic.
//! - **Peer limits without head-of-line blocking**: each class keeps one
//!   lane per rate-limited peer beside the shared lane, and eligible lanes
//!   take turns; a peer held by its bucket never delays others. One
//!   scheduler thus serves the whole uplink, so realtime wins over bulk
//!   across all peers, and per-peer limits need no second queueing stage.
//! - **Queue management**: every lane is bounded in packets and bytes
//!   (tail drop; bytes also to 250 ms at the rate the lane drains at), and CoDel (RFC 8289) drops at dequeue when the sojourn
//!   time has stayed above target (5 ms) for an interval (100 ms), which
//!   keeps TCP's queue short without tuning to the link rate. Drops are
//!   counted per class and reason and hand the item back for reuse.
//! - **Bounded, allocation-free steady state**: queues are `VecDeque`s that
//!   keep their capacity; class, lane and peer tables are fixed at
//!   construction; no timers of its own (the driver asks
//!   [`Scheduler::next_send_time`]).

mod bucket;
mod classify;
mod codel;
mod config;
mod scheduler;
mod stats;
#[cfg(test)]
mod tests;

pub use bucket::TokenBucket;
pub use classify::{
    Classifier, Context, MAX_EXTENSION_HEADERS, PacketInfo, Party, PortRange, Rule, default_rules,
    parse_dscp, parse_protocol,
};
pub use config::{
    Aqm, ClassConfig, ClassId, DEFAULT_BURST, MAX_BURST, MAX_CLASSES, MAX_PEER_RATES, MAX_RATE_BPS,
    MAX_RULES, MAX_WEIGHT, MIN_BURST, MIN_QUEUE_BYTES, PathMetric, Priority, QosConfig,
    QosConfigError, RateLimit, parse_bps,
};
pub use scheduler::{
    DropReason, Dropped, PEER_LANE_MIN_BYTES, PEER_LANE_TIME, PeerSlot, QUANTUM_BYTES, Requeued,
    Scheduler,
};
pub use stats::{ClassStats, PeerStats, QosStats, RATE_WINDOW};
