//! The IPC socket: a Unix listener at `ROOT/ipc.socket`, one task per connection driving a
//! [`Session`] (`greengrass-ipc.md` §1.2, §6). A bad frame closes only the connection that
//! sent it.
//!
//! The socket is open to every local user (0666, as the nucleus makes it), so what a peer
//! can make the host hold is bounded before it has said who it is, and after:
//!
//! - **Before CONNECT succeeds**, a connection is taken only while its peer's user
//!   (`SO_PEERCRED`) has fewer than 64 such connections (the host's own user, which can read
//!   every token anyway, is not counted); it must be answered within 3 s of connecting, and a
//!   frame over 64 KiB closes it. These connections are not counted against the
//!   authenticated ones, so a user holding all of its own does not keep a component from
//!   connecting.
//! - **After**, at most 1024 authenticated connections; each takes frames up to the
//!   protocol's 24 MiB, keeps at most 1024 streams open (the next is answered
//!   `ServiceError`), and its subscriptions' queued messages count against one budget of
//!   32 MiB per component, whatever the number of its connections (each subscription at
//!   most the pub/sub limits; the overflow policy, dropping the
//!   oldest, is in [`crate::pubsub`]). Frames for the client wait in a queue drained by the
//!   connection's writer task; while more than 1 MiB waits, the connection reads no more
//!   requests and takes no more messages from its subscriptions (which then drop their
//!   oldest), so a client that stops reading holds that much and one frame, and stalls only
//!   itself.
//!
//! One task per connection reads the socket, the answers of operations that finish later,
//! and its subscriptions' queues (one [`Group`] wake-up for all of them), so an event is
//! serialized only once there is room to write it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::logfile::Noted;
use crate::metrics::counters::{Gauge, Traffic};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use lambkin_proto::eventstream::{Decoder, FrameError, MAX_FRAME_LEN};
use lambkin_proto::ipc::{
    Action, IpcError, Session, StreamId, DEFAULT_MAX_OPEN_STREAMS, REJECTED_LINGER,
};

use super::operations::{self, ConfigurationChanged, Outcome, Services};
use crate::components::updates::UpdateNotice;
use crate::mqtt::IncomingMessage;
use crate::pubsub::queue::Inbox;
use crate::pubsub::{Budget, Group, Subscription, TryRecvError};

/// The largest frame taken before CONNECT succeeds. A CONNECT is about 120 bytes (§2.2: the
/// control headers, `:version` and `{"authToken": "…"}`); 64 KiB still takes a header value
/// at its 32 KiB maximum beside it, and is 1/384 of the 24 MiB a frame may announce.
const CONNECT_FRAME_LIMIT: usize = 64 * 1024;
/// How long a connection has to send CONNECT and be answered. Both SDK clients send it in
/// their first write, right after connecting; a peer that sends nothing only holds a slot.
const CONNECT_DEADLINE: Duration = Duration::from_secs(3);
/// Connections of one peer user that have not authenticated yet (waiting for CONNECT, or
/// for the client to close after a rejected CONNECT_ACK).
const PENDING_PER_USER: usize = 64;
/// Authenticated connections served at once.
const MAX_CONNECTIONS: usize = 1024;
/// Bytes waiting for one client above which its connection reads no more requests and takes
/// no more subscription messages until the client reads: enough to keep a busy subscriber's
/// socket full, small next to what a host holds.
const WRITE_QUEUE_BYTES: usize = 1024 * 1024;
/// Most bytes of queued frames gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
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
    let gate = Arc::new(Gate::new(
        nix::unistd::geteuid().as_raw(),
        services.connections.clone(),
    ));
    let mut connections = JoinSet::new();
    let mut backoff = crate::http::AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.succeeded("IPC");
                stream
            }
            Err(e) => {
                let pause = backoff.failed("IPC", &e);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let uid = match stream.peer_cred() {
            Ok(credentials) => credentials.uid(),
            Err(e) => {
                tracing::debug!(error = %e, "IPC peer has no credentials; closing");
                continue;
            }
        };
        // Refused: dropping the stream closes it before anything is read.
        let Some(slot) = Slot::admit(&gate, uid) else {
            continue;
        };
        let services = services.clone();
        connections.spawn(Connection::new(services, slot).run(stream));
        // Reap finished connections so the set stays as large as what is open.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Why a connection is not taken, or not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    #[error("user {uid} already has {limit} IPC connections that have not authenticated")]
    PendingPerUser { uid: u32, limit: usize },
    #[error("{limit} IPC connections are open already")]
    Connections { limit: usize },
}

