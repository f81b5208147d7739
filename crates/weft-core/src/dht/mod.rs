//! Kademlia among members: find any node by id, overlay address or name from
//! a few bootstrap endpoints, with no central server.
//!
//! SKELETON: the public API below is fixed (the node, the daemon and the
//! simulator are written against it); the bodies are being implemented.
//!
//! Design (see `docs/PROTOCOL.md` §14 for the wire format):
//! - XOR metric over 256-bit keys; a node's key is its [`NodeId`].
//! - k-buckets (k = [`DhtConfig::k`]) with liveness: a contact that fails
//!   [`DhtConfig::max_failures`] queries in a row is replaced from the
//!   bucket's replacement cache; a full bucket prefers lower-RTT contacts
//!   (proximity neighbour selection), otherwise keeps its old, proven ones.
//! - Iterative lookups with α ([`DhtConfig::alpha`]) queries in flight; a
//!   query that has not answered within its soft timeout stops counting
//!   against α (a late answer is still used until the hard timeout).
//! - Records: every node publishes a [`NodeRecord`] signed with its
//!   certificate's Ed25519 key under the keys of its node id, its name and
//!   its overlay IPv4 address, on the [`DhtConfig::replication`] closest
//!   nodes, and republishes it before it expires.
//! - Every DHT datagram carries the sender's certificate and an Ed25519
//!   signature: only members of the CA take part, and nobody can speak for
//!   another. Responses echo the request's transaction id, so a replayed or
//!   unsolicited response is ignored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::identity::{CaCertificate, Certificate, NodeId, SecretKey};

/// A point in the 256-bit XOR key space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key(pub [u8; 32]);

/// What a lookup looks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    /// A node by id.
    Id(NodeId),
    /// A node by certificate name (without `.weft`).
    Name(String),
    /// A node by overlay IPv4 address (from its certificate).
    Ipv4(Ipv4Addr),
    /// A node by overlay IPv6 address (the first 96 bits of its id).
    Ipv6(Ipv6Addr),
}

/// Why a string is not a lookup target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is neither a node name, a node id (64 hex digits) nor an overlay address")]
pub struct TargetParseError(pub String);

/// A node's signed self-description, as stored in the DHT.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeRecord {
    /// The node's certificate (name, keys, IPv4 address, groups).
    pub certificate: Certificate,
    /// Orders records of one node: newer wins (unix milliseconds when made).
    pub sequence: u64,
    /// Unix seconds after which the record is dropped.
    pub expires: u64,
    /// Underlay endpoints where the node answers.
    pub endpoints: Vec<SocketAddr>,
    /// Multicast groups the node has joined (issue 5; empty for now).
    pub groups: Vec<String>,
}

/// Tuning. Defaults suit the Internet; tests shorten the intervals.
#[derive(Clone, Debug, PartialEq)]
pub struct DhtConfig {
    /// Bucket size, and how many closest nodes a lookup converges on.
    pub k: usize,
    /// Queries in flight per lookup.
    pub alpha: usize,
    /// How many closest nodes store each record.
    pub replication: usize,
    /// Longest wait for one query's answer.
    pub query_timeout: Duration,
    /// Longest a lookup may take.
    pub lookup_timeout: Duration,
    /// Consecutive failed queries before a contact is evicted.
    pub max_failures: u32,
    /// A bucket untouched this long is refreshed by a lookup of a random key in it.
    pub refresh_interval: Duration,
    /// The own record is republished this often.
    pub republish_interval: Duration,
    /// Lifetime of a published record.
    pub record_lifetime: Duration,
    /// Records held for others, at most.
    pub max_records: usize,
}

/// Identifies a lookup in [`DhtEvent::LookupDone`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LookupId(pub u64);

/// How one query of a lookup went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueryOutcome {
    /// It returned the record.
    Value,
    /// It returned this many closer contacts.
    Nodes(usize),
    /// It did not answer in time.
    Timeout,
    /// It was still outstanding when the lookup ended.
    Unanswered,
}

/// One query of a lookup, for `weft lookup`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QueryTrace {
    /// Whom it asked.
    pub node: NodeId,
    /// Where.
    pub endpoint: SocketAddr,
    /// 1 for the lookup's initial contacts; d + 1 for contacts learnt from a
    /// depth-d answer.
    pub depth: u32,
    /// When it was sent, from the start of the lookup.
    pub sent_after: Duration,
    /// Its round-trip time, if it answered.
    pub rtt: Option<Duration>,
    /// What came of it.
    pub outcome: QueryOutcome,
}

/// How a lookup went.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LookupTrace {
    /// Depth of the query that returned the record (0: answered locally).
    pub hops: u32,
    /// From start to end.
    pub elapsed: Duration,
    /// Every query sent, in order.
    pub queries: Vec<QueryTrace>,
}

/// Why a lookup failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum LookupError {
    /// The closest nodes were asked and none holds such a record.
    #[error("no such node in the network")]
    NotFound,
    /// The routing table is empty: not bootstrapped.
    #[error("no DHT contacts (not bootstrapped)")]
    NoContacts,
    /// The lookup ran out of time.
    #[error("lookup timed out")]
    TimedOut,
}

/// What the DHT reports.
#[derive(Clone, PartialEq, Debug)]
pub enum DhtEvent {
    /// A lookup ended.
    LookupDone {
        /// Which.
        id: LookupId,
        /// What it looked for.
        target: Target,
        /// The verified record, or why not.
        result: Result<NodeRecord, LookupError>,
        /// How it went.
        trace: LookupTrace,
    },
    /// The join (self-lookup after bootstrap) finished with this many contacts.
    Joined {
        /// Contacts in the routing table.
        contacts: usize,
    },
}

