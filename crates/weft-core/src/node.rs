//! A weft node: demultiplexes inputs to its peers' sessions and merges their
//! outputs.
//!
//! Each configured peer gets a session (the full mesh): the node starts a
//! handshake to every peer whose endpoint it knows, retries with backoff,
//! rekeys on time and volume, keeps the session alive and measures RTT. Any
//! holder of a valid certificate of the network's CA may also connect; it
//! becomes a peer when its handshake completes.
//!
//! Inbound datagrams are dispatched in one place (`dispatch`): decode, then
//! handshake init, response or data, whether the datagram came straight
//! from the underlay or out of a relay frame. Packets from the TUN are
//! routed by destination overlay address to a peer, then along that peer's
//! path (see `route`): straight to its endpoint, or sealed end to end and
//! wrapped for the first relay. A packet for a peer whose session is not up
//! yet waits in a small bounded queue; one for an address nobody holds is
//! dropped and counted. Routing (probes, link state, path choice, relaying)
//! lives in the `routing` submodule. Data packets are classified and pass
//! the egress QoS scheduler before they are sealed (the `qos` submodule);
//! control traffic is sent at once and only charged to the shapers.
//!
//! Outputs are buffers from a pool: [`Node::poll_transmit`] and
//! [`Node::poll_tun`] swap a filled buffer with the caller's, so the steady
//! state allocates nothing per packet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::{debug, trace, warn};

use crate::dht::{Dht, DhtConfig, LookupError, LookupId, LookupTrace, NodeRecord, Target};
use crate::firewall::{Firewall, FirewallConfig, FirewallConfigError};
use crate::identity::{
    CaCertificate, CertError, Certificate, ClaimConflict, ConflictLog, Ipv4Net, NodeId, PublicKey,
    RevocationError, SecretKey, conflicts_between, prevails,
};
use crate::link::{LinkMonitor, Transition};
use crate::mcast::MulticastConfig;
use crate::qos::{QosConfig, QosConfigError};
use crate::rng::SharedRng;
use crate::route::{Graph, LinkStateDb, Metric, RouteTable, RoutingConfig};
use crate::session::{
    Admission, AwaitingResponse, HandshakeError, HandshakeKeys, INIT_OVERHEAD, InitGuard,
    InitReceived, InitSeal, OpenError, RESPONSE_OVERHEAD, Refusal, SessionConfig, SignedInit,
    Transport, peek_init, verify_init,
};
use crate::stats::Stats;
use crate::timer::TimerKind;
use crate::wire::{self, DATA_HEADER_LEN, Frame, HandshakePayload, Packet, SessionIndex};

mod certificates;
mod configured;
mod discovery;
mod expiry;
mod firewall;
mod icmp;
mod multicast;
mod nat;
mod peers;
mod qos;
mod reject;
mod rendezvous;
mod renewal;
mod revocation;
mod routing;
mod topology;

pub use configured::{AddPeerError, RemovePeerError};
use discovery::Discovery;
use expiry::ExpiryWarning;
pub use expiry::{MAX_WARNING as CERTIFICATE_WARNING_MAX, warning_window};
use multicast::MulticastState;
pub use multicast::{GroupError, GroupStatus, TreeStatus};
pub use nat::{CandidateTry, LocalAddress, PathKind};
use nat::{NatState, PeerNat};
use peers::{PeerId, PeerTable};
use qos::QosState;
pub use renewal::SetCertificateError;
pub use revocation::RevocationConfig;
use revocation::RevocationState;
pub use topology::{TopologyLink, TopologyNode, TopologyStatus};

/// Size of a probe or its answer as a UDP payload: header, frame kind, id,
/// tag. (Add 28 bytes of IPv4 and UDP headers for the wire.)
const PROBE_DATAGRAM_LEN: u64 = (DATA_HEADER_LEN + 1 + 8 + wire::TAG_LEN) as u64;

/// Packets that may wait for a peer's session to come up.
const PENDING_PER_PEER: usize = 64;
/// Datagrams waiting to be sent.
const MAX_TRANSMITS: usize = 8192;
/// Packets waiting for the TUN.
const MAX_TUN_OUT: usize = 8192;
/// Events waiting to be drained.
const MAX_EVENTS: usize = 1024;
/// Spare buffers kept for reuse.
const MAX_POOL: usize = 1024;
/// Shortest time an init of this node counts as possibly crossing the
/// peer's (see `on_handshake_init`).
const MIN_CROSSING_WINDOW: Duration = Duration::from_millis(50);
/// Capacity of a fresh buffer: a full-size datagram without reallocation.
const BUFFER_CAPACITY: usize = 2048;
/// What an init is padded for when the responder's certificate is not
/// known yet: a certificate with a long name and a few groups.
const TYPICAL_CERTIFICATE_LEN: usize = 320;
/// A session with no data for this long lapses unless configured or
/// picked (see `Node::wants_session`).
const IDLE_SESSION: Duration = Duration::from_secs(120);
/// A session replaced by a newer one that came from elsewhere is made
/// current again once the newer one has been silent this long (its holder,
/// a second host with the same key, is gone).
const DUPLICATE_SILENCE: Duration = Duration::from_secs(2);
/// A duplicate key is logged at most this often per peer.
const DUPLICATE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// A cookie from a responder is used for this long (its secret changes
/// every two minutes; a stale cookie only earns a new cookie reply).
const COOKIE_LIFETIME: Duration = Duration::from_secs(120);

/// What a node is and whom it talks to.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's secret keys.
    pub secret_key: SecretKey,
    /// The node's certificate, issued by `ca` for `secret_key`.
    pub certificate: Certificate,
    /// The network's CA: the only issuer this node trusts.
    pub ca: CaCertificate,
    /// Static peers.
    pub peers: Vec<PeerConfig>,
    /// Session timing.
    pub session: SessionConfig,
    /// Link monitoring and routing.
    pub routing: RoutingConfig,
    /// DHT tuning.
    pub dht: DhtConfig,
    /// Endpoints to join the DHT through (identities need not be known:
    /// the answers carry certificates). Configured peers with endpoints are
    /// bootstrap contacts too.
    pub bootstrap: Vec<SocketAddr>,
    /// How many neighbours this node keeps sessions with on its own
    /// initiative, beyond configured peers.
    pub neighbours: NeighbourConfig,
    /// Multicast: fan-out, groups joined from the config, policy.
    pub multicast: MulticastConfig,
    /// Traffic classes, classification rules, egress shaping.
    pub qos: QosConfig,
    /// Who may talk to whom: rules and connection tracking (off by
    /// default).
    pub firewall: FirewallConfig,
    /// Revoked certificates: a CA-signed list and a local blocklist.
    pub revocation: RevocationConfig,
}

impl NodeConfig {
    /// A node with these keys, certificate and CA, no static peers and
    /// every other setting at its default.
    pub fn new(secret_key: SecretKey, certificate: Certificate, ca: CaCertificate) -> Self {
        Self {
            secret_key,
            certificate,
            ca,
            peers: Vec::new(),
            session: SessionConfig::default(),
            routing: RoutingConfig::default(),
            dht: DhtConfig::default(),
            bootstrap: Vec::new(),
            neighbours: NeighbourConfig::default(),
            multicast: MulticastConfig::default(),
            qos: QosConfig::default(),
            firewall: FirewallConfig::default(),
            revocation: RevocationConfig::default(),
        }
    }
}

/// The bounded neighbourhood: sessions this node opens on its own to DHT
/// contacts so that routing has links to work with. Configured peers are
/// always neighbours and count against `max`; sessions that others open and
/// sessions opened on demand for traffic come on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourConfig {
    /// Neighbours at most (0: only configured peers and on-demand sessions).
    pub max: usize,
    /// Of which chosen at random among the DHT contacts (long links, for
    /// path diversity); the rest are the nearest in RTT.
    pub random: usize,
    /// Sessions at most, of every kind. A session that neither side wants
    /// (no configured peer, no picked neighbour, no data for two minutes)
    /// lapses on its own; when the table is full, a new inbound session
    /// takes the place of the longest idle unwanted one, and is refused
    /// if there is none (`handshake_refused_full`).
    pub max_sessions: usize,
    /// Peer entries at most (every node this node keeps state for:
    /// sessions, records' origins, lookups' answers). Configured peers are
    /// always admitted; a learnt peer takes the place of the longest idle
    /// evictable one when the table is full, and is refused
    /// (`peers_refused`) if there is none. See the `peers` submodule.
    pub max_peers: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        Self {
            max: 16,
            random: 4,
            max_sessions: 1024,
            // Twice the session bound: a full session table still leaves
            // room for as many peers known from records and lookups.
            max_peers: 2048,
        }
    }
}

/// A static peer: known by certificate name, by key, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerConfig {
    /// Its certificate name.
    pub name: Option<String>,
    /// Its public keys.
    pub public_key: Option<PublicKey>,
    /// Where to reach it; without one, the node waits for the peer to call.
    pub endpoint: Option<SocketAddr>,
}

