//! `docker:` artifacts at deployment (`greengrass-reference.md` §5).
//!
//! How this is tested here: the machine these tests were written on has the Docker client but
//! no engine, so the refusal is tested for real — the host's `docker info` is pointed at a
//! socket nobody serves (`DOCKER_HOST`), and a machine without the client refuses the same way.
//! The pull path is tested with a fake `docker` executable placed first on the host's `PATH`:
//! it records its arguments, answers `info` with success, `image inspect` with success only
//! for the images it lists as present, and `pull` with success unless the image name says
//! `broken`. No real image is pulled by these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// Deploys `NAME` with the given artifact URIs; its Run step records that it ran.
fn deploy(root: &Path, scratch: &Path, version: &str, uris: &[&str]) -> Output {
    let recipes = scratch.join(format!("recipes-{version}"));
    std::fs::create_dir_all(&recipes).unwrap();
    std::fs::create_dir_all(scratch.join("artifacts")).unwrap();
    let artifacts: Vec<_> = uris.iter().map(|u| json!({ "URI": u })).collect();
    let recipe = json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": NAME,
        "ComponentVersion": version,
        "Manifests": [{
            "Platform": { "os": "linux" },
            "Lifecycle": { "Run": format!("echo {version} >> ran") },
            "Artifacts": artifacts,
        }],
    });
    std::fs::write(recipes.join("r.json"), recipe.to_string()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["deploy", "-r"])
        .arg(&recipes)
        .arg("-a")
        .arg(scratch.join("artifacts"))
        .args(["-m", &format!("{NAME}={version}"), "--root"])
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap()
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

/// A fake `docker` in `dir` that logs each call to `dir/calls` and knows `present` images.
fn fake_docker(dir: &Path, present: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("calls");
    let cases: String = present
        .iter()
        .map(|image| format!("      \"{image}\") exit 0 ;;\n"))
        .collect();
    let script = format!(
        "#!/bin/sh\n\
         echo \"$*\" >> '{log}'\n\
         case \"$1\" in\n\
         info) exit 0 ;;\n\
         image)\n    case \"$3\" in\n{cases}      *) echo \"Error: No such image: $3\" >&2; exit 1 ;;\n    esac ;;\n\
         pull)\n    case \"$2\" in\n      *broken*) echo \"Error response from daemon: manifest for $2 not found\" >&2; exit 1 ;;\n      *) echo \"pulled $2\"; exit 0 ;;\n    esac ;;\n\
         esac\n\
         exit 2\n",
        log = log.display()
    );
    let path = dir.join("docker");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

#[test]
fn with_an_engine_missing_images_are_pulled_and_present_ones_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let bin = tmp.path().join("bin");
    let log = fake_docker(&bin, &["redis:7"]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut host = start_host(&root, &[("PATH", path)]);

    let out = deploy(
        &root,
        tmp.path(),
        "1.0.0",
        &[
            "docker:redis:7",
            "docker:public.ecr.aws/team/model@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "info",
            "image inspect redis:7",
            "image inspect public.ecr.aws/team/model@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "pull public.ecr.aws/team/model@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ]
    );
    wait_for(Duration::from_secs(10), || {
        (ran(&root).trim() == "1.0.0").then_some(())
    })
    .expect("the component did not run");

    // A pull that fails fails the deployment, naming the artifact and the engine's words.
    let out = deploy(&root, tmp.path(), "2.0.0", &["docker:team/broken:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{NAME}@2.0.0: artifact docker:team/broken:1"))
            && stderr.contains("manifest for team/broken:1 not found"),
        "{stderr}"
    );
    assert!(!ran(&root).contains("2.0.0"));
    assert_eq!(host.stop(), Some(0));
}
