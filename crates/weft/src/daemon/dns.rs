//! The DNS responder: answers `NAME.weft` A and AAAA queries from the
//! nodes' DHT records, so that unmodified programs (`ping db1.weft`) reach
//! nodes by name.
//!
//! It listens on UDP (by default on the node's overlay IPv4 address, if it
//! has one, and its overlay IPv6 address, port 53), is authoritative for
//! `weft.` only and never recurses:
//!
//! - `NAME.weft` (any case, with or without the trailing dot; `NAME` a node
//!   name): the event loop looks the name up with `Node::lookup`; a record
//!   answers A (its overlay IPv4, if its certificate has one) and AAAA (its
//!   overlay IPv6), with a TTL of [`TTL`]; other types get an empty answer.
//!   A name no node holds is NXDOMAIN; a lookup that fails or does not end
//!   within [`ANSWER_TIMEOUT`] is SERVFAIL.
//! - other names under `weft.` (`a.b.weft`, `Bad_Name.weft`) are NXDOMAIN
//!   at once, and `weft.` itself has no records;
//! - every other domain is REFUSED; other opcodes NOTIMP; a query with
//!   other than one question FORMERR. Responses and datagrams too short for
//!   a DNS header are dropped. Nothing a client sends can panic or stop it.
//!
//! Threading follows the control socket: one task per listening socket
//! decodes queries and answers what it can on its own; a query that needs
//! the node becomes a [`DnsRequest`] on a bounded channel to the event loop
//! (which alone touches the node) with a oneshot for the [`DnsAnswer`].
//! Queries waiting for the node are bounded ([`MAX_IN_FLIGHT`] per socket;
//! beyond that, or when the channel is full, they get SERVFAIL at once),
//! and each waits at most [`ANSWER_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, trace};

/// TTL of every answer: short, since a node's addresses may change with a
/// new certificate and stale names should not linger.
pub(super) const TTL: u32 = 30;
/// Longest a query waits for the node's lookup before it gets SERVFAIL;
/// below the 5 s a glibc stub waits before it retries.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_millis(4500);
/// Queries per socket waiting for the node at once.
const MAX_IN_FLIGHT: usize = 256;
/// Queries waiting in the channel to the event loop.
pub(super) const QUEUE: usize = 64;
/// The zone this responder serves.
const ZONE: &[u8] = b"weft";
/// Largest UDP payload we advertise with EDNS (the DNS flag day value).
const EDNS_PAYLOAD: u16 = 1232;
/// Largest query read; anything longer is not a query we answer.
const MAX_QUERY: usize = 4096;

/// A query the event loop must answer: the node's name `name` (lower case,
/// without `.weft`).
#[derive(Debug)]
pub(super) struct DnsRequest {
    pub(super) name: String,
    pub(super) reply: oneshot::Sender<DnsAnswer>,
}

/// What the node knows about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DnsAnswer {
    /// A node holds the name: its overlay addresses.
    Found {
        ipv4: Option<Ipv4Addr>,
        ipv6: Ipv6Addr,
    },
    /// No node holds the name.
    NotFound,
    /// The lookup failed (timed out, no contacts).
    Failed,
}

/// The listening sockets' tasks; dropping this stops them.
pub(super) struct DnsServer {
    addresses: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds every address in `listen` and starts answering on it. An
    /// address that cannot be bound is reported in the second list and
    /// skipped. Must be called inside the tokio runtime.
    pub(super) fn start(
        listen: &[SocketAddr],
        requests: &mpsc::Sender<DnsRequest>,
    ) -> (Self, Vec<(SocketAddr, anyhow::Error)>) {
        let mut server = DnsServer {
            addresses: Vec::new(),
            tasks: Vec::new(),
        };
        let mut failed = Vec::new();
        for &address in listen {
            match bind(address) {
                Ok(socket) => {
                    let address = socket.local_addr().unwrap_or(address);
                    server.addresses.push(address);
                    server
                        .tasks
                        .push(tokio::spawn(serve(Arc::new(socket), requests.clone())));
                }
                Err(error) => failed.push((address, error)),
            }
        }
        (server, failed)
    }

