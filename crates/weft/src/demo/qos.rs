//! `weft demo --scenario qos`: realtime traffic through a saturated
//! bottleneck, without and with weft's QoS, as a before/after table.
//!
//! h0's underlay egress becomes a 20 Mbit/s bottleneck (`tc tbf`, 100 ms
//! of queue). A realtime stream (an EF-marked UDP datagram every 20 ms,
//! echoed by h1) is timed on the idle link and while `iperf3` pushes TCP
//! from h0 to h1 as fast as it can: first with QoS off, then with `[qos]
//! uplink = "19mbit"` on h0 and h1, so that the queue forms inside weft,
//! where realtime goes first. Then a class capped at 5 Mbit/s is offered
//! 10 Mbit/s of UDP, and (with 3 nodes or more) h2, a peer h0 limits to
//! 4 Mbit/s, 8 Mbit/s. The measurement is the real-host test's
//! (`testbed::run_qos_experiment`); the demo prints what it found and the
//! `weft qos` table of h0. Succeeds when the targets hold: no
//! realtime loss under load with QoS on, p99 within 5 ms of idle, the
//! limits within 5 %.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;

use crate::testbed::{QosPlan, QosReport, Testbed, run_qos_experiment};

/// Sessions come back this soon after a daemon restarts with a new config.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the scenario on a test bed whose sessions are up; returns whether
/// the targets were met.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub(super) fn run(testbed: &Testbed, interrupted: &AtomicBool) -> anyhow::Result<bool> {
    let mut plan = QosPlan::default();
    if testbed.hosts().len() < 3 {
        plan.limited_peer = None;
    }
    println!(
        "\nQoS: h0's underlay egress is now a {} bottleneck with {} ms of queue (tc tbf).",
        plan.link_rate,
        plan.link_queue.as_millis()
    );
    let report = run_qos_experiment(testbed, &plan, ESTABLISH_TIMEOUT, |step| {
        println!("  {step}");
    })?;
    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    println!("\n{}", report.render());
    if let Some(info) = report.phases.last().and_then(|p| p.qos.as_ref()) {
        println!(
            "$ weft qos      (on h0, just before the bulk transfer ended, QoS on)\n{}",
            crate::qos::render_table(info)
        );
    }
    let met = targets_met(&report);
    println!("{}", explanation(&plan));
    println!(
        "{}",
        if met {
            "the targets held: no realtime loss and p99 within 5 ms of idle under load with QoS on; the limits within 5 %."
        } else {
            "some targets did not hold (see the table above)."
        }
    );
    Ok(met)
}

/// The targets: with QoS on, no realtime loss under load, p99 at
/// most idle p99 + 5 ms; the capped class and the limited peer within 5 %
/// of their limits.
pub(super) fn targets_met(report: &QosReport) -> bool {
    let realtime = report.phases.iter().filter(|p| p.qos_on).all(|p| {
        match (p.idle.quantile(0.99), p.loaded.quantile(0.99)) {
            (Some(idle), Some(loaded)) => {
                p.loaded.lost() == 0 && loaded <= idle + Duration::from_millis(5)
            }
            _ => false,
        }
    });
    let limits = report
        .cap
        .iter()
        .chain(&report.peer)
        .all(|c| c.error().abs() <= 0.05);
    realtime && limits
}

fn explanation(plan: &QosPlan) -> String {
    format!(
        "\nWhat you just saw:\n\
         - Without QoS, weft sends every packet at once, so the queue forms in front of the bottleneck\n  \
           (the tbf here; a modem's buffer on a real uplink), where realtime waits behind bulk.\n\
         - With [qos] uplink = \"{uplink}\", a little below the bottleneck's {link}, weft's egress shaper\n  \
           keeps the bottleneck's queue empty: packets wait inside weft instead, in one queue per class.\n  \
           The realtime class (DSCP EF here, by weft's default RFC 4594 rules) goes first, capped at\n  \
           30 % of the uplink so it cannot starve the rest; bulk (a port rule: iperf3's {bulk}) shares the\n  \
           remainder by weight, and CoDel keeps its queue near 5 ms, so TCP slows down instead of\n  \
           filling it.\n\
         - The class capped at {cap} held its rate although the link had room{peer}: limits are hard,\n  \
           counted in underlay bytes (sealed datagram plus IP and UDP headers), as tc counts them.\n\
         - `weft qos` (or `weft status --qos`) shows each class's rate, queue, delay and drops.\n",
        uplink = plan.uplink,
        link = plan.link_rate,
        bulk = crate::testbed::BULK_PORT,
        cap = plan.capped_rate,
        peer = plan
            .limited_peer
            .map(|i| format!(
                ", and so did all traffic to h{i}, limited to {} with [[qos.peers]]",
                plan.peer_rate
            ))
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testbed::{CapResult, Iperf3Result, QosPhase, RealtimeRecord};

    fn report(loaded_ms: u64, lost: bool, cap_bps: f64) -> QosReport {
        let record = |ms: u64, sent: usize| RealtimeRecord {
            sent,
            rtts: vec![Duration::from_millis(ms); 100],
        };
        let bulk = Iperf3Result {
            received_bps: 17e6,
            received_bytes: 1,
            seconds: 10.0,
            lost: 0,
        };
        QosReport {
            link_bps: 20_000_000,
            uplink_bps: 19_000_000,
            interval: Duration::from_millis(20),
            phases: vec![QosPhase {
                qos_on: true,
                idle: record(1, 100),
                loaded: record(loaded_ms, if lost { 101 } else { 100 }),
                bulk,
                qos: None,
                bottleneck: String::new(),
            }],
            cap: Some(CapResult {
                what: "class capped".into(),
                cap_bps: 5_000_000,
                offered_bps: 10_000_000,
                received: bulk,
                received_underlay_bps: cap_bps,
                weft_class_bps: None,
            }),
            peer: None,
        }
    }

    #[test]
    fn targets_need_no_loss_a_p99_within_5_ms_and_the_cap_within_5_percent() {
        assert!(targets_met(&report(6, false, 5.1e6)));
        assert!(!targets_met(&report(7, false, 5.1e6)));
        assert!(!targets_met(&report(2, true, 5.1e6)));
        assert!(!targets_met(&report(2, false, 5.3e6)));
        let table = report(2, false, 5.1e6).render();
        assert!(table.contains("on 19M"), "{table}");
        assert!(table.contains("class capped: limit 5.00 Mbit/s"), "{table}");
        assert!(table.contains("+2.00 % of the limit"), "{table}");
    }
}