/// Why a node could not be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeError {
    /// The certificate does not certify the node's key.
    #[error("the certificate is for another key than this node's")]
    CertificateKeyMismatch,
    /// The certificate is not valid now under the CA.
    #[error("the node's own certificate is not acceptable: {0}")]
    Certificate(#[from] CertError),
    /// A peer entry names neither a certificate name nor a key.
    #[error("peer {0} has neither a name nor a public key")]
    PeerWithoutIdentity(usize),
    /// Two peer entries name the same node.
    #[error("peer '{0}' is configured twice")]
    DuplicatePeer(String),
    /// A peer entry names this node itself.
    #[error("peer '{0}' is this node itself")]
    SelfAsPeer(String),
    /// A configured multicast group cannot be joined.
    #[error("multicast group: {0}")]
    Group(#[from] GroupError),
    /// The QoS settings are inconsistent.
    #[error("qos: {0}")]
    Qos(#[from] QosConfigError),
    /// The firewall settings cannot be used.
    #[error("firewall: {0}")]
    Firewall(#[from] FirewallConfigError),
    /// The revocation list is not the network CA's.
    #[error("revocation list: {0}")]
    Revocation(#[from] RevocationError),
}

/// Something the daemon or a test may want to know.
// A lookup's record and trace make one variant large; events are few (not
// per packet) and bounded in number, so boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session with a peer was established where there was none (a rekey
    /// that replaces a session is not reported).
    SessionEstablished {
        /// The peer.
        peer: NodeId,
        /// Its certificate name.
        name: String,
        /// Where it is, if this node knows its endpoint (a session made
        /// through a relay may not).
        endpoint: Option<SocketAddr>,
        /// Whether this node initiated the handshake.
        initiator: bool,
    },
    /// A peer fell silent; its session was dropped.
    SessionLost {
        /// The peer.
        peer: NodeId,
        /// Its certificate name.
        name: String,
    },
    /// A handshake was refused.
    HandshakeRejected {
        /// Where it came from.
        from: SocketAddr,
        /// Why, for the log.
        reason: String,
    },
    /// The path to a destination changed.
    PathChanged {
        /// The destination.
        destination: NodeId,
        /// Its certificate name.
        name: String,
        /// The metric of the route that changed.
        metric: Metric,
        /// Names along the old path, ending with the destination (empty:
        /// there was none).
        from: Vec<String>,
        /// Names along the new path (empty: unreachable now).
        to: Vec<String>,
    },
    /// A direct link stopped answering probes.
    LinkDown {
        /// The neighbour.
        peer: NodeId,
        /// Its certificate name.
        name: String,
    },
    /// A direct link answers probes (again).
    LinkUp {
        /// The neighbour.
        peer: NodeId,
        /// Its certificate name.
        name: String,
    },
    /// A lookup started with [`Node::lookup`] ended.
    LookupDone {
        /// Which.
        id: LookupId,
        /// What it looked for.
        target: Target,
        /// The verified record, or why not.
        result: Result<NodeRecord, LookupError>,
        /// The queries it took.
        trace: LookupTrace,
    },
    /// A node joined a multicast group (this node, or a member whose
    /// record says so).
    GroupJoined {
        /// The group.
        group: IpAddr,
        /// The member.
        node: NodeId,
        /// Its certificate name.
        name: String,
    },
    /// A node left a multicast group (or its record expired).
    GroupLeft {
        /// The group.
        group: IpAddr,
        /// The former member.
        node: NodeId,
        /// Its certificate name.
        name: String,
    },
    /// This node's own certificate expires soon (or has expired:
    /// `remaining` is zero): renew it before peers refuse the node. Sent
    /// when the warning window opens (see [`warning_window`]), daily, and
    /// at expiry.
    CertificateExpiring {
        /// End of validity, unix seconds.
        not_after: u64,
        /// Time left.
        remaining: Duration,
    },
    /// A newer revocation list was installed (from the operator, or from
    /// a peer), and the sessions it revokes ended.
    RevocationsUpdated {
        /// Its version.
        version: u64,
        /// What it revokes, in entries.
        entries: usize,
        /// The peer it came from (`None`: the operator).
        from: Option<String>,
    },
    /// A session ended because the peer's certificate is revoked.
    PeerRevoked {
        /// The peer.
        peer: NodeId,
        /// Its certificate name.
        name: String,
    },
    /// A peer's endpoint moved (roaming); the session follows it.
    PeerRoamed {
        /// The peer.
        peer: NodeId,
        /// Its certificate name.
        name: String,
        /// Old endpoint.
        from: SocketAddr,
        /// New endpoint.
        to: SocketAddr,
    },
}

/// The state of a peer's session, as `weft status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SessionState {
    /// No endpoint known: waiting for the peer to call.
    AwaitingPeer,
    /// A handshake is under way or being retried.
    Handshaking,
    /// Keys are established and traffic flows.
    Established,
}

/// A snapshot of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Its node id, once known.
    pub node_id: Option<NodeId>,
    /// Its certificate name (or the configured one before the handshake).
    pub name: Option<String>,
    /// Its overlay IPv6 address, once known.
    pub overlay_ipv6: Option<Ipv6Addr>,
    /// Its overlay IPv4 address, if its certificate has one.
    pub overlay_ipv4: Option<Ipv4Addr>,
    /// Its current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Session state.
    pub state: SessionState,
    /// Smoothed RTT.
    pub rtt: Option<Duration>,
    /// Payload bytes received from it.
    pub bytes_in: u64,
    /// Payload bytes sent to it.
    pub bytes_out: u64,
    /// Data packets received from it.
    pub packets_in: u64,
    /// Data packets sent to it.
    pub packets_out: u64,
    /// Time since the last completed handshake.
    pub last_handshake: Option<Duration>,
    /// Completed handshakes with it.
    pub handshakes: u64,
    /// Health of the direct link to it.
    pub link: LinkHealth,
    /// Loss rate (0 to 1) of the direct link, from probes.
    pub loss: f32,
    /// Names of the intermediate nodes that latency-sensitive traffic to
    /// it goes through; empty when it goes direct.
    pub via: Vec<String>,
    /// Whether it is a configured peer (its session is kept up).
    pub configured: bool,
    /// When the certificate its session carries expires (unix seconds),
    /// once known: a renewed one shows here after the next handshake.
    pub certificate_not_after: Option<u64>,
    /// How packets to it travel now: direct (via its LAN or a punched
    /// hole, or to a known endpoint) or relayed (through `via`).
    pub path: PathKind,
    /// The candidates tried in the last attempt to punch a direct path.
    pub candidates_tried: Vec<CandidateTry>,
}

/// Health of a direct link, from probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkHealth {
    /// Not measured yet.
    Unknown,
    /// Probes are answered.
    Up,
    /// Probes went unanswered: traffic routes around it.
    Down,
}

/// A weft node. See the crate docs for the call contract: after every
/// `handle_*` call, drain `poll_transmit`, `poll_tun` and `poll_event` until
/// each returns nothing, then sleep until `poll_timeout`.
pub struct Node {
    secret: SecretKey,
    certificate: Certificate,
    ca: CaCertificate,
    config: SessionConfig,
    start: Instant,
    unix_start: Duration,
    last_timestamp: u64,
    rng: SharedRng,
    /// The gate in front of handshake inits (MACs, cookies, rate limits).
    guard: InitGuard,
    peers: PeerTable,
    by_index: BTreeMap<SessionIndex, PeerId>,
    by_id: BTreeMap<NodeId, PeerId>,
    by_ipv4: BTreeMap<Ipv4Addr, PeerId>,
    by_ipv6: BTreeMap<Ipv6Addr, PeerId>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    tun_out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    pool: Vec<Vec<u8>>,
    stats: Stats,
    routing: RoutingState,
    discovery: Discovery,
    multicast: MulticastState,
    qos: QosState,
    firewall: Firewall,
    expiry: ExpiryWarning,
    revocation: RevocationState,
    /// Names and IPv4 addresses claimed by two node ids.
    conflicts: ConflictLog,
    /// Certificates by fingerprint, for records that name them.
    certificates: certificates::Certificates,
    /// This node's endpoint candidates (NAT traversal).
    nat: NatState,
}

/// Link state and routes: see the `routing` submodule.
struct RoutingState {
    config: RoutingConfig,
    lsdb: LinkStateDb,
    table: RouteTable,
    /// The graph the routes were last computed on (for hop metrics).
    graph: Graph,
    /// Node id prefixes of every node known, for relay hops and records.
    by_prefix: BTreeMap<[u8; 16], NodeId>,
    /// A copy of `by_prefix` for lookups while routes are computed (its
    /// allocation kept between computations).
    prefixes: crate::route::IdMap<[u8; 16], NodeId>,
    /// Routes must be recomputed.
    dirty: bool,
    /// ... before the next output (this node's own links changed).
    urgent: bool,
    last_recompute: Option<Instant>,
    /// Periodic recomputation (metrics drift without state changes).
    recompute_at: Option<Instant>,
    /// This node's own record must be (re)sent by then.
    lsa_due: Option<Instant>,
    /// Why it is due: a link went up or down, or a link's metrics drifted
    /// (counted by cause when it is signed; neither means refresh).
    lsa_for_change: bool,
    lsa_for_drift: bool,
    last_lsa: Option<Instant>,
    /// Records this node may still sign for drift alone
    /// (`routing::DRIFT_BURST`).
    drift: crate::route::Bucket,
    /// Bounds on signing and passing on records (`route::brake`).
    brake: crate::route::Brake<PeerId>,
    /// What this node last advertised, per neighbour: (RTT µs, loss).
    advertised: BTreeMap<NodeId, (u32, f32)>,
    /// Links up but left out of the last record (it was full).
    left_out: BTreeSet<NodeId>,
    /// Whether this node's last record went to every node (it takes part
    /// in multicast) rather than within `routing::RECORD_RADIUS`.
    own_record_global: bool,
}

/// Where an inbound packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Straight from the underlay.
    Direct(SocketAddr),
    /// Out of a relay frame that this peer (index) delivered.
    Relayed(PeerId),
}

/// How an outbound packet to a peer travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Straight to the peer's endpoint (probes, link state, relay hops).
    Direct,
    /// Along the peer's route for this metric and flow.
    Route(Metric, u64),
    /// Along the peer's latency route, without counting as traffic on the
    /// link (which would probe it at the active rate): small control
    /// frames that come on their own schedule.
    Control,
}

struct Peer {
    /// When the entry was made (its idleness before any traffic).
    added: Instant,
    configured_name: Option<String>,
    node_id: Option<NodeId>,
    certificate: Option<Certificate>,
    endpoint: Option<SocketAddr>,
    current: Option<Box<Transport>>,
    previous: Option<Box<Transport>>,
    next: Option<Box<Transport>>,
    pending: Option<Box<AwaitingResponse>>,
    /// The last cookie this peer sent us (under load it asks for mac2),
    /// and when.
    cookie: Option<([u8; wire::COOKIE_LEN], Instant)>,
    handshake_attempts: u32,
    /// When a rekey of the current session came due while this node did
    /// not want the session (it then lapses): its deadline is not asked
    /// for again unless data moved since, or it would stay in the past.
    rekey_declined_at: Option<Instant>,
    handshake_due: Option<Instant>,
    last_init_timestamp: u64,
    last_received: Option<Instant>,
    last_sent: Option<Instant>,
    last_handshake: Option<Instant>,
    monitor: LinkMonitor,
    /// From the config (not a DHT pick, on-demand or inbound peer).
    configured: bool,
    /// When a duplicate of this node's key was last logged.
    duplicate_logged: Option<Instant>,
    /// When IP, relayed or multicast data last passed to or from it.
    last_data: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    handshakes: u64,
    bytes_in: u64,
    bytes_out: u64,
    packets_in: u64,
    packets_out: u64,
    /// Candidates, punching and path kind (NAT traversal).
    nat: PeerNat,
}

