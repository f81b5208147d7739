//! A transit-stub underlay (GT-ITM style) and shortest paths on it.
//!
//! Why: link stress (copies of one packet per physical link) only means
//! something on an underlay whose links are shared, as the Internet's are:
//! many paths leave a stub domain through the same few links and cross the
//! same long-haul transit links. GT-ITM's transit-stub model (Zegura,
//! Calvert, Bhattacharjee, INFOCOM 1996) is the classic such underlay, and
//! the one Narada was measured on; this is a small re-implementation of it.
//!
//! The model ([`TransitStubParams`]):
//! - `transit_domains` transit domains of `transit_per_domain` routers each;
//!   inside a domain a random connected graph (a random spanning tree plus
//!   as many random extra links as routers); every pair of transit domains
//!   is joined by one link between random routers of each.
//! - Every transit router has `stubs_per_transit` stub domains hanging off
//!   it, each joined by one link from one of its routers to that transit
//!   router. The remaining routers (up to the requested total) are spread
//!   over the stub domains at random (at least one router each); inside a
//!   stub domain, again a random spanning tree plus as many random extra
//!   links as routers (fewer when the domain is too small to hold them).
//! - One-way delays, uniform: transit–transit 10–40 ms, transit–stub
//!   2–10 ms, stub–stub 1–5 ms, in whole microseconds.
//!
//! Guarantees: the graph is connected; the same parameters and seed give the
//! same underlay, link for link. Shortest paths ([`Underlay::shortest_paths`])
//! are by one-way delay, Dijkstra, with ties broken by router index, so they
//! are deterministic too. Links are undirected; a link's index is its
//! position in [`Underlay::links`].

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::fmt;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// One-way delay bounds in microseconds: transit–transit.
const TRANSIT_DELAY_US: (u64, u64) = (10_000, 40_000);
/// Transit–stub.
const TRANSIT_STUB_DELAY_US: (u64, u64) = (2_000, 10_000);
/// Stub–stub.
const STUB_DELAY_US: (u64, u64) = (1_000, 5_000);

/// The shape of a transit-stub underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransitStubParams {
    /// Routers in all (transit and stub).
    pub routers: usize,
    /// Transit domains.
    pub transit_domains: usize,
    /// Routers per transit domain.
    pub transit_per_domain: usize,
    /// Stub domains hanging off each transit router.
    pub stubs_per_transit: usize,
}

impl TransitStubParams {
    /// `routers` routers: 4 transit domains of 6 routers, 3 stub domains per
    /// transit router (72 stub domains; 1,000 routers give stub domains of
    /// 13.6 routers on average, as in GT-ITM's usual configurations).
    pub fn new(routers: usize) -> Self {
        Self {
            routers,
            transit_domains: 4,
            transit_per_domain: 6,
            stubs_per_transit: 3,
        }
    }

    fn transit_routers(&self) -> usize {
        self.transit_domains * self.transit_per_domain
    }

    fn stub_domains(&self) -> usize {
        self.transit_routers() * self.stubs_per_transit
    }

    /// The fewest routers these parameters can hold (one per stub domain).
    pub fn min_routers(&self) -> usize {
        self.transit_routers() + self.stub_domains()
    }
}

/// The kind of a router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterKind {
    /// A router of transit domain `domain`.
    Transit {
        /// Transit domain index.
        domain: usize,
    },
    /// A router of stub domain `domain`.
    Stub {
        /// Stub domain index.
        domain: usize,
    },
}

/// An undirected underlay link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// One end (router index).
    pub a: u32,
    /// The other end.
    pub b: u32,
    /// One-way delay, microseconds.
    pub delay_us: u64,
}

/// A generated underlay: routers, links, adjacency.
#[derive(Clone, Debug)]
pub struct Underlay {
    kinds: Vec<RouterKind>,
    links: Vec<Link>,
    /// Per router: (neighbour, link index), in link order.
    adjacency: Vec<Vec<(u32, u32)>>,
}

/// Why an underlay could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnderlayError {
    /// Fewer routers than one per transit router and stub domain.
    TooFewRouters {
        /// Asked for.
        asked: usize,
        /// The least possible.
        min: usize,
    },
    /// A shape with no transit router.
    EmptyShape,
}

impl fmt::Display for UnderlayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewRouters { asked, min } => {
                write!(
                    f,
                    "{asked} routers are too few for this shape (at least {min})"
                )
            }
            Self::EmptyShape => f.write_str(
                "the shape needs at least one transit domain, transit router and stub domain",
            ),
        }
    }
}

impl std::error::Error for UnderlayError {}

