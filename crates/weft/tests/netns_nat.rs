//! Real-host NAT traversal tests: members behind nftables NAT routers find
//! direct paths where the NATs allow one, and stay relayed where not.
//!
//! Each test builds its own [`Testbed`]: h0 on the public bridge, the
//! other hosts behind NAT routers in their own namespaces (`nat.rs` of the
//! test bed: `masquerade` for an endpoint-independent mapping, `masquerade
//! random,fully-random` for a symmetric one, both with port-restricted
//! filtering and a router that drops unsolicited packets to itself). The
//! NATed hosts name each other without endpoints and h0 with one, so
//! they meet through h0. h1 then pings h2 through the overlay, and each
//! test checks the path type both ends report in `weft status --json`
//! (`direct-lan`, `punched` or `relayed`), with deadlines on every wait
//! and the measured times printed.
//!
//! They need root and nftables; without, they print a notice and pass.
//! The test bed removes its namespaces, NAT routers included, also when a
//! test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weft::testbed::{
    Host, NatMapping, NatRouter, PingStream, Testbed, TestbedOptions, have_nft, is_root,
};

/// h1 and h2 have sessions with h0 by then.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The first reply through the overlay must come this soon.
const FIRST_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A punchable pair must report a direct path this soon after the first
/// packet (the target is 3 s; the deadline leaves room for a busy CI).
const DIRECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Routes move to a proven direct link this soon after it is punched.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Long enough for a punching attempt to fail (its rounds end after
/// 5 s, and it waits 1 s more for an answer).
const PUNCH_FAIL_TIMEOUT: Duration = Duration::from_secs(20);
const INTERVAL: Duration = Duration::from_millis(20);
const STREAM_LIMIT: Duration = Duration::from_secs(120);

/// The tests measure times on a machine with few cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serialize() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

/// Three hosts, h0 public and the others behind `nats`, with h1 and h2 in
/// session with h0; or `None` (after a notice) without root or nftables.
fn nat_testbed(nats: Vec<NatRouter>) -> Option<Testbed> {
    nat_testbed_with(nats, "", false)
}

/// [`nat_testbed`] with `extra` TOML in every config, and h1 and h2 not
/// in each other's configs when `strangers`.
fn nat_testbed_with(nats: Vec<NatRouter>, extra: &str, strangers: bool) -> Option<Testbed> {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return None;
    }
    if !have_nft() {
        weft::testbed::skip("nft is not installed (run scripts/install-test-deps.sh as root)");
        return None;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    options.nats = nats;
    options.extra_config = extra.to_owned();
    if strangers {
        options.unlisted = [(1, 2), (2, 1)].into_iter().collect();
    }
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_pair(0, 1, ESTABLISH_TIMEOUT)
        .expect("h1's session with h0");
    testbed
        .wait_pair(0, 2, ESTABLISH_TIMEOUT)
        .expect("h2's session with h0");
    Some(testbed)
}

fn nat(mapping: NatMapping, hosts: &[usize]) -> NatRouter {
    NatRouter::new(mapping, hosts.to_vec())
}

/// `host`'s entry for peer `name` in `weft status --json`.
fn peer_entry(host: &Host, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let status = host.status()?;
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    Ok(peers
        .into_iter()
        .filter(|p| p["name"].as_str() == Some(name))
        .max_by_key(|p| p["state"].as_str() == Some("established")))
}

/// The path type `host` reports for peer `name`.
fn path_of(host: &Host, name: &str) -> anyhow::Result<Option<String>> {
    Ok(peer_entry(host, name)?.and_then(|p| p["path"].as_str().map(str::to_owned)))
}

/// Both ends' status entries, for failure messages.
fn both_views(testbed: &Testbed) -> String {
    let a = peer_entry(testbed.host(1), "h2").ok().flatten();
    let b = peer_entry(testbed.host(2), "h1").ok().flatten();
    format!(
        "h1 on h2: {}\nh2 on h1: {}",
        serde_json::to_string_pretty(&a).unwrap_or_default(),
        serde_json::to_string_pretty(&b).unwrap_or_default()
    )
}

/// A ping stream from h1 to h2's overlay IPv4 address, and the time its
/// first reply arrived.
fn start_stream(testbed: &Testbed) -> (PingStream, Instant) {
    let target = IpAddr::V4(testbed.host(2).overlay_ipv4().unwrap());
    let stream = testbed.host(1).ping_stream(target, INTERVAL, STREAM_LIMIT);
    testbed
        .wait_until(FIRST_REPLY_TIMEOUT, "the first reply h1 -> h2", || {
            Ok(stream.replies() >= 1)
        })
        .unwrap();
    let first = stream
        .probes()
        .iter()
        .filter_map(|p| p.arrival())
        .min()
        .unwrap_or_else(now);
    (stream, first)
}

/// Waits until both h1 and h2 report `wanted` as the path to each other.
fn wait_both_paths(testbed: &Testbed, wanted: &str, timeout: Duration) {
    testbed
        .wait_until(timeout, &format!("h1 and h2 both {wanted}"), || {
            Ok(path_of(testbed.host(1), "h2")?.as_deref() == Some(wanted)
                && path_of(testbed.host(2), "h1")?.as_deref() == Some(wanted))
        })
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(testbed)));
}

