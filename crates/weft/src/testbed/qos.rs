//! QoS on real hosts: a bottleneck made with `tc tbf`, bulk load with
//! `iperf3`, a realtime UDP echo stream, and the experiment that puts them
//! together (used by `tests/netns_qos.rs`, `weft demo --scenario qos` and
//! `bench/qos.sh`, so all three measure the same way).
//!
//! The experiment ([`run_qos_experiment`]) works on two hosts of a test
//! bed, a sender and a receiver. The sender's underlay egress is shaped by
//! `tc qdisc ... tbf rate 20mbit` with a deep queue (100 ms, as a modem
//! has). A realtime stream (one small UDP datagram every 20 ms, DSCP EF
//! set with `IP_TOS`, echoed by the receiver) measures round-trip times
//! and loss, first on an idle link, then while an `iperf3` TCP transfer
//! saturates it. This runs twice: with QoS off (no `[qos]` section: weft
//! sends at once, so the queue forms in the tbf, where nothing tells
//! realtime from bulk) and with QoS on (`[qos] uplink` a little below the
//! tbf rate, so the queue forms inside weft, where realtime goes first and
//! CoDel keeps the bulk queue short). With QoS on, a class capped at
//! 5 Mbit/s then carries an `iperf3 -u` flow offered at twice that, and
//! its rate is measured at the receiver; then the same for all traffic to
//! a third host that the sender limits to 4 Mbit/s (`[[qos.peers]]`).
//!
//! Units: weft's rates are underlay rates (the sealed datagram plus the
//! IPv4 and UDP headers, as `tc` counts them without the link-layer
//! header); iperf3 reports payload rates. [`underlay_bps`] converts.
//!
//! Bounded: every stream has a count and a time limit, every child process
//! a deadline (killed by its PID on drop), every wait a deadline.

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::command::{describe, kill_and_reap, now, run, run_with_timeout, wait_deadline};
use super::{Host, Testbed};
use crate::qos::{QosInfo, request_qos};

/// Bytes the tunnel adds to an inner IP packet on an IPv4 underlay: weft's
/// overhead, then the outer IPv4 and UDP headers.
pub const TUNNEL_UNDERLAY_OVERHEAD: usize = weft_core::TUNNEL_OVERHEAD + 20 + 8;
/// DSCP EF in the IPv4 TOS byte.
pub const TOS_EF: u8 = 46 << 2;
/// Marker line before the lines an experiment appends to a config.
const CONFIG_MARK: &str = "# --- appended by the QoS experiment ---";

