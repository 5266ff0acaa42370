//! Components run as users, against the real binary and real system users (created here with
//! `useradd`, removed with `userdel` when the test ends): each component's work directory is
//! its user's alone, as is its IPC token (another user cannot read it from the process, and
//! the socket serves a component's user with its own token only), `RequiresPrivilege` steps
//! run as root while the others run as the user, Lambda components' instances run as the user,
//! `systemResourceLimits` put every step in a cgroup (a memory hog is killed, saying why),
//! the default user comes from `[run_with_default]` (created by the host when missing), a
//! component keeps its user across deployments and host restarts, and a deployment naming a
//! user that does not exist is refused with the name.
//!
//! Changing users needs root: without it every test says it is skipped and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use lambkin_proto::eventstream::{Decoder, Header};
use lambkin_proto::ipc::{MessageFlags, MessageType, RpcMessage};
use serde_json::{json, Value};
use sha2::Digest as _;
use support::{wait_for, Host};

const PATIENCE: Duration = Duration::from_secs(30);

macro_rules! needs_root {
    () => {
        require_root!("running components as other users")
    };
}

/// A system user (and its own group) that exists while this lives.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    /// `tag` keeps names distinct between tests running at once; `extra_groups` must exist.
    fn create(tag: &str, extra_groups: &[&str]) -> TestUser {
        let name = format!("lkt{}{tag}", std::process::id());
        remove_user(&name);
        let mut cmd = Command::new("useradd");
        cmd.args(["--system", "--user-group", "--no-create-home"]);
        cmd.args(["--shell", "/usr/sbin/nologin"]);
        if !extra_groups.is_empty() {
            cmd.args(["--groups", &extra_groups.join(",")]);
        }
        let out = cmd.arg(&name).output().unwrap();
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            text(&out.stderr)
        );
        TestUser::existing(&name)
    }

    fn existing(name: &str) -> TestUser {
        let user = nix::unistd::User::from_name(name).unwrap().unwrap();
        TestUser {
            name: name.to_owned(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        remove_user(&self.name);
    }
}

fn remove_user(name: &str) {
    let _ = Command::new("userdel").arg(name).output();
    let _ = Command::new("groupdel").arg(name).output();
}

/// A group that exists while this lives.
struct TestGroup {
    name: String,
    gid: u32,
}

impl TestGroup {
    fn create(tag: &str) -> TestGroup {
        let name = format!("lkt{}{tag}", std::process::id());
        let _ = Command::new("groupdel").arg(&name).output();
        let out = Command::new("groupadd")
            .args(["--system", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "groupadd {name}: {}",
            text(&out.stderr)
        );
        let gid = nix::unistd::Group::from_name(&name)
            .unwrap()
            .unwrap()
            .gid
            .as_raw();
        TestGroup { name, gid }
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn component(name: &str, lifecycle: Value) -> Value {
    json!({
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": "1.0.0",
        "Manifests": [{ "Platform": { "os": "linux" }, "Lifecycle": lifecycle }],
    })
}

/// A host on a root that other users can reach (the temporary directory is made 0755).
struct Device {
    tmp: tempfile::TempDir,
    root: PathBuf,
    host: Host,
    recipe_dirs: usize,
}

impl Device {
    fn start() -> Device {
        Device::start_with_config("")
    }

    fn start_with_config(config: &str) -> Device {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("config.toml"), config).unwrap();
        let host = Host::start(&root);
        Device {
            tmp,
            root,
            host,
            recipe_dirs: 0,
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

    /// `lambkin deploy`: `Ok(stdout)`, or `Err(stderr)` for a failed deployment.
    fn deploy(&mut self, recipes: &[Value], args: &[&str]) -> Result<String, String> {
        self.recipe_dirs += 1;
        let dir = self
            .tmp
            .path()
            .join(format!("recipes-{}", self.recipe_dirs));
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
        match out.status.code() {
            Some(0) => Ok(text(&out.stdout)),
            Some(1) => Err(text(&out.stderr)),
            other => panic!(
                "lambkin deploy exited with {other:?}: {}",
                text(&out.stderr)
            ),
        }
    }

    fn list(&self) -> Vec<Value> {
        let out = self.cli(&["list", "--json"]);
        assert!(out.status.success(), "list: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Puts an artifact where `lambkin deploy -a` finds it.
    fn put_artifact(&self, name: &str, version: &str, file: &str, bytes: &[u8]) {
        let dir = self.tmp.path().join("artifacts").join(name).join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    }

    fn work(&self, name: &str) -> PathBuf {
        self.root.join("work").join(name)
    }

    /// Waits for `file` in `name`'s work directory to hold a complete line, and returns it.
    fn wait_line(&self, name: &str, file: &str) -> String {
        let path = self.work(name).join(file);
        wait_for(PATIENCE, || {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|s| s.ends_with('\n'))
        })
        .unwrap_or_else(|| panic!("{} was never written", path.display()))
        .trim()
        .to_owned()
    }
}

/// Runs `sh -c script` as `user` (not through the host): what that user's processes can do.
fn as_user(user: &str, script: &str) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn two_components_as_two_users_cannot_read_each_others_work_directory() {
    needs_root!();
    let alice = TestUser::create("a", &[]);
    let bob = TestUser::create("b", &[]);
    let mut device = Device::start();
    let keeper = component(
        "com.example.Keeper",
        json!({
            "Install": "echo keeper-secret > secret.txt",
            "Run": "echo $$ > pid.txt; exec sleep 600",
        }),
    );
    let snoop = component(
        "com.example.Snoop",
        json!({
            "Run": "echo $$ > pid.txt; id -u > uid.txt; \
                    if cat ../com.example.Keeper/secret.txt > stolen.txt 2> why.txt; \
                    then echo read > verdict.txt; else echo denied > verdict.txt; fi; \
                    exec sleep 600",
        }),
    );
    device
        .deploy(
            &[keeper, snoop],
            &[
                "-m",
                "com.example.Keeper=1.0.0",
                "-m",
                "com.example.Snoop=1.0.0",
                "--run-with",
                &format!("com.example.Keeper:posixUser={}", alice.name),
                "--run-with",
                &format!("com.example.Snoop:posixUser={}", bob.name),
            ],
        )
        .unwrap();

    assert_eq!(
        device.wait_line("com.example.Snoop", "uid.txt"),
        bob.uid.to_string()
    );
    assert_eq!(
        device.wait_line("com.example.Snoop", "verdict.txt"),
        "denied"
    );
    let why = std::fs::read_to_string(device.work("com.example.Snoop").join("why.txt")).unwrap();
    assert!(why.contains("Permission denied"), "{why}");
    let stolen =
        std::fs::read_to_string(device.work("com.example.Snoop").join("stolen.txt")).unwrap();
    assert!(stolen.is_empty());

    // Each work directory is its user's, 0700.
    for (name, user) in [("com.example.Keeper", &alice), ("com.example.Snoop", &bob)] {
        let meta = std::fs::metadata(device.work(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid), "{name}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{name}");
    }
    let secret = device.work("com.example.Keeper").join("secret.txt");
    let secret = secret.to_str().unwrap();
    let own = as_user(&alice.name, &format!("cat {secret}"));
    assert_eq!(
        text(&own.stdout),
        "keeper-secret\n",
        "{}",
        text(&own.stderr)
    );
    let other = as_user(&bob.name, &format!("cat {secret}"));
    assert!(!other.status.success(), "bob read alice's file");

    // Nor the host's own files, though the root is open for passing through.
    for host_file in [
        "config.toml",
        "state/lambkin.db",
        "logs/com.example.Keeper.log",
    ] {
        let path = device.root.join(host_file);
        assert!(path.exists(), "{host_file}");
        let read = as_user(&bob.name, &format!("cat {}", path.display()));
        assert!(!read.status.success(), "bob read {host_file}");
    }

    // Nor can one component's user read another's token: a process's environment is its
    // user's alone.
    let pid = device.wait_line("com.example.Keeper", "pid.txt");
    let environ = format!("/proc/{pid}/environ");
    let keeper_env = std::fs::read(&environ).unwrap();
    assert!(
        text(&keeper_env).contains("SVCUID="),
        "the component has its token"
    );
    let other = as_user(&bob.name, &format!("cat {environ}"));
    assert!(!other.status.success(), "bob read alice's token");
    assert!(text(&other.stdout).is_empty());
    let own = as_user(&alice.name, &format!("cat {environ}"));
    assert!(
        text(&own.stdout).contains("SVCUID="),
        "{}",
        text(&own.stderr)
    );

    // The IPC socket serves a component's user with its own token, and not with another.
    let snoop_pid = device.wait_line("com.example.Snoop", "pid.txt");
    let snoop_env = text(&std::fs::read(format!("/proc/{snoop_pid}/environ")).unwrap());
    let token = snoop_env
        .split('\0')
        .find_map(|v| v.strip_prefix("SVCUID="))
        .unwrap()
        .to_owned();
    let socket = device.root.join("ipc.socket");
    assert_eq!(
        ipc_connect_as(&bob.name, &socket, &token),
        MessageFlags::CONNECTION_ACCEPTED
    );
    assert_eq!(
        ipc_connect_as(&bob.name, &socket, "not-a-token"),
        MessageFlags::NONE
    );
}

/// Sends an IPC CONNECT with `token` from a process of `user` (Python's standard library, as
/// a component would) and returns the CONNECT_ACK's flags.
fn ipc_connect_as(user: &str, socket: &std::path::Path, token: &str) -> MessageFlags {
    let frame = RpcMessage::new(MessageType::Connect, MessageFlags::NONE, 0)
        .with_header(Header::string(":version", "0.1.0"))
        .with_payload(format!("{{\"authToken\": \"{token}\"}}"))
        .to_frame()
        .unwrap()
        .encode();
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let client = "import socket, sys\n\
                  s = socket.socket(socket.AF_UNIX)\n\
                  s.settimeout(20)\n\
                  s.connect(sys.argv[1])\n\
                  s.sendall(bytes.fromhex(sys.argv[2]))\n\
                  data = b''\n\
                  while len(data) < 4 or len(data) < int.from_bytes(data[:4], 'big'):\n    \
                      chunk = s.recv(4096)\n    \
                      if not chunk: break\n    \
                      data += chunk\n\
                  sys.stdout.write(data.hex())\n";
    let out = Command::new("runuser")
        .args(["-u", user, "--", "/usr/bin/python3", "-c", client])
        .arg(socket)
        .arg(hex)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reply = text(&out.stdout);
    let bytes: Vec<u8> = (0..reply.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&reply[i..i + 2], 16).unwrap())
        .collect();
    let mut decoder = Decoder::new();
    decoder.push(&bytes);
    let frame = decoder.next_frame().unwrap().expect("a whole CONNECT_ACK");
    let ack = RpcMessage::from_frame(&frame).unwrap();
    assert_eq!(ack.message_type, MessageType::ConnectAck);
    ack.flags
}

#[test]
fn a_privileged_install_runs_as_root_and_run_as_the_user_with_its_groups() {
    needs_root!();
    let extra = TestGroup::create("x");
    let carol = TestUser::create("c", &[&extra.name]);
    let mut device = Device::start();
    let recipe = component(
        "com.example.Privileged",
        json!({
            "Bootstrap": "id -u > bootstrap-uid.txt",
            "Install": { "Script": "id -u > install-uid.txt", "RequiresPrivilege": true },
            "Run": "id -u >> run-uid.txt; id -G > run-groups.txt; echo \"$HOME $USER\" > env.txt; \
                    exec sleep 600",
        }),
    );
    device
        .deploy(
            &[recipe],
            &[
                "-m",
                "com.example.Privileged=1.0.0",
                "--run-with",
                &format!("com.example.Privileged:posixUser={}", carol.name),
            ],
        )
        .unwrap();
    assert_eq!(
        device.wait_line("com.example.Privileged", "install-uid.txt"),
        "0"
    );
    assert_eq!(
        device.wait_line("com.example.Privileged", "bootstrap-uid.txt"),
        carol.uid.to_string()
    );
    assert_eq!(
        device.wait_line("com.example.Privileged", "run-uid.txt"),
        carol.uid.to_string()
    );
    let groups: Vec<u32> = device
        .wait_line("com.example.Privileged", "run-groups.txt")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(groups.contains(&carol.gid), "{groups:?}");
    assert!(
        groups.contains(&extra.gid),
        "supplementary group missing: {groups:?}"
    );
    assert!(!groups.contains(&0), "root's group kept: {groups:?}");
    let env = device.wait_line("com.example.Privileged", "env.txt");
    assert!(env.ends_with(&format!(" {}", carol.name)), "{env}");

    // The user stays through a deployment that does not mention it and a host restart.
    let other = component("com.example.Other", json!({ "Run": "exec sleep 600" }));
    device
        .deploy(&[other], &["-m", "com.example.Other=1.0.0"])
        .unwrap();
    device.host.stop();
    let runs = device.work("com.example.Privileged").join("run-uid.txt");
    std::fs::remove_file(&runs).unwrap();
    device.host = Host::start(&device.root);
    assert_eq!(
        device.wait_line("com.example.Privileged", "run-uid.txt"),
        carol.uid.to_string()
    );

    // user:group makes the group the primary one.
    let recipe = component(
        "com.example.Privileged",
        json!({ "Run": "id -g > run-gid.txt; exec sleep 600" }),
    );
    let mut recipe = recipe;
    recipe["ComponentVersion"] = json!("1.0.1");
    device
        .deploy(
            &[recipe],
            &[
                "-m",
                "com.example.Privileged=1.0.1",
                "--run-with",
                &format!(
                    "com.example.Privileged:posixUser={}:{}",
                    carol.name, extra.name
                ),
            ],
        )
        .unwrap();
    assert_eq!(
        device.wait_line("com.example.Privileged", "run-gid.txt"),
        extra.gid.to_string()
    );
    // Its files, even those a privileged step made, went to the new owner with the directory.
    let made_by_root = device
        .work("com.example.Privileged")
        .join("install-uid.txt");
    let meta = std::fs::metadata(made_by_root).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (carol.uid, extra.gid));
}

#[test]
fn an_unknown_user_or_group_is_refused_by_name() {
    needs_root!();
    let mut device = Device::start();
    let recipe = component("com.example.Nobody", json!({ "Run": "exec sleep 600" }));
    let missing = format!("lkt{}missing", std::process::id());
    let err = device
        .deploy(
            std::slice::from_ref(&recipe),
            &[
                "-m",
                "com.example.Nobody=1.0.0",
                "--run-with",
                &format!("com.example.Nobody:posixUser={missing}"),
            ],
        )
        .unwrap_err();
    assert!(
        err.contains(&format!("no such user \"{missing}\"")) && err.contains("com.example.Nobody"),
        "{err}"
    );
    assert!(device.list().is_empty(), "nothing was started");

    let err = device
        .deploy(
            std::slice::from_ref(&recipe),
            &[
                "-m",
                "com.example.Nobody=1.0.0",
                "--run-with",
                &format!("com.example.Nobody:posixUser=root:{missing}"),
            ],
        )
        .unwrap_err();
    assert!(
        err.contains(&format!("no such group \"{missing}\"")),
        "{err}"
    );

    let out = device.cli(&[
        "deploy",
        "-m",
        "com.example.Nobody=1.0.0",
        "--run-with",
        "com.example.Nobody=root",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("NAME:posixUser=USER[:GROUP]"),
        "{}",
        text(&out.stderr)
    );
    // The host is still there.
    device
        .deploy(&[recipe], &["-m", "com.example.Nobody=1.0.0"])
        .unwrap();
}

#[test]
fn the_default_user_is_created_and_used() {
    needs_root!();
    let name = format!("lkt{}d", std::process::id());
    remove_user(&name);
    let _cleanup = RemoveOnDrop(name.clone());
    let mut device =
        Device::start_with_config(&format!("[run_with_default]\nposix_user = \"{name}\"\n"));
    assert!(
        nix::unistd::User::from_name(&name).unwrap().is_some(),
        "the host created {name}"
    );
    let recipe = component(
        "com.example.Default",
        json!({ "Run": "id -un > user.txt; exec sleep 600" }),
    );
    device
        .deploy(&[recipe], &["-m", "com.example.Default=1.0.0"])
        .unwrap();
    assert_eq!(device.wait_line("com.example.Default", "user.txt"), name);
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        remove_user(&self.0);
    }
}

/// A Lambda component (the cloud's recipe shape) whose handler answers who it runs as.
fn whoami_lambda(device: &Device, name: &str, container_mode: &str) -> Value {
    let handler = "import os\n\ndef lambda_handler(event, context):\n    \
                   if event.get('hog'):\n        \
                       return len(b'x' * (256 << 20))\n    \
                   return {'uid': os.getuid(), 'gid': os.getgid(), \
                   'groups': sorted(os.getgroups()), 'cgroup': open('/proc/self/cgroup').read()}\n";
    let zip = support::zip_bytes(&[("lambda_function.py", handler, 0o644)]);
    device.put_artifact(name, "1.0.0", "lambda-artifact.zip", &zip);
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/components/seed-lambda-recipe.json"
    );
    let mut recipe: Value = serde_json::from_slice(&std::fs::read(seed).unwrap()).unwrap();
    recipe["ComponentName"] = json!(name);
    recipe["ComponentVersion"] = json!("1.0.0");
    let defaults = &mut recipe["ComponentConfiguration"]["DefaultConfiguration"];
    defaults["containerMode"] = json!(container_mode);
    defaults["pubsubTopics"] = json!({});
    let artifact = &mut recipe["Manifests"][0]["Artifacts"][0];
    artifact["Digest"] =
        json!(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip)));
    recipe
}

#[test]
fn a_lambda_component_runs_as_its_user() {
    needs_root!();
    let extra = TestGroup::create("y");
    let dave = TestUser::create("e", &[&extra.name]);
    // The interpreter must be one the user may run (not one under root's home).
    let mut device = Device::start_with_config("[lambda]\npython = \"/usr/bin/python3\"\n");
    let mut modes = vec!["NoContainer"];
    // The container path needs what the host checks before it contains anything.
    if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        modes.push("GreengrassContainer");
    } else {
        support::skipped("the GreengrassContainer case: no memory cgroup controller here");
    }
    for mode in modes {
        let name = format!("whoami-{}", mode.to_lowercase());
        let recipe = whoami_lambda(&device, &name, mode);
        device
            .deploy(
                &[recipe],
                &[
                    "-m",
                    &format!("{name}=1.0.0"),
                    "--run-with",
                    &format!("{name}:posixUser={}", dave.name),
                ],
            )
            .unwrap();
        let out = device.cli(&["invoke", &name, "{}"]);
        assert!(
            out.status.success(),
            "{mode}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{mode}: {e}: {}", text(&out.stdout)));
        assert_eq!(answer["uid"], json!(dave.uid), "{mode}: {answer}");
        assert_eq!(answer["gid"], json!(dave.gid), "{mode}: {answer}");
        let groups = answer["groups"].as_array().unwrap();
        assert!(groups.contains(&json!(extra.gid)), "{mode}: {answer}");
        assert!(!groups.contains(&json!(0)), "{mode}: {answer}");
    }
}

