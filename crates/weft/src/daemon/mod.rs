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
//! Files: `udp.rs` (batched socket I/O), `tun.rs` (the interface, platform
//! choice), `control.rs` (the unix control socket).

mod control;
mod tun;
mod udp;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, info, trace, warn};
use weft_core::{Event, LinkHealth, Node, NodeConfig, NodeId, RouteError, SessionState};

use crate::config::{Config, PinSection};
use crate::pki;
use crate::routes::{RouteInfo, loss_rate};
use crate::status::{NodeStatus, PeerInfo};
use control::{Command, ControlSocket, Request, Response};
use tun::Tun;
use udp::Udp;

/// Most packets read from one source per wake-up.
const BUDGET: usize = 64;
/// At most this many handshake rejections are logged per window; the rest
/// are counted and summarised, so a flood of bad handshakes cannot flood
/// the log.
const REJECTIONS_PER_WINDOW: u32 = 5;
const REJECTION_WINDOW: Duration = Duration::from_secs(10);

/// Runs a node until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    init_logging(&config.log.level);
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
    runtime.block_on(serve(&config, node_config, seed, unix_now))
}

/// Secret keys readable by other users are a mistake worth a warning (as
/// ssh does), though not worth refusing to start.
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

fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var_os("RUST_LOG").map(|_| EnvFilter::try_from_default_env());
    let (filter, env_error) = match from_env {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (EnvFilter::new(level), Some(e)),
        None => (EnvFilter::new(level), None),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if let Some(e) = env_error {
        warn!(error = %e, "RUST_LOG is not a valid filter; using the config's log.level");
    }
}

async fn serve(
    config: &Config,
    node_config: NodeConfig,
    seed: [u8; 32],
    unix_now: u64,
) -> anyhow::Result<ExitCode> {
    #[allow(clippy::disallowed_methods)] // the driver is where time enters
    let now = Instant::now();
    // Sub-second precision: handshake timestamps are built on it, and a
    // daemon restarted within the same second must still look newer.
    #[allow(clippy::disallowed_methods)] // the driver is where wall-clock time enters
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::from_secs(unix_now));
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
    let tun = Tun::create(&config.tun, node.overlay_ipv6(), node.overlay_ipv4())?;
    let (control, requests) = ControlSocket::start(&config.control.socket)?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
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
    };
    let result = event_loop.run(shutdown).await;
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
}

impl EventLoop {
    async fn run(&mut self, shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
        let mut shutdown = pin!(shutdown);
        let mut timer = pin!(tokio::time::sleep(Duration::from_secs(3600)));
        loop {
            let deadline = self.node.poll_timeout();
            if let Some((at, _)) = deadline {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            let mut request = None;
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
                () = &mut timer, if deadline.is_some() => {}
            }
            #[allow(clippy::disallowed_methods)] // the driver is where time enters
            let now = Instant::now();
            self.turn(now, deadline, request).await?;
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
        if answered {
            self.drain(now).await?;
        }
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
            if !self.apply_pending_pins(now) {
                return Ok(());
            }
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
            // Answered to whoever asked (DNS, `weft lookup`): see dns.rs.
            Event::LookupDone { .. } => {}
        }
    }

    fn answer(&mut self, now: Instant, request: Request) {
        let response = match request.command {
            Command::Status => Response::Status(Box::new(self.status(now))),
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
        };
        // The client may have gone; nothing to do then.
        let _ = request.reply.send(response);
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
            })
            .collect();
        let mut stats: std::collections::BTreeMap<String, u64> = node
            .stats()
            .iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        stats.insert("udp_send_errors".into(), self.udp.send_errors);
        stats.insert("tun_write_errors".into(), self.tun.write_errors());
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
        }
    }
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
