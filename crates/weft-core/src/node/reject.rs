//! The TCP RST that answers a TCP packet the firewall rejects.
//!
//! Built as the rejected packet's destination would answer a segment for
//! a closed port (RFC 9293 §3.10.7.1): if the segment has an ACK, the reset
//! takes its sequence number from that ACK; otherwise the reset has
//! sequence number zero and acknowledges the segment (its sequence number
//! plus its length, SYN and FIN counting one each). Never a reset for a
//! reset, for a fragment other than the first, or for multicast.

use std::net::IpAddr;

use super::icmp::internet_checksum;
use crate::qos::PacketInfo;

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
/// A TCP header without options.
const TCP_HEADER: usize = 20;

/// Writes into `out` the reset for `packet` (parsed as `info`); false when
/// none may be sent.
pub(super) fn tcp_reset(packet: &[u8], info: &PacketInfo, out: &mut Vec<u8>) -> bool {
    out.clear();
    if info.protocol != Some(TCP) || crate::firewall::is_group(info.dst) {
        return false;
    }
    let Some(tcp) = info.transport.and_then(|t| packet.get(t..)) else {
        return false;
    };
    let Some(header) = tcp.get(..TCP_HEADER) else {
        return false;
    };
    let flags = header[13];
    if flags & RST != 0 {
        return false;
    }
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (seq, ack) = (word(4), word(8));
    let data_offset = usize::from(header[12] >> 4) * 4;
    let segment_len = tcp.len().saturating_sub(data_offset);
    let segment_len = u32::try_from(segment_len).unwrap_or(u32::MAX)
        + u32::from(flags & SYN != 0)
        + u32::from(flags & FIN != 0);
    let (reset_seq, reset_ack, reset_flags) = if flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        (0, seq.wrapping_add(segment_len), RST | ACK)
    };
    let mut segment = [0u8; TCP_HEADER];
    // Ports swap: the answer goes from the destination back to the source.
    segment[0..2].copy_from_slice(&header[2..4]);
    segment[2..4].copy_from_slice(&header[0..2]);
    segment[4..8].copy_from_slice(&reset_seq.to_be_bytes());
    segment[8..12].copy_from_slice(&reset_ack.to_be_bytes());
    segment[12] = 5 << 4;
    segment[13] = reset_flags;
    let length = (TCP_HEADER as u32).to_be_bytes();
    let checksum = match (info.dst, info.src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let total = (20 + TCP_HEADER) as u16;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 64, TCP, 0, 0]);
            out.extend_from_slice(&from.octets());
            out.extend_from_slice(&to.octets());
            let header_sum = internet_checksum(&[&out[..20]]);
            out[10..12].copy_from_slice(&header_sum.to_be_bytes());
            let pseudo = [0, TCP, length[2], length[3]];
            internet_checksum(&[&from.octets(), &to.octets(), &pseudo, &segment])
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(TCP_HEADER as u16).to_be_bytes());
            out.extend_from_slice(&[TCP, 64]);
            out.extend_from_slice(&from.octets());
            out.extend_from_slice(&to.octets());
            internet_checksum(&[
                &from.octets(),
                &to.octets(),
                &length,
                &[0, 0, 0, TCP],
                &segment,
            ])
        }
        _ => return false,
    };
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(&segment);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_v4(flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
        let total = 40 + payload;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = TCP;
        p[12..16].copy_from_slice(&[198, 19, 0, 2]);
        p[16..20].copy_from_slice(&[198, 19, 0, 1]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&22u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p
    }

    fn reset_of(packet: &[u8]) -> Option<Vec<u8>> {
        let info = PacketInfo::parse(packet)?;
        let mut out = Vec::new();
        tcp_reset(packet, &info, &mut out).then_some(out)
    }

    #[test]
    fn a_syn_is_answered_by_a_reset_that_acknowledges_it() {
        let rst = reset_of(&tcp_v4(SYN, 1000, 0, 0)).unwrap();
        assert_eq!(rst.len(), 40);
        assert_eq!(&rst[12..16], &[198, 19, 0, 1], "from the destination");
        assert_eq!(&rst[16..20], &[198, 19, 0, 2]);
        assert_eq!(u16::from_be_bytes([rst[20], rst[21]]), 22);
        assert_eq!(u16::from_be_bytes([rst[22], rst[23]]), 40000);
        assert_eq!(u32::from_be_bytes([rst[24], rst[25], rst[26], rst[27]]), 0);
        assert_eq!(
            u32::from_be_bytes([rst[28], rst[29], rst[30], rst[31]]),
            1001
        );
        assert_eq!(rst[33], RST | ACK);
        assert_eq!(internet_checksum(&[&rst[..20]]), 0);
        let pseudo = [&rst[12..20], &[0, TCP, 0, 20][..], &rst[20..]];
        assert_eq!(internet_checksum(&pseudo), 0);
    }

    #[test]
    fn a_segment_with_an_ack_gets_a_reset_at_that_sequence_number() {
        let rst = reset_of(&tcp_v4(ACK, 5000, 777, 100)).unwrap();
        assert_eq!(
            u32::from_be_bytes([rst[24], rst[25], rst[26], rst[27]]),
            777
        );
        assert_eq!(rst[33], RST);
    }

    #[test]
    fn no_reset_for_a_reset_or_a_truncated_header() {
        assert_eq!(reset_of(&tcp_v4(RST | ACK, 1, 1, 0)), None);
        let mut short = tcp_v4(SYN, 1, 0, 0);
        short.truncate(30);
        assert_eq!(reset_of(&short), None);
    }
}
