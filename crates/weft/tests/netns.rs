//! Real-host tests: weft daemons in network namespaces, talking over veth.
//!
//! Each test builds its own [`Testbed`] (unique names, so tests run in
//! parallel) and checks one thing an operator relies on: overlay pings both
//! ways, a bulk TCP transfer arrives intact, a restarted daemon comes back,
//! a node of another CA is shut out, and replayed packets are refused; and
//! the test bed's own impairments (pair cut, random loss, blackhole routes,
//! the delay relay) do what they claim to the underlay. They need root;
//! without it they print a notice and pass (CI runs as root).
//! Every wait has a deadline and every loop a bound; the test bed removes
//! everything it made, also when a test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use weft::testbed::{Host, PORT, Testbed, TestbedOptions, have_nft, is_root};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);

/// A test bed of `n` hosts with sessions up, or `None` without root.
fn testbed(n: usize, configure: impl FnOnce(&mut TestbedOptions)) -> Option<Testbed> {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return None;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.log_level = "debug".to_owned();
    configure(&mut options);
    let testbed = Testbed::new(n, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    Some(testbed)
}

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

/// `weft ping --json` inside `host`: (exit status 0, the JSON summary).
fn weft_ping(host: &Host, target: IpAddr, count: u32) -> (bool, serde_json::Value) {
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
        .expect("running weft ping");
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "weft ping printed no JSON ({error}): stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), json)
}

fn assert_ping_ok(testbed: &Testbed, from: usize, target: IpAddr, count: u32) {
    let (ok, json) = weft_ping(testbed.host(from), target, count);
    assert!(
        ok && json["received"] == count,
        "h{from} -> {target}: {json}\n{}",
        testbed.log_tails()
    );
}

#[test]
fn ping_both_ways_over_ipv6_and_ipv4() {
    // The other tests listen on the underlay address; this one on 0.0.0.0.
    let Some(testbed) = testbed(2, |options| options.listen_wildcard = true) else {
        return;
    };
    for (from, to) in [(0, 1), (1, 0)] {
        let target = testbed.host(to);
        assert_ping_ok(
            &testbed,
            from,
            IpAddr::V6(target.overlay_ipv6().unwrap()),
            3,
        );
        assert_ping_ok(
            &testbed,
            from,
            IpAddr::V4(target.overlay_ipv4().unwrap()),
            3,
        );
    }
}

#[test]
fn tcp_transfer_of_50_mb_arrives_intact() {
    const TOTAL: usize = 50 * 1000 * 1000;
    const DEADLINE: Duration = Duration::from_secs(120);
    const IO_TIMEOUT: Duration = Duration::from_secs(15);
    let Some(testbed) = testbed(2, |_| {}) else {
        return;
    };
    let server_ip = testbed.host(1).overlay_ipv4().unwrap();
    let address = SocketAddr::from((server_ip, 5201));
    let start = now();

    // Sockets made inside a namespace stay there, whichever thread uses them.
    let listener = testbed
        .host(1)
        .enter(|| TcpListener::bind(address))
        .unwrap()
        .unwrap();
    let server = thread::spawn(move || -> std::io::Result<(usize, blake3::Hash)> {
        listener.set_nonblocking(true)?;
        let (mut stream, _) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && now() < start + DEADLINE =>
                {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 || received > TOTAL {
                break;
            }
            hasher.update(&buf[..n]);
            received += n;
        }
        Ok((received, hasher.finalize()))
    });

    let mut client = testbed
        .host(0)
        .enter(|| TcpStream::connect_timeout(&address, IO_TIMEOUT))
        .unwrap()
        .unwrap();
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // Incompressible, reproducible bytes: BLAKE3 in XOF mode.
    let mut source = blake3::Hasher::new()
        .update(b"weft netns transfer")
        .finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < TOTAL {
        assert!(
            now() < start + DEADLINE,
            "transfer too slow: {sent} bytes in {DEADLINE:?}"
        );
        let len = chunk.len().min(TOTAL - sent);
        source.fill(&mut chunk[..len]);
        client
            .write_all(&chunk[..len])
            .unwrap_or_else(|e| panic!("send after {sent} bytes: {e}\n{}", testbed.log_tails()));
        hasher.update(&chunk[..len]);
        sent += len;
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (received, server_hash) = server.join().unwrap().unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "50 MB over the overlay in {elapsed:.2?} ({:.1} Mbit/s)",
        TOTAL as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(received, TOTAL);
    assert_eq!(server_hash, hasher.finalize());
    // The bytes really went through the tunnel, not some other path.
    let status = testbed.host(0).status().unwrap();
    let peer = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "h1")
        .unwrap();
    assert!(
        peer["bytes_out"].as_u64().unwrap() >= TOTAL as u64,
        "{peer}"
    );
}

#[test]
fn restarted_daemon_gets_its_session_back() {
    let Some(testbed) = testbed(2, |_| {}) else {
        return;
    };
    let target = IpAddr::V4(testbed.host(1).overlay_ipv4().unwrap());
    assert_ping_ok(&testbed, 0, target, 2);
    let handshakes_before = testbed.host(0).stat("handshakes_completed").unwrap();
    let old_pid = testbed.host(1).daemon_pid();

    testbed.restart(1).unwrap();
    assert_ne!(testbed.host(1).daemon_pid(), old_pid);
    // The restarted node has no session, so "established" on its side means
    // a new handshake; the other side must have completed it too.
    testbed.wait_established(ESTABLISH_TIMEOUT).unwrap();
    testbed
        .wait_until(ESTABLISH_TIMEOUT, "h0 to complete a new handshake", || {
            Ok(testbed.host(0).stat("handshakes_completed")? > handshakes_before)
        })
        .unwrap();
    assert_ping_ok(&testbed, 0, target, 3);
    assert_ping_ok(
        &testbed,
        1,
        IpAddr::V6(testbed.host(0).overlay_ipv6().unwrap()),
        3,
    );
}

#[test]
fn cut_link_stops_traffic_and_restoring_it_brings_it_back() {
    let Some(testbed) = testbed(2, |_| {}) else {
        return;
    };
    let target = IpAddr::V4(testbed.host(1).overlay_ipv4().unwrap());
    assert_ping_ok(&testbed, 0, target, 1);
    testbed.cut_link(1).unwrap();
    let (ok, json) = weft_ping(testbed.host(0), target, 2);
    assert!(
        !ok && json["received"] == 0,
        "ping crossed a cut link: {json}"
    );
    testbed.restore_link(1).unwrap();
    testbed
        .wait_until(
            ESTABLISH_TIMEOUT,
            "ping to work again after the link came back",
            || Ok(weft_ping(testbed.host(0), target, 1).0),
        )
        .unwrap();
}

#[test]
fn host_of_another_ca_cannot_reach_anyone() {
    let Some(testbed) = testbed(3, |options| {
        options.foreign_ca_hosts.insert(2);
    }) else {
        return;
    };
    let outsider = testbed.host(2);
    assert!(outsider.has_foreign_ca());
    let mut attempts = Vec::new();
    for member in [testbed.host(0), testbed.host(1)] {
        attempts.push((outsider, IpAddr::V4(member.overlay_ipv4().unwrap())));
        attempts.push((outsider, IpAddr::V6(member.overlay_ipv6().unwrap())));
        attempts.push((member, IpAddr::V4(outsider.overlay_ipv4().unwrap())));
    }
    // All at once: each has to wait out its timeout.
    thread::scope(|scope| {
        let pings: Vec<_> = attempts
            .iter()
            .map(|&(from, target)| {
                (
                    from,
                    target,
                    scope.spawn(move || weft_ping(from, target, 2)),
                )
            })
            .collect();
        for (from, target, ping) in pings {
            let (ok, json) = ping.join().unwrap();
            assert!(
                !ok && json["received"] == 0,
                "{} reached {target}: {json}",
                from.name()
            );
        }
    });
    for member in 0..2 {
        let state = testbed.host(member).peer_state("h2").unwrap();
        assert_ne!(
            state.as_deref(),
            Some("established"),
            "h{member} has a session with the outsider"
        );
    }
    for member in 0..2 {
        testbed
            .wait_until(
                ESTABLISH_TIMEOUT,
                "inits of another network refused at mac1",
                || Ok(testbed.host(member).stat("handshake_rejected_mac1")? > 0),
            )
            .unwrap();
    }
    // The members still talk to each other.
    assert_ping_ok(
        &testbed,
        0,
        IpAddr::V4(testbed.host(1).overlay_ipv4().unwrap()),
        2,
    );
}

#[test]
fn replayed_packets_are_rejected_and_not_delivered() {
    const MESSAGES: usize = 20;
    const TIMEOUT: Duration = Duration::from_secs(10);
    let Some(testbed) = testbed(2, |_| {}) else {
        return;
    };
    let (a, b) = (testbed.host(0), testbed.host(1));
    let a_overlay = a.overlay_ipv4().unwrap();
    let b_overlay = b.overlay_ipv4().unwrap();
    let stop = Arc::new(AtomicBool::new(false));

    // B counts what its applications receive through the overlay.
    let receiver = b
        .enter(|| UdpSocket::bind((b_overlay, 5300)))
        .unwrap()
        .unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let delivered = Arc::new(AtomicUsize::new(0));
    let counter = {
        let (stop, delivered) = (Arc::clone(&stop), Arc::clone(&delivered));
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let start = now();
            while !stop.load(Ordering::Relaxed) && now() < start + Duration::from_secs(120) {
                if let Ok(n) = receiver.recv(&mut buf)
                    && buf[..n].starts_with(b"weft-replay-test")
                {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // B captures the weft data packets that arrive from A's underlay address.
    let capture = b
        .enter(|| {
            Socket::new(
                Domain::PACKET,
                Type::DGRAM,
                Some(Protocol::from(i32::from((libc::ETH_P_IP as u16).to_be()))),
            )
        })
        .unwrap()
        .unwrap();
    capture
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let captured = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let capturer = {
        let (stop, captured) = (Arc::clone(&stop), Arc::clone(&captured));
        let (from, to) = (a.underlay_addr(), b.underlay_addr());
        thread::spawn(move || {
            let mut buf = [0u8; 65536];
            let start = now();
            while !stop.load(Ordering::Relaxed) && now() < start + Duration::from_secs(120) {
                if let Ok(n) = (&capture).read(&mut buf)
                    && let Some(payload) = weft_data_payload(&buf[..n], from, to)
                {
                    captured.lock().unwrap().push(payload.to_vec());
                }
            }
        })
    };

    // A sends through the overlay, one datagram at a time, so the daemon
    // never batches them into one GSO super-packet.
    let sender = a
        .enter(|| UdpSocket::bind((a_overlay, 0)))
        .unwrap()
        .unwrap();
    for i in 0..MESSAGES {
        sender
            .send_to(
                format!("weft-replay-test {i}").as_bytes(),
                (b_overlay, 5300),
            )
            .unwrap();
        testbed
            .wait_until(TIMEOUT, "the datagram to arrive", || {
                Ok(delivered.load(Ordering::Relaxed) > i)
            })
            .unwrap();
    }
    testbed
        .wait_until(TIMEOUT, "the capture", || {
            Ok(captured.lock().unwrap().len() >= MESSAGES)
        })
        .unwrap();
    let replays = captured.lock().unwrap().clone();
    assert_eq!(delivered.load(Ordering::Relaxed), MESSAGES);

    // Replay every captured packet to B's weft port from a plain socket in A.
    let replayed_before = b.stat("rx_replayed").unwrap();
    let replayer = a
        .enter(|| UdpSocket::bind((a.underlay_addr(), 0)))
        .unwrap()
        .unwrap();
    for payload in &replays {
        replayer
            .send_to(payload, (b.underlay_addr(), PORT))
            .unwrap();
    }
    testbed
        .wait_until(TIMEOUT, "B to count the replays", || {
            Ok(b.stat("rx_replayed")? >= replayed_before + replays.len() as u64)
        })
        .unwrap();
    // A fresh datagram after the replays: once it is in, any duplicate
    // delivered from a replay (sent earlier on the same path) would be too.
    sender
        .send_to(b"weft-replay-test marker", (b_overlay, 5300))
        .unwrap();
    testbed
        .wait_until(TIMEOUT, "the marker datagram", || {
            Ok(delivered.load(Ordering::Relaxed) > MESSAGES)
        })
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    counter.join().unwrap();
    capturer.join().unwrap();

    let replayed = b.stat("rx_replayed").unwrap() - replayed_before;
    eprintln!(
        "replayed {} packets, B counted {replayed} as replays",
        replays.len()
    );
    assert_eq!(replayed, replays.len() as u64, "every replay counted once");
    assert_eq!(
        delivered.load(Ordering::Relaxed),
        MESSAGES + 1,
        "no duplicate delivered"
    );
}

/// How many of `count` UDP datagrams from host `from`'s underlay address
/// reach host `to`'s (port 6000), bypassing weft entirely.
fn underlay_delivered(testbed: &Testbed, from: usize, to: usize, count: usize) -> usize {
    let (sender, receiver) = (testbed.host(from), testbed.host(to));
    let destination = SocketAddr::from((receiver.underlay_addr(), 6000));
    let inbox = receiver
        .enter(|| UdpSocket::bind(destination))
        .unwrap()
        .unwrap();
    inbox
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let outbox = sender
        .enter(|| UdpSocket::bind((sender.underlay_addr(), 0)))
        .unwrap()
        .unwrap();
    for i in 0..count {
        // A cut may refuse the send (EPERM, EINVAL): that datagram is lost.
        let _ = outbox.send_to(format!("underlay {i}").as_bytes(), destination);
        // Paced, so no queue overflows and only the rules drop anything.
        thread::sleep(Duration::from_micros(200));
    }
    let mut delivered = 0;
    let mut buf = [0u8; 64];
    while delivered < count && inbox.recv(&mut buf).is_ok() {
        delivered += 1;
    }
    delivered
}

#[test]
fn pair_impairments_hit_only_that_pair_and_are_undone() {
    let Some(testbed) = testbed(3, |_| {}) else {
        return;
    };
    let all = |testbed: &Testbed, a, b| underlay_delivered(testbed, a, b, 20);
    assert_eq!(all(&testbed, 0, 1), 20);

    // iproute2 blackhole routes: both directions, no other pair.
    testbed.blackhole_pair(0, 1).unwrap();
    assert_eq!(all(&testbed, 0, 1), 0);
    assert_eq!(all(&testbed, 1, 0), 0);
    assert_eq!(all(&testbed, 0, 2), 20);
    assert_eq!(all(&testbed, 2, 1), 20);
    testbed.unblackhole_pair(0, 1).unwrap();
    testbed.unblackhole_pair(0, 1).unwrap(); // idempotent
    assert_eq!(all(&testbed, 0, 1), 20);
    assert_eq!(all(&testbed, 1, 0), 20);

    if !have_nft() {
        weft::testbed::skip("the nftables part: nft is not installed");
        return;
    }
    testbed.cut_pair(0, 1).unwrap();
    assert_eq!(all(&testbed, 0, 1), 0);
    assert_eq!(all(&testbed, 1, 0), 0);
    assert_eq!(all(&testbed, 1, 2), 20);
    assert_eq!(all(&testbed, 2, 0), 20);
    testbed.restore_pair(0, 1).unwrap();
    testbed.restore_pair(0, 1).unwrap(); // idempotent
    assert_eq!(all(&testbed, 0, 1), 20);

    // 30 % each way: of 300, about 210 arrive (the bounds are > 5 sigma away).
    testbed.set_pair_loss(0, 1, 30).unwrap();
    let delivered = underlay_delivered(&testbed, 1, 0, 300);
    assert!(
        (150..=270).contains(&delivered),
        "{delivered} of 300 arrived"
    );
    let delivered = underlay_delivered(&testbed, 0, 1, 300);
    assert!(
        (150..=270).contains(&delivered),
        "{delivered} of 300 arrived"
    );
    assert_eq!(all(&testbed, 0, 2), 20);
    testbed.set_pair_loss(0, 1, 0).unwrap();
    assert_eq!(all(&testbed, 0, 1), 20);
}

#[test]
fn delay_relay_slows_only_its_pair() {
    const DELAY: Duration = Duration::from_millis(40);
    let Some(testbed) = testbed(2, |options| options.impairment_relays = vec![(0, 1)]) else {
        return;
    };
    let relay = testbed.relay(0);
    let target = IpAddr::V4(testbed.host(1).overlay_ipv4().unwrap());
    // Both daemons reach each other only through the relay.
    for (i, peer) in [(0, "h1"), (1, "h0")] {
        let status = testbed.host(i).status().unwrap();
        let endpoint = status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == peer)
            .map(|p| p["endpoint"].clone());
        assert_eq!(
            endpoint,
            Some(serde_json::json!(relay.address().to_string())),
            "h{i}: {status}"
        );
    }
    let (_, json) = weft_ping(testbed.host(0), target, 3);
    let fast = json["max_ms"].as_f64().unwrap();
    relay.set_delay(DELAY);
    let (ok, json) = weft_ping(testbed.host(0), target, 3);
    let slow = json["min_ms"].as_f64().unwrap_or(0.0);
    eprintln!("overlay RTT through the relay: {fast:.2} ms, with a {DELAY:?} delay {slow:.2} ms");
    assert!(ok, "{json}");
    assert!(slow >= 2.0 * DELAY.as_secs_f64() * 1000.0, "{json}");
    assert!(relay.forwarded() > 0 && relay.dropped() == 0);
}

/// The UDP payload of an IPv4 packet `from` -> `to`:4800 that is a weft
/// data packet (version 1, type 4), or `None`.
fn weft_data_payload(packet: &[u8], from: Ipv4Addr, to: Ipv4Addr) -> Option<&[u8]> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || *packet.get(9)? != 17 {
        return None;
    }
    if packet.get(12..16)? != from.octets() || packet.get(16..20)? != to.octets() {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let udp = packet.get(ihl..total)?;
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    // A GSO super-packet would carry several datagrams: skip it.
    if u16::from_be_bytes([udp[2], udp[3]]) != PORT || udp_len != udp.len() {
        return None;
    }
    let payload = &udp[8..];
    // A data packet of the wire version this build speaks (type 4).
    (payload.first() == Some(&((weft_core::wire::VERSION << 4) | 4))).then_some(payload)
}
