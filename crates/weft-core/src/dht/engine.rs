//! The DHT engine: one node's Kademlia state machine (sans-IO, like
//! [`crate::Node`]).
//!
//! Inputs: [`Dht::handle_datagram`], [`Dht::handle_timeout`] and the
//! commands ([`Dht::bootstrap`], [`Dht::add_contact`], [`Dht::lookup`],
//! [`Dht::set_endpoints`], [`Dht::set_groups`]), each with the current time.
//! Outputs, drained after every input: [`Dht::poll_transmit`] (datagrams),
//! [`Dht::poll_event`] (lookup results, join), then [`Dht::poll_timeout`].
//!
//! Design notes:
//! - Every datagram is checked before it is acted upon, cheapest test
//!   first: layout, then (responses) an outstanding transaction id or
//!   (requests) a timestamp within ±60 s and not a replay, then the
//!   certificate (cached, see `certs`), then the signature. An unsolicited
//!   response costs no cryptography at all.
//! - A response must come from the node the query was addressed to (its
//!   node id; bootstrap pings accept any member) and is matched by a random
//!   64-bit transaction id, used once.
//! - Join: pings to the bootstrap endpoints (retried with backoff 1 s to
//!   30 s while the table is empty); the first answer puts a contact in the
//!   table (so does a request from a member, or [`Dht::add_contact`]),
//!   which starts a self-lookup; its result also names the nodes that store
//!   the own record under the id key. The name and IPv4 keys each take a
//!   lookup converging on the `replication` closest; those two lookups of
//!   random keys also fill far buckets, so no separate refresh follows. A
//!   self-lookup that found fewer than k nodes is repeated after 1, 2 and
//!   4 s while that improves it (a bootstrap node that itself joined a
//!   moment ago may know nobody yet), republishing each time. A join costs
//!   about 75 queries (150 signed datagrams) in a network of 2,000.
//! - Periodic work runs on one maintenance tick: purge expired records,
//!   refresh buckets idle for `refresh_interval`, republish the own record
//!   every `republish_interval` (and when its endpoints or groups change),
//!   re-bootstrap if the table emptied.
//! - Amplification: a response goes to the source address of a request, and
//!   only for a request that carries a valid member certificate and
//!   signature, a fresh timestamp and is not a replay (a filter remembers the
//!   signatures of recent requests). The largest answer, `Nodes` with 20
//!   IPv6 contacts (about 1.3 kB), is at most about 4 times the smallest
//!   request that asks for it (a `FindNode`, about 310 bytes with its
//!   certificate and signature), and every other answer is about as large as
//!   its request, so a spoofed source gains little and only by replaying a
//!   member's request once.
//! - Every collection is bounded: pending queries, running lookups, the
//!   transmit and event queues, the store, the cache, the certificate cache,
//!   the replay filter, reflexive addresses, bootstrap endpoints. What does
//!   not fit is dropped and counted ([`DhtStats::dropped`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::certs::{CertificateCache, Verifier};
use super::lookup::{Lookup, Step, soft_timeout};
use super::record::{MAX_CLOCK_SKEW, SignedRecord, record_keys};
use super::rendezvous::{self, Rendezvous, group_key};
use super::store::{Insert, RecordMap};
use super::table::{Table, random_key_in_bucket};
use super::{
    ContactInfo, DhtConfig, DhtEvent, DhtStats, Key, LookupError, LookupId, LookupTrace,
    NodeRecord, Target,
};
use crate::identity::{CaCertificate, Certificate, NodeId, SecretKey};
use crate::wire::{
    DHT_PREAMBLE, DhtContact, DhtDatagram, DhtMessage, MAX_CONTACTS, MAX_RECORD_ENDPOINTS,
    RendezvousEntry, datagram_digest, entry_digest,
};

const MAX_PENDING: usize = 2048;
const MAX_LOOKUPS: usize = 256;
const MAX_TRANSMIT: usize = 4096;
const MAX_EVENTS: usize = 4096;
const MAX_BOOTSTRAP: usize = 64;
const MAX_REFLEXIVE: usize = 8;
const MAX_CERTS: usize = 4096;
const MAX_CACHED: usize = 3 * 1024;
const REPLAY_FILTER: usize = 4096;
const MAX_REFRESHES_PER_TICK: usize = 4;
/// Rendezvous entries held for others, in all.
const MAX_ENTRIES: usize = 4096;
/// A rendezvous entry lives this long (members re-announce well before).
pub const ENTRY_LIFETIME: Duration = Duration::from_secs(180);
/// Holders refuse entries that expire further ahead than this.
const MAX_ENTRY_AHEAD: u64 = 600;
/// Holders of a group key asked for its members per rendezvous lookup.
const MEMBER_HOLDERS_ASKED: usize = 3;
/// Self-lookups repeated after a join that found fewer than k nodes.
const MAX_JOIN_RETRIES: u32 = 3;
/// Delay before the first repeated self-lookup (doubling after).
const JOIN_RETRY_FIRST: Duration = Duration::from_secs(1);
const BOOTSTRAP_FIRST: Duration = Duration::from_secs(1);
const BOOTSTRAP_MAX: Duration = Duration::from_secs(30);
const TICK_MIN: Duration = Duration::from_secs(1);
const TICK_MAX: Duration = Duration::from_secs(60);
/// The own record is placed again when the estimated network size has
/// grown this many times since it was last placed.
const GROWTH_REPUBLISH: u64 = 4;
/// Answers that must report a reflexive address before it is advertised.
const REFLEXIVE_REPORTS: u32 = 2;
/// Least time between two publications caused by new reflexive addresses.
const REFLEXIVE_REPUBLISH_GAP: Duration = Duration::from_secs(60);

/// One node's DHT engine (sans-IO, like [`crate::Node`]).
pub struct Dht {
    config: DhtConfig,
    start: Instant,
    unix_start: Duration,
    secret: SecretKey,
    certificate: Certificate,
    id: NodeId,
    rng: ChaCha20Rng,
    table: Table,
    certs: Verifier,
    store: RecordMap,
    cache: RecordMap,
    /// Group rendezvous entries held for others.
    entries: Rendezvous,
    own: Arc<SignedRecord>,
    endpoints: Vec<SocketAddr>,
    groups: Vec<String>,
    reflexive: BTreeMap<SocketAddr, u32>,
    pending: BTreeMap<u64, Pending>,
    timers: BTreeSet<(Instant, Timer)>,
    lookups: BTreeMap<u64, Running>,
    next_lookup: u64,
    transmit: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<DhtEvent>,
    stats: DhtStats,
    bootstrap: Vec<SocketAddr>,
    /// Whether one of the configured bootstrap endpoints has answered. A
    /// node whose own ping was lost may meanwhile have been found by a
    /// newer node that bootstrapped through it; joined through that one
    /// alone, the two would form an island that never meets the rest. So
    /// the pings go on (with backoff) until a bootstrap endpoint answers,
    /// and its answer starts a fresh self-lookup.
    bootstrap_answered: bool,
    bootstrap_next: Option<Instant>,
    bootstrap_backoff: Duration,
    join: Join,
    /// Most nodes a self-lookup found to answer.
    join_best: usize,
    join_retries: u32,
    rejoin_at: Option<Instant>,
    maintenance_next: Instant,
    last_publish: Option<Instant>,
    /// The network size estimated when the own record was last placed.
    published_size: u64,
    publish_wanted: bool,
    /// Replay filter: requests seen in the last two clock-skew windows.
    recent_requests: BTreeSet<u64>,
    recent_order: VecDeque<(Instant, u64)>,
    /// What the node revokes: records and datagrams of these certificates
    /// are refused, held records of them dropped (PROTOCOL §14.4).
    revoked: Revoked,
}

/// The certificates a node refuses: the CA's newest list it holds and its
/// own blocklist of fingerprints.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    /// The revocation list, if any.
    pub list: Option<crate::identity::RevocationList>,
    /// Certificate fingerprints refused by this node alone.
    pub blocklist: BTreeSet<[u8; 32]>,
}