/// Waits until h1's latency route to h2 is direct.
fn wait_direct_route(testbed: &Testbed) {
    testbed
        .wait_until(ROUTE_TIMEOUT, "h1's route to h2 direct", || {
            Ok(testbed
                .host(1)
                .route_path("h2", "latency")?
                .is_some_and(|path| path == ["h2"]))
        })
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(testbed)));
}

/// Waits until h1 and h2 tried a direct path to each other and failed:
/// probes to a known endpoint went unanswered (link `down`), or a
/// punching attempt to the other's candidates got no answer.
fn wait_direct_failed(testbed: &Testbed) {
    testbed
        .wait_until(
            PUNCH_FAIL_TIMEOUT,
            "direct attempts to fail both ways",
            || {
                for (host, peer) in [(1, "h2"), (2, "h1")] {
                    let host = testbed.host(host);
                    let down =
                        peer_entry(host, peer)?.is_some_and(|p| p["link"].as_str() == Some("down"));
                    if !down && host.stat("punch_failed")? == 0 {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(testbed)));
}

/// Replies to the pings sent in the last `window`.
fn recent_replies(stream: &PingStream, window: Duration) -> usize {
    let since = now() - window;
    stream.replies_sent_after(since)
}

#[test]
fn both_behind_endpoint_independent_nats_go_direct_and_repunch_after_a_router_reboot() {
    let _serial = serialize();
    // Strangers, and no neighbours picked from the DHT: h1 learns of h2
    // only when it has traffic for it (link state from h0, a DHT lookup).
    // The direct path then comes from whichever opens both NATs first:
    // their DHT traffic to each other's reflexive endpoints, or a
    // coordinated punch through h0.
    let Some(testbed) = nat_testbed_with(
        vec![
            nat(NatMapping::EndpointIndependent, &[1]),
            nat(NatMapping::EndpointIndependent, &[2]),
        ],
        "[neighbours]\nmax = 0\nrandom = 0\n",
        true,
    ) else {
        return;
    };
    let (stream, first_reply) = start_stream(&testbed);
    let first_sent = stream.started();
    wait_both_paths(&testbed, "punched", DIRECT_TIMEOUT);
    let punched = now();
    wait_direct_route(&testbed);
    let routed = now();
    eprintln!(
        "first reply {:?} after the first ping; punched {:?} after it; data direct {:?} after it",
        first_reply.saturating_duration_since(first_sent),
        punched.saturating_duration_since(first_sent),
        routed.saturating_duration_since(first_sent),
    );
    // Each reaches the other at its router's public address.
    let h1 = peer_entry(testbed.host(1), "h2").unwrap().unwrap();
    assert_eq!(h1["endpoint"].as_str(), Some("198.18.0.202:4800"), "{h1:#}");
    let h2 = peer_entry(testbed.host(2), "h1").unwrap().unwrap();
    assert_eq!(h2["endpoint"].as_str(), Some("198.18.0.201:4800"), "{h2:#}");
    let punched_count = testbed.host(1).stat("punch_succeeded").unwrap()
        + testbed.host(2).stat("punch_succeeded").unwrap();
    eprintln!("punching attempts that succeeded: {punched_count}");
    eprintln!("{}", testbed.host(1).status_table().unwrap());
    // Nothing relayed is needed now: h0 carries no h1-h2 traffic.
    let relayed_before = testbed.host(0).stat("relayed").unwrap();
    testbed
        .wait_until(Duration::from_secs(5), "pings over the direct path", || {
            Ok(recent_replies(&stream, Duration::from_secs(1)) >= 20)
        })
        .unwrap();
    let relayed_after = testbed.host(0).stat("relayed").unwrap();
    assert!(
        relayed_after - relayed_before < 20,
        "h0 still relays: {relayed_before} -> {relayed_after}"
    );

    // h1's router reboots: its mappings are gone. Traffic must come back
    // (through h0 or straight away) and the path be direct again.
    let reboot = now();
    testbed.reboot_nat(0).unwrap();
    testbed
        .wait_until(Duration::from_secs(10), "replies after the reboot", || {
            Ok(stream.replies_sent_after(reboot + Duration::from_millis(200)) >= 10)
        })
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(&testbed)));
    let recovered = stream
        .probes()
        .iter()
        .filter(|p| p.sent > reboot && p.rtt.is_some())
        .map(|p| p.sent)
        .min()
        .unwrap_or_else(now);
    testbed
        .wait_until(
            DIRECT_TIMEOUT,
            "a direct path again after the reboot",
            || {
                let a = path_of(testbed.host(1), "h2")?;
                let b = path_of(testbed.host(2), "h1")?;
                Ok(a.as_deref() == Some("punched") && b.as_deref() == Some("punched"))
            },
        )
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(&testbed)));
    eprintln!(
        "router reboot: first answered ping sent {:?} after it; direct again {:?} after it",
        recovered.saturating_duration_since(reboot),
        now().saturating_duration_since(reboot)
    );
    stream.stop().unwrap();
}

