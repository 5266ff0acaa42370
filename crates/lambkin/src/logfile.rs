//! A component's or function's log file (`ROOT/logs/NAME.log`): stdout lines at INFO, stderr
//! lines at WARN, each prefixed with its UTC time.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
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

/// Appends whole lines with one `write` each batch; with `O_APPEND` concurrent instances of the
/// same function never interleave within a line.
#[derive(Debug)]
pub struct LogFile {
    file: File,
}

impl LogFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    /// Writes each line of `text` (without its newline) prefixed by time and level.
    pub fn write_lines(&self, level: Level, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let stamp = timestamp::iso8601_millis(SystemTime::now());
        let mut out = Vec::with_capacity(text.len() + 40);
        for line in text.split(|b| *b == b'\n') {
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
            out.push(b'[');
            out.extend_from_slice(level.tag().as_bytes());
            out.extend_from_slice(b"] ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if let Err(e) = (&self.file).write_all(&out) {
            tracing::warn!(error = %e, "cannot write a function log");
        }
    }
}
