//! The Invoke and management APIs' answers to bad input, and the Runtime API's protocol
//! rules, against the real binary.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::json;
use support::{header, json, lines, python_function, wait_for_line, zip, Host};

const ECHO: &str = "def handler(event, context):\n    return event\n";

fn provided(name: &str, files: &[(&str, &str, u32)]) -> serde_json::Value {
    json!({
        "FunctionName": name,
        "Runtime": "provided.al2023",
        "Role": "arn:aws:iam::000000000000:role/test",
        "Handler": "bootstrap",
        "Code": { "ZipFile": zip(files) },
        "Timeout": 5,
    })
}

fn error_of(reply: &support::HttpReply) -> (u16, String, String) {
    let body = json(reply);
    (
        reply.status,
        header(reply, "x-amzn-errortype")
            .unwrap_or_default()
            .to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_aws_errors_and_the_host_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let ok = host
        .create(python_function(
            "good",
            ECHO,
            json!({"Pinned": false}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(ok.status, 201);

    // Malformed JSON body on create.
    let r = host
        .call("POST", "/2015-03-31/functions", &[], "{not json")
        .await;
    let (status, code, _) = error_of(&r);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );

    // Unknown keys are named.
    let mut spec = python_function("typo", ECHO, json!({}), BTreeMap::new());
    spec["Timeoutt"] = json!(3);
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    assert!(message.contains("Timeoutt"), "{message}");

    // Invalid names.
    let spec = python_function("bad/name", ECHO, json!({}), BTreeMap::new());
    let (status, code, message) = error_of(&host.create(spec).await);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    assert!(message.contains("bad/name"), "{message}");

    // Duplicate.
    let spec = python_function("good", ECHO, json!({}), BTreeMap::new());
    let (status, code, _) = error_of(&host.create(spec).await);
    assert_eq!((status, code.as_str()), (409, "ResourceConflictException"));

    // A zip without the handler's module.
    let mut spec = python_function("nohandler", ECHO, json!({}), BTreeMap::new());
    spec["Handler"] = json!("main.handler");
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    assert!(message.contains("main.py"), "{message}");

    // A bootstrap that is not executable, and a zip without one.
    let spec = provided("noexec", &[("bootstrap", "#!/bin/sh\n", 0o644)]);
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    assert!(message.contains("not executable"), "{message}");
    let spec = provided("noboot", &[("main", "#!/bin/sh\n", 0o755)]);
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    assert!(message.contains("bootstrap"), "{message}");

    // Not a zip; a zip escaping its directory.
    let mut spec = provided("garbage", &[]);
    spec["Code"]["ZipFile"] = json!(base64::engine::general_purpose::STANDARD.encode("not a zip"));
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    assert!(message.contains("unzip"), "{message}");
    let spec = provided("escape", &[("../bootstrap", "#!/bin/sh\n", 0o755)]);
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    assert!(message.contains("outside"), "{message}");

    // Settings out of range are all named at once.
    let mut spec = python_function("limits", ECHO, json!({"MaxQueueSize": 0}), BTreeMap::new());
    spec["Timeout"] = json!(0);
    spec["MemorySize"] = json!(64);
    let (status, _, message) = error_of(&host.create(spec).await);
    assert_eq!(status, 400);
    for part in ["Timeout", "MemorySize", "MaxQueueSize"] {
        assert!(message.contains(part), "{message}");
    }

    // Unknown function, qualifier, invocation type; malformed payload and client context.
    let (status, code, message) = error_of(&host.invoke("missing", &json!({})).await);
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));
    assert!(message.contains("function:missing"), "{message}");
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/good/invocations?Qualifier=7",
            &[],
            "{}",
        )
        .await;
    let (status, _, message) = error_of(&r);
    assert_eq!(status, 404);
    assert!(message.contains("function:good:7"), "{message}");
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/good/invocations",
            &[("x-amz-invocation-type", "Sometimes")],
            "{}",
        )
        .await;
    assert_eq!(error_of(&r).0, 400);
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/good/invocations",
            &[],
            "{\"a\":",
        )
        .await;
    let (status, code, _) = error_of(&r);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidRequestContentException")
    );
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/good/invocations",
            &[("x-amz-client-context", "%%%")],
            "{}",
        )
        .await;
    assert_eq!(error_of(&r).1, "InvalidRequestContentException");
    // Payload limits: 6 MiB synchronous, 1 MiB Event.
    let big = format!("\"{}\"", "x".repeat(6 * 1024 * 1024));
    let r = host
        .call("POST", "/2015-03-31/functions/good/invocations", &[], big)
        .await;
    assert_eq!(error_of(&r).0, 413);
    assert_eq!(error_of(&r).1, "RequestTooLargeException");
    let event = format!("\"{}\"", "x".repeat(1024 * 1024 + 1));
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/good/invocations",
            &[("x-amz-invocation-type", "Event")],
            event,
        )
        .await;
    assert_eq!(error_of(&r).0, 413);
    // Unknown routes.
    let r = host.call("GET", "/2015-03-31/nothing", &[], "").await;
    assert_eq!(error_of(&r).1, "UnknownOperationException");
    // The local API needs the token.
    let r = host.call("GET", "/lambkin/v1/health", &[], "").await;
    assert_eq!(r.status, 403);
    let token = std::fs::read_to_string(tmp.path().join("state/cli.token")).unwrap();
    let r = host
        .call(
            "GET",
            "/lambkin/v1/health",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await;
    assert_eq!(r.status, 200);

    // Through all of it, the host keeps serving.
    let r = host.invoke("good", &json!({"still": "here"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r), json!({"still": "here"}));
    // DryRun checks and answers 204.
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/good/invocations",
            &[("x-amz-invocation-type", "DryRun")],
            "{}",
        )
        .await;
    assert_eq!(r.status, 204);
}

