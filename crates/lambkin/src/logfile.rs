//! A component's or function's log file (`ROOT/logs/NAME.log`): stdout lines at INFO, stderr
//! lines at WARN, each prefixed with its UTC time.
//!
//! Every log is the host's user's alone (0600), the host's own `lambkin.log` and components'
//! logs alike: a component's output may carry what it must keep to itself (a token it printed,
//! its data), Greengrass keeps its logs root-only too, and a component never needs to read its
//! own log (its output reaches it through its pipes; `lambkin logs` runs as the host's user).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
        }
    }
}

/// Size past which a log is rotated: `NAME.log` becomes `NAME.log.1` (older ones shift up to
/// [`KEEP_ROTATED`]) and a fresh `NAME.log` starts.
pub const ROTATE_AT_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept.
pub const KEEP_ROTATED: u32 = 3;

/// Appends whole lines with one `write` per batch (`O_APPEND`, so writers sharing a file never
/// interleave within a line) and rotates by size.
///
/// A *gathered* log ([`LogFile::gathered`], a function's) does not write on each call: the
/// lines wait in memory until a task of the host's runtime, woken by the first of them, writes
/// all that came meanwhile in one `write`. Many instances of a function ending invocations at
/// once cost one system call instead of one each; the lines reach the file before the host
/// turns to I/O again, in the order they were given, and none are left when the log is dropped.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    rotate_at: u64,
    inner: Mutex<Inner>,
    /// Wakes the task writing a gathered log's lines; `None` for a log written at once.
    writer: Option<Arc<Notify>>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    size: u64,
    /// A gathered log's lines not written yet, formatted.
    gathered: Vec<u8>,
}

/// A gathered log's buffer is kept between writes up to this size.
const KEEP_GATHER_CAPACITY: usize = 64 * 1024;

/// Opens `path` for appending, creating it 0600; one left more open (by an earlier version) is
/// closed first.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::layout::PRIVATE_FILE)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & !crate::layout::PRIVATE_FILE != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(
            mode & crate::layout::PRIVATE_FILE,
        ))?;
    }
    Ok(file)
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::with_rotation(path, ROTATE_AT_BYTES)
    }

    pub fn with_rotation(path: &Path, rotate_at: u64) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            rotate_at,
            inner: Mutex::new(Inner {
                file,
                size,
                gathered: Vec::new(),
            }),
            writer: None,
        })
    }

    /// Opens `path` as a gathered log, its writing task spawned on the current runtime; outside
    /// one, a log written at once.
    pub fn gathered(path: &Path) -> std::io::Result<Arc<Self>> {
        let mut log = Self::open(path)?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(Arc::new(log));
        };
        let notify = Arc::new(Notify::new());
        log.writer = Some(notify.clone());
        let log = Arc::new(log);
        let weak = Arc::downgrade(&log);
        runtime.spawn(async move {
            loop {
                notify.notified().await;
                let Some(log) = weak.upgrade() else {
                    return;
                };
                log.write_gathered();
            }
        });
        Ok(log)
    }

    /// Writes each line of `text` (without its newline) prefixed by time and level; for a
    /// gathered log, soon (see [`LogFile`]).
    pub fn write_lines(&self, level: Level, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let stamp = timestamp::iso8601_millis_bytes(SystemTime::now());
        let format = |out: &mut Vec<u8>| {
            let lines = text.iter().filter(|b| **b == b'\n').count() + 1;
            out.reserve(text.len() + lines * (stamp.len() + level.tag().len() + 5));
            for line in text.split(|b| *b == b'\n') {
                out.extend_from_slice(&stamp);
                out.extend_from_slice(b" [");
                out.extend_from_slice(level.tag().as_bytes());
                out.extend_from_slice(b"] ");
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        };
        if let Some(writer) = &self.writer {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let first = inner.gathered.is_empty();
            format(&mut inner.gathered);
            drop(inner);
            if first {
                writer.notify_one();
            }
            return;
        }
        let mut out = Vec::new();
        format(&mut out);
        if let Err(e) = self.append(&out) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write a log");
        }
    }

    /// Writes the lines a gathered log holds, in one `write`.
    fn write_gathered(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.gathered.is_empty() {
            return;
        }
        let mut lines = std::mem::take(&mut inner.gathered);
        if let Err(e) = self.append_locked(&mut inner, &lines) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write a log");
        }
        lines.clear();
        if lines.capacity() <= KEEP_GATHER_CAPACITY {
            inner.gathered = lines;
        }
    }

    /// Appends `bytes` as they are (whole lines, already formatted), after any lines gathered
    /// before them, rotating first when they would take the file past its size. Reports
    /// nothing itself: the host's own log writes through this, and a log line about the log
    /// would come back here.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.gathered.is_empty() {
            let lines = std::mem::take(&mut inner.gathered);
            self.append_locked(&mut inner, &lines)?;
        }
        self.append_locked(&mut inner, bytes)
    }

    fn append_locked(&self, inner: &mut Inner, bytes: &[u8]) -> std::io::Result<()> {
        if inner.size > 0 && inner.size + bytes.len() as u64 > self.rotate_at {
            self.rotate(inner)?;
        }
        inner.file.write_all(bytes)?;
        inner.size += bytes.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&self, inner: &mut Inner) -> std::io::Result<()> {
        for n in (1..KEEP_ROTATED).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        inner.file = open_append(&self.path)?;
        inner.size = 0;
        Ok(())
    }
}

