//! The UDP driver: one socket, batched receive (recvmmsg with GRO) and
//! batched send (UDP GSO), through `quinn-udp`.
//!
//! Receive buffers and the send buffer are allocated once and reused, so
//! the steady state allocates nothing per packet. Consecutive datagrams to
//! the same destination with the same size are coalesced into one GSO send;
//! received GRO buffers are split back into datagrams at the segment size.
//! The socket's kernel buffers are raised to several MiB so bursts are not
//! dropped while the event loop works on something else.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

/// Kernel buffer size asked for in each direction.
const SOCKET_BUFFER: usize = 7 << 20;
/// Room for one received buffer: a full GRO batch or one datagram of any size.
const RECV_BUFFER: usize = 64 * 1024;
/// Largest GSO send: the UDP payload limit, rounded down.
const MAX_GSO_BYTES: usize = 65_000;

/// A bound UDP socket with its batching state and buffers.
pub(super) struct Udp {
    socket: UdpSocket,
    state: UdpSocketState,
    /// The socket is IPv6 (dual-stack when bound to `[::]`): IPv4
    /// destinations are sent as IPv4-mapped addresses.
    ipv6: bool,
    /// `quinn_udp::BATCH_SIZE` receive buffers, back to back.
    recv: Box<[u8]>,
    meta: Vec<RecvMeta>,
    /// The pending GSO batch: datagrams of `segment` bytes (the last may be
    /// shorter) to `destination`.
    send: Vec<u8>,
    destination: Option<SocketAddr>,
    segment: usize,
    segments: usize,
    max_segments: usize,
    /// Send errors other than "would block", for the status counters.
    pub(super) send_errors: u64,
}

impl Udp {
    /// Binds a socket to `listen`. Must be called inside the tokio runtime.
    pub(super) fn bind(listen: SocketAddr) -> anyhow::Result<Self> {
        let socket = Socket::new(
            Domain::for_address(listen),
            Type::DGRAM,
            Some(Protocol::UDP),
        )
        .context("cannot create a UDP socket")?;
        let ipv6 = listen.is_ipv6();
        if ipv6 && listen.ip().is_unspecified() {
            // One socket for both families when listening on [::].
            if let Err(e) = socket.set_only_v6(false) {
                debug!(error = %e, "cannot make the IPv6 socket dual-stack");
            }
        }
        grow_buffers(&socket);
        socket
            .set_nonblocking(true)
            .context("cannot make the UDP socket non-blocking")?;
        socket.bind(&listen.into()).with_context(|| {
            format!("cannot bind the UDP socket to {listen} (is another node using it?)")
        })?;
        let std_socket: std::net::UdpSocket = socket.into();
        let state =
            UdpSocketState::new((&std_socket).into()).context("cannot set up the UDP socket")?;
        let socket =
            UdpSocket::from_std(std_socket).context("cannot register the UDP socket with tokio")?;
        let batch = quinn_udp::BATCH_SIZE;
        let max_segments = state.max_gso_segments().max(1);
        debug!(
            gso_segments = max_segments,
            gro_segments = state.gro_segments(),
            "UDP socket ready"
        );
        Ok(Self {
            socket,
            state,
            ipv6,
            recv: vec![0u8; batch * RECV_BUFFER].into_boxed_slice(),
            meta: vec![RecvMeta::default(); batch],
            send: Vec::with_capacity(MAX_GSO_BYTES),
            destination: None,
            segment: 0,
            segments: 0,
            max_segments,
            send_errors: 0,
        })
    }

