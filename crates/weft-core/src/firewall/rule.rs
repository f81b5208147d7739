//! Firewall rules: the conditions on a packet and on the node at the
//! other end that select it, and what is then done with it.
//!
//! A rule matches when every condition it sets holds; an empty list is no
//! condition, and a list holds when any entry does, except `groups`, which
//! holds when the peer's certificate has every group listed (as Nebula's
//! `groups`). Packet conditions: protocol, destination port (the port a
//! flow is opened to: this node's for inbound, the peer's for outbound),
//! ICMP type, and the remote and local overlay address ranges. Peer
//! conditions: certificate name, groups and issuing CA. A packet with no
//! single peer (a multicast packet this node sends) fails every peer
//! condition.
//!
//! Rules are checked once, when a configuration is loaded, and compiled
//! into [`CompiledRule`]s whose matching does not allocate.

use std::fmt;
use std::net::IpAddr;

use super::flow::View;
use super::{FirewallConfigError, MAX_RULES};
use crate::identity::{CaCertificate, Certificate};
use crate::mcast::prefix_matches;
use crate::qos::PortRange;

/// What a rule, or a direction's default, does with a packet that no
/// tracked flow lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Action {
    /// Let it through and track its flow, so that the replies pass too.
    #[default]
    Allow,
    /// Drop it without a word.
    Drop,
    /// Drop it and tell the sender at once: a TCP RST for TCP, an ICMP
    /// "administratively prohibited" error for anything else (never for
    /// multicast, nor about an ICMP error).
    Reject,
}

impl Action {
    /// `allow`, `drop` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Drop => "drop",
            Action::Reject => "reject",
        }
    }

    /// Parses what [`Action::as_str`] writes (also `accept`, `deny`).
    pub fn parse(text: &str) -> Option<Action> {
        match text.trim().to_ascii_lowercase().as_str() {
            "allow" | "accept" => Some(Action::Allow),
            "drop" | "deny" => Some(Action::Drop),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The IP protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1) in IPv4 packets, ICMPv6 (58) in IPv6 packets.
    Icmp,
    /// Any other protocol, by number.
    Number(u8),
}

impl Protocol {
    /// `tcp`, `udp`, `icmp` (`icmpv6` too) or a number 0 to 255.
    pub fn parse(text: &str) -> Option<Protocol> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "tcp" | "6" => Some(Protocol::Tcp),
            "udp" | "17" => Some(Protocol::Udp),
            "icmp" | "icmpv6" | "ipv6-icmp" => Some(Protocol::Icmp),
            _ => crate::qos::parse_protocol(&text).map(Protocol::Number),
        }
    }

    fn matches(self, protocol: u8, version: u8) -> bool {
        match self {
            Protocol::Tcp => protocol == 6,
            Protocol::Udp => protocol == 17,
            Protocol::Icmp => protocol == if version == 6 { 58 } else { 1 },
            Protocol::Number(n) => protocol == n,
        }
    }

    /// Whether packets of this protocol carry ports.
    fn has_ports(self) -> bool {
        match self {
            Protocol::Tcp | Protocol::Udp => true,
            Protocol::Icmp => false,
            Protocol::Number(n) => matches!(n, 6 | 17 | 33 | 132 | 136),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A port condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// Destination ports in this range.
    Range(PortRange),
    /// Fragments after the first, which carry no ports (Nebula's
    /// `port: fragment`); a port range never matches them.
    Fragment,
}

/// An ICMP type condition: a name stands for its ICMPv4 and ICMPv6 types,
/// a number matches that type in either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IcmpType {
    /// Echo request (ICMP 8, ICMPv6 128): a ping.
    EchoRequest,
    /// Echo reply (ICMP 0, ICMPv6 129).
    EchoReply,
    /// Destination unreachable (ICMP 3, ICMPv6 1).
    Unreachable,
    /// Time exceeded (ICMP 11, ICMPv6 3).
    TimeExceeded,
    /// Packet too big (ICMPv6 2; ICMP 3 code 4 is an unreachable).
    PacketTooBig,
    /// Parameter problem (ICMP 12, ICMPv6 4).
    ParameterProblem,
    /// A type number.
    Number(u8),
}

