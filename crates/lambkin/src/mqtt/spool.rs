//! The spool: every message bound for the broker, on disk (`ROOT/state/spool.db`, WAL,
//! `synchronous=FULL`) from the moment it is accepted until the broker has it (PUBACK for
//! QoS 1, handed to the connection for QoS 0). FIFO by insertion; bounded in bytes. When it is
//! full, queued QoS 0 messages make room first (oldest first); an accepted QoS 1 message is
//! never dropped: the new message is refused instead.
//!
//! Adding a QoS 1 message is fsynced before it is acknowledged. A QoS 0 message promises at
//! most once, so adding one is not fsynced (`synchronous=NORMAL`: it survives the host being
//! killed, not a power loss). Removing a delivered one is not
//! (`synchronous=NORMAL` for that transaction): in WAL mode it survives the host being killed,
//! and only a power loss can bring back deliveries since the last fsync, which are then sent
//! again (at least once). That saves one fsync per delivered message, most of the cost of
//! draining the spool.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{params, Connection, OptionalExtension};

/// The spool, as messages name it.
const DATABASE: &str = "the spool (state/spool.db)";

/// The spool's schema, step by step (see `crate::schema`): a new step is added at the end,
/// never an old one changed. Step 1 is the schema of the releases before versions.
const SCHEMA: &[&str] = &["
    CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        qos INTEGER NOT NULL,
        retain INTEGER NOT NULL,
        payload BLOB NOT NULL,
        properties TEXT NOT NULL,
        size INTEGER NOT NULL
    );
"];

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("Message spool is full")]
    Full,
    #[error("message of {size} bytes is larger than the spool ({max} bytes)")]
    TooLarge { size: u64, max: u64 },
    #[error("spool database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error("cannot create the spool database owner-only: {0}")]
    Create(std::io::Error),
}

/// A message as spooled. `properties` is the MQTT 5 members as JSON (the IPC shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledMessage {
    pub id: i64,
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    pub retain: bool,
    pub payload: Vec<u8>,
    pub properties: String,
}

impl SpooledMessage {
    /// What a message counts against the spool's bound.
    pub fn size(&self) -> u64 {
        (self.topic.len() + self.payload.len() + self.properties.len()) as u64
    }
}

/// A cloneable handle; calls block on SQLite, so async callers use `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    db: Connection,
    max_size: u64,
    size: u64,
}

