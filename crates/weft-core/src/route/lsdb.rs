//! The link-state database: the newest verified record of every origin.
//!
//! A record is accepted only if its certificate was issued by the
//! network's CA and is valid, and the origin's Ed25519 key in it signed the
//! record, so a member cannot forge another's links. Among records of one
//! origin the largest sequence wins; a record is dropped when its lifetime
//! runs out, which withdraws a node that disappeared.

use std::collections::BTreeMap;
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
        self.records.insert(
            record.origin,
            StoredLsa {
                certificate: record.certificate,
                sequence: record.sequence,
                expires: now + record.lifetime,
                links: record.links,
                bytes: bytes.to_vec(),
                hops_left,
            },
        );
        true
    }

    /// The stored record that is exactly `bytes`, if any: flooding
    /// delivers each record once per neighbour, and the copies need no
    /// second verification (two Ed25519 checks each).
    pub(crate) fn holding(&mut self, bytes: &[u8]) -> Option<(&NodeId, &mut StoredLsa)> {
        self.records.iter_mut().find(|(_, r)| r.bytes == bytes)
    }

    pub(crate) fn get(&self, origin: &NodeId) -> Option<&StoredLsa> {
        self.records.get(origin)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &StoredLsa)> {
        self.records.iter()
    }

    /// Drops expired records; returns whether any was.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let before = self.records.len();
        self.records.retain(|_, record| record.expires > now);
        self.records.len() != before
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.records.values().map(|r| r.expires).min()
    }
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
