//! The connection table: flows the rules let through, so that their later
//! packets and their replies pass without the rules being asked again.
//!
//! A flow is tracked from the packet that a rule (or a default) allowed,
//! in either direction. Each entry remembers which side spoke first and
//! whether the other side has answered, and for TCP whether each side has
//! sent a FIN or either a RST. Its idle timeout follows from that:
//!
//! | state | timeout (default) |
//! | --- | --- |
//! | not answered yet (any protocol; a TCP SYN waiting) | `unreplied_timeout` (30 s) |
//! | TCP, answered | `tcp_timeout` (1 h) |
//! | TCP, FIN both ways or a RST | [`TCP_CLOSING_TIMEOUT`] (10 s) |
//! | UDP and other protocols, answered | `udp_timeout` (3 min) |
//! | ICMP echo, answered | `icmp_timeout` (30 s) |
//!
//! Every packet of a flow restarts its timeout. A TCP SYN (without ACK)
//! on a closing flow is a new connection on the same ports: the old entry
//! goes and the rules decide afresh.
//!
//! Bounded: at most `max_entries` flows. When the table is full, a new
//! flow takes the place of the one that would expire first (counted as
//! evicted): unanswered flows time out soonest, so a scan or a flood of
//! new flows pushes out its own kind before it touches an answered
//! connection, and only then the longest idle one.
//!
//! New rules (a config reload, [`super::Firewall::reconfigure`]) do not
//! empty the table: they start a new generation. An entry of an older
//! generation is reported as [`Track::Stale`] at its next packet (without
//! being refreshed), with what the rules need to judge its first packet
//! again ([`Opening`]); the firewall then keeps it for the new generation
//! or removes it. So the cost of a reload is spread over the flows that
//! are still used, and flows nobody uses any more just expire.
//!
//! Expiry is lazy and needs no timer: an entry past its deadline counts as
//! absent, and every packet first removes up to [`SWEEP_BUDGET`] expired
//! entries. The expiry index keeps each entry under the deadline it had
//! when last indexed; a refresh only moves the entry's own deadline, and
//! the index catches up when it reaches the stale position (so a packet
//! costs one map lookup, not an index update).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::flow::{Direction, FlowKey, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// How long a TCP flow lives after FINs both ways or a RST: long enough
/// for the last ACK and a retransmitted FIN.
pub const TCP_CLOSING_TIMEOUT: Duration = Duration::from_secs(10);
/// Most entries a table may be configured to hold.
pub const MAX_CONNTRACK_ENTRIES: usize = 1 << 22;
/// Expired entries removed per packet at most.
pub const SWEEP_BUDGET: usize = 4;

/// The connection table's size and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Most flows tracked at once (1 to [`MAX_CONNTRACK_ENTRIES`]).
    pub max_entries: usize,
    /// Idle timeout of an answered TCP connection.
    pub tcp_timeout: Duration,
    /// Idle timeout of an answered UDP flow, and of other protocols'.
    pub udp_timeout: Duration,
    /// Idle timeout of an answered ICMP echo flow.
    pub icmp_timeout: Duration,
    /// Idle timeout of a flow the other side has not answered yet.
    pub unreplied_timeout: Duration,
}

impl Default for ConntrackConfig {
    /// 65,536 flows (a few MiB); TCP 1 h (an idle SSH session survives a
    /// lunch break; applications idle longer need keepalives, as behind
    /// any stateful firewall); UDP 3 min and ICMP 30 s (Nebula's UDP
    /// default, Linux's ICMP one); 30 s for flows nobody answered.
    fn default() -> Self {
        Self {
            max_entries: 65_536,
            tcp_timeout: Duration::from_secs(3600),
            udp_timeout: Duration::from_secs(180),
            icmp_timeout: Duration::from_secs(30),
            unreplied_timeout: Duration::from_secs(30),
        }
    }
}

/// What [`Conntrack::track`] found for a packet's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    /// Tracked, live and of the current rules: the flow was refreshed.
    Live,
    /// Not tracked (or expired, or a new TCP connection on a closing one).
    Absent,
    /// Tracked and live, but allowed by rules that have been replaced: the
    /// rules must judge it again. Nothing was refreshed.
    Stale {
        /// Which way the flow's first packet crossed.
        origin: Direction,
        /// What the rules saw of that packet.
        opening: Opening,
    },
}

