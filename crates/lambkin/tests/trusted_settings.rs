//! Settings that decide how a component runs come from deployments only, tried as the
//! component would: over IPC with its own token it updates its configuration's keys that a
//! `RequiresPrivilege` step interpolates, and a Lambda component its `containerMode` and
//! `pubsubTopics`. Each is refused naming the key; other keys still change; after a restart
//! of the host the privileged step runs with the deployment's value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{wait_for, Host, IpcClient};

const PATIENCE: Duration = Duration::from_secs(30);
const SNEAKY: &str = "com.example.Sneaky";

fn deploy(root: &Path, scratch: &Path, recipe: &Value, extra: &[&str]) {
    let name = recipe["ComponentName"].as_str().unwrap();
    let merge = format!("{name}=1.0.0");
    let mut args = vec!["-m", merge.as_str()];
    args.extend_from_slice(extra);
    support::deployed(root, scratch, std::slice::from_ref(recipe), &args);
}

fn read_when_written(path: &Path) -> String {
    wait_for(PATIENCE, || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .unwrap_or_else(|| panic!("{} was never written", path.display()))
}

#[test]
fn a_component_cannot_change_what_its_privileged_step_runs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    let marks = tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut host = Host::start(&root);
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": SNEAKY,
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": { "DefaultConfiguration": {
            "command": "deployed", "nested": { "value": "deployed" }, "free": "x" } },
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Install": {
                "RequiresPrivilege": true,
                "Script": format!(
                    "echo {{configuration:/command}} > {m}/install.new && echo {{configuration:/nested/value}} >> {m}/install.new && mv {m}/install.new {m}/install",
                    m = marks.display()
                ),
            },
            "Run": "printf '%s\\n' \"$SVCUID\" > {work:path}/token.new && mv {work:path}/token.new {work:path}/token && exec sleep 600"
        }}],
    });
    let posix_user = if nix::unistd::geteuid().is_root() {
        vec!["--run-with", "com.example.Sneaky:posixUser=nobody"]
    } else {
        vec![]
    };
    deploy(&root, tmp.path(), &recipe, &posix_user);
    let token = read_when_written(&root.join("work").join(SNEAKY).join("token"));
    assert_eq!(
        read_when_written(&marks.join("install")),
        "deployed\ndeployed\n"
    );
    let mut ipc = IpcClient::authenticated(&root, token.trim());
    for (key_path, merge) in [
        (vec![], json!({ "command": "x; id > /etc/owned" })),
        (vec!["nested"], json!({ "value": "pwned" })),
        (vec![], json!({ "nested": { "value": "pwned" } })),
    ] {
        let (refused, body) = ipc.update(&key_path, merge.clone());
        assert!(refused, "{key_path:?} {merge}: accepted");
        let text = body.to_string();
        assert!(text.contains("only a deployment"), "{text}");
        assert!(text.contains("RequiresPrivilege"), "{text}");
    }
    // A key no privileged step reads still changes.
    let (refused, body) = ipc.update(&[], json!({ "free": "changed" }));
    assert!(!refused, "{body}");
    drop(ipc);

    // Restarted, the host runs the component from the deployment's values (the allowed
    // change kept, the refused ones never made).
    host.stop();
    let token_file = root.join("work").join(SNEAKY).join("token");
    std::fs::remove_file(&token_file).unwrap();
    let _host = Host::start(&root);
    let token = read_when_written(&token_file);
    let mut ipc = IpcClient::authenticated(&root, token.trim());
    let (_, config) = ipc.call("aws.greengrass#GetConfiguration", json!({ "keyPath": [] }));
    assert_eq!(config["value"]["command"], "deployed", "{config}");
    assert_eq!(config["value"]["nested"]["value"], "deployed", "{config}");
    assert_eq!(config["value"]["free"], "changed", "{config}");
    assert!(!Path::new("/etc/owned").exists());
}

