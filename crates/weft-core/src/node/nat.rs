//! NAT traversal: endpoint candidates, coordinated hole punching, and the
//! path kind each peer is reached by.
//!
//! - **Candidates.** A node's candidates are the addresses of its own
//!   interfaces (the daemon hands them in with [`Node::set_local_addresses`];
//!   the core never asks the OS) and its *reflexive* endpoints: the source
//!   address and port its session peers report seeing its packets come
//!   from, in an `Observed` frame (kind 11) sealed in their session. A node
//!   sends each peer an `Observed` frame when it first hears it straight
//!   from the underlay, when that address changes, and every
//!   [`OBSERVED_REFRESH`]. It advertises at most [`MAX_CANDIDATES`]
//!   candidates to its session peers (`Candidates`, kind 12) and the
//!   reflexive ones, once two peers reported them, in its DHT record.
//!   Only authenticated frames add candidates: nothing from an
//!   unauthenticated datagram does. Bounds: [`MAX_LOCAL`] local addresses,
//!   [`MAX_REFLEXIVE`] reflexive ones with at most [`MAX_REPORTERS`]
//!   reporters each (the least reported one makes room), and
//!   [`MAX_CANDIDATES`] candidates per peer.
//! - **Preference.** A receiver ranks a peer's candidates: an address in
//!   one of its own subnets (same LAN) first, then IPv6, then reflexive
//!   IPv4. A local candidate outside the receiver's subnets (someone
//!   else's LAN) is never tried: a node sends outside its own networks only
//!   to addresses that are reachable there.
//! - **Punching.** A node wants a direct path to a peer when it keeps its
//!   session (configured, picked, data in the last two minutes, or packets
//!   waiting), the direct link is not up, and the peer has a candidate it
//!   may try other than the current endpoint (which the link's probes
//!   cover) — or its link *through the NATs* went down, when the peer may
//!   know the way back. It then sends the peer a `Candidates` frame with
//!   the *call* flag, end to end in their session, so it travels the
//!   relayed route when there is no direct one: the relay can neither read
//!   nor forge it. Both sides then send pings of their session straight to
//!   each other's ranked candidates: the caller at once, the callee as soon
//!   as the call arrives (and it answers with its own candidates), in
//!   rounds at [`ROUNDS`] after the start; while a same-LAN candidate is
//!   known, the first two rounds go to LAN candidates only. Each ping and
//!   pong is authenticated by the session: the first pong from a candidate
//!   (which already moved the endpoint, as any authenticated packet does)
//!   proves the path both ways, marks the link up, and ends the attempt; so
//!   does the link coming up by its own probes meanwhile. Data keeps to the
//!   relay until the link has settled and routing finds it better (see
//!   `routing`).
//! - **Failure and retry.** An attempt that got no answer [`GRACE`] after
//!   its last round fails; the next is allowed after 10 s, doubling up to
//!   [`MAX_BACKOFF`], for calls received too. A direct link that goes down
//!   (the NAT's mapping died) allows a new attempt after
//!   [`REPUNCH_AFTER`]: meanwhile traffic takes the relay, and the link's
//!   own probes keep trying the old endpoint.
//! - **Keepalive.** An idle link through the NATs is probed every
//!   [`PUNCHED_PROBE_IDLE`] (6 s) rather than every `probe_idle`: 46 B/s on
//!   the wire for the link, both ways, which keeps 30 s mappings open.
//! - **Symmetric NATs** (a new mapping per destination): weft predicts no
//!   ports. The side behind it gets through only if the other side's NAT
//!   accepts packets from any port of the address it sent to; against a
//!   port-restricted NAT (Linux masquerade) the pair stays relayed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::debug;

use super::peers::PeerId;
use super::{Node, Source, Via};
use crate::identity::NodeId;
use crate::node::LinkHealth;
use crate::wire::{CandidateKind, CandidateList, Frame, MAX_CANDIDATES};