/// What the rules saw of a flow's first packet beyond its [`FlowKey`], so
/// that new rules can judge the flow again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opening {
    /// The packet's destination port.
    pub(crate) dst_port: Option<u16>,
    /// Its ICMP type, if it was ICMP.
    pub(crate) icmp_type: Option<u8>,
    /// Whether it was a fragment after the first.
    pub(crate) trailing_fragment: bool,
}

/// The connection table. See the module doc.
#[derive(Debug, Clone)]
pub(crate) struct Conntrack {
    config: ConntrackConfig,
    /// The rules' generation: entries of an older one are stale.
    generation: u64,
    entries: BTreeMap<FlowKey, Entry>,
    /// `(deadline when indexed, flow)`, one item per entry.
    index: BTreeSet<(Instant, FlowKey)>,
    pub(crate) evicted: u64,
    pub(crate) expired: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    origin: Direction,
    replied: bool,
    fin_origin: bool,
    fin_reply: bool,
    closing: bool,
    /// The rules' generation that allowed it (or last judged it again).
    generation: u64,
    opening: Opening,
    expires: Instant,
    /// The deadline this entry is filed under in the index (never later
    /// than `expires`).
    indexed: Instant,
}

impl Conntrack {
    pub(crate) fn new(config: ConntrackConfig) -> Self {
        Self {
            config,
            generation: 0,
            entries: BTreeMap::new(),
            index: BTreeSet::new(),
            evicted: 0,
            expired: 0,
        }
    }

    /// Flows in the table (some may have expired and not been swept yet).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The configured bound.
    pub(crate) fn capacity(&self) -> usize {
        self.config.max_entries
    }

    /// New rules: every entry becomes stale until the rules judge it
    /// again. `config` replaces the size and timeouts: a smaller bound
    /// evicts at once (counted), new timeouts apply from each entry's next
    /// packet.
    pub(crate) fn new_rules(&mut self, config: ConntrackConfig) {
        self.new_generation();
        self.config = config;
        while self.entries.len() > self.config.max_entries {
            if !self.evict_one() {
                break;
            }
        }
    }

    /// Every entry becomes stale until the rules judge it again.
    pub(crate) fn new_generation(&mut self) {
        self.generation += 1;
    }

