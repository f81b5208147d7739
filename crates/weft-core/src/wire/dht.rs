//! DHT datagrams and DHT records: parse and emit, no state.
//!
//! A DHT datagram (outer packet type 5, `docs/PROTOCOL.md` §14):
//!
//! ```text
//! [preamble (4) = 0x15 0 0 0][certificate length (2)][certificate]
//! [body version (1) = 1][message kind (1)][transaction id (8)][unix seconds (8)]
//! [message fields][signature (64)]
//! ```
//!
//! The signature is the sender's Ed25519 signature (by the key in the
//! certificate) over the 32-byte BLAKE3 `derive_key` hash, context
//! [`DATAGRAM_CONTEXT`], of every byte before it. A DHT record has the same
//! shape with its own context ([`RECORD_CONTEXT`]), so a datagram signature can
//! never pass for a record signature or for a link-state record.
//!
//! Parsing checks the layout only (and bounds every count, so a decoder never
//! allocates more than a few kilobytes); the certificate, the signature and
//! the timestamps are the receiver's to verify. Decoders are total: any bytes
//! give a value or a [`DecodeError`], never a panic. Every value has exactly
//! one encoding: trailing bytes, unknown kinds and out-of-range fields are
//! errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DecodeError, TYPE_DHT, VERSION, read_u16, read_u64};
use crate::dht::{Key, Target};
use crate::identity::NodeId;

/// The preamble of every DHT datagram.
pub const DHT_PREAMBLE: [u8; 4] = [(VERSION << 4) | TYPE_DHT, 0, 0, 0];
/// BLAKE3 `derive_key` context of the hash a datagram signature signs.
pub const DATAGRAM_CONTEXT: &str = "weft 2026-11 dht datagram v1";
/// BLAKE3 `derive_key` context of the hash a record signature signs.
pub const RECORD_CONTEXT: &str = "weft 2026-11 dht record v1";
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Most contacts a `Nodes` message may carry.
pub const MAX_CONTACTS: usize = 32;
/// Most endpoints a record may list.
pub const MAX_RECORD_ENDPOINTS: usize = 16;
/// Most groups a record may list.
pub const MAX_RECORD_GROUPS: usize = 32;
/// Longest encoded record (so a `Value` or `Store` datagram stays near one
/// path MTU).
pub const MAX_RECORD_LEN: usize = 1100;
/// Longest name or group label.
pub const MAX_LABEL_LEN: usize = 63;
/// BLAKE3 `derive_key` context of the hash a rendezvous entry signature
/// signs.
pub const ENTRY_CONTEXT: &str = "weft 2026-12 group rendezvous entry v1";
/// Most rendezvous entries a `Members` answer carries (so that it stays
/// under 1,280 bytes with a 320-byte certificate: 6 × 122 + about 430).
pub const MAX_MEMBERS_ANSWER: usize = 6;
/// Longest encoded rendezvous entry (an IPv6 group).
pub const MAX_ENTRY_LEN: usize = 1 + 32 + 17 + 8 + SIGNATURE_LEN;

const BODY_VERSION: u8 = 1;
const RECORD_VERSION: u8 = 1;
const PREAMBLE_LEN: usize = 4;

const KIND_PING: u8 = 1;
const KIND_PONG: u8 = 2;
const KIND_FIND_NODE: u8 = 3;
const KIND_FIND_VALUE: u8 = 4;
const KIND_NODES: u8 = 5;
const KIND_VALUE: u8 = 6;
const KIND_STORE: u8 = 7;
const KIND_STORE_ACK: u8 = 8;
const KIND_ANNOUNCE: u8 = 9;
const KIND_FIND_MEMBERS: u8 = 10;
const KIND_MEMBERS: u8 = 11;
const ENTRY_VERSION: u8 = 1;

const TARGET_ID: u8 = 1;
const TARGET_NAME: u8 = 2;
const TARGET_IPV4: u8 = 3;
const TARGET_IPV6: u8 = 4;

/// A contact in a `Nodes` answer: who, and where it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhtContact {
    /// Its node id.
    pub id: NodeId,
    /// Its endpoint.
    pub endpoint: SocketAddr,
}

