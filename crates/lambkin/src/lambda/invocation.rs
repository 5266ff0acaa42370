//! An invocation in flight: what the runtime receives and where its outcome goes.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use lambkin_proto::lambda::stream::StreamError;
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

/// A Lambda request id (a UUID), as sent in `Lambda-Runtime-Aws-Request-Id`. Shared, not
/// copied: an invocation's id goes to the runtime, the log lines, the answer and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    pub fn new() -> Self {
        let mut text = uuid::Uuid::encode_buffer();
        Self(Arc::from(
            &*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text),
        ))
    }
    pub fn from_stored(id: String) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the function produced, as the Invoke API reports it.
#[derive(Debug, Clone)]
pub struct FunctionResponse {
    pub body: Bytes,
    pub content_type: Option<String>,
    /// Set when the function failed (`X-Amz-Function-Error: Unhandled`).
    pub function_error: bool,
    /// Base64 of the invocation's last 4 KB of log, when asked for.
    pub log_tail: Option<String>,
}

/// Why an admitted invocation ended without the function's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvocationAbort {
    #[error("the host is shutting down")]
    ShuttingDown,
    #[error("the function was deleted or replaced before the invocation ran")]
    FunctionRemoved,
    /// Delegated to a remote target that did not run it (`remote` policy): the reason.
    #[error("{0}")]
    Remote(String),
}

pub type InvocationResult = Result<FunctionResponse, InvocationAbort>;

/// Learns how a stored `Event` invocation ended before the store forgets it, so what it
/// writes of the outcome is there whenever the event is (an OpenWhisk activation's record):
/// a crash in between runs the event again.
pub trait EventSink: Send + Sync + fmt::Debug {
    fn finished<'a>(
        &'a self,
        request_id: &'a RequestId,
        payload: &'a Bytes,
        response: &'a FunctionResponse,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// Where the outcome goes.
#[derive(Debug)]
pub enum Completion {
    /// A `RequestResponse` caller waits for it.
    Caller(oneshot::Sender<InvocationResult>),
    /// A caller that takes the answer as it is written (`InvokeWithResponseStream`, a
    /// streaming function URL).
    Streaming(StreamingCaller),
    /// An `Event` invocation: the durable record is removed once it has run (and `sink` has
    /// taken its outcome).
    Event {
        seq: i64,
        store: Store,
        sink: Option<std::sync::Arc<dyn EventSink>>,
    },
    /// An asynchronous invocation that no one waits for and nothing stores (a message on a
    /// topic that triggers the function): a function error is logged.
    Detached,
}

/// A piece of a streamed answer, in order: `Open` once, then the data.
#[derive(Debug)]
pub enum StreamPart {
    /// The answer begins, with the runtime's content type; `streamed`: the runtime streams
    /// it (otherwise it is one buffered answer, in one `Data`).
    Open {
        content_type: Option<String>,
        streamed: bool,
    },
    Data(Bytes),
}

/// How a streamed answer ended.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd {
    /// The error that ended it (the function's, a timeout, the limit); `None`: complete.
    pub error: Option<StreamError>,
    /// Base64 of the invocation's last 4 KB of log, when asked for.
    pub log_tail: Option<String>,
}

/// Pieces waiting for a slow reader: past this the runtime's upload waits (backpressure).
const STREAM_PARTS_QUEUED: usize = 16;

/// The instance's side of a streaming caller.
#[derive(Debug)]
pub struct StreamingCaller {
    parts: mpsc::Sender<StreamPart>,
    end: oneshot::Sender<Result<StreamEnd, InvocationAbort>>,
    opened: bool,
}

/// The caller's side: the parts as they come, then how it ended. A dropped `ResponseStream`
/// (the client went away) does not stop the function; what it writes is read and dropped.
#[derive(Debug)]
pub struct ResponseStream {
    pub parts: mpsc::Receiver<StreamPart>,
    pub end: oneshot::Receiver<Result<StreamEnd, InvocationAbort>>,
}

/// A streaming caller's completion and the stream it reads.
pub fn streaming() -> (Completion, ResponseStream) {
    let (parts_tx, parts) = mpsc::channel(STREAM_PARTS_QUEUED);
    let (end_tx, end) = oneshot::channel();
    (
        Completion::Streaming(StreamingCaller {
            parts: parts_tx,
            end: end_tx,
            opened: false,
        }),
        ResponseStream { parts, end },
    )
}

