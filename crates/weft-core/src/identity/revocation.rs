//! Revocation lists: a network CA's signed, versioned list of what it no
//! longer vouches for.
//!
//! A list names revoked node keys (by node id: every certificate of that
//! key), revoked certificates (by fingerprint, [`Certificate::fingerprint`]:
//! that certificate only, so a renewed one for the same key still works)
//! and revoked names (every certificate with that name). Nodes refuse
//! handshakes from what a list revokes and end such sessions; they pass the
//! newest list they hold to their peers, so one node given a list spreads
//! it through the network (see `node/revocation.rs` and PROTOCOL.md §9.2).
//!
//! Encoding (format 1), like certificates: the postcard encoding of the
//! body, then the CA's 64-byte Ed25519 signature over exactly those bytes.
//! The body names its issuer by the CA fingerprint. One list has one byte
//! string (decoding re-encodes and compares), at most [`MAX_LIST_BYTES`]
//! and [`MAX_ENTRIES`] entries. Decoding is total.

use serde::{Deserialize, Serialize};

use super::cert::{CaCertificate, CaSecret, Certificate};
use super::pem::{self, PemError};
use super::{NodeId, verify_signature};

const FORMAT: u8 = 1;
const SIGNATURE_LEN: usize = 64;
/// Most entries (node ids, certificates and names together) in a list.
pub const MAX_ENTRIES: usize = 1024;
/// Largest encoded list: what a node stores and passes on, at most.
pub const MAX_LIST_BYTES: usize = 64 * 1024;

/// Why a revocation list was refused or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RevocationError {
    /// The bytes are not a list of a format we know.
    #[error("malformed revocation list: {0}")]
    Malformed(&'static str),
    /// The PEM armour is wrong.
    #[error("revocation list text: {0}")]
    Pem(#[from] PemError),
    /// Issued by another CA than the one this network trusts.
    #[error("revocation list was issued by another CA")]
    WrongCa,
    /// Names the trusted CA but its signature does not verify.
    #[error("revocation list signature does not verify")]
    BadSignature,
    /// More than [`MAX_ENTRIES`] entries or [`MAX_LIST_BYTES`] bytes.
    #[error(
        "revocation list too large ({entries} entries, {bytes} bytes; at most {MAX_ENTRIES} and {MAX_LIST_BYTES})"
    )]
    TooLarge {
        /// Entries.
        entries: usize,
        /// Encoded bytes.
        bytes: usize,
    },
}

/// What a new list revokes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationTemplate {
    /// Its version: lists with a higher one replace it.
    pub version: u64,
    /// When it is issued, unix seconds.
    pub issued_at: u64,
    /// Revoked node keys.
    pub node_ids: Vec<NodeId>,
    /// Revoked certificates, by fingerprint.
    pub certificates: Vec<[u8; 32]>,
    /// Revoked names.
    pub names: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Body {
    format: u8,
    issuer: [u8; 32],
    version: u64,
    issued_at: u64,
    node_ids: Vec<[u8; 32]>,
    certificates: Vec<[u8; 32]>,
    names: Vec<String>,
}

/// A CA-signed revocation list (signature checked by
/// [`RevocationList::verify`], not by decoding).
#[derive(Clone, PartialEq, Eq)]
pub struct RevocationList {
    body: Body,
    bytes: Vec<u8>,
}

impl RevocationList {
    /// Signs a list of what `template` revokes (entries sorted and
    /// deduplicated, so one content has one encoding).
    pub fn sign(ca: &CaSecret, template: &RevocationTemplate) -> Result<Self, RevocationError> {
        let mut node_ids: Vec<[u8; 32]> =
            template.node_ids.iter().map(|id| *id.as_bytes()).collect();
        let mut certificates = template.certificates.clone();
        let mut names = template.names.clone();
        node_ids.sort_unstable();
        node_ids.dedup();
        certificates.sort_unstable();
        certificates.dedup();
        names.sort_unstable();
        names.dedup();
        let body = Body {
            format: FORMAT,
            issuer: ca.certificate().fingerprint(),
            version: template.version,
            issued_at: template.issued_at,
            node_ids,
            certificates,
            names,
        };
        let mut bytes = postcard::to_stdvec(&body)
            .map_err(|_| RevocationError::Malformed("body does not encode"))?;
        let signature = ca.sign_bytes(&bytes);
        bytes.extend_from_slice(&signature);
        let list = Self { body, bytes };
        list.check_size()?;
        Ok(list)
    }

