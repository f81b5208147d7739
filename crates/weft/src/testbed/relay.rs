//! A userspace impairment relay: a UDP forwarder that delays one host
//! pair's underlay packets (this kernel has no netem).
//!
//! Relay `k` listens on [`relay_address`]`(k)`, an address of the bridge
//! namespace (198.18.0.250, port 5000 + k), and forwards what host A's
//! daemon sends there to host B's daemon and the other way round, each
//! packet `delay` later (one way; the round trip grows by twice the delay).
//! The test bed wires it by writing the relay's address as the peer's
//! endpoint in both A's and B's configs, so neither daemon ever sees the
//! other's real address and both keep sending through the relay; every
//! other pair is untouched, and a third node relaying for A and B still
//! reaches them directly.
//!
//! Bounded: at most 4096 packets wait (more are dropped and counted), the
//! relay stops when dropped and after 30 minutes anyway, and it forwards
//! only between A's and B's daemon addresses.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use super::command::now;
use super::netns::spawn_in;

/// The bridge namespace's address on the underlay, where relays listen.
pub const RELAY_IPV4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);
/// Most packets a relay holds at once (both directions together).
const MAX_QUEUE: usize = 4096;
/// A relay stops forwarding this long after it started, at the latest.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Longest the relay's loop blocks, so it notices `stop` and due packets.
const TICK: Duration = Duration::from_millis(2);
/// First port of the relays: relay `k` listens on `RELAY_BASE_PORT + k`.
const RELAY_BASE_PORT: u16 = 5000;
/// Largest datagram forwarded.
const MAX_DATAGRAM: usize = 65536;

/// Where relay `k` listens.
pub fn relay_address(k: usize) -> SocketAddr {
    let port = RELAY_BASE_PORT.saturating_add(u16::try_from(k).unwrap_or(u16::MAX));
    SocketAddr::V4(SocketAddrV4::new(RELAY_IPV4, port))
}

/// A running impairment relay between two daemons. See the module doc.
#[derive(Debug)]
pub struct ImpairmentRelay {
    address: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    delay_us: AtomicU64,
    stop: AtomicBool,
    forwarded: AtomicU64,
    dropped_full: AtomicU64,
    dropped_foreign: AtomicU64,
}

impl ImpairmentRelay {
    /// Starts a relay at `address` inside namespace `netns` that forwards
    /// between `a` and `b` (daemon addresses), with no delay yet.
    pub(super) fn start(
        netns: &str,
        address: SocketAddr,
        a: SocketAddr,
        b: SocketAddr,
    ) -> anyhow::Result<Self> {
        let socket = spawn_in(netns, move || UdpSocket::bind(address))
            .join()
            .map_err(|_| anyhow!("the relay's bind thread panicked"))?
            .and_then(|bound| bound.with_context(|| format!("binding the relay to {address}")))?;
        socket
            .set_read_timeout(Some(TICK))
            .context("setting the relay's timeout")?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            // The socket already lives in the namespace; the thread need not.
            std::thread::spawn(move || forward(&socket, a, b, &shared))
        };
        Ok(ImpairmentRelay {
            address,
            shared,
            thread: Some(thread),
        })
    }

    /// Where it listens (the endpoint A and B have for each other).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sets the one-way delay of every packet from now on.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(micros, Ordering::Relaxed);
    }

    /// The one-way delay.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.shared.delay_us.load(Ordering::Relaxed))
    }

    /// Packets forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Packets dropped so far: queue full, or not from A or B.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped_full.load(Ordering::Relaxed)
            + self.shared.dropped_foreign.load(Ordering::Relaxed)
    }
}

impl Drop for ImpairmentRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The relay's loop: receive, queue with a due time, send what is due.
fn forward(
    socket: &UdpSocket,
    a: SocketAddr,
    b: SocketAddr,
    shared: &Shared,
) -> anyhow::Result<()> {
    let started = now();
    let mut queue: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::Relaxed) && now() < started + MAX_LIFETIME {
        // Block at most until the next packet is due (and never long).
        let wait = queue
            .front()
            .map_or(TICK, |(due, _, _)| due.saturating_duration_since(now()))
            .clamp(Duration::from_micros(100), TICK);
        socket
            .set_read_timeout(Some(wait))
            .context("setting the relay's timeout")?;
        match socket.recv_from(&mut buffer) {
            Ok((len, from)) => {
                let to = if from == a {
                    b
                } else if from == b {
                    a
                } else {
                    shared.dropped_foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if queue.len() >= MAX_QUEUE {
                    shared.dropped_full.fetch_add(1, Ordering::Relaxed);
                } else {
                    let delay = Duration::from_micros(shared.delay_us.load(Ordering::Relaxed));
                    queue.push_back((now() + delay, to, buffer[..len].to_vec()));
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                ) => {}
            Err(error) => return Err(error).context("relay receive"),
        }
        // A lowered delay may leave a later packet due before an earlier
        // one; it waits for the earlier one (FIFO), as on a real path.
        let current = now();
        while queue.front().is_some_and(|(due, _, _)| *due <= current) {
            if let Some((_, to, packet)) = queue.pop_front() {
                // A send error (e.g. the peer's port closed) loses this packet only.
                if socket.send_to(&packet, to).is_ok() {
                    shared.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_have_distinct_addresses_on_the_bridge() {
        assert_eq!(relay_address(0).to_string(), "198.18.0.250:5000");
        assert_eq!(relay_address(3).to_string(), "198.18.0.250:5003");
    }

    #[test]
    fn forwards_both_ways_with_the_delay_and_ignores_strangers() {
        // On loopback in this process's namespace: no root needed.
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_addr = relay_socket.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        shared.delay_us.store(30_000, Ordering::Relaxed);
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || forward(&relay_socket, a_addr, b_addr, &shared))
        };
        for socket in [&a, &b] {
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
        }
        stranger.send_to(b"nope", relay_addr).unwrap();
        let sent = now();
        a.send_to(b"ping", relay_addr).unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], from), (&b"ping"[..], relay_addr));
        assert!(sent.elapsed() >= Duration::from_millis(30));
        b.send_to(b"pong", relay_addr).unwrap();
        let (len, _) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"pong");
        shared.stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();
        assert_eq!(shared.forwarded.load(Ordering::Relaxed), 2);
        assert_eq!(shared.dropped_foreign.load(Ordering::Relaxed), 1);
    }
}