/// The control group directories of `group` that exist, v1 (per controller) or v2.
fn cgroup_file(group: &str, controller: &str, v1_file: &str, v2_file: &str) -> Option<String> {
    let v1 = PathBuf::from(format!(
        "/sys/fs/cgroup/{controller}/lambkin/{group}/{v1_file}"
    ));
    let v2 = PathBuf::from(format!("/sys/fs/cgroup/lambkin/{group}/{v2_file}"));
    std::fs::read_to_string(v1)
        .or_else(|_| std::fs::read_to_string(v2))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[test]
fn system_resource_limits_hold_every_step_and_a_memory_hog_is_killed() {
    needs_root!();
    require!(
        lambkin::cgroup::host().is_ok(),
        "no cgroup memory controller on this machine"
    );
    // The host default gives every component half a core.
    let mut device = Device::start_with_config("[system_resource_limits]\ncpus = 0.5\n");
    let contained = component(
        "com.example.Contained",
        json!({ "Run": "cat /proc/self/cgroup > cgroup.txt; exec sleep 600" }),
    );
    device
        .deploy(&[contained], &["-m", "com.example.Contained=1.0.0"])
        .unwrap();
    let cgroups = device.wait_line("com.example.Contained", "cgroup.txt");
    assert!(
        cgroups.contains("/lambkin/component-com.example.Contained"),
        "{cgroups}"
    );
    let quota = cgroup_file(
        "component-com.example.Contained",
        "cpu",
        "cpu.cfs_quota_us",
        "cpu.max",
    )
    .expect("the component's cpu group");
    assert!(quota == "50000" || quota == "50000 100000", "{quota}");

    // A component's own limits replace the default: 64 MB, and an Install step that fills
    // 256 MB is killed, the deployment saying why.
    let hog_script = "/usr/bin/python3 -c \"b = b'x' * (256 << 20); print(len(b))\"";
    let hog = component(
        "com.example.Hog",
        json!({ "Install": hog_script, "Run": "exec sleep 600" }),
    );
    let err = device
        .deploy(
            &[hog],
            &[
                "-m",
                "com.example.Hog=1.0.0",
                "--system-limits",
                r#"{"com.example.Hog": {"memory": 65536}}"#,
            ],
        )
        .unwrap_err();
    assert!(
        err.contains("com.example.Hog") && err.contains("memory limit of 65536 KB"),
        "{err}"
    );
    // The same step with room enough succeeds: the limit is what killed it.
    let roomy = component(
        "com.example.Roomy",
        json!({ "Install": hog_script, "Run": "exec sleep 600" }),
    );
    device
        .deploy(
            &[roomy],
            &[
                "-m",
                "com.example.Roomy=1.0.0",
                "--system-limits",
                r#"{"com.example.Roomy": {"memory": 1048576}}"#,
            ],
        )
        .unwrap();

    // Bad limits are refused by name.
    let err = device
        .deploy(
            &[],
            &[
                "-m",
                "com.example.Roomy=1.0.0",
                "--system-limits",
                r#"{"com.example.Roomy": {"cpus": -1}}"#,
            ],
        )
        .unwrap_err();
    assert!(
        err.contains("--system-limits com.example.Roomy: cpus -1"),
        "{err}"
    );

    // Stopping the host stops the components and removes their groups.
    assert_eq!(device.host.stop(), Some(0));
    for name in ["com.example.Contained", "com.example.Roomy"] {
        let group = format!("component-{name}");
        assert_eq!(
            cgroup_file(&group, "cpu", "cpu.cfs_quota_us", "cpu.max"),
            None,
            "{name}'s group outlived it"
        );
    }
}

#[test]
fn system_resource_limits_hold_a_plain_lambda_components_instances() {
    needs_root!();
    require!(
        lambkin::cgroup::host().is_ok(),
        "no cgroup memory controller on this machine"
    );
    let mut device = Device::start_with_config("[lambda]\npython = \"/usr/bin/python3\"\n");
    let name = "limited-lambda";
    let recipe = whoami_lambda(&device, name, "NoContainer");
    device
        .deploy(
            &[recipe],
            &[
                "-m",
                &format!("{name}=1.0.0"),
                "--system-limits",
                &format!(r#"{{"{name}": {{"memory": 65536}}}}"#),
            ],
        )
        .unwrap();
    let out = device.cli(&["invoke", name, "{}"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cgroup = answer["cgroup"].as_str().unwrap();
    assert!(
        cgroup.contains(&format!("/lambkin/component-{name}")),
        "{cgroup}"
    );
    let limit = cgroup_file(
        &format!("component-{name}"),
        "memory",
        "memory.limit_in_bytes",
        "memory.max",
    );
    assert_eq!(limit.as_deref(), Some("67108864"));

    // An invocation that fills 256 MB ends its instance instead of the device's memory.
    let oom_kills = || {
        let events = cgroup_file(
            &format!("component-{name}"),
            "memory",
            "memory.oom_control",
            "memory.events",
        )
        .unwrap_or_default();
        events
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no oom_kill count in {events:?}"))
    };
    let kills_before = oom_kills();
    let out = device.cli(&["invoke", name, r#"{"hog": true}"#]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    // Reported as Lambda reports it.
    assert!(
        text(&out.stdout).contains("Runtime.OutOfMemory"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Ended by the kernel for the group's memory, not for any other failure.
    assert!(
        oom_kills() > kills_before,
        "the invocation failed without a kill for memory: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The next invocation gets a fresh instance, still held.
    let out = device.cli(&["invoke", name, "{}"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Removing the component removes its group.
    device.deploy(&[], &["--remove", name]).unwrap();
    assert_eq!(
        cgroup_file(
            &format!("component-{name}"),
            "memory",
            "memory.limit_in_bytes",
            "memory.max"
        ),
        None
    );
}
