//! Failover scenarios of resilient routing: a cut link, a lossy link, a
//! slow link, a partition that heals, and a relay that crashes and
//! restarts, each under a steady packet stream whose fate is measured.
//!
//! Deterministic from the seed (override with `WEFT_SIM_SEED`); headline
//! numbers (outage, loss, latency) are printed and kept in
//! `tests/snapshots/failover.txt` (accept changes with `WEFT_SIM_BLESS=1`).
//! The budgets asserted come from issue 3: an outage under one second, and
//! under 1 % loss two seconds after a link starts losing 30 %.

#![allow(clippy::disallowed_methods)] // Instant::now: one base per test; everything after is virtual
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod common;

use weft_core::{LinkHealth, Metric, RouteError};
use weft_sim::{FlowSpec, LinkChange, LinkConfig, MeshBuilder};

use common::{
    converge, link_event, median, millis, ms, names, new_sim, path, path_changes, relayed,
    run_until_checked, secs, snapshot, trace,
};

/// DSCP AF11: bulk traffic, routed for loss.
const DSCP_BULK: u8 = 10;

#[test]
fn a_cut_link_is_routed_around_within_a_second_and_traffic_returns_when_it_heals() {
    let mut sim = new_sim(31);
    let mesh = MeshBuilder::new(4).build(&mut sim).unwrap();
    let [a, b, c, d] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2], mesh.hosts[3]];
    converge(&mut sim, &mesh.hosts, secs(10));

    let start = sim.elapsed();
    let cut_at = start + secs(2);
    let restore_at = cut_at + secs(3);
    let end = restore_at + secs(5);
    let flow = sim
        .start_flow(&FlowSpec::new(a, b).with_start(start).until(end))
        .unwrap();
    sim.schedule_link_change_both(cut_at, a, b, LinkChange::Down);
    sim.schedule_link_change_both(restore_at, a, b, LinkChange::Up);

    sim.run_until(cut_at - ms(1));
    assert_eq!(
        path(&sim, a, b, Metric::Latency),
        Some(names(&sim, &[b])),
        "direct while the link is up"
    );
    let relayed_before = [relayed(&sim, c), relayed(&sim, d)];

    // The cut.
    sim.run_until(cut_at + secs(1));
    let report = sim.flow(flow);
    let outage = report
        .outage_after(cut_at)
        .expect("traffic resumes after the cut");
    assert!(outage < secs(1), "outage {outage:?}");
    assert!(
        link_event(&sim, a, b, false, cut_at),
        "A reports the link down"
    );
    let via = path(&sim, a, b, Metric::Latency).expect("a path around the cut");
    assert!(
        via.len() == 2 && (via[0] == "n2" || via[0] == "n3") && via[1] == "n1",
        "relayed through n2 or n3: {via:?}"
    );
    // The flow sticks to one of the two equal relays (which one is the
    // flow's hash, not necessarily the relay `trace` names: see
    // routing.rs), and that relay carries every packet since the move.
    let carried = [
        relayed(&sim, c) - relayed_before[0],
        relayed(&sim, d) - relayed_before[1],
    ];
    let since_move = sim.flow(flow).window(cut_at, cut_at + secs(1)).delivered as u64;
    assert!(
        carried.contains(&0) && carried.iter().sum::<u64>() >= since_move,
        "one relay carries the flow: {carried:?}, {since_move} delivered"
    );
    let relay = if carried[0] > 0 { c } else { d };
    let changes = path_changes(&sim, a, b, Metric::Latency, cut_at);
    assert_eq!(
        changes.first().map(|c| (c.from.clone(), c.to.clone())),
        Some((names(&sim, &[b]), via.clone())),
        "A reports the move to the relay: {changes:?}"
    );
    assert_eq!(
        sim.peer_status(a, b).map(|p| (p.link, p.via)),
        Some((LinkHealth::Down, vec![via[0].clone()]))
    );

    // The restore.
    sim.run_until(restore_at + secs(4));
    assert_eq!(
        path(&sim, a, b, Metric::Latency),
        Some(names(&sim, &[b])),
        "direct again after the restore"
    );
    assert!(
        link_event(&sim, a, b, true, restore_at),
        "A reports the link up"
    );
    let back = path_changes(&sim, a, b, Metric::Latency, restore_at)
        .into_iter()
        .find(|c| c.to == names(&sim, &[b]))
        .expect("A reports the move back to direct");
    let back_after = back.at - restore_at;
    assert!(back_after < secs(3), "back to direct after {back_after:?}");
    let relay_count = relayed(&sim, relay);
    sim.run_until(end + ms(500));
    assert_eq!(
        relayed(&sim, relay),
        relay_count,
        "nothing goes through the relay once direct"
    );

    let report = sim.flow(flow);
    assert_eq!(
        report.window(start, cut_at - ms(20)).lost(),
        0,
        "no loss before the cut"
    );
    assert_eq!(
        report.window(restore_at, end).lost(),
        0,
        "no loss when the link comes back"
    );
    let lost = report.window(cut_at - ms(20), restore_at).lost();
    assert_eq!(sim.misdelivered(), 0);
    assert_eq!(sim.stats().timer_stalls, 0);
    snapshot(
        "failover",
        "cut_restore",
        &[
            ("outage_ms", millis(outage).to_string()),
            ("lost", lost.to_string()),
            ("back_direct_ms", millis(back_after).to_string()),
        ],
    );
}

