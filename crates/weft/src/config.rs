//! The node's TOML config file: parsing, validation and the commented example.
//!
//! [`Config::load`] reads and checks the whole file before anything else
//! happens, so a mistake is reported once, precisely, and not as a failure
//! later at run time. Every [`ConfigError::Invalid`] names the file, the line
//! and column, and the dotted key (`peers[1].endpoint`) it is about: syntax and
//! type errors carry toml's span, and every value we check ourselves is read
//! as a [`Spanned`] so its position is known. Unknown keys are errors, so a
//! typo is caught instead of silently ignored. Paths in the file are relative
//! to the file's directory.
//!
//! [`Config::load`] reads only the config file itself; [`Config::node_config`]
//! then reads the key, certificate and CA files and builds the core's
//! [`NodeConfig`], with errors that still point at the key naming each file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use toml::Spanned;
use weft_core::dht::DhtConfig;
use weft_core::mcast::{DEFAULT_FANOUT, GroupRule, MulticastConfig, is_carried, parse_prefix};
use weft_core::qos::QosConfig;
use weft_core::{
    CaCertificate, Certificate, MAX_INTERMEDIATES, NeighbourConfig, NodeConfig, PeerConfig,
    PublicKey, RevocationConfig, RevocationList, RoutingConfig, SecretKey, SessionConfig,
};

/// Smallest TUN MTU: IPv6 requires every link to carry 1280-byte packets.
pub const MIN_MTU: u16 = 1280;
/// Largest TUN MTU accepted (a jumbo-frame underlay).
pub const MAX_MTU: u16 = 9000;
/// TUN MTU when the config names none: a packet relayed through two
/// intermediate nodes still fits a 1500-byte IPv6 underlay (1500 − 40 IPv6
/// − 8 UDP − 33 end-to-end seal − 34 relay header − 33 hop seal = 1352,
/// with a few bytes to spare).
pub const DEFAULT_MTU: u16 = 1340;
/// UDP listen address when the config names none.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4800";
/// TUN device name when the config names none.
pub const DEFAULT_TUN_NAME: &str = "weft0";
/// Log filter when the config names none.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The config file every command uses when given neither `--config` nor
/// [`CONFIG_ENV`] (where the Debian package puts it).
pub const DEFAULT_CONFIG: &str = "/etc/weft/weft.toml";
/// The environment variable that names the config file when `--config`
/// does not.
pub const CONFIG_ENV: &str = "WEFT_CONFIG";
/// Port of the DNS responder when `[dns] listen` names none (or names an
/// address without a port).
pub const DEFAULT_DNS_PORT: u16 = 53;
/// Neighbours under full link monitoring when the config names no number.
pub const DEFAULT_NEIGHBOURS_MAX: usize = 16;
/// Of those, long random links when the config names no number.
pub const DEFAULT_NEIGHBOURS_RANDOM: usize = 4;
/// Sessions at most when the config names no number.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;
/// Peer entries at most when the config names no number.
pub const DEFAULT_MAX_PEERS: usize = 2048;
/// Where the HTTP API and network map listen when `[api] listen` is not set.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:4880";
/// The API's token file when `[api] token_file` is not set (beside the
/// config file).
pub const DEFAULT_API_TOKEN_FILE: &str = "api.token";
/// API connections open at once when `[api] max_connections` is not set.
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 64;
/// Largest `[api] max_connections` accepted (each may hold a file
/// descriptor and a few tens of KiB).
pub const MAX_API_CONNECTIONS: usize = 4096;
/// How long an API connection may go without a request when `[api]
/// idle_timeout` is not set.
pub const DEFAULT_API_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// The user the daemon runs as when `[daemon] user` is not set, if it
/// exists.
pub const DEFAULT_DAEMON_USER: &str = "weft";
/// Where the daemon keeps what it learns at run time when `[daemon]
/// state_dir` is not set (the systemd unit's `StateDirectory`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/weft";
/// Largest `[dht] k` accepted: buckets and lookups grow with it.
pub const MAX_DHT_K: usize = 256;
mod firewall;
mod pki;
mod qos;

pub use firewall::FirewallSection;
pub use pki::{PkiSection, parse_fingerprint};

/// Largest `[multicast] fanout` accepted.
pub const MAX_FANOUT: usize = 1024;

/// A checked config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// `[node]`: identity files and the UDP socket.
    pub node: NodeSection,
    /// `[tun]`: the TUN device.
    pub tun: TunSection,
    /// `[control]`: the local control socket.
    pub control: ControlSection,
    /// `[log]`: the tracing filter.
    pub log: LogSection,
    /// `[session]`: session timing, defaults filled in.
    pub session: SessionConfig,
    /// `[routing]`: link monitoring and routing, defaults filled in.
    pub routing: RoutingConfig,
    /// `[[pins]]`: paths pinned when the node starts.
    pub pins: Vec<PinSection>,
    /// `[[peers]]`: static peers.
    pub peers: Vec<PeerSection>,
    /// `[dht]`: bootstrap endpoints and DHT tuning.
    pub dht: DhtSection,
    /// `[neighbours]`: the bounded set of monitored neighbours.
    pub neighbours: NeighbourSection,
    /// `[dns]`: the responder for `NAME.weft`.
    pub dns: DnsSection,
    /// `[multicast]`: groups joined at start, tree fan-out, who may join
    /// and send, and the TUN's multicast routes.
    pub multicast: MulticastSection,
    /// `[qos]`: traffic classes, classification rules, the uplink and
    /// per-peer rates (see `config/qos.rs`).
    pub qos: QosConfig,
    /// `[api]`: the local HTTP/JSON API, `/metrics` and the network map.
    pub api: ApiSection,
    /// `[firewall]`: rules for traffic from and to peers (off without the
    /// section; see `config/firewall.rs`).
    pub firewall: FirewallSection,
    /// `[pki]`: a revocation list file and a blocklist of certificate
    /// fingerprints (see `config/pki.rs`).
    pub pki: PkiSection,
    /// `[daemon]`: the user the daemon runs as once it is set up.
    pub daemon: DaemonSection,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSection {
    /// The user to switch to after start-up; `None`: [`DEFAULT_DAEMON_USER`]
    /// if it exists, else stay root. `root` stays root. Either way every
    /// capability is dropped (see `daemon/privilege.rs`).
    pub user: Option<Located<String>>,
    /// The group to switch to; `None`: the user's primary group.
    pub group: Option<Located<String>>,
    /// The directory where the daemon keeps what it learns at run time
    /// (the newest revocation list), [`DEFAULT_STATE_DIR`] unless set.
    pub state_dir: PathBuf,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            user: None,
            group: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// A config value with where it was written, for mistakes only found once
/// the daemon runs (a user that does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// The dotted key, e.g. `daemon.user`.
    pub key: &'static str,
    /// 1-based line and column of the value.
    line: usize,
    column: usize,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSection {
    /// Whether the daemon serves the API at all.
    pub enabled: bool,
    /// Where it listens (TCP).
    pub listen: SocketAddr,
    /// Whether `listen` may be a non-loopback address. The API is plain
    /// HTTP (its token would cross the network in clear), so serving it
    /// beyond this host must be asked for.
    pub allow_remote: bool,
    /// The file holding the API's bearer token (created at start if
    /// missing); relative paths are resolved against the config file's
    /// directory.
    pub token_file: PathBuf,
    /// Whether `/metrics` answers loopback clients without the token.
    pub public_metrics: bool,
    /// Connections open at once, at most.
    pub max_connections: usize,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ApiSection {
    /// The defaults, with the token file not yet resolved against a
    /// config directory.
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 4880)),
            allow_remote: false,
            token_file: PathBuf::from(DEFAULT_API_TOKEN_FILE),
            public_metrics: false,
            max_connections: DEFAULT_API_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_API_IDLE_TIMEOUT,
        }
    }
}

/// `[multicast]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MulticastSection {
    /// The core's settings: fan-out, groups joined at start, rules.
    pub config: MulticastConfig,
    /// Whether the daemon routes multicast into the TUN (224.0.0.0/4 and
    /// IPv6 multicast of scope 3 and more), so that applications that do
    /// not pick an interface send through weft.
    pub routes: bool,
}

/// `[dht]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DhtSection {
    /// Endpoints to join the DHT through (their identities are learnt from
    /// their answers). Configured peers with endpoints are contacts too.
    pub bootstrap: Vec<SocketAddr>,
    /// Kademlia tuning, defaults filled in.
    pub config: DhtConfig,
}

/// `[neighbours]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourSection {
    /// Neighbours kept under full link monitoring (0: only configured
    /// peers and sessions opened on demand).
    pub max: usize,
    /// Of which long random links (the rest are the nearest in latency).
    pub random: usize,
    /// Sessions at most, of every kind (see
    /// `weft_core::NeighbourConfig::max_sessions`).
    pub max_sessions: usize,
    /// Peer entries at most (see `weft_core::NeighbourConfig::max_peers`).
    pub max_peers: usize,
}

/// `[dns]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSection {
    /// Whether the node answers DNS queries for `NAME.weft`.
    pub enabled: bool,
    /// Where to answer; `None`: the node's overlay IPv4 address (if any)
    /// and overlay IPv6 address, port [`DEFAULT_DNS_PORT`].
    pub listen: Option<Vec<SocketAddr>>,
    /// Point the system resolver at the responder for `.weft` names (split
    /// DNS through `resolvectl`, where present).
    pub configure_resolver: bool,
}

impl Default for NeighbourSection {
    fn default() -> Self {
        Self {
            max: DEFAULT_NEIGHBOURS_MAX,
            random: DEFAULT_NEIGHBOURS_RANDOM,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

impl Default for MulticastSection {
    fn default() -> Self {
        Self {
            config: MulticastConfig::default(),
            routes: true,
        }
    }
}

impl Default for DnsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            configure_resolver: true,
        }
    }
}

/// `[node]`.
#[derive(Debug, Clone)]
pub struct NodeSection {
    /// The node's secret key file.
    pub key: ConfigPath,
    /// The node's certificate file.
    pub certificate: ConfigPath,
    /// The network CA's certificate file.
    pub ca: ConfigPath,
    /// The UDP address to listen on.
    pub listen: SocketAddr,
}

/// `[tun]`.
#[derive(Debug, Clone)]
pub struct TunSection {
    /// Interface name.
    pub name: String,
    /// Interface MTU.
    pub mtu: u16,
    /// Use the kernel's TUN offloads (TSO/USO and GRO) where available.
    pub offload: bool,
}

