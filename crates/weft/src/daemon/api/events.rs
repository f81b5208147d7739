//! The event hub: what the node reports (sessions, links, paths, group
//! membership), turned into JSON events for the API's stream
//! (`/api/v1/events`, Server-Sent Events), its ring buffer of recent
//! events (`/api/v1/events/recent`) and per-destination path-change
//! counters for `/metrics`.
//!
//! The event loop calls [`EventHub::record`] for every core event before
//! it logs it; API tasks subscribe or read. Bounded everywhere: the ring
//! keeps the last [`RECENT`] events, the broadcast channel as many per
//! subscriber (a subscriber that falls further behind skips the oldest and
//! is told how many it missed), and the counters have one entry per
//! destination the node has. Lookup results are not events here (they are
//! answers to whoever asked). Events carry a sequence number that grows by
//! one per event from daemon start, and the wall-clock time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;
use weft_core::Event;

/// Events kept for `/api/v1/events/recent`, and the stream's per-subscriber
/// backlog.
pub(crate) const RECENT: usize = 256;

/// One event as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ApiEvent {
    /// Grows by one per event from daemon start.
    pub(crate) seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub(crate) unix_ms: u64,
    /// `session_established`, `session_lost`, `handshake_rejected`,
    /// `path_changed`, `link_down`, `link_up`, `group_joined`,
    /// `group_left`, `peer_roamed`.
    pub(crate) kind: &'static str,
    /// One line for people.
    pub(crate) text: String,
    /// The event's fields (names, paths, addresses).
    pub(crate) data: serde_json::Value,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    recent: VecDeque<ApiEvent>,
    /// Path changes per (destination name, metric).
    path_changes: BTreeMap<(String, String), u64>,
}

/// See the module doc.
pub(crate) struct EventHub {
    sender: broadcast::Sender<Arc<ApiEvent>>,
    state: Mutex<State>,
}

impl EventHub {
    pub(crate) fn new() -> Self {
        let (sender, _) = broadcast::channel(RECENT);
        Self {
            sender,
            state: Mutex::new(State::default()),
        }
    }

    /// Turns a core event into an API event, keeps and broadcasts it.
    pub(crate) fn record(&self, event: &Event) {
        let Some((kind, text, data)) = describe(event) else {
            return;
        };
        #[allow(clippy::disallowed_methods)] // events carry wall-clock time for operators
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // A panic elsewhere while holding the lock leaves plain data behind
        // (no invariant spans fields), so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Event::PathChanged { name, metric, .. } = event {
            *state
                .path_changes
                .entry((name.clone(), metric.to_string()))
                .or_insert(0) += 1;
        }
        let event = ApiEvent {
            seq: state.next_seq,
            unix_ms,
            kind,
            text,
            data,
        };
        state.next_seq += 1;
        if state.recent.len() == RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(event.clone());
        // No subscriber is fine.
        let _ = self.sender.send(Arc::new(event));
    }

    /// The most recent events, oldest first.
    pub(crate) fn recent(&self) -> Vec<ApiEvent> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.recent.iter().cloned().collect()
    }

    /// Path changes so far per (destination, metric).
    pub(crate) fn path_changes(&self) -> BTreeMap<(String, String), u64> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.path_changes.clone()
    }

    /// A receiver of every event recorded from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<ApiEvent>> {
        self.sender.subscribe()
    }
}

/// "direct", "via c", "via c, d", or "unreachable", for a path of names
/// ending with the destination.
fn path_text(path: &[String]) -> String {
    match path {
        [] => "unreachable".to_owned(),
        [_] => "direct".to_owned(),
        [via @ .., _] => format!("via {}", via.join(", ")),
    }
}

