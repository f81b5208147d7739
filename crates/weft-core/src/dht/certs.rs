//! A bounded cache of verified member certificates.
//!
//! Every DHT datagram and record carries its sender's certificate. Checking
//! the CA's signature on it costs as much as checking the datagram's own
//! signature, so a certificate seen before is taken from here: a known
//! sender costs one signature check, not two. Entries are keyed by a BLAKE3
//! hash of the certificate bytes keyed with the CA's fingerprint, so one
//! cache can serve engines of different networks without confusing them. A
//! hit still checks the validity period against the current time, so an
//! expired certificate is refused even while cached. The oldest entry goes
//! first when the cache is full.
//!
//! A [`CertificateCache`] may be shared by many engines in one process (the
//! simulator runs thousands): verification is a pure function of the bytes,
//! the CA and the time, so sharing changes no output, only the work done.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::identity::{CaCertificate, CertError, Certificate};

/// A cache of verified certificates that several [`super::Dht`] engines in
/// one process may share (see [`super::Dht::with_certificate_cache`]).
/// Cloning shares the cache.
#[derive(Clone, Debug)]
pub struct CertificateCache(Arc<Mutex<CertCache>>);

impl CertificateCache {
    /// An empty cache holding at most `capacity` certificates.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Mutex::new(CertCache::new(capacity))))
    }

    /// Certificates held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CertCache> {
        // A poisoned lock only means another thread panicked while holding
        // it; every entry in the map was verified before it was inserted.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Verifies certificates against one CA, through a private or shared cache.
#[derive(Debug)]
pub(crate) struct Verifier {
    ca: CaCertificate,
    fingerprint: [u8; 32],
    store: Store,
}

#[derive(Debug)]
enum Store {
    Own(CertCache),
    Shared(CertificateCache),
}

impl Verifier {
    pub(crate) fn new(ca: CaCertificate, capacity: usize) -> Self {
        Self {
            fingerprint: ca.fingerprint(),
            ca,
            store: Store::Own(CertCache::new(capacity)),
        }
    }

    pub(crate) fn share(&mut self, cache: CertificateCache) {
        self.store = Store::Shared(cache);
    }

    /// The certificate in `bytes`, if the CA issued it and it is valid at
    /// `unix_now`.
    pub(crate) fn verify(&mut self, bytes: &[u8], unix_now: u64) -> Result<Arc<Member>, CertError> {
        let key = *blake3::keyed_hash(&self.fingerprint, bytes).as_bytes();
        match &mut self.store {
            Store::Own(cache) => cache.verify(key, bytes, &self.ca, unix_now),
            Store::Shared(shared) => shared.lock().verify(key, bytes, &self.ca, unix_now),
        }
    }

    /// Certificates in the cache.
    pub(crate) fn len(&self) -> usize {
        match &self.store {
            Store::Own(cache) => cache.len(),
            Store::Shared(shared) => shared.len(),
        }
    }
}

/// A verified certificate with its Ed25519 key already parsed (parsing
/// costs a point decompression, a tenth of a signature check).
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) certificate: Certificate,
    key: Option<ed25519_dalek::VerifyingKey>,
}

impl Member {
    fn new(certificate: Certificate) -> Self {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&certificate.public_key().ed25519).ok();
        Self { certificate, key }
    }

    /// Whether `signature` is this member's signature of `message`.
    ///
    /// The plain Ed25519 check (RFC 8032 without the cofactor; `S` must be
    /// canonical), not the strict one of [`crate::verify_signature`]: the
    /// strict check also refuses small-order `R` and keys, which costs a
    /// point decompression (a seventh of the check, and DHT datagrams are
    /// checked by the thousand). What it guards against cannot happen here:
    /// the key is certified by the CA, so a weak key could only ever speak
    /// for its own holder, and with the cofactorless equation and canonical
    /// `S` each message has one valid signature under a key, so the replay
    /// filter, keyed by signature, cannot be dodged by re-encoding one.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        use ed25519_dalek::Verifier;
        let Some(key) = &self.key else {
            return false;
        };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }
}

