//! The one place where Lambkin uses `unsafe` to talk to the kernel. Every block says why it is
//! sound.

use std::io;
use std::os::unix::process::CommandExt;

mod identity;

pub use identity::{join_cgroups, run_as};

pub mod container;

/// Makes the kernel send SIGKILL to the child when the host dies, even by SIGKILL, so no
/// function process outlives its host.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process:
/// spawn from a long-lived thread (a runtime worker), never from a short-lived blocking thread.
pub fn kill_when_parent_dies(command: &mut std::process::Command) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed; it makes one `prctl` call (async-signal-safe), allocates nothing and
    // touches no lock.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(io::Error::from)
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
