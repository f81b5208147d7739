//! The firewall: who may talk to whom inside the overlay, by ordered rules
//! on the packet and on the certificate of the node at the other end, with
//! stateful tracking so that replies pass.
//!
//! The node asks [`Firewall::check`] about every IP packet between the TUN
//! and the overlay, in both directions: each packet read from the TUN
//! before it is queued for a peer (or sent to a multicast group), each
//! packet from a peer before it is written to the TUN (multicast too).
//! Relays never ask: a relay forwards sealed packets it cannot read, and
//! the endpoints decide. The peer the rules see is the end-to-end peer
//! whose session carried the packet, whose source address the node has
//! already checked against its certificate; for multicast received it is
//! the packet's origin, for multicast sent there is none.
//!
//! # Design note
//!
//! - **Off unless configured.** A node whose configuration has no
//!   firewall passes everything and tracks nothing (membership in the CA
//!   is then the only wall, as it was before the firewall existed), so an
//!   existing network keeps working when nodes are upgraded. Once a
//!   firewall is configured, inbound traffic defaults to
//!   [`Action::Drop`] and outbound to [`Action::Allow`]: a node offers
//!   only the services its operator lists, and its own applications may
//!   reach anything the other nodes' firewalls accept (what Nebula,
//!   Tailscale ACLs and host firewalls do by default).
//! - **Order of decision.** (1) A packet of a tracked flow passes, in
//!   either direction, and refreshes the flow. (2) An ICMP error about a
//!   tracked flow, from that flow's other end, passes (path MTU, port
//!   unreachable). (3) Otherwise the direction's rules are tried in order
//!   and the first match decides; without a match, the direction's
//!   default does. (4) Allowed unicast flows are tracked, so replies pass
//!   step 1 whatever the other direction's rules say. Multicast and
//!   broadcast are judged by the rules alone, every packet, and never
//!   tracked: a reply to a group comes from a unicast address.
//! - **Reject.** [`Verdict::Reject`] asks the node to answer: a TCP RST
//!   (RFC 9293 §3.10.7.1) for TCP, else an ICMP "administratively
//!   prohibited" error (ICMP 3/13, ICMPv6 1/1), from the rejected packet's
//!   destination to its source. A rejected inbound packet's answer goes
//!   back to the peer through the overlay; a rejected outbound packet's to
//!   the local application through the TUN, so it fails at once instead of
//!   waiting out its timeouts. Multicast is dropped, never answered.
//! - **State.** See `conntrack.rs`: stated timeouts per protocol and
//!   state, a bounded table that evicts the flow closest to expiry, lazy
//!   expiry without timers.
//! - **Counted.** Every rule counts the packets it decided, as does each
//!   direction's default; [`FirewallStats`] has them all, labelled.
//! - **New rules at run time** ([`Firewall::reconfigure`], a config
//!   reload). New rules decide every new flow at once. A flow already
//!   tracked is judged again by the new rules at its next packet (or the
//!   next ICMP error about it), as if that flow's first packet came again
//!   from the same peer: still allowed, it goes on as before; no longer
//!   allowed, its entry goes (`conntrack_closed_by_reload`) and the packet
//!   meets its own direction's rules like the first packet of a new flow
//!   (a client's next packet to a port no longer served is dropped; a
//!   server's own packets to the client pass only if the outbound rules
//!   would let this node open that flow). This is what
//!   Nebula does: a reload never widens what an established connection
//!   may do, and never cuts one the new rules still allow. Counters: a
//!   rule keeps its count if the new rules hold the same rule under the
//!   same label (an unnamed rule's label is its place), else it starts
//!   from zero; a default keeps its count if its action stays; the table's
//!   counters go on. Turning the firewall off forgets every flow; turning
//!   it on starts with an empty table, so every flow is then judged as
//!   new at its next packet. The same judging again follows a peer's new
//!   certificate with another name or other groups (a renewal), through
//!   [`Firewall::judge_flows_again`].
//! - **Cost.** Per packet of a tracked flow: one map lookup in a table of
//!   at most `max_entries` flows and a bounded sweep; rules run only for
//!   the first packet of a flow. No allocation per packet except a new
//!   table entry.

mod conntrack;
mod flow;
mod rule;
#[cfg(test)]
mod tests;