#[test]
fn a_link_losing_30_percent_is_left_within_two_seconds_for_both_metrics() {
    let mut sim = new_sim(32);
    let mesh = MeshBuilder::new(4).build(&mut sim).unwrap();
    let [a, b] = [mesh.hosts[0], mesh.hosts[1]];
    converge(&mut sim, &mesh.hosts, secs(10));

    let start = sim.elapsed();
    let loss_at = start + secs(1);
    let measure_from = loss_at + secs(2);
    let end = loss_at + secs(6);
    let interactive = sim
        .start_flow(&FlowSpec::new(a, b).with_start(start).until(end))
        .unwrap();
    let bulk = sim
        .start_flow(
            &FlowSpec::new(a, b)
                .with_start(start)
                .with_port(10_001)
                .with_dscp(DSCP_BULK)
                .until(end),
        )
        .unwrap();
    sim.schedule_link_change_both(loss_at, a, b, LinkChange::Loss(0.3));
    // What A makes of the direct link's loss, sampled over the measured
    // window.
    sim.run_until(measure_from);
    let mut samples = Vec::new();
    while sim.elapsed() < end {
        sim.run_for(ms(100));
        samples.push(sim.peer_status(a, b).unwrap().loss);
    }
    sim.run_until(end + ms(500));

    let mut values = Vec::new();
    for (flow, metric) in [(interactive, Metric::Latency), (bulk, Metric::Loss)] {
        let report = sim.flow(flow);
        let settling = report.window(loss_at, measure_from);
        let measured = report.window(measure_from, end);
        assert!(
            measured.ratio() > 0.99,
            "{metric}: {} of {} lost after {measure_from:?} ({:.1} %); first 2 s lost {}",
            measured.lost(),
            measured.sent,
            measured.loss_percent(),
            settling.lost()
        );
        let route = path(&sim, a, b, metric).expect("a path");
        assert_eq!(route.len(), 2, "{metric}: relayed, not direct: {route:?}");
        values.push((metric, settling, measured));
    }
    // Probes cross the link both ways: about half of them are lost.
    let loss = samples.iter().sum::<f32>() / samples.len() as f32;
    assert!(loss >= 0.2, "A measures the direct link's loss: {loss}");
    assert_eq!(sim.misdelivered(), 0);
    snapshot(
        "failover",
        "lossy_30",
        &[
            ("latency_lost_first_2s", values[0].1.lost().to_string()),
            (
                "latency_loss_after_2s_pct",
                format!("{:.2}", values[0].2.loss_percent()),
            ),
            ("loss_lost_first_2s", values[1].1.lost().to_string()),
            ("measured_loss", format!("{loss:.2}")),
            (
                "loss_loss_after_2s_pct",
                format!("{:.2}", values[1].2.loss_percent()),
            ),
        ],
    );
}

#[test]
fn interactive_traffic_takes_a_faster_two_hop_path_over_a_slow_direct_link() {
    let mut sim = new_sim(33);
    let mesh = MeshBuilder::new(3).build(&mut sim).unwrap();
    let [a, b, c] = [mesh.hosts[0], mesh.hosts[1], mesh.hosts[2]];
    sim.set_link_both(a, b, LinkConfig::with_latency(ms(100)));
    sim.set_link_both(a, c, LinkConfig::with_latency(ms(5)));
    sim.set_link_both(c, b, LinkConfig::with_latency(ms(5)));
    converge(&mut sim, &mesh.hosts, secs(10));
    let two_hop = names(&sim, &[c, b]);
    assert!(
        sim.run_until_condition(secs(15), |s| {
            path(s, a, b, Metric::Latency).as_ref() == Some(&two_hop)
                && path(s, b, a, Metric::Latency) == Some(names(s, &[c, a]))
        }),
        "both ways take the two-hop path: {:?}",
        path(&sim, a, b, Metric::Latency)
    );
    let chosen_at = sim.elapsed();
    let route = trace(&sim, a, b, Metric::Latency).unwrap();
    // The trace shows each hop's RTT: about 10 ms per 5 ms link.
    for hop in &route.path {
        let rtt = hop.rtt.expect("each hop has an RTT");
        assert!(rtt >= ms(10) && rtt < ms(15), "{}: {rtt:?}", hop.name);
    }

    let start = sim.elapsed();
    let forward = sim
        .start_flow(&FlowSpec::new(a, b).with_start(start).with_count(200))
        .unwrap();
    let backward = sim
        .start_flow(&FlowSpec::new(b, a).with_start(start).with_count(200))
        .unwrap();
    sim.run_for(secs(3));
    let mut medians = Vec::new();
    for flow in [forward, backward] {
        let report = sim.flow(flow);
        assert_eq!(report.total().lost(), 0);
        let latencies = report.latencies(start, sim.elapsed());
        let worst = latencies.iter().max().copied().unwrap();
        assert!(worst < ms(20), "worst one-way latency {worst:?}");
        medians.push(median(latencies));
    }
    assert_eq!(sim.misdelivered(), 0);
    snapshot(
        "failover",
        "slow_direct",
        &[
            ("direct_one_way_ms", "100".to_owned()),
            ("chosen_after_ms", millis(chosen_at).to_string()),
            ("median_one_way_ms", millis(medians[0]).to_string()),
            (
                "loss_metric_hops",
                path(&sim, a, b, Metric::Loss)
                    .map_or(0, |p| p.len())
                    .to_string(),
            ),
        ],
    );
}

