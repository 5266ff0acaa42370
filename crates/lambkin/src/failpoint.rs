//! Crash points for tests of crash windows: in debug builds, `LAMBKIN_FAILPOINT=NAME` makes
//! the host abort (as a SIGKILL would end it: no clean-up, no flush) when it reaches the point
//! of that name. Release builds have none: [`hit`] is empty there.

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
