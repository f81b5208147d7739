//! `weft demo --scenario failover`: cut a link under a ping stream and
//! measure how long the overlay takes to route around it.
//!
//! On the demo overlay (N ≥ 3 nodes, full mesh), h0 pings h1 over the
//! overlay every 10 ms. About a second in, the h0–h1 underlay path is cut
//! with `blackhole` routes in both namespaces (iproute2 only: a fresh
//! machine has no nftables); the other nodes still reach both. The demo
//! prints the outage (the last reply before the silence to the first reply
//! after it, so the resolution is one ping interval), the requests lost,
//! and the path before and after the cut as the daemon's `trace` answer
//! shows it; then it restores the path and waits for the route to return
//! to the direct link. `--trials N` repeats the cut and restore N times and
//! prints a table with the median and worst outage, and the idle probe cost
//! measured beforehand from the daemons' `probe_tx_bytes`/`probe_rx_bytes`
//! counters (UDP payload, per neighbour and second, averaged over all
//! nodes). A trial whose route to h1 is not direct before the cut (not even
//! after waiting) is skipped and reported, and the trials stop there, since
//! cutting a link that carries nothing measures nothing. `--loss-percent P` adds a phase with P % random loss on h0–h1
//! (nftables `numgen`, skipped without `nft`) and reports the end-to-end
//! loss in the first two seconds and after. `bench/failover.sh` runs this
//! in a release build; the targets it checks come from issue 3.
//!
//! It returns whether traffic resumed after every cut; the caller turns
//! that into the exit code.

#![allow(clippy::print_stdout)] // a CLI command: stdout is its output

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::testbed::{Host, PingStream, Testbed, have_nft, loss_between, outage, path_names};

/// What the failover scenario does, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FailoverPlan {
    /// Cut and restore cycles.
    pub(super) trials: u32,
    /// Random loss for the loss phase, if any.
    pub(super) loss_percent: Option<u8>,
    /// How long the idle probe cost is measured.
    pub(super) idle: Duration,
}

/// Runs the scenario on a test bed whose sessions are up; returns whether
/// traffic resumed after every cut.
pub(super) fn run(
    testbed: &Testbed,
    plan: &FailoverPlan,
    interrupted: &AtomicBool,
) -> anyhow::Result<bool> {
    let n = testbed.hosts().len();
    if n < 3 {
        bail!("the failover scenario needs at least 3 nodes (a relay besides h0 and h1)");
    }
    let (source, target) = (testbed.host(0), testbed.host(1));
    let target_ip = IpAddr::V4(target.overlay_ipv4()?);

    println!("waiting for every node to learn the others' links (link state) ...");
    wait_for_link_state(testbed)?;
    wait_direct(testbed, source, target.name(), CONVERGE_TIMEOUT)?;

    println!(
        "measuring the idle probe cost for {} s (no traffic, after {} s to settle) ...",
        plan.idle.as_secs(),
        IDLE_SETTLE.as_secs()
    );
    let cost = idle_cost(testbed, plan.idle, interrupted)?;
    println!("  {}", cost.describe());

    if plan.trials > 0 {
        println!(
            "\n{} pings {} ({target_ip}) every {} ms over the overlay; the {}–{} underlay path will be cut \
             with blackhole routes in both namespaces, {} time(s).",
            source.name(),
            target.name(),
            INTERVAL.as_millis(),
            source.name(),
            target.name(),
            plan.trials
        );
    }
    let mut trials = Vec::new();
    for number in 1..=plan.trials {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let trial = cut_trial(testbed, target_ip, number, plan.trials == 1)?;
        if plan.trials > 1 {
            println!("{}", trial.row(number));
        }
        let skipped = trial.skipped;
        trials.push(trial);
        if skipped {
            // The route stays relayed: every further trial would wait and skip too.
            println!(
                "stopping the trials: the route to {} did not return to the direct link within {} s",
                target.name(),
                DIRECT_TIMEOUT.as_secs()
            );
            break;
        }
    }

    let loss = match plan.loss_percent {
        Some(percent) if have_nft() => loss_phase(testbed, target_ip, percent)?,
        Some(_) => {
            println!(
                "\nskipping the random-loss phase: nft (nftables) is not installed \
                 (scripts/install-test-deps.sh installs it)"
            );
            None
        }
        None => None,
    };

    print!("{}", summary(&trials, &cost, loss.as_ref(), n));
    let all_resumed = trials
        .iter()
        .all(|trial| trial.skipped || trial.outage.is_some());
    if !all_resumed {
        println!(
            "traffic did NOT resume after every cut. Daemon logs:\n{}",
            testbed.log_tails()
        );
    }
    Ok(all_resumed)
}

