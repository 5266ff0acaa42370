//! The IPC session against the spec (`greengrass-ipc.md` §1.3, §3): the frames captured from the
//! real clients go in, and what comes out is checked byte for byte against the server frames
//! captured beside them, or against the exact texts the spec prescribes for each violation.

use std::path::Path;

use lambkin_proto::eventstream::{Frame, Header, HeaderValue, MAX_FRAME_LEN};
use lambkin_proto::ipc::{
    Action, IpcError, MessageFlags, MessageType, Operation, Request, RpcMessage, SendError,
    Session, StreamId,
};
use lambkin_proto::recipe::ComponentName;
use proptest::prelude::*;

const PROBE: &str = "com.example.Probe";

const CONNECT_NOT_COMPLETED: &str = "{ \"message\": \"A CONNECT message must be received, and the CONNECT_ACK must be sent in response, before any other message-types can be sent on this connection. In addition, only one CONNECT message is allowed on a connection.\" }";
const MISSING_FIELDS: &str = "{ \"message\": \"A message was received with missing required fields. Check that your client is sending at least, :message-type, :message-flags, and :stream-id\" }";
const INVALID_MESSAGE_TYPE: &str =
    "{ \"message\": \"an invalid value for message-type field was received.\" }";
const INVALID_STREAM_ID: &str = "{ \"message\": \"non-zero stream-id field is only allowed for messages of type APPLICATION_MESSAGE. The stream id max value is INT32_MAX.\" }";
const STREAM_ID_BELOW_LAST: &str = "{ \"message\": \"stream-id values must be monotonically incrementing. A stream-id arrived that was lower than the last seen stream-id.\" }";
const STREAM_ID_SKIPPED: &str = "{ \"message\": \"stream-id values must be monotonically incrementing. A new stream-id arrived that was incremented by more than 1.\" }";
const MISSING_OPERATION: &str = "{ \"message\": \"The first message for on a non-zero :stream-id must contain an operation header value.\" }";

fn captured_bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/eventstream")
        .join(format!("captured-{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn captured(name: &str) -> Frame {
    Frame::decode(&captured_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn stream(id: i32) -> StreamId {
    StreamId::new(id).unwrap_or_else(|| panic!("{id} is not a stream id"))
}

fn probe() -> ComponentName {
    ComponentName::parse(PROBE).unwrap_or_else(|e| panic!("{e}"))
}

/// A client frame: the caller's headers, then the three control headers.
fn client(
    message_type: i32,
    flags: i32,
    stream_id: i32,
    headers: Vec<Header>,
    payload: &[u8],
) -> Frame {
    let mut all = headers;
    all.push(Header::int32(":message-type", message_type));
    all.push(Header::int32(":message-flags", flags));
    all.push(Header::int32(":stream-id", stream_id));
    Frame::new(all, payload.to_vec()).unwrap_or_else(|e| panic!("{e}"))
}

/// A request as the Node client sends it: control headers and `operation` only.
fn request(stream_id: i32, operation: &str, payload: &str) -> Frame {
    client(
        0,
        0,
        stream_id,
        vec![Header::string("operation", operation)],
        payload.as_bytes(),
    )
}

fn connected() -> Session {
    let mut session = Session::new();
    let actions = session.on_frame(captured("py-connect"));
    assert!(
        matches!(actions.as_slice(), [Action::Authenticate(t)] if t.as_str() == "GOODTOKEN1234567")
    );
    let actions = session.on_authenticated(Some(probe()));
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("connect-ack-accepted")]
    );
    session
}

fn sent(actions: &[Action]) -> Vec<&Frame> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn sent_bytes(actions: &[Action]) -> Vec<Vec<u8>> {
    sent(actions).into_iter().map(Frame::encode).collect()
}

fn only_frame(actions: &[Action]) -> RpcMessage {
    match actions {
        [Action::Send(frame)] => {
            RpcMessage::from_frame(frame).unwrap_or_else(|| panic!("{frame:?}"))
        }
        other => panic!("expected one frame, got {other:?}"),
    }
}

fn dispatched(actions: &[Action]) -> &Request {
    match actions {
        [Action::Dispatch(request)] => request,
        other => panic!("expected a dispatch, got {other:?}"),
    }
}

/// The actions end the connection with PROTOCOL_ERROR carrying `text`.
fn assert_protocol_error(actions: &[Action], text: &str) {
    let Some(Action::Send(frame)) = actions.first() else {
        panic!("expected a PROTOCOL_ERROR first, got {actions:?}");
    };
    let message = RpcMessage::from_frame(frame).unwrap_or_else(|| panic!("{frame:?}"));
    assert_eq!(message.message_type, MessageType::ProtocolError);
    assert_eq!(message.flags, MessageFlags::NONE);
    assert_eq!(message.stream_id, 0);
    assert_eq!(
        message.string_header(":content-type"),
        Some("application/json")
    );
    assert_eq!(String::from_utf8_lossy(&message.payload), text);
    assert_eq!(actions.last(), Some(&Action::Close));
}

// --- connect ---

#[test]
fn python_connect_is_accepted_with_the_captured_ack() {
    let session = connected();
    assert_eq!(session.principal(), Some(&probe()));
    assert!(!session.is_finished());
}

#[test]
fn node_connect_is_accepted_too() {
    let mut session = Session::new();
    let actions = session.on_frame(captured("node-connect"));
    assert!(
        matches!(actions.as_slice(), [Action::Authenticate(t)] if t.as_str() == "GOODTOKEN1234567")
    );
    let actions = session.on_authenticated(Some(probe()));
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("connect-ack-accepted")]
    );
}

