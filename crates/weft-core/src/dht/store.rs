//! Records held under keys: the store for others and the lookup cache.
//!
//! A map from key to the records held under it (one per node id, newest
//! sequence wins), bounded in total entries and per key. The same type
//! serves as the store (records that others asked this node to keep, taken
//! only under a key they belong to) and as the cache of lookup results.
//! IPv6 lookups match by prefix: the key of an IPv6 target is the 96 id bits
//! of the address, zero-padded, and the records whose node id starts with
//! those bits are found by a range over the id keys. Under a name or IPv4
//! key, the record whose certificate holds the claim is found, not the
//! newest (`identity::claims`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::record::SignedRecord;
use super::{Key, Target};
use crate::identity::NodeId;

/// The order of the claim rule (docs/PROTOCOL.md §9.3): the earlier
/// certificate, then the smaller node id, holds a contested name or address.
pub(crate) fn claim_order(record: &SignedRecord) -> (u64, NodeId) {
    (
        record.record.certificate.not_before(),
        record.record.node_id(),
    )
}

/// Records of distinct nodes under one key, at most (name collisions after
/// re-keying, nothing more in practice).
const MAX_PER_KEY: usize = 4;

/// What became of a record offered to [`RecordMap::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Taken (new, or newer than the one held).
    Stored,
    /// The one held is as new or newer.
    Stale,
    /// No room.
    Full,
}

/// Records by key.
#[derive(Debug)]
pub(crate) struct RecordMap {
    map: BTreeMap<Key, Vec<Arc<SignedRecord>>>,
    len: usize,
    capacity: usize,
}