/// Local addresses a node keeps.
const MAX_LOCAL: usize = 8;
/// Reflexive endpoints a node keeps.
const MAX_REFLEXIVE: usize = 4;
/// Distinct reporters remembered per reflexive endpoint.
const MAX_REPORTERS: usize = 8;
/// Local candidates advertised at most (the rest of
/// [`MAX_CANDIDATES`] goes to reflexive ones).
const MAX_LOCAL_ADVERTISED: usize = 4;
/// A peer is told again where its packets come from this often.
const OBSERVED_REFRESH: Duration = Duration::from_secs(60);
/// When the punching rounds go out, after the attempt starts.
const ROUNDS: [Duration; 8] = [
    Duration::from_millis(0),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
    Duration::from_millis(3500),
    Duration::from_millis(5000),
];
/// Rounds that go only to same-LAN candidates while there are any.
const LAN_ONLY_ROUNDS: usize = 2;
/// How long after its last round an attempt waits for an answer.
const GRACE: Duration = Duration::from_secs(1);
/// Wait after the first failed attempt; doubles per failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// A punched link that went down may be punched again after this.
const REPUNCH_AFTER: Duration = Duration::from_secs(1);
/// Idle probe interval of a link through the peer's NAT: a probe and its
/// answer each way (4 × 41 bytes of UDP payload, 4 × 69 on the wire with
/// IPv4 and UDP headers) every 6 s is 27 B/s of payload and 46 B/s on the
/// wire for both directions together, and keeps NAT mappings that time
/// out after 30 s open with room to spare. Traffic probes at the active
/// rate at once (`LinkMonitor::mark_active`).
const PUNCHED_PROBE_IDLE: Duration = Duration::from_secs(6);
/// Least time between two candidate lists sent to one peer in answer to
/// calls.
const ANSWER_INTERVAL: Duration = Duration::from_secs(1);
/// Pings of one attempt remembered (for matching pongs).
const MAX_PUNCH_PROBES: usize = MAX_CANDIDATES * ROUNDS.len();

/// One address of the node's own interfaces, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalAddress {
    /// The address, with the port the node listens on.
    pub endpoint: SocketAddr,
    /// The length of the interface's prefix (its subnet).
    pub prefix_len: u8,
}

/// How packets to a peer travel now, as `weft status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    /// No way to it now.
    None,
    /// Straight to an endpoint configured or found in the DHT.
    Direct,
    /// Straight to an address in one of this node's own subnets.
    DirectLan,
    /// Straight through the peer's NAT: to an address at which others
    /// see it (not one of its own), opened by both sides sending to each
    /// other (hole punching).
    Punched,
    /// Through other nodes (`PeerStatus::via`).
    Relayed,
}

/// What became of one candidate this node tried to punch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateTry {
    /// The candidate.
    pub endpoint: SocketAddr,
    /// What the peer said it is.
    pub kind: CandidateKind,
    /// Pings sent to it in the last attempt.
    pub pings: u32,
    /// Whether it answered.
    pub answered: bool,
}

/// The node's own candidates.
#[derive(Debug, Default)]
pub(super) struct NatState {
    local: Vec<LocalAddress>,
    reflexive: Vec<Reflexive>,
    /// The candidates changed (when) since they were last sent to the
    /// peers.
    changed: Option<Instant>,
}

#[derive(Debug)]
struct Reflexive {
    endpoint: SocketAddr,
    reporters: Vec<NodeId>,
    last: Instant,
}

/// NAT traversal state of one peer.
#[derive(Debug, Default)]
pub(super) struct PeerNat {
    /// The peer's candidates, as it last sent them.
    candidates: Vec<(CandidateKind, SocketAddr)>,
    punch: Option<Punch>,
    /// No attempt before this (backoff).
    not_before: Option<Instant>,
    failures: u32,
    /// The last attempt's candidates, for status.
    tried: Vec<CandidateTry>,
    /// The direct link was found by punching.
    pub(super) punched: bool,
    /// Where this node last heard the peer straight from the underlay.
    pub(super) heard_from: Option<SocketAddr>,
    /// What this node last told the peer about it, and when.
    observed_told: Option<(SocketAddr, Instant)>,
    /// When this node last sent the peer its candidates.
    candidates_sent: Option<Instant>,
}

