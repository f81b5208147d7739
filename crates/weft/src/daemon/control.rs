//! The control socket: a unix socket on which local tools (`weft status`)
//! ask the running node questions.
//!
//! Protocol: the client sends one JSON request line (`{"command":"status"}`),
//! the daemon answers one JSON line (`{"ok":true,"status":{...}}` or
//! `{"ok":false,"error":"..."}`) and closes the connection. Commands:
//!
//! - `{"command":"status"}` → `{"ok":true,"status":{...}}`
//! - `{"command":"routes"}` → `{"ok":true,"routes":[<route>, ...]}`
//! - `{"command":"route_pin","destination":"b","via":["c"]}` → `{"ok":true}`
//! - `{"command":"route_unpin","destination":"b"}` → `{"ok":true}`
//! - `{"command":"trace","destination":"b","metric":"latency"|"loss"}` →
//!   `{"ok":true,"trace":<route>}` (`metric` defaults to latency)
//! - `{"command":"lookup","target":"db1"}` (a name, node id or overlay
//!   address) → `{"ok":true,"lookup":<lookup>}`, or when the DHT does not
//!   find it `{"ok":false,"error":"no such node in the network","lookup":<lookup>}`
//! - `{"command":"group_join","group":"239.1.2.3"}` → `{"ok":true}`
//! - `{"command":"group_leave","group":"239.1.2.3"}` → `{"ok":true}`
//! - `{"command":"groups"}` → `{"ok":true,"groups":[<group>, ...]}`
//! - `{"command":"tree","group":"239.1.2.3","source":"a"|null}` →
//!   `{"ok":true,"tree":<tree>}` (`source` defaults to the asked node)
//! - `{"command":"qos"}` → `{"ok":true,"qos":<qos>}` (classes, rates,
//!   queues, delays and drops; `qos::QosInfo`)
//! - `{"command":"reload"}` → `{"ok":true,"reload":{"applied":[...],"refused":[...]}}`
//!   (re-reads the config file; `reload::ReloadInfo`), or
//!   `{"ok":false,"error":"..."}` when the file is invalid
//! - `{"command":"topology"}` → `{"ok":true,"topology":<topology>}` (every
//!   node and link this node knows; `api::TopologyInfo`)
//!
//! A route is `routes::RouteInfo`, a lookup `lookup::LookupInfo`, a group
//! `group::GroupInfo`, a tree `group::TreeInfo`; a command
//! the core refuses answers `{"ok":false,"error":"<the core's reason>"}`.
//!
//! Each connection is served by its own task, which reads and parses the
//! request (bounded in size and time) and passes it to the event loop over
//! a bounded channel with a oneshot for the answer: only the event loop
//! touches the node. A client has [`CLIENT_TIMEOUT`] to send its request
//! and the node as long to answer, except for a lookup, which takes as long
//! as the DHT needs: the event loop answers it when the lookup ends (or
//! gives up on it after a deadline), and the task waits at most
//! [`LOOKUP_TIMEOUT`]. The socket is created mode 0600 (a missing parent
//! directory 0700), a stale socket file from a dead daemon is replaced, a
//! live one is refused, and the file is removed when the daemon stops.

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use weft_core::Metric;

use super::api::{Snapshot, TopologyInfo};
use crate::config::parse_group;
use crate::group::{GroupInfo, TreeInfo};
use crate::lookup::LookupInfo;
use crate::qos::QosInfo;
use crate::reload::ReloadInfo;
use crate::routes::RouteInfo;
use crate::status::NodeStatus;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client has this long to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests waiting for the event loop.
const QUEUE: usize = 16;
/// Longest a lookup's answer is awaited (the event loop answers well
/// before, when the DHT's lookup ends or its own deadline passes).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A request for the event loop, with where to send the answer.
pub(super) struct Request {
    pub(super) command: Command,
    pub(super) reply: oneshot::Sender<Response>,
}

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// The node's status object.
    Status,
    /// Re-read the config file and apply what may change at run time.
    Reload,
    /// Every route.
    Routes,
    /// Pin the path to `destination` through `via`.
    RoutePin {
        destination: String,
        via: Vec<String>,
    },
    /// Remove the pin of `destination`.
    RouteUnpin { destination: String },
    /// The path to `destination` under `metric`.
    Trace { destination: String, metric: Metric },
    /// Find `target` (a name, node id or overlay address) in the DHT.
    Lookup { target: String },
    /// Join multicast group `group`.
    GroupJoin { group: IpAddr },
    /// Leave multicast group `group`.
    GroupLeave { group: IpAddr },
    /// Every group the node knows of.
    Groups,
    /// The QoS classes and rate limits with their counters.
    Qos,
    /// The distribution tree from `source` (`None`: this node) to `group`.
    Tree {
        group: IpAddr,
        source: Option<String>,
    },
    /// Every node and link this node knows, for the network map.
    Topology,
    /// Status and QoS stats of one instant (the HTTP API's `/metrics`;
    /// not offered on the socket).
    Snapshot,
}

