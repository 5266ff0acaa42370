//! The IPC socket seen through a raw Unix stream, as a faulty or hostile client would use it:
//! a wrong token is refused with a rejected CONNECT_ACK and the connection ends; a truncated
//! frame or a bad CRC ends only the connection that sent it, while another client keeps
//! working. Before CONNECT a peer can make the host hold almost nothing (a frame over 64 KiB
//! closes it; a user's connections are limited on their own, apart from the components');
//! after it, a subscriber that never reads holds its queue's bytes and no more, streams are
//! capped per connection, a subscription is allowed only inside what the policy grants, and a
//! topic the broker cannot take is refused before it reaches the spool. The real SDK clients
//! are driven in `tests/conformance/test_ipc.py`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use lambkin_proto::eventstream::{Decoder, Frame, Header};
use lambkin_proto::ipc::{MessageFlags, MessageType, RpcMessage};
use serde_json::{json, Value};
use support::broker::Broker;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);
/// The host lingers up to 5 s for a rejected client to close first (spec §1.3).
const REJECTED_CLOSE: Duration = Duration::from_secs(10);
const COMPONENT: &str = "com.example.IpcProbe";

/// Deploys a component whose Run step writes its `SVCUID` to `token` in its work directory,
/// and returns the token.
fn deploy_probe(root: &Path, scratch: &Path) -> String {
    deploy_probe_with(root, scratch, json!({}))
}

/// As [`deploy_probe`], the component's default configuration being `configuration` (its
/// `accessControl`, say).
fn deploy_probe_with(root: &Path, scratch: &Path, configuration: Value) -> String {
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": COMPONENT,
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": { "DefaultConfiguration": configuration },
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "printf '%s' \"$SVCUID\" > token.new && mv token.new token && exec sleep 600"
        }}],
    });
    support::deployed(
        root,
        scratch,
        &[recipe],
        &["-m", &format!("{COMPONENT}=1.0.0")],
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

    // One frame and nothing more: nothing else is buffered, and the next request's answer
    // is the next message on the connection (a repeated or stray frame would come first).
    assert!(good_decoder.next_frame().unwrap().is_none());
    assert_eq!(good_decoder.buffered_len(), 0);
    good.write_all(&get_configuration(2)).unwrap();
    let reply = read_message(&mut good, &mut good_decoder);
    assert_eq!(
        (reply.message_type, reply.stream_id),
        (MessageType::ApplicationMessage, 2)
    );

    assert_eq!(host.stop(), Some(0));
    assert!(
        !root.join("ipc.socket").exists(),
        "the socket is removed when the host stops"
    );
}

// ------------------------------------------------------------------------------------------
// The hostile and faulty clients.

/// A request on `stream_id` for `operation`, as the Node client sends it.
fn request(stream_id: i32, operation: &str, payload: &Value) -> Vec<u8> {
    RpcMessage::new(
        MessageType::ApplicationMessage,
        MessageFlags::NONE,
        stream_id,
    )
    .with_header(Header::string(
        "operation",
        format!("aws.greengrass#{operation}"),
    ))
    .with_payload(payload.to_string().into_bytes())
    .to_frame()
    .unwrap()
    .encode()
}

/// The answer's `service-model-type` and body.
fn answer(message: &RpcMessage) -> (String, Value) {
    let shape = message
        .string_header("service-model-type")
        .unwrap_or("")
        .to_owned();
    let body = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
    (shape, body)
}

/// Sends one request and reads its answer (the client has nothing else open).
fn call(
    stream: &mut UnixStream,
    decoder: &mut Decoder,
    stream_id: i32,
    operation: &str,
    payload: Value,
) -> (String, Value) {
    stream
        .write_all(&request(stream_id, operation, &payload))
        .unwrap();
    let reply = read_message(stream, decoder);
    assert_eq!(reply.stream_id, stream_id);
    answer(&reply)
}

/// The host's resident memory, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// A scratch directory other users can pass through, and the host's root in it.
fn open_scratch() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    (tmp, root)
}

