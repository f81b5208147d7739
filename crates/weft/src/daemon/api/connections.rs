//! The API's connections: at most `[api] max_connections` open at once, and
//! none left idle for longer than `[api] idle_timeout`.
//!
//! Why: the API listens on a TCP port any local user can reach, and every
//! connection costs the daemon a file descriptor and a few tens of KiB.
//! Unbounded, a few thousand idle connections from an unprivileged user
//! used up the daemon's descriptors (the API and the control socket then
//! stopped answering) and left tens of MB of heap behind.
//!
//! Rules, applied by [`ApiListener`] (which `axum::serve` accepts from):
//!
//! - A connection is *busy* while an authenticated request is being
//!   answered or an event stream is open ([`Busy`], taken by the API's
//!   middleware and the stream), and *idle* otherwise: from accept until
//!   its first request, and between requests. Requests without the token
//!   never make a connection busy.
//! - An idle connection is closed `idle_timeout` after it was accepted or
//!   its last request ended, whatever bytes it sends meanwhile: a request
//!   head trickled in byte by byte counts as idle too.
//! - When `max_connections` are open and another arrives, the idle one whose
//!   last request (or accept) is oldest is closed to make room, so a client
//!   holding idle connections cannot keep others out; if every connection
//!   is busy, the new one is closed at once. Connections being closed still
//!   hold a descriptor for a moment: beyond twice the limit, new ones are
//!   closed at once too, so descriptors stay bounded.
//!
//! The counters are in `/metrics` (`weft_api_connections`,
//! `weft_api_connections_closed_total{reason}`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tracing::debug;

/// Pause after an accept error that is not about one connection (out of
/// descriptors, say), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// Accepts the API's connections under the rules of the module doc.
pub(super) struct ApiListener {
    listener: TcpListener,
    registry: Arc<Registry>,
}

impl ApiListener {
    pub(super) fn new(listener: TcpListener, registry: Arc<Registry>) -> Self {
        Self { listener, registry }
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            let (stream, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        debug!(%error, "the API cannot accept connections for now");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            };
            if let Some(connection) = self.registry.admit(stream) {
                return (connection, remote);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection's peer and its activity, for the API's handlers (as
/// axum's `ConnectInfo`).
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub(super) remote: SocketAddr,
    activity: Arc<Activity>,
}

impl Peer {
    /// Marks the connection busy until the guard is dropped.
    pub(super) fn busy(&self) -> Busy {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(&self.activity))
    }
}

impl Connected<IncomingStream<'_, ApiListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ApiListener>) -> Self {
        Peer {
            remote: *stream.remote_addr(),
            activity: Arc::clone(&stream.io().activity),
        }
    }
}

/// The connection is busy while this lives; when the last guard goes, its
/// idle time starts again.
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ConnectionStats {
    /// Connections open now (including ones being closed).
    pub(super) open: u64,
    /// Closed after `idle_timeout` without a request.
    pub(super) closed_idle: u64,
    /// Closed to make room for a new one.
    pub(super) evicted: u64,
    /// Closed at once: every connection was busy.
    pub(super) refused: u64,
}

/// Every open connection of one listener.
#[derive(Debug)]
pub(super) struct Registry {
    max: usize,
    idle_timeout: Duration,
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    next_id: u64,
    /// Connections that count against the limit (not being closed).
    live: BTreeMap<u64, Arc<Activity>>,
    stats: ConnectionStats,
}

impl Registry {
    pub(super) fn new(max: usize, idle_timeout: Duration) -> Self {
        Self {
            max,
            idle_timeout,
            state: Mutex::new(RegistryState::default()),
        }
    }

    pub(super) fn stats(&self) -> ConnectionStats {
        self.lock().stats
    }