/// A custom runtime that breaks the Runtime API's rules on purpose and reports what it was
/// told, then answers properly.
const PROTOCOL_PROBE: &str = r#"#!/usr/bin/env python3
import http.client, json, os

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))

def call(method, path, body=None, headers=None):
    conn.request(method, "/2018-06-01/runtime" + path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()

while True:
    status, headers, body = call("GET", "/invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    seen = {
        "next": status,
        "content_type": headers.get("Content-Type"),
        "deadline": int(headers["Lambda-Runtime-Deadline-Ms"]),
        "arn": headers.get("Lambda-Runtime-Invoked-Function-Arn"),
        "client_context": headers.get("Lambda-Runtime-Client-Context"),
        "env": {k: os.environ.get(k) for k in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_REGION", "TZ", "AWS_EXECUTION_ENV", "AWS_LAMBDA_INITIALIZATION_TYPE"]},
        "cwd": os.getcwd(),
    }
    busy = call("GET", "/invocation/next")
    seen["next_while_busy"] = busy[0]
    wrong = call("POST", "/invocation/not-the-id/response", b"{}")
    seen["wrong_id"] = wrong[0]
    # An error names no request id but the one its caller sent.
    seen["errors_name_the_id"] = [rid.encode() in busy[2], rid.encode() in wrong[2]]
    seen["init_error_late"] = call("POST", "/init/error", b"{}")[0]
    seen["unknown_route"] = call("GET", "/nothing")[0]
    event = json.loads(body)
    if event.get("oversize"):
        seen["too_large"] = call("POST", "/invocation/%s/response" % rid, b"x" * (6 * 1024 * 1024 + 200))[0]
        seen["after_too_large"] = call("POST", "/invocation/%s/response" % rid, b"{}")[0]
        continue
    answer = call("POST", "/invocation/%s/response" % rid, json.dumps(seen).encode(), {"Content-Type": "application/json"})
    assert answer[0] == 202, answer
    # Answering twice is a state error, not an unknown id.
    again = call("POST", "/invocation/%s/response" % rid, b"{}")
    with open("/dev/stderr", "w") as e:
        e.write("second answer: %d\n" % again[0])
"#;

#[tokio::test(flavor = "multi_thread")]
async fn runtime_api_enforces_ids_states_and_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let mut spec = provided("probe", &[("bootstrap", PROTOCOL_PROBE, 0o755)]);
    spec["Environment"] = json!({"Variables": {"GREETING": "hi"}});
    spec["Greengrass"] = json!({"Pinned": false});
    let created = host.create(spec).await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );

    let cc = base64::engine::general_purpose::STANDARD.encode(r#"{"custom":{"k":"v"}}"#);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let r = host
        .call(
            "POST",
            "/2015-03-31/functions/probe/invocations",
            &[("x-amz-client-context", &cc)],
            "{}",
        )
        .await;
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let seen = json(&r);
    if seen["next"] != 200 {
        let log = std::fs::read_to_string(tmp.path().join("logs/probe.log")).unwrap_or_default();
        panic!("{seen}\n{log}");
    }
    assert_eq!(seen["content_type"], "application/json");
    let deadline = seen["deadline"].as_i64().unwrap();
    // The invocation was handed over between `before` and `after`: its deadline is 5 s
    // (the function's timeout) after that moment, however long the start took.
    assert!(
        (before + 5000..=after + 5001).contains(&deadline),
        "deadline {deadline} is not 5 s after the hand-over, which was in [{before}, {after}]"
    );
    assert_eq!(
        seen["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:probe"
    );
    assert_eq!(seen["client_context"], r#"{"custom":{"k":"v"}}"#);
    assert_eq!(seen["next_while_busy"], 403);
    assert_eq!(seen["wrong_id"], 400);
    assert_eq!(seen["errors_name_the_id"], json!([false, false]));
    assert_eq!(seen["init_error_late"], 403);
    assert_eq!(seen["unknown_route"], 404);
    let env = &seen["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "probe");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/probe");
    assert_eq!(env["_HANDLER"], "bootstrap");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["AWS_EXECUTION_ENV"], serde_json::Value::Null);
    assert_eq!(env["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(seen["cwd"], env["LAMBDA_TASK_ROOT"]);
    let stream = env["AWS_LAMBDA_LOG_STREAM_NAME"].as_str().unwrap();
    assert!(
        stream.contains("/[$LATEST]") && stream.len() == "2026/11/22/[$LATEST]".len() + 32,
        "{stream}"
    );

    // An oversize response: 413 to the runtime, Function.ResponseSizeTooLarge to the caller.
    let r = host.invoke("probe", &json!({"oversize": true})).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-amz-function-error"), Some("Unhandled"));
    let body = json(&r);
    assert_eq!(body["errorType"], "Function.ResponseSizeTooLarge");
    assert!(body["errorMessage"].as_str().unwrap().contains("6291556"));

    // A function's log lines reach its file just after the answer.
    let log_path = tmp.path().join("logs/probe.log");
    let found = wait_for_line(&log_path, Duration::from_secs(10), |l| {
        l.contains("second answer: 403")
    });
    assert!(found.is_some(), "{:?}", lines(&log_path));
}

/// `InputPayloadEncodingType: binary`: the Invoke API takes any bytes and the handler gets
/// them as they were sent; the same bytes to a `json` function are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_binary_function_gets_the_bytes_it_was_sent_and_a_json_one_refuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let code = "def handler(event, context):\n    \
                return {'type': type(event).__name__, 'hex': event.hex() if isinstance(event, bytes) else None}\n";
    for (name, encoding) in [("raw", "binary"), ("doc", "json")] {
        let created = host
            .create(python_function(
                name,
                code,
                json!({"Pinned": false, "InputPayloadEncodingType": encoding}),
                BTreeMap::new(),
            ))
            .await;
        assert_eq!(
            created.status,
            201,
            "{}",
            String::from_utf8_lossy(&created.body)
        );
    }
    let bytes: &[u8] = b"\x00\x01\xff not json {";
    let paths = ["raw", "doc"].map(|name| format!("/2015-03-31/functions/{name}/invocations"));
    let headers = [("content-type", "application/octet-stream")];
    let reply = host.call("POST", &paths[0], &headers, bytes.to_vec()).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(header(&reply, "x-amz-function-error"), None);
    let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(json(&reply), json!({"type": "bytes", "hex": expected}));

    let refused = host.call("POST", &paths[1], &headers, bytes.to_vec()).await;
    let (status, code, _) = error_of(&refused);
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidRequestContentException")
    );
}

/// A runtime that streams its `/response` as the Runtime API describes it: chunked, with the
/// error in real HTTP trailers (`{"trailer": true}`), or a mode header the API does not know.
const STREAMING_RUNTIME: &str = r#"#!/usr/bin/env python3
import base64, http.client, json, os, socket

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))

