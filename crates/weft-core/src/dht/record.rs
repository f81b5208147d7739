//! Signed node records: making the own one, checking others'.
//!
//! A record (layout in `wire::RecordFields`, PROTOCOL §14.3) carries its
//! owner's certificate and is signed by the certificate's Ed25519 key, so
//! nobody can publish a record for another node, and whoever holds a record
//! can hand it on: the receiver checks it again, end to end. A record is
//! valid when its certificate is the network CA's and valid now, its
//! signature verifies, it has not expired, it does not claim to live more
//! than [`MAX_RECORD_AHEAD`] seconds, and its sequence (unix milliseconds) is
//! not more than [`MAX_CLOCK_SKEW`] seconds ahead of the local clock.

use std::net::SocketAddr;
use std::sync::Arc;

use super::certs::Verifier;
use super::{Key, NodeRecord, Target};
use crate::identity::{Certificate, SecretKey};
use crate::wire::{RecordFields, SIGNATURE_LEN, record_digest};

/// Longest lifetime a record may claim, in seconds from now.
pub(crate) const MAX_RECORD_AHEAD: u64 = 24 * 3600;
/// How far ahead of the local clock a peer's clock may be, seconds.
pub(crate) const MAX_CLOCK_SKEW: u64 = 60;

/// A record with the exact bytes its owner signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedRecord {
    pub(crate) record: NodeRecord,
    pub(crate) bytes: Vec<u8>,
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    Malformed,
    Certificate,
    Signature,
    Expired,
    TooLong,
    FromTheFuture,
}

impl SignedRecord {
    /// Checks and decodes a record received from the network.
    pub(crate) fn verify(
        bytes: &[u8],
        certs: &mut Verifier,
        unix_now: u64,
    ) -> Result<Self, RecordError> {
        let fields = RecordFields::decode(bytes).map_err(|_| RecordError::Malformed)?;
        if fields.expires <= unix_now {
            return Err(RecordError::Expired);
        }
        if fields.expires > unix_now.saturating_add(MAX_RECORD_AHEAD) {
            return Err(RecordError::TooLong);
        }
        if fields.sequence > unix_now.saturating_add(MAX_CLOCK_SKEW).saturating_mul(1000) {
            return Err(RecordError::FromTheFuture);
        }
        let member = certs
            .verify(fields.certificate, unix_now)
            .map_err(|_| RecordError::Certificate)?;
        if !member.verifies(&record_digest(fields.signed), fields.signature) {
            return Err(RecordError::Signature);
        }
        Ok(Self {
            record: NodeRecord {
                certificate: member.certificate.clone(),
                sequence: fields.sequence,
                expires: fields.expires,
                endpoints: fields.endpoints,
                groups: fields.groups.iter().map(|g| (*g).to_owned()).collect(),
            },
            bytes: bytes.to_vec(),
        })
    }

    /// Makes and signs a record. Endpoints and groups beyond the wire bounds
    /// are left out (the record must fit one datagram).
    pub(crate) fn sign(
        secret: &SecretKey,
        certificate: &Certificate,
        sequence: u64,
        expires: u64,
        endpoints: &[SocketAddr],
        groups: &[String],
    ) -> Self {
        let mut endpoints = endpoints.to_vec();
        let mut groups = groups.to_vec();
        loop {
            let mut bytes = Vec::new();
            RecordFields::emit_unsigned(
                &mut bytes,
                certificate.to_bytes(),
                sequence,
                expires,
                &endpoints,
                &groups,
            );
            if bytes.len() + SIGNATURE_LEN > crate::wire::MAX_RECORD_LEN
                && (!groups.is_empty() || !endpoints.is_empty())
            {
                // Too long for one datagram: drop groups first, then the
                // least-preferred endpoints.
                if groups.pop().is_none() {
                    endpoints.pop();
                }
                continue;
            }
            let signature = secret.sign(&record_digest(&bytes));
            bytes.extend_from_slice(&signature);
            let decoded = RecordFields::decode(&bytes);
            let (endpoints, groups) = match decoded {
                Ok(fields) => (
                    fields.endpoints,
                    fields.groups.iter().map(|g| (*g).to_owned()).collect(),
                ),
                Err(_) => (Vec::new(), Vec::new()),
            };
            return Self {
                record: NodeRecord {
                    certificate: certificate.clone(),
                    sequence,
                    expires,
                    endpoints,
                    groups,
                },
                bytes,
            };
        }
    }

    /// Shared form, as held in the store and the cache.
    pub(crate) fn shared(self) -> Arc<Self> {
        Arc::new(self)
    }
}

