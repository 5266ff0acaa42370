//! Control groups: per-instance limits on memory (swap included), process count and CPU time,
//! on cgroup v1 (one hierarchy per controller) or v2 (one unified hierarchy), detected once at
//! start. Plain file writes: no `unsafe`, and the layout under a root directory is a
//! parameter, so the v2 logic is tested against a directory tree.
//!
//! Every group Lambkin makes lives under `lambkin/` in each hierarchy it uses.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the kernel mounts control groups.
pub const MOUNT_POINT: &str = "/sys/fs/cgroup";
/// The directory under each hierarchy that holds Lambkin's groups.
const PARENT: &str = "lambkin";
/// The period against which a CPU quota is measured, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup interface the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller: `memory/`, `pids/`, `cpu/` under the mount point.
    V1,
    /// One hierarchy with `cgroup.controllers` at its root.
    V2,
}

/// The limits a group enforces; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory, swap included where the kernel accounts for swap.
    pub memory_bytes: Option<u64>,
    /// The number of processes and threads.
    pub pids: Option<u64>,
    /// CPU time as a number of cores (`0.5` is half of one core).
    pub cpus: Option<f64>,
}

/// Why a group could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy with a memory controller is mounted at {0}")]
    NoMemoryController(PathBuf),
    #[error("the cgroup {controller} controller is not available at {root}")]
    MissingController {
        controller: &'static str,
        root: PathBuf,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid group name {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidName(String),
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The host's cgroup hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    version: Version,
    root: PathBuf,
}

/// The host's cgroups, detected at the first call and kept for the life of the process.
pub fn host() -> Result<&'static Cgroups, &'static CgroupError> {
    static HOST: OnceLock<Result<Cgroups, CgroupError>> = OnceLock::new();
    HOST.get_or_init(|| Cgroups::detect_at(Path::new(MOUNT_POINT)))
        .as_ref()
}

/// A group that only holds processes together (see [`Cgroups::create_tracking`]), named
/// `HOSTPID.label` so that two hosts never share one (it is killed whole, and a later start
/// removes it with the host's other stale groups). Made only where the host can: as root,
/// with cgroups; otherwise why not, for the caller to log and fall back on process groups.
pub fn tracking(label: &str) -> Result<Cgroup, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the host is not root".to_owned());
    }
    host()
        .map_err(|e| e.to_string())?
        .create_tracking(&format!("{}.{label}", std::process::id()))
        .map_err(|e| e.to_string())
}

