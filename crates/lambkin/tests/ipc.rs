//! The IPC socket seen through a raw Unix stream: a wrong token is refused with a rejected
//! CONNECT_ACK and the connection ends; a truncated frame or a bad CRC ends only the
//! connection that sent it, while another client keeps working. The real SDK clients are
//! driven in `tests/conformance/test_ipc.py`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lambkin_proto::eventstream::{Decoder, Frame, Header};
use lambkin_proto::ipc::{MessageFlags, MessageType, RpcMessage};
use serde_json::json;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);
/// The host lingers up to 5 s for a rejected client to close first (spec §1.3).
const REJECTED_CLOSE: Duration = Duration::from_secs(10);
const COMPONENT: &str = "com.example.IpcProbe";

/// Deploys a component whose Run step writes its `SVCUID` to `token` in its work directory,
/// and returns the token.
fn deploy_probe(root: &Path, scratch: &Path) -> String {
    let recipes = scratch.join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::create_dir_all(scratch.join("artifacts")).unwrap();
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": COMPONENT,
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "printf '%s' \"$SVCUID\" > token.new && mv token.new token && exec sleep 600"
        }}],
    });
    std::fs::write(
        recipes.join(format!("{COMPONENT}-1.0.0.json")),
        recipe.to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["deploy", "-r"])
        .arg(&recipes)
        .arg("-a")
        .arg(scratch.join("artifacts"))
        .args(["-m", &format!("{COMPONENT}=1.0.0"), "--root"])
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token_file = root.join("work").join(COMPONENT).join("token");
    wait_for(PATIENCE, || {
        std::fs::read_to_string(&token_file)
            .ok()
            .filter(|t| !t.is_empty())
    })
    .expect("the component did not write its token")
}

fn connect(root: &Path) -> UnixStream {
    let stream = UnixStream::connect(root.join("ipc.socket")).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn connect_frame(token: &str) -> Vec<u8> {
    RpcMessage::new(MessageType::Connect, MessageFlags::NONE, 0)
        .with_header(Header::string(":version", "0.1.0"))
        .with_payload(format!("{{\"authToken\": \"{token}\"}}"))
        .to_frame()
        .unwrap()
        .encode()
}

/// Reads until one whole frame has arrived.
fn read_message(stream: &mut UnixStream, decoder: &mut Decoder) -> RpcMessage {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame().unwrap() {
            return RpcMessage::from_frame(&frame).unwrap();
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the host closed the connection");
        decoder.push(&buf[..n]);
    }
}

/// True when the host closes the connection (EOF or reset) within `limit`.
fn closed_within(stream: &mut UnixStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
}

fn authenticated(root: &Path, token: &str) -> (UnixStream, Decoder) {
    let mut stream = connect(root);
    let mut decoder = Decoder::new();
    stream.write_all(&connect_frame(token)).unwrap();
    let ack = read_message(&mut stream, &mut decoder);
    assert_eq!(ack.message_type, MessageType::ConnectAck);
    assert_eq!(ack.flags, MessageFlags::CONNECTION_ACCEPTED);
    (stream, decoder)
}

/// GetConfiguration on `stream_id`, as the Node client sends it (only `operation`).
fn get_configuration(stream_id: i32) -> Vec<u8> {
    RpcMessage::new(
        MessageType::ApplicationMessage,
        MessageFlags::NONE,
        stream_id,
    )
    .with_header(Header::string(
        "operation",
        "aws.greengrass#GetConfiguration",
    ))
    .with_payload(b"{}".to_vec())
    .to_frame()
    .unwrap()
    .encode()
}

#[test]
fn a_wrong_token_is_refused_and_bad_frames_close_only_their_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut host = Host::start(&root);
    let token = deploy_probe(&root, tmp.path());
    assert_eq!(token.len(), 26, "token {token:?}");

    // A wrong token: a rejected CONNECT_ACK, then the connection ends.
    let mut refused = connect(&root);
    let mut decoder = Decoder::new();
    refused.write_all(&connect_frame("WRONGTOKEN")).unwrap();
    let ack = read_message(&mut refused, &mut decoder);
    assert_eq!(ack.message_type, MessageType::ConnectAck);
    assert_eq!(ack.flags, MessageFlags::NONE);
    assert!(ack.payload.is_empty());
    assert!(closed_within(&mut refused, REJECTED_CLOSE));

    // A good client, open throughout.
    let (mut good, mut good_decoder) = authenticated(&root, &token);

    // A frame with a bad message CRC closes its own connection, with no reply.
    let (mut bad_crc, _) = authenticated(&root, &token);
    let mut frame = get_configuration(1);
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    bad_crc.write_all(&frame).unwrap();
    assert!(closed_within(&mut bad_crc, PATIENCE));

    // A truncated frame (the client gives up half-way) closes its own connection.
    let (mut truncated, _) = authenticated(&root, &token);
    let frame = get_configuration(1);
    truncated.write_all(&frame[..frame.len() / 2]).unwrap();
    truncated.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_within(&mut truncated, PATIENCE));

    // Garbage before any CONNECT closes that connection too.
    let mut garbage = connect(&root);
    garbage.write_all(&[0xff; 64]).unwrap();
    assert!(closed_within(&mut garbage, PATIENCE));

    // The good client still gets answers.
    good.write_all(&get_configuration(1)).unwrap();
    let reply = read_message(&mut good, &mut good_decoder);
    assert_eq!(reply.message_type, MessageType::ApplicationMessage);
    assert_eq!(reply.stream_id, 1);
    assert_eq!(
        reply.string_header("service-model-type"),
        Some("aws.greengrass#GetConfigurationResponse")
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["componentName"], COMPONENT);

    // Decodes the frame the good client got, to be sure it was one frame and nothing more.
    let _: Option<Frame> = good_decoder.next_frame().unwrap();

    assert_eq!(host.stop(), Some(0));
    assert!(
        !root.join("ipc.socket").exists(),
        "the socket is removed when the host stops"
    );
}
