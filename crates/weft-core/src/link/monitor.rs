//! Health of one direct link, from probes: up or down, RTT and loss.
//!
//! The node sends a probe (a ping frame, straight to the neighbour's
//! endpoint, never through a relay) whenever [`LinkMonitor::poll_timeout`]
//! says so: every `probe_idle` when no traffic uses the link, every
//! `probe_active` while traffic does, and every `probe_down` while the link
//! is down, so recovery is seen quickly. Rules:
//! - Down: [`DOWN_AFTER`] probes in a row unanswered (timed out or still in
//!   flight, and all sent after the newest answered probe), the oldest of
//!   them sent at least the link timeout ago
//!   (`max(min_link_timeout, 2·srtt + 4·rttvar)`). While traffic flows that
//!   is 150–190 ms after a cut; idle, two to three seconds. A probe lost
//!   before one that was answered is loss, not part of an outage.
//! - Up: a probe is answered (a two-way proof), or a handshake completed
//!   over the direct path.
//! - Loss: the share of the last [`LOSS_WINDOW`] probes that were not
//!   answered within the link timeout (a late answer still counts for RTT).
//!   When a link comes back up, the run of misses of the outage is set
//!   aside and the outcomes before it are kept. A link that comes up carries
//!   routes only once it has [`SETTLE_OUTCOMES`] probe outcomes since (it
//!   is probed at the active rate meanwhile), so a lossy link that flaps up
//!   shows its loss before it can win traffic back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::RttEstimator;
use super::min_rtt::MinRtt;
use crate::node::LinkHealth;
use crate::route::RoutingConfig;

/// Unanswered probes in a row that mark a link down.
pub(crate) const DOWN_AFTER: u32 = 3;
/// Probe outcomes the loss rate is computed over.
pub(crate) const LOSS_WINDOW: u32 = 32;
const MAX_OUTSTANDING: usize = 64;
/// Timed-out probes whose late answers still count for RTT.
const MAX_LATE: usize = 16;
/// Probe outcomes a link needs after coming up before it carries routes.
pub(crate) const SETTLE_OUTCOMES: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub(crate) struct LinkMonitor {
    health: LinkHealth,
    rtt: RttEstimator,
    /// The windowed minimum, for routes.
    min_rtt: MinRtt,
    /// Probes sent and not yet answered or judged lost: (id, sent at).
    outstanding: VecDeque<(u64, Instant)>,
    /// Probes judged lost (timed out) whose answers may still come: they
    /// give an RTT sample (before the first one the timeout is only the
    /// floor, which a long link's answers always miss) and prove the link
    /// two-way.
    late: VecDeque<(u64, Instant)>,
    /// Unanswered probes in a row.
    misses: u32,
    /// When the first of the current run of misses was sent.
    first_miss: Option<Instant>,
    /// Outcomes of the last probes, newest in bit 0: 1 = lost.
    history: u32,
    outcomes: u32,
    last_active: Option<Instant>,
    /// Probe outcomes since the link last came up.
    since_up: u32,
    /// When the newest answered probe was sent: older ones still
    /// outstanding are lost or late, but not "in a row".
    answered_sent: Option<Instant>,
    next_probe: Option<Instant>,
    /// The idle probe interval of this link, when not the config's (a
    /// punched link through NATs is probed less often while idle).
    idle_interval: Option<Duration>,
}

impl LinkMonitor {
    pub(crate) fn new() -> Self {
        Self {
            health: LinkHealth::Unknown,
            rtt: RttEstimator::default(),
            min_rtt: MinRtt::default(),
            outstanding: VecDeque::new(),
            late: VecDeque::new(),
            misses: 0,
            first_miss: None,
            history: 0,
            outcomes: 0,
            last_active: None,
            since_up: 0,
            answered_sent: None,
            next_probe: None,
            idle_interval: None,
        }
    }

    pub(crate) fn health(&self) -> LinkHealth {
        self.health
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt.smoothed()
    }

