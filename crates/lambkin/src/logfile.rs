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
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

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
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    rotate_at: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    size: u64,
}

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
            inner: Mutex::new(Inner { file, size }),
        })
    }

    /// Writes each line of `text` (without its newline) prefixed by time and level.
    pub fn write_lines(&self, level: Level, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let stamp = timestamp::iso8601_millis_bytes(SystemTime::now());
        let lines = text.iter().filter(|b| **b == b'\n').count() + 1;
        let prefix = stamp.len() + level.tag().len() + 4;
        let mut out = Vec::with_capacity(text.len() + lines * (prefix + 1));
        for line in text.split(|b| *b == b'\n') {
            out.extend_from_slice(&stamp);
            out.push(b' ');
            out.push(b'[');
            out.extend_from_slice(level.tag().as_bytes());
            out.extend_from_slice(b"] ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if let Err(e) = self.append(&out) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write a log");
        }
    }

    /// Appends `bytes` as they are (whole lines, already formatted), rotating first when they
    /// would take the file past its size. Reports nothing itself: the host's own log writes
    /// through this, and a log line about the log would come back here.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.size > 0 && inner.size + bytes.len() as u64 > self.rotate_at {
            self.rotate(&mut inner)?;
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
