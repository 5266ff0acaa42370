//! What a component or function can reach on a device whose host runs as root with no
//! `[run_with_default]`, each checked the way an attacker would try it, against the real
//! binary: generic components, Lambda components (plain and in a GreengrassContainer) and
//! functions made through the Lambda API all run as `ggc_user`, never as root, and cannot
//! read the host's keys (`ROOT/state/cli.token`), its log, its configuration, `/etc/shadow` or
//! the work directory of a component of another user; a `RequiresPrivilege` step still runs as
//! root and the component's log says so; nothing of the host's own environment but the
//! allow-listed variables reaches any process the host starts; the host's own files are its
//! user's alone, also on a host that is not root, which runs everything as itself.
//!
//! Changing users needs root: without it every test says it is skipped and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);

macro_rules! needs_root {
    () => {
        require_root!("running components as other users")
    };
}

/// Whether this host can make containers (root and a memory cgroup).
fn containers_available() -> bool {
    lambkin::cgroup::Cgroups::detect().is_ok()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a Lambda handler (a Lambda component's `lambda_function.lambda_handler`, an API
/// function's `app.handler`) reports: who it runs as (asked of the kernel and of `id -u`), what
/// came of reading each of `event["read"]` and of writing into its own code, and its whole
/// environment.
const HANDLER: &str = r#"import errno, os, subprocess

def attempt(action):
    try:
        action()
        return "done"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def read(path):
    def run():
        with open(path, "rb") as f:
            f.read()
    return run

def write(path):
    def run():
        with open(path, "w") as f:
            f.write("changed")
    return run

def lambda_handler(event, context):
    return {
        "uid": os.getuid(),
        "id_u": subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip(),
        "read": {p: attempt(read(p)) for p in event.get("read", [])},
        "write_code": attempt(write(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "new.py"))),
        "env": dict(os.environ),
    }

handler = lambda_handler
"#;

/// A device whose host runs as root: a root other users can reach, as `/greengrass/v2` is.
struct Device {
    tmp: tempfile::TempDir,
    root: PathBuf,
    host: Host,
    deployments: usize,
}

impl Device {
    fn start(env: &[(&str, &str)]) -> Device {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        let host = Host::start_with_env(&root, env);
        Device {
            tmp,
            root,
            host,
            deployments: 0,
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(args)
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `lambkin deploy` of `recipes` (their artifacts already in place) with `args`.
    fn deploy(&mut self, recipes: &[Value], args: &[&str]) {
        self.deployments += 1;
        let dir = self
            .tmp
            .path()
            .join(format!("recipes-{}", self.deployments));
        std::fs::create_dir_all(&dir).unwrap();
        for r in recipes {
            let file = format!("{}.json", r["ComponentName"].as_str().unwrap());
            std::fs::write(dir.join(file), serde_json::to_vec(r).unwrap()).unwrap();
        }
        let artifacts = self.tmp.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let mut all = vec!["deploy", "-r", dir.to_str().unwrap()];
        all.extend_from_slice(&["-a", artifacts.to_str().unwrap()]);
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "deploy: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// A Lambda component running [`HANDLER`] in `container_mode`.
    fn lambda_component(&self, name: &str, container_mode: &str, pinned: bool) -> Value {
        let zip = support::zip_bytes(&[("lambda_function.py", HANDLER, 0o644)]);
        let dir = self.tmp.path().join("artifacts").join(name).join("1.0.0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lambda-artifact.zip"), &zip).unwrap();
        let seed = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/components/seed-lambda-recipe.json"
        );
        let mut recipe: Value = serde_json::from_slice(&std::fs::read(seed).unwrap()).unwrap();
        recipe["ComponentName"] = json!(name);
        recipe["ComponentVersion"] = json!("1.0.0");
        let defaults = &mut recipe["ComponentConfiguration"]["DefaultConfiguration"];
        defaults["containerMode"] = json!(container_mode);
        defaults["containerParams"]["memorySize"] = json!(65536);
        defaults["pinned"] = json!(pinned);
        defaults["pubsubTopics"] = json!({});
        recipe["Manifests"][0]["Artifacts"][0]["Digest"] =
            json!(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip)));
        recipe
    }

    fn work(&self, name: &str) -> PathBuf {
        self.root.join("work").join(name)
    }

    /// Waits for `file` in `name`'s work directory (which its scripts write elsewhere and move
    /// into place when complete) and returns it.
    fn wait_file(&self, name: &str, file: &str) -> String {
        let path = self.work(name).join(file);
        wait_for(PATIENCE, || std::fs::read_to_string(&path).ok())
            .unwrap_or_else(|| panic!("{} never appeared\n{}", path.display(), self.log(name)))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

fn component(name: &str, lifecycle: Value) -> Value {
    json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": lifecycle }],
    })
}

