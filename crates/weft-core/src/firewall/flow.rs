//! What the firewall reads from a packet: its flow, seen from this node,
//! and the few transport fields that tracking needs.
//!
//! Built on the data path's one header walk ([`PacketInfo`]): addresses,
//! protocol and ports come from it; the TCP flags, the ICMP type and the
//! echo identifier are read at its transport offset. A flow is named from
//! this node's side ([`FlowKey`]: local and remote address and port), so a
//! packet and its reply name the same flow whichever way they travel.
//! Total: any bytes give a view; fields a truncated packet lacks are
//! absent.

use std::net::{IpAddr, Ipv6Addr};

use super::conntrack::Opening;
use crate::qos::PacketInfo;

/// Which way a packet crosses the firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From a peer, to be written to this node's TUN.
    Inbound,
    /// Read from this node's TUN, to be sent to a peer (or a group).
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    fn reverse(self) -> Direction {
        match self {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        }
    }
}

/// A flow as this node sees it. Ports are the TCP/UDP/SCTP/DCCP ports, the
/// ICMP echo identifier (as `local_port`), or zero. Addresses are kept as
/// integers (IPv4 mapped into IPv6, told apart by `v6`), so the connection
/// table compares keys as a few machine words: the lookup is the firewall's
/// cost per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FlowKey {
    remote: u128,
    local: u128,
    remote_port: u16,
    local_port: u16,
    pub(crate) protocol: u8,
    v6: bool,
}

impl FlowKey {
    pub(crate) fn new(
        protocol: u8,
        local: IpAddr,
        remote: IpAddr,
        local_port: u16,
        remote_port: u16,
    ) -> FlowKey {
        FlowKey {
            remote: as_u128(remote),
            local: as_u128(local),
            remote_port,
            local_port,
            protocol,
            v6: remote.is_ipv6(),
        }
    }

    /// Whether the flow is between these two addresses.
    fn is_between(&self, local: IpAddr, remote: IpAddr) -> bool {
        self.local == as_u128(local)
            && self.remote == as_u128(remote)
            && self.v6 == remote.is_ipv6()
    }
}

fn from_u128(address: u128, v6: bool) -> IpAddr {
    let address = Ipv6Addr::from(address);
    match address.to_ipv4_mapped() {
        Some(v4) if !v6 => IpAddr::V4(v4),
        _ => IpAddr::V6(address),
    }
}

fn as_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// TCP flag bits (RFC 9293).
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

const TCP: u8 = 6;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// A packet as the rules and the connection table see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) version: u8,
    pub(crate) protocol: Option<u8>,
    pub(crate) local: IpAddr,
    pub(crate) remote: IpAddr,
    /// The packet's destination port: the port a flow is opened to.
    pub(crate) dst_port: Option<u16>,
    pub(crate) trailing_fragment: bool,
    /// ICMP or ICMPv6 type, when the packet is one and its header is there.
    pub(crate) icmp_type: Option<u8>,
    /// TCP flags (0 when not TCP or truncated).
    pub(crate) tcp_flags: u8,
    /// The flow to track; `None` for multicast and broadcast (a reply to a
    /// group comes from a unicast address, so state would never match),
    /// for ICMP errors (they belong to the flow they quote) and when the
    /// protocol is unknown.
    pub(crate) key: Option<FlowKey>,
}

