//! The node's seeded random source, and its adapter for snow.
//!
//! All randomness (session indexes, Noise ephemeral keys, timer jitter) comes
//! from one ChaCha20 stream seeded by the caller, so a simulation replays
//! bit for bit from its seed.

use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// The node's random source. Cloning shares the stream.
#[derive(Clone)]
pub(crate) struct SharedRng(Arc<Mutex<ChaCha20Rng>>);

impl SharedRng {
    pub(crate) fn from_seed(seed: [u8; 32]) -> Self {
        Self(Arc::new(Mutex::new(ChaCha20Rng::from_seed(seed))))
    }

    pub(crate) fn fill(&self, dest: &mut [u8]) {
        // A poisoned lock only means another thread panicked mid-draw; the
        // stream itself is still valid.
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rng.fill_bytes(dest);
    }

    pub(crate) fn next_u32(&self) -> u32 {
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rng.next_u32()
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rng.next_u64()
    }

    /// A value in `0..bound` (`bound` > 0); the small modulo bias is harmless
    /// for jitter.
    pub(crate) fn below(&self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

impl Random for SharedRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.fill(dest);
        Ok(())
    }
}

/// A snow resolver that takes randomness from our seed, ring's primitives
/// where ring has them and snow's pure-Rust ones (X25519, BLAKE2s) otherwise.
pub(crate) struct SeededResolver {
    rng: SharedRng,
}

impl SeededResolver {
    pub(crate) fn new(rng: SharedRng) -> Self {
        Self { rng }
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(self.rng.clone()))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        RingResolver
            .resolve_dh(choice)
            .or_else(|| DefaultResolver.resolve_dh(choice))
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver
            .resolve_hash(choice)
            .or_else(|| DefaultResolver.resolve_hash(choice))
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver
            .resolve_cipher(choice)
            .or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}