impl Cgroups {
    /// Detects the interface mounted at [`MOUNT_POINT`].
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(Path::new(MOUNT_POINT))
    }

    /// Detects the interface mounted at `root`: v1 when a `memory/` hierarchy exists, v2 when
    /// `root` itself is a unified hierarchy offering the memory controller.
    pub fn detect_at(root: &Path) -> Result<Self, CgroupError> {
        if root.join("memory/memory.limit_in_bytes").is_file() {
            return Ok(Self {
                version: Version::V1,
                root: root.to_owned(),
            });
        }
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == "memory");
        if controllers {
            return Ok(Self {
                version: Version::V2,
                root: root.to_owned(),
            });
        }
        Err(CgroupError::NoMemoryController(root.to_owned()))
    }

    /// The interface detected.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Removes the groups hosts that are gone left behind: a host killed with SIGKILL cannot
    /// remove its instances' and zygotes' groups, which are named `HOSTPID.…`. A group goes
    /// when no process with its host's PID runs and no process is left in it (give a killed
    /// host's processes a moment to exit first, see `crate::orphans`); groups of hosts still
    /// running, on other roots, are kept. Returns how many directories were removed.
    pub fn remove_stale(&self) -> usize {
        let parents: Vec<PathBuf> = match self.version {
            Version::V1 => ["memory", "pids", "cpu", "devices"]
                .iter()
                .map(|controller| self.root.join(controller).join(PARENT))
                .collect(),
            Version::V2 => vec![self.root.join(PARENT)],
        };
        let me = std::process::id();
        let mut removed = 0;
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(host) = name
                    .to_str()
                    .and_then(|n| n.split('.').next())
                    .and_then(|pid| pid.parse::<u32>().ok())
                else {
                    continue;
                };
                if host == me || Path::new("/proc").join(host.to_string()).exists() {
                    continue;
                }
                let dir = entry.path();
                let empty = std::fs::read_to_string(dir.join("cgroup.procs"))
                    .is_ok_and(|procs| procs.trim().is_empty());
                if !empty {
                    continue;
                }
                match std::fs::remove_dir(&dir) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "stale cgroup kept")
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed cgroups a previous run of the host left behind"
            );
        }
        removed
    }

    /// A group that limits nothing and only holds a component's processes together, so that
    /// stopping it ends every process it started, those that left its process group too. On
    /// v1 it is one directory in the `pids` hierarchy (one join per process, the cheapest).
    pub fn create_tracking(&self, name: &str) -> Result<Cgroup, CgroupError> {
        match self.version {
            Version::V1 => {
                let hierarchy = self.root.join("pids");
                if !hierarchy.is_dir() {
                    return Err(CgroupError::MissingController {
                        controller: "pids",
                        root: self.root.clone(),
                    });
                }
                self.create_in(&hierarchy, name)
            }
            Version::V2 => self.create(name, Limits::default()),
        }
    }

    fn create_in(&self, hierarchy: &Path, name: &str) -> Result<Cgroup, CgroupError> {
        self.check_name(name)?;
        let dir = hierarchy.join(PARENT).join(name);
        std::fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        Ok(Cgroup {
            version: self.version,
            dirs: vec![dir],
        })
    }

    fn check_name(&self, name: &str) -> Result<(), CgroupError> {
        let valid = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(())
        } else {
            Err(CgroupError::InvalidName(name.to_owned()))
        }
    }

    /// Creates (or reuses) the group `name` with `limits`. `name` becomes one directory in
    /// each hierarchy, so it must be a single path component.
    pub fn create(&self, name: &str, limits: Limits) -> Result<Cgroup, CgroupError> {
        self.check_name(name)?;
        let group = match self.version {
            Version::V1 => {
                let mut dirs = Vec::new();
                for controller in ["memory", "pids", "cpu"] {
                    // A group joins every hierarchy it has a directory in, and each join
                    // costs: no `cpu` group without a CPU limit.
                    if controller == "cpu" && limits.cpus.is_none() {
                        continue;
                    }
                    let hierarchy = self.root.join(controller);
                    if !hierarchy.is_dir() {
                        if controller == "memory" || limits_need(controller, &limits) {
                            return Err(CgroupError::MissingController {
                                controller,
                                root: self.root.clone(),
                            });
                        }
                        continue;
                    }
                    let dir = hierarchy.join(PARENT).join(name);
                    std::fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
                    dirs.push(dir);
                }
                Cgroup {
                    version: Version::V1,
                    dirs,
                }
            }
            Version::V2 => {
                let parent = self.root.join(PARENT);
                std::fs::create_dir_all(&parent).map_err(io_error("create", &parent))?;
                // Controllers reach a group only when every ancestor delegates them.
                let wanted = available_controllers(&self.root);
                enable_controllers(&self.root, &wanted)?;
                enable_controllers(&parent, &wanted)?;
                for controller in ["memory", "pids", "cpu"] {
                    if !wanted.iter().any(|c| c == controller)
                        && (controller == "memory" || limits_need(controller, &limits))
                    {
                        return Err(CgroupError::MissingController {
                            controller,
                            root: self.root.clone(),
                        });
                    }
                }
                let dir = parent.join(name);
                std::fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
                Cgroup {
                    version: Version::V2,
                    dirs: vec![dir],
                }
            }
        };
        group.set_limits(limits)?;
        Ok(group)
    }
}

fn limits_need(controller: &str, limits: &Limits) -> bool {
    match controller {
        "pids" => limits.pids.is_some(),
        "cpu" => limits.cpus.is_some(),
        _ => limits.memory_bytes.is_some(),
    }
}

fn available_controllers(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|c| matches!(*c, "memory" | "pids" | "cpu"))
        .map(str::to_owned)
        .collect()
}

fn enable_controllers(dir: &Path, controllers: &[String]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file).unwrap_or_default();
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == c.as_str()))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::write(&file, missing.join(" ")).map_err(io_error("write", &file))
}

/// A device node a group may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// `c` (character) or `b` (block).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub writable: bool,
}

impl DeviceRule {
    /// The rule for the device node at `path`, if it is one.
    pub fn of(path: &Path, writable: bool) -> Option<Self> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let meta = std::fs::metadata(path).ok()?;
        let kind = if meta.file_type().is_char_device() {
            'c'
        } else if meta.file_type().is_block_device() {
            'b'
        } else {
            return None;
        };
        let dev = meta.rdev();
        Some(Self {
            kind,
            major: ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            minor: (dev & 0xff) | ((dev >> 12) & !0xff),
            writable,
        })
    }
}