    /// Takes `stream` in, making room if needed; `None` (the stream is
    /// closed) when it cannot.
    fn admit(self: &Arc<Self>, stream: TcpStream) -> Option<Connection> {
        let activity = Arc::new(Activity::new(self.idle_timeout));
        let id = {
            let mut state = self.lock();
            let hard_cap = u64::try_from(self.max.saturating_mul(2)).unwrap_or(u64::MAX);
            if state.stats.open >= hard_cap || !state.make_room(self.max) {
                state.stats.refused += 1;
                debug!(
                    open = state.stats.open,
                    "API connection refused: every connection is busy"
                );
                return None;
            }
            let id = state.next_id;
            state.next_id += 1;
            state.live.insert(id, Arc::clone(&activity));
            state.stats.open += 1;
            id
        };
        let idle = Box::pin(tokio::time::sleep_until(activity.idle_deadline()));
        Some(Connection {
            stream,
            activity,
            registry: Arc::clone(self),
            id,
            idle,
        })
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        // The state stays consistent across a panic (plain counters and a
        // map), so a poisoned lock is still right to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RegistryState {
    /// Below the limit, or one idle connection closed to get there: true.
    fn make_room(&mut self, max: usize) -> bool {
        if self.live.len() < max {
            return true;
        }
        let oldest_idle = self
            .live
            .iter()
            .filter(|(_, activity)| !activity.is_busy())
            .min_by_key(|(id, activity)| (activity.last_active(), **id))
            .map(|(&id, _)| id);
        let Some(victim) = oldest_idle.and_then(|id| self.live.remove(&id)) else {
            return false;
        };
        victim.evict();
        self.stats.evicted += 1;
        true
    }
}

/// What a connection's reader and the request handlers share.
#[derive(Debug)]
struct Activity {
    idle_timeout: Duration,
    /// Requests (and event streams) in progress.
    in_flight: AtomicUsize,
    /// When the connection was accepted or its last request ended.
    last_active: Mutex<Instant>,
    /// Closed to make room: the next read fails.
    evicted: AtomicBool,
    /// Wakes the reader when evicted.
    waker: AtomicWaker,
}

impl Activity {
    fn new(idle_timeout: Duration) -> Self {
        Self {
            idle_timeout,
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    fn last_active(&self) -> Instant {
        *self
            .last_active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self) {
        *self
            .last_active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn idle_deadline(&self) -> Instant {
        self.last_active() + self.idle_timeout
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.waker.wake();
    }
}

/// One accepted connection: a TCP stream whose reads fail once it is
/// evicted or has been idle too long (hyper then closes it).
pub(super) struct Connection {
    stream: TcpStream,
    activity: Arc<Activity>,
    registry: Arc<Registry>,
    id: u64,
    idle: Pin<Box<Sleep>>,
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.activity.waker.register(cx.waker());
        if this.activity.evicted.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        if let Poll::Ready(result) = Pin::new(&mut this.stream).poll_read(cx, buf) {
            return Poll::Ready(result);
        }
        if this.activity.is_busy() {
            return Poll::Pending;
        }
        let deadline = this.activity.idle_deadline();
        if this.idle.deadline() != deadline {
            this.idle.as_mut().reset(deadline);
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            this.registry.lock().stats.closed_idle += 1;
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        Poll::Pending
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut state = self.registry.lock();
        state.live.remove(&self.id);
        state.stats.open = state.stats.open.saturating_sub(1);
    }
}

/// Accept errors about one connection (it went away before it was
/// accepted); anything else is about the listener or the process.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A listener with `max` connections and `idle` timeout on loopback.
    async fn listener(max: usize, idle: Duration) -> (ApiListener, Arc<Registry>, SocketAddr) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let registry = Arc::new(Registry::new(max, idle));
        (
            ApiListener::new(tcp, Arc::clone(&registry)),
            registry,
            address,
        )
    }

    async fn accept(listener: &mut ApiListener) -> Connection {
        axum::serve::Listener::accept(listener).await.0
    }

    #[tokio::test]
    async fn an_idle_connection_fails_its_read_after_the_timeout_unless_busy() {
        let idle = Duration::from_millis(200);
        let (mut listener, registry, address) = listener(4, idle).await;
        let _client = TcpStream::connect(address).await.unwrap();
        let mut connection = accept(&mut listener).await;
        let peer = Peer {
            remote: address,
            activity: Arc::clone(&connection.activity),
        };
        let busy = peer.busy();
        let mut byte = [0u8; 1];
        // Busy: no timeout, however long.
        let read = tokio::time::timeout(idle * 3, connection.read(&mut byte)).await;
        assert!(read.is_err(), "a busy connection's read ended: {read:?}");
        // Idle from the end of its last request on.
        drop(busy);
        let started = Instant::now();
        let error = connection.read(&mut byte).await.unwrap_err();
        let waited = started.elapsed();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            waited >= idle - Duration::from_millis(20) && waited < idle * 5,
            "closed after {waited:?}"
        );
        assert_eq!(registry.stats().closed_idle, 1);
        drop(connection);
        assert_eq!(registry.stats().open, 0);
    }

    #[tokio::test]
    async fn a_full_listener_closes_its_oldest_idle_connection_for_a_new_one() {
        let (mut listener, registry, address) = listener(2, Duration::from_secs(60)).await;
        let mut clients = Vec::new();
        let mut connections = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(address).await.unwrap());
            connections.push(accept(&mut listener).await);
            // Distinct last-activity instants.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The first is busy: the second, though newer, is the one to go.
        let busy = Peer {
            remote: address,
            activity: Arc::clone(&connections[0].activity),
        }
        .busy();
        clients.push(TcpStream::connect(address).await.unwrap());
        let mut third = accept(&mut listener).await;
        let mut byte = [0u8; 1];
        let error = connections[1].read(&mut byte).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(registry.stats().evicted, 1);
        // The new one works.
        clients[2].write_all(b"x").await.unwrap();
        assert_eq!(third.read(&mut byte).await.unwrap(), 1);
        drop(busy);
        drop(connections);
        assert_eq!(registry.stats().open, 1);
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_new_one_is_closed_at_once() {
        let (mut listener, registry, address) = listener(1, Duration::from_secs(60)).await;
        let _first_client = TcpStream::connect(address).await.unwrap();
        let first = accept(&mut listener).await;
        let _busy = Peer {
            remote: address,
            activity: Arc::clone(&first.activity),
        }
        .busy();
        let mut refused = TcpStream::connect(address).await.unwrap();
        let _later_client = TcpStream::connect(address).await.unwrap();
        // The listener accepts and closes the refused one, then waits for
        // the next, which it refuses too while the first stays busy.
        let waiting = tokio::time::timeout(Duration::from_millis(300), accept(&mut listener)).await;
        assert!(waiting.is_err());
        let mut byte = [0u8; 1];
        assert_eq!(refused.read(&mut byte).await.unwrap_or(0), 0);
        assert_eq!(registry.stats().refused, 2);
        assert_eq!(registry.stats().open, 1);
    }
}
