//! A full disk, as a device meets it: the host's root on a small file system filled to the
//! last byte while the host was stopped. The host still starts and serves what it has (its
//! function answers), refuses what needs room with a clear error (new code, an `Event`
//! invocation it could not keep), stays up, and takes changes again once space is freed.
//!
//! Needs root (it mounts a 16 MiB tmpfs); as another user it says so and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{python_function, wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);

/// A tmpfs of `size` mounted at `dir` for as long as it lives.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {out:?}");
        SmallDisk {
            dir: dir.to_owned(),
        }
    }

    /// Writes a file until the file system has no byte left.
    fn fill(&self) -> PathBuf {
        let filler = self.dir.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // The last partial chunk: byte by byte.
        while file.write(&[0]).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Starts a host on `root` listening on `addr` and waits for it to say so: on a full disk it
/// cannot write `state/api.addr`, where [`Host::start`] looks.
fn start_at(root: &Path, addr: &str) -> Host {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", addr, "--root"])
        .arg(root)
        .env("LAMBKIN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening on") {
                let _ = tx.send(());
            }
        }
    });
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    std::thread::spawn({
        let log = log.clone();
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                log.lock().unwrap().push_str(&line);
            }
        }
    });
    if rx.recv_timeout(PATIENCE).is_err() {
        let _ = child.kill();
        panic!(
            "the host did not start on a full disk: {}",
            log.lock().unwrap()
        );
    }
    Host {
        root: root.to_owned(),
        addr: addr.to_owned(),
        child: Some(child),
    }
}

fn body(reply: &support::HttpReply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or(Value::Null)
}

fn echo(name: &str) -> Value {
    python_function(
        name,
        "def handler(event, context):\n    return {'echo': event}\n",
        json!({}),
        BTreeMap::new(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_leaves_the_host_serving_and_refusing_writes_clearly() {
    require_root!("mounting a small file system");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let disk = SmallDisk::mount(&tmp.path().join("disk"), "16m");
    let root = disk.dir.join("root");

    let mut host = Host::start(&root);
    let created = host.create(echo("kept")).await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let addr = host.addr.clone();
    host.stop();

    let filler = disk.fill();
    let host = start_at(&root, &addr);

    // What it has, it serves.
    let answer = host.invoke("kept", &json!({"n": 1})).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(body(&answer), json!({"echo": {"n": 1}}));

    // What needs room is refused, naming why.
    let refused = host.create(echo("new")).await;
    assert_eq!(
        refused.status,
        400,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(
        refused.headers["x-amzn-errortype"],
        "CodeStorageExceededException"
    );
    let message = body(&refused)["message"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("disk is full"), "{message}");
    let event = host
        .call(
            "POST",
            "/2015-03-31/functions/kept/invocations",
            &[("x-amz-invocation-type", "Event")],
            "{}",
        )
        .await;
    assert_eq!(
        event.status,
        500,
        "{}",
        String::from_utf8_lossy(&event.body)
    );
    let message = body(&event)["message"].as_str().unwrap_or("").to_owned();
    assert!(message.contains("disk is full"), "{message}");

    // Still up, and once there is room again, changes are taken.
    std::fs::remove_file(filler).unwrap();
    let created = wait_for(PATIENCE, || {
        let reply = futures_block(host.create(echo("new")));
        (reply.status == 201).then_some(reply)
    });
    assert!(
        created.is_some(),
        "CreateFunction still refused with room again"
    );
    let answer = host.invoke("new", &json!("again")).await;
    assert_eq!(body(&answer), json!({"echo": "again"}));
}

/// Runs a future to completion from inside a `wait_for` closure on a multi-thread runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
