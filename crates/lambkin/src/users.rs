//! Who component and function processes run as (Greengrass `runWith.posixUser`,
//! `greengrass-reference.md` §1.3 and §6): `user` or `user:group`, each a name or a numeric id;
//! the host's default from `[run_with_default]`; `RequiresPrivilege` steps as the host's own
//! user (root).
//!
//! A host running as root runs each component as its `posixUser`, else as the default user:
//! `[run_with_default]`, else [`DEFAULT_POSIX_USER`] (`ggc_user:ggc_group`, the user and group
//! the Greengrass installer sets up), created as a system user and group when missing. Functions
//! made through the Lambda API run as the default user too. Nothing runs as root unless a step
//! `RequiresPrivilege` or a `posixUser` (or `[run_with_default]`) names root, and the logs say
//! so. A host that is not root cannot change user: as the Greengrass nucleus does when it is not
//! root, every step runs as the host's user and a `posixUser` naming another user is logged and
//! ignored (an unknown user is still an error).
//!
//! A component's work directory (`ROOT/work/NAME`) belongs to its user, mode 0700, so no other
//! component's user can read it; its artifacts belong to its user too, their modes following
//! the recipe's `Permission` (§2.4), as the nucleus gives them to the component's user. An API
//! function's code stays the host's, readable by its user's group alone ([`give_code`]).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

/// Whom a root host runs components and functions as when `[run_with_default]` names no one:
/// Greengrass's default (its installer's `--component-default-user ggc_user:ggc_group`).
pub const DEFAULT_POSIX_USER: &str = "ggc_user:ggc_group";

/// The identity a process is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name, or its number when it has no entry.
    pub user: String,
    pub uid: u32,
    /// The primary group: the one `posixUser` names, else the user's own.
    pub gid: u32,
    /// Supplementary groups: the user's groups (from the group database) with `gid`.
    pub groups: Vec<u32>,
    /// The user's home directory (`HOME`), when it has an entry.
    pub home: Option<PathBuf>,
}

impl RunAs {
    /// Adds the identity to `command`: user, groups, `HOME`, `USER` and `LOGNAME`. Call before
    /// [`lambkin_sys::host_child`] (see [`lambkin_sys::run_as`]).
    pub fn apply(&self, command: &mut std::process::Command) {
        lambkin_sys::run_as(command, self.uid, self.gid, &self.groups);
        self.apply_env(command);
    }

    /// Sets only the variables naming the user: `HOME` (removed when the user has no entry),
    /// `USER` and `LOGNAME`.
    pub fn apply_env(&self, command: &mut std::process::Command) {
        match &self.home {
            Some(home) => command.env("HOME", home),
            None => command.env_remove("HOME"),
        };
        command.env("USER", &self.user).env("LOGNAME", &self.user);
    }

    /// The variables naming the user, as [`RunAs::apply_env`] sets them.
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut env = Vec::with_capacity(3);
        if let Some(home) = &self.home {
            env.push(("HOME", home.clone().into_os_string()));
        }
        env.push(("USER", self.user.clone().into()));
        env.push(("LOGNAME", self.user.clone().into()));
        env
    }

    /// Whether this is root.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// The host's own user as a process identity: what a process that runs as the host's user
/// (a `RequiresPrivilege` step, everything on a host that is not root) gets as `HOME`, `USER`
/// and `LOGNAME`. Its password entry when there is one (read once).
pub fn host_identity() -> &'static RunAs {
    static HOST: std::sync::OnceLock<RunAs> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid().as_raw();
        match User::from_uid(uid) {
            Ok(Some(user)) => RunAs {
                user: user.name,
                uid: uid.as_raw(),
                gid,
                groups: vec![gid],
                home: Some(user.dir),
            },
            // No entry (a container started with an arbitrary uid): the number, and the
            // home the host itself was given.
            _ => RunAs {
                user: uid.to_string(),
                uid: uid.as_raw(),
                gid,
                groups: vec![gid],
                home: std::env::var_os("HOME").map(PathBuf::from),
            },
        }
    })
}

