//! Activation records: the newest [`Activations::retention`] are kept in memory for reads and
//! on disk (`ROOT/state/openwhisk/activations/ID.json`, 0600) for the next start. A thread of
//! their own writes and removes the files, so an activation's answer never waits for the disk;
//! the oldest record past the limit is dropped from both.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use lambkin_proto::openwhisk::{Activation, ListQuery};

/// How many file writes may wait for the writer; past that a record stays in memory only
/// (and a warning says so).
const PENDING_WRITES: usize = 4096;

enum Write {
    Put(Arc<Activation>),
    Remove(String),
}

#[derive(Debug)]
pub struct Activations {
    /// Oldest first.
    records: Mutex<VecDeque<Arc<Activation>>>,
    retention: usize,
    writer: Mutex<Option<SyncSender<Write>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Put(a) => write!(f, "Put({})", a.activation_id),
            Self::Remove(id) => write!(f, "Remove({id})"),
        }
    }
}

impl Activations {
    /// Reads the records kept in `dir` (made 0700 if missing) and starts the writer.
    pub fn open(dir: &Path, retention: usize) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .and_then(|v| Activation::from_json(&v));
            match record {
                Some(a) => found.push(a),
                None => {
                    tracing::warn!(path = %path.display(), "unreadable activation record removed");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|a| (a.end_ms, a.start_ms));
        let excess = found.len().saturating_sub(retention);
        for old in found.drain(..excess) {
            let _ = std::fs::remove_file(record_path(dir, &old.activation_id));
        }
        let (tx, rx) = sync_channel::<Write>(PENDING_WRITES);
        let dir: PathBuf = dir.to_owned();
        let thread = std::thread::Builder::new()
            .name("openwhisk-activations".into())
            .spawn(move || {
                for write in rx {
                    let result = match &write {
                        Write::Put(a) => crate::layout::write_private(
                            &record_path(&dir, &a.activation_id),
                            a.to_json().to_string().as_bytes(),
                        ),
                        Write::Remove(id) => std::fs::remove_file(record_path(&dir, id)),
                    };
                    if let Err(e) = result {
                        tracing::warn!(?write, error = %e, "cannot update an activation record");
                    }
                }
            })?;
        Ok(Self {
            records: Mutex::new(found.into_iter().map(Arc::new).collect()),
            retention,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn retention(&self) -> usize {
        self.retention
    }

    /// Keeps `activation` (the oldest goes past the limit).
    pub fn record(&self, activation: Activation) -> Arc<Activation> {
        let activation = Arc::new(activation);
        let dropped = {
            let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            records.push_back(activation.clone());
            let excess = records.len().saturating_sub(self.retention);
            records.drain(..excess).collect::<Vec<_>>()
        };
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = writer.as_ref() {
            let writes = dropped
                .into_iter()
                .map(|a| Write::Remove(a.activation_id.clone()))
                .chain(std::iter::once(Write::Put(activation.clone())));
            for write in writes {
                if let Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) =
                    writer.try_send(write)
                {
                    tracing::warn!(write = ?w, "activation records are written slower than made: not kept on disk");
                }
            }
        }
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
        drop(
            self.writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
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

/// Activation ids are generated here (32 hex digits); a stored name that is not one is never
/// made into a path.
fn record_path(dir: &Path, id: &str) -> PathBuf {
    let safe: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    dir.join(format!("{safe}.json"))
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
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3, "the dropped records' files are removed");
        let reopened = Activations::open(dir.path(), 2).unwrap();
        assert_eq!(ids(reopened.list(&all)), vec![40, 30]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        reopened.shutdown();
    }
}
