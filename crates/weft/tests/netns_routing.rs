//! Real-host routing tests: the overlay routes around a cut, a lossy and a
//! slow underlay link between two of its nodes.
//!
//! Each test builds its own [`Testbed`] of three daemons (h0, h1 and h2, a
//! full mesh on one bridge), lets link state converge, then impairs only
//! the h0–h1 underlay path while h0 pings h1 (every 10 ms where a stream
//! runs): a cut and a 30 % random loss with nftables rules in h0's and
//! h1's namespaces, a 50 ms delay with the test bed's impairment relay.
//! They assert what must happen — traffic resumes, the daemons' routes and
//! trace show the relay h2, the path returns to direct after a restore —
//! with generous deadlines, and print the measured outage and loss: timing
//! claims belong to the failover benchmark (`bench/failover.sh`), not here.
//!
//! The tests run one at a time. They need root (and nftables for the cut
//! and the loss: CI installs it with scripts/install-test-deps.sh);
//! without, they print a notice and pass. Every wait has a deadline; the test bed removes its namespaces,
//! rules and relay also when a test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use weft::testbed::{
    Host, Iperf3Client, Iperf3Options, Iperf3Server, PingStream, Testbed, TestbedOptions,
    have_iperf3, have_nft, is_root, loss_between, outage, path_names,
};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Link state and first routes after the sessions are up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Traffic must resume this soon after a cut (the target is far lower).
const RESUME_TIMEOUT: Duration = Duration::from_secs(5);
/// Routes must react to loss or delay this soon.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(15);
/// The route must be direct again this soon after a restore.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(30);
const INTERVAL: Duration = Duration::from_millis(10);
const STREAM_LIMIT: Duration = Duration::from_secs(120);
const METRIC: &str = "latency";

/// Held by each test while it runs: the tests measure RTT and loss on a
/// machine with few cores, so they run one at a time rather than disturb
/// each other's measurements.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes [`ONE_AT_A_TIME`] (a test that panicked holding it leaves nothing
/// behind that matters, so a poisoned lock is fine).
fn serialize() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A test bed of three hosts with sessions and link state up, or `None`
/// (after a notice) without root, or without nftables when `needs_nft`.
fn testbed(needs_nft: bool, configure: impl FnOnce(&mut TestbedOptions)) -> Option<Testbed> {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return None;
    }
    if needs_nft && !have_nft() {
        weft::testbed::skip("nft is not installed (run scripts/install-test-deps.sh as root)");
        return None;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    configure(&mut options);
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    wait_converged(&testbed);
    Some(testbed)
}

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

