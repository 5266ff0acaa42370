//! The OpenWhisk API across a restart of the host: actions, triggers, rules and activation
//! records are kept under ROOT/state/openwhisk, the key in ROOT/state/openwhisk.auth.

#![allow(clippy::unwrap_used)]

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
