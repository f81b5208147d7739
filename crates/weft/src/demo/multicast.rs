//! `weft demo --scenario multicast`: a group, its tree, and delivery to
//! ordinary UDP multicast sockets, also across a cut tree link.
//!
//! On the demo overlay (N ≥ 4 nodes, full mesh, tree fan-out 2 so that a
//! tree of a few nodes has branches), h1 to h(N-2) each run a UDP socket
//! that joins 239.1.2.3 on the TUN as any application does: the kernel's
//! IGMP report is all weft hears. h(N-1) listens on the same port without
//! joining. The demo shows `weft group list` and `weft group tree` as h0
//! sees them, streams numbered datagrams from h0 (a socket that names no
//! interface: the TUN's multicast routes carry them) and prints what each
//! member and the non-member received. Then it cuts a link of the tree
//! (blackhole routes, as the failover scenario does) while h0 streams
//! again, and shows the new tree, the counts, and each member's longest
//! silence; then it restores the link and waits until both ends see it up
//! again, so that what runs next finds the overlay whole.
//!
//! It returns whether every member got every datagram of the first stream
//! exactly once, the non-member none, the second stream went on after the
//! cut (its last datagram reached every member, no duplicates), and the
//! link came back.

#![allow(clippy::print_stdout)] // a CLI command: stdout is its output

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::group::{render_groups, render_tree};
use crate::status::render_columns;
use crate::testbed::{Deliveries, McastReceiver, McastSender, Testbed, tree_link_to_cut};

/// The extra config of every node: a small fan-out, so that even a
/// five-node tree has a node forwarding to others.
pub(super) const MULTICAST: &str = "[multicast]\nfanout = 2\n";
/// The group and port.
const GROUP: &str = "239.1.2.3:5000";
const INTERVAL: Duration = Duration::from_millis(10);
/// Datagrams per stream.
const COUNT: u64 = 300;
/// The cut comes after this many datagrams of the second stream reached
/// every member.
const BEFORE_CUT: usize = 100;
/// Numbers of the second stream start here.
const SECOND: u64 = 10_000;
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on every socket thread.
const STREAM_LIMIT: Duration = Duration::from_secs(120);

