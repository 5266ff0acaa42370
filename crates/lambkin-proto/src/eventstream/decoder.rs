//! The incremental decoder: bytes go in as the socket delivers them, whole frames come out.

use super::frame::{read_body, read_prelude, Frame, FrameError};
use super::PRELUDE_LEN;

/// Buffers bytes until a whole frame has arrived.
///
/// A prelude is checked as soon as its 12 bytes are in, so a frame that announces more than
/// [`MAX_FRAME_LEN`](super::MAX_FRAME_LEN) is refused before its body is buffered. The first
/// error is sticky: a decode error is fatal to the connection (§2), and every later call
/// returns it again. The buffer holds what [`push`](Self::push) gave and
/// [`next_frame`](Self::next_frame) has not taken yet, so the caller drains frames after each
/// read.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the peer. Ignored once the decoder has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.try_next() {
            Ok(frame) => Ok(frame),
            Err(error) => {
                self.buf = Vec::new();
                self.start = 0;
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    fn try_next(&mut self) -> Result<Option<Frame>, FrameError> {
        let pending = &self.buf[self.start..];
        if pending.len() < PRELUDE_LEN {
            return Ok(None);
        }
        let prelude = read_prelude(pending)?;
        if pending.len() < prelude.total_length {
            self.buf
                .reserve(prelude.total_length.saturating_sub(pending.len()));
            return Ok(None);
        }
        let frame = read_body(&pending[..prelude.total_length], prelude)?;
        self.start += prelude.total_length;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(frame))
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether the decoder has hit an error (and so will only ever return it).
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::Header;
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::new(vec![Header::int32(":stream-id", 1)], b"{}".to_vec()).unwrap(),
            Frame::new(vec![], vec![]).unwrap(),
            Frame::new(vec![Header::string("operation", "op")], vec![7; 300]).unwrap(),
        ]
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let bytes: Vec<u8> = frames().iter().flat_map(Frame::encode).collect();
        for chunk in [1, 2, 3, 11, 12, 13, 64, bytes.len()] {
            let mut decoder = Decoder::new();
            let mut out = Vec::new();
            for piece in bytes.chunks(chunk) {
                decoder.push(piece);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    out.push(frame);
                }
            }
            assert_eq!(out, frames(), "chunk {chunk}");
            assert_eq!(decoder.buffered_len(), 0);
        }
    }

    #[test]
    fn an_oversized_prelude_fails_before_the_body_arrives() {
        let total: u32 = 24 * 1024 * 1024 + 1;
        let mut prelude = total.to_be_bytes().to_vec();
        prelude.extend(0u32.to_be_bytes());
        let crc = crc32fast::hash(&prelude);
        prelude.extend(crc.to_be_bytes());
        let mut decoder = Decoder::new();
        decoder.push(&prelude);
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::FrameTooLong {
                total_length: total
            })
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut bytes = frames()[0].encode();
        bytes[20] ^= 0x55;
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        let first = decoder.next_frame();
        assert!(matches!(first, Err(FrameError::MessageCrc { .. })));
        decoder.push(&frames()[1].encode());
        assert_eq!(decoder.next_frame(), first);
        assert!(decoder.has_failed());
        assert_eq!(decoder.buffered_len(), 0);
    }
}
