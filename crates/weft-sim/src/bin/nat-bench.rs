//! `nat-bench`: NAT traversal between whole nodes in the simulator, measured.
//!
//! For each pair of NAT routers (the simulator's: port-restricted filtering,
//! unsolicited packets dropped, no hairpinning), members a and b behind
//! them and a public member r they both reach (`weft_sim::nat_world`), a
//! 10 ms flow runs from a to b. The bench reports how the pair ends up
//! (direct, punched, over the LAN or relayed), when the direct path took
//! over, how many packets were lost on the relay→direct switch, and, for
//! pairs that go direct, what a's router forgetting its mappings costs
//! (packets lost, when every packet arrived again, when the path was
//! direct again). Last, the
//! cost of keeping an idle punched link open. Prints a Markdown table;
//! `bench/nat.sh` runs it and docs/BENCHMARKS.md records it. Simulated
//! whole nodes, not real daemons or real NATs.

#![allow(clippy::print_stdout)] // a benchmark prints its table

use std::time::{Duration, Instant};

use clap::Parser;
use weft_core::PathKind;
use weft_sim::nat_world::NatWorld;
use weft_sim::{NatId, NatMapping, Sim};

#[derive(Parser, Debug)]
#[command(about = "NAT traversal between whole weft nodes in the simulator")]
struct Args {
    /// Seed of the simulator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const STEP: Duration = Duration::from_millis(10);

fn run_until(sim: &mut Sim, deadline: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
    while !done(sim) {
        if sim.elapsed() >= deadline {
            return false;
        }
        let next = (sim.elapsed() + STEP).min(deadline);
        sim.run_until(next);
    }
    true
}

fn kind_name(kind: Option<PathKind>) -> &'static str {
    match kind {
        Some(PathKind::Direct) => "direct",
        Some(PathKind::DirectLan) => "direct-lan",
        Some(PathKind::Punched) => "punched",
        Some(PathKind::Relayed) => "relayed",
        Some(PathKind::None) | None => "none",
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// One row: how the pair ends up and what switching cost.
fn pair(seed: u64, name: &str, a: NatMapping, b: Option<NatMapping>) -> Result<String, String> {
    #[allow(clippy::disallowed_methods)] // the simulator needs a base instant
    let mut sim = Sim::new(Instant::now(), seed);
    let w = NatWorld::build(&mut sim, a, b).map_err(|e| e.to_string())?;
    if !run_until(&mut sim, Duration::from_secs(20), |s| w.settled(s)) {
        return Err(format!("{name}: a and b never settled"));
    }
    let start = sim.elapsed();
    let f = w
        .flow(&mut sim, Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let straight = |s: &Sim| w.a_goes_straight_to_b(s);
    let direct_at = run_until(&mut sim, start + Duration::from_secs(10), straight)
        .then(|| sim.elapsed() - start);
    let first_kind = NatWorld::path_kind(&sim, w.a, w.b);
    let (reboot_lost, whole_again, again) = match direct_at {
        Some(_) => {
            sim.run_until(sim.elapsed() + Duration::from_secs(2));
            let reboot = sim.elapsed();
            sim.reboot_nat(NatId(0));
            // Did the path leave the direct link, and when was it back?
            let mut left = false;
            let mut back = None;
            let until = reboot + Duration::from_secs(15);
            while sim.elapsed() < until {
                sim.run_until(sim.elapsed() + STEP);
                if !straight(&sim) {
                    left = true;
                } else if left {
                    back = Some(sim.elapsed() - reboot);
                    break;
                }
            }
            let end = start + Duration::from_secs(31);
            sim.run_until(end);
            let report = sim.flow(f);
            let lost = report.window(reboot, end).lost();
            let whole = if lost == 0 {
                "never broken".to_owned()
            } else {
                report
                    .whole_from(reboot, end)
                    .map_or("not by the end".into(), |at| ms(at - reboot))
            };
            let again = match (left, back) {
                (false, _) => "stayed direct".to_owned(),
                (true, Some(at)) => ms(at),
                (true, None) => "not within 15 s".to_owned(),
            };
            (lost.to_string(), whole, again)
        }
        None => {
            sim.run_until(start + Duration::from_secs(31));
            ("–".into(), "–".into(), "–".into())
        }
    };
    let report = sim.flow(f);
    let switch_lost = match direct_at {
        Some(at) => report
            .window(Duration::ZERO, start + at + Duration::from_secs(2))
            .lost(),
        None => report.total().lost(),
    };
    let first = report
        .arrived
        .first()
        .copied()
        .flatten()
        .zip(report.sent.first())
        .map_or("lost".into(), |(arrived, sent)| ms(arrived - *sent));
    Ok(format!(
        "| {name} | {} | {} | {first} | {switch_lost} | {reboot_lost} | {whole_again} | {again} |",
        kind_name(first_kind),
        direct_at.map_or("never (relayed)".into(), ms),
    ))
}

/// Bytes a second that keep an idle punched link open, both directions,
/// on the wire (UDP payload plus 28 bytes of IPv4 and UDP headers).
fn idle_keepalive(seed: u64) -> Result<String, String> {
    #[allow(clippy::disallowed_methods)] // the simulator needs a base instant
    let mut sim = Sim::new(Instant::now(), seed);
    let eim = NatMapping::EndpointIndependent;
    let w = NatWorld::build(&mut sim, eim, Some(eim)).map_err(|e| e.to_string())?;
    if !run_until(&mut sim, Duration::from_secs(20), |s| w.settled(s)) {
        return Err("idle: a and b never settled".into());
    }
    w.flow(&mut sim, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let deadline = sim.elapsed() + Duration::from_secs(5);
    if !run_until(&mut sim, deadline, |s| {
        NatWorld::path_kind(s, w.a, w.b) == Some(PathKind::Punched)
    }) {
        return Err("idle: never punched".into());
    }
    sim.run_until(sim.elapsed() + Duration::from_secs(5));
    let window = Duration::from_secs(120);
    let captures = [sim.capture(w.a, w.b), sim.capture(w.b, w.a)];
    sim.run_until(sim.elapsed() + window);
    let (mut keepalive, mut all) = (0usize, 0usize);
    for c in captures {
        sim.stop_capture(c);
        for d in sim.captured(c) {
            let wire = d.bytes.len() + 28;
            all += wire;
            // Probes and answers (41 bytes) and keepalives (33).
            if d.bytes.len() == 41 || d.bytes.len() == 33 {
                keepalive += wire;
            }
        }
    }
    let per_second = |b: usize| b as f64 / window.as_secs_f64();
    Ok(format!(
        "idle punched link over {} s: keepalive {:.1} B/s on the wire (both directions), all traffic on the link {:.1} B/s; still {}",
        window.as_secs(),
        per_second(keepalive),
        per_second(all),
        kind_name(NatWorld::path_kind(&sim, w.a, w.b)),
    ))
}

fn main() {
    let args = Args::parse();
    let eim = NatMapping::EndpointIndependent;
    let symmetric = NatMapping::Symmetric;
    println!(
        "| NATs (a / b) | a's path to b | direct after | first packet | lost until 2 s after the switch | lost after a's router reboots | every packet arriving again after | direct again after |"
    );
    println!("| --- | --- | --- | --- | ---: | ---: | --- | --- |");
    let cases = [
        (
            "endpoint-independent / endpoint-independent",
            eim,
            Some(eim),
        ),
        ("one router, one LAN", eim, None),
        ("symmetric / endpoint-independent", symmetric, Some(eim)),
        ("symmetric / symmetric", symmetric, Some(symmetric)),
    ];
    for (name, a, b) in cases {
        match pair(args.seed, name, a, b) {
            Ok(row) => println!("{row}"),
            Err(error) => eprintln!("{error}"),
        }
    }
    match idle_keepalive(args.seed) {
        Ok(line) => println!("\n{line}"),
        Err(error) => eprintln!("{error}"),
    }
}
