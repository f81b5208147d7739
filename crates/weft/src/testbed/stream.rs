//! A ping stream between two hosts, and how to read outages from it.
//!
//! [`Host::ping_stream`] pings an address from inside the host's namespace
//! on a thread (the in-process `weft ping`, see `crate::ping`), one echo
//! request every `interval`, while the caller cuts, impairs and restores
//! links. Each request's fate ([`Probe`]: send time, RTT or lost) is shared
//! as soon as it is known, so a caller can wait for traffic to resume; at
//! the end [`PingStream::stop`] gives all of them in order.
//!
//! [`outage`] measures an outage the way the failover benchmark reports
//! it: from the last reply that arrived before the cut to the first reply
//! that arrived after it (the longest silence between two consecutive
//! replies after the cut, to be exact), so its resolution is one interval:
//! a hitless switch still shows one interval. [`loss_between`] counts lost
//! requests by send time.
//!
//! Bounded: the stream stops at its `limit` or when stopped or dropped,
//! whichever comes first; requests in flight get [`REPLY_TIMEOUT`] at most.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::Host;
use super::command::now;
use crate::ping::{Outcome, PingOptions, PingReport, ping_until};

/// A request without a reply this long after it was sent counts as lost.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests sent this long before a cut were in flight when it came; losing
/// them counts towards the cut.
const IN_FLIGHT: Duration = Duration::from_millis(50);

/// What became of one echo request of a [`PingStream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Its number in the stream, from 1.
    pub seq: u32,
    /// When it was sent.
    pub sent: Instant,
    /// Its round-trip time, or `None` if it was lost.
    pub rtt: Option<Duration>,
}

impl Probe {
    /// When its reply arrived, if one did.
    pub fn arrival(&self) -> Option<Instant> {
        self.rtt.map(|rtt| self.sent + rtt)
    }
}

/// A running ping stream. See the module doc.
#[derive(Debug)]
pub struct PingStream {
    target: IpAddr,
    interval: Duration,
    started: Instant,
    stop: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
    thread: Option<JoinHandle<anyhow::Result<anyhow::Result<PingReport>>>>,
}

/// A finished ping stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Every request, in order of `seq`.
    pub probes: Vec<Probe>,
    /// The ping run's summary.
    pub report: PingReport,
}

/// An outage seen in a ping stream. See [`outage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// From the last reply before the silence to the first one after it.
    pub gap: Duration,
    /// Arrival of the last reply before the silence, if any came.
    pub last_before: Option<Instant>,
    /// Arrival of the first reply after the silence.
    pub first_after: Instant,
    /// Requests lost that were sent from just before the cut to the end of the window.
    pub lost: usize,
}

impl Host {
    /// Starts pinging `target` from this host every `interval` for at most
    /// `limit`. See the module doc.
    pub fn ping_stream(&self, target: IpAddr, interval: Duration, limit: Duration) -> PingStream {
        let count = u32::try_from(limit.as_nanos() / interval.as_nanos().max(1))
            .unwrap_or(u32::MAX)
            .max(1);
        let options = PingOptions {
            count,
            interval,
            timeout: REPLY_TIMEOUT,
            deadline: Some(limit + REPLY_TIMEOUT),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, probes) = (Arc::clone(&stop), Arc::clone(&probes));
            self.spawn(move || {
                ping_until(target, &options, &stop, |outcome| {
                    let probe = match outcome {
                        Outcome::Reply(reply) => Probe {
                            seq: reply.seq,
                            sent: reply.sent,
                            rtt: Some(reply.rtt),
                        },
                        Outcome::Timeout { seq, sent, .. }
                        | Outcome::SendError { seq, sent, .. } => Probe {
                            seq: *seq,
                            sent: *sent,
                            rtt: None,
                        },
                    };
                    lock(&probes).push(probe);
                })
            })
        };
        PingStream {
            target,
            interval,
            started: now(),
            stop,
            probes,
            thread: Some(thread),
        }
    }
}

impl PingStream {
    /// The address pinged.
    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// The time between requests.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the stream was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The requests whose fate is known so far, in the order it became known.
    pub fn probes(&self) -> Vec<Probe> {
        lock(&self.probes).clone()
    }

    /// Replies so far to requests sent after `time`.
    pub fn replies_sent_after(&self, time: Instant) -> usize {
        lock(&self.probes)
            .iter()
            .filter(|probe| probe.sent > time && probe.rtt.is_some())
            .count()
    }

    /// Replies so far.
    pub fn replies(&self) -> usize {
        lock(&self.probes)
            .iter()
            .filter(|probe| probe.rtt.is_some())
            .count()
    }