impl Peer {
    fn new(
        now: Instant,
        configured_name: Option<String>,
        node_id: Option<NodeId>,
        endpoint: Option<SocketAddr>,
    ) -> Self {
        Self {
            added: now,
            configured_name,
            node_id,
            certificate: None,
            endpoint,
            current: None,
            previous: None,
            next: None,
            pending: None,
            cookie: None,
            handshake_attempts: 0,
            rekey_declined_at: None,
            handshake_due: None,
            last_init_timestamp: 0,
            last_received: None,
            last_sent: None,
            last_handshake: None,
            monitor: LinkMonitor::new(),
            configured: false,
            duplicate_logged: None,
            last_data: None,
            queue: VecDeque::new(),
            handshakes: 0,
            bytes_in: 0,
            bytes_out: 0,
            packets_in: 0,
            packets_out: 0,
            nat: PeerNat::default(),
        }
    }

    fn name(&self) -> String {
        self.certificate
            .as_ref()
            .map(|c| c.name().to_owned())
            .or_else(|| self.configured_name.clone())
            .unwrap_or_else(|| self.node_id.map(|id| id.short()).unwrap_or_default())
    }

    fn transport_mut(&mut self, index: SessionIndex) -> Option<(Slot, &mut Transport)> {
        if let Some(t) = self.current.as_deref_mut().filter(|t| t.local == index) {
            return Some((Slot::Current, t));
        }
        if let Some(t) = self.next.as_deref_mut().filter(|t| t.local == index) {
            return Some((Slot::Next, t));
        }
        self.previous
            .as_deref_mut()
            .filter(|t| t.local == index)
            .map(|t| (Slot::Previous, t))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Next,
    Previous,
}

impl Node {
    /// Creates a node. `unix_time` is the wall clock (time since the unix
    /// epoch, with sub-second precision: handshake timestamps are built on
    /// it) at `now`; `seed` seeds every random choice the node makes.
    pub fn new(
        now: Instant,
        unix_time: Duration,
        seed: [u8; 32],
        config: NodeConfig,
    ) -> Result<Self, NodeError> {
        let NodeConfig {
            secret_key,
            certificate,
            ca,
            peers,
            session,
            routing,
            dht,
            bootstrap,
            neighbours,
            multicast,
            qos,
            firewall,
            revocation,
        } = config;
        let qos = QosState::new(now, qos)?;
        let firewall = Firewall::new(&firewall, &ca)?;
        if let Some(list) = &revocation.list {
            list.verify(&ca)?;
        }
        let revocation = RevocationState::new(revocation);
        let initial_groups = multicast.groups.clone();
        if certificate.public_key() != secret_key.public() {
            return Err(NodeError::CertificateKeyMismatch);
        }
        certificate.verify(&ca, unix_time.as_secs())?;
        let rng = SharedRng::from_seed(seed);
        let mut dht_seed = [0u8; 32];
        rng.fill(&mut dht_seed);
        let dht = Dht::new(
            now,
            unix_time,
            secret_key.clone(),
            certificate.clone(),
            ca.clone(),
            dht,
            dht_seed,
        );
        let mut contacts = bootstrap;
        for endpoint in peers.iter().filter_map(|p| p.endpoint) {
            if !contacts.contains(&endpoint) {
                contacts.push(endpoint);
            }
        }
        let expiry = ExpiryWarning::new(
            now,
            unix_time.as_secs(),
            certificate.not_before(),
            certificate.not_after(),
        );
        let guard = InitGuard::new(HandshakeKeys::new(&ca));
        let mut node = Self {
            secret: secret_key,
            certificate,
            ca,
            config: session,
            start: now,
            unix_start: unix_time,
            last_timestamp: 0,
            rng,
            guard,
            peers: PeerTable::default(),
            by_index: BTreeMap::new(),
            by_id: BTreeMap::new(),
            by_ipv4: BTreeMap::new(),
            by_ipv6: BTreeMap::new(),
            transmits: VecDeque::new(),
            tun_out: VecDeque::new(),
            events: VecDeque::new(),
            pool: Vec::new(),
            stats: Stats::default(),
            certificates: certificates::Certificates::default(),
            routing: RoutingState {
                config: routing,
                lsdb: LinkStateDb::default(),
                table: RouteTable::default(),
                graph: Graph::default(),
                by_prefix: BTreeMap::new(),
                prefixes: crate::route::IdMap::default(),
                dirty: false,
                urgent: false,
                last_recompute: None,
                recompute_at: None,
                lsa_due: None,
                lsa_for_change: false,
                lsa_for_drift: false,
                last_lsa: None,
                drift: crate::route::Bucket::new(routing::DRIFT_BURST, routing::DRIFT_REFILL),
                brake: crate::route::Brake::default(),
                advertised: BTreeMap::new(),
                left_out: BTreeSet::new(),
                own_record_global: false,
            },
            discovery: Discovery::new(dht, neighbours),
            multicast: MulticastState::new(
                multicast,
                u64::try_from(unix_time.as_micros()).unwrap_or(u64::MAX),
            ),
            qos,
            firewall,
            expiry,
            revocation,
            conflicts: ConflictLog::default(),
            nat: NatState::default(),
        };
        let own = node.node_id();
        node.routing.by_prefix.insert(prefix(&own), own);
        for (i, peer) in peers.into_iter().enumerate() {
            node.add_configured_peer(now, i, peer)?;
        }
        if !contacts.is_empty() {
            node.discovery.dht.bootstrap(now, &contacts);
        }
        for group in initial_groups {
            node.join_group(now, group)?;
        }
        node.sync_dht_revocations();
        node.after_input(now);
        Ok(node)
    }

    fn add_configured_peer(
        &mut self,
        now: Instant,
        position: usize,
        config: PeerConfig,
    ) -> Result<(), NodeError> {
        let label = config
            .name
            .clone()
            .or_else(|| config.public_key.map(|k| k.node_id().short()))
            .ok_or(NodeError::PeerWithoutIdentity(position))?;
        let node_id = config.public_key.map(|k| k.node_id());
        if node_id == Some(self.node_id()) || config.name.as_deref() == Some(self.name()) {
            return Err(NodeError::SelfAsPeer(label));
        }
        let duplicate = self.peers.iter().any(|p| {
            (node_id.is_some() && p.node_id == node_id)
                || (config.name.is_some() && p.configured_name == config.name)
        });
        if duplicate {
            return Err(NodeError::DuplicatePeer(label));
        }
        self.push_configured_peer(now, config, node_id);
        Ok(())
    }

    /// Adds a new slot for a configured peer, calling it at once if its
    /// endpoint is known.
    fn push_configured_peer(&mut self, now: Instant, config: PeerConfig, node_id: Option<NodeId>) {
        let mut peer = Peer::new(now, config.name, node_id, config.endpoint);
        peer.configured = true;
        if config.endpoint.is_some() {
            peer.handshake_due = Some(now);
        }
        // A configured peer is always admitted (the bound is on learnt
        // peers), so this never refuses.
        let _ = self.admit_peer(now, peer);
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        // The certificate's, derived once: it certifies this very key
        // (checked at creation and at renewal).
        self.certificate.node_id()
    }

    /// The network's CA, the only issuer this node trusts.
    pub fn ca(&self) -> &CaCertificate {
        &self.ca
    }

    /// This node's certificate name.
    pub fn name(&self) -> &str {
        self.certificate.name()
    }

    /// This node's certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// This node's overlay IPv6 address.
    pub fn overlay_ipv6(&self) -> Ipv6Addr {
        self.node_id().overlay_ipv6()
    }

    /// This node's overlay IPv4 address and prefix, if its certificate has one.
    pub fn overlay_ipv4(&self) -> Option<Ipv4Net> {
        self.certificate.ipv4()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A snapshot of every peer, sorted by name.
    pub fn peers(&self, now: Instant) -> Vec<PeerStatus> {
        let mut out: Vec<PeerStatus> = self
            .peers
            .entries()
            .map(|(index, p)| PeerStatus {
                node_id: p.node_id,
                name: Some(p.name()).filter(|n| !n.is_empty()),
                overlay_ipv6: p.node_id.map(|id| id.overlay_ipv6()),
                overlay_ipv4: p
                    .certificate
                    .as_ref()
                    .and_then(|c| c.ipv4())
                    .map(|n| n.addr),
                endpoint: p.endpoint,
                state: if p.current.as_ref().is_some_and(|t| t.confirmed) {
                    SessionState::Established
                } else if p.endpoint.is_some() {
                    SessionState::Handshaking
                } else {
                    SessionState::AwaitingPeer
                },
                rtt: p.monitor.rtt(),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                packets_in: p.packets_in,
                packets_out: p.packets_out,
                last_handshake: p.last_handshake.map(|t| now.saturating_duration_since(t)),
                handshakes: p.handshakes,
                link: p.monitor.health(),
                loss: p.monitor.loss(),
                via: self.via_names(now, p),
                configured: p.configured,
                certificate_not_after: p.certificate.as_ref().map(Certificate::not_after),
                path: self.path_kind(now, index),
                candidates_tried: self.candidates_tried(index),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.node_id.cmp(&b.node_id)));
        out
    }

    /// Handles one UDP datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.dispatch(now, Source::Direct(from), datagram);
        self.after_input(now);
    }

    /// The one place inbound packets enter: decode, then the handshake or
    /// the session it belongs to.
    fn dispatch(&mut self, now: Instant, source: Source, datagram: &[u8]) {
        let packet = match Packet::decode(datagram) {
            Ok(packet) => packet,
            Err(error) => {
                self.stats.rx_malformed += 1;
                trace!(%error, "dropping malformed datagram");
                return;
            }
        };
        match packet {
            Packet::HandshakeInit {
                sender,
                noise,
                flags,
                signature,
                ..
            } => {
                let init = SignedInit {
                    datagram,
                    flags,
                    signature,
                };
                self.on_handshake_init(now, source, sender, noise, &init)
            }
            Packet::CookieReply {
                receiver,
                nonce,
                sealed,
            } => self.on_cookie_reply(now, source, receiver, nonce, sealed),
            Packet::HandshakeResponse {
                sender,
                receiver,
                noise,
            } => self.on_handshake_response(now, source, sender, receiver, noise),
            Packet::Data { receiver, counter } => {
                self.on_data(now, source, receiver, counter, datagram)
            }
            Packet::Dht => self.on_dht(now, source, datagram),
        }
    }