#[test]
fn unauthenticated_connections_announcing_large_frames_cost_the_host_nothing() {
    const ATTACKERS: usize = 100;
    const ANNOUNCED: u32 = 16_000_000;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let token = deploy_probe(&root, tmp.path());
    let (mut good, mut good_decoder) = authenticated(&root, &token);
    let (shape, _) = call(
        &mut good,
        &mut good_decoder,
        1,
        "GetConfiguration",
        json!({}),
    );
    assert_eq!(shape, "aws.greengrass#GetConfigurationResponse");
    let before = vm_rss_kib(host.pid());

    // Each sends a valid 16 MB frame but its last byte, as much of it as the host takes, and
    // holds its connection open: no CONNECT, so nobody knows who they are.
    let frame = Frame::new(vec![], vec![0x5a; ANNOUNCED as usize - 16])
        .unwrap()
        .encode();
    let mut attackers = Vec::new();
    let mut taken = 0usize;
    for _ in 0..ATTACKERS {
        let mut stream = connect(&root);
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        for chunk in frame[..frame.len() - 1].chunks(64 * 1024) {
            match stream.write_all(chunk) {
                Ok(()) => taken += chunk.len(),
                Err(_) => break,
            }
        }
        attackers.push(stream);
    }
    // While they hold on, the host has not grown…
    let after = vm_rss_kib(host.pid());
    let growth = after.saturating_sub(before);
    println!(
        "host VmRSS {before} KiB before, {after} KiB with {ATTACKERS} connections sending a {ANNOUNCED}-byte frame ({taken} bytes taken before the host closed them); VmHWM {} KiB",
        status_kib(host.pid(), "VmHWM:")
    );
    assert!(growth < 10 * 1024, "host grew by {growth} KiB");
    // … because it closed each of them on the frame's prelude.
    for stream in &mut attackers {
        assert!(
            closed_within(stream, PATIENCE),
            "an attacker is still connected"
        );
    }

    // The component's connection, open throughout, still gets answers, and so does a new one.
    let (shape, body) = call(
        &mut good,
        &mut good_decoder,
        2,
        "GetConfiguration",
        json!({}),
    );
    assert_eq!(shape, "aws.greengrass#GetConfigurationResponse", "{body}");
    let (mut again, mut again_decoder) = authenticated(&root, &token);
    let (shape, _) = call(
        &mut again,
        &mut again_decoder,
        1,
        "GetConfiguration",
        json!({}),
    );
    assert_eq!(shape, "aws.greengrass#GetConfigurationResponse");
}

/// Opens `count` connections to the socket and keeps them open: whatever the host closes is
/// opened again, until stdin closes. Prints `holding N` once the first round is done.
const HOLDER: &str = r#"
import resource, selectors, socket, sys

path, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
selector = selectors.DefaultSelector()
held = 0

def open_one():
    global held
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        return
    s.setblocking(False)
    selector.register(s, selectors.EVENT_READ)
    held += 1

for _ in range(count):
    open_one()
print("holding", held, flush=True)
selector.register(sys.stdin, selectors.EVENT_READ)
reopened = 0
while True:
    closed = 0
    for key, _ in selector.select(timeout=1):
        if key.fileobj is sys.stdin:
            print("reopened", reopened, flush=True)
            sys.exit(0)
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fileobj)
            key.fileobj.close()
            held -= 1
            closed += 1
    for _ in range(closed):
        open_one()
        reopened += 1
"#;

/// A line from `child`'s stdout, within `limit`.
fn line_within(lines: &std::sync::mpsc::Receiver<String>, limit: Duration) -> String {
    lines
        .recv_timeout(limit)
        .expect("the child said nothing in time")
}

