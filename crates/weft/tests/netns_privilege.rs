//! Real-host test of least privilege: once up, a daemon runs without root's
//! capabilities, and the overlay still works.
//!
//! Two daemons in network namespaces, both configured with `[daemon] user
//! = "nobody"`; then h1's config loses that line and h1 is restarted, so it
//! takes the default: the `weft` user if the machine has one, else root
//! without capabilities (with a warning in its log). For each, the kernel's
//! view in `/proc/PID/status`: the ids, every capability set empty (the
//! daemon needs none at run time: see `daemon/privilege.rs`) and
//! no-new-privileges set; and pings cross the overlay both ways. A user
//! that does not exist stops `weft up` at once, before it touches the
//! system, with an error naming the config line. Needs root (prints a
//! notice and passes without). Every wait has a deadline; the test bed
//! removes its namespaces also when the test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::net::IpAddr;
use std::time::Duration;

use nix::unistd::User;
use weft::testbed::{Host, Testbed, TestbedOptions, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// The line of the test bed's `[daemon]` table that names the user.
const USER_LINE: &str = "user = \"nobody\"\n";

/// What `/proc/PID/status` says of a process.
#[derive(Debug)]
struct Credentials {
    uids: Vec<u32>,
    gids: Vec<u32>,
    /// CapInh, CapPrm, CapEff, CapBnd, CapAmb.
    capabilities: Vec<(String, u64)>,
    no_new_privs: bool,
}

fn credentials(pid: u32) -> Credentials {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .trim()
            .to_owned()
    };
    let ids = |name: &str| {
        field(name)
            .split_whitespace()
            .map(|id| id.parse().unwrap())
            .collect()
    };
    Credentials {
        uids: ids("Uid"),
        gids: ids("Gid"),
        capabilities: ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    u64::from_str_radix(&field(name), 16).unwrap(),
                )
            })
            .collect(),
        no_new_privs: field("NoNewPrivs") == "1",
    }
}

/// Asserts that `host`'s daemon runs as `uid`/`gid` with no capability.
fn assert_unprivileged(host: &Host, uid: u32, gid: u32) {
    let pid = host.daemon_pid().unwrap();
    let seen = credentials(pid);
    let context = format!("{}: {seen:?}\n{}", host.name(), host.log_tail(20));
    assert_eq!(seen.uids, [uid; 4], "{context}");
    assert_eq!(seen.gids, [gid; 4], "{context}");
    for (set, mask) in &seen.capabilities {
        assert_eq!(*mask, 0, "{set} is not empty: {context}");
    }
    assert!(seen.no_new_privs, "NoNewPrivs is not set: {context}");
}

/// `weft ping --json` from `host` to `target`: whether all `count` came back.
fn ping(host: &Host, target: IpAddr, count: u32) -> bool {
    let output = host
        .weft()
        .args([
            "ping",
            &target.to_string(),
            "--json",
            "--interval-ms",
            "100",
            "--timeout-ms",
            "2000",
        ])
        .args(["--count", &count.to_string()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    output.status.success() && json["received"] == count
}

fn assert_overlay_works(testbed: &Testbed) {
    for (from, to) in [(0, 1), (1, 0)] {
        let target = IpAddr::V4(testbed.host(to).overlay_ipv4().unwrap());
        assert!(
            ping(testbed.host(from), target, 3),
            "h{from} -> {target}\n{}",
            testbed.log_tails()
        );
    }
}

#[test]
fn daemons_run_without_capabilities_and_the_overlay_still_works() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let nobody = User::from_name("nobody").unwrap().expect("a user nobody");
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.daemon_config = USER_LINE.to_owned();
    let testbed = Testbed::new(2, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    for host in testbed.hosts() {
        assert_unprivileged(host, nobody.uid.as_raw(), nobody.gid.as_raw());
    }
    assert_overlay_works(&testbed);

    // h1 with the default user.
    let h1 = testbed.host(1);
    let text = std::fs::read_to_string(h1.config_path()).unwrap();
    std::fs::write(h1.config_path(), text.replace(USER_LINE, "")).unwrap();
    testbed.restart(1).unwrap();
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions after h1's restart");
    match User::from_name("weft").unwrap() {
        Some(weft) => assert_unprivileged(h1, weft.uid.as_raw(), weft.gid.as_raw()),
        None => {
            assert_unprivileged(h1, 0, 0);
            let log = std::fs::read_to_string(h1.log_path()).unwrap();
            assert!(
                log.contains("no user 'weft' here: running as root, though with no capabilities"),
                "no warning in h1's log:\n{}",
                h1.log_tail(20)
            );
        }
    }
    assert_overlay_works(&testbed);

    // A user that does not exist: `weft up` stops before it sets anything
    // up (h1's TUN is still in use, so getting that far would fail
    // differently), naming the line.
    let bad = h1.dir().join("bad-user.toml");
    std::fs::write(
        &bad,
        text.replace(USER_LINE, "user = \"weft-test-no-such-user\"\n"),
    )
    .unwrap();
    let output = h1
        .weft()
        .args(["up", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:", bad.display()))
            && stderr.contains("daemon.user: there is no user 'weft-test-no-such-user'"),
        "{stderr}"
    );
}
