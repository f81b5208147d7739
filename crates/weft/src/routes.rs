//! `weft routes`, `weft route pin|unpin` and `weft trace`: the routing table
//! of a running node, pinned paths, and the path packets take now.
//!
//! [`RouteInfo`] and [`HopInfo`] are the route object of the control
//! protocol (see `daemon::control`): the daemon builds them from the core's
//! [`RouteStatus`], this module and the tests read them back. Talking to the
//! daemon goes through `status::request`, so every command shares its
//! timeouts and its "is the daemon running?" error.
//!
//! Costs are shown in the metric's own unit: milliseconds for latency (the
//! core counts microseconds), and the end-to-end loss rate in percent for
//! loss (the core counts `-ln(1 - p)` in millionths, so the rate is
//! `1 - e^(-cost / 10^6)`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use weft_core::{Metric, RouteStatus};

use crate::status::{
    ControlArgs, emit, format_ms, format_percent, format_secs, render_columns, request,
};

/// Arguments of `weft routes`.
#[derive(clap::Args, Debug)]
pub struct RoutesArgs {
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print JSON (the daemon's `routes` array) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `weft route ...`.
#[derive(clap::Subcommand, Debug)]
pub enum RouteCommand {
    /// Pin the path to DEST through the given nodes, in order:
    /// `weft route pin b via c,d` (or `--via c,d`).
    Pin(PinArgs),
    /// Remove a pin: the measured best path applies again.
    Unpin(UnpinArgs),
}

/// Arguments of `weft route pin`.
#[derive(clap::Args, Debug)]
pub struct PinArgs {
    /// The destination: a node name or hex node id.
    pub destination: String,
    /// `via NODE[,NODE...]`: the intermediate nodes, in order.
    #[arg(value_name = "via NODE[,NODE...]", num_args = 0..)]
    pub path: Vec<String>,
    /// The intermediate nodes, in order (instead of `via NODE,...`).
    #[arg(long, value_name = "NODE[,NODE...]", value_delimiter = ',')]
    pub via: Vec<String>,
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
}

/// Arguments of `weft route unpin`.
#[derive(clap::Args, Debug)]
pub struct UnpinArgs {
    /// The destination: a node name or hex node id.
    pub destination: String,
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
}

/// Arguments of `weft trace`.
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// The destination: a node name or hex node id.
    pub destination: String,
    /// Which traffic class's path: latency (interactive, the default) or
    /// loss (bulk: DSCP CS1 and AF1x).
    #[arg(long, value_enum, default_value_t = MetricArg::Latency)]
    pub metric: MetricArg,
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print JSON (the daemon's `trace` object) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--metric` of `weft trace`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricArg {
    /// Lowest latency.
    Latency,
    /// Lowest loss.
    Loss,
}

impl From<MetricArg> for Metric {
    fn from(metric: MetricArg) -> Self {
        match metric {
            MetricArg::Latency => Metric::Latency,
            MetricArg::Loss => Metric::Loss,
        }
    }
}

/// One destination's route under one metric, as the control protocol
/// carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The destination's node id (hex).
    pub destination: String,
    /// Its certificate name.
    pub name: String,
    /// `latency` or `loss`.
    pub metric: String,
    /// The hops, ending with the destination; one hop means direct.
    pub path: Vec<HopInfo>,
    /// Other paths flows are spread over.
    pub alternates: usize,
    /// Those paths, as names along each, ending with the destination.
    #[serde(default)]
    pub alternate_paths: Vec<Vec<String>>,
    /// The path's cost: microseconds for latency, `-ln(1 - loss)` in
    /// millionths for loss.
    pub cost: u64,
    /// Seconds since the route last changed.
    pub age_secs: f64,
    /// Whether an operator pinned it.
    pub pinned: bool,
    /// Whether `path` is only the last resort, straight to the endpoint,
    /// because the table has no usable route now (`age_secs` is then 0).
    #[serde(default)]
    pub fallback: bool,
}

/// One hop of [`RouteInfo::path`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HopInfo {
    /// The node's certificate name.
    pub name: String,
    /// Its node id (hex).
    pub node_id: String,
    /// Smoothed RTT of the link from the previous node, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Loss rate (0 to 1) of that link.
    pub loss: f64,
}

