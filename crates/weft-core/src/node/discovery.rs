//! The node's side of the DHT: joining, lookups for the daemon, sessions on
//! demand, and the bounded neighbourhood.
//!
//! - The node owns a [`Dht`] engine; DHT datagrams (outer type 5) go to it
//!   straight from the underlay, its datagrams and events are drained after
//!   every input. It bootstraps through `NodeConfig::bootstrap` and the
//!   endpoints of configured peers; every session with a known endpoint
//!   enters its routing table.
//! - **On demand:** a TUN packet to an overlay address that no peer holds
//!   starts a lookup of that address; the packets wait in a bounded queue
//!   (per destination and in total). When the record arrives the node
//!   becomes a peer (certificate and endpoint from the record) and the
//!   queue moves to its handshake. When the lookup fails, each waiting
//!   packet gets an ICMP unreachable on the TUN, and the address is
//!   remembered as unreachable for a few seconds, so a retrying application
//!   is answered at once instead of starting lookup after lookup.
//! - **Bounded neighbourhood:** beyond configured peers, the node opens
//!   sessions to at most `NeighbourConfig::max` DHT contacts: the nearest in
//!   RTT, plus `random` long links chosen at random. Selection keeps its
//!   picks while they stay good (a near pick stays while it ranks in the
//!   best twice as many), so the neighbourhood does not churn; a pick whose
//!   handshakes keep failing is set aside for a minute. Routing, probing and
//!   link state then work over these sessions as over configured ones.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use super::peers::PeerId;
use super::{
    Event, NeighbourConfig, Node, PENDING_PER_PEER, Peer, Source, icmp, prefix, push_event,
};
use crate::dht::{Dht, DhtEvent, LookupError, LookupId, LookupTrace, NodeRecord, Target};
use crate::identity::{NodeId, is_overlay_ipv6};

/// Packets that may wait for one destination's lookup.
const ON_DEMAND_QUEUE: usize = 16;
/// Destinations whose lookups may be under way at once.
const MAX_ON_DEMAND: usize = 256;
/// How long a failed destination is answered from memory.
const UNREACHABLE_FOR: Duration = Duration::from_secs(5);
/// Addresses remembered as unreachable, at most.
const MAX_UNREACHABLE: usize = 1024;
/// How often the neighbourhood is reconsidered.
const SELECT_INTERVAL: Duration = Duration::from_secs(10);
/// Handshake attempts after which a pick is set aside.
const PICK_ATTEMPTS: u32 = 3;
/// For how long.
const SET_ASIDE_FOR: Duration = Duration::from_secs(60);
/// Near neighbours a node picks however many others picked it.
const MIN_NEAR: usize = 2;
/// Links past `NeighbourConfig::max` a node tolerates before it lets go
/// of a near pick (one per selection): room for others' picks to come
/// and go without the node's own picks following them.
const EXCESS_LINKS: usize = 4;

/// DHT and neighbourhood state of a node.
pub(super) struct Discovery {
    pub(super) dht: Dht,
    pub(super) config: NeighbourConfig,
    /// Lookups the daemon asked for (their ends become events).
    user_lookups: BTreeSet<LookupId>,
    /// Destinations waiting for their lookups, with their packets.
    on_demand: BTreeMap<IpAddr, OnDemand>,
    by_lookup: BTreeMap<LookupId, IpAddr>,
    /// Lookups of known peers' endpoints.
    endpoint_lookups: BTreeMap<LookupId, NodeId>,
    /// When each peer's endpoint was last looked up (one try per
    /// [`UNREACHABLE_FOR`]).
    endpoint_tried: BTreeMap<NodeId, Instant>,
    /// Destinations recently not found, until when.
    unreachable: BTreeMap<IpAddr, Instant>,
    near: BTreeSet<NodeId>,
    random: BTreeSet<NodeId>,
    set_aside: BTreeMap<NodeId, Instant>,
    /// Near picks this node let go of (too many links), until their
    /// sessions have surely lapsed: not counted as others' links
    /// meanwhile, or each lingering session would make it let go of
    /// another pick.
    let_go: BTreeMap<NodeId, Instant>,
    pub(super) select_due: Option<Instant>,
}

struct OnDemand {
    packets: VecDeque<Vec<u8>>,
}

