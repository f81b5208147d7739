//! The firewall on real hosts: weft daemons in network namespaces, TCP
//! through their TUN devices.
//!
//! h0 is a database host (certificate group `db`) whose firewall accepts
//! TCP 5432 only from group `app` and rejects TCP 5433 outright; h1 is in
//! group `app`, h2 in no group. The test checks what an operator relies
//! on: h1 connects to 5432 and exchanges data, h2's connection attempt goes
//! unanswered (dropped), a connection to 5433 is refused at once (a reset),
//! h0's own outbound connection gets its replies through its default-deny
//! inbound policy, and every drop is counted per rule in `weft status`.
//! Needs root; without it the test prints a notice and passes (CI runs as
//! root). Every wait has a deadline; the test bed removes what it made.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use weft::testbed::{Host, Testbed, TestbedOptions, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection attempt that the firewall drops is given: long
/// enough for an accepted one to complete many times over on a bridge.
const DROPPED_CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// Servers stop by themselves after this long, should a test fail first.
const SERVER_DEADLINE: Duration = Duration::from_secs(60);

const FIREWALL: &str = r#"[firewall]
[[firewall.inbound]]
name = "postgres-from-app"
proto = "tcp"
port = 5432
group = "app"
[[firewall.inbound]]
name = "no-5433"
proto = "tcp"
port = 5433
action = "reject"
"#;

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

/// A TCP server in `host`'s namespace that answers each connection's first
/// bytes with `echo: ` and those bytes, until stopped (or its deadline).
struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

impl EchoServer {
    fn start(host: &Host, address: SocketAddr) -> Self {
        let listener = host.enter(|| TcpListener::bind(address)).unwrap().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let deadline = now() + SERVER_DEADLINE;
        let thread = thread::spawn(move || {
            let mut served = 0;
            while !flag.load(Ordering::Relaxed) && now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        let mut buf = [0u8; 64];
                        if let Ok(n) = stream.read(&mut buf) {
                            let _ = stream.write_all(&[b"echo: ", &buf[..n]].concat());
                            served += 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
            served
        });
        Self { stop, thread }
    }

    /// Stops the server; how many connections it answered.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Connects from `host` to `address` within `timeout` and, if that works,
/// sends a line and returns the answer.
fn exchange(host: &Host, address: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut stream = host
        .enter(|| TcpStream::connect_timeout(&address, timeout))
        .unwrap()?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"hello")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn group_rules_decide_who_reaches_a_port_and_replies_pass() {
    if !is_root() {
        eprintln!("skipping: network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    options.groups = BTreeMap::from([(0, vec!["db".to_owned()]), (1, vec!["app".to_owned()])]);
    options.host_config = BTreeMap::from([(0, FIREWALL.to_owned())]);
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    let (db, app, other) = (testbed.host(0), testbed.host(1), testbed.host(2));
    let db_ip = db.overlay_ipv4().unwrap();
    let postgres = SocketAddr::from((db_ip, 5432));
    let server = EchoServer::start(db, postgres);
    let refused = SocketAddr::from((db_ip, 5433));
    let refused_server = EchoServer::start(db, refused);

    // The group member gets through and gets its answer.
    let answer = exchange(app, postgres, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("h1 -> h0:5432: {e}\n{}", testbed.log_tails()));
    assert_eq!(answer, "echo: hello");

    // The member outside the group does not: its SYNs are dropped.
    let started = now();
    let error = exchange(other, postgres, DROPPED_CONNECT_TIMEOUT).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TimedOut, "h2 -> h0:5432: {error}");
    assert!(started.elapsed() >= DROPPED_CONNECT_TIMEOUT);

    // A rejected port answers with a reset at once.
    let started = now();
    let error = exchange(app, refused, IO_TIMEOUT).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ConnectionRefused,
        "h1 -> h0:5433: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );

    // h0's own connection out: its replies pass its default-deny inbound.
    let app_ip = app.overlay_ipv4().unwrap();
    let outbound = SocketAddr::from((app_ip, 7000));
    let app_server = EchoServer::start(app, outbound);
    let answer = exchange(db, outbound, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("h0 -> h1:7000: {e}\n{}", testbed.log_tails()));
    assert_eq!(answer, "echo: hello");

    // Every decision is counted, per rule.
    let status = db.status().unwrap();
    let firewall = &status["firewall"];
    assert_eq!(firewall["enabled"], true, "{status}");
    let rules = firewall["inbound"]["rules"].as_array().unwrap();
    assert_eq!(rules[0]["rule"], "postgres-from-app");
    assert_eq!(rules[0]["packets"], 1, "one flow allowed: {firewall}");
    assert_eq!(rules[1]["packets"], 1, "one SYN rejected: {firewall}");
    let default_drops = firewall["inbound"]["default_packets"].as_u64().unwrap();
    assert!(default_drops >= 1, "h2's SYN(s) dropped: {firewall}");
    assert_eq!(
        status["stats"]["firewall_inbound_dropped"]
            .as_u64()
            .unwrap(),
        default_drops + 1
    );
    assert_eq!(status["stats"]["firewall_rejected"], 1);
    assert!(firewall["tracked_packets"].as_u64().unwrap() > 4);
    let table = db.status_with(&["--firewall"]).unwrap();
    assert!(
        table.contains("firewall inbound 2 rules, default drop"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["inbound", "postgres-from-app", "allow", "1"]),
        "{table}"
    );
    // The hosts without a [firewall] section filter nothing.
    assert_eq!(app.status().unwrap()["firewall"]["enabled"], false);

    assert_eq!(server.stop(), 1, "only h1's connection reached the server");
    assert_eq!(refused_server.stop(), 0);
    assert_eq!(app_server.stop(), 1);
}