use std::time::Instant;

pub use conntrack::{ConntrackConfig, MAX_CONNTRACK_ENTRIES, SWEEP_BUDGET, TCP_CLOSING_TIMEOUT};

use conntrack::{Conntrack, Opening, Track};
pub use flow::Direction;
pub use rule::{Action, IcmpType, PortMatch, Protocol, Rule};

pub(crate) use flow::is_group;
use flow::{FlowKey, View};
use rule::CompiledRule;

use crate::identity::{CaCertificate, Certificate};
use crate::qos::PacketInfo;

/// Most rules per direction (the first packet of a flow is tried against
/// them in order).
pub const MAX_RULES: usize = 1024;

/// The firewall's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallConfig {
    /// Whether packets are filtered at all. Off (the [`Default`]), the
    /// firewall passes everything and tracks nothing.
    pub enabled: bool,
    /// Rules for packets from peers, in order.
    pub inbound: Vec<Rule>,
    /// Rules for packets to peers, in order.
    pub outbound: Vec<Rule>,
    /// What inbound packets no rule matches get ([`Action::Drop`]).
    pub inbound_default: Action,
    /// What outbound packets no rule matches get ([`Action::Allow`]).
    pub outbound_default: Action,
    /// The connection table's size and timeouts.
    pub conntrack: ConntrackConfig,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            inbound: Vec::new(),
            outbound: Vec::new(),
            inbound_default: Action::Drop,
            outbound_default: Action::Allow,
            conntrack: ConntrackConfig::default(),
        }
    }
}

impl FirewallConfig {
    /// A firewall that is on, with the default actions and no rules: no
    /// inbound flow may start, every outbound one may.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

/// Why a firewall configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallConfigError {
    /// A direction has more than [`MAX_RULES`] rules.
    #[error("{count} {direction} rules; at most {MAX_RULES} are allowed")]
    TooManyRules {
        /// `inbound` or `outbound`.
        direction: String,
        /// How many.
        count: usize,
    },
    /// A rule that cannot work as written.
    #[error("rule {rule}: {reason}")]
    Rule {
        /// The rule's label (its name, or `inbound[2]`).
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// A connection table bound out of range.
    #[error("conntrack_max {0} is out of range 1..={MAX_CONNTRACK_ENTRIES}")]
    TableSize(usize),
    /// A zero timeout.
    #[error("{0} must be longer than zero")]
    ZeroTimeout(&'static str),
}

/// What the firewall decided about a packet.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Pass,
    /// Drop it.
    Drop,
    /// Drop it and answer with a TCP RST or ICMP error (see the module doc).
    Reject,
}

/// Counters of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    /// Its name, or its place (`inbound[2]`).
    pub label: String,
    /// What it does.
    pub action: Action,
    /// Packets it decided: flows it let start, or packets it dropped or
    /// rejected.
    pub packets: u64,
}

/// Counters of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectionStats {
    /// Per rule, in order.
    pub rules: Vec<RuleStats>,
    /// The default action.
    pub default_action: Action,
    /// Packets the default decided.
    pub default_packets: u64,
}

impl DirectionStats {
    /// Packets dropped or rejected in this direction, by rules and default.
    pub fn dropped(&self) -> u64 {
        let rules: u64 = self
            .rules
            .iter()
            .filter(|r| r.action != Action::Allow)
            .map(|r| r.packets)
            .sum();
        let default = if self.default_action == Action::Allow {
            0
        } else {
            self.default_packets
        };
        rules + default
    }
}

/// A snapshot of the firewall's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallStats {
    /// Whether the firewall filters at all.
    pub enabled: bool,
    /// Inbound rules and default.
    pub inbound: DirectionStats,
    /// Outbound rules and default.
    pub outbound: DirectionStats,
    /// Packets passed as part of a tracked flow.
    pub tracked: u64,
    /// ICMP errors passed as related to a tracked flow.
    pub related: u64,
    /// Flows in the connection table.
    pub conntrack_entries: usize,
    /// Its bound.
    pub conntrack_max: usize,
    /// Flows evicted to make room for new ones.
    pub conntrack_evicted: u64,
    /// Flows removed after their timeout.
    pub conntrack_expired: u64,
    /// Tracked flows that, judged again, the rules no longer allowed
    /// (after new rules, or a peer's new certificate).
    pub conntrack_closed_by_reload: u64,
}

