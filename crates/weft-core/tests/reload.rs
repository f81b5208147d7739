//! What a config reload changes in a running node, through the node's
//! setters: firewall rules, the multicast policy, the blocklist and a
//! renewed certificate, each on two nodes wired back to back and stepped
//! by hand in virtual time. Each change must take effect at once and leave
//! the session as it was.

#![allow(clippy::disallowed_methods)] // one base instant; everything else is offsets
#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::udp_v4;
use weft_core::firewall::{FirewallConfig, PortMatch, Protocol, Rule};
use weft_core::mcast::{GroupRule, MulticastConfig};
use weft_core::qos::PortRange;
use weft_core::{
    CaSecret, CertError, Certificate, CertificateTemplate, Event, Node, NodeConfig, PeerConfig,
    SecretKey, SessionState, SetCertificateError,
};

const UNIX_START: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(239, 1, 2, 3));

/// A node's identity: what the CA signs.
struct Identity {
    secret: SecretKey,
    name: &'static str,
    ip: Ipv4Addr,
}

impl Identity {
    fn new(seed: u8, name: &'static str, ip: Ipv4Addr) -> Self {
        Self {
            secret: SecretKey::from_random([seed; 64]),
            name,
            ip,
        }
    }

    /// A certificate in group `app`.
    fn certificate(&self, ca: &CaSecret, not_after: u64) -> Certificate {
        sign_with_groups(ca, &self.secret, self.name, self.ip, not_after, &["app"])
    }
}

fn sign(
    ca: &CaSecret,
    secret: &SecretKey,
    name: &str,
    ip: Ipv4Addr,
    not_after: u64,
) -> Certificate {
    sign_with_groups(ca, secret, name, ip, not_after, &[])
}

fn sign_with_groups(
    ca: &CaSecret,
    secret: &SecretKey,
    name: &str,
    ip: Ipv4Addr,
    not_after: u64,
    groups: &[&str],
) -> Certificate {
    ca.sign(&CertificateTemplate {
        name: name.into(),
        public_key: secret.public(),
        ipv4: Some(format!("{ip}/16").parse().unwrap()),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        not_before: UNIX_START - 10,
        not_after,
    })
    .unwrap()
}

struct Pair {
    now: Instant,
    ca: CaSecret,
    ids: [Identity; 2],
    nodes: [Node; 2],
    addrs: [SocketAddr; 2],
    delivered: [Vec<Vec<u8>>; 2],
    events: [Vec<Event>; 2],
}

impl Pair {
    /// a and b, each the other's configured peer; b runs `firewall`.
    fn new(firewall: FirewallConfig) -> Self {
        let now = Instant::now();
        let ca = CaSecret::new([1; 32], "test", UNIX_START - 100, UNIX_START + 365 * DAY).unwrap();
        let addrs: [SocketAddr; 2] = [
            "198.18.0.1:4800".parse().unwrap(),
            "198.18.0.2:4800".parse().unwrap(),
        ];
        let ids = [Identity::new(2, "a", A_IP), Identity::new(3, "b", B_IP)];
        let node = |i: usize, firewall: FirewallConfig| {
            let mut config = NodeConfig::new(
                ids[i].secret.clone(),
                ids[i].certificate(&ca, UNIX_START + DAY),
                ca.certificate().clone(),
            );
            config.peers = vec![PeerConfig {
                name: Some(ids[1 - i].name.into()),
                public_key: None,
                endpoint: Some(addrs[1 - i]),
            }];
            config.firewall = firewall;
            let seed = [u8::try_from(i).unwrap() + 2; 32];
            Node::new(now, Duration::from_secs(UNIX_START), seed, config).unwrap()
        };
        let nodes = [node(0, FirewallConfig::default()), node(1, firewall)];
        let mut pair = Self {
            now,
            ca,
            ids,
            nodes,
            addrs,
            delivered: [Vec::new(), Vec::new()],
            events: [Vec::new(), Vec::new()],
        };
        pair.advance(Duration::ZERO);
        assert_eq!(pair.state(0), SessionState::Established);
        pair
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
                while let Some(event) = self.nodes[i].poll_event() {
                    self.events[i].push(event);
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

    /// Runs every timer for `span` of virtual time.
    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            let left = end - self.now;
            self.advance(left);
        }
    }

    /// The session state node `i` has with the other.
    fn state(&self, i: usize) -> SessionState {
        self.nodes[i].peers(self.now)[0].state
    }

    /// a sends one UDP packet (port 1000 → 2000) to b; whether b's TUN got
    /// it.
    fn a_to_b(&mut self) -> bool {
        let before = self.delivered[1].len();
        let now = self.now;
        self.nodes[0].handle_tun_packet(now, &udp_v4(A_IP, B_IP, b"hello"));
        self.settle();
        self.delivered[1].len() > before
    }

