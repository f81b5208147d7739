//! `weft demo --scenario discovery`: nodes that know one bootstrap endpoint.
//!
//! Every node's config names no peers, only h0's underlay endpoint as its
//! DHT bootstrap, and keeps at most two neighbours of its own choosing, so
//! most pairs have never met. The demo then shows: the nodes joining the
//! DHT; `weft lookup` of the last node from h0, with the queries it took;
//! every node pinging every other by the overlay address a lookup returned
//! (sessions made on demand, the first packets queued meanwhile); and the
//! same again after h0, the bootstrap node, has been killed, which changes
//! nothing: there is no central server.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use super::{every_pair_replied, ping_matrix, render_matrix};
use crate::lookup::{LookupInfo, render_lookup};
use crate::testbed::Testbed;

/// Longest wait for every node to have DHT contacts.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The extra config of every node: a small neighbourhood, so that most
/// pairs meet only through lookups.
pub(super) const NEIGHBOURS: &str = "[neighbours]\nmax = 2\nrandom = 1\n";
/// Records on two nodes only (rather than 8, which in a demo-sized network
/// is everyone), so that a lookup has somewhere to go.
pub(super) const DHT_TUNING: &str = "replication = 2\n";

/// Runs the scenario on a test bed built with h0 as everyone's bootstrap;
/// returns whether every pair reached every other, before and after h0
/// died.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub(super) fn run(testbed: &Testbed, interrupted: &AtomicBool) -> anyhow::Result<bool> {
    let n = testbed.hosts().len();
    println!("waiting for every node to join the DHT through h0 ...");
    testbed.wait_until(JOIN_TIMEOUT, "every node to have DHT contacts", || {
        for host in testbed.hosts() {
            if host.status()?["dht"]["contacts"].as_u64().unwrap_or(0) == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    let last = testbed.host(n - 1);
    let first = testbed.host(0);
    let target = testbed.host(1);
    println!(
        "\n$ weft lookup {}      (on {}: where is {}? asked of the DHT)",
        target.name(),
        last.name(),
        target.name()
    );
    let lookup =
        last.request(&serde_json::json!({"command": "lookup", "target": target.name()}))?;
    let info: LookupInfo = serde_json::from_value(lookup["lookup"].clone())
        .with_context(|| format!("unexpected lookup answer: {lookup}"))?;
    print!("{}", render_lookup(&info));

    let names: Vec<String> = testbed
        .hosts()
        .iter()
        .map(|h| h.name().to_owned())
        .collect();
    // Each node's address as a lookup from h0 finds it (by name).
    let mut targets = Vec::with_capacity(n);
    for name in &names {
        let answer = first.request(&serde_json::json!({"command": "lookup", "target": name}))?;
        let info: LookupInfo = serde_json::from_value(answer["lookup"].clone())
            .with_context(|| format!("unexpected lookup answer: {answer}"))?;
        let Some(address) = info.record.and_then(|r| r.overlay_ipv4) else {
            bail!(
                "h0 could not look up {name}: {}",
                info.error.unwrap_or_default()
            );
        };
        targets.push(IpAddr::V4(address));
    }
    println!(
        "\nEvery node pings every other one by the address its lookup returned; most pairs\n\
         have no session yet: the first packet starts a lookup and a handshake and waits for them.\n\
         Round-trip time in ms (row pings column):"
    );
    let matrix = ping_matrix(testbed, &targets)?;
    print!("{}", render_matrix(&names, &targets, &matrix));
    let mut all_ok = every_pair_replied(&matrix);

    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let pid = testbed.kill(0)?;
    println!(
        "\nkilled {} (pid {pid}), the only node anyone was configured with. The others again:",
        first.name()
    );
    let rest_names = names[1..].to_vec();
    let rest_targets = targets[1..].to_vec();
    let matrix = ping_matrix_of(testbed, 1, &rest_targets)?;
    print!("{}", render_matrix(&rest_names, &rest_targets, &matrix));
    all_ok &= every_pair_replied(&matrix);
    Ok(all_ok)
}

/// [`ping_matrix`] among the hosts from `skip` on.
fn ping_matrix_of(
    testbed: &Testbed,
    skip: usize,
    targets: &[IpAddr],
) -> anyhow::Result<super::Matrix> {
    super::ping_matrix_from(testbed, skip, targets)
}