#[test]
fn a_bad_token_is_rejected_with_the_captured_ack_and_the_socket_left_to_the_client() {
    let mut session = Session::new();
    let actions = session.on_frame(captured("py-connect-bad-token"));
    assert!(matches!(actions.as_slice(), [Action::Authenticate(t)] if t.as_str() == "WRONGTOKEN"));
    let actions = session.on_authenticated(None);
    assert_eq!(actions.len(), 2);
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("connect-ack-rejected")]
    );
    assert_eq!(actions[1], Action::AwaitClientClose);
    assert!(session.is_finished());
    assert_eq!(session.principal(), None);
    // Whatever the client sends now is not served.
    assert!(session.on_frame(captured("py-ping")).is_empty());
    assert!(session
        .on_frame(captured("py-subscribe-to-topic"))
        .is_empty());
}

#[test]
fn connects_the_nucleus_rejects_without_a_lookup() {
    let version = |v: &str| Header::string(":version", v);
    let good_payload = br#"{"authToken":"GOODTOKEN1234567"}"#;
    let cases: Vec<(&str, Frame)> = vec![
        ("no :version", client(4, 0, 0, vec![], good_payload)),
        (
            "wrong :version",
            client(4, 0, 0, vec![version("0.2.0")], good_payload),
        ),
        (
            ":version not a string",
            client(4, 0, 0, vec![Header::int32(":version", 1)], good_payload),
        ),
        (
            "no payload (Node without SVCUID)",
            client(4, 0, 0, vec![version("0.1.0")], b""),
        ),
        (
            "not JSON",
            client(4, 0, 0, vec![version("0.1.0")], b"GOODTOKEN1234567"),
        ),
        (
            "no authToken",
            client(4, 0, 0, vec![version("0.1.0")], br#"{"token":"x"}"#),
        ),
        (
            "empty authToken",
            client(4, 0, 0, vec![version("0.1.0")], br#"{"authToken": ""}"#),
        ),
    ];
    for (why, frame) in cases {
        let mut session = Session::new();
        let actions = session.on_frame(frame);
        assert_eq!(
            sent_bytes(&actions),
            vec![captured_bytes("connect-ack-rejected")],
            "{why}"
        );
        assert_eq!(actions.last(), Some(&Action::AwaitClientClose), "{why}");
    }
}

#[test]
fn connect_ignores_unknown_auth_fields_and_header_case() {
    let mut session = Session::new();
    let frame = client(
        4,
        0,
        0,
        vec![Header::string(":Version", "0.1.0")],
        br#"{"authToken": "T", "extra": {"a": 1}}"#,
    );
    let actions = session.on_frame(frame);
    assert!(matches!(actions.as_slice(), [Action::Authenticate(t)] if t.as_str() == "T"));
}

#[test]
fn nothing_but_connect_may_come_first() {
    for first in [
        captured("py-ping"),
        captured("py-subscribe-to-topic"),
        client(5, 1, 0, vec![], b""),
    ] {
        let mut session = Session::new();
        assert_protocol_error(&session.on_frame(first), CONNECT_NOT_COMPLETED);
        assert!(session.is_finished());
    }
}

#[test]
fn nothing_may_come_while_the_token_is_checked() {
    let mut session = Session::new();
    session.on_frame(captured("py-connect"));
    assert_protocol_error(
        &session.on_frame(captured("py-connect")),
        CONNECT_NOT_COMPLETED,
    );
    // The late answer to the lookup changes nothing.
    assert!(session.on_authenticated(Some(probe())).is_empty());
}

#[test]
fn a_second_connect_is_a_protocol_error() {
    let mut session = connected();
    assert_protocol_error(
        &session.on_frame(captured("py-connect")),
        CONNECT_NOT_COMPLETED,
    );
}

#[test]
fn connect_on_a_stream_is_a_protocol_error() {
    let mut session = Session::new();
    let frame = client(
        4,
        0,
        1,
        vec![Header::string(":version", "0.1.0")],
        br#"{"authToken":"T"}"#,
    );
    assert_protocol_error(&session.on_frame(frame), INVALID_STREAM_ID);
}

// --- ping ---

#[test]
fn ping_is_echoed_with_its_custom_headers_and_payload() {
    let mut session = connected();
    let pong = only_frame(&session.on_frame(captured("py-ping")));
    assert_eq!(pong.message_type, MessageType::PingResponse);
    assert_eq!(pong.flags, MessageFlags::NONE);
    assert_eq!(pong.stream_id, 0);
    assert_eq!(pong.headers, vec![Header::string("x-probe", "1")]);
    assert_eq!(pong.payload, b"ping!");
}

#[test]
fn ping_without_extras_gets_a_bare_response() {
    let mut session = connected();
    let pong =
        only_frame(&session.on_frame(client(2, 0, 0, vec![Header::string(":odd", "x")], b"")));
    assert_eq!(pong.message_type, MessageType::PingResponse);
    assert!(pong.headers.is_empty());
    assert!(pong.payload.is_empty());
}

#[test]
fn ping_response_from_the_client_is_ignored() {
    let mut session = connected();
    assert!(session.on_frame(client(3, 0, 0, vec![], b"")).is_empty());
    assert!(!session.is_finished());
}

#[test]
fn other_connection_level_types_get_the_nucleus_internal_error() {
    for code in [5, 6, 7] {
        let mut session = connected();
        let actions = session.on_frame(client(code, 0, 0, vec![], b""));
        let Some(Action::Send(frame)) = actions.first() else {
            panic!("{actions:?}");
        };
        let message = RpcMessage::from_frame(frame).unwrap();
        assert_eq!(message.message_type, MessageType::InternalError);
        assert_eq!(
            message.string_header(":content-type"),
            Some("application/json")
        );
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(body["error"], "Unrecognized Message Type");
        assert_eq!(
            body["message"],
            format!(" message type value: {code} is not recognized as a valid request path.")
        );
        assert_eq!(actions.last(), Some(&Action::Close));
    }
}

// --- request/response and streams, byte for byte against the captures ---

#[test]
fn the_captured_python_session_is_answered_byte_for_byte() {
    let mut session = connected();

    // Stream 1: SubscribeToTopic; the response goes out with flags 0 and the stream stays open.
    let actions = session.on_frame(captured("py-subscribe-to-topic"));
    let subscribe = dispatched(&actions);
    assert_eq!(subscribe.stream, stream(1));
    assert_eq!(subscribe.operation, Operation::SubscribeToTopic);
    assert_eq!(subscribe.principal, probe());
    assert_eq!(subscribe.payload, br#"{"topic": "test/topic"}"#);
    let actions = session.respond(stream(1), b"{}".to_vec()).unwrap();
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("subscribe-to-topic-response")]
    );

    // Stream 2: PublishToTopic; an empty response is sent as `{}` with TERMINATE_STREAM.
    let actions = session.on_frame(captured("py-publish-json"));
    let publish = dispatched(&actions);
    assert_eq!(publish.operation, Operation::PublishToTopic);
    let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(
        body["publishMessage"]["jsonMessage"]["message"]["hello"],
        "world"
    );
    let actions = session.respond(stream(2), Vec::new()).unwrap();
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("publish-to-topic-response")]
    );

    // The event on stream 1.
    let event =
        br#"{"jsonMessage":{"message":{"hello":"world","n":1},"context":{"topic":"test/topic"}}}"#;
    let actions = session.send_event(stream(1), event.to_vec()).unwrap();
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("subscription-event")]
    );

    // Stream 3: the binary publish.
    let actions = session.on_frame(captured("py-publish-binary"));
    assert_eq!(dispatched(&actions).stream, stream(3));
    session.respond(stream(3), Vec::new()).unwrap();

    // Stream 4: a publish the policy denies.
    let actions = session.on_frame(request(
        4,
        "aws.greengrass#PublishToTopic",
        r#"{"topic":"forbidden/x","publishMessage":{"jsonMessage":{"message":{}}}}"#,
    ));
    assert_eq!(dispatched(&actions).stream, stream(4));
    let denied = IpcError::unauthorized(
        "Principal com.example.Probe is not authorized to perform aws.greengrass.ipc.pubsub:aws.greengrass#PublishToTopic on resource forbidden/x",
    );
    let actions = session.fail(stream(4), &denied).unwrap();
    assert_eq!(
        sent_bytes(&actions),
        vec![captured_bytes("unauthorized-error")]
    );

    // Streams 5 to 7; ListComponents on 7 is not implemented.
    for (id, op) in [
        (5, "GetConfiguration"),
        (6, "UpdateState"),
        (7, "ListComponents"),
    ] {
        let actions = session.on_frame(request(id, &format!("aws.greengrass#{op}"), "{}"));
        assert_eq!(dispatched(&actions).operation.short_name(), op);
    }
    let actions = session
        .fail(
            stream(7),
            &IpcError::not_supported(Operation::ListComponents.name()),
        )
        .unwrap();
    assert_eq!(sent_bytes(&actions), vec![captured_bytes("service-error")]);

    // The client closes the subscription with the captured empty TERMINATE.
    let actions = session.on_frame(captured("stream-close"));
    assert_eq!(actions, vec![Action::StreamClosed(stream(1))]);
    assert_eq!(
        session.send_event(stream(1), event.to_vec()),
        Err(SendError::StreamClosed(stream(1)))
    );
    let open: Vec<_> = session.open_streams().map(|(id, _)| id.get()).collect();
    assert_eq!(open, vec![5, 6]);
}

