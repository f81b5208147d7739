//! Fixtures shared by weft's fuzz targets and their seed generator.
//!
//! Everything here is fixed: keys, the CA and the certificates come from
//! constant bytes, the nodes from constant seeds, and time only from the
//! input. So a fuzz input means the same thing in every run, and a crash
//! reproduces from its input file alone.
//!
//! [`Harness`] drives two real nodes from a byte script: `a`, the node under
//! test, and `b`, a configured peer with which `a` can complete real
//! handshakes. The script interleaves raw datagrams, TUN packets, time jumps
//! and deliveries between the two, so the fuzzer reaches the handshake
//! responder and initiator, established sessions, rekeys, expiry and the
//! data path, not only the decoders. Uses only weft-core's public API.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weft_core::{
    CaCertificate, CaSecret, Certificate, CertificateTemplate, Node, NodeConfig, PeerConfig,
    SecretKey, SessionConfig,
};

/// Unix time at which every harness node starts.
pub const UNIX_START: u64 = 1_800_000_000;
/// Underlay address of node `a`.
pub const A_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 4800);
/// Underlay address of node `b`.
pub const B_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), 4800);
/// Underlay address of a stranger (raw datagrams, unconfigured members).
pub const OTHER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)), 4800);
/// Overlay IPv4 address in `a`'s certificate.
pub const A_IPV4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// Overlay IPv4 address in `b`'s certificate.
pub const B_IPV4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

/// Fixed identities: one network CA and the nodes it (or another CA) signed.
pub struct Fixture {
    /// The network CA.
    pub ca: CaSecret,
    /// Node `a`: the node under test.
    pub a: Identity,
    /// Node `b`: `a`'s configured peer.
    pub b: Identity,
    /// Node `c`: a valid member that `a` does not list as a peer.
    pub c: Identity,
    /// Another network's CA.
    pub other_ca: CaSecret,
    /// Node `x`: certified by the other CA.
    pub x: Identity,
    /// Node `old`: certified by the network CA, but expired at [`UNIX_START`].
    pub old: Identity,
}

/// A node's keys and certificate.
pub struct Identity {
    /// Secret keys.
    pub secret: SecretKey,
    /// Certificate.
    pub certificate: Certificate,
}

impl Fixture {
    /// The fixture, built once per process (signing is the costly part).
    pub fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(Fixture::build)
    }

    fn build() -> Fixture {
        // Constant inputs: these cannot fail (valid labels, ordered validity);
        // a failure would be a weft-core bug worth a crash report.
        let ca =
            CaSecret::new([1; 32], "fuzznet", 1_700_000_000, 1_900_000_000).expect("fixture CA");
        let other_ca =
            CaSecret::new([2; 32], "othernet", 1_700_000_000, 1_900_000_000).expect("fixture CA");
        let a = identity(&ca, 0xa1, "a", Some(A_IPV4), 1_900_000_000);
        let b = identity(&ca, 0xb2, "b", Some(B_IPV4), 1_900_000_000);
        let c = identity(&ca, 0xc3, "c", None, 1_900_000_000);
        let x = identity(&other_ca, 0xd4, "x", None, 1_900_000_000);
        let old = identity(&ca, 0xe5, "old", None, 1_750_000_000);
        Fixture {
            ca,
            a,
            b,
            c,
            other_ca,
            x,
            old,
        }
    }

    /// The network's CA certificate.
    pub fn ca_certificate(&self) -> &CaCertificate {
        self.ca.certificate()
    }
}

fn identity(
    ca: &CaSecret,
    seed: u8,
    name: &str,
    ipv4: Option<Ipv4Addr>,
    not_after: u64,
) -> Identity {
    let secret = SecretKey::from_random([seed; 64]);
    let template = CertificateTemplate {
        name: name.to_owned(),
        public_key: secret.public(),
        ipv4: ipv4.map(|addr| weft_core::Ipv4Net {
            addr,
            prefix_len: 16,
        }),
        groups: vec!["fuzz".to_owned()],
        not_before: 1_700_000_000,
        not_after,
    };
    // A valid label and an ordered validity: signing cannot refuse it.
    let certificate = ca.sign(&template).expect("fixture certificate");
    Identity {
        secret,
        certificate,
    }
}