/// The message a DHT datagram carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhtMessage<'a> {
    /// Are you there? (Also: who are you, for bootstrap endpoints.)
    Ping,
    /// Answer to `Ping`.
    Pong {
        /// The requester's endpoint as the responder saw it.
        observed: SocketAddr,
    },
    /// Which nodes do you know closest to `key`?
    FindNode {
        /// The key.
        key: Key,
    },
    /// Do you hold a record for `target`? Otherwise: closest nodes.
    FindValue {
        /// What is looked for.
        target: Target,
    },
    /// Answer to `FindNode` or `FindValue`: the closest contacts known.
    Nodes {
        /// The requester's endpoint as the responder saw it.
        observed: SocketAddr,
        /// At most [`MAX_CONTACTS`].
        contacts: Vec<DhtContact>,
    },
    /// Answer to `FindValue`: the record.
    Value {
        /// The requester's endpoint as the responder saw it.
        observed: SocketAddr,
        /// A signed record (see [`RecordFields`]).
        record: &'a [u8],
    },
    /// Please hold this record under `key`.
    Store {
        /// One of the record's keys.
        key: Key,
        /// A signed record.
        record: &'a [u8],
    },
    /// Answer to `Store` and `Announce`.
    StoreAck {
        /// The requester's endpoint as the responder saw it.
        observed: SocketAddr,
        /// Whether the record was taken.
        stored: bool,
    },
    /// Please hold this rendezvous entry of mine under `key` (the group's
    /// rendezvous key).
    Announce {
        /// The group's rendezvous key.
        key: Key,
        /// A signed entry (see [`RendezvousEntry`]), the sender's own.
        entry: &'a [u8],
    },
    /// Which members of the group whose rendezvous key is `key` do you hold?
    FindMembers {
        /// The group's rendezvous key.
        key: Key,
    },
    /// Answer to `FindMembers`: at most [`MAX_MEMBERS_ANSWER`] entries (none
    /// when the responder holds none).
    Members {
        /// The requester's endpoint as the responder saw it.
        observed: SocketAddr,
        /// Signed entries, as their members announced them.
        entries: Vec<&'a [u8]>,
    },
}

impl DhtMessage<'_> {
    /// Whether this message answers a request (and so must echo its id).
    pub fn is_response(&self) -> bool {
        match self {
            DhtMessage::Pong { .. }
            | DhtMessage::Nodes { .. }
            | DhtMessage::Value { .. }
            | DhtMessage::StoreAck { .. }
            | DhtMessage::Members { .. } => true,
            DhtMessage::Ping
            | DhtMessage::FindNode { .. }
            | DhtMessage::FindValue { .. }
            | DhtMessage::Store { .. }
            | DhtMessage::Announce { .. }
            | DhtMessage::FindMembers { .. } => false,
        }
    }
}

/// A parsed, not yet verified, DHT datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtDatagram<'a> {
    /// The sender's encoded certificate.
    pub certificate: &'a [u8],
    /// Transaction id: chosen by the requester, echoed by the response.
    pub txid: u64,
    /// The sender's wall clock, unix seconds.
    pub timestamp: u64,
    /// The message.
    pub message: DhtMessage<'a>,
    /// The bytes the signature covers (everything before it).
    pub signed: &'a [u8],
    /// The sender's signature.
    pub signature: &'a [u8; SIGNATURE_LEN],
}

