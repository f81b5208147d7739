//! A hostile host on the underlay, for a long time: it holds only public
//! information (the CA certificate, the members' certificates and
//! addresses) and sends the members random bytes, mutated and replayed
//! copies of their own datagrams, and forged handshake inits, from its own
//! address and from spoofed ones (replays are of datagrams that already
//! arrived). Every simulated second the invariants are
//! checked: every session stays up, no endpoint moves, every flow packet
//! arrives once and at the right host, and no member ever sends the
//! attacker more bytes than it received from it.

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;

use common::{ms, new_sim, secs};
use weft_core::wire::SessionIndex;
use weft_core::{HandshakeKeys, SecretKey};
use weft_sim::{FlowSpec, MeshBuilder};

/// xorshift64*: the attacker's own randomness, from the test's seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn a_member_network_shrugs_off_a_minute_of_forged_replayed_and_random_datagrams() {
    let mut sim = new_sim(31);
    let mesh = MeshBuilder::new(4).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    assert!(sim.run_until_condition(secs(5), |s| s.all_established(&hosts)));
    let attacker = sim.allocate_address();
    let addresses: Vec<SocketAddr> = hosts.iter().map(|&h| sim.address(h)).collect();
    let certificates: Vec<_> = hosts
        .iter()
        .map(|&h| sim.config(h).certificate.clone())
        .collect();
    let keys = HandshakeKeys::new(&sim.config(hosts[0]).ca);
    let forger = SecretKey::from_random([0x66; 64]);
    let mut dice = Dice(sim.seed() | 1);

    // Traffic between members all along: a ring of flows.
    let start = sim.elapsed();
    let flows: Vec<_> = (0..hosts.len())
        .map(|i| {
            let mut spec = FlowSpec::new(hosts[i], hosts[(i + 1) % hosts.len()]);
            spec.start = start;
            spec.interval = ms(50);
            spec.count = 1200;
            sim.start_flow(&spec).unwrap()
        })
        .collect();
    let captures: Vec<_> = (0..hosts.len())
        .map(|i| sim.capture(hosts[i], hosts[(i + 1) % hosts.len()]))
        .collect();

    let mut sent_to = vec![0u64; hosts.len()];
    let mut attacks = 0u64;
    for second in 0..60 {
        for _ in 0..200 {
            let victim = dice.below(hosts.len());
            let to = addresses[victim];
            // From the attacker's address, or spoofed as another member.
            let from = if dice.below(2) == 0 {
                attacker
            } else {
                addresses[(victim + 1 + dice.below(hosts.len() - 1)) % hosts.len()]
            };
            let bytes = match dice.below(4) {
                0 => {
                    let len = dice.below(1500);
                    dice.bytes(len)
                }
                1 | 2 => {
                    // Copies of datagrams that already arrived: an
                    // attacker that races a fresh one ahead of the original
                    // can move an endpoint until the next genuine packet,
                    // as in WireGuard (PROTOCOL §3.1); it could as well
                    // drop it.
                    let seen: Vec<_> = sim
                        .captured(captures[dice.below(captures.len())])
                        .iter()
                        .filter(|c| !c.delivered.is_empty())
                        .cloned()
                        .collect();
                    let Some(c) = seen.get(dice.below(seen.len().max(1))) else {
                        continue;
                    };
                    let mut bytes = c.bytes.clone();
                    if dice.below(2) == 0 && !bytes.is_empty() {
                        let at = dice.below(bytes.len());
                        bytes[at] ^= 1 << dice.below(8);
                    }
                    bytes
                }
                _ => {
                    let cert = &certificates[dice.below(certificates.len())];
                    let timestamp = match dice.below(3) {
                        0 => 0,
                        1 => sim.unix_wall_clock().as_nanos() as u64,
                        _ => u64::MAX,
                    };
                    keys.forge_init(
                        cert,
                        &forger,
                        timestamp,
                        SessionIndex(dice.next() as u32),
                        300,
                    )
                }
            };
            if from == attacker {
                sent_to[victim] += bytes.len() as u64;
            }
            sim.inject_datagram(to, from, &bytes);
            attacks += 1;
            sim.run_for(ms(5));
        }
        // Invariants, every simulated second.
        assert!(
            sim.all_established(&hosts),
            "second {second}: a session fell"
        );
        for (i, &h) in hosts.iter().enumerate() {
            for (j, &peer) in hosts.iter().enumerate() {
                if i == j {
                    continue;
                }
                let status = sim.peer_status(h, peer).unwrap();
                assert_eq!(
                    status.endpoint,
                    Some(addresses[j]),
                    "second {second}: {}'s endpoint for {} moved",
                    sim.name(h),
                    sim.name(peer)
                );
            }
        }
        assert_eq!(sim.misdelivered(), 0);
    }
    sim.run_for(secs(2));
    for &flow in &flows {
        let report = sim.flow(flow);
        let lost = report.arrived.iter().filter(|a| a.is_none()).count();
        assert_eq!(lost, 0, "{lost} flow packets lost");
        assert_eq!(report.duplicates, 0);
    }
    let to_attacker = sim
        .stats()
        .bytes_to_nobody
        .get(&attacker)
        .copied()
        .unwrap_or(0);
    let from_attacker: u64 = sent_to.iter().sum();
    assert!(
        to_attacker <= from_attacker,
        "{to_attacker} bytes to the attacker, which sent {from_attacker}"
    );
    let roamed: u64 = hosts
        .iter()
        .map(|&h| sim.node(h).unwrap().stats().peers_roamed)
        .sum();
    assert_eq!(roamed, 0);
    assert!(attacks > 11_000, "only {attacks} attacks sent");
}
