//! Real-host tests of the HTTP API: an overlay of three daemons (h0, h1,
//! h2, a full mesh in network namespaces), each serving its API on
//! 127.0.0.1:4880 of its own namespace (the default `[api]`).
//!
//! Checks: every endpoint of `docs/openapi.yaml` answers; the JSON agrees
//! with the CLI's answers over the control socket (status, routes, groups,
//! trees); `/metrics` is valid Prometheus text with the per-peer, drop,
//! DHT and QoS families; the topology lists every node and link; and when
//! the h0–h1 underlay is cut (blackhole routes, no nftables needed) the
//! event stream reports it and the topology shows the link down. A second
//! test, on one daemon, checks that the API needs its token (401 without,
//! a cookie for a browser from `?token=`), closes idle connections after
//! `idle_timeout`, and that a storm of idle connections neither takes the
//! daemon's descriptors and memory nor stops the API and `weft status`
//! from answering. Needs root (prints a notice and passes without). Every
//! wait has a deadline; the test bed removes its namespaces also when the
//! test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

#[path = "support/http.rs"]
mod http;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use weft::testbed::{Host, Testbed, TestbedOptions, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The cut must show on the stream and the map this soon.
const CUT_TIMEOUT: Duration = Duration::from_secs(20);
const GROUP: &str = "239.7.7.7";

fn api_address() -> SocketAddr {
    weft::config::ApiSection::default().listen
}

/// GET `path` from `host`'s API with its token.
fn get(host: &Host, path: &str) -> http::Reply {
    try_get(host, path, &[("Authorization", &bearer(host))])
        .unwrap_or_else(|e| panic!("GET {path} on {}: {e:#}", host.name()))
}

/// GET `path` from `host`'s API with `headers` (no token unless given).
fn try_get(host: &Host, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<http::Reply> {
    let stream = host.enter(|| http::connect(api_address()))??;
    http::request_with_headers(stream, headers, "GET", path, None)
}

/// `Bearer TOKEN` with `host`'s API token.
fn bearer(host: &Host) -> String {
    format!("Bearer {}", host.api_token().unwrap())
}

/// GET `path` as JSON, asserting status 200.
fn get_json(host: &Host, path: &str) -> serde_json::Value {
    let reply = get(host, path);
    assert_eq!(
        reply.status,
        200,
        "GET {path} on {}: {}",
        host.name(),
        reply.body
    );
    reply.json().unwrap()
}

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

/// Names in a JSON array of objects, sorted.
fn names(list: &serde_json::Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item[key].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

fn has_link(topology: &serde_json::Value, from: &str, to: &str, state: &str) -> bool {
    topology["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|link| link["from"] == from && link["to"] == to && link["state"] == state)
}

/// Checks the Prometheus text: every sample line is `name{labels} value`
/// with a number, families are declared, and it ends with `# EOF`.
fn check_metrics(text: &str) {
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF:\n{text}");
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok(),
            "sample value is not a number: {line}"
        );
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.starts_with("weft_")
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if let Some(labels) = name.strip_prefix(bare) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels: {line}"
            );
        }
        samples += 1;
    }
    assert!(samples > 20, "only {samples} samples:\n{text}");
}

