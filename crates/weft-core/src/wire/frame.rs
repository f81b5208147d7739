//! Frames: what the encrypted body of a data packet carries.
//!
//! A frame is one kind byte and a body. Unknown kinds are an error, so an
//! older node drops (and counts) frames a newer one invents.

use super::{DecodeError, read_u64};

/// Frame kind byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// An IPv4 or IPv6 packet for the receiver's TUN.
    Ip = 1,
    /// Empty: keeps NAT mappings open and confirms a new session.
    Keepalive = 2,
    /// Asks for a [`FrameKind::Pong`] with the same id (RTT measurement).
    Ping = 3,
    /// Answers a ping.
    Pong = 4,
}

/// A decoded frame, borrowing its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An IP packet.
    Ip(&'a [u8]),
    /// A keepalive.
    Keepalive,
    /// A ping with its id.
    Ping {
        /// Echoed in the pong.
        id: u64,
    },
    /// A pong with the id of the ping it answers.
    Pong {
        /// The ping's id.
        id: u64,
    },
}

impl<'a> Frame<'a> {
    /// Decodes a frame. Total.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((&kind, body)) = bytes.split_first() else {
            return Err(DecodeError::Truncated("frame"));
        };
        match kind {
            k if k == FrameKind::Ip as u8 => {
                if body.is_empty() {
                    return Err(DecodeError::Truncated("ip frame"));
                }
                Ok(Frame::Ip(body))
            }
            k if k == FrameKind::Keepalive as u8 => {
                exact(body, 0, "keepalive frame")?;
                Ok(Frame::Keepalive)
            }
            k if k == FrameKind::Ping as u8 => {
                exact(body, 8, "ping frame")?;
                Ok(Frame::Ping {
                    id: read_u64(body, 0).ok_or(DecodeError::Truncated("ping frame"))?,
                })
            }
            k if k == FrameKind::Pong as u8 => {
                exact(body, 8, "pong frame")?;
                Ok(Frame::Pong {
                    id: read_u64(body, 0).ok_or(DecodeError::Truncated("pong frame"))?,
                })
            }
            other => Err(DecodeError::UnknownType {
                what: "frame",
                value: other,
            }),
        }
    }

    /// Appends the encoded frame to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Ip(packet) => {
                out.push(FrameKind::Ip as u8);
                out.extend_from_slice(packet);
            }
            Frame::Keepalive => out.push(FrameKind::Keepalive as u8),
            Frame::Ping { id } => {
                out.push(FrameKind::Ping as u8);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::Pong { id } => {
                out.push(FrameKind::Pong as u8);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
}

/// Fixed-size bodies must be exactly their size: one frame, one encoding.
fn exact(body: &[u8], len: usize, what: &'static str) -> Result<(), DecodeError> {
    match body.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated(what)),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes(what)),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        for frame in [
            Frame::Ip(b"\x45abc"),
            Frame::Keepalive,
            Frame::Ping { id: 9 },
            Frame::Pong { id: u64::MAX },
        ] {
            let mut out = Vec::new();
            frame.emit(&mut out);
            assert_eq!(Frame::decode(&out), Ok(frame));
        }
    }

    #[test]
    fn unknown_and_short_frames_are_errors() {
        assert_eq!(Frame::decode(&[]), Err(DecodeError::Truncated("frame")));
        assert_eq!(Frame::decode(&[1]), Err(DecodeError::Truncated("ip frame")));
        assert_eq!(
            Frame::decode(&[3, 0, 0]),
            Err(DecodeError::Truncated("ping frame"))
        );
        assert_eq!(
            Frame::decode(&[99]),
            Err(DecodeError::UnknownType {
                what: "frame",
                value: 99
            })
        );
    }
}
