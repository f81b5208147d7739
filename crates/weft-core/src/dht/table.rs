//! The Kademlia routing table: 256 k-buckets by common prefix length with
//! the own id, each with a replacement cache.
//!
//! Only verified members enter (they answered a query, or sent a signed
//! request, or the node vouches for them through an authenticated session).
//! Rules:
//! - a contact seen again is refreshed in place (endpoint, failures reset,
//!   smoothed RTT updated as in RFC 6298 with gain 1/8);
//! - a bucket with room takes a new contact;
//! - a full bucket takes a new contact with a measured RTT in place of its
//!   slowest entry when the newcomer is clearly faster (proximity neighbour
//!   selection: an entry with no RTT yet counts as slowest; clearly means
//!   `new × 3/2 + 5 ms < old`), otherwise it keeps its old, proven entries
//!   (Kademlia's preference for long-lived contacts) and the newcomer waits
//!   in the replacement cache;
//! - a contact that fails `max_failures` queries in a row is dropped and the
//!   most recently seen replacement takes its place.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Key, distance};
use crate::identity::NodeId;

const RTT_GAIN_DIVISOR: u32 = 8;
const PNS_MARGIN: Duration = Duration::from_millis(5);

/// One routing-table entry.
#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub(crate) id: NodeId,
    pub(crate) endpoint: SocketAddr,
    pub(crate) rtt: Option<Duration>,
    pub(crate) name: Option<String>,
    failures: u32,
}

#[derive(Debug, Clone)]
struct Bucket {
    entries: Vec<Contact>,
    replacements: Vec<Contact>,
    touched: Instant,
}

/// What [`Table::seen`] did with a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// It was in the table and is refreshed.
    Updated,
    /// It entered the table.
    Inserted,
    /// It took a slower entry's place.
    Replaced,
    /// Its bucket is full: it waits in the replacement cache.
    Cached,
    /// It is this node.
    Own,
}

/// The routing table.
#[derive(Debug)]
pub(crate) struct Table {
    own: NodeId,
    k: usize,
    max_failures: u32,
    /// Buckets 0 to the deepest used so far (the deeper ones, empty, are
    /// not allocated: a network of n nodes uses about log2(n)).
    buckets: Vec<Bucket>,
    created: Instant,
    len: usize,
}

impl Table {
    pub(crate) fn new(now: Instant, own: NodeId, k: usize, max_failures: u32) -> Self {
        Self {
            own,
            k: k.max(1),
            max_failures: max_failures.max(1),
            buckets: Vec::new(),
            created: now,
            len: 0,
        }
    }

    fn bucket_mut(&mut self, index: usize) -> &mut Bucket {
        while self.buckets.len() <= index {
            self.buckets.push(Bucket {
                entries: Vec::new(),
                replacements: Vec::new(),
                touched: self.created,
            });
        }
        &mut self.buckets[index]
    }

    /// Entries in the table (replacements not counted).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A verified member was seen alive at `endpoint`, with an RTT sample if
    /// it answered a query.
    pub(crate) fn seen(
        &mut self,
        now: Instant,
        id: NodeId,
        endpoint: SocketAddr,
        sample: Option<Duration>,
        name: Option<&str>,
    ) -> Seen {
        let Some(index) = self.bucket_index(&id) else {
            return Seen::Own;
        };
        let k = self.k;
        let bucket = self.bucket_mut(index);
        bucket.touched = now;
        if let Some(entry) = bucket.entries.iter_mut().find(|c| c.id == id) {
            refresh(entry, endpoint, sample, name);
            return Seen::Updated;
        }
        // A known replacement carries its RTT history with it.
        let mut contact = match bucket.replacements.iter().position(|c| c.id == id) {
            Some(at) => bucket.replacements.remove(at),
            None => Contact {
                id,
                endpoint,
                rtt: None,
                name: None,
                failures: 0,
            },
        };
        refresh(&mut contact, endpoint, sample, name);
        if bucket.entries.len() < k {
            bucket.entries.push(contact);
            self.len += 1;
            return Seen::Inserted;
        }
        if let Some(rtt) = contact.rtt
            && let Some(slowest) = slowest(&bucket.entries)
        {
            let clearly_faster = match bucket.entries[slowest].rtt {
                None => true,
                Some(old) => rtt * 3 / 2 + PNS_MARGIN < old,
            };
            if clearly_faster {
                let old = std::mem::replace(&mut bucket.entries[slowest], contact);
                push_replacement(bucket, old, k);
                return Seen::Replaced;
            }
        }
        push_replacement(bucket, contact, k);
        Seen::Cached
    }

