//! What `/proc` says about the processes under test: resident memory and descendants.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context};

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// The three load averages of `/proc/loadavg`, as written there.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on every Linux ABI).
pub const TICKS_PER_SECOND: u64 = 100;

/// CPU time (user + system) a process has used so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time a process has used so far, in ns: the sum over its threads of the scheduler's
/// `/proc/PID/task/TID/schedstat` run time (finer than clock ticks). `None` when it is gone.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// CPU ticks of a process and of its live descendants, each counted apart.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    own: u64,
    children: BTreeMap<u32, u64>,
}

impl CpuSnapshot {
    pub fn take(root: u32) -> Self {
        Self {
            own: cpu_ticks(root).unwrap_or(0),
            children: descendants(root)
                .into_iter()
                .filter_map(|p| cpu_ticks(p.pid).map(|t| (p.pid, t)))
                .collect(),
        }
    }

    /// Ticks used since `earlier`: (the process itself, its descendants). A descendant that
    /// started in between counts from zero; one that exited in between is lost.
    pub fn since(&self, earlier: &Self) -> (u64, u64) {
        let children = self
            .children
            .iter()
            .map(|(pid, now)| now.saturating_sub(earlier.children.get(pid).copied().unwrap_or(0)))
            .sum();
        (self.own.saturating_sub(earlier.own), children)
    }
}

/// Parent → children, for every process.
pub fn child_map() -> BTreeMap<u32, Vec<u32>> {
    let mut map: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (proc, ppid) in processes() {
        map.entry(ppid).or_default().push(proc.pid);
    }
    map
}

/// Every process there is, with its parent's pid.
fn processes() -> Vec<(ProcId, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(ppid, start)| (ProcId { pid, start }, ppid)))
        .collect()
}

/// Parent pid and start time (clock ticks since boot) from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let after = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... starttime is field 22 of the line, 19 here.
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

/// A process, named by pid and start time so a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcId {
    pub pid: u32,
    start: u64,
}

impl ProcId {
    /// Whether this very process still exists (and is not yet reaped).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(_, start)| start == self.start)
    }
}

/// Every live descendant of `root` (children, their children, ...).
pub fn descendants(root: u32) -> Vec<ProcId> {
    let mut children: BTreeMap<u32, Vec<ProcId>> = BTreeMap::new();
    for (proc, ppid) in processes() {
        children.entry(ppid).or_default().push(proc);
    }
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(*child);
            todo.push(child.pid);
        }
    }
    found
}

/// The number of live descendants of `root` and the sum of their `VmRSS`, in KiB.
pub fn descendants_rss_kib(root: u32) -> (usize, u64) {
    let procs = descendants(root);
    // A process that exits between the listing and the read counts for nothing.
    let total = procs.iter().filter_map(|p| rss_kib(p.pid).ok()).sum();
    (procs.len(), total)
}