/// Why a `posixUser` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("posixUser {0:?} is not \"user\" or \"user:group\"")]
    Malformed(String),
    #[error("posixUser {spec:?}: no such user {user:?} on this device")]
    NoSuchUser { spec: String, user: String },
    #[error("posixUser {spec:?}: no such group {group:?} on this device")]
    NoSuchGroup { spec: String, group: String },
    #[error("posixUser {spec:?}: user id {uid} has no entry on this device, so it needs a group")]
    NeedsGroup { spec: String, uid: u32 },
    #[error("posixUser {spec:?}: cannot look it up: {why}")]
    Lookup { spec: String, why: String },
    #[error("cannot create the default {kind} {name:?}: {why}")]
    Create {
        kind: &'static str,
        name: String,
        why: String,
    },
}

/// `user[:group]`, both non-empty.
pub fn parse_posix_user(spec: &str) -> Result<(&str, Option<&str>), UserError> {
    let malformed = || UserError::Malformed(spec.to_owned());
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let valid =
        |s: &str| !s.is_empty() && !s.contains([':', '/']) && !s.contains(char::is_whitespace);
    if !valid(user) || group.is_some_and(|g| !valid(g)) {
        return Err(malformed());
    }
    Ok((user, group))
}

/// Looks `spec` up in the user and group databases.
pub fn resolve(spec: &str) -> Result<RunAs, UserError> {
    let (user_part, group_part) = parse_posix_user(spec)?;
    let lookup = |e: nix::Error| UserError::Lookup {
        spec: spec.to_owned(),
        why: e.to_string(),
    };
    let user = match user_part.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).map_err(lookup)?,
        Err(_) => User::from_name(user_part).map_err(lookup)?,
    };
    let group = match group_part {
        None => None,
        Some(g) => {
            let found = match g.parse::<u32>() {
                Ok(gid) => Group::from_gid(Gid::from_raw(gid))
                    .map_err(lookup)?
                    .map(|grp| grp.gid.as_raw())
                    // A numeric group needs no entry, as for chown.
                    .or(Some(gid)),
                Err(_) => Group::from_name(g)
                    .map_err(lookup)?
                    .map(|grp| grp.gid.as_raw()),
            };
            Some(found.ok_or_else(|| UserError::NoSuchGroup {
                spec: spec.to_owned(),
                group: g.to_owned(),
            })?)
        }
    };
    match user {
        Some(user) => {
            let gid = group.unwrap_or(user.gid.as_raw());
            let mut groups: Vec<u32> = std::ffi::CString::new(user.name.clone())
                .ok()
                .and_then(|name| nix::unistd::getgrouplist(&name, Gid::from_raw(gid)).ok())
                .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
                .unwrap_or_default();
            if !groups.contains(&gid) {
                groups.push(gid);
            }
            groups.sort_unstable();
            groups.dedup();
            Ok(RunAs {
                user: user.name,
                uid: user.uid.as_raw(),
                gid,
                groups,
                home: Some(user.dir),
            })
        }
        None => match (user_part.parse::<u32>(), group) {
            // A numeric user with no entry runs as that number, with the group it names.
            (Ok(uid), Some(gid)) => Ok(RunAs {
                user: uid.to_string(),
                uid,
                gid,
                groups: vec![gid],
                home: None,
            }),
            (Ok(uid), None) => Err(UserError::NeedsGroup {
                spec: spec.to_owned(),
                uid,
            }),
            (Err(_), _) => Err(UserError::NoSuchUser {
                spec: spec.to_owned(),
                user: user_part.to_owned(),
            }),
        },
    }
}

