//! Answers that flow: the listener's response body ([`ResponseBody`]: a whole one, or a
//! function's streamed answer encoded as it arrives) and the waits a streaming handler shares.
//!
//! A streamed body reads the invocation's [`ResponseStream`] in order: every queued piece of
//! data first, then its end. Nothing is gathered or waited for: a piece becomes a frame as soon
//! as it arrives, and when the connection was still writing (the pieces queued behind it) the
//! frame carries every piece already queued, up to [`MAX_FRAME_BYTES`], so one write takes
//! them all. No piece is copied: a frame is a list of the pieces' own buffers ([`Segments`]),
//! an event's prelude, headers and CRC around its payload. A slow client holds the function's
//! upload back (the stream's queue is bounded). A client that goes away drops the body, and
//! with it the stream: the instance reads the rest of the function's answer and drops it, so
//! the function finishes and the instance is free.

use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
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

/// Most bytes one streamed frame gathers from pieces already queued (a single piece may be
/// larger: it is never split).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Pieces of one frame, written in order without being copied into one buffer.
#[derive(Debug, Default)]
pub struct Segments {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl Segments {
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.remaining += bytes.len();
            self.parts.push_back(bytes);
        }
    }
}

impl From<Bytes> for Segments {
    fn from(bytes: Bytes) -> Self {
        let mut segments = Self::default();
        segments.push(bytes);
        segments
    }
}

