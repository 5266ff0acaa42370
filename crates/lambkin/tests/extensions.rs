//! The Extensions API on each instance's Runtime API: an external extension from a layer's
//! `extensions/` registers before the function is ready, gets `INVOKE` for each invocation and
//! `SHUTDOWN` when its instance stops; an init error fails the invocation with its type; and
//! the API's refusals carry the Runtime Interface Emulator's error types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{json, python_function, zip, Host};

/// An external extension: registers (late) for `INVOKE` and `SHUTDOWN`, then writes each event it gets to
/// `$EXTENSION_LOG`; with `$EXTENSION_INIT_ERROR` it reports that error instead of waiting.
const RECORDER: &str = r#"#!/usr/bin/env python3
import json, os, sys, time, urllib.request
# A slow extension: the instance must not take an invocation before it has registered.
time.sleep(0.5)
base = "http://%s/2020-01-01/extension" % os.environ["AWS_LAMBDA_RUNTIME_API"]
def log(line):
    with open(os.environ["EXTENSION_LOG"], "a") as f:
        f.write(line + "\n")
register = urllib.request.Request(
    base + "/register", method="POST",
    data=json.dumps({"events": ["INVOKE", "SHUTDOWN"]}).encode(),
    headers={"Lambda-Extension-Name": os.path.basename(__file__),
             "Lambda-Extension-Accept-Feature": "accountId"})
with urllib.request.urlopen(register) as r:
    ident = r.headers["Lambda-Extension-Identifier"]
    info = json.load(r)
log("registered %s %s %s %s" % (
    info["functionName"], info["functionVersion"], info["handler"], info["accountId"]))
error = os.environ.get("EXTENSION_INIT_ERROR")
if error:
    urllib.request.urlopen(urllib.request.Request(
        base + "/init/error", method="POST", data=b"{}",
        headers={"Lambda-Extension-Identifier": ident,
                 "Lambda-Extension-Function-Error-Type": error}))
    sys.exit(1)
while True:
    with urllib.request.urlopen(urllib.request.Request(
            base + "/event/next", headers={"Lambda-Extension-Identifier": ident})) as r:
        event = json.load(r)
        event_id = r.headers["Lambda-Extension-Event-Identifier"]
    if event["eventType"] == "INVOKE":
        log("INVOKE %s %s" % (event["requestId"], bool(event_id)))
        # Still busy when its instance is stopped: SHUTDOWN waits for its next request.
        time.sleep(0.3)
    else:
        log("SHUTDOWN %s" % event["shutdownReason"])
        sys.exit(0)
"#;

/// The handler returns what the extension has written so far.
const HANDLER: &str = r#"
import os
def handler(event, context):
    with open(os.environ["EXTENSION_LOG"]) as f:
        return f.read().splitlines()
"#;

async fn publish_recorder(host: &Host) -> String {
    let reply = host
        .call(
            "POST",
            "/2018-10-31/layers/recorder/versions",
            &[("content-type", "application/json")],
            json!({"Content": {"ZipFile": zip(&[("extensions/recorder", RECORDER, 0o755)])}})
                .to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    json(&reply)["LayerVersionArn"].as_str().unwrap().to_owned()
}

fn log_lines(path: &std::path::Path) -> Vec<String> {
    support::lines(path)
}

#[tokio::test]
async fn an_external_extension_registers_first_then_gets_invoke_and_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let shared = support::dir_for_components(tmp.path(), "shared");
    let log = shared.join("extension.log");
    let layer = publish_recorder(&host).await;
    let env = BTreeMap::from([("EXTENSION_LOG", log.display().to_string())]);
    let mut spec = python_function("observed", HANDLER, json!({"Pinned": false}), env);
    spec["Layers"] = json!([layer]);
    assert_eq!(host.create(spec).await.status, 201);

    let mut request_ids = Vec::new();
    for _ in 0..2 {
        let reply = host.invoke("observed", &json!({})).await;
        assert_eq!(reply.status, 200);
        assert_eq!(support::header(&reply, "x-amz-function-error"), None);
        let seen: Value = json(&reply);
        // The function ran only once the extension had registered.
        assert_eq!(
            seen[0], "registered observed $LATEST app.handler 000000000000",
            "{seen}"
        );
        request_ids.push(
            support::header(&reply, "x-amzn-requestid")
                .unwrap()
                .to_owned(),
        );
    }
    let expected: Vec<String> = request_ids
        .iter()
        .map(|id| format!("INVOKE {id} True"))
        .collect();
    let got = support::wait_for(Duration::from_secs(10), || {
        let lines = log_lines(&log);
        (lines.len() >= 3).then_some(lines)
    })
    .expect("the extension logged both invocations");
    assert_eq!(got[1..3], expected[..], "{got:?}");

    // Deleting the function stops its instance: the extension gets SHUTDOWN first.
    let deleted = host
        .call("DELETE", "/2015-03-31/functions/observed", &[], "")
        .await;
    assert_eq!(deleted.status, 204);
    let last = support::wait_for(Duration::from_secs(10), || {
        log_lines(&log)
            .last()
            .filter(|l| l.starts_with("SHUTDOWN"))
            .cloned()
    });
    assert_eq!(
        last.as_deref(),
        Some("SHUTDOWN spindown"),
        "{:?} {:?}",
        log_lines(&log),
        support::lines(&tmp.path().join("root/logs/observed.log"))
    );
}

