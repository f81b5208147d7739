//! Many DHT engines in one process, wired by a tiny event loop in virtual
//! time: each joins through one earlier node, then every node finds others
//! by id, name, overlay IPv4 and IPv6, and a name nobody has is not found.

#![allow(clippy::disallowed_methods)] // one base instant; everything else is offsets
#![allow(clippy::unwrap_used)] // test fixtures: a failure here is a broken test

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use weft_core::dht::{
    Dht, DhtConfig, DhtEvent, LookupError, LookupId, LookupTrace, NodeRecord, Target,
};
use weft_core::{CaSecret, CertificateTemplate, SecretKey};

const UNIX_START: u64 = 1_800_000_000;

struct Net {
    now: Instant,
    nodes: Vec<Dht>,
    addrs: Vec<SocketAddr>,
    by_addr: BTreeMap<SocketAddr, usize>,
    /// (arrival, sequence) -> (to, from, bytes)
    flight: BTreeMap<(Instant, u64), (usize, SocketAddr, Vec<u8>)>,
    seq: u64,
    /// Each node's next timeout, in both directions.
    timers: BTreeSet<(Instant, usize)>,
    timer_of: Vec<Option<Instant>>,
    events: Vec<Vec<DhtEvent>>,
    down: Vec<bool>,
    latency: Box<dyn Fn(usize, usize) -> Duration>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250 + 1) as u8], 4800))
}

fn ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// A fixed one-way delay per pair, 2 to 40 ms.
fn small_latency(a: usize, b: usize) -> Duration {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    Duration::from_millis(2 + ((lo * 7919 + hi * 104_729) % 39) as u64)
}

impl Net {
    fn new(n: usize, config: DhtConfig) -> Self {
        let now = Instant::now();
        let ca = CaSecret::new([1; 32], "test", UNIX_START - 100, UNIX_START + 86_400).unwrap();
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut seed = [0u8; 64];
            seed[8..16].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            seed[40..48].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let secret = SecretKey::from_random(seed);
            let certificate = ca
                .sign(&CertificateTemplate {
                    name: format!("n{i}"),
                    public_key: secret.public(),
                    ipv4: Some(format!("{}/16", ipv4(i)).parse().unwrap()),
                    groups: vec![],
                    not_before: UNIX_START - 10,
                    not_after: UNIX_START + 86_400,
                })
                .unwrap();
            let mut rng_seed = [0u8; 32];
            rng_seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            nodes.push(Dht::new(
                now,
                Duration::from_secs(UNIX_START),
                secret,
                certificate,
                ca.certificate().clone(),
                config.clone(),
                rng_seed,
            ));
        }
        let addrs: Vec<SocketAddr> = (0..n).map(addr).collect();
        let by_addr = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let mut net = Self {
            now,
            nodes,
            addrs,
            by_addr,
            flight: BTreeMap::new(),
            seq: 0,
            timers: BTreeSet::new(),
            timer_of: vec![None; n],
            events: vec![Vec::new(); n],
            down: vec![false; n],
            latency: Box::new(small_latency),
        };
        for i in 0..n {
            net.update_timer(i);
        }
        net
    }

    fn update_timer(&mut self, i: usize) {
        if let Some(old) = self.timer_of[i].take() {
            self.timers.remove(&(old, i));
        }
        if self.down[i] {
            return;
        }
        if let Some(at) = self.nodes[i].poll_timeout() {
            self.timers.insert((at, i));
            self.timer_of[i] = Some(at);
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
            let Some(&j) = self.by_addr.get(&to) else {
                continue;
            };
            if self.down[j] || self.down[i] {
                continue;
            }
            self.seq += 1;
            let arrival = self.now + (self.latency)(i, j);
            self.flight
                .insert((arrival, self.seq), (j, self.addrs[i], bytes));
        }
        while let Some(event) = self.nodes[i].poll_event() {
            self.events[i].push(event);
        }
        self.update_timer(i);
    }

    fn run_until(&mut self, until: Instant) {
        loop {
            let timer = self.timers.first().copied();
            let datagram = self.flight.keys().next().copied();
            let next = match (timer, datagram) {
                (Some((t, _)), Some((d, _))) => t.min(d),
                (Some((t, _)), None) => t,
                (None, Some((d, _))) => d,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if let Some(key) = datagram
                && key.0 <= self.now
            {
                let (to, from, bytes) = self.flight.remove(&key).unwrap();
                if !self.down[to] {
                    self.nodes[to].handle_datagram(self.now, from, &bytes);
                    self.drain(to);
                }
                continue;
            }
            if let Some((_, i)) = timer {
                self.nodes[i].handle_timeout(self.now);
                self.drain(i);
            }
        }
        self.now = until;
    }

    fn lookup(&mut self, i: usize, target: Target) -> LookupId {
        let id = self.nodes[i].lookup(self.now, target);
        self.drain(i);
        id
    }

    fn take_result(
        &mut self,
        i: usize,
        id: LookupId,
    ) -> Option<(Result<NodeRecord, LookupError>, LookupTrace)> {
        let at = self.events[i]
            .iter()
            .position(|e| matches!(e, DhtEvent::LookupDone { id: done, .. } if *done == id))?;
        let DhtEvent::LookupDone { result, trace, .. } = self.events[i].remove(at) else {
            unreachable!()
        };
        Some((result, trace))
    }

    /// Runs until lookup `id` of node `i` is done, at most 15 s.
    fn result(&mut self, i: usize, id: LookupId) -> (Result<NodeRecord, LookupError>, LookupTrace) {
        let deadline = self.now + Duration::from_secs(15);
        loop {
            if let Some(done) = self.take_result(i, id) {
                return done;
            }
            assert!(self.now < deadline, "lookup {id:?} of node {i} did not end");
            let step = self.now + Duration::from_millis(50);
            self.run_until(step);
        }
    }
}