impl RouteInfo {
    /// The control protocol's form of a core route.
    pub fn from_core(route: &RouteStatus) -> Self {
        Self {
            destination: route.destination.to_string(),
            name: route.name.clone(),
            metric: route.metric.to_string(),
            path: route
                .path
                .iter()
                .map(|hop| HopInfo {
                    name: hop.name.clone(),
                    node_id: hop.node.to_string(),
                    rtt_ms: hop.rtt.map(|d| d.as_secs_f64() * 1e3),
                    loss: loss_rate(hop.loss),
                })
                .collect(),
            alternates: route.alternates,
            alternate_paths: route.alternate_paths.clone(),
            cost: route.cost,
            age_secs: route.age.as_secs_f64(),
            pinned: route.pinned,
            fallback: route.fallback,
        }
    }
}

/// A core loss rate for JSON: `0.3`, not `0.30000001192092896`.
pub fn loss_rate(loss: f32) -> f64 {
    (f64::from(loss) * 1e6).round() / 1e6
}

/// Runs `weft routes`.
pub fn run_routes(args: &RoutesArgs) -> anyhow::Result<ExitCode> {
    let response = request(
        &args.target.socket()?,
        &serde_json::json!({ "command": "routes" }),
    )?;
    let routes = response
        .get("routes")
        .cloned()
        .context("the daemon's answer has no routes")?;
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&routes)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let routes: Vec<RouteInfo> = serde_json::from_value(routes)
        .context("the daemon's routes are not in the expected form")?;
    emit(&render_routes(&routes))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `weft route pin|unpin`.
