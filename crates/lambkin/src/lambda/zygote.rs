//! The sandbox inits started ahead of need for a containerised function ([`Zygote`]) and the
//! slot each function configuration keeps its next one in ([`ZygoteSlot`]). Starting one is
//! [`super::sandbox`]'s part (it needs the function's spec); this module needs none, so the
//! spec can hold the slot.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use super::instance_cgroup::InstanceCgroup;

/// What a zygote writes to its stdout once it is in its cgroup.
pub(super) const ZYGOTE_READY: u8 = b'R';
/// The longest a zygote still joining its cgroup is waited for before it is given up.
const ZYGOTE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// A sandbox init started ahead of need (`lambkin sandbox-init` in zygote mode): already
/// exec'd and already in a fresh instance cgroup, which is the slow part of a container's
/// start on cgroup v1 (the kernel's attach waits for an RCU grace period). It waits on its
/// stdin for the runtime's environment (`KEY=value` entries, each ended by a NUL); at EOF it
/// carries on as an ordinary sandbox init. Killed, and its cgroup removed, when dropped.
#[derive(Debug)]
pub struct Zygote {
    // Dropped first: the process goes before its group is removed.
    pub(super) child: tokio::process::Child,
    pub(super) cgroup: InstanceCgroup,
    /// With external extensions, the read end of their output pipe.
    pub(super) extension_output: Option<std::os::fd::OwnedFd>,
}

impl Zygote {
    /// The zygote's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the zygote is in its cgroup; `None` (and it is discarded) if it died.
    async fn ready(mut self) -> Option<Self> {
        use tokio::io::AsyncReadExt;
        let stdout = self.child.stdout.as_mut()?;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(ZYGOTE_PATIENCE, stdout.read_exact(&mut byte)).await;
        let alive = matches!(self.child.try_wait(), Ok(None));
        match read {
            Ok(Ok(_)) if byte[0] == ZYGOTE_READY && alive => Some(self),
            _ => {
                tracing::warn!(pid = ?self.child.id(), "a waiting sandbox init is gone; starting one the usual way");
                None
            }
        }
    }

    /// Hands the zygote the runtime's environment: the process carries on into the
    /// container and the runtime, exactly as a sandbox init started now would. With `gated`
    /// (external extensions start first), the environment ends with an empty entry and the
    /// child's stdin stays open as the instance's gate; otherwise it is closed.
    pub async fn start(
        mut self,
        env: &[(OsString, OsString)],
        gated: bool,
    ) -> std::io::Result<(
        tokio::process::Child,
        InstanceCgroup,
        Option<std::os::fd::OwnedFd>,
    )> {
        use tokio::io::AsyncWriteExt;
        let mut message = Vec::new();
        for (key, value) in env {
            message.extend_from_slice(key.as_bytes());
            message.push(b'=');
            message.extend_from_slice(value.as_bytes());
            message.push(0);
        }
        if gated {
            message.push(0);
        }
        let mut stdin = self.child.stdin.take().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the zygote has no stdin")
        })?;
        stdin.write_all(&message).await?;
        if gated {
            self.child.stdin = Some(stdin);
        }
        Ok((self.child, self.cgroup, self.extension_output))
    }
}

/// The zygote of one function *configuration*: it lives in that configuration's
/// `FunctionSpec`, so an update or redeploy (a new spec) never hands an old one out, and it
/// is retired (killed, its cgroup removed) when the function is reconfigured or stopped.
#[derive(Debug, Default)]
pub struct ZygoteSlot(std::sync::Mutex<SlotState>);

#[derive(Debug, Default)]
struct SlotState {
    retired: bool,
    starting: bool,
    ready: Option<Zygote>,
}

impl ZygoteSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the waiting zygote once it is in its cgroup; `None`: start the usual way.
    pub async fn take(&self) -> Option<Zygote> {
        let zygote = self.lock().ready.take()?;
        zygote.ready().await
    }

    /// Whether a zygote is to be started now (none ready or starting, and the slot not
    /// retired); if so, the slot counts it as starting until [`Self::started`].
    pub fn start_one(&self) -> bool {
        let mut state = self.lock();
        if state.retired || state.starting || state.ready.is_some() {
            return false;
        }
        state.starting = true;
        true
    }

    /// The zygote [`Self::start_one`] asked for: kept ready, unless the slot was retired
    /// meanwhile (then it is dropped, which kills it).
    pub fn started(&self, zygote: Zygote) {
        let mut state = self.lock();
        state.starting = false;
        if !state.retired {
            state.ready = Some(zygote);
        }
    }

    /// The zygote [`Self::start_one`] asked for could not be started.
    pub fn not_started(&self) {
        self.lock().starting = false;
    }

    /// Kills the waiting zygote, if any, and starts no more.
    pub fn retire(&self) {
        let stale = {
            let mut state = self.lock();
            state.retired = true;
            state.ready.take()
        };
        drop(stale);
    }
}
