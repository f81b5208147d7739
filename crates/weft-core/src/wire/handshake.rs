//! The payload each side puts inside its Noise handshake message.
//!
//! `[payload version (2)][timestamp (8)][certificate length (2)][certificate][padding]`.
//! The timestamp is the sender's wall clock in nanoseconds since the unix
//! epoch, strictly increasing per sender; a responder rejects an init whose
//! timestamp is not newer than the last one it accepted from that node, so a
//! captured init cannot be replayed. The padding is zero bytes: an initiator
//! pads its init so that the response it asks for is not larger (no
//! amplification, PROTOCOL §3.4).

use super::{DecodeError, read_u16, read_u64};

const PAYLOAD_VERSION: u8 = 2;
/// Bytes of a payload besides the certificate and the padding.
pub const PAYLOAD_FIXED_LEN: usize = 11;

/// A decoded handshake payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakePayload<'a> {
    /// Sender's wall clock, nanoseconds since the unix epoch.
    pub timestamp: u64,
    /// The sender's encoded certificate.
    pub certificate: &'a [u8],
    /// Zero bytes after the certificate.
    pub padding: usize,
}

impl<'a> HandshakePayload<'a> {
    /// Decodes a payload. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(&version) = bytes.first() else {
            return Err(DecodeError::Truncated("handshake payload"));
        };
        if version != PAYLOAD_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let timestamp = read_u64(bytes, 1).ok_or(DecodeError::Truncated("handshake payload"))?;
        let len = read_u16(bytes, 9).ok_or(DecodeError::Truncated("handshake payload"))? as usize;
        let certificate = bytes
            .get(11..11 + len)
            .ok_or(DecodeError::Truncated("handshake certificate"))?;
        let padding = &bytes[11 + len..];
        if padding.iter().any(|&b| b != 0) {
            return Err(DecodeError::Reserved);
        }
        Ok(Self {
            timestamp,
            certificate,
            padding: padding.len(),
        })
    }

    /// Appends the encoded payload. Certificates are far below 64 KiB; a
    /// longer one is cut to the length field's range and will not verify.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let len = self.certificate.len().min(u16::MAX as usize);
        out.push(PAYLOAD_VERSION);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&self.certificate[..len]);
        out.resize(out.len() + self.padding, 0);
    }

    /// Length of the encoded payload.
    pub fn encoded_len(&self) -> usize {
        PAYLOAD_FIXED_LEN + self.certificate.len().min(u16::MAX as usize) + self.padding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let payload = HandshakePayload {
            timestamp: 42,
            certificate: b"cert",
            padding: 3,
        };
        let mut out = Vec::new();
        payload.emit(&mut out);
        assert_eq!(out.len(), payload.encoded_len());
        assert_eq!(HandshakePayload::decode(&out), Ok(payload));
        out.push(1);
        assert_eq!(HandshakePayload::decode(&out), Err(DecodeError::Reserved));
        assert!(HandshakePayload::decode(&out[..5]).is_err());
    }
}
