//! The overlay's state between the demo's phases, as its nodes report it.
//!
//! A phase that cuts a link restores it before it ends; before the next
//! phase the tour waits (with a deadline) until every direct link is up
//! again, and says so, so that no phase runs on an overlay a previous one
//! left damaged without the user being told. The state comes from every
//! node's `weft status`: a pair's link counts as down when either end has
//! no established session with the other or sees the direct link down; a
//! path counts as relayed when a node sends latency-sensitive traffic to a
//! peer through another node. Once the links are up the tour also gives
//! the paths a few seconds to return to them (a restored link carries
//! routes once it has settled, well under a second on an idle machine),
//! but a path that stays relayed over links that are all up is routing's
//! choice (a relay measured cheaper beyond the hysteresis, as RTTs jitter
//! on a busy machine): it is reported, not a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::status::request_status;
use crate::testbed::Testbed;

/// How long the tour waits for restored links to come back up.
pub(super) const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it then waits for paths to return to them.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which direct links are down and which paths are relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OverlayState {
    /// Pairs of nodes, each counted once.
    pairs: usize,
    /// Pairs whose direct link is down, as "h0–h1".
    down: BTreeSet<String>,
    /// Paths through other nodes, as "h0 → h1 via h2".
    relayed: BTreeSet<String>,
}

impl OverlayState {
    /// Asks every node of `testbed` for its status.
    pub(super) fn read(testbed: &Testbed) -> anyhow::Result<Self> {
        let names: Vec<&str> = testbed.hosts().iter().map(|h| h.name()).collect();
        let n = names.len();
        let mut down = BTreeSet::new();
        let mut relayed = BTreeSet::new();
        for host in testbed.hosts() {
            let status = request_status(host.socket_path())?;
            for other in names.iter().filter(|name| **name != host.name()) {
                // After crossed handshakes a node may list a peer twice
                // for a moment; the entry whose link works is the one used.
                let entries = || {
                    status
                        .peers
                        .iter()
                        .filter(|p| p.name.as_deref() == Some(*other))
                };
                let works =
                    |p: &&crate::status::PeerInfo| p.state == "established" && p.link != "down";
                let peer = entries().find(works).or_else(|| entries().next());
                let up = peer.is_some_and(|p| works(&p));
                if !up {
                    down.insert(pair(host.name(), other));
                }
                if let Some(peer) = peer
                    && !peer.via.is_empty()
                {
                    relayed.insert(format!(
                        "{} → {other} via {}",
                        host.name(),
                        peer.via.join(", ")
                    ));
                }
            }
        }
        Ok(Self {
            pairs: n * n.saturating_sub(1) / 2,
            down,
            relayed,
        })
    }

    /// Every direct link up.
    pub(super) fn all_links_up(&self) -> bool {
        self.down.is_empty()
    }

    /// One line for the user.
    pub(super) fn describe(&self) -> String {
        let mut text = if self.all_links_up() {
            format!("all {} direct links up", self.pairs)
        } else {
            let down: Vec<&str> = self.down.iter().map(String::as_str).collect();
            format!(
                "{} of {} direct links up (down: {})",
                self.pairs - self.down.len(),
                self.pairs,
                down.join(", ")
            )
        };
        if self.relayed.is_empty() {
            text.push_str(", every path direct");
        } else {
            let relayed: Vec<&str> = self.relayed.iter().map(String::as_str).collect();
            text.push_str(&format!("; relayed: {}", relayed.join("; ")));
        }
        text
    }
}

/// Waits up to [`SETTLE_TIMEOUT`] for every direct link to be up and then
/// up to [`DIRECT_TIMEOUT`] for every path to be direct, prints the state
/// as "the overlay {when}: ..." and returns whether every link was up.
#[allow(clippy::print_stdout)] // a CLI command: stdout is its output
pub(super) fn settle(testbed: &Testbed, when: &str) -> anyhow::Result<bool> {
    let settled = testbed.wait_until(SETTLE_TIMEOUT, "every direct link up", || {
        Ok(OverlayState::read(testbed)?.all_links_up())
    });
    if settled.is_ok() {
        // Relayed paths that stay are reported below, not an error.
        let _ = testbed.wait_until(DIRECT_TIMEOUT, "every path direct", || {
            Ok(OverlayState::read(testbed)?.relayed.is_empty())
        });
    }
    let state = OverlayState::read(testbed)?;
    println!("\nthe overlay {when}: {}", state.describe());
    if settled.is_err() {
        println!(
            "  (links still down after {} s: what follows runs on this overlay)",
            SETTLE_TIMEOUT.as_secs()
        );
    }
    Ok(state.all_links_up())
}

/// "h0–h1", the lower name first.
fn pair(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}–{b}")
    } else {
        format!("{b}–{a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_overlay_and_a_damaged_one_are_described_plainly() {
        let whole = OverlayState {
            pairs: 6,
            down: BTreeSet::new(),
            relayed: BTreeSet::new(),
        };
        assert_eq!(whole.describe(), "all 6 direct links up, every path direct");
        let damaged = OverlayState {
            pairs: 6,
            down: [pair("h1", "h0")].into(),
            relayed: ["h0 → h1 via h2".to_owned()].into(),
        };
        assert!(!damaged.all_links_up());
        let relayed_only = OverlayState {
            pairs: 6,
            down: BTreeSet::new(),
            relayed: ["h0 → h1 via h2".to_owned()].into(),
        };
        assert!(relayed_only.all_links_up());
        assert_eq!(
            relayed_only.describe(),
            "all 6 direct links up; relayed: h0 → h1 via h2"
        );
        assert_eq!(
            damaged.describe(),
            "5 of 6 direct links up (down: h0–h1); relayed: h0 → h1 via h2"
        );
    }
}
