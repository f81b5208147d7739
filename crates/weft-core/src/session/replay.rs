//! Sliding replay window over packet counters (RFC 6479's bitmap scheme).
//!
//! Counters may arrive out of order by up to [`WINDOW`] positions; anything
//! older, or seen before, is rejected. Check before decrypting (cheap) and
//! mark after the packet authenticated, so forged packets cannot move the
//! window.

const WORDS: usize = 32;
/// How far behind the newest counter a packet may be and still be accepted.
pub(crate) const WINDOW: u64 = (WORDS as u64 - 1) * 64;

#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    /// One past the newest accepted counter (0: none yet).
    next: u64,
    bitmap: [u64; WORDS],
}

impl ReplayWindow {
    pub(crate) fn new() -> Self {
        Self {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    /// Whether `counter` would be accepted.
    pub(crate) fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return counter != u64::MAX;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (word, bit) = position(counter);
        self.bitmap[word] & (1 << bit) == 0
    }

    /// Marks `counter` as seen; returns false (and changes nothing) if it
    /// would not be accepted.
    pub(crate) fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.next {
            if self.next == 0 {
                self.bitmap = [0; WORDS];
            } else {
                // Clear the words after the old head's, up to the new head's.
                let old_word = (self.next - 1) / 64;
                let new_word = counter / 64;
                let steps = (new_word - old_word).min(WORDS as u64);
                for i in 1..=steps {
                    self.bitmap[((old_word + i) % WORDS as u64) as usize] = 0;
                }
            }
            self.next = counter + 1;
        }
        let (word, bit) = position(counter);
        self.bitmap[word] |= 1 << bit;
        true
    }
}

fn position(counter: u64) -> (usize, u32) {
    (((counter / 64) as usize) % WORDS, (counter % 64) as u32)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn duplicates_are_rejected() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(!w.accept(5));
    }

    #[test]
    fn too_old_counters_are_rejected_and_in_window_ones_accepted() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(10_000));
        assert!(w.accept(10_000 - WINDOW + 1));
        assert!(!w.check(10_000 - WINDOW));
        assert!(w.accept(9_999));
    }

    #[test]
    fn big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            assert!(w.accept(c));
        }
        assert!(w.accept(100 + 64 * 40));
        // Counters that map onto the same bits as the old ones are new.
        assert!(w.accept(100 + 64 * 40 - 64));
        assert!(!w.accept(50));
    }

    proptest! {
        // Against a model: a set of seen counters and the window rule.
        #[test]
        fn window_matches_model(counters in proptest::collection::vec(0u64..5_000, 1..300)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut max: Option<u64> = None;
            for c in counters {
                let too_old = max.is_some_and(|m| m >= c && m - c >= WINDOW);
                let expected = !too_old && !seen.contains(&c);
                prop_assert_eq!(w.accept(c), expected, "counter {}", c);
                if expected {
                    seen.insert(c);
                    max = Some(max.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
}
