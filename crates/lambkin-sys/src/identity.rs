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
/// First the pipes among its standard streams become the user's (see [`give_pipes`]).
///
/// Call this before [`crate::host_child`]: hooks run in the order they were added,
/// and the kernel clears the parent-death signal when the process's credentials change.
pub fn run_as(command: &mut std::process::Command, uid: u32, gid: u32, groups: &[u32]) {
    // Allocated here, in the parent: the child may not allocate between fork and exec.
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes raw system calls only (`fstat`, `fchown`, `setgroups`,
    // `setgid`, `setuid`, all async-signal-safe), on a `stat` buffer on its own stack and a
    // vector allocated before the fork (no allocation, no lock), and builds an `io::Error`
    // from errno only on failure, which allocates nothing for an OS error.
    unsafe {
        command.pre_exec(move || {
            give_pipes(uid, gid);
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

/// Gives the pipes among the calling process's standard streams (fds 0 to 2) to `uid:gid`.
///
/// The kernel makes a pipe's inode 0600, owned by whoever created it: the host, root. A child
/// that became another user still writes to fd 1 and 2, but reopening them as `/dev/stdout`
/// or `/dev/stderr` (`echo error > /dev/stderr`, `open("/dev/stderr", "w")`, which is what they
/// are for) checks that inode and fails with EACCES. Owning the pipes it was given lets it,
/// as on AWS Lambda. Only pipes: `/dev/null` or a file must never change owner. The host hands
/// a child only anonymous pipes, each made for that child. Best effort: a failure leaves the
/// streams as they were. Call it in the child, before the user changes.
pub fn give_pipes(uid: u32, gid: u32) {
    for fd in 0..=2 {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fstat` writes a `stat` into the buffer it is given, which is large enough
        // and lives on this stack frame; it is read only after `fstat` succeeded. `fchown`
        // takes plain integers. Both are async-signal-safe and allocate nothing, so this may
        // run between fork and exec.
        unsafe {
            if libc::fstat(fd, stat.as_mut_ptr()) == 0
                && stat.assume_init_ref().st_mode & libc::S_IFMT == libc::S_IFIFO
            {
                libc::fchown(fd, uid, gid);
            }
        }
    }
}

/// Makes the child join control groups before exec: it writes `0` (itself) to each of
/// `procs_files` (`cgroup.procs`), so nothing it starts can escape the group's limits, not even
/// a process forked in the moment after exec. Call this before [`run_as`]: the files are
/// root's, and once the child has become another user it may no longer write them.
pub fn join_cgroups(
    command: &mut std::process::Command,
    procs_files: &[std::path::PathBuf],
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // Allocated here, in the parent: the child may not allocate between fork and exec.
    let paths = procs_files
        .iter()
        .map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes only `open`, `write` and `close` calls (all
    // async-signal-safe) on C strings and a byte string prepared before the fork (no
    // allocation, no lock), and builds an `io::Error` from errno only on failure, which
    // allocates nothing for an OS error.
    unsafe {
        command.pre_exec(move || {
            for path in &paths {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
            Ok(())
        });
    }
    Ok(())
}
