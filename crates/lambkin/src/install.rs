//! `lambkin install` and `lambkin uninstall`: a device set up as the Greengrass installer sets
//! one up, without its JVM. Install (root only) creates the components' default user and
//! group when missing, the root directory with the owners and modes the host gives it at
//! start ([`Layout::create_dirs`], `users::open_root`), a `config.toml` from flags
//! (checked as `check-config` checks it) and a systemd unit. What it made that was not there
//! before is recorded in `ROOT/state/install.json`, so that uninstall removes that and nothing
//! else.
//!
//! Every path from a flag is checked before anything is written: the binary the unit runs as
//! root, the root, the unit directory and the TLS files must not be reachable through a
//! directory (or link) that a user other than root can change, or that user could swap in a
//! link and have root write, read or run what they chose.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::HostConfig;
use crate::layout::Layout;
use crate::users::UserError;

/// The unit's file name.
pub const UNIT_NAME: &str = "lambkin.service";
/// Directories systemd loads units from; a `--unit-dir` among them gets `systemctl` calls.
const SYSTEMD_UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// What the unit's `TimeoutStopSec` gives the host on top of its instances' shutdown grace:
/// the host stops its components one after another, each within its `Shutdown` step's
/// timeout (15 s unless its recipe says otherwise), before it ends their process groups.
const STOP_SLACK: Duration = Duration::from_secs(120);

/// `lambkin install`'s flags.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub layout: Layout,
    pub unit_dir: PathBuf,
    /// The binary the unit runs; default: this one.
    pub binary: Option<PathBuf>,
    pub thing_name: Option<String>,
    pub region: Option<String>,
    /// `mqtts://HOST[:PORT]`, `mqtt://...`, or a bare host (then `mqtts://`).
    pub mqtt_endpoint: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// `USER` or `USER:GROUP`; default `ggc_user:ggc_group`.
    pub component_default_user: Option<String>,
    /// Replace an existing `config.toml` that differs from the flags'.
    pub force: bool,
    /// Print the `systemctl` commands instead of running them.
    pub no_enable: bool,
    /// Write no unit and call no `systemctl`: the unit comes from elsewhere (the Debian
    /// package ships the one [`print_unit`] prints, and its scripts enable it).
    pub no_unit: bool,
}

/// `lambkin uninstall`'s flags.
#[derive(Debug, Clone)]
pub struct UninstallOptions {
    pub layout: Layout,
    /// Remove the root directory too.
    pub purge: bool,
    /// Print the `systemctl` commands instead of running them.
    pub no_enable: bool,
}

/// Why install or uninstall stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{command} must run as root: it creates users, the root directory and a systemd unit (try sudo)")]
    NotRoot { command: &'static str },
    #[error("invalid flags: {0}")]
    Flags(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "{path} exists and differs from what the flags give: it is kept (--force replaces it)"
    )]
    ConfigExists { path: PathBuf },
    #[error(transparent)]
    Locked(#[from] crate::layout::RootLockError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{command}: {why}")]
    Command { command: String, why: String },
    #[error("no installation is recorded in {0}: nothing to uninstall there")]
    NotInstalled(PathBuf),
    #[error("uninstall left things behind: {0}")]
    Incomplete(String),
}

