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
    McastReport, McastScenario, OverlayShape, first_tree_inputs, mcast_markdown_table,
    run_mcast_scenario,
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
    /// Tree link cost RTT^E (E = 1 is weft's; larger is an experiment).
    #[arg(long, default_value_t = 1)]
    cost_exponent: u32,
    /// Bytes per packet for the byte counts.
    #[arg(long, default_value_t = 1000)]
    packet_bytes: u64,
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
    #[allow(clippy::disallowed_methods)] // a benchmark driver: wall time
    let wall = Instant::now().duration_since(started);
    if args.json {
        println!("{}", json(&reports, &timings, wall));
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

fn json(reports: &[McastReport], timings: &[Duration], wall: Duration) -> String {
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
            "\"min_delivery\":{:.4},\"duplicates\":{},\"max_children\":{},\"max_depth\":{},\"failure\":{{\"old_tree_delivery_mean\":{:.4},\"old_tree_delivery_min\":{:.4},\"rebuilt_delivery_min\":{:.4},\"cut_off_members\":{},\"recovery_ms_median\":{:.1},\"recovery_ms_p95\":{:.1},\"recovery_ms_max\":{:.1},\"recovery_parent_report_ms_median\":{:.1},\"recovery_parent_report_ms_max\":{:.1}}},\"build_tree_ms\":{:.4},\"digest\":\"{:016x}\"}}",
            r.min_delivery(),
            r.duplicates(),
            r.max_children(),
            r.max_depth(),
            old.iter().sum::<f64>() / old.len().max(1) as f64,
            old.iter().copied().fold(1.0, f64::min),
            rebuilt.iter().copied().fold(1.0, f64::min),
            per_link.len(),
            median(&per_link),
            p95(&per_link),
            per_link.iter().copied().fold(0.0, f64::max),
            median(&parent),
            parent.iter().copied().fold(0.0, f64::max),
            t.as_secs_f64() * 1e3,
            r.digest(),
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