impl Buf for Segments {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b.chunk())
    }

    fn advance(&mut self, cnt: usize) {
        // Past the end is the writer's bug: the frame ends empty rather than panicking.
        let mut cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Segments;
    /// A raw stream that failed after its head went out: the connection is cut, so the
    /// client sees a truncated body rather than a complete one.
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Segments>, std::io::Error>>> {
        match self.get_mut() {
            Self::Full(body) => Pin::new(body).poll_frame(cx).map(|f| {
                f.map(|f| {
                    f.map(|frame| frame.map_data(Segments::from))
                        .map_err(|never| match never {})
                })
            }),
            Self::Streamed(body) => body.poll(cx),
            Self::Channel(rx) => rx
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(Frame::data(Segments::from(b))))),
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

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Segments>, std::io::Error>>> {
        let mut frame = Segments::default();
        if let Some(first) = self.first.take() {
            frame.push(first);
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            // Queued data before the end: the end is sent after the last piece was queued,
            // and a timeout's end (the runtime still writing) after what came before it.
            // Pieces already queued join the frame; none is waited for.
            if frame.remaining() < MAX_FRAME_BYTES {
                match self.stream.parts.poll_recv(cx) {
                    Poll::Ready(Some(StreamPart::Open { .. })) => continue,
                    Poll::Ready(Some(StreamPart::Data(data))) => {
                        self.data(data, &mut frame);
                        continue;
                    }
                    Poll::Ready(None) | Poll::Pending => {}
                }
            }
            if frame.has_remaining() {
                // The end (if it came) is read on the next poll, after this frame went out.
                return Poll::Ready(Some(Ok(Frame::data(frame))));
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

    /// Adds a piece of the answer to `frame`, as the encoding frames it.
    fn data(&self, data: Bytes, frame: &mut Segments) {
        match self.encoding {
            Encoding::EventStream => {
                let mut rest = data;
                while !rest.is_empty() {
                    let piece = rest.split_to(rest.len().min(st::MAX_CHUNK_PAYLOAD_BYTES));
                    let event = st::PayloadChunkFrame::around(&piece);
                    frame.push(Bytes::from(event.head));
                    frame.push(piece);
                    frame.push(Bytes::copy_from_slice(&event.tail));
                }
            }
            Encoding::Raw => frame.push(data),
        }
    }

    /// The last frame: `InvokeComplete`, or for a raw body nothing (complete) or an error.
    fn end(
        &self,
        ended: Result<StreamEnd, InvocationAbort>,
    ) -> Option<Result<Frame<Segments>, std::io::Error>> {
        let end = ended.unwrap_or_else(|abort| StreamEnd {
            error: Some(st::StreamError {
                error_type: "ServiceException".into(),
                message: abort.to_string(),
            }),
            log_tail: None,
        });
        match (self.encoding, end.error) {
            (Encoding::EventStream, error) => Some(Ok(Frame::data(Segments::from(Bytes::from(
                st::encode_invoke_complete(&InvokeComplete::new(error.as_ref(), end.log_tail)),
            ))))),
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

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use hyper::body::Body as _;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    type Feed = (
        mpsc::Sender<StreamPart>,
        oneshot::Sender<Result<StreamEnd, InvocationAbort>>,
    );

    fn body(encoding: Encoding) -> (ResponseBody, Feed) {
        let (parts_tx, parts) = mpsc::channel(16);
        let (end_tx, end) = oneshot::channel();
        let stream = ResponseStream { parts, end };
        (
            ResponseBody::Streamed(StreamedBody::new(stream, encoding)),
            (parts_tx, end_tx),
        )
    }

    /// One poll, never waiting: what the body has ready now.
    fn poll_now(body: &mut ResponseBody) -> Poll<Option<Vec<u8>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(body).poll_frame(&mut cx).map(|frame| {
            frame.map(|frame| {
                let mut data = frame.unwrap().into_data().unwrap();
                data.copy_to_bytes(data.remaining()).to_vec()
            })
        })
    }

    fn data(s: &str) -> StreamPart {
        StreamPart::Data(Bytes::from(s.to_owned()))
    }

    #[test]
    fn queued_pieces_go_out_in_one_frame_and_a_lone_piece_at_once() {
        let (mut body, (parts, end)) = body(Encoding::Raw);
        for piece in ["one ", "two ", "three"] {
            parts.try_send(data(piece)).unwrap();
        }
        assert_eq!(
            poll_now(&mut body),
            Poll::Ready(Some(b"one two three".to_vec()))
        );
        // Nothing queued: nothing to send yet, and the body does not end.
        assert_eq!(poll_now(&mut body), Poll::Pending);
        // A piece alone goes out as soon as it is there, without waiting for company.
        parts.try_send(data("four")).unwrap();
        assert_eq!(poll_now(&mut body), Poll::Ready(Some(b"four".to_vec())));
        drop(parts);
        end.send(Ok(StreamEnd::default())).unwrap();
        assert_eq!(poll_now(&mut body), Poll::Ready(None));
        assert!(body.is_end_stream());
    }

    #[test]
    fn events_are_framed_around_each_piece_without_a_copy() {
        let (mut body, (parts, end)) = body(Encoding::EventStream);
        parts.try_send(data("hello")).unwrap();
        parts.try_send(data("")).unwrap();
        parts.try_send(data("world")).unwrap();
        drop(parts);
        end.send(Ok(StreamEnd::default())).unwrap();
        let mut wire = Vec::new();
        while let Poll::Ready(Some(bytes)) = poll_now(&mut body) {
            wire.extend(bytes);
        }
        let mut decoder = lambkin_proto::eventstream::Decoder::new();
        decoder.push(&wire);
        let mut events = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            let kind = frame
                .header(":event-type")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            events.push((kind.to_owned(), frame.payload().to_vec()));
        }
        assert_eq!(
            events,
            [
                ("PayloadChunk".to_owned(), b"hello".to_vec()),
                ("PayloadChunk".to_owned(), b"world".to_vec()),
                ("InvokeComplete".to_owned(), b"{}".to_vec()),
            ]
        );
    }

    #[test]
    fn segments_write_in_order_across_partial_advances() {
        let mut frame = Segments::default();
        for piece in ["ab", "", "cde", "f"] {
            frame.push(Bytes::from(piece));
        }
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(frame.chunks_vectored(&mut slices), 3);
        frame.advance(3);
        assert_eq!((frame.remaining(), frame.chunk()), (3, &b"de"[..]));
        frame.advance(10);
        assert!(!frame.has_remaining());
    }
}
