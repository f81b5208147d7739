//! The node's routing: probes, link-state records, route computation, and
//! forwarding along paths and for others.
//!
//! - Probes: each neighbour with a session and a known endpoint has a
//!   [`LinkMonitor`]; its probes go straight to the endpoint.
//! - Link state: the node signs a record of its links that are up (RTT and
//!   loss each) and floods it to its neighbours when a link goes up or down,
//!   when a link's metrics move noticeably (at most every
//!   [`DRIFT_INTERVAL`], and after a burst of such records one per
//!   [`DRIFT_REFILL`]), and every `lsa_refresh`; neighbours pass what is
//!   new to them on, within the record's scope: [`RECORD_RADIUS`] links from
//!   its origin, which is every record a path of at most three links needs
//!   (a multicast member's record goes everywhere, [`UNLIMITED_HOPS`]). A
//!   new neighbour gets the records it would have been passed. Both are
//!   braked (`route::brake`): a node signs at most 4 records a second after
//!   a burst of 8, and passes on at most one record per origin every
//!   250 ms, the newest of those that came meanwhile.
//! - Routes: recomputed when links or records change, and, checked every
//!   [`RECOMPUTE_INTERVAL`], when an own link's measurements drifted or a
//!   route kept by its hold-down may change; see `route` for metrics and
//!   hysteresis.
//! - Forwarding: a packet for a peer goes along its pinned path if the pin's
//!   first hop is usable, else along its computed route, else straight to
//!   its endpoint unless that link is known to be down.

use std::time::{Duration, Instant};

use tracing::{debug, trace};

use super::certificates::RecordKind;
use super::peers::PeerId;
use super::{Event, Node, Peer, Source, Transition, Via, prefix, push_event};
use crate::identity::NodeId;
use crate::node::LinkHealth;
use crate::route::{
    Hop, LinkQuality, LsaError, MAX_INTERMEDIATES, Metric, RouteError, RouteStatus, compute_paths,
    verify_lsa,
};
use crate::timer::TimerKind;
use crate::wire::{Frame, HOP_LEN, LinkEntry, LinkStateRecord};

/// Shortest time between a record and the next one sent because metrics
/// drifted.
pub(super) const DRIFT_INTERVAL: Duration = Duration::from_millis(500);
/// Records a node may sign for drift alone in a burst ...
pub(super) const DRIFT_BURST: u32 = 4;
/// ... and then one per this. A node whose measurements keep moving (its
/// CPU or uplink starved, so probes come back late or not at all) would
/// otherwise sign two records a second for as long as that lasts, and
/// each of them costs every node within two links a datagram or more: on
/// 128 daemons sharing two cores that was most of the load, and the load
/// was what kept the measurements moving. The burst leaves the drift of
/// ordinary events (a link cut elsewhere moving traffic onto this node's
/// links) undelayed. Links going up or down are not braked here: they
/// still go out within [`CHANGE_INTERVAL`].
pub(super) const DRIFT_REFILL: Duration = Duration::from_secs(15);
/// Shortest time between two records sent because a link went up or down.
pub(super) const CHANGE_INTERVAL: Duration = Duration::from_millis(20);
/// How often the routes are checked for changes that no event announces
/// (measurement drift, hold-downs ending).
const RECOMPUTE_INTERVAL: Duration = Duration::from_millis(500);
/// An own link's RTT counts as changed for routing when it moved by more
/// than this fraction (1/20) of the RTT the routes were computed with ...
const OWN_LINK_RTT_SLACK: u32 = 20;
/// ... and by more than this many microseconds.
const OWN_LINK_RTT_FLOOR_US: u32 = 100;
/// An own link's loss rate counts as changed when it moved by more than
/// this (a fifth of a percentage point).
const OWN_LINK_LOSS_SLACK: f32 = 0.002;
/// Routes are recomputed at most this often for changes learnt from
/// link-state records.
const BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// How many links a record travels from its origin: to its neighbours and
/// theirs. A path has at most three links, S→R₁→R₂→D: S knows S–R₁ itself,
/// R₁–R₂ from R₁'s record (one link away) and R₂–D from R₂'s (two links
/// away), so no node needs a record from further (PROTOCOL.md §13.3).
pub(crate) const RECORD_RADIUS: u8 = 2;
/// A hop budget that does not run out: the records of multicast members,
/// from which every node builds the same trees (PROTOCOL.md §15.4).
pub(crate) const UNLIMITED_HOPS: u8 = u8::MAX;

/// The budget a record received with `hops_left` is passed on with, if it
/// is passed on at all.
fn passed_on(hops_left: u8) -> Option<u8> {
    match hops_left {
        0 => None,
        UNLIMITED_HOPS => Some(UNLIMITED_HOPS),
        h => Some(h - 1),
    }
}

/// What a path decision comes to.
enum Path {
    /// Straight to the peer's endpoint.
    Direct,
    /// Through these nodes, ending with the peer.
    Relayed(Hops),
    /// No way to the peer now.
    None,
}

/// A relayed path, held inline: deciding a path is done per packet and
/// must not allocate.
#[derive(Clone, Copy)]
struct Hops {
    nodes: [NodeId; MAX_INTERMEDIATES + 1],
    len: usize,
}

impl Hops {
    /// `None` for a path longer than a relay frame can carry.
    fn new(path: &[NodeId]) -> Option<Self> {
        let mut nodes = [NodeId::from_bytes([0; 32]); MAX_INTERMEDIATES + 1];
        nodes.get_mut(..path.len())?.copy_from_slice(path);
        Some(Self {
            nodes,
            len: path.len(),
        })
    }

    fn as_slice(&self) -> &[NodeId] {
        &self.nodes[..self.len]
    }
}

/// The decision for a stored path: direct for one hop, relayed otherwise.
fn path_of(path: &[NodeId]) -> Path {
    match path.len() {
        0 => Path::None,
        1 => Path::Direct,
        _ => Hops::new(path).map_or(Path::None, Path::Relayed),
    }
}

