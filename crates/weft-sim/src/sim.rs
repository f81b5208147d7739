//! The simulated world: hosts running weft-core nodes, the virtual clock,
//! the event queue and the links between hosts.
//!
//! One thread drives everything. Time is a base [`Instant`], given once by
//! the caller, plus a virtual offset; the simulator never reads the real
//! clock and never sleeps: [`Sim::step`] jumps to the next event. Events are
//! ordered by time, then by the order they were scheduled, so one seed gives
//! one trace. Randomness comes from the seed alone: node seeds from a master
//! ChaCha20 stream, link impairments from one stream per link direction.
//!
//! Each host follows the core's call contract: after every input the
//! simulator drains `poll_transmit`, `poll_tun` and `poll_event`, then
//! schedules a wake-up at `poll_timeout`. Datagrams go through the link from
//! the sender's host to the host that holds the destination address when
//! they are sent, and reach whoever holds that address when they arrive.
//! IP packets a node writes to its TUN are recorded with their arrival time;
//! events are recorded too.
//!
//! Log lines are emitted inside a span carrying the simulated time and the
//! host's name. If the thread panics while a [`Sim`] is alive (a failed
//! assertion), the seed is printed so the run can be replayed with
//! `WEFT_SIM_SEED`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tracing::{debug, trace, warn};
use weft_core::{Event, Node, NodeConfig, NodeError, NodeId, PeerStatus, SessionState, TimerKind};

use crate::flow::{
    FLOW_DESTINATION_PORT, FlowId, FlowReport, FlowSpec, flow_payload, parse_flow_payload,
};
use crate::link::{DropReason, LinkConfig, LinkState, LinkStats};
use crate::nat::{Nat, NatConfig, NatId};
use crate::packet::{parse_udp, set_dscp, udp_packet};

/// The wall-clock time (unix seconds) at the start of a simulation, unless
/// [`Sim::with_unix_time`] says otherwise: a fixed date, so certificates and
/// traces do not depend on when the test runs.
pub const DEFAULT_UNIX_TIME: u64 = 1_800_000_000;

/// The UDP port every simulated node listens on.
pub const UNDERLAY_PORT: u16 = 4800;

/// The environment variable that overrides a test's seed.
pub const SEED_ENV: &str = "WEFT_SIM_SEED";

/// A simulated host (one node and its underlay address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub usize);

/// An IP packet a node wrote to its TUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunDelivery {
    /// When, in simulated time.
    pub at: Duration,
    /// The packet.
    pub packet: Vec<u8>,
}

/// A datagram recorded by a capture, with what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When it was sent, in simulated time.
    pub sent_at: Duration,
    /// The sender's underlay address.
    pub from: SocketAddr,
    /// The destination address.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
    /// When each copy arrived (two for a duplicate).
    pub delivered: Vec<Duration>,
    /// Why a copy was lost, if one was.
    pub dropped: Option<DropReason>,
}

/// Names a capture started with [`Sim::capture`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaptureId(usize);

/// Why a simulator operation was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SimError {
    /// The underlay address is already held by a host.
    AddressInUse(SocketAddr),
    /// The host is not running (crashed).
    HostDown(HostId),
    /// The host is running; crash it first.
    HostUp(HostId),
    /// weft-core refused the node's configuration.
    Node(NodeError),
    /// The host's certificate gives it no overlay IPv4 address.
    NoOverlayIpv4(HostId),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressInUse(addr) => write!(f, "address {addr} is already in use"),
            Self::HostDown(h) => write!(f, "host {} is down", h.0),
            Self::HostUp(h) => write!(f, "host {} is running", h.0),
            Self::Node(e) => write!(f, "node refused: {e}"),
            Self::NoOverlayIpv4(h) => write!(f, "host {} has no overlay IPv4 address", h.0),
        }
    }
}

impl std::error::Error for SimError {}

impl From<NodeError> for SimError {
    fn from(e: NodeError) -> Self {
        Self::Node(e)
    }
}

/// Datagrams and UDP payload bytes a host sent and received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostTraffic {
    /// Datagrams sent.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Datagrams received (delivered to the host's node).
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
}

/// Counters of the simulator itself (links count their own drops).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed.
    pub events: u64,
    /// Datagrams nodes sent.
    pub datagrams_sent: u64,
    /// Datagram copies handed to nodes.
    pub datagrams_delivered: u64,
    /// Datagrams to an address no host held.
    pub dropped_no_host: u64,
    /// The largest datagram any node sent (UDP payload bytes).
    pub largest_datagram: usize,
    /// Bytes of those datagrams, by address (what nodes sent to, say, a
    /// spoofed or an attacker's address).
    pub bytes_to_nobody: BTreeMap<SocketAddr, u64>,
    /// Datagrams that arrived at a crashed host.
    pub dropped_host_down: u64,
    /// Datagrams a NAT router did not let in (no mapping for their source),
    /// or sent to another router's private LAN.
    pub dropped_nat: u64,
    /// Timers a node asked for again at the same instant after it had just
    /// been woken for it (a core bug: the simulator moves them 1 ms on).
    pub timer_stalls: u64,
}