impl Drop for LogFile {
    /// A gathered log's last lines are written, and its task ends.
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            self.write_gathered();
            writer.notify_one();
        }
    }
}

/// Counts an event that any local user can cause at will, and says when to log it: the 1st,
/// 2nd, 4th, 8th… time, so that it is seen without flooding the log.
#[derive(Debug, Default)]
pub struct Noted(std::sync::atomic::AtomicU64);

impl Noted {
    /// Counts one more; `Some(count)` when this one is to be logged.
    pub fn note(&self) -> Option<u64> {
        let count = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        count.is_power_of_two().then_some(count)
    }
}

/// The host's own log through [`LogFile`], for `tracing`: each event is one `write`.
#[derive(Debug, Clone)]
pub struct HostLog(pub std::sync::Arc<LogFile>);

impl std::io::Write for HostLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for HostLog {
    type Writer = HostLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_gathered_log_writes_the_lines_of_one_turn_at_once_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        let log = LogFile::gathered(&path).unwrap();
        for i in 0..100 {
            log.write_lines(Level::Info, format!("line {i}").as_bytes());
        }
        // Nothing written while this task has the thread: the lines wait for the log's task.
        assert_eq!(std::fs::read(&path).unwrap().len(), 0);
        // One turn of the log's task writes them all.
        tokio::task::yield_now().await;
        let written = lines(&path);
        assert_eq!(written.len(), 100, "{written:?}");
        for (i, line) in written.iter().enumerate() {
            assert!(line.ends_with(&format!(" [INFO] line {i}")), "{line}");
        }
        // Bytes appended as they are come after the lines gathered before them.
        log.write_lines(Level::Warn, b"gathered");
        log.append(b"appended\n").unwrap();
        let written = lines(&path);
        assert!(written[100].ends_with(" [WARN] gathered"), "{written:?}");
        assert_eq!(written[101], "appended");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_gathered_log_writes_its_last_lines_and_its_task_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.log");
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let log = LogFile::gathered(&path).unwrap();
        assert_eq!(tasks(), before + 1);
        log.write_lines(Level::Info, b"last words");
        drop(log);
        assert_eq!(lines(&path).len(), 1);
        assert!(lines(&path)[0].ends_with(" [INFO] last words"));
        for _ in 0..10 {
            if tasks() == before {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the log's task outlives it");
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_three() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.log");
        let log = LogFile::with_rotation(&path, 1000).unwrap();
        for i in 0..200 {
            log.write_lines(
                Level::Info,
                format!("line {i:04} {}", "x".repeat(40)).as_bytes(),
            );
        }
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.len() <= 1000, "{}", current.len());
        assert!(current
            .trim_end()
            .ends_with(&format!("line 0199 {}", "x".repeat(40))));
        for n in 1..=3 {
            assert!(tmp.path().join(format!("c.log.{n}")).is_file(), "c.log.{n}");
        }
        assert!(!tmp.path().join("c.log.4").exists());
        // Nothing lost between the current file and the newest rotated one.
        let number = |line: &str| -> u32 {
            let at = line.find("line ").unwrap() + 5;
            line[at..at + 4].parse().unwrap()
        };
        let previous = std::fs::read_to_string(tmp.path().join("c.log.1")).unwrap();
        let last_rotated = number(previous.lines().last().unwrap());
        let first_current = number(current.lines().next().unwrap());
        assert_eq!(first_current, last_rotated + 1);
    }
}
