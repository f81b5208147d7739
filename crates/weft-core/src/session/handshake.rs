//! The Noise IX handshake, one round trip, certificates in the payloads.
//!
//! Initiator: `AwaitingResponse::start` writes message 1 (`e, s` and its
//! payload); `read_response` reads message 2 and yields the session.
//! Responder: `InitReceived::read` reads message 1 and checks the
//! initiator's certificate; the node then decides (tie-break, replay of the
//! timestamp) and calls `respond`, which writes message 2 and yields the
//! session. A certificate must be issued by the network's CA, be valid now,
//! and certify exactly the Noise static key that the handshake proved.

use std::time::Instant;

use snow::HandshakeState;

use super::Transport;
use crate::identity::{CaCertificate, CertError, Certificate, SecretKey};
use crate::rng::{SeededResolver, SharedRng};
use crate::wire::{self, DecodeError, HandshakePayload, SessionIndex};

/// The Noise protocol name.
pub(crate) const NOISE_PARAMS: &str = "Noise_IX_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE: &[u8] = b"weft wire v1";
const MAX_NOISE_MESSAGE: usize = 65_535;

/// Why a handshake message was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// Noise could not read it (garbage, wrong keys, wrong state).
    Noise,
    /// The payload inside does not decode.
    Payload(DecodeError),
    /// The certificate is unacceptable.
    Certificate(CertError),
}

pub(crate) struct AwaitingResponse {
    state: HandshakeState,
    pub(crate) local: SessionIndex,
    pub(crate) started: Instant,
}

impl AwaitingResponse {
    /// Starts a handshake; appends the whole init packet to `out`.
    pub(crate) fn start(
        now: Instant,
        rng: &SharedRng,
        secret: &SecretKey,
        payload: &HandshakePayload<'_>,
        local: SessionIndex,
        out: &mut Vec<u8>,
    ) -> Result<Self, HandshakeError> {
        let mut state = builder(rng, secret)?
            .build_initiator()
            .map_err(|_| HandshakeError::Noise)?;
        wire::emit_handshake_init(out, local);
        write_noise(&mut state, payload, out)?;
        Ok(Self {
            state,
            local,
            started: now,
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
    pub(crate) certificate: Certificate,
    pub(crate) timestamp: u64,
    remote: SessionIndex,
}

impl InitReceived {
    /// Reads message 1 and checks the initiator's certificate.
    pub(crate) fn read(
        rng: &SharedRng,
        secret: &SecretKey,
        noise: &[u8],
        remote: SessionIndex,
        ca: &CaCertificate,
        unix_now: u64,
    ) -> Result<Self, HandshakeError> {
        let mut state = builder(rng, secret)?
            .build_responder()
            .map_err(|_| HandshakeError::Noise)?;
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let len = state
            .read_message(noise, &mut payload)
            .map_err(|_| HandshakeError::Noise)?;
        let (certificate, timestamp) = verify_peer(&state, &payload[..len], ca, unix_now)?;
        Ok(Self {
            state,
            certificate,
            timestamp,
            remote,
        })
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
        let mut init = Vec::new();
        let pa = HandshakePayload {
            timestamp: 1,
            certificate: a.cert.to_bytes(),
        };
        let pending =
            AwaitingResponse::start(now, &rng, &a.secret, &pa, SessionIndex(10), &mut init)?;
        let wire::Packet::HandshakeInit { sender, noise } = wire::Packet::decode(&init).unwrap()
        else {
            panic!("not an init");
        };
        let received = InitReceived::read(&rng, &b.secret, noise, sender, ca, 100)?;
        assert_eq!(received.certificate.name(), a.cert.name());
        let mut resp = Vec::new();
        let pb = HandshakePayload {
            timestamp: 1,
            certificate: b.cert.to_bytes(),
        };
        let tb = received.respond(now, &pb, SessionIndex(20), &mut resp)?;
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
