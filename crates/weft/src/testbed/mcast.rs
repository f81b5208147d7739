//! Multicast traffic between hosts with ordinary UDP sockets, and how to
//! read deliveries from it.
//!
//! Nothing here talks to weft: a [`McastReceiver`] is a `std::net::UdpSocket`
//! on a thread inside a host's namespace that joins a group on the TUN the
//! way any application does (`IP_ADD_MEMBERSHIP` with the TUN's overlay
//! IPv4 address, `IPV6_JOIN_GROUP` with its interface index), so the
//! kernel's IGMP or MLD report is what makes the node a member. A
//! [`McastSender`] sends numbered datagrams to the group from a socket that
//! names no interface, so the TUN's multicast routes carry them. Each
//! datagram is [`MAGIC`] then its sequence number (8 bytes, big-endian).
//!
//! [`Testbed::wait_group_members`] waits until every node knows a group's
//! members, [`Testbed::wait_group_tree`] until every node computes the same
//! tree reaching all of them, and [`tree_link_to_cut`] picks a link of a
//! tree worth cutting.
//!
//! [`Deliveries::of`] sums up what one receiver got of a range of sequence
//! numbers: how many, duplicates, missing ones, wrong sources, and the
//! longest silence between two consecutive arrivals (the outage measure of
//! `stream.rs`, resolution one send interval).
//!
//! Bounded: receivers stop at their limit or when stopped or dropped; a
//! sender stops after its count, at its limit, or when dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::command::{now, run};
use super::{Host, TUN_NAME, Testbed};
use crate::group::TreeInfo;

/// The first bytes of every datagram.
pub const MAGIC: &[u8; 8] = b"weft-mc1";
/// How often a receiver looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long a receiver may take to bind and join.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// One datagram that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Its sequence number.
    pub seq: u64,
    /// Who sent it (source address and port).
    pub from: SocketAddr,
    /// When it arrived.
    pub at: Instant,
}

/// A receiving socket in a host's namespace. See the module doc.
#[derive(Debug)]
pub struct McastReceiver {
    group: SocketAddr,
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl McastReceiver {
    /// Binds a socket to `group`'s port in `host`'s namespace and, with
    /// `join`, joins `group` on the host's TUN; returns once it is joined.
    /// Without `join` the socket only listens (a non-member's socket: the
    /// kernel hands it nothing of the group). The receiver stops after
    /// `limit` at the latest.
    pub fn start(
        host: &Host,
        group: SocketAddr,
        join: bool,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let interface = match group.ip() {
            IpAddr::V4(_) => Interface::V4(host.overlay_ipv4()?),
            IpAddr::V6(_) => Interface::V6(tun_index(host)?),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (ready, is_ready) = mpsc::channel();
        let thread = {
            let (stop, arrivals, count) = (stop.clone(), arrivals.clone(), count.clone());
            host.spawn(move || {
                receive(
                    group,
                    join.then_some(interface),
                    limit,
                    &stop,
                    &arrivals,
                    &count,
                    &ready,
                )
            })
        };
        let mut receiver = McastReceiver {
            group,
            stop,
            arrivals,
            count,
            thread: Some(thread),
        };
        match is_ready.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(())) => Ok(receiver),
            Ok(Err(error)) => Err(anyhow!("{}: {error}", host.name())),
            // The thread ended (namespace not joined) or hangs: its result
            // says why, if it has one.
            Err(_) => {
                receiver.stop.store(true, Ordering::Relaxed);
                let error = match receiver.thread.take().map(JoinHandle::join) {
                    Some(Ok(Err(error) | Ok(Err(error)))) => error,
                    _ => anyhow!("the receiver did not get ready"),
                };
                Err(error.context(format!("{}: receiving {group}", host.name())))
            }
        }
    }

    /// The group it listens to.
    pub fn group(&self) -> SocketAddr {
        self.group
    }

    /// Datagrams received so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Everything received so far, in order of arrival.
    pub fn arrivals(&self) -> Vec<Arrival> {
        lock(&self.arrivals).clone()
    }

