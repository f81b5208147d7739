//! Smoothed RTT and its variation, as TCP computes them (RFC 6298 §2).

use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub(crate) struct RttEstimator {
    smoothed: Option<Duration>,
    variation: Duration,
}

impl RttEstimator {
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.variation = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.variation = (self.variation * 3 + diff) / 4;
                self.smoothed = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    pub(crate) fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    pub(crate) fn variation(&self) -> Duration {
        self.variation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_sets_smoothed_and_later_ones_move_it_by_an_eighth() {
        let mut rtt = RttEstimator::default();
        assert_eq!(rtt.smoothed(), None);
        rtt.sample(Duration::from_millis(80));
        assert_eq!(rtt.smoothed(), Some(Duration::from_millis(80)));
        rtt.sample(Duration::from_millis(160));
        assert_eq!(rtt.smoothed(), Some(Duration::from_millis(90)));
    }
}
