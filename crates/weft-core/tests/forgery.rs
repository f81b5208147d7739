//! Attacks on the handshake by someone who holds only public information:
//! the CA certificate and members' certificates (any member can read them
//! from the DHT). Three nodes in virtual time and an attacker that forges,
//! replays and floods inits; nothing it sends may move an endpoint, change
//! a timestamp, end a session or buy more than a bounded amount of work.

#![allow(clippy::disallowed_methods)] // one base instant; everything else is offsets
#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::udp_v4;
use weft_core::wire::{self, SessionIndex};
use weft_core::{
    CaSecret, Certificate, CertificateTemplate, HandshakeKeys, Node, NodeConfig, PeerConfig,
    SecretKey, SessionState,
};

const UNIX_START: u64 = 1_800_000_000;
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

struct Net {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    certs: Vec<Certificate>,
    keys: HandshakeKeys,
    ca: CaSecret,
    /// Bytes the nodes sent to addresses that are no node's, by address.
    sent_to_others: BTreeMap<SocketAddr, u64>,
    /// Packets node A got on its TUN.
    delivered_to_a: usize,
    /// Whether C's datagrams reach the others (C joins later).
    c_online: bool,
    /// Captured inits from A to B (the attacker is on the path).
    captured: Vec<Vec<u8>>,
}

fn config(ca: &CaSecret, seed: u8, name: &str, ip: [u8; 4], peers: Vec<PeerConfig>) -> NodeConfig {
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
    let mut config = NodeConfig::new(secret, certificate, ca.certificate().clone());
    config.peers = peers;
    config
}

fn peer(name: &str, endpoint: SocketAddr) -> PeerConfig {
    PeerConfig {
        name: Some(name.into()),
        public_key: None,
        endpoint: Some(endpoint),
    }
}

impl Net {
    /// A and B know each other; C knows B and calls it when it comes
    /// online.
    fn new() -> Self {
        let now = Instant::now();
        let ca = CaSecret::new([1; 32], "test", UNIX_START - 100, UNIX_START + 86_400).unwrap();
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::from(([198, 18, 0, i], 4800)))
            .collect();
        let configs = [
            config(&ca, 2, "a", [198, 19, 0, 1], vec![peer("b", addrs[B])]),
            config(&ca, 3, "b", [198, 19, 0, 2], vec![peer("a", addrs[A])]),
            config(&ca, 4, "c", [198, 19, 0, 3], vec![peer("b", addrs[B])]),
        ];
        let certs = configs.iter().map(|c| c.certificate.clone()).collect();
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                Node::new(now, Duration::from_secs(UNIX_START), [i as u8 + 2; 32], c).unwrap()
            })
            .collect();
        Self {
            start: now,
            now,
            nodes,
            addrs,
            certs,
            keys: HandshakeKeys::new(ca.certificate()),
            ca,
            sent_to_others: BTreeMap::new(),
            delivered_to_a: 0,
            c_online: false,
            captured: Vec::new(),
        }
    }

    fn settle(&mut self) {
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(to) = self.nodes[i].poll_transmit(&mut buf) {
                    moved = true;
                    if i == C && !self.c_online {
                        continue;
                    }
                    match self.addrs.iter().position(|a| *a == to) {
                        Some(j) if j != C || self.c_online => {
                            if i == A && j == B && buf.first() == Some(&0x21) {
                                self.captured.push(buf.clone());
                            }
                            let from = self.addrs[i];
                            self.nodes[j].handle_datagram(self.now, from, &buf);
                        }
                        Some(_) => {}
                        None => *self.sent_to_others.entry(to).or_default() += buf.len() as u64,
                    }
                }
                while self.nodes[i].poll_tun(&mut buf) {
                    if i == A {
                        self.delivered_to_a += 1;
                    }
                }
                while self.nodes[i].poll_event().is_some() {}
            }
            if !moved {
                return;
            }
        }
    }

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

    fn run_for(&mut self, span: Duration) {
        let until = self.now + span;
        while self.now < until {
            self.advance(until - self.now);
        }
    }

    fn established(&self, i: usize, name: &str) -> bool {
        self.nodes[i]
            .peers(self.now)
            .iter()
            .any(|p| p.name.as_deref() == Some(name) && p.state == SessionState::Established)
    }

    fn endpoint_of(&self, i: usize, name: &str) -> Option<SocketAddr> {
        self.nodes[i]
            .peers(self.now)
            .into_iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| p.endpoint)
    }

    /// Starts C afresh (it comes online now and calls B at once).
    fn start_c(&mut self) {
        let addrs = self.addrs.clone();
        let c = config(&self.ca, 4, "c", [198, 19, 0, 3], vec![peer("b", addrs[B])]);
        self.nodes[C] = Node::new(
            self.now,
            Duration::from_secs(UNIX_START) + (self.now - self.start()),
            [4; 32],
            c,
        )
        .unwrap();
        self.c_online = true;
        self.settle();
    }

    fn start(&self) -> Instant {
        self.start
    }

    /// B pings A's overlay address once; counts what A delivered.
    fn ping_a_from_b(&mut self) {
        let packet = udp_v4(
            Ipv4Addr::new(198, 19, 0, 2),
            Ipv4Addr::new(198, 19, 0, 1),
            b"ping",
        );
        self.nodes[B].handle_tun_packet(self.now, &packet);
        self.settle();
    }

    /// An init as a forger writes it: A's certificate and static key, a
    /// fresh ephemeral key, the given timestamp, a signature it cannot make
    /// right (its own key's), a valid mac1. `pad` makes it as long as a
    /// genuine one.
    fn forged_init(&self, victim: usize, timestamp: u64, sender: u32, pad: usize) -> Vec<u8> {
        let attacker = SecretKey::from_random([99; 64]);
        self.keys.forge_init(
            &self.certs[victim],
            &attacker,
            timestamp,
            SessionIndex(sender),
            pad,
        )
    }

    /// Delivers `datagram` to node `to` as if from `from`.
    fn inject(&mut self, to: usize, from: SocketAddr, datagram: &[u8]) {
        self.nodes[to].handle_datagram(self.now, from, datagram);
        self.settle();
    }
}

