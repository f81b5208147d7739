//! The peer table: every node this node keeps per-node state for (keys,
//! sessions, link monitor, queues, counters), in a bounded table of slots
//! addressed by [`PeerId`].
//!
//! A node learns of other nodes from link-state and membership records,
//! DHT answers, inbound handshakes and relayed inits. Each becomes a peer,
//! so without a bound the table would grow with the network. The table
//! holds at most `NeighbourConfig::max_peers` entries (docs/PROTOCOL.md
//! §7.9):
//!
//! - **Admission.** A configured peer is always admitted. Any other new
//!   peer is admitted while the table has room; when it is full, the most
//!   idle evictable peer makes room for it, and when none is evictable the
//!   new entry is refused (`peers_refused`). The caller then goes on
//!   without one: a record is still stored and used for routes, a lookup's
//!   packets are answered unreachable, an init is dropped.
//! - **Evictable.** A peer is never evicted while it is configured, has a
//!   session or a handshake under way or due, has packets waiting, was
//!   picked as a neighbour, is the destination of a pinned path, or
//!   exchanged anything in the last [`PEER_ACTIVE`]. Multicast tree
//!   neighbours in use and the first hops of routes are covered by these
//!   (both carry traffic over sessions). Among the others, peers that are
//!   no route's destination go first, then the longest idle.
//! - **Sweep.** Every [`SWEEP_INTERVAL`], evictable peers that have been
//!   idle for [`PEER_IDLE`] and are no route's destination are evicted even
//!   when the table is not full, so it shrinks back after a burst.
//! - **Ids.** A [`PeerId`] is a slot and the slot's generation, which
//!   changes whenever the slot is freed: an id kept across an eviction
//!   finds nothing ([`PeerTable::get`]) instead of the slot's next
//!   occupant. Indexing with a stale id panics; ids are indexed only
//!   within the input that looked them up (an eviction ends every map
//!   entry that names the peer), and ids kept longer (QoS queue entries,
//!   held records) are checked with `get` or `contains` first.
//! - **Deadlines.** Each slot caches its peer's earliest timer, which
//!   `poll_timeout` needs after every input; every mutable access to the
//!   peer ([`PeerTable::get_mut`], indexing mutably) clears it, so only
//!   peers touched since are looked at again.

use std::cell::Cell;
use std::ops::{Index, IndexMut};
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Node, Peer, prefix};
use crate::route::Metric;
use crate::timer::TimerKind;

/// A timer: when, and why.
pub(super) type Deadline = Option<(Instant, TimerKind)>;

/// A peer that exchanged anything this recently is never evicted (as long
/// as a session that nobody wants may stay idle).
pub(super) const PEER_ACTIVE: Duration = super::IDLE_SESSION;
/// An evictable peer idle this long is evicted even when the table is not
/// full.
pub(super) const PEER_IDLE: Duration = Duration::from_secs(600);
/// How often idle peers are swept out.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// A peer's place in the [`PeerTable`]: its slot and the slot's generation
/// when the peer took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PeerId {
    slot: u32,
    generation: u32,
}

#[cfg(test)]
impl PeerId {
    /// An id for tests that need one without a table.
    pub(super) fn for_test(slot: u32) -> Self {
        Self {
            slot,
            generation: 0,
        }
    }
}

/// The slots; see the module docs.
#[derive(Default)]
pub(super) struct PeerTable {
    entries: Vec<Entry>,
    /// Per slot: its peer's earliest deadline, if computed since the peer
    /// last changed (`Some(None)` for a free slot). Beside the entries
    /// rather than in them, so that `poll_timeout` reads one small array
    /// instead of a cache line of every peer. A deadline depends only on
    /// the peer and on configuration fixed when the node was made, never
    /// on `now`.
    deadlines: Vec<Cell<Option<Deadline>>>,
    /// Slots free for reuse.
    free: Vec<u32>,
    len: usize,
    /// When idle peers are next swept out.
    pub(super) sweep_due: Option<Instant>,
}

