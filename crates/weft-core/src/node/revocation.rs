//! The node's side of revocation: refusing revoked certificates, ending
//! their sessions, and passing the newest revocation list on.
//!
//! A node knows what is revoked from two places: the newest CA-signed
//! [`RevocationList`] it holds (from its operator, or learnt from a peer)
//! and a local blocklist of certificate fingerprints (its operator's only;
//! never passed on). A handshake whose certificate either revokes is
//! refused (`handshake_rejected_revoked`), and when a list arrives, every
//! session with a peer it revokes ends at once (`sessions_revoked`,
//! [`Event::PeerRevoked`]).
//!
//! Spreading (PROTOCOL.md §9.2): a node that holds a list offers its
//! version ([`Frame::RevocationOffer`]) to each peer when their first
//! session comes up, to every peer when it installs a newer list, and
//! every [`OFFER_INTERVAL`] after that (which repairs lost frames and
//! reaches peers that were away). A peer that holds an older version (or
//! none) answers with its own offer; a node that hears an older version
//! sends its list in pieces ([`Frame::RevocationChunk`]), to one peer at
//! most every [`PUSH_INTERVAL`]. The receiver reassembles pieces per
//! sending peer (at most [`MAX_ASSEMBLIES`] at once, each for at most
//! [`ASSEMBLY_TIMEOUT`], so pieces of later pushes fill the gaps that loss
//! left in earlier ones), verifies the whole list against its CA and
//! installs it if its version is newer: the newest valid list wins, and a
//! member sending garbage spoils only its own reassembly. Bounds: a list is
//! at most 64 KiB (64 pieces); a node holds one list, four reassemblies and
//! one push time per peer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::peers::PeerId;
use super::{Event, Node, Via, push_event};
use crate::identity::{Certificate, NodeId, RevocationError, RevocationList};
use crate::route::Metric;
use crate::wire::{Frame, REVOCATION_CHUNK_LEN};

/// How often a node that holds a list offers it to its peers again.
pub(super) const OFFER_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest time between two pushes of the list to one peer.
pub(super) const PUSH_INTERVAL: Duration = Duration::from_secs(2);
/// How long a reassembly keeps its pieces: across three periodic offers,
/// so that over a lossy path the pieces of successive pushes add up.
pub(super) const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(180);
/// Shortest time between two asks for the same version (so that offers
/// from several peers at once bring one push, not one from each).
pub(super) const ASK_INTERVAL: Duration = Duration::from_secs(5);
/// Reassemblies under way at once, at most.
pub(super) const MAX_ASSEMBLIES: usize = 4;

/// What a node is told about revocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationConfig {
    /// A list from the operator; checked against the CA when the node
    /// starts (a newer one from a peer replaces it).
    pub list: Option<RevocationList>,
    /// Fingerprints of certificates ([`Certificate::fingerprint`]) this
    /// node refuses whatever any list says. Local: never passed on.
    pub blocklist: Vec<[u8; 32]>,
}

/// Revocation state of a node.
#[derive(Debug, Default)]
pub(super) struct RevocationState {
    list: Option<RevocationList>,
    blocklist: BTreeSet<[u8; 32]>,
    assemblies: BTreeMap<NodeId, Assembly>,
    /// When the list was last pushed to each peer.
    pushed: BTreeMap<NodeId, Instant>,
    /// The last version asked for, and when.
    asked: Option<(u64, Instant)>,
    /// The next periodic offer (only while a list is held).
    offer_due: Option<Instant>,
}

#[derive(Debug)]
struct Assembly {
    version: u64,
    pieces: Vec<Option<Vec<u8>>>,
    received: usize,
    started: Instant,
}

impl RevocationState {
    /// State for `config`, whose list the caller has verified.
    pub(super) fn new(config: RevocationConfig) -> Self {
        Self {
            list: config.list,
            blocklist: config.blocklist.into_iter().collect(),
            ..Self::default()
        }
    }