#[test]
fn api_answers_agrees_with_the_cli_and_streams_a_cut() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    let h0 = testbed.host(0);

    // The topology converges: every node and both directions of every link.
    testbed
        .wait_until(CONVERGE_TIMEOUT, "a full topology on h0's API", || {
            let topology = get_json(h0, "/api/v1/topology");
            let complete = names(&topology["nodes"], "name") == ["h0", "h1", "h2"]
                && ["h0", "h1", "h2"].iter().all(|a| {
                    ["h0", "h1", "h2"]
                        .iter()
                        .all(|b| a == b || has_link(&topology, a, b, "up"))
                });
            Ok(complete)
        })
        .unwrap();
    let topology = get_json(h0, "/api/v1/topology");
    assert_eq!(topology["this_node"], "h0");
    for link in topology["links"].as_array().unwrap() {
        assert!(link["rtt_ms"].as_f64().is_some(), "{link}");
    }

    // /node is `weft status --json` (counters move between the two calls;
    // identity, peers and their sessions do not).
    let node = get_json(h0, "/api/v1/node");
    let status = h0.status().unwrap();
    for key in [
        "name",
        "node_id",
        "overlay_ipv6",
        "overlay_ipv4",
        "listen",
        "tun",
        "mtu",
    ] {
        assert_eq!(node[key], status[key], "{key}");
    }
    assert_eq!(
        names(&node["peers"], "name"),
        names(&status["peers"], "name")
    );
    assert_eq!(
        names(&node["peers"], "state"),
        names(&status["peers"], "state")
    );

    // /peers: links with quality and path type.
    // One entry per peer (a DHT neighbour that was a configured peer once
    // got a second slot; fixed in the core, 2ba83c3).
    let peers = get_json(h0, "/api/v1/peers");
    assert_eq!(names(&peers, "name"), ["h1", "h2"], "{peers:#}");
    for peer in peers.as_array().unwrap() {
        assert_eq!(peer["state"], "established", "{peer}");
        assert!(peer["rtt_ms"].as_f64().is_some(), "{peer}");
        assert!(
            peer["path"] == "direct" || peer["path"] == "relayed",
            "{peer}"
        );
        assert!(peer["loss"].as_f64().is_some(), "{peer}");
    }

    // /routes and /routes/{destination} agree with `weft routes` and `weft trace`.
    let routes = get_json(h0, "/api/v1/routes");
    let cli_routes = h0.routes().unwrap();
    let keys = |list: &[serde_json::Value]| {
        let mut keys: Vec<(String, String)> = list
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["metric"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(routes.as_array().unwrap()), keys(&cli_routes));
    let route = get_json(h0, "/api/v1/routes/h1?metric=latency");
    assert_eq!(route["name"], "h1");
    assert_eq!(route["metric"], "latency");
    assert_eq!(get(h0, "/api/v1/routes/nobody").status, 404);
    assert_eq!(get(h0, "/api/v1/routes/h1?metric=speed").status, 400);

    // Groups and trees, as `weft group list` and `weft group tree` see them.
    for host in testbed.hosts() {
        let answer = host
            .request(&serde_json::json!({ "command": "group_join", "group": GROUP }))
            .unwrap();
        assert_eq!(answer["ok"], true, "{answer}");
    }
    testbed
        .wait_until(CONVERGE_TIMEOUT, "three members of the group on h0", || {
            let groups = get_json(h0, "/api/v1/groups");
            Ok(groups.as_array().unwrap().iter().any(|g| {
                g["group"] == GROUP && g["members"].as_array().is_some_and(|m| m.len() == 3)
            }))
        })
        .unwrap();
    let groups = get_json(h0, "/api/v1/groups");
    let cli_groups = h0
        .request(&serde_json::json!({ "command": "groups" }))
        .unwrap();
    assert_eq!(groups, cli_groups["groups"]);
    let tree = get_json(h0, &format!("/api/v1/groups/{GROUP}/tree?source=h1"));
    let cli_tree = h0
        .request(&serde_json::json!({ "command": "tree", "group": GROUP, "source": "h1" }))
        .unwrap();
    assert_eq!(tree, cli_tree["tree"]);
    assert_eq!(tree["source"], "h1");
    assert_eq!(get(h0, "/api/v1/groups/198.19.0.1/tree").status, 400);

    // QoS: `weft qos --json`'s object (counters move between the calls;
    // the classes and settings do not): the four default classes.
    let qos = get_json(h0, "/api/v1/qos");
    let cli_qos = h0
        .request(&serde_json::json!({ "command": "qos" }))
        .unwrap();
    assert_eq!(
        names(&qos["classes"], "name"),
        ["background", "bulk", "interactive", "realtime"]
    );
    assert_eq!(
        names(&qos["classes"], "name"),
        names(&cli_qos["qos"]["classes"], "name")
    );
    for key in ["uplink_bps", "default_class", "rules"] {
        assert_eq!(qos[key], cli_qos["qos"][key], "{key}");
    }

    // Lookup of a known node.
    let lookup = get_json(h0, "/api/v1/lookup/h2");
    assert_eq!(lookup["record"]["name"], "h2", "{lookup}");

    // /metrics parses and has the families an operator needs.
    let metrics = get(h0, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.content_type.contains("openmetrics-text"));
    check_metrics(&metrics.body);
    for needle in [
        "weft_peer_bytes_total{peer=\"h1\",direction=\"out\"}",
        "weft_peer_rtt_seconds{peer=\"h1\"}",
        "weft_peer_loss_ratio{peer=\"h2\"}",
        "weft_peer_path{peer=\"h1\",type=",
        "weft_handshakes_completed_total",
        "weft_handshake_rejected_total{reason=",
        "weft_drops_total{reason=\"rx_replayed\"}",
        "weft_dht_lookups_total{result=\"ok\"}",
        "weft_mcast_delivered_total",
        "weft_qos_class_sent_packets_total{class=\"realtime\"}",
    ] {
        assert!(
            metrics.body.contains(needle),
            "no {needle} in:\n{}",
            metrics.body
        );
    }

    // The page, its script and the description are served; the rest is 404.
    let page = get(h0, "/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("map.js"));
    assert_eq!(get(h0, "/map.js").status, 200);
    assert_eq!(get(h0, "/map.css").status, 200);
    assert!(get(h0, "/openapi.yaml").body.starts_with("openapi: 3"));
    assert_eq!(get(h0, "/api/v1/nothing").status, 404);
    // A page elsewhere that re-points its name to 127.0.0.1 gets nothing.
    let stream = h0.enter(|| http::connect(api_address())).unwrap().unwrap();
    let foreign =
        http::request_for_host(stream, "evil.example:4880", "GET", "/api/v1/node", None).unwrap();
    assert_eq!(foreign.status, 403, "{}", foreign.body);

    // Recent events include the sessions coming up.
    let recent = get_json(h0, "/api/v1/events/recent");
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "session_established"),
        "{recent}"
    );

    // Cut h0-h1: the stream reports it and the topology shows it.
    let stream = h0.enter(|| http::connect(api_address())).unwrap().unwrap();
    let mut events =
        http::SseStream::open(stream, "/api/v1/events", &h0.api_token().unwrap()).unwrap();
    let cut_at = now();
    testbed.blackhole_pair(0, 1).unwrap();
    let deadline = cut_at + CUT_TIMEOUT;
    let mut seen = Vec::new();
    let reported = loop {
        let Some(message) = events.next(deadline).unwrap() else {
            break None;
        };
        let event: serde_json::Value = match serde_json::from_str(&message.data) {
            Ok(event) => event,
            Err(_) => continue,
        };
        seen.push(event["text"].as_str().unwrap_or_default().to_owned());
        let about_h1 = event["data"]["peer"] == "h1" || event["data"]["destination"] == "h1";
        if about_h1 && (message.event == "link_down" || message.event == "path_changed") {
            assert_eq!(event["kind"], message.event.as_str());
            assert_eq!(message.id, event["seq"].as_u64().map(|s| s.to_string()));
            break Some(event);
        }
    };
    let reported = reported.unwrap_or_else(|| {
        panic!(
            "no link_down or path_changed for h1 within {CUT_TIMEOUT:?}; saw {seen:?}\n{}",
            h0.log_tail(30)
        )
    });
    eprintln!(
        "event after {:?}: {}",
        now().saturating_duration_since(cut_at),
        reported["text"]
    );
    testbed
        .wait_until(CUT_TIMEOUT, "the h0-h1 link down on h0's topology", || {
            let topology = get_json(h0, "/api/v1/topology");
            Ok(has_link(&topology, "h0", "h1", "down"))
        })
        .unwrap();
    testbed.unblackhole_pair(0, 1).unwrap();
}

