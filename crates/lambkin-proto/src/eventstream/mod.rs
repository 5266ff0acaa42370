//! AWS event-stream framing (`vnd.amazon.eventstream`, `greengrass-ipc.md` §2): the bytes under
//! Greengrass IPC. A frame is a 12-byte prelude (`total_length`, `headers_length`, the prelude's
//! CRC-32), header records, an opaque payload and a CRC-32 of everything before it. All
//! integers are big-endian; the CRC is plain CRC-32 (zlib's), not CRC-32C.
//!
//! - [`Frame`]: a frame within every limit; [`Frame::encode`] cannot fail, [`Frame::new`]
//!   checks the limits, [`Frame::decode`] reads exactly one frame.
//! - [`Decoder`]: the incremental reader for a socket.
//! - [`Header`], [`HeaderValue`]: one variant per wire type, so frames re-encode byte for byte.
//!
//! The limits are aws-c-event-stream's, which both SDK clients enforce.

mod decoder;
mod frame;
mod header;

pub use decoder::Decoder;
pub use frame::{EncodeError, Frame, FrameError};
pub use header::{Header, HeaderType, HeaderValue};

/// The prelude: `total_length`, `headers_length`, prelude CRC.
pub const PRELUDE_LEN: usize = 12;
/// The message CRC at the end of every frame.
pub const TRAILER_LEN: usize = 4;
/// The smallest frame: a prelude and a message CRC.
pub const MIN_FRAME_LEN: usize = PRELUDE_LEN + TRAILER_LEN;
/// The largest frame, 24 MiB (`AWS_EVENT_STREAM_MAX_MESSAGE_SIZE`). The headers block has the
/// same limit, which a frame within this one always meets.
pub const MAX_FRAME_LEN: usize = 24 * 1024 * 1024;
/// The longest header name in bytes (the length is one byte; names are never empty).
pub const MAX_NAME_LEN: usize = 255;
/// The longest STRING or BYTE_BUF value: `INT16_MAX`, although the length field is a u16.
pub const MAX_VALUE_LEN: usize = i16::MAX as usize;
/// The most headers one frame may carry.
pub const MAX_HEADERS: usize = 1024;
