//! Application traffic for scenarios: numbered streams of UDP packets from
//! one host's TUN to another's, and what became of each packet.
//!
//! A flow is what a ping stream or a game would send: one small UDP packet
//! every interval, from `from`'s overlay address to `to`'s. Each packet's
//! payload starts with a marker, the flow's number and the packet's
//! sequence number, so the simulator recognises flow packets wherever a node
//! writes them to its TUN and records their arrival times; a flow packet
//! that comes out of any host but the flow's destination is counted as
//! misdelivered (an invariant every scenario can check).
//!
//! A [`FlowReport`] answers the questions failover scenarios ask: how many
//! packets sent in a window arrived, how long after a failure the first
//! packet got through (the outage), when delivery became whole again, and
//! the one-way latency of what arrived. Times are simulated time since the
//! start of the simulation.

use std::net::SocketAddr;
use std::time::Duration;

use crate::sim::HostId;

/// The first bytes of every flow packet's UDP payload.
pub const FLOW_MARKER: [u8; 8] = *b"weftflow";

/// The UDP destination port of flow packets (the source port is the flow's
/// own, so flows differ by port).
pub const FLOW_DESTINATION_PORT: u16 = 9000;

/// Bytes of marker, flow number and sequence number at the start of the
/// payload: the smallest flow payload.
pub const FLOW_HEADER: usize = FLOW_MARKER.len() + 8;

/// What a flow sends: from whom to whom, when, how often, and in which
/// packets. Build one with [`FlowSpec::new`] and the `with_*` methods, then
/// start it with [`Sim::start_flow`](crate::Sim::start_flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    /// The sending host.
    pub from: HostId,
    /// The receiving host.
    pub to: HostId,
    /// When the first packet is handed to the sender's node (simulated
    /// time; a time in the past means now).
    pub start: Duration,
    /// Time between packets.
    pub interval: Duration,
    /// How many packets.
    pub count: u32,
    /// UDP source port; flows between the same hosts differ by it.
    pub port: u16,
    /// IPv6 overlay addresses rather than IPv4.
    pub ipv6: bool,
    /// The DSCP the packets carry (selects the routing metric).
    pub dscp: u8,
    /// UDP payload length (at least [`FLOW_HEADER`]).
    pub payload: usize,
}

impl FlowSpec {
    /// 100 packets of 64 bytes over IPv4, one every 10 ms from now, source
    /// port 10000, DSCP 0.
    pub fn new(from: HostId, to: HostId) -> Self {
        Self {
            from,
            to,
            start: Duration::ZERO,
            interval: Duration::from_millis(10),
            count: 100,
            port: 10_000,
            ipv6: false,
            dscp: 0,
            payload: 64,
        }
    }

    /// Starts at `start`.
    pub fn with_start(mut self, start: Duration) -> Self {
        self.start = start;
        self
    }

    /// One packet every `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sends `count` packets.
    pub fn with_count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Sends packets from `start` until just before `end`, one per
    /// interval.
    pub fn until(mut self, end: Duration) -> Self {
        let span = end.saturating_sub(self.start);
        let interval = self.interval.max(Duration::from_nanos(1));
        self.count = u32::try_from(span.as_nanos().div_ceil(interval.as_nanos())).unwrap_or(0);
        self
    }

    /// Uses UDP source port `port`.
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Uses IPv6 overlay addresses.
    pub fn with_ipv6(mut self, ipv6: bool) -> Self {
        self.ipv6 = ipv6;
        self
    }

    /// Marks packets with `dscp`.
    pub fn with_dscp(mut self, dscp: u8) -> Self {
        self.dscp = dscp;
        self
    }

    /// Pads payloads to `payload` bytes.
    pub fn with_payload(mut self, payload: usize) -> Self {
        self.payload = payload;
        self
    }
}

/// Names a flow started with [`Sim::start_flow`](crate::Sim::start_flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub(crate) u32);