impl Underlay {
    /// Generates a transit-stub underlay from `seed`.
    pub fn transit_stub(params: TransitStubParams, seed: u64) -> Result<Self, UnderlayError> {
        if params.transit_domains == 0
            || params.transit_per_domain == 0
            || params.stubs_per_transit == 0
        {
            return Err(UnderlayError::EmptyShape);
        }
        if params.routers < params.min_routers() {
            return Err(UnderlayError::TooFewRouters {
                asked: params.routers,
                min: params.min_routers(),
            });
        }
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut b = Builder::default();

        // Transit domains.
        let mut transit: Vec<Vec<u32>> = Vec::new();
        for domain in 0..params.transit_domains {
            let routers: Vec<u32> = (0..params.transit_per_domain)
                .map(|_| b.router(RouterKind::Transit { domain }))
                .collect();
            b.random_connected(&mut rng, &routers, routers.len(), TRANSIT_DELAY_US);
            transit.push(routers);
        }
        for i in 0..transit.len() {
            for j in i + 1..transit.len() {
                let a = transit[i][below(&mut rng, transit[i].len())];
                let c = transit[j][below(&mut rng, transit[j].len())];
                let delay = uniform(&mut rng, TRANSIT_DELAY_US);
                b.link(a, c, delay);
            }
        }

        // Stub domain sizes: one router each, the rest spread at random.
        let domains = params.stub_domains();
        let mut sizes = vec![1usize; domains];
        for _ in 0..params.routers - params.min_routers() {
            sizes[below(&mut rng, domains)] += 1;
        }
        let uplinks: Vec<u32> = transit
            .iter()
            .flatten()
            .flat_map(|&t| std::iter::repeat_n(t, params.stubs_per_transit))
            .collect();
        for (domain, (&size, &uplink)) in sizes.iter().zip(&uplinks).enumerate() {
            let routers: Vec<u32> = (0..size)
                .map(|_| b.router(RouterKind::Stub { domain }))
                .collect();
            b.random_connected(&mut rng, &routers, size, STUB_DELAY_US);
            let gateway = routers[below(&mut rng, size)];
            let delay = uniform(&mut rng, TRANSIT_STUB_DELAY_US);
            b.link(gateway, uplink, delay);
        }
        Ok(b.finish())
    }

    /// Number of routers.
    pub fn routers(&self) -> usize {
        self.kinds.len()
    }

    /// Every link; a link's index is its position here.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The kind of router `r`.
    pub fn kind(&self, r: u32) -> Option<RouterKind> {
        self.kinds.get(r as usize).copied()
    }

    /// Indices of all stub routers, ascending.
    pub fn stub_routers(&self) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&r| matches!(self.kinds[r as usize], RouterKind::Stub { .. }))
            .collect()
    }

    /// Dijkstra from `source` by one-way delay.
    pub fn shortest_paths(&self, source: u32) -> ShortestPaths {
        let n = self.kinds.len();
        let mut dist = vec![u64::MAX; n];
        let mut via = vec![u32::MAX; n];
        let mut heap = BinaryHeap::new();
        if (source as usize) < n {
            dist[source as usize] = 0;
            heap.push(Reverse((0u64, source)));
        }
        while let Some(Reverse((d, r))) = heap.pop() {
            if d > dist[r as usize] {
                continue;
            }
            for &(next, link) in &self.adjacency[r as usize] {
                let nd = d + self.links[link as usize].delay_us;
                let slot = &mut dist[next as usize];
                if nd < *slot {
                    *slot = nd;
                    via[next as usize] = link;
                    heap.push(Reverse((nd, next)));
                }
            }
        }
        ShortestPaths { source, dist, via }
    }
}

/// Shortest paths from one router: delays and the tree of links.
#[derive(Clone, Debug)]
pub struct ShortestPaths {
    source: u32,
    dist: Vec<u64>,
    /// The link by which each router is reached (u32::MAX: source or none).
    via: Vec<u32>,
}

impl ShortestPaths {
    /// The router these paths start from.
    pub fn source(&self) -> u32 {
        self.source
    }

    /// One-way delay to `to` in microseconds (None when unreachable).
    pub fn delay_us(&self, to: u32) -> Option<u64> {
        self.dist
            .get(to as usize)
            .copied()
            .filter(|&d| d != u64::MAX)
    }

    /// Calls `f` with the index of every link on the path to `to` (from
    /// `to` back towards the source); nothing when `to` is the source or
    /// unreachable.
    pub fn for_each_link(&self, underlay: &Underlay, to: u32, mut f: impl FnMut(u32)) {
        self.for_each_hop(underlay, to, |link, _| f(link));
    }

