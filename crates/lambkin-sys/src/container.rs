//! A container for one function instance: new mount, PID, IPC and UTS namespaces, a root built
//! from read-only binds of the host's directories, and the runtime exec'd inside.
//!
//! [`run`] is meant for a freshly exec'd, single-threaded process (the host re-executes itself
//! as `lambkin sandbox-init`), which is what makes `fork` here sound. Three processes result:
//!
//! - the *monitor* (the host's child, outside the new PID namespace): joins the cgroup,
//!   unshares, forks, waits, and exits the way the runtime did, so the host reads the
//!   runtime's own exit status. It blocks SIGTERM/SIGINT/SIGHUP: a stop's SIGTERM is for the
//!   runtime, which gets it directly (same process group), and the monitor follows it out;
//! - the *init* (PID 1 inside): builds the root, pivots into it, forks the runtime, reaps
//!   every orphan and reports the runtime's wait status to the monitor through a pipe. When it
//!   exits, the kernel kills whatever is left in the namespace;
//! - the *runtime* (PID 2): drops to the function's user if one is set, then execs.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

/// A host path made visible inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears inside.
    pub target: PathBuf,
    /// Whether the container may write it.
    pub writable: bool,
}

/// Everything [`run`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `cgroup.procs` files the monitor joins before it forks.
    pub cgroup_procs: Vec<PathBuf>,
    /// An existing, empty host directory the root is built on (a tmpfs is mounted on it in
    /// the new mount namespace only).
    pub scratch: PathBuf,
    /// The UTS namespace's host name.
    pub hostname: String,
    /// Code, runtime client and volumes, mounted in order.
    pub binds: Vec<Bind>,
    /// Device nodes, at their paths under `/dev`.
    pub devices: Vec<Bind>,
    /// Whether to mount `/sys` (read-only).
    pub mount_sysfs: bool,
    /// The runtime's working directory, inside.
    pub workdir: PathBuf,
    /// The program to exec, as a path inside.
    pub program: OsString,
    /// Its arguments (without `argv[0]`).
    pub args: Vec<OsString>,
    /// Its whole environment as `KEY=value` entries; `None`: this process's own.
    pub env: Option<Vec<OsString>>,
    /// uid, gid and supplementary groups to take after mounting.
    pub run_as: Option<(u32, u32, Vec<u32>)>,
}

/// Top-level host entries that the container gets fresh instead of bound.
pub const NOT_BOUND: &[&str] = &["proc", "sys", "dev", "tmp", "lambda", "runtime"];
/// The host devices every container has, as every Linux program expects them.
pub const STANDARD_DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Sets the container up and execs its runtime. Returns only on failure, before the monitor
/// forked; failures after that end the process with the runtime's status or 126.
pub fn run(c: &Container) -> io::Error {
    match monitor(c) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn context(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> io::Error {
    move |e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}"))
}

fn monitor(c: &Container) -> io::Result<std::convert::Infallible> {
    let pid = std::process::id().to_string();
    for file in &c.cgroup_procs {
        std::fs::write(file, &pid).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot join {}: {e}", file.display()))
        })?;
    }
    let mut stops = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stops.add(s);
    }
    signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&stops), None)
        .map_err(context("cannot block signals"))?;
    unshare(
        CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS,
    )
    .map_err(context("cannot create namespaces"))?;
    let (status_rx, status_tx) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(context("cannot create a pipe"))?;
    // Everything the init and the runtime need is prepared before the fork.
    let exec = Exec::prepare(c)?;
    // SAFETY: this process is single-threaded (a fresh exec of the host binary that has not
    // started any thread), so the child may allocate and take locks freely after the fork.
    match unsafe { nix::unistd::fork() }.map_err(context("cannot fork"))? {
        ForkResult::Child => {
            drop(status_rx);
            let code = match init(c, &exec, status_tx) {
                Ok(code) => code,
                Err(e) => {
                    let _ = writeln!(io::stderr(), "lambkin sandbox-init: {e}");
                    126
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(status_tx);
            follow(child, status_rx)
        }
    }
}

/// The monitor waits for the init and leaves the way the runtime did.
fn follow(init: Pid, status_rx: OwnedFd) -> ! {
    let init_status = loop {
        match waitpid(init, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    let mut raw = [0u8; 4];
    let reported = std::fs::File::from(status_rx).read_exact(&mut raw).is_ok();
    let runtime = i32::from_le_bytes(raw);
    if reported {
        if runtime >= 0 {
            std::process::exit(runtime);
        }
        die_by(-runtime);
    }
    match init_status {
        Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => die_by(sig as i32),
        _ => std::process::exit(126),
    }
}

/// Ends this process by the signal `signo`, as the runtime ended.
fn die_by(signo: i32) -> ! {
    if let Ok(sig) = Signal::try_from(signo) {
        let mut all = SigSet::empty();
        all.add(sig);
        let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&all), None);
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            let default = signal::SigAction::new(
                signal::SigHandler::SigDfl,
                signal::SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: installing SIG_DFL runs no code of ours in signal context.
            let _ = unsafe { signal::sigaction(sig, &default) };
        }
        let _ = signal::raise(sig);
    }
    std::process::exit(128 + signo)
}

/// The runtime's exec arguments, as C strings.
struct Exec {
    program: CString,
    argv: Vec<CString>,
    env: Option<Vec<CString>>,
    workdir: PathBuf,
}

impl Exec {
    fn prepare(c: &Container) -> io::Result<Self> {
        let cstring = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains a NUL"))
            })
        };
        let program = cstring(&c.program)?;
        let mut argv = vec![program.clone()];
        for arg in &c.args {
            argv.push(cstring(arg)?);
        }
        let env = match &c.env {
            Some(entries) => Some(
                entries
                    .iter()
                    .map(|e| cstring(e))
                    .collect::<io::Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok(Self {
            program,
            argv,
            env,
            workdir: c.workdir.clone(),
        })
    }
}

