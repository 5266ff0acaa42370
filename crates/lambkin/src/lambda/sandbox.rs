//! GreengrassContainer isolation (`greengrass-reference.md` §1.3, §1.6): what only the device
//! can check of a Lambda component's `containerMode`/`containerParams` (their values become an
//! [`Isolation`] in `lambkin_proto::recipe::lambda`), and how an instance of a containerised
//! function is started.
//!
//! The host re-executes its own binary as `lambkin sandbox-init SPEC` ([`init_main`]). That
//! small init joins the instance's cgroup, takes new mount, PID, IPC and UTS namespaces,
//! builds the container's root and execs the runtime (`lambkin_sys::container`). The runtime
//! then sees: the host's directories read-only, its code read-only at `/lambda`, the runtime
//! client at `/runtime`, its layers read-only at `/opt`, a private `/tmp`, a minimal `/dev`
//! plus its devices, its own `/proc`, `/sys` only with `mountROSysfs`, and its volumes with
//! their permissions. The Runtime API stays on loopback: the network namespace is the host's.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use lambkin_proto::lambda::function::{Access, ContainerParams, Device, Isolation, Volume};

use super::instance_cgroup::InstanceCgroup;
use super::runtimes::Launch;
use super::scheduler::InstanceId;
use super::spec::FunctionSpec;
use super::zygote::{Zygote, ZYGOTE_READY};

/// The hidden subcommand that runs [`init_main`].
pub const INIT_COMMAND: &str = "sandbox-init";
/// Where a containerised function finds the runtime client Lambkin ships.
pub const RUNTIME_PATH: &str = "/runtime";
/// Reads a Lambda component's isolation from its configuration (its values as
/// `lambkin_proto::recipe::lambda::isolation` reads them) and checks it on this host
/// ([`check_on_host`]), naming every problem of either kind at once.
pub fn isolation_from_config(config: &Value) -> Result<Isolation, String> {
    let (isolation, problems) = lambkin_proto::recipe::lambda::isolation(config);
    let mut problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let on_host = if problems.is_empty() {
        check_on_host(&isolation)
    } else {
        // Whether containers are possible at all matters once the settings are right.
        host_problems(&isolation)
    };
    if let Err(e) = on_host {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(isolation)
    } else {
        Err(problems.join("; "))
    }
}

/// What only the device can check of a container's settings: its volumes' sources exist, its
/// devices are device nodes, and this host can make containers at all ([`can_contain`]).
pub fn check_on_host(isolation: &Isolation) -> Result<(), String> {
    host_problems(isolation)?;
    if matches!(isolation, Isolation::GreengrassContainer(_)) {
        if let Err(why) = can_contain() {
            return Err(format!(
                "containerMode GreengrassContainer is not available on this host ({why}); use NoContainer"
            ));
        }
    }
    Ok(())
}

