//! `weft cert print`: what a certificate file says, and whether it verifies.
//!
//! Reads a node certificate (`WEFT NODE CERTIFICATE`), a CA certificate
//! (`WEFT CA CERTIFICATE`, also the one inside `ca.key`) or a revocation
//! list (`WEFT REVOCATION LIST`), whichever the file holds, and prints its
//! fields as text or, with `--json`, as one object ([`CertInfo`]). With
//! `--ca FILE` it also checks the certificate against that CA now (issuer,
//! signature, both validity periods) and exits with status 1 if it does
//! not verify, so scripts can use it as a check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;
use weft_core::{CaCertificate, Certificate, RevocationList};

use crate::config::public_key_base64;
use crate::pki::{hex, unix_now};
use crate::status::emit;

/// `weft cert` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum CertCommand {
    /// Show a node certificate, a CA certificate or a revocation list:
    /// name, node id, addresses, groups, validity, issuer, and with --ca
    /// whether it verifies (exit status 1 if not).
    Print {
        /// The file (node.crt, ca.crt, ca.key, a revocation list).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Check it against this CA certificate (ca.crt).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

/// What `weft cert print --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// `node`, `ca` or `revocation_list`.
    pub kind: &'static str,
    /// The certificate's name (the CA's name for a CA or a list).
    pub name: String,
    /// Node certificates: the node id (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Node certificates: the overlay IPv6 address, from the node id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_ipv6: Option<String>,
    /// Node certificates: the overlay IPv4 address and prefix, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_ipv4: Option<String>,
    /// Node certificates: the groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Node certificates: the public keys, as a `[[peers]]` `public_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Start of validity, unix seconds (a list: when it was issued).
    pub not_before: u64,
    /// End of validity, unix seconds (a list: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// Seconds until `not_after` (negative: expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<i64>,
    /// Fingerprint of the issuing CA's key (hex); for a CA, its own.
    pub issuer: String,
    /// This file's own fingerprint (hex): BLAKE3 of the encoded
    /// certificate, what a revocation list names with --certificate and a
    /// `[pki] blocklist` holds; for a CA, the key fingerprint node
    /// certificates name.
    pub fingerprint: String,
    /// Revocation lists: their version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Revocation lists: what they revoke, as `node-id HEX`,
    /// `certificate HEX` or `name NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Vec<String>>,
    /// The check against `--ca`, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// The outcome of checking against a CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The CA's name.
    pub ca: String,
    /// Its fingerprint (hex).
    pub ca_fingerprint: String,
    /// Whether the certificate verifies now.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs `weft cert ...`.
pub fn run(command: &CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::Print { file, json, ca } => {
            let info = inspect(file, ca.as_deref(), unix_now()?)?;
            let text = if *json {
                format!("{}\n", serde_json::to_string_pretty(&info)?)
            } else {
                render(&info)
            };
            emit(&text)?;
            let failed = info.verification.as_ref().is_some_and(|v| !v.ok);
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Reads `file` and describes it; checks it against the CA in `ca` (if
/// given) at `unix_now`.
pub fn inspect(file: &Path, ca: Option<&Path>, unix_now: u64) -> anyhow::Result<CertInfo> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let ca = match ca {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                CaCertificate::from_pem(&text)
                    .with_context(|| format!("{} is not a weft CA certificate", path.display()))?,
            )
        }
        None => None,
    };
    if text.contains("-----BEGIN WEFT NODE CERTIFICATE-----") {
        let certificate = Certificate::from_pem(&text)
            .with_context(|| format!("{} is not a readable node certificate", file.display()))?;
        return Ok(node_info(&certificate, ca.as_ref(), unix_now));
    }
    if text.contains("-----BEGIN WEFT REVOCATION LIST-----") {
        let list = RevocationList::from_pem(&text)
            .with_context(|| format!("{} is not a readable revocation list", file.display()))?;
        return Ok(list_info(&list, ca.as_ref()));
    }
    if text.contains("-----BEGIN WEFT CA CERTIFICATE-----") {
        let certificate = CaCertificate::from_pem(&text)
            .with_context(|| format!("{} is not a readable CA certificate", file.display()))?;
        return Ok(ca_info(&certificate, ca.as_ref(), unix_now));
    }
    bail!(
        "{} holds no weft certificate, CA certificate or revocation list",
        file.display()
    )
}

fn node_info(certificate: &Certificate, ca: Option<&CaCertificate>, unix_now: u64) -> CertInfo {
    let id = certificate.node_id();
    CertInfo {
        kind: "node",
        name: certificate.name().to_owned(),
        node_id: Some(id.to_string()),
        overlay_ipv6: Some(id.overlay_ipv6().to_string()),
        overlay_ipv4: certificate.ipv4().map(|n| n.to_string()),
        groups: Some(certificate.groups().to_vec()),
        public_key: Some(public_key_base64(&certificate.public_key())),
        not_before: certificate.not_before(),
        not_after: Some(certificate.not_after()),
        expires_in_secs: Some(seconds_until(certificate.not_after(), unix_now)),
        issuer: hex(&certificate.issuer()),
        fingerprint: hex(&certificate.fingerprint()),
        version: None,
        revoked: None,
        verification: ca.map(|ca| verification(ca, certificate.verify(ca, unix_now))),
    }
}

fn ca_info(certificate: &CaCertificate, ca: Option<&CaCertificate>, unix_now: u64) -> CertInfo {
    let fingerprint = hex(&certificate.fingerprint());
    CertInfo {
        kind: "ca",
        name: certificate.name().to_owned(),
        node_id: None,
        overlay_ipv6: None,
        overlay_ipv4: None,
        groups: None,
        public_key: None,
        not_before: certificate.not_before(),
        not_after: Some(certificate.not_after()),
        expires_in_secs: Some(seconds_until(certificate.not_after(), unix_now)),
        issuer: fingerprint.clone(),
        fingerprint,
        version: None,
        revoked: None,
        verification: ca.map(|ca| {
            // A CA certificate verifies against a CA if it is that CA (it
            // signs itself; decoding checked the signature) and is valid.
            let result = if ca.fingerprint() != certificate.fingerprint() {
                Err("another CA".to_owned())
            } else if unix_now < certificate.not_before() {
                Err(format!(
                    "not valid before {}",
                    utc(certificate.not_before())
                ))
            } else if unix_now >= certificate.not_after() {
                Err(format!("expired at {}", utc(certificate.not_after())))
            } else {
                Ok(())
            };
            verification(ca, result)
        }),
    }
}

fn list_info(list: &RevocationList, ca: Option<&CaCertificate>) -> CertInfo {
    let issuer = hex(&list.issuer());
    let mut revoked: Vec<String> = list
        .node_ids()
        .iter()
        .map(|id| format!("node-id {id}"))
        .collect();
    revoked.extend(
        list.certificates()
            .iter()
            .map(|f| format!("certificate {}", hex(f))),
    );
    revoked.extend(list.names().iter().map(|n| format!("name {n}")));
    CertInfo {
        kind: "revocation_list",
        name: match ca {
            Some(ca) if ca.fingerprint() == list.issuer() => ca.name().to_owned(),
            _ => format!("CA {}", &issuer[..16]),
        },
        node_id: None,
        overlay_ipv6: None,
        overlay_ipv4: None,
        groups: None,
        public_key: None,
        not_before: list.issued_at(),
        not_after: None,
        expires_in_secs: None,
        issuer,
        fingerprint: hex(&list.fingerprint()),
        version: Some(list.version()),
        revoked: Some(revoked),
        verification: ca.map(|ca| verification(ca, list.verify(ca))),
    }
}

/// The [`Verification`] for a check's result.
pub(crate) fn verification<E: std::fmt::Display>(
    ca: &CaCertificate,
    result: Result<(), E>,
) -> Verification {
    Verification {
        ca: ca.name().to_owned(),
        ca_fingerprint: hex(&ca.fingerprint()),
        ok: result.is_ok(),
        error: result.err().map(|e| e.to_string()),
    }
}

fn seconds_until(at: u64, now: u64) -> i64 {
    i64::try_from(at)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(now).unwrap_or(i64::MAX))
}