/// The base instant of every harness. Only offsets from it matter to a node,
/// so its value does not make runs differ.
pub fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // a base instant is needed once; only offsets are used
    *BASE.get_or_init(Instant::now)
}

/// A node of the fixture network, with one configured peer.
pub fn node(me: &Identity, seed: u8, peer: &str, endpoint: Option<SocketAddr>) -> Node {
    let fixture = Fixture::get();
    let config = NodeConfig {
        secret_key: me.secret.clone(),
        certificate: me.certificate.clone(),
        ca: fixture.ca_certificate().clone(),
        peers: vec![PeerConfig {
            name: Some(peer.to_owned()),
            public_key: None,
            endpoint,
        }],
        session: SessionConfig::default(),
        routing: weft_core::RoutingConfig::default(),
        dht: weft_core::dht::DhtConfig::default(),
        bootstrap: Vec::new(),
        neighbours: weft_core::NeighbourConfig::default(),
        multicast: weft_core::mcast::MulticastConfig::default(),
        qos: weft_core::qos::QosConfig::default(),
        firewall: weft_core::firewall::FirewallConfig::default(),
        revocation: weft_core::RevocationConfig::default(),
    };
    // The certificate is the node's own, valid at UNIX_START, and the peer
    // entry is named: Node::new accepts this config.
    Node::new(
        base_instant(),
        std::time::Duration::from_secs(UNIX_START),
        [seed; 32],
        config,
    )
    .expect("fixture node")
}

/// Script operations; the op byte is taken modulo their number.
pub mod op {
    /// `[len u16][bytes]`: a datagram to `a` from `b`'s address.
    pub const DATAGRAM_FROM_B: u8 = 0;
    /// `[len u16][bytes]`: a datagram to `a` from a stranger's address.
    pub const DATAGRAM_FROM_OTHER: u8 = 1;
    /// `[len u16][bytes]`: an IP packet from `a`'s TUN.
    pub const TUN_A: u8 = 2;
    /// `[len u16][bytes]`: an IP packet from `b`'s TUN (sent to `a` if routed).
    pub const TUN_B: u8 = 3;
    /// `[u16]`: advance time by that many 10 ms, then run both nodes' timers.
    pub const ADVANCE: u8 = 4;
    /// Deliver every queued datagram between `a` and `b`, one round.
    pub const DELIVER: u8 = 5;
    /// Deliver again the last datagram `a` received from `b` (a replay).
    pub const REPLAY: u8 = 6;
    /// `[at u16][xor u8]`: flip bits of the next queued `b`→`a` datagram and
    /// deliver it.
    pub const MUTATE: u8 = 7;
    /// Number of operations.
    pub const COUNT: u8 = 8;
}

/// Inputs one persistent pair serves before it is rebuilt.
pub const PERSISTENT_INPUTS: u32 = 20_000;

/// Queued datagrams per direction; more are dropped (like a full link).
const MAX_IN_FLIGHT: usize = 64;

/// Two nodes, `a` under test and its peer `b`, driven by a script.
pub struct Harness {
    /// The node under test.
    pub a: Node,
    /// Its peer.
    pub b: Node,
    now: Instant,
    to_a: VecDeque<Vec<u8>>,
    to_b: VecDeque<Vec<u8>>,
    last_to_a: Option<Vec<u8>>,
    /// Every datagram either node sent, in order (for the seed generator).
    pub transcript: Vec<Vec<u8>>,
    record: bool,
    buf: Vec<u8>,
}

impl Harness {
    /// Builds the pair. `flags` bit 0: `a` knows `b`'s endpoint (and calls
    /// it); bit 1: `b` knows `a`'s.
    pub fn new(flags: u8) -> Harness {
        let fixture = Fixture::get();
        let a = node(&fixture.a, 0xaa, "b", (flags & 1 != 0).then_some(B_ADDR));
        let b = node(&fixture.b, 0xbb, "a", (flags & 2 != 0).then_some(A_ADDR));
        Harness {
            a,
            b,
            now: base_instant(),
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            last_to_a: None,
            transcript: Vec::new(),
            record: false,
            buf: Vec::new(),
        }
    }

    /// Keeps every datagram sent in [`Harness::transcript`].
    pub fn recording(mut self) -> Harness {
        self.record = true;
        self
    }