#[test]
fn a_local_user_holding_thousands_of_connections_does_not_keep_a_component_out() {
    require_root!("running a client as another user (nobody)");
    let (tmp, root) = open_scratch();
    let host = Host::start(&root);
    let token = deploy_probe(&root, tmp.path());
    let script = tmp.path().join("holder.py");
    std::fs::write(&script, HOLDER).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut holder: Child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
        ])
        .arg(&script)
        .arg(root.join("ipc.socket"))
        .arg("2000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = holder.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let holding = line_within(&lines, PATIENCE);
    println!("nobody: {holding}");
    assert!(holding.starts_with("holding "), "{holding}");

    // While nobody holds (and keeps reopening) every connection it can, the component
    // connects within the Python client's CONNECT_ACK timeout (10 s) and is served.
    let mut component = connect(&root);
    component
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut decoder = Decoder::new();
    component.write_all(&connect_frame(&token)).unwrap();
    let ack = read_message(&mut component, &mut decoder);
    assert_eq!(ack.message_type, MessageType::ConnectAck);
    assert_eq!(ack.flags, MessageFlags::CONNECTION_ACCEPTED);
    let (shape, _) = call(
        &mut component,
        &mut decoder,
        1,
        "GetConfiguration",
        json!({}),
    );
    assert_eq!(shape, "aws.greengrass#GetConfigurationResponse");

    drop(holder.stdin.take());
    let reopened = line_within(&lines, PATIENCE);
    println!("nobody: {reopened}");
    assert!(holder.wait().unwrap().success());
    drop(host);
}

/// A component cannot multiply what it makes the host hold by opening more connections: its
/// subscriptions on all of them share one budget. Four connections of one component, each
/// subscribed to four topics of its own and reading nothing; 4 MiB messages fill every
/// subscription's queue (8 MiB each, 128 MiB in all, were each connection its own budget of
/// 32 MiB); the host grows by less than 64 MiB.
#[test]
fn many_connections_of_one_component_share_one_subscription_budget() {
    const CONNECTIONS: usize = 4;
    const TOPICS: usize = 4;
    const SIZE: usize = 4 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let token = deploy_probe_with(
        &root,
        tmp.path(),
        json!({"accessControl": {"aws.greengrass.ipc.pubsub": {
            "probe:pubsub:1": {"operations": ["*"], "resources": ["held/*"]}
        }}}),
    );
    let mut subscribers = Vec::new();
    for c in 0..CONNECTIONS {
        let (mut stream, mut decoder) = authenticated(&root, &token);
        for t in 0..TOPICS {
            let (shape, body) = call(
                &mut stream,
                &mut decoder,
                t as i32 + 1,
                "SubscribeToTopic",
                json!({"topic": format!("held/{c}-{t}"), "receiveMode": "RECEIVE_ALL_MESSAGES"}),
            );
            assert_eq!(shape, "aws.greengrass#SubscribeToTopicResponse", "{body}");
        }
        subscribers.push((stream, decoder));
    }
    let (mut publisher, mut publisher_decoder) = authenticated(&root, &token);
    let before = vm_rss_kib(host.pid());
    let mut n = 0;
    for c in 0..CONNECTIONS {
        for t in 0..TOPICS {
            for _ in 0..2 {
                n += 1;
                // Each message its own bytes: nothing for the host to share between queues.
                let message = base64::engine::general_purpose::STANDARD.encode(vec![n as u8; SIZE]);
                let (shape, body) = call(
                    &mut publisher,
                    &mut publisher_decoder,
                    n,
                    "PublishToTopic",
                    json!({"topic": format!("held/{c}-{t}"),
                           "publishMessage": {"binaryMessage": {"message": message}}}),
                );
                assert_eq!(shape, "aws.greengrass#PublishToTopicResponse", "{body}");
            }
        }
    }
    let after = vm_rss_kib(host.pid());
    let growth = after.saturating_sub(before);
    println!(
        "host VmRSS {before} KiB before, {after} KiB after {n} messages of {SIZE} bytes to {CONNECTIONS} connections of one component that do not read; VmHWM {} KiB",
        status_kib(host.pid(), "VmHWM:")
    );
    assert!(growth < 64 * 1024, "host grew by {growth} KiB");
    drop(subscribers);
}