#[test]
fn node_requests_without_content_headers_are_dispatched_on_the_operation_alone() {
    let mut session = connected();
    let actions = session.on_frame(captured("node-subscribe-to-topic"));
    let subscribe = dispatched(&actions);
    assert_eq!(subscribe.operation, Operation::SubscribeToTopic);
    assert_eq!(subscribe.payload, br#"{"topic":"test/topic"}"#);
    session.respond(stream(1), b"{}".to_vec()).unwrap();
    session.on_frame(request(2, "aws.greengrass#GetConfiguration", "{}"));
    session.respond(stream(2), b"{}".to_vec()).unwrap();
    let actions = session.on_frame(captured("node-publish-binary"));
    assert_eq!(dispatched(&actions).stream, stream(3));
}

#[test]
fn responses_and_events_carry_the_operations_shapes() {
    let mut session = connected();
    session.on_frame(request(
        1,
        "aws.greengrass#SubscribeToIoTCore",
        r#"{"topicName":"a/+","qos":"1"}"#,
    ));
    let response = only_frame(&session.respond(stream(1), b"{}".to_vec()).unwrap());
    assert_eq!(response.message_type, MessageType::ApplicationMessage);
    assert_eq!(response.flags, MessageFlags::NONE);
    assert_eq!(
        response.string_header(":content-type"),
        Some("application/json")
    );
    assert_eq!(
        response.string_header("service-model-type"),
        Some("aws.greengrass#SubscribeToIoTCoreResponse")
    );
    let event = only_frame(
        &session
            .send_event(stream(1), br#"{"message":{}}"#.to_vec())
            .unwrap(),
    );
    assert_eq!(event.flags, MessageFlags::NONE);
    assert_eq!(
        event.string_header("service-model-type"),
        Some("aws.greengrass#IoTCoreMessage")
    );

    session.on_frame(request(2, "aws.greengrass#GetConfiguration", "{}"));
    let response = only_frame(
        &session
            .respond(stream(2), br#"{"value":{}}"#.to_vec())
            .unwrap(),
    );
    assert_eq!(response.flags, MessageFlags::TERMINATE_STREAM);
    assert_eq!(
        response.string_header("service-model-type"),
        Some("aws.greengrass#GetConfigurationResponse")
    );
    assert_eq!(
        session.respond(stream(2), b"{}".to_vec()),
        Err(SendError::StreamClosed(stream(2)))
    );
}

#[test]
fn a_server_close_has_the_same_shape_as_the_clients() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    session.respond(stream(1), b"{}".to_vec()).unwrap();
    let actions = session.close_stream(stream(1)).unwrap();
    assert_eq!(sent_bytes(&actions), vec![captured_bytes("stream-close")]);
    // The client's close crossing ours is ignored.
    assert!(session.on_frame(captured("stream-close")).is_empty());
    assert!(!session.is_finished());
}

#[test]
fn events_wait_for_the_response_and_only_streams_take_them() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    assert_eq!(
        session.send_event(stream(1), b"{}".to_vec()),
        Err(SendError::ResponsePending {
            stream: stream(1),
            operation: Operation::SubscribeToTopic
        })
    );
    session.respond(stream(1), b"{}".to_vec()).unwrap();
    assert_eq!(
        session.respond(stream(1), b"{}".to_vec()),
        Err(SendError::AlreadyResponded {
            stream: stream(1),
            operation: Operation::SubscribeToTopic
        })
    );
    session.on_frame(request(2, "aws.greengrass#PublishToTopic", "{}"));
    assert_eq!(
        session.send_event(stream(2), b"{}".to_vec()),
        Err(SendError::NotStreaming {
            stream: stream(2),
            operation: Operation::PublishToTopic
        })
    );
    assert_eq!(
        session.send_event(stream(9), b"{}".to_vec()),
        Err(SendError::UnknownStream(stream(9)))
    );
}

#[test]
fn a_subscription_can_fail_after_its_response() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    session.respond(stream(1), b"{}".to_vec()).unwrap();
    let error = only_frame(
        &session
            .fail(stream(1), &IpcError::service("spooler gone"))
            .unwrap(),
    );
    assert_eq!(error.message_type, MessageType::ApplicationError);
    assert_eq!(error.flags, MessageFlags::TERMINATE_STREAM);
    assert_eq!(error.payload, br#"{"message":"spooler gone"}"#);
    assert_eq!(session.open_streams().count(), 0);
}

#[test]
fn an_unmodelled_failure_is_plain_text_without_a_shape() {
    let mut session = connected();
    session.on_frame(request(
        1,
        "aws.greengrass#PublishToTopic",
        r#"{"topic": 7}"#,
    ));
    let error = only_frame(
        &session
            .fail(stream(1), &IpcError::unmodelled("invalid type: integer"))
            .unwrap(),
    );
    assert_eq!(error.message_type, MessageType::ApplicationError);
    assert_eq!(error.flags, MessageFlags::TERMINATE_STREAM);
    assert_eq!(
        error.headers,
        vec![Header::string(":content-type", "text/plain")]
    );
    assert_eq!(error.payload, b"InternalServerError");
}

#[test]
fn an_oversized_answer_is_refused_and_the_stream_stays_open() {
    let mut session = connected();
    session.on_frame(request(1, "aws.greengrass#GetConfiguration", "{}"));
    let huge = vec![b' '; MAX_FRAME_LEN];
    assert!(matches!(
        session.respond(stream(1), huge),
        Err(SendError::Frame { .. })
    ));
    let error = IpcError::service("configuration too large");
    assert!(session.fail(stream(1), &error).is_ok());
}

// --- unknown operations ---

#[test]
fn an_operation_outside_the_model_gets_the_nucleus_unsupported_reply() {
    let mut session = connected();
    let reply = only_frame(&session.on_frame(request(1, "aws.greengrass#NoSuchThing", "{}")));
    assert_eq!(reply.message_type, MessageType::ApplicationError);
    assert_eq!(reply.flags, MessageFlags::TERMINATE_STREAM);
    assert_eq!(reply.stream_id, 1);
    assert_eq!(
        reply.headers,
        vec![Header::string(":content-type", "application/json")]
    );
    assert_eq!(
        String::from_utf8_lossy(&reply.payload),
        "{ \"error\": \"Unsupported Operation\", \"message\": \"aws.greengrass#NoSuchThing is an unsupported operation.\" }"
    );
    // The connection goes on, and stream 1 is spent.
    assert_eq!(session.open_streams().count(), 0);
    let actions = session.on_frame(request(2, "aws.greengrass#ListComponents", "{}"));
    assert_eq!(dispatched(&actions).operation, Operation::ListComponents);
}

#[test]
fn a_stream_past_the_limit_gets_service_error_and_the_connection_goes_on() {
    let mut session = connected();
    session.set_max_open_streams(2);
    for id in 1..=2 {
        let actions = session.on_frame(request(
            id,
            "aws.greengrass#SubscribeToConfigurationUpdate",
            "{}",
        ));
        assert_eq!(dispatched(&actions).stream, stream(id));
        session.respond(stream(id), b"{}".to_vec()).unwrap();
    }
    // A third, while two are open: refused on its own stream, not dispatched.
    let refused = only_frame(&session.on_frame(request(
        3,
        "aws.greengrass#SubscribeToConfigurationUpdate",
        "{}",
    )));
    assert_eq!(refused.message_type, MessageType::ApplicationError);
    assert_eq!(refused.flags, MessageFlags::TERMINATE_STREAM);
    assert_eq!(refused.stream_id, 3);
    assert_eq!(
        refused.string_header("service-model-type"),
        Some("aws.greengrass#ServiceError")
    );
    let body: serde_json::Value = serde_json::from_slice(&refused.payload).unwrap();
    assert_eq!(
        body["message"],
        "too many open streams on this connection: 2 are open, the limit is 2; close some first"
    );
    assert_eq!(session.open_streams().count(), 2);
    // Closing one makes room; the refused id is spent, so the next is 4.
    let close = client(0, 2, 1, vec![], b"");
    assert_eq!(
        session.on_frame(close),
        vec![Action::StreamClosed(stream(1))]
    );
    let actions = session.on_frame(request(4, "aws.greengrass#GetConfiguration", "{}"));
    assert_eq!(dispatched(&actions).operation, Operation::GetConfiguration);
    assert_eq!(session.open_streams().count(), 2);
}

#[test]
fn operation_names_are_exact() {
    let mut session = connected();
    let reply = only_frame(&session.on_frame(request(1, "aws.greengrass#publishtotopic", "{}")));
    assert_eq!(reply.message_type, MessageType::ApplicationError);
}

// --- wrong order and malformed envelopes ---

#[test]
fn a_skipped_stream_id_is_a_protocol_error() {
    let mut session = connected();
    assert_protocol_error(
        &session.on_frame(request(2, "aws.greengrass#PublishToTopic", "{}")),
        STREAM_ID_SKIPPED,
    );
}

#[test]
fn a_new_stream_needs_an_operation() {
    let mut session = connected();
    assert_protocol_error(
        &session.on_frame(client(0, 0, 1, vec![], b"{}")),
        MISSING_OPERATION,
    );
    let mut session = connected();
    let empty = client(0, 0, 1, vec![Header::string("operation", "")], b"{}");
    assert_protocol_error(&session.on_frame(empty), MISSING_OPERATION);
    let mut session = connected();
    let mistyped = client(0, 0, 1, vec![Header::int32("operation", 1)], b"{}");
    assert_protocol_error(&session.on_frame(mistyped), MISSING_OPERATION);
}

#[test]
fn a_message_on_a_closed_stream_is_a_protocol_error_unless_it_terminates() {
    let mut session = connected();
    session.on_frame(request(1, "aws.greengrass#PublishToTopic", "{}"));
    session.respond(stream(1), Vec::new()).unwrap();
    assert!(session.on_frame(client(0, 2, 1, vec![], b"")).is_empty());
    assert_protocol_error(
        &session.on_frame(client(0, 0, 1, vec![], b"{}")),
        STREAM_ID_BELOW_LAST,
    );
}

#[test]
fn later_messages_on_an_open_stream_are_ignored() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    let again = client(
        0,
        0,
        1,
        vec![Header::string(
            "operation",
            "aws.greengrass#SubscribeToTopic",
        )],
        b"{}",
    );
    assert!(session.on_frame(again).is_empty());
    assert_eq!(session.open_streams().count(), 1);
}

