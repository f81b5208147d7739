//! `weft lookup NAME|ID|ADDRESS`: asks the running node to find a node
//! through the DHT and shows its record and the queries the lookup took.
//!
//! [`LookupInfo`], [`RecordInfo`] and [`QueryInfo`] are the `lookup` object
//! of the control protocol (see `daemon::control`): the daemon builds them
//! from the core's record and trace with [`LookupInfo::from_core`], this
//! module and the tests read them back. A failed lookup answers
//! `{"ok":false,"error":...,"lookup":{...}}`, so the trace of a failure can
//! be shown too. Lookups may take as long as the DHT's `lookup_timeout`, so
//! the client waits up to [`LOOKUP_TIMEOUT`] rather than the usual 5 s.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use weft_core::NodeId;
use weft_core::dht::{LookupError, LookupTrace, NodeRecord, QueryOutcome};

use crate::status::{ControlArgs, emit, format_ms, format_secs, render_columns, request_raw};

/// How long the client waits for the daemon's answer to a lookup. The
/// daemon itself gives up on a lookup a little after the DHT's
/// `lookup_timeout`, so this is only a backstop.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `weft lookup`.
#[derive(clap::Args, Debug)]
pub struct LookupArgs {
    /// What to find: a node name (`db1` or `db1.weft`), a node id (64 hex
    /// digits) or an overlay IPv4 or IPv6 address.
    pub target: String,
    /// Which node asks.
    #[command(flatten)]
    pub control: ControlArgs,
    /// Print JSON (the daemon's `lookup` object) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of one lookup, as the control protocol carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupInfo {
    /// The target as asked.
    pub target: String,
    /// The record found; `None` when the lookup failed.
    pub record: Option<RecordInfo>,
    /// Why the lookup failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Depth of the query that returned the record (0: known locally).
    pub hops: u32,
    /// From start to end, in milliseconds.
    pub elapsed_ms: f64,
    /// Every query sent, in order.
    pub queries: Vec<QueryInfo>,
}

/// A node's record, as found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordInfo {
    /// Its certificate name.
    pub name: String,
    /// Its node id (hex).
    pub node_id: String,
    /// Its overlay IPv6 address.
    pub overlay_ipv6: Ipv6Addr,
    /// Its overlay IPv4 address, if its certificate has one.
    pub overlay_ipv4: Option<Ipv4Addr>,
    /// Underlay endpoints where it answers.
    pub endpoints: Vec<SocketAddr>,
    /// Multicast groups it has joined.
    pub groups: Vec<String>,
    /// Seconds until the record expires (0 if it has).
    pub expires_in_secs: u64,
    /// The record's sequence number (newer records have larger ones).
    pub sequence: u64,
}

/// One query of a lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryInfo {
    /// Whom it asked (hex node id).
    pub node_id: String,
    /// That node's name, if the asking node knows it.
    pub name: Option<String>,
    /// Where.
    pub endpoint: SocketAddr,
    /// 1 for the lookup's first contacts, d + 1 for contacts a depth-d
    /// answer named.
    pub depth: u32,
    /// When it was sent, in milliseconds from the start.
    pub sent_after_ms: f64,
    /// Its round-trip time in milliseconds, if it answered.
    pub rtt_ms: Option<f64>,
    /// `value` (it returned the record), `nodes` (closer contacts),
    /// `timeout` or `unanswered` (still outstanding at the end).
    pub outcome: String,
    /// How many contacts a `nodes` answer held.
    pub contacts: Option<usize>,
}

