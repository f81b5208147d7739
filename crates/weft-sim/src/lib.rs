//! weft-sim: a deterministic simulator of weft networks.
//!
//! Many weft-core [`Node`](weft_core::Node)s run in one process and one
//! thread, on virtual links, in virtual time. The simulator is a second
//! driver of the sans-IO core beside the daemon: it feeds datagrams, TUN
//! packets and timer wake-ups into nodes and drains their outputs, exactly
//! as the call contract says, so scenarios that would need real hosts and
//! minutes of waiting run in milliseconds and replay bit for bit.
//!
//! - [`Sim`] is the world: hosts, the virtual clock, the event queue, links,
//!   captures, TUN sinks. [`Sim::step`] and [`Sim::run_until`] jump from one
//!   event to the next; nothing ever sleeps.
//! - [`LinkConfig`] describes one direction of a link as data: latency,
//!   jitter (and so reordering), random and bursty loss, duplication,
//!   bandwidth with a bounded queue, MTU, up or down.
//! - [`LinkChange`]s alter one direction of a link now or at a set time
//!   (cuts, restores, loss, latency); [`Sim::components`] is the
//!   simulator's own view of which hosts can still reach each other.
//! - A [`FlowSpec`] describes application traffic (a numbered UDP packet
//!   every interval); [`Sim::start_flow`] sends it and the [`FlowReport`]
//!   says what arrived when: delivery in a window, the outage after a
//!   failure, latencies.
//! - [`MeshBuilder`] and [`NodeSpec`] build networks from a test CA with
//!   fixed keys; [`udp_packet`] and [`parse_udp`] make and read the IP
//!   packets applications would send through the TUN.
//!
//! - [`run_dht_scenario`] is a second, much lighter simulator for the DHT at
//!   scale: thousands of DHT engines on an event heap, with an RTT model
//!   ([`RttModel`]), joins, churn and lookups ([`DhtScenario`]), measured in a
//!   [`DhtReport`] (the `dht-bench` binary prints it).
//!
//! - [`run_mcast_scenario`] measures weft's multicast trees
//!   ([`weft_core::mcast::build_tree`]) on a transit-stub [`Underlay`] of a
//!   thousand routers: stretch, link stress, fan-out, bytes, delivery and
//!   repair after failures, against naive unicast and IP multicast
//!   ([`McastScenario`], [`McastReport`]; the `mcast-bench` binary prints it);
//!   [`run_node_recovery`] measures the repair after member crashes with
//!   real nodes in [`Sim`] on the same underlay's delays.
//!
//! - NAT routers ([`NatConfig`], [`Sim::add_nat`], [`Sim::put_behind_nat`])
//!   translate and filter what their hosts send and receive, with an
//!   endpoint-independent or symmetric mapping and port-restricted
//!   filtering.
//!
//! - [`check_snapshot`] keeps the headline numbers of scenarios in a table
//!   beside the tests, so that changes show up in review.
//!
//! Determinism: the same seed and the same calls give the same trace
//! ([`Sim::trace_digest`]). Tests take their seed from [`seed_from_env`], so
//! `WEFT_SIM_SEED` replays a run; a failing test prints its seed.
//!
//! ```
//! # #![allow(clippy::disallowed_methods)]
//! use std::time::{Duration, Instant};
//! use weft_sim::{MeshBuilder, Sim};
//!
//! let mut sim = Sim::new(Instant::now(), 1);
//! let mesh = MeshBuilder::new(2).build(&mut sim).unwrap();
//! assert!(sim.run_until_condition(Duration::from_secs(5), |s| s.all_established(&mesh.hosts)));
//! ```

#![forbid(unsafe_code)]

mod dht;
mod flow;
mod link;
mod mcast;
mod nat;
pub mod nat_world;
mod net;
mod packet;
mod sim;
mod snapshot;

pub use dht::{
    DhtPhase, DhtProgress, DhtReport, DhtScenario, DhtSimError, KindCount, MAX_NODES, Place,
    REGIONS, Region, ReportRow, RttModel, markdown_table, run_dht_scenario,
};
pub use flow::{
    Delivery, FLOW_DESTINATION_PORT, FLOW_HEADER, FLOW_MARKER, FlowId, FlowReport, FlowSpec,
};
pub use link::{DropReason, GilbertElliott, LinkConfig, LinkStats, UNDERLAY_HEADER};
pub use mcast::{
    Failure, Link, McastReport, McastScenario, McastSimError, MemberOutage, NodeRecoveryRun,
    NodeRecoveryScenario, OverlayShape, Recovery, RouterKind, SchemeFigures, SchemeSummary,
    ShortestPaths, StressTwoBound, TransitStubParams, TreeDelivery, TreeShape, Trial, Underlay,
    UnderlayError, first_tree_inputs, mcast_markdown_table, run_mcast_scenario, run_node_recovery,
};
pub use nat::{MAPPING_TIMEOUT, NatConfig, NatId, NatMapping};
pub use net::{
    BuildError, Endpoints, Mesh, MeshBuilder, NodeSpec, OVERLAY_IPV4_PREFIX_LEN, add_node,
    mesh_ipv4, peer_config, sign, test_ca, test_secret_key,
};
pub use packet::{
    BuildPacketError, TcpSegment, UdpDatagram, parse_tcp, parse_udp, set_dscp, tcp_packet,
    udp_packet,
};
pub use sim::{
    CaptureId, Captured, DEFAULT_UNIX_TIME, HostId, HostTraffic, LinkChange, SEED_ENV, Sim,
    SimError, SimStats, SimTime, TunDelivery, UNDERLAY_PORT, seed_from_env,
};
pub use snapshot::{BLESS_ENV, SnapshotError, check_snapshot, snapshot_line};
