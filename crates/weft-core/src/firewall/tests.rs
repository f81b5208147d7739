//! Firewall tests through its public surface: packets in, verdicts and
//! counters out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::identity::{CaSecret, CertificateTemplate, SecretKey};
use crate::qos::PortRange;

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;

/// Builds test packets (checksums left zero: nothing here checks them).
mod build {
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(src: IpAddr, dst: IpAddr, protocol: u8, body: &[u8]) -> Vec<u8> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(body);
                let len = u16::try_from(p.len()).unwrap();
                p[2..4].copy_from_slice(&len.to_be_bytes());
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let len = u16::try_from(body.len()).unwrap().to_be_bytes();
                let mut p = vec![0x60, 0, 0, 0, len[0], len[1], protocol, 64];
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(body);
                p
            }
            _ => panic!("mixed families"),
        }
    }

    pub(super) fn tcp(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        sport: u16,
        dport: u16,
        flags: u8,
    ) -> Vec<u8> {
        let mut body = vec![0u8; 20];
        body[0..2].copy_from_slice(&sport.to_be_bytes());
        body[2..4].copy_from_slice(&dport.to_be_bytes());
        body[12] = 5 << 4;
        body[13] = flags;
        ip(src.into(), dst.into(), 6, &body)
    }

    pub(super) fn udp(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        sport: u16,
        dport: u16,
    ) -> Vec<u8> {
        let mut body = vec![0u8; 12];
        body[0..2].copy_from_slice(&sport.to_be_bytes());
        body[2..4].copy_from_slice(&dport.to_be_bytes());
        body[4..6].copy_from_slice(&12u16.to_be_bytes());
        ip(src.into(), dst.into(), 17, &body)
    }

    /// An echo request or reply (or any ICMP type) with identifier `id`.
    pub(super) fn icmp(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        icmp_type: u8,
        id: u16,
    ) -> Vec<u8> {
        let (src, dst) = (src.into(), dst.into());
        let protocol = if src.is_ipv6() { 58 } else { 1 };
        let mut body = vec![icmp_type, 0, 0, 0, 0, 0, 0, 1];
        body[4..6].copy_from_slice(&id.to_be_bytes());
        ip(src, dst, protocol, &body)
    }

    /// An ICMP error of `icmp_type` quoting the start of `quoted`.
    pub(super) fn icmp_error(
        src: impl Into<IpAddr>,
        dst: impl Into<IpAddr>,
        icmp_type: u8,
        quoted: &[u8],
    ) -> Vec<u8> {
        let (src, dst) = (src.into(), dst.into());
        let protocol = if src.is_ipv6() { 58 } else { 1 };
        let mut body = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&quoted[..quoted.len().min(48)]);
        ip(src, dst, protocol, &body)
    }

    /// The second fragment (offset 8 bytes) of a UDP datagram.
    pub(super) fn udp_trailing_fragment(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut p = ip(src.into(), dst.into(), 17, &[0u8; 16]);
        p[7] = 1;
        p
    }
}

struct Fixture {
    ca: CaSecret,
    now: Instant,
}

impl Fixture {
    fn new() -> Self {
        #[allow(clippy::disallowed_methods)] // one base instant; the rest are offsets
        let now = Instant::now();
        Self {
            ca: CaSecret::new([7; 32], "testnet", 0, 10_000).unwrap(),
            now,
        }
    }

