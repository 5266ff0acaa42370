//! Processes a previous run of the host left behind. `PR_SET_PDEATHSIG` ends a host's direct
//! children when it dies, even by SIGKILL, but not what they started (a lifecycle script's
//! background daemon, the interpreter a shell started). Every process the host starts carries
//! [`MARKER`] naming the root in its environment, which its own children inherit; when the
//! host starts, before it starts anything, it ends every process still carrying its root's
//! marker. A user's shell never carries it, so nothing else is touched.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The environment variable that marks a process as started by the host of a root.
pub const MARKER: &str = "LAMBKIN_STARTED_BY_ROOT";

/// Ends the processes a previous host on `root` left running; returns how many.
pub fn reap(root: &Path) -> usize {
    let wanted = format!("{MARKER}={}", root.display());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            if kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok() {
                reaped += 1;
            }
        }
    }
    if reaped > 0 {
        tracing::warn!(
            reaped,
            "ended processes a previous run of the host left behind"
        );
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_processes_of_this_root_are_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let spawn = |value: &Path| {
            std::process::Command::new("sleep")
                .arg("30")
                .env(MARKER, value)
                .spawn()
                .unwrap()
        };
        let mut ours = spawn(&root);
        let mut other = spawn(&tmp.path().join("another-root"));
        // The marked process of this root goes; the other root's stays.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read(format!("/proc/{}/environ", ours.id()))
            .map(|e| !e.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()))
            .unwrap_or(true)
        {
            assert!(std::time::Instant::now() < deadline, "child never exec'd");
            std::thread::yield_now();
        }
        assert_eq!(reap(&root), 1);
        let status = ours.wait().unwrap();
        assert!(!status.success());
        assert!(other.try_wait().unwrap().is_none());
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
