//! A renewed certificate adopted while the node runs (a config reload after
//! `weft ca renew`), without ending a session.
//!
//! The new certificate must be one this node could have started with: for
//! its own key, issued by the CA it trusts, valid now and not revoked by
//! the list or blocklist it holds. It must also keep the node's name and
//! overlay IPv4 address: the TUN interface holds the address and the whole
//! network knows the node by both, so changing them is a restart. Its
//! groups and validity may change.
//!
//! How the new certificate reaches others: every place that carries it
//! takes it from now on. Each peer with a session gets a handshake at
//! once, exactly as on a rekey (the current session carries traffic until
//! the new one is confirmed, so nothing is lost), and takes the
//! certificate from it: a peer's firewall, multicast policy and QoS judge
//! this node by the certificate of its session. The DHT record (which
//! carries the certificate) and the link-state record (which names it by
//! fingerprint, so that nodes without a session fetch it) are signed again
//! and sent at once, and so is the membership record if the node has one
//! out. The expiry warnings follow the new
//! validity; groups that the multicast policy no longer lets the new
//! certificate join are left.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::info;

use super::Node;
use super::expiry::ExpiryWarning;
use crate::identity::{CertError, Certificate};

/// Why [`Node::set_certificate`] refused a certificate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetCertificateError {
    /// It certifies another key.
    #[error(
        "the certificate is for node id {found}, not for this node's key (node id {own}); a node's key cannot change while it runs"
    )]
    OtherKey {
        /// The short node id it certifies.
        found: String,
        /// This node's short node id.
        own: String,
    },
    /// It does not verify under the CA now (another CA, a bad signature,
    /// expired or not yet valid).
    #[error("{0}")]
    Invalid(#[from] CertError),
    /// It gives the node another name.
    #[error(
        "the certificate names the node '{new}', but it runs as '{running}'; a new name needs a restart"
    )]
    OtherName {
        /// The name the node runs with.
        running: String,
        /// The certificate's.
        new: String,
    },
    /// It gives the node another overlay IPv4 address (or none, or one
    /// where there was none).
    #[error(
        "the certificate gives the overlay IPv4 address {new}, but the node runs with {running}; a new address needs a restart"
    )]
    OtherIpv4 {
        /// The address the node runs with (`none`).
        running: String,
        /// The certificate's (`none`).
        new: String,
    },
    /// The revocation list or the blocklist this node holds revokes it.
    #[error("the certificate is revoked (by the revocation list or the blocklist this node holds)")]
    Revoked,
}

impl Node {
    /// Whether [`Node::set_certificate`] would adopt `certificate` at
    /// `now` (the same certificate again passes); changes nothing, so a
    /// caller can check everything before it changes anything.
    pub fn check_certificate(
        &self,
        now: Instant,
        certificate: &Certificate,
    ) -> Result<(), SetCertificateError> {
        if *certificate == self.certificate {
            return Ok(());
        }
        if certificate.public_key() != self.secret.public() {
            return Err(SetCertificateError::OtherKey {
                found: certificate.node_id().short(),
                own: self.node_id().short(),
            });
        }
        certificate.verify(&self.ca, self.unix_now(now))?;
        if certificate.name() != self.certificate.name() {
            return Err(SetCertificateError::OtherName {
                running: self.certificate.name().to_owned(),
                new: certificate.name().to_owned(),
            });
        }
        if certificate.ipv4() != self.certificate.ipv4() {
            let show = |c: &Certificate| c.ipv4().map_or("none".to_owned(), |n| n.to_string());
            return Err(SetCertificateError::OtherIpv4 {
                running: show(&self.certificate),
                new: show(certificate),
            });
        }
        if self.is_revoked(certificate) {
            return Err(SetCertificateError::Revoked);
        }
        Ok(())
    }

    /// Adopts `certificate`, a renewal of this node's own (see the module
    /// doc for what it must keep and how peers learn it). Returns the
    /// groups left because the new certificate may not join them. The same
    /// certificate again changes nothing; on an error nothing changes.
    pub fn set_certificate(
        &mut self,
        now: Instant,
        certificate: Certificate,
    ) -> Result<Vec<IpAddr>, SetCertificateError> {
        self.check_certificate(now, &certificate)?;
        if certificate == self.certificate {
            return Ok(Vec::new());
        }
        let unix_now = self.unix_now(now);
        info!(
            not_after = certificate.not_after(),
            "adopting the renewed certificate"
        );
        self.expiry = ExpiryWarning::new(
            now,
            unix_now,
            certificate.not_before(),
            certificate.not_after(),
        );
        self.certificate = certificate.clone();
        self.discovery.dht.set_certificate(now, certificate);
        self.schedule_lsa(now, Duration::ZERO);
        let left = self.own_certificate_changed(now);
        for peer in self.peers.ids() {
            if self.usable_current(now, peer) && self.peers[peer].pending.is_none() {
                self.start_handshake(now, peer);
            }
        }
        self.after_input(now);
        Ok(left)
    }
}
