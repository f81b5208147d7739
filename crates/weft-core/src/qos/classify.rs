//! The packet classifier: ordered rules map an IP packet and the nodes it
//! travels between to a traffic class.
//!
//! A rule matches when every condition it sets holds (an empty list is no
//! condition; a list matches any of its entries): DSCP, IP protocol, source
//! and destination port ranges, and the certificate name and groups of the
//! source and destination nodes, which the caller passes as a [`Context`].
//! Rules are tried in order and the first match wins; unmatched traffic goes
//! to the configuration's default class (`interactive`).
//!
//! Guarantees: [`PacketInfo::parse`] and [`Classifier::classify`] are total
//! (any byte string gives an answer, never a panic), read IPv4 and IPv6
//! headers, walk at most [`MAX_EXTENSION_HEADERS`] IPv6 extension headers,
//! take ports only from the first fragment, and do not allocate.
//!
//! [`PacketInfo`] is the one IP header walk of the data path: the firewall
//! reads it too (addresses, the transport header's offset for TCP flags and
//! ICMP types), so a packet is parsed once and both decide on the result.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::config::{ClassId, PathMetric, QosConfig, QosConfigError};

/// Most IPv6 extension headers walked before giving up on the upper-layer
/// protocol (a packet with more is unusual and is classified without it).
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub start: u16,
    /// Last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// A range of a single port.
    pub fn single(port: u16) -> Self {
        Self {
            start: port,
            end: port,
        }
    }

    /// Whether `port` lies in the range.
    pub fn contains(self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }

    /// Parses `"443"` or `"8000-8100"`; `None` for anything else, including
    /// an empty range.
    pub fn parse(text: &str) -> Option<Self> {
        let (start, end) = match text.split_once('-') {
            Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
            None => {
                let port = text.trim().parse().ok()?;
                (port, port)
            }
        };
        (start <= end).then_some(Self { start, end })
    }
}

/// One classification rule. Every non-empty condition must hold; each list
/// matches when any entry does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// The class of matching packets.
    pub class: String,
    /// DSCP values (0..=63).
    pub dscp: Vec<u8>,
    /// IP protocol numbers (IPv6: the upper-layer header after extension
    /// headers; see [`parse_protocol`]).
    pub protocols: Vec<u8>,
    /// Source port ranges (only TCP, UDP, UDP-Lite, SCTP and DCCP carry
    /// ports; a non-first fragment has none, so a port condition fails).
    pub src_ports: Vec<PortRange>,
    /// Destination port ranges.
    pub dst_ports: Vec<PortRange>,
    /// Certificate groups of the source node (any of them).
    pub src_groups: Vec<String>,
    /// Certificate groups of the destination node (any of them).
    pub dst_groups: Vec<String>,
    /// Certificate names of the source node.
    pub src_peers: Vec<String>,
    /// Certificate names of the destination node.
    pub dst_peers: Vec<String>,
}

impl Rule {
    /// Checks the rule; `position` (from 1) goes into the error message.
    pub(crate) fn validate(
        &self,
        position: usize,
        class_exists: impl Fn(&str) -> bool,
    ) -> Result<(), QosConfigError> {
        if !class_exists(&self.class) {
            return Err(QosConfigError::UnknownRuleClass {
                rule: position,
                class: self.class.clone(),
            });
        }
        if let Some(&dscp) = self.dscp.iter().find(|&&d| d > 63) {
            return Err(QosConfigError::Dscp {
                rule: position,
                dscp,
            });
        }
        let ports = self.src_ports.iter().chain(&self.dst_ports);
        if let Some(range) = ports.into_iter().find(|r| r.start > r.end) {
            return Err(QosConfigError::PortRange {
                rule: position,
                start: range.start,
                end: range.end,
            });
        }
        Ok(())
    }
}

