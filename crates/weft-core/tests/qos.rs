//! QoS in the node's data path, two nodes stepped by hand: without shaping
//! a packet leaves in the call that queued it; with a shaped uplink queued
//! data waits for the `Qos` timer and leaves when it fires, never before.

#![allow(clippy::disallowed_methods)] // one base instant; everything else is offsets
#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::udp_v4;
use weft_core::qos::QosConfig;
use weft_core::{
    CaSecret, CertificateTemplate, Node, NodeConfig, PeerConfig, RoutingConfig, SecretKey,
    SessionConfig, SessionState, TimerKind,
};

const UNIX_START: u64 = 1_800_000_000;
const A: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

/// A minimal IPv6 UDP packet (checksum left zero).
fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut p = vec![0u8; 40 + udp_len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..42].copy_from_slice(&1000u16.to_be_bytes());
    p[42..44].copy_from_slice(&2000u16.to_be_bytes());
    p[44..46].copy_from_slice(&(udp_len as u16).to_be_bytes());
    p[48..].copy_from_slice(payload);
    p
}

#[allow(clippy::too_many_arguments)] // a test fixture spelling out each node's identity
fn node(
    ca: &CaSecret,
    seed: u8,
    name: &str,
    ip: Ipv4Addr,
    peer: &str,
    peer_addr: SocketAddr,
    now: Instant,
    qos: QosConfig,
) -> Node {
    let secret = SecretKey::from_random([seed; 64]);
    let certificate = ca
        .sign(&CertificateTemplate {
            name: name.into(),
            public_key: secret.public(),
            ipv4: Some(format!("{ip}/16").parse().unwrap()),
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
            public_key: Some(SecretKey::from_random([peer_seed(peer); 64]).public()),
            endpoint: Some(peer_addr),
        }],
        session: SessionConfig::default(),
        routing: RoutingConfig::default(),
        dht: weft_core::dht::DhtConfig::default(),
        bootstrap: Vec::new(),
        neighbours: weft_core::NeighbourConfig::default(),
        multicast: weft_core::mcast::MulticastConfig::default(),
        qos,
        firewall: weft_core::firewall::FirewallConfig::default(),
        revocation: weft_core::RevocationConfig::default(),
    };
    Node::new(now, Duration::from_secs(UNIX_START), [seed; 32], config).unwrap()
}

/// The key seed of the node called `name`.
fn peer_seed(name: &str) -> u8 {
    if name == "a" { 2 } else { 3 }
}

/// Two nodes back to back; datagrams cross instantly.
struct Pair {
    now: Instant,
    nodes: [Node; 2],
    addrs: [SocketAddr; 2],
    delivered: [Vec<Vec<u8>>; 2],
}

impl Pair {
    /// `a` runs `qos`, `b` the defaults; sessions are up on return.
    fn new(qos: QosConfig) -> Self {
        let mut pair = Self::unstarted(qos);
        let now = pair.now;
        for n in &mut pair.nodes {
            n.handle_timeout(now);
        }
        pair.settle();
        for n in &pair.nodes {
            assert_eq!(n.peers(now)[0].state, SessionState::Established);
        }
        pair
    }

    /// The two nodes before either has run a timer (no handshake yet).
    fn unstarted(qos: QosConfig) -> Self {
        let now = Instant::now();
        let ca = CaSecret::new([1; 32], "test", UNIX_START - 100, UNIX_START + 86_400).unwrap();
        let addrs: [SocketAddr; 2] = [
            "198.18.0.1:4800".parse().unwrap(),
            "198.18.0.2:4800".parse().unwrap(),
        ];
        let a = node(&ca, 2, "a", A, "b", addrs[1], now, qos);
        let b = node(&ca, 3, "b", B, "a", addrs[0], now, QosConfig::default());
        Self {
            now,
            nodes: [a, b],
            addrs,
            delivered: [Vec::new(), Vec::new()],
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
                    let j = usize::from(to == self.addrs[1]);
                    let from = self.addrs[i];
                    self.nodes[j].handle_datagram(self.now, from, &buf);
                }
                while self.nodes[i].poll_tun(&mut buf) {
                    self.delivered[i].push(buf.clone());
                }
                while self.nodes[i].poll_event().is_some() {}
            }
            if !moved {
                return;
            }
        }
    }

    /// Jumps to `at` and runs both nodes' timers.
    fn wake_at(&mut self, at: Instant) {
        self.now = at;
        for n in &mut self.nodes {
            n.handle_timeout(at);
        }
        self.settle();
    }
}

#[test]
fn without_shaping_a_packet_leaves_in_the_call_that_queued_it() {
    let mut pair = Pair::new(QosConfig::default());
    let now = pair.now;
    let packet = udp_v4(A, B, b"now");
    pair.nodes[0].handle_tun_packet(now, &packet);
    let mut buf = Vec::new();
    assert!(pair.nodes[0].poll_transmit(&mut buf).is_some());
    assert!(
        pair.nodes[0]
            .poll_timeout()
            .is_none_or(|(_, kind)| kind != TimerKind::Qos)
    );
    let stats = pair.nodes[0].qos_stats(now);
    let interactive = stats
        .classes
        .iter()
        .find(|c| c.name == "interactive")
        .unwrap();
    assert_eq!(
        (interactive.sent_packets, interactive.depth_packets),
        (1, 0)
    );
    assert_eq!(interactive.sojourn_last, Duration::ZERO);
}

