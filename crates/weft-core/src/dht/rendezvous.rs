//! Group rendezvous: the members of a multicast group, held under a key
//! derived from the group (`docs/PROTOCOL.md` §15.2).
//!
//! Each member announces a short signed entry (its node id, the group, an
//! expiry) to the `replication` nodes closest to the group's key; a member
//! looking for others asks those nodes and gets back the members nearest to
//! itself in node-id order (its ring neighbours), which is all the member
//! mesh needs. Holders verify an entry against the certificate of the
//! datagram that announced it (a node can only announce itself) and refuse
//! revoked certificates.
//!
//! Bounds: [`MAX_PER_GROUP`] entries per group key (a full key refuses
//! newcomers until entries expire), [`MAX_PER_NODE`] groups per announcing
//! node, and `max` entries in all. What does not fit is refused and counted
//! by the engine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Key;
use crate::identity::{Certificate, NodeId};
use crate::wire::MAX_MEMBERS_ANSWER;

/// BLAKE3 `derive_key` context of the key a group's rendezvous is under.
pub const GROUP_KEY_CONTEXT: &str = "weft group rendezvous v1";
/// Entries held per group key, at most.
pub(crate) const MAX_PER_GROUP: usize = 256;
/// Groups one node may have entries for at one holder (as many as one
/// membership record lists).
pub(crate) const MAX_PER_NODE: usize = crate::wire::MAX_MEMBERSHIP_GROUPS;

/// The key a group's rendezvous entries are stored under: BLAKE3
/// `derive_key("weft group rendezvous v1", family byte (4 or 6), address)`.
pub fn group_key(group: IpAddr) -> Key {
    let mut bytes = Vec::with_capacity(17);
    match group {
        IpAddr::V4(ip) => {
            bytes.push(4);
            bytes.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            bytes.push(6);
            bytes.extend_from_slice(&ip.octets());
        }
    }
    Key(blake3::derive_key(GROUP_KEY_CONTEXT, &bytes))
}

/// One member's entry as held.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) expires: u64,
    pub(crate) bytes: Vec<u8>,
    pub(crate) certificate: Certificate,
}

/// Why an entry was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The holder holds a newer or equal entry of that member.
    Stale,
    /// A bound is reached.
    Full,
}

/// Entries held for others, by group key, then member.
#[derive(Debug, Default)]
pub(crate) struct Rendezvous {
    by_key: BTreeMap<Key, BTreeMap<NodeId, Entry>>,
    per_node: BTreeMap<NodeId, usize>,
    len: usize,
    max: usize,
}

impl Rendezvous {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Entries held in all.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes `member`'s verified entry under `key` (replacing its older one).
    pub(crate) fn insert(&mut self, key: Key, member: NodeId, entry: Entry) -> Result<(), Refused> {
        let entries = self.by_key.get(&key);
        if let Some(held) = entries.and_then(|e| e.get(&member)) {
            if held.expires >= entry.expires {
                return Err(Refused::Stale);
            }
        } else if entries.is_some_and(|e| e.len() >= MAX_PER_GROUP)
            || self.len >= self.max
            || self.per_node.get(&member).copied().unwrap_or(0) >= MAX_PER_NODE
        {
            return Err(Refused::Full);
        }
        if self
            .by_key
            .entry(key)
            .or_default()
            .insert(member, entry)
            .is_none()
        {
            self.len += 1;
            *self.per_node.entry(member).or_default() += 1;
        }
        Ok(())
    }

    /// The entries under `key` nearest `requester` in node-id order (the
    /// ring of members): alternately the next after and the next before
    /// it, at most [`MAX_MEMBERS_ANSWER`], the requester left out.
    pub(crate) fn answer(&self, key: &Key, requester: &NodeId, unix_now: u64) -> Vec<&[u8]> {
        let Some(entries) = self.by_key.get(key) else {
            return Vec::new();
        };
        let live: Vec<(&NodeId, &Entry)> = entries
            .iter()
            .filter(|(id, e)| *id != requester && e.expires > unix_now)
            .collect();
        let n = live.len();
        let after = live.partition_point(|(id, _)| *id < requester);
        let mut picked = Vec::new();
        for i in 0..n.min(MAX_MEMBERS_ANSWER) {
            // 0: first after, 1: first before, 2: second after, ...
            let index = if i % 2 == 0 {
                (after + i / 2) % n
            } else {
                (after + n - 1 - i / 2) % n
            };
            if !picked.contains(&index) {
                picked.push(index);
            }
        }
        picked
            .into_iter()
            .map(|i| live[i].1.bytes.as_slice())
            .collect()
    }

