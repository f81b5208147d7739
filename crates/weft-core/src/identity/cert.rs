//! Certificates: a network CA binds a node's keys to a name, an optional
//! overlay IPv4 address, groups and a validity period.
//!
//! Encoding (version 1): the postcard encoding of the body, then a 64-byte
//! Ed25519 signature over exactly those body bytes. The CA certificate is
//! self-signed the same way. A node certificate names its issuer by the
//! BLAKE3 fingerprint of the CA's key, so a certificate of another CA is told
//! apart from a forged one. Decoding is total: any bytes give a value or a
//! [`CertError`].

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::pem::{self, PemError};
use super::{NodeId, PublicKey, verify_signature};

const CERT_VERSION: u8 = 1;
const SIGNATURE_LEN: usize = 64;
const MAX_NAME_LEN: usize = 63;
const MAX_GROUPS: usize = 64;
const FINGERPRINT_CONTEXT: &str = "weft 2026-11 ca fingerprint";

/// Why a certificate was rejected or could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CertError {
    /// The bytes are not a certificate of a version we know.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
    /// The PEM armour is wrong. The cause is in the message and not also a
    /// `source()`, so that error reports do not print it twice.
    #[error("certificate text: {0}")]
    Pem(PemError),
    /// Issued by another CA than the one this network trusts.
    #[error("certificate was issued by another CA (issuer {issuer}, trusted {trusted})")]
    WrongCa {
        /// Short fingerprint of the issuer named in the certificate.
        issuer: String,
        /// Short fingerprint of the trusted CA.
        trusted: String,
    },
    /// Names the trusted CA but its signature does not verify.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// Not valid yet.
    #[error("certificate is not valid before unix time {not_before} (now {now})")]
    NotYetValid {
        /// Start of validity, unix seconds.
        not_before: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// No longer valid.
    #[error("certificate expired at unix time {not_after} (now {now})")]
    Expired {
        /// End of validity, unix seconds.
        not_after: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// The peer's Noise static key is not the key in its certificate.
    #[error("the peer's static key does not match its certificate")]
    KeyMismatch,
    /// A field holds a value the CA must not sign.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<PemError> for CertError {
    fn from(error: PemError) -> Self {
        Self::Pem(error)
    }
}

/// An IPv4 address with its prefix length, as `198.19.0.1/16`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Ipv4Net {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix_len: u8,
}

impl Ipv4Net {
    /// The network address (host bits zeroed).
    pub fn network(&self) -> Ipv4Addr {
        let mask = if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len.min(32))
        };
        Ipv4Addr::from(u32::from(self.addr) & mask)
    }

    /// Whether `addr` is inside this prefix.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let net = Ipv4Net {
            addr,
            prefix_len: self.prefix_len,
        };
        net.network() == self.network()
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| format!("'{len}' is not a prefix length"))?;
        if prefix_len > 32 {
            return Err(format!("prefix length {prefix_len} is over 32"));
        }
        Ok(Self { addr, prefix_len })
    }
}