#[tokio::test]
async fn an_extension_init_error_fails_the_invocation_with_its_type() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let shared = support::dir_for_components(tmp.path(), "shared");
    let log = shared.join("extension.log");
    let layer = publish_recorder(&host).await;
    let env = BTreeMap::from([
        ("EXTENSION_LOG", log.display().to_string()),
        ("EXTENSION_INIT_ERROR", "Extension.TestFailure".to_owned()),
    ]);
    let mut spec = python_function("refused", HANDLER, json!({"Pinned": false}), env);
    spec["Layers"] = json!([layer]);
    assert_eq!(host.create(spec).await.status, 201);
    let reply = host.invoke("refused", &json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        support::header(&reply, "x-amz-function-error"),
        Some("Unhandled")
    );
    let error = json(&reply);
    assert_eq!(error["errorType"], "Extension.TestFailure", "{error}");
    // The host carries on: a function without the extension answers.
    let plain = python_function(
        "plain",
        "def handler(e, c):\n    return 'fine'\n",
        json!({"Pinned": false}),
        BTreeMap::new(),
    );
    assert_eq!(host.create(plain).await.status, 201);
    assert_eq!(json(&host.invoke("plain", &json!({})).await), "fine");
}

/// A handler that calls the Extensions API itself, after init.
const PROBE: &str = r#"
import json, os, urllib.request, urllib.error
base = "http://%s/2020-01-01/extension" % os.environ["AWS_LAMBDA_RUNTIME_API"]
def call(path, method="GET", headers={}, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(
                base + path, method=method, headers=headers, data=data)) as r:
            return [r.status, json.load(r)]
    except urllib.error.HTTPError as e:
        return [e.code, json.load(e)["errorType"]]
def handler(event, context):
    return {
        "late_register": call("/register", "POST", {"Lambda-Extension-Name": "late"}, b"{}"),
        "next_without_id": call("/event/next"),
        "next_unknown_id": call("/event/next", headers={"Lambda-Extension-Identifier": "nobody"}),
        "exit_without_type": call("/exit/error", "POST", {"Lambda-Extension-Identifier": "x"}, b""),
    }
"#;

#[tokio::test]
async fn the_extensions_api_refuses_as_the_emulator_does() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let spec = python_function("probe", PROBE, json!({"Pinned": false}), BTreeMap::new());
    assert_eq!(host.create(spec).await.status, 201);
    let reply = host.invoke("probe", &json!({})).await;
    let out = json(&reply);
    assert_eq!(
        out,
        json!({
            "late_register": [403, "Extension.RegistrationClosed"],
            "next_without_id": [403, "Extension.MissingExtensionIdentifier"],
            "next_unknown_id": [403, "Extension.UnknownExtensionIdentifier"],
            "exit_without_type": [403, "Extension.MissingHeader"],
        }),
        "{out}"
    );
}

/// The handler sleeps past its timeout or exits, as the event asks.
const FRAGILE: &str = r#"
import os, time
def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        os._exit(event["exit"])
    return "ok"
"#;

