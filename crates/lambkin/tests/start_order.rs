//! As the host starts, the functions it reads from its store start their instances only once
//! the committed components have started: a device with many of both is not made to start
//! them all at once before it is ready.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use support::{deployed, json, python_function, Host};

/// Its init looks for the mark the component's `Startup` leaves once done, and says what
/// it saw.
const HANDLER: &str = r#"
import os
SEEN = "after" if os.path.exists(os.environ["MARK"]) else "before"
def handler(event, context):
    return SEEN
"#;

#[test]
fn stored_pinned_functions_start_after_the_committed_components() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let marks = tmp.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mark = marks.join("components-started");
    let root = tmp.path().join("root");
    let scratch = tmp.path().join("scratch");

    let mut host = Host::start(&root);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let created = rt.block_on(host.create(python_function(
        "early",
        HANDLER,
        json!({"Pinned": true}),
        BTreeMap::from([("MARK", mark.display().to_string())]),
    )));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    // A component whose start takes a second and leaves a mark when done.
    deployed(
        &root,
        &scratch,
        &[json!({
            "RecipeFormatVersion": "2020-01-25",
            "ComponentName": "com.example.Slow",
            "ComponentVersion": "1.0.0",
            "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
                "Startup": format!("sleep 1 && touch {}", mark.display()),
            }}],
        })],
        &["-m", "com.example.Slow=1.0.0"],
    );
    assert!(mark.exists());
    host.stop();

    std::fs::remove_file(&mark).unwrap();
    let host = Host::start(&root);
    let r = rt.block_on(host.invoke("early", &json!({})));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        json(&r),
        json!("after"),
        "the stored pinned function's instance started before the component had"
    );
}