    /// The addresses it answers on.
    pub(super) fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A non-blocking UDP socket on `address`. `IP_FREEBIND`: the overlay
/// address was just added to the TUN interface, and an IPv6 address may
/// still be tentative for a moment; the socket is valid either way.
fn bind(address: SocketAddr) -> anyhow::Result<UdpSocket> {
    let domain = Domain::for_address(address);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
        .context("cannot create a UDP socket")?;
    match address.ip() {
        IpAddr::V4(_) => socket.set_freebind_v4(true),
        IpAddr::V6(_) => socket
            .set_only_v6(true)
            .and_then(|()| socket.set_freebind_v6(true)),
    }
    .context("cannot set the socket's options")?;
    socket
        .set_nonblocking(true)
        .context("cannot make the socket non-blocking")?;
    socket
        .bind(&address.into())
        .with_context(|| format!("cannot bind {address}"))?;
    UdpSocket::from_std(socket.into()).context("cannot register the socket with tokio")
}

/// Answers queries arriving on `socket` until the event loop goes away.
async fn serve(socket: Arc<UdpSocket>, requests: mpsc::Sender<DnsRequest>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_QUERY];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors of earlier answers surface here, and so would
                // a shortage of buffers: neither is a reason to stop.
                trace!(%error, "DNS socket receive error");
                if requests.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if requests.is_closed() {
            return;
        }
        let Some(datagram) = buf.get(..len) else {
            continue;
        };
        let query = match Incoming::decode(datagram) {
            Incoming::Ignore => continue,
            Incoming::Reply(bytes) => {
                send(&socket, &bytes, from).await;
                continue;
            }
            Incoming::Lookup(query) => query,
        };
        let (reply, answer) = oneshot::channel();
        let request = DnsRequest {
            name: query.name.clone(),
            reply,
        };
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(permit) if requests.try_send(request).is_ok() => permit,
            _ => {
                debug!("DNS queries arrive faster than the node answers; SERVFAIL");
                send(&socket, &query.respond(&DnsAnswer::Failed), from).await;
                continue;
            }
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => DnsAnswer::Failed,
            };
            send(&socket, &query.respond(&answer), from).await;
            drop(permit);
        });
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(error) = socket.send_to(bytes, to).await {
        trace!(%error, %to, "cannot send a DNS answer");
    }
}

/// What to do with a datagram.
#[derive(Debug)]
enum Incoming {
    /// Nothing: not a query at all.
    Ignore,
    /// Send this answer at once.
    Reply(Vec<u8>),
    /// Ask the node about a name.
    Lookup(Box<PendingQuery>),
}

/// A query for `NAME.weft`, waiting for the node.
#[derive(Debug)]
struct PendingQuery {
    /// The node name, lower case.
    name: String,
    request: Message,
    query: Query,
}

impl Incoming {
    /// Decodes one datagram. Total: any bytes give a value.
    fn decode(datagram: &[u8]) -> Self {
        // Too short for a header, or a response (QR set): never answer, so
        // that two responders cannot bounce errors off each other.
        let (Some(&[id_high, id_low]), Some(&flags)) = (datagram.get(..2), datagram.get(2)) else {
            return Incoming::Ignore;
        };
        if datagram.len() < 12 || flags & 0x80 != 0 {
            return Incoming::Ignore;
        }
        let Ok(request) = Message::from_vec(datagram) else {
            let id = u16::from_be_bytes([id_high, id_low]);
            return reply(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr));
        };
        if request.metadata.message_type != MessageType::Query {
            return Incoming::Ignore;
        }
        if request.metadata.op_code != OpCode::Query {
            return reply(response(&request, ResponseCode::NotImp));
        }
        let [query] = request.queries.as_slice() else {
            return reply(response(&request, ResponseCode::FormErr));
        };
        let query = query.clone();
        let labels: Vec<&[u8]> = query.name().iter().collect();
        let in_zone = labels
            .last()
            .is_some_and(|last| last.eq_ignore_ascii_case(ZONE));
        if !in_zone || !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return reply(response(&request, ResponseCode::Refused));
        }
        let name = match labels.as_slice() {
            // `weft.` itself: it exists, with none of the asked records.
            [_] => {
                return reply(with_query(
                    response(&request, ResponseCode::NoError),
                    &query,
                ));
            }
            [label, _] => node_name(label),
            _ => None,
        };
        let Some(name) = name else {
            return reply(with_query(
                response(&request, ResponseCode::NXDomain),
                &query,
            ));
        };
        Incoming::Lookup(Box::new(PendingQuery {
            name,
            request,
            query,
        }))
    }
}