impl InstallError {
    /// The process's exit status: 78 for a bad flag or configuration, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Flags(_) | Self::Config(_) => crate::cli::EXIT_CONFIG,
            Self::NotRoot { .. }
            | Self::ConfigExists { .. }
            | Self::Locked(_)
            | Self::User(_)
            | Self::Io { .. }
            | Self::Command { .. }
            | Self::NotInstalled(_)
            | Self::Incomplete(_) => 1,
        }
    }
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What install made, in `ROOT/state/install.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The unit file written; `None` when install wrote none (`--no-unit`).
    pub unit: Option<PathBuf>,
    /// The components' default user and group names, and whether install created them.
    pub user: String,
    pub group: Option<String>,
    pub created_user: bool,
    pub created_group: bool,
}

/// Where the record lives.
pub fn record_file(layout: &Layout) -> PathBuf {
    layout.state_dir().join("install.json")
}

/// `lambkin install`.
pub fn install(opts: &InstallOptions) -> Result<(), InstallError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(InstallError::NotRoot {
            command: "lambkin install",
        });
    }
    let plan = Plan::check(opts)?;
    let layout = &opts.layout;
    let root = layout.root();
    // As the host makes it (0755 whatever the umask), before the lock makes `state/` in it.
    if !root.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .map_err(io("create", root))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
            .map_err(io("create", root))?;
    }
    // Refuses a root a host is running on before anything in it is changed.
    let _lock = crate::layout::RootLock::acquire(layout)?;

    let (user_name, group_name) = account_names(&plan.default_user);
    let user_was_missing =
        user_name.is_some_and(|u| matches!(nix::unistd::User::from_name(u), Ok(None)));
    let group_was_missing =
        group_name.is_some_and(|g| matches!(nix::unistd::Group::from_name(g), Ok(None)));
    let run_as = crate::users::resolve_or_create(&plan.default_user)?;
    if user_was_missing || group_was_missing {
        println!("created the components' default user {}", plan.default_user);
    }

    // An existing root others could write to would let them swap the host's directories.
    let mode = std::fs::metadata(root).map_err(io("read", root))?.mode() & 0o7777;
    if mode & 0o022 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & !0o022))
            .map_err(io("close", root))?;
    }
    layout.create_dirs().map_err(io("set up", root))?;
    crate::users::open_root(layout, &run_as).map_err(io("open", root))?;
    println!("root {} ready", root.display());

    if let Some(text) = &plan.config_text {
        let path = layout.config_file();
        crate::layout::write_private(&path, text.as_bytes()).map_err(io("write", &path))?;
        println!("wrote {}", path.display());
    }

    let unit = (!opts.no_unit).then(|| opts.unit_dir.join(UNIT_NAME));
    let previous = read_record(layout).ok();
    let same_account = previous
        .as_ref()
        .is_some_and(|p| Some(p.user.as_str()) == user_name && p.group.as_deref() == group_name);
    let record = Record {
        unit: unit.clone(),
        user: user_name.unwrap_or_default().to_owned(),
        group: group_name.map(str::to_owned),
        created_user: user_was_missing
            || (same_account && previous.as_ref().is_some_and(|p| p.created_user)),
        created_group: group_was_missing
            || (same_account && previous.as_ref().is_some_and(|p| p.created_group)),
    };
    let record_path = record_file(layout);
    let json = serde_json::to_vec_pretty(&record).map_err(|e| InstallError::Io {
        action: "encode",
        path: record_path.clone(),
        source: e.into(),
    })?;
    crate::layout::write_private(&record_path, &json).map_err(io("write", &record_path))?;

    let Some(unit) = unit else {
        println!("no unit written (--no-unit)");
        return Ok(());
    };
    write_unit(&unit, &plan.unit_text)?;
    println!("wrote {}", unit.display());

    if is_system_unit_dir(&opts.unit_dir) {
        systemctl(
            &[&["daemon-reload"], &["enable", UNIT_NAME]],
            opts.no_enable,
        )?;
        if !opts.no_enable {
            println!("enabled {UNIT_NAME}; start it with: systemctl start lambkin");
        }
    } else {
        println!(
            "{} is not a directory systemd loads units from: no systemctl call made",
            opts.unit_dir.display()
        );
    }
    Ok(())
}

/// `lambkin uninstall`.
pub fn uninstall(opts: &UninstallOptions) -> Result<(), InstallError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(InstallError::NotRoot {
            command: "lambkin uninstall",
        });
    }
    let layout = &opts.layout;
    let root = layout.root();
    let problems = trust_problems(root, "--root");
    if !problems.is_empty() {
        return Err(InstallError::Flags(problems.join("; ")));
    }
    let record = read_record(layout)?;
    let system = record
        .unit
        .as_deref()
        .is_some_and(|unit| is_system_unit_dir(unit.parent().unwrap_or(Path::new("/"))));
    if system {
        systemctl(&[&["disable", "--now", UNIT_NAME]], opts.no_enable)?;
    }
    let lock = crate::layout::RootLock::acquire(layout)?;
    let mut left = Vec::new();
    if let Some(unit) = &record.unit {
        match std::fs::remove_file(unit) {
            Ok(()) => println!("removed {}", unit.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => left.push(format!("{}: {e}", unit.display())),
        }
    }
    if system {
        if let Err(e) = systemctl(&[&["daemon-reload"]], opts.no_enable) {
            left.push(e.to_string());
        }
    }
    if record.created_user {
        match remove_account("userdel", &record.user) {
            Ok(()) => println!("removed user {}", record.user),
            Err(e) => left.push(e),
        }
    }
    if let (true, Some(group)) = (record.created_group, &record.group) {
        match remove_account("groupdel", group) {
            Ok(()) => println!("removed group {group}"),
            Err(e) => left.push(e),
        }
    }
    if !left.is_empty() {
        // The record stays: a second uninstall tries again.
        return Err(InstallError::Incomplete(left.join("; ")));
    }
    drop(lock);
    if opts.purge {
        // Not followed if it is a link (checked above: no one else could have made it one).
        std::fs::remove_dir_all(root).map_err(io("remove", root))?;
        println!("removed {}", root.display());
    } else {
        let path = record_file(layout);
        std::fs::remove_file(&path).map_err(io("remove", &path))?;
        println!("kept {} (--purge removes it)", root.display());
    }
    Ok(())
}

/// `lambkin install --print-unit`: the unit install writes for a host running `binary` on
/// the root of `layout` with the default configuration, for a package to ship (the same on
/// every machine it is built on: a device's own `[lambda] shutdown_grace_ms` is not known
/// there). Nothing is checked on the machine and nothing is written: the binary need not be
/// there yet, and no root is needed.
pub fn print_unit(layout: &Layout, binary: Option<&Path>) -> Result<String, InstallError> {
    let binary = match binary {
        Some(b) if b.is_absolute() => b.to_owned(),
        Some(b) => {
            return Err(InstallError::Flags(format!(
                "--binary {}: the unit needs an absolute path",
                b.display()
            )))
        }
        None => std::env::current_exe().map_err(io("find", Path::new("this binary")))?,
    };
    let root = std::path::absolute(layout.root()).unwrap_or_else(|_| layout.root().to_owned());
    let config = HostConfig::default();
    unit_text(&binary, &root, config.lambda.shutdown_grace()).map_err(InstallError::Flags)
}

/// Everything install will write, worked out and checked before anything is.
#[derive(Debug)]
struct Plan {
    default_user: String,
    config_text: Option<String>,
    unit_text: String,
}

impl Plan {
    fn check(opts: &InstallOptions) -> Result<Self, InstallError> {
        let mut problems = Vec::new();
        let layout = &opts.layout;
        let binary = match &opts.binary {
            Some(b) => std::path::absolute(b).unwrap_or_else(|_| b.clone()),
            None => std::env::current_exe().map_err(io("find", Path::new("this binary")))?,
        };
        match std::fs::metadata(&binary) {
            Ok(m) if m.is_file() && m.mode() & 0o111 != 0 => {}
            Ok(_) => problems.push(format!(
                "--binary {} is not an executable file",
                binary.display()
            )),
            Err(e) => problems.push(format!("--binary {}: {e}", binary.display())),
        }
        problems.extend(trust_problems(&binary, "--binary"));
        let root = layout.root();
        problems.extend(trust_problems(root, "--root"));
        if let Ok(meta) = std::fs::symlink_metadata(root) {
            if !meta.is_dir() {
                problems.push(format!("--root {} is not a directory", root.display()));
            }
        }
        if !opts.no_unit {
            let unit_dir = std::path::absolute(&opts.unit_dir).unwrap_or(opts.unit_dir.clone());
            if !unit_dir.is_dir() {
                problems.push(format!(
                    "--unit-dir {} is not a directory",
                    unit_dir.display()
                ));
            }
            problems.extend(trust_problems(&unit_dir, "--unit-dir"));
        }
        let mut tls = Vec::new();
        for (flag, path) in [
            ("--cert", &opts.cert),
            ("--key", &opts.key),
            ("--ca", &opts.ca),
        ] {
            if let Some(path) = path {
                let path = std::path::absolute(path).unwrap_or(path.clone());
                problems.extend(trust_problems(&path, flag));
                tls.push((flag, path));
            }
        }
        if !tls.is_empty() && opts.mqtt_endpoint.is_none() {
            problems.push("--cert, --key and --ca need --mqtt-endpoint".to_owned());
        }
        if let Some(spec) = &opts.component_default_user {
            if let Err(e) = crate::users::parse_posix_user(spec) {
                problems.push(format!("--component-default-user: {e}"));
            }
        }
        for (flag, value) in [("--binary", Some(binary.as_path())), ("--root", Some(root))] {
            if let Some(p) = value {
                if let Err(e) = unit_word(p) {
                    problems.push(format!("{flag} {}: {e}", p.display()));
                }
            }
        }
        if !problems.is_empty() {
            return Err(InstallError::Flags(problems.join("; ")));
        }

        let path = layout.config_file();
        let wanted = config_text(opts, &tls);
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &path)(e)),
        };
        let (config, config_text) = match (wanted, existing) {
            (Some(text), existing) => {
                let config = HostConfig::from_text(&text, &path)?;
                crate::cli::check_files(&config, &path)?;
                match existing {
                    Some(old) if old == text => (config, None),
                    Some(_) if !opts.force => return Err(InstallError::ConfigExists { path }),
                    _ => (config, Some(text)),
                }
            }
            // No flag for the configuration: what is there (or the defaults) must be valid.
            (None, _) => (crate::cli::load_config(layout, None)?, None),
        };
        let default_user = config
            .run_with_default
            .posix_user
            .clone()
            .unwrap_or_else(|| crate::users::DEFAULT_POSIX_USER.to_owned());
        let unit_text = unit_text(&binary, root, config.lambda.shutdown_grace())
            .map_err(InstallError::Flags)?;
        Ok(Self {
            default_user,
            config_text,
            unit_text,
        })
    }
}

/// `config.toml` from the flags, holding only what they give; `None` when they give nothing.
fn config_text(opts: &InstallOptions, tls: &[(&str, PathBuf)]) -> Option<String> {
    use toml::Value;
    let mut top = toml::Table::new();
    if let Some(thing) = &opts.thing_name {
        top.insert("thing_name".into(), Value::String(thing.clone()));
    }
    if let Some(region) = &opts.region {
        top.insert("region".into(), Value::String(region.clone()));
    }
    if let Some(user) = &opts.component_default_user {
        let mut table = toml::Table::new();
        table.insert("posix_user".into(), Value::String(user.clone()));
        top.insert("run_with_default".into(), Value::Table(table));
    }
    if let Some(endpoint) = &opts.mqtt_endpoint {
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("mqtts://{endpoint}")
        };
        let mut mqtt = toml::Table::new();
        mqtt.insert("url".into(), Value::String(url));
        for (flag, path) in tls {
            let key = flag.trim_start_matches('-');
            mqtt.insert(
                key.into(),
                Value::String(path.to_string_lossy().into_owned()),
            );
        }
        top.insert("mqtt".into(), Value::Table(mqtt));
    }
    if top.is_empty() {
        return None;
    }
    let body = toml::to_string(&top).ok()?;
    Some(format!(
        "# Written by `lambkin install`; every key is described in the README's Configuration.\n{body}"
    ))
}

/// The systemd unit for a host running `binary` on `root`.
pub fn unit_text(binary: &Path, root: &Path, shutdown_grace: Duration) -> Result<String, String> {
    let stop_timeout = (shutdown_grace + STOP_SLACK).as_secs_f64().ceil();
    Ok(format!(
        r#"# Written by `lambkin install` (`lambkin uninstall` removes it), or shipped by the lambkin
# Debian package (`lambkin install --print-unit`).
[Unit]
Description=Lambkin edge function host (AWS Lambda functions, AWS IoT Greengrass V2 components)
# Started once the network is configured (not online: the host starts offline and connects
# when it can), and stopped before it goes, so components' Shutdown steps still have it.
After=network.target

[Service]
Type=exec
ExecStart={binary} run --root {root}
Restart=on-failure
RestartSec=5
# An invalid configuration (exit 78) is not fixed by starting again.
RestartPreventExitStatus=78
# SIGTERM goes to the host alone: it stops its components itself (their Shutdown steps, then
# SIGTERM and SIGKILL to each one's process group and cgroup within its grace) and exits 0.
# The default, control-group, would signal every component process at once, before its
# Shutdown step could run. Whatever is still in the unit's cgroup once the host has exited,
# or at TimeoutStopSec, gets SIGKILL.
KillMode=mixed
# Above the host's shutdown grace: components stop one after another, each within its
# Shutdown step's timeout, then instances get the grace ([lambda] shutdown_grace_ms).
TimeoutStopSec={stop_timeout}
# A function that runs the device out of memory is the host's to handle (its instance ends
# with the error); the default policy would stop the whole service.
OOMPolicy=continue
UMask=0022
# Hardening that leaves the host what it needs: it runs components and functions as other
# users, makes mount namespaces and cgroups (/sys/fs/cgroup stays writable), binds loopback
# ports and a unix socket; its components run inside this sandbox too. The README's "On a
# device" says which other options do not apply, and why.
LockPersonality=yes
ProtectKernelLogs=yes

[Install]
WantedBy=multi-user.target
"#,
        binary = unit_word(binary)?,
        root = unit_word(root)?,
    ))
}

/// `path` as one word of a unit's command line: double-quoted, with `\` and `"` escaped, `%`
/// (a specifier) doubled and `$` (a variable) doubled. Control characters and non-UTF-8
/// paths are refused: the unit is text that systemd reads line by line.
fn unit_word(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| "a path in a unit must be UTF-8".to_owned())?;
    if text.chars().any(char::is_control) {
        return Err("a path in a unit may not hold control characters".to_owned());
    }
    let mut word = String::with_capacity(text.len() + 2);
    word.push('"');
    for c in text.chars() {
        match c {
            '\\' => word.push_str("\\\\"),
            '"' => word.push_str("\\\""),
            '%' => word.push_str("%%"),
            '$' => word.push_str("$$"),
            c => word.push(c),
        }
    }
    word.push('"');
    Ok(word)
}

