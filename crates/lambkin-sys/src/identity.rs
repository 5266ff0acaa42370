//! Running a child process as another user: supplementary groups, group and user set in the
//! child, in the one order that works.

use std::io;
use std::os::unix::process::CommandExt;

use nix::libc;

/// Makes the child drop to `uid`, `gid` and exactly the supplementary `groups` before exec.
///
/// `std`'s `CommandExt::uid/gid` cannot set supplementary groups (its `groups` is unstable),
/// and it applies uid/gid *before* any `pre_exec` hook, after which `setgroups` is refused. So
/// all three are done here, in one hook: `setgroups`, then `setgid`, then `setuid` (once the
/// user id has changed the other two are no longer permitted).
///
/// Call this before [`crate::kill_when_parent_dies`]: hooks run in the order they were added,
/// and the kernel clears the parent-death signal when the process's credentials change.
pub fn run_as(command: &mut std::process::Command, uid: u32, gid: u32, groups: &[u32]) {
    // Allocated here, in the parent: the child may not allocate between fork and exec.
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes three raw system calls (`setgroups`, `setgid`, `setuid`, all
    // async-signal-safe), reads a vector allocated before the fork (no allocation, no lock),
    // and builds an `io::Error` from errno only on failure, which allocates nothing for an OS
    // error.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setgid(gid) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(uid) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
