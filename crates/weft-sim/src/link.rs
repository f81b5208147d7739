//! Virtual links: what happens to a datagram between two hosts, as data.
//!
//! A link is one direction from one host to another. Its [`LinkConfig`] says
//! how it behaves (latency, jitter, random and bursty loss, duplication, a
//! bandwidth limit with a bounded queue, an MTU, and whether it is up); its
//! runtime state (queue, loss state, counters, random stream) lives beside
//! the config in the simulator. Reordering is not a separate knob: it comes
//! from jitter, since a packet with a large random delay is overtaken by a
//! later one with a small delay.
//!
//! The order in which a datagram meets the impairments is fixed, so one
//! seed gives one outcome: down, MTU, random loss, bursty loss, queue,
//! then the delay (serialisation, latency, jitter) and a possible duplicate.
//! Every link direction draws from its own random stream derived from the
//! simulation seed and the two host indexes, so changing traffic on one
//! link does not change the fate of packets on another.
//!
//! Sizes count the underlay IPv4 and UDP headers ([`UNDERLAY_HEADER`]) on
//! top of the datagram, as a real link would.

use std::collections::VecDeque;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

/// Bytes the underlay adds to each datagram: an IPv4 header (20) and a UDP
/// header (8).
pub const UNDERLAY_HEADER: usize = 28;

/// How one direction of a link behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Whether the link carries anything. A link that goes down also loses
    /// the datagrams in flight on it.
    pub up: bool,
    /// One-way propagation delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` for each datagram; the
    /// source of reordering.
    pub jitter: Duration,
    /// Probability that a datagram is lost, independently of the others.
    pub loss: f64,
    /// Bursty loss (Gilbert–Elliott), applied after `loss`.
    pub burst_loss: Option<GilbertElliott>,
    /// Probability that a datagram is delivered twice (the copy gets its
    /// own jitter).
    pub duplicate: f64,
    /// Bandwidth in bits per second; `None` for unlimited (no queue).
    pub bandwidth: Option<u64>,
    /// Bytes that may wait for the bandwidth limit; more are dropped (tail
    /// drop).
    pub queue_limit: usize,
    /// Largest IP packet the link carries, underlay headers included.
    pub mtu: usize,
}

impl Default for LinkConfig {
    /// A clean link: up, 10 ms one way, no jitter, no loss, unlimited
    /// bandwidth, MTU 1500.
    fn default() -> Self {
        Self {
            up: true,
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_loss: None,
            duplicate: 0.0,
            bandwidth: None,
            queue_limit: 64 * 1024,
            mtu: 1500,
        }
    }
}

impl LinkConfig {
    /// A clean link with `latency` one way.
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// A clean link that loses each datagram with probability `loss`.
    pub fn with_loss(loss: f64) -> Self {
        Self {
            loss,
            ..Self::default()
        }
    }
}

/// The Gilbert–Elliott two-state loss model: a good and a bad state, each
/// with its own loss probability, and a chance to switch state before each
/// datagram. Mean burst length is `1 / to_good` datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from good to bad before a datagram.
    pub to_bad: f64,
    /// Probability of moving from bad to good before a datagram.
    pub to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The link was down when it was sent.
    LinkDown,
    /// Larger than the link's MTU.
    TooBig,
    /// Random (independent) loss.
    RandomLoss,
    /// Bursty loss.
    BurstLoss,
    /// The bandwidth queue was full.
    QueueFull,
    /// The link went down while the datagram was in flight.
    CutInFlight,
    /// No host holds the destination address (any more).
    NoHost,
    /// The destination host is crashed.
    HostDown,
    /// A NAT router let it not in: no mapping with that port sent to its
    /// source lately, or it was for another router's private LAN.
    NatFiltered,
}

/// Counters of one link direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams offered to the link.
    pub sent: u64,
    /// Copies handed to the receiving host.
    pub delivered: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Dropped: link down when sent.
    pub dropped_down: u64,
    /// Dropped: over the MTU.
    pub dropped_too_big: u64,
    /// Dropped: random loss.
    pub dropped_random: u64,
    /// Dropped: bursty loss.
    pub dropped_burst: u64,
    /// Dropped: bandwidth queue full.
    pub dropped_queue: u64,
    /// Dropped: link cut while in flight.
    pub dropped_in_flight: u64,
}