    /// Like [`Self::for_each_link`], also saying in which direction a packet
    /// from the source crosses each link: `true` from its `a` end to its `b`
    /// end.
    pub fn for_each_hop(&self, underlay: &Underlay, to: u32, mut f: impl FnMut(u32, bool)) {
        let mut at = to;
        // A path has fewer links than there are routers; the bound only
        // guards against a corrupted `via` table.
        for _ in 0..self.via.len() {
            let Some(&link) = self.via.get(at as usize) else {
                return;
            };
            if link == u32::MAX {
                return;
            }
            let l = underlay.links[link as usize];
            f(link, l.b == at);
            at = if l.a == at { l.b } else { l.a };
        }
    }
}

#[derive(Default)]
struct Builder {
    kinds: Vec<RouterKind>,
    links: Vec<Link>,
    seen: BTreeSet<(u32, u32)>,
}

impl Builder {
    fn router(&mut self, kind: RouterKind) -> u32 {
        self.kinds.push(kind);
        (self.kinds.len() - 1) as u32
    }

    /// Adds a link unless it exists already; returns whether it was added.
    fn link(&mut self, a: u32, b: u32, delay_us: u64) -> bool {
        if a == b || !self.seen.insert((a.min(b), a.max(b))) {
            return false;
        }
        self.links.push(Link { a, b, delay_us });
        true
    }

    /// A random spanning tree over `routers` plus up to `extra` random extra
    /// links.
    fn random_connected(
        &mut self,
        rng: &mut ChaCha20Rng,
        routers: &[u32],
        extra: usize,
        delay: (u64, u64),
    ) {
        for i in 1..routers.len() {
            let j = below(rng, i);
            let d = uniform(rng, delay);
            self.link(routers[i], routers[j], d);
        }
        let n = routers.len();
        let possible = n * n.saturating_sub(1) / 2 - n.saturating_sub(1);
        let mut wanted = extra.min(possible);
        // Bounded: each try adds a link with probability at least
        // (possible - added) / n², and `wanted` ≤ `possible`.
        let mut tries = 0;
        while wanted > 0 && tries < 64 * (extra + 1) * n.max(1) {
            tries += 1;
            let a = routers[below(rng, n)];
            let b = routers[below(rng, n)];
            let d = uniform(rng, delay);
            if self.link(a, b, d) {
                wanted -= 1;
            }
        }
    }

    fn finish(self) -> Underlay {
        let mut adjacency = vec![Vec::new(); self.kinds.len()];
        for (i, l) in self.links.iter().enumerate() {
            adjacency[l.a as usize].push((l.b, i as u32));
            adjacency[l.b as usize].push((l.a, i as u32));
        }
        Underlay {
            kinds: self.kinds,
            links: self.links,
            adjacency,
        }
    }
}

/// A uniform index below `n` (`n` > 0); the modulo bias is negligible here.
pub(super) fn below(rng: &mut impl Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// A uniform integer in `[lo, hi]`.
fn uniform(rng: &mut impl Rng, (lo, hi): (u64, u64)) -> u64 {
    lo + rng.next_u64() % (hi - lo + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underlay_is_connected_with_the_asked_router_count() {
        let u = Underlay::transit_stub(TransitStubParams::new(1000), 7).unwrap();
        assert_eq!(u.routers(), 1000);
        let sp = u.shortest_paths(0);
        assert!((0..1000).all(|r| sp.delay_us(r).is_some()));
        assert_eq!(u.stub_routers().len(), 1000 - 24);
    }

    #[test]
    fn same_seed_same_underlay() {
        let a = Underlay::transit_stub(TransitStubParams::new(300), 3).unwrap();
        let b = Underlay::transit_stub(TransitStubParams::new(300), 3).unwrap();
        let c = Underlay::transit_stub(TransitStubParams::new(300), 4).unwrap();
        assert_eq!(a.links(), b.links());
        assert_ne!(a.links(), c.links());
    }

    #[test]
    fn path_links_add_up_to_the_delay() {
        let u = Underlay::transit_stub(TransitStubParams::new(300), 5).unwrap();
        let sp = u.shortest_paths(17);
        for to in [0u32, 100, 299] {
            let mut sum = 0;
            sp.for_each_link(&u, to, |l| sum += u.links()[l as usize].delay_us);
            assert_eq!(Some(sum), sp.delay_us(to));
        }
    }

    #[test]
    fn too_few_routers_is_an_error() {
        assert!(Underlay::transit_stub(TransitStubParams::new(50), 1).is_err());
    }
}
