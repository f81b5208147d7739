//! Real-host config reload: `weft reload` changes a QoS class's rate and
//! the peer list of a running daemon while a ping runs through it, without
//! losing a ping or redoing a handshake, and refuses a new listen address
//! while the daemon keeps running on its old config.
//!
//! Three daemons in network namespaces, full mesh; h0 pings h1 every 20 ms
//! throughout. h0's config file is rewritten four times: the bulk class's
//! rate from 5 to 8 Mbit/s and h2 left out of `[[peers]]`; h2 put back;
//! the rate at 9 Mbit/s, read on SIGHUP; then another listen port, which
//! must be refused. Needs root; without it the test prints why and passes.
//! Every wait has a deadline; the test bed removes namespaces and daemons
//! also when the test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::net::IpAddr;
use std::time::Duration;

use weft::testbed::{Host, Testbed, TestbedOptions, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_millis(20);
const STREAM_LIMIT: Duration = Duration::from_secs(60);
const QOS: &str = "[qos]\n\
    [[qos.classes]]\nname = \"interactive\"\n\
    [[qos.classes]]\nname = \"bulk\"\nrate = \"5mbit\"\n";

#[test]
fn reload_changes_a_class_rate_and_the_peers_while_a_ping_runs_with_no_loss() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.host_config.insert(0, QOS.to_owned());
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    let h0 = testbed.host(0);
    let original = std::fs::read_to_string(h0.config_path()).unwrap();
    assert_eq!(bulk_rate(h0), Some(5_000_000));
    let handshakes = peer(h0, "h1")["handshakes"].as_u64().unwrap();

    let target = IpAddr::V4(testbed.host(1).overlay_ipv4().unwrap());
    let stream = h0.ping_stream(target, INTERVAL, STREAM_LIMIT);
    testbed
        .wait_until(Duration::from_secs(10), "replies before the reload", || {
            Ok(stream.replies() >= 25)
        })
        .unwrap();

    // A new rate, and h2 no longer configured.
    let h2_entry = format!(
        "\n[[peers]]\nname = \"h2\"\nendpoint = \"{}:{}\"\n",
        testbed.host(2).underlay_addr(),
        weft::testbed::PORT
    );
    assert!(original.contains(&h2_entry), "{original}");
    let changed = original
        .replace(&h2_entry, "\n")
        .replace("rate = \"5mbit\"", "rate = \"8mbit\"");
    std::fs::write(h0.config_path(), &changed).unwrap();
    let output = h0.reload().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("applied: qos"), "{stdout}");
    assert!(stdout.contains("applied: peers: h2 removed"), "{stdout}");
    assert_eq!(bulk_rate(h0), Some(8_000_000));
    assert_eq!(peer(h0, "h2")["configured"], false);

    // h2 back.
    std::fs::write(
        h0.config_path(),
        original.replace("rate = \"5mbit\"", "rate = \"8mbit\""),
    )
    .unwrap();
    let output = h0.reload().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(stdout, "applied: peers: h2 added\n");
    assert_eq!(peer(h0, "h2")["configured"], true);
    assert_eq!(peer(h0, "h2")["state"], "established");

    // SIGHUP does the same as `weft reload` (what systemctl reload sends).
    let rate_9 = original.replace("rate = \"5mbit\"", "rate = \"9mbit\"");
    std::fs::write(h0.config_path(), &rate_9).unwrap();
    let pid = h0.daemon_pid().expect("h0's daemon runs");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    testbed
        .wait_until(Duration::from_secs(10), "the rate set by SIGHUP", || {
            Ok(bulk_rate(h0) == Some(9_000_000))
        })
        .unwrap();

    // A new listen address is refused, and nothing else changes with it.
    let listen = format!("{}:{}", h0.underlay_addr(), weft::testbed::PORT);
    let moved = original.replace(
        &format!("listen = \"{listen}\""),
        &format!(
            "listen = \"{}:{}\"",
            h0.underlay_addr(),
            weft::testbed::PORT + 1
        ),
    );
    assert_ne!(moved, original);
    std::fs::write(h0.config_path(), &moved).unwrap();
    let output = h0.reload().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("refused: node.listen"), "{stdout}");
    assert_eq!(bulk_rate(h0), Some(9_000_000));

    // Another second of pings after the last reload; none lost, and the
    // session with h1 is the one from before.
    let replies = stream.replies();
    testbed
        .wait_until(Duration::from_secs(10), "replies after the reloads", || {
            Ok(stream.replies() >= replies + 50)
        })
        .unwrap();
    let record = stream.stop().unwrap();
    let lost: Vec<u32> = record
        .probes
        .iter()
        .filter(|p| p.rtt.is_none())
        .map(|p| p.seq)
        .collect();
    assert!(
        lost.is_empty(),
        "lost pings {lost:?}\n{}",
        testbed.log_tails()
    );
    assert_eq!(peer(h0, "h1")["handshakes"].as_u64().unwrap(), handshakes);
    assert_eq!(peer(h0, "h1")["state"], "established");
}

/// The bulk class's rate limit in `weft qos --json`.
fn bulk_rate(host: &Host) -> Option<u64> {
    let qos = host
        .request(&serde_json::json!({ "command": "qos" }))
        .unwrap();
    qos["qos"]["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bulk")
        .and_then(|c| c["rate_limit_bps"].as_u64())
}

/// Peer `name` in the host's status.
fn peer(host: &Host, name: &str) -> serde_json::Value {
    let status = host.status().unwrap();
    status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {name} in {status}"))
}
