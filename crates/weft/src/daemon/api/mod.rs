//! The local HTTP API: JSON under `/api/v1`, Prometheus text at
//! `/metrics`, and the live network map at `/` (HTML, JS and CSS from
//! `crates/weft/web/`, embedded in the binary).
//!
//! Why: operators and tools (Prometheus, a browser, scripts) want the
//! node's state without the unix control socket's line protocol. What it
//! guarantees: every answer comes from the event loop through the same
//! requests the control socket sends (`control::Command`), answered by the
//! same code, so `weft status` and `/api/v1/node` never disagree. Handlers
//! never touch the node; each waits at most [`TIMEOUT`] (a lookup
//! [`LOOKUP_TIMEOUT`]). It is read-only. Every request needs the token of
//! `[api] token_file` (`auth.rs`: a bearer header, or a cookie a browser
//! gets from `?token=`), since any local user can reach a TCP port. It
//! listens on loopback unless `[api] allow_remote` says otherwise (checked
//! with the config), and without `allow_remote` it also refuses requests
//! whose `Host` is not a loopback name (DNS rebinding). Connections are
//! bounded in number and idle time (`connections.rs`), so a local user
//! cannot use up the daemon's descriptors or memory.
//!
//! The listener is `[api] listen`, or, when the environment variable
//! `WEFT_API_FD` names an inherited file descriptor, that already bound,
//! listening TCP socket (for a supervisor that binds in one network
//! namespace and runs the daemon in another: sockets keep the namespace
//! they were made in). A listener that cannot be had is logged and the
//! node runs without the API.
//!
//! Endpoints (see `docs/openapi.yaml`, which a test keeps in step with
//! [`routes`]): `/api/v1/node`, `/peers`, `/topology`, `/routes`,
//! `/routes/{destination}`, `/groups`, `/groups/{group}/tree`,
//! `/lookup/{target}`, `/qos`, `/events` (Server-Sent Events),
//! `/events/recent`; `/metrics`; `/`, `/map.js`, `/map.css`,
//! `/openapi.yaml`.

mod auth;
mod connections;
mod events;
mod metrics;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{MethodRouter, get};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{info, warn};
use weft_core::qos::QosStats;
use weft_core::{LinkHealth, Metric, NodeId, TopologyStatus};

use super::control::{Command, Request, Response};
use crate::config::{ApiSection, parse_group};
use crate::status::NodeStatus;
use auth::ApiToken;
pub(crate) use auth::read_token;
use connections::{ApiListener, Peer, Registry};
pub(super) use events::EventHub;

/// Longest a handler waits for the event loop.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a lookup is waited for.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(120);
/// The environment variable naming an inherited, bound TCP socket.
pub(crate) const API_FD_ENV: &str = "WEFT_API_FD";

const MAP_HTML: &str = include_str!("../../../web/map.html");
const MAP_JS: &str = include_str!("../../../web/map.js");
const MAP_CSS: &str = include_str!("../../../web/map.css");
const OPENAPI: &str = include_str!("../../../../../docs/openapi.yaml");

/// What `/metrics` is built from: one instant's status and QoS stats.
pub(super) struct Snapshot {
    pub(super) status: NodeStatus,
    pub(super) qos: QosStats,
}