    /// The version held (0: none).
    fn version(&self) -> u64 {
        self.list.as_ref().map_or(0, RevocationList::version)
    }

    /// When [`Node::revocation_timers`] is next due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let assembly = self
            .assemblies
            .values()
            .map(|a| a.started + ASSEMBLY_TIMEOUT)
            .min();
        match (self.offer_due, assembly) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Node {
    /// The revocation list this node holds, if any.
    pub fn revocation_list(&self) -> Option<&RevocationList> {
        self.revocation.list.as_ref()
    }

    /// Installs `list` if the network's CA signed it and it is newer than
    /// the one held (returns whether it was installed): sessions with the
    /// peers it revokes end, and the node passes it on.
    pub fn set_revocations(
        &mut self,
        now: Instant,
        list: RevocationList,
    ) -> Result<bool, RevocationError> {
        list.verify(&self.ca)?;
        if list.version() <= self.revocation.version() {
            return Ok(false);
        }
        self.install_revocations(now, list, None);
        self.after_input(now);
        Ok(true)
    }

    /// The local blocklist: fingerprints of certificates refused whatever
    /// any list says.
    pub fn blocklist(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.revocation.blocklist.iter()
    }

    /// Replaces the local blocklist at run time (a config reload). Sessions
    /// and handshakes with peers whose certificate it now lists end at once,
    /// as a revocation ends them ([`Event::PeerRevoked`]); a certificate it
    /// no longer lists may open sessions again (unless the list revokes
    /// it), and gets back the IPv4 address it holds. Returns how many
    /// sessions ended.
    pub fn set_blocklist(&mut self, now: Instant, blocklist: Vec<[u8; 32]>) -> u64 {
        let blocklist: BTreeSet<[u8; 32]> = blocklist.into_iter().collect();
        let unblocked: Vec<[u8; 32]> = self
            .revocation
            .blocklist
            .difference(&blocklist)
            .copied()
            .collect();
        self.revocation.blocklist = blocklist;
        self.sync_dht_revocations();
        let before = self.stats.sessions_revoked;
        for peer in self.peers.ids() {
            let Some(certificate) = self.peers[peer].certificate.clone() else {
                continue;
            };
            if self.is_revoked(&certificate) {
                self.end_revoked(now, peer);
            } else if unblocked.contains(&certificate.fingerprint()) {
                if let Some(net) = certificate.ipv4() {
                    self.rebind_ipv4(net.addr);
                }
                // A configured peer is called again.
                let p = &mut self.peers[peer];
                let idle = p.current.is_none() && p.pending.is_none() && p.handshake_due.is_none();
                if p.configured && idle && p.endpoint.is_some() {
                    p.handshake_due = Some(now);
                }
            }
        }
        self.after_input(now);
        self.stats.sessions_revoked - before
    }

    /// Gives the DHT what this node revokes, so it neither keeps, serves
    /// nor finds revoked nodes' records.
    pub(super) fn sync_dht_revocations(&mut self) {
        self.discovery.dht.set_revoked(crate::dht::Revoked {
            list: self.revocation.list.clone(),
            blocklist: self.revocation.blocklist.clone(),
        });
    }

    /// Whether `certificate` is revoked by the list or the blocklist.
    pub(super) fn is_revoked(&self, certificate: &Certificate) -> bool {
        self.revocation
            .blocklist
            .contains(&certificate.fingerprint())
            || self
                .revocation
                .list
                .as_ref()
                .is_some_and(|list| list.revokes(certificate))
    }

    /// Refuses a handshake with a revoked `certificate` (counted, logged,
    /// reported); true if it was refused. Called first among a
    /// handshake's certificate checks.
    pub(super) fn refuse_revoked(&mut self, from: SocketAddr, certificate: &Certificate) -> bool {
        if !self.is_revoked(certificate) {
            return false;
        }
        self.stats.handshake_rejected_revoked += 1;
        self.reject(
            from,
            format!("certificate of '{}' is revoked", certificate.name()),
        );
        true
    }

    /// Offers the list held (if any) to `peer`.
    pub(super) fn offer_revocations(&mut self, now: Instant, peer: PeerId) {
        let version = self.revocation.version();
        if version > 0 {
            self.send_frame(
                now,
                peer,
                Frame::RevocationOffer { version },
                Via::Route(Metric::Latency, 0),
            );
        }
    }

    /// A peer holds list `version`.
    pub(super) fn on_revocation_offer(&mut self, now: Instant, peer: PeerId, version: u64) {
        let mine = self.revocation.version();
        if version < mine {
            self.push_revocations(now, peer);
        } else if version > mine {
            // Ask (by saying what we hold), not again for the same
            // version within ASK_INTERVAL.
            let asked = self
                .revocation
                .asked
                .is_some_and(|(v, at)| v >= version && now < at + ASK_INTERVAL);
            if !asked {
                self.revocation.asked = Some((version, now));
                self.send_frame(
                    now,
                    peer,
                    Frame::RevocationOffer { version: mine },
                    Via::Route(Metric::Latency, 0),
                );
            }
        }
    }

    /// Piece `index` of `count` of list `version`, from `peer`.
    pub(super) fn on_revocation_chunk(
        &mut self,
        now: Instant,
        peer: PeerId,
        version: u64,
        index: u16,
        count: u16,
        data: &[u8],
    ) {
        let Some(id) = self.peers[peer].node_id else {
            return;
        };
        if version <= self.revocation.version() {
            return;
        }
        let (index, count) = (usize::from(index), usize::from(count));
        // Every piece but the last is full; the decoder bounded the rest.
        if index + 1 < count && data.len() != REVOCATION_CHUNK_LEN {
            self.stats.revocation_rejected += 1;
            return;
        }
        let state = &mut self.revocation;
        let fresh = state.assemblies.get(&id).is_some_and(|a| {
            a.version == version && a.pieces.len() == count && now < a.started + ASSEMBLY_TIMEOUT
        });
        if !fresh {
            state.assemblies.remove(&id);
            if state.assemblies.len() >= MAX_ASSEMBLIES
                && let Some(oldest) = state
                    .assemblies
                    .iter()
                    .min_by_key(|(_, a)| a.started)
                    .map(|(id, _)| *id)
            {
                state.assemblies.remove(&oldest);
            }
            state.assemblies.insert(
                id,
                Assembly {
                    version,
                    pieces: vec![None; count],
                    received: 0,
                    started: now,
                },
            );
        }
        let Some(assembly) = state.assemblies.get_mut(&id) else {
            return;
        };
        if assembly.pieces[index].is_none() {
            assembly.pieces[index] = Some(data.to_vec());
            assembly.received += 1;
        }
        if assembly.received < count {
            return;
        }
        let Some(assembly) = state.assemblies.remove(&id) else {
            return;
        };
        let bytes: Vec<u8> = assembly.pieces.into_iter().flatten().flatten().collect();
        let list = match RevocationList::from_bytes(&bytes) {
            Ok(list) if list.version() == version => list,
            Ok(_) | Err(_) => {
                self.stats.revocation_rejected += 1;
                debug!(peer = %self.peers[peer].name(), "undecodable revocation list");
                return;
            }
        };
        if let Err(error) = list.verify(&self.ca) {
            self.stats.revocation_rejected += 1;
            debug!(peer = %self.peers[peer].name(), %error, "revocation list refused");
            return;
        }
        self.stats.revocation_lists_received += 1;
        self.install_revocations(now, list, Some(peer));
    }

    /// Periodic offers, and reassemblies that waited too long.
    pub(super) fn revocation_timers(&mut self, now: Instant) {
        self.revocation
            .assemblies
            .retain(|_, a| now < a.started + ASSEMBLY_TIMEOUT);
        if self.revocation.offer_due.is_some_and(|at| at <= now) {
            self.revocation.offer_due = Some(now + OFFER_INTERVAL);
            for peer in self.peers.ids() {
                if self.usable_current(now, peer) {
                    self.offer_revocations(now, peer);
                }
            }
        }
    }

    /// Makes `list` (verified, newer) the one held: ends the sessions it
    /// revokes and offers it to every peer.
    fn install_revocations(&mut self, now: Instant, list: RevocationList, from: Option<PeerId>) {
        let (version, entries) = (list.version(), list.len());
        self.revocation.list = Some(list);
        self.sync_dht_revocations();
        self.revocation.asked = None;
        self.revocation.offer_due = Some(now + OFFER_INTERVAL);
        let from = from.map(|peer| self.peers[peer].name());
        info!(version, entries, from = ?from, "revocation list installed");
        push_event(
            &mut self.events,
            &mut self.stats,
            Event::RevocationsUpdated {
                version,
                entries,
                from,
            },
        );
        for peer in self.peers.ids() {
            let revoked = self.peers[peer]
                .certificate
                .as_ref()
                .is_some_and(|c| self.is_revoked(c));
            if revoked {
                self.end_revoked(now, peer);
            } else if self.usable_current(now, peer) {
                self.offer_revocations(now, peer);
            }
        }
    }

    /// Ends every session (and handshake) with a revoked peer and stops
    /// calling it; packets waiting for it are dropped.
    fn end_revoked(&mut self, now: Instant, peer: PeerId) {
        let p = &mut self.peers[peer];
        let had_session = p.current.is_some() || p.next.is_some() || p.pending.is_some();
        let mut retired = Vec::new();
        retired.extend(p.current.take().map(|t| t.local));
        retired.extend(p.next.take().map(|t| t.local));
        retired.extend(p.previous.take().map(|t| t.local));
        retired.extend(p.pending.take().map(|t| t.local));
        p.handshake_due = None;
        p.last_received = None;
        let queued: Vec<Vec<u8>> = p.queue.drain(..).collect();
        for index in retired {
            self.by_index.remove(&index);
        }
        for buf in queued {
            self.return_buffer(buf);
        }
        self.stop_probing(now, peer);
        // Names and addresses it claimed pass to the next claimant.
        if let Some(c) = self.peers[peer].certificate.clone() {
            self.conflicts.forget(&c.node_id());
            if let Some(net) = c.ipv4() {
                self.rebind_ipv4(net.addr);
            }
        }
        if !had_session {
            return;
        }
        self.stats.sessions_revoked += 1;
        let p = &self.peers[peer];
        if let Some(id) = p.node_id {
            let name = p.name();
            info!(peer = %name, "session ended: certificate revoked");
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::PeerRevoked { peer: id, name },
            );
        }
    }

    /// Sends the list held to `peer` in pieces, unless it was sent there
    /// less than [`PUSH_INTERVAL`] ago.
    fn push_revocations(&mut self, now: Instant, peer: PeerId) {
        let Some(id) = self.peers[peer].node_id else {
            return;
        };
        if self
            .revocation
            .pushed
            .get(&id)
            .is_some_and(|at| now < *at + PUSH_INTERVAL)
        {
            return;
        }
        let Some(list) = &self.revocation.list else {
            return;
        };
        let (version, bytes) = (list.version(), list.to_bytes().to_vec());
        self.revocation.pushed.insert(id, now);
        let pieces: Vec<&[u8]> = bytes.chunks(REVOCATION_CHUNK_LEN).collect();
        // A list is at most 64 KiB, so at most 64 pieces.
        let count = u16::try_from(pieces.len()).unwrap_or(u16::MAX);
        for (index, data) in pieces.into_iter().enumerate() {
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            self.send_frame(
                now,
                peer,
                Frame::RevocationChunk {
                    version,
                    index,
                    count,
                    data,
                },
                Via::Route(Metric::Latency, 0),
            );
            self.stats.revocation_chunks_sent += 1;
        }
    }
}
