//! The host's stderr when it is a systemd journal stream: each line starts with its level as
//! sd-daemon's prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace), which
//! journald strips and keeps as the entry's priority, so `journalctl -p warning` finds the
//! host's warnings. Without a timestamp and colours: the journal stamps each entry itself.
//! Anywhere else stderr is left as it was.

use std::io::Write;

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM` to `DEV:INODE` of
/// the stream it connected, and a process whose stderr was redirected since (a child of a
/// service started with `2>file`) still has the variable, so the two are compared.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino))
}

/// What the host prints before its log is set up, or as it exits, marked as an error for the
/// journal when stderr is one: `<3>`, else nothing.
pub fn error_prefix() -> &'static str {
    if stderr_is_journal() {
        "<3>"
    } else {
        ""
    }
}

/// sd-daemon's priority for a `tracing` level.
pub fn priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        tracing::Level::DEBUG | tracing::Level::TRACE => 7,
    }
}

/// Makes a [`PrefixedLines`] on stderr for each event, with the event's level.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for JournalStderr {
    type Writer = PrefixedLines<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        PrefixedLines::new(std::io::stderr(), 6)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        PrefixedLines::new(std::io::stderr(), priority(*meta.level()))
    }
}

/// A writer that starts every line with `<PRIORITY>`: an event whose message or fields span
/// lines stays at its level on each of them.
#[derive(Debug)]
pub struct PrefixedLines<W> {
    out: W,
    priority: u8,
    at_line_start: bool,
}

impl<W: Write> PrefixedLines<W> {
    pub fn new(out: W, priority: u8) -> Self {
        Self {
            out,
            priority,
            at_line_start: true,
        }
    }
}

impl<W: Write> Write for PrefixedLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let prefix = format!("<{}>", self.priority);
        let mut marked = Vec::with_capacity(buf.len() + prefix.len());
        for &byte in buf {
            if self.at_line_start {
                marked.extend_from_slice(prefix.as_bytes());
            }
            marked.push(byte);
            self.at_line_start = byte == b'\n';
        }
        // One write per event: lines of two threads' events do not interleave.
        self.out.write_all(&marked)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_carries_the_priority() {
        let mut w = PrefixedLines::new(Vec::new(), priority(tracing::Level::WARN));
        w.write_all(b"first\nsecond").unwrap();
        w.write_all(b" still second\nthird\n").unwrap();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            "<4>first\n<4>second still second\n<4>third\n"
        );
        assert_eq!(priority(tracing::Level::ERROR), 3);
        assert_eq!(priority(tracing::Level::INFO), 6);
        assert_eq!(priority(tracing::Level::TRACE), 7);
    }
}
