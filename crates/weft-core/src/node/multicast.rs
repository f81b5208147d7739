//! Overlay multicast at the node: group membership, trees, forwarding.
//!
//! - **Membership.** The groups this node has joined (config, commands and
//!   the IGMP/MLD reports the kernel writes to the TUN) go into a record
//!   signed with the node's key, flooded to neighbours like link state (on
//!   change, every [`REFRESH`], expiring after [`LIFETIME`]) and given to a
//!   new neighbour in full. The policy ([`MulticastConfig`]) decides from
//!   the member's certificate whether its membership counts.
//! - **Trees.** Every node builds the same tree for a (source, group) from
//!   the same inputs: the links of the link-state records as advertised
//!   (this node's own as it last advertised them, so its view is the one
//!   the others have), each link counted once both ends advertise it, at
//!   the larger of the two RTTs; and the members from the membership
//!   records. See `mcast::build_tree` for the algorithm.
//! - **Forwarding.** The source sends the IP packet, unchanged, in a
//!   multicast frame (origin, sequence, hop budget) to its children in the
//!   tree; each node delivers it to its TUN if it is a member and forwards
//!   it to its own children in the tree of that origin. Frames are sealed
//!   hop by hop in the sessions between tree neighbours. A per-origin
//!   duplicate window drops a second copy, so no member delivers twice
//!   even while views of the tree differ for a moment; the hop budget ends
//!   any loop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use super::certificates::RecordKind;
use super::peers::PeerId;
use super::rendezvous::MemberMesh;
use super::{Event, Node, Via, ip_destination, ip_source, prefix, push_event};
use crate::firewall::Direction;
use crate::identity::NodeId;
use crate::mcast::{
    DuplicateWindow, GroupReport, GroupRule, MAX_MULTICAST_HOPS, MulticastConfig,
    TREE_COST_EXPONENT, Topology, Tree, build_tree, is_carried, parse_reports, tree_cost,
};
use crate::qos::ClassId;
use crate::wire::{Frame, MembershipRecord, verify_membership};

/// A node that sent a multicast packet counts as a sender this long after
/// (its link-state record reaches every node meanwhile).
const SENDER_FOR: Duration = Duration::from_secs(120);
/// A membership record is re-sent this often.
const REFRESH: Duration = Duration::from_secs(10);
/// ... and dropped by others this long after it was received.
const LIFETIME: Duration = Duration::from_secs(35);
/// Changes are advertised at most this often.
const CHANGE_SPACING: Duration = Duration::from_millis(100);
/// Groups a node may join: as many as one membership record lists.
const MAX_GROUPS: usize = crate::wire::MAX_MEMBERSHIP_GROUPS;
/// Trees kept computed.
const MAX_TREES: usize = 1024;
/// After a tree changes, a node still forwards to its children in the old
/// tree this long: the others may switch a few milliseconds later, and
/// until they have, a member could be nobody's child. The duplicate
/// window drops the extra copies.
const GRACE: Duration = Duration::from_secs(1);
/// How long a node stays leaf-only after a neighbour reported a link to it
/// down (unless it speaks first): long enough for its other neighbours,
/// probing idle links every second, to report theirs (about 3 s), after
/// which no link of a dead node is left in the graph.
const SUSPECT_FOR: Duration = Duration::from_secs(5);
/// Suspects held at most (a bound on memory against a flood of
/// withdrawals; beyond it, nodes are not suspected).
const MAX_SUSPECTS: usize = 4096;
/// Replaced trees kept per (source, group) within the grace time.
const MAX_PREVIOUS: usize = 8;

/// Why a group command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Not a multicast address weft carries.
    #[error(
        "{0} is not a multicast group weft carries (IPv4 224.0.0.0/4 beyond 224.0.0.0/24, IPv6 ff00::/8 beyond link scope)"
    )]
    NotCarried(IpAddr),
    /// The node's certificate may not join it.
    #[error("this node's certificate may not join {0}")]
    NotAllowed(IpAddr),
    /// Too many groups.
    #[error("too many groups (at most {MAX_GROUPS})")]
    TooMany,
    /// A source named that nobody knows.
    #[error("unknown node '{0}'")]
    UnknownNode(String),
}