/// Rules of one direction with their counters.
#[derive(Debug, Clone)]
struct RuleSet {
    rules: Vec<CompiledRule>,
    /// The rules as configured, to tell which stay on a reload.
    sources: Vec<Rule>,
    packets: Vec<u64>,
    default: Action,
    default_packets: u64,
}

impl RuleSet {
    fn new(rules: Vec<CompiledRule>, sources: &[Rule], default: Action) -> Self {
        Self {
            packets: vec![0; rules.len()],
            rules,
            sources: sources.to_vec(),
            default,
            default_packets: 0,
        }
    }

    /// Takes over the counters of `old` for the rules that stay: the same
    /// rule under the same label, each old rule's count given once; and
    /// the default's if its action stays.
    fn carry_counters(&mut self, old: &RuleSet) {
        let mut given = vec![false; old.rules.len()];
        for (i, (rule, source)) in self.rules.iter().zip(&self.sources).enumerate() {
            let same = (0..old.rules.len()).find(|&j| {
                !given[j] && old.rules[j].label == rule.label && old.sources[j] == *source
            });
            if let Some(j) = same {
                given[j] = true;
                self.packets[i] = old.packets[j];
            }
        }
        if self.default == old.default {
            self.default_packets = old.default_packets;
        }
    }

    /// Whether the rules allow `view` (a tracked flow's first packet,
    /// judged again). Counts nothing: the flow was counted when it began.
    fn allows(&self, view: &View, peer: Option<&Certificate>) -> bool {
        let action = self
            .rules
            .iter()
            .find(|r| r.matches(view, peer))
            .map_or(self.default, |r| r.action);
        action == Action::Allow
    }

    fn decide(&mut self, view: &View, peer: Option<&Certificate>) -> Action {
        match self.rules.iter().position(|r| r.matches(view, peer)) {
            Some(i) => {
                self.packets[i] += 1;
                self.rules[i].action
            }
            None => {
                self.default_packets += 1;
                self.default
            }
        }
    }

    fn stats(&self) -> DirectionStats {
        DirectionStats {
            rules: self
                .rules
                .iter()
                .zip(&self.packets)
                .map(|(rule, &packets)| RuleStats {
                    label: rule.label.clone(),
                    action: rule.action,
                    packets,
                })
                .collect(),
            default_action: self.default,
            default_packets: self.default_packets,
        }
    }
}

/// The firewall of one node. See the module doc.
#[derive(Debug, Clone)]
pub struct Firewall {
    enabled: bool,
    inbound: RuleSet,
    outbound: RuleSet,
    conntrack: Conntrack,
    tracked: u64,
    related: u64,
    closed_by_reload: u64,
}

impl Firewall {
    /// Checks `config` and compiles its rules. `ca` is the CA this node
    /// trusts: rules naming a CA must name it.
    pub fn new(config: &FirewallConfig, ca: &CaCertificate) -> Result<Self, FirewallConfigError> {
        let (inbound, outbound) = compile(config, ca)?;
        Ok(Self {
            enabled: config.enabled,
            inbound,
            outbound,
            conntrack: Conntrack::new(config.conntrack),
            tracked: 0,
            related: 0,
            closed_by_reload: 0,
        })
    }

    /// Replaces the rules, defaults and table settings at run time (a
    /// config reload); see "New rules at run time" in the module doc for
    /// what happens to tracked flows and counters. On an error nothing
    /// changes.
    pub fn reconfigure(
        &mut self,
        config: &FirewallConfig,
        ca: &CaCertificate,
    ) -> Result<(), FirewallConfigError> {
        let (mut inbound, mut outbound) = compile(config, ca)?;
        inbound.carry_counters(&self.inbound);
        outbound.carry_counters(&self.outbound);
        self.inbound = inbound;
        self.outbound = outbound;
        self.enabled = config.enabled;
        self.conntrack.new_rules(config.conntrack);
        if !self.enabled {
            self.conntrack.clear();
        }
        Ok(())
    }

    /// Makes the current rules judge every tracked flow again at its next
    /// packet, as after a reload: a peer's certificate changed, and rules
    /// on its name or groups may no longer allow what they did.
    pub fn judge_flows_again(&mut self) {
        self.conntrack.new_generation();
    }