/// The user and group names `spec` would create (numeric ids are never created).
fn account_names(spec: &str) -> (Option<&str>, Option<&str>) {
    let Ok((user, group)) = crate::users::parse_posix_user(spec) else {
        return (None, None);
    };
    let named = |s: &str| s.parse::<u32>().is_err();
    (Some(user).filter(|u| named(u)), group.filter(|g| named(g)))
}

/// What keeps `path` (named by `flag`) from being root's alone: every directory on the way to
/// it, along the path as given and along where its links lead, must belong to root and be
/// writable by no one else. A directory others may write to but with the sticky bit (`/tmp`)
/// is passed only to an entry that exists, is no link and is root's: its owner alone may
/// rename or remove it there; a missing one could be made by anyone first.
pub fn trust_problems(path: &Path, flag: &str) -> Vec<String> {
    let mut chains = vec![path.to_owned()];
    // The deepest part that exists, with its links resolved, and the rest as given.
    if let Some(existing) = path.ancestors().find(|a| a.exists()) {
        if let (Ok(real), Ok(rest)) = (existing.canonicalize(), path.strip_prefix(existing)) {
            let real = real.join(rest);
            if real != path {
                chains.push(real);
            }
        }
    }
    let mut problems = Vec::new();
    for chain in chains {
        if let Err(why) = root_controlled(&chain) {
            problems.push(format!("{flag} {}: {why}", path.display()));
            break;
        }
    }
    problems
}

