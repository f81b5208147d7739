//! `mcast-bench`: weft's multicast trees on a transit-stub underlay,
//! measured (issue 5, item 4).
//!
//! For each group size, runs [`weft_sim::run_mcast_scenario`] (weft's own
//! `build_tree` over weft's neighbour mesh among the members, on a
//! GT-ITM-style underlay of `--routers` routers) and prints a Markdown
//! table per size (weft tree against naive unicast and IP multicast), then
//! a summary table over the sizes with the targets, and what only a
//! process can tell: the wall time of one `build_tree` call (the
//! recomputation part of a repair).
//!
//! `bench/mcast.sh` runs the default set (16, 128, 512 members on 1,000
//! routers) and the variants behind the recommendations; results are in
//! `docs/BENCHMARKS.md` ("Multicast trees").

#![allow(clippy::print_stdout)] // a benchmark prints its tables

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use weft_core::mcast::build_tree;
use weft_sim::{
    McastReport, McastScenario, NodeRecoveryRun, NodeRecoveryScenario, OverlayShape,
    first_tree_inputs, mcast_markdown_table, run_mcast_scenario, run_node_recovery,
};

/// Measures weft's multicast trees on a simulated transit-stub underlay.
#[derive(Parser, Debug)]
#[command(name = "mcast-bench", version)]
struct Args {
    /// Group sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 128, 512])]
    members: Vec<usize>,
    /// Underlay routers.
    #[arg(long, default_value_t = 1000)]
    routers: usize,
    /// Underlays (each with its own member placement) per group size.
    #[arg(long, default_value_t = 10)]
    seeds: usize,
    /// Random sources per underlay.
    #[arg(long, default_value_t = 4)]
    sources: usize,
    /// Seed of the first underlay (underlay i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fan-out bound given to build_tree.
    #[arg(long, default_value_t = weft_core::mcast::DEFAULT_FANOUT)]
    fanout: usize,
    /// Neighbours per member (weft's NeighbourConfig::max).
    #[arg(long, default_value_t = weft_core::NeighbourConfig::default().max)]
    neighbours: usize,
    /// Of which random (NeighbourConfig::random).
    #[arg(long, default_value_t = weft_core::NeighbourConfig::default().random)]
    random: usize,
    /// Link every pair of members instead of weft's neighbour choice.
    #[arg(long)]
    full_mesh: bool,
    /// Percent of the members (source excluded) that fail at once.
    #[arg(long, default_value_t = 5.0)]
    fail_percent: f64,
    /// Tree link cost RTT^E (weft's node uses TREE_COST_EXPONENT; others
    /// are experiments).
    #[arg(long, default_value_t = weft_core::mcast::TREE_COST_EXPONENT)]
    cost_exponent: f64,
    /// Leave out overlay links with an RTT above this many ms (what weft's
    /// overlay looks like while such links cannot come up).
    #[arg(long)]
    max_link_rtt_ms: Option<u64>,
    /// Bytes per packet for the byte counts.
    #[arg(long, default_value_t = 1000)]
    packet_bytes: u64,
    /// Also measure recovery with real weft nodes in the simulator: this
    /// many members (0: skip), full mesh, 5 % of them crashed at once
    /// during a stream (see weft_sim::run_node_recovery).
    #[arg(long, default_value_t = 0)]
    node_members: usize,
    /// Runs of the node measurement.
    #[arg(long, default_value_t = 5)]
    node_runs: usize,
    /// RoutingConfig::min_link_timeout of the nodes, in ms, instead of the
    /// default (150).
    #[arg(long)]
    node_min_link_timeout_ms: Option<u64>,
    /// Print one JSON object instead of the tables.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn scenario(&self, members: usize) -> McastScenario {
        let mut sc = McastScenario::new(self.routers, members, self.seed);
        sc.seeds = self.seeds;
        sc.sources = self.sources;
        sc.fanout = self.fanout;
        sc.overlay = if self.full_mesh {
            OverlayShape::FullMesh
        } else {
            OverlayShape::Neighbours {
                max: self.neighbours,
                random: self.random,
            }
        };
        sc.fail = self.fail_percent / 100.0;
        sc.packet_bytes = self.packet_bytes;
        sc.cost_exponent = self.cost_exponent;
        sc.max_link_rtt = self.max_link_rtt_ms.map(Duration::from_millis);
        sc
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut reports = Vec::new();
    let mut timings = Vec::new();
    #[allow(clippy::disallowed_methods)] // a benchmark driver: wall time
    let started = Instant::now();
    for &members in &args.members {
        let scenario = args.scenario(members);
        let report = match run_mcast_scenario(&scenario) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("mcast-bench: {members} members: {e}");
                return ExitCode::FAILURE;
            }
        };
        timings.push(tree_time(&scenario));
        reports.push(report);
    }
    let mut node_runs = Vec::new();
    if args.node_members > 0 {
        let mut sc = NodeRecoveryScenario::new(args.routers, args.node_members, args.seed);
        sc.runs = args.node_runs;
        sc.fanout = args.fanout;
        sc.fail = args.fail_percent / 100.0;
        if let Some(ms) = args.node_min_link_timeout_ms {
            sc.routing.min_link_timeout = Duration::from_millis(ms);
        }
        node_runs = match run_node_recovery(started, &sc) {
            Ok(runs) => runs,
            Err(e) => {
                eprintln!("mcast-bench: node recovery: {e}");
                return ExitCode::FAILURE;
            }
        };
    }
    #[allow(clippy::disallowed_methods)] // a benchmark driver: wall time
    let wall = Instant::now().duration_since(started);
    if args.json {
        println!("{}", json(&reports, &timings, &node_runs, wall));
        return ExitCode::SUCCESS;
    }
    for (r, t) in reports.iter().zip(&timings) {
        println!("### {} members\n", r.scenario.members);
        print!("{}", r.markdown());
        println!(
            "\none build_tree call: {:.3} ms (median of 21); digest {:016x}\n",
            t.as_secs_f64() * 1e3,
            r.digest()
        );
    }
    println!("### Summary\n");
    print!("{}", mcast_markdown_table(&reports));
    println!();
    print!("{}", targets(&reports));
    if !node_runs.is_empty() {
        println!(
            "\n### Recovery with real nodes ({} members, full mesh, fan-out {}, {} % crashed)\n",
            args.node_members, args.fanout, args.fail_percent
        );
        print!("{}", node_table(&node_runs));
    }
    println!("\nwall time {:.1} s", wall.as_secs_f64());
    ExitCode::SUCCESS
}

