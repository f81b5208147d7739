//! `/metrics`: the node's numbers in the Prometheus text exposition format
//! (through `prometheus-client`).
//!
//! Built per scrape from one snapshot the event loop takes (the same status
//! `weft status` shows, and the QoS scheduler's stats) plus the event hub's
//! path-change counters, so every number in one scrape is from the same
//! instant. Metric families, all prefixed `weft_`:
//!
//! - per peer (label `peer`): `peer_bytes_total` and `peer_packets_total`
//!   (label `direction` = in/out), `peer_rtt_seconds`, `peer_loss_ratio`,
//!   `peer_link_up` (1 up, 0 down or unmeasured), `peer_session_established`,
//!   `peer_handshakes_total`, `peer_path` (1, with labels `type` =
//!   direct/relayed and `via` = the relays, comma-separated),
//!   `peer_path_changes_total` (label `metric`);
//! - handshakes: `handshake_rejected_total` (label `reason`) and one
//!   counter per other handshake figure (`handshakes_completed_total`, ...);
//! - drops: `drops_total` (label `reason`: the node's drop counters by
//!   name, e.g. `rx_replayed`, `tx_queue_full`, `udp_send_errors`);
//! - every other node counter as `<name>_total` (multicast:
//!   `mcast_delivered_total`, ...; routing: `path_changes_total`, ...);
//! - DHT: `dht_lookups_total` (label `result` = ok/failed), `dht_queries_total`,
//!   `dht_query_timeouts_total`, `dht_contacts`, `dht_stored_records`;
//! - QoS per class (label `class`): `qos_class_<name>` for each of the
//!   core's `ClassStats::metrics()` (counters end in `_total`), and
//!   `qos_uplink_rate_bps`, `qos_uplink_limit_bps`;
//! - `certificate_expiry_timestamp_seconds`: when the node's certificate
//!   expires (alert on `weft_certificate_expiry_timestamp_seconds - time()
//!   < 7 * 86400`); `revocation_list_version` when the node holds one;
//! - firewall (when it is on): `firewall_rule_packets_total` (labels
//!   `direction`, `rule` = the rule's name or place or `default`, `action`),
//!   `firewall_tracked_packets_total`, `firewall_related_packets_total`,
//!   `firewall_conntrack_entries`, `firewall_conntrack_max`,
//!   `firewall_conntrack_evicted_total`, `firewall_conntrack_expired_total`,
//!   `firewall_conntrack_closed_by_reload_total`;
//!   its drops are also in `drops_total` (`firewall_inbound_dropped`,
//!   `firewall_outbound_dropped`);
//! - the API itself: `api_connections` (open now),
//!   `api_connections_closed_total` (label `reason` = idle/evicted/refused,
//!   see `connections.rs`) and `api_unauthorized_total`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Snapshot;
use super::connections::ConnectionStats;
use super::events::EventHub;
use crate::firewall::FirewallInfo;

/// The API's own figures.
pub(super) struct ApiFigures {
    pub(super) connections: ConnectionStats,
    /// Requests refused for want of the token.
    pub(super) unauthorized: u64,
}

type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Node counters that count something dropped or refused, by reason.
const DROPS: &[&str] = &[
    "rx_malformed",
    "rx_unknown_session",
    "rx_replayed",
    "rx_auth_failed",
    "rx_expired_session",
    "rx_bad_frame",
    "rx_spoofed_source",
    "tun_malformed",
    "tx_no_route",
    "tx_no_path",
    "unreachable",
    "tx_multicast_dropped",
    "tx_pending_overflow",
    "tx_queue_full",
    "tun_queue_full",
    "events_dropped",
    "relay_no_route",
    "lsa_rejected",
    "mcast_denied",
    "mcast_duplicates",
    "mcast_no_members",
    "udp_send_errors",
    "tun_write_errors",
    "firewall_inbound_dropped",
    "firewall_outbound_dropped",
];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Metric names may hold `[a-zA-Z0-9_:]`; anything else becomes `_`.
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[allow(clippy::cast_precision_loss)] // gauges are f64; exact past 2^53 is moot
fn as_f64(value: u64) -> f64 {
    value as f64
}

