//! Membership records: the multicast groups a node has joined, signed by it.
//!
//! ```text
//! [version (1) = 2][certificate fingerprint (32)][sequence (8)]
//! [lifetime seconds (2)][group count (2)][groups][signature (64)]
//! ```
//!
//! Each group is `[family (1)][address]`: family 4 and a 4-byte IPv4
//! address, or family 6 and a 16-byte IPv6 address. At most
//! [`MAX_MEMBERSHIP_GROUPS`] groups. The sequence number is the origin's
//! unix time in nanoseconds when it made the record: the largest wins. The
//! signature is the origin's Ed25519 signature (by the key in the
//! certificate the fingerprint names) over the 32-byte BLAKE3 `derive_key` hash, context
//! [`MEMBERSHIP_CONTEXT`], of every byte before it, so that no link-state
//! record (signed over its raw bytes, with the same first fields) can be
//! replayed as a membership record, nor the reverse.
//!
//! [`MembershipRecord::decode`] checks the layout only and is total;
//! [`verify`] also checks, given the certificate the fingerprint names, its
//! validity and the signature (as `route::lsdb` does for link state).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::DecodeError;
use super::record_head::{FINGERPRINT_LEN, RecordHead};
use crate::identity::{CaCertificate, CertError, Certificate, NodeId, SecretKey, verify_signature};
use crate::mcast::is_carried;

/// BLAKE3 `derive_key` context of the hash a membership signature signs.
pub const MEMBERSHIP_CONTEXT: &str = "weft 2026-11 membership record v1";
/// Most groups a membership record may list.
pub const MAX_MEMBERSHIP_GROUPS: usize = 64;

const SIGNATURE_LEN: usize = 64;
const FAMILY_IPV4: u8 = 4;
const FAMILY_IPV6: u8 = 6;

/// A parsed, not yet verified, membership record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipRecord<'a> {
    /// The fingerprint of the origin's certificate.
    pub certificate: &'a [u8; FINGERPRINT_LEN],
    /// Newer records have larger sequence numbers.
    pub sequence: u64,
    /// Seconds the record stays valid after it arrives.
    pub lifetime_secs: u16,
    groups: &'a [u8],
    /// The bytes the signature covers (through [`membership_digest`]).
    pub signed: &'a [u8],
    /// The origin's signature.
    pub signature: &'a [u8; 64],
}

