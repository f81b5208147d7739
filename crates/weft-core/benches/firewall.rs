//! The firewall's cost per packet: the first packet of a flow against 20
//! rules, a packet of a tracked flow in a table of 10,000 flows, and the
//! firewall off. Run: `cargo bench -p weft-core --bench firewall`.
//! Figures are recorded in docs/BENCHMARKS.md; nothing here asserts on
//! time.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // a benchmark: one base instant, fixtures

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use divan::{Bencher, black_box};
use weft_core::firewall::{
    Direction, Firewall, FirewallConfig, PortMatch, Protocol, Rule, Verdict,
};
use weft_core::qos::{PacketInfo, PortRange};
use weft_core::{CaSecret, Certificate, CertificateTemplate, SecretKey};

fn main() {
    divan::main();
}

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const FLOWS: u16 = 10_000;

/// A TCP segment without payload (checksums left zero).
fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

/// 20 inbound rules on groups, ports and address ranges; only the last
/// matches the benchmark's traffic (TCP 5432 from group `app`), so a new
/// flow is tried against all of them.
fn config(enabled: bool) -> FirewallConfig {
    let mut inbound: Vec<Rule> = (0..19u16)
        .map(|i| Rule {
            protocol: Some(if i % 2 == 0 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            }),
            ports: vec![PortMatch::Range(PortRange::single(8000 + i))],
            groups: vec![format!("g{i}")],
            cidrs: vec![(Ipv4Addr::new(198, 19, (i + 1) as u8, 0).into(), 24)],
            ..Rule::default()
        })
        .collect();
    inbound.push(Rule {
        protocol: Some(Protocol::Tcp),
        ports: vec![PortMatch::Range(PortRange::single(5432))],
        groups: vec!["app".into()],
        ..Rule::default()
    });
    FirewallConfig {
        enabled,
        inbound,
        ..FirewallConfig::enabled()
    }
}

fn fixture(enabled: bool, max_entries: usize) -> (Firewall, Certificate) {
    let ca = CaSecret::new([1; 32], "bench", 0, 10_000).unwrap();
    let key = SecretKey::from_random([2; 64]);
    let peer = ca
        .sign(&CertificateTemplate {
            name: "app1".into(),
            public_key: key.public(),
            ipv4: Some("198.19.0.2/16".parse().unwrap()),
            groups: vec!["app".into(), "prod".into()],
            not_before: 0,
            not_after: 10_000,
        })
        .unwrap();
    let mut config = config(enabled);
    config.conntrack.max_entries = max_entries;
    (Firewall::new(&config, ca.certificate()).unwrap(), peer)
}

fn check(firewall: &mut Firewall, now: Instant, packet: &[u8], peer: &Certificate) -> Verdict {
    let info = PacketInfo::parse(packet).unwrap();
    firewall.check(now, Direction::Inbound, &info, packet, Some(peer))
}

/// The first packet of a flow: 20 rules tried, the flow inserted (the
/// table is large enough never to evict).
#[divan::bench(sample_count = 500, sample_size = 64)]
fn new_flow_20_rules(bencher: Bencher) {
    let (mut firewall, peer) = fixture(true, 1 << 22);
    let packets: Vec<Vec<u8>> = (0..u16::MAX)
        .map(|port| tcp(REMOTE, LOCAL, port, 5432, 0x02))
        .collect();
    let now = Instant::now();
    let mut next = 0usize;
    bencher.bench_local(|| {
        let packet = &packets[next % packets.len()];
        // Each packet only once per table: a fresh firewall every lap.
        next += 1;
        if next.is_multiple_of(packets.len()) {
            firewall = fixture(true, 1 << 22).0;
        }
        black_box(check(&mut firewall, now, packet, &peer))
    });
}

/// A packet of one of 10,000 tracked flows, a different one each time
/// (cold caches: the worst case of many concurrent flows).
#[divan::bench(sample_count = 500, sample_size = 64)]
fn tracked_flow_among_10000(bencher: Bencher) {
    let (mut firewall, peer) = fixture(true, 65_536);
    let now = Instant::now();
    let packets: Vec<Vec<u8>> = (0..FLOWS)
        .map(|port| tcp(REMOTE, LOCAL, 10_000 + port, 5432, 0x02))
        .collect();
    for packet in &packets {
        assert_eq!(check(&mut firewall, now, packet, &peer), Verdict::Pass);
    }
    let mut next = 0usize;
    let mut tick = now;
    bencher.bench_local(|| {
        next = (next + 7919) % packets.len();
        tick += Duration::from_nanos(100);
        black_box(check(&mut firewall, tick, &packets[next], &peer))
    });
}

/// One busy flow, in a table of 10,000 flows (its entry stays in cache).
#[divan::bench(sample_count = 500, sample_size = 64)]
fn busy_flow_among_10000(bencher: Bencher) {
    let (mut firewall, peer) = fixture(true, 65_536);
    let now = Instant::now();
    for port in 0..FLOWS {
        let packet = tcp(REMOTE, LOCAL, 10_000 + port, 5432, 0x02);
        assert_eq!(check(&mut firewall, now, &packet, &peer), Verdict::Pass);
    }
    let packet = tcp(REMOTE, LOCAL, 10_000 + FLOWS / 2, 5432, 0x10);
    let mut tick = now;
    bencher.bench_local(|| {
        tick += Duration::from_nanos(100);
        black_box(check(&mut firewall, tick, &packet, &peer))
    });
}

/// The same packet with the firewall off (no `[firewall]` section).
#[divan::bench]
fn disabled(bencher: Bencher) {
    let (mut firewall, peer) = fixture(false, 1);
    let now = Instant::now();
    let packet = tcp(REMOTE, LOCAL, 40_000, 5432, 0x02);
    bencher.bench_local(|| black_box(check(&mut firewall, now, &packet, &peer)));
}

/// The header walk alone, which the node does once per packet anyway
/// (for QoS) and shares with the firewall.
#[divan::bench]
fn header_walk(bencher: Bencher) {
    let packet = tcp(REMOTE, LOCAL, 40_000, 5432, 0x02);
    bencher.bench_local(|| black_box(PacketInfo::parse(black_box(&packet))));
}