/// Median wall time of one `build_tree` call on the first trial's inputs.
fn tree_time(scenario: &McastScenario) -> Duration {
    let Ok((topology, source, members)) = first_tree_inputs(scenario) else {
        return Duration::ZERO;
    };
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            #[allow(clippy::disallowed_methods)] // a benchmark driver: wall time
            let t0 = Instant::now();
            let tree = build_tree(&topology, source, &members, scenario.fanout);
            std::hint::black_box(&tree);
            #[allow(clippy::disallowed_methods)] // a benchmark driver: wall time
            Instant::now().duration_since(t0)
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The targets for groups of 128 (any size present is checked).
fn targets(reports: &[McastReport]) -> String {
    let mut s = String::from("| target (issue 5) | members | weft | met |\n|:--|--:|--:|:--|\n");
    for r in reports {
        let w = r.summary(|t| &t.weft);
        let m = r.scenario.members;
        let yes = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            s,
            "| mean stretch ≤ 1.5 | {m} | {:.2} | {} |",
            w.mean_stretch,
            yes(w.mean_stretch <= 1.5)
        );
        let _ = writeln!(
            s,
            "| max link stress ≤ 2 (worst trial) | {m} | {} | {} |",
            w.max_stress_worst,
            yes(w.max_stress_worst <= 2)
        );
        let bounds: Vec<f64> = r.trials.iter().map(|t| t.stress_two.mean_stretch).collect();
        let lowest = bounds.iter().copied().fold(f64::INFINITY, f64::min);
        let domains: Vec<f64> = r
            .trials
            .iter()
            .map(|t| t.stress_two.domains as f64)
            .collect();
        let _ = writeln!(
            s,
            "| (any tree with max stress ≤ 2: least mean stretch, mean / lowest trial; stub domains to reach) | {m} | {:.2} / {:.2}; {:.1} | {} |",
            bounds.iter().sum::<f64>() / bounds.len().max(1) as f64,
            lowest,
            domains.iter().sum::<f64>() / domains.len().max(1) as f64,
            if lowest > 1.5 {
                "both targets at once: impossible on every trial"
            } else {
                "both targets at once: not ruled out"
            }
        );
        let _ = writeln!(
            s,
            "| zero duplicates | {m} | {} | {} |",
            r.duplicates(),
            yes(r.duplicates() == 0)
        );
        let _ = writeln!(
            s,
            "| 100 % delivery without failures (lowest trial) | {m} | {:.1} % | {} |",
            r.min_delivery() * 100.0,
            yes(r.min_delivery() >= 1.0)
        );
    }
    s
}

