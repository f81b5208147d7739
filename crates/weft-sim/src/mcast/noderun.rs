//! Recovery after member failures, measured with real nodes: weft
//! [`Node`](weft_core::Node)s in [`Sim`] on the transit-stub underlay's
//! delays, a multicast stream, members crashed at once.
//!
//! Why: the tree figures and the derived recovery times (module
//! `recovery`) are models; this runs the whole protocol (sessions, link
//! monitor, link-state flood, membership records, tree recomputation,
//! forwarding, duplicate windows) and measures what members see: the gap in
//! arrivals. It is also the check of the derived model: for the same tree
//! and the same failed members, the model's time is printed beside the
//! measured one (the model replays from the node's own tree, with the
//! underlay's true RTTs where the nodes use the RTTs they advertised).
//!
//! Shape: `members` nodes of one CA in a full mesh of configured peers (how
//! weft runs a network of tens of nodes; the bounded neighbourhood applies
//! at larger scale), each pair's link given the one-way delay of the
//! underlay's shortest path between the members' stub routers (no jitter,
//! no loss). After the sessions are up and the links have settled, every
//! member but the source joins the group; the source sends a numbered UDP
//! datagram to the group every `interval`; `before` into the stream, a
//! fraction `fail` of the other members crashes at once; the run goes on
//! for `after`.
//!
//! Measured per live member: the longest gap between two arrivals that ends
//! after the crash (the outage, at the resolution of one interval; an
//! unaffected member shows one interval), packets lost, and whether it got
//! the last packets. Duplicates: datagrams a member's TUN got twice
//! (delivered duplicates, must be 0), and the nodes' `mcast_duplicates`
//! counters (copies their duplicate windows dropped: for a second after a
//! tree change nodes also forward along the old tree).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use weft_core::mcast::{MulticastConfig, Topology, build_tree};
use weft_core::{LinkHealth, RoutingConfig};

use super::McastSimError;
use super::measure::ids;
use super::overlay::{Group, OverlayShape};
use super::recovery::recovery;
use super::underlay::{TransitStubParams, Underlay, below};
use crate::{HostId, LinkConfig, MeshBuilder, Sim, parse_udp, udp_packet};

/// The group the stream goes to.
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
/// Payload prefix of the stream's datagrams.
const MARK: &str = "mcast-bench ";

/// What to run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecoveryScenario {
    /// Underlay routers.
    pub routers: usize,
    /// Nodes, all members (the source too).
    pub members: usize,
    /// Seed of the first run; run `i` uses `seed + i`.
    pub seed: u64,
    /// Runs.
    pub runs: usize,
    /// Fan-out bound of every node.
    pub fanout: usize,
    /// Fraction of the members (source excluded) that crash, at least one.
    pub fail: f64,
    /// Time between two datagrams of the stream.
    pub interval: Duration,
    /// Stream time before the crash.
    pub before: Duration,
    /// Stream time after the crash.
    pub after: Duration,
    /// Link monitoring and routing of every node.
    pub routing: RoutingConfig,
}

impl NodeRecoveryScenario {
    /// 32 members on `routers` routers, fan-out 8, 5 % failures, a datagram
    /// every 10 ms, 2 s before and 6 s after the crash, 5 runs.
    pub fn new(routers: usize, members: usize, seed: u64) -> Self {
        Self {
            routers,
            members,
            seed,
            runs: 5,
            fanout: weft_core::mcast::DEFAULT_FANOUT,
            fail: 0.05,
            interval: Duration::from_millis(10),
            before: Duration::from_secs(2),
            after: Duration::from_secs(6),
            routing: RoutingConfig::default(),
        }
    }
}