/// PID 1 of the new namespace: builds the root, starts the runtime, reaps.
fn init(c: &Container, exec: &Exec, status_tx: OwnedFd) -> io::Result<i32> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(context("cannot set PDEATHSIG"))?;
    nix::unistd::sethostname(&c.hostname).map_err(context("cannot set the host name"))?;
    build_root(c)?;
    // SAFETY: still single-threaded (see `monitor`).
    let runtime = match unsafe { nix::unistd::fork() }.map_err(context("cannot fork"))? {
        ForkResult::Child => {
            drop(status_tx);
            let e = start_runtime(c, exec);
            let _ = writeln!(io::stderr(), "lambkin sandbox-init: {e}");
            std::process::exit(127)
        }
        ForkResult::Parent { child } => child,
    };
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => {
                report(status_tx, code);
                return Ok(code);
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == runtime => {
                report(status_tx, -(sig as i32));
                return Ok(128 + sig as i32);
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(context("cannot wait for the runtime")(e)),
        }
    }
}

fn report(status_tx: OwnedFd, status: i32) {
    let _ = std::fs::File::from(status_tx).write_all(&status.to_le_bytes());
}

fn start_runtime(c: &Container, exec: &Exec) -> io::Error {
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // No capability may reach the runtime, also when it runs as root: the bounding set is
    // emptied while CAP_SETPCAP is still held, the rest after the user switch below.
    if let Err(e) = empty_bounding_set() {
        return e;
    }
    if let Some((uid, gid, groups)) = &c.run_as {
        // The runtime's stdout and stderr are the host's pipes (see `give_pipes`).
        crate::give_pipes(*uid, *gid);
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        let switched = nix::unistd::setgroups(&groups)
            .and_then(|()| nix::unistd::setgid(Gid::from_raw(*gid)))
            .and_then(|()| nix::unistd::setuid(Uid::from_raw(*uid)));
        if let Err(e) = switched {
            return context(format!("cannot become user {uid}:{gid}"))(e);
        }
    }
    if let Err(e) = clear_capabilities() {
        return e;
    }
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return context("cannot set no_new_privs")(e);
    }
    if let Err(e) = nix::unistd::chdir(&exec.workdir) {
        return context(format!("cannot enter {}", exec.workdir.display()))(e);
    }
    let exec_result = match &exec.env {
        Some(env) => nix::unistd::execve(&exec.program, &exec.argv, env),
        None => nix::unistd::execv(&exec.program, &exec.argv),
    };
    match exec_result {
        Ok(never) => match never {},
        Err(e) => context(format!("cannot run {:?}", exec.program))(e),
    }
}

/// Drops every capability from the bounding set, so nothing exec'd later (a set-user-ID
/// binary, or root's own exec) can hold one again.
fn empty_bounding_set() -> io::Result<()> {
    for cap in 0.. {
        // SAFETY: `prctl(PR_CAPBSET_DROP, cap)` takes two integers and touches no memory of
        // ours; it fails with EINVAL past the last capability the kernel knows.
        let rc = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(nix::libc::EINVAL) && cap > 0 {
                return Ok(());
            }
            return Err(io::Error::new(
                e.kind(),
                format!("cannot drop capability {cap}: {e}"),
            ));
        }
    }
    Ok(())
}

/// Empties the effective, permitted and inheritable capability sets of this process
/// (`capset(2)`, version 3), and the ambient set.
fn clear_capabilities() -> io::Result<()> {
    /// `struct __user_cap_header_struct`.
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    /// `struct __user_cap_data_struct`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `capset(2)` reads one header and, for version 3, two data structs; both live
    // until the call returns and have the kernel's layout (`repr(C)`, u32/i32 fields).
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capset,
            &mut header as *mut Header,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot clear capabilities: {e}"),
        ));
    }
    // SAFETY: `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)` takes integers only.
    let rc = unsafe {
        nix::libc::prctl(
            nix::libc::PR_CAP_AMBIENT,
            nix::libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot clear ambient capabilities: {e}"),
        ));
    }
    Ok(())
}

