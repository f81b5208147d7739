//! `weft status`: asks the running daemon over its control socket.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `weft status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The node's config file (to find its control socket).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The control socket, instead of `--config`.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `weft status`.
pub fn run(_args: &StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
