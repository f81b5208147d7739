//! Fuzzes the firewall with arbitrary packets in both directions: the
//! header walk it shares with QoS, the flow view, rule matching, the
//! connection table (with a table of 8 so eviction runs) and ICMP errors
//! quoting arbitrary bytes. Total: a verdict for every input, and the table
//! never exceeds its bound.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weft_core::firewall::{
    Action, Direction, Firewall, FirewallConfig, IcmpType, PortMatch, Protocol, Rule,
};
use weft_core::qos::{PacketInfo, PortRange};
use weft_fuzz::Fixture;

fuzz_target!(|data: &[u8]| {
    let fixture = Fixture::get();
    let mut config = FirewallConfig::enabled();
    config.conntrack.max_entries = 8;
    config.inbound = vec![
        Rule {
            protocol: Some(Protocol::Tcp),
            ports: vec![PortMatch::Range(PortRange {
                start: 0,
                end: 1024,
            })],
            ..Rule::default()
        },
        Rule {
            protocol: Some(Protocol::Icmp),
            icmp_types: vec![IcmpType::EchoRequest],
            ..Rule::default()
        },
        Rule {
            action: Action::Reject,
            ports: vec![PortMatch::Fragment],
            ..Rule::default()
        },
    ];
    let Ok(mut firewall) = Firewall::new(&config, fixture.ca_certificate()) else {
        return;
    };
    #[allow(clippy::disallowed_methods)] // one base instant; the rest come from the input
    let mut now = Instant::now();
    let peer = Some(&fixture.b.certificate);
    // Each record: a direction and time byte, a length byte, the packet.
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_secs(u64::from(control >> 1));
        let direction = if control & 1 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        if let Some(info) = PacketInfo::parse(packet) {
            let _ = firewall.check(now, direction, &info, packet, peer);
        }
        assert!(firewall.stats().conntrack_entries <= 8);
    }
});