impl Node {
    /// Pins the path to `destination` (a certificate name or hex node id)
    /// through `via`, in order, for every metric. The pin holds while its
    /// first hop is usable; otherwise the computed route applies.
    pub fn pin_route(
        &mut self,
        now: Instant,
        destination: &str,
        via: &[&str],
    ) -> Result<(), RouteError> {
        let target = self.resolve(destination)?;
        if via.len() > MAX_INTERMEDIATES {
            return Err(RouteError::TooLong);
        }
        let mut path = Vec::with_capacity(via.len() + 1);
        for name in via {
            let id = self.resolve(name)?;
            if id == self.node_id() || id == target || path.contains(&id) {
                return Err(RouteError::InvalidPath(format!(
                    "'{name}' is this node, the destination, or already on the path"
                )));
            }
            path.push(id);
        }
        if target == self.node_id() {
            return Err(RouteError::InvalidPath(
                "the destination is this node".into(),
            ));
        }
        path.push(target);
        self.routing.table.pin(now, target, path);
        self.routing.dirty = true;
        self.after_input(now);
        Ok(())
    }

    /// Removes a pin; the computed route applies again.
    pub fn unpin_route(&mut self, now: Instant, destination: &str) -> Result<(), RouteError> {
        let target = self.resolve(destination)?;
        if !self.routing.table.unpin(&target) {
            return Err(RouteError::InvalidPath(format!(
                "no pin for '{destination}'"
            )));
        }
        self.routing.dirty = true;
        self.after_input(now);
        Ok(())
    }

