//! Every weft packet format: parse and emit, no state.
//!
//! The layout is specified in `docs/PROTOCOL.md` (wire version 2). All
//! integers are big-endian. Decoders are total: any byte string gives a value
//! or a [`DecodeError`], never a panic; `tests` feeds them random and mutated
//! bytes to keep it so.
//!
//! Outer packets (what a UDP datagram carries):
//!
//! | type | name | layout after the 4-byte preamble |
//! | --- | --- | --- |
//! | 1 | handshake init | sender index (4), Noise IX message 1, flags (1), initiator's signature (64), mac1 (16), mac2 (16) |
//! | 2 | handshake response | sender index (4), receiver index (4), Noise IX message 2 |
//! | 3 | cookie reply | receiver index (4), nonce (12), sealed cookie (32 + 16) |
//! | 4 | data | receiver index (4), counter (8), AEAD ciphertext of a frame, tag (16) |
//! | 5 | dht | a signed DHT message (see `dht` and PROTOCOL §14) |
//!
//! The preamble is `[version << 4 | type, 0, 0, 0]`.

mod dht;
mod frame;
mod handshake;
mod link_state;
pub mod membership;
mod record_head;

use std::fmt;

pub use dht::{
    DATAGRAM_CONTEXT, DHT_PREAMBLE, DhtContact, DhtDatagram, DhtMessage, ENTRY_CONTEXT,
    MAX_CONTACTS, MAX_ENTRY_LEN, MAX_LABEL_LEN, MAX_MEMBERS_ANSWER, MAX_RECORD_ENDPOINTS,
    MAX_RECORD_GROUPS, MAX_RECORD_LEN, RECORD_CONTEXT, RecordFields, RendezvousEntry,
    SIGNATURE_LEN, datagram_digest, entry_digest, is_label, record_digest,
};
pub use frame::{
    CandidateKind, CandidateList, Frame, FrameKind, HOP_LEN, MAX_CANDIDATES, MAX_CERTIFICATE_FRAME,
    MAX_MULTICAST_HOPS, MAX_RELAY_HOPS, MAX_RELAY_OVERHEAD, MAX_REVOCATION_CHUNKS,
    MULTICAST_HEADER_LEN, REVOCATION_CHUNK_LEN,
};
pub use handshake::{HandshakePayload, PAYLOAD_FIXED_LEN};
pub use link_state::{LINK_ENTRY_LEN, LinkEntry, LinkStateRecord, MAX_CONTROL_DATAGRAM, MAX_LINKS};
pub use membership::{
    MAX_MEMBERSHIP_GROUPS, MEMBERSHIP_CONTEXT, MembershipError, MembershipRecord,
    VerifiedMembership, membership_digest, verify as verify_membership,
};
pub use record_head::FINGERPRINT_LEN;

/// The wire version this code speaks. Version 2 signs and MACs handshake
/// inits and adds the cookie reply; a version-1 node's packets are dropped
/// as malformed (PROTOCOL §12).
pub const VERSION: u8 = 2;
/// Length of the data packet header (authenticated as associated data).
pub const DATA_HEADER_LEN: usize = 16;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Bytes a data packet adds around an IP packet: header, frame kind, tag.
pub const TUNNEL_OVERHEAD: usize = DATA_HEADER_LEN + 1 + TAG_LEN;
/// Length of each handshake MAC (mac1, mac2).
pub const MAC_LEN: usize = 16;
/// Length of an Ed25519 signature in a handshake init.
pub const INIT_SIGNATURE_LEN: usize = 64;
/// Bytes after the Noise message of an init: flags, signature, mac1, mac2.
pub const INIT_TRAILER_LEN: usize = 1 + INIT_SIGNATURE_LEN + 2 * MAC_LEN;
/// Init flag: the signature binds the responder's node id (else all zeros,
/// for a responder known only by its endpoint).
pub const INIT_FLAG_BOUND: u8 = 1;
/// Length of the nonce of a cookie reply.
pub const COOKIE_NONCE_LEN: usize = 12;
/// Length of a cookie (the key of mac2).
pub const COOKIE_LEN: usize = 32;
/// Length of a whole cookie reply datagram.
pub const COOKIE_REPLY_LEN: usize = 8 + COOKIE_NONCE_LEN + COOKIE_LEN + TAG_LEN;