    /// The address the socket is bound to.
    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits until a datagram may be waiting (cancel safe).
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Receives what is waiting, at most about `budget` datagrams, and
    /// hands each to `handle` with its source. Returns how many it handled;
    /// fewer than `budget` means the socket is drained.
    pub(super) fn receive(
        &mut self,
        budget: usize,
        mut handle: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let mut handled = 0;
        while handled < budget {
            let mut chunks = self.recv.chunks_mut(RECV_BUFFER);
            let mut slices: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            let state = &self.state;
            let meta = &mut self.meta;
            let received = match self.socket.try_io(Interest::READABLE, || {
                state.recv((&self.socket).into(), &mut slices, meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors of earlier sends (port unreachable) surface
                // here on some kernels: not fatal for the socket.
                Err(e) if is_transient(&e) => {
                    debug!(error = %e, "UDP receive error");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (meta, slice) in self.meta.iter().zip(slices.iter()).take(received) {
                let from = canonical(meta.addr);
                let stride = if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                };
                for datagram in slice[..meta.len.min(slice.len())].chunks(stride.max(1)) {
                    handle(from, datagram);
                    handled += 1;
                }
            }
        }
        Ok(handled)
    }

    /// Queues `datagram` for `destination`, sending the pending batch first
    /// when it cannot be extended.
    pub(super) async fn queue(
        &mut self,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> anyhow::Result<()> {
        let destination = self.outbound(destination);
        let fits = self.destination == Some(destination)
            && datagram.len() <= self.segment
            // A shorter datagram must end the batch: only the last may be short.
            && self.send.len().is_multiple_of(self.segment.max(1))
            && self.segments < self.max_segments
            && self.send.len() + datagram.len() <= MAX_GSO_BYTES;
        if !fits {
            self.flush().await?;
            self.destination = Some(destination);
            self.segment = datagram.len();
        }
        self.send.extend_from_slice(datagram);
        self.segments += 1;
        Ok(())
    }

    /// Sends the pending batch, waiting for the socket if its buffer is full.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        let Some(destination) = self.destination.take() else {
            return Ok(());
        };
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &self.send,
            segment_size: (self.segments > 1).then_some(self.segment),
            src_ip: None,
        };
        loop {
            let state = &self.state;
            let result = self.socket.try_io(Interest::WRITABLE, || {
                state.try_send((&self.socket).into(), &transmit)
            });
            match result {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.writable().await.context("UDP socket failed")?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Unreachable networks, firewalls, oversized datagrams:
                    // the packet is lost, as on the wire; the core's timers
                    // deal with it.
                    self.send_errors += 1;
                    if self.send_errors.is_power_of_two() {
                        warn!(error = %e, count = self.send_errors, "cannot send a UDP datagram");
                    } else {
                        debug!(error = %e, %destination, "cannot send a UDP datagram");
                    }
                    break;
                }
            }
        }
        self.send.clear();
        self.segments = 0;
        // quinn-udp turns GSO off when the kernel or the route refuses it.
        self.max_segments = self.state.max_gso_segments().max(1);
        Ok(())
    }

    /// The destination as this socket must be given it.
    fn outbound(&self, destination: SocketAddr) -> SocketAddr {
        match destination {
            SocketAddr::V4(v4) if self.ipv6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }
}

/// IPv4-mapped IPv6 sources (dual-stack socket) as plain IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ECONNRESET)
    )
}

/// Raises the kernel's socket buffers: past `net.core.[rw]mem_max` with
/// CAP_NET_ADMIN (the `FORCE` options), else as far as the limit allows.
fn grow_buffers(socket: &Socket) {
    if let Err(e) = set_buffer_force(socket, libc::SO_RCVBUFFORCE) {
        debug!(error = %e, "SO_RCVBUFFORCE refused; using SO_RCVBUF");
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    }
    if let Err(e) = set_buffer_force(socket, libc::SO_SNDBUFFORCE) {
        debug!(error = %e, "SO_SNDBUFFORCE refused; using SO_SNDBUF");
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    }
    debug!(
        receive = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
}

#[allow(unsafe_code)]
fn set_buffer_force(socket: &Socket, option: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value: libc::c_int = SOCKET_BUFFER as libc::c_int;
    // SAFETY: the descriptor is a live socket owned by `socket`; the option
    // value points at a c_int that outlives the call, with its exact size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
