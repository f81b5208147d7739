//! The brake on link-state traffic: how often a node signs its own record
//! and how often it passes on another node's.
//!
//! Without it, a node starved of CPU or bandwidth sets off a storm: its
//! probes time out, its links look down and up again, it signs a record at
//! every change (every 20 ms at most), and every node floods each of them
//! on; on real daemons that load made more nodes slow, and the load grew.
//! Two bounds stop that:
//! - **Origination**: a token bucket of [`ORIGINATE_BURST`] records,
//!   refilled at [`ORIGINATE_PER_SECOND`]: the record of a link going down
//!   and the one of it coming back leave at once; a flapping node sends at
//!   most that rate for as long as it flaps.
//! - **Forwarding**: a node passes on at most one record per origin every
//!   [`FORWARD_SPACING`]. A newer record that arrives sooner is held (the
//!   newest replaces what was held) and leaves when the spacing has passed,
//!   so the first news of a change always goes on at once and no origin can
//!   make a node send more than one record per spacing to each neighbour.
//!   At most one record is held per origin in the database.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::identity::NodeId;

/// Records a node may sign in a burst.
pub(crate) const ORIGINATE_BURST: u32 = 8;
/// Records a node may sign per second, sustained.
pub(crate) const ORIGINATE_PER_SECOND: u32 = 4;
/// Shortest time between two records of one origin passed on.
pub(crate) const FORWARD_SPACING: Duration = Duration::from_millis(250);

/// A record waiting for its origin's spacing to pass.
pub(crate) struct Held<P> {
    /// The record.
    pub(crate) record: Vec<u8>,
    /// The peer it came from (not sent back there): the node's handle for
    /// it, which may name no peer by the time the record is released.
    pub(crate) from: P,
    /// The hop budget it is to be passed on with.
    pub(crate) hops_left: u8,
}

/// A token bucket: at most `burst` tokens, one more every `every`; full
/// before its first use. (The brake's bound on signing, and the node's on
/// records signed for drift alone.)
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    burst: f64,
    every: Duration,
    tokens: f64,
    refilled: Option<Instant>,
}

impl Bucket {
    pub(crate) fn new(burst: u32, every: Duration) -> Self {
        Self {
            burst: f64::from(burst),
            every,
            tokens: f64::from(burst),
            refilled: None,
        }
    }

    /// The tokens there now (a fraction while one is refilling).
    pub(crate) fn tokens(&self, now: Instant) -> f64 {
        match self.refilled {
            None => self.burst,
            Some(at) => {
                let refilled =
                    now.saturating_duration_since(at).as_secs_f64() / self.every.as_secs_f64();
                (self.tokens + refilled).min(self.burst)
            }
        }
    }

    /// Takes a token if there is a whole one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let tokens = self.tokens(now);
        let taken = tokens >= 1.0;
        self.tokens = if taken { tokens - 1.0 } else { tokens };
        self.refilled = Some(now);
        taken
    }

    /// Takes a token, or what there is of one (something was sent that
    /// was scheduled while there was one).
    pub(crate) fn take(&mut self, now: Instant) {
        self.tokens = (self.tokens(now) - 1.0).max(0.0);
        self.refilled = Some(now);
    }

    /// When the next whole token is there (`now` if one is).
    pub(crate) fn next_token(&self, now: Instant) -> Instant {
        let missing = (1.0 - self.tokens(now)).max(0.0);
        now + self.every.mul_f64(missing)
    }
}

pub(crate) struct Brake<P> {
    originate: Bucket,
    forwarded: BTreeMap<NodeId, Instant>,
    held: BTreeMap<NodeId, Held<P>>,
}

impl<P> Default for Brake<P> {
    fn default() -> Self {
        Self {
            originate: Bucket::new(
                ORIGINATE_BURST,
                Duration::from_secs(1) / ORIGINATE_PER_SECOND,
            ),
            forwarded: BTreeMap::new(),
            held: BTreeMap::new(),
        }
    }
}

impl<P> Brake<P> {
    /// Whether this node may sign a record now; takes a token if so.
    pub(crate) fn may_originate(&mut self, now: Instant) -> bool {
        self.originate.try_take(now)
    }

    /// When the next token is there (for a deferred record).
    pub(crate) fn next_origination(&self, now: Instant) -> Instant {
        self.originate.next_token(now)
    }