/// What a CA is asked to sign.
#[derive(Clone, Debug)]
pub struct CertificateTemplate {
    /// The node's name: a DNS label (`a-z`, `0-9`, `-`, at most 63).
    pub name: String,
    /// The node's public keys.
    pub public_key: PublicKey,
    /// Optional overlay IPv4 address and prefix.
    pub ipv4: Option<Ipv4Net>,
    /// Groups, each a DNS label.
    pub groups: Vec<String>,
    /// Start of validity, unix seconds.
    pub not_before: u64,
    /// End of validity, unix seconds.
    pub not_after: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct NodeBody {
    version: u8,
    name: String,
    x25519: [u8; 32],
    ed25519: [u8; 32],
    ipv4: Option<Ipv4Net>,
    groups: Vec<String>,
    not_before: u64,
    not_after: u64,
    issuer: [u8; 32],
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
struct CaBody {
    version: u8,
    name: String,
    ed25519: [u8; 32],
    not_before: u64,
    not_after: u64,
}

/// A node certificate signed by a network CA.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    body: NodeBody,
    bytes: Vec<u8>,
    /// Both derived from `bytes` once, at decoding or signing: a node asks
    /// for them on every record and session it handles, and hashing each
    /// time was 8 % of a 1,000-node simulation.
    fingerprint: [u8; 32],
    node_id: NodeId,
}

impl Certificate {
    /// Decodes a certificate. Total: never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        let Some(body_len) = bytes.len().checked_sub(SIGNATURE_LEN) else {
            return Err(CertError::Malformed("shorter than a signature"));
        };
        let body: NodeBody = postcard::from_bytes(&bytes[..body_len])
            .map_err(|_| CertError::Malformed("body does not decode"))?;
        if body.version != CERT_VERSION {
            return Err(CertError::Malformed("unknown certificate version"));
        }
        // postcard accepts trailing bytes; re-encoding pins the exact form,
        // so one certificate has one byte string.
        if postcard::to_stdvec(&body).map_err(|_| CertError::Malformed("body"))?
            != bytes[..body_len]
        {
            return Err(CertError::Malformed("body has trailing bytes"));
        }
        Ok(Self::from_parts(body, bytes.to_vec()))
    }

    fn from_parts(body: NodeBody, bytes: Vec<u8>) -> Self {
        Self {
            fingerprint: *blake3::hash(&bytes).as_bytes(),
            node_id: NodeId::from_static_key(&body.x25519),
            body,
            bytes,
        }
    }

    /// The encoded certificate (body and signature).
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// PEM text (`WEFT NODE CERTIFICATE`).
    pub fn to_pem(&self) -> String {
        pem::encode(pem::NODE_CERTIFICATE, &self.bytes)
    }

    /// Parses PEM text written by [`Certificate::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        Self::from_bytes(&pem::decode(pem::NODE_CERTIFICATE, text)?)
    }

    /// Checks that `ca` issued this certificate and that it is valid at
    /// `unix_now`.
    pub fn verify(&self, ca: &CaCertificate, unix_now: u64) -> Result<(), CertError> {
        self.verify_issuer(ca)?;
        self.verify_validity(ca, unix_now)
    }

    /// Checks only that `ca` issued and signed this certificate, whatever
    /// its validity period (to renew an expired certificate, or to say why
    /// one is refused).
    pub fn verify_issuer(&self, ca: &CaCertificate) -> Result<(), CertError> {
        let trusted = ca.fingerprint();
        if self.body.issuer != trusted {
            return Err(CertError::WrongCa {
                issuer: super::hex(&self.body.issuer[..8]),
                trusted: super::hex(&trusted[..8]),
            });
        }
        let (body, signature) = self.bytes.split_at(self.bytes.len() - SIGNATURE_LEN);
        let signature: &[u8; 64] = signature.try_into().map_err(|_| CertError::BadSignature)?;
        if !verify_signature(&ca.body.ed25519, body, signature) {
            return Err(CertError::BadSignature);
        }
        Ok(())
    }

    /// The checks of [`Certificate::verify`] without the CA signature: for
    /// the very bytes of a certificate verified before, whose signature
    /// cannot have changed (the issuer and times still can matter).
    pub fn verify_validity(&self, ca: &CaCertificate, unix_now: u64) -> Result<(), CertError> {
        let trusted = ca.fingerprint();
        if self.body.issuer != trusted {
            return Err(CertError::WrongCa {
                issuer: super::hex(&self.body.issuer[..8]),
                trusted: super::hex(&trusted[..8]),
            });
        }
        // A certificate is only as valid as the CA that issued it.
        check_validity(ca.body.not_before, ca.body.not_after, unix_now)?;
        check_validity(self.body.not_before, self.body.not_after, unix_now)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.body.name
    }

    /// The node's public keys.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            x25519: self.body.x25519,
            ed25519: self.body.ed25519,
        }
    }

    /// The node id of the certified key.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The overlay IPv4 address, if the CA gave one.
    pub fn ipv4(&self) -> Option<Ipv4Net> {
        self.body.ipv4
    }

    /// The groups.
    pub fn groups(&self) -> &[String] {
        &self.body.groups
    }

    /// Start of validity, unix seconds.
    pub fn not_before(&self) -> u64 {
        self.body.not_before
    }

    /// End of validity, unix seconds.
    pub fn not_after(&self) -> u64 {
        self.body.not_after
    }

    /// The fingerprint of the CA that issued it (see
    /// [`CaCertificate::fingerprint`]), as the certificate names it.
    pub fn issuer(&self) -> [u8; 32] {
        self.body.issuer
    }

    /// The BLAKE3 hash of the encoded certificate (body and signature):
    /// names this one certificate, not the key it certifies, so a renewed
    /// certificate has another fingerprint.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("name", &self.body.name)
            .field("node_id", &self.node_id())
            .field("ipv4", &self.body.ipv4)
            .field("groups", &self.body.groups)
            .field("not_before", &self.body.not_before)
            .field("not_after", &self.body.not_after)
            .finish()
    }
}