const TYPE_HANDSHAKE_INIT: u8 = 1;
const TYPE_HANDSHAKE_RESPONSE: u8 = 2;
const TYPE_COOKIE_REPLY: u8 = 3;
const TYPE_DATA: u8 = 4;
/// Outer packet type of DHT datagrams (layout in `wire::dht`, PROTOCOL §14).
pub const TYPE_DHT: u8 = 5;

/// A session's receiver index: how a data packet names the session that
/// must open it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionIndex(pub u32);

impl fmt::Debug for SessionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionIndex({:08x})", self.0)
    }
}

/// Why bytes are not a weft packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Too short for what its type needs.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A wire version this code does not speak.
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    /// A packet or frame type this code does not know.
    #[error("unknown {what} type {value}")]
    UnknownType {
        /// Which kind of type field.
        what: &'static str,
        /// The value found.
        value: u8,
    },
    /// Reserved bits are set.
    #[error("reserved bits set")]
    Reserved,
    /// A relay frame lists more hops than a path may have.
    #[error("relay frame lists {0} hops")]
    TooManyHops(usize),
    /// Bytes follow a body of fixed size.
    #[error("trailing bytes after {0}")]
    TrailingBytes(&'static str),
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A decoded outer packet, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// First handshake message.
    HandshakeInit {
        /// The initiator's index for the new session.
        sender: SessionIndex,
        /// Noise message 1.
        noise: &'a [u8],
        /// Flags ([`INIT_FLAG_BOUND`]); other bits are reserved (zero).
        flags: u8,
        /// The initiator's Ed25519 signature over everything before it
        /// (PROTOCOL §3.2).
        signature: &'a [u8; INIT_SIGNATURE_LEN],
        /// MAC keyed by the network (PROTOCOL §3.3).
        mac1: &'a [u8; MAC_LEN],
        /// MAC keyed by a cookie from the responder, or zeros.
        mac2: &'a [u8; MAC_LEN],
    },
    /// Second handshake message.
    HandshakeResponse {
        /// The responder's index for the new session.
        sender: SessionIndex,
        /// The initiator's index, echoed.
        receiver: SessionIndex,
        /// Noise message 2.
        noise: &'a [u8],
    },
    /// A responder under load asks the initiator to prove its address.
    CookieReply {
        /// The initiator's index from the init that this answers.
        receiver: SessionIndex,
        /// The AEAD nonce.
        nonce: &'a [u8; COOKIE_NONCE_LEN],
        /// The cookie, sealed with the init's mac1 as associated data.
        sealed: &'a [u8; COOKIE_LEN + TAG_LEN],
    },
    /// An encrypted frame.
    Data {
        /// The session that must open it.
        receiver: SessionIndex,
        /// The nonce counter.
        counter: u64,
    },
    /// A signed DHT message; `crate::dht::Dht` decodes the whole datagram.
    Dht,
}

