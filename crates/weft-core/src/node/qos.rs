//! The node's side of quality of service: the classifier and the egress
//! scheduler of [`crate::qos`], composed into the data path.
//!
//! Data (IP packets from the TUN, packets that waited for a handshake, and
//! every multicast copy this node sends or forwards) is classified, framed
//! into a pool buffer with room for the data header, and queued in the
//! egress scheduler under its class and, for a rate-limited peer, that
//! peer's lane. Whatever the shapers allow leaves at once: it is sealed
//! only when dequeued, so session counters follow the send order and a
//! long queue never outruns the receiver's replay window, and then routed
//! by the class's metric (latency or loss) and the packet's flow. Without
//! shaping the scheduler is work-conserving and a packet leaves in the
//! same call that queued it, with no allocation of its own (the frame is
//! built in the buffer that is then sealed in place).
//!
//! Control traffic never waits here: handshakes, keepalives, probes and
//! their answers, link state, membership, DHT datagrams, and relay frames
//! this node forwards for others (opaque end-to-end sealed packets whose
//! class it cannot see) are sent at once and charged to the uplink bucket,
//! and to the bucket of the rate-limited peer whose endpoint they go to,
//! so the egress as a whole keeps to its rate and data waits a little
//! longer instead. Every length given to the shapers is what the underlay
//! carries: the sealed datagram plus the IPv4 (28) or IPv6 (48) and UDP
//! headers, so rates are underlay rates, as `tc` counts them.
//!
//! The scheduler's wake-up time is cached after every change (enqueue,
//! dequeue, charge), because `poll_timeout` has no `now` to ask it with;
//! it is exact since nothing else changes the scheduler.

use std::net::SocketAddr;
use std::time::Instant;

use super::peers::PeerId;
use super::{Node, Via, flow_hash};
use crate::identity::{Certificate, NodeId};
use crate::qos::{
    ClassId, Classifier, Context, Dropped, PacketInfo, Party, PeerSlot, QosConfig, QosConfigError,
    QosStats, Scheduler,
};
use crate::route::Metric;
use crate::wire::{DATA_HEADER_LEN, Frame, TAG_LEN};

/// Bytes the underlay adds to a datagram over IPv4: IPv4 and UDP headers.
pub(super) const UNDERLAY_IPV4: usize = 20 + 8;
/// Bytes the underlay adds to a datagram over IPv6: IPv6 and UDP headers.
pub(super) const UNDERLAY_IPV6: usize = 40 + 8;

/// A data frame waiting in the egress scheduler (sealed at dequeue).
pub(super) struct Queued {
    /// Peer index (the end-to-end destination, or the tree child for a
    /// multicast copy).
    pub(super) peer: PeerId,
    /// [`DATA_HEADER_LEN`] bytes of room, then the encoded frame: sealed in
    /// place when it leaves.
    pub(super) frame: Vec<u8>,
    /// What the frame carries, which says how it travels.
    pub(super) kind: QueuedKind,
}

/// What a queued frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueuedKind {
    /// An IP packet for the peer: routed by its class's metric and flow.
    Ip {
        /// The class's path metric.
        metric: Metric,
        /// The packet's flow hash (spreading over equal relays).
        flow: u64,
    },
    /// A multicast copy for a tree neighbour: straight to its endpoint.
    Multicast,
}

/// QoS state of a node.
pub(super) struct QosState {
    pub(super) config: QosConfig,
    pub(super) classifier: Classifier,
    pub(super) scheduler: Scheduler<Queued>,
    /// When queued data may next leave (`None`: nothing queued).
    pub(super) next_send: Option<Instant>,
    /// While a dequeued data datagram is being emitted: the underlay bytes
    /// the scheduler booked for it, so that `queue_transmit` charges only
    /// what routing added (a relay header), not the datagram again.
    pub(super) booked: Option<usize>,
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
            next_send: None,
            booked: None,
        })
    }

    /// Whether any peer has a rate limit (only then does a peer's slot
    /// need looking up).
    fn has_peer_limits(&self) -> bool {
        !self.config.peer_rates.is_empty()
    }
}

/// Underlay header bytes for a datagram to `to`.
pub(super) fn underlay_header(to: Option<SocketAddr>) -> usize {
    match to {
        Some(SocketAddr::V6(_)) => UNDERLAY_IPV6,
        _ => UNDERLAY_IPV4,
    }
}

fn party(certificate: &Certificate) -> Party<'_> {
    Party {
        name: certificate.name(),
        groups: certificate.groups(),
    }
}

