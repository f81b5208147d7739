//! Multicast building blocks: scopes, policy, distribution trees, the
//! duplicate window and the kernel's IGMP/MLD reports.
//!
//! Everything here is pure (no state machine, no time): the node composes it.
//! A group is its multicast IP address. Only groups of carried scope
//! ([`is_carried`]) travel over the overlay; the others stay on the local
//! host. Membership travels in signed records (`wire::MembershipRecord`,
//! flooded like link state); data travels in `Frame::Multicast` frames along
//! a source-rooted, fan-out-bounded shortest-path tree ([`build_tree`]) that
//! every node computes alike from its own link-state graph; receivers drop
//! copies they have already seen ([`DuplicateWindow`]). The layout and the
//! rules are in `docs/PROTOCOL.md` §15.

mod config;
mod report;
mod tree;
mod window;

use std::net::IpAddr;
use std::time::Duration;

pub(crate) use config::prefix_matches;
pub use config::{GroupRule, MulticastConfig, parse_prefix};
pub use report::{GroupReport, ReportError, parse_reports};
pub use tree::{
    COST_FLOOR_US, MAX_TREE_DEPTH, TREE_COST_EXPONENT, Topology, Tree, build_tree, tree_cost,
};
pub use window::DuplicateWindow;

pub use crate::wire::MAX_MULTICAST_HOPS;

/// Default per-node fan-out bound of distribution trees.
pub const DEFAULT_FANOUT: usize = 8;
/// A node re-sends its membership record this often, and at once on change.
pub const MEMBERSHIP_REFRESH: Duration = Duration::from_secs(10);
/// A membership record is valid this long after it arrives (3.5 refreshes).
pub const MEMBERSHIP_LIFETIME: Duration = Duration::from_secs(35);

/// Whether packets to `group` travel over the overlay: IPv4 224.0.0.0/4
/// except the link-local block 224.0.0.0/24, and IPv6 ff00::/8 with a scope
/// nibble of 3 or more (not interface-local 1, link-local 2 or reserved 0).
/// Unicast addresses are never carried.
pub fn is_carried(group: IpAddr) -> bool {
    match group {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_multicast() && !(o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            o[0] == 0xff && (o[1] & 0x0f) >= 3
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carried(text: &str) -> bool {
        is_carried(text.parse().unwrap())
    }

    #[test]
    fn ipv4_scopes_beyond_the_local_block_are_carried() {
        assert!(carried("224.0.1.1"));
        assert!(carried("239.1.2.3"));
        assert!(carried("239.255.255.255"));
        assert!(carried("225.0.0.1"), "only 224.0.0.0/24 is link-local");
        assert!(!carried("224.0.0.1"));
        assert!(!carried("224.0.0.22"), "IGMPv3 reports stay local");
        assert!(!carried("224.0.0.251"), "mDNS stays local");
        assert!(!carried("223.255.255.255"));
        assert!(!carried("240.0.0.1"));
        assert!(!carried("198.19.0.1"));
    }

    #[test]
    fn ipv6_scopes_beyond_link_local_are_carried() {
        assert!(carried("ff03::1"), "realm-local");
        assert!(carried("ff05::1:3"), "site-local");
        assert!(carried("ff08::1"));
        assert!(carried("ff0e::1234"), "global");
        assert!(carried("ff3e::8000:1"), "source-specific, global");
        assert!(carried("ff1e::1"), "transient flag does not matter");
        assert!(carried("ff0f::1"));
        assert!(!carried("ff00::1"), "reserved scope 0");
        assert!(!carried("ff01::1"), "interface-local");
        assert!(!carried("ff02::1"), "link-local");
        assert!(!carried("ff02::16"), "MLDv2 reports stay local");
        assert!(!carried("ff12::1"));
        assert!(!carried("fd77:6566::1"));
        assert!(!carried("fe80::1"));
    }
}