impl<'a> Packet<'a> {
    /// Decodes the outer packet of a datagram. For data packets the caller
    /// takes the header (`&bytes[..DATA_HEADER_LEN]`) and the ciphertext
    /// (`&bytes[DATA_HEADER_LEN..]`) from the datagram itself.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(preamble) = bytes.get(..4) else {
            return Err(DecodeError::Truncated("preamble"));
        };
        let version = preamble[0] >> 4;
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        if preamble[1..] != [0, 0, 0] {
            return Err(DecodeError::Reserved);
        }
        match preamble[0] & 0x0f {
            TYPE_HANDSHAKE_INIT => {
                let sender = read_u32(bytes, 4).ok_or(DecodeError::Truncated("handshake init"))?;
                let Some(trailer_at) = bytes.len().checked_sub(INIT_TRAILER_LEN) else {
                    return Err(DecodeError::Truncated("handshake init"));
                };
                let noise = bytes.get(8..trailer_at).unwrap_or_default();
                if noise.is_empty() {
                    return Err(DecodeError::Truncated("handshake init"));
                }
                let trailer = &bytes[trailer_at..];
                let flags = trailer[0];
                if flags & !INIT_FLAG_BOUND != 0 {
                    return Err(DecodeError::Reserved);
                }
                let (signature, macs) = trailer[1..].split_at(INIT_SIGNATURE_LEN);
                let (mac1, mac2) = macs.split_at(MAC_LEN);
                let (Ok(signature), Ok(mac1), Ok(mac2)) =
                    (signature.try_into(), mac1.try_into(), mac2.try_into())
                else {
                    return Err(DecodeError::Truncated("handshake init"));
                };
                Ok(Packet::HandshakeInit {
                    sender: SessionIndex(sender),
                    noise,
                    flags,
                    signature,
                    mac1,
                    mac2,
                })
            }
            TYPE_HANDSHAKE_RESPONSE => {
                let sender =
                    read_u32(bytes, 4).ok_or(DecodeError::Truncated("handshake response"))?;
                let receiver =
                    read_u32(bytes, 8).ok_or(DecodeError::Truncated("handshake response"))?;
                let noise = &bytes[12..];
                if noise.is_empty() {
                    return Err(DecodeError::Truncated("handshake response"));
                }
                Ok(Packet::HandshakeResponse {
                    sender: SessionIndex(sender),
                    receiver: SessionIndex(receiver),
                    noise,
                })
            }
            TYPE_COOKIE_REPLY => {
                if bytes.len() != COOKIE_REPLY_LEN {
                    return Err(DecodeError::Truncated("cookie reply"));
                }
                let receiver = read_u32(bytes, 4).ok_or(DecodeError::Truncated("cookie reply"))?;
                let (Ok(nonce), Ok(sealed)) = (
                    bytes[8..8 + COOKIE_NONCE_LEN].try_into(),
                    bytes[8 + COOKIE_NONCE_LEN..].try_into(),
                ) else {
                    return Err(DecodeError::Truncated("cookie reply"));
                };
                Ok(Packet::CookieReply {
                    receiver: SessionIndex(receiver),
                    nonce,
                    sealed,
                })
            }
            TYPE_DATA => {
                if bytes.len() < DATA_HEADER_LEN + TAG_LEN {
                    return Err(DecodeError::Truncated("data packet"));
                }
                let receiver = read_u32(bytes, 4).ok_or(DecodeError::Truncated("data packet"))?;
                let counter = read_u64(bytes, 8).ok_or(DecodeError::Truncated("data packet"))?;
                Ok(Packet::Data {
                    receiver: SessionIndex(receiver),
                    counter,
                })
            }
            TYPE_DHT => Ok(Packet::Dht),
            other => Err(DecodeError::UnknownType {
                what: "packet",
                value: other,
            }),
        }
    }
}

/// Appends a handshake init header; the caller appends the Noise message
/// and then the trailer (flags, signature, mac1, mac2: `session::cookie`
/// computes them).
pub fn emit_handshake_init(out: &mut Vec<u8>, sender: SessionIndex) {
    out.extend_from_slice(&[(VERSION << 4) | TYPE_HANDSHAKE_INIT, 0, 0, 0]);
    out.extend_from_slice(&sender.0.to_be_bytes());
}

/// Appends a cookie reply: the header, then `nonce` and `sealed`.
pub fn emit_cookie_reply(
    out: &mut Vec<u8>,
    receiver: SessionIndex,
    nonce: &[u8; COOKIE_NONCE_LEN],
    sealed: &[u8; COOKIE_LEN + TAG_LEN],
) {
    out.extend_from_slice(&[(VERSION << 4) | TYPE_COOKIE_REPLY, 0, 0, 0]);
    out.extend_from_slice(&receiver.0.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(sealed);
}

/// Appends a handshake response header; the caller appends the Noise message.
pub fn emit_handshake_response(out: &mut Vec<u8>, sender: SessionIndex, receiver: SessionIndex) {
    out.extend_from_slice(&[(VERSION << 4) | TYPE_HANDSHAKE_RESPONSE, 0, 0, 0]);
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&receiver.0.to_be_bytes());
}

/// Writes a data header into the first [`DATA_HEADER_LEN`] bytes of `out`.
pub fn write_data_header(out: &mut [u8; DATA_HEADER_LEN], receiver: SessionIndex, counter: u64) {
    out[..4].copy_from_slice(&[(VERSION << 4) | TYPE_DATA, 0, 0, 0]);
    out[4..8].copy_from_slice(&receiver.0.to_be_bytes());
    out[8..16].copy_from_slice(&counter.to_be_bytes());
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(slice.try_into().ok()?))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(slice.try_into().ok()?))
}