    /// Decodes a list. Total: never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RevocationError> {
        if bytes.len() > MAX_LIST_BYTES {
            return Err(RevocationError::TooLarge {
                entries: 0,
                bytes: bytes.len(),
            });
        }
        let Some(body_len) = bytes.len().checked_sub(SIGNATURE_LEN) else {
            return Err(RevocationError::Malformed("shorter than a signature"));
        };
        let body: Body = postcard::from_bytes(&bytes[..body_len])
            .map_err(|_| RevocationError::Malformed("body does not decode"))?;
        if body.format != FORMAT {
            return Err(RevocationError::Malformed("unknown format"));
        }
        if postcard::to_stdvec(&body).map_err(|_| RevocationError::Malformed("body"))?
            != bytes[..body_len]
        {
            return Err(RevocationError::Malformed("body has trailing bytes"));
        }
        let list = Self {
            body,
            bytes: bytes.to_vec(),
        };
        list.check_size()?;
        Ok(list)
    }

    /// Checks that `ca` issued and signed this list.
    pub fn verify(&self, ca: &CaCertificate) -> Result<(), RevocationError> {
        if self.body.issuer != ca.fingerprint() {
            return Err(RevocationError::WrongCa);
        }
        let (body, signature) = self.bytes.split_at(self.bytes.len() - SIGNATURE_LEN);
        let signature: &[u8; 64] = signature
            .try_into()
            .map_err(|_| RevocationError::BadSignature)?;
        if !verify_signature(ca.key(), body, signature) {
            return Err(RevocationError::BadSignature);
        }
        Ok(())
    }

    /// Whether the list revokes `certificate` (its key, itself or its name).
    pub fn revokes(&self, certificate: &Certificate) -> bool {
        self.body
            .node_ids
            .binary_search(certificate.node_id().as_bytes())
            .is_ok()
            || self
                .body
                .certificates
                .binary_search(&certificate.fingerprint())
                .is_ok()
            || self
                .body
                .names
                .binary_search_by(|n| n.as_str().cmp(certificate.name()))
                .is_ok()
    }

    /// The encoded list (body and signature).
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// PEM text (`WEFT REVOCATION LIST`).
    pub fn to_pem(&self) -> String {
        pem::encode(pem::REVOCATION_LIST, &self.bytes)
    }

    /// Parses PEM text written by [`RevocationList::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, RevocationError> {
        Self::from_bytes(&pem::decode(pem::REVOCATION_LIST, text)?)
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// When it was issued, unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.body.issued_at
    }

    /// Fingerprint of the CA that issued it.
    pub fn issuer(&self) -> [u8; 32] {
        self.body.issuer
    }

    /// Revoked node keys, sorted.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.body
            .node_ids
            .iter()
            .map(|b| NodeId::from_bytes(*b))
            .collect()
    }

    /// Revoked certificate fingerprints, sorted.
    pub fn certificates(&self) -> &[[u8; 32]] {
        &self.body.certificates
    }

    /// Revoked names, sorted.
    pub fn names(&self) -> &[String] {
        &self.body.names
    }

    /// Entries of all kinds.
    pub fn len(&self) -> usize {
        self.body.node_ids.len() + self.body.certificates.len() + self.body.names.len()
    }

    /// Whether it revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fingerprint of the whole list (BLAKE3 of its bytes).
    pub fn fingerprint(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }

    fn check_size(&self) -> Result<(), RevocationError> {
        let sorted = self.body.node_ids.is_sorted_by(|a, b| a < b)
            && self.body.certificates.is_sorted_by(|a, b| a < b)
            && self.body.names.is_sorted_by(|a, b| a < b);
        if !sorted {
            // Lookups rely on the order; a signer of ours always sorts.
            return Err(RevocationError::Malformed("entries not sorted"));
        }
        if self.len() > MAX_ENTRIES || self.bytes.len() > MAX_LIST_BYTES {
            return Err(RevocationError::TooLarge {
                entries: self.len(),
                bytes: self.bytes.len(),
            });
        }
        Ok(())
    }
}

