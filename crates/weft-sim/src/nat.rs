//! NAT routers in the simulated underlay (RFC 4787 terms).
//!
//! A [`NatConfig`] gives a router a public address and a mapping
//! behaviour; [`Sim::put_behind_nat`] puts hosts behind it, on one LAN.
//! What the simulator then does with a datagram:
//!
//! - between two hosts behind the same router: delivered as on a LAN,
//!   untranslated;
//! - to another router's LAN (a private address): lost, as it is on the
//!   Internet;
//! - from a host behind a router to anywhere else: the source becomes the
//!   router's public address and a port from its mapping table, one per
//!   inside host with [`NatMapping::EndpointIndependent`], one per inside
//!   host and destination with [`NatMapping::Symmetric`]; the mapping
//!   notes the destination;
//! - to a router's public address: delivered to the inside host of the
//!   mapping with that port only if that mapping sent to the datagram's
//!   source within [`MAPPING_TIMEOUT`] (port-restricted filtering, as
//!   Linux conntrack), judged when the datagram arrives. The router never
//!   hairpins.
//!
//! A rejected datagram changes nothing: these routers drop unsolicited
//! packets like a home router's firewall. Mappings are bounded per router
//! ([`MAX_MAPPINGS`], the oldest goes).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::sim::HostId;

/// How long a mapping lets answers in after its host last sent to them.
pub const MAPPING_TIMEOUT: Duration = Duration::from_secs(30);
/// Mappings a router holds at most.
pub(crate) const MAX_MAPPINGS: usize = 4096;
/// The first public port a router hands out.
const FIRST_PORT: u16 = 20_000;

/// How a router chooses public ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatMapping {
    /// One public port per inside address and port, whatever the
    /// destination.
    EndpointIndependent,
    /// A new public port per inside address and port and destination.
    Symmetric,
}

/// A NAT router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Its public address (its port is ignored: the router hands out
    /// ports).
    pub public: IpAddr,
    /// How it maps.
    pub mapping: NatMapping,
}

/// A router added with [`crate::Sim::add_nat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(pub usize);

#[derive(Debug)]
pub(crate) struct Nat {
    pub(crate) config: NatConfig,
    next_port: u16,
    /// Public port → mapping.
    mappings: BTreeMap<u16, Mapping>,
}

#[derive(Debug)]
struct Mapping {
    host: HostId,
    /// The destination, for a symmetric router.
    destination: Option<SocketAddr>,
    /// Where the host sent through it, and when last.
    contacted: BTreeMap<SocketAddr, Duration>,
    last_used: Duration,
}

impl Nat {
    pub(crate) fn new(config: NatConfig) -> Self {
        Self {
            config,
            next_port: FIRST_PORT,
            mappings: BTreeMap::new(),
        }
    }

    /// The public source of a datagram `host` sends to `to` at `now`.
    pub(crate) fn translate(&mut self, host: HostId, to: SocketAddr, now: Duration) -> SocketAddr {
        let symmetric = self.config.mapping == NatMapping::Symmetric;
        let existing = self.mappings.iter().find_map(|(port, m)| {
            (m.host == host && (!symmetric || m.destination == Some(to))).then_some(*port)
        });
        let port = match existing {
            Some(port) => port,
            None => {
                if self.mappings.len() >= MAX_MAPPINGS {
                    let oldest = self
                        .mappings
                        .iter()
                        .min_by_key(|(_, m)| m.last_used)
                        .map(|(port, _)| *port);
                    if let Some(port) = oldest {
                        self.mappings.remove(&port);
                    }
                }
                let mut port = self.next_port;
                while self.mappings.contains_key(&port) {
                    port = port.checked_add(1).unwrap_or(FIRST_PORT);
                }
                self.next_port = port.checked_add(1).unwrap_or(FIRST_PORT);
                self.mappings.insert(
                    port,
                    Mapping {
                        host,
                        destination: symmetric.then_some(to),
                        contacted: BTreeMap::new(),
                        last_used: now,
                    },
                );
                port
            }
        };
        if let Some(m) = self.mappings.get_mut(&port) {
            m.last_used = now;
            m.contacted.insert(to, now);
        }
        SocketAddr::new(self.config.public, port)
    }

    /// The inside host a datagram from `from` to public port `port`
    /// arriving at `now` goes to, if the mapping lets it in.
    pub(crate) fn admit(&self, port: u16, from: SocketAddr, now: Duration) -> Option<HostId> {
        let m = self.mappings.get(&port)?;
        let sent = *m.contacted.get(&from)?;
        (now < sent + MAPPING_TIMEOUT).then_some(m.host)
    }

    /// The inside host of the mapping with public port `port`, whether or
    /// not it would let a datagram in.
    pub(crate) fn holder(&self, port: u16) -> Option<HostId> {
        self.mappings.get(&port).map(|m| m.host)
    }

    /// Forgets every mapping (the router rebooted).
    pub(crate) fn flush(&mut self) {
        self.mappings.clear();
    }
}