/// One cut and restore.
#[derive(Debug, Clone)]
struct Trial {
    /// The route was not direct before the cut (not even after waiting), so
    /// the cut was not made: the trial measures nothing.
    skipped: bool,
    /// Path while the link was cut.
    during: Vec<String>,
    /// Outage in ms and requests lost; `None` if traffic did not resume.
    outage: Option<(f64, usize)>,
    /// Time from the restore until the route was direct again.
    back_direct: Option<Duration>,
    /// Requests lost from the restore on.
    lost_on_restore: usize,
}

impl Trial {
    fn row(&self, number: u32) -> String {
        if self.skipped {
            return format!(
                "| {number:>5} | skipped: the route to h1 was not direct before the cut (not cut) |"
            );
        }
        let outage = match self.outage {
            Some((ms, lost)) => format!("{ms:>9.0} | {lost:>4}"),
            None => format!("{:>9} | {:>4}", "no resume", "-"),
        };
        let back = self
            .back_direct
            .map_or("not yet".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
        format!(
            "| {number:>5} | {outage} | {:<14} | {back:>14} | {:>15} |",
            render_path(&self.during),
            self.lost_on_restore
        )
    }
}

/// Cuts h0–h1 under a ping stream, waits for traffic to resume, restores.
fn cut_trial(
    testbed: &Testbed,
    target_ip: IpAddr,
    number: u32,
    narrate: bool,
) -> anyhow::Result<Trial> {
    let (source, target) = (testbed.host(0), testbed.host(1));
    if number == 1 && !narrate {
        println!(
            "| trial | outage ms | lost | path during cut | back direct, s | lost on restore |"
        );
        println!(
            "|------:|----------:|-----:|:----------------|---------------:|----------------:|"
        );
    }
    // Only a cut of the path in use measures a failover.
    let direct = wait_direct(testbed, source, target.name(), DIRECT_TIMEOUT);
    let stream = source.ping_stream(target_ip, INTERVAL, STREAM_LIMIT);
    testbed.wait_until(BASELINE_TIMEOUT, "replies before the cut", || {
        Ok(stream.replies() >= BASELINE_REPLIES)
    })?;
    let before = current_path(source, target.name());
    if direct.is_err() || !is_direct(&before) {
        if narrate {
            println!(
                "the route to {} is {}, not direct: not cutting (nothing to measure)",
                target.name(),
                render_path(&before)
            );
        }
        drop(stream);
        return Ok(Trial {
            skipped: true,
            during: Vec::new(),
            outage: None,
            back_direct: None,
            lost_on_restore: 0,
        });
    }
    if narrate {
        println!("path before the cut: {}", render_path(&before));
        println!(
            "cutting {}–{} (ip route add blackhole in both namespaces) ...",
            source.name(),
            target.name()
        );
    }
    let cut = now();
    testbed.blackhole_pair(0, 1)?;
    // Requests sent while the routes went in may still have crossed directly.
    let cut_done = now();
    let resumed = testbed.wait_until(RESUME_TIMEOUT, "traffic to resume after the cut", || {
        Ok(stream.replies_sent_after(cut_done) > 0)
    });
    let during = if resumed.is_ok() {
        // Let the new path carry some traffic before looking at it.
        let settled = now();
        let _ = testbed.wait_until(BASELINE_TIMEOUT, "traffic on the new path", || {
            Ok(stream.replies_sent_after(settled) >= SETTLE_REPLIES)
        });
        current_path(source, target.name())
    } else {
        Vec::new()
    };
    let restore = now();
    testbed.unblackhole_pair(0, 1)?;
    if narrate {
        match &resumed {
            Ok(()) => println!("path after the cut:  {}", render_path(&during)),
            Err(_) => println!(
                "traffic did not resume within {} s",
                RESUME_TIMEOUT.as_secs()
            ),
        }
        println!("restoring {}–{} ...", source.name(), target.name());
    }
    let back_direct = wait_direct(testbed, source, target.name(), DIRECT_TIMEOUT)
        .ok()
        .map(|()| now().saturating_duration_since(restore));
    // Keep pinging a little on the direct path, to see what the switch back lost.
    let direct_at = now();
    let _ = testbed.wait_until(BASELINE_TIMEOUT, "traffic on the direct path", || {
        Ok(stream.replies_sent_after(direct_at) >= SETTLE_REPLIES)
    });
    let record = stream.stop()?;
    let outage =
        outage(&record.probes, cut, restore).map(|outage| (millis(outage.gap), outage.lost));
    let (_, lost_on_restore) = loss_between(&record.probes, restore, now());
    let trial = Trial {
        skipped: false,
        during,
        outage,
        back_direct,
        lost_on_restore,
    };
    if narrate {
        match trial.outage {
            Some((ms, lost)) => println!(
                "\noutage: {ms:.0} ms from the last reply before the cut to the first reply after it \
                 ({lost} requests lost, one every {} ms)",
                INTERVAL.as_millis()
            ),
            None => println!("\noutage: traffic did NOT resume"),
        }
        match trial.back_direct {
            Some(after) => println!(
                "path after the restore: {} ({:.1} s after the restore, {} requests lost on the way back)",
                render_path(&current_path(source, target.name())),
                after.as_secs_f64(),
                trial.lost_on_restore
            ),
            None => println!(
                "path after the restore: {} (not direct again within {} s)",
                render_path(&current_path(source, target.name())),
                DIRECT_TIMEOUT.as_secs()
            ),
        }
    }
    Ok(trial)
}

/// Result of the random-loss phase.
#[derive(Debug, Clone)]
struct LossPhase {
    percent: u8,
    /// When the route left the lossy link, after the loss began.
    switched_after: Option<Duration>,
    path: Vec<String>,
    /// (sent, lost) in the first 2 s after the loss began.
    early: (usize, usize),
    /// (sent, lost) from 2 s to the end of the window.
    late: (usize, usize),
}

/// Adds `percent` % random loss on h0–h1 for [`LOSS_WINDOW`] under a ping
/// stream; `None` (after a notice) if the route is not direct to begin with.
fn loss_phase(
    testbed: &Testbed,
    target_ip: IpAddr,
    percent: u8,
) -> anyhow::Result<Option<LossPhase>> {
    let (source, target) = (testbed.host(0), testbed.host(1));
    if wait_direct(testbed, source, target.name(), DIRECT_TIMEOUT).is_err() {
        println!(
            "
skipping the random-loss phase: the route to {} is {}, not direct, so loss on the \
             direct link would measure nothing",
            target.name(),
            render_path(&current_path(source, target.name()))
        );
        return Ok(None);
    }
    println!(
        "\nrandom loss: {percent} % of the packets between {} and {} dropped each way (nftables numgen) \
         for {} s, while {} pings {} every {} ms ...",
        source.name(),
        target.name(),
        LOSS_WINDOW.as_secs(),
        source.name(),
        target.name(),
        INTERVAL.as_millis()
    );
    let stream = source.ping_stream(target_ip, INTERVAL, LOSS_WINDOW + STREAM_SLACK);
    testbed.wait_until(BASELINE_TIMEOUT, "replies before the loss", || {
        Ok(stream.replies() >= BASELINE_REPLIES)
    })?;
    let start = now();
    let result = loss_window(testbed, &stream, percent, start);
    testbed.restore_pair(0, 1)?;
    let (switched_after, path) = result?;
    let record = stream.stop()?;
    let early = loss_between(&record.probes, start, start + LOSS_EARLY);
    let late = loss_between(&record.probes, start + LOSS_EARLY, start + LOSS_WINDOW);
    let phase = LossPhase {
        percent,
        switched_after,
        path,
        early,
        late,
    };
    println!(
        "  route left the lossy link after: {}; path: {}",
        phase
            .switched_after
            .map_or("never".to_owned(), |d| format!("{} ms", d.as_millis())),
        render_path(&phase.path)
    );
    println!(
        "  end-to-end loss: first {} s {}, then {}",
        LOSS_EARLY.as_secs(),
        percent_of(phase.early),
        percent_of(phase.late)
    );
    Ok(Some(phase))
}

/// Applies the loss and watches the route until the window ends; returns
/// when the route left the direct link, if it did, and the path at the end.
fn loss_window(
    testbed: &Testbed,
    stream: &PingStream,
    percent: u8,
    start: Instant,
) -> anyhow::Result<(Option<Duration>, Vec<String>)> {
    let (source, target) = (testbed.host(0), testbed.host(1));
    testbed.set_pair_loss(0, 1, percent)?;
    let mut switched = None;
    let end = start + LOSS_WINDOW;
    // A measurement window, not a test: poll until it has passed (the
    // switch time is known to within one poll, 100 ms).
    let _ = testbed.wait_until(
        LOSS_WINDOW + STREAM_SLACK,
        "the loss window to pass",
        || {
            if switched.is_none() && !is_direct(&current_path(source, target.name())) {
                switched = Some(now().saturating_duration_since(start));
            }
            Ok(now() >= end || stream.is_finished())
        },
    );
    Ok((switched, current_path(source, target.name())))
}

/// The idle probe cost, per neighbour and second, averaged over all hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct IdleCost {
    /// Probe bytes sent; `None` if the daemon has no such counter.
    probe_tx: Option<f64>,
    probe_rx: Option<f64>,
    /// Link-state bytes sent.
    lsa_tx: Option<f64>,
}

