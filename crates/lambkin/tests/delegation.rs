//! Delegation to remote targets: two hosts on loopback, B acting as the remote of A (B takes
//! signed requests only, as hosts do by default; A signs with B's key, read from B's
//! credentials file). Functions on A run on B under `remote`, spill over to B under
//! `overflow`, come back to A under `remote-first` when B is down; a delegated `Event`
//! accepted while B is down runs on B once it is back, across a restart of A. Targets that
//! answer 403 or garbage, or none at all, and a policy naming an unknown target.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use support::{header, json as body_json, lines, python_function, wait_for, wait_for_line, Host};

/// Sleeps `SLEEP_MS` (default 0), prints the event (so a host's log shows what it ran) and
/// says where it ran; `{"fail": true}` raises.
const CODE: &str = r#"import json, os, time
def handler(event, context):
    print("event " + json.dumps(event, sort_keys=True))
    time.sleep(int(os.environ.get("SLEEP_MS", "0")) / 1000)
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("failed on " + os.environ["WHERE"])
    return {"host": os.environ["WHERE"]}
"#;

fn function(name: &str, place: &str, sleep_ms: u32, greengrass: Value) -> Value {
    python_function(
        name,
        CODE,
        greengrass,
        BTreeMap::from([
            ("WHERE", place.to_owned()),
            ("SLEEP_MS", sleep_ms.to_string()),
        ]),
    )
}

fn on_demand(max: u32) -> Value {
    json!({ "Pinned": false, "MaxInstancesCount": max })
}

fn delegated(max: u32, policy: &str, target: &str, remote_name: &str) -> Value {
    json!({
        "Pinned": false,
        "MaxInstancesCount": max,
        "Delegation": { "Policy": policy, "Target": target, "FunctionName": remote_name },
    })
}

/// B: a host whose function `work` says it ran on B.
async fn start_b(root: &Path) -> Host {
    let b = Host::start(root);
    b.created(function("work", "B", 0, on_demand(20))).await;
    let created = b.create(function("slow", "B", 200, on_demand(20))).await;
    assert_eq!(created.status, 201);
    b
}

/// A's configuration: target `b` at `b_addr`, signing with B's own key.
fn configure_a(a_root: &Path, b_root: &Path, b_addr: &str, extra: &str) {
    std::fs::create_dir_all(a_root).unwrap();
    std::fs::write(
        a_root.join("config.toml"),
        format!(
            "[remote_targets.b]\nendpoint = \"http://{b_addr}\"\ncredentials = \"file\"\n\
             path = \"{}\"\nprofile = \"lambkin\"\nconnect_timeout_ms = 1000\n\
             event_retry_max_ms = 300\n{extra}",
            b_root.join("state/credentials").display()
        ),
    )
    .unwrap();
}

fn starts(log: &Path) -> usize {
    lines(log)
        .iter()
        .filter(|l| l.contains("START RequestId"))
        .count()
}

