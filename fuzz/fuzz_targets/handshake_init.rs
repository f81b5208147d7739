//! Fuzzes the responder's handshake path past its cheapest gate: the input
//! is shaped into a handshake init with a valid mac1 (which anyone who holds
//! the CA certificate can compute), so libFuzzer explores what comes after
//! it: the guard, the cookie logic, the clear-text read of IX message 1, the
//! replay check, certificate and signature verification and the Noise read.
//!
//! Input: `[selector][flags][timestamp u64][rest…]`. The selector picks the
//! certificate placed in the payload (a member's, another CA's, an expired
//! one, or the raw bytes of `rest`) and whether the init is sent from `b`'s
//! address, a stranger's, or in a burst of 300 (to drive the node under
//! load). `rest` supplies the ephemeral key and static key bytes and trails
//! as padding or garbage.
//!
//! Checked: nothing panics, drains terminate, the node never hands its TUN
//! anything, never moves `b`'s endpoint, and never sends any address more
//! bytes than that address sent it in answer to the input.
//!
//! Unlike the other targets, one node serves every input of a process (a
//! fresh node per input spent most of the time building it: under 600
//! executions a second). Each input runs one virtual second after the
//! previous one, so the responder's budget has refilled; what the node keeps
//! between inputs is what a real responder keeps between attackers' packets.

#![no_main]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weft_core::wire::{self, HandshakePayload, SessionIndex};
use weft_core::HandshakeKeys;
use weft_fuzz::{base_instant, node, Fixture};

fuzz_target!(|data: &[u8]| {
    let fixture = Fixture::get();
    let (Some(&selector), Some(&flags)) = (data.first(), data.get(1)) else {
        return;
    };
    let timestamp = data
        .get(2..10)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    let rest = data.get(10..).unwrap_or_default();
    let b_addr: SocketAddr = "198.18.0.2:4800".parse().expect("address");
    let stranger: SocketAddr = "198.18.0.99:4800".parse().expect("address");
    let _ = fixture;
    thread_local! {
        static NODE: RefCell<(weft_core::Node, u64)> = RefCell::new((
            node(&Fixture::get().a, 1, "b", Some("198.18.0.2:4800".parse().expect("address"))),
            0,
        ));
    }
    NODE.with(|cell| {
        let (a, step) = &mut *cell.borrow_mut();
        *step += 1;
        let now = base_instant() + Duration::from_secs(*step);
        run(a, now, selector, flags, timestamp, rest, b_addr, stranger);
    });
});

#[allow(clippy::too_many_arguments)]
fn run(
    a: &mut weft_core::Node,
    now: std::time::Instant,
    selector: u8,
    flags: u8,
    timestamp: u64,
    rest: &[u8],
    b_addr: SocketAddr,
    stranger: SocketAddr,
) {
    let fixture = Fixture::get();
    let keys = HandshakeKeys::new(fixture.ca_certificate());
    let who = match selector & 3 {
        0 => Some(&fixture.b),
        1 => Some(&fixture.x),
        2 => Some(&fixture.old),
        _ => None,
    };
    let mut init = Vec::new();
    wire::emit_handshake_init(&mut init, SessionIndex(7));
    let mut keys_bytes = [0u8; 64];
    for (i, byte) in rest.iter().take(64).enumerate() {
        keys_bytes[i] = *byte;
    }
    if let Some(who) = who {
        if selector & 4 != 0 {
            keys_bytes[32..].copy_from_slice(&who.certificate.public_key().x25519);
        }
    }
    init.extend_from_slice(&keys_bytes);
    let tail = rest.get(64..).unwrap_or_default();
    match who {
        Some(who) => HandshakePayload {
            timestamp,
            certificate: who.certificate.to_bytes(),
            padding: tail.len().min(512),
        }
        .emit(&mut init),
        None => init.extend_from_slice(tail),
    }
    init.push(flags);
    init.extend_from_slice(&[0x11; wire::INIT_SIGNATURE_LEN]);
    init.extend_from_slice(&[0; 2 * wire::MAC_LEN]);
    keys.write_mac1(&mut init);

    let from = if selector & 8 != 0 { b_addr } else { stranger };
    let copies = if selector & 16 != 0 { 120 } else { 1 };
    let mut buf = Vec::new();
    // `a`'s own business (handshakes with `b`, timers): not answers.
    a.handle_timeout(now);
    while a.poll_transmit(&mut buf).is_some() {}
    while a.poll_tun(&mut buf) {}
    while a.poll_event().is_some() {}
    let endpoint_before = endpoint_of_b(a, now);
    let mut received: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    let mut sent: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for _ in 0..copies {
        *received.entry(from).or_default() += init.len();
        a.handle_datagram(now, from, &init);
        for _ in 0..10_000 {
            let Some(to) = a.poll_transmit(&mut buf) else {
                break;
            };
            *sent.entry(to).or_default() += buf.len();
        }
        assert!(!a.poll_tun(&mut buf), "a forged init put a packet on the TUN");
        while a.poll_event().is_some() {}
    }
    assert_eq!(endpoint_of_b(a, now), endpoint_before, "b's endpoint moved");
    for (to, bytes) in sent {
        // Handshake retries to b are a's own business, not answers.
        if to == b_addr && from != b_addr {
            continue;
        }
        let got = received.get(&to).copied().unwrap_or(0);
        assert!(bytes <= got, "sent {bytes} bytes to {to}, which sent {got}");
    }
}

fn endpoint_of_b(a: &weft_core::Node, now: std::time::Instant) -> Option<SocketAddr> {
    a.peers(now)
        .into_iter()
        .next()
        .and_then(|p| p.endpoint)
}
