//! Link-state records: what a node says about its direct links.
//!
//! `[version (1) = 2][certificate fingerprint (32)][sequence (8)]
//! [lifetime seconds (2)][link count (2)][links][signature (64)]`, each link
//! `[neighbour node id prefix (16)][RTT µs (4)][loss (2)]` with loss in
//! 1/65535ths. The signature is the origin's Ed25519 signature over every
//! byte before it; the certificate the fingerprint names says whose key
//! that is. Parsing here checks only the layout: verification is the
//! receiver's, with the certificate it holds or fetches.

use super::record_head::{FINGERPRINT_LEN, HEAD_LEN, RecordHead};
use super::{DecodeError, HOP_LEN, read_u16, read_u32};

/// Bytes per link entry.
pub const LINK_ENTRY_LEN: usize = HOP_LEN + 4 + 2;
const SIGNATURE_LEN: usize = 64;
/// Bytes of a record besides its links: the head and the signature.
const FIXED_LEN: usize = HEAD_LEN + SIGNATURE_LEN;
/// The largest UDP payload of any control datagram: the IPv6 minimum MTU,
/// so that no control message needs a path MTU larger than every IPv6 path
/// has (a record rides alone in a data packet: header, kind, tag).
pub const MAX_CONTROL_DATAGRAM: usize = 1280;

/// How many links a record may list, so that the record, sealed in a data
/// packet behind its frame's hop budget byte, fits [`MAX_CONTROL_DATAGRAM`]:
/// 51.
pub const MAX_LINKS: usize =
    (MAX_CONTROL_DATAGRAM - super::TUNNEL_OVERHEAD - 1 - FIXED_LEN) / LINK_ENTRY_LEN;

/// One advertised link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEntry {
    /// The neighbour's node id prefix.
    pub neighbour: [u8; HOP_LEN],
    /// Smoothed RTT in microseconds.
    pub rtt_us: u32,
    /// Loss rate in 1/65535ths.
    pub loss: u16,
}

/// A parsed, not yet verified, link-state record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStateRecord<'a> {
    /// The fingerprint of the origin's certificate.
    pub certificate: &'a [u8; FINGERPRINT_LEN],
    /// Newer records have larger sequence numbers.
    pub sequence: u64,
    /// Seconds the record stays valid after it arrives.
    pub lifetime_secs: u16,
    links: &'a [u8],
    /// The bytes the signature covers.
    pub signed: &'a [u8],
    /// The origin's signature.
    pub signature: &'a [u8; 64],
}

impl<'a> LinkStateRecord<'a> {
    /// Parses a record. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let head = RecordHead::decode(bytes, "link-state record")?;
        let (certificate, sequence, lifetime_secs, count) = (
            head.certificate,
            head.sequence,
            head.lifetime_secs,
            head.count,
        );
        let links_at = head.body_at;
        let links = bytes
            .get(links_at..links_at + count * LINK_ENTRY_LEN)
            .ok_or(DecodeError::Truncated("link-state links"))?;
        let signed_len = links_at + links.len();
        let signature = bytes
            .get(signed_len..)
            .and_then(|s| <&[u8; SIGNATURE_LEN]>::try_from(s).ok())
            .ok_or(DecodeError::Truncated("link-state signature"))?;
        Ok(Self {
            certificate,
            sequence,
            lifetime_secs,
            links,
            signed: &bytes[..signed_len],
            signature,
        })
    }

    /// The advertised links.
    pub fn links(&self) -> impl Iterator<Item = LinkEntry> + 'a {
        self.links.chunks_exact(LINK_ENTRY_LEN).map(|chunk| {
            let mut neighbour = [0u8; HOP_LEN];
            neighbour.copy_from_slice(&chunk[..HOP_LEN]);
            LinkEntry {
                neighbour,
                rtt_us: read_u32(chunk, HOP_LEN).unwrap_or(u32::MAX),
                loss: read_u16(chunk, HOP_LEN + 4).unwrap_or(u16::MAX),
            }
        })
    }

    /// Appends the signed part of a record; the caller appends the
    /// 64-byte signature over `out[start..]`.
    pub fn emit_unsigned(
        out: &mut Vec<u8>,
        certificate: &[u8; FINGERPRINT_LEN],
        sequence: u64,
        lifetime_secs: u16,
        links: &[LinkEntry],
    ) {
        let count = links.len().min(u16::MAX as usize);
        RecordHead::emit(out, certificate, sequence, lifetime_secs, count as u16);
        for link in &links[..count] {
            out.extend_from_slice(&link.neighbour);
            out.extend_from_slice(&link.rtt_us.to_be_bytes());
            out.extend_from_slice(&link.loss.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_record_with_the_most_links_fits_a_control_datagram() {
        let links = vec![
            LinkEntry {
                neighbour: [1; HOP_LEN],
                rtt_us: 1,
                loss: 0
            };
            MAX_LINKS
        ];
        let mut out = Vec::new();
        LinkStateRecord::emit_unsigned(&mut out, &[7; FINGERPRINT_LEN], 1, 1, &links);
        out.extend_from_slice(&[0; SIGNATURE_LEN]);
        // The frame adds a hop budget byte before the record.
        let sealed = out.len() + 1 + crate::wire::TUNNEL_OVERHEAD;
        assert!(sealed <= MAX_CONTROL_DATAGRAM);
        // One more link would not fit.
        assert!(sealed + LINK_ENTRY_LEN > MAX_CONTROL_DATAGRAM);
        assert_eq!(MAX_LINKS, 51);
    }

    #[test]
    fn record_round_trips() {
        let links = [
            LinkEntry {
                neighbour: [1; HOP_LEN],
                rtt_us: 1500,
                loss: 0,
            },
            LinkEntry {
                neighbour: [2; HOP_LEN],
                rtt_us: 80_000,
                loss: 65535 / 3,
            },
        ];
        let mut out = Vec::new();
        LinkStateRecord::emit_unsigned(&mut out, &[3; FINGERPRINT_LEN], 42, 35, &links);
        let signed_len = out.len();
        out.extend_from_slice(&[9u8; 64]);
        let record = LinkStateRecord::decode(&out).unwrap();
        assert_eq!(record.certificate, &[3; FINGERPRINT_LEN]);
        assert_eq!(record.sequence, 42);
        assert_eq!(record.lifetime_secs, 35);
        assert_eq!(record.signed, &out[..signed_len]);
        assert_eq!(record.signature, &[9u8; 64]);
        assert_eq!(record.links().collect::<Vec<_>>(), links);
        assert!(LinkStateRecord::decode(&out[..out.len() - 1]).is_err());
        out.push(0);
        assert!(LinkStateRecord::decode(&out).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(record) = LinkStateRecord::decode(&bytes) {
                let _ = record.links().count();
            }
        }
    }
}
