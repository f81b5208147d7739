//! Multicast configuration and group policy.
//!
//! A node's certificate lists its groups (labels such as `media`). Rules map
//! ranges of multicast addresses to the certificate groups allowed to join
//! them (`members`) and to send to them (`senders`). For a given multicast
//! address the rule with the longest matching prefix decides (the first one
//! listed among equally long prefixes), so an operator can restrict
//! `239.0.0.0/8` and open `239.1.0.0/16` again. In the deciding rule, an
//! empty list allows anyone, otherwise a certificate needs one of the listed
//! groups. An address that no rule matches is open to everyone: without
//! rules, multicast is open.

use std::net::IpAddr;

use super::DEFAULT_FANOUT;

/// Multicast settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastConfig {
    /// Most children a node takes in a distribution tree (unless a member
    /// can be reached no other way; see [`super::Tree::over_fanout`]).
    pub fanout: usize,
    /// Groups this node joins at start.
    pub groups: Vec<IpAddr>,
    /// Who may join and send, by address range.
    pub rules: Vec<GroupRule>,
}

impl Default for MulticastConfig {
    fn default() -> Self {
        Self {
            fanout: DEFAULT_FANOUT,
            groups: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Who may join and send to a range of multicast addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The range: an address and a prefix length (bits; a length beyond the
    /// address's width counts as the full width).
    pub groups: (IpAddr, u8),
    /// Certificate groups whose holders may join; empty: anyone.
    pub members: Vec<String>,
    /// Certificate groups whose holders may send; empty: anyone.
    pub senders: Vec<String>,
}

impl Default for GroupRule {
    /// Matches every IPv4 multicast address and allows anyone.
    fn default() -> Self {
        Self {
            groups: (IpAddr::V4(std::net::Ipv4Addr::new(224, 0, 0, 0)), 4),
            members: Vec::new(),
            senders: Vec::new(),
        }
    }
}

impl GroupRule {
    /// Whether `group` lies in this rule's range (same family only).
    pub fn matches(&self, group: IpAddr) -> bool {
        prefix_matches(self.groups, group)
    }
}

impl MulticastConfig {
    /// Whether a node whose certificate holds `cert_groups` may join `group`.
    pub fn may_join(&self, group: IpAddr, cert_groups: &[String]) -> bool {
        self.rule_for(group)
            .is_none_or(|rule| allows(&rule.members, cert_groups))
    }

    /// Whether a node whose certificate holds `cert_groups` may send to
    /// `group`.
    pub fn may_send(&self, group: IpAddr, cert_groups: &[String]) -> bool {
        self.rule_for(group)
            .is_none_or(|rule| allows(&rule.senders, cert_groups))
    }

    /// The deciding rule: the longest matching prefix, the first listed on
    /// ties.
    fn rule_for(&self, group: IpAddr) -> Option<&GroupRule> {
        let mut best: Option<&GroupRule> = None;
        for rule in self.rules.iter().filter(|rule| rule.matches(group)) {
            if best.is_none_or(|b| prefix_len(rule.groups) > prefix_len(b.groups)) {
                best = Some(rule);
            }
        }
        best
    }
}

/// Parses `239.1.0.0/16`, `ff3e::/16` or a bare address (a host prefix).
/// Host bits beyond the prefix are allowed and ignored when matching.
pub fn parse_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr.trim().parse().ok()?;
    let width = width(addr);
    let len = match len {
        Some(len) => len.trim().parse::<u8>().ok().filter(|l| *l <= width)?,
        None => width,
    };
    Some((addr, len))
}

fn allows(allowed: &[String], cert_groups: &[String]) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| cert_groups.contains(a))
}

fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn prefix_len(prefix: (IpAddr, u8)) -> u8 {
    prefix.1.min(width(prefix.0))
}