/// The volumes and devices of a container that are not on this host.
fn host_problems(isolation: &Isolation) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Isolation::GreengrassContainer(params) = isolation else {
        return Ok(());
    };
    let mut problems = Vec::new();
    for v in &params.volumes {
        if Path::new(&v.source).is_absolute() && std::fs::symlink_metadata(&v.source).is_err() {
            problems.push(format!("volume sourcePath {:?} does not exist", v.source));
        }
    }
    for d in &params.devices {
        if !d.path.starts_with("/dev/") {
            continue; // named by the model's own validation
        }
        match std::fs::metadata(&d.path) {
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_block_device() => {}
            Ok(_) => problems.push(format!("device {:?} is not a device node", d.path)),
            Err(_) => problems.push(format!("device {:?} does not exist", d.path)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The user a containerised instance becomes: the function's user (`None`: the host's own,
/// root), with the group of every volume and device given with `addGroupOwner` added to its
/// groups (Greengrass: "add the Linux group owner of the resource to the Lambda process").
/// A path gone since the deployment was planned adds nothing.
fn container_user(spec: &FunctionSpec, params: &ContainerParams) -> Option<(u32, u32, Vec<u32>)> {
    use std::os::unix::fs::MetadataExt;
    let owners: Vec<u32> = params
        .volumes
        .iter()
        .filter(|v| v.add_group_owner)
        .map(|v| v.source.as_str())
        .chain(
            params
                .devices
                .iter()
                .filter(|d| d.add_group_owner)
                .map(|d| d.path.as_str()),
        )
        .filter_map(|path| std::fs::metadata(path).ok().map(|m| m.gid()))
        .collect();
    let (uid, gid, mut groups) = match &spec.run_as {
        Some(r) => (r.uid, r.gid, r.groups.clone()),
        None if owners.is_empty() => return None,
        None => {
            let host = crate::users::host_identity();
            let groups = nix::unistd::getgroups()
                .map(|gs| gs.into_iter().map(nix::unistd::Gid::as_raw).collect())
                .unwrap_or_else(|_| host.groups.clone());
            (host.uid, host.gid, groups)
        }
    };
    groups.extend(owners);
    groups.sort_unstable();
    groups.dedup();
    Some((uid, gid, groups))
}

/// Whether this host can make containers: root (namespaces and mounts) and a memory cgroup.
pub fn can_contain() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("containers need the host to run as root".into());
    }
    crate::cgroup::host().map(|_| ()).map_err(|e| e.to_string())
}

/// What the sandbox init is told, as JSON in its argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitSpec {
    /// `cgroup.procs` files the init writes its pid to before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    /// An empty directory the container's root is built on (inside its mount namespace).
    pub scratch: PathBuf,
    pub hostname: String,
    pub code_dir: PathBuf,
    /// The host directory mounted at [`RUNTIME_PATH`].
    pub runtime_dir: PathBuf,
    pub mount_ro_sysfs: bool,
    pub volumes: Vec<Volume>,
    pub devices: Vec<Device>,
    /// Paths as seen inside the container.
    pub program: PathBuf,
    pub args: Vec<PathBuf>,
    /// The user to become after mounting: uid, gid and supplementary groups.
    pub run_as: Option<(u32, u32, Vec<u32>)>,
    /// Join the cgroup, say so on stdout, then read the runtime's environment from stdin.
    #[serde(default)]
    pub zygote: bool,
    /// The host's IPC socket, bound at its own path when the container would not see it
    /// otherwise (a root under `/tmp`, which the container has its own of).
    #[serde(default)]
    pub ipc_socket: Option<PathBuf>,
    /// The function's merged layers, bound read-only at `/opt`.
    #[serde(default)]
    pub layers: Option<PathBuf>,
}

/// The host's IPC socket when a container does not see it through the host's directories it
/// binds read-only (the socket is reachable there: connecting needs no write access to the
/// mount), i.e. when it lies under one the container has its own of.
fn hidden_ipc_socket(host_root: &Path) -> Option<PathBuf> {
    let socket = crate::ipc::socket_path(host_root).ok()?;
    let top = socket.components().nth(1)?;
    let hidden = lambkin_sys::container::NOT_BOUND
        .iter()
        .any(|dir| top.as_os_str() == *dir);
    (hidden && socket.exists()).then_some(socket)
}

/// A host path as the container sees it: code under `/lambda`, the runtime client under
/// `/runtime`, anything else unchanged (the host's directories are there, read-only).
pub fn inside_path(path: &Path, code_dir: &Path, runtime_dir: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix(code_dir) {
        return Path::new(Isolation::CODE_PATH).join(rest);
    }
    if !runtime_dir.as_os_str().is_empty() {
        if let Ok(rest) = path.strip_prefix(runtime_dir) {
            return Path::new(RUNTIME_PATH).join(rest);
        }
    }
    path.to_owned()
}

