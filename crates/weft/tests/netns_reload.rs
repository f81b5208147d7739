//! Real-host config reload, three daemons in network namespaces, full
//! mesh, with h0 pinging h1 every 20 ms throughout each test.
//!
//! The first test rewrites h0's config four times: the bulk class's rate
//! from 5 to 8 Mbit/s and h2 left out of `[[peers]]`; h2 put back; the
//! rate at 9 Mbit/s, read on SIGHUP; then another listen port, which must
//! be refused while the daemon keeps its config. No ping is lost and no
//! handshake with h1 is redone.
//!
//! The second test runs h1 with a firewall that answers pings from h0 and
//! from h2, each by a rule of its own, while h2 pings h1 too. Reloads on
//! h1 remove h2's rule (h2's tracked ping flow is closed at once and
//! counted) and put it back; blocklist h2 (their session ends) and unlist
//! it (h1 calls it again); on h0 a certificate of another key is refused
//! and a renewed one (`weft ca renew`) adopted: the status and the
//! `/metrics` gauge show its expiry, and h1 learns it by a rekey; last, a
//! revocation list of h2's certificate given to h1 is installed and
//! reaches h0. h0's ping to h1 loses nothing throughout and no session
//! between them is lost.
//!
//! Needs root; without it the tests print why and pass. Every wait has a
//! deadline; the test bed removes namespaces and daemons also when the
//! test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test
#![allow(clippy::disallowed_methods)] // real time: pings are sent and answered by real hosts

#[path = "support/http.rs"]
mod http;

use std::ffi::OsStr;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// h1 answers pings from h0 and h2, each by a rule of its own.
const PING_H0: &str = "[[firewall.inbound]]\nname = \"ping-h0\"\nproto = \"icmp\"\nhost = \"h0\"\n";
const PING_H2: &str = "[[firewall.inbound]]\nname = \"ping-h2\"\nproto = \"icmp\"\nhost = \"h2\"\n";

