//! The responder's gate for handshake inits: which ones get public-key work,
//! which get a cookie reply, which are dropped (PROTOCOL §3.3–3.4).
//!
//! Public-key work (a certificate and an init signature to verify, three
//! Diffie-Hellman operations to answer) is what a flood of inits buys. The
//! guard bounds it:
//! - a node-wide **budget** of [`BUDGET_PER_SECOND`] inits (burst
//!   [`BUDGET_BURST`]); once it runs dry the node is **under load** for at
//!   least [`UNDER_LOAD_HOLD`], and then only inits with a valid mac2 (whose
//!   sender proved it receives at its address) get past the gate; the rest
//!   get a cookie reply, which costs a hash and a small AEAD;
//! - under load, a **per-source** token bucket ([`SOURCE_PER_SECOND`], burst
//!   [`SOURCE_BURST`]) for each source address (IP, not port) with a valid
//!   cookie, in a table of at most [`MAX_SOURCES`] entries;
//! - an init whose response would be larger than itself needs a valid mac2
//!   at any load, so that no spoofed source is sent more than it sent.
//!
//! A genuine initiator under attack gets a cookie reply at once, retries
//! with mac2 at once and gets through: its own source address has its own
//! bucket, which spoofed packets cannot drain (they carry no valid mac2).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::cookie::{HandshakeKeys, cookie_for, mac2_is_valid};
use crate::rng::SharedRng;

/// Inits per second the node answers without asking for a cookie.
pub(crate) const BUDGET_PER_SECOND: u32 = 200;
/// The budget's burst.
pub(crate) const BUDGET_BURST: u32 = 100;
/// How long a node stays under load after its budget last ran dry.
pub(crate) const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);
/// Inits per second admitted from one source address under load.
pub(crate) const SOURCE_PER_SECOND: u32 = 10;
/// Burst of one source under load.
pub(crate) const SOURCE_BURST: u32 = 10;
/// Source addresses tracked at once.
pub(crate) const MAX_SOURCES: usize = 4096;
/// A cookie secret is replaced after this long.
pub(crate) const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);

/// What to do with an init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go on: parse it, verify it, answer it.
    Admit,
    /// Answer with a cookie reply and nothing else.
    SendCookie,
    /// Drop it.
    Drop(Refusal),
}

/// Why an init was dropped at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// mac1 is wrong: not from someone who knows the network.
    Mac1,
    /// Its source has used up its share under load.
    RateLimited,
}

/// The gate. One per node.
pub(crate) struct InitGuard {
    keys: HandshakeKeys,
    secret: [u8; 32],
    secret_born: Option<Instant>,
    budget: Bucket,
    under_load_until: Option<Instant>,
    sources: BTreeMap<IpAddr, Bucket>,
}

impl InitGuard {
    pub(crate) fn new(keys: HandshakeKeys) -> Self {
        Self {
            keys,
            secret: [0; 32],
            secret_born: None,
            budget: Bucket::full(BUDGET_BURST),
            under_load_until: None,
            sources: BTreeMap::new(),
        }
    }

    /// The network keys (for sealing cookie replies).
    pub(crate) fn keys(&self) -> &HandshakeKeys {
        &self.keys
    }

