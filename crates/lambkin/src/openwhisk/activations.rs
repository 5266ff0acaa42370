//! Activation records: the newest (the retention given to `Activations::open`) are kept in memory for reads, and
//! appended as JSON lines to segment files on disk (`ROOT/state/openwhisk/activations/N.jsonl`,
//! 0600, each of half the retention) for the next start. A thread of their own writes them:
//! every [`FLUSH_EVERY`] (and at shutdown) what is pending, without syncing; and at once, with
//! one `fdatasync` for all of them, when a caller waits for its record to be durable
//! ([`Activations::record_durable`], before a blocking invoke answers and before a stored
//! non-blocking activation is forgotten): records that arrive while a sync runs share the
//! next one (group commit). A segment is removed once the two after it hold the retention.

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
    /// How many times the writer synced (read by tests of the group commit).
    #[cfg_attr(not(test), allow(dead_code))]
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

/// What the writer has still to write, who waits for it to be synced, and whether the writer
/// is to stop once it has.
#[derive(Debug, Default)]
struct Pending {
    records: Vec<Arc<Activation>>,
    synced: Vec<tokio::sync::oneshot::Sender<()>>,
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
    /// A segment was made since the directory was last synced.
    dir_changed: bool,
    /// How many times records were synced.
    syncs: Arc<std::sync::atomic::AtomicU64>,
}

impl SegmentWriter {
    fn append(&mut self, record: &Activation) -> std::io::Result<()> {
        use std::io::Write;
        if self.file.is_none() || self.written >= self.per_segment {
            // What the full segment holds is synced before the next one starts, so one sync
            // of the newest segment covers every record written.
            if let Some(full) = self.file.take() {
                full.sync_data()?;
            }
            self.dir_changed = true;
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

    /// Makes everything appended so far durable: the newest segment's data, and the directory
    /// when a segment was made in it.
    fn sync(&mut self) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            file.sync_data()?;
        }
        if self.dir_changed {
            std::fs::File::open(&self.dir)?.sync_all()?;
            self.dir_changed = false;
        }
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut writer = SegmentWriter {
            dir: dir.to_owned(),
            per_segment: retention.div_ceil(2).max(1),
            number: segments.last().map_or(0, |(n, _)| *n),
            written: 0,
            file: None,
            dir_changed: false,
            syncs: syncs.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("openwhisk-activations".into())
            .spawn({
                let pending = pending.clone();
                move || loop {
                    let (lock, stop) = &*pending;
                    let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    let (mut guard, _) = stop
                        .wait_timeout_while(guard, FLUSH_EVERY, |p| {
                            !p.closed && p.synced.is_empty()
                        })
                        .unwrap_or_else(PoisonError::into_inner);
                    let batch = std::mem::take(&mut guard.records);
                    let synced = std::mem::take(&mut guard.synced);
                    let closed = guard.closed;
                    drop(guard);
                    for record in &batch {
                        if let Err(e) = writer.append(record) {
                            tracing::warn!(activation = %record.activation_id, error = %e, "cannot keep an activation record on disk");
                        }
                    }
                    if !synced.is_empty() || (closed && !batch.is_empty()) {
                        if let Err(e) = writer.sync() {
                            tracing::warn!(error = %e, "cannot sync the activation records");
                        }
                    }
                    // Waiters are answered even when the disk failed: the record is kept in
                    // memory, and the warning says what was not kept.
                    for waiter in synced {
                        let _ = waiter.send(());
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
            syncs,
        })
    }

    /// Keeps `activation` (the oldest goes past the limit); it reaches the disk with the next
    /// batch, unsynced.
    pub fn record(&self, activation: Activation) -> Arc<Activation> {
        self.keep(activation, None)
    }

    /// Keeps `activation` and returns once its record is synced to disk (with any others
    /// waiting then: one sync for all). While the host shuts down, or when records are made
    /// faster than the disk takes them, it is kept in memory only and returns at once.
    pub async fn record_durable(&self, activation: Activation) -> Arc<Activation> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let activation = self.keep(activation, Some(tx));
        let _ = rx.await;
        activation
    }

    fn keep(
        &self,
        activation: Activation,
        synced: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Arc<Activation> {
        let activation = Arc::new(activation);
        {
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            records.push_back(activation.clone());
            let excess = records.len().saturating_sub(self.retention);
            records.drain(..excess);
        }
        let (lock, wake) = &*self.pending;
        let mut pending = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.closed {
            // Shutting down: kept in memory only (a dropped waiter returns at once).
        } else if pending.records.len() < PENDING_WRITES {
            pending.records.push(activation.clone());
            if let Some(tx) = synced {
                pending.synced.push(tx);
                wake.notify_one();
            }
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

    #[tokio::test]
    async fn a_durable_record_is_on_disk_when_it_returns_and_waiters_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Activations::open(dir.path(), 1000).unwrap());
        let on_disk = || -> String {
            segments(dir.path())
                .unwrap()
                .iter()
                .map(|(_, p)| std::fs::read_to_string(p).unwrap())
                .collect()
        };
        let first = format!("{:032x}", 1);
        store.record_durable(activation(&first, "a", 1)).await;
        assert!(
            on_disk().contains(&first),
            "written before record_durable returns, not at the next batch"
        );
        assert_eq!(store.syncs.load(std::sync::atomic::Ordering::Relaxed), 1);
        let many: Vec<_> = (2..202u64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .record_durable(activation(&format!("{i:032x}"), "a", i))
                        .await
                })
            })
            .collect();
        for task in many {
            task.await.unwrap();
        }
        let text = on_disk();
        assert!((2..202u64).all(|i| text.contains(&format!("{i:032x}"))));
        let syncs = store.syncs.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            syncs <= 101,
            "200 concurrent records take one sync each at most every other record: {syncs}"
        );
        store.shutdown();
    }
}
