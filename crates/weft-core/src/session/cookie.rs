//! What makes a handshake init cheap to refuse and impossible to forge: the
//! initiator's signature, mac1, mac2 and the cookie reply (PROTOCOL §3.2–3.4).
//!
//! Noise IX's first message proves nothing about its sender: its static key
//! travels in clear and no Diffie-Hellman with it has happened yet. weft
//! therefore has the initiator sign the init with the Ed25519 key of its
//! certificate, over the whole init (its Noise message, so the ephemeral
//! key and the timestamp) and the responder's node id when it knows it. A
//! responder acts on an init (records its timestamp, makes a pending
//! session) only once that signature verifies; it moves the peer's endpoint
//! only when the first transport packet of the new session arrives.
//!
//! Before any public-key work the responder checks, in this order:
//! 1. **mac1**, a keyed BLAKE3 MAC whose key derives from the network CA's
//!    fingerprint: a datagram from someone who does not know the network is
//!    dropped for the price of one hash.
//! 2. **mac2**, keyed by a cookie: BLAKE3 of the initiator's address under
//!    a secret of the responder that changes every two minutes. Under load,
//!    or when the response would be larger than the init, an init without a
//!    valid mac2 gets only a [`COOKIE_REPLY_LEN`]-byte cookie reply (sealed
//!    with ChaCha20-Poly1305 under a network key, the init's mac1 as
//!    associated data, so only who saw the init can read or forge it). A
//!    spoofed source therefore never gets more bytes than it sent, and never
//!    costs the responder a public-key operation.
//! 3. the per-source rate limit and the node-wide budget (`guard`).
//!
//! All MACs are compared in constant time.

use std::net::{IpAddr, SocketAddr};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::identity::{CaCertificate, NodeId, SecretKey, verify_signature};
use crate::rng::SharedRng;
use crate::wire::{
    COOKIE_LEN, COOKIE_NONCE_LEN, INIT_FLAG_BOUND, INIT_SIGNATURE_LEN, INIT_TRAILER_LEN, MAC_LEN,
    TAG_LEN,
};

const MAC1_CONTEXT: &str = "weft 2026-12 handshake mac1";
const COOKIE_REPLY_CONTEXT: &str = "weft 2026-12 handshake cookie reply";
const SIGNATURE_CONTEXT: &[u8] = b"weft 2026-12 handshake init signature\0";

/// The network-wide keys of the handshake MACs, derived from the CA: public
/// knowledge for anyone holding the CA certificate (mac1 keeps out only
/// those who do not; its worth is that it costs one hash to check). Public
/// so that tests and tools can write inits as an attacker would.
#[derive(Clone)]
pub struct HandshakeKeys {
    mac1: [u8; 32],
    cookie_reply: [u8; 32],
}

impl HandshakeKeys {
    /// The keys of the network whose CA is `ca`.
    pub fn new(ca: &CaCertificate) -> Self {
        let fingerprint = ca.fingerprint();
        Self {
            mac1: blake3::derive_key(MAC1_CONTEXT, &fingerprint),
            cookie_reply: blake3::derive_key(COOKIE_REPLY_CONTEXT, &fingerprint),
        }
    }

    /// An init as anyone who holds only public information can write it:
    /// `certificate`'s static key and certificate, a made-up ephemeral key,
    /// `timestamp`, `padding` zero bytes, a valid mac1, and a signature by
    /// `signer`, which verifies only if `signer` holds the certificate's
    /// keys. For tests and tools that attack a node.
    pub fn forge_init(
        &self,
        certificate: &crate::identity::Certificate,
        signer: &SecretKey,
        timestamp: u64,
        sender: crate::wire::SessionIndex,
        padding: usize,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        crate::wire::emit_handshake_init(&mut out, sender);
        out.extend_from_slice(&[0x5a; 32]);
        out.extend_from_slice(&certificate.public_key().x25519);
        crate::wire::HandshakePayload {
            timestamp,
            certificate: certificate.to_bytes(),
            padding,
        }
        .emit(&mut out);
        out.push(INIT_FLAG_BOUND);
        out.extend_from_slice(&signer.sign(&out));
        out.extend_from_slice(&[0; 2 * MAC_LEN]);
        self.write_mac1(&mut out);
        out
    }

    /// Overwrites the mac1 of the init `datagram` with the valid one (and
    /// zeroes its mac2), as anyone who knows the network can.
    pub fn write_mac1(&self, datagram: &mut [u8]) {
        let Some(start) = datagram.len().checked_sub(2 * MAC_LEN) else {
            return;
        };
        let mac = mac_of(&self.mac1, &datagram[..start]);
        datagram[start..start + MAC_LEN].copy_from_slice(&mac);
        datagram[start + MAC_LEN..].fill(0);
    }

    /// Whether the init `datagram` carries a valid mac1.
    pub fn mac1_is_valid(&self, datagram: &[u8]) -> bool {
        let Some((covered, mac)) = mac_regions(datagram, 2) else {
            return false;
        };
        constant_time_eq(&mac_of(&self.mac1, covered), mac)
    }