    /// The route of every destination under every metric: the path packets
    /// take now (pinned, computed, or direct while nothing is known).
    pub fn routes(&self, now: Instant) -> Vec<RouteStatus> {
        let mut out = Vec::new();
        for (index, peer) in self.peers.entries() {
            let Some(id) = peer.node_id else {
                continue;
            };
            for metric in Metric::ALL {
                if let Some(status) = self.route_status(now, index, id, metric) {
                    out.push(status);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.metric.cmp(&b.metric)));
        out
    }

    /// The path packets to `destination` take now under `metric`, with the
    /// RTT and loss of each hop.
    pub fn trace(
        &self,
        now: Instant,
        destination: &str,
        metric: Metric,
    ) -> Result<RouteStatus, RouteError> {
        let target = self.resolve(destination)?;
        let index = *self
            .by_id
            .get(&target)
            .ok_or_else(|| RouteError::UnknownNode(destination.into()))?;
        self.route_status(now, index, target, metric)
            .ok_or_else(|| RouteError::Unreachable(destination.into()))
    }

    fn route_status(
        &self,
        now: Instant,
        index: PeerId,
        id: NodeId,
        metric: Metric,
    ) -> Option<RouteStatus> {
        let path = match self.path_to(now, index, metric, 0) {
            Path::Direct => vec![id],
            Path::Relayed(hops) => hops.as_slice().to_vec(),
            Path::None => return None,
        };
        let pinned = self
            .routing
            .table
            .pinned(&id)
            .is_some_and(|(pin, _)| pin == path.as_slice());
        let route = self
            .routing
            .table
            .get(&id, metric)
            .filter(|r| r.path == path);
        let age = match (pinned, route) {
            (true, _) => self
                .routing
                .table
                .pinned(&id)
                .map(|(_, at)| now.saturating_duration_since(at)),
            (false, Some(route)) => Some(now.saturating_duration_since(route.since)),
            (false, None) => None,
        };
        let graph = &self.routing.graph;
        let cost = graph.path_cost(metric, &self.node_id(), &path).unwrap_or(0);
        let mut from = self.node_id();
        let hops = path
            .iter()
            .map(|node| {
                let quality = self.link_quality(&from, node);
                from = *node;
                Hop {
                    node: *node,
                    name: self.name_of(node),
                    rtt: quality.map(|q| Duration::from_micros(u64::from(q.rtt_us))),
                    loss: quality.map_or(0.0, |q| q.loss),
                }
            })
            .collect();
        Some(RouteStatus {
            destination: id,
            name: self.name_of(&id),
            metric,
            path: hops,
            alternates: route.map_or(0, |r| r.alternates.len()),
            alternate_paths: route.map_or_else(Vec::new, |r| {
                r.alternates
                    .iter()
                    .map(|p| p.iter().map(|id| self.name_of(id)).collect())
                    .collect()
            }),
            cost,
            age: age.unwrap_or_default(),
            pinned,
            fallback: age.is_none(),
        })
    }

    /// The quality of the link `from → to`: this node's own measurement for
    /// its links, the graph's (from link state) for others.
    fn link_quality(&self, from: &NodeId, to: &NodeId) -> Option<LinkQuality> {
        if *from == self.node_id() {
            let peer = &self.peers[*self.by_id.get(to)?];
            let rtt = peer.monitor.rtt()?;
            return Some(LinkQuality {
                rtt_us: rtt_us(rtt),
                loss: peer.monitor.loss(),
            });
        }
        self.routing.graph.edge(from, to)
    }

    /// Names of the intermediates latency traffic to `peer` goes through.
    pub(super) fn via_names(&self, now: Instant, peer: &Peer) -> Vec<String> {
        let Some(index) = peer.node_id.and_then(|id| self.by_id.get(&id).copied()) else {
            return Vec::new();
        };
        match self.path_to(now, index, Metric::Latency, 0) {
            Path::Relayed(hops) => hops.as_slice()[..hops.len - 1]
                .iter()
                .map(|id| self.name_of(id))
                .collect(),
            Path::Direct | Path::None => Vec::new(),
        }
    }

    /// Whether a handshake to `peer` could be sent now.
    pub(super) fn reachable(&self, now: Instant, peer: PeerId) -> bool {
        !matches!(self.path_to(now, peer, Metric::Latency, 0), Path::None)
    }

    /// The path a packet to `peer` of `metric` and `flow` takes now.
    fn path_to(&self, now: Instant, peer: PeerId, metric: Metric, flow: u64) -> Path {
        let p = &self.peers[peer];
        // Straight to the endpoint is the last resort even over a link that
        // looks down: it may be lossy rather than cut, and with no other way
        // a lost packet costs nothing more than one not sent.
        let fallback = if p.endpoint.is_some() {
            Path::Direct
        } else {
            Path::None
        };
        let Some(id) = p.node_id else {
            return fallback;
        };
        if let Some((pin, _)) = self.routing.table.pinned(&id)
            && self.first_hop_usable(now, &pin[0], id)
        {
            return path_of(pin);
        }
        if let Some(path) = self.routing.table.select(&id, metric, flow)
            && self.first_hop_usable(now, &path[0], id)
        {
            return path_of(path);
        }
        fallback
    }

    /// Whether packets can go to `hop` now (for `destination`'s path).
    fn first_hop_usable(&self, now: Instant, hop: &NodeId, destination: NodeId) -> bool {
        let Some(&index) = self.by_id.get(hop) else {
            return false;
        };
        let p = &self.peers[index];
        let link_ok = p.endpoint.is_some() && p.monitor.health() != LinkHealth::Down;
        // The destination itself needs no session for the first packet of
        // a handshake; a relay does.
        link_ok && (*hop == destination || self.usable_current(now, index))
    }

    /// Sends a whole packet for `peer` (`buf`: its sealed bytes) `via`.
    pub(super) fn emit(&mut self, now: Instant, peer: PeerId, buf: Vec<u8>, via: Via) {
        let path = match via {
            Via::Direct => Path::Direct,
            Via::Route(metric, flow) => self.path_to(now, peer, metric, flow),
            Via::Control => self.path_to(now, peer, Metric::Latency, 0),
        };
        match path {
            Path::Direct => {
                let Some(endpoint) = self.peers[peer].endpoint else {
                    self.stats.tx_no_path += 1;
                    return self.return_buffer(buf);
                };
                if let Via::Route(..) = via {
                    let config = &self.routing.config;
                    self.peers[peer].monitor.mark_active(now, config);
                }
                self.queue_transmit(now, endpoint, buf);
            }
            Path::Relayed(hops) => {
                // Traffic relayed although the direct link is up (it was
                // lossy or slow): the direct link is probed at the active
                // rate too, so its loss and RTT are fresh and traffic comes
                // back as soon as it is good. Probed at the idle rate, the
                // misses of a short outage stayed in its loss window for
                // half a minute, and traffic with them.
                let p = &self.peers[peer];
                if matches!(via, Via::Route(..))
                    && p.endpoint.is_some()
                    && p.monitor.health() == LinkHealth::Up
                {
                    let config = &self.routing.config;
                    self.peers[peer].monitor.mark_active(now, config);
                }
                self.wrap_and_send(now, hops.as_slice(), buf);
            }
            Path::None => {
                self.stats.tx_no_path += 1;
                trace!(peer = %self.peers[peer].name(), "no path: dropping");
                self.return_buffer(buf);
            }
        }
    }

    /// The path for a handshake response to `to`, whose init `relay`
    /// passed on: this node's relayed route to `to` if it has a usable
    /// one (a response cannot be sealed for `to` itself: there is no
    /// session yet, which is what the response makes); else
    /// through `relay`, straight on if `relay`'s record lists `to`, or
    /// through the neighbour of `relay` whose record lists it. The init
    /// may have come over two relays, and the last one alone may have no
    /// session with the initiator (a response sent to it was dropped
    /// there, and the initiator waited for its retry).
    pub(super) fn path_back(&self, now: Instant, relay: PeerId, to: NodeId) -> Option<Vec<NodeId>> {
        if let Some(route) = self.routing.table.get(&to, Metric::Latency)
            && let [first, _, ..] = route.path.as_slice()
            && self.first_hop_usable(now, first, to)
        {
            return Some(route.path.clone());
        }
        let relay = self.peers.get(relay)?.node_id?;
        let lists = |origin: &NodeId| {
            self.routing
                .lsdb
                .get(origin)
                .is_some_and(|r| r.links.iter().any(|l| l.neighbour == prefix(&to)))
        };
        if !lists(&relay) {
            let via = self.routing.lsdb.get(&relay).and_then(|record| {
                record
                    .links
                    .iter()
                    .filter_map(|l| self.routing.by_prefix.get(&l.neighbour))
                    .find(|x| **x != to && lists(x))
            });
            if let Some(via) = via {
                return Some(vec![relay, *via, to]);
            }
        }
        Some(vec![relay, to])
    }

    /// Wraps `inner` (a packet sealed for `path`'s last node) in a relay
    /// frame for `path[0]` that lists the rest of the path.
    pub(super) fn wrap_and_send(&mut self, now: Instant, path: &[NodeId], inner: Vec<u8>) {
        let Some(&first) = path.first().and_then(|id| self.by_id.get(id)) else {
            self.stats.tx_no_path += 1;
            return self.return_buffer(inner);
        };
        let mut hops = [0u8; 2 * HOP_LEN];
        let rest = &path[1..];
        if rest.len() > 2 {
            self.stats.tx_no_path += 1;
            return self.return_buffer(inner);
        }
        for (i, id) in rest.iter().enumerate() {
            hops[i * HOP_LEN..(i + 1) * HOP_LEN].copy_from_slice(&prefix(id));
        }
        let frame = Frame::Relay {
            hops: &hops[..rest.len() * HOP_LEN],
            inner: &inner,
        };
        let sealed = self.seal_frame(now, first, &frame);
        self.return_buffer(inner);
        let Some(sealed) = sealed else {
            self.stats.tx_no_path += 1;
            return;
        };
        let Some(endpoint) = self.peers[first].endpoint else {
            self.stats.tx_no_path += 1;
            return self.return_buffer(sealed);
        };
        let config = &self.routing.config;
        self.peers[first].monitor.mark_active(now, config);
        self.queue_transmit(now, endpoint, sealed);
    }

    /// A relay frame arrived from `from`: deliver its packet here, or pass
    /// it to the next hop.
    pub(super) fn forward(&mut self, now: Instant, from: PeerId, hops: &[u8], inner: Vec<u8>) {
        if hops.is_empty() {
            self.stats.rx_via_relay += 1;
            self.dispatch(now, Source::Relayed(from), &inner);
            return self.return_buffer(inner);
        }
        let mut next = [0u8; HOP_LEN];
        next.copy_from_slice(&hops[..HOP_LEN]);
        let next = self
            .routing
            .by_prefix
            .get(&next)
            .and_then(|id| self.by_id.get(id))
            .copied();
        let usable = next.filter(|&n| {
            let p = &self.peers[n];
            n != from
                && self.routing.config.relaying
                && p.endpoint.is_some()
                && p.monitor.health() != LinkHealth::Down
                && self.usable_current(now, n)
        });
        let Some(next) = usable else {
            self.stats.relay_no_route += 1;
            trace!("cannot relay: next hop unknown or unreachable");
            return self.return_buffer(inner);
        };
        let frame = Frame::Relay {
            hops: &hops[HOP_LEN..],
            inner: &inner,
        };
        let sealed = self.seal_frame(now, next, &frame);
        self.return_buffer(inner);
        let (Some(sealed), Some(endpoint)) = (sealed, self.peers[next].endpoint) else {
            self.stats.relay_no_route += 1;
            return;
        };
        self.stats.relayed += 1;
        let config = &self.routing.config;
        self.peers[next].monitor.mark_active(now, config);
        self.queue_transmit(now, endpoint, sealed);
    }

    /// Sends a probe to `peer` if one is due, and judges overdue ones.
    pub(super) fn probe(&mut self, now: Instant, peer: PeerId) {
        if self.peers[peer].endpoint.is_none() {
            return;
        }
        self.peers[peer].monitor.start(now);
        let config = &self.routing.config;
        let mark = self.peers[peer].monitor.outcome_mark();
        let (due, transition) = self.peers[peer].monitor.handle_timeout(now, config);
        self.on_link_transition(now, peer, transition);
        if self.peers[peer].monitor.outcome_mark() != mark {
            self.check_own_link(now, peer);
        }
        if due {
            let id = self.rng.next_u64();
            self.send_frame(now, peer, Frame::Ping { id }, Via::Direct);
            self.stats.probe_tx_bytes += super::PROBE_DATAGRAM_LEN;
            let config = &self.routing.config;
            self.peers[peer].monitor.probe_sent(now, id, config);
        }
    }

    /// Stops probing a peer without a session.
    pub(super) fn stop_probing(&mut self, now: Instant, peer: PeerId) {
        let transition = self.peers[peer].monitor.stop();
        self.on_link_transition(now, peer, transition);
    }

    /// Reacts to a link going up or down: event, record, routes.
    pub(super) fn on_link_transition(
        &mut self,
        now: Instant,
        peer: PeerId,
        transition: Option<Transition>,
    ) {
        let Some(transition) = transition else {
            return;
        };
        self.nat_link_changed(now, peer, transition == Transition::Up);
        let p = &self.peers[peer];
        if let Some(id) = p.node_id {
            let name = p.name();
            let event = match transition {
                Transition::Up => {
                    self.stats.links_up += 1;
                    debug!(peer = %name, "direct link up");
                    Event::LinkUp { peer: id, name }
                }
                Transition::Down => {
                    self.stats.links_down += 1;
                    debug!(peer = %name, "direct link down");
                    Event::LinkDown { peer: id, name }
                }
            };
            push_event(&mut self.events, &mut self.stats, event);
        }
        self.routing.dirty = true;
        self.routing.urgent = true;
        self.routing.lsa_for_change = true;
        self.schedule_lsa(now, CHANGE_INTERVAL);
    }

    /// Re-advertises soon if a link's metrics moved noticeably (RTT by a
    /// quarter and 1 ms, or loss by five points).
    pub(super) fn check_advertised(&mut self, now: Instant, peer: PeerId) {
        let p = &self.peers[peer];
        let (Some(id), Some(rtt)) = (p.node_id, p.monitor.path_rtt(now)) else {
            return;
        };
        let (rtt, loss) = (rtt_us(rtt), p.monitor.loss());
        let moved = match self.routing.advertised.get(&id) {
            // A link the last record had no room for is not news: until
            // the record changes for another reason, it stays out (else
            // every probe of it would sign a record, at the brake's rate).
            None => !self.routing.left_out.contains(&id),
            Some(&(old_rtt, old_loss)) => {
                let delta = rtt.abs_diff(old_rtt);
                (delta > old_rtt / 4 && delta > 1_000) || (loss - old_loss).abs() >= 0.05
            }
        };
        if moved {
            self.routing.lsa_for_drift = true;
            self.schedule_lsa(now, self.drift_spacing(now));
            self.routing.dirty = true;
        }
    }

    /// How long after the last record one for drift alone may follow:
    /// [`DRIFT_INTERVAL`], or until the next drift token while there is
    /// none (see [`DRIFT_BURST`]).
    fn drift_spacing(&self, now: Instant) -> Duration {
        let token_at = self.routing.drift.next_token(now);
        self.routing
            .last_lsa
            .map_or(Duration::ZERO, |last| {
                token_at.saturating_duration_since(last)
            })
            .max(DRIFT_INTERVAL)
    }

    pub(super) fn schedule_lsa(&mut self, now: Instant, spacing: Duration) {
        let earliest = self
            .routing
            .last_lsa
            .map_or(now, |last| (last + spacing).max(now));
        let due = self
            .routing
            .lsa_due
            .map_or(earliest, |due| due.min(earliest));
        self.routing.lsa_due = Some(due);
    }

    /// The deadlines of routing work, for `poll_timeout`.
    pub(super) fn routing_deadlines(&self) -> impl Iterator<Item = (Instant, TimerKind)> + '_ {
        let refresh = self
            .routing
            .last_lsa
            .map(|last| last + self.refresh_period());
        [
            self.routing.lsa_due.map(|at| (at, TimerKind::LinkState)),
            refresh.map(|at| (at, TimerKind::LinkState)),
            self.routing
                .lsdb
                .next_expiry()
                .map(|at| (at, TimerKind::LinkState)),
            self.routing
                .brake
                .next_release()
                .map(|at| (at, TimerKind::LinkState)),
            self.routing.recompute_at.map(|at| (at, TimerKind::Route)),
        ]
        .into_iter()
        .flatten()
    }