/// `[control]`.
#[derive(Debug, Clone)]
pub struct ControlSection {
    /// Path of the unix control socket.
    pub socket: PathBuf,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogSection {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info` or
    /// `weft=debug,info`.
    pub level: String,
}

/// One `[[peers]]` entry.
#[derive(Debug, Clone)]
pub struct PeerSection {
    /// Its certificate name.
    pub name: Option<String>,
    /// Its public keys.
    pub public_key: Option<PublicKey>,
    /// Where to reach it.
    pub endpoint: Option<SocketAddr>,
}

/// One `[[pins]]` entry: the path to `destination` goes through `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinSection {
    /// The destination: a certificate name or a hex node id.
    pub destination: String,
    /// The intermediate nodes, in order (names or hex node ids).
    pub via: Vec<String>,
}

/// A path from the config (resolved against the file's directory), with
/// where it was written so that errors about the file it names can point
/// there.
#[derive(Debug, Clone)]
pub struct ConfigPath {
    /// The resolved path.
    pub path: PathBuf,
    /// The dotted key, e.g. `node.key`.
    pub key: &'static str,
    /// 1-based line and column of the value.
    line: usize,
    column: usize,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file itself could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Something in the file is wrong: where, which key, and why.
    #[error("{}:{line}:{column}: {key}: {message}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key, e.g. `peers[0].endpoint`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and checks the config file at `path`. Does not read the key,
    /// certificate or CA files: see [`Config::node_config`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks config text as if it had been read from `path` (which gives
    /// the base directory for relative paths and the name in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let source = Source { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        raw.check(&source, base)
    }

    /// The certificate and CA files, read again (a config reload): each
    /// parsed, with errors that point at `node.certificate` or `node.ca`.
    /// Whether they fit the node is for the node to say.
    pub fn read_certificate_and_ca(&self) -> Result<(Certificate, CaCertificate), ConfigError> {
        let certificate = self.read_file(&self.node.certificate, Certificate::from_pem)?;
        let ca = self.read_file(&self.node.ca, CaCertificate::from_pem)?;
        Ok((certificate, ca))
    }

    /// Checks the firewall rules against the CA they must name, with
    /// errors that point at the rule.
    pub fn check_firewall(&self, ca: &CaCertificate) -> Result<(), ConfigError> {
        self.firewall.check_with_ca(&self.file, ca)
    }

    /// The revocation list file of `pki.revocations`, read and checked
    /// against `ca`; `None` when the config names none.
    pub fn revocation_list(
        &self,
        ca: &CaCertificate,
    ) -> Result<Option<RevocationList>, ConfigError> {
        let Some(at) = &self.pki.revocations else {
            return Ok(None);
        };
        let list = self.read_file(at, RevocationList::from_pem)?;
        list.verify(ca).map_err(|error| {
            self.error_at(
                at,
                format!(
                    "{} is not usable under the CA in {}: {error}",
                    at.path.display(),
                    self.node.ca.path.display()
                ),
            )
        })?;
        Ok(Some(list))
    }

    /// Reads the key, certificate and CA files and builds the core's config.
    /// Checks that the certificate is for this key and valid under the CA at
    /// `unix_now`, so that those mistakes point at the config too.
    pub fn node_config(&self, unix_now: u64) -> Result<NodeConfig, ConfigError> {
        let secret_key = self.read_file(&self.node.key, SecretKey::from_pem)?;
        let certificate = self.read_file(&self.node.certificate, Certificate::from_pem)?;
        let ca = self.read_file(&self.node.ca, CaCertificate::from_pem)?;
        if certificate.public_key() != secret_key.public() {
            return Err(self.error_at(
                &self.node.certificate,
                format!(
                    "{} certifies the key of node id {}, but {} is the key of node id {}",
                    self.node.certificate.path.display(),
                    certificate.node_id().short(),
                    self.node.key.path.display(),
                    secret_key.node_id().short()
                ),
            ));
        }
        if let Err(error) = certificate.verify(&ca, unix_now) {
            return Err(self.error_at(
                &self.node.certificate,
                format!(
                    "{} is not acceptable under the CA in {}: {error}",
                    self.node.certificate.path.display(),
                    self.node.ca.path.display()
                ),
            ));
        }
        self.check_firewall(&ca)?;
        let list = self.revocation_list(&ca)?;
        let revocation = RevocationConfig {
            list,
            blocklist: self.pki.blocklist.clone(),
        };
        let peers = self
            .peers
            .iter()
            .map(|p| PeerConfig {
                name: p.name.clone(),
                public_key: p.public_key,
                endpoint: p.endpoint,
            })
            .collect();
        Ok(NodeConfig {
            secret_key,
            certificate,
            ca,
            peers,
            session: self.session.clone(),
            routing: self.routing.clone(),
            dht: self.dht.config.clone(),
            bootstrap: self.dht.bootstrap.clone(),
            neighbours: NeighbourConfig {
                max: self.neighbours.max,
                random: self.neighbours.random,
                max_sessions: self.neighbours.max_sessions,
                max_peers: self.neighbours.max_peers,
            },
            multicast: self.multicast.config.clone(),
            qos: self.qos.clone(),
            firewall: self.firewall.config.clone(),
            revocation,
        })
    }

    /// Refuses a secret key file that other users may read or write (any
    /// group or other permission bit), as ssh refuses such private keys:
    /// the key is the node's identity in the network. The error names the
    /// `chmod` that fixes it.
    pub fn check_key_permissions(&self) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let at = &self.node.key;
        let metadata = std::fs::metadata(&at.path)
            .map_err(|e| self.error_at(at, format!("cannot read {}: {e}", at.path.display())))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(());
        }
        Err(self.error_at(
            at,
            format!(
                "the secret key {path} is accessible by other users (mode {mode:04o}); run `chmod 600 {path}` (or start with --allow-exposed-key to accept it)",
                path = at.path.display()
            ),
        ))
    }

    fn read_file<T, E: fmt::Display>(
        &self,
        at: &ConfigPath,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, ConfigError> {
        let text = std::fs::read_to_string(&at.path)
            .map_err(|e| self.error_at(at, format!("cannot read {}: {e}", at.path.display())))?;
        parse(&text)
            .map_err(|e| self.error_at(at, format!("{} is not usable: {e}", at.path.display())))
    }

    fn error_at(&self, at: &ConfigPath, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            key: at.key.to_owned(),
            message,
        }
    }

    /// An error about `value` of this config, pointing at where it was
    /// written.
    pub fn error_at_value<T>(&self, value: &Located<T>, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: value.line,
            column: value.column,
            key: value.key.to_owned(),
            message,
        }
    }
}

/// The base64 form of a public key, as a `[[peers]]` `public_key` value.
pub fn public_key_base64(key: &PublicKey) -> String {
    BASE64.encode(key.to_bytes())
}

