//! QoS statistics: per-class and per-peer snapshots of a scheduler, for
//! `weft qos` and the metrics endpoint, and the small estimators behind
//! them (a windowed rate meter and a sojourn-time average).
//!
//! Counters only grow (Prometheus counters); depths, rates and delays are
//! gauges at the time of the snapshot. Taking a snapshot allocates; keeping
//! the estimators does not.

use std::time::{Duration, Instant};

use super::config::Priority;

/// Length of a rate meter's window.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// One class of one scheduler at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    /// Class name.
    pub name: String,
    /// How the class is served.
    pub priority: Priority,
    /// DRR weight (unused for realtime classes).
    pub weight: u32,
    /// Rate cap in force, bits per second.
    pub rate_limit_bps: Option<u64>,
    /// Packets accepted into the queue.
    pub enqueued_packets: u64,
    /// Bytes accepted into the queue.
    pub enqueued_bytes: u64,
    /// Packets handed to the driver.
    pub sent_packets: u64,
    /// Bytes handed to the driver.
    pub sent_bytes: u64,
    /// Packets refused because the queue was full.
    pub dropped_full_packets: u64,
    /// Bytes refused because the queue was full.
    pub dropped_full_bytes: u64,
    /// Packets dropped by the AQM (CoDel).
    pub dropped_aqm_packets: u64,
    /// Bytes dropped by the AQM.
    pub dropped_aqm_bytes: u64,
    /// Packets queued now.
    pub depth_packets: u64,
    /// Bytes queued now.
    pub depth_bytes: u64,
    /// Sojourn time of the last packet sent.
    pub sojourn_last: Duration,
    /// Moving average (weight 1/8 per packet) of the sojourn time.
    pub sojourn_avg: Duration,
    /// Sent rate over the last complete window of [`RATE_WINDOW`], bits per
    /// second.
    pub rate_bps: u64,
    /// Whether the AQM is dropping now (a standing queue).
    pub aqm_dropping: bool,
}

impl ClassStats {
    /// Packets dropped for any reason.
    pub fn dropped_packets(&self) -> u64 {
        self.dropped_full_packets + self.dropped_aqm_packets
    }

    /// Every number as (metric name, value), durations in microseconds:
    /// counters end in `_total`, the rest are gauges. The names are stable
    /// for exporters.
    pub fn metrics(&self) -> [(&'static str, u64); 14] {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        [
            ("enqueued_packets_total", self.enqueued_packets),
            ("enqueued_bytes_total", self.enqueued_bytes),
            ("sent_packets_total", self.sent_packets),
            ("sent_bytes_total", self.sent_bytes),
            ("dropped_full_packets_total", self.dropped_full_packets),
            ("dropped_full_bytes_total", self.dropped_full_bytes),
            ("dropped_aqm_packets_total", self.dropped_aqm_packets),
            ("dropped_aqm_bytes_total", self.dropped_aqm_bytes),
            ("depth_packets", self.depth_packets),
            ("depth_bytes", self.depth_bytes),
            ("sojourn_last_us", us(self.sojourn_last)),
            ("sojourn_avg_us", us(self.sojourn_avg)),
            ("rate_bps", self.rate_bps),
            ("rate_limit_bps", self.rate_limit_bps.unwrap_or(0)),
        ]
    }
}

/// Traffic to one rate-limited peer, over all classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// Peer name (as in [`super::QosConfig::peer_rates`]).
    pub name: String,
    /// Its rate limit, bits per second.
    pub rate_limit_bps: u64,
    /// Packets handed to the driver.
    pub sent_packets: u64,
    /// Bytes handed to the driver.
    pub sent_bytes: u64,
    /// Packets dropped (queue full or AQM).
    pub dropped_packets: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// Packets queued now.
    pub depth_packets: u64,
    /// Bytes queued now.
    pub depth_bytes: u64,
    /// Sent rate over the last complete window, bits per second.
    pub rate_bps: u64,
}

/// A snapshot of one scheduler (one egress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosStats {
    /// The egress rate in force, bits per second.
    pub uplink_bps: Option<u64>,
    /// Sent rate of the whole egress over the last complete window.
    pub rate_bps: u64,
    /// Packets queued in all classes.
    pub depth_packets: u64,
    /// Bytes queued in all classes.
    pub depth_bytes: u64,
    /// Items refused for naming a class or peer slot the scheduler does not
    /// have (a caller bug).
    pub dropped_unknown: u64,
    /// Per class, in configuration order.
    pub classes: Vec<ClassStats>,
    /// Per rate-limited peer, in configuration order.
    pub peers: Vec<PeerStats>,
}

