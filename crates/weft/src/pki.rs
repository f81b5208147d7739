//! `weft init` and `weft ca`: node keys, the network CA, certificates.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `weft init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Directory to write `node.key`, `node.pub` and `weft.toml` into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// `weft ca` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Create a network CA: `ca.key` (mode 0600) and `ca.crt`.
    Init {
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The network's name.
        #[arg(long, default_value = "weft")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Sign a node certificate.
    Sign {
        /// The CA key file written by `weft ca init`.
        #[arg(long)]
        ca_key: PathBuf,
        /// The node's public key file (`node.pub` from `weft init`).
        #[arg(long)]
        public_key: PathBuf,
        /// The node's name (a DNS label).
        #[arg(long)]
        name: String,
        /// Overlay IPv4 address with prefix, e.g. 198.19.0.1/16.
        #[arg(long)]
        ipv4: Option<String>,
        /// Comma-separated groups.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Where to write the certificate.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs `weft init`.
pub fn init(_args: &InitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}

/// Runs `weft ca ...`.
pub fn ca(_command: &CaCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