#[tokio::test]
async fn an_extension_hears_why_its_instance_was_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("root"));
    let shared = support::dir_for_components(tmp.path(), "shared");
    let log = shared.join("extension.log");
    let layer = publish_recorder(&host).await;
    let env = BTreeMap::from([("EXTENSION_LOG", log.display().to_string())]);
    let mut spec = python_function("fragile", FRAGILE, json!({"Pinned": false}), env);
    spec["Layers"] = json!([layer]);
    spec["Timeout"] = json!(1);
    assert_eq!(host.create(spec).await.status, 201);
    let shutdowns = || -> Vec<String> {
        log_lines(&log)
            .into_iter()
            .filter(|l| l.starts_with("SHUTDOWN"))
            .collect()
    };

    let timed_out = json(&host.invoke("fragile", &json!({"sleep": 5})).await);
    assert_eq!(timed_out["errorType"], "Sandbox.Timedout", "{timed_out}");
    let seen = support::wait_for(Duration::from_secs(10), || {
        Some(shutdowns()).filter(|s| !s.is_empty())
    });
    assert_eq!(
        seen,
        Some(vec!["SHUTDOWN timeout".to_owned()]),
        "{:?}",
        log_lines(&log)
    );

    let crashed = json(&host.invoke("fragile", &json!({"exit": 3})).await);
    assert_eq!(crashed["errorType"], "Runtime.ExitError", "{crashed}");
    // The error was answered once the extension had its SHUTDOWN.
    assert_eq!(
        shutdowns(),
        ["SHUTDOWN timeout", "SHUTDOWN failure"],
        "{:?}",
        log_lines(&log)
    );
    // A new instance, with its extension registered again, serves the next invocation.
    assert_eq!(json(&host.invoke("fragile", &json!({})).await), "ok");
    let registrations = log_lines(&log)
        .iter()
        .filter(|l| l.starts_with("registered"))
        .count();
    assert_eq!(registrations, 3, "{:?}", log_lines(&log));
}

/// A slow external extension that writes `registered` to `$ORDER_FILE` once it has registered,
/// then waits for events, writing `SHUTDOWN <reason>` when it gets one.
const SLOW_STARTER: &str = r#"#!/usr/bin/env python3
import json, os, time, urllib.request
time.sleep(1)
base = "http://%s/2020-01-01/extension" % os.environ["AWS_LAMBDA_RUNTIME_API"]
register = urllib.request.Request(
    base + "/register", method="POST", data=json.dumps({"events": ["SHUTDOWN"]}).encode(),
    headers={"Lambda-Extension-Name": os.path.basename(__file__)})
with urllib.request.urlopen(register) as r:
    ident = r.headers["Lambda-Extension-Identifier"]
def note(line):
    with open(os.environ["ORDER_FILE"], "a") as f:
        f.write(line + "\n")
note("registered")
while True:
    with urllib.request.urlopen(urllib.request.Request(
            base + "/event/next", headers={"Lambda-Extension-Identifier": ident})) as r:
        event = json.load(r)
    note("%s %s" % (event["eventType"], event.get("shutdownReason")))
    if event["eventType"] == "SHUTDOWN":
        break
"#;

/// The handler's module notes, when it is imported (the runtime's init), what the extension
/// had written by then.
const ORDER_HANDLER: &str = r#"
import os
def seen():
    try:
        with open(os.environ["ORDER_FILE"]) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []
AT_INIT = seen()
def lambda_handler(event, context):
    if event.get("exit"):
        os._exit(1)
    return AT_INIT
"#;

