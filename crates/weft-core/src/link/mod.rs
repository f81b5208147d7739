//! Link measurement per neighbour: round-trip time from pings and handshakes.
//!
//! For now the node measures RTT with a ping every
//! [`crate::SessionConfig::ping_interval`]; loss estimation and fast failure
//! detection build on this.

mod rtt;

pub(crate) use rtt::RttEstimator;
