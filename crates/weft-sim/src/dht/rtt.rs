//! The round-trip-time model of the DHT simulator: nodes on a globe.
//!
//! Why: Kademlia's hop counts do not depend on latency, but its lookup
//! latency does, and proximity neighbour selection only helps if near and far
//! peers exist. A uniform random RTT would hide both; this model gives the
//! shape of the Internet: clusters of nodes in populated regions, long
//! intercontinental paths, and a last-mile delay per node.
//!
//! - Each node lies in one of [`REGIONS`] (chosen by weight), scattered
//!   around the region's centre (Gaussian, [`RttModel::spread_km`]).
//! - Propagation RTT = 2 × great-circle distance × [`RttModel::stretch`]
//!   (cables are not great circles) / the speed of light in fibre.
//! - Each node has an access delay (its share of an RTT):
//!   [`RttModel::access_min`] plus an exponential of mean
//!   [`RttModel::access_mean`], capped at [`RttModel::access_max`].
//! - RTT(a, b) = clamp(propagation + access(a) + access(b),
//!   [`RttModel::min_rtt`], [`RttModel::max_rtt`]); symmetric, fixed per pair
//!   (no jitter: reordering is not what this benchmark is about).
//!
//! Guarantees: the same RNG state gives the same places; the RTT of a pair
//! is a pure function of the two places.

use std::time::Duration;

use rand_core::Rng;

/// A populated region: centre (degrees) and share of the nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Region {
    /// Short label.
    pub name: &'static str,
    /// Latitude of the centre, degrees.
    pub lat: f64,
    /// Longitude of the centre, degrees.
    pub lon: f64,
    /// Share of the nodes (the weights sum to 1).
    pub weight: f64,
}

/// Where Internet users are, roughly (weights from user counts by region).
pub const REGIONS: [Region; 10] = [
    Region {
        name: "us-east",
        lat: 40.0,
        lon: -77.0,
        weight: 0.18,
    },
    Region {
        name: "us-west",
        lat: 37.0,
        lon: -120.0,
        weight: 0.12,
    },
    Region {
        name: "south-america",
        lat: -23.0,
        lon: -46.0,
        weight: 0.06,
    },
    Region {
        name: "europe-west",
        lat: 50.0,
        lon: 5.0,
        weight: 0.20,
    },
    Region {
        name: "europe-east",
        lat: 52.0,
        lon: 25.0,
        weight: 0.05,
    },
    Region {
        name: "asia-east",
        lat: 35.0,
        lon: 125.0,
        weight: 0.16,
    },
    Region {
        name: "asia-southeast",
        lat: 5.0,
        lon: 105.0,
        weight: 0.08,
    },
    Region {
        name: "india",
        lat: 20.0,
        lon: 77.0,
        weight: 0.07,
    },
    Region {
        name: "oceania",
        lat: -33.0,
        lon: 151.0,
        weight: 0.04,
    },
    Region {
        name: "africa",
        lat: -26.0,
        lon: 28.0,
        weight: 0.04,
    },
];

/// Parameters of the RTT model.
#[derive(Clone, Debug, PartialEq)]
pub struct RttModel {
    /// Standard deviation of a node's distance from its region's centre,
    /// per axis.
    pub spread_km: f64,
    /// Path length over great-circle distance.
    pub stretch: f64,
    /// Smallest access delay of a node.
    pub access_min: Duration,
    /// Mean of the exponential part of the access delay.
    pub access_mean: Duration,
    /// Largest access delay of a node.
    pub access_max: Duration,
    /// Smallest RTT of any pair.
    pub min_rtt: Duration,
    /// Largest RTT of any pair.
    pub max_rtt: Duration,
}

impl Default for RttModel {
    fn default() -> Self {
        Self {
            spread_km: 600.0,
            stretch: 1.5,
            access_min: Duration::from_millis(1),
            access_mean: Duration::from_millis(7),
            access_max: Duration::from_millis(60),
            min_rtt: Duration::from_millis(10),
            max_rtt: Duration::from_millis(300),
        }
    }
}