    pub(super) fn routing_timers(&mut self, now: Instant) {
        if self.routing.lsdb.expire(now) {
            self.routing.dirty = true;
            let lsdb = &self.routing.lsdb;
            self.routing.brake.retain(|id| lsdb.get(id).is_some());
        }
        for held in self.routing.brake.release(now) {
            self.flood(now, &held.record, held.hops_left, Some(held.from));
        }
        let refresh_due = self
            .routing
            .last_lsa
            .is_some_and(|last| now >= last + self.refresh_period());
        if refresh_due || self.routing.lsa_due.is_some_and(|due| due <= now) {
            if self.routing.brake.may_originate(now) {
                self.originate_lsa(now);
            } else {
                // Out of tokens (this node's links change faster than the
                // brake allows): the record waits for the next token and
                // then says everything at once.
                self.stats.lsa_originate_deferred += 1;
                self.routing.lsa_due = Some(self.routing.brake.next_origination(now));
            }
        }
        if self.routing.recompute_at.is_some_and(|at| at <= now) {
            if self.routing.dirty || self.routes_stale(now) {
                self.routing.dirty = true;
            } else {
                self.routing.recompute_at = Some(now + RECOMPUTE_INTERVAL);
            }
        }
    }

    /// Whether the routes need computing although no record or link
    /// transition said so: a route held by its hold-down may now change,
    /// or this node's own links (their measurements, sessions, settling)
    /// differ from the graph the routes were computed on. Measurements
    /// count as changed when they moved by more than [`OWN_LINK_RTT_SLACK`]
    /// or [`OWN_LINK_LOSS_SLACK`]; a route only moves for a path 20 %
    /// (and, for latency, 1 ms) cheaper, so smaller drifts changed nothing
    /// but costs, and computing every route of a large graph twice a
    /// second for them was most of an idle node's work.
    fn routes_stale(&self, now: Instant) -> bool {
        if self.routing.table.held_until().is_some_and(|at| at <= now) {
            return true;
        }
        // Measurements are checked as they come (`check_own_link`); what
        // time alone changes is whether a link may carry routes (a session
        // lapsing), so only that is looked at here, without reading RTTs.
        let own = self.node_id();
        let graph = &self.routing.graph;
        let mut usable = 0;
        for (index, p) in self.peers.entries() {
            let Some(id) = p.node_id else {
                continue;
            };
            let may_route = self.own_link_usable(now, index, p);
            usable += usize::from(may_route);
            if may_route != graph.edge(&own, &id).is_some() {
                return true;
            }
        }
        usable != graph.out_links(&own).count()
    }

