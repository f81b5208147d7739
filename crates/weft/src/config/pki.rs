//! The `[pki]` section of the config file: what this node refuses beyond
//! what the CA file says.
//!
//! `revocations` names a revocation list file (written by `weft ca
//! revoke`); the node refuses the certificates it revokes and passes it on
//! to its peers, and takes newer lists from them. `blocklist` lists
//! certificate fingerprints (64 hex digits, as `weft cert print` shows)
//! this node refuses whatever any list says; it stays local. The list file
//! is read, and checked against the CA, by [`super::Config::node_config`],
//! with errors that point at `pki.revocations`.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, ConfigPath, Source};

/// `[pki]`, checked.
#[derive(Debug, Clone, Default)]
pub struct PkiSection {
    /// The revocation list file, if any.
    pub revocations: Option<ConfigPath>,
    /// Certificate fingerprints refused locally.
    pub blocklist: Vec<[u8; 32]>,
}

/// `[pki]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPki {
    revocations: Option<Spanned<String>>,
    blocklist: Option<Vec<Spanned<String>>>,
}

impl RawPki {
    pub(super) fn check(
        &self,
        source: &Source<'_>,
        base: &Path,
    ) -> Result<PkiSection, ConfigError> {
        let revocations = match &self.revocations {
            None => None,
            Some(value) if value.get_ref().trim().is_empty() => {
                return Err(source.error(&value.span(), "pki.revocations", "empty path"));
            }
            Some(value) => {
                let (line, column) = source.line_column(value.span().start);
                Some(ConfigPath {
                    path: base.join(value.get_ref()),
                    key: "pki.revocations",
                    line,
                    column,
                })
            }
        };
        let mut blocklist: Vec<[u8; 32]> = Vec::new();
        for (i, entry) in self.blocklist.iter().flatten().enumerate() {
            let key = format!("pki.blocklist[{i}]");
            let fingerprint = parse_fingerprint(entry.get_ref()).ok_or_else(|| {
                source.error(
                    &entry.span(),
                    key.as_str(),
                    format!(
                        "'{}' is not a certificate fingerprint (64 hex digits, as `weft cert print` shows)",
                        entry.get_ref()
                    ),
                )
            })?;
            if let Some(first) = blocklist.iter().position(|f| *f == fingerprint) {
                return Err(source.error(
                    &entry.span(),
                    key,
                    format!("the same fingerprint as pki.blocklist[{first}]"),
                ));
            }
            blocklist.push(fingerprint);
        }
        Ok(PkiSection {
            revocations,
            blocklist,
        })
    }
}

/// 64 hex digits (either case) as 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;

    const MINIMAL: &str =
        "[node]\nkey = \"node.key\"\ncertificate = \"node.crt\"\nca = \"ca.crt\"\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("/etc/weft/weft.toml"),
            &format!("{MINIMAL}{extra}"),
        )
    }

    #[test]
    fn the_section_names_a_list_file_and_a_blocklist() {
        let config = parse(&format!(
            "[pki]\nrevocations = \"revocations.crl\"\nblocklist = [\"{}\", \"{}\"]\n",
            "ab".repeat(32),
            "CD".repeat(32)
        ))
        .unwrap();
        assert_eq!(
            config.pki.revocations.as_ref().unwrap().path,
            PathBuf::from("/etc/weft/revocations.crl")
        );
        assert_eq!(config.pki.blocklist, [[0xab; 32], [0xcd; 32]]);
        let none = parse("").unwrap();
        assert!(none.pki.revocations.is_none() && none.pki.blocklist.is_empty());
    }

    #[test]
    fn mistakes_are_located() {
        for (extra, expected) in [
            (
                "[pki]\nblocklist = [\"abc\"]\n".to_owned(),
                "weft.toml:6:14: pki.blocklist[0]: 'abc' is not a certificate fingerprint",
            ),
            (
                format!("[pki]\nblocklist = [\"{0}\", \"{0}\"]\n", "00".repeat(32)),
                "pki.blocklist[1]: the same fingerprint as pki.blocklist[0]",
            ),
            (
                "[pki]\nrevocations = \"\"\n".to_owned(),
                "weft.toml:6:15: pki.revocations: empty path",
            ),
            ("[pki]\nrevoke = \"x\"\n".to_owned(), "pki.revoke"),
        ] {
            let message = parse(&extra).unwrap_err().to_string();
            assert!(message.contains(expected), "{extra:?}: {message}");
        }
    }
}