#[derive(Debug)]
struct Punch {
    started: Instant,
    /// The next round to send.
    round: usize,
    /// Pings sent: id, candidate, when.
    probes: Vec<(u64, SocketAddr, Instant)>,
}

impl NatState {
    /// The candidates this node advertises, most preferred first: its own
    /// addresses, then reflexive ones, most reported first.
    fn candidates(&self) -> Vec<(CandidateKind, SocketAddr)> {
        let mut out: Vec<(CandidateKind, SocketAddr)> = Vec::new();
        let mut local: Vec<&LocalAddress> = self.local.iter().collect();
        // IPv6 before IPv4 among equals; the receiver puts its LAN first.
        local.sort_by_key(|l| (!l.endpoint.is_ipv6(), l.endpoint));
        for l in local.into_iter().take(MAX_LOCAL_ADVERTISED) {
            out.push((CandidateKind::Local, l.endpoint));
        }
        let mut reflexive: Vec<&Reflexive> = self.reflexive.iter().collect();
        reflexive.sort_by(|a, b| {
            b.reporters
                .len()
                .cmp(&a.reporters.len())
                .then(a.endpoint.cmp(&b.endpoint))
        });
        for r in reflexive {
            if out.len() >= MAX_CANDIDATES {
                break;
            }
            if !out.iter().any(|(_, e)| *e == r.endpoint) {
                out.push((CandidateKind::Reflexive, r.endpoint));
            }
        }
        out
    }

    /// The rank of a peer's candidate (lower is better), or `None` if this
    /// node must not try it.
    fn rank(&self, kind: CandidateKind, endpoint: SocketAddr) -> Option<u8> {
        let ip = endpoint.ip();
        if endpoint.port() == 0 || ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return None;
        }
        if self.local.iter().any(|l| l.endpoint == endpoint) {
            return None;
        }
        if self
            .local
            .iter()
            .any(|l| same_subnet(l.endpoint.ip(), ip, l.prefix_len))
        {
            return Some(0);
        }
        let family_ok = self.local.is_empty()
            || self
                .local
                .iter()
                .any(|l| l.endpoint.is_ipv6() == endpoint.is_ipv6());
        if !family_ok {
            return None;
        }
        match (kind, ip) {
            (_, IpAddr::V6(v6)) if is_global_v6(&v6) => Some(1),
            (CandidateKind::Reflexive, IpAddr::V4(_)) => Some(2),
            // Another network's LAN address: never tried from outside it.
            (CandidateKind::Local, _) | (CandidateKind::Reflexive, IpAddr::V6(_)) => None,
        }
    }

    /// Whether `ip` is in one of this node's own subnets.
    pub(super) fn on_lan(&self, ip: IpAddr) -> bool {
        self.local
            .iter()
            .any(|l| same_subnet(l.endpoint.ip(), ip, l.prefix_len))
    }

    /// A peer reported seeing this node at `endpoint`. Returns whether the
    /// report is news (a new reporter for that endpoint).
    fn note_observed(&mut self, now: Instant, reporter: NodeId, endpoint: SocketAddr) -> bool {
        if let Some(r) = self.reflexive.iter_mut().find(|r| r.endpoint == endpoint) {
            r.last = now;
            if r.reporters.contains(&reporter) {
                return false;
            }
            if r.reporters.len() < MAX_REPORTERS {
                r.reporters.push(reporter);
            }
            return true;
        }
        // A reporter's older report gives way: it sees this node at one
        // place at a time.
        for r in &mut self.reflexive {
            r.reporters.retain(|id| *id != reporter);
        }
        self.reflexive.retain(|r| !r.reporters.is_empty());
        if self.reflexive.len() >= MAX_REFLEXIVE {
            let least = self
                .reflexive
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| (r.reporters.len(), r.last))
                .map(|(i, _)| i);
            if let Some(i) = least {
                self.reflexive.remove(i);
            }
        }
        self.reflexive.push(Reflexive {
            endpoint,
            reporters: vec![reporter],
            last: now,
        });
        self.changed.get_or_insert(now);
        true
    }
}

