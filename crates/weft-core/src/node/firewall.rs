//! The node's side of the firewall: every IP packet between the TUN and
//! the overlay passes [`crate::firewall::Firewall::check`], and a rejected
//! one is answered.
//!
//! Four doors, one per direction and kind: unicast from a peer (before the
//! TUN; the peer is the end-to-end session's, so a relayed packet is judged
//! here at its endpoint and never at a relay), unicast to a peer (when it
//! is queued for the peer's session, so packets that waited for a
//! handshake are judged with the peer's certificate known), multicast
//! delivered to this node (the origin is the peer; forwarding to the rest
//! of the tree is not filtered), and multicast this node sends (no peer).
//! With the firewall off, each door costs one branch and nothing is
//! parsed.
//!
//! Answers to rejected packets bypass the outbound rules: a TCP RST or an
//! ICMP error for a rejected inbound packet goes back to the peer that
//! sent it (in the QoS scheduler like any data), one for a rejected
//! outbound packet goes to the TUN.

use std::time::Instant;

use tracing::trace;

use super::peers::PeerId;
use super::{Node, icmp, reject};
use crate::firewall::{Direction, FirewallConfig, FirewallConfigError, FirewallStats, Verdict};
use crate::identity::NodeId;
use crate::qos::PacketInfo;

impl Node {
    /// The firewall's counters: per rule, per default, and the connection
    /// table.
    pub fn firewall_stats(&self) -> FirewallStats {
        self.firewall.stats()
    }

    /// Replaces the firewall's settings at run time (a config reload).
    /// New flows meet the new rules at once; a tracked flow is judged again
    /// at its next packet and kept only if the new rules allow it; rules
    /// that stay keep their counters (see [`crate::firewall`], "New rules
    /// at run time"). On an error nothing changes.
    pub fn set_firewall(&mut self, config: &FirewallConfig) -> Result<(), FirewallConfigError> {
        self.firewall.reconfigure(config, &self.ca)
    }

    /// Whether an IP packet that `peer`'s session carried may go to the
    /// TUN. A rejected one is answered to the peer.
    pub(super) fn admit_inbound(&mut self, now: Instant, peer: PeerId, packet: &[u8]) -> bool {
        if !self.firewall.is_enabled() {
            return true;
        }
        let Some(info) = PacketInfo::parse(packet) else {
            self.stats.firewall_inbound_dropped += 1;
            return false;
        };
        let certificate = self.peers[peer].certificate.as_ref();
        match self
            .firewall
            .check(now, Direction::Inbound, &info, packet, certificate)
        {
            Verdict::Pass => true,
            Verdict::Drop => {
                self.stats.firewall_inbound_dropped += 1;
                trace!("firewall: inbound packet dropped");
                false
            }
            Verdict::Reject => {
                self.stats.firewall_inbound_dropped += 1;
                trace!("firewall: inbound packet rejected");
                let mut answer = self.take_buffer();
                if refusal(packet, &info, &mut answer)
                    && let Some(answer_info) = PacketInfo::parse(&answer)
                    && self.usable_current(now, peer)
                {
                    self.stats.firewall_rejected += 1;
                    self.enqueue_parsed(now, peer, &answer, Some(&answer_info));
                    self.qos_drain(now);
                }
                self.return_buffer(answer);
                false
            }
        }
    }

    /// Whether an IP packet from the TUN (header walk `info`, `None` if it
    /// has none) may be sent to `peer`. A rejected one is answered to the
    /// TUN.
    pub(super) fn admit_outbound(
        &mut self,
        now: Instant,
        peer: PeerId,
        info: Option<&PacketInfo>,
        packet: &[u8],
    ) -> bool {
        if !self.firewall.is_enabled() {
            return true;
        }
        let Some(info) = info else {
            self.stats.firewall_outbound_dropped += 1;
            return false;
        };
        let certificate = self.peers[peer].certificate.as_ref();
        let verdict = self
            .firewall
            .check(now, Direction::Outbound, info, packet, certificate);
        self.outbound_verdict(verdict, info, packet)
    }

    /// Whether a multicast packet may be delivered to this node's TUN
    /// (`Inbound`, from `origin`) or sent to its group (`Outbound`, no
    /// origin). Never answered.
    pub(super) fn admit_multicast(
        &mut self,
        now: Instant,
        direction: Direction,
        origin: Option<&NodeId>,
        packet: &[u8],
    ) -> bool {
        if !self.firewall.is_enabled() {
            return true;
        }
        let Some(info) = PacketInfo::parse(packet) else {
            return false;
        };
        // The origin's certificate, from its session or its link state
        // (as `certificate_of`, with the fields borrowed one by one).
        let certificate = origin.and_then(|id| match self.by_id.get(id) {
            Some(&p) if self.peers[p].certificate.is_some() => self.peers[p].certificate.as_ref(),
            _ => self.routing.lsdb.get(id).map(|r| &r.certificate),
        });
        let verdict = self
            .firewall
            .check(now, direction, &info, packet, certificate);
        if verdict == Verdict::Pass {
            return true;
        }
        match direction {
            Direction::Inbound => self.stats.firewall_inbound_dropped += 1,
            Direction::Outbound => self.stats.firewall_outbound_dropped += 1,
        }
        trace!(
            direction = direction.as_str(),
            "firewall: multicast packet dropped"
        );
        false
    }

    fn outbound_verdict(&mut self, verdict: Verdict, info: &PacketInfo, packet: &[u8]) -> bool {
        match verdict {
            Verdict::Pass => true,
            Verdict::Drop => {
                self.stats.firewall_outbound_dropped += 1;
                trace!("firewall: outbound packet dropped");
                false
            }
            Verdict::Reject => {
                self.stats.firewall_outbound_dropped += 1;
                trace!("firewall: outbound packet rejected");
                let mut answer = self.take_buffer();
                if refusal(packet, info, &mut answer) {
                    self.stats.firewall_rejected += 1;
                    self.push_tun(answer);
                } else {
                    self.return_buffer(answer);
                }
                false
            }
        }
    }
}

/// The answer to a rejected packet, from its destination to its source: a
/// TCP RST for TCP, an ICMP "administratively prohibited" error otherwise.
fn refusal(packet: &[u8], info: &PacketInfo, out: &mut Vec<u8>) -> bool {
    if info.protocol == Some(6) {
        reject::tcp_reset(packet, info, out)
    } else {
        icmp::prohibited(packet, info.dst, out)
    }
}