/// One run.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecoveryRun {
    /// Its seed.
    pub seed: u64,
    /// The source's name.
    pub source: String,
    /// The crashed members' names.
    pub failed: Vec<String>,
    /// Whether the source's tree (as the node computed it before the
    /// crash) has the same edges as `build_tree` on the underlay's RTTs.
    pub trees_agree: bool,
    /// Live members the node's tree cut off (their path crossed a failed
    /// node).
    pub cut: Vec<MemberOutage>,
    /// The longest outage of a member the tree did not cut off.
    pub uncut_max_gap: Duration,
    /// Live members that did not get the stream's last datagram.
    pub missing_end: usize,
    /// Datagrams a live member's TUN got more than once (all members).
    pub delivered_duplicates: usize,
    /// Σ `mcast_duplicates` over the live nodes: copies dropped by their
    /// duplicate windows.
    pub duplicates: u64,
    /// Directed member pairs whose direct link the node held down before
    /// the stream (no probe answered in time), of all pairs.
    pub links_down: (usize, usize),
    /// The smallest true RTT of such a link.
    pub links_down_min_rtt: Option<Duration>,
}

/// What a cut-off member saw.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberOutage {
    /// The member.
    pub name: String,
    /// Longest gap between arrivals ending after the crash.
    pub gap: Duration,
    /// Datagrams it never got.
    pub lost: usize,
    /// The derived model's recovery time for it (`node_report_ms`: weft's rule), replayed
    /// from the node's tree with the underlay's RTTs.
    pub model_ms: Option<f64>,
}

/// Runs every run of `scenario`; `base` is the simulators' base instant.
pub fn run_node_recovery(
    base: Instant,
    scenario: &NodeRecoveryScenario,
) -> Result<Vec<NodeRecoveryRun>, McastSimError> {
    (0..scenario.runs)
        .map(|i| one_run(base, scenario, scenario.seed.wrapping_add(i as u64)))
        .collect()
}

