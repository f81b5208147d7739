//! Kademlia among members: find any node by id, overlay address or name from
//! a few bootstrap endpoints, with no central server.
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
//!   nodes, and republishes it before it expires (and when the network has
//!   grown fourfold since, so that records of early nodes move to where
//!   lookups look).
//! - Every DHT datagram carries the sender's certificate and an Ed25519
//!   signature: only members of the CA take part, and nobody can speak for
//!   another. Responses echo the request's transaction id, so a replayed or
//!   unsolicited response is ignored.
//!
//! Files: `engine` (the [`Dht`] state machine: datagrams, join, publication,
//! maintenance), `table` (k-buckets), `lookup` (one iterative lookup),
//! `record` (signing and checking records), `store` (records held for
//! others and cached lookup results), `certs` (verified certificates).
//!
//! Measured costs (release build, this project's 2-core machine): an
//! Ed25519 signature 17.5 µs, a check 31 µs (36 µs strict), a certificate
//! check 40 µs; a join in a network of 10,000 costs about 90 queries
//! (180 signed datagrams, sent and received); a lookup about 8 queries.

mod certs;
mod engine;
mod lookup;
mod record;
mod rendezvous;
mod store;
mod table;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::identity::{Certificate, NodeId, is_overlay_ipv6};
use crate::wire::is_label;

pub use certs::CertificateCache;
pub use engine::{Dht, ENTRY_LIFETIME, Revoked};
pub use rendezvous::{GROUP_KEY_CONTEXT, group_key};