    /// A new record of `origin` to pass on: `true` to flood it now,
    /// `false` when it is held (a newer one replaces it).
    pub(crate) fn forward(
        &mut self,
        now: Instant,
        origin: NodeId,
        record: &[u8],
        from: P,
        hops_left: u8,
    ) -> bool {
        let free = self
            .forwarded
            .get(&origin)
            .is_none_or(|at| now >= *at + FORWARD_SPACING);
        if free {
            self.forwarded.insert(origin, now);
            self.held.remove(&origin);
            true
        } else {
            self.held.insert(
                origin,
                Held {
                    record: record.to_vec(),
                    from,
                    hops_left,
                },
            );
            false
        }
    }

    /// When the earliest held record may go.
    pub(crate) fn next_release(&self) -> Option<Instant> {
        self.held
            .keys()
            .filter_map(|origin| self.forwarded.get(origin))
            .map(|at| *at + FORWARD_SPACING)
            .min()
    }

    /// The held records whose spacing has passed, taken out (and counted
    /// as forwarded now).
    pub(crate) fn release(&mut self, now: Instant) -> Vec<Held<P>> {
        let due: Vec<NodeId> = self
            .held
            .keys()
            .filter(|origin| {
                self.forwarded
                    .get(*origin)
                    .is_none_or(|at| now >= *at + FORWARD_SPACING)
            })
            .copied()
            .collect();
        due.into_iter()
            .filter_map(|origin| {
                self.forwarded.insert(origin, now);
                self.held.remove(&origin)
            })
            .collect()
    }

    /// Forgets origins whose records are gone from the database.
    pub(crate) fn retain(&mut self, known: impl Fn(&NodeId) -> bool) {
        self.forwarded.retain(|id, _| known(id));
        self.held.retain(|id, _| known(id));
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
    fn origination_allows_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut brake: Brake<usize> = Brake::default();
        let burst = (0..100).filter(|_| brake.may_originate(start)).count();
        assert_eq!(burst, ORIGINATE_BURST as usize);
        let at = brake.next_origination(start);
        assert_eq!(at, start + ms(250));
        assert!(!brake.may_originate(at - ms(1)));
        assert!(brake.may_originate(at));
        // Over ten seconds of asking every 20 ms: the rate, not more.
        let mut sent = 0;
        for i in 1..=500 {
            if brake.may_originate(at + ms(20 * i)) {
                sent += 1;
            }
        }
        assert!((39..=41).contains(&sent), "{sent} in 10 s");
    }

    #[test]
    fn a_bucket_taken_when_empty_waits_for_a_whole_token() {
        let start = Instant::now();
        let mut bucket = Bucket::new(2, Duration::from_secs(10));
        assert_eq!(bucket.next_token(start), start);
        bucket.take(start);
        bucket.take(start);
        assert_eq!(bucket.tokens(start), 0.0);
        // Taken anyway with nothing left: it stays at zero, not below.
        bucket.take(start);
        assert_eq!(bucket.next_token(start), start + Duration::from_secs(10));
        assert!(!bucket.try_take(start + Duration::from_secs(5)));
        assert_eq!(
            bucket.next_token(start + Duration::from_secs(5)),
            start + Duration::from_secs(10)
        );
        assert!(bucket.try_take(start + Duration::from_secs(10)));
        // Never more than the burst, however long it rests.
        assert_eq!(bucket.tokens(start + Duration::from_secs(1_000)), 2.0);
    }

    #[test]
    fn forwarding_passes_the_first_news_and_holds_only_the_newest_after() {
        let start = Instant::now();
        let mut brake: Brake<usize> = Brake::default();
        let origin = NodeId::from_bytes([1; 32]);
        assert!(brake.forward(start, origin, b"r1", 0, 1));
        assert!(!brake.forward(start + ms(10), origin, b"r2", 1, 1));
        assert!(!brake.forward(start + ms(20), origin, b"r3", 2, 1));
        assert_eq!(brake.next_release(), Some(start + FORWARD_SPACING));
        assert!(brake.release(start + ms(249)).is_empty());
        let released = brake.release(start + FORWARD_SPACING);
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].record, b"r3");
        assert_eq!(released[0].from, 2);
        assert_eq!(brake.next_release(), None);
        // Another origin is not held back by this one.
        let other = NodeId::from_bytes([2; 32]);
        assert!(brake.forward(start + ms(260), other, b"x", 0, 1));
    }

    #[test]
    fn forgotten_origins_free_their_state() {
        let start = Instant::now();
        let mut brake: Brake<usize> = Brake::default();
        let origin = NodeId::from_bytes([1; 32]);
        brake.forward(start, origin, b"r1", 0, 1);
        brake.forward(start, origin, b"r2", 0, 1);
        brake.retain(|_| false);
        assert_eq!(brake.next_release(), None);
        assert!(brake.forward(start, origin, b"r3", 0, 1));
    }
}
