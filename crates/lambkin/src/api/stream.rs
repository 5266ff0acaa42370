//! Answers that flow: the listener's response body ([`ResponseBody`]: a whole one, or a
//! function's streamed answer encoded as it arrives) and the waits a streaming handler shares.
//!
//! A streamed body reads the invocation's [`ResponseStream`] in order: every queued piece of
//! data first, then its end. Nothing is gathered: each piece becomes a frame as it arrives,
//! and a slow client holds the function's upload back (the stream's queue is bounded). A
//! client that goes away drops the body, and with it the stream: the instance reads the rest
//! of the function's answer and drops it, so the function finishes and the instance is free.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Frame;

use lambkin_proto::lambda::stream::{self as st, InvokeComplete};

use crate::lambda::invocation::{InvocationAbort, ResponseStream, StreamEnd, StreamPart};

/// The body of every answer the API listener writes.
#[derive(Debug)]
pub enum ResponseBody {
    Full(Full<Bytes>),
    Streamed(StreamedBody),
    /// Bytes a task sends as it has them (a followed log), until it drops its sender. The
    /// receiver goes when the client does, which the task sees as a closed channel.
    Channel(tokio::sync::mpsc::Receiver<Bytes>),
}

impl From<Full<Bytes>> for ResponseBody {
    fn from(body: Full<Bytes>) -> Self {
        Self::Full(body)
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    /// A raw stream that failed after its head went out: the connection is cut, so the
    /// client sees a truncated body rather than a complete one.
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Self::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
            Self::Streamed(body) => body.poll(cx),
            Self::Channel(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(body) => body.is_end_stream(),
            Self::Streamed(body) => body.done,
            Self::Channel(rx) => rx.is_closed() && rx.is_empty(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Full(body) => body.size_hint(),
            Self::Streamed(_) | Self::Channel(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// How a stream's pieces become bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `InvokeWithResponseStream`: `PayloadChunk` events, then `InvokeComplete`.
    EventStream,
    /// A streaming function URL: the bytes themselves; an error cuts the connection.
    Raw,
}

/// A function's answer, encoded as it arrives.
#[derive(Debug)]
pub struct StreamedBody {
    stream: ResponseStream,
    encoding: Encoding,
    /// Bytes read before the body began (after a prelude), sent first.
    first: Option<Bytes>,
    done: bool,
}

impl StreamedBody {
    pub fn new(stream: ResponseStream, encoding: Encoding) -> Self {
        Self {
            stream,
            encoding,
            first: None,
            done: false,
        }
    }

    /// A raw body whose first bytes were read already.
    pub fn raw(stream: ResponseStream, first: Bytes) -> Self {
        Self {
            first: (!first.is_empty()).then_some(first),
            ..Self::new(stream, Encoding::Raw)
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            // Queued data before the end: the end is sent after the last piece was queued,
            // and a timeout's end (the runtime still writing) after what came before it.
            match self.stream.parts.poll_recv(cx) {
                Poll::Ready(Some(StreamPart::Open { .. })) => continue,
                Poll::Ready(Some(StreamPart::Data(data))) => {
                    if let Some(bytes) = self.data(data) {
                        return Poll::Ready(Some(Ok(Frame::data(bytes))));
                    }
                    continue;
                }
                Poll::Ready(None) | Poll::Pending => {}
            }
            let ended = match Pin::new(&mut self.stream.end).poll(cx) {
                Poll::Ready(Ok(ended)) => ended,
                Poll::Ready(Err(_)) => Err(InvocationAbort::ShuttingDown),
                Poll::Pending => return Poll::Pending,
            };
            self.done = true;
            return Poll::Ready(self.end(ended));
        }
    }

    fn data(&self, data: Bytes) -> Option<Bytes> {
        if data.is_empty() {
            return None;
        }
        match self.encoding {
            Encoding::EventStream => {
                let mut out = Vec::with_capacity(data.len() + 128);
                st::encode_payload_chunks(&data, &mut out);
                Some(Bytes::from(out))
            }
            Encoding::Raw => Some(data),
        }
    }

    /// The last frame: `InvokeComplete`, or for a raw body nothing (complete) or an error.
    fn end(
        &self,
        ended: Result<StreamEnd, InvocationAbort>,
    ) -> Option<Result<Frame<Bytes>, std::io::Error>> {
        let end = ended.unwrap_or_else(|abort| StreamEnd {
            error: Some(st::StreamError {
                error_type: "ServiceException".into(),
                message: abort.to_string(),
            }),
            log_tail: None,
        });
        match (self.encoding, end.error) {
            (Encoding::EventStream, error) => Some(Ok(Frame::data(Bytes::from(
                st::encode_invoke_complete(&InvokeComplete::new(error.as_ref(), end.log_tail)),
            )))),
            (Encoding::Raw, None) => None,
            (Encoding::Raw, Some(error)) => Some(Err(std::io::Error::other(format!(
                "{}: {}",
                error.error_type, error.message
            )))),
        }
    }
}

/// What a streaming caller sees first: the answer begins, or the invocation ended without one.
#[derive(Debug)]
pub enum Began {
    Open {
        content_type: Option<String>,
        streamed: bool,
    },
    Ended(Result<StreamEnd, InvocationAbort>),
}

/// Reads the rest of a stream whole: its data and its end (a buffered answer: one piece).
pub async fn gather(stream: &mut ResponseStream) -> (Vec<u8>, Result<StreamEnd, InvocationAbort>) {
    let mut data = Vec::new();
    while let Some(part) = stream.parts.recv().await {
        if let StreamPart::Data(bytes) = part {
            data.extend_from_slice(&bytes);
        }
    }
    let end = (&mut stream.end)
        .await
        .unwrap_or(Err(InvocationAbort::ShuttingDown));
    (data, end)
}

/// Waits for the answer to begin (the headers go out only then, so an invocation refused or
/// lost before it ran is still an API error) or to end without beginning.
pub async fn began(stream: &mut ResponseStream) -> Began {
    tokio::select! {
        biased;
        part = stream.parts.recv() => match part {
            Some(StreamPart::Open { content_type, streamed }) => Began::Open { content_type, streamed },
            // The first piece is always `Open`; data first would be a bug upstream.
            Some(StreamPart::Data(_)) => Began::Open { content_type: None, streamed: true },
            None => Began::Ended(
                (&mut stream.end).await.unwrap_or(Err(InvocationAbort::ShuttingDown)),
            ),
        },
        ended = &mut stream.end => Began::Ended(ended.unwrap_or(Err(InvocationAbort::ShuttingDown))),
    }
}
