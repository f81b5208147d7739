//! One testbed host: a network namespace with a weft daemon in it.
//!
//! A host runs programs inside its namespace in two ways: as a child process
//! (`ip netns exec`, see [`Host::command`]) or as a closure on a fresh thread
//! that has joined the namespace with `setns` ([`Host::enter`],
//! [`Host::spawn`]); sockets made in such a closure live in the host's
//! network stack for their whole life, whichever thread uses them later.
//! The daemon is a child of this process, killed by its PID.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::command::{describe, kill_and_reap, run_with_timeout, wait_deadline};
use super::netns::{etc_netns_dir, join_namespace, namespace_path, spawn_in};

/// How long one `weft status` call may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// A host of a [`Testbed`](super::Testbed).
#[derive(Debug)]
pub struct Host {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) netns: String,
    pub(super) dir: PathBuf,
    pub(super) config: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) log: PathBuf,
    pub(super) underlay: Ipv4Addr,
    pub(super) weft_binary: PathBuf,
    pub(super) foreign_ca: bool,
    pub(super) daemon: Mutex<Option<Child>>,
    /// The daemon was stopped on purpose: waits do not expect it to run.
    pub(super) stopped: AtomicBool,
    pub(super) overlay: OnceLock<(Ipv6Addr, Option<Ipv4Addr>)>,
}

impl Host {
    /// Position in the testbed, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node's certificate name: `h{index}`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network namespace's name (as `ip netns` knows it).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The underlay address, 198.18.0.{index + 1}, on interface `u0`.
    pub fn underlay_addr(&self) -> Ipv4Addr {
        self.underlay
    }

    /// Whether this host's certificate comes from the second, unrelated CA.
    pub fn has_foreign_ca(&self) -> bool {
        self.foreign_ca
    }

    /// The host's directory: keys, certificate, config, log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The daemon's control socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The daemon's combined stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The token of the daemon's HTTP API (the file the daemon makes at
    /// start beside its config, `[api] token_file`'s default).
    pub fn api_token(&self) -> anyhow::Result<String> {
        let path = self.dir.join(crate::config::DEFAULT_API_TOKEN_FILE);
        crate::daemon::read_token(&path)
            .map(|token| token.as_str().to_owned())
            .with_context(|| format!("{}: the API token", self.name))
    }