fn mount_at(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    mount(source, target, fstype, flags, data).map_err(context(format!(
        "cannot mount {} on {}",
        source.map_or_else(
            || fstype.unwrap_or("").to_owned(),
            |s| s.display().to_string()
        ),
        target.display()
    )))
}

/// Sets mount attributes on `path` (and every mount below it with `recursive`).
fn set_attributes(path: &Path, attributes: u64, recursive: bool) -> io::Result<()> {
    /// `struct mount_attr` of `<linux/mount.h>`.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL"))?;
    let attr = MountAttr {
        attr_set: attributes,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive {
        nix::libc::AT_RECURSIVE
    } else {
        0
    };
    // SAFETY: `mount_setattr(2)` reads a NUL-terminated path and `size` bytes of `attr`; both
    // live until the call returns, and `size` is the struct's exact size.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            nix::libc::AT_FDCWD,
            c_path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(
            e.kind(),
            format!("cannot set mount attributes of {}: {e}", path.display()),
        ))
    }
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Makes `target` (inside `root`) exist as a mount point like `source`: a directory or an
/// empty file, with missing parents. Fails where the parent is read-only (a host directory).
fn mount_point(root: &Path, target: &Path, source_is_dir: bool) -> io::Result<PathBuf> {
    let relative = target.strip_prefix("/").unwrap_or(target);
    let at = root.join(relative);
    let result = if source_is_dir {
        std::fs::create_dir_all(&at)
    } else {
        match at.parent() {
            Some(parent) => std::fs::create_dir_all(parent),
            None => Ok(()),
        }
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&at)
                .map(drop)
        })
    };
    result.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot make a mount point at {}: {e}", target.display()),
        )
    })?;
    Ok(at)
}

fn bind(root: &Path, b: &Bind, extra: u64) -> io::Result<()> {
    let is_dir = std::fs::metadata(&b.source)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", b.source.display())))?
        .is_dir();
    let at = mount_point(root, &b.target, is_dir)?;
    mount_at(
        Some(&b.source),
        &at,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let ro = if b.writable { 0 } else { MOUNT_ATTR_RDONLY };
    set_attributes(&at, ro | extra, true)
}

fn build_root(c: &Container) -> io::Result<()> {
    // Nothing done here may reach the host's mount table.
    mount_at(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let root = c.scratch.as_path();
    mount_at(
        Some(Path::new("tmpfs")),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m"),
    )?;
    // The host's directories, read-only, so interpreters and libraries are where they were.
    let entries = std::fs::read_dir("/")?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_BOUND.iter().any(|n| OsStr::new(n) == name) {
            continue;
        }
        let source = Path::new("/").join(&name);
        let file_type = entry.file_type()?;
        if file_type.is_symlink() {
            let link = std::fs::read_link(&source)?;
            std::os::unix::fs::symlink(link, root.join(&name))?;
            continue;
        }
        bind(
            root,
            &Bind {
                source: source.clone(),
                target: source,
                writable: false,
            },
            0,
        )?;
    }
    // The private /tmp first: a volume whose destination is under /tmp goes on top of it.
    let tmp = mount_point(root, Path::new("/tmp"), true)?;
    mount_at(
        Some(Path::new("tmpfs")),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    for b in &c.binds {
        bind(root, b, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)?;
    }
    let dev = mount_point(root, Path::new("/dev"), true)?;
    mount_at(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    for name in STANDARD_DEVICES {
        let source = Path::new("/dev").join(name);
        if source.exists() {
            bind(
                root,
                &Bind {
                    source: source.clone(),
                    target: source,
                    writable: true,
                },
                MOUNT_ATTR_NOSUID,
            )?;
        }
    }
    for d in &c.devices {
        bind(root, d, MOUNT_ATTR_NOSUID)?;
    }
    let shm = mount_point(root, Path::new("/dev/shm"), true)?;
    mount_at(
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )?;
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link))?;
    }
    set_attributes(&dev, MOUNT_ATTR_RDONLY, false)?;
    let proc = mount_point(root, Path::new("/proc"), true)?;
    mount_at(
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    if c.mount_sysfs {
        let sys = mount_point(root, Path::new("/sys"), true)?;
        mount_at(
            Some(Path::new("sysfs")),
            &sys,
            Some("sysfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        )?;
    }
    // The root itself holds only mount points: nothing may be written there.
    set_attributes(root, MOUNT_ATTR_RDONLY, false)?;
    nix::unistd::chdir(root).map_err(context("cannot enter the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(context("cannot pivot into the new root"))?;
    // The old root is stacked under the new one; detach it so the host's tree is gone.
    umount2(".", MntFlags::MNT_DETACH).map_err(context("cannot detach the host's root"))?;
    nix::unistd::chdir("/").map_err(context("cannot enter /"))?;
    Ok(())
}