#[test]
fn a_subscriber_that_never_reads_large_messages_holds_its_bytes_and_no_more() {
    const MESSAGES: usize = 12;
    const SIZE: usize = 16 * 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let token = deploy_probe_with(
        &root,
        tmp.path(),
        json!({"accessControl": {"aws.greengrass.ipc.pubsub": {
            "probe:pubsub:1": {"operations": ["*"], "resources": ["big/topic"]}
        }}}),
    );
    let (mut subscriber, mut subscriber_decoder) = authenticated(&root, &token);
    let (shape, body) = call(
        &mut subscriber,
        &mut subscriber_decoder,
        1,
        "SubscribeToTopic",
        json!({"topic": "big/topic", "receiveMode": "RECEIVE_ALL_MESSAGES"}),
    );
    assert_eq!(shape, "aws.greengrass#SubscribeToTopicResponse", "{body}");
    let (mut publisher, mut publisher_decoder) = authenticated(&root, &token);
    let before = vm_rss_kib(host.pid());

    // The subscriber reads nothing more; the publisher sends 16 MiB messages, each answered
    // once it is queued for the subscriber.
    let message = base64::engine::general_purpose::STANDARD.encode(vec![0xa5_u8; SIZE]);
    for n in 0..MESSAGES {
        let (shape, body) = call(
            &mut publisher,
            &mut publisher_decoder,
            n as i32 + 1,
            "PublishToTopic",
            json!({"topic": "big/topic", "publishMessage": {"binaryMessage": {"message": message}}}),
        );
        assert_eq!(shape, "aws.greengrass#PublishToTopicResponse", "{body}");
    }
    let after = vm_rss_kib(host.pid());
    let growth = after.saturating_sub(before);
    println!(
        "host VmRSS {before} KiB before, {after} KiB after {MESSAGES} messages of {SIZE} bytes to a subscriber that does not read; VmHWM {} KiB",
        status_kib(host.pid(), "VmHWM:")
    );
    assert!(growth < 64 * 1024, "host grew by {growth} KiB");

    // A last, small message; the subscriber reads at last, and gets the newest messages and
    // that one: the oldest were dropped, and it is still served.
    let (shape, _) = call(
        &mut publisher,
        &mut publisher_decoder,
        MESSAGES as i32 + 1,
        "PublishToTopic",
        json!({"topic": "big/topic", "publishMessage": {"jsonMessage": {"message": {"last": true}}}}),
    );
    assert_eq!(shape, "aws.greengrass#PublishToTopicResponse");
    let mut received = 0;
    loop {
        let event = read_message(&mut subscriber, &mut subscriber_decoder);
        let (shape, body) = answer(&event);
        assert_eq!(shape, "aws.greengrass#SubscriptionResponseMessage");
        if body["jsonMessage"]["message"]["last"] == true {
            break;
        }
        assert_eq!(
            body["binaryMessage"]["message"].as_str().map(str::len),
            Some(message.len())
        );
        received += 1;
    }
    println!("the subscriber got {received} of the {MESSAGES} large messages");
    assert!(received < MESSAGES, "nothing was dropped");
}