#[derive(Default)]
struct Entry {
    /// Changes each time the slot is freed.
    generation: u32,
    peer: Option<Peer>,
}

impl PeerTable {
    /// Stores `peer` in a free slot (or a new one) and returns its id.
    pub(super) fn insert(&mut self, peer: Peer) -> PeerId {
        self.len += 1;
        if let Some(slot) = self.free.pop() {
            let entry = &mut self.entries[slot as usize];
            entry.peer = Some(peer);
            self.deadlines[slot as usize].set(None);
            return PeerId {
                slot,
                generation: entry.generation,
            };
        }
        // More than 2^32 peers cannot be held in memory, so the count fits.
        let slot = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            generation: 0,
            peer: Some(peer),
        });
        self.deadlines.push(Cell::new(None));
        PeerId {
            slot,
            generation: 0,
        }
    }

    /// Takes the peer out; its id (and every copy of it) goes stale.
    pub(super) fn remove(&mut self, id: PeerId) -> Option<Peer> {
        let entry = self.entries.get_mut(id.slot as usize)?;
        if entry.generation != id.generation {
            return None;
        }
        let peer = entry.peer.take()?;
        self.deadlines[id.slot as usize].set(Some(None));
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(id.slot);
        self.len -= 1;
        Some(peer)
    }

    /// The peer `id` names, if it is still there.
    pub(super) fn get(&self, id: PeerId) -> Option<&Peer> {
        self.entries
            .get(id.slot as usize)
            .filter(|e| e.generation == id.generation)
            .and_then(|e| e.peer.as_ref())
    }

    /// The peer `id` names, if it is still there.
    pub(super) fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        let entry = self
            .entries
            .get_mut(id.slot as usize)
            .filter(|e| e.generation == id.generation)?;
        // The caller may change anything a deadline depends on.
        self.deadlines[id.slot as usize].set(None);
        entry.peer.as_mut()
    }

    /// Whether `id` still names a peer.
    pub(super) fn contains(&self, id: PeerId) -> bool {
        self.get(id).is_some()
    }

    /// Peers held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Every peer.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.entries.iter().filter_map(|e| e.peer.as_ref())
    }

    /// Every peer with its id, in slot order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (PeerId, &Peer)> {
        self.entries.iter().enumerate().filter_map(|(slot, e)| {
            let peer = e.peer.as_ref()?;
            let id = PeerId {
                slot: u32::try_from(slot).ok()?,
                generation: e.generation,
            };
            Some((id, peer))
        })
    }

    /// The ids of every peer, in slot order: for loops whose body needs
    /// the node mutably.
    pub(super) fn ids(&self) -> Vec<PeerId> {
        self.entries().map(|(id, _)| id).collect()
    }

    /// The earliest of every peer's deadline (the first peer in slot order
    /// on a tie), with `deadline` asked only about peers changed since it
    /// was last asked about them.
    pub(super) fn earliest_deadline(
        &self,
        deadline: impl Fn(PeerId, &Peer) -> Deadline,
    ) -> Deadline {
        let mut earliest: Deadline = None;
        for slot in 0..self.deadlines.len() {
            if let Some((at, kind)) = self.cached_deadline(slot, &deadline)
                && earliest.is_none_or(|(e, _)| at < e)
            {
                earliest = Some((at, kind));
            }
        }
        earliest
    }

    /// The ids of the peers whose earliest deadline is at or before `now`,
    /// in slot order (deadlines found as by [`Self::earliest_deadline`]):
    /// the only peers a timer can have work for.
    pub(super) fn due(
        &self,
        now: Instant,
        deadline: impl Fn(PeerId, &Peer) -> Deadline,
    ) -> Vec<PeerId> {
        (0..self.deadlines.len())
            .filter(|&slot| {
                self.cached_deadline(slot, &deadline)
                    .is_some_and(|(at, _)| at <= now)
            })
            .filter_map(|slot| {
                let entry = &self.entries[slot];
                entry.peer.as_ref()?;
                Some(PeerId {
                    slot: u32::try_from(slot).ok()?,
                    generation: entry.generation,
                })
            })
            .collect()
    }

    /// Slot `slot`'s deadline, from the cache or computed (and cached).
    fn cached_deadline(
        &self,
        slot: usize,
        deadline: &impl Fn(PeerId, &Peer) -> Deadline,
    ) -> Deadline {
        let cell = &self.deadlines[slot];
        if let Some(cached) = cell.get() {
            return cached;
        }
        let entry = &self.entries[slot];
        let fresh = entry.peer.as_ref().and_then(|peer| {
            let id = PeerId {
                slot: u32::try_from(slot).unwrap_or(u32::MAX),
                generation: entry.generation,
            };
            deadline(id, peer)
        });
        cell.set(Some(fresh));
        fresh
    }

    /// The first peer that `matches`.
    pub(super) fn find(&self, matches: impl Fn(&Peer) -> bool) -> Option<PeerId> {
        self.entries()
            .find_map(|(id, p)| if matches(p) { Some(id) } else { None })
    }
}