/// The topology as the API shows it: names for the map, ids for tools.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TopologyInfo {
    /// The node that answered.
    pub(super) this_node: String,
    pub(super) nodes: Vec<TopologyNodeInfo>,
    pub(super) links: Vec<TopologyLinkInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct TopologyNodeInfo {
    pub(super) name: String,
    pub(super) node_id: String,
    pub(super) overlay_ipv4: Option<std::net::Ipv4Addr>,
    pub(super) this_node: bool,
    pub(super) advertised: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct TopologyLinkInfo {
    /// The measuring end's name.
    pub(super) from: String,
    pub(super) to: String,
    pub(super) rtt_ms: Option<f64>,
    pub(super) loss: f64,
    /// `up` or `down`.
    pub(super) state: &'static str,
}

impl TopologyInfo {
    pub(super) fn from_core(topology: &TopologyStatus) -> Self {
        let name_of = |id: &NodeId| {
            topology
                .nodes
                .iter()
                .find(|n| n.id == *id)
                .map_or_else(|| id.short(), |n| n.name.clone())
        };
        TopologyInfo {
            this_node: topology
                .nodes
                .iter()
                .find(|n| n.this_node)
                .map(|n| n.name.clone())
                .unwrap_or_default(),
            nodes: topology
                .nodes
                .iter()
                .map(|n| TopologyNodeInfo {
                    name: n.name.clone(),
                    node_id: n.id.to_string(),
                    overlay_ipv4: n.overlay_ipv4,
                    this_node: n.this_node,
                    advertised: n.advertised,
                })
                .collect(),
            links: topology
                .links
                .iter()
                .map(|l| TopologyLinkInfo {
                    from: name_of(&l.from),
                    to: name_of(&l.to),
                    rtt_ms: l.rtt.map(|d| d.as_secs_f64() * 1e3),
                    loss: f64::from(l.loss),
                    state: match l.health {
                        LinkHealth::Down => "down",
                        LinkHealth::Up | LinkHealth::Unknown => "up",
                    },
                })
                .collect(),
        }
    }
}

/// The running server; stops when dropped.
pub(super) struct ApiServer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct AppState {
    requests: mpsc::Sender<Request>,
    hub: Arc<EventHub>,
    /// `[api] allow_remote`: without it, only requests naming a loopback
    /// host are served.
    allow_remote: bool,
    token: ApiToken,
    /// `[api] public_metrics`: loopback clients get `/metrics` without it.
    public_metrics: bool,
    /// Requests refused for want of the token.
    unauthorized: Arc<AtomicU64>,
    connections: Arc<Registry>,
}

/// Starts the API per `[api]` (or on the socket `WEFT_API_FD` names),
/// with the token of `[api] token_file` (made if missing); `None` when it
/// is off or has no listener or token (logged). Needs the privileges of
/// start-up (the token file, a port below 1024).
pub(super) fn start(
    config: &ApiSection,
    requests: mpsc::Sender<Request>,
    hub: Arc<EventHub>,
) -> Option<ApiServer> {
    if !config.enabled {
        return None;
    }
    let token = match ApiToken::load_or_create(&config.token_file) {
        Ok(token) => token,
        Err(error) => {
            warn!(error = %format!("{error:#}"), "no API token: the HTTP API and network map are off");
            return None;
        }
    };
    let listener = match listener(config) {
        Ok(listener) => listener,
        Err(error) => {
            warn!(error = %format!("{error:#}"), "the HTTP API and network map are off");
            return None;
        }
    };
    let address = listener.local_addr().ok();
    let connections = Arc::new(Registry::new(config.max_connections, config.idle_timeout));
    let router = router(AppState {
        requests,
        hub,
        allow_remote: config.allow_remote,
        token,
        public_metrics: config.public_metrics,
        unauthorized: Arc::new(AtomicU64::new(0)),
        connections: Arc::clone(&connections),
    });
    let listener = ApiListener::new(listener, connections);
    let task = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<Peer>();
        if let Err(error) = axum::serve(listener, service).await {
            warn!(%error, "the HTTP API stopped");
        }
    });
    if let Some(address) = address {
        info!(
            url = %format!("http://{address}/"),
            token_file = %config.token_file.display(),
            max_connections = config.max_connections,
            idle_timeout = ?config.idle_timeout,
            "HTTP API and network map up (`weft map` prints the map's URL with its token)"
        );
    }
    Some(ApiServer { task })
}

