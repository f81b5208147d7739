//! Counters of what a node did and dropped, by reason.

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Node-wide counters. Every dropped packet is counted under a reason.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Every counter with its name, in a fixed order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($name), self.$name),)*].into_iter()
            }
        }
    };
}

counters! {
    /// Handshakes this node started (first tries and retries).
    handshakes_initiated,
    /// Handshakes that completed, as initiator or responder.
    handshakes_completed,
    /// Handshake attempts that got no valid response in time.
    handshake_timeouts,
    /// Handshakes rejected: certificate of another CA.
    handshake_rejected_wrong_ca,
    /// Handshakes rejected: certificate expired or not yet valid.
    handshake_rejected_expired,
    /// Handshakes rejected: CA signature does not verify.
    handshake_rejected_bad_signature,
    /// Handshakes rejected: static key does not match the certificate.
    handshake_rejected_key_mismatch,
    /// Handshakes rejected: certificate name or key is not the configured peer's.
    handshake_rejected_unexpected_peer,
    /// Handshakes rejected: the certificate is revoked (list or blocklist).
    handshake_rejected_revoked,
    /// Handshakes rejected: unreadable Noise message, payload or certificate.
    handshake_rejected_malformed,
    /// Handshake inits rejected as replays (timestamp not newer).
    handshake_rejected_replay,
    /// Handshake inits dropped for a wrong mac1 (not from someone who
    /// knows the network), before any other work.
    handshake_rejected_mac1,
    /// Handshake inits whose signature is not their certificate holder's
    /// (a forger holding only the public certificate).
    handshake_rejected_init_signature,
    /// Handshake inits dropped under load: their source used up its rate.
    handshake_rate_limited,
    /// Cookie replies sent (under load, or a response larger than the
    /// init, to an init without a valid mac2).
    handshake_cookies_sent,
    /// Cookie replies received and accepted from peers under load.
    handshake_cookies_received,
    /// Cookie replies that did not open (forged, stale or relayed).
    rx_bad_cookie_reply,
    /// Handshake inits dropped because ours to the same peer crossed them
    /// and ours goes on (the larger node id's handshake wins).
    handshake_crossed,
    /// Datagrams that are not weft packets.
    rx_malformed,
    /// Data or responses for a session index we do not have.
    rx_unknown_session,
    /// Data packets whose counter was seen before or is too old.
    rx_replayed,
    /// Data packets that failed authentication.
    rx_auth_failed,
    /// Data packets on a session past its age limit.
    rx_expired_session,
    /// Frames that do not decode.
    rx_bad_frame,
    /// IP packets from a peer with a source address that is not the peer's.
    rx_spoofed_source,
    /// IP packets delivered to the TUN.
    rx_delivered,
    /// TUN packets that are not IPv4 or IPv6.
    tun_malformed,
    /// TUN packets to an address outside the overlay.
    tx_no_route,
    /// Lookups started because a TUN packet was for an unknown overlay address.
    lookups_on_demand,
    /// ICMP unreachable errors written to the TUN (destination not found).
    unreachable,
    /// TUN packets to multicast or broadcast addresses (not carried yet).
    tx_multicast_dropped,
    /// Packets dropped because the queue waiting for a session was full.
    tx_pending_overflow,
    /// Datagrams dropped because the transmit queue was full.
    tx_queue_full,
    /// Packets dropped because the TUN output queue was full.
    tun_queue_full,
    /// Events dropped because nobody drained them.
    events_dropped,
    /// Sessions dropped because the peer fell silent.
    peers_lost,
    /// Idle sessions ended to make room in a full session table.
    sessions_evicted,
    /// Authenticated inits refused because the session table was full of
    /// sessions that are wanted.
    handshake_refused_full,
    /// Idle peer entries evicted: to make room in a full peer table, or
    /// idle for long.
    peers_evicted,
    /// New peer entries refused because the peer table was full of peers
    /// in use (the record is still used; the init or lookup is dropped).
    peers_refused,
    /// Endpoint changes (roaming) of peers.
    peers_roamed,
    /// Attempts to punch a direct path through NATs (as caller or callee).
    punch_attempts,
    /// Attempts that proved a direct path (a candidate answered).
    punch_succeeded,
    /// Attempts that got no answer from any candidate: the peer stays
    /// relayed.
    punch_failed,
    /// Pings sent to candidates while punching.
    punch_pings_sent,
    /// Calls ("probe my candidates now") received from peers.
    punch_calls_received,
    /// Reports from peers of a new address at which they see this node.
    nat_observed_reports,
    /// Packets on a replaced session from another address than the peer's
    /// while the newer session still speaks: two hosts hold one key.
    duplicate_identity,
    /// Conflicting claims seen: two node ids whose certificates carry one
    /// name or one overlay IPv4 address (each conflict once).
    claim_conflicts,
    /// Replaced sessions made current again because the newer one fell
    /// silent (the second holder of a key went away).
    sessions_restored,
    /// Packets with no path to their peer (no route, link down, no endpoint).
    tx_no_path,
    /// Packets this node forwarded for others (as a relay).
    relayed,
    /// Relay frames this node could not forward (next hop unknown or down,
    /// relaying off, nested relay).
    relay_no_route,
    /// Packets that reached this node through a relay.
    rx_via_relay,
    /// Probe and probe-answer bytes sent (UDP payload).
    probe_tx_bytes,
    /// Probe and probe-answer bytes received (UDP payload).
    probe_rx_bytes,
    /// Link-state records this node signed.
    lsa_originated,
    /// ... of which because one of its links went up or down, or a new
    /// neighbour came (they may also carry drift).
    lsa_originated_change,
    /// ... of which because a link's RTT or loss moved noticeably.
    lsa_originated_drift,
    /// ... of which only because the last one was `lsa_refresh` old.
    lsa_originated_refresh,
    /// Direct links that came up (a neighbour's link monitor settled).
    links_up,
    /// Direct links that went down (probes lost, or the session ended).
    links_down,
    /// New link-state records accepted from others.
    lsa_received,
    /// Link-state records refused (malformed, bad certificate or signature).
    lsa_rejected,
    /// Link-state bytes sent (records, as UDP payload before sealing).
    lsa_tx_bytes,
    /// Records of others held back by the forwarding brake (a newer one of
    /// the same origin came within 250 ms of the last passed on).
    lsa_held,
    /// Times this node's own record had to wait for the origination brake.
    lsa_originate_deferred,
    /// Certificates asked of neighbours for records that named one this
    /// node did not hold.
    certificates_requested,
    /// Certificates received as asked and held (the CA signed them).
    certificates_received,
    /// Certificates sent to neighbours that asked.
    certificates_sent,
    /// Certificate answers refused: unreadable, or not the CA's.
    certificates_rejected,
    /// Certificates received that nobody asked for (dropped).
    certificates_unsolicited,
    /// Requests for a certificate this node does not hold.
    certificate_requests_unknown,
    /// Records dropped because too many already waited for their
    /// certificates.
    records_waiting_dropped,
    /// Links left out of this node's records because a record must fit
    /// one control datagram (`wire::max_links`), summed over records.
    lsa_links_capped,
    /// Route changes (any destination, any metric).
    path_changes,
    /// Times the routes were computed (all destinations, every metric).
    route_computations,
    /// Multicast packets this node sent as a source.
    mcast_sent,
    /// Multicast copies this node forwarded along a tree.
    mcast_forwarded,
    /// Multicast packets delivered to the TUN (this node is a member).
    mcast_delivered,
    /// Multicast copies dropped as duplicates.
    mcast_duplicates,
    /// Multicast packets or memberships refused by the policy (or with a
    /// source address that is not the origin's).
    mcast_denied,
    /// Multicast packets for groups without members.
    mcast_no_members,
    /// IGMP/MLD reports read from the TUN.
    mcast_reports,
    /// Data packets dropped as they left the QoS scheduler: the peer's
    /// session had ended while they waited (drops inside the scheduler are
    /// counted per class by `Node::qos_stats`).
    tx_qos_no_session,
    /// IP packets from peers (unicast and multicast) the firewall dropped
    /// or rejected (per rule: `Node::firewall_stats`).
    firewall_inbound_dropped,
    /// IP packets to peers or groups the firewall dropped or rejected.
    firewall_outbound_dropped,
    /// TCP resets and ICMP errors sent for packets the firewall rejected.
    firewall_rejected,
    /// Sessions ended because a newer revocation list revokes the peer.
    sessions_revoked,
    /// Newer revocation lists received from peers and installed.
    revocation_lists_received,
    /// Revocation lists (or pieces) refused: malformed, another CA's, bad
    /// signature.
    revocation_rejected,
    /// Revocation list pieces sent to peers.
    revocation_chunks_sent,
}