/// The default rules, by DSCP after RFC 4594's service classes:
/// telephony (EF), voice-admit (VA), signalling (CS5), realtime-interactive
/// (CS4) and multimedia conferencing (AF4x) are `realtime`; high-throughput
/// data (AF1x) is `bulk`; low-priority data (CS1, and LE of RFC 8622) is
/// `background`. Everything else stays in the default class.
pub fn default_rules() -> Vec<Rule> {
    let rule = |class: &str, dscp: &[u8]| Rule {
        class: class.to_owned(),
        dscp: dscp.to_vec(),
        ..Rule::default()
    };
    vec![
        rule("realtime", &[46, 44, 40, 32, 34, 36, 38]),
        rule("bulk", &[10, 12, 14]),
        rule("background", &[8, 1]),
    ]
}

/// A node a packet travels from or to, as the classifier sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party<'a> {
    /// Its certificate name.
    pub name: &'a str,
    /// Its certificate groups.
    pub groups: &'a [String],
}

/// The nodes a packet travels between: for a packet this node sends, the
/// source is this node and the destination the peer; a forwarded packet has
/// its origin as source. Unknown parties fail every condition on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context<'a> {
    /// The sending node.
    pub source: Option<Party<'a>>,
    /// The receiving node.
    pub destination: Option<Party<'a>>,
}

/// What the classifier reads from an IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// 4 or 6.
    pub version: u8,
    /// Differentiated services code point (the top six bits of the IPv4 TOS
    /// or the IPv6 traffic class).
    pub dscp: u8,
    /// Upper-layer protocol; `None` when an IPv6 extension header chain is
    /// truncated or longer than [`MAX_EXTENSION_HEADERS`].
    pub protocol: Option<u8>,
    /// Source port, for port-carrying protocols in a first fragment.
    pub src_port: Option<u16>,
    /// Destination port, likewise.
    pub dst_port: Option<u16>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Offset of the upper-layer header in the packet, when `protocol` is
    /// known and this is the first fragment (or no fragment); the header
    /// itself may be truncated.
    pub transport: Option<usize>,
    /// A fragment other than the first: no upper-layer header.
    pub trailing_fragment: bool,
}

impl PacketInfo {
    /// Reads the header of an IP packet; `None` when it is not an IPv4 or
    /// IPv6 packet with a complete fixed header. Total: never panics.
    pub fn parse(packet: &[u8]) -> Option<PacketInfo> {
        match packet.first()? >> 4 {
            4 => parse_ipv4(packet),
            6 => parse_ipv6(packet),
            _ => None,
        }
    }
}

fn parse_ipv4(p: &[u8]) -> Option<PacketInfo> {
    let header_len = usize::from(p.first()? & 0x0f) * 4;
    if header_len < 20 || p.len() < header_len {
        return None;
    }
    let dscp = p[1] >> 2;
    let protocol = p[9];
    let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let (src_port, dst_port) = if fragment_offset == 0 {
        ports(protocol, p, header_len)
    } else {
        (None, None)
    };
    let address = |at: usize| IpAddr::V4(Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]));
    Some(PacketInfo {
        version: 4,
        dscp,
        protocol: Some(protocol),
        src_port,
        dst_port,
        src: address(12),
        dst: address(16),
        transport: (fragment_offset == 0).then_some(header_len),
        trailing_fragment: fragment_offset != 0,
    })
}

