//! The Noise IX handshake, one round trip, certificates in the payloads,
//! the init signed by the initiator (PROTOCOL §3).
//!
//! Initiator: `AwaitingResponse::start` writes message 1 (`e, s` and its
//! payload) and seals it (`cookie::seal_init`: signature, mac1, mac2);
//! `read_response` reads message 2 and yields the session.
//! Responder, cheapest step first: the node's `guard` checks the MACs;
//! [`peek_init`] reads the static key and payload that IX message 1 carries
//! in clear, with no public-key work, so the node can refuse a replayed
//! timestamp for the price of a comparison; [`verify_init`] checks the
//! certificate and the init's signature (Ed25519); only then does
//! `InitReceived::read` hand the message to Noise, and `respond` (three
//! Diffie-Hellman operations) write message 2 and yield the session, which
//! the initiator's first transport packet confirms. A certificate must be
//! issued by the network's CA, be valid now, and certify exactly the Noise
//! static key of the handshake.

use std::time::Instant;

use snow::HandshakeState;

use super::Transport;
use super::cookie::{HandshakeKeys, init_signature_is_valid, seal_init};
use crate::identity::{CaCertificate, CertError, Certificate, NodeId, SecretKey};
use crate::rng::{SeededResolver, SharedRng};
use crate::wire::{
    self, COOKIE_LEN, DecodeError, HandshakePayload, INIT_SIGNATURE_LEN, INIT_TRAILER_LEN, MAC_LEN,
    SessionIndex,
};

/// The Noise protocol name.
pub(crate) const NOISE_PARAMS: &str = "Noise_IX_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"weft wire v2";
const MAX_NOISE_MESSAGE: usize = 65_535;
const KEY_LEN: usize = 32;
/// Header and Noise overhead of an init around its payload: the outer
/// header (8), `e` and `s` in clear (64) and the trailer.
pub(crate) const INIT_OVERHEAD: usize = 8 + 2 * KEY_LEN + INIT_TRAILER_LEN;
/// The same for a response: header (12), `e` (32), encrypted `s` (48) and
/// the payload's tag (16).
pub(crate) const RESPONSE_OVERHEAD: usize = 12 + KEY_LEN + (KEY_LEN + 16) + 16;

/// Why a handshake message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// Noise could not read it (garbage, wrong keys, wrong state).
    Noise,
    /// The payload inside does not decode.
    Payload(DecodeError),
    /// The certificate is unacceptable.
    Certificate(CertError),
    /// The init's signature is not the certificate holder's.
    Signature,
}

/// What IX message 1 says in clear, read without public-key work.
pub(crate) struct InitView<'a> {
    /// The initiator's Noise static key.
    pub(crate) static_key: [u8; KEY_LEN],
    /// Its payload (timestamp, certificate).
    pub(crate) payload: HandshakePayload<'a>,
}

/// Reads IX message 1 (`e, s`, payload: all in clear, as no key exists yet
/// when they are written) without touching Noise. Total.
pub(crate) fn peek_init(noise: &[u8]) -> Result<InitView<'_>, HandshakeError> {
    let (Some(static_key), Some(payload)) =
        (noise.get(KEY_LEN..2 * KEY_LEN), noise.get(2 * KEY_LEN..))
    else {
        return Err(HandshakeError::Noise);
    };
    let static_key: [u8; KEY_LEN] = static_key.try_into().map_err(|_| HandshakeError::Noise)?;
    let payload = HandshakePayload::decode(payload).map_err(HandshakeError::Payload)?;
    Ok(InitView {
        static_key,
        payload,
    })
}

/// The init as the node found it, for [`verify_init`].
pub(crate) struct SignedInit<'a> {
    /// The whole datagram.
    pub(crate) datagram: &'a [u8],
    /// Its flags.
    pub(crate) flags: u8,
    /// Its signature.
    pub(crate) signature: &'a [u8; INIT_SIGNATURE_LEN],
}

