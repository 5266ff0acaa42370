//! Telemetry API and Logs API subscriptions of one instance's extensions, and the delivery of
//! their records.
//!
//! The instance task only stamps a record and offers it to each subscriber's bounded queue
//! (`try_send`): it never waits for a subscriber. A sender task per subscription batches the
//! queue as the subscription's buffering says (`maxItems`, `maxBytes`, `timeoutMs`) and POSTs
//! each batch as a JSON array (HTTP) or writes one JSON object per line (TCP). A record that
//! finds the queue full is dropped and counted; the next batch opens with a
//! `platform.logsDropped` record that says how many.
//!
//! Destinations stay inside the instance: the URI must name the loopback (checked with the
//! request), and before each connection the sender checks that the port is a listening socket
//! held by a process of the instance's tree. An extension cannot make the host connect to
//! another service of the device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use lambkin_proto::lambda::telemetry::{
    Api, Destination, Event, Protocol, Record, RecordType, Subscription, SubscriptionError,
    DROPPED_REASON,
};

use super::peer;
use crate::timestamp;

/// Records of an instance's init kept for subscribers that come later in the init (AWS sends
/// a subscriber the init's platform records).
const INIT_BACKLOG: usize = 1_000;
/// How long a destination has to take one batch before it counts as fallen behind.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A record and when it happened.
#[derive(Debug)]
pub struct Stamped {
    time: SystemTime,
    record: Record,
}

#[derive(Debug, Default)]
struct Dropped {
    records: AtomicU64,
    bytes: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    extension_id: String,
    api: Api,
    types: Vec<RecordType>,
    queue: mpsc::Sender<Arc<Stamped>>,
    dropped: Arc<Dropped>,
}

impl Subscriber {
    fn offer(&self, stamped: &Arc<Stamped>) {
        if !self.types.contains(&stamped.record.kind()) {
            return;
        }
        if self.queue.try_send(stamped.clone()).is_err() {
            self.dropped.records.fetch_add(1, Ordering::Relaxed);
            self.dropped
                .bytes
                .fetch_add(stamped.record.approx_len() as u64, Ordering::Relaxed);
        }
    }
}

/// One instance's subscriptions.
#[derive(Debug)]
pub struct Telemetry {
    subscribers: Vec<Subscriber>,
    /// The init's records, until the init is over.
    backlog: Option<Vec<Arc<Stamped>>>,
    /// Which kinds any subscriber takes (or the backlog keeps): the cheap test before a record
    /// is built.
    wanted: [bool; 3],
}

fn index(kind: RecordType) -> usize {
    match kind {
        RecordType::Platform => 0,
        RecordType::Function => 1,
        RecordType::Extension => 2,
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            subscribers: Vec::new(),
            backlog: Some(Vec::new()),
            wanted: [true, true, false],
        }
    }
}

impl Telemetry {
    /// Whether a record of `kind` would go anywhere.
    pub fn wants(&self, kind: RecordType) -> bool {
        self.wanted[index(kind)]
    }

    /// Stamps `record` with the time now and offers it to its subscribers.
    pub fn emit(&mut self, record: Record) {
        if !self.wants(record.kind()) {
            return;
        }
        let stamped = Arc::new(Stamped {
            time: SystemTime::now(),
            record,
        });
        if let Some(backlog) = &mut self.backlog {
            if backlog.len() < INIT_BACKLOG {
                backlog.push(stamped.clone());
            }
        }
        for subscriber in &self.subscribers {
            subscriber.offer(&stamped);
        }
    }

    /// Emits one `function` record per line of `text`.
    pub fn function_lines(&mut self, text: &[u8]) {
        if !self.wants(RecordType::Function) {
            return;
        }
        for line in text.split(|b| *b == b'\n') {
            self.emit(Record::Function(String::from_utf8_lossy(line).into_owned()));
        }
    }

