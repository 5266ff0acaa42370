//! The event-stream RPC envelope (`greengrass-ipc.md` §3.1): the three INT32 control headers
//! every frame carries, the message types and flags, and the header names the RPC layer reads.

use std::fmt;

use crate::eventstream::{EncodeError, Frame, Header, HeaderValue};

pub const MESSAGE_TYPE: &str = ":message-type";
pub const MESSAGE_FLAGS: &str = ":message-flags";
pub const STREAM_ID: &str = ":stream-id";
pub const OPERATION: &str = "operation";
pub const VERSION: &str = ":version";
pub const CONTENT_TYPE: &str = ":content-type";
pub const SERVICE_MODEL_TYPE: &str = "service-model-type";

/// The only `:version` a CONNECT may carry.
pub const PROTOCOL_VERSION: &str = "0.1.0";
pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_TEXT: &str = "text/plain";

/// `:message-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    ApplicationMessage,
    ApplicationError,
    Ping,
    PingResponse,
    Connect,
    ConnectAck,
    ProtocolError,
    InternalError,
}

impl MessageType {
    pub fn code(self) -> i32 {
        match self {
            Self::ApplicationMessage => 0,
            Self::ApplicationError => 1,
            Self::Ping => 2,
            Self::PingResponse => 3,
            Self::Connect => 4,
            Self::ConnectAck => 5,
            Self::ProtocolError => 6,
            Self::InternalError => 7,
        }
    }

    /// `None` for values outside 0..=7, which the receiver answers with PROTOCOL_ERROR.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::ApplicationMessage,
            1 => Self::ApplicationError,
            2 => Self::Ping,
            3 => Self::PingResponse,
            4 => Self::Connect,
            5 => Self::ConnectAck,
            6 => Self::ProtocolError,
            7 => Self::InternalError,
            _ => return None,
        })
    }

    /// Whether the type belongs on an operation stream (stream id > 0) rather than stream 0.
    pub fn is_application(self) -> bool {
        matches!(self, Self::ApplicationMessage | Self::ApplicationError)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ApplicationMessage => "APPLICATION_MESSAGE",
            Self::ApplicationError => "APPLICATION_ERROR",
            Self::Ping => "PING",
            Self::PingResponse => "PING_RESPONSE",
            Self::Connect => "CONNECT",
            Self::ConnectAck => "CONNECT_ACK",
            Self::ProtocolError => "PROTOCOL_ERROR",
            Self::InternalError => "INTERNAL_ERROR",
        })
    }
}

/// `:message-flags`. Bits other than the two named ones are kept but mean nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MessageFlags(pub i32);

impl MessageFlags {
    pub const NONE: Self = Self(0);
    /// CONNECT_ACK only: the connection is accepted.
    pub const CONNECTION_ACCEPTED: Self = Self(0x1);
    /// The stream ends with this message.
    pub const TERMINATE_STREAM: Self = Self(0x2);

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn terminates_stream(self) -> bool {
        self.contains(Self::TERMINATE_STREAM)
    }
}

/// An operation stream's id: 1 to 2³¹−1, allocated by the client, one more for each new
/// operation on the connection (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(i32);

impl StreamId {
    /// `None` for 0 (the connection itself) and negative values.
    pub fn new(id: i32) -> Option<Self> {
        (id > 0).then_some(Self(id))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the RPC layer reads from a frame's headers, as aws-c-event-stream extracts it: INT32
/// control headers and a STRING `operation`, names in any case, a header of another type
/// counting as absent. The first match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub message_type: i32,
    pub flags: MessageFlags,
    pub stream_id: i32,
    /// Absent when missing, not a STRING, or empty.
    pub operation: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// `None` when any of the three control headers is missing or not an INT32.
    pub fn read(frame: &'a Frame) -> Option<Self> {
        let int = |name: &str| {
            frame
                .headers()
                .iter()
                .find(|h| h.is_named(name) && matches!(h.value, HeaderValue::Int32(_)))
                .and_then(|h| h.value.as_i32())
        };
        let operation = frame
            .headers()
            .iter()
            .find(|h| h.is_named(OPERATION) && matches!(h.value, HeaderValue::String(_)))
            .and_then(|h| h.value.as_str())
            .filter(|op| !op.is_empty());
        Some(Self {
            message_type: int(MESSAGE_TYPE)?,
            flags: MessageFlags(int(MESSAGE_FLAGS)?),
            stream_id: int(STREAM_ID)?,
            operation,
        })
    }
}

/// Whether a header is one of the three control headers (which a PING_RESPONSE does not echo,
/// nor any `:`-name).
pub(crate) fn is_colon_header(header: &Header) -> bool {
    header.name.starts_with(':')
}

/// One RPC message in typed form; [`to_frame`](Self::to_frame) writes it as the C library does,
/// the caller's headers first and the control headers after them (§2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcMessage {
    pub message_type: MessageType,
    pub flags: MessageFlags,
    /// 0 for connection-level messages.
    pub stream_id: i32,
    /// Headers other than the three control headers, in wire order.
    pub headers: Vec<Header>,
    pub payload: Vec<u8>,
}