    /// Whether the firewall filters at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Decides about `packet` (whose header walk is `info`) crossing in
    /// `direction`, exchanged with `peer` (`None`: multicast sent, which
    /// has no single peer). Total; counts what it decides.
    pub fn check(
        &mut self,
        now: Instant,
        direction: Direction,
        info: &PacketInfo,
        packet: &[u8],
        peer: Option<&Certificate>,
    ) -> Verdict {
        if !self.enabled {
            return Verdict::Pass;
        }
        self.conntrack.sweep(now, SWEEP_BUDGET);
        let view = View::new(direction, info, packet);
        if let Some(key) = &view.key {
            let mut found = self.conntrack.track(now, key, direction, view.tcp_flags);
            if let Track::Stale { origin, opening } = found
                && self.judge_again(key, origin, opening, peer)
            {
                found = self.conntrack.track(now, key, direction, view.tcp_flags);
            }
            if found == Track::Live {
                self.tracked += 1;
                return Verdict::Pass;
            }
        }
        if let Some(key) = view.related(direction, info, packet) {
            let live = match self.conntrack.lookup(now, &key) {
                Track::Live => true,
                Track::Stale { origin, opening } => self.judge_again(&key, origin, opening, peer),
                Track::Absent => false,
            };
            if live {
                self.related += 1;
                return Verdict::Pass;
            }
        }
        let rules = match direction {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        };
        match rules.decide(&view, peer) {
            Action::Allow => {
                if let Some(key) = view.key {
                    self.conntrack
                        .insert(now, key, direction, view.tcp_flags, view.opening());
                }
                Verdict::Pass
            }
            Action::Drop => Verdict::Drop,
            Action::Reject if is_group(view.local) || is_group(view.remote) => Verdict::Drop,
            Action::Reject => Verdict::Reject,
        }
    }

    /// Counters, per rule and for the connection table.
    pub fn stats(&self) -> FirewallStats {
        FirewallStats {
            enabled: self.enabled,
            inbound: self.inbound.stats(),
            outbound: self.outbound.stats(),
            tracked: self.tracked,
            related: self.related,
            conntrack_entries: self.conntrack.len(),
            conntrack_max: self.conntrack.capacity(),
            conntrack_evicted: self.conntrack.evicted,
            conntrack_expired: self.conntrack.expired,
            conntrack_closed_by_reload: self.closed_by_reload,
        }
    }

    /// The current rules judge the tracked flow `key`, allowed by earlier
    /// rules, as they would its first packet (which crossed in `origin`)
    /// from `peer`: kept if they allow it, removed (and counted) if not.
    fn judge_again(
        &mut self,
        key: &FlowKey,
        origin: Direction,
        opening: Opening,
        peer: Option<&Certificate>,
    ) -> bool {
        let rules = match origin {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        if rules.allows(&View::of_opening(key, opening), peer) {
            self.conntrack.confirm(key);
            true
        } else {
            self.conntrack.remove(key);
            self.closed_by_reload += 1;
            false
        }
    }
}

/// Checks `config` and compiles its rules, inbound and outbound.
fn compile(
    config: &FirewallConfig,
    ca: &CaCertificate,
) -> Result<(RuleSet, RuleSet), FirewallConfigError> {
    let table = config.conntrack;
    if !(1..=MAX_CONNTRACK_ENTRIES).contains(&table.max_entries) {
        return Err(FirewallConfigError::TableSize(table.max_entries));
    }
    for (value, name) in [
        (table.tcp_timeout, "tcp_timeout"),
        (table.udp_timeout, "udp_timeout"),
        (table.icmp_timeout, "icmp_timeout"),
        (table.unreplied_timeout, "unreplied_timeout"),
    ] {
        if value.is_zero() {
            return Err(FirewallConfigError::ZeroTimeout(name));
        }
    }
    let inbound = CompiledRule::compile_all("inbound", &config.inbound, ca)?;
    let outbound = CompiledRule::compile_all("outbound", &config.outbound, ca)?;
    Ok((
        RuleSet::new(inbound, &config.inbound, config.inbound_default),
        RuleSet::new(outbound, &config.outbound, config.outbound_default),
    ))
}