/// The node runs: one row per run, then the cut-off members' outages
/// against the model.
fn node_table(runs: &[NodeRecoveryRun]) -> String {
    let mut s = String::from(
        "| run (seed) | source | crashed | node tree = build_tree | cut-off members: outage ms (model ms) | others' longest gap ms | missing the last packet | duplicates delivered / dropped by the windows | direct links held down (smallest RTT) |\n|--:|:--|:--|:--|:--|--:|--:|--:|:--|\n",
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut measured = Vec::new();
    let mut model = Vec::new();
    for r in runs {
        let cut: Vec<String> = r
            .cut
            .iter()
            .map(|c| {
                measured.push(ms(c.gap));
                if let Some(m) = c.model_ms {
                    model.push(m);
                }
                match c.model_ms {
                    Some(m) => format!("{} {:.0} ({m:.0})", c.name, ms(c.gap)),
                    None => format!("{} {:.0}", c.name, ms(c.gap)),
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} / {} | {} of {}{} |",
            r.seed,
            r.source,
            r.failed.join(", "),
            if r.trees_agree { "yes" } else { "no" },
            if cut.is_empty() {
                "none".to_string()
            } else {
                cut.join("; ")
            },
            ms(r.uncut_max_gap),
            r.missing_end,
            r.delivered_duplicates,
            r.duplicates,
            r.links_down.0,
            r.links_down.1,
            r.links_down_min_rtt.map_or(String::new(), |d| format!(
                " ({:.0} ms)",
                d.as_secs_f64() * 1e3
            )),
        );
    }
    let _ = writeln!(
        s,
        "\ncut-off members: {}; outage median {:.0} ms, max {:.0} ms (model: median {:.0} ms, max {:.0} ms)",
        measured.len(),
        median(&measured),
        measured.iter().copied().fold(0.0, f64::max),
        median(&model),
        model.iter().copied().fold(0.0, f64::max),
    );
    s
}

fn json(
    reports: &[McastReport],
    timings: &[Duration],
    node_runs: &[NodeRecoveryRun],
    wall: Duration,
) -> String {
    let mut s = String::from("{\"groups\":[");
    for (i, (r, t)) in reports.iter().zip(timings).enumerate() {
        if i > 0 {
            s.push(',');
        }
        let sc = &r.scenario;
        let (per_link, parent) = r.recovery_ms();
        let _ = write!(
            s,
            "{{\"members\":{},\"routers\":{},\"underlay_links\":{},\"seeds\":{},\"sources\":{},\"fanout\":{},\"overlay\":\"{}\",\"mean_degree\":{:.3},\"max_degree\":{},",
            sc.members,
            sc.routers,
            r.underlay_links,
            sc.seeds,
            sc.sources,
            sc.fanout,
            match sc.overlay {
                OverlayShape::FullMesh => "full_mesh".to_string(),
                OverlayShape::Neighbours { max, random } => format!("neighbours_{max}_{random}"),
            },
            r.mean_degree,
            r.max_degree,
        );
        for (name, summary) in [
            ("weft", r.summary(|t| &t.weft)),
            ("unicast", r.summary(|t| &t.unicast)),
            ("ip_multicast", r.summary(|t| &t.ip_multicast)),
        ] {
            let _ = write!(
                s,
                "\"{name}\":{{\"mean_stretch\":{:.4},\"p95_stretch\":{:.4},\"max_stress_mean\":{:.3},\"max_stress_worst\":{},\"mean_stress\":{:.4},\"source_fanout\":{:.3},\"used_links\":{:.1},\"bytes_per_packet\":{:.0}}},",
                summary.mean_stretch,
                summary.p95_stretch,
                summary.max_stress_mean,
                summary.max_stress_worst,
                summary.mean_stress,
                summary.source_fanout,
                summary.used_links,
                summary.bytes,
            );
        }
        let old: Vec<f64> = r
            .trials
            .iter()
            .map(|t| t.failure.old_tree.ratio())
            .collect();
        let rebuilt: Vec<f64> = r.trials.iter().map(|t| t.failure.rebuilt.ratio()).collect();
        let _ = write!(
            s,
            "\"min_delivery\":{:.4},\"duplicates\":{},\"max_children\":{},\"max_depth\":{},\"failure\":{{\"old_tree_delivery_mean\":{:.4},\"old_tree_delivery_min\":{:.4},\"rebuilt_delivery_min\":{:.4},\"cut_off_members\":{},\"recovery_ms_median\":{:.1},\"recovery_ms_p95\":{:.1},\"recovery_ms_max\":{:.1},\"recovery_links_only_ms_median\":{:.1},\"recovery_links_only_ms_max\":{:.1}}},\"build_tree_ms\":{:.4},\"digest\":\"{:016x}\"}}",
            r.min_delivery(),
            r.duplicates(),
            r.max_children(),
            r.max_depth(),
            old.iter().sum::<f64>() / old.len().max(1) as f64,
            old.iter().copied().fold(1.0, f64::min),
            rebuilt.iter().copied().fold(1.0, f64::min),
            parent.len(),
            median(&parent),
            p95(&parent),
            parent.iter().copied().fold(0.0, f64::max),
            median(&per_link),
            per_link.iter().copied().fold(0.0, f64::max),
            t.as_secs_f64() * 1e3,
            r.digest(),
        );
    }
    s.push_str("],\"node_runs\":[");
    for (i, r) in node_runs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let cut: Vec<String> = r
            .cut
            .iter()
            .map(|c| {
                format!(
                    "{{\"member\":\"{}\",\"outage_ms\":{:.1},\"lost\":{},\"model_ms\":{}}}",
                    c.name,
                    c.gap.as_secs_f64() * 1e3,
                    c.lost,
                    c.model_ms.map_or("null".to_string(), |m| format!("{m:.1}")),
                )
            })
            .collect();
        let _ = write!(
            s,
            "{{\"seed\":{},\"source\":\"{}\",\"crashed\":[{}],\"trees_agree\":{},\"cut\":[{}],\"uncut_max_gap_ms\":{:.1},\"missing_end\":{},\"delivered_duplicates\":{},\"dropped_duplicates\":{},\"links_down\":{},\"links\":{}}}",
            r.seed,
            r.source,
            r.failed
                .iter()
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(","),
            r.trees_agree,
            cut.join(","),
            r.uncut_max_gap.as_secs_f64() * 1e3,
            r.missing_end,
            r.delivered_duplicates,
            r.duplicates,
            r.links_down.0,
            r.links_down.1,
        );
    }
    let _ = write!(s, "],\"wall_s\":{:.2}}}", wall.as_secs_f64());
    s
}

/// Nearest-rank 95th percentile.
fn p95(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}