impl std::fmt::Debug for RevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationList")
            .field("version", &self.body.version)
            .field("entries", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CertificateTemplate, SecretKey};

    fn ca(seed: u8) -> CaSecret {
        CaSecret::new([seed; 32], "testnet", 1_000, 1_000_000).unwrap()
    }

    fn cert(ca: &CaSecret, name: &str, seed: u8) -> Certificate {
        ca.sign(&CertificateTemplate {
            name: name.into(),
            public_key: SecretKey::from_random([seed; 64]).public(),
            ipv4: None,
            groups: vec![],
            not_before: 1_000,
            not_after: 2_000,
        })
        .unwrap()
    }

    #[test]
    fn a_list_revokes_by_key_certificate_or_name_and_round_trips() {
        let ca = ca(1);
        let (a, b, c, d) = (
            cert(&ca, "a", 2),
            cert(&ca, "b", 3),
            cert(&ca, "c", 4),
            cert(&ca, "d", 5),
        );
        let list = RevocationList::sign(
            &ca,
            &RevocationTemplate {
                version: 3,
                issued_at: 1_500,
                node_ids: vec![a.node_id(), a.node_id()],
                certificates: vec![b.fingerprint()],
                names: vec!["c".into()],
            },
        )
        .unwrap();
        assert_eq!(list.len(), 3, "duplicates merged");
        assert!(list.revokes(&a) && list.revokes(&b) && list.revokes(&c));
        assert!(!list.revokes(&d));
        // A renewed certificate of b's key is not revoked; a's key is.
        let b_renewed = ca
            .sign(&CertificateTemplate {
                name: "b".into(),
                public_key: b.public_key(),
                ipv4: None,
                groups: vec![],
                not_before: 1_000,
                not_after: 3_000,
            })
            .unwrap();
        assert!(!list.revokes(&b_renewed));
        let a_renewed = ca
            .sign(&CertificateTemplate {
                name: "a2".into(),
                public_key: a.public_key(),
                ipv4: None,
                groups: vec![],
                not_before: 1_000,
                not_after: 3_000,
            })
            .unwrap();
        assert!(list.revokes(&a_renewed));
        let again = RevocationList::from_pem(&list.to_pem()).unwrap();
        assert_eq!(again, list);
        again.verify(ca.certificate()).unwrap();
        assert_eq!(again.version(), 3);
        assert_eq!(again.issued_at(), 1_500);
    }

    #[test]
    fn another_ca_or_a_changed_byte_does_not_verify() {
        let list = RevocationList::sign(&ca(1), &RevocationTemplate::default()).unwrap();
        assert_eq!(
            list.verify(ca(2).certificate()),
            Err(RevocationError::WrongCa)
        );
        let mut bytes = list.to_bytes().to_vec();
        // The version is the third field (after format and issuer).
        bytes[33] ^= 1;
        let tampered = RevocationList::from_bytes(&bytes).unwrap();
        assert_eq!(
            tampered.verify(ca(1).certificate()),
            Err(RevocationError::BadSignature)
        );
    }

    #[test]
    fn lists_are_bounded() {
        let ca = ca(1);
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("n{i}")).collect();
        let result = RevocationList::sign(
            &ca,
            &RevocationTemplate {
                names,
                ..RevocationTemplate::default()
            },
        );
        assert!(matches!(result, Err(RevocationError::TooLarge { .. })));
        assert!(matches!(
            RevocationList::from_bytes(&vec![0; MAX_LIST_BYTES + 1]),
            Err(RevocationError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = RevocationList::from_bytes(&bytes);
        }
    }
}
