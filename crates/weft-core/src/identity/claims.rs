//! Conflicting claims: two node ids whose certificates carry one name or
//! one overlay IPv4 address.
//!
//! A CA that signs a name or an address twice, for two keys, is a mistake
//! the certificates alone cannot reveal: each verifies. Every node applies
//! the same rule wherever two such certificates meet (sessions, link state,
//! DHT records), so all nodes agree on who holds the name or address
//! (docs/PROTOCOL.md §9.3): the certificate with the earlier `not_before`
//! wins; on a tie, the smaller node id. The loser keeps its node id and
//! overlay IPv6 address (bound to its key, they cannot conflict) but not
//! the contested name or IPv4 address. The rule holds until the winner's
//! certificate is revoked or expires; then the next claimant wins.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use super::NodeId;
use super::cert::Certificate;

/// Conflicts remembered at most; further ones are still counted and logged.
pub const MAX_CONFLICTS: usize = 64;

/// What two certificates both claim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    /// A node name.
    Name(String),
    /// An overlay IPv4 address.
    Ipv4(Ipv4Addr),
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Name(name) => write!(f, "name {name}"),
            Claim::Ipv4(addr) => write!(f, "ipv4 {addr}"),
        }
    }
}

/// Two node ids claiming one name or address, and which of them holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimConflict {
    /// The contested name or address.
    pub claim: Claim,
    /// The node that holds it under the rule.
    pub winner: NodeId,
    /// The node that does not.
    pub loser: NodeId,
}

/// Whether certificate `a` prevails over `b` for a claim both make: the
/// earlier `not_before` wins, then the smaller node id.
pub fn prevails(a: &Certificate, b: &Certificate) -> bool {
    (a.not_before(), a.node_id()) < (b.not_before(), b.node_id())
}

/// The conflicts between two certificates of different node ids, with the
/// rule applied; empty when they claim nothing in common (or are one node's).
pub fn conflicts_between(a: &Certificate, b: &Certificate) -> Vec<ClaimConflict> {
    if a.node_id() == b.node_id() {
        return Vec::new();
    }
    let (winner, loser) = if prevails(a, b) {
        (a.node_id(), b.node_id())
    } else {
        (b.node_id(), a.node_id())
    };
    let mut claims = Vec::new();
    if a.name() == b.name() {
        claims.push(Claim::Name(a.name().to_owned()));
    }
    if let (Some(x), Some(y)) = (a.ipv4(), b.ipv4())
        && x.addr == y.addr
    {
        claims.push(Claim::Ipv4(x.addr));
    }
    claims
        .into_iter()
        .map(|claim| ClaimConflict {
            claim,
            winner,
            loser,
        })
        .collect()
}

/// The conflicts a node has seen, bounded by [`MAX_CONFLICTS`].
#[derive(Debug, Default)]
pub(crate) struct ConflictLog {
    by_claim: BTreeMap<(Claim, NodeId), ClaimConflict>,
}

impl ConflictLog {
    /// Notes a conflict; true when it is news (not seen with this winner
    /// and loser before), so the caller counts and logs it once.
    pub(crate) fn note(&mut self, conflict: ClaimConflict) -> bool {
        let key = (conflict.claim.clone(), conflict.loser);
        if self.by_claim.get(&key) == Some(&conflict) {
            return false;
        }
        if self.by_claim.len() < MAX_CONFLICTS || self.by_claim.contains_key(&key) {
            self.by_claim.insert(key, conflict);
        }
        true
    }

    /// Forgets the conflicts a node takes part in (its certificate was
    /// revoked).
    pub(crate) fn forget(&mut self, id: &NodeId) {
        self.by_claim
            .retain(|_, c| c.winner != *id && c.loser != *id);
    }

    /// The conflicts, ordered by claim.
    pub(crate) fn list(&self) -> Vec<ClaimConflict> {
        self.by_claim.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::identity::cert::{CaSecret, CertificateTemplate};

    fn cert(name: &str, ipv4: &str, seed: u8, not_before: u64) -> Certificate {
        let ca = CaSecret::new([1; 32], "testnet", 1_000, 1_000_000).unwrap();
        ca.sign(&CertificateTemplate {
            name: name.into(),
            public_key: SecretKey::from_random([seed; 64]).public(),
            ipv4: Some(ipv4.parse().unwrap()),
            groups: Vec::new(),
            not_before,
            not_after: 900_000,
        })
        .unwrap()
    }

    #[test]
    fn earlier_certificate_wins_a_shared_name() {
        let first = cert("c", "198.19.0.3/16", 1, 2_000);
        let second = cert("c", "198.19.0.4/16", 2, 3_000);
        let expected = vec![ClaimConflict {
            claim: Claim::Name("c".into()),
            winner: first.node_id(),
            loser: second.node_id(),
        }];
        assert_eq!(conflicts_between(&first, &second), expected);
        assert_eq!(conflicts_between(&second, &first), expected);
    }

    #[test]
    fn equal_not_before_falls_to_the_smaller_node_id() {
        let a = cert("a", "198.19.0.9/16", 1, 2_000);
        let b = cert("b", "198.19.0.9/16", 2, 2_000);
        let winner = a.node_id().min(b.node_id());
        let found = conflicts_between(&a, &b);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].claim, Claim::Ipv4("198.19.0.9".parse().unwrap()));
        assert_eq!(found[0].winner, winner);
        assert_eq!(prevails(&a, &b), winner == a.node_id());
    }

    #[test]
    fn one_node_or_disjoint_claims_are_no_conflict() {
        let a = cert("a", "198.19.0.1/16", 1, 2_000);
        let renewed = cert("a", "198.19.0.1/16", 1, 5_000);
        let b = cert("b", "198.19.0.2/16", 2, 2_000);
        assert!(conflicts_between(&a, &renewed).is_empty());
        assert!(conflicts_between(&a, &b).is_empty());
    }

    #[test]
    fn log_reports_each_conflict_once_and_stays_bounded() {
        let mut log = ConflictLog::default();
        let a = cert("a", "198.19.0.1/16", 1, 2_000);
        let b = cert("a", "198.19.0.2/16", 2, 3_000);
        let conflict = conflicts_between(&a, &b).remove(0);
        assert!(log.note(conflict.clone()));
        assert!(!log.note(conflict));
        for i in 0..2 * MAX_CONFLICTS as u32 {
            log.note(ClaimConflict {
                claim: Claim::Ipv4(Ipv4Addr::from(i)),
                winner: a.node_id(),
                loser: b.node_id(),
            });
        }
        assert_eq!(log.list().len(), MAX_CONFLICTS);
        log.forget(&a.node_id());
        assert!(log.list().is_empty());
    }
}
