//! The running node's firewall as operators see it: the `firewall` object
//! of the status, one line in `weft status`, and the per-rule table of
//! `weft status --firewall`.
//!
//! [`FirewallInfo`] is built by the daemon from the core's
//! [`FirewallStats`] with [`FirewallInfo::from_core`]; `weft status`,
//! `/metrics` and the tests all read that one object. Counts are packets:
//! for an allow rule, the flows it let start (later packets pass as part of
//! the flow and are counted as `tracked_packets`); for a drop or reject
//! rule, the packets it refused.

use serde::{Deserialize, Serialize};
use weft_core::firewall::{DirectionStats, FirewallStats};

use crate::status::render_columns;

/// The `firewall` object of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallInfo {
    /// Whether the node filters at all (no `[firewall]` section: off).
    pub enabled: bool,
    /// Packets from peers.
    pub inbound: FirewallDirectionInfo,
    /// Packets to peers and groups.
    pub outbound: FirewallDirectionInfo,
    /// Packets passed as part of a tracked flow.
    pub tracked_packets: u64,
    /// ICMP errors passed as related to a tracked flow.
    pub related_packets: u64,
    /// Flows in the connection table.
    pub conntrack_entries: usize,
    /// Its bound.
    pub conntrack_max: usize,
    /// Flows evicted to make room.
    pub conntrack_evicted: u64,
    /// Flows that timed out.
    pub conntrack_expired: u64,
    /// Tracked flows that, judged again, the rules no longer allowed
    /// (after a reload of the rules, or a peer's new certificate).
    #[serde(default)]
    pub conntrack_closed_by_reload: u64,
}

/// One direction of [`FirewallInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallDirectionInfo {
    /// What packets no rule matches get: `allow`, `drop` or `reject`.
    pub default_action: String,
    /// Packets the default decided.
    pub default_packets: u64,
    /// Packets dropped or rejected, by rules and the default.
    pub dropped: u64,
    /// The rules, in order.
    pub rules: Vec<FirewallRuleInfo>,
}

/// One rule of [`FirewallDirectionInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRuleInfo {
    /// Its name, or its place (`inbound[2]`).
    pub rule: String,
    /// `allow`, `drop` or `reject`.
    pub action: String,
    /// Packets it decided.
    pub packets: u64,
}

impl FirewallInfo {
    /// The object for the core's counters.
    pub fn from_core(stats: &FirewallStats) -> Self {
        Self {
            enabled: stats.enabled,
            inbound: direction(&stats.inbound),
            outbound: direction(&stats.outbound),
            tracked_packets: stats.tracked,
            related_packets: stats.related,
            conntrack_entries: stats.conntrack_entries,
            conntrack_max: stats.conntrack_max,
            conntrack_evicted: stats.conntrack_evicted,
            conntrack_expired: stats.conntrack_expired,
            conntrack_closed_by_reload: stats.conntrack_closed_by_reload,
        }
    }
}

fn direction(stats: &DirectionStats) -> FirewallDirectionInfo {
    FirewallDirectionInfo {
        default_action: stats.default_action.as_str().to_owned(),
        default_packets: stats.default_packets,
        dropped: stats.dropped(),
        rules: stats
            .rules
            .iter()
            .map(|r| FirewallRuleInfo {
                rule: r.label.clone(),
                action: r.action.as_str().to_owned(),
                packets: r.packets,
            })
            .collect(),
    }
}

/// The line `weft status` prints about the firewall.
pub fn render_line(info: &FirewallInfo) -> String {
    if !info.enabled {
        return "firewall off (every member may reach every port)\n".to_owned();
    }
    format!(
        "firewall inbound {} rules, default {}, {} dropped  outbound {} rules, default {}, {} dropped  flows {}/{} ({} evicted)\n",
        info.inbound.rules.len(),
        info.inbound.default_action,
        info.inbound.dropped,
        info.outbound.rules.len(),
        info.outbound.default_action,
        info.outbound.dropped,
        info.conntrack_entries,
        info.conntrack_max,
        info.conntrack_evicted,
    )
}

/// The per-rule table of `weft status --firewall`: every rule and each
/// direction's default, with the packets each decided.
pub fn render_rules(info: &FirewallInfo) -> String {
    if !info.enabled {
        return render_line(info);
    }
    let header = ["DIRECTION", "RULE", "ACTION", "PACKETS"].map(String::from);
    let mut rows: Vec<[String; 4]> = Vec::new();
    for (name, direction) in [("inbound", &info.inbound), ("outbound", &info.outbound)] {
        for rule in &direction.rules {
            rows.push([
                name.to_owned(),
                rule.rule.clone(),
                rule.action.clone(),
                rule.packets.to_string(),
            ]);
        }
        rows.push([
            name.to_owned(),
            "(default)".to_owned(),
            direction.default_action.clone(),
            direction.default_packets.to_string(),
        ]);
    }
    let mut out = render_columns(&header, &rows);
    out.push_str(&format!(
        "{} packets passed as tracked flows, {} as related ICMP errors; {} of {} flows tracked, {} evicted, {} expired\n",
        info.tracked_packets,
        info.related_packets,
        info.conntrack_entries,
        info.conntrack_max,
        info.conntrack_evicted,
        info.conntrack_expired
    ));
    if info.conntrack_closed_by_reload > 0 {
        out.push_str(&format!(
            "{} tracked flows closed because, judged again (rules reloaded, or a peer's new certificate), the rules no longer allow them\n",
            info.conntrack_closed_by_reload
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use weft_core::firewall::{Action, RuleStats};

    use super::*;

    fn info() -> FirewallInfo {
        FirewallInfo::from_core(&FirewallStats {
            enabled: true,
            inbound: DirectionStats {
                rules: vec![
                    RuleStats {
                        label: "db".into(),
                        action: Action::Allow,
                        packets: 4,
                    },
                    RuleStats {
                        label: "inbound[1]".into(),
                        action: Action::Reject,
                        packets: 2,
                    },
                ],
                default_action: Action::Drop,
                default_packets: 5,
            },
            outbound: DirectionStats {
                rules: Vec::new(),
                default_action: Action::Allow,
                default_packets: 9,
            },
            tracked: 100,
            related: 1,
            conntrack_entries: 3,
            conntrack_max: 65_536,
            conntrack_evicted: 0,
            conntrack_expired: 7,
            conntrack_closed_by_reload: 0,
        })
    }

    #[test]
    fn the_status_line_sums_the_drops_of_each_direction() {
        let line = render_line(&info());
        assert_eq!(
            line,
            "firewall inbound 2 rules, default drop, 7 dropped  outbound 0 rules, default allow, 0 dropped  flows 3/65536 (0 evicted)\n"
        );
        let mut off = info();
        off.enabled = false;
        assert!(render_line(&off).starts_with("firewall off"));
    }

    #[test]
    fn the_rule_table_lists_every_rule_and_default() {
        let table = render_rules(&info());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "DIRECTION  RULE        ACTION  PACKETS");
        assert_eq!(lines[1], "inbound    db          allow   4");
        assert_eq!(lines[2], "inbound    inbound[1]  reject  2");
        assert_eq!(lines[3], "inbound    (default)   drop    5");
        assert_eq!(lines[4], "outbound   (default)   allow   9");
        assert!(lines[5].starts_with("100 packets passed as tracked flows"));
    }
}
