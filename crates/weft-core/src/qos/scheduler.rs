//! The per-egress scheduler: per-class queues served by strict priority
//! (realtime, capped) and deficit round robin (the rest), shaped by token
//! buckets and kept short by CoDel.
//!
//! Inputs: [`Scheduler::enqueue`] (a data packet the node wants to send,
//! already classified); outputs: [`Scheduler::dequeue`] (the next packet
//! the driver may send now) and [`Scheduler::next_send_time`] (when to ask
//! again). After enqueueing, or when the time from `next_send_time` has
//! come, the caller dequeues until it gets `None`, then sets a timer for
//! `next_send_time`. Control traffic (handshakes, probes, link state, DHT,
//! membership) never enters a scheduler: the node sends it directly, so it
//! never waits behind data, and reports its size with
//! [`Scheduler::charge`] so the uplink still keeps to its rate.
//!
//! Guarantees: every queue is bounded (packets and bytes per lane); every
//! drop is counted and returns the item to the caller (for buffer reuse);
//! packets of one class and lane leave in FIFO order; nothing allocates per
//! packet once the queues have grown to their working size; the same calls
//! give the same results.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;
use super::codel::{Codel, CodelQueue};
use super::config::{Aqm, ClassId, Priority, QosConfig, QosConfigError, RateLimit};
use super::stats::{ClassStats, PeerStats, QosStats, RateMeter, Sojourn};

/// Bytes a class of weight 1 is offered per DRR round (one full packet).
pub const QUANTUM_BYTES: usize = 1500;
/// A rate-limited peer's lane holds at most this much time of traffic at
/// the peer's rate (and at most the class's limits) ...
pub const PEER_LANE_TIME: Duration = Duration::from_millis(250);
/// ... but never less than this many bytes.
pub const PEER_LANE_MIN_BYTES: usize = 64 * 1024;

/// A peer with a rate limit, as a scheduler knows it: look it up once with
/// [`Scheduler::peer_slot`] and pass it with every packet for that peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerSlot(u16);

impl PeerSlot {
    /// The peer's position in [`QosConfig::peer_rates`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Its lane was at its packet or byte limit (tail drop).
    QueueFull,
    /// CoDel dropped it at dequeue (a standing queue).
    Aqm,
    /// The class is not one of this scheduler's.
    UnknownClass,
    /// The peer slot is not one of this scheduler's.
    UnknownPeer,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::QueueFull => "queue full",
            DropReason::Aqm => "sojourn time above target (AQM)",
            DropReason::UnknownClass => "unknown class",
            DropReason::UnknownPeer => "unknown peer slot",
        })
    }
}

/// A refused packet, handed back so its buffer can be reused.
#[must_use]
pub struct Dropped<T> {
    /// Why.
    pub reason: DropReason,
    /// The packet.
    pub item: T,
}

impl<T> fmt::Debug for Dropped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dropped")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Dropped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packet dropped: {}", self.reason)
    }
}

impl<T> std::error::Error for Dropped<T> {}

/// The scheduler of one egress, holding opaque items of type `T` (the
/// caller's packets) with their length in bytes.
///
/// Each class has one lane for traffic to peers without a rate limit and
/// one lane per rate-limited peer, so a peer held back by its limit never
/// blocks others. Within a class, eligible lanes take turns packet by
/// packet (round robin); without peer limits a class is one FIFO. (Turns
/// rather than oldest-head-first: a limited peer's lane is short, so its
/// head is young, and it would lose every comparison with a long shared
/// lane.)
#[derive(Debug)]
pub struct Scheduler<T> {
    uplink_bps: Option<u64>,
    uplink: Option<TokenBucket>,
    burst: Duration,
    classes: Vec<ClassQueue<T>>,
    /// Realtime classes, in priority order.
    realtime: Vec<usize>,
    /// Normal classes with packets, in DRR order (capacity: all classes).
    round: VecDeque<usize>,
    peers: Vec<PeerState>,
    dropped_unknown: u64,
    meter: RateMeter,
}

#[derive(Debug)]
struct ClassQueue<T> {
    name: String,
    priority: Priority,
    weight: u32,
    quantum: i64,
    rate_limit: Option<RateLimit>,
    /// The configured byte limit per lane (see `shared_lane_bytes`).
    queue_bytes: usize,
    bucket: Option<TokenBucket>,
    aqm: Option<Aqm>,
    /// Lane 0: peers without a limit; lane i: peer slot i − 1.
    lanes: Vec<Lane<T>>,
    depth_packets: usize,
    depth_bytes: usize,
    deficit: i64,
    in_round: bool,
    /// Lane whose turn it is.
    next_lane: usize,
    counters: ClassCounters,
    sojourn: Sojourn,
    meter: RateMeter,
}