fn parse_ipv6(p: &[u8]) -> Option<PacketInfo> {
    if p.len() < 40 {
        return None;
    }
    let dscp = ((p[0] & 0x0f) << 2) | (p[1] >> 6);
    let address = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&p[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let mut info = PacketInfo {
        version: 6,
        dscp,
        protocol: None,
        src_port: None,
        dst_port: None,
        src: address(8),
        dst: address(24),
        transport: None,
        trailing_fragment: false,
    };
    if let Some((protocol, offset, first_fragment)) = upper_layer(p) {
        info.protocol = Some(protocol);
        if first_fragment {
            (info.src_port, info.dst_port) = ports(protocol, p, offset);
            info.transport = Some(offset);
        } else {
            info.trailing_fragment = true;
        }
    }
    Some(info)
}

/// Walks the IPv6 extension headers: the upper-layer protocol, its offset,
/// and whether this is a first fragment (or no fragment). `None` when the
/// chain is truncated or too long.
fn upper_layer(p: &[u8]) -> Option<(u8, usize, bool)> {
    let mut next = *p.get(6)?;
    let mut offset = 40usize;
    let mut first_fragment = true;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let header_len = match next {
            // Hop-by-hop, routing, destination options, mobility, HIP,
            // shim6, experimental: length in 8-octet units, not counting
            // the first 8 octets.
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => (usize::from(*p.get(offset + 1)?) + 1) * 8,
            // Fragment: fixed 8 octets; a non-first fragment has no ports.
            44 => {
                let field = u16::from_be_bytes([*p.get(offset + 2)?, *p.get(offset + 3)?]);
                if field >> 3 != 0 {
                    first_fragment = false;
                }
                8
            }
            // Authentication header: length in 4-octet units, minus 2.
            51 => (usize::from(*p.get(offset + 1)?) + 2) * 4,
            // Anything else is the upper layer (ESP and no-next-header
            // end the walk too).
            protocol => return Some((protocol, offset, first_fragment)),
        };
        next = *p.get(offset)?;
        offset += header_len;
    }
    is_upper_layer(next).then_some((next, offset, first_fragment))
}

fn is_upper_layer(next: u8) -> bool {
    !matches!(next, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// Source and destination port at `offset`, for protocols whose first four
/// bytes are the two ports.
fn ports(protocol: u8, p: &[u8], offset: usize) -> (Option<u16>, Option<u16>) {
    const WITH_PORTS: [u8; 5] = [6, 17, 33, 132, 136];
    if !WITH_PORTS.contains(&protocol) {
        return (None, None);
    }
    match p.get(offset..offset.saturating_add(4)) {
        Some(&[a, b, c, d]) => (
            Some(u16::from_be_bytes([a, b])),
            Some(u16::from_be_bytes([c, d])),
        ),
        _ => (None, None),
    }
}

/// Rules compiled for matching: DSCP and protocol sets as bitmaps.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<CompiledRule>,
    default: ClassId,
    metrics: Vec<PathMetric>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    class: ClassId,
    /// Bit d set: DSCP d matches; `None`: any.
    dscp: Option<u64>,
    /// Bit p set: protocol p matches; `None`: any.
    protocols: Option<[u64; 4]>,
    src_ports: Vec<PortRange>,
    dst_ports: Vec<PortRange>,
    src_groups: Vec<String>,
    dst_groups: Vec<String>,
    src_peers: Vec<String>,
    dst_peers: Vec<String>,
}

impl Classifier {
    /// Validates `config` and compiles its rules.
    pub fn new(config: &QosConfig) -> Result<Self, QosConfigError> {
        config.validate()?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let class =
                config
                    .class_id(&rule.class)
                    .ok_or_else(|| QosConfigError::UnknownRuleClass {
                        rule: i + 1,
                        class: rule.class.clone(),
                    })?;
            rules.push(CompiledRule {
                class,
                dscp: (!rule.dscp.is_empty())
                    .then(|| rule.dscp.iter().fold(0u64, |m, &d| m | 1 << (d & 63))),
                protocols: (!rule.protocols.is_empty()).then(|| {
                    let mut set = [0u64; 4];
                    for &p in &rule.protocols {
                        set[usize::from(p >> 6)] |= 1 << (p & 63);
                    }
                    set
                }),
                src_ports: rule.src_ports.clone(),
                dst_ports: rule.dst_ports.clone(),
                src_groups: rule.src_groups.clone(),
                dst_groups: rule.dst_groups.clone(),
                src_peers: rule.src_peers.clone(),
                dst_peers: rule.dst_peers.clone(),
            });
        }
        Ok(Self {
            rules,
            default: config
                .class_id(&config.default_class)
                .ok_or_else(|| QosConfigError::UnknownDefaultClass(config.default_class.clone()))?,
            metrics: config.classes.iter().map(|c| c.metric).collect(),
        })
    }

    /// The class of an IP packet travelling in `context`: the first
    /// matching rule's, else the default class. Total; a packet that is not
    /// IP fails every packet condition.
    pub fn classify(&self, packet: &[u8], context: &Context<'_>) -> ClassId {
        self.classify_info(PacketInfo::parse(packet).as_ref(), context)
    }

    /// [`Classifier::classify`] for a header already parsed.
    pub fn classify_info(&self, info: Option<&PacketInfo>, context: &Context<'_>) -> ClassId {
        self.rules
            .iter()
            .find(|rule| rule.matches(info, context))
            .map_or(self.default, |rule| rule.class)
    }

    /// The class of unmatched traffic.
    pub fn default_class(&self) -> ClassId {
        self.default
    }

    /// What `class`'s paths should be optimised for (latency for a class
    /// this classifier does not have).
    pub fn metric(&self, class: ClassId) -> PathMetric {
        self.metrics
            .get(class.index())
            .copied()
            .unwrap_or(PathMetric::Latency)
    }
}