    /// Whether the stream's thread has ended (its limit reached, or an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops sending, waits for the requests in flight (at most
    /// [`REPLY_TIMEOUT`]) and returns every request's fate.
    pub fn stop(mut self) -> anyhow::Result<StreamRecord> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self
            .thread
            .take()
            .ok_or_else(|| anyhow!("the ping stream was already stopped"))?;
        let report = thread
            .join()
            .map_err(|_| anyhow!("the ping thread panicked"))???;
        let mut probes = lock(&self.probes).clone();
        probes.sort_by_key(|probe| probe.seq);
        Ok(StreamRecord { probes, report })
    }
}

impl Drop for PingStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The outage a cut at `cut` caused, judged from the replies that arrived
/// before `end` (e.g. when the link was restored): the longest silence
/// between consecutive replies from the last one before the cut on. `None`
/// if no reply arrived after the cut (traffic did not resume).
pub fn outage(probes: &[Probe], cut: Instant, end: Instant) -> Option<Outage> {
    let mut arrivals: Vec<Instant> = probes
        .iter()
        .filter_map(Probe::arrival)
        .filter(|arrival| *arrival < end)
        .collect();
    arrivals.sort();
    let last_before = arrivals.iter().copied().rfind(|arrival| *arrival <= cut);
    let mut previous = last_before.unwrap_or(cut);
    let mut worst: Option<(Duration, Option<Instant>, Instant)> = None;
    for &arrival in arrivals.iter().filter(|arrival| **arrival > cut) {
        let gap = arrival.saturating_duration_since(previous);
        let from = if previous <= cut {
            last_before
        } else {
            Some(previous)
        };
        if worst.is_none_or(|(longest, _, _)| gap > longest) {
            worst = Some((gap, from, arrival));
        }
        previous = arrival;
    }
    let (gap, last_before, first_after) = worst?;
    let (_, lost) = loss_between(probes, cut.checked_sub(IN_FLIGHT).unwrap_or(cut), end);
    Some(Outage {
        gap,
        last_before,
        first_after,
        lost,
    })
}

/// Requests sent in `[from, to)`, and how many of them were lost.
pub fn loss_between(probes: &[Probe], from: Instant, to: Instant) -> (usize, usize) {
    let window = probes
        .iter()
        .filter(|probe| probe.sent >= from && probe.sent < to);
    let (mut sent, mut lost) = (0, 0);
    for probe in window {
        sent += 1;
        if probe.rtt.is_none() {
            lost += 1;
        }
    }
    (sent, lost)
}

fn lock(probes: &Mutex<Vec<Probe>>) -> MutexGuard<'_, Vec<Probe>> {
    // Pushing a Copy value cannot leave the Vec half-changed, so a poisoned
    // lock still holds a consistent list.
    probes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Requests every 10 ms from `t0`; those sent in `[lost_from, lost_to)` ms are lost.
    fn stream(t0: Instant, n: u32, lost_from: u64, lost_to: u64) -> Vec<Probe> {
        (0..n)
            .map(|i| {
                let at = u64::from(i) * 10;
                Probe {
                    seq: i + 1,
                    sent: t0 + ms(at),
                    rtt: (!(lost_from..lost_to).contains(&at)).then(|| ms(1)),
                }
            })
            .collect()
    }

    #[test]
    fn outage_runs_from_the_last_reply_before_to_the_first_after() {
        let t0 = now();
        // Cut at 1005 ms; requests from 1010 to 1240 ms are lost.
        let probes = stream(t0, 300, 1010, 1250);
        let outage = outage(&probes, t0 + ms(1005), t0 + ms(3000)).unwrap();
        assert_eq!(outage.last_before, Some(t0 + ms(1001)));
        assert_eq!(outage.first_after, t0 + ms(1251));
        assert_eq!(outage.gap, ms(250));
        assert_eq!(outage.lost, 24);
    }

    #[test]
    fn a_hitless_switch_shows_one_interval_and_no_loss() {
        let t0 = now();
        let probes = stream(t0, 300, 0, 0);
        let outage = outage(&probes, t0 + ms(1005), t0 + ms(3000)).unwrap();
        assert_eq!(outage.gap, ms(10));
        assert_eq!(outage.lost, 0);
    }

    #[test]
    fn no_reply_after_the_cut_means_no_recovery() {
        let t0 = now();
        let probes = stream(t0, 300, 1000, 5000);
        assert_eq!(outage(&probes, t0 + ms(1005), t0 + ms(3000)), None);
        // Replies after the window's end do not count either.
        let probes = stream(t0, 400, 1000, 3000);
        assert_eq!(outage(&probes, t0 + ms(1005), t0 + ms(3000)), None);
    }

    #[test]
    fn loss_is_counted_by_send_time() {
        let t0 = now();
        let probes = stream(t0, 100, 200, 300);
        assert_eq!(loss_between(&probes, t0, t0 + ms(1000)), (100, 10));
        assert_eq!(loss_between(&probes, t0 + ms(250), t0 + ms(350)), (10, 5));
    }
}