#[derive(Debug, Default)]
struct ClassCounters {
    enqueued_packets: u64,
    enqueued_bytes: u64,
    sent_packets: u64,
    sent_bytes: u64,
    dropped_full_packets: u64,
    dropped_full_bytes: u64,
    dropped_aqm_packets: u64,
    dropped_aqm_bytes: u64,
}

/// A packet taken out of a scheduler by [`Scheduler::take_queued`].
#[derive(Debug)]
pub struct Requeued<T> {
    /// The name of the class it was queued in.
    pub class: String,
    /// The rate-limited peer whose lane held it (`None`: the shared lane).
    pub peer: Option<String>,
    /// The packet.
    pub item: T,
    /// Its length on the wire, as given to `enqueue`.
    pub len: usize,
}

#[derive(Debug)]
struct Lane<T> {
    queue: LaneQueue<T>,
    codel: Codel,
    limit_packets: usize,
    limit_bytes: usize,
}

#[derive(Debug)]
struct LaneQueue<T> {
    entries: VecDeque<Entry<T>>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    len: usize,
    enqueued: Instant,
}

#[derive(Debug)]
struct PeerState {
    name: String,
    rate_bps: u64,
    bucket: TokenBucket,
    sent_packets: u64,
    sent_bytes: u64,
    dropped_packets: u64,
    dropped_bytes: u64,
    depth_packets: usize,
    depth_bytes: usize,
    meter: RateMeter,
}

enum Pull<T> {
    Sent(Entry<T>, usize),
    Blocked,
    Empty,
}

