//! Response streaming (`lambda-apis.md` §1.3, §2.5): the Runtime API's streamed `/response`
//! (its mode header, its error trailers, its limit) and `InvokeWithResponseStream`'s answer,
//! an `application/vnd.amazon.eventstream` of `PayloadChunk` events and one `InvokeComplete`.

use base64::Engine;

use super::runtime_api::RuntimeApiError;
use crate::eventstream::{Frame, Header};

/// `Lambda-Runtime-Function-Error-Body`: base64 of the error document, as a trailer.
pub const HEADER_ERROR_BODY: &str = "lambda-runtime-function-error-body";
/// The content type of an HTTP-shaped stream: a JSON prelude, eight NUL bytes, the body.
pub const HTTP_INTEGRATION_CONTENT_TYPE: &str =
    "application/vnd.awslambda.http-integration-response";
/// What separates an HTTP-shaped stream's prelude from its body.
pub const PRELUDE_DELIMITER: [u8; 8] = [0; 8];
/// The content type of `InvokeWithResponseStream`'s answer.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";
/// Largest streamed response: Lambda's default limit for a streamed answer, 20 MiB.
pub const MAX_STREAMED_RESPONSE_BYTES: usize = 20 * 1024 * 1024;
/// Largest payload of one `PayloadChunk` event: a longer piece of the stream goes in several.
pub const MAX_CHUNK_PAYLOAD_BYTES: usize = 1024 * 1024;

/// How the runtime answers: `Lambda-Runtime-Function-Response-Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    /// No header: the whole answer in one body.
    Buffered,
    /// `streaming`: a chunked body forwarded as it comes, errors in its trailers.
    Streaming,
}

impl ResponseMode {
    pub fn parse(value: Option<&str>) -> Result<Self, RuntimeApiError> {
        match value {
            None => Ok(Self::Buffered),
            Some(v) if v.eq_ignore_ascii_case("streaming") => Ok(Self::Streaming),
            Some(other) => Err(RuntimeApiError::InvalidResponseMode(other.to_owned())),
        }
    }
}

/// An error that ends a stream (or an invocation answered through one): its type, as in
/// `Lambda-Runtime-Function-Error-Type`, and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub error_type: String,
    pub message: String,
}

impl StreamError {
    /// From the trailers: the type, and the base64 error document (its `errorMessage`, or
    /// the decoded text when it is not such a document).
    pub fn from_trailers(error_type: &str, body_base64: Option<&str>) -> Self {
        let decoded = body_base64
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .unwrap_or_default();
        Self {
            error_type: error_type.trim().to_owned(),
            message: message_of(&decoded),
        }
    }

    /// From an error document the Invoke API would return (`errorType`, `errorMessage`).
    pub fn from_document(body: &[u8]) -> Self {
        let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let error_type = value
            .as_ref()
            .and_then(|v| v.get("errorType"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("Unhandled")
            .to_owned();
        Self {
            error_type,
            message: message_of(body),
        }
    }

    /// The error document the Invoke API returns for it.
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({ "errorType": self.error_type, "errorMessage": self.message })
    }
}

fn message_of(body: &[u8]) -> String {
    let value: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match value
        .as_ref()
        .and_then(|v| v.get("errorMessage"))
        .and_then(serde_json::Value::as_str)
    {
        Some(message) => message.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    }
}

/// How the error trailers begin when a runtime writes them into the body instead of sending
/// them as HTTP trailers (`lambda_runtime` 1.x does so for an error item of its stream).
pub const IN_BAND_TRAILER_PREFIX: &[u8] = b"Lambda-Runtime-Function-Error-Type:";

/// Whether `held` may be the start of trailers written into the body: it begins with
/// [`IN_BAND_TRAILER_PREFIX`] (or is a beginning of it).
pub fn may_be_in_band_trailers(held: &[u8]) -> bool {
    let n = held.len().min(IN_BAND_TRAILER_PREFIX.len());
    n > 0 && held[..n] == IN_BAND_TRAILER_PREFIX[..n]
}

/// The error of a stream whose last bytes are the trailers written into the body:
/// `Lambda-Runtime-Function-Error-Type: T\r\nLambda-Runtime-Function-Error-Body: B\r\n`, and
/// nothing else.
pub fn in_band_trailers(held: &[u8]) -> Option<StreamError> {
    let text = std::str::from_utf8(held).ok()?;
    let mut error_type = None;
    let mut body = None;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case(super::runtime_api::HEADER_ERROR_TYPE) {
            error_type = Some(value.trim());
        } else if name.eq_ignore_ascii_case(HEADER_ERROR_BODY) {
            body = Some(value.trim());
        } else {
            return None;
        }
    }
    Some(StreamError::from_trailers(error_type?, body))
}

