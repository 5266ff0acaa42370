//! The IPC socket: a Unix listener at `ROOT/ipc.socket`, one task per connection driving a
//! [`Session`] (`greengrass-ipc.md` §1.2, §6). Each connection has a bounded write queue
//! drained by its own writer task; a client that stops reading stalls only its own
//! connection, and its subscriptions then lose their oldest messages (the pub/sub overflow
//! policy), never anyone else's. A bad frame closes only the connection that sent it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use lambkin_proto::eventstream::Decoder;
use lambkin_proto::ipc::{
    Action, IpcError, Session, StreamId, CLIENT_CONNECT_TIMEOUT, REJECTED_LINGER,
};

use super::operations::{self, ConfigurationChanged, Outcome, Services};

/// Frames waiting to be written to one client before its connection stops reading.
const WRITE_QUEUE: usize = 256;
/// Most bytes of queued frames gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Subscription events waiting for the connection's task, across its subscriptions.
const EVENT_QUEUE: usize = 256;
/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How long a closing connection's queued frames may take to be written.
const WRITE_DRAIN: Duration = Duration::from_secs(5);
/// Longest a Unix socket path may be (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Binds the socket at `path` (absolute), readable and writable by every user, as the
/// nucleus makes it (§1.2). A socket left by a host that crashed is replaced.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let length = path.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        anyhow::bail!(
            "the IPC socket path {} is {length} bytes, over the {MAX_SOCKET_PATH} a Unix socket allows; use a shorter root",
            path.display()
        );
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the old socket {}", path.display()))?;
        }
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot make {} usable by every user", path.display()))?;
    Ok(listener)
}

/// The socket's path under `root`, made absolute: components get it in their environment and
/// run in their own directories.
pub fn socket_path(root: &Path) -> std::io::Result<PathBuf> {
    Ok(std::path::absolute(root)?.join("ipc.socket"))
}

/// Serves connections until `stop` turns true; then closes every connection.
pub async fn serve(
    listener: UnixListener,
    services: Arc<Services>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "IPC accept failed");
                    continue;
                }
            },
        };
        let services = services.clone();
        connections.spawn(async move {
            Connection::new(services).run(stream).await;
            drop(permit);
        });
        // Reap finished connections so the set stays as large as what is open.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// What the connection's own tasks tell it.
enum Internal {
    Event(StreamId, Vec<u8>),
}

struct Connection {
    services: Arc<Services>,
    session: Session,
    /// The task forwarding each open SubscribeToTopic stream's messages.
    forwarders: HashMap<StreamId, AbortHandle>,
    /// Open SubscribeToConfigurationUpdate streams: component and key path.
    config_streams: HashMap<StreamId, (String, Vec<String>)>,
    events_tx: mpsc::Sender<Internal>,
    events_rx: mpsc::Receiver<Internal>,
    /// Operations answered later (they wait on the engine), by stream.
    pending: JoinSet<(StreamId, Result<Vec<u8>, IpcError>)>,
    tasks: JoinSet<()>,
}

/// Why the connection's loop ends.
enum End {
    Close,
    AwaitClientClose,
}

impl Connection {
    fn new(services: Arc<Services>) -> Self {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        Self {
            services,
            session: Session::new(),
            forwarders: HashMap::new(),
            config_streams: HashMap::new(),
            events_tx,
            events_rx,
            pending: JoinSet::new(),
            tasks: JoinSet::new(),
        }
    }

