//! `weft up`: checks what can be checked before a node starts, then runs it
//! (see `daemon`), or with `--check-config` only checks.
//!
//! Before anything is created: the config file (every key, with file, line
//! and key on error), the `RUST_LOG` filter if set (a mistyped level must
//! not silently turn off the log), and the secret key's permissions (a key
//! other users can read is refused unless `--allow-exposed-key`). With
//! `--check-config` it also reads the key, certificate and CA files and
//! checks the certificate against the CA now, prints what the node would
//! be, and exits: what a package's post-install step or a systemd
//! `ExecStartPre=` can run without root.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use crate::config::{self, check_log_filter};
use crate::pki;

/// Arguments of `weft up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// The node's config file [default: $WEFT_CONFIG, else /etc/weft/weft.toml].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Check the config, the key, certificate and CA files, the key's
    /// permissions and RUST_LOG, print what the node would be, and exit
    /// without starting it.
    #[arg(long)]
    pub check_config: bool,
    /// Start even if the node's secret key file is readable or writable by
    /// other users (refused otherwise, as ssh refuses such keys).
    #[arg(long)]
    pub allow_exposed_key: bool,
}

/// Runs `weft up`.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let location = config::locate(args.config.as_deref());
    let config = location.load()?;
    check_log_environment()?;
    if !args.allow_exposed_key {
        config.check_key_permissions()?;
    }
    if args.check_config {
        let node = config.node_config(pki::unix_now()?)?;
        println!(
            "{}: ok: node {} (id {}), listen {}, tun {}, control socket {}",
            config.file.display(),
            node.certificate.name(),
            node.secret_key.node_id().short(),
            config.node.listen,
            config.tun.name,
            config.control.socket.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    crate::daemon::run(&location.path)
}

/// `RUST_LOG`, when set, replaces `[log] level`: it is checked as strictly.
fn check_log_environment() -> anyhow::Result<()> {
    let Some(value) = std::env::var_os("RUST_LOG") else {
        return Ok(());
    };
    let text = value
        .to_str()
        .context("RUST_LOG is not valid UTF-8 (unset it to use the config's [log] level)")?;
    check_log_filter(text).map_err(|message| {
        anyhow!("RUST_LOG: {message} (it replaces the config's [log] level; unset it to use that)")
    })
}