/// A network CA's self-signed certificate: what every member trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificate {
    body: CaBody,
    bytes: Vec<u8>,
    /// Derived from the key once (every certificate check compares it).
    fingerprint: [u8; 32],
}

impl CaCertificate {
    /// Decodes and checks the self-signature. Total: never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertError> {
        let Some(body_len) = bytes.len().checked_sub(SIGNATURE_LEN) else {
            return Err(CertError::Malformed("shorter than a signature"));
        };
        let body: CaBody = postcard::from_bytes(&bytes[..body_len])
            .map_err(|_| CertError::Malformed("CA body does not decode"))?;
        if body.version != CERT_VERSION {
            return Err(CertError::Malformed("unknown CA certificate version"));
        }
        // One CA certificate, one byte string (as for node certificates).
        if postcard::to_stdvec(&body).map_err(|_| CertError::Malformed("CA body"))?
            != bytes[..body_len]
        {
            return Err(CertError::Malformed("CA body has trailing bytes"));
        }
        let signature: &[u8; 64] = bytes[body_len..]
            .try_into()
            .map_err(|_| CertError::BadSignature)?;
        if !verify_signature(&body.ed25519, &bytes[..body_len], signature) {
            return Err(CertError::BadSignature);
        }
        Ok(Self::from_parts(body, bytes.to_vec()))
    }

    fn from_parts(body: CaBody, bytes: Vec<u8>) -> Self {
        Self {
            fingerprint: blake3::derive_key(FINGERPRINT_CONTEXT, &body.ed25519),
            body,
            bytes,
        }
    }

    /// The encoded certificate.
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// PEM text (`WEFT CA CERTIFICATE`).
    pub fn to_pem(&self) -> String {
        pem::encode(pem::CA_CERTIFICATE, &self.bytes)
    }

    /// Parses PEM text written by [`CaCertificate::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        Self::from_bytes(&pem::decode(pem::CA_CERTIFICATE, text)?)
    }

    /// The CA's name.
    pub fn name(&self) -> &str {
        &self.body.name
    }

    /// BLAKE3 fingerprint of the CA key; node certificates name it.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Start of validity, unix seconds.
    pub fn not_before(&self) -> u64 {
        self.body.not_before
    }

    /// End of validity, unix seconds.
    pub fn not_after(&self) -> u64 {
        self.body.not_after
    }

    /// The CA's Ed25519 public key (what its other signed objects are
    /// checked with).
    pub(super) fn key(&self) -> &[u8; 32] {
        &self.body.ed25519
    }
}

impl fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaCertificate({}, {})",
            self.body.name,
            super::hex(&self.fingerprint()[..8])
        )
    }
}

