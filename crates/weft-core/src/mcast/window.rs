//! The duplicate window: which multicast sequence numbers of one origin a
//! node has already accepted.
//!
//! While trees change (a link fails, a member joins), two forwarders may
//! briefly both think they are a node's parent, so a node can receive the
//! same packet twice. Each origin numbers its packets; each receiver keeps,
//! per origin, the replay window of `session::replay` (RFC 6479's bitmap)
//! over those numbers and delivers and forwards only a packet it has not
//! seen. Numbers more than [`DuplicateWindow::WINDOW`] behind the newest are
//! refused as too old. An origin therefore starts numbering from a value
//! that grows across restarts (its unix time in microseconds, say), or its
//! receivers would drop its packets until their windows forget it.

use crate::session::ReplayWindow;

/// Per-origin window over multicast sequence numbers.
#[derive(Debug, Clone)]
pub struct DuplicateWindow {
    inner: ReplayWindow,
}

impl Default for DuplicateWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl DuplicateWindow {
    /// How far behind the newest accepted number a packet may be.
    pub const WINDOW: u64 = crate::session::REPLAY_WINDOW;

    /// An empty window: every number is fresh.
    pub fn new() -> Self {
        Self {
            inner: ReplayWindow::new(),
        }
    }

    /// Whether `seq` is fresh (not seen, not too old); a fresh number is
    /// marked as seen. `u64::MAX` is never fresh.
    pub fn check_and_set(&mut self, seq: u64) -> bool {
        self.inner.accept(seq)
    }

    /// Whether `seq` would be fresh, without marking it.
    pub fn check(&self, seq: u64) -> bool {
        self.inner.check(seq)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn each_number_is_fresh_once() {
        let mut w = DuplicateWindow::new();
        let base = 1_700_000_000_000_000;
        assert!(w.check(base));
        assert!(w.check_and_set(base));
        assert!(!w.check(base));
        assert!(!w.check_and_set(base));
        assert!(w.check_and_set(base + 2));
        assert!(w.check_and_set(base + 1), "late but in the window");
        assert!(!w.check_and_set(base + 1));
        assert!(!w.check_and_set(u64::MAX));
    }

    #[test]
    fn numbers_too_far_behind_are_refused() {
        let mut w = DuplicateWindow::new();
        assert!(w.check_and_set(100_000));
        assert!(!w.check_and_set(100_000 - DuplicateWindow::WINDOW));
        assert!(w.check_and_set(100_000 - DuplicateWindow::WINDOW + 1));
    }

    proptest! {
        // Against a model: seen numbers, and the window below the newest.
        #[test]
        fn window_matches_model(seqs in proptest::collection::vec(0u64..6_000, 1..400)) {
            let mut w = DuplicateWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            for s in seqs {
                let newest = seen.last().copied();
                let too_old = newest.is_some_and(|m: u64| m >= s && m - s >= DuplicateWindow::WINDOW);
                let fresh = !too_old && !seen.contains(&s);
                prop_assert_eq!(w.check(s), fresh);
                prop_assert_eq!(w.check_and_set(s), fresh, "seq {}", s);
                if fresh {
                    seen.insert(s);
                }
            }
        }
    }
}
