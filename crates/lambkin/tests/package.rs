//! The Debian package: packed by cargo-deb from this build's binary with the metadata and
//! maintainer scripts `scripts/package` uses (which packs a release build), shown by
//! `dpkg-deb --info/--contents` with the binary and the unit, then installed, installed
//! again, removed and purged with `dpkg --root` in a scratch system (a chroot holding only
//! a shell, the few commands the scripts run and the shared libraries they need). postinst
//! sets the device up (`lambkin install`: the default user and group, the root with its
//! modes, the unit enabled at boot without systemctl), keeps an existing `config.toml` and
//! an administrator's `systemctl disable`; remove keeps the root; purge removes it with
//! `lambkin uninstall --purge`. Under systemd (a scratch system with `/run/systemd/system`
//! and a `systemctl` that records its calls) the scripts reload, enable, start and stop the
//! service through systemctl; without it they call none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where `scripts/install-cargo-deb` puts cargo-deb.
const CARGO_DEB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../.venv/tools/bin/cargo-deb"
);
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The PATH dpkg and its maintainer scripts run with (root's usual one).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// What the scripts and `lambkin install` run inside the scratch system.
const COMMANDS: [&str; 9] = [
    "/bin/sh",
    "/bin/rm",
    "/bin/ln",
    "/bin/mkdir",
    "/bin/cp",
    "/usr/sbin/useradd",
    "/usr/sbin/groupadd",
    "/usr/sbin/userdel",
    "/usr/sbin/groupdel",
];
const UNIT: &str = "usr/lib/systemd/system/lambkin.service";
const WANTS: &str = "etc/systemd/system/multi-user.target.wants/lambkin.service";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(command: &mut Command) -> Output {
    let out = command.stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", text(&out));
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn on_path(tool: &str) -> bool {
    PATH.split(':')
        .any(|dir| Path::new(dir).join(tool).exists())
}

/// The unit `lambkin install --print-unit` gives for the package's paths.
fn packaged_unit() -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_lambkin")).args([
        "install",
        "--print-unit",
        "--binary",
        "/usr/bin/lambkin",
        "--root",
        "/var/lib/lambkin",
    ]));
    String::from_utf8(out.stdout).unwrap()
}

/// The package, packed once for the tests of this file (under cargo's directory for tests'
/// scratch files, replaced at each run).
fn package() -> &'static Path {
    static PACKAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PACKAGE.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-test");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        build_package(&scratch)
    })
}

/// Packs the package into `out` as `scripts/package` does, from this build's binary (placed
/// where cargo-deb takes a release binary from, in a target directory of the test's own):
/// no second build.
fn build_package(scratch: &Path) -> PathBuf {
    let target = scratch.join("target");
    let release = target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    let binary = release.join("lambkin");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_lambkin"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_lambkin"), &binary).unwrap();
    }
    std::fs::write(release.join("lambkin.service"), packaged_unit()).unwrap();
    let out = scratch.join("deb");
    run(Command::new(CARGO_DEB)
        .args(["-p", "lambkin", "--no-build", "--locked", "--fast", "-o"])
        .arg(&out)
        .current_dir(WORKSPACE)
        .env("CARGO_TARGET_DIR", &target));
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs.into_iter().next().unwrap()
}

/// Copies `file` (its content, links followed) to the same path under `sysroot`.
fn copy_in(sysroot: &Path, file: &Path) {
    let dest = sysroot.join(file.strip_prefix("/").unwrap());
    if dest.exists() {
        return;
    }
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(file, &dest).unwrap();
}

/// The shared libraries `ldd` says `binary` loads, under `sysroot`.
fn copy_libraries(sysroot: &Path, binary: &Path) {
    let out = run(Command::new("ldd").arg(binary));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(path) = path {
            copy_in(sysroot, Path::new(path));
        }
    }
}

