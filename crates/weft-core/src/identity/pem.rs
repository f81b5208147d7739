//! PEM-style text armour for keys and certificates.
//!
//! Written by hand because the format is tiny (a label and base64 lines) and
//! the `pem` crate would add nothing but a dependency.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub(crate) const NODE_SECRET_KEY: &str = "WEFT NODE SECRET KEY";
pub(crate) const NODE_PUBLIC_KEY: &str = "WEFT NODE PUBLIC KEY";
pub(crate) const NODE_CERTIFICATE: &str = "WEFT NODE CERTIFICATE";
pub(crate) const CA_SECRET_KEY: &str = "WEFT CA SECRET KEY";
pub(crate) const CA_CERTIFICATE: &str = "WEFT CA CERTIFICATE";
pub(crate) const REVOCATION_LIST: &str = "WEFT REVOCATION LIST";

/// Why PEM text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum PemError {
    /// No `-----BEGIN LABEL-----` line for the expected label.
    #[error("no '-----BEGIN {0}-----' block found")]
    MissingBlock(&'static str),
    /// The block has no end line.
    #[error("'-----BEGIN {0}-----' block is not closed")]
    Unterminated(&'static str),
    /// The body is not base64.
    #[error("body is not valid base64")]
    Base64,
    /// The decoded body has the wrong size.
    #[error("decoded body is {found} bytes, expected {expected}")]
    Length {
        /// Expected size in bytes.
        expected: usize,
        /// Actual size in bytes.
        found: usize,
    },
}

pub(crate) fn encode(label: &str, bytes: &[u8]) -> String {
    let body = STANDARD.encode(bytes);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn decode(label: &'static str, text: &str) -> Result<Vec<u8>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut lines = text.lines().map(str::trim);
    if !lines.any(|line| line == begin) {
        return Err(PemError::MissingBlock(label));
    }
    let mut body = String::new();
    for line in lines {
        if line == end {
            return STANDARD
                .decode(body.as_bytes())
                .map_err(|_| PemError::Base64);
        }
        body.push_str(line);
    }
    Err(PemError::Unterminated(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_reads_what_encode_wrote_amid_other_text() {
        let text = format!(
            "# comment\n{}trailing",
            encode(NODE_CERTIFICATE, &[1, 2, 3, 250])
        );
        assert_eq!(decode(NODE_CERTIFICATE, &text).unwrap(), vec![1, 2, 3, 250]);
    }

    #[test]
    fn decode_rejects_wrong_label_and_garbage() {
        let text = encode(CA_CERTIFICATE, &[1]);
        assert_eq!(
            decode(NODE_CERTIFICATE, &text),
            Err(PemError::MissingBlock(NODE_CERTIFICATE))
        );
        let broken =
            "-----BEGIN WEFT CA CERTIFICATE-----\n!!!\n-----END WEFT CA CERTIFICATE-----\n";
        assert_eq!(decode(CA_CERTIFICATE, broken), Err(PemError::Base64));
        let open = "-----BEGIN WEFT CA CERTIFICATE-----\nAAAA\n";
        assert_eq!(
            decode(CA_CERTIFICATE, open),
            Err(PemError::Unterminated(CA_CERTIFICATE))
        );
    }
}