fn established_pair() -> Net {
    let mut net = Net::new();
    net.advance(Duration::ZERO);
    net.run_for(Duration::from_millis(100));
    assert!(net.established(A, "b") && net.established(B, "a"));
    net
}

const ATTACKER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(198, 18, 0, 66)), 4800);

#[test]
fn forged_inits_with_any_timestamp_move_nothing_and_block_nothing() {
    let mut net = established_pair();
    let a_at_b = net.endpoint_of(B, "a");
    let delivered = net.delivered_to_a;
    let mut sent_by_attacker = 0u64;
    for (i, timestamp) in [0, UNIX_START * 1_000_000_000, u64::MAX]
        .into_iter()
        .enumerate()
    {
        // From the attacker's own address and from A's (spoofed).
        for from in [ATTACKER, net.addrs[A]] {
            let forged = net.forged_init(A, timestamp, 7 + i as u32, 400);
            if from == ATTACKER {
                sent_by_attacker += forged.len() as u64;
            }
            net.inject(B, from, &forged);
            net.ping_a_from_b();
        }
    }
    let stats = net.nodes[B].stats().clone();
    // Timestamps not newer than A's last are refused as replays for the
    // price of a comparison; the rest fail the signature.
    assert_eq!(stats.handshake_rejected_replay, 4, "{stats:?}");
    assert_eq!(stats.handshake_rejected_init_signature, 2, "{stats:?}");
    assert_eq!(stats.peers_roamed, 0);
    assert_eq!(net.endpoint_of(B, "a"), a_at_b, "B's endpoint for A moved");
    assert_eq!(net.delivered_to_a, delivered + 6, "a ping was lost");
    let to_attacker = net.sent_to_others.get(&ATTACKER).copied().unwrap_or(0);
    assert!(to_attacker <= sent_by_attacker);
    // The forged u64::MAX timestamp poisoned nothing: sessions rekey and
    // re-form for the next ten minutes, with no init refused as a replay.
    let before = net.nodes[B].stats().handshakes_completed;
    let replays = stats.handshake_rejected_replay;
    for _ in 0..600 {
        net.run_for(Duration::from_secs(1));
        net.ping_a_from_b();
    }
    let after = net.nodes[B].stats();
    assert!(after.handshakes_completed >= before + 4, "{after:?}");
    assert_eq!(after.handshake_rejected_replay, replays);
    assert!(net.established(A, "b") && net.established(B, "a"));
}

