//! Three nodes in a triangle, stepped by hand in virtual time: when the
//! direct link between two of them is cut, traffic goes through the third,
//! end to end encrypted, and comes back to the direct link when it heals.
//! The many-node scenarios live in weft-sim; this is the smallest check of
//! the routing core on its own.

#![allow(clippy::disallowed_methods)] // one base instant; everything else is offsets
#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use common::udp_v4;
use std::time::{Duration, Instant};

use weft_core::{
    CaSecret, CertificateTemplate, Event, LinkHealth, Metric, Node, NodeConfig, PeerConfig,
    RoutingConfig, SecretKey, SessionConfig,
};

const UNIX_START: u64 = 1_800_000_000;
const LATENCY: Duration = Duration::from_millis(2);

struct Mesh {
    now: Instant,
    nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    /// Datagrams in flight: (arrival, to, from, bytes).
    flight: Vec<(Instant, usize, usize, Vec<u8>)>,
    cut: BTreeSet<(usize, usize)>,
    delivered: Vec<Vec<(Instant, Vec<u8>)>>,
    events: Vec<Vec<Event>>,
}

impl Mesh {
    fn new(n: usize) -> Self {
        let now = Instant::now();
        let ca = CaSecret::new([1; 32], "test", UNIX_START - 100, UNIX_START + 86_400).unwrap();
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| format!("198.18.0.{}:4800", i + 1).parse().unwrap())
            .collect();
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_random([i as u8 + 2; 64]))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let certificate = ca
                    .sign(&CertificateTemplate {
                        name: format!("n{i}"),
                        public_key: keys[i].public(),
                        ipv4: Some(format!("198.19.0.{}/16", i + 1).parse().unwrap()),
                        groups: vec![],
                        not_before: UNIX_START - 10,
                        not_after: UNIX_START + 86_400,
                    })
                    .unwrap();
                let peers = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| PeerConfig {
                        name: Some(format!("n{j}")),
                        public_key: None,
                        endpoint: Some(addrs[j]),
                    })
                    .collect();
                let config = NodeConfig {
                    secret_key: keys[i].clone(),
                    certificate,
                    ca: ca.certificate().clone(),
                    peers,
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
                Node::new(now, Duration::from_secs(UNIX_START), [i as u8; 32], config).unwrap()
            })
            .collect();
        Self {
            now,
            nodes,
            addrs,
            flight: Vec::new(),
            cut: BTreeSet::new(),
            delivered: vec![Vec::new(); n],
            events: vec![Vec::new(); n],
        }
    }

    fn set_cut(&mut self, a: usize, b: usize, cut: bool) {
        for pair in [(a, b), (b, a)] {
            if cut {
                self.cut.insert(pair);
            } else {
                self.cut.remove(&pair);
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let mut buf = Vec::new();
        while let Some(to) = self.nodes[i].poll_transmit(&mut buf) {
            let j = self.addrs.iter().position(|a| *a == to).unwrap();
            if !self.cut.contains(&(i, j)) {
                self.flight.push((self.now + LATENCY, j, i, buf.clone()));
            }
        }
        while self.nodes[i].poll_tun(&mut buf) {
            self.delivered[i].push((self.now, buf.clone()));
        }
        while let Some(event) = self.nodes[i].poll_event() {
            self.events[i].push(event);
        }
    }

    /// Runs every event up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let timer = self
                .nodes
                .iter()
                .filter_map(|n| n.poll_timeout().map(|(t, _)| t))
                .min();
            let arrival = self.flight.iter().map(|f| f.0).min();
            let next = [timer, arrival].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until;
                return;
            };
            self.now = next.max(self.now);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.0 <= now);
            self.flight = rest;
            for (_, to, from, bytes) in due {
                let addr = self.addrs[from];
                self.nodes[to].handle_datagram(now, addr, &bytes);
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|(t, _)| t <= now) {
                    self.nodes[i].handle_timeout(now);
                }
                self.drain(i);
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, payload: &[u8]) {
        let packet = udp_v4(
            Ipv4Addr::new(198, 19, 0, from as u8 + 1),
            Ipv4Addr::new(198, 19, 0, to as u8 + 1),
            payload,
        );
        let now = self.now;
        self.nodes[from].handle_tun_packet(now, &packet);
        self.drain(from);
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_cut_link_is_routed_around_and_healed() {
    let mut mesh = Mesh::new(3);
    let start = mesh.now;
    mesh.run_until(start + ms(3_000));
    let trace = mesh.nodes[0]
        .trace(mesh.now, "n1", Metric::Latency)
        .unwrap();
    assert_eq!(trace.path.len(), 1, "direct at first: {trace:?}");

    // n0 sends n1 a packet every 10 ms; the n0–n1 link is cut at 4 s.
    let cut_at = start + ms(4_000);
    let mut sent = 0u32;
    while mesh.now < start + ms(8_000) {
        if mesh.now >= cut_at && !mesh.cut.contains(&(0, 1)) {
            mesh.set_cut(0, 1, true);
        }
        mesh.send(0, 1, &sent.to_be_bytes());
        sent += 1;
        let next = mesh.now + ms(10);
        mesh.run_until(next);
    }
    let after_cut: Vec<Instant> = mesh.delivered[1]
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t >= cut_at)
        .collect();
    let first_after = after_cut
        .first()
        .copied()
        .expect("traffic resumed after the cut");
    // Packets sent just before the cut arrive within one latency; the
    // outage is the gap that follows.
    let resumed = after_cut.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(first_after < cut_at + ms(1_000));
    assert!(resumed < ms(400), "outage of {resumed:?}");
    let trace = mesh.nodes[0]
        .trace(mesh.now, "n1", Metric::Latency)
        .unwrap();
    assert_eq!(
        trace
            .path
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["n2", "n1"]
    );
    assert!(
        mesh.nodes[2].stats().relayed > 100,
        "n2 relayed: {}",
        mesh.nodes[2].stats().relayed
    );
    assert!(mesh.delivered[2].is_empty(), "the relay's TUN sees nothing");
    assert!(
        mesh.events[0]
            .iter()
            .any(|e| matches!(e, Event::LinkDown { name, .. } if name == "n1"))
    );

    // Heal: the route returns to the direct link.
    mesh.set_cut(0, 1, false);
    let healed = mesh.now;
    mesh.run_until(healed + ms(5_000));
    let peer = mesh.nodes[0]
        .peers(mesh.now)
        .into_iter()
        .find(|p| p.name.as_deref() == Some("n1"))
        .unwrap();
    assert_eq!(peer.link, LinkHealth::Up);
    let trace = mesh.nodes[0]
        .trace(mesh.now, "n1", Metric::Latency)
        .unwrap();
    assert_eq!(trace.path.len(), 1, "direct again: {trace:?}");
}

