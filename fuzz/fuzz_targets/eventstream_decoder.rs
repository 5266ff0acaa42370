//! The event-stream decoder on arbitrary bytes. The first byte chooses a chunk size; the rest
//! is the stream. Whatever the bytes, the decoder must not panic, must reach the same frames
//! and the same end however the stream is split, and every frame it yields must re-encode to
//! exactly the bytes it came from.

#![no_main]

use lambkin_proto::eventstream::{Decoder, Frame, FrameError};
use libfuzzer_sys::fuzz_target;

/// The frames of `bytes` pushed `chunk` bytes at a time, then how decoding stopped: bytes
/// left over, or the error.
fn replay(bytes: &[u8], chunk: usize) -> (Vec<Frame>, Result<usize, FrameError>) {
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    assert!(decoder.has_failed());
                    return (frames, Err(e));
                }
            }
        }
    }
    let left = decoder.buffered_len();
    (frames, Ok(left))
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let whole = replay(bytes, bytes.len());
    let split = replay(bytes, usize::from(chunk % 32) + 1);
    assert_eq!(whole, split, "the split changed what the decoder made");

    let (frames, end) = whole;
    let mut consumed = Vec::new();
    for frame in &frames {
        let encoded = frame.encode();
        assert_eq!(encoded.len(), frame.encoded_len());
        assert_eq!(Frame::decode(&encoded).as_ref(), Ok(frame));
        consumed.extend_from_slice(&encoded);
    }
    assert_eq!(
        consumed,
        bytes[..consumed.len()],
        "frames re-encode to their bytes"
    );
    if let Ok(left) = end {
        assert_eq!(consumed.len() + left, bytes.len());
    }

    // One frame decoded directly agrees with the streaming decoder.
    match Frame::decode(bytes) {
        Ok(frame) => assert_eq!(frames.first(), Some(&frame)),
        Err(_) => assert!(frames.len() != 1 || !matches!(end, Ok(0))),
    }
});