/// Who holds a connection, with no I/O: connections that have not authenticated, per peer
/// user, and authenticated ones in all.
#[derive(Debug)]
struct Admission {
    /// The host's own user: not limited before CONNECT (it can read every token anyway).
    trusted_uid: u32,
    pending_per_user: usize,
    max_authenticated: usize,
    pending: HashMap<u32, usize>,
    authenticated: usize,
}

impl Admission {
    fn new(trusted_uid: u32, pending_per_user: usize, max_authenticated: usize) -> Self {
        Self {
            trusted_uid,
            pending_per_user,
            max_authenticated,
            pending: HashMap::new(),
            authenticated: 0,
        }
    }

    /// A new connection from `uid`, not authenticated yet.
    fn admit(&mut self, uid: u32) -> Result<(), Refusal> {
        let held = self.pending.entry(uid).or_default();
        if uid != self.trusted_uid && *held >= self.pending_per_user {
            return Err(Refusal::PendingPerUser {
                uid,
                limit: self.pending_per_user,
            });
        }
        *held += 1;
        Ok(())
    }

    /// `uid`'s pending connection presented a good token.
    fn authenticate(&mut self, uid: u32) -> Result<(), Refusal> {
        if self.authenticated >= self.max_authenticated {
            return Err(Refusal::Connections {
                limit: self.max_authenticated,
            });
        }
        self.leave_pending(uid);
        self.authenticated += 1;
        Ok(())
    }

    fn leave_pending(&mut self, uid: u32) {
        if let Some(held) = self.pending.get_mut(&uid) {
            *held -= 1;
            if *held == 0 {
                self.pending.remove(&uid);
            }
        }
    }

    fn leave_authenticated(&mut self) {
        self.authenticated = self.authenticated.saturating_sub(1);
    }
}

/// What the listener shares with its connections.
#[derive(Debug)]
struct Gate {
    admission: Mutex<Admission>,
    refused: Noted,
    oversized: Noted,
    late: Noted,
    unknown_tokens: Noted,
    /// Connections open.
    open: Arc<Gauge>,
}

impl Gate {
    fn new(trusted_uid: u32, open: Arc<Gauge>) -> Self {
        Self {
            admission: Mutex::new(Admission::new(
                trusted_uid,
                PENDING_PER_USER,
                MAX_CONNECTIONS,
            )),
            refused: Noted::default(),
            oversized: Noted::default(),
            late: Noted::default(),
            unknown_tokens: Noted::default(),
            open,
        }
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        // Nothing panics while the lock is held, and the counts are valid after every step.
        self.admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn note_refusal(&self, refusal: Refusal) {
        if let Some(count) = self.refused.note() {
            tracing::warn!(%refusal, refused = count, "IPC connection refused");
        }
    }
}

/// A connection's place in the [`Admission`]; given back when the connection ends.
#[derive(Debug)]
struct Slot {
    gate: Arc<Gate>,
    uid: u32,
    authenticated: bool,
}

impl Slot {
    fn admit(gate: &Arc<Gate>, uid: u32) -> Option<Self> {
        let admitted = gate.admission().admit(uid);
        match admitted {
            Ok(()) => Some(Self {
                gate: {
                    gate.open.inc();
                    gate.clone()
                },
                uid,
                authenticated: false,
            }),
            Err(refusal) => {
                gate.note_refusal(refusal);
                None
            }
        }
    }

