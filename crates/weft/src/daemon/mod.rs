//! `weft up`: the node's event loop and its UDP, TUN and control drivers.
//!
//! One loop owns the [`Node`]. It waits for the UDP socket, the TUN
//! interface, the node's next timer or a control request, takes the time
//! once per wake-up, feeds the core what is ready and drains its outputs in
//! the contract's order (transmits, TUN packets, events). Each source is
//! read at most `BUDGET` (64) packets per wake-up, so a flood on one cannot
//! starve the others; what is left stays ready and is read on the next
//! turn. The loop makes no protocol decisions: no retries and no timeouts
//! of its own, only the core's.
//!
//! Control requests (status, routes, pins, traces) are answered between
//! wake-ups' inputs and followed by a drain, since a pin may send or log
//! something at once. The config's `[[pins]]` are applied at start; a pin
//! whose nodes the node does not know yet (they are learnt from handshakes
//! and link state) waits and is tried again whenever the node learns of a
//! session, a link or a path.
//!
//! SIGHUP and the control command `reload` re-read the config file and
//! the certificate, CA and revocation list files it names (`reload.rs`
//! says what may change at run time and checks it all first); the loop
//! applies the changes through the core's commands (a renewed certificate,
//! the multicast policy, firewall, revocation list and blocklist, peers,
//! QoS, groups, pins) and the log filter's reload handle, all or nothing,
//! and keeps the config it runs with.
//!
//! Lookups (`weft lookup`, and DNS queries for `NAME.weft` from the DNS
//! responder) start `Node::lookup`; the loop keeps who waits for which
//! lookup (bounded, each with a deadline a little after the DHT's own
//! `lookup_timeout`) and answers them all when `Event::LookupDone` comes.
//! Concurrent DNS queries for one name share one lookup.
//!
//! Multicast: the core does it all (joins from the kernel's IGMP/MLD
//! reports on the TUN, membership records, trees, forwarding); the loop
//! passes `weft group` commands to it and logs membership changes, and at
//! start `multicast.rs` prepares the TUN so that applications' multicast
//! reaches the node (flag and routes; see there for what Linux needs).
//!
//! The HTTP API (`api/`: JSON, `/metrics`, the network map) asks the loop
//! through the same request channel as the control socket, and every core
//! event is recorded in its event hub (stream and ring buffer) before it is
//! logged.
//!
//! Start-up does everything that needs root first (TUN, sockets, routes,
//! the resolver, the API's token), then `privilege.rs` switches to the
//! daemon's user and drops every capability before the loop runs.
//!
//! Revocation lists: the node may learn a newer list from a peer than the
//! one its config names. The loop saves the newest list the node holds in
//! the state directory whenever it changes, and at start gives the node
//! the newer of the saved and the configured list (`state.rs`).
//!
//! Files: `udp.rs` (batched socket I/O), `tun.rs` (the interface, platform
//! choice), `control.rs` (the unix control socket), `api/` (the HTTP API
//! and network map), `dns.rs` (the DNS
//! responder's sockets and codec), `multicast.rs` (the TUN's multicast
//! routes), `privilege.rs` (dropping root), `reload.rs` (what a config
//! reload may change), `state.rs` (what is kept across restarts).

mod api;
mod control;
mod dns;
mod interfaces;
mod multicast;
mod privilege;
mod reload;
mod state;
mod tun;
mod udp;

pub(crate) use api::read_token;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, trace, warn};
use weft_core::dht::{LookupError, LookupId, LookupTrace, NodeRecord, Target};
use weft_core::{
    Event, LinkHealth, Node, NodeConfig, NodeId, PathKind, RevocationList, RouteError, SessionState,
};

use crate::config::{Config, DEFAULT_DNS_PORT, DnsSection, PinSection};
use crate::firewall::FirewallInfo;
use crate::group::{GroupInfo, MulticastInfo, TreeInfo};
use crate::lookup::LookupInfo;
use crate::pki;
use crate::qos::QosInfo;
use crate::reload::ReloadInfo;
use crate::routes::{RouteInfo, loss_rate};
use crate::status::{CandidateInfo, DhtInfo, NodeStatus, PeerInfo};
use control::{Command, ControlSocket, Request, Response};
use dns::{DnsAnswer, DnsRequest, DnsServer};
use tun::Tun;
use udp::Udp;

/// Most packets read from one source per wake-up.
const BUDGET: usize = 64;
/// At most this many handshake rejections are logged per window; the rest
/// are counted and summarised, so a flood of bad handshakes cannot flood
/// the log.
const REJECTIONS_PER_WINDOW: u32 = 5;
const REJECTION_WINDOW: Duration = Duration::from_secs(10);
/// Lookups the loop waits for at once (for DNS and `weft lookup`); more
/// are refused until some end.
const MAX_LOOKUPS: usize = 1024;
/// Clients waiting for one lookup, at most.
const MAX_WAITERS: usize = 64;
/// How long after the DHT's `lookup_timeout` a lookup's waiters are given
/// up on, should its end never be reported.
const LOOKUP_GRACE: Duration = Duration::from_secs(5);
/// Longest `resolvectl` may take.
const RESOLVECTL_TIMEOUT: Duration = Duration::from_secs(10);

/// The handle that changes the log filter at run time (`log.level` on a
/// reload).
type LogFilter =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Runs a node until SIGINT or SIGTERM; SIGHUP reloads its config.
pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let log_filter = init_logging(&config.log.level);
    let privileges = privilege::Plan::new(&config)?;
    warn_if_key_is_exposed(&config.node.key.path);
    let unix_now = pki::unix_now()?;
    let node_config = config.node_config(unix_now)?;
    let seed = pki::random_bytes::<32>()?;
    // A current-thread runtime: the node is one state machine that only
    // this loop touches, and every socket and TUN operation is
    // non-blocking and batched, so more threads would add cross-thread
    // wake-ups and nothing else. The control socket's tasks are tiny and
    // share the thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(serve(
        config,
        node_config,
        seed,
        unix_now,
        privileges,
        log_filter,
    ))
}

/// Secret keys readable by other users are refused before the daemon
/// starts (`up.rs`) unless `--allow-exposed-key` accepts them; accepted,
/// they still earn a warning in the log.
fn warn_if_key_is_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the node's secret key is readable by other users; chmod 600 it"
        );
    }
}