    /// The RTT routes use: the smallest sample of the last ten seconds
    /// (`min_rtt`), so that the link's own traffic does not count against
    /// it. Falls back to the smoothed RTT before any probe was answered.
    pub(crate) fn path_rtt(&self, now: Instant) -> Option<Duration> {
        self.min_rtt.peek(now).or_else(|| self.rtt.smoothed())
    }

    /// Share of recent probes lost, 0 to 1.
    pub(crate) fn loss(&self) -> f32 {
        if self.outcomes == 0 {
            return 0.0;
        }
        let mask = if self.outcomes >= 32 {
            u32::MAX
        } else {
            (1u32 << self.outcomes) - 1
        };
        (self.history & mask).count_ones() as f32 / self.outcomes as f32
    }

    /// Starts probing (a session with the neighbour exists): the first
    /// probe goes out at once.
    pub(crate) fn start(&mut self, now: Instant) {
        if self.next_probe.is_none() {
            self.next_probe = Some(now);
        }
    }

    /// Stops probing (no session to probe over); forgets the health.
    pub(crate) fn stop(&mut self) -> Option<Transition> {
        self.next_probe = None;
        self.outstanding.clear();
        self.late.clear();
        self.misses = 0;
        self.first_miss = None;
        let was_up = self.health == LinkHealth::Up;
        self.health = LinkHealth::Unknown;
        was_up.then_some(Transition::Down)
    }

    /// The neighbour's endpoint moved (roaming, or a punched path): probes
    /// still out went to the old address and say nothing of the new path,
    /// nor does the loss measured on the old one. Health stays until the
    /// new path answers or fails.
    pub(crate) fn path_moved(&mut self) {
        self.outstanding.clear();
        self.late.clear();
        self.misses = 0;
        self.first_miss = None;
        self.answered_sent = None;
        self.history = 0;
        self.outcomes = 0;
    }

    /// Probes this link every `interval` while idle instead of the
    /// config's `probe_idle` (`None`: the config's again). Takes effect
    /// from the next probe.
    pub(crate) fn set_idle_interval(&mut self, interval: Option<Duration>) {
        self.idle_interval = interval;
    }

    /// Traffic is using the link: probe at the active rate for a while.
    pub(crate) fn mark_active(&mut self, now: Instant, config: &RoutingConfig) {
        let was_active = self.is_active(now, config);
        self.last_active = Some(now);
        if !was_active && let Some(next) = self.next_probe {
            self.next_probe = Some(next.min(now + config.probe_active));
        }
    }

    /// A handshake completed over the direct path at `now`, taking `rtt`.
    pub(crate) fn on_direct_handshake(
        &mut self,
        now: Instant,
        rtt: Option<Duration>,
    ) -> Option<Transition> {
        if let Some(rtt) = rtt {
            self.rtt.sample(rtt);
        }
        self.set_up(Some(now))
    }

    /// A pong arrived for probe `id`.
    pub(crate) fn on_pong(
        &mut self,
        now: Instant,
        id: u64,
        config: &RoutingConfig,
    ) -> Option<Transition> {
        let Some(position) = self.outstanding.iter().position(|(probe, _)| *probe == id) else {
            return self.on_late_pong(now, id);
        };
        let timeout = self.timeout(config);
        // Older probes than this one that are still outstanding were lost
        // or are late; they are judged when they time out.
        let (_, sent) = self.outstanding.remove(position)?;
        self.answered_sent = Some(self.answered_sent.map_or(sent, |a| a.max(sent)));
        let rtt = now.saturating_duration_since(sent);
        self.rtt.sample(rtt);
        self.min_rtt.sample(now, rtt);
        // Up first, so that the outage it ends is set aside without this
        // answer.
        let transition = self.set_up(Some(now));
        self.record(rtt > timeout);
        self.misses = 0;
        self.first_miss = None;
        transition
    }