    fn authenticate(&mut self) -> Result<(), Refusal> {
        self.gate.admission().authenticate(self.uid)?;
        self.authenticated = true;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.open.dec();
        let mut admission = self.gate.admission();
        if self.authenticated {
            admission.leave_authenticated();
        } else {
            admission.leave_pending(self.uid);
        }
    }
}

/// Where a streaming operation's events come from.
enum Source {
    /// SubscribeToTopic.
    Topic(Subscription),
    /// SubscribeToIoTCore, with the subscribing component's traffic counters.
    IoTCore(Inbox<IncomingMessage>, Option<Arc<Traffic>>),
}

impl Source {
    /// The next event's payload; `Ok(None)` for a message that cannot be one (it is
    /// skipped).
    fn next_event(&mut self) -> Result<Option<Vec<u8>>, TryRecvError> {
        let event = match self {
            Self::Topic(subscription) => operations::subscription_event(&subscription.try_recv()?),
            Self::IoTCore(messages, traffic) => {
                let message = messages.try_recv()?;
                if let Some(traffic) = traffic {
                    traffic.received_messages.inc();
                    traffic.received_bytes.add(message.payload.len() as u64);
                }
                operations::iot_core_event(&message)
            }
        };
        Ok(event
            .map_err(|e| tracing::debug!(error = %e, "IPC event not encoded; skipped"))
            .ok())
    }
}

struct Connection {
    services: Arc<Services>,
    slot: Slot,
    session: Session,
    decoder: Decoder,
    /// The open SubscribeToTopic and SubscribeToIoTCore streams; their queues share `group`.
    sources: BTreeMap<StreamId, Source>,
    group: Arc<Group>,
    /// The last delivery stopped because the write queue was full, with messages left.
    backlog: bool,
    /// Open SubscribeToConfigurationUpdate streams: component and key path.
    config_streams: HashMap<StreamId, (String, Vec<String>)>,
    /// Open SubscribeToComponentUpdates streams, for the principal's component.
    update_streams: BTreeSet<StreamId>,
    /// Operations answered later (they wait on the engine), by stream.
    pending: JoinSet<(StreamId, Result<Vec<u8>, IpcError>)>,
    /// The token the connection authenticated with: when it is revoked (its component was
    /// removed or replaced), the connection ends.
    token: Option<String>,
}

/// Why the connection's loop ends.
enum End {
    Close,
    AwaitClientClose,
}

impl Connection {
    fn new(services: Arc<Services>, slot: Slot) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_frame_len(CONNECT_FRAME_LIMIT);
        let mut session = Session::new();
        session.set_max_open_streams(DEFAULT_MAX_OPEN_STREAMS);
        Self {
            services,
            slot,
            session,
            decoder,
            sources: BTreeMap::new(),
            group: Group::new(Budget::new(operations::SUBSCRIPTION_BYTES)),
            backlog: false,
            config_streams: HashMap::new(),
            update_streams: BTreeSet::new(),
            pending: JoinSet::new(),
            token: None,
        }
    }