/// Installs the log subscriber; the filter comes from `RUST_LOG` if set,
/// else from `level`. The handle to change it is returned only in the
/// second case: a filter set in `RUST_LOG` is the operator's and stays.
fn init_logging(level: &str) -> Option<LogFilter> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, fmt, reload};
    let from_env = std::env::var_os("RUST_LOG").map(|_| EnvFilter::try_from_default_env());
    let (filter, env_error, from_config) = match from_env {
        Some(Ok(filter)) => (filter, None, false),
        Some(Err(e)) => (EnvFilter::new(level), Some(e), true),
        None => (EnvFilter::new(level), None, true),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .is_ok();
    if let Some(e) = env_error {
        warn!(error = %e, "RUST_LOG is not a valid filter; using the config's log.level");
    }
    (installed && from_config).then_some(handle)
}

async fn serve(
    config: Config,
    mut node_config: NodeConfig,
    seed: [u8; 32],
    unix_now: u64,
    privileges: privilege::Plan,
    log_filter: Option<LogFilter>,
) -> anyhow::Result<ExitCode> {
    #[allow(clippy::disallowed_methods)] // the driver is where time enters
    let now = Instant::now();
    // Sub-second precision: handshake timestamps are built on it, and a
    // daemon restarted within the same second must still look newer.
    #[allow(clippy::disallowed_methods)] // the driver is where wall-clock time enters
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::from_secs(unix_now));
    // The configured list (checked by `node_config`) and the one saved by
    // an earlier run: the node starts with the newer.
    let configured_version = node_config
        .revocation
        .list
        .as_ref()
        .map(RevocationList::version);
    let state_dir = &config.daemon.state_dir;
    let made_state_dir = state::prepare(state_dir);
    let saved = state::load_revocations(state_dir, &node_config.ca);
    let saved_version = saved.as_ref().map_or(0, RevocationList::version);
    if saved_version > configured_version.unwrap_or(0) {
        info!(
            version = saved_version,
            file = %state_dir.join(state::REVOCATIONS_FILE).display(),
            configured = ?configured_version,
            "starting with the saved revocation list: newer than the configured one"
        );
    }
    node_config.revocation.list = state::newer(node_config.revocation.list.take(), saved);
    let mut node = Node::new(now, wall, seed, node_config).with_context(|| {
        format!(
            "cannot start the node configured in {}",
            config.file.display()
        )
    })?;
    let mut pending_pins = Vec::new();
    for (index, pin) in config.pins.iter().enumerate() {
        match apply_pin(&mut node, now, pin) {
            PinOutcome::Applied => {}
            PinOutcome::Pending => pending_pins.push(pin.clone()),
            PinOutcome::Refused(error) => anyhow::bail!(
                "{}: pins[{index}]: cannot pin the path to '{}': {error}",
                config.file.display(),
                pin.destination
            ),
        }
    }
    let udp = Udp::bind(config.node.listen)?;
    let listen = udp.local_addr().unwrap_or(config.node.listen);
    // A node bound to a specific address advertises it in its DHT record;
    // one bound to the wildcard advertises what others see of it.
    if !listen.ip().is_unspecified() {
        #[allow(clippy::disallowed_methods)] // the daemon's clock
        let now = Instant::now();
        node.set_endpoints(now, vec![listen]);
    }
    // The interfaces' addresses: LAN candidates for peers behind the same
    // NAT, and the subnets that tell a peer's LAN candidates apart.
    {
        #[allow(clippy::disallowed_methods)] // the daemon's clock
        let now = Instant::now();
        node.set_local_addresses(now, interfaces::local_addresses(listen));
    }
    let tun = Tun::create(&config.tun, node.overlay_ipv6(), node.overlay_ipv4())?;
    accept_local_source(tun.name());
    multicast::prepare(tun.name(), config.multicast.routes).await;
    let (control, requests) = ControlSocket::start(&config.control.socket)?;
    let hub = Arc::new(api::EventHub::new());
    let api = api::start(&config.api, control.requests(), Arc::clone(&hub));
    let (dns, dns_requests) = start_dns(&config.dns, tun.name(), &node).await;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let handover: Vec<&Path> = control
        .made_directory()
        .into_iter()
        .chain(made_state_dir.as_deref())
        .collect();
    let privileges =
        privilege::drop_privileges(privileges, &handover).context("cannot drop privileges")?;
    info!(
        name = node.name(),
        node_id = %node.node_id(),
        overlay_ipv6 = %node.overlay_ipv6(),
        overlay_ipv4 = %node.overlay_ipv4().map(|n| n.to_string()).unwrap_or_else(|| "none".into()),
        %listen,
        tun = tun.name(),
        mtu = config.tun.mtu,
        peers = config.peers.len(),
        control = %config.control.socket.display(),
        user = %privileges.user,
        "weft node up"
    );
    let shutdown = async {
        tokio::select! {
            _ = sigint.recv() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
        }
    };
    let mut event_loop = EventLoop {
        node,
        udp,
        tun,
        requests,
        requests_open: true,
        scratch: Vec::with_capacity(2048),
        listen,
        mtu: config.tun.mtu,
        established: BTreeSet::new(),
        rejections: RejectionLog::default(),
        pending_pins,
        pins_may_apply: true,
        dns_requests,
        dns_open: true,
        lookups: Lookups::new(config.dht.config.lookup_timeout + LOOKUP_GRACE),
        fanout: config.multicast.config.fanout,
        hub,
        hangup,
        log_filter,
        revocation_file_version: configured_version,
        revocations_saved: saved_version,
        config,
    };
    let result = event_loop.run(shutdown).await;
    drop(api);
    drop(dns);
    drop(control);
    match &result {
        Ok(()) => info!("weft node stopped"),
        Err(e) => warn!(error = %format!("{e:#}"), "weft node stopped on an error"),
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// The loop and everything it owns.
struct EventLoop {
    node: Node,
    udp: Udp,
    tun: Tun,
    requests: mpsc::Receiver<Request>,
    requests_open: bool,
    /// The buffer swapped with the core's for every output packet.
    scratch: Vec<u8>,
    listen: SocketAddr,
    mtu: u16,
    /// Peers with a session, so rekeys log at debug and new sessions at info.
    established: BTreeSet<NodeId>,
    rejections: RejectionLog,
    /// Config pins whose nodes are not known yet.
    pending_pins: Vec<PinSection>,
    /// The node learnt something since pending pins were last tried.
    pins_may_apply: bool,
    /// Names the DNS responder asks about.
    dns_requests: mpsc::Receiver<DnsRequest>,
    dns_open: bool,
    /// Who waits for which lookup.
    lookups: Lookups,
    /// The multicast tree fan-out bound, for the status.
    fanout: usize,
    /// Events for the HTTP API's stream and ring buffer.
    hub: Arc<api::EventHub>,
    /// SIGHUP: reload the config.
    hangup: tokio::signal::unix::Signal,
    /// Changes the log filter on a reload; `None` when `RUST_LOG` set it.
    log_filter: Option<LogFilter>,
    /// The config the node runs with (the last reload's, if any).
    config: Config,
    /// The version of the list in the `[pki] revocations` file when it was
    /// last read (at start or by a reload), so that a reload reports a
    /// change of the file and not every time a peer's newer list is held.
    revocation_file_version: Option<u64>,
    /// The version of the list in the state directory's file (0: none
    /// valid), or of the last list the loop tried to save there.
    revocations_saved: u64,
}

impl EventLoop {
    async fn run(&mut self, shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
        let mut shutdown = pin!(shutdown);
        // The list the node starts with may be newer than the saved one.
        self.save_revocations();
        let mut timer = pin!(tokio::time::sleep(Duration::from_secs(3600)));
        loop {
            let deadline = self.node.poll_timeout();
            if let Some((at, _)) = deadline {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            let mut request = None;
            let mut dns_query = None;
            let mut hung_up = false;
            tokio::select! {
                signal = &mut shutdown => {
                    info!(signal, "stopping");
                    return Ok(());
                }
                ready = self.udp.readable() => ready.context("the UDP socket failed")?,
                ready = self.tun.readable() => ready.context("the TUN interface failed")?,
                received = self.requests.recv(), if self.requests_open => match received {
                    Some(r) => request = Some(r),
                    None => self.requests_open = false,
                },
                received = self.dns_requests.recv(), if self.dns_open => match received {
                    Some(query) => dns_query = Some(query),
                    None => self.dns_open = false,
                },
                () = &mut timer, if deadline.is_some() => {}
                _ = self.hangup.recv() => hung_up = true,
            }
            #[allow(clippy::disallowed_methods)] // the driver is where time enters
            let now = Instant::now();
            if hung_up {
                info!("SIGHUP: reloading the config");
                let _ = self.reload(now);
                self.drain(now).await?;
            }
            self.turn(now, deadline, request, dns_query).await?;
        }
    }

    /// One wake-up: every source that is ready gets up to [`BUDGET`]
    /// packets, and the outputs are drained after each. The core's queues
    /// hold thousands of packets, so a batch of [`BUDGET`] inputs fits.
    async fn turn(
        &mut self,
        now: Instant,
        deadline: Option<(Instant, weft_core::TimerKind)>,
        request: Option<Request>,
        dns_query: Option<DnsRequest>,
    ) -> anyhow::Result<()> {
        let node = &mut self.node;
        self.udp
            .receive(BUDGET, |from, datagram| {
                node.handle_datagram(now, from, datagram)
            })
            .context("the UDP socket failed")?;
        self.drain(now).await?;

        let node = &mut self.node;
        self.tun
            .receive(BUDGET, |packet| node.handle_tun_packet(now, packet))
            .context("the TUN interface failed")?;
        self.drain(now).await?;

        if let Some((at, kind)) = deadline
            && at <= now
        {
            trace!(?kind, "timer");
            self.node.handle_timeout(now);
            self.drain(now).await?;
        }

        let mut answered = false;
        if let Some(request) = request {
            self.answer(now, request);
            answered = true;
        }
        while let Ok(request) = self.requests.try_recv() {
            self.answer(now, request);
            answered = true;
        }
        let mut queries = 0;
        if let Some(query) = dns_query {
            self.resolve(now, query);
            queries += 1;
        }
        while queries < BUDGET {
            let Ok(query) = self.dns_requests.try_recv() else {
                break;
            };
            self.resolve(now, query);
            queries += 1;
        }
        if answered || queries > 0 {
            self.drain(now).await?;
        }
        self.lookups.expire(now);
        Ok(())
    }

    /// Drains the core in the contract's order: transmits, TUN packets,
    /// events; then applies pending pins if the events may have made them
    /// possible, and drains again what that produced. Each extra round
    /// applies at least one pin, so this ends.
    async fn drain(&mut self, now: Instant) -> anyhow::Result<()> {
        loop {
            while let Some(destination) = self.node.poll_transmit(&mut self.scratch) {
                self.udp.queue(destination, &self.scratch).await?;
            }
            self.udp.flush().await?;
            while self.node.poll_tun(&mut self.scratch) {
                self.tun
                    .queue(&self.scratch)
                    .await
                    .context("the TUN interface failed")?;
            }
            self.tun.flush().await.context("the TUN interface failed")?;
            while let Some(event) = self.node.poll_event() {
                self.log_event(now, event);
            }
            self.save_revocations();
            if !self.apply_pending_pins(now) {
                return Ok(());
            }
        }
    }

    /// Saves the list the node holds in the state directory if it is not
    /// the one saved there: a list from a peer, a reload or the config at
    /// start. A failed save is logged once per version, and the file saved
    /// before stays. The write blocks the loop, but only when the node
    /// takes a newer list, and a list is at most 64 KiB.
    fn save_revocations(&mut self) {
        let Some(list) = self.node.revocation_list() else {
            return;
        };
        let version = list.version();
        if version == self.revocations_saved {
            return;
        }
        self.revocations_saved = version;
        match state::save_revocations(&self.config.daemon.state_dir, list) {
            Ok(path) => info!(version, file = %path.display(), "revocation list saved"),
            Err(error) => error!(
                version,
                error = %format!("{error:#}"),
                "cannot save the revocation list; after a restart this node refuses only what the configured list revokes until a peer offers this one again"
            ),
        }
    }

    /// Tries the config pins still waiting for their nodes, if anything
    /// was learnt since the last try; true when one was applied.
    fn apply_pending_pins(&mut self, now: Instant) -> bool {
        if !std::mem::take(&mut self.pins_may_apply) || self.pending_pins.is_empty() {
            return false;
        }
        let before = self.pending_pins.len();
        let node = &mut self.node;
        self.pending_pins
            .retain(|pin| match apply_pin(node, now, pin) {
                PinOutcome::Applied => false,
                PinOutcome::Pending => true,
                PinOutcome::Refused(error) => {
                    warn!(destination = %pin.destination, %error, "cannot apply the configured pin");
                    false
                }
            });
        self.pending_pins.len() < before
    }

    fn log_event(&mut self, now: Instant, event: Event) {
        self.hub.record(&event);
        match event {
            Event::SessionEstablished {
                peer,
                name,
                endpoint,
                initiator,
            } => {
                self.pins_may_apply = true;
                if self.established.insert(peer) {
                    info!(peer = %name, node_id = %peer.short(), initiator, "session established");
                    debug!(peer = %name, ?endpoint, "peer endpoint");
                } else {
                    debug!(peer = %name, ?endpoint, initiator, "session rekeyed");
                }
            }
            Event::SessionLost { peer, name } => {
                self.established.remove(&peer);
                warn!(peer = %name, node_id = %peer.short(), "peer fell silent; session lost");
            }
            Event::HandshakeRejected { from, reason } => {
                debug!(%from, %reason, "handshake rejected");
                match self.rejections.admit(now) {
                    Admit::Log { suppressed } => {
                        if suppressed > 0 {
                            warn!(
                                count = suppressed,
                                "more handshakes were rejected (not logged one by one)"
                            );
                        }
                        warn!(%reason, "handshake rejected");
                    }
                    Admit::Suppress => {}
                }
            }
            Event::PeerRoamed {
                peer,
                name,
                from,
                to,
            } => {
                info!(peer = %name, node_id = %peer.short(), "peer moved to a new endpoint");
                debug!(peer = %name, %from, %to, "peer endpoint changed");
            }
            Event::PathChanged {
                name,
                metric,
                from,
                to,
                ..
            } => {
                self.pins_may_apply = true;
                info!(
                    destination = %name,
                    %metric,
                    from = %describe_path(&from),
                    to = %describe_path(&to),
                    "path changed"
                );
            }
            Event::LinkDown { name, .. } => warn!(peer = %name, "direct link down"),
            Event::LinkUp { name, .. } => {
                self.pins_may_apply = true;
                info!(peer = %name, "direct link up");
            }
            Event::LookupDone {
                id,
                target,
                result,
                trace,
            } => self.lookup_done(now, id, &target, &result, &trace),
            Event::RevocationsUpdated {
                version,
                entries,
                from,
            } => info!(
                version,
                entries,
                from = from.as_deref().unwrap_or("config"),
                "revocation list installed"
            ),
            Event::PeerRevoked { peer, name } => {
                self.established.remove(&peer);
                warn!(peer = %name, node_id = %peer.short(), "certificate revoked; session ended");
            }
            Event::CertificateExpiring {
                not_after,
                remaining,
            } => {
                let at = crate::cert::utc(not_after);
                if remaining.is_zero() {
                    error!(expired = %at, "this node's certificate has expired: peers refuse new sessions; renew it (weft ca renew) and reload the node (weft reload)");
                } else {
                    warn!(
                        expires = %at,
                        left = %crate::cert::human_duration(remaining.as_secs()),
                        "this node's certificate expires soon; renew it (weft ca renew) and reload the node (weft reload)"
                    );
                }
            }
            Event::GroupJoined { group, node, name } => {
                if node == self.node.node_id() {
                    info!(%group, "joined multicast group");
                } else {
                    info!(member = %name, %group, "member joined multicast group");
                }
            }
            Event::GroupLeft { group, node, name } => {
                if node == self.node.node_id() {
                    info!(%group, "left multicast group");
                } else {
                    info!(member = %name, %group, "member left multicast group");
                }
            }
        }
    }

    fn answer(&mut self, now: Instant, request: Request) {
        let response = match request.command {
            Command::Status => Response::Status(Box::new(self.status(now))),
            Command::Reload => match self.reload(now) {
                Ok(info) => Response::Reload(Box::new(info)),
                Err(error) => Response::Refused(error),
            },
            Command::Qos => Response::Qos(Box::new(QosInfo::from_core(
                &self.node.qos_stats(now),
                self.node.qos_config(),
            ))),
            Command::Routes => Response::Routes(
                self.node
                    .routes(now)
                    .iter()
                    .map(RouteInfo::from_core)
                    .collect(),
            ),
            Command::RoutePin { destination, via } => {
                let via_names: Vec<&str> = via.iter().map(String::as_str).collect();
                match self.node.pin_route(now, &destination, &via_names) {
                    Ok(()) => {
                        // The operator's pin replaces a configured one.
                        self.pending_pins.retain(|p| p.destination != destination);
                        info!(%destination, via = %via.join(", "), "route pinned");
                        Response::Done
                    }
                    Err(error) => Response::Refused(error.to_string()),
                }
            }
            Command::RouteUnpin { destination } => {
                let was_pending = self.pending_pins.len();
                self.pending_pins.retain(|p| p.destination != destination);
                match self.node.unpin_route(now, &destination) {
                    Ok(()) => {
                        info!(%destination, "route unpinned");
                        Response::Done
                    }
                    // A configured pin that never applied is gone now too.
                    Err(_) if self.pending_pins.len() < was_pending => {
                        info!(%destination, "configured pin dropped before it applied");
                        Response::Done
                    }
                    Err(error) => Response::Refused(error.to_string()),
                }
            }
            Command::Trace {
                destination,
                metric,
            } => match self.node.trace(now, &destination, metric) {
                Ok(route) => Response::Trace(Box::new(RouteInfo::from_core(&route))),
                Err(error) => Response::Refused(error.to_string()),
            },
            Command::Lookup { target } => {
                let parsed = match Target::parse(target.trim()) {
                    Ok(parsed) => parsed,
                    Err(error) => {
                        let _ = request.reply.send(Response::Refused(error.to_string()));
                        return;
                    }
                };
                let waiter = Waiter::Control {
                    target,
                    reply: request.reply,
                };
                if !self.lookups.has_room() {
                    waiter.fail("too many lookups under way; try again shortly");
                    return;
                }
                let id = self.node.lookup(now, parsed);
                self.lookups.insert(now, id, None, waiter);
                return;
            }
            Command::GroupJoin { group } => match self.node.join_group(now, group) {
                Ok(()) => Response::Done,
                Err(error) => Response::Refused(error.to_string()),
            },
            Command::GroupLeave { group } => match self.node.leave_group(now, group) {
                Ok(()) => Response::Done,
                Err(error) => Response::Refused(error.to_string()),
            },
            Command::Groups => Response::Groups(
                self.node
                    .groups(now)
                    .iter()
                    .map(GroupInfo::from_core)
                    .collect(),
            ),
            Command::Topology => Response::Topology(Box::new(api::TopologyInfo::from_core(
                &self.node.topology(now),
            ))),
            Command::Snapshot => Response::Snapshot(Box::new(api::Snapshot {
                status: self.status(now),
                qos: self.node.qos_stats(now),
            })),
            Command::Tree { group, source } => {
                match self.node.multicast_tree(now, source.as_deref(), group) {
                    Ok(tree) => Response::Tree(Box::new(TreeInfo::from_core(&tree))),
                    Err(error) => Response::Refused(error.to_string()),
                }
            }
        };
        // The client may have gone; nothing to do then.
        let _ = request.reply.send(response);
    }

    /// Re-reads the config file and applies what may change at run time
    /// (a renewed certificate, the multicast policy, firewall, revocation
    /// list and blocklist, peers, QoS, multicast groups, pins, log level),
    /// all or nothing: if anything changed that needs a restart, or the
    /// node would refuse a change (`reload::prepare`), nothing is applied
    /// and the report lists it under `refused`. An unreadable or invalid
    /// file is an error; the running config stays in both cases.
    fn reload(&mut self, now: Instant) -> Result<ReloadInfo, String> {
        let file = self.config.file.clone();
        let new = match Config::load(&file) {
            Ok(new) => new,
            Err(error) => {
                warn!(error = %error, "config reload refused; the running config stays");
                return Err(format!("{error}; the running config stays"));
            }
        };
        let mut refused = reload::refused(&self.config, &new);
        let prepared = match reload::prepare(&self.node, now, &new) {
            Ok(prepared) => Some(prepared),
            Err(reasons) => {
                refused.extend(reasons);
                None
            }
        };
        let Some(prepared) = prepared.filter(|_| refused.is_empty()) else {
            for reason in &refused {
                warn!(%reason, "config reload refused; the running config stays");
            }
            return Ok(ReloadInfo {
                applied: Vec::new(),
                refused,
            });
        };
        let mut applied = Vec::new();
        self.apply_pki(now, &new, prepared, &mut applied);
        self.apply_policies(now, &new, &mut applied);
        let (old_peers, new_peers) = (reload::peers(&self.config), reload::peers(&new));
        for peer in reload::missing(&old_peers, &new_peers) {
            match self.node.remove_peer(peer) {
                Ok(()) => applied.push(format!("peers: {} removed", reload::label(peer))),
                Err(error) => applied.push(format!("peers: {error}")),
            }
        }
        for peer in reload::missing(&new_peers, &old_peers) {
            match self.node.add_peer(now, peer.clone()) {
                Ok(()) => applied.push(format!("peers: {} added", reload::label(peer))),
                Err(error) => applied.push(format!("peers: {error}")),
            }
        }
        if new.qos != self.config.qos {
            match self.node.set_qos(now, new.qos.clone()) {
                Ok(()) => applied.push("qos: new classes, rules and rates".to_owned()),
                Err(error) => applied.push(format!("qos: not applied: {error}")),
            }
        }
        let (old_groups, new_groups) = (reload::groups(&self.config), reload::groups(&new));
        for &group in reload::missing(old_groups, new_groups) {
            match self.node.leave_group(now, group) {
                Ok(()) => applied.push(format!("multicast.groups: left {group}")),
                Err(error) => applied.push(format!("multicast.groups: {group}: {error}")),
            }
        }
        for &group in reload::missing(new_groups, old_groups) {
            match self.node.join_group(now, group) {
                Ok(()) => applied.push(format!("multicast.groups: joined {group}")),
                Err(error) => applied.push(format!("multicast.groups: {group}: {error}")),
            }
        }
        for pin in reload::missing(&self.config.pins, &new.pins) {
            self.pending_pins.retain(|p| p != pin);
            // A pin that never applied has nothing to undo.
            let _ = self.node.unpin_route(now, &pin.destination);
            applied.push(format!("pins: {} unpinned", pin.destination));
        }
        for pin in reload::missing(&new.pins, &self.config.pins) {
            match apply_pin(&mut self.node, now, pin) {
                PinOutcome::Applied => applied.push(format!("pins: {} pinned", pin.destination)),
                PinOutcome::Pending => {
                    self.pending_pins.push(pin.clone());
                    applied.push(format!(
                        "pins: {} waits until its nodes are known",
                        pin.destination
                    ));
                }
                PinOutcome::Refused(error) => {
                    applied.push(format!("pins: {}: not pinned: {error}", pin.destination));
                }
            }
        }
        if new.log.level != self.config.log.level {
            let level = &new.log.level;
            match &self.log_filter {
                Some(handle) => match handle.reload(tracing_subscriber::EnvFilter::new(level)) {
                    Ok(()) => applied.push(format!("log.level: {level}")),
                    Err(error) => applied.push(format!("log.level: not applied: {error}")),
                },
                None => applied.push(format!(
                    "log.level: {level} not applied: RUST_LOG sets the filter"
                )),
            }
        }
        for change in &applied {
            info!(%change, "config reloaded");
        }
        if applied.is_empty() {
            info!("config reloaded; nothing changed");
        }
        self.config = new;
        Ok(ReloadInfo {
            applied,
            refused: Vec::new(),
        })
    }

    /// A reload's certificate, revocation list and blocklist (checked by
    /// `reload::prepare`).
    fn apply_pki(
        &mut self,
        now: Instant,
        new: &Config,
        prepared: reload::Prepared,
        applied: &mut Vec<String>,
    ) {
        if let Some(certificate) = prepared.certificate {
            let not_after = certificate.not_after();
            match self.node.set_certificate(now, certificate) {
                Ok(left) => {
                    applied.push(format!(
                        "node.certificate: renewed, valid until {}; peers get it by a handshake now",
                        crate::cert::utc(not_after)
                    ));
                    for group in left {
                        applied.push(format!(
                            "multicast: left {group}: the renewed certificate may not join it"
                        ));
                    }
                }
                Err(error) => applied.push(format!("node.certificate: not applied: {error}")),
            }
        }
        if let Some(list) = prepared.revocations {
            let version = list.version();
            let held = self
                .node
                .revocation_list()
                .map_or(0, RevocationList::version);
            let named_anew = self.config.pki.revocations.as_ref().map(|at| &at.path)
                != new.pki.revocations.as_ref().map(|at| &at.path);
            let file_changed = named_anew || self.revocation_file_version != Some(version);
            self.revocation_file_version = Some(version);
            match self.node.set_revocations(now, list) {
                Ok(true) => applied.push(format!(
                    "pki.revocations: version {version} installed and passed on to peers"
                )),
                Ok(false) if file_changed => applied.push(format!(
                    "pki.revocations: version {version} is not newer than the version {held} held; kept {held}"
                )),
                Ok(false) => {}
                Err(error) => applied.push(format!("pki.revocations: not applied: {error}")),
            }
        } else if self.config.pki.revocations.is_some() {
            self.revocation_file_version = None;
            applied.push(
                "pki.revocations: no file named any more; the list held stays (lists only get newer)"
                    .to_owned(),
            );
        }
        if new.pki.blocklist != self.config.pki.blocklist {
            let ended = self.node.set_blocklist(now, new.pki.blocklist.clone());
            applied.push(format!(
                "pki.blocklist: {} entries; {ended} sessions ended",
                new.pki.blocklist.len()
            ));
        }
    }

    /// A reload's multicast policy and firewall.
    fn apply_policies(&mut self, now: Instant, new: &Config, applied: &mut Vec<String>) {
        let (old_policy, new_policy) = (&self.config.multicast.config, &new.multicast.config);
        if old_policy.fanout != new_policy.fanout || old_policy.rules != new_policy.rules {
            let left =
                self.node
                    .set_multicast_policy(now, new_policy.fanout, new_policy.rules.clone());
            if old_policy.rules != new_policy.rules {
                applied.push(format!(
                    "multicast.rules: {} rules; members judged again, trees rebuilt",
                    new_policy.rules.len()
                ));
            }
            if old_policy.fanout != new_policy.fanout {
                applied.push(format!(
                    "multicast.fanout: {}; trees rebuilt",
                    new_policy.fanout
                ));
                self.fanout = new_policy.fanout;
            }
            for group in left {
                applied.push(format!(
                    "multicast: left {group}: the rules no longer let this node join it"
                ));
            }
        }
        let firewall = &new.firewall.config;
        if *firewall != self.config.firewall.config {
            match self.node.set_firewall(firewall) {
                Ok(()) if firewall.enabled => applied.push(format!(
                    "firewall: {} inbound and {} outbound rules; tracked flows are judged again at their next packet",
                    firewall.inbound.len(),
                    firewall.outbound.len()
                )),
                Ok(()) => applied.push("firewall: off; tracked flows forgotten".to_owned()),
                Err(error) => applied.push(format!("firewall: not applied: {error}")),
            }
        }
    }

    /// A DNS query for node `name`: joins a lookup of that name under way
    /// or starts one.
    fn resolve(&mut self, now: Instant, query: DnsRequest) {
        let Err(waiter) = self.lookups.join(&query.name, Waiter::Dns(query.reply)) else {
            return;
        };
        if !self.lookups.has_room() {
            waiter.fail("too many lookups under way");
            return;
        }
        let id = self.node.lookup(now, Target::Name(query.name.clone()));
        self.lookups.insert(now, id, Some(query.name), waiter);
    }

    /// A lookup ended: answer everyone waiting for it.
    fn lookup_done(
        &mut self,
        now: Instant,
        id: LookupId,
        target: &Target,
        result: &Result<NodeRecord, LookupError>,
        trace: &LookupTrace,
    ) {
        match result {
            Ok(record) => {
                debug!(?target, node = record.name(), hops = trace.hops, elapsed = ?trace.elapsed, "lookup found its node")
            }
            Err(error) => debug!(?target, %error, elapsed = ?trace.elapsed, "lookup failed"),
        }
        let waiters = self.lookups.finish(id);
        if waiters.is_empty() {
            return;
        }
        let names = self.node_names(now);
        #[allow(clippy::disallowed_methods)] // the driver is where wall-clock time enters
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for waiter in waiters {
            match waiter {
                Waiter::Control { target, reply } => {
                    let info = LookupInfo::from_core(&target, result, trace, &names, unix_now);
                    let _ = reply.send(Response::Lookup(Box::new(info)));
                }
                Waiter::Dns(reply) => {
                    let answer = match result {
                        Ok(record) => DnsAnswer::Found {
                            ipv4: record.overlay_ipv4(),
                            ipv6: record.overlay_ipv6(),
                        },
                        Err(LookupError::NotFound) => DnsAnswer::NotFound,
                        Err(LookupError::NoContacts | LookupError::TimedOut) => DnsAnswer::Failed,
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Names of the nodes this node knows (peers and DHT contacts), for
    /// showing lookups.
    fn node_names(&self, now: Instant) -> BTreeMap<NodeId, String> {
        let mut names: BTreeMap<NodeId, String> = self
            .node
            .dht_contacts()
            .into_iter()
            .filter_map(|contact| Some((contact.id, contact.name?)))
            .collect();
        for peer in self.node.peers(now) {
            if let (Some(id), Some(name)) = (peer.node_id, peer.name) {
                names.insert(id, name);
            }
        }
        names.insert(self.node.node_id(), self.node.name().to_owned());
        names
    }

    fn status(&self, now: Instant) -> NodeStatus {
        let node = &self.node;
        let peers = node
            .peers(now)
            .into_iter()
            .map(|p| PeerInfo {
                name: p.name,
                node_id: p.node_id.map(|id| id.to_string()),
                overlay_ipv6: p.overlay_ipv6,
                overlay_ipv4: p.overlay_ipv4,
                endpoint: p.endpoint,
                state: match p.state {
                    SessionState::Established => "established",
                    SessionState::Handshaking => "handshaking",
                    SessionState::AwaitingPeer => "awaiting_peer",
                }
                .to_owned(),
                rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1e3),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                packets_in: p.packets_in,
                packets_out: p.packets_out,
                last_handshake_secs: p.last_handshake.map(|d| d.as_secs_f64()),
                handshakes: p.handshakes,
                link: match p.link {
                    LinkHealth::Unknown => "unknown",
                    LinkHealth::Up => "up",
                    LinkHealth::Down => "down",
                }
                .to_owned(),
                loss: loss_rate(p.loss),
                via: p.via,
                configured: p.configured,
                certificate_not_after: p.certificate_not_after,
                path: match p.path {
                    PathKind::None => "none",
                    PathKind::Direct => "direct",
                    PathKind::DirectLan => "direct-lan",
                    PathKind::Punched => "punched",
                    PathKind::Relayed => "relayed",
                }
                .to_owned(),
                candidates_tried: p
                    .candidates_tried
                    .iter()
                    .map(|c| CandidateInfo {
                        endpoint: c.endpoint,
                        kind: CandidateInfo::kind_name(c.kind).to_owned(),
                        pings: c.pings,
                        answered: c.answered,
                    })
                    .collect(),
            })
            .collect();
        let mut stats: std::collections::BTreeMap<String, u64> = node
            .stats()
            .iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        stats.insert("udp_send_errors".into(), self.udp.send_errors);
        stats.insert("tun_write_errors".into(), self.tun.write_errors());
        let dht_stats = node.dht_stats();
        let names = self.node_names(now);
        let dht = DhtInfo {
            contacts: node.dht_contacts().len(),
            stored_records: node.dht_stored_records(),
            neighbours: node
                .picked_neighbours()
                .iter()
                .map(|id| names.get(id).cloned().unwrap_or_else(|| id.short()))
                .collect(),
            lookups: dht_stats.lookups,
            lookups_ok: dht_stats.lookups_ok,
            lookups_failed: dht_stats.lookups_failed,
            queries: dht_stats.queries,
            query_timeouts: dht_stats.query_timeouts,
            rx: dht_stats.rx,
            tx: dht_stats.tx,
            rejected: dht_stats.rejected,
            malformed: dht_stats.malformed,
        };
        let groups = node.groups(now);
        let multicast = MulticastInfo {
            joined: groups
                .iter()
                .filter(|g| g.joined)
                .map(|g| g.group)
                .collect(),
            groups: groups.iter().filter(|g| !g.members.is_empty()).count(),
            fanout: self.fanout,
        };
        NodeStatus {
            name: node.name().to_owned(),
            node_id: node.node_id().to_string(),
            overlay_ipv6: node.overlay_ipv6(),
            overlay_ipv4: node.overlay_ipv4().map(|n| n.to_string()),
            listen: self.listen,
            tun: self.tun.name().to_owned(),
            mtu: self.mtu,
            peers,
            stats,
            dht: Some(dht),
            multicast: Some(multicast),
            firewall: Some(FirewallInfo::from_core(&node.firewall_stats())),
            certificate_not_after: Some(node.certificate().not_after()),
            revocation_version: node.revocation_list().map(|l| l.version()),
            conflicts: node
                .conflicts()
                .iter()
                .map(crate::status::ConflictInfo::from_core)
                .collect(),
            candidates: node
                .candidates()
                .into_iter()
                .map(|(kind, endpoint)| CandidateInfo {
                    endpoint,
                    kind: CandidateInfo::kind_name(kind).to_owned(),
                    pings: 0,
                    answered: false,
                })
                .collect(),
        }
    }
}

/// Who waits for a lookup.
enum Waiter {
    /// `weft lookup`, with the target as it was written.
    Control {
        target: String,
        reply: oneshot::Sender<Response>,
    },
    /// The DNS responder.
    Dns(oneshot::Sender<DnsAnswer>),
}

impl Waiter {
    /// Tells the waiter its lookup will not be answered.
    fn fail(self, reason: &str) {
        match self {
            Waiter::Control { reply, .. } => {
                let _ = reply.send(Response::Refused(reason.to_owned()));
            }
            Waiter::Dns(reply) => {
                let _ = reply.send(DnsAnswer::Failed);
            }
        }
    }
}

/// Lookups under way that someone waits for. A lookup's end is an event,
/// and events are drained only after the command that started it has been
/// registered here, so even a lookup that ends within `Node::lookup` finds
/// its waiters.
struct Lookups {
    pending: BTreeMap<LookupId, PendingLookup>,
    /// The lookup under way for each DNS name, shared by its queries.
    by_name: BTreeMap<String, LookupId>,
    /// From start to giving up.
    patience: Duration,
}

struct PendingLookup {
    /// The DNS name it shares with later queries, if any.
    name: Option<String>,
    deadline: Instant,
    waiters: Vec<Waiter>,
}

impl Lookups {
    fn new(patience: Duration) -> Self {
        Lookups {
            pending: BTreeMap::new(),
            by_name: BTreeMap::new(),
            patience,
        }
    }

    /// Adds `waiter` to the lookup of DNS name `name` under way, if there
    /// is one; hands it back otherwise.
    fn join(&mut self, name: &str, waiter: Waiter) -> Result<(), Waiter> {
        let lookup = self
            .by_name
            .get(name)
            .and_then(|id| self.pending.get_mut(id));
        match lookup {
            Some(lookup) if lookup.waiters.len() < MAX_WAITERS => {
                lookup.waiters.push(waiter);
                Ok(())
            }
            Some(_) => {
                waiter.fail("too many queries for this name under way");
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// Whether another lookup may start.
    fn has_room(&self) -> bool {
        self.pending.len() < MAX_LOOKUPS
    }

    /// Lookup `id` started for `waiter` (and, for a DNS name, for later
    /// queries of the same name).
    fn insert(&mut self, now: Instant, id: LookupId, name: Option<String>, waiter: Waiter) {
        if let Some(name) = &name {
            self.by_name.insert(name.clone(), id);
        }
        self.pending.insert(
            id,
            PendingLookup {
                name,
                deadline: now + self.patience,
                waiters: vec![waiter],
            },
        );
    }

    /// Lookup `id` ended: its waiters, to be answered.
    fn finish(&mut self, id: LookupId) -> Vec<Waiter> {
        let Some(lookup) = self.pending.remove(&id) else {
            return Vec::new();
        };
        if let Some(name) = &lookup.name
            && self.by_name.get(name) == Some(&id)
        {
            self.by_name.remove(name);
        }
        lookup.waiters
    }

    /// Gives up on lookups past their deadline.
    fn expire(&mut self, now: Instant) {
        if self.pending.is_empty() {
            return;
        }
        let expired: Vec<LookupId> = self
            .pending
            .iter()
            .filter(|(_, lookup)| lookup.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            warn!(
                ?id,
                "a lookup's end was never reported; answering its waiters with failure"
            );
            for waiter in self.finish(id) {
                waiter.fail("the lookup did not end in time");
            }
        }
    }
}

/// Lets the kernel accept IPv4 packets from the TUN whose source is one of
/// this host's addresses: the ICMP unreachable errors the node writes for
/// overlay addresses no node holds come from the node's own overlay
/// address (as the kernel's own "host unreachable" does), and without
/// `accept_local` the kernel drops them as martians, so the application
/// waits for its timeout instead of learning at once. Remote packets cannot
/// use this: the node refuses tunnelled packets whose source is not the
/// sending peer's. IPv6 has no such check. Best effort: logged on failure.
fn accept_local_source(tun: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{tun}/accept_local");
    if let Err(error) = std::fs::write(&path, "1") {
        warn!(%path, %error, "cannot set accept_local: ICMP unreachable errors for unknown IPv4 overlay addresses will be dropped by the kernel");
    }
}

/// Starts the DNS responder per `[dns]` (on the TUN's overlay addresses
/// unless the config names others) and, if asked, points the system
/// resolver at it for `.weft` (awaited: it needs the start-up's
/// privileges). Failures are logged, not fatal: the overlay works without
/// names. The receiver gets the queries for the event loop; it is closed
/// when DNS is off.
async fn start_dns(
    config: &DnsSection,
    tun: &str,
    node: &Node,
) -> (Option<DnsServer>, mpsc::Receiver<DnsRequest>) {
    let (sender, receiver) = mpsc::channel(dns::QUEUE);
    if !config.enabled {
        return (None, receiver);
    }
    let listen = config.listen.clone().unwrap_or_else(|| {
        let mut listen: Vec<SocketAddr> = node
            .overlay_ipv4()
            .map(|net| SocketAddr::from((net.addr, DEFAULT_DNS_PORT)))
            .into_iter()
            .collect();
        listen.push(SocketAddr::from((node.overlay_ipv6(), DEFAULT_DNS_PORT)));
        listen
    });
    let (server, failed) = DnsServer::start(&listen, &sender);
    for (address, error) in failed {
        warn!(%address, error = %format!("{error:#}"), "the DNS responder cannot listen here");
    }
    if server.addresses().is_empty() {
        return (None, receiver);
    }
    let addresses = server.addresses().to_vec();
    info!(
        listen = %addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        "DNS responder for .weft names up"
    );
    if config.configure_resolver {
        configure_resolver(tun.to_owned(), addresses).await;
    }
    (Some(server), receiver)
}

/// Split DNS for `.weft` through systemd-resolved, if it is there: queries
/// for `.weft` names go to our responder on the TUN interface, everything
/// else as before. Best effort; never touches `/etc/resolv.conf`.
async fn configure_resolver(tun: String, addresses: Vec<SocketAddr>) {
    let servers: Vec<String> = addresses
        .iter()
        .map(|address| match (address.ip(), address.port()) {
            (ip, DEFAULT_DNS_PORT) => ip.to_string(),
            (IpAddr::V4(ip), port) => format!("{ip}:{port}"),
            (IpAddr::V6(ip), port) => format!("[{ip}]:{port}"),
        })
        .collect();
    if !program_exists("resolvectl") {
        info!(
            servers = %servers.join(" "),
            "no resolvectl here: to resolve .weft names, send queries for the domain weft to these servers (for example dnsmasq's server=/weft/ADDRESS, or a `nameserver` line in a network namespace's resolv.conf)"
        );
        return;
    }
    let mut dns_args = vec!["dns".to_owned(), tun.clone()];
    dns_args.extend(servers.iter().cloned());
    let domain_args = vec!["domain".to_owned(), tun.clone(), "~weft".to_owned()];
    for args in [dns_args, domain_args] {
        let run = tokio::process::Command::new("resolvectl")
            .args(&args)
            .kill_on_drop(true)
            .output();
        let problem = match tokio::time::timeout(RESOLVECTL_TIMEOUT, run).await {
            Ok(Ok(output)) if output.status.success() => None,
            Ok(Ok(output)) => Some(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some(format!("no answer within {RESOLVECTL_TIMEOUT:?}")),
        };
        if let Some(problem) = problem {
            warn!(command = %format!("resolvectl {}", args.join(" ")), %problem, "cannot configure the system resolver for .weft names");
            return;
        }
    }
    info!(interface = %tun, servers = %servers.join(" "), "system resolver sends .weft queries to this node (resolvectl)");
}

/// Whether `program` is an executable file in a `PATH` directory.
fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// What became of a configured pin.
enum PinOutcome {
    Applied,
    /// Its nodes are not known yet: try again later.
    Pending,
    Refused(RouteError),
}

fn apply_pin(node: &mut Node, now: Instant, pin: &PinSection) -> PinOutcome {
    let via: Vec<&str> = pin.via.iter().map(String::as_str).collect();
    match node.pin_route(now, &pin.destination, &via) {
        Ok(()) => {
            info!(destination = %pin.destination, via = %pin.via.join(", "), "configured route pinned");
            PinOutcome::Applied
        }
        Err(RouteError::UnknownNode(_) | RouteError::Unreachable(_)) => {
            debug!(destination = %pin.destination, "configured pin waits until its nodes are known");
            PinOutcome::Pending
        }
        Err(error) => PinOutcome::Refused(error),
    }
}

/// Rate limit for handshake-rejection warnings.
#[derive(Default)]
struct RejectionLog {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

enum Admit {
    Log { suppressed: u64 },
    Suppress,
}

impl RejectionLog {
    fn admit(&mut self, now: Instant) -> Admit {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= REJECTION_WINDOW);
        if expired {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < REJECTIONS_PER_WINDOW {
            self.logged += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            return Admit::Log { suppressed };
        }
        self.suppressed += 1;
        Admit::Suppress
    }
}

/// "direct", "via c", "via c, d", or "unreachable" for a path of names
/// ending with the destination.
fn describe_path(path: &[String]) -> String {
    match path {
        [] => "unreachable".to_owned(),
        [_] => "direct".to_owned(),
        [via @ .., _] => format!("via {}", via.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_queries_for_one_name_share_a_lookup_and_all_get_its_answer() {
        #[allow(clippy::disallowed_methods)] // any instant will do
        let start = Instant::now();
        let mut lookups = Lookups::new(Duration::from_secs(15));
        let (first, mut first_answer) = oneshot::channel();
        // No lookup of the name under way: the query is handed back.
        let Err(first) = lookups.join("db1", Waiter::Dns(first)) else {
            panic!("joined a lookup that does not exist");
        };
        lookups.insert(start, LookupId(7), Some("db1".into()), first);
        let (second, mut second_answer) = oneshot::channel();
        assert!(lookups.join("db1", Waiter::Dns(second)).is_ok());
        let waiters = lookups.finish(LookupId(7));
        assert_eq!(waiters.len(), 2);
        for waiter in waiters {
            waiter.fail("test");
        }
        assert_eq!(first_answer.try_recv(), Ok(DnsAnswer::Failed));
        assert_eq!(second_answer.try_recv(), Ok(DnsAnswer::Failed));
        // The name's lookup is over: the next query starts a new one.
        assert!(
            lookups
                .join("db1", Waiter::Dns(oneshot::channel().0))
                .is_err()
        );
    }

    #[test]
    fn lookups_past_their_deadline_are_answered_with_failure() {
        #[allow(clippy::disallowed_methods)] // any instant will do
        let start = Instant::now();
        let mut lookups = Lookups::new(Duration::from_secs(15));
        let (reply, mut answer) = oneshot::channel();
        lookups.insert(
            start,
            LookupId(1),
            None,
            Waiter::Control {
                target: "db1".into(),
                reply,
            },
        );
        lookups.expire(start + Duration::from_secs(14));
        assert!(answer.try_recv().is_err());
        lookups.expire(start + Duration::from_secs(15));
        assert!(matches!(answer.try_recv(), Ok(Response::Refused(_))));
        assert!(lookups.finish(LookupId(1)).is_empty());
        assert!(lookups.has_room());
    }

    #[test]
    fn rejection_log_limits_per_window_and_reports_the_rest() {
        #[allow(clippy::disallowed_methods)] // any instant will do
        let start = Instant::now();
        let mut log = RejectionLog::default();
        for _ in 0..REJECTIONS_PER_WINDOW {
            assert!(matches!(log.admit(start), Admit::Log { suppressed: 0 }));
        }
        assert!(matches!(log.admit(start), Admit::Suppress));
        assert!(matches!(
            log.admit(start + Duration::from_secs(1)),
            Admit::Suppress
        ));
        assert!(matches!(
            log.admit(start + REJECTION_WINDOW),
            Admit::Log { suppressed: 2 }
        ));
    }
}
