//! What a Lambda function's processes get to reach Greengrass IPC, against the real binary: a
//! Lambda component's function gets its component's token and the socket; a function made
//! through the management API belongs to no component and gets neither.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use support::Host;

const SEED_RECIPE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/components/seed-lambda-recipe.json"
);

/// Returns the IPC and device variables the function's process sees (`null` when unset).
const HANDLER: &str = r#"import os

KEYS = [
    "SVCUID",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
    "AWS_IOT_THING_NAME",
]


def handler(event, context):
    return {k: os.environ.get(k) for k in KEYS}
"#;

/// Deploys the seed Lambda recipe (no topics) with `HANDLER` as its code.
fn deploy_component(tmp: &Path, root: &Path) {
    let zip = support::zip_bytes(&[("lambda_function.py", HANDLER, 0o644)]);
    let artifacts = tmp.join("artifacts");
    let dir = artifacts.join("example-lambda-python/8.0.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lambda-artifact.zip"), &zip).unwrap();
    let mut recipe: Value =
        serde_json::from_str(&std::fs::read_to_string(SEED_RECIPE).unwrap()).unwrap();
    recipe["Manifests"][0]["Artifacts"][0]["Digest"] =
        json!(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip)));
    recipe["Lifecycle"]["setenv"]["AWS_GREENGRASS_LAMBDA_FUNCTION_HANDLER"] =
        json!("lambda_function.handler");
    recipe["ComponentConfiguration"]["DefaultConfiguration"]["pubsubTopics"] = json!({});
    support::deployed(root, tmp, &[recipe], &["-m", "example-lambda-python=8.0.0"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_function_gets_its_ipc_token_and_a_management_api_function_none() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);

    let created = host
        .create(support::python_function(
            "plain",
            HANDLER,
            json!({}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let plain = support::json(&host.invoke("plain", &json!({})).await);
    assert_eq!(
        plain,
        json!({
            "SVCUID": null,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": null,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": null,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": null,
            "AWS_IOT_THING_NAME": null,
        })
    );

    deploy_component(tmp.path(), &root);
    let reply = host.invoke("example-lambda-python", &json!({})).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let env = support::json(&reply);
    let token = env["SVCUID"].as_str().expect("SVCUID is set");
    assert!(!token.is_empty());
    assert_eq!(env["AWS_CONTAINER_AUTHORIZATION_TOKEN"], token);
    let socket = std::fs::canonicalize(root.join("ipc.socket")).unwrap();
    for key in [
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
    ] {
        let path = Path::new(env[key].as_str().expect(key));
        assert!(path.is_absolute(), "{key}: {path:?}");
        assert_eq!(std::fs::canonicalize(path).unwrap(), socket, "{key}");
    }
    assert!(env["AWS_IOT_THING_NAME"].is_string());
}
