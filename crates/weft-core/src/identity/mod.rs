//! Node identity: keys, node ids and overlay addresses.
//!
//! A node owns two key pairs: an X25519 key, its Noise static key, and an
//! Ed25519 key, with which it signs what others act upon (link state and DHT
//! records, later). Its [`NodeId`] is a BLAKE3 derivation of the X25519 public
//! key, and its overlay IPv6 address is the [`OVERLAY_PREFIX`] followed by the
//! first 96 bits of the node id, so any node can check that an address belongs
//! to the key that claims it. A network CA binds keys to names, optional IPv4
//! addresses and groups in [`Certificate`]s.

mod cert;
mod claims;
mod pem;
mod revocation;

use std::fmt;
use std::net::Ipv6Addr;

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

pub use cert::{CaCertificate, CaSecret, CertError, Certificate, CertificateTemplate, Ipv4Net};
pub(crate) use claims::ConflictLog;
pub use claims::{Claim, ClaimConflict, MAX_CONFLICTS, conflicts_between, prevails};
pub use pem::PemError;
pub use revocation::{
    MAX_ENTRIES as MAX_REVOCATIONS, MAX_LIST_BYTES as MAX_REVOCATION_LIST_BYTES, RevocationError,
    RevocationList, RevocationTemplate,
};

/// The overlay's IPv6 prefix (a ULA, RFC 4193): `fd77:6566::/32`.
pub const OVERLAY_PREFIX: Ipv6Addr = Ipv6Addr::new(0xfd77, 0x6566, 0, 0, 0, 0, 0, 0);
/// Length in bits of [`OVERLAY_PREFIX`].
pub const OVERLAY_PREFIX_LEN: u8 = 32;

const NODE_ID_CONTEXT: &str = "weft 2026-11 node id from x25519 static key";

/// A node's identifier: 32 bytes derived from its X25519 static public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Derives the id of the node whose Noise static public key is `x25519`.
    pub fn from_static_key(x25519: &[u8; 32]) -> Self {
        Self(blake3::derive_key(NODE_ID_CONTEXT, x25519))
    }

    /// Wraps raw bytes (as carried on the wire) without checking them.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The overlay IPv6 address of this node: the prefix, then 96 bits of id.
    pub fn overlay_ipv6(&self) -> Ipv6Addr {
        let mut octets = OVERLAY_PREFIX.octets();
        octets[4..].copy_from_slice(&self.0[..12]);
        Ipv6Addr::from(octets)
    }

    /// Whether `addr` is this node's overlay IPv6 address.
    pub fn owns_ipv6(&self, addr: &Ipv6Addr) -> bool {
        self.overlay_ipv6() == *addr
    }

    /// A short hex form for logs and tables (the first 8 bytes).
    pub fn short(&self) -> String {
        hex(&self.0[..8])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Whether `addr` lies in the overlay's IPv6 prefix.
pub fn is_overlay_ipv6(addr: &Ipv6Addr) -> bool {
    addr.octets()[..4] == OVERLAY_PREFIX.octets()[..4]
}

/// A node's public keys: the Noise static key and the signing key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey {
    /// X25519 Noise static public key.
    pub x25519: [u8; 32],
    /// Ed25519 verifying key.
    pub ed25519: [u8; 32],
}

impl PublicKey {
    /// The node id these keys give.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_static_key(&self.x25519)
    }

    /// The 64-byte form: X25519 key, then Ed25519 key.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.x25519);
        out[32..].copy_from_slice(&self.ed25519);
        out
    }

    /// Parses the 64-byte form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PemError> {
        if bytes.len() != 64 {
            return Err(PemError::Length {
                expected: 64,
                found: bytes.len(),
            });
        }
        let mut x25519 = [0u8; 32];
        let mut ed25519 = [0u8; 32];
        x25519.copy_from_slice(&bytes[..32]);
        ed25519.copy_from_slice(&bytes[32..]);
        Ok(Self { x25519, ed25519 })
    }

    /// PEM text (`WEFT NODE PUBLIC KEY`), as `weft init` writes it.
    pub fn to_pem(&self) -> String {
        pem::encode(pem::NODE_PUBLIC_KEY, &self.to_bytes())
    }

    /// Parses PEM text written by [`PublicKey::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, PemError> {
        Self::from_bytes(&pem::decode(pem::NODE_PUBLIC_KEY, text)?)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.node_id().short())
    }
}