/// The commented config that `weft init` writes, for a node whose public
/// key is `public_key`. It parses as is (it configures no peers yet).
pub fn example_config(public_key: &PublicKey) -> String {
    let node_id = public_key.node_id();
    let ipv6 = node_id.overlay_ipv6();
    let key = public_key_base64(public_key);
    format!(
        r#"# weft node config. Paths are relative to this file's directory.
#
# This node: id {node_id}
#            overlay IPv6 {ipv6}
# Its public key (other nodes may put it in a [[peers]] entry's public_key):
#   {key}

[node]
# This node's secret key (written by `weft init`, keep it mode 0600).
key = "node.key"
# This node's certificate, signed by the network CA:
#   weft ca sign --ca-key ca.key --public-key node.pub --name NAME --out node.crt
certificate = "node.crt"
# The network CA's certificate: only nodes with certificates of this CA
# may talk to this node.
ca = "ca.crt"
# UDP address and port to send and receive on ("[::]:4800" for IPv6 too).
listen = "{DEFAULT_LISTEN}"

[tun]
# Name of the TUN interface (at most 15 characters).
name = "{DEFAULT_TUN_NAME}"
# MTU of the TUN interface, {MIN_MTU} to {MAX_MTU}. Each packet grows by
# {overhead} bytes plus the underlay's IP and UDP headers (28 for IPv4, 48 for
# IPv6), and a packet relayed through other nodes by a relay header and a
# second seal as well. {DEFAULT_MTU} leaves room for a relay header with two
# intermediate nodes over a 1500-byte IPv6 underlay:
# 1500 - 40 - 8 - {overhead} - 34 - {overhead} = 1352.
mtu = {DEFAULT_MTU}
# Let the kernel hand over and take large TCP/UDP batches (TSO/USO and GRO):
# much less work per byte. Set to false only to rule it out when debugging.
offload = true

[control]
# Unix socket that `weft status` talks to. It is created mode 0600; a
# missing parent directory is created mode 0700.
socket = "/run/weft/{DEFAULT_TUN_NAME}.sock"

[log]
# Log filter: error, warn, info, debug or trace, or per module as in
# "weft=debug,info". The RUST_LOG environment variable overrides it.
level = "{DEFAULT_LOG_LEVEL}"

# [session]
# Optional tuning; durations are written like "500ms", "10s", "2m", "1h30m".
# A session is rekeyed by its initiator after this long...
# rekey_after_time = "120s"
# ...and no longer used after this long.
# reject_after_time = "180s"
# ...or after this many packets.
# rekey_after_messages = 1152921504606846976
# First wait for a handshake answer; doubles on every retry...
# handshake_timeout = "500ms"
# ...up to this.
# handshake_backoff_max = "8s"
# Send a keepalive when nothing was sent for this long.
# keepalive_interval = "10s"
# A peer silent for this long is considered down.
# dead_after = "30s"

# [routing]
# Optional tuning of link monitoring and path choice; durations as above.
# Probe each idle link this often (one small ping and pong each way; an idle
# link is declared down after about three missed probes)...
# probe_idle = "1s"
# ...each link that carries traffic this often (sub-second failover)...
# probe_active = "40ms"
# ...and each link that is down this often (how soon recovery is seen).
# probe_down = "250ms"
# A link counts as carrying traffic for this long after its last packet.
# active_for = "1s"
# Shortest silence that marks a link down.
# min_link_timeout = "150ms"
# Advertise this node's links to the others at least this often...
# lsa_refresh = "60s"
# ...and let the others forget them this long after they were made.
# lsa_lifetime = "185s"
# A working path is not changed again within this long.
# hold_down = "1s"
# Route through other nodes when they offer a better path (and relay for them).
# relaying = true

# [dht]
# Discovery: the node finds every other member through a Kademlia DHT that
# runs over the same UDP socket, among members of the CA only. Name the
# endpoints of one or a few running nodes to join through (addresses with
# ports; their identities come with their answers). Static peers with an
# endpoint serve as bootstrap contacts too, so this may stay empty if there
# are some. A node that names neither waits until another one calls.
# bootstrap = ["198.18.0.1:4800"]
# Optional tuning; the defaults suit the Internet.
# Contacts per bucket, and how many closest nodes a lookup converges on.
# k = 20
# Queries in flight per lookup.
# alpha = 3
# How many closest nodes store each node's record.
# replication = 8
# Longest wait for one query's answer, and for a whole lookup.
# query_timeout = "1s"
# lookup_timeout = "10s"
# Consecutive failed queries before a contact is dropped.
# max_failures = 2
# A bucket nobody looked into for this long is refreshed.
# refresh_interval = "15m"
# This node republishes its record this often; records live this long.
# republish_interval = "20m"
# record_lifetime = "1h"
# Records held for other nodes, at most.
# max_records = 65536

# [neighbours]
# Beyond this many nodes, only a bounded set of neighbours is kept under full
# link monitoring (probes, link state); the rest are reached through them or
# on demand. Configured peers count against it; 0 keeps only those and the
# sessions that traffic opens on demand.
# max = {DEFAULT_NEIGHBOURS_MAX}
# Of those, this many are long random links; the others are the nearest in
# latency.
# random = {DEFAULT_NEIGHBOURS_RANDOM}
# Sessions at most, of every kind. Sessions nobody uses (no configured peer,
# no neighbour, no data for two minutes) lapse; when the table is full, a
# new caller takes the place of the longest idle one, or is refused.
# max_sessions = {DEFAULT_MAX_SESSIONS}
# Nodes this node keeps state for at most (sessions, the origins of records,
# lookups' answers). Configured peers are always kept; when the table is
# full, a new entry takes the place of the longest idle one (no session, no
# traffic for two minutes), or is refused. Idle entries also go after ten
# minutes.
# max_peers = {DEFAULT_MAX_PEERS}

# [dns]
# Answer DNS queries for NAME.weft (A and AAAA) from the nodes' records, so
# that `ping db1.weft` works. Other names are refused (no recursion).
# enabled = true
# Where to answer. The default is the node's overlay IPv4 address (if its
# certificate has one) and its overlay IPv6 address, port {DEFAULT_DNS_PORT}.
# listen = ["198.19.0.1:53"]
# Point the system resolver at this responder for .weft names only (split
# DNS with `resolvectl dns` and `resolvectl domain ~weft` on the TUN
# interface, where systemd-resolved runs). Nothing else is changed;
# /etc/resolv.conf is never edited.
# configure_resolver = true

# [multicast]
# Groups are multicast addresses. Applications join them as usual (a socket's
# IP_ADD_MEMBERSHIP on the TUN: the kernel's IGMP/MLD report becomes a join of
# this node), and so do `weft group join` and this list, at start. The overlay
# carries IPv4 224.0.1.0 to 239.255.255.255 and IPv6 multicast of scope 3 or
# more (ff05::, ff0e::, ...); link-local multicast stays on each host.
# groups = ["239.1.2.3"]
# Most children one node feeds in a distribution tree: lower spreads the
# copying over more nodes, higher gives shorter paths.
# fanout = {DEFAULT_FANOUT}
# Route 224.0.0.0/4 and IPv6 multicast of scope 3 or more into the TUN, so that
# applications that do not choose an interface send multicast through weft.
# routes = true
#
# Who may join and send, by certificate group (`weft ca sign --groups`). For
# an address, the rule with the longest matching prefix decides; in it, an
# empty list allows anyone. Addresses no rule covers are open to everyone.
# Give every node the same rules: each applies them to what it forwards.
# [[multicast.rules]]
# groups = "239.1.0.0/16"
# members = ["media"]
# senders = ["media"]

# [api]
# The local HTTP/JSON API (/api/v1/..., described in docs/openapi.yaml),
# Prometheus metrics at /metrics and the live network map at /. Every request
# needs the token in token_file (`Authorization: Bearer TOKEN`; `weft map`
# prints the map's URL with it). The daemon creates the file at start if it
# is missing: mode 0640, owner root, group weft if that group exists. It is
# plain HTTP, so it listens on loopback unless allow_remote is set.
# enabled = true
# listen = "{DEFAULT_API_LISTEN}"
# allow_remote = false
# token_file = "{DEFAULT_API_TOKEN_FILE}"
# Serve /metrics to loopback clients without the token (Prometheus can send
# the token too: authorization {{ credentials_file: ... }}).
# public_metrics = false
# Connections open at once; beyond it the one idle the longest is closed.
# max_connections = {DEFAULT_API_MAX_CONNECTIONS}
# A connection without a request in flight for this long is closed.
# idle_timeout = "15s"

# [daemon]
# Once the TUN device, sockets and routes are set up, the daemon drops every
# capability and switches to this user (and group: by default the user's
# primary group). Default: "weft" if that user exists (useradd --system
# weft); if it does not, the daemon stays root without capabilities and
# says so. "root" stays root without capabilities.
# user = "weft"
# group = "weft"
# Where the daemon keeps what it learns while it runs: the newest revocation
# list it holds (revocations.crl), so that a restart still refuses what a
# peer's list revoked. Made at start if missing; must stay writable by the
# user above.
# state_dir = "{DEFAULT_STATE_DIR}"

# [qos]
# Quality of service: every data packet is put in a class; realtime goes
# first (up to its cap), the others share what is left by weight. Set the
# uplink a little below the real upstream rate, so that the queue forms in
# weft, where it is scheduled, and not in a modem. Without it nothing is
# shaped (classes still order what leaves at once).
# uplink = "19mbit"
# Depth of every token bucket, as time at the bucket's rate.
# burst = "5ms"
# Where traffic that no rule matches goes.
# default_class = "interactive"
# Append weft's DSCP rules (RFC 4594: EF, VA, CS4, CS5, AF4x realtime; AF1x
# bulk; CS1, LE background) after the rules below.
# default_rules = true
#
# Classes: any entry replaces the four defaults (realtime: strict priority,
# capped at 30 % of the uplink; interactive weight 4; bulk weight 2;
# background weight 1). An entry named like a default starts from it.
# [[qos.classes]]
# name = "realtime"
# priority = "realtime"
# rate = "30%"
# queue_packets = 256
# queue_bytes = 131072
# aqm = true
# codel_target = "5ms"
# codel_interval = "100ms"
# metric = "latency"
# [[qos.classes]]
# name = "interactive"
# [[qos.classes]]
# name = "bulk"
# [[qos.classes]]
# name = "background"
#
# Rules, tried in order (the first match wins); every field given must
# match, and a list matches when any entry does. Ports apply to TCP, UDP,
# SCTP and DCCP; groups and peers are the certificate groups and names of
# the nodes at either end.
# [[qos.rules]]
# class = "realtime"
# dscp = ["EF", 46]
# protocol = ["udp"]
# src_port = ["5000-5100"]
# dst_port = [5001]
# src_group = ["media"]
# dst_group = ["media"]
# src_peer = ["a"]
# dst_peer = ["b"]
#
# Traffic to a peer, over all classes, at most this rate.
# [[qos.peers]]
# name = "b"
# rate = "5mbit"

# [firewall]
# Who may reach this node, and whom it may reach: ordered rules on the peer's
# certificate name, groups and CA, its overlay address, protocol and port.
# Without this section the firewall is off and every member of the CA may
# reach every port. With it, inbound traffic no rule allows is dropped,
# outbound traffic is allowed, and the replies of every allowed connection
# pass (stateful).
# enabled = true
# inbound_default = "drop"
# outbound_default = "allow"
# Flows tracked at once; when full, the one closest to expiry makes room.
# conntrack_max = 65536
# Idle timeouts: answered TCP, UDP (and other protocols) and ICMP flows, and
# flows the other side has not answered yet.
# tcp_timeout = "1h"
# udp_timeout = "3m"
# icmp_timeout = "30s"
# unreplied_timeout = "30s"
#
# Rules are tried in order and the first match decides: action "allow" (the
# default), "drop", or "reject" (a TCP reset or an ICMP error at once). Every
# field given must match; a list matches when any entry does, except groups,
# which the peer must all hold. port is the destination port: this node's
# for inbound, the peer's for outbound.
# [[firewall.inbound]]
# name = "ping"
# proto = "icmp"
# icmp_type = "echo-request"
# [[firewall.inbound]]
# name = "postgres-from-app"
# proto = "tcp"
# port = 5432
# group = "app"
# [[firewall.outbound]]
# action = "reject"
# proto = "tcp"
# port = [25, "465-587"]
# cidr = "198.19.0.0/16"

# [pki]
# A revocation list from the CA (`weft ca revoke`): this node refuses the
# certificates it names, ends their sessions, and passes the list on to its
# peers, which do the same; a newer version from anyone replaces it.
# revocations = "revocations.crl"
# Certificate fingerprints (as `weft cert print` shows them) that this node
# alone refuses.
# blocklist = ["8c6cbc1f0a3e1c1b0f9d2e7a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c"]

# Pinned paths: traffic to the destination always goes through these nodes,
# in order (at most {max_intermediates}), whatever the measurements say. The same
# as `weft route pin b via c` once the node is up.
#
# [[pins]]
# destination = "b"
# via = ["c"]

# Static peers. Each needs a name (its certificate's name) or a public_key
# (the base64 body of its node.pub), or both. With an endpoint this node
# calls the peer; without one it waits for the peer to call. Any node with a
# certificate of the same CA may call this node, configured or not.
#
# [[peers]]
# name = "b"
# public_key = "<base64 of b's node.pub>"
# endpoint = "198.18.0.2:4800"
"#,
        overhead = weft_core::TUNNEL_OVERHEAD,
        max_intermediates = MAX_INTERMEDIATES,
    )
}

/// Parses a duration such as `500ms`, `10s`, `2m`, `1h30m` or `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_len = rest[number_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - number_len);
        let (number, unit) = (
            &rest[..number_len],
            &rest[number_len..number_len + unit_len],
        );
        let value: f64 = number.parse().map_err(|_| {
            format!("'{text}' is not a duration (expected e.g. \"500ms\", \"10s\", \"2m\", \"1h\")")
        })?;
        let scale = match unit.trim() {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "'{text}' has no unit (use ms, s, m or h, e.g. \"{number}s\")"
                ));
            }
            other => {
                return Err(format!(
                    "'{other}' in '{text}' is not a unit (use ms, s, m or h)"
                ));
            }
        };
        let seconds = value * scale;
        if !seconds.is_finite() || seconds > 1e9 {
            return Err(format!("'{text}' is too long"));
        }
        total += Duration::from_secs_f64(seconds);
        rest = &rest[number_len + unit_len..];
    }
    Ok(total)
}

/// Checks a log filter (`[log] level`, or `RUST_LOG`): comma-separated
/// directives, each a level (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`) or `TARGET=LEVEL` (`weft=debug`). tracing's own syntax also takes
/// a bare word as a target at every level, so that a mistyped level such as
/// `verbose` silently turns off every log line but those of a module named
/// `verbose`: a bare word must be a level here (`weft=trace` says the
/// other thing).
pub fn check_log_filter(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |word: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word.trim()));
    let help = "use error, warn, info, debug, trace or off, or TARGET=LEVEL such as weft=debug";
    if text.trim().is_empty() {
        return Err(format!("empty log filter ({help})"));
    }
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.rsplit_once('=') {
            Some((target, level)) => {
                if target.trim().is_empty() {
                    return Err(format!("'{directive}' names no target ({help})"));
                }
                if !is_level(level) {
                    return Err(format!(
                        "'{level}' in '{directive}' is not a log level ({help})"
                    ));
                }
            }
            // A span filter (`[span]`) selects spans at every level.
            None if directive.starts_with('[') => {}
            None if !is_level(directive) => {
                return Err(format!("'{directive}' is not a log level ({help})"));
            }
            None => {}
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(drop)
        .map_err(|e| format!("'{text}' is not a log filter: {e}"))
}

/// Where a command finds the node's config: `explicit` (`--config`), else
/// the file [`CONFIG_ENV`] names, else [`DEFAULT_CONFIG`].
pub fn locate(explicit: Option<&Path>) -> ConfigLocation {
    locate_with(explicit, std::env::var_os(CONFIG_ENV))
}

/// [`locate`] with the environment variable's value given.
pub fn locate_with(explicit: Option<&Path>, env: Option<std::ffi::OsString>) -> ConfigLocation {
    match (explicit, env) {
        (Some(path), _) => ConfigLocation {
            path: path.to_owned(),
            from: ConfigFrom::Flag,
        },
        (None, Some(path)) if !path.is_empty() => ConfigLocation {
            path: PathBuf::from(path),
            from: ConfigFrom::Environment,
        },
        (None, _) => ConfigLocation {
            path: PathBuf::from(DEFAULT_CONFIG),
            from: ConfigFrom::Default,
        },
    }
}

/// A config file and why it was chosen (see [`locate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    /// The file.
    pub path: PathBuf,
    /// Where its name came from.
    pub from: ConfigFrom,
}