    fn cert(&self, name: &str, groups: &[&str]) -> Certificate {
        let seed = name
            .bytes()
            .fold(1u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let key = SecretKey::from_random([seed; 64]);
        self.ca
            .sign(&CertificateTemplate {
                name: name.into(),
                public_key: key.public(),
                ipv4: Some("198.19.0.2/16".parse().unwrap()),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
                not_before: 0,
                not_after: 10_000,
            })
            .unwrap()
    }

    fn firewall(&self, config: FirewallConfig) -> Firewall {
        Firewall::new(&config, self.ca.certificate()).unwrap()
    }
}

fn check(
    firewall: &mut Firewall,
    now: Instant,
    direction: Direction,
    packet: &[u8],
    peer: Option<&Certificate>,
) -> Verdict {
    let info = PacketInfo::parse(packet).unwrap();
    firewall.check(now, direction, &info, packet, peer)
}

fn tcp_port(port: u16) -> Rule {
    Rule {
        protocol: Some(Protocol::Tcp),
        ports: vec![PortMatch::Range(PortRange::single(port))],
        ..Rule::default()
    }
}

use Direction::{Inbound, Outbound};

#[test]
fn a_disabled_firewall_passes_everything_and_tracks_nothing() {
    let f = Fixture::new();
    let mut firewall = f.firewall(FirewallConfig::default());
    let peer = f.cert("b", &[]);
    let syn = build::tcp(REMOTE, LOCAL, 40000, 22, SYN);
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &syn, Some(&peer)),
        Verdict::Pass
    );
    let stats = firewall.stats();
    assert!(!stats.enabled);
    assert_eq!(stats.conntrack_entries, 0);
    assert_eq!(stats.inbound.default_packets, 0);
}

#[test]
fn inbound_is_dropped_by_default_and_replies_to_outbound_pass() {
    let f = Fixture::new();
    let mut firewall = f.firewall(FirewallConfig::enabled());
    let peer = f.cert("b", &[]);
    let now = f.now;
    // Someone else's connection attempt: dropped, counted by the default.
    let syn_in = build::tcp(REMOTE, LOCAL, 40000, 22, SYN);
    assert_eq!(
        check(&mut firewall, now, Inbound, &syn_in, Some(&peer)),
        Verdict::Drop
    );
    // Our own connection: allowed out, and its answer comes back in.
    let syn_out = build::tcp(LOCAL, REMOTE, 50000, 80, SYN);
    let syn_ack = build::tcp(REMOTE, LOCAL, 80, 50000, SYN | ACK);
    assert_eq!(
        check(&mut firewall, now, Outbound, &syn_out, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(
        check(&mut firewall, now, Inbound, &syn_ack, Some(&peer)),
        Verdict::Pass
    );
    // Another port of the same peer is another flow.
    let other = build::tcp(REMOTE, LOCAL, 81, 50000, SYN | ACK);
    assert_eq!(
        check(&mut firewall, now, Inbound, &other, Some(&peer)),
        Verdict::Drop
    );
    let stats = firewall.stats();
    assert_eq!(stats.inbound.default_packets, 2);
    assert_eq!(stats.inbound.dropped(), 2);
    assert_eq!(stats.outbound.default_packets, 1);
    assert_eq!(stats.outbound.dropped(), 0);
    assert_eq!(stats.tracked, 1);
    assert_eq!(stats.conntrack_entries, 1);
}

#[test]
fn an_allowed_inbound_flow_lets_its_replies_out_whatever_the_outbound_rules() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![tcp_port(22)];
    config.outbound_default = Action::Drop;
    let mut firewall = f.firewall(config);
    let peer = f.cert("b", &[]);
    let now = f.now;
    let syn = build::tcp(REMOTE, LOCAL, 40000, 22, SYN);
    let syn_ack = build::tcp(LOCAL, REMOTE, 22, 40000, SYN | ACK);
    assert_eq!(
        check(&mut firewall, now, Inbound, &syn, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(
        check(&mut firewall, now, Outbound, &syn_ack, Some(&peer)),
        Verdict::Pass
    );
    let new_out = build::tcp(LOCAL, REMOTE, 40001, 80, SYN);
    assert_eq!(
        check(&mut firewall, now, Outbound, &new_out, Some(&peer)),
        Verdict::Drop
    );
    assert_eq!(firewall.stats().inbound.rules[0].packets, 1);
}

#[test]
fn the_first_matching_rule_decides_and_is_counted() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![
        Rule {
            name: Some("no-telnet".into()),
            action: Action::Reject,
            ..tcp_port(23)
        },
        Rule {
            protocol: Some(Protocol::Tcp),
            ..Rule::default()
        },
        Rule {
            action: Action::Drop,
            ..tcp_port(22)
        },
    ];
    let mut firewall = f.firewall(config);
    let peer = f.cert("b", &[]);
    let telnet = build::tcp(REMOTE, LOCAL, 40000, 23, SYN);
    let ssh = build::tcp(REMOTE, LOCAL, 40001, 22, SYN);
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &telnet, Some(&peer)),
        Verdict::Reject
    );
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &ssh, Some(&peer)),
        Verdict::Pass
    );
    let stats = firewall.stats().inbound;
    let counts: Vec<(&str, u64)> = stats
        .rules
        .iter()
        .map(|r| (r.label.as_str(), r.packets))
        .collect();
    assert_eq!(
        counts,
        [("no-telnet", 1), ("inbound[1]", 1), ("inbound[2]", 0)]
    );
    assert_eq!(stats.dropped(), 1);
}

