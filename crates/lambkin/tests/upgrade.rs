//! A root a newer Lambkin wrote is refused at start with exit 78 (EX_CONFIG), naming why, and
//! left as it was. A root from a Lambkin before schema versions (its databases at
//! `user_version` 0) opens migrated, with its functions, components, queued Events and
//! spooled messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);

fn user_version(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_root_from_before_schema_versions_opens_with_its_functions_components_events_and_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // A broker that never comes: spooled messages stay where they are.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        root.join("config.toml"),
        format!("[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut host = Host::start(&root);
    let out = support::dir_for_components(tmp.path(), "out");
    let created = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(host.create(support::python_function(
            "kept-function",
            "import json, os\n\
             def handler(event, context):\n    \
             with open(os.environ['OUT'] + '/events', 'a') as f:\n        \
             f.write(json.dumps(event) + '\\n')\n    return event\n",
            json!({}),
            [("OUT", out.display().to_string())].into(),
        )));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let component = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.example.Kept",
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": { "Run": "exec sleep 600" }}],
    });
    support::deployed(
        &root,
        tmp.path(),
        &[component],
        &["-m", "com.example.Kept=1.0.0"],
    );
    assert_eq!(host.stop(), Some(0));

    // What the older Lambkin left queued: Events accepted (rows as the API keeps them) and
    // messages for the broker; then its databases as it wrote them, without a version.
    let db = root.join("state/lambkin.db");
    let state = rusqlite::Connection::open(&db).unwrap();
    for n in 0..3 {
        state
            .execute(
                "INSERT INTO events (function, request_id, payload) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    "kept-function",
                    format!("00000000-0000-4000-8000-00000000000{n}"),
                    json!({ "n": n }).to_string().into_bytes()
                ],
            )
            .unwrap();
    }
    // The tables as the releases before versions had them (the schema's first step): what
    // later steps added goes again.
    state
        .execute_batch(
            "ALTER TABLE events DROP COLUMN client_context;
             ALTER TABLE deployments DROP COLUMN report;",
        )
        .unwrap();
    state.pragma_update(None, "user_version", 0).unwrap();
    drop(state);
    let spool_db = root.join("state/spool.db");
    {
        let spool = lambkin::mqtt::Spool::open(Some(&spool_db), 1 << 20).unwrap();
        for n in 0..2 {
            spool
                .add(&lambkin::mqtt::SpooledMessage {
                    id: 0,
                    topic: format!("dev/kept/{n}"),
                    qos: 1,
                    retain: false,
                    payload: format!("kept {n}").into_bytes(),
                    properties: "{}".into(),
                })
                .unwrap();
        }
    }
    rusqlite::Connection::open(&spool_db)
        .unwrap()
        .pragma_update(None, "user_version", 0)
        .unwrap();

    let mut host = Host::start(&root);
    // The function, and the events it had accepted, run in order.
    let got = wait_for(PATIENCE, || {
        let lines = support::lines(&out.join("events"));
        (lines.len() >= 3).then_some(lines)
    })
    .expect("the queued Events did not run");
    let got: Vec<serde_json::Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, [json!({"n": 0}), json!({"n": 1}), json!({"n": 2})]);
    // The component, running again.
    let running = wait_for(PATIENCE, || {
        let out = Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(["list", "--json", "--root"])
            .arg(&root)
            .output()
            .unwrap();
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        list.as_array()?
            .iter()
            .any(|c| c["name"] == "com.example.Kept" && c["state"] == "RUNNING")
            .then_some(())
    });
    assert!(
        running.is_some(),
        "com.example.Kept is not running after the upgrade"
    );
    // The spooled messages, still waiting for the broker.
    let spool = lambkin::mqtt::Spool::open(Some(&spool_db), 1 << 20).unwrap();
    assert_eq!(spool.usage().unwrap().0, 2);
    drop(spool);
    assert_eq!(host.stop(), Some(0));
    // Migrated (read once the host, which holds the state database alone, has stopped).
    assert!(user_version(&db) > 0, "the state database was not migrated");
    assert!(user_version(&spool_db) > 0, "the spool was not migrated");
}

#[test]
fn a_root_of_a_newer_schema_is_refused_with_exit_78_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let mut host = Host::start(tmp.path());
    assert_eq!(host.stop(), Some(0));
    let db = tmp.path().join("state/lambkin.db");
    let newer = rusqlite::Connection::open(&db).unwrap();
    newer.pragma_update(None, "user_version", 99).unwrap();
    drop(newer);
    let before = std::fs::read(&db).unwrap();

    let (status, stderr) = support::run_refused(tmp.path());
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("schema version 99, newer than this Lambkin's"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database was changed"
    );
}