impl CompiledRule {
    fn matches(&self, info: Option<&PacketInfo>, context: &Context<'_>) -> bool {
        let packet_conditions = self.dscp.is_some()
            || self.protocols.is_some()
            || !self.src_ports.is_empty()
            || !self.dst_ports.is_empty();
        if packet_conditions {
            let Some(info) = info else {
                return false;
            };
            if let Some(set) = self.dscp
                && set & (1 << (info.dscp & 63)) == 0
            {
                return false;
            }
            if let Some(set) = self.protocols {
                let Some(p) = info.protocol else {
                    return false;
                };
                if set[usize::from(p >> 6)] & (1 << (p & 63)) == 0 {
                    return false;
                }
            }
            if !port_matches(&self.src_ports, info.src_port)
                || !port_matches(&self.dst_ports, info.dst_port)
            {
                return false;
            }
        }
        party_matches(&self.src_peers, &self.src_groups, context.source)
            && party_matches(&self.dst_peers, &self.dst_groups, context.destination)
    }
}

fn port_matches(ranges: &[PortRange], port: Option<u16>) -> bool {
    if ranges.is_empty() {
        return true;
    }
    port.is_some_and(|port| ranges.iter().any(|r| r.contains(port)))
}

fn party_matches(names: &[String], groups: &[String], party: Option<Party<'_>>) -> bool {
    if names.is_empty() && groups.is_empty() {
        return true;
    }
    let Some(party) = party else {
        return false;
    };
    (names.is_empty() || names.iter().any(|n| n == party.name))
        && (groups.is_empty() || groups.iter().any(|g| party.groups.contains(g)))
}

/// A DSCP from its number (`"46"`) or its name, case-insensitive: `DF` /
/// `BE` / `default` (0), `CS0`..`CS7`, `AF11`..`AF43`, `EF` (46), `VA`
/// (44), `LE` (1).
pub fn parse_dscp(text: &str) -> Option<u8> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(value) = text.parse::<u8>() {
        return (value <= 63).then_some(value);
    }
    match text.as_str() {
        "df" | "be" | "default" => return Some(0),
        "ef" => return Some(46),
        "va" | "voice-admit" => return Some(44),
        "le" => return Some(1),
        _ => {}
    }
    let digits = |s: &str| -> Option<Vec<u8>> {
        s.bytes()
            .map(|b| b.is_ascii_digit().then(|| b - b'0'))
            .collect()
    };
    if let Some(rest) = text.strip_prefix("cs") {
        return match digits(rest)?.as_slice() {
            &[n] if n <= 7 => Some(n * 8),
            _ => None,
        };
    }
    if let Some(rest) = text.strip_prefix("af") {
        return match digits(rest)?.as_slice() {
            &[class, drop] if (1..=4).contains(&class) && (1..=3).contains(&drop) => {
                Some(class * 8 + drop * 2)
            }
            _ => None,
        };
    }
    None
}

