//! Waiting for a log file to change, for those who follow one (`lambkin logs --follow`, the
//! console's log views): inotify says when the file was written, and its directory when the
//! name was created, renamed or removed (a rotation), so a follower reads new lines as they
//! are written instead of finding them at its next poll. A follower still wakes at its pace
//! when nothing happened (it has other things to check), and where inotify cannot be had (the
//! user's instances used up, say) the pace is all there is, a poll as before.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lambkin_sys::inotify::{register_inotify, ReactorInotify};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// Watches one log file (by its path: a rotated-in file of the same name is watched too).
#[derive(Debug)]
pub struct LogWatch {
    path: PathBuf,
    name: OsString,
    inotify: Option<AsyncFd<ReactorInotify>>,
    /// The watch on the file itself, once it exists.
    file: Option<WatchDescriptor>,
    /// When [`LogWatch::changed`] last returned.
    woke: Option<tokio::time::Instant>,
}

/// The least time between two wake-ups: a file written thousands of times a second is read
/// at most this often, in larger pieces, instead of once per write.
pub const MIN_GAP: Duration = Duration::from_millis(20);

/// What the directory reports about the name: made, renamed to or from, removed.
const NAME_EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE);

impl LogWatch {
    /// Starts watching `path` (which need not exist yet). Create it before the first read of
    /// the file: what is written after that read then wakes [`LogWatch::changed`].
    pub fn new(path: &Path) -> Self {
        let name = path.file_name().map(ToOwned::to_owned).unwrap_or_default();
        let watched = path.parent().and_then(|dir| {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
            inotify.add_watch(dir, NAME_EVENTS).ok()?;
            let file = inotify.add_watch(path, AddWatchFlags::IN_MODIFY).ok();
            Some((register_inotify(inotify).ok()?, file))
        });
        let (inotify, file) = match watched {
            Some((inotify, file)) => (Some(inotify), file),
            None => (None, None),
        };
        Self {
            path: path.to_owned(),
            name,
            inotify,
            file,
            woke: None,
        }
    }

    /// Returns once the file may have changed since the last call (written, rotated, made
    /// or removed), or after `pace` at the latest; never sooner than [`MIN_GAP`] after the
    /// last return (what comes meanwhile is seen then).
    pub async fn changed(&mut self, pace: Duration) {
        if let Some(woke) = self.woke {
            tokio::time::sleep_until(woke + MIN_GAP).await;
        }
        self.wait(pace).await;
        self.woke = Some(tokio::time::Instant::now());
    }

    async fn wait(&mut self, pace: Duration) {
        let Some(fd) = &mut self.inotify else {
            tokio::time::sleep(pace).await;
            return;
        };
        let (path, name, file) = (&self.path, &self.name, &mut self.file);
        // A failed watch is waited out at the pace, as a poll.
        let _ = tokio::time::timeout(pace, async {
            loop {
                let Ok(mut ready) = fd.readable_mut().await else {
                    return std::future::pending::<()>().await;
                };
                let read = ready.try_io(|watched| {
                    watched
                        .get_ref()
                        .inotify()
                        .read_events()
                        .map_err(std::io::Error::from)
                });
                let events = match read {
                    Ok(Ok(events)) => events,
                    Ok(Err(_)) => return std::future::pending::<()>().await,
                    // Nothing to read after all: wait again.
                    Err(_) => continue,
                };
                let inotify = ready.get_inner().inotify();
                let mut changed = false;
                for event in events {
                    let on_file = event.name.is_none() && Some(event.wd) == *file;
                    let on_name = event.name.as_deref() == Some(name.as_os_str());
                    let overflow = event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW);
                    if on_name && event.mask.intersects(NAME_EVENTS) {
                        // A new file under the name: its writes are watched from now on.
                        // The one it replaces (now the rotated file) is watched no more.
                        if let Ok(wd) = inotify.add_watch(path, AddWatchFlags::IN_MODIFY) {
                            if let Some(old) = file.replace(wd).filter(|old| *old != wd) {
                                let _ = inotify.rm_watch(old);
                            }
                        }
                    }
                    changed |= on_file || on_name || overflow;
                }
                if changed {
                    return;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Far longer than any wait below: a `changed` that returns came from an event.
    const PACE: Duration = Duration::from_secs(600);
    const DEADLINE: Duration = Duration::from_secs(20);

    fn append(path: &Path, line: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }

    async fn wakes(watch: &mut LogWatch) -> bool {
        tokio::time::timeout(DEADLINE, watch.changed(PACE))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_write_a_rotation_and_a_late_file_wake_the_follower() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        // Not there yet: its creation wakes, then its writes do.
        let mut watch = LogWatch::new(&path);
        assert!(watch.inotify.is_some(), "inotify available");
        append(&path, "first");
        assert!(wakes(&mut watch).await, "the file's creation");
        append(&path, "second");
        assert!(wakes(&mut watch).await, "a write");
        // Rotated: the old file renamed away, a new one made, and the new one's writes.
        std::fs::rename(&path, tmp.path().join("f.log.1")).unwrap();
        assert!(wakes(&mut watch).await, "the rename");
        append(&path, "after rotation");
        assert!(wakes(&mut watch).await, "the new file");
        append(&path, "more");
        assert!(wakes(&mut watch).await, "a write to the new file");
    }

    #[tokio::test]
    async fn writes_to_other_logs_beside_it_do_not_wake_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        append(&path, "mine");
        let mut watch = LogWatch::new(&path);
        for i in 0..20 {
            append(&tmp.path().join("other.log"), &format!("not mine {i}"));
        }
        append(&tmp.path().join("f.log.txt"), "a longer name");
        let woke = tokio::time::timeout(Duration::from_millis(300), watch.changed(PACE)).await;
        assert!(woke.is_err(), "woken by another file's writes");
        append(&path, "mine again");
        assert!(wakes(&mut watch).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_file_wakes_it_at_most_once_per_gap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        append(&path, "start");
        let mut watch = LogWatch::new(&path);
        append(&path, "one");
        watch.changed(PACE).await;
        let first = tokio::time::Instant::now();
        append(&path, "two");
        watch.changed(PACE).await;
        assert_eq!(first.elapsed(), MIN_GAP);
        // The gap is counted from the last return: a change long after it wakes at once.
        tokio::time::sleep(MIN_GAP * 5).await;
        append(&path, "three");
        let late = tokio::time::Instant::now();
        watch.changed(PACE).await;
        assert_eq!(late.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn without_inotify_it_waits_the_pace() {
        let mut watch = LogWatch {
            path: PathBuf::from("/nonexistent/f.log"),
            name: OsString::from("f.log"),
            inotify: None,
            file: None,
            woke: None,
        };
        let started = tokio::time::Instant::now();
        watch.changed(Duration::from_millis(200)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(200));
    }
}
