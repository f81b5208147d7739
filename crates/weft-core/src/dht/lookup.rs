//! One iterative Kademlia lookup: the shortlist, which contact to ask next,
//! and when the lookup is over. No I/O: the engine sends what
//! [`Lookup::step`] asks for and reports answers, stalls and failures back.
//!
//! Rules (Kademlia §2.3, with the usual soft-timeout refinement):
//! - the shortlist holds candidates ordered by XOR distance to the key; the
//!   lookup's *window* is the `want` closest candidates that have neither
//!   failed nor stalled;
//! - at most α queries are in flight; a query that passes its soft timeout
//!   *stalls*: it leaves the window and stops counting against α, but a late
//!   answer is still used until its hard timeout fails it;
//! - the lookup is over when every candidate of the window has answered (or
//!   the window is empty and nothing is outstanding), or, for a value lookup,
//!   at the first valid record;
//! - a *patient* lookup (a value lookup) keeps stalled candidates in its
//!   window until they answer or fail: a slow node that holds the record
//!   must not be missed, while a node lookup (join, publication, refresh)
//!   settles for the nodes that answer in time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Key, LookupTrace, NodeRecord, QueryOutcome, QueryTrace, distance};
use crate::identity::NodeId;

/// What the engine should do next for a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send the lookup's request to this contact (already marked in flight).
    Query { id: NodeId, endpoint: SocketAddr },
    /// Wait for answers or timeouts.
    Wait,
    /// The lookup is over.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotAsked,
    InFlight { trace: usize },
    Stalled { trace: usize },
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: NodeId,
    endpoint: SocketAddr,
    distance: Key,
    depth: u32,
    state: State,
}

/// The state of one lookup.
#[derive(Debug)]
pub(crate) struct Lookup {
    key: Key,
    own: NodeId,
    alpha: usize,
    want: usize,
    capacity: usize,
    patient: bool,
    started: Instant,
    candidates: Vec<Candidate>,
    queries: Vec<QueryTrace>,
    sent_at: Vec<Instant>,
    found: Option<(NodeRecord, u32)>,
    deepest_answer: u32,
}

impl Lookup {
    /// A lookup of `key` seeded with `initial` contacts (depth 1). It
    /// converges on the `want` closest nodes with `alpha` queries in flight,
    /// and keeps at most `capacity` candidates.
    pub(crate) fn new(
        now: Instant,
        key: Key,
        own: NodeId,
        alpha: usize,
        want: usize,
        capacity: usize,
        initial: &[(NodeId, SocketAddr)],
    ) -> Self {
        let mut lookup = Self {
            key,
            own,
            alpha: alpha.max(1),
            want: want.max(1),
            capacity: capacity.max(want.max(1)),
            patient: false,
            started: now,
            candidates: Vec::new(),
            queries: Vec::new(),
            sent_at: Vec::new(),
            found: None,
            deepest_answer: 0,
        };
        for &(id, endpoint) in initial {
            lookup.add(id, endpoint, 1);
        }
        lookup
    }

    /// Keeps stalled candidates in the window until they answer or fail
    /// (for value lookups).
    pub(crate) fn patient(mut self) -> Self {
        self.patient = true;
        self
    }

    /// The next action. A `Query` marks its candidate in flight.
    pub(crate) fn step(&mut self, now: Instant) -> Step {
        if self.found.is_some() {
            return Step::Done;
        }
        let in_flight = self
            .candidates
            .iter()
            .filter(|c| matches!(c.state, State::InFlight { .. }))
            .count();
        let stalled = self
            .candidates
            .iter()
            .any(|c| matches!(c.state, State::Stalled { .. }));
        let mut window = 0;
        let mut all_answered = true;
        let mut next = None;
        for (index, candidate) in self.candidates.iter().enumerate() {
            if window == self.want {
                break;
            }
            match candidate.state {
                State::Failed => continue,
                State::Stalled { .. } if !self.patient => continue,
                State::Stalled { .. } => all_answered = false,
                State::Answered => {}
                State::InFlight { .. } => all_answered = false,
                State::NotAsked => {
                    all_answered = false;
                    if next.is_none() {
                        next = Some(index);
                    }
                }
            }
            window += 1;
        }
        if let Some(index) = next
            && in_flight < self.alpha
        {
            let trace = self.queries.len();
            let candidate = &mut self.candidates[index];
            candidate.state = State::InFlight { trace };
            self.queries.push(QueryTrace {
                node: candidate.id,
                endpoint: candidate.endpoint,
                depth: candidate.depth,
                sent_after: now.saturating_duration_since(self.started),
                rtt: None,
                outcome: QueryOutcome::Unanswered,
            });
            self.sent_at.push(now);
            return Step::Query {
                id: candidate.id,
                endpoint: candidate.endpoint,
            };
        }
        if window > 0 && all_answered {
            return Step::Done;
        }
        if window == 0 && !stalled {
            return Step::Done;
        }
        Step::Wait
    }

