//! Frames: what the encrypted body of a data packet carries.
//!
//! A frame is one kind byte and a body. Unknown kinds are an error, so an
//! older node drops (and counts) frames a newer one invents.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DecodeError, read_u16, read_u64};

/// Frame kind byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// An IPv4 or IPv6 packet for the receiver's TUN.
    Ip = 1,
    /// Empty: keeps NAT mappings open and confirms a new session.
    Keepalive = 2,
    /// Asks for a [`FrameKind::Pong`] with the same id (RTT measurement).
    Ping = 3,
    /// Answers a ping.
    Pong = 4,
    /// A packet for another node, with the hops it still has to take.
    Relay = 5,
    /// A link-state record as nodes before the scoped flood sent it (no
    /// hop budget); received as one with no hops left.
    FloodedLinkState = 6,
    /// A multicast IP packet travelling down a distribution tree.
    Multicast = 7,
    /// A signed membership record (see [`super::MembershipRecord`]).
    Membership = 8,
    /// The version of the revocation list the sender holds.
    RevocationOffer = 9,
    /// One piece of a revocation list.
    RevocationChunk = 10,
    /// The address and port the sender saw the receiver's packet come from.
    Observed = 11,
    /// The sender's endpoint candidates, and whether it asks to be called.
    Candidates = 12,
    /// "Send me the certificate with this fingerprint" (a record named it).
    CertificateRequest = 16,
    /// A certificate, answering a request.
    Certificate = 17,
    /// A signed link-state record (see [`super::LinkStateRecord`]) and how
    /// many more times it may be passed on.
    LinkState = 18,
}

/// Largest certificate a [`Frame::Certificate`] carries: with the tunnel
/// overhead it stays within a control datagram.
pub const MAX_CERTIFICATE_FRAME: usize = super::MAX_CONTROL_DATAGRAM - super::TUNNEL_OVERHEAD - 1;

/// Length of a hop in a relay frame: the first 16 bytes of a node id.
pub const HOP_LEN: usize = 16;
/// Most hops a relay frame may list.
pub const MAX_RELAY_HOPS: usize = 2;
/// Largest relay header: kind, hop count, and the hops.
pub const MAX_RELAY_OVERHEAD: usize = 2 + MAX_RELAY_HOPS * HOP_LEN;
/// Most overlay links a multicast frame may cross: a forwarder does not
/// pass on a frame whose `hops` already equals this.
pub const MAX_MULTICAST_HOPS: u8 = 16;
/// Bytes a multicast frame puts before its IP packet: kind, origin,
/// sequence number, hops.
pub const MULTICAST_HEADER_LEN: usize = 1 + HOP_LEN + 8 + 1;
/// Most pieces a revocation list is sent in.
pub const MAX_REVOCATION_CHUNKS: u16 = 64;
/// Bytes of a revocation list per piece (the last may be shorter): a
/// chunk frame stays well under the overlay MTU even through two relays.
pub const REVOCATION_CHUNK_LEN: usize = 1024;

/// Most endpoint candidates a candidates frame lists.
pub const MAX_CANDIDATES: usize = 8;
/// Flag bit of a candidates frame: the sender is probing the receiver's
/// candidates now and asks it to probe back ("call me").
const CANDIDATES_CALL: u8 = 1;

/// Where a candidate endpoint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum CandidateKind {
    /// An address of one of the sender's own interfaces (its LAN, or a
    /// public address the host holds itself), with its listening port.
    Local = 1,
    /// An address at which others see the sender (its NAT's mapping).
    Reflexive = 2,
}

/// Up to [`MAX_CANDIDATES`] candidates as they travel: a count, then each
/// candidate's kind and endpoint. Borrowed and checked whole when decoded
/// (frames do not allocate); [`CandidateList::iter`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateList<'a> {
    /// The count byte and the entries, known to be well formed.
    bytes: &'a [u8],
}

impl<'a> CandidateList<'a> {
    /// Writes the first [`MAX_CANDIDATES`] of `entries` to `out`, as a
    /// candidates frame carries them (read back with
    /// [`CandidateList::decode`]).
    pub fn encode(entries: &[(CandidateKind, SocketAddr)], out: &mut Vec<u8>) {
        let entries = &entries[..entries.len().min(MAX_CANDIDATES)];
        out.push(entries.len() as u8);
        for (kind, endpoint) in entries {
            out.push(*kind as u8);
            super::dht::emit_endpoint(out, endpoint);
        }
    }

