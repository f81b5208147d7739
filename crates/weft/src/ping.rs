//! `weft ping`: ICMP echo over the overlay, without the `ping` binary.

use std::process::ExitCode;

/// Arguments of `weft ping`.
#[derive(clap::Args, Debug)]
pub struct PingArgs {
    /// Address to ping (an overlay IPv4 or IPv6 address).
    pub target: std::net::IpAddr,
    /// Number of echo requests.
    #[arg(long, short, default_value_t = 3)]
    pub count: u32,
    /// Milliseconds between requests.
    #[arg(long, default_value_t = 200)]
    pub interval_ms: u64,
    /// Milliseconds to wait for each reply.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Print one JSON summary line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `weft ping`.
pub fn run(_args: &PingArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not written yet")
}
