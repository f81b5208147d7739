//! `dht-bench`: the DHT at scale, measured (issue 4, item 7).
//!
//! Runs [`weft_sim::run_dht_scenario`] (thousands of DHT engines in virtual
//! time: joins, settle, lookups, optional churn) and prints a Markdown table
//! of the figures against the targets, plus what only a real process
//! can tell: wall time, and memory per simulated node from a counting global
//! allocator (bytes live after the joins and the settle time, over the node
//! count; and the peak).
//!
//! `bench/dht.sh` runs the 10,000-node benchmark with and without churn;
//! results are in `docs/BENCHMARKS.md`.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use weft_sim::{DhtPhase, DhtProgress, DhtReport, DhtScenario, ReportRow, markdown_table};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to the system allocator with the caller's
// arguments unchanged and returns its result; the counters are plain atomics
// that never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Simulates a weft DHT of many nodes and measures its lookups.
#[derive(Parser, Debug)]
#[command(name = "dht-bench", version)]
struct Args {
    /// Nodes that join before the lookups.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Lookups, spread over the lookup phase.
    #[arg(long, default_value_t = 2_000)]
    lookups: usize,
    /// Percent of the nodes that leave (and as many that join) during the
    /// lookup phase.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 20)]
    join_interval_ms: u64,
    /// Seconds between the last join and the first lookup.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
    /// Seconds over which lookups (and churn) are spread.
    #[arg(long, default_value_t = 60)]
    lookup_secs: u64,
    /// A node is a lookup source or target only this many seconds after
    /// joining.
    #[arg(long, default_value_t = 10)]
    min_age_secs: u64,
    /// Percent of datagrams lost at random.
    #[arg(long, default_value_t = 0.0)]
    loss_percent: f64,
    /// DhtConfig::k (bucket size) instead of the default.
    #[arg(long)]
    k: Option<usize>,
    /// DhtConfig::alpha (queries in flight per lookup) instead of the default.
    #[arg(long)]
    alpha: Option<usize>,
    /// DhtConfig::replication instead of the default.
    #[arg(long)]
    replication: Option<usize>,
    /// DhtConfig::query_timeout in milliseconds instead of the default.
    #[arg(long)]
    query_timeout_ms: Option<u64>,
    /// DhtConfig::lookup_timeout in milliseconds instead of the default.
    #[arg(long)]
    lookup_timeout_ms: Option<u64>,
    /// DhtConfig::max_failures instead of the default.
    #[arg(long)]
    max_failures: Option<u32>,
    /// DhtConfig::refresh_interval in seconds instead of the default.
    #[arg(long)]
    refresh_secs: Option<u64>,
    /// DhtConfig::republish_interval in seconds instead of the default.
    #[arg(long)]
    republish_secs: Option<u64>,
    /// One certificate cache for all engines (faster; changes no result,
    /// but memory per node then leaves out the cache a real node has).
    #[arg(long)]
    shared_certificate_cache: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

impl Args {
    fn scenario(&self) -> DhtScenario {
        let mut sc = DhtScenario::new(self.nodes, self.lookups, self.seed);
        sc.churn = self.churn / 100.0;
        sc.join_interval = Duration::from_millis(self.join_interval_ms);
        sc.settle = Duration::from_secs(self.settle_secs);
        sc.lookup_phase = Duration::from_secs(self.lookup_secs);
        sc.min_age = Duration::from_secs(self.min_age_secs);
        sc.loss = self.loss_percent / 100.0;
        sc.shared_certificate_cache = self.shared_certificate_cache;
        let d = &mut sc.dht;
        if let Some(k) = self.k {
            d.k = k;
        }
        if let Some(alpha) = self.alpha {
            d.alpha = alpha;
        }
        if let Some(r) = self.replication {
            d.replication = r;
        }
        if let Some(ms) = self.query_timeout_ms {
            d.query_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.lookup_timeout_ms {
            d.lookup_timeout = Duration::from_millis(ms);
        }
        if let Some(f) = self.max_failures {
            d.max_failures = f;
        }
        if let Some(secs) = self.refresh_secs {
            d.refresh_interval = Duration::from_secs(secs);
        }
        if let Some(secs) = self.republish_secs {
            d.republish_interval = Duration::from_secs(secs);
        }
        sc
    }
}

/// What the process measured around the run.
struct Measured {
    wall: Duration,
    /// CPU time of the process and time it waited for a core, if the
    /// kernel tells (`/proc/self/schedstat`): on a shared machine the wall
    /// time is the sum of both.
    cpu: Option<(Duration, Duration)>,
    wall_setup: Duration,
    bytes_per_node: f64,
    peak_per_node: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = args.scenario();
    #[allow(clippy::disallowed_methods)] // a benchmark driver: wall time and the sim's base instant
    let started = Instant::now();
    let mut at_start = 0usize;
    let mut at_settled = 0usize;
    let mut wall_setup = Duration::ZERO;
    let quiet = args.quiet;
    let mut probe = |p: DhtProgress| {
        let live = LIVE.load(Ordering::Relaxed);
        match p.phase {
            DhtPhase::Start => at_start = live,
            DhtPhase::Settled => {
                at_settled = live;
                wall_setup = started.elapsed();
            }
            DhtPhase::Joining(_) | DhtPhase::Done => {}
        }
        if !quiet {
            eprintln!(
                "[{:7.1} s wall] {:?}: simulated {:.0} s, {} events, {} live nodes, heap {:.1} MiB",
                started.elapsed().as_secs_f64(),
                p.phase,
                p.simulated.as_secs_f64(),
                p.events,
                p.live,
                live as f64 / (1024.0 * 1024.0)
            );
        }
    };
    let report = match weft_sim::run_dht_scenario(started, &scenario, &mut probe) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("dht-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nodes = scenario.nodes.max(1) as f64;
    let measured = Measured {
        wall: started.elapsed(),
        cpu: cpu_time(),
        wall_setup,
        bytes_per_node: at_settled.saturating_sub(at_start) as f64 / nodes,
        peak_per_node: PEAK.load(Ordering::Relaxed).saturating_sub(at_start) as f64 / nodes,
    };
    if args.json {
        println!("{}", json(&args, &report, &measured));
    } else {
        println!(
            "DHT at scale: {} nodes, {} lookups, churn {} %, seed {}, k {}, alpha {}, replication {}, query timeout {:?}, refresh {:?}, republish {:?}, loss {} %, {} certificate cache",
            scenario.nodes,
            scenario.lookups,
            args.churn,
            scenario.seed,
            scenario.dht.k,
            scenario.dht.alpha,
            scenario.dht.replication,
            scenario.dht.query_timeout,
            scenario.dht.refresh_interval,
            scenario.dht.republish_interval,
            args.loss_percent,
            if scenario.shared_certificate_cache {
                "one shared"
            } else {
                "a private"
            }
        );
        println!();
        let mut rows = report.rows();
        rows.push(ReportRow::with_target(
            "wall time",
            format!(
                "{:.1} s (joins and settle {:.1} s){}",
                measured.wall.as_secs_f64(),
                measured.wall_setup.as_secs_f64(),
                match measured.cpu {
                    Some((cpu, wait)) => format!(
                        "; CPU {:.1} s, {:.1} s waiting for a core",
                        cpu.as_secs_f64(),
                        wait.as_secs_f64()
                    ),
                    None => String::new(),
                }
            ),
            "< 5 min",
            measured.wall < Duration::from_secs(300),
        ));
        rows.push(ReportRow::plain(
            "memory per node",
            format!(
                "{:.1} KiB live after settle, peak {:.1} KiB (whole simulator over the initial nodes)",
                measured.bytes_per_node / 1024.0,
                measured.peak_per_node / 1024.0
            ),
        ));
        print!("{}", markdown_table(&rows));
        if !report.failures.is_empty() {
            println!();
            println!("Failed lookups (first {}):", report.failures.len());
            for f in &report.failures {
                println!("- {f}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// This (single-threaded) process's time on a CPU and waiting in the run
/// queue, from `/proc/self/schedstat` (nanoseconds), where Linux has it.
fn cpu_time() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let run = fields.next()??;
    let wait = fields.next()??;
    Some((Duration::from_nanos(run), Duration::from_nanos(wait)))
}

/// The figures as one JSON object (numbers in milliseconds and bytes).
fn json(args: &Args, r: &DhtReport, m: &Measured) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let fields: Vec<(&str, String)> = vec![
        ("nodes", r.nodes.to_string()),
        ("churn_percent", args.churn.to_string()),
        ("seed", r.seed.to_string()),
        ("left", r.left.to_string()),
        ("joined_late", r.joined_late.to_string()),
        ("rtt_median_ms", format!("{:.3}", ms(r.rtt_median))),
        ("rtt_p99_ms", format!("{:.3}", ms(r.rtt_p99))),
        ("joined_events", r.joined_events.to_string()),
        ("contacts_mean", format!("{:.2}", r.contacts_mean)),
        ("contacts_min", r.contacts_min.to_string()),
        ("stored_mean", format!("{:.2}", r.stored_mean)),
        ("certificates_mean", format!("{:.2}", r.certificates_mean)),
        (
            "shared_certificate_cache",
            args.shared_certificate_cache.to_string(),
        ),
        ("lookups", r.lookups.to_string()),
        ("ok", r.ok.to_string()),
        ("success_percent", format!("{:.3}", r.success_percent())),
        ("not_found", r.not_found.to_string()),
        ("timed_out", r.timed_out.to_string()),
        ("no_contacts", r.no_contacts.to_string()),
        ("wrong_record", r.wrong_record.to_string()),
        ("unfinished", r.unfinished.to_string()),
        ("local", r.local.to_string()),
        ("hops_mean", format!("{:.3}", r.hops_mean)),
        ("hops_p99", r.hops_p99.to_string()),
        ("hops_max", r.hops_max.to_string()),
        ("latency_median_ms", format!("{:.3}", ms(r.latency_median))),
        ("latency_p99_ms", format!("{:.3}", ms(r.latency_p99))),
        ("latency_over_rtt", format!("{:.3}", r.latency_over_rtt())),
        ("queries_per_lookup", format!("{:.2}", r.queries_per_lookup)),
        ("datagrams", r.datagrams.to_string()),
        ("bytes", r.bytes.to_string()),
        ("datagrams_setup", r.datagrams_setup.to_string()),
        ("bytes_setup", r.bytes_setup.to_string()),
        (
            "datagrams_lookup_phase",
            r.datagrams_lookup_phase.to_string(),
        ),
        ("dropped_dead", r.dropped_dead.to_string()),
        ("dropped_loss", r.dropped_loss.to_string()),
        ("query_timeouts", r.query_timeouts.to_string()),
        ("rejected", r.rejected.to_string()),
        ("simulated_s", format!("{:.3}", r.simulated.as_secs_f64())),
        ("events", r.events.to_string()),
        ("digest", format!("\"{:016x}\"", r.digest)),
        ("wall_s", format!("{:.3}", m.wall.as_secs_f64())),
        ("wall_setup_s", format!("{:.3}", m.wall_setup.as_secs_f64())),
        (
            "cpu_s",
            m.cpu
                .map_or("null".into(), |(c, _)| format!("{:.3}", c.as_secs_f64())),
        ),
        (
            "cpu_wait_s",
            m.cpu
                .map_or("null".into(), |(_, w)| format!("{:.3}", w.as_secs_f64())),
        ),
        ("bytes_per_node", format!("{:.0}", m.bytes_per_node)),
        ("peak_bytes_per_node", format!("{:.0}", m.peak_per_node)),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}
