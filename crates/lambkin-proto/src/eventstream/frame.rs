//! One frame: the 12-byte prelude, header records, payload and message CRC (§2). A [`Frame`]
//! always satisfies the limits, so encoding it cannot fail; building one from parts checks them.

use super::header::{Header, HeaderType, HeaderValue};
use super::{
    MAX_FRAME_LEN, MAX_HEADERS, MAX_NAME_LEN, MAX_VALUE_LEN, MIN_FRAME_LEN, PRELUDE_LEN,
    TRAILER_LEN,
};

/// A frame whose headers and payload are within every limit of §2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    headers: Vec<Header>,
    payload: Vec<u8>,
}

/// Why a frame cannot be built: a part breaks one of the limits that both SDK clients enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("header name must be 1 to {MAX_NAME_LEN} bytes, {name:?} is {len}")]
    NameLength { name: String, len: usize },
    #[error("header {name:?} holds {len} bytes, more than the {MAX_VALUE_LEN} a value may hold")]
    ValueTooLong { name: String, len: usize },
    #[error("{count} headers, more than the {MAX_HEADERS} a frame may carry")]
    TooManyHeaders { count: usize },
    #[error("frame would be {len} bytes, more than the {MAX_FRAME_LEN} allowed")]
    FrameTooLong { len: usize },
}

/// Why bytes are not a frame. Every one of these is fatal to the connection (§2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(
        "prelude CRC mismatch: frame says {expected:#010x}, its prelude hashes to {actual:#010x}"
    )]
    PreludeCrc { expected: u32, actual: u32 },
    #[error("message CRC mismatch: frame says {expected:#010x}, its bytes hash to {actual:#010x}")]
    MessageCrc { expected: u32, actual: u32 },
    #[error("total_length {total_length} is below the {MIN_FRAME_LEN}-byte minimum")]
    FrameTooShort { total_length: u32 },
    #[error("total_length {total_length} exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLong { total_length: u32 },
    /// Within the protocol's limit, but over the one the reader set for now
    /// ([`Decoder::set_max_frame_len`](super::Decoder::set_max_frame_len)).
    #[error("total_length {total_length} exceeds the {limit} bytes taken at this point")]
    OverLimit { total_length: usize, limit: usize },
    #[error("headers_length {headers_length} does not fit in a frame of {total_length} bytes")]
    HeadersTooLong {
        headers_length: u32,
        total_length: u32,
    },
    #[error("header record at offset {offset} runs past the end of the headers block")]
    HeaderTruncated { offset: usize },
    #[error("header at offset {offset} has an empty name")]
    EmptyHeaderName { offset: usize },
    #[error("header name at offset {offset} is not UTF-8")]
    HeaderNameNotUtf8 { offset: usize },
    #[error("header {name:?} has unknown type {code}")]
    UnknownHeaderType { name: String, code: u8 },
    #[error("header {name:?} holds {len} bytes, more than the {MAX_VALUE_LEN} a value may hold")]
    HeaderValueTooLong { name: String, len: usize },
    #[error("STRING header {name:?} is not UTF-8")]
    StringNotUtf8 { name: String },
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("frame is incomplete: {available} of {needed} bytes")]
    Incomplete { needed: usize, available: usize },
    #[error("{extra} bytes after the end of the frame")]
    TrailingBytes { extra: usize },
}

/// What the first 12 bytes of a frame say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prelude {
    pub total_length: usize,
    pub headers_length: usize,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

/// Checks a prelude (the CRC first, as aws-c-event-stream does, then the lengths).
/// `bytes` must hold at least [`PRELUDE_LEN`] bytes.
pub(crate) fn read_prelude(bytes: &[u8]) -> Result<Prelude, FrameError> {
    let total_length = be_u32(bytes, 0);
    let headers_length = be_u32(bytes, 4);
    let expected = be_u32(bytes, 8);
    let actual = crc32fast::hash(&bytes[..8]);
    if expected != actual {
        return Err(FrameError::PreludeCrc { expected, actual });
    }
    if (total_length as usize) < MIN_FRAME_LEN {
        return Err(FrameError::FrameTooShort { total_length });
    }
    if total_length as usize > MAX_FRAME_LEN {
        return Err(FrameError::FrameTooLong { total_length });
    }
    if headers_length as usize > total_length as usize - MIN_FRAME_LEN {
        return Err(FrameError::HeadersTooLong {
            headers_length,
            total_length,
        });
    }
    Ok(Prelude {
        total_length: total_length as usize,
        headers_length: headers_length as usize,
    })
}