/// The command that starts one containerised instance of `spec`: this binary (through
/// `/proc/self/exe`, which stays valid even if the file is replaced) as the sandbox init, told
/// where the code, the runtime client, the volumes and the devices are, and the program to run
/// inside. A `zygote` init joins its group, then waits for its environment (see [`Zygote`]).
pub fn command(
    spec: &FunctionSpec,
    params: &ContainerParams,
    cgroup: &InstanceCgroup,
    zygote: bool,
) -> std::io::Result<std::process::Command> {
    let scratch = spec.host_root.join("sandbox");
    std::fs::create_dir_all(&scratch)?;
    let (code_dir, launch) = (&spec.code_dir, &spec.launch);
    let runtime_dir = if launch.runtime_dir == *code_dir {
        PathBuf::new()
    } else {
        launch.runtime_dir.clone()
    };
    let inside = |p: &Path| inside_path(p, code_dir, &runtime_dir);
    let init = InitSpec {
        cgroup_procs: cgroup.procs_files(),
        scratch,
        hostname: spec.name.as_str().chars().take(64).collect(),
        code_dir: code_dir.clone(),
        runtime_dir: runtime_dir.clone(),
        mount_ro_sysfs: params.mount_ro_sysfs,
        volumes: params.volumes.clone(),
        devices: params.devices.clone(),
        program: inside(&launch.program),
        args: launch.args.iter().map(|a| inside(Path::new(a))).collect(),
        run_as: container_user(spec, params),
        zygote,
        ipc_socket: hidden_ipc_socket(&spec.host_root),
        layers: spec.layers.as_ref().map(|l| l.dir.clone()),
    };
    let init = serde_json::to_string(&init)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg(INIT_COMMAND).arg(init);
    Ok(cmd)
}

/// Starts a zygote ([`Zygote`]) for `spec` (a containerised function): its cgroup, made on a blocking
/// thread (on cgroup v1 a `mkdir` can wait behind another group's attach for an RCU grace
/// period, and the host's thread must not), then the process, forked from the host's
/// thread (the parent-death signal follows the thread that forks), marked, in its own
/// process group, killed if the host dies.
pub async fn spawn_zygote(spec: &FunctionSpec) -> Result<Zygote, String> {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Isolation::GreengrassContainer(params) = &spec.config.greengrass.isolation else {
        return Err("not a containerised function".into());
    };
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{}.{}.z{n}", std::process::id(), spec.name);
    let group_params = params.clone();
    let cgroup = tokio::task::spawn_blocking(move || InstanceCgroup::create(&name, &group_params))
        .await
        .map_err(|e| format!("cannot create the container's cgroup: {e}"))?
        .map_err(|e| format!("cannot create the container's cgroup: {e}"))?;
    let mut cmd = command(spec, params, &cgroup, true).map_err(|e| e.to_string())?;
    let (extension_output, extension_input) =
        match super::extensions::output_pipe(!spec.extensions.is_empty())
            .map_err(|e| format!("cannot make a pipe: {e}"))?
        {
            Some((read, write)) => (Some(read), Some(write)),
            None => (None, None),
        };
    // Its own environment is the allowed one and the marker; the runtime's comes later,
    // on its stdin.
    crate::child_env::start_empty(&mut cmd);
    cmd.current_dir(&spec.code_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    crate::child::prepare(
        &mut cmd,
        crate::child::Setup {
            marker: Some(&spec.host_root),
            fds: extension_input
                .map(|fd| vec![(fd, crate::lambda::extensions::OUTPUT_FD)])
                .unwrap_or_default(),
            ..crate::child::Setup::default()
        },
    )
    .map_err(|e| format!("cannot start a sandbox init: {e}"))?;
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start a sandbox init: {e}"))?;
    Ok(Zygote {
        child,
        cgroup,
        extension_output,
    })
}

/// Starts the next zygote of `spec` in the background, unless one is ready or starting, or
/// the configuration was retired. Only for on-demand containerised functions.
pub fn refill_zygote(spec: &std::sync::Arc<FunctionSpec>) {
    let wanted = matches!(
        spec.config.greengrass.isolation,
        Isolation::GreengrassContainer(_)
    ) && !spec.config.greengrass.pinned;
    if !wanted || !spec.zygote.start_one() {
        return;
    }
    let spec = spec.clone();
    tokio::spawn(async move {
        match spawn_zygote(&spec).await {
            Ok(zygote) => spec.zygote.started(zygote),
            Err(why) => {
                spec.zygote.not_started();
                tracing::warn!(function = %spec.name, "cannot prepare a sandbox init: {why}")
            }
        }
    });
}

/// `LAMBDA_TASK_ROOT` and `LAMBDA_RUNTIME_DIR` as a containerised runtime sees them.
pub fn inside_dirs(code_dir: &Path, launch: &Launch) -> (PathBuf, PathBuf) {
    (
        PathBuf::from(Isolation::CODE_PATH),
        inside_path(&launch.runtime_dir, code_dir, &launch.runtime_dir),
    )
}

/// The cgroup of a new instance of `spec`, or `None` for a plain process.
pub fn prepare(
    spec: &FunctionSpec,
    instance: InstanceId,
) -> Result<Option<InstanceCgroup>, String> {
    match &spec.config.greengrass.isolation {
        Isolation::NoContainer => Ok(None),
        Isolation::GreengrassContainer(params) => {
            let name = format!("{}.{}.{}", std::process::id(), spec.name, instance.0);
            InstanceCgroup::create(&name, params)
                .map(Some)
                .map_err(|e| format!("cannot create the container's cgroup: {e}"))
        }
    }
}

/// Runs the sandbox init when this process was started as `lambkin sandbox-init SPEC` (a
/// hidden command, dispatched before the CLI is parsed); returns its exit code if it failed.
pub fn run_if_init() -> Option<u8> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != INIT_COMMAND {
        return None;
    }
    let spec = args.next().unwrap_or_default();
    Some(u8::try_from(init_main(&spec)).unwrap_or(1))
}