/// Where the name of the config file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFrom {
    /// `--config`.
    Flag,
    /// The [`CONFIG_ENV`] environment variable.
    Environment,
    /// Neither: [`DEFAULT_CONFIG`].
    Default,
}

impl ConfigLocation {
    /// Reads and checks the file; a file that is missing and was not named
    /// by `--config` says where its name came from and how to name another.
    pub fn load(&self) -> anyhow::Result<Config> {
        match Config::load(&self.path) {
            Err(ConfigError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    && self.from != ConfigFrom::Flag =>
            {
                let why = match self.from {
                    ConfigFrom::Environment => format!("named by ${CONFIG_ENV}"),
                    _ => format!("the default; ${CONFIG_ENV} is not set"),
                };
                anyhow::bail!(
                    "no config file at {} ({why}): say which node with --config FILE (or --socket PATH for commands that ask a running node), or set {CONFIG_ENV}",
                    self.path.display()
                )
            }
            other => Ok(other?),
        }
    }
}

/// The text being parsed, to turn byte offsets into line and column and to
/// name the key at an offset.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        (line, column)
    }

    fn error(
        &self,
        span: &std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A toml syntax or type error, with the key guessed from the text at
    /// its position: the enclosing table header and the `key =` on the line.
    fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let message = error.message().trim().to_owned();
        let mut key = self.key_at(span.start);
        if let Some(field) = backquoted_after(&message, "missing field") {
            key = if key.is_empty() {
                field
            } else {
                format!("{key}.{field}")
            };
        }
        if key.is_empty() {
            key = "(top level)".into();
        }
        self.error(&span, key, message)
    }

    /// The dotted key written at `offset`: `table.key`, `peers[2].key`, or
    /// the table alone on a header line.
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let mut table = String::new();
        let mut arrays: Vec<(String, usize)> = Vec::new();
        let mut position = 0;
        for line in self.text.split_inclusive('\n') {
            position += line.len();
            let trimmed = line.trim();
            if let Some(header) = trimmed
                .strip_prefix("[[")
                .and_then(|h| h.split("]]").next())
            {
                let name = header.trim().to_owned();
                let index = match arrays.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count - 1
                    }
                    None => {
                        arrays.push((name.clone(), 1));
                        0
                    }
                };
                table = format!("{name}[{index}]");
            } else if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.split(']').next())
            {
                table = header.trim().to_owned();
            }
            if offset < position || position == self.text.len() {
                let is_header = trimmed.starts_with('[');
                let key = match line.split_once('=') {
                    Some((lhs, _)) if !is_header && !lhs.trim_start().starts_with('#') => {
                        // The offset may be on the key itself (unknown key)
                        // or on its value (type error): either way this key.
                        lhs.trim().trim_matches('"').to_owned()
                    }
                    _ => String::new(),
                };
                return match (table.is_empty(), key.is_empty()) {
                    (_, true) => table,
                    (true, false) => key,
                    (false, false) => format!("{table}.{key}"),
                };
            }
        }
        table
    }
}

fn backquoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?.trim_start();
    let rest = rest.strip_prefix('`')?;
    Some(rest.split('`').next()?.to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    #[serde(default)]
    tun: RawTun,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    peers: Vec<Spanned<RawPeer>>,
    #[serde(default)]
    pins: Vec<Spanned<RawPin>>,
    #[serde(default)]
    dht: RawDht,
    #[serde(default)]
    neighbours: RawNeighbours,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    multicast: RawMulticast,
    #[serde(default)]
    qos: qos::RawQos,
    #[serde(default)]
    api: RawApi,
    firewall: Option<firewall::RawFirewall>,
    #[serde(default)]
    pki: pki::RawPki,
    #[serde(default)]
    daemon: RawDaemon,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
}