impl PendingQuery {
    /// The response once the node has answered.
    fn respond(&self, answer: &DnsAnswer) -> Vec<u8> {
        let code = match answer {
            DnsAnswer::Found { .. } => ResponseCode::NoError,
            DnsAnswer::NotFound => ResponseCode::NXDomain,
            DnsAnswer::Failed => ResponseCode::ServFail,
        };
        let mut message = with_query(response(&self.request, code), &self.query);
        if let DnsAnswer::Found { ipv4, ipv6 } = answer {
            let kind = self.query.query_type();
            let name = self.query.name().clone();
            if let (RecordType::A | RecordType::ANY, Some(ipv4)) = (kind, ipv4) {
                message.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(*ipv4))));
            }
            if matches!(kind, RecordType::AAAA | RecordType::ANY) {
                message.add_answer(Record::from_rdata(name, TTL, RData::AAAA(AAAA(*ipv6))));
            }
        }
        encode(&message)
    }
}

/// A node name from a DNS label: lower-cased, then letters, digits and
/// `-`, not at either end, at most 63 bytes (the DNS label limit).
fn node_name(label: &[u8]) -> Option<String> {
    let name = String::from_utf8(label.to_ascii_lowercase()).ok()?;
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(name)
}

/// An empty response to `request` with `code`: same id, authoritative, no
/// recursion, and EDNS if the query had it (RFC 6891 §7).
fn response(request: &Message, code: ResponseCode) -> Message {
    let mut message = Message::response(request.metadata.id, request.metadata.op_code);
    message.metadata.authoritative = true;
    message.metadata.recursion_desired = request.metadata.recursion_desired;
    message.metadata.recursion_available = false;
    message.metadata.checking_disabled = request.metadata.checking_disabled;
    message.metadata.response_code = code;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    message
}

fn with_query(mut message: Message, query: &Query) -> Message {
    message.add_query(query.clone());
    message
}

fn reply(message: Message) -> Incoming {
    Incoming::Reply(encode(&message))
}