def stream(rid, chunks, trailers):
    s = socket.create_connection((host, int(port)))
    head = ("POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
            "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
            "Content-Type: text/plain\r\n\r\n" % rid)
    s.sendall(head.encode())
    for c in chunks:
        s.sendall(b"%x\r\n%s\r\n" % (len(c), c))
    s.sendall(b"0\r\n" + b"".join(b"%s: %s\r\n" % kv for kv in trailers) + b"\r\n")
    answer = s.recv(4096)
    s.close()
    return answer

while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    if event.get("mode"):
        conn.request("POST", "/2018-06-01/runtime/invocation/%s/response" % rid, b"{}",
                     {"Lambda-Runtime-Function-Response-Mode": event["mode"]})
        r = conn.getresponse()
        refused = r.status
        r.read()
        conn.request("POST", "/2018-06-01/runtime/invocation/%s/response" % rid,
                     json.dumps({"refused": refused}))
        r = conn.getresponse()
        r.read()
        print("mode answer %d, late answer %d" % (refused, r.status), flush=True)
        continue
    trailers = []
    if event.get("trailer"):
        body = base64.b64encode(json.dumps({"errorType": "Sensor", "errorMessage": "it broke"}).encode())
        trailers = [(b"Lambda-Runtime-Function-Error-Type", b"Sensor.Failed"),
                    (b"Lambda-Runtime-Function-Error-Body", body)]
    stream(rid, [b"one;", b"two;"], trailers)
"#;

