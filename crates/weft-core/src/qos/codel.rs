//! CoDel, the Controlled Delay active queue management of RFC 8289.
//!
//! CoDel drops at dequeue, judging each packet by its sojourn time (how long
//! it waited). While the sojourn time stays above `target` for a whole
//! `interval`, the queue is a standing queue, not a burst: CoDel enters its
//! dropping state, drops one packet, and schedules the next drop after
//! `interval / sqrt(count)` (the control law, RFC 8289 §3.3), dropping
//! faster until the delay falls below `target`. On re-entering the dropping
//! state soon after leaving it, it resumes near the previous drop rate
//! (RFC 8289 §5.5, the Linux variant). A queue holding at most one
//! full-size packet is never judged standing (RFC 8289 §5.4, "bytes() <=
//! MAXPACKET").
//!
//! This is a transcription of the pseudocode of RFC 8289 §5, over a queue
//! the caller supplies ([`CodelQueue`]); times are passed in and the control
//! law is integer arithmetic, so it is deterministic.

use std::time::{Duration, Instant};

use super::config::Aqm;

/// RFC 8289 MAXPACKET: a full-size packet (bytes).
pub(crate) const MAX_PACKET: usize = 1500;

/// The queue CoDel dequeues from.
pub(crate) trait CodelQueue {
    /// What the queue holds.
    type Item;
    /// Removes the head and returns it with its enqueue time.
    fn pop(&mut self) -> Option<(Self::Item, Instant)>;
    /// Bytes still queued.
    fn bytes(&self) -> usize;
}

/// The per-queue state of CoDel.
#[derive(Debug, Clone, Default)]
pub(crate) struct Codel {
    /// When the sojourn time will have been above target for an interval
    /// (RFC `first_above_time`; `None` for 0).
    first_above: Option<Instant>,
    /// Time of the next drop while dropping (RFC `drop_next`).
    drop_next: Option<Instant>,
    /// Drops in the current dropping state (RFC `count`).
    count: u32,
    /// `count` when the last dropping state was entered (RFC `lastcount`).
    last_count: u32,
    /// In the dropping state (RFC `dropping`).
    dropping: bool,
}

impl Codel {
    /// RFC 8289 `dequeue()`: the next packet to send, handing the packets
    /// it drops to `drop`.
    pub(crate) fn dequeue<Q: CodelQueue>(
        &mut self,
        now: Instant,
        aqm: &Aqm,
        queue: &mut Q,
        mut drop: impl FnMut(Q::Item),
    ) -> Option<Q::Item> {
        let (mut item, mut ok_to_drop) = self.do_dequeue(now, aqm, queue);
        if self.dropping {
            if !ok_to_drop {
                // Sojourn time below target: leave the dropping state.
                self.dropping = false;
            }
            // A large backlog may call for several drops now.
            while self.dropping && self.drop_next.is_none_or(|next| now >= next) {
                if let Some(dropped) = item.take() {
                    drop(dropped);
                }
                self.count = self.count.saturating_add(1);
                (item, ok_to_drop) = self.do_dequeue(now, aqm, queue);
                if ok_to_drop {
                    let next = self.drop_next.unwrap_or(now);
                    self.drop_next = Some(control_law(next, aqm.interval, self.count));
                } else {
                    self.dropping = false;
                }
            }
        } else if ok_to_drop {
            // The sojourn time has been above target for an interval.
            if let Some(dropped) = item.take() {
                drop(dropped);
            }
            (item, _) = self.do_dequeue(now, aqm, queue);
            self.dropping = true;
            // Resume near the last drop rate if the last dropping state
            // ended recently (Linux variant, RFC 8289 §5.5).
            let delta = self.count.saturating_sub(self.last_count);
            self.count = 1;
            let recent = self.drop_next.is_some_and(|next| {
                now.saturating_duration_since(next) < aqm.interval.saturating_mul(16)
            });
            if delta > 1 && recent {
                self.count = delta;
            }
            self.drop_next = Some(control_law(now, aqm.interval, self.count));
            self.last_count = self.count;
        }
        item
    }

    /// Whether CoDel is in its dropping state.
    pub(crate) fn is_dropping(&self) -> bool {
        self.dropping
    }

