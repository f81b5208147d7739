//! weft: the daemon and CLI of the weft overlay network.
//!
//! A thin shell around `weft-core`: tokio drivers for the UDP socket and
//! the TUN device, the TOML config, the local control socket, and the
//! commands that talk to a running node. No protocol decisions live here.
//! `up` checks a node's config before `daemon` runs it; `manual` renders
//! the man pages and shell completions; `report` prints errors.
//! `testbed` builds real multi-host overlays in network namespaces for the
//! tests and `weft demo`.

#![deny(unsafe_code)]

pub mod cert;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod firewall;
pub mod group;
pub mod ledger;
pub mod lookup;
pub mod manual;
pub mod map;
pub mod ping;
pub mod pki;
pub mod qos;
pub mod reload;
pub mod report;
pub mod routes;
pub mod status;
pub mod testbed;
pub mod up;
