//! NAT routers: hosts behind their own nftables masquerade, as most real
//! members are.
//!
//! A [`NatRouter`] `k` is one more namespace, `{stem}n{k}`, with a WAN
//! port `w0` on the test bed's bridge (198.18.0.{201 + k}/24) and a LAN
//! bridge `lan0` (198.18.{1 + k}.254/24) that its hosts hang off, each at
//! 198.18.{1 + k}.{i + 1}/24 with the router as default gateway. The
//! router forwards and masquerades whatever leaves by `w0`:
//!
//! - [`NatMapping::EndpointIndependent`]: `masquerade`. Linux keeps the
//!   source port when it is free and reuses one mapping for every
//!   destination; its filtering is address- and port-dependent (conntrack
//!   lets in only what answers a packet sent out).
//! - [`NatMapping::Symmetric`]: `masquerade random,fully-random`: a new
//!   random port per destination, the NAT hole punching cannot predict.
//!
//! Like every home router, it drops unsolicited packets addressed to
//! itself on its WAN port (`ct state new drop` on input): without that
//! rule, a peer's first punching packet that arrives before this side's
//! own leaves is taken by the router's own stack, and the conntrack entry
//! it leaves behind makes the router give this side's mapping another
//! port (the "conflicting mapping" of hole punching).
//!
//! [`NatRouter::accepts_unsolicited`] leaves that rule out, to show what
//! such a conflicting mapping does.
//!
//! [`Testbed::reboot_nat`] deletes the router's namespace (its conntrack
//! table with it, and its hosts' links) and builds it again: a router that
//! reboots. Everything lives in namespaces the test bed removes on drop.

use std::fs;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;

use super::command::{now, run};
use super::netns::{add_namespace, delete_namespace, ip, step};
use super::{Testbed, TestbedOptions};

/// How long a rebooted router's old links may take to disappear.
const GONE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between checks for them.
const GONE_POLL: Duration = Duration::from_millis(20);

/// How a NAT router maps its hosts' ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatMapping {
    /// One mapping per host port for every destination, the port kept
    /// when free (`masquerade`).
    EndpointIndependent,
    /// A new random port per destination (`masquerade random,fully-random`).
    Symmetric,
}

/// A NAT router and the hosts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRouter {
    /// Its mapping behaviour.
    pub mapping: NatMapping,
    /// The hosts on its LAN.
    pub hosts: Vec<usize>,
    /// Whether it accepts unsolicited packets to its own address (no
    /// input filter on its WAN port), keeping a conntrack entry for each:
    /// a bare Linux box, unlike a home router.
    pub accepts_unsolicited: bool,
}

impl NatRouter {
    /// A router like a home router's (unsolicited packets dropped).
    pub fn new(mapping: NatMapping, hosts: Vec<usize>) -> Self {
        Self {
            mapping,
            hosts,
            accepts_unsolicited: false,
        }
    }
}

/// Router `k`'s address on the test bed's bridge.
pub fn nat_wan_ipv4(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, octet(201 + k))
}

/// Router `k`'s LAN address (its hosts' gateway).
pub fn nat_gateway_ipv4(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, octet(1 + k), 254)
}

/// The router host `i` sits behind, if any.
pub(super) fn nat_of(options: &TestbedOptions, i: usize) -> Option<usize> {
    options.nats.iter().position(|nat| nat.hosts.contains(&i))
}

/// Host `i`'s address: on router `k`'s LAN, 198.18.{1 + k}.{i + 1}.
pub(super) fn lan_ipv4(k: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, octet(1 + k), octet(i + 1))
}

