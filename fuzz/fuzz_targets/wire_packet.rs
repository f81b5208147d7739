//! Fuzzes every wire decoder: the outer packet, the frame, the handshake
//! payload and the membership record. Decoders are total (no panic on any bytes); whatever decodes must
//! re-encode to something that decodes to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::wire::{self, DATA_HEADER_LEN, Frame, HandshakePayload, MembershipRecord, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::decode(data) {
        check_packet(data, packet);
    }
    if let Ok(frame) = Frame::decode(data) {
        let mut out = Vec::new();
        frame.emit(&mut out);
        assert_eq!(Frame::decode(&out), Ok(frame), "frame does not round-trip");
    }
    if let Ok(payload) = HandshakePayload::decode(data) {
        let mut out = Vec::new();
        payload.emit(&mut out);
        // The payload format has one encoding per value: trailing bytes and
        // short lengths are errors.
        assert_eq!(
            out, data,
            "handshake payload does not re-encode to its bytes"
        );
    }
    if let Ok(record) = MembershipRecord::decode(data) {
        // One encoding per record: the fields re-encode to its bytes.
        let groups: Vec<_> = record.groups().collect();
        let mut out = Vec::new();
        MembershipRecord::emit_unsigned(
            &mut out,
            record.certificate,
            record.sequence,
            record.lifetime_secs,
            &groups,
        );
        assert_eq!(out, record.signed, "membership record does not re-encode");
        out.extend_from_slice(record.signature);
        assert_eq!(out, data, "membership record does not re-encode");
    }
});

/// The header emitters must reproduce the bytes the decoder read.
fn check_packet(data: &[u8], packet: Packet<'_>) {
    let mut out = Vec::new();
    match packet {
        Packet::HandshakeInit {
            sender,
            noise,
            flags,
            signature,
            mac1,
            mac2,
        } => {
            wire::emit_handshake_init(&mut out, sender);
            out.extend_from_slice(noise);
            out.push(flags);
            out.extend_from_slice(signature);
            out.extend_from_slice(mac1);
            out.extend_from_slice(mac2);
        }
        Packet::CookieReply {
            receiver,
            nonce,
            sealed,
        } => wire::emit_cookie_reply(&mut out, receiver, nonce, sealed),
        Packet::HandshakeResponse {
            sender,
            receiver,
            noise,
        } => {
            wire::emit_handshake_response(&mut out, sender, receiver);
            out.extend_from_slice(noise);
        }
        Packet::Data { receiver, counter } => {
            let mut header = [0u8; DATA_HEADER_LEN];
            wire::write_data_header(&mut header, receiver, counter);
            out.extend_from_slice(&header);
            out.extend_from_slice(&data[DATA_HEADER_LEN..]);
        }
        // The DHT decodes (and fuzzes) its own datagrams.
        Packet::Dht => return,
    }
    assert_eq!(out, data, "packet header does not re-encode to its bytes");
}