/// Waits until every host has link state from both others and a route to
/// each, and the pair under test, h0 and h1, route to each other directly
/// under both metrics
/// (so a relay path is known and the direct one in use before the test
/// impairs anything). Other routes may be relayed: on a busy machine a
/// millisecond of scheduling noise can make a two-hop path look faster.
fn wait_converged(testbed: &Testbed) {
    testbed
        .wait_until(
            CONVERGE_TIMEOUT,
            "link state, routes, and h0-h1 direct",
            || {
                for host in testbed.hosts() {
                    if host.status()?["stats"]["lsa_received"]
                        .as_u64()
                        .is_some_and(|received| received < 2)
                    {
                        return Ok(false);
                    }
                    for other in testbed.hosts() {
                        if other.index() != host.index()
                            && host.route_path(other.name(), METRIC)?.is_none()
                        {
                            return Ok(false);
                        }
                    }
                }
                // Direct by the table's choice, not as the fallback used
                // while the table's route (say, via h2 before h0's own
                // link was measured) has no usable first hop yet.
                for (from, to) in [(0, "h1"), (1, "h0")] {
                    for metric in ["latency", "loss"] {
                        let Some(route) = testbed.host(from).route(to, metric)? else {
                            return Ok(false);
                        };
                        if !is_direct(&path_names(&route))
                            || route["fallback"].as_bool() != Some(false)
                        {
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            },
        )
        .unwrap_or_else(|error| panic!("{error:#}\n{}", routes_dump(testbed)));
}

/// Every host's routes, for failure messages.
fn routes_dump(testbed: &Testbed) -> String {
    let mut text = String::new();
    for host in testbed.hosts() {
        let routes = host
            .routes()
            .map(|routes| serde_json::to_string_pretty(&routes).unwrap_or_default())
            .unwrap_or_else(|error| format!("{error:#}"));
        text.push_str(&format!("--- {} routes:\n{routes}\n", host.name()));
    }
    text
}

/// Waits until `host`'s route to `destination` under `metric` satisfies
/// `wanted`; returns the path. Panics with the routes and logs otherwise.
fn wait_path(
    testbed: &Testbed,
    host: &Host,
    destination: &str,
    metrics: &[&str],
    timeout: Duration,
    what: &str,
    wanted: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut found = Vec::new();
    testbed
        .wait_until(timeout, what, || {
            for metric in metrics {
                if let Some(path) = host.route_path(destination, metric)?
                    && wanted(&path)
                {
                    found = path;
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .unwrap_or_else(|error| panic!("{error:#}\n{}", routes_dump(testbed)));
    found
}

fn is_direct(path: &[String]) -> bool {
    path.len() == 1
}

fn is_via_h2(path: &[String]) -> bool {
    path == ["h2", "h1"]
}

/// A 10 ms ping stream from h0 to h1 with a second of replies behind it.
fn start_stream(testbed: &Testbed) -> PingStream {
    let target = IpAddr::V4(testbed.host(1).overlay_ipv4().unwrap());
    let stream = testbed.host(0).ping_stream(target, INTERVAL, STREAM_LIMIT);
    testbed
        .wait_until(
            Duration::from_secs(10),
            "replies before the impairment",
            || Ok(stream.replies() >= 100),
        )
        .unwrap();
    stream
}

/// Waits until `count` requests sent after `time` have a known fate.
fn wait_probes_after(testbed: &Testbed, stream: &PingStream, time: Instant, count: usize) {
    testbed
        .wait_until(
            Duration::from_secs(10) + INTERVAL * count as u32,
            "pings after the switch",
            || {
                Ok(stream
                    .probes()
                    .iter()
                    .filter(|probe| probe.sent >= time)
                    .count()
                    >= count)
            },
        )
        .unwrap();
}

fn trace_path(host: &Host, destination: &str) -> Vec<String> {
    let trace = host
        .trace(destination, METRIC)
        .unwrap_or_else(|error| panic!("weft trace {destination}: {error:#}"));
    weft::testbed::path_names(&trace)
}

#[test]
fn cut_link_traffic_goes_through_a_relay_and_returns_when_restored() {
    let _serial = serialize();
    let Some(testbed) = testbed(true, |_| {}) else {
        return;
    };
    let (h0, h2) = (testbed.host(0), testbed.host(2));
    let relayed_before = h2.stat("relayed").unwrap_or(0);
    let stream = start_stream(&testbed);

    let cut = now();
    testbed.cut_pair(0, 1).unwrap();
    // Requests sent while the rules went in may still have crossed directly.
    let cut_done = now();
    testbed
        .wait_until(RESUME_TIMEOUT, "traffic to resume after the cut", || {
            Ok(stream.replies_sent_after(cut_done) > 0)
        })
        .unwrap_or_else(|error| panic!("{error:#}\n{}", routes_dump(&testbed)));
    let path = wait_path(
        &testbed,
        h0,
        "h1",
        &[METRIC],
        RESUME_TIMEOUT,
        "h0's route to h1 to go through h2",
        is_via_h2,
    );
    assert_eq!(trace_path(h0, "h1"), ["h2", "h1"], "trace during the cut");
    testbed
        .wait_until(RESUME_TIMEOUT, "h2 to relay", || {
            Ok(h2.stat("relayed")? > relayed_before)
        })
        .unwrap();

    let restore = now();
    testbed.restore_pair(0, 1).unwrap();
    wait_path(
        &testbed,
        h0,
        "h1",
        &[METRIC],
        DIRECT_TIMEOUT,
        "h0's route to h1 to be direct again",
        is_direct,
    );
    let direct_after = restore.elapsed();
    assert_eq!(trace_path(h0, "h1"), ["h1"], "trace after the restore");
    let direct = now();
    wait_probes_after(&testbed, &stream, direct, 50);
    let record = stream.stop().unwrap();

    let outage = outage(&record.probes, cut, restore).expect("traffic resumed");
    let (sent, lost) = loss_between(&record.probes, direct, now());
    eprintln!(
        "cut h0-h1: outage {:.0} ms ({} requests lost), path during the cut {path:?}, \
         direct again {:.1} s after the restore, then {lost} of {sent} lost",
        outage.gap.as_secs_f64() * 1000.0,
        outage.lost,
        direct_after.as_secs_f64()
    );
    assert_eq!(lost, 0, "pings lost on the direct path after the restore");
}

#[test]
fn lossy_link_traffic_moves_to_a_relay() {
    const LOSS_PERCENT: u8 = 30;
    let _serial = serialize();
    let Some(testbed) = testbed(true, |_| {}) else {
        return;
    };
    let h0 = testbed.host(0);
    let stream = start_stream(&testbed);

    let loss_start = now();
    testbed.set_pair_loss(0, 1, LOSS_PERCENT).unwrap();
    let path = wait_path(
        &testbed,
        h0,
        "h1",
        &["latency", "loss"],
        SWITCH_TIMEOUT,
        "a route from h0 to h1 to leave the lossy link",
        is_via_h2,
    );
    let switched = now();
    let switch_after = switched.saturating_duration_since(loss_start);
    // The interactive routes (pings are interactive) must leave it too, the
    // replies' (h1 to h0) as well as the requests'.
    let latency_path = wait_path(
        &testbed,
        h0,
        "h1",
        &["latency"],
        SWITCH_TIMEOUT,
        "h0's latency route to h1 to leave the lossy link",
        is_via_h2,
    );
    wait_path(
        &testbed,
        testbed.host(1),
        "h0",
        &["latency"],
        SWITCH_TIMEOUT,
        "h1's latency route to h0 to leave the lossy link",
        |path| path == ["h2", "h0"],
    );
    let measure_from = now();
    wait_probes_after(&testbed, &stream, measure_from, 200);
    let record = stream.stop().unwrap();
    testbed.restore_pair(0, 1).unwrap();

    let (early_sent, early_lost) = loss_between(
        &record.probes,
        loss_start,
        loss_start + Duration::from_secs(2),
    );
    let (sent, lost) = loss_between(&record.probes, measure_from, now());
    let ratio = lost as f64 / sent.max(1) as f64;
    eprintln!(
        "{LOSS_PERCENT} % loss on h0-h1: a route went {path:?} after {} ms (latency route {latency_path:?}); \
         end-to-end loss {early_lost} of {early_sent} in the first 2 s, \
         {lost} of {sent} ({:.1} %) after the switch",
        switch_after.as_millis(),
        ratio * 100.0
    );
    assert!(
        ratio <= 0.05,
        "{lost} of {sent} pings lost after the switch to {latency_path:?}\n{}\n{}",
        routes_dump(&testbed),
        testbed.log_tails()
    );
}

#[test]
fn slow_direct_link_interactive_traffic_takes_the_faster_two_hop_path() {
    const DELAY: Duration = Duration::from_millis(50);
    let _serial = serialize();
    let Some(testbed) = testbed(false, |options| {
        options.impairment_relays = vec![(0, 1)];
    }) else {
        return;
    };
    let (h0, h1) = (testbed.host(0), testbed.host(1));
    // One way: the direct round trip grows by 100 ms.
    testbed.relay(0).set_delay(DELAY);
    let path = wait_path(
        &testbed,
        h0,
        "h1",
        &[METRIC],
        SWITCH_TIMEOUT,
        "h0's latency route to h1 to take the two-hop path",
        is_via_h2,
    );
    // The replies take h1's route: it must avoid the slow link too.
    wait_path(
        &testbed,
        h1,
        "h0",
        &[METRIC],
        SWITCH_TIMEOUT,
        "h1's latency route to h0 to take the two-hop path",
        |path| path == ["h2", "h0"],
    );
    assert_eq!(trace_path(h0, "h1"), ["h2", "h1"], "trace");
    assert_eq!(trace_path(h1, "h0"), ["h2", "h0"], "trace back");
    assert!(
        testbed.relay(0).forwarded() > 0,
        "the relay carried nothing"
    );

    let target = IpAddr::V4(h1.overlay_ipv4().unwrap());
    let options = weft::ping::PingOptions {
        count: 20,
        interval: INTERVAL,
        timeout: Duration::from_secs(2),
        deadline: Some(Duration::from_secs(10)),
    };
    let report = h0
        .enter(|| weft::ping::ping(target, &options, |_| {}))
        .unwrap()
        .unwrap();
    let mut rtts = report.rtt_ms.clone();
    rtts.sort_by(f64::total_cmp);
    let median = rtts.get(rtts.len() / 2).copied();
    eprintln!(
        "{} ms one-way delay on h0-h1: route {path:?}, ping RTT median {median:?} ms, \
         {} of {} replies",
        DELAY.as_millis(),
        report.received,
        report.sent
    );
    assert!(report.received >= 18, "{report:?}");
    let median = median.unwrap();
    assert!(
        median < DELAY.as_secs_f64() * 1000.0,
        "ping RTT {median} ms: not faster than the direct link\n{}",
        routes_dump(&testbed)
    );
}

/// A path's own load is not a reason to leave it: one saturating TCP flow
/// over a healthy direct link queues its own probes behind its data, which
/// made the direct link look slower than a relay (2 to 15 path changes and
/// 3 to 37 % of packets relayed per 20 s). Routes follow a windowed
/// minimum of the probes' RTTs, which that queueing does not raise: the
/// pair's routes stay direct and untouched for the whole transfer, and the
/// third host relays nothing. (Routes to the third host may still move:
/// its probes share the busy sender's queue.)
#[test]
fn a_saturating_flow_over_a_healthy_direct_link_never_moves_to_a_relay() {
    let _one = serialize();
    if !have_iperf3() {
        weft::testbed::skip("iperf3 is not installed (run scripts/install-test-deps.sh as root)");
        return;
    }
    let Some(testbed) = testbed(false, |_| {}) else {
        return;
    };
    let (h0, h1, h2) = (testbed.host(0), testbed.host(1), testbed.host(2));
    let server_address = std::net::SocketAddr::new(IpAddr::V4(h1.overlay_ipv4().unwrap()), 5201);
    let server = Iperf3Server::start(h1, server_address).unwrap();
    let relayed_before = h2.stat("relayed").unwrap();
    let options = Iperf3Options {
        duration: Duration::from_secs(20),
        udp_bps: None,
        length: 0,
    };
    let pair = [(h0, "h1"), (h1, "h0")];
    let age = |host: &Host, peer: &str, metric: &str| {
        host.route(peer, metric).unwrap().unwrap()["age_secs"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let ages_before: Vec<f64> = pair
        .iter()
        .flat_map(|(host, peer)| ["latency", "loss"].map(|metric| age(host, peer, metric)))
        .collect();
    let started = now();
    let result = Iperf3Client::start(h0, server.address(), &options)
        .unwrap()
        .finish()
        .unwrap();
    let ran = now() - started;
    let relayed = h2.stat("relayed").unwrap() - relayed_before;
    // The pair's routes, both metrics, both ways: direct, and unchanged
    // for longer than the transfer ran.
    let mut moved = Vec::new();
    let mut before = ages_before.iter();
    for (host, peer) in pair {
        for metric in ["latency", "loss"] {
            let was = before.next().copied().unwrap_or(0.0);
            let is = age(host, peer, metric);
            let path = host.route_path(peer, metric).unwrap().unwrap_or_default();
            // Half a second of slack: the daemon reads its clock once per
            // wake-up, so an age may lag by as much as a busy loop turn.
            if !is_direct(&path) || is < was + ran.as_secs_f64() - 0.5 {
                moved.push(format!(
                    "{} -> {peer} ({metric}): {path:?}, age {was:.2} s before, {is:.2} s after",
                    host.name()
                ));
            }
        }
    }
    let log_lines: Vec<String> = [h0, h1]
        .iter()
        .flat_map(|h| {
            std::fs::read_to_string(h.log_path())
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    l.contains("INFO") && (l.contains("path changed") || l.contains("link down"))
                })
                .map(|l| format!("{}: {l}", h.name()))
                .collect::<Vec<_>>()
        })
        .collect();
    eprintln!(
        "{:.0} Mbit/s for {ran:?}: pair routes moved: {moved:?}, packets relayed by h2: {relayed}",
        result.received_bps / 1e6
    );
    assert!(moved.is_empty(), "{moved:?}\n{}", log_lines.join("\n"));
    assert_eq!(relayed, 0);
}