    /// Whether `origin`'s record, as held now, says something the graph
    /// the routes were computed on does not: a link added or gone, or one
    /// whose RTT or loss moved by more than the slack of an own link
    /// ([`OWN_LINK_RTT_SLACK`], [`OWN_LINK_LOSS_SLACK`]). Refreshes of an
    /// unchanged neighbourhood, most records a node receives, move no
    /// route and are not worth computing every route again.
    fn record_moved(&self, origin: &NodeId) -> bool {
        let Some(record) = self.routing.lsdb.get(origin) else {
            return true;
        };
        let graph = &self.routing.graph;
        let mut resolved = 0;
        for link in &record.links {
            let Some(neighbour) = self.routing.by_prefix.get(&link.neighbour) else {
                continue;
            };
            if neighbour == origin {
                continue;
            }
            resolved += 1;
            let Some(old) = graph.edge(origin, neighbour) else {
                return true;
            };
            let now = LinkQuality {
                rtt_us: link.rtt_us,
                loss: f32::from(link.loss) / f32::from(u16::MAX),
            };
            if moved_beyond_slack(old, now) {
                return true;
            }
        }
        resolved != graph.out_links(origin).count()
    }

    /// Marks the routes for computing if `peer`'s link, as routes would
    /// use it, differs from the graph's (after a probe's outcome: the link
    /// settled, or its RTT or loss moved).
    pub(super) fn check_own_link(&mut self, now: Instant, peer: PeerId) {
        if self.own_link_moved(now, peer) {
            self.routing.dirty = true;
        }
    }

    /// Whether `peer`'s link as routes would use it now differs from the
    /// graph the routes were computed on: it is usable and the graph lacks
    /// it or has it more than a slack off, or the other way round.
    fn own_link_moved(&self, now: Instant, peer: PeerId) -> bool {
        let Some(p) = self.peers.get(peer) else {
            return false;
        };
        let own = self.node_id();
        let graph = &self.routing.graph;
        match self.own_link(now, peer, p) {
            Some((id, quality)) => graph
                .edge(&own, &id)
                .is_none_or(|old| moved_beyond_slack(old, quality)),
            None => p.node_id.is_some_and(|id| graph.edge(&own, &id).is_some()),
        }
    }