/// Checks the initiator's certificate and the init's signature: after this
/// the init is known to come from the certificate's holder (though it may
/// be a replay: the node compares the timestamp). `known` is a certificate
/// of the same node verified before: the same bytes skip the CA signature.
pub(crate) fn verify_init(
    view: &InitView<'_>,
    init: &SignedInit<'_>,
    own_id: &NodeId,
    ca: &CaCertificate,
    unix_now: u64,
    known: Option<&Certificate>,
) -> Result<Certificate, HandshakeError> {
    let certificate =
        Certificate::from_bytes(view.payload.certificate).map_err(HandshakeError::Certificate)?;
    if view.static_key != certificate.public_key().x25519 {
        return Err(HandshakeError::Certificate(CertError::KeyMismatch));
    }
    let seen = known.is_some_and(|k| k.to_bytes() == certificate.to_bytes());
    if seen {
        certificate.verify_validity(ca, unix_now)
    } else {
        certificate.verify(ca, unix_now)
    }
    .map_err(HandshakeError::Certificate)?;
    let ed25519 = certificate.public_key().ed25519;
    if !init_signature_is_valid(init.datagram, init.flags, own_id, &ed25519, init.signature) {
        return Err(HandshakeError::Signature);
    }
    Ok(certificate)
}

pub(crate) struct AwaitingResponse {
    state: HandshakeState,
    pub(crate) local: SessionIndex,
    pub(crate) started: Instant,
    /// The init's mac1, which a cookie reply to it is bound to.
    pub(crate) mac1: [u8; MAC_LEN],
    /// Whether the init carried a mac2 (a cookie of the responder's).
    pub(crate) had_cookie: bool,
}

/// Who an init is for and what proves it.
pub(crate) struct InitSeal<'a> {
    /// The responder's node id, when known: the signature binds it.
    pub(crate) responder: Option<NodeId>,
    /// The network's MAC keys.
    pub(crate) keys: &'a HandshakeKeys,
    /// A cookie from the responder, for mac2.
    pub(crate) cookie: Option<&'a [u8; COOKIE_LEN]>,
}

impl AwaitingResponse {
    /// Starts a handshake; appends the whole init packet to `out`.
    pub(crate) fn start(
        now: Instant,
        rng: &SharedRng,
        secret: &SecretKey,
        payload: &HandshakePayload<'_>,
        local: SessionIndex,
        seal: &InitSeal<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Self, HandshakeError> {
        let mut state = builder(rng, secret)?
            .build_initiator()
            .map_err(|_| HandshakeError::Noise)?;
        wire::emit_handshake_init(out, local);
        write_noise(&mut state, payload, out)?;
        let mac1 = seal_init(out, secret, seal.responder, seal.keys, seal.cookie);
        Ok(Self {
            state,
            local,
            started: now,
            mac1,
            had_cookie: seal.cookie.is_some(),
        })
    }

    /// Reads the response; on success the peer's certificate, its payload
    /// timestamp and the new session.
    pub(crate) fn read_response(
        mut self,
        now: Instant,
        noise: &[u8],
        remote: SessionIndex,
        ca: &CaCertificate,
        unix_now: u64,
    ) -> Result<(Certificate, Transport), HandshakeError> {
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let len = self
            .state
            .read_message(noise, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
        let (certificate, _) = verify_peer(&self.state, &payload[..len], ca, unix_now)?;
        let keys = self.state.dangerously_get_raw_split();
        Ok((
            certificate,
            Transport::new(now, self.local, remote, keys, true),
        ))
    }
}

pub(crate) struct InitReceived {
    state: HandshakeState,
    remote: SessionIndex,
}

impl InitReceived {
    /// Hands message 1, already verified (`verify_init`), to Noise, whose
    /// view of the initiator's static key must be `certificate`'s.
    pub(crate) fn read(
        rng: &SharedRng,
        secret: &SecretKey,
        noise: &[u8],
        remote: SessionIndex,
        certificate: &Certificate,
    ) -> Result<Self, HandshakeError> {
        let mut state = builder(rng, secret)?
            .build_responder()
            .map_err(|_| HandshakeError::Noise)?;
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        state
            .read_message(noise, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
        if state.get_remote_static() != Some(&certificate.public_key().x25519[..]) {
            return Err(HandshakeError::Certificate(CertError::KeyMismatch));
        }
        Ok(Self { state, remote })
    }

    /// Writes the response packet to `out` and yields the session, which
    /// sends nothing until the initiator's first packet confirms it.
    pub(crate) fn respond(
        mut self,
        now: Instant,
        payload: &HandshakePayload<'_>,
        local: SessionIndex,
        out: &mut Vec<u8>,
    ) -> Result<Transport, HandshakeError> {
        wire::emit_handshake_response(out, local, self.remote);
        write_noise(&mut self.state, payload, out)?;
        let keys = self.state.dangerously_get_raw_split();
        Ok(Transport::new(now, local, self.remote, keys, false))
    }
}

fn builder<'a>(
    rng: &SharedRng,
    secret: &'a SecretKey,
) -> Result<snow::Builder<'a>, HandshakeError> {
    let params = NOISE_PARAMS.parse().map_err(|_| HandshakeError::Noise)?;
    snow::Builder::with_resolver(params, Box::new(SeededResolver::new(rng.clone())))
        .local_private_key(secret.x25519_private())
        .and_then(|b| b.prologue(PROLOGUE))
        .map_err(|_| HandshakeError::Noise)
}

fn write_noise(
    state: &mut HandshakeState,
    payload: &HandshakePayload<'_>,
    out: &mut Vec<u8>,
) -> Result<(), HandshakeError> {
    let mut plain = Vec::new();
    payload.emit(&mut plain);
    let mut message = vec![0u8; MAX_NOISE_MESSAGE];
    let len = state
        .write_message(&plain, &mut message)
        .map_err(|_| HandshakeError::Noise)?;
    out.extend_from_slice(&message[..len]);
    Ok(())
}

fn verify_peer(
    state: &HandshakeState,
    payload: &[u8],
    ca: &CaCertificate,
    unix_now: u64,
) -> Result<(Certificate, u64), HandshakeError> {
    let payload = HandshakePayload::decode(payload).map_err(HandshakeError::Payload)?;
    let certificate =
        Certificate::from_bytes(payload.certificate).map_err(HandshakeError::Certificate)?;
    certificate
        .verify(ca, unix_now)
        .map_err(HandshakeError::Certificate)?;
    let remote_static = state.get_remote_static().ok_or(HandshakeError::Noise)?;
    if remote_static != certificate.public_key().x25519 {
        return Err(HandshakeError::Certificate(CertError::KeyMismatch));
    }
    Ok((certificate, payload.timestamp))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate};

