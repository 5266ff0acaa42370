//! Where instances run: an instance answering short invocations one at a time shares the host's
//! CPU with the host's thread.
//!
//! An invocation crosses two processes, the host and the runtime, and back. When the kernel puts
//! them on different CPUs (it prefers an idle one), each hand-over wakes a CPU that was idle: an
//! inter-processor interrupt and the CPU's exit from its idle state, the largest part of a short
//! invocation's latency (on a 2-core virtual machine, 200 µs against 110 µs with both on one
//! CPU). So while the host has exactly one busy instance and that instance's previous
//! invocation was short, the host pins its own thread and that instance to the CPU the host is
//! on (on a machine that mixes big and little cores, a big one): each hand-over is then a
//! switch on one CPU, as between coroutines.
//!
//! The pinning is given back (both to every CPU the host was allowed at start) as soon as a
//! second instance gets an event, the instance's invocations stop being short (found at the
//! next event, or by [`Placement::watch`] while the event still runs), the instance exits, or
//! no event came for a second: concurrent, long or no work spreads over the CPUs as the kernel
//! sees fit. Deciding costs no system call while nothing changes; only a change pins or unpins
//! (`sched_setaffinity`, per thread).
//! Processes the host starts while its thread is pinned get the CPUs the host started with
//! ([`lambkin_sys::host_child`]), not the pin. `[lambda] colocate_sequential = false`
//! turns all of it off.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sched::{sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// An invocation shorter than this counts as short: the hand-overs are a large part of it.
pub const SHORT: Duration = Duration::from_millis(1);
/// Events handed over in a row with no other instance busy before the instance shares the
/// host's CPU: a single gap in concurrent traffic does not pin anything.
const STREAK: u32 = 4;
/// How often [`Placement::watch`] looks while something is pinned; an event still running at
/// one look and the next is not short.
const CHECK: Duration = Duration::from_millis(50);
/// No event for this long: nothing left to gain from the pin.
const QUIET: Duration = Duration::from_secs(1);

/// The host's placement of instances; one per host, shared by every function.
#[derive(Debug)]
pub struct Placement {
    state: Option<Mutex<State>>,
    /// Wakes [`Placement::watch`] when something gets pinned.
    pinned: tokio::sync::Notify,
}

#[derive(Debug)]
struct State {
    /// Every CPU the host may use, read at start: what everything pinned gets back.
    allowed: CpuSet,
    /// The allowed CPUs of the highest capacity (all of them unless the machine mixes big
    /// and little cores): the only ones the host pins to.
    fastest: CpuSet,
    /// Instances holding an event now (process ids).
    busy: Vec<u32>,
    /// Events handed over in a row while no other instance was busy.
    streak: u32,
    /// The CPU the host's thread is pinned to, if it is.
    cpu: Option<usize>,
    /// The instance pinned to that CPU: its processes as they were when it was pinned.
    shared: Option<Shared>,
    /// An instance that could not be pinned (another user's process, a narrower cpuset):
    /// not tried again.
    refused: Option<u32>,
    /// When the last event was handed over.
    last_event: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    pid: u32,
    processes: Vec<u32>,
    /// When its event in progress was handed over.
    busy_since: Option<Instant>,
}