/// The event loop's answer.
pub(super) enum Response {
    Status(Box<NodeStatus>),
    Routes(Vec<RouteInfo>),
    Trace(Box<RouteInfo>),
    /// A lookup ended (found or not: see [`LookupInfo::error`]).
    Lookup(Box<LookupInfo>),
    Groups(Vec<GroupInfo>),
    Qos(Box<QosInfo>),
    Tree(Box<TreeInfo>),
    Topology(Box<TopologyInfo>),
    Snapshot(Box<Snapshot>),
    /// What a reload applied and refused.
    Reload(Box<ReloadInfo>),
    /// The command was carried out.
    Done,
    /// The command was refused, and why.
    Refused(String),
}

/// The listening socket; removes its file when dropped.
pub(super) struct ControlSocket {
    path: PathBuf,
    /// For other front ends of the same requests (the HTTP API).
    requests: mpsc::Sender<Request>,
    /// Device and inode of the socket file we made, so that we never remove
    /// a file someone else put there since.
    identity: (u64, u64),
    /// The socket's directory, if the daemon made it.
    made_directory: Option<PathBuf>,
}

impl ControlSocket {
    /// Binds the socket at `path` and starts serving it. Requests arrive
    /// on the returned receiver. Must be called inside the tokio runtime.
    pub(super) fn start(path: &Path) -> anyhow::Result<(Self, mpsc::Receiver<Request>)> {
        let made_directory = prepare_directory(path)?;
        remove_stale(path)?;
        // Bind with a umask that leaves the socket private from the first
        // moment, then set the mode explicitly too.
        let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old_umask);
        let listener = bound
            .with_context(|| format!("cannot create the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(
            || format!("cannot make the control socket {} private", path.display()),
        )?;
        let metadata = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot inspect the control socket {}", path.display()))?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(accept_loop(listener, sender.clone()));
        Ok((
            Self {
                path: path.to_owned(),
                requests: sender,
                identity: (metadata.dev(), metadata.ino()),
                made_directory,
            },
            receiver,
        ))
    }
}

impl ControlSocket {
    /// A sender of requests to the event loop, answered exactly like the
    /// socket's (the HTTP API uses it).
    pub(super) fn requests(&self) -> mpsc::Sender<Request> {
        self.requests.clone()
    }

    /// The socket's directory if the daemon made it (and may hand it to
    /// the user it drops to, who must remove the socket when it stops).
    pub(super) fn made_directory(&self) -> Option<&Path> {
        self.made_directory.as_deref()
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if !ours {
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            // After dropping root, the daemon may not write to a directory
            // it did not make; the socket is stale and the next start
            // replaces it.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::info!(path = %self.path.display(), "the control socket stays (its directory is not the daemon user's); the next start replaces it");
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot remove the control socket");
            }
        }
    }
}

/// Creates missing parent directories with mode 0700; existing ones are
/// left as they are. The socket's directory, if it was made here.
fn prepare_directory(path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    if parent.exists() {
        return Ok(None);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| {
            format!(
                "cannot create the control socket's directory {}",
                parent.display()
            )
        })?;
    Ok(Some(parent.to_owned()))
}

/// Removes a socket file left by a daemon that is gone; refuses if a daemon
/// still answers on it or if the path is not a socket.
fn remove_stale(path: &Path) -> anyhow::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !metadata.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; not replacing it (set control.socket to another path)",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "another weft daemon is running with control socket {}",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            debug!(path = %path.display(), "removing a stale control socket");
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot check whether {} is in use", path.display()))
        }
    }
}

async fn accept_loop(listener: UnixListener, requests: mpsc::Sender<Request>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let requests = requests.clone();
                tokio::spawn(serve(stream, requests));
            }
            Err(e) => {
                // Out of descriptors and the like: wait a little rather
                // than spin.
                debug!(error = %e, "cannot accept a control connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if requests.is_closed() {
            return;
        }
    }
}

#[derive(Deserialize)]
struct RawRequest {
    command: String,
    destination: Option<String>,
    via: Option<Vec<String>>,
    metric: Option<String>,
    target: Option<String>,
    group: Option<String>,
    source: Option<String>,
}

