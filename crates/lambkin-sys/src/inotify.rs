//! An inotify instance on tokio's reactor, for waiting on file changes without a thread.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::inotify::Inotify;
use tokio::io::unix::AsyncFd;

/// An inotify instance that tokio's reactor wakes on when it has events to read.
#[derive(Debug)]
pub struct ReactorInotify(Inotify);

impl ReactorInotify {
    pub fn inotify(&self) -> &Inotify {
        &self.0
    }
}

impl AsRawFd for ReactorInotify {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers `inotify` (made with `IN_NONBLOCK`) with the current runtime's reactor.
pub fn register_inotify(inotify: Inotify) -> std::io::Result<AsyncFd<ReactorInotify>> {
    // SAFETY: the descriptor belongs to the `Inotify` moved into the `AsyncFd`, so it stays
    // open, and stays the same descriptor, for as long as the `AsyncFd` holds it, and
    // `as_raw_fd` returns that one descriptor every time.
    Ok(unsafe { AsyncFd::register(ReactorInotify(inotify)) }?)
}
