//! The network as this node sees it: every node and link it knows, with
//! link quality, for operators (the daemon's `/api/v1/topology` and the
//! network map).
//!
//! Sources: this node's own links come from its link monitors (so a link
//! that stopped answering probes shows as down at once); everyone else's
//! come from the signed link-state records in the database, which carry
//! only links that are up (a cut link between two other nodes disappears
//! when their next records arrive). Nodes are this node, its peers, the
//! origins of records and the neighbours those records name. Read-only:
//! building the snapshot changes nothing in the node. Output is sorted by
//! node id (nodes) and by (from, to) (links), so it is deterministic.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::{LinkHealth, Node};
use crate::identity::NodeId;

/// Every node and directed link this node knows of.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyStatus {
    /// Nodes, sorted by id.
    pub nodes: Vec<TopologyNode>,
    /// Directed links, sorted by (from, to). A link measured from both
    /// ends appears twice, once per direction's measurement.
    pub links: Vec<TopologyLink>,
}

/// One node on the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyNode {
    /// Its node id.
    pub id: NodeId,
    /// Its certificate name (its short id while the name is unknown).
    pub name: String,
    /// Its overlay IPv4 address, when its certificate is known and has one.
    pub overlay_ipv4: Option<Ipv4Addr>,
    /// Whether it is the node that made this snapshot.
    pub this_node: bool,
    /// Whether a link-state record of it is held (or it is this node).
    pub advertised: bool,
}

/// One directed link: `from`'s measurement of its link to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyLink {
    /// The measuring end.
    pub from: NodeId,
    /// The other end.
    pub to: NodeId,
    /// Smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Loss rate, 0 to 1.
    pub loss: f32,
    /// Up or down (links from records are up: records list no others).
    pub health: LinkHealth,
}

impl Node {
    /// The topology this node knows now: see the module doc.
    pub fn topology(&self, now: Instant) -> TopologyStatus {
        let own = self.node_id();
        let mut nodes: BTreeMap<NodeId, TopologyNode> = BTreeMap::new();
        nodes.insert(
            own,
            TopologyNode {
                id: own,
                name: self.name().to_owned(),
                overlay_ipv4: self.overlay_ipv4().map(|n| n.addr),
                this_node: true,
                advertised: true,
            },
        );
        // Own links by neighbour: should two peer slots ever hold the same
        // node (crossed handshakes have been seen to leave a stale one),
        // the one whose link is up wins.
        let mut own_links: BTreeMap<NodeId, TopologyLink> = BTreeMap::new();
        let mut links = Vec::new();
        for p in self.peers.iter() {
            let Some(id) = p.node_id else {
                continue;
            };
            nodes.entry(id).or_insert_with(|| TopologyNode {
                id,
                name: self.name_of(&id),
                overlay_ipv4: p
                    .certificate
                    .as_ref()
                    .and_then(|c| c.ipv4())
                    .map(|n| n.addr),
                this_node: false,
                advertised: false,
            });
            let health = p.monitor.health();
            let better = own_links
                .get(&id)
                .is_none_or(|l| l.health != LinkHealth::Up && health == LinkHealth::Up);
            if health != LinkHealth::Unknown && better {
                own_links.insert(
                    id,
                    TopologyLink {
                        from: own,
                        to: id,
                        rtt: p.monitor.rtt(),
                        loss: p.monitor.loss(),
                        health,
                    },
                );
            }
        }
        links.extend(own_links.into_values());
        for (origin, record) in self.routing.lsdb.iter() {
            if record.expires <= now || *origin == own {
                continue;
            }
            let entry = nodes.entry(*origin).or_insert_with(|| TopologyNode {
                id: *origin,
                name: record.certificate.name().to_owned(),
                overlay_ipv4: None,
                this_node: false,
                advertised: true,
            });
            entry.advertised = true;
            entry.name = record.certificate.name().to_owned();
            if entry.overlay_ipv4.is_none() {
                entry.overlay_ipv4 = record.certificate.ipv4().map(|n| n.addr);
            }
            for link in &record.links {
                let Some(&neighbour) = self.routing.by_prefix.get(&link.neighbour) else {
                    continue;
                };
                links.push(TopologyLink {
                    from: *origin,
                    to: neighbour,
                    rtt: Some(Duration::from_micros(u64::from(link.rtt_us))),
                    loss: f32::from(link.loss) / f32::from(u16::MAX),
                    health: LinkHealth::Up,
                });
            }
        }
        for link in &links {
            let id = link.to;
            nodes.entry(id).or_insert_with(|| TopologyNode {
                id,
                name: self.name_of(&id),
                overlay_ipv4: None,
                this_node: false,
                advertised: false,
            });
        }
        links.sort_by(|a, b| a.from.cmp(&b.from).then(a.to.cmp(&b.to)));
        links.dedup_by(|a, b| a.from == b.from && a.to == b.to);
        TopologyStatus {
            nodes: nodes.into_values().collect(),
            links,
        }
    }
}