impl<T> Scheduler<T> {
    /// A scheduler for one egress shaped to `config.uplink_bps`, with
    /// `config`'s classes and peer limits. Buckets start full.
    pub fn new(now: Instant, config: &QosConfig) -> Result<Self, QosConfigError> {
        config.validate()?;
        let burst = config.burst;
        let peers: Vec<PeerState> = config
            .peer_rates
            .iter()
            .map(|(name, bps)| PeerState {
                name: name.clone(),
                rate_bps: *bps,
                bucket: TokenBucket::new(now, *bps, burst),
                sent_packets: 0,
                sent_bytes: 0,
                dropped_packets: 0,
                dropped_bytes: 0,
                depth_packets: 0,
                depth_bytes: 0,
                meter: RateMeter::default(),
            })
            .collect();
        let classes: Vec<ClassQueue<T>> = config
            .classes
            .iter()
            .map(|c| {
                let lane = |limit_bytes| Lane {
                    queue: LaneQueue {
                        entries: VecDeque::new(),
                        bytes: 0,
                    },
                    codel: Codel::default(),
                    limit_packets: c.queue_packets,
                    limit_bytes,
                };
                let rate = c
                    .rate_limit
                    .and_then(|limit| limit.resolve(config.uplink_bps))
                    .or(config.uplink_bps);
                let lanes = std::iter::once(lane(shared_lane_bytes(c.queue_bytes, rate)))
                    .chain(
                        peers
                            .iter()
                            .map(|p| lane(peer_lane_bytes(c.queue_bytes, p.rate_bps))),
                    )
                    .collect();
                ClassQueue {
                    name: c.name.clone(),
                    priority: c.priority,
                    weight: c.weight,
                    quantum: i64::from(c.weight) * QUANTUM_BYTES as i64,
                    rate_limit: c.rate_limit,
                    queue_bytes: c.queue_bytes,
                    bucket: c
                        .rate_limit
                        .and_then(|limit| limit.resolve(config.uplink_bps))
                        .map(|bps| TokenBucket::new(now, bps, burst)),
                    aqm: c.aqm,
                    lanes,
                    depth_packets: 0,
                    depth_bytes: 0,
                    deficit: 0,
                    in_round: false,
                    next_lane: 0,
                    counters: ClassCounters::default(),
                    sojourn: Sojourn::default(),
                    meter: RateMeter::default(),
                }
            })
            .collect();
        let realtime = classes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.priority == Priority::Realtime)
            .map(|(i, _)| i)
            .collect();
        Ok(Self {
            uplink_bps: config.uplink_bps,
            uplink: config
                .uplink_bps
                .map(|bps| TokenBucket::new(now, bps, burst)),
            burst,
            round: VecDeque::with_capacity(classes.len()),
            classes,
            realtime,
            peers,
            dropped_unknown: 0,
            meter: RateMeter::default(),
        })
    }

    /// The slot of the rate-limited peer called `name`; `None` when the
    /// peer has no limit (pass `None` with its packets then).
    pub fn peer_slot(&self, name: &str) -> Option<PeerSlot> {
        let index = self.peers.iter().position(|p| p.name == name)?;
        u16::try_from(index).ok().map(PeerSlot)
    }

    /// Queues `item`, of `len` bytes on the wire (count the underlay
    /// headers too, so shaping matches the real uplink), in `class`, for
    /// `peer` (`None`: a peer without a rate limit). Refused items come
    /// back in the error, counted.
    pub fn enqueue(
        &mut self,
        now: Instant,
        class: ClassId,
        peer: Option<PeerSlot>,
        item: T,
        len: usize,
    ) -> Result<(), Dropped<T>> {
        let lane_index = match peer {
            None => 0,
            Some(slot) if slot.index() < self.peers.len() => slot.index() + 1,
            Some(_) => {
                self.dropped_unknown += 1;
                return Err(Dropped {
                    reason: DropReason::UnknownPeer,
                    item,
                });
            }
        };
        let Some(queue) = self.classes.get_mut(class.index()) else {
            self.dropped_unknown += 1;
            return Err(Dropped {
                reason: DropReason::UnknownClass,
                item,
            });
        };
        let Some(lane) = queue.lanes.get_mut(lane_index) else {
            self.dropped_unknown += 1;
            return Err(Dropped {
                reason: DropReason::UnknownPeer,
                item,
            });
        };
        let peer = lane_index
            .checked_sub(1)
            .and_then(|i| self.peers.get_mut(i));
        if lane.queue.entries.len() >= lane.limit_packets
            || lane.queue.bytes.saturating_add(len) > lane.limit_bytes
        {
            queue.counters.dropped_full_packets += 1;
            queue.counters.dropped_full_bytes += len as u64;
            if let Some(peer) = peer {
                peer.dropped_packets += 1;
                peer.dropped_bytes += len as u64;
            }
            return Err(Dropped {
                reason: DropReason::QueueFull,
                item,
            });
        }
        lane.queue.entries.push_back(Entry {
            item,
            len,
            enqueued: now,
        });
        lane.queue.bytes += len;
        queue.depth_packets += 1;
        queue.depth_bytes += len;
        queue.counters.enqueued_packets += 1;
        queue.counters.enqueued_bytes += len as u64;
        if let Some(peer) = peer {
            peer.depth_packets += 1;
            peer.depth_bytes += len;
        }
        if queue.priority == Priority::Normal && !queue.in_round {
            queue.in_round = true;
            queue.deficit = queue.quantum;
            self.round.push_back(class.index());
        }
        Ok(())
    }

    /// Empties every queue, in class order and, within a class, lane by
    /// lane in arrival order: each item with its class's name, its
    /// rate-limited peer's name (`None` for the shared lane) and its
    /// length. Counters stay; the depths go to zero. Used to carry queued
    /// packets into a scheduler built from new settings.
    pub fn take_queued(&mut self) -> Vec<Requeued<T>> {
        let mut taken = Vec::new();
        for class in &mut self.classes {
            for (lane_index, lane) in class.lanes.iter_mut().enumerate() {
                let peer = lane_index
                    .checked_sub(1)
                    .and_then(|i| self.peers.get_mut(i));
                let peer_name = peer.as_ref().map(|p| p.name.clone());
                if let Some(peer) = peer {
                    peer.depth_packets = 0;
                    peer.depth_bytes = 0;
                }
                lane.queue.bytes = 0;
                for entry in lane.queue.entries.drain(..) {
                    taken.push(Requeued {
                        class: class.name.clone(),
                        peer: peer_name.clone(),
                        item: entry.item,
                        len: entry.len,
                    });
                }
            }
            class.depth_packets = 0;
            class.depth_bytes = 0;
            class.in_round = false;
            class.deficit = 0;
        }
        self.round.clear();
        taken
    }

    /// The packet to send now, if the shapers allow one; packets the AQM
    /// drops on the way are discarded. See [`Scheduler::dequeue_with`].
    #[must_use]
    pub fn dequeue(&mut self, now: Instant) -> Option<T> {
        self.dequeue_with(now, drop)
    }

    /// The packet to send now: the first realtime class (in configuration
    /// order) that is under its cap and has an eligible packet, else the
    /// next normal class in deficit round robin; `None` when the uplink
    /// bucket is in debt or nothing eligible is queued. Packets CoDel drops
    /// on the way go to `on_drop` (for buffer reuse).
    #[must_use]
    pub fn dequeue_with(&mut self, now: Instant, mut on_drop: impl FnMut(T)) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        if let Some(uplink) = &mut self.uplink
            && !uplink.is_ready(now)
        {
            return None;
        }
        for k in 0..self.realtime.len() {
            let c = self.realtime[k];
            if let Pull::Sent(entry, lane) =
                pull(&mut self.classes[c], &mut self.peers, now, &mut on_drop)
            {
                return Some(self.complete(now, c, lane, entry));
            }
        }
        // Deficit round robin (Shreedhar and Varghese, 1995), with the
        // deficit checked before the dequeue as Linux fq_codel does, so
        // CoDel's drops happen before the length is known. `blocked`
        // counts consecutive classes that could not send at all (cap or
        // peer limits); once every class in the round is blocked, stop.
        let mut blocked = 0;
        while blocked < self.round.len() {
            let Some(&c) = self.round.front() else {
                break;
            };
            let class = &mut self.classes[c];
            if class.deficit <= 0 {
                class.deficit = class.deficit.saturating_add(class.quantum);
                self.round.rotate_left(1);
                blocked = 0;
                continue;
            }
            match pull(class, &mut self.peers, now, &mut on_drop) {
                Pull::Sent(entry, lane) => {
                    let len = i64::try_from(entry.len).unwrap_or(i64::MAX);
                    class.deficit = class.deficit.saturating_sub(len);
                    if class.depth_packets == 0 {
                        class.in_round = false;
                        self.round.pop_front();
                    }
                    return Some(self.complete(now, c, lane, entry));
                }
                Pull::Blocked => {
                    self.round.rotate_left(1);
                    blocked += 1;
                }
                Pull::Empty => {
                    class.in_round = false;
                    self.round.pop_front();
                }
            }
        }
        None
    }

    /// Accounts for `len` bytes sent outside the scheduler (control
    /// traffic, which must not wait behind data) against the uplink bucket,
    /// and against `peer`'s bucket if it has a limit, so the egress as a
    /// whole still keeps to its rate: data waits a little longer instead.
    pub fn charge(&mut self, now: Instant, peer: Option<PeerSlot>, len: usize) {
        if let Some(uplink) = &mut self.uplink {
            uplink.consume(now, len);
        }
        if let Some(peer) = peer.and_then(|slot| self.peers.get_mut(slot.index())) {
            peer.bucket.consume(now, len);
        }
        self.meter.record(now, len);
    }

    /// When [`Scheduler::dequeue`] may next return a packet: `now` if it
    /// may now, a later time when shapers hold everything queued, `None`
    /// when nothing is queued. (CoDel may still drop what is queued by
    /// then; the driver then simply finds nothing.)
    pub fn next_send_time(&self, now: Instant) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        for class in self.classes.iter().filter(|c| c.depth_packets > 0) {
            let lanes_ready = class
                .lanes
                .iter()
                .enumerate()
                .filter(|(_, lane)| !lane.queue.entries.is_empty())
                .map(
                    |(i, _)| match i.checked_sub(1).and_then(|p| self.peers.get(p)) {
                        Some(peer) => peer.bucket.ready_at(now),
                        None => now,
                    },
                )
                .min();
            let Some(lanes_ready) = lanes_ready else {
                continue;
            };
            let class_ready = class
                .bucket
                .as_ref()
                .map_or(now, |b| b.ready_at(now))
                .max(lanes_ready);
            earliest = Some(earliest.map_or(class_ready, |e| e.min(class_ready)));
        }
        let earliest = earliest?;
        Some(
            self.uplink
                .as_ref()
                .map_or(earliest, |u| u.ready_at(now).max(earliest)),
        )
    }

    /// Packets queued in all classes.
    pub fn len(&self) -> usize {
        self.classes.iter().map(|c| c.depth_packets).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.classes.iter().all(|c| c.depth_packets == 0)
    }

    /// Bytes queued in all classes.
    pub fn queued_bytes(&self) -> usize {
        self.classes.iter().map(|c| c.depth_bytes).sum()
    }

    /// The egress rate in force.
    pub fn uplink_bps(&self) -> Option<u64> {
        self.uplink_bps
    }

    /// Changes the egress rate from `now` on (and with it the caps given as
    /// uplink shares), keeping what is queued.
    pub fn set_uplink_bps(&mut self, now: Instant, uplink_bps: Option<u64>) {
        self.uplink_bps = uplink_bps;
        self.uplink = match (self.uplink.take(), uplink_bps) {
            (_, None) => None,
            (Some(mut bucket), Some(bps)) => {
                bucket.set_rate(now, bps, self.burst);
                Some(bucket)
            }
            (None, Some(bps)) => Some(TokenBucket::new(now, bps, self.burst)),
        };
        for class in &mut self.classes {
            let rate = class
                .rate_limit
                .and_then(|l| l.resolve(uplink_bps))
                .or(uplink_bps);
            if let Some(shared) = class.lanes.first_mut() {
                shared.limit_bytes = shared_lane_bytes(class.queue_bytes, rate);
            }
            let Some(RateLimit::UplinkPercent(_)) = class.rate_limit else {
                continue;
            };
            let rate = class.rate_limit.and_then(|l| l.resolve(uplink_bps));
            class.bucket = match (class.bucket.take(), rate) {
                (_, None) => None,
                (Some(mut bucket), Some(bps)) => {
                    bucket.set_rate(now, bps, self.burst);
                    Some(bucket)
                }
                (None, Some(bps)) => Some(TokenBucket::new(now, bps, self.burst)),
            };
        }
    }

    /// A snapshot of every class and rate-limited peer.
    pub fn stats(&self, now: Instant) -> QosStats {
        QosStats {
            uplink_bps: self.uplink_bps,
            rate_bps: self.meter.rate_bps(now),
            depth_packets: self.len() as u64,
            depth_bytes: self.queued_bytes() as u64,
            dropped_unknown: self.dropped_unknown,
            classes: self
                .classes
                .iter()
                .map(|c| ClassStats {
                    name: c.name.clone(),
                    priority: c.priority,
                    weight: c.weight,
                    rate_limit_bps: c.bucket.as_ref().map(TokenBucket::rate_bps),
                    enqueued_packets: c.counters.enqueued_packets,
                    enqueued_bytes: c.counters.enqueued_bytes,
                    sent_packets: c.counters.sent_packets,
                    sent_bytes: c.counters.sent_bytes,
                    dropped_full_packets: c.counters.dropped_full_packets,
                    dropped_full_bytes: c.counters.dropped_full_bytes,
                    dropped_aqm_packets: c.counters.dropped_aqm_packets,
                    dropped_aqm_bytes: c.counters.dropped_aqm_bytes,
                    depth_packets: c.depth_packets as u64,
                    depth_bytes: c.depth_bytes as u64,
                    sojourn_last: c.sojourn.last,
                    sojourn_avg: c.sojourn.avg(),
                    rate_bps: c.meter.rate_bps(now),
                    aqm_dropping: c.lanes.iter().any(|l| l.codel.is_dropping()),
                })
                .collect(),
            peers: self
                .peers
                .iter()
                .map(|p| PeerStats {
                    name: p.name.clone(),
                    rate_limit_bps: p.rate_bps,
                    sent_packets: p.sent_packets,
                    sent_bytes: p.sent_bytes,
                    dropped_packets: p.dropped_packets,
                    dropped_bytes: p.dropped_bytes,
                    depth_packets: p.depth_packets as u64,
                    depth_bytes: p.depth_bytes as u64,
                    rate_bps: p.meter.rate_bps(now),
                })
                .collect(),
        }
    }

    /// Books a packet that leaves: counters, estimators and every bucket
    /// it passes (class, peer, uplink).
    fn complete(&mut self, now: Instant, class: usize, lane: usize, entry: Entry<T>) -> T {
        let len = entry.len;
        if let Some(queue) = self.classes.get_mut(class) {
            queue.depth_packets -= 1;
            queue.depth_bytes -= len;
            queue.counters.sent_packets += 1;
            queue.counters.sent_bytes += len as u64;
            queue
                .sojourn
                .record(now.saturating_duration_since(entry.enqueued));
            queue.meter.record(now, len);
            if let Some(bucket) = &mut queue.bucket {
                bucket.consume(now, len);
            }
        }
        if let Some(peer) = lane.checked_sub(1).and_then(|i| self.peers.get_mut(i)) {
            peer.depth_packets -= 1;
            peer.depth_bytes -= len;
            peer.sent_packets += 1;
            peer.sent_bytes += len as u64;
            peer.meter.record(now, len);
            peer.bucket.consume(now, len);
        }
        if let Some(uplink) = &mut self.uplink {
            uplink.consume(now, len);
        }
        self.meter.record(now, len);
        entry.item
    }
}