#[test]
fn symmetric_against_a_port_restricted_nat_stays_relayed() {
    let _serial = serialize();
    let Some(testbed) = nat_testbed(vec![
        nat(NatMapping::Symmetric, &[1]),
        nat(NatMapping::EndpointIndependent, &[2]),
    ]) else {
        return;
    };
    let (stream, _) = start_stream(&testbed);
    wait_direct_failed(&testbed);
    assert_eq!(
        path_of(testbed.host(1), "h2").unwrap().as_deref(),
        Some("relayed"),
        "{}",
        both_views(&testbed)
    );
    let h1 = peer_entry(testbed.host(1), "h2").unwrap().unwrap();
    assert_eq!(h1["via"], serde_json::json!(["h0"]), "{h1:#}");
    assert!(recent_replies(&stream, Duration::from_secs(2)) >= 50);
    stream.stop().unwrap();
}

#[test]
fn both_symmetric_stay_relayed_with_traffic_from_the_first_packet() {
    let _serial = serialize();
    let Some(testbed) = nat_testbed(vec![
        nat(NatMapping::Symmetric, &[1]),
        nat(NatMapping::Symmetric, &[2]),
    ]) else {
        return;
    };
    let (stream, _) = start_stream(&testbed);
    let probes = stream.probes();
    // The first packets wait for the session (made through h0) and then
    // go: none of the first few is lost.
    let answered_early = probes.iter().take(5).filter(|p| p.rtt.is_some()).count();
    wait_direct_failed(&testbed);
    wait_both_paths(&testbed, "relayed", Duration::from_secs(5));
    assert!(recent_replies(&stream, Duration::from_secs(2)) >= 50);
    let record = stream.stop().unwrap();
    assert!(
        answered_early >= 4,
        "first pings: {:?}",
        &record.probes[..5.min(record.probes.len())]
    );
}

#[test]
fn members_behind_one_nat_use_their_lan_path() {
    let _serial = serialize();
    let Some(testbed) = nat_testbed(vec![nat(NatMapping::EndpointIndependent, &[1, 2])]) else {
        return;
    };
    let (stream, _) = start_stream(&testbed);
    let first_sent = stream.started();
    wait_both_paths(&testbed, "direct-lan", DIRECT_TIMEOUT);
    eprintln!(
        "LAN path {:?} after the first ping",
        now().saturating_duration_since(first_sent)
    );
    let h1 = peer_entry(testbed.host(1), "h2").unwrap().unwrap();
    assert_eq!(h1["endpoint"].as_str(), Some("198.18.1.3:4800"), "{h1:#}");
    wait_direct_route(&testbed);
    stream.stop().unwrap();
}

#[test]
fn routers_that_accept_unsolicited_packets_leave_traffic_flowing_through_the_relay() {
    let _serial = serialize();
    let bare = |hosts: &[usize]| NatRouter {
        accepts_unsolicited: true,
        ..nat(NatMapping::EndpointIndependent, hosts)
    };
    let Some(testbed) = nat_testbed_with(
        vec![bare(&[1]), bare(&[2])],
        "[neighbours]\nmax = 0\nrandom = 0\n",
        true,
    ) else {
        return;
    };
    let (stream, _) = start_stream(&testbed);
    // Whichever side's packet reaches the other's router first leaves a
    // conntrack entry there that makes the router give its host's mapping
    // another port (PROTOCOL.md section 16.3): the direct path may never
    // open. Traffic must flow anyway, through h0 or direct.
    testbed
        .wait_until(PUNCH_FAIL_TIMEOUT, "a settled path", || {
            let path = path_of(testbed.host(1), "h2")?;
            Ok(path.as_deref() == Some("punched")
                || (path.as_deref() == Some("relayed")
                    && (testbed.host(1).stat("punch_failed")? >= 1
                        || peer_entry(testbed.host(1), "h2")?
                            .is_some_and(|p| p["link"].as_str() == Some("down")))))
        })
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(&testbed)));
    eprintln!(
        "routers without an input filter: h1 reaches h2 {}",
        path_of(testbed.host(1), "h2").unwrap().unwrap_or_default()
    );
    testbed
        .wait_until(
            Duration::from_secs(10),
            "a second of steady replies",
            || Ok(recent_replies(&stream, Duration::from_secs(1)) >= 40),
        )
        .unwrap_or_else(|error| panic!("{error:#}\n{}", both_views(&testbed)));
    stream.stop().unwrap();
}