    /// Keeps the entries `keep` approves of (revocation, expiry); returns
    /// how many went.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) -> usize {
        let mut gone = 0;
        let per_node = &mut self.per_node;
        self.by_key.retain(|_, entries| {
            entries.retain(|id, entry| {
                let kept = keep(entry);
                if !kept {
                    gone += 1;
                    if let Some(count) = per_node.get_mut(id) {
                        *count -= 1;
                        if *count == 0 {
                            per_node.remove(id);
                        }
                    }
                }
                kept
            });
            !entries.is_empty()
        });
        self.len -= gone;
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{CaSecret, CertificateTemplate, SecretKey};

    fn certificate() -> Certificate {
        let ca = CaSecret::new([1; 32], "net", 0, 1_000).unwrap();
        let secret = SecretKey::from_random([2; 64]);
        ca.sign(&CertificateTemplate {
            name: "m".into(),
            public_key: secret.public(),
            ipv4: None,
            groups: vec![],
            not_before: 0,
            not_after: 1_000,
        })
        .unwrap()
    }

    fn entry(expires: u64) -> Entry {
        Entry {
            expires,
            bytes: expires.to_be_bytes().to_vec(),
            certificate: certificate(),
        }
    }

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn answers_are_the_requesters_ring_neighbours() {
        let mut store = Rendezvous::new(100);
        let key = Key([7; 32]);
        for n in 1..=10u8 {
            store
                .insert(key, id(n * 10), entry(u64::from(n) + 100))
                .unwrap();
        }
        let answer = store.answer(&key, &id(55), 0);
        let got: Vec<u64> = answer
            .iter()
            .map(|b| u64::from_be_bytes((*b).try_into().unwrap()))
            .collect();
        // after 55: 60 (106), before: 50 (105), then 70, 40, 80, 30.
        assert_eq!(got, vec![106, 105, 107, 104, 108, 103]);
        // The ring wraps, and the requester is left out.
        let got = store.answer(&key, &id(100), 0).len();
        assert_eq!(got, MAX_MEMBERS_ANSWER);
    }

    #[test]
    fn entries_are_bounded_per_group_per_node_and_in_all() {
        let mut store = Rendezvous::new(MAX_PER_GROUP + 10);
        for n in 0..MAX_PER_GROUP + 5 {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
            let result = store.insert(Key([1; 32]), NodeId::from_bytes(bytes), entry(10));
            assert_eq!(result.is_ok(), n < MAX_PER_GROUP);
        }
        for g in 0..MAX_PER_NODE + 3 {
            let result = store.insert(Key([g as u8 + 2; 32]), id(1), entry(10));
            assert_eq!(result.is_ok(), g < MAX_PER_NODE.min(10));
        }
        assert_eq!(store.len(), MAX_PER_GROUP + 10);
        assert_eq!(
            store.insert(Key([1; 32]), id(1), entry(10)),
            Err(Refused::Full)
        );
        // A newer entry of a held member replaces it even when full.
        let held = {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&3u64.to_be_bytes());
            NodeId::from_bytes(bytes)
        };
        assert_eq!(
            store.insert(Key([1; 32]), held, entry(10)),
            Err(Refused::Stale)
        );
        assert!(store.insert(Key([1; 32]), held, entry(11)).is_ok());
        assert_eq!(store.len(), MAX_PER_GROUP + 10);
        assert_eq!(store.retain(|e| e.expires > 10), MAX_PER_GROUP + 9);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn group_keys_differ_by_group_and_family() {
        let a = group_key("239.1.1.1".parse().unwrap());
        let b = group_key("239.1.1.2".parse().unwrap());
        let c = group_key("::ffff:239.1.1.1".parse().unwrap());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
