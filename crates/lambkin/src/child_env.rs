//! The environment every process the host starts begins with: component steps, the
//! `Bootstrap` step, function instances, the sandbox init and the interpreter probe start from
//! an empty environment, get only [`passed`] of the host's own, and then what their caller
//! defines for them (`interface.md`: the Greengrass and Lambda variables, the recipe's
//! `Setenv`, the function's `Environment`, their user's `HOME`/`USER`/`LOGNAME`, the host's
//! marker of [`crate::orphans`]).
//!
//! A host is often started with secrets in its environment (AWS keys for the deployment tool
//! that installed it, a service manager's credentials, tokens of its own); none of them may
//! reach a component or a function, which may run as another user or run code the device
//! owner did not write. So the rule is an allow-list, kept here and nowhere else.

use std::ffi::{OsStr, OsString};
use std::sync::OnceLock;

/// Variables a child takes from the host's environment when the host has them: where programs
/// are (`PATH`) and how text, dates and times are shown (the locale, `TZ`).
///
/// `TERM` is left out on purpose: a child's output goes to a pipe and a log file, never to a
/// terminal, and a `TERM` would make programs write terminal control sequences into the logs.
///
/// `DOCKER_HOST` (and `CONTAINER_HOST`, podman's name for it, read by podman's `docker`)
/// passes so that a component's `docker run` reaches the engine the host pulled its `docker:`
/// artifacts into (`components::deployment::pull_docker_images`) and stops its containers in
/// (`components::containers`): it names a socket or an address, never a secret.
const PASSED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "DOCKER_HOST",
    "CONTAINER_HOST",
];
/// Locale categories (`LC_ALL`, `LC_CTYPE`, `LC_TIME`, …) pass too.
const PASSED_PREFIX: &str = "LC_";

/// `PATH` for a host started without one: what systemd gives a service.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether a child gets the host's variable `name`.
fn is_passed(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    PASSED.contains(&name) || (name.starts_with(PASSED_PREFIX) && name.len() > PASSED_PREFIX.len())
}

/// What of `vars` (an environment) a child gets, `PATH` always included.
pub fn passed_from(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut passed: Vec<(OsString, OsString)> =
        vars.into_iter().filter(|(k, _)| is_passed(k)).collect();
    if !passed.iter().any(|(k, _)| k == "PATH") {
        passed.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    passed.sort();
    passed
}

/// What of the host's environment a child gets (read once: the host never changes its own
/// environment).
pub fn passed() -> &'static [(OsString, OsString)] {
    static PASSED_VARS: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();
    PASSED_VARS.get_or_init(|| passed_from(std::env::vars_os()))
}

/// The `PATH` a child gets unless its own settings change it.
pub fn path() -> &'static OsStr {
    passed()
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(OsStr::new(DEFAULT_PATH), |(_, v)| v.as_os_str())
}

/// Empties `command`'s environment and gives it [`passed`]; the caller adds the rest.
pub fn start_empty(command: &mut std::process::Command) {
    command
        .env_clear()
        .envs(passed().iter().map(|(k, v)| (k, v)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn only_the_allow_list_passes() {
        let host = vars(&[
            ("PATH", "/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "de_DE.UTF-8"),
            ("TZ", "Europe/Berlin"),
            ("AWS_SECRET_ACCESS_KEY", "leak"),
            ("LAMBKIN_LOG", "debug"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("HOME", "/root"),
            ("TERM", "xterm"),
            ("LC_", "not a category"),
            ("DOCKER_HOST", "unix:///run/engine.sock"),
            ("CONTAINER_HOST", "unix:///run/podman.sock"),
            ("DOCKER_CONFIG", "/root/.docker"),
        ]);
        assert_eq!(
            passed_from(host),
            vars(&[
                ("CONTAINER_HOST", "unix:///run/podman.sock"),
                ("DOCKER_HOST", "unix:///run/engine.sock"),
                ("LANG", "C.UTF-8"),
                ("LC_TIME", "de_DE.UTF-8"),
                ("PATH", "/usr/bin"),
                ("TZ", "Europe/Berlin"),
            ])
        );
    }

    #[test]
    fn a_host_without_path_gives_the_default() {
        assert_eq!(
            passed_from(vars(&[("SECRET", "x")])),
            vars(&[("PATH", DEFAULT_PATH)])
        );
    }

    #[test]
    fn a_command_starts_empty() {
        let mut command = std::process::Command::new("env");
        command.env("PLANTED", "1");
        start_empty(&mut command);
        let out = command.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.lines().any(|l| l.starts_with("PATH=")), "{text}");
        assert!(!text.contains("PLANTED"), "{text}");
        for line in text.lines() {
            let name = line.split('=').next().unwrap();
            assert!(is_passed(OsStr::new(name)), "{name} passed: {text}");
        }
    }
}
