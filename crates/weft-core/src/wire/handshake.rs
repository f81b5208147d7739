//! The payload each side puts inside its Noise handshake message.
//!
//! `[payload version (1)][timestamp (8)][certificate length (2)][certificate]`.
//! The timestamp is the sender's wall clock in nanoseconds since the unix
//! epoch, strictly increasing per sender; a responder rejects an init whose
//! timestamp is not newer than the last one it accepted from that node, so a
//! captured init cannot be replayed.

use super::{DecodeError, read_u16, read_u64};

const PAYLOAD_VERSION: u8 = 1;

/// A decoded handshake payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakePayload<'a> {
    /// Sender's wall clock, nanoseconds since the unix epoch.
    pub timestamp: u64,
    /// The sender's encoded certificate.
    pub certificate: &'a [u8],
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
        if bytes.len() != 11 + len {
            return Err(DecodeError::Reserved);
        }
        Ok(Self {
            timestamp,
            certificate,
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
        };
        let mut out = Vec::new();
        payload.emit(&mut out);
        assert_eq!(HandshakePayload::decode(&out), Ok(payload));
        out.push(0);
        assert_eq!(HandshakePayload::decode(&out), Err(DecodeError::Reserved));
        assert!(HandshakePayload::decode(&out[..5]).is_err());
    }
}