    /// Checks a count and its entries, all of `bytes`. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let truncated = DecodeError::Truncated("candidates frame");
        let (&count, mut rest) = bytes.split_first().ok_or(truncated)?;
        if usize::from(count) > MAX_CANDIDATES {
            return Err(DecodeError::Invalid("candidate count"));
        }
        for _ in 0..count {
            let (_, _, after) = read_candidate(rest)?;
            rest = after;
        }
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes("candidates frame"));
        }
        Ok(Self { bytes })
    }

    /// The candidates, most preferred first.
    pub fn iter(&self) -> impl Iterator<Item = (CandidateKind, SocketAddr)> + 'a {
        let mut rest = self.bytes.get(1..).unwrap_or_default();
        std::iter::from_fn(move || {
            let (kind, endpoint, after) = read_candidate(rest).ok()?;
            rest = after;
            Some((kind, endpoint))
        })
    }
}

/// One candidate: kind (1), endpoint.
fn read_candidate(bytes: &[u8]) -> Result<(CandidateKind, SocketAddr, &[u8]), DecodeError> {
    let (&kind, after) = bytes
        .split_first()
        .ok_or(DecodeError::Truncated("candidates frame"))?;
    let kind = match kind {
        k if k == CandidateKind::Local as u8 => CandidateKind::Local,
        k if k == CandidateKind::Reflexive as u8 => CandidateKind::Reflexive,
        other => {
            return Err(DecodeError::UnknownType {
                what: "candidate kind",
                value: other,
            });
        }
    };
    let (endpoint, after) = read_endpoint(after, "candidates frame")?;
    Ok((kind, endpoint, after))
}