#[test]
fn new_rules_keep_the_flows_they_still_allow_and_close_the_others() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![
        Rule {
            name: Some("ssh".into()),
            ..tcp_port(22)
        },
        Rule {
            name: Some("web".into()),
            ..tcp_port(80)
        },
    ];
    let mut firewall = f.firewall(config.clone());
    let peer = f.cert("b", &[]);
    let now = f.now;
    // Two inbound connections, both answered.
    for port in [22, 80] {
        let syn = build::tcp(REMOTE, LOCAL, 40000, port, SYN);
        let syn_ack = build::tcp(LOCAL, REMOTE, port, 40000, SYN | ACK);
        assert_eq!(
            check(&mut firewall, now, Inbound, &syn, Some(&peer)),
            Verdict::Pass
        );
        assert_eq!(
            check(&mut firewall, now, Outbound, &syn_ack, Some(&peer)),
            Verdict::Pass
        );
    }

    // ssh is no longer served.
    config.inbound.remove(0);
    firewall.reconfigure(&config, f.ca.certificate()).unwrap();
    let later = now + Duration::from_secs(1);
    let web = build::tcp(REMOTE, LOCAL, 40000, 80, ACK);
    let ssh = build::tcp(REMOTE, LOCAL, 40000, 22, ACK);
    assert_eq!(
        check(&mut firewall, later, Inbound, &web, Some(&peer)),
        Verdict::Pass,
        "a flow the new rules allow goes on"
    );
    assert_eq!(
        check(&mut firewall, later, Inbound, &ssh, Some(&peer)),
        Verdict::Drop,
        "a flow they do not allow is closed at its next packet"
    );
    assert_eq!(
        check(&mut firewall, later, Inbound, &ssh, Some(&peer)),
        Verdict::Drop
    );
    let stats = firewall.stats();
    assert_eq!(stats.conntrack_closed_by_reload, 1);
    assert_eq!(stats.conntrack_entries, 1);
    // The rule that stayed kept its count; the default counted the two
    // ssh packets judged as new after the close.
    let counts: Vec<(&str, u64)> = stats
        .inbound
        .rules
        .iter()
        .map(|r| (r.label.as_str(), r.packets))
        .collect();
    assert_eq!(counts, [("web", 1)]);
    assert_eq!(stats.inbound.default_packets, 2);
    assert_eq!(stats.tracked, 3, "two replies before, one web packet after");
}

