//! Sessions: the Noise handshake, transport keys, the replay window and the
//! limits that trigger a rekey.
//!
//! The handshake is Noise IX (`Noise_IX_25519_ChaChaPoly_BLAKE2s`, mutual
//! authentication in one round trip) with each side's certificate in its
//! handshake payload, as Nebula does. After it, the transport keys are taken
//! out of snow (raw split) and data packets are sealed with ring's
//! ChaCha20-Poly1305, the 16-byte outer header as associated data and the
//! explicit counter as nonce. A sliding window rejects replayed counters.
//!
//! Limits follow WireGuard's defaults: the initiator rekeys after
//! [`SessionConfig::rekey_after_time`] or [`SessionConfig::rekey_after_messages`];
//! a session is unusable after `reject_after_*`.
//!
//! IX's first message proves nothing, so the init is also signed by the
//! initiator and guarded by MACs and cookies (`cookie`, `guard`): nothing a
//! forger can send changes a session, a timestamp or an endpoint, and
//! nothing it can send costs the responder public-key work beyond a small
//! budget.

mod cookie;
mod guard;
mod handshake;
mod replay;
mod transport;

use std::time::Duration;

pub use cookie::HandshakeKeys;
pub(crate) use guard::{Admission, InitGuard, Refusal};
pub(crate) use handshake::{
    AwaitingResponse, HandshakeError, INIT_OVERHEAD, InitReceived, InitSeal, RESPONSE_OVERHEAD,
    SignedInit, peek_init, verify_init,
};
pub(crate) use replay::{ReplayWindow, WINDOW as REPLAY_WINDOW};
pub(crate) use transport::{OpenError, Transport};

/// Timing and volume limits of sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The initiator of a session starts a new handshake once it is this old.
    pub rekey_after_time: Duration,
    /// No packet is sent or accepted on a session this old.
    pub reject_after_time: Duration,
    /// A new handshake starts once a session has sent this many packets.
    pub rekey_after_messages: u64,
    /// No packet is sent on a session after this many.
    pub reject_after_messages: u64,
    /// First wait for a handshake response; doubles on each retry.
    pub handshake_timeout: Duration,
    /// Longest wait between handshake retries.
    pub handshake_backoff_max: Duration,
    /// Send a keepalive when nothing was sent for this long (NAT mappings,
    /// liveness).
    pub keepalive_interval: Duration,
    /// A peer from which nothing authenticated arrived for this long is
    /// considered down; its session is dropped and handshakes restart.
    pub dead_after: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            rekey_after_time: Duration::from_secs(120),
            reject_after_time: Duration::from_secs(180),
            rekey_after_messages: 1 << 60,
            reject_after_messages: u64::MAX - (1 << 13),
            handshake_timeout: Duration::from_millis(500),
            handshake_backoff_max: Duration::from_secs(8),
            keepalive_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
        }
    }
}