#[tokio::test]
async fn a_lambda_component_cannot_change_its_isolation_or_its_triggers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let handler =
        "import os\n\ndef lambda_handler(event, context):\n    return os.environ.get('SVCUID')\n";
    let recipe = support::lambda_component(
        tmp.path(),
        "com.example.Boxed",
        &[("lambda_function.py", handler, 0o644)],
        json!({
            "pubsubTopics": { "0": { "topic": "mine/only", "type": "PUB_SUB" } },
            "containerMode": "NoContainer",
        }),
    );
    deploy(&root, tmp.path(), &recipe, &[]);
    let r = host.invoke("com.example.Boxed", &json!({})).await;
    let token: String = serde_json::from_slice(&r.body).unwrap();
    let mut ipc = IpcClient::authenticated(&root, &token);
    for (key_path, merge, key) in [
        (
            vec![],
            json!({ "containerMode": "GreengrassContainer" }),
            "containerMode",
        ),
        (
            vec![],
            json!({ "pubsubTopics": { "9": { "topic": "#", "type": "PUB_SUB" } } }),
            "pubsubTopics",
        ),
        (
            vec!["pubsubTopics"],
            json!({ "9": { "topic": "#", "type": "PUB_SUB" } }),
            "pubsubTopics",
        ),
        (
            vec!["containerParams"],
            json!({ "memorySize": 1 }),
            "containerParams",
        ),
        (
            vec![],
            json!({ "delegation": { "policy": "remote", "target": "elsewhere" } }),
            "delegation",
        ),
    ] {
        let (refused, body) = ipc.update(&key_path, merge.clone());
        assert!(refused, "{key_path:?} {merge}: accepted");
        assert!(body.to_string().contains(key), "{body}");
    }
    let (_, config) = ipc.call(
        "aws.greengrass#GetConfiguration",
        json!({ "keyPath": ["pubsubTopics"] }),
    );
    assert_eq!(
        config["value"],
        json!({ "0": { "topic": "mine/only", "type": "PUB_SUB" } }),
        "{config}"
    );
}

#[test]
fn an_oversized_configuration_update_is_refused_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Hoarder",
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": { "DefaultConfiguration": { "small": "x" } },
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Run": "printf '%s\\n' \"$SVCUID\" > {work:path}/token.new && mv {work:path}/token.new {work:path}/token && exec sleep 600"
        }}],
    });
    deploy(&root, tmp.path(), &recipe, &[]);
    let token = read_when_written(&root.join("work/com.example.Hoarder/token"));
    let mut ipc = IpcClient::authenticated(&root, token.trim());
    let (refused, body) = ipc.update(&[], json!({ "big": "x".repeat(11 * 1024 * 1024) }));
    assert!(refused, "an 11 MB update was accepted");
    assert!(
        body.to_string().contains("limit of 1048576 bytes"),
        "{body}"
    );
    // The connection and ordinary updates still work.
    let (refused, body) = ipc.update(&[], json!({ "small": "y" }));
    assert!(!refused, "{body}");
    let (_, config) = ipc.call("aws.greengrass#GetConfiguration", json!({ "keyPath": [] }));
    assert_eq!(config["value"], json!({ "small": "y" }), "{config}");
}

/// A value a deployment gives is text to the shell wherever a `sh -c` step writes it: bare, in
/// single or double quotes, in a here-document. The nucleus pastes it in as it is, so
/// `x; touch FILE` would run `touch` (as root, in a `RequiresPrivilege` step).
#[test]
fn an_interpolated_value_is_text_to_the_shell() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    let marks = tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let injected = marks.join("injected");
    let hostile = format!(
        "a'b\"c $(touch {i}) `touch {i}`; touch {i}",
        i = injected.display()
    );
    let _host = Host::start(&root);
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": SNEAKY,
        "ComponentVersion": "1.0.0",
        "ComponentConfiguration": { "DefaultConfiguration": { "value": hostile, "port": 8080 } },
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Install": {
                "RequiresPrivilege": true,
                "Script": format!(
                    "printf '%s\\n' {{configuration:/value}} '{{configuration:/value}}' \"{{configuration:/value}}\" > {m}/out.new\n\
                     cat >> {m}/out.new <<EOF\n{{configuration:/value}} {{configuration:/port}}\nEOF\n\
                     mv {m}/out.new {m}/out",
                    m = marks.display()
                ),
            },
            "Run": "exec sleep 600"
        }}],
    });
    deploy(&root, tmp.path(), &recipe, &[]);
    assert_eq!(
        read_when_written(&marks.join("out")),
        format!("{hostile}\n{hostile}\n{hostile}\n{hostile} 8080\n")
    );
    assert!(!injected.exists(), "the value ran as a command");
}