impl<'a> DhtDatagram<'a> {
    /// Parses a whole datagram, preamble included. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let preamble = r.take(PREAMBLE_LEN, "dht preamble")?;
        if preamble[0] >> 4 != VERSION {
            return Err(DecodeError::UnknownVersion(preamble[0] >> 4));
        }
        if preamble[0] & 0x0f != TYPE_DHT {
            return Err(DecodeError::UnknownType {
                what: "packet",
                value: preamble[0] & 0x0f,
            });
        }
        if preamble[1..] != [0, 0, 0] {
            return Err(DecodeError::Reserved);
        }
        let cert_len = r.u16("dht certificate length")? as usize;
        let certificate = r.take(cert_len, "dht certificate")?;
        let version = r.u8("dht body")?;
        if version != BODY_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let kind = r.u8("dht body")?;
        let txid = r.u64("dht body")?;
        let timestamp = r.u64("dht body")?;
        let message = match kind {
            KIND_PING => DhtMessage::Ping,
            KIND_PONG => DhtMessage::Pong {
                observed: r.endpoint()?,
            },
            KIND_FIND_NODE => DhtMessage::FindNode { key: r.key()? },
            KIND_FIND_VALUE => DhtMessage::FindValue {
                target: r.target()?,
            },
            KIND_NODES => {
                let observed = r.endpoint()?;
                let count = r.u8("nodes count")? as usize;
                if count > MAX_CONTACTS {
                    return Err(DecodeError::Invalid("contact count"));
                }
                let mut contacts = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = NodeId::from_bytes(r.key()?.0);
                    let endpoint = r.endpoint()?;
                    contacts.push(DhtContact { id, endpoint });
                }
                DhtMessage::Nodes { observed, contacts }
            }
            KIND_VALUE => {
                let observed = r.endpoint()?;
                let record = r.record()?;
                DhtMessage::Value { observed, record }
            }
            KIND_STORE => {
                let key = r.key()?;
                let record = r.record()?;
                DhtMessage::Store { key, record }
            }
            KIND_STORE_ACK => {
                let observed = r.endpoint()?;
                let stored = match r.u8("store ack")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("store ack status")),
                };
                DhtMessage::StoreAck { observed, stored }
            }
            KIND_ANNOUNCE => {
                let key = r.key()?;
                let entry = r.entry()?;
                DhtMessage::Announce { key, entry }
            }
            KIND_FIND_MEMBERS => DhtMessage::FindMembers { key: r.key()? },
            KIND_MEMBERS => {
                let observed = r.endpoint()?;
                let count = r.u8("members count")? as usize;
                if count > MAX_MEMBERS_ANSWER {
                    return Err(DecodeError::Invalid("members count"));
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push(r.entry()?);
                }
                DhtMessage::Members { observed, entries }
            }
            other => {
                return Err(DecodeError::UnknownType {
                    what: "dht message",
                    value: other,
                });
            }
        };
        let signed_len = r.at;
        let signature = r.signature("dht signature")?;
        r.finish("dht datagram")?;
        Ok(Self {
            certificate,
            txid,
            timestamp,
            message,
            signed: &bytes[..signed_len],
            signature,
        })
    }

    /// Appends a datagram without its signature: the caller appends
    /// [`SIGNATURE_LEN`] bytes of signature over `out[start..]` (see
    /// [`datagram_digest`]). Fields beyond the format's bounds (over
    /// [`MAX_CONTACTS`] contacts, a record over [`MAX_RECORD_LEN`]) are cut,
    /// and the receiver will reject what no longer verifies.
    pub fn emit_unsigned(
        out: &mut Vec<u8>,
        certificate: &[u8],
        txid: u64,
        timestamp: u64,
        message: &DhtMessage<'_>,
    ) {
        out.extend_from_slice(&DHT_PREAMBLE);
        let cert_len = certificate.len().min(u16::MAX as usize);
        out.extend_from_slice(&(cert_len as u16).to_be_bytes());
        out.extend_from_slice(&certificate[..cert_len]);
        out.push(BODY_VERSION);
        let kind = match message {
            DhtMessage::Ping => KIND_PING,
            DhtMessage::Pong { .. } => KIND_PONG,
            DhtMessage::FindNode { .. } => KIND_FIND_NODE,
            DhtMessage::FindValue { .. } => KIND_FIND_VALUE,
            DhtMessage::Nodes { .. } => KIND_NODES,
            DhtMessage::Value { .. } => KIND_VALUE,
            DhtMessage::Store { .. } => KIND_STORE,
            DhtMessage::StoreAck { .. } => KIND_STORE_ACK,
            DhtMessage::Announce { .. } => KIND_ANNOUNCE,
            DhtMessage::FindMembers { .. } => KIND_FIND_MEMBERS,
            DhtMessage::Members { .. } => KIND_MEMBERS,
        };
        out.push(kind);
        out.extend_from_slice(&txid.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        match message {
            DhtMessage::Ping => {}
            DhtMessage::Pong { observed } => emit_endpoint(out, observed),
            DhtMessage::FindNode { key } => out.extend_from_slice(&key.0),
            DhtMessage::FindValue { target } => emit_target(out, target),
            DhtMessage::Nodes { observed, contacts } => {
                emit_endpoint(out, observed);
                let count = contacts.len().min(MAX_CONTACTS);
                out.push(count as u8);
                for contact in &contacts[..count] {
                    out.extend_from_slice(contact.id.as_bytes());
                    emit_endpoint(out, &contact.endpoint);
                }
            }
            DhtMessage::Value { observed, record } => {
                emit_endpoint(out, observed);
                emit_record_bytes(out, record);
            }
            DhtMessage::Store { key, record } => {
                out.extend_from_slice(&key.0);
                emit_record_bytes(out, record);
            }
            DhtMessage::StoreAck { observed, stored } => {
                emit_endpoint(out, observed);
                out.push(u8::from(*stored));
            }
            DhtMessage::Announce { key, entry } => {
                out.extend_from_slice(&key.0);
                emit_entry_bytes(out, entry);
            }
            DhtMessage::FindMembers { key } => out.extend_from_slice(&key.0),
            DhtMessage::Members { observed, entries } => {
                emit_endpoint(out, observed);
                let count = entries.len().min(MAX_MEMBERS_ANSWER);
                out.push(count as u8);
                for entry in &entries[..count] {
                    emit_entry_bytes(out, entry);
                }
            }
        }
    }
}