#[test]
fn a_partition_stops_cross_traffic_and_every_pair_reconnects_after_it_heals() {
    let mut sim = new_sim(34);
    let mesh = MeshBuilder::new(6).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    let (left, right) = hosts.split_at(3);
    converge(&mut sim, &hosts, secs(10));

    let start = sim.elapsed();
    let partition_at = start + secs(1);
    let heal_at = partition_at + secs(5);
    let end = heal_at + secs(5);
    let mut flows = Vec::new();
    for &from in &hosts {
        for &to in &hosts {
            if from != to {
                let spec = FlowSpec::new(from, to)
                    .with_start(start)
                    .with_interval(ms(100))
                    .until(end);
                let cross = left.contains(&from) != left.contains(&to);
                flows.push((from, to, cross, sim.start_flow(&spec).unwrap()));
            }
        }
    }
    for &l in left {
        for &r in right {
            sim.schedule_link_change_both(partition_at, l, r, LinkChange::Down);
            sim.schedule_link_change_both(heal_at, l, r, LinkChange::Up);
        }
    }

    sim.run_until(heal_at - ms(1));
    assert_eq!(sim.components(&hosts), vec![left.to_vec(), right.to_vec()]);
    for &l in left {
        for &r in right {
            for (from, to) in [(l, r), (r, l)] {
                let route = trace(&sim, from, to, Metric::Latency);
                // No path at all, or the last resort: straight to the peer
                // over the link that is down (it may only be lossy).
                let link_down = sim.node(from).is_some_and(|node| {
                    node.peers(sim.now()).iter().any(|p| {
                        p.name.as_deref() == Some(sim.name(to)) && p.link == LinkHealth::Down
                    })
                });
                let last_resort = matches!(&route, Ok(r) if r.path.len() == 1) && link_down;
                assert!(
                    matches!(route, Err(RouteError::Unreachable(_))) || last_resort,
                    "{} -> {} during the partition: {route:?}",
                    sim.name(from),
                    sim.name(to)
                );
            }
        }
    }

    sim.run_until(end + ms(500));
    let mut failed = 0;
    let mut worst_reconnect = std::time::Duration::ZERO;
    for &(from, to, cross, flow) in &flows {
        let report = sim.flow(flow);
        let label = format!("{} -> {}", sim.name(from), sim.name(to));
        if !cross {
            assert_eq!(report.total().lost(), 0, "{label}: same side, nothing lost");
            continue;
        }
        let during = report.window(partition_at, heal_at);
        assert_eq!(during.delivered, 0, "{label}: nothing crosses a partition");
        failed += during.lost();
        let whole = report
            .whole_from(heal_at, end)
            .unwrap_or_else(|| panic!("{label}: traffic never came back"));
        let reconnect = whole - heal_at;
        assert!(reconnect <= secs(3), "{label}: back after {reconnect:?}");
        worst_reconnect = worst_reconnect.max(reconnect);
    }
    assert_eq!(sim.misdelivered(), 0);
    assert_eq!(sim.stats().timer_stalls, 0);
    snapshot(
        "failover",
        "partition_heal",
        &[
            ("cross_failed", failed.to_string()),
            ("worst_reconnect_ms", millis(worst_reconnect).to_string()),
        ],
    );
}