fn listener(config: &ApiSection) -> anyhow::Result<tokio::net::TcpListener> {
    let std_listener = match std::env::var(API_FD_ENV) {
        Ok(text) => {
            let fd: i32 = text
                .trim()
                .parse()
                .with_context(|| format!("{API_FD_ENV}={text} is not a file descriptor"))?;
            let listener = inherited_listener(fd)?;
            // Read once: the daemon's children (resolvectl) must not think
            // they own the socket.
            #[allow(unsafe_code)]
            // SAFETY: no other thread reads the environment now: the
            // daemon's runtime is single-threaded and this runs before any
            // task that could spawn processes.
            unsafe {
                std::env::remove_var(API_FD_ENV);
            }
            listener
        }
        Err(_) => std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {} (api.listen)", config.listen))?,
    };
    std_listener
        .set_nonblocking(true)
        .context("cannot make the API socket non-blocking")?;
    tokio::net::TcpListener::from_std(std_listener).context("cannot serve the API socket")
}

/// Takes over the listening TCP socket inherited as `fd`, after checking
/// that it is one.
#[allow(unsafe_code)]
fn inherited_listener(fd: i32) -> anyhow::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // Only an open, listening socket is taken: getsockopt(SO_ACCEPTCONN)
    // fails on anything else (EBADF, ENOTSOCK) and says 0 for a socket
    // that does not listen; it looks without taking ownership.
    let borrowed = {
        let mut listening: libc::c_int = 0;
        let mut len =
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).context("socklen_t")?;
        // SAFETY: getsockopt only reads fd (any integer is allowed: a bad
        // one is EBADF); the option buffer and its length describe a valid
        // c_int owned by this frame.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                std::ptr::from_mut(&mut listening).cast(),
                &raw mut len,
            )
        };
        rc == 0 && listening != 0
    };
    if !borrowed {
        anyhow::bail!("{API_FD_ENV}={fd} is not an open, listening socket");
    }
    // SAFETY: the descriptor was handed to this process for the API alone
    // (the variable's contract) and is an open listening socket (checked
    // above); nothing else in the daemon owns it, so owning it here is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // It was inherited, so it is not close-on-exec; the daemon's own
    // children must not inherit it in turn.
    nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .with_context(|| format!("{API_FD_ENV}={fd}: cannot set close-on-exec"))?;
    Ok(std::net::TcpListener::from(owned))
}

/// Every route the API serves, with its handler: the router is built from
/// this table and the OpenAPI test reads it.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/", get(map_html)),
        ("/map.js", get(map_js)),
        ("/map.css", get(map_css)),
        ("/openapi.yaml", get(openapi)),
        ("/metrics", get(metrics_text)),
        ("/api/v1/node", get(node)),
        ("/api/v1/peers", get(peers)),
        ("/api/v1/topology", get(topology)),
        ("/api/v1/routes", get(routes_all)),
        ("/api/v1/routes/{destination}", get(route_one)),
        ("/api/v1/groups", get(groups)),
        ("/api/v1/groups/{group}/tree", get(tree)),
        ("/api/v1/lookup/{target}", get(lookup)),
        ("/api/v1/qos", get(qos)),
        ("/api/v1/events", get(events_stream)),
        ("/api/v1/events/recent", get(events_recent)),
    ]
}

fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, handler) in routes() {
        router = router.route(path, handler);
    }
    // Layers run from the last added inwards: the Host check, then the
    // token, then marking the connection busy (so requests without the
    // token never keep a connection from being idle).
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn(mark_busy))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            loopback_hosts_only,
        ))
        .with_state(state)
}

/// Marks the request's connection busy while it is answered (see
/// `connections.rs`).
async fn mark_busy(request: axum::extract::Request, next: axum::middleware::Next) -> HttpResponse {
    let busy = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| peer.busy());
    let response = next.run(request).await;
    drop(busy);
    response
}

/// Refuses requests whose `Host` is not a loopback name or address unless
/// `allow_remote` is set: a web page the user visits could otherwise read
/// the API through a name that it re-points to 127.0.0.1 (DNS rebinding).
/// Requests without `Host` (not from browsers) pass.
async fn loopback_hosts_only(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    if !state.allow_remote {
        let host = request
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("?"));
        if let Some(host) = host
            && !is_loopback_host(host)
        {
            return error(
                StatusCode::FORBIDDEN,
                "the API answers only requests for a loopback host (127.0.0.1, [::1], localhost); see [api] allow_remote",
            );
        }
    }
    next.run(request).await
}