impl Index<PeerId> for PeerTable {
    type Output = Peer;

    /// The peer `id` names. Panics on a stale id: callers index only ids
    /// looked up during the current input (see the module docs).
    fn index(&self, id: PeerId) -> &Peer {
        match self.get(id) {
            Some(peer) => peer,
            None => panic!("stale peer id {id:?}"),
        }
    }
}

impl IndexMut<PeerId> for PeerTable {
    fn index_mut(&mut self, id: PeerId) -> &mut Peer {
        match self.get_mut(id) {
            Some(peer) => peer,
            None => panic!("stale peer id {id:?}"),
        }
    }
}

/// Why a peer may be evicted, in the order of preference (smaller first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Idleness {
    /// It is the destination of a computed route (still useful).
    routed: bool,
    /// When it last did anything (or was added).
    last_active: Instant,
}

impl Node {
    /// Adds a learnt (not configured) peer, making room by evicting the
    /// most idle evictable peer when the table is full. `None` when it is
    /// full of peers that may not be evicted: the entry is refused and
    /// counted, and the caller goes on without it.
    pub(super) fn admit_peer(&mut self, now: Instant, peer: Peer) -> Option<PeerId> {
        if !peer.configured && self.peers.len() >= self.discovery.config.max_peers {
            let Some(victim) = self.eviction_candidate(now) else {
                self.stats.peers_refused += 1;
                debug!("peer table full of peers in use: refusing a new entry");
                return None;
            };
            self.evict_peer(victim);
        }
        let node_id = peer.node_id;
        let id = self.peers.insert(peer);
        if let Some(node_id) = node_id {
            self.by_id.insert(node_id, id);
            self.by_ipv6.insert(node_id.overlay_ipv6(), id);
            // Links to it that records list by prefix may now make a path.
            if self
                .routing
                .by_prefix
                .insert(prefix(&node_id), node_id)
                .is_none()
            {
                self.routing.dirty = true;
            }
        }
        self.peers.sweep_due.get_or_insert(now + SWEEP_INTERVAL);
        Some(id)
    }

    /// Peers held now.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Evicts the peers that have been idle for [`PEER_IDLE`] and are no
    /// route's destination, and forgets node id prefixes nothing names.
    pub(super) fn sweep_peers(&mut self, now: Instant) {
        self.peers.sweep_due = Some(now + SWEEP_INTERVAL);
        let idle: Vec<PeerId> = self
            .peers
            .entries()
            .filter_map(|(id, _)| Some((id, self.idleness(now, id)?)))
            .filter(|(_, i)| !i.routed && now.saturating_duration_since(i.last_active) >= PEER_IDLE)
            .map(|(id, _)| id)
            .collect();
        for id in idle {
            self.evict_peer(id);
        }
        self.prune_prefixes();
    }

