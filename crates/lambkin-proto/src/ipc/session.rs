//! One IPC connection as a state machine with no I/O (`greengrass-ipc.md` §1.3, §3): frames in,
//! [`Action`]s out. The socket loop around it reads frames with a
//! [`Decoder`](crate::eventstream::Decoder), feeds them to [`Session::on_frame`], performs the
//! actions in order, and calls back with what the host decided: [`Session::on_authenticated`]
//! after a token lookup, [`Session::respond`], [`Session::send_event`], [`Session::fail`] and
//! [`Session::close_stream`] for operations.
//!
//! The session owns every rule of the RPC layer: the handshake, stream-id order, which message
//! types belong where, TERMINATE_STREAM on both sides, the response before any event, the exact
//! PROTOCOL_ERROR texts of aws-c-event-stream and the replies of the Java nucleus.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::eventstream::{EncodeError, Frame, Header};
use crate::recipe::ComponentName;

use super::envelope::{
    is_colon_header, Envelope, MessageFlags, MessageType, RpcMessage, StreamId, CONTENT_TYPE,
    CONTENT_TYPE_JSON, PROTOCOL_VERSION, SERVICE_MODEL_TYPE, VERSION,
};
use super::error::IpcError;
use super::operation::Operation;

/// How long to wait for the client to close after a rejected CONNECT_ACK before closing
/// anyway. Closing at once loses the ACK to the socket EOF in most Python runs (§1.3).
pub const REJECTED_LINGER: Duration = Duration::from_secs(5);

/// How long the Python client waits for CONNECT_ACK by default (§1.2): a host that takes
/// longer to authenticate has lost the client.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams one connection may hold open at once unless the host says otherwise
/// ([`Session::set_max_open_streams`]): subscriptions, and requests still waiting for their
/// answer. The nucleus sets no limit; without one, a component can open streams until the
/// host runs out of memory (each holds a subscription and its queue).
pub const DEFAULT_MAX_OPEN_STREAMS: usize = 1024;

/// The token a CONNECT carried (`SVCUID`). Opaque; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AuthToken(String);

impl AuthToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthToken(<{} chars>)", self.0.chars().count())
    }
}

/// An operation for the host to carry out. Answer it with [`Session::respond`] or
/// [`Session::fail`]; a streaming one then takes [`Session::send_event`] until it is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub stream: StreamId,
    pub operation: Operation,
    /// The component the connection authenticated as, for authorization.
    pub principal: ComponentName,
    /// The request JSON as sent: `{"k": "v"}` from Python, `{"k":"v"}` from Node.
    pub payload: Vec<u8>,
}

/// What the socket loop must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this frame.
    Send(Frame),
    /// Look the token up and answer with [`Session::on_authenticated`].
    Authenticate(AuthToken),
    /// Carry out an operation.
    Dispatch(Request),
    /// The stream has ended without the host asking (the client closed it, or the connection
    /// is going): drop its subscription, stop its work.
    StreamClosed(StreamId),
    /// The connection was rejected: stop serving it, and close the socket when the client
    /// closes its end or after [`REJECTED_LINGER`], whichever comes first.
    AwaitClientClose,
    /// Close the socket once every frame sent before this action has been written.
    Close,
}

/// Why the host's answer on a stream was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the connection is not open for operations")]
    NotConnected,
    #[error("stream {0} was never opened by the client")]
    UnknownStream(StreamId),
    /// The stream ended before this answer; normal when a client closes a subscription while
    /// an event is on its way.
    #[error("stream {0} is closed")]
    StreamClosed(StreamId),
    #[error("stream {stream} ({operation}) already has its response")]
    AlreadyResponded {
        stream: StreamId,
        operation: Operation,
    },
    #[error("stream {stream} ({operation}) has no response yet, and events may only follow it")]
    ResponsePending {
        stream: StreamId,
        operation: Operation,
    },
    #[error("{operation} is not a streaming operation, stream {stream} takes no events")]
    NotStreaming {
        stream: StreamId,
        operation: Operation,
    },
    /// The message breaks a frame limit (a payload over 24 MiB); the stream is still open.
    #[error("message on stream {stream} cannot be framed: {source}")]
    Frame {
        stream: StreamId,
        source: EncodeError,
    },
}

/// A rule of the RPC layer the client broke; each is answered with PROTOCOL_ERROR carrying
/// aws-c-event-stream's text, and the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Violation {
    MissingControlHeaders,
    ConnectNotCompleted,
    InvalidMessageType,
    InvalidStreamId,
    StreamIdBelowLast,
    StreamIdSkipped,
    MissingOperation,
}