/// The message's bytes. Our messages hold at most one question, two
/// addresses and an OPT record; should encoding fail all the same, the
/// client gets a bare SERVFAIL header rather than nothing.
fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap_or_else(|error| {
        debug!(%error, "cannot encode a DNS answer");
        let [high, low] = message.metadata.id.to_be_bytes();
        // QR, opcode QUERY, AA; RCODE 2 (SERVFAIL); all counts zero.
        vec![high, low, 0x84, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn decode_reply(incoming: Incoming) -> Message {
        match incoming {
            Incoming::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn pending(bytes: &[u8]) -> PendingQuery {
        match Incoming::decode(bytes) {
            Incoming::Lookup(query) => *query,
            other => panic!("expected a lookup, got {other:?}"),
        }
    }

    const FOUND: DnsAnswer = DnsAnswer::Found {
        ipv4: Some(Ipv4Addr::new(198, 19, 0, 7)),
        ipv6: Ipv6Addr::new(0xfd77, 0x6566, 1, 2, 3, 4, 5, 6),
    };

    #[test]
    fn names_in_the_zone_are_looked_up_in_lower_case() {
        for name in ["db1.weft.", "DB1.Weft", "db1.WEFT."] {
            let query = pending(&query(name, RecordType::A));
            assert_eq!(query.name, "db1", "{name}");
        }
    }

    #[test]
    fn a_and_aaaa_answer_with_the_records_addresses() {
        let a = pending(&query("db1.weft.", RecordType::A));
        let message = Message::from_vec(&a.respond(&FOUND)).unwrap();
        assert_eq!(message.metadata.id, 0x1234);
        assert_eq!(message.metadata.message_type, MessageType::Response);
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.metadata.authoritative);
        assert!(message.metadata.recursion_desired);
        assert!(!message.metadata.recursion_available);
        assert_eq!(message.queries.len(), 1);
        assert_eq!(message.answers.len(), 1);
        assert_eq!(message.answers[0].ttl, TTL);
        assert_eq!(
            message.answers[0].data,
            RData::A(A(Ipv4Addr::new(198, 19, 0, 7)))
        );

        let aaaa = pending(&query("db1.weft.", RecordType::AAAA));
        let message = Message::from_vec(&aaaa.respond(&FOUND)).unwrap();
        assert_eq!(
            message.answers[0].data,
            RData::AAAA(AAAA(Ipv6Addr::new(0xfd77, 0x6566, 1, 2, 3, 4, 5, 6)))
        );
        assert_eq!(
            message.answers[0].name,
            Name::from_ascii("db1.weft.").unwrap()
        );
    }

    #[test]
    fn a_node_without_ipv4_and_other_types_get_an_empty_answer() {
        let a = pending(&query("db1.weft.", RecordType::A));
        let no_ipv4 = DnsAnswer::Found {
            ipv4: None,
            ipv6: Ipv6Addr::LOCALHOST,
        };
        let message = Message::from_vec(&a.respond(&no_ipv4)).unwrap();
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.answers.is_empty());
        let mx = pending(&query("db1.weft.", RecordType::MX));
        let message = Message::from_vec(&mx.respond(&FOUND)).unwrap();
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.answers.is_empty());
    }

    #[test]
    fn unknown_names_are_nxdomain_and_failures_servfail() {
        let a = pending(&query("nobody.weft.", RecordType::A));
        let message = Message::from_vec(&a.respond(&DnsAnswer::NotFound)).unwrap();
        assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
        let message = Message::from_vec(&a.respond(&DnsAnswer::Failed)).unwrap();
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn names_that_cannot_be_nodes_are_nxdomain_at_once() {
        for name in ["a.b.weft.", "bad_name.weft.", "x.db1.weft."] {
            let message = decode_reply(Incoming::decode(&query(name, RecordType::A)));
            assert_eq!(
                message.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
        let message = decode_reply(Incoming::decode(&query("weft.", RecordType::SOA)));
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.answers.is_empty());
    }

    #[test]
    fn other_domains_are_refused() {
        for name in ["example.com.", "weft.example.", "1.0.19.198.in-addr.arpa."] {
            let message = decode_reply(Incoming::decode(&query(name, RecordType::A)));
            assert_eq!(
                message.metadata.response_code,
                ResponseCode::Refused,
                "{name}"
            );
            assert_eq!(message.metadata.id, 0x1234);
        }
    }

    #[test]
    fn malformed_datagrams_are_dropped_or_formerr() {
        assert!(matches!(Incoming::decode(&[]), Incoming::Ignore));
        assert!(matches!(Incoming::decode(&[1, 2, 3]), Incoming::Ignore));
        // A header that promises a question that is not there.
        let garbage = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let message = decode_reply(Incoming::decode(&garbage));
        assert_eq!(message.metadata.id, 0xabcd);
        assert_eq!(message.metadata.response_code, ResponseCode::FormErr);
        // A response is never answered.
        let mut response = query("db1.weft.", RecordType::A);
        response[2] |= 0x80;
        assert!(matches!(Incoming::decode(&response), Incoming::Ignore));
        // No question.
        let mut empty = Message::query();
        empty.metadata.id = 7;
        let message = decode_reply(Incoming::decode(&empty.to_vec().unwrap()));
        assert_eq!(message.metadata.response_code, ResponseCode::FormErr);
    }

    #[test]
    fn other_opcodes_are_not_implemented() {
        let mut message = Message::new(9, MessageType::Query, OpCode::Status);
        message.add_query(Query::query(
            Name::from_ascii("db1.weft.").unwrap(),
            RecordType::A,
        ));
        let answer = decode_reply(Incoming::decode(&message.to_vec().unwrap()));
        assert_eq!(answer.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn edns_queries_get_edns_answers() {
        let mut message = Message::query();
        message.add_query(Query::query(
            Name::from_ascii("db1.weft.").unwrap(),
            RecordType::AAAA,
        ));
        message.set_edns(Edns::new());
        let query = pending(&message.to_vec().unwrap());
        let answer = Message::from_vec(&query.respond(&FOUND)).unwrap();
        assert_eq!(answer.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: mutations of a valid query and
        // random-length junk.
        let valid = query("db1.weft.", RecordType::A);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            bytes.truncate((next() as usize) % (bytes.len() + 1));
            if let Incoming::Lookup(query) = Incoming::decode(&bytes) {
                let _ = query.respond(&FOUND);
            }
        }
    }

    #[tokio::test]
    async fn a_socket_answers_queries_through_the_event_loop_channel() {
        let (sender, mut requests) = mpsc::channel(QUEUE);
        let (server, failed) = DnsServer::start(&["127.0.0.1:0".parse().unwrap()], &sender);
        assert!(failed.is_empty(), "{failed:?}");
        let address = server.addresses()[0];
        tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let answer = if request.name == "db1" {
                    FOUND
                } else {
                    DnsAnswer::NotFound
                };
                let _ = request.reply.send(answer);
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (name, code, answers) in [
            ("DB1.weft.", ResponseCode::NoError, 1),
            ("db2.weft.", ResponseCode::NXDomain, 0),
            ("example.org.", ResponseCode::Refused, 0),
        ] {
            client
                .send_to(&query(name, RecordType::A), address)
                .await
                .unwrap();
            let mut buf = vec![0u8; 1500];
            let (len, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let message = Message::from_vec(&buf[..len]).unwrap();
            assert_eq!(message.metadata.response_code, code, "{name}");
            assert_eq!(message.answers.len(), answers, "{name}");
        }
        drop(server);
    }
}