    /// Emits one `extension` record per line of `text` (what external extensions wrote).
    pub fn extension_lines(&mut self, text: &[u8]) {
        if !self.wants(RecordType::Extension) {
            return;
        }
        for line in text.split(|b| *b == b'\n') {
            self.emit(Record::Extension(
                String::from_utf8_lossy(line).into_owned(),
            ));
        }
    }

    /// The init is over: no more backlog.
    pub fn init_done(&mut self) {
        self.backlog = None;
        self.refresh();
    }

    fn refresh(&mut self) {
        let keeping = self.backlog.is_some();
        for kind in [
            RecordType::Platform,
            RecordType::Function,
            RecordType::Extension,
        ] {
            self.wanted[index(kind)] = (keeping && kind != RecordType::Extension)
                || self.subscribers.iter().any(|s| s.types.contains(&kind));
        }
    }

    /// Subscribes extension `id` (named `name`): a later subscription of the same extension
    /// replaces its earlier one; one with the other API is refused, as AWS refuses it.
    /// `runtime` is the instance's root process (its extensions are in its tree).
    pub fn subscribe(
        &mut self,
        id: &str,
        name: &str,
        subscription: Subscription,
        runtime: u32,
    ) -> Result<(), SubscriptionError> {
        if let Some(earlier) = self.subscribers.iter().find(|s| s.extension_id == id) {
            if earlier.api != subscription.api {
                return Err(SubscriptionError::Clash(format!(
                    "extension {name} subscribed with the {} already: it cannot subscribe with the {} too",
                    earlier.api.name(),
                    subscription.api.name()
                )));
            }
        }
        let state = if self.subscribers.iter().any(|s| s.extension_id == id) {
            "Already subscribed"
        } else {
            "Subscribed"
        };
        self.subscribers.retain(|s| s.extension_id != id);
        let buffering = subscription.buffering;
        let (queue, rx) = mpsc::channel(buffering.max_items as usize);
        let dropped = Arc::new(Dropped::default());
        let subscriber = Subscriber {
            extension_id: id.to_owned(),
            api: subscription.api,
            types: subscription.types.clone(),
            queue,
            dropped: dropped.clone(),
        };
        if let Some(backlog) = &self.backlog {
            for stamped in backlog {
                subscriber.offer(stamped);
            }
        }
        tokio::spawn(
            Sender {
                name: name.to_owned(),
                subscription: subscription.clone(),
                dropped,
                runtime,
                connection: None,
            }
            .run(rx),
        );
        self.subscribers.push(subscriber);
        self.refresh();
        self.emit(Record::TelemetrySubscription {
            name: name.to_owned(),
            state,
            types: subscription.types,
        });
        Ok(())
    }
}

enum Connection {
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Tcp(TcpStream),
}