/// Runs the scenario on a test bed whose sessions are up; returns whether
/// delivery was complete and went on after the cut.
pub(super) fn run(testbed: &Testbed, interrupted: &AtomicBool) -> anyhow::Result<bool> {
    let n = testbed.hosts().len();
    if n < 4 {
        bail!(
            "the multicast scenario needs at least 4 nodes (a sender, two members, a non-member)"
        );
    }
    let group: SocketAddr = GROUP.parse().context("the demo's group")?;
    let sender = testbed.host(0);
    let source = IpAddr::V4(sender.overlay_ipv4()?);
    let outsider = testbed.host(n - 1);
    println!("waiting for every node to learn the others' links (link state) ...");
    wait_routes(testbed)?;

    println!(
        "\nh1 to h{} open a UDP socket on port {} and join {} on weft0 (IP_ADD_MEMBERSHIP, as any\n\
         application does); {} listens on the same port without joining.",
        n - 2,
        group.port(),
        group.ip(),
        outsider.name()
    );
    let mut members = Vec::new();
    for host in &testbed.hosts()[1..n - 1] {
        members.push((host, McastReceiver::start(host, group, true, STREAM_LIMIT)?));
    }
    let outsider_socket = McastReceiver::start(outsider, group, false, STREAM_LIMIT)?;
    let names: BTreeSet<String> = members.iter().map(|(h, _)| h.name().to_owned()).collect();
    testbed.wait_group_members(group.ip(), &names, WAIT_TIMEOUT)?;
    println!(
        "\n$ weft group list      (on {}: the kernels' IGMP reports became joins, flooded in signed records)",
        sender.name()
    );
    print!(
        "{}",
        render_groups(&crate::group::groups(sender.socket_path())?)
    );
    let tree = testbed.wait_group_tree(sender.name(), group.ip(), WAIT_TIMEOUT)?;
    println!(
        "\n$ weft group tree {} --source {}      (fan-out at most 2 per node)",
        group.ip(),
        sender.name()
    );
    print!("{}", render_tree(&tree));

    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    println!(
        "\n{} sends {COUNT} numbered datagrams to {group}, one every {} ms, from an ordinary UDP socket ...",
        sender.name(),
        INTERVAL.as_millis()
    );
    let stream = McastSender::start(sender, group, 0, COUNT, INTERVAL, STREAM_LIMIT);
    stream.finish()?;
    let first_ok = wait_last(testbed, &members, COUNT - 1).is_ok();
    let rows: Vec<[String; 5]> = members
        .iter()
        .map(|(host, socket)| {
            let got = Deliveries::of(&socket.arrivals(), 0, COUNT, source);
            row(host.name(), &got, COUNT, None)
        })
        .chain(std::iter::once(outsider_row(
            outsider.name(),
            outsider_socket.count(),
        )))
        .collect();
    print!("{}", render_columns(&header(false), &rows));
    let mut ok = first_ok
        && members
            .iter()
            .all(|(_, socket)| Deliveries::of(&socket.arrivals(), 0, COUNT, source).is_exact())
        && outsider_socket.count() == 0;

    if interrupted.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let Some((parent, child)) = tree_link_to_cut(&tree) else {
        bail!("the tree has no links to cut");
    };
    let (a, b) = (host_index(testbed, &parent)?, host_index(testbed, &child)?);
    println!(
        "\n{} streams again; after {BEFORE_CUT} datagrams the tree link {parent}–{child} is cut (blackhole routes) ...",
        sender.name()
    );
    let stream = McastSender::start(sender, group, SECOND, COUNT, INTERVAL, STREAM_LIMIT);
    testbed.wait_until(
        WAIT_TIMEOUT,
        "the second stream to reach every member",
        || {
            Ok(members.iter().all(|(_, socket)| {
                socket.arrivals().iter().filter(|a| a.seq >= SECOND).count() >= BEFORE_CUT
            }))
        },
    )?;
    testbed.blackhole_pair(a, b)?;
    stream.finish()?;
    let second_ok = wait_last(testbed, &members, SECOND + COUNT - 1).is_ok();
    let after = crate::group::tree(sender.socket_path(), group.ip(), Some(sender.name()))?;
    println!(
        "\n$ weft group tree {} --source {}      (after the cut)",
        group.ip(),
        sender.name()
    );
    print!("{}", render_tree(&after));
    let mut all_resumed = second_ok;
    let rows: Vec<[String; 5]> = members
        .iter()
        .map(|(host, socket)| {
            let got = Deliveries::of(&socket.arrivals(), SECOND, COUNT, source);
            all_resumed &= got.duplicates == 0 && got.wrong_source == 0;
            row(host.name(), &got, COUNT, Some(got.max_gap))
        })
        .chain(std::iter::once(outsider_row(
            outsider.name(),
            outsider_socket.count(),
        )))
        .collect();
    print!("{}", render_columns(&header(true), &rows));
    ok &= all_resumed && outsider_socket.count() == 0;
    testbed.unblackhole_pair(a, b)?;
    let restored = wait_link_up(testbed, a, b).is_ok();
    println!(
        "\nrestored the {parent}–{child} link (blackhole routes removed): {}",
        if restored {
            "both ends see it up again"
        } else {
            "it did not come back up in time"
        }
    );
    ok &= restored;
    println!("{}", explanation());
    if ok {
        println!(
            "every member got every datagram once, the non-member none, and delivery went on after the cut."
        );
    } else {
        println!(
            "delivery was not complete (see the tables above).\n{}",
            testbed.log_tails()
        );
    }
    for (_, socket) in members {
        socket.stop()?;
    }
    outsider_socket.stop()?;
    Ok(ok)
}

