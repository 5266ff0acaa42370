//! Where everything lives under the root directory (`interface.md`, "Root layout"), and who
//! may read the host's own part of it: `state/` (0700, every file in it 0600: the store, the
//! spool, the CLI's token, keys), `logs/` (0700, every log 0600) and `config.toml` are the
//! host's user's alone, whoever the components and functions run as, since components' users
//! must never read the host's keys or one another's output. The host's umask is not trusted
//! for this (a service may be started with any): modes are set explicitly, and at every start
//! what an earlier run or another tool left more open is closed again.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lambkin_proto::lambda::function::FunctionName;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The root is made absolute: processes run with other working directories, and paths
    /// handed to them (runtime clients, artifacts, the IPC socket) must not depend on the
    /// host's.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    /// `--root`, else `$LAMBKIN_ROOT`, else `./lambkin-root`.
    pub fn resolve(flag: Option<PathBuf>, env_root: Option<PathBuf>) -> Self {
        Self::new(
            flag.or(env_root)
                .unwrap_or_else(|| PathBuf::from("lambkin-root")),
        )
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn database(&self) -> PathBuf {
        self.state_dir().join("lambkin.db")
    }
    pub fn api_addr_file(&self) -> PathBuf {
        self.state_dir().join("api.addr")
    }
    /// The host's own access key (AWS shared-credentials format, profile `lambkin`).
    pub fn credentials_file(&self) -> PathBuf {
        self.state_dir().join("credentials")
    }
    pub fn cli_token_file(&self) -> PathBuf {
        self.state_dir().join("cli.token")
    }
    /// The bearer token `/metrics` takes (Prometheus's `authorization.credentials_file`).
    pub fn metrics_token_file(&self) -> PathBuf {
        self.state_dir().join("metrics.token")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn host_log(&self) -> PathBuf {
        self.logs_dir().join(format!("{HOST_LOG_NAME}.log"))
    }
    pub fn function_log(&self, name: &FunctionName) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    /// Unzipped code of Lambda functions defined through the API, one directory per code hash.
    pub fn functions_dir(&self) -> PathBuf {
        self.root.join("functions")
    }
    pub fn function_dir(&self, name: &FunctionName) -> PathBuf {
        self.functions_dir().join(name.as_str())
    }
    /// Published layer versions, unpacked (`NAME/VERSION/`): the host's alone; functions get
    /// their own merged copy.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// The records of the published layer versions.
    pub fn layers_index(&self) -> PathBuf {
        self.state_dir().join("layers.json")
    }
    /// The runtime clients Lambkin ships, written out at start.
    pub fn runtimes_dir(&self) -> PathBuf {
        self.root.join("runtimes")
    }

    /// Creates the root's directories with their modes: `state` and `logs` the host's alone,
    /// `functions` passable (each function's code is its user's group's, see
    /// `crate::users::give_code`), `runtimes` readable (the runtime clients every function
    /// runs); then closes whatever in `state`, `logs` and `config.toml` others could read.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for (dir, mode) in [
            (self.state_dir(), PRIVATE_DIR),
            (self.logs_dir(), PRIVATE_DIR),
            (self.functions_dir(), 0o711),
            (self.runtimes_dir(), 0o755),
        ] {
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
        }
        close_tree(&self.state_dir())?;
        close_tree(&self.logs_dir())?;
        close(&self.config_file(), PRIVATE_FILE)
    }
}

/// Mode of the host's own directories.
pub const PRIVATE_DIR: u32 = 0o700;

/// The host's own log is `logs/lambkin.log`, beside the functions' and components'
/// `logs/NAME.log`: no function or component may be named so.
pub const HOST_LOG_NAME: &str = "lambkin";

/// Whether `name` is the host log's, in any case (a case-insensitive file system would make
/// `Lambkin.log` the same file), which no function or component may take.
pub fn is_reserved_name(name: &str) -> bool {
    name.eq_ignore_ascii_case(HOST_LOG_NAME)
}
/// Mode of the host's own files.
pub const PRIVATE_FILE: u32 = 0o600;

/// Whether the file system holding `path` has no room left for the host's writes (statvfs:
/// no free block for the host's user; root may use the reserve, so counts that too).
pub fn disk_full(path: &Path) -> bool {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => {
            let free = if nix::unistd::geteuid().is_root() {
                stat.blocks_free()
            } else {
                stat.blocks_available()
            };
            free == 0
        }
        Err(_) => false,
    }
}

/// Writes `bytes` to `path` through a staging file created 0600, synced and renamed into
/// place: a reader never sees half of it, and nobody but the host's user ever can.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_private_owned(path, bytes, None)
}

