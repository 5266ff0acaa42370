//! Accepted `Event` invocations survive a kill -9 of the host, for a function defined through
//! the API and for a Lambda component's function (defined by the engine after the host has
//! recovered its stored events): every one runs after the restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::{wait_for, Host};

/// Appends each event's `n` to `DIR/done` once `DIR/release` exists (waiting up to a minute),
/// so events pile up behind the first one until the test says so.
const HANDLER: &str = r#"
import os, time

def handler(event, context):
    d = event["dir"]
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(d, "release")) and time.time() < deadline:
        time.sleep(0.02)
    with open(os.path.join(d, "done"), "a") as f:
        f.write(f"{event['n']}\n")
    return {}

# The seed recipe's handler name.
lambda_handler = handler
"#;

fn done(dir: &Path) -> Vec<u32> {
    let mut seen: Vec<u32> = std::fs::read_to_string(dir.join("done"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

/// A directory any user may write to (the function may run as another user).
fn open_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

fn deploy_lambda_component(root: &Path, base: &Path, name: &str) {
    let recipe = support::lambda_component(
        base,
        name,
        &[("lambda_function.py", HANDLER, 0o644)],
        json!({"containerMode": "NoContainer", "timeoutInSeconds": 120, "pinned": true}),
    );
    support::deployed(root, base, &[recipe], &["-m", &format!("{name}=1.0.0")]);
}

#[tokio::test]
async fn accepted_events_of_component_and_api_functions_all_run_after_a_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    let mut host = Host::start(&root);
    deploy_lambda_component(&root, tmp.path(), "com.example.Queued");
    let created = host
        .create(support::python_function(
            "queued-api",
            HANDLER,
            json!({"Pinned": true}),
            Default::default(),
        ))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let dirs = [
        ("com.example.Queued", open_dir(tmp.path(), "component")),
        ("queued-api", open_dir(tmp.path(), "api")),
    ];
    for (function, dir) in &dirs {
        for n in 0..5 {
            let r = host
                .invoke_event(function, &json!({ "dir": dir, "n": n }))
                .await;
            assert_eq!(
                r.status,
                202,
                "{function}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    host.crash();
    for (_, dir) in &dirs {
        assert!(done(dir).is_empty(), "an event ran before the release");
    }

    let _host = Host::start(&root);
    for (_, dir) in &dirs {
        std::fs::write(dir.join("release"), "").unwrap();
    }
    for (function, dir) in &dirs {
        let all = wait_for(Duration::from_secs(60), || {
            let seen = done(dir);
            (seen.len() == 5).then_some(seen)
        });
        assert_eq!(
            all,
            Some(vec![0, 1, 2, 3, 4]),
            "{function}: only {:?} ran after the restart",
            done(dir)
        );
    }
}
