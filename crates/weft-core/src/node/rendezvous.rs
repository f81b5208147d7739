//! The member mesh: each member of a group keeps sessions with a few other
//! members, found through the group's rendezvous in the DHT
//! (`docs/PROTOCOL.md` §15.2).
//!
//! - **Rendezvous.** For every joined group, the node asks the DHT
//!   (`Dht::find_members`) to place its signed entry at the nodes closest
//!   to the group's key and to name the members they hold nearest to it in
//!   node-id order: at once on a join, then every [`LOOKUP_INTERVAL`]
//!   ([`LOOKUP_RETRY`] while it knows no other member). The names are hints
//!   ([`MAX_HINTS_PER_GROUP`] per group, forgotten after [`HINT_LIFETIME`]);
//!   a member proves itself in the handshake.
//! - **Mesh.** Among the members it knows (hints, and members by their
//!   membership records), the node picks per joined group its successor
//!   and predecessor in node-id order and the member half way round the
//!   ring. Those sessions are *wanted* (PROTOCOL §7.8): opened (after a
//!   DHT lookup of the member's endpoint if need be), kept and rekeyed.
//!   When every member knows its ring neighbours, the successor links
//!   alone form a cycle through all members, so the mesh is connected
//!   whatever the underlay; its links are direct sessions, advertised in
//!   the members' link-state records, so trees (§15.4) run over them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Node, Peer};
use crate::identity::NodeId;

/// How often a member looks up (and re-announces itself in) each group's
/// rendezvous: well within the entries' lifetime (`dht::ENTRY_LIFETIME`).
const LOOKUP_INTERVAL: Duration = Duration::from_secs(60);
/// ... and how often while some joined group has no other member known.
const LOOKUP_RETRY: Duration = Duration::from_secs(10);
/// A member named by the rendezvous is remembered this long.
const HINT_LIFETIME: Duration = Duration::from_secs(180);
/// Members remembered per group from the rendezvous, at most.
const MAX_HINTS_PER_GROUP: usize = 64;

/// The rendezvous hints and the mesh picks of a node.
#[derive(Debug, Default)]
pub(super) struct MemberMesh {
    hints: BTreeMap<IpAddr, BTreeMap<NodeId, Instant>>,
    picks: BTreeSet<NodeId>,
    next: Option<Instant>,
}

impl MemberMesh {
    /// Whether `id` is one of this node's mesh picks.
    pub(super) fn picked(&self, id: &NodeId) -> bool {
        self.picks.contains(id)
    }

    /// The next rendezvous round.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Runs a rendezvous round at once (a join, the DHT joined).
    pub(super) fn soon(&mut self, now: Instant) {
        self.next = Some(now);
    }
}

impl Node {
    /// Rendezvous round when due: announce and look up every joined group,
    /// forget old hints, reconsider the mesh.
    pub(super) fn rendezvous_timers(&mut self, now: Instant) {
        if self.multicast.mesh.next.is_none_or(|at| now < at) {
            return;
        }
        let joined: Vec<IpAddr> = self.multicast.joined.iter().copied().collect();
        if joined.is_empty() {
            self.multicast.mesh.next = None;
            self.multicast.mesh.hints.clear();
            self.update_mesh(now);
            return;
        }
        for &group in &joined {
            self.discovery.dht.find_members(now, group, true);
        }
        let mesh = &mut self.multicast.mesh;
        mesh.hints.retain(|group, members| {
            members.retain(|_, at| now < *at + HINT_LIFETIME);
            joined.contains(group) && !members.is_empty()
        });
        self.update_mesh(now);
        let lonely = joined.iter().any(|g| self.known_members(*g).is_empty());
        let interval = if lonely {
            LOOKUP_RETRY
        } else {
            LOOKUP_INTERVAL
        };
        self.multicast.mesh.next = Some(now + interval);
    }

    /// A rendezvous holder named `members` of `group`.
    pub(super) fn on_group_members(&mut self, now: Instant, group: IpAddr, members: Vec<NodeId>) {
        if !self.multicast.joined.contains(&group) {
            return;
        }
        let own = self.node_id();
        let hints = self.multicast.mesh.hints.entry(group).or_default();
        for member in members {
            if member != own && (hints.len() < MAX_HINTS_PER_GROUP || hints.contains_key(&member)) {
                hints.insert(member, now);
            }
        }
        self.update_mesh(now);
    }

    /// Members of `group` this node knows, itself left out: from the
    /// rendezvous and from membership records.
    fn known_members(&self, group: IpAddr) -> BTreeSet<NodeId> {
        let own = self.node_id();
        let mut members: BTreeSet<NodeId> = self
            .multicast
            .mesh
            .hints
            .get(&group)
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        members.extend(self.multicast.members_by_record(group));
        members.remove(&own);
        members
    }

    /// Picks the mesh neighbours of every joined group again and opens the
    /// sessions missing.
    pub(super) fn update_mesh(&mut self, now: Instant) {
        let own = self.node_id();
        let mut picks = BTreeSet::new();
        let joined: Vec<IpAddr> = self.multicast.joined.iter().copied().collect();
        for group in joined {
            let mut ring: Vec<NodeId> = self.known_members(group).into_iter().collect();
            if ring.is_empty() {
                continue;
            }
            ring.push(own);
            ring.sort();
            let n = ring.len();
            let at = ring.iter().position(|id| *id == own).unwrap_or(0);
            for step in [1, n - 1, n / 2] {
                let pick = ring[(at + step) % n];
                if pick != own {
                    picks.insert(pick);
                }
            }
        }
        let new: Vec<NodeId> = picks
            .difference(&self.multicast.mesh.picks)
            .copied()
            .collect();
        self.multicast.mesh.picks = picks;
        for id in new {
            debug!(member = %self.name_of(&id), "member mesh: keeping a session");
            self.connect_member(now, id);
        }
    }

    /// Opens a session to member `id` unless there is one: straight to its
    /// endpoint if known, else after a DHT lookup of it.
    fn connect_member(&mut self, now: Instant, id: NodeId) {
        let peer = match self.by_id.get(&id) {
            Some(&peer) => peer,
            None => {
                // A full table of peers in use refuses it (counted); the
                // next round of the mesh tries again.
                let Some(peer) = self.admit_peer(now, Peer::new(now, None, Some(id), None)) else {
                    return;
                };
                peer
            }
        };
        if self.usable_current(now, peer) {
            return;
        }
        if self.peers[peer].endpoint.is_none() {
            self.find_endpoint(now, peer);
            return;
        }
        let p = &mut self.peers[peer];
        if p.current.is_none() && p.pending.is_none() && p.handshake_due.is_none() {
            p.handshake_due = Some(now);
        }
    }
}

impl Node {
    /// Group rendezvous entries this node holds for others (as a DHT
    /// holder), at most 4,096.
    pub fn rendezvous_entries_held(&self) -> usize {
        self.discovery.dht.stored_entries()
    }
}