/// A member's signed rendezvous entry, as the DHT holds it under the key
/// of its group (`docs/PROTOCOL.md` §15.2):
///
/// ```text
/// [version (1) = 1][node id (32)][group: family (1) = 4 | 6, address (4 | 16)]
/// [expires, unix seconds (8)][signature (64)]
/// ```
///
/// The signature is by the member's certificate key over BLAKE3
/// `derive_key(`[`ENTRY_CONTEXT`]`, every byte before it)`. On the wire an
/// entry is preceded by its length (u8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RendezvousEntry<'a> {
    /// The member.
    pub node: NodeId,
    /// The group.
    pub group: IpAddr,
    /// Unix seconds after which the entry is void.
    pub expires: u64,
    /// The bytes the signature covers.
    pub signed: &'a [u8],
    /// The member's signature.
    pub signature: &'a [u8; SIGNATURE_LEN],
}

impl<'a> RendezvousEntry<'a> {
    /// Parses an entry. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("rendezvous entry")?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let node = NodeId::from_bytes(r.key()?.0);
        let group = r.ip("rendezvous group", "group family")?;
        let expires = r.u64("rendezvous entry")?;
        let signed_len = r.at;
        let signature = r.signature("rendezvous signature")?;
        r.finish("rendezvous entry")?;
        Ok(Self {
            node,
            group,
            expires,
            signed: &bytes[..signed_len],
            signature,
        })
    }

    /// Appends an entry without its signature: the caller appends the
    /// signature over `out[start..]` (see [`entry_digest`]).
    pub fn emit_unsigned(out: &mut Vec<u8>, node: &NodeId, group: IpAddr, expires: u64) {
        out.push(ENTRY_VERSION);
        out.extend_from_slice(node.as_bytes());
        emit_ip(out, group);
        out.extend_from_slice(&expires.to_be_bytes());
    }
}

/// The hash a rendezvous entry signature signs: BLAKE3 `derive_key` of
/// `signed` under [`ENTRY_CONTEXT`].
pub fn entry_digest(signed: &[u8]) -> [u8; 32] {
    blake3::derive_key(ENTRY_CONTEXT, signed)
}

fn emit_entry_bytes(out: &mut Vec<u8>, entry: &[u8]) {
    let len = entry.len().min(MAX_ENTRY_LEN);
    out.push(len as u8);
    out.extend_from_slice(&entry[..len]);
}

/// The parsed, not yet verified, fields of a signed DHT record:
///
/// ```text
/// [version (1) = 1][certificate length (2)][certificate][sequence (8)]
/// [expires, unix seconds (8)][endpoint count (1)][endpoints]
/// [group count (1)][groups: length (1), label][signature (64)]
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields<'a> {
    /// The owner's encoded certificate.
    pub certificate: &'a [u8],
    /// Unix milliseconds when made: newer wins.
    pub sequence: u64,
    /// Unix seconds after which the record is void.
    pub expires: u64,
    /// Underlay endpoints, at most [`MAX_RECORD_ENDPOINTS`].
    pub endpoints: Vec<SocketAddr>,
    /// Group labels, at most [`MAX_RECORD_GROUPS`].
    pub groups: Vec<&'a str>,
    /// The bytes the signature covers.
    pub signed: &'a [u8],
    /// The owner's signature.
    pub signature: &'a [u8; SIGNATURE_LEN],
}