#[test]
fn a_first_message_that_already_terminates_is_ignored_but_spends_its_id() {
    let mut session = connected();
    let closing = client(
        0,
        2,
        1,
        vec![Header::string("operation", "aws.greengrass#PublishToTopic")],
        b"{}",
    );
    assert!(session.on_frame(closing).is_empty());
    assert_eq!(session.last_stream_id(), 1);
    assert_eq!(session.open_streams().count(), 0);
    let actions = session.on_frame(request(2, "aws.greengrass#PublishToTopic", "{}"));
    assert_eq!(dispatched(&actions).stream, stream(2));
}

#[test]
fn only_application_messages_travel_on_streams() {
    for code in [2, 3, 4, 5, 6, 7, 8, -1] {
        let mut session = connected();
        let frame = client(
            code,
            0,
            1,
            vec![Header::string("operation", "aws.greengrass#PublishToTopic")],
            b"",
        );
        assert_protocol_error(&session.on_frame(frame), INVALID_STREAM_ID);
    }
}

#[test]
fn a_negative_stream_id_is_a_protocol_error() {
    let mut session = connected();
    let frame = client(
        0,
        0,
        -1,
        vec![Header::string("operation", "aws.greengrass#PublishToTopic")],
        b"",
    );
    assert_protocol_error(&session.on_frame(frame), INVALID_STREAM_ID);
}