    /// `program` run inside this host's namespace (`ip netns exec NS program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec"])
            .arg(&self.netns)
            .arg(program);
        command
    }

    /// The `weft` binary run inside this host's namespace.
    pub fn weft(&self) -> Command {
        self.command(&self.weft_binary)
    }

    /// Runs `f` on a fresh thread inside this host's network namespace and
    /// returns its result; a panic in `f` is passed on to the caller.
    pub fn enter<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = namespace_path(&self.netns);
        thread::scope(|scope| {
            let handle = scope.spawn(move || -> anyhow::Result<T> {
                join_namespace(&path)?;
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`Host::enter`], but returns at once: `f` runs on its own thread
    /// inside the namespace, and the handle gives its result.
    pub fn spawn<T, F>(&self, f: F) -> thread::JoinHandle<anyhow::Result<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_in(&self.netns, f)
    }

    /// The daemon's status: the `status` object of the control protocol,
    /// from `weft status --json --socket ...`.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let (command, stdout) = self.weft_status(&["--json"])?;
        serde_json::from_slice(&stdout)
            .with_context(|| format!("{}: output is not JSON", describe(&command)))
    }

    /// The daemon's status as the `weft status` table an operator sees.
    pub fn status_table(&self) -> anyhow::Result<String> {
        let (_, stdout) = self.weft_status(&[])?;
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// What `weft status ARGS` prints (e.g. `--firewall`).
    pub fn status_with(&self, args: &[&str]) -> anyhow::Result<String> {
        let (_, stdout) = self.weft_status(args)?;
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// Runs `weft status [args] --socket ...` with a deadline; its standard
    /// output, or an error with its standard error.
    fn weft_status(&self, args: &[&str]) -> anyhow::Result<(Command, Vec<u8>)> {
        let mut command = Command::new(&self.weft_binary);
        command
            .arg("status")
            .args(args)
            .arg("--socket")
            .arg(&self.socket);
        let output = run_with_timeout(&mut command, STATUS_TIMEOUT)?;
        if !output.status.success() {
            bail!(
                "{} failed ({}): {}",
                describe(&command),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok((command, output.stdout))
    }

    /// Runs `weft reload --config CONFIG` inside this host's namespace
    /// (the daemon re-reads its config file) with a deadline: its exit
    /// status, standard output and standard error, whether it succeeded or
    /// not.
    pub fn reload(&self) -> anyhow::Result<std::process::Output> {
        let mut command = self.weft();
        command.arg("reload").arg("--config").arg(&self.config);
        run_with_timeout(&mut command, STATUS_TIMEOUT)
    }

    /// Sends one control request (`{"command": ...}`) to the daemon and
    /// returns its whole answer; `{"ok":false}` becomes an error.
    pub fn request(&self, request: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        crate::status::request(&self.socket, request)
            .with_context(|| format!("{}: control request {request}", self.name))
    }

    /// The daemon's routing table: the `routes` array of the control
    /// protocol's `{"command":"routes"}` answer.
    pub fn routes(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let answer = self.request(&serde_json::json!({ "command": "routes" }))?;
        answer["routes"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("{}: the routes answer has no routes: {answer}", self.name))
    }

    /// The route to `destination` under `metric` ("latency" or "loss") from
    /// the routing table, if it has one.
    pub fn route(
        &self,
        destination: &str,
        metric: &str,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(self.routes()?.into_iter().find(|route| {
            route["name"].as_str() == Some(destination) && route["metric"].as_str() == Some(metric)
        }))
    }

    /// The path to `destination` under `metric` from the routing table, as
    /// node names ending with the destination (one name: direct); `None`
    /// while the table has no such route.
    pub fn route_path(
        &self,
        destination: &str,
        metric: &str,
    ) -> anyhow::Result<Option<Vec<String>>> {
        Ok(self
            .route(destination, metric)?
            .map(|route| path_names(&route)))
    }

    /// The path packets to `destination` take now under `metric`: the
    /// `trace` object of `{"command":"trace"}` (a route object).
    pub fn trace(&self, destination: &str, metric: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self.request(&serde_json::json!({
            "command": "trace",
            "destination": destination,
            "metric": metric,
        }))?;
        answer
            .get("trace")
            .cloned()
            .ok_or_else(|| anyhow!("{}: the trace answer has no trace: {answer}", self.name))
    }

    /// The state of the session with peer `name` ("established", ...), or
    /// `None` if the daemon lists no such peer.
    pub fn peer_state(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(peer_state_in(&self.status()?, name))
    }

    /// A counter from the daemon's `stats`, e.g. `rx_replayed`.
    pub fn stat(&self, counter: &str) -> anyhow::Result<u64> {
        let status = self.status()?;
        status["stats"][counter]
            .as_u64()
            .ok_or_else(|| anyhow!("{}: no counter {counter} in status", self.name))
    }

    /// The node's overlay IPv6 address (from its status).
    pub fn overlay_ipv6(&self) -> anyhow::Result<Ipv6Addr> {
        Ok(self.overlay()?.0)
    }

    /// The node's overlay IPv4 address (from its status); an error if its
    /// certificate has none.
    pub fn overlay_ipv4(&self) -> anyhow::Result<Ipv4Addr> {
        self.overlay()?
            .1
            .ok_or_else(|| anyhow!("{} has no overlay IPv4 address", self.name))
    }

    /// The last `lines` lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Points the namespace's resolver at `nameserver` (port 53) by writing
    /// `/etc/netns/NS/resolv.conf`, which `ip netns exec` (and so
    /// [`Host::command`]) mounts over `/etc/resolv.conf`. Short timeouts, so
    /// a name that does not resolve fails fast. The test bed removes the
    /// directory when dropped.
    pub fn set_resolver(&self, nameserver: IpAddr) -> anyhow::Result<()> {
        let dir = etc_netns_dir(&self.netns);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("resolv.conf");
        fs::write(
            &file,
            format!(
                "# Written by the weft test bed for {}.\nnameserver {nameserver}\noptions timeout:1 attempts:2\n",
                self.name
            ),
        )
        .with_context(|| format!("writing {}", file.display()))
    }

    /// The daemon's PID while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.lock_daemon().as_ref().map(Child::id)
    }

    /// An error if the daemon has exited on its own.
    pub(super) fn check_running(&self) -> anyhow::Result<()> {
        let mut daemon = self.lock_daemon();
        let Some(child) = daemon.as_mut() else {
            bail!("{}: daemon is not running", self.name);
        };
        if let Some(status) = child.try_wait().context("waiting for the daemon")? {
            *daemon = None;
            bail!("{}: daemon exited ({status})", self.name);
        }
        Ok(())
    }

    /// Starts the daemon, appending its output to the log file.
    pub(super) fn start_daemon(&self) -> anyhow::Result<()> {
        let mut daemon = self.lock_daemon();
        if daemon.is_some() {
            bail!("{}: daemon already running", self.name);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let log_err = log.try_clone().context("duplicating the log file")?;
        let mut command = self.weft();
        command
            .arg("up")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C in the terminal reaches only
            // the caller, which then stops the daemons in order.
            .process_group(0);
        // `ip netns exec` execs the program, so this PID is the daemon's.
        let child = command
            .spawn()
            .with_context(|| format!("could not start {}", describe(&command)))?;
        *daemon = Some(child);
        Ok(())
    }

    /// Sends SIGTERM to the daemon, if it runs.
    pub(super) fn signal_stop(&self) {
        if let Some(child) = self.lock_daemon().as_ref()
            && let Ok(pid) = i32::try_from(child.id())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// SIGKILLs the daemon by its PID and reaps it, if it runs.
    pub(super) fn kill_daemon(&self) {
        if let Some(mut child) = self.lock_daemon().take() {
            kill_and_reap(&mut child);
        }
    }

    /// Waits for the daemon to exit until `deadline`, then SIGKILLs it;
    /// always reaps it.
    pub(super) fn wait_stopped(&self, deadline: Instant) {
        let mut daemon = self.lock_daemon();
        if let Some(mut child) = daemon.take() {
            match wait_deadline(&mut child, deadline) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => kill_and_reap(&mut child),
            }
        }
    }

    fn overlay(&self) -> anyhow::Result<(Ipv6Addr, Option<Ipv4Addr>)> {
        if let Some(overlay) = self.overlay.get() {
            return Ok(*overlay);
        }
        let status = self.status()?;
        let ipv6 = status["overlay_ipv6"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: status has no overlay_ipv6", self.name))?
            .parse()
            .with_context(|| format!("{}: bad overlay_ipv6", self.name))?;
        let ipv4 = match status["overlay_ipv4"].as_str() {
            Some(text) => {
                let address = text.split_once('/').map_or(text, |(address, _)| address);
                Some(
                    address
                        .parse()
                        .with_context(|| format!("{}: bad overlay_ipv4 {text}", self.name))?,
                )
            }
            None => None,
        };
        Ok(*self.overlay.get_or_init(|| (ipv6, ipv4)))
    }

    fn lock_daemon(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding this lock leaves the Option intact, so the
        // poisoned value is still right to use.
        self.daemon
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The node names of a route object's `path` (hops in order, ending with
/// the destination; a hop without a name shows its node id).
pub fn path_names(route: &serde_json::Value) -> Vec<String> {
    route["path"]
        .as_array()
        .map(|hops| {
            hops.iter()
                .map(|hop| {
                    hop["name"]
                        .as_str()
                        .filter(|name| !name.is_empty())
                        .or_else(|| hop["node_id"].as_str())
                        .unwrap_or("?")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The state of peer `name` in a status object.
pub(super) fn peer_state_in(status: &serde_json::Value, name: &str) -> Option<String> {
    let peers = status["peers"].as_array()?;
    let mut states = peers
        .iter()
        .filter(|peer| peer["name"].as_str() == Some(name))
        .filter_map(|peer| peer["state"].as_str());
    // A peer could be listed twice while a name entry and an id entry merge;
    // one established entry is enough.
    let first = states.next()?;
    if first == "established" {
        return Some(first.to_owned());
    }
    Some(
        states
            .find(|s| *s == "established")
            .unwrap_or(first)
            .to_owned(),
    )
}