impl Spool {
    /// Opens the spool at `path`, or in memory with `None` (lost when the host stops).
    pub fn open(path: Option<&Path>, max_size: u64) -> Result<Self, SpoolError> {
        let db = match path {
            Some(path) => {
                // Owner-only before SQLite opens it (its `-wal` and `-shm` files take its mode).
                crate::layout::create_private_file(path).map_err(SpoolError::Create)?;
                let db = Connection::open(path)?;
                // A newer Lambkin's spool is refused before anything is written to it.
                crate::schema::check(&db, DATABASE, SCHEMA)?;
                db.pragma_update(None, "journal_mode", "WAL")?;
                db.pragma_update(None, "synchronous", "FULL")?;
                db
            }
            None => Connection::open_in_memory()?,
        };
        let mut db = db;
        crate::schema::migrate(&mut db, DATABASE, SCHEMA)?;
        let size: i64 = db.query_row("SELECT COALESCE(SUM(size), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                db,
                max_size,
                size: u64::try_from(size).unwrap_or(0),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `message` at the end (its `id` is ignored) and returns its id, once committed.
    pub fn add(&self, message: &SpooledMessage) -> Result<i64, SpoolError> {
        let mut inner = self.lock();
        let size = message.size();
        if size > inner.max_size {
            return Err(SpoolError::TooLarge {
                size,
                max: inner.max_size,
            });
        }
        let (current, max) = (inner.size, inner.max_size);
        if message.qos == 0 {
            inner.db.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let added = Self::insert(&mut inner.db, message, size, current, max);
        if message.qos == 0 {
            // Every QoS 1 write stays fsynced.
            inner.db.pragma_update(None, "synchronous", "FULL")?;
        }
        let (id, freed) = added?;
        inner.size = current - freed + size;
        Ok(id)
    }

    /// One transaction: makes room (dropping queued QoS 0 messages, oldest first) and inserts.
    /// Returns the new id and the bytes freed.
    fn insert(
        db: &mut Connection,
        message: &SpooledMessage,
        size: u64,
        current: u64,
        max: u64,
    ) -> Result<(i64, u64), SpoolError> {
        let tx = db.transaction()?;
        let mut freed = 0u64;
        if current + size > max {
            let mut victims = Vec::new();
            {
                let mut stmt =
                    tx.prepare("SELECT id, size FROM messages WHERE qos = 0 ORDER BY id")?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    if current - freed + size <= max {
                        break;
                    }
                    let (id, bytes): (i64, i64) = (row.get(0)?, row.get(1)?);
                    victims.push(id);
                    freed += u64::try_from(bytes).unwrap_or(0);
                }
            }
            if current - freed + size > max {
                return Err(SpoolError::Full);
            }
            for id in victims {
                tx.execute("DELETE FROM messages WHERE id = ?1", params![id])?;
            }
            tracing::warn!(
                freed,
                "the MQTT spool is full: dropped queued QoS 0 messages"
            );
        }
        tx.execute(
            "INSERT INTO messages (topic, qos, retain, payload, properties, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                message.topic,
                message.qos,
                message.retain,
                message.payload,
                message.properties,
                i64::try_from(size).unwrap_or(i64::MAX)
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok((id, freed))
    }

    /// The oldest message.
    pub fn head(&self) -> Result<Option<SpooledMessage>, SpoolError> {
        let inner = self.lock();
        let message = inner
            .db
            .query_row(
                "SELECT id, topic, qos, retain, payload, properties FROM messages
                 ORDER BY id LIMIT 1",
                [],
                |r| {
                    Ok(SpooledMessage {
                        id: r.get(0)?,
                        topic: r.get(1)?,
                        qos: r.get(2)?,
                        retain: r.get(3)?,
                        payload: r.get(4)?,
                        properties: r.get(5)?,
                    })
                },
            )
            .optional()?;
        Ok(message)
    }

    /// Forgets message `id` (delivered), without waiting for the disk (see the module docs).
    pub fn remove(&self, id: i64) -> Result<(), SpoolError> {
        let mut inner = self.lock();
        inner.db.pragma_update(None, "synchronous", "NORMAL")?;
        let deleted = inner
            .db
            .query_row(
                "DELETE FROM messages WHERE id = ?1 RETURNING size",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .optional();
        // Every other write (adding a message) stays fsynced.
        inner.db.pragma_update(None, "synchronous", "FULL")?;
        let size = deleted?;
        if let Some(size) = size {
            inner.size = inner.size.saturating_sub(u64::try_from(size).unwrap_or(0));
        }
        Ok(())
    }

    /// Messages and bytes queued.
    pub fn usage(&self) -> Result<(u64, u64), SpoolError> {
        let inner = self.lock();
        let count: i64 = inner
            .db
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
        Ok((u64::try_from(count).unwrap_or(0), inner.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, qos: u8, payload: &[u8]) -> SpooledMessage {
        SpooledMessage {
            id: 0,
            topic: topic.into(),
            qos,
            retain: false,
            payload: payload.to_vec(),
            properties: String::new(),
        }
    }

    #[test]
    fn fifo_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let spool = Spool::open(Some(&path), 1000).unwrap();
        let a = spool.add(&message("t", 1, b"a")).unwrap();
        spool.add(&message("t", 1, b"b")).unwrap();
        assert_eq!(spool.head().unwrap().unwrap().payload, b"a");
        drop(spool);
        let spool = Spool::open(Some(&path), 1000).unwrap();
        assert_eq!(spool.usage().unwrap(), (2, 4));
        spool.remove(a).unwrap();
        assert_eq!(spool.head().unwrap().unwrap().payload, b"b");
        assert_eq!(spool.usage().unwrap(), (1, 2));
    }

    #[test]
    fn a_spool_from_before_schema_versions_keeps_its_messages_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let spool = Spool::open(Some(&path), 1000).unwrap();
        spool.add(&message("t", 1, b"kept")).unwrap();
        drop(spool);
        let version = |v: i64| {
            let db = Connection::open(&path).unwrap();
            db.pragma_update(None, "user_version", v).unwrap();
        };
        version(0);
        let spool = Spool::open(Some(&path), 1000).unwrap();
        assert_eq!(spool.head().unwrap().unwrap().payload, b"kept");
        drop(spool);
        version(7);
        let before = std::fs::read(&path).unwrap();
        let e = Spool::open(Some(&path), 1000).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("schema version 7"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_memory_spool_keeps_order() {
        let spool = Spool::open(None, 1000).unwrap();
        let a = spool.add(&message("t", 1, b"a")).unwrap();
        spool.add(&message("t", 0, b"b")).unwrap();
        assert_eq!(spool.head().unwrap().unwrap().payload, b"a");
        spool.remove(a).unwrap();
        assert_eq!(spool.head().unwrap().unwrap().payload, b"b");
        assert_eq!(spool.usage().unwrap(), (1, 2));
    }

    #[test]
    fn full_drops_qos0_first_and_never_qos1() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(Some(&dir.path().join("spool.db")), 10).unwrap();
        spool.add(&message("t", 0, b"0000")).unwrap(); // 5 bytes
        spool.add(&message("t", 1, b"1111")).unwrap(); // 5 bytes
        spool.add(&message("t", 1, b"2222")).unwrap(); // the QoS 0 one makes room
        assert_eq!(spool.head().unwrap().unwrap().payload, b"1111");
        assert!(matches!(
            spool.add(&message("t", 1, b"3")),
            Err(SpoolError::Full)
        ));
        assert!(matches!(
            spool.add(&message("t", 1, b"01234567890")),
            Err(SpoolError::TooLarge { .. })
        ));
        assert_eq!(spool.usage().unwrap(), (2, 10));
    }
}
