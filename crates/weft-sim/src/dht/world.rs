//! The event loop of the DHT simulator: engines, a virtual clock and a heap
//! of timed events.
//!
//! Every input to an engine (a datagram, a timer, a join, a lookup) is
//! followed by draining it as the core's contract says: all
//! `poll_transmit`s (each becomes a delivery event half an RTT later), all
//! `poll_event`s, then `poll_timeout` (which arms one timer event per node;
//! a later deadline leaves a stale event behind, recognised and skipped when
//! it comes up). Events at the same instant run in the order they were
//! queued, so a run is a pure function of its scenario.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use weft_core::dht::{
    CertificateCache, Dht, DhtEvent, Key, LookupError, LookupId, LookupTrace, NodeRecord, Target,
};
use weft_core::{CaCertificate, CaSecret, CertificateTemplate, Ipv4Net, NodeId, SecretKey};

use super::rtt::{Place, unit};
use super::{DhtPhase, DhtProgress, DhtReport, DhtScenario, DhtSimError, KindCount};
use crate::{DEFAULT_UNIX_TIME, UNDERLAY_PORT};

/// Streams of the scenario's RNG, one per purpose, so that a change in one
/// use of randomness does not shift the others.
const STREAM_KEYS: u64 = 1;
const STREAM_PLACES: u64 = 2;
const STREAM_SCRIPT: u64 = 3;
const STREAM_NET: u64 = 4;
const STREAM_RTT_SAMPLES: u64 = 5;

/// A node asking to be woken at the same instant this many times in a row
/// has a stuck timer.
const STALL_LIMIT: u32 = 10_000;
/// Extra time after the last lookup's timeout before the run ends.
const END_MARGIN: Duration = Duration::from_secs(2);
/// Failed lookups described in the report, at most.
const MAX_FAILURES_LISTED: usize = 50;
/// How many of a failed target's nearest nodes are checked for knowing it.
const NEAREST: usize = 20;
/// Failed lookups whose every query is described.
const FAILURES_DETAILED: usize = 3;
/// How often (in joins) the probe hears about join progress.
const JOIN_PROGRESS_EVERY: usize = 1_000;

pub(super) struct World<'a> {
    scenario: &'a DhtScenario,
    base: Instant,
    /// Simulated time, nanoseconds since `base`.
    now: u64,
    seq: u64,
    events: u64,
    queue: BinaryHeap<Queued>,
    members: Vec<Member>,
    /// Indices of live members, in no particular order (for random picks).
    live: Vec<u32>,
    ca: CaSecret,
    ca_certificate: CaCertificate,
    /// One certificate cache for all engines, if the scenario shares it.
    certificates: Option<CertificateCache>,
    keys: ChaCha20Rng,
    places: ChaCha20Rng,
    script: ChaCha20Rng,
    net: ChaCha20Rng,
    pending: BTreeMap<(u32, LookupId), Pending>,
    outcomes: Vec<Outcome>,
    /// Failed lookups in words (lookup number, text), the first few.
    failures: Vec<(usize, String)>,
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    incoming: Vec<DhtEvent>,
    counters: Counters,
    joined_events: usize,
    lookups_started: usize,
    left: usize,
    /// Engine counters of departed nodes.
    departed: Departed,
    /// When each lookup phase begins (nanoseconds).
    lookup_start: u64,
}

struct Member {
    /// None once the node has left.
    dht: Option<Dht>,
    id: NodeId,
    name: String,
    ipv4: Ipv4Addr,
    place: Place,
    /// When it joined (nanoseconds).
    joined_at: u64,
    /// The earliest timer event queued for it.
    timer: Option<u64>,
    /// Lookups it has in flight.
    lookups: u32,
    /// Whether its engine reported [`DhtEvent::Joined`].
    joined: bool,
    /// Wake-ups at `stall_at`, to catch a timer that never advances.
    stall_at: u64,
    stall_count: u32,
}

#[derive(Default)]
struct Counters {
    datagrams: u64,
    bytes: u64,
    dropped_dead: u64,
    dropped_loss: u64,
    dropped_unknown: u64,
}

