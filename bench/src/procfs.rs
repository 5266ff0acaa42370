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
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, start)) = stat(pid) {
            children
                .entry(ppid)
                .or_default()
                .push(ProcId { pid, start });
        }
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