    /// `id` answered with these contacts.
    pub(crate) fn on_nodes(&mut self, now: Instant, id: NodeId, contacts: &[(NodeId, SocketAddr)]) {
        let Some(depth) = self.answered(now, id, QueryOutcome::Nodes, contacts.len()) else {
            return;
        };
        for &(contact, endpoint) in contacts {
            self.add(contact, endpoint, depth + 1);
        }
    }

    /// `id` answered with a valid record for the target.
    pub(crate) fn on_value(&mut self, now: Instant, id: NodeId, record: NodeRecord) {
        if let Some(depth) = self.answered(now, id, |_| QueryOutcome::Value, 0)
            && self.found.is_none()
        {
            self.found = Some((record, depth));
        }
    }

    /// `id`'s query passed its soft timeout.
    pub(crate) fn on_stalled(&mut self, id: NodeId) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.id == id)
            && let State::InFlight { trace } = c.state
        {
            c.state = State::Stalled { trace };
        }
    }

    /// `id`'s query failed (hard timeout, or it could not be sent).
    pub(crate) fn on_failed(&mut self, id: NodeId) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.id == id) {
            if let State::InFlight { trace } | State::Stalled { trace } = c.state
                && let Some(q) = self.queries.get_mut(trace)
            {
                q.outcome = QueryOutcome::Timeout;
            }
            c.state = State::Failed;
        }
    }

    /// The record found, with the depth of the query that returned it.
    pub(crate) fn take_found(&mut self) -> Option<(NodeRecord, u32)> {
        self.found.take()
    }

    /// The closest candidates that answered, nearest first, at most `n`.
    pub(crate) fn closest_answered(&self, n: usize) -> Vec<(NodeId, SocketAddr)> {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Answered)
            .take(n)
            .map(|c| (c.id, c.endpoint))
            .collect()
    }

    /// How many queries were sent.
    pub(crate) fn query_count(&self) -> usize {
        self.queries.len()
    }

    /// The trace so far, with `hops` the depth of the query that found the
    /// record (or the deepest that answered, when none did).
    pub(crate) fn trace(&self, now: Instant, hops: Option<u32>) -> LookupTrace {
        LookupTrace {
            hops: hops.unwrap_or(self.deepest_answer),
            elapsed: now.saturating_duration_since(self.started),
            queries: self.queries.clone(),
        }
    }

    fn answered(
        &mut self,
        now: Instant,
        id: NodeId,
        outcome: impl Fn(usize) -> QueryOutcome,
        count: usize,
    ) -> Option<u32> {
        let c = self.candidates.iter_mut().find(|c| c.id == id)?;
        let (State::InFlight { trace } | State::Stalled { trace }) = c.state else {
            return None;
        };
        c.state = State::Answered;
        let depth = c.depth;
        if let Some(q) = self.queries.get_mut(trace) {
            q.outcome = outcome(count);
            let sent = self.sent_at.get(trace).copied().unwrap_or(self.started);
            q.rtt = Some(now.saturating_duration_since(sent));
        }
        self.deepest_answer = self.deepest_answer.max(depth);
        Some(depth)
    }

    fn add(&mut self, id: NodeId, endpoint: SocketAddr, depth: u32) {
        if id == self.own || self.candidates.iter().any(|c| c.id == id) {
            return;
        }
        let distance = distance(&self.key, &Key(*id.as_bytes()));
        let at = self.candidates.partition_point(|c| c.distance < distance);
        if at >= self.capacity {
            return;
        }
        self.candidates.insert(
            at,
            Candidate {
                id,
                endpoint,
                distance,
                depth,
                state: State::NotAsked,
            },
        );
        // Drop the farthest candidates nobody asked; asked ones stay so
        // their answers still count (and failed ones are not asked again
        // when another answer names them).
        while self.candidates.len() > self.capacity {
            let Some(index) = self
                .candidates
                .iter()
                .rposition(|c| c.state == State::NotAsked)
            else {
                break;
            };
            self.candidates.remove(index);
        }
    }
}

