//! A second host started on a root a host is running on stops at once, saying so, and leaves
//! the first one alone: its instances keep running (they are not ended as a dead host's
//! leftovers) and its IPC socket stays the one it serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use serde_json::json;
use support::{json, python_function, Host};

#[tokio::test]
async fn a_second_host_on_a_running_root_stops_and_leaves_the_first_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(tmp.path());
    let made = host
        .call(
            "POST",
            "/2015-03-31/functions",
            &[],
            python_function(
                "pid",
                "import os\ndef handler(event, context):\n    return os.getpid()\n",
                json!({}),
                BTreeMap::new(),
            )
            .to_string(),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", json(&made));
    let invoke = || host.call("POST", "/2015-03-31/functions/pid/invocations", &[], "{}");
    let first = invoke().await;
    assert_eq!(first.status, 200);
    let socket = tmp.path().join("ipc.socket");
    let inode = std::fs::metadata(&socket).unwrap().ino();

    let (status, stderr) = support::run_refused(tmp.path());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another Lambkin host runs on") && stderr.contains(&host.pid().to_string()),
        "{stderr}"
    );

    assert_eq!(
        std::fs::metadata(&socket).unwrap().ino(),
        inode,
        "the first host's IPC socket was replaced"
    );
    let again = invoke().await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body, first.body,
        "the first host's warm instance was ended"
    );
}