#[derive(Default)]
struct Tables {
    contacts_mean: f64,
    contacts_min: usize,
    stored_mean: f64,
    certificates_mean: f64,
    /// Sizes of the contact graph's components, largest first.
    components: Vec<usize>,
    /// Live nodes in no live node's routing table.
    unreferenced: usize,
    /// Live nodes whose engine has not reported joining.
    unjoined: usize,
}

#[derive(Default)]
struct Departed {
    query_timeouts: u64,
    rejected: u64,
}

struct Pending {
    /// Order of the lookup in the scenario.
    number: usize,
    started: u64,
    target: u32,
    kind: usize,
}

struct Outcome {
    number: usize,
    started: u64,
    source: u32,
    target: u32,
    kind: usize,
    result: Result<(), Failure>,
    trace: LookupTrace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    NotFound,
    NoContacts,
    TimedOut,
    WrongRecord,
}

enum What {
    Deliver { from: u32, to: u32, bytes: Vec<u8> },
    Timer { node: u32 },
    Join { node: u32 },
    Leave,
    Lookup { number: usize },
}

struct Queued {
    at: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed: the heap's top is the earliest, then the first queued.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<'a> World<'a> {
    pub(super) fn new(base: Instant, scenario: &'a DhtScenario) -> Result<Self, DhtSimError> {
        let stream = |s| {
            let mut rng = ChaCha20Rng::seed_from_u64(scenario.seed);
            rng.set_stream(s);
            rng
        };
        let mut keys = stream(STREAM_KEYS);
        let mut ca_bytes = [0u8; 32];
        keys.fill_bytes(&mut ca_bytes);
        let ca = CaSecret::new(
            ca_bytes,
            "dht-sim",
            DEFAULT_UNIX_TIME - VALID_BEFORE,
            DEFAULT_UNIX_TIME + VALID_AFTER,
        )?;
        let ca_certificate = ca.certificate().clone();
        Ok(Self {
            scenario,
            base,
            now: 0,
            seq: 0,
            events: 0,
            queue: BinaryHeap::new(),
            members: Vec::new(),
            live: Vec::new(),
            ca,
            ca_certificate,
            certificates: scenario
                .shared_certificate_cache
                .then(|| CertificateCache::new(scenario.nodes + scenario.churn_count())),
            keys,
            places: stream(STREAM_PLACES),
            script: stream(STREAM_SCRIPT),
            net: stream(STREAM_NET),
            pending: BTreeMap::new(),
            outcomes: Vec::new(),
            failures: Vec::new(),
            outgoing: Vec::new(),
            incoming: Vec::new(),
            counters: Counters::default(),
            joined_events: 0,
            lookups_started: 0,
            left: 0,
            departed: Departed::default(),
            lookup_start: 0,
        })
    }

    pub(super) fn run(
        mut self,
        probe: &mut dyn FnMut(DhtProgress),
    ) -> Result<DhtReport, DhtSimError> {
        let sc = self.scenario;
        probe(self.progress(DhtPhase::Start));

        // Join phase, with progress every JOIN_PROGRESS_EVERY joins.
        let interval = nanos(sc.join_interval);
        for i in 0..sc.nodes {
            self.push(i as u64 * interval, What::Join { node: i as u32 });
        }
        let last_join = sc.nodes.saturating_sub(1) as u64 * interval;
        let mut done = 0;
        while done < sc.nodes {
            done = (done + JOIN_PROGRESS_EVERY).min(sc.nodes);
            self.run_until((done as u64).saturating_sub(1) * interval)?;
            probe(self.progress(DhtPhase::Joining(done)));
        }
        let settled = last_join + nanos(sc.settle);
        self.run_until(settled)?;
        let tables = self.tables();
        let setup = (self.counters.datagrams, self.counters.bytes);
        probe(self.progress(DhtPhase::Settled));

        // Lookup phase, churn interleaved.
        self.lookup_start = settled;
        let phase = nanos(sc.lookup_phase) as f64;
        for number in 0..sc.lookups {
            let at = settled + ((number as f64 + 0.5) * phase / sc.lookups as f64) as u64;
            self.push(at, What::Lookup { number });
        }
        let churn = sc.churn_count();
        for k in 0..churn {
            let leave = settled + ((k as f64 + 0.25) * phase / churn as f64) as u64;
            let join = settled + ((k as f64 + 0.75) * phase / churn as f64) as u64;
            self.push(leave, What::Leave);
            self.push(
                join,
                What::Join {
                    node: (sc.nodes + k) as u32,
                },
            );
        }
        let end = settled + nanos(sc.lookup_phase) + nanos(sc.dht.lookup_timeout + END_MARGIN);
        self.run_until(end)?;
        probe(self.progress(DhtPhase::Done));
        Ok(self.report(tables, setup))
    }