    /// A query to `id` went unanswered. Returns whether it was dropped.
    pub(crate) fn failed(&mut self, id: &NodeId) -> bool {
        let Some(index) = self.bucket_index(id) else {
            return false;
        };
        let max_failures = self.max_failures;
        let Some(bucket) = self.buckets.get_mut(index) else {
            return false;
        };
        if let Some(at) = bucket.replacements.iter().position(|c| c.id == *id) {
            bucket.replacements.remove(at);
            return false;
        }
        let Some(at) = bucket.entries.iter().position(|c| c.id == *id) else {
            return false;
        };
        bucket.entries[at].failures += 1;
        if bucket.entries[at].failures < max_failures {
            return false;
        }
        bucket.entries.remove(at);
        self.len -= 1;
        // The most recently seen replacement is the likeliest alive.
        if let Some(replacement) = bucket.replacements.pop() {
            bucket.entries.push(replacement);
            self.len += 1;
        }
        true
    }

    /// The smoothed RTT of a contact, if known.
    pub(crate) fn rtt(&self, id: &NodeId) -> Option<Duration> {
        let index = self.bucket_index(id)?;
        self.buckets
            .get(index)?
            .entries
            .iter()
            .find(|c| c.id == *id)
            .and_then(|c| c.rtt)
    }

    /// Whether `id` is in the table.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &NodeId) -> bool {
        self.bucket_index(id)
            .and_then(|index| self.buckets.get(index))
            .is_some_and(|b| b.entries.iter().any(|c| c.id == *id))
    }

    /// Up to `n` entries closest to `key` by XOR distance, nearest first,
    /// leaving out `exclude`.
    pub(crate) fn closest(
        &self,
        key: &Key,
        n: usize,
        exclude: Option<&NodeId>,
    ) -> Vec<(NodeId, SocketAddr)> {
        let mut all: Vec<(Key, NodeId, SocketAddr)> = self
            .entries()
            .filter(|c| Some(&c.id) != exclude)
            .map(|c| (distance(key, &Key(*c.id.as_bytes())), c.id, c.endpoint))
            .collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.truncate(n);
        all.into_iter().map(|(_, id, ep)| (id, ep)).collect()
    }

    /// Every entry, bucket by bucket.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Contact> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// The median smoothed RTT over entries that have one.
    pub(crate) fn median_rtt(&self) -> Option<Duration> {
        let mut rtts: Vec<Duration> = self.entries().filter_map(|c| c.rtt).collect();
        if rtts.is_empty() {
            return None;
        }
        let mid = rtts.len() / 2;
        let (_, median, _) = rtts.select_nth_unstable(mid);
        Some(*median)
    }

    /// An estimate of the number of nodes in the network: with the k
    /// closest contacts to the own id spread over a distance d, the network
    /// holds about k × 2^256 / d nodes (taken from the top 64 bits of d).
    /// Fewer than k contacts: the table is the whole network as known.
    pub(crate) fn network_size(&self) -> u64 {
        let own = Key(*self.own.as_bytes());
        let closest = self.closest(&own, self.k, None);
        let Some((farthest, _)) = closest.last() else {
            return 1;
        };
        if closest.len() < self.k {
            return closest.len() as u64 + 1;
        }
        let d = distance(&own, &Key(*farthest.as_bytes()));
        let mut top = [0u8; 8];
        top.copy_from_slice(&d.0[..8]);
        let top = u64::from_be_bytes(top).max(1);
        let estimate = (self.k as u128) << 64;
        u64::try_from(estimate / u128::from(top)).unwrap_or(u64::MAX)
    }

    /// Marks the bucket `key` falls in as used by a lookup now.
    pub(crate) fn touch(&mut self, now: Instant, key: &Key) {
        if let Some(index) = self.bucket_index(&NodeId::from_bytes(key.0)) {
            self.bucket_mut(index).touched = now;
        }
    }

    /// Buckets that no lookup or contact has touched for `idle`, from the
    /// farthest (index 0) to one past the deepest non-empty bucket: deeper
    /// ones are empty because nobody lives there.
    pub(crate) fn idle_buckets(&self, now: Instant, idle: Duration) -> Vec<usize> {
        let Some(deepest) = self.buckets.iter().rposition(|b| !b.entries.is_empty()) else {
            return Vec::new();
        };
        (0..=(deepest + 1).min(255))
            .filter(|&i| {
                let touched = self.buckets.get(i).map_or(self.created, |b| b.touched);
                now.saturating_duration_since(touched) >= idle
            })
            .collect()
    }

    /// The bucket index (common prefix length with the own id) of `id`.
    pub(crate) fn bucket_index(&self, id: &NodeId) -> Option<usize> {
        bucket_of(&self.own, id)
    }
}