impl Node {
    /// The addresses of this node's own interfaces, with the port it
    /// listens on and each interface's prefix length (the daemon reads
    /// them from the OS; at most 8 are kept). They become
    /// candidates for peers, and tell which peers share a LAN with it.
    pub fn set_local_addresses(&mut self, now: Instant, mut addresses: Vec<LocalAddress>) {
        addresses.sort();
        addresses.dedup();
        addresses.truncate(MAX_LOCAL);
        if addresses != self.nat.local {
            self.nat.local = addresses;
            self.nat.changed.get_or_insert(now);
        }
        self.after_input(now);
    }

    /// The candidates this node advertises now, most preferred first.
    pub fn candidates(&self) -> Vec<(CandidateKind, SocketAddr)> {
        self.nat.candidates()
    }

    /// How packets to peer `peer` travel now.
    pub(super) fn path_kind(&self, now: Instant, peer: PeerId) -> PathKind {
        let p = &self.peers[peer];
        if !self.via_names(now, p).is_empty() {
            return PathKind::Relayed;
        }
        let Some(endpoint) = p.endpoint else {
            return PathKind::None;
        };
        if p.monitor.health() == LinkHealth::Down && self.via_names(now, p).is_empty() {
            // Straight to an endpoint that does not answer: the last resort.
            return PathKind::Direct;
        }
        let through_nat = self.through_nat(peer);
        if self.nat.on_lan(endpoint.ip()) {
            PathKind::DirectLan
        } else if through_nat {
            PathKind::Punched
        } else {
            PathKind::Direct
        }
    }

    /// Whether the direct path to `peer` goes through its NAT: found by
    /// punching, or at one of its reflexive candidates while it listed
    /// local ones and none of them is the endpoint (a peer that listed no
    /// local candidates may have a public address of its own).
    fn through_nat(&self, peer: PeerId) -> bool {
        let p = &self.peers[peer];
        let Some(endpoint) = p.endpoint else {
            return false;
        };
        if p.nat.punched {
            return true;
        }
        let listed = |kind: CandidateKind| p.nat.candidates.iter().filter(move |(k, _)| *k == kind);
        listed(CandidateKind::Reflexive).any(|(_, e)| *e == endpoint)
            && listed(CandidateKind::Local).next().is_some()
            && !listed(CandidateKind::Local).any(|(_, e)| *e == endpoint)
    }

    /// The candidates tried in the last attempt to punch to `peer`.
    pub(super) fn candidates_tried(&self, peer: PeerId) -> Vec<CandidateTry> {
        self.peers[peer].nat.tried.clone()
    }

    /// When NAT traversal work for `peer` is due.
    pub(super) fn nat_deadline(&self, peer: PeerId) -> Option<Instant> {
        let p = &self.peers[peer];
        // Without a session that can carry it, NAT work only forgets its
        // state (`nat_timers`): nothing is due, and no deadline may stay in
        // the past (a node woke up for it again and again).
        let sendable = p
            .current
            .as_ref()
            .is_some_and(|t| t.confirmed && t.sent() < self.config.reject_after_messages);
        if !sendable {
            return None;
        }
        let punch = p.nat.punch.as_ref().map(|punch| {
            punch.started
                + ROUNDS
                    .get(punch.round)
                    .copied()
                    .unwrap_or(ROUNDS[ROUNDS.len() - 1] + GRACE)
        });
        // Where the peer is seen is told again after a while, and at once
        // (a past deadline) when it is new or moved, while a session can
        // carry it.
        let told = match (p.nat.heard_from, p.nat.observed_told) {
            (None, _) => None,
            (Some(seen), Some((told, at))) if told == seen => Some(at + OBSERVED_REFRESH),
            (Some(_), told) => Some(told.map_or(self.start, |(_, at)| at)),
        };
        // The end of a wait before the next attempt, while one may be
        // wanted (`nat_timers` forgets a wait that ended unwanted, so no
        // deadline stays in the past).
        let wait = p
            .nat
            .not_before
            .filter(|_| p.nat.punch.is_none() && !p.nat.candidates.is_empty());
        [punch, told, wait].into_iter().flatten().min()
    }

