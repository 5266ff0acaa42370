//! What a `Bootstrap` step starts does not outlive it when it times out, and a background
//! child it leaves running does not hold the deployment: the step runs in its own process
//! group (and, as root, its own cgroup), like every other step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);

fn recipe(name: &str, bootstrap: &str, timeout: u64) -> serde_json::Value {
    json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": {
            "Bootstrap": { "Script": bootstrap, "Timeout": timeout },
            "Run": "exec sleep 600"
        }}],
    })
}

fn pid_in(file: &Path) -> u32 {
    wait_for(PATIENCE, || {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
    .unwrap_or_else(|| panic!("{} was never written", file.display()))
}

fn marks(tmp: &Path) -> std::path::PathBuf {
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let marks = tmp.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    marks
}

#[test]
fn a_timed_out_bootstrap_ends_with_everything_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let marks = marks(tmp.path());
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    // A child in the step's process group, and (when the host can make a cgroup for the
    // step) one in a session of its own; then the step hangs past its 2 s.
    let setsid = nix::unistd::geteuid().is_root();
    let mut script = format!(
        "sh -c 'echo $$ > {m}/child.new; mv {m}/child.new {m}/child; exec sleep 600' &",
        m = marks.display()
    );
    if setsid {
        script.push_str(&format!(
            " setsid sh -c 'echo $$ > {m}/daemon.new; mv {m}/daemon.new {m}/daemon; exec sleep 600' < /dev/null > /dev/null 2>&1 &",
            m = marks.display()
        ));
    }
    script.push_str(" exec sleep 600");
    let out = support::deploy(
        &root,
        tmp.path(),
        &[recipe("com.example.SlowBoot", &script, 2)],
        &["-m", "com.example.SlowBoot=1.0.0"],
    );
    assert!(!out.status.success(), "the deployment succeeded");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Bootstrap timed out after 2 s"), "{said}");
    let mut pids = vec![pid_in(&marks.join("child"))];
    if setsid {
        pids.push(pid_in(&marks.join("daemon")));
    }
    for pid in pids {
        let gone = wait_for(Duration::from_secs(10), || {
            (!support::process_alive(pid)).then_some(())
        });
        assert!(
            gone.is_some(),
            "{pid}, started by the Bootstrap step, outlived it"
        );
    }
}

#[test]
fn a_background_child_of_a_bootstrap_that_exited_does_not_hold_the_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let marks = marks(tmp.path());
    let root = tmp.path().join("root");
    let _host = Host::start(&root);
    // The step exits at once; its child keeps the step's stdout open.
    let script = format!(
        "echo booted; sh -c 'echo $$ > {m}/child; exec sleep 600' & exit 0",
        m = marks.display()
    );
    let started = Instant::now();
    support::deployed(
        &root,
        tmp.path(),
        &[recipe("com.example.QuickBoot", &script, 120)],
        &["-m", "com.example.QuickBoot=1.0.0"],
    );
    let took = started.elapsed();
    let child = pid_in(&marks.join("child"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        took < Duration::from_secs(60),
        "the deployment waited {took:?} for the step's child"
    );
    let log = std::fs::read_to_string(root.join("logs/com.example.QuickBoot.log")).unwrap();
    assert!(log.contains("booted"), "{log}");
}