#[test]
fn a_flow_judged_again_is_judged_with_its_peer_and_first_packet() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    let mut ping = Rule {
        protocol: Some(Protocol::Icmp),
        icmp_types: vec![IcmpType::EchoRequest],
        groups: vec!["ops".into()],
        ..Rule::default()
    };
    config.inbound = vec![ping.clone()];
    let mut firewall = f.firewall(config.clone());
    let ops = f.cert("b", &["ops"]);
    let now = f.now;
    let request = build::icmp(REMOTE, LOCAL, 8, 7);
    let reply = build::icmp(LOCAL, REMOTE, 0, 7);
    assert_eq!(
        check(&mut firewall, now, Inbound, &request, Some(&ops)),
        Verdict::Pass
    );
    // The same rule under another label: its count starts again, and the
    // flow, still allowed (an echo request from a member of ops), goes on,
    // even at a reply.
    ping.name = Some("ping".into());
    config.inbound = vec![ping];
    firewall.reconfigure(&config, f.ca.certificate()).unwrap();
    assert_eq!(firewall.stats().inbound.rules[0].packets, 0);
    assert_eq!(
        check(&mut firewall, now, Outbound, &reply, Some(&ops)),
        Verdict::Pass
    );
    assert_eq!(firewall.stats().conntrack_closed_by_reload, 0);
    // Turning the firewall off forgets the flows; on again, it starts
    // empty and the rules decide afresh.
    config.enabled = false;
    firewall.reconfigure(&config, f.ca.certificate()).unwrap();
    assert_eq!(firewall.stats().conntrack_entries, 0);
    config.enabled = true;
    firewall.reconfigure(&config, f.ca.certificate()).unwrap();
    let stranger = f.cert("c", &[]);
    assert_eq!(
        check(&mut firewall, now, Inbound, &request, Some(&stranger)),
        Verdict::Drop
    );
}

#[test]
fn a_refused_reconfiguration_changes_nothing() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![tcp_port(22)];
    let mut firewall = f.firewall(config.clone());
    let peer = f.cert("b", &[]);
    let syn = build::tcp(REMOTE, LOCAL, 40000, 22, SYN);
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &syn, Some(&peer)),
        Verdict::Pass
    );
    let mut bad = config.clone();
    bad.inbound = vec![Rule {
        cas: vec!["othernet".into()],
        ..tcp_port(22)
    }];
    assert!(matches!(
        firewall.reconfigure(&bad, f.ca.certificate()),
        Err(FirewallConfigError::Rule { .. })
    ));
    let stats = firewall.stats();
    assert_eq!(stats.inbound.rules[0].packets, 1);
    assert_eq!(stats.conntrack_entries, 1);
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &syn, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(firewall.stats().tracked, 1);
}

#[test]
fn peer_conditions_follow_the_certificate() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![
        Rule {
            groups: vec!["app".into(), "prod".into()],
            ..tcp_port(5432)
        },
        Rule {
            hosts: vec!["admin".into()],
            ..tcp_port(22)
        },
        Rule {
            cas: vec!["testnet".into()],
            ..tcp_port(80)
        },
    ];
    let mut firewall = f.firewall(config);
    let both = f.cert("app1", &["app", "prod"]);
    let one = f.cert("app2", &["app"]);
    let admin = f.cert("admin", &[]);
    let now = f.now;
    let mut port = 40000;
    let mut syn = |firewall: &mut Firewall, dport: u16, peer: &Certificate| {
        port += 1;
        check(
            firewall,
            now,
            Inbound,
            &build::tcp(REMOTE, LOCAL, port, dport, SYN),
            Some(peer),
        )
    };
    assert_eq!(
        syn(&mut firewall, 5432, &both),
        Verdict::Pass,
        "every group held"
    );
    assert_eq!(
        syn(&mut firewall, 5432, &one),
        Verdict::Drop,
        "groups are all required"
    );
    assert_eq!(syn(&mut firewall, 22, &admin), Verdict::Pass);
    assert_eq!(syn(&mut firewall, 22, &both), Verdict::Drop);
    assert_eq!(
        syn(&mut firewall, 80, &one),
        Verdict::Pass,
        "issued by the CA named"
    );
}

#[test]
fn a_ca_condition_must_name_the_trusted_ca() {
    let f = Fixture::new();
    let fingerprint = crate::identity::hex(&f.ca.certificate().fingerprint());
    for (ca, ok) in [
        ("testnet", true),
        (&fingerprint[..8], true),
        (&fingerprint[..7], false),
        ("othernet", false),
    ] {
        let mut config = FirewallConfig::enabled();
        config.inbound = vec![Rule {
            cas: vec![ca.to_owned()],
            ..Rule::default()
        }];
        let result = Firewall::new(&config, f.ca.certificate());
        assert_eq!(result.is_ok(), ok, "{ca}: {:?}", result.err());
    }
}