impl RpcMessage {
    pub fn new(message_type: MessageType, flags: MessageFlags, stream_id: i32) -> Self {
        Self {
            message_type,
            flags,
            stream_id,
            headers: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn with_header(mut self, header: Header) -> Self {
        self.headers.push(header);
        self
    }

    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    pub fn to_frame(&self) -> Result<Frame, EncodeError> {
        let mut headers = self.headers.clone();
        headers.push(Header::int32(MESSAGE_TYPE, self.message_type.code()));
        headers.push(Header::int32(MESSAGE_FLAGS, self.flags.0));
        headers.push(Header::int32(STREAM_ID, self.stream_id));
        Frame::new(headers, self.payload.clone())
    }

    /// Reads a frame back: `None` when a control header is missing, mistyped, or the message
    /// type is unknown. Every header but the three control headers lands in `headers`.
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        let envelope = Envelope::read(frame)?;
        let control = [MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID];
        Some(Self {
            message_type: MessageType::from_code(envelope.message_type)?,
            flags: envelope.flags,
            stream_id: envelope.stream_id,
            headers: frame
                .headers()
                .iter()
                .filter(|h| {
                    !(control.iter().any(|c| h.is_named(c))
                        && matches!(h.value, HeaderValue::Int32(_)))
                })
                .cloned()
                .collect(),
            payload: frame.payload().to_vec(),
        })
    }

    /// The first non-control header called `name` (any case), if it is a STRING.
    pub fn string_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.is_named(name))
            .and_then(|h| h.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_round_trip() {
        for code in -1..10 {
            match MessageType::from_code(code) {
                Some(t) => assert_eq!(t.code(), code),
                None => assert!(!(0..=7).contains(&code)),
            }
        }
    }

    #[test]
    fn stream_ids_are_positive() {
        assert_eq!(StreamId::new(0), None);
        assert_eq!(StreamId::new(-1), None);
        assert_eq!(StreamId::new(i32::MAX).map(StreamId::get), Some(i32::MAX));
    }

    #[test]
    fn control_headers_go_after_the_callers() {
        let frame = RpcMessage::new(MessageType::ApplicationMessage, MessageFlags(2), 3)
            .with_header(Header::string(CONTENT_TYPE, CONTENT_TYPE_JSON))
            .to_frame()
            .unwrap();
        let names: Vec<&str> = frame.headers().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [CONTENT_TYPE, MESSAGE_TYPE, MESSAGE_FLAGS, STREAM_ID]
        );
        let back = RpcMessage::from_frame(&frame).unwrap();
        assert_eq!(back.stream_id, 3);
        assert!(back.flags.terminates_stream());
        assert_eq!(back.string_header(":Content-Type"), Some(CONTENT_TYPE_JSON));
    }

    #[test]
    fn a_mistyped_control_header_counts_as_missing() {
        let frame = Frame::new(
            vec![
                Header::string(MESSAGE_TYPE, "0"),
                Header::int32(MESSAGE_FLAGS, 0),
                Header::int32(STREAM_ID, 0),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(Envelope::read(&frame), None);
        let frame = Frame::new(
            vec![
                Header::int32(":MESSAGE-TYPE", 2),
                Header::int32(MESSAGE_FLAGS, 0),
                Header::int32(STREAM_ID, 0),
                Header::int32(OPERATION, 7),
            ],
            vec![],
        )
        .unwrap();
        let envelope = Envelope::read(&frame).unwrap();
        assert_eq!(envelope.message_type, 2);
        assert_eq!(envelope.operation, None);
    }
}
