//! Warnings that this node's own certificate is about to expire.
//!
//! A node whose certificate expires can no longer complete handshakes:
//! every peer refuses it (§9 of PROTOCOL.md). So that an operator renews it
//! in time (`weft ca renew`), the node reports
//! [`Event::CertificateExpiring`] when less than [`warning_window`] of the
//! certificate's life is left, again every [`REPEAT`] while that lasts, and
//! once more at expiry (with nothing left). The deadlines are wall-clock
//! instants mapped onto the node's monotonic clock at start, like every
//! other validity check of the core.

use std::time::{Duration, Instant};

use super::Event;

/// Longest warning ahead of expiry.
pub const MAX_WARNING: Duration = Duration::from_secs(7 * 86_400);
/// How often the warning repeats.
pub(super) const REPEAT: Duration = Duration::from_secs(86_400);

/// When to warn before a certificate valid from `not_before` to `not_after`
/// (unix seconds) expires: a quarter of its lifetime, at most
/// [`MAX_WARNING`] (a 1-year certificate warns 7 days ahead, a 1-day one 6
/// hours ahead).
pub fn warning_window(not_before: u64, not_after: u64) -> Duration {
    let lifetime = Duration::from_secs(not_after.saturating_sub(not_before));
    (lifetime / 4).min(MAX_WARNING)
}

/// The expiry warnings of one certificate.
#[derive(Debug, Clone)]
pub(super) struct ExpiryWarning {
    not_after: u64,
    /// When the certificate expires, on the node's clock.
    expires: Instant,
    /// The next warning (`None`: expired and said so).
    next: Option<Instant>,
}

impl ExpiryWarning {
    /// Warnings for a certificate valid from `not_before` to `not_after`,
    /// for a node whose wall clock reads `unix_now` at `now`.
    pub(super) fn new(now: Instant, unix_now: u64, not_before: u64, not_after: u64) -> Self {
        let left = Duration::from_secs(not_after.saturating_sub(unix_now));
        let window = warning_window(not_before, not_after);
        Self {
            not_after,
            expires: now + left,
            next: Some(now + left.saturating_sub(window)),
        }
    }

    /// When the next warning is due.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// The warning due at `now`, if any; sets the next one.
    pub(super) fn on_timeout(&mut self, now: Instant) -> Option<Event> {
        let due = self.next.filter(|at| *at <= now)?;
        let remaining = self.expires.saturating_duration_since(now);
        self.next = if remaining.is_zero() {
            None
        } else {
            Some((due + REPEAT).max(now).min(self.expires))
        };
        Some(Event::CertificateExpiring {
            not_after: self.not_after,
            remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn the_window_is_a_quarter_of_the_lifetime_at_most_a_week() {
        assert_eq!(warning_window(0, 365 * DAY), MAX_WARNING);
        assert_eq!(warning_window(0, DAY), Duration::from_secs(6 * 3600));
        assert_eq!(warning_window(10, 5), Duration::ZERO);
    }

    #[test]
    fn warnings_start_in_the_window_repeat_daily_and_end_at_expiry() {
        #[allow(clippy::disallowed_methods)] // one base instant; the rest are offsets
        let t0 = Instant::now();
        let unix = 1_000 * DAY;
        // 10 days left of a year: the warning starts in 3 days.
        let mut warning = ExpiryWarning::new(t0, unix, unix - 355 * DAY, unix + 10 * DAY);
        let start = t0 + Duration::from_secs(3 * DAY);
        assert_eq!(warning.deadline(), Some(start));
        assert_eq!(warning.on_timeout(start - Duration::from_secs(1)), None);
        let first = warning.on_timeout(start).unwrap();
        assert_eq!(
            first,
            Event::CertificateExpiring {
                not_after: unix + 10 * DAY,
                remaining: Duration::from_secs(7 * DAY)
            }
        );
        assert_eq!(warning.deadline(), Some(start + REPEAT));
        let mut at = start;
        let mut count = 1;
        while let Some(next) = warning.deadline() {
            at = next;
            let Some(Event::CertificateExpiring { remaining, .. }) = warning.on_timeout(at) else {
                panic!("a warning was due at {at:?}");
            };
            count += 1;
            if remaining.is_zero() {
                break;
            }
        }
        assert_eq!(at, t0 + Duration::from_secs(10 * DAY), "the last at expiry");
        assert_eq!(count, 8, "days 3..=9 and the expiry");
        assert_eq!(warning.deadline(), None);
    }

    #[test]
    fn an_expiring_certificate_warns_at_once() {
        #[allow(clippy::disallowed_methods)] // one base instant
        let t0 = Instant::now();
        let mut warning = ExpiryWarning::new(t0, 1_000, 0, 1_100);
        assert_eq!(warning.deadline(), Some(t0));
        assert!(matches!(
            warning.on_timeout(t0),
            Some(Event::CertificateExpiring { remaining, .. }) if remaining == Duration::from_secs(100)
        ));
    }
}