/// One group: a directory per hierarchy (v1) or one directory (v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// The `cgroup.procs` files a process writes its pid to in order to join the group
    /// (a sandbox joins before it forks, so everything it starts is inside).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Moves the process `pid` (and its future children) into the group.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        for file in self.procs_files() {
            std::fs::write(&file, pid.to_string()).map_err(io_error("write", &file))?;
        }
        Ok(())
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(PathBuf::as_path),
            Version::V1 => self
                .dirs
                .iter()
                .find(|d| {
                    d.parent()
                        .and_then(Path::parent)
                        .and_then(Path::file_name)
                        .is_some_and(|n| n == controller)
                })
                .map(PathBuf::as_path),
        }
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let Some(dir) = self.dir(controller) else {
            return Ok(());
        };
        let path = dir.join(file);
        std::fs::write(&path, value).map_err(io_error("write", &path))
    }

    fn set_limits(&self, limits: Limits) -> Result<(), CgroupError> {
        match self.version {
            Version::V1 => {
                let memory = limits
                    .memory_bytes
                    .map_or_else(|| "-1".to_owned(), |b| b.to_string());
                // memsw must stay at or above the memory limit: lower it after, raise it first.
                let memsw = self
                    .dir("memory")
                    .map(|d| d.join("memory.memsw.limit_in_bytes"))
                    .filter(|p| p.exists());
                if let Some(path) = &memsw {
                    let _ = std::fs::write(path, "-1");
                }
                self.write("memory", "memory.limit_in_bytes", &memory)?;
                if let Some(path) = &memsw {
                    // Swap counts against the limit: a function cannot page its way past it.
                    std::fs::write(path, &memory).map_err(io_error("write", path))?;
                } else if limits.memory_bytes.is_some() {
                    // Without swap accounting, keep the group from swapping.
                    let _ = self.write("memory", "memory.swappiness", "0");
                }
                let pids = limits
                    .pids
                    .map_or_else(|| "max".to_owned(), |p| p.to_string());
                self.write("pids", "pids.max", &pids)?;
                self.write("cpu", "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                let quota = limits
                    .cpus
                    .map_or_else(|| "-1".to_owned(), |c| cpu_quota_us(c).to_string());
                self.write("cpu", "cpu.cfs_quota_us", &quota)?;
            }
            Version::V2 => {
                let memory = limits
                    .memory_bytes
                    .map_or_else(|| "max".to_owned(), |b| b.to_string());
                self.write("memory", "memory.max", &memory)?;
                if limits.memory_bytes.is_some() {
                    // Absent without swap support; then there is nothing to turn off.
                    let swap = self.dir("memory").map(|d| d.join("memory.swap.max"));
                    if let Some(path) = swap.filter(|p| p.exists()) {
                        std::fs::write(&path, "0").map_err(io_error("write", &path))?;
                    }
                }
                let pids = limits
                    .pids
                    .map_or_else(|| "max".to_owned(), |p| p.to_string());
                self.write("pids", "pids.max", &pids)?;
                let cpu = limits.cpus.map_or_else(
                    || format!("max {CPU_PERIOD_US}"),
                    |c| format!("{} {CPU_PERIOD_US}", cpu_quota_us(c)),
                );
                self.write("cpu", "cpu.max", &cpu)?;
            }
        }
        Ok(())
    }

    /// Lets the group's processes open only `allowed` device nodes (cgroup v1's devices
    /// controller; device files outside the list cannot be opened even if created). On v2
    /// this needs an eBPF program and is not done: the container's `/dev` alone limits it.
    pub fn restrict_devices(&mut self, allowed: &[DeviceRule]) -> Result<(), CgroupError> {
        if self.version != Version::V1 {
            return Ok(());
        }
        let Some(name) = self
            .dirs
            .first()
            .and_then(|d| d.file_name())
            .map(PathBuf::from)
        else {
            return Ok(());
        };
        let Some(root) = self.dirs.first().and_then(|d| d.ancestors().nth(3)) else {
            return Ok(());
        };
        let hierarchy = root.join("devices");
        if !hierarchy.is_dir() {
            return Err(CgroupError::MissingController {
                controller: "devices",
                root: root.to_owned(),
            });
        }
        let dir = hierarchy.join(PARENT).join(name);
        std::fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
        self.dirs.push(dir);
        self.write("devices", "devices.deny", "a")?;
        for rule in allowed {
            let access = if rule.writable { "rwm" } else { "rm" };
            let line = format!("{} {}:{} {access}", rule.kind, rule.major, rule.minor);
            self.write("devices", "devices.allow", &line)?;
        }
        Ok(())
    }

    /// Whether the kernel's OOM killer has killed a process of this group.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > 0
    }

    /// How many processes of the group the kernel has killed for its memory so far (0 for a
    /// group without the memory controller).
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let Some(dir) = self.dir("memory") else {
            return 0;
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    }

    /// The most memory the group has used, in bytes (v2 kernels before 5.19 do not record it).
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        std::fs::read_to_string(self.dir("memory")?.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .procs_files()
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the group until none is left (a process forking while it is
    /// killed adds its child to the group, which the next round finds); gives up after a
    /// second. Returns how many processes were killed.
    pub fn kill_all(&self) -> usize {
        let mut killed = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let pids = self.pids();
            if pids.is_empty() || std::time::Instant::now() > deadline {
                return killed;
            }
            for pid in pids {
                let Ok(raw) = i32::try_from(pid) else {
                    continue;
                };
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(raw),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    killed += 1;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Removes the group. Its processes must have exited; a group whose last process is
    /// still being torn down is retried for a moment.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            let mut attempt = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if attempt < 50 && e.raw_os_error() == Some(nix::libc::EBUSY) => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(e) => return Err(io_error("remove", dir)(e)),
                }
            }
        }
        Ok(())
    }
}

