//! Minimal IP packets for tests: build a UDP datagram or a TCP segment
//! (header only) inside an IPv4 or IPv6 packet, and read one back.
//!
//! This is what an application behind the TUN would write: tests inject
//! these into a node with `handle_tun_packet` and read them from the
//! receiver's TUN sink. Checksums are computed on build and verified on
//! parse, so a packet corrupted anywhere on the way does not parse.
//! [`parse_udp`] and [`parse_tcp`] are total: any bytes give a datagram
//! (segment) or `None`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const PROTOCOL_UDP: u8 = 17;
const PROTOCOL_TCP: u8 = 6;
const TCP_HEADER: usize = 20;
const TTL: u8 = 64;

/// Why a packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPacketError {
    /// Source and destination are of different address families.
    MixedFamilies,
    /// The payload does not fit in one packet.
    TooLong,
}

impl fmt::Display for BuildPacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MixedFamilies => {
                f.write_str("source and destination are of different address families")
            }
            Self::TooLong => f.write_str("payload too long for one packet"),
        }
    }
}

impl std::error::Error for BuildPacketError {}

/// A UDP datagram read from an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// A TCP segment's header read from an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
}

/// Builds an IPv4 or IPv6 packet carrying a TCP segment without options or
/// payload (enough to open, answer or reset a connection in a test).
pub fn tcp_packet(
    source: SocketAddr,
    destination: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Result<Vec<u8>, BuildPacketError> {
    let mut segment = [0u8; TCP_HEADER];
    segment[0..2].copy_from_slice(&source.port().to_be_bytes());
    segment[2..4].copy_from_slice(&destination.port().to_be_bytes());
    segment[4..8].copy_from_slice(&seq.to_be_bytes());
    segment[8..12].copy_from_slice(&ack.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = flags;
    segment[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    let (mut packet, pseudo) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = (IPV4_HEADER + TCP_HEADER) as u16;
            let mut packet = vec![0x45, 0];
            packet.extend_from_slice(&total.to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0x40, 0, TTL, PROTOCOL_TCP, 0, 0]);
            packet.extend_from_slice(&src.octets());
            packet.extend_from_slice(&dst.octets());
            let checksum = finish(sum(&packet, 0));
            packet[10..12].copy_from_slice(&checksum.to_be_bytes());
            (packet, pseudo_v4(src, dst, PROTOCOL_TCP, TCP_HEADER))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut packet = vec![0x60, 0, 0, 0];
            packet.extend_from_slice(&(TCP_HEADER as u16).to_be_bytes());
            packet.extend_from_slice(&[PROTOCOL_TCP, TTL]);
            packet.extend_from_slice(&src.octets());
            packet.extend_from_slice(&dst.octets());
            (packet, pseudo_v6(src, dst, PROTOCOL_TCP, TCP_HEADER))
        }
        _ => return Err(BuildPacketError::MixedFamilies),
    };
    let checksum = finish(sum(&segment, pseudo));
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(&segment);
    Ok(packet)
}

/// Reads a TCP segment's header from an IPv4 (without options) or IPv6
/// (without extension headers) packet, checking lengths and checksums.
pub fn parse_tcp(packet: &[u8]) -> Option<TcpSegment> {
    let (src, dst, tcp, pseudo) = match packet.first()? >> 4 {
        4 => {
            let header = packet.get(..IPV4_HEADER)?;
            if header[0] != 0x45 || header[9] != PROTOCOL_TCP || finish(sum(header, 0)) != 0 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&header[12..16]).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&header[16..20]).ok()?);
            let tcp = packet.get(IPV4_HEADER..total)?;
            let pseudo = pseudo_v4(src, dst, PROTOCOL_TCP, tcp.len());
            (IpAddr::V4(src), IpAddr::V4(dst), tcp, pseudo)
        }
        6 => {
            let header = packet.get(..IPV6_HEADER)?;
            if header[6] != PROTOCOL_TCP {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
            let tcp = packet.get(IPV6_HEADER..IPV6_HEADER + len)?;
            let pseudo = pseudo_v6(src, dst, PROTOCOL_TCP, tcp.len());
            (IpAddr::V6(src), IpAddr::V6(dst), tcp, pseudo)
        }
        _ => return None,
    };
    let header = tcp.get(..TCP_HEADER)?;
    if finish(sum(tcp, pseudo)) != 0 {
        return None;
    }
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    Some(TcpSegment {
        source: SocketAddr::new(src, u16::from_be_bytes([header[0], header[1]])),
        destination: SocketAddr::new(dst, u16::from_be_bytes([header[2], header[3]])),
        seq: word(4),
        ack: word(8),
        flags: header[13],
    })
}