pub fn run_route(command: &RouteCommand) -> anyhow::Result<ExitCode> {
    match command {
        RouteCommand::Pin(args) => {
            let via = pin_path(&args.path, &args.via)?;
            pin(&args.target.socket()?, &args.destination, &via)?;
            emit(&format!(
                "pinned the path to {}: via {}\n",
                args.destination,
                via.join(" → ")
            ))?;
        }
        RouteCommand::Unpin(args) => {
            unpin(&args.target.socket()?, &args.destination)?;
            emit(&format!(
                "unpinned {}: its measured best path applies again\n",
                args.destination
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `weft trace`.
pub fn run_trace(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    let socket = args.target.socket()?;
    if args.json {
        let response = request(
            &socket,
            &trace_request(&args.destination, args.metric.into()),
        )?;
        let trace = response
            .get("trace")
            .context("the daemon's answer has no trace")?;
        emit(&format!("{}\n", serde_json::to_string_pretty(trace)?))?;
    } else {
        emit(&render_trace(&trace(
            &socket,
            &args.destination,
            args.metric.into(),
        )?))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon at `socket` to pin the path to `destination` through
/// `via`.
pub fn pin(socket: &Path, destination: &str, via: &[String]) -> anyhow::Result<()> {
    request(
        socket,
        &serde_json::json!({ "command": "route_pin", "destination": destination, "via": via }),
    )
    .map(drop)
}

/// Asks the daemon at `socket` to remove the pin of `destination`.
pub fn unpin(socket: &Path, destination: &str) -> anyhow::Result<()> {
    request(
        socket,
        &serde_json::json!({ "command": "route_unpin", "destination": destination }),
    )
    .map(drop)
}

/// Asks the daemon at `socket` for the path to `destination` under `metric`.
pub fn trace(socket: &Path, destination: &str, metric: Metric) -> anyhow::Result<RouteInfo> {
    let response = request(socket, &trace_request(destination, metric))?;
    let trace = response
        .get("trace")
        .cloned()
        .context("the daemon's answer has no trace")?;
    serde_json::from_value(trace).context("the daemon's trace is not in the expected form")
}

fn trace_request(destination: &str, metric: Metric) -> serde_json::Value {
    serde_json::json!({
        "command": "trace",
        "destination": destination,
        "metric": metric.to_string(),
    })
}

/// The intermediate nodes of `weft route pin`, from `via c,d` (or `via c d`,
/// `via c, d`) as positional words, or from `--via c,d`.
pub fn pin_path(words: &[String], via_option: &[String]) -> anyhow::Result<Vec<String>> {
    const USAGE: &str = "say which nodes: weft route pin DEST via NODE[,NODE...]";
    let listed: Vec<&str> = match (words.split_first(), via_option.is_empty()) {
        (None, true) => bail!("{USAGE}"),
        (None, false) => via_option.iter().map(String::as_str).collect(),
        (Some(_), false) => bail!("give the path once: either `via NODE,...` or `--via NODE,...`"),
        (Some((keyword, rest)), true) => {
            if keyword != "via" {
                bail!("expected `via` after the destination, not '{keyword}'; {USAGE}");
            }
            rest.iter().map(String::as_str).collect()
        }
    };
    let nodes: Vec<String> = listed
        .iter()
        .flat_map(|word| word.split(','))
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        bail!("{USAGE}");
    }
    Ok(nodes)
}

/// The table `weft routes` prints.
pub fn render_routes(routes: &[RouteInfo]) -> String {
    if routes.is_empty() {
        return "no routes: no other node is known yet\n".to_owned();
    }
    let header = [
        "DESTINATION",
        "METRIC",
        "PATH",
        "COST",
        "HOPS",
        "AGE",
        "NOTE",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = routes
        .iter()
        .map(|route| {
            let mut path = describe_path(route);
            // Flows are spread over the main path and these.
            for alternate in &route.alternate_paths {
                match alternate.as_slice() {
                    [via, _] => path.push_str(&format!(" | via {via}")),
                    hops => path.push_str(&format!(" | {}", hops.join(" → "))),
                }
            }
            [
                route.name.clone(),
                route.metric.clone(),
                path,
                format_cost(&route.metric, route.cost),
                route
                    .path
                    .iter()
                    .map(describe_hop)
                    .collect::<Vec<_>>()
                    .join(", "),
                format_secs(route.age_secs),
                match (route.pinned, route.fallback) {
                    (true, _) => "pinned",
                    (false, true) => "fallback",
                    (false, false) => "",
                }
                .to_owned(),
            ]
        })
        .collect();
    render_columns(&header, &rows)
}

/// What `weft trace` prints: a line about the route, then one row per hop
/// as traceroute does, with each link's RTT and loss and the RTT summed
/// along the path so far.
pub fn render_trace(route: &RouteInfo) -> String {
    let hops = route.path.len();
    let mut out = format!(
        "trace to {} ({}), metric {}: {}, {} hop{}, cost {}{}\n",
        route.name,
        route.destination.get(..16).unwrap_or(&route.destination),
        route.metric,
        describe_path(route),
        hops,
        if hops == 1 { "" } else { "s" },
        format_cost(&route.metric, route.cost),
        if route.pinned { ", pinned" } else { "" },
    );
    let header = ["HOP", "NODE", "NODE ID", "RTT", "LOSS", "TOTAL RTT"].map(String::from);
    let mut total = Some(0.0);
    let rows: Vec<[String; 6]> = route
        .path
        .iter()
        .enumerate()
        .map(|(i, hop)| {
            total = total.zip(hop.rtt_ms).map(|(sum, rtt)| sum + rtt);
            [
                (i + 1).to_string(),
                hop.name.clone(),
                hop.node_id.get(..16).unwrap_or(&hop.node_id).to_owned(),
                hop.rtt_ms.map(format_ms).unwrap_or_else(|| "-".to_owned()),
                format_percent(hop.loss),
                total.map(format_ms).unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    out.push_str(&render_columns(&header, &rows));
    out
}

/// `direct`, `via c`, or the whole chain `c → d → b` for longer paths.
fn describe_path(route: &RouteInfo) -> String {
    match route.path.as_slice() {
        [] => "unreachable".to_owned(),
        [_] => "direct".to_owned(),
        [via, _] => format!("via {}", via.name),
        hops => hops
            .iter()
            .map(|hop| hop.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
    }
}

/// `c 1.20 ms`, with the link's loss when it has some: `c 1.20 ms 30.0%`.
fn describe_hop(hop: &HopInfo) -> String {
    let rtt = hop.rtt_ms.map(format_ms).unwrap_or_else(|| "?".to_owned());
    if hop.loss > 0.0 {
        format!("{} {rtt} {}", hop.name, format_percent(hop.loss))
    } else {
        format!("{} {rtt}", hop.name)
    }
}

/// A cost in its metric's unit (see the module doc).
fn format_cost(metric: &str, cost: u64) -> String {
    match metric {
        "latency" => format_ms(cost as f64 / 1e3),
        "loss" => format_percent(1.0 - (-(cost as f64) / 1e6).exp()),
        _ => cost.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(name: &str, rtt_ms: Option<f64>, loss: f64) -> HopInfo {
        HopInfo {
            name: name.into(),
            node_id: name.repeat(64),
            rtt_ms,
            loss,
        }
    }

    fn route(metric: &str, path: Vec<HopInfo>, cost: u64) -> RouteInfo {
        RouteInfo {
            destination: "b".repeat(64),
            name: "b".into(),
            metric: metric.into(),
            path,
            alternates: 0,
            alternate_paths: Vec::new(),
            cost,
            age_secs: 75.0,
            pinned: false,
            fallback: false,
        }
    }

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn pin_path_accepts_the_via_keyword_and_the_option() {
        assert_eq!(pin_path(&words("via c,d"), &[]).unwrap(), ["c", "d"]);
        assert_eq!(pin_path(&words("via c, d"), &[]).unwrap(), ["c", "d"]);
        assert_eq!(pin_path(&words("via c d"), &[]).unwrap(), ["c", "d"]);
        assert_eq!(pin_path(&[], &words("c d")).unwrap(), ["c", "d"]);
        assert!(pin_path(&[], &[]).is_err());
        assert!(pin_path(&words("via"), &[]).is_err());
        assert!(
            pin_path(&words("through c"), &[])
                .unwrap_err()
                .to_string()
                .contains("expected `via`")
        );
        assert!(pin_path(&words("via c"), &words("d")).is_err());
    }

    #[test]
    fn routes_table_shows_path_cost_hops_age_and_pin() {
        let mut relayed = route(
            "latency",
            vec![hop("c", Some(1.2), 0.0), hop("b", Some(0.8), 0.3)],
            2_000,
        );
        relayed.pinned = true;
        relayed.alternates = 1;
        relayed.alternate_paths = vec![vec!["e".into(), "b".into()]];
        let routes = [
            route("loss", vec![hop("b", Some(0.42), 0.0)], 10_050),
            relayed,
            route(
                "latency",
                vec![
                    hop("c", None, 0.0),
                    hop("d", Some(3.0), 0.0),
                    hop("b", Some(4.0), 0.0),
                ],
                12_000,
            ),
        ];
        let table = render_routes(&routes);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "DESTINATION",
                "METRIC",
                "PATH",
                "COST",
                "HOPS",
                "AGE",
                "NOTE"
            ]
        );
        for (line, cells) in [
            (
                1,
                &["b", "loss", "direct", "1.00%", "b 0.42 ms", "1m15s"][..],
            ),
            (
                2,
                &[
                    "latency",
                    "via c | via e",
                    "2.00 ms",
                    "c 1.20 ms, b 0.80 ms 30.0%",
                    "pinned",
                ],
            ),
            (3, &["c → d → b", "12 ms", "c ?, d 3.00 ms, b 4.00 ms"]),
        ] {
            for cell in cells {
                assert!(lines[line].contains(cell), "{cell} missing: {table}");
            }
        }
        assert!(!lines[1].contains("pinned"), "{table}");
        assert_eq!(
            render_routes(&[]),
            "no routes: no other node is known yet\n"
        );
    }

    #[test]
    fn trace_lists_each_hop_with_rtt_loss_and_running_total() {
        let mut traced = route(
            "latency",
            vec![hop("c", Some(1.2), 0.0), hop("b", Some(0.8), 0.005)],
            2_000,
        );
        traced.pinned = true;
        let text = render_trace(&traced);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "trace to b (bbbbbbbbbbbbbbbb), metric latency: via c, 2 hops, cost 2.00 ms, pinned"
        );
        assert!(lines[1].starts_with("HOP  NODE  NODE ID"), "{text}");
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "1",
                "c",
                "cccccccccccccccc",
                "1.20",
                "ms",
                "0%",
                "1.20",
                "ms"
            ]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            [
                "2",
                "b",
                "bbbbbbbbbbbbbbbb",
                "0.80",
                "ms",
                "0.50%",
                "2.00",
                "ms"
            ]
        );
        assert_eq!(lines.len(), 4, "{text}");
    }

    #[test]
    fn route_json_has_the_protocol_shape() {
        let json = serde_json::to_value(route("latency", vec![hop("b", None, 0.0)], 5)).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "age_secs",
                "alternate_paths",
                "alternates",
                "cost",
                "destination",
                "fallback",
                "metric",
                "name",
                "path",
                "pinned"
            ]
        );
        let hop_keys: Vec<&str> = json["path"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(hop_keys, ["loss", "name", "node_id", "rtt_ms"]);
        assert!(json["path"][0]["rtt_ms"].is_null());
    }

    #[test]
    fn loss_rates_are_rounded_for_json() {
        assert_eq!(loss_rate(0.3), 0.3);
        assert_eq!(loss_rate(0.0), 0.0);
    }
}
