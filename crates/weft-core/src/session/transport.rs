//! Transport keys of an established session: seal and open data packets.
//!
//! The nonce is four zero bytes and the counter (big-endian); the
//! associated data is the 16-byte outer header, so the receiver index and
//! counter cannot be altered in flight. Sealing and opening work in place on
//! the caller's buffer.

use std::time::Instant;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use super::ReplayWindow;
use crate::wire::{DATA_HEADER_LEN, SessionIndex, TAG_LEN, write_data_header};

/// Why a data packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// The counter was seen before or is too old.
    Replayed,
    /// Authentication failed.
    Decrypt,
}

pub(crate) struct Transport {
    pub(crate) local: SessionIndex,
    pub(crate) remote: SessionIndex,
    send: LessSafeKey,
    recv: LessSafeKey,
    next_counter: u64,
    replay: ReplayWindow,
    pub(crate) created: Instant,
    pub(crate) initiator: bool,
    /// Whether the peer has proven it holds the keys (the responder waits
    /// for the first packet from the initiator before sending).
    pub(crate) confirmed: bool,
    /// When a packet last opened on this session.
    pub(crate) last_received: Option<Instant>,
}

impl Transport {
    pub(crate) fn new(
        now: Instant,
        local: SessionIndex,
        remote: SessionIndex,
        keys: ([u8; 32], [u8; 32]),
        initiator: bool,
    ) -> Self {
        // snow's split: the first key encrypts initiator to responder.
        let (send, recv) = if initiator {
            (keys.0, keys.1)
        } else {
            (keys.1, keys.0)
        };
        Self {
            local,
            remote,
            send: aead_key(&send),
            recv: aead_key(&recv),
            next_counter: 0,
            replay: ReplayWindow::new(),
            created: now,
            initiator,
            confirmed: initiator,
            last_received: None,
        }
    }

    /// Packets sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.next_counter
    }

    /// Seals `buf[DATA_HEADER_LEN..]` (a frame) in place: writes the header
    /// into the first [`DATA_HEADER_LEN`] bytes and appends the tag.
    pub(crate) fn seal(&mut self, buf: &mut Vec<u8>) {
        let counter = self.next_counter;
        self.next_counter += 1;
        let (header, body) = buf.split_at_mut(DATA_HEADER_LEN);
        let header: &mut [u8; DATA_HEADER_LEN] =
            header.try_into().unwrap_or_else(|_| unreachable!());
        write_data_header(header, self.remote, counter);
        // Sealing only fails for inputs over ring's size limit (far above a
        // UDP datagram), so the error arm cannot run; leaving the tag out
        // would make the receiver drop the packet.
        if let Ok(tag) =
            self.send
                .seal_in_place_separate_tag(nonce(counter), Aad::from(&header[..]), body)
        {
            buf.extend_from_slice(tag.as_ref());
        }
    }

    /// Opens a data packet in place; returns the frame's range in `packet`.
    pub(crate) fn open(
        &mut self,
        counter: u64,
        packet: &mut [u8],
    ) -> Result<std::ops::Range<usize>, OpenError> {
        if !self.replay.check(counter) {
            return Err(OpenError::Replayed);
        }
        let (header, body) = packet.split_at_mut(DATA_HEADER_LEN);
        let plain = self
            .recv
            .open_in_place(nonce(counter), Aad::from(&header[..]), body)
            .map_err(|_| OpenError::Decrypt)?;
        let len = plain.len();
        self.replay.accept(counter);
        self.confirmed = true;
        Ok(DATA_HEADER_LEN..DATA_HEADER_LEN + len)
    }
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always valid for ChaCha20-Poly1305.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).unwrap_or_else(|_| unreachable!()))
}

fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

const _: () = assert!(TAG_LEN == 16);

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some base instant; only offsets matter
mod tests {
    use super::*;

    fn pair(now: Instant) -> (Transport, Transport) {
        let keys = ([1u8; 32], [2u8; 32]);
        let a = Transport::new(now, SessionIndex(1), SessionIndex(2), keys, true);
        let b = Transport::new(now, SessionIndex(2), SessionIndex(1), keys, false);
        (a, b)
    }

    fn sealed(t: &mut Transport, body: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; DATA_HEADER_LEN];
        buf.extend_from_slice(body);
        t.seal(&mut buf);
        buf
    }

    fn counter_of(packet: &[u8]) -> u64 {
        u64::from_be_bytes(packet[8..16].try_into().unwrap())
    }

    #[test]
    fn sealed_packet_opens_once() {
        let (mut a, mut b) = pair(Instant::now());
        let packet = sealed(&mut a, b"hello");
        let mut copy = packet.clone();
        let range = b.open(counter_of(&packet), &mut copy).unwrap();
        assert_eq!(&copy[range], b"hello");
        let mut again = packet.clone();
        assert_eq!(
            b.open(counter_of(&packet), &mut again),
            Err(OpenError::Replayed)
        );
    }

    #[test]
    fn altered_header_or_body_fails_to_open() {
        let (mut a, mut b) = pair(Instant::now());
        let packet = sealed(&mut a, b"hello");
        for at in [5, 9, 17, packet.len() - 1] {
            let mut bad = packet.clone();
            bad[at] ^= 1;
            assert_eq!(
                b.open(counter_of(&bad), &mut bad),
                Err(OpenError::Decrypt),
                "byte {at}"
            );
        }
        // A forged packet did not move the window: the real one still opens.
        let mut good = packet.clone();
        assert!(b.open(0, &mut good).is_ok());
    }

    #[test]
    fn responder_is_confirmed_by_first_packet() {
        let (mut a, mut b) = pair(Instant::now());
        assert!(!b.confirmed);
        let mut packet = sealed(&mut a, b"x");
        b.open(0, &mut packet).unwrap();
        assert!(b.confirmed);
    }
}