/// An IP protocol number from its number (`"17"`) or its name,
/// case-insensitive: `icmp`, `igmp`, `tcp`, `udp`, `dccp`, `gre`, `esp`,
/// `ah`, `icmpv6` (or `ipv6-icmp`), `sctp`, `udplite`.
pub fn parse_protocol(text: &str) -> Option<u8> {
    let text = text.trim().to_ascii_lowercase();
    if let Ok(value) = text.parse::<u8>() {
        return Some(value);
    }
    Some(match text.as_str() {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::qos::ClassConfig;

    fn ipv4(dscp: u8, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[1] = dscp << 2;
        p[8] = 64;
        p[9] = protocol;
        p[12..16].copy_from_slice(&[198, 19, 0, 1]);
        p[16..20].copy_from_slice(&[198, 19, 0, 2]);
        p.extend_from_slice(payload);
        let len = u16::try_from(p.len()).unwrap();
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    /// An IPv6 packet with the given extension headers (type, body length
    /// in bytes beyond the two-byte prefix) before the upper layer.
    fn ipv6(dscp: u8, extensions: &[u8], protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60 | (dscp >> 2);
        p[1] = (dscp & 3) << 6;
        p[7] = 64;
        let mut body = Vec::new();
        let mut kinds = extensions.iter().copied().chain([protocol]);
        p[6] = kinds.next().unwrap_or(protocol);
        for &kind in extensions {
            let next = kinds.next().unwrap();
            match kind {
                44 => body.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 1]),
                51 => body.extend_from_slice(&[next, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                _ => {
                    body.extend_from_slice(&[next, 1]);
                    body.extend_from_slice(&[0; 14]);
                }
            }
        }
        body.extend_from_slice(payload);
        let len = u16::try_from(body.len()).unwrap();
        p[4..6].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&body);
        p
    }

    fn ports(src: u16, dst: u16) -> Vec<u8> {
        let mut v = src.to_be_bytes().to_vec();
        v.extend_from_slice(&dst.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
        v
    }

    #[test]
    fn ipv4_headers_give_dscp_protocol_and_ports() {
        let info = PacketInfo::parse(&ipv4(46, 17, &ports(5004, 5006))).unwrap();
        assert_eq!(
            info,
            PacketInfo {
                version: 4,
                dscp: 46,
                protocol: Some(17),
                src_port: Some(5004),
                dst_port: Some(5006),
                src: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
                dst: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)),
                transport: Some(20),
                trailing_fragment: false,
            }
        );
        let icmp = PacketInfo::parse(&ipv4(0, 1, &[8, 0, 0, 0])).unwrap();
        assert_eq!((icmp.src_port, icmp.dst_port), (None, None));
        let short = PacketInfo::parse(&ipv4(0, 6, &[0, 80])).unwrap();
        assert_eq!(short.protocol, Some(6));
        assert_eq!(short.dst_port, None, "truncated transport header");
    }

    #[test]
    fn ipv4_options_and_fragments_are_respected() {
        let mut p = ipv4(10, 6, &ports(40000, 443));
        p[0] = 0x46;
        p.splice(20..20, [1, 1, 1, 1]);
        let info = PacketInfo::parse(&p).unwrap();
        assert_eq!((info.src_port, info.dst_port), (Some(40000), Some(443)));
        let mut fragment = ipv4(0, 17, &ports(1, 2));
        fragment[6..8].copy_from_slice(&[0x00, 0x10]);
        let info = PacketInfo::parse(&fragment).unwrap();
        assert_eq!(info.protocol, Some(17));
        assert_eq!(info.dst_port, None, "a non-first fragment has no ports");
        let mut first = ipv4(0, 17, &ports(1, 2));
        first[6] = 0x20; // more fragments, offset 0
        assert_eq!(PacketInfo::parse(&first).unwrap().dst_port, Some(2));
    }

    #[test]
    fn malformed_ipv4_headers_are_not_ip() {
        let mut p = ipv4(0, 6, &ports(1, 2));
        p[0] = 0x44;
        assert_eq!(PacketInfo::parse(&p), None, "IHL below 5");
        p[0] = 0x4f;
        assert_eq!(PacketInfo::parse(&p), None, "IHL beyond the packet");
        assert_eq!(PacketInfo::parse(&[0x45; 19]), None);
        assert_eq!(PacketInfo::parse(&[]), None);
        assert_eq!(PacketInfo::parse(&[0x55; 60]), None, "version 5");
    }

    #[test]
    fn ipv6_extension_headers_are_skipped() {
        let plain = PacketInfo::parse(&ipv6(46, &[], 17, &ports(5004, 5006))).unwrap();
        assert_eq!(
            plain,
            PacketInfo {
                version: 6,
                dscp: 46,
                protocol: Some(17),
                src_port: Some(5004),
                dst_port: Some(5006),
                src: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                transport: Some(40),
                trailing_fragment: false,
            }
        );
        let chained = ipv6(10, &[0, 60, 43, 44, 51, 60], 6, &ports(40000, 443));
        let info = PacketInfo::parse(&chained).unwrap();
        assert_eq!(info.dscp, 10);
        assert_eq!(info.protocol, Some(6));
        assert_eq!((info.src_port, info.dst_port), (Some(40000), Some(443)));
        let esp = PacketInfo::parse(&ipv6(0, &[0], 50, &[1, 2, 3, 4])).unwrap();
        assert_eq!(esp.protocol, Some(50));
        assert_eq!(esp.dst_port, None);
        let none = PacketInfo::parse(&ipv6(0, &[60], 59, &[])).unwrap();
        assert_eq!(none.protocol, Some(59));
    }

    #[test]
    fn ipv6_non_first_fragments_have_no_ports() {
        let mut p = ipv6(0, &[44], 17, &ports(1, 2));
        // Fragment offset 1 (in 8-octet units), in the fragment header.
        p[42..44].copy_from_slice(&[0x00, 0x08]);
        let info = PacketInfo::parse(&p).unwrap();
        assert_eq!(info.protocol, Some(17));
        assert_eq!(info.dst_port, None);
    }

    #[test]
    fn truncated_or_endless_ipv6_chains_lose_only_the_protocol() {
        let mut p = ipv6(46, &[0], 17, &ports(1, 2));
        p.truncate(41);
        let info = PacketInfo::parse(&p).unwrap();
        assert_eq!((info.dscp, info.protocol), (46, None));
        let endless = ipv6(46, &[60; 9], 17, &ports(1, 2));
        assert_eq!(PacketInfo::parse(&endless).unwrap().protocol, None);
        let eight = ipv6(46, &[60; 8], 17, &ports(1, 2));
        assert_eq!(PacketInfo::parse(&eight).unwrap().dst_port, Some(2));
        assert_eq!(PacketInfo::parse(&p[..39]), None);
    }

    fn config_with(rules: Vec<Rule>) -> QosConfig {
        QosConfig {
            rules,
            ..QosConfig::default()
        }
    }

    fn class(config: &QosConfig, name: &str) -> ClassId {
        config.class_id(name).unwrap()
    }

    #[test]
    fn default_rules_follow_dscp_and_leave_the_rest_interactive() {
        let config = QosConfig::default();
        let classifier = Classifier::new(&config).unwrap();
        let ctx = Context::default();
        let of = |dscp| classifier.classify(&ipv4(dscp, 17, &ports(1, 2)), &ctx);
        assert_eq!(of(46), class(&config, "realtime"));
        assert_eq!(of(34), class(&config, "realtime"));
        assert_eq!(of(10), class(&config, "bulk"));
        assert_eq!(of(8), class(&config, "background"));
        assert_eq!(of(1), class(&config, "background"));
        assert_eq!(of(0), class(&config, "interactive"));
        assert_eq!(of(48), class(&config, "interactive"));
        let v6 = classifier.classify(&ipv6(46, &[0], 17, &[]), &ctx);
        assert_eq!(v6, class(&config, "realtime"));
        assert_eq!(
            classifier.classify(b"garbage", &ctx),
            classifier.default_class()
        );
        assert_eq!(
            classifier.metric(class(&config, "bulk")),
            PathMetric::Loss,
            "bulk routes for loss"
        );
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let config = config_with(vec![
            Rule {
                class: "bulk".into(),
                protocols: vec![6],
                dst_ports: vec![PortRange::parse("5000-5999").unwrap()],
                ..Rule::default()
            },
            Rule {
                class: "realtime".into(),
                dst_ports: vec![PortRange::single(5004)],
                ..Rule::default()
            },
            Rule {
                class: "background".into(),
                src_ports: vec![PortRange::single(873)],
                ..Rule::default()
            },
        ]);
        let classifier = Classifier::new(&config).unwrap();
        let ctx = Context::default();
        let tcp = ipv4(0, 6, &ports(40000, 5004));
        let udp = ipv4(0, 17, &ports(40000, 5004));
        let rsync = ipv6(0, &[], 6, &ports(873, 40000));
        assert_eq!(classifier.classify(&tcp, &ctx), class(&config, "bulk"));
        assert_eq!(classifier.classify(&udp, &ctx), class(&config, "realtime"));
        assert_eq!(
            classifier.classify(&rsync, &ctx),
            class(&config, "background")
        );
        let icmp = ipv4(0, 1, &[0; 8]);
        assert_eq!(
            classifier.classify(&icmp, &ctx),
            class(&config, "interactive"),
            "no ports, no port rule"
        );
    }

    #[test]
    fn rules_match_peers_and_groups_of_both_ends() {
        let config = config_with(vec![
            Rule {
                class: "background".into(),
                dst_peers: vec!["backup".into()],
                ..Rule::default()
            },
            Rule {
                class: "realtime".into(),
                src_groups: vec!["voice".into()],
                dst_groups: vec!["voice".into(), "pbx".into()],
                ..Rule::default()
            },
            Rule {
                class: "bulk".into(),
                src_peers: vec!["db1".into()],
                dscp: vec![0],
                ..Rule::default()
            },
        ]);
        let classifier = Classifier::new(&config).unwrap();
        let voice = vec!["voice".to_owned(), "staff".to_owned()];
        let pbx = vec!["pbx".to_owned()];
        let none: Vec<String> = Vec::new();
        let party = |name, groups| Some(Party { name, groups });
        let packet = ipv4(0, 17, &ports(1, 2));
        let of = |source, destination| {
            classifier.classify(
                &packet,
                &Context {
                    source,
                    destination,
                },
            )
        };
        assert_eq!(
            of(party("a", &voice), party("backup", &none)),
            class(&config, "background")
        );
        assert_eq!(
            of(party("a", &voice), party("b", &pbx)),
            class(&config, "realtime")
        );
        assert_eq!(
            of(party("a", &none), party("b", &pbx)),
            class(&config, "interactive")
        );
        assert_eq!(
            of(None, party("b", &pbx)),
            class(&config, "interactive"),
            "an unknown source fails a source condition"
        );
        assert_eq!(of(party("db1", &none), None), class(&config, "bulk"));
        assert_eq!(
            classifier.classify(
                b"not ip",
                &Context {
                    source: party("db1", &none),
                    destination: None
                }
            ),
            class(&config, "interactive"),
            "a DSCP condition needs an IP packet"
        );
        assert_eq!(
            classifier.classify(
                b"not ip",
                &Context {
                    source: None,
                    destination: party("backup", &none)
                }
            ),
            class(&config, "background"),
            "peer-only rules hold for any packet"
        );
    }

    #[test]
    fn a_custom_default_class_catches_unmatched_traffic() {
        let mut config = config_with(Vec::new());
        config.classes.push(ClassConfig::normal("best-effort", 3));
        config.default_class = "best-effort".into();
        let classifier = Classifier::new(&config).unwrap();
        assert_eq!(
            classifier.classify(&ipv4(46, 17, &[]), &Context::default()),
            class(&config, "best-effort")
        );
    }

    #[test]
    fn dscp_and_protocol_names_parse() {
        assert_eq!(parse_dscp("EF"), Some(46));
        assert_eq!(parse_dscp("af41"), Some(34));
        assert_eq!(parse_dscp("AF13"), Some(14));
        assert_eq!(parse_dscp("cs1"), Some(8));
        assert_eq!(parse_dscp("CS7"), Some(56));
        assert_eq!(parse_dscp("le"), Some(1));
        assert_eq!(parse_dscp("VA"), Some(44));
        assert_eq!(parse_dscp("be"), Some(0));
        assert_eq!(parse_dscp("63"), Some(63));
        assert_eq!(parse_dscp("64"), None);
        assert_eq!(parse_dscp("AF44"), None);
        assert_eq!(parse_dscp("AF51"), None);
        assert_eq!(parse_dscp("CS8"), None);
        assert_eq!(parse_dscp("cs"), None);
        assert_eq!(parse_dscp("af1é"), None);
        assert_eq!(parse_protocol("UDP"), Some(17));
        assert_eq!(parse_protocol("ipv6-icmp"), Some(58));
        assert_eq!(parse_protocol("132"), Some(132));
        assert_eq!(parse_protocol("256"), None);
        assert_eq!(parse_protocol("quic"), None);
        assert_eq!(PortRange::parse("80"), Some(PortRange::single(80)));
        assert_eq!(
            PortRange::parse("8000 - 8100"),
            Some(PortRange {
                start: 8000,
                end: 8100
            })
        );
        assert_eq!(PortRange::parse("9-8"), None);
        assert_eq!(PortRange::parse("65536"), None);
        assert_eq!(PortRange::parse("a-b"), None);
    }

    proptest! {
        #[test]
        fn parsing_and_classifying_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PacketInfo::parse(&bytes);
            let config = config_with(vec![Rule {
                class: "bulk".into(),
                protocols: vec![6, 17],
                dst_ports: vec![PortRange { start: 1, end: 1000 }],
                ..Rule::default()
            }]);
            let classifier = Classifier::new(&config).unwrap();
            let class = classifier.classify(&bytes, &Context::default());
            prop_assert!(class.index() < config.classes.len());
        }

        #[test]
        fn ip_shaped_garbage_never_panics(
            version in prop_oneof![Just(0x40u8), Just(0x60u8)],
            low in any::<u8>(),
            next in prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60), Just(17), any::<u8>()],
            rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut bytes = vec![version | (low & 0x0f)];
            bytes.extend_from_slice(&rest);
            if bytes.len() > 6 {
                bytes[6] = next;
            }
            let _ = PacketInfo::parse(&bytes);
        }

        #[test]
        fn built_packets_parse_back(
            dscp in 0u8..64,
            src in any::<u16>(),
            dst in any::<u16>(),
            protocol in prop_oneof![Just(6u8), Just(17), Just(132)],
            extensions in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(43), Just(51), Just(60), Just(135)], 0..=MAX_EXTENSION_HEADERS),
            v6 in any::<bool>(),
        ) {
            let packet = if v6 {
                ipv6(dscp, &extensions, protocol, &ports(src, dst))
            } else {
                ipv4(dscp, protocol, &ports(src, dst))
            };
            let info = PacketInfo::parse(&packet).unwrap();
            prop_assert_eq!(info.dscp, dscp);
            prop_assert_eq!(info.protocol, Some(protocol));
            prop_assert_eq!(info.src_port, Some(src));
            prop_assert_eq!(info.dst_port, Some(dst));
        }
    }
}