/// The simulated world.
pub struct Sim {
    base: Instant,
    now: Duration,
    unix_time: u64,
    seed: u64,
    rng: ChaCha20Rng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    sequence: u64,
    hosts: Vec<Host>,
    addresses: BTreeMap<SocketAddr, HostId>,
    next_address: u32,
    default_link: LinkConfig,
    links: BTreeMap<(HostId, HostId), LinkState>,
    captures: Vec<Capture>,
    flows: Vec<FlowReport>,
    stats: SimStats,
    digest: u64,
    /// NAT routers (see `nat.rs`), and which hosts sit behind which.
    nats: Vec<Nat>,
    behind: BTreeMap<HostId, NatId>,
}

/// A change to one direction of a link, applied now
/// ([`Sim::change_link`]) or at a given time
/// ([`Sim::schedule_link_change`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LinkChange {
    /// The link goes down; what is in flight on it is lost.
    Down,
    /// The link comes back up.
    Up,
    /// Random loss becomes this probability.
    Loss(f64),
    /// One-way latency becomes this.
    Latency(Duration),
    /// The whole config is replaced (a config that is down cuts the link).
    Config(LinkConfig),
}

struct Host {
    name: String,
    address: SocketAddr,
    config: NodeConfig,
    node: Option<Node>,
    /// Bumped on every crash and restart, so stale timers are ignored.
    incarnation: u64,
    /// The wake-up currently scheduled.
    timer: Option<Duration>,
    /// When the last timer fired, to spot a node that asks again at once;
    /// cleared by any other input, which may well make work due at once.
    last_wake: Option<Duration>,
    tun: Vec<TunDelivery>,
    events: Vec<(Duration, Event)>,
    /// UDP payload bytes this host sent and received, for benchmarks.
    traffic: HostTraffic,
}

struct Capture {
    from: HostId,
    to: HostId,
    active: bool,
    items: Vec<Captured>,
}

struct Scheduled {
    at: Duration,
    sequence: u64,
    action: Action,
}

enum Action {
    Deliver(Box<Delivery>),
    Timer {
        host: HostId,
        incarnation: u64,
    },
    Tun {
        host: HostId,
        packet: Vec<u8>,
    },
    Link {
        from: HostId,
        to: HostId,
        change: LinkChange,
    },
}

struct Delivery {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    /// The link it travels on and how often that link had been cut when
    /// it was sent; `None` for injected datagrams.
    link: Option<((HostId, HostId), u64)>,
    /// Captures to tell of its fate: (capture, item).
    captures: Vec<(usize, usize)>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

/// Reads the seed from `WEFT_SIM_SEED` (decimal, or hex with `0x`), or
/// returns `default`.
pub fn seed_from_env(default: u64) -> u64 {
    let Ok(text) = std::env::var(SEED_ENV) else {
        return default;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(seed) => seed,
        Err(_) => {
            warn!(
                value = text,
                "{SEED_ENV} is not a number; using the default seed"
            );
            default
        }
    }
}

impl Sim {
    /// An empty world at `base`, with randomness from `seed`.
    pub fn new(base: Instant, seed: u64) -> Self {
        Self::with_unix_time(base, seed, DEFAULT_UNIX_TIME)
    }

    /// An empty world whose wall clock reads `unix_time` at `base`.
    pub fn with_unix_time(base: Instant, seed: u64, unix_time: u64) -> Self {
        Self {
            base,
            now: Duration::ZERO,
            unix_time,
            seed,
            rng: ChaCha20Rng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            sequence: 0,
            hosts: Vec::new(),
            addresses: BTreeMap::new(),
            next_address: 1,
            default_link: LinkConfig::default(),
            links: BTreeMap::new(),
            captures: Vec::new(),
            flows: Vec::new(),
            stats: SimStats::default(),
            digest: DIGEST_START,
            nats: Vec::new(),
            behind: BTreeMap::new(),
        }
    }

    /// Adds a NAT router (see `nat.rs`); put hosts behind it with
    /// [`Sim::put_behind_nat`].
    pub fn add_nat(&mut self, config: NatConfig) -> NatId {
        self.nats.push(Nat::new(config));
        NatId(self.nats.len() - 1)
    }

    /// Puts `host` behind router `nat`, on its LAN: its address becomes
    /// private to that LAN, and what it sends elsewhere leaves from the
    /// router's public address.
    pub fn put_behind_nat(&mut self, host: HostId, nat: NatId) {
        self.behind.insert(host, nat);
    }

    /// Router `nat`'s public address.
    pub fn nat_public(&self, nat: NatId) -> IpAddr {
        self.nats[nat.0].config.public
    }