fn host_of(reply: &support::HttpReply) -> String {
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    body_json(reply)["host"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_runs_on_the_peer_and_overflow_spills_over() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_root, b_root) = (tmp.path().join("a"), tmp.path().join("b"));
    let b = start_b(&b_root).await;
    // A second target, the same host, signed with the token exchange service's source (here
    // static keys: B's).
    let b_key = lambkin::keys::AccessKey::from_profile(
        &std::fs::read_to_string(b_root.join("state/credentials")).unwrap(),
        "lambkin",
    )
    .unwrap();
    configure_a(
        &a_root,
        &b_root,
        &b.addr,
        &format!(
            "[remote_targets.b-tes]\nendpoint = \"http://{}\"\ncredentials = \"tes\"\n\
             [tes]\nsource = \"static\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            b.addr, b_key.access_key_id, b_key.secret
        ),
    );
    let a = Host::start(&a_root);
    a.created(function(
        "rem-tes",
        "A",
        0,
        delegated(2, "remote", "b-tes", "work"),
    ))
    .await;
    assert_eq!(host_of(&a.invoke("rem-tes", &json!({})).await), "B");

    // `remote`: runs on B, as B's log shows; A's log says where it went.
    a.created(function("rem", "A", 0, delegated(2, "remote", "b", "work")))
        .await;
    let configuration = body_json(&a.call("GET", "/2015-03-31/functions/rem", &[], "").await);
    assert_eq!(
        configuration["Configuration"]["Greengrass"]["Delegation"]["Policy"],
        json!("remote"),
        "{configuration}"
    );
    let before = starts(&b_root.join("logs/work.log"));
    let reply = a.invoke("rem", &json!({"mark": "remote-1"})).await;
    assert_eq!(host_of(&reply), "B");
    // A function's log lines reach its file just after the answer.
    let b_log = wait_for(Duration::from_secs(10), || {
        let b_log = lines(&b_root.join("logs/work.log"));
        (b_log
            .iter()
            .filter(|l| l.contains("START RequestId"))
            .count()
            > before)
            .then_some(b_log)
    })
    .expect("the invocation's START line on B");
    assert_eq!(starts(&b_root.join("logs/work.log")), before + 1);
    assert!(
        b_log
            .iter()
            .any(|l| l.contains(r#"event {"mark": "remote-1"}"#)),
        "{b_log:?}"
    );
    let request_id = header(&reply, "x-amzn-requestid").unwrap();
    let line = format!("DELEGATED RequestId: {request_id} Target: b Function: work");
    let a_log = wait_for_line(&a_root.join("logs/rem.log"), Duration::from_secs(10), |l| {
        l.contains(&line)
    });
    let a_log = a_log.unwrap_or_else(|| panic!("{line:?} in A's log"));
    assert_eq!(starts(&a_root.join("logs/rem.log")), 0, "{a_log:?}");

    // A Lambda component's `delegation` configuration sets its function's policy.
    let recipe = support::lambda_component(
        tmp.path(),
        "com.example.Delegated",
        &[(
            "lambda_function.py",
            "def lambda_handler(e, c):\n    return {'host': 'A'}\n",
            0o644,
        )],
        json!({
            "containerMode": "NoContainer",
            "delegation": { "policy": "remote", "target": "b", "functionName": "work" },
        }),
    );
    support::deployed(
        &a_root,
        tmp.path(),
        &[recipe],
        &["-m", "com.example.Delegated=1.0.0"],
    );
    assert_eq!(
        host_of(&a.invoke("com.example.Delegated", &json!({})).await),
        "B"
    );

    // The log tail and a function error pass through as B answered them.
    let reply = a
        .call(
            "POST",
            "/2015-03-31/functions/rem/invocations",
            &[("x-amz-log-type", "Tail")],
            json!({"fail": true}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "x-amz-function-error"), Some("Unhandled"));
    assert!(String::from_utf8_lossy(&reply.body).contains("failed on B"));
    let tail = base64::engine::general_purpose::STANDARD
        .decode(header(&reply, "x-amz-log-result").expect("a log tail"))
        .unwrap();
    let tail = String::from_utf8_lossy(&tail);
    assert!(
        tail.contains("START RequestId") && tail.contains("failed on B"),
        "{tail}"
    );

    // `overflow`: two instances here, the rest of 20 concurrent 200 ms calls on B.
    let created = a
        .create(function(
            "spill",
            "A",
            200,
            delegated(2, "overflow", "b", "slow"),
        ))
        .await;
    assert_eq!(created.status, 201);
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let addr = a.addr.clone();
            let root = a_root.clone();
            tokio::spawn(async move {
                let a = Host {
                    root,
                    addr,
                    child: None,
                };
                a.invoke("spill", &json!({ "n": i })).await
            })
        })
        .collect();
    let mut ran = BTreeMap::<String, usize>::new();
    for call in calls {
        let reply = call.await.unwrap();
        *ran.entry(host_of(&reply)).or_default() += 1;
    }
    assert_eq!(ran.values().sum::<usize>(), 20);
    let spill_log = lines(&a_root.join("logs/spill.log"));
    assert!(
        ran.get("A").copied().unwrap_or(0) >= 2,
        "{ran:?} {spill_log:#?}"
    );
    assert!(
        ran.get("B").copied().unwrap_or(0) >= 1,
        "{ran:?} {spill_log:#?}"
    );
    let delegated_lines = || {
        lines(&a_root.join("logs/spill.log"))
            .iter()
            .filter(|l| l.contains("DELEGATED RequestId"))
            .count()
    };
    wait_for(Duration::from_secs(10), || {
        (delegated_lines() >= ran["B"]).then_some(())
    })
    .expect("a DELEGATED line for each invocation B ran");
    assert_eq!(delegated_lines(), ran["B"]);
    // A's metrics count what B took as `delegated` and what ran here as `success`.
    let token = std::fs::read_to_string(a_root.join("state/metrics.token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let outcome = |text: &str, outcome: &str| {
        let series = format!(
            "lambkin_function_invocations_total{{function=\"spill\",outcome=\"{outcome}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|n| n.trim().parse::<f64>().ok())
    };
    let mut last = String::new();
    let counted = {
        let mut counted = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counted.is_none() && std::time::Instant::now() < deadline {
            let scraped = a
                .call_unsigned("GET", "/metrics", &[("authorization", &bearer)], "")
                .await;
            assert_eq!(scraped.status, 200);
            last = String::from_utf8_lossy(&scraped.body).into_owned();
            let pair = (outcome(&last, "delegated"), outcome(&last, "success"));
            if pair == (Some(ran["B"] as f64), Some(ran["A"] as f64)) {
                counted = Some(pair);
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        counted
    };
    assert!(counted.is_some(), "A's counters are not {ran:?}:\n{last}");

    // An OpenWhisk action's `delegation` annotation sets its function's policy: the
    // activation runs as B's action of the same name.
    let action = |annotations: Value| {
        json!({
            "exec": {"kind": "python:3", "code": "def main(p):\n    return {'n': p.get('n', 0) + 1}\n"},
            "annotations": annotations,
        })
    };
    let (status, made) = whisk(&b, "PUT", "actions/inc", action(json!([]))).await;
    assert_eq!(status, 200, "{made}");
    let (status, made) = whisk(
        &a,
        "PUT",
        "actions/inc",
        action(json!([{"key": "delegation", "value": {"policy": "remote", "target": "b"}}])),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let b_starts = starts(&b_root.join("logs/ow-inc.log"));
    let (status, result) = whisk(
        &a,
        "POST",
        "actions/inc?blocking=true&result=true",
        json!({"n": 41}),
    )
    .await;
    assert_eq!((status, result), (200, json!({"n": 42})));
    // B's START line may follow its answer (an action's output comes with the answer).
    wait_for(Duration::from_secs(10), || {
        (starts(&b_root.join("logs/ow-inc.log")) == b_starts + 1).then_some(())
    })
    .expect("the activation ran on B");
    wait_for_line(
        &a_root.join("logs/ow-inc.log"),
        Duration::from_secs(10),
        |l| l.contains("DELEGATED") && l.contains("Function: ow-inc"),
    )
    .expect("the DELEGATED line in A's log");
    // A bad annotation is refused, naming it; an unknown target too.
    let (status, refused) = whisk(
        &a,
        "PUT",
        "actions/inc?overwrite=true",
        action(json!([{"key": "delegation", "value": {"policy": "remote", "target": "nope"}}])),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("\"nope\""),
        "{refused}"
    );
    let (status, refused) = whisk(
        &a,
        "PUT",
        "actions/inc?overwrite=true",
        action(json!([{"key": "delegation", "value": {"policy": "sometimes"}}])),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("delegation annotation"),
        "{refused}"
    );
}

/// A call to a host's OpenWhisk API with its key.
async fn whisk(host: &Host, method: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = std::fs::read_to_string(host.root.join("state/openwhisk.auth")).unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(auth.trim())
    );
    let reply = host
        .call_unsigned(
            method,
            &format!("/api/v1/namespaces/_/{path}"),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await;
    let value = if reply.body.is_empty() {
        Value::Null
    } else {
        body_json(&reply)
    };
    (reply.status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_remote_first_runs_here_remote_fails_and_events_wait_for_the_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_root, b_root) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut b = start_b(&b_root).await;
    let b_addr = b.addr.clone();
    configure_a(&a_root, &b_root, &b_addr, "");
    let mut a = Host::start(&a_root);
    for (name, policy) in [
        ("first", "remote-first"),
        ("rem", "remote"),
        ("ev", "remote"),
    ] {
        a.created(function(name, "A", 0, delegated(2, policy, "b", "work")))
            .await;
    }
    // Online, remote-first runs on B.
    assert_eq!(host_of(&a.invoke("first", &json!({})).await), "B");

    assert_eq!(b.stop(), Some(0));
    // Offline: remote-first runs here and says why; remote answers the documented error.
    assert_eq!(host_of(&a.invoke("first", &json!({})).await), "A");
    assert!(lines(&a_root.join("logs/first.log"))
        .iter()
        .any(|l| l.contains("FALLBACK") && l.contains("unreachable")));
    let reply = a.invoke("rem", &json!({})).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        header(&reply, "x-amzn-errortype"),
        Some("RemoteTargetException")
    );
    let message = body_json(&reply)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("remote target b is unreachable"),
        "{message}"
    );

    // An Event accepted while B is down is kept, across a restart of A, until B takes it.
    let reply = a.invoke_event("ev", &json!({"mark": "held-event"})).await;
    assert_eq!(reply.status, 202);
    assert_eq!(a.stop(), Some(0));
    let a = Host::start(&a_root);
    let b = Host::start_listening(&b_root, &b_addr, &[]);
    let b_log = b_root.join("logs/work.log");
    wait_for_line(&b_log, Duration::from_secs(30), |l| {
        l.contains(r#"event {"mark": "held-event"}"#)
    })
    .expect("the held Event ran on B once it was back");
    wait_for_line(&a_root.join("logs/ev.log"), Duration::from_secs(10), |l| {
        l.contains("DELEGATED") && l.contains("(accepted)")
    })
    .expect("A's log says the Event went to B");
    // Handed over once: it does not run again here or there.
    assert_eq!(starts(&a_root.join("logs/ev.log")), 0);
    drop((a, b));
}

/// A loopback server that answers every connection with `answer` and closes it.
fn tiny_server(answer: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(&answer);
        }
    });
    addr
}

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_answer_clear_errors_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a");
    let refusal = r#"{"message":"The security token included in the request is invalid."}"#;
    let forbidden = tiny_server(
        format!(
            "HTTP/1.1 403 Forbidden\r\nx-amzn-errortype: UnrecognizedClientException\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n\
             {refusal}",
            refusal.len()
        )
        .into_bytes(),
    );
    let garbage = tiny_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec());
    let down = closed_port();
    // Connections complete in the kernel's backlog, and nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    std::fs::create_dir_all(&root).unwrap();
    let target = |name: &str, addr: &str| {
        format!(
            "[remote_targets.{name}]\nendpoint = \"http://{addr}\"\ncredentials = \"static\"\n\
             access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"secret\"\n\
             connect_timeout_ms = 1000\nanswer_slack_ms = 300\nevent_retry_max_ms = 200\n"
        )
    };
    std::fs::write(
        root.join("config.toml"),
        [
            target("forbidden", &forbidden),
            target("garbage", &garbage),
            target("down", &down),
            target("silent", &silent_addr),
        ]
        .concat(),
    )
    .unwrap();
    let lambkin = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(args)
            .output()
            .unwrap()
    };
    let checked = lambkin(&["check-config", "--root", root.to_str().unwrap()]);
    assert!(checked.status.success(), "{checked:?}");

    let mut a = Host::start(&root);
    for (name, target, expected) in [
        ("to-forbidden", "forbidden", "remote target forbidden answered 403 UnrecognizedClientException: The security token included in the request is invalid."),
        ("to-garbage", "garbage", "remote target garbage answered something that is not an Invoke answer"),
        ("to-down", "down", "remote target down is unreachable"),
    ] {
        a.created(function(name, "A", 0, delegated(2, "remote", target, "work"))).await;
        let reply = a.invoke(name, &json!({})).await;
        assert_eq!(reply.status, 502, "{name}: {}", String::from_utf8_lossy(&reply.body));
        assert_eq!(header(&reply, "x-amzn-errortype"), Some("RemoteTargetException"));
        let message = body_json(&reply)["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with(expected), "{name}: {message}");
    }
    // Invocations on their way to a target that is down wait as queued ones do: no more
    // than MaxQueueSize (2) of them; the next are refused 429 and not stored.
    let mut bounded = delegated(2, "remote", "down", "work");
    bounded["MaxQueueSize"] = json!(2);
    a.created(function("to-down-bounded", "A", 0, bounded))
        .await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(
            a.invoke_event("to-down-bounded", &json!({ "n": n }))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [202, 202, 429, 429, 429]);

    // A target that does not answer within the function's timeout (1 s) and the target's
    // slack: `remote` says so, `remote-first` runs the invocation here.
    for (name, policy) in [
        ("silent-remote", "remote"),
        ("silent-first", "remote-first"),
    ] {
        let mut spec = function(name, "A", 0, delegated(2, policy, "silent", "work"));
        spec["Timeout"] = json!(1);
        a.created(spec).await;
    }
    let reply = a.invoke("silent-remote", &json!({})).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let message = body_json(&reply)["message"].as_str().unwrap().to_owned();
    assert_eq!(
        message,
        "remote target silent did not answer within 1300 ms"
    );
    assert_eq!(host_of(&a.invoke("silent-first", &json!({})).await), "A");
    assert!(lines(&root.join("logs/silent-first.log"))
        .iter()
        .any(|l| l.contains("FALLBACK") && l.contains("did not answer within 1300 ms")));
    drop(silent);

    // remote-first takes a target that answers garbage as one that did not run it.
    let created = a
        .create(function(
            "garbage-first",
            "A",
            0,
            delegated(2, "remote-first", "garbage", "work"),
        ))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(host_of(&a.invoke("garbage-first", &json!({})).await), "A");

    // A policy naming a target the host does not have is refused, on the API and in a
    // deployment, naming it.
    let refused = a
        .create(function(
            "nowhere",
            "A",
            0,
            delegated(2, "remote", "nope", "work"),
        ))
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        header(&refused, "x-amzn-errortype"),
        Some("InvalidParameterValueException")
    );
    let message = body_json(&refused)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("\"nope\"") && message.contains("forbidden"),
        "{message}"
    );
    let update = a
        .call(
            "PUT",
            "/2015-03-31/functions/to-down/configuration",
            &[],
            json!({"Greengrass": {"Delegation": {"Policy": "overflow", "Target": "nope"}}})
                .to_string(),
        )
        .await;
    assert_eq!(
        update.status,
        400,
        "{}",
        String::from_utf8_lossy(&update.body)
    );
    let recipe = support::lambda_component(
        tmp.path(),
        "delegating",
        &[(
            "lambda_function.py",
            "def lambda_handler(e, c):\n    return 1\n",
            0o644,
        )],
        json!({
            "containerMode": "NoContainer",
            "delegation": { "policy": "remote", "target": "nope" },
        }),
    );
    let out = support::deploy(&root, tmp.path(), &[recipe], &["-m", "delegating=1.0.0"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("\"nope\""), "{said}");

    // An Event accepted for a target that refuses it is held; once the function is made
    // local, it runs here, once (a restart does not run it again).
    let reply = a
        .invoke_event("to-forbidden", &json!({"mark": "kept"}))
        .await;
    assert_eq!(reply.status, 202);
    let update = a
        .call(
            "PUT",
            "/2015-03-31/functions/to-forbidden/configuration",
            &[],
            json!({"Greengrass": {"Delegation": {"Policy": "local"}}}).to_string(),
        )
        .await;
    assert_eq!(
        update.status,
        200,
        "{}",
        String::from_utf8_lossy(&update.body)
    );
    let kept_runs = || {
        lines(&root.join("logs/to-forbidden.log"))
            .iter()
            .filter(|l| l.contains(r#"event {"mark": "kept"}"#))
            .count()
    };
    wait_for(Duration::from_secs(20), || (kept_runs() == 1).then_some(()))
        .expect("the held Event ran here once the function was local");
    // Pinned, so this one runs after the held Event has ended and been forgotten (a host
    // stopped while it still ran would run it again: at least once).
    assert_eq!(host_of(&a.invoke("to-forbidden", &json!({})).await), "A");
    assert_eq!(a.stop(), Some(0));
    let a = Host::start(&root);
    // Stored Events are resubmitted before the API answers, in order: one invoked now runs
    // after any the store still held.
    let reply = a
        .invoke_event("to-forbidden", &json!({"mark": "after"}))
        .await;
    assert_eq!(reply.status, 202);
    wait_for(Duration::from_secs(20), || {
        lines(&root.join("logs/to-forbidden.log"))
            .iter()
            .any(|l| l.contains(r#"event {"mark": "after"}"#))
            .then_some(())
    })
    .expect("the next Event ran");
    assert_eq!(kept_runs(), 1);
    drop(a);

    // check-config names a bad target (exit 78).
    std::fs::write(
        root.join("config.toml"),
        "[remote_targets.x]\nendpoint = \"ftp://h\"\ncredentials = \"tes\"\n",
    )
    .unwrap();
    let checked = lambkin(&["check-config", "--root", root.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(78), "{checked:?}");
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains("remote_targets.x.endpoint") && said.contains("needs a [tes] section"),
        "{said}"
    );
}

/// A CA and a certificate for `localhost` it signed (PEM of the CA, the server's chain and
/// key).
fn tls_pki() -> (
    String,
    Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    (
        ca.pem(),
        vec![server.der().clone()],
        tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_is_reached_through_tls_it_trusts() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_root, b_root) = (tmp.path().join("a"), tmp.path().join("b"));
    let b = start_b(&b_root).await;
    // B behind TLS: a proxy that ends TLS (a certificate for localhost from the test's CA)
    // and passes the bytes on to B.
    let (ca_pem, chain, key) = tls_pki();
    let (other_ca_pem, _, _) = tls_pki();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let b_addr = b.addr.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, b_addr) = (acceptor.clone(), b_addr.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&b_addr).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    std::fs::create_dir_all(&a_root).unwrap();
    std::fs::write(a_root.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(a_root.join("other-ca.pem"), &other_ca_pem).unwrap();
    let target = |name: &str, ca: &str| {
        format!(
            "[remote_targets.{name}]\nendpoint = \"https://localhost:{port}\"\n\
             credentials = \"file\"\npath = \"{}\"\nprofile = \"lambkin\"\nca = \"{ca}\"\n",
            b_root.join("state/credentials").display()
        )
    };
    // `ca` relative to config.toml's directory.
    std::fs::write(
        a_root.join("config.toml"),
        [target("tls", "ca.pem"), target("untrusted", "other-ca.pem")].concat(),
    )
    .unwrap();
    let a = Host::start(&a_root);
    for (name, target) in [("over-tls", "tls"), ("untrusted", "untrusted")] {
        a.created(function(
            name,
            "A",
            0,
            delegated(2, "remote", target, "work"),
        ))
        .await;
    }
    assert_eq!(host_of(&a.invoke("over-tls", &json!({})).await), "B");
    let reply = a.invoke("untrusted", &json!({})).await;
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let message = body_json(&reply)["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("remote target untrusted is unreachable: TLS with localhost:"),
        "{message}"
    );

    // A CA file that is not there stops check-config (exit 78), naming the target.
    std::fs::write(a_root.join("config.toml"), target("tls", "missing.pem")).unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["check-config", "--root", a_root.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(78), "{checked:?}");
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains("remote_targets.tls") && said.contains("missing.pem"),
        "{said}"
    );
}