    struct Party {
        secret: SecretKey,
        cert: Certificate,
    }

    fn party(ca: &CaSecret, seed: u8, name: &str, not_after: u64) -> Party {
        let secret = SecretKey::from_random([seed; 64]);
        let cert = ca
            .sign(&CertificateTemplate {
                name: name.into(),
                public_key: secret.public(),
                ipv4: None,
                groups: vec![],
                not_before: 0,
                not_after,
            })
            .unwrap();
        Party { secret, cert }
    }

    fn run(
        a: &Party,
        b: &Party,
        ca: &CaCertificate,
    ) -> Result<(Transport, Transport), HandshakeError> {
        let rng = SharedRng::from_seed([9; 32]);
        let now = Instant::now();
        let keys = HandshakeKeys::new(ca);
        let mut init = Vec::new();
        let pa = HandshakePayload {
            timestamp: 1,
            certificate: a.cert.to_bytes(),
            padding: 0,
        };
        let seal = InitSeal {
            responder: Some(b.secret.node_id()),
            keys: &keys,
            cookie: None,
        };
        let pending = AwaitingResponse::start(
            now,
            &rng,
            &a.secret,
            &pa,
            SessionIndex(10),
            &seal,
            &mut init,
        )?;
        assert!(keys.mac1_is_valid(&init));
        let wire::Packet::HandshakeInit {
            sender,
            noise,
            flags,
            signature,
            ..
        } = wire::Packet::decode(&init).unwrap()
        else {
            panic!("not an init");
        };
        let view = peek_init(noise)?;
        assert_eq!(view.payload.timestamp, 1);
        let signed = SignedInit {
            datagram: &init,
            flags,
            signature,
        };
        let certificate = verify_init(&view, &signed, &b.secret.node_id(), ca, 100, None)?;
        assert_eq!(certificate.name(), a.cert.name());
        let received = InitReceived::read(&rng, &b.secret, noise, sender, &certificate)?;
        let mut resp = Vec::new();
        let pb = HandshakePayload {
            timestamp: 1,
            certificate: b.cert.to_bytes(),
            padding: 0,
        };
        let tb = received.respond(now, &pb, SessionIndex(20), &mut resp)?;
        assert_eq!(resp.len(), RESPONSE_OVERHEAD + pb.encoded_len());
        assert_eq!(init.len(), INIT_OVERHEAD + pa.encoded_len());
        let wire::Packet::HandshakeResponse {
            sender,
            receiver,
            noise,
        } = wire::Packet::decode(&resp).unwrap()
        else {
            panic!("not a response");
        };
        assert_eq!(receiver, SessionIndex(10));
        let (cert, ta) = pending.read_response(now, noise, sender, ca, 100)?;
        assert_eq!(cert.name(), b.cert.name());
        Ok((ta, tb))
    }