    /// Router `nat` reboots: it forgets every mapping.
    pub fn reboot_nat(&mut self, nat: NatId) {
        self.nats[nat.0].flush();
    }

    /// The seed this world runs from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The current simulated instant (what the nodes see as `now`).
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// The instant `offset` after the start.
    pub fn instant(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    /// How long after the start `instant` is (zero if before).
    pub fn offset_of(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.base)
    }

    /// The wall clock, unix seconds, as certificates see it.
    pub fn unix_time(&self) -> u64 {
        self.unix_wall_clock().as_secs()
    }

    /// The wall clock, time since the unix epoch, as the nodes are told it.
    pub fn unix_wall_clock(&self) -> Duration {
        Duration::from_secs(self.unix_time) + self.now
    }

    /// A digest of every event processed so far: two runs with equal
    /// digests saw the same datagrams, timers and packets at the same times.
    pub fn trace_digest(&self) -> u64 {
        self.digest
    }

    /// The simulator's own counters.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// A fresh underlay address in 198.18.0.0/16.
    pub fn allocate_address(&mut self) -> SocketAddr {
        loop {
            let n = self.next_address;
            self.next_address = self.next_address.wrapping_add(1) % 0x1_0000;
            let [hi, lo] = (n as u16).to_be_bytes();
            if lo == 0 || lo == 255 {
                continue;
            }
            let addr = SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(198, 18, hi, lo),
                UNDERLAY_PORT,
            ));
            if !self.addresses.contains_key(&addr) {
                return addr;
            }
        }
    }

    /// Adds a host at `address` running a node made from `config`; `name`
    /// is used in logs.
    pub fn add_host(
        &mut self,
        name: &str,
        address: SocketAddr,
        config: NodeConfig,
    ) -> Result<HostId, SimError> {
        if self.addresses.contains_key(&address) {
            return Err(SimError::AddressInUse(address));
        }
        let id = HostId(self.hosts.len());
        let node = self.new_node(config.clone())?;
        self.hosts.push(Host {
            name: name.to_owned(),
            address,
            config,
            node: Some(node),
            incarnation: 0,
            timer: None,
            last_wake: None,
            tun: Vec::new(),
            events: Vec::new(),
            traffic: HostTraffic::default(),
        });
        self.addresses.insert(address, id);
        self.drain(id);
        Ok(id)
    }

    /// Every host, in the order they were added.
    pub fn hosts(&self) -> impl Iterator<Item = HostId> + use<> {
        (0..self.hosts.len()).map(HostId)
    }

    /// The host's name.
    pub fn name(&self, host: HostId) -> &str {
        &self.hosts[host.0].name
    }

    /// The host's underlay address.
    pub fn address(&self, host: HostId) -> SocketAddr {
        self.hosts[host.0].address
    }

    /// The config the host's node was (and on restart will be) made from.
    pub fn config(&self, host: HostId) -> &NodeConfig {
        &self.hosts[host.0].config
    }

    /// The host's node id.
    pub fn node_id(&self, host: HostId) -> NodeId {
        self.hosts[host.0].config.secret_key.node_id()
    }

    /// The host's overlay IPv6 address.
    pub fn overlay_ipv6(&self, host: HostId) -> Ipv6Addr {
        self.node_id(host).overlay_ipv6()
    }

    /// The host's overlay IPv4 address, if its certificate has one.
    pub fn overlay_ipv4(&self, host: HostId) -> Option<Ipv4Addr> {
        self.hosts[host.0]
            .config
            .certificate
            .ipv4()
            .map(|net| net.addr)
    }

    /// The host's node, or `None` while it is crashed. Read-only: inputs go
    /// through the simulator so that outputs are drained.
    pub fn node(&self, host: HostId) -> Option<&Node> {
        self.hosts[host.0].node.as_ref()
    }

    /// Runs `f` on the host's node (for commands the simulator has no
    /// method for), then drains it. `f` gets the current instant.
    pub fn with_node<T>(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut Node, Instant) -> T,
    ) -> Result<T, SimError> {
        let now = self.now();
        let node = self.hosts[host.0]
            .node
            .as_mut()
            .ok_or(SimError::HostDown(host))?;
        let out = f(node, now);
        self.hosts[host.0].last_wake = None;
        self.drain(host);
        Ok(out)
    }

    /// What `host` knows about `peer`, if it has an entry for it.
    pub fn peer_status(&self, host: HostId, peer: HostId) -> Option<PeerStatus> {
        let id = self.node_id(peer);
        self.node(host)?
            .peers(self.now())
            .into_iter()
            .find(|p| p.node_id == Some(id))
    }

    /// Whether `host` has an established session with `peer`.
    pub fn established(&self, host: HostId, peer: HostId) -> bool {
        self.peer_status(host, peer)
            .is_some_and(|p| p.state == SessionState::Established)
    }

    /// Whether every running host has an established session with every
    /// other host in `hosts`.
    pub fn all_established(&self, hosts: &[HostId]) -> bool {
        hosts
            .iter()
            .all(|&a| hosts.iter().all(|&b| a == b || self.established(a, b)))
    }

    /// The IP packets the host's node wrote to its TUN, with their times.
    pub fn tun(&self, host: HostId) -> &[TunDelivery] {
        &self.hosts[host.0].tun
    }

    /// Takes the recorded TUN packets, leaving the record empty.
    pub fn take_tun(&mut self, host: HostId) -> Vec<TunDelivery> {
        std::mem::take(&mut self.hosts[host.0].tun)
    }

    /// The events the host's node emitted, with their times.
    pub fn events(&self, host: HostId) -> &[(Duration, Event)] {
        &self.hosts[host.0].events
    }

    /// Moves a host to a new underlay address (roaming). Datagrams in
    /// flight to the old address are lost.
    pub fn move_host(&mut self, host: HostId, address: SocketAddr) -> Result<(), SimError> {
        if self.addresses.contains_key(&address) {
            return Err(SimError::AddressInUse(address));
        }
        let old = std::mem::replace(&mut self.hosts[host.0].address, address);
        self.addresses.remove(&old);
        self.addresses.insert(address, host);
        debug!(host = %self.hosts[host.0].name, %old, new = %address, "host moved");
        Ok(())
    }

    /// Moves a host to a freshly allocated address and returns it.
    pub fn roam(&mut self, host: HostId) -> SocketAddr {
        let address = self.allocate_address();
        // A fresh address is never in use.
        let _ = self.move_host(host, address);
        address
    }

    /// Crashes a host: its node and all its state are gone; datagrams to it
    /// are lost until it restarts.
    pub fn crash(&mut self, host: HostId) -> Result<(), SimError> {
        let h = &mut self.hosts[host.0];
        if h.node.take().is_none() {
            return Err(SimError::HostDown(host));
        }
        h.incarnation += 1;
        h.timer = None;
        h.last_wake = None;
        debug!(host = %h.name, "host crashed");
        Ok(())
    }

    /// Restarts a crashed host: a new node from the same config (keys,
    /// certificate, peers) and a fresh seed.
    pub fn restart(&mut self, host: HostId) -> Result<(), SimError> {
        if self.hosts[host.0].node.is_some() {
            return Err(SimError::HostUp(host));
        }
        let node = self.new_node(self.hosts[host.0].config.clone())?;
        let h = &mut self.hosts[host.0];
        h.node = Some(node);
        h.incarnation += 1;
        debug!(host = %h.name, "host restarted");
        self.drain(host);
        Ok(())
    }

    /// The config of links that have none of their own.
    pub fn set_default_link(&mut self, config: LinkConfig) {
        self.default_link = config;
    }

    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: HostId, to: HostId, config: LinkConfig) {
        self.link_state(from, to).config = Some(config);
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_link_both(&mut self, a: HostId, b: HostId, config: LinkConfig) {
        self.set_link(a, b, config.clone());
        self.set_link(b, a, config);
    }

    /// The config of the link from `from` to `to`, for editing.
    pub fn link_mut(&mut self, from: HostId, to: HostId) -> &mut LinkConfig {
        let default = self.default_link.clone();
        self.link_state(from, to).config.get_or_insert(default)
    }

    /// The config the link from `from` to `to` follows.
    pub fn link(&self, from: HostId, to: HostId) -> &LinkConfig {
        self.links
            .get(&(from, to))
            .and_then(|l| l.config.as_ref())
            .unwrap_or(&self.default_link)
    }

    /// Counters of the link from `from` to `to`.
    pub fn link_stats(&self, from: HostId, to: HostId) -> LinkStats {
        self.links
            .get(&(from, to))
            .map(|l| l.stats.clone())
            .unwrap_or_default()
    }

    /// Cuts the link from `from` to `to`; what is in flight on it is lost.
    pub fn cut_one_way(&mut self, from: HostId, to: HostId) {
        self.link_mut(from, to).up = false;
        self.link_state(from, to).cuts += 1;
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: HostId, b: HostId) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Brings the link from `from` to `to` back up.
    pub fn restore_one_way(&mut self, from: HostId, to: HostId) {
        self.link_mut(from, to).up = true;
    }

    /// Brings both directions between `a` and `b` back up.
    pub fn restore(&mut self, a: HostId, b: HostId) {
        self.restore_one_way(a, b);
        self.restore_one_way(b, a);
    }

    /// Changes the link from `from` to `to` now.
    pub fn change_link(&mut self, from: HostId, to: HostId, change: LinkChange) {
        debug!(t = %SimTime(self.now), from = %self.hosts[from.0].name, to = %self.hosts[to.0].name, ?change, "link change");
        match change {
            LinkChange::Down => self.cut_one_way(from, to),
            LinkChange::Up => self.restore_one_way(from, to),
            LinkChange::Loss(loss) => self.link_mut(from, to).loss = loss,
            LinkChange::Latency(latency) => self.link_mut(from, to).latency = latency,
            LinkChange::Config(config) => {
                let was_up = self.link(from, to).up;
                let down = !config.up;
                self.set_link(from, to, config);
                if was_up && down {
                    self.link_state(from, to).cuts += 1;
                }
            }
        }
    }

    /// Changes the link from `from` to `to` at simulated time `at` (not
    /// before now), in order with the other events of that instant.
    pub fn schedule_link_change(
        &mut self,
        at: Duration,
        from: HostId,
        to: HostId,
        change: LinkChange,
    ) {
        self.schedule(at.max(self.now), Action::Link { from, to, change });
    }

    /// Changes both directions between `a` and `b` at `at`.
    pub fn schedule_link_change_both(
        &mut self,
        at: Duration,
        a: HostId,
        b: HostId,
        change: LinkChange,
    ) {
        self.schedule_link_change(at, a, b, change.clone());
        self.schedule_link_change(at, b, a, change);
    }

    /// Whether `host` is running (not crashed).
    pub fn is_running(&self, host: HostId) -> bool {
        self.hosts[host.0].node.is_some()
    }

    /// Whether `a` and `b` can exchange datagrams directly: both running
    /// and the link up both ways (loss aside, unless it is total).
    pub fn connected(&self, a: HostId, b: HostId) -> bool {
        let usable = |from, to| {
            let link = self.link(from, to);
            link.up && link.loss < 1.0
        };
        self.is_running(a) && self.is_running(b) && usable(a, b) && usable(b, a)
    }

    /// The connected components of the graph of `hosts` and the direct
    /// links between them ([`Sim::connected`]), by breadth-first search;
    /// each component is sorted, and components are in order of their
    /// first host. This is the simulator's own view, independent of what
    /// the nodes believe.
    pub fn components(&self, hosts: &[HostId]) -> Vec<Vec<HostId>> {
        let mut seen = vec![false; hosts.len()];
        let mut components = Vec::new();
        for start in 0..hosts.len() {
            if seen[start] {
                continue;
            }
            seen[start] = true;
            let mut component = vec![hosts[start]];
            let mut queue = std::collections::VecDeque::from([start]);
            while let Some(i) = queue.pop_front() {
                for j in 0..hosts.len() {
                    if !seen[j] && self.connected(hosts[i], hosts[j]) {
                        seen[j] = true;
                        component.push(hosts[j]);
                        queue.push_back(j);
                    }
                }
            }
            component.sort();
            components.push(component);
        }
        components
    }

    /// A counter of the host's node by its [`Stats`](weft_core::Stats)
    /// name; `None` while the host is crashed or if the node has no such
    /// counter.
    pub fn counter(&self, host: HostId, name: &str) -> Option<u64> {
        self.node(host)?
            .stats()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Starts a flow: schedules every packet it will send as TUN input of
    /// the sender. Arrivals are recorded as the receiver's node writes the
    /// packets to its TUN; read them with [`Sim::flow`].
    pub fn start_flow(&mut self, spec: &FlowSpec) -> Result<FlowId, SimError> {
        let address = |sim: &Sim, host: HostId, port: u16| {
            let ip = if spec.ipv6 {
                IpAddr::V6(sim.overlay_ipv6(host))
            } else {
                IpAddr::V4(
                    sim.overlay_ipv4(host)
                        .ok_or(SimError::NoOverlayIpv4(host))?,
                )
            };
            Ok::<_, SimError>(SocketAddr::new(ip, port))
        };
        let source = address(self, spec.from, spec.port)?;
        let destination = address(self, spec.to, FLOW_DESTINATION_PORT)?;
        let id = FlowId(u32::try_from(self.flows.len()).unwrap_or(u32::MAX));
        let start = spec.start.max(self.now);
        let report = FlowReport::new(spec, (source, destination), start);
        for (sequence, &at) in (0u32..).zip(&report.sent) {
            let payload = flow_payload(id, sequence, spec.payload);
            // Addresses are of one family and the payload is small: the
            // packet always builds; skip it (it will count as lost) if not.
            let Ok(mut packet) = udp_packet(source, destination, &payload) else {
                continue;
            };
            set_dscp(&mut packet, spec.dscp);
            self.schedule_tun(at, spec.from, packet);
        }
        self.flows.push(report);
        Ok(id)
    }

    /// What became of a flow's packets so far.
    pub fn flow(&self, flow: FlowId) -> &FlowReport {
        &self.flows[flow.0 as usize]
    }

    /// Flow packets, of any flow, that came out of a host other than their
    /// flow's destination (or with an unknown sequence number).
    pub fn misdelivered(&self) -> u64 {
        self.flows.iter().map(|f| f.misdelivered).sum()
    }

    /// Starts recording the datagrams `from` sends towards `to`.
    pub fn capture(&mut self, from: HostId, to: HostId) -> CaptureId {
        self.captures.push(Capture {
            from,
            to,
            active: true,
            items: Vec::new(),
        });
        CaptureId(self.captures.len() - 1)
    }

    /// Stops a capture; what it recorded stays readable.
    pub fn stop_capture(&mut self, capture: CaptureId) {
        self.captures[capture.0].active = false;
    }

    /// What a capture recorded.
    pub fn captured(&self, capture: CaptureId) -> &[Captured] {
        &self.captures[capture.0].items
    }

    /// What the host has sent and received so far (all datagrams, UDP
    /// payload bytes).
    pub fn traffic(&self, host: HostId) -> HostTraffic {
        self.hosts[host.0].traffic
    }

    /// Hands an IP packet to the host's node now, as if read from its TUN.
    pub fn inject_tun(&mut self, host: HostId, packet: &[u8]) {
        self.schedule_tun(self.now, host, packet.to_vec());
    }

    /// Hands an IP packet to the host's node at simulated time `at` (not
    /// before now).
    pub fn schedule_tun(&mut self, at: Duration, host: HostId, packet: Vec<u8>) {
        self.schedule(at.max(self.now), Action::Tun { host, packet });
    }

    /// Delivers a datagram to `to` now, as if it came from `from`, past
    /// every link (replays, garbage, spoofed sources).
    pub fn inject_datagram(&mut self, to: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        let delivery = Delivery {
            from,
            to,
            bytes: bytes.to_vec(),
            link: None,
            captures: Vec::new(),
        };
        self.schedule(self.now, Action::Deliver(Box::new(delivery)));
    }

    /// When the next event is due, if any.
    pub fn next_event_time(&self) -> Option<Duration> {
        self.queue.peek().map(|Reverse(s)| s.at)
    }

    /// Processes the next event, jumping the clock to it. Returns its time,
    /// or `None` if nothing is scheduled.
    pub fn step(&mut self) -> Option<Duration> {
        let Reverse(Scheduled {
            at,
            sequence: _,
            action,
        }) = self.queue.pop()?;
        self.now = self.now.max(at);
        self.stats.events += 1;
        match action {
            Action::Deliver(delivery) => self.deliver(*delivery),
            Action::Timer { host, incarnation } => self.wake(host, incarnation, at),
            Action::Tun { host, packet } => self.tun_input(host, &packet),
            Action::Link { from, to, change } => self.change_link(from, to, change),
        }
        Some(at)
    }

    /// Processes every event due up to simulated time `until`, then sets
    /// the clock to `until` (if it is later than now).
    pub fn run_until(&mut self, until: Duration) {
        while self.next_event_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Runs until `condition` holds (checked now and after each event) or
    /// simulated time reaches `deadline`. Returns whether it held; the
    /// clock stops at the event that made it true.
    pub fn run_until_condition(
        &mut self,
        deadline: Duration,
        mut condition: impl FnMut(&Sim) -> bool,
    ) -> bool {
        loop {
            if condition(self) {
                return true;
            }
            match self.next_event_time() {
                Some(t) if t <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return condition(self);
                }
            }
        }
    }

    fn new_node(&mut self, config: NodeConfig) -> Result<Node, NodeError> {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Node::new(self.now(), self.unix_wall_clock(), seed, config)
    }

    fn link_state(&mut self, from: HostId, to: HostId) -> &mut LinkState {
        let seed = self.seed;
        self.links.entry((from, to)).or_insert_with(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            // Stream 0 is the master stream; each direction has its own.
            rng.set_stream(1 + ((from.0 as u64) << 32 | to.0 as u64));
            LinkState::new(rng)
        })
    }

    fn schedule(&mut self, at: Duration, action: Action) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            sequence: self.sequence,
            action,
        }));
    }

    fn span(&self, host: HostId) -> tracing::Span {
        tracing::debug_span!("host", t = %SimTime(self.now), node = %self.hosts[host.0].name)
    }

    fn deliver(&mut self, delivery: Delivery) {
        let Delivery {
            from,
            to,
            bytes,
            link,
            captures,
        } = delivery;
        let fate = self.arrival_fate(from, to, link);
        for &(capture, item) in &captures {
            let record = &mut self.captures[capture].items[item];
            match fate {
                Ok(_) => record.delivered.push(self.now),
                Err(reason) => record.dropped = Some(reason),
            }
        }
        let host = match fate {
            Ok(host) => host,
            Err(reason) => {
                trace!(t = %SimTime(self.now), %from, %to, ?reason, "datagram lost on arrival");
                return;
            }
        };
        if let Some((key, _)) = link
            && let Some(state) = self.links.get_mut(&key)
        {
            state.stats.delivered += 1;
        }
        self.stats.datagrams_delivered += 1;
        let traffic = &mut self.hosts[host.0].traffic;
        traffic.received_bytes += bytes.len() as u64;
        traffic.received += 1;
        self.mix(&[1]);
        self.mix(&(host.0 as u64).to_be_bytes());
        self.mix(&bytes);
        let now = self.now();
        let span = self.span(host);
        let _entered = span.enter();
        trace!(%from, len = bytes.len(), "datagram in");
        self.hosts[host.0].last_wake = None;
        if let Some(node) = self.hosts[host.0].node.as_mut() {
            node.handle_datagram(now, from, &bytes);
        }
        drop(_entered);
        self.drain(host);
    }

    /// Who gets a datagram arriving now at `to`, or why nobody does.
    fn arrival_fate(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        link: Option<((HostId, HostId), u64)>,
    ) -> Result<HostId, DropReason> {
        if let Some((key, cuts)) = link {
            let up = self.link(key.0, key.1).up;
            if let Some(state) = self.links.get_mut(&key)
                && (!up || state.cuts != cuts)
            {
                state.stats.count_drop(DropReason::CutInFlight);
                return Err(DropReason::CutInFlight);
            }
        }
        let public_nat = self.nats.iter().find(|n| n.config.public == to.ip());
        let host = match public_nat {
            Some(nat) => match nat.admit(to.port(), from, self.now) {
                Some(host) => host,
                None => {
                    self.stats.dropped_nat += 1;
                    return Err(DropReason::NatFiltered);
                }
            },
            None => match self.addresses.get(&to) {
                Some(&host) => host,
                None => {
                    self.stats.dropped_no_host += 1;
                    return Err(DropReason::NoHost);
                }
            },
        };
        if self.hosts[host.0].node.is_none() {
            self.stats.dropped_host_down += 1;
            return Err(DropReason::HostDown);
        }
        Ok(host)
    }

    fn wake(&mut self, host: HostId, incarnation: u64, at: Duration) {
        let h = &mut self.hosts[host.0];
        if h.incarnation != incarnation || h.timer != Some(at) {
            return; // superseded
        }
        h.timer = None;
        h.last_wake = Some(at);
        self.mix(&[2]);
        self.mix(&(host.0 as u64).to_be_bytes());
        let now = self.now();
        let span = self.span(host);
        let _entered = span.enter();
        if let Some(node) = self.hosts[host.0].node.as_mut() {
            trace!(reason = ?node.poll_timeout().map(|(_, kind)| kind), "timer");
            node.handle_timeout(now);
        }
        drop(_entered);
        self.drain(host);
    }

    fn tun_input(&mut self, host: HostId, packet: &[u8]) {
        self.mix(&[3]);
        self.mix(&(host.0 as u64).to_be_bytes());
        self.mix(packet);
        let now = self.now();
        let span = self.span(host);
        let _entered = span.enter();
        trace!(len = packet.len(), "tun packet in");
        self.hosts[host.0].last_wake = None;
        if let Some(node) = self.hosts[host.0].node.as_mut() {
            node.handle_tun_packet(now, packet);
        }
        drop(_entered);
        self.drain(host);
    }

    /// Follows the call contract after an input: drain every output, then
    /// schedule the next wake-up.
    fn drain(&mut self, host: HostId) {
        let now = self.now;
        let span = self.span(host);
        let _entered = span.enter();
        let h = &mut self.hosts[host.0];
        let Some(node) = h.node.as_mut() else {
            return;
        };
        let mut transmits = Vec::new();
        let mut buf = Vec::new();
        while let Some(to) = node.poll_transmit(&mut buf) {
            transmits.push((to, std::mem::take(&mut buf)));
        }
        while node.poll_tun(&mut buf) {
            trace!(len = buf.len(), "tun packet out");
            if !self.flows.is_empty()
                && let Some(udp) = parse_udp(&buf)
                && let Some((flow, sequence)) = parse_flow_payload(udp.payload)
                && let Some(report) = self.flows.get_mut(flow.0 as usize)
            {
                report.record(host, sequence, now);
            }
            h.tun.push(TunDelivery {
                at: now,
                packet: std::mem::take(&mut buf),
            });
        }
        while let Some(event) = node.poll_event() {
            debug!(?event, "event");
            h.events.push((now, event));
        }
        let timeout = node.poll_timeout();
        drop(_entered);
        for (to, bytes) in transmits {
            self.send(host, to, bytes);
        }
        self.set_timer(host, timeout);
    }

    fn set_timer(&mut self, host: HostId, timeout: Option<(Instant, TimerKind)>) {
        let Some((deadline, kind)) = timeout else {
            // Any scheduled wake-up becomes stale.
            self.hosts[host.0].timer = None;
            return;
        };
        let mut at = self.offset_of(deadline).max(self.now);
        let h = &self.hosts[host.0];
        if h.last_wake == Some(self.now) && at == self.now {
            // The node was just woken for this instant and wants to be
            // woken again at once: it would spin forever.
            warn!(node = %h.name, t = %SimTime(self.now), ?kind, "node asks for a timer it was just woken for");
            self.stats.timer_stalls += 1;
            at = self.now + Duration::from_millis(1);
        }
        if h.timer == Some(at) {
            return;
        }
        let incarnation = h.incarnation;
        self.hosts[host.0].timer = Some(at);
        self.schedule(at, Action::Timer { host, incarnation });
    }

    fn send(&mut self, host: HostId, to: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        self.stats.largest_datagram = self.stats.largest_datagram.max(bytes.len());
        let traffic = &mut self.hosts[host.0].traffic;
        traffic.sent_bytes += bytes.len() as u64;
        traffic.sent += 1;
        let Some((from, target)) = self.underlay_route(host, to, bytes.len()) else {
            return;
        };
        let now = self.now;
        let config = self.link(host, target).clone();
        let state = self.link_state(host, target);
        let cuts = state.cuts;
        let outcome = state.transmit(now, bytes.len(), &config);
        let mut captures = Vec::new();
        for (i, capture) in self.captures.iter_mut().enumerate() {
            if capture.active && capture.from == host && capture.to == target {
                capture.items.push(Captured {
                    sent_at: now,
                    from,
                    to,
                    bytes: bytes.clone(),
                    delivered: Vec::new(),
                    dropped: outcome.err(),
                });
                captures.push((i, capture.items.len() - 1));
            }
        }
        let arrivals = match outcome {
            Ok(arrivals) => arrivals,
            Err(reason) => {
                trace!(%to, ?reason, "datagram dropped by the link");
                return;
            }
        };
        let link = Some(((host, target), cuts));
        if let Some(duplicate) = arrivals.duplicate {
            let copy = Delivery {
                from,
                to,
                bytes: bytes.clone(),
                link,
                captures: captures.clone(),
            };
            self.schedule(duplicate, Action::Deliver(Box::new(copy)));
        }
        let delivery = Delivery {
            from,
            to,
            bytes,
            link,
            captures,
        };
        self.schedule(arrivals.first, Action::Deliver(Box::new(delivery)));
    }

    /// The source a datagram from `host` to `to` leaves with (translated
    /// by the host's NAT router, if any) and the host it heads for; `None`
    /// (counted) if it can reach nobody.
    fn underlay_route(
        &mut self,
        host: HostId,
        to: SocketAddr,
        len: usize,
    ) -> Option<(SocketAddr, HostId)> {
        let own = self.hosts[host.0].address;
        let now = self.now;
        let sender_nat = self.behind.get(&host).copied();
        let public_nat = self
            .nats
            .iter()
            .position(|n| n.config.public == to.ip())
            .map(NatId);
        let target = match public_nat {
            // No hairpinning: a host cannot reach its own router's public
            // address.
            Some(nat) if Some(nat) == sender_nat => None,
            Some(nat) => self.nats[nat.0].holder(to.port()),
            None => self.addresses.get(&to).copied().filter(|target| {
                // Another LAN's private address is not routed.
                let target_nat = self.behind.get(target).copied();
                target_nat.is_none() || target_nat == sender_nat
            }),
        };
        let local = target.is_some_and(|t| {
            public_nat.is_none()
                && sender_nat.is_some()
                && self.behind.get(&t) == sender_nat.as_ref()
        });
        let from = match sender_nat {
            Some(nat) if !local => self.nats[nat.0].translate(host, to, now),
            _ => own,
        };
        let Some(target) = target else {
            self.stats.dropped_no_host += 1;
            *self.stats.bytes_to_nobody.entry(to).or_default() += len as u64;
            trace!(%to, "datagram to an address nobody holds");
            return None;
        };
        Some((from, target))
    }

    /// Folds bytes into the trace digest, with the current time and the
    /// length: eight bytes at a time (rotate, xor, multiply, as FxHash
    /// does), since every datagram passes through here.
    fn mix(&mut self, bytes: &[u8]) {
        let step = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(MIX_PRIME);
        let mut hash = step(self.digest, self.now.as_nanos() as u64);
        hash = step(hash, bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            hash = step(hash, u64::from_le_bytes(buf));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.digest = step(hash, u64::from_le_bytes(tail));
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "weft-sim: failed at simulated time {} with seed {} (rerun with {SEED_ENV}={})",
                SimTime(self.now),
                self.seed,
                self.seed
            );
        }
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &SimTime(self.now))
            .field("hosts", &self.hosts.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

/// Simulated time as logs show it: seconds with microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimTime(pub Duration);

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0.as_secs(), self.0.subsec_micros())
    }
}

const DIGEST_START: u64 = 0xcbf2_9ce4_8422_2325;
const MIX_PRIME: u64 = 0x517c_c1b7_2722_0a95;