    /// Handles one IP packet read from the TUN device.
    pub fn handle_tun_packet(&mut self, now: Instant, packet: &[u8]) {
        let Some(destination) = ip_destination(packet) else {
            self.stats.tun_malformed += 1;
            return;
        };
        let peer = match destination {
            IpAddr::V4(addr) if addr.is_multicast() || addr.is_broadcast() => None,
            IpAddr::V6(addr) if addr.is_multicast() => None,
            IpAddr::V4(addr) => self.by_ipv4.get(&addr).copied(),
            IpAddr::V6(addr) => self.by_ipv6.get(&addr).copied(),
        };
        let multicast = match destination {
            IpAddr::V4(addr) => addr.is_multicast() || addr.is_broadcast(),
            IpAddr::V6(addr) => addr.is_multicast(),
        };
        let Some(peer) = peer else {
            if multicast {
                if !self.multicast_from_tun(now, packet) {
                    self.stats.tx_multicast_dropped += 1;
                }
                self.after_input(now);
            } else {
                self.send_on_demand(now, destination, packet);
                self.after_input(now);
            }
            return;
        };
        if self.usable_current(now, peer) {
            // Classified, queued, and sent as far as the shapers allow.
            self.send_ip(now, peer, packet);
            self.after_input(now);
            return;
        }
        let mut buf = self.take_buffer();
        buf.extend_from_slice(packet);
        let p = &mut self.peers[peer];
        if p.queue.len() >= PENDING_PER_PEER {
            self.stats.tx_pending_overflow += 1;
            if let Some(old) = p.queue.pop_front() {
                self.return_buffer(old);
            }
        }
        self.peers[peer].queue.push_back(buf);
        // A responder whose new session waits for its confirmation needs
        // no handshake of its own: the confirmation flushes the queue.
        // Known from link state but not where it is: ask the DHT, so the
        // session can go direct (and at all, if no relay reaches it).
        self.find_endpoint(now, peer);
        let p = &self.peers[peer];
        if p.pending.is_none() && p.next.is_none() && self.reachable(now, peer) {
            self.start_handshake(now, peer);
        }
        self.after_input(now);
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // First, while no peer id is held.
        if self.peers.sweep_due.is_some_and(|at| at <= now) {
            self.sweep_peers(now);
        }
        // Only the peers with a deadline due: the deadlines (cached per
        // peer) cover every timer a peer has, and walking all of them on
        // every wake-up was most of an idle node's work in a large network.
        // New candidates go to every peer, so then all are walked.
        let peers = if self.nat_changed_at().is_some_and(|at| at <= now) {
            self.peers.ids()
        } else {
            self.peers
                .due(now, |index, peer| self.peer_deadline(index, peer))
        };
        for peer in peers {
            self.peer_timers(now, peer);
        }
        self.nat_after_timers();
        self.routing_timers(now);
        if self
            .discovery
            .dht
            .poll_timeout()
            .is_some_and(|at| at <= now)
        {
            self.discovery.dht.handle_timeout(now);
        }
        if self.discovery.select_due.is_some_and(|at| at <= now) {
            self.select_neighbours(now);
        }
        if self.multicast.deadline().is_some_and(|at| at <= now) {
            self.multicast_timers(now);
        }
        if self.qos.next_send.is_some_and(|at| at <= now) {
            self.qos_drain(now);
        }
        if let Some(event) = self.expiry.on_timeout(now) {
            push_event(&mut self.events, &mut self.stats, event);
        }
        if self.revocation.deadline().is_some_and(|at| at <= now) {
            self.revocation_timers(now);
        }
        self.after_input(now);
    }

    /// The next datagram to send: swaps its buffer into `buf` and returns
    /// the destination. The buffer handed in is kept for reuse.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (destination, mut contents) = self.transmits.pop_front()?;
        std::mem::swap(buf, &mut contents);
        self.return_buffer(contents);
        Some(destination)
    }

    /// The next IP packet for the TUN device, swapped into `buf`.
    #[must_use]
    pub fn poll_tun(&mut self, buf: &mut Vec<u8>) -> bool {
        let Some(mut packet) = self.tun_out.pop_front() else {
            return false;
        };
        std::mem::swap(buf, &mut packet);
        self.return_buffer(packet);
        true
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the node next needs [`Node::handle_timeout`], and why.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, TimerKind)> {
        let mut earliest: Option<(Instant, TimerKind)> = None;
        let mut consider = |at: Option<Instant>, kind: TimerKind| {
            if let Some(at) = at
                && earliest.is_none_or(|(e, _)| at < e)
            {
                earliest = Some((at, kind));
            }
        };
        consider(self.nat_changed_at(), TimerKind::Nat);
        let peers = self
            .peers
            .earliest_deadline(|index, peer| self.peer_deadline(index, peer));
        #[cfg(debug_assertions)]
        {
            let walked = self
                .peers
                .entries()
                .map(|(index, peer)| self.peer_deadline(index, peer))
                .fold(None, |earliest: peers::Deadline, next| {
                    match (earliest, next) {
                        (Some((e, _)), Some((at, _))) if at < e => next,
                        (None, _) => next,
                        _ => earliest,
                    }
                });
            debug_assert_eq!(
                peers, walked,
                "a peer changed without its cached deadline being cleared"
            );
        }
        if let Some((at, kind)) = peers {
            consider(Some(at), kind);
        }
        for (at, kind) in self.routing_deadlines() {
            consider(Some(at), kind);
        }
        consider(self.discovery.dht.poll_timeout(), TimerKind::Dht);
        consider(self.discovery.select_due, TimerKind::Neighbours);
        consider(self.multicast.deadline(), TimerKind::Multicast);
        consider(self.qos.next_send, TimerKind::Qos);
        consider(self.expiry.deadline(), TimerKind::Certificate);
        consider(self.revocation.deadline(), TimerKind::Revocation);
        consider(self.peers.sweep_due, TimerKind::Peers);
        earliest
    }

    /// The earliest timer of one peer (the first of equal ones in the order
    /// below): NAT traversal, handshake retry, probes, rekey, expiry and
    /// keepalive. Cached per peer by the table (`PeerTable::earliest_deadline`).
    fn peer_deadline(&self, index: PeerId, peer: &Peer) -> peers::Deadline {
        let mut earliest: peers::Deadline = None;
        let mut consider = |at: Option<Instant>, kind: TimerKind| {
            if let Some(at) = at
                && earliest.is_none_or(|(e, _)| at < e)
            {
                earliest = Some((at, kind));
            }
        };
        consider(self.nat_deadline(index), TimerKind::Nat);
        consider(peer.handshake_due, TimerKind::HandshakeRetry);
        consider(
            peer.monitor.poll_timeout(&self.routing.config),
            TimerKind::Probe,
        );
        if let Some(current) = &peer.current {
            // A declined rekey is due again only once data moved (the
            // session is wanted again) or packets wait.
            let declined = peer.rekey_declined_at.is_some_and(|at| {
                at >= current.created
                    && peer.last_data.is_none_or(|data| data <= at)
                    && peer.queue.is_empty()
            });
            if peer.pending.is_none()
                && !declined
                && (peer.endpoint.is_some() || peer.node_id.is_some())
            {
                consider(
                    Some(current.created + self.rekey_age(current)),
                    TimerKind::Rekey,
                );
            }
            consider(
                Some(current.created + self.config.reject_after_time),
                TimerKind::Expiry,
            );
            let sendable = current.confirmed && current.sent() < self.config.reject_after_messages;
            if sendable {
                consider(
                    peer.last_sent.map(|t| t + self.config.keepalive_interval),
                    TimerKind::Keepalive,
                );
            }
            if current.confirmed {
                consider(
                    peer.last_received.map(|t| t + self.config.dead_after),
                    TimerKind::Expiry,
                );
            }
        }
        if let Some(next) = &peer.next {
            consider(
                Some(next.created + self.config.reject_after_time),
                TimerKind::Expiry,
            );
        }
        if let Some(previous) = &peer.previous {
            consider(
                Some(previous.created + self.config.reject_after_time),
                TimerKind::Expiry,
            );
        }
        earliest
    }

    fn peer_timers(&mut self, now: Instant, peer: PeerId) {
        self.expire_sessions(now, peer);
        if self.peers[peer].handshake_due.is_some_and(|due| due <= now) {
            if let Some(stale) = self.peers[peer].pending.take() {
                self.by_index.remove(&stale.local);
                self.stats.handshake_timeouts += 1;
            }
            if self.wants_session(now, peer) && self.reachable(now, peer) {
                self.start_handshake(now, peer);
            } else {
                self.peers[peer].handshake_due = None;
            }
        }
        let rekey_due = self.peers[peer]
            .current
            .as_ref()
            .is_some_and(|t| now >= t.created + self.rekey_age(t));
        if rekey_due && self.peers[peer].pending.is_none() {
            if self.wants_session(now, peer) && self.reachable(now, peer) {
                debug!(peer = %self.peers[peer].name(), "rekeying on session age");
                self.start_handshake(now, peer);
            } else {
                // Not wanted: the session lapses at `reject_after_time`.
                // Without this mark its rekey deadline stayed in the past
                // until then, and the node was woken for it again and
                // again (a minute of busy waking per unwanted session).
                self.peers[peer].rekey_declined_at = Some(now);
            }
        }
        self.nat_timers(now, peer);
        if !self.usable_current(now, peer) {
            self.stop_probing(now, peer);
            return;
        }
        self.probe(now, peer);
        let p = &self.peers[peer];
        if p.last_sent
            .is_none_or(|t| now >= t + self.config.keepalive_interval)
            && self.wants_session(now, peer)
        {
            self.send_frame(now, peer, Frame::Keepalive, Via::Route(Metric::Latency, 0));
        }
    }

    /// Whether this node keeps its session with `peer` (rekeys it, keeps it
    /// alive, calls again when it ends): a configured peer, a picked
    /// neighbour, a peer data passed to or from in the last
    /// [`IDLE_SESSION`], or one packets wait for. Others' sessions lapse at
    /// `reject_after_time` unless the other side wants them.
    fn wants_session(&self, now: Instant, peer: PeerId) -> bool {
        let p = &self.peers[peer];
        p.configured
            || p.node_id.is_some_and(|id| self.discovery.picked(&id))
            || p.node_id.is_some_and(|id| self.multicast.mesh.picked(&id))
            || p.last_data.is_some_and(|t| now < t + IDLE_SESSION)
            || !p.queue.is_empty()
    }

