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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn join(text: &str) -> GroupReport {
        GroupReport::Join(text.parse().unwrap())
    }

    fn leave(text: &str) -> GroupReport {
        GroupReport::Leave(text.parse().unwrap())
    }

    /// An IPv4 packet as Linux sends IGMP: RFC 791 header with the router
    /// alert option (RFC 2113), TTL 1, DF; the checksum is left zero.
    fn ipv4_packet(protocol: u8, destination: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let total = 24 + payload.len();
        let mut p = vec![
            0x46, // version 4, IHL 6 words (one option word)
            0xc0, // DSCP CS6 (internetwork control)
        ];
        p.extend_from_slice(&(total as u16).to_be_bytes()); // total length
        p.extend_from_slice(&[0, 0]); // identification
        p.extend_from_slice(&[0x40, 0]); // flags: DF; fragment offset 0
        p.push(1); // TTL
        p.push(protocol);
        p.extend_from_slice(&[0, 0]); // header checksum (not verified)
        p.extend_from_slice(&v4("198.19.0.1").octets()); // source
        p.extend_from_slice(&destination.octets()); // destination
        p.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert, "examine"
        p.extend_from_slice(payload);
        p
    }

    /// An IPv6 packet as Linux sends MLD: RFC 8200 header, a hop-by-hop
    /// header with the router alert option (RFC 2711, value 0: MLD) and
    /// PadN, then the ICMPv6 message; the checksum is left zero.
    fn ipv6_mld_packet(destination: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0]; // version 6, class 0, flow 0
        p.extend_from_slice(&((8 + icmp.len()) as u16).to_be_bytes()); // payload length
        p.push(NH_HOP_BY_HOP); // next header
        p.push(1); // hop limit
        p.extend_from_slice(&v6("fe80::1").octets());
        p.extend_from_slice(&destination.octets());
        p.extend_from_slice(&[
            NH_ICMPV6, // next header
            0,         // length: 8 bytes in all
            0x05, 0x02, 0x00, 0x00, // router alert, length 2, MLD
            0x01, 0x00, // PadN, length 0
        ]);
        p.extend_from_slice(icmp);
        p
    }

    /// A group record (RFC 3376 §4.2.4 / RFC 3810 §5.2.4).
    fn record(kind: u8, group: &[u8], sources: &[&[u8]], aux_words: u8) -> Vec<u8> {
        let mut r = vec![kind, aux_words];
        r.extend_from_slice(&(sources.len() as u16).to_be_bytes());
        r.extend_from_slice(group);
        for source in sources {
            r.extend_from_slice(source);
        }
        r.extend(std::iter::repeat_n(0xee, usize::from(aux_words) * 4));
        r
    }

    fn igmpv3(records: &[Vec<u8>]) -> Vec<u8> {
        // RFC 3376 §4.2: type 0x22, reserved, checksum, reserved, count.
        let mut m = vec![IGMP_V3_REPORT, 0, 0, 0, 0, 0];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        for r in records {
            m.extend_from_slice(r);
        }
        ipv4_packet(PROTO_IGMP, v4("224.0.0.22"), &m)
    }

    fn mldv2(records: &[Vec<u8>]) -> Vec<u8> {
        // RFC 3810 §5.2: type 143, reserved, checksum, reserved, count.
        let mut m = vec![MLD_V2_REPORT, 0, 0, 0, 0, 0];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        for r in records {
            m.extend_from_slice(r);
        }
        ipv6_mld_packet(v6("ff02::16"), &m)
    }

    fn igmpv2(kind: u8, group: &str) -> Vec<u8> {
        // RFC 2236 §2: type, max response time, checksum, group address.
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&v4(group).octets());
        ipv4_packet(PROTO_IGMP, v4(group), &m)
    }

    fn mldv1(kind: u8, group: &str) -> Vec<u8> {
        // RFC 2710 §3: type, code, checksum, max response delay, reserved,
        // multicast address.
        let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&v6(group).octets());
        ipv6_mld_packet(v6(group), &m)
    }

    #[test]
    fn igmpv2_reports_and_leaves() {
        assert_eq!(
            parse_reports(&igmpv2(IGMP_V2_REPORT, "239.1.2.3")),
            Ok(vec![join("239.1.2.3")])
        );
        assert_eq!(
            parse_reports(&igmpv2(IGMP_V2_LEAVE, "239.1.2.3")),
            Ok(vec![leave("239.1.2.3")])
        );
        assert_eq!(
            parse_reports(&igmpv2(IGMP_V1_REPORT, "239.1.2.3")),
            Ok(vec![join("239.1.2.3")])
        );
        // A local group: a valid report with nothing to carry.
        assert_eq!(
            parse_reports(&igmpv2(IGMP_V2_REPORT, "224.0.0.251")),
            Ok(vec![])
        );
        assert_eq!(
            parse_reports(&igmpv2(IGMP_V2_REPORT, "198.19.0.7")),
            Err(ReportError::Invalid("igmp group address"))
        );
    }

    #[test]
    fn igmpv3_records_become_joins_and_leaves() {
        let g = |text: &str| v4(text).octets();
        let source = v4("198.19.0.9").octets();
        let packet = igmpv3(&[
            record(CHANGE_TO_EXCLUDE_MODE, &g("239.1.2.3"), &[], 0),
            record(CHANGE_TO_INCLUDE_MODE, &g("239.1.2.4"), &[], 0),
            record(MODE_IS_INCLUDE, &g("239.1.2.5"), &[&source], 0),
            record(MODE_IS_EXCLUDE, &g("224.0.0.251"), &[], 0),
            record(BLOCK_OLD_SOURCES, &g("239.1.2.6"), &[&source], 0),
            record(ALLOW_NEW_SOURCES, &g("239.1.2.7"), &[&source, &source], 0),
            record(ALLOW_NEW_SOURCES, &g("239.1.2.8"), &[], 0),
            record(9, &g("239.1.2.9"), &[&source], 2), // unknown type, aux data
            record(MODE_IS_EXCLUDE, &g("239.1.2.10"), &[&source], 1),
            record(MODE_IS_INCLUDE, &g("239.1.2.11"), &[], 0),
        ]);
        assert_eq!(
            parse_reports(&packet),
            Ok(vec![
                join("239.1.2.3"),
                leave("239.1.2.4"),
                join("239.1.2.5"),
                join("239.1.2.7"),
                join("239.1.2.10"),
                leave("239.1.2.11"),
            ])
        );
    }

    #[test]
    fn mldv1_reports_and_dones_behind_the_hop_by_hop_header() {
        assert_eq!(
            parse_reports(&mldv1(MLD_V1_REPORT, "ff0e::1234")),
            Ok(vec![join("ff0e::1234")])
        );
        assert_eq!(
            parse_reports(&mldv1(MLD_V1_DONE, "ff05::1:3")),
            Ok(vec![leave("ff05::1:3")])
        );
        assert_eq!(parse_reports(&mldv1(MLD_V1_REPORT, "ff02::fb")), Ok(vec![]));
        assert_eq!(
            parse_reports(&mldv1(MLD_V1_REPORT, "fd77:6566::1")),
            Err(ReportError::Invalid("mld multicast address"))
        );
    }

    #[test]
    fn mldv2_records_become_joins_and_leaves() {
        let g = |text: &str| v6(text).octets();
        let source = v6("fd77:6566::9").octets();
        let packet = mldv2(&[
            record(CHANGE_TO_EXCLUDE_MODE, &g("ff3e::8000:1"), &[], 0),
            record(MODE_IS_EXCLUDE, &g("ff02::1:ff00:1"), &[], 0), // solicited-node
            record(CHANGE_TO_INCLUDE_MODE, &g("ff05::2"), &[], 0),
            record(MODE_IS_INCLUDE, &g("ff3e::8000:2"), &[&source], 1),
            record(BLOCK_OLD_SOURCES, &g("ff3e::8000:3"), &[&source], 0),
            record(ALLOW_NEW_SOURCES, &g("ff3e::8000:4"), &[&source], 0),
        ]);
        assert_eq!(
            parse_reports(&packet),
            Ok(vec![
                join("ff3e::8000:1"),
                leave("ff05::2"),
                join("ff3e::8000:2"),
                join("ff3e::8000:4"),
            ])
        );
    }

    #[test]
    fn mld_without_extension_headers_and_behind_several() {
        // No hop-by-hop header: ICMPv6 straight after the IPv6 header.
        let mut packet = mldv1(MLD_V1_REPORT, "ff0e::1");
        packet.drain(40..48);
        packet[4..6].copy_from_slice(&24u16.to_be_bytes());
        packet[6] = NH_ICMPV6;
        assert_eq!(parse_reports(&packet), Ok(vec![join("ff0e::1")]));
        // Hop-by-hop, then a 16-byte destination options header.
        let mut packet = mldv1(MLD_V1_REPORT, "ff0e::1");
        packet[40] = NH_DESTINATION;
        let dest_opts = [NH_ICMPV6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        packet.splice(48..48, dest_opts);
        packet[4..6].copy_from_slice(&48u16.to_be_bytes());
        assert_eq!(parse_reports(&packet), Ok(vec![join("ff0e::1")]));
        // A fragment header: refused.
        packet[40] = NH_FRAGMENT;
        assert_eq!(
            parse_reports(&packet),
            Err(ReportError::Invalid("fragmented report"))
        );
    }

    #[test]
    fn queries_and_other_packets_are_not_reports() {
        // IGMP membership query (RFC 2236 §2.1, type 0x11).
        assert_eq!(
            parse_reports(&igmpv2(0x11, "239.1.2.3")),
            Err(ReportError::NotAReport)
        );
        // MLD query (type 130) and ICMPv6 echo request (128).
        assert_eq!(
            parse_reports(&mldv1(130, "ff0e::1")),
            Err(ReportError::NotAReport)
        );
        assert_eq!(
            parse_reports(&mldv1(128, "ff0e::1")),
            Err(ReportError::NotAReport)
        );
        // UDP to a group over IPv4 and IPv6.
        let udp = ipv4_packet(17, v4("239.1.2.3"), &[0; 12]);
        assert_eq!(parse_reports(&udp), Err(ReportError::NotAReport));
        let mut udp6 = mldv1(MLD_V1_REPORT, "ff0e::1");
        udp6[6] = 17;
        assert_eq!(parse_reports(&udp6), Err(ReportError::NotAReport));
        assert_eq!(parse_reports(&[]), Err(ReportError::Truncated("ip header")));
        assert_eq!(
            parse_reports(&[0x50; 40]),
            Err(ReportError::Invalid("ip version"))
        );
    }

    #[test]
    fn malformed_reports_are_errors() {
        let packet = igmpv2(IGMP_V2_REPORT, "239.1.2.3");
        assert_eq!(
            parse_reports(&packet[..packet.len() - 1]),
            Err(ReportError::Truncated("ipv4 packet"))
        );
        // Total length cut short inside the IGMP message.
        let mut short = packet.clone();
        short[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(
            parse_reports(&short),
            Err(ReportError::Truncated("igmp message"))
        );
        // Trailing link-layer padding beyond the total length is ignored.
        let mut padded = packet.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_reports(&padded), Ok(vec![join("239.1.2.3")]));
        let mut bad_ihl = packet.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(
            parse_reports(&bad_ihl),
            Err(ReportError::Invalid("ipv4 header length"))
        );
        let mut fragment = packet;
        fragment[6] = 0x20; // more fragments
        assert_eq!(
            parse_reports(&fragment),
            Err(ReportError::Invalid("fragmented report"))
        );
        // A record announcing more sources than the packet holds.
        let g = v4("239.1.2.3").octets();
        let mut v3 = igmpv3(&[record(MODE_IS_EXCLUDE, &g, &[], 0)]);
        let sources_at = 24 + 8 + 2;
        v3[sources_at + 1] = 1;
        assert_eq!(
            parse_reports(&v3),
            Err(ReportError::Truncated("group record"))
        );
        // More records announced than present.
        let mut v3 = igmpv3(&[record(MODE_IS_EXCLUDE, &g, &[], 0)]);
        v3[24 + 7] = 2;
        assert_eq!(
            parse_reports(&v3),
            Err(ReportError::Truncated("group record"))
        );
        // MLD payload length beyond the packet.
        let mut mld = mldv1(MLD_V1_REPORT, "ff0e::1");
        mld[5] += 1;
        assert_eq!(
            parse_reports(&mld),
            Err(ReportError::Truncated("ipv6 payload"))
        );
        // A chain of hop-by-hop headers longer than the walk allows.
        let mut chain = vec![0x60, 0, 0, 0, 0, 80, NH_HOP_BY_HOP, 1];
        chain.extend_from_slice(&[0; 32]);
        for _ in 0..10 {
            chain.extend_from_slice(&[NH_HOP_BY_HOP, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            parse_reports(&chain),
            Err(ReportError::Invalid("too many ipv6 extension headers"))
        );
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Packets Linux 6.x wrote to a TUN device in a network namespace when
    /// a UDP socket joined and left 239.1.2.3 or ff3e::8000:1 on it
    /// (IGMPv3/MLDv2 by default, IGMPv2/MLDv1 with `force_igmp_version=2`
    /// and `force_mld_version=1`).
    #[test]
    fn reports_captured_from_linux() {
        let cases = [
            // IGMPv3, CHANGE_TO_EXCLUDE_MODE({}) then CHANGE_TO_INCLUDE_MODE({}).
            (
                "46c000280000400001023de5c6130001e0000016940400002200e8f90000000104000000ef010203",
                join("239.1.2.3"),
            ),
            (
                "46c000280000400001023de5c6130001e0000016940400002200e9f90000000103000000ef010203",
                leave("239.1.2.3"),
            ),
            // IGMPv2 report to the group, leave to 224.0.0.2.
            (
                "46c000200000400001022cffc6130001ef010203940400001600f8faef010203",
                join("239.1.2.3"),
            ),
            (
                "46c000200000400001023e01c6130001e0000002940400001700f7faef010203",
                leave("239.1.2.3"),
            ),
            // MLDv2 to ff02::16 behind a hop-by-hop router alert.
            (
                "6000000000240001fe80000000000000f8018146ca734fdbff020000000000000000000000000016\
                 3a000502000001008f005c360000000104000000ff3e0000000000000000000080000001",
                join("ff3e::8000:1"),
            ),
            (
                "6000000000240001fe80000000000000f8018146ca734fdbff020000000000000000000000000016\
                 3a000502000001008f005d360000000103000000ff3e0000000000000000000080000001",
                leave("ff3e::8000:1"),
            ),
            // MLDv1 report to the group, done to ff02::2.
            (
                "6000000000200001fe800000000000001b98a95fdeb86b43ff3e0000000000000000000080000001\
                 3a00050200000100830070b700000000ff3e0000000000000000000080000001",
                join("ff3e::8000:1"),
            ),
            (
                "6000000000200001fe800000000000001b98a95fdeb86b43ff020000000000000000000000000002\
                 3a000502000001008400eff200000000ff3e0000000000000000000080000001",
                leave("ff3e::8000:1"),
            ),
        ];
        for (hex, report) in cases {
            let hex: String = hex.split_whitespace().collect();
            assert_eq!(parse_reports(&unhex(&hex)), Ok(vec![report]), "{hex}");
        }
    }

    /// The mapping of a record to a report, as the module doc states it.
    fn expected(kind: u8, sources: usize, group: IpAddr) -> Option<GroupReport> {
        if !is_carried(group) {
            return None;
        }
        match (kind, sources) {
            (MODE_IS_EXCLUDE | CHANGE_TO_EXCLUDE_MODE, _) => Some(GroupReport::Join(group)),
            (MODE_IS_INCLUDE | CHANGE_TO_INCLUDE_MODE, 0) => Some(GroupReport::Leave(group)),
            (MODE_IS_INCLUDE | CHANGE_TO_INCLUDE_MODE | ALLOW_NEW_SOURCES, _) if sources > 0 => {
                Some(GroupReport::Join(group))
            }
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_reports(&bytes);
            let mut v4 = bytes.clone();
            v4.insert(0, 0x45);
            let _ = parse_reports(&v4);
            let mut v6 = bytes;
            v6.insert(0, 0x60);
            let _ = parse_reports(&v6);
        }

        #[test]
        fn generated_records_parse_as_specified(
            records in proptest::collection::vec(
                (1u8..8, 0usize..3, 0u8..2, any::<[u8; 16]>(), any::<bool>()),
                0..8,
            ),
            ipv6 in any::<bool>(),
        ) {
            let addr_len = if ipv6 { 16 } else { 4 };
            let mut built = Vec::new();
            let mut want = Vec::new();
            for (kind, sources, aux, mut group, local) in records {
                // Multicast addresses, of carried scope or not.
                if ipv6 {
                    group[0] = 0xff;
                    group[1] = if local { 0x02 } else { 0x0e };
                } else {
                    group[0] = 239;
                    if local {
                        group[..3].copy_from_slice(&[224, 0, 0]);
                    }
                }
                let address = match addr_len {
                    4 => IpAddr::V4(Ipv4Addr::new(group[0], group[1], group[2], group[3])),
                    _ => IpAddr::V6(Ipv6Addr::from(group)),
                };
                let source = [7u8; 16];
                let sources_list: Vec<&[u8]> = (0..sources).map(|_| &source[..addr_len]).collect();
                built.push(record(kind, &group[..addr_len], &sources_list, aux));
                want.extend(expected(kind, sources, address));
            }
            let packet = if ipv6 { mldv2(&built) } else { igmpv3(&built) };
            prop_assert_eq!(parse_reports(&packet), Ok(want));
        }

        #[test]
        fn mutated_reports_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let g4 = v4("239.1.2.3").octets();
            let g6 = v6("ff0e::1").octets();
            let mut packet = match which {
                0 => igmpv2(IGMP_V2_REPORT, "239.1.2.3"),
                1 => igmpv3(&[record(MODE_IS_EXCLUDE, &g4, &[&g4], 1)]),
                2 => mldv1(MLD_V1_REPORT, "ff0e::1"),
                _ => mldv2(&[record(MODE_IS_INCLUDE, &g6, &[&g6], 1)]),
            };
            for (at, value) in flips {
                let len = packet.len();
                packet[at % len] ^= value;
            }
            packet.truncate(cut % (packet.len() + 1));
            let _ = parse_reports(&packet);
        }
    }
}
