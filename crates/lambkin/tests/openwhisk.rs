//! The OpenWhisk API across a restart of the host: actions, triggers, rules and activation
//! records are kept under ROOT/state/openwhisk, the key in ROOT/state/openwhisk.auth.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use serde_json::json;
use support::{json, Host};

fn basic(host: &Host) -> String {
    let auth = std::fs::read_to_string(host.root.join("state/openwhisk.auth")).unwrap();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(auth.trim())
    )
}

async fn whisk(
    host: &Host,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let auth = basic(host);
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
        serde_json::Value::Null
    } else {
        json(&reply)
    };
    (reply.status, value)
}

#[tokio::test]
async fn actions_rules_and_activations_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path());
    let key_file = tmp.path().join("state/openwhisk.auth");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (status, _) = whisk(
        &host,
        "PUT",
        "actions/count?overwrite=true",
        json!({"exec": {"kind": "python:3", "code": "def main(p):\n    return {'n': p.get('n', 0) + 1}\n"},
               "parameters": [{"key": "n", "value": 10}]}),
    )
    .await;
    assert_eq!(status, 200);
    whisk(&host, "PUT", "triggers/tick", json!({})).await;
    let (status, _) = whisk(
        &host,
        "PUT",
        "rules/on-tick",
        json!({"trigger": "/_/tick", "action": "/_/count"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, record) = whisk(&host, "POST", "actions/count?blocking=true", json!({})).await;
    assert_eq!(
        (status, record["response"]["result"]["n"].as_i64()),
        (200, Some(11))
    );
    let activation = record["activationId"].as_str().unwrap().to_owned();

    assert_eq!(host.stop(), Some(0));
    let host = Host::start(tmp.path());
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the key is kept"
    );

    let (status, kept) = whisk(
        &host,
        "GET",
        &format!("activations/{activation}"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "the activation record is read back");
    assert_eq!(kept["response"]["result"], json!({"n": 11}));
    let (status, result) = whisk(
        &host,
        "POST",
        "actions/count?blocking=true&result=true",
        json!({"n": 1}),
    )
    .await;
    assert_eq!(
        (status, result),
        (200, json!({"n": 2})),
        "the action runs after the restart"
    );
    let (status, rule) = whisk(&host, "GET", "rules/on-tick", json!({})).await;
    assert_eq!((status, rule["status"].as_str()), (200, Some("active")));
    let (status, fired) = whisk(&host, "POST", "triggers/tick", json!({})).await;
    assert_eq!(status, 202, "the trigger and its rule are kept: {fired}");
}

/// A kind `[openwhisk.kinds]` backs with a Lambda layer: its actions are functions with that
/// layer in their `Layers` (a module the layer carries is importable); without the layer the
/// action is refused naming it, and nothing is made.
#[tokio::test]
async fn a_kind_backed_by_a_layer_runs_its_actions_on_that_layer() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("config.toml"),
        "[openwhisk.kinds]\n\"python:greet\" = { runtime = \"python3.12\", layers = [\"greeting:1\"] }\n",
    )
    .unwrap();
    let host = Host::start(tmp.path());
    let action = json!({"exec": {"kind": "python:greet",
        "code": "import greeting\ndef main(p):\n    return {'text': greeting.hello(p.get('name', 'x'))}\n"}});

    let (status, refused) = whisk(&host, "PUT", "actions/hi", action.clone()).await;
    assert_eq!(status, 400, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("python:greet") && error.contains(":layer:greeting:1 does not exist"),
        "the error names the kind and the missing layer: {error}"
    );
    let (status, _) = whisk(&host, "GET", "actions/hi", json!({})).await;
    assert_eq!(status, 404, "nothing half-made");
    let function = host
        .call("GET", "/2015-03-31/functions/ow-hi", &[], "")
        .await;
    assert_eq!(function.status, 404, "no function either");

    let published = host
        .call(
            "POST",
            "/2018-10-31/layers/greeting/versions",
            &[("content-type", "application/json")],
            json!({"Content": {"ZipFile": support::zip(&[(
                "python/greeting.py",
                "def hello(name):\n    return 'hello ' + name + ' from the layer'\n",
                0o644,
            )])}})
            .to_string(),
        )
        .await;
    assert_eq!(published.status, 201);
    let arn = json(&published)["LayerVersionArn"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, made) = whisk(&host, "PUT", "actions/hi", action).await;
    assert_eq!(status, 200, "{made}");
    let (status, result) = whisk(
        &host,
        "POST",
        "actions/hi?blocking=true&result=true",
        json!({"name": "device"}),
    )
    .await;
    assert_eq!(
        (status, result),
        (200, json!({"text": "hello device from the layer"}))
    );
    let function = json(
        &host
            .call("GET", "/2015-03-31/functions/ow-hi", &[], "")
            .await,
    );
    assert_eq!(
        function["Configuration"]["Layers"][0]["Arn"].as_str(),
        Some(arn.as_str()),
        "the action's function has the kind's layer: {function}"
    );

    // As AWS, the version may be deleted while a function uses it: the action keeps its copy
    // and runs; a new action of the kind is refused, naming the layer.
    let deleted = host
        .call("DELETE", "/2018-10-31/layers/greeting/versions/1", &[], "")
        .await;
    assert_eq!(deleted.status, 204);
    let (status, result) = whisk(
        &host,
        "POST",
        "actions/hi?blocking=true&result=true",
        json!({"name": "again"}),
    )
    .await;
    assert_eq!(
        (status, result),
        (200, json!({"text": "hello again from the layer"}))
    );
    let (status, refused) = whisk(
        &host,
        "PUT",
        "actions/other",
        json!({"exec": {"kind": "python:greet", "code": "def main(p):\n    return p\n"}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
}

/// Non-blocking activations accepted before the host stops (running, or queued behind the
/// action's eight instances) run after the restart, and their records appear with their
/// results under the ids the 202s gave.
async fn non_blocking_activations_survive(stop: impl FnOnce(&mut Host)) {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path());
    let marks = support::dir_for_components(tmp.path(), "marks");
    let (status, made) = whisk(
        &host,
        "PUT",
        "actions/slow",
        json!({"exec": {"kind": "python:3", "code": "import os, time\ndef main(p):\n    open(os.path.join(p['dir'], 'started-' + p['tag']), 'w').close()\n    time.sleep(p.get('sleep', 2))\n    open(os.path.join(p['dir'], 'ended-' + p['tag']), 'w').close()\n    return {'tag': p['tag']}\n"}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let dir = marks.to_str().unwrap();
    let mut accepted = Vec::new();
    for n in 0..9 {
        let (status, reply) = whisk(
            &host,
            "POST",
            "actions/slow",
            json!({"dir": dir, "tag": format!("t{n}")}),
        )
        .await;
        assert_eq!(status, 202, "{reply}");
        accepted.push((
            reply["activationId"].as_str().unwrap().to_owned(),
            format!("t{n}"),
        ));
    }
    // An Event made through the Lambda API that claims to be an activation (a component may
    // invoke functions) writes no record: it lacks the key's seal.
    let forged = host
        .invoke_event(
            "ow-slow",
            &json!({"value": {"dir": dir, "tag": "forged", "sleep": 0},
                    "lambkinActivation": {"ran": {"name": "slow", "version": "0.0.1",
                        "kind": "python:3", "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}},
                        "accepted_ms": 0, "seal": "00"}}),
        )
        .await;
    assert_eq!(forged.status, 202);
    let forged_id = support::header(&forged, "x-amzn-requestid")
        .unwrap()
        .replace('-', "");
    let started = || std::fs::read_dir(&marks).unwrap().count();
    support::wait_for(std::time::Duration::from_secs(30), || {
        (started() > 0).then_some(())
    })
    .expect("an activation starts");
    let (status, _) = whisk(
        &host,
        "GET",
        &format!("activations/{}", accepted[8].0),
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "the ninth is still queued when the host stops");
    stop(&mut host);

    let host = Host::start(tmp.path());
    for (id, tag) in &accepted {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let record = loop {
            let (status, record) =
                whisk(&host, "GET", &format!("activations/{id}"), json!({})).await;
            if status == 200 {
                break record;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "activation {id} ({tag}) has no record a minute after the restart"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(
            (
                record["response"]["status"].as_str(),
                &record["response"]["result"]
            ),
            (Some("success"), &json!({"tag": tag})),
            "{record}"
        );
        assert_eq!(record["name"], "slow");
    }
    support::wait_for(std::time::Duration::from_secs(30), || {
        marks.join("ended-forged").exists().then_some(())
    })
    .expect("the forged Event runs too");
    // Its record, were it written, would be within milliseconds of its end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let (status, record) =
            whisk(&host, "GET", &format!("activations/{forged_id}"), json!({})).await;
        assert_eq!(status, 404, "no record for the forged activation: {record}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn non_blocking_activations_run_after_a_sigterm_restart() {
    non_blocking_activations_survive(|host| assert_eq!(host.stop(), Some(0))).await;
}

#[tokio::test]
async fn non_blocking_activations_run_after_a_sigkill_restart() {
    non_blocking_activations_survive(Host::crash).await;
}

/// With `sync_blocking_records`, a blocking invoke answers once the activation's record is
/// synced: a SIGKILL right after the answer loses none of them.
#[tokio::test]
async fn blocking_activation_records_survive_a_crash_right_after_the_answer_when_synced() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("config.toml"),
        "[openwhisk]\nsync_blocking_records = true\n",
    )
    .unwrap();
    let mut host = Host::start(tmp.path());
    let (status, made) = whisk(
        &host,
        "PUT",
        "actions/echo",
        json!({"exec": {"kind": "python:3", "code": "def main(p):\n    return p\n"}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, record) =
            whisk(&host, "POST", "actions/echo?blocking=true", json!({"n": n})).await;
        assert_eq!(status, 200, "{record}");
        ids.push(record["activationId"].as_str().unwrap().to_owned());
    }
    host.crash();
    let host = Host::start(tmp.path());
    for (n, id) in ids.iter().enumerate() {
        let (status, record) = whisk(&host, "GET", &format!("activations/{id}"), json!({})).await;
        assert_eq!(status, 200, "activation {n} lost in the crash");
        assert_eq!(record["response"]["result"], json!({"n": n}));
    }
}

/// `limits.concurrency` N lets an action run N times the activations at once (each instance
/// runs one): sixteen activations that wait for each other all meet with concurrency 2,
/// where concurrency 1 gives eight instances.
#[tokio::test]
async fn concurrency_runs_that_many_times_the_activations_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let meeting = support::dir_for_components(tmp.path(), "meeting");
    let (status, made) = whisk(
        &host,
        "PUT",
        "actions/meet",
        json!({"exec": {"kind": "python:3", "code": "import os, time\ndef main(p):\n    d = p['dir']\n    open(os.path.join(d, 'in-' + p['tag']), 'w').close()\n    deadline = time.time() + 30\n    while len(os.listdir(d)) < p['n'] and time.time() < deadline:\n        time.sleep(0.05)\n    return {'met': len(os.listdir(d))}\n"},
               "limits": {"concurrency": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["limits"]["concurrency"], 2);
    let (_, got) = whisk(&host, "GET", "actions/meet", json!({})).await;
    assert_eq!(got["limits"]["concurrency"], 2, "kept: {got}");
    let host = std::sync::Arc::new(host);
    let dir = meeting.to_str().unwrap().to_owned();
    let all: Vec<_> = (0..16)
        .map(|n| {
            let host = host.clone();
            let dir = dir.clone();
            tokio::spawn(async move {
                whisk(
                    &host,
                    "POST",
                    "actions/meet?blocking=true&result=true",
                    json!({"dir": dir, "tag": n.to_string(), "n": 16}),
                )
                .await
            })
        })
        .collect();
    for task in all {
        let (status, result) = task.await.unwrap();
        assert_eq!(
            (status, result),
            (200, json!({"met": 16})),
            "all sixteen run at once"
        );
    }
    let (status, refused) = whisk(
        &host,
        "PUT",
        "actions/meet?overwrite=true",
        json!({"limits": {"concurrency": 501}}),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (
            400,
            Some("The request content was malformed: concurrency 501 exceeds allowed threshold of 500")
        )
    );
}

/// An action times out at its own milliseconds, not at the whole seconds the Lambda API shows
/// for its function: 1500 ms, not 2 s.
#[tokio::test]
async fn an_action_times_out_at_its_millisecond_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let (status, made) = whisk(
        &host,
        "PUT",
        "actions/nap",
        json!({"exec": {"kind": "python:3", "code": "import time\ndef main(p):\n    time.sleep(p.get('s', 0))\n    return {'slept': p.get('s', 0)}\n"},
               "limits": {"timeout": 1500}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let function = json(
        &host
            .call("GET", "/2015-03-31/functions/ow-nap", &[], "")
            .await,
    );
    assert_eq!(
        function["Configuration"]["Timeout"], 2,
        "the Lambda API shows whole seconds"
    );
    let (status, _) = whisk(&host, "POST", "actions/nap?blocking=true", json!({})).await;
    assert_eq!(status, 200, "warm");
    let (status, record) = whisk(&host, "POST", "actions/nap?blocking=true", json!({"s": 3})).await;
    assert_eq!(status, 502, "{record}");
    assert_eq!(
        record["response"]["result"]["error"],
        "The action exceeded its time limits of 1500 milliseconds."
    );
    assert_eq!(record["response"]["status"], "action developer error");
    let duration = record["duration"].as_u64().unwrap();
    assert!(
        (1500..1950).contains(&duration),
        "ended after {duration} ms: at its 1500 ms limit, well before the 2 s the Lambda API shows and the 3 s it sleeps"
    );
}

/// An action's zip goes through the Lambda code's archive planner: an entry out of its
/// directory and a zip bomb are refused, naming the entry or the limit, and nothing is made.
#[tokio::test]
async fn an_action_zip_is_planned_as_function_code_is() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let main = ("__main__.py", "def main(p):\n    return p\n", 0o644);
    let escape = support::zip(&[main, ("../evil.py", "x = 1\n", 0o644)]);
    let bomb = {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        let options = zip::write::SimpleFileOptions::default();
        w.start_file("__main__.py", options).unwrap();
        w.write_all(main.1.as_bytes()).unwrap();
        w.start_file("zeros", options).unwrap();
        w.write_all(&vec![0u8; 32 * 1024 * 1024]).unwrap();
        w.finish().unwrap();
        b64(buf.into_inner())
    };
    for (code, says) in [
        (escape, "\"../evil.py\" would be written outside"),
        (bomb, "compression ratio"),
    ] {
        let (status, refused) = whisk(
            &host,
            "PUT",
            "actions/zipped",
            json!({"exec": {"kind": "python:3", "code": code, "binary": true}}),
        )
        .await;
        assert_eq!(status, 400, "{refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        let (status, _) = whisk(&host, "GET", "actions/zipped", json!({})).await;
        assert_eq!(status, 404, "nothing made");
    }
    let fine = support::zip(&[main, ("lib/helper.py", "X = 1\n", 0o600)]);
    let (status, made) = whisk(
        &host,
        "PUT",
        "actions/zipped",
        json!({"exec": {"kind": "python:3", "code": fine, "binary": true}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let (status, result) = whisk(
        &host,
        "POST",
        "actions/zipped?blocking=true&result=true",
        json!({"ok": true}),
    )
    .await;
    assert_eq!((status, result), (200, json!({"ok": true})));
}

/// The activations a trigger's rule starts are stored as non-blocking ones are: fired nine
/// times (eight run, one queues), a SIGKILL, and all nine run after the restart.
#[tokio::test]
async fn rule_activations_run_after_a_sigkill_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path());
    let marks = support::dir_for_components(tmp.path(), "marks");
    let (status, made) = whisk(
        &host,
        "PUT",
        "actions/slow",
        json!({"exec": {"kind": "python:3", "code": "import os, time\ndef main(p):\n    open(os.path.join(p['dir'], 'started-' + p['tag']), 'w').close()\n    time.sleep(2)\n    return {'tag': p['tag']}\n"}}),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    whisk(&host, "PUT", "triggers/go", json!({})).await;
    let (status, _) = whisk(
        &host,
        "PUT",
        "rules/go-slow",
        json!({"trigger": "/_/go", "action": "/_/slow"}),
    )
    .await;
    assert_eq!(status, 200);
    let dir = marks.to_str().unwrap();
    for n in 0..9 {
        let (status, fired) = whisk(
            &host,
            "POST",
            "triggers/go",
            json!({"dir": dir, "tag": format!("t{n}")}),
        )
        .await;
        assert_eq!(status, 202, "{fired}");
    }
    support::wait_for(std::time::Duration::from_secs(30), || {
        (std::fs::read_dir(&marks).unwrap().count() > 0).then_some(())
    })
    .expect("an activation starts");
    host.crash();

    let host = Host::start(tmp.path());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, listed) = whisk(&host, "GET", "activations?name=slow&limit=50", json!({})).await;
        let recorded = listed.as_array().unwrap().len();
        if recorded >= 9 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{recorded} of 9 rule activations recorded a minute after the restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, listed) = whisk(
        &host,
        "GET",
        "activations?name=slow&limit=50&docs=true",
        json!({}),
    )
    .await;
    let mut results: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["response"]["result"]["tag"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    results.sort();
    results.dedup();
    assert_eq!(
        results,
        (0..9).map(|n| format!("t{n}")).collect::<Vec<_>>(),
        "each fired activation ran to its result"
    );
}
