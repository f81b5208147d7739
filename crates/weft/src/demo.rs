//! `weft demo`: a small overlay on this machine that a newcomer can watch.

use std::process::ExitCode;

/// Arguments of `weft demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
}

/// Runs the demo.
pub fn run(_args: &DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
