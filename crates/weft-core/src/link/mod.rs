//! Link measurement per neighbour: RTT, loss and up/down from probes.
//!
//! [`LinkMonitor`] is the per-neighbour state machine; [`RttEstimator`] the
//! smoothed RTT it keeps.

mod monitor;
mod rtt;

pub(crate) use monitor::{LinkMonitor, Transition};
pub(crate) use rtt::RttEstimator;
