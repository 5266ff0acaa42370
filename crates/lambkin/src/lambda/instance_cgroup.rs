//! A containerised instance's control group: memory (swap included), a pids limit, on v1
//! its devices; removed when dropped.

use std::path::{Path, PathBuf};

use lambkin_proto::lambda::function::{Access, ContainerParams};

use crate::cgroup::{self, Cgroup, DeviceRule, Limits};

/// The most processes a container may hold.
pub const PIDS_LIMIT: u64 = 1024;

/// A per-instance cgroup for a containerised function, removed when dropped.
#[derive(Debug)]
pub struct InstanceCgroup {
    group: Cgroup,
    limit_kib: u64,
}

impl InstanceCgroup {
    /// Creates the group `name` limited to `params.memory_size_kib` and [`PIDS_LIMIT`].
    pub fn create(name: &str, params: &ContainerParams) -> Result<Self, String> {
        let cgroups = cgroup::host().map_err(|e| e.to_string())?;
        let group = cgroups
            .create(
                name,
                Limits {
                    memory_bytes: Some(params.memory_size_kib.saturating_mul(1024)),
                    pids: Some(PIDS_LIMIT),
                    cpus: None,
                },
            )
            .map_err(|e| e.to_string())?;
        let mut group = scopeguard(group);
        let standard = lambkin_sys::container::STANDARD_DEVICES
            .iter()
            .filter_map(|name| DeviceRule::of(&Path::new("/dev").join(name), true));
        let given = params
            .devices
            .iter()
            .filter_map(|d| DeviceRule::of(Path::new(&d.path), d.permission == Access::ReadWrite));
        let rules: Vec<DeviceRule> = standard.chain(given).collect();
        if let Err(e) = group.0.restrict_devices(&rules) {
            return Err(e.to_string());
        }
        let group = group.take();
        Ok(Self {
            group,
            limit_kib: params.memory_size_kib,
        })
    }

    /// The group's `cgroup.procs` files.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.group.procs_files()
    }

    /// Whether the kernel killed a process of this instance for memory.
    pub fn oom_killed(&self) -> bool {
        self.group.oom_killed()
    }

    /// The processes in the group now (the sandbox's monitor, its init, the runtime and
    /// whatever the runtime started).
    pub fn processes(&self) -> Vec<u32> {
        self.group
            .procs_files()
            .first()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .map(|procs| {
                procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The most memory the instance used, in MB.
    pub fn peak_mb(&self) -> Option<u64> {
        self.group.peak_memory_bytes().map(|b| b.div_ceil(1 << 20))
    }

    /// The limit, in KB.
    pub fn limit_kib(&self) -> u64 {
        self.limit_kib
    }
}

/// Removes a group that failed to be set up completely.
struct Unfinished(Cgroup, bool);

fn scopeguard(group: Cgroup) -> Unfinished {
    Unfinished(group, true)
}

impl Unfinished {
    fn take(mut self) -> Cgroup {
        self.1 = false;
        self.0.clone()
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.1 {
            let _ = self.0.remove();
        }
    }
}

impl Drop for InstanceCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.group.remove() {
            tracing::warn!(error = %e, "cannot remove an instance's cgroup");
        }
    }
}