/// A system to install `deb` into: a dpkg database that holds only the packages `deb`
/// depends on (their entries from this machine's, their files copied in as far as the
/// scripts need them), root alone in the account files, and what the maintainer scripts run.
fn scratch_system(sysroot: &Path, deb: &Path) {
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "tmp",
        "etc",
        "dev",
    ] {
        std::fs::create_dir_all(sysroot.join(dir)).unwrap();
    }
    // A process's stdin (/dev/null) when the tool it runs needs none.
    let null = sysroot.join("dev/null");
    run(Command::new("mknod").arg(&null).args(["c", "1", "3"]));
    std::fs::set_permissions(&null, std::fs::Permissions::from_mode(0o666)).unwrap();
    let depends = run(Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg("Depends"));
    let depends: Vec<String> = String::from_utf8_lossy(&depends.stdout)
        .split(',')
        .filter_map(|d| d.split_whitespace().next().map(str::to_owned))
        .collect();
    let status = run(Command::new("dpkg-query").arg("--status").args(&depends));
    std::fs::write(sysroot.join("var/lib/dpkg/status"), &status.stdout).unwrap();
    // Their lists of files, empty: none of their files is dpkg's to manage here.
    let names = run(Command::new("dpkg-query")
        .args(["--show", "--showformat=${binary:Package}\\n"])
        .args(&depends));
    for name in String::from_utf8_lossy(&names.stdout).lines() {
        std::fs::write(sysroot.join(format!("var/lib/dpkg/info/{name}.list")), "").unwrap();
    }
    std::fs::write(sysroot.join("var/lib/dpkg/available"), "").unwrap();
    for (file, content, mode) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("etc/group", "root:x:0:\n", 0o644),
        ("etc/shadow", "root:*:20000:0:99999:7:::\n", 0o640),
        ("etc/gshadow", "root:*::\n", 0o640),
    ] {
        let path = sysroot.join(file);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    if Path::new("/etc/login.defs").exists() {
        copy_in(sysroot, Path::new("/etc/login.defs"));
    }
    for command in COMMANDS {
        copy_in(sysroot, Path::new(command));
        copy_libraries(sysroot, Path::new(command));
    }
    // The package brings the binary; the libraries it loads are the system's.
    copy_libraries(sysroot, Path::new(env!("CARGO_BIN_EXE_lambkin")));
}

/// `dpkg --root SYSROOT ARGS`; its output.
fn dpkg(sysroot: &Path, args: &[&str]) -> Output {
    Command::new("dpkg")
        .arg("--root")
        .arg(sysroot)
        .args(args)
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn dpkg_ok(sysroot: &Path, args: &[&str]) -> String {
    let out = dpkg(sysroot, args);
    let said = text(&out);
    assert!(out.status.success(), "dpkg {args:?}: {said}");
    said
}

fn account(sysroot: &Path, file: &str, name: &str) -> bool {
    std::fs::read_to_string(sysroot.join(file))
        .unwrap()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

/// A `systemctl` that records each call in /var/log/systemctl.calls and keeps `enable` in a
/// file, for `is-enabled`.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
echo "$*" >>/var/log/systemctl.calls
case "$1" in
enable) : >/var/lib/systemctl.enabled ;;
is-enabled) [ -e /var/lib/systemctl.enabled ] ;;
esac
"#;