/// A CA's signing key with its certificate.
pub struct CaSecret {
    key: ed25519_dalek::SigningKey,
    certificate: CaCertificate,
}

impl CaSecret {
    /// Creates a CA from 32 random bytes (the caller's RNG).
    pub fn new(
        random: [u8; 32],
        name: &str,
        not_before: u64,
        not_after: u64,
    ) -> Result<Self, CertError> {
        check_label("name", name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&random);
        let body = CaBody {
            version: CERT_VERSION,
            name: name.to_owned(),
            ed25519: key.verifying_key().to_bytes(),
            not_before,
            not_after,
        };
        let bytes = sign_body(&key, &body)?;
        let certificate = CaCertificate::from_parts(body, bytes);
        Ok(Self { key, certificate })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CaCertificate {
        &self.certificate
    }

    /// Signs `body` (for the CA's other signed objects).
    pub(super) fn sign_bytes(&self, body: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.key.sign(body).to_bytes()
    }

    /// Signs a node certificate.
    pub fn sign(&self, template: &CertificateTemplate) -> Result<Certificate, CertError> {
        check_label("name", &template.name)?;
        if template.groups.len() > MAX_GROUPS {
            return Err(CertError::Invalid {
                field: "groups",
                reason: format!("more than {MAX_GROUPS}"),
            });
        }
        for group in &template.groups {
            check_label("group", group)?;
        }
        if template.not_after <= template.not_before {
            return Err(CertError::Invalid {
                field: "validity",
                reason: "ends before it starts".into(),
            });
        }
        let body = NodeBody {
            version: CERT_VERSION,
            name: template.name.clone(),
            x25519: template.public_key.x25519,
            ed25519: template.public_key.ed25519,
            ipv4: template.ipv4,
            groups: template.groups.clone(),
            not_before: template.not_before,
            not_after: template.not_after,
            issuer: self.certificate.fingerprint(),
        };
        let bytes = sign_body(&self.key, &body)?;
        Ok(Certificate::from_parts(body, bytes))
    }

    /// PEM text of the CA signing key (`WEFT CA SECRET KEY`) followed by the
    /// CA certificate; write it with mode 0600.
    pub fn to_pem(&self) -> String {
        let mut out = pem::encode(pem::CA_SECRET_KEY, &self.key.to_bytes());
        out.push_str(&self.certificate.to_pem());
        out
    }

    /// Parses what [`CaSecret::to_pem`] wrote.
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        let seed = pem::decode(pem::CA_SECRET_KEY, text)?;
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| PemError::Length {
            expected: 32,
            found: seed.len(),
        })?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let certificate = CaCertificate::from_pem(text)?;
        if certificate.body.ed25519 != key.verifying_key().to_bytes() {
            return Err(CertError::KeyMismatch);
        }
        Ok(Self { key, certificate })
    }
}

fn sign_body<T: Serialize>(
    key: &ed25519_dalek::SigningKey,
    body: &T,
) -> Result<Vec<u8>, CertError> {
    use ed25519_dalek::Signer;
    let mut bytes =
        postcard::to_stdvec(body).map_err(|_| CertError::Malformed("body does not encode"))?;
    let signature = key.sign(&bytes).to_bytes();
    bytes.extend_from_slice(&signature);
    Ok(bytes)
}

fn check_validity(not_before: u64, not_after: u64, now: u64) -> Result<(), CertError> {
    if now < not_before {
        return Err(CertError::NotYetValid { not_before, now });
    }
    if now >= not_after {
        return Err(CertError::Expired { not_after, now });
    }
    Ok(())
}

