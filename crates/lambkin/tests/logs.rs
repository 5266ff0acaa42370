//! Function logs as `lambkin logs` shows them: rotation at its real size
//! (`logfile::ROTATE_AT_BYTES`), and `--follow` across it, against the real binary.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::{python_function, wait_for, Host};

/// Prints `marker` once, then `lines` lines of 1000 bytes.
const CHATTY: &str = r#"
def handler(event, context):
    print(event["marker"], flush=True)
    line = "x" * 1000
    for _ in range(event.get("lines", 0)):
        print(line)
    return {}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_prints_every_line_once_across_a_rotation_at_10_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let host = Host::start(&root);
    let created = host
        .create(python_function(
            "chatty",
            CHATTY,
            json!({"Pinned": false}),
            BTreeMap::new(),
        ))
        .await;
    assert_eq!(created.status, 201);
    let reply = host.invoke("chatty", &json!({"marker": "first"})).await;
    assert_eq!(reply.status, 200);
    let log = root.join("logs/chatty.log");
    wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("first"))
    })
    .expect("the first marker in the log");

    let mut follower = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["logs", "chatty", "--follow", "-n", "1", "--root"])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = follower.stdout.take().unwrap();
    // The follower never ends by itself: it goes with the test, whatever the outcome.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let follower = Killed(follower);
    let printed = Arc::new(Mutex::new(Vec::new()));
    let sink = printed.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                return;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&printed.lock().unwrap()).into_owned();

    // `-n 1`: the follower prints the log's last line, then follows; once that line is out,
    // what is written next is the follower's to print.
    wait_for(Duration::from_secs(30), || {
        (!printed.lock().unwrap().is_empty()).then_some(())
    })
    .expect("the follower printed nothing");
    let reply = host.invoke("chatty", &json!({"marker": "before"})).await;
    assert_eq!(reply.status, 200);
    wait_for(Duration::from_secs(30), || {
        text().contains("before").then_some(())
    })
    .expect("the follower did not print the line written after it started");

    // 12 MB of lines: past 10 MiB the log rotates.
    for marker in ["fill-1", "fill-2"] {
        let reply = host
            .invoke("chatty", &json!({"marker": marker, "lines": 6000}))
            .await;
        assert_eq!(reply.status, 200);
    }
    let reply = host.invoke("chatty", &json!({"marker": "after"})).await;
    assert_eq!(reply.status, 200);
    wait_for(Duration::from_secs(60), || {
        root.join("logs/chatty.log.1").exists().then_some(())
    })
    .expect("the log did not rotate past 10 MiB");
    wait_for(Duration::from_secs(60), || {
        text().contains(" after").then_some(())
    })
    .unwrap_or_else(|| {
        let t = text();
        panic!(
            "the follower did not print the line written after the rotation ({} bytes, ends {:?})",
            t.len(),
            &t[t.len().saturating_sub(300)..]
        )
    });
    drop(follower);

    let t = text();
    let count = |marker: &str| {
        t.lines()
            .filter(|l| l.ends_with(&format!(" {marker}")))
            .count()
    };
    for marker in ["before", "fill-1", "fill-2", "after"] {
        assert_eq!(count(marker), 1, "{marker} printed {} times", count(marker));
    }
    let filler = t.lines().filter(|l| l.ends_with(&"x".repeat(1000))).count();
    assert_eq!(filler, 12_000, "every filler line once");
}