#[test]
fn under_systemd_the_scripts_reload_enable_start_and_stop_the_service() {
    require_root!("installing a package into a scratch root (dpkg --root chroots)");
    require!(
        Path::new(CARGO_DEB).exists(),
        "cargo-deb is not installed (scripts/install-test-deps)"
    );
    require!(
        on_path("dpkg") && on_path("dpkg-deb"),
        "dpkg is not installed"
    );
    let tmp = tempfile::tempdir().unwrap();
    let deb = package();
    let deb_arg = deb.to_str().unwrap();
    let sys = tmp.path().join("sysroot");
    scratch_system(&sys, deb);
    std::fs::create_dir_all(sys.join("run/systemd/system")).unwrap();
    std::fs::create_dir_all(sys.join("var/log")).unwrap();
    std::fs::create_dir_all(sys.join("usr/bin")).unwrap();
    let systemctl = sys.join("usr/bin/systemctl");
    std::fs::write(&systemctl, FAKE_SYSTEMCTL).unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let calls = || -> Vec<String> {
        std::fs::read_to_string(sys.join("var/log/systemctl.calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };

    dpkg_ok(&sys, &["--install", deb_arg]);
    assert_eq!(
        calls(),
        [
            "daemon-reload",
            "enable lambkin.service",
            "daemon-reload",
            "is-enabled --quiet lambkin.service",
            "start lambkin.service"
        ]
    );
    assert!(
        std::fs::symlink_metadata(sys.join(WANTS)).is_err(),
        "the link is systemctl's to make under systemd"
    );
    std::fs::remove_file(sys.join("var/log/systemctl.calls")).unwrap();
    dpkg_ok(&sys, &["--remove", "lambkin"]);
    assert_eq!(calls(), ["stop lambkin.service", "daemon-reload"]);
    std::fs::remove_file(sys.join("var/log/systemctl.calls")).unwrap();
    dpkg_ok(&sys, &["--purge", "lambkin"]);
    assert_eq!(calls(), ["daemon-reload"]);
    assert!(!sys.join("var/lib/lambkin").exists());
}

#[test]
fn the_package_holds_the_binary_and_the_unit_and_its_scripts_install_and_purge_a_device() {
    require_root!("installing a package into a scratch root (dpkg --root chroots)");
    require!(
        Path::new(CARGO_DEB).exists(),
        "cargo-deb is not installed (scripts/install-test-deps)"
    );
    require!(
        on_path("dpkg") && on_path("dpkg-deb"),
        "dpkg is not installed"
    );
    let tmp = tempfile::tempdir().unwrap();
    let deb = package();
    let deb_arg = deb.to_str().unwrap();

    let info = text(&run(Command::new("dpkg-deb").args(["--info", deb_arg])));
    for wanted in [
        "Package: lambkin",
        "Depends: ",
        "passwd",
        " postinst ",
        " prerm ",
        " postrm ",
    ] {
        assert!(
            info.contains(wanted),
            "no {wanted:?} in dpkg-deb --info: {info}"
        );
    }
    let contents = text(&run(Command::new("dpkg-deb").args(["--contents", deb_arg])));
    for wanted in ["./usr/bin/lambkin", &format!("./{UNIT}")] {
        assert!(
            contents.lines().any(|l| l.ends_with(wanted)),
            "no {wanted} in dpkg-deb --contents: {contents}"
        );
    }

    // Installed into a scratch system: postinst sets the device up, without systemd (a
    // `systemctl` there would record a call).
    let sys = tmp.path().join("sysroot");
    scratch_system(&sys, deb);
    std::fs::create_dir_all(sys.join("var/log")).unwrap();
    std::fs::create_dir_all(sys.join("usr/bin")).unwrap();
    let systemctl = sys.join("usr/bin/systemctl");
    std::fs::write(&systemctl, FAKE_SYSTEMCTL).unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let said = dpkg_ok(&sys, &["--install", deb_arg]);
    assert!(
        said.contains("root /var/lib/lambkin ready") && said.contains("no unit written"),
        "postinst did not run lambkin install: {said}"
    );
    assert!(sys.join("usr/bin/lambkin").is_file());
    assert_eq!(
        std::fs::read_to_string(sys.join(UNIT)).unwrap(),
        packaged_unit(),
        "the package's unit is not the one lambkin install writes"
    );
    let root = sys.join("var/lib/lambkin");
    assert_eq!(mode(&root), 0o755);
    assert_eq!(mode(&root.join("state")), 0o700);
    assert_eq!(mode(&root.join("logs")), 0o700);
    assert!(
        !root.join("config.toml").exists(),
        "postinst wrote a configuration nobody gave"
    );
    assert!(account(&sys, "etc/passwd", "ggc_user"));
    assert!(account(&sys, "etc/group", "ggc_group"));
    assert_eq!(
        std::fs::read_link(sys.join(WANTS)).unwrap(),
        Path::new("/").join(UNIT),
        "the unit is not enabled at boot"
    );

    // Installed again (an upgrade's configure): the device's configuration and an
    // administrator's `systemctl disable` are kept.
    let config = "thing_name = \"kept-gateway\"\nregion = \"eu-central-1\"\n";
    std::fs::write(root.join("config.toml"), config).unwrap();
    std::fs::set_permissions(
        root.join("config.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::remove_file(sys.join(WANTS)).unwrap();
    dpkg_ok(&sys, &["--install", deb_arg]);
    assert_eq!(
        std::fs::read_to_string(root.join("config.toml")).unwrap(),
        config,
        "configure clobbered config.toml"
    );
    assert!(
        std::fs::symlink_metadata(sys.join(WANTS)).is_err(),
        "an upgrade enabled the unit the administrator had disabled"
    );
    std::os::unix::fs::symlink(Path::new("/").join(UNIT), sys.join(WANTS)).unwrap();

    // Removed: the binary and the unit go, the root and the default user stay.
    dpkg_ok(&sys, &["--remove", "lambkin"]);
    assert!(!sys.join("usr/bin/lambkin").exists());
    assert!(!sys.join(UNIT).exists());
    assert_eq!(
        std::fs::read_to_string(root.join("config.toml")).unwrap(),
        config
    );
    assert!(root.join("state/install.json").exists());
    assert!(account(&sys, "etc/passwd", "ggc_user"));

    // Purged: `lambkin uninstall --purge` removes the root and the accounts install made,
    // and the boot-time link goes.
    let said = dpkg_ok(&sys, &["--purge", "lambkin"]);
    assert!(!root.exists(), "purge kept the root: {said}");
    assert!(!account(&sys, "etc/passwd", "ggc_user"), "{said}");
    assert!(!account(&sys, "etc/group", "ggc_group"), "{said}");
    assert!(std::fs::symlink_metadata(sys.join(WANTS)).is_err());
    let status = std::fs::read_to_string(sys.join("var/lib/dpkg/status")).unwrap();
    assert!(!status.contains("Package: lambkin"), "{status}");
    assert!(
        !sys.join("var/log/systemctl.calls").exists(),
        "systemctl was called without systemd: {:?}",
        std::fs::read_to_string(sys.join("var/log/systemctl.calls"))
    );
}