/// The common prefix length of two ids, `None` when they are equal.
pub(crate) fn bucket_of(own: &NodeId, id: &NodeId) -> Option<usize> {
    let d = distance(&Key(*own.as_bytes()), &Key(*id.as_bytes()));
    let byte = d.0.iter().position(|&b| b != 0)?;
    Some(byte * 8 + d.0[byte].leading_zeros() as usize)
}

/// A key whose common prefix with `own` is exactly `index` bits, the rest
/// random (for bucket refresh).
pub(crate) fn random_key_in_bucket(own: &NodeId, index: usize, random: [u8; 32]) -> Key {
    let index = index.min(255);
    let mut key = *own.as_bytes();
    let byte = index / 8;
    let bit = 7 - (index % 8);
    // Bits after `index` random, bit `index` flipped, bits before it kept.
    let keep_mask: u8 = if bit == 7 {
        0
    } else {
        !((1u8 << (bit + 1)) - 1)
    };
    let own_byte = key[byte];
    let flipped = (own_byte & (1 << bit)) ^ (1 << bit);
    let low_mask = (1u8 << bit).wrapping_sub(1);
    key[byte] = (own_byte & keep_mask) | flipped | (random[byte] & low_mask);
    key[byte + 1..].copy_from_slice(&random[byte + 1..]);
    Key(key)
}

fn refresh(
    contact: &mut Contact,
    endpoint: SocketAddr,
    sample: Option<Duration>,
    name: Option<&str>,
) {
    contact.endpoint = endpoint;
    contact.failures = 0;
    if let Some(sample) = sample {
        contact.rtt = Some(match contact.rtt {
            None => sample,
            Some(srtt) => (srtt * (RTT_GAIN_DIVISOR - 1) + sample) / RTT_GAIN_DIVISOR,
        });
    }
    if contact.name.is_none()
        && let Some(name) = name
    {
        contact.name = Some(name.to_owned());
    }
}

/// The entry with the highest RTT, an unmeasured one first.
fn slowest(entries: &[Contact]) -> Option<usize> {
    entries
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| c.rtt.unwrap_or(Duration::MAX))
        .map(|(i, _)| i)
}

