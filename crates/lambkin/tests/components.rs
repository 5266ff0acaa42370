//! Greengrass components and local deployments, against the real binary and its CLI: the seed
//! Lambda recipe, JSON and YAML recipes, dependency order and restarts, faults that must leave
//! the device as it was, BROKEN, configuration updates, and SIGKILL in the middle of
//! deployments.
//!
//! Components here run `sh` steps. A `Run` step that stays up appends `PID MARKER` to
//! `runs.txt` in its work directory, then `exec`s a sleep, so the line's pid is the process the
//! host supervises: the file counts the component's starts and says which one is live (markers
//! hold no single quote).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use support::{children_of, header, lines, process_alive, wait_for, Host};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/components");

/// The digest the seed recipe carries for the zip the cloud built; ours is built here.
const SEED_DIGEST: &str = "zxTD8KBV2eciihYJ2aSzJyDkia74Bp0gu66930kYKoI=";

/// How long anything in these tests may take to happen.
const PATIENCE: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn sha256_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `Run` script that records its start (`PID MARKER` in `runs.txt`) and stays up.
fn stays_up(marker: &str) -> String {
    format!("printf '%s %s\\n' \"$$\" '{marker}' >> runs.txt && exec sleep 600")
}

/// A generic component for Linux with `lifecycle`.
fn component(name: &str, version: &str, lifecycle: Value) -> Value {
    json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": lifecycle }],
    })
}

fn with_defaults(mut recipe: Value, defaults: Value) -> Value {
    recipe["ComponentConfiguration"] = json!({ "DefaultConfiguration": defaults });
    recipe
}

fn with_dependency(mut recipe: Value, name: &str, requirement: &str, kind: &str) -> Value {
    if !recipe["ComponentDependencies"].is_object() {
        recipe["ComponentDependencies"] = json!({});
    }
    recipe["ComponentDependencies"][name] =
        json!({ "VersionRequirement": requirement, "DependencyType": kind });
    recipe
}

fn with_artifacts(mut recipe: Value, artifacts: Value) -> Value {
    recipe["Manifests"][0]["Artifacts"] = artifacts;
    recipe
}

/// A device: a host on a temporary root, with directories for what deployments bring.
struct Device {
    tmp: tempfile::TempDir,
    root: PathBuf,
    host: Host,
    recipe_dirs: usize,
}

impl Device {
    fn start() -> Device {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let host = Host::start(&root);
        Device {
            tmp,
            root,
            host,
            recipe_dirs: 0,
        }
    }

    /// A path in the test's directory, outside the root.
    fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn artifact_dir(&self) -> PathBuf {
        self.scratch("artifacts")
    }

    /// Puts an artifact where `lambkin deploy -a` finds it: `NAME/VERSION/FILE`.
    fn put_artifact(&self, name: &str, version: &str, file: &str, bytes: &[u8]) {
        let dir = self.artifact_dir().join(name).join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    }

    /// A fresh recipe directory holding `recipes`.
    fn recipes(&mut self, recipes: &[Value]) -> PathBuf {
        self.recipe_dirs += 1;
        let dir = self.scratch(&format!("recipes-{}", self.recipe_dirs));
        std::fs::create_dir_all(&dir).unwrap();
        for r in recipes {
            let file = format!(
                "{}-{}.json",
                r["ComponentName"].as_str().unwrap(),
                r["ComponentVersion"].as_str().unwrap()
            );
            std::fs::write(dir.join(file), serde_json::to_vec_pretty(r).unwrap()).unwrap();
        }
        dir
    }

    fn cli(&self, args: &[&str]) -> Output {
        lambkin(&self.root, args)
    }

    /// `lambkin deploy` with `recipes` and the artifact directory: `Ok(stdout)` when it
    /// succeeds, `Err(stderr)` when it reports a failed deployment.
    fn deploy(&mut self, recipes: &[Value], args: &[&str]) -> Result<String, String> {
        let dir = self.recipes(recipes);
        self.deploy_from(&dir, args)
    }