    fn established_events(&self, i: usize) -> usize {
        self.events[i]
            .iter()
            .filter(|e| matches!(e, Event::SessionEstablished { .. }))
            .count()
    }
}

fn udp_port_2000() -> FirewallConfig {
    let mut config = FirewallConfig::enabled();
    config.inbound = vec![Rule {
        name: Some("app".into()),
        protocol: Some(Protocol::Udp),
        ports: vec![PortMatch::Range(PortRange::single(2000))],
        ..Rule::default()
    }];
    config
}

#[test]
fn a_renewed_certificate_is_adopted_without_a_new_session_and_the_peer_learns_it() {
    let mut pair = Pair::new(FirewallConfig::default());
    let old = pair.nodes[0].certificate().not_after();
    assert_eq!(
        pair.nodes[1].peers(pair.now)[0].certificate_not_after,
        Some(old)
    );
    let handshakes = pair.nodes[1].peers(pair.now)[0].handshakes;
    let renewed = pair.ids[0].certificate(&pair.ca, UNIX_START + 30 * DAY);

    let now = pair.now;
    assert_eq!(
        pair.nodes[0].set_certificate(now, renewed.clone()),
        Ok(vec![])
    );
    assert_eq!(pair.nodes[0].certificate(), &renewed);
    assert_eq!(pair.state(0), SessionState::Established, "nothing ended");
    pair.settle();

    // The peer took the new certificate from a handshake made at once, as
    // on a rekey: the session went on and nobody saw a new one.
    let b_view = &pair.nodes[1].peers(pair.now)[0];
    assert_eq!(b_view.certificate_not_after, Some(UNIX_START + 30 * DAY));
    assert_eq!(b_view.handshakes, handshakes + 1);
    assert_eq!(b_view.state, SessionState::Established);
    assert_eq!(
        [pair.established_events(0), pair.established_events(1)],
        [1, 1]
    );
    assert!(pair.a_to_b());
    // The same certificate again is no change.
    assert_eq!(pair.nodes[0].set_certificate(now, renewed), Ok(vec![]));
}