/// A group as `weft group list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group address.
    pub group: IpAddr,
    /// Whether this node has joined it.
    pub joined: bool,
    /// Every member known (this node included when joined), by name.
    pub members: Vec<(NodeId, String)>,
}

/// A tree as `weft group tree` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeStatus {
    /// The group.
    pub group: IpAddr,
    /// The source (root).
    pub source: String,
    /// Parent → child, by name.
    pub edges: Vec<(String, String)>,
    /// The members the tree serves (the source excluded).
    pub members: Vec<String>,
    /// Members the tree cannot reach (no links to them known).
    pub unreached: Vec<String>,
}

/// A member's latest record.
struct Membership {
    sequence: u64,
    received: Instant,
    groups: BTreeSet<IpAddr>,
    bytes: Vec<u8>,
    /// The certificate the record names (verified with it).
    certificate: crate::identity::Certificate,
}

/// Multicast state of a node.
pub(super) struct MulticastState {
    config: MulticastConfig,
    pub(super) joined: BTreeSet<IpAddr>,
    records: BTreeMap<NodeId, Membership>,
    next_seq: u64,
    windows: BTreeMap<NodeId, DuplicateWindow>,
    trees: BTreeMap<(NodeId, IpAddr), Tree>,
    /// Trees replaced recently, forwarded along until then (see [`GRACE`]);
    /// several when views change in quick succession.
    previous: BTreeMap<(NodeId, IpAddr), Vec<(Tree, Instant)>>,
    /// The topology the trees were built on (rebuilt when link state
    /// changes).
    topology: Option<Topology>,
    /// Nodes that a neighbour of theirs reported a link to as down since
    /// their own last record, until when: probably gone, so they forward in
    /// no tree (leaf-only) meanwhile. See [`SUSPECT_FOR`].
    suspects: BTreeMap<NodeId, Instant>,
    due: Option<Instant>,
    last: Option<Instant>,
    /// When this node last sent a multicast packet of its own.
    last_sent: Option<Instant>,
    /// Rendezvous hints and the member mesh (`super::rendezvous`).
    pub(super) mesh: MemberMesh,
}

impl MulticastState {
    /// `unix_micros` is the wall clock when the node starts: sequence
    /// numbers start there, so that a restarted source is not taken for a
    /// duplicate of its former self by receivers that remember it.
    pub(super) fn new(config: MulticastConfig, unix_micros: u64) -> Self {
        Self {
            config,
            joined: BTreeSet::new(),
            records: BTreeMap::new(),
            next_seq: unix_micros,
            windows: BTreeMap::new(),
            trees: BTreeMap::new(),
            previous: BTreeMap::new(),
            topology: None,
            suspects: BTreeMap::new(),
            due: None,
            last: None,
            last_sent: None,
            mesh: MemberMesh::default(),
        }
    }

