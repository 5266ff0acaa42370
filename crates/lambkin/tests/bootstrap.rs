//! The `Bootstrap` step: once per version (or script), before Install; a failure fails the
//! deployment and the device keeps what it had.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::Host;

fn recipe(version: &str, bootstrap: &str) -> String {
    format!(
        r#"
RecipeFormatVersion: "2020-01-25"
ComponentName: com.example.Boot
ComponentVersion: "{version}"
ComponentConfiguration:
  DefaultConfiguration:
    Greeting: hi
Manifests:
  - Platform:
      os: linux
    Lifecycle:
      Bootstrap: "{bootstrap}"
      Run: "echo run >> runs.txt; exec sleep 300"
"#
    )
}

fn boots(root: &Path) -> usize {
    std::fs::read_to_string(root.join("work/com.example.Boot/boots.txt"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// How many times the Run step started (`runs.txt`).
fn runs(root: &Path) -> usize {
    support::lines(&root.join("work/com.example.Boot/runs.txt")).len()
}

/// Waits until the Run step has started `count` times: Bootstrap, when it runs, comes before.
fn wait_runs(root: &Path, count: usize) {
    support::wait_for(Duration::from_secs(30), || {
        (runs(root) >= count).then_some(())
    })
    .unwrap_or_else(|| panic!("Run did not start {count} times: {}", runs(root)));
}

#[test]
fn bootstrap_runs_once_per_version_and_a_failure_keeps_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let recipes = tmp.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::write(
        recipes.join("v1.yaml"),
        recipe("1.0.0", "echo boot >> boots.txt"),
    )
    .unwrap();
    let mut host = Host::start(&root);

    let out = support::deploy_dir(&root, &recipes, None, &["-m", "com.example.Boot=1.0.0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(boots(&root), 1);

    // Same version, new configuration: no second Bootstrap; nor after a restart.
    let out = support::deploy_dir(
        &root,
        &recipes,
        None,
        &[
            "-c",
            r#"{"com.example.Boot":{"MERGE":{"Greeting":"hello"}}}"#,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = runs(&root);
    host.stop();
    let _host = Host::start(&root);
    // Counted once the component has started again: a Bootstrap at the host's start would
    // have run before that.
    wait_runs(&root, before + 1);
    assert_eq!(boots(&root), 1);

    // A new version bootstraps again.
    std::fs::write(
        recipes.join("v2.yaml"),
        recipe("1.1.0", "echo boot >> boots.txt"),
    )
    .unwrap();
    let out = support::deploy_dir(&root, &recipes, None, &["-m", "com.example.Boot=1.1.0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(boots(&root), 2);

    // A failing Bootstrap fails the deployment, naming it; 1.1.0 stays.
    std::fs::write(recipes.join("v3.yaml"), recipe("1.2.0", "exit 7")).unwrap();
    let out = support::deploy_dir(&root, &recipes, None, &["-m", "com.example.Boot=1.2.0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Bootstrap failed"), "{stderr}");
    // With Greengrass's codes for it: the previous version was put back.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Detailed status: FAILED_ROLLBACK_COMPLETE",
        "Error stack: DEPLOYMENT_FAILURE, COMPONENT_UPDATE_ERROR, COMPONENT_BOOTSTRAP_ERROR",
        "Error types: USER_COMPONENT_ERROR",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} not in {stdout}"
        );
    }
    let list = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["list", "--json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let boot = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "com.example.Boot")
        .unwrap();
    assert_eq!(boot["version"], "1.1.0");
    assert_eq!(boot["state"], "RUNNING");

    // Exit 101 asks for a reboot, which is refused by name.
    std::fs::write(recipes.join("v3.yaml"), recipe("1.2.0", "exit 101")).unwrap();
    let out = support::deploy_dir(&root, &recipes, None, &["-m", "com.example.Boot=1.2.0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reboot"));
}

#[test]
fn bootstrap_exit_100_asks_for_a_restart_that_lambkin_does_without_and_the_deployment_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let recipes = tmp.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::write(
        recipes.join("v1.yaml"),
        recipe("1.0.0", "echo boot >> boots.txt; exit 100"),
    )
    .unwrap();
    let mut host = Host::start(&root);

    let out = support::deploy_dir(&root, &recipes, None, &["-m", "com.example.Boot=1.0.0"]);
    assert!(
        out.status.success(),
        "exit 100 is not a failure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(boots(&root), 1);
    wait_runs(&root, 1);

    // The Bootstrap counts as done: a restart of the host does not run it again.
    host.stop();
    let _host = Host::start(&root);
    wait_runs(&root, 2);
    assert_eq!(boots(&root), 1);
}