    fn progress(&self, phase: DhtPhase) -> DhtProgress {
        DhtProgress {
            phase,
            simulated: Duration::from_nanos(self.now),
            events: self.events,
            live: self.live.len(),
        }
    }

    fn push(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            what,
        });
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn run_until(&mut self, until: u64) -> Result<(), DhtSimError> {
        while self.queue.peek().is_some_and(|q| q.at <= until) {
            let Some(q) = self.queue.pop() else { break };
            self.now = q.at;
            self.events += 1;
            match q.what {
                What::Deliver { from, to, bytes } => self.deliver(from, to, &bytes)?,
                What::Timer { node } => self.wake(node)?,
                What::Join { node } => self.join(node)?,
                What::Leave => self.leave(),
                What::Lookup { number } => self.lookup(number)?,
            }
        }
        self.now = self.now.max(until);
        Ok(())
    }

    fn join(&mut self, index: u32) -> Result<(), DhtSimError> {
        let now = self.instant();
        let mut key_bytes = [0u8; 64];
        self.keys.fill_bytes(&mut key_bytes);
        let secret = SecretKey::from_random(key_bytes);
        let mut seed = [0u8; 32];
        self.keys.fill_bytes(&mut seed);
        let name = format!("n{index}");
        let ipv4 = overlay_ipv4(index);
        let certificate = self.ca.sign(&CertificateTemplate {
            name: name.clone(),
            public_key: secret.public(),
            ipv4: Some(Ipv4Net {
                addr: ipv4,
                prefix_len: 16,
            }),
            groups: Vec::new(),
            not_before: DEFAULT_UNIX_TIME - VALID_BEFORE,
            not_after: DEFAULT_UNIX_TIME + VALID_AFTER,
        })?;
        let id = secret.node_id();
        let mut dht = Dht::new(
            now,
            // Wall-clock time at `now`: every node's clock agrees.
            Duration::from_secs(DEFAULT_UNIX_TIME) + Duration::from_nanos(self.now),
            secret,
            certificate,
            self.ca_certificate.clone(),
            self.scenario.dht.clone(),
            seed,
        );
        if let Some(cache) = &self.certificates {
            dht = dht.with_certificate_cache(cache.clone());
        }
        dht.set_endpoints(now, vec![underlay(index)]);
        // One random earlier live node; the first node has nobody to ask and
        // waits to be found.
        let bootstrap: Vec<SocketAddr> = if self.live.is_empty() {
            Vec::new()
        } else {
            let pick = self.live[below(&mut self.script, self.live.len())];
            vec![underlay(pick)]
        };
        dht.bootstrap(now, &bootstrap);
        let place = self.scenario.rtt.place(&mut self.places);
        debug_assert_eq!(self.members.len(), index as usize);
        self.members.push(Member {
            dht: Some(dht),
            id,
            name,
            ipv4,
            place,
            joined_at: self.now,
            timer: None,
            lookups: 0,
            joined: false,
            stall_at: 0,
            stall_count: 0,
        });
        self.live.push(index);
        self.drain(index)
    }

    fn leave(&mut self) {
        // A random live node without a lookup in flight (it could not
        // report it); only the newest joiners are spared if all are busy.
        let mut pick = None;
        for _ in 0..64 {
            let slot = below(&mut self.script, self.live.len().max(1));
            if let Some(&i) = self.live.get(slot)
                && self.members[i as usize].lookups == 0
            {
                pick = Some(slot);
                break;
            }
        }
        let Some(slot) = pick else { return };
        let index = self.live.swap_remove(slot);
        self.left += 1;
        let member = &mut self.members[index as usize];
        if let Some(dht) = member.dht.take() {
            let stats = dht.stats();
            self.departed.query_timeouts += stats.query_timeouts;
            self.departed.rejected += stats.rejected + stats.malformed;
        }
        member.timer = None;
    }

    fn lookup(&mut self, number: usize) -> Result<(), DhtSimError> {
        if self.live.len() < 2 {
            return Ok(());
        }
        let min_age = nanos(self.scenario.min_age);
        // A node that has not joined (its only bootstrap contact left before
        // answering, say) is not part of the DHT: it can neither look up
        // nor be found. Such nodes are counted in the report.
        let old_enough = |m: &Member, now: u64| {
            m.dht.is_some() && m.joined && now.saturating_sub(m.joined_at) >= min_age
        };
        let mut pair = None;
        for _ in 0..1_000 {
            let a = self.live[below(&mut self.script, self.live.len())];
            let b = self.live[below(&mut self.script, self.live.len())];
            if a != b
                && old_enough(&self.members[a as usize], self.now)
                && old_enough(&self.members[b as usize], self.now)
            {
                pair = Some((a, b));
                break;
            }
        }
        let Some((source, target)) = pair else {
            return Ok(());
        };
        let roll = unit(&mut self.script);
        let t = &self.members[target as usize];
        let kind = if roll < 0.7 {
            0
        } else if roll < 0.8 {
            1
        } else if roll < 0.9 {
            2
        } else {
            3
        };
        let what = target_of(t, kind);
        let now = self.instant();
        let member = &mut self.members[source as usize];
        let Some(dht) = member.dht.as_mut() else {
            return Ok(());
        };
        let id = dht.lookup(now, what);
        member.lookups += 1;
        self.lookups_started += 1;
        self.pending.insert(
            (source, id),
            Pending {
                number,
                started: self.now,
                target,
                kind,
            },
        );
        self.drain(source)
    }

    fn deliver(&mut self, from: u32, to: u32, bytes: &[u8]) -> Result<(), DhtSimError> {
        let now = self.instant();
        let Some(dht) = self.members[to as usize].dht.as_mut() else {
            self.counters.dropped_dead += 1;
            return Ok(());
        };
        dht.handle_datagram(now, underlay(from), bytes);
        self.drain(to)
    }

    fn wake(&mut self, node: u32) -> Result<(), DhtSimError> {
        let now = self.instant();
        let t = self.now;
        let member = &mut self.members[node as usize];
        if member.timer != Some(t) {
            return Ok(()); // stale: superseded by an earlier deadline
        }
        member.timer = None;
        let Some(dht) = member.dht.as_mut() else {
            return Ok(());
        };
        if dht.poll_timeout().is_some_and(|d| d <= now) {
            if member.stall_at == t {
                member.stall_count += 1;
                if member.stall_count > STALL_LIMIT {
                    return Err(DhtSimError::TimerStall {
                        node: node as usize,
                        at: Duration::from_nanos(t),
                    });
                }
            } else {
                member.stall_at = t;
                member.stall_count = 0;
            }
            dht.handle_timeout(now);
        }
        self.drain(node)
    }

    /// Drains `node`'s outputs after an input, then arms its timer.
    fn drain(&mut self, node: u32) -> Result<(), DhtSimError> {
        let member = &mut self.members[node as usize];
        let Some(dht) = member.dht.as_mut() else {
            return Ok(());
        };
        while let Some(out) = dht.poll_transmit() {
            self.outgoing.push(out);
        }
        while let Some(event) = dht.poll_event() {
            self.incoming.push(event);
        }
        let deadline = dht.poll_timeout();
        let mut outgoing = std::mem::take(&mut self.outgoing);
        for (to, bytes) in outgoing.drain(..) {
            self.send(node, to, bytes);
        }
        self.outgoing = outgoing;
        let mut incoming = std::mem::take(&mut self.incoming);
        for event in incoming.drain(..) {
            self.on_event(node, event);
        }
        self.incoming = incoming;
        if let Some(deadline) = deadline {
            let at = deadline
                .checked_duration_since(self.base)
                .map_or(0, nanos)
                .max(self.now);
            let member = &mut self.members[node as usize];
            if member.timer.is_none_or(|t| at < t) {
                member.timer = Some(at);
                self.push(at, What::Timer { node });
            }
        }
        Ok(())
    }

    fn send(&mut self, from: u32, to: SocketAddr, bytes: Vec<u8>) {
        self.counters.datagrams += 1;
        self.counters.bytes += bytes.len() as u64;
        let Some(to) = index_of(to).filter(|&i| (i as usize) < self.members.len()) else {
            self.counters.dropped_unknown += 1;
            return;
        };
        if self.scenario.loss > 0.0 && unit(&mut self.net) < self.scenario.loss {
            self.counters.dropped_loss += 1;
            return;
        }
        let rtt = self.scenario.rtt.rtt(
            &self.members[from as usize].place,
            &self.members[to as usize].place,
        );
        let at = self.now + nanos(rtt) / 2;
        self.push(at, What::Deliver { from, to, bytes });
    }

    fn on_event(&mut self, node: u32, event: DhtEvent) {
        match event {
            DhtEvent::Joined { .. } => {
                self.joined_events += 1;
                self.members[node as usize].joined = true;
            }
            // This world runs no multicast.
            DhtEvent::GroupMembers { .. } => {}
            DhtEvent::LookupDone {
                id, result, trace, ..
            } => {
                let Some(pending) = self.pending.remove(&(node, id)) else {
                    return; // the engine's own lookups are not reported
                };
                let member = &mut self.members[node as usize];
                member.lookups = member.lookups.saturating_sub(1);
                let want = self.members[pending.target as usize].id;
                let result = match result {
                    Ok(record) if is_of(&record, want) => Ok(()),
                    Ok(_) => Err(Failure::WrongRecord),
                    Err(LookupError::NotFound) => Err(Failure::NotFound),
                    Err(LookupError::NoContacts) => Err(Failure::NoContacts),
                    Err(LookupError::TimedOut) => Err(Failure::TimedOut),
                };
                let outcome = Outcome {
                    number: pending.number,
                    started: pending.started,
                    source: node,
                    target: pending.target,
                    kind: pending.kind,
                    result,
                    trace,
                };
                // Described now, while the network is as the lookup saw it.
                if let Err(f) = outcome.result
                    && self.failures.len() < MAX_FAILURES_LISTED
                {
                    let detailed = self.failures.len() < FAILURES_DETAILED;
                    let text = self.describe(&outcome, f, detailed);
                    self.failures.push((outcome.number, text));
                }
                self.outcomes.push(outcome);
            }
        }
    }

    /// Routing-table sizes, stored records and cached certificates over
    /// live nodes, and the shape of the contact graph: its connected
    /// components (ignoring direction) and the nodes in no one's table.
    fn tables(&self) -> Tables {
        let mut t = Tables::default();
        let (mut contacts, mut stored, mut certificates, mut n) = (0usize, 0usize, 0usize, 0usize);
        let mut min = usize::MAX;
        let index: BTreeMap<NodeId, usize> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.dht.is_some())
            .map(|(i, m)| (m.id, i))
            .collect();
        let mut parent: Vec<usize> = (0..self.members.len()).collect();
        let mut referenced = vec![false; self.members.len()];
        for (i, m) in self.members.iter().enumerate() {
            let Some(dht) = &m.dht else { continue };
            let table = dht.contacts();
            for c in &table {
                if let Some(&j) = index.get(&c.id) {
                    referenced[j] = true;
                    union(&mut parent, i, j);
                }
            }
            contacts += table.len();
            min = min.min(table.len());
            stored += dht.stored_records();
            certificates += dht.cached_certificates();
            n += 1;
        }
        let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
        for &i in index.values() {
            *sizes.entry(find(&mut parent, i)).or_default() += 1;
            if !referenced[i] {
                t.unreferenced += 1;
            }
            if !self.members[i].joined {
                t.unjoined += 1;
            }
        }
        t.components = sizes.into_values().collect();
        t.components.sort_unstable_by(|a, b| b.cmp(a));
        if n > 0 {
            let n = n as f64;
            t.contacts_mean = contacts as f64 / n;
            t.contacts_min = min;
            t.stored_mean = stored as f64 / n;
            t.certificates_mean = certificates as f64 / n;
        }
        t
    }

    /// The report; `setup` is (datagrams, bytes) sent before the lookups.
    fn report(mut self, tables: Tables, setup: (u64, u64)) -> DhtReport {
        let (datagrams_setup, bytes_setup) = setup;
        let sc = self.scenario;
        let end_tables = self.tables();
        let (rtt_median, rtt_p99) = self.rtt_distribution();
        self.outcomes.sort_by_key(|o| o.number);
        let mut by_kind = [KindCount::default(); 4];
        let (mut not_found, mut no_contacts, mut timed_out, mut wrong) = (0, 0, 0, 0);
        let mut hops = Vec::new();
        let mut latency = Vec::new();
        let mut queries = 0usize;
        let mut local = 0;
        let mut digest = Fnv::new();
        for o in &self.outcomes {
            by_kind[o.kind].started += 1;
            queries += o.trace.queries.len();
            digest.add(o.number as u64);
            digest.add(o.trace.hops.into());
            digest.add(o.trace.elapsed.as_nanos() as u64);
            digest.add(o.trace.queries.len() as u64);
            match o.result {
                Ok(()) => {
                    digest.add(0);
                    by_kind[o.kind].ok += 1;
                    hops.push(o.trace.hops);
                    latency.push(o.trace.elapsed);
                    if o.trace.hops == 0 {
                        local += 1;
                    }
                }
                Err(f) => {
                    digest.add(1 + f as u64);

                    match f {
                        Failure::NotFound => not_found += 1,
                        Failure::NoContacts => no_contacts += 1,
                        Failure::TimedOut => timed_out += 1,
                        Failure::WrongRecord => wrong += 1,
                    }
                }
            }
        }
        digest.add(self.counters.datagrams);
        hops.sort_unstable();
        latency.sort_unstable();
        let (mut query_timeouts, mut rejected) =
            (self.departed.query_timeouts, self.departed.rejected);
        for m in &self.members {
            if let Some(dht) = &m.dht {
                query_timeouts += dht.stats().query_timeouts;
                rejected += dht.stats().rejected + dht.stats().malformed;
            }
        }
        let finished = self.outcomes.len();
        DhtReport {
            nodes: sc.nodes,
            seed: sc.seed,
            left: self.left,
            joined_late: self.members.len() - sc.nodes,
            rtt_median,
            rtt_p99,
            joined_events: self.joined_events,
            contacts_mean: tables.contacts_mean,
            contacts_min: tables.contacts_min,
            stored_mean: tables.stored_mean,
            certificates_mean: tables.certificates_mean,
            components: tables.components,
            unreferenced: tables.unreferenced,
            components_end: end_tables.components,
            unreferenced_end: end_tables.unreferenced,
            unjoined: tables.unjoined,
            unjoined_end: end_tables.unjoined,
            lookups: self.lookups_started,
            ok: hops.len(),
            not_found,
            no_contacts,
            timed_out,
            wrong_record: wrong,
            unfinished: self.lookups_started - finished,
            local,
            by_kind,
            hops_mean: if hops.is_empty() {
                0.0
            } else {
                hops.iter().map(|&h| f64::from(h)).sum::<f64>() / hops.len() as f64
            },
            hops_p99: percentile(&hops, 0.99).unwrap_or(0),
            hops_max: hops.last().copied().unwrap_or(0),
            latency_median: percentile(&latency, 0.5).unwrap_or_default(),
            latency_p99: percentile(&latency, 0.99).unwrap_or_default(),
            queries_per_lookup: if finished == 0 {
                0.0
            } else {
                queries as f64 / finished as f64
            },
            datagrams: self.counters.datagrams,
            bytes: self.counters.bytes,
            datagrams_setup,
            bytes_setup,
            datagrams_lookup_phase: self.counters.datagrams - datagrams_setup,
            dropped_dead: self.counters.dropped_dead,
            dropped_loss: self.counters.dropped_loss,
            dropped_unknown: self.counters.dropped_unknown,
            query_timeouts,
            rejected,
            nodes_total: self.members.len(),
            simulated: Duration::from_nanos(self.now),
            events: self.events,
            digest: digest.finish(),
            failures: {
                self.failures.sort_by_key(|(number, _)| *number);
                self.failures.drain(..).map(|(_, text)| text).collect()
            },
        }
    }

    /// One failed lookup in words, for finding out why.
    fn describe(&self, o: &Outcome, f: Failure, detailed: bool) -> String {
        let target = &self.members[o.target as usize];
        let now = self.instant();
        let wanted = target_of(target, o.kind);
        let key = wanted.key();
        // Ranks (by XOR distance to the key, among live nodes) of the nodes
        // that hold the record: a record far from the key's closest nodes is
        // one a lookup will not find.
        let mut by_distance: Vec<(Key, usize)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.dht.is_some())
            .map(|(i, m)| (xor(&key, m.id.as_bytes()), i))
            .collect();
        by_distance.sort_unstable();
        let ranks: Vec<String> = by_distance
            .iter()
            .enumerate()
            .filter(|&(_, &(_, i))| {
                i != o.target as usize
                    && self.members[i]
                        .dht
                        .as_ref()
                        .is_some_and(|d| d.cached(now, &wanted).is_some())
            })
            .map(|(rank, _)| (rank + 1).to_string())
            .take(12)
            .collect();
        let holders = ranks.len();
        let ranks = ranks.join(" ");
        // Each query of the first few failures: whom (node and its distance
        // rank now), at which depth, and what came back.
        let mut queries = String::new();
        if detailed {
            let rank_of: BTreeMap<NodeId, usize> = by_distance
                .iter()
                .enumerate()
                .map(|(rank, &(_, i))| (self.members[i].id, rank + 1))
                .collect();
            for q in &o.trace.queries {
                let rank = rank_of
                    .get(&q.node)
                    .map_or_else(|| "gone".to_owned(), |r| format!("rank {r}"));
                let node = index_of(q.endpoint).map_or_else(|| "?".to_owned(), |i| format!("n{i}"));
                let _ = write!(
                    queries,
                    "\n    {node} ({rank}) depth {} at +{} {:?}",
                    q.depth,
                    super::ms(q.sent_after),
                    q.outcome
                );
            }
        }
        // Whether the target is known where a lookup for its id ends: in
        // the routing tables of the 20 live nodes closest to its id.
        let own_key = Key(*target.id.as_bytes());
        let mut near: Vec<(Key, usize)> = self
            .members
            .iter()
            .enumerate()
            .filter(|&(i, m)| m.dht.is_some() && i != o.target as usize)
            .map(|(i, m)| (xor(&own_key, m.id.as_bytes()), i))
            .collect();
        near.sort_unstable();
        let known_by = near
            .iter()
            .take(NEAREST)
            .filter(|&&(_, i)| {
                self.members[i]
                    .dht
                    .as_ref()
                    .is_some_and(|d| d.contacts().iter().any(|c| c.id == target.id))
            })
            .count();
        let table = target
            .dht
            .as_ref()
            .map_or_else(|| "gone".to_owned(), |d| d.contacts().len().to_string());
        let answered = o.trace.queries.iter().filter(|q| q.rtt.is_some()).count();
        let max_depth = o.trace.queries.iter().map(|q| q.depth).max().unwrap_or(0);
        format!(
            "lookup {} from n{} for n{} by {}: {f:?} after {} queries ({answered} answered, depth {max_depth}), {}; target came at {:.1} s{}, lookup started at {:.1} s; at its end {holders} other live nodes held its record, at distance ranks {ranks} (1: closest to the key), the target had {table} contacts and was in the tables of {known_by} of the {NEAREST} nodes closest to its id",
            o.number,
            o.source,
            o.target,
            ["id", "name", "IPv4", "IPv6"][o.kind],
            o.trace.queries.len(),
            super::ms(o.trace.elapsed),
            Duration::from_nanos(target.joined_at).as_secs_f64(),
            if target.dht.is_some() {
                ""
            } else {
                " (since left)"
            },
            Duration::from_nanos(o.started).as_secs_f64(),
        ) + &queries
    }

    /// Median and 99th percentile RTT of random pairs of the initial nodes.
    fn rtt_distribution(&self) -> (Duration, Duration) {
        let n = self.scenario.nodes.min(self.members.len());
        if n < 2 {
            return (Duration::ZERO, Duration::ZERO);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(self.scenario.seed);
        rng.set_stream(STREAM_RTT_SAMPLES);
        let mut samples = Vec::with_capacity(self.scenario.rtt_samples);
        while samples.len() < self.scenario.rtt_samples {
            let a = below(&mut rng, n);
            let b = below(&mut rng, n);
            if a != b {
                samples.push(
                    self.scenario
                        .rtt
                        .rtt(&self.members[a].place, &self.members[b].place),
                );
            }
        }
        samples.sort_unstable();
        (
            percentile(&samples, 0.5).unwrap_or_default(),
            percentile(&samples, 0.99).unwrap_or_default(),
        )
    }
}