/// Verified certificates by keyed hash.
#[derive(Debug)]
pub(crate) struct CertCache {
    map: BTreeMap<[u8; 32], Arc<Member>>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl CertCache {
    fn new(capacity: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn verify(
        &mut self,
        key: [u8; 32],
        bytes: &[u8],
        ca: &CaCertificate,
        unix_now: u64,
    ) -> Result<Arc<Member>, CertError> {
        if let Some(member) = self.map.get(&key) {
            let cert = &member.certificate;
            // Verified once already; only the ends of validity can have
            // changed since (an engine's clock never goes back, and a
            // shared cache re-checks both ends for engines whose clock is
            // behind).
            if unix_now < cert.not_before() {
                return Err(CertError::NotYetValid {
                    not_before: cert.not_before(),
                    now: unix_now,
                });
            }
            let not_after = cert.not_after().min(ca.not_after());
            if unix_now >= not_after {
                return Err(CertError::Expired {
                    not_after,
                    now: unix_now,
                });
            }
            return Ok(Arc::clone(member));
        }
        let cert = Certificate::from_bytes(bytes)?;
        cert.verify(ca, unix_now)?;
        let cert = Arc::new(Member::new(cert));
        if self.map.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.map.insert(key, Arc::clone(&cert));
        self.order.push_back(key);
        Ok(cert)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate, SecretKey};

    const NOW: u64 = 1_800_000_000;

    fn cert(ca: &CaSecret, seed: u8, not_after: u64) -> Certificate {
        ca.sign(&CertificateTemplate {
            name: format!("n{seed}"),
            public_key: SecretKey::from_random([seed; 64]).public(),
            ipv4: None,
            groups: vec![],
            not_before: NOW - 10,
            not_after,
        })
        .unwrap()
    }

    #[test]
    fn cached_certificates_still_expire() {
        let ca = CaSecret::new([1; 32], "net", NOW - 100, NOW + 1000).unwrap();
        let mut verifier = Verifier::new(ca.certificate().clone(), 4);
        let c = cert(&ca, 3, NOW + 10);
        assert!(verifier.verify(c.to_bytes(), NOW).is_ok());
        assert_eq!(verifier.len(), 1);
        assert!(verifier.verify(c.to_bytes(), NOW + 9).is_ok());
        assert!(matches!(
            verifier.verify(c.to_bytes(), NOW + 10),
            Err(CertError::Expired { .. })
        ));
    }

    #[test]
    fn a_shared_cache_does_not_mix_networks() {
        let ca1 = CaSecret::new([1; 32], "one", NOW - 100, NOW + 1000).unwrap();
        let ca2 = CaSecret::new([2; 32], "two", NOW - 100, NOW + 1000).unwrap();
        let shared = CertificateCache::new(16);
        let mut v1 = Verifier::new(ca1.certificate().clone(), 1);
        let mut v2 = Verifier::new(ca2.certificate().clone(), 1);
        v1.share(shared.clone());
        v2.share(shared.clone());
        let c = cert(&ca1, 3, NOW + 100);
        assert!(v1.verify(c.to_bytes(), NOW).is_ok());
        assert!(v2.verify(c.to_bytes(), NOW).is_err());
        assert_eq!(shared.len(), 1);
    }

    #[test]
    fn the_oldest_entry_leaves_a_full_cache() {
        let ca = CaSecret::new([1; 32], "net", NOW - 100, NOW + 1000).unwrap();
        let mut verifier = Verifier::new(ca.certificate().clone(), 2);
        for seed in 3..6 {
            verifier
                .verify(cert(&ca, seed, NOW + 100).to_bytes(), NOW)
                .unwrap();
        }
        assert_eq!(verifier.len(), 2);
    }
}
