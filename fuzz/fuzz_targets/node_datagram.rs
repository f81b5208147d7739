//! Fuzzes a node's inputs: raw datagrams (the decoder, the handshake
//! responder and initiator, the data path), TUN packets, time and deliveries
//! between the node and a real peer, from a byte script (see
//! `weft_fuzz::Harness`). One pair of nodes, built from fixed keys and seeds
//! with a session between them, serves many inputs in a row (see
//! `Harness::run_persistent`: a fresh pair per input ran under 600 inputs a
//! second, nearly all of it key agreement); `WEFT_FUZZ_FRESH=1` runs each
//! input on fresh nodes instead, to see whether a crash reproduces alone.
//!
//! Checked: nothing panics, the call contract's drains terminate, and the node
//! only hands its TUN packets whose source is its authenticated peer's (or
//! the ICMP errors it makes itself).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::Harness;

fuzz_target!(|data: &[u8]| {
    Harness::run_persistent(data);
});