/// Serves one client: read (within [`CLIENT_TIMEOUT`]), ask the event
/// loop (within the command's time), answer (within [`CLIENT_TIMEOUT`]).
async fn serve(stream: UnixStream, requests: mpsc::Sender<Request>) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let read = tokio::io::AsyncReadExt::take(reader, MAX_REQUEST);
    let mut reader = BufReader::new(read);
    let answer = match tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => {
            debug!("control client too slow to send its request");
            return;
        }
        Ok(Err(e)) => error_json(&format!("cannot read the request: {e}")),
        Ok(Ok(_)) => match parse(&line) {
            Err(message) => error_json(&message),
            Ok(command) => {
                let limit = match command {
                    Command::Lookup { .. } => LOOKUP_TIMEOUT,
                    _ => CLIENT_TIMEOUT,
                };
                match tokio::time::timeout(limit, ask(command, &requests)).await {
                    Ok(answer) => answer,
                    Err(_) => error_json("the node did not answer in time"),
                }
            }
        },
    };
    let mut answer = answer.to_string();
    answer.push('\n');
    let write = async {
        writer.write_all(answer.as_bytes()).await?;
        writer.shutdown().await
    };
    match tokio::time::timeout(CLIENT_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "cannot answer a control client"),
        Err(_) => debug!("control client too slow to read its answer"),
    }
}

fn parse(line: &str) -> Result<Command, String> {
    let request: RawRequest = serde_json::from_str(line.trim())
        .map_err(|e| format!("the request is not {{\"command\": \"...\"}}: {e}"))?;
    let command = request.command.as_str();
    let destination = || {
        request
            .destination
            .clone()
            .ok_or_else(|| format!("{command} needs a \"destination\""))
    };
    let group = || -> Result<IpAddr, String> {
        let text = request.group.as_deref().ok_or_else(|| {
            format!("{command} needs a \"group\": a multicast address such as 239.1.2.3")
        })?;
        parse_group(text)
    };
    match command {
        "status" => Ok(Command::Status),
        "reload" => Ok(Command::Reload),
        "routes" => Ok(Command::Routes),
        "route_pin" => Ok(Command::RoutePin {
            destination: destination()?,
            via: request
                .via
                .clone()
                .ok_or_else(|| format!("{command} needs \"via\": a list of node names"))?,
        }),
        "route_unpin" => Ok(Command::RouteUnpin {
            destination: destination()?,
        }),
        "trace" => Ok(Command::Trace {
            destination: destination()?,
            metric: match request.metric.as_deref() {
                None | Some("latency") => Metric::Latency,
                Some("loss") => Metric::Loss,
                Some(other) => {
                    return Err(format!("unknown metric '{other}' (known: latency, loss)"));
                }
            },
        }),
        "lookup" => Ok(Command::Lookup {
            target: request
                .target
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    "lookup needs a \"target\": a node name, node id or overlay address".to_owned()
                })?,
        }),
        "group_join" => Ok(Command::GroupJoin { group: group()? }),
        "group_leave" => Ok(Command::GroupLeave { group: group()? }),
        "groups" => Ok(Command::Groups),
        "qos" => Ok(Command::Qos),
        "topology" => Ok(Command::Topology),
        "tree" => Ok(Command::Tree {
            group: group()?,
            source: request
                .source
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }),
        other => Err(format!(
            "unknown command '{other}' (known: status, reload, routes, route_pin, route_unpin, trace, lookup, group_join, group_leave, groups, tree, topology, qos)"
        )),
    }
}

async fn ask(command: Command, requests: &mpsc::Sender<Request>) -> serde_json::Value {
    let (reply, answer) = oneshot::channel();
    if requests.send(Request { command, reply }).await.is_err() {
        return error_json("the node is stopping");
    }
    match answer.await {
        Ok(Response::Status(status)) => serde_json::json!({ "ok": true, "status": status }),
        Ok(Response::Routes(routes)) => serde_json::json!({ "ok": true, "routes": routes }),
        Ok(Response::Trace(trace)) => serde_json::json!({ "ok": true, "trace": trace }),
        Ok(Response::Groups(groups)) => serde_json::json!({ "ok": true, "groups": groups }),
        Ok(Response::Qos(qos)) => serde_json::json!({ "ok": true, "qos": qos }),
        Ok(Response::Reload(reload)) => serde_json::json!({ "ok": true, "reload": reload }),
        Ok(Response::Tree(tree)) => serde_json::json!({ "ok": true, "tree": tree }),
        Ok(Response::Topology(topology)) => {
            serde_json::json!({ "ok": true, "topology": topology })
        }
        Ok(Response::Snapshot(_)) => error_json("not offered on the control socket"),
        Ok(Response::Lookup(lookup)) => match &lookup.error {
            None => serde_json::json!({ "ok": true, "lookup": lookup }),
            Some(error) => serde_json::json!({ "ok": false, "error": error, "lookup": lookup }),
        },
        Ok(Response::Done) => serde_json::json!({ "ok": true }),
        Ok(Response::Refused(message)) => error_json(&message),
        Err(_) => error_json("the node is stopping"),
    }
}

