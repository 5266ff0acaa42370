//! The incremental decoder: bytes go in as the socket delivers them, whole frames come out.

use super::frame::{read_body, read_body_owned, read_prelude, Frame, FrameError};
use super::{MAX_FRAME_LEN, PRELUDE_LEN};

/// Capacity the buffer may keep once it is empty: a frame larger than this (a big publish)
/// does not leave its memory behind with the connection.
const KEPT_CAPACITY: usize = 64 * 1024;

/// Buffers bytes until a whole frame has arrived.
///
/// A prelude is checked as soon as its 12 bytes are in, so a frame that announces more than
/// the decoder's limit ([`MAX_FRAME_LEN`] unless [`set_max_frame_len`](Self::set_max_frame_len)
/// lowered it) is refused before its body is buffered. The first error is sticky: a decode
/// error is fatal to the connection (§2), and every later call returns it again. The buffer
/// holds what [`push`](Self::push) gave and [`next_frame`](Self::next_frame) has not taken
/// yet, so the caller drains frames after each read.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`.
    start: usize,
    failed: Option<FrameError>,
    /// The largest frame taken now, at most [`MAX_FRAME_LEN`].
    max_frame_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            failed: None,
            max_frame_len: MAX_FRAME_LEN,
        }
    }

    /// Takes frames of at most `len` bytes from now on (never more than [`MAX_FRAME_LEN`]):
    /// a server keeps an unauthenticated peer to a small frame, so that it cannot make the
    /// server buffer 24 MiB before saying who it is. A frame over the limit fails with
    /// [`FrameError::OverLimit`], checked on its prelude like every other length.
    pub fn set_max_frame_len(&mut self, len: usize) {
        self.max_frame_len = len.min(MAX_FRAME_LEN);
    }

    /// The largest frame taken now.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
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
        if prelude.total_length > self.max_frame_len {
            return Err(FrameError::OverLimit {
                total_length: prelude.total_length,
                limit: self.max_frame_len,
            });
        }
        if pending.len() < prelude.total_length {
            self.buf
                .reserve(prelude.total_length.saturating_sub(pending.len()));
            return Ok(None);
        }
        if self.start == 0 && self.buf.len() == prelude.total_length {
            // The buffer holds this frame and nothing else (how a large frame ends): its
            // payload keeps the buffer rather than being copied out of it.
            let frame = read_body_owned(std::mem::take(&mut self.buf), prelude)?;
            return Ok(Some(frame));
        }
        let frame = read_body(&pending[..prelude.total_length], prelude)?;
        self.start += prelude.total_length;
        if self.start == self.buf.len() {
            if self.buf.capacity() > KEPT_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
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
    fn a_lowered_limit_refuses_a_frame_on_its_prelude() {
        let big = Frame::new(vec![], vec![7; 1000]).unwrap().encode();
        let mut decoder = Decoder::new();
        decoder.set_max_frame_len(512);
        decoder.push(&big[..PRELUDE_LEN]);
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::OverLimit {
                total_length: big.len(),
                limit: 512
            })
        );
        // A frame within the limit passes, and the limit can be raised again, never past
        // the protocol's.
        let mut decoder = Decoder::new();
        decoder.set_max_frame_len(2000);
        decoder.push(&big);
        assert_eq!(
            decoder.next_frame().unwrap().map(|f| f.payload().len()),
            Some(1000)
        );
        decoder.set_max_frame_len(usize::MAX);
        assert_eq!(decoder.max_frame_len(), MAX_FRAME_LEN);
    }

    #[test]
    fn a_frame_alone_in_the_buffer_is_decoded_in_place_like_any_other() {
        for frame in frames() {
            let mut decoder = Decoder::new();
            decoder.push(&frame.encode());
            assert_eq!(decoder.next_frame().unwrap(), Some(frame));
            assert_eq!(decoder.buffered_len(), 0);
            assert_eq!(decoder.next_frame().unwrap(), None);
        }
        let mut bad = frames()[2].encode();
        bad[20] ^= 1;
        let mut decoder = Decoder::new();
        decoder.push(&bad);
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::MessageCrc { .. })
        ));
        assert!(decoder.has_failed());
    }

    #[test]
    fn a_large_frame_leaves_no_large_buffer_behind() {
        let big = Frame::new(vec![], vec![7; 4 * KEPT_CAPACITY])
            .unwrap()
            .encode();
        let mut decoder = Decoder::new();
        decoder.push(&big);
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(decoder.buf.capacity() <= KEPT_CAPACITY);
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
