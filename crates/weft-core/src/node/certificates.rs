//! Certificates by fingerprint: the ones a node holds, and the records
//! that wait for one.
//!
//! Link-state and membership records name their origin's certificate by
//! its fingerprint (BLAKE3 of the encoded certificate) instead of carrying
//! it, so that a node's certificate crosses each link once and not inside
//! every record every refresh. A record whose certificate the node lacks
//! waits here (bounded) while the node asks the neighbour that sent it
//! ([`Frame::CertificateRequest`]): that neighbour verified the record, so
//! it held the certificate. The answer ([`Frame::Certificate`]) is accepted
//! only for a fingerprint the node asked for, and only after the CA's
//! signature on it verifies; the waiting records then go through the
//! ordinary checks. See PROTOCOL §6.1.
//!
//! Bounds: [`MAX_CERTIFICATES`] held (the least recently used go first, the
//! node's own and its peers' are added again whenever they are used),
//! [`MAX_WAITING`] fingerprints waiting with the newest record of each
//! kind, each waiting at most [`WAIT_FOR`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{debug, trace};

use super::peers::PeerId;
use super::{Node, Via};
use crate::identity::Certificate;
use crate::wire::{FINGERPRINT_LEN, Frame, MAX_CERTIFICATE_FRAME};

/// Certificates held at most.
pub(crate) const MAX_CERTIFICATES: usize = 4096;
/// Fingerprints whose records wait for their certificate, at most.
pub(crate) const MAX_WAITING: usize = 256;
/// A request is sent again (to whoever sent the record last) after this.
const ASK_AGAIN: Duration = Duration::from_secs(1);
/// Records wait at most this long for their certificate.
const WAIT_FOR: Duration = Duration::from_secs(10);

/// A certificate's fingerprint.
pub(crate) type Fingerprint = [u8; FINGERPRINT_LEN];

/// Which handler a waiting record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// With the hop budget it came with.
    LinkState {
        hops_left: u8,
    },
    Membership,
}

/// Records waiting for one certificate: the newest of each kind.
#[derive(Debug)]
struct Waiting {
    link_state: Option<(RecordKind, PeerId, Vec<u8>)>,
    membership: Option<(RecordKind, PeerId, Vec<u8>)>,
    since: Instant,
    asked_at: Instant,
}

/// The node's certificates by fingerprint and its waiting records.
#[derive(Debug)]
pub(crate) struct Certificates {
    held: BTreeMap<Fingerprint, (Certificate, u64)>,
    /// Held at most ([`MAX_CERTIFICATES`]).
    capacity: usize,
    /// Increases with every use; the smallest stamp goes first.
    clock: u64,
    waiting: BTreeMap<Fingerprint, Waiting>,
}