    #[test]
    fn handshake_yields_matching_transports() {
        let ca = CaSecret::new([1; 32], "net", 0, 1000).unwrap();
        let (a, b) = (party(&ca, 2, "a", 1000), party(&ca, 3, "b", 1000));
        let (mut ta, mut tb) = run(&a, &b, ca.certificate()).unwrap();
        let mut buf = vec![0u8; wire::DATA_HEADER_LEN];
        buf.extend_from_slice(b"ping");
        ta.seal(&mut buf);
        let range = tb.open(0, &mut buf).unwrap();
        assert_eq!(&buf[range], b"ping");
    }

    #[test]
    fn expired_certificate_is_rejected() {
        let ca = CaSecret::new([1; 32], "net", 0, 1000).unwrap();
        let (a, b) = (party(&ca, 2, "a", 50), party(&ca, 3, "b", 1000));
        assert!(matches!(
            run(&a, &b, ca.certificate()),
            Err(HandshakeError::Certificate(CertError::Expired { .. }))
        ));
    }

    #[test]
    fn certificate_of_other_ca_is_rejected() {
        let ca = CaSecret::new([1; 32], "net", 0, 1000).unwrap();
        let other = CaSecret::new([2; 32], "evil", 0, 1000).unwrap();
        let (a, b) = (party(&other, 2, "a", 1000), party(&ca, 3, "b", 1000));
        assert!(matches!(
            run(&a, &b, ca.certificate()),
            Err(HandshakeError::Certificate(CertError::WrongCa { .. }))
        ));
    }

    #[test]
    fn key_not_matching_certificate_is_rejected() {
        let ca = CaSecret::new([1; 32], "net", 0, 1000).unwrap();
        let mut a = party(&ca, 2, "a", 1000);
        // a presents its own certificate but holds another static key.
        a.secret = SecretKey::from_random([7; 64]);
        let b = party(&ca, 3, "b", 1000);
        assert!(matches!(
            run(&a, &b, ca.certificate()),
            Err(HandshakeError::Certificate(CertError::KeyMismatch))
        ));
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod forgery_tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate};

    /// An attacker holds a member's certificate (public) but not its keys:
    /// whatever init it writes with that certificate fails the signature.
    #[test]
    fn an_init_with_someone_elses_certificate_fails_its_signature() {
        let ca = CaSecret::new([1; 32], "net", 0, 1000).unwrap();
        let victim = SecretKey::from_random([2; 64]);
        let cert = ca
            .sign(&CertificateTemplate {
                name: "a".into(),
                public_key: victim.public(),
                ipv4: None,
                groups: vec![],
                not_before: 0,
                not_after: 1000,
            })
            .unwrap();
        let attacker = SecretKey::from_random([6; 64]);
        let responder = SecretKey::from_random([3; 64]).node_id();
        let keys = HandshakeKeys::new(ca.certificate());
        let rng = SharedRng::from_seed([9; 32]);
        let payload = HandshakePayload {
            timestamp: u64::MAX,
            certificate: cert.to_bytes(),
            padding: 0,
        };
        let mut init = Vec::new();
        let seal = InitSeal {
            responder: Some(responder),
            keys: &keys,
            cookie: None,
        };
        AwaitingResponse::start(
            Instant::now(),
            &rng,
            &attacker,
            &payload,
            SessionIndex(1),
            &seal,
            &mut init,
        )
        .unwrap();
        // Put the victim's static key where the attacker's went, as a
        // forger would, and re-seal what it can (mac1 is public).
        let wire::Packet::HandshakeInit {
            noise,
            flags,
            signature,
            ..
        } = wire::Packet::decode(&init).unwrap()
        else {
            panic!("not an init");
        };
        let mut noise = noise.to_vec();
        noise[32..64].copy_from_slice(&victim.public().x25519);
        let mut forged = Vec::new();
        wire::emit_handshake_init(&mut forged, SessionIndex(1));
        forged.extend_from_slice(&noise);
        forged.push(flags);
        forged.extend_from_slice(signature);
        forged.extend_from_slice(&[0; 2 * MAC_LEN]);
        let view = peek_init(&noise).unwrap();
        let wire::Packet::HandshakeInit {
            flags, signature, ..
        } = wire::Packet::decode(&forged).unwrap()
        else {
            panic!("not an init");
        };
        let signed = SignedInit {
            datagram: &forged,
            flags,
            signature,
        };
        assert_eq!(
            verify_init(&view, &signed, &responder, ca.certificate(), 100, None).err(),
            Some(HandshakeError::Signature)
        );
    }

    #[test]
    fn peek_never_panics_on_short_or_odd_messages() {
        for len in 0..80 {
            let _ = peek_init(&vec![0xff; len]);
        }
    }
}
