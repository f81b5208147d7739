//! Config reload: what of a re-read config file may change while the node
//! runs, and what needs a restart.
//!
//! Two checks come before anything changes. [`refused`] compares the
//! running config with the new one and names every key that changed but
//! cannot change at run time (the key and CA files, sockets, the TUN
//! interface, and the sections the core reads only at start). [`prepare`]
//! reads the files the new config names again (certificate, CA,
//! revocation list) and checks everything that the node could still
//! refuse: a certificate that is not a renewal of the node's own (another
//! key, CA, name or address, or not valid now), a CA file whose contents
//! changed, firewall rules that name another CA, a revocation list the CA
//! did not sign, configured groups the multicast rules forbid this node,
//! a peer that is the node itself. The event loop applies the changes
//! (`EventLoop::reload`) only when both found nothing, so a reload is all
//! or nothing and a refused one leaves the running config as it was.

use std::fmt::Debug;
use std::net::IpAddr;
use std::time::Instant;

use weft_core::{Certificate, Node, PeerConfig, RevocationList};

use crate::config::{Config, ConfigPath};

/// What the new config's files hold, read and checked by [`prepare`].
#[derive(Debug)]
pub(super) struct Prepared {
    /// The certificate file's, when it differs from the one the node runs
    /// with (a renewal).
    pub(super) certificate: Option<Certificate>,
    /// The revocation list file's, if the config names one.
    pub(super) revocations: Option<RevocationList>,
}