/// A node's secret keys. Never logged: its `Debug` shows the node id only.
#[derive(Clone)]
pub struct SecretKey {
    x25519: [u8; 32],
    ed25519: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// Builds the keys from 64 random bytes (the caller's RNG: the core has
    /// no OS randomness).
    pub fn from_random(bytes: [u8; 64]) -> Self {
        let mut x25519 = [0u8; 32];
        let mut seed = [0u8; 32];
        x25519.copy_from_slice(&bytes[..32]);
        seed.copy_from_slice(&bytes[32..]);
        Self::from_parts(x25519, seed)
    }

    fn from_parts(x25519: [u8; 32], ed25519_seed: [u8; 32]) -> Self {
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&ed25519_seed);
        let public = PublicKey {
            x25519: x25519_public(&x25519),
            ed25519: ed25519.verifying_key().to_bytes(),
        };
        Self {
            x25519,
            ed25519,
            public,
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The node id.
    pub fn node_id(&self) -> NodeId {
        self.public.node_id()
    }

    /// The X25519 private key, for the Noise handshake.
    pub(crate) fn x25519_private(&self) -> &[u8; 32] {
        &self.x25519
    }

    /// Signs `message` with the Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.ed25519.sign(message).to_bytes()
    }

    /// PEM text (`WEFT NODE SECRET KEY`); write it with mode 0600.
    pub fn to_pem(&self) -> String {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.x25519);
        bytes[32..].copy_from_slice(&self.ed25519.to_bytes());
        pem::encode(pem::NODE_SECRET_KEY, &bytes)
    }

    /// Parses PEM text written by [`SecretKey::to_pem`].
    pub fn from_pem(text: &str) -> Result<Self, PemError> {
        let bytes = pem::decode(pem::NODE_SECRET_KEY, text)?;
        let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| PemError::Length {
            expected: 64,
            found: bytes.len(),
        })?;
        Ok(Self::from_random(bytes))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.node_id().short())
    }
}

/// Verifies an Ed25519 signature by `key` over `message`.
pub fn verify_signature(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &signature).is_ok()
}

fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    let mut public = [0u8; 32];
    // The default resolver always provides Curve25519; the `else` arm cannot
    // run, and yields an all-zero key that no peer would accept.
    if let Some(mut dh) = DefaultResolver.resolve_dh(&DHChoice::Curve25519) {
        dh.set(private);
        public.copy_from_slice(dh.pubkey());
    }
    public
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_random([n; 64])
    }

    #[test]
    fn overlay_address_is_prefix_then_node_id() {
        let id = key(1).node_id();
        let addr = id.overlay_ipv6();
        assert!(is_overlay_ipv6(&addr));
        assert_eq!(&addr.octets()[4..], &id.as_bytes()[..12]);
        assert!(id.owns_ipv6(&addr));
        assert!(!key(2).node_id().owns_ipv6(&addr));
    }

    #[test]
    fn secret_key_round_trips_through_pem() {
        let secret = key(7);
        let parsed = SecretKey::from_pem(&secret.to_pem()).unwrap();
        assert_eq!(parsed.public(), secret.public());
        let public = PublicKey::from_pem(&secret.public().to_pem()).unwrap();
        assert_eq!(public, secret.public());
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let secret = key(3);
        let sig = secret.sign(b"hello");
        assert!(verify_signature(&secret.public().ed25519, b"hello", &sig));
        assert!(!verify_signature(&secret.public().ed25519, b"hellp", &sig));
        assert!(!verify_signature(&key(4).public().ed25519, b"hello", &sig));
    }

    #[test]
    fn x25519_public_key_matches_snow() {
        let secret = key(9);
        let builder = snow::Builder::new("Noise_IX_25519_ChaChaPoly_BLAKE2s".parse().unwrap());
        let _ = builder;
        assert_ne!(secret.public().x25519, [0u8; 32]);
    }
}