impl LookupInfo {
    /// The control protocol's form of a finished lookup. `names` gives the
    /// names of nodes the asking node knows; `unix_now` is the wall-clock
    /// time, for the record's remaining lifetime.
    pub fn from_core(
        target: &str,
        result: &Result<NodeRecord, LookupError>,
        trace: &LookupTrace,
        names: &BTreeMap<NodeId, String>,
        unix_now: u64,
    ) -> Self {
        let (record, error) = match result {
            Ok(record) => (Some(RecordInfo::from_core(record, unix_now)), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let queries = trace
            .queries
            .iter()
            .map(|query| {
                let (outcome, contacts) = match query.outcome {
                    QueryOutcome::Value => ("value", None),
                    QueryOutcome::Nodes(n) => ("nodes", Some(n)),
                    QueryOutcome::Timeout => ("timeout", None),
                    QueryOutcome::Unanswered => ("unanswered", None),
                };
                QueryInfo {
                    node_id: query.node.to_string(),
                    name: names.get(&query.node).cloned(),
                    endpoint: query.endpoint,
                    depth: query.depth,
                    sent_after_ms: millis(query.sent_after),
                    rtt_ms: query.rtt.map(millis),
                    outcome: outcome.to_owned(),
                    contacts,
                }
            })
            .collect();
        LookupInfo {
            target: target.to_owned(),
            record,
            error,
            hops: trace.hops,
            elapsed_ms: millis(trace.elapsed),
            queries,
        }
    }
}

impl RecordInfo {
    /// The control protocol's form of a record.
    pub fn from_core(record: &NodeRecord, unix_now: u64) -> Self {
        RecordInfo {
            name: record.name().to_owned(),
            node_id: record.node_id().to_string(),
            overlay_ipv6: record.overlay_ipv6(),
            overlay_ipv4: record.overlay_ipv4(),
            endpoints: record.endpoints.clone(),
            groups: record.groups.clone(),
            expires_in_secs: record.expires.saturating_sub(unix_now),
            sequence: record.sequence,
        }
    }
}

/// Milliseconds, rounded to microseconds so the JSON stays readable.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Runs `weft lookup`.
pub fn run(args: &LookupArgs) -> anyhow::Result<ExitCode> {
    let socket = args.control.socket()?;
    let response = request_raw(
        &socket,
        &serde_json::json!({ "command": "lookup", "target": args.target }),
        LOOKUP_TIMEOUT,
    )?;
    let ok = response.get("ok").and_then(serde_json::Value::as_bool) == Some(true);
    let error = response
        .get("error")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("no reason given");
    let Some(lookup) = response.get("lookup") else {
        // Refused before any lookup started (a target that does not parse).
        if ok {
            bail!("the daemon's answer has no lookup");
        }
        bail!("{error}");
    };
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(lookup)?))?;
    } else {
        let info: LookupInfo = serde_json::from_value(lookup.clone())
            .context("the daemon's lookup is not in the expected form")?;
        emit(&render_lookup(&info))?;
    }
    if ok {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        eprintln!("weft: lookup of '{}': {error}", args.target);
    }
    Ok(ExitCode::FAILURE)
}

/// Asks the node at `socket` to find `target` (a name, `NAME.weft`, a node
/// id or an overlay address) and returns its record; a failed lookup is an
/// error carrying the daemon's reason.
pub fn find(socket: &std::path::Path, target: &str) -> anyhow::Result<RecordInfo> {
    let response = request_raw(
        socket,
        &serde_json::json!({ "command": "lookup", "target": target }),
        LOOKUP_TIMEOUT,
    )?;
    let record = response
        .get("lookup")
        .and_then(|lookup| lookup.get("record"))
        .filter(|record| !record.is_null());
    match record {
        Some(record) => serde_json::from_value(record.clone())
            .context("the daemon's record is not in the expected form"),
        None => {
            let error = response
                .get("error")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given");
            bail!("cannot find '{target}' in the network: {error}")
        }
    }
}