impl Revoked {
    /// Whether `certificate` is refused.
    pub fn revokes(&self, certificate: &Certificate) -> bool {
        (!self.blocklist.is_empty() && self.blocklist.contains(&certificate.fingerprint()))
            || self.list.as_ref().is_some_and(|l| l.revokes(certificate))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    Idle,
    Joining,
    Joined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Soft(u64),
    Hard(u64),
    Lookup(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Bootstrap,
    Query(u64),
    Store,
    Members(IpAddr),
}

#[derive(Debug)]
struct Pending {
    expected: Option<NodeId>,
    sent_at: Instant,
    soft: Option<Instant>,
    hard: Instant,
    purpose: Purpose,
}

#[derive(Debug)]
enum Kind {
    User { id: LookupId, target: Target },
    Join,
    Refresh,
    Publish { key: Key },
    Rendezvous { group: IpAddr, announce: bool },
}

#[derive(Debug)]
struct Running {
    lookup: Lookup,
    kind: Kind,
    key: Key,
    deadline: Instant,
    median_rtt: Option<Duration>,
}

impl Running {
    fn request(&self) -> DhtMessage<'static> {
        match &self.kind {
            Kind::User { target, .. } => DhtMessage::FindValue {
                target: target.clone(),
            },
            Kind::Join | Kind::Refresh | Kind::Publish { .. } | Kind::Rendezvous { .. } => {
                DhtMessage::FindNode { key: self.key }
            }
        }
    }
}

impl Dht {
    /// A DHT engine for the node holding `secret` and `certificate`, trusting
    /// `ca`. `unix_start` is the wall-clock time at `now`.
    pub fn new(
        now: Instant,
        unix_start: Duration,
        secret: SecretKey,
        certificate: Certificate,
        ca: CaCertificate,
        config: DhtConfig,
        seed: [u8; 32],
    ) -> Self {
        let id = certificate.node_id();
        let unix = unix_start.as_secs();
        let own = SignedRecord::sign(
            &secret,
            &certificate,
            unix_start.as_millis() as u64,
            record_expiry(unix, &config, &certificate),
            &[],
            &[],
        )
        .shared();
        let mut dht = Self {
            table: Table::new(now, id, config.k, config.max_failures),
            store: RecordMap::new(config.max_records),
            cache: RecordMap::new(MAX_CACHED),
            entries: Rendezvous::new(MAX_ENTRIES),
            config,
            start: now,
            unix_start,
            secret,
            certificate,
            id,
            rng: ChaCha20Rng::from_seed(seed),
            certs: Verifier::new(ca, MAX_CERTS),
            own,
            endpoints: Vec::new(),
            groups: Vec::new(),
            reflexive: BTreeMap::new(),
            pending: BTreeMap::new(),
            timers: BTreeSet::new(),
            lookups: BTreeMap::new(),
            next_lookup: 1,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: DhtStats::default(),
            bootstrap: Vec::new(),
            bootstrap_answered: false,
            bootstrap_next: None,
            bootstrap_backoff: BOOTSTRAP_FIRST,
            join: Join::Idle,
            join_best: 0,
            join_retries: 0,
            rejoin_at: None,
            maintenance_next: now,
            last_publish: None,
            published_size: 0,
            publish_wanted: false,
            recent_requests: BTreeSet::new(),
            recent_order: VecDeque::new(),
            revoked: Revoked::default(),
        };
        dht.maintenance_next = now + dht.tick();
        dht
    }