    /// The answer to a probe already judged lost: an RTT sample and a
    /// two-way proof, though it stays counted as a loss.
    fn on_late_pong(&mut self, now: Instant, id: u64) -> Option<Transition> {
        let position = self.late.iter().position(|(probe, _)| *probe == id)?;
        let (_, sent) = self.late.remove(position)?;
        let rtt = now.saturating_duration_since(sent);
        self.rtt.sample(rtt);
        self.min_rtt.sample(now, rtt);
        self.answered_sent = Some(self.answered_sent.map_or(sent, |a| a.max(sent)));
        let transition = self.set_up(Some(now));
        self.misses = 0;
        self.first_miss = None;
        transition
    }

    pub(crate) fn poll_timeout(&self, config: &RoutingConfig) -> Option<Instant> {
        let expiry = self
            .outstanding
            .front()
            .map(|(_, sent)| *sent + self.timeout(config));
        match (self.next_probe, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Judges overdue probes; returns whether a probe is due now (the
    /// caller sends it and reports it with [`LinkMonitor::probe_sent`]) and
    /// any change of health.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        config: &RoutingConfig,
    ) -> (bool, Option<Transition>) {
        let timeout = self.timeout(config);
        while let Some(&(_, sent)) = self.outstanding.front() {
            if now < sent + timeout {
                break;
            }
            if let Some(probe) = self.outstanding.pop_front() {
                if self.late.len() >= MAX_LATE {
                    self.late.pop_front();
                }
                self.late.push_back(probe);
            }
            self.record(true);
            if self.answered_sent.is_some_and(|a| sent < a) {
                continue;
            }
            self.misses += 1;
            self.first_miss.get_or_insert(sent);
        }
        // Probes still in flight count too: with probes every 40 ms, four
        // are out by the time the oldest times out.
        let newer = |sent: &Instant| self.answered_sent.is_none_or(|a| *sent > a);
        let in_flight = self.outstanding.iter().filter(|(_, sent)| newer(sent));
        let unanswered = self.misses + in_flight.clone().count() as u32;
        let oldest = self.first_miss.or(in_flight.map(|(_, sent)| *sent).next());
        let mut transition = None;
        if self.health != LinkHealth::Down
            && unanswered >= DOWN_AFTER
            && oldest.is_some_and(|sent| now >= sent + timeout)
        {
            self.health = LinkHealth::Down;
            transition = Some(Transition::Down);
        }
        let due = self.next_probe.is_some_and(|at| at <= now);
        (due, transition)
    }

    /// A probe with `id` went out at `now`; schedules the next one.
    pub(crate) fn probe_sent(&mut self, now: Instant, id: u64, config: &RoutingConfig) {
        if self.outstanding.len() >= MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((id, now));
        let interval = match self.health {
            LinkHealth::Down => config.probe_down,
            LinkHealth::Up | LinkHealth::Unknown if self.is_active(now, config) => {
                config.probe_active
            }
            LinkHealth::Up | LinkHealth::Unknown => self.idle_interval.unwrap_or(config.probe_idle),
        };
        self.next_probe = Some(now + interval);
    }

    fn is_active(&self, now: Instant, config: &RoutingConfig) -> bool {
        self.last_active
            .is_some_and(|t| now < t + config.active_for)
    }

    fn timeout(&self, config: &RoutingConfig) -> Duration {
        let rtt_based = self
            .rtt
            .smoothed()
            .map_or(Duration::ZERO, |s| s * 2 + self.rtt.variation() * 4);
        rtt_based.max(config.min_link_timeout)
    }

    fn record(&mut self, lost: bool) {
        self.history = (self.history << 1) | u32::from(lost);
        self.outcomes = (self.outcomes + 1).min(LOSS_WINDOW);
        self.since_up = self.since_up.saturating_add(1);
    }

    /// Changes whenever a probe outcome is recorded (for callers that act
    /// only when the link's measurements may have moved).
    pub(crate) fn outcome_mark(&self) -> (u32, u32) {
        (self.history, self.since_up)
    }

    /// Up, and probed enough since it came up for its loss rate to mean
    /// something: only settled links carry routes. A link that flaps up
    /// after a burst of loss would otherwise look clean and win traffic
    /// back at once.
    pub(crate) fn settled(&self) -> bool {
        self.health == LinkHealth::Up && self.since_up >= SETTLE_OUTCOMES
    }

    /// `now` is when the link was seen up (unknown for a handshake).
    fn set_up(&mut self, now: Option<Instant>) -> Option<Transition> {
        if self.health == LinkHealth::Up {
            return None;
        }
        if self.health == LinkHealth::Down {
            // The run of misses that ends here was the outage, which says
            // nothing of the loss rate of the link that came back: drop it,
            // but keep the outcomes before it. Forgetting them all made a
            // lossy link that flaps down and up look clean after each flap,
            // so routes went back to it.
            let run = self.history.trailing_ones().min(self.outcomes);
            self.history = self.history.checked_shr(run).unwrap_or(0);
            self.outcomes -= run;
        }
        self.health = LinkHealth::Up;
        self.since_up = 0;
        // Probe at the active rate for a while, so the link settles (or
        // shows its loss) in a few hundred milliseconds.
        if let Some(now) = now {
            self.last_active = Some(now);
            self.next_probe = self.next_probe.map(|next| next.min(now));
        }
        Some(Transition::Up)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends every due probe up to `until` in steps of 1 ms; answers them
    /// after `rtt` unless `answer` is false. Returns the transitions seen.
    fn run(
        m: &mut LinkMonitor,
        config: &RoutingConfig,
        from: Instant,
        until: Instant,
        rtt: Duration,
        answer: bool,
        next_id: &mut u64,
    ) -> Vec<(Instant, Transition)> {
        let mut seen = Vec::new();
        let mut pending: Vec<(Instant, u64)> = Vec::new();
        let mut now = from;
        while now < until {
            pending.retain(|(at, id)| {
                if *at <= now {
                    if let Some(t) = m.on_pong(now, *id, config) {
                        seen.push((now, t));
                    }
                    false
                } else {
                    true
                }
            });
            let (due, t) = m.handle_timeout(now, config);
            if let Some(t) = t {
                seen.push((now, t));
            }
            if due {
                *next_id += 1;
                m.probe_sent(now, *next_id, config);
                if answer {
                    pending.push((now + rtt, *next_id));
                }
            }
            now += ms(1);
        }
        seen
    }

    #[test]
    fn answered_probes_bring_the_link_up_with_rtt() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut id = 0;
        let seen = run(
            &mut m,
            &config,
            start,
            start + ms(3_000),
            ms(10),
            true,
            &mut id,
        );
        assert_eq!(seen, vec![(start + ms(10), Transition::Up)]);
        assert_eq!(m.rtt(), Some(ms(10)));
        assert_eq!(m.loss(), 0.0);
        // A link that just came up is probed at the active rate for a
        // second, so it settles within a few hundred milliseconds ...
        assert!(m.settled());
        assert!(id > 20, "{id} probes");
        // ... then, idle, one probe a second.
        let before = id;
        let later = start + ms(3_000);
        run(
            &mut m,
            &config,
            later,
            later + ms(3_000),
            ms(10),
            true,
            &mut id,
        );
        assert_eq!(id - before, 3);
    }

    #[test]
    fn active_link_is_declared_down_within_a_quarter_second_of_a_cut() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut id = 0;
        m.mark_active(start, &config);
        run(
            &mut m,
            &config,
            start,
            start + ms(500),
            ms(2),
            true,
            &mut id,
        );
        let cut = start + ms(500);
        m.mark_active(cut, &config);
        let seen = run(&mut m, &config, cut, cut + ms(1_000), ms(2), false, &mut id);
        let (at, t) = seen[0];
        assert_eq!(t, Transition::Down);
        let detection = at - cut;
        assert!(detection <= ms(250), "detected after {detection:?}");
        assert!(
            detection >= config.min_link_timeout,
            "too eager: {detection:?}"
        );
    }

    #[test]
    fn idle_link_needs_three_lost_probes() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut id = 0;
        run(
            &mut m,
            &config,
            start,
            start + ms(1_500),
            ms(2),
            true,
            &mut id,
        );
        let cut = start + ms(1_500);
        let seen = run(&mut m, &config, cut, cut + ms(5_000), ms(2), false, &mut id);
        let (at, t) = seen[0];
        assert_eq!(t, Transition::Down);
        assert!(
            at - cut >= ms(2_000),
            "one lost idle probe is not an outage"
        );
        assert!(at - cut <= ms(3_500));
    }