    /// Room for one more session with `peer` (an init from it was just
    /// authenticated): true if the table has room or an unwanted session
    /// could be ended for it.
    fn make_room_for(&mut self, now: Instant, peer: PeerId) -> bool {
        let has_session = |p: &Peer| p.current.is_some() || p.next.is_some();
        if has_session(&self.peers[peer]) || self.wants_session(now, peer) {
            return true;
        }
        let sessions = self.peers.iter().filter(|p| has_session(p)).count();
        if sessions < self.discovery.config.max_sessions {
            return true;
        }
        let idle = self
            .peers
            .entries()
            .filter(|&(i, p)| i != peer && has_session(p))
            .filter(|&(i, _)| !self.wants_session(now, i))
            .min_by_key(|&(_, p)| (p.last_data, p.last_handshake))
            .map(|(i, _)| i);
        let Some(victim) = idle else {
            return false;
        };
        debug!(peer = %self.peers[victim].name(), "ending an idle session to make room");
        let p = &mut self.peers[victim];
        let ended: Vec<Box<Transport>> = [p.current.take(), p.previous.take(), p.next.take()]
            .into_iter()
            .flatten()
            .collect();
        p.handshake_due = None;
        for t in ended {
            self.by_index.remove(&t.local);
        }
        self.stats.sessions_evicted += 1;
        self.stop_probing(now, victim);
        true
    }

    fn expire_sessions(&mut self, now: Instant, peer: PeerId) {
        let reject = self.config.reject_after_time;
        let dead_after = self.config.dead_after;
        let p = &mut self.peers[peer];
        let mut retired = Vec::new();
        if p.previous
            .as_ref()
            .is_some_and(|t| now >= t.created + reject)
        {
            retired.extend(p.previous.take());
        }
        if p.next.as_ref().is_some_and(|t| now >= t.created + reject) {
            retired.extend(p.next.take());
        }
        let silent = p.current.as_ref().is_some_and(|t| t.confirmed)
            && p.last_received.is_some_and(|t| now >= t + dead_after);
        let expired = p
            .current
            .as_ref()
            .is_some_and(|t| now >= t.created + reject);
        if silent || expired {
            retired.extend(p.current.take());
            retired.extend(p.previous.take());
            if silent {
                self.stats.peers_lost += 1;
                if let Some(id) = p.node_id {
                    let name = p.name();
                    debug!(peer = %name, "peer fell silent; dropping its session");
                    push_event(
                        &mut self.events,
                        &mut self.stats,
                        Event::SessionLost { peer: id, name },
                    );
                }
                p.last_received = None;
            }
            if p.pending.is_none() {
                p.handshake_due = Some(now);
            }
        }
        for t in retired {
            self.by_index.remove(&t.local);
        }
        if self.peers[peer].current.is_none() {
            self.stop_probing(now, peer);
        }
    }

    fn rekey_age(&self, transport: &Transport) -> Duration {
        if transport.initiator {
            self.config.rekey_after_time
        } else {
            // The responder waits longer, so that normally only the
            // initiator rekeys and the two do not race.
            let slack = self
                .config
                .reject_after_time
                .saturating_sub(self.config.rekey_after_time)
                / 2;
            self.config.rekey_after_time + slack
        }
    }

    /// False for an id that names no peer any more (a QoS queue entry may
    /// outlive its peer).
    fn usable_current(&self, now: Instant, peer: PeerId) -> bool {
        let Some(p) = self.peers.get(peer) else {
            return false;
        };
        p.current.as_ref().is_some_and(|t| {
            t.confirmed
                && now < t.created + self.config.reject_after_time
                && t.sent() < self.config.reject_after_messages
        })
    }

    fn maybe_rekey_on_volume(&mut self, now: Instant, peer: PeerId) {
        let p = &self.peers[peer];
        let due = p
            .current
            .as_ref()
            .is_some_and(|t| t.sent() >= self.config.rekey_after_messages);
        if due && p.pending.is_none() {
            debug!(peer = %p.name(), "rekeying on volume");
            self.start_handshake(now, peer);
        }
    }