    /// Stops the receiver (closing its socket, which leaves the group) and
    /// returns everything it received, in order of arrival.
    pub fn stop(mut self) -> anyhow::Result<Vec<Arrival>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error)) | Err(error)) => return Err(error),
                Err(_) => bail!("the receiver thread panicked"),
            }
        }
        Ok(std::mem::take(&mut *lock(&self.arrivals)))
    }
}

impl Drop for McastReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a receiver joins: the TUN's IPv4 address or IPv6 interface index.
#[derive(Debug, Clone, Copy)]
enum Interface {
    V4(Ipv4Addr),
    V6(u32),
}

fn receive(
    group: SocketAddr,
    join: Option<Interface>,
    limit: Duration,
    stop: &AtomicBool,
    arrivals: &Mutex<Vec<Arrival>>,
    count: &AtomicUsize,
    ready: &mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let socket = match bind_and_join(group, join) {
        Ok(socket) => socket,
        Err(error) => {
            let message = format!("{error:#}");
            let _ = ready.send(Err(error));
            bail!("{message}");
        }
    };
    let _ = ready.send(Ok(()));
    let deadline = now() + limit;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) && now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let at = now();
                if let Some(seq) = decode(&buf[..n]) {
                    lock(arrivals).push(Arrival { seq, from, at });
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("receiving"),
        }
    }
    Ok(())
}

fn bind_and_join(group: SocketAddr, join: Option<Interface>) -> anyhow::Result<UdpSocket> {
    let any: IpAddr = match group {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, group.port()))
        .with_context(|| format!("binding port {}", group.port()))?;
    socket.set_read_timeout(Some(POLL))?;
    match (group.ip(), join) {
        (_, None) => {}
        (IpAddr::V4(address), Some(Interface::V4(interface))) => socket
            .join_multicast_v4(&address, &interface)
            .with_context(|| format!("joining {address} on {interface}"))?,
        (IpAddr::V6(address), Some(Interface::V6(index))) => socket
            .join_multicast_v6(&address, index)
            .with_context(|| format!("joining {address} on interface {index}"))?,
        (address, Some(interface)) => bail!("cannot join {address} on {interface:?}"),
    }
    Ok(socket)
}

/// The TUN's interface index in `host`'s namespace (from `ip -o link`).
fn tun_index(host: &Host) -> anyhow::Result<u32> {
    let output = run(host
        .command("ip")
        .args(["-o", "link", "show", "dev", TUN_NAME]))?;
    let text = String::from_utf8_lossy(&output);
    text.split(':')
        .next()
        .and_then(|index| index.trim().parse().ok())
        .with_context(|| {
            format!(
                "{}: no index for {TUN_NAME} in '{}'",
                host.name(),
                text.trim()
            )
        })
}

/// Sends numbered datagrams to a group from a host's namespace.
#[derive(Debug)]
pub struct McastSender {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<()>>>>,
}

impl McastSender {
    /// Starts sending `count` datagrams numbered from `first`, one every
    /// `interval`, to `group` from `host`'s namespace, from a socket that
    /// names no interface. Stops after `limit` at the latest.
    pub fn start(
        host: &Host,
        group: SocketAddr,
        first: u64,
        count: u64,
        interval: Duration,
        limit: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            host.spawn(move || send(group, first, count, interval, limit, &stop, &sent))
        };
        McastSender {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Datagrams sent so far.
    pub fn sent(&self) -> usize {
        lock(&self.sent).len()
    }

    /// Whether it has stopped sending.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits until it has sent everything (or stopped at its limit) and
    /// returns each datagram's number and send time.
    pub fn finish(mut self) -> anyhow::Result<Vec<(u64, Instant)>> {
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error)) | Err(error)) => return Err(error),
                Err(_) => bail!("the sender thread panicked"),
            }
        }
        Ok(std::mem::take(&mut *lock(&self.sent)))
    }
}

