//! Real-host multicast: unmodified applications' UDP multicast over weft.
//!
//! Six daemons in network namespaces, a full mesh of static peers (the
//! mode the design uses for small networks; every node then has the whole
//! link-state graph at once, so the trees are the ones the core computes
//! from measured links and nothing waits on discovery). The multicast
//! fan-out is 2, so the tree from the sender h0 has interior nodes and a
//! cut link moves a whole branch, not just one leaf.
//!
//! - h1 to h4 are receivers: a `std::net::UdpSocket` on a thread inside the
//!   namespace joins 239.1.2.3 (and ff0e::1:2:3) on the TUN as any
//!   application does; weft learns of it only from the kernel's IGMP/MLD
//!   report. h5 is not a member: its socket on the same port joined
//!   another group.
//! - h0 sends numbered datagrams at a steady rate from a socket that names
//!   no interface (the daemon's multicast routes carry them into the TUN).
//!   Every receiver gets every datagram exactly once, with h0's overlay
//!   source address; h5 gets none, and its daemon delivers nothing.
//!   h1's namespace filters reverse paths strictly (`rp_filter = 1`).
//! - While h0 streams again, the test cuts an underlay link that is on the
//!   tree (found with `weft group tree`, cut with blackhole routes, as the
//!   failover demo does: no nftables needed) and measures each receiver's
//!   longest silence: delivery resumes within a second, with no duplicate.
//! - Closing the sockets makes the kernels report leaves: no members are
//!   left anywhere. Then `weft group join|list|leave` on h5.
//!
//! Needs root; without, it prints a notice and passes. Every wait has a
//! deadline and every stream a bounded count and time; the test bed removes
//! namespaces and routes also when the test panics.

#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test
#![allow(clippy::print_stdout)] // the test prints its measurements

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use weft::group::{TreeInfo, render_tree};
use weft::testbed::{
    Deliveries, Host, McastReceiver, McastSender, Testbed, TestbedOptions, is_root,
    tree_link_to_cut,
};

const HOSTS: usize = 6;
const SENDER: usize = 0;
const RECEIVERS: [usize; 4] = [1, 2, 3, 4];
const NON_MEMBER: usize = 5;
const GROUP_V4: &str = "239.1.2.3:5000";
const GROUP_V6: &str = "[ff0e::1:2:3]:5001";
/// The group the non-member's socket joins instead (same port).
const OTHER_GROUP: &str = "239.1.2.4:5000";
const FANOUT: usize = 2;

const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(20);
/// Receivers get the last datagrams (and other awaited things happen) this
/// soon.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// No receiver stays silent longer than this after the cut.
const RESUME_LIMIT: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_millis(5);
/// Datagrams of the first (uncut) streams.
const STEADY_COUNT: u64 = 400;
/// Datagrams of the stream the cut falls into (4 s at 5 ms).
const CUT_COUNT: u64 = 800;
/// The cut comes after this many datagrams of that stream arrived at every
/// receiver.
const BEFORE_CUT: usize = 150;
/// Numbers of the streams: IPv4, IPv6, the one with the cut.
const V4_FIRST: u64 = 0;
const V6_FIRST: u64 = 1_000;
const CUT_FIRST: u64 = 10_000;
/// Bound on every receiver and sender.
const STREAM_LIMIT: Duration = Duration::from_secs(120);

#[allow(clippy::disallowed_methods)] // tests measure real time
fn now() -> Instant {
    Instant::now()
}

