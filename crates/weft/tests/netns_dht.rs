//! Real-host discovery test: eight daemons that know nothing but one
//! bootstrap endpoint find each other through the DHT, reach each other by
//! name, and keep doing so after the bootstrap node dies.
//!
//! Host h0 names no bootstrap; every other host's config names only h0's
//! underlay endpoint (no `[[peers]]` anywhere), so all that h1..h7 learn of
//! each other comes from the DHT. The neighbourhood is kept smaller than
//! the network (`[neighbours] max = 3`) and records are stored on two nodes
//! only (`[dht] replication = 2`), so sessions open on demand and lookups
//! take real hops. Each namespace's resolver points at its own daemon's
//! DNS responder (`/etc/netns/NS/resolv.conf`), and the test asserts, with
//! deadlines and never fixed sleeps:
//!
//! 1. `weft lookup` by name, node id, overlay IPv4 and overlay IPv6 finds
//!    the right record and shows the queries; an unknown name is a clear
//!    error;
//! 2. every ordered pair pings by name (`ping -c 1 -W 2 hJ.weft`, retried
//!    until a deadline); the time from the daemons' start to the last pair
//!    is printed;
//! 3. a ping to an overlay address no node holds (IPv4 and IPv6) gets ICMP
//!    unreachable from the node at once instead of a timeout, and an
//!    unknown name does not resolve;
//! 4. after h0 is killed (SIGKILL, by PID), every remaining ordered pair
//!    still pings by name.
//!
//! Needs root and iputils `ping` (scripts/install-test-deps.sh); without
//! them it prints a notice and passes. The test bed removes its
//! namespaces and `/etc/netns` directories also when the test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use weft::lookup::{LookupInfo, render_lookup};
use weft::testbed::{Testbed, TestbedOptions, is_root, overlay_ipv4};

#[path = "support/pairs.rs"]
mod pairs;
use pairs::{have_ping, now, ping, run};

const HOSTS: usize = 8;
/// Every ordered pair must ping by name this soon after the daemons start
/// (they do in a few seconds; the margin is for a loaded CI machine).
const ALL_PAIRS_TIMEOUT: Duration = Duration::from_secs(60);
/// The same after the bootstrap node died.
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(60);
/// Every node must have joined the DHT this soon.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// An ICMP unreachable must end a ping well before its own 5 s wait.
const UNREACHABLE_WITHIN: Duration = Duration::from_secs(3);