/// The entry point of `lambkin sandbox-init SPEC`: sets up the container and execs the
/// runtime. Returns only on failure, with the exit code to use.
pub fn init_main(spec: &OsString) -> i32 {
    let spec: InitSpec = match serde_json::from_slice(spec.as_bytes()) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("lambkin sandbox-init: invalid spec: {e}");
            return 125;
        }
    };
    let mut cgroup_procs = spec.cgroup_procs;
    let mut env = None;
    if spec.zygote {
        match zygote_wait(&cgroup_procs) {
            Ok(entries) => env = Some(entries),
            Err(e) => {
                eprintln!("lambkin sandbox-init: {e}");
                return 126;
            }
        }
        cgroup_procs = Vec::new();
    }
    let mut binds = vec![lambkin_sys::container::Bind {
        source: spec.code_dir.clone(),
        target: PathBuf::from(Isolation::CODE_PATH),
        writable: false,
    }];
    if !spec.runtime_dir.as_os_str().is_empty() && spec.runtime_dir != spec.code_dir {
        binds.push(lambkin_sys::container::Bind {
            source: spec.runtime_dir.clone(),
            target: PathBuf::from(RUNTIME_PATH),
            writable: false,
        });
    }
    if let Some(layers) = &spec.layers {
        binds.push(lambkin_sys::container::Bind {
            source: layers.clone(),
            target: PathBuf::from(crate::lambda::layers::OPT),
            writable: false,
        });
    }
    if let Some(socket) = &spec.ipc_socket {
        binds.push(lambkin_sys::container::Bind {
            source: socket.clone(),
            target: socket.clone(),
            writable: true,
        });
    }
    binds.extend(spec.volumes.iter().map(|v| lambkin_sys::container::Bind {
        source: PathBuf::from(&v.source),
        target: PathBuf::from(&v.destination),
        writable: v.permission == Access::ReadWrite,
    }));
    let devices = spec
        .devices
        .iter()
        .map(|d| lambkin_sys::container::Bind {
            source: PathBuf::from(&d.path),
            target: PathBuf::from(&d.path),
            writable: d.permission == Access::ReadWrite,
        })
        .collect();
    let container = lambkin_sys::container::Container {
        cgroup_procs,
        scratch: spec.scratch,
        hostname: spec.hostname,
        binds,
        devices,
        mount_sysfs: spec.mount_ro_sysfs,
        workdir: PathBuf::from(Isolation::CODE_PATH),
        program: spec.program.into_os_string(),
        args: spec.args.into_iter().map(PathBuf::into_os_string).collect(),
        env,
        run_as: spec.run_as,
    };
    let e = lambkin_sys::container::run(&container);
    eprintln!("lambkin sandbox-init: {e}");
    126
}

