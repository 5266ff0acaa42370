//! A root a newer Lambkin wrote is refused at start with exit 78 (EX_CONFIG), naming why, and
//! left as it was.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::Host;

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

    let mut child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", "127.0.0.1:0", "--root"])
        .arg(tmp.path())
        .env("LAMBKIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = support::wait_for(Duration::from_secs(20), || child.try_wait().unwrap())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the host kept running on a newer root");
        });
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
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