/// BLAKE3 `derive_key` context of the key a name is stored under.
pub const NAME_KEY_CONTEXT: &str = "weft dht name v1";
/// BLAKE3 `derive_key` context of the key an overlay IPv4 address is stored
/// under.
pub const IPV4_KEY_CONTEXT: &str = "weft dht ipv4 v1";

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
// Events are few (one per lookup): boxing the record would cost more
// in API noise than the size difference costs in memory.
#[allow(clippy::large_enum_variant)]
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
    /// A holder of `group`'s rendezvous named these members (the ones
    /// nearest this node in node-id order; unverified hints, see
    /// [`Dht::find_members`]).
    GroupMembers {
        /// The group.
        group: std::net::IpAddr,
        /// Its members, this node left out.
        members: Vec<NodeId>,
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
    /// Records of revoked certificates refused or dropped from the store
    /// and cache.
    pub records_revoked: u64,
    /// Requests or datagrams dropped because a bound was reached (pending
    /// queries, running lookups, transmit queue).
    pub dropped: u64,
    /// Group rendezvous entries taken for others.
    pub entries_stored: u64,
    /// Group rendezvous entries refused: malformed, not the announcer's
    /// own, badly signed, expired or too far ahead, stale, or over a bound
    /// (`docs/PROTOCOL.md` §15.2).
    pub entries_rejected: u64,
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
        let error = || TargetParseError(text.to_owned());
        let trimmed = text.trim();
        if let Ok(ip) = trimmed.parse::<Ipv4Addr>() {
            return Ok(Target::Ipv4(ip));
        }
        if let Ok(ip) = trimmed.parse::<Ipv6Addr>() {
            return if is_overlay_ipv6(&ip) {
                Ok(Target::Ipv6(ip))
            } else {
                Err(error())
            };
        }
        let lower = trimmed.trim_end_matches('.').to_ascii_lowercase();
        if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut id = [0u8; 32];
            for (i, byte) in id.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&lower[2 * i..2 * i + 2], 16).map_err(|_| error())?;
            }
            return Ok(Target::Id(NodeId::from_bytes(id)));
        }
        let name = lower.strip_suffix(".weft").unwrap_or(&lower);
        if is_label(name.as_bytes()) {
            Ok(Target::Name(name.to_owned()))
        } else {
            Err(error())
        }
    }

    /// The key the target's record is stored under (for IPv6: the 96 id bits,
    /// zero-padded; records match by prefix).
    pub fn key(&self) -> Key {
        match self {
            Target::Id(id) => Key(*id.as_bytes()),
            Target::Name(name) => Key(blake3::derive_key(NAME_KEY_CONTEXT, name.as_bytes())),
            Target::Ipv4(ip) => Key(blake3::derive_key(IPV4_KEY_CONTEXT, &ip.octets())),
            Target::Ipv6(ip) => {
                let mut key = [0u8; 32];
                key[..12].copy_from_slice(&ip.octets()[4..]);
                Key(key)
            }
        }
    }

    /// Whether `record` is the record this target asks for.
    pub fn matches(&self, record: &NodeRecord) -> bool {
        match self {
            Target::Id(id) => record.node_id() == *id,
            Target::Name(name) => record.name() == name,
            Target::Ipv4(ip) => record.overlay_ipv4() == Some(*ip),
            Target::Ipv6(ip) => record.overlay_ipv6() == *ip,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Id(id) => write!(f, "{id}"),
            Target::Name(name) => f.write_str(name),
            Target::Ipv4(ip) => write!(f, "{ip}"),
            Target::Ipv6(ip) => write!(f, "{ip}"),
        }
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

/// The XOR distance of two keys.
pub(crate) fn distance(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; 32];
    for (o, (x, y)) in out.iter_mut().zip(a.0.iter().zip(b.0.iter())) {
        *o = x ^ y;
    }
    Key(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn targets_parse_from_names_ids_and_addresses() {
        assert_eq!(Target::parse("db1"), Ok(Target::Name("db1".into())));
        assert_eq!(Target::parse("DB1.weft."), Ok(Target::Name("db1".into())));
        assert_eq!(
            Target::parse(" db-1.weft "),
            Ok(Target::Name("db-1".into()))
        );
        assert_eq!(
            Target::parse("198.19.0.7"),
            Ok(Target::Ipv4(Ipv4Addr::new(198, 19, 0, 7)))
        );
        let ip: Ipv6Addr = "fd77:6566:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(Target::parse("fd77:6566:1:2:3:4:5:6"), Ok(Target::Ipv6(ip)));
        let hex = "ab".repeat(32);
        assert_eq!(
            Target::parse(&hex.to_uppercase()),
            Ok(Target::Id(NodeId::from_bytes([0xab; 32])))
        );
        for bad in [
            "",
            "-a",
            "a_b",
            "2001:db8::1",
            "a..b",
            "x.y.weft",
            &"g".repeat(64),
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        // 63 hex digits are a name, not an id.
        assert_eq!(
            Target::parse(&"a".repeat(63)),
            Ok(Target::Name("a".repeat(63)))
        );
    }

    #[test]
    fn ipv6_key_is_the_id_prefix() {
        let id = NodeId::from_bytes([0x5c; 32]);
        let key = Target::Ipv6(id.overlay_ipv6()).key();
        assert_eq!(&key.0[..12], &id.as_bytes()[..12]);
        assert_eq!(&key.0[12..], &[0u8; 20]);
        assert_ne!(
            Target::Name("a".into()).key(),
            Target::Name("b".into()).key()
        );
        assert_eq!(Target::Id(id).key(), Key(*id.as_bytes()));
    }

    fn key() -> impl Strategy<Value = Key> {
        any::<[u8; 32]>().prop_map(Key)
    }

    proptest! {
        #[test]
        fn xor_distance_is_a_metric(a in key(), b in key(), c in key()) {
            prop_assert_eq!(distance(&a, &a), Key([0; 32]));
            prop_assert_eq!(distance(&a, &b), distance(&b, &a));
            // XOR: d(a, c) = d(a, b) xor d(b, c), so the triangle holds.
            prop_assert_eq!(distance(&a, &c), distance(&distance(&a, &b), &distance(&b, &c)));
            let ab = u128::from_be_bytes(distance(&a, &b).0[..16].try_into().unwrap());
            let bc = u128::from_be_bytes(distance(&b, &c).0[..16].try_into().unwrap());
            let ac = u128::from_be_bytes(distance(&a, &c).0[..16].try_into().unwrap());
            prop_assert!(ac <= ab.saturating_add(bc));
        }

        #[test]
        fn xor_distance_is_unidirectional(a in key(), b in key(), c in key()) {
            // For a point and a distance there is exactly one other point.
            prop_assert_eq!(distance(&a, &b) == distance(&a, &c), b == c);
        }

        #[test]
        fn target_parse_never_panics(text in ".{0,80}") {
            let _ = Target::parse(&text);
        }
    }
}