/// The keys a record is stored under: its node id, its name and, if the
/// certificate has one, its overlay IPv4 address.
pub(crate) fn record_keys(record: &NodeRecord) -> Vec<Key> {
    let mut keys = vec![
        Target::Id(record.node_id()).key(),
        Target::Name(record.name().to_owned()).key(),
    ];
    if let Some(ipv4) = record.overlay_ipv4() {
        keys.push(Target::Ipv4(ipv4).key());
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate};

    const NOW: u64 = 1_800_000_000;

    fn member(ca: &CaSecret, seed: u8, not_after: u64) -> (SecretKey, Certificate) {
        let secret = SecretKey::from_random([seed; 64]);
        let cert = ca
            .sign(&CertificateTemplate {
                name: format!("n{seed}"),
                public_key: secret.public(),
                ipv4: Some(format!("198.19.0.{seed}/16").parse().unwrap()),
                groups: vec![],
                not_before: NOW - 100,
                not_after,
            })
            .unwrap();
        (secret, cert)
    }

    fn ca(seed: u8) -> CaSecret {
        CaSecret::new([seed; 32], "net", NOW - 1000, NOW + 1_000_000).unwrap()
    }

    fn endpoints() -> Vec<SocketAddr> {
        vec!["198.18.0.1:4800".parse().unwrap()]
    }

    #[test]
    fn own_record_verifies_and_round_trips() {
        let ca = ca(1);
        let (secret, cert) = member(&ca, 3, NOW + 86_400);
        let signed = SignedRecord::sign(
            &secret,
            &cert,
            NOW * 1000,
            NOW + 3600,
            &endpoints(),
            &["g".into()],
        );
        let mut certs = Verifier::new(ca.certificate().clone(), 8);
        let got = SignedRecord::verify(&signed.bytes, &mut certs, NOW).unwrap();
        assert_eq!(got, signed);
        assert_eq!(got.record.groups, ["g".to_string()]);
        assert_eq!(record_keys(&got.record).len(), 3);
    }

    #[test]
    fn forged_signature_is_refused() {
        let ca = ca(1);
        let (secret, cert) = member(&ca, 3, NOW + 86_400);
        let signed = SignedRecord::sign(&secret, &cert, NOW * 1000, NOW + 3600, &endpoints(), &[]);
        // Another member signs a record carrying 3's certificate.
        let (other, _) = member(&ca, 4, NOW + 86_400);
        let forged = SignedRecord::sign(&other, &cert, NOW * 1000, NOW + 3600, &endpoints(), &[]);
        let mut certs = Verifier::new(ca.certificate().clone(), 8);
        assert_eq!(
            SignedRecord::verify(&forged.bytes, &mut certs, NOW),
            Err(RecordError::Signature)
        );
        // A changed endpoint under the owner's signature.
        let mut tampered = signed.bytes.clone();
        let at = tampered.len() - 64 - 4;
        tampered[at] ^= 1;
        assert!(SignedRecord::verify(&tampered, &mut certs, NOW).is_err());
    }

    #[test]
    fn wrong_ca_expired_and_future_records_are_refused() {
        let ca1 = ca(1);
        let ca2 = ca(2);
        let (secret, cert) = member(&ca2, 3, NOW + 86_400);
        let foreign = SignedRecord::sign(&secret, &cert, NOW * 1000, NOW + 3600, &[], &[]);
        let mut certs = Verifier::new(ca1.certificate().clone(), 8);
        assert_eq!(
            SignedRecord::verify(&foreign.bytes, &mut certs, NOW),
            Err(RecordError::Certificate)
        );
        let (secret, cert) = member(&ca1, 3, NOW + 86_400);
        let expired = SignedRecord::sign(&secret, &cert, NOW * 1000, NOW, &[], &[]);
        assert_eq!(
            SignedRecord::verify(&expired.bytes, &mut certs, NOW),
            Err(RecordError::Expired)
        );
        let long = SignedRecord::sign(
            &secret,
            &cert,
            NOW * 1000,
            NOW + MAX_RECORD_AHEAD + 1,
            &[],
            &[],
        );
        assert_eq!(
            SignedRecord::verify(&long.bytes, &mut certs, NOW),
            Err(RecordError::TooLong)
        );
        let future =
            SignedRecord::sign(&secret, &cert, (NOW + 61) * 1000 + 1, NOW + 3600, &[], &[]);
        assert_eq!(
            SignedRecord::verify(&future.bytes, &mut certs, NOW),
            Err(RecordError::FromTheFuture)
        );
        // A certificate that has expired makes its record void, cached or not.
        let (secret, short_cert) = member(&ca1, 5, NOW + 10);
        let short = SignedRecord::sign(&secret, &short_cert, NOW * 1000, NOW + 3600, &[], &[]);
        assert!(SignedRecord::verify(&short.bytes, &mut certs, NOW).is_ok());
        assert_eq!(
            SignedRecord::verify(&short.bytes, &mut certs, NOW + 10),
            Err(RecordError::Certificate)
        );
    }

    #[test]
    fn oversized_records_drop_groups_to_fit() {
        let ca = ca(1);
        let (secret, cert) = member(&ca, 3, NOW + 86_400);
        let groups: Vec<String> = (0..32).map(|i| format!("{:0>60}", i)).collect();
        let signed = SignedRecord::sign(
            &secret,
            &cert,
            NOW * 1000,
            NOW + 3600,
            &endpoints(),
            &groups,
        );
        assert!(signed.bytes.len() <= crate::wire::MAX_RECORD_LEN);
        assert!(signed.record.groups.len() < 32);
        let mut certs = Verifier::new(ca.certificate().clone(), 8);
        assert!(SignedRecord::verify(&signed.bytes, &mut certs, NOW).is_ok());
    }
}