#[test]
fn address_ranges_select_the_remote_and_local_ends_and_multicast_groups() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![
        Rule {
            cidrs: vec![(IpAddr::V4(Ipv4Addr::new(198, 19, 1, 0)), 24)],
            ..Rule::default()
        },
        Rule {
            protocol: Some(Protocol::Udp),
            local_cidrs: vec![(IpAddr::V4(Ipv4Addr::new(239, 1, 0, 0)), 16)],
            ..Rule::default()
        },
    ];
    config.outbound = vec![Rule {
        action: Action::Reject,
        cidrs: vec![(IpAddr::V4(Ipv4Addr::new(239, 9, 0, 0)), 16)],
        ..Rule::default()
    }];
    let mut firewall = f.firewall(config);
    let peer = f.cert("b", &[]);
    let now = f.now;
    let from_subnet = build::udp(Ipv4Addr::new(198, 19, 1, 7), LOCAL, 1, 2);
    let from_elsewhere = build::udp(REMOTE, LOCAL, 1, 2);
    assert_eq!(
        check(&mut firewall, now, Inbound, &from_subnet, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(
        check(&mut firewall, now, Inbound, &from_elsewhere, Some(&peer)),
        Verdict::Drop
    );
    // Multicast in: by group (the local end), every packet, untracked.
    let group = build::udp(REMOTE, Ipv4Addr::new(239, 1, 2, 3), 5000, 5000);
    let other_group = build::udp(REMOTE, Ipv4Addr::new(239, 2, 2, 3), 5000, 5000);
    for _ in 0..2 {
        assert_eq!(
            check(&mut firewall, now, Inbound, &group, Some(&peer)),
            Verdict::Pass
        );
    }
    assert_eq!(
        check(&mut firewall, now, Inbound, &other_group, Some(&peer)),
        Verdict::Drop
    );
    assert_eq!(firewall.stats().inbound.rules[1].packets, 2);
    // Multicast out: by group (the remote end), no peer; never answered.
    let out = build::udp(LOCAL, Ipv4Addr::new(239, 9, 0, 1), 5000, 5000);
    assert_eq!(
        check(&mut firewall, now, Outbound, &out, None),
        Verdict::Drop
    );
    let out_ok = build::udp(LOCAL, Ipv4Addr::new(239, 1, 0, 1), 5000, 5000);
    assert_eq!(
        check(&mut firewall, now, Outbound, &out_ok, None),
        Verdict::Pass
    );
    assert_eq!(
        firewall.stats().conntrack_entries,
        1,
        "only the unicast flow"
    );
}

#[test]
fn rules_with_peer_conditions_do_not_match_multicast_sent() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.outbound_default = Action::Drop;
    config.outbound = vec![Rule {
        groups: vec!["media".into()],
        ..Rule::default()
    }];
    let mut firewall = f.firewall(config);
    let out = build::udp(LOCAL, Ipv4Addr::new(239, 1, 0, 1), 5000, 5000);
    assert_eq!(
        check(&mut firewall, f.now, Outbound, &out, None),
        Verdict::Drop
    );
}

