//! The head that flooded signed records share (link state, membership):
//! version (1), certificate length (2) and certificate, sequence (8),
//! lifetime in seconds (2), entry count (2). Each record type follows it
//! with its own entries and a 64-byte signature.

use super::{DecodeError, read_u16, read_u64};

/// The version byte of both record types.
pub(crate) const RECORD_VERSION: u8 = 1;

/// A decoded head, borrowing the certificate.
pub(crate) struct RecordHead<'a> {
    pub(crate) certificate: &'a [u8],
    pub(crate) sequence: u64,
    pub(crate) lifetime_secs: u16,
    /// Entries announced.
    pub(crate) count: usize,
    /// Where the entries start.
    pub(crate) body_at: usize,
}

impl<'a> RecordHead<'a> {
    /// Decodes the head of `bytes`; `what` and `certificate_what` name the
    /// record in errors. Total.
    pub(crate) fn decode(
        bytes: &'a [u8],
        what: &'static str,
        certificate_what: &'static str,
    ) -> Result<Self, DecodeError> {
        let Some(&version) = bytes.first() else {
            return Err(DecodeError::Truncated(what));
        };
        if version != RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let cert_len = usize::from(read_u16(bytes, 1).ok_or(DecodeError::Truncated(what))?);
        let certificate = bytes
            .get(3..3 + cert_len)
            .ok_or(DecodeError::Truncated(certificate_what))?;
        let at = 3 + cert_len;
        let sequence = read_u64(bytes, at).ok_or(DecodeError::Truncated(what))?;
        let lifetime_secs = read_u16(bytes, at + 8).ok_or(DecodeError::Truncated(what))?;
        let count = usize::from(read_u16(bytes, at + 10).ok_or(DecodeError::Truncated(what))?);
        Ok(Self {
            certificate,
            sequence,
            lifetime_secs,
            count,
            body_at: at + 12,
        })
    }

    /// Appends a head for `count` entries (the certificate cut at 65,535
    /// bytes, which no real certificate reaches).
    pub(crate) fn emit(
        out: &mut Vec<u8>,
        certificate: &[u8],
        sequence: u64,
        lifetime_secs: u16,
        count: u16,
    ) {
        let cert_len = certificate.len().min(u16::MAX as usize);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&(cert_len as u16).to_be_bytes());
        out.extend_from_slice(&certificate[..cert_len]);
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&lifetime_secs.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
    }
}