/// Builds an IPv4 or IPv6 packet carrying one UDP datagram.
pub fn udp_packet(
    source: SocketAddr,
    destination: SocketAddr,
    payload: &[u8],
) -> Result<Vec<u8>, BuildPacketError> {
    let udp_len = UDP_HEADER + payload.len();
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = IPV4_HEADER + udp_len;
            let total16 = u16::try_from(total).map_err(|_| BuildPacketError::TooLong)?;
            let mut packet = Vec::with_capacity(total);
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&total16.to_be_bytes());
            // Identification 0, don't fragment, TTL, protocol, checksum
            // filled in below.
            packet.extend_from_slice(&[0, 0, 0x40, 0, TTL, PROTOCOL_UDP, 0, 0]);
            packet.extend_from_slice(&src.octets());
            packet.extend_from_slice(&dst.octets());
            let checksum = finish(sum(&packet, 0));
            packet[10..12].copy_from_slice(&checksum.to_be_bytes());
            push_udp(
                &mut packet,
                source.port(),
                destination.port(),
                payload,
                pseudo_v4(src, dst, PROTOCOL_UDP, udp_len),
            );
            Ok(packet)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let udp16 = u16::try_from(udp_len).map_err(|_| BuildPacketError::TooLong)?;
            let mut packet = Vec::with_capacity(IPV6_HEADER + udp_len);
            packet.extend_from_slice(&[0x60, 0, 0, 0]);
            packet.extend_from_slice(&udp16.to_be_bytes());
            packet.extend_from_slice(&[PROTOCOL_UDP, TTL]);
            packet.extend_from_slice(&src.octets());
            packet.extend_from_slice(&dst.octets());
            push_udp(
                &mut packet,
                source.port(),
                destination.port(),
                payload,
                pseudo_v6(src, dst, PROTOCOL_UDP, udp_len),
            );
            Ok(packet)
        }
        _ => Err(BuildPacketError::MixedFamilies),
    }
}

/// Sets the DSCP (the six high bits of the IPv4 TOS or IPv6 traffic class
/// byte) of an IP packet, fixing the IPv4 header checksum. Leaves anything
/// that is not an IPv4 or IPv6 packet unchanged.
pub fn set_dscp(packet: &mut [u8], dscp: u8) {
    let dscp = dscp & 0x3f;
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= IPV4_HEADER => {
            packet[1] = (dscp << 2) | (packet[1] & 0x03);
            packet[10..12].fill(0);
            let checksum = finish(sum(&packet[..IPV4_HEADER], 0));
            packet[10..12].copy_from_slice(&checksum.to_be_bytes());
        }
        Some(6) if packet.len() >= 2 => {
            let class = dscp << 2;
            packet[0] = (packet[0] & 0xf0) | (class >> 4);
            packet[1] = ((class & 0x0f) << 4) | (packet[1] & 0x0f);
        }
        _ => {}
    }
}

/// Reads a UDP datagram from an IPv4 (without options) or IPv6 (without
/// extension headers) packet, checking lengths and checksums.
pub fn parse_udp(packet: &[u8]) -> Option<UdpDatagram<'_>> {
    match packet.first()? >> 4 {
        4 => {
            let header = packet.get(..IPV4_HEADER)?;
            if header[0] != 0x45 || header[9] != PROTOCOL_UDP || finish(sum(header, 0)) != 0 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&header[12..16]).ok()?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&header[16..20]).ok()?);
            let udp = packet.get(IPV4_HEADER..total)?;
            read_udp(
                IpAddr::V4(src),
                IpAddr::V4(dst),
                udp,
                pseudo_v4(src, dst, PROTOCOL_UDP, udp.len()),
            )
        }
        6 => {
            let header = packet.get(..IPV6_HEADER)?;
            if header[6] != PROTOCOL_UDP {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
            let udp = packet.get(IPV6_HEADER..IPV6_HEADER + len)?;
            read_udp(
                IpAddr::V6(src),
                IpAddr::V6(dst),
                udp,
                pseudo_v6(src, dst, PROTOCOL_UDP, udp.len()),
            )
        }
        _ => None,
    }
}

fn push_udp(
    packet: &mut Vec<u8>,
    source_port: u16,
    destination_port: u16,
    payload: &[u8],
    pseudo: u32,
) {
    let start = packet.len();
    // The caller checked that the length fits in 16 bits.
    let len = (UDP_HEADER + payload.len()) as u16;
    packet.extend_from_slice(&source_port.to_be_bytes());
    packet.extend_from_slice(&destination_port.to_be_bytes());
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let mut checksum = finish(sum(&packet[start..], pseudo));
    // Zero means "no checksum" in UDP over IPv4 and is invalid over IPv6.
    if checksum == 0 {
        checksum = 0xffff;
    }
    packet[start + 6..start + 8].copy_from_slice(&checksum.to_be_bytes());
}