fn root_controlled(path: &Path) -> Result<(), String> {
    let mut open_parent: Option<&Path> = None;
    let prefixes: Vec<&Path> = path.ancestors().collect();
    for prefix in prefixes.into_iter().rev() {
        let meta = match std::fs::symlink_metadata(prefix) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match open_parent {
                    Some(dir) => Err(format!(
                        "it would be made in {}, which other users can write to",
                        dir.display()
                    )),
                    None => Ok(()),
                };
            }
            Err(e) => return Err(format!("{}: {e}", prefix.display())),
        };
        if meta.uid() != 0 {
            return Err(format!(
                "{} belongs to uid {}, not root",
                prefix.display(),
                meta.uid()
            ));
        }
        open_parent = None;
        if meta.file_type().is_symlink() {
            // Root's link: where it leads is the other chain.
            continue;
        }
        if meta.mode() & 0o022 != 0 {
            if meta.is_dir() && meta.mode() & 0o1000 != 0 {
                open_parent = Some(prefix);
            } else {
                return Err(format!(
                    "{} can be written by users other than root (mode {:o})",
                    prefix.display(),
                    meta.mode() & 0o7777
                ));
            }
        }
    }
    match open_parent {
        Some(dir) => Err(format!("{} can be written by other users", dir.display())),
        None => Ok(()),
    }
}