fn octet(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

impl Testbed {
    /// Router `k`'s namespace.
    pub fn nat_netns(&self, k: usize) -> String {
        format!("{}n{k}", self.stem)
    }

    /// Reboots NAT router `k`: its namespace, conntrack table and links go
    /// and are built again, so every mapping it held is forgotten.
    pub fn reboot_nat(&self, k: usize) -> anyhow::Result<()> {
        delete_namespace(&self.nat_netns(k))?;
        // The kernel tears the namespace's veth pairs down asynchronously:
        // the router's bridge port must be gone before it is made again.
        let Some(bridge) = &self.bridge else {
            anyhow::bail!("the test bed has no bridge");
        };
        let port = format!("n{k}");
        let deadline = now() + GONE_TIMEOUT;
        while run(ip().args(["-n", bridge, "link", "show", &port])).is_ok() {
            if now() >= deadline {
                anyhow::bail!("{port} still exists {GONE_TIMEOUT:?} after its router went");
            }
            std::thread::sleep(GONE_POLL);
        }
        self.build_nat(k)
    }

    /// Makes the namespaces of every NAT router (the test bed's cleanup
    /// list gets them) and links their hosts.
    pub(super) fn make_nats(&mut self) -> anyhow::Result<()> {
        for k in 0..self.options.nats.len() {
            self.namespaces.push(self.nat_netns(k));
            self.build_nat(k)?;
        }
        Ok(())
    }

    fn build_nat(&self, k: usize) -> anyhow::Result<()> {
        let Some(bridge) = &self.bridge else {
            anyhow::bail!("the test bed has no bridge");
        };
        let nat = &self.options.nats[k];
        let netns = self.nat_netns(k);
        step(&format!("building NAT router {netns}"), || {
            add_namespace(&netns)?;
            let port = format!("n{k}");
            run(ip()
                .args([
                    "-n", bridge, "link", "add", &port, "type", "veth", "peer", "name", "w0",
                    "netns",
                ])
                .arg(&netns))?;
            run(ip().args(["-n", bridge, "link", "set", &port, "master", "br0", "up"]))?;
            let wan = format!("{}/24", nat_wan_ipv4(k));
            run(ip().args(["-n", &netns, "addr", "add", &wan, "dev", "w0"]))?;
            run(ip().args(["-n", &netns, "link", "set", "w0", "up"]))?;
            run(ip().args(["-n", &netns, "link", "add", "lan0", "type", "bridge"]))?;
            let lan = format!("{}/24", nat_gateway_ipv4(k));
            run(ip().args(["-n", &netns, "addr", "add", &lan, "dev", "lan0"]))?;
            run(ip().args(["-n", &netns, "link", "set", "lan0", "up"]))?;
            run(ip()
                .args(["netns", "exec", &netns, "sysctl", "-qw"])
                .arg("net.ipv4.ip_forward=1"))?;
            let masquerade = match nat.mapping {
                NatMapping::EndpointIndependent => "masquerade",
                NatMapping::Symmetric => "masquerade random,fully-random",
            };
            let mut rules = format!(
                "table ip weft_nat {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"w0\" {masquerade}\n  }}\n}}\n"
            );
            if !nat.accepts_unsolicited {
                rules.push_str(
                    "table inet weft_router {\n  chain input {\n    type filter hook input priority filter; policy accept;\n    iifname \"w0\" ct state new drop\n  }\n}\n",
                );
            }
            let file = self.dir.join(format!("nat{k}.nft"));
            fs::write(&file, rules).with_context(|| format!("writing {}", file.display()))?;
            run(ip()
                .args(["netns", "exec", &netns])
                .arg(super::impair::nft_binary()?)
                .arg("-f")
                .arg(&file))?;
            for &i in &nat.hosts {
                let host = &self.hosts[i];
                let port = format!("h{i}");
                run(ip()
                    .args([
                        "-n", &netns, "link", "add", &port, "type", "veth", "peer", "name", "u0",
                        "netns",
                    ])
                    .arg(&host.netns))?;
                run(ip().args(["-n", &netns, "link", "set", &port, "master", "lan0", "up"]))?;
                let address = format!("{}/24", lan_ipv4(k, i));
                run(ip().args(["-n", &host.netns, "addr", "add", &address, "dev", "u0"]))?;
                run(ip().args(["-n", &host.netns, "link", "set", "u0", "up"]))?;
                let gateway = nat_gateway_ipv4(k).to_string();
                run(ip().args([
                    "-n",
                    &host.netns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &gateway,
                ]))?;
            }
            Ok(())
        })
    }
}