#[test]
fn streams_past_the_cap_are_refused_and_the_host_stays_responsive() {
    const CAP: i32 = 1024;
    const TRIED: i32 = 1500;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    let token = deploy_probe(&root, tmp.path());
    let (mut stream, mut decoder) = authenticated(&root, &token);

    // SubscribeToConfigurationUpdate needs no grant: a component opens as many as it likes,
    // in batches so that neither side's socket buffer fills.
    let mut opened = 0;
    let mut refused = Vec::new();
    for batch in (1..=TRIED).collect::<Vec<_>>().chunks(100) {
        let mut bytes = Vec::new();
        for id in batch {
            bytes.extend(request(*id, "SubscribeToConfigurationUpdate", &json!({})));
        }
        stream.write_all(&bytes).unwrap();
        for _ in batch {
            let reply = read_message(&mut stream, &mut decoder);
            match answer(&reply) {
                (shape, _) if shape == "aws.greengrass#SubscribeToConfigurationUpdateResponse" => {
                    opened += 1
                }
                (shape, body) => {
                    assert_eq!(shape, "aws.greengrass#ServiceError", "{body}");
                    assert_eq!(reply.message_type, MessageType::ApplicationError);
                    assert_eq!(reply.flags, MessageFlags::TERMINATE_STREAM);
                    refused.push((
                        reply.stream_id,
                        body["message"].as_str().unwrap_or("").to_owned(),
                    ));
                }
            }
        }
    }
    assert_eq!(opened, CAP);
    assert_eq!(refused.len(), (TRIED - CAP) as usize);
    assert_eq!(refused[0].0, CAP + 1);
    assert_eq!(
        refused[0].1,
        format!("too many open streams on this connection: {CAP} are open, the limit is {CAP}; close some first")
    );

    // The host answers this connection and others.
    let (other, mut other_decoder) = authenticated(&root, &token);
    let mut other = other;
    let (shape, _) = call(
        &mut other,
        &mut other_decoder,
        1,
        "GetConfiguration",
        json!({}),
    );
    assert_eq!(shape, "aws.greengrass#GetConfigurationResponse");
    // Closing one stream makes room for one more.
    let close = RpcMessage::new(
        MessageType::ApplicationMessage,
        MessageFlags::TERMINATE_STREAM,
        1,
    )
    .to_frame()
    .unwrap()
    .encode();
    stream.write_all(&close).unwrap();
    let (shape, body) = call(
        &mut stream,
        &mut decoder,
        TRIED + 1,
        "SubscribeToConfigurationUpdate",
        json!({}),
    );
    assert_eq!(
        shape, "aws.greengrass#SubscribeToConfigurationUpdateResponse",
        "{body}"
    );
    let (shape, body) = call(
        &mut stream,
        &mut decoder,
        TRIED + 2,
        "GetConfiguration",
        json!({}),
    );
    assert_eq!(shape, "aws.greengrass#ServiceError", "{body}");
}

/// An MQTT client at the broker subscribed to `filter`; what arrives comes out of the
/// receiver as (topic, payload). Returns once the broker has acknowledged the subscription.
fn broker_subscriber(port: u16, filter: &str) -> std::sync::mpsc::Receiver<(String, Vec<u8>)> {
    support::mqtt_subscriber(port, filter, "lambkin-test-sub", true)
}

/// What arrives at the broker for `wanted` within PATIENCE, and the topics that came before.
fn arrives(
    messages: &std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    wanted: &str,
) -> (Vec<u8>, Vec<String>) {
    let deadline = Instant::now() + PATIENCE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (topic, payload) = messages
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("nothing arrived on {wanted}"));
        if topic == wanted {
            return (payload, before);
        }
        before.push(topic);
    }
}