#[test]
fn udp_multicast_reaches_every_member_once_and_resumes_after_a_tree_link_cut() {
    if !is_root() {
        weft::testbed::skip("network namespace tests need root");
        return;
    }
    let mut options = TestbedOptions::new(env!("CARGO_BIN_EXE_weft"));
    options.extra_config = format!("[multicast]\nfanout = {FANOUT}\n");
    let testbed = Testbed::new(HOSTS, options).expect("building the test bed");
    testbed
        .wait_established(ESTABLISH_TIMEOUT)
        .expect("sessions");
    wait_converged(&testbed);

    let v4: SocketAddr = GROUP_V4.parse().unwrap();
    let v6: SocketAddr = GROUP_V6.parse().unwrap();
    let sender = testbed.host(SENDER);
    let source_v4 = IpAddr::V4(sender.overlay_ipv4().unwrap());
    let source_v6 = IpAddr::V6(sender.overlay_ipv6().unwrap());
    strict_rp_filter(testbed.host(RECEIVERS[0]));
    let receivers: Vec<(usize, McastReceiver, McastReceiver)> = RECEIVERS
        .iter()
        .map(|&i| {
            let host = testbed.host(i);
            let r4 = McastReceiver::start(host, v4, true, STREAM_LIMIT).unwrap();
            let r6 = McastReceiver::start(host, v6, true, STREAM_LIMIT).unwrap();
            (i, r4, r6)
        })
        .collect();
    let outsider = McastReceiver::start(
        testbed.host(NON_MEMBER),
        OTHER_GROUP.parse().unwrap(),
        true,
        STREAM_LIMIT,
    )
    .unwrap();
    let members: BTreeSet<String> = RECEIVERS.iter().map(|&i| format!("h{i}")).collect();
    for group in [v4.ip(), v6.ip()] {
        testbed
            .wait_group_members(group, &members, MEMBERSHIP_TIMEOUT)
            .unwrap();
        testbed
            .wait_group_tree(sender.name(), group, MEMBERSHIP_TIMEOUT)
            .unwrap();
    }

    // Steady streams, IPv4 then IPv6: every datagram exactly once.
    for (group, first, source) in [(v4, V4_FIRST, source_v4), (v6, V6_FIRST, source_v6)] {
        let stream = McastSender::start(sender, group, first, STEADY_COUNT, INTERVAL, STREAM_LIMIT);
        let sent = stream.finish().unwrap();
        assert_eq!(sent.len() as u64, STEADY_COUNT);
        let last = first + STEADY_COUNT - 1;
        wait_for(&testbed, "the last datagram at every receiver", || {
            receivers.iter().all(|(_, r4, r6)| {
                let r = if group.is_ipv4() { r4 } else { r6 };
                r.arrivals().iter().any(|a| a.seq == last)
            })
        });
        for (i, r4, r6) in &receivers {
            let r = if group.is_ipv4() { r4 } else { r6 };
            let got = Deliveries::of(&r.arrivals(), first, STEADY_COUNT, source);
            println!(
                "{group} to h{i}: {} of {STEADY_COUNT} datagrams, {} duplicates, {} from another source",
                got.unique, got.duplicates, got.wrong_source
            );
            assert!(
                got.is_exact(),
                "h{i} got {got:?} of {group}\n{}",
                stats(&testbed)
            );
        }
    }

    // The tree from h0, as h0 computes it, and a link on it to cut: an
    // edge from h0 to a child with children of its own if there is one,
    // so that a whole branch has to move.
    let tree = tree_of(sender, v4.ip());
    print!(
        "$ weft group tree {} --source h0\n{}",
        v4.ip(),
        render_tree(&tree)
    );
    assert!(tree.unreached.is_empty(), "{tree:?}");
    let reached: BTreeSet<&String> = tree.edges.iter().map(|(_, child)| child).collect();
    assert!(members.iter().all(|m| reached.contains(m)), "{tree:?}");
    let (parent, child) = tree_link_to_cut(&tree).expect("the tree has edges");
    let (a, b) = (index_of(&parent), index_of(&child));

    let stream = McastSender::start(sender, v4, CUT_FIRST, CUT_COUNT, INTERVAL, STREAM_LIMIT);
    wait_for(&testbed, "the stream to reach every receiver", || {
        receivers.iter().all(|(_, r4, _)| {
            r4.arrivals().iter().filter(|a| a.seq >= CUT_FIRST).count() >= BEFORE_CUT
        })
    });
    let cut = now();
    testbed.blackhole_pair(a, b).unwrap();
    println!("cut the underlay link {parent}-{child} (on the tree) while h0 streams");
    let sent = stream.finish().unwrap();
    let last = CUT_FIRST + CUT_COUNT - 1;
    wait_for(&testbed, "the last datagram after the cut", || {
        receivers
            .iter()
            .all(|(_, r4, _)| r4.arrivals().iter().any(|a| a.seq == last))
    });
    let after = tree_of(sender, v4.ip());
    print!("tree after the cut:\n{}", render_tree(&after));
    assert!(
        !after.edges.contains(&(parent.clone(), child.clone()))
            && !after.edges.contains(&(child.clone(), parent.clone())),
        "the cut link is still on the tree: {after:?}"
    );

    let sent_after_cut = sent.iter().filter(|(_, at)| *at > cut).count();
    let mut worst = Duration::ZERO;
    for (i, r4, _) in &receivers {
        let got = Deliveries::of(&r4.arrivals(), CUT_FIRST, CUT_COUNT, source_v4);
        let resumed_after = got
            .gap_end
            .map(|end| end.saturating_duration_since(cut))
            .unwrap_or_default();
        println!(
            "h{i}: longest silence {:.0} ms (ended {:.0} ms after the cut), {} of {CUT_COUNT} datagrams, {} lost, {} duplicates",
            got.max_gap.as_secs_f64() * 1e3,
            resumed_after.as_secs_f64() * 1e3,
            got.unique,
            got.missing.len(),
            got.duplicates,
        );
        assert_eq!(got.duplicates, 0, "h{i}: {got:?}");
        assert_eq!(got.wrong_source, 0, "h{i}: {got:?}");
        assert!(
            got.max_gap < RESUME_LIMIT,
            "h{i} was silent for {:?} after the cut of {parent}-{child}\n{}\n{}",
            got.max_gap,
            stats(&testbed),
            testbed.log_tails()
        );
        // What was lost was lost around the cut: the datagrams of the
        // last second all came.
        let tail_first = last + 1 - (RESUME_LIMIT.as_millis() / INTERVAL.as_millis()) as u64;
        assert!(
            got.missing.iter().all(|&seq| seq < tail_first),
            "h{i} lost datagrams long after the cut: {:?}",
            got.missing
        );
        worst = worst.max(got.max_gap);
    }
    println!(
        "delivery resumed within {:.0} ms of the cut at every receiver ({sent_after_cut} datagrams sent after it, one every {INTERVAL:?})",
        worst.as_secs_f64() * 1e3
    );

    let outsider = outsider.stop().unwrap();
    assert!(outsider.is_empty(), "the non-member got {outsider:?}");
    let delivered = testbed.host(NON_MEMBER).stat("mcast_delivered").unwrap();
    assert_eq!(delivered, 0, "the non-member's daemon delivered multicast");
    println!("{}", stats(&testbed));

    // Closing the sockets makes the kernels report leaves (IGMPv3 TO_IN({}),
    // MLDv2 done): the members are gone everywhere.
    for (_, r4, r6) in receivers {
        r4.stop().unwrap();
        r6.stop().unwrap();
    }
    for group in [v4.ip(), v6.ip()] {
        testbed
            .wait_group_members(group, &BTreeSet::new(), MEMBERSHIP_TIMEOUT)
            .unwrap();
    }

    // `weft group join|leave|list` on the non-member.
    let outsider = testbed.host(NON_MEMBER);
    let weft = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["group"])
            .args(args)
            .arg("--socket")
            .arg(outsider.socket_path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "weft group {args:?}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    };
    assert_eq!(weft(&["join", "239.1.2.9"]), "joined 239.1.2.9\n");
    let only_h5 = BTreeSet::from(["h5".to_owned()]);
    let joined: IpAddr = "239.1.2.9".parse().unwrap();
    testbed
        .wait_group_members(joined, &only_h5, MEMBERSHIP_TIMEOUT)
        .unwrap();
    let list = weft(&["list"]);
    assert!(list.contains("239.1.2.9  yes     h5 (1)"), "{list}");
    assert_eq!(weft(&["leave", "239.1.2.9"]), "left 239.1.2.9\n");
    testbed
        .wait_group_members(joined, &BTreeSet::new(), MEMBERSHIP_TIMEOUT)
        .unwrap();
}