impl<'a> RecordFields<'a> {
    /// Parses a record. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(DecodeError::Invalid("record length"));
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("record")?;
        if version != RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let cert_len = r.u16("record certificate length")? as usize;
        let certificate = r.take(cert_len, "record certificate")?;
        let sequence = r.u64("record")?;
        let expires = r.u64("record")?;
        let count = r.u8("record endpoints")? as usize;
        if count > MAX_RECORD_ENDPOINTS {
            return Err(DecodeError::Invalid("record endpoint count"));
        }
        let mut endpoints = Vec::with_capacity(count);
        for _ in 0..count {
            endpoints.push(r.endpoint()?);
        }
        let count = r.u8("record groups")? as usize;
        if count > MAX_RECORD_GROUPS {
            return Err(DecodeError::Invalid("record group count"));
        }
        let mut groups = Vec::with_capacity(count);
        for _ in 0..count {
            groups.push(r.label()?);
        }
        let signed_len = r.at;
        let signature = r.signature("record signature")?;
        r.finish("record")?;
        Ok(Self {
            certificate,
            sequence,
            expires,
            endpoints,
            groups,
            signed: &bytes[..signed_len],
            signature,
        })
    }

    /// Appends a record without its signature: the caller appends the
    /// signature over `out[start..]` (see [`record_digest`]). Endpoints and
    /// groups beyond the bounds are left out; invalid labels are skipped.
    pub fn emit_unsigned(
        out: &mut Vec<u8>,
        certificate: &[u8],
        sequence: u64,
        expires: u64,
        endpoints: &[SocketAddr],
        groups: &[String],
    ) {
        out.push(RECORD_VERSION);
        let cert_len = certificate.len().min(u16::MAX as usize);
        out.extend_from_slice(&(cert_len as u16).to_be_bytes());
        out.extend_from_slice(&certificate[..cert_len]);
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&expires.to_be_bytes());
        let endpoints = &endpoints[..endpoints.len().min(MAX_RECORD_ENDPOINTS)];
        out.push(endpoints.len() as u8);
        for endpoint in endpoints {
            emit_endpoint(out, endpoint);
        }
        let groups: Vec<&String> = groups
            .iter()
            .filter(|g| is_label(g.as_bytes()))
            .take(MAX_RECORD_GROUPS)
            .collect();
        out.push(groups.len() as u8);
        for group in groups {
            out.push(group.len() as u8);
            out.extend_from_slice(group.as_bytes());
        }
    }
}

/// The hash a datagram signature signs: BLAKE3 `derive_key` of `signed`
/// under [`DATAGRAM_CONTEXT`].
pub fn datagram_digest(signed: &[u8]) -> [u8; 32] {
    blake3::derive_key(DATAGRAM_CONTEXT, signed)
}

/// The hash a record signature signs: BLAKE3 `derive_key` of `signed` under
/// [`RECORD_CONTEXT`].
pub fn record_digest(signed: &[u8]) -> [u8; 32] {
    blake3::derive_key(RECORD_CONTEXT, signed)
}

/// Whether `bytes` is a lowercase DNS label (what certificates allow for
/// names and groups).
pub fn is_label(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Appends an endpoint as DHT records and frames carry it: family (4 or
/// 6), address, port.
pub(super) fn emit_endpoint(out: &mut Vec<u8>, endpoint: &SocketAddr) {
    emit_ip(out, endpoint.ip());
    out.extend_from_slice(&endpoint.port().to_be_bytes());
}

/// A family byte (4 or 6) and the address: endpoints and group addresses.
fn emit_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
}

fn emit_target(out: &mut Vec<u8>, target: &Target) {
    match target {
        Target::Id(id) => {
            out.push(TARGET_ID);
            out.extend_from_slice(id.as_bytes());
        }
        Target::Name(name) => {
            // A name over the bound cannot be a certificate name: send it
            // cut, it will be found nowhere.
            let len = name.len().min(MAX_LABEL_LEN);
            out.push(TARGET_NAME);
            out.push(len as u8);
            out.extend_from_slice(&name.as_bytes()[..len]);
        }
        Target::Ipv4(ip) => {
            out.push(TARGET_IPV4);
            out.extend_from_slice(&ip.octets());
        }
        Target::Ipv6(ip) => {
            out.push(TARGET_IPV6);
            out.extend_from_slice(&ip.octets());
        }
    }
}

fn emit_record_bytes(out: &mut Vec<u8>, record: &[u8]) {
    let len = record.len().min(MAX_RECORD_LEN);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&record[..len]);
}