/// Waits until every host has a route to every other (link state is in).
fn wait_routes(testbed: &Testbed) -> anyhow::Result<()> {
    testbed.wait_until(CONVERGE_TIMEOUT, "routes between every pair", || {
        for host in testbed.hosts() {
            for other in testbed.hosts() {
                if other.index() != host.index()
                    && host.route_path(other.name(), "latency")?.is_none()
                {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })
}

/// Waits until hosts `a` and `b` each see their direct link up.
fn wait_link_up(testbed: &Testbed, a: usize, b: usize) -> anyhow::Result<()> {
    let (host_a, host_b) = (testbed.host(a), testbed.host(b));
    testbed.wait_until(
        super::state::SETTLE_TIMEOUT,
        "the restored link to come back up",
        || {
            for (host, other) in [(host_a, host_b), (host_b, host_a)] {
                let status = crate::status::request_status(host.socket_path())?;
                let up = status.peers.iter().any(|p| {
                    p.name.as_deref() == Some(other.name())
                        && p.state == "established"
                        && p.link == "up"
                });
                if !up {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
}

/// Waits until datagram `last` reached every member.
fn wait_last(
    testbed: &Testbed,
    members: &[(&crate::testbed::Host, McastReceiver)],
    last: u64,
) -> anyhow::Result<()> {
    testbed.wait_until(WAIT_TIMEOUT, "the last datagram at every member", || {
        Ok(members
            .iter()
            .all(|(_, socket)| socket.arrivals().iter().any(|a| a.seq == last)))
    })
}

fn host_index(testbed: &Testbed, name: &str) -> anyhow::Result<usize> {
    testbed
        .hosts()
        .iter()
        .position(|h| h.name() == name)
        .with_context(|| format!("no host {name}"))
}

fn header(with_gap: bool) -> [String; 5] {
    [
        "NODE",
        "MEMBER",
        "RECEIVED",
        "DUPLICATES",
        if with_gap {
            "LONGEST SILENCE"
        } else {
            "SOURCE"
        },
    ]
    .map(String::from)
}

/// A member's row.
fn row(name: &str, got: &Deliveries, count: u64, gap: Option<Duration>) -> [String; 5] {
    [
        name.to_owned(),
        "yes".to_owned(),
        format!("{}/{count}", got.unique),
        got.duplicates.to_string(),
        match gap {
            Some(gap) => format!("{:.0} ms", gap.as_secs_f64() * 1e3),
            None if got.wrong_source == 0 => "h0's overlay address".to_owned(),
            None => format!("{} from elsewhere", got.wrong_source),
        },
    ]
}

fn outsider_row(name: &str, received: usize) -> [String; 5] {
    [
        name.to_owned(),
        "no".to_owned(),
        received.to_string(),
        "-".to_owned(),
        "-".to_owned(),
    ]
}

fn explanation() -> &'static str {
    "\nWhat you just saw:\n\
     - The receivers are ordinary UDP sockets: joining the group made each kernel send an IGMP report\n  \
       into weft0; the daemon read it, joined the group, and flooded a membership record signed with\n  \
       its key to its neighbours, as it does with link state.\n\
     - h0's datagrams went to weft0 like any multicast (the daemon routes 224.0.0.0/4 there). h0's\n  \
       daemon sent each packet, unchanged, to its children in the tree, encrypted for each hop; every\n  \
       node on the tree delivered it to its own weft0 if a member and passed it on to its children.\n\
     - Every node computes the same tree from the same link state: shortest paths from the source by\n  \
       measured latency (each link costing RTT^1.5, so two short links beat one long one), at most\n  \
       2 children per node here (`[multicast] fanout`), pruned to branches with members. A node that\n  \
       is not a member may still forward; it never delivers.\n\
     - When the link was cut, the link monitor noticed within a fraction of a second, link state\n  \
       changed, and every node recomputed the tree; a per-source duplicate window makes sure no\n  \
       member ever delivers a packet twice while views differ."
}