/// What a lookup of `kind` (id, name, IPv4, IPv6) for `m` asks.
fn target_of(m: &Member, kind: usize) -> Target {
    match kind {
        0 => Target::Id(m.id),
        1 => Target::Name(m.name.clone()),
        2 => Target::Ipv4(m.ipv4),
        _ => Target::Ipv6(m.id.overlay_ipv6()),
    }
}

fn xor(key: &Key, id: &[u8; 32]) -> Key {
    let mut out = [0u8; 32];
    for (o, (a, b)) in out.iter_mut().zip(key.0.iter().zip(id.iter())) {
        *o = a ^ b;
    }
    Key(out)
}

/// Union-find: the root of `i`'s set (with path halving).
fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

fn is_of(record: &NodeRecord, want: NodeId) -> bool {
    record.node_id() == want
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// A uniform index below `n` (`n` > 0); the tiny modulo bias does not matter
/// for picking nodes.
fn below(rng: &mut impl Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Node `i`'s underlay endpoint: 198.18.0.0/15 + `i + 1`, port 4800.
fn underlay(index: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(UNDERLAY_BASE) + index + 1);
    SocketAddr::V4(SocketAddrV4::new(ip, UNDERLAY_PORT))
}

/// The node index of an underlay endpoint.
fn index_of(addr: SocketAddr) -> Option<u32> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    if addr.port() != UNDERLAY_PORT {
        return None;
    }
    let offset = u32::from(ip).checked_sub(u32::from(UNDERLAY_BASE))?;
    if offset == 0 || offset >= 1 << 17 {
        return None;
    }
    Some(offset - 1)
}

/// Node `i`'s overlay IPv4 address: 198.19.0.0/16 + `i + 1`.
fn overlay_ipv4(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(OVERLAY_BASE) + index + 1)
}

const UNDERLAY_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
const OVERLAY_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
/// Certificate validity around the simulation's start, seconds.
const VALID_BEFORE: u64 = 3_600;
const VALID_AFTER: u64 = 30 * 86_400;

/// FNV-1a over u64 words: a stable digest (std's hashers are not promised
/// to stay the same across releases).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, word: u64) {
        for b in word.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underlay_addresses_map_back_to_their_node() {
        for i in [0u32, 1, 255, 256, 65_533, 100_000] {
            assert_eq!(index_of(underlay(i)), Some(i));
        }
        assert_eq!(underlay(0).to_string(), "198.18.0.1:4800");
        assert_eq!(overlay_ipv4(0), Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(overlay_ipv4(65_533), Ipv4Addr::new(198, 19, 255, 254));
        assert_eq!(index_of("198.18.0.0:4800".parse().unwrap()), None);
        assert_eq!(index_of("10.0.0.1:4800".parse().unwrap()), None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v[..1], 0.99), Some(1));
        assert_eq!(percentile::<u32>(&[], 0.5), None);
    }
}
