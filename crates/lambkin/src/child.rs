//! Every process the host starts for a component or a function is set up here, in one order,
//! so the spawn sites (a component's steps, its Bootstrap, a function's instance, a waiting
//! sandbox init, the runtime probe) cannot drift apart:
//!
//! 1. the host's marker in its environment ([`crate::orphans`]: a restarted host finds what an
//!    earlier one left behind);
//! 2. its own process group (a stop or a timeout signals everything it started);
//! 3. descriptors handed to it at fixed numbers;
//! 4. its control groups, joined while still root (their files are root's);
//! 5. a private mount namespace with a read-only bind (needs `CAP_SYS_ADMIN`, which the change
//!    of user drops);
//! 6. its user (or the variables naming the host's);
//! 7. the parent-death signal, CPU affinity and open-files limit
//!    ([`lambkin_sys::host_child`]), last: changing user clears the parent-death signal.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::users::RunAs;

/// Who the child runs as.
#[derive(Debug, Clone, Copy)]
pub enum User<'a> {
    /// It becomes this user (ids, groups, `HOME`/`USER`/`LOGNAME`).
    Become(&'a RunAs),
    /// It stays the host's user, and its variables name the host's user.
    Host,
    /// Left as the command has it (a sandbox init changes user itself, after mounting; an
    /// instance's environment names its user already).
    Unchanged,
}

/// How one child is set up; see the module's list for the order it is applied in.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The host's root, written to the child's environment as the marker.
    pub marker: Option<&'a Path>,
    /// Its own process group.
    pub own_group: bool,
    /// Descriptors it gets, at these numbers.
    pub fds: Vec<(OwnedFd, i32)>,
    /// `cgroup.procs` files it joins.
    pub cgroups: Vec<PathBuf>,
    /// A directory bound read-only at a path, in a mount namespace of its own.
    pub read_only_bind: Option<(&'a Path, &'a Path)>,
    pub user: User<'a>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            marker: None,
            own_group: true,
            fds: Vec::new(),
            cgroups: Vec::new(),
            read_only_bind: None,
            user: User::Unchanged,
        }
    }
}

/// Sets `cmd` up as `setup` says, in the one order.
pub fn prepare(cmd: &mut Command, setup: Setup<'_>) -> std::io::Result<()> {
    if let Some(root) = setup.marker {
        cmd.env(crate::orphans::MARKER, root);
    }
    if setup.own_group {
        cmd.process_group(0);
    }
    for (fd, target) in setup.fds {
        lambkin_sys::pass_fd(cmd, fd, target);
    }
    if !setup.cgroups.is_empty() {
        lambkin_sys::join_cgroups(cmd, &setup.cgroups)?;
    }
    if let Some((source, target)) = setup.read_only_bind {
        lambkin_sys::bind_read_only_privately(cmd, source, target)?;
    }
    match setup.user {
        User::Become(run_as) => run_as.apply(cmd),
        User::Host => crate::users::host_identity().apply_env(cmd),
        User::Unchanged => {}
    }
    lambkin_sys::host_child(cmd);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A child set up with its own group and the marker runs in a group of its own and
    /// carries the marker.
    #[test]
    fn the_child_gets_its_group_and_the_marker() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "set -- $(cat /proc/$$/stat); echo $5 $1 \"$LAMBKIN_TEST_MARKER_PROBE\"",
        ]);
        crate::child_env::start_empty(&mut cmd);
        prepare(
            &mut cmd,
            Setup {
                marker: Some(Path::new("/some/root")),
                ..Setup::default()
            },
        )
        .unwrap();
        cmd.env("LAMBKIN_TEST_MARKER_PROBE", "seen");
        let marker = cmd
            .get_envs()
            .find(|(k, _)| *k == crate::orphans::MARKER)
            .and_then(|(_, v)| v.map(|v| v.to_owned()));
        assert_eq!(marker.as_deref(), Some(std::ffi::OsStr::new("/some/root")));
        let out = cmd.output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields[0], fields[1], "its own process group: {text}");
        assert_eq!(fields[2], "seen");
    }
}
