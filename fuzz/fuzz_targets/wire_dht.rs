//! Fuzzes the DHT: the datagram and record decoders, and a DHT engine fed
//! the input twice, once raw and once as the message part of a datagram
//! that member `b` signed (so the fuzzer reaches the request handlers, the
//! store and the record checks, past the signature). Decoders are total and
//! whatever decodes re-encodes to the same bytes; the engine never panics
//! and its drains terminate.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weft_core::dht::{Dht, DhtConfig, Target};
use weft_core::wire::{DHT_PREAMBLE, DhtDatagram, RecordFields, datagram_digest};
use weft_fuzz::{A_ADDR, B_ADDR, Fixture, UNIX_START, base_instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(datagram) = DhtDatagram::decode(data) {
        let mut out = Vec::new();
        DhtDatagram::emit_unsigned(
            &mut out,
            datagram.certificate,
            datagram.txid,
            datagram.timestamp,
            &datagram.message,
        );
        out.extend_from_slice(datagram.signature);
        assert_eq!(out, data, "dht datagram does not re-encode to its bytes");
    }
    if let Ok(record) = RecordFields::decode(data) {
        let groups: Vec<String> = record.groups.iter().map(|g| (*g).to_owned()).collect();
        let mut out = Vec::new();
        RecordFields::emit_unsigned(
            &mut out,
            record.certificate,
            record.sequence,
            record.expires,
            &record.endpoints,
            &groups,
        );
        out.extend_from_slice(record.signature);
        assert_eq!(out, data, "dht record does not re-encode to its bytes");
    }

    let fixture = Fixture::get();
    let now = base_instant();
    let mut dht = Dht::new(
        now,
        Duration::from_secs(UNIX_START),
        fixture.a.secret.clone(),
        fixture.a.certificate.clone(),
        fixture.ca_certificate().clone(),
        DhtConfig::default(),
        [7; 32],
    );
    dht.handle_datagram(now, B_ADDR, data);

    // The same bytes as b's signed message: [kind][txid (8)][fields...].
    if let Some((&kind, rest)) = data.split_first() {
        let cert = fixture.b.certificate.to_bytes();
        let mut out = DHT_PREAMBLE.to_vec();
        out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
        out.extend_from_slice(cert);
        out.push(1);
        out.push(kind);
        out.extend_from_slice(&UNIX_START.to_be_bytes()); // transaction id
        out.extend_from_slice(&UNIX_START.to_be_bytes()); // timestamp
        out.extend_from_slice(rest);
        let signature = fixture.b.secret.sign(&datagram_digest(&out));
        out.extend_from_slice(&signature);
        dht.handle_datagram(now, B_ADDR, &out);
    }

    // Drain, look something up, let every timer run for a while.
    let _ = dht.lookup(now, Target::Name("b".into()));
    let mut sent = 0usize;
    while dht.poll_transmit().is_some() {
        sent += 1;
        assert!(sent < 10_000, "transmit queue does not drain");
    }
    while dht.poll_event().is_some() {}
    let end = now + Duration::from_secs(120);
    let mut steps = 0;
    while let Some(at) = dht.poll_timeout() {
        if at > end {
            break;
        }
        dht.handle_timeout(at);
        while dht.poll_transmit().is_some() {}
        while dht.poll_event().is_some() {}
        steps += 1;
        assert!(steps < 100_000, "timers do not advance");
    }
    let _ = (dht.contacts(), dht.stats(), dht.stored_records(), A_ADDR);
});