impl RecordMap {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            len: 0,
            capacity,
        }
    }

    /// Entries held (a record under three keys counts three times).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Holds `record` under `key`, unless a newer one of the same node is
    /// there or the map is full. With `evict`, a full map drops an entry to
    /// make room (the cache does; the store refuses instead, so a flood of
    /// records cannot push out the ones it holds).
    pub(crate) fn insert(&mut self, key: Key, record: Arc<SignedRecord>, evict: bool) -> Insert {
        let id = record.record.node_id();
        if let Some(held) = self.map.get_mut(&key)
            && let Some(old) = held.iter_mut().find(|r| r.record.node_id() == id)
        {
            if old.record.sequence >= record.record.sequence {
                return Insert::Stale;
            }
            *old = record;
            return Insert::Stored;
        }
        if self.len >= self.capacity && (!evict || !self.evict_one()) {
            return Insert::Full;
        }
        let held = self.map.entry(key).or_default();
        if held.len() >= MAX_PER_KEY {
            // Keep the newest: replace the oldest if this one is newer.
            let Some((at, oldest)) = held
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| r.record.sequence)
            else {
                return Insert::Full;
            };
            if oldest.record.sequence >= record.record.sequence {
                return Insert::Full;
            }
            held[at] = record;
            return Insert::Stored;
        }
        held.push(record);
        self.len += 1;
        Insert::Stored
    }

    /// The newest unexpired record that `target` asks for.
    pub(crate) fn find(&self, target: &Target, unix_now: u64) -> Option<&Arc<SignedRecord>> {
        let usable = |r: &&Arc<SignedRecord>| {
            r.record.expires > unix_now
                && r.record.certificate.not_after() > unix_now
                && target.matches(&r.record)
        };
        match target {
            Target::Ipv6(_) => {
                let start = target.key();
                let mut end = start;
                end.0[12..].fill(0xff);
                self.map
                    .range(start..=end)
                    .flat_map(|(_, held)| held.iter())
                    .filter(usable)
                    .max_by_key(|r| r.record.sequence)
            }
            Target::Id(_) => self
                .map
                .get(&target.key())?
                .iter()
                .filter(usable)
                .max_by_key(|r| r.record.sequence),
            // Records of two nodes under one name or IPv4 address: the
            // claim rule picks the holder, as every node does.
            Target::Name(_) | Target::Ipv4(_) => self
                .map
                .get(&target.key())?
                .iter()
                .filter(usable)
                .min_by_key(|r| claim_order(r)),
        }
    }

    /// Keeps only the records `keep` accepts.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&SignedRecord) -> bool) {
        let mut removed = 0;
        self.map.retain(|_, held| {
            let before = held.len();
            held.retain(|r| keep(r));
            removed += before - held.len();
            !held.is_empty()
        });
        self.len -= removed;
    }

    /// Drops records that have expired (or whose certificate has).
    pub(crate) fn purge(&mut self, unix_now: u64) {
        let mut removed = 0;
        self.map.retain(|_, held| {
            let before = held.len();
            held.retain(|r| {
                r.record.expires > unix_now && r.record.certificate.not_after() > unix_now
            });
            removed += before - held.len();
            !held.is_empty()
        });
        self.len -= removed;
    }

    fn evict_one(&mut self) -> bool {
        // Any entry will do for a cache; the first key is the cheapest to
        // find and, keys being hashes, unrelated to who asked.
        let Some(mut entry) = self.map.first_entry() else {
            return false;
        };
        entry.get_mut().pop();
        if entry.get().is_empty() {
            entry.remove();
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate, SecretKey};

    const NOW: u64 = 1_800_000_000;

    fn record(n: u8, sequence: u64, expires: u64) -> Arc<SignedRecord> {
        let ca = CaSecret::new([1; 32], "net", NOW - 100, NOW + 100_000).unwrap();
        let mut seed = [n; 64];
        seed[0] = 0x40;
        let secret = SecretKey::from_random(seed);
        let cert = ca
            .sign(&CertificateTemplate {
                name: format!("n{n}"),
                public_key: secret.public(),
                ipv4: None,
                groups: vec![],
                not_before: NOW - 10,
                not_after: NOW + 100_000,
            })
            .unwrap();
        SignedRecord::sign(&secret, &cert, sequence, expires, &[], &[]).shared()
    }

    #[test]
    fn newer_records_replace_older_ones_of_the_same_node() {
        let mut map = RecordMap::new(10);
        let key = Key([1; 32]);
        assert_eq!(
            map.insert(key, record(2, 5, NOW + 60), false),
            Insert::Stored
        );
        assert_eq!(
            map.insert(key, record(2, 5, NOW + 60), false),
            Insert::Stale
        );
        assert_eq!(
            map.insert(key, record(2, 4, NOW + 60), false),
            Insert::Stale
        );
        assert_eq!(
            map.insert(key, record(2, 6, NOW + 60), false),
            Insert::Stored
        );
        assert_eq!(map.len(), 1);
        let name = Target::Name("n2".into());
        // Found under the name's key only.
        assert!(map.find(&name, NOW).is_none());
        let key = name.key();
        map.insert(key, record(2, 7, NOW + 60), false);
        assert_eq!(map.find(&name, NOW).unwrap().record.sequence, 7);
        assert!(map.find(&name, NOW + 60).is_none(), "expired");
    }

    #[test]
    fn a_full_store_refuses_and_a_full_cache_evicts() {
        let mut store = RecordMap::new(2);
        assert_eq!(
            store.insert(Key([1; 32]), record(2, 1, NOW + 60), false),
            Insert::Stored
        );
        assert_eq!(
            store.insert(Key([2; 32]), record(3, 1, NOW + 60), false),
            Insert::Stored
        );
        assert_eq!(
            store.insert(Key([3; 32]), record(4, 1, NOW + 60), false),
            Insert::Full
        );
        // A newer record of a held node still replaces it.
        assert_eq!(
            store.insert(Key([1; 32]), record(2, 2, NOW + 60), false),
            Insert::Stored
        );
        assert_eq!(
            store.insert(Key([3; 32]), record(4, 1, NOW + 60), true),
            Insert::Stored
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn records_per_key_are_bounded_keeping_the_newest() {
        let mut map = RecordMap::new(100);
        let key = Key([9; 32]);
        for n in 0..MAX_PER_KEY as u8 {
            assert_eq!(
                map.insert(key, record(10 + n, 10, NOW + 60), false),
                Insert::Stored
            );
        }
        assert_eq!(
            map.insert(key, record(50, 9, NOW + 60), false),
            Insert::Full
        );
        assert_eq!(
            map.insert(key, record(51, 11, NOW + 60), false),
            Insert::Stored
        );
        assert_eq!(map.len(), MAX_PER_KEY);
    }

    #[test]
    fn ipv6_targets_match_by_id_prefix_and_purge_drops_expired() {
        let mut map = RecordMap::new(10);
        let r = record(2, 1, NOW + 60);
        let id = r.record.node_id();
        map.insert(Key(*id.as_bytes()), Arc::clone(&r), false);
        map.insert(Key([0xff; 32]), record(3, 1, NOW + 30), false);
        let found = map.find(&Target::Ipv6(id.overlay_ipv6()), NOW).unwrap();
        assert_eq!(found.record.node_id(), id);
        let mut other = id.overlay_ipv6().octets();
        other[15] ^= 1;
        assert!(map.find(&Target::Ipv6(other.into()), NOW).is_none());
        map.purge(NOW + 30);
        assert_eq!(map.len(), 1);
        map.purge(NOW + 60);
        assert_eq!(map.len(), 0);
    }
}