fn one_run(
    base: Instant,
    sc: &NodeRecoveryScenario,
    seed: u64,
) -> Result<NodeRecoveryRun, McastSimError> {
    let sim_err = |e: &dyn std::fmt::Display| McastSimError::Sim(e.to_string());
    let underlay = Underlay::transit_stub(TransitStubParams::new(sc.routers), seed)
        .map_err(McastSimError::Underlay)?;
    let stubs = underlay.stub_routers().len();
    if sc.members < 3 || sc.members > stubs {
        return Err(McastSimError::Members {
            asked: sc.members,
            stub_routers: stubs,
        });
    }
    let mut group = Group::new(&underlay, sc.members, OverlayShape::FullMesh, seed);
    let mut sim = Sim::new(base, seed);
    let multicast = MulticastConfig {
        fanout: sc.fanout,
        ..MulticastConfig::default()
    };
    // Links start down so that no first RTT sample comes from the default
    // link; each pair gets its underlay delay before anything can cross.
    let mesh = MeshBuilder::new(sc.members)
        .with_multicast(multicast)
        .with_routing(sc.routing.clone())
        .with_link(LinkConfig {
            up: false,
            ..LinkConfig::default()
        })
        .build(&mut sim)
        .map_err(|e| sim_err(&e))?;
    let hosts = mesh.hosts;
    for i in 0..hosts.len() {
        for j in i + 1..hosts.len() {
            let link = LinkConfig {
                latency: Duration::from_micros(group.delay_us(i, j)),
                ..LinkConfig::default()
            };
            sim.set_link_both(hosts[i], hosts[j], link);
        }
    }
    group.set_ids(hosts.iter().map(|&h| sim.node_id(h)).collect());

    // Sessions, then settled links and link state.
    // Checked every 200 ms of simulated time, not after every event: the
    // check looks at every pair.
    let mut up = false;
    for _ in 0..300 {
        sim.run_for(Duration::from_millis(200));
        if sim.all_established(&hosts) {
            up = true;
            break;
        }
    }
    if !up {
        return Err(McastSimError::Sim(
            "sessions did not come up in 60 s".into(),
        ));
    }
    sim.run_for(Duration::from_secs(12));
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6e6f_6465_7275_6e21);
    let source = below(&mut rng, hosts.len());
    for (i, &h) in hosts.iter().enumerate() {
        if i != source {
            sim.with_node(h, |node, now| node.join_group(now, IpAddr::V4(GROUP)))
                .map_err(|e| sim_err(&e))?
                .map_err(|e| sim_err(&e))?;
        }
    }
    sim.run_for(Duration::from_secs(3));

    // Direct links the nodes hold down although the underlay carries them.
    // The model then sees only the links both ends hold up, as the nodes'
    // trees do (a link counts once both ends advertise it).
    let mut links_down = (0, 0);
    let mut links_down_min_rtt: Option<Duration> = None;
    let mut down_pairs = BTreeSet::new();
    let now = sim.now();
    for (i, &h) in hosts.iter().enumerate() {
        let Some(node) = sim.node(h) else { continue };
        for p in node.peers(now) {
            let Some(j) = p.node_id.and_then(|id| group_index_of(&hosts, &sim, id)) else {
                continue;
            };
            links_down.1 += 1;
            if p.link == LinkHealth::Down {
                links_down.0 += 1;
                down_pairs.insert((i.min(j), i.max(j)));
                let rtt = Duration::from_micros(2 * group.delay_us(i, j));
                links_down_min_rtt = Some(links_down_min_rtt.map_or(rtt, |m| m.min(rtt)));
            }
        }
    }

    group.edges.retain(|pair| !down_pairs.contains(pair));

    // The node's tree against build_tree on the underlay's RTTs. The
    // node's costs are the RTTs it advertised, which it refreshes only when
    // they move by a quarter: near-ties may go the other way.
    let status = sim
        .with_node(hosts[source], |node, now| {
            node.multicast_tree(now, None, IpAddr::V4(GROUP))
        })
        .map_err(|e| sim_err(&e))?
        .map_err(|e| sim_err(&e))?;
    let all: BTreeSet<usize> = (0..hosts.len()).collect();
    let members = ids(&group, &all);
    let model_tree = build_tree(
        &group.topology(&BTreeSet::new(), weft_core::mcast::TREE_COST_EXPONENT),
        group.ids[source],
        &members,
        sc.fanout,
    );
    let by_name: BTreeMap<String, usize> = (0..hosts.len())
        .map(|i| (sim.name(hosts[i]).to_owned(), i))
        .collect();
    let name_of = |i: usize| sim.name(hosts[i]).to_owned();
    let model_edges: BTreeSet<(String, String)> = model_tree
        .edges()
        .iter()
        .filter_map(|(p, c)| Some((name_of(*group.index.get(p)?), name_of(*group.index.get(c)?))))
        .collect();
    let node_edges: BTreeSet<(String, String)> = status.edges.iter().cloned().collect();
    let trees_agree = model_edges == node_edges;
    // The node's own tree as a `Tree` (build_tree on its edges alone gives
    // them back), for the model's replay.
    let mut tree_links = Topology::default();
    for (p, c) in &node_edges {
        if let (Some(&p), Some(&c)) = (by_name.get(p), by_name.get(c)) {
            tree_links.add_link(group.ids[p], group.ids[c], 2 * group.delay_us(p, c));
        }
    }
    let node_tree = build_tree(&tree_links, group.ids[source], &members, sc.fanout);

    // Who fails.
    let count = (((hosts.len() - 1) as f64 * sc.fail).round() as usize).clamp(1, hosts.len() - 1);
    let mut pool: Vec<usize> = (0..hosts.len()).filter(|&i| i != source).collect();
    let mut failed = BTreeSet::new();
    for _ in 0..count {
        let at = below(&mut rng, pool.len());
        failed.insert(pool.swap_remove(at));
    }
    let model = recovery(
        &group,
        &node_tree,
        source,
        &failed,
        sc.fanout,
        weft_core::mcast::TREE_COST_EXPONENT,
        &sc.routing,
        &mut rng,
    );

    // The stream and the crash.
    let start = sim.elapsed() + Duration::from_millis(1);
    let total = sc.before + sc.after;
    let count_packets = (total.as_micros() / sc.interval.as_micros().max(1)) as u32;
    let from = SocketAddr::new(
        IpAddr::V4(
            sim.overlay_ipv4(hosts[source])
                .ok_or_else(|| McastSimError::Sim("the source has no IPv4".into()))?,
        ),
        4000,
    );
    let to = SocketAddr::new(IpAddr::V4(GROUP), 5000);
    for k in 0..count_packets {
        let payload = format!("{MARK}{k:07}");
        let packet = udp_packet(from, to, payload.as_bytes()).map_err(|e| sim_err(&e))?;
        sim.schedule_tun(start + sc.interval * k, hosts[source], packet);
    }
    let crash_at = start + sc.before;
    sim.run_until(crash_at);
    for &f in &failed {
        sim.crash(hosts[f]).map_err(|e| sim_err(&e))?;
    }
    sim.run_until(start + total + Duration::from_secs(1));

    // What the live members saw.
    let cut_members: BTreeSet<usize> = (0..hosts.len())
        .filter(|m| *m != source && !failed.contains(m))
        .filter(|&m| {
            node_tree.path(&group.ids[m]).is_some_and(|p| {
                p.iter()
                    .any(|id| group.index.get(id).is_some_and(|i| failed.contains(i)))
            })
        })
        .collect();
    let mut cut = Vec::new();
    let mut uncut_max_gap = Duration::ZERO;
    let mut missing_end = 0;
    let mut delivered_duplicates = 0;
    let mut model_iter = model.into_iter();
    for (m, &host) in hosts.iter().enumerate() {
        if m == source || failed.contains(&m) {
            continue;
        }
        let arrivals = received(&sim, host);
        // The longest silence after the crash, the tail included (a member
        // never reached again shows the whole rest of the stream).
        let last = arrivals.last().map_or(start, |a| a.1);
        let tail = (start + total).saturating_sub(last.max(crash_at));
        let gap = arrivals
            .windows(2)
            .filter(|w| w[1].1 > crash_at)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
            .max(tail);
        let seqs: BTreeSet<u32> = arrivals.iter().map(|a| a.0).collect();
        delivered_duplicates += arrivals.len() - seqs.len();
        if !seqs.contains(&(count_packets - 1)) {
            missing_end += 1;
        }
        if cut_members.contains(&m) {
            cut.push(MemberOutage {
                name: sim.name(host).to_owned(),
                gap,
                lost: count_packets as usize - seqs.len(),
                model_ms: model_iter.next().map(|r| r.node_report_ms),
            });
        } else {
            uncut_max_gap = uncut_max_gap.max(gap);
        }
    }
    let duplicates = hosts
        .iter()
        .filter_map(|&h| sim.counter(h, "mcast_duplicates"))
        .sum();
    Ok(NodeRecoveryRun {
        seed,
        source: sim.name(hosts[source]).to_owned(),
        failed: failed
            .iter()
            .map(|&f| sim.name(hosts[f]).to_owned())
            .collect(),
        trees_agree,
        cut,
        uncut_max_gap,
        missing_end,
        delivered_duplicates,
        duplicates,
        links_down,
        links_down_min_rtt,
    })
}

/// The index of the host whose node has `id`.
fn group_index_of(hosts: &[HostId], sim: &Sim, id: weft_core::NodeId) -> Option<usize> {
    hosts.iter().position(|&h| sim.node_id(h) == id)
}

/// The stream's datagrams a host's TUN got: (number, arrival).
fn received(sim: &Sim, host: HostId) -> Vec<(u32, Duration)> {
    sim.tun(host)
        .iter()
        .filter_map(|d| {
            let udp = parse_udp(&d.packet)?;
            if udp.destination.ip() != IpAddr::V4(GROUP) {
                return None;
            }
            let text = std::str::from_utf8(udp.payload).ok()?;
            Some((text.strip_prefix(MARK)?.parse().ok()?, d.at))
        })
        .collect()
}