impl Violation {
    fn payload(self) -> &'static str {
        match self {
            Self::MissingControlHeaders => {
                "{ \"message\": \"A message was received with missing required fields. Check that your client is sending at least, :message-type, :message-flags, and :stream-id\" }"
            }
            Self::ConnectNotCompleted => {
                "{ \"message\": \"A CONNECT message must be received, and the CONNECT_ACK must be sent in response, before any other message-types can be sent on this connection. In addition, only one CONNECT message is allowed on a connection.\" }"
            }
            Self::InvalidMessageType => {
                "{ \"message\": \"an invalid value for message-type field was received.\" }"
            }
            Self::InvalidStreamId => {
                "{ \"message\": \"non-zero stream-id field is only allowed for messages of type APPLICATION_MESSAGE. The stream id max value is INT32_MAX.\" }"
            }
            Self::StreamIdBelowLast => {
                "{ \"message\": \"stream-id values must be monotonically incrementing. A stream-id arrived that was lower than the last seen stream-id.\" }"
            }
            Self::StreamIdSkipped => {
                "{ \"message\": \"stream-id values must be monotonically incrementing. A new stream-id arrived that was incremented by more than 1.\" }"
            }
            // The C library's literal ends in `"; }`, which is not JSON; this keeps its words
            // in a valid object.
            Self::MissingOperation => {
                "{ \"message\": \"The first message for on a non-zero :stream-id must contain an operation header value.\" }"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitingConnect,
    Authenticating,
    Connected(ComponentName),
    /// CONNECT_ACK without CONNECTION_ACCEPTED has gone out; the client is expected to close.
    Rejected,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenStream {
    operation: Operation,
    responded: bool,
}

/// The RPC state of one connection.
#[derive(Debug)]
pub struct Session {
    state: State,
    last_stream_id: i32,
    streams: BTreeMap<StreamId, OpenStream>,
    max_open_streams: usize,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A connection that has just been accepted and waits for CONNECT.
    pub fn new() -> Self {
        Self {
            state: State::AwaitingConnect,
            last_stream_id: 0,
            streams: BTreeMap::new(),
            max_open_streams: DEFAULT_MAX_OPEN_STREAMS,
        }
    }

    /// Refuses a new stream while `limit` are open: its operation is not dispatched, and the
    /// client gets `ServiceError` on that stream (every operation's error list in §4.7 has
    /// it), so it can close some and try again. The connection goes on.
    pub fn set_max_open_streams(&mut self, limit: usize) {
        self.max_open_streams = limit;
    }

    /// The component the connection authenticated as, once accepted.
    pub fn principal(&self) -> Option<&ComponentName> {
        match &self.state {
            State::Connected(principal) => Some(principal),
            _ => None,
        }
    }

    /// Whether the session will take no more frames (closed, rejected or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed | State::Rejected)
    }

    /// The streams that are open, with their operations.
    pub fn open_streams(&self) -> impl Iterator<Item = (StreamId, Operation)> + '_ {
        self.streams.iter().map(|(id, s)| (*id, s.operation))
    }

    /// The highest stream id the client has opened.
    pub fn last_stream_id(&self) -> i32 {
        self.last_stream_id
    }

    /// A frame from the client.
    pub fn on_frame(&mut self, frame: Frame) -> Vec<Action> {
        if self.is_finished() {
            return Vec::new();
        }
        let Some(envelope) = Envelope::read(&frame) else {
            return self.violation(Violation::MissingControlHeaders);
        };
        let message_type = MessageType::from_code(envelope.message_type);
        let handshake_done = matches!(self.state, State::Connected(_));
        if !handshake_done
            && (self.state != State::AwaitingConnect || message_type != Some(MessageType::Connect))
        {
            return self.violation(Violation::ConnectNotCompleted);
        }
        if envelope.stream_id != 0 {
            return self.on_stream_message(&frame, envelope, message_type);
        }
        match message_type {
            None | Some(MessageType::ApplicationMessage | MessageType::ApplicationError) => {
                self.violation(Violation::InvalidMessageType)
            }
            Some(MessageType::Connect) if handshake_done => {
                self.violation(Violation::ConnectNotCompleted)
            }
            Some(MessageType::Connect) => self.on_connect(&frame),
            Some(MessageType::Ping) => {
                // The Java nucleus echoes the non-`:` headers and the payload (§3.4).
                let mut pong = RpcMessage::new(MessageType::PingResponse, MessageFlags::NONE, 0)
                    .with_payload(frame.payload());
                pong.headers = frame
                    .headers()
                    .iter()
                    .filter(|h| !is_colon_header(h))
                    .cloned()
                    .collect();
                self.control(pong)
            }
            Some(MessageType::PingResponse) => Vec::new(),
            Some(
                t @ (MessageType::ConnectAck
                | MessageType::ProtocolError
                | MessageType::InternalError),
            ) => {
                // The Java nucleus's answer to a connection-level type it does not serve.
                let payload = format!(
                    "{{ \"error\": \"Unrecognized Message Type\", \"message\": \" message type value: {} is not recognized as a valid request path.\" }}",
                    t.code()
                );
                let error = RpcMessage::new(MessageType::InternalError, MessageFlags::NONE, 0)
                    .with_header(Header::string(CONTENT_TYPE, CONTENT_TYPE_JSON))
                    .with_payload(payload);
                let mut actions = self.control(error);
                actions.extend(self.shut_down());
                actions.push(Action::Close);
                actions
            }
        }
    }

    fn on_connect(&mut self, frame: &Frame) -> Vec<Action> {
        let version_ok = frame
            .headers()
            .iter()
            .find(|h| h.is_named(VERSION))
            .and_then(|h| h.value.as_str())
            == Some(PROTOCOL_VERSION);
        match read_auth_token(frame.payload()) {
            Some(token) if version_ok => {
                self.state = State::Authenticating;
                vec![Action::Authenticate(token)]
            }
            _ => self.reject(),
        }
    }

    /// The host's answer to [`Action::Authenticate`]: the component the token belongs to, or
    /// `None` when the token is unknown. Ignored unless the session is waiting for it.
    pub fn on_authenticated(&mut self, principal: Option<ComponentName>) -> Vec<Action> {
        if self.state != State::Authenticating {
            return Vec::new();
        }
        match principal {
            Some(principal) => {
                self.state = State::Connected(principal);
                self.control(RpcMessage::new(
                    MessageType::ConnectAck,
                    MessageFlags::CONNECTION_ACCEPTED,
                    0,
                ))
            }
            None => self.reject(),
        }
    }

    fn reject(&mut self) -> Vec<Action> {
        self.state = State::Rejected;
        let mut actions = self.control(RpcMessage::new(
            MessageType::ConnectAck,
            MessageFlags::NONE,
            0,
        ));
        actions.push(Action::AwaitClientClose);
        actions
    }

    fn on_stream_message(
        &mut self,
        frame: &Frame,
        envelope: Envelope<'_>,
        message_type: Option<MessageType>,
    ) -> Vec<Action> {
        // Only application types travel on streams, and a negative id reads as one above
        // INT32_MAX to the C library.
        let (Some(stream), true) = (
            StreamId::new(envelope.stream_id),
            message_type.is_some_and(MessageType::is_application),
        ) else {
            return self.violation(Violation::InvalidStreamId);
        };
        let terminate = envelope.flags.terminates_stream();
        if stream.get() <= self.last_stream_id {
            return match (self.streams.contains_key(&stream), terminate) {
                (true, true) => {
                    self.streams.remove(&stream);
                    vec![Action::StreamClosed(stream)]
                }
                // No Greengrass operation takes messages after its request (§3.6).
                (true, false) => Vec::new(),
                // A close crossing ours, or a close of a stream that never got going.
                (false, true) => Vec::new(),
                (false, false) => self.violation(Violation::StreamIdBelowLast),
            };
        }
        if stream.get() != self.last_stream_id + 1 {
            return self.violation(Violation::StreamIdSkipped);
        }
        let Some(name) = envelope.operation else {
            return self.violation(Violation::MissingOperation);
        };
        self.last_stream_id = stream.get();
        if terminate {
            // The Java server ignores a first message that already closes its stream (§3.5).
            return Vec::new();
        }
        let Some(operation) = Operation::from_name(name) else {
            return self.unsupported_operation(stream, name);
        };
        let Some(principal) = self.principal().cloned() else {
            return Vec::new();
        };
        if self.streams.len() >= self.max_open_streams {
            let error = IpcError::service(format!(
                "too many open streams on this connection: {} are open, the limit is {}; close some first",
                self.streams.len(),
                self.max_open_streams
            ));
            return self.refuse_stream(stream, &error);
        }
        // The Java server takes the first message as the request whatever its application
        // type, so an APPLICATION_ERROR opening a stream is dispatched too.
        self.streams.insert(
            stream,
            OpenStream {
                operation,
                responded: false,
            },
        );
        vec![Action::Dispatch(Request {
            stream,
            operation,
            principal,
            payload: frame.payload().to_vec(),
        })]
    }

    /// The Java nucleus's reply to an `operation` outside the service model (§3.7).
    fn unsupported_operation(&mut self, stream: StreamId, name: &str) -> Vec<Action> {
        let message = serde_json::Value::from(format!("{name} is an unsupported operation."));
        let payload = format!("{{ \"error\": \"Unsupported Operation\", \"message\": {message} }}");
        let reply = RpcMessage::new(
            MessageType::ApplicationError,
            MessageFlags::TERMINATE_STREAM,
            stream.get(),
        )
        .with_header(Header::string(CONTENT_TYPE, CONTENT_TYPE_JSON))
        .with_payload(payload);
        self.control(reply)
    }

    /// The operation's response: flags 0 for a streaming operation, whose stream stays open
    /// for events, TERMINATE_STREAM otherwise. An empty payload is sent as `{}`, because
    /// Python fails to parse an empty one (§3.5).
    pub fn respond(
        &mut self,
        stream: StreamId,
        payload: Vec<u8>,
    ) -> Result<Vec<Action>, SendError> {
        let open = self.open_stream(stream)?;
        if open.responded {
            return Err(SendError::AlreadyResponded {
                stream,
                operation: open.operation,
            });
        }
        let streaming = open.operation.is_streaming();
        let flags = if streaming {
            MessageFlags::NONE
        } else {
            MessageFlags::TERMINATE_STREAM
        };
        let payload = if payload.is_empty() {
            b"{}".to_vec()
        } else {
            payload
        };
        let frame = application_message(stream, flags, open.operation.response_shape(), payload)?;
        if streaming {
            self.streams.insert(
                stream,
                OpenStream {
                    responded: true,
                    ..open
                },
            );
        } else {
            self.streams.remove(&stream);
        }
        Ok(vec![Action::Send(frame)])
    }

    /// One event of a streaming operation, after its response (§3.6).
    pub fn send_event(
        &mut self,
        stream: StreamId,
        payload: Vec<u8>,
    ) -> Result<Vec<Action>, SendError> {
        let open = self.open_stream(stream)?;
        let Some(shape) = open.operation.event_shape() else {
            return Err(SendError::NotStreaming {
                stream,
                operation: open.operation,
            });
        };
        if !open.responded {
            return Err(SendError::ResponsePending {
                stream,
                operation: open.operation,
            });
        }
        let frame = application_message(stream, MessageFlags::NONE, shape, payload)?;
        Ok(vec![Action::Send(frame)])
    }

    /// Ends the stream with an error: APPLICATION_ERROR with TERMINATE_STREAM (§3.5). Allowed
    /// before the response, and after it on a streaming operation.
    pub fn fail(&mut self, stream: StreamId, error: &IpcError) -> Result<Vec<Action>, SendError> {
        self.open_stream(stream)?;
        let frame = error_frame(stream, error)?;
        self.streams.remove(&stream);
        Ok(vec![Action::Send(frame)])
    }

    /// Answers a stream the session did not open with `error`.
    fn refuse_stream(&mut self, stream: StreamId, error: &IpcError) -> Vec<Action> {
        match error_frame(stream, error) {
            Ok(frame) => vec![Action::Send(frame)],
            // Bounded parts; should it ever not frame, the connection cannot go on correctly.
            Err(_) => {
                let mut actions = self.shut_down();
                actions.push(Action::Close);
                actions
            }
        }
    }

    /// Ends a stream from the server side: an APPLICATION_MESSAGE with TERMINATE_STREAM, only
    /// the control headers and no payload, which both clients take as a quiet close (§3.6).
    pub fn close_stream(&mut self, stream: StreamId) -> Result<Vec<Action>, SendError> {
        self.open_stream(stream)?;
        let frame = RpcMessage::new(
            MessageType::ApplicationMessage,
            MessageFlags::TERMINATE_STREAM,
            stream.get(),
        )
        .to_frame()
        .map_err(|source| SendError::Frame { stream, source })?;
        self.streams.remove(&stream);
        Ok(vec![Action::Send(frame)])
    }

    /// The socket has closed: every open stream ends.
    pub fn on_disconnected(&mut self) -> Vec<Action> {
        self.shut_down()
    }

    /// The client's bytes are not a frame (a bad CRC, a broken limit): close without a reply,
    /// as the C library does on a decode error (§2).
    pub fn on_decode_error(&mut self) -> Vec<Action> {
        let mut actions = self.shut_down();
        actions.push(Action::Close);
        actions
    }

    fn open_stream(&self, stream: StreamId) -> Result<OpenStream, SendError> {
        if !matches!(self.state, State::Connected(_)) {
            return Err(SendError::NotConnected);
        }
        match self.streams.get(&stream) {
            Some(open) => Ok(*open),
            None if stream.get() <= self.last_stream_id => Err(SendError::StreamClosed(stream)),
            None => Err(SendError::UnknownStream(stream)),
        }
    }

    /// Ends the session and every stream on it.
    fn shut_down(&mut self) -> Vec<Action> {
        self.state = State::Closed;
        std::mem::take(&mut self.streams)
            .into_keys()
            .map(Action::StreamClosed)
            .collect()
    }

    fn violation(&mut self, violation: Violation) -> Vec<Action> {
        let error = RpcMessage::new(MessageType::ProtocolError, MessageFlags::NONE, 0)
            .with_header(Header::string(CONTENT_TYPE, CONTENT_TYPE_JSON))
            .with_payload(violation.payload());
        let mut actions = self.control(error);
        actions.extend(self.shut_down());
        actions.push(Action::Close);
        actions
    }

    /// A frame the session builds from bounded parts. Should one ever break a limit, the
    /// connection cannot go on correctly, so it is closed.
    fn control(&mut self, message: RpcMessage) -> Vec<Action> {
        match message.to_frame() {
            Ok(frame) => vec![Action::Send(frame)],
            Err(_) => {
                let mut actions = self.shut_down();
                actions.push(Action::Close);
                actions
            }
        }
    }
}

/// APPLICATION_ERROR with TERMINATE_STREAM carrying `error` as the wire has it (§3.5).
fn error_frame(stream: StreamId, error: &IpcError) -> Result<Frame, SendError> {
    let wire = error.to_wire();
    let mut message = RpcMessage::new(
        MessageType::ApplicationError,
        MessageFlags::TERMINATE_STREAM,
        stream.get(),
    )
    .with_header(Header::string(CONTENT_TYPE, wire.content_type))
    .with_payload(wire.payload);
    if let Some(shape) = wire.service_model_type {
        message = message.with_header(Header::string(SERVICE_MODEL_TYPE, shape));
    }
    message
        .to_frame()
        .map_err(|source| SendError::Frame { stream, source })
}

/// An application message with the headers every response and event carries (§3.5).
fn application_message(
    stream: StreamId,
    flags: MessageFlags,
    shape: &'static str,
    payload: Vec<u8>,
) -> Result<Frame, SendError> {
    RpcMessage::new(MessageType::ApplicationMessage, flags, stream.get())
        .with_header(Header::string(CONTENT_TYPE, CONTENT_TYPE_JSON))
        .with_header(Header::string(SERVICE_MODEL_TYPE, shape))
        .with_payload(payload)
        .to_frame()
        .map_err(|source| SendError::Frame { stream, source })
}

/// `authToken` from a CONNECT payload: JSON, unknown fields ignored, a non-empty string (§1.3).
fn read_auth_token(payload: &[u8]) -> Option<AuthToken> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let token = value.get("authToken")?.as_str()?;
    (!token.is_empty()).then(|| AuthToken::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_tokens_are_read_leniently_and_never_printed() {
        let token = |p: &str| read_auth_token(p.as_bytes()).map(|t| t.as_str().to_owned());
        assert_eq!(token(r#"{"authToken": "ABC"}"#).as_deref(), Some("ABC"));
        assert_eq!(
            token(r#"{"authToken":"ABC","x":1}"#).as_deref(),
            Some("ABC")
        );
        assert_eq!(token(r#"{"authToken": ""}"#), None);
        assert_eq!(token(r#"{"authToken": 7}"#), None);
        assert_eq!(token(r#"{}"#), None);
        assert_eq!(token(""), None);
        assert_eq!(token("authToken"), None);
        let shown = format!("{:?}", AuthToken::new("GOODTOKEN1234567"));
        assert!(!shown.contains("GOOD"), "{shown}");
    }

    #[test]
    fn every_violation_payload_is_json_with_a_message() {
        for v in [
            Violation::MissingControlHeaders,
            Violation::ConnectNotCompleted,
            Violation::InvalidMessageType,
            Violation::InvalidStreamId,
            Violation::StreamIdBelowLast,
            Violation::StreamIdSkipped,
            Violation::MissingOperation,
        ] {
            let body: serde_json::Value = serde_json::from_str(v.payload()).unwrap();
            assert!(body["message"].is_string(), "{v:?}");
        }
    }

    #[test]
    fn host_answers_before_the_handshake_are_refused() {
        let mut session = Session::new();
        let stream = StreamId::new(1).unwrap();
        assert_eq!(
            session.respond(stream, vec![]),
            Err(SendError::NotConnected)
        );
        assert!(session.on_authenticated(None).is_empty());
    }
}
