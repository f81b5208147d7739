//! Impairing the underlay between two hosts: cut, random loss, and the
//! iproute2-only cut for machines without nftables.
//!
//! Every rule lives inside the two hosts' own namespaces and names only the
//! other host's underlay address, so it touches no other pair and vanishes
//! with the namespaces (the test bed's `Drop`), whatever happens.
//!
//! - [`Testbed::cut_pair`]: nftables, in each of the two namespaces a table
//!   `weft_cut_h{peer}` that drops every packet from and to the peer's
//!   underlay address (input and output hooks). Locally sent packets to the
//!   peer fail with EPERM, which the daemon only counts and logs; the core
//!   sees silence, as on a broken Internet path.
//! - [`Testbed::set_pair_loss`]: nftables, a table `weft_loss_h{peer}` that
//!   drops `percent` % of the packets arriving from the peer (input hook
//!   only, so each direction loses `percent` % once, not twice), chosen by
//!   `numgen random mod 100`.
//! - [`Testbed::blackhole_pair`]: iproute2 only, a `blackhole` route to the
//!   peer's /32 in each namespace (sends fail with EINVAL, nothing leaves);
//!   `weft demo --scenario failover` uses it because a fresh machine has no
//!   `nft`.
//!
//! Rule files are written to the test bed's directory and loaded with
//! `nft -f`, so each change is one atomic transaction. Removing a table
//! first declares it (a no-op when it exists), so restoring is idempotent.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, bail};

use super::Testbed;
use super::command::run;
use super::netns::ip;

/// Priority of the impairment chains: before the default filter chains.
const CHAIN_PRIORITY: i32 = -10;

impl Testbed {
    /// Cuts the underlay between hosts `a` and `b` only (nftables, both
    /// directions); every other pair still talks. See the module doc.
    pub fn cut_pair(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.for_pair(a, b, |this, peer| {
            let table = format!("weft_cut_h{}", self.hosts[peer].index);
            let peer_addr = self.hosts[peer].underlay;
            let mut rules = String::new();
            write_chain(&mut rules, "input", &format!("ip saddr {peer_addr} drop"));
            write_chain(&mut rules, "output", &format!("ip daddr {peer_addr} drop"));
            self.nft_load(this, &table, &rules)
        })
    }

    /// Drops `percent` % (0 to 100) of the packets between hosts `a` and `b`
    /// in each direction, at random (nftables `numgen`); 0 removes the loss.
    pub fn set_pair_loss(&self, a: usize, b: usize, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("loss must be 0 to 100 %, not {percent}");
        }
        self.for_pair(a, b, |this, peer| {
            let table = format!("weft_loss_h{}", self.hosts[peer].index);
            if percent == 0 {
                return self.nft_delete(this, &table);
            }
            let peer_addr = self.hosts[peer].underlay;
            let mut rules = String::new();
            write_chain(
                &mut rules,
                "input",
                &format!("ip saddr {peer_addr} numgen random mod 100 < {percent} drop"),
            );
            self.nft_load(this, &table, &rules)
        })
    }

    /// Removes the cut and the loss between hosts `a` and `b` (nftables);
    /// fine to call when there is neither.
    pub fn restore_pair(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.for_pair(a, b, |this, peer| {
            let index = self.hosts[peer].index;
            self.nft_delete(this, &format!("weft_cut_h{index}"))?;
            self.nft_delete(this, &format!("weft_loss_h{index}"))
        })
    }

    /// Cuts the underlay between hosts `a` and `b` with `blackhole` routes
    /// (iproute2 only, no nftables needed); undo with
    /// [`Testbed::unblackhole_pair`].
    pub fn blackhole_pair(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.for_pair(a, b, |this, peer| {
            let route = host_route(self.hosts[peer].underlay);
            run(ip().args([
                "-n",
                &self.hosts[this].netns,
                "route",
                "replace",
                "blackhole",
                &route,
            ]))
            .map(drop)
        })
    }

    /// Removes the `blackhole` routes of [`Testbed::blackhole_pair`]; fine
    /// to call when there are none.
    pub fn unblackhole_pair(&self, a: usize, b: usize) -> anyhow::Result<()> {
        self.for_pair(a, b, |this, peer| {
            let netns = &self.hosts[this].netns;
            let route = host_route(self.hosts[peer].underlay);
            let present = run(ip().args(["-n", netns, "route", "show", "type", "blackhole"]))?;
            if !String::from_utf8_lossy(&present)
                .split_whitespace()
                .any(|word| word == route || Some(word) == route.strip_suffix("/32"))
            {
                return Ok(());
            }
            run(ip().args(["-n", netns, "route", "del", "blackhole", &route])).map(drop)
        })
    }

    /// Runs `f(this, peer)` for (a, b) and (b, a), after checking the pair.
    fn for_pair(
        &self,
        a: usize,
        b: usize,
        mut f: impl FnMut(usize, usize) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let n = self.hosts.len();
        if a >= n || b >= n || a == b {
            bail!("no host pair ({a}, {b}) in a test bed of {n}");
        }
        f(a, b).with_context(|| format!("impairing h{a} -> h{b}"))?;
        f(b, a).with_context(|| format!("impairing h{b} -> h{a}"))
    }

    /// Replaces table `inet {table}` in host `this`'s namespace by one
    /// holding `chains`, in one transaction.
    fn nft_load(&self, this: usize, table: &str, chains: &str) -> anyhow::Result<()> {
        let text = format!(
            "table inet {table} {{}}\ndelete table inet {table}\ntable inet {table} {{\n{chains}}}\n"
        );
        self.nft_file(this, table, &text)
    }

    /// Deletes table `inet {table}` in host `this`'s namespace, if it exists.
    fn nft_delete(&self, this: usize, table: &str) -> anyhow::Result<()> {
        let text = format!("table inet {table} {{}}\ndelete table inet {table}\n");
        self.nft_file(this, table, &text)
    }

    fn nft_file(&self, this: usize, table: &str, text: &str) -> anyhow::Result<()> {
        let host = &self.hosts[this];
        let file = self.dir.join(format!("{}-{table}.nft", host.name));
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        run(host.command(nft_binary()?).arg("-f").arg(&file))
            .with_context(|| format!("loading {} in {}", file.display(), host.name))?;
        Ok(())
    }
}

/// Whether `nft` is installed (the nftables impairments need it).
pub fn have_nft() -> bool {
    nft_binary().is_ok()
}

pub(super) fn nft_binary() -> anyhow::Result<&'static Path> {
    [
        "/usr/sbin/nft",
        "/sbin/nft",
        "/usr/bin/nft",
        "/usr/local/sbin/nft",
    ]
    .into_iter()
    .map(Path::new)
    .find(|path| path.is_file())
    .context("nft (nftables) is not installed: run scripts/install-test-deps.sh as root")
}

fn write_chain(out: &mut String, hook: &str, rule: &str) {
    let _ = write!(
        out,
        "  chain {hook} {{\n    type filter hook {hook} priority {CHAIN_PRIORITY}; policy accept;\n    {rule}\n  }}\n"
    );
}

fn host_route(address: Ipv4Addr) -> String {
    format!("{address}/32")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_valid_nft_syntax_shapes() {
        let mut text = String::new();
        write_chain(&mut text, "input", "ip saddr 198.18.0.2 drop");
        assert_eq!(
            text,
            "  chain input {\n    type filter hook input priority -10; policy accept;\n    ip saddr 198.18.0.2 drop\n  }\n"
        );
        assert_eq!(host_route(Ipv4Addr::new(198, 18, 0, 7)), "198.18.0.7/32");
    }
}
