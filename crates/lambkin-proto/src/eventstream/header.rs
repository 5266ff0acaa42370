//! Header records: `name_len u8 | name | type u8 | value` (`greengrass-ipc.md` §2), one variant
//! per wire type so that a decoded frame re-encodes byte for byte.

use std::fmt;

/// The type byte of a header value on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderType {
    BoolTrue,
    BoolFalse,
    Byte,
    Int16,
    Int32,
    Int64,
    ByteBuf,
    String,
    Timestamp,
    Uuid,
}

impl HeaderType {
    /// The byte that announces this type on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::BoolTrue => 0,
            Self::BoolFalse => 1,
            Self::Byte => 2,
            Self::Int16 => 3,
            Self::Int32 => 4,
            Self::Int64 => 5,
            Self::ByteBuf => 6,
            Self::String => 7,
            Self::Timestamp => 8,
            Self::Uuid => 9,
        }
    }

    /// The type a wire byte announces; `None` for 10..=255, which is a decode error.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::BoolTrue,
            1 => Self::BoolFalse,
            2 => Self::Byte,
            3 => Self::Int16,
            4 => Self::Int32,
            5 => Self::Int64,
            6 => Self::ByteBuf,
            7 => Self::String,
            8 => Self::Timestamp,
            9 => Self::Uuid,
            _ => return None,
        })
    }
}

impl fmt::Display for HeaderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BoolTrue => "BOOL_TRUE",
            Self::BoolFalse => "BOOL_FALSE",
            Self::Byte => "BYTE",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::ByteBuf => "BYTE_BUF",
            Self::String => "STRING",
            Self::Timestamp => "TIMESTAMP",
            Self::Uuid => "UUID",
        })
    }
}

/// A header's value. `Bool(true)` and `Bool(false)` are the two value-less wire types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    /// At most [`MAX_VALUE_LEN`](super::MAX_VALUE_LEN) bytes.
    ByteBuf(Vec<u8>),
    /// At most [`MAX_VALUE_LEN`](super::MAX_VALUE_LEN) bytes of UTF-8.
    String(String),
    /// Milliseconds since the epoch, passed through unchanged.
    Timestamp(i64),
    Uuid([u8; 16]),
}

impl HeaderValue {
    pub fn header_type(&self) -> HeaderType {
        match self {
            Self::Bool(true) => HeaderType::BoolTrue,
            Self::Bool(false) => HeaderType::BoolFalse,
            Self::Byte(_) => HeaderType::Byte,
            Self::Int16(_) => HeaderType::Int16,
            Self::Int32(_) => HeaderType::Int32,
            Self::Int64(_) => HeaderType::Int64,
            Self::ByteBuf(_) => HeaderType::ByteBuf,
            Self::String(_) => HeaderType::String,
            Self::Timestamp(_) => HeaderType::Timestamp,
            Self::Uuid(_) => HeaderType::Uuid,
        }
    }

    pub fn as_i32(&self) -> Option<i32> {
        match self {
            Self::Int32(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes the value takes on the wire after its type byte.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Self::Bool(_) => 0,
            Self::Byte(_) => 1,
            Self::Int16(_) => 2,
            Self::Int32(_) => 4,
            Self::Int64(_) | Self::Timestamp(_) => 8,
            Self::ByteBuf(b) => 2 + b.len(),
            Self::String(s) => 2 + s.len(),
            Self::Uuid(_) => 16,
        }
    }

    /// The length of a variable-size value, which the limits bound.
    pub(crate) fn variable_len(&self) -> Option<usize> {
        match self {
            Self::ByteBuf(b) => Some(b.len()),
            Self::String(s) => Some(s.len()),
            _ => None,
        }
    }
}

/// One header record. Names are compared case-insensitively by every reader (§2), so lookups
/// here do the same; writers must still send the exact lower-case names (Node compares some
/// with `===`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// 1 to [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes of UTF-8.
    pub name: String,
    pub value: HeaderValue,
}

impl Header {
    pub fn new(name: impl Into<String>, value: HeaderValue) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }

    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(name, HeaderValue::String(value.into()))
    }

    pub fn int32(name: impl Into<String>, value: i32) -> Self {
        Self::new(name, HeaderValue::Int32(value))
    }

    /// Whether this header is called `name`, ignoring ASCII case.
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub(crate) fn encoded_len(&self) -> usize {
        1 + self.name.len() + 1 + self.value.encoded_len()
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        // Lengths were checked against the limits when the frame was built.
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.value.header_type().code());
        match &self.value {
            HeaderValue::Bool(_) => {}
            HeaderValue::Byte(v) => out.extend_from_slice(&v.to_be_bytes()),
            HeaderValue::Int16(v) => out.extend_from_slice(&v.to_be_bytes()),
            HeaderValue::Int32(v) => out.extend_from_slice(&v.to_be_bytes()),
            HeaderValue::Int64(v) | HeaderValue::Timestamp(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            HeaderValue::ByteBuf(b) => {
                out.extend_from_slice(&(b.len() as u16).to_be_bytes());
                out.extend_from_slice(b);
            }
            HeaderValue::String(s) => {
                out.extend_from_slice(&(s.len() as u16).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            HeaderValue::Uuid(u) => out.extend_from_slice(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_round_trip() {
        for code in 0..=255u8 {
            match HeaderType::from_code(code) {
                Some(t) => assert_eq!(t.code(), code),
                None => assert!(code >= 10),
            }
        }
    }

    #[test]
    fn names_match_in_any_case() {
        let h = Header::int32(":Message-Type", 0);
        assert!(h.is_named(":message-type"));
        assert!(!h.is_named(":message-flags"));
    }

    #[test]
    fn encodes_each_type_big_endian() {
        let cases: Vec<(HeaderValue, Vec<u8>)> = vec![
            (HeaderValue::Bool(true), vec![0]),
            (HeaderValue::Bool(false), vec![1]),
            (HeaderValue::Byte(-1), vec![2, 0xff]),
            (HeaderValue::Int16(0x0102), vec![3, 1, 2]),
            (HeaderValue::Int32(5), vec![4, 0, 0, 0, 5]),
            (HeaderValue::Int64(1), vec![5, 0, 0, 0, 0, 0, 0, 0, 1]),
            (HeaderValue::ByteBuf(vec![9, 8]), vec![6, 0, 2, 9, 8]),
            (HeaderValue::String("ok".into()), vec![7, 0, 2, b'o', b'k']),
            (
                HeaderValue::Timestamp(-1),
                vec![8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (HeaderValue::Uuid([7; 16]), [vec![9], vec![7; 16]].concat()),
        ];
        for (value, wire) in cases {
            let mut out = Vec::new();
            let h = Header::new("n", value);
            h.encode_into(&mut out);
            assert_eq!(out, [vec![1, b'n'], wire].concat(), "{h:?}");
            assert_eq!(out.len(), h.encoded_len());
        }
    }
}