#[test]
fn a_replayed_genuine_init_is_refused_before_any_public_key_work() {
    let mut net = established_pair();
    let init = net.captured.last().cloned().expect("captured A's init");
    let a_at_b = net.endpoint_of(B, "a");
    let before = net.nodes[B].stats().clone();
    for from in [ATTACKER, net.addrs[A]] {
        net.inject(B, from, &init);
    }
    let after = net.nodes[B].stats();
    assert_eq!(
        after.handshake_rejected_replay,
        before.handshake_rejected_replay + 2
    );
    assert_eq!(
        after.handshake_rejected_init_signature,
        before.handshake_rejected_init_signature
    );
    assert_eq!(after.handshakes_completed, before.handshakes_completed);
    assert_eq!(net.endpoint_of(B, "a"), a_at_b);
    assert_eq!(net.sent_to_others.get(&ATTACKER), None, "answered a replay");
}

#[test]
fn garbage_with_a_wrong_mac1_costs_nothing_and_gets_nothing() {
    let mut net = established_pair();
    let mut forged = net.forged_init(A, u64::MAX, 9, 400);
    let at = forged.len() - 2 * wire::MAC_LEN;
    forged[at] ^= 1;
    for _ in 0..1000 {
        net.inject(B, ATTACKER, &forged);
    }
    let stats = net.nodes[B].stats();
    assert_eq!(stats.handshake_rejected_mac1, 1000);
    assert_eq!(stats.handshake_rejected_init_signature, 0);
    assert_eq!(net.sent_to_others.get(&ATTACKER), None);
}

/// 50,000 forged inits in one second, each from another spoofed address,
/// padded like genuine ones: B does public-key work for at most its budget,
/// sends no spoofed address more than it received from it, loses no ping,
/// and C, a member B has never seen, gets a session within two seconds.
#[test]
fn under_a_flood_work_is_bounded_and_a_new_member_still_gets_in() {
    let mut net = established_pair();
    let a_at_b = net.endpoint_of(B, "a");
    let delivered = net.delivered_to_a;
    let mut received_from: BTreeMap<SocketAddr, u64> = BTreeMap::new();
    let start = net.now;
    let mut pings = 0;
    let mut c_in = None;
    for i in 0..50_000u32 {
        if i == 10_000 {
            net.start_c();
        }
        let from = SocketAddr::from((
            [198, 18, 2 + (i >> 8) as u8, i as u8],
            1024 + (i % 60_000) as u16,
        ));
        let forged = net.forged_init(A, u64::MAX - u64::from(i), i, 400);
        *received_from.entry(from).or_default() += forged.len() as u64;
        net.inject(B, from, &forged);
        if i % 500 == 0 {
            net.ping_a_from_b();
            pings += 1;
        }
        // 20 µs apart: 50,000 per second.
        let next = start + Duration::from_micros(20 * u64::from(i + 1));
        while net.now < next {
            net.advance(next - net.now);
        }
        if c_in.is_none() && net.established(C, "b") && net.established(B, "c") {
            c_in = Some(net.now);
        }
    }
    let stats = net.nodes[B].stats().clone();
    let worked = stats.handshake_rejected_init_signature;
    // The budget: a burst of 100 and 200 a second, over one second.
    assert!(
        worked <= 100 + 200 + 10,
        "{worked} forged inits got public-key work"
    );
    assert!(stats.handshake_cookies_sent > 40_000, "{stats:?}");
    for (addr, sent) in &net.sent_to_others {
        let got = received_from.get(addr).copied().unwrap_or(0);
        assert!(*sent <= got, "{sent} bytes to {addr}, which sent {got}");
    }
    assert_eq!(net.endpoint_of(B, "a"), a_at_b);
    assert_eq!(net.delivered_to_a, delivered + pings, "pings lost");
    let joined = c_in.expect("C never got a session with B during the flood");
    let c_started = start + Duration::from_micros(20 * 10_000);
    assert!(
        joined - c_started < Duration::from_secs(2),
        "C waited {:?}",
        joined - c_started
    );
}
