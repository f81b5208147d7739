//! The CA's signing ledger: what `weft ca sign` and `weft ca renew` signed,
//! so the CA refuses to give a name or overlay IPv4 address to a second key.
//!
//! Certificates alone cannot tell a node that its CA signed one name twice;
//! the nodes resolve such conflicts by a rule (docs/PROTOCOL.md §9.3), but
//! the mistake is cheapest to stop where it is made. The ledger is a text
//! file beside the CA key (`ca.key` → `ca.ledger`), one line per signed
//! certificate:
//!
//! ```text
//! # node-id name ipv4 not-before not-after
//! 3f…c1 db-1 198.19.0.1/16 1796000000 1827536000
//! ```
//!
//! `-` stands for no IPv4 address. Lines starting with `#` are comments.
//! Entries whose certificate has expired no longer block anything. The
//! ledger is advice for the CA operator, not a security boundary: whoever
//! holds the CA key can sign anything.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use weft_core::{Certificate, Ipv4Net, NodeId};

/// One signed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's node id, 64 hex digits.
    pub node_id: String,
    /// The certificate name.
    pub name: String,
    /// Its overlay IPv4 address, if any.
    pub ipv4: Option<Ipv4Net>,
    /// Validity start, unix seconds.
    pub not_before: u64,
    /// Validity end, unix seconds.
    pub not_after: u64,
}

impl Entry {
    /// The entry for `certificate`.
    pub fn of(certificate: &Certificate) -> Self {
        Self {
            node_id: certificate.node_id().to_string(),
            name: certificate.name().to_owned(),
            ipv4: certificate.ipv4(),
            not_before: certificate.not_before(),
            not_after: certificate.not_after(),
        }
    }

    fn line(&self) -> String {
        let ipv4 = self.ipv4.map_or_else(|| "-".to_owned(), |n| n.to_string());
        format!(
            "{} {} {} {} {}\n",
            self.node_id, self.name, ipv4, self.not_before, self.not_after
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        let node_id = fields.next()?.to_owned();
        let name = fields.next()?.to_owned();
        let ipv4 = match fields.next()? {
            "-" => None,
            text => Some(text.parse().ok()?),
        };
        let not_before = fields.next()?.parse().ok()?;
        let not_after = fields.next()?.parse().ok()?;
        Some(Self {
            node_id,
            name,
            ipv4,
            not_before,
            not_after,
        })
    }
}

/// The ledger file beside `ca_key`.
pub fn path_for(ca_key: &Path) -> PathBuf {
    ca_key.with_extension("ledger")
}

/// The entries of the ledger at `path`; none when it does not exist (a CA
/// from before ledgers, or one that never signed).
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            Entry::parse(l)
                .with_context(|| format!("{}:{}: not a ledger line", path.display(), i + 1))
        })
        .collect()
}

/// Refuses, unless `force`, to sign `name` or `ipv4` for `node_id` when the
/// ledger holds an unexpired certificate of another key with either.
pub fn check(
    path: &Path,
    node_id: &NodeId,
    name: &str,
    ipv4: Option<Ipv4Net>,
    unix_now: u64,
    force: bool,
) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    let id = node_id.to_string();
    for entry in read(path)? {
        if entry.node_id == id || entry.not_after <= unix_now {
            continue;
        }
        let short = &entry.node_id[..entry.node_id.len().min(16)];
        if entry.name == name {
            bail!(
                "the CA already signed the name '{name}' for another key (node id {short}, see {}); \
                 two nodes with one name conflict (the earlier certificate wins everywhere). \
                 Revoke the other certificate first, or sign anyway with --force-claim",
                path.display()
            );
        }
        if let (Some(held), Some(asked)) = (entry.ipv4, ipv4)
            && held.addr == asked.addr
        {
            bail!(
                "the CA already signed the IPv4 address {} for another key ('{}', node id {short}, see {}); \
                 two nodes with one address conflict (the earlier certificate wins everywhere). \
                 Revoke the other certificate first, or sign anyway with --force-claim",
                asked.addr,
                entry.name,
                path.display()
            );
        }
    }
    Ok(())
}

/// Appends `certificate` to the ledger at `path`, creating it.
pub fn record(path: &Path, certificate: &Certificate) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the signing ledger {}", path.display()))?;
    if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        file.write_all(b"# node-id name ipv4 not-before not-after\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.write_all(Entry::of(certificate).line().as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_and_without_an_address() {
        for ipv4 in [None, Some("198.19.0.1/16".parse().unwrap())] {
            let entry = Entry {
                node_id: "ab".repeat(32),
                name: "db-1".into(),
                ipv4,
                not_before: 10,
                not_after: 20,
            };
            assert_eq!(Entry::parse(entry.line().trim_end()), Some(entry));
        }
        assert_eq!(Entry::parse("only two"), None);
    }
}