/// A cursor over a byte string whose every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(len)
            .ok_or(DecodeError::Truncated(what))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(DecodeError::Truncated(what))?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let value = read_u16(self.bytes, self.at).ok_or(DecodeError::Truncated(what))?;
        self.at += 2;
        Ok(value)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let value = read_u64(self.bytes, self.at).ok_or(DecodeError::Truncated(what))?;
        self.at += 8;
        Ok(value)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn key(&mut self) -> Result<Key, DecodeError> {
        Ok(Key(self.array::<32>("dht key")?))
    }

    fn signature(&mut self, what: &'static str) -> Result<&'a [u8; SIGNATURE_LEN], DecodeError> {
        let slice = self.take(SIGNATURE_LEN, what)?;
        slice.try_into().map_err(|_| DecodeError::Truncated(what))
    }

    /// A family byte (4 or 6) and the address.
    fn ip(&mut self, what: &'static str, family: &'static str) -> Result<IpAddr, DecodeError> {
        match self.u8(what)? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?))),
            other => Err(DecodeError::UnknownType {
                what: family,
                value: other,
            }),
        }
    }

    fn endpoint(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = self.ip("endpoint", "address family")?;
        let port = self.u16("endpoint")?;
        Ok(SocketAddr::new(ip, port))
    }

    fn label(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u8("label")? as usize;
        let bytes = self.take(len, "label")?;
        if !is_label(bytes) {
            return Err(DecodeError::Invalid("label"));
        }
        std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid("label"))
    }

    fn target(&mut self) -> Result<Target, DecodeError> {
        Ok(match self.u8("dht target")? {
            TARGET_ID => Target::Id(NodeId::from_bytes(self.array::<32>("dht target")?)),
            TARGET_NAME => Target::Name(self.label()?.to_owned()),
            TARGET_IPV4 => Target::Ipv4(Ipv4Addr::from(self.array::<4>("dht target")?)),
            TARGET_IPV6 => Target::Ipv6(Ipv6Addr::from(self.array::<16>("dht target")?)),
            other => {
                return Err(DecodeError::UnknownType {
                    what: "dht target",
                    value: other,
                });
            }
        })
    }

    fn record(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u16("record length")? as usize;
        if len > MAX_RECORD_LEN {
            return Err(DecodeError::Invalid("record length"));
        }
        self.take(len, "record")
    }

    fn entry(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u8("entry length")? as usize;
        if len > MAX_ENTRY_LEN {
            return Err(DecodeError::Invalid("entry length"));
        }
        self.take(len, "entry")
    }

    fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn sample_record() -> Vec<u8> {
        let mut out = Vec::new();
        RecordFields::emit_unsigned(
            &mut out,
            b"cert",
            1_800_000_000_123,
            1_800_003_600,
            &[v4("198.18.0.1:4800"), "[fd00::1]:4801".parse().unwrap()],
            &["ops".into(), "db".into()],
        );
        out.extend_from_slice(&[7u8; 64]);
        out
    }

    fn messages(record: &[u8]) -> Vec<DhtMessage<'_>> {
        let observed = v4("198.18.0.9:1234");
        vec![
            DhtMessage::Ping,
            DhtMessage::Pong { observed },
            DhtMessage::FindNode { key: Key([3; 32]) },
            DhtMessage::FindValue {
                target: Target::Id(NodeId::from_bytes([4; 32])),
            },
            DhtMessage::FindValue {
                target: Target::Name("db1".into()),
            },
            DhtMessage::FindValue {
                target: Target::Ipv4(Ipv4Addr::new(198, 19, 0, 1)),
            },
            DhtMessage::FindValue {
                target: Target::Ipv6("fd77:6566::1".parse().unwrap()),
            },
            DhtMessage::Nodes {
                observed: "[fd00::2]:9".parse().unwrap(),
                contacts: vec![
                    DhtContact {
                        id: NodeId::from_bytes([5; 32]),
                        endpoint: v4("198.18.0.5:4800"),
                    },
                    DhtContact {
                        id: NodeId::from_bytes([6; 32]),
                        endpoint: "[fd00::6]:4800".parse().unwrap(),
                    },
                ],
            },
            DhtMessage::Value { observed, record },
            DhtMessage::Store {
                key: Key([8; 32]),
                record,
            },
            DhtMessage::StoreAck {
                observed,
                stored: true,
            },
            DhtMessage::Announce {
                key: Key([9; 32]),
                entry: &record[..MAX_ENTRY_LEN.min(record.len())],
            },
            DhtMessage::FindMembers { key: Key([10; 32]) },
            DhtMessage::Members {
                observed,
                entries: vec![&record[..3], &record[..MAX_ENTRY_LEN.min(record.len())]],
            },
            DhtMessage::Members {
                observed,
                entries: Vec::new(),
            },
        ]
    }

    fn encode(message: &DhtMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        DhtDatagram::emit_unsigned(&mut out, b"certificate", 0x1122, 1_800_000_000, message);
        out.extend_from_slice(&[9u8; 64]);
        out
    }

    #[test]
    fn every_message_round_trips() {
        let record = sample_record();
        for message in messages(&record) {
            let bytes = encode(&message);
            let datagram = DhtDatagram::decode(&bytes).unwrap();
            assert_eq!(datagram.message, message);
            assert_eq!(datagram.certificate, b"certificate");
            assert_eq!(datagram.txid, 0x1122);
            assert_eq!(datagram.timestamp, 1_800_000_000);
            assert_eq!(datagram.signed, &bytes[..bytes.len() - 64]);
            assert_eq!(datagram.signature, &[9u8; 64]);
            // Exact length: one byte less or more is an error.
            assert!(DhtDatagram::decode(&bytes[..bytes.len() - 1]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(DhtDatagram::decode(&longer).is_err());
        }
    }

    #[test]
    fn record_round_trips() {
        let bytes = sample_record();
        let record = RecordFields::decode(&bytes).unwrap();
        assert_eq!(record.certificate, b"cert");
        assert_eq!(record.sequence, 1_800_000_000_123);
        assert_eq!(record.expires, 1_800_003_600);
        assert_eq!(record.endpoints.len(), 2);
        assert_eq!(record.groups, ["ops", "db"]);
        assert_eq!(record.signed, &bytes[..bytes.len() - 64]);
    }

    #[test]
    fn unknown_versions_kinds_and_bad_fields_are_errors() {
        let bytes = encode(&DhtMessage::Ping);
        let body = 4 + 2 + b"certificate".len();
        let mut wrong = bytes.clone();
        wrong[body] = 2;
        assert_eq!(
            DhtDatagram::decode(&wrong),
            Err(DecodeError::UnknownVersion(2))
        );
        let mut wrong = bytes.clone();
        wrong[body + 1] = 99;
        assert!(matches!(
            DhtDatagram::decode(&wrong),
            Err(DecodeError::UnknownType { .. })
        ));
        let mut wrong = bytes.clone();
        wrong[0] = 0x14;
        assert!(DhtDatagram::decode(&wrong).is_err());
        let name = encode(&DhtMessage::FindValue {
            target: Target::Name("Bad_Name".into()),
        });
        assert_eq!(
            DhtDatagram::decode(&name),
            Err(DecodeError::Invalid("label"))
        );
    }

    #[test]
    fn too_many_contacts_are_refused() {
        let mut out = Vec::new();
        DhtDatagram::emit_unsigned(
            &mut out,
            b"c",
            1,
            2,
            &DhtMessage::Nodes {
                observed: v4("1.2.3.4:5"),
                contacts: vec![],
            },
        );
        let count_at = out.len() - 1;
        out[count_at] = (MAX_CONTACTS + 1) as u8;
        out.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            DhtDatagram::decode(&out),
            Err(DecodeError::Invalid("contact count"))
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = DhtDatagram::decode(&bytes);
            let _ = RecordFields::decode(&bytes);
            let mut with_preamble = DHT_PREAMBLE.to_vec();
            with_preamble.extend_from_slice(&bytes);
            let _ = DhtDatagram::decode(&with_preamble);
        }

        #[test]
        fn mutated_datagrams_never_panic(
            which in 0usize..11,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let record = sample_record();
            let all = messages(&record);
            let mut bytes = encode(&all[which]);
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] ^= value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(datagram) = DhtDatagram::decode(&bytes) {
                // Whatever decodes re-encodes to the same bytes.
                let mut again = Vec::new();
                DhtDatagram::emit_unsigned(
                    &mut again,
                    datagram.certificate,
                    datagram.txid,
                    datagram.timestamp,
                    &datagram.message,
                );
                again.extend_from_slice(datagram.signature);
                prop_assert_eq!(again, bytes);
            }
        }

        #[test]
        fn mutated_records_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = sample_record();
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] ^= value;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = RecordFields::decode(&bytes);
        }
    }
}