    /// Runs a whole input: a flags byte (see [`Harness::new`]), then a script.
    pub fn run_input(input: &[u8]) -> Harness {
        let (flags, script) = input.split_first().map_or((0, &[][..]), |(f, s)| (*f, s));
        let mut harness = Harness::new(flags);
        harness.run(script);
        harness
    }

    /// Runs an input on a pair kept for the whole process (the flags byte
    /// is read as the first byte of the script's noise and ignored): the
    /// pair is built with both sides calling, and rebuilt after
    /// [`PERSISTENT_INPUTS`] inputs or a virtual day, so certificates never
    /// expire under it. Building a pair and its first session costs most of
    /// a fresh input (about 600 inputs a second); reusing it lets one core
    /// run ten million inputs in hours, not days. The price: a crash may
    /// depend on inputs before it, so `WEFT_FUZZ_FRESH=1` runs each input on
    /// fresh nodes (as [`Harness::run_input`]) to check whether it
    /// reproduces alone.
    pub fn run_persistent(input: &[u8]) {
        thread_local! {
            static PAIR: RefCell<Option<(Harness, u32)>> = const { RefCell::new(None) };
        }
        static FRESH: OnceLock<bool> = OnceLock::new();
        if *FRESH.get_or_init(|| std::env::var_os("WEFT_FUZZ_FRESH").is_some()) {
            let _ = Harness::run_input(input);
            return;
        }
        let script = input.split_first().map_or(&[][..], |(_, s)| s);
        PAIR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let stale = slot.as_ref().is_none_or(|(harness, inputs)| {
                *inputs >= PERSISTENT_INPUTS
                    || harness.now.duration_since(base_instant()) > Duration::from_secs(86_400)
            });
            if stale {
                let mut harness = Harness::new(3);
                harness.timeout();
                *slot = Some((harness, 0));
            }
            let (harness, inputs) = slot.as_mut().expect("built above");
            *inputs += 1;
            harness.run(script);
        });
    }

    /// Runs a script of operations (see [`op`]) until it ends.
    pub fn run(&mut self, mut script: &[u8]) {
        // Both nodes start with their first timers (handshakes to peers
        // whose endpoint they know).
        self.timeout();
        while let Some((&code, rest)) = script.split_first() {
            script = rest;
            match code % op::COUNT {
                op::DATAGRAM_FROM_B => {
                    let bytes = take_chunk(&mut script);
                    self.send_to_a(B_ADDR, bytes);
                }
                op::DATAGRAM_FROM_OTHER => {
                    let bytes = take_chunk(&mut script);
                    self.send_to_a(OTHER_ADDR, bytes);
                }
                op::TUN_A => {
                    let bytes = take_chunk(&mut script);
                    self.a.handle_tun_packet(self.now, bytes);
                    self.drain();
                }
                op::TUN_B => {
                    let bytes = take_chunk(&mut script);
                    self.b.handle_tun_packet(self.now, bytes);
                    self.drain();
                }
                op::ADVANCE => {
                    let steps = take_u16(&mut script);
                    self.now += Duration::from_millis(10) * u32::from(steps);
                    self.timeout();
                }
                op::DELIVER => self.deliver(),
                op::REPLAY => {
                    if let Some(datagram) = self.last_to_a.take() {
                        self.send_to_a(B_ADDR, &datagram);
                        self.last_to_a = Some(datagram);
                    }
                }
                _ => {
                    let at = usize::from(take_u16(&mut script));
                    let xor = take_u8(&mut script);
                    if let Some(mut datagram) = self.to_a.pop_front() {
                        if !datagram.is_empty() {
                            let len = datagram.len();
                            datagram[at % len] ^= xor;
                        }
                        self.send_to_a(B_ADDR, &datagram);
                    }
                }
            }
        }
    }

    /// The current time of the harness.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn timeout(&mut self) {
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        self.drain();
    }

    fn deliver(&mut self) {
        let to_b = std::mem::take(&mut self.to_b);
        for datagram in to_b {
            self.b.handle_datagram(self.now, A_ADDR, &datagram);
        }
        let to_a = std::mem::take(&mut self.to_a);
        for datagram in to_a {
            self.a.handle_datagram(self.now, B_ADDR, &datagram);
            self.last_to_a = Some(datagram);
        }
        self.drain();
    }

    fn send_to_a(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.a.handle_datagram(self.now, from, bytes);
        self.drain();
    }

    /// Drains both nodes as the call contract asks, checking what `a`
    /// hands its TUN.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(to) = self.a.poll_transmit(&mut self.buf) {
                progressed = true;
                if self.record {
                    self.transcript.push(self.buf.clone());
                }
                if to == B_ADDR && self.to_b.len() < MAX_IN_FLIGHT {
                    self.to_b.push_back(self.buf.clone());
                }
            }
            while self.a.poll_tun(&mut self.buf) {
                progressed = true;
                assert_from_b(&self.buf);
            }
            while self.a.poll_event().is_some() {
                progressed = true;
            }
            while let Some(to) = self.b.poll_transmit(&mut self.buf) {
                progressed = true;
                if self.record {
                    self.transcript.push(self.buf.clone());
                }
                if to == A_ADDR && self.to_a.len() < MAX_IN_FLIGHT {
                    self.to_a.push_back(self.buf.clone());
                }
            }
            while self.b.poll_tun(&mut self.buf) {
                progressed = true;
            }
            while self.b.poll_event().is_some() {
                progressed = true;
            }
            // Polling never creates new output, so one pass empties both;
            // the loop only guards against that changing.
            if !progressed {
                break;
            }
        }
        // poll_timeout must answer after every drain (and never panic).
        let _ = self.a.poll_timeout();
        let _ = self.b.poll_timeout();
    }
}