/// Reads the files `new` names and checks that the node would take every
/// change (see the module doc); the reasons it would not, as `key: why`
/// lines, else what was read.
pub(super) fn prepare(node: &Node, now: Instant, new: &Config) -> Result<Prepared, Vec<String>> {
    let (certificate, ca) = new
        .read_certificate_and_ca()
        .map_err(|error| vec![error.to_string()])?;
    let mut refused = Vec::new();
    if ca != *node.ca() {
        refused.push(format!(
            "node.ca: {} holds another CA than the one the node runs with; the CA cannot change while the node runs; restart it",
            new.node.ca.path.display()
        ));
        return Err(refused);
    }
    if let Err(error) = node.check_certificate(now, &certificate) {
        refused.push(format!(
            "node.certificate: {}: {error}",
            new.node.certificate.path.display()
        ));
    }
    if let Err(error) = new.check_firewall(&ca) {
        refused.push(error.to_string());
    }
    let revocations = match new.revocation_list(&ca) {
        Ok(list) => list,
        Err(error) => {
            refused.push(error.to_string());
            None
        }
    };
    let multicast = &new.multicast.config;
    for group in &multicast.groups {
        if !multicast.may_join(*group, certificate.groups()) {
            refused.push(format!(
                "multicast.groups: this node's certificate may not join {group} under the [multicast] rules"
            ));
        }
    }
    let own = node.node_id();
    for peer in &new.peers {
        let itself = peer.name.as_deref() == Some(node.name())
            || peer.public_key.is_some_and(|k| k.node_id() == own);
        if itself {
            refused.push(format!(
                "peers: '{}' is this node itself",
                peer.name.clone().unwrap_or_else(|| own.short())
            ));
        }
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    let certificate = (certificate != *node.certificate()).then_some(certificate);
    Ok(Prepared {
        certificate,
        revocations,
    })
}

/// Every change from `running` to `new` that needs a restart, as
/// `key: why` lines; empty when the rest may be applied (if [`prepare`]
/// agrees). The certificate file, the multicast rules and fan-out, the
/// firewall and `[pki]` may change: `prepare` checks what they hold.
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
    let user = |c: &Config| c.daemon.user.as_ref().map(|u| u.value.clone());
    let group = |c: &Config| c.daemon.group.as_ref().map(|g| g.value.clone());
    check(
        "daemon",
        user(running) != user(new) || group(running) != group(new),
        "the daemon's user",
    );
    check(
        "daemon.state_dir",
        running.daemon.state_dir != new.daemon.state_dir,
        "the state directory",
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
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use weft_core::{CaSecret, SecretKey};

    use super::*;
    use crate::pki;

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

    #[test]
    fn the_firewall_multicast_policy_pki_and_certificate_file_may_change() {
        let running = parse(BASE);
        let changed = parse(&format!(
            "{}\n{}",
            BASE.replace("node.crt", "renewed.crt"),
            r#"
[multicast]
fanout = 3

[[multicast.rules]]
groups = "239.1.0.0/16"
members = ["media"]

[firewall]
[[firewall.inbound]]
proto = "icmp"

[pki]
revocations = "revocations.crl"
blocklist = ["8c6cbc1f0a3e1c1b0f9d2e7a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c"]
"#
        ));
        assert_eq!(refused(&running, &changed), Vec::<String>::new());
        let other_ca = parse(&BASE.replace("ca.crt", "other-ca.crt"));
        assert_eq!(
            refused(&running, &other_ca),
            ["node.ca: the CA file cannot change while the node runs; restart it"]
        );
    }

    /// A node's files in a fresh directory (key, a 10-day certificate for
    /// `a` at 198.19.0.1, the CA, the config) and a node started from them.
    struct Fixture {
        dir: PathBuf,
        ca: CaSecret,
        key: SecretKey,
        config: Config,
        node: Node,
        now: Instant,
    }

    impl Fixture {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("weft-reload-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let key = pki::create_node_key(&dir, false).unwrap();
            let ca = pki::new_ca("net", 30).unwrap();
            std::fs::write(dir.join("ca.crt"), ca.certificate().to_pem()).unwrap();
            let config_path = dir.join("weft.toml");
            std::fs::write(&config_path, BASE).unwrap();
            let ipv4 = Some("198.19.0.1/16".parse().unwrap());
            let certificate = pki::issue(&ca, key.public(), "a", ipv4, &[], 10).unwrap();
            std::fs::write(dir.join("node.crt"), certificate.to_pem()).unwrap();
            let config = Config::parse(&config_path, BASE).unwrap();
            let unix_now = pki::unix_now().unwrap();
            #[allow(clippy::disallowed_methods)] // one base instant
            let now = Instant::now();
            let node_config = config.node_config(unix_now).unwrap();
            let node = Node::new(now, Duration::from_secs(unix_now), [1; 32], node_config).unwrap();
            Self {
                dir,
                ca,
                key,
                config,
                node,
                now,
            }
        }

        fn certificate(&self, name: &str, days: u64) -> Certificate {
            let ipv4 = Some("198.19.0.1/16".parse().unwrap());
            pki::issue(&self.ca, self.key.public(), name, ipv4, &[], days).unwrap()
        }

        fn write_certificate(&self, certificate: &Certificate) {
            std::fs::write(self.dir.join("node.crt"), certificate.to_pem()).unwrap();
        }

        fn prepare(&self) -> Result<Prepared, Vec<String>> {
            prepare(&self.node, self.now, &self.config)
        }

        fn refusal(&self) -> String {
            match self.prepare() {
                Ok(prepared) => panic!("not refused: {prepared:?}"),
                Err(reasons) => reasons.join("\n"),
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_renewed_certificate_is_read_and_any_other_is_refused_with_its_reason() {
        let f = Fixture::new("certificate");
        assert!(f.prepare().unwrap().certificate.is_none(), "unchanged");

        let renewed = f.certificate("a", 20);
        f.write_certificate(&renewed);
        assert_eq!(f.prepare().unwrap().certificate, Some(renewed));

        let other_key = pki::new_secret_key().unwrap();
        let ipv4 = Some("198.19.0.1/16".parse().unwrap());
        f.write_certificate(&pki::issue(&f.ca, other_key.public(), "a", ipv4, &[], 20).unwrap());
        let refusal = f.refusal();
        assert!(
            refusal.starts_with("node.certificate: ")
                && refusal.contains("not for this node's key"),
            "{refusal}"
        );

        let other_ca = pki::new_ca("net", 30).unwrap();
        f.write_certificate(&pki::issue(&other_ca, f.key.public(), "a", ipv4, &[], 20).unwrap());
        assert!(
            f.refusal().contains("issued by another CA"),
            "{}",
            f.refusal()
        );

        f.write_certificate(&f.certificate("a2", 20));
        assert!(
            f.refusal().contains("a new name needs a restart"),
            "{}",
            f.refusal()
        );

        std::fs::write(f.dir.join("node.crt"), "not a certificate").unwrap();
        assert!(f.refusal().contains("node.certificate"), "{}", f.refusal());

        f.write_certificate(&f.certificate("a", 20));
        std::fs::write(f.dir.join("ca.crt"), other_ca.certificate().to_pem()).unwrap();
        assert!(
            f.refusal().starts_with("node.ca: ") && f.refusal().contains("holds another CA"),
            "{}",
            f.refusal()
        );
    }

    #[test]
    fn firewall_rules_for_another_ca_and_groups_the_rules_forbid_are_refused() {
        let mut f = Fixture::new("policy");
        let text = format!(
            "{BASE}\n[firewall]\n[[firewall.inbound]]\nname = \"x\"\nproto = \"icmp\"\nca = \"othernet\"\n\n[multicast]\ngroups = [\"239.1.2.3\"]\n\n[[multicast.rules]]\ngroups = \"239.1.0.0/16\"\nmembers = [\"media\"]\n"
        );
        f.config = Config::parse(&f.dir.join("weft.toml"), &text).unwrap();
        let refusal = f.refusal();
        assert!(
            refusal.contains("firewall") && refusal.contains("othernet"),
            "{refusal}"
        );
        assert!(
            refusal.contains("multicast.groups: this node's certificate may not join 239.1.2.3"),
            "{refusal}"
        );
    }
}