/// Where a node is, for the RTT model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Place {
    /// Unit vector of the position on the globe.
    xyz: [f64; 3],
    /// The node's access delay, seconds.
    access: f64,
    /// Index into [`REGIONS`].
    region: u8,
}

impl Place {
    /// The region's index in [`REGIONS`].
    pub fn region(&self) -> usize {
        usize::from(self.region)
    }
}

impl RttModel {
    /// Draws a place for a new node.
    pub fn place(&self, rng: &mut impl Rng) -> Place {
        let pick = unit(rng);
        let mut acc = 0.0;
        let mut region = REGIONS.len() - 1;
        for (i, r) in REGIONS.iter().enumerate() {
            acc += r.weight;
            if pick < acc {
                region = i;
                break;
            }
        }
        let r = &REGIONS[region];
        let (dn, de) = gaussian_pair(rng);
        let lat = (r.lat + dn * self.spread_km / KM_PER_DEGREE).clamp(-89.0, 89.0);
        let lon = r.lon + de * self.spread_km / (KM_PER_DEGREE * lat.to_radians().cos().max(0.1));
        let (lat, lon) = (lat.to_radians(), lon.to_radians());
        let xyz = [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()];
        let exp = -(1.0 - unit(rng)).ln() * self.access_mean.as_secs_f64();
        let access = (self.access_min.as_secs_f64() + exp).min(self.access_max.as_secs_f64());
        Place {
            xyz,
            access,
            // REGIONS has 10 entries: the index fits a u8.
            region: region as u8,
        }
    }

    /// The round-trip time between two places.
    pub fn rtt(&self, a: &Place, b: &Place) -> Duration {
        let d = [
            a.xyz[0] - b.xyz[0],
            a.xyz[1] - b.xyz[1],
            a.xyz[2] - b.xyz[2],
        ];
        let chord = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let angle = 2.0 * (chord / 2.0).min(1.0).asin();
        let km = angle * EARTH_RADIUS_KM;
        let propagation = 2.0 * km * self.stretch / FIBRE_KM_PER_S;
        let secs = (propagation + a.access + b.access)
            .clamp(self.min_rtt.as_secs_f64(), self.max_rtt.as_secs_f64());
        Duration::from_nanos((secs * 1e9) as u64)
    }
}

/// A uniform number in [0, 1).
pub(crate) fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Two independent standard normal numbers (Box–Muller).
fn gaussian_pair(rng: &mut impl Rng) -> (f64, f64) {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    let r = (-2.0 * u1.ln()).sqrt();
    let theta = 2.0 * std::f64::consts::PI * u2;
    (r * theta.cos(), r * theta.sin())
}

const EARTH_RADIUS_KM: f64 = 6_371.0;
const KM_PER_DEGREE: f64 = 111.2;
/// Light in glass: about two thirds of c.
const FIBRE_KM_PER_S: f64 = 200_000.0;

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn rtts_stay_within_the_bounds_and_are_symmetric() {
        let model = RttModel::default();
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let places: Vec<Place> = (0..200).map(|_| model.place(&mut rng)).collect();
        for a in &places {
            for b in &places {
                let rtt = model.rtt(a, b);
                assert!(rtt >= model.min_rtt && rtt <= model.max_rtt);
                assert_eq!(rtt, model.rtt(b, a));
            }
        }
    }

    #[test]
    fn transatlantic_rtt_is_realistic() {
        let model = RttModel {
            spread_km: 0.0,
            access_mean: Duration::ZERO,
            access_min: Duration::ZERO,
            ..RttModel::default()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut places = Vec::new();
        while places.len() < 2 {
            let p = model.place(&mut rng);
            let want = if places.is_empty() { 0 } else { 3 };
            if p.region() == want {
                places.push(p);
            }
        }
        // Washington to Brussels is about 6,200 km: 93 ms with stretch 1.5.
        let ms = model.rtt(&places[0], &places[1]).as_secs_f64() * 1e3;
        assert!((80.0..110.0).contains(&ms), "{ms} ms");
    }
}
