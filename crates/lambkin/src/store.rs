//! The host's durable state in SQLite (`ROOT/state/lambkin.db`, WAL, `synchronous=FULL`):
//! function definitions, accepted `Event` invocations, the device's components and its
//! deployments. A component's configuration is kept as it was deployed plus the changes made
//! to it since over IPC, each saved as it is made (a few bytes, not the whole configuration)
//! and folded into the configuration every [`FOLD_AFTER`] changes and when the host starts.
//! One thread owns the connection;
//! [`Store`] is a cloneable handle sending it commands over a bounded channel (callers wait
//! when it is full: nothing is dropped). Event writes that arrive together are committed in
//! one transaction, so a burst of `Event` invocations costs one fsync, not one each.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use lambkin_proto::deployment::Report;
use lambkin_proto::ipc::shapes::deployments::DeploymentStatus;
use lambkin_proto::lambda::function::{FunctionConfig, FunctionName};

/// The state database, as messages name it.
const DATABASE: &str = "the state database (state/lambkin.db)";

/// The state database's schema, step by step (see `crate::schema`): a new step is added at
/// the end, never an old one changed. Step 1 is the schema of the releases before versions;
/// step 2 keeps an `Event`'s client context (a triggered message's subject); step 3 keeps
/// what a deployment's end reported (detailed status, error stack and types, as JSON).
const SCHEMA: &[&str] = &[
    "
    CREATE TABLE IF NOT EXISTS functions (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        code_sha256 TEXT NOT NULL,
        code_size INTEGER NOT NULL,
        last_modified TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS components (
        name TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS config_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        component TEXT NOT NULL,
        key_path TEXT NOT NULL,
        value_to_merge TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS deployments (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        request TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        function TEXT NOT NULL,
        request_id TEXT NOT NULL,
        payload BLOB NOT NULL
    );
",
    "
    ALTER TABLE events ADD COLUMN client_context TEXT;
",
    "
    ALTER TABLE deployments ADD COLUMN report TEXT;
",
];

/// How many commands may wait for the store thread before senders wait too.
const COMMAND_QUEUE: usize = 1024;

/// How many saved changes a component's configuration may have before they are folded into
/// it: a configuration is written whole once per this many updates, not on every one.
pub const FOLD_AFTER: i64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    #[error("cannot create the state database owner-only: {0}")]
    Create(std::io::Error),
    #[error("stored function {name} is unreadable: {source}")]
    Corrupt {
        name: String,
        source: serde_json::Error,
    },
    #[error("stored function name is invalid: {0}")]
    BadName(String),
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
    /// The client context JSON it runs with (a triggered message's subject), if any.
    pub client_context: Option<String>,
}

enum Command {
    PutFunction(Box<FunctionRecord>, oneshot::Sender<Result<(), StoreError>>),
    DeleteFunction(FunctionName, oneshot::Sender<Result<(), StoreError>>),
    PersistEvent {
        function: FunctionName,
        request_id: String,
        payload: Bytes,
        client_context: Option<String>,
        reply: oneshot::Sender<Result<i64, StoreError>>,
    },
    CompleteEvent(i64),
    BeginDeployment(DeploymentRecord, oneshot::Sender<Result<(), StoreError>>),
    /// A queued deployment's turn came: `IN_PROGRESS`.
    StartDeployment(String, oneshot::Sender<Result<(), StoreError>>),
    /// Ends a deployment; on success also replaces the device's components, atomically.
    EndDeployment {
        id: String,
        status: DeploymentStatus,
        message: String,
        report: Report,
        components: Option<Vec<ComponentRecord>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ListDeployments(oneshot::Sender<Result<Vec<DeploymentRecord>, StoreError>>),
    /// A device component's whole configuration, as it runs again after a rollback.
    PutComponentConfig {
        name: String,
        config: serde_json::Value,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Device components' configurations changed outside a deployment (IPC), in order.
    AppendConfigChanges {
        changes: Vec<ConfigChange>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A consistent copy of the database at a new path, taken between two batches.
    Snapshot(std::path::PathBuf, oneshot::Sender<Result<(), StoreError>>),
}

/// One UpdateConfiguration of a component's configuration, as saved.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    pub component: String,
    pub key_path: Vec<String>,
    pub value_to_merge: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
}

/// A component of the last successful deployment: what the device runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentRecord {
    pub name: String,
    pub version: String,
    /// The component's effective configuration.
    pub config: serde_json::Value,
}

/// A deployment as recorded: `QUEUED` when accepted, `IN_PROGRESS` once its turn comes, then
/// how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub id: String,
    pub status: DeploymentStatus,
    /// The request as JSON, kept for `ListLocalDeployments` and diagnosis.
    pub request: String,
    pub message: String,
    /// What its end reported; `None` while it is in progress (and for deployments recorded
    /// before the store kept reports).
    pub report: Option<Report>,
}

/// What the host finds in the store when it starts.
#[derive(Debug)]
pub struct Recovered {
    pub functions: Vec<FunctionRecord>,
    pub events: Vec<PendingEvent>,
    pub components: Vec<ComponentRecord>,
    /// Deployments that were in progress when the host stopped; the host marks them failed.
    pub interrupted: Vec<DeploymentRecord>,
}

impl Store {
    /// Opens (creating if needed) the database, reads what it holds and starts the store thread.
    pub fn open(path: &Path) -> Result<(Self, Recovered), StoreError> {
        // The database exists 0600 before SQLite opens it: SQLite creates a new one with the
        // umask's mode, and gives its `-wal` file the database's mode.
        crate::layout::create_private_file(path).map_err(StoreError::Create)?;
        let mut conn = Connection::open(path)?;
        // Only the host opens its database, so it holds it exclusively; SQLite then keeps the
        // log's index in memory instead of a `-shm` file, which a full disk could not grow
        // (the host could not even read its state then).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        // A newer Lambkin's database is refused before anything is written to it.
        crate::schema::check(&conn, DATABASE, SCHEMA)?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        crate::schema::migrate(&mut conn, DATABASE, SCHEMA)?;
        fold_all_config_changes(&conn)?;
        let recovered = Recovered {
            functions: load_functions(&conn)?,
            events: load_events(&conn)?,
            components: load_components(&conn)?,
            interrupted: load_deployments(&conn, "WHERE status IN ('QUEUED', 'IN_PROGRESS')")?,
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
        self.persist_event_with_context(function, request_id, payload, None)
            .await
    }

    /// [`Store::persist_event`] with the client context the event runs with, also after a
    /// restart.
    pub async fn persist_event_with_context(
        &self,
        function: FunctionName,
        request_id: String,
        payload: Bytes,
        client_context: Option<String>,
    ) -> Result<i64, StoreError> {
        // A write that fails (a full disk, an I/O error), for tests of what survives one.
        if crate::failpoint::fails("store-persist-event") {
            return Err(StoreError::Commit(
                "database or disk is full (failpoint store-persist-event)".to_owned(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::PersistEvent {
            function,
            request_id,
            payload,
            client_context,
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

    /// Records a deployment as it is accepted (`QUEUED`), before anything of it is applied.
    pub async fn begin_deployment(&self, record: DeploymentRecord) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::BeginDeployment(record, reply)).await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Records that deployment `id`'s turn came (`IN_PROGRESS`).
    pub async fn start_deployment(&self, id: String) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::StartDeployment(id, reply)).await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Ends a deployment. `components` (on success) becomes the device's component set in the
    /// same transaction, so a crash leaves either the old set or the new one.
    pub async fn end_deployment(
        &self,
        id: String,
        status: DeploymentStatus,
        message: String,
        report: Report,
        components: Option<Vec<ComponentRecord>>,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::EndDeployment {
            id,
            status,
            message,
            report,
            components,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Records changes of components' configurations made outside a deployment (IPC
    /// UpdateConfiguration), in the order given, so that the host starts each with its changed
    /// configuration and the next deployment's RESET/MERGE apply on top of it. Only a
    /// component of the device's set is changed: one that a deployment in progress brings
    /// gets its configuration recorded, changes included, when that deployment commits.
    pub async fn append_config_changes(
        &self,
        changes: Vec<ConfigChange>,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AppendConfigChanges { changes, reply })
            .await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Records a device component's whole configuration (after a rollback, as it runs
    /// again); its saved changes are in it.
    pub async fn put_component_config(
        &self,
        name: String,
        config: serde_json::Value,
    ) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PutComponentConfig {
            name,
            config,
            reply,
        })
        .await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// The last deployments, newest first.
    pub async fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::ListDeployments(reply)).await?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Writes a consistent copy of the database to `path` (which must not exist), holding
    /// every write acknowledged before the call.
    pub async fn snapshot(&self, path: std::path::PathBuf) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Snapshot(path, reply)).await?;
        rx.await.map_err(|_| StoreError::Stopped)?
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
        let fname = FunctionName::parse(&name).map_err(|e| StoreError::BadName(e.to_string()))?;
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

fn load_components(conn: &Connection) -> Result<Vec<ComponentRecord>, StoreError> {
    let mut stmt = conn.prepare("SELECT name, version, config FROM components ORDER BY name")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, version, config) = row?;
        let config = serde_json::from_str(&config).map_err(|source| StoreError::Corrupt {
            name: name.clone(),
            source,
        })?;
        out.push(ComponentRecord {
            name,
            version,
            config,
        });
    }
    Ok(out)
}

fn load_deployments(conn: &Connection, filter: &str) -> Result<Vec<DeploymentRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT id, status, request, message, report FROM deployments {filter} ORDER BY seq DESC LIMIT 50"
    ))?;
    let rows = stmt.query_map([], |row| {
        let status: String = row.get(1)?;
        let status = DeploymentStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown deployment status {status:?}").into(),
            )
        })?;
        let report = row
            .get::<_, Option<String>>(4)?
            .map(|text| serde_json::from_str::<Report>(&text))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
            })?;
        Ok(DeploymentRecord {
            id: row.get(0)?,
            status,
            request: row.get(2)?,
            message: row.get(3)?,
            report,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn load_events(conn: &Connection) -> Result<Vec<PendingEvent>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, function, request_id, payload, client_context FROM events ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(PendingEvent {
            seq: row.get(0)?,
            function: row.get(1)?,
            request_id: row.get(2)?,
            payload: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            client_context: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                // What came before it is committed first, so the copy holds every write
                // acknowledged before it was asked for.
                Command::Snapshot(path, reply) => {
                    if !batch.is_empty() {
                        apply_batch(&mut conn, std::mem::take(&mut batch));
                    }
                    let _ = reply.send(snapshot(&conn, &path));
                }
                command => batch.push(command),
            }
            if batch.len() < COMMAND_QUEUE {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            apply_batch(&mut conn, std::mem::take(&mut batch));
        }
    }
}

/// `VACUUM INTO`: a consistent, compact copy of the database at `path` (which must not exist),
/// made owner-only.
fn snapshot(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let target = path
        .to_str()
        .ok_or_else(|| StoreError::Commit(format!("{} is not UTF-8", path.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(StoreError::Create)?;
    Ok(())
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
                    client_context,
                    reply,
                } => {
                    let outcome = tx
                        .execute(
                            "INSERT INTO events (function, request_id, payload, client_context) VALUES (?1, ?2, ?3, ?4)",
                            params![function.as_str(), request_id, payload.as_ref(), client_context],
                        )
                        .map(|_| tx.last_insert_rowid())
                        .map_err(StoreError::from);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(committed(failed).and(outcome));
                    }));
                }
                Command::BeginDeployment(record, reply) => {
                    let outcome = tx
                        .execute(
                            "INSERT INTO deployments (id, status, request, message) VALUES (?1, ?2, ?3, ?4)",
                            params![record.id, record.status.as_str(), record.request, record.message],
                        )
                        .map(drop)
                        .map_err(StoreError::from);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                Command::StartDeployment(id, reply) => {
                    let outcome = tx
                        .execute(
                            "UPDATE deployments SET status = ?2 WHERE id = ?1",
                            params![id, DeploymentStatus::InProgress.as_str()],
                        )
                        .map(drop)
                        .map_err(StoreError::from);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                Command::EndDeployment {
                    id,
                    status,
                    message,
                    report,
                    components,
                    reply,
                } => {
                    let outcome = end_deployment(
                        &tx,
                        &id,
                        (status, &message, &report),
                        components.as_deref(),
                    );
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                Command::PutComponentConfig {
                    name,
                    config,
                    reply,
                } => {
                    let outcome = tx
                        .execute(
                            "UPDATE components SET config = ?2 WHERE name = ?1",
                            params![name, config.to_string()],
                        )
                        .and_then(|_| {
                            tx.execute("DELETE FROM config_changes WHERE component = ?1", [&name])
                        })
                        .map(drop)
                        .map_err(StoreError::from);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                Command::AppendConfigChanges { changes, reply } => {
                    let outcome = append_config_changes(&tx, &changes);
                    replies.push(Box::new(move |failed| {
                        let _ = reply.send(outcome.and(committed(failed)));
                    }));
                }
                // `run` takes snapshots between batches; none reaches a batch.
                Command::Snapshot(path, reply) => {
                    let _ = reply.send(Err(StoreError::Commit(format!(
                        "a snapshot to {} cannot be taken within a batch",
                        path.display()
                    ))));
                }
                Command::ListDeployments(reply) => {
                    let outcome = load_deployments(&tx, "");
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
    let failed = commit.err().map(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => format!("the device's disk is full ({e})"),
        _ => e.to_string(),
    });
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

/// Records `id`'s end: its status, message and report; `components` (on success) become the
/// device's set.
fn end_deployment(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    (status, message, report): (DeploymentStatus, &str, &Report),
    components: Option<&[ComponentRecord]>,
) -> Result<(), StoreError> {
    let report = serde_json::to_string(report).map_err(|e| StoreError::Commit(e.to_string()))?;
    tx.execute(
        "UPDATE deployments SET status = ?2, message = ?3, report = ?4 WHERE id = ?1",
        params![id, status.as_str(), message, report],
    )?;
    if let Some(components) = components {
        // The configurations given are the components' whole configurations, changes made
        // over IPC included.
        tx.execute("DELETE FROM components", [])?;
        tx.execute("DELETE FROM config_changes", [])?;
        for c in components {
            tx.execute(
                "INSERT INTO components (name, version, config) VALUES (?1, ?2, ?3)",
                params![c.name, c.version, c.config.to_string()],
            )?;
        }
    }
    Ok(())
}

fn append_config_changes(
    tx: &rusqlite::Transaction<'_>,
    changes: &[ConfigChange],
) -> Result<(), StoreError> {
    let mut touched = std::collections::BTreeSet::new();
    for change in changes {
        let key_path = serde_json::Value::from(change.key_path.clone()).to_string();
        let merge = serde_json::Value::Object(change.value_to_merge.clone()).to_string();
        let added = tx.execute(
            "INSERT INTO config_changes (component, key_path, value_to_merge)
             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM components WHERE name = ?1)",
            params![change.component, key_path, merge],
        )?;
        if added > 0 {
            touched.insert(change.component.as_str());
        }
    }
    for component in touched {
        let saved: i64 = tx.query_row(
            "SELECT COUNT(*) FROM config_changes WHERE component = ?1",
            [component],
            |row| row.get(0),
        )?;
        if saved >= FOLD_AFTER {
            fold_config_changes(tx, component)?;
        }
    }
    Ok(())
}

/// Folds a component's saved changes into its configuration and forgets them.
fn fold_config_changes(conn: &Connection, component: &str) -> Result<(), StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        name: component.to_owned(),
        source,
    };
    let config: Option<String> = conn
        .query_row(
            "SELECT config FROM components WHERE name = ?1",
            [component],
            |row| row.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    if let Some(config) = config {
        let mut config: serde_json::Value = serde_json::from_str(&config).map_err(corrupt)?;
        let mut stmt = conn.prepare(
            "SELECT key_path, value_to_merge FROM config_changes WHERE component = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([component], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (key_path, merge) = row?;
            let key_path: Vec<String> = serde_json::from_str(&key_path).map_err(corrupt)?;
            let merge: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&merge).map_err(corrupt)?;
            lambkin_proto::ipc::shapes::configuration::apply_update(&mut config, &key_path, merge);
        }
        conn.execute(
            "UPDATE components SET config = ?2 WHERE name = ?1",
            params![component, config.to_string()],
        )?;
    }
    conn.execute(
        "DELETE FROM config_changes WHERE component = ?1",
        [component],
    )?;
    Ok(())
}

/// Folds every component's saved changes into its configuration, in one transaction.
fn fold_all_config_changes(conn: &Connection) -> Result<(), StoreError> {
    let components: Vec<String> = conn
        .prepare("SELECT DISTINCT component FROM config_changes")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if components.is_empty() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let folded = components
        .iter()
        .try_for_each(|c| fold_config_changes(conn, c));
    match folded {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(id: &str) -> DeploymentRecord {
        DeploymentRecord {
            id: id.into(),
            status: DeploymentStatus::InProgress,
            request: "{}".into(),
            message: String::new(),
            report: None,
        }
    }

    #[tokio::test]
    async fn the_database_and_its_wal_files_are_owner_only_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        // A database an earlier version left readable by others is closed too.
        std::fs::write(&db, "").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (store, _) = Store::open(&db).unwrap();
        store.begin_deployment(deployment("d1")).await.unwrap();
        for file in ["state.db", "state.db-wal"] {
            let mode = std::fs::metadata(tmp.path().join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    /// A root the releases before schema versions wrote (the same tables, `user_version` 0)
    /// opens with everything in it, and is marked with the current version.
    #[tokio::test]
    async fn a_database_from_before_schema_versions_opens_with_everything_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        let function = FunctionRecord {
            name: FunctionName::parse("kept").unwrap(),
            config: FunctionConfig {
                runtime: lambkin_proto::lambda::function::Runtime::Python { minor: 12 },
                handler: Some("app.handler".into()),
                timeout_seconds: 3,
                timeout_ms: None,
                memory_size_mb: 128,
                environment: std::collections::BTreeMap::new(),
                description: String::new(),
                role: String::new(),
                greengrass: Default::default(),
                layers: Vec::new(),
            },
            code_sha256: "c2hh".into(),
            code_size: 3,
            last_modified: "2026-01-01T00:00:00.000+0000".into(),
        };
        {
            let (store, _) = Store::open(&db).unwrap();
            store.put_function(function.clone()).await.unwrap();
            store
                .persist_event(
                    function.name.clone(),
                    "r1".into(),
                    Bytes::from_static(b"{}"),
                )
                .await
                .unwrap();
            deployed(&store, "d1", "com.example.A", json!({"k": 1})).await;
        }
        // As an older release left it: no version, and the tables of step 1 alone.
        let old = Connection::open(&db).unwrap();
        old.execute_batch(
            "ALTER TABLE events DROP COLUMN client_context;
             ALTER TABLE deployments DROP COLUMN report;",
        )
        .unwrap();
        old.pragma_update(None, "user_version", 0).unwrap();
        drop(old);

        let (_store, recovered) = Store::open(&db).unwrap();
        assert_eq!(recovered.functions.len(), 1);
        assert_eq!(recovered.functions[0].config, function.config);
        assert_eq!(recovered.events.len(), 1);
        assert_eq!(recovered.events[0].request_id, "r1");
        assert_eq!(recovered.components.len(), 1);
        assert_eq!(recovered.components[0].config, json!({"k": 1}));
        // A deployment that ended before reports were kept lists without one.
        let listed = _store.list_deployments().await.unwrap();
        assert_eq!(listed[0].id, "d1");
        assert_eq!(listed[0].report, None);
        drop(_store);
        let reopened = Connection::open(&db).unwrap();
        let version: i64 = reopened
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::schema::known(SCHEMA));
    }

    /// A newer Lambkin's database is refused, byte for byte as it was.
    #[test]
    fn a_database_of_a_newer_schema_is_refused_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        let newer = Connection::open(&db).unwrap();
        newer
            .execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
        drop(newer);
        let before = std::fs::read(&db).unwrap();
        let e = Store::open(&db).map(|_| ()).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Schema(crate::schema::SchemaError::Newer { found: 99, .. })
            ),
            "{e}"
        );
        assert_eq!(std::fs::read(&db).unwrap(), before);
    }

    #[tokio::test]
    async fn a_deployment_replaces_components_only_when_it_succeeds() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        let component = |v: &str| ComponentRecord {
            name: "com.example.A".into(),
            version: v.into(),
            config: serde_json::json!({"k": v}),
        };
        let broke = Report::failed(
            lambkin_proto::deployment::Detailed::FailedRollbackComplete,
            &[
                lambkin_proto::deployment::ErrorCode::ComponentUpdateError,
                lambkin_proto::deployment::ErrorCode::ComponentBroken,
            ],
            [].into_iter(),
        );
        {
            let (store, recovered) = Store::open(&db).unwrap();
            assert!(recovered.components.is_empty());
            store.begin_deployment(deployment("d1")).await.unwrap();
            store
                .end_deployment(
                    "d1".into(),
                    DeploymentStatus::Succeeded,
                    String::new(),
                    Report::succeeded(),
                    Some(vec![component("1.0.0")]),
                )
                .await
                .unwrap();
            store.begin_deployment(deployment("d2")).await.unwrap();
            store
                .end_deployment(
                    "d2".into(),
                    DeploymentStatus::Failed,
                    "install failed".into(),
                    broke.clone(),
                    None,
                )
                .await
                .unwrap();
            // d3 never ends: the host "crashes" during it; d4 was accepted behind it.
            let queued = |id: &str| DeploymentRecord {
                status: DeploymentStatus::Queued,
                ..deployment(id)
            };
            store.begin_deployment(queued("d3")).await.unwrap();
            store.start_deployment("d3".into()).await.unwrap();
            store.begin_deployment(queued("d4")).await.unwrap();
            let listed = store.list_deployments().await.unwrap();
            assert_eq!(
                listed
                    .iter()
                    .map(|d| (d.id.as_str(), d.status))
                    .collect::<Vec<_>>(),
                [
                    ("d4", DeploymentStatus::Queued),
                    ("d3", DeploymentStatus::InProgress),
                    ("d2", DeploymentStatus::Failed),
                    ("d1", DeploymentStatus::Succeeded)
                ]
            );
            // Each end's report is kept with it; one not ended has none yet.
            assert_eq!(
                listed.iter().map(|d| d.report.clone()).collect::<Vec<_>>(),
                [None, None, Some(broke.clone()), Some(Report::succeeded())]
            );
        }
        let (_store, recovered) = Store::open(&db).unwrap();
        assert_eq!(recovered.components, vec![component("1.0.0")]);
        // Both are found at the next start: the one in progress and the one waiting for it.
        assert_eq!(
            recovered
                .interrupted
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>(),
            ["d4", "d3"]
        );
    }

    fn change(component: &str, key_path: &[&str], merge: serde_json::Value) -> ConfigChange {
        ConfigChange {
            component: component.into(),
            key_path: key_path.iter().map(|k| k.to_string()).collect(),
            value_to_merge: merge.as_object().cloned().unwrap(),
        }
    }

    async fn deployed(store: &Store, id: &str, name: &str, config: serde_json::Value) {
        store.begin_deployment(deployment(id)).await.unwrap();
        let record = ComponentRecord {
            name: name.into(),
            version: "1.0.0".into(),
            config,
        };
        store
            .end_deployment(
                id.into(),
                DeploymentStatus::Succeeded,
                String::new(),
                Report::succeeded(),
                Some(vec![record]),
            )
            .await
            .unwrap();
    }

    /// Updates of a large configuration write the change, not the configuration: 63 one-key
    /// updates of a 512 KiB configuration (one short of a fold) grow the write-ahead log by
    /// less than two copies of it, where writing it whole would put 32 MB through the log
    /// (which SQLite starts over once it holds 1,000 pages, so 3.5 to 4 MB); and every change
    /// is there after a reopen.
    #[tokio::test]
    async fn configuration_updates_are_written_as_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        let big = "x".repeat(512 * 1024);
        {
            let (store, _) = Store::open(&db).unwrap();
            deployed(&store, "d1", "com.example.A", json!({"big": big, "n": 0})).await;
            let wal = db.with_extension("db-wal");
            let before = std::fs::metadata(&wal).unwrap().len();
            for n in 1..FOLD_AFTER {
                store
                    .append_config_changes(vec![change("com.example.A", &["m"], json!({"n": n}))])
                    .await
                    .unwrap();
            }
            let grown = std::fs::metadata(&wal)
                .unwrap()
                .len()
                .saturating_sub(before);
            assert!(grown < 1024 * 1024, "the log grew by {grown} bytes");
        }
        let (_store, recovered) = Store::open(&db).unwrap();
        assert_eq!(
            recovered.components[0].config["m"],
            json!({"n": FOLD_AFTER - 1})
        );
        assert_eq!(
            recovered.components[0].config["big"].as_str().map(str::len),
            Some(512 * 1024)
        );
    }

    /// Saved changes replay in the order they were made, folded or not.
    #[tokio::test]
    async fn saved_changes_replay_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        {
            let (store, _) = Store::open(&db).unwrap();
            deployed(&store, "d1", "com.example.A", json!({"leaf": 1})).await;
            store
                .append_config_changes(vec![
                    change("com.example.A", &["leaf"], json!({"x": 1})),
                    change("com.example.A", &[], json!({"leaf": {"y": 2}})),
                ])
                .await
                .unwrap();
            for n in 0..FOLD_AFTER {
                store
                    .append_config_changes(vec![change("com.example.A", &[], json!({"n": n}))])
                    .await
                    .unwrap();
            }
            store
                .append_config_changes(vec![change("com.example.A", &[], json!({"last": true}))])
                .await
                .unwrap();
        }
        let (_store, recovered) = Store::open(&db).unwrap();
        assert_eq!(
            recovered.components[0].config,
            json!({"leaf": {"x": 1, "y": 2}, "n": FOLD_AFTER - 1, "last": true})
        );
    }

    #[tokio::test]
    async fn a_configuration_change_outside_a_deployment_is_kept_for_device_components_only() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        {
            let (store, _) = Store::open(&db).unwrap();
            store.begin_deployment(deployment("d1")).await.unwrap();
            let a = ComponentRecord {
                name: "com.example.A".into(),
                version: "1.0.0".into(),
                config: serde_json::json!({"n": 1, "keep": true}),
            };
            store
                .end_deployment(
                    "d1".into(),
                    DeploymentStatus::Succeeded,
                    String::new(),
                    Report::succeeded(),
                    Some(vec![a]),
                )
                .await
                .unwrap();
            store
                .append_config_changes(vec![change("com.example.A", &[], json!({"n": 2}))])
                .await
                .unwrap();
            // Not on the device: nothing to change, nothing added.
            store
                .append_config_changes(vec![change("com.example.B", &[], json!({"n": 3}))])
                .await
                .unwrap();
        }
        let (_store, recovered) = Store::open(&db).unwrap();
        assert_eq!(
            recovered.components,
            vec![ComponentRecord {
                name: "com.example.A".into(),
                version: "1.0.0".into(),
                config: serde_json::json!({"n": 2, "keep": true}),
            }]
        );
    }
}