    /// NAT traversal work for one peer, part of its timers: tell it where
    /// it is seen, send it new candidates, run or start an attempt.
    pub(super) fn nat_timers(&mut self, now: Instant, peer: PeerId) {
        if !self.usable_current(now, peer) {
            // Nothing is due without a session (no deadline may stay in
            // the past): the next session starts afresh.
            let p = &mut self.peers[peer];
            p.nat.punch = None;
            p.nat.punched = false;
            p.nat.observed_told = None;
            p.nat.not_before = None;
            return;
        }
        self.tell_observed(now, peer);
        // Through a NAT, an idle link is probed less often: enough to keep
        // the mappings open, at most 50 bytes a second for the link.
        let idle = self.through_nat(peer).then_some(PUNCHED_PROBE_IDLE);
        self.peers[peer].monitor.set_idle_interval(idle);
        if self.nat.changed.is_some() {
            self.send_candidates(now, peer, false);
        }
        if self.peers[peer].nat.punch.is_some() {
            self.punch_rounds(now, peer);
            return;
        }
        // A peer that never sent candidates (an older node, or one whose
        // first session packets are still on the way) is not called.
        // With nothing new to try itself, a node whose direct link through
        // the NATs went down still calls: the peer may have news (this
        // node's NAT may have given it a new port, which only the peer can
        // try). A link that needs no NAT traversal gets no calls.
        let p = &self.peers[peer];
        let repunch = p.monitor.health() == LinkHealth::Down && self.through_nat(peer);
        let wanted = !p.nat.candidates.is_empty()
            && self.wants_session(now, peer)
            && p.monitor.health() != LinkHealth::Up
            && p.nat.not_before.is_none_or(|at| now >= at)
            && (repunch || self.has_targets(peer));
        if wanted {
            self.start_punch(now, peer, true);
        } else if p.nat.not_before.is_some_and(|at| now >= at) {
            self.peers[peer].nat.not_before = None;
        }
    }

    /// Candidates changed: every peer was sent the new list by now.
    pub(super) fn nat_after_timers(&mut self) {
        self.nat.changed = None;
    }

    /// When the node's changed candidates are due to go to its peers.
    pub(super) fn nat_changed_at(&self) -> Option<Instant> {
        self.nat.changed
    }

    /// A direct link changed state: a link that went down may be punched
    /// again soon (the mapping may have died); one that came up needs no
    /// attempt.
    pub(super) fn nat_link_changed(&mut self, now: Instant, peer: PeerId, up: bool) {
        let p = &mut self.peers[peer];
        if up {
            p.nat.failures = 0;
            // The link's own probes got through during an attempt (the
            // peer's pings opened the way): the attempt succeeded.
            if p.nat.punch.take().is_some() {
                p.nat.punched = true;
                p.nat.not_before = None;
                self.stats.punch_succeeded += 1;
                debug!(peer = %p.name(), "hole punched: the link's probes answer");
            }
        } else if p.nat.punch.is_none() {
            p.nat.failures = 0;
            p.nat.not_before = Some(now + REPUNCH_AFTER);
        }
    }

    /// A session with `peer` was installed: it gets this node's candidates
    /// at once.
    pub(super) fn nat_session_installed(&mut self, now: Instant, peer: PeerId, first: bool) {
        if first {
            self.peers[peer].nat.observed_told = None;
        }
        self.send_candidates(now, peer, false);
    }

    /// An authenticated `Observed` frame from `peer`.
    pub(super) fn on_observed(&mut self, now: Instant, peer: PeerId, endpoint: SocketAddr) {
        let Some(id) = self.peers[peer].node_id else {
            return;
        };
        if self.nat.note_observed(now, id, endpoint) {
            self.stats.nat_observed_reports += 1;
            self.discovery.dht.note_reported_endpoint(endpoint);
        }
    }

