//! Pinging ordered pairs of test bed hosts by name, as an operator would:
//! iputils `ping hJ.weft` inside host i's namespace, the name resolved by
//! the daemon's own DNS responder (each test points the namespace's
//! resolver at it with `Host::set_resolver`).
//!
//! Shared by the namespace tests that check reachability across a whole
//! test bed. Every command runs with a deadline ([`COMMAND_TIMEOUT`]) and is
//! killed by its PID if it overstays; every retry loop ends at its caller's
//! deadline.

#![allow(dead_code)] // each test uses part of it

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weft::testbed::{Host, Testbed};

/// One `ping` or `weft` run, at most.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// Pings run at once, at most (two cores).
pub(crate) const PARALLEL_PINGS: usize = 16;

#[allow(clippy::disallowed_methods)] // tests measure real time
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Whether iputils `ping` is installed.
pub(crate) fn have_ping() -> bool {
    Command::new("ping")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pings each of `pairs` (source, destination) by name until each has
/// answered once or `timeout` passes (then the test fails, naming the
/// pairs still failing); returns when each pair first succeeded, and how
/// many rounds that took.
pub(crate) fn ping_pairs(
    testbed: &Testbed,
    pairs: &[(usize, usize)],
    timeout: Duration,
) -> (BTreeMap<(usize, usize), Instant>, usize) {
    let deadline = now() + timeout;
    let mut reached = BTreeMap::new();
    let mut rounds = 0;
    let mut last_failures = Vec::new();
    while reached.len() < pairs.len() {
        assert!(
            now() < deadline,
            "not every pair pinged by name within {timeout:?}; still failing: {}\n{}",
            last_failures.join("\n"),
            testbed.log_tails()
        );
        rounds += 1;
        last_failures.clear();
        let todo: Vec<(usize, usize)> = pairs
            .iter()
            .copied()
            .filter(|pair| !reached.contains_key(pair))
            .collect();
        for chunk in todo.chunks(PARALLEL_PINGS) {
            let children: Vec<((usize, usize), Child)> = chunk
                .iter()
                .map(|&(a, b)| {
                    let child = ping(testbed.host(a), &format!("h{b}.weft"), 2)
                        .spawn()
                        .unwrap();
                    ((a, b), child)
                })
                .collect();
            for ((a, b), child) in children {
                let output = wait_output(child);
                if output.status.success() {
                    reached.insert((a, b), now());
                } else {
                    if rounds == 3 {
                        // Still failing after two rounds: say what the
                        // source knows about the destination.
                        let source = testbed.host(a);
                        let name = format!("h{b}");
                        eprintln!(
                            "h{a} -> h{b} still failing: session {:?}, path {:?}, dht {}",
                            source.peer_state(&name).ok().flatten(),
                            source.route_path(&name, "latency").ok().flatten(),
                            source
                                .status()
                                .map(|s| s["dht"].to_string())
                                .unwrap_or_default()
                        );
                    }
                    last_failures.push(format!(
                        "h{a} -> h{b}.weft: {} {}",
                        String::from_utf8_lossy(&output.stdout).trim(),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
            }
        }
        // A round that failed pairs waited at least the pings' own 2 s
        // (or their resolver's timeouts) already: no sleep needed.
        if !last_failures.is_empty() {
            eprintln!(
                "round {rounds}: {} of {} pairs failed, e.g. {}",
                last_failures.len(),
                todo.len(),
                last_failures[0]
            );
        }
    }
    eprintln!("{} pairs answered in {rounds} rounds", pairs.len());
    (reached, rounds)
}

/// Every ordered pair of distinct `hosts`.
pub(crate) fn ordered_pairs(hosts: &[usize]) -> Vec<(usize, usize)> {
    hosts
        .iter()
        .flat_map(|&a| hosts.iter().map(move |&b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect()
}

/// `ping -c 1 -W wait_secs TARGET` inside `host`'s namespace.
pub(crate) fn ping(host: &Host, target: &str, wait_secs: u32) -> Command {
    let mut command = host.command("ping");
    command
        .args(["-n", "-c", "1", "-W", &wait_secs.to_string(), target])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to completion within [`COMMAND_TIMEOUT`].
pub(crate) fn run(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

/// Waits for `child` within [`COMMAND_TIMEOUT`]; kills it (by its PID)
/// if it overstays, and fails the test.
pub(crate) fn wait_output(mut child: Child) -> Output {
    let deadline = now() + COMMAND_TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "a command ran longer than {COMMAND_TIMEOUT:?}: {} {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
