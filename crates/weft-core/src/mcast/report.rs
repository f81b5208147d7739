//! IGMP and MLD membership reports: how a local application's join reaches
//! weft.
//!
//! When a socket on the host joins a group on the TUN interface, the kernel
//! writes a membership report to the TUN (and a leave when the last socket
//! leaves): IGMPv2 (RFC 2236) or IGMPv3 (RFC 3376) for IPv4, MLDv1
//! (RFC 2710) or MLDv2 (RFC 3810) for IPv6. [`parse_reports`] turns such a
//! packet into joins and leaves of carried groups.
//!
//! Source filters are not kept (weft forwards a group to its members,
//! whatever the source): a record in EXCLUDE mode, or in INCLUDE mode with
//! at least one source, is a join; an INCLUDE-mode record with no source
//! (`IS_IN({})`, `TO_IN({})`) is a leave; `ALLOW` with sources is a join;
//! `BLOCK` and unknown record types change nothing. Groups that are not
//! carried ([`super::is_carried`], e.g. 224.0.0.251 or ff02::fb) are left
//! out. Checksums are not verified: the packet comes from the local kernel
//! through the TUN, not from the network. The parser is total: any bytes
//! give reports or a [`ReportError`], never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::is_carried;

/// A change of the local node's membership read from a kernel report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupReport {
    /// A local application joined (or still is in) the group.
    Join(IpAddr),
    /// The last local application left the group.
    Leave(IpAddr),
}

/// Why a packet gave no reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A well-formed packet that is no IGMP or MLD membership report (a
    /// query, another protocol, data).
    #[error("not a membership report")]
    NotAReport,
    /// Shorter than its headers or length fields say.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Reads the joins and leaves of carried groups from an IP packet the
/// kernel wrote to the TUN. `Ok` with an empty list: a report about local
/// groups only. Total.
pub fn parse_reports(packet: &[u8]) -> Result<Vec<GroupReport>, ReportError> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_ipv4(packet),
        Some(6) => parse_ipv6(packet),
        Some(_) => Err(ReportError::Invalid("ip version")),
        None => Err(ReportError::Truncated("ip header")),
    }
}

/// IP protocol number of IGMP.
const PROTO_IGMP: u8 = 2;
/// IGMP message types (RFC 1112, RFC 2236 §2.1, RFC 3376 §4).
const IGMP_V1_REPORT: u8 = 0x12;
const IGMP_V2_REPORT: u8 = 0x16;
const IGMP_V2_LEAVE: u8 = 0x17;
const IGMP_V3_REPORT: u8 = 0x22;

/// IPv6 next-header values (RFC 8200 §4) and ICMPv6 (RFC 4443).
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_ICMPV6: u8 = 58;
const NH_DESTINATION: u8 = 60;
/// Most extension headers walked before giving up.
const MAX_EXTENSION_HEADERS: usize = 8;
/// MLD message types (RFC 2710 §3, RFC 3810 §5.2).
const MLD_V1_REPORT: u8 = 131;
const MLD_V1_DONE: u8 = 132;
const MLD_V2_REPORT: u8 = 143;

/// Group record types shared by IGMPv3 (RFC 3376 §4.2.12) and MLDv2
/// (RFC 3810 §5.2.12).
const MODE_IS_INCLUDE: u8 = 1;
const MODE_IS_EXCLUDE: u8 = 2;
const CHANGE_TO_INCLUDE_MODE: u8 = 3;
const CHANGE_TO_EXCLUDE_MODE: u8 = 4;
const ALLOW_NEW_SOURCES: u8 = 5;
const BLOCK_OLD_SOURCES: u8 = 6;

fn parse_ipv4(packet: &[u8]) -> Result<Vec<GroupReport>, ReportError> {
    // RFC 791 §3.1: version/IHL, TOS, total length, id, flags/fragment
    // offset, TTL, protocol, checksum, source, destination, options.
    let header = packet
        .get(..20)
        .ok_or(ReportError::Truncated("ipv4 header"))?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(ReportError::Invalid("ipv4 header length"));
    }
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total_len < header_len {
        return Err(ReportError::Invalid("ipv4 total length"));
    }
    let datagram = packet
        .get(..total_len)
        .ok_or(ReportError::Truncated("ipv4 packet"))?;
    if header[9] != PROTO_IGMP {
        return Err(ReportError::NotAReport);
    }
    // More-fragments flag or a fragment offset: the kernel never fragments
    // a report.
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return Err(ReportError::Invalid("fragmented report"));
    }
    let igmp = datagram
        .get(header_len..)
        .ok_or(ReportError::Truncated("ipv4 options"))?;
    parse_igmp(igmp)
}

fn parse_igmp(igmp: &[u8]) -> Result<Vec<GroupReport>, ReportError> {
    let kind = *igmp.first().ok_or(ReportError::Truncated("igmp message"))?;
    match kind {
        IGMP_V1_REPORT | IGMP_V2_REPORT | IGMP_V2_LEAVE => {
            // RFC 2236 §2: type (1), max response time (1), checksum (2),
            // group address (4).
            let group = igmp
                .get(4..8)
                .ok_or(ReportError::Truncated("igmp message"))?;
            let group = IpAddr::V4(Ipv4Addr::new(group[0], group[1], group[2], group[3]));
            if !group.is_multicast() {
                return Err(ReportError::Invalid("igmp group address"));
            }
            let report = if kind == IGMP_V2_LEAVE {
                GroupReport::Leave(group)
            } else {
                GroupReport::Join(group)
            };
            Ok(carried(vec![report]))
        }
        IGMP_V3_REPORT => {
            // RFC 3376 §4.2: type (1) = 0x22, reserved (1), checksum (2),
            // reserved (2), number of group records (2), group records.
            let count = igmp
                .get(6..8)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or(ReportError::Truncated("igmpv3 report"))?;
            parse_records(&igmp[8..], count, 4)
        }
        _ => Err(ReportError::NotAReport),
    }
}