/// Renders the snapshot as Prometheus text.
pub(super) fn render(snapshot: &Snapshot, hub: &EventHub, api: &ApiFigures) -> String {
    let mut registry = Registry::with_prefix("weft");
    let counters = |registry: &mut Registry, name: &str, help: &str| -> Counters {
        let family = Counters::default();
        registry.register(name, help, family.clone());
        family
    };
    let gauges = |registry: &mut Registry, name: &str, help: &str| -> Gauges {
        let family = Gauges::default();
        registry.register(name, help, family.clone());
        family
    };

    let status = &snapshot.status;
    let peer_bytes = counters(
        &mut registry,
        "peer_bytes",
        "Payload bytes exchanged with a peer",
    );
    let peer_packets = counters(
        &mut registry,
        "peer_packets",
        "Data packets exchanged with a peer",
    );
    let peer_rtt = gauges(
        &mut registry,
        "peer_rtt_seconds",
        "Smoothed RTT of the direct link to a peer",
    );
    let peer_loss = gauges(
        &mut registry,
        "peer_loss_ratio",
        "Loss rate (0 to 1) of the direct link to a peer, from probes",
    );
    let peer_up = gauges(
        &mut registry,
        "peer_link_up",
        "1 if the direct link to a peer answers probes",
    );
    let peer_session = gauges(
        &mut registry,
        "peer_session_established",
        "1 if a session with a peer is established",
    );
    let peer_handshakes = counters(
        &mut registry,
        "peer_handshakes",
        "Completed handshakes with a peer",
    );
    let peer_path = gauges(
        &mut registry,
        "peer_path",
        "The path latency-sensitive traffic to a peer takes: type direct or relayed, via the relays",
    );
    let peer_path_changes = counters(
        &mut registry,
        "peer_path_changes",
        "Path changes to a destination since the daemon started, per metric",
    );
    let entries = Gauge::<f64, AtomicU64>::default();
    entries.set(as_f64(
        u64::try_from(status.peers.len()).unwrap_or(u64::MAX),
    ));
    registry.register(
        "peer_table_entries",
        "Entries in the node's peer table (bounded by [neighbours] max_peers)",
        entries,
    );
    for peer in &status.peers {
        let name = peer
            .name
            .clone()
            .or_else(|| peer.node_id.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        for (direction, bytes, packets) in [
            ("in", peer.bytes_in, peer.packets_in),
            ("out", peer.bytes_out, peer.packets_out),
        ] {
            let l = labels(&[("peer", &name), ("direction", direction)]);
            peer_bytes.get_or_create(&l).inc_by(bytes);
            peer_packets.get_or_create(&l).inc_by(packets);
        }
        let l = labels(&[("peer", &name)]);
        if let Some(rtt) = peer.rtt_ms {
            peer_rtt.get_or_create(&l).set(rtt / 1e3);
        }
        peer_loss.get_or_create(&l).set(peer.loss);
        peer_up
            .get_or_create(&l)
            .set(if peer.link == "up" { 1.0 } else { 0.0 });
        peer_session
            .get_or_create(&l)
            .set(if peer.state == "established" {
                1.0
            } else {
                0.0
            });
        peer_handshakes.get_or_create(&l).inc_by(peer.handshakes);
        let kind = match peer.path.as_str() {
            "direct" | "direct-lan" | "punched" | "relayed" | "none" => peer.path.as_str(),
            _ if peer.via.is_empty() => "direct",
            _ => "relayed",
        };
        let via = peer.via.join(",");
        peer_path
            .get_or_create(&labels(&[("peer", &name), ("type", kind), ("via", &via)]))
            .set(1.0);
    }
    for ((destination, metric), count) in hub.path_changes() {
        peer_path_changes
            .get_or_create(&labels(&[("peer", &destination), ("metric", &metric)]))
            .inc_by(count);
    }

    let rejected = counters(
        &mut registry,
        "handshake_rejected",
        "Handshakes refused, by reason",
    );
    let drops = counters(
        &mut registry,
        "drops",
        "Packets dropped or refused, by reason (the node's counter names)",
    );
    let punches = counters(
        &mut registry,
        "nat_punches",
        "Attempts to punch a direct path through NATs, by outcome (attempted counts every start)",
    );
    let mut others: Vec<(String, u64)> = Vec::new();
    for (name, &value) in &status.stats {
        let outcome = match name.as_str() {
            "punch_attempts" => Some("attempted"),
            "punch_succeeded" => Some("succeeded"),
            "punch_failed" => Some("failed"),
            _ => None,
        };
        if let Some(outcome) = outcome {
            punches
                .get_or_create(&labels(&[("outcome", outcome)]))
                .inc_by(value);
        } else if let Some(reason) = name.strip_prefix("handshake_rejected_") {
            rejected
                .get_or_create(&labels(&[("reason", reason)]))
                .inc_by(value);
        } else if DROPS.contains(&name.as_str()) {
            drops
                .get_or_create(&labels(&[("reason", name)]))
                .inc_by(value);
        } else {
            others.push((metric_name(name), value));
        }
    }
    for (name, value) in others {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, "A node counter (see weft status)", counter);
    }

    if let Some(dht) = &status.dht {
        let lookups = counters(&mut registry, "dht_lookups", "DHT lookups, by result");
        lookups
            .get_or_create(&labels(&[("result", "ok")]))
            .inc_by(dht.lookups_ok);
        lookups
            .get_or_create(&labels(&[("result", "failed")]))
            .inc_by(dht.lookups_failed);
        for (name, help, value) in [
            ("dht_queries", "DHT queries sent", dht.queries),
            (
                "dht_query_timeouts",
                "DHT queries unanswered in time",
                dht.query_timeouts,
            ),
        ] {
            let counter = Counter::<u64>::default();
            counter.inc_by(value);
            registry.register(name, help, counter);
        }
        for (name, help, value) in [
            (
                "dht_contacts",
                "Contacts in the DHT routing table",
                dht.contacts,
            ),
            (
                "dht_stored_records",
                "Node records this node stores for others",
                dht.stored_records,
            ),
        ] {
            let gauge = Gauge::<f64, AtomicU64>::default();
            gauge.set(as_f64(u64::try_from(value).unwrap_or(u64::MAX)));
            registry.register(name, help, gauge);
        }
    }

    if let Some(firewall) = status.firewall.as_ref().filter(|f| f.enabled) {
        register_firewall(&mut registry, firewall);
    }
    if let Some(not_after) = status.certificate_not_after {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(as_f64(not_after));
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When this node's certificate expires (unix seconds): alert well before it",
            gauge,
        );
    }
    if let Some(version) = status.revocation_version {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(as_f64(version));
        registry.register(
            "revocation_list_version",
            "Version of the revocation list this node holds (every node should reach the newest)",
            gauge,
        );
    }

    let qos = &snapshot.qos;
    let uplink_rate = Gauge::<f64, AtomicU64>::default();
    uplink_rate.set(as_f64(qos.rate_bps));
    registry.register(
        "qos_uplink_rate_bps",
        "Egress rate over the last second, bits per second",
        uplink_rate,
    );
    let uplink_limit = Gauge::<f64, AtomicU64>::default();
    uplink_limit.set(as_f64(qos.uplink_bps.unwrap_or(0)));
    registry.register(
        "qos_uplink_limit_bps",
        "Configured uplink shaping rate (0: not shaped)",
        uplink_limit,
    );
    let mut class_families: Vec<(&'static str, Counters, Gauges)> = Vec::new();
    if let Some(first) = qos.classes.first() {
        for (name, _) in first.metrics() {
            let (counter_family, gauge_family) = (Counters::default(), Gauges::default());
            if let Some(base) = name.strip_suffix("_total") {
                registry.register(
                    format!("qos_class_{base}"),
                    "QoS class counter (see weft qos)",
                    counter_family.clone(),
                );
            } else {
                registry.register(
                    format!("qos_class_{name}"),
                    "QoS class gauge (see weft qos)",
                    gauge_family.clone(),
                );
            }
            class_families.push((name, counter_family, gauge_family));
        }
    }
    for class in &qos.classes {
        let l = labels(&[("class", &class.name)]);
        for ((name, value), (_, counter_family, gauge_family)) in
            class.metrics().into_iter().zip(&class_families)
        {
            if name.ends_with("_total") {
                counter_family.get_or_create(&l).inc_by(value);
            } else {
                gauge_family.get_or_create(&l).set(as_f64(value));
            }
        }
    }

    let open = Gauge::<f64, AtomicU64>::default();
    open.set(as_f64(api.connections.open));
    registry.register("api_connections", "Open HTTP API connections", open);
    let closed = counters(
        &mut registry,
        "api_connections_closed",
        "HTTP API connections the daemon closed, by reason (idle, evicted for a new one, refused when all were busy)",
    );
    for (reason, count) in [
        ("idle", api.connections.closed_idle),
        ("evicted", api.connections.evicted),
        ("refused", api.connections.refused),
    ] {
        closed
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(count);
    }
    let unauthorized = Counter::<u64>::default();
    unauthorized.inc_by(api.unauthorized);
    registry.register(
        "api_unauthorized",
        "HTTP API requests refused without the token",
        unauthorized,
    );

    let mut out = String::new();
    if let Err(error) = encode(&mut out, &registry) {
        // Writing into a String does not fail; say so if it ever does.
        out.push_str(&format!("# encoding failed: {error}\n"));
    }
    out
}

