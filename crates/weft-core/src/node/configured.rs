//! Configured peers changed at run time: the commands behind a config
//! reload's `[[peers]]`.
//!
//! A peer added here is kept as the constructor's peers are: the node calls
//! it (if it has an endpoint) and keeps its session up. A slot the node
//! already has for that identity (a DHT pick, an inbound or on-demand peer)
//! becomes configured, with its session as it is. Removing a peer does not
//! end its session: the slot is only no longer configured, so the session
//! lapses like any other nobody wants (see `Node::wants_session`) and ends
//! at once only if the other side stops too; once idle, the slot may be
//! evicted like any learnt peer's (see the `peers` submodule).

use std::time::Instant;

use super::peers::PeerId;
use super::{Node, PeerConfig};

/// Why [`Node::add_peer`] refused a peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddPeerError {
    /// The entry names neither a certificate name nor a key.
    #[error("the peer has neither a name nor a public key")]
    WithoutIdentity,
    /// The entry names this node itself.
    #[error("peer '{0}' is this node itself")]
    SelfAsPeer(String),
    /// The peer is configured already.
    #[error("peer '{0}' is configured already")]
    AlreadyConfigured(String),
}

/// Why [`Node::remove_peer`] refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemovePeerError {
    /// No configured peer has that name or key.
    #[error("no configured peer is '{0}'")]
    NotConfigured(String),
}

impl Node {
    /// Makes `config` a configured peer, as if it had been in the
    /// constructor's list: the node calls it at once if it has an endpoint
    /// and no session, and keeps its session up from now on. A slot the
    /// node already has for it (matched by key, else by name) is reused
    /// with its session; its endpoint then changes only if it has none.
    pub fn add_peer(&mut self, now: Instant, config: PeerConfig) -> Result<(), AddPeerError> {
        let label = config
            .name
            .clone()
            .or_else(|| config.public_key.map(|k| k.node_id().short()))
            .ok_or(AddPeerError::WithoutIdentity)?;
        let node_id = config.public_key.map(|k| k.node_id());
        if node_id == Some(self.node_id()) || config.name.as_deref() == Some(self.name()) {
            return Err(AddPeerError::SelfAsPeer(label));
        }
        let Some(index) = self.find_peer(&config) else {
            self.push_configured_peer(now, config, node_id);
            return Ok(());
        };
        let p = &mut self.peers[index];
        if p.configured {
            return Err(AddPeerError::AlreadyConfigured(label));
        }
        p.configured = true;
        if p.configured_name.is_none() {
            p.configured_name = config.name;
        }
        if p.endpoint.is_none() {
            p.endpoint = config.endpoint;
        }
        let idle = p.current.is_none() && p.pending.is_none() && p.handshake_due.is_none();
        if idle && p.endpoint.is_some() {
            p.handshake_due = Some(now);
        }
        Ok(())
    }

    /// Stops keeping the configured peer `config` (matched by key, else by
    /// name): its session is left to lapse like any other nobody wants,
    /// unless something else still wants it (data, a route, a pick).
    pub fn remove_peer(&mut self, config: &PeerConfig) -> Result<(), RemovePeerError> {
        let label = config
            .name
            .clone()
            .or_else(|| config.public_key.map(|k| k.node_id().short()))
            .unwrap_or_default();
        match self.find_peer(config) {
            Some(index) if self.peers[index].configured => {
                self.peers[index].configured = false;
                Ok(())
            }
            _ => Err(RemovePeerError::NotConfigured(label)),
        }
    }

    /// The slot for the peer `config` names: by key if it has one, else by
    /// the configured or certificate name.
    fn find_peer(&self, config: &PeerConfig) -> Option<PeerId> {
        if let Some(key) = config.public_key {
            return self.by_id.get(&key.node_id()).copied();
        }
        let name = config.name.as_deref()?;
        self.peers.find(|p| {
            p.configured_name.as_deref() == Some(name)
                || p.certificate.as_ref().is_some_and(|c| c.name() == name)
        })
    }
}