/// What became of a flow's packets so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowReport {
    /// The sending host.
    pub from: HostId,
    /// The receiving host.
    pub to: HostId,
    /// The flow's source and destination overlay addresses.
    pub addresses: (SocketAddr, SocketAddr),
    /// When each packet was handed to the sender's node.
    pub sent: Vec<Duration>,
    /// When each packet came out of the receiver's TUN (the first copy).
    pub arrived: Vec<Option<Duration>>,
    /// Copies that arrived more than once.
    pub duplicates: u64,
    /// Copies that came out of another host's TUN.
    pub misdelivered: u64,
}

/// Packets sent in a window and how many of them arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Packets sent in the window.
    pub sent: usize,
    /// Of those, packets that arrived.
    pub delivered: usize,
}

impl Delivery {
    /// Packets sent in the window that did not arrive.
    pub fn lost(&self) -> usize {
        self.sent - self.delivered
    }

    /// The fraction that arrived (1 for an empty window).
    pub fn ratio(&self) -> f64 {
        if self.sent == 0 {
            1.0
        } else {
            self.delivered as f64 / self.sent as f64
        }
    }

    /// The fraction lost, in percent.
    pub fn loss_percent(&self) -> f64 {
        100.0 * (1.0 - self.ratio())
    }
}

impl std::ops::Add for Delivery {
    type Output = Delivery;

    fn add(self, other: Delivery) -> Delivery {
        Delivery {
            sent: self.sent + other.sent,
            delivered: self.delivered + other.delivered,
        }
    }
}

impl FlowReport {
    pub(crate) fn new(
        spec: &FlowSpec,
        addresses: (SocketAddr, SocketAddr),
        start: Duration,
    ) -> Self {
        let sent = (0..spec.count)
            .map(|i| start + spec.interval * i)
            .collect::<Vec<_>>();
        Self {
            from: spec.from,
            to: spec.to,
            addresses,
            arrived: vec![None; sent.len()],
            sent,
            duplicates: 0,
            misdelivered: 0,
        }
    }

    pub(crate) fn record(&mut self, host: HostId, sequence: u32, at: Duration) {
        if host != self.to {
            self.misdelivered += 1;
            return;
        }
        match self.arrived.get_mut(sequence as usize) {
            Some(slot @ None) => *slot = Some(at),
            Some(Some(_)) => self.duplicates += 1,
            // A sequence number the flow never sent: count it as wrong.
            None => self.misdelivered += 1,
        }
    }

    /// Packets sent at or after `from` and before `to`, and how many of
    /// them arrived (by now).
    pub fn window(&self, from: Duration, to: Duration) -> Delivery {
        let mut window = Delivery::default();
        for (sent, arrived) in self.sent.iter().zip(&self.arrived) {
            if *sent >= from && *sent < to {
                window.sent += 1;
                window.delivered += usize::from(arrived.is_some());
            }
        }
        window
    }

    /// Every packet: how many were sent and arrived.
    pub fn total(&self) -> Delivery {
        self.window(Duration::ZERO, Duration::MAX)
    }

    /// Time from `failure` to the arrival of the first packet sent at or
    /// after it that arrived: how long the flow was cut off. `None` if no
    /// packet sent after `failure` arrived.
    pub fn outage_after(&self, failure: Duration) -> Option<Duration> {
        self.sent
            .iter()
            .zip(&self.arrived)
            .filter(|(sent, _)| **sent >= failure)
            .find_map(|(_, arrived)| *arrived)
            .map(|arrived| arrived.saturating_sub(failure))
    }

    /// The send time of the first lost packet sent at or after `from`.
    pub fn first_loss_after(&self, from: Duration) -> Option<Duration> {
        self.sent
            .iter()
            .zip(&self.arrived)
            .find(|(sent, arrived)| **sent >= from && arrived.is_none())
            .map(|(sent, _)| *sent)
    }

    /// The earliest send time at or after `from` from which every packet
    /// sent before `until` arrived: when delivery became whole again.
    /// `None` if the last packet sent before `until` was lost (or none was
    /// sent in between).
    pub fn whole_from(&self, from: Duration, until: Duration) -> Option<Duration> {
        let mut whole = None;
        for (sent, arrived) in self.sent.iter().zip(&self.arrived) {
            if *sent < from || *sent >= until {
                continue;
            }
            match (arrived, whole) {
                (Some(_), None) => whole = Some(*sent),
                (None, _) => whole = None,
                (Some(_), Some(_)) => {}
            }
        }
        whole
    }