impl Drop for McastSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn send(
    group: SocketAddr,
    first: u64,
    count: u64,
    interval: Duration,
    limit: Duration,
    stop: &AtomicBool,
    sent: &Mutex<Vec<(u64, Instant)>>,
) -> anyhow::Result<()> {
    let any: IpAddr = match group {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).context("binding the sender")?;
    let start = now();
    let deadline = start + limit;
    let mut datagram = [0u8; 16];
    datagram[..8].copy_from_slice(MAGIC);
    for k in 0..count {
        // Paced against the start, so a slow send does not shift the rest.
        let due = start + interval.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
        let current = now();
        if due > current {
            std::thread::sleep(due - current);
        }
        if stop.load(Ordering::Relaxed) || now() >= deadline {
            break;
        }
        let seq = first + k;
        datagram[8..].copy_from_slice(&seq.to_be_bytes());
        socket
            .send_to(&datagram, group)
            .with_context(|| format!("sending datagram {seq} to {group}"))?;
        lock(sent).push((seq, now()));
    }
    Ok(())
}

fn decode(datagram: &[u8]) -> Option<u64> {
    let rest = datagram.strip_prefix(MAGIC.as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// What one receiver got of the datagrams numbered `first..first + count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliveries {
    /// Distinct datagrams of the range that arrived.
    pub unique: usize,
    /// Extra copies of datagrams of the range.
    pub duplicates: usize,
    /// Numbers of the range that never arrived, in order.
    pub missing: Vec<u64>,
    /// Datagrams of the range from another source than expected.
    pub wrong_source: usize,
    /// The longest time between two consecutive arrivals of the range
    /// (zero with fewer than two).
    pub max_gap: Duration,
    /// When that gap ended (the first arrival after it).
    pub gap_end: Option<Instant>,
}

impl Deliveries {
    /// Sums up `arrivals` (in order of arrival) for the range; a datagram
    /// counts as from the right source when its address is `source`.
    pub fn of(arrivals: &[Arrival], first: u64, count: u64, source: IpAddr) -> Self {
        let in_range: Vec<&Arrival> = arrivals
            .iter()
            .filter(|a| (first..first + count).contains(&a.seq))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut duplicates = 0;
        for arrival in &in_range {
            if !seen.insert(arrival.seq) {
                duplicates += 1;
            }
        }
        let mut max_gap = Duration::ZERO;
        let mut gap_end = None;
        for pair in in_range.windows(2) {
            let gap = pair[1].at.saturating_duration_since(pair[0].at);
            if gap > max_gap {
                max_gap = gap;
                gap_end = Some(pair[1].at);
            }
        }
        Deliveries {
            unique: seen.len(),
            duplicates,
            missing: (first..first + count)
                .filter(|seq| !seen.contains(seq))
                .collect(),
            wrong_source: in_range.iter().filter(|a| a.from.ip() != source).count(),
            max_gap,
            gap_end,
        }
    }

    /// Every datagram of the range exactly once, all from the right source.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.duplicates == 0 && self.wrong_source == 0
    }
}