/// Whether a `Host` header names this machine's loopback (any port).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn json<T: Serialize>(value: &T) -> HttpResponse {
    axum::Json(value).into_response()
}

/// Asks the event loop, as the control socket does.
async fn ask(state: &AppState, command: Command) -> Result<Response, HttpResponse> {
    let limit = match command {
        Command::Lookup { .. } => LOOKUP_TIMEOUT,
        _ => TIMEOUT,
    };
    let (reply, answer) = oneshot::channel();
    let stopping = || error(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    let asked = async {
        if state
            .requests
            .send(Request { command, reply })
            .await
            .is_err()
        {
            return Err(stopping());
        }
        answer.await.map_err(|_| stopping())
    };
    match tokio::time::timeout(limit, asked).await {
        Ok(result) => result,
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "the node did not answer in time",
        )),
    }
}

/// What the event loop said, as HTTP: refusals are 404 (an unknown node,
/// group or route), anything unexpected 500.
fn answer(response: Response) -> HttpResponse {
    match response {
        Response::Status(status) => json(&status),
        Response::Routes(routes) => json(&routes),
        Response::Trace(route) => json(&route),
        Response::Groups(groups) => json(&groups),
        Response::Tree(tree) => json(&tree),
        Response::Topology(topology) => json(&topology),
        Response::Qos(qos) => json(&qos),
        Response::Lookup(lookup) => match &lookup.error {
            None => json(&lookup),
            Some(message) => (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({ "error": message, "lookup": lookup })),
            )
                .into_response(),
        },
        Response::Refused(message) => error(StatusCode::NOT_FOUND, &message),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer"),
    }
}

async fn command(state: &AppState, command: Command) -> HttpResponse {
    match ask(state, command).await {
        Ok(response) => answer(response),
        Err(response) => response,
    }
}

async fn map_html() -> HttpResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        MAP_HTML,
    )
        .into_response()
}

async fn map_js() -> HttpResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        MAP_JS,
    )
        .into_response()
}

async fn map_css() -> HttpResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], MAP_CSS).into_response()
}

async fn openapi() -> HttpResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI).into_response()
}

async fn node(State(state): State<AppState>) -> HttpResponse {
    command(&state, Command::Status).await
}

/// The peers of the status, each with its path type: `direct` or `relayed`
/// (through `via`).
async fn peers(State(state): State<AppState>) -> HttpResponse {
    let status = match ask(&state, Command::Status).await {
        Ok(Response::Status(status)) => status,
        Ok(other) => return answer(other),
        Err(response) => return response,
    };
    let peers: Vec<serde_json::Value> = status
        .peers
        .iter()
        .map(|peer| {
            let mut value = serde_json::to_value(peer).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                let path = if peer.via.is_empty() {
                    "direct"
                } else {
                    "relayed"
                };
                object.insert("path".into(), path.into());
            }
            value
        })
        .collect();
    json(&peers)
}

async fn topology(State(state): State<AppState>) -> HttpResponse {
    command(&state, Command::Topology).await
}

async fn routes_all(State(state): State<AppState>) -> HttpResponse {
    command(&state, Command::Routes).await
}

#[derive(Deserialize)]
struct MetricQuery {
    metric: Option<String>,
}

async fn route_one(
    State(state): State<AppState>,
    Path(destination): Path<String>,
    Query(query): Query<MetricQuery>,
) -> HttpResponse {
    let metric = match query.metric.as_deref() {
        None | Some("latency") => Metric::Latency,
        Some("loss") => Metric::Loss,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown metric '{other}' (known: latency, loss)"),
            );
        }
    };
    command(
        &state,
        Command::Trace {
            destination,
            metric,
        },
    )
    .await
}

