//! An instance's Runtime API is its runtime's alone, tried as an attacker would, against the
//! real binary. While a function's handler waits (its instance busy, its Runtime API address
//! and request id written out), an unrelated process of the host's own user and a process of
//! another user (`nobody`, when the tests run as root) try to take the instance's event and to
//! answer it with a forgery, using an id they might guess, the real id, and any id they could
//! learn from the answers: every attempt is refused with 403, no answer names the request id,
//! the host's log names each attacker's pid, and the caller gets the function's own answer.
//!
//! The same holds for a GreengrassContainer function, whose runtime is a descendant of the
//! host's child in a PID namespace of its own (skipped, saying why, where containers cannot
//! run). A runtime that its `bootstrap` script runs as a child (not exec'd), and that has its
//! own child post the answer on a new connection, still serves: the instance's descendants
//! are its runtime too. Its protocol errors (`/next` while busy, an unknown id) name no
//! request id it did not send.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{json, python_function, wait_for, zip, Host};

const PATIENCE: Duration = Duration::from_secs(30);

/// Writes its Runtime API address and request id where the event says, then holds the
/// invocation until a `release` file appears there (or 20 s pass).
const HOLDING_HANDLER: &str = r#"import json, os, time


def handler(event, context):
    d = event["dir"]
    exposed = {
        "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "request_id": context.aws_request_id,
    }
    with open(os.path.join(d, "exposed.tmp"), "w") as f:
        json.dump(exposed, f)
    os.rename(os.path.join(d, "exposed.tmp"), os.path.join(d, "exposed.json"))
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(d, "release")):
        if time.monotonic() > deadline:
            return {"answer": "never released"}
        time.sleep(0.01)
    return {"answer": "real"}


lambda_handler = handler
"#;

/// The attacker: `python3 -c ATTACKER API [ID…]`. Asks for the event, then posts a forged
/// answer and a forged error for a guessed id, each id it was given, and every id the answers
/// let it learn; then tries the same port's Extensions API (register, next) and Telemetry and
/// Logs APIs (a subscription to its own listener); prints its pid and what it got back.
const ATTACKER: &str = r#"import http.client, json, os, re, sys, uuid

host, port = sys.argv[1].rsplit(":", 1)
attempts = []


def attempt(method, path, body=None, headers=None):
    path = path if path.startswith("/20") else "/2018-06-01/runtime" + path
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        got = {"status": r.status, "headers": dict(r.getheaders()),
               "body": r.read().decode("utf-8", "replace")}
        conn.close()
    except Exception as e:
        got = {"status": None, "headers": {}, "body": repr(e)}
    attempts.append({"request": method + " " + path, "got": got})
    return got


seen = attempt("GET", "/invocation/next")
learned = re.findall(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}",
                     json.dumps(seen))
for rid in [str(uuid.uuid4())] + sys.argv[2:] + learned:
    attempt("POST", "/invocation/%s/response" % rid, json.dumps({"answer": "forged"}))
    attempt("POST", "/invocation/%s/error" % rid,
            json.dumps({"errorMessage": "forged", "errorType": "Forged"}))
attempt("POST", "/init/error", json.dumps({"errorMessage": "forged", "errorType": "Forged"}))
registered = attempt("POST", "/2020-01-01/extension/register",
                     json.dumps({"events": ["INVOKE", "SHUTDOWN"]}),
                     {"Lambda-Extension-Name": "eavesdropper"})
ext_id = registered["headers"].get("Lambda-Extension-Identifier", str(uuid.uuid4()))
attempt("GET", "/2020-01-01/extension/event/next", None, {"Lambda-Extension-Identifier": ext_id})
subscription = json.dumps({"schemaVersion": "2022-12-13", "types": ["platform", "function"],
                           "destination": {"protocol": "HTTP",
                                           "URI": "http://sandbox.localdomain:9/"}})
attempt("PUT", "/2022-07-01/telemetry", subscription, {"Lambda-Extension-Identifier": ext_id})
attempt("PUT", "/2020-08-15/logs", subscription, {"Lambda-Extension-Identifier": ext_id})
print(json.dumps({"pid": os.getpid(), "attempts": attempts}))
"#;

/// A command that runs a Python of the system as user `nobody`, or why there is none.
fn as_nobody() -> Result<tokio::process::Command, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("running a process as another user needs root".into());
    }
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no setpriv")?;
    // A Python any user may run (one under root's home is not).
    let python = ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no system python3")?;
    let mut cmd = tokio::process::Command::new(setpriv);
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", python]);
    Ok(cmd)
}