#[test]
fn icmp_types_are_matched_by_name_in_both_families() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![Rule {
        protocol: Some(Protocol::Icmp),
        icmp_types: vec![IcmpType::EchoRequest],
        ..Rule::default()
    }];
    let mut firewall = f.firewall(config);
    let peer = f.cert("b", &[]);
    let now = f.now;
    let local6: Ipv6Addr = "fd77:6566::1".parse().unwrap();
    let remote6: Ipv6Addr = "fd77:6566::2".parse().unwrap();
    assert_eq!(
        check(
            &mut firewall,
            now,
            Inbound,
            &build::icmp(REMOTE, LOCAL, 8, 1),
            Some(&peer)
        ),
        Verdict::Pass
    );
    assert_eq!(
        check(
            &mut firewall,
            now,
            Outbound,
            &build::icmp(LOCAL, REMOTE, 0, 1),
            Some(&peer)
        ),
        Verdict::Pass
    );
    assert_eq!(
        check(
            &mut firewall,
            now,
            Inbound,
            &build::icmp(remote6, local6, 128, 9),
            Some(&peer)
        ),
        Verdict::Pass
    );
    // A timestamp request (13) is not an echo request.
    assert_eq!(
        check(
            &mut firewall,
            now,
            Inbound,
            &build::icmp(REMOTE, LOCAL, 13, 1),
            Some(&peer)
        ),
        Verdict::Drop
    );
    // ICMPv6 128 is not ICMPv4 128.
    assert_eq!(
        check(
            &mut firewall,
            now,
            Inbound,
            &build::icmp(REMOTE, LOCAL, 128, 2),
            Some(&peer)
        ),
        Verdict::Drop
    );
    // Our own pings' replies come back by the echo identifier.
    assert_eq!(
        check(
            &mut firewall,
            now,
            Outbound,
            &build::icmp(LOCAL, REMOTE, 8, 77),
            Some(&peer)
        ),
        Verdict::Pass
    );
    assert_eq!(
        check(
            &mut firewall,
            now,
            Inbound,
            &build::icmp(REMOTE, LOCAL, 0, 77),
            Some(&peer)
        ),
        Verdict::Pass
    );
    assert_eq!(
        check(
            &mut firewall,
            now,
            Inbound,
            &build::icmp(REMOTE, LOCAL, 0, 78),
            Some(&peer)
        ),
        Verdict::Drop
    );
}

#[test]
fn icmp_errors_about_a_tracked_flow_pass_only_from_its_other_end() {
    let f = Fixture::new();
    let mut firewall = f.firewall(FirewallConfig::enabled());
    let peer = f.cert("b", &[]);
    let now = f.now;
    let out = build::udp(LOCAL, REMOTE, 5000, 53);
    assert_eq!(
        check(&mut firewall, now, Outbound, &out, Some(&peer)),
        Verdict::Pass
    );
    let unreachable = build::icmp_error(REMOTE, LOCAL, 3, &out);
    assert_eq!(
        check(&mut firewall, now, Inbound, &unreachable, Some(&peer)),
        Verdict::Pass
    );
    let third = Ipv4Addr::new(198, 19, 0, 3);
    let meddling = build::icmp_error(third, LOCAL, 3, &out);
    assert_eq!(
        check(&mut firewall, now, Inbound, &meddling, Some(&peer)),
        Verdict::Drop
    );
    let untracked = build::icmp_error(REMOTE, LOCAL, 3, &build::udp(LOCAL, REMOTE, 5001, 53));
    assert_eq!(
        check(&mut firewall, now, Inbound, &untracked, Some(&peer)),
        Verdict::Drop
    );
    assert_eq!(firewall.stats().related, 1);
}

#[test]
fn rejecting_asks_for_an_answer_only_for_unicast() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound_default = Action::Reject;
    let mut firewall = f.firewall(config);
    let peer = f.cert("b", &[]);
    let syn = build::tcp(REMOTE, LOCAL, 40000, 22, SYN);
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &syn, Some(&peer)),
        Verdict::Reject
    );
    let group = build::udp(REMOTE, Ipv4Addr::new(239, 1, 2, 3), 1, 2);
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &group, Some(&peer)),
        Verdict::Drop
    );
    assert_eq!(firewall.stats().inbound.dropped(), 2);
}