#[test]
fn reload_changes_a_firewall_rule_and_adopts_a_renewed_certificate_without_losing_a_ping() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options
        .host_config
        .insert(1, format!("[firewall]\n{PING_H0}{PING_H2}"));
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    let (h0, h1, h2) = (testbed.host(0), testbed.host(1), testbed.host(2));
    let h1_config = std::fs::read_to_string(h1.config_path()).unwrap();
    let target = IpAddr::V4(h1.overlay_ipv4().unwrap());
    let handshakes = peer(h1, "h0")["handshakes"].as_u64().unwrap();

    // h0 pings h1 throughout: the allowed path that must lose nothing.
    let steady = h0.ping_stream(target, INTERVAL, STREAM_LIMIT);
    let probed = h2.ping_stream(target, INTERVAL, STREAM_LIMIT);
    testbed
        .wait_until(Duration::from_secs(10), "both pings answered", || {
            Ok(steady.replies() >= 25 && probed.replies() >= 25)
        })
        .unwrap();

    // h2's rule goes: its ping flow, tracked, is judged again and closed.
    let without_h2 = h1_config.replace(PING_H2, "");
    assert_ne!(without_h2, h1_config);
    std::fs::write(h1.config_path(), &without_h2).unwrap();
    let stdout = reload(h1, true);
    assert!(stdout.contains("applied: firewall: 1 inbound"), "{stdout}");
    let cut = Instant::now();
    testbed
        .wait_until(Duration::from_secs(10), "h2's pings go unanswered", || {
            Ok(known_after(&probed, cut) >= 10)
        })
        .unwrap();
    assert_eq!(probed.replies_sent_after(cut), 0);
    let firewall = &h1.status().unwrap()["firewall"];
    assert_eq!(firewall["conntrack_closed_by_reload"], 1, "{firewall}");
    let rules = firewall["inbound"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{firewall}");
    assert_eq!(rules[0]["rule"], "ping-h0");
    assert_eq!(
        rules[0]["packets"], 1,
        "h0's one flow, counted before the reload"
    );

    // The rule back: h2's pings pass again.
    std::fs::write(h1.config_path(), &h1_config).unwrap();
    let stdout = reload(h1, true);
    assert!(stdout.contains("applied: firewall: 2 inbound"), "{stdout}");
    let back = Instant::now();
    testbed
        .wait_until(Duration::from_secs(10), "h2's pings answered again", || {
            Ok(probed.replies_sent_after(back) >= 10)
        })
        .unwrap();
    drop(probed.stop().unwrap());

    // h2 blocklisted on h1: their session ends at once.
    let h2_certificate = weft_core::Certificate::from_pem(
        &std::fs::read_to_string(h2.dir().join("node.crt")).unwrap(),
    )
    .unwrap();
    let fingerprint: String = h2_certificate
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        h1.config_path(),
        format!("{h1_config}\n[pki]\nblocklist = [\"{fingerprint}\"]\n"),
    )
    .unwrap();
    let stdout = reload(h1, true);
    assert!(
        stdout.contains("applied: pki.blocklist: 1 entries; 1 sessions ended"),
        "{stdout}"
    );
    assert_ne!(peer(h1, "h2")["state"], "established");
    // Unlisted again: h1 calls h2, a configured peer, at once.
    std::fs::write(h1.config_path(), &h1_config).unwrap();
    let stdout = reload(h1, true);
    assert!(
        stdout.contains("applied: pki.blocklist: 0 entries"),
        "{stdout}"
    );
    testbed
        .wait_until(Duration::from_secs(10), "h1 and h2 connected again", || {
            Ok(peer(h1, "h2")["state"] == "established")
        })
        .unwrap();

    // A renewed certificate (30 days instead of the test bed's year).
    let before = h0.status().unwrap()["certificate_not_after"]
        .as_u64()
        .unwrap();
    assert_eq!(expiry_gauge(h0), Some(before));
    let certificate = h0.dir().join("node.crt");
    let renewed = h0.dir().join("renewed.crt");
    let ca_key = testbed.dir().join("ca").join("ca.key");
    weft([
        "ca".as_ref(),
        "renew".as_ref(),
        "--ca-key".as_ref(),
        ca_key.as_os_str(),
        "--certificate".as_ref(),
        certificate.as_os_str(),
        "--days".as_ref(),
        "30".as_ref(),
        "--out".as_ref(),
        renewed.as_os_str(),
    ]);

    // A certificate of another key is refused, and the node keeps its own.
    std::fs::copy(testbed.host(2).dir().join("node.crt"), &certificate).unwrap();
    let stdout = reload(h0, false);
    assert!(
        stdout.contains("refused: node.certificate: ")
            && stdout.contains("not for this node's key")
            && stdout.contains("nothing was applied"),
        "{stdout}"
    );
    assert_eq!(
        h0.status().unwrap()["certificate_not_after"].as_u64(),
        Some(before)
    );

    std::fs::copy(&renewed, &certificate).unwrap();
    let stdout = reload(h0, true);
    assert!(
        stdout.contains("applied: node.certificate: renewed"),
        "{stdout}"
    );
    let after = h0.status().unwrap()["certificate_not_after"]
        .as_u64()
        .unwrap();
    assert!(
        after < before && after > before - 340 * 86_400,
        "{before} -> {after}"
    );
    assert_eq!(expiry_gauge(h0), Some(after), "/metrics follows");
    testbed
        .wait_until(
            Duration::from_secs(10),
            "h1 has h0's renewed certificate",
            || Ok(peer(h1, "h0")["certificate_not_after"].as_u64() == Some(after)),
        )
        .unwrap();

    // A revocation list given to h1 by a reload: installed, h2's session
    // ends, and h0 gets the list from h1.
    let list = testbed.dir().join("revocations.crl");
    let h2_file = h2.dir().join("node.crt");
    weft([
        "ca".as_ref(),
        "revoke".as_ref(),
        "--ca-key".as_ref(),
        ca_key.as_os_str(),
        "--certificate".as_ref(),
        h2_file.as_os_str(),
        "--out".as_ref(),
        list.as_os_str(),
    ]);
    std::fs::write(
        h1.config_path(),
        format!("{h1_config}\n[pki]\nrevocations = \"{}\"\n", list.display()),
    )
    .unwrap();
    let stdout = reload(h1, true);
    assert!(
        stdout.contains("applied: pki.revocations: version 1 installed"),
        "{stdout}"
    );
    assert_ne!(peer(h1, "h2")["state"], "established");
    testbed
        .wait_until(Duration::from_secs(10), "h0 holds the list", || {
            Ok(h0.status()?["revocation_version"] == 1)
        })
        .unwrap();

    // Another second of pings after the last reload; none lost, and the
    // session with h1 is the one from before, rekeyed to carry the new
    // certificate.
    let replies = steady.replies();
    testbed
        .wait_until(Duration::from_secs(10), "replies after the reloads", || {
            Ok(steady.replies() >= replies + 50)
        })
        .unwrap();
    let record = steady.stop().unwrap();
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
    assert_eq!(peer(h1, "h0")["state"], "established");
    assert!(peer(h1, "h0")["handshakes"].as_u64().unwrap() > handshakes);
    assert_eq!(h1.stat("peers_lost").unwrap(), 0);
}

/// `weft_certificate_expiry_timestamp_seconds` in `host`'s `/metrics`.
fn expiry_gauge(host: &Host) -> Option<u64> {
    let token = format!("Bearer {}", host.api_token().unwrap());
    let address = weft::config::ApiSection::default().listen;
    let stream = host.enter(|| http::connect(address)).unwrap().unwrap();
    let reply = http::request_with_headers(
        stream,
        &[("Authorization", &token)],
        "GET",
        "/metrics",
        None,
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body.lines().find_map(|line| {
        let value = line.strip_prefix("weft_certificate_expiry_timestamp_seconds ")?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

/// Runs `weft reload` on `host`, expecting success or failure; its output.
fn reload(host: &Host, succeeds: bool) -> String {
    let output = host.reload().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.success(),
        succeeds,
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs the `weft` CLI outside the namespaces (the CA's commands).
fn weft<'a>(args: impl IntoIterator<Item = &'a OsStr>) {
    let args: Vec<&OsStr> = args.into_iter().collect();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "weft {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Pings of `stream` sent after `time` whose fate is known (answered, or
/// unanswered for `REPLY_TIMEOUT`).
fn known_after(stream: &weft::testbed::PingStream, time: Instant) -> usize {
    stream.probes().iter().filter(|p| p.sent > time).count()
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
