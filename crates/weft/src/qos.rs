//! `weft qos`: the running node's traffic classes and rate limits, with
//! their rates, queue depths, queueing delays and drops.
//!
//! [`QosInfo`] is the `qos` object of the control protocol (`{"command":
//! "qos"}`, see `daemon::control`): the daemon builds it from the core's
//! [`QosStats`] and [`QosConfig`] with [`QosInfo::from_core`], and every
//! reader (this command, `weft status --qos`, the HTTP API, the tests)
//! reads that same object, so they never disagree. Rates and byte counts
//! are underlay bytes, as the scheduler counts them (the sealed datagram
//! plus the outer IP and UDP headers, as `tc` counts them without the
//! link-layer header), so they compare directly with `[qos] uplink` and the
//! caps; delays are the time a packet waited in weft's queue.

use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use weft_core::qos::{PathMetric, Priority, QosConfig, QosStats};

use crate::status::{ControlArgs, emit, format_ms, human_bytes, render_columns, request};

/// Arguments of `weft qos`.
#[derive(clap::Args, Debug)]
pub struct QosArgs {
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The `qos` object: the node's egress scheduler now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QosInfo {
    /// The egress is shaped to this rate; `None`: not shaped.
    pub uplink_bps: Option<u64>,
    /// Sent rate of the whole egress over the last second.
    pub rate_bps: u64,
    /// Packets queued in all classes.
    pub queued_packets: u64,
    /// Bytes queued in all classes.
    pub queued_bytes: u64,
    /// Class of traffic that no rule matches.
    pub default_class: String,
    /// Number of classification rules (configured and default).
    pub rules: usize,
    /// Per class, in configuration order.
    pub classes: Vec<QosClassInfo>,
    /// Per rate-limited peer, in configuration order.
    pub peers: Vec<QosPeerInfo>,
}

/// One class in [`QosInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QosClassInfo {
    /// Class name.
    pub name: String,
    /// `realtime` (strict priority, capped) or `normal` (weighted share).
    pub priority: String,
    /// Weight among normal classes.
    pub weight: u32,
    /// Routing metric: `latency` or `loss`.
    pub metric: String,
    /// Hard rate cap in force, bits per second.
    pub rate_limit_bps: Option<u64>,
    /// Sent rate over the last second, bits per second.
    pub rate_bps: u64,
    /// Packets queued now.
    pub queued_packets: u64,
    /// Bytes queued now.
    pub queued_bytes: u64,
    /// Packets accepted into the queue.
    pub enqueued_packets: u64,
    /// Bytes accepted into the queue.
    pub enqueued_bytes: u64,
    /// Packets sent.
    pub sent_packets: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Packets dropped because the queue was full.
    pub dropped_full_packets: u64,
    /// Bytes dropped because the queue was full.
    pub dropped_full_bytes: u64,
    /// Packets dropped by the AQM (CoDel).
    pub dropped_aqm_packets: u64,
    /// Bytes dropped by the AQM.
    pub dropped_aqm_bytes: u64,
    /// Moving average of the queueing delay of sent packets, ms.
    pub sojourn_avg_ms: f64,
    /// Queueing delay of the last packet sent, ms.
    pub sojourn_last_ms: f64,
    /// Whether CoDel is dropping now (a standing queue).
    pub aqm_dropping: bool,
}

/// One rate-limited peer in [`QosInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QosPeerInfo {
    /// Peer name.
    pub name: String,
    /// Its rate limit, bits per second.
    pub rate_limit_bps: u64,
    /// Sent rate over the last second.
    pub rate_bps: u64,
    /// Packets queued for it now.
    pub queued_packets: u64,
    /// Bytes queued for it now.
    pub queued_bytes: u64,
    /// Packets sent to it.
    pub sent_packets: u64,
    /// Bytes sent to it.
    pub sent_bytes: u64,
    /// Packets dropped (queue full or AQM).
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

