//! ICMP "destination unreachable" errors the node writes.
//!
//! When a packet's overlay destination cannot be found (its DHT lookup
//! failed), the application that sent it should learn so at once instead of
//! waiting for its own timeout: the node answers with ICMPv4 type 3 code 1
//! (host unreachable, RFC 792) or ICMPv6 type 1 code 3 (address unreachable,
//! RFC 4443), from this node's overlay address, quoting the start of the
//! offending packet as those RFCs ask. When the firewall rejects a packet
//! that is not TCP, the answer is "communication administratively
//! prohibited" (ICMPv4 3/13, RFC 1812 §5.2.7.1; ICMPv6 1/1), from the
//! rejected packet's destination, so it reads as the destination's refusal.
//! Errors are never sent about ICMP errors, fragments other than the first,
//! or multicast packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ICMPv6 errors must fit the IPv6 minimum MTU.
const IPV6_MIN_MTU: usize = 1280;

/// The ICMP error for `packet` (an IPv4 or IPv6 packet this node could not
/// deliver), from `from4` / `from6`, or `None` when none may be sent.
pub(super) fn unreachable(
    packet: &[u8],
    from4: Option<Ipv4Addr>,
    from6: Ipv6Addr,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    match packet.first().map(|b| b >> 4) {
        Some(4) => from4.is_some_and(|from| error_v4(packet, from, 1, out)),
        Some(6) => error_v6(packet, from6, 3, out),
        _ => false,
    }
}

/// The "administratively prohibited" error for `packet` (whose
/// destination is `destination`), from that destination; `None` when none
/// may be sent.
pub(super) fn prohibited(packet: &[u8], destination: IpAddr, out: &mut Vec<u8>) -> bool {
    out.clear();
    match destination {
        IpAddr::V4(from) => error_v4(packet, from, 13, out),
        IpAddr::V6(from) => error_v6(packet, from, 1, out),
    }
}