#[test]
fn application_types_on_stream_zero_are_protocol_errors() {
    for code in [0, 1, 8, 100, -5] {
        let mut session = connected();
        assert_protocol_error(
            &session.on_frame(client(code, 0, 0, vec![], b"")),
            INVALID_MESSAGE_TYPE,
        );
    }
}

#[test]
fn missing_or_mistyped_control_headers_are_protocol_errors() {
    let frames = [
        Frame::new(
            vec![
                Header::int32(":message-type", 2),
                Header::int32(":message-flags", 0),
            ],
            vec![],
        ),
        Frame::new(
            vec![
                Header::int32(":message-type", 2),
                Header::int32(":message-flags", 0),
                Header::string(":stream-id", "0"),
            ],
            vec![],
        ),
        Frame::new(
            vec![
                Header::int32(":message-type", 2),
                Header::new(":message-flags", HeaderValue::Int64(0)),
                Header::int32(":stream-id", 0),
            ],
            vec![],
        ),
        Frame::new(vec![], vec![]),
    ];
    for frame in frames {
        let frame = frame.unwrap();
        let mut session = connected();
        assert_protocol_error(&session.on_frame(frame.clone()), MISSING_FIELDS);
        // Before the handshake too: the envelope is read first.
        let mut fresh = Session::new();
        assert_protocol_error(&fresh.on_frame(frame), MISSING_FIELDS);
    }
}