/// A routing-table entry, for neighbour selection and status.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ContactInfo {
    /// Its id.
    pub id: NodeId,
    /// Where it answers.
    pub endpoint: SocketAddr,
    /// Smoothed RTT of its answers, if measured.
    pub rtt: Option<Duration>,
    /// Its certificate name, if it has been verified.
    pub name: Option<String>,
}

/// DHT counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Datagrams received / sent.
    pub rx: u64,
    /// Datagrams sent.
    pub tx: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Undecodable datagrams.
    pub malformed: u64,
    /// Datagrams with a bad certificate or signature, stale timestamps, or
    /// unsolicited responses.
    pub rejected: u64,
    /// Queries sent.
    pub queries: u64,
    /// Queries that timed out.
    pub query_timeouts: u64,
    /// Lookups started / succeeded / failed.
    pub lookups: u64,
    /// Lookups that found their record.
    pub lookups_ok: u64,
    /// Lookups that failed.
    pub lookups_failed: u64,
    /// Records accepted for storage.
    pub records_stored: u64,
    /// Records refused (forged, stale, misplaced, expired).
    pub records_rejected: u64,
}

/// One node's DHT engine (sans-IO, like [`crate::Node`]).
pub struct Dht {
    _private: (),
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
        let _ = (now, unix_start, secret, certificate, ca, config, seed);
        todo!()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        todo!()
    }

    /// Whether `datagram` is a DHT datagram (outer packet type 5).
    pub fn is_dht_datagram(datagram: &[u8]) -> bool {
        let _ = datagram;
        todo!()
    }

    /// Contacts these endpoints (identities unknown: the answers carry their
    /// certificates) and joins through whichever answer: a self-lookup, then
    /// bucket refreshes and publication of the own record. Retried with
    /// backoff while the routing table stays empty.
    pub fn bootstrap(&mut self, now: Instant, endpoints: &[SocketAddr]) {
        let _ = (now, endpoints);
        todo!()
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
        let _ = (now, id, endpoint, rtt);
        todo!()
    }

    /// The endpoints this node advertises in its record, besides the
    /// reflexive addresses that answers report. Republishes on change.
    pub fn set_endpoints(&mut self, now: Instant, endpoints: Vec<SocketAddr>) {
        let _ = (now, endpoints);
        todo!()
    }

    /// The groups this node advertises in its record. Republishes on change.
    pub fn set_groups(&mut self, now: Instant, groups: Vec<String>) {
        let _ = (now, groups);
        todo!()
    }

    /// Starts a lookup. A target answered by the own record or a cached one
    /// ends at once (its event is queued with `hops` 0).
    pub fn lookup(&mut self, now: Instant, target: Target) -> LookupId {
        let _ = (now, target);
        todo!()
    }

    /// A valid, unexpired record for `target` held locally (own, stored for
    /// others, or cached from a lookup).
    pub fn cached(&self, now: Instant, target: &Target) -> Option<&NodeRecord> {
        let _ = (now, target);
        todo!()
    }

    /// Handles one DHT datagram from `from`. Bad input is counted, never
    /// fatal.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let _ = (now, from, datagram);
        todo!()
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// When [`Dht::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        todo!()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        todo!()
    }

    /// The routing table's contacts.
    pub fn contacts(&self) -> Vec<ContactInfo> {
        todo!()
    }

    /// Counters.
    pub fn stats(&self) -> &DhtStats {
        todo!()
    }

    /// The record this node publishes, once it has one.
    pub fn own_record(&self) -> Option<&NodeRecord> {
        todo!()
    }

    /// Records held for others (for status and the memory benchmark).
    pub fn stored_records(&self) -> usize {
        todo!()
    }
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            replication: 8,
            query_timeout: Duration::from_secs(1),
            lookup_timeout: Duration::from_secs(10),
            max_failures: 2,
            refresh_interval: Duration::from_secs(15 * 60),
            republish_interval: Duration::from_secs(20 * 60),
            record_lifetime: Duration::from_secs(60 * 60),
            max_records: 65_536,
        }
    }
}

impl Target {
    /// Parses `db1`, `db1.weft`, a 64-hex-digit node id, or an overlay IPv4
    /// or IPv6 address.
    pub fn parse(text: &str) -> Result<Self, TargetParseError> {
        let _ = text;
        todo!()
    }

    /// The key the target's record is stored under (for IPv6: the 96 id bits,
    /// zero-padded; records match by prefix).
    pub fn key(&self) -> Key {
        todo!()
    }

    /// Whether `record` is the record this target asks for.
    pub fn matches(&self, record: &NodeRecord) -> bool {
        let _ = record;
        todo!()
    }
}

impl NodeRecord {
    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.certificate.node_id()
    }

    /// The node's certificate name.
    pub fn name(&self) -> &str {
        self.certificate.name()
    }

    /// The node's overlay IPv6 address.
    pub fn overlay_ipv6(&self) -> Ipv6Addr {
        self.node_id().overlay_ipv6()
    }

    /// The node's overlay IPv4 address, if its certificate has one.
    pub fn overlay_ipv4(&self) -> Option<Ipv4Addr> {
        self.certificate.ipv4().map(|net| net.addr)
    }
}