impl Placement {
    /// Placement as configured; off when `enabled` is false, when the CPUs the host started
    /// with are unknown ([`lambkin_sys::remember_start_cpus`]: children get them back, see
    /// [`lambkin_sys::host_child`]) or when that is only one.
    pub fn new(enabled: bool) -> Self {
        let allowed = enabled
            .then(lambkin_sys::start_cpus)
            .flatten()
            .filter(|set| cpus_in(set) > 1);
        Self {
            state: allowed.map(|allowed| {
                Mutex::new(State {
                    allowed,
                    fastest: fastest(&allowed, Path::new(CPU_SYSFS)),
                    busy: Vec::new(),
                    streak: 0,
                    cpu: None,
                    shared: None,
                    refused: None,
                    last_event: None,
                })
            }),
            pinned: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Instance `pid` has just been handed an event, on the host's runtime thread; `short`:
    /// its previous invocation took less than [`SHORT`]; `processes` lists its processes (the
    /// runtime, or everything in its container).
    pub fn busy(&self, pid: u32, short: bool, processes: impl FnOnce() -> Vec<u32>) {
        let Some(mut state) = self.lock() else {
            return;
        };
        let now = Instant::now();
        state.last_event = Some(now);
        if !state.busy.contains(&pid) {
            state.busy.push(pid);
        }
        if state.busy.len() > 1 || !short || state.refused == Some(pid) {
            state.streak = 0;
            state.release();
            return;
        }
        state.streak = state.streak.saturating_add(1);
        if state.streak >= STREAK && state.shared.as_ref().is_none_or(|s| s.pid != pid) {
            let was_pinned = state.cpu.is_some();
            state.share(pid, processes());
            if !was_pinned && state.cpu.is_some() {
                self.pinned.notify_one();
            }
        }
        if let Some(shared) = state.shared.as_mut().filter(|s| s.pid == pid) {
            shared.busy_since = Some(now);
        }
    }

    /// Instance `pid` has answered (or lost) its event.
    pub fn idle(&self, pid: u32) {
        if let Some(mut state) = self.lock() {
            state.busy.retain(|p| *p != pid);
            if let Some(shared) = state.shared.as_mut().filter(|s| s.pid == pid) {
                shared.busy_since = None;
            }
        }
    }

    /// Runs for the host's life, on its runtime: while something is pinned, looks every
    /// 50 ms and gives the pins back if the pinned instance's event has run since the last
    /// look (it is not short after all) or no event came for a second. Sleeps otherwise.
    pub async fn watch(&self) {
        if self.state.is_none() {
            return;
        }
        loop {
            let pinned = self.pinned.notified();
            if self.shared().is_none() {
                pinned.await;
                continue;
            }
            tokio::time::sleep(CHECK).await;
            self.check(Instant::now());
        }
    }

    /// [`Placement::watch`]'s look at `now`.
    fn check(&self, now: Instant) {
        let Some(mut state) = self.lock() else {
            return;
        };
        let long = state
            .shared
            .as_ref()
            .and_then(|s| s.busy_since)
            .is_some_and(|since| now.saturating_duration_since(since) >= CHECK);
        let quiet = state
            .last_event
            .is_none_or(|at| now.saturating_duration_since(at) >= QUIET);
        if long || quiet {
            state.streak = 0;
            state.release();
        }
    }

    /// Instance `pid` has exited.
    pub fn gone(&self, pid: u32) {
        if let Some(mut state) = self.lock() {
            state.busy.retain(|p| *p != pid);
            if state.shared.as_ref().is_some_and(|s| s.pid == pid) {
                state.shared = None;
                // Nothing left to share the CPU with: the host's thread goes back too.
                state.release();
            }
            if state.refused == Some(pid) {
                state.refused = None;
            }
        }
    }

    /// The CPU the host's thread is pinned to and the instance pinned with it, if any.
    pub fn shared(&self) -> Option<(usize, u32)> {
        let state = self.lock()?;
        Some((state.cpu?, state.shared.as_ref()?.pid))
    }
}

impl State {
    /// Pins the calling (host) thread where it runs now, and the instance with it.
    fn share(&mut self, pid: u32, processes: Vec<u32>) {
        let cpu = match self.cpu {
            Some(cpu) => cpu,
            None => {
                let Ok(here) = sched_getcpu() else {
                    return;
                };
                // Where the host runs now, unless that is a little core of a big.LITTLE
                // machine: then the first big one.
                let Some(cpu) = std::iter::once(here)
                    .chain(0..CpuSet::count())
                    .find(|&cpu| self.fastest.is_set(cpu).unwrap_or(false))
                else {
                    return;
                };
                let mut one = CpuSet::new();
                if one.set(cpu).is_err() || sched_setaffinity(Pid::from_raw(0), &one).is_err() {
                    return;
                }
                self.cpu = Some(cpu);
                cpu
            }
        };
        if let Some(previous) = self.shared.take() {
            unpin(&previous.processes, &self.allowed);
        }
        let mut one = CpuSet::new();
        if one.set(cpu).is_err() || !pin(&processes, &one) {
            tracing::debug!(pid, cpu, "instance cannot share the host's CPU");
            unpin(&processes, &self.allowed);
            self.refused = Some(pid);
            self.release();
            return;
        }
        tracing::debug!(pid, cpu, "instance shares the host's CPU");
        self.shared = Some(Shared {
            pid,
            processes,
            busy_since: None,
        });
    }

    /// Gives the instance and the host's threads every allowed CPU again.
    fn release(&mut self) {
        if let Some(shared) = self.shared.take() {
            unpin(&shared.processes, &self.allowed);
            tracing::debug!(pid = shared.pid, "instance no longer shares the host's CPU");
        }
        if self.cpu.take().is_some() {
            // Every host thread: the pinned one, and those it started while pinned (its
            // blocking pool), which inherited the pin.
            unpin(&[std::process::id()], &self.allowed);
        }
    }
}

/// Where the kernel describes each CPU (`cpuN/cpu_capacity` on machines whose cores differ).
const CPU_SYSFS: &str = "/sys/devices/system/cpu";

/// The CPUs of `allowed` whose `cpu_capacity` under `sysfs` is the highest among them; all of
/// `allowed` when no capacity is recorded (every core the same).
fn fastest(allowed: &CpuSet, sysfs: &Path) -> CpuSet {
    let capacity = |cpu: usize| -> Option<u64> {
        std::fs::read_to_string(sysfs.join(format!("cpu{cpu}/cpu_capacity")))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let cpus: Vec<(usize, Option<u64>)> = (0..CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .map(|cpu| (cpu, capacity(cpu)))
        .collect();
    let Some(best) = cpus.iter().filter_map(|(_, c)| *c).max() else {
        return *allowed;
    };
    let mut set = CpuSet::new();
    for (cpu, c) in cpus {
        if c.is_none_or(|c| c == best) {
            let _ = set.set(cpu);
        }
    }
    set
}

fn cpus_in(set: &CpuSet) -> usize {
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .count()
}

/// The threads of `process` (`/proc/PID/task`); empty once it is gone.
fn threads(process: u32) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{process}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .map(Pid::from_raw)
        .collect()
}

/// Pins every thread of `processes` to `set`; false if any could not be pinned (a thread
/// that is gone by then does not count).
fn pin(processes: &[u32], set: &CpuSet) -> bool {
    let mut all = true;
    for &process in processes {
        for thread in threads(process) {
            match sched_setaffinity(thread, set) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(_) => all = false,
            }
        }
    }
    all
}

/// Gives every thread of `processes` the CPUs in `set` (best effort: they may be gone).
fn unpin(processes: &[u32], set: &CpuSet) {
    for &process in processes {
        for thread in threads(process) {
            let _ = sched_setaffinity(thread, set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::sched_getaffinity;

    fn cpus_of(pid: u32) -> usize {
        cpus_in(&sched_getaffinity(Pid::from_raw(pid as i32)).unwrap())
    }

    #[test]
    fn on_a_big_little_machine_only_the_big_cores_are_pinned_to() {
        let sysfs = tempfile::tempdir().unwrap();
        let mut allowed = CpuSet::new();
        for (cpu, capacity) in [(0, 446), (1, 446), (2, 1024), (3, 1024)] {
            let dir = sysfs.path().join(format!("cpu{cpu}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cpu_capacity"), format!("{capacity}\n")).unwrap();
            allowed.set(cpu).unwrap();
        }
        let fast = fastest(&allowed, sysfs.path());
        assert_eq!(
            (0..4).map(|c| fast.is_set(c).unwrap()).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        // Only the allowed ones count.
        allowed.unset(3).unwrap();
        let fast = fastest(&allowed, sysfs.path());
        assert_eq!(cpus_in(&fast), 1);
        assert!(fast.is_set(2).unwrap());
        // No capacities recorded: every allowed CPU.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(fastest(&allowed, empty.path()), allowed);
    }

    #[test]
    fn off_does_nothing() {
        let placement = Placement::new(false);
        for _ in 0..10 {
            placement.busy(1, true, Vec::new);
            placement.idle(1);
        }
        assert_eq!(placement.shared(), None);
    }

    /// A child process pinned with the calling thread after a streak of short invocations,
    /// released when a second instance gets busy and when the shared one exits. Runs on its
    /// own thread so the test harness's threads keep their CPUs.
    #[test]
    fn a_sequential_short_instance_shares_the_host_cpu_until_concurrency() {
        let host_cpus = cpus_in(&sched_getaffinity(Pid::from_raw(0)).unwrap());
        if host_cpus < 2 {
            eprintln!("skipped: one CPU");
            return;
        }
        std::thread::spawn(move || {
            lambkin_sys::remember_start_cpus();
            let placement = Placement::new(true);
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap();
            let pid = child.id();
            // Not short: never pinned.
            for _ in 0..STREAK * 2 {
                placement.busy(pid, false, || vec![pid]);
                placement.idle(pid);
            }
            assert_eq!(placement.shared(), None);
            assert_eq!(cpus_of(pid), host_cpus);
            // Short, one at a time: pinned after the streak, with this thread.
            for _ in 0..STREAK {
                placement.busy(pid, true, || vec![pid]);
                placement.idle(pid);
            }
            let (cpu, shared) = placement.shared().expect("shared after the streak");
            assert_eq!(shared, pid);
            assert_eq!(cpus_of(pid), 1);
            let mine = sched_getaffinity(Pid::from_raw(0)).unwrap();
            assert!(mine.is_set(cpu).unwrap());
            assert_eq!(cpus_in(&mine), 1);
            // A second busy instance: everything gets every CPU back.
            placement.busy(pid, true, || vec![pid]);
            placement.busy(999_999, true, Vec::new);
            assert_eq!(placement.shared(), None);
            assert_eq!(cpus_of(pid), host_cpus);
            assert_eq!(
                cpus_in(&sched_getaffinity(Pid::from_raw(0)).unwrap()),
                host_cpus
            );
            placement.idle(999_999);
            placement.idle(pid);
            // Sequential again: pinned again; the instance exits: released.
            for _ in 0..STREAK {
                placement.busy(pid, true, || vec![pid]);
                placement.idle(pid);
            }
            assert!(placement.shared().is_some());
            // An event that runs past a look of the watch: released.
            placement.busy(pid, true, || vec![pid]);
            placement.check(Instant::now() + CHECK);
            assert_eq!(placement.shared(), None);
            assert_eq!(cpus_of(pid), host_cpus);
            placement.idle(pid);
            // Pinned again, then no event for a second: released.
            for _ in 0..STREAK {
                placement.busy(pid, true, || vec![pid]);
                placement.idle(pid);
            }
            placement.check(Instant::now());
            assert!(placement.shared().is_some(), "kept while events come");
            placement.check(Instant::now() + QUIET);
            assert_eq!(placement.shared(), None);
            assert_eq!(
                cpus_in(&sched_getaffinity(Pid::from_raw(0)).unwrap()),
                host_cpus
            );
            // Pinned again; the instance exits: released.
            for _ in 0..STREAK {
                placement.busy(pid, true, || vec![pid]);
                placement.idle(pid);
            }
            assert!(placement.shared().is_some());
            child.kill().unwrap();
            child.wait().unwrap();
            placement.gone(pid);
            assert_eq!(placement.shared(), None);
            assert_eq!(
                cpus_in(&sched_getaffinity(Pid::from_raw(0)).unwrap()),
                host_cpus
            );
        })
        .join()
        .unwrap();
    }
}