    /// An authenticated `Candidates` frame from `peer`.
    pub(super) fn on_candidates(
        &mut self,
        now: Instant,
        peer: PeerId,
        call: bool,
        candidates: Vec<(CandidateKind, SocketAddr)>,
    ) {
        self.peers[peer].nat.candidates = candidates;
        if !call {
            return;
        }
        self.stats.punch_calls_received += 1;
        let answered_lately = self.peers[peer]
            .nat
            .candidates_sent
            .is_some_and(|at| now < at + ANSWER_INTERVAL);
        if !answered_lately {
            self.send_candidates(now, peer, false);
        }
        // The call says the caller's direct path does not work, whatever
        // this node's view of it (idle, it may not have noticed yet). The
        // backoff binds the callee too: a member that calls again and
        // again makes this node send at most one attempt's pings per
        // backoff period.
        let p = &self.peers[peer];
        if p.nat.punch.is_none()
            && p.nat.not_before.is_none_or(|at| now >= at)
            && self.has_targets(peer)
        {
            self.start_punch(now, peer, false);
        }
    }

    /// A pong straight from the underlay: if it answers a punching ping,
    /// the path to `from` works both ways. Returns whether it did.
    pub(super) fn on_punch_pong(
        &mut self,
        now: Instant,
        peer: PeerId,
        id: u64,
        from: SocketAddr,
    ) -> bool {
        let p = &mut self.peers[peer];
        let Some(punch) = &p.nat.punch else {
            return false;
        };
        let Some(&(_, target, sent)) = punch.probes.iter().find(|(probe, _, _)| *probe == id)
        else {
            return false;
        };
        for t in p.nat.tried.iter_mut().filter(|t| t.endpoint == target) {
            t.answered = true;
        }
        p.nat.punch = None;
        p.nat.punched = true;
        p.nat.failures = 0;
        p.nat.not_before = None;
        self.stats.punch_succeeded += 1;
        debug!(peer = %p.name(), %from, "hole punched: direct path works both ways");
        // The pong moved the endpoint already (an authenticated packet);
        // it is also the proof a handshake would give.
        let rtt = now.saturating_duration_since(sent);
        let transition = p.monitor.on_direct_handshake(now, Some(rtt));
        self.on_link_transition(now, peer, transition);
        true
    }

    fn tell_observed(&mut self, now: Instant, peer: PeerId) {
        let p = &self.peers[peer];
        let Some(seen) = p.nat.heard_from else {
            return;
        };
        let due = match p.nat.observed_told {
            None => true,
            Some((told, at)) => told != seen || now >= at + OBSERVED_REFRESH,
        };
        if due {
            self.peers[peer].nat.observed_told = Some((seen, now));
            self.send_frame(now, peer, Frame::Observed(seen), Via::Control);
        }
    }

    fn send_candidates(&mut self, now: Instant, peer: PeerId, call: bool) {
        let mut bytes = self.take_buffer();
        CandidateList::encode(&self.nat.candidates(), &mut bytes);
        self.peers[peer].nat.candidates_sent = Some(now);
        // Encoded here, so it decodes.
        if let Ok(list) = CandidateList::decode(&bytes) {
            let frame = Frame::Candidates { call, list };
            if let Some(sealed) = self.seal_frame(now, peer, &frame) {
                self.emit(now, peer, sealed, Via::Control);
            }
        }
        self.return_buffer(bytes);
    }