fn parse_ipv6(packet: &[u8]) -> Result<Vec<GroupReport>, ReportError> {
    // RFC 8200 §3: version/class/flow (4), payload length (2), next header
    // (1), hop limit (1), source (16), destination (16).
    let header = packet
        .get(..40)
        .ok_or(ReportError::Truncated("ipv6 header"))?;
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let payload = packet
        .get(40..40 + payload_len)
        .ok_or(ReportError::Truncated("ipv6 payload"))?;
    let mut next = header[6];
    let mut rest = payload;
    for _ in 0..MAX_EXTENSION_HEADERS {
        match next {
            NH_ICMPV6 => return parse_mld(rest),
            NH_HOP_BY_HOP | NH_ROUTING | NH_DESTINATION => {
                // RFC 8200 §4.3-4.6: next header (1), header extension
                // length in 8-octet units not counting the first 8 (1),
                // options or routing data. MLD packets carry a hop-by-hop
                // header with the router alert option (RFC 3810 §5).
                let len_units = *rest
                    .get(1)
                    .ok_or(ReportError::Truncated("ipv6 extension header"))?;
                let len = (usize::from(len_units) + 1) * 8;
                next = rest[0];
                rest = rest
                    .get(len..)
                    .ok_or(ReportError::Truncated("ipv6 extension header"))?;
            }
            NH_FRAGMENT => return Err(ReportError::Invalid("fragmented report")),
            _ => return Err(ReportError::NotAReport),
        }
    }
    Err(ReportError::Invalid("too many ipv6 extension headers"))
}

fn parse_mld(icmp: &[u8]) -> Result<Vec<GroupReport>, ReportError> {
    let kind = *icmp
        .first()
        .ok_or(ReportError::Truncated("icmpv6 message"))?;
    match kind {
        MLD_V1_REPORT | MLD_V1_DONE => {
            // RFC 2710 §3: type (1), code (1), checksum (2), maximum
            // response delay (2), reserved (2), multicast address (16).
            let group = icmp
                .get(8..24)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or(ReportError::Truncated("mld message"))?;
            let group = IpAddr::V6(Ipv6Addr::from(group));
            if !group.is_multicast() {
                return Err(ReportError::Invalid("mld multicast address"));
            }
            let report = if kind == MLD_V1_DONE {
                GroupReport::Leave(group)
            } else {
                GroupReport::Join(group)
            };
            Ok(carried(vec![report]))
        }
        MLD_V2_REPORT => {
            // RFC 3810 §5.2: type (1) = 143, reserved (1), checksum (2),
            // reserved (2), number of multicast address records (2),
            // records.
            let count = icmp
                .get(6..8)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or(ReportError::Truncated("mldv2 report"))?;
            parse_records(&icmp[8..], count, 16)
        }
        _ => Err(ReportError::NotAReport),
    }
}

/// Group records of IGMPv3 (RFC 3376 §4.2.4) and MLDv2 (RFC 3810 §5.2.4):
/// record type (1), aux data length in 32-bit words (1), number of
/// sources (2), multicast address (`addr_len`), source addresses
/// (`addr_len` each), auxiliary data.
fn parse_records(
    mut bytes: &[u8],
    count: u16,
    addr_len: usize,
) -> Result<Vec<GroupReport>, ReportError> {
    let mut reports = Vec::new();
    for _ in 0..count {
        let head = bytes
            .get(..4 + addr_len)
            .ok_or(ReportError::Truncated("group record"))?;
        let record_type = head[0];
        let aux_len = usize::from(head[1]) * 4;
        let sources = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let group = match addr_len {
            4 => IpAddr::V4(Ipv4Addr::new(head[4], head[5], head[6], head[7])),
            _ => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&head[4..20]);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        };
        let record_len = 4 + addr_len + sources * addr_len + aux_len;
        bytes = bytes
            .get(record_len..)
            .ok_or(ReportError::Truncated("group record"))?;
        if !group.is_multicast() {
            return Err(ReportError::Invalid("group record address"));
        }
        let report = match record_type {
            MODE_IS_EXCLUDE | CHANGE_TO_EXCLUDE_MODE => Some(GroupReport::Join(group)),
            MODE_IS_INCLUDE | CHANGE_TO_INCLUDE_MODE if sources == 0 => {
                Some(GroupReport::Leave(group))
            }
            MODE_IS_INCLUDE | CHANGE_TO_INCLUDE_MODE | ALLOW_NEW_SOURCES if sources > 0 => {
                Some(GroupReport::Join(group))
            }
            // BLOCK only shrinks a source list; ALLOW({}) adds nothing;
            // unknown types are ignored (RFC 3376 §4.2.12, RFC 3810 §5.2.12).
            ALLOW_NEW_SOURCES | BLOCK_OLD_SOURCES => None,
            _ => None,
        };
        reports.extend(report);
    }
    Ok(carried(reports))
}

fn carried(mut reports: Vec<GroupReport>) -> Vec<GroupReport> {
    reports.retain(|report| match report {
        GroupReport::Join(group) | GroupReport::Leave(group) => is_carried(*group),
    });
    reports
}