/// Checks `systemResourceLimits`: `cpus` a positive number, `memory` (KB) at least 1.
pub fn check_limits(cpus: Option<f64>, memory_kb: Option<u64>) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(cpus) = cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            problems.push(format!("cpus {cpus} must be a number of cores above 0"));
        }
    }
    if memory_kb == Some(0) {
        problems.push("memory must be at least 1 (KB)".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `systemResourceLimits` as a control group's limits; `None` when neither is set.
pub fn cgroup_limits(cpus: Option<f64>, memory_kb: Option<u64>) -> Option<crate::cgroup::Limits> {
    (cpus.is_some() || memory_kb.is_some()).then(|| crate::cgroup::Limits {
        memory_bytes: memory_kb.map(|kb| kb.saturating_mul(1024)),
        pids: None,
        cpus,
    })
}

/// The host's identity and its default for components and functions.
#[derive(Debug, Clone)]
pub struct Users {
    host_is_root: bool,
    host_uid: u32,
    /// The default user, resolved; `None`: everything runs as the host's user (a host that is
    /// not root).
    default: Option<RunAs>,
}

impl Users {
    /// No default user: everything runs as the host's user (tests, a host that is not root).
    pub fn host() -> Self {
        let uid = nix::unistd::geteuid();
        Self {
            host_is_root: uid.is_root(),
            host_uid: uid.as_raw(),
            default: None,
        }
    }

    /// Resolves the default user: `default_posix_user` (`[run_with_default]`), else
    /// [`DEFAULT_POSIX_USER`]. A user or group name that does not exist yet is created (a
    /// system user with no login and no home, a system group) when the host is root.
    pub fn start(default_posix_user: Option<&str>) -> Result<Self, UserError> {
        let mut users = Self::host();
        if !users.host_is_root {
            if let Some(spec) = default_posix_user {
                tracing::warn!(
                    posix_user = spec,
                    "the host is not root: components and functions run as the host's own user, not the default user"
                );
            }
            return Ok(users);
        }
        let spec = default_posix_user.unwrap_or(DEFAULT_POSIX_USER);
        let resolved = resolve_or_create(spec)?;
        if resolved.is_root() {
            tracing::warn!(
                posix_user = spec,
                "[run_with_default] names root: components and functions run as root"
            );
        } else {
            tracing::info!(
                posix_user = spec,
                uid = resolved.uid,
                gid = resolved.gid,
                "components and functions run as the default user unless their deployment names another"
            );
        }
        users.default = Some(resolved);
        Ok(users)
    }

    /// Whom a function made through the Lambda API runs as: the default user; `None` means
    /// the host's own user.
    pub fn for_function(&self) -> Option<RunAs> {
        self.default.clone()
    }

    /// Whom a component runs as: its own `posixUser`, else the default; `None` means the
    /// host's own user. An unknown or malformed user is an error even when it would be ignored.
    pub fn for_component(
        &self,
        component: &str,
        posix_user: Option<&str>,
    ) -> Result<Option<RunAs>, UserError> {
        let Some(spec) = posix_user else {
            return Ok(self.default.clone());
        };
        let run_as = resolve(spec)?;
        if self.host_is_root || run_as.uid == self.host_uid {
            return Ok(self.host_is_root.then_some(run_as));
        }
        tracing::warn!(
            component,
            posix_user = spec,
            "the host is not root: the component runs as the host's user"
        );
        Ok(None)
    }
}

/// Looks `spec` up, first creating what it names that does not exist: its group (a system
/// group), then its user (a system user in that group, or in its own). Numeric ids are never
/// created.
pub(crate) fn resolve_or_create(spec: &str) -> Result<RunAs, UserError> {
    let (_, group_part) = parse_posix_user(spec)?;
    // A group, then a user: at most two things to create, then the lookup must succeed.
    for _ in 0..2 {
        match resolve(spec) {
            Err(UserError::NoSuchGroup { group, .. }) => create_system_group(&group)?,
            Err(UserError::NoSuchUser { user, .. }) => create_system_user(&user, group_part)?,
            other => return other,
        }
    }
    resolve(spec)
}

fn create_system_group(name: &str) -> Result<(), UserError> {
    add_account("group", name, "groupadd", &["--system", name], || {
        matches!(Group::from_name(name), Ok(Some(_)))
    })?;
    tracing::info!(group = name, "created the default group");
    Ok(())
}

fn create_system_user(name: &str, group: Option<&str>) -> Result<(), UserError> {
    let nologin = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    let mut args = vec!["--system", "--no-create-home", "--shell", nologin];
    // The group it names is its primary group; else a group of its own name left from before;
    // else one is made.
    match group {
        Some(group) => args.extend(["--gid", group]),
        None => match Group::from_name(name) {
            Ok(Some(_)) => args.extend(["--gid", name]),
            _ => args.push("--user-group"),
        },
    }
    args.push(name);
    add_account("user", name, "useradd", &args, || {
        matches!(User::from_name(name), Ok(Some(_)))
    })?;
    tracing::info!(user = name, "created the default user");
    Ok(())
}

/// Runs `useradd`/`groupadd`. Two hosts starting at once on one device may both find the
/// account missing: the loser's tool fails because the name now exists (fine), or because the
/// other holds the lock on the account files (exit 1 or 10, "cannot lock"; tried again for a
/// few seconds).
fn add_account(
    kind: &'static str,
    name: &str,
    tool: &str,
    args: &[&str],
    exists: impl Fn() -> bool,
) -> Result<(), UserError> {
    const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
    let failed = |why: String| UserError::Create {
        kind,
        name: name.to_owned(),
        why,
    };
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        let output = std::process::Command::new(tool)
            .args(args)
            .output()
            .map_err(|e| failed(format!("cannot run {tool}: {e}")))?;
        if output.status.success() || exists() {
            return Ok(());
        }
        let locked = matches!(output.status.code(), Some(1 | 10));
        if !locked || std::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "{tool} {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Creates a component's work directory, owned with what it holds by `run_as` (else by the
/// host's user), mode 0700. With another user, the directories above it up to `root` are made traversable (not
/// readable) by others, so the user can reach its directory and the IPC socket.
pub fn prepare_work_dir(root: &Path, work: &Path, run_as: Option<&RunAs>) -> std::io::Result<()> {
    std::fs::create_dir_all(work)?;
    let (uid, gid) = match run_as {
        Some(r) => (r.uid, r.gid),
        None => (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
    };
    // A component whose user changed gets its files too, as the nucleus does; an unchanged one
    // costs one stat.
    let owner = std::fs::metadata(work)?;
    if (owner.uid(), owner.gid()) != (uid, gid) {
        chown_tree(work, uid, gid)?;
    }
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o700))?;
    if run_as.is_some() {
        if let Some(parent) = work.parent() {
            make_reachable(root, parent)?;
        }
    }
    Ok(())
}

/// What under the root only the host reads: its configuration (which may hold credentials),
/// state (the store, the CLI's token, the spool, keys) and logs (components' output included).
const HOST_ONLY: [&str; 3] = ["config.toml", "state", "logs"];

/// At the start of a host that runs processes as `user` (its default user): the root becomes
/// passable for other users, so that `user` reaches the runtime clients and the API functions'
/// code (each function's code is its user's group's alone, see [`give_code`]). A directory
/// above the root that keeps `user` out is named in a warning: none of its processes could
/// reach its working directory, its code or the IPC socket; the host does not change what
/// lies outside its root.
pub fn open_root(layout: &crate::layout::Layout, user: &RunAs) -> std::io::Result<()> {
    let root = layout.root();
    make_reachable(root, &layout.runtimes_dir())?;
    make_reachable(root, &layout.functions_dir())?;
    for dir in root.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let bit = if meta.uid() == user.uid {
            0o100
        } else if user.groups.contains(&meta.gid()) {
            0o010
        } else {
            0o001
        };
        if meta.permissions().mode() & bit == 0 {
            tracing::warn!(
                user = %user.user,
                dir = %dir.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o7777),
                "components and functions run as this user, who cannot pass through this directory above the root: they will fail to start (make it searchable, e.g. chmod o+x, or choose another root)"
            );
            break;
        }
    }
    Ok(())
}