/// `weft demo` as a user runs it, stopped with Ctrl-C.
struct DemoProcess {
    child: std::process::Child,
}

impl DemoProcess {
    fn interrupt(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        // On a failed test: the demo cleans up on SIGINT; give it the time.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
            let deadline = now() + Duration::from_secs(30);
            while now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn the_demo_serves_h0s_map_on_the_root_namespaces_loopback() {
    use std::io::BufRead;
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "demo",
            "--scenario",
            "overlay",
            "--nodes",
            "2",
            "--duration",
            "300",
            "--map-port",
            "0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut demo = DemoProcess { child };
    let stdout = demo.child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let mut url = None;
    let deadline = now() + Duration::from_secs(180);
    while now() < deadline {
        let Ok(line) = received.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        if let Some(at) = line.find("open http://") {
            url = Some(line[at + 5..].trim().to_owned());
        }
        let up = line.contains("the overlay stays up");
        output.push(line);
        if up {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no map URL in:\n{}", output.join("\n")));
    assert!(
        output.iter().any(|l| l.contains("the overlay stays up")),
        "{}",
        output.join("\n")
    );
    let (base, token) = url
        .split_once("/?token=")
        .unwrap_or_else(|| panic!("no token in the map URL {url}"));
    let address: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    assert!(address.ip().is_loopback());
    let get_root = |path: &str| {
        http::request_with_token(http::connect(address).unwrap(), token, "GET", path, None).unwrap()
    };
    let topology = get_root("/api/v1/topology").json().unwrap();
    assert_eq!(topology["this_node"], "h0", "{topology}");
    assert_eq!(names(&topology["nodes"], "name"), ["h0", "h1"]);
    // A browser opening the printed URL gets a cookie, through the relay.
    let opened = http::request_for_host(
        http::connect(address).unwrap(),
        &address.to_string(),
        "GET",
        &format!("/?token={token}"),
        None,
    )
    .unwrap();
    assert_eq!(opened.status, 303, "{}", opened.body);
    let cookie = opened.header("set-cookie").unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    let page = http::request_with_headers(
        http::connect(address).unwrap(),
        &[("Cookie", &pair)],
        "GET",
        "/",
        None,
    )
    .unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("map.js"));
    // Ctrl-C ends the watching phase normally.
    demo.interrupt();
    let deadline = now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(now() < deadline, "the demo did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    output.extend(received.try_iter());
    let text = output.join("\n");
    assert!(status.success(), "{status}: {text}");
    assert!(
        text.contains("all namespaces, links, daemons and files removed"),
        "{text}"
    );
}

/// The idle timeout of the second test (short, so it runs quickly).
const IDLE: Duration = Duration::from_secs(2);
/// `[api] max_connections` by default.
const MAX_CONNECTIONS: usize = weft::config::DEFAULT_API_MAX_CONNECTIONS;
/// Idle connections the storm opens (fewer if this process may not hold
/// that many descriptors).
const STORM: usize = 2000;

/// Open descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Resident memory of process `pid`, bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// This process's soft limit of open descriptors.
fn descriptor_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap_or(usize::MAX)
}

/// Whether the server closed `stream` (end of stream or reset), without
/// waiting.
fn closed_by_server(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    !matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads from `stream` until the server closes it; how long that took.
fn time_until_closed(mut stream: TcpStream) -> Duration {
    stream.set_read_timeout(Some(IDLE * 5)).unwrap();
    let started = now();
    let mut byte = [0u8; 1];
    let read = stream.read(&mut byte);
    assert!(
        matches!(&read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle connection was not closed: {read:?}"
    );
    now().saturating_duration_since(started)
}

#[test]
fn the_api_needs_its_token_and_survives_a_storm_of_idle_connections() {
    if !is_root() {
        eprintln!("skipping: network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.extra_config = format!("[api]\nidle_timeout = \"{}s\"\n", IDLE.as_secs());
    let testbed = Testbed::new(1, options).expect("building the test bed");
    let h0 = testbed.host(0);
    testbed
        .wait_until(ESTABLISH_TIMEOUT, "h0's API to answer", || {
            let token = h0.api_token()?;
            let reply = try_get(
                h0,
                "/api/v1/node",
                &[("Authorization", &format!("Bearer {token}"))],
            )?;
            Ok(reply.status == 200)
        })
        .unwrap();
    let token = h0.api_token().unwrap();
    let token_file = h0.dir().join(weft::config::DEFAULT_API_TOKEN_FILE);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640, "{}", token_file.display());

    // Without the token, or with another, nothing but 401.
    for path in [
        "/api/v1/node",
        "/api/v1/peers",
        "/metrics",
        "/",
        "/map.js",
        "/nothing",
    ] {
        let reply = try_get(h0, path, &[]).unwrap();
        assert_eq!(reply.status, 401, "{path}: {}", reply.body);
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer"))
        );
        let wrong = format!("Bearer {}", "0".repeat(token.len()));
        assert_eq!(
            try_get(h0, path, &[("Authorization", &wrong)])
                .unwrap()
                .status,
            401,
            "{path}"
        );
        let cookie = format!("weft_token_4880={}", "0".repeat(token.len()));
        assert_eq!(
            try_get(h0, path, &[("Cookie", &cookie)]).unwrap().status,
            401,
            "{path}"
        );
    }
    assert_eq!(try_get(h0, "/?token=nonsense", &[]).unwrap().status, 401);
    // With it, answers.
    assert_eq!(get(h0, "/api/v1/node").json().unwrap()["name"], "h0");
    // A browser's way: the URL's token becomes a cookie and leaves the URL.
    let opened = try_get(h0, &format!("/?token={token}&destination=h1"), &[]).unwrap();
    assert_eq!(opened.status, 303, "{}", opened.body);
    assert_eq!(opened.header("location"), Some("/?destination=h1"));
    let cookie = opened.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        pair,
        format!("weft_token={token}"),
        "no port in Host: localhost"
    );
    let page = try_get(h0, "/?destination=h1", &[("Cookie", pair)]).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("map.js"));
    let metrics = get(h0, "/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weft_api_unauthorized_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Idle connections are closed after the idle timeout: one that sends
    // nothing, and one that stops in the middle of its request's head.
    let (silent, partial) = h0
        .enter(|| {
            let silent = http::connect(api_address())?;
            let mut partial = http::connect(api_address())?;
            std::io::Write::write_all(
                &mut partial,
                b"GET /api/v1/node HTTP/1.1\r\nHost: localhost\r\n",
            )?;
            anyhow::Ok((silent, partial))
        })
        .unwrap()
        .unwrap();
    let partial = std::thread::spawn(move || time_until_closed(partial));
    let silent = time_until_closed(silent);
    let partial = partial.join().unwrap();
    for (what, after) in [("silent", silent), ("partial", partial)] {
        assert!(
            after >= IDLE - Duration::from_millis(300) && after <= IDLE + Duration::from_secs(3),
            "the {what} connection was closed after {after:?}, not about {IDLE:?}"
        );
    }

    // An open event stream is busy: neither idle nor evicted by the storm.
    let stream = h0.enter(|| http::connect(api_address())).unwrap().unwrap();
    let mut events = http::SseStream::open(stream, "/api/v1/events", &token).unwrap();

    // The storm.
    let pid = h0.daemon_pid().unwrap();
    let files_before = open_files(pid);
    let memory_before = resident(pid);
    let storm = STORM.min(descriptor_limit().saturating_sub(200));
    let idle: Vec<TcpStream> = h0
        .enter(|| {
            (0..storm)
                .map(|_| http::connect(api_address()))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .unwrap()
        .unwrap();
    let mut most_files = 0;
    let mut most_memory = 0;
    testbed
        .wait_until(
            CONVERGE_TIMEOUT,
            "the daemon to close all but the connection limit",
            || {
                most_files = most_files.max(open_files(pid));
                most_memory = most_memory.max(resident(pid));
                let closed = idle.iter().filter(|s| closed_by_server(s)).count();
                Ok(closed >= storm - MAX_CONNECTIONS
                    && open_files(pid) <= files_before + MAX_CONNECTIONS)
            },
        )
        .unwrap();
    // During the storm, the control socket and the API answer.
    assert_eq!(h0.status().unwrap()["name"], "h0");
    assert_eq!(get(h0, "/api/v1/node").status, 200);
    let during = open_files(pid);
    assert!(
        during <= files_before + MAX_CONNECTIONS + 2,
        "{during} descriptors open during the storm (before: {files_before})"
    );
    assert!(
        events.next(now() + Duration::from_millis(500)).is_ok(),
        "the event stream was closed by the storm"
    );
    drop(idle);
    testbed
        .wait_until(
            CONVERGE_TIMEOUT,
            "descriptors and memory back after the storm",
            || Ok(open_files(pid) <= files_before && resident(pid) <= memory_before + (8 << 20)),
        )
        .unwrap();
    eprintln!(
        "storm of {storm} idle connections: descriptors {files_before} before, at most {most_files} during, {} after; resident memory {:.1} MB before, at most {:.1} MB during, {:.1} MB after",
        open_files(pid),
        memory_before as f64 / 1e6,
        most_memory as f64 / 1e6,
        resident(pid) as f64 / 1e6,
    );
    assert_eq!(get(h0, "/api/v1/node").status, 200);
    assert_eq!(h0.status().unwrap()["name"], "h0");
    assert!(events.next(now() + Duration::from_millis(200)).is_ok());
}