#[derive(Debug)]
pub struct Invocation {
    pub request_id: RequestId,
    pub payload: Bytes,
    /// The caller's content type, passed to the runtime (default `application/json`).
    pub content_type: Option<String>,
    /// Decoded `X-Amz-Client-Context` JSON.
    pub client_context: Option<String>,
    pub trace_id: Option<String>,
    pub want_log_tail: bool,
    pub completion: Completion,
}

impl Invocation {
    /// Whether the caller takes the answer as a stream.
    pub fn streams(&self) -> bool {
        matches!(self.completion, Completion::Streaming(_))
    }

    /// A streamed answer begins: where its data goes (`None` when the caller does not take a
    /// stream, or it began already).
    pub fn open_stream(
        &mut self,
        content_type: Option<String>,
    ) -> Option<mpsc::Sender<StreamPart>> {
        let Completion::Streaming(caller) = &mut self.completion else {
            return None;
        };
        if caller.opened {
            return None;
        }
        caller.opened = true;
        // The channel is new and holds more than one part: this fits (or the caller is gone).
        let _ = caller.parts.try_send(StreamPart::Open {
            content_type,
            streamed: true,
        });
        Some(caller.parts.clone())
    }

    /// Delivers the function's outcome.
    pub async fn finish(self, response: FunctionResponse) {
        match self.completion {
            Completion::Caller(tx) => {
                let _ = tx.send(Ok(response));
            }
            Completion::Streaming(caller) => {
                // A buffered answer (or an error before any data) is sent as one piece, as
                // AWS answers a function that does not stream.
                if !caller.opened {
                    let _ = caller.parts.try_send(StreamPart::Open {
                        content_type: response.content_type.clone(),
                        streamed: false,
                    });
                    if !response.function_error {
                        let _ = caller
                            .parts
                            .try_send(StreamPart::Data(response.body.clone()));
                    }
                }
                let error = response
                    .function_error
                    .then(|| StreamError::from_document(&response.body));
                let _ = caller.end.send(Ok(StreamEnd {
                    error,
                    log_tail: response.log_tail,
                }));
            }
            Completion::Event { seq, store, sink } => {
                if let Some(sink) = sink {
                    sink.finished(&self.request_id, &self.payload, &response)
                        .await;
                }
                if response.function_error {
                    tracing::warn!(
                        request_id = %self.request_id,
                        error = %String::from_utf8_lossy(&response.body),
                        "asynchronous invocation failed"
                    );
                }
                store.complete_event(seq).await;
            }
            Completion::Detached => {
                if response.function_error {
                    tracing::warn!(
                        request_id = %self.request_id,
                        error = %String::from_utf8_lossy(&response.body),
                        "triggered invocation failed"
                    );
                }
            }
        }
    }

    /// A remote target took this asynchronous invocation (it answered 202): a stored `Event`
    /// is forgotten here, the target has it now.
    pub async fn handed_over(self) {
        match self.completion {
            Completion::Event { seq, store, .. } => store.complete_event(seq).await,
            Completion::Caller(_) | Completion::Streaming(_) | Completion::Detached => {}
        }
    }

    /// Ends an invocation that will not run now. An `Event` stays in the durable store and
    /// runs again when the host next starts, unless its function is gone.
    pub async fn abort(self, why: InvocationAbort) {
        match self.completion {
            Completion::Caller(tx) => {
                let _ = tx.send(Err(why));
            }
            Completion::Streaming(caller) => {
                let _ = caller.end.send(Err(why));
            }
            Completion::Event { seq, store, .. } => match why {
                InvocationAbort::ShuttingDown | InvocationAbort::Remote(_) => {}
                InvocationAbort::FunctionRemoved => store.complete_event(seq).await,
            },
            Completion::Detached => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RequestId;

    #[test]
    fn request_ids_are_lowercase_hyphenated_uuids_each_its_own() {
        let a = RequestId::new();
        let parsed = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(parsed.hyphenated().to_string(), a.as_str());
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(RequestId::new(), a);
        // A copy is the same id, shared.
        let b = a.clone();
        assert_eq!((b.as_str(), b.to_string()), (a.as_str(), a.to_string()));
    }
}
