//! GreengrassContainer isolation, against the real binary: a Lambda component deployed with
//! `containerMode: GreengrassContainer` sees only its own processes, writes only `/tmp` and its
//! rw volumes, reads its ro volume, opens only the devices it was given; a function that
//! allocates past its `memorySize` is stopped and reported while the host carries on; bad
//! container settings fail the deployment with the reason; an on-demand function's next
//! instance starts from a sandbox init already waiting in its cgroup, which an update replaces.
//!
//! Containers need root (namespaces, mounts, cgroups): elsewhere each test prints
//! "skipped: <reason>" and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::{header, Host};

const HANDLER: &str = r#"
import errno, os, socket, time

def attempt(action):
    try:
        return ["ok", action()]
    except OSError as e:
        return [errno.errorcode.get(e.errno, str(e.errno)), None]

def write(path):
    def run():
        with open(path, "w") as f:
            f.write("written inside")
    return run

def read(path):
    def run():
        with open(path) as f:
            return f.read()
    return run

def connect(path):
    def run():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
    return run

def open_device(path, mode):
    def run():
        open(path, mode, buffering=0).close()
    return run

def lambda_handler(event, context):
    if "sleep_s" in event:
        time.sleep(event["sleep_s"])
        return {"slept": event["sleep_s"]}
    if "allocate_mb" in event:
        hog = bytearray(b"x") * (event["allocate_mb"] * 1024 * 1024)
        return {"allocated": len(hog)}
    if event.get("cpus"):
        with open("/proc/self/status") as f:
            return {"cpus": [l.split(":")[1].strip() for l in f
                             if l.startswith("Cpus_allowed_list")][0]}
    if event.get("look_only"):
        # Nothing written: a plain process would write to the host.
        return {
            "pid": os.getpid(),
            "pids": [p for p in os.listdir("/proc") if p.isdigit()],
            "env": {k: os.environ.get(k) for k in
                    ["LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_INITIALIZATION_TYPE"]},
            "stdin": os.readlink("/proc/self/fd/0"),
        }
    return {
        "pid": os.getpid(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "hostname": os.uname().nodename,
        "cwd": os.getcwd(),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "tmp": attempt(write("/tmp/scratch")),
        "code": attempt(write("/lambda/new")),
        "etc": attempt(write("/etc/lambkin-container-test")),
        "root": attempt(write("/new")),
        "rw_volume": attempt(write("/data/rw/out.txt")),
        "tmp_volume": attempt(write("/tmp/shared/out.txt")),
        "ipc_socket": attempt(connect(os.environ.get(
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "/nowhere"))),
        "ro_volume_read": attempt(read("/data/ro/in.txt")),
        "ro_volume_write": attempt(write("/data/ro/new.txt")),
        "given_device_read": attempt(open_device(event.get("device", "/dev/null"), "rb")),
        "given_device_write": attempt(open_device(event.get("device", "/dev/null"), "wb")),
        "other_device": attempt(open_device("/dev/vda", "rb")),
        "null": attempt(open_device("/dev/null", "wb")),
        "sys": os.path.exists("/sys/kernel"),
        "uid": os.getuid(),
        "caps": {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status")
                 if l.startswith("Cap")},
        "mount": attempt(lambda: os.system("mount -t tmpfs none /tmp 2>/dev/null") >> 8),
    }
"#;

/// Why containers cannot be tested here, if they cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("containers need root".into());
    }
    if let Err(e) = lambkin::cgroup::Cgroups::detect() {
        return Some(e.to_string());
    }
    None
}

macro_rules! require_containers {
    () => {
        if let Some(why) = unavailable() {
            support::skipped(&why);
            return;
        }
    };
}

struct Device {
    tmp: tempfile::TempDir,
    root: PathBuf,
    host: Host,
    deployments: usize,
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
            deployments: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Deploys a Lambda component running [`HANDLER`] with `config` merged over the seed
    /// recipe's defaults: `Ok(stdout)` or `Err(stderr)`.
    fn deploy(&mut self, name: &str, config: Value) -> Result<String, String> {
        self.deploy_with(name, config, &[])
    }