    /// This node's links that routes may use, with their quality.
    fn own_links(&self, now: Instant) -> impl Iterator<Item = (NodeId, LinkQuality)> + '_ {
        self.peers
            .entries()
            .filter_map(move |(index, p)| self.own_link(now, index, p))
    }

    /// `p`'s link if routes may use it (settled, with an endpoint and a
    /// usable session), with its quality. The RTT is the windowed minimum:
    /// a link's own traffic queues its probes and must not make a relay
    /// look faster (link::min_rtt).
    fn own_link(&self, now: Instant, index: PeerId, p: &Peer) -> Option<(NodeId, LinkQuality)> {
        if !self.own_link_usable(now, index, p) {
            return None;
        }
        let (Some(id), Some(rtt)) = (p.node_id, p.monitor.path_rtt(now)) else {
            return None;
        };
        let quality = LinkQuality {
            rtt_us: rtt_us(rtt),
            loss: p.monitor.loss(),
        };
        Some((id, quality))
    }

    /// Whether `p`'s link may carry routes (without reading its RTT: a
    /// settled link has one).
    fn own_link_usable(&self, now: Instant, index: PeerId, p: &Peer) -> bool {
        p.node_id.is_some()
            && p.monitor.settled()
            && p.endpoint.is_some()
            && self.usable_current(now, index)
    }

    /// Work every input ends with: the DHT's output, then routes, if
    /// anything they depend on changed.
    /// A change of this node's own links is acted on at once; changes
    /// learnt from records (which arrive in bursts while they flood) are
    /// batched to one recomputation per [`BATCH_INTERVAL`].
    pub(super) fn after_input(&mut self, now: Instant) {
        self.drain_dht(now);
        if !self.routing.dirty {
            return;
        }
        let batch_ends = self
            .routing
            .last_recompute
            .map(|last| last + BATCH_INTERVAL);
        if self.routing.urgent || batch_ends.is_none_or(|end| now >= end) {
            self.recompute_routes(now);
        } else if let Some(end) = batch_ends {
            let at = self.routing.recompute_at.map_or(end, |at| at.min(end));
            self.routing.recompute_at = Some(at);
        }
    }

    /// `lsa_refresh`, shortened by up to a tenth by an amount fixed per
    /// node (from its id): nodes that started together would otherwise
    /// refresh together for ever, and their records would cross the
    /// network in bursts.
    fn refresh_period(&self) -> Duration {
        let refresh = self.routing.config.lsa_refresh;
        let id = self.node_id();
        let share = f64::from(u16::from_le_bytes([id.as_bytes()[0], id.as_bytes()[1]]));
        // A fraction of at most 1 of a tenth: cannot overflow, whatever
        // the configured refresh.
        refresh - (refresh / 10).mul_f64(share / f64::from(u16::MAX))
    }

    /// Signs this node's record of its links and floods it.
    fn originate_lsa(&mut self, now: Instant) {
        let mut candidates: Vec<(NodeId, LinkEntry, f32)> = Vec::new();
        for (index, p) in self.peers.entries() {
            let (Some(id), Some(rtt)) = (p.node_id, p.monitor.path_rtt(now)) else {
                continue;
            };
            // Only links this node would relay over: up, settled, with a
            // usable session. A link whose session lapsed keeps its last
            // RTT and loss; advertised, it drew routes through this node
            // that it then had to drop (`relay_no_route`).
            if !p.monitor.settled()
                || p.monitor.health() != LinkHealth::Up
                || !self.neighbour(now, index)
            {
                continue;
            }
            let loss = p.monitor.loss();
            let entry = LinkEntry {
                neighbour: prefix(&id),
                rtt_us: rtt_us(rtt),
                loss: (loss.clamp(0.0, 1.0) * f32::from(u16::MAX)) as u16,
            };
            candidates.push((id, entry, loss));
        }
        // A record must fit one datagram: past the limit, the best links
        // (least loss, then lowest RTT) are advertised, the rest are not.
        let limit = crate::wire::MAX_LINKS;
        self.routing.left_out.clear();
        if candidates.len() > limit {
            candidates.sort_by_key(|(id, l, _)| (l.loss, l.rtt_us, *id));
            self.stats.lsa_links_capped += (candidates.len() - limit) as u64;
            self.routing
                .left_out
                .extend(candidates[limit..].iter().map(|(id, _, _)| *id));
            candidates.truncate(limit);
        }
        let links: Vec<LinkEntry> = candidates.iter().map(|(_, l, _)| *l).collect();
        let advertised: std::collections::BTreeMap<NodeId, (u32, f32)> = candidates
            .iter()
            .map(|(id, l, loss)| (*id, (l.rtt_us, *loss)))
            .collect();
        let sequence = self.next_timestamp(now);
        let lifetime = self
            .routing
            .config
            .lsa_lifetime
            .as_secs()
            .min(u64::from(u16::MAX)) as u16;
        let mut record = self.take_buffer();
        LinkStateRecord::emit_unsigned(
            &mut record,
            &self.certificate.fingerprint(),
            sequence,
            lifetime,
            &links,
        );
        let signature = self.secret.sign(&record);
        record.extend_from_slice(&signature);
        let withdrawn: Vec<NodeId> = self
            .routing
            .advertised
            .keys()
            .filter(|id| !advertised.contains_key(*id))
            .copied()
            .collect();
        self.routing.advertised = advertised;
        let own = self.node_id();
        // Only members' records reach every node, so only they may mark
        // suspects, or nodes would build different trees.
        if self.multicast_active(now) {
            self.multicast.links_withdrawn(now, own, own, withdrawn);
        }
        self.multicast.topology_changed(now);
        self.routing.last_lsa = Some(now);
        self.routing.lsa_due = None;
        self.stats.lsa_originated += 1;
        match (
            std::mem::take(&mut self.routing.lsa_for_change),
            std::mem::take(&mut self.routing.lsa_for_drift),
        ) {
            (true, _) => self.stats.lsa_originated_change += 1,
            (false, true) => {
                self.stats.lsa_originated_drift += 1;
                self.routing.drift.take(now);
            }
            (false, false) => self.stats.lsa_originated_refresh += 1,
        }
        trace!(links = links.len(), "advertising links");
        // A member's record reaches every node, which builds trees from
        // the members' records; anyone else's stays within its radius.
        let global = self.multicast_active(now);
        self.routing.own_record_global = global;
        let budget = if global {
            UNLIMITED_HOPS
        } else {
            RECORD_RADIUS - 1
        };
        self.flood(now, &record, budget, None);
        self.return_buffer(record);
    }

    /// Sends a record to every neighbour with a usable direct link, except
    /// `except` (where it came from), to be passed on `hops_left` more
    /// times.
    fn flood(&mut self, now: Instant, record: &[u8], hops_left: u8, except: Option<PeerId>) {
        for peer in self.peers.ids() {
            if Some(peer) == except || !self.neighbour(now, peer) {
                continue;
            }
            self.stats.lsa_tx_bytes += record.len() as u64 + 1;
            self.send_frame(
                now,
                peer,
                Frame::LinkState { hops_left, record },
                Via::Direct,
            );
        }
    }

    pub(super) fn neighbour(&self, now: Instant, peer: PeerId) -> bool {
        let p = &self.peers[peer];
        p.endpoint.is_some()
            && p.monitor.health() != LinkHealth::Down
            && self.usable_current(now, peer)
    }

    /// Gives a new neighbour every record it would have been passed.
    pub(super) fn sync_link_state(&mut self, now: Instant, peer: PeerId) {
        if self.peers[peer].endpoint.is_none() {
            return;
        }
        self.sync_membership(now, peer);
        self.routing.lsa_for_change = true;
        self.schedule_lsa(now, CHANGE_INTERVAL);
        let records: Vec<(Vec<u8>, u8)> = self
            .routing
            .lsdb
            .iter()
            .filter_map(|(_, r)| Some((r.bytes.clone(), passed_on(r.hops_left)?)))
            .collect();
        for (record, hops_left) in records {
            self.stats.lsa_tx_bytes += record.len() as u64 + 1;
            self.send_frame(
                now,
                peer,
                Frame::LinkState {
                    hops_left,
                    record: &record,
                },
                Via::Direct,
            );
        }
    }

    /// A link-state record arrived from `from`, to be passed on `hops_left`
    /// more times.
    pub(super) fn on_link_state(
        &mut self,
        now: Instant,
        from: PeerId,
        hops_left: u8,
        record: &[u8],
    ) {
        if let Some((origin, stored)) = self.routing.lsdb.holding(record) {
            // A copy of a record held: nothing to do, unless it came a
            // shorter way than the first (a larger budget), when it goes on
            // further than the first copy went.
            if hops_left <= stored.hops_left {
                return;
            }
            stored.hops_left = hops_left;
            let origin = *origin;
            self.pass_on(now, origin, from, hops_left, record);
            return;
        }
        let fingerprint = match LinkStateRecord::decode(record) {
            Ok(decoded) => *decoded.certificate,
            Err(error) => {
                self.stats.lsa_rejected += 1;
                trace!(%error, "malformed link-state record");
                return;
            }
        };
        let Some(certificate) = self.certificate_for_record(
            now,
            &fingerprint,
            RecordKind::LinkState { hops_left },
            from,
            record,
        ) else {
            return;
        };
        let unix_now = self.unix_now(now);
        let verified = match verify_lsa(record, &certificate, &self.ca, unix_now) {
            Ok(verified) => verified,
            Err(error) => {
                self.stats.lsa_rejected += 1;
                match error {
                    LsaError::Malformed(e) => trace!(%e, "malformed link-state record"),
                    LsaError::OtherCertificate => {
                        debug!("link-state record names another certificate")
                    }
                    LsaError::Certificate(e) => {
                        debug!(%e, "link-state record with a bad certificate")
                    }
                    LsaError::BadSignature => debug!("link-state record with a bad signature"),
                }
                return;
            }
        };
        // A revoked node's record is neither stored nor passed on, so no
        // route goes through it (its links expire from the others' records
        // as they end their sessions with it).
        if self.is_revoked(&verified.certificate) {
            self.stats.lsa_rejected += 1;
            debug!("link-state record of a revoked node");
            return;
        }
        let origin = verified.origin;
        if origin == self.node_id() {
            return;
        }
        let certificate = verified.certificate.clone();
        let before: Vec<[u8; 16]> = self
            .routing
            .lsdb
            .get(&origin)
            .map(|r| r.links.iter().map(|l| l.neighbour).collect())
            .unwrap_or_default();
        if !self.routing.lsdb.insert(now, verified, record, hops_left) {
            return;
        }
        // Links the origin no longer lists: their other ends are suspect
        // (a neighbour saw them go) until they speak, and the origin is
        // alive.
        let withdrawn: Vec<NodeId> = match self.routing.lsdb.get(&origin) {
            Some(r) => before
                .iter()
                .filter(|p| !r.links.iter().any(|l| l.neighbour == **p))
                .filter_map(|p| self.routing.by_prefix.get(p).copied())
                .collect(),
            None => Vec::new(),
        };
        let own = self.node_id();
        if self.record_is_global(&origin) {
            self.multicast.links_withdrawn(now, own, origin, withdrawn);
        }
        self.stats.lsa_received += 1;
        let new_origin = self
            .routing
            .by_prefix
            .insert(prefix(&origin), origin)
            .is_none();
        // A member learnt from its record becomes a peer reachable through
        // others, even without a configured endpoint.
        if let Some(peer) = self.peer_for_certificate(now, &certificate)
            && self.peers[peer].certificate.is_none()
        {
            self.bind_identity(peer, certificate);
        }
        if new_origin || self.record_moved(&origin) {
            self.routing.dirty = true;
        } else if self.record_is_global(&origin) {
            // Trees are built from the exact RTTs of these records, on
            // every node alike: a change too small to move a route still
            // changes the trees, and a node that kept its old ones while
            // others rebuilt theirs could leave a member nobody's child.
            self.multicast.topology_changed(now);
        }
        self.pass_on(now, origin, from, hops_left, record);
    }

    /// Floods a record received with `hops_left` on, within its scope and
    /// the brake.
    fn pass_on(
        &mut self,
        now: Instant,
        origin: NodeId,
        from: PeerId,
        hops_left: u8,
        record: &[u8],
    ) {
        let Some(next) = passed_on(hops_left) else {
            return;
        };
        if self.routing.brake.forward(now, origin, record, from, next) {
            self.flood(now, record, next, Some(from));
        } else {
            self.stats.lsa_held += 1;
        }
    }

    /// Builds the graph from this node's links and the records, and updates
    /// the routes of every metric.
    pub(super) fn recompute_routes(&mut self, now: Instant) {
        self.routing.dirty = false;
        self.routing.urgent = false;
        self.routing.last_recompute = Some(now);
        self.stats.route_computations += 1;
        self.multicast.topology_changed(now);
        self.routing.recompute_at = Some(now + RECOMPUTE_INTERVAL);
        let own = self.node_id();
        // The last graph's allocations are reused; it is not read while
        // the new one is built.
        let mut graph = std::mem::take(&mut self.routing.graph);
        graph.clear();
        graph.add_links(own, self.own_links(now));
        // Looked up once per link of every record: a hash map of the
        // prefixes, rebuilt here, beats that many searches of the tree.
        let prefixes = &mut self.routing.prefixes;
        prefixes.clear();
        prefixes.extend(self.routing.by_prefix.iter().map(|(p, id)| (*p, *id)));
        for (origin, record) in self.routing.lsdb.iter() {
            let links = record.links.iter().filter_map(|link| {
                let neighbour = *prefixes.get(&link.neighbour)?;
                let loss = f32::from(link.loss) / f32::from(u16::MAX);
                let quality = LinkQuality {
                    rtt_us: link.rtt_us,
                    loss,
                };
                Some((neighbour, quality))
            });
            graph.add_links(*origin, links);
        }
        let max_hops = if self.routing.config.relaying {
            MAX_INTERMEDIATES + 1
        } else {
            1
        };
        let hold_down = self.routing.config.hold_down;
        self.routing.table.clear_held();
        for metric in Metric::ALL {
            let computed = compute_paths(&graph, &own, metric, max_hops);
            let changes = self
                .routing
                .table
                .update(now, metric, &computed, &graph, &own, hold_down);
            for change in changes {
                self.stats.path_changes += 1;
                let names =
                    |path: &[NodeId]| path.iter().map(|id| self.name_of(id)).collect::<Vec<_>>();
                let event = Event::PathChanged {
                    destination: change.destination,
                    name: self.name_of(&change.destination),
                    metric,
                    from: names(&change.from),
                    to: names(&change.to),
                };
                debug!(?event, "path changed");
                push_event(&mut self.events, &mut self.stats, event);
            }
        }
        self.routing.graph = graph;
    }

    /// A node's certificate name, or its short id.
    pub(super) fn name_of(&self, id: &NodeId) -> String {
        if *id == self.node_id() {
            return self.name().to_owned();
        }
        if let Some(&index) = self.by_id.get(id) {
            let name = self.peers[index].name();
            if !name.is_empty() {
                return name;
            }
        }
        self.routing
            .lsdb
            .get(id)
            .map_or_else(|| id.short(), |r| r.certificate.name().to_owned())
    }

    /// A node by certificate name or by (a prefix of at least 4 digits of)
    /// its hex node id.
    pub(super) fn resolve(&self, name: &str) -> Result<NodeId, RouteError> {
        // Two certificates may carry one name (a CA mistake): the claim
        // rule picks the one every node picks.
        let claimants = std::iter::once(&self.certificate)
            .chain(self.peers.iter().filter_map(|p| p.certificate.as_ref()))
            .filter(|c| c.name() == name && !self.is_revoked(c));
        if let Some(winner) = claimants.min_by_key(|c| (c.not_before(), c.node_id())) {
            return Ok(winner.node_id());
        }
        let configured = self.peers.iter().find_map(|p| {
            let matches = p.certificate.is_none() && p.configured_name.as_deref() == Some(name);
            if matches { p.node_id } else { None }
        });
        if let Some(id) = configured {
            return Ok(id);
        }
        let hex = name.to_ascii_lowercase();
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = self
                .by_id
                .keys()
                .filter(|id| id.to_string().starts_with(&hex));
            if let (Some(id), None) = (matches.next(), matches.next()) {
                return Ok(*id);
            }
        }
        Err(RouteError::UnknownNode(name.to_owned()))
    }
}

fn rtt_us(rtt: Duration) -> u32 {
    u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).max(1)
}

/// Whether a link's quality moved from what the routes were computed with
/// by more than could move a route: RTT by more than a twentieth and
/// [`OWN_LINK_RTT_FLOOR_US`], or loss by more than [`OWN_LINK_LOSS_SLACK`].
fn moved_beyond_slack(old: LinkQuality, now: LinkQuality) -> bool {
    let rtt_slack = (old.rtt_us / OWN_LINK_RTT_SLACK).max(OWN_LINK_RTT_FLOOR_US);
    now.rtt_us.abs_diff(old.rtt_us) > rtt_slack || (now.loss - old.loss).abs() > OWN_LINK_LOSS_SLACK
}
