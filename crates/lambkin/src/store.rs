//! The host's durable state in SQLite (`ROOT/state/lambkin.db`, WAL, `synchronous=FULL`):
//! function definitions and accepted `Event` invocations. One thread owns the connection;
//! [`Store`] is a cloneable handle sending it commands over a bounded channel (callers wait
//! when it is full: nothing is dropped). Event writes that arrive together are committed in
//! one transaction, so a burst of `Event` invocations costs one fsync, not one each.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use lambkin_proto::lambda::function::{FunctionConfig, FunctionName};

/// How many commands may wait for the store thread before senders wait too.
const COMMAND_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored function {name} is unreadable: {source}")]
    Corrupt {
        name: String,
        source: serde_json::Error,
    },
    #[error("state database commit failed: {0}")]
    Commit(String),
    #[error("the state store has stopped")]
    Stopped,
}

/// A function as persisted: its configuration and which code it runs.
#[derive(Debug, Clone)]
pub struct FunctionRecord {
    pub name: FunctionName,
    pub config: FunctionConfig,
    /// Base64 SHA-256 of the zip, as Lambda reports `CodeSha256`.
    pub code_sha256: String,
    pub code_size: u64,
    pub last_modified: String,
}

/// An accepted `Event` invocation not yet run to completion.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    pub function: String,
    pub request_id: String,
    pub payload: Bytes,
}

enum Command {
    PutFunction(Box<FunctionRecord>, oneshot::Sender<Result<(), StoreError>>),
    DeleteFunction(FunctionName, oneshot::Sender<Result<(), StoreError>>),
    PersistEvent {
        function: FunctionName,
        request_id: String,
        payload: Bytes,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    CompleteEvent(i64),
}

#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
}

/// What the host finds in the store when it starts.
#[derive(Debug)]
pub struct Recovered {
    pub functions: Vec<FunctionRecord>,
    pub events: Vec<PendingEvent>,
}

impl Store {
    /// Opens (creating if needed) the database, reads what it holds and starts the store thread.
    pub fn open(path: &Path) -> Result<(Self, Recovered), StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS functions (
                 name TEXT PRIMARY KEY,
                 config TEXT NOT NULL,
                 code_sha256 TEXT NOT NULL,
                 code_size INTEGER NOT NULL,
                 last_modified TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 function TEXT NOT NULL,
                 request_id TEXT NOT NULL,
                 payload BLOB NOT NULL
             );",
        )?;
        let recovered = Recovered {
            functions: load_functions(&conn)?,
            events: load_events(&conn)?,
        };
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        std::thread::Builder::new()
            .name("lambkin-store".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Commit(format!("cannot start the store thread: {e}")))?;
        Ok((Self { tx }, recovered))
    }

    pub async fn put_function(&self, record: FunctionRecord) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PutFunction(Box::new(record), reply))
            .await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Deletes the function and every pending event of it.
    pub async fn delete_function(&self, name: FunctionName) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::DeleteFunction(name, reply)).await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Durably records an accepted `Event` invocation; returns its sequence number once the
    /// write is on disk.
    pub async fn persist_event(
        &self,
        function: FunctionName,
        request_id: String,
        payload: Bytes,
    ) -> Result<i64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PersistEvent {
            function,
            request_id,
            payload,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Forgets an event that has run (or was refused before it was acknowledged).
    pub async fn complete_event(&self, seq: i64) {
        if self.send(Command::CompleteEvent(seq)).await.is_err() {
            tracing::warn!(seq, "state store stopped before event completion was recorded; it will run again after restart");
        }
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.tx.send(command).await.map_err(|_| StoreError::Stopped)
    }
}

fn load_functions(conn: &Connection) -> Result<Vec<FunctionRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT name, config, code_sha256, code_size, last_modified FROM functions ORDER BY name",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, config, code_sha256, code_size, last_modified) = row?;
        let corrupt = |source| StoreError::Corrupt {
            name: name.clone(),
            source,
        };
        let config: FunctionConfig = serde_json::from_str(&config).map_err(corrupt)?;
        let fname: FunctionName =
            serde_json::from_value(serde_json::Value::String(name.clone())).map_err(corrupt)?;
        out.push(FunctionRecord {
            name: fname,
            config,
            code_sha256,
            code_size: code_size as u64,
            last_modified,
        });
    }
    Ok(out)
}

fn load_events(conn: &Connection) -> Result<Vec<PendingEvent>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT seq, function, request_id, payload FROM events ORDER BY seq")?;
    let rows = stmt.query_map([], |row| {
        Ok(PendingEvent {
            seq: row.get(0)?,
            function: row.get(1)?,
            request_id: row.get(2)?,
            payload: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= COMMAND_QUEUE {
                break;
            }
        }
        apply_batch(&mut conn, std::mem::take(&mut batch));
    }
}

/// Applies a batch in one transaction; replies only after the commit, so an acknowledged
/// write is on disk.
fn apply_batch(conn: &mut Connection, batch: Vec<Command>) {
    type Reply = Box<dyn FnOnce(Option<&str>)>;
    let mut replies: Vec<Reply> = Vec::new();
    let commit = (|| -> Result<(), rusqlite::Error> {
        let tx = conn.transaction()?;
        for command in batch {
            match command {
                Command::PutFunction(record, reply) => {
                    let outcome = put_function(&tx, &record);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                Command::DeleteFunction(name, reply) => {
                    let outcome = tx
                        .execute("DELETE FROM functions WHERE name = ?1", [name.as_str()])
                        .and_then(|_| {
                            tx.execute("DELETE FROM events WHERE function = ?1", [name.as_str()])
                        })
                        .map(drop)
                        .map_err(StoreError::from);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                Command::PersistEvent {
                    function,
                    request_id,
                    payload,
                    reply,
                } => {
                    let outcome = tx
                        .execute(
                            "INSERT INTO events (function, request_id, payload) VALUES (?1, ?2, ?3)",
                            params![function.as_str(), request_id, payload.as_ref()],
                        )
                        .map(|_| tx.last_insert_rowid())
                        .map_err(StoreError::from);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(committed(failed).and(outcome));
                    }));
                }
                Command::CompleteEvent(seq) => {
                    if let Err(e) = tx.execute("DELETE FROM events WHERE seq = ?1", [seq]) {
                        tracing::error!(seq, error = %e, "could not forget a completed event");
                    }
                }
            }
        }
        tx.commit()
    })();
    let failed = commit.err().map(|e| e.to_string());
    if let Some(e) = &failed {
        tracing::error!(error = %e, "state database transaction failed");
    }
    for reply in replies {
        reply(failed.as_deref());
    }
}

fn committed(failed: Option<&str>) -> Result<(), StoreError> {
    match failed {
        None => Ok(()),
        Some(e) => Err(StoreError::Commit(e.to_owned())),
    }
}

fn put_function(tx: &rusqlite::Transaction<'_>, record: &FunctionRecord) -> Result<(), StoreError> {
    let config = serde_json::to_string(&record.config).map_err(|source| StoreError::Corrupt {
        name: record.name.to_string(),
        source,
    })?;
    tx.execute(
        "INSERT OR REPLACE INTO functions (name, config, code_sha256, code_size, last_modified)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            record.name.as_str(),
            config,
            record.code_sha256,
            record.code_size as i64,
            record.last_modified
        ],
    )?;
    Ok(())
}
