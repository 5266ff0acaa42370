//! `lambkin install` and `lambkin uninstall` against a scratch root and unit directory: the
//! unit systemd accepts, the configuration `check-config` accepts, the owners and modes of
//! the root, the default user and group made and removed again; bad flags refused before
//! anything is written; a user who is not root refused. `--print-unit` gives the unit
//! install writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

fn lambkin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn user_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).unwrap().is_some()
}

fn group_exists(name: &str) -> bool {
    nix::unistd::Group::from_name(name).unwrap().is_some()
}

/// A user and group name of this test run's own (removed again if a test failed midway).
struct Account {
    user: String,
    group: String,
}

impl Account {
    fn new(tag: &str) -> Account {
        let n = std::process::id();
        Account {
            user: format!("lkin{tag}{n}"),
            group: format!("lkin{tag}{n}g"),
        }
    }
    fn spec(&self) -> String {
        format!("{}:{}", self.user, self.group)
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        if user_exists(&self.user) {
            let _ = Command::new("userdel").arg(&self.user).output();
        }
        if group_exists(&self.group) {
            let _ = Command::new("groupdel").arg(&self.group).output();
        }
    }
}

/// PEM files of a CA, and of a device certificate and key it signed, in `dir`.
fn device_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let device_key = KeyPair::generate().unwrap();
    let device = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&device_key, &ca, &ca_key)
        .unwrap();
    let paths = (
        dir.join("AmazonRootCA1.pem"),
        dir.join("device.pem.crt"),
        dir.join("private.pem.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, device.pem()).unwrap();
    std::fs::write(&paths.2, device_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&paths.2, std::fs::Permissions::from_mode(0o600)).unwrap();
    paths
}

/// `systemd-analyze verify` on `unit`: `None` when the tool is not installed.
fn verify(unit: &Path) -> Option<Output> {
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .ok()
}

#[test]
fn install_writes_a_unit_systemd_accepts_and_uninstall_removes_what_it_made() {
    require_root!("installing");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let units = tmp.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let (ca, cert, key) = device_files(&tmp.path().join("certs"));
    let account = Account::new("i");
    assert!(!user_exists(&account.user) && !group_exists(&account.group));
    let spec = account.spec();
    let binary = env!("CARGO_BIN_EXE_lambkin");
    let install_args = |thing: &str| -> Vec<String> {
        [
            "install",
            "--root",
            root.to_str().unwrap(),
            "--unit-dir",
            units.to_str().unwrap(),
            "--binary",
            binary,
            "--thing-name",
            thing,
            "--region",
            "eu-central-1",
            "--mqtt-endpoint",
            "abcdef-ats.iot.eu-central-1.amazonaws.com",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
            "--component-default-user",
            &spec,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |args: &[String]| lambkin(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let out = run(&install_args("gateway-7"));
    assert!(out.status.success(), "{}", text(&out));

    // The unit: what systemd itself makes of it, and what it runs.
    let unit = units.join("lambkin.service");
    match verify(&unit) {
        None => support::skipped(
            "systemd-analyze is not installed (scripts/install-test-deps installs it)",
        ),
        Some(verified) => {
            assert!(
                verified.status.success() && verified.stderr.is_empty(),
                "systemd-analyze verify: {}",
                text(&verified)
            );
        }
    }
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let exec = format!("ExecStart=\"{binary}\" run --root \"{}\"\n", root.display());
    for line in [
        exec.as_str(),
        "Restart=on-failure\n",
        "KillMode=mixed\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(
            unit_text.contains(line),
            "{line:?} missing from:\n{unit_text}"
        );
    }
    let stop_timeout: u64 = unit_text
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stop_timeout > 2,
        "TimeoutStopSec={stop_timeout} is not above the 2 s grace"
    );
    assert_eq!(mode(&unit), 0o644);
    // The unit a package ships (`--print-unit`, the default configuration's) is this one.
    let printed = lambkin(&[
        "install",
        "--print-unit",
        "--binary",
        binary,
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(printed.status.success(), "{}", text(&printed));
    assert_eq!(String::from_utf8_lossy(&printed.stdout), unit_text);

    // The configuration: what check-config says of it, and only what the flags gave.
    let checked = lambkin(&["check-config", "--root", root.to_str().unwrap()]);
    assert!(checked.status.success(), "{}", text(&checked));
    let config = std::fs::read_to_string(root.join("config.toml")).unwrap();
    for expected in [
        "thing_name = \"gateway-7\"",
        "region = \"eu-central-1\"",
        "url = \"mqtts://abcdef-ats.iot.eu-central-1.amazonaws.com\"",
        &format!("posix_user = \"{spec}\""),
    ] {
        assert!(
            config.contains(expected),
            "{expected:?} missing from:\n{config}"
        );
    }
    assert!(!config.contains("listen"), "a key no flag gave:\n{config}");

    // The root: root's, with the modes the host gives it.
    for (path, expected) in [
        (root.clone(), 0o755),
        (root.join("state"), 0o700),
        (root.join("logs"), 0o700),
        (root.join("functions"), 0o711),
        (root.join("runtimes"), 0o755),
        (root.join("config.toml"), 0o600),
        (root.join("state/install.json"), 0o600),
    ] {
        assert_eq!(mode(&path), expected, "{}", path.display());
        assert_eq!(
            std::fs::metadata(&path).unwrap().uid(),
            0,
            "{}",
            path.display()
        );
    }
    // The default user and group, as the host looks them up.
    assert!(user_exists(&account.user) && group_exists(&account.group));
    let user = nix::unistd::User::from_name(&account.user)
        .unwrap()
        .unwrap();
    let group = nix::unistd::Group::from_name(&account.group)
        .unwrap()
        .unwrap();
    assert_eq!(user.gid, group.gid);
    assert!(user.uid.as_raw() != 0);

    // Another thing name, without --force: the configuration is kept.
    let out = run(&install_args("another"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(root.join("config.toml")).unwrap(),
        config
    );
    // The same flags again: nothing to change, and the user stays recorded as made here.
    let out = run(&install_args("gateway-7"));
    assert!(out.status.success(), "{}", text(&out));

    let out = lambkin(&["uninstall", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!unit.exists(), "the unit is still there");
    assert!(
        !user_exists(&account.user),
        "the user install made is still there"
    );
    assert!(
        !group_exists(&account.group),
        "the group install made is still there"
    );
    assert!(
        root.join("config.toml").exists(),
        "uninstall without --purge removed the root"
    );
    assert!(!root.join("state/install.json").exists());
    // Nothing recorded any more: a second uninstall has nothing to do.
    let out = lambkin(&["uninstall", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Installed again on the kept root, then purged.
    let out = run(&install_args("gateway-7"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(user_exists(&account.user));
    let out = lambkin(&["uninstall", "--purge", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root.exists(), "--purge kept the root");
    assert!(!unit.exists() && !user_exists(&account.user));
}

#[test]
fn a_user_the_device_already_had_is_kept_by_uninstall() {
    require_root!("installing");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let account = Account::new("k");
    for (tool, args) in [
        ("groupadd", vec!["--system", account.group.as_str()]),
        (
            "useradd",
            vec![
                "--system",
                "--gid",
                account.group.as_str(),
                account.user.as_str(),
            ],
        ),
    ] {
        assert!(Command::new(tool).args(&args).status().unwrap().success());
    }
    let spec = account.spec();
    let out = lambkin(&[
        "install",
        "--root",
        root.to_str().unwrap(),
        "--unit-dir",
        tmp.path().to_str().unwrap(),
        "--component-default-user",
        &spec,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = lambkin(&["uninstall", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!tmp.path().join("lambkin.service").exists());
    assert!(user_exists(&account.user) && group_exists(&account.group));
}

#[test]
fn bad_flag_values_are_refused_with_78_and_nothing_is_written() {
    require_root!("installing");
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let (ca, cert, key) = device_files(&tmp.path().join("certs"));
    // A directory an unprivileged user owns: it could swap what lies under it for a link.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let their_key = theirs.join("private.pem.key");
    std::fs::copy(&key, &their_key).unwrap();
    // A binary others may replace.
    let open_binary = tmp.path().join("lambkin-open");
    std::fs::copy(env!("CARGO_BIN_EXE_lambkin"), &open_binary).unwrap();
    std::fs::set_permissions(&open_binary, std::fs::Permissions::from_mode(0o777)).unwrap();
    let account = Account::new("b");
    let spec = account.spec();
    let root = tmp.path().join("root");
    let (ca, cert) = (ca.to_str().unwrap(), cert.to_str().unwrap());
    let endpoint = [
        "--mqtt-endpoint",
        "abcdef-ats.iot.eu-central-1.amazonaws.com",
    ];
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("region", vec!["--region", "Not A Region"]),
        ("thing_name", vec!["--thing-name", ""]),
        ("mqtt.url", vec!["--mqtt-endpoint", "http://broker"]),
        ("need --mqtt-endpoint", vec!["--ca", ca]),
        (
            "--component-default-user",
            vec!["--component-default-user", "a:b:c"],
        ),
        (
            "missing.key",
            [
                &endpoint[..],
                &[
                    "--ca",
                    ca,
                    "--cert",
                    cert,
                    "--key",
                    "/nonexistent/missing.key",
                ],
            ]
            .concat(),
        ),
        (
            "belongs to uid 65534",
            [
                &endpoint[..],
                &[
                    "--ca",
                    ca,
                    "--cert",
                    cert,
                    "--key",
                    their_key.to_str().unwrap(),
                ],
            ]
            .concat(),
        ),
        (
            "can be written by users other than root",
            vec!["--binary", open_binary.to_str().unwrap()],
        ),
    ];
    for (named, flags) in cases {
        let mut args = vec![
            "install",
            "--root",
            root.to_str().unwrap(),
            "--unit-dir",
            units.to_str().unwrap(),
        ];
        if !flags.contains(&"--component-default-user") {
            args.extend(["--component-default-user", spec.as_str()]);
        }
        args.extend(&flags);
        let out = lambkin(&args);
        assert_eq!(out.status.code(), Some(78), "{flags:?}: {}", text(&out));
        assert!(
            text(&out).contains(named),
            "{flags:?} should name {named:?}: {}",
            text(&out)
        );
        assert!(!root.exists(), "{flags:?}: the root was made");
        assert_eq!(
            std::fs::read_dir(&units).unwrap().count(),
            0,
            "{flags:?}: a unit was written"
        );
        assert!(!user_exists(&account.user), "{flags:?}: the user was made");
    }
    // A root under a directory an unprivileged user owns.
    let under_theirs = theirs.join("root");
    let out = lambkin(&[
        "install",
        "--root",
        under_theirs.to_str().unwrap(),
        "--unit-dir",
        units.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(text(&out).contains("--root"), "{}", text(&out));
    assert!(!under_theirs.exists());
}

#[test]
fn install_refuses_a_user_who_is_not_root() {
    require_root!("switching to another user");
    // The components' default user when a host has made it, else nobody's ids.
    let made = nix::unistd::User::from_name("ggc_user")
        .unwrap()
        .zip(nix::unistd::Group::from_name("ggc_group").unwrap());
    let (uid, gid) = made.map_or((65534, 65534), |(u, g)| (u.uid.as_raw(), g.gid.as_raw()));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    for command in ["install", "uninstall"] {
        let mut args = vec![command, "--root", root.to_str().unwrap()];
        if command == "install" {
            args.extend(["--unit-dir", tmp.path().to_str().unwrap()]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_lambkin"))
            .args(&args)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        assert!(
            text(&out).contains("must run as root"),
            "{command}: {}",
            text(&out)
        );
        assert!(!root.exists());
        assert!(!tmp.path().join("lambkin.service").exists());
    }
}

/// Runs a host on `root` with its stderr in `stderr` and `JOURNAL_STREAM` set to
/// `journal_stream`, until it is ready; stops it; returns what it wrote there.
fn host_stderr(root: &Path, stderr: &Path, journal_stream: &str) -> String {
    let file = std::fs::File::create(stderr).unwrap();
    let addr_file = root.join("state/api.addr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambkin"))
        .args(["run", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .env("LAMBKIN_LOG", "info")
        .env("JOURNAL_STREAM", journal_stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let ready = support::wait_for(std::time::Duration::from_secs(20), || {
        addr_file.exists().then_some(())
    });
    support::signal(child.id(), "TERM");
    let exited = support::wait_for(std::time::Duration::from_secs(15), || {
        child.try_wait().unwrap()
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(stderr).unwrap();
    assert!(ready.is_some(), "the host did not become ready: {text}");
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "{text}");
    text
}

#[test]
fn the_hosts_stderr_carries_levels_for_the_journal_when_it_is_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let stderr = tmp.path().join("stderr");
    // What systemd sets: the device and inode of the stream it gave as stderr.
    std::fs::write(&stderr, "").unwrap();
    let meta = std::fs::metadata(&stderr).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let journal = host_stderr(&root, &stderr, &stream);
    let lines: Vec<&str> = journal.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("host ready")),
        "no info line for the host's start:\n{journal}"
    );
    for line in &lines {
        let level = line
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .and_then(|(n, _)| n.parse::<u8>().ok());
        assert!(
            level.is_some_and(|n| n <= 7),
            "a line without its level: {line:?}\n{journal}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "colours for the journal: {line:?}"
        );
    }

    // The variable inherited, but stderr is another file: left as it was.
    let other = tmp.path().join("other");
    std::fs::write(&other, "").unwrap();
    let meta = std::fs::metadata(&other).unwrap();
    let plain = host_stderr(&root, &stderr, &format!("{}:{}", meta.dev(), meta.ino()));
    assert!(plain.contains("host ready"), "{plain}");
    assert!(
        plain.lines().all(|l| !l.starts_with('<')),
        "prefixes on a stderr that is not the journal:\n{plain}"
    );
}