impl Discovery {
    pub(super) fn new(dht: Dht, config: NeighbourConfig) -> Self {
        Self {
            dht,
            config,
            user_lookups: BTreeSet::new(),
            on_demand: BTreeMap::new(),
            by_lookup: BTreeMap::new(),
            endpoint_lookups: BTreeMap::new(),
            endpoint_tried: BTreeMap::new(),
            unreachable: BTreeMap::new(),
            near: BTreeSet::new(),
            random: BTreeSet::new(),
            set_aside: BTreeMap::new(),
            let_go: BTreeMap::new(),
            select_due: None,
        }
    }

    /// Whether this node picked `id` as a neighbour.
    pub(super) fn picked(&self, id: &NodeId) -> bool {
        self.near.contains(id) || self.random.contains(id)
    }
}

impl Node {
    /// Starts a DHT lookup; [`Event::LookupDone`] reports its end (in this
    /// call's events already when the record is known locally).
    pub fn lookup(&mut self, now: Instant, target: Target) -> LookupId {
        let id = self.discovery.dht.lookup(now, target);
        self.discovery.user_lookups.insert(id);
        self.after_input(now);
        id
    }

    /// The underlay endpoints this node advertises in its DHT record,
    /// besides the addresses others report seeing it at (a node bound to a
    /// specific address should name it).
    pub fn set_endpoints(&mut self, now: Instant, endpoints: Vec<std::net::SocketAddr>) {
        self.discovery.dht.set_endpoints(now, endpoints);
        self.after_input(now);
    }

    /// The DHT routing table.
    pub fn dht_contacts(&self) -> Vec<crate::dht::ContactInfo> {
        self.discovery.dht.contacts()
    }

    /// DHT counters.
    pub fn dht_stats(&self) -> crate::dht::DhtStats {
        self.discovery.dht.stats().clone()
    }

    /// Records this node holds for others.
    pub fn dht_stored_records(&self) -> usize {
        self.discovery.dht.stored_records()
    }

    /// Node ids of the neighbours this node picked from the DHT (nearest
    /// first, then the random long links), for status and tests.
    pub fn picked_neighbours(&self) -> Vec<NodeId> {
        let d = &self.discovery;
        d.near.iter().chain(d.random.iter()).copied().collect()
    }

    /// A DHT datagram: only straight from the underlay (relays carry
    /// session traffic only).
    pub(super) fn on_dht(&mut self, now: Instant, source: Source, datagram: &[u8]) {
        match source {
            Source::Direct(from) => self.discovery.dht.handle_datagram(now, from, datagram),
            Source::Relayed(_) => self.stats.rx_bad_frame += 1,
        }
    }

    /// Moves the DHT's datagrams to the transmit queue and acts on its
    /// events. Part of every input's epilogue.
    pub(super) fn drain_dht(&mut self, now: Instant) {
        while let Some((to, datagram)) = self.discovery.dht.poll_transmit() {
            self.queue_transmit(now, to, datagram);
        }
        while let Some(event) = self.discovery.dht.poll_event() {
            match event {
                DhtEvent::LookupDone {
                    id,
                    target,
                    result,
                    trace,
                } => self.on_lookup_done(now, id, target, result, trace),
                DhtEvent::Joined { contacts } => {
                    debug!(contacts, "joined the DHT");
                    self.discovery.select_due = Some(now);
                    self.multicast.mesh.soon(now);
                }
                DhtEvent::GroupMembers { group, members } => {
                    self.on_group_members(now, group, members);
                }
            }
        }
    }

