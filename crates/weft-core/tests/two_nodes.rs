//! Two nodes wired back to back, stepped by hand in virtual time: the
//! smallest end-to-end check of the core, without the simulator.

#![allow(clippy::disallowed_methods)] // one base instant; everything else is offsets
#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use common::udp_v4;
use std::time::{Duration, Instant};

use weft_core::{
    AddPeerError, CaSecret, CertificateTemplate, Node, NodeConfig, PeerConfig, RoutingConfig,
    SecretKey, SessionConfig, SessionState,
};

const UNIX_START: u64 = 1_800_000_000;

struct Pair {
    now: Instant,
    nodes: [Node; 2],
    addrs: [SocketAddr; 2],
    delivered: [Vec<Vec<u8>>; 2],
    established_events: [usize; 2],
}

fn node(
    ca: &CaSecret,
    seed: u8,
    name: &str,
    ip: [u8; 4],
    peer: &str,
    peer_addr: SocketAddr,
    now: Instant,
) -> Node {
    let secret = SecretKey::from_random([seed; 64]);
    let certificate = ca
        .sign(&CertificateTemplate {
            name: name.into(),
            public_key: secret.public(),
            ipv4: Some(
                format!("{}.{}.{}.{}/16", ip[0], ip[1], ip[2], ip[3])
                    .parse()
                    .unwrap(),
            ),
            groups: vec![],
            not_before: UNIX_START - 10,
            not_after: UNIX_START + 86_400,
        })
        .unwrap();
    let config = NodeConfig {
        secret_key: secret,
        certificate,
        ca: ca.certificate().clone(),
        peers: vec![PeerConfig {
            name: Some(peer.into()),
            public_key: None,
            endpoint: Some(peer_addr),
        }],
        session: SessionConfig::default(),
        routing: RoutingConfig::default(),
        dht: weft_core::dht::DhtConfig::default(),
        bootstrap: Vec::new(),
        neighbours: weft_core::NeighbourConfig::default(),
        multicast: weft_core::mcast::MulticastConfig::default(),
        qos: weft_core::qos::QosConfig::default(),
        firewall: weft_core::firewall::FirewallConfig::default(),
        revocation: weft_core::RevocationConfig::default(),
    };
    Node::new(now, Duration::from_secs(UNIX_START), [seed; 32], config).unwrap()
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let ca = CaSecret::new([1; 32], "test", UNIX_START - 100, UNIX_START + 86_400).unwrap();
        let addrs: [SocketAddr; 2] = [
            "198.18.0.1:4800".parse().unwrap(),
            "198.18.0.2:4800".parse().unwrap(),
        ];
        let a = node(&ca, 2, "a", [198, 19, 0, 1], "b", addrs[1], now);
        let b = node(&ca, 3, "b", [198, 19, 0, 2], "a", addrs[0], now);
        Self {
            now,
            nodes: [a, b],
            addrs,
            delivered: [Vec::new(), Vec::new()],
            established_events: [0, 0],
        }
    }

    /// Delivers every output until both nodes are quiet.
    fn settle(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..2 {
                while let Some(to) = self.nodes[i].poll_transmit(&mut buf) {
                    moved = true;
                    let j = if to == self.addrs[0] { 0 } else { 1 };
                    let from = self.addrs[i];
                    self.nodes[j].handle_datagram(self.now, from, &buf);
                }
                while self.nodes[i].poll_tun(&mut buf) {
                    self.delivered[i].push(buf.clone());
                }
                while let Some(event) = self.nodes[i].poll_event() {
                    if let weft_core::Event::SessionEstablished { .. } = event {
                        self.established_events[i] += 1;
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances time to the earliest deadline (at most `limit` ahead).
    fn advance(&mut self, limit: Duration) {
        let until = self.now + limit;
        let next = self
            .nodes
            .iter()
            .filter_map(|n| n.poll_timeout().map(|(t, _)| t))
            .min();
        self.now = next.map_or(until, |t| t.min(until)).max(self.now);
        for n in &mut self.nodes {
            n.handle_timeout(self.now);
        }
        self.settle();
    }
}

#[test]
fn sessions_establish_and_carry_ip_both_ways() {
    let mut pair = Pair::new();
    pair.advance(Duration::ZERO);
    for n in &pair.nodes {
        let peers = n.peers(pair.now);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].state, SessionState::Established, "{}", n.name());
    }
    let a = Ipv4Addr::new(198, 19, 0, 1);
    let b = Ipv4Addr::new(198, 19, 0, 2);
    let now = pair.now;
    pair.nodes[0].handle_tun_packet(now, &udp_v4(a, b, b"to b"));
    pair.nodes[1].handle_tun_packet(now, &udp_v4(b, a, b"to a"));
    pair.settle();
    assert_eq!(pair.delivered[1], vec![udp_v4(a, b, b"to b")]);
    assert_eq!(pair.delivered[0], vec![udp_v4(b, a, b"to a")]);
}

#[test]
fn spoofed_source_is_dropped_and_counted() {
    let mut pair = Pair::new();
    pair.advance(Duration::ZERO);
    let now = pair.now;
    // a claims to be 198.19.0.9, an address its certificate does not hold.
    let forged = udp_v4(
        Ipv4Addr::new(198, 19, 0, 9),
        Ipv4Addr::new(198, 19, 0, 2),
        b"x",
    );
    pair.nodes[0].handle_tun_packet(now, &forged);
    pair.settle();
    assert!(pair.delivered[1].is_empty());
    assert_eq!(pair.nodes[1].stats().rx_spoofed_source, 1);
}

#[test]
fn a_destination_outside_the_overlay_is_dropped_and_counted() {
    let mut pair = Pair::new();
    pair.advance(Duration::ZERO);
    let now = pair.now;
    pair.nodes[0].handle_tun_packet(
        now,
        &udp_v4(
            Ipv4Addr::new(198, 19, 0, 1),
            Ipv4Addr::new(10, 7, 7, 7),
            b"x",
        ),
    );
    pair.settle();
    assert_eq!(pair.nodes[0].stats().tx_no_route, 1);
}

#[test]
fn an_overlay_address_nobody_holds_gets_icmp_unreachable() {
    let mut pair = Pair::new();
    for _ in 0..200 {
        pair.advance(Duration::from_millis(50));
    }
    let now = pair.now;
    pair.nodes[0].handle_tun_packet(
        now,
        &udp_v4(
            Ipv4Addr::new(198, 19, 0, 1),
            Ipv4Addr::new(198, 19, 7, 7),
            b"x",
        ),
    );
    for _ in 0..200 {
        if pair.nodes[0].stats().unreachable > 0 {
            break;
        }
        pair.advance(Duration::from_millis(50));
    }
    assert_eq!(pair.nodes[0].stats().unreachable, 1);
    assert_eq!(pair.nodes[0].stats().lookups_on_demand, 1);
    let icmp = pair.delivered[0].last().expect("an ICMP error on the TUN");
    // IPv4, protocol ICMP, type 3 (unreachable) code 1 (host), to the sender.
    assert_eq!((icmp[9], icmp[20], icmp[21]), (1, 3, 1));
    assert_eq!(&icmp[16..20], &[198, 19, 0, 1]);
}

#[test]
fn deadlines_always_move_forward_over_ten_minutes() {
    // A deadline that handle_timeout does not move past `now` would make a
    // driver spin; rekeys, probes, keepalives and link state must all
    // re-arm. Inputs may set a deadline at `now` (work to do at once), but
    // a few rounds of handle_timeout at the same instant must clear it.
    let mut pair = Pair::new();
    let end = pair.now + Duration::from_secs(600);
    let mut wakes = 0;
    while pair.now < end {
        pair.advance(Duration::from_secs(600));
        let mut rounds = 0;
        while pair
            .nodes
            .iter()
            .any(|n| n.poll_timeout().is_some_and(|(at, _)| at <= pair.now))
        {
            rounds += 1;
            let kinds: Vec<_> = pair.nodes.iter().map(|n| n.poll_timeout()).collect();
            assert!(rounds < 10, "timers spin at {:?}: {kinds:?}", pair.now);
            pair.advance(Duration::ZERO);
        }
        wakes += 1;
        // Two nodes idle most of the time: about five wake-ups a second
        // between them (probes, their answers' timeouts), far below this.
        assert!(wakes < 20_000, "too many wake-ups: timers spin");
    }
    for n in &pair.nodes {
        let peer = &n.peers(pair.now)[0];
        assert_eq!(peer.state, SessionState::Established);
        assert!(
            peer.handshakes >= 5,
            "rekeyed every two minutes: {}",
            peer.handshakes
        );
    }
}

/// "Session established" is news once per session: the handshakes of the
/// start (which may cross) and every rekey over ten minutes report nothing
/// more (the events API and the map's timeline showed it twice in a row).
#[test]
fn a_session_is_reported_established_once_across_rekeys() {
    let mut pair = Pair::new();
    pair.advance(Duration::ZERO);
    let before = pair.nodes[1].stats().handshakes_completed;
    let a = Ipv4Addr::new(198, 19, 0, 1);
    let b = Ipv4Addr::new(198, 19, 0, 2);
    for _ in 0..600 {
        let next = pair.now + Duration::from_secs(1);
        while pair.now < next {
            let left = next - pair.now;
            pair.advance(left);
        }
        let now = pair.now;
        pair.nodes[0].handle_tun_packet(now, &udp_v4(a, b, b"tick"));
        pair.settle();
    }
    assert!(pair.nodes[1].stats().handshakes_completed >= before + 4);
    assert_eq!(pair.established_events, [1, 1]);
}

#[test]
fn a_peer_removed_and_added_again_keeps_its_session_and_a_new_one_is_called() {
    let mut pair = Pair::new();
    pair.advance(Duration::ZERO);
    let now = pair.now;
    let b = PeerConfig {
        name: Some("b".into()),
        ..PeerConfig::default()
    };
    let before = pair.nodes[0].peers(now)[0].clone();
    assert_eq!(before.state, SessionState::Established);
    assert!(before.configured);

    pair.nodes[0].remove_peer(&b).unwrap();
    assert_eq!(
        pair.nodes[0].remove_peer(&b),
        Err(weft_core::RemovePeerError::NotConfigured("b".into()))
    );
    let removed = pair.nodes[0].peers(now)[0].clone();
    assert!(!removed.configured);
    assert_eq!(removed.state, SessionState::Established);

    pair.nodes[0].add_peer(now, b.clone()).unwrap();
    assert_eq!(
        pair.nodes[0].add_peer(now, b),
        Err(AddPeerError::AlreadyConfigured("b".into()))
    );
    let added = pair.nodes[0].peers(now)[0].clone();
    assert!(added.configured);
    assert_eq!(added.handshakes, before.handshakes);
    let me = PeerConfig {
        name: Some("a".into()),
        ..PeerConfig::default()
    };
    assert_eq!(
        pair.nodes[0].add_peer(now, me),
        Err(AddPeerError::SelfAsPeer("a".into()))
    );
    assert_eq!(
        pair.nodes[0].add_peer(now, PeerConfig::default()),
        Err(AddPeerError::WithoutIdentity)
    );

    let c: SocketAddr = "198.18.0.3:4800".parse().unwrap();
    pair.nodes[0]
        .add_peer(
            now,
            PeerConfig {
                name: Some("c".into()),
                public_key: None,
                endpoint: Some(c),
            },
        )
        .unwrap();
    assert_eq!(pair.nodes[0].poll_timeout().map(|(at, _)| at), Some(now));
    pair.nodes[0].handle_timeout(now);
    let mut buf = Vec::new();
    let mut destinations = Vec::new();
    while let Some(to) = pair.nodes[0].poll_transmit(&mut buf) {
        destinations.push(to);
    }
    assert!(destinations.contains(&c), "{destinations:?}");
}