impl<'a> MembershipRecord<'a> {
    /// Parses a record. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let head = RecordHead::decode(bytes, "membership record")?;
        let (certificate, sequence, lifetime_secs, count) = (
            head.certificate,
            head.sequence,
            head.lifetime_secs,
            head.count,
        );
        if count > MAX_MEMBERSHIP_GROUPS {
            return Err(DecodeError::Invalid("membership group count"));
        }
        let groups_at = head.body_at;
        let mut end = groups_at;
        for _ in 0..count {
            let family = *bytes
                .get(end)
                .ok_or(DecodeError::Truncated("membership groups"))?;
            let len = match family {
                FAMILY_IPV4 => 4,
                FAMILY_IPV6 => 16,
                _ => return Err(DecodeError::Invalid("membership group family")),
            };
            end += 1 + len;
            if end > bytes.len() {
                return Err(DecodeError::Truncated("membership groups"));
            }
        }
        let signature = bytes
            .get(end..)
            .and_then(|s| <&[u8; SIGNATURE_LEN]>::try_from(s).ok())
            .ok_or(DecodeError::Truncated("membership signature"))?;
        Ok(Self {
            certificate,
            sequence,
            lifetime_secs,
            groups: &bytes[groups_at..end],
            signed: &bytes[..end],
            signature,
        })
    }

    /// The listed groups, in record order.
    pub fn groups(&self) -> impl Iterator<Item = IpAddr> + 'a {
        let mut rest = self.groups;
        std::iter::from_fn(move || {
            let (&family, tail) = rest.split_first()?;
            let group = match family {
                FAMILY_IPV4 => {
                    let octets: [u8; 4] = tail.get(..4)?.try_into().ok()?;
                    rest = &tail[4..];
                    IpAddr::V4(Ipv4Addr::from(octets))
                }
                _ => {
                    let octets: [u8; 16] = tail.get(..16)?.try_into().ok()?;
                    rest = &tail[16..];
                    IpAddr::V6(Ipv6Addr::from(octets))
                }
            };
            Some(group)
        })
    }

    /// Appends the signed part of a record (the first
    /// [`MAX_MEMBERSHIP_GROUPS`] groups); the caller appends the 64-byte
    /// signature over [`membership_digest`] of `out[start..]`, or uses
    /// [`MembershipRecord::emit_signed`].
    pub fn emit_unsigned(
        out: &mut Vec<u8>,
        certificate: &[u8; FINGERPRINT_LEN],
        sequence: u64,
        lifetime_secs: u16,
        groups: &[IpAddr],
    ) {
        let count = groups.len().min(MAX_MEMBERSHIP_GROUPS);
        RecordHead::emit(out, certificate, sequence, lifetime_secs, count as u16);
        for group in &groups[..count] {
            match group {
                IpAddr::V4(v4) => {
                    out.push(FAMILY_IPV4);
                    out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    out.push(FAMILY_IPV6);
                    out.extend_from_slice(&v6.octets());
                }
            }
        }
    }

    /// Appends a whole record signed with `key` (whose certificate has the
    /// fingerprint `certificate`).
    pub fn emit_signed(
        out: &mut Vec<u8>,
        key: &SecretKey,
        certificate: &[u8; FINGERPRINT_LEN],
        sequence: u64,
        lifetime_secs: u16,
        groups: &[IpAddr],
    ) {
        let start = out.len();
        Self::emit_unsigned(out, certificate, sequence, lifetime_secs, groups);
        let signature = key.sign(&membership_digest(&out[start..]));
        out.extend_from_slice(&signature);
    }
}

/// The hash a membership record's signature signs.
pub fn membership_digest(signed: &[u8]) -> [u8; 32] {
    blake3::derive_key(MEMBERSHIP_CONTEXT, signed)
}

/// Why a membership record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The layout is wrong.
    #[error("malformed membership record: {0}")]
    Malformed(DecodeError),
    /// The record names another certificate than the one given.
    #[error("membership record names another certificate")]
    OtherCertificate,
    /// The certificate is not the CA's, or is not valid now.
    #[error("membership record certificate: {0}")]
    Certificate(CertError),
    /// The certificate's key did not sign the record.
    #[error("membership record signature does not verify")]
    BadSignature,
}

/// A membership record whose certificate and signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMembership {
    /// The node that joined.
    pub origin: NodeId,
    /// Its certificate (its groups decide what it may join).
    pub certificate: Certificate,
    /// The record's sequence number: the largest wins.
    pub sequence: u64,
    /// How long the record stays valid after it arrived.
    pub lifetime: Duration,
    /// The carried groups listed, sorted, without duplicates (groups of
    /// local scope are left out: they never travel).
    pub groups: Vec<IpAddr>,
}