    /// Seals `cookie` for the initiator whose init carried `mac1`.
    pub(crate) fn seal_cookie(
        &self,
        rng: &SharedRng,
        mac1: &[u8; MAC_LEN],
        cookie: &[u8; COOKIE_LEN],
    ) -> ([u8; COOKIE_NONCE_LEN], [u8; COOKIE_LEN + TAG_LEN]) {
        let mut nonce = [0u8; COOKIE_NONCE_LEN];
        rng.fill(&mut nonce);
        let mut sealed = [0u8; COOKIE_LEN + TAG_LEN];
        sealed[..COOKIE_LEN].copy_from_slice(cookie);
        let key = self.cookie_key();
        let (body, tag_out) = sealed.split_at_mut(COOKIE_LEN);
        // Sealing a 32-byte buffer with a valid key cannot fail; a failure
        // would leave a tag of zeros, which the initiator refuses.
        if let Ok(tag) = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&mac1[..]),
            body,
        ) {
            tag_out.copy_from_slice(tag.as_ref());
        }
        (nonce, sealed)
    }

    /// Opens a cookie reply to the init that carried `mac1`.
    pub(crate) fn open_cookie(
        &self,
        mac1: &[u8; MAC_LEN],
        nonce: &[u8; COOKIE_NONCE_LEN],
        sealed: &[u8; COOKIE_LEN + TAG_LEN],
    ) -> Option<[u8; COOKIE_LEN]> {
        let mut buf = *sealed;
        let key = self.cookie_key();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(&mac1[..]),
                &mut buf,
            )
            .ok()?;
        plain.try_into().ok()
    }

    fn cookie_key(&self) -> LessSafeKey {
        // A 32-byte key is always a valid ChaCha20-Poly1305 key.
        #[allow(clippy::expect_used)]
        let key = UnboundKey::new(&CHACHA20_POLY1305, &self.cookie_reply)
            .expect("32-byte ChaCha20-Poly1305 key");
        LessSafeKey::new(key)
    }
}

/// Completes an init whose header and Noise message are in `out`: appends
/// the flags, the initiator's signature, mac1 and mac2 (zeros without a
/// cookie). Returns mac1, which a cookie reply to this init is bound to.
pub(crate) fn seal_init(
    out: &mut Vec<u8>,
    secret: &SecretKey,
    responder: Option<NodeId>,
    keys: &HandshakeKeys,
    cookie: Option<&[u8; COOKIE_LEN]>,
) -> [u8; MAC_LEN] {
    let flags = if responder.is_some() {
        INIT_FLAG_BOUND
    } else {
        0
    };
    out.push(flags);
    let message = signed_message(responder.as_ref(), out);
    out.extend_from_slice(&secret.sign(&message));
    let mac1 = mac_of(&keys.mac1, out);
    out.extend_from_slice(&mac1);
    let mac2 = cookie.map_or([0; MAC_LEN], |c| mac_of(c, out));
    out.extend_from_slice(&mac2);
    mac1
}

/// Whether the init `datagram` was signed by the holder of `ed25519`, for
/// this node (`own_id`) or for whoever answers (flags without
/// [`INIT_FLAG_BOUND`]).
pub(crate) fn init_signature_is_valid(
    datagram: &[u8],
    flags: u8,
    own_id: &NodeId,
    ed25519: &[u8; 32],
    signature: &[u8; INIT_SIGNATURE_LEN],
) -> bool {
    let Some(end) = datagram.len().checked_sub(INIT_TRAILER_LEN - 1) else {
        return false;
    };
    let responder = (flags & INIT_FLAG_BOUND != 0).then_some(own_id);
    let message = signed_message(responder, &datagram[..end]);
    verify_signature(ed25519, &message, signature)
}

/// The cookie of `from` under `secret`.
pub(crate) fn cookie_for(secret: &[u8; 32], from: SocketAddr) -> [u8; COOKIE_LEN] {
    let mut input = [0u8; 18];
    let ip = match from.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    input[..16].copy_from_slice(&ip.octets());
    input[16..].copy_from_slice(&from.port().to_be_bytes());
    *blake3::keyed_hash(secret, &input).as_bytes()
}

/// Whether the init `datagram` carries a valid mac2 for `cookie`. An
/// all-zero mac2 (no cookie) is never valid.
pub(crate) fn mac2_is_valid(cookie: &[u8; COOKIE_LEN], datagram: &[u8]) -> bool {
    let Some((covered, mac)) = mac_regions(datagram, 1) else {
        return false;
    };
    mac != [0; MAC_LEN] && constant_time_eq(&mac_of(cookie, covered), mac)
}

/// The bytes a MAC covers and the MAC itself: the last `from_end`-th MAC
/// of the datagram (1 = mac2, 2 = mac1) and everything before it.
fn mac_regions(datagram: &[u8], from_end: usize) -> Option<(&[u8], &[u8])> {
    let start = datagram.len().checked_sub(from_end * MAC_LEN)?;
    Some((&datagram[..start], &datagram[start..start + MAC_LEN]))
}

fn mac_of(key: &[u8; 32], covered: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&blake3::keyed_hash(key, covered).as_bytes()[..MAC_LEN]);
    mac
}

