//! Answers that flow: the listener's response body ([`ResponseBody`]: a whole one, or a
//! function's streamed answer encoded as it arrives) and the waits a streaming handler shares.
//!
//! A streamed body reads the invocation's [`ResponseStream`] in order: every queued piece of
//! data first, then its end. Nothing is gathered: each piece becomes a frame as it arrives,
//! and a slow client holds the function's upload back (the stream's queue is bounded). A
//! client that goes away drops the body, and with it the stream: the instance reads the rest
//! of the function's answer and drops it, so the function finishes and the instance is free.

use std::convert::Infallible;
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
}

impl From<Full<Bytes>> for ResponseBody {
    fn from(body: Full<Bytes>) -> Self {
        Self::Full(body)
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(body) => Pin::new(body).poll_frame(cx),
            Self::Streamed(body) => body.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(body) => body.is_end_stream(),
            Self::Streamed(body) => body.done,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Full(body) => body.size_hint(),
            Self::Streamed(_) => hyper::body::SizeHint::default(),
        }
    }
}

/// How a stream's pieces become bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `InvokeWithResponseStream`: `PayloadChunk` events, then `InvokeComplete`.
    EventStream,
}

/// A function's answer, encoded as it arrives.
#[derive(Debug)]
pub struct StreamedBody {
    stream: ResponseStream,
    encoding: Encoding,
    done: bool,
}

impl StreamedBody {
    pub fn new(stream: ResponseStream, encoding: Encoding) -> Self {
        Self {
            stream,
            encoding,
            done: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            // Queued data before the end: the end is sent after the last piece was queued,
            // and a timeout's end (the runtime still writing) after what came before it.
            match self.stream.parts.poll_recv(cx) {
                Poll::Ready(Some(StreamPart::Open { .. })) => continue,
                Poll::Ready(Some(StreamPart::Data(data))) => {
                    if let Some(bytes) = self.data(&data) {
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
            let tail = self.end(ended);
            return Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))));
        }
    }

    fn data(&self, data: &[u8]) -> Option<Bytes> {
        if data.is_empty() {
            return None;
        }
        match self.encoding {
            Encoding::EventStream => {
                let mut out = Vec::with_capacity(data.len() + 128);
                st::encode_payload_chunks(data, &mut out);
                Some(Bytes::from(out))
            }
        }
    }

    fn end(&self, ended: Result<StreamEnd, InvocationAbort>) -> Bytes {
        let end = ended.unwrap_or_else(|abort| StreamEnd {
            error: Some(st::StreamError {
                error_type: "ServiceException".into(),
                message: abort.to_string(),
            }),
            log_tail: None,
        });
        match self.encoding {
            Encoding::EventStream => Bytes::from(st::encode_invoke_complete(&InvokeComplete::new(
                end.error.as_ref(),
                end.log_tail,
            ))),
        }
    }
}

/// What a streaming caller sees first: the answer begins, or the invocation ended without one.
#[derive(Debug)]
pub enum Began {
    Open { content_type: Option<String> },
    Ended(Result<StreamEnd, InvocationAbort>),
}

/// Waits for the answer to begin (the headers go out only then, so an invocation refused or
/// lost before it ran is still an API error) or to end without beginning.
pub async fn began(stream: &mut ResponseStream) -> Began {
    tokio::select! {
        biased;
        part = stream.parts.recv() => match part {
            Some(StreamPart::Open { content_type }) => Began::Open { content_type },
            // The first piece is always `Open`; data first would be a bug upstream.
            Some(StreamPart::Data(_)) => Began::Open { content_type: None },
            None => Began::Ended(
                (&mut stream.end).await.unwrap_or(Err(InvocationAbort::ShuttingDown)),
            ),
        },
        ended = &mut stream.end => Began::Ended(ended.unwrap_or(Err(InvocationAbort::ShuttingDown))),
    }
}