    /// The peer's candidates this node may try, best first. The current
    /// endpoint is left out: the link's own probes go there already (at
    /// four a second while it is down), so a link cut between two hosts
    /// that need no NAT traversal costs no punching.
    fn targets(&self, peer: PeerId) -> Vec<(u8, CandidateKind, SocketAddr)> {
        let p = &self.peers[peer];
        let mut out: Vec<(u8, CandidateKind, SocketAddr)> = p
            .nat
            .candidates
            .iter()
            .filter(|(_, endpoint)| p.endpoint != Some(*endpoint))
            .filter_map(|&(kind, endpoint)| Some((self.nat.rank(kind, endpoint)?, kind, endpoint)))
            .collect();
        out.sort();
        out.dedup_by_key(|(_, _, endpoint)| *endpoint);
        out
    }

    fn has_targets(&self, peer: PeerId) -> bool {
        !self.targets(peer).is_empty()
    }

    fn start_punch(&mut self, now: Instant, peer: PeerId, call: bool) {
        self.stats.punch_attempts += 1;
        let tried = self
            .targets(peer)
            .into_iter()
            .map(|(_, kind, endpoint)| CandidateTry {
                endpoint,
                kind,
                pings: 0,
                answered: false,
            })
            .collect();
        let p = &mut self.peers[peer];
        debug!(peer = %p.name(), call, "punching to the peer's candidates");
        p.nat.tried = tried;
        p.nat.punch = Some(Punch {
            started: now,
            round: 0,
            probes: Vec::new(),
        });
        if call {
            self.send_candidates(now, peer, true);
        }
        self.punch_rounds(now, peer);
    }

    /// Sends the rounds that are due; fails the attempt after the last.
    fn punch_rounds(&mut self, now: Instant, peer: PeerId) {
        loop {
            let Some(punch) = &self.peers[peer].nat.punch else {
                return;
            };
            let (started, round) = (punch.started, punch.round);
            let Some(&offset) = ROUNDS.get(round) else {
                if now >= started + ROUNDS[ROUNDS.len() - 1] + GRACE {
                    self.punch_failed(now, peer);
                }
                return;
            };
            if now < started + offset {
                return;
            }
            let targets = self.targets(peer);
            let lan_only = round < LAN_ONLY_ROUNDS && targets.iter().any(|(rank, ..)| *rank == 0);
            for (rank, kind, endpoint) in targets {
                if lan_only && rank != 0 {
                    continue;
                }
                let id = self.rng.next_u64();
                let p = &mut self.peers[peer];
                if let Some(t) = p.nat.tried.iter_mut().find(|t| t.endpoint == endpoint) {
                    t.pings += 1;
                } else if p.nat.tried.len() < MAX_CANDIDATES {
                    p.nat.tried.push(CandidateTry {
                        endpoint,
                        kind,
                        pings: 1,
                        answered: false,
                    });
                }
                if let Some(punch) = &mut p.nat.punch
                    && punch.probes.len() < MAX_PUNCH_PROBES
                {
                    punch.probes.push((id, endpoint, now));
                }
                self.stats.punch_pings_sent += 1;
                self.send_frame_to(now, peer, Frame::Ping { id }, endpoint);
            }
            if let Some(punch) = &mut self.peers[peer].nat.punch {
                punch.round += 1;
            }
        }
    }

    fn punch_failed(&mut self, now: Instant, peer: PeerId) {
        self.stats.punch_failed += 1;
        let p = &mut self.peers[peer];
        p.nat.punch = None;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << p.nat.failures.min(8))
            .min(MAX_BACKOFF);
        p.nat.failures = p.nat.failures.saturating_add(1);
        p.nat.not_before = Some(now + backoff);
        debug!(peer = %p.name(), ?backoff, "no candidate answered: staying relayed");
    }

    /// Notes where an authenticated packet of `peer` came from.
    pub(super) fn nat_heard(&mut self, peer: PeerId, source: Source) {
        if let Source::Direct(from) = source {
            self.peers[peer].nat.heard_from = Some(from);
        }
    }
}