/// Bytes sent per fixed window, updated as packets go; no timers.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    last_rate_bps: u64,
}

impl RateMeter {
    /// Counts `bytes` sent at `now`.
    pub(crate) fn record(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            self.last_rate_bps = bits_per_second(self.bytes, elapsed);
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    /// The rate of the last complete window; if the current one is overdue
    /// (nothing sent to close it), its average so far, which decays to 0
    /// while idle.
    pub(crate) fn rate_bps(&self, now: Instant) -> u64 {
        let Some(start) = self.window_start else {
            return 0;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            bits_per_second(self.bytes, elapsed)
        } else {
            self.last_rate_bps
        }
    }
}

fn bits_per_second(bytes: u64, elapsed: Duration) -> u64 {
    let ns = elapsed.as_nanos().max(1);
    u64::try_from(u128::from(bytes) * 8 * 1_000_000_000 / ns).unwrap_or(u64::MAX)
}

/// Last and average sojourn time of sent packets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sojourn {
    pub(crate) last: Duration,
    /// Average in nanoseconds (EWMA, weight 1/8).
    avg_ns: u64,
}

impl Sojourn {
    pub(crate) fn record(&mut self, sojourn: Duration) {
        let ns = u64::try_from(sojourn.as_nanos()).unwrap_or(u64::MAX);
        self.last = sojourn;
        self.avg_ns = if self.avg_ns == 0 {
            ns
        } else {
            self.avg_ns - self.avg_ns / 8 + ns / 8
        };
    }

    pub(crate) fn avg(&self) -> Duration {
        Duration::from_nanos(self.avg_ns)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_rate_meter_reports_complete_windows_and_decays_when_idle() {
        let t0 = Instant::now();
        let mut meter = RateMeter::default();
        assert_eq!(meter.rate_bps(t0), 0);
        for i in 0..100u32 {
            meter.record(t0 + 10 * MS * i, 1250);
        }
        // 100 × 1250 bytes in 990 ms: no complete window yet.
        assert_eq!(meter.rate_bps(t0 + 990 * MS), 0);
        meter.record(t0 + 1000 * MS, 1250);
        assert_eq!(meter.rate_bps(t0 + 1000 * MS), 1_000_000);
        // Idle: the open window (one packet) averages over its age.
        assert_eq!(meter.rate_bps(t0 + 2000 * MS), 10_000);
        assert_eq!(meter.rate_bps(t0 + 11_000 * MS), 1_000);
    }

    #[test]
    fn the_sojourn_average_moves_an_eighth_per_packet() {
        let mut s = Sojourn::default();
        s.record(8 * MS);
        assert_eq!(s.avg(), 8 * MS);
        s.record(16 * MS);
        assert_eq!(s.avg(), 9 * MS);
        assert_eq!(s.last, 16 * MS);
        for _ in 0..200 {
            s.record(MS);
        }
        assert!(s.avg() < MS + Duration::from_micros(10));
    }

    #[test]
    fn metrics_name_every_number() {
        let stats = ClassStats {
            name: "bulk".into(),
            priority: Priority::Normal,
            weight: 2,
            rate_limit_bps: Some(5),
            enqueued_packets: 1,
            enqueued_bytes: 2,
            sent_packets: 3,
            sent_bytes: 4,
            dropped_full_packets: 5,
            dropped_full_bytes: 6,
            dropped_aqm_packets: 7,
            dropped_aqm_bytes: 8,
            depth_packets: 9,
            depth_bytes: 10,
            sojourn_last: MS,
            sojourn_avg: 2 * MS,
            rate_bps: 11,
            aqm_dropping: false,
        };
        assert_eq!(stats.dropped_packets(), 12);
        let metrics = stats.metrics();
        assert_eq!(metrics[10], ("sojourn_last_us", 1000));
        assert_eq!(metrics[13], ("rate_limit_bps", 5));
        let mut names: Vec<_> = metrics.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), metrics.len());
    }
}