impl IcmpType {
    /// A name (`echo-request`, `echo-reply`, `unreachable`,
    /// `time-exceeded`, `packet-too-big`, `parameter-problem`) or a number.
    pub fn parse(text: &str) -> Option<IcmpType> {
        let text = text.trim().to_ascii_lowercase();
        if let Ok(n) = text.parse::<u8>() {
            return Some(IcmpType::Number(n));
        }
        Some(match text.as_str() {
            "echo-request" | "ping" => IcmpType::EchoRequest,
            "echo-reply" | "pong" => IcmpType::EchoReply,
            "unreachable" | "destination-unreachable" => IcmpType::Unreachable,
            "time-exceeded" => IcmpType::TimeExceeded,
            "packet-too-big" => IcmpType::PacketTooBig,
            "parameter-problem" => IcmpType::ParameterProblem,
            _ => return None,
        })
    }

    fn matches(self, version: u8, icmp_type: u8) -> bool {
        let (v4, v6) = match self {
            IcmpType::EchoRequest => (Some(8), 128),
            IcmpType::EchoReply => (Some(0), 129),
            IcmpType::Unreachable => (Some(3), 1),
            IcmpType::TimeExceeded => (Some(11), 3),
            IcmpType::PacketTooBig => (None, 2),
            IcmpType::ParameterProblem => (Some(12), 4),
            IcmpType::Number(n) => return icmp_type == n,
        };
        if version == 6 {
            icmp_type == v6
        } else {
            v4 == Some(icmp_type)
        }
    }
}

/// One firewall rule. Every non-empty condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// A label for `weft status` and the metrics (default: the rule's
    /// place, as `inbound[2]`).
    pub name: Option<String>,
    /// What a matching packet gets.
    pub action: Action,
    /// The IP protocol; `None`: any.
    pub protocol: Option<Protocol>,
    /// Destination ports (or fragments). Needs a protocol with ports, or
    /// none.
    pub ports: Vec<PortMatch>,
    /// ICMP types. Needs [`Protocol::Icmp`].
    pub icmp_types: Vec<IcmpType>,
    /// Certificate names of the peer (any of them).
    pub hosts: Vec<String>,
    /// Certificate groups the peer must all hold.
    pub groups: Vec<String>,
    /// The remote overlay address (the source of an inbound packet, the
    /// destination of an outbound one: a group for multicast sent) lies in
    /// one of these ranges.
    pub cidrs: Vec<(IpAddr, u8)>,
    /// The local address (the destination of an inbound packet: a group
    /// for multicast received; the source of an outbound one) lies in one
    /// of these ranges.
    pub local_cidrs: Vec<(IpAddr, u8)>,
    /// The CA that issued the peer's certificate, by name or by
    /// fingerprint (hex, at least 8 digits of it): any of them.
    pub cas: Vec<String>,
}

/// A rule ready for matching.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) label: String,
    pub(crate) action: Action,
    protocol: Option<Protocol>,
    ports: Vec<PortMatch>,
    icmp_types: Vec<IcmpType>,
    hosts: Vec<String>,
    groups: Vec<String>,
    cidrs: Vec<(IpAddr, u8)>,
    local_cidrs: Vec<(IpAddr, u8)>,
    /// Fingerprints of the CAs named; `None`: no CA condition.
    issuers: Option<Vec<[u8; 32]>>,
}

impl CompiledRule {
    /// Checks `rules` (the list for one direction) and compiles them;
    /// `ca` is the CA this node trusts, which `cas` conditions must name.
    pub(crate) fn compile_all(
        direction: &str,
        rules: &[Rule],
        ca: &CaCertificate,
    ) -> Result<Vec<CompiledRule>, FirewallConfigError> {
        if rules.len() > MAX_RULES {
            return Err(FirewallConfigError::TooManyRules {
                direction: direction.to_owned(),
                count: rules.len(),
            });
        }
        rules
            .iter()
            .enumerate()
            .map(|(i, rule)| CompiledRule::compile(format!("{direction}[{i}]"), rule, ca))
            .collect()
    }