/// A decoded frame, borrowing its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An IP packet.
    Ip(&'a [u8]),
    /// A keepalive.
    Keepalive,
    /// A ping with its id.
    Ping {
        /// Echoed in the pong.
        id: u64,
    },
    /// A pong with the id of the ping it answers.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// A packet to forward: `hops` lists, as [`HOP_LEN`]-byte node id
    /// prefixes, the nodes still to go after the receiver, the last being
    /// the destination; empty means the receiver is the destination.
    /// `inner` is a whole weft packet (handshake or data) sealed end to end.
    Relay {
        /// The remaining hops, `HOP_LEN` bytes each (at most
        /// [`MAX_RELAY_HOPS`]).
        hops: &'a [u8],
        /// The end-to-end packet.
        inner: &'a [u8],
    },
    /// A link-state record, still to be verified.
    LinkState {
        /// How many more times the record may be passed on (the origin
        /// sets it from its scope; each node passing it on takes one off).
        hops_left: u8,
        /// The record.
        record: &'a [u8],
    },
    /// A multicast packet, sealed hop by hop between tree neighbours (each
    /// forwarder reads it).
    Multicast {
        /// The sending node's id prefix.
        origin: [u8; HOP_LEN],
        /// The origin's sequence number, for duplicate suppression.
        seq: u64,
        /// Overlay links crossed before this one (0 from the origin), at
        /// most [`MAX_MULTICAST_HOPS`].
        hops: u8,
        /// The original IP packet (its source and group unchanged).
        packet: &'a [u8],
    },
    /// A membership record, still to be verified.
    Membership(&'a [u8]),
    /// "I hold revocation list `version`" (0: none).
    RevocationOffer {
        /// The list's version.
        version: u64,
    },
    /// Piece `index` of `count` of revocation list `version`.
    RevocationChunk {
        /// The list's version.
        version: u64,
        /// This piece's place, below `count`.
        index: u16,
        /// Pieces in all, 1 to [`MAX_REVOCATION_CHUNKS`].
        count: u16,
        /// Bytes `index * REVOCATION_CHUNK_LEN..` of the list, at most
        /// [`REVOCATION_CHUNK_LEN`], at least one.
        data: &'a [u8],
    },
    /// "Your packet came from this address and port" (the receiver's
    /// reflexive endpoint as the sender sees it).
    Observed(SocketAddr),
    /// The sender's endpoint candidates, most preferred first.
    Candidates {
        /// The sender is probing the receiver's candidates now and asks it
        /// to probe the sender's at once.
        call: bool,
        /// At most [`MAX_CANDIDATES`] endpoints.
        list: CandidateList<'a>,
    },
    /// Asks for the certificate with this fingerprint.
    CertificateRequest {
        /// BLAKE3 of the encoded certificate.
        fingerprint: [u8; super::FINGERPRINT_LEN],
    },
    /// An encoded certificate (not yet verified), at most
    /// [`MAX_CERTIFICATE_FRAME`] bytes.
    Certificate(&'a [u8]),
}

impl<'a> Frame<'a> {
    /// Decodes a frame. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((&kind, body)) = bytes.split_first() else {
            return Err(DecodeError::Truncated("frame"));
        };
        match kind {
            k if k == FrameKind::Ip as u8 => {
                if body.is_empty() {
                    return Err(DecodeError::Truncated("ip frame"));
                }
                Ok(Frame::Ip(body))
            }
            k if k == FrameKind::Keepalive as u8 => {
                exact(body, 0, "keepalive frame")?;
                Ok(Frame::Keepalive)
            }
            k if k == FrameKind::Ping as u8 => {
                exact(body, 8, "ping frame")?;
                Ok(Frame::Ping {
                    id: read_u64(body, 0).ok_or(DecodeError::Truncated("ping frame"))?,
                })
            }
            k if k == FrameKind::Pong as u8 => {
                exact(body, 8, "pong frame")?;
                Ok(Frame::Pong {
                    id: read_u64(body, 0).ok_or(DecodeError::Truncated("pong frame"))?,
                })
            }
            k if k == FrameKind::Relay as u8 => {
                let Some((&count, rest)) = body.split_first() else {
                    return Err(DecodeError::Truncated("relay frame"));
                };
                let count = count as usize;
                if count > MAX_RELAY_HOPS {
                    return Err(DecodeError::TooManyHops(count));
                }
                let hops = rest
                    .get(..count * HOP_LEN)
                    .ok_or(DecodeError::Truncated("relay hops"))?;
                let inner = &rest[count * HOP_LEN..];
                if inner.len() < 4 {
                    return Err(DecodeError::Truncated("relayed packet"));
                }
                Ok(Frame::Relay { hops, inner })
            }
            k if k == FrameKind::FloodedLinkState as u8 => {
                if body.is_empty() {
                    return Err(DecodeError::Truncated("link-state frame"));
                }
                Ok(Frame::LinkState {
                    hops_left: 0,
                    record: body,
                })
            }
            k if k == FrameKind::LinkState as u8 => match body.split_first() {
                Some((&hops_left, record)) if !record.is_empty() => {
                    Ok(Frame::LinkState { hops_left, record })
                }
                _ => Err(DecodeError::Truncated("link-state frame")),
            },
            k if k == FrameKind::Multicast as u8 => {
                let origin = body
                    .get(..HOP_LEN)
                    .and_then(|o| <[u8; HOP_LEN]>::try_from(o).ok())
                    .ok_or(DecodeError::Truncated("multicast frame"))?;
                let seq =
                    read_u64(body, HOP_LEN).ok_or(DecodeError::Truncated("multicast frame"))?;
                let hops = *body
                    .get(HOP_LEN + 8)
                    .ok_or(DecodeError::Truncated("multicast frame"))?;
                if hops > MAX_MULTICAST_HOPS {
                    return Err(DecodeError::Invalid("multicast hops"));
                }
                let packet = &body[HOP_LEN + 9..];
                if packet.is_empty() {
                    return Err(DecodeError::Truncated("multicast packet"));
                }
                Ok(Frame::Multicast {
                    origin,
                    seq,
                    hops,
                    packet,
                })
            }
            k if k == FrameKind::Membership as u8 => {
                if body.is_empty() {
                    return Err(DecodeError::Truncated("membership frame"));
                }
                Ok(Frame::Membership(body))
            }
            k if k == FrameKind::RevocationOffer as u8 => {
                exact(body, 8, "revocation offer")?;
                Ok(Frame::RevocationOffer {
                    version: read_u64(body, 0).ok_or(DecodeError::Truncated("revocation offer"))?,
                })
            }
            k if k == FrameKind::RevocationChunk as u8 => {
                let truncated = DecodeError::Truncated("revocation chunk");
                let version = read_u64(body, 0).ok_or(truncated)?;
                let index = read_u16(body, 8).ok_or(truncated)?;
                let count = read_u16(body, 10).ok_or(truncated)?;
                let data = &body[12.min(body.len())..];
                if data.is_empty() {
                    return Err(truncated);
                }
                if count == 0
                    || count > MAX_REVOCATION_CHUNKS
                    || index >= count
                    || data.len() > REVOCATION_CHUNK_LEN
                {
                    return Err(DecodeError::Invalid("revocation chunk"));
                }
                Ok(Frame::RevocationChunk {
                    version,
                    index,
                    count,
                    data,
                })
            }
            k if k == FrameKind::Observed as u8 => {
                let (endpoint, rest) = read_endpoint(body, "observed frame")?;
                if !rest.is_empty() {
                    return Err(DecodeError::TrailingBytes("observed frame"));
                }
                Ok(Frame::Observed(endpoint))
            }
            k if k == FrameKind::Candidates as u8 => {
                let (&flags, rest) = body
                    .split_first()
                    .ok_or(DecodeError::Truncated("candidates frame"))?;
                if flags & !CANDIDATES_CALL != 0 {
                    return Err(DecodeError::Reserved);
                }
                Ok(Frame::Candidates {
                    call: flags & CANDIDATES_CALL != 0,
                    list: CandidateList::decode(rest)?,
                })
            }
            k if k == FrameKind::CertificateRequest as u8 => {
                exact(body, super::FINGERPRINT_LEN, "certificate request")?;
                let fingerprint = <[u8; super::FINGERPRINT_LEN]>::try_from(body)
                    .map_err(|_| DecodeError::Truncated("certificate request"))?;
                Ok(Frame::CertificateRequest { fingerprint })
            }
            k if k == FrameKind::Certificate as u8 => {
                if body.is_empty() {
                    return Err(DecodeError::Truncated("certificate frame"));
                }
                if body.len() > MAX_CERTIFICATE_FRAME {
                    return Err(DecodeError::Invalid("certificate frame length"));
                }
                Ok(Frame::Certificate(body))
            }
            other => Err(DecodeError::UnknownType {
                what: "frame",
                value: other,
            }),
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Ip(packet) => {
                out.push(FrameKind::Ip as u8);
                out.extend_from_slice(packet);
            }
            Frame::Keepalive => out.push(FrameKind::Keepalive as u8),
            Frame::Ping { id } => {
                out.push(FrameKind::Ping as u8);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::Pong { id } => {
                out.push(FrameKind::Pong as u8);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::Relay { hops, inner } => {
                out.push(FrameKind::Relay as u8);
                out.push((hops.len() / HOP_LEN) as u8);
                out.extend_from_slice(hops);
                out.extend_from_slice(inner);
            }
            Frame::LinkState { hops_left, record } => {
                out.push(FrameKind::LinkState as u8);
                out.push(*hops_left);
                out.extend_from_slice(record);
            }
            Frame::Multicast {
                origin,
                seq,
                hops,
                packet,
            } => {
                out.push(FrameKind::Multicast as u8);
                out.extend_from_slice(origin);
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(*hops);
                out.extend_from_slice(packet);
            }
            Frame::Membership(record) => {
                out.push(FrameKind::Membership as u8);
                out.extend_from_slice(record);
            }
            Frame::RevocationOffer { version } => {
                out.push(FrameKind::RevocationOffer as u8);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Frame::RevocationChunk {
                version,
                index,
                count,
                data,
            } => {
                out.push(FrameKind::RevocationChunk as u8);
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::Observed(endpoint) => {
                out.push(FrameKind::Observed as u8);
                super::dht::emit_endpoint(out, endpoint);
            }
            Frame::Candidates { call, list } => {
                out.push(FrameKind::Candidates as u8);
                out.push(if *call { CANDIDATES_CALL } else { 0 });
                out.extend_from_slice(list.bytes);
            }
            Frame::CertificateRequest { fingerprint } => {
                out.push(FrameKind::CertificateRequest as u8);
                out.extend_from_slice(fingerprint);
            }
            Frame::Certificate(bytes) => {
                out.push(FrameKind::Certificate as u8);
                out.extend_from_slice(bytes);
            }
        }
    }
}

/// An endpoint: family (1) = 4 or 6, address (4 or 16), port (u16), as in
/// DHT datagrams.
fn read_endpoint<'b>(
    bytes: &'b [u8],
    what: &'static str,
) -> Result<(SocketAddr, &'b [u8]), DecodeError> {
    let (&family, rest) = bytes.split_first().ok_or(DecodeError::Truncated(what))?;
    let len = match family {
        4 => 4,
        6 => 16,
        other => {
            return Err(DecodeError::UnknownType {
                what: "address family",
                value: other,
            });
        }
    };
    if rest.len() < len + 2 {
        return Err(DecodeError::Truncated(what));
    }
    let ip = if len == 4 {
        let mut octets = [0u8; 4];
        octets.copy_from_slice(&rest[..4]);
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&rest[..16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let port = read_u16(rest, len).ok_or(DecodeError::Truncated(what))?;
    Ok((SocketAddr::new(ip, port), &rest[len + 2..]))
}

/// Fixed-size bodies must be exactly their size: one frame, one encoding.
fn exact(body: &[u8], len: usize, what: &'static str) -> Result<(), DecodeError> {
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated(what)),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes(what)),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        let hops = [7u8; 2 * HOP_LEN];
        for frame in [
            Frame::Relay {
                hops: &hops,
                inner: b"\x14\0\0\0rest",
            },
            Frame::Relay {
                hops: &[],
                inner: b"abcd",
            },
            Frame::LinkState {
                hops_left: 1,
                record: b"record",
            },
            Frame::LinkState {
                hops_left: u8::MAX,
                record: b"r",
            },
            Frame::CertificateRequest {
                fingerprint: [9; super::super::FINGERPRINT_LEN],
            },
            Frame::Certificate(b"certificate bytes"),
            Frame::Multicast {
                origin: [3; HOP_LEN],
                seq: 0x0102_0304_0506_0708,
                hops: MAX_MULTICAST_HOPS,
                packet: b"\x45\0\0\x14 an ip packet",
            },
            Frame::Multicast {
                origin: [0; HOP_LEN],
                seq: 0,
                hops: 0,
                packet: b"x",
            },
            Frame::Membership(b"record"),
            Frame::RevocationOffer { version: 7 },
            Frame::RevocationChunk {
                version: u64::MAX,
                index: MAX_REVOCATION_CHUNKS - 1,
                count: MAX_REVOCATION_CHUNKS,
                data: &[9; REVOCATION_CHUNK_LEN],
            },
        ] {
            let mut out = Vec::new();
            frame.emit(&mut out);
            assert_eq!(Frame::decode(&out), Ok(frame));
        }
        for frame in [
            Frame::Ip(b"\x45abc"),
            Frame::Keepalive,
            Frame::Ping { id: 9 },
            Frame::Pong { id: u64::MAX },
            Frame::Observed(SocketAddr::from(([198, 18, 0, 1], 4800))),
            Frame::Observed(SocketAddr::from((Ipv6Addr::LOCALHOST, 1))),
        ] {
            let mut out = Vec::new();
            frame.emit(&mut out);
            assert_eq!(Frame::decode(&out), Ok(frame));
        }
    }

    #[test]
    fn link_state_frames_of_both_versions_decode() {
        // A node of the previous version sends the bare record as kind 6:
        // it is taken as one that may not be passed on.
        assert_eq!(
            Frame::decode(b"\x06record"),
            Ok(Frame::LinkState {
                hops_left: 0,
                record: b"record"
            })
        );
        for bytes in [&b"\x06"[..], b"\x12", b"\x12\x01"] {
            assert_eq!(
                Frame::decode(bytes),
                Err(DecodeError::Truncated("link-state frame"))
            );
        }
    }

    #[test]
    fn revocation_chunks_out_of_bounds_are_errors() {
        let chunk = |index: u16, count: u16, len: usize| {
            let mut out = vec![FrameKind::RevocationChunk as u8];
            out.extend_from_slice(&1u64.to_be_bytes());
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
            out.extend(std::iter::repeat_n(0u8, len));
            out
        };
        let invalid = Err(DecodeError::Invalid("revocation chunk"));
        assert_eq!(Frame::decode(&chunk(1, 1, 5)), invalid);
        assert_eq!(Frame::decode(&chunk(0, 0, 5)), invalid);
        assert_eq!(
            Frame::decode(&chunk(0, MAX_REVOCATION_CHUNKS + 1, 5)),
            invalid
        );
        assert_eq!(
            Frame::decode(&chunk(0, 1, REVOCATION_CHUNK_LEN + 1)),
            invalid
        );
        assert_eq!(
            Frame::decode(&chunk(0, 1, 0)),
            Err(DecodeError::Truncated("revocation chunk"))
        );
        assert_eq!(
            Frame::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Err(DecodeError::TrailingBytes("revocation offer"))
        );
    }

    #[test]
    fn candidate_lists_round_trip_and_are_capped() {
        let local = (
            CandidateKind::Local,
            SocketAddr::from(([198, 18, 1, 2], 4800)),
        );
        let v6 = (
            CandidateKind::Reflexive,
            SocketAddr::from((Ipv6Addr::LOCALHOST, 9)),
        );
        for (entries, expected) in [
            (vec![], vec![]),
            (vec![local, v6], vec![local, v6]),
            (vec![local; 9], vec![local; MAX_CANDIDATES]),
        ] {
            let mut bytes = Vec::new();
            CandidateList::encode(&entries, &mut bytes);
            let list = CandidateList::decode(&bytes).unwrap();
            assert_eq!(list.iter().collect::<Vec<_>>(), expected);
            for call in [false, true] {
                let frame = Frame::Candidates { call, list };
                let mut out = Vec::new();
                frame.emit(&mut out);
                assert_eq!(Frame::decode(&out), Ok(frame));
            }
        }
    }

    #[test]
    fn bad_observed_and_candidates_frames_are_errors() {
        assert_eq!(
            Frame::decode(&[11, 4, 1, 2, 3]),
            Err(DecodeError::Truncated("observed frame"))
        );
        assert_eq!(
            Frame::decode(&[11, 4, 1, 2, 3, 4, 0, 1, 0]),
            Err(DecodeError::TrailingBytes("observed frame"))
        );
        assert_eq!(
            Frame::decode(&[11, 5, 1, 2, 3, 4, 0, 1]),
            Err(DecodeError::UnknownType {
                what: "address family",
                value: 5
            })
        );
        assert_eq!(Frame::decode(&[12, 2, 0]), Err(DecodeError::Reserved));
        assert_eq!(
            Frame::decode(&[12, 0, 9]),
            Err(DecodeError::Invalid("candidate count"))
        );
        assert_eq!(
            Frame::decode(&[12, 0, 1]),
            Err(DecodeError::Truncated("candidates frame"))
        );
        assert_eq!(
            Frame::decode(&[12, 0, 0, 4]),
            Err(DecodeError::TrailingBytes("candidates frame"))
        );
        assert_eq!(
            Frame::decode(&[12]),
            Err(DecodeError::Truncated("candidates frame"))
        );
        assert_eq!(
            Frame::decode(&[12, 0, 1, 3, 4, 1, 2, 3, 4, 0, 1]),
            Err(DecodeError::UnknownType {
                what: "candidate kind",
                value: 3
            })
        );
    }

    #[test]
    fn unknown_and_short_frames_are_errors() {
        assert_eq!(Frame::decode(&[]), Err(DecodeError::Truncated("frame")));
        assert_eq!(Frame::decode(&[1]), Err(DecodeError::Truncated("ip frame")));
        assert_eq!(
            Frame::decode(&[3, 0, 0]),
            Err(DecodeError::Truncated("ping frame"))
        );
        assert_eq!(
            Frame::decode(&[8]),
            Err(DecodeError::Truncated("membership frame"))
        );
        let mut multicast = vec![7u8];
        multicast.extend_from_slice(&[0; HOP_LEN + 8]);
        multicast.push(0);
        assert_eq!(
            Frame::decode(&multicast),
            Err(DecodeError::Truncated("multicast packet"))
        );
        assert_eq!(
            Frame::decode(&multicast[..HOP_LEN + 9]),
            Err(DecodeError::Truncated("multicast frame"))
        );
        multicast.push(0x45);
        assert!(Frame::decode(&multicast).is_ok());
        multicast[1 + HOP_LEN + 8] = MAX_MULTICAST_HOPS + 1;
        assert_eq!(
            Frame::decode(&multicast),
            Err(DecodeError::Invalid("multicast hops"))
        );
        assert_eq!(
            Frame::decode(&[99]),
            Err(DecodeError::UnknownType {
                what: "frame",
                value: 99
            })
        );
    }
}