    /// Runs an active link for `duration` from `from` in 1 ms steps,
    /// answering probe `id` after `rtt` when `answer(id)`.
    fn run_with(
        m: &mut LinkMonitor,
        config: &RoutingConfig,
        from: Instant,
        duration: Duration,
        rtt: Duration,
        answer: impl Fn(u64) -> bool,
        next_id: &mut u64,
    ) -> Vec<Transition> {
        let mut seen = Vec::new();
        let mut pending: Vec<(Instant, u64)> = Vec::new();
        let mut now = from;
        while now < from + duration {
            m.mark_active(now, config);
            for (_, id) in pending.iter().filter(|(at, _)| *at <= now) {
                seen.extend(m.on_pong(now, *id, config));
            }
            pending.retain(|(at, _)| *at > now);
            let (due, t) = m.handle_timeout(now, config);
            seen.extend(t);
            if due {
                *next_id += 1;
                m.probe_sent(now, *next_id, config);
                if answer(*next_id) {
                    pending.push((now + rtt, *next_id));
                }
            }
            now += ms(1);
        }
        seen
    }

    #[test]
    fn probes_lost_between_answered_ones_are_loss_not_an_outage() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut id = 0;
        // Every other probe lost: never two in a row.
        let seen = run_with(
            &mut m,
            &config,
            start,
            ms(3_000),
            ms(10),
            |id| id.is_multiple_of(2),
            &mut id,
        );
        assert_eq!(seen, vec![Transition::Up], "the link never goes down");
        assert!((m.loss() - 0.5).abs() < 0.07, "loss {}", m.loss());
    }

    #[test]
    fn an_outage_is_set_aside_and_the_loss_before_it_kept() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut id = 0;
        // One probe in four lost, then six in a row, then one in four again.
        let pattern = |id: u64| !(id.is_multiple_of(4) || (40..46).contains(&id));
        let seen = run_with(&mut m, &config, start, ms(2_300), ms(10), pattern, &mut id);
        assert_eq!(seen, vec![Transition::Up, Transition::Down, Transition::Up]);
        assert!((m.loss() - 0.25).abs() < 0.1, "loss {}", m.loss());
    }

    #[test]
    fn a_link_that_comes_up_settles_before_it_carries_routes() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut id = 0;
        let seen = run_with(&mut m, &config, start, ms(15), ms(10), |_| true, &mut id);
        assert_eq!(seen, vec![Transition::Up]);
        assert!(!m.settled(), "one answer is not enough");
        run_with(
            &mut m,
            &config,
            start + ms(15),
            ms(400),
            ms(10),
            |_| true,
            &mut id,
        );
        assert!(m.settled());
    }

    #[test]
    fn loss_is_the_share_of_unanswered_probes() {
        let config = RoutingConfig::default();
        let start = Instant::now();
        let mut m = LinkMonitor::new();
        m.start(start);
        let mut now = start;
        for i in 0..32u64 {
            let (due, _) = m.handle_timeout(now, &config);
            assert!(due || i == 0 || m.next_probe.is_some());
            m.probe_sent(now, i, &config);
            if i % 4 != 0 {
                m.on_pong(now + ms(1), i, &config);
            }
            now += ms(1_000);
            m.handle_timeout(now, &config);
        }
        assert!((m.loss() - 0.25).abs() < 0.01, "loss {}", m.loss());
    }
}