/// Checks a record's layout, that it names `certificate` (one whose CA
/// signature was verified when it was stored), that the certificate is of
/// `ca` and valid at `unix_now`, and the signature.
pub fn verify(
    bytes: &[u8],
    certificate: &Certificate,
    ca: &CaCertificate,
    unix_now: u64,
) -> Result<VerifiedMembership, MembershipError> {
    let record = MembershipRecord::decode(bytes).map_err(MembershipError::Malformed)?;
    if *record.certificate != certificate.fingerprint() {
        return Err(MembershipError::OtherCertificate);
    }
    certificate
        .verify_validity(ca, unix_now)
        .map_err(MembershipError::Certificate)?;
    if !verify_signature(
        &certificate.public_key().ed25519,
        &membership_digest(record.signed),
        record.signature,
    ) {
        return Err(MembershipError::BadSignature);
    }
    let mut groups: Vec<IpAddr> = record.groups().filter(|g| is_carried(*g)).collect();
    groups.sort();
    groups.dedup();
    Ok(VerifiedMembership {
        origin: certificate.node_id(),
        lifetime: Duration::from_secs(u64::from(record.lifetime_secs)),
        sequence: record.sequence,
        groups,
        certificate: certificate.clone(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate};
    use crate::wire::LinkStateRecord;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn certified(ca: &CaSecret, key: &SecretKey) -> Certificate {
        ca.sign(&CertificateTemplate {
            name: "a".into(),
            public_key: key.public(),
            ipv4: None,
            groups: vec!["media".into()],
            not_before: 0,
            not_after: 1_000,
        })
        .unwrap()
    }

    #[test]
    fn record_round_trips() {
        let groups = [ip("239.1.2.3"), ip("ff3e::8000:1"), ip("224.0.0.251")];
        let mut out = vec![0xaa];
        MembershipRecord::emit_unsigned(&mut out, &[3; FINGERPRINT_LEN], 42, 35, &groups);
        let signed_len = out.len();
        out.extend_from_slice(&[9u8; 64]);
        let record = MembershipRecord::decode(&out[1..]).unwrap();
        assert_eq!(record.certificate, &[3; FINGERPRINT_LEN]);
        assert_eq!(record.sequence, 42);
        assert_eq!(record.lifetime_secs, 35);
        assert_eq!(record.signed, &out[1..signed_len]);
        assert_eq!(record.signature, &[9u8; 64]);
        assert_eq!(record.groups().collect::<Vec<_>>(), groups);
        // Layout: version, fingerprint, sequence, lifetime, count.
        assert_eq!(&out[1..4], &[2, 3, 3]);
        assert_eq!(&out[42..48], &[0, 35, 0, 3, 4, 239]);
        assert!(MembershipRecord::decode(&out[1..out.len() - 1]).is_err());
        out.push(0);
        assert!(MembershipRecord::decode(&out[1..]).is_err());
    }

    #[test]
    fn bad_families_and_counts_are_errors() {
        let mut out = Vec::new();
        MembershipRecord::emit_unsigned(&mut out, &[1; FINGERPRINT_LEN], 1, 1, &[ip("239.1.2.3")]);
        out.extend_from_slice(&[0u8; 64]);
        let family_at = 1 + FINGERPRINT_LEN + 8 + 2 + 2;
        out[family_at] = 5;
        assert_eq!(
            MembershipRecord::decode(&out),
            Err(DecodeError::Invalid("membership group family"))
        );
        out[family_at] = 4;
        out[family_at - 1] = MAX_MEMBERSHIP_GROUPS as u8 + 1;
        assert_eq!(
            MembershipRecord::decode(&out),
            Err(DecodeError::Invalid("membership group count"))
        );
        let many = vec![ip("239.1.2.3"); MAX_MEMBERSHIP_GROUPS + 5];
        let mut out = Vec::new();
        MembershipRecord::emit_unsigned(&mut out, &[1; FINGERPRINT_LEN], 1, 1, &many);
        out.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            MembershipRecord::decode(&out).unwrap().groups().count(),
            MAX_MEMBERSHIP_GROUPS
        );
    }

    #[test]
    fn signed_records_verify_with_carried_groups_sorted() {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let key = SecretKey::from_random([2; 64]);
        let cert = certified(&ca, &key);
        let groups = [
            ip("ff3e::1"),
            ip("239.1.2.3"),
            ip("224.0.0.251"),
            ip("239.1.2.3"),
        ];
        let mut out = Vec::new();
        MembershipRecord::emit_signed(&mut out, &key, &cert.fingerprint(), 7, 35, &groups);
        let verified = verify(&out, &cert, ca.certificate(), 10).unwrap();
        assert_eq!(verified.origin, key.node_id());
        assert_eq!(verified.certificate, cert);
        assert_eq!(verified.sequence, 7);
        assert_eq!(verified.lifetime, Duration::from_secs(35));
        assert_eq!(verified.groups, vec![ip("239.1.2.3"), ip("ff3e::1")]);
    }

    #[test]
    fn forged_foreign_expired_misnamed_and_link_state_records_are_refused() {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let key = SecretKey::from_random([2; 64]);
        let cert = certified(&ca, &key);
        let fingerprint = cert.fingerprint();
        let mut out = Vec::new();
        MembershipRecord::emit_signed(&mut out, &key, &fingerprint, 7, 35, &[ip("239.1.2.3")]);
        let mut forged = out.clone();
        let group_at = forged.len() - 64 - 1;
        forged[group_at] ^= 1; // the group's last byte, under the signature
        assert_eq!(
            verify(&forged, &cert, ca.certificate(), 10),
            Err(MembershipError::BadSignature)
        );
        assert!(matches!(
            verify(&out, &cert, ca.certificate(), 2_000),
            Err(MembershipError::Certificate(_))
        ));
        // Another certificate than the one the record names.
        let other_key = SecretKey::from_random([3; 64]);
        let other_cert = certified(&ca, &other_key);
        assert_eq!(
            verify(&out, &other_cert, ca.certificate(), 10),
            Err(MembershipError::OtherCertificate)
        );
        let other = CaSecret::new([9; 32], "evil", 0, 1_000).unwrap();
        let foreign = certified(&other, &key);
        let mut out = Vec::new();
        MembershipRecord::emit_signed(&mut out, &key, &foreign.fingerprint(), 7, 35, &[]);
        assert!(matches!(
            verify(&out, &foreign, ca.certificate(), 10),
            Err(MembershipError::Certificate(CertError::WrongCa { .. }))
        ));
        assert!(matches!(
            verify(b"\x02", &cert, ca.certificate(), 10),
            Err(MembershipError::Malformed(_))
        ));
        // A link-state record without links has a membership record's
        // layout; its signature (over the raw bytes) does not pass.
        let mut lsa = Vec::new();
        LinkStateRecord::emit_unsigned(&mut lsa, &fingerprint, u64::MAX, 35, &[]);
        let signature = key.sign(&lsa);
        lsa.extend_from_slice(&signature);
        assert!(MembershipRecord::decode(&lsa).is_ok());
        assert_eq!(
            verify(&lsa, &cert, ca.certificate(), 10),
            Err(MembershipError::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(record) = MembershipRecord::decode(&bytes) {
                let _ = record.groups().count();
            }
        }

        #[test]
        fn mutated_records_never_panic(
            v4 in proptest::collection::vec(any::<[u8; 4]>(), 0..6),
            v6 in proptest::collection::vec(any::<[u8; 16]>(), 0..6),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let groups: Vec<IpAddr> = v4
                .into_iter()
                .map(|o| IpAddr::V4(Ipv4Addr::from(o)))
                .chain(v6.into_iter().map(|o| IpAddr::V6(Ipv6Addr::from(o))))
                .collect();
            let mut out = Vec::new();
            MembershipRecord::emit_unsigned(&mut out, &[5; FINGERPRINT_LEN], 3, 35, &groups);
            out.extend_from_slice(&[0u8; 64]);
            let record = MembershipRecord::decode(&out).unwrap();
            prop_assert_eq!(record.groups().collect::<Vec<_>>(), groups);
            for (at, value) in flips {
                let len = out.len();
                out[at % len] ^= value;
            }
            out.truncate(cut % (out.len() + 1));
            if let Ok(record) = MembershipRecord::decode(&out) {
                let _ = record.groups().count();
            }
        }
    }
}
