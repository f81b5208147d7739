//! The kinds of timer a node sets, so `poll_timeout` can say why it wakes.

/// Why a node wants to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// A handshake went unanswered: retry it (with backoff).
    HandshakeRetry,
    /// A session reached its age or volume limit: start a new handshake.
    Rekey,
    /// Nothing was sent for a while: send a keepalive.
    Keepalive,
    /// A link probe is due, or one went unanswered.
    Probe,
    /// This node's link-state record must be sent (changed or refreshed),
    /// or a stored record expires.
    LinkState,
    /// Routes are recomputed (metrics drift between state changes).
    Route,
    /// A session or a pending handshake must be dropped.
    Expiry,
    /// DHT work: a query timed out, a bucket refresh or republish is due.
    Dht,
    /// The neighbourhood is reconsidered.
    Neighbours,
    /// A multicast membership record is due, or one expires.
    Multicast,
    /// The egress shapers let queued data leave again (QoS scheduler).
    Qos,
    /// This node's certificate expires soon: warn.
    Certificate,
    /// Offer the revocation list to the peers again, or give up on a
    /// reassembly.
    Revocation,
    /// NAT traversal: a punching round, an attempt's end, or news for the
    /// peers about this node's endpoints.
    Nat,
    /// Peers idle for long are evicted from the peer table.
    Peers,
}