#[test]
fn traffic_leaves_a_crashed_relay_and_the_restarted_relay_carries_it_again() {
    let mut sim = new_sim(35);
    let mesh = MeshBuilder::new(4).build(&mut sim).unwrap();
    let hosts = mesh.hosts.clone();
    let [a, b] = [hosts[0], hosts[1]];
    converge(&mut sim, &hosts, secs(10));
    sim.cut(a, b);
    assert!(
        sim.run_until_condition(sim.elapsed() + secs(5), |s| {
            path(s, a, b, Metric::Latency).is_some_and(|p| p.len() == 2)
        }),
        "A routes around the cut"
    );
    // Both relays known as equal paths before the flow starts: a flow is
    // mapped onto the path set by its hash, and a set that grows moves it.
    assert!(
        sim.run_until_condition(sim.elapsed() + secs(5), |s| {
            trace(s, a, b, Metric::Latency).is_ok_and(|r| r.alternates == 1)
        }),
        "the second relay becomes an alternate"
    );
    let relays = [hosts[2], hosts[3]];
    let before = relays.map(|r| relayed(&sim, r));

    let start = sim.elapsed();
    let crash_at = start + secs(1);
    let restart_at = crash_at + secs(3);
    // Longer than the link-state lifetime: whatever the others knew about
    // the relay before its crash has expired; only what it advertised
    // since its restart lets them use it. Then the relay carrying the flow
    // crashes: one of the two is the restarted relay.
    let crash2_at = restart_at + secs(40);
    let end = crash2_at + secs(2);
    let flow = sim
        .start_flow(
            &FlowSpec::new(a, b)
                .with_start(start)
                .with_interval(ms(20))
                .until(end),
        )
        .unwrap();

    sim.run_until(crash_at);
    // The relay the flow sticks to (of two equal ones).
    let carried = [0, 1].map(|i| relayed(&sim, relays[i]) - before[i]);
    assert!(
        carried.contains(&0) && carried.iter().sum::<u64>() >= 40,
        "{carried:?}"
    );
    let (first, second) = if carried[0] > 0 {
        (relays[0], relays[1])
    } else {
        (relays[1], relays[0])
    };
    sim.crash(first).unwrap();
    let second_before = relayed(&sim, second);
    sim.run_until(crash_at + secs(1));
    let outage_crash = sim
        .flow(flow)
        .outage_after(crash_at)
        .expect("traffic resumes after the crash");
    assert!(outage_crash < secs(1), "outage {outage_crash:?}");
    assert_eq!(
        path(&sim, a, b, Metric::Latency),
        Some(names(&sim, &[second, b])),
        "through the other relay"
    );
    assert!(relayed(&sim, second) > second_before);

    sim.run_until(restart_at);
    sim.restart(first).unwrap();
    let rejoined = run_until_checked(&mut sim, restart_at + secs(5), ms(10), |s| {
        common::routing_converged(s, &hosts)
            && path(s, a, first, Metric::Latency) == Some(names(s, &[first]))
    });
    assert!(rejoined, "the restarted relay rejoins");
    let rejoin = sim.elapsed() - restart_at;

    // Whichever relay the flow sticks to now, crash it: if that is the
    // restarted one, it already carries the flow; if not, it must take it.
    sim.run_until(crash2_at - secs(1));
    let before = relays.map(|r| relayed(&sim, r));
    sim.run_until(crash2_at);
    let carried = [0, 1].map(|i| relayed(&sim, relays[i]) - before[i]);
    assert!(
        carried.contains(&0) && carried.iter().sum::<u64>() >= 40,
        "{carried:?}"
    );
    let (carrier, survivor) = if carried[0] > 0 {
        (relays[0], relays[1])
    } else {
        (relays[1], relays[0])
    };
    let survivor_before = relayed(&sim, survivor);
    sim.crash(carrier).unwrap();
    sim.run_until(crash2_at + secs(1));
    let outage_crash2 = sim
        .flow(flow)
        .outage_after(crash2_at)
        .expect("traffic resumes through the other relay");
    assert!(outage_crash2 < secs(1), "outage {outage_crash2:?}");
    assert_eq!(
        path(&sim, a, b, Metric::Latency),
        Some(names(&sim, &[survivor, b]))
    );
    assert!(
        relayed(&sim, survivor) >= survivor_before + 40,
        "{} carries the flow",
        sim.name(survivor)
    );
    sim.run_until(end + ms(500));
    let report = sim.flow(flow);
    assert_eq!(
        report.window(crash2_at + secs(1), end).lost(),
        0,
        "steady after the second failover"
    );
    assert_eq!(sim.misdelivered(), 0);
    snapshot(
        "failover",
        "relay_crash_restart",
        &[
            ("outage_crash_ms", millis(outage_crash).to_string()),
            ("rejoin_ms", millis(rejoin).to_string()),
            (
                "second_crash",
                if carrier == first {
                    "restarted"
                } else {
                    "other"
                }
                .to_owned(),
            ),
            ("outage_crash2_ms", millis(outage_crash2).to_string()),
            ("lost", report.total().lost().to_string()),
        ],
    );
}