    /// RFC 8289 `dodequeue()`: the head, and whether it may be dropped.
    fn do_dequeue<Q: CodelQueue>(
        &mut self,
        now: Instant,
        aqm: &Aqm,
        queue: &mut Q,
    ) -> (Option<Q::Item>, bool) {
        let Some((item, enqueued)) = queue.pop() else {
            // An empty queue cannot be above target.
            self.first_above = None;
            return (None, false);
        };
        let sojourn = now.saturating_duration_since(enqueued);
        if sojourn < aqm.target || queue.bytes() <= MAX_PACKET {
            // Went below: stay below for at least an interval.
            self.first_above = None;
            return (Some(item), false);
        }
        match self.first_above {
            None => {
                self.first_above = Some(now.checked_add(aqm.interval).unwrap_or(now));
                (Some(item), false)
            }
            Some(first_above) => (Some(item), now >= first_above),
        }
    }
}

/// `t + interval / sqrt(count)`, in integers: `sqrt(count << 32)` is
/// `sqrt(count) << 16` to 16 fractional bits.
fn control_law(t: Instant, interval: Duration, count: u32) -> Instant {
    let root = (u64::from(count.max(1)) << 32).isqrt();
    let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    let step = u128::from(interval_ns) * (1 << 16) / u128::from(root);
    let step = Duration::from_nanos(u64::try_from(step).unwrap_or(u64::MAX));
    t.checked_add(step).unwrap_or(t)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use std::collections::VecDeque;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A FIFO of (id, enqueue time) packets of 1000 bytes each.
    #[derive(Default)]
    struct Fifo(VecDeque<(u32, Instant)>);

    impl CodelQueue for Fifo {
        type Item = u32;
        fn pop(&mut self) -> Option<(u32, Instant)> {
            self.0.pop_front()
        }
        fn bytes(&self) -> usize {
            self.0.len() * 1000
        }
    }

    #[test]
    fn the_control_law_spaces_drops_by_interval_over_root_count() {
        let t0 = Instant::now();
        let interval = 100 * MS;
        assert_eq!(control_law(t0, interval, 1), t0 + interval);
        assert_eq!(control_law(t0, interval, 4), t0 + 50 * MS);
        assert_eq!(control_law(t0, interval, 100), t0 + 10 * MS);
        let two = control_law(t0, interval, 2) - t0;
        let exact = 100.0 / 2f64.sqrt();
        assert!(
            (two.as_secs_f64() * 1000.0 - exact).abs() < 0.001,
            "{two:?}"
        );
        assert_eq!(control_law(t0, interval, 0), t0 + interval);
    }

    /// Feeds one packet per `arrival`, dequeues one per `service` for
    /// `duration`; returns the dropped ids, the largest sojourn time of the
    /// last second, and the largest overall.
    fn run(
        arrival: Duration,
        service: Duration,
        duration: Duration,
    ) -> (Vec<u32>, Duration, Duration) {
        let t0 = Instant::now();
        let aqm = Aqm::default();
        let mut codel = Codel::default();
        let mut fifo = Fifo::default();
        let mut dropped = Vec::new();
        let mut worst_late = Duration::ZERO;
        let mut worst = Duration::ZERO;
        let mut next_arrival = t0;
        let mut next_service = t0;
        let mut id = 0;
        let end = t0 + duration;
        while next_arrival.min(next_service) < end {
            if next_arrival <= next_service {
                fifo.0.push_back((id, next_arrival));
                id += 1;
                next_arrival += arrival;
            } else {
                let now = next_service;
                let sent = codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d));
                if let Some(sent) = sent {
                    let sojourn = now - (t0 + arrival * sent);
                    worst = worst.max(sojourn);
                    if now + Duration::from_secs(1) >= end {
                        worst_late = worst_late.max(sojourn);
                    }
                }
                next_service += service;
            }
        }
        (dropped, worst_late, worst)
    }

    #[test]
    fn a_queue_that_keeps_up_is_never_dropped() {
        let (dropped, late, _) = run(2 * MS, MS, Duration::from_secs(5));
        assert!(dropped.is_empty());
        assert!(late <= MS);
    }

    #[test]
    fn a_short_burst_is_absorbed() {
        // 40 packets at once, served one per ms: the delay is above target
        // for 35 ms, less than an interval, and the queue then empties.
        let t0 = Instant::now();
        let aqm = Aqm::default();
        let mut codel = Codel::default();
        let mut fifo = Fifo::default();
        for i in 0..40u32 {
            fifo.0.push_back((i, t0));
        }
        let mut dropped = 0;
        for i in 0..60u32 {
            let now = t0 + MS * i;
            let _ = codel.dequeue(now, &aqm, &mut fifo, |_| dropped += 1);
        }
        assert_eq!(dropped, 0, "sojourn above target for less than an interval");
    }

    #[test]
    fn a_standing_queue_is_dropped_down_to_the_target() {
        // 20 % more arrivals than departures, unresponsive: CoDel's drop
        // rate rises until it removes the excess, then the delay falls.
        let (dropped, late, worst) = run(Duration::from_micros(833), MS, Duration::from_secs(60));
        // 72,030 arrivals, 60,000 departures: CoDel removes the excess
        // (less the small queue it leaves).
        let excess = 12_030;
        assert!(dropped.len() <= excess && dropped.len() * 100 >= excess * 98);
        // Against an unresponsive source the delay oscillates, but it stays
        // far below its peak (a tail-drop queue would only grow).
        assert!(late < 150 * MS, "sojourn {late:?}");
        assert!(late * 2 < worst, "no control: {late:?} of {worst:?}");
    }

    #[test]
    fn dropping_starts_after_an_interval_above_target() {
        let t0 = Instant::now();
        let aqm = Aqm::default();
        let mut codel = Codel::default();
        let mut fifo = Fifo::default();
        for i in 0..1000 {
            fifo.0.push_back((i, t0));
        }
        let mut dropped = Vec::new();
        // 10 ms in: above target; first_above set to 110 ms.
        let now = t0 + 10 * MS;
        assert_eq!(
            codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d)),
            Some(0)
        );
        assert!(!codel.is_dropping());
        // Before 110 ms: no drop yet.
        let now = t0 + 109 * MS;
        assert_eq!(
            codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d)),
            Some(1)
        );
        assert!(dropped.is_empty());
        // At 110 ms: drop one, send the next, enter dropping.
        let now = t0 + 110 * MS;
        assert_eq!(
            codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d)),
            Some(3)
        );
        assert_eq!(dropped, [2]);
        assert!(codel.is_dropping());
        // Next drop 100 ms later (count 1), then 100/sqrt(2) after that.
        let now = t0 + 209 * MS;
        assert_eq!(
            codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d)),
            Some(4)
        );
        let now = t0 + 210 * MS;
        assert_eq!(
            codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d)),
            Some(6)
        );
        assert_eq!(dropped, [2, 5]);
        let now = t0 + 281 * MS; // 210 + 70.7
        assert_eq!(
            codel.dequeue(now, &aqm, &mut fifo, |d| dropped.push(d)),
            Some(8)
        );
        assert_eq!(dropped, [2, 5, 7]);
    }

    #[test]
    fn a_late_dequeue_catches_up_on_drops_and_leaves_on_low_delay() {
        let t0 = Instant::now();
        let aqm = Aqm::default();
        let mut codel = Codel::default();
        let mut fifo = Fifo::default();
        for i in 0..5 {
            fifo.0.push_back((i, t0));
        }
        let mut dropped = Vec::new();
        let _ = codel.dequeue(t0 + 10 * MS, &aqm, &mut fifo, |d| dropped.push(d));
        let _ = codel.dequeue(t0 + 110 * MS, &aqm, &mut fifo, |d| dropped.push(d));
        assert!(codel.is_dropping());
        assert_eq!(dropped, [1]);
        // Fresh packets behind the old ones.
        let late = t0 + 1000 * MS;
        for i in 5..10 {
            fifo.0.push_back((i, late));
        }
        // Far past drop_next: drop old packets until one is fresh enough.
        let sent = codel.dequeue(late, &aqm, &mut fifo, |d| dropped.push(d));
        assert_eq!(sent, Some(5));
        assert_eq!(dropped, [1, 3, 4]);
        assert!(!codel.is_dropping());
    }

    #[test]
    fn an_almost_empty_queue_is_not_dropped() {
        let t0 = Instant::now();
        let aqm = Aqm::default();
        let mut codel = Codel::default();
        let mut fifo = Fifo::default();
        let mut dropped = 0;
        // Two old packets: after the first dequeue one (≤ MAXPACKET) is
        // left, so the queue is not judged standing.
        for round in 0..50u32 {
            fifo.0.push_back((2 * round, t0));
            fifo.0.push_back((2 * round + 1, t0));
            let now = t0 + Duration::from_secs(1) + MS * round;
            let _ = codel.dequeue(now, &aqm, &mut fifo, |_| dropped += 1);
            let _ = codel.dequeue(now, &aqm, &mut fifo, |_| dropped += 1);
        }
        assert_eq!(dropped, 0);
        assert_eq!(codel.dequeue(t0, &aqm, &mut fifo, |_| dropped += 1), None);
    }
}
