//! A lower bound on the stretch of any overlay tree whose link stress is at
//! most 2, on a transit-stub underlay: evidence for whether issue 5's two
//! targets (mean stretch ≤ 1.5 and max link stress ≤ 2) can hold at once.
//!
//! The argument, for members at stub routers of domains that each reach the
//! rest of the underlay through a single uplink (our transit-stub model):
//!
//! 1. Every stub domain `X` holding members, other than the source's, must
//!    be entered by a tree edge, which crosses `X`'s uplink. With stress
//!    ≤ 2 on that uplink, at most one more tree edge may cross it: one edge
//!    out of `X`, or a second edge in (and then none out). The source's
//!    domain is left by at most two edges.
//! 2. So, seen at the level of domains, the tree is at most two chains
//!    from the source's domain (a domain entered twice is the last of both
//!    chains; moving all its members to the earlier entry lowers every
//!    figure below, so it can be ignored for a lower bound).
//! 3. Entering `X` costs at least `e(X)`, the least one-way delay from any
//!    member outside `X` to any member in it, and the entries along a
//!    member's tree path are disjoint parts of it: a member of the `i`-th
//!    domain of a chain has tree delay at least `e(X₁) + … + e(Xᵢ)`. Its
//!    stretch is that over its direct delay `d(m)`.
//! 4. Summed over members, the stretch is at least `Σ_X w(X)·C(X)` with
//!    `w(X) = Σ_{m∈X} 1/d(m)` and `C(X)` the completion time of job `X`
//!    (length `e(X)`) in a schedule on two machines (the chains): the
//!    weighted completion time problem P2||ΣwC. Its optimum is at least
//!    that of one machine twice as fast (each job of length `e(X)/2`), which
//!    Smith's rule (shortest `length/weight` first) solves exactly.
//!    Each member's stretch is also at least 1.
//!
//! Every step only loosens the bound (any pair of members may be an edge,
//! no stub–stub or transit link is counted), so a tree with stress ≤ 2 has
//! at least this mean stretch on that instance.

use super::overlay::Group;
use super::underlay::{RouterKind, Underlay};

/// The bound for one (underlay, group, source) instance.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StressTwoBound {
    /// Stub domains holding members, besides the source's.
    pub domains: usize,
    /// No overlay tree with max link stress ≤ 2 has a lower mean stretch.
    pub mean_stretch: f64,
}

/// Computes the bound (see the module doc) for the tree rooted at member
/// `source`.
pub(super) fn stress_two_bound(
    underlay: &Underlay,
    group: &Group,
    source: usize,
) -> StressTwoBound {
    let n = group.len();
    let domain = |m: usize| match underlay.kind(group.routers[m]) {
        Some(RouterKind::Stub { domain }) => Some(domain),
        _ => None,
    };
    let home = domain(source);
    // Per domain (other than the source's): its members.
    let mut domains: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    let mut at_home = 0usize;
    for m in (0..n).filter(|&m| m != source) {
        match domain(m) {
            Some(x) if Some(x) != home => domains.entry(x).or_default().push(m),
            _ => at_home += 1,
        }
    }
    // Jobs: (length e(X)/2 in µs, weight Σ 1/d(m), members).
    let mut jobs: Vec<(f64, f64, usize)> = domains
        .values()
        .map(|inside| {
            let entry = (0..n)
                .filter(|y| !inside.contains(y))
                .flat_map(|y| inside.iter().map(move |&x| (y, x)))
                .map(|(y, x)| group.delay_us(y, x))
                .min()
                .unwrap_or(0);
            let weight = inside
                .iter()
                .map(|&m| 1.0 / group.delay_us(source, m).max(1) as f64)
                .sum();
            (entry as f64 / 2.0, weight, inside.len())
        })
        .collect();
    // Smith's rule: ascending length / weight.
    jobs.sort_by(|a, b| (a.0 * b.1).total_cmp(&(b.0 * a.1)));
    let mut clock = 0.0;
    let mut weighted = 0.0;
    let mut away = 0usize;
    for &(length, weight, members) in &jobs {
        clock += length;
        weighted += weight * clock;
        away += members;
    }
    let others = (n - 1).max(1) as f64;
    StressTwoBound {
        domains: jobs.len(),
        mean_stretch: (at_home as f64 + weighted.max(away as f64)) / others,
    }
}