impl LinkStats {
    /// Every datagram the link itself dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_down
            + self.dropped_too_big
            + self.dropped_random
            + self.dropped_burst
            + self.dropped_queue
            + self.dropped_in_flight
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::LinkDown => self.dropped_down += 1,
            DropReason::TooBig => self.dropped_too_big += 1,
            DropReason::RandomLoss => self.dropped_random += 1,
            DropReason::BurstLoss => self.dropped_burst += 1,
            DropReason::QueueFull => self.dropped_queue += 1,
            DropReason::CutInFlight => self.dropped_in_flight += 1,
            // Not the link's doing: counted by the simulator.
            DropReason::NoHost | DropReason::HostDown | DropReason::NatFiltered => {}
        }
    }
}

/// When the copies of a datagram arrive: one time, or two for a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrivals {
    pub(crate) first: Duration,
    pub(crate) duplicate: Option<Duration>,
}

/// One link direction at run time.
#[derive(Debug)]
pub(crate) struct LinkState {
    /// The link's own config; `None` follows the simulator's default.
    pub(crate) config: Option<LinkConfig>,
    pub(crate) stats: LinkStats,
    /// How often the link was cut: a datagram sent before a cut is lost.
    pub(crate) cuts: u64,
    rng: ChaCha20Rng,
    bad_state: bool,
    /// When the transmitter finishes what is already queued.
    busy_until: Duration,
    /// Datagrams still being serialised: (finish time, wire bytes).
    backlog: VecDeque<(Duration, usize)>,
    backlog_bytes: usize,
}

impl LinkState {
    pub(crate) fn new(rng: ChaCha20Rng) -> Self {
        Self {
            config: None,
            stats: LinkStats::default(),
            cuts: 0,
            rng,
            bad_state: false,
            busy_until: Duration::ZERO,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
        }
    }

    /// Offers a datagram of `len` bytes at `now`: when it arrives, or why
    /// it is lost. Counts the outcome.
    pub(crate) fn transmit(
        &mut self,
        now: Duration,
        len: usize,
        config: &LinkConfig,
    ) -> Result<Arrivals, DropReason> {
        self.stats.sent += 1;
        let outcome = self.decide(now, len, config);
        match outcome {
            Ok(arrivals) => {
                if arrivals.duplicate.is_some() {
                    self.stats.duplicated += 1;
                }
            }
            Err(reason) => self.stats.count_drop(reason),
        }
        outcome
    }

    fn decide(
        &mut self,
        now: Duration,
        len: usize,
        config: &LinkConfig,
    ) -> Result<Arrivals, DropReason> {
        let wire = len + UNDERLAY_HEADER;
        if !config.up {
            return Err(DropReason::LinkDown);
        }
        if wire > config.mtu {
            return Err(DropReason::TooBig);
        }
        if config.loss > 0.0 && unit(&mut self.rng) < config.loss {
            return Err(DropReason::RandomLoss);
        }
        if let Some(ge) = config.burst_loss {
            let switch = unit(&mut self.rng);
            if self.bad_state && switch < ge.to_good {
                self.bad_state = false;
            } else if !self.bad_state && switch < ge.to_bad {
                self.bad_state = true;
            }
            let loss = if self.bad_state {
                ge.loss_bad
            } else {
                ge.loss_good
            };
            if unit(&mut self.rng) < loss {
                return Err(DropReason::BurstLoss);
            }
        }
        let departure = match config.bandwidth {
            Some(bits_per_second) if bits_per_second > 0 => {
                self.enqueue(now, wire, bits_per_second, config)?
            }
            _ => now,
        };
        let first = departure + config.latency + self.jitter(config.jitter);
        let duplicate = if config.duplicate > 0.0 && unit(&mut self.rng) < config.duplicate {
            Some(departure + config.latency + self.jitter(config.jitter))
        } else {
            None
        };
        Ok(Arrivals { first, duplicate })
    }

    /// Puts `wire` bytes behind what is queued; returns when the last bit
    /// leaves.
    fn enqueue(
        &mut self,
        now: Duration,
        wire: usize,
        bits_per_second: u64,
        config: &LinkConfig,
    ) -> Result<Duration, DropReason> {
        while let Some(&(finish, bytes)) = self.backlog.front() {
            if finish > now {
                break;
            }
            self.backlog.pop_front();
            self.backlog_bytes -= bytes;
        }
        if self.backlog_bytes + wire > config.queue_limit {
            return Err(DropReason::QueueFull);
        }
        let nanos = (wire as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bits_per_second));
        let serialisation = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let finish = self.busy_until.max(now) + serialisation;
        self.busy_until = finish;
        self.backlog.push_back((finish, wire));
        self.backlog_bytes += wire;
        Ok(finish)
    }

    fn jitter(&mut self, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.next_u64() % nanos.saturating_add(1))
    }
}