fn error_json(message: &str) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse("{\"command\":\"status\"}\n"), Ok(Command::Status));
        assert!(
            parse("{\"command\":\"reboot\"}")
                .unwrap_err()
                .contains("unknown command 'reboot'")
        );
        assert!(parse("status").is_err());
    }

    #[test]
    fn routing_requests_parse() {
        assert_eq!(parse("{\"command\":\"routes\"}"), Ok(Command::Routes));
        assert_eq!(
            parse("{\"command\":\"route_pin\",\"destination\":\"b\",\"via\":[\"c\",\"d\"]}"),
            Ok(Command::RoutePin {
                destination: "b".into(),
                via: vec!["c".into(), "d".into()],
            })
        );
        assert_eq!(
            parse("{\"command\":\"route_unpin\",\"destination\":\"b\"}"),
            Ok(Command::RouteUnpin {
                destination: "b".into()
            })
        );
        assert_eq!(
            parse("{\"command\":\"trace\",\"destination\":\"b\",\"metric\":\"loss\"}"),
            Ok(Command::Trace {
                destination: "b".into(),
                metric: Metric::Loss,
            })
        );
        assert_eq!(
            parse("{\"command\":\"trace\",\"destination\":\"b\"}"),
            Ok(Command::Trace {
                destination: "b".into(),
                metric: Metric::Latency,
            })
        );
        assert!(
            parse("{\"command\":\"trace\"}")
                .unwrap_err()
                .contains("trace needs a \"destination\"")
        );
        assert!(
            parse("{\"command\":\"route_pin\",\"destination\":\"b\"}")
                .unwrap_err()
                .contains("\"via\"")
        );
        assert!(
            parse("{\"command\":\"trace\",\"destination\":\"b\",\"metric\":\"speed\"}")
                .unwrap_err()
                .contains("unknown metric 'speed'")
        );
    }

    #[test]
    fn group_requests_parse() {
        let group: IpAddr = "239.1.2.3".parse().unwrap();
        assert_eq!(
            parse("{\"command\":\"group_join\",\"group\":\"239.1.2.3\"}"),
            Ok(Command::GroupJoin { group })
        );
        assert_eq!(
            parse("{\"command\":\"group_leave\",\"group\":\" 239.1.2.3 \"}"),
            Ok(Command::GroupLeave { group })
        );
        assert_eq!(parse("{\"command\":\"groups\"}"), Ok(Command::Groups));
        assert_eq!(
            parse("{\"command\":\"tree\",\"group\":\"ff0e::1\",\"source\":\"a\"}"),
            Ok(Command::Tree {
                group: "ff0e::1".parse().unwrap(),
                source: Some("a".into()),
            })
        );
        assert_eq!(
            parse("{\"command\":\"tree\",\"group\":\"239.1.2.3\",\"source\":null}"),
            Ok(Command::Tree {
                group,
                source: None
            })
        );
        assert!(
            parse("{\"command\":\"group_join\"}")
                .unwrap_err()
                .contains("group_join needs a \"group\"")
        );
        assert!(
            parse("{\"command\":\"tree\",\"group\":\"224.0.0.251\"}")
                .unwrap_err()
                .contains("link-local")
        );
        assert!(
            parse("{\"command\":\"group_join\",\"group\":\"198.19.0.1\"}")
                .unwrap_err()
                .contains("not a multicast address")
        );
    }

    #[test]
    fn qos_requests_parse() {
        assert_eq!(parse("{\"command\":\"qos\"}"), Ok(Command::Qos));
    }

    #[test]
    fn lookup_requests_parse() {
        assert_eq!(
            parse("{\"command\":\"lookup\",\"target\":\"db1.weft\"}"),
            Ok(Command::Lookup {
                target: "db1.weft".into()
            })
        );
        for request in [
            "{\"command\":\"lookup\"}",
            "{\"command\":\"lookup\",\"target\":\" \"}",
        ] {
            assert!(
                parse(request)
                    .unwrap_err()
                    .contains("lookup needs a \"target\""),
                "{request}"
            );
        }
    }
}