/// Whether `iperf3` is installed.
pub fn have_iperf3() -> bool {
    std::process::Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The underlay rate of a flow of `payload`-byte UDP datagrams (over
/// IPv4) whose payload arrives at `payload_bps`.
pub fn underlay_bps(payload_bps: f64, payload: usize) -> f64 {
    let packet = payload + 8 + 20 + TUNNEL_UNDERLAY_OVERHEAD;
    payload_bps * packet as f64 / payload as f64
}

impl Testbed {
    /// Shapes host `i`'s underlay egress (`u0`) with a token bucket filter:
    /// `rate` and `burst` in tc's syntax (`"20mbit"`, `"16kb"`), and a
    /// queue of at most `latency` at that rate.
    pub fn shape_egress(
        &self,
        i: usize,
        rate: &str,
        burst: &str,
        latency: Duration,
    ) -> anyhow::Result<()> {
        let latency = format!("{}ms", latency.as_millis());
        run(self.host(i).command("tc").args([
            "qdisc", "replace", "dev", "u0", "root", "tbf", "rate", rate, "burst", burst,
            "latency", &latency,
        ]))
        .map(drop)
    }

    /// Removes the shaping of [`Testbed::shape_egress`].
    pub fn unshape_egress(&self, i: usize) -> anyhow::Result<()> {
        run(self
            .host(i)
            .command("tc")
            .args(["qdisc", "del", "dev", "u0", "root"]))
        .map(drop)
    }

    /// Replaces what an earlier call appended to host `i`'s config with
    /// `extra` (TOML), restarts its daemon and returns once it runs again.
    /// Sessions come back on their own; wait for them with
    /// [`Testbed::wait_established`].
    pub fn reconfigure(&self, i: usize, extra: &str) -> anyhow::Result<()> {
        let path = self.host(i).config_path();
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let base = text.split(CONFIG_MARK).next().unwrap_or(&text).trim_end();
        let new = if extra.trim().is_empty() {
            format!("{base}\n")
        } else {
            format!("{base}\n\n{CONFIG_MARK}\n{}\n", extra.trim_end())
        };
        fs::write(path, new).with_context(|| format!("writing {}", path.display()))?;
        self.restart(i)
    }
}

/// Puts every thread of `host`'s daemon in the round-robin realtime
/// scheduling class at `priority` (`chrt -a -r`). See [`boost_thread`].
pub fn boost_daemon(host: &Host, priority: u8) -> anyhow::Result<()> {
    let pid = host
        .daemon_pid()
        .with_context(|| format!("{}: daemon is not running", host.name()))?;
    run(std::process::Command::new("chrt")
        .args(["-a", "-r", "-p", &priority.to_string(), &pid.to_string()])
        .stdout(Stdio::null()))
    .map(drop)
}

/// Puts the calling thread in the round-robin realtime scheduling class at
/// `priority` (`chrt -r`).
///
/// The experiment measures weft's queues, not the machine's other work. On
/// a shared machine (two cores, compilers running beside the test), a
/// daemon or the stream's thread that waits for a CPU adds milliseconds no
/// scheduler inside weft can remove: with the daemons at normal priority
/// and a load of 5, about one idle round trip in ten took 4 ms instead of
/// 1 (a 250 Hz tick), so the idle p99 itself was 5-10 ms. So the daemons,
/// the echo server and the stream's sender run as realtime tasks (as a VPN
/// daemon carrying voice might), in both phases alike; iperf3 does not.
/// The kernel's realtime throttling (95 % of each second) bounds them.
pub fn boost_thread(priority: u8) -> anyhow::Result<()> {
    let tid = nix::unistd::gettid();
    run(std::process::Command::new("chrt")
        .args(["-r", "-p", &priority.to_string(), &tid.to_string()])
        .stdout(Stdio::null()))
    .map(drop)
}

/// An `iperf3 -s` in a host's namespace, killed (by PID) when dropped.
#[derive(Debug)]
pub struct Iperf3Server {
    child: Child,
    address: SocketAddr,
}

impl Iperf3Server {
    /// Starts a server on `address` inside `host` and waits (at most 5 s)
    /// until it accepts connections.
    pub fn start(host: &Host, address: SocketAddr) -> anyhow::Result<Self> {
        let mut command = host.command("iperf3");
        command
            .args(["-s", "-B", &address.ip().to_string(), "-p"])
            .arg(address.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .with_context(|| format!("could not start {}", describe(&command)))?;
        let mut server = Iperf3Server { child, address };
        let deadline = now() + Duration::from_secs(5);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("iperf3 server on {address} exited at once ({status})");
            }
            let listening = host.enter(move || {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
            })?;
            if listening {
                return Ok(server);
            }
            if now() >= deadline {
                kill_and_reap(&mut server.child);
                bail!("iperf3 server on {address} did not start listening within 5 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// What an `iperf3` client run should do.
#[derive(Debug, Clone, Copy)]
pub struct Iperf3Options {
    /// How long it sends.
    pub duration: Duration,
    /// UDP at this offered rate (bits per second of payload); `None`: TCP.
    pub udp_bps: Option<u64>,
    /// UDP payload bytes per datagram.
    pub length: usize,
}

/// The receiver's side of an `iperf3` run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iperf3Result {
    /// Payload bits per second received.
    pub received_bps: f64,
    /// Payload bytes received.
    pub received_bytes: u64,
    /// Seconds the receiver measured over.
    pub seconds: f64,
    /// TCP: retransmitted segments; UDP: datagrams lost.
    pub lost: u64,
}

/// A running `iperf3` client.
#[derive(Debug)]
pub struct Iperf3Client {
    child: Option<Child>,
    deadline: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
}

impl Iperf3Client {
    /// Starts `iperf3 -c` in `host` against `server`.
    pub fn start(host: &Host, server: SocketAddr, options: &Iperf3Options) -> anyhow::Result<Self> {
        let mut command = host.command("iperf3");
        command
            .args(["-c", &server.ip().to_string(), "-p"])
            .arg(server.port().to_string())
            .args(["--json", "--connect-timeout", "3000", "-t"])
            .arg(options.duration.as_secs().max(1).to_string());
        if let Some(bps) = options.udp_bps {
            command
                .args(["-u", "-b"])
                .arg(bps.to_string())
                .arg("-l")
                .arg(options.length.to_string());
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("could not start {}", describe(&command)))?;
        let stdout = child.stdout.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = std::io::Read::read_to_end(&mut pipe, &mut bytes);
                bytes
            })
        });
        Ok(Iperf3Client {
            child: Some(child),
            deadline: now() + options.duration + Duration::from_secs(15),
            stdout,
        })
    }

    /// Waits for the run to end (by its deadline) and reads its result.
    pub fn finish(mut self) -> anyhow::Result<Iperf3Result> {
        let Some(mut child) = self.child.take() else {
            bail!("iperf3 client already finished");
        };
        let status = wait_deadline(&mut child, self.deadline)?;
        if status.is_none() {
            kill_and_reap(&mut child);
        }
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let Some(status) = status else {
            bail!("iperf3 client did not finish in time");
        };
        let json: serde_json::Value = serde_json::from_slice(&stdout)
            .with_context(|| format!("iperf3 output is not JSON ({status})"))?;
        if let Some(error) = json.get("error").and_then(|e| e.as_str()) {
            bail!("iperf3: {error}");
        }
        let end = &json["end"];
        let received = &end["sum_received"];
        let number = |v: &serde_json::Value| v.as_f64().context("iperf3 output lacks a number");
        let lost = end["sum_sent"]["retransmits"]
            .as_u64()
            .or_else(|| received["lost_packets"].as_u64())
            .or_else(|| end["sum"]["lost_packets"].as_u64())
            .unwrap_or(0);
        Ok(Iperf3Result {
            received_bps: number(&received["bits_per_second"])?,
            received_bytes: received["bytes"].as_u64().unwrap_or(0),
            seconds: number(&received["seconds"])?,
            lost,
        })
    }
}

impl Drop for Iperf3Client {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_reap(child);
        }
    }
}