/// The events of an `InvokeWithResponseStream` answer: (event type, payload).
#[allow(clippy::unwrap_used)]
fn events(reply: &support::HttpReply) -> Vec<(String, Vec<u8>)> {
    let mut decoder = lambkin_proto::eventstream::Decoder::new();
    decoder.push(&reply.body);
    let mut out = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        let kind = frame
            .header(":event-type")
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned();
        out.push((kind, frame.payload().to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_responses_reach_both_invoke_apis() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let created = host
        .create(provided(
            "streamer",
            &[("bootstrap", STREAMING_RUNTIME, 0o755)],
        ))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let path = "/2021-11-15/functions/streamer/response-streaming-invocations";

    let r = host.call("POST", path, &[], "{}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        header(&r, "content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let got = events(&r);
    let data: Vec<u8> = got
        .iter()
        .filter(|(k, _)| k == "PayloadChunk")
        .flat_map(|(_, p)| p.clone())
        .collect();
    assert_eq!(data, b"one;two;");
    assert_eq!(got.last().unwrap().0, "InvokeComplete");
    assert_eq!(got.last().unwrap().1, b"{}");

    // The error trailers end the stream: InvokeComplete names them.
    let r = host.call("POST", path, &[], r#"{"trailer":true}"#).await;
    let got = events(&r);
    let complete: serde_json::Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
    assert_eq!(complete["ErrorCode"], "Sensor.Failed");
    assert_eq!(complete["ErrorDetails"], "it broke");

    // Invoke gathers a streamed answer; the trailers make it a function error.
    let r = host.invoke("streamer", &json!({})).await;
    assert_eq!((r.status, r.body.as_ref()), (200, b"one;two;".as_ref()));
    let r = host.invoke("streamer", &json!({"trailer": true})).await;
    assert_eq!(header(&r, "x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        json(&r),
        json!({"errorType": "Sensor.Failed", "errorMessage": "it broke"})
    );

    // A response mode the Runtime API does not know: 400 to the runtime, and the caller gets
    // Runtime.InvalidResponseModeHeader (the runtime's answer after it comes too late).
    let r = host.invoke("streamer", &json!({"mode": "sideways"})).await;
    assert_eq!(header(&r, "x-amz-function-error"), Some("Unhandled"));
    assert_eq!(json(&r)["errorType"], "Runtime.InvalidResponseModeHeader");
    assert!(json(&r)["errorMessage"]
        .as_str()
        .unwrap()
        .contains("sideways"));
    let r = host.invoke("streamer", &json!({})).await;
    assert_eq!((r.status, r.body.as_ref()), (200, b"one;two;".as_ref()));
    let log_path = tmp.path().join("logs/streamer.log");
    let found = wait_for_line(&log_path, Duration::from_secs(10), |l| {
        l.contains("mode answer 400, late answer 403")
    });
    assert!(found.is_some(), "{:?}", lines(&log_path));

    // The stream API's own refusals.
    let r = host
        .call("POST", path, &[("x-amz-invocation-type", "Event")], "{}")
        .await;
    assert_eq!(error_of(&r).0, 400);
    let r = host
        .call(
            "POST",
            "/2021-11-15/functions/nobody/response-streaming-invocations",
            &[],
            "{}",
        )
        .await;
    assert_eq!(error_of(&r).1, "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread")]
async fn function_urls_survive_restarts_and_go_with_their_function() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path());
    let web = || python_function("web", ECHO, json!({"Pinned": false}), BTreeMap::new());
    assert_eq!(host.create(web()).await.status, 201);
    let r = host
        .call(
            "POST",
            "/2021-10-31/functions/web/url",
            &[],
            r#"{"AuthType":"NONE"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let url = json(&r)["FunctionUrl"].as_str().unwrap().to_owned();
    let id = url
        .split("/lambda-url/")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_owned();

    host.stop();
    let host = Host::start(tmp.path());
    let r = host
        .call("GET", "/2021-10-31/functions/web/url", &[], "")
        .await;
    assert_eq!(r.status, 200);
    let again = json(&r)["FunctionUrl"].as_str().unwrap().to_owned();
    // The URL names the listener the host has now.
    assert_eq!(again, format!("http://{}/lambda-url/{id}/", host.addr));
    let r = host
        .call_unsigned("GET", &format!("/lambda-url/{id}/after?x=1"), &[], "")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["rawPath"], "/after");

    // Deleting the function deletes its URL: a new function of that name has none.
    assert_eq!(
        host.call("DELETE", "/2015-03-31/functions/web", &[], "")
            .await
            .status,
        204
    );
    assert_eq!(host.create(web()).await.status, 201);
    let r = host
        .call("GET", "/2021-10-31/functions/web/url", &[], "")
        .await;
    assert_eq!(error_of(&r).1, "ResourceNotFoundException");
    let r = host
        .call_unsigned("GET", &format!("/lambda-url/{id}/"), &[], "")
        .await;
    assert_eq!(r.status, 404);
}