pub(crate) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let slice = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(slice.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn handshake_init_round_trips() {
        let mut out = Vec::new();
        emit_handshake_init(&mut out, SessionIndex(0xdead_beef));
        out.extend_from_slice(b"noise");
        out.push(INIT_FLAG_BOUND);
        out.extend_from_slice(&[7; INIT_SIGNATURE_LEN]);
        out.extend_from_slice(&[8; MAC_LEN]);
        out.extend_from_slice(&[9; MAC_LEN]);
        assert_eq!(
            Packet::decode(&out),
            Ok(Packet::HandshakeInit {
                sender: SessionIndex(0xdead_beef),
                noise: b"noise",
                flags: INIT_FLAG_BOUND,
                signature: &[7; INIT_SIGNATURE_LEN],
                mac1: &[8; MAC_LEN],
                mac2: &[9; MAC_LEN],
            })
        );
        // Without room for a Noise message, or with reserved flags set.
        assert!(Packet::decode(&out[..8 + INIT_TRAILER_LEN]).is_err());
        let at = out.len() - INIT_TRAILER_LEN;
        out[at] = 2;
        assert_eq!(Packet::decode(&out), Err(DecodeError::Reserved));
    }

    #[test]
    fn cookie_reply_round_trips_and_has_one_length() {
        let mut out = Vec::new();
        emit_cookie_reply(&mut out, SessionIndex(3), &[1; 12], &[2; 48]);
        assert_eq!(out.len(), COOKIE_REPLY_LEN);
        assert_eq!(
            Packet::decode(&out),
            Ok(Packet::CookieReply {
                receiver: SessionIndex(3),
                nonce: &[1; 12],
                sealed: &[2; 48],
            })
        );
        out.push(0);
        assert!(Packet::decode(&out).is_err());
        assert!(Packet::decode(&out[..COOKIE_REPLY_LEN - 2]).is_err());
    }

    #[test]
    fn handshake_response_round_trips() {
        let mut out = Vec::new();
        emit_handshake_response(&mut out, SessionIndex(1), SessionIndex(2));
        out.extend_from_slice(b"n");
        assert_eq!(
            Packet::decode(&out),
            Ok(Packet::HandshakeResponse {
                sender: SessionIndex(1),
                receiver: SessionIndex(2),
                noise: b"n"
            })
        );
    }

    #[test]
    fn data_header_round_trips() {
        let mut out = vec![0u8; DATA_HEADER_LEN + TAG_LEN + 1];
        let header: &mut [u8; DATA_HEADER_LEN] = (&mut out[..DATA_HEADER_LEN]).try_into().unwrap();
        write_data_header(header, SessionIndex(7), u64::MAX - 1);
        assert_eq!(
            Packet::decode(&out),
            Ok(Packet::Data {
                receiver: SessionIndex(7),
                counter: u64::MAX - 1
            })
        );
    }

    #[test]
    fn wrong_version_reserved_bits_and_short_packets_are_errors() {
        // A version-1 packet (before signed inits) is refused whole.
        assert_eq!(
            Packet::decode(&[0x14, 0, 0, 0]),
            Err(DecodeError::UnknownVersion(1))
        );
        assert_eq!(Packet::decode(&[0x24, 1, 0, 0]), Err(DecodeError::Reserved));
        assert_eq!(
            Packet::decode(&[0x24, 0, 0, 0, 1]),
            Err(DecodeError::Truncated("data packet"))
        );
        assert_eq!(
            Packet::decode(&[0x21, 0, 0, 0, 1, 2, 3, 4]),
            Err(DecodeError::Truncated("handshake init"))
        );
        assert_eq!(
            Packet::decode(&[0x2f, 0, 0, 0]),
            Err(DecodeError::UnknownType {
                what: "packet",
                value: 15
            })
        );
        assert_eq!(Packet::decode(&[]), Err(DecodeError::Truncated("preamble")));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Packet::decode(&bytes);
            let _ = Frame::decode(&bytes);
            let _ = HandshakePayload::decode(&bytes);
        }

        #[test]
        fn mutated_valid_packets_never_panic(
            sender in any::<u32>(),
            noise in proptest::collection::vec(any::<u8>(), 1..100),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut out = Vec::new();
            emit_handshake_response(&mut out, SessionIndex(sender), SessionIndex(!sender));
            out.extend_from_slice(&noise);
            for (at, value) in flips {
                let len = out.len();
                out[at % len] ^= value;
            }
            out.truncate(cut % (out.len() + 1));
            let _ = Packet::decode(&out);
        }
    }
}