#[test]
fn subscriptions_stay_inside_the_policy_and_unsendable_topics_never_block_the_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(tmp.path()) else {
        support::skipped("mosquitto is not installed (scripts/install-test-deps)");
        return;
    };
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nreconnect_min_ms = 100\nreconnect_max_ms = 500\nmax_message_size_bytes = 1024\n",
            broker.port
        ),
    )
    .unwrap();
    // What an older host left in its spool: a message the MQTT client refuses (a wildcard in
    // its topic) at the head, then one larger than the broker now takes, then a good one.
    {
        let spool =
            lambkin::mqtt::Spool::open(Some(&root.join("state/spool.db")), 1 << 20).unwrap();
        for (topic, payload) in [
            ("dev/+", b"dev/+".to_vec()),
            ("dev/too-big", vec![b'x'; 2048]),
            ("dev/left-behind", b"dev/left-behind".to_vec()),
        ] {
            spool
                .add(&lambkin::mqtt::SpooledMessage {
                    id: 0,
                    topic: topic.into(),
                    qos: 1,
                    retain: false,
                    payload,
                    properties: "{}".into(),
                })
                .unwrap();
        }
    }
    let messages = broker_subscriber(broker.port, "dev/#");
    let _host = Host::start(&root);
    let (payload, before) = arrives(&messages, "dev/left-behind");
    assert_eq!(payload, b"dev/left-behind");
    assert!(before.is_empty(), "the broker got {before:?} first");

    let token = deploy_probe_with(
        &root,
        tmp.path(),
        json!({"accessControl": {
            "aws.greengrass.ipc.mqttproxy": {"probe:mqttproxy:1": {
                "operations": ["*"], "resources": ["a/+", "dev/*"]
            }},
            "aws.greengrass.ipc.pubsub": {"probe:pubsub:1": {
                "operations": ["*"], "resources": ["a/+"]
            }}
        }}),
    );
    let (mut ipc, mut decoder) = authenticated(&root, &token);
    let mut next = 0;
    let mut ask = |operation: &str, payload: Value| {
        next += 1;
        call(&mut ipc, &mut decoder, next, operation, payload)
    };

    // A policy of `a/+` grants the topics one level under `a`, and filters within them.
    for (filter, allowed) in [
        ("a/b", true),
        ("a/+", true),
        ("a/#", false),
        ("#", false),
        ("+/+", false),
        ("+/b", false),
        ("a/+/#", false),
    ] {
        let (shape, body) = ask(
            "SubscribeToIoTCore",
            json!({"topicName": filter, "qos": "1"}),
        );
        let expected = if allowed {
            "aws.greengrass#SubscribeToIoTCoreResponse"
        } else {
            "aws.greengrass#UnauthorizedError"
        };
        assert_eq!(shape, expected, "SubscribeToIoTCore {filter}: {body}");
        let (shape, body) = ask("SubscribeToTopic", json!({"topic": filter}));
        let expected = if allowed {
            "aws.greengrass#SubscribeToTopicResponse"
        } else {
            "aws.greengrass#UnauthorizedError"
        };
        assert_eq!(shape, expected, "SubscribeToTopic {filter}: {body}");
    }

    // A topic the broker cannot take is refused when it is published, with the nucleus's
    // error, and never reaches the spool; the next message goes through.
    let payload = base64::engine::general_purpose::STANDARD.encode(b"x");
    for (topic, reason) in [
        (
            "dev/+",
            "Publish topics must not contain wildcard characters of '#' or '+'",
        ),
        (
            "dev/\u{0}",
            "topic must not contain the null character (U+0000)",
        ),
    ] {
        let (shape, body) = ask(
            "PublishToIoTCore",
            json!({"topicName": topic, "qos": "1", "payload": payload}),
        );
        assert_eq!(shape, "aws.greengrass#ServiceError", "{topic}: {body}");
        assert_eq!(
            body["message"],
            format!("Publish to topic {topic} failed: {reason}")
        );
    }
    let (shape, body) = ask(
        "PublishToIoTCore",
        json!({"topicName": "dev/next", "qos": "1", "payload": payload}),
    );
    assert_eq!(shape, "aws.greengrass#PublishToIoTCoreResponse", "{body}");
    let (payload, before) = arrives(&messages, "dev/next");
    assert_eq!(payload, b"x");
    assert!(before.is_empty(), "the broker got {before:?} first");
    // Nothing is left behind in the spool (another reader's count of its rows).
    let spool = lambkin::mqtt::Spool::open(Some(&root.join("state/spool.db")), 1 << 20).unwrap();
    assert!(
        wait_for(PATIENCE, || spool.usage().ok().filter(|(n, _)| *n == 0)).is_some(),
        "the spool still holds messages"
    );
}

