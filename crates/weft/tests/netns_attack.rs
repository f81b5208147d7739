//! A hostile host on a real underlay. Three namespaces: h0 (A) and h1 (B)
//! run weft; h2's daemon is stopped and h2 becomes the attacker, holding
//! only public information: the CA certificate and A's certificate (files
//! any member could read from the DHT). From its own address, and from
//! spoofed ones through a raw socket, it sends B forged inits with A's
//! certificate (timestamps 0, now and 2^64−1), then floods B with 100,000
//! forged inits at about 50,000 per second. Meanwhile B pings A.
//!
//! Checked: no ping is lost; B's endpoint for A never changes and B counts
//! no roaming; B sends no spoofed address more bytes than that address sent
//! it (nftables counters in B's namespace); the forged 2^64−1 timestamp
//! poisons nothing: A restarted during the flood gets a new session with B.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use weft::testbed::{PORT, Testbed, TestbedOptions, is_root};
use weft_core::wire::SessionIndex;
use weft_core::{CaCertificate, Certificate, HandshakeKeys, SecretKey};

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(20);
/// A spoofed source on the underlay that no host holds.
const SPOOFED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

#[test]
fn forged_and_flooded_inits_move_block_and_tax_nothing() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    // WEFT_TEST_BIN runs another build (the release binary, to measure
    // the daemon's CPU for the flood as it would run for real).
    let binary =
        std::env::var("WEFT_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_weft").to_owned());
    let mut options = TestbedOptions::new(binary);
    options.log_level = "info".to_owned();
    let testbed = Testbed::new(3, options).expect("building the test bed");
    testbed.wait_established(ESTABLISH_TIMEOUT).unwrap();
    // h2 stops being a member: from now on it only knows public files.
    testbed.kill(2).unwrap();
    let (a, b, attacker) = (testbed.host(0), testbed.host(1), testbed.host(2));
    let ca =
        CaCertificate::from_pem(&std::fs::read_to_string(a.dir().join("ca.crt")).unwrap()).unwrap();
    let a_cert =
        Certificate::from_pem(&std::fs::read_to_string(a.dir().join("node.crt")).unwrap()).unwrap();
    let keys = HandshakeKeys::new(&ca);
    let b_addr = SocketAddrV4::new(b.underlay_addr(), PORT);
    let a_endpoint = SocketAddr::V4(SocketAddrV4::new(a.underlay_addr(), PORT));

    // B counts what goes to and comes from the spoofed address.
    let nft = |args: &str| {
        let status = b.command("nft").args(args.split(' ')).status().unwrap();
        assert!(status.success(), "nft {args}");
    };
    nft("add table ip weftattack");
    nft("add chain ip weftattack out { type filter hook output priority 0 ; }");
    nft("add chain ip weftattack in { type filter hook input priority 0 ; }");
    nft(&format!(
        "add rule ip weftattack out ip daddr {SPOOFED} counter"
    ));
    nft(&format!(
        "add rule ip weftattack in ip saddr {SPOOFED} counter"
    ));

    let a_overlay = IpAddr::V4(a.overlay_ipv4().unwrap());
    let stream = b.ping_stream(
        a_overlay,
        Duration::from_millis(20),
        Duration::from_secs(30),
    );
    let roamed_before = b.stat("peers_roamed").unwrap();
    let forger = SecretKey::from_random([0x66; 64]);
    let forge = |timestamp: u64, sender: u32| {
        keys.forge_init(&a_cert, &forger, timestamp, SessionIndex(sender), 300)
    };
    #[allow(clippy::disallowed_methods)] // the attacker forges a current timestamp
    let wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let single: Vec<Vec<u8>> = [0, wall_ns, u64::MAX]
        .iter()
        .enumerate()
        .map(|(i, &t)| forge(t, i as u32))
        .collect();
    let flood: Vec<Vec<u8>> = (0..256u32)
        .map(|i| forge(u64::MAX - u64::from(i), i))
        .collect();

    let mut restarted_at = None;
    let mut flood_cpu = None;
    let sent = attacker
        .enter(|| -> anyhow::Result<u64> {
            let own = UdpSocket::bind((attacker.underlay_addr(), 0))?;
            let raw = Socket::new(
                Domain::IPV4,
                Type::RAW,
                Some(Protocol::from(libc::IPPROTO_RAW)),
            )?;
            let target = socket2::SockAddr::from(b_addr);
            let mut spoofed_bytes = 0u64;
            let mut send_spoofed = |source: Ipv4Addr, payload: &[u8]| -> anyhow::Result<()> {
                raw.send_to(&udp_datagram(source, *b_addr.ip(), payload), &target)?;
                if source == SPOOFED {
                    spoofed_bytes += (payload.len() + 28) as u64;
                }
                Ok(())
            };
            // Single forgeries: from the attacker, as A, as a stranger.
            for init in &single {
                own.send_to(init, b_addr)?;
                send_spoofed(a.underlay_addr(), init)?;
                send_spoofed(SPOOFED, init)?;
            }
            // The flood: 100,000 inits, 1,000 every 20 ms (50,000/s).
            let start = now();
            let cpu_start = cpu_ticks(b.daemon_pid());
            for burst in 0..100u32 {
                if burst == 20 {
                    // A comes back during the flood with a fresh key
                    // exchange: the forged timestamps must not stop it.
                    testbed.restart(0)?;
                    restarted_at = Some(now());
                }
                for i in 0..1000u32 {
                    let init = &flood[(i % 256) as usize];
                    if i % 2 == 0 {
                        send_spoofed(SPOOFED, init)?;
                    } else {
                        let _ = own.send_to(init, b_addr);
                    }
                }
                let next = start + Duration::from_millis(20 * u64::from(burst + 1));
                if let Some(wait) = next.checked_duration_since(now()) {
                    std::thread::sleep(wait);
                }
            }
            if let (Some(before), Some(after)) = (cpu_start, cpu_ticks(b.daemon_pid())) {
                flood_cpu = Some((after - before, now() - start));
            }
            Ok(spoofed_bytes)
        })
        .unwrap()
        .unwrap();
    let restarted_at = restarted_at.unwrap();
    if let Some((ticks, wall)) = flood_cpu {
        // Clock ticks are 1/100 s on Linux.
        eprintln!(
            "B's daemon used {:.2} s of CPU over the {:.2} s flood ({:.0} % of a core)",
            ticks as f64 / 100.0,
            wall.as_secs_f64(),
            ticks as f64 / wall.as_secs_f64()
        );
    }
    testbed.wait_pair(0, 1, ESTABLISH_TIMEOUT).unwrap();
    eprintln!(
        "A and B have a session again {:?} after A's restart in the flood",
        now() - restarted_at
    );
    let record = stream.stop().unwrap();
    // A's restart takes its TUN down for a moment: pings sent while its
    // daemon was away do not count against the attack.
    let lost: Vec<_> = record
        .probes
        .iter()
        .filter(|p| p.rtt.is_none())
        .filter(|p| p.sent < restarted_at - Duration::from_secs(1))
        .collect();
    assert!(lost.is_empty(), "pings lost before A's restart: {lost:?}");
    let status = b.status().unwrap();
    let endpoint = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "h0")
        .map(|p| p["endpoint"].as_str().unwrap_or_default().to_owned());
    assert_eq!(endpoint, Some(a_endpoint.to_string()), "{status}");
    assert_eq!(b.stat("peers_roamed").unwrap(), roamed_before);
    assert!(b.stat("handshake_rejected_init_signature").unwrap() >= 1);
    assert!(b.stat("handshake_cookies_sent").unwrap() > 0);
    // Bytes B sent to the spoofed address, against what it got from it.
    let listing = String::from_utf8(
        b.command("nft")
            .args(["list", "table", "ip", "weftattack"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let counters: Vec<u64> = listing
        .lines()
        .filter_map(|l| l.split("bytes ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let [to_spoofed, from_spoofed] = counters[..] else {
        panic!("unexpected nft listing: {listing}");
    };
    eprintln!(
        "spoofed source: sent {sent} bytes, B received {from_spoofed}, B answered {to_spoofed}; \
         B refused {} at the signature, sent {} cookies, rate-limited {}",
        b.stat("handshake_rejected_init_signature").unwrap(),
        b.stat("handshake_cookies_sent").unwrap(),
        b.stat("handshake_rate_limited").unwrap(),
    );
    assert!(from_spoofed > 0, "the spoofed datagrams never reached B");
    assert!(
        to_spoofed <= from_spoofed,
        "B sent {to_spoofed} bytes to a spoofed source that sent {from_spoofed}"
    );
    let _ = b
        .command("nft")
        .args(["delete", "table", "ip", "weftattack"])
        .status();
}

/// User and system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// An IPv4 UDP datagram from `source` (port 4800) to `destination`: the
/// kernel fills the IP checksum and length; a UDP checksum of zero means
/// none (IPv4).
fn udp_datagram(source: Ipv4Addr, destination: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&source.octets());
    p[16..20].copy_from_slice(&destination.octets());
    p[20..22].copy_from_slice(&PORT.to_be_bytes());
    p[22..24].copy_from_slice(&PORT.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}