/// The soft timeout of a query to a contact: about two round trips when its
/// RTT is known, else twice the table's median, never under `FLOOR` nor over
/// the hard timeout.
pub(crate) fn soft_timeout(
    rtt: Option<Duration>,
    median: Option<Duration>,
    hard: Duration,
) -> Duration {
    const FLOOR: Duration = Duration::from_millis(100);
    const SLACK: Duration = Duration::from_millis(20);
    let soft = match (rtt, median) {
        (Some(rtt), _) => rtt * 2 + SLACK,
        (None, Some(median)) => median * 2,
        (None, None) => hard / 2,
    };
    soft.max(FLOOR).min(hard)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests take one base instant
mod tests {
    use super::*;

    fn id(first: u8) -> NodeId {
        let mut bytes = [0u8; 32];
        bytes[0] = first;
        NodeId::from_bytes(bytes)
    }

    fn ep(n: u8) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, n], 4800))
    }

    #[test]
    fn queries_alpha_closest_then_ends_when_window_answered() {
        let now = Instant::now();
        let initial: Vec<_> = [8u8, 4, 2, 1].iter().map(|&n| (id(n), ep(n))).collect();
        let mut lookup = Lookup::new(now, Key([0; 32]), id(0xff), 2, 2, 20, &initial);
        // The two closest to key 0 are ids 1 and 2.
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(1),
                endpoint: ep(1)
            }
        );
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(2),
                endpoint: ep(2)
            }
        );
        assert_eq!(lookup.step(now), Step::Wait);
        lookup.on_nodes(now, id(1), &[]);
        // 4 is not in the window (want 2): wait for 2.
        assert_eq!(lookup.step(now), Step::Wait);
        lookup.on_nodes(now, id(2), &[]);
        assert_eq!(lookup.step(now), Step::Done);
        assert_eq!(
            lookup.closest_answered(5),
            vec![(id(1), ep(1)), (id(2), ep(2))]
        );
    }

    #[test]
    fn stalled_query_frees_its_slot_and_leaves_the_window() {
        let now = Instant::now();
        let initial: Vec<_> = [1u8, 2, 3].iter().map(|&n| (id(n), ep(n))).collect();
        let mut lookup = Lookup::new(now, Key([0; 32]), id(0xff), 1, 2, 20, &initial);
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(1),
                endpoint: ep(1)
            }
        );
        assert_eq!(lookup.step(now), Step::Wait);
        lookup.on_stalled(id(1));
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(2),
                endpoint: ep(2)
            }
        );
        lookup.on_nodes(now, id(2), &[]);
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(3),
                endpoint: ep(3)
            }
        );
        lookup.on_nodes(now, id(3), &[]);
        assert_eq!(lookup.step(now), Step::Done);
        // The late answer of 1 is still taken.
        lookup.on_nodes(now, id(1), &[]);
        assert_eq!(lookup.closest_answered(1), vec![(id(1), ep(1))]);
    }

    #[test]
    fn a_patient_lookup_waits_for_stalled_candidates() {
        let now = Instant::now();
        let initial: Vec<_> = [1u8, 2].iter().map(|&n| (id(n), ep(n))).collect();
        let mut lookup = Lookup::new(now, Key([0; 32]), id(0xff), 1, 2, 20, &initial).patient();
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(1),
                endpoint: ep(1)
            }
        );
        lookup.on_stalled(id(1));
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(2),
                endpoint: ep(2)
            }
        );
        lookup.on_nodes(now, id(2), &[]);
        assert_eq!(lookup.step(now), Step::Wait, "1 may still answer");
        lookup.on_failed(id(1));
        assert_eq!(lookup.step(now), Step::Done);
    }

    #[test]
    fn learnt_contacts_are_one_level_deeper_and_failures_end_the_lookup() {
        let now = Instant::now();
        let mut lookup = Lookup::new(now, Key([0; 32]), id(0xff), 3, 20, 20, &[(id(8), ep(8))]);
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(8),
                endpoint: ep(8)
            }
        );
        lookup.on_nodes(now, id(8), &[(id(4), ep(4)), (id(0xff), ep(9))]);
        assert_eq!(
            lookup.step(now),
            Step::Query {
                id: id(4),
                endpoint: ep(4)
            }
        );
        lookup.on_failed(id(4));
        assert_eq!(lookup.step(now), Step::Done);
        let trace = lookup.trace(now, None);
        assert_eq!(trace.queries.len(), 2);
        assert_eq!(trace.queries[1].depth, 2);
        assert_eq!(trace.queries[1].outcome, QueryOutcome::Timeout);
        assert_eq!(trace.queries[0].outcome, QueryOutcome::Nodes(2));
        assert_eq!(trace.hops, 1);
    }

    #[test]
    fn soft_timeout_follows_rtt_within_bounds() {
        let hard = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(soft_timeout(Some(ms(100)), None, hard), ms(220));
        assert_eq!(soft_timeout(Some(ms(10)), None, hard), ms(100));
        assert_eq!(soft_timeout(None, Some(ms(80)), hard), ms(160));
        assert_eq!(soft_timeout(Some(ms(900)), None, hard), hard);
        assert_eq!(soft_timeout(None, None, hard), ms(500));
    }
}