/// Whether `addr` lies in `prefix` (same family only; a length beyond the
/// address's width counts as the full width).
pub(crate) fn prefix_matches(prefix: (IpAddr, u8), addr: IpAddr) -> bool {
    let len = u32::from(prefix_len(prefix));
    match (prefix.0, addr) {
        (IpAddr::V4(p), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            (u32::from(p) ^ u32::from(a)) & mask == 0
        }
        (IpAddr::V6(p), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            (u128::from(p) ^ u128::from(a)) & mask == 0
        }
        (IpAddr::V4(_), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn rule(prefix: &str, members: &[&str], senders: &[&str]) -> GroupRule {
        GroupRule {
            groups: parse_prefix(prefix).unwrap(),
            members: groups(members),
            senders: groups(senders),
        }
    }

    #[test]
    fn without_rules_everyone_may_join_and_send() {
        let config = MulticastConfig::default();
        assert_eq!(config.fanout, 8);
        assert!(config.may_join(ip("239.1.2.3"), &[]));
        assert!(config.may_send(ip("ff3e::1"), &groups(&["x"])));
    }

    #[test]
    fn ipv4_rules_match_by_prefix() {
        let config = MulticastConfig {
            rules: vec![rule("239.1.0.0/16", &["media"], &["studio"])],
            ..MulticastConfig::default()
        };
        let media = groups(&["ops", "media"]);
        let studio = groups(&["studio"]);
        assert!(config.may_join(ip("239.1.2.3"), &media));
        assert!(!config.may_join(ip("239.1.2.3"), &studio));
        assert!(!config.may_join(ip("239.1.2.3"), &[]));
        assert!(config.may_send(ip("239.1.255.255"), &studio));
        assert!(!config.may_send(ip("239.1.0.0"), &media));
        // Outside the range: open.
        assert!(config.may_join(ip("239.2.0.1"), &[]));
        assert!(config.may_send(ip("239.0.255.255"), &[]));
        // Another family never matches an IPv4 rule.
        assert!(config.may_join(ip("ff3e::1"), &[]));
    }

    #[test]
    fn ipv6_rules_match_by_prefix() {
        let config = MulticastConfig {
            rules: vec![rule("ff3e:0:0:0:0:0:8000::/97", &["media"], &[])],
            ..MulticastConfig::default()
        };
        assert!(!config.may_join(ip("ff3e::8000:1"), &[]));
        assert!(!config.may_join(ip("ff3e::ffff:ffff"), &[]));
        assert!(config.may_join(ip("ff3e::8000:1"), &groups(&["media"])));
        assert!(
            config.may_join(ip("ff3e::7fff:ffff"), &[]),
            "bit 97 differs"
        );
        assert!(
            config.may_send(ip("ff3e::8000:1"), &[]),
            "empty senders: anyone"
        );
        assert!(config.may_join(ip("239.128.0.1"), &[]));
    }

    #[test]
    fn the_longest_matching_prefix_decides() {
        let config = MulticastConfig {
            rules: vec![
                rule("239.0.0.0/8", &["staff"], &["staff"]),
                rule("239.1.0.0/16", &[], &[]),
                rule("239.1.2.0/24", &["a"], &[]),
                rule("239.1.2.0/24", &["b"], &[]),
            ],
            ..MulticastConfig::default()
        };
        assert!(!config.may_join(ip("239.9.0.1"), &[]));
        assert!(config.may_join(ip("239.9.0.1"), &groups(&["staff"])));
        assert!(config.may_join(ip("239.1.9.1"), &[]), "reopened");
        assert!(config.may_send(ip("239.1.9.1"), &[]));
        assert!(config.may_join(ip("239.1.2.3"), &groups(&["a"])));
        assert!(
            !config.may_join(ip("239.1.2.3"), &groups(&["b"])),
            "first of equals"
        );
    }

    #[test]
    fn zero_and_full_length_prefixes() {
        let any = GroupRule {
            groups: (ip("0.0.0.0"), 0),
            ..GroupRule::default()
        };
        assert!(any.matches(ip("239.1.2.3")) && !any.matches(ip("ff3e::1")));
        let any6 = GroupRule {
            groups: (ip("::"), 0),
            ..GroupRule::default()
        };
        assert!(any6.matches(ip("ff3e::1")));
        let host = GroupRule {
            groups: (ip("239.1.2.3"), 200),
            ..GroupRule::default()
        };
        assert!(host.matches(ip("239.1.2.3")) && !host.matches(ip("239.1.2.4")));
        assert!(GroupRule::default().matches(ip("239.1.2.3")));
        assert!(!GroupRule::default().matches(ip("198.19.0.1")));
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(parse_prefix("239.1.0.0/16"), Some((ip("239.1.0.0"), 16)));
        assert_eq!(parse_prefix("239.1.2.3"), Some((ip("239.1.2.3"), 32)));
        assert_eq!(parse_prefix("ff3e::/16"), Some((ip("ff3e::"), 16)));
        assert_eq!(parse_prefix("ff3e::1"), Some((ip("ff3e::1"), 128)));
        assert_eq!(parse_prefix("239.1.0.0/33"), None);
        assert_eq!(parse_prefix("ff3e::/129"), None);
        assert_eq!(parse_prefix("239.1.0.0/"), None);
        assert_eq!(parse_prefix("media"), None);
    }
}