fn read_record(layout: &Layout) -> Result<Record, InstallError> {
    let path = record_file(layout);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InstallError::NotInstalled(path))
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    serde_json::from_slice(&text).map_err(|e| InstallError::Io {
        action: "read",
        path,
        source: e.into(),
    })
}

/// Writes the unit through a staging file made without following a link, mode 0644 (it holds
/// nothing secret; systemctl shows it to everyone), synced, then renamed into place.
fn write_unit(path: &Path, text: &str) -> Result<(), InstallError> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    match std::fs::remove_file(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &staging)(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&staging)
        .map_err(io("create", &staging))?;
    // The umask may have taken bits; the mode is set, not assumed.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io("write", &staging))?;
    std::fs::rename(&staging, path).map_err(io("write", path))
}

/// Whether systemd loads units from `dir`.
fn is_system_unit_dir(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    SYSTEMD_UNIT_DIRS
        .iter()
        .filter_map(|d| Path::new(d).canonicalize().ok())
        .any(|d| d == dir)
}

/// Runs each `systemctl` command in turn, or prints them all when `print_only`.
fn systemctl(commands: &[&[&str]], print_only: bool) -> Result<(), InstallError> {
    for args in commands {
        let line = format!("systemctl {}", args.join(" "));
        if print_only {
            println!("run: {line}");
            continue;
        }
        let output = std::process::Command::new("systemctl")
            .args(*args)
            .output()
            .map_err(|e| InstallError::Command {
                command: line.clone(),
                why: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(InstallError::Command {
                command: line,
                why: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
    }
    Ok(())
}

fn remove_account(tool: &str, name: &str) -> Result<(), String> {
    let output = std::process::Command::new(tool)
        .arg(name)
        .output()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} {name}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_words_are_quoted_and_escaped() {
        assert_eq!(
            unit_word(Path::new("/usr/bin/lambkin")).unwrap(),
            "\"/usr/bin/lambkin\""
        );
        assert_eq!(
            unit_word(Path::new("/opt/a b/100%/$HOME/\"q\"\\")).unwrap(),
            "\"/opt/a b/100%%/$$HOME/\\\"q\\\"\\\\\""
        );
        assert!(unit_word(Path::new("/opt/a\nExecStartPre=/bin/sh")).is_err());
    }

    #[test]
    fn the_stop_timeout_is_above_the_grace() {
        let text = unit_text(
            Path::new("/usr/bin/lambkin"),
            Path::new("/var/lib/lambkin"),
            Duration::from_millis(2500),
        )
        .unwrap();
        assert!(text.contains("TimeoutStopSec=123\n"), "{text}");
        assert!(text.contains("KillMode=mixed\n"));
        assert!(text.contains("ExecStart=\"/usr/bin/lambkin\" run --root \"/var/lib/lambkin\"\n"));
    }

    #[test]
    fn only_named_accounts_are_created() {
        assert_eq!(
            account_names("ggc_user:ggc_group"),
            (Some("ggc_user"), Some("ggc_group"))
        );
        assert_eq!(account_names("1000:ggc"), (None, Some("ggc")));
        assert_eq!(account_names("u"), (Some("u"), None));
    }
}
