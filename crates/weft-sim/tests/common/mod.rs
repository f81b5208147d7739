//! Helpers shared by the routing scenarios (failover.rs, routing.rs,
//! mesh.rs): simulator set-up, waiting for routing to converge, reading
//! paths, path changes and counters, and the snapshot table.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use weft_core::{Event, Metric, RouteError, RouteStatus, SessionState};
use weft_sim::{HostId, Sim, check_snapshot, seed_from_env, snapshot_line};

pub(crate) fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .with_ansi(false)
        .without_time()
        .try_init();
}

pub(crate) fn new_sim(default_seed: u64) -> Sim {
    init_logs();
    Sim::new(Instant::now(), seed_from_env(default_seed))
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// Runs in steps of `step` until `condition` holds or `deadline` passes
/// (for conditions too costly to check after every event).
pub(crate) fn run_until_checked(
    sim: &mut Sim,
    deadline: Duration,
    step: Duration,
    mut condition: impl FnMut(&Sim) -> bool,
) -> bool {
    loop {
        if condition(sim) {
            return true;
        }
        if sim.elapsed() >= deadline {
            return false;
        }
        let next = (sim.elapsed() + step).min(deadline);
        sim.run_until(next);
    }
}

/// Whether every running host in `hosts` has a session with every other
/// running one and a measured latency route to each (a cost from link
/// state and an RTT for every hop; before that, routes are only the
/// direct fallback).
pub(crate) fn routing_converged(sim: &Sim, hosts: &[HostId]) -> bool {
    let now = sim.now();
    hosts.iter().all(|&host| {
        let Some(node) = sim.node(host) else {
            return true;
        };
        let established: BTreeSet<_> = node
            .peers(now)
            .into_iter()
            .filter(|p| p.state == SessionState::Established)
            .filter_map(|p| p.node_id)
            .collect();
        let routed: BTreeSet<_> = node
            .routes(now)
            .into_iter()
            .filter(|r| {
                r.metric == Metric::Latency
                    && r.cost > 0
                    && !r.path.is_empty()
                    && r.path.iter().all(|h| h.rtt.is_some())
            })
            .map(|r| r.destination)
            .collect();
        hosts
            .iter()
            .filter(|&&h| h != host && sim.is_running(h))
            .all(|&h| {
                let id = sim.node_id(h);
                established.contains(&id) && routed.contains(&id)
            })
    })
}

/// Waits until sessions and routes are up between all `hosts`.
pub(crate) fn converge(sim: &mut Sim, hosts: &[HostId], deadline: Duration) {
    let converged = run_until_checked(sim, deadline, ms(50), |s| routing_converged(s, hosts));
    let routes: Vec<(String, usize)> = hosts
        .iter()
        .filter_map(|&h| Some((sim.name(h).to_owned(), sim.node(h)?.routes(sim.now()).len())))
        .collect();
    assert!(
        converged,
        "routing did not converge by {deadline:?}: routes per node {routes:?}"
    );
}

/// The route packets from `from` to `to` take now under `metric`.
pub(crate) fn trace(
    sim: &Sim,
    from: HostId,
    to: HostId,
    metric: Metric,
) -> Result<RouteStatus, RouteError> {
    let node = sim.node(from).expect("the tracing host runs");
    node.trace(sim.now(), sim.name(to), metric)
}

/// The names along the path from `from` to `to` (ending with `to`), or
/// `None` if there is none.
pub(crate) fn path(sim: &Sim, from: HostId, to: HostId, metric: Metric) -> Option<Vec<String>> {
    trace(sim, from, to, metric)
        .ok()
        .map(|r| r.path.into_iter().map(|h| h.name).collect())
}

pub(crate) fn names(sim: &Sim, hosts: &[HostId]) -> Vec<String> {
    hosts.iter().map(|&h| sim.name(h).to_owned()).collect()
}

/// The host called `name`.
pub(crate) fn host_named(sim: &Sim, name: &str) -> HostId {
    sim.hosts()
        .find(|&h| sim.name(h) == name)
        .unwrap_or_else(|| panic!("no host called {name}"))
}

/// A path change `host` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathChange {
    pub(crate) at: Duration,
    pub(crate) from: Vec<String>,
    pub(crate) to: Vec<String>,
}

/// The path changes `host` reported for `destination` under `metric`, at
/// or after `since`.
pub(crate) fn path_changes(
    sim: &Sim,
    host: HostId,
    destination: HostId,
    metric: Metric,
    since: Duration,
) -> Vec<PathChange> {
    let id = sim.node_id(destination);
    sim.events(host)
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(at, event)| match event {
            Event::PathChanged {
                destination,
                metric: m,
                from,
                to,
                ..
            } if *destination == id && *m == metric => Some(PathChange {
                at: *at,
                from: from.clone(),
                to: to.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Whether `host` reported its direct link to `peer` down (or up) at or
/// after `since`.
pub(crate) fn link_event(sim: &Sim, host: HostId, peer: HostId, up: bool, since: Duration) -> bool {
    let id = sim.node_id(peer);
    sim.events(host)
        .iter()
        .filter(|(at, _)| *at >= since)
        .any(|(_, event)| match event {
            Event::LinkUp { peer, .. } => up && *peer == id,
            Event::LinkDown { peer, .. } => !up && *peer == id,
            _ => false,
        })
}

/// A counter of the host's node; panics if the node has no such counter.
pub(crate) fn counter(sim: &Sim, host: HostId, name: &str) -> u64 {
    sim.counter(host, name)
        .unwrap_or_else(|| panic!("{} has no counter '{name}'", sim.name(host)))
}

/// Packets the host forwarded for others.
pub(crate) fn relayed(sim: &Sim, host: HostId) -> u64 {
    counter(sim, host, "relayed")
}

/// Prints a headline line and compares it with the snapshot table
/// `tests/snapshots/<table>.txt`.
pub(crate) fn snapshot(table: &str, key: &str, values: &[(&str, String)]) {
    let line = snapshot_line(key, values);
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{table}.txt"));
    if let Err(e) = check_snapshot(&path, key, &line) {
        panic!("{}: {e}", path.display());
    }
}

/// The median of some durations (zero for none).
pub(crate) fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}
