//! The link-state database: the newest verified record of every origin.
//!
//! A record is accepted only if its certificate was issued by the
//! network's CA and is valid, and the origin's Ed25519 key in it signed the
//! record, so a member cannot forge another's links. Among records of one
//! origin the largest sequence wins; a record is dropped when its lifetime
//! runs out, which withdraws a node that disappeared.
//!
//! Every record arrives once per neighbour that floods it, so the copies
//! are recognised by an index on the record's last bytes (its signature)
//! rather than by comparing them with every stored record, and the next
//! expiry is the first of an ordered set: both are looked up after every
//! input, and a node may hold records of every other node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::identity::{CaCertificate, CertError, Certificate, NodeId, verify_signature};
use crate::wire::{DecodeError, LinkEntry, LinkStateRecord};

/// Why a link-state record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LsaError {
    Malformed(DecodeError),
    /// The record names another certificate than the one given.
    OtherCertificate,
    Certificate(CertError),
    BadSignature,
}

/// A record whose certificate and signature checked out.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedLsa {
    pub(crate) origin: NodeId,
    pub(crate) certificate: Certificate,
    pub(crate) sequence: u64,
    pub(crate) lifetime: Duration,
    pub(crate) links: Vec<LinkEntry>,
}

/// Checks a record's layout, that it names `certificate` (one whose CA
/// signature was verified when the node took it in), that the certificate
/// is valid now, and the signature.
pub(crate) fn verify(
    bytes: &[u8],
    certificate: &Certificate,
    ca: &CaCertificate,
    unix_now: u64,
) -> Result<VerifiedLsa, LsaError> {
    let record = LinkStateRecord::decode(bytes).map_err(LsaError::Malformed)?;
    if *record.certificate != certificate.fingerprint() {
        return Err(LsaError::OtherCertificate);
    }
    certificate
        .verify_validity(ca, unix_now)
        .map_err(LsaError::Certificate)?;
    if !verify_signature(
        &certificate.public_key().ed25519,
        record.signed,
        record.signature,
    ) {
        return Err(LsaError::BadSignature);
    }
    Ok(VerifiedLsa {
        origin: certificate.node_id(),
        lifetime: Duration::from_secs(u64::from(record.lifetime_secs)),
        links: record.links().collect(),
        sequence: record.sequence,
        certificate: certificate.clone(),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct StoredLsa {
    pub(crate) certificate: Certificate,
    pub(crate) sequence: u64,
    pub(crate) expires: Instant,
    pub(crate) links: Vec<LinkEntry>,
    /// The record as received, for flooding and for syncing new neighbours.
    pub(crate) bytes: Vec<u8>,
    /// The largest hop budget it arrived with (how many more times it may
    /// be passed on from here).
    pub(crate) hops_left: u8,
}

#[derive(Debug, Default)]
pub(crate) struct LinkStateDb {
    records: BTreeMap<NodeId, StoredLsa>,
    /// Every record by [`tail_key`] of its bytes, then origin.
    by_tail: BTreeSet<(u64, NodeId)>,
    /// Every record by expiry, then origin.
    by_expiry: BTreeSet<(Instant, NodeId)>,
}

impl LinkStateDb {
    /// Stores `record` if it is newer than what the origin had; returns
    /// whether it was.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        record: VerifiedLsa,
        bytes: &[u8],
        hops_left: u8,
    ) -> bool {
        if self
            .records
            .get(&record.origin)
            .is_some_and(|old| old.sequence >= record.sequence)
        {
            return false;
        }
        let origin = record.origin;
        let expires = now + record.lifetime;
        let old = self.records.insert(
            origin,
            StoredLsa {
                certificate: record.certificate,
                sequence: record.sequence,
                expires,
                links: record.links,
                bytes: bytes.to_vec(),
                hops_left,
            },
        );
        if let Some(old) = old {
            self.unindex(origin, &old);
        }
        self.by_tail.insert((tail_key(bytes), origin));
        self.by_expiry.insert((expires, origin));
        true
    }

    /// The stored record that is exactly `bytes`, if any: flooding
    /// delivers each record once per neighbour, and the copies need no
    /// second verification (two Ed25519 checks each).
    pub(crate) fn holding(&mut self, bytes: &[u8]) -> Option<(&NodeId, &mut StoredLsa)> {
        let key = tail_key(bytes);
        let lowest = NodeId::from_bytes([0; 32]);
        let highest = NodeId::from_bytes([u8::MAX; 32]);
        // Equal bytes have equal keys; among records sharing a key (which
        // needs equal signature bytes), the first by origin that is equal.
        let origin = self
            .by_tail
            .range((key, lowest)..=(key, highest))
            .map(|(_, origin)| *origin)
            .find(|origin| self.records.get(origin).is_some_and(|r| r.bytes == bytes))?;
        self.records.range_mut(origin..=origin).next()
    }

    pub(crate) fn get(&self, origin: &NodeId) -> Option<&StoredLsa> {
        self.records.get(origin)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &StoredLsa)> {
        self.records.iter()
    }

    /// Drops expired records; returns whether any was.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(&(expires, origin)) = self.by_expiry.first()
            && expires <= now
        {
            self.by_expiry.pop_first();
            if let Some(record) = self.records.remove(&origin) {
                self.by_tail.remove(&(tail_key(&record.bytes), origin));
            }
            any = true;
        }
        any
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    fn unindex(&mut self, origin: NodeId, record: &StoredLsa) {
        self.by_tail.remove(&(tail_key(&record.bytes), origin));
        self.by_expiry.remove(&(record.expires, origin));
    }
}

/// A record's last eight bytes (part of its signature, so they differ
/// between records), as the index key of its bytes.
fn tail_key(bytes: &[u8]) -> u64 {
    let mut key = [0; 8];
    let tail = &bytes[bytes.len().saturating_sub(8)..];
    key[..tail.len()].copy_from_slice(tail);
    u64::from_be_bytes(key)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate, SecretKey};

    fn certified(ca: &CaSecret, key: &SecretKey) -> Certificate {
        ca.sign(&CertificateTemplate {
            name: "a".into(),
            public_key: key.public(),
            ipv4: None,
            groups: vec![],
            not_before: 0,
            not_after: 1_000,
        })
        .unwrap()
    }

    fn signed_record(ca: &CaSecret, key: &SecretKey, sequence: u64) -> Vec<u8> {
        let cert = certified(ca, key);
        let links = [LinkEntry {
            neighbour: [3; 16],
            rtt_us: 1000,
            loss: 0,
        }];
        let mut out = Vec::new();
        LinkStateRecord::emit_unsigned(&mut out, &cert.fingerprint(), sequence, 30, &links);
        let signature = key.sign(&out);
        out.extend_from_slice(&signature);
        out
    }

    #[test]
    fn newer_records_replace_older_and_expire() {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let key = SecretKey::from_random([2; 64]);
        let now = Instant::now();
        let mut db = LinkStateDb::default();
        let cert = certified(&ca, &key);
        let r2 = signed_record(&ca, &key, 2);
        let r1 = signed_record(&ca, &key, 1);
        assert!(db.insert(
            now,
            verify(&r2, &cert, ca.certificate(), 10).unwrap(),
            &r2,
            1
        ));
        assert!(!db.insert(
            now,
            verify(&r1, &cert, ca.certificate(), 10).unwrap(),
            &r1,
            1
        ));
        assert!(!db.insert(
            now,
            verify(&r2, &cert, ca.certificate(), 10).unwrap(),
            &r2,
            1
        ));
        assert_eq!(db.get(&key.node_id()).unwrap().sequence, 2);
        assert!(
            db.holding(&r2).is_some() && db.holding(&r1).is_none(),
            "only the stored bytes"
        );
        assert!(!db.expire(now + Duration::from_secs(29)));
        assert!(db.expire(now + Duration::from_secs(30)));
        assert!(db.get(&key.node_id()).is_none());
    }

    #[test]
    fn a_replaced_record_is_no_longer_held_and_expires_with_its_successor() {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let key = SecretKey::from_random([2; 64]);
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut db = LinkStateDb::default();
        let cert = certified(&ca, &key);
        let (r1, r2) = (signed_record(&ca, &key, 1), signed_record(&ca, &key, 2));
        let v1 = verify(&r1, &cert, ca.certificate(), 10).unwrap();
        let v2 = verify(&r2, &cert, ca.certificate(), 10).unwrap();
        assert!(db.insert(now, v1, &r1, 1));
        assert!(db.insert(later, v2, &r2, 1));
        assert!(db.holding(&r1).is_none());
        assert_eq!(db.holding(&r2).unwrap().1.sequence, 2);
        assert_eq!(db.next_expiry(), Some(later + Duration::from_secs(30)));
        assert!(
            !db.expire(now + Duration::from_secs(30)),
            "the first expiry went with it"
        );
        assert!(db.expire(later + Duration::from_secs(30)));
        assert_eq!(db.next_expiry(), None);
        assert!(db.holding(&r2).is_none());
    }

    #[test]
    fn forged_and_foreign_records_are_refused() {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let key = SecretKey::from_random([2; 64]);
        let cert = certified(&ca, &key);
        let mut record = signed_record(&ca, &key, 1);
        let last = record.len() - 70;
        record[last] ^= 1; // a link's RTT, under the signature
        assert_eq!(
            verify(&record, &cert, ca.certificate(), 10).unwrap_err(),
            LsaError::BadSignature
        );
        let other_cert = certified(&ca, &SecretKey::from_random([3; 64]));
        assert_eq!(
            verify(&record, &other_cert, ca.certificate(), 10).unwrap_err(),
            LsaError::OtherCertificate
        );
        let other = CaSecret::new([9; 32], "evil", 0, 1_000).unwrap();
        let foreign = signed_record(&other, &key, 1);
        assert!(matches!(
            verify(&foreign, &certified(&other, &key), ca.certificate(), 10),
            Err(LsaError::Certificate(CertError::WrongCa { .. }))
        ));
        assert!(matches!(
            verify(b"\x02", &cert, ca.certificate(), 10),
            Err(LsaError::Malformed(_))
        ));
    }
}
