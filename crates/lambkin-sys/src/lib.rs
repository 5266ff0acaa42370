//! The one place where Lambkin uses `unsafe` to talk to the kernel. Every block says why it is
//! sound.

use std::io;
use std::os::unix::process::CommandExt;
use std::sync::OnceLock;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

mod identity;
pub mod inotify;
mod mounts;

pub use identity::{give_pipes, join_cgroups, run_as};
pub use mounts::bind_read_only_privately;

pub mod container;

/// The CPUs this process was allowed when it started (see [`remember_start_cpus`]).
static START_CPUS: OnceLock<CpuSet> = OnceLock::new();

/// Records the CPUs this process may run on, before any thread of it is pinned (call it first
/// thing in `main`): [`start_cpus`] returns them, and [`host_child`] hands them to children.
pub fn remember_start_cpus() {
    if let Ok(cpus) = sched_getaffinity(Pid::from_raw(0)) {
        let _ = START_CPUS.set(cpus);
    }
}

/// The CPUs recorded by [`remember_start_cpus`], if it ran.
pub fn start_cpus() -> Option<CpuSet> {
    START_CPUS.get().copied()
}

/// The open-files limit (soft) this process started with, before [`raise_open_files_limit`].
static START_NOFILE: OnceLock<u64> = OnceLock::new();

/// Raises this process's soft open-files limit to its hard limit (a host holds a socket per
/// connection and per instance, and files per log), remembering the old one for children
/// ([`host_child`] gives it back: functions and components get the limit the host was given,
/// as a Lambda runtime gets a fixed one). Returns `(before, now)`.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let _ = START_NOFILE.set(soft);
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok((soft, hard.max(soft)))
}

/// What every process the host starts gets before exec, in one hook:
/// - the kernel sends it SIGKILL when the host dies, even by SIGKILL, so none outlives its
///   host. `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
///   process: spawn from a long-lived thread (a runtime worker), never from a short-lived
///   blocking thread;
/// - it runs on the CPUs the host started with ([`remember_start_cpus`]), whatever CPU the
///   thread that starts it is pinned to at that moment (a child inherits its parent thread's
///   affinity). A refusal (a narrower cpuset) leaves the inherited CPUs, which still run it;
/// - it gets the open-files limit the host started with ([`raise_open_files_limit`]).
///
/// Add it after [`run_as`]: hooks run in the order they were added, and the kernel clears the
/// parent-death signal when the process's credentials change.
pub fn host_child(command: &mut std::process::Command) {
    let cpus = start_cpus();
    let nofile = START_NOFILE.get().copied();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed; it makes one `prctl`, at most one `sched_setaffinity` (on a set copied
    // before the fork) and at most two `getrlimit`/`setrlimit` system calls, allocates nothing
    // and touches no lock.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(io::Error::from)?;
            if let Some(cpus) = &cpus {
                let _ = sched_setaffinity(Pid::from_raw(0), cpus);
            }
            if let Some(soft) = nofile {
                use nix::sys::resource::{getrlimit, setrlimit, Resource};
                if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
                    let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard);
                }
            }
            Ok(())
        });
    }
}

/// Gives the child `fd` as its file descriptor `target`, open across exec. The command keeps
/// `fd` until it is dropped: drop it once the child is spawned, so the child holds the only
/// copy.
pub fn pass_fd(command: &mut std::process::Command, fd: std::os::fd::OwnedFd, target: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: the closure runs in the forked child before exec; it makes one `dup2` or
    // `fcntl` system call, allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            let raw = fd.as_raw_fd();
            if raw == target {
                use nix::fcntl::{fcntl, FcntlArg, FdFlag};
                fcntl(raw, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
            } else {
                nix::unistd::dup2(raw, target).map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Makes glibc give freed memory back to the kernel promptly. Its defaults raise the mmap
/// threshold after a large block is freed (a function's zip arrives as tens of MB of base64),
/// after which such blocks come from a heap that is never trimmed: the host's RSS would stay at
/// its peak. A fixed threshold keeps large blocks in their own mappings.
pub fn return_freed_memory_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: nix::libc::c_int = 128 * 1024;
        // SAFETY: `mallopt` only sets allocator parameters, takes plain integers and is called
        // once, at start, before any other thread exists.
        unsafe {
            nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, THRESHOLD);
            nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, THRESHOLD);
        }
    }
}