    fn compile(
        place: String,
        rule: &Rule,
        ca: &CaCertificate,
    ) -> Result<CompiledRule, FirewallConfigError> {
        let label = match &rule.name {
            Some(name) if !name.trim().is_empty() => name.trim().to_owned(),
            _ => place,
        };
        let invalid = |reason: String| FirewallConfigError::Rule {
            rule: label.clone(),
            reason,
        };
        if let Some(protocol) = rule.protocol
            && !rule.ports.is_empty()
            && !protocol.has_ports()
        {
            return Err(invalid(format!(
                "ports never match protocol {protocol}, whose packets carry none"
            )));
        }
        if !rule.icmp_types.is_empty() && rule.protocol != Some(Protocol::Icmp) {
            return Err(invalid("icmp_type needs proto = \"icmp\"".to_owned()));
        }
        if let Some(range) = rule.ports.iter().find_map(|p| match p {
            PortMatch::Range(r) if r.start > r.end => Some(*r),
            PortMatch::Range(_) | PortMatch::Fragment => None,
        }) {
            return Err(invalid(format!(
                "port range {}-{} is empty",
                range.start, range.end
            )));
        }
        if rule
            .hosts
            .iter()
            .chain(&rule.groups)
            .any(|n| n.trim().is_empty())
        {
            return Err(invalid("an empty host or group name".to_owned()));
        }
        let issuers = if rule.cas.is_empty() {
            None
        } else {
            let mut issuers = Vec::new();
            for name in &rule.cas {
                if !names_ca(name, ca) {
                    return Err(invalid(format!(
                        "ca '{name}' is neither the name ('{}') nor the fingerprint ({}) of the CA this node trusts",
                        ca.name(),
                        crate::identity::hex(&ca.fingerprint())
                    )));
                }
                issuers.push(ca.fingerprint());
            }
            Some(issuers)
        };
        Ok(CompiledRule {
            label,
            action: rule.action,
            protocol: rule.protocol,
            ports: rule.ports.clone(),
            icmp_types: rule.icmp_types.clone(),
            hosts: rule.hosts.clone(),
            groups: rule.groups.clone(),
            cidrs: rule.cidrs.clone(),
            local_cidrs: rule.local_cidrs.clone(),
            issuers,
        })
    }

    /// Whether the rule selects `view`, exchanged with `peer`.
    pub(crate) fn matches(&self, view: &View, peer: Option<&Certificate>) -> bool {
        if let Some(protocol) = self.protocol {
            let Some(p) = view.protocol else {
                return false;
            };
            if !protocol.matches(p, view.version) {
                return false;
            }
        }
        if !self.ports.is_empty() {
            let matched = self.ports.iter().any(|port| match port {
                PortMatch::Fragment => view.trailing_fragment,
                PortMatch::Range(range) => view.dst_port.is_some_and(|p| range.contains(p)),
            });
            if !matched {
                return false;
            }
        }
        if !self.icmp_types.is_empty() {
            let Some(t) = view.icmp_type else {
                return false;
            };
            if !self.icmp_types.iter().any(|i| i.matches(view.version, t)) {
                return false;
            }
        }
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|c| prefix_matches(*c, view.remote)) {
            return false;
        }
        if !self.local_cidrs.is_empty()
            && !self
                .local_cidrs
                .iter()
                .any(|c| prefix_matches(*c, view.local))
        {
            return false;
        }
        let peer_conditions =
            !self.hosts.is_empty() || !self.groups.is_empty() || self.issuers.is_some();
        if !peer_conditions {
            return true;
        }
        let Some(peer) = peer else {
            return false;
        };
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h == peer.name()))
            && self.groups.iter().all(|g| peer.groups().contains(g))
            && self
                .issuers
                .as_ref()
                .is_none_or(|issuers| issuers.contains(&peer.issuer()))
    }
}

/// Whether `name` is the CA's name or (a prefix of at least 8 hex digits
/// of) its fingerprint.
fn names_ca(name: &str, ca: &CaCertificate) -> bool {
    let name = name.trim();
    if name == ca.name() {
        return true;
    }
    let fingerprint = crate::identity::hex(&ca.fingerprint());
    let lower = name.to_ascii_lowercase();
    lower.len() >= 8
        && lower.bytes().all(|b| b.is_ascii_hexdigit())
        && fingerprint.starts_with(&lower)
}