impl Testbed {
    /// Waits until every running host lists exactly the hosts named in
    /// `members` as the members of `group` (`weft group list`).
    pub fn wait_group_members(
        &self,
        group: IpAddr,
        members: &std::collections::BTreeSet<String>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_until(
            timeout,
            &format!("every node to know the members of {group}"),
            || {
                for host in self.hosts().iter().filter(|h| h.daemon_pid().is_some()) {
                    let groups = crate::group::groups(host.socket_path())?;
                    let known: std::collections::BTreeSet<String> = groups
                        .iter()
                        .filter(|g| g.group == group)
                        .flat_map(|g| g.members.iter().map(|m| m.name.clone()))
                        .collect();
                    if &known != members {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
    }
}

impl Testbed {
    /// Waits until every running host computes the same tree from `source`
    /// to `group` (`weft group tree`), reaching every member, and returns
    /// it. Trees are built from link state, which settles a little after
    /// the sessions and routes do.
    pub fn wait_group_tree(
        &self,
        source: &str,
        group: IpAddr,
        timeout: Duration,
    ) -> anyhow::Result<TreeInfo> {
        let mut agreed = None;
        self.wait_until(
            timeout,
            &format!(
                "every node to compute one tree from {source} to {group}, reaching every member"
            ),
            || {
                let mut first: Option<TreeInfo> = None;
                for host in self.hosts().iter().filter(|h| h.daemon_pid().is_some()) {
                    let mut tree = crate::group::tree(host.socket_path(), group, Some(source))?;
                    if !tree.unreached.is_empty() {
                        return Ok(false);
                    }
                    tree.edges.sort();
                    match &first {
                        None => first = Some(tree),
                        Some(first) if first.edges != tree.edges => return Ok(false),
                        Some(_) => {}
                    }
                }
                agreed = first;
                Ok(agreed.is_some())
            },
        )?;
        agreed.ok_or_else(|| anyhow!("no tree"))
    }
}

/// A link of `tree` to cut so that a whole branch has to move: from the
/// source to a child that has children of its own if there is one, else
/// the first from the source. `None` for a tree without edges.
pub fn tree_link_to_cut(tree: &TreeInfo) -> Option<(String, String)> {
    let from_source: Vec<&(String, String)> = tree
        .edges
        .iter()
        .filter(|(parent, _)| *parent == tree.source)
        .collect();
    let interior = from_source
        .iter()
        .find(|(_, child)| tree.edges.iter().any(|(parent, _)| parent == child));
    interior.or(from_source.first()).map(|edge| (*edge).clone())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking thread leaves the data whole: pushes are single calls.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_decode_only_with_the_magic_and_eight_bytes() {
        let mut datagram = MAGIC.to_vec();
        datagram.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(decode(&datagram), Some(7));
        assert_eq!(decode(&datagram[..15]), None);
        datagram[0] = b'x';
        assert_eq!(decode(&datagram), None);
    }

    #[test]
    fn the_link_to_cut_leads_to_a_branch() {
        let edge = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let mut tree = TreeInfo {
            group: "239.1.2.3".parse().unwrap(),
            source: "h0".into(),
            edges: vec![edge("h0", "h1"), edge("h0", "h2"), edge("h2", "h3")],
            members: vec!["h1".into(), "h3".into()],
            unreached: vec![],
        };
        assert_eq!(tree_link_to_cut(&tree), Some(edge("h0", "h2")));
        tree.edges.pop();
        assert_eq!(tree_link_to_cut(&tree), Some(edge("h0", "h1")));
        tree.edges.clear();
        assert_eq!(tree_link_to_cut(&tree), None);
    }

    #[test]
    fn deliveries_count_duplicates_gaps_and_sources() {
        let t0 = now();
        let source: SocketAddr = "198.19.0.1:4000".parse().unwrap();
        let other: SocketAddr = "198.19.0.9:4000".parse().unwrap();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let arrivals = [
            Arrival {
                seq: 9,
                from: source,
                at: at(0),
            },
            Arrival {
                seq: 10,
                from: source,
                at: at(10),
            },
            Arrival {
                seq: 11,
                from: source,
                at: at(20),
            },
            Arrival {
                seq: 11,
                from: source,
                at: at(25),
            },
            Arrival {
                seq: 14,
                from: other,
                at: at(325),
            },
            Arrival {
                seq: 15,
                from: source,
                at: at(335),
            },
        ];
        let d = Deliveries::of(&arrivals, 10, 6, source.ip());
        assert_eq!(d.unique, 4);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.missing, [12, 13]);
        assert_eq!(d.wrong_source, 1);
        assert_eq!(d.max_gap, Duration::from_millis(300));
        assert_eq!(d.gap_end, Some(at(325)));
        assert!(!d.is_exact());
        let exact = Deliveries::of(&arrivals[..3], 9, 3, source.ip());
        assert!(exact.is_exact(), "{exact:?}");
    }
}