/// Makes reverse-path filtering strict in `host`'s namespace (as many
/// distributions set it): multicast from overlay sources must still pass.
fn strict_rp_filter(host: &Host) {
    let output = host
        .command("sh")
        .args([
            "-c",
            "echo 1 > /proc/sys/net/ipv4/conf/all/rp_filter && echo 1 > /proc/sys/net/ipv4/conf/default/rp_filter",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

/// Waits until every host has link state from every other and a route to
/// each, so trees are built over the whole mesh.
fn wait_converged(testbed: &Testbed) {
    testbed
        .wait_until(CONVERGE_TIMEOUT, "link state and routes everywhere", || {
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
        .unwrap();
}

fn wait_for(testbed: &Testbed, what: &str, mut condition: impl FnMut() -> bool) {
    testbed
        .wait_until(DRAIN_TIMEOUT, what, || Ok(condition()))
        .unwrap_or_else(|error| panic!("{error:#}\n{}", stats(testbed)));
}

fn tree_of(host: &Host, group: IpAddr) -> TreeInfo {
    weft::group::tree(host.socket_path(), group, Some("h0")).unwrap()
}

fn index_of(name: &str) -> usize {
    name.strip_prefix('h').unwrap().parse().unwrap()
}

/// Every host's multicast counters and link-state records originated
/// (each may change the trees), for messages.
fn stats(testbed: &Testbed) -> String {
    let mut text = String::from("multicast counters and link-state records originated:");
    for host in testbed.hosts() {
        let counters = host
            .status()
            .map(|status| {
                status["stats"]
                    .as_object()
                    .map(|stats| {
                        stats
                            .iter()
                            .filter(|(name, value)| {
                                (name.starts_with("mcast_")
                                    || *name == "lsa_originated"
                                    || *name == "tx_no_path")
                                    && value.as_u64() != Some(0)
                            })
                            .map(|(name, value)| format!("{name}={value}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_else(|e| format!("(no status: {e:#})"));
        text.push_str(&format!("\n  {}: {counters}", host.name()));
    }
    text
}