fn signed_message(responder: Option<&NodeId>, init: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32 + init.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(responder.map_or(&[0u8; 32], |id| id.as_bytes()));
    message.extend_from_slice(init);
    message
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fixtures shared by the session module's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::identity::CaSecret;
    use crate::wire::{self, SessionIndex};

    /// The MAC keys of a fixed test network.
    pub(crate) fn keys() -> HandshakeKeys {
        HandshakeKeys::new(
            CaSecret::new([1; 32], "net", 0, 1000)
                .unwrap()
                .certificate(),
        )
    }

    /// An init-shaped datagram (100 bytes stand for the Noise message)
    /// sealed by `secret`, for `responder`, with `cookie`'s mac2.
    pub(crate) fn init(
        secret: &SecretKey,
        responder: Option<NodeId>,
        cookie: Option<&[u8; 32]>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        wire::emit_handshake_init(&mut out, SessionIndex(5));
        out.extend_from_slice(&[0xab; 100]);
        seal_init(&mut out, secret, responder, &keys(), cookie);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{init, keys};
    use super::*;
    use crate::identity::CaSecret;
    use crate::wire::Packet;

    #[test]
    fn a_sealed_init_verifies_and_any_flipped_bit_breaks_mac1() {
        let secret = SecretKey::from_random([3; 64]);
        let me = NodeId::from_bytes([9; 32]);
        let datagram = init(&secret, Some(me), None);
        let Ok(Packet::HandshakeInit {
            flags, signature, ..
        }) = Packet::decode(&datagram)
        else {
            panic!("not an init");
        };
        let k = keys();
        assert!(k.mac1_is_valid(&datagram));
        let ed = secret.public().ed25519;
        assert!(init_signature_is_valid(
            &datagram, flags, &me, &ed, signature
        ));
        // Bound to `me`: another responder refuses it.
        let other = NodeId::from_bytes([8; 32]);
        assert!(!init_signature_is_valid(
            &datagram, flags, &other, &ed, signature
        ));
        for at in 0..datagram.len() - 2 * MAC_LEN {
            let mut bad = datagram.clone();
            bad[at] ^= 1;
            assert!(!k.mac1_is_valid(&bad), "flip at {at}");
        }
    }

    #[test]
    fn an_unbound_init_verifies_at_any_responder() {
        let secret = SecretKey::from_random([3; 64]);
        let datagram = init(&secret, None, None);
        let Ok(Packet::HandshakeInit {
            flags, signature, ..
        }) = Packet::decode(&datagram)
        else {
            panic!("not an init");
        };
        let ed = secret.public().ed25519;
        let anyone = NodeId::from_bytes([8; 32]);
        assert!(init_signature_is_valid(
            &datagram, flags, &anyone, &ed, signature
        ));
        // Another key's holder did not sign it.
        let other = SecretKey::from_random([4; 64]).public().ed25519;
        assert!(!init_signature_is_valid(
            &datagram, flags, &anyone, &other, signature
        ));
    }

    #[test]
    fn mac2_holds_only_for_the_cookie_of_the_address() {
        let secret = SecretKey::from_random([3; 64]);
        let cookie_secret = [7u8; 32];
        let here: SocketAddr = "198.18.0.1:4800".parse().unwrap();
        let there: SocketAddr = "198.18.0.2:4800".parse().unwrap();
        let cookie = cookie_for(&cookie_secret, here);
        let datagram = init(&secret, None, Some(&cookie));
        assert!(mac2_is_valid(&cookie_for(&cookie_secret, here), &datagram));
        assert!(!mac2_is_valid(
            &cookie_for(&cookie_secret, there),
            &datagram
        ));
        assert!(!mac2_is_valid(&cookie_for(&[8; 32], here), &datagram));
        // No cookie: zeros, never valid.
        let plain = init(&secret, None, None);
        assert!(!mac2_is_valid(&cookie, &plain));
        assert!(keys().mac1_is_valid(&plain));
    }

    #[test]
    fn a_cookie_reply_opens_only_with_the_mac1_it_answers() {
        let k = keys();
        let rng = SharedRng::from_seed([2; 32]);
        let mac1 = [4u8; MAC_LEN];
        let cookie = [6u8; COOKIE_LEN];
        let (nonce, sealed) = k.seal_cookie(&rng, &mac1, &cookie);
        assert_eq!(k.open_cookie(&mac1, &nonce, &sealed), Some(cookie));
        assert_eq!(k.open_cookie(&[5; MAC_LEN], &nonce, &sealed), None);
        let other = HandshakeKeys::new(
            CaSecret::new([2; 32], "other", 0, 1000)
                .unwrap()
                .certificate(),
        );
        assert_eq!(other.open_cookie(&mac1, &nonce, &sealed), None);
    }

    #[test]
    fn short_datagrams_have_no_valid_macs() {
        let k = keys();
        for len in 0..40 {
            let bytes = vec![0u8; len];
            assert!(!k.mac1_is_valid(&bytes));
            assert!(!mac2_is_valid(&[0; 32], &bytes));
        }
    }
}