    fn start_handshake(&mut self, now: Instant, peer: PeerId) {
        let local = self.new_index();
        let timestamp = self.next_timestamp(now);
        let mut buf = self.take_buffer();
        let p = &self.peers[peer];
        // Pad the init to the size of the response it asks for (which the
        // responder may not send to an unproven address otherwise): the
        // peer's certificate when known, else a typical one.
        let their_certificate = p
            .certificate
            .as_ref()
            .map_or(TYPICAL_CERTIFICATE_LEN, |c| c.to_bytes().len());
        let own = self.certificate.to_bytes().len();
        let padding = (their_certificate + RESPONSE_OVERHEAD).saturating_sub(own + INIT_OVERHEAD);
        let payload = HandshakePayload {
            timestamp,
            certificate: self.certificate.to_bytes(),
            padding,
        };
        let cookie = p
            .cookie
            .as_ref()
            .filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_LIFETIME)
            .map(|(cookie, _)| cookie);
        let seal = InitSeal {
            responder: p.node_id,
            keys: self.guard.keys(),
            cookie,
        };
        match AwaitingResponse::start(
            now,
            &self.rng,
            &self.secret,
            &payload,
            local,
            &seal,
            &mut buf,
        ) {
            Ok(pending) => {
                self.stats.handshakes_initiated += 1;
                if let Some(old) = self.peers[peer].pending.replace(Box::new(pending)) {
                    self.by_index.remove(&old.local);
                }
                self.by_index.insert(local, peer);
                // The init travels like data: along the peer's route, or
                // straight to its endpoint while no route is known. A
                // rekey is not traffic: it must not set the link probing
                // at the active rate (on an idle link through NATs that
                // burst cost more than its keepalive).
                let via = if self.usable_current(now, peer) {
                    Via::Control
                } else {
                    Via::Route(Metric::Latency, 0)
                };
                self.emit(now, peer, buf, via);
            }
            Err(error) => {
                debug!(?error, "could not start a handshake");
                self.return_buffer(buf);
            }
        }
        let p = &mut self.peers[peer];
        let backoff = self
            .config
            .handshake_timeout
            .saturating_mul(1 << p.handshake_attempts.min(16))
            .min(self.config.handshake_backoff_max);
        // Up to a quarter more, so that peers that failed together do not
        // retry in lockstep.
        let jitter_range = (backoff.as_micros() as u64 / 4).max(1);
        let jitter = Duration::from_micros(self.rng.below(jitter_range));
        p.handshake_attempts = p.handshake_attempts.saturating_add(1);
        p.handshake_due = Some(now + backoff + jitter);
    }

    /// An init: through the guard (MACs, cookie, rate), then the cheap
    /// replay check, then the certificate and the signature; only an init
    /// that passed all of them changes anything (PROTOCOL §3.5).
    fn on_handshake_init(
        &mut self,
        now: Instant,
        source: Source,
        sender: SessionIndex,
        noise: &[u8],
        init: &SignedInit<'_>,
    ) {
        let from = self.source_address(source);
        let direct = match source {
            Source::Direct(from) => Some(from),
            Source::Relayed(_) => None,
        };
        let response_len =
            RESPONSE_OVERHEAD + wire::PAYLOAD_FIXED_LEN + self.certificate.to_bytes().len();
        let larger_response = response_len > init.datagram.len();
        match self
            .guard
            .admit(now, &self.rng, direct, init.datagram, larger_response)
        {
            Admission::Admit => {}
            Admission::SendCookie => {
                if let Some(to) = direct {
                    self.send_cookie_reply(now, to, sender, init.datagram);
                }
                return;
            }
            Admission::Drop(Refusal::Mac1) => {
                self.stats.handshake_rejected_mac1 += 1;
                trace!("handshake init with a bad mac1");
                return;
            }
            Admission::Drop(Refusal::RateLimited) => {
                self.stats.handshake_rate_limited += 1;
                trace!("handshake init over its source's rate");
                return;
            }
        }
        let view = match peek_init(noise) {
            Ok(view) => view,
            Err(error) => return self.reject_handshake(from, &error),
        };
        // The cheap replay check, before any public-key work: the
        // timestamp of the last init that proved its sender.
        let claimed = NodeId::from_static_key(&view.static_key);
        let known = self.by_id.get(&claimed).copied();
        if let Some(peer) = known
            && view.payload.timestamp <= self.peers[peer].last_init_timestamp
        {
            self.stats.handshake_rejected_replay += 1;
            trace!("handshake init replayed");
            return;
        }
        let unix_now = self.unix_now(now);
        let known_certificate = known.and_then(|peer| self.peers[peer].certificate.as_ref());
        let own_id = self.node_id();
        let certificate =
            match verify_init(&view, init, &own_id, &self.ca, unix_now, known_certificate) {
                Ok(certificate) => certificate,
                Err(error) => return self.reject_handshake(from, &error),
            };
        let received =
            match InitReceived::read(&self.rng, &self.secret, noise, sender, &certificate) {
                Ok(received) => received,
                Err(error) => return self.reject_handshake(from, &error),
            };
        if self.refuse_revoked(from, &certificate) {
            return;
        }
        let their_timestamp = view.payload.timestamp;
        if certificate.node_id() == self.node_id() {
            self.stats.handshake_rejected_unexpected_peer += 1;
            return self.reject(
                from,
                format!("'{}' is this node's own name or key", certificate.name()),
            );
        }
        // A full peer table of peers in use refuses the caller (counted
        // as `peers_refused`); it tries again later.
        let Some(peer) = self.peer_for_certificate(now, &certificate) else {
            return;
        };
        if their_timestamp <= self.peers[peer].last_init_timestamp {
            self.stats.handshake_rejected_replay += 1;
            trace!("handshake init replayed");
            return;
        }
        // From here the init is known to be the certificate holder's and
        // new: its timestamp is recorded even if ours goes on instead.
        self.peers[peer].last_init_timestamp = their_timestamp;
        if !self.make_room_for(now, peer) {
            self.stats.handshake_refused_full += 1;
            debug!(peer = %self.peers[peer].name(), "session table full: refusing a new session");
            return;
        }
        // Both sides called at once (their init crossed ours on the way):
        // keep one handshake, the one of the node with the larger id, so
        // that one side is the initiator and the two do not end up sending
        // on sessions the other retires.
        let crossing = self.peers[peer].pending.is_some()
            && match source {
                Source::Direct(from) => self.peers[peer].endpoint == Some(from),
                Source::Relayed(_) => true,
            };
        // Only a fresh init of ours can still be crossing theirs: an init
        // of theirs that left after ours would have reached them (a window
        // of twice the RTT, or the handshake timeout while no RTT is known)
        // means ours or its answer was lost, and waiting for our retry
        // would only waste their attempt (under 20 % loss that cost tens of
        // seconds). Then the smaller id answers as usual, and so does the
        // larger.
        let window = match self.peers[peer].monitor.rtt() {
            Some(rtt) => (rtt * 2).clamp(MIN_CROSSING_WINDOW, self.config.handshake_timeout),
            None => self.config.handshake_timeout,
        };
        let fresh = self.peers[peer]
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.started) < window);
        if crossing && fresh && self.node_id() > certificate.node_id() {
            self.stats.handshake_crossed += 1;
            trace!("crossing handshake init: ours goes on");
            return;
        }
        let local = self.new_index();
        let timestamp = self.next_timestamp(now);
        let mut buf = self.take_buffer();
        let payload = HandshakePayload {
            timestamp,
            certificate: self.certificate.to_bytes(),
            padding: 0,
        };
        let transport = match received.respond(now, &payload, local, &mut buf) {
            Ok(transport) => transport,
            Err(error) => {
                self.return_buffer(buf);
                return self.reject_handshake(from, &error);
            }
        };
        self.bind_identity(peer, certificate);
        // The endpoint stays: it moves only with the first transport
        // packet of the new session, which proves the initiator holds the
        // session's keys (and so its static key) and is where it says.
        let p = &mut self.peers[peer];
        if let Some(old) = p.next.replace(Box::new(transport)) {
            self.by_index.remove(&old.local);
        }
        if crossing && let Some(abandoned) = self.peers[peer].pending.take() {
            self.by_index.remove(&abandoned.local);
        }
        self.by_index.insert(local, peer);
        // The response goes back the way the init came.
        match source {
            Source::Direct(from) => self.queue_transmit(now, from, buf),
            Source::Relayed(relay) => {
                let Some(id) = self.peers[peer].node_id else {
                    return self.return_buffer(buf);
                };
                match self.path_back(now, relay, id) {
                    Some(path) => self.wrap_and_send(now, &path, buf),
                    None => self.return_buffer(buf),
                }
            }
        }
    }

    fn on_handshake_response(
        &mut self,
        now: Instant,
        source: Source,
        sender: SessionIndex,
        receiver: SessionIndex,
        noise: &[u8],
    ) {
        let Some(&peer) = self.by_index.get(&receiver) else {
            self.stats.rx_unknown_session += 1;
            return;
        };
        let is_pending = self.peers[peer]
            .pending
            .as_ref()
            .is_some_and(|p| p.local == receiver);
        if !is_pending {
            self.stats.rx_unknown_session += 1;
            return;
        }
        let Some(pending) = self.peers[peer].pending.take() else {
            return;
        };
        self.by_index.remove(&receiver);
        let from = self.source_address(source);
        let started = pending.started;
        let unix_now = self.unix_now(now);
        let (certificate, transport) =
            match pending.read_response(now, noise, sender, &self.ca, unix_now) {
                Ok(done) => done,
                Err(error) => return self.reject_handshake(from, &error),
            };
        if self.refuse_revoked(from, &certificate) {
            return;
        }
        if !self.certificate_fits_peer(peer, &certificate) {
            self.stats.handshake_rejected_unexpected_peer += 1;
            return self.reject(
                from,
                format!(
                    "answered by '{}', not the configured peer",
                    certificate.name()
                ),
            );
        }
        self.bind_identity(peer, certificate);
        self.by_index.insert(transport.local, peer);
        if let Source::Direct(from) = source {
            // A handshake over the direct path proves the link both ways.
            let p = &mut self.peers[peer];
            p.endpoint = Some(from);
            p.nat.heard_from = Some(from);
            let rtt = Some(now.saturating_duration_since(started));
            let transition = p.monitor.on_direct_handshake(now, rtt);
            self.on_link_transition(now, peer, transition);
        }
        self.install(now, peer, Box::new(transport));
        // Confirm the session to the responder at once, with data if any
        // is waiting and the shapers let it go now, else with a keepalive
        // (which never waits).
        let waiting = !self.peers[peer].queue.is_empty();
        if !waiting {
            self.send_frame(now, peer, Frame::Keepalive, Via::Control);
        }
        let sealed = |node: &Self| node.peers[peer].current.as_ref().map(|t| t.sent());
        let before = sealed(self);
        self.flush_queue(now, peer);
        if waiting && sealed(self) == before {
            self.send_frame(now, peer, Frame::Keepalive, Via::Control);
        }
    }

    fn on_data(
        &mut self,
        now: Instant,
        source: Source,
        receiver: SessionIndex,
        counter: u64,
        datagram: &[u8],
    ) {
        let Some(&peer) = self.by_index.get(&receiver) else {
            self.stats.rx_unknown_session += 1;
            return;
        };
        let reject_after = self.config.reject_after_time;
        let mut buf = self.take_buffer();
        buf.extend_from_slice(datagram);
        let p = &mut self.peers[peer];
        let Some((slot, transport)) = p.transport_mut(receiver) else {
            self.stats.rx_unknown_session += 1;
            self.return_buffer(buf);
            return;
        };
        if now >= transport.created + reject_after {
            self.stats.rx_expired_session += 1;
            self.return_buffer(buf);
            return;
        }
        let range = match transport.open(counter, &mut buf) {
            Ok(range) => {
                transport.last_received = Some(now);
                range
            }
            Err(error) => {
                match error {
                    OpenError::Replayed => self.stats.rx_replayed += 1,
                    OpenError::Decrypt => self.stats.rx_auth_failed += 1,
                }
                trace!(?error, "dropping data packet");
                self.return_buffer(buf);
                return;
            }
        };
        if slot == Slot::Next {
            // The initiator has proven it holds the keys: the new session
            // becomes current, at the endpoint this packet came from. Over
            // the direct path, the init came in and this confirmation
            // answers our response: the link works both ways.
            self.follow_endpoint(peer, source);
            if let Source::Direct(_) = source {
                let transition = self.peers[peer].monitor.on_direct_handshake(now, None);
                self.on_link_transition(now, peer, transition);
            }
            if let Some(transport) = self.peers[peer].next.take() {
                self.install(now, peer, transport);
                self.flush_queue(now, peer);
            }
        }
        self.peers[peer].last_received = Some(now);
        self.nat_heard(peer, source);
        if slot == Slot::Previous {
            self.on_previous_session(now, peer, source);
        } else {
            self.follow_endpoint(peer, source);
        }
        self.on_frame(now, peer, source, buf, range);
    }

    /// A packet on the session a newer one replaced. From the peer's
    /// endpoint it is one still in flight across a rekey. From elsewhere,
    /// two hosts answer for one node (one holds a copy of its key): while
    /// the newer session still speaks, the endpoint stays with it (packets
    /// on the older one never move it, so the endpoint does not flip with
    /// every packet) and the duplicate is counted and logged; once the
    /// newer session has been silent for [`DUPLICATE_SILENCE`], its holder
    /// is gone and the older session, which still speaks, becomes current
    /// again.
    fn on_previous_session(&mut self, now: Instant, peer: PeerId, source: Source) {
        let Source::Direct(from) = source else {
            return;
        };
        let p = &mut self.peers[peer];
        if p.endpoint == Some(from) {
            return;
        }
        let newer_speaks = p
            .current
            .as_ref()
            .and_then(|t| t.last_received)
            .is_some_and(|at| now.saturating_duration_since(at) < DUPLICATE_SILENCE);
        if newer_speaks {
            self.stats.duplicate_identity += 1;
            let due = p
                .duplicate_logged
                .is_none_or(|at| now >= at + DUPLICATE_LOG_INTERVAL);
            if due {
                p.duplicate_logged = Some(now);
                warn!(
                    peer = %p.name(),
                    "two hosts hold this node's key: one answers at its endpoint, one elsewhere; the newer session keeps the endpoint"
                );
            }
            return;
        }
        if let Some(older) = p.previous.take() {
            if let Some(newer) = p.current.replace(older) {
                p.previous = Some(newer);
            }
            self.stats.sessions_restored += 1;
            debug!(peer = %p.name(), "the newer session fell silent: back to the older one");
            self.follow_endpoint(peer, source);
        }
    }

    /// Moves the peer's endpoint to where an authenticated packet came
    /// from (roaming). Only a packet straight from the underlay says where
    /// the peer is.
    fn follow_endpoint(&mut self, peer: PeerId, source: Source) {
        let p = &mut self.peers[peer];
        if let Source::Direct(from) = source
            && p.endpoint != Some(from)
        {
            p.monitor.path_moved();
            if let (Some(old), Some(id)) = (p.endpoint, p.node_id) {
                self.stats.peers_roamed += 1;
                let name = p.name();
                debug!(peer = %name, "peer roamed to a new endpoint");
                push_event(
                    &mut self.events,
                    &mut self.stats,
                    Event::PeerRoamed {
                        peer: id,
                        name,
                        from: old,
                        to: from,
                    },
                );
            }
            self.peers[peer].endpoint = Some(from);
        }
    }

    fn on_frame(
        &mut self,
        now: Instant,
        peer: PeerId,
        source: Source,
        mut buf: Vec<u8>,
        range: std::ops::Range<usize>,
    ) {
        match Frame::decode(&buf[range.clone()]) {
            Ok(Frame::Ip(packet)) => {
                if !self.source_belongs_to(peer, packet) {
                    self.stats.rx_spoofed_source += 1;
                    trace!("dropping packet with a source address that is not the peer's");
                    self.return_buffer(buf);
                    return;
                }
                if !self.admit_inbound(now, peer, packet) {
                    self.return_buffer(buf);
                    return;
                }
                if self.tun_out.len() >= MAX_TUN_OUT {
                    self.stats.tun_queue_full += 1;
                    self.return_buffer(buf);
                    return;
                }
                let len = packet.len();
                let p = &mut self.peers[peer];
                p.last_data = Some(now);
                p.bytes_in += len as u64;
                p.packets_in += 1;
                // The IP packet follows the frame kind byte.
                buf.copy_within(range.start + 1..range.end, 0);
                buf.truncate(len);
                self.stats.rx_delivered += 1;
                self.push_tun(buf);
            }
            Ok(Frame::Keepalive) => self.return_buffer(buf),
            Ok(Frame::Ping { id }) => {
                self.return_buffer(buf);
                // Probes measure the direct link: answer only those that
                // came over it, and straight back where they came from.
                if let Source::Direct(from) = source {
                    self.stats.probe_rx_bytes += PROBE_DATAGRAM_LEN;
                    self.send_frame_to(now, peer, Frame::Pong { id }, from);
                    self.stats.probe_tx_bytes += PROBE_DATAGRAM_LEN;
                }
            }
            Ok(Frame::Pong { id }) => {
                self.return_buffer(buf);
                if let Source::Direct(from) = source
                    && self.on_punch_pong(now, peer, id, from)
                {
                    self.stats.probe_rx_bytes += PROBE_DATAGRAM_LEN;
                } else if let Source::Direct(_) = source {
                    self.stats.probe_rx_bytes += PROBE_DATAGRAM_LEN;
                    let config = &self.routing.config;
                    let transition = self.peers[peer].monitor.on_pong(now, id, config);
                    self.on_link_transition(now, peer, transition);
                    self.check_advertised(now, peer);
                    self.check_own_link(now, peer);
                }
            }
            Ok(Frame::Relay { hops, inner }) => {
                self.peers[peer].last_data = Some(now);
                // Relays are not nested: a relayed packet carries no relay
                // frame of its own.
                if let Source::Relayed(_) = source {
                    self.stats.relay_no_route += 1;
                    return self.return_buffer(buf);
                }
                let mut next = [0u8; 2 * wire::HOP_LEN];
                let hop_len = hops.len();
                next[..hop_len].copy_from_slice(hops);
                let mut inner_buf = self.take_buffer();
                inner_buf.extend_from_slice(inner);
                self.return_buffer(buf);
                self.forward(now, peer, &next[..hop_len], inner_buf);
            }
            Ok(Frame::LinkState { hops_left, record }) => {
                let mut record_buf = self.take_buffer();
                record_buf.extend_from_slice(record);
                self.return_buffer(buf);
                self.on_link_state(now, peer, hops_left, &record_buf);
                self.return_buffer(record_buf);
            }
            Ok(Frame::Multicast {
                origin,
                seq,
                hops,
                packet,
            }) => {
                self.peers[peer].last_data = Some(now);
                let mut packet_buf = self.take_buffer();
                packet_buf.extend_from_slice(packet);
                self.return_buffer(buf);
                self.on_multicast(now, peer, &origin, seq, hops, &packet_buf);
                self.return_buffer(packet_buf);
            }
            Ok(Frame::Membership(record)) => {
                let mut record_buf = self.take_buffer();
                record_buf.extend_from_slice(record);
                self.return_buffer(buf);
                self.on_membership(now, peer, &record_buf);
                self.return_buffer(record_buf);
            }
            Ok(Frame::RevocationOffer { version }) => {
                self.return_buffer(buf);
                self.on_revocation_offer(now, peer, version);
            }
            Ok(Frame::CertificateRequest { fingerprint }) => {
                self.return_buffer(buf);
                self.on_certificate_request(now, peer, &fingerprint);
            }
            Ok(Frame::Certificate(bytes)) => {
                let mut cert_buf = self.take_buffer();
                cert_buf.extend_from_slice(bytes);
                self.return_buffer(buf);
                self.on_certificate(now, &cert_buf);
                self.return_buffer(cert_buf);
            }
            Ok(Frame::RevocationChunk {
                version,
                index,
                count,
                data,
            }) => {
                let mut data_buf = self.take_buffer();
                data_buf.extend_from_slice(data);
                self.return_buffer(buf);
                self.on_revocation_chunk(now, peer, version, index, count, &data_buf);
                self.return_buffer(data_buf);
            }
            Ok(Frame::Observed(endpoint)) => {
                self.return_buffer(buf);
                self.on_observed(now, peer, endpoint);
            }
            Ok(Frame::Candidates { call, list }) => {
                let candidates = list.iter().take(wire::MAX_CANDIDATES).collect();
                self.return_buffer(buf);
                self.on_candidates(now, peer, call, candidates);
            }
            Err(error) => {
                self.stats.rx_bad_frame += 1;
                trace!(%error, "dropping undecodable frame");
                self.return_buffer(buf);
            }
        }
    }

    /// Makes `transport` the peer's current session.
    fn install(&mut self, now: Instant, peer: PeerId, transport: Box<Transport>) {
        let initiator = transport.initiator;
        let p = &mut self.peers[peer];
        let retired = p.previous.take();
        p.previous = p.current.replace(transport);
        p.handshake_attempts = 0;
        p.handshake_due = None;
        p.last_handshake = Some(now);
        p.last_received = Some(now);
        p.handshakes += 1;
        let endpoint = p.endpoint;
        if endpoint.is_some() {
            p.monitor.start(now);
        }
        let first = p.previous.is_none();
        if let (Some(id), Some(endpoint)) = (p.node_id, endpoint) {
            let rtt = p.monitor.rtt();
            self.discovery.dht.add_contact(now, id, endpoint, rtt);
        }
        if let Some(old) = retired {
            self.by_index.remove(&old.local);
        }
        self.stats.handshakes_completed += 1;
        if first {
            self.sync_link_state(now, peer);
            self.offer_revocations(now, peer);
        }
        self.nat_session_installed(now, peer, first);
        let p = &self.peers[peer];
        if !first {
            // A rekey, or the second of two crossed handshakes: the peer
            // was reachable all along, which is no news.
            debug!(peer = %p.name(), initiator, "session replaced");
        } else if let Some(id) = p.node_id {
            let name = p.name();
            debug!(peer = %name, initiator, "session established");
            push_event(
                &mut self.events,
                &mut self.stats,
                Event::SessionEstablished {
                    peer: id,
                    name,
                    endpoint,
                    initiator,
                },
            );
        }
    }

    /// Hands the packets that waited for the peer's session to the QoS
    /// scheduler, which sends them as far as the shapers allow.
    fn flush_queue(&mut self, now: Instant, peer: PeerId) {
        if !self.usable_current(now, peer) {
            return;
        }
        while let Some(packet) = self.peers[peer].queue.pop_front() {
            self.enqueue_ip(now, peer, &packet);
            self.return_buffer(packet);
        }
        self.qos_drain(now);
    }

    /// Seals `frame` in the peer's current session and sends it `via` at
    /// once: control frames, which never wait in the QoS scheduler (data
    /// goes through `send_ip` and the `qos` submodule).
    fn send_frame(&mut self, now: Instant, peer: PeerId, frame: Frame<'_>, via: Via) {
        let Some(buf) = self.seal_frame(now, peer, &frame) else {
            return;
        };
        self.emit(now, peer, buf, via);
    }

    /// Seals `frame` and sends it straight to `to` (answers to probes).
    fn send_frame_to(&mut self, now: Instant, peer: PeerId, frame: Frame<'_>, to: SocketAddr) {
        if let Some(buf) = self.seal_frame(now, peer, &frame) {
            self.queue_transmit(now, to, buf);
        }
    }

    fn seal_frame(&mut self, now: Instant, peer: PeerId, frame: &Frame<'_>) -> Option<Vec<u8>> {
        let mut buf = self.take_buffer();
        buf.resize(DATA_HEADER_LEN, 0);
        frame.emit(&mut buf);
        let p = &mut self.peers[peer];
        let Some(transport) = p.current.as_mut() else {
            self.return_buffer(buf);
            return None;
        };
        transport.seal(&mut buf);
        p.last_sent = Some(now);
        Some(buf)
    }

    /// A node's certificate, if this node has seen it (session, link state).
    fn certificate_of(&self, id: &NodeId) -> Option<&Certificate> {
        if let Some(&peer) = self.by_id.get(id)
            && let Some(certificate) = &self.peers[peer].certificate
        {
            return Some(certificate);
        }
        self.routing.lsdb.get(id).map(|r| &r.certificate)
    }

    /// Queues an IP packet for the TUN (the caller checked the bound, or
    /// the packet is dropped and counted here).
    fn push_tun(&mut self, buf: Vec<u8>) {
        if self.tun_out.len() >= MAX_TUN_OUT {
            self.stats.tun_queue_full += 1;
            self.return_buffer(buf);
            return;
        }
        self.tun_out.push_back(buf);
    }

    /// Queues a datagram for the driver. Every datagram passes here, so
    /// this is where what bypasses the QoS scheduler (control traffic,
    /// relayed frames) is charged to the egress shapers.
    fn queue_transmit(&mut self, now: Instant, destination: SocketAddr, buf: Vec<u8>) {
        if self.transmits.len() >= MAX_TRANSMITS {
            self.stats.tx_queue_full += 1;
            self.qos.booked = None;
            self.return_buffer(buf);
            return;
        }
        self.qos_charge(now, destination, buf.len());
        self.transmits.push_back((destination, buf));
    }

    /// Answers an init from an unproven address with a cookie: fewer bytes
    /// than the init, and no public-key work.
    fn send_cookie_reply(
        &mut self,
        now: Instant,
        to: SocketAddr,
        receiver: SessionIndex,
        datagram: &[u8],
    ) {
        let Some(mac1) = datagram
            .len()
            .checked_sub(2 * wire::MAC_LEN)
            .and_then(|at| datagram.get(at..at + wire::MAC_LEN))
            .and_then(|mac| <[u8; wire::MAC_LEN]>::try_from(mac).ok())
        else {
            return;
        };
        let cookie = self.guard.cookie(now, &self.rng, to);
        let (nonce, sealed) = self.guard.keys().seal_cookie(&self.rng, &mac1, &cookie);
        let mut buf = self.take_buffer();
        wire::emit_cookie_reply(&mut buf, receiver, &nonce, &sealed);
        self.stats.handshake_cookies_sent += 1;
        trace!("under load: answering an init with a cookie");
        self.queue_transmit(now, to, buf);
    }

    /// A cookie reply to an init of ours: keep the cookie and, if that init
    /// had none, send the init again at once with mac2.
    fn on_cookie_reply(
        &mut self,
        now: Instant,
        source: Source,
        receiver: SessionIndex,
        nonce: &[u8; wire::COOKIE_NONCE_LEN],
        sealed: &[u8; wire::COOKIE_LEN + wire::TAG_LEN],
    ) {
        let Source::Direct(_) = source else {
            self.stats.rx_bad_cookie_reply += 1;
            return;
        };
        let Some(&peer) = self.by_index.get(&receiver) else {
            self.stats.rx_unknown_session += 1;
            return;
        };
        let Some(pending) = self.peers[peer]
            .pending
            .as_ref()
            .filter(|p| p.local == receiver)
        else {
            self.stats.rx_unknown_session += 1;
            return;
        };
        let Some(cookie) = self.guard.keys().open_cookie(&pending.mac1, nonce, sealed) else {
            self.stats.rx_bad_cookie_reply += 1;
            return;
        };
        let retry = !pending.had_cookie;
        self.stats.handshake_cookies_received += 1;
        self.peers[peer].cookie = Some((cookie, now));
        if retry {
            debug!(peer = %self.peers[peer].name(), "peer is under load: retrying with its cookie");
            // The retry keeps the backoff of the attempt it replaces.
            let p = &mut self.peers[peer];
            p.handshake_attempts = p.handshake_attempts.saturating_sub(1);
            self.start_handshake(now, peer);
        }
    }

    fn reject_handshake(&mut self, from: SocketAddr, error: &HandshakeError) {
        let reason = match error {
            HandshakeError::Signature => {
                self.stats.handshake_rejected_init_signature += 1;
                "init not signed by its certificate's holder".to_owned()
            }
            HandshakeError::Noise => {
                self.stats.handshake_rejected_malformed += 1;
                "unreadable Noise message".to_owned()
            }
            HandshakeError::Payload(e) => {
                self.stats.handshake_rejected_malformed += 1;
                format!("bad handshake payload: {e}")
            }
            HandshakeError::Certificate(e) => {
                match e {
                    CertError::WrongCa { .. } => self.stats.handshake_rejected_wrong_ca += 1,
                    CertError::Expired { .. } | CertError::NotYetValid { .. } => {
                        self.stats.handshake_rejected_expired += 1
                    }
                    CertError::BadSignature => self.stats.handshake_rejected_bad_signature += 1,
                    CertError::KeyMismatch => self.stats.handshake_rejected_key_mismatch += 1,
                    CertError::Malformed(_) | CertError::Pem(_) | CertError::Invalid { .. } => {
                        self.stats.handshake_rejected_malformed += 1
                    }
                }
                format!("peer certificate rejected: {e}")
            }
        };
        self.reject(from, reason);
    }

    fn reject(&mut self, from: SocketAddr, reason: String) {
        debug!(%from, %reason, "handshake rejected");
        push_event(
            &mut self.events,
            &mut self.stats,
            Event::HandshakeRejected { from, reason },
        );
    }

    /// The peer entry a (valid) certificate belongs to, creating one for a
    /// member that is not configured. `None` for our own identity, and
    /// when the peer table is full of peers in use (`peers_refused`).
    fn peer_for_certificate(&mut self, now: Instant, certificate: &Certificate) -> Option<PeerId> {
        let id = certificate.node_id();
        if id == self.node_id() {
            return None;
        }
        if let Some(&peer) = self.by_id.get(&id) {
            return Some(peer);
        }
        let by_name = self.peers.find(|p| {
            p.node_id.is_none() && p.configured_name.as_deref() == Some(certificate.name())
        });
        if let Some(peer) = by_name {
            return Some(peer);
        }
        self.admit_peer(now, Peer::new(now, None, Some(id), None))
    }

    fn certificate_fits_peer(&self, peer: PeerId, certificate: &Certificate) -> bool {
        let p = &self.peers[peer];
        let id_fits = p.node_id.is_none_or(|id| id == certificate.node_id());
        let name_fits = p.node_id.is_some()
            || p.configured_name
                .as_deref()
                .is_none_or(|n| n == certificate.name());
        id_fits && name_fits
    }

    fn bind_identity(&mut self, peer: PeerId, certificate: Certificate) {
        let id = certificate.node_id();
        if self.peers[peer].certificate.as_ref() != Some(&certificate) {
            self.note_claims(&certificate);
        }
        self.by_id.insert(id, peer);
        self.by_ipv6.insert(id.overlay_ipv6(), peer);
        let old = self.peers[peer].certificate.as_ref().and_then(|c| c.ipv4());
        let new = certificate.ipv4();
        self.certificates.insert(certificate.clone());
        // A peer whose certificate now says other things (a renewal with
        // other groups) may no longer be allowed the flows its old one was:
        // the firewall judges every tracked flow again at its next packet.
        let judged_on = self.peers[peer].certificate.as_ref();
        if judged_on
            .is_some_and(|c| c.name() != certificate.name() || c.groups() != certificate.groups())
        {
            self.firewall.judge_flows_again();
        }
        let p = &mut self.peers[peer];
        p.node_id = Some(id);
        p.certificate = Some(certificate);
        for net in old.into_iter().chain(new) {
            self.rebind_ipv4(net.addr);
        }
    }

    /// Counts and logs (once each) the names and IPv4 addresses that
    /// `certificate` claims along with another node's certificate.
    fn note_claims(&mut self, certificate: &Certificate) {
        // A revoked certificate holds nothing, so it conflicts with nothing.
        if self.is_revoked(certificate) {
            return;
        }
        let others = std::iter::once(&self.certificate)
            .chain(self.peers.iter().filter_map(|p| p.certificate.as_ref()))
            .filter(|c| !self.is_revoked(c));
        let found: Vec<ClaimConflict> = others
            .flat_map(|other| conflicts_between(certificate, other))
            .collect();
        for conflict in found {
            if self.conflicts.note(conflict.clone()) {
                self.stats.claim_conflicts += 1;
                warn!(
                    claim = %conflict.claim,
                    winner = %conflict.winner.short(),
                    loser = %conflict.loser.short(),
                    "two nodes claim one name or address: the CA signed it twice"
                );
            }
        }
    }

    /// Points `addr` at the peer whose certificate holds it under the claim
    /// rule (`identity::claims`), among the certificates not revoked; none
    /// when this node's own certificate holds it.
    fn rebind_ipv4(&mut self, addr: Ipv4Addr) {
        let holder = self
            .peers
            .entries()
            .filter_map(|(i, p)| p.certificate.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| c.ipv4().is_some_and(|n| n.addr == addr))
            .filter(|(_, c)| !self.is_revoked(c))
            .min_by_key(|(_, c)| (c.not_before(), c.node_id()));
        let own_holds = |c: &Certificate| {
            self.certificate.ipv4().is_some_and(|n| n.addr == addr)
                && prevails(&self.certificate, c)
        };
        match holder {
            Some((peer, c)) if !own_holds(c) => {
                self.by_ipv4.insert(addr, peer);
            }
            Some(_) | None => {
                self.by_ipv4.remove(&addr);
            }
        }
    }

    /// Name and address conflicts this node has seen between certificates
    /// (bounded by [`MAX_CONFLICTS`](crate::MAX_CONFLICTS)), with the node
    /// that holds each under the rule of docs/PROTOCOL.md §9.3.
    pub fn conflicts(&self) -> Vec<ClaimConflict> {
        self.conflicts.list()
    }

    fn source_belongs_to(&self, peer: PeerId, packet: &[u8]) -> bool {
        let p = &self.peers[peer];
        match ip_source(packet) {
            Some(IpAddr::V6(src)) => p.node_id.is_some_and(|id| id.owns_ipv6(&src)),
            // The address must be the peer's and held by it under the claim
            // rule: a losing claimant cannot send as the winner.
            Some(IpAddr::V4(src)) => self.by_ipv4.get(&src) == Some(&peer),
            None => false,
        }
    }

    /// The underlay address a packet came from: its own, or its relay's.
    fn source_address(&self, source: Source) -> SocketAddr {
        match source {
            Source::Direct(from) => from,
            Source::Relayed(relay) => self.peers[relay]
                .endpoint
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
        }
    }

    fn new_index(&mut self) -> SessionIndex {
        loop {
            let index = SessionIndex(self.rng.next_u32());
            if !self.by_index.contains_key(&index) {
                return index;
            }
        }
    }

    fn unix_now(&self, now: Instant) -> u64 {
        (self.unix_start + now.saturating_duration_since(self.start)).as_secs()
    }

    /// Wall-clock nanoseconds for a handshake payload, strictly increasing.
    fn next_timestamp(&mut self, now: Instant) -> u64 {
        let wall = (self.unix_start + now.saturating_duration_since(self.start)).as_nanos();
        let wall = u64::try_from(wall).unwrap_or(u64::MAX);
        self.last_timestamp = wall.max(self.last_timestamp + 1);
        self.last_timestamp
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY));
        buf.clear();
        buf
    }

    fn return_buffer(&mut self, buf: Vec<u8>) {
        if self.pool.len() < MAX_POOL && buf.capacity() >= BUFFER_CAPACITY {
            self.pool.push(buf);
        }
    }
}

