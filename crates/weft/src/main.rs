//! The `weft` command: runs a node and talks to a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// weft: an encrypted overlay network that routes around failures.
#[derive(Parser, Debug)]
#[command(name = "weft", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a node key pair and a commented example config.
    Init(weft::pki::InitArgs),
    /// Manage the network CA.
    #[command(subcommand)]
    Ca(weft::pki::CaCommand),
    /// Inspect certificates.
    #[command(subcommand)]
    Cert(weft::cert::CertCommand),
    /// Run a node (or, with --check-config, check that it could start).
    Up(weft::up::UpArgs),
    /// Show the running node's peers.
    Status(weft::status::StatusArgs),
    /// Print the URL of the running node's network map, with the API's
    /// token (or the token alone, for scripts).
    Map(weft::map::MapArgs),
    /// Show the running node's traffic classes and rate limits: rates,
    /// queue depths, queueing delays and drops.
    Qos(weft::qos::QosArgs),
    /// Re-read the running node's config file: apply peers, QoS, multicast
    /// groups, pins and log level; refuse what needs a restart.
    Reload(weft::reload::ReloadArgs),
    /// Show the running node's routing table: the path to every other node
    /// under each metric.
    Routes(weft::routes::RoutesArgs),
    /// Pin or unpin the path to a destination.
    #[command(subcommand)]
    Route(weft::routes::RouteCommand),
    /// Show the path packets to a destination take now, hop by hop.
    Trace(weft::routes::TraceArgs),
    /// Find a node through the DHT by name, node id or overlay address, and
    /// show its record and the queries the lookup took.
    Lookup(weft::lookup::LookupArgs),
    /// Join and leave multicast groups, list them, show their trees.
    #[command(subcommand)]
    Group(weft::group::GroupCommand),
    /// Send ICMP echo requests to an address or a node's name (through the
    /// overlay when it is an overlay address) and report round-trip times.
    Ping(weft::ping::PingArgs),
    /// Bring up a small overlay on this machine in network namespaces and
    /// show it working (needs root).
    Demo(weft::demo::DemoArgs),
    /// Print the completion script for a shell (bash, zsh, fish, elvish,
    /// powershell), e.g. `weft completions bash > /etc/bash_completion.d/weft`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page weft(1), or with --dir write every page
    /// (weft.1, weft-up.1, weft-status.1, ...) into a directory.
    Man {
        /// Write all pages into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => weft::pki::init(&args),
        Command::Ca(command) => weft::pki::ca(&command),
        Command::Cert(command) => weft::cert::run(&command),
        Command::Up(args) => weft::up::run(&args),
        Command::Status(args) => weft::status::run(&args),
        Command::Map(args) => weft::map::run(&args),
        Command::Qos(args) => weft::qos::run(&args),
        Command::Reload(args) => weft::reload::run(&args),
        Command::Routes(args) => weft::routes::run_routes(&args),
        Command::Route(command) => weft::routes::run_route(&command),
        Command::Trace(args) => weft::routes::run_trace(&args),
        Command::Lookup(args) => weft::lookup::run(&args),
        Command::Group(command) => weft::group::run(&command),
        Command::Ping(args) => weft::ping::run(&args),
        Command::Demo(args) => weft::demo::run(&args),
        Command::Completions { shell } => {
            weft::manual::completions(shell, Cli::command(), &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man(dir),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("weft: {}", weft::report::render(&error));
            ExitCode::FAILURE
        }
    }
}

fn man(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    match dir {
        Some(dir) => {
            weft::manual::write_man_pages(Cli::command(), &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
        }
        None => {
            let pages =
                weft::manual::man_pages(Cli::command()).context("cannot render the manual page")?;
            if let Some((_, text)) = pages.first() {
                weft::status::emit(&String::from_utf8_lossy(text))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