    /// Members of `group` by their membership records.
    pub(super) fn members_by_record(&self, group: IpAddr) -> impl Iterator<Item = NodeId> + '_ {
        self.records
            .iter()
            .filter(move |(_, m)| m.groups.contains(&group))
            .map(|(id, _)| *id)
    }

    /// `origin` issued a new link-state record, without links to
    /// `withdrawn` that its previous record had (`own`: this node's id,
    /// never its own suspect).
    pub(super) fn links_withdrawn(
        &mut self,
        now: Instant,
        own: NodeId,
        origin: NodeId,
        withdrawn: impl IntoIterator<Item = NodeId>,
    ) {
        let mut changed = self.suspects.remove(&origin).is_some();
        for gone in withdrawn {
            if gone != own && gone != origin && self.suspects.len() < MAX_SUSPECTS {
                changed |= self.suspects.insert(gone, now + SUSPECT_FOR).is_none();
            }
        }
        if changed {
            self.topology_changed(now);
        }
    }

    /// The link-state view changed: trees must be rebuilt.
    pub(super) fn topology_changed(&mut self, now: Instant) {
        self.topology = None;
        self.retire_trees(now);
    }

    /// Drops the computed trees, keeping each for [`GRACE`] as the previous
    /// tree of its (source, group).
    fn retire_trees(&mut self, now: Instant) {
        self.previous.retain(|_, trees| {
            trees.retain(|(_, until)| *until > now);
            !trees.is_empty()
        });
        for (key, tree) in std::mem::take(&mut self.trees) {
            if self.previous.len() >= MAX_TREES && !self.previous.contains_key(&key) {
                continue;
            }
            let trees = self.previous.entry(key).or_default();
            if trees.len() >= MAX_PREVIOUS {
                trees.remove(0);
            }
            trees.push((tree, now + GRACE));
        }
    }

    /// Whether `origin` has a membership record here.
    pub(super) fn knows_origin(&self, origin: &NodeId) -> bool {
        self.records.contains_key(origin)
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let refresh = self.last.map(|l| l + REFRESH);
        let expiry = self.records.values().map(|m| m.received + LIFETIME).min();
        let suspicion = self.suspects.values().min().copied();
        [self.due, refresh, expiry, suspicion, self.mesh.deadline()]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Node {
    /// Joins `group` on this node: members of the overlay will send its
    /// packets here, and they are written to the TUN.
    pub fn join_group(&mut self, now: Instant, group: IpAddr) -> Result<(), GroupError> {
        if !is_carried(group) {
            return Err(GroupError::NotCarried(group));
        }
        if !self
            .multicast
            .config
            .may_join(group, self.certificate.groups())
        {
            return Err(GroupError::NotAllowed(group));
        }
        if self.multicast.joined.len() >= MAX_GROUPS && !self.multicast.joined.contains(&group) {
            return Err(GroupError::TooMany);
        }
        if self.multicast.joined.insert(group) {
            debug!(%group, "joined group");
            let (node, name) = (self.node_id(), self.name().to_owned());
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::GroupJoined { group, node, name },
            );
            self.membership_changed(now);
        }
        self.after_input(now);
        Ok(())
    }

    /// Leaves `group` on this node.
    pub fn leave_group(&mut self, now: Instant, group: IpAddr) -> Result<(), GroupError> {
        if !is_carried(group) {
            return Err(GroupError::NotCarried(group));
        }
        if self.multicast.joined.remove(&group) {
            debug!(%group, "left group");
            let (node, name) = (self.node_id(), self.name().to_owned());
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::GroupLeft { group, node, name },
            );
            self.membership_changed(now);
        }
        self.after_input(now);
        Ok(())
    }

    /// Replaces who may join and send to which groups (`rules`) and the
    /// trees' `fanout` at run time (a config reload). What the policy
    /// decides is decided again at once: this node leaves the groups its
    /// own certificate may no longer join (returned, each also reported as
    /// [`Event::GroupLeft`]), every member's last record is read again
    /// under the new rules, so members no longer allowed drop out of the
    /// groups (also [`Event::GroupLeft`]), and every tree is rebuilt (the
    /// old ones are still forwarded along for the usual grace time).
    /// Packets are checked against the new rules from now on, at sources
    /// and at every node they pass. Trees agree between nodes only when
    /// they run the same policy: change it on every node.
    pub fn set_multicast_policy(
        &mut self,
        now: Instant,
        fanout: usize,
        rules: Vec<GroupRule>,
    ) -> Vec<IpAddr> {
        self.multicast.config.fanout = fanout;
        self.multicast.config.rules = rules;
        let left = self.leave_forbidden_groups(now);
        self.recheck_memberships(now);
        self.multicast.retire_trees(now);
        self.after_input(now);
        left
    }

    /// Leaves the groups this node's own certificate may not join under
    /// the current policy (after the policy or the certificate changed);
    /// returns them.
    pub(super) fn leave_forbidden_groups(&mut self, now: Instant) -> Vec<IpAddr> {
        let forbidden: Vec<IpAddr> = self
            .multicast
            .joined
            .iter()
            .filter(|g| {
                !self
                    .multicast
                    .config
                    .may_join(**g, self.certificate.groups())
            })
            .copied()
            .collect();
        for &group in &forbidden {
            // Joined groups are carried ones: leaving cannot fail.
            let _ = self.leave_group(now, group);
        }
        forbidden
    }

    /// This node's certificate changed: groups it may no longer join are
    /// left (returned), and the membership record, which carries the
    /// certificate, is sent again soon if this node has one out.
    pub(super) fn own_certificate_changed(&mut self, now: Instant) -> Vec<IpAddr> {
        let left = self.leave_forbidden_groups(now);
        if self.multicast.last.is_some() {
            self.multicast.due = Some(self.multicast.due.map_or(now, |d| d.min(now)));
        }
        left
    }

    /// Reads every member's last record again under the current policy:
    /// the groups it lists that the member may join now count, the others
    /// not (changes are announced); a record that no longer verifies (its
    /// certificate expired) goes.
    fn recheck_memberships(&mut self, now: Instant) {
        let unix_now = self.unix_now(now);
        let origins: Vec<NodeId> = self.multicast.records.keys().copied().collect();
        for origin in origins {
            let Some(membership) = self.multicast.records.get(&origin) else {
                continue;
            };
            let verified = verify_membership(
                &membership.bytes,
                &membership.certificate,
                &self.ca,
                unix_now,
            )
            .ok();
            let allowed: BTreeSet<IpAddr> = verified
                .iter()
                .flat_map(|v| {
                    v.groups.iter().take(MAX_GROUPS).filter(|g| {
                        is_carried(**g)
                            && self.multicast.config.may_join(**g, v.certificate.groups())
                    })
                })
                .copied()
                .collect();
            let old = membership.groups.clone();
            if verified.is_none() {
                self.multicast.records.remove(&origin);
            } else if let Some(membership) = self.multicast.records.get_mut(&origin) {
                membership.groups = allowed.clone();
            }
            self.announce_membership_diff(origin, &old, &allowed);
        }
    }

    /// Every group known, with its members.
    pub fn groups(&self, now: Instant) -> Vec<GroupStatus> {
        let _ = now;
        let mut groups: BTreeMap<IpAddr, Vec<(NodeId, String)>> = BTreeMap::new();
        for group in &self.multicast.joined {
            groups
                .entry(*group)
                .or_default()
                .push((self.node_id(), self.name().to_owned()));
        }
        for (origin, membership) in &self.multicast.records {
            for group in &membership.groups {
                groups
                    .entry(*group)
                    .or_default()
                    .push((*origin, self.name_of(origin)));
            }
        }
        groups
            .into_iter()
            .map(|(group, members)| GroupStatus {
                group,
                joined: self.multicast.joined.contains(&group),
                members,
            })
            .collect()
    }

    /// The tree packets of `group` from `source` (a name or hex id; `None`:
    /// this node) take, as this node computes it.
    pub fn multicast_tree(
        &mut self,
        now: Instant,
        source: Option<&str>,
        group: IpAddr,
    ) -> Result<TreeStatus, GroupError> {
        let _ = now;
        if !is_carried(group) {
            return Err(GroupError::NotCarried(group));
        }
        let origin = match source {
            None => self.node_id(),
            Some(name) => self
                .resolve(name)
                .map_err(|_| GroupError::UnknownNode(name.to_owned()))?,
        };
        let members = self.members_of(group, origin);
        let tree = self.tree(origin, group).clone();
        let edges = tree
            .edges()
            .into_iter()
            .map(|(parent, child)| (self.name_of(&parent), self.name_of(&child)))
            .collect();
        Ok(TreeStatus {
            group,
            source: self.name_of(&origin),
            edges,
            members: members.iter().map(|id| self.name_of(id)).collect(),
            unreached: tree.unreached().iter().map(|id| self.name_of(id)).collect(),
        })
    }

    /// A multicast packet (or a group report) from the TUN. Returns whether
    /// it was handled here.
    pub(super) fn multicast_from_tun(&mut self, now: Instant, packet: &[u8]) -> bool {
        if let Ok(reports) = parse_reports(packet) {
            self.stats.mcast_reports += 1;
            for report in reports {
                // A refused join (policy) is logged, not fatal.
                let result = match report {
                    GroupReport::Join(group) => self.join_group(now, group),
                    GroupReport::Leave(group) => self.leave_group(now, group),
                };
                if let Err(error) = result {
                    debug!(%error, "kernel group report not applied");
                }
            }
            return true;
        }
        let Some(group) = ip_destination(packet) else {
            return false;
        };
        if !group.is_multicast() || !is_carried(group) {
            return false;
        }
        if !self
            .multicast
            .config
            .may_send(group, self.certificate.groups())
        {
            self.stats.mcast_denied += 1;
            return true;
        }
        if !self.admit_multicast(now, Direction::Outbound, None, packet) {
            return true;
        }
        let own = self.node_id();
        if self.members_of(group, own).is_empty() {
            self.stats.mcast_no_members += 1;
            return true;
        }
        if !self.multicast_active(now) {
            // A new sender: its record must reach every node, which builds
            // the trees from such records.
            self.routing.lsa_for_change = true;
            self.schedule_lsa(now, super::routing::CHANGE_INTERVAL);
        }
        self.multicast.last_sent = Some(now);
        let seq = self.multicast.next_seq;
        self.multicast.next_seq += 1;
        self.stats.mcast_sent += 1;
        let class = self.classify_multicast(&own, packet);
        for child in self.tree_children(now, own, group, own) {
            self.send_multicast(now, child, class, &prefix(&own), seq, 0, packet);
        }
        self.qos_drain(now);
        true
    }

    /// A multicast frame from neighbour `from`.
    pub(super) fn on_multicast(
        &mut self,
        now: Instant,
        from: PeerId,
        origin: &[u8; 16],
        seq: u64,
        hops: u8,
        packet: &[u8],
    ) {
        let _ = from;
        let Some(&origin) = self.routing.by_prefix.get(origin) else {
            self.stats.mcast_denied += 1;
            trace!("multicast frame from an unknown origin");
            return;
        };
        let Some(group) = ip_destination(packet).filter(|g| g.is_multicast() && is_carried(*g))
        else {
            self.stats.rx_bad_frame += 1;
            return;
        };
        // The packet must come from the origin's own overlay address, and the
        // origin must be allowed to send to the group.
        let source_ok = match ip_source(packet) {
            Some(IpAddr::V6(src)) => origin.owns_ipv6(&src),
            Some(IpAddr::V4(src)) => self
                .certificate_of(&origin)
                .and_then(|c| c.ipv4())
                .is_some_and(|net| net.addr == src),
            None => false,
        };
        let sender_groups = self
            .certificate_of(&origin)
            .map(|c| c.groups().to_vec())
            .unwrap_or_default();
        if !source_ok || !self.multicast.config.may_send(group, &sender_groups) {
            self.stats.mcast_denied += 1;
            return;
        }
        if origin == self.node_id() {
            self.stats.mcast_duplicates += 1;
            return;
        }
        let window = self.multicast.windows.entry(origin).or_default();
        if !window.check_and_set(seq) {
            self.stats.mcast_duplicates += 1;
            return;
        }
        if self.multicast.joined.contains(&group)
            && self.admit_multicast(now, Direction::Inbound, Some(&origin), packet)
        {
            let mut buf = self.take_buffer();
            buf.extend_from_slice(packet);
            self.stats.mcast_delivered += 1;
            self.push_tun(buf);
        }
        if hops.saturating_add(1) >= MAX_MULTICAST_HOPS {
            return;
        }
        let me = self.node_id();
        let class = self.classify_multicast(&origin, packet);
        for child in self.tree_children(now, origin, group, me) {
            self.send_multicast(now, child, class, &prefix(&origin), seq, hops + 1, packet);
            self.stats.mcast_forwarded += 1;
        }
        self.qos_drain(now);
    }

    /// Queues a copy for tree neighbour `child` in the QoS scheduler, in
    /// the packet's `class` (the caller drains the scheduler once all
    /// copies are queued).
    #[allow(clippy::too_many_arguments)] // one frame's fields, and where it goes
    fn send_multicast(
        &mut self,
        now: Instant,
        child: NodeId,
        class: ClassId,
        origin: &[u8; 16],
        seq: u64,
        hops: u8,
        packet: &[u8],
    ) {
        let Some(&peer) = self.by_id.get(&child) else {
            return;
        };
        if !self.usable_current(now, peer) {
            self.stats.tx_no_path += 1;
            return;
        }
        let frame = Frame::Multicast {
            origin: *origin,
            seq,
            hops,
            packet,
        };
        self.enqueue_multicast(now, peer, class, &frame);
    }

    /// Where `node` forwards packets of (origin, group): its children in the
    /// tree, and for [`GRACE`] after a change also in the previous tree.
    fn tree_children(
        &mut self,
        now: Instant,
        origin: NodeId,
        group: IpAddr,
        node: NodeId,
    ) -> Vec<NodeId> {
        let mut children = self.tree(origin, group).children(&node).to_vec();
        if let Some(trees) = self.multicast.previous.get(&(origin, group)) {
            for (old, until) in trees {
                if now >= *until {
                    continue;
                }
                for child in old.children(&node) {
                    if !children.contains(child) && *child != origin {
                        children.push(*child);
                    }
                }
            }
        }
        children
    }

    /// Members of `group` other than `origin`, as the policy counts them.
    fn members_of(&self, group: IpAddr, origin: NodeId) -> BTreeSet<NodeId> {
        let mut members = BTreeSet::new();
        let own = self.node_id();
        if own != origin && self.multicast.joined.contains(&group) {
            members.insert(own);
        }
        for (id, membership) in &self.multicast.records {
            if *id != origin && membership.groups.contains(&group) {
                members.insert(*id);
            }
        }
        members
    }

    /// The tree of (origin, group), built on demand and cached until link
    /// state or membership changes.
    fn tree(&mut self, origin: NodeId, group: IpAddr) -> &Tree {
        if !self.multicast.trees.contains_key(&(origin, group)) {
            if self.multicast.topology.is_none() {
                self.multicast.topology = Some(self.advertised_topology());
            }
            let members = self.members_of(group, origin);
            let fanout = self.multicast.config.fanout;
            let tree = match &self.multicast.topology {
                Some(topology) => build_tree(topology, origin, &members, fanout),
                None => build_tree(&Topology::new(), origin, &members, fanout),
            };
            if self.multicast.trees.len() >= MAX_TREES {
                self.multicast.trees.clear();
            }
            self.multicast.trees.insert((origin, group), tree);
        }
        // Just inserted when missing.
        &self.multicast.trees[&(origin, group)]
    }

    /// Whether this node takes part in multicast now: it has joined a
    /// group, or sent to one within [`SENDER_FOR`]. Its link-state record
    /// then reaches every node.
    pub(super) fn multicast_active(&self, now: Instant) -> bool {
        !self.multicast.joined.is_empty()
            || self
                .multicast
                .last_sent
                .is_some_and(|at| now < at + SENDER_FOR)
    }

    /// Whether `id`'s link-state record reaches every node (it is a member
    /// or a sender), as this node holds it: every node holds the same
    /// such records, and builds its trees from them alone.
    pub(super) fn record_is_global(&self, id: &NodeId) -> bool {
        if *id == self.node_id() {
            return self.routing.own_record_global;
        }
        self.routing
            .lsdb
            .get(id)
            .is_some_and(|r| r.hops_left == super::routing::UNLIMITED_HOPS)
    }

    /// The overlay links as every node sees them: from the records that
    /// reach every node, those of members and senders (this node's as last
    /// advertised, if it is one); anyone else's record stays within
    /// `RECORD_RADIUS`. A link between two such nodes counts once both
    /// advertise it, at the larger of their two RTTs; a link from one of
    /// them to any other node at the RTT it advertises.
    fn advertised_topology(&self) -> Topology {
        let own = self.node_id();
        let mut directed: BTreeMap<(NodeId, NodeId), u64> = BTreeMap::new();
        if self.record_is_global(&own) {
            for (neighbour, (rtt_us, _)) in &self.routing.advertised {
                directed.insert((own, *neighbour), u64::from(*rtt_us));
            }
        }
        for (origin, record) in self.routing.lsdb.iter() {
            if !self.record_is_global(origin) {
                continue;
            }
            for link in &record.links {
                if let Some(&neighbour) = self.routing.by_prefix.get(&link.neighbour) {
                    directed.insert((*origin, neighbour), u64::from(link.rtt_us));
                }
            }
        }
        let mut topology = Topology::new();
        for (&(a, b), &cost) in &directed {
            let back = directed.get(&(b, a));
            let cost = match back {
                // Each pair once, when both ends are members.
                Some(_) if a > b => continue,
                Some(&back) => cost.max(back),
                None if self.record_is_global(&b) => continue,
                None => cost,
            };
            topology.add_link(a, b, tree_cost(cost, TREE_COST_EXPONENT));
        }
        for suspect in self.multicast.suspects.keys() {
            if topology.contains(suspect) {
                topology.set_leaf_only(*suspect);
            }
        }
        topology
    }

    /// The membership changed here: advertise it soon and tell the DHT.
    fn membership_changed(&mut self, now: Instant) {
        self.multicast.retire_trees(now);
        // The scope of this node's link-state record may change with it.
        self.routing.lsa_for_change = true;
        self.schedule_lsa(now, super::routing::CHANGE_INTERVAL);
        let earliest = self
            .multicast
            .last
            .map_or(now, |last| (last + CHANGE_SPACING).max(now));
        self.multicast.due = Some(self.multicast.due.map_or(earliest, |d| d.min(earliest)));
        let groups = self
            .multicast
            .joined
            .iter()
            .map(|g| g.to_string())
            .collect();
        self.discovery.dht.set_groups(now, groups);
        // Find (and announce this node to) the members of a new group, and
        // let go of the mesh of a group left.
        self.multicast.mesh.soon(now);
    }

    /// Multicast timers: advertise, refresh, expire, rendezvous.
    pub(super) fn multicast_timers(&mut self, now: Instant) {
        self.rendezvous_timers(now);
        let before = self.multicast.suspects.len();
        self.multicast.suspects.retain(|_, until| *until > now);
        if self.multicast.suspects.len() != before {
            self.multicast.topology_changed(now);
        }
        let expired: Vec<NodeId> = self
            .multicast
            .records
            .iter()
            .filter(|(_, m)| now >= m.received + LIFETIME)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(old) = self.multicast.records.remove(&id) {
                self.announce_membership_diff(id, &old.groups, &BTreeSet::new());
                self.multicast.retire_trees(now);
            }
        }
        let refresh = self.multicast.last.is_some_and(|l| now >= l + REFRESH);
        let due = self.multicast.due.is_some_and(|d| d <= now);
        // Nothing to say until something was joined once.
        if (refresh || due) && (self.multicast.last.is_some() || !self.multicast.joined.is_empty())
        {
            self.originate_membership(now);
        }
    }

    fn originate_membership(&mut self, now: Instant) {
        self.multicast.due = None;
        self.multicast.last = Some(now);
        let sequence = self.next_timestamp(now);
        let groups: Vec<IpAddr> = self.multicast.joined.iter().copied().collect();
        let mut record = self.take_buffer();
        MembershipRecord::emit_signed(
            &mut record,
            &self.secret,
            &self.certificate.fingerprint(),
            sequence,
            LIFETIME.as_secs() as u16,
            &groups,
        );
        self.flood_membership(now, &record, None);
        self.return_buffer(record);
    }

    fn flood_membership(&mut self, now: Instant, record: &[u8], except: Option<PeerId>) {
        for peer in self.peers.ids() {
            if Some(peer) == except || !self.neighbour(now, peer) {
                continue;
            }
            self.send_frame(now, peer, Frame::Membership(record), Via::Direct);
        }
    }

    /// Gives a new neighbour every membership record this node holds.
    pub(super) fn sync_membership(&mut self, now: Instant, peer: PeerId) {
        if self.multicast.last.is_some() {
            self.multicast.due = Some(now);
        }
        let records: Vec<Vec<u8>> = self
            .multicast
            .records
            .values()
            .map(|m| m.bytes.clone())
            .collect();
        for record in records {
            self.send_frame(now, peer, Frame::Membership(&record), Via::Direct);
        }
    }

    /// A membership record from neighbour `from`.
    pub(super) fn on_membership(&mut self, now: Instant, from: PeerId, record: &[u8]) {
        let fingerprint = match MembershipRecord::decode(record) {
            Ok(decoded) => *decoded.certificate,
            Err(error) => {
                self.stats.lsa_rejected += 1;
                debug!(%error, "membership record refused");
                return;
            }
        };
        let Some(certificate) =
            self.certificate_for_record(now, &fingerprint, RecordKind::Membership, from, record)
        else {
            return;
        };
        // The same record again (it floods in from every neighbour): no
        // signature to check.
        if self
            .multicast
            .records
            .get(&certificate.node_id())
            .is_some_and(|m| m.bytes.as_slice() == record)
        {
            return;
        }
        let unix_now = self.unix_now(now);
        let verified = match verify_membership(record, &certificate, &self.ca, unix_now) {
            Ok(verified) => verified,
            Err(error) => {
                self.stats.lsa_rejected += 1;
                debug!(%error, "membership record refused");
                return;
            }
        };
        let origin = verified.origin;
        if origin == self.node_id() {
            return;
        }
        if self
            .multicast
            .records
            .get(&origin)
            .is_some_and(|m| m.sequence >= verified.sequence)
        {
            return;
        }
        self.routing.by_prefix.insert(prefix(&origin), origin);
        if let Some(peer) = self.peer_for_certificate(now, &verified.certificate)
            && self.peers[peer].certificate.is_none()
        {
            self.bind_identity(peer, verified.certificate.clone());
        }
        let mut groups = BTreeSet::new();
        for group in verified.groups.iter().take(MAX_GROUPS) {
            if is_carried(*group)
                && self
                    .multicast
                    .config
                    .may_join(*group, verified.certificate.groups())
            {
                groups.insert(*group);
            } else {
                self.stats.mcast_denied += 1;
            }
        }
        let old = self
            .multicast
            .records
            .get(&origin)
            .map(|m| m.groups.clone())
            .unwrap_or_default();
        self.announce_membership_diff(origin, &old, &groups);
        let changed = old != groups;
        let overlap = changed && groups_overlap(&self.multicast.joined, &old, &groups);
        if changed {
            self.multicast.retire_trees(now);
        }
        self.multicast.records.insert(
            origin,
            Membership {
                sequence: verified.sequence,
                received: now,
                groups,
                bytes: record.to_vec(),
                certificate: verified.certificate,
            },
        );
        if overlap {
            self.update_mesh(now);
        }
        self.flood_membership(now, record, Some(from));
    }

    fn announce_membership_diff(
        &mut self,
        node: NodeId,
        old: &BTreeSet<IpAddr>,
        new: &BTreeSet<IpAddr>,
    ) {
        let name = self.name_of(&node);
        for group in new.difference(old) {
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::GroupJoined {
                    group: *group,
                    node,
                    name: name.clone(),
                },
            );
        }
        for group in old.difference(new) {
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::GroupLeft {
                    group: *group,
                    node,
                    name: name.clone(),
                },
            );
        }
    }
}

/// Whether a member's groups before or after a change include one of
/// `joined`.
fn groups_overlap(
    joined: &BTreeSet<IpAddr>,
    old: &BTreeSet<IpAddr>,
    new: &BTreeSet<IpAddr>,
) -> bool {
    old.iter().chain(new).any(|g| joined.contains(g))
}
