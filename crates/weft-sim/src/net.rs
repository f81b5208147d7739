//! Building networks for scenarios: a test CA, node identities, and full
//! meshes of nodes that know each other as static peers.
//!
//! Keys and CAs come from fixed bytes (a key index, a CA tag), never from the
//! simulation seed, so a node has the same identity, node id and overlay
//! addresses under every seed; only what the nodes do with randomness
//! changes. Mesh nodes are named `n0`, `n1`, ... and get overlay IPv4
//! addresses 198.19.0.1/16, 198.19.0.2/16, ... in order.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use weft_core::dht::DhtConfig;
use weft_core::firewall::FirewallConfig;
use weft_core::mcast::MulticastConfig;
use weft_core::qos::QosConfig;
use weft_core::{
    CaSecret, CertError, Certificate, CertificateTemplate, Ipv4Net, NeighbourConfig, NodeConfig,
    PeerConfig, RevocationConfig, RoutingConfig, SecretKey, SessionConfig,
};

use crate::link::LinkConfig;
use crate::sim::{HostId, Sim, SimError};

/// Prefix length of the overlay IPv4 network (198.19.0.0/16).
pub const OVERLAY_IPV4_PREFIX_LEN: u8 = 16;

/// How long test certificates are valid before and after the simulation's
/// start, in seconds.
const VALID_BEFORE: u64 = 3_600;
const VALID_AFTER: u64 = 30 * 86_400;
/// Stream of the key generator, apart from any simulation stream.
const KEY_STREAM: u64 = 0x7765_6674_6b65_7973;

/// Why a network could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The CA refused to sign.
    Certificate(CertError),
    /// The simulator refused the host or the core refused the node.
    Sim(SimError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(e) => write!(f, "certificate: {e}"),
            Self::Sim(e) => write!(f, "host: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<CertError> for BuildError {
    fn from(e: CertError) -> Self {
        Self::Certificate(e)
    }
}

impl From<SimError> for BuildError {
    fn from(e: SimError) -> Self {
        Self::Sim(e)
    }
}

/// A CA made from fixed bytes: the same `tag` gives the same CA, another tag
/// another CA. Valid a year either side of `unix_time`.
pub fn test_ca(tag: u8, unix_time: u64) -> Result<CaSecret, CertError> {
    CaSecret::new(
        [tag; 32],
        &format!("sim-ca-{tag}"),
        unix_time - 365 * 86_400,
        unix_time + 365 * 86_400,
    )
}

/// The node keys for `index`: the same index gives the same keys.
pub fn test_secret_key(index: u64) -> SecretKey {
    let mut rng = ChaCha20Rng::seed_from_u64(index);
    rng.set_stream(KEY_STREAM);
    let mut bytes = [0u8; 64];
    rng.fill_bytes(&mut bytes);
    SecretKey::from_random(bytes)
}

/// The overlay IPv4 address of mesh node `index` (198.19.0.1 for 0).
pub fn mesh_ipv4(index: usize) -> Ipv4Net {
    let n = (index + 1) as u16;
    let [hi, lo] = n.to_be_bytes();
    Ipv4Net {
        addr: Ipv4Addr::new(198, 19, hi, lo),
        prefix_len: OVERLAY_IPV4_PREFIX_LEN,
    }
}

/// One node to add: who it is, what its certificate says and whom it knows.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Certificate name, also the host's name in logs.
    pub name: String,
    /// Selects the keys ([`test_secret_key`]).
    pub key_index: u64,
    /// Overlay IPv4 address in the certificate.
    pub ipv4: Option<Ipv4Net>,
    /// Groups in the certificate.
    pub groups: Vec<String>,
    /// Certificate validity, unix seconds.
    pub not_before: u64,
    /// Certificate validity end, unix seconds.
    pub not_after: u64,
    /// Static peers.
    pub peers: Vec<PeerConfig>,
    /// Session timing.
    pub session: SessionConfig,
    /// Link monitoring and routing.
    pub routing: RoutingConfig,
    /// DHT tuning.
    pub dht: DhtConfig,
    /// Endpoints to join the DHT through.
    pub bootstrap: Vec<SocketAddr>,
    /// The bounded neighbourhood.
    pub neighbours: NeighbourConfig,
    /// Multicast groups and policy.
    pub multicast: MulticastConfig,
    /// Traffic classes, classification rules and egress shaping.
    pub qos: QosConfig,
    /// Firewall rules and connection tracking (off by default).
    pub firewall: FirewallConfig,
    /// A revocation list and blocklist (none by default).
    pub revocation: RevocationConfig,
}