async fn groups(State(state): State<AppState>) -> HttpResponse {
    command(&state, Command::Groups).await
}

#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
}

async fn tree(
    State(state): State<AppState>,
    Path(group): Path<String>,
    Query(query): Query<SourceQuery>,
) -> HttpResponse {
    let group = match parse_group(&group) {
        Ok(group) => group,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let source = query
        .source
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    command(&state, Command::Tree { group, source }).await
}

async fn lookup(State(state): State<AppState>, Path(target): Path<String>) -> HttpResponse {
    if target.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "lookup needs a target");
    }
    command(&state, Command::Lookup { target }).await
}

async fn snapshot(state: &AppState) -> Result<Box<Snapshot>, HttpResponse> {
    match ask(state, Command::Snapshot).await? {
        Response::Snapshot(snapshot) => Ok(snapshot),
        other => Err(answer(other)),
    }
}

/// `weft qos --json`'s object.
async fn qos(State(state): State<AppState>) -> HttpResponse {
    command(&state, Command::Qos).await
}

async fn metrics_text(State(state): State<AppState>) -> HttpResponse {
    match snapshot(&state).await {
        Ok(snapshot) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics::render(
                &snapshot,
                &state.hub,
                &metrics::ApiFigures {
                    connections: state.connections.stats(),
                    unauthorized: state.unauthorized.load(Ordering::Relaxed),
                },
            ),
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn events_recent(State(state): State<AppState>) -> HttpResponse {
    json(&state.hub.recent())
}

/// The event stream: each event as an SSE `message` whose data is the
/// event's JSON and whose id is its sequence number; a subscriber that fell
/// behind gets a `lagged` event with how many it missed. The connection
/// counts as busy while the stream is open.
async fn events_stream(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let receiver = state.hub.subscribe();
    let busy = extensions
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| peer.busy());
    let stream =
        futures_util::stream::unfold((receiver, busy), |(mut receiver, busy)| async move {
            let sse = match receiver.recv().await {
                Ok(event) => {
                    let data = serde_json::to_string(&*event).unwrap_or_default();
                    SseEvent::default()
                        .id(event.seq.to_string())
                        .event(event.kind)
                        .data(data)
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    SseEvent::default().event("lagged").data(missed.to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(sse), (receiver, busy)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_listening_socket_is_taken_and_anything_else_refused() {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let taken = inherited_listener(listener.into_raw_fd()).unwrap();
        assert_eq!(taken.local_addr().unwrap(), address);
        let file = std::fs::File::open("/dev/null").unwrap();
        let error = inherited_listener(file.as_raw_fd()).unwrap_err();
        assert!(
            error.to_string().contains("not an open, listening socket"),
            "{error}"
        );
        let unbound = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(inherited_listener(unbound.as_raw_fd()).is_err());
    }

    #[test]
    fn only_loopback_hosts_are_local() {
        for host in [
            "127.0.0.1:4880",
            "localhost",
            "LOCALHOST:80",
            "[::1]:4880",
            "127.1.2.3",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:4880",
            "198.18.0.1:4880",
            "[fd77::1]:1",
            "",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn every_route_is_in_the_openapi_description() {
        for (path, _) in routes() {
            assert!(
                OPENAPI.contains(&format!("\n  {path}:\n")),
                "{path} is served but not described in docs/openapi.yaml"
            );
        }
    }

    #[test]
    fn every_described_path_is_served() {
        let served: Vec<&str> = routes().iter().map(|(path, _)| *path).collect();
        let mut in_paths = false;
        for line in OPENAPI.lines() {
            if line == "paths:" {
                in_paths = true;
                continue;
            }
            if in_paths && !line.starts_with(' ') && !line.is_empty() {
                break;
            }
            if in_paths
                && line.starts_with("  /")
                && line.ends_with(':')
                && !line.starts_with("   ")
            {
                let path = line.trim().trim_end_matches(':');
                assert!(
                    served.contains(&path),
                    "docs/openapi.yaml describes {path}, which is not served"
                );
            }
        }
    }
}