/// `InvokeComplete`'s members.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvokeComplete {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<String>,
    /// Base64 of the invocation's last 4 KB of log, with `LogType: Tail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_result: Option<String>,
}

impl InvokeComplete {
    pub fn new(error: Option<&StreamError>, log_result: Option<String>) -> Self {
        Self {
            error_code: error.map(|e| e.error_type.clone()),
            error_details: error.map(|e| e.message.clone()),
            log_result,
        }
    }
}

fn event_headers(event_type: &str, content_type: &str) -> Vec<Header> {
    vec![
        Header::string(":event-type", event_type),
        Header::string(":content-type", content_type),
        Header::string(":message-type", "event"),
    ]
}

/// The encoded headers of every `PayloadChunk` event (what lies between an event's prelude
/// and its payload), made once.
fn payload_chunk_headers() -> &'static [u8] {
    static HEADERS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    HEADERS.get_or_init(|| {
        Frame::new(
            event_headers("PayloadChunk", "application/octet-stream"),
            Vec::new(),
        )
        .map(|empty| {
            let empty = empty.encode();
            empty[crate::eventstream::PRELUDE_LEN..empty.len() - crate::eventstream::TRAILER_LEN]
                .to_vec()
        })
        .unwrap_or_default()
    })
}

/// One `PayloadChunk` event around a payload the caller keeps: the bytes before it (the
/// prelude, its CRC and the headers) and after it (the message CRC). Sent as `head`, the
/// payload, `tail`, they are the event [`encode_payload_chunks`] writes, without the payload
/// being copied. `payload` holds at most [`MAX_CHUNK_PAYLOAD_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadChunkFrame {
    pub head: Vec<u8>,
    pub tail: [u8; 4],
}

impl PayloadChunkFrame {
    pub fn around(payload: &[u8]) -> Self {
        let headers = payload_chunk_headers();
        let overhead =
            crate::eventstream::PRELUDE_LEN + headers.len() + crate::eventstream::TRAILER_LEN;
        // At most 1 MiB of payload and three short headers: the lengths fit in u32.
        let total = (overhead + payload.len()) as u32;
        let mut head = Vec::with_capacity(crate::eventstream::PRELUDE_LEN + headers.len());
        head.extend_from_slice(&total.to_be_bytes());
        head.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32fast::hash(&head);
        head.extend_from_slice(&prelude_crc.to_be_bytes());
        head.extend_from_slice(headers);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(payload);
        Self {
            head,
            tail: crc.finalize().to_be_bytes(),
        }
    }
}

/// Appends `PayloadChunk` events carrying `payload` to `out` (one per
/// [`MAX_CHUNK_PAYLOAD_BYTES`]; none for an empty payload).
pub fn encode_payload_chunks(payload: &[u8], out: &mut Vec<u8>) {
    for piece in payload.chunks(MAX_CHUNK_PAYLOAD_BYTES) {
        let frame = PayloadChunkFrame::around(piece);
        out.extend_from_slice(&frame.head);
        out.extend_from_slice(piece);
        out.extend_from_slice(&frame.tail);
    }
}

