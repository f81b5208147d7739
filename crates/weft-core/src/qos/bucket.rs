//! A token bucket: the shaper behind the uplink, class and peer rates.
//!
//! Tokens accrue at `rate` up to a depth of `burst` worth of time at that
//! rate. A packet may leave while the bucket is not in debt (tokens ≥ 0),
//! and its whole length is then taken, so the bucket may go into debt by up
//! to one packet. This never stalls a packet larger than the depth, and it
//! keeps the long-run rate exact: over any interval of length `T` a bucket
//! lets through at most `rate × T + depth + one packet`.
//!
//! Arithmetic is in integers (a token is a nanobit: bit/s × ns needs no
//! division), so results are exact and deterministic.

use std::time::{Duration, Instant};

/// Token units per bit (a token is a nanobit).
const UNITS_PER_BIT: i128 = 1_000_000_000;
const UNITS_PER_BYTE: i128 = 8 * UNITS_PER_BIT;

/// A token bucket in virtual time (the caller passes `now`).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_bps: u64,
    /// Largest token balance, in nanobits.
    depth: i128,
    /// Balance at `last`, in nanobits; negative while in debt.
    tokens: i128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate_bps` bits per second holding `burst` worth of
    /// tokens. A rate of 0 is taken as 1 bit/s.
    pub fn new(now: Instant, rate_bps: u64, burst: Duration) -> Self {
        let rate_bps = rate_bps.max(1);
        let depth = depth_of(rate_bps, burst);
        Self {
            rate_bps,
            depth,
            tokens: depth,
            last: now,
        }
    }

    /// The rate in bits per second.
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Changes rate and depth from `now` on, keeping the balance (capped at
    /// the new depth).
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64, burst: Duration) {
        self.refill(now);
        self.rate_bps = rate_bps.max(1);
        self.depth = depth_of(self.rate_bps, burst);
        self.tokens = self.tokens.min(self.depth);
    }

    /// Whether a packet may leave at `now` (the bucket is not in debt).
    pub fn is_ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 0
    }

    /// Takes `bytes` worth of tokens at `now` (possibly into debt).
    pub fn consume(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        let cost = i128::try_from(bytes)
            .unwrap_or(i128::MAX)
            .saturating_mul(UNITS_PER_BYTE);
        self.tokens = self.tokens.saturating_sub(cost);
    }

    /// The earliest time, not before `now`, at which a packet may leave.
    pub fn ready_at(&self, now: Instant) -> Instant {
        if self.tokens >= 0 {
            return now;
        }
        let wait = ceil_div(self.tokens.saturating_neg(), i128::from(self.rate_bps));
        let ready = self.last.checked_add(nanos(wait)).unwrap_or(self.last);
        ready.max(now)
    }

    /// The balance at `now` in whole bytes (negative while in debt).
    pub fn balance_bytes(&self, now: Instant) -> i64 {
        let tokens = self.tokens_at(now) / UNITS_PER_BYTE;
        i64::try_from(tokens).unwrap_or(if tokens < 0 { i64::MIN } else { i64::MAX })
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            self.tokens = self.tokens_at(now);
            self.last = now;
        }
    }

    /// The balance at `now`, without overflow: only the time needed to fill
    /// the bucket is ever multiplied by the rate.
    fn tokens_at(&self, now: Instant) -> i128 {
        let elapsed = i128::try_from(now.saturating_duration_since(self.last).as_nanos())
            .unwrap_or(i128::MAX);
        let missing = self.depth.saturating_sub(self.tokens);
        if missing <= 0 {
            return self.tokens;
        }
        let rate = i128::from(self.rate_bps);
        if elapsed >= ceil_div(missing, rate) {
            self.depth
        } else {
            self.tokens + elapsed * rate
        }
    }
}

fn depth_of(rate_bps: u64, burst: Duration) -> i128 {
    let burst_ns = i128::try_from(burst.as_nanos()).unwrap_or(i128::MAX);
    i128::from(rate_bps).saturating_mul(burst_ns)
}

fn ceil_div(a: i128, b: i128) -> i128 {
    a.saturating_add(b - 1) / b
}

fn nanos(n: i128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_bucket_sends_its_burst_then_paces_at_the_rate() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 byte/µs; 10 ms of burst = 10,000 bytes.
        let mut bucket = TokenBucket::new(t0, 8_000_000, 10 * MS);
        let mut sent = 0;
        while bucket.is_ready(t0) {
            bucket.consume(t0, 1000);
            sent += 1;
        }
        assert_eq!(sent, 11, "10,000 bytes of tokens, then one packet of debt");
        assert_eq!(bucket.balance_bytes(t0), -1000);
        assert_eq!(bucket.ready_at(t0), t0 + MS);
        assert!(!bucket.is_ready(t0 + MS - Duration::from_nanos(1)));
        assert!(bucket.is_ready(t0 + MS));
    }

    #[test]
    fn tokens_stop_at_the_depth() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(t0, 8_000_000, 10 * MS);
        bucket.consume(t0, 10_000);
        assert_eq!(bucket.balance_bytes(t0 + 5 * MS), 5_000);
        assert_eq!(bucket.balance_bytes(t0 + 3600 * 1000 * MS), 10_000);
        assert!(bucket.is_ready(t0 + 100 * MS));
        assert_eq!(bucket.ready_at(t0 + 100 * MS), t0 + 100 * MS);
    }

    #[test]
    fn a_packet_larger_than_the_depth_still_goes() {
        let t0 = Instant::now();
        // 1 Mbit/s with 1 ms of burst holds 125 bytes.
        let mut bucket = TokenBucket::new(t0, 1_000_000, MS);
        assert!(bucket.is_ready(t0));
        bucket.consume(t0, 1500);
        // 1375 bytes of debt at 125 bytes/ms: 11 ms.
        assert_eq!(bucket.ready_at(t0), t0 + 11 * MS);
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(t0, 8_000_000, MS);
        bucket.consume(t0, 3000);
        let before = t0 - Duration::from_secs(1);
        assert!(!bucket.is_ready(before));
        assert_eq!(bucket.ready_at(before), bucket.ready_at(t0));
        assert_eq!(bucket.balance_bytes(before), -2000);
    }

    #[test]
    fn rate_changes_apply_from_now() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(t0, 8_000_000, MS);
        bucket.consume(t0, 2000);
        bucket.set_rate(t0, 16_000_000, MS);
        assert_eq!(bucket.rate_bps(), 16_000_000);
        // 1000 bytes of debt at 2 bytes/µs.
        assert_eq!(bucket.ready_at(t0), t0 + Duration::from_micros(500));
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let t0 = Instant::now();
        let mut fast = TokenBucket::new(t0, u64::MAX, Duration::from_secs(1));
        fast.consume(t0, usize::MAX);
        let _ = fast.ready_at(t0);
        assert!(!fast.is_ready(t0));
        let mut slow = TokenBucket::new(t0, 0, Duration::ZERO);
        assert_eq!(slow.rate_bps(), 1);
        assert!(slow.is_ready(t0));
        slow.consume(t0, 1);
        assert_eq!(slow.ready_at(t0), t0 + Duration::from_secs(8));
    }

    proptest! {
        /// Over any pattern of attempts, a bucket lets through no more than
        /// rate × T + depth + one packet, and a sender that tries whenever
        /// the bucket says it may gets at least rate × T − one packet.
        #[test]
        fn the_long_run_rate_is_exact(
            rate in 1_000u64..100_000_000,
            burst_us in 1_000u64..20_000,
            sizes in proptest::collection::vec(40usize..1500, 1..50),
            steps in 200usize..2000,
        ) {
            let t0 = Instant::now();
            let burst = Duration::from_micros(burst_us);
            let mut bucket = TokenBucket::new(t0, rate, burst);
            let mut now = t0;
            let mut sent: u128 = 0;
            for i in 0..steps {
                let size = sizes[i % sizes.len()];
                if bucket.is_ready(now) {
                    bucket.consume(now, size);
                    sent += size as u128 * 8;
                }
                now = bucket.ready_at(now);
            }
            let elapsed = now.duration_since(t0).as_nanos();
            let allowed = u128::from(rate) * elapsed / 1_000_000_000
                + u128::from(rate) * burst.as_nanos() / 1_000_000_000
                + 1500 * 8;
            prop_assert!(sent <= allowed, "sent {} allowed {}", sent, allowed);
            let floor = (u128::from(rate) * elapsed / 1_000_000_000).saturating_sub(1500 * 8);
            prop_assert!(sent >= floor, "sent {} floor {}", sent, floor);
        }
    }
}