    /// Forgets every flow (the firewall was turned off).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
    }

    /// A packet of flow `key` crossing in `direction`: [`Track::Live`] (and
    /// the flow refreshed) when the flow is tracked, live and of the
    /// current rules.
    pub(crate) fn track(
        &mut self,
        now: Instant,
        key: &FlowKey,
        direction: Direction,
        tcp_flags: u8,
    ) -> Track {
        let config = self.config;
        let Some(entry) = self.entries.get_mut(key) else {
            return Track::Absent;
        };
        let reopened =
            entry.closing && key.protocol == TCP && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        if entry.expires <= now || reopened {
            let indexed = entry.indexed;
            self.entries.remove(key);
            self.index.remove(&(indexed, *key));
            return Track::Absent;
        }
        if entry.generation != self.generation {
            return Track::Stale {
                origin: entry.origin,
                opening: entry.opening,
            };
        }
        if direction != entry.origin {
            entry.replied = true;
        }
        if key.protocol == TCP {
            if tcp_flags & TCP_RST != 0 {
                entry.closing = true;
            }
            if tcp_flags & TCP_FIN != 0 {
                if direction == entry.origin {
                    entry.fin_origin = true;
                } else {
                    entry.fin_reply = true;
                }
                entry.closing |= entry.fin_origin && entry.fin_reply;
            }
        }
        let expires = now + timeout(&config, key.protocol, entry);
        entry.expires = expires;
        if expires < entry.indexed {
            // Only a shorter timeout (closing) moves the deadline earlier;
            // keep the index from holding the entry too long.
            let old = entry.indexed;
            entry.indexed = expires;
            self.index.remove(&(old, *key));
            self.index.insert((expires, *key));
        }
        Track::Live
    }

    /// Whether flow `key` is tracked and live (for ICMP errors about it;
    /// does not refresh it): [`Track::Live`], [`Track::Stale`] if the
    /// current rules have not judged it yet, or [`Track::Absent`].
    pub(crate) fn lookup(&self, now: Instant, key: &FlowKey) -> Track {
        match self.entries.get(key) {
            Some(e) if e.expires <= now => Track::Absent,
            None => Track::Absent,
            Some(e) if e.generation != self.generation => Track::Stale {
                origin: e.origin,
                opening: e.opening,
            },
            Some(_) => Track::Live,
        }
    }

    /// Whether flow `key` is tracked and live, whatever rules allowed it.
    #[cfg(test)]
    pub(crate) fn contains(&self, now: Instant, key: &FlowKey) -> bool {
        self.lookup(now, key) != Track::Absent
    }

    /// The current rules judged the stale flow `key` again and keep it.
    pub(crate) fn confirm(&mut self, key: &FlowKey) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.generation = self.generation;
        }
    }

    /// Stops tracking `key` (the current rules no longer allow it).
    pub(crate) fn remove(&mut self, key: &FlowKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.index.remove(&(entry.indexed, *key));
        }
    }

    /// Starts tracking `key`, whose first packet crossed in `direction`.
    /// Makes room by evicting when the table is full.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        key: FlowKey,
        direction: Direction,
        tcp_flags: u8,
        opening: Opening,
    ) {
        if let Some(old) = self.entries.remove(&key) {
            self.index.remove(&(old.indexed, key));
        }
        while self.entries.len() >= self.config.max_entries {
            if !self.evict_one() {
                break;
            }
        }
        let mut entry = Entry {
            origin: direction,
            replied: false,
            fin_origin: false,
            fin_reply: false,
            closing: key.protocol == TCP && tcp_flags & TCP_RST != 0,
            generation: self.generation,
            opening,
            expires: now,
            indexed: now,
        };
        let expires = now + timeout(&self.config, key.protocol, &entry);
        entry.expires = expires;
        entry.indexed = expires;
        self.entries.insert(key, entry);
        self.index.insert((expires, key));
    }

    /// Removes up to `budget` entries whose deadline has passed.
    pub(crate) fn sweep(&mut self, now: Instant, budget: usize) {
        for _ in 0..budget {
            let Some(&(at, key)) = self.index.first() else {
                return;
            };
            if at > now {
                return;
            }
            self.index.pop_first();
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if entry.expires > now {
                entry.indexed = entry.expires;
                self.index.insert((entry.expires, key));
            } else {
                self.entries.remove(&key);
                self.expired += 1;
            }
        }
    }

    /// Removes the entry that would expire first; false if the table is
    /// empty.
    fn evict_one(&mut self) -> bool {
        while let Some((at, key)) = self.index.pop_first() {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if entry.expires > at {
                // Refreshed since it was filed: file it where it belongs
                // and look again.
                entry.indexed = entry.expires;
                self.index.insert((entry.expires, key));
                continue;
            }
            self.entries.remove(&key);
            self.evicted += 1;
            return true;
        }
        false
    }
}

const TCP: u8 = 6;