#[test]
fn eight_nodes_from_one_bootstrap_reach_each_other_by_name() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    if !have_ping() {
        weft::testbed::skip("ping is not installed (run scripts/install-test-deps.sh as root)");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    options.bootstrap = Some((1..HOSTS).map(|i| (i, vec![0])).collect());
    options.dht_tuning = "k = 4\nalpha = 2\nreplication = 2\n".to_owned();
    options.extra_config = "[neighbours]\nmax = 3\nrandom = 1\n".to_owned();
    let testbed = Testbed::new(HOSTS, options).expect("building the test bed");
    let start = now();
    for host in testbed.hosts() {
        host.set_resolver(IpAddr::V4(overlay_ipv4(host.index())))
            .unwrap();
    }

    wait_joined(&testbed);
    eprintln!(
        "all {HOSTS} nodes joined the DHT {:.2?} after start",
        start.elapsed()
    );
    lookups_find_records_and_show_hops(&testbed);

    let (reached, _) = ping_all_pairs(&testbed, &(0..HOSTS).collect::<Vec<_>>(), ALL_PAIRS_TIMEOUT);
    let slowest = reached.values().max().copied().unwrap_or(start);
    eprintln!(
        "every ordered pair of {HOSTS} nodes ({} pairs) pinged by name {:.2?} after the daemons started",
        reached.len(),
        slowest.saturating_duration_since(start)
    );

    names_resolve_to_both_overlay_addresses(&testbed);
    let problems = unknown_addresses_are_unreachable_at_once(&testbed);

    // Which routes between the others lean on h0 as a relay when it dies
    // (a detour through h0 can win over a direct link by RTT jitter on one
    // loaded machine): traffic on them fails over like any relay's, and a
    // ping in flight at that moment is lost; discovery is unaffected.
    for host in testbed.hosts().iter().skip(1) {
        let via_h0: Vec<String> = host
            .routes()
            .unwrap_or_default()
            .iter()
            .map(weft::testbed::path_names)
            .filter(|path| path.last().is_some_and(|d| d != "h0"))
            .filter(|path| path.iter().any(|n| n == "h0"))
            .map(|path| path.join(">"))
            .collect();
        if !via_h0.is_empty() {
            eprintln!("{} relays through h0: {via_h0:?}", host.name());
        }
    }
    let pid = testbed.kill(0).unwrap();
    let killed = now();
    eprintln!("killed the bootstrap node h0 (pid {pid})");
    let (reached, rounds) = ping_all_pairs(
        &testbed,
        &(1..HOSTS).collect::<Vec<_>>(),
        AFTER_KILL_TIMEOUT,
    );
    eprintln!("after h0 died: {rounds} round(s) of pings");
    let slowest = reached.values().max().copied().unwrap_or(killed);
    eprintln!(
        "after h0 died, every ordered pair of the other {} nodes ({} pairs) pinged by name within {:.2?}",
        HOSTS - 1,
        reached.len(),
        slowest.saturating_duration_since(killed)
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Waits until every node has DHT contacts.
fn wait_joined(testbed: &Testbed) {
    testbed
        .wait_until(JOIN_TIMEOUT, "every node to have DHT contacts", || {
            for host in testbed.hosts() {
                let contacts = host.status()?["dht"]["contacts"].as_u64().unwrap_or(0);
                if contacts == 0 {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .unwrap();
}

/// `weft lookup` from h7 by name, id, IPv4 and IPv6 of four different
/// nodes (different ones, so no answer comes from an earlier lookup's
/// cache), then an unknown name.
fn lookups_find_records_and_show_hops(testbed: &Testbed) {
    let asker = testbed.host(HOSTS - 1);
    let ids: Vec<String> = (0..4)
        .map(|i| {
            testbed.host(i).status().unwrap()["node_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let targets = [
        (0, "h0.weft".to_owned()),
        (1, ids[1].clone()),
        (2, overlay_ipv4(2).to_string()),
        (3, testbed.host(3).overlay_ipv6().unwrap().to_string()),
    ];
    let mut hops = Vec::new();
    let mut shown = None;
    for (i, target) in &targets {
        let output = run(asker
            .weft()
            .args(["lookup", target, "--json", "--socket"])
            .arg(asker.socket_path()));
        assert!(
            output.status.success(),
            "weft lookup {target} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            testbed.log_tails()
        );
        let lookup: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let record = &lookup["record"];
        assert_eq!(record["name"], format!("h{i}"), "{lookup}");
        assert_eq!(record["node_id"], ids[*i], "{lookup}");
        assert_eq!(
            record["overlay_ipv4"],
            overlay_ipv4(*i).to_string(),
            "{lookup}"
        );
        assert!(
            record["endpoints"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{lookup}"
        );
        let queries = lookup["queries"].as_array().unwrap();
        hops.push(lookup["hops"].as_u64().unwrap());
        if lookup["hops"].as_u64() > Some(0) && shown.is_none() {
            let info: LookupInfo = serde_json::from_value(lookup.clone()).unwrap();
            shown = Some((target.clone(), render_lookup(&info)));
        }
        if lookup["hops"].as_u64() > Some(0) {
            assert!(!queries.is_empty(), "{lookup}");
            assert!(
                queries.iter().any(|q| q["outcome"] == "value"),
                "a lookup that found its record in hops has a query that returned it: {lookup}"
            );
        }
    }
    assert!(
        hops.iter().any(|&h| h > 0),
        "with 2 replicas among {HOSTS} nodes some lookup must take hops: {hops:?}"
    );
    if let Some((target, text)) = shown {
        eprintln!(
            "weft lookup {target} (from h{}), as the CLI shows it:\n{text}",
            HOSTS - 1
        );
    }
    // The text an operator sees.
    let output = run(asker
        .weft()
        .args(["lookup", "h1", "--socket"])
        .arg(asker.socket_path()));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.starts_with("h1  id "),
        "{text}"
    );
    eprintln!("weft lookup h1 (from h{}):\n{text}", HOSTS - 1);
    eprintln!("lookup hops by name, id, IPv4, IPv6: {hops:?}");

    let output = run(asker
        .weft()
        .args(["lookup", "not a name", "--socket"])
        .arg(asker.socket_path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("'not a name' is neither a node name"),
        "{stderr}"
    );
    let output = run(asker
        .weft()
        .args(["lookup", "nosuch", "--socket"])
        .arg(asker.socket_path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("lookup of 'nosuch': no such node in the network"),
        "{stderr}"
    );
}

/// Pings every ordered pair of `hosts` by name (see `support/pairs.rs`).
fn ping_all_pairs(
    testbed: &Testbed,
    hosts: &[usize],
    timeout: Duration,
) -> (BTreeMap<(usize, usize), Instant>, usize) {
    pairs::ping_pairs(testbed, &pairs::ordered_pairs(hosts), timeout)
}

/// The system resolver (glibc, through the namespace's resolv.conf) gets
/// A and AAAA records for a name in any case, and IPv4 pings by name work
/// too (the pairs above resolve to IPv6 first).
fn names_resolve_to_both_overlay_addresses(testbed: &Testbed) {
    let host = testbed.host(1);
    let target = testbed.host(2);
    for (database, expected) in [
        ("ahostsv4", overlay_ipv4(2).to_string()),
        ("ahostsv6", target.overlay_ipv6().unwrap().to_string()),
    ] {
        let output = run(host.command("getent").args([database, "H2.Weft"]));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.split_whitespace().next() == Some(expected.as_str()),
            "getent {database} H2.Weft: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = run(ping(host, "h2.weft", 2).arg("-4"));
    assert!(
        output.status.success(),
        "ping -4 h2.weft: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Pings to overlay addresses that no node holds end with ICMP
/// unreachable from the local node, quickly; an unknown name does not
/// resolve. Returns what went wrong, so the rest of the test still runs
/// and reports too.
fn unknown_addresses_are_unreachable_at_once(testbed: &Testbed) -> Vec<String> {
    let host = testbed.host(1);
    let mut problems = Vec::new();
    for target in ["fd77:6566:dead:beef::1", "198.19.0.200"] {
        let started = now();
        let output = run(&mut ping(host, target, 5));
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() {
            problems.push(format!("ping {target} answered: {stdout}"));
        } else if !stdout.to_lowercase().contains("unreachable") {
            problems.push(format!(
                "ping {target}: no ICMP unreachable, gave up after {took:.2?} (the node counted {} unreachable): {stdout}",
                host.stat("unreachable").unwrap_or_default()
            ));
        } else if took >= UNREACHABLE_WITHIN {
            problems.push(format!("ping {target} took {took:.2?} to fail: {stdout}"));
        } else {
            eprintln!("ping {target}: unreachable after {took:.2?}");
        }
    }
    let output = run(&mut ping(host, "nosuch.weft", 2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("nosuch.weft: Name or service not known") {
        problems.push(format!("ping nosuch.weft: {stderr}"));
    }
    problems
}
