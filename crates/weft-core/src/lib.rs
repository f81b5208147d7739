//! weft-core: the sans-IO protocol core of the weft overlay network.
//!
//! Everything weft decides lives here, and nothing here touches the OS: no
//! sockets, no clock, no OS randomness. A [`Node`] is a state machine driven
//! from outside. The daemon (`weft`) drives it with tokio, real UDP sockets and
//! a TUN device; the simulator (`weft-sim`) drives many of them over virtual
//! links in virtual time. Both run the same code, bit for bit.
//!
//! # The call contract
//!
//! Inputs: [`Node::handle_datagram`], [`Node::handle_tun_packet`],
//! [`Node::handle_timeout`] and commands. Each takes the current time `now`.
//! After every input or command the caller drains, in this order,
//! [`Node::poll_transmit`], [`Node::poll_tun`] and [`Node::poll_event`] until
//! each returns nothing, then asks [`Node::poll_timeout`] and waits until that
//! deadline or the next input, whichever comes first.
//!
//! Time is passed in; randomness comes from the seed given to [`Node::new`];
//! wall-clock time (for certificate validity) is the unix time given there,
//! advanced by the `now` of each call. The same inputs give the same outputs.

#![forbid(unsafe_code)]

pub mod dht;
pub mod firewall;
mod identity;
mod link;
pub mod mcast;
mod node;
pub mod qos;
mod rng;
mod route;
mod session;
mod stats;
mod timer;
pub mod wire;

pub use identity::{
    CaCertificate, CaSecret, CertError, Certificate, CertificateTemplate, Claim, ClaimConflict,
    Ipv4Net, MAX_CONFLICTS, MAX_REVOCATION_LIST_BYTES, MAX_REVOCATIONS, NodeId, OVERLAY_PREFIX,
    OVERLAY_PREFIX_LEN, PemError, PublicKey, RevocationError, RevocationList, RevocationTemplate,
    SecretKey, conflicts_between, is_overlay_ipv6, prevails, verify_signature,
};
pub use node::{
    AddPeerError, CERTIFICATE_WARNING_MAX, CandidateTry, Event, GroupError, GroupStatus,
    LinkHealth, LocalAddress, NeighbourConfig, Node, NodeConfig, NodeError, PathKind, PeerConfig,
    PeerStatus, RemovePeerError, RevocationConfig, SessionState, SetCertificateError, TopologyLink,
    TopologyNode, TopologyStatus, TreeStatus, warning_window,
};
pub use route::{Hop, MAX_INTERMEDIATES, Metric, RouteError, RouteStatus, RoutingConfig};
pub use session::{HandshakeKeys, SessionConfig};
pub use stats::Stats;
pub use timer::TimerKind;
pub use wire::TUNNEL_OVERHEAD;