#[test]
fn trailing_fragments_match_only_fragment_ports() {
    let f = Fixture::new();
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![
        Rule {
            protocol: Some(Protocol::Udp),
            ports: vec![PortMatch::Range(PortRange {
                start: 0,
                end: u16::MAX,
            })],
            ..Rule::default()
        },
        Rule {
            protocol: Some(Protocol::Udp),
            ports: vec![PortMatch::Fragment],
            action: Action::Reject,
            ..Rule::default()
        },
    ];
    let mut firewall = f.firewall(config);
    let peer = f.cert("b", &[]);
    let fragment = build::udp_trailing_fragment(REMOTE, LOCAL);
    // The fragment rule decides (a reject, answered by nothing for a
    // fragment: the node's builders refuse to quote one).
    assert_eq!(
        check(&mut firewall, f.now, Inbound, &fragment, Some(&peer)),
        Verdict::Reject
    );
    assert_eq!(firewall.stats().inbound.rules[1].packets, 1);
}

#[test]
fn flows_expire_after_their_timeout() {
    let f = Fixture::new();
    let mut firewall = f.firewall(FirewallConfig::enabled());
    let peer = f.cert("b", &[]);
    let out = build::udp(LOCAL, REMOTE, 5000, 53);
    let reply = build::udp(REMOTE, LOCAL, 53, 5000);
    let t0 = f.now;
    assert_eq!(
        check(&mut firewall, t0, Outbound, &out, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(
        check(
            &mut firewall,
            t0 + Duration::from_secs(1),
            Inbound,
            &reply,
            Some(&peer)
        ),
        Verdict::Pass
    );
    // Answered: the UDP timeout (3 min) from the last packet.
    let late = t0 + Duration::from_secs(1) + Duration::from_secs(180);
    assert_eq!(
        check(
            &mut firewall,
            late - Duration::from_millis(1),
            Inbound,
            &reply,
            Some(&peer)
        ),
        Verdict::Pass
    );
    let later = late - Duration::from_millis(1) + Duration::from_secs(180);
    assert_eq!(
        check(&mut firewall, later, Inbound, &reply, Some(&peer)),
        Verdict::Drop
    );
}

#[test]
fn a_reset_closes_a_connection_within_the_closing_timeout() {
    let f = Fixture::new();
    let mut firewall = f.firewall(FirewallConfig::enabled());
    let peer = f.cert("b", &[]);
    let t0 = f.now;
    let syn = build::tcp(LOCAL, REMOTE, 50000, 80, SYN);
    let ack = build::tcp(REMOTE, LOCAL, 80, 50000, ACK);
    let rst = build::tcp(REMOTE, LOCAL, 80, 50000, RST);
    assert_eq!(
        check(&mut firewall, t0, Outbound, &syn, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(
        check(&mut firewall, t0, Inbound, &ack, Some(&peer)),
        Verdict::Pass
    );
    assert_eq!(
        check(&mut firewall, t0, Inbound, &rst, Some(&peer)),
        Verdict::Pass
    );
    let late = t0 + TCP_CLOSING_TIMEOUT;
    assert_eq!(
        check(&mut firewall, late, Inbound, &ack, Some(&peer)),
        Verdict::Drop
    );
}

#[test]
fn rules_that_cannot_match_are_refused() {
    let f = Fixture::new();
    let bad = [
        Rule {
            protocol: Some(Protocol::Icmp),
            ports: vec![PortMatch::Range(PortRange::single(1))],
            ..Rule::default()
        },
        Rule {
            icmp_types: vec![IcmpType::EchoRequest],
            ..Rule::default()
        },
        Rule {
            groups: vec![String::new()],
            ..Rule::default()
        },
    ];
    for rule in bad {
        let mut config = FirewallConfig::enabled();
        config.outbound = vec![rule.clone()];
        assert!(
            matches!(
                Firewall::new(&config, f.ca.certificate()),
                Err(FirewallConfigError::Rule { .. })
            ),
            "{rule:?}"
        );
    }
    let mut config = FirewallConfig::enabled();
    config.conntrack.max_entries = 0;
    assert_eq!(
        Firewall::new(&config, f.ca.certificate()).err(),
        Some(FirewallConfigError::TableSize(0))
    );
    let mut config = FirewallConfig::enabled();
    config.conntrack.udp_timeout = Duration::ZERO;
    assert_eq!(
        Firewall::new(&config, f.ca.certificate()).err(),
        Some(FirewallConfigError::ZeroTimeout("udp_timeout"))
    );
}

/// A rule on protocol and a port range, for the property tests.
fn arbitrary_rule() -> impl Strategy<Value = Rule> {
    (
        prop_oneof![
            Just(Action::Allow),
            Just(Action::Drop),
            Just(Action::Reject)
        ],
        prop_oneof![
            Just(None),
            Just(Some(Protocol::Tcp)),
            Just(Some(Protocol::Udp))
        ],
        proptest::option::of((0u16..100, 0u16..100)),
        any::<bool>(),
    )
        .prop_map(|(action, protocol, ports, grouped)| Rule {
            action,
            protocol,
            ports: ports
                .map(|(a, b)| {
                    PortMatch::Range(PortRange {
                        start: a.min(b),
                        end: a.max(b),
                    })
                })
                .into_iter()
                .collect(),
            groups: if grouped {
                vec!["app".into()]
            } else {
                Vec::new()
            },
            ..Rule::default()
        })
}

proptest! {
    /// A new flow gets the action of the first rule that a plain reading
    /// of the rule says it matches (else the default), and exactly that
    /// rule's counter moves.
    #[test]
    fn the_first_matching_rule_decides(
        rules in proptest::collection::vec(arbitrary_rule(), 0..12),
        tcp in any::<bool>(),
        port in 0u16..100,
        in_app in any::<bool>(),
    ) {
        let f = Fixture::new();
        let mut config = FirewallConfig::enabled();
        config.inbound = rules.clone();
        let mut firewall = f.firewall(config);
        let peer = f.cert("b", if in_app { &["app"] } else { &[] });
        let packet = if tcp {
            build::tcp(REMOTE, LOCAL, 40000, port, SYN)
        } else {
            build::udp(REMOTE, LOCAL, 40000, port)
        };
        let expected = rules.iter().position(|r| {
            let protocol_ok = match r.protocol {
                None => true,
                Some(Protocol::Tcp) => tcp,
                Some(Protocol::Udp) => !tcp,
                Some(_) => false,
            };
            let port_ok = r.ports.iter().all(|p| matches!(p, PortMatch::Range(range) if range.contains(port)));
            let group_ok = r.groups.is_empty() || in_app;
            protocol_ok && port_ok && group_ok
        });
        let verdict = check(&mut firewall, f.now, Inbound, &packet, Some(&peer));
        let action = expected.map_or(Action::Drop, |i| rules[i].action);
        let wanted = match action {
            Action::Allow => Verdict::Pass,
            Action::Drop => Verdict::Drop,
            Action::Reject => Verdict::Reject,
        };
        prop_assert_eq!(verdict, wanted);
        let stats = firewall.stats().inbound;
        for (i, rule) in stats.rules.iter().enumerate() {
            prop_assert_eq!(rule.packets, u64::from(Some(i) == expected));
        }
        prop_assert_eq!(stats.default_packets, u64::from(expected.is_none()));
    }

    /// However many flows start, the table stays within its bound, and a
    /// flow's reply passes exactly while the flow is in the table.
    #[test]
    fn the_table_stays_bounded_and_replies_follow_it(
        max in 1usize..16,
        flows in proptest::collection::vec((0u16..40, 0u64..20), 1..150),
    ) {
        let f = Fixture::new();
        let mut config = FirewallConfig::enabled();
        config.conntrack.max_entries = max;
        let mut firewall = f.firewall(config);
        let peer = f.cert("b", &[]);
        let mut now = f.now;
        for (port, advance) in flows {
            now += Duration::from_secs(advance);
            let out = build::udp(LOCAL, REMOTE, port, 53);
            prop_assert_eq!(check(&mut firewall, now, Outbound, &out, Some(&peer)), Verdict::Pass);
            let stats = firewall.stats();
            prop_assert!(stats.conntrack_entries <= max);
            let reply = build::udp(REMOTE, LOCAL, 53, port);
            prop_assert_eq!(check(&mut firewall, now, Inbound, &reply, Some(&peer)), Verdict::Pass);
        }
    }
}