/// Runs the attacker with `cmd`; returns its pid and its attempts.
async fn attack(mut cmd: tokio::process::Command, api: &str, ids: &[&str]) -> (u32, Vec<Value>) {
    let out = cmd
        .arg("-c")
        .arg(ATTACKER)
        .arg(api)
        .args(ids)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "attacker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = report["pid"].as_u64().unwrap() as u32;
    (pid, report["attempts"].as_array().unwrap().clone())
}

fn host_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("logs/lambkin.log")).unwrap_or_default()
}

/// Invokes `function` with `{"dir": dir_inside}`, which its handler sees as `exchange`; while
/// the handler holds the invocation, attacks its Runtime API from outside the instance; then
/// lets the handler answer and checks the caller gets that answer.
async fn hold_and_attack(host: Arc<Host>, function: &str, exchange: &Path, dir_inside: &str) {
    let caller = {
        let host = host.clone();
        let (function, payload) = (function.to_owned(), json!({ "dir": dir_inside }));
        tokio::spawn(async move { host.invoke(&function, &payload).await })
    };
    let exposed_file = exchange.join("exposed.json");
    // Polled off the test's workers, which the caller's request needs.
    let exposed: Option<Value> = tokio::task::spawn_blocking(move || {
        wait_for(PATIENCE, || {
            serde_json::from_slice(&std::fs::read(&exposed_file).ok()?).ok()
        })
    })
    .await
    .unwrap();
    let exposed = exposed.unwrap_or_else(|| {
        let log = std::fs::read_to_string(host.root.join(format!("logs/{function}.log")))
            .unwrap_or_default();
        panic!("the handler never ran:\n{log}")
    });
    let api = exposed["api"].as_str().unwrap();
    let request_id = exposed["request_id"].as_str().unwrap();

    let mut attackers = vec![(
        "an unrelated process of the host's user",
        tokio::process::Command::new("python3"),
    )];
    match as_nobody() {
        Ok(cmd) => attackers.push(("a process of user nobody", cmd)),
        Err(why) => support::skipped(&format!("the attack from another user: {why}")),
    }
    for (who, cmd) in attackers {
        // The attacker knows the real request id too: even then it cannot answer.
        let (pid, attempts) = attack(cmd, api, &[request_id]).await;
        assert!(attempts.len() >= 10, "{who}: {attempts:?}");
        for attempt in &attempts {
            let got = &attempt["got"];
            assert_eq!(got["status"], 403, "{who}: {attempt}");
            let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["errorType"], "AccessDenied", "{who}: {attempt}");
            assert!(
                !got.to_string().contains(request_id),
                "{who} learned the request id: {attempt}"
            );
        }
        let named = format!("peer_pid={pid}");
        let root = host.root.clone();
        let logged = tokio::task::spawn_blocking(move || {
            wait_for(PATIENCE, || host_log(&root).contains(&named).then_some(()))
        })
        .await
        .unwrap();
        assert!(
            logged.is_some(),
            "the host's log does not name {who} ({pid}):\n{}",
            host_log(&host.root)
        );
    }

    std::fs::write(exchange.join("release"), "").unwrap();
    let reply = caller.await.unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(json(&reply), json!({"answer": "real"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_other_process_can_take_or_answer_an_instance_s_event() {
    let tmp = tempfile::tempdir().unwrap();
    let exchange = tempfile::tempdir().unwrap();
    // The function runs as the default user, not the test's: the exchange is open to it.
    std::fs::set_permissions(exchange.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = Arc::new(Host::start(tmp.path()));
    let created = host
        .create(python_function(
            "victim",
            HOLDING_HANDLER,
            json!({"Pinned": false}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let dir = exchange.path().to_str().unwrap();
    hold_and_attack(host, "victim", exchange.path(), dir).await;
}

/// Deploys [`HOLDING_HANDLER`] as Lambda component `name`, its configuration's defaults
/// changed by `config`.
fn deploy_holding_component(tmp: &Path, root: &Path, name: &str, config: &Value) {
    let recipe = support::lambda_component(
        tmp,
        name,
        &[("lambda_function.py", HOLDING_HANDLER, 0o644)],
        config.clone(),
    );
    support::deployed(root, tmp, &[recipe], &["-m", &format!("{name}=1.0.0")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_other_process_can_take_or_answer_a_container_instance_s_event() {
    require_root!("a container");
    let cgroups = lambkin::cgroup::Cgroups::detect();
    require!(
        cgroups.is_ok(),
        "{}",
        cgroups.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Arc::new(Host::start(&root));
    // The container writes only its /tmp and its rw volumes: the exchange is one, open to the
    // runtime's user whoever it is.
    let exchange = tmp.path().join("exchange");
    std::fs::create_dir_all(&exchange).unwrap();
    std::fs::set_permissions(&exchange, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = json!({
        "pinned": false,
        "containerMode": "GreengrassContainer",
        "containerParams": {
            "memorySize": 65536.0,
            "mountROSysfs": false,
            "volumes": {
                "0": {"sourcePath": exchange, "destinationPath": "/exchange", "permission": "rw", "addGroupOwner": false}
            }
        }
    });
    deploy_holding_component(tmp.path(), &root, "com.example.Held", &config);
    hold_and_attack(host, "com.example.Held", &exchange, "/exchange").await;
}

/// A `bootstrap` that runs the runtime as its child, as wrapper scripts do.
const WRAPPING_BOOTSTRAP: &str = "#!/bin/sh\npython3 \"$LAMBDA_TASK_ROOT/runtime.py\"\nexit $?\n";

/// A custom runtime that takes each event itself, then has a child of its own post the answer
/// on a new connection. The answer says who took and who answered it, and what the runtime's
/// protocol errors looked like.
const DELEGATING_RUNTIME: &str = r#"import http.client, json, os, subprocess, sys

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
ANSWER = """
import http.client, json, os, sys
seen = json.loads(sys.argv[3])
seen["answered_by"] = {"pid": os.getpid(), "ppid": os.getppid()}
conn = http.client.HTTPConnection(sys.argv[1])
conn.request("POST", "/2018-06-01/runtime/invocation/%s/response" % sys.argv[2],
             body=json.dumps(seen), headers={"Content-Type": "application/json"})
r = conn.getresponse()
sys.exit(0 if r.status == 202 else 1)
"""
conn = http.client.HTTPConnection(API)


def call(method, path, body=None):
    conn.request(method, "/2018-06-01/runtime" + path, body=body)
    r = conn.getresponse()
    return {"status": r.status, "headers": dict(r.getheaders()), "body": r.read().decode()}


while True:
    taken = call("GET", "/invocation/next")
    rid = taken["headers"]["Lambda-Runtime-Aws-Request-Id"]
    with open("/proc/%d/cmdline" % os.getppid(), "rb") as f:
        parent = f.read().replace(b"\0", b" ").decode()
    seen = {
        "request_id": rid,
        "taken_by": {"pid": os.getpid(), "parent": parent},
        "busy_next": call("GET", "/invocation/next"),
        "unknown_id": call("POST", "/invocation/not-the-id/response", b"{}"),
    }
    answered = subprocess.run([sys.executable, "-c", ANSWER, API, rid, json.dumps(seen)])
    if answered.returncode != 0:
        sys.exit("the child's answer was refused")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_run_by_a_child_of_the_bootstrap_still_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let created = host
        .create(json!({
            "FunctionName": "wrapped",
            "Runtime": "provided.al2023",
            "Role": "arn:aws:iam::000000000000:role/test",
            "Handler": "bootstrap",
            "Code": { "ZipFile": zip(&[
                ("bootstrap", WRAPPING_BOOTSTRAP, 0o755),
                ("runtime.py", DELEGATING_RUNTIME, 0o644),
            ]) },
            "Timeout": 10,
            "Greengrass": {"Pinned": false},
        }))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );

    let mut runtimes = Vec::new();
    for round in 0..2 {
        let reply = host.invoke("wrapped", &json!({"round": round})).await;
        if reply.status != 200 || !json(&reply)["request_id"].is_string() {
            let log = std::fs::read_to_string(tmp.path().join("logs/wrapped.log")).unwrap();
            panic!(
                "round {round}: {} {}\n{log}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        let seen = json(&reply);
        let request_id = seen["request_id"].as_str().unwrap();
        let taken_by = &seen["taken_by"];
        assert!(
            taken_by["parent"].as_str().unwrap().contains("bootstrap"),
            "the runtime is not the bootstrap's child: {seen}"
        );
        let answered_by = &seen["answered_by"];
        assert_eq!(answered_by["ppid"], taken_by["pid"], "{seen}");
        assert_ne!(answered_by["pid"], taken_by["pid"], "{seen}");
        runtimes.push(taken_by["pid"].clone());

        let busy = &seen["busy_next"];
        assert_eq!(busy["status"], 403, "{seen}");
        assert!(!busy.to_string().contains(request_id), "{busy}");
        let unknown = &seen["unknown_id"];
        assert_eq!(unknown["status"], 400, "{seen}");
        assert!(unknown["body"].as_str().unwrap().contains("not-the-id"));
        assert!(!unknown.to_string().contains(request_id), "{unknown}");
    }
    // One instance served both: its runtime was not replaced after a refusal.
    assert_eq!(runtimes[0], runtimes[1]);
}
