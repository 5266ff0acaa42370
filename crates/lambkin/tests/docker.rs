//! `docker:` artifacts at deployment (`greengrass-reference.md` §5): what needs no engine.
//!
//! A deployment on a host where no engine answers is refused: the host's `docker info` is
//! pointed at a socket nobody serves (`DOCKER_HOST`), and a machine without the client refuses
//! the same way. Pulls from a registry, images already present, a missing image or digest, and
//! a component's containers stopping with it are tested against a real engine (podman serving
//! the Docker API, a local registry) in `tests/conformance/test_docker.py`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{wait_for, Host};

const NAME: &str = "com.example.Container";

/// A host on `root` whose environment has `env` added.
fn start_host(root: &Path, env: &[(&str, String)]) -> Host {
    std::fs::create_dir_all(root).unwrap();
    let addr_file = root.join("state/api.addr");
    let child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .env("LAMBKIN_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let addr = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&addr_file).ok()
    })
    .expect("host did not become ready");
    Host {
        root: root.to_owned(),
        addr: addr.trim().to_owned(),
        child: Some(child),
    }
}

/// Deploys `NAME` at `version` with the given artifact URIs ([`recipe`]).
fn deploy(root: &Path, scratch: &Path, version: &str, uris: &[&str]) -> Output {
    support::deploy(
        root,
        scratch,
        &[recipe(version, uris)],
        &["-m", &format!("{NAME}={version}")],
    )
}

/// `NAME` at `version` with the given artifact URIs; its Run step records that it ran.
fn recipe(version: &str, uris: &[&str]) -> serde_json::Value {
    let artifacts: Vec<_> = uris.iter().map(|u| json!({ "URI": u })).collect();
    json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": NAME,
        "ComponentVersion": version,
        "Manifests": [{
            "Platform": { "os": "linux" },
            "Lifecycle": { "Run": format!("echo {version} >> ran") },
            "Artifacts": artifacts,
        }],
    })
}

fn ran(root: &Path) -> String {
    std::fs::read_to_string(root.join("work").join(NAME).join("ran")).unwrap_or_default()
}

#[test]
fn without_a_docker_engine_the_deployment_is_refused_naming_the_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut host = start_host(
        &root,
        &[(
            "DOCKER_HOST",
            format!("unix://{}/no-engine.sock", tmp.path().display()),
        )],
    );
    let out = deploy(
        &root,
        tmp.path(),
        "1.0.0",
        &["docker:123456789012.dkr.ecr.us-west-2.amazonaws.com/team/model:v1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "deployed without an engine: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{NAME}@1.0.0: artifact docker:123456789012.dkr.ecr.us-west-2.amazonaws.com/team/model:v1"
        )) && stderr.contains("a Docker engine is needed to pull it, and none answers"),
        "{stderr}"
    );
    assert_eq!(ran(&root), "", "the component ran");
    // The host keeps running and deploys what needs no engine.
    let out = deploy(&root, tmp.path(), "1.0.1", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(host.stop(), Some(0));
}

#[test]
fn a_bad_docker_uri_is_refused_by_the_recipe_check() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mut host = start_host(&root, &[]);
    let out = deploy(&root, tmp.path(), "1.0.0", &["docker:Team/Model:latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not a Docker image reference") && stderr.contains("\"Team\""),
        "{stderr}"
    );
    assert_eq!(host.stop(), Some(0));
}