/// Checks a name or group: a lowercase DNS label.
fn check_label(field: &'static str, value: &str) -> Result<(), CertError> {
    let valid = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(CertError::Invalid {
            field,
            reason: format!(
                "'{value}' must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;

    fn ca(seed: u8) -> CaSecret {
        CaSecret::new([seed; 32], "testnet", 1_000, 1_000_000).unwrap()
    }

    fn template(name: &str, key: &SecretKey) -> CertificateTemplate {
        CertificateTemplate {
            name: name.into(),
            public_key: key.public(),
            ipv4: Some("198.19.0.1/16".parse().unwrap()),
            groups: vec!["ops".into()],
            not_before: 1_000,
            not_after: 2_000,
        }
    }

    #[test]
    fn signed_certificate_verifies_within_validity() {
        let ca = ca(1);
        let key = SecretKey::from_random([5; 64]);
        let cert = ca.sign(&template("a", &key)).unwrap();
        assert_eq!(cert.verify(ca.certificate(), 1_500), Ok(()));
        assert_eq!(cert.node_id(), key.node_id());
        assert_eq!(cert.name(), "a");
        assert_eq!(cert.groups(), ["ops".to_string()]);
    }

    #[test]
    fn expired_and_early_certificates_are_rejected() {
        let ca = ca(1);
        let cert = ca
            .sign(&template("a", &SecretKey::from_random([5; 64])))
            .unwrap();
        assert_eq!(
            cert.verify(ca.certificate(), 2_000),
            Err(CertError::Expired {
                not_after: 2_000,
                now: 2_000
            })
        );
        assert_eq!(
            cert.verify(ca.certificate(), 999),
            Err(CertError::NotYetValid {
                not_before: 1_000,
                now: 999
            })
        );
    }

    #[test]
    fn certificate_of_another_ca_is_rejected_as_wrong_ca() {
        let cert = ca(2)
            .sign(&template("a", &SecretKey::from_random([5; 64])))
            .unwrap();
        assert!(matches!(
            cert.verify(ca(1).certificate(), 1_500),
            Err(CertError::WrongCa { .. })
        ));
    }

    #[test]
    fn tampered_certificate_fails_signature() {
        let ca = ca(1);
        let cert = ca
            .sign(&template("a", &SecretKey::from_random([5; 64])))
            .unwrap();
        let mut bytes = cert.to_bytes().to_vec();
        // The name is the second field: flip one of its letters.
        bytes[2] ^= 0x01;
        let tampered = Certificate::from_bytes(&bytes).unwrap();
        assert_eq!(
            tampered.verify(ca.certificate(), 1_500),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn pem_round_trips_for_certificates_and_ca_secret() {
        let ca = ca(1);
        let cert = ca
            .sign(&template("db1", &SecretKey::from_random([5; 64])))
            .unwrap();
        assert_eq!(Certificate::from_pem(&cert.to_pem()).unwrap(), cert);
        let again = CaSecret::from_pem(&ca.to_pem()).unwrap();
        assert_eq!(again.certificate(), ca.certificate());
        assert_eq!(
            CaCertificate::from_pem(&ca.certificate().to_pem()).unwrap(),
            *ca.certificate()
        );
    }

    #[test]
    fn bad_names_are_refused_by_the_ca() {
        let ca = ca(1);
        let key = SecretKey::from_random([5; 64]);
        for bad in ["", "-a", "A", "a_b", &"x".repeat(64)] {
            assert!(
                matches!(
                    ca.sign(&template(bad, &key)),
                    Err(CertError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv4_net_parses_and_contains() {
        let net: Ipv4Net = "198.19.3.4/16".parse().unwrap();
        assert_eq!(net.network(), Ipv4Addr::new(198, 19, 0, 0));
        assert!(net.contains(Ipv4Addr::new(198, 19, 200, 1)));
        assert!(!net.contains(Ipv4Addr::new(198, 18, 0, 1)));
        assert!("1.2.3.4".parse::<Ipv4Net>().is_err());
        assert!("1.2.3.4/33".parse::<Ipv4Net>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = Certificate::from_bytes(&bytes);
            let _ = CaCertificate::from_bytes(&bytes);
        }
    }
}
