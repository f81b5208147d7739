//! The node's side of quality of service: the classifier and the egress
//! scheduler of [`crate::qos`], composed into the data path.
//!
//! Data frames (IP packets from the TUN, multicast copies) are classified,
//! routed by their class's metric and, when shaping is on, queued in the
//! egress scheduler; they are sealed only when dequeued, so the session
//! counter order matches the send order and no replay window is outrun.
//! Control traffic (handshakes, probes, link state, DHT, membership) never
//! waits: it is sent at once and only charged to the uplink bucket.

use std::time::Instant;

use crate::qos::{Classifier, QosConfig, QosConfigError, QosStats, Scheduler};

/// A data frame waiting in the egress scheduler (sealed at dequeue).
#[allow(dead_code)] // the data path is wired to it in the next step
pub(super) struct Queued {
    /// Peer index.
    pub(super) peer: usize,
    /// The IP packet (or multicast payload) to frame and seal.
    pub(super) packet: Vec<u8>,
}

/// QoS state of a node.
#[allow(dead_code)] // the data path is wired to it in the next step
pub(super) struct QosState {
    pub(super) config: QosConfig,
    pub(super) classifier: Classifier,
    pub(super) scheduler: Scheduler<Queued>,
}

impl QosState {
    pub(super) fn new(now: Instant, config: QosConfig) -> Result<Self, QosConfigError> {
        config.validate()?;
        let classifier = Classifier::new(&config)?;
        let scheduler = Scheduler::new(now, &config)?;
        Ok(Self {
            config,
            classifier,
            scheduler,
        })
    }
}

impl super::Node {
    /// The QoS settings this node runs with.
    pub fn qos_config(&self) -> &QosConfig {
        &self.qos.config
    }

    /// Per-class and per-peer QoS counters, rates and queue depths.
    pub fn qos_stats(&self, now: Instant) -> QosStats {
        self.qos.scheduler.stats(now)
    }
}
