//! Writes the seed corpus of every fuzz target into `corpus/<target>/`.
//!
//! Run from `fuzz/`: `cargo run --example seeds`. The seeds are valid (and a
//! few deliberately invalid) encodings produced by weft-core itself from the
//! fixed fixture, so they stay in step with the code when the wire changes:
//! rerun this and commit the result.

#![allow(clippy::print_stdout)] // a command-line tool that reports what it wrote

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use weft_core::wire::{Frame, HandshakePayload, MembershipRecord};
use weft_core::{
    CaCertificate, Node, NodeConfig, PeerConfig, RevocationList, RevocationTemplate, SessionConfig,
};
use weft_fuzz::{
    A_ADDR, A_IPV4, B_IPV4, Fixture, Harness, Identity, UNIX_START, advance, base_instant, chunk,
    ipv4_packet, ipv6_packet, op,
};

fn main() -> std::io::Result<()> {
    let fixture = Fixture::get();
    let a_v6 = fixture.a.certificate.node_id().overlay_ipv6();
    let b_v6 = fixture.b.certificate.node_id().overlay_ipv6();
    let b_to_a_v6 = ipv6_packet(b_v6, a_v6, b"hello a");
    let a_to_b_v6 = ipv6_packet(a_v6, b_v6, b"hello b");
    let b_to_a_v4 = ipv4_packet(B_IPV4, A_IPV4, b"hello a");
    let a_to_b_v4 = ipv4_packet(A_IPV4, B_IPV4, b"hello b");
    // b sends it (b routes by destination only); a must refuse the source.
    let c_v6 = fixture.c.certificate.node_id().overlay_ipv6();
    let spoofed = ipv6_packet(c_v6, a_v6, b"not from b");

    // node_datagram: scripts for the two-node harness.
    let deliver = [op::DELIVER];
    let session = [
        &deliver[..],
        &deliver,
        &chunk(op::TUN_B, &b_to_a_v6),
        &deliver,
    ]
    .concat();
    let c_init = first_init(&fixture.c, fixture.ca_certificate(), UNIX_START);
    let x_init = first_init(&fixture.x, fixture.other_ca.certificate(), UNIX_START);
    let old_init = first_init(&fixture.old, fixture.ca_certificate(), 1_740_000_000);
    let b_init = first_init(&fixture.b, fixture.ca_certificate(), UNIX_START);
    let node_seeds: Vec<(&str, Vec<u8>)> = vec![
        ("a_calls_b", [&[1u8][..], &session].concat()),
        (
            "b_calls_a",
            [
                &[2u8][..],
                &session,
                &chunk(op::TUN_A, &a_to_b_v4),
                &deliver,
            ]
            .concat(),
        ),
        (
            "both_call",
            [&[3u8][..], &session, &deliver, &deliver].concat(),
        ),
        (
            "session_ipv4_replay_mutate",
            [
                &[1u8][..],
                &session,
                &chunk(op::TUN_B, &b_to_a_v4),
                &deliver,
                &[op::REPLAY],
            ]
            .concat(),
        ),
        (
            "mutated_response",
            [
                &[1u8][..],
                &deliver,
                &[op::MUTATE, 0, 20, 0x01],
                &chunk(op::TUN_A, &a_to_b_v6),
                &deliver,
            ]
            .concat(),
        ),
        (
            "rekey_and_dead_peer",
            [
                &[3u8][..],
                &session,
                &advance(125_000),
                &deliver,
                &deliver,
                &advance(40_000),
                &advance(1_000),
            ]
            .concat(),
        ),
        (
            "spoofed_source",
            [&[1u8][..], &session, &chunk(op::TUN_B, &spoofed), &deliver].concat(),
        ),
        (
            "init_from_b",
            [
                &[0u8][..],
                &chunk(op::DATAGRAM_FROM_B, &b_init),
                &chunk(op::DATAGRAM_FROM_B, &b_init),
            ]
            .concat(),
        ),
        (
            "init_from_member",
            [&[0u8][..], &chunk(op::DATAGRAM_FROM_OTHER, &c_init)].concat(),
        ),
        (
            "init_wrong_ca",
            [&[0u8][..], &chunk(op::DATAGRAM_FROM_OTHER, &x_init)].concat(),
        ),
        (
            "init_expired",
            [&[0u8][..], &chunk(op::DATAGRAM_FROM_OTHER, &old_init)].concat(),
        ),
        (
            "handshake_retries",
            [
                &[1u8][..],
                &advance(600),
                &advance(1_200),
                &advance(2_500),
                &deliver,
                &deliver,
            ]
            .concat(),
        ),
    ];
    write("node_datagram", &node_seeds)?;

    // wire_packet: every datagram of a recorded session, frames, payloads.
    let mut recorded = Harness::new(1).recording();
    recorded.run(&[&session[..], &advance(2_100), &deliver].concat());
    let mut wire_seeds: Vec<(String, Vec<u8>)> = recorded
        .transcript
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, datagram)| (format!("datagram_{i}"), datagram.clone()))
        .collect();
    let groups = [
        "239.1.2.3".parse().expect("address"),
        "ff3e::8000:1".parse().expect("address"),
    ];
    let mut membership = Vec::new();
    MembershipRecord::emit_signed(
        &mut membership,
        &fixture.a.secret,
        &fixture.a.certificate.fingerprint(),
        UNIX_START * 1_000_000_000,
        35,
        &groups,
    );
    let to_group = ipv4_packet(A_IPV4, "239.1.2.3".parse().expect("address"), b"to all");
    let frames = [
        Frame::Ip(&b_to_a_v6),
        Frame::Keepalive,
        Frame::Ping { id: 7 },
        Frame::Pong { id: u64::MAX },
        Frame::Multicast {
            origin: [7; 16],
            seq: UNIX_START * 1_000_000,
            hops: 2,
            packet: &to_group,
        },
        Frame::Membership(&membership),
        Frame::CertificateRequest {
            fingerprint: fixture.b.certificate.fingerprint(),
        },
        Frame::Certificate(fixture.b.certificate.to_bytes()),
    ];
    for (i, frame) in frames.iter().enumerate() {
        let mut out = Vec::new();
        frame.emit(&mut out);
        wire_seeds.push((format!("frame_{i}"), out));
    }
    let mut payload = Vec::new();
    HandshakePayload {
        timestamp: UNIX_START * 1_000_000_000,
        certificate: fixture.a.certificate.to_bytes(),
        padding: 16,
    }
    .emit(&mut payload);
    wire_seeds.push(("handshake_payload".into(), payload));
    wire_seeds.push(("membership_record".into(), membership.clone()));
    wire_seeds.push(("unknown_version".into(), vec![0x14, 0, 0, 0, 1, 2, 3, 4]));
    wire_seeds.push(("unknown_type".into(), vec![0x2e, 0, 0, 0, 1, 2, 3, 4]));
    let wire_seeds: Vec<(&str, Vec<u8>)> = wire_seeds
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    write("wire_packet", &wire_seeds)?;

    // handshake_init: every selector (certificate, static key, source,
    // burst) with an old, a current and the largest timestamp.
    let mut init_seeds = Vec::new();
    for selector in [0u8, 1, 2, 3, 4, 12, 20, 28] {
        for (t, timestamp) in [0, UNIX_START * 1_000_000_000, u64::MAX].into_iter().enumerate() {
            let mut input = vec![selector, 1];
            input.extend_from_slice(&timestamp.to_be_bytes());
            input.extend_from_slice(&[0x42; 64]);
            input.extend_from_slice(&[0; 96]);
            init_seeds.push((format!("init_{selector}_{t}"), input));
        }
    }
    let init_seeds: Vec<(&str, Vec<u8>)> = init_seeds
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    write("handshake_init", &init_seeds)?;

    // certificate: binary and PEM forms of every kind of key and certificate,
    // and a revocation list.
    let revocations = RevocationList::sign(
        &fixture.ca,
        &RevocationTemplate {
            version: 2,
            issued_at: UNIX_START,
            node_ids: vec![fixture.c.certificate.node_id()],
            certificates: vec![fixture.x.certificate.fingerprint()],
            names: vec!["old".into()],
        },
    )
    .expect("seed revocation list");
    let cert_seeds: Vec<(&str, Vec<u8>)> = vec![
        ("node_cert", fixture.a.certificate.to_bytes().to_vec()),
        (
            "node_cert_no_ipv4",
            fixture.c.certificate.to_bytes().to_vec(),
        ),
        (
            "other_ca_node_cert",
            fixture.x.certificate.to_bytes().to_vec(),
        ),
        ("ca_cert", fixture.ca_certificate().to_bytes().to_vec()),
        ("node_cert_pem", fixture.a.certificate.to_pem().into_bytes()),
        (
            "ca_cert_pem",
            fixture.ca_certificate().to_pem().into_bytes(),
        ),
        (
            "public_key_pem",
            fixture.a.secret.public().to_pem().into_bytes(),
        ),
        ("secret_key_pem", fixture.a.secret.to_pem().into_bytes()),
        ("ca_secret_pem", fixture.ca.to_pem().into_bytes()),
        ("revocation_list", revocations.to_bytes().to_vec()),
        ("revocation_list_pem", revocations.to_pem().into_bytes()),
    ];
    write("certificate", &cert_seeds)?;

    // firewall: records [control][len][packet] (control bit 0: outbound).
    let record = |outbound: bool, advance: u8, packet: &[u8]| {
        let mut out = vec![(advance << 1) | u8::from(outbound)];
        out.push(u8::try_from(packet.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&packet[..packet.len().min(255)]);
        out
    };
    let tcp =
        |src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, sport: u16, dport: u16, flags: u8| {
            let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&dst.octets());
            p.extend_from_slice(&sport.to_be_bytes());
            p.extend_from_slice(&dport.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            p
        };
    let udp_out = ipv4_packet(A_IPV4, B_IPV4, b"query");
    let mut unreachable = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
    unreachable.extend_from_slice(&B_IPV4.octets());
    unreachable.extend_from_slice(&A_IPV4.octets());
    unreachable.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
    unreachable.extend_from_slice(&udp_out[..28]);
    let firewall_seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "tcp_connection",
            [
                record(false, 0, &tcp(B_IPV4, A_IPV4, 40000, 22, 0x02)),
                record(true, 0, &tcp(A_IPV4, B_IPV4, 22, 40000, 0x12)),
                record(false, 1, &tcp(B_IPV4, A_IPV4, 40000, 22, 0x11)),
                record(true, 1, &tcp(A_IPV4, B_IPV4, 22, 40000, 0x11)),
            ]
            .concat(),
        ),
        (
            "udp_and_its_error",
            [record(true, 0, &udp_out), record(false, 2, &unreachable)].concat(),
        ),
        (
            "refused_port_and_expiry",
            [
                record(false, 0, &tcp(B_IPV4, A_IPV4, 40001, 2000, 0x02)),
                record(true, 0, &udp_out),
                record(false, 127, &ipv4_packet(B_IPV4, A_IPV4, b"late")),
            ]
            .concat(),
        ),
    ];
    write("firewall", &firewall_seeds)?;

    // mcast: kernel reports captured from a Linux TUN (see weft-core's
    // mcast::report tests), then graph descriptions for the tree builder.
    let reports = [
        "46c000280000400001023de5c6130001e0000016940400002200e8f90000000104000000ef010203",
        "46c000200000400001022cffc6130001ef010203940400001600f8faef010203",
        "6000000000240001fe80000000000000f8018146ca734fdbff020000000000000000000000000016\
         3a000502000001008f005c360000000104000000ff3e0000000000000000000080000001",
        "6000000000200001fe800000000000001b98a95fdeb86b43ff020000000000000000000000000002\
         3a000502000001008400eff200000000ff3e0000000000000000000080000001",
    ];
    let mut mcast_seeds: Vec<(String, Vec<u8>)> = reports
        .iter()
        .enumerate()
        .map(|(i, hex)| (format!("report_{i}"), unhex(hex)))
        .collect();
    // Fan-out 2, source 0, members 1..=6, a ring with chords.
    let mut graph = vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0b0111_1110];
    for (a, b, cost) in [
        (0, 1, 5),
        (1, 2, 5),
        (2, 3, 5),
        (3, 4, 5),
        (4, 5, 5),
        (5, 6, 5),
        (6, 0, 5),
        (0, 3, 9),
        (0, 4, 9),
        (0, 5, 9),
    ] {
        graph.extend_from_slice(&[a, b, cost]);
    }
    mcast_seeds.push(("graph_ring".into(), graph));
    let mcast_seeds: Vec<(&str, Vec<u8>)> = mcast_seeds
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    write("mcast", &mcast_seeds)?;
    Ok(())
}