impl RawDaemon {
    fn check(&self, source: &Source<'_>, base: &Path) -> Result<DaemonSection, ConfigError> {
        let name = |value: &Option<Spanned<String>>, key: &'static str| {
            let Some(value) = value else {
                return Ok(None);
            };
            let text = value.get_ref();
            let valid = !text.is_empty()
                && text.len() <= 32
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(source.error(
                    &value.span(),
                    key,
                    format!("'{text}' is not a user or group name"),
                ));
            }
            let (line, column) = source.line_column(value.span().start);
            Ok(Some(Located {
                value: text.clone(),
                key,
                line,
                column,
            }))
        };
        let state_dir = match &self.state_dir {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(value) if value.get_ref().trim().is_empty() => {
                return Err(source.error(&value.span(), "daemon.state_dir", "empty path"));
            }
            Some(value) => base.join(value.get_ref()),
        };
        Ok(DaemonSection {
            user: name(&self.user, "daemon.user")?,
            group: name(&self.group, "daemon.group")?,
            state_dir,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
    allow_remote: Option<bool>,
    token_file: Option<Spanned<String>>,
    public_metrics: Option<bool>,
    max_connections: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
}

impl RawApi {
    fn check(&self, source: &Source<'_>, base: &Path) -> Result<ApiSection, ConfigError> {
        let defaults = ApiSection::default();
        let allow_remote = self.allow_remote.unwrap_or(defaults.allow_remote);
        let listen = match &self.listen {
            None => defaults.listen,
            Some(text) => {
                let address = parse_socket_addr(text.get_ref())
                    .map_err(|m| source.error(&text.span(), "api.listen", m))?;
                if !address.ip().is_loopback() && !allow_remote {
                    return Err(source.error(
                        &text.span(),
                        "api.listen",
                        format!(
                            "{address} is not a loopback address; the API is plain HTTP and its token would cross the network in clear, so set api.allow_remote = true to serve it beyond this host"
                        ),
                    ));
                }
                address
            }
        };
        let token_file = match &self.token_file {
            None => base.join(&defaults.token_file),
            Some(value) if value.get_ref().trim().is_empty() => {
                return Err(source.error(&value.span(), "api.token_file", "empty path"));
            }
            Some(value) => base.join(value.get_ref()),
        };
        let max_connections = match &self.max_connections {
            None => defaults.max_connections,
            Some(value) => usize::try_from(*value.get_ref())
                .ok()
                .filter(|n| (1..=MAX_API_CONNECTIONS).contains(n))
                .ok_or_else(|| {
                    source.error(
                        &value.span(),
                        "api.max_connections",
                        format!("must be 1 to {MAX_API_CONNECTIONS}"),
                    )
                })?,
        };
        let mut idle_timeout = defaults.idle_timeout;
        positive_duration(
            source,
            &self.idle_timeout,
            "api.idle_timeout",
            &mut idle_timeout,
        )?;
        Ok(ApiSection {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            listen,
            allow_remote,
            token_file,
            public_metrics: self.public_metrics.unwrap_or(defaults.public_metrics),
            max_connections,
            idle_timeout,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    key: Spanned<String>,
    certificate: Spanned<String>,
    ca: Spanned<String>,
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTun {
    name: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    offload: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    rekey_after_time: Option<Spanned<String>>,
    reject_after_time: Option<Spanned<String>>,
    rekey_after_messages: Option<Spanned<u64>>,
    reject_after_messages: Option<Spanned<u64>>,
    handshake_timeout: Option<Spanned<String>>,
    handshake_backoff_max: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<String>>,
    dead_after: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    probe_idle: Option<Spanned<String>>,
    probe_active: Option<Spanned<String>>,
    probe_down: Option<Spanned<String>>,
    active_for: Option<Spanned<String>>,
    min_link_timeout: Option<Spanned<String>>,
    lsa_refresh: Option<Spanned<String>>,
    lsa_lifetime: Option<Spanned<String>>,
    hold_down: Option<Spanned<String>>,
    relaying: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDht {
    bootstrap: Option<Spanned<Vec<Spanned<String>>>>,
    k: Option<Spanned<i64>>,
    alpha: Option<Spanned<i64>>,
    replication: Option<Spanned<i64>>,
    query_timeout: Option<Spanned<String>>,
    lookup_timeout: Option<Spanned<String>>,
    max_failures: Option<Spanned<i64>>,
    refresh_interval: Option<Spanned<String>>,
    republish_interval: Option<Spanned<String>>,
    record_lifetime: Option<Spanned<String>>,
    max_records: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNeighbours {
    max: Option<Spanned<i64>>,
    random: Option<Spanned<i64>>,
    max_sessions: Option<Spanned<i64>>,
    max_peers: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDns {
    enabled: Option<bool>,
    listen: Option<Spanned<Vec<Spanned<String>>>>,
    configure_resolver: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMulticast {
    fanout: Option<Spanned<i64>>,
    groups: Option<Spanned<Vec<Spanned<String>>>>,
    routes: Option<bool>,
    #[serde(default)]
    rules: Vec<Spanned<RawGroupRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupRule {
    groups: Spanned<String>,
    members: Option<Spanned<Vec<Spanned<String>>>>,
    senders: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    destination: Spanned<String>,
    via: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Option<Spanned<String>>,
    public_key: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

impl RawConfig {
    fn check(self, source: &Source<'_>, base: &Path) -> Result<Config, ConfigError> {
        let path =
            |value: &Spanned<String>, key: &'static str| -> Result<ConfigPath, ConfigError> {
                if value.get_ref().trim().is_empty() {
                    return Err(source.error(&value.span(), key, "empty path"));
                }
                let (line, column) = source.line_column(value.span().start);
                Ok(ConfigPath {
                    path: base.join(value.get_ref()),
                    key,
                    line,
                    column,
                })
            };
        let listen = match &self.node.listen {
            None => parse_socket_addr(DEFAULT_LISTEN)
                .map_err(|m| source.error(&(0..0), "node.listen", m))?,
            Some(value) => parse_socket_addr(value.get_ref())
                .map_err(|m| source.error(&value.span(), "node.listen", m))?,
        };
        let node = NodeSection {
            key: path(&self.node.key, "node.key")?,
            certificate: path(&self.node.certificate, "node.certificate")?,
            ca: path(&self.node.ca, "node.ca")?,
            listen,
        };
        let tun = self.tun.check(source)?;
        let control = ControlSection {
            socket: match &self.control.socket {
                Some(value) if value.get_ref().trim().is_empty() => {
                    return Err(source.error(&value.span(), "control.socket", "empty path"));
                }
                Some(value) => base.join(value.get_ref()),
                None => PathBuf::from(format!("/run/weft/{}.sock", tun.name)),
            },
        };
        let log = LogSection {
            level: match &self.log.level {
                Some(value) => {
                    check_log_filter(value.get_ref())
                        .map_err(|m| source.error(&value.span(), "log.level", m))?;
                    value.get_ref().clone()
                }
                None => DEFAULT_LOG_LEVEL.to_owned(),
            },
        };
        let session = self.session.check(source)?;
        let routing = self.routing.check(source)?;
        let mut pins: Vec<PinSection> = Vec::with_capacity(self.pins.len());
        for (i, entry) in self.pins.iter().enumerate() {
            let pin = entry.get_ref().check(source, i)?;
            if let Some(first) = pins.iter().position(|p| p.destination == pin.destination) {
                return Err(source.error(
                    &entry.span(),
                    format!("pins[{i}]"),
                    format!(
                        "pins[{first}] already pins the path to '{}'",
                        pin.destination
                    ),
                ));
            }
            pins.push(pin);
        }
        let mut peers: Vec<PeerSection> = Vec::with_capacity(self.peers.len());
        for (i, entry) in self.peers.iter().enumerate() {
            let peer = entry.get_ref().check(source, i, &entry.span())?;
            let duplicate = peers.iter().position(|p| {
                (peer.name.is_some() && p.name == peer.name)
                    || (peer.public_key.is_some() && p.public_key == peer.public_key)
            });
            if let Some(first) = duplicate {
                return Err(source.error(
                    &entry.span(),
                    format!("peers[{i}]"),
                    format!("the same peer as peers[{first}]"),
                ));
            }
            peers.push(peer);
        }
        let dht = self.dht.check(source)?;
        let neighbours = self.neighbours.check(source)?;
        let dns = self.dns.check(source)?;
        let multicast = self.multicast.check(source)?;
        let qos = self.qos.check(source)?;
        let api = self.api.check(source, base)?;
        let daemon = self.daemon.check(source, base)?;
        let firewall = firewall::RawFirewall::check(self.firewall.as_ref(), source)?;
        let pki = self.pki.check(source, base)?;
        Ok(Config {
            file: source.file.to_owned(),
            node,
            tun,
            control,
            log,
            session,
            routing,
            peers,
            pins,
            dht,
            neighbours,
            dns,
            multicast,
            qos,
            api,
            firewall,
            pki,
            daemon,
        })
    }
}

impl RawTun {
    fn check(&self, source: &Source<'_>) -> Result<TunSection, ConfigError> {
        let name = match &self.name {
            Some(value) => {
                let name = value.get_ref();
                let bad_char = name
                    .chars()
                    .find(|c| c.is_whitespace() || *c == '/' || *c == ':' || c.is_control());
                if name.is_empty()
                    || name.len() > 15
                    || bad_char.is_some()
                    || name == "."
                    || name == ".."
                {
                    return Err(source.error(
                        &value.span(),
                        "tun.name",
                        format!("'{name}' is not an interface name (1 to 15 characters, no spaces, '/' or ':')"),
                    ));
                }
                name.clone()
            }
            None => DEFAULT_TUN_NAME.to_owned(),
        };
        let mtu = match &self.mtu {
            Some(value) => {
                let mtu = *value.get_ref();
                u16::try_from(mtu).ok().filter(|m| (MIN_MTU..=MAX_MTU).contains(m)).ok_or_else(|| {
                    source.error(
                        &value.span(),
                        "tun.mtu",
                        format!(
                            "{mtu} is out of range {MIN_MTU}..={MAX_MTU} (the overlay carries IPv6, which needs at least {MIN_MTU})"
                        ),
                    )
                })?
            }
            None => DEFAULT_MTU,
        };
        Ok(TunSection {
            name,
            mtu,
            offload: self.offload.unwrap_or(true),
        })
    }
}

impl RawSession {
    fn check(&self, source: &Source<'_>) -> Result<SessionConfig, ConfigError> {
        let mut session = SessionConfig::default();
        let duration = |value: &Option<Spanned<String>>, key: &str, target: &mut Duration| {
            positive_duration(source, value, key, target)
        };
        duration(
            &self.rekey_after_time,
            "session.rekey_after_time",
            &mut session.rekey_after_time,
        )?;
        duration(
            &self.reject_after_time,
            "session.reject_after_time",
            &mut session.reject_after_time,
        )?;
        duration(
            &self.handshake_timeout,
            "session.handshake_timeout",
            &mut session.handshake_timeout,
        )?;
        duration(
            &self.handshake_backoff_max,
            "session.handshake_backoff_max",
            &mut session.handshake_backoff_max,
        )?;
        duration(
            &self.keepalive_interval,
            "session.keepalive_interval",
            &mut session.keepalive_interval,
        )?;
        duration(
            &self.dead_after,
            "session.dead_after",
            &mut session.dead_after,
        )?;
        for (value, key, target) in [
            (
                &self.rekey_after_messages,
                "session.rekey_after_messages",
                &mut session.rekey_after_messages,
            ),
            (
                &self.reject_after_messages,
                "session.reject_after_messages",
                &mut session.reject_after_messages,
            ),
        ] {
            if let Some(value) = value {
                if *value.get_ref() == 0 {
                    return Err(source.error(&value.span(), key, "must be more than zero"));
                }
                *target = *value.get_ref();
            }
        }
        if session.reject_after_time <= session.rekey_after_time {
            let span = self
                .reject_after_time
                .as_ref()
                .or(self.rekey_after_time.as_ref())
                .map_or(0..0, |v| v.span());
            let key = if self.reject_after_time.is_some() {
                "session.reject_after_time"
            } else {
                "session.rekey_after_time"
            };
            return Err(source.error(
                &span,
                key,
                format!(
                    "reject_after_time ({:?}) must be longer than rekey_after_time ({:?}) so a new session is ready in time",
                    session.reject_after_time, session.rekey_after_time
                ),
            ));
        }
        Ok(session)
    }
}

impl RawRouting {
    fn check(&self, source: &Source<'_>) -> Result<RoutingConfig, ConfigError> {
        let mut routing = RoutingConfig::default();
        for (value, key, target) in [
            (
                &self.probe_idle,
                "routing.probe_idle",
                &mut routing.probe_idle,
            ),
            (
                &self.probe_active,
                "routing.probe_active",
                &mut routing.probe_active,
            ),
            (
                &self.probe_down,
                "routing.probe_down",
                &mut routing.probe_down,
            ),
            (
                &self.active_for,
                "routing.active_for",
                &mut routing.active_for,
            ),
            (
                &self.min_link_timeout,
                "routing.min_link_timeout",
                &mut routing.min_link_timeout,
            ),
            (
                &self.lsa_refresh,
                "routing.lsa_refresh",
                &mut routing.lsa_refresh,
            ),
            (
                &self.lsa_lifetime,
                "routing.lsa_lifetime",
                &mut routing.lsa_lifetime,
            ),
            (&self.hold_down, "routing.hold_down", &mut routing.hold_down),
        ] {
            positive_duration(source, value, key, target)?;
        }
        if let Some(relaying) = self.relaying {
            routing.relaying = relaying;
        }
        // Records must outlive the interval at which they are refreshed, or
        // every node's links would vanish between two advertisements.
        if routing.lsa_lifetime <= routing.lsa_refresh {
            let (span, key) = match (&self.lsa_lifetime, &self.lsa_refresh) {
                (Some(v), _) => (v.span(), "routing.lsa_lifetime"),
                (None, Some(v)) => (v.span(), "routing.lsa_refresh"),
                (None, None) => (0..0, "routing"),
            };
            return Err(source.error(
                &span,
                key,
                format!(
                    "lsa_lifetime ({:?}) must be longer than lsa_refresh ({:?}) so link state does not expire before it is refreshed",
                    routing.lsa_lifetime, routing.lsa_refresh
                ),
            ));
        }
        Ok(routing)
    }
}

impl RawDht {
    fn check(&self, source: &Source<'_>) -> Result<DhtSection, ConfigError> {
        let mut bootstrap: Vec<SocketAddr> = Vec::new();
        if let Some(list) = &self.bootstrap {
            for (i, entry) in list.get_ref().iter().enumerate() {
                let key = format!("dht.bootstrap[{i}]");
                let endpoint = parse_socket_addr(entry.get_ref())
                    .map_err(|m| source.error(&entry.span(), key.as_str(), m))?;
                if let Some(first) = bootstrap.iter().position(|e| *e == endpoint) {
                    return Err(source.error(
                        &entry.span(),
                        key,
                        format!("{endpoint} is already dht.bootstrap[{first}]"),
                    ));
                }
                bootstrap.push(endpoint);
            }
        }
        let mut config = DhtConfig::default();
        for (value, key, target) in [
            (
                &self.query_timeout,
                "dht.query_timeout",
                &mut config.query_timeout,
            ),
            (
                &self.lookup_timeout,
                "dht.lookup_timeout",
                &mut config.lookup_timeout,
            ),
            (
                &self.refresh_interval,
                "dht.refresh_interval",
                &mut config.refresh_interval,
            ),
            (
                &self.republish_interval,
                "dht.republish_interval",
                &mut config.republish_interval,
            ),
            (
                &self.record_lifetime,
                "dht.record_lifetime",
                &mut config.record_lifetime,
            ),
        ] {
            positive_duration(source, value, key, target)?;
        }
        config.k = count_in(source, &self.k, "dht.k", 1, MAX_DHT_K)?.unwrap_or(config.k);
        let k = config.k;
        config.alpha = count_in(source, &self.alpha, "dht.alpha", 1, k)?.unwrap_or(config.alpha);
        config.replication = count_in(source, &self.replication, "dht.replication", 1, k)?
            .unwrap_or(config.replication);
        if let Some(failures) = count_in(source, &self.max_failures, "dht.max_failures", 1, 100)? {
            // In range 1..=100 by the check above.
            config.max_failures = u32::try_from(failures).unwrap_or(u32::MAX);
        }
        config.max_records = count_in(source, &self.max_records, "dht.max_records", 0, 1 << 24)?
            .unwrap_or(config.max_records);
        // Defaults that the file did not override may now be out of line
        // with values it did (k = 2 with the default alpha of 3).
        for (value, key, name) in [
            (config.alpha, &self.alpha, "alpha"),
            (config.replication, &self.replication, "replication"),
        ] {
            if value > k {
                let span = key.as_ref().or(self.k.as_ref()).map_or(0..0, |v| v.span());
                return Err(source.error(
                    &span,
                    if key.is_some() {
                        format!("dht.{name}")
                    } else {
                        "dht.k".to_owned()
                    },
                    format!("{name} ({value}) may not exceed k ({k})"),
                ));
            }
        }
        if config.lookup_timeout < config.query_timeout {
            let (span, key) = match (&self.lookup_timeout, &self.query_timeout) {
                (Some(v), _) => (v.span(), "dht.lookup_timeout"),
                (None, Some(v)) => (v.span(), "dht.query_timeout"),
                (None, None) => (0..0, "dht"),
            };
            return Err(source.error(
                &span,
                key,
                format!(
                    "lookup_timeout ({:?}) must be at least query_timeout ({:?})",
                    config.lookup_timeout, config.query_timeout
                ),
            ));
        }
        // A record must outlive the interval at which it is republished, or
        // nodes would vanish from the DHT between two publications.
        if config.record_lifetime <= config.republish_interval {
            let (span, key) = match (&self.record_lifetime, &self.republish_interval) {
                (Some(v), _) => (v.span(), "dht.record_lifetime"),
                (None, Some(v)) => (v.span(), "dht.republish_interval"),
                (None, None) => (0..0, "dht"),
            };
            return Err(source.error(
                &span,
                key,
                format!(
                    "record_lifetime ({:?}) must be longer than republish_interval ({:?}) so records do not expire before they are republished",
                    config.record_lifetime, config.republish_interval
                ),
            ));
        }
        Ok(DhtSection { bootstrap, config })
    }
}

impl RawNeighbours {
    fn check(&self, source: &Source<'_>) -> Result<NeighbourSection, ConfigError> {
        let mut neighbours = NeighbourSection::default();
        neighbours.max =
            count_in(source, &self.max, "neighbours.max", 0, 4096)?.unwrap_or(neighbours.max);
        neighbours.random = count_in(source, &self.random, "neighbours.random", 0, 4096)?
            .unwrap_or(neighbours.random);
        neighbours.max_sessions = count_in(
            source,
            &self.max_sessions,
            "neighbours.max_sessions",
            1,
            1 << 20,
        )?
        .unwrap_or(neighbours.max_sessions);
        neighbours.max_peers =
            count_in(source, &self.max_peers, "neighbours.max_peers", 1, 1 << 20)?
                .unwrap_or(neighbours.max_peers);
        if neighbours.random > neighbours.max {
            let (span, key) = match (&self.random, &self.max) {
                (Some(v), _) => (v.span(), "neighbours.random"),
                (None, Some(v)) => (v.span(), "neighbours.max"),
                (None, None) => (0..0, "neighbours"),
            };
            return Err(source.error(
                &span,
                key,
                format!(
                    "random ({}) may not exceed max ({}): the random links are part of the neighbours",
                    neighbours.random, neighbours.max
                ),
            ));
        }
        Ok(neighbours)
    }
}

impl RawDns {
    fn check(&self, source: &Source<'_>) -> Result<DnsSection, ConfigError> {
        let listen = match &self.listen {
            None => None,
            Some(list) => {
                let mut addresses: Vec<SocketAddr> = Vec::new();
                for (i, entry) in list.get_ref().iter().enumerate() {
                    let key = format!("dns.listen[{i}]");
                    let address = parse_dns_listen(entry.get_ref())
                        .map_err(|m| source.error(&entry.span(), key.as_str(), m))?;
                    if let Some(first) = addresses.iter().position(|a| *a == address) {
                        return Err(source.error(
                            &entry.span(),
                            key,
                            format!("{address} is already dns.listen[{first}]"),
                        ));
                    }
                    addresses.push(address);
                }
                Some(addresses)
            }
        };
        let defaults = DnsSection::default();
        Ok(DnsSection {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            listen,
            configure_resolver: self
                .configure_resolver
                .unwrap_or(defaults.configure_resolver),
        })
    }
}

impl RawMulticast {
    fn check(&self, source: &Source<'_>) -> Result<MulticastSection, ConfigError> {
        let mut config = MulticastConfig::default();
        config.fanout = count_in(source, &self.fanout, "multicast.fanout", 1, MAX_FANOUT)?
            .unwrap_or(config.fanout);
        if let Some(list) = &self.groups {
            for (i, entry) in list.get_ref().iter().enumerate() {
                let key = format!("multicast.groups[{i}]");
                let group = parse_group(entry.get_ref())
                    .map_err(|m| source.error(&entry.span(), key.as_str(), m))?;
                if let Some(first) = config.groups.iter().position(|g| *g == group) {
                    return Err(source.error(
                        &entry.span(),
                        key,
                        format!("{group} is already multicast.groups[{first}]"),
                    ));
                }
                config.groups.push(group);
            }
        }
        for (i, entry) in self.rules.iter().enumerate() {
            config.rules.push(entry.get_ref().check(source, i)?);
        }
        Ok(MulticastSection {
            config,
            routes: self.routes.unwrap_or(true),
        })
    }
}

impl RawGroupRule {
    fn check(&self, source: &Source<'_>, index: usize) -> Result<GroupRule, ConfigError> {
        let groups = parse_group_range(self.groups.get_ref()).map_err(|m| {
            source.error(
                &self.groups.span(),
                format!("multicast.rules[{index}].groups"),
                m,
            )
        })?;
        let labels = |list: &Option<Spanned<Vec<Spanned<String>>>>,
                      field: &str|
         -> Result<Vec<String>, ConfigError> {
            let mut labels: Vec<String> = Vec::new();
            for (i, entry) in list.iter().flat_map(|l| l.get_ref()).enumerate() {
                let label = entry.get_ref().trim();
                let key = format!("multicast.rules[{index}].{field}[{i}]");
                if !is_dns_label(label) {
                    return Err(source.error(
                        &entry.span(),
                        key,
                        format!(
                            "'{label}' is not a certificate group (lower-case letters, digits and '-', at most 63)"
                        ),
                    ));
                }
                if labels.iter().any(|l| l == label) {
                    return Err(source.error(
                        &entry.span(),
                        key,
                        format!("'{label}' is named twice"),
                    ));
                }
                labels.push(label.to_owned());
            }
            Ok(labels)
        };
        Ok(GroupRule {
            groups,
            members: labels(&self.members, "members")?,
            senders: labels(&self.senders, "senders")?,
        })
    }
}

/// A multicast group the overlay carries, as `[multicast] groups` and
/// `weft group join` name it.
pub fn parse_group(text: &str) -> Result<IpAddr, String> {
    let trimmed = text.trim();
    let group: IpAddr = trimmed.parse().map_err(|_| {
        format!("'{text}' is not a multicast address (e.g. \"239.1.2.3\" or \"ff0e::1:2:3\")")
    })?;
    if !group.is_multicast() {
        return Err(format!(
            "{group} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)"
        ));
    }
    if !is_carried(group) {
        return Err(format!(
            "{group} is link-local multicast, which stays on each host; the overlay carries IPv4 224.0.1.0 to 239.255.255.255 and IPv6 multicast of scope 3 or more (ff03:: to ff0f::, e.g. ff05:: or ff0e::)"
        ));
    }
    Ok(group)
}

/// A rule's range of multicast addresses: `239.1.0.0/16`, `ff3e::/16`, or
/// one address. It must lie inside multicast space and have no bits set
/// beyond its prefix (a likely typo).
fn parse_group_range(text: &str) -> Result<(IpAddr, u8), String> {
    let example = "e.g. \"239.1.0.0/16\", \"ff3e::/16\" or one address";
    let (address, len) = parse_prefix(text.trim())
        .ok_or_else(|| format!("'{text}' is not an address range ({example})"))?;
    let (inside, host_bits) = match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            (len >= 4 && v4.is_multicast(), bits & !mask != 0)
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            (len >= 8 && v6.is_multicast(), bits & !mask != 0)
        }
    };
    if !inside {
        return Err(format!(
            "'{text}' is not inside multicast space (224.0.0.0/4 or ff00::/8; {example})"
        ));
    }
    if host_bits {
        return Err(format!(
            "'{text}' has bits set beyond its /{len} prefix (a typo? {example})"
        ));
    }
    Ok((address, len))
}

/// Reads an optional whole number that must lie in `min..=max`.
fn count_in(
    source: &Source<'_>,
    value: &Option<Spanned<i64>>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let number = *value.get_ref();
    usize::try_from(number)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| {
            source.error(
                &value.span(),
                key,
                format!("{number} is out of range {min}..={max}"),
            )
        })
}

/// A `[dns] listen` entry: an address with a port, or an address alone
/// (port [`DEFAULT_DNS_PORT`]).
fn parse_dns_listen(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    if let Ok(address) = trimmed.parse::<SocketAddr>() {
        return Ok(address);
    }
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(trimmed);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_DNS_PORT))
        .map_err(|_| {
            format!(
                "'{text}' is not an IP address, with or without a port (e.g. \"198.19.0.1:53\" or \"fd77:6566::1\")"
            )
        })
}

impl RawPin {
    fn check(&self, source: &Source<'_>, index: usize) -> Result<PinSection, ConfigError> {
        let destination = self.destination.get_ref().trim().to_owned();
        if !is_node_ref(&destination) {
            return Err(source.error(
                &self.destination.span(),
                format!("pins[{index}].destination"),
                format!("'{destination}' is not a node name or a hex node id"),
            ));
        }
        let via_key = format!("pins[{index}].via");
        let via: Vec<String> = self
            .via
            .get_ref()
            .iter()
            .map(|v| v.trim().to_owned())
            .collect();
        if via.is_empty() || via.len() > MAX_INTERMEDIATES {
            return Err(source.error(
                &self.via.span(),
                via_key,
                format!("name 1 to {MAX_INTERMEDIATES} intermediate nodes"),
            ));
        }
        for (i, node) in via.iter().enumerate() {
            let problem = if !is_node_ref(node) {
                Some(format!("'{node}' is not a node name or a hex node id"))
            } else if *node == destination {
                Some(format!("'{node}' is the destination itself"))
            } else if via[..i].contains(node) {
                Some(format!("'{node}' is named twice"))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(source.error(&self.via.span(), via_key, problem));
            }
        }
        Ok(PinSection { destination, via })
    }
}

/// Reads an optional duration into `target`; zero is refused.
fn positive_duration(
    source: &Source<'_>,
    value: &Option<Spanned<String>>,
    key: &str,
    target: &mut Duration,
) -> Result<(), ConfigError> {
    let Some(value) = value else {
        return Ok(());
    };
    let parsed =
        parse_duration(value.get_ref()).map_err(|m| source.error(&value.span(), key, m))?;
    if parsed.is_zero() {
        return Err(source.error(&value.span(), key, "must be longer than zero"));
    }
    *target = parsed;
    Ok(())
}

impl RawPeer {
    fn check(
        &self,
        source: &Source<'_>,
        index: usize,
        span: &std::ops::Range<usize>,
    ) -> Result<PeerSection, ConfigError> {
        let name = match &self.name {
            Some(value) => {
                let name = value.get_ref();
                if !is_dns_label(name) {
                    return Err(source.error(
                        &value.span(),
                        format!("peers[{index}].name"),
                        format!("'{name}' is not a node name (lower-case letters, digits and '-', at most 63)"),
                    ));
                }
                Some(name.clone())
            }
            None => None,
        };
        let public_key = match &self.public_key {
            Some(value) => Some(parse_public_key(value.get_ref()).map_err(|m| {
                source.error(&value.span(), format!("peers[{index}].public_key"), m)
            })?),
            None => None,
        };
        let endpoint =
            match &self.endpoint {
                Some(value) => Some(parse_socket_addr(value.get_ref()).map_err(|m| {
                    source.error(&value.span(), format!("peers[{index}].endpoint"), m)
                })?),
                None => None,
            };
        if name.is_none() && public_key.is_none() {
            return Err(source.error(
                span,
                format!("peers[{index}]"),
                "a peer needs a name or a public_key (or both)",
            ));
        }
        Ok(PeerSection {
            name,
            public_key,
            endpoint,
        })
    }
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "'{text}' is not an IP address with a port (e.g. \"198.18.0.2:4800\" or \"[fd00::2]:4800\"; host names are not resolved)"
        )
    })
}

fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = BASE64.decode(compact.as_bytes()).map_err(|_| {
        "not base64 (paste the line between the BEGIN and END lines of the peer's node.pub)"
            .to_owned()
    })?;
    PublicKey::from_bytes(&bytes).map_err(|e| format!("not a weft public key: {e}"))
}

/// A certificate name or a node id in hex (64 digits).
fn is_node_ref(text: &str) -> bool {
    is_dns_label(text) || (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `name` can be a certificate name or group (a DNS label, as the
/// CA signs them).
pub(crate) fn is_certificate_label(name: &str) -> bool {
    is_dns_label(name)
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/weft/weft.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const MINIMAL: &str =
        "[node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\n";

    #[test]
    fn minimal_config_gets_defaults_and_resolves_paths() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.node.key.path, Path::new("/etc/weft/node.key"));
        assert_eq!(config.node.listen, "0.0.0.0:4800".parse().unwrap());
        assert_eq!(config.tun.name, "weft0");
        assert_eq!(config.tun.mtu, 1340);
        assert_eq!(config.control.socket, Path::new("/run/weft/weft0.sock"));
        assert_eq!(config.session, SessionConfig::default());
        assert_eq!(config.routing, RoutingConfig::default());
        assert!(config.peers.is_empty());
        assert!(config.pins.is_empty());
        assert!(config.dht.bootstrap.is_empty());
        assert_eq!(config.dht.config, DhtConfig::default());
        assert_eq!(config.neighbours, NeighbourSection::default());
        assert_eq!(config.dns, DnsSection::default());
    }

    #[test]
    fn example_config_parses() {
        let key = SecretKey::from_random([5; 64]).public();
        let config = parse(&example_config(&key)).unwrap();
        assert_eq!(config.tun.mtu, DEFAULT_MTU);
    }

    #[test]
    fn example_config_commented_settings_parse_when_uncommented() {
        let key = SecretKey::from_random([5; 64]).public();
        let uncommented: String = example_config(&key)
            .lines()
            .map(|line| {
                let setting = line.strip_prefix("# ").filter(|rest| {
                    rest.starts_with('[')
                        || rest
                            .split_once(" = ")
                            .is_some_and(|(k, _)| !k.contains(' '))
                });
                format!("{}\n", setting.unwrap_or(line))
            })
            .collect::<String>()
            .replace("<base64 of b's node.pub>", &public_key_base64(&key));
        let config = parse(&uncommented).unwrap();
        assert_eq!(config.routing, RoutingConfig::default());
        assert_eq!(config.session, SessionConfig::default());
        assert_eq!(config.pins.len(), 1);
        assert_eq!(config.peers.len(), 1);
        assert_eq!(config.dht.config, DhtConfig::default());
        assert_eq!(config.dht.bootstrap, ["198.18.0.1:4800".parse().unwrap()]);
        assert_eq!(config.neighbours, NeighbourSection::default());
        assert_eq!(
            config.dns,
            DnsSection {
                listen: Some(vec!["198.19.0.1:53".parse().unwrap()]),
                ..DnsSection::default()
            }
        );
        assert_eq!(
            config.multicast.config.groups,
            ["239.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(config.multicast.config.fanout, DEFAULT_FANOUT);
        assert!(config.multicast.routes);
        assert!(config.firewall.config.enabled);
        assert_eq!(config.firewall.config.inbound.len(), 2);
        assert_eq!(config.firewall.config.outbound.len(), 1);
        assert!(config.pki.revocations.is_some());
        assert_eq!(config.pki.blocklist.len(), 1);
        assert_eq!(
            config.multicast.config.rules,
            [GroupRule {
                groups: ("239.1.0.0".parse().unwrap(), 16),
                members: vec!["media".into()],
                senders: vec!["media".into()],
            }]
        );
    }

    #[test]
    fn multicast_section_sets_groups_fanout_and_rules() {
        let config = parse(&format!(
            "{MINIMAL}[multicast]\nfanout = 4\ngroups = [\"239.1.2.3\", \"ff0e::1:2:3\", \"ff15::9\"]\nroutes = false\n\
             [[multicast.rules]]\ngroups = \"239.1.0.0/16\"\nmembers = [\"media\", \"ops\"]\n\
             [[multicast.rules]]\ngroups = \"ff3e::/16\"\nsenders = [\"studio\"]\n"
        ))
        .unwrap();
        let multicast = &config.multicast;
        assert_eq!(multicast.config.fanout, 4);
        assert!(!multicast.routes);
        assert_eq!(
            multicast.config.groups,
            ["239.1.2.3", "ff0e::1:2:3", "ff15::9"].map(|g| g.parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            multicast.config.rules,
            [
                GroupRule {
                    groups: ("239.1.0.0".parse().unwrap(), 16),
                    members: vec!["media".into(), "ops".into()],
                    senders: vec![],
                },
                GroupRule {
                    groups: ("ff3e::".parse().unwrap(), 16),
                    members: vec![],
                    senders: vec!["studio".into()],
                },
            ]
        );
        let defaults = parse(MINIMAL).unwrap().multicast;
        assert_eq!(defaults, MulticastSection::default());
        assert!(defaults.routes && defaults.config.groups.is_empty());
    }

    #[test]
    fn multicast_mistakes_are_located() {
        for (text, expected) in [
            (
                "[multicast]\ngroups = [\"239.1.2.3\", \"db1\"]\n",
                "/etc/weft/weft.toml:6:24: multicast.groups[1]: 'db1' is not a multicast address",
            ),
            (
                "[multicast]\ngroups = [\"198.19.0.1\"]\n",
                "/etc/weft/weft.toml:6:11: multicast.groups[0]: 198.19.0.1 is not a multicast address",
            ),
            (
                "[multicast]\ngroups = [\"224.0.0.251\"]\n",
                "/etc/weft/weft.toml:6:11: multicast.groups[0]: 224.0.0.251 is link-local multicast",
            ),
            (
                "[multicast]\ngroups = [\"ff02::1:3\"]\n",
                "/etc/weft/weft.toml:6:11: multicast.groups[0]: ff02::1:3 is link-local multicast",
            ),
            (
                "[multicast]\ngroups = [\"239.1.2.3\", \"239.1.2.3\"]\n",
                "multicast.groups[1]: 239.1.2.3 is already multicast.groups[0]",
            ),
            (
                "[multicast]\nfanout = 0\n",
                "/etc/weft/weft.toml:6:10: multicast.fanout: 0 is out of range 1..=1024",
            ),
            (
                "[[multicast.rules]]\ngroups = \"198.19.0.0/16\"\n",
                "/etc/weft/weft.toml:6:10: multicast.rules[0].groups: '198.19.0.0/16' is not inside multicast space",
            ),
            (
                "[[multicast.rules]]\ngroups = \"0.0.0.0/0\"\n",
                "multicast.rules[0].groups: '0.0.0.0/0' is not inside multicast space",
            ),
            (
                "[[multicast.rules]]\ngroups = \"239.1.2.3/16\"\n",
                "multicast.rules[0].groups: '239.1.2.3/16' has bits set beyond its /16 prefix",
            ),
            (
                "[[multicast.rules]]\ngroups = \"239.1.0.0/33\"\n",
                "multicast.rules[0].groups: '239.1.0.0/33' is not an address range",
            ),
            (
                "[[multicast.rules]]\ngroups = \"239.1.0.0/16\"\n[[multicast.rules]]\ngroups = \"ff3e::/16\"\nmembers = [\"a\", \"Media\"]\n",
                "/etc/weft/weft.toml:9:17: multicast.rules[1].members[1]: 'Media' is not a certificate group",
            ),
            (
                "[[multicast.rules]]\ngroups = \"ff3e::/16\"\nsenders = [\"a\", \"a\"]\n",
                "multicast.rules[0].senders[1]: 'a' is named twice",
            ),
            (
                "[[multicast.rules]]\nmembers = []\n",
                "multicast.rules[0].groups: missing field",
            ),
            (
                "[multicast]\ngroup = [\"239.1.2.3\"]\n",
                "multicast.group: unknown field",
            ),
        ] {
            let message = error(&format!("{MINIMAL}{text}"));
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn dht_section_sets_bootstrap_and_tuning() {
        let config = parse(&format!(
            "{MINIMAL}[dht]\nbootstrap = [\"198.18.0.1:4800\", \"[fd00::1]:4800\"]\nk = 8\nalpha = 2\nreplication = 4\nrefresh_interval = \"30s\"\nrepublish_interval = \"1m\"\nrecord_lifetime = \"5m\"\nquery_timeout = \"300ms\"\nlookup_timeout = \"3s\"\nmax_failures = 3\nmax_records = 100\n"
        ))
        .unwrap();
        assert_eq!(
            config.dht.bootstrap,
            [
                "198.18.0.1:4800".parse::<SocketAddr>().unwrap(),
                "[fd00::1]:4800".parse().unwrap()
            ]
        );
        assert_eq!(
            config.dht.config,
            DhtConfig {
                k: 8,
                alpha: 2,
                replication: 4,
                query_timeout: Duration::from_millis(300),
                lookup_timeout: Duration::from_secs(3),
                max_failures: 3,
                refresh_interval: Duration::from_secs(30),
                republish_interval: Duration::from_secs(60),
                record_lifetime: Duration::from_secs(300),
                max_records: 100,
            }
        );
    }

    #[test]
    fn dht_mistakes_are_located() {
        let message = error(&format!(
            "{MINIMAL}[dht]\nbootstrap = [\"198.18.0.1:4800\", \"db1:4800\"]\n"
        ));
        assert!(
            message.starts_with(
                "/etc/weft/weft.toml:6:33: dht.bootstrap[1]: 'db1:4800' is not an IP address"
            ),
            "{message}"
        );
        let message = error(&format!(
            "{MINIMAL}[dht]\nbootstrap = [\"198.18.0.1:4800\", \"198.18.0.1:4800\"]\n"
        ));
        assert!(
            message.contains("dht.bootstrap[1]: 198.18.0.1:4800 is already dht.bootstrap[0]"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[dht]\nk = 0\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:5: dht.k: 0 is out of range 1..=256"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[dht]\nk = 4\nalpha = 5\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:7:9: dht.alpha: 5 is out of range 1..=4"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[dht]\nk = 2\n"));
        assert!(
            message.contains("dht.k: alpha (3) may not exceed k (2)"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[dht]\nrecord_lifetime = \"10m\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:19: dht.record_lifetime: record_lifetime"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[dht]\nquery_timeout = \"1 year\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:17: dht.query_timeout:"),
            "{message}"
        );
        let message = error(&format!(
            "{MINIMAL}[dht]\nbootstrap = \"198.18.0.1:4800\"\n"
        ));
        assert!(message.contains("dht.bootstrap"), "{message}");
        let message = error(&format!("{MINIMAL}[dht]\nbootstraps = []\n"));
        assert!(
            message.contains("dht.bootstraps: unknown field"),
            "{message}"
        );
    }

    #[test]
    fn peers_need_no_endpoints_with_a_bootstrap() {
        let config = parse(&format!(
            "{MINIMAL}[dht]\nbootstrap = [\"198.18.0.1:4800\"]\n[[peers]]\nname = \"b\"\n"
        ))
        .unwrap();
        assert_eq!(config.peers[0].endpoint, None);
        assert_eq!(config.dht.bootstrap.len(), 1);
    }

    #[test]
    fn neighbours_section_is_checked() {
        let config = parse(&format!("{MINIMAL}[neighbours]\nmax = 8\nrandom = 2\n")).unwrap();
        assert_eq!(
            config.neighbours,
            NeighbourSection {
                max: 8,
                random: 2,
                max_sessions: DEFAULT_MAX_SESSIONS,
                max_peers: DEFAULT_MAX_PEERS,
            }
        );
        let config = parse(&format!(
            "{MINIMAL}[neighbours]\nmax = 0\nrandom = 0\nmax_sessions = 64\nmax_peers = 128\n"
        ))
        .unwrap();
        assert_eq!(
            config.neighbours,
            NeighbourSection {
                max: 0,
                random: 0,
                max_sessions: 64,
                max_peers: 128,
            }
        );
        let message = error(&format!("{MINIMAL}[neighbours]\nmax_peers = 0\n"));
        assert!(
            message.contains("neighbours.max_peers: 0 is out of range"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[neighbours]\nmax_sessions = 0\n"));
        assert!(
            message.contains("neighbours.max_sessions: 0 is out of range"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[neighbours]\nmax = 5000\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:7: neighbours.max: 5000 is out of range"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[neighbours]\nmax = 3\n"));
        assert!(
            message.contains("neighbours.max: random (4) may not exceed max (3)"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[neighbours]\nrandom = -1\n"));
        assert!(
            message.contains("neighbours.random: -1 is out of range"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[neighbours]\nmin = 1\n"));
        assert!(
            message.contains("neighbours.min: unknown field"),
            "{message}"
        );
    }

    #[test]
    fn dns_section_is_checked() {
        let config = parse(&format!(
            "{MINIMAL}[dns]\nenabled = false\nlisten = [\"198.19.0.1\", \"[fd77:6566::1]:5353\", \"fd77:6566::2\"]\nconfigure_resolver = false\n"
        ))
        .unwrap();
        assert_eq!(
            config.dns,
            DnsSection {
                enabled: false,
                listen: Some(vec![
                    "198.19.0.1:53".parse().unwrap(),
                    "[fd77:6566::1]:5353".parse().unwrap(),
                    "[fd77:6566::2]:53".parse().unwrap(),
                ]),
                configure_resolver: false,
            }
        );
        let message = error(&format!("{MINIMAL}[dns]\nlisten = [\"localhost:53\"]\n"));
        assert!(
            message.starts_with(
                "/etc/weft/weft.toml:6:11: dns.listen[0]: 'localhost:53' is not an IP address"
            ),
            "{message}"
        );
        let message = error(&format!(
            "{MINIMAL}[dns]\nlisten = [\"198.19.0.1\", \"198.19.0.1:53\"]\n"
        ));
        assert!(
            message.contains("dns.listen[1]: 198.19.0.1:53 is already dns.listen[0]"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[dns]\nenable = true\n"));
        assert!(message.contains("dns.enable: unknown field"), "{message}");
        let message = error(&format!("{MINIMAL}[dns]\nenabled = \"yes\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:11: dns.enabled:"),
            "{message}"
        );
    }

    #[test]
    fn api_section_is_checked() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(
            config.api,
            ApiSection {
                token_file: PathBuf::from("/etc/weft/api.token"),
                ..ApiSection::default()
            }
        );
        assert_eq!(config.api.max_connections, 64);
        assert_eq!(config.api.idle_timeout, Duration::from_secs(15));
        assert!(!config.api.public_metrics);
        assert_eq!(
            config.api.listen,
            DEFAULT_API_LISTEN.parse::<SocketAddr>().unwrap()
        );
        let config = parse(&format!(
            "{MINIMAL}[api]\nenabled = false\nlisten = \"[::1]:9000\"\n"
        ))
        .unwrap();
        assert!(!config.api.enabled);
        assert_eq!(config.api.listen, "[::1]:9000".parse().unwrap());
        let message = error(&format!("{MINIMAL}[api]\nlisten = \"0.0.0.0:4880\"\n"));
        assert!(
            message.contains("api.listen: 0.0.0.0:4880 is not a loopback address"),
            "{message}"
        );
        let config = parse(&format!(
            "{MINIMAL}[api]\nlisten = \"0.0.0.0:4880\"\nallow_remote = true\n"
        ))
        .unwrap();
        assert!(config.api.allow_remote);
        let message = error(&format!("{MINIMAL}[api]\nlisten = \"localhost\"\n"));
        assert!(message.contains("api.listen:"), "{message}");
        let config = parse(&format!(
            "{MINIMAL}[api]\ntoken_file = \"/run/weft/token\"\npublic_metrics = true\nmax_connections = 8\nidle_timeout = \"2s\"\n"
        ))
        .unwrap();
        assert_eq!(config.api.token_file, Path::new("/run/weft/token"));
        assert!(config.api.public_metrics);
        assert_eq!(config.api.max_connections, 8);
        assert_eq!(config.api.idle_timeout, Duration::from_secs(2));
        for (line, key) in [
            ("max_connections = 0", "api.max_connections"),
            ("max_connections = 100000", "api.max_connections"),
            ("idle_timeout = \"0s\"", "api.idle_timeout"),
            ("token_file = \"\"", "api.token_file"),
        ] {
            let message = error(&format!("{MINIMAL}[api]\n{line}\n"));
            assert!(
                message.starts_with("/etc/weft/weft.toml:6:") && message.contains(key),
                "{line}: {message}"
            );
        }
    }

    #[test]
    fn daemon_section_names_a_user_and_group_with_their_position() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.daemon, DaemonSection::default());
        let config = parse(&format!(
            "{MINIMAL}[daemon]\nuser = \"nobody\"\ngroup = \"nogroup\"\n"
        ))
        .unwrap();
        let user = config.daemon.user.clone().unwrap();
        assert_eq!(user.value, "nobody");
        assert_eq!(config.daemon.group.as_ref().unwrap().value, "nogroup");
        let later = config.error_at_value(&user, "no such user".into());
        assert_eq!(
            later.to_string(),
            "/etc/weft/weft.toml:6:8: daemon.user: no such user"
        );
        let message = error(&format!("{MINIMAL}[daemon]\nuser = \"a b\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:8: daemon.user:"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[daemon]\nuid = 5\n"));
        assert!(message.contains("daemon"), "{message}");
    }

    #[test]
    fn state_dir_defaults_to_var_lib_and_is_relative_to_the_config() {
        assert_eq!(
            parse(MINIMAL).unwrap().daemon.state_dir,
            PathBuf::from("/var/lib/weft")
        );
        let config = parse(&format!("{MINIMAL}[daemon]\nstate_dir = \"state\"\n")).unwrap();
        assert_eq!(config.daemon.state_dir, PathBuf::from("/etc/weft/state"));
        let message = error(&format!("{MINIMAL}[daemon]\nstate_dir = \"\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:13: daemon.state_dir: empty path"),
            "{message}"
        );
    }

    #[test]
    fn syntax_error_names_line_and_key() {
        let text = format!("{MINIMAL}listen = 0.0.0.0:4800\n");
        let message = error(&text);
        assert!(message.starts_with("/etc/weft/weft.toml:5:"), "{message}");
        assert!(message.contains("node.listen"), "{message}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = format!("{MINIMAL}[tun]\nname = \"w\"\nmtuu = 1400\n");
        let message = error(&text);
        assert!(
            message.starts_with("/etc/weft/weft.toml:7:1: tun.mtuu:"),
            "{message}"
        );
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn type_error_names_line_and_key() {
        let text = format!("{MINIMAL}[tun]\nmtu = \"big\"\n");
        let message = error(&text);
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:7: tun.mtu:"),
            "{message}"
        );
    }

    #[test]
    fn missing_field_names_the_key() {
        let message = error("[node]\nkey = \"k\"\nca = \"c\"\n");
        assert!(message.contains("node.certificate"), "{message}");
        assert!(message.contains("missing field"), "{message}");
    }

    #[test]
    fn bad_endpoint_names_line_and_key() {
        let text = format!(
            "{MINIMAL}\n[[peers]]\nname = \"a\"\n\n[[peers]]\nname = \"b\"\nendpoint = \"b.example:4800\"\n"
        );
        let message = error(&text);
        assert!(
            message.starts_with("/etc/weft/weft.toml:11:12: peers[1].endpoint:"),
            "{message}"
        );
    }

    #[test]
    fn peer_without_identity_names_its_entry() {
        let text = format!("{MINIMAL}[[peers]]\nendpoint = \"198.18.0.2:4800\"\n");
        let message = error(&text);
        assert!(
            message.contains(":5:") && message.contains("peers[0]: a peer needs a name"),
            "{message}"
        );
    }

    #[test]
    fn bad_duration_and_mtu_are_located() {
        let message = error(&format!(
            "{MINIMAL}[session]\nkeepalive_interval = \"10 parsecs\"\n"
        ));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:22: session.keepalive_interval:"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[tun]\nmtu = 1000\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:7: tun.mtu: 1000 is out of range"),
            "{message}"
        );
    }

    #[test]
    fn routing_section_sets_the_core_config() {
        let config = parse(&format!(
            "{MINIMAL}[routing]\nprobe_idle = \"2s\"\nprobe_active = \"20ms\"\nhold_down = \"500ms\"\nlsa_lifetime = \"4m\"\nrelaying = false\n"
        ))
        .unwrap();
        assert_eq!(
            config.routing,
            RoutingConfig {
                probe_idle: Duration::from_secs(2),
                probe_active: Duration::from_millis(20),
                hold_down: Duration::from_millis(500),
                lsa_lifetime: Duration::from_secs(240),
                relaying: false,
                ..RoutingConfig::default()
            }
        );
    }

    #[test]
    fn routing_mistakes_are_located() {
        let message = error(&format!("{MINIMAL}[routing]\nprobe_down = \"fast\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:14: routing.probe_down:"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[routing]\nhold_down = \"0s\"\n"));
        assert!(
            message.contains("routing.hold_down: must be longer than zero"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[routing]\nlsa_lifetime = \"5s\"\n"));
        assert!(
            message.starts_with("/etc/weft/weft.toml:6:16: routing.lsa_lifetime: lsa_lifetime"),
            "{message}"
        );
        let message = error(&format!("{MINIMAL}[routing]\nprobe = \"1s\"\n"));
        assert!(
            message.contains("routing.probe: unknown field"),
            "{message}"
        );
    }

    #[test]
    fn pins_are_checked() {
        let config = parse(&format!(
            "{MINIMAL}[[pins]]\ndestination = \"b\"\nvia = [\"c\", \"d\"]\n"
        ))
        .unwrap();
        assert_eq!(
            config.pins,
            [PinSection {
                destination: "b".into(),
                via: vec!["c".into(), "d".into()],
            }]
        );
        for (via, problem) in [
            ("[]", "name 1 to 2 intermediate nodes"),
            ("[\"c\", \"d\", \"e\"]", "name 1 to 2 intermediate nodes"),
            ("[\"c\", \"c\"]", "'c' is named twice"),
            ("[\"b\"]", "'b' is the destination itself"),
            ("[\"C D\"]", "'C D' is not a node name"),
        ] {
            let message = error(&format!(
                "{MINIMAL}[[pins]]\ndestination = \"b\"\nvia = {via}\n"
            ));
            assert!(
                message.starts_with("/etc/weft/weft.toml:7:7: pins[0].via: ")
                    && message.contains(problem),
                "{via}: {message}"
            );
        }
        let message = error(&format!(
            "{MINIMAL}[[pins]]\ndestination = \"b\"\nvia = [\"c\"]\n[[pins]]\ndestination = \"b\"\nvia = [\"d\"]\n"
        ));
        assert!(
            message.contains("pins[1]: pins[0] already pins"),
            "{message}"
        );
    }

    #[test]
    fn public_key_is_base64_of_64_bytes() {
        let key = SecretKey::from_random([9; 64]).public();
        let text = format!(
            "{MINIMAL}[[peers]]\npublic_key = \"{}\"\n",
            public_key_base64(&key)
        );
        assert_eq!(parse(&text).unwrap().peers[0].public_key, Some(key));
        let message = error(&format!("{MINIMAL}[[peers]]\npublic_key = \"AAAA\"\n"));
        assert!(
            message.contains("peers[0].public_key: not a weft public key"),
            "{message}"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn missing_key_file_is_reported_at_its_key() {
        let dir = std::env::temp_dir().join(format!("weft-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("weft.toml");
        std::fs::write(&file, MINIMAL).unwrap();
        let config = Config::load(&file).unwrap();
        let message = config.node_config(0).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            message.contains("weft.toml:2:7: node.key: cannot read"),
            "{message}"
        );
    }
}