#[test]
fn shaped_data_waits_for_the_qos_timer_and_leaves_when_it_fires() {
    // 1 Mbit/s: a packet of 1,000 bytes of payload (1,089 bytes on the
    // wire) takes 8.7 ms of tokens; the bucket holds 5 ms.
    let mut pair = Pair::new(QosConfig {
        uplink_bps: Some(1_000_000),
        ..QosConfig::default()
    });
    // Let the bucket recover from the start (handshakes, link state and
    // DHT datagrams are charged to it too: tens of ms at this rate).
    let quiet = pair.now + Duration::from_secs(2);
    for _ in 0..1000 {
        let at = pair
            .nodes
            .iter()
            .filter_map(|n| n.poll_timeout())
            .map(|(at, _)| at)
            .min();
        match at {
            Some(at) if at < quiet => pair.wake_at(at),
            _ => break,
        }
    }
    pair.wake_at(quiet);
    let now = pair.now;
    let payload = [7u8; 1000];
    for _ in 0..5 {
        pair.nodes[0].handle_tun_packet(now, &udp_v4(A, B, &payload));
    }
    pair.settle();
    let first = pair.delivered[1].len();
    assert!(first <= 1, "{first} packets left at once");
    let mut released = first;
    let mut qos_wakes = 0;
    for _ in 0..100 {
        if released == 5 {
            break;
        }
        let (at, kind) = pair.nodes[0].poll_timeout().unwrap();
        assert!(at >= pair.now);
        if kind != TimerKind::Qos {
            // Probes and the like: sent at once, charged to the uplink.
            pair.wake_at(at);
            released = pair.delivered[1].len();
            continue;
        }
        qos_wakes += 1;
        // Not a nanosecond early ...
        pair.wake_at(at - Duration::from_nanos(1));
        assert_eq!(pair.delivered[1].len(), released);
        // ... and at the deadline exactly.
        pair.wake_at(at);
        assert_eq!(pair.delivered[1].len(), released + 1);
        released += 1;
    }
    assert!(qos_wakes >= 3, "{qos_wakes} wake-ups for the shaper");
    assert_eq!(released, 5);
    let stats = pair.nodes[0].qos_stats(pair.now);
    assert_eq!(stats.depth_packets, 0);
    // Four packets waited for 8.7 ms of tokens each (less what the bucket
    // held): about 35 ms from first to last, at 1 Mbit/s.
    let waited = pair.now - now;
    assert!(
        waited >= Duration::from_millis(30) && waited <= Duration::from_millis(45),
        "{waited:?}"
    );
}

#[test]
fn a_new_session_is_confirmed_at_once_while_its_first_data_waits() {
    // At 100 kbit/s the handshake init alone puts the uplink in debt for
    // tens of ms, so the packet that waited for the session waits in the
    // scheduler too; the responder must not wait for it to learn that the
    // session is confirmed.
    let mut pair = Pair::unstarted(QosConfig {
        uplink_bps: Some(100_000),
        ..QosConfig::default()
    });
    let now = pair.now;
    let (a6, b6) = (pair.nodes[0].overlay_ipv6(), pair.nodes[1].overlay_ipv6());
    // Only a calls (b runs no timer, so it starts no handshake of its own).
    pair.nodes[0].handle_tun_packet(now, &udp_v6(a6, b6, &[1u8; 200]));
    pair.settle();
    assert!(
        pair.delivered[1].is_empty(),
        "the data waits for the shaper"
    );
    assert_eq!(pair.nodes[0].qos_stats(now).depth_packets, 1);
    assert_eq!(pair.nodes[1].peers(now)[0].state, SessionState::Established);
}

#[test]
fn new_qos_settings_carry_queued_packets_and_bad_ones_change_nothing() {
    // 100 kbit/s: of five packets of 1,000 bytes at most one leaves at
    // once; the rest wait in the shaper.
    let shaped = QosConfig {
        uplink_bps: Some(100_000),
        ..QosConfig::default()
    };
    let mut pair = Pair::new(shaped.clone());
    let now = pair.now;
    for _ in 0..5 {
        pair.nodes[0].handle_tun_packet(now, &udp_v4(A, B, &[7u8; 1000]));
    }
    pair.settle();
    let waiting = pair.nodes[0].qos_stats(now).depth_packets;
    assert!(waiting >= 4, "{waiting} packets waiting");

    let bad = QosConfig {
        default_class: "no-such-class".into(),
        ..QosConfig::default()
    };
    assert!(pair.nodes[0].set_qos(now, bad).is_err());
    assert_eq!(pair.nodes[0].qos_config(), &shaped);
    assert_eq!(pair.nodes[0].qos_stats(now).depth_packets, waiting);

    pair.nodes[0].set_qos(now, QosConfig::default()).unwrap();
    pair.settle();
    assert_eq!(pair.nodes[0].qos_config(), &QosConfig::default());
    assert_eq!(pair.nodes[0].qos_stats(now).depth_packets, 0);
    assert_eq!(pair.delivered[1].len(), 5);
}