/// A subscription's sender task.
struct Sender {
    name: String,
    subscription: Subscription,
    dropped: Arc<Dropped>,
    runtime: u32,
    connection: Option<Connection>,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Arc<Stamped>>) {
        let buffering = self.subscription.buffering;
        let timeout = Duration::from_millis(u64::from(buffering.timeout_ms));
        let mut batch: Vec<Arc<Stamped>> = Vec::new();
        loop {
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut bytes = first.record.approx_len();
            batch.push(first);
            let flush_at = tokio::time::Instant::now() + timeout;
            let mut open = true;
            while batch.len() < buffering.max_items as usize && bytes < buffering.max_bytes as usize
            {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(stamped) => {
                            bytes += stamped.record.approx_len();
                            batch.push(stamped);
                        }
                        None => {
                            open = false;
                            break;
                        }
                    },
                    () = tokio::time::sleep_until(flush_at) => break,
                }
            }
            let records = batch.len() as u64;
            if !self.send(&batch).await {
                self.dropped.records.fetch_add(records, Ordering::Relaxed);
                self.dropped
                    .bytes
                    .fetch_add(bytes as u64, Ordering::Relaxed);
                self.connection = None;
            }
            batch.clear();
            if !open {
                return;
            }
        }
    }

    /// The batch's wire form, opened by a `platform.logsDropped` record when some were
    /// dropped since the last one.
    fn encode(&self, batch: &[Arc<Stamped>]) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(batch.len() + 1);
        let records = self.dropped.records.swap(0, Ordering::Relaxed);
        let bytes = self.dropped.bytes.swap(0, Ordering::Relaxed);
        let now = SystemTime::now();
        let dropped = (records > 0).then_some(Stamped {
            time: now,
            record: Record::LogsDropped {
                reason: DROPPED_REASON,
                dropped_records: records,
                dropped_bytes: bytes,
            },
        });
        let api = self.subscription.api;
        for stamped in dropped.iter().chain(batch.iter().map(|s| &**s)) {
            let Some(record) = stamped.record.clone().for_api(api) else {
                continue;
            };
            let time = timestamp::iso8601_millis(stamped.time);
            if let Ok(json) = serde_json::to_vec(&Event {
                time: &time,
                record: &record,
            }) {
                out.push(json);
            }
        }
        out
    }

    async fn send(&mut self, batch: &[Arc<Stamped>]) -> bool {
        let encoded = self.encode(batch);
        if encoded.is_empty() {
            return true;
        }
        tokio::time::timeout(SEND_TIMEOUT, self.deliver(encoded))
            .await
            .unwrap_or(false)
    }

    /// Sends the batch on the open connection, or on a new one when there is none or the open
    /// one has gone (a server may close it after each request).
    async fn deliver(&mut self, encoded: Vec<Vec<u8>>) -> bool {
        let destination = &self.subscription.destination;
        let payload = match destination.protocol {
            Protocol::Tcp => {
                let mut text = Vec::new();
                for json in encoded {
                    text.extend_from_slice(&json);
                    text.push(b'\n');
                }
                text
            }
            Protocol::Http => {
                let mut body = Vec::with_capacity(
                    encoded.iter().map(Vec::len).sum::<usize>() + encoded.len() + 2,
                );
                body.push(b'[');
                for (i, json) in encoded.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(json);
                }
                body.push(b']');
                body
            }
        };
        let payload = Bytes::from(payload);
        loop {
            let fresh = self.connection.is_none();
            if fresh {
                self.connection = self.connect().await;
            }
            let Some(connection) = &mut self.connection else {
                return false;
            };
            if send_on(connection, &self.subscription.destination, payload.clone()).await {
                return true;
            }
            self.connection = None;
            if fresh {
                return false;
            }
        }
    }

    /// Connects to the destination once a process of the instance listens on its port.
    async fn connect(&self) -> Option<Connection> {
        let destination: &Destination = &self.subscription.destination;
        let (port, runtime) = (destination.port, self.runtime);
        let ours = tokio::task::spawn_blocking(move || {
            let procfs = peer::Procfs::host();
            procfs
                .loopback_listeners(port)
                .into_iter()
                .any(|inode| procfs.holder_in_tree(runtime, inode).is_some())
        })
        .await
        .unwrap_or(false);
        if !ours {
            tracing::warn!(
                extension = %self.name,
                port,
                "a telemetry destination is not a listener of the instance; its records are dropped"
            );
            return None;
        }
        let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let _ = stream.set_nodelay(true);
        match destination.protocol {
            Protocol::Tcp => Some(Connection::Tcp(stream)),
            Protocol::Http => {
                let (client, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .ok()?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Some(Connection::Http(client))
            }
        }
    }
}

/// Writes one batch on a connection; whether it went through.
async fn send_on(connection: &mut Connection, destination: &Destination, payload: Bytes) -> bool {
    match connection {
        Connection::Tcp(stream) => stream.write_all(&payload).await.is_ok(),
        Connection::Http(client) => {
            let Ok(request) = http::Request::post(destination.path.as_str())
                .header("host", format!("{}:{}", destination.host, destination.port))
                .header("content-type", "application/json")
                .body(Full::new(payload))
            else {
                return false;
            };
            if client.ready().await.is_err() {
                return false;
            }
            match client.send_request(request).await {
                Ok(response) => response.into_body().collect().await.is_ok(),
                Err(_) => false,
            }
        }
    }
}