/// Decodes the frame that `bytes` holds entirely (`bytes.len() == prelude.total_length`).
pub(crate) fn read_body(bytes: &[u8], prelude: Prelude) -> Result<Frame, FrameError> {
    let end = prelude.total_length;
    let expected = be_u32(bytes, end - TRAILER_LEN);
    let actual = crc32fast::hash(&bytes[..end - TRAILER_LEN]);
    if expected != actual {
        return Err(FrameError::MessageCrc { expected, actual });
    }
    let headers_end = PRELUDE_LEN + prelude.headers_length;
    let headers = read_headers(&bytes[PRELUDE_LEN..headers_end])?;
    let payload = bytes[headers_end..end - TRAILER_LEN].to_vec();
    Ok(Frame { headers, payload })
}

/// As [`read_body`], taking `bytes` (exactly the frame) and keeping its buffer for the
/// payload, so that a large frame is not held twice while it is decoded.
pub(crate) fn read_body_owned(mut bytes: Vec<u8>, prelude: Prelude) -> Result<Frame, FrameError> {
    let end = prelude.total_length;
    let expected = be_u32(&bytes, end - TRAILER_LEN);
    let actual = crc32fast::hash(&bytes[..end - TRAILER_LEN]);
    if expected != actual {
        return Err(FrameError::MessageCrc { expected, actual });
    }
    let headers_end = PRELUDE_LEN + prelude.headers_length;
    let headers = read_headers(&bytes[PRELUDE_LEN..headers_end])?;
    bytes.truncate(end - TRAILER_LEN);
    bytes.drain(..headers_end);
    Ok(Frame {
        headers,
        payload: bytes,
    })
}