fn timeout(config: &ConntrackConfig, protocol: u8, entry: &Entry) -> Duration {
    if entry.closing {
        return TCP_CLOSING_TIMEOUT.min(config.tcp_timeout);
    }
    if !entry.replied {
        return config.unreplied_timeout;
    }
    match protocol {
        6 => config.tcp_timeout,
        1 | 58 => config.icmp_timeout,
        _ => config.udp_timeout,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    fn key(protocol: u8, port: u16) -> FlowKey {
        FlowKey::new(
            protocol,
            IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)),
            port,
            80,
        )
    }

    fn table(max_entries: usize) -> Conntrack {
        Conntrack::new(ConntrackConfig {
            max_entries,
            ..ConntrackConfig::default()
        })
    }

    #[allow(clippy::disallowed_methods)] // any base instant will do
    fn start() -> Instant {
        Instant::now()
    }

    const S: Duration = Duration::from_secs(1);
    const OPENING: Opening = Opening {
        dst_port: Some(80),
        icmp_type: None,
        trailing_fragment: false,
    };

    #[test]
    fn an_unanswered_flow_expires_after_the_unreplied_timeout() {
        let t0 = start();
        let mut table = table(16);
        table.insert(t0, key(17, 1), Direction::Outbound, 0, OPENING);
        assert_eq!(
            table.track(t0 + 29 * S, &key(17, 1), Direction::Outbound, 0),
            Track::Live
        );
        // The refresh at 29 s moved the deadline to 59 s.
        assert!(table.contains(t0 + 58 * S, &key(17, 1)));
        assert!(!table.contains(t0 + 59 * S, &key(17, 1)));
        assert_eq!(
            table.track(t0 + 59 * S, &key(17, 1), Direction::Inbound, 0),
            Track::Absent
        );
        assert_eq!(table.len(), 0, "an expired flow met by a packet is removed");
    }

    #[test]
    fn an_answer_gives_the_protocol_timeout() {
        let t0 = start();
        let mut table = table(16);
        table.insert(t0, key(17, 1), Direction::Outbound, 0, OPENING);
        assert_eq!(
            table.track(t0 + S, &key(17, 1), Direction::Inbound, 0),
            Track::Live
        );
        assert!(table.contains(t0 + S + 179 * S, &key(17, 1)));
        assert!(!table.contains(t0 + S + 180 * S, &key(17, 1)));
        table.insert(t0, key(6, 2), Direction::Inbound, TCP_SYN, OPENING);
        assert_eq!(
            table.track(t0, &key(6, 2), Direction::Outbound, TCP_SYN | TCP_ACK),
            Track::Live
        );
        assert!(table.contains(t0 + 3599 * S, &key(6, 2)));
        assert!(!table.contains(t0 + 3600 * S, &key(6, 2)));
    }

    #[test]
    fn tcp_closes_after_fins_both_ways_or_a_rst() {
        let t0 = start();
        let mut table = table(16);
        table.insert(t0, key(6, 1), Direction::Outbound, TCP_SYN, OPENING);
        assert_eq!(
            table.track(t0, &key(6, 1), Direction::Inbound, TCP_SYN | TCP_ACK),
            Track::Live
        );
        assert_eq!(
            table.track(t0, &key(6, 1), Direction::Outbound, TCP_FIN | TCP_ACK),
            Track::Live
        );
        assert!(
            table.contains(t0 + 60 * S, &key(6, 1)),
            "one FIN: still open"
        );
        assert_eq!(
            table.track(t0, &key(6, 1), Direction::Inbound, TCP_FIN | TCP_ACK),
            Track::Live
        );
        assert!(table.contains(t0 + 9 * S, &key(6, 1)));
        assert!(!table.contains(t0 + 10 * S, &key(6, 1)));

        table.insert(t0, key(6, 2), Direction::Outbound, TCP_SYN, OPENING);
        assert_eq!(
            table.track(t0, &key(6, 2), Direction::Inbound, TCP_RST | TCP_ACK),
            Track::Live
        );
        assert!(!table.contains(t0 + 10 * S, &key(6, 2)));
        // The closing entry is filed under its shorter deadline at once.
        table.sweep(t0 + 10 * S, 16);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn new_rules_make_every_flow_stale_until_judged_again() {
        let t0 = start();
        let mut table = table(4);
        for port in 1..=3 {
            table.insert(t0, key(17, port), Direction::Outbound, 0, OPENING);
        }
        table.new_rules(ConntrackConfig {
            max_entries: 2,
            ..ConntrackConfig::default()
        });
        assert_eq!(table.len(), 2, "the smaller bound evicts at once");
        assert_eq!(table.evicted, 1);
        let stale = Track::Stale {
            origin: Direction::Outbound,
            opening: OPENING,
        };
        assert_eq!(
            table.track(t0 + S, &key(17, 2), Direction::Inbound, 0),
            stale
        );
        assert_eq!(table.lookup(t0 + S, &key(17, 3)), stale);
        table.confirm(&key(17, 2));
        assert_eq!(
            table.track(t0 + S, &key(17, 2), Direction::Inbound, 0),
            Track::Live
        );
        table.remove(&key(17, 3));
        assert_eq!(table.lookup(t0 + S, &key(17, 3)), Track::Absent);
        assert_eq!(table.len(), 1);
        assert_eq!(table.index.len(), 1);
    }

    #[test]
    fn a_syn_on_a_closing_flow_goes_back_to_the_rules() {
        let t0 = start();
        let mut table = table(16);
        table.insert(t0, key(6, 1), Direction::Outbound, TCP_SYN, OPENING);
        assert_eq!(
            table.track(t0, &key(6, 1), Direction::Inbound, TCP_RST),
            Track::Live
        );
        assert_eq!(
            table.track(t0 + S, &key(6, 1), Direction::Outbound, TCP_SYN),
            Track::Absent
        );
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_full_table_evicts_the_flow_that_expires_first() {
        let t0 = start();
        let mut table = table(3);
        // Two answered TCP flows and one unanswered: the unanswered one
        // goes first though it is the newest.
        table.insert(t0, key(6, 1), Direction::Outbound, TCP_SYN, OPENING);
        table.track(t0, &key(6, 1), Direction::Inbound, TCP_SYN | TCP_ACK);
        table.insert(t0 + S, key(6, 2), Direction::Outbound, TCP_SYN, OPENING);
        table.track(t0 + S, &key(6, 2), Direction::Inbound, TCP_SYN | TCP_ACK);
        table.insert(t0 + 2 * S, key(17, 3), Direction::Outbound, 0, OPENING);
        table.insert(t0 + 3 * S, key(17, 4), Direction::Outbound, 0, OPENING);
        assert_eq!(table.len(), 3);
        assert_eq!(table.evicted, 1);
        assert!(!table.contains(t0 + 3 * S, &key(17, 3)));
    }

    #[test]
    fn among_answered_flows_the_longest_idle_is_evicted() {
        let t0 = start();
        let mut table = table(2);
        // Both are filed under their unanswered deadline (30 s) and then
        // answered: the index is stale for both.
        table.insert(t0, key(6, 1), Direction::Outbound, TCP_SYN, OPENING);
        table.track(t0, &key(6, 1), Direction::Inbound, TCP_SYN | TCP_ACK);
        table.insert(t0 + S, key(6, 2), Direction::Outbound, TCP_SYN, OPENING);
        table.track(t0 + S, &key(6, 2), Direction::Inbound, TCP_SYN | TCP_ACK);
        table.track(t0 + 5 * S, &key(6, 1), Direction::Outbound, TCP_ACK);
        table.insert(t0 + 6 * S, key(17, 3), Direction::Outbound, 0, OPENING);
        assert_eq!(table.len(), 2);
        assert!(table.contains(t0 + 6 * S, &key(6, 1)));
        assert!(!table.contains(t0 + 6 * S, &key(6, 2)));
        assert!(table.contains(t0 + 6 * S, &key(17, 3)));
    }

    #[test]
    fn sweeping_removes_only_expired_flows_within_the_budget() {
        let t0 = start();
        let mut table = table(64);
        for port in 0..10 {
            table.insert(t0, key(17, port), Direction::Outbound, 0, OPENING);
        }
        table.track(t0 + 20 * S, &key(17, 0), Direction::Outbound, 0);
        table.sweep(t0 + 30 * S, 4);
        assert_eq!(table.len(), 7, "flow 0 was refreshed and filed again");
        table.sweep(t0 + 30 * S, 100);
        assert_eq!(table.len(), 1);
        assert_eq!(table.expired, 9);
        assert!(table.contains(t0 + 30 * S, &key(17, 0)));
    }

    proptest! {
        /// Whatever packets come, the table never holds more than its bound,
        /// every entry has exactly one index item filed no later than its
        /// deadline, and a flow is reported live exactly while a packet of
        /// it came within its timeout.
        #[test]
        fn bound_index_and_expiry_hold(
            max in 1usize..8,
            steps in proptest::collection::vec((0u16..12, 0u64..40, any::<bool>(), any::<bool>()), 1..200),
        ) {
            let t0 = start();
            let mut table = table(max);
            let mut now = t0;
            let mut last_seen: BTreeMap<FlowKey, Instant> = BTreeMap::new();
            for (port, advance, inbound, insert) in steps {
                now += Duration::from_secs(advance);
                let k = key(17, port);
                let direction = if inbound { Direction::Inbound } else { Direction::Outbound };
                let live = table.contains(now, &k);
                let tracked = table.track(now, &k, direction, 0) == Track::Live;
                prop_assert_eq!(live, tracked);
                if !tracked && insert {
                    table.insert(now, k, direction, 0, OPENING);
                }
                if tracked || insert {
                    last_seen.insert(k, now);
                }
                table.sweep(now, SWEEP_BUDGET);
                prop_assert!(table.len() <= max);
                prop_assert_eq!(table.index.len(), table.entries.len());
                for (k, e) in &table.entries {
                    prop_assert!(e.indexed <= e.expires);
                    prop_assert!(table.index.contains(&(e.indexed, *k)));
                    // No flow outlives its longest possible timeout.
                    prop_assert!(e.expires <= last_seen[k] + Duration::from_secs(180));
                }
            }
        }
    }
}