/// Whether `a` and `b` share the first `prefix_len` bits.
fn same_subnet(a: IpAddr, b: IpAddr, prefix_len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let len = u32::from(prefix_len.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let len = u32::from(prefix_len.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

/// Global unicast IPv6 (2000::/3): reachable from other networks.
fn is_global_v6(ip: &std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xe000 == 0x2000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(ip: [u8; 4], prefix_len: u8) -> LocalAddress {
        LocalAddress {
            endpoint: SocketAddr::from((ip, 4800)),
            prefix_len,
        }
    }

    #[test]
    fn same_lan_ranks_first_and_foreign_lan_addresses_are_never_tried() {
        let nat = NatState {
            local: vec![local([192, 168, 1, 2], 24)],
            ..NatState::default()
        };
        let lan = SocketAddr::from(([192, 168, 1, 9], 4800));
        let other_lan = SocketAddr::from(([10, 0, 0, 9], 4800));
        let public = SocketAddr::from(([203, 0, 113, 7], 31000));
        assert_eq!(nat.rank(CandidateKind::Local, lan), Some(0));
        assert_eq!(nat.rank(CandidateKind::Local, other_lan), None);
        assert_eq!(nat.rank(CandidateKind::Reflexive, public), Some(2));
        assert_eq!(
            nat.rank(CandidateKind::Local, local([192, 168, 1, 2], 24).endpoint),
            None,
            "own address"
        );
        assert_eq!(
            nat.rank(
                CandidateKind::Reflexive,
                SocketAddr::from(([127, 0, 0, 1], 1))
            ),
            None
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a base instant; only offsets matter
    fn reflexive_endpoints_are_bounded_and_a_reporter_counts_once() {
        let mut nat = NatState::default();
        let now = Instant::now();
        let a = NodeId::from_bytes([1; 32]);
        let endpoint = SocketAddr::from(([203, 0, 113, 7], 4800));
        assert!(nat.note_observed(now, a, endpoint));
        assert!(!nat.note_observed(now, a, endpoint));
        for i in 0..20u8 {
            nat.note_observed(
                now,
                NodeId::from_bytes([i + 2; 32]),
                SocketAddr::from(([203, 0, 113, i], 1)),
            );
        }
        assert!(nat.reflexive.len() <= MAX_REFLEXIVE);
        assert!(nat.candidates().len() <= MAX_CANDIDATES);
    }

    #[test]
    fn ipv6_candidates_need_an_ipv6_address_here_and_global_scope() {
        let v6 = |text: &str| SocketAddr::new(text.parse().unwrap(), 4800);
        let v4_only = NatState {
            local: vec![local([192, 168, 1, 2], 24)],
            ..NatState::default()
        };
        assert_eq!(v4_only.rank(CandidateKind::Local, v6("2001:db8::7")), None);
        let dual = NatState {
            local: vec![
                local([192, 168, 1, 2], 24),
                LocalAddress {
                    endpoint: v6("2001:db8:1::2"),
                    prefix_len: 64,
                },
            ],
            ..NatState::default()
        };
        assert_eq!(
            dual.rank(CandidateKind::Local, v6("2001:db8:1::9")),
            Some(0)
        );
        assert_eq!(
            dual.rank(CandidateKind::Local, v6("2001:db8:2::9")),
            Some(1)
        );
        assert_eq!(
            dual.rank(CandidateKind::Reflexive, v6("2001:db8:2::9")),
            Some(1)
        );
        assert_eq!(
            dual.rank(CandidateKind::Local, v6("fd00::9")),
            None,
            "another ULA"
        );
        // Own interfaces first, IPv6 before IPv4.
        let ours = dual.candidates();
        assert_eq!(ours[0], (CandidateKind::Local, v6("2001:db8:1::2")));
        assert_eq!(ours[1].1, local([192, 168, 1, 2], 24).endpoint);
    }

    #[test]
    fn subnets_compare_by_prefix() {
        let a = IpAddr::from([198, 18, 10, 1]);
        assert!(same_subnet(a, IpAddr::from([198, 18, 10, 200]), 24));
        assert!(!same_subnet(a, IpAddr::from([198, 18, 11, 1]), 24));
        assert!(same_subnet(a, IpAddr::from([198, 19, 0, 0]), 15));
        assert!(!same_subnet(
            a,
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            0
        ));
    }
}