    /// The peer to evict for a new one: the most idle evictable one.
    fn eviction_candidate(&self, now: Instant) -> Option<PeerId> {
        self.peers
            .entries()
            .filter_map(|(id, _)| Some((self.idleness(now, id)?, id)))
            .min()
            .map(|(_, id)| id)
    }

    /// How idle `id` is, or `None` if it may not be evicted.
    fn idleness(&self, now: Instant, id: PeerId) -> Option<Idleness> {
        let p = self.peers.get(id)?;
        let in_session = p.current.is_some()
            || p.next.is_some()
            || p.previous.is_some()
            || p.pending.is_some()
            || p.handshake_due.is_some();
        let last_active = [p.last_received, p.last_sent, p.last_data, p.last_handshake]
            .into_iter()
            .flatten()
            .max();
        let recent = last_active.is_some_and(|t| now.saturating_duration_since(t) < PEER_ACTIVE);
        let picked = p.node_id.is_some_and(|n| self.discovery.picked(&n));
        let pinned = p
            .node_id
            .is_some_and(|n| self.routing.table.pinned(&n).is_some());
        if p.configured || in_session || recent || !p.queue.is_empty() || picked || pinned {
            return None;
        }
        let routed = p.node_id.is_some_and(|n| {
            Metric::ALL
                .iter()
                .any(|m| self.routing.table.get(&n, *m).is_some())
        });
        Some(Idleness {
            routed,
            last_active: last_active.map_or(p.added, |t| t.max(p.added)),
        })
    }

    /// Takes `id` out of the table and out of every map that names it.
    fn evict_peer(&mut self, id: PeerId) {
        let Some(mut peer) = self.peers.remove(id) else {
            return;
        };
        self.stats.peers_evicted += 1;
        debug!(peer = %peer.name(), "evicting an idle peer");
        // An evictable peer has no session or handshake, so no session
        // index names it; the maps below are all that might.
        self.by_index.retain(|_, p| *p != id);
        if let Some(node_id) = peer.node_id {
            if self.by_id.get(&node_id) == Some(&id) {
                self.by_id.remove(&node_id);
            }
            if self.by_ipv6.get(&node_id.overlay_ipv6()) == Some(&id) {
                self.by_ipv6.remove(&node_id.overlay_ipv6());
            }
        }
        if let Some(net) = peer.certificate.as_ref().and_then(|c| c.ipv4()) {
            self.rebind_ipv4(net.addr);
        }
        for buf in std::mem::take(&mut peer.queue) {
            self.return_buffer(buf);
        }
    }

    /// Keeps the node id prefixes (which relay frames and records name
    /// nodes by) of this node, its peers, the link-state records and the
    /// membership records: bounded by the table and the two databases.
    fn prune_prefixes(&mut self) {
        let own = self.node_id();
        let by_id = &self.by_id;
        let lsdb = &self.routing.lsdb;
        let multicast = &self.multicast;
        self.routing.by_prefix.retain(|_, node| {
            *node == own
                || by_id.contains_key(node)
                || lsdb.get(node).is_some()
                || multicast.knows_origin(node)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        #[allow(clippy::disallowed_methods)] // a test needs some instant
        let now = Instant::now();
        Peer::new(now, None, None, None)
    }

    #[test]
    fn a_stale_id_does_not_reach_the_next_occupant_of_its_slot() {
        let mut table = PeerTable::default();
        let old = table.insert(peer());
        table.remove(old);
        let new = table.insert(peer());

        assert_eq!(new.slot, old.slot, "the slot is reused");
        assert_ne!(new, old);
        assert!(table.get(old).is_none());
        assert!(!table.contains(old));
        assert!(table.get_mut(old).is_none());
        assert!(table.remove(old).is_none());
        assert!(table.contains(new));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn ids_list_only_live_peers_in_slot_order() {
        let mut table = PeerTable::default();
        let a = table.insert(peer());
        let b = table.insert(peer());
        let c = table.insert(peer());
        table.remove(b);

        assert_eq!(table.ids(), vec![a, c]);
        assert_eq!(table.iter().count(), 2);
    }
}