#[test]
fn control_header_names_match_in_any_case() {
    let mut session = connected();
    let frame = Frame::new(
        vec![
            Header::int32(":MESSAGE-TYPE", 2),
            Header::int32(":Message-Flags", 0),
            Header::int32(":STREAM-ID", 0),
        ],
        vec![],
    )
    .unwrap();
    let pong = only_frame(&session.on_frame(frame));
    assert_eq!(pong.message_type, MessageType::PingResponse);
}

// --- teardown ---

#[test]
fn a_protocol_error_ends_every_open_stream_before_closing() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    session.respond(stream(1), b"{}".to_vec()).unwrap();
    session.on_frame(request(
        2,
        "aws.greengrass#SubscribeToConfigurationUpdate",
        "{}",
    ));
    let actions = session.on_frame(request(9, "aws.greengrass#PublishToTopic", "{}"));
    assert_protocol_error(&actions, STREAM_ID_SKIPPED);
    assert_eq!(
        actions[1..],
        [
            Action::StreamClosed(stream(1)),
            Action::StreamClosed(stream(2)),
            Action::Close
        ]
    );
    assert!(session.on_frame(captured("py-ping")).is_empty());
    assert_eq!(
        session.respond(stream(2), b"{}".to_vec()),
        Err(SendError::NotConnected)
    );
}

