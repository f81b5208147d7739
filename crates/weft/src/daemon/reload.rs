//! Config reload: what of a re-read config file may change while the node
//! runs, and what needs a restart.
//!
//! [`refused`] compares the running config with the new one and names every
//! key that changed but cannot change at run time (identity files, sockets,
//! the TUN interface, and the sections the core reads only at start). The
//! event loop applies the rest (`EventLoop::reload`) only when nothing is
//! refused, so a reload is all or nothing and a refused one leaves the
//! running config as it was.

use std::fmt::Debug;
use std::net::IpAddr;

use weft_core::PeerConfig;

use crate::config::{Config, ConfigPath};

/// Every change from `running` to `new` that needs a restart, as
/// `key: why` lines; empty when the rest may be applied.
pub(super) fn refused(running: &Config, new: &Config) -> Vec<String> {
    let mut refused = Vec::new();
    let mut check = |key: &str, changed: bool, what: &str| {
        if changed {
            refused.push(format!(
                "{key}: {what} cannot change while the node runs; restart it"
            ));
        }
    };
    let path = |a: &ConfigPath, b: &ConfigPath| a.path != b.path;
    check(
        "node.key",
        path(&running.node.key, &new.node.key),
        "the node's key",
    );
    check(
        "node.certificate",
        path(&running.node.certificate, &new.node.certificate),
        "the node's certificate file",
    );
    check(
        "node.ca",
        path(&running.node.ca, &new.node.ca),
        "the CA file",
    );
    check(
        "node.listen",
        running.node.listen != new.node.listen,
        "the listen address",
    );
    check(
        "tun.name",
        running.tun.name != new.tun.name,
        "the TUN interface's name",
    );
    check(
        "tun.mtu",
        running.tun.mtu != new.tun.mtu,
        "the TUN interface's MTU",
    );
    check(
        "tun.offload",
        running.tun.offload != new.tun.offload,
        "the TUN offloads",
    );
    check(
        "control.socket",
        running.control.socket != new.control.socket,
        "the control socket",
    );
    check("api", running.api != new.api, "the HTTP API");
    check("dns", running.dns != new.dns, "the DNS responder");
    // Settings the core reads only when it starts. Their types come from
    // weft-core and do not all compare; their Debug forms hold every field.
    check(
        "session",
        differs(&running.session, &new.session),
        "session timing",
    );
    check(
        "routing",
        differs(&running.routing, &new.routing),
        "routing",
    );
    check("dht", differs(&running.dht, &new.dht), "the DHT settings");
    check(
        "neighbours",
        running.neighbours != new.neighbours,
        "the neighbour settings",
    );
    check(
        "multicast.routes",
        running.multicast.routes != new.multicast.routes,
        "the TUN's multicast routes",
    );
    check(
        "multicast.fanout",
        running.multicast.config.fanout != new.multicast.config.fanout,
        "the tree fan-out",
    );
    check(
        "multicast.rules",
        differs(&running.multicast.config.rules, &new.multicast.config.rules),
        "who may join and send",
    );
    check(
        "firewall",
        differs(&running.firewall.config, &new.firewall.config),
        "the firewall",
    );
    let revocations = |c: &Config| c.pki.revocations.as_ref().map(|at| at.path.clone());
    check(
        "pki.revocations",
        revocations(running) != revocations(new),
        "the revocation list file",
    );
    check(
        "pki.blocklist",
        running.pki.blocklist != new.pki.blocklist,
        "the blocklist",
    );
    let user = |c: &Config| c.daemon.user.as_ref().map(|u| u.value.clone());
    let group = |c: &Config| c.daemon.group.as_ref().map(|g| g.value.clone());
    check(
        "daemon",
        user(running) != user(new) || group(running) != group(new),
        "the daemon's user",
    );
    refused
}

/// The core's view of a config's `[[peers]]`.
pub(super) fn peers(config: &Config) -> Vec<PeerConfig> {
    config
        .peers
        .iter()
        .map(|p| PeerConfig {
            name: p.name.clone(),
            public_key: p.public_key,
            endpoint: p.endpoint,
        })
        .collect()
}

/// How a peer is named in the report.
pub(super) fn label(peer: &PeerConfig) -> String {
    peer.name
        .clone()
        .or_else(|| peer.public_key.map(|k| k.node_id().short()))
        .unwrap_or_default()
}

/// Items of `a` that `b` lacks, in `a`'s order.
pub(super) fn missing<'a, T: PartialEq>(a: &'a [T], b: &[T]) -> Vec<&'a T> {
    a.iter().filter(|x| !b.contains(x)).collect()
}

/// The groups joined at start, for the report.
pub(super) fn groups(config: &Config) -> &[IpAddr] {
    &config.multicast.config.groups
}

fn differs<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[node]
key = "node.key"
certificate = "node.crt"
ca = "ca.crt"
listen = "0.0.0.0:4800"

[[peers]]
name = "b"
endpoint = "192.0.2.2:4800"
"#;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("/etc/weft/weft.toml"), text).unwrap()
    }

    #[test]
    fn peers_and_qos_may_change_but_the_listen_address_may_not() {
        let running = parse(BASE);
        let more_peers = parse(&format!(
            "{BASE}\n[[peers]]\nname = \"c\"\nendpoint = \"192.0.2.3:4800\"\n"
        ));
        assert_eq!(refused(&running, &more_peers), Vec::<String>::new());
        assert_eq!(
            missing(&peers(&more_peers), &peers(&running))
                .into_iter()
                .map(label)
                .collect::<Vec<_>>(),
            vec!["c".to_owned()]
        );
        let moved = parse(&BASE.replace("0.0.0.0:4800", "0.0.0.0:4801"));
        assert_eq!(
            refused(&running, &moved),
            vec![
                "node.listen: the listen address cannot change while the node runs; restart it"
                    .to_owned()
            ]
        );
    }
}