impl Node {
    /// The QoS settings this node runs with.
    pub fn qos_config(&self) -> &QosConfig {
        &self.qos.config
    }

    /// Replaces the QoS settings (classes, rules, uplink and peer rates)
    /// at run time. Packets already queued move to the new queues: into the
    /// class of the same name, else the new default class, and into their
    /// peer's lane if that peer still has a rate limit; those the new
    /// queues cannot hold are dropped and counted there. Counters and rate
    /// meters start again from zero, and buckets start full. On an error
    /// nothing changes.
    pub fn set_qos(&mut self, now: Instant, config: QosConfig) -> Result<(), QosConfigError> {
        let mut next = QosState::new(now, config)?;
        let fallback = next.config.class_id(&next.config.default_class);
        for queued in self.qos.scheduler.take_queued() {
            let Some(class) = next.config.class_id(&queued.class).or(fallback) else {
                recycle(&mut self.pool, queued.item.frame);
                continue;
            };
            let slot = queued
                .peer
                .as_deref()
                .and_then(|name| next.scheduler.peer_slot(name));
            if let Err(dropped) = next
                .scheduler
                .enqueue(now, class, slot, queued.item, queued.len)
            {
                recycle(&mut self.pool, dropped.item.frame);
            }
        }
        self.qos = next;
        self.qos_drain(now);
        Ok(())
    }

    /// Per-class and per-peer QoS counters, rates and queue depths.
    pub fn qos_stats(&self, now: Instant) -> QosStats {
        self.qos.scheduler.stats(now)
    }

    /// The class the node gives `packet` (an IP packet) sent to the node
    /// `destination` (a certificate name or hex node id; `None`: no
    /// particular node, as for multicast), as its classifier decides:
    /// what `weft qos` and tests use to explain where traffic goes.
    pub fn qos_classify(&self, packet: &[u8], destination: Option<&str>) -> Option<String> {
        let certificate = match destination {
            Some(name) => {
                let id = self.resolve(name).ok()?;
                if id == self.node_id() {
                    Some(&self.certificate)
                } else {
                    Some(self.certificate_of(&id)?)
                }
            }
            None => None,
        };
        let context = Context {
            source: Some(party(&self.certificate)),
            destination: certificate.map(party),
        };
        let class = self.qos.classifier.classify(packet, &context);
        self.qos.config.class(class).map(|c| c.name.clone())
    }

    /// Sends an IP packet from the TUN to `peer` (whose session is usable):
    /// classifies it and queues it, then lets out what the shapers allow.
    pub(super) fn send_ip(&mut self, now: Instant, peer: PeerId, packet: &[u8]) {
        self.enqueue_ip(now, peer, packet);
        self.qos_drain(now);
    }

    /// Passes an IP packet for `peer` through the outbound firewall,
    /// classifies it and queues it (the caller drains). The header is
    /// parsed once, for both.
    pub(super) fn enqueue_ip(&mut self, now: Instant, peer: PeerId, packet: &[u8]) {
        let info = PacketInfo::parse(packet);
        if !self.admit_outbound(now, peer, info.as_ref(), packet) {
            return;
        }
        self.enqueue_parsed(now, peer, packet, info.as_ref());
    }

    /// Classifies an IP packet for `peer` whose header walk is `info` and
    /// queues it, past the firewall (the caller drains).
    pub(super) fn enqueue_parsed(
        &mut self,
        now: Instant,
        peer: PeerId,
        packet: &[u8],
        info: Option<&PacketInfo>,
    ) {
        let class = {
            let context = Context {
                source: Some(party(&self.certificate)),
                destination: self.peers[peer].certificate.as_ref().map(party),
            };
            self.qos.classifier.classify_info(info, &context)
        };
        let metric = Metric::from(self.qos.classifier.metric(class));
        let mut frame = self.take_buffer();
        frame.resize(DATA_HEADER_LEN, 0);
        Frame::Ip(packet).emit(&mut frame);
        let kind = QueuedKind::Ip {
            metric,
            flow: flow_hash(packet),
        };
        self.enqueue(now, class, peer, frame, kind);
    }

    /// The class of a multicast packet from `origin` (this node, or the
    /// one it forwards for). A group has no one destination node, so rules
    /// on the destination's name or groups do not match multicast.
    pub(super) fn classify_multicast(&self, origin: &NodeId, packet: &[u8]) -> ClassId {
        let source = if *origin == self.node_id() {
            Some(&self.certificate)
        } else {
            self.certificate_of(origin)
        };
        let context = Context {
            source: source.map(party),
            destination: None,
        };
        self.qos.classifier.classify(packet, &context)
    }