/// The lookup as `weft lookup` prints it: the record, then a table of the
/// queries.
pub fn render_lookup(info: &LookupInfo) -> String {
    let dash = || "-".to_owned();
    let mut out = String::new();
    let how = match (&info.record, info.queries.len()) {
        (Some(_), 0) => format!("known locally, {}", format_ms(info.elapsed_ms)),
        (Some(_), queries) => format!(
            "found in {}, {}, {}",
            plural(info.hops as usize, "hop", "hops"),
            plural(queries, "query", "queries"),
            format_ms(info.elapsed_ms)
        ),
        (None, queries) => format!(
            "{}, {}",
            plural(queries, "query", "queries"),
            format_ms(info.elapsed_ms)
        ),
    };
    match &info.record {
        Some(record) => {
            out.push_str(&format!(
                "{}  id {}  ({how})\n",
                record.name,
                record.node_id.get(..16).unwrap_or(&record.node_id)
            ));
            let overlay = match record.overlay_ipv4 {
                Some(v4) => format!("{}  {v4}", record.overlay_ipv6),
                None => record.overlay_ipv6.to_string(),
            };
            let endpoints = if record.endpoints.is_empty() {
                dash()
            } else {
                record
                    .endpoints
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let groups = if record.groups.is_empty() {
                dash()
            } else {
                record.groups.join(", ")
            };
            out.push_str(&format!("  node id     {}\n", record.node_id));
            out.push_str(&format!("  overlay     {overlay}\n"));
            out.push_str(&format!("  endpoints   {endpoints}\n"));
            out.push_str(&format!("  groups      {groups}\n"));
            out.push_str(&format!(
                "  expires in  {}\n",
                format_secs(record.expires_in_secs as f64)
            ));
        }
        None => {
            let error = info.error.as_deref().unwrap_or("not found");
            out.push_str(&format!("{}: {error} ({how})\n", info.target));
        }
    }
    if info.queries.is_empty() {
        return out;
    }
    out.push('\n');
    let header = [
        "DEPTH",
        "NODE",
        "ID",
        "ENDPOINT",
        "SENT AFTER",
        "RTT",
        "OUTCOME",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = info
        .queries
        .iter()
        .map(|q| {
            [
                q.depth.to_string(),
                q.name.clone().unwrap_or_else(dash),
                q.node_id.get(..16).unwrap_or(&q.node_id).to_owned(),
                q.endpoint.to_string(),
                format_ms(q.sent_after_ms),
                q.rtt_ms.map(format_ms).unwrap_or_else(dash),
                match (q.outcome.as_str(), q.contacts) {
                    ("value", _) => "record".to_owned(),
                    ("nodes", Some(n)) => plural(n, "contact", "contacts"),
                    (other, _) => other.to_owned(),
                },
            ]
        })
        .collect();
    out.push_str(&render_columns(&header, &rows));
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LookupInfo {
        LookupInfo {
            target: "h3".into(),
            record: Some(RecordInfo {
                name: "h3".into(),
                node_id: "ab".repeat(32),
                overlay_ipv6: "fd77:6566:abab::1".parse().unwrap(),
                overlay_ipv4: Some("198.19.0.4".parse().unwrap()),
                endpoints: vec!["198.18.0.4:4800".parse().unwrap()],
                groups: vec![],
                expires_in_secs: 3599,
                sequence: 17,
            }),
            error: None,
            hops: 2,
            elapsed_ms: 3.1,
            queries: vec![
                QueryInfo {
                    node_id: "11".repeat(32),
                    name: Some("h0".into()),
                    endpoint: "198.18.0.1:4800".parse().unwrap(),
                    depth: 1,
                    sent_after_ms: 0.0,
                    rtt_ms: Some(0.5),
                    outcome: "nodes".into(),
                    contacts: Some(3),
                },
                QueryInfo {
                    node_id: "22".repeat(32),
                    name: None,
                    endpoint: "198.18.0.5:4800".parse().unwrap(),
                    depth: 2,
                    sent_after_ms: 0.6,
                    rtt_ms: Some(0.4),
                    outcome: "value".into(),
                    contacts: None,
                },
            ],
        }
    }

    #[test]
    fn a_found_record_shows_its_fields_and_the_queries() {
        let text = render_lookup(&info());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("h3  id abababababababab  (found in 2 hops, 2 queries, 3.10 ms)"),
            "{text}"
        );
        for needed in ["fd77:6566:abab::1  198.19.0.4", "198.18.0.4:4800", "59m59s"] {
            assert!(text.contains(needed), "{needed} missing: {text}");
        }
        let header = lines.iter().position(|l| l.starts_with("DEPTH")).unwrap();
        assert!(lines[header + 1].starts_with("1      h0"), "{text}");
        assert!(lines[header + 1].ends_with("3 contacts"), "{text}");
        assert!(lines[header + 2].ends_with("record"), "{text}");
    }

    #[test]
    fn a_failure_names_the_reason() {
        let mut failed = info();
        failed.record = None;
        failed.error = Some("no such node in the network".into());
        failed.queries.truncate(1);
        let text = render_lookup(&failed);
        assert!(
            text.starts_with("h3: no such node in the network (1 query, 3.10 ms)"),
            "{text}"
        );
    }

    #[test]
    fn lookup_round_trips_through_json() {
        let json = serde_json::to_value(info()).unwrap();
        assert_eq!(json["queries"][0]["outcome"], "nodes");
        assert_eq!(json["queries"][0]["contacts"], 3);
        assert!(json.get("error").is_none());
        assert_eq!(serde_json::from_value::<LookupInfo>(json).unwrap(), info());
    }
}