fn read_headers(block: &[u8]) -> Result<Vec<Header>, FrameError> {
    let mut headers = Vec::new();
    let mut at = 0;
    while at < block.len() {
        if headers.len() == MAX_HEADERS {
            return Err(FrameError::TooManyHeaders);
        }
        let offset = PRELUDE_LEN + at;
        let truncated = FrameError::HeaderTruncated { offset };
        let name_len = block[at] as usize;
        if name_len == 0 {
            return Err(FrameError::EmptyHeaderName { offset });
        }
        let name_bytes = block
            .get(at + 1..at + 1 + name_len)
            .ok_or(truncated.clone())?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| FrameError::HeaderNameNotUtf8 { offset })?
            .to_owned();
        at += 1 + name_len;
        let code = *block.get(at).ok_or(truncated.clone())?;
        at += 1;
        let header_type = HeaderType::from_code(code).ok_or(FrameError::UnknownHeaderType {
            name: name.clone(),
            code,
        })?;
        let mut take = |n: usize| -> Result<&[u8], FrameError> {
            let bytes = block.get(at..at + n).ok_or(truncated.clone())?;
            at += n;
            Ok(bytes)
        };
        let value = match header_type {
            HeaderType::BoolTrue => HeaderValue::Bool(true),
            HeaderType::BoolFalse => HeaderValue::Bool(false),
            HeaderType::Byte => HeaderValue::Byte(i8::from_be_bytes(array(take(1)?))),
            HeaderType::Int16 => HeaderValue::Int16(i16::from_be_bytes(array(take(2)?))),
            HeaderType::Int32 => HeaderValue::Int32(i32::from_be_bytes(array(take(4)?))),
            HeaderType::Int64 => HeaderValue::Int64(i64::from_be_bytes(array(take(8)?))),
            HeaderType::Timestamp => HeaderValue::Timestamp(i64::from_be_bytes(array(take(8)?))),
            HeaderType::Uuid => HeaderValue::Uuid(array(take(16)?)),
            HeaderType::ByteBuf | HeaderType::String => {
                let len = u16::from_be_bytes(array(take(2)?)) as usize;
                if len > MAX_VALUE_LEN {
                    return Err(FrameError::HeaderValueTooLong { name, len });
                }
                let bytes = take(len)?.to_vec();
                if header_type == HeaderType::ByteBuf {
                    HeaderValue::ByteBuf(bytes)
                } else {
                    HeaderValue::String(
                        String::from_utf8(bytes)
                            .map_err(|_| FrameError::StringNotUtf8 { name: name.clone() })?,
                    )
                }
            }
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

/// Copies a slice whose length the caller has already fixed into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

impl Frame {
    /// A frame from its parts, checked against every limit of §2.
    pub fn new(headers: Vec<Header>, payload: Vec<u8>) -> Result<Self, EncodeError> {
        if headers.len() > MAX_HEADERS {
            return Err(EncodeError::TooManyHeaders {
                count: headers.len(),
            });
        }
        for header in &headers {
            let len = header.name.len();
            if len == 0 || len > MAX_NAME_LEN {
                return Err(EncodeError::NameLength {
                    name: header.name.clone(),
                    len,
                });
            }
            if let Some(len) = header.value.variable_len().filter(|&l| l > MAX_VALUE_LEN) {
                return Err(EncodeError::ValueTooLong {
                    name: header.name.clone(),
                    len,
                });
            }
        }
        let frame = Self { headers, payload };
        let len = frame.encoded_len();
        if len > MAX_FRAME_LEN {
            return Err(EncodeError::FrameTooLong { len });
        }
        Ok(frame)
    }

    /// Decodes exactly one frame that fills `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let incomplete = |needed| FrameError::Incomplete {
            needed,
            available: bytes.len(),
        };
        if bytes.len() < PRELUDE_LEN {
            return Err(incomplete(PRELUDE_LEN));
        }
        let prelude = read_prelude(bytes)?;
        match bytes.len().cmp(&prelude.total_length) {
            std::cmp::Ordering::Less => Err(incomplete(prelude.total_length)),
            std::cmp::Ordering::Greater => Err(FrameError::TrailingBytes {
                extra: bytes.len() - prelude.total_length,
            }),
            std::cmp::Ordering::Equal => read_body(bytes, prelude),
        }
    }

    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub fn into_parts(self) -> (Vec<Header>, Vec<u8>) {
        (self.headers, self.payload)
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.is_named(name))
            .map(|h| &h.value)
    }

    fn headers_len(&self) -> usize {
        self.headers.iter().map(Header::encoded_len).sum()
    }

    /// `total_length`: the bytes [`encode`](Self::encode) produces.
    pub fn encoded_len(&self) -> usize {
        PRELUDE_LEN + self.headers_len() + self.payload.len() + TRAILER_LEN
    }

    /// The frame on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.encode_head_into(out);
        out.extend_from_slice(&self.payload);
        let message_crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&message_crc.to_be_bytes());
    }

    /// The frame on the wire, built in the payload's own buffer: the same bytes as
    /// [`encode`](Self::encode), without a second copy of a large payload (the prelude and
    /// headers are moved in front of it).
    pub fn into_bytes(self) -> Vec<u8> {
        let mut head = Vec::with_capacity(PRELUDE_LEN + self.headers_len());
        self.encode_head_into(&mut head);
        let mut out = self.payload;
        out.reserve_exact(head.len() + TRAILER_LEN);
        out.splice(0..0, head);
        let message_crc = crc32fast::hash(&out);
        out.extend_from_slice(&message_crc.to_be_bytes());
        out
    }

    /// The prelude and the headers.
    fn encode_head_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // Both fit in u32: `new` and the decoder hold frames to MAX_FRAME_LEN.
        let total = self.encoded_len() as u32;
        let headers_len = self.headers_len() as u32;
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&headers_len.to_be_bytes());
        let prelude_crc = crc32fast::hash(&out[start..start + 8]);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        for header in &self.headers {
            header.encode_into(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc_frame(mut bytes: Vec<u8>) -> Vec<u8> {
        let prelude = crc32fast::hash(&bytes[..8]);
        bytes[8..12].copy_from_slice(&prelude.to_be_bytes());
        let n = bytes.len();
        let message = crc32fast::hash(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&message.to_be_bytes());
        bytes
    }

    /// Both CRCs are CRC-32 (IEEE) over the bytes before them, as the spec's own bytes for
    /// an empty message and for a one-byte payload show (computed outside the codec).
    #[test]
    fn frames_carry_the_ieee_crc32_of_their_prelude_and_message() {
        let empty = Frame::new(vec![], vec![]).unwrap().encode();
        assert_eq!(
            empty,
            [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]
        );
        let x = Frame::new(vec![], b"x".to_vec()).unwrap().encode();
        assert_eq!(
            x,
            [0, 0, 0, 0x11, 0, 0, 0, 0, 0x38, 0xa2, 0x61, 0x5b, b'x', 0xff, 0xaf, 0x52, 0x1b]
        );
        assert_eq!(Frame::decode(&x).unwrap().payload(), b"x");
    }

    #[test]
    fn into_bytes_is_encode_without_the_copy() {
        let frames = [
            Frame::new(vec![], vec![]).unwrap(),
            Frame::new(
                vec![Header::string(":content-type", "application/json")],
                b"{}".to_vec(),
            )
            .unwrap(),
            Frame::new(vec![Header::int32(":stream-id", 7)], vec![0xa5; 100_000]).unwrap(),
        ];
        for frame in frames {
            let encoded = frame.encode();
            assert_eq!(frame.clone().into_bytes(), encoded);
            assert_eq!(Frame::decode(&encoded).unwrap(), frame);
        }
    }

    #[test]
    fn empty_frame_is_sixteen_bytes() {
        let frame = Frame::new(vec![], vec![]).unwrap();
        let bytes = frame.encode();
        assert_eq!(bytes.len(), MIN_FRAME_LEN);
        assert_eq!(Frame::decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn new_enforces_limits() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            Frame::new(vec![Header::int32(long, 1)], vec![]),
            Err(EncodeError::NameLength { len: 256, .. })
        ));
        assert!(matches!(
            Frame::new(vec![Header::int32("", 1)], vec![]),
            Err(EncodeError::NameLength { len: 0, .. })
        ));
        let big = "v".repeat(MAX_VALUE_LEN + 1);
        assert!(matches!(
            Frame::new(vec![Header::string("s", big)], vec![]),
            Err(EncodeError::ValueTooLong { len: 32768, .. })
        ));
        let ok = "v".repeat(MAX_VALUE_LEN);
        assert!(Frame::new(vec![Header::string("s", ok)], vec![]).is_ok());
        let many = vec![Header::new("b", HeaderValue::Bool(true)); MAX_HEADERS + 1];
        assert!(matches!(
            Frame::new(many, vec![]),
            Err(EncodeError::TooManyHeaders { count: 1025 })
        ));
        let payload = vec![0; MAX_FRAME_LEN - MIN_FRAME_LEN + 1];
        assert_eq!(
            Frame::new(vec![], payload),
            Err(EncodeError::FrameTooLong {
                len: MAX_FRAME_LEN + 1
            })
        );
        assert!(Frame::new(vec![], vec![0; MAX_FRAME_LEN - MIN_FRAME_LEN]).is_ok());
    }

    #[test]
    fn prelude_errors_name_the_field() {
        let mut short = vec![0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        short.push(0);
        let short = crc_frame(short);
        assert_eq!(
            Frame::decode(&short[..12]).map(|_| ()),
            Err(FrameError::FrameTooShort { total_length: 15 })
        );
        let mut headers_too_long = vec![0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0];
        headers_too_long.extend([0; 4]);
        assert_eq!(
            Frame::decode(&crc_frame(headers_too_long)),
            Err(FrameError::HeadersTooLong {
                headers_length: 1,
                total_length: 16
            })
        );
        let mut too_long = vec![0x01, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        too_long.extend([0; 4]);
        assert_eq!(
            Frame::decode(&crc_frame(too_long)[..12]),
            Err(FrameError::FrameTooLong {
                total_length: 0x0180_0001
            })
        );
    }

    #[test]
    fn header_errors_name_the_header() {
        let frame = |headers: &[u8]| {
            let total = (16 + headers.len()) as u32;
            let mut bytes = total.to_be_bytes().to_vec();
            bytes.extend((headers.len() as u32).to_be_bytes());
            bytes.extend([0; 4]);
            bytes.extend(headers);
            bytes.extend([0; 4]);
            Frame::decode(&crc_frame(bytes))
        };
        assert_eq!(
            frame(&[1, b'a', 10]),
            Err(FrameError::UnknownHeaderType {
                name: "a".into(),
                code: 10
            })
        );
        assert_eq!(
            frame(&[0, 4]),
            Err(FrameError::EmptyHeaderName { offset: 12 })
        );
        assert_eq!(
            frame(&[1, b'a', 4, 0, 0]),
            Err(FrameError::HeaderTruncated { offset: 12 })
        );
        assert_eq!(
            frame(&[5, b'a']),
            Err(FrameError::HeaderTruncated { offset: 12 })
        );
        assert_eq!(
            frame(&[1, 0xff, 0]),
            Err(FrameError::HeaderNameNotUtf8 { offset: 12 })
        );
        assert_eq!(
            frame(&[1, b's', 7, 0, 1, 0xff]),
            Err(FrameError::StringNotUtf8 { name: "s".into() })
        );
        assert_eq!(
            frame(&[1, b's', 6, 0x80, 0x00]),
            Err(FrameError::HeaderValueTooLong {
                name: "s".into(),
                len: 32768
            })
        );
        let many: Vec<u8> = [1, b'b', 0].repeat(MAX_HEADERS + 1);
        assert_eq!(frame(&many), Err(FrameError::TooManyHeaders));
        let max: Vec<u8> = [1, b'b', 0].repeat(MAX_HEADERS);
        assert_eq!(frame(&max).unwrap().headers().len(), MAX_HEADERS);
    }

    #[test]
    fn crc_mismatches_are_reported_with_both_values() {
        let mut bytes = Frame::new(vec![], b"x".to_vec()).unwrap().encode();
        bytes[12] ^= 1;
        assert!(matches!(
            Frame::decode(&bytes),
            Err(FrameError::MessageCrc { .. })
        ));
        bytes[12] ^= 1;
        bytes[8] ^= 1;
        assert!(matches!(
            Frame::decode(&bytes),
            Err(FrameError::PreludeCrc { .. })
        ));
    }

    #[test]
    fn decode_wants_exactly_one_frame() {
        let bytes = Frame::new(vec![], b"x".to_vec()).unwrap().encode();
        assert_eq!(
            Frame::decode(&bytes[..5]),
            Err(FrameError::Incomplete {
                needed: 12,
                available: 5
            })
        );
        assert_eq!(
            Frame::decode(&bytes[..16]),
            Err(FrameError::Incomplete {
                needed: 17,
                available: 16
            })
        );
        let mut two = bytes.clone();
        two.extend(&bytes);
        assert_eq!(
            Frame::decode(&two),
            Err(FrameError::TrailingBytes { extra: 17 })
        );
    }

    #[test]
    fn header_lookup_ignores_case_and_takes_the_first() {
        let frame = Frame::new(
            vec![
                Header::int32(":Stream-Id", 1),
                Header::int32(":stream-id", 2),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(frame.header(":stream-id"), Some(&HeaderValue::Int32(1)));
        assert_eq!(frame.header("missing"), None);
    }
}