    /// Queues `frame` (a multicast copy) in `class` for tree neighbour
    /// `peer` (the caller drains).
    pub(super) fn enqueue_multicast(
        &mut self,
        now: Instant,
        peer: PeerId,
        class: ClassId,
        frame: &Frame<'_>,
    ) {
        let mut buf = self.take_buffer();
        buf.resize(DATA_HEADER_LEN, 0);
        frame.emit(&mut buf);
        self.enqueue(now, class, peer, buf, QueuedKind::Multicast);
    }

    fn enqueue(
        &mut self,
        now: Instant,
        class: ClassId,
        peer: PeerId,
        frame: Vec<u8>,
        kind: QueuedKind,
    ) {
        let len = frame.len() + TAG_LEN + underlay_header(self.peers[peer].endpoint);
        let slot = self.peer_slot(peer);
        let item = Queued { peer, frame, kind };
        if let Err(Dropped { reason, item }) =
            self.qos.scheduler.enqueue(now, class, slot, item, len)
        {
            tracing::trace!(%reason, "qos: packet not queued");
            self.return_buffer(item.frame);
        }
    }

    /// Sends what the shapers allow now, then notes when to try again.
    pub(super) fn qos_drain(&mut self, now: Instant) {
        loop {
            let pool = &mut self.pool;
            let next = self
                .qos
                .scheduler
                .dequeue_with(now, |dropped| recycle(pool, dropped.frame));
            let Some(item) = next else {
                break;
            };
            self.send_queued(now, item);
        }
        self.qos.next_send = self.qos.scheduler.next_send_time(now);
    }

    /// Seals a dequeued frame in the peer's current session and sends it.
    fn send_queued(&mut self, now: Instant, item: Queued) {
        let Queued {
            peer,
            mut frame,
            kind,
        } = item;
        if !self.usable_current(now, peer) {
            // The session ended (or ran out of counters) while the frame
            // waited.
            self.stats.tx_qos_no_session += 1;
            return self.return_buffer(frame);
        }
        let payload = frame.len().saturating_sub(DATA_HEADER_LEN + 1);
        let p = &mut self.peers[peer];
        let Some(transport) = p.current.as_mut() else {
            self.stats.tx_qos_no_session += 1;
            return self.return_buffer(frame);
        };
        transport.seal(&mut frame);
        p.last_sent = Some(now);
        let via = match kind {
            QueuedKind::Ip { metric, flow } => {
                p.bytes_out += payload as u64;
                p.last_data = Some(now);
                p.packets_out += 1;
                Via::Route(metric, flow)
            }
            QueuedKind::Multicast => {
                p.last_data = Some(now);
                p.monitor.mark_active(now, &self.routing.config);
                Via::Direct
            }
        };
        self.qos.booked = Some(frame.len() + underlay_header(self.peers[peer].endpoint));
        self.emit(now, peer, frame, via);
        self.qos.booked = None;
        if let QueuedKind::Ip { .. } = kind {
            self.maybe_rekey_on_volume(now, peer);
        }
    }

    /// Accounts for a datagram of `len` bytes (UDP payload) that goes to
    /// `to` outside the scheduler; for a data datagram the scheduler booked
    /// already, only what routing added to it.
    pub(super) fn qos_charge(&mut self, now: Instant, to: SocketAddr, len: usize) {
        let wire = len + underlay_header(Some(to));
        let charge = match self.qos.booked.take() {
            Some(booked) => wire.saturating_sub(booked),
            None => wire,
        };
        if charge == 0 {
            return;
        }
        let slot = if self.qos.has_peer_limits() {
            self.peers
                .find(|p| p.endpoint == Some(to))
                .and_then(|peer| self.peer_slot(peer))
        } else {
            None
        };
        self.qos.scheduler.charge(now, slot, charge);
        if self.qos.next_send.is_some() {
            self.qos.next_send = self.qos.scheduler.next_send_time(now);
        }
    }

    /// The scheduler slot of `peer`, if it has a rate limit.
    fn peer_slot(&self, peer: PeerId) -> Option<PeerSlot> {
        if !self.qos.has_peer_limits() {
            return None;
        }
        let p = &self.peers[peer];
        let name = p
            .certificate
            .as_ref()
            .map(|c| c.name())
            .or(p.configured_name.as_deref())?;
        self.qos.scheduler.peer_slot(name)
    }
}

/// Keeps a dropped frame's buffer for reuse (as `Node::return_buffer`).
fn recycle(pool: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    if pool.len() < super::MAX_POOL && buf.capacity() >= super::BUFFER_CAPACITY {
        pool.push(buf);
    }
}