fn describe(event: &Event) -> Option<(&'static str, String, serde_json::Value)> {
    use serde_json::json;
    Some(match event {
        Event::SessionEstablished {
            peer,
            name,
            endpoint,
            initiator,
        } => (
            "session_established",
            format!("session with {name} established"),
            json!({ "peer": name, "node_id": peer.to_string(), "endpoint": endpoint, "initiator": initiator }),
        ),
        Event::SessionLost { peer, name } => (
            "session_lost",
            format!("{name} fell silent; session lost"),
            json!({ "peer": name, "node_id": peer.to_string() }),
        ),
        Event::HandshakeRejected { from, reason } => (
            "handshake_rejected",
            format!("handshake from {from} rejected: {reason}"),
            json!({ "from": from, "reason": reason }),
        ),
        Event::PathChanged {
            destination,
            name,
            metric,
            from,
            to,
        } => (
            "path_changed",
            format!(
                "path to {name} ({metric}): {} -> {}",
                path_text(from),
                path_text(to)
            ),
            json!({ "destination": name, "node_id": destination.to_string(),
                    "metric": metric.to_string(), "from": from, "to": to }),
        ),
        Event::LinkDown { peer, name } => (
            "link_down",
            format!("direct link to {name} down"),
            json!({ "peer": name, "node_id": peer.to_string() }),
        ),
        Event::LinkUp { peer, name } => (
            "link_up",
            format!("direct link to {name} up"),
            json!({ "peer": name, "node_id": peer.to_string() }),
        ),
        Event::GroupJoined { group, node, name } => (
            "group_joined",
            format!("{name} joined {group}"),
            json!({ "group": group, "member": name, "node_id": node.to_string() }),
        ),
        Event::GroupLeft { group, node, name } => (
            "group_left",
            format!("{name} left {group}"),
            json!({ "group": group, "member": name, "node_id": node.to_string() }),
        ),
        Event::PeerRoamed {
            peer,
            name,
            from,
            to,
        } => (
            "peer_roamed",
            format!("{name} moved from {from} to {to}"),
            json!({ "peer": name, "node_id": peer.to_string(), "from": from, "to": to }),
        ),
        Event::CertificateExpiring {
            not_after,
            remaining,
        } => (
            "certificate_expiring",
            if remaining.is_zero() {
                "this node's certificate has expired".to_owned()
            } else {
                format!(
                    "this node's certificate expires in {}",
                    crate::cert::human_duration(remaining.as_secs())
                )
            },
            json!({ "not_after": not_after, "remaining_secs": remaining.as_secs() }),
        ),
        Event::RevocationsUpdated {
            version,
            entries,
            from,
        } => (
            "revocations_updated",
            format!(
                "revocation list version {version} ({entries} entries) installed{}",
                from.as_ref()
                    .map(|f| format!(", from {f}"))
                    .unwrap_or_default()
            ),
            json!({ "version": version, "entries": entries, "from": from }),
        ),
        Event::PeerRevoked { peer, name } => (
            "peer_revoked",
            format!("{name}'s certificate is revoked; session ended"),
            json!({ "peer": name, "node_id": peer.to_string() }),
        ),
        Event::LookupDone { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::{Metric, NodeId};

    fn path_change(n: u8) -> Event {
        Event::PathChanged {
            destination: NodeId::from_bytes([n; 32]),
            name: "b".into(),
            metric: Metric::Latency,
            from: vec!["b".into()],
            to: vec!["c".into(), "b".into()],
        }
    }

    #[test]
    fn events_are_numbered_kept_broadcast_and_counted() {
        let hub = EventHub::new();
        let mut receiver = hub.subscribe();
        hub.record(&path_change(1));
        let event = receiver.try_recv().unwrap();
        assert_eq!(event.seq, 0);
        assert_eq!(event.kind, "path_changed");
        assert_eq!(event.text, "path to b (latency): direct -> via c");
        assert_eq!(event.data["to"], serde_json::json!(["c", "b"]));
        hub.record(&path_change(1));
        assert_eq!(hub.recent().len(), 2);
        assert_eq!(
            hub.path_changes()
                .get(&("b".to_owned(), "latency".to_owned())),
            Some(&2)
        );
    }

    #[test]
    fn the_ring_keeps_the_latest_events() {
        let hub = EventHub::new();
        for n in 0..(RECENT + 10) {
            hub.record(&path_change(u8::try_from(n % 200).unwrap()));
        }
        let recent = hub.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].seq, 10);
        assert_eq!(recent[RECENT - 1].seq, u64::try_from(RECENT + 9).unwrap());
    }
}