impl NodeSpec {
    /// A node named `name` with keys `key_index`, a certificate valid from an
    /// hour before now to 30 days after, no IPv4 address and no peers.
    pub fn new(sim: &Sim, name: &str, key_index: u64) -> Self {
        let now = sim.unix_time();
        Self {
            name: name.to_owned(),
            key_index,
            ipv4: None,
            groups: Vec::new(),
            not_before: now.saturating_sub(VALID_BEFORE),
            not_after: now + VALID_AFTER,
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

    /// The node config, with a certificate signed by `ca`.
    pub fn config(&self, ca: &CaSecret) -> Result<NodeConfig, CertError> {
        let secret_key = test_secret_key(self.key_index);
        let certificate = ca.sign(&CertificateTemplate {
            name: self.name.clone(),
            public_key: secret_key.public(),
            ipv4: self.ipv4,
            groups: self.groups.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
        })?;
        Ok(NodeConfig {
            secret_key,
            certificate,
            ca: ca.certificate().clone(),
            peers: self.peers.clone(),
            session: self.session.clone(),
            routing: self.routing.clone(),
            dht: self.dht.clone(),
            bootstrap: self.bootstrap.clone(),
            neighbours: self.neighbours,
            multicast: self.multicast.clone(),
            qos: self.qos.clone(),
            firewall: self.firewall.clone(),
            revocation: self.revocation.clone(),
        })
    }
}

/// Signs a certificate for `secret_key`.
pub fn sign(
    ca: &CaSecret,
    secret_key: &SecretKey,
    name: &str,
    ipv4: Option<Ipv4Net>,
    not_before: u64,
    not_after: u64,
) -> Result<Certificate, CertError> {
    ca.sign(&CertificateTemplate {
        name: name.to_owned(),
        public_key: secret_key.public(),
        ipv4,
        groups: Vec::new(),
        not_before,
        not_after,
    })
}

/// Adds the node `spec` describes, certified by `ca`, at a fresh address.
pub fn add_node(sim: &mut Sim, ca: &CaSecret, spec: &NodeSpec) -> Result<HostId, BuildError> {
    let config = spec.config(ca)?;
    let address = sim.allocate_address();
    Ok(sim.add_host(&spec.name, address, config)?)
}

/// How another node configures `host` as a static peer: name, key and
/// current endpoint.
pub fn peer_config(sim: &Sim, host: HostId) -> PeerConfig {
    let config = sim.config(host);
    PeerConfig {
        name: Some(config.certificate.name().to_owned()),
        public_key: Some(config.secret_key.public()),
        endpoint: Some(sim.address(host)),
    }
}

/// A full mesh built by [`MeshBuilder`].
pub struct Mesh {
    /// The network's CA.
    pub ca: CaSecret,
    /// The hosts, `n0` first.
    pub hosts: Vec<HostId>,
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("ca", &self.ca.certificate())
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Which mesh nodes know each other's endpoints (and so call each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Endpoints {
    /// Every node knows every other's endpoint: both sides of each pair
    /// start a handshake at once, and the handshakes cross.
    #[default]
    Everyone,
    /// A node knows the endpoints of the nodes added after it only: in each
    /// pair the older node calls and the newer waits, so handshakes never
    /// cross.
    OlderCallsNewer,
}

/// Builds N nodes of one CA, each listing every other as a static peer with
/// name and key, and with its endpoint as [`Endpoints`] says.
#[derive(Debug, Clone)]
pub struct MeshBuilder {
    count: usize,
    ca_tag: u8,
    session: SessionConfig,
    routing: RoutingConfig,
    link: Option<LinkConfig>,
    endpoints: Endpoints,
    multicast: MulticastConfig,
    qos: QosConfig,
    node_qos: Vec<(usize, QosConfig)>,
    node_groups: Vec<(usize, Vec<String>)>,
    node_firewall: Vec<(usize, FirewallConfig)>,
}

impl MeshBuilder {
    /// A mesh of `count` nodes with default sessions and links.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            ca_tag: 1,
            session: SessionConfig::default(),
            routing: RoutingConfig::default(),
            link: None,
            endpoints: Endpoints::Everyone,
            multicast: MulticastConfig::default(),
            qos: QosConfig::default(),
            node_qos: Vec::new(),
            node_groups: Vec::new(),
            node_firewall: Vec::new(),
        }
    }