/// The text `weft cert print` prints.
pub fn render(info: &CertInfo) -> String {
    let kind = match info.kind {
        "node" => "node certificate",
        "ca" => "CA certificate",
        _ => "revocation list",
    };
    let mut rows: Vec<(&str, String)> = vec![("name", info.name.clone())];
    if let Some(id) = &info.node_id {
        rows.push(("node id", id.clone()));
    }
    if let Some(v6) = &info.overlay_ipv6 {
        rows.push(("overlay IPv6", v6.clone()));
    }
    if info.kind == "node" {
        rows.push((
            "overlay IPv4",
            info.overlay_ipv4.clone().unwrap_or_else(|| "none".into()),
        ));
    }
    if let Some(groups) = &info.groups {
        rows.push((
            "groups",
            if groups.is_empty() {
                "none".into()
            } else {
                groups.join(", ")
            },
        ));
    }
    if let Some(version) = info.version {
        rows.push(("version", version.to_string()));
        rows.push(("issued", utc(info.not_before)));
    }
    if let Some(not_after) = info.not_after {
        let left = info.expires_in_secs.unwrap_or(0);
        let when = if left > 0 {
            format!("expires in {}", human_duration(left.unsigned_abs()))
        } else {
            format!("EXPIRED {} ago", human_duration(left.unsigned_abs()))
        };
        rows.push((
            "valid",
            format!("{} to {} ({when})", utc(info.not_before), utc(not_after)),
        ));
    }
    if info.kind == "ca" {
        rows.push(("fingerprint", info.fingerprint.clone()));
    } else {
        rows.push(("issuer", info.issuer.clone()));
        rows.push(("fingerprint", info.fingerprint.clone()));
    }
    if let Some(key) = &info.public_key {
        rows.push(("public key", key.clone()));
    }
    if let Some(revoked) = &info.revoked {
        rows.push((
            "revokes",
            if revoked.is_empty() {
                "nothing".into()
            } else {
                revoked.join("\n")
            },
        ));
    }
    if let Some(v) = &info.verification {
        let verdict = match &v.error {
            None => format!("yes, under CA '{}' ({})", v.ca, &v.ca_fingerprint[..16]),
            Some(error) => format!("NO, under CA '{}': {error}", v.ca),
        };
        rows.push(("verifies", verdict));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{kind}\n");
    for (key, value) in rows {
        let mut lines = value.lines();
        out.push_str(&format!(
            "  {key:<width$}  {}\n",
            lines.next().unwrap_or_default()
        ));
        for more in lines {
            out.push_str(&format!("  {:<width$}  {more}\n", ""));
        }
    }
    out
}

/// Unix seconds as UTC, `2026-12-07 12:00:00 UTC`.
pub fn utc(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A duration in days, hours or minutes: `364 days`, `5 h`, `12 min`.
pub fn human_duration(secs: u64) -> String {
    match secs {
        0..3600 => format!("{} min", secs / 60),
        3600..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(human_duration(59), "0 min");
        assert_eq!(human_duration(7200), "2 h");
        assert_eq!(human_duration(365 * 86_400), "365 days");
    }
}
