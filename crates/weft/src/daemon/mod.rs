//! `weft up`: the node's event loop and its UDP and TUN drivers.

use std::path::Path;
use std::process::ExitCode;

/// Runs a node until SIGINT or SIGTERM.
pub fn run(_config: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