impl QosInfo {
    /// The object for a node's QoS statistics and settings.
    pub fn from_core(stats: &QosStats, config: &QosConfig) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let classes = stats
            .classes
            .iter()
            .map(|c| QosClassInfo {
                name: c.name.clone(),
                priority: priority_name(c.priority).to_owned(),
                weight: c.weight,
                metric: config
                    .class_id(&c.name)
                    .map_or("latency", |id| metric_name(config.metric(id)))
                    .to_owned(),
                rate_limit_bps: c.rate_limit_bps,
                rate_bps: c.rate_bps,
                queued_packets: c.depth_packets,
                queued_bytes: c.depth_bytes,
                enqueued_packets: c.enqueued_packets,
                enqueued_bytes: c.enqueued_bytes,
                sent_packets: c.sent_packets,
                sent_bytes: c.sent_bytes,
                dropped_full_packets: c.dropped_full_packets,
                dropped_full_bytes: c.dropped_full_bytes,
                dropped_aqm_packets: c.dropped_aqm_packets,
                dropped_aqm_bytes: c.dropped_aqm_bytes,
                sojourn_avg_ms: ms(c.sojourn_avg),
                sojourn_last_ms: ms(c.sojourn_last),
                aqm_dropping: c.aqm_dropping,
            })
            .collect();
        let peers = stats
            .peers
            .iter()
            .map(|p| QosPeerInfo {
                name: p.name.clone(),
                rate_limit_bps: p.rate_limit_bps,
                rate_bps: p.rate_bps,
                queued_packets: p.depth_packets,
                queued_bytes: p.depth_bytes,
                sent_packets: p.sent_packets,
                sent_bytes: p.sent_bytes,
                dropped_packets: p.dropped_packets,
                dropped_bytes: p.dropped_bytes,
            })
            .collect();
        QosInfo {
            uplink_bps: stats.uplink_bps,
            rate_bps: stats.rate_bps,
            queued_packets: stats.depth_packets,
            queued_bytes: stats.depth_bytes,
            default_class: config.default_class.clone(),
            rules: config.rules.len(),
            classes,
            peers,
        }
    }

    /// The class called `name`.
    pub fn class(&self, name: &str) -> Option<&QosClassInfo> {
        self.classes.iter().find(|c| c.name == name)
    }
}

fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Realtime => "realtime",
        Priority::Normal => "normal",
    }
}

fn metric_name(metric: PathMetric) -> &'static str {
    match metric {
        PathMetric::Latency => "latency",
        PathMetric::Loss => "loss",
    }
}