/// A zygote's wait: joins the groups, says so, and reads the environment: to EOF, then
/// `/dev/null` is put where the runtime expects its stdin; or to an empty entry, and the rest
/// of stdin is the instance's gate, for the process that starts extensions first.
fn zygote_wait(cgroup_procs: &[PathBuf]) -> std::io::Result<Vec<OsString>> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStringExt;
    let pid = std::process::id().to_string();
    for file in cgroup_procs {
        std::fs::write(file, &pid).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot join {}: {e}", file.display()))
        })?;
    }
    std::io::stdout().write_all(&[ZYGOTE_READY])?;
    std::io::stdout().flush()?;
    let mut message = Vec::new();
    let mut chunk = [0u8; 8192];
    let gated = loop {
        // Nothing follows the end mark until the gate closes, so no read goes past it.
        if message.ends_with(&[0, 0]) || message == [0] {
            break true;
        }
        match std::io::stdin().read(&mut chunk) {
            Ok(0) => break false,
            Ok(n) => message.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if !gated {
        let null = std::fs::File::open("/dev/null")?;
        nix::unistd::dup2(null.as_raw_fd(), 0)?;
    }
    Ok(message
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| OsString::from_vec(entry.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn no_container_needs_nothing_from_the_host() {
        let config = json!({"containerMode": "NoContainer", "containerParams": {"memorySize": 1}});
        assert_eq!(isolation_from_config(&config), Ok(Isolation::NoContainer));
    }

    #[test]
    fn bad_settings_are_named() {
        let config = json!({
            "containerMode": "GreengrassContainer",
            "containerParams": {
                "memorySize": 1024.0,
                "volumes": {"0": {"sourcePath": "/surely/not/here", "destinationPath": "/data", "permission": "rw"},
                            "1": {"sourcePath": "/etc", "destinationPath": "/etc2", "permission": "rx"}},
                "devices": {"0": {"path": "/etc/passwd", "permission": "ro"},
                            "1": {"path": "/dev/null", "addGroupOwner": 1}},
            }
        });
        let err = isolation_from_config(&config).unwrap_err();
        assert!(err.contains("/surely/not/here\" does not exist"), "{err}");
        assert!(err.contains("\"rx\" is not ro or rw"), "{err}");
        assert!(
            err.contains("containerParams.devices.1.addGroupOwner 1 is not a boolean"),
            "{err}"
        );
        let err = isolation_from_config(&json!({"containerMode": "Docker"})).unwrap_err();
        assert!(err.contains("Docker"), "{err}");
    }

    #[test]
    fn paths_are_rewritten_into_the_container() {
        let code = Path::new("/r/code/abc");
        let runtime = Path::new("/r/runtimes/python");
        assert_eq!(
            inside_path(Path::new("/r/code/abc/bootstrap"), code, runtime),
            Path::new("/lambda/bootstrap")
        );
        assert_eq!(
            inside_path(Path::new("/r/runtimes/python/bootstrap.py"), code, runtime),
            Path::new("/runtime/bootstrap.py")
        );
        assert_eq!(
            inside_path(Path::new("/usr/bin/python3"), code, runtime),
            Path::new("/usr/bin/python3")
        );
    }
}