/// Gives an API function's code directory `code` (`ROOT/functions/NAME/HASH`) and its parent
/// to the group `gid` of the user it runs as, the host's user staying the owner: directories
/// 0750, files the owner's bits and the zip's group read and execute bits, nothing for others,
/// no set-id bits. The function's user reads and runs its code but cannot change it (as on AWS
/// Lambda, where the code is not the function user's own), and no other user reads it. Code
/// already given costs two stats.
pub fn give_code(code: &Path, gid: u32) -> std::io::Result<()> {
    if let Some(function_dir) = code.parent() {
        close_to_group(function_dir, gid, 0o750)?;
    }
    let meta = std::fs::metadata(code)?;
    if meta.gid() == gid && meta.permissions().mode() & 0o7777 == 0o750 {
        return Ok(());
    }
    give_code_tree(code, gid)
}

fn close_to_group(path: &Path, gid: u32, mode: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn give_code_tree(path: &Path, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::lchown(path, None, Some(gid));
    }
    if meta.is_dir() {
        // Entries first: the directory stays traversable by the host until the end.
        for entry in std::fs::read_dir(path)? {
            give_code_tree(&entry?.path(), gid)?;
        }
        return close_to_group(path, gid, 0o750);
    }
    close_to_group(path, gid, meta.permissions().mode() & 0o750)
}