#[test]
fn pins_send_traffic_through_the_named_node() {
    let mut mesh = Mesh::new(3);
    let start = mesh.now;
    mesh.run_until(start + ms(3_000));
    let now = mesh.now;
    mesh.nodes[0].pin_route(now, "n1", &["n2"]).unwrap();
    let before = mesh.nodes[2].stats().relayed;
    for i in 0..10u32 {
        mesh.send(0, 1, &i.to_be_bytes());
        let next = mesh.now + ms(10);
        mesh.run_until(next);
    }
    assert!(mesh.nodes[2].stats().relayed >= before + 10);
    let trace = mesh.nodes[0]
        .trace(mesh.now, "n1", Metric::Latency)
        .unwrap();
    assert!(trace.pinned);
    assert_eq!(trace.path.len(), 2);
    assert!(mesh.nodes[0].pin_route(now, "n1", &["nobody"]).is_err());
    assert!(mesh.nodes[0].pin_route(now, "n1", &["n1"]).is_err());
    let now = mesh.now;
    mesh.nodes[0].unpin_route(now, "n1").unwrap();
    assert_eq!(
        mesh.nodes[0]
            .trace(now, "n1", Metric::Latency)
            .unwrap()
            .path
            .len(),
        1
    );
}

#[test]
fn topology_lists_every_node_and_link_and_shows_a_cut() {
    let mut mesh = Mesh::new(3);
    let start = mesh.now;
    mesh.run_until(start + ms(3_000));
    let topology = mesh.nodes[0].topology(mesh.now);
    let names: Vec<(&str, bool)> = topology
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.this_node))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, [("n0", true), ("n1", false), ("n2", false)]);
    let name_of = |id| {
        topology
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.clone())
            .unwrap()
    };
    let links: BTreeSet<(String, String, LinkHealth)> = topology
        .links
        .iter()
        .map(|l| (name_of(l.from), name_of(l.to), l.health))
        .collect();
    let mut expected = BTreeSet::new();
    for a in ["n0", "n1", "n2"] {
        for b in ["n0", "n1", "n2"] {
            if a != b {
                expected.insert((a.to_owned(), b.to_owned(), LinkHealth::Up));
            }
        }
    }
    assert_eq!(links, expected);
    for link in &topology.links {
        let rtt = link.rtt.unwrap();
        assert!(rtt >= 2 * LATENCY && rtt < ms(50), "{link:?}");
    }

    // Cut n0–n1 under traffic from n0: n0's own link shows down, and n1's
    // record stops listing its link to n0.
    let cut_at = mesh.now;
    mesh.set_cut(0, 1, true);
    let mut sent = 0u32;
    while mesh.now < cut_at + ms(2_000) {
        mesh.send(0, 1, &sent.to_be_bytes());
        sent += 1;
        let next = mesh.now + ms(10);
        mesh.run_until(next);
    }
    // n1 sends nothing to n0, so it finds the link dead at its idle probe
    // rate: give it time.
    let until = mesh.now + ms(10_000);
    mesh.run_until(until);
    let topology = mesh.nodes[0].topology(mesh.now);
    let id = |name: &str| topology.nodes.iter().find(|n| n.name == name).unwrap().id;
    let (n0, n1) = (id("n0"), id("n1"));
    let link = |from, to| topology.links.iter().find(|l| l.from == from && l.to == to);
    assert_eq!(link(n0, n1).map(|l| l.health), Some(LinkHealth::Down));
    assert!(link(n1, n0).is_none(), "{:?}", link(n1, n0));
}
