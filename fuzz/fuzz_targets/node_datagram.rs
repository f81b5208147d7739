//! Fuzzes a node's inputs: raw datagrams (the decoder, the handshake
//! responder and initiator, the data path), TUN packets, time and deliveries
//! between the node and a real peer, from a byte script (see
//! `weft_fuzz::Harness`). Each input runs on fresh nodes built from fixed
//! keys and seeds, so every crash reproduces from its input alone.
//!
//! Checked: nothing panics, the call contract's drains terminate, and the node
//! only hands its TUN packets whose source is its authenticated peer's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::Harness;

fuzz_target!(|data: &[u8]| {
    let _ = Harness::run_input(data);
});