/// A uniform draw from `[0, 1)`.
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    fn state() -> LinkState {
        LinkState::new(ChaCha20Rng::seed_from_u64(7))
    }

    #[test]
    fn clean_link_delivers_after_latency() {
        let mut link = state();
        let config = LinkConfig::with_latency(Duration::from_millis(30));
        let arrivals = link.transmit(Duration::from_secs(1), 100, &config).unwrap();
        assert_eq!(
            arrivals,
            Arrivals {
                first: Duration::from_millis(1030),
                duplicate: None
            }
        );
    }

    #[test]
    fn down_link_and_oversized_datagrams_are_dropped() {
        let mut link = state();
        let down = LinkConfig {
            up: false,
            ..LinkConfig::default()
        };
        assert_eq!(
            link.transmit(Duration::ZERO, 10, &down),
            Err(DropReason::LinkDown)
        );
        let small = LinkConfig {
            mtu: 100,
            ..LinkConfig::default()
        };
        assert!(
            link.transmit(Duration::ZERO, 100 - UNDERLAY_HEADER, &small)
                .is_ok()
        );
        assert_eq!(
            link.transmit(Duration::ZERO, 101 - UNDERLAY_HEADER, &small),
            Err(DropReason::TooBig)
        );
        assert_eq!(link.stats.dropped(), 2);
    }

    #[test]
    fn random_loss_is_close_to_its_probability() {
        let mut link = state();
        let config = LinkConfig::with_loss(0.2);
        let lost = (0..10_000)
            .filter(|_| link.transmit(Duration::ZERO, 10, &config).is_err())
            .count();
        assert!((1_800..2_200).contains(&lost), "lost {lost}");
    }

    #[test]
    fn bursty_loss_comes_in_runs() {
        let mut link = state();
        let ge = GilbertElliott {
            to_bad: 0.01,
            to_good: 0.1,
            loss_good: 0.0,
            loss_bad: 1.0,
        };
        let config = LinkConfig {
            burst_loss: Some(ge),
            ..LinkConfig::default()
        };
        let outcomes: Vec<bool> = (0..20_000)
            .map(|_| link.transmit(Duration::ZERO, 10, &config).is_err())
            .collect();
        let lost = outcomes.iter().filter(|&&l| l).count();
        let bursts = outcomes.windows(2).filter(|w| !w[0] && w[1]).count();
        // Stationary loss 0.01 / 0.11 ≈ 9 %; mean burst about 10 datagrams.
        assert!((1_200..2_400).contains(&lost), "lost {lost}");
        let mean_burst = lost as f64 / bursts as f64;
        assert!(mean_burst > 5.0, "mean burst {mean_burst}");
    }

    #[test]
    fn bandwidth_serialises_and_the_queue_overflows() {
        let mut link = state();
        // 1 Mbit/s: 125 bytes per millisecond; a 97-byte datagram is 125 on the wire.
        let config = LinkConfig {
            latency: Duration::ZERO,
            bandwidth: Some(1_000_000),
            queue_limit: 500,
            ..LinkConfig::default()
        };
        let times: Vec<_> = (0..5)
            .map(|_| link.transmit(Duration::ZERO, 97, &config))
            .collect();
        assert_eq!(times[0].unwrap().first, Duration::from_millis(1));
        assert_eq!(times[3].unwrap().first, Duration::from_millis(4));
        assert_eq!(times[4], Err(DropReason::QueueFull));
        // Once the queue drains, there is room again.
        assert_eq!(
            link.transmit(Duration::from_millis(4), 97, &config)
                .unwrap()
                .first,
            Duration::from_millis(5)
        );
    }

    #[test]
    fn jitter_reorders_and_duplication_copies() {
        let mut link = state();
        let config = LinkConfig {
            jitter: Duration::from_millis(20),
            duplicate: 0.5,
            ..LinkConfig::default()
        };
        let arrivals: Vec<_> = (0..100u64)
            .map(|i| {
                link.transmit(Duration::from_millis(i), 10, &config)
                    .unwrap()
            })
            .collect();
        let reordered = arrivals
            .windows(2)
            .filter(|w| w[1].first < w[0].first)
            .count();
        assert!(reordered > 0);
        let duplicated = arrivals.iter().filter(|a| a.duplicate.is_some()).count();
        assert!((30..70).contains(&duplicated), "duplicated {duplicated}");
        assert_eq!(link.stats.duplicated, duplicated as u64);
    }
}
