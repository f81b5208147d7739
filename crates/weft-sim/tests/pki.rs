//! Certificates over a node's life in the simulator: the node warns before
//! its own certificate expires, and at expiry.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`).

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use weft_core::Event;
use weft_sim::{NodeSpec, add_node, test_ca};

use common::{new_sim, secs};

#[test]
fn a_node_warns_before_its_certificate_expires_and_at_expiry() {
    let mut sim = new_sim(81);
    let ca = test_ca(1, sim.unix_time()).unwrap();
    let mut spec = NodeSpec::new(&sim, "short", 0);
    // Valid from an hour ago for two hours: a quarter of the lifetime (30
    // min) is the warning window, which opens in 30 minutes.
    spec.not_after = sim.unix_time() + 3600;
    let host = add_node(&mut sim, &ca, &spec).unwrap();

    sim.run_until(secs(3700));
    let warnings: Vec<(Duration, Duration)> = sim
        .events(host)
        .iter()
        .filter_map(|(at, event)| match event {
            Event::CertificateExpiring { remaining, .. } => Some((*at, *remaining)),
            _ => None,
        })
        .collect();
    assert_eq!(
        warnings,
        [(secs(1800), secs(1800)), (secs(3600), Duration::ZERO)],
        "once when the window opens, once at expiry"
    );
}