fn read_udp(src: IpAddr, dst: IpAddr, udp: &[u8], pseudo: u32) -> Option<UdpDatagram<'_>> {
    let header = udp.get(..UDP_HEADER)?;
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if len != udp.len() || finish(sum(udp, pseudo)) != 0 {
        return None;
    }
    Some(UdpDatagram {
        source: SocketAddr::new(src, u16::from_be_bytes([header[0], header[1]])),
        destination: SocketAddr::new(dst, u16::from_be_bytes([header[2], header[3]])),
        payload: &udp[UDP_HEADER..],
    })
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u32 {
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    header.extend_from_slice(&[0, protocol]);
    header.extend_from_slice(&(len as u16).to_be_bytes());
    sum(&header, 0)
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: u8, len: usize) -> u32 {
    let mut header = Vec::with_capacity(40);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    header.extend_from_slice(&(len as u32).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, protocol]);
    sum(&header, 0)
}

/// The ones' complement sum of 16-bit words (RFC 1071), not yet folded.
fn sum(bytes: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = bytes.chunks_exact(2);
    for word in &mut chunks {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_udp_round_trips() {
        let src: SocketAddr = "198.19.0.1:1000".parse().unwrap();
        let dst: SocketAddr = "198.19.0.2:2000".parse().unwrap();
        let packet = udp_packet(src, dst, b"hello").unwrap();
        assert_eq!(packet.len(), 20 + 8 + 5);
        let udp = parse_udp(&packet).unwrap();
        assert_eq!(
            (udp.source, udp.destination, udp.payload),
            (src, dst, &b"hello"[..])
        );
    }

    #[test]
    fn tcp_round_trips_in_both_families() {
        for (src, dst) in [
            ("198.19.0.1:40000", "198.19.0.2:22"),
            ("[fd77:6566::1]:40000", "[fd77:6566::2]:22"),
        ] {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let packet = tcp_packet(src, dst, 7, 9, 0x12).unwrap();
            let segment = parse_tcp(&packet).unwrap();
            assert_eq!(
                segment,
                TcpSegment {
                    source: src,
                    destination: dst,
                    seq: 7,
                    ack: 9,
                    flags: 0x12
                }
            );
            let mut corrupt = packet.clone();
            *corrupt.last_mut().unwrap() ^= 1;
            assert_eq!(parse_tcp(&corrupt), None);
            assert_eq!(parse_udp(&packet), None);
        }
    }

    #[test]
    fn ipv6_udp_round_trips() {
        let src: SocketAddr = "[fd77:6566::1]:1000".parse().unwrap();
        let dst: SocketAddr = "[fd77:6566::2]:2000".parse().unwrap();
        let packet = udp_packet(src, dst, b"odd").unwrap();
        assert_eq!(packet.len(), 40 + 8 + 3);
        let udp = parse_udp(&packet).unwrap();
        assert_eq!(
            (udp.source, udp.destination, udp.payload),
            (src, dst, &b"odd"[..])
        );
    }

    #[test]
    fn corrupted_or_truncated_packets_do_not_parse() {
        let src: SocketAddr = "198.19.0.1:1000".parse().unwrap();
        let dst: SocketAddr = "198.19.0.2:2000".parse().unwrap();
        let packet = udp_packet(src, dst, b"payload").unwrap();
        for i in 0..packet.len() {
            let mut bad = packet.clone();
            bad[i] ^= 0x01;
            assert!(parse_udp(&bad).is_none(), "flipped byte {i}");
            assert!(parse_udp(&packet[..i]).is_none(), "truncated to {i}");
        }
    }

    #[test]
    fn dscp_is_set_in_both_families_and_the_packet_stays_valid() {
        for (src, dst) in [
            ("198.19.0.1:1000", "198.19.0.2:2000"),
            ("[fd77:6566::1]:1000", "[fd77:6566::2]:2000"),
        ] {
            let mut packet =
                udp_packet(src.parse().unwrap(), dst.parse().unwrap(), b"bulk").unwrap();
            set_dscp(&mut packet, 10);
            let dscp = if packet[0] >> 4 == 4 {
                packet[1] >> 2
            } else {
                ((packet[0] & 0x0f) << 2) | (packet[1] >> 6)
            };
            assert_eq!(dscp, 10);
            assert_eq!(parse_udp(&packet).unwrap().payload, b"bulk");
        }
    }

    #[test]
    fn mixed_families_are_refused() {
        let src: SocketAddr = "198.19.0.1:1000".parse().unwrap();
        let dst: SocketAddr = "[fd77:6566::2]:2000".parse().unwrap();
        assert_eq!(
            udp_packet(src, dst, b""),
            Err(BuildPacketError::MixedFamilies)
        );
    }
}