/// The next packet of `class` that may leave now: from the next eligible
/// lane in turn (not held by its peer's bucket), through CoDel. `Blocked`
/// when packets are queued but none may leave.
fn pull<T>(
    class: &mut ClassQueue<T>,
    peers: &mut [PeerState],
    now: Instant,
    on_drop: &mut impl FnMut(T),
) -> Pull<T> {
    if class.depth_packets == 0 {
        return Pull::Empty;
    }
    if let Some(bucket) = &mut class.bucket
        && !bucket.is_ready(now)
    {
        return Pull::Blocked;
    }
    let lanes = class.lanes.len();
    loop {
        let mut chosen = None;
        let mut queued = false;
        for k in 0..lanes {
            let i = (class.next_lane + k) % lanes;
            if class.lanes[i].queue.entries.is_empty() {
                continue;
            }
            queued = true;
            let held = i
                .checked_sub(1)
                .and_then(|p| peers.get_mut(p))
                .is_some_and(|peer| !peer.bucket.is_ready(now));
            if !held {
                chosen = Some(i);
                break;
            }
        }
        let Some(i) = chosen else {
            return if queued { Pull::Blocked } else { Pull::Empty };
        };
        let lane = &mut class.lanes[i];
        let (mut dropped_packets, mut dropped_bytes) = (0usize, 0usize);
        let entry = match &class.aqm {
            Some(aqm) => lane
                .codel
                .dequeue(now, aqm, &mut lane.queue, |e: Entry<T>| {
                    dropped_packets += 1;
                    dropped_bytes += e.len;
                    on_drop(e.item);
                }),
            None => lane.queue.pop().map(|(entry, _)| entry),
        };
        if dropped_packets > 0 {
            class.depth_packets -= dropped_packets;
            class.depth_bytes -= dropped_bytes;
            class.counters.dropped_aqm_packets += dropped_packets as u64;
            class.counters.dropped_aqm_bytes += dropped_bytes as u64;
            if let Some(peer) = i.checked_sub(1).and_then(|p| peers.get_mut(p)) {
                peer.depth_packets -= dropped_packets;
                peer.depth_bytes -= dropped_bytes;
                peer.dropped_packets += dropped_packets as u64;
                peer.dropped_bytes += dropped_bytes as u64;
            }
        }
        match entry {
            Some(entry) => {
                class.next_lane = (i + 1) % lanes;
                return Pull::Sent(entry, i);
            }
            // CoDel emptied the lane: look again.
            None => continue,
        }
    }
}

