//! The minimum RTT over a sliding window: the path's own delay without the
//! queueing that traffic on it adds.
//!
//! Routes compare paths by RTT. A probe of a link that carries a saturating
//! flow waits behind that flow's packets in the sender's queues, so the
//! smoothed RTT of a busy link rises by the queue's delay, and a relay
//! (whose probes do not wait there) looks faster: traffic moved to the relay
//! and back again every few seconds. The smallest sample of the last
//! [`WINDOW`] is the delay of the path itself as long as one probe in the
//! window found the queues short (BBR's min-RTT filter rests on the same
//! observation). A path that really gets slower shows so once its faster
//! samples leave the window; a path that fails is seen by loss and by the
//! link's up/down state, which do not wait for it.
//!
//! A monotonic deque: samples kept in increasing order of value, each one
//! newer than the one before, so the front is the window's minimum. At
//! most [`MAX_SAMPLES`] are kept (a full deque drops its oldest).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the minimum looks.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Samples kept at most (probes arrive at most every 40 ms: 250 in a
/// window, and the deque holds only increasing ones).
const MAX_SAMPLES: usize = 256;

#[derive(Debug, Clone, Default)]
pub(crate) struct MinRtt {
    samples: VecDeque<(Instant, Duration)>,
}

impl MinRtt {
    /// Adds a sample taken at `now`.
    pub(crate) fn sample(&mut self, now: Instant, rtt: Duration) {
        while self.samples.back().is_some_and(|&(_, v)| v >= rtt) {
            self.samples.pop_back();
        }
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, rtt));
        while self
            .samples
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The minimum of the samples of the last [`WINDOW`] before `now`, or
    /// the newest sample if none is that recent (a link probed rarely
    /// keeps its last known delay).
    pub(crate) fn peek(&self, now: Instant) -> Option<Duration> {
        self.samples
            .iter()
            .find(|&&(at, _)| now.saturating_duration_since(at) <= WINDOW)
            .or(self.samples.back())
            .map(|&(_, v)| v)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_minimum_ignores_queueing_spikes_within_the_window() {
        let start = Instant::now();
        let mut min = MinRtt::default();
        for (i, rtt) in [5, 40, 38, 6, 45, 50, 7].into_iter().enumerate() {
            min.sample(start + ms(100 * i as u64), ms(rtt));
        }
        assert_eq!(min.peek(start + ms(700)), Some(ms(5)));
        assert_eq!(min.peek(start + ms(700)), Some(ms(5)));
    }

    #[test]
    fn a_slower_path_shows_once_its_fast_samples_leave_the_window() {
        let start = Instant::now();
        let mut min = MinRtt::default();
        min.sample(start, ms(5));
        min.sample(start + ms(500), ms(30));
        assert_eq!(min.peek(start + ms(600)), Some(ms(5)));
        let later = start + WINDOW + ms(1);
        assert_eq!(min.peek(later), Some(ms(30)));
        assert_eq!(min.peek(later), Some(ms(30)));
    }

    #[test]
    fn a_link_probed_rarely_keeps_its_last_sample() {
        let start = Instant::now();
        let mut min = MinRtt::default();
        min.sample(start, ms(9));
        assert_eq!(min.peek(start + WINDOW * 5), Some(ms(9)));
        assert_eq!(MinRtt::default().peek(start), None);
    }

    #[test]
    fn the_deque_is_bounded() {
        let start = Instant::now();
        let mut min = MinRtt::default();
        for i in 0..10_000u64 {
            // Rising samples: every one is kept until the bound.
            min.sample(start + Duration::from_micros(i), Duration::from_micros(i));
        }
        assert!(min.samples.len() <= MAX_SAMPLES);
    }
}
