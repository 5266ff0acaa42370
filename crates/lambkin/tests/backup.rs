//! `lambkin backup` while the host serves invocations, and `lambkin restore` into a new root:
//! the host started on it serves the same functions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use support::{json, python_function, Host};

fn lambkin(args: &[&str], root: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn names(host: &Host) -> Vec<String> {
    let listed = host.call("GET", "/2015-03-31/functions", &[], "").await;
    assert_eq!(listed.status, 200);
    let mut names: Vec<String> = json(&listed)["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_to_a_host_that_serves_the_same_functions() {
    let tmp = tempfile::tempdir().unwrap();
    let first_root = tmp.path().join("first");
    let second_root = tmp.path().join("second");
    let archive = tmp.path().join("device.tar.gz");
    let host = Arc::new(Host::start(&first_root));
    for n in 0..3 {
        let made = host
            .call(
                "POST",
                "/2015-03-31/functions",
                &[],
                python_function(
                    &format!("f{n}"),
                    &format!(
                        "def handler(event, context):\n    return {{'n': {n}, 'got': event}}\n"
                    ),
                    json!({}),
                    BTreeMap::new(),
                )
                .to_string(),
            )
            .await;
        assert_eq!(made.status, 201, "{:?}", json(&made));
    }
    let before = names(&host).await;

    // Invocations run all through the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let load = {
        let (host, stop, served) = (host.clone(), stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = host
                    .call(
                        "POST",
                        "/2015-03-31/functions/f1/invocations",
                        &[],
                        "{\"x\":1}",
                    )
                    .await;
                assert_eq!(r.status, 200);
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    support::wait_for_async(std::time::Duration::from_secs(20), || {
        (served.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await
    .expect("no invocation served before the backup");
    let out = tokio::task::spawn_blocking({
        let (root, archive) = (first_root.clone(), archive.clone());
        move || lambkin(&["backup", archive.to_str().unwrap()], &root)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let during = served.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(during > 0);
    eprintln!("{during} invocations served during the backup");

    // A host runs on the first root: nothing is restored into it.
    let refused = lambkin(
        &["restore", archive.to_str().unwrap(), "--force"],
        &first_root,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("a host runs on"),
        "{}",
        text(&refused)
    );

    let restored = lambkin(&["restore", archive.to_str().unwrap()], &second_root);
    assert!(restored.status.success(), "{}", text(&restored));
    let again = lambkin(&["restore", archive.to_str().unwrap()], &second_root);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("already holds a root"),
        "{}",
        text(&again)
    );

    let second = Host::start(&second_root);
    assert_eq!(names(&second).await, before);
    for n in 0..3 {
        let r = second
            .call(
                "POST",
                &format!("/2015-03-31/functions/f{n}/invocations"),
                &[],
                "{\"y\":2}",
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(json(&r), json!({"n": n, "got": {"y": 2}}));
    }
}
