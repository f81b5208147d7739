//! `weft reload`: asks the running daemon to read its config file again.
//!
//! The daemon re-reads the file it was started with (the same as SIGHUP,
//! or `systemctl reload weft`) and answers with a [`ReloadInfo`]: what it
//! applied and what it refused. Settings that need a restart (the key and
//! CA files, the listen address, the TUN interface, the control socket,
//! the API, ...) are refused by key, and so is a change the node would
//! not take (a certificate that is not a renewal of its own, firewall
//! rules naming another CA, ...); then nothing is applied: the running
//! config stays as it was. An invalid file is refused whole. The command
//! exits non-zero whenever anything was refused.

use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::status::{ControlArgs, emit, request};

/// Arguments of `weft reload`.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Re-read the running node's config file (the file it was started with; \
the same as SIGHUP or `systemctl reload weft`).\n\n\
Applied without dropping sessions: [[peers]] (added peers are called, removed ones are no \
longer kept up and lapse when idle), [qos], [multicast] groups, rules and fan-out (members \
the rules no longer admit drop out, trees are rebuilt), [firewall] (new flows meet the new \
rules; a tracked flow is judged again at its next packet and closed if they no longer allow \
it), [pki] revocations (a newer list is installed and passed on) and blocklist (sessions \
with blocked nodes end at once), a renewed certificate in the node.certificate file (same \
key, CA, name and address; peers get it by a handshake at once), [[pins]] and [log] level.\n\n\
Refused, naming the key, when changed: node.key, node.ca (path or contents), node.listen, \
tun.*, control.socket, [api], [dns], [session], [routing], [dht], [neighbours], \
multicast.routes and [daemon]; these need a restart. Also refused: a certificate for another \
key, CA, name or address, or one not valid now; firewall rules naming another CA; a \
revocation list the CA did not sign; configured groups the multicast rules forbid this node. \
If anything is refused, or the file is invalid, nothing is applied and the running config \
stays.\n\n\
Exits non-zero when anything was refused."
)]
pub struct ReloadArgs {
    /// Which node.
    #[command(flatten)]
    pub target: ControlArgs,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The daemon's answer to a reload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadInfo {
    /// Each change applied, e.g. `qos: new settings`.
    pub applied: Vec<String>,
    /// Each change refused, naming its key and why.
    pub refused: Vec<String>,
}

/// Runs `weft reload`.
pub fn run(args: &ReloadArgs) -> anyhow::Result<ExitCode> {
    let socket = args.target.socket()?;
    let response = request(&socket, &serde_json::json!({ "command": "reload" }))?;
    let value = response
        .get("reload")
        .cloned()
        .context("the daemon's answer has no reload report")?;
    let info: ReloadInfo = serde_json::from_value(value)
        .context("the daemon's reload report is not in the expected form")?;
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&info)?))?;
    } else {
        emit(&render(&info))?;
    }
    Ok(if info.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report as lines for a terminal.
pub fn render(info: &ReloadInfo) -> String {
    let mut text = String::new();
    if info.refused.is_empty() {
        if info.applied.is_empty() {
            text.push_str("reloaded: nothing changed\n");
        }
        for change in &info.applied {
            text.push_str(&format!("applied: {change}\n"));
        }
    } else {
        for reason in &info.refused {
            text.push_str(&format!("refused: {reason}\n"));
        }
        text.push_str("nothing was applied; the running config stays\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reload_says_nothing_was_applied() {
        let info = ReloadInfo {
            applied: vec![],
            refused: vec!["node.listen: needs a restart".into()],
        };
        assert_eq!(
            render(&info),
            "refused: node.listen: needs a restart\nnothing was applied; the running config stays\n"
        );
    }

    #[test]
    fn an_applied_reload_lists_each_change() {
        let info = ReloadInfo {
            applied: vec!["qos: new settings".into(), "log.level: debug".into()],
            refused: vec![],
        };
        assert_eq!(
            render(&info),
            "applied: qos: new settings\napplied: log.level: debug\n"
        );
    }
}