    /// Which nodes know which endpoints.
    pub fn with_endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Session timing for every node.
    pub fn with_session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }

    /// Link monitoring and routing for every node.
    pub fn with_routing(mut self, routing: RoutingConfig) -> Self {
        self.routing = routing;
        self
    }

    /// Multicast settings for every node.
    pub fn with_multicast(mut self, multicast: MulticastConfig) -> Self {
        self.multicast = multicast;
        self
    }

    /// QoS settings (classes, rules, shaping) for every node.
    pub fn with_qos(mut self, qos: QosConfig) -> Self {
        self.qos = qos;
        self
    }

    /// QoS settings for mesh node `index` only (`n{index}`), replacing
    /// those of [`MeshBuilder::with_qos`] for it.
    pub fn with_node_qos(mut self, index: usize, qos: QosConfig) -> Self {
        self.node_qos.retain(|(i, _)| *i != index);
        self.node_qos.push((index, qos));
        self
    }

    /// Certificate groups of mesh node `index`.
    pub fn with_node_groups(mut self, index: usize, groups: &[&str]) -> Self {
        self.node_groups.retain(|(i, _)| *i != index);
        self.node_groups
            .push((index, groups.iter().map(|g| (*g).to_owned()).collect()));
        self
    }

    /// The firewall of mesh node `index` (the others have none).
    pub fn with_node_firewall(mut self, index: usize, firewall: FirewallConfig) -> Self {
        self.node_firewall.retain(|(i, _)| *i != index);
        self.node_firewall.push((index, firewall));
        self
    }

    /// Sets the simulator's default link before the nodes start.
    pub fn with_link(mut self, link: LinkConfig) -> Self {
        self.link = Some(link);
        self
    }

    /// The CA's tag ([`test_ca`]).
    pub fn with_ca_tag(mut self, tag: u8) -> Self {
        self.ca_tag = tag;
        self
    }

    /// Adds the nodes to `sim`.
    pub fn build(self, sim: &mut Sim) -> Result<Mesh, BuildError> {
        if let Some(link) = self.link {
            sim.set_default_link(link);
        }
        let ca = test_ca(self.ca_tag, sim.unix_time())?;
        let mut specs: Vec<NodeSpec> = (0..self.count)
            .map(|i| {
                let mut spec = NodeSpec::new(sim, &format!("n{i}"), i as u64);
                spec.ipv4 = Some(mesh_ipv4(i));
                spec.session = self.session.clone();
                spec.routing = self.routing.clone();
                spec.multicast = self.multicast.clone();
                spec.qos = self
                    .node_qos
                    .iter()
                    .find(|(index, _)| *index == i)
                    .map_or_else(|| self.qos.clone(), |(_, qos)| qos.clone());
                if let Some((_, groups)) = self.node_groups.iter().find(|(index, _)| *index == i) {
                    spec.groups = groups.clone();
                }
                if let Some((_, firewall)) =
                    self.node_firewall.iter().find(|(index, _)| *index == i)
                {
                    spec.firewall = firewall.clone();
                }
                spec
            })
            .collect();
        let addresses: Vec<_> = (0..self.count).map(|_| sim.allocate_address()).collect();
        let keys: Vec<_> = specs
            .iter()
            .map(|s| test_secret_key(s.key_index).public())
            .collect();
        for (i, spec) in specs.iter_mut().enumerate() {
            spec.peers = (0..self.count)
                .filter(|&j| j != i)
                .map(|j| PeerConfig {
                    name: Some(format!("n{j}")),
                    public_key: Some(keys[j]),
                    endpoint: match self.endpoints {
                        Endpoints::Everyone => Some(addresses[j]),
                        Endpoints::OlderCallsNewer => (j > i).then_some(addresses[j]),
                    },
                })
                .collect();
        }
        let mut hosts = Vec::with_capacity(self.count);
        for (spec, address) in specs.iter().zip(addresses) {
            hosts.push(sim.add_host(&spec.name, address, spec.config(&ca)?)?);
        }
        Ok(Mesh { ca, hosts })
    }
}