/// The firewall's families (see the module doc).
fn register_firewall(registry: &mut Registry, firewall: &FirewallInfo) {
    let rules = Counters::default();
    registry.register(
        "firewall_rule_packets",
        "Packets a firewall rule (or a direction's default) decided: flows allowed to start, or packets dropped or rejected",
        rules.clone(),
    );
    for (direction, info) in [
        ("inbound", &firewall.inbound),
        ("outbound", &firewall.outbound),
    ] {
        for rule in &info.rules {
            rules
                .get_or_create(&labels(&[
                    ("direction", direction),
                    ("rule", &rule.rule),
                    ("action", &rule.action),
                ]))
                .inc_by(rule.packets);
        }
        rules
            .get_or_create(&labels(&[
                ("direction", direction),
                ("rule", "default"),
                ("action", &info.default_action),
            ]))
            .inc_by(info.default_packets);
    }
    for (name, help, value) in [
        (
            "firewall_tracked_packets",
            "Packets the firewall passed as part of a tracked flow",
            firewall.tracked_packets,
        ),
        (
            "firewall_related_packets",
            "ICMP errors the firewall passed as related to a tracked flow",
            firewall.related_packets,
        ),
        (
            "firewall_conntrack_evicted",
            "Flows evicted from the full connection table",
            firewall.conntrack_evicted,
        ),
        (
            "firewall_conntrack_expired",
            "Flows removed from the connection table after their timeout",
            firewall.conntrack_expired,
        ),
        (
            "firewall_conntrack_closed_by_reload",
            "Tracked flows that the firewall rules, judged again after a reload or a peer's new certificate, no longer allowed",
            firewall.conntrack_closed_by_reload,
        ),
    ] {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    for (name, help, value) in [
        (
            "firewall_conntrack_entries",
            "Flows in the connection table",
            firewall.conntrack_entries,
        ),
        (
            "firewall_conntrack_max",
            "Bound of the connection table",
            firewall.conntrack_max,
        ),
    ] {
        let gauge = Gauge::<f64, AtomicU64>::default();
        gauge.set(as_f64(u64::try_from(value).unwrap_or(u64::MAX)));
        registry.register(name, help, gauge);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weft_core::Event;
    use weft_core::qos::{QosConfig, Scheduler};

    use super::*;
    use crate::status::{DhtInfo, NodeStatus, PeerInfo};

    fn peer(name: &str, via: &[&str]) -> PeerInfo {
        PeerInfo {
            name: Some(name.into()),
            node_id: Some("ab".repeat(32)),
            overlay_ipv6: None,
            overlay_ipv4: None,
            endpoint: None,
            state: "established".into(),
            rtt_ms: Some(2.5),
            bytes_in: 10,
            bytes_out: 20,
            packets_in: 1,
            packets_out: 2,
            last_handshake_secs: Some(1.0),
            handshakes: 3,
            link: "up".into(),
            loss: 0.25,
            via: via.iter().map(|v| (*v).to_owned()).collect(),
            configured: true,
            certificate_not_after: None,
            path: if via.is_empty() { "direct" } else { "relayed" }.into(),
            candidates_tried: Vec::new(),
        }
    }

    #[test]
    fn a_snapshot_renders_as_prometheus_text_with_every_family() {
        #[allow(clippy::disallowed_methods)] // any instant will do
        let now = std::time::Instant::now();
        let qos = Scheduler::<()>::new(now, &QosConfig::default())
            .unwrap()
            .stats(now);
        let stats: BTreeMap<String, u64> = [
            ("handshakes_completed", 4),
            ("handshake_rejected_wrong_ca", 1),
            ("rx_replayed", 7),
            ("mcast_delivered", 9),
            ("firewall_inbound_dropped", 8),
            ("punch_attempts", 3),
            ("punch_succeeded", 2),
            ("punch_failed", 1),
            ("punch_pings_sent", 12),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let status = NodeStatus {
            name: "a".into(),
            node_id: "cd".repeat(32),
            overlay_ipv6: "fd77:6566::1".parse().unwrap(),
            overlay_ipv4: None,
            listen: "198.18.0.1:4800".parse().unwrap(),
            tun: "weft0".into(),
            mtu: 1340,
            peers: vec![peer("b", &[]), peer("c", &["b"]), {
                let mut d = peer("d", &[]);
                d.path = "punched".into();
                d
            }],
            stats,
            dht: Some(DhtInfo {
                contacts: 2,
                lookups_ok: 5,
                ..DhtInfo::default()
            }),
            multicast: None,
            certificate_not_after: Some(1_800_000_000),
            revocation_version: Some(3),
            conflicts: Vec::new(),
            candidates: Vec::new(),
            firewall: Some(FirewallInfo {
                enabled: true,
                inbound: crate::firewall::FirewallDirectionInfo {
                    default_action: "drop".into(),
                    default_packets: 6,
                    dropped: 8,
                    rules: vec![crate::firewall::FirewallRuleInfo {
                        rule: "no-telnet".into(),
                        action: "reject".into(),
                        packets: 2,
                    }],
                },
                outbound: crate::firewall::FirewallDirectionInfo {
                    default_action: "allow".into(),
                    default_packets: 3,
                    dropped: 0,
                    rules: Vec::new(),
                },
                tracked_packets: 40,
                related_packets: 0,
                conntrack_entries: 3,
                conntrack_max: 65_536,
                conntrack_evicted: 0,
                conntrack_expired: 1,
                conntrack_closed_by_reload: 0,
            }),
        };
        let hub = EventHub::new();
        hub.record(&Event::PathChanged {
            destination: weft_core::NodeId::from_bytes([3; 32]),
            name: "c".into(),
            metric: weft_core::Metric::Latency,
            from: vec!["c".into()],
            to: vec!["b".into(), "c".into()],
        });
        let api = ApiFigures {
            connections: ConnectionStats {
                open: 3,
                evicted: 2,
                ..ConnectionStats::default()
            },
            unauthorized: 5,
        };
        let text = render(&Snapshot { status, qos }, &hub, &api);
        for line in [
            "weft_peer_bytes_total{peer=\"b\",direction=\"in\"} 10",
            "weft_peer_packets_total{peer=\"c\",direction=\"out\"} 2",
            "weft_peer_rtt_seconds{peer=\"b\"} 0.0025",
            "weft_peer_loss_ratio{peer=\"b\"} 0.25",
            "weft_peer_link_up{peer=\"b\"} 1.0",
            "weft_peer_path{peer=\"b\",type=\"direct\",via=\"\"} 1.0",
            "weft_peer_path{peer=\"c\",type=\"relayed\",via=\"b\"} 1.0",
            "weft_peer_path{peer=\"d\",type=\"punched\",via=\"\"} 1.0",
            "weft_nat_punches_total{outcome=\"attempted\"} 3",
            "weft_nat_punches_total{outcome=\"succeeded\"} 2",
            "weft_nat_punches_total{outcome=\"failed\"} 1",
            "weft_punch_pings_sent_total 12",
            "weft_peer_path_changes_total{peer=\"c\",metric=\"latency\"} 1",
            "weft_peer_handshakes_total{peer=\"b\"} 3",
            "weft_handshake_rejected_total{reason=\"wrong_ca\"} 1",
            "weft_drops_total{reason=\"rx_replayed\"} 7",
            "weft_drops_total{reason=\"firewall_inbound_dropped\"} 8",
            "weft_handshakes_completed_total 4",
            "weft_mcast_delivered_total 9",
            "weft_dht_lookups_total{result=\"ok\"} 5",
            "weft_dht_contacts 2.0",
            "weft_qos_class_sent_packets_total{class=\"realtime\"} 0",
            "weft_qos_class_depth_packets{class=\"bulk\"} 0.0",
            "weft_firewall_rule_packets_total{direction=\"inbound\",rule=\"no-telnet\",action=\"reject\"} 2",
            "weft_firewall_rule_packets_total{direction=\"inbound\",rule=\"default\",action=\"drop\"} 6",
            "weft_firewall_rule_packets_total{direction=\"outbound\",rule=\"default\",action=\"allow\"} 3",
            "weft_firewall_tracked_packets_total 40",
            "weft_certificate_expiry_timestamp_seconds 1800000000.0",
            "weft_revocation_list_version 3.0",
            "weft_firewall_conntrack_entries 3.0",
            "weft_firewall_conntrack_max 65536.0",
            "weft_api_connections 3.0",
            "weft_api_connections_closed_total{reason=\"evicted\"} 2",
            "weft_api_connections_closed_total{reason=\"idle\"} 0",
            "weft_api_unauthorized_total 5",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no '{line}' in:\n{text}");
        }
    }
}
