//! The `weft` command: runs a node and talks to a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Run a node.
    Up {
        /// The node's config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show the running node's peers.
    Status(weft::status::StatusArgs),
    /// Show the running node's traffic classes and rate limits: rates,
    /// queue depths, queueing delays and drops.
    Qos(weft::qos::QosArgs),
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
    /// Send ICMP echo requests (through the overlay when the target is an
    /// overlay address) and report round-trip times.
    Ping(weft::ping::PingArgs),
    /// Bring up a small overlay on this machine in network namespaces and
    /// show it working (needs root).
    Demo(weft::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => weft::pki::init(&args),
        Command::Ca(command) => weft::pki::ca(&command),
        Command::Cert(command) => weft::cert::run(&command),
        Command::Up { config } => weft::daemon::run(&config),
        Command::Status(args) => weft::status::run(&args),
        Command::Qos(args) => weft::qos::run(&args),
        Command::Routes(args) => weft::routes::run_routes(&args),
        Command::Route(command) => weft::routes::run_route(&command),
        Command::Trace(args) => weft::routes::run_trace(&args),
        Command::Lookup(args) => weft::lookup::run(&args),
        Command::Group(command) => weft::group::run(&command),
        Command::Ping(args) => weft::ping::run(&args),
        Command::Demo(args) => weft::demo::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("weft: {error:#}");
            ExitCode::FAILURE
        }
    }
}
