//! A plain (NoContainer) child's own view of one directory: a private mount namespace in
//! which a host directory is bound read-only over another, as a Lambda function sees its
//! layers at `/opt`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use nix::libc;

/// Makes the child, before exec, enter a mount namespace of its own in which `source` is
/// bound read-only (and `nosuid`, `nodev`) at `target`, an existing directory. Mounts in the
/// new namespace do not propagate back to the host's (it is made a slave of it first), and
/// the child's descendants share its view. Needs `CAP_SYS_ADMIN`: add it before
/// [`crate::run_as`], which drops it.
pub fn bind_read_only_privately(
    command: &mut std::process::Command,
    source: &Path,
    target: &Path,
) -> io::Result<()> {
    let to_c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    // Allocated here, in the parent: the child may not allocate between fork and exec.
    let (source, target, root) = (to_c(source)?, to_c(target)?, to_c(Path::new("/"))?);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. It makes only `unshare` and `mount` system calls (async-signal-safe)
    // on C strings built before the fork and null pointers where the kernel takes them (no
    // allocation, no lock), and builds an `io::Error` from errno only on failure, which
    // allocates nothing for an OS error. The namespace is the child's alone: the host's
    // mounts are not changed.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let null = std::ptr::null::<libc::c_char>();
            let mounted =
                |source: *const libc::c_char, target: *const libc::c_char, flags: libc::c_ulong| {
                    if libc::mount(source, target, null, flags, std::ptr::null()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                };
            mounted(null, root.as_ptr(), libc::MS_REC | libc::MS_SLAVE)?;
            mounted(source.as_ptr(), target.as_ptr(), libc::MS_BIND)?;
            mounted(
                null,
                target.as_ptr(),
                libc::MS_BIND
                    | libc::MS_REMOUNT
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
            )
        });
    }
    Ok(())
}