    /// [`Device::deploy`] with more arguments for `lambkin deploy` (`--run-with`).
    fn deploy_with(&mut self, name: &str, config: Value, args: &[&str]) -> Result<String, String> {
        self.deployments += 1;
        let recipe = support::lambda_component(
            self.tmp.path(),
            name,
            &[("lambda_function.py", HANDLER, 0o644)],
            config,
        );
        let artifacts = self.path("artifacts");
        let recipes = self.path(&format!("recipes-{}", self.deployments));
        std::fs::create_dir_all(&recipes).unwrap();
        std::fs::write(
            recipes.join(format!("{name}-1.0.0.json")),
            serde_json::to_vec(&recipe).unwrap(),
        )
        .unwrap();
        let merge = format!("{name}=1.0.0");
        let args = [&["-m", merge.as_str()], args].concat();
        let out = support::deploy_dir(&self.root, &recipes, Some(&artifacts), &args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
        }
    }
}

/// A device node under `/dev` with the numbers of one that root opens without any capability
/// (the runtime holds none; `/dev/kmsg`, say, needs CAP_SYSLOG where dmesg_restrict is set),
/// owned by root and the group `disk`, mode 0660: a device the function's user reaches only
/// through that group. Removed when dropped.
struct GroupDevice(PathBuf);