fn test_config() -> DhtConfig {
    DhtConfig {
        query_timeout: Duration::from_millis(500),
        lookup_timeout: Duration::from_secs(5),
        ..DhtConfig::default()
    }
}

#[test]
fn fifty_nodes_join_through_one_node_each_and_find_each_other() {
    let n = 50;
    let mut net = Net::new(n, test_config());
    // Each node bootstraps from one earlier node, 100 ms apart.
    for i in 1..n {
        let boot = net.addrs[(i * 31) % i];
        net.nodes[i].bootstrap(net.now, &[boot]);
        net.drain(i);
        let until = net.now + Duration::from_millis(100);
        net.run_until(until);
    }
    let until = net.now + Duration::from_secs(10);
    net.run_until(until);
    for i in 1..n {
        assert!(
            net.nodes[i].is_joined(),
            "node {i} did not join: {:?} {:?} / node 0 {:?}",
            net.nodes[i],
            net.nodes[i].stats(),
            net.nodes[0].stats()
        );
        assert!(
            net.events[i]
                .iter()
                .any(|e| matches!(e, DhtEvent::Joined { .. })),
            "node {i} reported no join"
        );
    }
    let sent: u64 = net.nodes.iter().map(|d| d.stats().queries).sum();
    println!(
        "queries per node after joins: {:.1}",
        sent as f64 / n as f64
    );
    let stored: usize = net.nodes.iter().map(|d| d.stored_records()).sum();
    println!(
        "records stored: {stored} ({:.1} per node)",
        stored as f64 / n as f64
    );

    let mut hops = Vec::new();
    for i in (0..n).step_by(7) {
        for j in [(i + 13) % n, (i + 29) % n] {
            let record_id = net.nodes[j].node_id();
            let targets = [
                Target::Id(record_id),
                Target::Name(format!("n{j}")),
                Target::Ipv4(ipv4(j)),
                Target::Ipv6(record_id.overlay_ipv6()),
            ];
            for target in targets {
                let id = net.lookup(i, target.clone());
                let (result, trace) = net.result(i, id);
                let record = result.unwrap_or_else(|e| panic!("{i} -> {target:?}: {e}"));
                assert_eq!(record.node_id(), record_id);
                assert_eq!(record.name(), format!("n{j}"));
                assert!(
                    record.endpoints.contains(&net.addrs[j]),
                    "record of {j} lacks its endpoint: {:?}",
                    record.endpoints
                );
                hops.push(trace.hops);
            }
        }
    }
    let mean = hops.iter().sum::<u32>() as f64 / hops.len() as f64;
    println!("lookups: {}, mean hops {mean:.2}", hops.len());

    let id = net.lookup(3, Target::Name("nobody".into()));
    let (result, trace) = net.result(3, id);
    assert_eq!(result, Err(LookupError::NotFound));
    assert!(!trace.queries.is_empty());

    // A second lookup of a found target is answered from the cache.
    let target = Target::Name(format!("n{}", 13));
    let id = net.lookup(0, target.clone());
    let (result, trace) = net.result(0, id);
    assert!(result.is_ok());
    assert_eq!(trace.hops, 0);
    for node in &net.nodes {
        let stats = node.stats();
        assert_eq!(stats.malformed, 0);
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }
}