fn cpu_quota_us(cpus: f64) -> u64 {
    // The kernel refuses quotas under 1 ms.
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// A unified hierarchy as a directory tree: the files the kernel would provide.
    fn fake_v2(swap: bool) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        let group = root.path().join("lambkin/fn-1");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(root.path().join("lambkin/cgroup.subtree_control"), "").unwrap();
        for file in [
            "memory.max",
            "pids.max",
            "cpu.max",
            "cgroup.procs",
            "memory.events",
        ] {
            std::fs::write(group.join(file), "").unwrap();
        }
        if swap {
            std::fs::write(group.join("memory.swap.max"), "max").unwrap();
        }
        root
    }

    #[test]
    fn v2_is_detected_and_limits_are_written_in_its_format() {
        let root = fake_v2(true);
        let cgroups = Cgroups::detect_at(root.path()).unwrap();
        assert_eq!(cgroups.version(), Version::V2);
        let group = cgroups
            .create(
                "fn-1",
                Limits {
                    memory_bytes: Some(16 << 20),
                    pids: Some(64),
                    cpus: Some(0.5),
                },
            )
            .unwrap();
        let dir = root.path().join("lambkin/fn-1");
        assert_eq!(read(&dir.join("memory.max")), (16u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("pids.max")), "64");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        for parent in [root.path().to_owned(), root.path().join("lambkin")] {
            let delegated = read(&parent.join("cgroup.subtree_control"));
            assert_eq!(delegated, "+cpu +memory +pids", "{}", parent.display());
        }
        assert_eq!(group.procs_files(), vec![dir.join("cgroup.procs")]);
        group.add(1234).unwrap();
        assert_eq!(read(&dir.join("cgroup.procs")), "1234");
    }

    #[test]
    fn v2_unlimited_resources_say_max() {
        let root = fake_v2(false);
        let cgroups = Cgroups::detect_at(root.path()).unwrap();
        cgroups.create("fn-1", Limits::default()).unwrap();
        let dir = root.path().join("lambkin/fn-1");
        assert_eq!(read(&dir.join("memory.max")), "max");
        assert_eq!(read(&dir.join("pids.max")), "max");
        assert_eq!(read(&dir.join("cpu.max")), "max 100000");
    }

    #[test]
    fn v2_oom_kills_are_read_from_memory_events() {
        let root = fake_v2(false);
        let cgroups = Cgroups::detect_at(root.path()).unwrap();
        let group = cgroups.create("fn-1", Limits::default()).unwrap();
        let events = root.path().join("lambkin/fn-1/memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n").unwrap();
        assert!(!group.oom_killed());
        std::fs::write(&events, "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n").unwrap();
        assert!(group.oom_killed());
    }

    #[test]
    fn a_tree_without_a_memory_controller_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "pids\n").unwrap();
        assert!(matches!(
            Cgroups::detect_at(root.path()),
            Err(CgroupError::NoMemoryController(_))
        ));
    }

    #[test]
    fn names_are_one_path_component() {
        let root = fake_v2(false);
        let cgroups = Cgroups::detect_at(root.path()).unwrap();
        for bad in ["", "..", "a/b", "x y"] {
            assert!(
                matches!(
                    cgroups.create(bad, Limits::default()),
                    Err(CgroupError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }

    /// The host's real hierarchy when there is one and this process may write it; says why
    /// the test is skipped otherwise.
    fn writable_host_hierarchy() -> Option<Cgroups> {
        // As the integration tests' `support::skipped`: `.ci/run` sets the variable where
        // these tests must run, and a skip there is a failure.
        let skipped = |why: &str| {
            if std::env::var("LAMBKIN_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1") {
                panic!("skipped where it must run (LAMBKIN_REQUIRE_ROOT_TESTS=1): {why}");
            }
            eprintln!("skipped: {why}");
        };
        let cgroups = match Cgroups::detect() {
            Ok(c) => c,
            Err(e) => {
                skipped(&e.to_string());
                return None;
            }
        };
        if !nix::unistd::geteuid().is_root() {
            skipped("creating cgroups needs root");
            return None;
        }
        Some(cgroups)
    }

    /// A shell in `group` that waits for a line on stdin, then runs `script`: it is in the
    /// group before it does anything the limits count.
    fn in_group(group: &Cgroup, script: &str) -> std::process::Child {
        use std::io::Write as _;
        let mut child = std::process::Command::new("sh")
            .args(["-c", &format!("read _; {script}")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        group.add(child.id()).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        child
    }

    /// The real hierarchy, where the host has it and may write it: a process that asks for
    /// more memory than the limit is killed by the kernel and counted, and one that starts
    /// more processes than the limit allows is refused the rest.
    #[test]
    fn the_hosts_hierarchy_enforces_limits() {
        let Some(cgroups) = writable_host_hierarchy() else {
            return;
        };
        let name = format!("unit-test-{}", std::process::id());
        let group = cgroups
            .create(
                &name,
                Limits {
                    memory_bytes: Some(8 << 20),
                    pids: Some(16),
                    cpus: Some(1.0),
                },
            )
            .unwrap();
        // Whatever the test's outcome, nothing of it stays behind.
        struct Cleanup<'a>(&'a Cgroup);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                self.0.kill_all();
                let _ = self.0.remove();
            }
        }
        let cleanup = Cleanup(&group);

        // 32 MiB held in one shell variable, four times the limit.
        let hog = in_group(
            &group,
            "x=$(head -c 33554432 /dev/zero | tr '\\0' a); echo kept",
        );
        let procs = std::fs::read_to_string(&group.procs_files()[0]).unwrap();
        assert!(procs.contains(&hog.id().to_string()), "{procs}");
        let out = hog.wait_with_output().unwrap();
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("kept"),
            "32 MiB held under an 8 MiB limit: {out:?}"
        );
        assert!(group.oom_killed(), "the kernel's kill is counted: {out:?}");

        // 40 background sleeps under a limit of 16 processes: the forks past it fail.
        let forker = in_group(
            &group,
            "i=0; while [ $i -lt 40 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; echo forked",
        );
        let out = forker.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("forked") || stderr.contains("fork"),
            "40 processes started under a limit of 16: {out:?}"
        );
        assert!(group.pids().len() <= 16, "{:?}", group.pids());
        drop(cleanup);
        assert!(group.procs_files().iter().all(|f| !f.exists()));
    }

    /// A group named after a host PID that runs no more goes; this host's own group stays.
    #[test]
    fn groups_of_hosts_that_are_gone_are_removed() {
        let Some(cgroups) = writable_host_hierarchy() else {
            return;
        };
        // Above the kernel's largest pid_max (2^22): no process can have this PID.
        let gone = cgroups
            .create("4194999.unit-test.1", Limits::default())
            .unwrap();
        let mine_name = format!("{}.unit-test.1", std::process::id());
        let mine = cgroups.create(&mine_name, Limits::default()).unwrap();
        assert!(cgroups.remove_stale() >= 1);
        assert!(gone.procs_files().iter().all(|f| !f.exists()));
        assert!(mine.procs_files().iter().all(|f| f.exists()));
        mine.remove().unwrap();
    }
}