#[test]
fn a_disconnect_ends_every_open_stream() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    session.on_frame(request(2, "aws.greengrass#PublishToTopic", "{}"));
    assert_eq!(
        session.on_disconnected(),
        vec![
            Action::StreamClosed(stream(1)),
            Action::StreamClosed(stream(2))
        ]
    );
    assert!(session.is_finished());
}

#[test]
fn a_decode_error_closes_without_a_reply() {
    let mut session = connected();
    session.on_frame(captured("py-subscribe-to-topic"));
    assert_eq!(
        session.on_decode_error(),
        vec![Action::StreamClosed(stream(1)), Action::Close]
    );
}

// --- robustness ---

fn any_client_frame() -> impl Strategy<Value = Frame> {
    let operation = prop_oneof![
        Just(None),
        Just(Some("aws.greengrass#PublishToTopic")),
        Just(Some("aws.greengrass#SubscribeToTopic")),
        Just(Some("aws.greengrass#Nope")),
        Just(Some("")),
    ];
    (
        prop_oneof![Just(0), Just(2), Just(3), Just(4), -2i32..10],
        prop_oneof![Just(0), Just(2), any::<i32>()],
        prop_oneof![Just(0), 1i32..4, -1i32..6],
        operation,
        proptest::option::of("[a-z:]{1,8}"),
        prop_oneof![
            Just(b"{}".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..24)
        ],
    )
        .prop_map(|(message_type, flags, stream_id, op, extra, payload)| {
            let mut headers = Vec::new();
            if let Some(op) = op {
                headers.push(Header::string("operation", op));
            }
            if let Some(name) = extra {
                headers.push(Header::string(name, "v"));
            }
            if message_type == 4 {
                headers.push(Header::string(":version", "0.1.0"));
            }
            client(message_type, flags, stream_id, headers, &payload)
        })
}