/// Lets every user pass through `dir` and each directory above it up to `root` (search
/// permission only: their entries cannot be listed). Reaching the root, the host's own files
/// there are closed to everyone but the host's user first.
pub fn make_reachable(root: &Path, dir: &Path) -> std::io::Result<()> {
    let mut next = Some(dir);
    while let Some(d) = next {
        if !d.starts_with(root) {
            break;
        }
        if d == root {
            for name in HOST_ONLY {
                remove_mode(&root.join(name), 0o077)?;
            }
        }
        add_mode(d, 0o011)?;
        if d == root {
            break;
        }
        next = d.parent();
    }
    Ok(())
}

fn remove_mode(path: &Path, bits: u32) -> std::io::Result<()> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & bits != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !bits & 0o7777))?;
    }
    Ok(())
}

/// Gives `path` and everything under it (not following links) to `run_as`. Missing is fine.
pub fn give_tree(path: &Path, run_as: &RunAs) -> std::io::Result<()> {
    chown_tree(path, run_as.uid, run_as.gid)
}

/// Gives `path` and everything under it to `uid`:`gid`, walking by file descriptor: each
/// directory is opened without following a link (`O_NOFOLLOW | O_DIRECTORY`) and its entries
/// are changed relative to it, so a component that swaps a directory of its own for a link
/// while the walk runs gets the link itself changed, never what it points at.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use nix::errno::Errno;
    match open_dir_nofollow(None, path) {
        Ok(dir) => chown_dir(dir, uid, gid),
        Err(Errno::ENOTDIR | Errno::ELOOP) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn open_dir_nofollow<P: ?Sized + nix::NixPath>(
    at: Option<std::os::fd::RawFd>,
    path: &P,
) -> nix::Result<nix::dir::Dir> {
    use nix::fcntl::OFlag;
    nix::dir::Dir::openat(
        at,
        path,
        OFlag::O_RDONLY
            | OFlag::O_DIRECTORY
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    )
}

fn chown_dir(mut dir: nix::dir::Dir, uid: u32, gid: u32) -> std::io::Result<()> {
    use nix::errno::Errno;
    use std::os::fd::AsRawFd;
    let (owner, group) = (
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    );
    let fd = dir.as_raw_fd();
    nix::unistd::fchown(fd, owner, group)?;
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        match open_dir_nofollow(Some(fd), name.as_c_str()) {
            Ok(sub) => chown_dir(sub, uid, gid)?,
            Err(Errno::ENOTDIR | Errno::ELOOP) => nix::unistd::fchownat(
                Some(fd),
                name.as_c_str(),
                owner,
                group,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn add_mode(path: &Path, bits: u32) -> std::io::Result<()> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if mode & bits != bits {
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode((mode | bits) & 0o7777),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_walks_without_following_links() {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: changing owners needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("deep")).unwrap();
        std::fs::write(outside.join("deep/secret"), "host's").unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/file"), "mine").unwrap();
        // What a component plants: links to directories and files outside its tree.
        std::os::unix::fs::symlink(&outside, tree.join("a/to-dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("deep/secret"), tree.join("to-file")).unwrap();
        chown_tree(&tree, 65534, 65534).unwrap();
        use std::os::unix::fs::MetadataExt;
        for owned in ["", "a", "a/b", "a/b/file"] {
            assert_eq!(
                std::fs::metadata(tree.join(owned)).unwrap().uid(),
                65534,
                "{owned}"
            );
        }
        assert_eq!(
            std::fs::symlink_metadata(tree.join("a/to-dir"))
                .unwrap()
                .uid(),
            65534
        );
        for untouched in ["", "deep", "deep/secret"] {
            assert_eq!(
                std::fs::metadata(outside.join(untouched)).unwrap().uid(),
                0,
                "{untouched}"
            );
        }
        // A link given as the top is changed itself, not followed.
        chown_tree(&tree.join("to-file"), 65534, 65534).unwrap();
        assert_eq!(
            std::fs::metadata(outside.join("deep/secret"))
                .unwrap()
                .uid(),
            0
        );
    }

    #[test]
    fn posix_user_forms() {
        assert_eq!(parse_posix_user("u").unwrap(), ("u", None));
        assert_eq!(parse_posix_user("u:g").unwrap(), ("u", Some("g")));
        assert_eq!(
            parse_posix_user("1000:1000").unwrap(),
            ("1000", Some("1000"))
        );
        for bad in ["", ":g", "u:", "u:g:h", "a b", "u/x"] {
            assert!(
                matches!(parse_posix_user(bad), Err(UserError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_configuration_names_bad_users_and_limits() {
        use crate::config::HostConfig;
        let c = HostConfig::parse(
            "[run_with_default]\nposix_user = \"ggc_user:ggc_group\"\n\
             [system_resource_limits]\ncpus = 1.5\nmemory = 102400\n",
        )
        .unwrap();
        assert_eq!(
            c.run_with_default.posix_user.as_deref(),
            Some("ggc_user:ggc_group")
        );
        assert_eq!(
            (
                c.system_resource_limits.cpus,
                c.system_resource_limits.memory
            ),
            (Some(1.5), Some(102400))
        );
        let err = HostConfig::parse(
            "[run_with_default]\nposix_user = \"a:b:c\"\n\
             [system_resource_limits]\ncpus = 0.0\n",
        )
        .unwrap_err();
        assert!(
            err.contains("run_with_default.posix_user") && err.contains("system_resource_limits"),
            "{err}"
        );
        let err = HostConfig::parse("[run_with_default]\nposixUser = \"u\"\n").unwrap_err();
        assert!(err.contains("posixUser"), "{err}");
    }

    #[test]
    fn limits_are_checked_and_converted() {
        assert!(check_limits(Some(0.5), Some(1)).is_ok());
        assert!(check_limits(None, None).is_ok());
        let err = check_limits(Some(0.0), Some(0)).unwrap_err();
        assert!(err.contains("cpus 0") && err.contains("memory"), "{err}");
        assert!(check_limits(Some(f64::NAN), None).is_err());
        assert_eq!(cgroup_limits(None, None), None);
        let limits = cgroup_limits(Some(1.5), Some(64)).unwrap();
        assert_eq!((limits.cpus, limits.memory_bytes), (Some(1.5), Some(65536)));
    }

    #[test]
    fn code_is_given_to_the_group_and_closed_to_others() {
        let tmp = tempfile::tempdir().unwrap();
        let code = tmp.path().join("fn/abc");
        std::fs::create_dir_all(code.join("lib")).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        for (file, m) in [
            ("app.py", 0o644),
            ("bootstrap", 0o4777),
            ("lib/x.py", 0o600),
        ] {
            std::fs::write(code.join(file), "x").unwrap();
            set(&code.join(file), m);
        }
        std::os::unix::fs::symlink("app.py", code.join("link")).unwrap();
        let gid = nix::unistd::getegid().as_raw();
        give_code(&code, gid).unwrap();
        assert_eq!(mode(&code), 0o750);
        assert_eq!(mode(&code.join("lib")), 0o750);
        assert_eq!(mode(&tmp.path().join("fn")), 0o750);
        // Group read and run as the zip allowed; no write, nothing for others, no set-id.
        assert_eq!(mode(&code.join("app.py")), 0o640);
        assert_eq!(mode(&code.join("bootstrap")), 0o750);
        assert_eq!(mode(&code.join("lib/x.py")), 0o600);
        assert_eq!(std::fs::metadata(code.join("app.py")).unwrap().gid(), gid);
    }

    #[test]
    fn lookups_name_what_is_missing() {
        let root = resolve("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(resolve("0:0").unwrap().user, "root");
        let err = resolve("no-such-user-lambkin").unwrap_err();
        assert!(
            err.to_string()
                .contains("no such user \"no-such-user-lambkin\""),
            "{err}"
        );
        let err = resolve("root:no-such-group-lambkin").unwrap_err();
        assert!(err.to_string().contains("no such group"), "{err}");
        let unnamed = resolve("4000123:4000123").unwrap();
        assert_eq!(
            (unnamed.uid, unnamed.gid, unnamed.home),
            (4000123, 4000123, None)
        );
        assert!(matches!(
            resolve("4000123"),
            Err(UserError::NeedsGroup { .. })
        ));
    }
}