impl GroupDevice {
    fn create() -> GroupDevice {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let model = ["/dev/loop-control", "/dev/fuse", "/dev/kvm"]
            .into_iter()
            .find_map(|d| {
                std::fs::metadata(d)
                    .ok()
                    .filter(|m| m.file_type().is_char_device())
            })
            .expect("a character device to copy");
        let (major, minor) = (
            nix::sys::stat::major(model.rdev()),
            nix::sys::stat::minor(model.rdev()),
        );
        let path = PathBuf::from(format!("/dev/lambkin-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let made = Command::new("mknod")
            .args(["-m", "0660"])
            .arg(&path)
            .args(["c", &major.to_string(), &minor.to_string()])
            .status()
            .unwrap();
        assert!(made.success(), "mknod {}", path.display());
        let disk = nix::unistd::Group::from_name("disk")
            .unwrap()
            .expect("group disk");
        std::os::unix::fs::chown(&path, Some(0), Some(disk.gid.as_raw())).unwrap();
        GroupDevice(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for GroupDevice {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn body(reply: &support::HttpReply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&reply.body)))
}

fn outcome(result: &Value, key: &str) -> String {
    result[key][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_sees_its_own_processes_and_only_the_files_and_devices_it_was_given() {
    require_containers!();
    let mut device = Device::start();
    let ro = device.path("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("in.txt"), "from the host").unwrap();
    // The function runs as the default user: the directories it writes are given to it.
    let rw = support::dir_for_components(device.tmp.path(), "rw");
    let shared = support::dir_for_components(device.tmp.path(), "shared");
    // A device its group may use, as a serial port is `dialout`'s: `addGroupOwner` gives the
    // function that group.
    let device_node = GroupDevice::create();
    let given = device_node.path();
    let config = json!({
        "containerMode": "GreengrassContainer",
        "containerParams": {
            "memorySize": 65536.0,
            "mountROSysfs": false,
            "volumes": {
                "0": {"sourcePath": ro, "destinationPath": "/data/ro", "permission": "ro", "addGroupOwner": false},
                "1": {"sourcePath": rw, "destinationPath": "/data/rw", "permission": "rw", "addGroupOwner": false},
                // Under the private /tmp: mounted on top of it, not hidden by it.
                "2": {"sourcePath": shared, "destinationPath": "/tmp/shared", "permission": "rw", "addGroupOwner": false}
            },
            "devices": {"0": {"path": given, "permission": "ro", "addGroupOwner": true}}
        }
    });
    let out = device
        .deploy("com.example.Contained", config.clone())
        .unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");

    let reply = device
        .host
        .invoke("com.example.Contained", &json!({ "device": given }))
        .await;
    let result = body(&reply);
    assert_eq!(reply.status, 200, "{result}");
    assert_eq!(header(&reply, "x-amz-function-error"), None, "{result}");
    // Its own PID namespace: the init and the runtime, nothing of the host's.
    assert_eq!(result["pid"], 2, "{result}");
    assert_eq!(result["pids"], json!([1, 2]), "{result}");
    assert_eq!(result["hostname"], "com.example.Contained");
    assert_eq!(result["cwd"], "/lambda");
    assert_eq!(result["task_root"], "/lambda");
    // Writable: /tmp and the rw volume only.
    assert_eq!(outcome(&result, "tmp"), "ok", "{result}");
    assert_eq!(outcome(&result, "rw_volume"), "ok", "{result}");
    assert_eq!(
        std::fs::read_to_string(rw.join("out.txt")).unwrap(),
        "written inside"
    );
    assert_eq!(outcome(&result, "tmp_volume"), "ok", "{result}");
    // The host's IPC socket, at the path its environment names, though the root is under the
    // host's /tmp and the container has a /tmp of its own.
    assert!(device.root.starts_with("/tmp"), "{}", device.root.display());
    assert_eq!(outcome(&result, "ipc_socket"), "ok", "{result}");
    assert_eq!(
        std::fs::read_to_string(shared.join("out.txt")).unwrap(),
        "written inside"
    );
    for read_only in ["code", "etc", "root", "ro_volume_write"] {
        assert_eq!(
            outcome(&result, read_only),
            "EROFS",
            "{read_only}: {result}"
        );
    }
    assert!(!Path::new("/etc/lambkin-container-test").exists());
    assert!(!ro.join("new.txt").exists());
    assert_eq!(
        result["ro_volume_read"],
        json!(["ok", "from the host"]),
        "{result}"
    );
    // Devices: the standard ones, the given one with its permission, no other.
    assert_eq!(outcome(&result, "null"), "ok", "{result}");
    assert_eq!(outcome(&result, "given_device_read"), "ok", "{result}");
    // A read-only device refuses writers (the devices cgroup: a read-only mount does not
    // stop writes to a device node).
    assert_eq!(outcome(&result, "given_device_write"), "EPERM", "{result}");
    assert_eq!(outcome(&result, "other_device"), "ENOENT", "{result}");
    assert_eq!(result["sys"], false, "/sys only with mountROSysfs");
    // It runs as the default user, holding no capability.
    assert_eq!(
        result["uid"],
        json!(support::default_user().unwrap().0),
        "{result}"
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(result["caps"][set], "0000000000000000", "{set}: {result}");
    }
    assert_ne!(result["mount"], json!(["ok", 0]), "{result}");

    // Even a function its deployment runs as root holds no capability inside: it cannot
    // mount, and nothing it execs regains any.
    let out = device
        .deploy_with(
            "com.example.RootInside",
            config,
            &["--run-with", "com.example.RootInside:posixUser=root"],
        )
        .unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");
    let reply = device
        .host
        .invoke("com.example.RootInside", &json!({ "device": given }))
        .await;
    let result = body(&reply);
    assert_eq!(reply.status, 200, "{result}");
    assert_eq!(result["uid"], 0, "{result}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(result["caps"][set], "0000000000000000", "{set}: {result}");
    }
    assert_ne!(result["mount"], json!(["ok", 0]), "{result}");

    // The same function as a plain process sees the host.
    let out = device
        .deploy(
            "com.example.Plain",
            json!({"containerMode": "NoContainer", "containerParams": {"memorySize": 1}}),
        )
        .unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");
    let reply = device
        .host
        .invoke("com.example.Plain", &json!({"look_only": true}))
        .await;
    let result = body(&reply);
    assert_eq!(reply.status, 200, "{result}");
    assert_ne!(result["pid"], 2, "{result}");
    assert!(result["pids"].as_array().unwrap().len() > 2, "{result}");
}

fn host_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_past_its_memory_is_stopped_and_reported_and_the_next_invocation_works() {
    require_containers!();
    let mut device = Device::start();
    let config = json!({
        "containerMode": "GreengrassContainer",
        "containerParams": {"memorySize": 32768.0, "mountROSysfs": true}
    });
    let out = device.deploy("com.example.Hungry", config).unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");
    let reply = device.host.invoke("com.example.Hungry", &json!({})).await;
    let result = body(&reply);
    assert_eq!(reply.status, 200, "{result}");
    assert_eq!(result["sys"], true, "mountROSysfs mounts /sys");
    let rss_before = host_rss_kb(device.host.pid());

    let reply = device
        .host
        .invoke("com.example.Hungry", &json!({"allocate_mb": 200}))
        .await;
    let error = body(&reply);
    assert_eq!(reply.status, 200, "{error}");
    assert_eq!(
        header(&reply, "x-amz-function-error"),
        Some("Unhandled"),
        "{error}"
    );
    assert_eq!(error["errorType"], "Runtime.OutOfMemory", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("signal: killed"), "{message}");
    assert!(message.contains("32768 KB"), "{message}");

    let reply = device.host.invoke("com.example.Hungry", &json!({})).await;
    let result = body(&reply);
    assert_eq!(reply.status, 200, "{result}");
    assert_eq!(header(&reply, "x-amz-function-error"), None, "{result}");
    assert_eq!(result["pid"], 2);
    // The 200 MB went nowhere near the host.
    let rss_after = host_rss_kb(device.host.pid());
    assert!(
        rss_after < rss_before + 16 * 1024,
        "host RSS grew from {rss_before} kB to {rss_after} kB"
    );
    let log = std::fs::read_to_string(device.root.join("logs/com.example.Hungry.log")).unwrap();
    assert!(log.contains("out of memory"), "{log}");
}

/// Sandbox inits the host started that have not started a container yet (waiting zygotes).
#[tokio::test(flavor = "multi_thread")]
async fn a_container_answering_short_events_one_at_a_time_shares_the_host_cpu() {
    require_containers!();
    let all = support::cpus_allowed(std::process::id(), std::process::id());
    if !all.contains([',', '-']) {
        // One CPU is a machine's shape, not a missing privilege: skipped even in CI.
        eprintln!("skipped: one CPU ({all})");
        return;
    }
    let mut device = Device::start();
    let config = json!({"containerMode": "GreengrassContainer"});
    let out = device.deploy("com.example.Chatty", config).unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");
    // Placement pins only after a streak of short (< 1 ms) events: on a busy machine a streak
    // takes longer to come, so the test keeps invoking until one does, within a minute.
    let mut shared = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let reply = device
            .host
            .invoke("com.example.Chatty", &json!({"cpus": true}))
            .await;
        let result = body(&reply);
        assert_eq!(reply.status, 200, "{result}");
        let cpus = result["cpus"].as_str().unwrap().to_owned();
        if !cpus.contains([',', '-']) {
            shared = Some(cpus);
            break;
        }
    }
    let cpu = shared.expect("the containerised runtime never shared the host's CPU");
    let host = device.host.pid();
    assert_eq!(support::cpus_allowed(host, host), cpu);
}

fn waiting_inits(host: u32) -> Vec<u32> {
    support::children_of(host)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.windows(12).any(|w| w == b"sandbox-init"))
                .unwrap_or(false)
        })
        .filter(|pid| support::children_of(*pid).is_empty())
        .collect()
}

/// Processes marked as started by the host on `root`.
fn marked_processes(root: &Path) -> Vec<u32> {
    let marker = format!("LAMBKIN_STARTED_BY_ROOT={}", root.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| support::process_alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Waits for the one zygote the host keeps for the function.
fn zygote_of(host: u32) -> u32 {
    support::wait_for(std::time::Duration::from_secs(10), || {
        waiting_inits(host).first().copied()
    })
    .expect("no sandbox init waiting for the next instance")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_on_demand_container_starts_from_a_waiting_init_that_an_update_replaces() {
    require_containers!();
    let mut device = Device::start();
    let name = "com.example.Warm";
    let config = |kib: u64| {
        json!({
            "pinned": false,
            "containerMode": "GreengrassContainer",
            "containerParams": {"memorySize": kib}
        })
    };
    let out = device.deploy(name, config(160 * 1024)).unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");
    let host = device.host.pid();
    let reply = device.host.invoke(name, &json!({"look_only": true})).await;
    assert_eq!(reply.status, 200, "{}", body(&reply));

    // The first instance is busy: the second invocation needs a second instance, which starts
    // from the sandbox init that was waiting before it was asked for.
    let zygote = zygote_of(host);
    let sleep = json!({"sleep_s": 1.5});
    let (busy, second) = tokio::join!(device.host.invoke(name, &sleep), async {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        device.host.invoke(name, &json!({"allocate_mb": 96})).await
    });
    assert_eq!(body(&busy)["slept"], 1.5, "{}", body(&busy));
    assert_eq!(body(&second)["allocated"], 96 << 20, "{}", body(&second));
    assert!(
        !support::children_of(zygote).is_empty(),
        "the waiting sandbox init {zygote} did not become the second instance"
    );

    // A new configuration: the init waiting with the old limit goes, and instances get the
    // new limit, the one started from a waiting init as well as the first.
    let stale = zygote_of(host);
    assert_ne!(stale, zygote);
    let update = json!({ name: { "MERGE": config(64 * 1024) } });
    let out = support::deploy_dir(
        &device.root,
        &device.path("recipes-1"),
        Some(&device.path("artifacts")),
        &["-m", &format!("{name}=1.0.0"), "-c", &update.to_string()],
    );
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("SUCCEEDED"), "{out}");
    assert!(
        support::wait_for(std::time::Duration::from_secs(10), || {
            (!support::process_alive(stale)).then_some(())
        })
        .is_some(),
        "the sandbox init {stale} waiting with the old configuration is still there"
    );
    // The first instance of the new configuration is spawned; past its limit, it is stopped.
    let hog = json!({"allocate_mb": 96});
    let out_of_memory = |reply: &support::HttpReply| {
        let error = body(reply);
        assert_eq!(error["errorType"], "Runtime.OutOfMemory", "{error}");
        let message = error["errorMessage"].as_str().unwrap().to_owned();
        assert!(message.contains("65536 KB"), "{message}");
    };
    out_of_memory(&device.host.invoke(name, &hog).await);
    // The next one starts from a waiting init of the new configuration, with its limit.
    let waiting = zygote_of(host);
    assert_ne!(waiting, stale);
    let reply = device.host.invoke(name, &json!({"look_only": true})).await;
    let result = body(&reply);
    assert_eq!(reply.status, 200, "{result}");
    // It runs with the environment the host gave it, and nothing on its stdin.
    assert_eq!(
        result["env"],
        json!({"LAMBDA_TASK_ROOT": "/lambda", "AWS_LAMBDA_FUNCTION_NAME": name,
               "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"})
    );
    assert_eq!(result["stdin"], "/dev/null");
    assert!(
        !support::children_of(waiting).is_empty(),
        "the waiting sandbox init {waiting} did not become the instance"
    );
    out_of_memory(&device.host.invoke(name, &hog).await);

    let zygote = zygote_of(host);
    assert_eq!(device.host.stop(), Some(0));
    // Killed ones may take a moment to be gone: waited for, not timed.
    let left = support::wait_for(std::time::Duration::from_secs(10), || {
        let left = marked_processes(&device.root);
        left.is_empty().then_some(left)
    });
    assert!(
        left.is_some(),
        "left behind: {:?}",
        marked_processes(&device.root)
    );
    assert!(!support::process_alive(zygote));
}

#[test]
fn bad_container_settings_fail_the_deployment_with_the_reason() {
    require_containers!();
    let mut device = Device::start();
    let cases = [
        (
            json!({"volumes": {"0": {"sourcePath": "/surely/not/here", "destinationPath": "/data", "permission": "rw"}}}),
            "volume sourcePath \"/surely/not/here\" does not exist",
        ),
        (
            json!({"devices": {"0": {"path": "/etc/passwd", "permission": "ro"}}}),
            "device path \"/etc/passwd\" must be a path under /dev/",
        ),
        (
            json!({"memorySize": 1024.0}),
            "containerParams.memorySize must be at least 2048 KB, got 1024",
        ),
    ];
    for (i, (params, reason)) in cases.into_iter().enumerate() {
        let err = device
            .deploy(
                &format!("com.example.Bad{i}"),
                json!({"containerMode": "GreengrassContainer", "containerParams": params}),
            )
            .unwrap_err();
        assert!(err.contains(reason), "expected {reason:?} in: {err}");
    }
}

/// The cgroup directories a host with `pid` made, in the memory hierarchy (v1) or the unified
/// one (v2).
fn groups_of(pid: u32) -> Vec<String> {
    let base = std::path::Path::new(lambkin::cgroup::MOUNT_POINT);
    let parent = if base.join("memory/memory.limit_in_bytes").is_file() {
        base.join("memory/lambkin")
    } else {
        base.join("lambkin")
    };
    let prefix = format!("{pid}.");
    std::fs::read_dir(parent)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&prefix))
                .collect::<Vec<_>>()
        })
        .map(|mut names| {
            names.sort();
            names
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_host_removes_the_groups_a_killed_one_left() {
    require_containers!();
    let mut device = Device::start();
    let name = "com.example.Killed";
    let config = json!({"pinned": false, "containerMode": "GreengrassContainer"});
    let out = device.deploy(name, config).unwrap();
    assert!(out.contains("SUCCEEDED"), "{out}");
    let killed = device.host.pid();
    let reply = device.host.invoke(name, &json!({"look_only": true})).await;
    assert_eq!(reply.status, 200, "{}", body(&reply));
    zygote_of(killed);
    // An instance and the waiting init, each in its own group.
    let left = groups_of(killed);
    assert!(left.len() >= 2, "groups of host {killed}: {left:?}");

    device.host.crash();
    assert_eq!(groups_of(killed), left, "SIGKILL leaves the groups");
    device.host = Host::start(&device.root);
    let gone = support::wait_for(std::time::Duration::from_secs(10), || {
        groups_of(killed).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "still there after the restart: {:?}",
        groups_of(killed)
    );
    // The new host's function works, in groups of its own.
    let reply = device.host.invoke(name, &json!({"look_only": true})).await;
    assert_eq!(reply.status, 200, "{}", body(&reply));
    assert!(!groups_of(device.host.pid()).is_empty());
    assert_eq!(device.host.stop(), Some(0));
}
