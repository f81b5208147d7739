//! The DHT at 1,000 nodes, in CI: the small brother of `dht-bench`'s
//! 10,000-node benchmark (issue 4, item 7).
//!
//! Every node bootstraps from one random earlier node; then lookups by id,
//! name and overlay address go from random nodes to random nodes, without
//! churn (all must succeed, in at most 4 hops on average) and with a fifth
//! of the nodes leaving and as many joining (at least 99 % must succeed).
//! The same seed must give the same run (checked on a 200-node network with
//! churn: two 1,000-node runs more would double this file's time). No
//! assertion here depends on wall time. `WEFT_SIM_SEED` replays another
//! seed.

use std::time::Instant;

use weft_sim::{DhtReport, DhtScenario, markdown_table, run_dht_scenario, seed_from_env};

const NODES: usize = 1_000;
const LOOKUPS: usize = 300;

fn scenario(churn: f64) -> DhtScenario {
    let mut sc = DhtScenario::new(NODES, LOOKUPS, seed_from_env(4));
    sc.churn = churn;
    sc.rtt_samples = 20_000;
    // Same results, less CPU (each certificate's CA signature is checked
    // once, not once per engine): this test measures no memory.
    sc.shared_certificate_cache = true;
    sc
}

#[allow(clippy::print_stdout)] // the table, for `--nocapture`
fn run(sc: &DhtScenario) -> DhtReport {
    #[allow(clippy::disallowed_methods)] // the simulation's base instant
    let base = Instant::now();
    let report = run_dht_scenario(base, sc, &mut |_| {}).unwrap_or_else(|e| {
        panic!("seed {}: {e}", sc.seed);
    });
    println!(
        "seed {}, churn {}:\n{}",
        sc.seed,
        sc.churn,
        markdown_table(&report.rows())
    );
    for failure in &report.failures {
        println!("failed: {failure}");
    }
    report
}

#[test]
fn every_lookup_succeeds_in_a_thousand_node_network() {
    let r = run(&scenario(0.0));
    let seed = r.seed;
    assert!(
        r.lookups >= LOOKUPS * 9 / 10,
        "seed {seed}: {} lookups started",
        r.lookups
    );
    assert_eq!(r.ok, r.lookups, "seed {seed}: {r:?}");
    assert!(r.hops_mean <= 4.0, "seed {seed}: mean hops {}", r.hops_mean);
    assert!(
        r.by_kind.iter().all(|k| k.started > 0),
        "seed {seed}: {:?}",
        r.by_kind
    );
    assert_eq!(r.joined_events, NODES, "seed {seed}: not every node joined");
    assert_eq!(
        r.components,
        vec![NODES],
        "seed {seed}: islands in the contact graph"
    );
    assert_eq!(r.unreferenced, 0, "seed {seed}: nodes in no routing table");
}

#[test]
fn lookups_survive_a_fifth_of_the_nodes_churning() {
    let sc = scenario(0.2);
    let r = run(&sc);
    let seed = r.seed;
    assert_eq!(r.left, NODES / 5, "seed {seed}");
    assert_eq!(r.joined_late, NODES / 5, "seed {seed}");
    assert!(
        r.dropped_dead > 0,
        "seed {seed}: departed nodes were never asked"
    );
    assert!(
        r.lookups >= LOOKUPS * 9 / 10,
        "seed {seed}: {} lookups started",
        r.lookups
    );
    assert!(
        r.success_percent() >= 99.0,
        "seed {seed}: {:.2} % success: {r:?}",
        r.success_percent()
    );
    assert!(r.hops_mean <= 4.0, "seed {seed}: mean hops {}", r.hops_mean);
}

#[test]
fn the_same_seed_gives_the_same_run() {
    // Smaller than the others (the 1,000-node runs cost most of this file's
    // time), but with every phase: joins, churn, lookups.
    let mut sc = scenario(0.2);
    sc.nodes = 200;
    sc.lookups = 100;
    let first = run(&sc);
    let again = run(&sc);
    assert_eq!(first.digest, again.digest, "seed {}", sc.seed);
    assert_eq!(first, again, "seed {}", sc.seed);
    sc.seed += 1;
    let other = run(&sc);
    assert_ne!(
        first.digest,
        other.digest,
        "seeds {} and {}",
        sc.seed - 1,
        sc.seed
    );
}