/// ICMPv4 destination unreachable (type 3) with `code`.
fn error_v4(packet: &[u8], from: Ipv4Addr, code: u8, out: &mut Vec<u8>) -> bool {
    if packet.len() < 20 {
        return false;
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return false;
    }
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let is_icmp_error = packet[9] == 1
        && packet
            .get(header_len)
            .is_some_and(|&t| matches!(t, 3 | 4 | 5 | 11 | 12));
    if fragment_offset != 0
        || is_icmp_error
        || destination.is_multicast()
        || destination.is_broadcast()
        || source.is_unspecified()
    {
        return false;
    }
    let quoted = &packet[..packet.len().min(header_len + 8)];
    let total = 20 + 8 + quoted.len();
    // IPv4 header: version 4, IHL 5, no options.
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    out.extend_from_slice(&from.octets());
    out.extend_from_slice(&source.octets());
    let checksum = internet_checksum(&[&out[..20]]);
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
    // ICMP: type 3 (destination unreachable).
    out.extend_from_slice(&[3, code, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(quoted);
    let checksum = internet_checksum(&[&out[20..]]);
    out[22..24].copy_from_slice(&checksum.to_be_bytes());
    true
}

/// ICMPv6 destination unreachable (type 1) with `code`.
fn error_v6(packet: &[u8], from: Ipv6Addr, code: u8, out: &mut Vec<u8>) -> bool {
    if packet.len() < 40 {
        return false;
    }
    let mut source = [0u8; 16];
    source.copy_from_slice(&packet[8..24]);
    let source = Ipv6Addr::from(source);
    let destination_multicast = packet[24] == 0xff;
    // ICMPv6 (next header 58) with an error type (< 128): no error about it.
    let is_icmp_error = packet[6] == 58 && packet.get(40).is_some_and(|&t| t < 128);
    if destination_multicast || is_icmp_error || source.is_unspecified() {
        return false;
    }
    let quoted = &packet[..packet.len().min(IPV6_MIN_MTU - 40 - 8)];
    let payload_len = 8 + quoted.len();
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    out.extend_from_slice(&[58, 64]);
    out.extend_from_slice(&from.octets());
    out.extend_from_slice(&source.octets());
    // ICMPv6: type 1 (destination unreachable).
    out.extend_from_slice(&[1, code, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(quoted);
    let length = (payload_len as u32).to_be_bytes();
    let pseudo_tail = [0, 0, 0, 58];
    let checksum = internet_checksum(&[&out[8..40], &length, &pseudo_tail, &out[40..]]);
    out[42..44].copy_from_slice(&checksum.to_be_bytes());
    true
}

/// The RFC 1071 ones'-complement sum over the concatenation of `parts`
/// (each but the last of even length).
pub(super) fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_v4(source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&source);
        p.extend_from_slice(&destination);
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        p
    }

    #[test]
    fn ipv4_error_quotes_the_header_and_checksums_verify() {
        let packet = udp_v4([198, 19, 0, 1], [198, 19, 0, 99]);
        let mut out = Vec::new();
        assert!(unreachable(
            &packet,
            Some(Ipv4Addr::new(198, 19, 0, 1)),
            Ipv6Addr::LOCALHOST,
            &mut out
        ));
        assert_eq!(out.len(), 20 + 8 + 28);
        assert_eq!(&out[16..20], &[198, 19, 0, 1]);
        assert_eq!((out[20], out[21]), (3, 1));
        assert_eq!(internet_checksum(&[&out[..20]]), 0);
        assert_eq!(internet_checksum(&[&out[20..]]), 0);
        assert_eq!(&out[28..], &packet[..28]);
    }

    #[test]
    fn a_prohibited_error_comes_from_the_rejected_destination() {
        let packet = udp_v4([198, 19, 0, 2], [198, 19, 0, 1]);
        let mut out = Vec::new();
        let destination = IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1));
        assert!(prohibited(&packet, destination, &mut out));
        assert_eq!(&out[12..16], &[198, 19, 0, 1]);
        assert_eq!(&out[16..20], &[198, 19, 0, 2]);
        assert_eq!((out[20], out[21]), (3, 13));
        assert_eq!(internet_checksum(&[&out[20..]]), 0);
    }

    #[test]
    fn ipv6_error_checksum_verifies_with_the_pseudo_header() {
        let source: Ipv6Addr = "fd77:6566::1".parse().unwrap();
        let destination: Ipv6Addr = "fd77:6566::2".parse().unwrap();
        let mut packet = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        packet.extend_from_slice(&source.octets());
        packet.extend_from_slice(&destination.octets());
        packet.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        let mut out = Vec::new();
        assert!(unreachable(&packet, None, source, &mut out));
        assert_eq!((out[40], out[41]), (1, 3));
        let length = ((out.len() - 40) as u32).to_be_bytes();
        let sum = internet_checksum(&[&out[8..40], &length, &[0, 0, 0, 58], &out[40..]]);
        assert_eq!(sum, 0);
    }

    #[test]
    fn no_error_about_errors_fragments_or_garbage() {
        let mut out = Vec::new();
        let from = Some(Ipv4Addr::new(198, 19, 0, 1));
        let mut icmp_error = udp_v4([198, 19, 0, 1], [198, 19, 0, 99]);
        icmp_error[9] = 1;
        icmp_error[20] = 3;
        assert!(!unreachable(
            &icmp_error,
            from,
            Ipv6Addr::LOCALHOST,
            &mut out
        ));
        let mut fragment = udp_v4([198, 19, 0, 1], [198, 19, 0, 99]);
        fragment[7] = 8;
        assert!(!unreachable(&fragment, from, Ipv6Addr::LOCALHOST, &mut out));
        assert!(!unreachable(
            &[0x45, 0, 1],
            from,
            Ipv6Addr::LOCALHOST,
            &mut out
        ));
        assert!(!unreachable(&[], from, Ipv6Addr::LOCALHOST, &mut out));
        let packet = udp_v4([198, 19, 0, 1], [198, 19, 0, 99]);
        assert!(!unreachable(&packet, None, Ipv6Addr::LOCALHOST, &mut out));
    }
}