    /// Decides about the init `datagram` from `from` (`None`: through a
    /// relay, a member that answers for what it forwards, which cannot be
    /// sent a cookie). `larger_response` says whether the response would be
    /// longer than the init.
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        rng: &SharedRng,
        from: Option<SocketAddr>,
        datagram: &[u8],
        larger_response: bool,
    ) -> Admission {
        if !self.keys.mac1_is_valid(datagram) {
            return Admission::Drop(Refusal::Mac1);
        }
        self.budget.refill(now, BUDGET_PER_SECOND, BUDGET_BURST);
        let under_load =
            self.under_load_until.is_some_and(|until| now < until) || self.budget.tokens < 1.0;
        let Some(from) = from else {
            self.spend_budget(now);
            return Admission::Admit;
        };
        let proven = mac2_is_valid(&self.cookie(now, rng, from), datagram);
        if !proven && (under_load || larger_response) {
            return Admission::SendCookie;
        }
        if under_load && !self.source_may_go(now, from.ip()) {
            return Admission::Drop(Refusal::RateLimited);
        }
        self.spend_budget(now);
        Admission::Admit
    }

    /// The cookie of `from` now.
    pub(crate) fn cookie(&mut self, now: Instant, rng: &SharedRng, from: SocketAddr) -> [u8; 32] {
        let stale = self
            .secret_born
            .is_none_or(|born| now.saturating_duration_since(born) >= COOKIE_SECRET_LIFETIME);
        if stale {
            rng.fill(&mut self.secret);
            self.secret_born = Some(now);
        }
        cookie_for(&self.secret, from)
    }

    /// Whether the node is under load now.
    #[cfg(test)]
    pub(crate) fn under_load(&self, now: Instant) -> bool {
        self.under_load_until.is_some_and(|until| now < until) || self.budget.tokens < 1.0
    }

    fn spend_budget(&mut self, now: Instant) {
        self.budget.tokens = (self.budget.tokens - 1.0).max(0.0);
        if self.budget.tokens < 1.0 {
            self.under_load_until = Some(now + UNDER_LOAD_HOLD);
        }
    }

    fn source_may_go(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            // Forget the sources that have their whole burst back: they
            // are as if new. If none has, the newcomer waits its turn.
            self.sources.retain(|_, bucket| {
                bucket.refill(now, SOURCE_PER_SECOND, SOURCE_BURST);
                bucket.tokens < f64::from(SOURCE_BURST)
            });
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = self
            .sources
            .entry(ip)
            .or_insert_with(|| Bucket::full_at(now, SOURCE_BURST));
        bucket.refill(now, SOURCE_PER_SECOND, SOURCE_BURST);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    fn full(burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            at: None,
        }
    }

    fn full_at(now: Instant, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            at: Some(now),
        }
    }

    fn refill(&mut self, now: Instant, per_second: u32, burst: u32) {
        if let Some(at) = self.at {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        }
        self.at = Some(now);
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::session::cookie::test_support::keys;

    fn init(cookie: Option<&[u8; 32]>) -> Vec<u8> {
        crate::session::cookie::test_support::init(&SecretKey::from_random([3; 64]), None, cookie)
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, last], 4800))
    }

    #[test]
    fn garbage_is_dropped_before_anything_else() {
        let mut guard = InitGuard::new(keys());
        let rng = SharedRng::from_seed([1; 32]);
        let now = Instant::now();
        let mut datagram = init(None);
        datagram[10] ^= 1;
        assert_eq!(
            guard.admit(now, &rng, Some(addr(1)), &datagram, false),
            Admission::Drop(Refusal::Mac1)
        );
        assert!(!guard.under_load(now), "a bad mac1 costs no budget");
    }

    #[test]
    fn a_larger_response_needs_a_cookie_at_any_load() {
        let mut guard = InitGuard::new(keys());
        let rng = SharedRng::from_seed([1; 32]);
        let now = Instant::now();
        assert_eq!(
            guard.admit(now, &rng, Some(addr(1)), &init(None), true),
            Admission::SendCookie
        );
        let cookie = guard.cookie(now, &rng, addr(1));
        assert_eq!(
            guard.admit(now, &rng, Some(addr(1)), &init(Some(&cookie)), true),
            Admission::Admit
        );
        // The cookie is bound to the address it was made for.
        assert_eq!(
            guard.admit(now, &rng, Some(addr(2)), &init(Some(&cookie)), true),
            Admission::SendCookie
        );
    }

    #[test]
    fn under_load_only_proven_sources_pass_and_each_at_its_rate() {
        let mut guard = InitGuard::new(keys());
        let rng = SharedRng::from_seed([1; 32]);
        let now = Instant::now();
        let plain = init(None);
        let admitted = (0..1000)
            .filter(|i| {
                let from = SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250) as u8], 1));
                guard.admit(now, &rng, Some(from), &plain, false) == Admission::Admit
            })
            .count();
        assert_eq!(admitted, BUDGET_BURST as usize);
        assert!(guard.under_load(now));
        // A genuine initiator: cookie, then through.
        let genuine = addr(200);
        assert_eq!(
            guard.admit(now, &rng, Some(genuine), &plain, false),
            Admission::SendCookie
        );
        let cookie = guard.cookie(now, &rng, genuine);
        let proven = init(Some(&cookie));
        assert_eq!(
            guard.admit(now, &rng, Some(genuine), &proven, false),
            Admission::Admit
        );
        // A proven flooder gets its burst, then waits for its rate.
        let flooder = addr(201);
        let cookie = guard.cookie(now, &rng, flooder);
        let flood = init(Some(&cookie));
        let passed = (0..100)
            .filter(|_| guard.admit(now, &rng, Some(flooder), &flood, false) == Admission::Admit)
            .count();
        assert_eq!(passed, SOURCE_BURST as usize);
        let later = now + Duration::from_millis(500);
        let passed = (0..100)
            .filter(|_| guard.admit(later, &rng, Some(flooder), &flood, false) == Admission::Admit)
            .count();
        assert_eq!(passed, (SOURCE_PER_SECOND / 2) as usize);
        // The flooder did not use up the genuine source's share.
        assert_eq!(
            guard.admit(later, &rng, Some(genuine), &proven, false),
            Admission::Admit
        );
    }

    #[test]
    fn load_ends_once_the_budget_refills_and_the_hold_passed() {
        let mut guard = InitGuard::new(keys());
        let rng = SharedRng::from_seed([1; 32]);
        let now = Instant::now();
        let plain = init(None);
        for i in 0..BUDGET_BURST {
            let from = SocketAddr::from(([198, 18, 1, i as u8], 1));
            guard.admit(now, &rng, Some(from), &plain, false);
        }
        assert!(guard.under_load(now));
        assert!(guard.under_load(now + UNDER_LOAD_HOLD - Duration::from_millis(1)));
        let later = now + UNDER_LOAD_HOLD;
        assert_eq!(
            guard.admit(later, &rng, Some(addr(9)), &plain, false),
            Admission::Admit
        );
    }

    #[test]
    fn the_cookie_secret_changes_after_its_lifetime() {
        let mut guard = InitGuard::new(keys());
        let rng = SharedRng::from_seed([1; 32]);
        let now = Instant::now();
        let first = guard.cookie(now, &rng, addr(1));
        assert_eq!(
            guard.cookie(now + Duration::from_secs(60), &rng, addr(1)),
            first
        );
        assert_ne!(
            guard.cookie(now + COOKIE_SECRET_LIFETIME, &rng, addr(1)),
            first
        );
    }

    #[test]
    fn the_source_table_is_bounded() {
        let mut guard = InitGuard::new(keys());
        let now = Instant::now();
        guard.under_load_until = Some(now + Duration::from_secs(3600));
        for i in 0..(MAX_SOURCES + 100) {
            let ip = IpAddr::from([198, 19, (i >> 8) as u8, i as u8]);
            guard.source_may_go(now, ip);
        }
        assert!(guard.sources.len() <= MAX_SOURCES);
    }
}