impl View {
    /// The view of `packet`, whose header walk is `info`, crossing in
    /// `direction`.
    pub(crate) fn new(direction: Direction, info: &PacketInfo, packet: &[u8]) -> View {
        let (local, remote) = match direction {
            Direction::Inbound => (info.dst, info.src),
            Direction::Outbound => (info.src, info.dst),
        };
        let transport = |offset: usize| -> Option<u8> {
            info.transport
                .and_then(|t| packet.get(t.checked_add(offset)?))
                .copied()
        };
        let is_icmp = matches!(
            (info.version, info.protocol),
            (4, Some(ICMP)) | (6, Some(ICMPV6))
        );
        let icmp_type = if is_icmp { transport(0) } else { None };
        let tcp_flags = if info.protocol == Some(TCP) {
            transport(13).unwrap_or(0)
        } else {
            0
        };
        let group = is_group(info.dst);
        let key = match info.protocol {
            _ if group => None,
            None => None,
            Some(protocol) if is_icmp => match icmp_type.map(|t| icmp_kind(info.version, t)) {
                Some(IcmpKind::Error) => None,
                Some(IcmpKind::Echo) => {
                    let id = transport(4)
                        .zip(transport(5))
                        .map_or(0, |(a, b)| u16::from_be_bytes([a, b]));
                    Some(flow(protocol, local, remote, id, 0))
                }
                Some(IcmpKind::Other) | None => Some(flow(protocol, local, remote, 0, 0)),
            },
            Some(protocol) => {
                let (local_port, remote_port) = match direction {
                    Direction::Inbound => (info.dst_port, info.src_port),
                    Direction::Outbound => (info.src_port, info.dst_port),
                };
                Some(flow(
                    protocol,
                    local,
                    remote,
                    local_port.unwrap_or(0),
                    remote_port.unwrap_or(0),
                ))
            }
        };
        View {
            version: info.version,
            protocol: info.protocol,
            local,
            remote,
            dst_port: info.dst_port,
            trailing_fragment: info.trailing_fragment,
            icmp_type,
            tcp_flags,
            key,
        }
    }

    /// What the rules saw of this packet beyond its flow, kept with the
    /// flow it opens.
    pub(crate) fn opening(&self) -> Opening {
        Opening {
            dst_port: self.dst_port,
            icmp_type: self.icmp_type,
            trailing_fragment: self.trailing_fragment,
        }
    }

    /// The view the rules had of the first packet of the tracked flow
    /// `key` (the rules of the direction it crossed judge it again).
    pub(crate) fn of_opening(key: &FlowKey, opening: Opening) -> View {
        View {
            version: if key.v6 { 6 } else { 4 },
            protocol: Some(key.protocol),
            local: from_u128(key.local, key.v6),
            remote: from_u128(key.remote, key.v6),
            dst_port: opening.dst_port,
            trailing_fragment: opening.trailing_fragment,
            icmp_type: opening.icmp_type,
            tcp_flags: 0,
            key: Some(*key),
        }
    }

    /// For an ICMP error: the flow of the packet it quotes, which crossed
    /// the other way, provided that packet was exchanged with the error's
    /// sender (inside the overlay every node is one hop from every other,
    /// so an error about a flow comes from that flow's other end, never
    /// from a router in between; anything else could be a peer meddling
    /// with someone else's flow).
    pub(crate) fn related(
        &self,
        direction: Direction,
        info: &PacketInfo,
        packet: &[u8],
    ) -> Option<FlowKey> {
        let icmp_type = self.icmp_type?;
        if self.key.is_some() || icmp_kind(self.version, icmp_type) != IcmpKind::Error {
            return None;
        }
        // The quoted packet follows the 8-byte ICMP header.
        let quoted = packet.get(info.transport?.checked_add(8)?..)?;
        let quoted_info = PacketInfo::parse(quoted)?;
        let key = View::new(direction.reverse(), &quoted_info, quoted).key?;
        key.is_between(self.local, self.remote).then_some(key)
    }
}

/// ICMP messages by what tracking does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcmpKind {
    /// Echo request or reply: a flow of its own, named by the identifier.
    Echo,
    /// An error about another packet (RFC 792, RFC 4443 §2.1: ICMPv6
    /// types below 128).
    Error,
    /// Anything else: a flow per address pair.
    Other,
}

fn icmp_kind(version: u8, icmp_type: u8) -> IcmpKind {
    match (version, icmp_type) {
        (4, 0 | 8) | (6, 128 | 129) => IcmpKind::Echo,
        (4, 3 | 4 | 5 | 11 | 12) => IcmpKind::Error,
        (6, t) if t < 128 => IcmpKind::Error,
        _ => IcmpKind::Other,
    }
}

fn flow(protocol: u8, local: IpAddr, remote: IpAddr, local_port: u16, remote_port: u16) -> FlowKey {
    FlowKey::new(protocol, local, remote, local_port, remote_port)
}

/// Multicast or limited broadcast: not one host at the other end.
pub(crate) fn is_group(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}