/// A UDP echo server on a thread inside a host's namespace: sends every
/// datagram back to where it came from, with the same TOS byte.
#[derive(Debug)]
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<u64>>>>,
}

impl EchoServer {
    /// Binds `address` inside `host` and starts echoing.
    pub fn start(
        host: &Host,
        address: SocketAddr,
        tos: u8,
        priority: Option<u8>,
    ) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = host.spawn(move || -> anyhow::Result<u64> {
            if let Some(priority) = priority {
                // Best effort, as for the daemons (see `run_qos_experiment`).
                let _ = boost_thread(priority);
            }
            let socket = match UdpSocket::bind(address) {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("binding {address}: {e}")));
                    return Err(e.into());
                }
            };
            socket2::SockRef::from(&socket).set_tos_v4(u32::from(tos))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = ready_tx.send(Ok(()));
            let mut buf = [0u8; 2048];
            let mut echoed = 0;
            while !flag.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        let _ = socket.send_to(&buf[..len], from);
                        echoed += 1;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(echoed)
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(EchoServer {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(message)) => bail!("echo server: {message}"),
            Err(_) => bail!("echo server on {address} did not start"),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Round-trip times and loss of a realtime stream.
#[derive(Debug, Clone, PartialEq)]
pub struct RealtimeRecord {
    /// Datagrams sent.
    pub sent: usize,
    /// Round-trip times of those answered, in order of sending.
    pub rtts: Vec<Duration>,
}

impl RealtimeRecord {
    /// Datagrams without an answer.
    pub fn lost(&self) -> usize {
        self.sent - self.rtts.len()
    }

    /// The `q`-quantile (0..=1) of the RTTs, nearest rank; `None` if no
    /// answer came.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.rtts.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        Some(sorted[rank - 1])
    }
}

/// What [`realtime_stream`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealtimeOptions {
    /// The IPv4 TOS byte of every datagram (e.g. [`TOS_EF`]).
    pub tos: u8,
    /// UDP payload bytes (16 to 1200).
    pub size: usize,
    /// One datagram per interval ...
    pub interval: Duration,
    /// ... this many.
    pub count: usize,
    /// An echo later than this counts as lost.
    pub timeout: Duration,
    /// Realtime priority of the sending thread (see [`boost_thread`]).
    pub priority: Option<u8>,
}