    async fn run(mut self, stream: UnixStream) {
        let (mut reader, writer) = stream.into_split();
        let (out, frames) = WriteQueue::new();
        let writer_task = tokio::spawn(write_frames(writer, frames, out.state.clone()));
        let mut config_changes = self.services.configuration_changes();
        let mut update_notices = self.services.engine.component_updates().notices();
        let mut revocations = self.services.tokens.revocations();
        let mut buf = vec![0u8; READ_CHUNK];
        let connect_deadline = Instant::now() + CONNECT_DEADLINE;
        let mut group = self.group.clone();
        let end = loop {
            // Replaced once, when the client authenticates (its component's budget).
            if !Arc::ptr_eq(&group, &self.group) {
                group = self.group.clone();
            }
            let actions = tokio::select! {
                read = reader.read(&mut buf), if out.has_room() => match read {
                    Ok(0) | Err(_) => {
                        let actions = self.session.on_disconnected();
                        self.perform(actions, &out).await;
                        break End::Close;
                    }
                    Ok(n) => self.on_bytes(&buf[..n]),
                },
                // The client read: take requests and messages again.
                () = out.room(), if !out.has_room() => Vec::new(),
                () = group.ready(), if out.has_room() => {
                    if let Some(end) = self.deliver(&out) {
                        break end;
                    }
                    Vec::new()
                }
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => match done {
                    Ok((stream, result)) => self.answer(stream, result),
                    Err(_) => Vec::new(),
                },
                // Like subscription messages, configuration events wait for room (the
                // broadcast then loses the oldest for this connection, and says so).
                change = config_changes.recv(), if !self.config_streams.is_empty() && out.has_room() => {
                    self.configuration_events(change)
                }
                notice = update_notices.recv(), if !self.update_streams.is_empty() && out.has_room() => {
                    self.component_update_events(notice)
                }
                Ok(()) = revocations.changed(), if self.token.is_some() => {
                    let still = self
                        .token
                        .as_deref()
                        .and_then(|t| self.services.tokens.component(t));
                    if still.as_ref() != self.session.principal() {
                        tracing::info!(component = ?self.session.principal().map(|p| p.to_string()), "closing an IPC connection whose token was revoked");
                        break End::Close;
                    }
                    Vec::new()
                }
                () = tokio::time::sleep_until(connect_deadline), if self.session.principal().is_none() => {
                    if let Some(count) = self.slot.gate.late.note() {
                        tracing::warn!(uid = self.slot.uid, late = count, "IPC client did not authenticate within {CONNECT_DEADLINE:?}; closing");
                    }
                    break End::Close;
                }
            };
            if let Some(end) = self.perform(actions, &out).await {
                break end;
            }
            if self.backlog && out.has_room() {
                if let Some(end) = self.deliver(&out) {
                    break end;
                }
            }
        };
        self.pending.shutdown().await;
        self.sources.clear();
        for stream in std::mem::take(&mut self.update_streams) {
            self.update_stream_closed(stream);
        }
        if let End::AwaitClientClose = end {
            // Leave the rejected client time to read the ACK and close first (§1.3).
            let _ = tokio::time::timeout(REJECTED_LINGER, async {
                while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        drop(out);
        // What is queued goes out, unless the client has stopped reading.
        let abort = writer_task.abort_handle();
        if tokio::time::timeout(WRITE_DRAIN, writer_task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Bytes from the client: the session's actions for every whole frame among them.
    fn on_bytes(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.decoder.push(bytes);
        let mut actions = Vec::new();
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => actions.extend(self.session.on_frame(frame)),
                Ok(None) => break,
                Err(FrameError::OverLimit {
                    total_length,
                    limit,
                }) => {
                    if let Some(count) = self.slot.gate.oversized.note() {
                        tracing::warn!(
                            uid = self.slot.uid,
                            total_length,
                            limit,
                            oversized = count,
                            "IPC client announced a frame over the limit before authenticating; closing"
                        );
                    }
                    actions.extend(self.session.on_decode_error());
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "IPC client sent a bad frame; closing its connection");
                    actions.extend(self.session.on_decode_error());
                    break;
                }
            }
        }
        actions
    }

    /// Performs the session's actions in order; `Some` when the connection must end.
    async fn perform(&mut self, actions: Vec<Action>, out: &WriteQueue) -> Option<End> {
        let mut actions: VecDeque<Action> = actions.into();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(frame) => {
                    if out.send(frame.into_bytes()).is_err() {
                        return Some(End::Close);
                    }
                }
                Action::Authenticate(token) => {
                    let principal = match self.services.tokens.component(token.as_str()) {
                        None => {
                            // Any local user can send tokens at will: logged at powers of two.
                            if let Some(count) = self.slot.gate.unknown_tokens.note() {
                                tracing::warn!(
                                    uid = self.slot.uid,
                                    refused = count,
                                    "IPC connection refused: unknown token"
                                );
                            }
                            None
                        }
                        Some(principal) => match self.slot.authenticate() {
                            Ok(()) => Some(principal),
                            Err(refusal) => {
                                tracing::warn!(component = %principal, %refusal, "IPC connection refused");
                                None
                            }
                        },
                    };
                    actions.extend(self.session.on_authenticated(principal));
                    if let Some(principal) = self.session.principal() {
                        // No subscription exists before CONNECT: the connection's queues
                        // count against its component's budget from the first one.
                        self.group =
                            Group::sharing(self.services.subscription_budget(principal.as_str()));
                        self.token = Some(token.as_str().to_owned());
                        // A component may send what the protocol allows.
                        self.decoder.set_max_frame_len(MAX_FRAME_LEN);
                    }
                }
                Action::Dispatch(request) => {
                    let stream = request.stream;
                    let outcome = operations::dispatch(&self.services, request, &self.group).await;
                    let more = match outcome {
                        Outcome::Reply(result) => self.answer(stream, result),
                        Outcome::Later(pending) => {
                            self.pending.spawn(async move { (stream, pending.await) });
                            Vec::new()
                        }
                        // The response goes out before any event (§3.6): the stream's queue
                        // is read only once the response is queued.
                        Outcome::Topic(subscription) => {
                            let more = self.answer(stream, Ok(b"{}".to_vec()));
                            self.sources.insert(stream, Source::Topic(subscription));
                            more
                        }
                        Outcome::IoTCore(messages) => {
                            let more = self.answer(stream, Ok(b"{}".to_vec()));
                            let traffic = self
                                .services
                                .mqtt
                                .as_ref()
                                .zip(self.session.principal())
                                .map(|(mqtt, principal)| {
                                    mqtt.counters().traffic.of(principal.as_str())
                                });
                            self.sources
                                .insert(stream, Source::IoTCore(messages, traffic));
                            more
                        }
                        Outcome::Configuration {
                            component,
                            key_path,
                        } => {
                            self.config_streams.insert(stream, (component, key_path));
                            self.answer(stream, Ok(b"{}".to_vec()))
                        }
                        Outcome::ComponentUpdates => {
                            if let Some(principal) = self.session.principal() {
                                self.services
                                    .engine
                                    .component_updates()
                                    .opened(principal.as_str());
                                self.update_streams.insert(stream);
                            }
                            self.answer(stream, Ok(b"{}".to_vec()))
                        }
                    };
                    actions.extend(more);
                }
                Action::StreamClosed(stream) => {
                    // Dropping the source ends its subscription.
                    self.sources.remove(&stream);
                    self.config_streams.remove(&stream);
                    if self.update_streams.remove(&stream) {
                        self.update_stream_closed(stream);
                    }
                }
                Action::AwaitClientClose => return Some(End::AwaitClientClose),
                Action::Close => return Some(End::Close),
            }
        }
        None
    }

