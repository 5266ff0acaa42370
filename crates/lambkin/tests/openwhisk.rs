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