    fn on_lookup_done(
        &mut self,
        now: Instant,
        id: LookupId,
        target: Target,
        result: Result<NodeRecord, LookupError>,
        trace: LookupTrace,
    ) {
        // A record found by name or address may be another claimant's.
        if let Ok(record) = &result {
            self.note_claims(&record.certificate);
        }
        if let Some(destination) = self.discovery.by_lookup.remove(&id) {
            let waiting = self.discovery.on_demand.remove(&destination);
            let packets = waiting.map(|w| w.packets).unwrap_or_default();
            self.on_demand_resolved(now, destination, result.as_ref().ok(), packets);
        }
        if let Some(node) = self.discovery.endpoint_lookups.remove(&id)
            && let Ok(record) = &result
            && record.node_id() == node
            && let Some(&peer) = self.by_id.get(&node)
        {
            let p = &mut self.peers[peer];
            if p.endpoint.is_none() {
                p.endpoint = record.endpoints.first().copied();
                // A handshake tried through relays may be backing off;
                // the endpoint is news: try it at once.
                if p.endpoint.is_some() && !self.usable_current(now, peer) {
                    self.peers[peer].handshake_attempts = 0;
                    self.start_handshake(now, peer);
                }
            }
        }
        if self.discovery.user_lookups.remove(&id) {
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::LookupDone {
                    id,
                    target,
                    result,
                    trace,
                },
            );
        }
    }

    /// A TUN packet for an overlay address no peer holds: look it up.
    pub(super) fn send_on_demand(&mut self, now: Instant, destination: IpAddr, packet: &[u8]) {
        let target = match destination {
            IpAddr::V6(addr) if is_overlay_ipv6(&addr) && addr != self.overlay_ipv6() => {
                Target::Ipv6(addr)
            }
            IpAddr::V4(addr)
                if self
                    .overlay_ipv4()
                    .is_some_and(|net| net.contains(addr) && net.addr != addr) =>
            {
                Target::Ipv4(addr)
            }
            IpAddr::V4(_) | IpAddr::V6(_) => {
                self.stats.tx_no_route += 1;
                trace!(%destination, "not an overlay address of this network");
                return;
            }
        };
        if let Some(&until) = self.discovery.unreachable.get(&destination) {
            if now < until {
                self.send_unreachable(packet);
                return;
            }
            self.discovery.unreachable.remove(&destination);
        }
        let mut buf = self.take_buffer();
        buf.extend_from_slice(packet);
        if let Some(waiting) = self.discovery.on_demand.get_mut(&destination) {
            if waiting.packets.len() >= ON_DEMAND_QUEUE {
                self.stats.tx_pending_overflow += 1;
                if let Some(old) = waiting.packets.pop_front() {
                    self.return_buffer(old);
                }
            }
            if let Some(waiting) = self.discovery.on_demand.get_mut(&destination) {
                waiting.packets.push_back(buf);
            }
            return;
        }
        if self.discovery.on_demand.len() >= MAX_ON_DEMAND {
            self.stats.tx_pending_overflow += 1;
            self.return_buffer(buf);
            return;
        }
        self.stats.lookups_on_demand += 1;
        debug!(%destination, "looking up an unknown overlay address");
        let mut packets = VecDeque::new();
        packets.push_back(buf);
        self.discovery
            .on_demand
            .insert(destination, OnDemand { packets });
        let id = self.discovery.dht.lookup(now, target);
        self.discovery.by_lookup.insert(id, destination);
    }

    /// Looks up where a known peer without an endpoint or route is (once
    /// at a time per peer).
    pub(super) fn find_endpoint(&mut self, now: Instant, peer: PeerId) {
        let Some(id) = self.peers[peer].node_id else {
            return;
        };
        let recently = self
            .discovery
            .endpoint_tried
            .get(&id)
            .is_some_and(|at| now < *at + UNREACHABLE_FOR);
        if self.peers[peer].endpoint.is_some()
            || recently
            || self.discovery.endpoint_lookups.len() >= MAX_ON_DEMAND
        {
            return;
        }
        if self.discovery.endpoint_tried.len() >= MAX_UNREACHABLE {
            self.discovery
                .endpoint_tried
                .retain(|_, at| now < *at + UNREACHABLE_FOR);
        }
        self.discovery.endpoint_tried.insert(id, now);
        self.stats.lookups_on_demand += 1;
        let lookup = self.discovery.dht.lookup(now, Target::Id(id));
        self.discovery.endpoint_lookups.insert(lookup, id);
    }

    /// A destination's lookup ended: hand its packets to the new peer, or
    /// answer them with ICMP unreachable.
    fn on_demand_resolved(
        &mut self,
        now: Instant,
        destination: IpAddr,
        record: Option<&NodeRecord>,
        packets: VecDeque<Vec<u8>>,
    ) {
        let peer = record.and_then(|record| {
            let peer = self.peer_for_certificate(now, &record.certificate)?;
            if self.peers[peer].certificate.is_none() {
                self.bind_identity(peer, record.certificate.clone());
            }
            if self.peers[peer].endpoint.is_none() {
                self.peers[peer].endpoint = record.endpoints.first().copied();
            }
            Some(peer)
        });
        let Some(peer) = peer else {
            debug!(%destination, "overlay address not found");
            if self.discovery.unreachable.len() >= MAX_UNREACHABLE {
                self.discovery.unreachable.retain(|_, until| *until > now);
            }
            if self.discovery.unreachable.len() < MAX_UNREACHABLE {
                self.discovery
                    .unreachable
                    .insert(destination, now + UNREACHABLE_FOR);
            }
            for packet in packets {
                self.send_unreachable(&packet);
                self.return_buffer(packet);
            }
            return;
        };
        debug!(%destination, peer = %self.peers[peer].name(), "found; connecting on demand");
        for packet in packets {
            let p = &mut self.peers[peer];
            if p.queue.len() >= PENDING_PER_PEER {
                self.stats.tx_pending_overflow += 1;
                if let Some(old) = p.queue.pop_front() {
                    self.return_buffer(old);
                }
            }
            self.peers[peer].queue.push_back(packet);
        }
        if self.usable_current(now, peer) {
            self.flush_queue(now, peer);
            return;
        }
        let p = &self.peers[peer];
        if p.pending.is_none() && p.next.is_none() && self.reachable(now, peer) {
            // A node just learnt may be reachable only through relays whose
            // records list it by prefix: the init takes that route, which
            // exists only once the routes are computed with its id.
            if self.routing.dirty {
                self.recompute_routes(now);
            }
            self.start_handshake(now, peer);
        }
    }

    /// Writes an ICMP unreachable for `packet` to the TUN.
    fn send_unreachable(&mut self, packet: &[u8]) {
        self.stats.unreachable += 1;
        let mut out = self.take_buffer();
        let from4 = self.overlay_ipv4().map(|net| net.addr);
        if icmp::unreachable(packet, from4, self.overlay_ipv6(), &mut out) {
            self.push_tun(out);
        } else {
            self.return_buffer(out);
        }
    }

    /// Reconsiders which DHT contacts this node keeps sessions with.
    pub(super) fn select_neighbours(&mut self, now: Instant) {
        self.discovery.select_due = Some(now + SELECT_INTERVAL);
        self.discovery.unreachable.retain(|_, until| *until > now);
        self.discovery.set_aside.retain(|_, until| *until > now);
        self.discovery
            .endpoint_tried
            .retain(|_, at| now < *at + UNREACHABLE_FOR);
        let config = self.discovery.config;
        let session_lapse = self.config.reject_after_time;
        if config.max == 0 {
            return;
        }
        // Picks whose handshakes keep failing make room.
        let failing: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|p| p.current.is_none() && p.handshake_attempts >= PICK_ATTEMPTS)
            .filter_map(|p| p.node_id)
            .filter(|id| self.discovery.picked(id))
            .collect();
        for id in failing {
            debug!(peer = %self.name_of(&id), "setting aside an unreachable neighbour");
            self.discovery.near.remove(&id);
            self.discovery.random.remove(&id);
            self.discovery.set_aside.insert(id, now + SET_ASIDE_FOR);
        }
        let configured: BTreeSet<NodeId> = self
            .peers
            .iter()
            .filter(|p| p.configured)
            .filter_map(|p| p.node_id)
            .collect();
        let configured_count = self.peers.iter().filter(|p| p.configured).count();
        let budget = config.max.saturating_sub(configured_count);
        let random_budget = config.random.min(budget);
        // Links that others opened to this node (their picks, their
        // traffic) are links like this node's own picks: flooding and
        // routing use them all. Counted against the near picks, they keep
        // a node's links near `max` instead of near twice `max` (each node's
        // picks plus everyone else's picks of it), and link-state cost grows
        // with the cube of a node's links (records that size, passed on over
        // each link, from every node within two links). A few near picks
        // stay, so a node whose inbound links go away is not left alone
        // until the next selection. New picks are held back at `max`, but
        // a pick made is let go only past `max` + `EXCESS_LINKS`, one per
        // selection, or the picks of nodes that count each other's links
        // would chase each other (PROTOCOL.md §7.8, "Picks").
        let linked: BTreeSet<NodeId> = self
            .peers
            .entries()
            .filter(|(peer, p)| !p.configured && self.neighbour(now, *peer))
            .filter_map(|(_, p)| p.node_id)
            .collect();
        let near_budget = budget - random_budget;
        let own = self.node_id();
        let contacts: Vec<_> = self
            .discovery
            .dht
            .contacts()
            .into_iter()
            .filter(|c| c.id != own && !configured.contains(&c.id))
            .filter(|c| !self.discovery.set_aside.contains_key(&c.id))
            .collect();
        let present: BTreeSet<NodeId> = contacts.iter().map(|c| c.id).collect();
        let d = &mut self.discovery;
        d.near.retain(|id| present.contains(id));
        d.random.retain(|id| present.contains(id));
        // Nearest first; among equal RTTs, nearest in id space to this
        // node (so nodes do not all rank the same contacts first and make
        // them hubs).
        let tie = |id: &NodeId| -> [u8; 32] {
            let mut out = *id.as_bytes();
            for (o, b) in out.iter_mut().zip(own.as_bytes()) {
                *o ^= b;
            }
            out
        };
        let mut ranked: Vec<(Duration, [u8; 32], NodeId)> = contacts
            .iter()
            .filter_map(|c| Some((c.rtt?, tie(&c.id), c.id)))
            .collect();
        ranked.sort();
        let ranked: Vec<(Duration, NodeId)> =
            ranked.into_iter().map(|(rtt, _, id)| (rtt, id)).collect();
        let good: BTreeSet<NodeId> = ranked
            .iter()
            .take(near_budget * 2)
            .map(|(_, id)| *id)
            .collect();
        d.near.retain(|id| good.contains(id));
        d.let_go.retain(|_, until| *until > now);
        // A good contact that already has a link with this node (it picked
        // this node) is picked first: the link serves both.
        for (_, id) in &ranked {
            if d.near.len() >= near_budget {
                break;
            }
            if good.contains(id)
                && linked.contains(id)
                && !d.random.contains(id)
                && !d.let_go.contains_key(id)
            {
                d.near.insert(*id);
            }
        }
        let inbound = linked
            .iter()
            .filter(|id| !d.near.contains(id) && !d.random.contains(id))
            .filter(|id| !d.let_go.contains_key(id))
            .count();
        let add_budget = near_budget
            .saturating_sub(inbound)
            .max(MIN_NEAR.min(near_budget));
        for (_, id) in &ranked {
            if d.near.len() >= add_budget {
                break;
            }
            if !d.random.contains(id) && !d.let_go.contains_key(id) {
                d.near.insert(*id);
            }
        }
        // Too many links (others picked this node after it made its own
        // picks): the farthest near pick goes, one per selection.
        if d.near.len() > MIN_NEAR.min(near_budget)
            && configured_count + d.near.len() + d.random.len() + inbound
                > config.max + EXCESS_LINKS
            && let Some(&(_, farthest)) = ranked.iter().rev().find(|(_, id)| d.near.contains(id))
        {
            d.near.remove(&farthest);
            d.let_go.insert(farthest, now + session_lapse);
        }
        if d.near.len() > near_budget {
            // Past a smaller budget, the farthest picks go.
            let keep: BTreeSet<NodeId> = ranked
                .iter()
                .filter(|(_, id)| d.near.contains(id))
                .take(near_budget)
                .map(|(_, id)| *id)
                .collect();
            d.near = keep;
        }
        let mut rest: Vec<NodeId> = present
            .iter()
            .filter(|id| !d.near.contains(id) && !d.random.contains(id))
            .copied()
            .collect();
        while d.random.len() < random_budget && !rest.is_empty() {
            let at = (self.rng.next_u64() % rest.len() as u64) as usize;
            d.random.insert(rest.swap_remove(at));
        }
        while d.random.len() > random_budget {
            d.random.pop_last();
        }
        let endpoints: BTreeMap<NodeId, (std::net::SocketAddr, Option<&str>)> = contacts
            .iter()
            .map(|c| (c.id, (c.endpoint, c.name.as_deref())))
            .collect();
        for id in self.picked_neighbours() {
            let Some(&(endpoint, name)) = endpoints.get(&id) else {
                continue;
            };
            let peer = match self.by_id.get(&id) {
                Some(&peer) => peer,
                None => {
                    // A peer configured by name whose session is not up yet
                    // is this node when the DHT verified that name: use its
                    // slot, or the two slots would each open a session.
                    let configured = name.and_then(|name| {
                        self.peers.find(|p| {
                            p.node_id.is_none() && p.configured_name.as_deref() == Some(name)
                        })
                    });
                    match configured {
                        Some(peer) => {
                            self.peers[peer].node_id = Some(id);
                            self.by_id.insert(id, peer);
                            self.by_ipv6.insert(id.overlay_ipv6(), peer);
                            if self.routing.by_prefix.insert(prefix(&id), id).is_none() {
                                self.routing.dirty = true;
                            }
                            peer
                        }
                        // A full table of peers in use: the pick waits for
                        // the next selection.
                        None => match self
                            .admit_peer(now, Peer::new(now, None, Some(id), Some(endpoint)))
                        {
                            Some(peer) => peer,
                            None => continue,
                        },
                    }
                }
            };
            let p = &mut self.peers[peer];
            if p.endpoint.is_none() {
                p.endpoint = Some(endpoint);
            }
            if p.current.is_none() && p.pending.is_none() && p.handshake_due.is_none() {
                debug!(peer = %p.name(), %endpoint, "opening a session to a new neighbour");
                p.handshake_due = Some(now);
            }
        }
    }
}