impl<T> CodelQueue for LaneQueue<T> {
    type Item = Entry<T>;

    fn pop(&mut self) -> Option<(Entry<T>, Instant)> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.len;
        let enqueued = entry.enqueued;
        Some((entry, enqueued))
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Byte limit of a rate-limited peer's lane: [`PEER_LANE_TIME`] at its
/// rate, at least [`PEER_LANE_MIN_BYTES`], at most the class's limit.
/// The byte limit of a class's shared lane: the configured limit, but at
/// most [`PEER_LANE_TIME`] at the rate the lane drains at (the class's cap,
/// else the uplink), and no less than [`PEER_LANE_MIN_BYTES`]; without any
/// rate, the configured limit. CoDel keeps TCP's queue short; this bounds
/// the delay an unresponsive flood can build (2 MiB at a 5 Mbit/s cap
/// would be 3.4 s).
fn shared_lane_bytes(class_bytes: usize, rate_bps: Option<u64>) -> usize {
    match rate_bps {
        Some(bps) => peer_lane_bytes(class_bytes, bps),
        None => class_bytes,
    }
}

fn peer_lane_bytes(class_bytes: usize, rate_bps: u64) -> usize {
    let time_worth = u128::from(rate_bps) * PEER_LANE_TIME.as_millis() / 8 / 1000;
    usize::try_from(time_worth)
        .unwrap_or(usize::MAX)
        .max(PEER_LANE_MIN_BYTES)
        .min(class_bytes)
}
