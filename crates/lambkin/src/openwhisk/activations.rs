//! Activation records: the newest [`Activations::retention`] are kept in memory for reads, and
//! appended as JSON lines to segment files on disk (`ROOT/state/openwhisk/activations/N.jsonl`,
//! 0600, each of half the retention) for the next start. A thread of their own writes them in
//! batches, every [`FLUSH_EVERY`] (and at shutdown): an activation's answer never waits for the
//! disk, and no activation wakes the writer. A segment is removed once the two after it hold
//! the retention. Records are not synced (like OpenWhisk's activation store, they are a log of
//! what ran, not an acknowledgement): a crash may lose the last ones.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use lambkin_proto::openwhisk::{Activation, ListQuery};

/// How many records may wait for the writer; past that a record stays in memory only (and a
/// warning says so).
const PENDING_WRITES: usize = 16_384;
/// How often the writer writes what is pending.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Activations {
    /// Oldest first.
    records: Mutex<VecDeque<Arc<Activation>>>,
    retention: usize,
    pending: Arc<(Mutex<Pending>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the writer has still to write, and whether it is to stop once it has.
#[derive(Debug, Default)]
struct Pending {
    records: Vec<Arc<Activation>>,
    closed: bool,
}

/// Appends records to the newest segment, starting a new one every `per_segment` records and
/// removing the ones no longer needed.
struct SegmentWriter {
    dir: PathBuf,
    per_segment: usize,
    number: u64,
    written: usize,
    file: Option<std::fs::File>,
}

impl SegmentWriter {
    fn append(&mut self, record: &Activation) -> std::io::Result<()> {
        use std::io::Write;
        if self.file.is_none() || self.written >= self.per_segment {
            self.number += 1;
            self.written = 0;
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(crate::layout::PRIVATE_FILE)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(segment_path(&self.dir, self.number))?,
            );
            // Two full segments after it hold the retention: the one before them goes.
            if let Some(old) = self.number.checked_sub(3) {
                let _ = std::fs::remove_file(segment_path(&self.dir, old));
            }
        }
        let mut line = record.to_json().to_string();
        line.push('\n');
        if let Some(file) = self.file.as_mut() {
            file.write_all(line.as_bytes())?;
        }
        self.written += 1;
        Ok(())
    }
}

