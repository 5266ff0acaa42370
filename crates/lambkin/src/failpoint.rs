//! Fault points for tests, in debug builds only (release builds have none: [`hit`] and
//! [`fails`] do nothing there).
//!
//! - Crash points, for tests of crash windows: `LAMBKIN_FAILPOINT=NAME` makes the host abort
//!   (as a SIGKILL would end it: no clean-up, no flush) when it reaches [`hit`]`(NAME)`.
//! - Error points, for tests of failures a host recovers from (a full disk, an I/O error):
//!   `LAMBKIN_FAILPOINT=NAME*N` makes the first `N` calls of [`fails`]`(NAME)` say the
//!   operation fails; the later ones, as if the fault had healed, that it does not.

/// Aborts the process here if `LAMBKIN_FAILPOINT` names `point` (debug builds only).
#[inline]
pub fn hit(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("LAMBKIN_FAILPOINT").is_some_and(|v| v == point) {
        eprintln!("lambkin: failpoint {point} reached: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Whether the operation at `point` is to fail this time: `LAMBKIN_FAILPOINT=POINT*N` fails
/// its first `N` calls (debug builds only; one process has one failpoint, so one count).
#[inline]
pub fn fails(point: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let Ok(value) = std::env::var("LAMBKIN_FAILPOINT") else {
            return false;
        };
        let Some(times) = value
            .split_once('*')
            .filter(|(name, _)| *name == point)
            .and_then(|(_, times)| times.parse::<u64>().ok())
        else {
            return false;
        };
        CALLS.fetch_add(1, Ordering::Relaxed) < times
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = point;
        false
    }
}
