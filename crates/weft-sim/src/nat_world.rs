//! The NAT traversal world shared by `tests/nat.rs` and the `nat-bench`
//! benchmark: a public member r, and members a and b behind NAT routers of
//! the simulator (`NatConfig`), each configured with r only; r knows a and
//! b by name and key but not where they are, so it cannot reach them first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use weft_core::{LocalAddress, Metric, PathKind, PeerConfig};

use crate::{
    FlowId, FlowSpec, HostId, NatConfig, NatMapping, NodeSpec, Sim, SimError, UNDERLAY_PORT,
    mesh_ipv4, peer_config, test_ca,
};

/// Whatever stopped the world from being built.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// r (public), a and b.
#[derive(Debug, Clone, Copy)]
pub struct NatWorld {
    /// The public member both reach.
    pub r: HostId,
    /// The first member behind a NAT.
    pub a: HostId,
    /// The second member behind a NAT.
    pub b: HostId,
}

/// The address of host `host` on LAN `lan` (10.0.`lan`.`host`).
pub fn lan_address(lan: u8, host: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, lan, host), UNDERLAY_PORT))
}

impl NatWorld {
    /// Builds the world: a behind a router mapping as `a_nat`, b behind one
    /// mapping as `b_nat` (`None`: behind a's router, on its LAN).
    pub fn build(
        sim: &mut Sim,
        a_nat: NatMapping,
        b_nat: Option<NatMapping>,
    ) -> Result<NatWorld, BuildError> {
        let ca = test_ca(1, sim.unix_time())?;
        let mut r_spec = NodeSpec::new(sim, "r", 0);
        r_spec.ipv4 = Some(mesh_ipv4(0));
        let r_config = r_spec.config(&ca)?;
        let r_address = sim.allocate_address();
        let r = sim.add_host("r", r_address, r_config)?;
        let nat_a = sim.add_nat(NatConfig {
            public: IpAddr::from([203, 0, 113, 1]),
            mapping: a_nat,
        });
        let nat_b = match b_nat {
            Some(mapping) => sim.add_nat(NatConfig {
                public: IpAddr::from([203, 0, 113, 2]),
                mapping,
            }),
            None => nat_a,
        };
        let b_lan = if b_nat.is_some() { 2 } else { 1 };
        let mut hosts = Vec::new();
        for (i, name, address, nat) in [
            (1, "a", lan_address(1, 2), nat_a),
            (2, "b", lan_address(b_lan, 3), nat_b),
        ] {
            let mut spec = NodeSpec::new(sim, name, i);
            spec.ipv4 = Some(mesh_ipv4(i as usize));
            spec.peers = vec![peer_config(sim, r)];
            let config = spec.config(&ca)?;
            let host = sim.add_host(name, address, config)?;
            sim.put_behind_nat(host, nat);
            sim.with_node(host, |node, now| {
                node.set_local_addresses(
                    now,
                    vec![LocalAddress {
                        endpoint: address,
                        prefix_len: 24,
                    }],
                );
            })?;
            hosts.push(host);
        }
        let (a, b) = (hosts[0], hosts[1]);
        let peers: Vec<PeerConfig> = [a, b]
            .iter()
            .map(|&h| PeerConfig {
                endpoint: None,
                ..peer_config(sim, h)
            })
            .collect();
        for peer in peers {
            sim.with_node(r, |node, now| node.add_peer(now, peer))??;
        }
        Ok(NatWorld { r, a, b })
    }

    /// How `from` reaches `to` now, as its status says.
    pub fn path_kind(sim: &Sim, from: HostId, to: HostId) -> Option<PathKind> {
        sim.peer_status(from, to).map(|p| p.path)
    }

    /// Whether a and b hold sessions with r and a route to each other.
    pub fn settled(&self, sim: &Sim) -> bool {
        let routed = sim.node(self.a).is_some_and(|n| {
            n.trace(sim.now(), sim.name(self.b), Metric::Latency)
                .is_ok()
        });
        sim.established(self.a, self.r) && sim.established(self.b, self.r) && routed
    }

    /// Whether a reaches b straight (no relay on its latency route).
    pub fn a_goes_straight_to_b(&self, sim: &Sim) -> bool {
        sim.node(self.a).is_some_and(|n| {
            n.trace(sim.now(), sim.name(self.b), Metric::Latency)
                .is_ok_and(|r| r.path.len() == 1 && r.path[0].name == sim.name(self.b))
        })
    }

    /// A 10 ms flow from a to b for `duration`, starting 10 ms from now.
    pub fn flow(&self, sim: &mut Sim, duration: Duration) -> Result<FlowId, SimError> {
        let start = sim.elapsed() + Duration::from_millis(10);
        sim.start_flow(
            &FlowSpec::new(self.a, self.b)
                .with_start(start)
                .with_interval(Duration::from_millis(10))
                .until(start + duration),
        )
    }
}