    /// One-way latencies of the packets sent in `[from, to)` that arrived,
    /// in sequence order.
    pub fn latencies(&self, from: Duration, to: Duration) -> Vec<Duration> {
        self.sent
            .iter()
            .zip(&self.arrived)
            .filter(|(sent, _)| **sent >= from && **sent < to)
            .filter_map(|(sent, arrived)| arrived.map(|a| a.saturating_sub(*sent)))
            .collect()
    }
}

/// Builds a flow packet's payload.
pub(crate) fn flow_payload(flow: FlowId, sequence: u32, len: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(len.max(FLOW_HEADER));
    payload.extend_from_slice(&FLOW_MARKER);
    payload.extend_from_slice(&flow.0.to_be_bytes());
    payload.extend_from_slice(&sequence.to_be_bytes());
    payload.resize(len.max(FLOW_HEADER), 0x5a);
    payload
}

/// Reads the flow and sequence number from a UDP payload, if it is a flow
/// packet's.
pub(crate) fn parse_flow_payload(payload: &[u8]) -> Option<(FlowId, u32)> {
    let rest = payload.strip_prefix(&FLOW_MARKER)?;
    let flow = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let sequence = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?);
    Some((FlowId(flow), sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(arrivals: &[Option<u64>]) -> FlowReport {
        let spec = FlowSpec::new(HostId(0), HostId(1)).with_count(arrivals.len() as u32);
        let any: SocketAddr = "198.19.0.1:1".parse().unwrap();
        let mut report = FlowReport::new(&spec, (any, any), Duration::ZERO);
        for (i, a) in arrivals.iter().enumerate() {
            if let Some(ms) = a {
                report.record(HostId(1), i as u32, Duration::from_millis(*ms));
            }
        }
        report
    }

    #[test]
    fn outage_counts_from_the_failure_to_the_first_arrival_after_it() {
        // Packets every 10 ms, 5 ms one way; 20..50 ms lost.
        let r = report(&[Some(5), Some(15), None, None, None, Some(55), Some(65)]);
        let ms = Duration::from_millis;
        assert_eq!(r.outage_after(ms(18)), Some(ms(37)));
        assert_eq!(r.first_loss_after(ms(0)), Some(ms(20)));
        assert_eq!(r.whole_from(ms(0), ms(70)), Some(ms(50)));
        assert_eq!(r.whole_from(ms(0), ms(40)), None);
        let w = r.window(ms(10), ms(60));
        assert_eq!((w.sent, w.delivered, w.lost()), (5, 2, 3));
        assert_eq!(r.latencies(ms(0), ms(20)), vec![ms(5), ms(5)]);
    }

    #[test]
    fn duplicates_and_wrong_hosts_are_counted_apart() {
        let mut r = report(&[Some(5)]);
        r.record(HostId(1), 0, Duration::from_millis(6));
        r.record(HostId(2), 0, Duration::from_millis(6));
        r.record(HostId(1), 7, Duration::from_millis(6));
        assert_eq!((r.duplicates, r.misdelivered), (1, 2));
        assert_eq!(r.total().delivered, 1);
    }

    #[test]
    fn payloads_round_trip_and_others_are_not_flows() {
        let payload = flow_payload(FlowId(3), 77, 64);
        assert_eq!(payload.len(), 64);
        assert_eq!(parse_flow_payload(&payload), Some((FlowId(3), 77)));
        assert_eq!(parse_flow_payload(&payload[..FLOW_HEADER - 1]), None);
        assert_eq!(parse_flow_payload(b"hello"), None);
    }

    #[test]
    fn until_counts_the_packets_that_fit() {
        let spec = FlowSpec::new(HostId(0), HostId(1))
            .with_start(Duration::from_millis(100))
            .with_interval(Duration::from_millis(10))
            .until(Duration::from_millis(205));
        assert_eq!(spec.count, 11);
    }
}