/// Runs `weft qos`.
pub fn run(args: &QosArgs) -> anyhow::Result<ExitCode> {
    let socket = args.target.socket()?;
    let info = request_qos(&socket)?;
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&info)?))?;
    } else {
        emit(&render_table(&info))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon listening on `socket` for its `qos` object.
pub fn request_qos(socket: &std::path::Path) -> anyhow::Result<QosInfo> {
    let response = request(socket, &serde_json::json!({ "command": "qos" }))?;
    let qos = response
        .get("qos")
        .cloned()
        .context("the daemon's answer has no qos object")?;
    serde_json::from_value(qos).context("the daemon's qos object is not in the expected form")
}

/// A rate for people: `0`, `640 kbit/s`, `19.0 Mbit/s`.
pub fn format_bps(bps: u64) -> String {
    match bps {
        0 => "0".to_owned(),
        1..1_000 => format!("{bps} bit/s"),
        1_000..1_000_000 => format!("{:.0} kbit/s", bps as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} Mbit/s", bps as f64 / 1e6),
        _ => format!("{:.2} Gbit/s", bps as f64 / 1e9),
    }
}

/// The table `weft qos` prints: the egress, then one row per class and,
/// if any peer has a rate limit, one row per such peer.
pub fn render_table(info: &QosInfo) -> String {
    let mut out = format!(
        "egress {}  sending {}  queued {} packets ({})  unmatched traffic: {}  {} rules\n",
        info.uplink_bps
            .map(|bps| format!("shaped to {}", format_bps(bps)))
            .unwrap_or_else(|| "not shaped".to_owned()),
        format_bps(info.rate_bps),
        info.queued_packets,
        human_bytes(info.queued_bytes),
        info.default_class,
        info.rules,
    );
    let header = [
        "CLASS",
        "PRIORITY",
        "WEIGHT",
        "LIMIT",
        "RATE",
        "QUEUED",
        "SENT",
        "DROP FULL",
        "DROP AQM",
        "DELAY AVG",
        "DELAY LAST",
    ]
    .map(String::from);
    let rows: Vec<[String; 11]> = info
        .classes
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.priority.clone(),
                if c.priority == "realtime" {
                    "-".to_owned()
                } else {
                    c.weight.to_string()
                },
                c.rate_limit_bps
                    .map(format_bps)
                    .unwrap_or_else(|| "-".to_owned()),
                format_bps(c.rate_bps),
                format!("{} ({})", c.queued_packets, human_bytes(c.queued_bytes)),
                format!("{} ({})", c.sent_packets, human_bytes(c.sent_bytes)),
                c.dropped_full_packets.to_string(),
                format!(
                    "{}{}",
                    c.dropped_aqm_packets,
                    if c.aqm_dropping { " (dropping)" } else { "" }
                ),
                format_ms(c.sojourn_avg_ms),
                format_ms(c.sojourn_last_ms),
            ]
        })
        .collect();
    out.push_str(&render_columns(&header, &rows));
    if !info.peers.is_empty() {
        let header = ["PEER", "LIMIT", "RATE", "QUEUED", "SENT", "DROPPED"].map(String::from);
        let rows: Vec<[String; 6]> = info
            .peers
            .iter()
            .map(|p| {
                [
                    p.name.clone(),
                    format_bps(p.rate_limit_bps),
                    format_bps(p.rate_bps),
                    format!("{} ({})", p.queued_packets, human_bytes(p.queued_bytes)),
                    format!("{} ({})", p.sent_packets, human_bytes(p.sent_bytes)),
                    p.dropped_packets.to_string(),
                ]
            })
            .collect();
        out.push_str(&render_columns(&header, &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weft_core::qos::{ClassStats, PeerStats};

    use super::*;

    fn stats() -> QosStats {
        let class = |name: &str, priority| ClassStats {
            name: name.into(),
            priority,
            weight: 2,
            rate_limit_bps: None,
            enqueued_packets: 10,
            enqueued_bytes: 15_000,
            sent_packets: 8,
            sent_bytes: 12_000,
            dropped_full_packets: 1,
            dropped_full_bytes: 1500,
            dropped_aqm_packets: 1,
            dropped_aqm_bytes: 1500,
            depth_packets: 0,
            depth_bytes: 0,
            sojourn_last: Duration::from_micros(250),
            sojourn_avg: Duration::from_micros(1500),
            rate_bps: 4_990_000,
            aqm_dropping: true,
        };
        QosStats {
            uplink_bps: Some(19_000_000),
            rate_bps: 18_500_000,
            depth_packets: 3,
            depth_bytes: 4500,
            dropped_unknown: 0,
            classes: vec![
                ClassStats {
                    rate_limit_bps: Some(5_700_000),
                    ..class("realtime", Priority::Realtime)
                },
                class("interactive", Priority::Normal),
                class("bulk", Priority::Normal),
                class("background", Priority::Normal),
            ],
            peers: vec![PeerStats {
                name: "b".into(),
                rate_limit_bps: 5_000_000,
                sent_packets: 4,
                sent_bytes: 6000,
                dropped_packets: 0,
                dropped_bytes: 0,
                depth_packets: 2,
                depth_bytes: 3000,
                rate_bps: 4_000_000,
            }],
        }
    }

    #[test]
    fn the_qos_object_carries_classes_and_peers_and_round_trips() {
        let info = QosInfo::from_core(&stats(), &QosConfig::default());
        assert_eq!(info.uplink_bps, Some(19_000_000));
        assert_eq!(info.default_class, "interactive");
        let bulk = info.class("bulk").unwrap();
        assert_eq!(bulk.metric, "loss");
        assert_eq!(bulk.sojourn_avg_ms, 1.5);
        assert_eq!(info.class("realtime").unwrap().priority, "realtime");
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["classes"][0]["rate_limit_bps"], 5_700_000);
        assert_eq!(json["classes"][2]["dropped_aqm_packets"], 1);
        assert_eq!(json["peers"][0]["name"], "b");
        assert_eq!(serde_json::from_value::<QosInfo>(json).unwrap(), info);
    }

    #[test]
    fn the_table_has_a_row_per_class_and_per_peer() {
        let table = render_table(&QosInfo::from_core(&stats(), &QosConfig::default()));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + 5 + 2, "{table}");
        assert!(
            lines[0].starts_with(
                "egress shaped to 19.00 Mbit/s  sending 18.50 Mbit/s  queued 3 packets (4.4 KiB)"
            ),
            "{table}"
        );
        assert!(lines[1].starts_with("CLASS"), "{table}");
        for cell in [
            "realtime",
            "5.70 Mbit/s",
            "4.99 Mbit/s",
            "8 (11.7 KiB)",
            "1 (dropping)",
            "1.50 ms",
            "0.25 ms",
        ] {
            assert!(lines[2].contains(cell), "{cell} missing: {table}");
        }
        assert!(lines[6].starts_with("PEER"), "{table}");
        assert!(lines[7].contains("5.00 Mbit/s"), "{table}");
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(format_bps(0), "0");
        assert_eq!(format_bps(999), "999 bit/s");
        assert_eq!(format_bps(64_000), "64 kbit/s");
        assert_eq!(format_bps(19_000_000), "19.00 Mbit/s");
        assert_eq!(format_bps(2_500_000_000), "2.50 Gbit/s");
    }
}