/// An API function running [`HANDLER`].
fn api_function(name: &str) -> Value {
    support::python_function(name, HANDLER, json!({}), BTreeMap::new())
}

/// Invokes `name` through the Invoke API with `payload` and returns its answer.
async fn invoke(device: &Device, name: &str, payload: Value) -> Value {
    let reply = device.host.invoke(name, &payload).await;
    let body = text(&reply.body);
    assert_eq!(reply.status, 200, "{name}: {body}\n{}", device.log(name));
    assert_eq!(
        support::header(&reply, "x-amz-function-error"),
        None,
        "{name}: {body}\n{}",
        device.log(name)
    );
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_default_user_nothing_runs_as_root_nor_reads_what_is_not_its_own() {
    needs_root!();
    let mut device = Device::start(&[]);
    let (ggc_uid, _) = support::default_user().unwrap();
    assert_ne!(ggc_uid, 0);
    let root = device.root.clone();
    let secret = device.work("com.example.Keeper").join("secret.txt");
    let targets = [
        root.join("state/cli.token"),
        root.join("state/lambkin.db"),
        root.join("logs/lambkin.log"),
        root.join("config.toml"),
        secret.clone(),
        PathBuf::from("/etc/shadow"),
    ];
    std::fs::write(root.join("config.toml"), "").unwrap();

    // A component its deployment runs as root keeps a secret in its work directory; another,
    // with no user of its own, tries to read it and the host's files.
    let keeper = component(
        "com.example.Keeper",
        json!({ "Install": "echo keeper-secret > secret.txt", "Run": "exec sleep 600" }),
    );
    let tries: String = targets
        .iter()
        .map(|t| {
            format!(
                "if cat '{t}' > /dev/null 2>> why.txt; then echo \"read {t}\"; \
                 else echo \"denied {t}\"; fi; ",
                t = t.display()
            )
        })
        .collect();
    let snoop = component(
        "com.example.Snoop",
        json!({
            "Run": format!(
                "id -u > uid.tmp && mv uid.tmp uid.txt; \
                 {{ {tries} }} > verdicts.tmp && mv verdicts.tmp verdicts.txt; exec sleep 600"
            ),
        }),
    );
    let plain = device.lambda_component("com.example.PlainLambda", "NoContainer", true);
    let mut recipes = vec![keeper, snoop, plain];
    let mut args = vec![
        "-m",
        "com.example.Keeper=1.0.0",
        "--run-with",
        "com.example.Keeper:posixUser=root",
        "-m",
        "com.example.Snoop=1.0.0",
        "-m",
        "com.example.PlainLambda=1.0.0",
    ];
    let contained = containers_available();
    if contained {
        recipes.push(device.lambda_component(
            "com.example.ContainedLambda",
            "GreengrassContainer",
            true,
        ));
        args.extend(["-m", "com.example.ContainedLambda=1.0.0"]);
    } else {
        support::skipped("the GreengrassContainer case: no memory cgroup here");
    }
    device.deploy(&recipes, &args);
    assert!(secret.exists());

    // The generic component: not root, and every read refused.
    assert_eq!(
        device.wait_file("com.example.Snoop", "uid.txt"),
        format!("{ggc_uid}\n")
    );
    let verdicts = device.wait_file("com.example.Snoop", "verdicts.txt");
    for t in &targets {
        assert!(
            verdicts.contains(&format!("denied {}", t.display())),
            "{verdicts}"
        );
    }
    let why = std::fs::read_to_string(device.work("com.example.Snoop").join("why.txt")).unwrap();
    assert_eq!(
        why.matches("Permission denied").count(),
        targets.len(),
        "{why}"
    );

    // A function made through the Lambda API, and the Lambda components.
    let created = device.host.create(api_function("api-function")).await;
    assert_eq!(created.status, 201, "{}", text(&created.body));
    let read: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
    let mut functions = vec!["api-function", "com.example.PlainLambda"];
    if contained {
        functions.push("com.example.ContainedLambda");
    }
    for name in functions {
        let answer = invoke(&device, name, json!({ "read": read })).await;
        assert_eq!(answer["uid"], json!(ggc_uid), "{name}: {answer}");
        assert_eq!(
            answer["id_u"],
            json!(ggc_uid.to_string()),
            "{name}: {answer}"
        );
        for t in &read {
            let outcome = answer["read"][t].as_str().unwrap();
            // A container sees the host's directories, but its own /tmp: a root under the
            // host's /tmp is not there at all.
            let hidden = name.contains("Contained") && t.starts_with("/tmp/");
            let expected = if hidden { "ENOENT" } else { "EACCES" };
            assert_eq!(outcome, expected, "{name} reading {t}: {answer}");
        }
        // Code it did not bring is its to run, not to change (a Lambda component's own
        // artifacts are its user's, as Greengrass gives them; a container mounts them
        // read-only).
        let refused = match name {
            "api-function" => Some("EACCES"),
            "com.example.ContainedLambda" => Some("EROFS"),
            _ => None,
        };
        if let Some(refused) = refused {
            assert_eq!(answer["write_code"], refused, "{name}: {answer}");
        }
    }
    // The API function's code and the runtime clients are not others' to read or change.
    let code = root.join("functions/api-function");
    let code_meta = std::fs::metadata(&code).unwrap();
    assert_eq!(code_meta.permissions().mode() & 0o7777, 0o750);
    assert_eq!(code_meta.uid(), 0);
    let client = root.join("runtimes/python/bootstrap.py");
    assert_eq!(
        std::fs::metadata(&client).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn a_privileged_step_runs_as_root_and_its_log_says_so() {
    needs_root!();
    let mut device = Device::start(&[]);
    let (ggc_uid, _) = support::default_user().unwrap();
    let recipe = component(
        "com.example.Privileged",
        json!({
            "Bootstrap": {
                "Script": "id -u > b.tmp && mv b.tmp bootstrap-uid.txt",
                "RequiresPrivilege": true,
            },
            "Install": {
                "Script": "id -u > i.tmp && mv i.tmp install-uid.txt",
                "RequiresPrivilege": true,
            },
            "Run": "id -u > r.tmp && mv r.tmp run-uid.txt; exec sleep 600",
        }),
    );
    let unprivileged = component(
        "com.example.Unprivileged",
        json!({
            "Install": "id -u > i.tmp && mv i.tmp install-uid.txt",
            "Run": "exec sleep 600",
        }),
    );
    device.deploy(
        &[recipe, unprivileged],
        &[
            "-m",
            "com.example.Privileged=1.0.0",
            "-m",
            "com.example.Unprivileged=1.0.0",
        ],
    );
    for (file, uid) in [
        ("bootstrap-uid.txt", 0),
        ("install-uid.txt", 0),
        ("run-uid.txt", ggc_uid),
    ] {
        assert_eq!(
            device.wait_file("com.example.Privileged", file),
            format!("{uid}\n"),
            "{file}"
        );
    }
    assert_eq!(
        device.wait_file("com.example.Unprivileged", "install-uid.txt"),
        format!("{ggc_uid}\n")
    );
    let log = device.log("com.example.Privileged");
    for step in ["Bootstrap", "Install"] {
        assert!(
            log.contains(&format!("{step} runs as root (RequiresPrivilege)")),
            "{log}"
        );
    }
    assert!(!log.contains("Run runs as root"), "{log}");
    let log = device.log("com.example.Unprivileged");
    assert!(!log.contains("as root"), "{log}");

    // A component its deployment runs as root: said in its log and the host's.
    let root_user = component(
        "com.example.AsRoot",
        json!({ "Run": "id -u > r.tmp && mv r.tmp run-uid.txt; exec sleep 600" }),
    );
    device.deploy(
        &[root_user],
        &[
            "-m",
            "com.example.AsRoot=1.0.0",
            "--run-with",
            "com.example.AsRoot:posixUser=root",
        ],
    );
    assert_eq!(device.wait_file("com.example.AsRoot", "run-uid.txt"), "0\n");
    let log = device.log("com.example.AsRoot");
    assert!(log.contains("runs as root (posixUser root)"), "{log}");
    let host_log = std::fs::read_to_string(device.root.join("logs/lambkin.log")).unwrap();
    assert!(
        host_log.contains("the component runs as root (posixUser root)")
            && host_log.contains("com.example.AsRoot"),
        "{host_log}"
    );
}

/// The processes carrying this root's marker (every process the host started and what they
/// started), with their environments.
fn marked_processes(root: &Path) -> Vec<(u32, String)> {
    let marker = format!("LAMBKIN_STARTED_BY_ROOT={}", root.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let environ = text(&environ);
        if environ.split('\0').any(|v| v == marker) {
            found.push((pid, environ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_own_environment_does_not_reach_components_or_functions() {
    needs_root!();
    let secrets = [
        ("AWS_SECRET_ACCESS_KEY", "leak-aws"),
        ("AWS_ACCESS_KEY_ID", "leak-id"),
        ("SOME_SECRET", "leak-some"),
        ("LAMBKIN_ADMIN_TOKEN", "leak-lambkin"),
        ("LD_PRELOAD", "/leak/preload.so"),
    ];
    let mut env = secrets.to_vec();
    env.extend([("LANG", "C.UTF-8"), ("LC_TIME", "C.UTF-8"), ("TZ", "UTC")]);
    let mut device = Device::start(&env);
    let leaked = |what: &str, seen: &str| {
        for (key, value) in secrets {
            assert!(
                !seen.contains(value) && !seen.contains(&format!("{key}=")),
                "{what} got {key}: {seen}"
            );
        }
    };

    let generic = component(
        "com.example.Env",
        json!({
            "Setenv": { "FROM_RECIPE": "yes" },
            "Run": "env > env.tmp && mv env.tmp env.txt; exec sleep 600",
        }),
    );
    let plain = device.lambda_component("com.example.EnvLambda", "NoContainer", true);
    let mut recipes = vec![generic, plain];
    let mut args = vec![
        "-m",
        "com.example.Env=1.0.0",
        "-m",
        "com.example.EnvLambda=1.0.0",
    ];
    if containers_available() {
        // On demand: the host keeps a sandbox init waiting for its next instance.
        recipes.push(device.lambda_component(
            "com.example.EnvContained",
            "GreengrassContainer",
            false,
        ));
        args.extend(["-m", "com.example.EnvContained=1.0.0"]);
    }
    device.deploy(&recipes, &args);

    // The generic component: the documented variables, the recipe's, its user's, PATH and the
    // locale; nothing else of the host's.
    let seen = device.wait_file("com.example.Env", "env.txt");
    leaked("the component", &seen);
    let vars: BTreeMap<&str, &str> = seen.lines().filter_map(|l| l.split_once('=')).collect();
    for key in [
        "PATH",
        "SVCUID",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_IOT_THING_NAME",
        "GGC_VERSION",
    ] {
        assert!(vars.contains_key(key), "{key} missing: {seen}");
    }
    assert_eq!(vars.get("FROM_RECIPE"), Some(&"yes"), "{seen}");
    assert_eq!(vars.get("LANG"), Some(&"C.UTF-8"), "{seen}");
    assert_eq!(vars.get("LC_TIME"), Some(&"C.UTF-8"), "{seen}");
    assert_eq!(vars.get("TZ"), Some(&"UTC"), "{seen}");
    assert_eq!(vars.get("USER"), Some(&"ggc_user"), "{seen}");
    assert_eq!(vars.get("LOGNAME"), Some(&"ggc_user"), "{seen}");
    assert!(vars.contains_key("HOME"), "{seen}");

    // Functions: what AWS Lambda gives a runtime, PATH and the locale; TZ is Lambda's.
    let created = device.host.create(api_function("env-function")).await;
    assert_eq!(created.status, 201, "{}", text(&created.body));
    let mut functions = vec!["env-function", "com.example.EnvLambda"];
    if containers_available() {
        functions.push("com.example.EnvContained");
    }
    for name in functions {
        let answer = invoke(&device, name, json!({})).await;
        let env = &answer["env"];
        leaked(name, &env.to_string());
        for key in [
            "PATH",
            "AWS_LAMBDA_RUNTIME_API",
            "_HANDLER",
            "LAMBDA_TASK_ROOT",
            "LAMBDA_RUNTIME_DIR",
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "AWS_EXECUTION_ENV",
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            "AWS_REGION",
        ] {
            assert!(env.get(key).is_some(), "{name}: {key} missing: {env}");
        }
        assert_eq!(env["TZ"], ":UTC", "{name}: {env}");
        assert_eq!(env["LANG"], "C.UTF-8", "{name}: {env}");
        assert_eq!(env["USER"], "ggc_user", "{name}: {env}");
        let component = name.starts_with("com.");
        assert_eq!(env.get("SVCUID").is_some(), component, "{name}: {env}");
    }

    // No process the host started (a shell, a runtime, a waiting sandbox init) holds them.
    let marked = marked_processes(&device.root);
    assert!(marked.len() >= 3, "{marked:?}");
    for (pid, environ) in marked {
        leaked(&format!("process {pid}"), &environ);
    }
}

/// Mode bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Checks that `dir` is 0700 and everything in it is 0600 (directories 0700), recursively.
fn assert_owner_only(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            assert_owner_only(&path);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_own_files_are_its_users_alone() {
    needs_root!();
    // What a permissive umask or an earlier version left open is closed at start.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::set_permissions(root.join("state"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("state/left-over"), "x").unwrap();
    std::fs::write(root.join("config.toml"), "").unwrap();
    for file in ["state/left-over", "config.toml"] {
        std::fs::set_permissions(root.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let host = Host::start(&root);
    let mut device = Device {
        tmp,
        root: root.clone(),
        host,
        deployments: 0,
    };
    // Everything that writes into state/ and logs/: a deployment with a user (run-with.json),
    // a Bootstrap step (its marker), a component's log, a function's log, the store.
    let recipe = component(
        "com.example.Files",
        json!({ "Bootstrap": "true", "Run": "echo hello; exec sleep 600" }),
    );
    device.deploy(
        &[recipe],
        &[
            "-m",
            "com.example.Files=1.0.0",
            "--run-with",
            "com.example.Files:posixUser=ggc_user",
        ],
    );
    let created = device.host.create(api_function("files-function")).await;
    assert_eq!(created.status, 201, "{}", text(&created.body));
    invoke(&device, "files-function", json!({})).await;
    for file in [
        "state/lambkin.db",
        "state/lambkin.db-wal",
        "state/cli.token",
        "state/api.addr",
        "state/run-with.json",
        "state/bootstrapped/com.example.Files",
        "logs/lambkin.log",
        "logs/com.example.Files.log",
        "logs/files-function.log",
    ] {
        assert!(root.join(file).exists(), "{file}");
    }
    assert_owner_only(&root.join("state"));
    assert_owner_only(&root.join("logs"));
    assert_eq!(mode(&root.join("config.toml")), 0o600);

    // As the components' user: nothing of it to read.
    for file in ["state/cli.token", "logs/lambkin.log", "config.toml"] {
        let path = root.join(file);
        let out = Command::new("runuser")
            .args(["-u", "ggc_user", "--", "cat"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "ggc_user read {file}");
        assert!(text(&out.stderr).contains("Permission denied"), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_is_not_root_runs_everything_as_itself_and_keeps_its_files() {
    needs_root!();
    // The host runs as an ordinary user owning its root (a developer's machine).
    let name = format!("lkt{}h", std::process::id());
    let _ = Command::new("userdel").arg(&name).output();
    let made = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--shell", "/usr/sbin/nologin"])
        .arg(&name)
        .output()
        .unwrap();
    assert!(made.status.success(), "useradd: {}", text(&made.stderr));
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).output();
            let _ = Command::new("groupdel").arg(&self.0).output();
        }
    }
    let _remove = Remove(name.clone());
    let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());

    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
    let as_user = |command: &mut Command| {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid).env("HOME", "/").current_dir("/");
    };
    let mut run = Command::new(env!("CARGO_BIN_EXE_lambkin"));
    run.args(["run", "--listen", "127.0.0.1:0", "--root"])
        .arg(&root)
        .env("LAMBKIN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    as_user(&mut run);
    let child = run.spawn().unwrap();
    let addr = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(root.join("state/api.addr")).ok()
    })
    .expect("host did not become ready");
    let host = Host {
        root: root.clone(),
        addr: addr.trim().to_owned(),
        child: Some(child),
    };

    // A component and a function: both as the host's user.
    let recipes = tmp.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    let recipe = component(
        "com.example.Mine",
        json!({ "Run": "id -u > uid.tmp && mv uid.tmp uid.txt; exec sleep 600" }),
    );
    std::fs::write(
        recipes.join("com.example.Mine.json"),
        serde_json::to_vec(&recipe).unwrap(),
    )
    .unwrap();
    let mut deploy = Command::new(env!("CARGO_BIN_EXE_lambkin"));
    deploy
        .args(["deploy", "--root"])
        .arg(&root)
        .arg("-r")
        .arg(&recipes)
        .arg("-a")
        .arg(tmp.path())
        .args(["-m", "com.example.Mine=1.0.0"])
        .stdin(Stdio::null());
    as_user(&mut deploy);
    let out = deploy.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let uid_file = root.join("work/com.example.Mine/uid.txt");
    let seen = wait_for(PATIENCE, || std::fs::read_to_string(&uid_file).ok())
        .expect("the component never wrote its uid");
    assert_eq!(seen.trim(), uid.to_string());
    let created = host.create(api_function("mine")).await;
    assert_eq!(created.status, 201, "{}", text(&created.body));
    let reply = host.invoke("mine", &json!({})).await;
    assert_eq!(reply.status, 200, "{}", text(&reply.body));
    let answer: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(answer["uid"], json!(uid), "{answer}");

    // Its own files are its alone here too.
    assert_owner_only(&root.join("state"));
    assert_owner_only(&root.join("logs"));
    assert_eq!(
        std::fs::metadata(root.join("state/cli.token"))
            .unwrap()
            .uid(),
        uid
    );
    drop(host);
}
