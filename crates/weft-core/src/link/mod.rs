//! Link measurement per neighbour: RTT, loss and up/down from probes.
//!
//! [`LinkMonitor`] is the per-neighbour state machine; [`RttEstimator`] the
//! smoothed RTT it keeps (for timeouts), `MinRtt` the windowed minimum that
//! routes compare (a path's delay without its own queueing).

mod min_rtt;
mod monitor;
mod rtt;

pub(crate) use monitor::{LinkMonitor, Transition};
pub(crate) use rtt::RttEstimator;