impl Default for Certificates {
    fn default() -> Self {
        Certificates {
            held: BTreeMap::new(),
            capacity: MAX_CERTIFICATES,
            clock: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl Certificates {
    /// Holds `certificate` (whose CA signature the caller verified).
    pub(crate) fn insert(&mut self, certificate: Certificate) {
        self.clock += 1;
        let fingerprint = certificate.fingerprint();
        if self.held.len() >= self.capacity && !self.held.contains_key(&fingerprint) {
            // Full: the least recently used one goes. A scan, but only
            // when full, and a few thousand entries.
            if let Some(oldest) = self
                .held
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(f, _)| *f)
            {
                self.held.remove(&oldest);
            }
        }
        self.held.insert(fingerprint, (certificate, self.clock));
    }

    /// The certificate with `fingerprint`, if held.
    pub(crate) fn get(&mut self, fingerprint: &Fingerprint) -> Option<&Certificate> {
        self.clock += 1;
        let clock = self.clock;
        self.held.get_mut(fingerprint).map(|(certificate, used)| {
            *used = clock;
            &*certificate
        })
    }

    /// Certificates held.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Keeps `record` until its certificate comes; returns whether to ask
    /// `from` for it now (first time, or the last ask is [`ASK_AGAIN`]
    /// old), or `None` when no room is left.
    fn park(
        &mut self,
        now: Instant,
        fingerprint: Fingerprint,
        kind: RecordKind,
        from: PeerId,
        record: &[u8],
    ) -> Option<bool> {
        self.expire(now);
        if !self.waiting.contains_key(&fingerprint) && self.waiting.len() >= MAX_WAITING {
            return None;
        }
        let mut ask = false;
        let waiting = self.waiting.entry(fingerprint).or_insert_with(|| {
            ask = true;
            Waiting {
                link_state: None,
                membership: None,
                since: now,
                asked_at: now,
            }
        });
        if now >= waiting.asked_at + ASK_AGAIN {
            waiting.asked_at = now;
            ask = true;
        }
        // The newest of each kind wins later anyway (larger sequence);
        // the last one that came stands for it.
        let slot = match kind {
            RecordKind::LinkState { .. } => &mut waiting.link_state,
            RecordKind::Membership => &mut waiting.membership,
        };
        *slot = Some((kind, from, record.to_vec()));
        Some(ask)
    }

    /// Whether records wait for `fingerprint` (an answer is welcome).
    fn awaited(&self, fingerprint: &Fingerprint) -> bool {
        self.waiting.contains_key(fingerprint)
    }

    /// The records that waited for `fingerprint`.
    fn take(&mut self, fingerprint: &Fingerprint) -> Vec<(RecordKind, PeerId, Vec<u8>)> {
        let Some(waiting) = self.waiting.remove(fingerprint) else {
            return Vec::new();
        };
        waiting
            .link_state
            .into_iter()
            .chain(waiting.membership)
            .collect()
    }

    fn expire(&mut self, now: Instant) {
        self.waiting.retain(|_, w| now < w.since + WAIT_FOR);
    }
}

impl Node {
    /// Certificates this node holds for the records it verifies (at most
    /// 4,096).
    pub fn certificates_held(&self) -> usize {
        self.certificates.len()
    }

    /// The certificate a record names, from those held (the node's own and
    /// its peers' are always found); `None` after parking the record and,
    /// when due, asking `from` for it.
    pub(super) fn certificate_for_record(
        &mut self,
        now: Instant,
        fingerprint: &Fingerprint,
        kind: RecordKind,
        from: PeerId,
        record: &[u8],
    ) -> Option<Certificate> {
        if let Some(certificate) = self.certificates.get(fingerprint) {
            return Some(certificate.clone());
        }
        // Peers' certificates come with their handshakes; hold them from
        // first use (they may have been pushed out by others).
        let own = std::iter::once(&self.certificate);
        let peers = self.peers.iter().filter_map(|p| p.certificate.as_ref());
        if let Some(certificate) = own
            .chain(peers)
            .find(|c| &c.fingerprint() == fingerprint)
            .cloned()
        {
            self.certificates.insert(certificate.clone());
            return Some(certificate);
        }
        match self
            .certificates
            .park(now, *fingerprint, kind, from, record)
        {
            None => {
                self.stats.records_waiting_dropped += 1;
                debug!("no room for a record waiting for its certificate");
            }
            Some(true) => {
                self.stats.certificates_requested += 1;
                let request = Frame::CertificateRequest {
                    fingerprint: *fingerprint,
                };
                self.send_frame(now, from, request, Via::Direct);
            }
            Some(false) => {}
        }
        None
    }

    /// A neighbour asks for a certificate a record of ours (or one we
    /// passed on) named.
    pub(super) fn on_certificate_request(
        &mut self,
        now: Instant,
        peer: PeerId,
        fingerprint: &Fingerprint,
    ) {
        let own = self.certificate.fingerprint() == *fingerprint;
        let found = if own {
            Some(self.certificate.clone())
        } else {
            self.certificates.get(fingerprint).cloned()
        };
        let Some(certificate) = found else {
            self.stats.certificate_requests_unknown += 1;
            trace!("asked for a certificate this node does not hold");
            return;
        };
        let bytes = certificate.to_bytes();
        if bytes.len() > MAX_CERTIFICATE_FRAME {
            // Too large for a control datagram (a CA would have to have
            // signed a certificate of over a kilobyte): nodes that lack it
            // cannot verify its records and drop them after waiting.
            return;
        }
        self.stats.certificates_sent += 1;
        self.send_frame(now, peer, Frame::Certificate(bytes), Via::Direct);
    }

    /// A certificate arrived: held if it was asked for and the CA signed
    /// it; the records that waited for it go on.
    pub(super) fn on_certificate(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(certificate) = Certificate::from_bytes(bytes) else {
            self.stats.certificates_rejected += 1;
            return;
        };
        let fingerprint = certificate.fingerprint();
        if !self.certificates.awaited(&fingerprint) {
            self.stats.certificates_unsolicited += 1;
            return;
        }
        // The issuer's signature only: validity is checked for each record
        // as it is used (an expired certificate's records are refused
        // then, with the reason).
        if let Err(error) = certificate.verify_issuer(&self.ca) {
            self.stats.certificates_rejected += 1;
            debug!(%error, "certificate answer refused");
            return;
        }
        self.stats.certificates_received += 1;
        self.certificates.insert(certificate);
        for (kind, from, record) in self.certificates.take(&fingerprint) {
            if !self.peers.contains(from) {
                continue;
            }
            match kind {
                RecordKind::LinkState { hops_left } => {
                    self.on_link_state(now, from, hops_left, &record)
                }
                RecordKind::Membership => self.on_membership(now, from, &record),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate, SecretKey};

    fn certificate(ca: &CaSecret, seed: u8) -> Certificate {
        ca.sign(&CertificateTemplate {
            name: format!("n{seed}"),
            public_key: SecretKey::from_random([seed; 64]).public(),
            ipv4: None,
            groups: Vec::new(),
            not_before: 0,
            not_after: 1_000,
        })
        .unwrap()
    }

    #[test]
    fn the_least_recently_used_certificate_goes_when_full() {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let [a, b, c, d] = [1, 2, 3, 4].map(|seed| certificate(&ca, seed));
        let mut store = Certificates {
            capacity: 3,
            ..Certificates::default()
        };
        for held in [&a, &b, &c] {
            store.insert(held.clone());
        }
        // `a` is used again, so `b` is now the least recently used.
        assert!(store.get(&a.fingerprint()).is_some());
        store.insert(d.clone());
        assert_eq!(store.len(), 3);
        assert!(store.get(&b.fingerprint()).is_none());
        for kept in [&a, &c, &d] {
            assert_eq!(store.get(&kept.fingerprint()), Some(kept));
        }
    }

    #[test]
    fn waiting_records_are_bounded_asked_for_once_a_second_and_expire() {
        let base = Instant::now();
        let mut store = Certificates::default();
        let f = [7u8; FINGERPRINT_LEN];
        assert_eq!(
            store.park(
                base,
                f,
                RecordKind::LinkState { hops_left: 1 },
                PeerId::for_test(0),
                b"a"
            ),
            Some(true)
        );
        assert_eq!(
            store.park(base, f, RecordKind::Membership, PeerId::for_test(1), b"m"),
            Some(false)
        );
        assert_eq!(
            store.park(
                base + ASK_AGAIN,
                f,
                RecordKind::LinkState { hops_left: 1 },
                PeerId::for_test(2),
                b"b"
            ),
            Some(true)
        );
        for i in 1..MAX_WAITING {
            let mut other = [0u8; FINGERPRINT_LEN];
            other[..8].copy_from_slice(&(i as u64).to_be_bytes());
            assert!(
                store
                    .park(
                        base,
                        other,
                        RecordKind::LinkState { hops_left: 1 },
                        PeerId::for_test(0),
                        b"x"
                    )
                    .is_some()
            );
        }
        assert_eq!(
            store.park(
                base,
                [9; FINGERPRINT_LEN],
                RecordKind::LinkState { hops_left: 1 },
                PeerId::for_test(0),
                b"y"
            ),
            None
        );
        let taken = store.take(&f);
        assert_eq!(
            taken,
            vec![
                (
                    RecordKind::LinkState { hops_left: 1 },
                    PeerId::for_test(2),
                    b"b".to_vec()
                ),
                (RecordKind::Membership, PeerId::for_test(1), b"m".to_vec()),
            ]
        );
        store.expire(base + WAIT_FOR);
        assert!(store.waiting.is_empty());
    }
}