/// The handshake init a node sends first to `a`.
fn first_init(me: &Identity, ca: &CaCertificate, unix_time: u64) -> Vec<u8> {
    let config = NodeConfig {
        secret_key: me.secret.clone(),
        certificate: me.certificate.clone(),
        ca: ca.clone(),
        peers: vec![PeerConfig {
            name: Some("a".into()),
            public_key: None,
            endpoint: Some(A_ADDR),
        }],
        session: SessionConfig::default(),
        routing: weft_core::RoutingConfig::default(),
        dht: weft_core::dht::DhtConfig::default(),
        bootstrap: Vec::new(),
        neighbours: weft_core::NeighbourConfig::default(),
        multicast: weft_core::mcast::MulticastConfig::default(),
        qos: weft_core::qos::QosConfig::default(),
        firewall: weft_core::firewall::FirewallConfig::default(),
        revocation: weft_core::RevocationConfig::default(),
    };
    let now = base_instant();
    let mut node = Node::new(
        now,
        std::time::Duration::from_secs(unix_time),
        [0x5e; 32],
        config,
    )
    .expect("seed node");
    node.handle_timeout(now);
    let mut buf = Vec::new();
    let to: Option<SocketAddr> = node.poll_transmit(&mut buf);
    assert_eq!(to, Some(A_ADDR), "the seed node did not call a");
    buf
}

fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.split_whitespace().collect();
    (0..text.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn write(target: &str, seeds: &[(&str, Vec<u8>)]) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir)?;
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