/// PublishToIoTCore while the broker is away, with the in-memory spool: QoS 1 messages are
/// kept until the spool is full, then refused with its own answer; QoS 0 ones are refused
/// at once; nothing is written to disk; and when the broker comes, the kept messages arrive
/// in order and the refused ones never.
#[test]
fn offline_the_memory_spool_keeps_qos1_until_full_and_refuses_qos0() {
    let tmp = tempfile::tempdir().unwrap();
    let broker_dir = tmp.path().join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let port = support::free_port();
    // A persistent session at the broker, made before it goes away: what the host sends
    // when the broker is back waits there for the test's subscriber, however fast the host.
    let Some(broker) = Broker::in_dir(&broker_dir).port(port).persistent().start() else {
        support::skipped("mosquitto is not installed (scripts/install-test-deps)");
        return;
    };
    drop(support::mqtt_subscriber(
        port,
        "dev/#",
        "lambkin-test-sub",
        false,
    ));
    broker.stop();

    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nreconnect_min_ms = 100\nreconnect_max_ms = 200\n\
             [mqtt.spool]\nstorage_type = \"memory\"\nmax_size_bytes = 1000\n"
        ),
    )
    .unwrap();
    let _host = Host::start(&root);
    let token = deploy_probe_with(
        &root,
        tmp.path(),
        json!({"accessControl": {"aws.greengrass.ipc.mqttproxy": {"probe:mqttproxy:1": {
            "operations": ["*"], "resources": ["dev/*"]
        }}}}),
    );
    let (mut ipc, mut decoder) = authenticated(&root, &token);
    let payload = base64::engine::general_purpose::STANDARD.encode([b'x'; 300]);
    let mut next = 0;
    let mut publish = |topic: &str, qos: &str| {
        next += 1;
        call(
            &mut ipc,
            &mut decoder,
            next,
            "PublishToIoTCore",
            json!({"topicName": topic, "qos": qos, "payload": payload}),
        )
    };

    // Three messages of some 300 bytes fit in 1000; the fourth does not.
    for topic in ["dev/1", "dev/2", "dev/3"] {
        let (shape, body) = publish(topic, "1");
        assert_eq!(shape, "aws.greengrass#PublishToIoTCoreResponse", "{body}");
    }
    let (shape, body) = publish("dev/4", "1");
    assert_eq!(shape, "aws.greengrass#ServiceError", "{body}");
    assert_eq!(
        body["message"],
        "Publish to topic dev/4 failed: Message spool is full"
    );
    // QoS 0 is not kept for a broker that is away.
    let (shape, body) = publish("dev/q0", "0");
    assert_eq!(shape, "aws.greengrass#ServiceError", "{body}");
    assert_eq!(
        body["message"],
        "Publish to topic dev/q0 failed: Device is offline. Dropping QoS 0 message."
    );
    assert!(
        !root.join("state/spool.db").exists(),
        "the memory spool wrote a file"
    );

    // The broker comes back: the three kept messages arrive, in order; then a message sent
    // now arrives with nothing before it (the refused ones were never sent).
    let _broker = Broker::in_dir(&broker_dir)
        .port(port)
        .persistent()
        .start()
        .unwrap();
    let messages = support::mqtt_subscriber(port, "dev/#", "lambkin-test-sub", false);
    let (_, before) = arrives(&messages, "dev/3");
    assert_eq!(before, ["dev/1", "dev/2"]);
    let (shape, body) = publish("dev/after", "1");
    assert_eq!(shape, "aws.greengrass#PublishToIoTCoreResponse", "{body}");
    let (_, before) = arrives(&messages, "dev/after");
    assert!(before.is_empty(), "{before:?}");
}

/// A broker that takes each connection and drops it at once: the host tries again after
/// `reconnect_min_ms`, twice as long each time, up to `reconnect_max_ms`.
#[test]
fn reconnection_attempts_back_off_doubling_up_to_the_maximum() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::write(
        root.join("config.toml"),
        format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nreconnect_min_ms = 50\nreconnect_max_ms = 400\n"
        ),
    )
    .unwrap();
    let _host = Host::start(&root);
    let (tx, attempts) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let at = Instant::now();
            drop(stream);
            if tx.send(at).is_err() {
                return;
            }
        }
    });
    let mut times = Vec::new();
    for _ in 0..8 {
        times.push(
            attempts
                .recv_timeout(PATIENCE)
                .expect("the host stopped trying to connect"),
        );
    }
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // Each pause starts after the attempt it follows, so a gap is never shorter than it.
    for (gap, pause) in gaps.iter().zip([50, 100, 200, 400, 400, 400, 400]) {
        assert!(
            *gap >= pause,
            "gaps {gaps:?}: one under its pause of {pause} ms"
        );
    }
    // Capped: doubling on would take 6.35 s for these seven pauses, the cap 1.95 s.
    let total: u128 = gaps.iter().sum();
    assert!(total < 4000, "no cap at 400 ms: gaps {gaps:?}");
}