/// Only `b` has a session with `a` in the harness, and `a` must deliver to
/// its TUN only packets whose source address is `b`'s, or the ICMP errors
/// it makes itself (destination unreachable for a packet it cannot route),
/// whose source is `a`'s own address.
fn assert_from_b(packet: &[u8]) {
    let fixture = Fixture::get();
    let b_ipv6 = fixture.b.certificate.node_id().overlay_ipv6();
    let a_ipv6 = fixture.a.certificate.node_id().overlay_ipv6();
    let source_ok = match packet.first().map(|v| v >> 4) {
        Some(4) => {
            let source = packet.get(12..16);
            source == Some(&B_IPV4.octets()[..])
                || (source == Some(&A_IPV4.octets()[..]) && packet.get(9) == Some(&1))
        }
        Some(6) => {
            let source = packet.get(8..24);
            source == Some(&b_ipv6.octets()[..])
                || (source == Some(&a_ipv6.octets()[..]) && packet.get(6) == Some(&58))
        }
        _ => false,
    };
    assert!(
        source_ok,
        "node a delivered a packet not from b to its TUN: {packet:02x?}"
    );
}

fn take_u8(script: &mut &[u8]) -> u8 {
    let Some((&byte, rest)) = script.split_first() else {
        return 0;
    };
    *script = rest;
    byte
}

fn take_u16(script: &mut &[u8]) -> u16 {
    u16::from_be_bytes([take_u8(script), take_u8(script)])
}

fn take_chunk<'a>(script: &mut &'a [u8]) -> &'a [u8] {
    let len = usize::from(take_u16(script)).min(script.len());
    let (chunk, rest) = script.split_at(len);
    *script = rest;
    chunk
}

/// Encodes a script record carrying bytes (`op`, length, bytes).
pub fn chunk(op: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![op];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

/// Encodes a time jump of `millis` (rounded down to 10 ms steps, at most
/// 655.35 s).
pub fn advance(millis: u64) -> Vec<u8> {
    let steps = u16::try_from(millis / 10).unwrap_or(u16::MAX);
    let mut out = vec![op::ADVANCE];
    out.extend_from_slice(&steps.to_be_bytes());
    out
}

/// A minimal IPv6 packet (UDP payload) from `src` to `dst`.
pub fn ipv6_packet(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len() + 8).unwrap_or(u16::MAX);
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[17, 64]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&[0x30, 0x39, 0x30, 0x39]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}

/// A minimal IPv4 packet (UDP payload, checksum not computed) from `src` to
/// `dst`.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + 8 + payload.len()).unwrap_or(u16::MAX);
    let mut out = vec![0x45, 0];
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&[0x30, 0x39, 0x30, 0x39]);
    out.extend_from_slice(&(total - 20).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    out
}