use std::os::unix::fs::OpenOptionsExt;

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:012}.jsonl"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let number = path
                .file_name()?
                .to_str()?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((number, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

impl Activations {
    /// Reads the records kept in `dir` (made 0700 if missing) and starts the writer.
    pub fn open(dir: &Path, retention: usize) -> std::io::Result<Self> {
        crate::layout::create_private_dir(dir)?;
        let segments = segments(dir)?;
        let mut found: VecDeque<Arc<Activation>> = VecDeque::new();
        for (_, path) in &segments {
            let text = std::fs::read_to_string(path)?;
            for line in text.lines() {
                // A line cut short by a crash is skipped.
                if let Some(a) = serde_json::from_str(line)
                    .ok()
                    .and_then(|v| Activation::from_json(&v))
                {
                    found.push_back(Arc::new(a));
                }
            }
        }
        let excess = found.len().saturating_sub(retention);
        found.drain(..excess);
        let pending: Arc<(Mutex<Pending>, Condvar)> = Arc::default();
        let mut writer = SegmentWriter {
            dir: dir.to_owned(),
            per_segment: retention.div_ceil(2).max(1),
            number: segments.last().map_or(0, |(n, _)| *n),
            written: 0,
            file: None,
        };
        let thread = std::thread::Builder::new()
            .name("openwhisk-activations".into())
            .spawn({
                let pending = pending.clone();
                move || loop {
                    let (lock, stop) = &*pending;
                    let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let (mut guard, _) = stop
                        .wait_timeout_while(guard, FLUSH_EVERY, |p| !p.closed)
                        .unwrap_or_else(PoisonError::into_inner);
                    let batch = std::mem::take(&mut guard.records);
                    let closed = guard.closed;
                    drop(guard);
                    for record in &batch {
                        if let Err(e) = writer.append(record) {
                            tracing::warn!(activation = %record.activation_id, error = %e, "cannot keep an activation record on disk");
                        }
                    }
                    if closed {
                        return;
                    }
                }
            })?;
        Ok(Self {
            records: Mutex::new(found),
            retention,
            pending,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn retention(&self) -> usize {
        self.retention
    }

    /// Keeps `activation` (the oldest goes past the limit).
    pub fn record(&self, activation: Activation) -> Arc<Activation> {
        let activation = Arc::new(activation);
        {
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            records.push_back(activation.clone());
            let excess = records.len().saturating_sub(self.retention);
            records.drain(..excess);
        }
        let mut pending = self
            .pending
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending.closed {
            // Shutting down: kept in memory only.
        } else if pending.records.len() < PENDING_WRITES {
            pending.records.push(activation.clone());
        } else {
            tracing::warn!(activation = %activation.activation_id, "activation records are made faster than written: one is not kept on disk");
        }
        drop(pending);
        activation
    }

    pub fn get(&self, id: &str) -> Option<Arc<Activation>> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|a| a.activation_id == id)
            .cloned()
    }

    /// Newest first, as OpenWhisk lists them.
    pub fn list(&self, q: &ListQuery) -> Vec<Arc<Activation>> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .filter(|a| q.name.as_deref().is_none_or(|n| a.name == n))
            .filter(|a| q.since.is_none_or(|s| a.start_ms >= s))
            .filter(|a| q.upto.is_none_or(|u| a.start_ms <= u))
            .skip(q.skip)
            .take(q.limit)
            .cloned()
            .collect()
    }

    /// Writes what is pending and stops the writer.
    pub fn shutdown(&self) {
        {
            let (lock, stop) = &*self.pending;
            lock.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
            stop.notify_one();
        }
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambkin_proto::openwhisk::ActivationResponse;

    fn activation(id: &str, name: &str, start: u64) -> Activation {
        Activation {
            namespace: "guest".into(),
            name: name.into(),
            version: "0.0.1".into(),
            subject: "s".into(),
            activation_id: id.into(),
            start_ms: start,
            end_ms: start + 1,
            response: ActivationResponse::success(serde_json::json!({})),
            logs: vec![],
            annotations: vec![],
        }
    }

    #[test]
    fn kept_on_disk_within_the_retention_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Activations::open(dir.path(), 3).unwrap();
        for (i, name) in ["a", "b", "a", "b", "a"].iter().enumerate() {
            store.record(activation(&format!("{i:032x}"), name, i as u64 * 10));
        }
        let all = ListQuery {
            limit: 30,
            ..ListQuery::default()
        };
        let ids = |v: Vec<Arc<Activation>>| -> Vec<u64> { v.iter().map(|a| a.start_ms).collect() };
        assert_eq!(
            ids(store.list(&all)),
            vec![40, 30, 20],
            "newest first, three kept"
        );
        let only_a = ListQuery {
            name: Some("a".into()),
            ..all.clone()
        };
        assert_eq!(ids(store.list(&only_a)), vec![40, 20]);
        let window = ListQuery {
            since: Some(25),
            upto: Some(35),
            ..all.clone()
        };
        assert_eq!(ids(store.list(&window)), vec![30]);
        assert!(store.get(&format!("{:032x}", 0)).is_none());
        store.shutdown();
        // Segments of 2 records (half the retention).
        let names = || -> Vec<u64> {
            segments(dir.path())
                .unwrap()
                .iter()
                .map(|(n, _)| *n)
                .collect()
        };
        assert_eq!(names(), vec![1, 2, 3]);
        let reopened = Activations::open(dir.path(), 3).unwrap();
        assert_eq!(
            ids(reopened.list(&all)),
            vec![40, 30, 20],
            "read back at start"
        );
        reopened.record(activation(&format!("{:032x}", 9), "c", 90));
        reopened.shutdown();
        assert_eq!(names(), vec![2, 3, 4], "segment 1 goes once 4 starts");
        let again = Activations::open(dir.path(), 2).unwrap();
        assert_eq!(ids(again.list(&all)), vec![90, 40]);
        again.shutdown();
    }
}