proptest! {
    #[test]
    fn any_frame_sequence_gets_well_formed_answers(frames in proptest::collection::vec(any_client_frame(), 0..24), accept in any::<bool>()) {
        let mut session = Session::new();
        let mut finished = false;
        for frame in frames {
            let mut actions = session.on_frame(frame);
            if actions.iter().any(|a| matches!(a, Action::Authenticate(_))) {
                actions.extend(session.on_authenticated(accept.then(probe)));
            }
            if finished {
                prop_assert!(actions.is_empty());
            }
            for action in &actions {
                match action {
                    Action::Send(frame) => {
                        let bytes = frame.encode();
                        let decoded = Frame::decode(&bytes);
                        prop_assert_eq!(decoded.as_ref(), Ok(frame));
                        prop_assert!(RpcMessage::from_frame(frame).is_some());
                    }
                    Action::Dispatch(request) => {
                        // Answer at once, as a host that implements nothing would.
                        let answer = session.fail(request.stream, &IpcError::not_supported(request.operation.name()));
                        prop_assert!(answer.is_ok());
                    }
                    Action::Close | Action::AwaitClientClose => finished = true,
                    Action::Authenticate(_) | Action::StreamClosed(_) => {}
                }
            }
            prop_assert_eq!(finished, session.is_finished());
        }
    }
}