#[test]
fn expiry_warnings_follow_the_renewed_certificate() {
    // Both certificates end a day after the start: the warning window is
    // a quarter of that, so both would warn 18 hours in. a renews for 30
    // days (a 7-day window) and stays quiet; b, not renewed, warns.
    let mut pair = Pair::new(FirewallConfig::default());
    let now = pair.now;
    let renewed = pair.ids[0].certificate(&pair.ca, UNIX_START + 30 * DAY);
    pair.nodes[0].set_certificate(now, renewed).unwrap();
    pair.run_for(Duration::from_secs(19 * 3600));
    let warnings = |events: &[Event]| {
        events
            .iter()
            .filter_map(|e| {
                if let Event::CertificateExpiring { not_after, .. } = e {
                    Some(*not_after)
                } else {
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(warnings(&pair.events[0]), []);
    assert_eq!(warnings(&pair.events[1]), [UNIX_START + DAY]);
}

#[test]
fn a_certificate_for_another_key_ca_name_or_address_or_out_of_date_is_refused() {
    let mut pair = Pair::new(FirewallConfig::default());
    let now = pair.now;
    let running = pair.nodes[0].certificate().clone();
    let a = &pair.ids[0];
    let later = UNIX_START + 30 * DAY;

    let other_key = sign(&pair.ca, &SecretKey::from_random([9; 64]), "a", A_IP, later);
    assert!(matches!(
        pair.nodes[0].set_certificate(now, other_key),
        Err(SetCertificateError::OtherKey { .. })
    ));
    let other_ca = CaSecret::new([8; 32], "other", UNIX_START - 100, later).unwrap();
    assert!(matches!(
        pair.nodes[0].set_certificate(now, a.certificate(&other_ca, later)),
        Err(SetCertificateError::Invalid(CertError::WrongCa { .. }))
    ));
    assert!(matches!(
        pair.nodes[0].set_certificate(now, a.certificate(&pair.ca, UNIX_START - 1)),
        Err(SetCertificateError::Invalid(CertError::Expired { .. }))
    ));
    assert_eq!(
        pair.nodes[0].set_certificate(now, sign(&pair.ca, &a.secret, "a2", A_IP, later)),
        Err(SetCertificateError::OtherName {
            running: "a".into(),
            new: "a2".into()
        })
    );
    let moved = sign(
        &pair.ca,
        &a.secret,
        "a",
        Ipv4Addr::new(198, 19, 0, 9),
        later,
    );
    assert_eq!(
        pair.nodes[0].set_certificate(now, moved),
        Err(SetCertificateError::OtherIpv4 {
            running: "198.19.0.1/16".into(),
            new: "198.19.0.9/16".into()
        })
    );
    assert_eq!(pair.nodes[0].certificate(), &running);
    pair.settle();
    assert_eq!(pair.nodes[1].peers(pair.now)[0].handshakes, 1);
}

#[test]
fn new_firewall_rules_close_a_flow_they_no_longer_allow_and_keep_the_session() {
    let mut pair = Pair::new(udp_port_2000());
    assert!(pair.a_to_b());
    assert!(pair.a_to_b());

    pair.nodes[1]
        .set_firewall(&FirewallConfig::enabled())
        .unwrap();
    assert!(
        !pair.a_to_b(),
        "the tracked flow is judged again and closed"
    );
    let stats = pair.nodes[1].firewall_stats();
    assert_eq!(stats.conntrack_closed_by_reload, 1);
    assert!(stats.inbound.rules.is_empty());
    assert_eq!(pair.state(1), SessionState::Established);

    pair.nodes[1].set_firewall(&udp_port_2000()).unwrap();
    assert!(pair.a_to_b());
    let rule = &pair.nodes[1].firewall_stats().inbound.rules[0];
    assert_eq!((rule.label.as_str(), rule.packets), ("app", 1));
    assert_eq!(pair.nodes[1].peers(pair.now)[0].handshakes, 1);
}

#[test]
fn a_peer_renewed_out_of_a_group_loses_the_flows_that_group_allowed() {
    let mut firewall = udp_port_2000();
    firewall.inbound[0].groups = vec!["app".into()];
    let mut pair = Pair::new(firewall);
    assert!(pair.a_to_b());
    let now = pair.now;
    let a = &pair.ids[0];
    let renewed = sign_with_groups(&pair.ca, &a.secret, "a", A_IP, UNIX_START + 30 * DAY, &[]);
    pair.nodes[0].set_certificate(now, renewed).unwrap();
    pair.settle();
    assert!(
        !pair.a_to_b(),
        "b judges a's flow again by its new certificate"
    );
    assert_eq!(pair.nodes[1].firewall_stats().conntrack_closed_by_reload, 1);
    assert_eq!(pair.state(1), SessionState::Established);
}

#[test]
fn a_multicast_policy_that_no_longer_admits_a_member_drops_it_from_the_group() {
    let mut pair = Pair::new(FirewallConfig::default());
    let now = pair.now;
    pair.nodes[0].join_group(now, GROUP).unwrap();
    pair.run_for(Duration::from_secs(1));
    let members = |node: &Node, now| -> Vec<String> {
        node.groups(now)
            .into_iter()
            .filter(|g| g.group == GROUP)
            .flat_map(|g| g.members.into_iter().map(|(_, name)| name))
            .collect()
    };
    assert_eq!(members(&pair.nodes[1], pair.now), ["a"]);

    // Only holders of the certificate group "media" may join 239/8 now.
    let rules = vec![GroupRule {
        groups: (IpAddr::V4(Ipv4Addr::new(239, 0, 0, 0)), 8),
        members: vec!["media".into()],
        senders: Vec::new(),
    }];
    let fanout = MulticastConfig::default().fanout;
    let now = pair.now;
    let left = pair.nodes[1].set_multicast_policy(now, fanout, rules.clone());
    assert!(left.is_empty(), "b had joined nothing");
    assert!(members(&pair.nodes[1], now).is_empty());
    assert!(pair.nodes[1].poll_event().is_some_and(|e| matches!(
        e,
        Event::GroupLeft { group, ref name, .. } if group == GROUP && name == "a"
    )));
    // a's own certificate may no longer join either: it leaves.
    assert_eq!(
        pair.nodes[0].set_multicast_policy(now, fanout, rules),
        [GROUP]
    );
    assert!(members(&pair.nodes[0], now).is_empty());
    // The policy back as it was: the member's last record counts again.
    pair.nodes[1].set_multicast_policy(now, fanout, Vec::new());
    assert_eq!(members(&pair.nodes[1], now), ["a"]);
}

#[test]
fn a_blocklisted_peer_loses_its_session_at_once_and_comes_back_when_unlisted() {
    let mut pair = Pair::new(FirewallConfig::default());
    let a = pair.nodes[0].certificate().fingerprint();
    let now = pair.now;
    assert_eq!(pair.nodes[1].set_blocklist(now, vec![a]), 1);
    assert_ne!(pair.state(1), SessionState::Established);
    pair.settle();
    assert!(
        pair.events[1]
            .iter()
            .any(|e| matches!(e, Event::PeerRevoked { name, .. } if name == "a"))
    );
    assert!(!pair.a_to_b());
    // a, which still holds its session, finds out when it calls again.
    pair.run_for(Duration::from_secs(200));
    assert!(pair.nodes[1].stats().handshake_rejected_revoked > 0);
    assert_ne!(pair.state(1), SessionState::Established);

    let now = pair.now;
    assert_eq!(pair.nodes[1].set_blocklist(now, Vec::new()), 0);
    pair.run_for(Duration::from_secs(5));
    assert_eq!(pair.state(1), SessionState::Established);
    assert!(pair.a_to_b());
}