    /// Moves queued messages of the open streams to the write queue while it has room, one
    /// per stream in turn; `Some` when the connection must end.
    fn deliver(&mut self, out: &WriteQueue) -> Option<End> {
        self.backlog = false;
        let Self {
            sources,
            session,
            backlog,
            ..
        } = self;
        let mut ended = Vec::new();
        loop {
            let mut moved = false;
            for (stream, source) in sources.iter_mut() {
                if !out.has_room() {
                    *backlog = true;
                    break;
                }
                let payload = match source.next_event() {
                    Ok(Some(payload)) => payload,
                    Ok(None) => {
                        moved = true;
                        continue;
                    }
                    Err(TryRecvError::Empty) => continue,
                    // The router stopped: the host is shutting down.
                    Err(TryRecvError::Closed) => {
                        ended.push(*stream);
                        continue;
                    }
                };
                moved = true;
                match session.send_event(*stream, payload) {
                    Ok(actions) => {
                        for action in actions {
                            if let Action::Send(frame) = action {
                                if out.send(frame.into_bytes()).is_err() {
                                    return Some(End::Close);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "IPC event not sent"),
                }
            }
            if !moved || *backlog {
                break;
            }
        }
        for stream in ended {
            sources.remove(&stream);
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

    /// A SubscribeToComponentUpdates stream is gone: its component no longer answers on it.
    fn update_stream_closed(&mut self, _stream: StreamId) {
        if let Some(principal) = self.session.principal() {
            self.services
                .engine
                .component_updates()
                .closed(principal.as_str());
        }
    }

    fn component_update_events(
        &mut self,
        notice: Result<UpdateNotice, broadcast::error::RecvError>,
    ) -> Vec<Action> {
        let notice = match notice {
            Ok(notice) => notice,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    lost = n,
                    "IPC connection fell behind on component update notices"
                );
                return Vec::new();
            }
            Err(broadcast::error::RecvError::Closed) => return Vec::new(),
        };
        let Ok(payload) = operations::component_update_event(&notice) else {
            return Vec::new();
        };
        let streams: Vec<StreamId> = self.update_streams.iter().copied().collect();
        let mut actions = Vec::new();
        for stream in streams {
            actions.extend(
                self.session
                    .send_event(stream, payload.clone())
                    .unwrap_or_default(),
            );
        }
        actions
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

/// Frames for one client, counted in bytes until they are written.
struct WriteQueue {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    state: Arc<WriteState>,
}

#[derive(Debug, Default)]
struct WriteState {
    /// Bytes queued or being written.
    queued: AtomicUsize,
    /// The writer stopped on an error: nothing queued will be written, and the connection
    /// must go on only to find that out.
    failed: AtomicBool,
    /// Given when `queued` falls back under [`WRITE_QUEUE_BYTES`], or the writer fails.
    room: Notify,
}

/// The writer task is gone: the client's socket failed.
#[derive(Debug)]
struct WriterGone;

impl WriteQueue {
    fn new() -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        // Unbounded as a channel, bounded in bytes: the connection stops producing while
        // more than WRITE_QUEUE_BYTES wait (a frame can take it over by its own size).
        let (frames, receiver) = mpsc::unbounded_channel();
        let state = Arc::new(WriteState::default());
        (Self { frames, state }, receiver)
    }

    fn send(&self, frame: Vec<u8>) -> Result<(), WriterGone> {
        self.state.queued.fetch_add(frame.len(), Ordering::AcqRel);
        self.frames.send(frame).map_err(|_| WriterGone)
    }

    fn has_room(&self) -> bool {
        self.state.queued.load(Ordering::Acquire) < WRITE_QUEUE_BYTES
            || self.state.failed.load(Ordering::Acquire)
    }

    /// Returns once there is room.
    async fn room(&self) {
        while !self.has_room() {
            self.state.room.notified().await;
        }
    }
}

/// Writes queued frames until the queue closes, then shuts the socket's write side. Frames
/// already queued behind the first go out with it in one write (up to [`WRITE_BATCH`] bytes):
/// under load, one system call carries many responses and events; a lone frame is written
/// as it is, without waiting for company.
async fn write_frames(
    mut writer: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    state: Arc<WriteState>,
) {
    let mut batch = Vec::new();
    while let Some(first) = frames.recv().await {
        let (written, len) = if frames.is_empty() || first.len() >= WRITE_BATCH {
            (writer.write_all(&first).await, first.len())
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            drop(first);
            while batch.len() < WRITE_BATCH {
                let Ok(more) = frames.try_recv() else { break };
                batch.extend_from_slice(&more);
            }
            let written = writer.write_all(&batch).await;
            let len = batch.len();
            if batch.capacity() > 2 * WRITE_BATCH {
                // A large frame joined the batch: do not keep its memory.
                batch = Vec::new();
            }
            (written, len)
        };
        if written.is_err() {
            state.failed.store(true, Ordering::Release);
            state.room.notify_one();
            return;
        }
        let before = state.queued.fetch_sub(len, Ordering::AcqRel);
        if before >= WRITE_QUEUE_BYTES && before - len < WRITE_QUEUE_BYTES {
            state.room.notify_one();
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_its_own_pending_budget_and_the_hosts_user_none() {
        let mut admission = Admission::new(0, 2, 3);
        assert_eq!(admission.admit(1000), Ok(()));
        assert_eq!(admission.admit(1000), Ok(()));
        assert_eq!(
            admission.admit(1000),
            Err(Refusal::PendingPerUser {
                uid: 1000,
                limit: 2
            })
        );
        // Another user, and the host's own, are not held up by user 1000.
        assert_eq!(admission.admit(1001), Ok(()));
        for _ in 0..10 {
            assert_eq!(admission.admit(0), Ok(()));
        }
        // Authenticating frees the pending place.
        assert_eq!(admission.authenticate(1000), Ok(()));
        assert_eq!(admission.admit(1000), Ok(()));
        admission.leave_pending(1000);
        admission.leave_pending(1000);
        assert_eq!(admission.pending.get(&1000), None);
    }

    #[test]
    fn authenticated_connections_have_their_own_cap() {
        let mut admission = Admission::new(0, 1, 2);
        for uid in [1, 2, 3] {
            assert_eq!(admission.admit(uid), Ok(()));
        }
        assert_eq!(admission.authenticate(1), Ok(()));
        assert_eq!(admission.authenticate(2), Ok(()));
        assert_eq!(
            admission.authenticate(3),
            Err(Refusal::Connections { limit: 2 })
        );
        // Still pending, so still counted against user 3.
        assert_eq!(
            admission.admit(3),
            Err(Refusal::PendingPerUser { uid: 3, limit: 1 })
        );
        admission.leave_authenticated();
        assert_eq!(admission.authenticate(3), Ok(()));
        assert_eq!(admission.admit(3), Ok(()));
    }

    #[test]
    fn noted_events_are_logged_at_powers_of_two() {
        let noted = Noted::default();
        let logged: Vec<u64> = (0..20).filter_map(|_| noted.note()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
    }
}
