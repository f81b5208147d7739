//! The demo's window onto the network map: h0's HTTP API, reachable from
//! the root namespace's loopback, where the user's browser is.
//!
//! Each daemon of the demo serves its API on 127.0.0.1:4880 of its own
//! network namespace, which a browser in the root namespace cannot reach.
//! This module listens on 127.0.0.1:PORT in the root namespace (4880 unless
//! taken, then any free port) and relays each connection to h0's API: the
//! listening socket is made on the caller's thread (root namespace), the
//! accepting thread runs inside h0's namespace (`Host::spawn`), so its
//! connections to 127.0.0.1:4880 reach h0's daemon. Bytes are relayed
//! unchanged both ways (the event stream too). Bounded: at most
//! [`MAX_CONNECTIONS`] relayed connections at once (more are closed at
//! once), every socket has a read timeout so each relay thread notices the
//! stop flag within [`POLL`], and dropping the proxy stops it. The API
//! needs h0's token: [`MapProxy::url`] carries it (the page trades it for a
//! cookie, which the relay passes on like every other byte).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use crate::config::ApiSection;
use crate::testbed::Host;

/// Connections relayed at once, at most (a browser opens a few).
const MAX_CONNECTIONS: usize = 64;
/// Read timeout of every socket: how soon threads notice the stop flag.
const POLL: Duration = Duration::from_millis(200);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// See the module doc.
pub(super) struct MapProxy {
    address: SocketAddr,
    /// h0's API token.
    token: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl MapProxy {
    /// Listens on 127.0.0.1:`port` (or a free port if that is taken) and
    /// relays to `host`'s API (whose daemon must be up: it made the token).
    pub(super) fn start(host: &Host, port: u16) -> anyhow::Result<Self> {
        let token = host.api_token()?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))
            .context("cannot listen on 127.0.0.1 for the map")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let target = ApiSection::default().listen;
        let thread = {
            let stop = Arc::clone(&stop);
            host.spawn(move || accept_loop(&listener, target, &stop))
        };
        Ok(Self {
            address,
            token,
            stop,
            thread: Some(thread),
        })
    }

    /// The map's URL in the root namespace with the token and a query
    /// (may be empty).
    pub(super) fn url(&self, query: &str) -> String {
        if query.is_empty() {
            format!("http://{}/?token={}", self.address, self.token)
        } else {
            format!("http://{}/?token={}&{query}", self.address, self.token)
        }
    }
}

impl Drop for MapProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, stop: &Arc<AtomicBool>) {
    let live = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                if live.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    drop(client);
                    continue;
                }
                // This thread is in the host's namespace, and so are the
                // threads it starts: the connection to `target` is made there.
                let Ok(server) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
                    drop(client);
                    continue;
                };
                live.fetch_add(1, Ordering::Relaxed);
                let (stop, live) = (Arc::clone(stop), Arc::clone(&live));
                std::thread::spawn(move || {
                    relay(client, server, &stop);
                    live.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 4),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Copies both ways until either side closes or the stop flag is set;
/// when one direction ends, both sockets are shut so the other ends too.
fn relay(client: TcpStream, server: TcpStream, stop: &Arc<AtomicBool>) {
    for socket in [&client, &server] {
        let _ = socket.set_nonblocking(false);
        let _ = socket.set_read_timeout(Some(POLL));
    }
    let (Ok(client_reader), Ok(client_writer), Ok(server_reader), Ok(server_writer)) = (
        client.try_clone(),
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    let upstream = {
        let stop = Arc::clone(stop);
        std::thread::spawn(move || copy(client_reader, server_writer, &stop))
    };
    copy(server_reader, client_writer, stop);
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = upstream.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream, stop: &Arc<AtomicBool>) {
    let mut buffer = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