impl Net {
    /// Joins nodes `from..to`, each through one earlier live node, 100 ms
    /// apart, then lets them settle for `settle`.
    fn join(&mut self, from: usize, to: usize, settle: Duration) {
        for i in from..to {
            let live: Vec<usize> = (0..i).filter(|&j| !self.down[j]).collect();
            let boot = self.addrs[live[(i * 31) % live.len()]];
            self.nodes[i].bootstrap(self.now, &[boot]);
            self.drain(i);
            let until = self.now + Duration::from_millis(100);
            self.run_until(until);
        }
        let until = self.now + settle;
        self.run_until(until);
    }

    fn find(&mut self, i: usize, target: Target) -> Result<NodeRecord, LookupError> {
        let id = self.lookup(i, target);
        self.result(i, id).0
    }
}

#[test]
fn lookups_succeed_after_a_fifth_of_the_nodes_leave_and_others_join() {
    let n = 50;
    let mut net = Net::new(n, test_config());
    net.join(1, 40, Duration::from_secs(10));
    // Eight nodes vanish without a word; ten new ones join.
    for i in (3..40).step_by(5).take(8) {
        net.down[i] = true;
        net.update_timer(i);
    }
    net.join(40, n, Duration::from_secs(20));
    let live: Vec<usize> = (0..n).filter(|&i| !net.down[i]).collect();
    let mut failures = Vec::new();
    for (k, &i) in live.iter().enumerate() {
        let j = live[(k * 7 + 3) % live.len()];
        if i == j {
            continue;
        }
        for target in [
            Target::Id(net.nodes[j].node_id()),
            Target::Name(format!("n{j}")),
        ] {
            if let Err(e) = net.find(i, target.clone()) {
                failures.push((i, target, e));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    // The silent nodes were noticed.
    let timeouts: u64 = live
        .iter()
        .map(|&i| net.nodes[i].stats().query_timeouts)
        .sum();
    assert!(timeouts > 0);
}

#[test]
fn records_are_republished_before_they_expire_and_follow_endpoint_changes() {
    let config = DhtConfig {
        republish_interval: Duration::from_secs(30),
        record_lifetime: Duration::from_secs(40),
        refresh_interval: Duration::from_secs(60),
        ..test_config()
    };
    let n = 20;
    let mut net = Net::new(n, config);
    net.join(1, n, Duration::from_secs(5));
    let first = net.find(0, Target::Name("n7".into())).unwrap();
    // Past two lifetimes: only republished records can still be found.
    let until = net.now + Duration::from_secs(100);
    net.run_until(until);
    let later = net.find(0, Target::Name("n7".into())).unwrap();
    assert!(later.sequence > first.sequence);
    assert!(later.expires > first.expires);
    // A new endpoint is published at once.
    let new_endpoint: SocketAddr = "198.18.9.9:4801".parse().unwrap();
    net.nodes[7].set_endpoints(net.now, vec![new_endpoint]);
    net.drain(7);
    let until = net.now + Duration::from_secs(2);
    net.run_until(until);
    let record = net.find(3, Target::Name("n7".into())).unwrap();
    assert_eq!(record.endpoints[0], new_endpoint);
    assert!(
        record.endpoints.contains(&net.addrs[7]),
        "reflexive address kept"
    );
    let own = net.nodes[7].own_record().unwrap();
    assert_eq!(own.sequence, record.sequence);
}

#[test]
fn records_of_early_nodes_move_to_the_closest_nodes_as_the_network_grows() {
    let n = 120;
    let mut net = Net::new(n, test_config());
    net.join(1, 12, Duration::from_secs(5));
    net.join(12, n, Duration::from_secs(130));
    // For every early node, its name record is held by most of the
    // replication (8) nodes closest to the name's key today.
    for early in 0..12 {
        let target = Target::Name(format!("n{early}"));
        let key = target.key();
        let mut by_distance: Vec<usize> = (0..n).filter(|&j| j != early).collect();
        by_distance.sort_by_key(|&j| {
            let id = net.nodes[j].node_id();
            let mut d = [0u8; 32];
            for (o, (a, b)) in d.iter_mut().zip(id.as_bytes().iter().zip(key.0.iter())) {
                *o = a ^ b;
            }
            d
        });
        let holders = by_distance[..8]
            .iter()
            .filter(|&&j| net.nodes[j].cached(net.now, &target).is_some())
            .count();
        assert!(
            holders >= 5,
            "n{early}: {holders} of the 8 closest hold its record"
        );
    }
}

/// Scale check (not part of the default run): `DHT_NODES` nodes (default
/// 2,000) with access delays of 5 to 150 ms each (RTT 10 to 300 ms), each
/// joining through one random earlier node, then random lookups by id.
/// Prints cost and quality; run with
/// `cargo test --release -p weft-core --test dht -- --ignored --nocapture`.
#[test]
#[ignore]
fn scale() {
    let n: usize = std::env::var("DHT_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let wall = Instant::now();
    let mut net = Net::new(n, DhtConfig::default());
    if std::env::var_os("DHT_SHARED_CERTS").is_some() {
        let cache = weft_core::dht::CertificateCache::new(2 * n);
        net.nodes = std::mem::take(&mut net.nodes)
            .into_iter()
            .map(|d| d.with_certificate_cache(cache.clone()))
            .collect();
    }
    println!("setup {:?}", wall.elapsed());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let access: Vec<Duration> = (0..n)
        .map(|_| Duration::from_micros(5_000 + next() % 145_000))
        .collect();
    let access2 = access.clone();
    net.latency = Box::new(move |a, b| access2[a] + access2[b]);
    let wall = Instant::now();
    for i in 1..n {
        let boot = net.addrs[(next() % i as u64) as usize];
        net.nodes[i].bootstrap(net.now, &[boot]);
        net.drain(i);
        let until = net.now + Duration::from_millis(20);
        net.run_until(until);
    }
    let until = net.now + Duration::from_secs(30);
    net.run_until(until);
    let joined = net.nodes.iter().filter(|d| d.is_joined()).count();
    let queries: u64 = net.nodes.iter().map(|d| d.stats().queries).sum();
    let tx: u64 = net.nodes.iter().map(|d| d.stats().tx).sum();
    println!(
        "joins: {joined}/{n} in {:?} wall; queries per node {:.1}, datagrams per node {:.1}",
        wall.elapsed(),
        queries as f64 / n as f64,
        tx as f64 / n as f64
    );
    let contacts: usize = net.nodes.iter().map(|d| d.contacts().len()).sum();
    println!("contacts per node {:.1}", contacts as f64 / n as f64);
    let wall = Instant::now();
    let mut ok = 0;
    let mut hops = Vec::new();
    let mut ratio = Vec::new();
    let mut elapsed = Vec::new();
    let lookups = 300;
    let mut rtts: Vec<Duration> = Vec::new();
    for _ in 0..lookups {
        let i = (next() % n as u64) as usize;
        let j = (next() % n as u64) as usize;
        rtts.push((access[i] + access[j]) * 2);
        let id = net.lookup(i, Target::Id(net.nodes[j].node_id()));
        let (result, trace) = net.result(i, id);
        if result.is_ok() {
            ok += 1;
        } else {
            let target = net.nodes[j].node_id();
            let knowers = net
                .nodes
                .iter()
                .filter(|d| d.contacts().iter().any(|c| c.id == target))
                .count();
            let holders = net
                .nodes
                .iter()
                .filter(|d| d.cached(net.now, &Target::Id(target)).is_some())
                .count();
            println!(
                "FAILED {i} -> {j} ({target:?}): {result:?}; {knowers} know it, {holders} hold its record; joined {}; its contacts {}",
                net.nodes[j].is_joined(),
                net.nodes[j].contacts().len()
            );
            let knowers: Vec<_> = net
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, d)| d.contacts().iter().any(|c| c.id == target))
                .map(|(k, d)| (k, d.node_id()))
                .collect();
            println!("   knowers {knowers:?}");
            for q in &trace.queries {
                println!(
                    "   {:?} depth {} after {:?} rtt {:?} {:?}",
                    q.node, q.depth, q.sent_after, q.rtt, q.outcome
                );
            }
        }
        hops.push(trace.hops);
        elapsed.push(trace.elapsed);
        ratio.push(trace.queries.len());
    }
    rtts.sort();
    elapsed.sort();
    hops.sort();
    let median_rtt = rtts[rtts.len() / 2];
    println!(
        "lookups {ok}/{lookups} ok in {:?} wall; hops mean {:.2} p99 {}; latency median {:?} p99 {:?}; median pair RTT {:?} (ratio {:.2}); queries per lookup {:.1}",
        wall.elapsed(),
        hops.iter().sum::<u32>() as f64 / hops.len() as f64,
        hops[hops.len() * 99 / 100],
        elapsed[elapsed.len() / 2],
        elapsed[elapsed.len() * 99 / 100],
        median_rtt,
        elapsed[elapsed.len() / 2].as_secs_f64() / median_rtt.as_secs_f64(),
        ratio.iter().sum::<usize>() as f64 / ratio.len() as f64,
    );
}