fn push_replacement(bucket: &mut Bucket, contact: Contact, k: usize) {
    bucket.replacements.retain(|c| c.id != contact.id);
    if bucket.replacements.len() >= k {
        bucket.replacements.remove(0);
    }
    bucket.replacements.push(contact);
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one base instant
mod tests {
    use super::*;

    fn own() -> NodeId {
        NodeId::from_bytes([0; 32])
    }

    /// An id in bucket 0 (first bit set), distinguished by its last byte.
    fn far(n: u8) -> NodeId {
        let mut bytes = [0u8; 32];
        bytes[0] = 0x80;
        bytes[31] = n;
        NodeId::from_bytes(bytes)
    }

    fn ep(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, n], 4800))
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn bucket_index_is_common_prefix_length() {
        let mut b = [0u8; 32];
        b[0] = 0x80;
        assert_eq!(bucket_of(&own(), &NodeId::from_bytes(b)), Some(0));
        b[0] = 0x01;
        assert_eq!(bucket_of(&own(), &NodeId::from_bytes(b)), Some(7));
        let mut c = [0u8; 32];
        c[31] = 1;
        assert_eq!(bucket_of(&own(), &NodeId::from_bytes(c)), Some(255));
        assert_eq!(bucket_of(&own(), &own()), None);
    }

    #[test]
    fn random_keys_fall_in_their_bucket() {
        let own = NodeId::from_bytes([0x5a; 32]);
        for index in [0, 1, 7, 8, 9, 100, 254, 255] {
            for fill in [0u8, 0xff, 0x33] {
                let key = random_key_in_bucket(&own, index, [fill; 32]);
                assert_eq!(
                    bucket_of(&own, &NodeId::from_bytes(key.0)),
                    Some(index),
                    "index {index} fill {fill}"
                );
            }
        }
    }

    #[test]
    fn full_bucket_keeps_old_contacts_and_caches_newcomers() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 2, 2);
        assert_eq!(table.seen(now, far(1), ep(1), ms(50), None), Seen::Inserted);
        assert_eq!(table.seen(now, far(2), ep(2), ms(50), None), Seen::Inserted);
        // Not clearly faster (40 × 1.5 + 5 = 65 ≥ 50): cached.
        assert_eq!(table.seen(now, far(3), ep(3), ms(40), None), Seen::Cached);
        // No RTT (a request): cached.
        assert_eq!(table.seen(now, far(4), ep(4), None, None), Seen::Cached);
        assert_eq!(table.len(), 2);
        assert!(!table.contains(&far(3)));
    }

    #[test]
    fn clearly_faster_contact_replaces_the_slowest() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 2, 2);
        table.seen(now, far(1), ep(1), ms(200), None);
        table.seen(now, far(2), ep(2), ms(50), None);
        assert_eq!(table.seen(now, far(3), ep(3), ms(20), None), Seen::Replaced);
        assert!(!table.contains(&far(1)));
        assert!(table.contains(&far(3)));
        // The replaced one waits as a replacement and comes back on failures.
        assert!(!table.failed(&far(2)));
        assert!(table.failed(&far(2)));
        assert!(table.contains(&far(1)));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn unmeasured_entries_give_way_to_measured_ones() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 1, 2);
        table.seen(now, far(1), ep(1), None, None);
        assert_eq!(
            table.seen(now, far(2), ep(2), ms(300), None),
            Seen::Replaced
        );
    }

    #[test]
    fn failures_evict_after_max_and_answers_reset_them() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 4, 2);
        table.seen(now, far(1), ep(1), ms(10), None);
        assert!(!table.failed(&far(1)));
        table.seen(now, far(1), ep(1), ms(10), None);
        assert!(!table.failed(&far(1)));
        assert!(table.failed(&far(1)));
        assert!(table.is_empty());
    }

    #[test]
    fn smoothed_rtt_moves_an_eighth_towards_samples() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 4, 2);
        table.seen(now, far(1), ep(1), ms(80), None);
        table.seen(now, far(1), ep(1), ms(160), None);
        assert_eq!(table.rtt(&far(1)), ms(90));
        assert_eq!(table.median_rtt(), ms(90));
    }

    #[test]
    fn closest_orders_by_xor_distance() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 20, 2);
        for n in 1..=10u8 {
            let mut bytes = [0u8; 32];
            bytes[0] = n;
            table.seen(now, NodeId::from_bytes(bytes), ep(n), None, None);
        }
        let mut key = [0u8; 32];
        key[0] = 6;
        let got: Vec<u8> = table
            .closest(&Key(key), 3, None)
            .iter()
            .map(|(id, _)| id.as_bytes()[0])
            .collect();
        // 6^6=0, 6^7=1, 6^4=2.
        assert_eq!(got, vec![6, 7, 4]);
        let got = table.closest(&Key(key), 3, Some(&NodeId::from_bytes(key)));
        assert_eq!(got[0].0.as_bytes()[0], 7);
    }

    #[test]
    fn network_size_estimate_follows_the_spread_of_the_closest() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 4, 2);
        assert_eq!(table.network_size(), 1);
        let id = |top: u64| {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&top.to_be_bytes());
            NodeId::from_bytes(bytes)
        };
        table.seen(now, id(1 << 60), ep(1), None, None);
        assert_eq!(table.network_size(), 2);
        // Four contacts within 2^-8 of the space: about 4 × 2^8 nodes.
        for n in 1..=4u64 {
            table.seen(now, id(n << 54), ep(n as u8), None, None);
        }
        assert_eq!(table.network_size(), 1024);
    }

    #[test]
    fn idle_buckets_reach_one_past_the_deepest() {
        let now = Instant::now();
        let mut table = Table::new(now, own(), 4, 2);
        let mut bytes = [0u8; 32];
        bytes[0] = 0x20; // bucket 2
        table.seen(now, NodeId::from_bytes(bytes), ep(1), None, None);
        let later = now + Duration::from_secs(100);
        assert_eq!(
            table.idle_buckets(later, Duration::from_secs(50)),
            vec![0, 1, 2, 3]
        );
        table.touch(later, &Key([0x80; 32]));
        assert_eq!(
            table.idle_buckets(later, Duration::from_secs(50)),
            vec![1, 2, 3]
        );
    }
}