/// As [`write_private`], the file given to `owner` (uid, gid) before it appears at `path`. The
/// staging file is created without following a link, and the rename replaces whatever is at
/// `path` (a link planted there is replaced, never written through): safe in a directory its
/// future owner can write to.
pub fn write_private_owned(
    path: &Path,
    bytes: &[u8],
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    // `NAME.new` beside it (not `with_extension`: `com.example.A` and `com.example.B` would
    // share `com.example.new`).
    let mut staging = path.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(PRIVATE_FILE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&staging)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&staging, path)
}

/// Creates `path` empty and 0600 if it does not exist, else takes from it every bit for others.
/// For files another library then opens (SQLite gives its `-wal` and `-shm` files the
/// database's mode).
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => close(path, PRIVATE_FILE),
        Err(e) => Err(e),
    }
}

/// One host per root: an exclusive lock on `ROOT/state/host.lock` (holding the holder's pid),
/// taken before the host touches anything else of the root, and released by the kernel when
/// the process ends, however it ends. A second host on a running root stops there, before it
/// would end the first one's processes as leftovers or replace its IPC socket.
#[derive(Debug)]
pub struct RootLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

#[derive(Debug, thiserror::Error)]
pub enum RootLockError {
    #[error("another Lambkin host runs on {root}{holder}: one host per root")]
    Held { root: String, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl RootLock {
    pub fn acquire(layout: &Layout) -> Result<Self, RootLockError> {
        let path = layout.state_dir().join("host.lock");
        let io = |source| RootLockError::Io {
            path: path.display().to_string(),
            source,
        };
        create_private_dir(&layout.state_dir()).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE_FILE)
            .open(&path)
            .map_err(io)?;
        let mut lock =
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .map(|pid| pid.trim().to_owned())
                        .filter(|pid| !pid.is_empty())
                        .map(|pid| format!(" (pid {pid})"))
                        .unwrap_or_default();
                    return Err(RootLockError::Held {
                        root: layout.root().display().to_string(),
                        holder,
                    });
                }
                Err((_, e)) => return Err(io(e.into())),
            };
        lock.set_len(0).map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _lock: lock })
    }
}

/// Creates `dir` (and what is missing above it) as a private directory.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)?;
    close(dir, PRIVATE_DIR)
}

/// Takes from `path` every permission bit `mode` does not have (missing is fine).
fn close(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Ok(()),
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
    }
    Ok(())
}

/// Closes `dir` and everything under it: directories to 0700 and files to 0600 at most.
fn close_tree(dir: &Path) -> std::io::Result<()> {
    close(dir, PRIVATE_DIR)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            close_tree(&entry.path())?;
        } else if !kind.is_symlink() {
            close(&entry.path(), PRIVATE_FILE)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_absolute() {
        let layout = Layout::resolve(None, None);
        assert!(layout.root().is_absolute());
        assert!(layout.root().ends_with("lambkin-root"));
        assert!(Layout::new("a/b").runtimes_dir().is_absolute());
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_hosts_own_files_are_closed_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        // What an earlier version (or a permissive umask) left open.
        std::fs::create_dir_all(layout.state_dir().join("bootstrapped")).unwrap();
        for (path, m) in [
            (layout.state_dir(), 0o755),
            (layout.state_dir().join("bootstrapped"), 0o777),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let open_files = [
            layout.database(),
            layout.state_dir().join("bootstrapped/com.example.A"),
            layout.config_file(),
        ];
        for file in &open_files {
            std::fs::write(file, "x").unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        std::fs::create_dir_all(layout.logs_dir()).unwrap();
        std::fs::write(layout.host_log(), "x").unwrap();
        std::fs::set_permissions(layout.host_log(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        // An executable bit the host set itself stays (only others' bits go).
        std::fs::write(layout.state_dir().join("tool"), "x").unwrap();
        std::fs::set_permissions(
            layout.state_dir().join("tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();

        layout.create_dirs().unwrap();

        assert_eq!(mode(&layout.state_dir()), 0o700);
        assert_eq!(mode(&layout.state_dir().join("bootstrapped")), 0o700);
        assert_eq!(mode(&layout.logs_dir()), 0o700);
        for file in open_files.iter().chain([&layout.host_log()]) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert_eq!(mode(&layout.state_dir().join("tool")), 0o600);
        assert_eq!(mode(&layout.functions_dir()), 0o711);
        assert_eq!(mode(&layout.runtimes_dir()), 0o755);
    }

    #[test]
    fn private_files_are_born_private() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("token");
        write_private(&file, b"secret").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"secret");
        assert_eq!(mode(&file), 0o600);
        write_private(&file, b"again").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"again");

        let db = tmp.path().join("store.db");
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);

        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
