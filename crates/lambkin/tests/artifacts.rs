//! A version redeployed with other artifacts: if the deployment fails, or the host is killed
//! during it, the device gets its previous files back with its previous components; a
//! deployment the host was killed during, or before, is reported failed at the next start.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{wait_for, Host};

fn recipe(install: &str) -> String {
    format!(
        r#"
RecipeFormatVersion: "2020-01-25"
ComponentName: com.example.Files
ComponentVersion: "1.0.0"
Manifests:
  - Platform:
      os: linux
    Artifacts:
      - Uri: greengrass:data.txt
    Lifecycle:
      Install: "{install}"
      Run: "cat {{artifacts:path}}/data.txt >> {{work:path}}/seen.txt; sleep 300"
"#
    )
}

/// A root, a recipe directory with the component's recipe (its Install step `install`) and
/// an artifact directory with its file saying "one", under `base`.
fn device(base: &Path, install: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (root, recipes, artifacts) = (
        base.join("root"),
        base.join("recipes"),
        base.join("artifacts"),
    );
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::write(recipes.join("files.yaml"), recipe(install)).unwrap();
    write_artifact(&artifacts, "one");
    (root, recipes, artifacts)
}

fn deploy(root: &Path, recipes: &Path, artifacts: &Path) -> std::process::Output {
    support::deploy_dir(
        root,
        recipes,
        Some(artifacts),
        &["-m", "com.example.Files=1.0.0"],
    )
}

fn write_artifact(artifacts: &Path, content: &str) {
    let dir = artifacts.join("com.example.Files/1.0.0");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), format!("{content}\n")).unwrap();
}

fn on_device(root: &Path) -> String {
    std::fs::read_to_string(root.join("packages/artifacts/com.example.Files/1.0.0/data.txt"))
        .unwrap()
        .trim()
        .to_owned()
}

fn seen(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("work/com.example.Files/seen.txt"))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn a_failed_redeployment_of_a_version_puts_its_files_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, recipes, artifacts) = device(tmp.path(), "true");
    let mut host = Host::start(&root);
    let out = deploy(&root, &recipes, &artifacts);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(10), || {
        (seen(&root) == ["one"]).then_some(())
    })
    .unwrap();

    // The same version with new files and an Install that fails: rolled back, files included.
    std::fs::write(recipes.join("files.yaml"), recipe("exit 3")).unwrap();
    write_artifact(&artifacts, "two");
    let out = deploy(&root, &recipes, &artifacts);
    assert!(!out.status.success());
    assert_eq!(on_device(&root), "one");
    wait_for(Duration::from_secs(10), || {
        (seen(&root).last().map(String::as_str) == Some("one") && seen(&root).len() >= 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("not run again with its own files: {:?}", seen(&root)));
    assert!(!seen(&root).contains(&"two".to_owned()));

    // Killed in the middle (an Install that takes its time): the restart restores the files.
    std::fs::write(recipes.join("files.yaml"), recipe("sleep 30")).unwrap();
    let child = std::thread::spawn({
        let (root, recipes, artifacts) = (root.clone(), recipes.clone(), artifacts.clone());
        move || deploy(&root, &recipes, &artifacts)
    });
    wait_for(Duration::from_secs(10), || {
        (on_device(&root) == "two").then_some(())
    })
    .unwrap();
    host.crash();
    let _ = child.join();
    let _host = Host::start(&root);
    assert_eq!(on_device(&root), "one");
}

#[test]
fn a_redeployment_killed_just_before_it_commits_leaves_the_previous_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, recipes, artifacts) = device(tmp.path(), "true");
    let mut host = Host::start(&root);
    assert!(deploy(&root, &recipes, &artifacts).status.success());
    host.stop();

    // The same version with new files, and a host that dies the moment everything is up and
    // the deployment is about to be committed.
    let mut host =
        Host::start_with_env(&root, &[("LAMBKIN_FAILPOINT", "deployment-before-commit")]);
    write_artifact(&artifacts, "two");
    let out = deploy(&root, &recipes, &artifacts);
    assert!(!out.status.success(), "the deployment outlived its host");
    let exited = wait_for(Duration::from_secs(10), || {
        host.child.as_mut().unwrap().try_wait().unwrap()
    });
    assert!(exited.is_some(), "the host did not reach the failpoint");
    host.child = None;

    // Not committed: the device is back to the first deployment, files included.
    let _host = Host::start(&root);
    assert_eq!(on_device(&root), "one");
    wait_for(Duration::from_secs(10), || {
        (seen(&root).last().map(String::as_str) == Some("one") && seen(&root).len() >= 2)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("not run again with its own files: {:?}", seen(&root)));
}

/// The deployments of the host, newest first, as the local API lists them.
fn deployments(host: &Host, root: &Path) -> Vec<serde_json::Value> {
    let token = std::fs::read_to_string(root.join("state/cli.token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let reply = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(host.call_unsigned(
            "GET",
            "/lambkin/v1/deployments",
            &[("authorization", &bearer)],
            "",
        ));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).unwrap()
}

/// A host killed during a deployment, with another accepted behind it: at the next start both
/// are failed, each saying what happened (the first interrupted and rolled back, the second
/// never started), with Greengrass's codes.
#[test]
fn a_deployment_killed_and_the_one_queued_behind_it_are_reported_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, recipes, artifacts) = device(tmp.path(), "sleep 30");
    let mut host = Host::start(&root);
    let deploying = |root: &Path| {
        let (root, recipes, artifacts) = (root.to_owned(), recipes.clone(), artifacts.clone());
        std::thread::spawn(move || deploy(&root, &recipes, &artifacts))
    };
    let first = deploying(&root);
    let statuses = |host: &Host| -> Vec<String> {
        deployments(host, &root)
            .iter()
            .map(|d| d["status"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    wait_for(Duration::from_secs(10), || {
        (statuses(&host) == ["IN_PROGRESS"]).then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", statuses(&host)));
    let second = deploying(&root);
    wait_for(Duration::from_secs(10), || {
        (statuses(&host) == ["QUEUED", "IN_PROGRESS"]).then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", statuses(&host)));
    host.crash();
    let _ = first.join();
    let _ = second.join();

    let host = Host::start(&root);
    let listed = deployments(&host, &root);
    let (queued, running) = (&listed[0], &listed[1]);
    assert_eq!(queued["status"], "FAILED");
    assert_eq!(
        queued["message"],
        "the host stopped before this deployment started"
    );
    let details = &queued["deploymentStatusDetails"];
    assert_eq!(
        details["detailedDeploymentStatus"],
        "FAILED_NO_STATE_CHANGE"
    );
    assert_eq!(
        details["deploymentErrorStack"],
        serde_json::json!(["DEPLOYMENT_FAILURE", "DEPLOYMENT_INTERRUPTED"])
    );
    assert_eq!(running["status"], "FAILED");
    assert!(
        running["message"]
            .as_str()
            .unwrap()
            .starts_with("the host stopped during this deployment"),
        "{running}"
    );
    assert_eq!(
        running["deploymentStatusDetails"]["detailedDeploymentStatus"],
        "FAILED_ROLLBACK_COMPLETE"
    );
}