impl IdleCost {
    fn describe(&self) -> String {
        format!(
            "idle cost per neighbour: probes {} sent, {} received; link state {} sent",
            rate(self.probe_tx),
            rate(self.probe_rx),
            rate(self.lsa_tx)
        )
    }
}

fn idle_cost(
    testbed: &Testbed,
    window: Duration,
    interrupted: &AtomicBool,
) -> anyhow::Result<IdleCost> {
    let counters = ["probe_tx_bytes", "probe_rx_bytes", "lsa_tx_bytes"];
    let read = || -> anyhow::Result<Vec<Vec<Option<u64>>>> {
        testbed
            .hosts()
            .iter()
            .map(|host| {
                let status = host.status()?;
                Ok(counters
                    .iter()
                    .map(|name| status["stats"][*name].as_u64())
                    .collect())
            })
            .collect()
    };
    // The first seconds after the sessions come up carry the initial link
    // state flood and probes of links that count as active: let it pass.
    pause(IDLE_SETTLE, interrupted)?;
    let before = read()?;
    let start = now();
    pause(window, interrupted)?;
    let after = read()?;
    let seconds = now().saturating_duration_since(start).as_secs_f64();
    let neighbours = (testbed.hosts().len() - 1) as f64;
    let per_neighbour = |c: usize| -> Option<f64> {
        let mut total = 0.0;
        for (b, a) in before.iter().zip(&after) {
            total += a[c]?.saturating_sub(b[c]?) as f64;
        }
        Some(total / testbed.hosts().len() as f64 / neighbours / seconds)
    };
    Ok(IdleCost {
        probe_tx: per_neighbour(0),
        probe_rx: per_neighbour(1),
        lsa_tx: per_neighbour(2),
    })
}