    async fn run(mut self, stream: UnixStream) {
        let (mut reader, writer) = stream.into_split();
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let writer_task = tokio::spawn(write_frames(writer, out_rx));
        let mut config_changes = self.services.configuration_changes();
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; 16 * 1024];
        let connect_deadline = Instant::now() + CLIENT_CONNECT_TIMEOUT;
        let end = loop {
            let actions = tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => {
                        let actions = self.session.on_disconnected();
                        self.perform(actions, &out_tx).await;
                        break End::Close;
                    }
                    Ok(n) => {
                        decoder.push(&buf[..n]);
                        let mut actions = Vec::new();
                        loop {
                            match decoder.next_frame() {
                                Ok(Some(frame)) => actions.extend(self.session.on_frame(frame)),
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::debug!(error = %e, "IPC client sent a bad frame; closing its connection");
                                    actions.extend(self.session.on_decode_error());
                                    break;
                                }
                            }
                        }
                        actions
                    }
                },
                Some(Internal::Event(stream, payload)) = self.events_rx.recv() => {
                    self.session.send_event(stream, payload).unwrap_or_default()
                }
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => match done {
                    Ok((stream, result)) => self.answer(stream, result),
                    Err(_) => Vec::new(),
                },
                change = config_changes.recv(), if !self.config_streams.is_empty() => {
                    self.configuration_events(change)
                }
                _ = tokio::time::sleep_until(connect_deadline), if self.session.principal().is_none() => {
                    tracing::debug!("IPC client did not authenticate in time; closing");
                    break End::Close;
                }
            };
            if let Some(end) = self.perform(actions, &out_tx).await {
                break end;
            }
        };
        self.tasks.shutdown().await;
        self.pending.shutdown().await;
        self.forwarders.clear();
        if let End::AwaitClientClose = end {
            // Leave the rejected client time to read the ACK and close first (§1.3).
            let _ = tokio::time::timeout(REJECTED_LINGER, async {
                while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        drop(out_tx);
        // What is queued goes out, unless the client has stopped reading.
        let abort = writer_task.abort_handle();
        if tokio::time::timeout(WRITE_DRAIN, writer_task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Performs the session's actions in order; `Some` when the connection must end.
    async fn perform(&mut self, actions: Vec<Action>, out: &mpsc::Sender<Vec<u8>>) -> Option<End> {
        let mut actions: VecDeque<Action> = actions.into();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(frame) => {
                    if out.send(frame.encode()).await.is_err() {
                        return Some(End::Close);
                    }
                }
                Action::Authenticate(token) => {
                    let principal = self.services.tokens.component(token.as_str());
                    if principal.is_none() {
                        tracing::warn!("IPC connection refused: unknown token");
                    }
                    actions.extend(self.session.on_authenticated(principal));
                }
                Action::Dispatch(request) => {
                    let stream = request.stream;
                    let more = match operations::dispatch(&self.services, request).await {
                        Outcome::Reply(result) => self.answer(stream, result),
                        Outcome::Later(pending) => {
                            self.pending.spawn(async move { (stream, pending.await) });
                            Vec::new()
                        }
                        Outcome::Topic(mut subscription) => {
                            // The response goes out before any event (§3.6): the forwarder
                            // starts after it is queued.
                            let more = self.answer(stream, Ok(b"{}".to_vec()));
                            let events = self.events_tx.clone();
                            let handle = self.tasks.spawn(async move {
                                while let Some(message) = subscription.recv().await {
                                    let Ok(payload) = operations::subscription_event(&message)
                                    else {
                                        continue;
                                    };
                                    if events.send(Internal::Event(stream, payload)).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            });
                            self.forwarders.insert(stream, handle);
                            more
                        }
                        Outcome::IoTCore(mut messages) => {
                            let more = self.answer(stream, Ok(b"{}".to_vec()));
                            let events = self.events_tx.clone();
                            let handle = self.tasks.spawn(async move {
                                while let Some(message) = messages.recv().await {
                                    let Ok(payload) = operations::iot_core_event(&message) else {
                                        continue;
                                    };
                                    if events.send(Internal::Event(stream, payload)).await.is_err()
                                    {
                                        return;
                                    }
                                }
                            });
                            self.forwarders.insert(stream, handle);
                            more
                        }
                        Outcome::Configuration {
                            component,
                            key_path,
                        } => {
                            self.config_streams.insert(stream, (component, key_path));
                            self.answer(stream, Ok(b"{}".to_vec()))
                        }
                    };
                    actions.extend(more);
                }
                Action::StreamClosed(stream) => {
                    if let Some(handle) = self.forwarders.remove(&stream) {
                        handle.abort();
                    }
                    self.config_streams.remove(&stream);
                }
                Action::AwaitClientClose => return Some(End::AwaitClientClose),
                Action::Close => return Some(End::Close),
            }
        }
        None
    }

    /// The response or error for `stream`; nothing when the client closed it meanwhile.
    fn answer(&mut self, stream: StreamId, result: Result<Vec<u8>, IpcError>) -> Vec<Action> {
        let sent = match result {
            Ok(payload) => self.session.respond(stream, payload),
            Err(error) => {
                tracing::debug!(%stream, %error, "IPC operation failed");
                self.session.fail(stream, &error)
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "IPC answer not sent");
            Vec::new()
        })
    }

    fn configuration_events(
        &mut self,
        change: Result<ConfigurationChanged, broadcast::error::RecvError>,
    ) -> Vec<Action> {
        let change = match change {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    lost = n,
                    "IPC connection fell behind on configuration updates"
                );
                return Vec::new();
            }
            Err(broadcast::error::RecvError::Closed) => return Vec::new(),
        };
        let mut actions = Vec::new();
        let streams: Vec<(StreamId, Vec<u8>)> = self
            .config_streams
            .iter()
            .filter_map(|(stream, (component, key_path))| {
                operations::configuration_event(&change, component, key_path)
                    .and_then(Result::ok)
                    .map(|payload| (*stream, payload))
            })
            .collect();
        for (stream, payload) in streams {
            actions.extend(self.session.send_event(stream, payload).unwrap_or_default());
        }
        actions
    }
}

/// Writes queued frames until the queue closes, then shuts the socket's write side. Frames
/// already queued behind the first go out with it in one write (up to [`WRITE_BATCH`] bytes):
/// under load, one system call carries many responses and events; a lone frame is written
/// as it is, without waiting for company.
async fn write_frames(mut writer: OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(first) = frames.recv().await {
        let written = if frames.is_empty() || first.len() >= WRITE_BATCH {
            writer.write_all(&first).await
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH {
                let Ok(more) = frames.try_recv() else { break };
                batch.extend_from_slice(&more);
            }
            let written = writer.write_all(&batch).await;
            if batch.capacity() > 2 * WRITE_BATCH {
                // A large frame joined the batch: do not keep its memory.
                batch = Vec::new();
            }
            written
        };
        if written.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