    /// Verifies member certificates through `cache`, shared with other
    /// engines in this process, instead of a private cache. Changes no
    /// output: only how often a certificate's signature is checked (the
    /// simulator shares one cache among thousands of engines).
    pub fn with_certificate_cache(mut self, cache: CertificateCache) -> Self {
        self.certs.share(cache);
        self
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Whether `datagram` is a DHT datagram (outer packet type 5).
    pub fn is_dht_datagram(datagram: &[u8]) -> bool {
        datagram.get(..4) == Some(&DHT_PREAMBLE[..])
    }

    /// Contacts these endpoints (identities unknown: the answers carry their
    /// certificates) and joins through whichever answer: a self-lookup, then
    /// publication of the own record (whose lookups also fill far buckets).
    /// Retried with backoff while the routing table stays empty.
    pub fn bootstrap(&mut self, now: Instant, endpoints: &[SocketAddr]) {
        for endpoint in endpoints {
            if !self.bootstrap.contains(endpoint) && self.bootstrap.len() < MAX_BOOTSTRAP {
                self.bootstrap.push(*endpoint);
            }
        }
        self.bootstrap_backoff = BOOTSTRAP_FIRST;
        self.ping_bootstrap(now);
    }

    /// A member seen alive by other means (an authenticated session): enters
    /// the routing table like a contact that answered.
    pub fn add_contact(
        &mut self,
        now: Instant,
        id: NodeId,
        endpoint: SocketAddr,
        rtt: Option<Duration>,
    ) {
        self.table.seen(now, id, endpoint, rtt, None);
        self.maybe_join(now);
    }

    /// The endpoints this node advertises in its record, besides the
    /// reflexive addresses that answers report. Republishes on change.
    pub fn set_endpoints(&mut self, now: Instant, endpoints: Vec<SocketAddr>) {
        if endpoints == self.endpoints {
            return;
        }
        self.endpoints = endpoints;
        self.own_changed(now);
    }

    /// This node's certificate, renewed (same key): the own record is
    /// signed again with it and republished.
    pub fn set_certificate(&mut self, now: Instant, certificate: Certificate) {
        if certificate == self.certificate {
            return;
        }
        self.certificate = certificate;
        self.own_changed(now);
    }

    /// The groups this node advertises in its record. Republishes on change.
    pub fn set_groups(&mut self, now: Instant, groups: Vec<String>) {
        if groups == self.groups {
            return;
        }
        self.groups = groups;
        self.own_changed(now);
    }

    /// Replaces what this node revokes: records of revoked certificates are
    /// dropped from the store and the cache at once and refused from now
    /// on (stored, served or found), and datagrams signed by them are
    /// dropped, so a revoked node drops out of the routing table as its
    /// entries go unanswered.
    pub fn set_revoked(&mut self, revoked: Revoked) {
        let before = self.store.len() + self.cache.len();
        self.store
            .retain(|r| !revoked.revokes(&r.record.certificate));
        self.cache
            .retain(|r| !revoked.revokes(&r.record.certificate));
        self.stats.records_revoked += (before - self.store.len() - self.cache.len()) as u64;
        let gone = self.entries.retain(|e| !revoked.revokes(&e.certificate));
        self.stats.records_revoked += gone as u64;
        self.revoked = revoked;
    }

    /// Looks for members of `group` at the nodes closest to its rendezvous
    /// key, and (`announce`) places this node's own signed entry there,
    /// valid for [`ENTRY_LIFETIME`]. Each holder's answer becomes a
    /// [`DhtEvent::GroupMembers`]. Nothing happens before the node has
    /// contacts; callers repeat it (members at least every minute).
    pub fn find_members(&mut self, now: Instant, group: IpAddr, announce: bool) {
        let key = group_key(group);
        let want = self.config.replication;
        self.start_internal(now, Kind::Rendezvous { group, announce }, key, want);
    }

    /// Rendezvous entries held for others.
    pub fn stored_entries(&self) -> usize {
        self.entries.len()
    }

    /// Starts a lookup. A target answered by the own record or a cached one
    /// ends at once (its event is queued with `hops` 0).
    pub fn lookup(&mut self, now: Instant, target: Target) -> LookupId {
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let id = LookupId(lid);
        self.stats.lookups += 1;
        if let Some(record) = self.cached(now, &target).cloned() {
            self.stats.lookups_ok += 1;
            self.push_event(DhtEvent::LookupDone {
                id,
                target,
                result: Ok(record),
                trace: LookupTrace::default(),
            });
            return id;
        }
        let key = target.key();
        let error = if self.table.is_empty() {
            Some(LookupError::NoContacts)
        } else if self.lookups.len() >= MAX_LOOKUPS {
            self.stats.dropped += 1;
            Some(LookupError::TimedOut)
        } else {
            None
        };
        if let Some(error) = error {
            self.stats.lookups_failed += 1;
            self.push_event(DhtEvent::LookupDone {
                id,
                target,
                result: Err(error),
                trace: LookupTrace::default(),
            });
            return id;
        }
        // A value lookup gives up only after the 2k closest nodes answered
        // without the record: a record placed while the network was smaller
        // may still sit a little beyond the k closest (see GROWTH_REPUBLISH).
        // A lookup that finds the record is not slowed: queries go out
        // nearest first either way.
        let want = 2 * self.config.k;
        self.start_lookup(now, lid, Kind::User { id, target }, key, want);
        id
    }

    /// A valid, unexpired record for `target` held locally (own, stored for
    /// others, or cached from a lookup).
    pub fn cached(&self, now: Instant, target: &Target) -> Option<&NodeRecord> {
        self.find_local(target, self.unix_secs(now))
            .map(|r| &r.record)
    }

    /// Handles one DHT datagram from `from`. Bad input is counted, never
    /// fatal.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.rx += 1;
        self.stats.rx_bytes += datagram.len() as u64;
        let Ok(datagram) = DhtDatagram::decode(datagram) else {
            self.stats.malformed += 1;
            tracing::trace!("malformed dht datagram");
            return;
        };
        let unix = self.unix_secs(now);
        let response = datagram.message.is_response();
        let replay_key = replay_key(datagram.signature);
        if response {
            if !self.pending.contains_key(&datagram.txid) {
                self.stats.rejected += 1;
                tracing::trace!("unsolicited dht response");
                return;
            }
        } else if datagram.timestamp.abs_diff(unix) > MAX_CLOCK_SKEW
            || self.recent_requests.contains(&replay_key)
        {
            self.stats.rejected += 1;
            tracing::trace!("stale or replayed dht request");
            return;
        }
        let Ok(member) = self.certs.verify(datagram.certificate, unix) else {
            self.stats.rejected += 1;
            tracing::trace!("dht datagram with an invalid certificate");
            return;
        };
        let certificate = &member.certificate;
        if self.revoked.revokes(certificate) {
            self.stats.rejected += 1;
            tracing::trace!("dht datagram of a revoked node");
            return;
        }
        let sender = certificate.node_id();
        let expected_ok = !response
            || self
                .pending
                .get(&datagram.txid)
                .is_some_and(|p| p.expected.is_none_or(|id| id == sender));
        if sender == self.id || !expected_ok {
            self.stats.rejected += 1;
            tracing::trace!("dht datagram from an unexpected node");
            return;
        }
        if !member.verifies(&datagram_digest(datagram.signed), datagram.signature) {
            self.stats.rejected += 1;
            tracing::trace!("dht datagram with a bad signature");
            return;
        }
        if response {
            self.handle_response(now, from, sender, certificate, datagram);
        } else {
            self.remember_request(now, replay_key);
            self.handle_request(now, from, sender, certificate, datagram);
        }
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Soft(txid) => self.on_soft_timeout(now, txid),
                Timer::Hard(txid) => self.on_hard_timeout(now, txid),
                Timer::Lookup(lid) => self.finish(now, lid, true),
            }
        }
        if self.bootstrap_next.is_some_and(|at| at <= now) {
            if self.table.is_empty() || !self.bootstrap_answered {
                self.ping_bootstrap(now);
            } else {
                self.bootstrap_next = None;
            }
        }
        if self.rejoin_at.is_some_and(|at| at <= now) {
            self.rejoin(now);
        }
        if self.maintenance_next <= now {
            self.maintain(now);
        }
    }

    /// When [`Dht::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.maintenance_next;
        if let Some(&(at, _)) = self.timers.first() {
            next = next.min(at);
        }
        for at in [self.bootstrap_next, self.rejoin_at].into_iter().flatten() {
            next = next.min(at);
        }
        Some(next)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// The routing table's contacts.
    pub fn contacts(&self) -> Vec<ContactInfo> {
        self.table
            .entries()
            .map(|c| ContactInfo {
                id: c.id,
                endpoint: c.endpoint,
                rtt: c.rtt,
                name: c.name.clone(),
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> &DhtStats {
        &self.stats
    }

    /// The record this node publishes, once it has one.
    pub fn own_record(&self) -> Option<&NodeRecord> {
        Some(&self.own.record)
    }

    /// Records held for others (for status and the memory benchmark).
    pub fn stored_records(&self) -> usize {
        self.store.len()
    }

    /// Whether the join (self-lookup after the first contact) has finished.
    pub fn is_joined(&self) -> bool {
        self.join == Join::Joined
    }

    /// Lookups running now, internal ones (join, refresh, publish) included.
    pub fn running_lookups(&self) -> usize {
        self.lookups.len()
    }

    /// Certificates in the verified-certificate cache.
    pub fn cached_certificates(&self) -> usize {
        self.certs.len()
    }

    // ---- datagrams -----------------------------------------------------

    fn handle_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        certificate: &Certificate,
        datagram: DhtDatagram<'_>,
    ) {
        self.table
            .seen(now, sender, from, None, Some(certificate.name()));
        let observed = from;
        let unix = self.unix_secs(now);
        let txid = datagram.txid;
        match datagram.message {
            DhtMessage::Ping => self.emit(now, from, txid, &DhtMessage::Pong { observed }),
            DhtMessage::FindNode { key } => {
                let contacts = self.closest_contacts(&key, &sender);
                self.emit(now, from, txid, &DhtMessage::Nodes { observed, contacts });
            }
            DhtMessage::FindValue { target } => {
                if let Some(record) = self.find_local(&target, unix).cloned() {
                    let reply = DhtMessage::Value {
                        observed,
                        record: &record.bytes,
                    };
                    self.emit(now, from, txid, &reply);
                } else {
                    let contacts = self.closest_contacts(&target.key(), &sender);
                    self.emit(now, from, txid, &DhtMessage::Nodes { observed, contacts });
                }
            }
            DhtMessage::Store { key, record } => {
                let stored = self.accept_store(key, record, unix);
                self.emit(now, from, txid, &DhtMessage::StoreAck { observed, stored });
            }
            DhtMessage::Announce { key, entry } => {
                let stored = self.accept_entry(key, entry, certificate, unix);
                self.emit(now, from, txid, &DhtMessage::StoreAck { observed, stored });
            }
            DhtMessage::FindMembers { key } => {
                let entries: Vec<Vec<u8>> = self
                    .entries
                    .answer(&key, &sender, unix)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                let entries = entries.iter().map(Vec::as_slice).collect();
                self.emit(now, from, txid, &DhtMessage::Members { observed, entries });
            }
            DhtMessage::Pong { .. }
            | DhtMessage::Nodes { .. }
            | DhtMessage::Value { .. }
            | DhtMessage::StoreAck { .. }
            | DhtMessage::Members { .. } => {}
        }
        self.maybe_join(now);
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: NodeId,
        certificate: &Certificate,
        datagram: DhtDatagram<'_>,
    ) {
        let Some(pending) = self.pending.remove(&datagram.txid) else {
            return;
        };
        if let Some(soft) = pending.soft {
            self.timers.remove(&(soft, Timer::Soft(datagram.txid)));
        }
        self.timers
            .remove(&(pending.hard, Timer::Hard(datagram.txid)));
        let rtt = now.saturating_duration_since(pending.sent_at);
        self.table
            .seen(now, sender, from, Some(rtt), Some(certificate.name()));
        let observed = match &datagram.message {
            DhtMessage::Pong { observed }
            | DhtMessage::Nodes { observed, .. }
            | DhtMessage::Value { observed, .. }
            | DhtMessage::StoreAck { observed, .. }
            | DhtMessage::Members { observed, .. } => Some(*observed),
            DhtMessage::Ping
            | DhtMessage::FindNode { .. }
            | DhtMessage::FindValue { .. }
            | DhtMessage::Store { .. }
            | DhtMessage::Announce { .. }
            | DhtMessage::FindMembers { .. } => None,
        };
        if let Some(observed) = observed {
            self.note_reflexive(observed);
        }
        match pending.purpose {
            Purpose::Query(lid) => self.on_answer(now, lid, sender, datagram.message),
            Purpose::Members(group) => self.on_members(now, group, datagram.message),
            Purpose::Bootstrap | Purpose::Store => {}
        }
        if pending.purpose == Purpose::Bootstrap && !self.bootstrap_answered {
            self.bootstrap_answered = true;
            // Joined already through someone else (see `bootstrap_answered`):
            // look again from here, through the bootstrap node's side.
            if self.join == Join::Joined {
                self.rejoin(now);
            }
        }
        self.maybe_join(now);
    }

    fn on_answer(&mut self, now: Instant, lid: u64, sender: NodeId, message: DhtMessage<'_>) {
        let unix = self.unix_secs(now);
        let mut found = None;
        let mut contacts = Vec::new();
        match message {
            DhtMessage::Nodes {
                contacts: answer, ..
            } => {
                contacts = answer
                    .into_iter()
                    .filter(|c| c.id != self.id)
                    .map(|c| (c.id, c.endpoint))
                    .collect();
            }
            DhtMessage::Value { record, .. } => {
                let target = match self.lookups.get(&lid).map(|r| &r.kind) {
                    Some(Kind::User { target, .. }) => Some(target.clone()),
                    _ => None,
                };
                match SignedRecord::verify(record, &mut self.certs, unix) {
                    Ok(record)
                        if target.as_ref().is_some_and(|t| t.matches(&record.record))
                            && !self.revoked.revokes(&record.record.certificate) =>
                    {
                        found = Some(record.shared());
                    }
                    Ok(_) | Err(_) => self.stats.records_rejected += 1,
                }
            }
            DhtMessage::Ping
            | DhtMessage::Pong { .. }
            | DhtMessage::FindNode { .. }
            | DhtMessage::FindValue { .. }
            | DhtMessage::Store { .. }
            | DhtMessage::StoreAck { .. }
            | DhtMessage::Announce { .. }
            | DhtMessage::FindMembers { .. }
            | DhtMessage::Members { .. } => {}
        }
        if let Some(record) = &found {
            for key in record_keys(&record.record) {
                self.cache.insert(key, Arc::clone(record), true);
            }
        }
        let Some(running) = self.lookups.get_mut(&lid) else {
            return;
        };
        match found {
            Some(record) => running.lookup.on_value(now, sender, record.record.clone()),
            None => running.lookup.on_nodes(now, sender, &contacts),
        }
        self.drive(now, lid);
    }

    fn accept_store(&mut self, key: Key, bytes: &[u8], unix: u64) -> bool {
        let Ok(record) = SignedRecord::verify(bytes, &mut self.certs, unix) else {
            self.stats.records_rejected += 1;
            return false;
        };
        if record.record.node_id() == self.id {
            // The own record is answered from `own`, never from the store.
            return false;
        }
        if self.revoked.revokes(&record.record.certificate) {
            self.stats.records_revoked += 1;
            return false;
        }
        if !record_keys(&record.record).contains(&key) {
            self.stats.records_rejected += 1;
            return false;
        }
        match self.store.insert(key, record.shared(), false) {
            Insert::Stored => {
                self.stats.records_stored += 1;
                true
            }
            Insert::Stale | Insert::Full => {
                self.stats.records_rejected += 1;
                false
            }
        }
    }

    /// A holder's answer about `group`: its members, as hints (the holder
    /// verified each entry against its member's certificate; the requester
    /// does not hold those certificates, and proves each member in the
    /// handshake it opens to it).
    fn on_members(&mut self, now: Instant, group: IpAddr, message: DhtMessage<'_>) {
        let DhtMessage::Members { entries, .. } = message else {
            return;
        };
        let unix = self.unix_secs(now);
        let members: Vec<NodeId> = entries
            .iter()
            .filter_map(|bytes| RendezvousEntry::decode(bytes).ok())
            .filter(|e| e.group == group && e.expires > unix && e.node != self.id)
            .map(|e| e.node)
            .collect();
        self.push_event(DhtEvent::GroupMembers { group, members });
    }

    /// An `Announce`: the sender's own entry, checked against the
    /// certificate its datagram carried (already verified and not revoked).
    fn accept_entry(
        &mut self,
        key: Key,
        bytes: &[u8],
        certificate: &Certificate,
        unix: u64,
    ) -> bool {
        let valid = RendezvousEntry::decode(bytes).ok().filter(|e| {
            e.node == certificate.node_id()
                && group_key(e.group) == key
                && e.expires > unix
                && e.expires <= unix.saturating_add(MAX_ENTRY_AHEAD)
                && crate::identity::verify_signature(
                    &certificate.public_key().ed25519,
                    &entry_digest(e.signed),
                    e.signature,
                )
        });
        let Some(entry) = valid else {
            self.stats.entries_rejected += 1;
            return false;
        };
        let held = rendezvous::Entry {
            expires: entry.expires,
            bytes: bytes.to_vec(),
            certificate: certificate.clone(),
        };
        match self.entries.insert(key, entry.node, held) {
            Ok(()) => {
                self.stats.entries_stored += 1;
                true
            }
            Err(_) => {
                self.stats.entries_rejected += 1;
                false
            }
        }
    }

    fn closest_contacts(&self, key: &Key, requester: &NodeId) -> Vec<DhtContact> {
        self.table
            .closest(key, self.config.k.min(MAX_CONTACTS), Some(requester))
            .into_iter()
            .map(|(id, endpoint)| DhtContact { id, endpoint })
            .collect()
    }

    fn find_local(&self, target: &Target, unix: u64) -> Option<&Arc<SignedRecord>> {
        let contested = matches!(target, Target::Name(_) | Target::Ipv4(_));
        if target.matches(&self.own.record) && !contested {
            return Some(&self.own);
        }
        let own = target.matches(&self.own.record).then_some(&self.own);
        let stored = self.store.find(target, unix);
        let cached = self.cache.find(target, unix);
        if contested {
            // Another node's certificate may carry this node's name or
            // address too: the claim rule decides, here as everywhere.
            return [own, stored, cached]
                .into_iter()
                .flatten()
                .min_by_key(|r| super::store::claim_order(r));
        }
        match (stored, cached) {
            (Some(s), Some(c)) => Some(if c.record.sequence > s.record.sequence {
                c
            } else {
                s
            }),
            (s, c) => s.or(c),
        }
    }

    // ---- queries and lookups -------------------------------------------

    fn send_request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        expected: Option<NodeId>,
        message: &DhtMessage<'_>,
        purpose: Purpose,
        soft: Option<Duration>,
    ) -> Option<u64> {
        if self.pending.len() >= MAX_PENDING || self.transmit.len() >= MAX_TRANSMIT {
            self.stats.dropped += 1;
            return None;
        }
        let mut txid = self.rng.next_u64();
        while self.pending.contains_key(&txid) {
            txid = self.rng.next_u64();
        }
        let hard = now + self.config.query_timeout;
        let soft = soft.map(|d| now + d).filter(|&at| at < hard);
        if let Some(at) = soft {
            self.timers.insert((at, Timer::Soft(txid)));
        }
        self.timers.insert((hard, Timer::Hard(txid)));
        self.pending.insert(
            txid,
            Pending {
                expected,
                sent_at: now,
                soft,
                hard,
                purpose,
            },
        );
        self.stats.queries += 1;
        self.emit(now, to, txid, message);
        Some(txid)
    }

    fn emit(&mut self, now: Instant, to: SocketAddr, txid: u64, message: &DhtMessage<'_>) {
        if self.transmit.len() >= MAX_TRANSMIT {
            self.stats.dropped += 1;
            return;
        }
        let certificate = self.certificate.to_bytes();
        let mut out = Vec::with_capacity(certificate.len() + 200);
        DhtDatagram::emit_unsigned(&mut out, certificate, txid, self.unix_secs(now), message);
        let signature = self.secret.sign(&datagram_digest(&out));
        out.extend_from_slice(&signature);
        self.stats.tx += 1;
        self.stats.tx_bytes += out.len() as u64;
        self.transmit.push_back((to, out));
    }

    /// Starts an internal (join, refresh, publish) lookup.
    fn start_internal(&mut self, now: Instant, kind: Kind, key: Key, want: usize) -> bool {
        if self.lookups.len() >= MAX_LOOKUPS || self.table.is_empty() {
            self.stats.dropped += u64::from(!self.table.is_empty());
            return false;
        }
        let lid = self.next_lookup;
        self.next_lookup += 1;
        self.start_lookup(now, lid, kind, key, want);
        true
    }

    fn start_lookup(&mut self, now: Instant, lid: u64, kind: Kind, key: Key, want: usize) {
        let initial = self.table.closest(&key, self.config.k, None);
        self.table.touch(now, &key);
        let capacity = 3 * self.config.k.max(want);
        let lookup = Lookup::new(
            now,
            key,
            self.id,
            self.config.alpha,
            want,
            capacity,
            &initial,
        );
        // A value lookup must not miss a slow holder; node lookups settle
        // for the nodes that answer in time.
        let lookup = match kind {
            Kind::User { .. } => lookup.patient(),
            Kind::Join | Kind::Refresh | Kind::Publish { .. } | Kind::Rendezvous { .. } => lookup,
        };
        let deadline = now + self.config.lookup_timeout;
        self.timers.insert((deadline, Timer::Lookup(lid)));
        self.lookups.insert(
            lid,
            Running {
                lookup,
                kind,
                key,
                deadline,
                median_rtt: self.table.median_rtt(),
            },
        );
        self.drive(now, lid);
    }

    /// Sends what a lookup asks for until it waits or ends.
    fn drive(&mut self, now: Instant, lid: u64) {
        loop {
            let Some(running) = self.lookups.get_mut(&lid) else {
                return;
            };
            match running.lookup.step(now) {
                Step::Wait => return,
                Step::Done => {
                    self.finish(now, lid, false);
                    return;
                }
                Step::Query { id, endpoint } => {
                    let message = running.request();
                    let median = running.median_rtt;
                    let soft = soft_timeout(self.table.rtt(&id), median, self.config.query_timeout);
                    let sent = self.send_request(
                        now,
                        endpoint,
                        Some(id),
                        &message,
                        Purpose::Query(lid),
                        Some(soft),
                    );
                    if sent.is_none()
                        && let Some(running) = self.lookups.get_mut(&lid)
                    {
                        running.lookup.on_failed(id);
                    }
                }
            }
        }
    }

    fn finish(&mut self, now: Instant, lid: u64, timed_out: bool) {
        let Some(mut running) = self.lookups.remove(&lid) else {
            return;
        };
        self.timers.remove(&(running.deadline, Timer::Lookup(lid)));
        match running.kind {
            Kind::User { id, target } => {
                let found = running.lookup.take_found();
                let hops = found.as_ref().map(|(_, depth)| *depth);
                let result = match found {
                    Some((record, _)) => {
                        self.stats.lookups_ok += 1;
                        Ok(record)
                    }
                    None => {
                        self.stats.lookups_failed += 1;
                        Err(if timed_out {
                            LookupError::TimedOut
                        } else {
                            LookupError::NotFound
                        })
                    }
                };
                let trace = running.lookup.trace(now, hops);
                tracing::debug!(
                    lookup = lid,
                    ok = result.is_ok(),
                    hops = trace.hops,
                    queries = trace.queries.len(),
                    "dht lookup done"
                );
                self.push_event(DhtEvent::LookupDone {
                    id,
                    target,
                    result,
                    trace,
                });
            }
            Kind::Join => {
                let answered = running.lookup.closest_answered(self.config.k).len();
                let holders = running.lookup.closest_answered(self.config.replication);
                if holders.is_empty() {
                    // Nobody answered: try again on the next contact, or
                    // soon if the table still has some.
                    if self.join == Join::Joining {
                        self.join = Join::Idle;
                    }
                    self.schedule_rejoin(now);
                    return;
                }
                if self.join != Join::Joined {
                    self.join = Join::Joined;
                    tracing::debug!(
                        contacts = self.table.len(),
                        queries = running.lookup.query_count(),
                        "dht joined"
                    );
                    self.push_event(DhtEvent::Joined {
                        contacts: self.table.len(),
                    });
                }
                if answered > self.join_best {
                    self.join_best = answered;
                    self.publish(now, Some(holders));
                    // Fewer than k answers: the contacts that answered may
                    // themselves have been joining (a bootstrap node that
                    // joined a moment ago knows nobody yet). Look again
                    // shortly, while that improves the result.
                    if answered < self.config.k {
                        self.schedule_rejoin(now);
                    }
                }
            }
            Kind::Publish { key } => {
                let holders = running.lookup.closest_answered(self.config.replication);
                self.store_at(now, key, &holders);
            }
            Kind::Rendezvous { group, announce } => {
                let holders = running.lookup.closest_answered(self.config.replication);
                if announce {
                    self.announce_at(now, group, &holders);
                }
                let ask = DhtMessage::FindMembers { key: running.key };
                for &(id, endpoint) in holders.iter().take(MEMBER_HOLDERS_ASKED) {
                    self.send_request(now, endpoint, Some(id), &ask, Purpose::Members(group), None);
                }
            }
            Kind::Refresh => {}
        }
    }

    fn on_soft_timeout(&mut self, now: Instant, txid: u64) {
        let Some(pending) = self.pending.get_mut(&txid) else {
            return;
        };
        pending.soft = None;
        if let (Purpose::Query(lid), Some(id)) = (pending.purpose, pending.expected)
            && let Some(running) = self.lookups.get_mut(&lid)
        {
            running.lookup.on_stalled(id);
            self.drive(now, lid);
        }
    }

    fn on_hard_timeout(&mut self, now: Instant, txid: u64) {
        let Some(pending) = self.pending.remove(&txid) else {
            return;
        };
        if let Some(soft) = pending.soft {
            self.timers.remove(&(soft, Timer::Soft(txid)));
        }
        self.stats.query_timeouts += 1;
        let Some(id) = pending.expected else {
            return;
        };
        self.table.failed(&id);
        if let Purpose::Query(lid) = pending.purpose
            && let Some(running) = self.lookups.get_mut(&lid)
        {
            running.lookup.on_failed(id);
            self.drive(now, lid);
        }
    }

    // ---- join, publication, maintenance ---------------------------------

    fn ping_bootstrap(&mut self, now: Instant) {
        if self.bootstrap.is_empty() {
            self.bootstrap_next = None;
            return;
        }
        for endpoint in self.bootstrap.clone() {
            self.send_request(
                now,
                endpoint,
                None,
                &DhtMessage::Ping,
                Purpose::Bootstrap,
                None,
            );
        }
        self.bootstrap_next = Some(now + self.bootstrap_backoff);
        self.bootstrap_backoff = (self.bootstrap_backoff * 2).min(BOOTSTRAP_MAX);
    }

    fn maybe_join(&mut self, now: Instant) {
        if self.join != Join::Idle || self.table.is_empty() {
            return;
        }
        // Set first: the lookup may end at once (and set the state itself).
        self.join = Join::Joining;
        let key = Key(*self.id.as_bytes());
        if !self.start_internal(now, Kind::Join, key, self.config.k) {
            self.join = Join::Idle;
        }
    }

    fn schedule_rejoin(&mut self, now: Instant) {
        if self.join_retries >= MAX_JOIN_RETRIES {
            return;
        }
        let delay = JOIN_RETRY_FIRST * (1 << self.join_retries);
        self.join_retries += 1;
        self.rejoin_at = Some(now + delay);
    }

    /// Repeats the self-lookup (see [`Dht::schedule_rejoin`]).
    fn rejoin(&mut self, now: Instant) {
        self.rejoin_at = None;
        match self.join {
            Join::Idle => self.maybe_join(now),
            Join::Joining => {}
            Join::Joined => {
                let key = Key(*self.id.as_bytes());
                self.start_internal(now, Kind::Join, key, self.config.k);
            }
        }
    }

    /// Re-signs the own record and stores it on the `replication` closest
    /// nodes of each of its keys; `id_holders` (from a self-lookup) saves
    /// the lookup of the id key.
    fn publish(&mut self, now: Instant, id_holders: Option<Vec<(NodeId, SocketAddr)>>) {
        self.resign(now);
        self.last_publish = Some(now);
        self.published_size = self.table.network_size();
        self.publish_wanted = false;
        let id_key = Key(*self.id.as_bytes());
        let replication = self.config.replication;
        for key in record_keys(&self.own.record) {
            match &id_holders {
                Some(holders) if key == id_key => self.store_at(now, key, holders),
                Some(_) | None => {
                    self.start_internal(now, Kind::Publish { key }, key, replication);
                }
            }
        }
    }

    fn store_at(&mut self, now: Instant, key: Key, holders: &[(NodeId, SocketAddr)]) {
        let own = Arc::clone(&self.own);
        let message = DhtMessage::Store {
            key,
            record: &own.bytes,
        };
        for &(id, endpoint) in holders.iter().take(self.config.replication) {
            self.send_request(now, endpoint, Some(id), &message, Purpose::Store, None);
        }
    }

    /// Signs this node's entry for `group` and announces it to `holders`.
    fn announce_at(&mut self, now: Instant, group: IpAddr, holders: &[(NodeId, SocketAddr)]) {
        let expires = (self.unix_time(now) + ENTRY_LIFETIME).as_secs();
        let mut entry = Vec::new();
        RendezvousEntry::emit_unsigned(&mut entry, &self.id, group, expires);
        let signature = self.secret.sign(&entry_digest(&entry));
        entry.extend_from_slice(&signature);
        let message = DhtMessage::Announce {
            key: group_key(group),
            entry: &entry,
        };
        for &(id, endpoint) in holders.iter().take(self.config.replication) {
            self.send_request(now, endpoint, Some(id), &message, Purpose::Store, None);
        }
    }

    fn own_changed(&mut self, now: Instant) {
        if self.join == Join::Joined {
            self.publish(now, None);
        } else {
            self.resign(now);
        }
    }

    fn resign(&mut self, now: Instant) {
        let sequence = self.unix_millis(now).max(self.own.record.sequence + 1);
        let expires = record_expiry(self.unix_secs(now), &self.config, &self.certificate);
        let endpoints = self.advertised_endpoints();
        self.own = SignedRecord::sign(
            &self.secret,
            &self.certificate,
            sequence,
            expires,
            &endpoints,
            &self.groups,
        )
        .shared();
    }

    /// Configured endpoints, then reflexive ones, most reported first. A
    /// reflexive address counts once two answers reported it, so a single
    /// odd report (or a member lying once) does not reach the record.
    fn advertised_endpoints(&self) -> Vec<SocketAddr> {
        let mut out = self.endpoints.clone();
        let mut reflexive: Vec<(&SocketAddr, &u32)> = self
            .reflexive
            .iter()
            .filter(|(_, count)| **count >= REFLEXIVE_REPORTS)
            .collect();
        reflexive.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (endpoint, _) in reflexive {
            if !out.contains(endpoint) {
                out.push(*endpoint);
            }
        }
        out.truncate(MAX_RECORD_ENDPOINTS);
        out
    }

    /// A session peer reports seeing this node at `observed` (each
    /// distinct reporter once): counts as a DHT answer reporting it.
    pub fn note_reported_endpoint(&mut self, observed: SocketAddr) {
        self.note_reflexive(observed);
    }

    fn note_reflexive(&mut self, observed: SocketAddr) {
        if let Some(count) = self.reflexive.get_mut(&observed) {
            *count = count.saturating_add(1);
        } else {
            if self.reflexive.len() >= MAX_REFLEXIVE {
                // Forget the least reported address to make room.
                let least = self
                    .reflexive
                    .iter()
                    .min_by_key(|(_, count)| **count)
                    .map(|(endpoint, _)| *endpoint);
                if let Some(least) = least {
                    self.reflexive.remove(&least);
                }
            }
            self.reflexive.insert(observed, 1);
        }
        let reported = self.reflexive.get(&observed).copied().unwrap_or(0);
        if self.join == Join::Joined
            && reported == REFLEXIVE_REPORTS
            && !self.own.record.endpoints.contains(&observed)
        {
            self.publish_wanted = true;
        }
    }

    fn maintain(&mut self, now: Instant) {
        let unix = self.unix_secs(now);
        self.store.purge(unix);
        self.cache.purge(unix);
        self.entries.retain(|e| e.expires > unix);
        if self.table.is_empty() {
            if self.join == Join::Joined {
                // Cut off: the next contact starts a fresh join, with its
                // own retries and publication.
                self.join = Join::Idle;
                self.join_best = 0;
                self.join_retries = 0;
            }
            if self.bootstrap_next.is_none() && !self.bootstrap.is_empty() {
                self.bootstrap_backoff = BOOTSTRAP_FIRST;
                self.ping_bootstrap(now);
            }
        }
        match self.join {
            Join::Idle => self.maybe_join(now),
            Join::Joining => {}
            Join::Joined => {
                let mut refreshes = 0;
                for index in self.table.idle_buckets(now, self.config.refresh_interval) {
                    if refreshes == MAX_REFRESHES_PER_TICK {
                        break;
                    }
                    let random = self.random_bytes();
                    let key = random_key_in_bucket(&self.id, index, random);
                    if self.start_internal(now, Kind::Refresh, key, self.config.k) {
                        refreshes += 1;
                    }
                }
                let period = self
                    .config
                    .republish_interval
                    .min(self.config.record_lifetime * 3 / 4);
                let due = self.last_publish.is_none_or(|at| now >= at + period);
                let reflexive_due = self.publish_wanted
                    && self
                        .last_publish
                        .is_none_or(|at| now >= at + REFLEXIVE_REPUBLISH_GAP);
                // Records placed while the network was much smaller sit
                // far down the ranks of their keys' closest nodes by now:
                // place them again, on the nodes closest today. The id
                // key's closest nodes are the table's own closest (they
                // found this node in their self-lookups).
                let grown = self.table.network_size() >= GROWTH_REPUBLISH * self.published_size;
                if due || reflexive_due {
                    self.publish(now, None);
                } else if grown {
                    tracing::debug!(
                        size = self.table.network_size(),
                        published = self.published_size,
                        "dht network grew: republishing"
                    );
                    let holders = self.table.closest(
                        &Key(*self.id.as_bytes()),
                        self.config.replication,
                        None,
                    );
                    self.publish(now, Some(holders));
                }
            }
        }
        self.maintenance_next = now + self.tick();
    }

    // ---- small helpers ---------------------------------------------------

    fn tick(&mut self) -> Duration {
        let base = (self
            .config
            .refresh_interval
            .min(self.config.republish_interval)
            / 4)
        .clamp(TICK_MIN, TICK_MAX);
        // Up to 10 % jitter, so that nodes started together do not tick
        // together.
        let jitter_ms = self.rng.next_u64() % (base.as_millis() as u64 / 10 + 1);
        base + Duration::from_millis(jitter_ms)
    }

    fn random_bytes(&mut self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    fn push_event(&mut self, event: DhtEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn remember_request(&mut self, now: Instant, key: u64) {
        // A request older than the skew window is refused by its timestamp,
        // so the filter only needs the last two windows.
        let horizon = Duration::from_secs(2 * MAX_CLOCK_SKEW);
        while let Some(&(at, oldest)) = self.recent_order.front() {
            if now.saturating_duration_since(at) < horizon
                && self.recent_order.len() < REPLAY_FILTER
            {
                break;
            }
            self.recent_order.pop_front();
            self.recent_requests.remove(&oldest);
        }
        if self.recent_requests.insert(key) {
            self.recent_order.push_back((now, key));
        }
    }

    fn unix_time(&self, now: Instant) -> Duration {
        self.unix_start + now.saturating_duration_since(self.start)
    }

    fn unix_secs(&self, now: Instant) -> u64 {
        self.unix_time(now).as_secs()
    }

    fn unix_millis(&self, now: Instant) -> u64 {
        u64::try_from(self.unix_time(now).as_millis()).unwrap_or(u64::MAX)
    }
}

/// Ed25519 signatures are deterministic: the same datagram has the same
/// signature, so 64 of its bits name a request for the replay filter
/// (nobody but the signer can choose them).
fn replay_key(signature: &[u8; 64]) -> u64 {
    let mut key = [0u8; 8];
    key.copy_from_slice(&signature[..8]);
    u64::from_be_bytes(key)
}

fn record_expiry(unix: u64, config: &DhtConfig, certificate: &Certificate) -> u64 {
    unix.saturating_add(config.record_lifetime.as_secs().max(1))
        .min(certificate.not_after())
}

impl std::fmt::Debug for Dht {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dht")
            .field("id", &self.id)
            .field("contacts", &self.table.len())
            .field("lookups", &self.lookups.len())
            .field("pending", &self.pending.len())
            .field("stored", &self.store.len())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one base instant
#[allow(clippy::wildcard_enum_match_arm)] // tests pick the messages they check
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dht::QueryOutcome;
    use crate::identity::{CaSecret, CertificateTemplate};

    const UNIX: u64 = 1_800_000_000;

    struct Member {
        secret: SecretKey,
        cert: Certificate,
        addr: SocketAddr,
    }

    fn ca(seed: u8) -> CaSecret {
        CaSecret::new([seed; 32], "net", UNIX - 100, UNIX + 86_400).unwrap()
    }

    fn member(ca: &CaSecret, n: u8) -> Member {
        let mut seed = [n; 64];
        seed[0] = 0x40;
        let secret = SecretKey::from_random(seed);
        let cert = ca
            .sign(&CertificateTemplate {
                name: format!("m{n}"),
                public_key: secret.public(),
                ipv4: Some(format!("198.19.0.{n}/16").parse().unwrap()),
                groups: vec![],
                not_before: UNIX - 10,
                not_after: UNIX + 86_400,
            })
            .unwrap();
        Member {
            secret,
            cert,
            addr: SocketAddr::from(([198, 18, 0, n], 4800)),
        }
    }

    fn config() -> DhtConfig {
        DhtConfig {
            query_timeout: Duration::from_millis(500),
            ..DhtConfig::default()
        }
    }

    fn engine(now: Instant, ca: &CaSecret, m: &Member) -> Dht {
        Dht::new(
            now,
            Duration::from_secs(UNIX),
            m.secret.clone(),
            m.cert.clone(),
            ca.certificate().clone(),
            config(),
            [m.addr.ip().to_string().len() as u8; 32],
        )
    }

    fn datagram(m: &Member, txid: u64, unix: u64, message: &DhtMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        DhtDatagram::emit_unsigned(&mut out, m.cert.to_bytes(), txid, unix, message);
        let signature = m.secret.sign(&datagram_digest(&out));
        out.extend_from_slice(&signature);
        out
    }

    /// Everything `dht` sent, records left out (their bytes borrow the
    /// datagram).
    fn sent(dht: &mut Dht) -> Vec<(SocketAddr, DhtMessage<'static>, u64)> {
        let mut out = Vec::new();
        while let Some((to, bytes)) = dht.poll_transmit() {
            let d = DhtDatagram::decode(&bytes).unwrap();
            let message = match d.message {
                DhtMessage::Value { observed, .. } => DhtMessage::Value {
                    observed,
                    record: &[],
                },
                DhtMessage::Store { key, .. } => DhtMessage::Store { key, record: &[] },
                DhtMessage::Ping => DhtMessage::Ping,
                DhtMessage::Pong { observed } => DhtMessage::Pong { observed },
                DhtMessage::FindNode { key } => DhtMessage::FindNode { key },
                DhtMessage::FindValue { target } => DhtMessage::FindValue { target },
                DhtMessage::Nodes { observed, contacts } => {
                    DhtMessage::Nodes { observed, contacts }
                }
                DhtMessage::StoreAck { observed, stored } => {
                    DhtMessage::StoreAck { observed, stored }
                }
                DhtMessage::Announce { key, .. } => DhtMessage::Announce { key, entry: &[] },
                DhtMessage::FindMembers { key } => DhtMessage::FindMembers { key },
                DhtMessage::Members { observed, entries } => DhtMessage::Members {
                    observed,
                    entries: vec![&[]; entries.len()],
                },
            };
            out.push((to, message, d.txid));
        }
        out
    }

    #[test]
    fn ping_is_answered_with_the_observed_endpoint_and_adds_the_sender() {
        let now = Instant::now();
        let ca = ca(1);
        let (a, b) = (member(&ca, 1), member(&ca, 2));
        let mut dht = engine(now, &ca, &a);
        dht.handle_datagram(now, b.addr, &datagram(&b, 7, UNIX, &DhtMessage::Ping));
        let out = sent(&mut dht);
        // The pong, then the join that the first contact starts.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, b.addr);
        assert_eq!(out[0].1, DhtMessage::Pong { observed: b.addr });
        assert_eq!(out[0].2, 7);
        assert_eq!(
            out[1].1,
            DhtMessage::FindNode {
                key: Key(*a.cert.node_id().as_bytes())
            }
        );
        let contacts = dht.contacts();
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].id, b.cert.node_id());
        assert_eq!(contacts[0].name.as_deref(), Some("m2"));
    }

    #[test]
    fn forged_stale_foreign_and_replayed_requests_are_rejected() {
        let now = Instant::now();
        let ca1 = ca(1);
        let (a, b, c) = (member(&ca1, 1), member(&ca1, 2), member(&ca1, 3));
        let mut dht = engine(now, &ca1, &a);
        // c signs a datagram carrying b's certificate.
        let mut forged = Vec::new();
        DhtDatagram::emit_unsigned(&mut forged, b.cert.to_bytes(), 1, UNIX, &DhtMessage::Ping);
        let signature = c.secret.sign(&datagram_digest(&forged));
        forged.extend_from_slice(&signature);
        dht.handle_datagram(now, c.addr, &forged);
        // Timestamps more than 60 s off.
        dht.handle_datagram(now, b.addr, &datagram(&b, 2, UNIX - 61, &DhtMessage::Ping));
        dht.handle_datagram(now, b.addr, &datagram(&b, 3, UNIX + 61, &DhtMessage::Ping));
        // A member of another network.
        let ca2 = ca(2);
        let x = member(&ca2, 9);
        dht.handle_datagram(now, x.addr, &datagram(&x, 4, UNIX, &DhtMessage::Ping));
        // The own certificate, reflected.
        dht.handle_datagram(now, a.addr, &datagram(&a, 5, UNIX, &DhtMessage::Ping));
        assert!(sent(&mut dht).is_empty());
        assert_eq!(dht.stats().rejected, 5);
        assert!(dht.contacts().is_empty());
        // A valid request is answered once, its replay not at all.
        let ping = datagram(&b, 6, UNIX + 60, &DhtMessage::Ping);
        dht.handle_datagram(now, b.addr, &ping);
        dht.handle_datagram(now, b.addr, &ping);
        let pongs = sent(&mut dht)
            .into_iter()
            .filter(|(_, m, _)| matches!(m, DhtMessage::Pong { .. }))
            .count();
        assert_eq!(pongs, 1);
        assert_eq!(dht.stats().rejected, 6);
        // Garbage is malformed, not rejected.
        dht.handle_datagram(now, b.addr, &[0x15, 0, 0, 0, 1]);
        assert_eq!(dht.stats().malformed, 1);
    }

    #[test]
    fn responses_count_only_from_the_asked_node_and_for_outstanding_ids() {
        let now = Instant::now();
        let ca = ca(1);
        let (a, b, c) = (member(&ca, 1), member(&ca, 2), member(&ca, 3));
        let mut dht = engine(now, &ca, &a);
        dht.add_contact(now, b.cert.node_id(), b.addr, None);
        // Adding the first contact starts the join: a FindNode to b.
        let out = sent(&mut dht);
        assert_eq!(out.len(), 1);
        let (to, message, txid) = out[0].clone();
        assert_eq!(to, b.addr);
        assert!(matches!(message, DhtMessage::FindNode { .. }));
        let answer = DhtMessage::Nodes {
            observed: a.addr,
            contacts: vec![],
        };
        // c answers in b's place: refused.
        dht.handle_datagram(now, c.addr, &datagram(&c, txid, UNIX, &answer));
        assert_eq!(dht.stats().rejected, 1);
        // An id nobody asked for: refused before any signature check.
        dht.handle_datagram(now, b.addr, &datagram(&b, txid ^ 1, UNIX, &answer));
        assert_eq!(dht.stats().rejected, 2);
        // b's answer is taken; the join ends (nobody else to ask).
        let later = now + Duration::from_millis(30);
        dht.handle_datagram(later, b.addr, &datagram(&b, txid, UNIX, &answer));
        assert_eq!(dht.stats().rejected, 2);
        assert!(dht.is_joined());
        assert_eq!(dht.poll_event(), Some(DhtEvent::Joined { contacts: 1 }));
        assert_eq!(
            dht.contacts()[0].rtt,
            Some(Duration::from_millis(30)),
            "the round trip is measured"
        );
        // The same answer again is a replay of a used id.
        dht.handle_datagram(later, b.addr, &datagram(&b, txid, UNIX, &answer));
        assert_eq!(dht.stats().rejected, 3);
        // The own record went to b (the only holder) under the id key, and
        // lookups of the name and IPv4 keys began.
        let out = sent(&mut dht);
        let id_key = Key(*a.cert.node_id().as_bytes());
        assert!(
            out.iter().any(|(to, m, _)| *to == b.addr
                && matches!(m, DhtMessage::Store { key, .. } if *key == id_key)),
            "{out:?}"
        );
        assert_eq!(
            out.iter()
                .filter(|(_, m, _)| matches!(m, DhtMessage::FindNode { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn bootstrap_pings_are_retried_with_backoff_while_the_table_is_empty() {
        let now = Instant::now();
        let ca = ca(1);
        let a = member(&ca, 1);
        let boot = SocketAddr::from((Ipv4Addr::new(198, 18, 0, 9), 4800));
        let mut dht = engine(now, &ca, &a);
        dht.bootstrap(now, &[boot]);
        assert_eq!(sent(&mut dht).len(), 1);
        let mut pinged = Vec::new();
        while let Some(at) = dht.poll_timeout()
            && at <= now + Duration::from_secs(100)
        {
            dht.handle_timeout(at);
            for (to, message, _) in sent(&mut dht) {
                assert_eq!((to, message), (boot, DhtMessage::Ping));
                pinged.push(at.duration_since(now).as_secs());
            }
        }
        assert_eq!(pinged, [1, 3, 7, 15, 31, 61, 91]);
        assert_eq!(dht.stats().query_timeouts, 8);
    }

    #[test]
    fn lookups_end_at_once_without_contacts_or_for_the_own_record() {
        let now = Instant::now();
        let ca = ca(1);
        let a = member(&ca, 1);
        let mut dht = engine(now, &ca, &a);
        let id = dht.lookup(now, Target::Name("m1".into()));
        let Some(DhtEvent::LookupDone {
            id: done,
            result,
            trace,
            ..
        }) = dht.poll_event()
        else {
            panic!("no event");
        };
        assert_eq!(done, id);
        assert_eq!(result.unwrap().node_id(), a.cert.node_id());
        assert_eq!(trace.hops, 0);
        let id = dht.lookup(now, Target::Name("nobody".into()));
        assert_eq!(
            dht.poll_event(),
            Some(DhtEvent::LookupDone {
                id,
                target: Target::Name("nobody".into()),
                result: Err(LookupError::NoContacts),
                trace: LookupTrace::default(),
            })
        );
        assert_eq!(dht.stats().lookups, 2);
        assert_eq!(dht.stats().lookups_ok, 1);
        assert_eq!(dht.stats().lookups_failed, 1);
    }

    #[test]
    fn stores_are_taken_only_under_the_record_keys_and_when_newer() {
        let now = Instant::now();
        let ca = ca(1);
        let (a, b) = (member(&ca, 1), member(&ca, 2));
        let mut dht = engine(now, &ca, &a);
        let record = |sequence: u64| {
            SignedRecord::sign(&b.secret, &b.cert, sequence, UNIX + 600, &[b.addr], &[])
        };
        let r1 = record(UNIX * 1000);
        let store = |key: Key, bytes: &[u8], txid: u64| {
            datagram(&b, txid, UNIX, &DhtMessage::Store { key, record: bytes })
        };
        let name_key = Target::Name("m2".into()).key();
        dht.handle_datagram(now, b.addr, &store(Key([7; 32]), &r1.bytes, 1));
        dht.handle_datagram(now, b.addr, &store(name_key, &r1.bytes, 2));
        dht.handle_datagram(now, b.addr, &store(name_key, &r1.bytes, 3));
        let r2 = record(UNIX * 1000 + 1);
        dht.handle_datagram(now, b.addr, &store(name_key, &r2.bytes, 4));
        let acks: Vec<bool> = sent(&mut dht)
            .into_iter()
            .filter_map(|(_, m, _)| match m {
                DhtMessage::StoreAck { stored, .. } => Some(stored),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [false, true, false, true]);
        assert_eq!(dht.stats().records_stored, 2);
        assert_eq!(dht.stats().records_rejected, 2);
        assert_eq!(dht.stored_records(), 1);
        let held = dht.cached(now, &Target::Name("m2".into())).unwrap();
        assert_eq!(held.sequence, UNIX * 1000 + 1);
        assert!(
            dht.cached(now, &Target::Ipv4(Ipv4Addr::new(198, 19, 0, 2)))
                .is_none()
        );
        // Expired records are gone after the next maintenance.
        let late = now + Duration::from_secs(700);
        assert!(dht.cached(late, &Target::Name("m2".into())).is_none());
        while let Some(at) = dht.poll_timeout() {
            if at > late {
                break;
            }
            dht.handle_timeout(at);
        }
        assert_eq!(dht.stored_records(), 0);
    }

    #[test]
    fn a_revoked_nodes_records_are_dropped_refused_and_its_datagrams_ignored() {
        let now = Instant::now();
        let ca = ca(1);
        let (a, b, c) = (member(&ca, 1), member(&ca, 2), member(&ca, 3));
        let mut dht = engine(now, &ca, &a);
        let name_key = Target::Name("m2".into()).key();
        let store = |from: &Member, bytes: &[u8], txid: u64| {
            datagram(
                from,
                txid,
                UNIX,
                &DhtMessage::Store {
                    key: name_key,
                    record: bytes,
                },
            )
        };
        let r1 = SignedRecord::sign(&b.secret, &b.cert, UNIX * 1000, UNIX + 600, &[b.addr], &[]);
        dht.handle_datagram(now, b.addr, &store(&b, &r1.bytes, 1));
        assert_eq!(dht.stored_records(), 1);
        let _ = sent(&mut dht);

        // b is blocklisted: its record goes at once.
        let mut revoked = Revoked::default();
        revoked.blocklist.insert(b.cert.fingerprint());
        dht.set_revoked(revoked);
        assert_eq!(dht.stored_records(), 0);
        assert!(dht.cached(now, &Target::Name("m2".into())).is_none());
        assert_eq!(dht.stats().records_revoked, 1);

        // b's own datagrams are dropped unanswered.
        let rejected = dht.stats().rejected;
        let r2 = SignedRecord::sign(
            &b.secret,
            &b.cert,
            UNIX * 1000 + 1,
            UNIX + 600,
            &[b.addr],
            &[],
        );
        dht.handle_datagram(now, b.addr, &store(&b, &r2.bytes, 2));
        assert_eq!(dht.stats().rejected, rejected + 1);
        assert!(sent(&mut dht).is_empty());

        // Another member storing b's record is refused too.
        dht.handle_datagram(now, c.addr, &store(&c, &r2.bytes, 3));
        let acks: Vec<bool> = sent(&mut dht)
            .into_iter()
            .filter_map(|(_, m, _)| match m {
                DhtMessage::StoreAck { stored, .. } => Some(stored),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [false]);
        assert_eq!(dht.stored_records(), 0);
        assert_eq!(dht.stats().records_revoked, 2);
    }

    #[test]
    fn find_value_is_answered_from_the_store_then_by_prefix_for_ipv6() {
        let now = Instant::now();
        let ca = ca(1);
        let (a, b, c) = (member(&ca, 1), member(&ca, 2), member(&ca, 3));
        let mut dht = engine(now, &ca, &a);
        let r = SignedRecord::sign(&b.secret, &b.cert, UNIX * 1000, UNIX + 600, &[b.addr], &[]);
        let id_key = Key(*b.cert.node_id().as_bytes());
        dht.handle_datagram(
            now,
            b.addr,
            &datagram(
                &b,
                1,
                UNIX,
                &DhtMessage::Store {
                    key: id_key,
                    record: &r.bytes,
                },
            ),
        );
        let ask =
            |target: Target, txid: u64| datagram(&c, txid, UNIX, &DhtMessage::FindValue { target });
        dht.handle_datagram(
            now,
            c.addr,
            &ask(Target::Ipv6(b.cert.node_id().overlay_ipv6()), 2),
        );
        dht.handle_datagram(now, c.addr, &ask(Target::Id(a.cert.node_id()), 3));
        dht.handle_datagram(now, c.addr, &ask(Target::Name("zz".into()), 4));
        let mut values = 0;
        let mut nodes = 0;
        while let Some((_, bytes)) = dht.poll_transmit() {
            match DhtDatagram::decode(&bytes).unwrap().message {
                DhtMessage::Value { .. } => values += 1,
                DhtMessage::Nodes { contacts, .. } => {
                    nodes += 1;
                    // b is known (it sent a request); c asked and is left out.
                    assert_eq!(contacts.len(), 1);
                    assert_eq!(contacts[0].id, b.cert.node_id());
                }
                _ => {}
            }
        }
        assert_eq!((values, nodes), (2, 1));
    }

    #[test]
    fn silent_contacts_stall_then_fail_and_are_evicted() {
        let now = Instant::now();
        let ca = ca(1);
        let a = member(&ca, 1);
        let mut dht = engine(now, &ca, &a);
        for n in 2..6 {
            let m = member(&ca, n);
            dht.add_contact(
                now,
                m.cert.node_id(),
                m.addr,
                Some(Duration::from_millis(40)),
            );
        }
        let _ = sent(&mut dht); // the join, begun with the first contact
        let finds = |dht: &mut Dht| {
            sent(dht)
                .into_iter()
                .filter(|(_, m, _)| matches!(m, DhtMessage::FindValue { .. }))
                .count()
        };
        dht.lookup(now, Target::Name("x".into()));
        assert_eq!(finds(&mut dht), 3, "α = 3 at once");
        // Soft timeout 2 × 40 + 20 = 100 ms: the fourth is asked.
        let soft = now + Duration::from_millis(100);
        assert_eq!(dht.poll_timeout(), Some(soft));
        dht.handle_timeout(soft);
        assert_eq!(finds(&mut dht), 1);
        // Hard timeouts fail them all: not found.
        let mut result = None;
        while result.is_none() {
            let at = dht.poll_timeout().unwrap();
            dht.handle_timeout(at);
            let _ = sent(&mut dht);
            while let Some(event) = dht.poll_event() {
                if let DhtEvent::LookupDone {
                    result: r, trace, ..
                } = event
                {
                    assert_eq!(at, soft + Duration::from_millis(500));
                    assert!(
                        trace
                            .queries
                            .iter()
                            .all(|q| q.outcome == QueryOutcome::Timeout)
                    );
                    result = Some(r);
                }
            }
        }
        assert_eq!(result, Some(Err(LookupError::NotFound)));
        // Two silences each (join and lookup, max_failures 2): evicted.
        let mut at = now;
        while !dht.contacts().is_empty() && at < now + Duration::from_secs(30) {
            at = dht.poll_timeout().unwrap();
            dht.handle_timeout(at);
            let _ = sent(&mut dht);
        }
        assert!(dht.contacts().is_empty());
        assert!(!dht.is_joined());
    }

    #[test]
    fn lookup_trace_records_depth_and_outcomes() {
        let now = Instant::now();
        let ca = ca(1);
        let (a, b, c) = (member(&ca, 1), member(&ca, 2), member(&ca, 3));
        let mut dht = engine(now, &ca, &a);
        dht.add_contact(now, b.cert.node_id(), b.addr, None);
        let join = sent(&mut dht);
        // b answers the join with nothing; a is joined.
        let nodes = |contacts: Vec<DhtContact>| DhtMessage::Nodes {
            observed: a.addr,
            contacts,
        };
        dht.handle_datagram(now, b.addr, &datagram(&b, join[0].2, UNIX, &nodes(vec![])));
        let _ = sent(&mut dht);
        while dht.poll_event().is_some() {}
        let target = Target::Name("m3".into());
        let id = dht.lookup(now, target.clone());
        let out = sent(&mut dht);
        let (to, _, txid) = out
            .iter()
            .find(|(_, m, _)| matches!(m, DhtMessage::FindValue { .. }))
            .unwrap()
            .clone();
        assert_eq!(to, b.addr);
        let t1 = now + Duration::from_millis(10);
        let contact = DhtContact {
            id: c.cert.node_id(),
            endpoint: c.addr,
        };
        dht.handle_datagram(t1, b.addr, &datagram(&b, txid, UNIX, &nodes(vec![contact])));
        let out = sent(&mut dht);
        let (to, _, txid) = out
            .iter()
            .find(|(_, m, _)| matches!(m, DhtMessage::FindValue { .. }))
            .unwrap()
            .clone();
        assert_eq!(to, c.addr);
        let record =
            SignedRecord::sign(&c.secret, &c.cert, UNIX * 1000, UNIX + 600, &[c.addr], &[]);
        let t2 = t1 + Duration::from_millis(20);
        let value = DhtMessage::Value {
            observed: a.addr,
            record: &record.bytes,
        };
        dht.handle_datagram(t2, c.addr, &datagram(&c, txid, UNIX, &value));
        let Some(DhtEvent::LookupDone {
            id: done,
            result,
            trace,
            ..
        }) = dht.poll_event()
        else {
            panic!("no result");
        };
        assert_eq!(done, id);
        assert_eq!(result.unwrap().name(), "m3");
        assert_eq!(trace.hops, 2);
        assert_eq!(trace.elapsed, Duration::from_millis(30));
        assert_eq!(trace.queries.len(), 2);
        assert_eq!(trace.queries[0].outcome, QueryOutcome::Nodes(1));
        assert_eq!(trace.queries[0].rtt, Some(Duration::from_millis(10)));
        assert_eq!(trace.queries[1].depth, 2);
        assert_eq!(trace.queries[1].sent_after, Duration::from_millis(10));
        assert_eq!(trace.queries[1].outcome, QueryOutcome::Value);
        // Now cached: a second lookup ends at once.
        assert!(dht.cached(t2, &target).is_some());
    }

    #[test]
    fn rendezvous_entries_are_taken_only_from_their_member_and_answered_by_ring_order() {
        let now = Instant::now();
        let ca = ca(1);
        let (holder, a, b) = (member(&ca, 1), member(&ca, 2), member(&ca, 3));
        let mut dht = engine(now, &ca, &holder);
        let group: IpAddr = "239.1.2.3".parse().unwrap();
        let key = group_key(group);
        let entry = |m: &Member, node: NodeId, group: IpAddr, expires: u64| {
            let mut out = Vec::new();
            RendezvousEntry::emit_unsigned(&mut out, &node, group, expires);
            out.extend_from_slice(&m.secret.sign(&entry_digest(&out)));
            out
        };
        let announce = |dht: &mut Dht, m: &Member, txid: u64, key: Key, entry: &[u8]| {
            let d = datagram(m, txid, UNIX, &DhtMessage::Announce { key, entry });
            dht.handle_datagram(now, m.addr, &d);
            sent(dht)
                .into_iter()
                .find_map(|(_, m, _)| match m {
                    DhtMessage::StoreAck { stored, .. } => Some(stored),
                    _ => None,
                })
                .unwrap()
        };
        let (ida, idb) = (a.cert.node_id(), b.cert.node_id());
        // Its own entry, under its group's key: taken.
        assert!(announce(
            &mut dht,
            &a,
            1,
            key,
            &entry(&a, ida, group, UNIX + 100)
        ));
        // Someone else's entry, the wrong key, expired or too far ahead:
        // refused.
        assert!(!announce(
            &mut dht,
            &b,
            2,
            key,
            &entry(&a, ida, group, UNIX + 101)
        ));
        assert!(!announce(
            &mut dht,
            &b,
            3,
            key,
            &entry(&b, ida, group, UNIX + 101)
        ));
        assert!(!announce(
            &mut dht,
            &b,
            4,
            Key([0; 32]),
            &entry(&b, idb, group, UNIX + 100)
        ));
        assert!(!announce(
            &mut dht,
            &b,
            5,
            key,
            &entry(&b, idb, group, UNIX)
        ));
        assert!(!announce(
            &mut dht,
            &b,
            6,
            key,
            &entry(&b, idb, group, UNIX + 601)
        ));
        assert!(announce(
            &mut dht,
            &b,
            7,
            key,
            &entry(&b, idb, group, UNIX + 100)
        ));
        assert_eq!(dht.stored_entries(), 2);
        assert_eq!(dht.stats().entries_rejected, 5);
        // A member asking is told of the others, not of itself.
        let ask = datagram(&a, 8, UNIX, &DhtMessage::FindMembers { key });
        dht.handle_datagram(now, a.addr, &ask);
        let mut bytes = Vec::new();
        while let Some((_, d)) = dht.poll_transmit() {
            if matches!(
                DhtDatagram::decode(&d).map(|d| d.message),
                Ok(DhtMessage::Members { .. })
            ) {
                bytes = d;
            }
        }
        let answer = DhtDatagram::decode(&bytes).unwrap();
        let DhtMessage::Members { entries, .. } = answer.message else {
            panic!("{answer:?}");
        };
        let named: Vec<NodeId> = entries
            .iter()
            .map(|e| RendezvousEntry::decode(e).unwrap().node)
            .collect();
        assert_eq!(named, vec![idb]);
        // A revoked member's entry goes.
        let mut revoked = Revoked::default();
        revoked.blocklist.insert(b.cert.fingerprint());
        dht.set_revoked(revoked);
        assert_eq!(dht.stored_entries(), 1);
    }
}
