//! A bounded cache of verified member certificates, keyed by the BLAKE3 hash
//! of their bytes.
//!
//! Every DHT datagram and record carries its sender's certificate. Checking
//! the CA's signature on it costs as much as checking the datagram's own
//! signature, so a certificate seen before is taken from here: a known
//! sender costs one signature check, not two. A hit still checks the
//! validity period against the current time, so an expired certificate is
//! refused even while cached. The oldest entry goes first when the cache is
//! full.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::identity::{CaCertificate, CertError, Certificate};

/// Verified certificates.
#[derive(Debug)]
pub(crate) struct CertCache {
    map: BTreeMap<[u8; 32], Arc<Certificate>>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl CertCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The certificate in `bytes`, if `ca` issued it and it is valid at
    /// `unix_now`.
    pub(crate) fn verify(
        &mut self,
        bytes: &[u8],
        ca: &CaCertificate,
        unix_now: u64,
    ) -> Result<Arc<Certificate>, CertError> {
        let hash = *blake3::hash(bytes).as_bytes();
        if let Some(cert) = self.map.get(&hash) {
            // Verified once at an earlier time (time only moves forward), so
            // only the ends of validity are left to check.
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
            return Ok(Arc::clone(cert));
        }
        let cert = Certificate::from_bytes(bytes)?;
        cert.verify(ca, unix_now)?;
        let cert = Arc::new(cert);
        if self.map.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.map.insert(hash, Arc::clone(&cert));
        self.order.push_back(hash);
        Ok(cert)
    }

    /// Certificates held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