/// The `InvokeComplete` event that ends the answer.
pub fn encode_invoke_complete(complete: &InvokeComplete) -> Vec<u8> {
    let mut json = serde_json::to_vec(complete).unwrap_or_else(|_| b"{}".to_vec());
    if json.len() > MAX_CHUNK_PAYLOAD_BYTES {
        // Only an enormous error message gets here; the code is what matters.
        let short = InvokeComplete {
            error_details: None,
            ..complete.clone()
        };
        json = serde_json::to_vec(&short).unwrap_or_else(|_| b"{}".to_vec());
    }
    match Frame::new(event_headers("InvokeComplete", "application/json"), json) {
        Ok(frame) => frame.into_bytes(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::eventstream::Decoder;

    #[test]
    fn response_modes() {
        assert_eq!(ResponseMode::parse(None).unwrap(), ResponseMode::Buffered);
        assert_eq!(
            ResponseMode::parse(Some("streaming")).unwrap(),
            ResponseMode::Streaming
        );
        assert!(matches!(
            ResponseMode::parse(Some("buffered-ish")),
            Err(RuntimeApiError::InvalidResponseMode(m)) if m == "buffered-ish"
        ));
    }

    #[test]
    fn trailers_name_the_error() {
        let body = base64::engine::general_purpose::STANDARD
            .encode(r#"{"errorType":"Boom","errorMessage":"it broke"}"#);
        let e = StreamError::from_trailers("Runtime.StreamError", Some(&body));
        assert_eq!(e.error_type, "Runtime.StreamError");
        assert_eq!(e.message, "it broke");
        let plain = base64::engine::general_purpose::STANDARD.encode("plain words");
        assert_eq!(
            StreamError::from_trailers("X", Some(&plain)).message,
            "plain words"
        );
    }

    #[test]
    fn trailers_written_into_the_body_are_recognised() {
        let body = base64::engine::general_purpose::STANDARD.encode("stream failed");
        let text = format!(
            "Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\nLambda-Runtime-Function-Error-Body: {body}\r\n"
        );
        assert!(may_be_in_band_trailers(text.as_bytes()));
        assert!(may_be_in_band_trailers(b"Lambda-Run"));
        assert!(!may_be_in_band_trailers(b"data: Lambda-Runtime"));
        assert!(!may_be_in_band_trailers(b""));
        let e = in_band_trailers(text.as_bytes()).unwrap();
        assert_eq!(e.error_type, "Runtime.StreamError");
        assert_eq!(e.message, "stream failed");
        // Anything else after them: not trailers, just data.
        assert!(in_band_trailers(format!("{text}more data").as_bytes()).is_none());
        assert!(in_band_trailers(b"Lambda-Runtime-Function-Error-Type").is_none());
    }

    #[test]
    fn chunks_are_the_frames_the_codec_encodes() {
        let mut direct = Vec::new();
        encode_payload_chunks(b"hello", &mut direct);
        let frame = Frame::new(
            event_headers("PayloadChunk", "application/octet-stream"),
            b"hello".to_vec(),
        )
        .unwrap();
        assert_eq!(direct, frame.encode());
    }

    #[test]
    fn events_decode_as_sent() {
        let mut out = Vec::new();
        encode_payload_chunks(b"hello", &mut out);
        encode_payload_chunks(&vec![7u8; MAX_CHUNK_PAYLOAD_BYTES + 1], &mut out);
        encode_payload_chunks(b"", &mut out);
        out.extend(encode_invoke_complete(&InvokeComplete::new(
            Some(&StreamError {
                error_type: "Sandbox.Timedout".into(),
                message: "Task timed out".into(),
            }),
            Some("TE9H".into()),
        )));
        let mut decoder = Decoder::new();
        decoder.push(&out);
        let mut frames = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            frames.push(frame);
        }
        let kinds: Vec<_> = frames
            .iter()
            .map(|f| {
                f.header(":event-type")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "PayloadChunk",
                "PayloadChunk",
                "PayloadChunk",
                "InvokeComplete"
            ]
        );
        assert_eq!(frames[0].payload(), b"hello");
        assert_eq!(
            frames[1].payload().len() + frames[2].payload().len(),
            MAX_CHUNK_PAYLOAD_BYTES + 1
        );
        let complete: serde_json::Value = serde_json::from_slice(frames[3].payload()).unwrap();
        assert_eq!(
            complete,
            serde_json::json!({"ErrorCode":"Sandbox.Timedout","ErrorDetails":"Task timed out","LogResult":"TE9H"})
        );
        let done = Frame::decode(&encode_invoke_complete(&InvokeComplete::default())).unwrap();
        assert_eq!(done.payload(), b"{}");
    }
}