    fn deploy_from(&mut self, recipe_dir: &Path, args: &[&str]) -> Result<String, String> {
        std::fs::create_dir_all(self.artifact_dir()).unwrap();
        let mut all = vec!["deploy", "-r", recipe_dir.to_str().unwrap(), "-a"];
        let artifacts = self.artifact_dir();
        all.push(artifacts.to_str().unwrap());
        all.extend_from_slice(args);
        let out = self.cli(&all);
        match out.status.code() {
            Some(0) => Ok(text(&out.stdout)),
            Some(1) => Err(text(&out.stderr)),
            other => panic!(
                "lambkin deploy exited with {other:?}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            ),
        }
    }

    /// `lambkin list --json`.
    fn list(&self) -> Vec<Value> {
        let out = self.cli(&["list", "--json"]);
        assert!(out.status.success(), "list: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn status(&self, name: &str) -> Option<Value> {
        self.list().into_iter().find(|c| c["name"] == name)
    }

    fn wait_state(&self, name: &str, state: &str) -> Value {
        let mut last = None;
        wait_for(PATIENCE, || {
            last = self.status(name);
            last.clone().filter(|s| s["state"] == state)
        })
        .unwrap_or_else(|| panic!("{name} never reached {state}; last seen {last:?}"))
    }

    fn work(&self, name: &str) -> PathBuf {
        self.root.join("work").join(name)
    }

    /// The starts `runs.txt` recorded: (pid, marker).
    fn runs(&self, name: &str) -> Vec<(u32, String)> {
        lines(&self.work(name).join("runs.txt"))
            .iter()
            .map(|l| {
                let (pid, marker) = l.split_once(' ').unwrap_or((l, ""));
                (pid.parse().unwrap(), marker.to_owned())
            })
            .collect()
    }

    fn wait_runs(&self, name: &str, count: usize) -> Vec<(u32, String)> {
        let mut last = Vec::new();
        wait_for(PATIENCE, || {
            last = self.runs(name);
            (last.len() >= count).then(|| last.clone())
        })
        .unwrap_or_else(|| panic!("{name} did not start {count} times: {last:?}"))
    }

    /// The component's log (`ROOT/logs/NAME.log`).
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

fn lambkin(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "the message should name {part:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_lambda_recipe_deploys_with_only_its_digest_changed_and_answers_invocations() {
    let mut device = Device::start();
    let handler = std::fs::read_to_string(fixture("lambda_function.py")).unwrap();
    let zip = support::zip_bytes(&[("lambda_function.py", &handler, 0o644)]);
    device.put_artifact(
        "example-lambda-python",
        "8.0.0",
        "lambda-artifact.zip",
        &zip,
    );
    let seed = std::fs::read_to_string(fixture("seed-lambda-recipe.json")).unwrap();
    assert_eq!(seed.matches(SEED_DIGEST).count(), 1);
    let recipe = seed.replace(SEED_DIGEST, &sha256_base64(&zip));
    let dir = device.scratch("seed-recipes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seed-lambda-recipe.json"), recipe).unwrap();

    let out = device
        .deploy_from(&dir, &["-m", "example-lambda-python=8.0.0"])
        .unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");

    let list = device.list();
    let lambda = list
        .iter()
        .find(|c| c["name"] == "example-lambda-python")
        .unwrap_or_else(|| panic!("not listed: {list:?}"));
    assert_eq!(
        lambda,
        &json!({"name": "example-lambda-python", "version": "8.0.0", "type": "lambda", "state": "RUNNING"})
    );
    // Its dependencies are Lambkin's own, and running.
    for dep in [
        "aws.greengrass.LambdaLauncher",
        "aws.greengrass.TokenExchangeService",
        "aws.greengrass.LambdaRuntimes",
    ] {
        let c = list.iter().find(|c| c["name"] == dep).unwrap();
        assert_eq!(
            (&c["type"], &c["state"]),
            (&json!("builtin"), &json!("RUNNING"))
        );
    }
    let packages = device.root.join("packages");
    assert_eq!(
        std::fs::read(packages.join("artifacts/example-lambda-python/8.0.0/lambda-artifact.zip"))
            .unwrap(),
        zip
    );
    assert!(packages
        .join("artifacts-unarchived/example-lambda-python/8.0.0/lambda-artifact/lambda_function.py")
        .is_file());

    // The Invoke API runs the handler.
    let reply = device
        .host
        .invoke("example-lambda-python", &json!({"name": "edge"}))
        .await;
    assert_eq!(reply.status, 200, "{}", text(&reply.body));
    assert_eq!(
        header(&reply, "x-amz-function-error"),
        None,
        "{}",
        text(&reply.body)
    );
    let mut result = support::json(&reply);
    let instance = result["instance"].take();
    assert!(
        instance.is_string(),
        "the handler names its instance: {instance}"
    );
    assert_eq!(
        result,
        json!({"greeting": "hello edge", "function": "example-lambda-python", "cwd_has_code": true, "instance": null})
    );
    // And so does the CLI.
    let out = device.cli(&["invoke", "example-lambda-python", r#"{"name":"cli"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["greeting"], "hello cli");
    assert_eq!(
        result["instance"], instance,
        "a pinned function keeps its instance"
    );

    // Stop and restart act on the function as on any component.
    let out = device.cli(&["stop", "example-lambda-python"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    device.wait_state("example-lambda-python", "FINISHED");
    let reply = device
        .host
        .invoke("example-lambda-python", &json!({}))
        .await;
    assert_eq!(reply.status, 404, "{}", text(&reply.body));
    let out = device.cli(&["restart", "example-lambda-python"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    device.wait_state("example-lambda-python", "RUNNING");
    let reply = device
        .host
        .invoke("example-lambda-python", &json!({"name": "again"}))
        .await;
    assert_eq!(reply.status, 200, "{}", text(&reply.body));
    let result = support::json(&reply);
    assert_eq!(result["greeting"], "hello again");
    assert_ne!(result["instance"], instance, "restarted on a new instance");
    let out = device.cli(&["restart", "example-lambda-python"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reply = device
        .host
        .invoke("example-lambda-python", &json!({}))
        .await;
    // An error body has no `instance`: only an answer from the handler counts.
    assert_eq!(reply.status, 200, "{}", text(&reply.body));
    assert_eq!(
        header(&reply, "x-amz-function-error"),
        None,
        "{}",
        text(&reply.body)
    );
    let again = support::json(&reply)["instance"].clone();
    assert!(again.is_string(), "the handler answered: {again}");
    assert_ne!(
        again, result["instance"],
        "a second restart, a new instance"
    );
    // Built-in components are not Lambkin's to restart.
    let out = device.cli(&["restart", "aws.greengrass.LambdaLauncher"]);
    assert!(!out.status.success());
    assert_mentions(&text(&out.stderr), &["built in"]);
}

/// What a greeter deployment looks like from outside, with the root path written `ROOT`.
fn greeter_on_a_fresh_device(recipe_file: &str) -> (Value, String, String) {
    let mut device = Device::start();
    let script = std::fs::read(fixture("greeter.sh")).unwrap();
    device.put_artifact("com.example.Greeter", "1.0.0", "greeter.sh", &script);
    let dir = device.scratch("greeter-recipes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture(recipe_file), dir.join(recipe_file)).unwrap();
    device
        .deploy_from(&dir, &["-m", "com.example.Greeter=1.0.0"])
        .unwrap_or_else(|e| panic!("{recipe_file}: {e}"));
    let status = device.wait_state("com.example.Greeter", "RUNNING");
    let seen_file = device.work("com.example.Greeter").join("seen.txt");
    let seen = wait_for(PATIENCE, || std::fs::read_to_string(&seen_file).ok())
        .unwrap_or_else(|| panic!("{recipe_file}: the Run step wrote nothing"));
    let installed =
        std::fs::read_to_string(device.work("com.example.Greeter").join("installed.txt")).unwrap();
    let root = device.root.display().to_string();
    (status, seen.replace(&root, "ROOT"), installed)
}

#[test]
fn json_and_yaml_forms_of_a_recipe_deploy_the_same_component() {
    let from_json = greeter_on_a_fresh_device("greeter.json");
    let from_yaml = greeter_on_a_fresh_device("greeter.yaml");
    assert_eq!(from_json, from_yaml);
    let (status, seen, installed) = from_json;
    assert_eq!(
        status,
        json!({"name": "com.example.Greeter", "version": "1.0.0", "type": "generic", "state": "RUNNING"})
    );
    assert_eq!(installed, "installed\n");
    assert_eq!(
        seen,
        "message=hello from the recipe\n\
         artifact=ROOT/packages/artifacts/com.example.Greeter/1.0.0\n\
         work=ROOT/work/com.example.Greeter\n\
         root=ROOT\n\
         thing=lambkin\n\
         env=run\n\
         count=3\n"
    );
}

/// Two components that do not depend on each other meet in their Install steps: each drops
/// a marker, then waits for the other's. Started one after another (the first waiting to be
/// RUNNING before the second starts), the first would wait until its Install timed out.
#[test]
fn components_that_do_not_depend_on_each_other_start_side_by_side() {
    let mut device = Device::start();
    let meeting = support::dir_for_components(device.tmp.path(), "meeting");
    let meet = |me: &str, other: &str| {
        json!({
            "Install": {
                "Script": format!(
                    "touch '{dir}/{me}' && i=0; while [ ! -e '{dir}/{other}' ]; do \
                     i=$((i+1)); [ $i -gt 200 ] && exit 7; sleep 0.05; done",
                    dir = meeting.display()
                ),
                "Timeout": 30,
            },
            "Run": stays_up(me),
        })
    };
    let left = component("com.example.Left", "1.0.0", meet("left", "right"));
    let right = component("com.example.Right", "1.0.0", meet("right", "left"));
    let out = device
        .deploy(
            &[left, right],
            &[
                "-m",
                "com.example.Left=1.0.0",
                "-m",
                "com.example.Right=1.0.0",
            ],
        )
        .unwrap_or_else(|e| panic!("the deployment failed: {e}"));
    assert!(out.contains("SUCCEEDED"), "{out}");
    device.wait_runs("com.example.Left", 1);
    device.wait_runs("com.example.Right", 1);
}

#[test]
fn a_dependency_chain_starts_in_order_and_only_hard_dependents_follow_a_restart() {
    let mut device = Device::start();
    let order = support::dir_for_components(device.tmp.path(), "order").join("order.txt");
    let defaults = json!({ "order": order });
    let step = |name: &str| {
        json!({
            "Install": format!(
                "echo installing && echo \"$(date +%s%N) install {name}\" >> '{{configuration:/order}}'"
            ),
            "Run": stays_up(name),
        })
    };
    let base = |version: &str| {
        with_defaults(
            component("com.example.Base", version, step("Base")),
            defaults.clone(),
        )
    };
    // Hard restarts with Base; Soft, after both, restarts with neither.
    let hard = with_dependency(
        with_defaults(
            component("com.example.Hard", "1.0.0", step("Hard")),
            defaults.clone(),
        ),
        "com.example.Base",
        "^1.0.0",
        "HARD",
    );
    let soft = with_dependency(
        with_dependency(
            with_defaults(
                component("com.example.Soft", "1.0.0", step("Soft")),
                defaults.clone(),
            ),
            "com.example.Base",
            ">=1.0.0 <2.0.0",
            "SOFT",
        ),
        "com.example.Hard",
        "1.0.0",
        "SOFT",
    );
    // Only Soft is asked for; its dependencies come with it, Base at the highest version
    // both requirements allow.
    device
        .deploy(
            &[base("1.0.0"), base("1.1.0"), base("2.0.0"), hard, soft],
            &["-m", "com.example.Soft=1.0.0"],
        )
        .unwrap();
    let versions: BTreeMap<String, String> = device
        .list()
        .into_iter()
        .filter(|c| c["type"] == "generic")
        .map(|c| {
            assert_eq!(c["state"], "RUNNING", "{c}");
            (
                c["name"].as_str().unwrap().to_owned(),
                c["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        BTreeMap::from(
            [
                ("com.example.Base", "1.1.0"),
                ("com.example.Hard", "1.0.0"),
                ("com.example.Soft", "1.0.0"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        )
    );
    let installs: Vec<(u128, String)> = lines(&order)
        .iter()
        .map(|l| {
            let (time, what) = l.split_once(' ').unwrap();
            (time.parse().unwrap(), what.to_owned())
        })
        .collect();
    let what: Vec<&str> = installs.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(what, ["install Base", "install Hard", "install Soft"]);
    assert!(
        installs.windows(2).all(|w| w[0].0 <= w[1].0),
        "{installs:?}"
    );
    // Each was RUNNING before the next one's Install began.
    let log_of = |name: &str| device.log(name);
    for (dependency, dependent) in [("Base", "Hard"), ("Hard", "Soft")] {
        let running_at = log_of(&format!("com.example.{dependency}"))
            .lines()
            .find(|l| l.ends_with("state: RUNNING"))
            .map(|l| l[..24].to_owned())
            .unwrap();
        let installing_at = log_of(&format!("com.example.{dependent}"))
            .lines()
            .find(|l| l.ends_with("[INFO] installing"))
            .map(|l| l[..24].to_owned())
            .unwrap();
        assert!(
            running_at <= installing_at,
            "{dependent} began ({installing_at}) before {dependency} ran ({running_at})"
        );
    }
    // `lambkin logs` shows a component's log: `TIME [LEVEL] text`.
    let out = device.cli(&["logs", "com.example.Base"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(
        log.lines().any(|l| l.ends_with(" [INFO] state: RUNNING")),
        "{log}"
    );
    let base_pid = device.wait_runs("com.example.Base", 1)[0].0;
    let hard_pid = device.wait_runs("com.example.Hard", 1)[0].0;
    let soft_pid = device.wait_runs("com.example.Soft", 1)[0].0;

    let out = device.cli(&["restart", "com.example.Base"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let base_runs = device.wait_runs("com.example.Base", 2);
    let hard_runs = device.wait_runs("com.example.Hard", 2);
    assert!(!process_alive(base_pid) && !process_alive(hard_pid));
    assert!(process_alive(base_runs[1].0) && process_alive(hard_runs[1].0));
    // Install ran once: a restart does not install again.
    assert_eq!(lines(&order).len(), 3);
    // Soft's process is the one it started with.
    assert_eq!(device.runs("com.example.Soft").len(), 1);
    assert!(process_alive(soft_pid));
    assert!(!device.log("com.example.Soft").contains("state: STOPPING"));

    // A restart of Hard leaves Base and Soft alone.
    let out = device.cli(&["restart", "com.example.Hard"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    device.wait_runs("com.example.Hard", 3);
    assert_eq!(device.runs("com.example.Base").len(), 2);
    assert_eq!(device.runs("com.example.Soft").len(), 1);
    assert!(process_alive(soft_pid));
    for name in ["com.example.Base", "com.example.Hard", "com.example.Soft"] {
        device.wait_state(name, "RUNNING");
    }

    // Stop ends the process and leaves the component FINISHED.
    let out = device.cli(&["stop", "com.example.Soft"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    device.wait_state("com.example.Soft", "FINISHED");
    assert!(
        wait_for(PATIENCE, || (!process_alive(soft_pid)).then_some(())).is_some(),
        "Soft's process outlived stop"
    );
    let out = device.cli(&["restart", "com.example.Nope"]);
    assert!(!out.status.success());
    assert_mentions(&text(&out.stderr), &["com.example.Nope"]);
}

/// The component that is on the device before every fault.
fn steady(version: &str) -> Value {
    with_defaults(
        component(
            "com.example.Steady",
            version,
            json!({ "Run": stays_up("{configuration:/greeting}") }),
        ),
        json!({ "greeting": "default" }),
    )
}

fn merge_greeting(greeting: &str) -> String {
    json!({ "com.example.Steady": { "MERGE": { "greeting": greeting } } }).to_string()
}

#[test]
fn faulty_deployments_are_rejected_naming_the_cause_and_the_device_keeps_its_deployment() {
    let mut device = Device::start();
    device
        .deploy(
            &[steady("1.0.0")],
            &[
                "-m",
                "com.example.Steady=1.0.0",
                "-c",
                &merge_greeting("configured"),
            ],
        )
        .unwrap();
    device.wait_state("com.example.Steady", "RUNNING");
    let before = device.list();
    let first = device.wait_runs("com.example.Steady", 1);
    assert_eq!(first[0].1, "configured");

    struct Fault {
        what: &'static str,
        recipes: Vec<Value>,
        merge: &'static str,
        expect: &'static [&'static str],
        /// The deployment got as far as stopping Steady, which must be back.
        restarts_steady: bool,
    }
    let data_artifact = json!([{ "Uri": "s3://bucket/data.txt", "Digest": sha256_base64(b"other"), "Algorithm": "SHA-256" }]);
    device.put_artifact("com.example.Digest", "1.0.0", "data.txt", b"data");
    let slip = support::zip_bytes(&[
        ("ok.txt", "fine", 0o644),
        ("../escaped.txt", "gotcha", 0o644),
    ]);
    device.put_artifact("com.example.Slip", "1.0.0", "slip.zip", &slip);
    let run = |marker: &str| json!({ "Run": stays_up(marker) });
    let faults = vec![
        Fault {
            what: "a wrong digest",
            recipes: vec![with_artifacts(
                component("com.example.Digest", "1.0.0", run("digest")),
                data_artifact,
            )],
            merge: "com.example.Digest=1.0.0",
            expect: &["com.example.Digest@1.0.0", "data.txt", "digest", "SHA-256"],
            restarts_steady: false,
        },
        Fault {
            what: "a zip with ../ entries",
            recipes: vec![with_artifacts(
                component("com.example.Slip", "1.0.0", run("slip")),
                json!([{ "Uri": "s3://bucket/slip.zip", "Unarchive": "ZIP" }]),
            )],
            merge: "com.example.Slip=1.0.0",
            expect: &["com.example.Slip@1.0.0", "slip.zip", "../escaped.txt"],
            restarts_steady: false,
        },
        Fault {
            what: "a missing artifact",
            recipes: vec![with_artifacts(
                component("com.example.Missing", "1.0.0", run("missing")),
                json!([{ "Uri": "s3://bucket/absent.bin" }]),
            )],
            merge: "com.example.Missing=1.0.0",
            expect: &["com.example.Missing@1.0.0", "absent.bin", "not found"],
            restarts_steady: false,
        },
        Fault {
            what: "an unknown variable",
            recipes: vec![component(
                "com.example.Unknown",
                "1.0.0",
                json!({ "Run": "echo {foo:bar}" }),
            )],
            merge: "com.example.Unknown=1.0.0",
            expect: &["unknown variable {foo:bar}"],
            restarts_steady: false,
        },
        Fault {
            what: "a dependency cycle",
            recipes: vec![
                with_dependency(
                    component("com.example.CycleA", "1.0.0", run("a")),
                    "com.example.CycleB",
                    "1.0.0",
                    "HARD",
                ),
                with_dependency(
                    component("com.example.CycleB", "1.0.0", run("b")),
                    "com.example.CycleA",
                    "1.0.0",
                    "SOFT",
                ),
            ],
            merge: "com.example.CycleA=1.0.0",
            expect: &["cycle", "com.example.CycleA", "com.example.CycleB"],
            restarts_steady: false,
        },
        Fault {
            what: "an unsatisfiable version",
            recipes: vec![with_dependency(
                component("com.example.Needy", "1.0.0", run("needy")),
                "com.example.Steady",
                ">=2.0.0",
                "HARD",
            )],
            merge: "com.example.Needy=1.0.0",
            expect: &["com.example.Needy@1.0.0", "com.example.Steady", ">=2.0.0"],
            restarts_steady: false,
        },
        Fault {
            what: "a failing install",
            recipes: vec![{
                let mut r = steady("2.0.0");
                r["Manifests"][0]["Lifecycle"]["Install"] = json!("echo cannot install; exit 3");
                r
            }],
            merge: "com.example.Steady=2.0.0",
            expect: &["com.example.Steady@2.0.0", "Install", "exit status 3"],
            restarts_steady: true,
        },
        Fault {
            what: "a startup that times out",
            recipes: vec![component(
                "com.example.Slow",
                "1.0.0",
                json!({ "Startup": { "Script": "exec sleep 30", "Timeout": 1 } }),
            )],
            merge: "com.example.Slow=1.0.0",
            expect: &["com.example.Slow@1.0.0", "Startup timed out"],
            restarts_steady: true,
        },
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        let live = device.runs("com.example.Steady");
        let (live_pid, _) = live.last().cloned().unwrap();
        // Each fault also changes Steady's configuration, which must not stick either.
        let greeting = format!("fault {i}");
        let result = device.deploy(
            &fault.recipes,
            &["-m", fault.merge, "-c", &merge_greeting(&greeting)],
        );
        let message = result
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", fault.what));
        assert_mentions(&message, fault.expect);
        assert_eq!(device.list(), before, "after {}", fault.what);
        if fault.restarts_steady {
            // Stopped for the update, then started again as it was: RUNNING comes before
            // the Run step writes its line, so the line is waited for.
            let runs = device.wait_runs("com.example.Steady", live.len() + 1);
            let (pid, marker) = runs.last().unwrap();
            assert_eq!(marker, "configured", "{}", fault.what);
            assert!(process_alive(*pid), "{}", fault.what);
        } else {
            let runs = device.runs("com.example.Steady");
            assert_eq!(runs, live, "{} restarted Steady", fault.what);
            assert!(process_alive(live_pid), "{}", fault.what);
        }
    }
    // Nothing escaped the zip.
    let unarchived = device
        .root
        .join("packages/artifacts-unarchived/com.example.Slip");
    assert!(!unarchived.join("1.0.0/escaped.txt").exists());
    assert!(!unarchived.join("escaped.txt").exists());

    // What the host committed is the same deployment.
    let runs = device.runs("com.example.Steady").len();
    device.host.stop();
    device.host = Host::start(&device.root);
    assert_eq!(
        device.wait_runs("com.example.Steady", runs + 1)[runs].1,
        "configured"
    );
    assert_eq!(device.list(), before);
    // And the device still takes good deployments.
    device
        .deploy(&[], &["-c", &merge_greeting("after the faults")])
        .unwrap();
    let (pid, marker) = device.wait_runs("com.example.Steady", runs + 2)[runs + 1].clone();
    assert_eq!(marker, "after the faults");
    assert!(process_alive(pid));
}

#[test]
fn a_failed_deployment_with_do_nothing_keeps_what_it_did() {
    let mut device = Device::start();
    device
        .deploy(&[steady("1.0.0")], &["-m", "com.example.Steady=1.0.0"])
        .unwrap();
    let bad = component(
        "com.example.Bad",
        "1.0.0",
        json!({ "Install": "exit 5", "Run": stays_up("bad") }),
    );
    let message = device
        .deploy(
            &[bad],
            &[
                "-m",
                "com.example.Bad=1.0.0",
                "-c",
                &merge_greeting("kept"),
                "--failure-policy",
                "do-nothing",
            ],
        )
        .unwrap_err();
    assert_mentions(
        &message,
        &["com.example.Bad@1.0.0", "exit status 5", "DO_NOTHING"],
    );
    device.wait_state("com.example.Bad", "BROKEN");
    assert_eq!(device.runs("com.example.Steady").last().unwrap().1, "kept");
    // That is what the device now has, across a restart too.
    device.host.stop();
    let runs = device.runs("com.example.Steady").len();
    device.host = Host::start(&device.root);
    device.wait_state("com.example.Bad", "BROKEN");
    device.wait_state("com.example.Steady", "RUNNING");
    assert_eq!(
        device.wait_runs("com.example.Steady", runs + 1)[runs].1,
        "kept"
    );
}

#[test]
fn a_failed_redeployment_of_the_same_version_leaves_the_recipe_it_would_have_replaced() {
    let mut device = Device::start();
    let edited = |install: &str, marker: &str| {
        let mut lifecycle = json!({ "Run": stays_up(marker) });
        if !install.is_empty() {
            lifecycle["Install"] = json!(install);
        }
        with_defaults(
            component("com.example.Edited", "1.0.0", lifecycle),
            json!({ "note": "" }),
        )
    };
    let last_run = |device: &Device| device.runs("com.example.Edited").last().cloned().unwrap();
    device
        .deploy(&[edited("", "first")], &["-m", "com.example.Edited=1.0.0"])
        .unwrap();
    assert_eq!(device.wait_runs("com.example.Edited", 1)[0].1, "first");
    let before = device.list();

    // The recipe of 1.0.0 edited in place, with an Install that fails.
    let message = device
        .deploy(
            &[edited("exit 4", "second")],
            &["-m", "com.example.Edited=1.0.0"],
        )
        .unwrap_err();
    assert_mentions(&message, &["com.example.Edited@1.0.0", "exit status 4"]);
    assert_eq!(device.list(), before);
    let (pid, marker) = last_run(&device);
    assert_eq!(
        marker, "first",
        "rolled back to the recipe that was running"
    );
    assert!(process_alive(pid));

    // Later deployments and restarts still see the recipe that was running.
    device
        .deploy(
            &[],
            &["-c", r#"{"com.example.Edited":{"MERGE":{"note":"x"}}}"#],
        )
        .unwrap();
    assert_eq!(last_run(&device).1, "first");
    device.host.stop();
    let runs = device.runs("com.example.Edited").len();
    device.host = Host::start(&device.root);
    assert_eq!(
        device.wait_runs("com.example.Edited", runs + 1)[runs].1,
        "first"
    );

    // An edit that works replaces it, for good (its Run writes its marker once started).
    let runs = device.runs("com.example.Edited").len();
    device
        .deploy(&[edited("", "third")], &["-m", "com.example.Edited=1.0.0"])
        .unwrap();
    assert_eq!(
        device.wait_runs("com.example.Edited", runs + 1)[runs].1,
        "third"
    );
    device.host.stop();
    let runs = device.runs("com.example.Edited").len();
    device.host = Host::start(&device.root);
    assert_eq!(
        device.wait_runs("com.example.Edited", runs + 1)[runs].1,
        "third"
    );
}

#[test]
fn a_component_that_fails_as_the_host_starts_keeps_its_place_and_holds_back_only_its_dependents() {
    let mut device = Device::start();
    let fail = device.scratch("fail");
    let flaky = with_defaults(
        component(
            "com.example.Flaky",
            "1.0.0",
            json!({
                "Install": "[ ! -f '{configuration:/fail}' ]",
                "Run": stays_up("flaky"),
            }),
        ),
        json!({ "fail": fail }),
    );
    let needs = with_dependency(
        component(
            "com.example.Needs",
            "1.0.0",
            json!({ "Run": stays_up("needs") }),
        ),
        "com.example.Flaky",
        "1.0.0",
        "HARD",
    );
    let zed = with_defaults(
        component(
            "com.example.Zed",
            "1.0.0",
            json!({ "Run": stays_up("{configuration:/note}") }),
        ),
        json!({ "note": "zed" }),
    );
    device
        .deploy(
            &[flaky, needs, zed],
            &[
                "-m",
                "com.example.Flaky=1.0.0",
                "-m",
                "com.example.Needs=1.0.0",
                "-m",
                "com.example.Zed=1.0.0",
            ],
        )
        .unwrap();
    let names = |list: &[Value]| -> Vec<(Value, Value)> {
        list.iter()
            .map(|c| (c["name"].clone(), c["version"].clone()))
            .collect()
    };
    let before = names(&device.list());
    device.wait_runs("com.example.Zed", 1);
    device.wait_runs("com.example.Needs", 1);

    // Flaky's Install fails from now on, and the host restarts.
    device.host.stop();
    std::fs::write(&fail, "").unwrap();
    device.host = Host::start(&device.root);
    device.wait_state("com.example.Flaky", "BROKEN");
    device.wait_state("com.example.Zed", "RUNNING");
    assert_eq!(device.wait_runs("com.example.Zed", 2).len(), 2);
    // Needs waits for Flaky, listed but not started.
    assert_eq!(device.status("com.example.Needs").unwrap()["state"], "NEW");
    assert_eq!(device.runs("com.example.Needs").len(), 1);
    assert_eq!(names(&device.list()), before);

    // A deployment meanwhile keeps all three.
    device
        .deploy(
            &[],
            &["-c", r#"{"com.example.Zed":{"MERGE":{"note":"updated"}}}"#],
        )
        .unwrap();
    assert_eq!(device.wait_runs("com.example.Zed", 3)[2].1, "updated");
    assert_eq!(names(&device.list()), before);

    // Repaired and deployed again, Flaky comes up and Needs with it.
    std::fs::remove_file(&fail).unwrap();
    device
        .deploy(&[], &["-m", "com.example.Flaky=1.0.0"])
        .unwrap();
    device.wait_state("com.example.Flaky", "RUNNING");
    device.wait_state("com.example.Needs", "RUNNING");
    let needs_runs = device.wait_runs("com.example.Needs", 2);
    assert!(process_alive(needs_runs[1].0));

    // And the device's set survives another restart whole.
    let zed_runs = device.runs("com.example.Zed").len();
    device.host.stop();
    device.host = Host::start(&device.root);
    for name in ["com.example.Flaky", "com.example.Needs", "com.example.Zed"] {
        device.wait_state(name, "RUNNING");
    }
    assert_eq!(
        device.wait_runs("com.example.Zed", zed_runs + 1)[zed_runs].1,
        "updated"
    );
}

#[test]
fn a_component_that_keeps_crashing_goes_broken_on_the_third_error_until_deployed_again() {
    let mut device = Device::start();
    let crash = device.scratch("crash");
    std::fs::write(&crash, "").unwrap();
    // Stays up until `crash` exists, then fails: the deployment sees it RUNNING first.
    let recipe = with_defaults(
        component(
            "com.example.Crasher",
            "1.0.0",
            json!({
                "Run": "echo \"$$ run\" >> runs.txt; \
                        while [ ! -f '{configuration:/go}' ]; do sleep 0.01; done; \
                        if [ -f '{configuration:/crash}' ]; then exit 1; fi; exec sleep 600",
            }),
        ),
        json!({ "go": device.scratch("go"), "crash": crash }),
    );
    device
        .deploy(&[recipe], &["-m", "com.example.Crasher=1.0.0"])
        .unwrap();
    device.wait_state("com.example.Crasher", "RUNNING");
    std::fs::write(device.scratch("go"), "").unwrap();
    let broken = device.wait_state("com.example.Crasher", "BROKEN");
    assert_mentions(broken["detail"].as_str().unwrap_or(""), &["exit status 1"]);
    assert_eq!(device.runs("com.example.Crasher").len(), 3);
    let log = device.log("com.example.Crasher");
    assert_eq!(log.matches("state: ERRORED").count(), 3, "{log}");
    assert_eq!(log.matches("state: BROKEN").count(), 1, "{log}");
    // Not restarted, not even when asked. The restart goes to the component's supervisor,
    // which takes it before the shutdown that deploying the component again sends after it:
    // once that deployment is done, a restart that was honoured, however late, has left its
    // states in the log.
    let broken_at = log.len();
    let out = device.cli(&["restart", "com.example.Crasher"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        device.status("com.example.Crasher").unwrap()["state"],
        "BROKEN"
    );

    // Deploying it again clears BROKEN.
    std::fs::remove_file(&crash).unwrap();
    device
        .deploy(&[], &["-m", "com.example.Crasher=1.0.0"])
        .unwrap();
    device.wait_state("com.example.Crasher", "RUNNING");
    let runs = device.wait_runs("com.example.Crasher", 4);
    let log = device.log("com.example.Crasher");
    let states: Vec<&str> = log[broken_at..]
        .lines()
        .filter_map(|l| l.split_once("state: ").map(|(_, s)| s.trim()))
        .collect();
    assert_eq!(
        states,
        ["INSTALLED", "STARTING", "RUNNING"],
        "only the new deployment's states follow BROKEN: {log}"
    );
    assert_eq!(runs.len(), 4, "{runs:?}");
    let pid = runs[3].0;
    assert!(process_alive(pid));
    assert!(device.status("com.example.Crasher").unwrap()["detail"].is_null());
}

#[test]
fn configuration_updates_reset_then_merge_and_the_component_sees_the_result() {
    let mut device = Device::start();
    let marker = "{configuration:/a}|{configuration:/b}|{configuration:/extra}|\
                  {configuration:/nested/x}|{configuration:/nested}";
    let recipe = with_defaults(
        component(
            "com.example.Configured",
            "1.0.0",
            json!({ "Run": stays_up(marker) }),
        ),
        json!({ "a": "A0", "b": "B0", "nested": { "x": "X0", "y": "Y0" } }),
    );
    let update = |u: Value| json!({ "com.example.Configured": u }).to_string();
    let expect_after = |device: &mut Device, args: &[&str], want: &str| {
        let before = device.runs("com.example.Configured").len();
        device
            .deploy(&[], args)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let runs = device.wait_runs("com.example.Configured", before + 1);
        assert_eq!(runs.len(), before + 1, "{args:?}");
        assert_eq!(runs[before].1, want, "{args:?}");
        assert!(process_alive(runs[before].0));
    };
    let dir = device.recipes(&[recipe]);
    device
        .deploy_from(
            &dir,
            &[
                "-m",
                "com.example.Configured=1.0.0",
                "-c",
                &update(json!({ "MERGE": { "a": "A1", "extra": 7, "nested": { "x": "X1" } } })),
            ],
        )
        .unwrap();
    let first = device.wait_runs("com.example.Configured", 1);
    assert_eq!(
        first[0].1, r#"A1|B0|7|X1|{"x":"X1","y":"Y0"}"#,
        "MERGE over the defaults"
    );
    expect_after(
        &mut device,
        &[
            "-c",
            &update(json!({
                "RESET": ["/a", "/extra", "/nested/x"],
                "MERGE": { "b": "B2" },
            })),
        ],
        // A key without a default goes away, and its variable stays as written.
        r#"A0|B2|{configuration:/extra}|X0|{"x":"X0","y":"Y0"}"#,
    );
    expect_after(
        &mut device,
        &[
            "-c",
            &update(json!({ "RESET": ["/b"], "MERGE": { "b": "B3", "nested": { "z": "Z3" } } })),
        ],
        // RESET first, then MERGE.
        r#"A0|B3|{configuration:/extra}|X0|{"x":"X0","y":"Y0","z":"Z3"}"#,
    );
    expect_after(
        &mut device,
        &[
            "-c",
            &update(json!({ "RESET": [""], "MERGE": { "a": "A4" } })),
        ],
        r#"A4|B0|{configuration:/extra}|X0|{"x":"X0","y":"Y0"}"#,
    );
    // The configuration survives a restart of the host.
    device.host.stop();
    let runs = device.runs("com.example.Configured").len();
    device.host = Host::start(&device.root);
    let after = device.wait_runs("com.example.Configured", runs + 1);
    assert_eq!(
        after[runs].1,
        r#"A4|B0|{configuration:/extra}|X0|{"x":"X0","y":"Y0"}"#
    );
}

/// A small deterministic generator, seeded per run and printed so a failure can be replayed
/// (`LAMBKIN_TEST_SEED`).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("LAMBKIN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("LAMBKIN_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n.max(1)
    }
}

const STAGES: usize = 4;
const EXTRA: &str = "com.example.Extra";

fn stage(i: usize) -> String {
    format!("com.example.Stage{i}")
}

/// Generation `g`: every stage at version `1.0.g` with configuration `gen = g`, and the
/// extra component only in odd generations.
fn generation(g: usize) -> BTreeMap<String, (String, String)> {
    let mut names: Vec<String> = (0..STAGES).map(stage).collect();
    if g % 2 == 1 {
        names.push(EXTRA.to_owned());
    }
    names
        .into_iter()
        .map(|n| (n, (format!("1.0.{g}"), g.to_string())))
        .collect()
}

/// The recipes of generation `g` (Installs that take 50–200 ms) and the `lambkin deploy`
/// arguments that move `from` to it.
fn deployment_to(
    g: usize,
    from: &BTreeMap<String, (String, String)>,
    rng: &mut Rng,
) -> (Vec<Value>, Vec<String>) {
    let target = generation(g);
    let mut recipes = Vec::new();
    let mut args = Vec::new();
    let mut config = serde_json::Map::new();
    for (name, (version, gen)) in &target {
        let install = format!("sleep 0.{:03}", 50 + rng.below(151));
        let mut recipe = component(
            name,
            version,
            json!({ "Install": install, "Run": stays_up("{configuration:/gen}") }),
        );
        if name != &stage(0) {
            // A chain, so starts are ordered and a kill can land between any two.
            let previous = if name == EXTRA {
                stage(STAGES - 1)
            } else {
                stage(name[name.len() - 1..].parse::<usize>().unwrap() - 1)
            };
            recipe = with_dependency(recipe, &previous, "^1.0.0", "HARD");
        }
        recipes.push(recipe);
        args.push("-m".to_owned());
        args.push(format!("{name}={version}"));
        config.insert(name.clone(), json!({ "MERGE": { "gen": gen } }));
    }
    for name in from.keys().filter(|n| !target.contains_key(*n)) {
        args.push("--remove".to_owned());
        args.push(name.clone());
    }
    args.push("-c".to_owned());
    args.push(Value::Object(config).to_string());
    (recipes, args)
}

/// What the device runs: name → (version, the `gen` its live process was started with).
/// Waits until every component is RUNNING on a process of the current host, and every process
/// of an earlier host is gone.
fn observe(device: &Device) -> BTreeMap<String, (String, String)> {
    let mut last = None;
    wait_for(PATIENCE, || {
        let host_children = children_of(device.host.pid());
        let mut seen = BTreeMap::new();
        let list = device.list();
        last = Some(format!("{list:?}"));
        for c in list.iter().filter(|c| c["type"] != "builtin") {
            let name = c["name"].as_str().unwrap();
            if c["state"] != "RUNNING" {
                return None;
            }
            let runs = device.runs(name);
            let (pid, gen) = runs.last()?;
            if !host_children.contains(pid) {
                return None;
            }
            let alive = runs.iter().filter(|(p, _)| process_alive(*p)).count();
            if alive != 1 {
                return None;
            }
            seen.insert(
                name.to_owned(),
                (c["version"].as_str().unwrap().to_owned(), gen.clone()),
            );
        }
        Some(seen)
    })
    .unwrap_or_else(|| panic!("the device did not settle: {last:?}"))
}

#[test]
fn sigkill_during_deployments_never_leaves_a_half_applied_device() {
    const TRIALS: usize = 24;
    let started = Instant::now();
    let mut rng = Rng::seeded();
    let mut device = Device::start();
    let (recipes, args) = deployment_to(0, &BTreeMap::new(), &mut rng);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    device.deploy(&recipes, &args).unwrap();
    let mut current = observe(&device);
    assert_eq!(current, generation(0));

    // How long a whole deployment takes, to spread the kills over it.
    let (recipes, args) = deployment_to(1, &current, &mut rng);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t = Instant::now();
    device.deploy(&recipes, &args).unwrap();
    let span = t.elapsed();
    current = observe(&device);
    assert_eq!(current, generation(1));

    let mut outcomes = BTreeMap::<&str, usize>::new();
    let mut midway = 0;
    for trial in 0..TRIALS {
        let g = trial + 2;
        let (recipes, args) = deployment_to(g, &current, &mut rng);
        let dir = device.recipes(&recipes);
        let mut command = Command::new(env!("CARGO_BIN_EXE_lambkin"));
        command
            .args(["deploy", "-r", dir.to_str().unwrap(), "--root"])
            .arg(&device.root)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let deploy = command.spawn().unwrap();
        // The kill point: anywhere from before the request arrives to after it finished.
        let delay = Duration::from_micros(rng.below(span.as_micros() as u64 * 6 / 5));
        std::thread::sleep(delay);
        device.host.crash();
        let out = deploy.wait_with_output().unwrap();
        // How far the deployment got: components whose newest process had the new config.
        let target = generation(g);
        let started = target
            .keys()
            .filter(|n| device.runs(n).last().map(|(_, gen)| gen.as_str()) == Some(&g.to_string()))
            .count();
        if started > 0 && started < target.len() {
            midway += 1;
        }
        device.host = Host::start(&device.root);
        let now = observe(&device);
        let (previous, next) = (current.clone(), generation(g));
        let outcome = if now == previous {
            "previous"
        } else if now == next {
            "new"
        } else {
            panic!(
                "trial {trial} (kill after {delay:?}): the device runs {now:?}, \
                 neither {previous:?} nor {next:?}"
            );
        };
        if out.status.success() {
            assert_eq!(outcome, "new", "trial {trial}: SUCCEEDED was reported");
        }
        *outcomes.entry(outcome).or_default() += 1;
        current = now;
        // The restarted host takes deployments again.
        if trial % 6 == 5 {
            let g = g + 1000;
            let (recipes, args) = deployment_to(g, &current, &mut rng);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            device
                .deploy(&recipes, &args)
                .unwrap_or_else(|e| panic!("trial {trial}: the deployment after restart: {e}"));
            current = observe(&device);
            assert_eq!(current, generation(g));
        }
    }
    eprintln!(
        "{TRIALS} kills over deployments of {span:?}: {outcomes:?}, {midway} mid-way, in {:?}",
        started.elapsed()
    );
    assert!(midway > 0, "no kill landed in the middle of a deployment");
}

#[test]
fn skipif_skips_a_step_whose_check_holds_and_runs_one_whose_check_does_not() {
    let mut device = Device::start();
    let flag = device.scratch("flag");
    std::fs::write(&flag, "").unwrap();
    let flag = flag.display().to_string();
    // `exists` holds: Install skipped; `onpath` of a command nobody has does not: Run runs.
    let skipper = component(
        "com.example.Skipper",
        "1.0.0",
        json!({
            "Install": { "Script": "echo install >> steps.txt", "Skipif": format!("exists {flag}") },
            "Run": {
                "Script": "echo run >> steps.txt; exec sleep 600",
                "Skipif": "onpath no-such-command-on-any-path",
            },
        }),
    );
    // `!exists` of a file that exists does not hold: Install runs; `onpath sh` holds: Run
    // is skipped, and the component, with nothing left to run, finishes.
    let negated = component(
        "com.example.Negated",
        "1.0.0",
        json!({
            "Install": { "Script": "echo install >> steps.txt", "Skipif": format!("!exists {flag}") },
            "Run": { "Script": "echo run >> steps.txt; exec sleep 600", "Skipif": "onpath sh" },
        }),
    );
    device
        .deploy(
            &[skipper, negated],
            &[
                "-m",
                "com.example.Skipper=1.0.0",
                "-m",
                "com.example.Negated=1.0.0",
            ],
        )
        .unwrap();
    device.wait_state("com.example.Skipper", "RUNNING");
    let steps = |name: &str| lines(&device.work(name).join("steps.txt"));
    wait_for(PATIENCE, || {
        (!steps("com.example.Skipper").is_empty()).then_some(())
    })
    .expect("Skipper's Run wrote its line");
    assert_eq!(steps("com.example.Skipper"), ["run"]);
    assert_mentions(
        &device.log("com.example.Skipper"),
        &["Install skipped (Skipif)"],
    );
    device.wait_state("com.example.Negated", "FINISHED");
    assert_eq!(steps("com.example.Negated"), ["install"]);
    assert_mentions(
        &device.log("com.example.Negated"),
        &["Run skipped (Skipif)"],
    );
}