/// Sends `options.count` datagrams from `host` to `target`, one every
/// `options.interval`, and waits for each echo at most `options.timeout`
/// after the last was sent. Blocks for about `count × interval + timeout`.
pub fn realtime_stream(
    host: &Host,
    target: SocketAddr,
    options: &RealtimeOptions,
) -> anyhow::Result<RealtimeRecord> {
    let RealtimeOptions {
        tos,
        size,
        interval,
        count,
        timeout,
        priority,
    } = *options;
    let size = size.clamp(16, 1200);
    host.enter(move || -> anyhow::Result<RealtimeRecord> {
        if let Some(priority) = priority {
            // Best effort, as for the daemons (see `run_qos_experiment`).
            let _ = boost_thread(priority);
        }
        let bind: SocketAddr = match target {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        }
        .parse()?;
        let socket = UdpSocket::bind(bind)?;
        socket2::SockRef::from(&socket).set_tos_v4(u32::from(tos))?;
        socket.connect(target)?;
        let start = now();
        let mut sent_at: Vec<Instant> = Vec::with_capacity(count);
        let mut rtts: Vec<Option<Duration>> = Vec::with_capacity(count);
        let mut buf = vec![0u8; 2048];
        let mut packet = vec![0u8; size];
        let end = start + interval * u32::try_from(count).unwrap_or(u32::MAX) + timeout;
        loop {
            let time = now();
            if sent_at.len() < count {
                let due = start + interval * u32::try_from(sent_at.len()).unwrap_or(u32::MAX);
                if time >= due {
                    let seq = sent_at.len() as u64;
                    packet[..8].copy_from_slice(&seq.to_be_bytes());
                    sent_at.push(time);
                    rtts.push(None);
                    // A refused send (no route yet) counts as a loss.
                    let _ = socket.send(&packet);
                    continue;
                }
            } else if rtts.iter().all(Option::is_some) {
                break;
            }
            if time >= end {
                break;
            }
            let wake = if sent_at.len() < count {
                start + interval * u32::try_from(sent_at.len()).unwrap_or(u32::MAX)
            } else {
                end
            };
            let wait = wake
                .saturating_duration_since(time)
                .max(Duration::from_micros(100));
            socket.set_read_timeout(Some(wait))?;
            match socket.recv(&mut buf) {
                Ok(len) if len >= 8 => {
                    let arrived = now();
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&buf[..8]);
                    let seq = usize::try_from(u64::from_be_bytes(seq)).unwrap_or(usize::MAX);
                    if let (Some(sent), Some(slot)) = (sent_at.get(seq), rtts.get_mut(seq))
                        && slot.is_none()
                        && arrived.duration_since(*sent) <= timeout
                    {
                        *slot = Some(arrived.duration_since(*sent));
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(RealtimeRecord {
            sent: sent_at.len(),
            rtts: rtts.into_iter().flatten().collect(),
        })
    })?
}

/// How to run [`run_qos_experiment`].
#[derive(Debug, Clone)]
pub struct QosPlan {
    /// The host that sends (its egress is the bottleneck).
    pub sender: usize,
    /// The host that receives.
    pub receiver: usize,
    /// The bottleneck's rate in tc's syntax.
    pub link_rate: &'static str,
    /// The bottleneck's rate in bits per second (the same).
    pub link_bps: u64,
    /// Depth of the bottleneck's queue, as time at its rate.
    pub link_queue: Duration,
    /// weft's `[qos] uplink` with QoS on.
    pub uplink: &'static str,
    /// The capped class's rate.
    pub capped_rate: &'static str,
    /// The capped class's rate in bits per second (the same).
    pub capped_bps: u64,
    /// Realtime datagrams: one per interval ...
    pub interval: Duration,
    /// ... of this many bytes of payload ...
    pub size: usize,
    /// ... for this long while idle ...
    pub idle_for: Duration,
    /// ... and this long under load.
    pub loaded_for: Duration,
    /// The bulk transfer runs this long before the realtime stream starts.
    pub warmup: Duration,
    /// How long the capped class is measured.
    pub capped_for: Duration,
    /// Run the capped-class phase.
    pub measure_cap: bool,
    /// A third host the sender limits by peer (`[[qos.peers]]`), measured
    /// like the capped class; `None`: no peer phase.
    pub limited_peer: Option<usize>,
    /// Its rate limit.
    pub peer_rate: &'static str,
    /// Its rate limit in bits per second (the same).
    pub peer_bps: u64,
    /// Realtime scheduling priority for both daemons and the stream's
    /// threads (`None`: leave them as they are). See [`boost_thread`].
    pub priority: Option<u8>,
}

impl Default for QosPlan {
    /// The issue's test: 20 Mbit/s tbf (100 ms queue), weft at 19 Mbit/s,
    /// a 20 ms realtime stream for 5 s idle and 10 s loaded, a class
    /// capped at 5 Mbit/s and traffic to host 2 limited to 4 Mbit/s, each
    /// measured for 10 s.
    fn default() -> Self {
        QosPlan {
            sender: 0,
            receiver: 1,
            link_rate: "20mbit",
            link_bps: 20_000_000,
            link_queue: Duration::from_millis(100),
            uplink: "19mbit",
            capped_rate: "5mbit",
            capped_bps: 5_000_000,
            interval: Duration::from_millis(20),
            size: 160,
            idle_for: Duration::from_secs(5),
            loaded_for: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            capped_for: Duration::from_secs(10),
            measure_cap: true,
            limited_peer: Some(2),
            peer_rate: "4mbit",
            peer_bps: 4_000_000,
            priority: Some(10),
        }
    }
}

/// UDP port of the realtime echo.
pub const ECHO_PORT: u16 = 5004;
/// Port of the bulk `iperf3` (a rule puts it in the `bulk` class).
pub const BULK_PORT: u16 = 5201;
/// Port of the capped `iperf3` (a rule puts it in the `capped` class).
pub const CAPPED_PORT: u16 = 5202;
/// Port of the `iperf3` to the rate-limited peer (no rule: `interactive`).
pub const PEER_PORT: u16 = 5203;
/// UDP payload of the capped flow.
pub const CAPPED_LENGTH: usize = 1200;
/// Echoes later than this count as lost.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(1);

impl QosPlan {
    /// The `[qos]` section every host runs with QoS on: the uplink, the
    /// four default classes plus `capped`, port rules for the bulk and
    /// capped flows (realtime is found by its DSCP, EF, through the default
    /// rules), and the limited peer's rate.
    pub fn qos_config(&self) -> String {
        let peer = self
            .limited_peer
            .map(|i| {
                format!(
                    "\n[[qos.peers]]\nname = \"h{i}\"\nrate = \"{}\"\n",
                    self.peer_rate
                )
            })
            .unwrap_or_default();
        format!(
            "[qos]\nuplink = \"{uplink}\"\n\n\
             [[qos.classes]]\nname = \"realtime\"\n\
             [[qos.classes]]\nname = \"interactive\"\n\
             [[qos.classes]]\nname = \"bulk\"\n\
             [[qos.classes]]\nname = \"background\"\n\
             [[qos.classes]]\nname = \"capped\"\nrate = \"{capped}\"\n\n\
             [[qos.rules]]\nclass = \"bulk\"\nprotocol = [\"tcp\"]\ndst_port = [{BULK_PORT}]\n\
             [[qos.rules]]\nclass = \"bulk\"\nprotocol = [\"tcp\"]\nsrc_port = [{BULK_PORT}]\n\
             [[qos.rules]]\nclass = \"capped\"\ndst_port = [{CAPPED_PORT}]\n{peer}",
            uplink = self.uplink,
            capped = self.capped_rate,
        )
    }
}

/// One phase (QoS off or on) of the experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct QosPhase {
    /// Whether weft shaped and scheduled.
    pub qos_on: bool,
    /// The realtime stream on the idle link.
    pub idle: RealtimeRecord,
    /// The realtime stream under bulk load.
    pub loaded: RealtimeRecord,
    /// The bulk transfer, as its receiver saw it.
    pub bulk: Iperf3Result,
    /// The sender's `qos` object after the loaded run.
    pub qos: Option<QosInfo>,
    /// `tc -s qdisc` of the bottleneck after the loaded run.
    pub bottleneck: String,
}

/// A rate limit (a class cap or a peer's rate) under twice its rate.
#[derive(Debug, Clone, PartialEq)]
pub struct CapResult {
    /// What was limited: `class capped`, `peer h2`.
    pub what: String,
    /// The cap, bits per second (underlay).
    pub cap_bps: u64,
    /// What iperf3 offered (payload).
    pub offered_bps: u64,
    /// What arrived, as iperf3 counted it (payload).
    pub received: Iperf3Result,
    /// The same in underlay bits per second.
    pub received_underlay_bps: f64,
    /// The class's (or peer's) sent bytes in the steady state, per weft's
    /// counters, as bits per second (underlay).
    pub weft_class_bps: Option<f64>,
}

impl CapResult {
    /// How far the underlay rate that arrived is from the cap, as a
    /// fraction (+0.02: 2 % above).
    pub fn error(&self) -> f64 {
        self.received_underlay_bps / self.cap_bps as f64 - 1.0
    }
}

/// Everything the experiment measured.
#[derive(Debug, Clone, PartialEq)]
pub struct QosReport {
    /// The plan it ran.
    pub link_bps: u64,
    /// weft's uplink with QoS on, bits per second.
    pub uplink_bps: u64,
    /// Realtime interval.
    pub interval: Duration,
    /// QoS off, then on.
    pub phases: Vec<QosPhase>,
    /// The capped class, if measured.
    pub cap: Option<CapResult>,
    /// The rate-limited peer, if measured.
    pub peer: Option<CapResult>,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

impl QosReport {
    /// The before/after table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "realtime: one EF-marked UDP datagram every {} ms, echoed; bulk: iperf3 TCP; bottleneck: tc tbf {:.0} Mbit/s",
            self.interval.as_millis(),
            self.link_bps as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{:<8} {:<7} {:>6} {:>9} {:>9} {:>9} {:>6} {:>12}",
            "QoS", "load", "sent", "p50 ms", "p99 ms", "max ms", "lost", "bulk Mbit/s"
        );
        for phase in &self.phases {
            let name = if phase.qos_on {
                format!("on {:.0}M", self.uplink_bps as f64 / 1e6)
            } else {
                "off".to_owned()
            };
            for (load, record, bulk) in [
                ("idle", &phase.idle, None),
                ("bulk", &phase.loaded, Some(phase.bulk.received_bps)),
            ] {
                let _ = writeln!(
                    out,
                    "{:<8} {:<7} {:>6} {:>9} {:>9} {:>9} {:>6} {:>12}",
                    name,
                    load,
                    record.sent,
                    ms(record.quantile(0.5)),
                    ms(record.quantile(0.99)),
                    ms(record.quantile(1.0)),
                    record.lost(),
                    bulk.map_or_else(|| "-".to_owned(), |b| format!("{:.2}", b / 1e6)),
                );
            }
        }
        for phase in &self.phases {
            let (Some(idle), Some(loaded)) =
                (phase.idle.quantile(0.99), phase.loaded.quantile(0.99))
            else {
                continue;
            };
            let _ = writeln!(
                out,
                "QoS {}: realtime p99 under load is idle p99 {:+.2} ms",
                if phase.qos_on { "on " } else { "off" },
                (loaded.as_secs_f64() - idle.as_secs_f64()) * 1e3
            );
        }
        for cap in self.cap.iter().chain(&self.peer) {
            let _ = writeln!(
                out,
                "{}: limit {:.2} Mbit/s, offered {:.2} Mbit/s UDP payload; received {:.3} Mbit/s payload = {:.3} Mbit/s underlay ({:+.2} % of the limit){}",
                cap.what,
                cap.cap_bps as f64 / 1e6,
                cap.offered_bps as f64 / 1e6,
                cap.received.received_bps / 1e6,
                cap.received_underlay_bps / 1e6,
                cap.error() * 100.0,
                cap.weft_class_bps
                    .map(|b| format!("; weft's counter {:.3} Mbit/s", b / 1e6))
                    .unwrap_or_default()
            );
        }
        out
    }
}

/// Runs the experiment of the module doc on `testbed` (whose sessions are
/// up). Leaves the hosts with QoS on and the bottleneck removed. `progress`
/// gets a line before each step.
pub fn run_qos_experiment(
    testbed: &Testbed,
    plan: &QosPlan,
    establish: Duration,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<QosReport> {
    let sender = testbed.host(plan.sender);
    let receiver = testbed.host(plan.receiver);
    let target = IpAddr::V4(receiver.overlay_ipv4()?);
    let echo_addr = SocketAddr::new(target, ECHO_PORT);
    let burst = "16kb";
    let uplink_bps = weft_core::qos::parse_bps(plan.uplink).context("plan.uplink")?;
    let mut phases = Vec::new();
    let mut cap = None;
    let mut peer = None;
    let count =
        |d: Duration| usize::try_from(d.as_nanos() / plan.interval.as_nanos().max(1)).unwrap_or(1);
    let stream = |count: usize| RealtimeOptions {
        tos: TOS_EF,
        size: plan.size,
        interval: plan.interval,
        count,
        timeout: ECHO_TIMEOUT,
        priority: plan.priority,
    };
    let result = (|| -> anyhow::Result<()> {
        for qos_on in [false, true] {
            let extra = if qos_on {
                plan.qos_config()
            } else {
                String::new()
            };
            progress(&format!(
                "{} QoS on {} and {} and restarting them ...",
                if qos_on { "turning" } else { "leaving" },
                sender.name(),
                receiver.name()
            ));
            if qos_on {
                testbed.reconfigure(plan.sender, &extra)?;
                testbed.reconfigure(plan.receiver, &extra)?;
                testbed.wait_established(establish)?;
            }
            testbed.shape_egress(plan.sender, plan.link_rate, burst, plan.link_queue)?;
            if let Some(priority) = plan.priority {
                // Best effort: a container without realtime scheduling
                // (no CAP_SYS_NICE, or no realtime budget in its cgroup)
                // measures at normal priority, with more noise.
                for host in [sender, receiver] {
                    if let Err(error) = boost_daemon(host, priority) {
                        progress(&format!(
                            "note: {} keeps its normal priority ({error:#})",
                            host.name()
                        ));
                    }
                }
            }
            let _echo = EchoServer::start(receiver, echo_addr, TOS_EF, plan.priority)?;
            // Two seconds of the stream, not counted: sessions, routes and
            // the link monitor's probing are warm, and a daemon that just
            // restarted has its start-up exchanges (DHT, link state) behind
            // it, as the other phase's daemons do.
            realtime_stream(sender, echo_addr, &stream(count(Duration::from_secs(2))))?;
            progress(&format!(
                "realtime stream on the idle link for {} s ...",
                plan.idle_for.as_secs()
            ));
            let idle = realtime_stream(sender, echo_addr, &stream(count(plan.idle_for)))?;
            progress(&format!(
                "bulk TCP transfer (iperf3) for {} s, realtime stream after {} s ...",
                (plan.warmup + plan.loaded_for + Duration::from_secs(1)).as_secs(),
                plan.warmup.as_secs()
            ));
            let server = Iperf3Server::start(receiver, SocketAddr::new(target, BULK_PORT))?;
            let client = Iperf3Client::start(
                sender,
                server.address(),
                &Iperf3Options {
                    duration: plan.warmup + plan.loaded_for + Duration::from_secs(1),
                    udp_bps: None,
                    length: 0,
                },
            )?;
            std::thread::sleep(plan.warmup);
            let loaded = realtime_stream(sender, echo_addr, &stream(count(plan.loaded_for)))?;
            let qos = request_qos(sender.socket_path()).ok();
            let bottleneck = qdisc_stats(sender);
            let bulk = client.finish()?;
            drop(server);
            phases.push(QosPhase {
                qos_on,
                idle,
                loaded,
                bulk,
                qos,
                bottleneck,
            });
        }
        if plan.measure_cap {
            progress(&format!(
                "capped class: iperf3 UDP at twice {} for {} s ...",
                plan.capped_rate,
                plan.capped_for.as_secs()
            ));
            cap = Some(measure_limit(
                sender,
                receiver,
                SocketAddr::new(target, CAPPED_PORT),
                plan.capped_bps,
                plan.capped_for,
                "class capped",
                |info| info.class("capped").map(|c| c.sent_bytes),
            )?);
        }
        if let Some(limited) = plan.limited_peer {
            let host = testbed.host(limited);
            progress(&format!(
                "peer {}: iperf3 UDP at twice {} for {} s ...",
                host.name(),
                plan.peer_rate,
                plan.capped_for.as_secs()
            ));
            let name = host.name().to_owned();
            peer = Some(measure_limit(
                sender,
                host,
                SocketAddr::new(IpAddr::V4(host.overlay_ipv4()?), PEER_PORT),
                plan.peer_bps,
                plan.capped_for,
                &format!("peer {name}"),
                |info| {
                    info.peers
                        .iter()
                        .find(|p| p.name == name)
                        .map(|p| p.sent_bytes)
                },
            )?);
        }
        Ok(())
    })();
    let unshaped = testbed.unshape_egress(plan.sender);
    result?;
    unshaped?;
    Ok(QosReport {
        link_bps: plan.link_bps,
        uplink_bps,
        interval: plan.interval,
        phases,
        cap,
        peer,
    })
}

/// Offers twice `limit_bps` of UDP (iperf3, [`CAPPED_LENGTH`]-byte
/// payloads) from `sender` to `server` in `receiver` for `duration`, and
/// measures what arrives; `counter` reads the limited bytes from the
/// sender's `qos` object, sampled from 2 s in to 1 s before the end (the
/// steady state).
fn measure_limit(
    sender: &Host,
    receiver: &Host,
    server: SocketAddr,
    limit_bps: u64,
    duration: Duration,
    what: &str,
    counter: impl Fn(&QosInfo) -> Option<u64>,
) -> anyhow::Result<CapResult> {
    let server = Iperf3Server::start(receiver, server)?;
    let client = Iperf3Client::start(
        sender,
        server.address(),
        &Iperf3Options {
            duration,
            udp_bps: Some(2 * limit_bps),
            length: CAPPED_LENGTH,
        },
    )?;
    let sample = || -> Option<(Instant, u64)> {
        let info = request_qos(sender.socket_path()).ok()?;
        Some((now(), counter(&info)?))
    };
    std::thread::sleep(Duration::from_secs(2));
    let first = sample();
    std::thread::sleep(duration.saturating_sub(Duration::from_secs(3)));
    let last = sample();
    let received = client.finish()?;
    drop(server);
    let weft_class_bps = match (first, last) {
        (Some((t0, b0)), Some((t1, b1))) if t1 > t0 && b1 >= b0 => {
            Some((b1 - b0) as f64 * 8.0 / t1.duration_since(t0).as_secs_f64())
        }
        _ => None,
    };
    Ok(CapResult {
        what: what.to_owned(),
        cap_bps: limit_bps,
        offered_bps: 2 * limit_bps,
        received_underlay_bps: underlay_bps(received.received_bps, CAPPED_LENGTH),
        received,
        weft_class_bps,
    })
}

/// Runs `tc -s qdisc show dev u0` in `host` (for diagnostics).
pub fn qdisc_stats(host: &Host) -> String {
    match run_with_timeout(
        host.command("tc")
            .args(["-s", "qdisc", "show", "dev", "u0"]),
        Duration::from_secs(5),
    ) {
        Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
        Err(e) => format!("(tc failed: {e:#})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let record = RealtimeRecord {
            sent: 101,
            rtts: (1..=100).rev().map(Duration::from_millis).collect(),
        };
        assert_eq!(record.lost(), 1);
        assert_eq!(record.quantile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(record.quantile(0.99), Some(Duration::from_millis(99)));
        assert_eq!(record.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(
            RealtimeRecord {
                sent: 3,
                rtts: vec![]
            }
            .quantile(0.99),
            None
        );
    }

    #[test]
    fn underlay_rates_add_every_header() {
        // 1200 bytes of payload: +8 UDP +20 IPv4 +33 weft +28 outer.
        assert_eq!(TUNNEL_UNDERLAY_OVERHEAD, 61);
        assert!((underlay_bps(1200.0, 1200) - 1289.0).abs() < 1e-9);
    }

    #[test]
    fn the_qos_config_parses() {
        let text = format!(
            "[node]\nkey = \"k\"\ncertificate = \"c\"\nca = \"a\"\n{}",
            QosPlan::default().qos_config()
        );
        let config =
            crate::config::Config::parse(std::path::Path::new("/tmp/weft.toml"), &text).unwrap();
        assert_eq!(config.qos.uplink_bps, Some(19_000_000));
        let capped = config.qos.class_id("capped").unwrap();
        assert_eq!(config.qos.class_rate_bps(capped), Some(5_000_000));
    }
}