/// As in Lambda, extension init comes before runtime init: the runtime (here, the import of
/// the handler's module) starts only once every external extension has registered, in both
/// container modes. And a host that stops sends its extensions `SHUTDOWN` first.
#[tokio::test]
async fn the_runtime_starts_after_every_external_extension_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut host = Host::start(&root);
    let shared = support::dir_for_components(tmp.path(), "shared");
    let reply = host
        .call(
            "POST",
            "/2018-10-31/layers/slow/versions",
            &[("content-type", "application/json")],
            json!({"Content": {"ZipFile": zip(&[("extensions/slow", SLOW_STARTER, 0o755)])}})
                .to_string(),
        )
        .await;
    assert_eq!(reply.status, 201);
    let layer = json(&reply)["LayerVersionArn"].as_str().unwrap().to_owned();
    let mut modes = vec![("NoContainer", shared.join("plain.order"))];
    match support::containers_unavailable() {
        // The shared directory, bound into the container.
        None => modes.push((
            "GreengrassContainer",
            std::path::PathBuf::from("/shared/container.order"),
        )),
        Some(why) => support::skipped(&format!("GreengrassContainer: {why}")),
    }
    for (i, (mode, order)) in modes.iter().enumerate() {
        let name = format!("com.example.Ordered{i}");
        let recipe = support::lambda_component(
            tmp.path(),
            &name,
            &[("lambda_function.py", ORDER_HANDLER, 0o644)],
            json!({
                "containerMode": mode,
                // Two Python processes share the container's memory.
                "containerParams": {
                    "memorySize": 131072,
                    "volumes": {"0": {
                        "sourcePath": shared, "destinationPath": "/shared",
                        "permission": "rw", "addGroupOwner": false
                    }},
                },
                // The plain one stays up for the host's stop; an on-demand container's next
                // instance comes from a sandbox init made ready in the background.
                "pinned": *mode == "NoContainer",
                "layers": [layer],
                "lambdaExecutionParameters": {
                    "EnvironmentVariables": {"ORDER_FILE": order.display().to_string()}
                },
            }),
        );
        support::deployed(
            &root,
            tmp.path(),
            &[recipe],
            &["-m", &format!("{name}=1.0.0")],
        );
        let reply = host.invoke(&name, &json!({})).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            json(&reply),
            json!(["registered"]),
            "{mode}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    let contained = modes.len() > 1;
    if contained {
        // A container's next instance starts from the sandbox init made ready in the
        // background once the first was up: the same order holds there. (The first
        // container ended with its runtime: its extension heard nothing.)
        let name = "com.example.Ordered1";
        let crashed = host.invoke(name, &json!({"exit": 1})).await;
        assert_eq!(json(&crashed)["errorType"], "Runtime.ExitError");
        let reply = host.invoke(name, &json!({})).await;
        assert_eq!(
            json(&reply),
            json!(["registered", "registered"]),
            "the second container instance"
        );
    }
    // Both instances are running: stopping the host sends each extension SHUTDOWN, the
    // container's too (its processes are signalled once the extension has ended).
    host.stop();
    assert_eq!(
        log_lines(&shared.join("plain.order")),
        ["registered", "SHUTDOWN spindown"],
        "the plain extension's notes at host stop"
    );
    if contained {
        assert_eq!(
            log_lines(&shared.join("container.order")),
            ["registered", "registered", "SHUTDOWN spindown"],
            "the container's extension's notes at host stop"
        );
    }
}

/// Publishes a layer holding one extension, `extensions/NAME`.
async fn publish_extension(host: &Host, name: &str, script: &str) -> String {
    let reply = host
        .call(
            "POST",
            &format!("/2018-10-31/layers/{name}/versions"),
            &[("content-type", "application/json")],
            json!({"Content": {"ZipFile": zip(&[(&format!("extensions/{name}"), script, 0o755)])}})
                .to_string(),
        )
        .await;
    assert_eq!(reply.status, 201);
    json(&reply)["LayerVersionArn"].as_str().unwrap().to_owned()
}

/// An extension that dies before registering fails the init with `Extension.Crash`, naming
/// it and its exit; one that registers but never asks for its next event fails it at the init
/// timeout, named too. The host carries on.
#[tokio::test]
async fn an_extension_that_exits_or_hangs_in_init_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("config.toml"),
        "[lambda]\ninit_timeout_seconds = 2\n",
    )
    .unwrap();
    let host = Host::start(&root);
    let crasher = publish_extension(&host, "crasher", "#!/bin/sh\nexit 3\n").await;
    let silent = publish_extension(
        &host,
        "silent",
        r#"#!/usr/bin/env python3
import os, time, urllib.request
urllib.request.urlopen(urllib.request.Request(
    "http://%s/2020-01-01/extension/register" % os.environ["AWS_LAMBDA_RUNTIME_API"],
    method="POST", data=b'{"events": ["INVOKE"]}',
    headers={"Lambda-Extension-Name": "silent"}))
time.sleep(600)
"#,
    )
    .await;
    let handler = "def handler(e, c):\n    return 'ran'\n";
    for (name, layer) in [("crashing", &crasher), ("hanging", &silent)] {
        let mut spec = python_function(name, handler, json!({"Pinned": false}), BTreeMap::new());
        spec["Layers"] = json!([layer]);
        assert_eq!(host.create(spec).await.status, 201);
    }

    let reply = host.invoke("crashing", &json!({})).await;
    assert_eq!(
        support::header(&reply, "x-amz-function-error"),
        Some("Unhandled")
    );
    let error = json(&reply);
    assert_eq!(error["errorType"], "Extension.Crash", "{error}");
    assert_eq!(
        error["errorMessage"], "extension crasher exited during init: exit status 3",
        "{error}"
    );

    let reply = host.invoke("hanging", &json!({})).await;
    let error = json(&reply);
    assert_eq!(error["errorType"], "Sandbox.Timedout", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("timed out after 2.00 seconds: extension silent did not register"),
        "{message}"
    );

    let plain = python_function("plain", handler, json!({"Pinned": false}), BTreeMap::new());
    assert_eq!(host.create(plain).await.status, 201);
    assert_eq!(json(&host.invoke("plain", &json!({})).await), "ran");
}