/// Waits out a measurement window (not a test condition), watching for Ctrl-C.
fn pause(window: Duration, interrupted: &AtomicBool) -> anyhow::Result<()> {
    let start = now();
    while now() < start + window {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Waits until every host has link state from every other one (when the
/// daemon counts it in `lsa_received`).
fn wait_for_link_state(testbed: &Testbed) -> anyhow::Result<()> {
    let others = (testbed.hosts().len() - 1) as u64;
    testbed.wait_until(CONVERGE_TIMEOUT, "link state from every node", || {
        for host in testbed.hosts() {
            match host.status()?["stats"]["lsa_received"].as_u64() {
                Some(received) if received < others => return Ok(false),
                _ => {}
            }
        }
        Ok(true)
    })
}

/// Waits until `host`'s route to `destination` (latency) is direct.
fn wait_direct(
    testbed: &Testbed,
    host: &Host,
    destination: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    testbed.wait_until(
        timeout,
        &format!("{}'s route to {destination} to be direct", host.name()),
        || {
            Ok(host
                .route_path(destination, METRIC)?
                .is_some_and(|path| is_direct(&path)))
        },
    )
}

/// The path packets take now (the daemon's trace), or the routing table's
/// route if the daemon cannot trace; empty if neither answers.
fn current_path(host: &Host, destination: &str) -> Vec<String> {
    match host.trace(destination, METRIC) {
        Ok(trace) => path_names(&trace),
        Err(_) => host
            .route_path(destination, METRIC)
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}

fn is_direct(path: &[String]) -> bool {
    path.len() == 1
}

fn render_path(path: &[String]) -> String {
    match path {
        [] => "unknown".to_owned(),
        [destination] => format!("direct to {destination}"),
        _ => format!("via {}", path.join(" -> ")),
    }
}

fn summary(trials: &[Trial], cost: &IdleCost, loss: Option<&LossPhase>, n: usize) -> String {
    let skipped = trials.iter().filter(|trial| trial.skipped).count();
    let mut outages: Vec<f64> = trials
        .iter()
        .filter_map(|trial| trial.outage.map(|(ms, _)| ms))
        .collect();
    outages.sort_by(f64::total_cmp);
    let failed = trials.len() - skipped - outages.len();
    let median = median(&outages);
    let worst = if failed > 0 {
        None
    } else {
        outages.last().copied()
    };
    let mut lost: Vec<usize> = trials
        .iter()
        .filter_map(|trial| trial.outage.map(|(_, lost)| lost))
        .collect();
    lost.sort_unstable();
    let restore_lost: usize = trials.iter().map(|trial| trial.lost_on_restore).sum();
    let mut relays: Vec<String> = trials
        .iter()
        .filter(|trial| trial.during.len() > 1)
        .map(|trial| trial.during[..trial.during.len() - 1].join(" -> "))
        .collect();
    relays.sort();
    relays.dedup();

    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nfailover summary: {} cut(s) of h0–h1 on {n} nodes, h0 pinging h1 every {} ms",
        trials.len() - skipped,
        INTERVAL.as_millis()
    );
    if trials.is_empty() {
        let _ = writeln!(text, "(no cut trials were asked for)");
    }
    if skipped > 0 {
        let _ = writeln!(
            text,
            "{skipped} more trial(s) skipped: the route to h1 was not direct before the cut"
        );
    }
    let _ = writeln!(text, "\n| measure | result | target | met |");
    let _ = writeln!(text, "|:--|--:|:--|:--|");
    if !trials.is_empty() {
        let _ = writeln!(
            text,
            "| median outage (last reply before to first after) | {} | ≤ 300 ms | {} |",
            ms_or(median),
            met(median.map(|m| m <= 300.0))
        );
        let _ = writeln!(
            text,
            "| worst outage | {} | ≤ 1000 ms | {} |",
            if failed > 0 {
                format!("{failed} cut(s) did not recover")
            } else {
                ms_or(worst)
            },
            met(if failed > 0 {
                Some(false)
            } else {
                worst.map(|w| w <= 1000.0)
            })
        );
        let _ = writeln!(
            text,
            "| requests lost per cut (median / worst) | {} / {} | | |",
            median_usize(&lost).map_or("-".to_owned(), |m| m.to_string()),
            lost.last().map_or("-".to_owned(), ToString::to_string)
        );
        let _ = writeln!(
            text,
            "| requests lost switching back to direct (all trials) | {restore_lost} | | |"
        );
        let _ = writeln!(
            text,
            "| relay path(s) used during the cut | {} | | |",
            if relays.is_empty() {
                "-".to_owned()
            } else {
                relays.join(", ")
            }
        );
    }
    let _ = writeln!(
        text,
        "| idle probe bytes sent per neighbour | {} | ≤ 200 B/s | {} |",
        rate(cost.probe_tx),
        met(cost.probe_tx.map(|r| r <= 200.0))
    );
    let _ = writeln!(
        text,
        "| idle probe bytes received per neighbour | {} | | |",
        rate(cost.probe_rx)
    );
    let _ = writeln!(
        text,
        "| idle link-state bytes sent per neighbour | {} | | |",
        rate(cost.lsa_tx)
    );
    if let Some(loss) = loss {
        let late = loss_ratio(loss.late);
        let _ = writeln!(
            text,
            "| {} % loss on h0–h1: route left it after | {} | | |",
            loss.percent,
            loss.switched_after
                .map_or("never".to_owned(), |d| format!("{} ms", d.as_millis()))
        );
        let _ = writeln!(
            text,
            "| {} % loss on h0–h1: end-to-end loss, first {} s | {} | | |",
            loss.percent,
            LOSS_EARLY.as_secs(),
            percent_of(loss.early)
        );
        let _ = writeln!(
            text,
            "| {} % loss on h0–h1: end-to-end loss, {}–{} s | {} | < 1 % | {} |",
            loss.percent,
            LOSS_EARLY.as_secs(),
            LOSS_WINDOW.as_secs(),
            percent_of(loss.late),
            met(late.map(|l| l < 0.01))
        );
    }
    text.push('\n');
    text
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn median_usize(sorted: &[usize]) -> Option<usize> {
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

fn loss_ratio((sent, lost): (usize, usize)) -> Option<f64> {
    (sent > 0).then(|| lost as f64 / sent as f64)
}

fn percent_of(window: (usize, usize)) -> String {
    match loss_ratio(window) {
        Some(ratio) => format!("{:.1} % ({} of {})", ratio * 100.0, window.1, window.0),
        None => "-".to_owned(),
    }
}

fn ms_or(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |ms| format!("{ms:.0} ms"))
}

fn rate(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |bytes| format!("{bytes:.0} B/s"))
}

fn met(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "n/a",
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[allow(clippy::disallowed_methods)] // a CLI driver: real time is its input
fn now() -> Instant {
    Instant::now()
}

/// The traffic class of a plain ping.
const METRIC: &str = "latency";
/// Time between echo requests.
const INTERVAL: Duration = Duration::from_millis(10);
/// Longest a trial's ping stream runs.
const STREAM_LIMIT: Duration = Duration::from_secs(90);
/// Extra time a loss-phase stream may run past its window.
const STREAM_SLACK: Duration = Duration::from_secs(5);
/// Replies before the cut (about a second at 10 ms).
const BASELINE_REPLIES: usize = 100;
/// Replies on a new path before it is looked at.
const SETTLE_REPLIES: usize = 30;
const BASELINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Traffic that has not resumed this long after a cut counts as not resumed.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the route may take to return to the direct link.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long link state and first routes may take after the sessions are up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Quiet time before the idle probe cost is measured.
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// Loss phase: the window measured, and its early part (the target allows
/// the first two seconds).
const LOSS_WINDOW: Duration = Duration::from_secs(10);
const LOSS_EARLY: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(outage: Option<(f64, usize)>) -> Trial {
        Trial {
            skipped: false,
            during: vec!["h2".to_owned(), "h1".to_owned()],
            outage,
            back_direct: Some(Duration::from_secs(2)),
            lost_on_restore: 0,
        }
    }

    #[test]
    fn summary_reports_median_worst_and_targets() {
        let trials = [
            trial(Some((100.0, 9))),
            trial(Some((300.0, 29))),
            trial(Some((200.0, 19))),
        ];
        let cost = IdleCost {
            probe_tx: Some(138.0),
            probe_rx: Some(138.0),
            lsa_tx: None,
        };
        let text = summary(&trials, &cost, None, 4);
        assert!(text.contains("| 200 ms | ≤ 300 ms | yes |"), "{text}");
        assert!(text.contains("| 300 ms | ≤ 1000 ms | yes |"), "{text}");
        assert!(text.contains("| 19 / 29 |"), "{text}");
        assert!(text.contains("| 138 B/s | ≤ 200 B/s | yes |"), "{text}");
        assert!(text.contains("during the cut | h2 |"), "{text}");
        let failed = summary(&[trial(None), trial(Some((50.0, 4)))], &cost, None, 4);
        assert!(
            failed.contains("1 cut(s) did not recover | ≤ 1000 ms | NO |"),
            "{failed}"
        );
    }

    #[test]
    fn medians_and_paths_render() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 4.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 8.0]), Some(3.0));
        assert_eq!(median_usize(&[1, 5, 9, 10]), Some(5));
        assert_eq!(render_path(&["h1".to_owned()]), "direct to h1");
        assert_eq!(
            render_path(&["h3".to_owned(), "h1".to_owned()]),
            "via h3 -> h1"
        );
        assert_eq!(percent_of((200, 1)), "0.5 % (1 of 200)");
    }
}
