//! The head that flooded signed records share (link state, membership):
//! version (1), the origin's certificate fingerprint (32), sequence (8),
//! lifetime in seconds (2), entry count (2). Each record type follows it
//! with its own entries and a 64-byte signature.
//!
//! The fingerprint (BLAKE3 of the encoded certificate,
//! `Certificate::fingerprint`) names the certificate instead of carrying
//! it: a certificate is sent once to each node that lacks it (PROTOCOL
//! §6.1), not inside every record every refresh, and a renewed certificate
//! has another fingerprint, so receivers fetch it.

use super::{DecodeError, read_u16, read_u64};

/// The version byte of both record types (1 carried the certificate).
pub(crate) const RECORD_VERSION: u8 = 2;
/// Bytes of a certificate fingerprint.
pub const FINGERPRINT_LEN: usize = 32;
/// Bytes of the head.
pub(crate) const HEAD_LEN: usize = 1 + FINGERPRINT_LEN + 8 + 2 + 2;

/// A decoded head, borrowing the fingerprint.
pub(crate) struct RecordHead<'a> {
    pub(crate) certificate: &'a [u8; FINGERPRINT_LEN],
    pub(crate) sequence: u64,
    pub(crate) lifetime_secs: u16,
    /// Entries announced.
    pub(crate) count: usize,
    /// Where the entries start.
    pub(crate) body_at: usize,
}

impl<'a> RecordHead<'a> {
    /// Decodes the head of `bytes`; `what` names the record in errors.
    /// Total.
    pub(crate) fn decode(bytes: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        let Some(&version) = bytes.first() else {
            return Err(DecodeError::Truncated(what));
        };
        if version != RECORD_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let certificate = bytes
            .get(1..1 + FINGERPRINT_LEN)
            .and_then(|f| <&[u8; FINGERPRINT_LEN]>::try_from(f).ok())
            .ok_or(DecodeError::Truncated(what))?;
        let at = 1 + FINGERPRINT_LEN;
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

    /// Appends a head for `count` entries.
    pub(crate) fn emit(
        out: &mut Vec<u8>,
        certificate: &[u8; FINGERPRINT_LEN],
        sequence: u64,
        lifetime_secs: u16,
        count: u16,
    ) {
        out.push(RECORD_VERSION);
        out.extend_from_slice(certificate);
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&lifetime_secs.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
    }
}