/// The first 16 bytes of a node id: how relay frames and link-state
/// records name nodes.
fn prefix(id: &NodeId) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&id.as_bytes()[..16]);
    out
}

/// A hash of a packet's addresses, protocol and ports (FNV-1a), so each
/// flow keeps to one of several equal paths.
fn flow_hash(packet: &[u8]) -> u64 {
    // (protocol, addresses, offset of the ports); the IPv4 checksum and the
    // IPv6 hop limit, which change per packet or path, stay out.
    let (protocol, addresses, ports_at): (&[u8], &[u8], usize) =
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => {
                let header = usize::from(packet[0] & 0x0f) * 4;
                (&packet[9..10], &packet[12..20], header)
            }
            Some(6) if packet.len() >= 40 => (&packet[6..7], &packet[8..40], 40),
            _ => (&[], &[], 0),
        };
    let ports = packet.get(ports_at..ports_at + 4).unwrap_or(&[]);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in protocol.iter().chain(addresses).chain(ports) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn push_event(events: &mut VecDeque<Event>, stats: &mut Stats, event: Event) {
    if events.len() >= MAX_EVENTS {
        stats.events_dropped += 1;
        return;
    }
    events.push_back(event);
}

fn ip_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let octets: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        6 if packet.len() >= 40 => {
            let octets: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

fn ip_source(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let octets: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        6 if packet.len() >= 40 => {
            let octets: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}
