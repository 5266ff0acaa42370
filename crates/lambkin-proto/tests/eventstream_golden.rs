//! The event-stream codec against the wire: every frame captured from the real SDK clients
//! (`greengrass-ipc.md` §7) decodes and re-encodes byte for byte, the worked examples of §2.1 and
//! §2.2 are built from their parts, round trips and arbitrary bytes are property-tested, and the
//! corpus in `tests/corpus/eventstream/` (which a fuzz target grows) is replayed.
//!
//! Corpus files are named by what they must do: `captured-*` and `valid-*` decode whole and
//! re-encode identically, `truncated-*` wait for more bytes, `invalid-*` fail. Any other file
//! (a fuzzer's find) must only not panic, and whatever frames it yields must re-encode to the
//! bytes they came from.

use std::path::{Path, PathBuf};

use lambkin_proto::eventstream::{Decoder, Frame, FrameError, Header, HeaderValue};
use proptest::prelude::*;

/// §7, in the order it lists them, as hex exactly as captured.
const CAPTURED: &[(&str, &str)] = &[
    (
        "py-connect-bad-token",
        concat!(
            "0000007300000048a3578cd4083a76657273696f6e070005302e312e300d3a6d6573736167652d7479706504",
            "000000040e3a6d6573736167652d666c61677304000000000a3a73747265616d2d696404000000007b226175",
            "7468546f6b656e223a202257524f4e47544f4b454e227d9a1e6966",
        ),
    ),
    (
        "connect-ack-rejected",
        concat!(
            "0000004700000037374cfe3f0d3a6d6573736167652d7479706504000000050e3a6d6573736167652d666c61",
            "677304000000000a3a73747265616d2d696404000000006591293e",
        ),
    ),
    (
        "py-connect",
        concat!(
            "0000007900000048e9e79475083a76657273696f6e070005302e312e300d3a6d6573736167652d7479706504",
            "000000040e3a6d6573736167652d666c61677304000000000a3a73747265616d2d696404000000007b226175",
            "7468546f6b656e223a2022474f4f44544f4b454e31323334353637227dcb9a0619",
        ),
    ),
    (
        "connect-ack-accepted",
        concat!(
            "0000004700000037374cfe3f0d3a6d6573736167652d7479706504000000050e3a6d6573736167652d666c61",
            "677304000000010a3a73747265616d2d69640400000000e237e27d",
        ),
    ),
    (
        "py-subscribe-to-topic",
        concat!(
            "000000e7000000c064b206160d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d747970650700266177732e677265656e677261737323537562736372",
            "696265546f546f706963526571756573740d3a6d6573736167652d7479706504000000000e3a6d6573736167",
            "652d666c61677304000000000a3a73747265616d2d69640400000001096f7065726174696f6e07001f617773",
            "2e677265656e677261737323537562736372696265546f546f7069637b22746f706963223a2022746573742f",
            "746f706963227d4b978de0",
        ),
    ),
    (
        "subscribe-to-topic-response",
        concat!(
            "000000a7000000952740fb240d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d747970650700276177732e677265656e677261737323537562736372",
            "696265546f546f706963526573706f6e73650d3a6d6573736167652d7479706504000000000e3a6d65737361",
            "67652d666c61677304000000000a3a73747265616d2d696404000000017b7dc6055dec",
        ),
    ),
    (
        "py-publish-json",
        concat!(
            "0000012f000000bc2f384bbe0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d747970650700246177732e677265656e6772617373235075626c6973",
            "68546f546f706963526571756573740d3a6d6573736167652d7479706504000000000e3a6d6573736167652d",
            "666c61677304000000000a3a73747265616d2d69640400000002096f7065726174696f6e07001d6177732e67",
            "7265656e6772617373235075626c697368546f546f7069637b22746f706963223a2022746573742f746f7069",
            "63222c20227075626c6973684d657373616765223a207b226a736f6e4d657373616765223a207b226d657373",
            "616765223a207b2268656c6c6f223a2022776f726c64222c20226e223a20317d7d7d7d091ab384",
        ),
    ),
    (
        "publish-to-topic-response",
        concat!(
            "000000a500000093b4e30d710d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d747970650700256177732e677265656e6772617373235075626c6973",
            "68546f546f706963526573706f6e73650d3a6d6573736167652d7479706504000000000e3a6d657373616765",
            "2d666c61677304000000020a3a73747265616d2d696404000000027b7d92656162",
        ),
    ),
    (
        "subscription-event",
        concat!(
            "000000fc00000098163279430d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d7479706507002a6177732e677265656e677261737323537562736372",
            "697074696f6e526573706f6e73654d6573736167650d3a6d6573736167652d7479706504000000000e3a6d65",
            "73736167652d666c61677304000000000a3a73747265616d2d696404000000017b226a736f6e4d6573736167",
            "65223a7b226d657373616765223a7b2268656c6c6f223a22776f726c64222c226e223a317d2c22636f6e7465",
            "7874223a7b22746f706963223a22746573742f746f706963227d7d7d4c3988bd",
        ),
    ),
    (
        "py-publish-binary",
        concat!(
            "00000125000000bc6588531f0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d747970650700246177732e677265656e6772617373235075626c6973",
            "68546f546f706963526571756573740d3a6d6573736167652d7479706504000000000e3a6d6573736167652d",
            "666c61677304000000000a3a73747265616d2d69640400000003096f7065726174696f6e07001d6177732e67",
            "7265656e6772617373235075626c697368546f546f7069637b22746f706963223a2022746573742f746f7069",
            "63222c20227075626c6973684d657373616765223a207b2262696e6172794d657373616765223a207b226d65",
            "7373616765223a20224141466961573568636e6e2f227d7d7db535bca6",
        ),
    ),
    (
        "unauthorized-error",
        concat!(
            "000001340000008ef0dfbcad0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d747970650700206177732e677265656e677261737323556e61757468",
            "6f72697a65644572726f720d3a6d6573736167652d7479706504000000010e3a6d6573736167652d666c6167",
            "7304000000020a3a73747265616d2d696404000000047b226d657373616765223a225072696e636970616c20",
            "636f6d2e6578616d706c652e50726f6265206973206e6f7420617574686f72697a656420746f20706572666f",
            "726d206177732e677265656e67726173732e6970632e7075627375623a6177732e677265656e677261737323",
            "5075626c697368546f546f706963206f6e207265736f7572636520666f7262696464656e2f78227d9113cb48",
        ),
    ),
    (
        "service-error",
        concat!(
            "000000ed000000892102e7830d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f",
            "6e12736572766963652d6d6f64656c2d7479706507001b6177732e677265656e677261737323536572766963",
            "654572726f720d3a6d6573736167652d7479706504000000010e3a6d6573736167652d666c61677304000000",
            "020a3a73747265616d2d696404000000077b226d657373616765223a224f7065726174696f6e206177732e67",
            "7265656e6772617373234c697374436f6d706f6e656e7473206973206e6f7420737570706f72746564206279",
            "20477265656e6772617373227d857c6051",
        ),
    ),
    (
        "stream-close",
        concat!(
            "0000004700000037374cfe3f0d3a6d6573736167652d7479706504000000000e3a6d6573736167652d666c61",
            "677304000000020a3a73747265616d2d696404000000012809c8cf",
        ),
    ),
    (
        "py-ping",
        concat!(
            "000000580000004382944b4907782d70726f6265070001310d3a6d6573736167652d7479706504000000020e",
            "3a6d6573736167652d666c61677304000000000a3a73747265616d2d6964040000000070696e6721121f0881",
        ),
    ),
    (
        "node-connect",
        concat!(
            "0000007800000048d487bdc5083a76657273696f6e070005302e312e300d3a6d6573736167652d7479706504",
            "000000040e3a6d6573736167652d666c61677304000000000a3a73747265616d2d696404000000007b226175",
            "7468546f6b656e223a22474f4f44544f4b454e31323334353637227d354342f9",
        ),
    ),
    (
        "node-subscribe-to-topic",
        concat!(
            "00000089000000630d6f3d680d3a6d6573736167652d7479706504000000000e3a6d6573736167652d666c61",
            "677304000000000a3a73747265616d2d69640400000001096f7065726174696f6e07001f6177732e67726565",
            "6e677261737323537562736372696265546f546f7069637b22746f706963223a22746573742f746f70696322",
            "7de35d4cb3",
        ),
    ),
    (
        "node-publish-binary",
        concat!(
            "000000bd00000061b7c042020d3a6d6573736167652d7479706504000000000e3a6d6573736167652d666c61",
            "677304000000000a3a73747265616d2d69640400000003096f7065726174696f6e07001d6177732e67726565",
            "6e6772617373235075626c697368546f546f7069637b22746f706963223a22746573742f746f706963222c22",
            "7075626c6973684d657373616765223a7b2262696e6172794d657373616765223a7b226d657373616765223a",
            "224141482f227d7d7d8a00921a",
        ),
    ),];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect()
}

fn captured(name: &str) -> Vec<u8> {
    let (_, h) = CAPTURED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no captured frame {name}"));
    hex(h)
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/eventstream")
}

fn control(message_type: i32, flags: i32, stream_id: i32) -> Vec<Header> {
    vec![
        Header::int32(":message-type", message_type),
        Header::int32(":message-flags", flags),
        Header::int32(":stream-id", stream_id),
    ]
}

#[test]
fn every_captured_frame_round_trips_byte_for_byte() {
    for (name, h) in CAPTURED {
        let bytes = hex(h);
        let frame = Frame::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frame.encode(), bytes, "{name}");
        assert_eq!(frame.encoded_len(), bytes.len(), "{name}");
        let rebuilt = Frame::new(frame.headers().to_vec(), frame.payload().to_vec()).unwrap();
        assert_eq!(rebuilt, frame, "{name}");
    }
}

#[test]
fn captured_frames_streamed_byte_by_byte_come_out_in_order() {
    let all: Vec<u8> = CAPTURED.iter().flat_map(|(_, h)| hex(h)).collect();
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    for byte in &all {
        decoder.push(std::slice::from_ref(byte));
        while let Some(frame) = decoder.next_frame().unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames.len(), CAPTURED.len());
    let reencoded: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
    assert_eq!(reencoded, all);
}

#[test]
fn worked_example_connect_ack_accepted() {
    let bytes = captured("connect-ack-accepted");
    assert_eq!(bytes.len(), 71);
    assert_eq!(&bytes[0..4], &71u32.to_be_bytes());
    assert_eq!(&bytes[4..8], &55u32.to_be_bytes());
    assert_eq!(&bytes[8..12], &0x374c_fe3fu32.to_be_bytes());
    assert_eq!(&bytes[67..], &0xe237_e27du32.to_be_bytes());
    let frame = Frame::decode(&bytes).unwrap();
    assert_eq!(frame.headers(), control(5, 1, 0).as_slice());
    assert!(frame.payload().is_empty());
    // The encoder builds the same 71 bytes from the parts.
    assert_eq!(
        Frame::new(control(5, 1, 0), vec![]).unwrap().encode(),
        bytes
    );
}

#[test]
fn worked_example_connect_ack_rejected_differs_in_flags_and_crc() {
    let bytes = Frame::new(control(5, 0, 0), vec![]).unwrap().encode();
    assert_eq!(bytes, captured("connect-ack-rejected"));
    let tail = hex("0400000000 0a3a73747265616d2d6964 0400000000 6591293e"
        .replace(' ', "")
        .as_str());
    assert!(bytes.ends_with(&tail));
}

#[test]
fn worked_example_python_connect() {
    let bytes = captured("py-connect");
    assert_eq!(bytes.len(), 121);
    assert_eq!(&bytes[0..12], hex("0000007900000048e9e79475").as_slice());
    let frame = Frame::decode(&bytes).unwrap();
    let mut headers = vec![Header::string(":version", "0.1.0")];
    headers.extend(control(4, 0, 0));
    assert_eq!(frame.headers(), headers.as_slice());
    assert_eq!(frame.payload(), br#"{"authToken": "GOODTOKEN1234567"}"#);
    assert_eq!(&bytes[117..], &0xcb9a_0619u32.to_be_bytes());
    let built = Frame::new(headers, br#"{"authToken": "GOODTOKEN1234567"}"#.to_vec()).unwrap();
    assert_eq!(built.encode(), bytes);
}

#[test]
fn captured_frames_carry_the_headers_the_spec_describes() {
    let py = Frame::decode(&captured("py-subscribe-to-topic")).unwrap();
    let names: Vec<&str> = py.headers().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            ":content-type",
            "service-model-type",
            ":message-type",
            ":message-flags",
            ":stream-id",
            "operation"
        ]
    );
    assert_eq!(
        py.header("operation").and_then(HeaderValue::as_str),
        Some("aws.greengrass#SubscribeToTopic")
    );
    assert_eq!(py.payload(), br#"{"topic": "test/topic"}"#);

    let node = Frame::decode(&captured("node-subscribe-to-topic")).unwrap();
    assert_eq!(node.header(":content-type"), None);
    assert_eq!(node.header("service-model-type"), None);
    assert_eq!(node.payload(), br#"{"topic":"test/topic"}"#);

    let close = Frame::decode(&captured("stream-close")).unwrap();
    assert_eq!(close.headers(), control(0, 2, 1).as_slice());
    assert!(close.payload().is_empty());

    let ping = Frame::decode(&captured("py-ping")).unwrap();
    assert_eq!(ping.headers()[0], Header::string("x-probe", "1"));
    assert_eq!(ping.payload(), b"ping!");

    let denied = Frame::decode(&captured("unauthorized-error")).unwrap();
    assert_eq!(denied.header(":message-type"), Some(&HeaderValue::Int32(1)));
    assert_eq!(
        denied.header(":message-flags"),
        Some(&HeaderValue::Int32(2))
    );
    assert_eq!(denied.header(":stream-id"), Some(&HeaderValue::Int32(4)));
}

#[test]
fn the_corpus_keeps_the_captured_frames_verbatim() {
    for (name, h) in CAPTURED {
        let path = corpus_dir().join(format!("captured-{name}.bin"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(bytes, hex(h), "{}", path.display());
    }
}

/// Everything the decoder makes of `bytes` pushed in chunks of `chunk`: the frames with the
/// bytes each came from, then how it stopped.
fn replay(bytes: &[u8], chunk: usize) -> (Vec<Frame>, Result<usize, FrameError>) {
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    let left = decoder.buffered_len();
    (frames, Ok(left))
}

#[test]
fn corpus_replays_as_its_names_say() {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(entries.len() >= 40, "corpus shrank to {}", entries.len());
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let whole = replay(&bytes, bytes.len());
        // However the bytes are split, the decoder reaches the same result.
        for chunk in [1, 7, 12, 13] {
            assert_eq!(replay(&bytes, chunk), whole, "{name} in chunks of {chunk}");
        }
        let (frames, end) = &whole;
        let consumed: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        assert_eq!(
            consumed,
            bytes[..consumed.len()],
            "{name}: frames re-encode"
        );
        if name.starts_with("captured-") || name.starts_with("valid-") {
            assert_eq!(end, &Ok(0), "{name}");
            assert!(!frames.is_empty(), "{name}");
            if name.starts_with("captured-") {
                assert_eq!(frames.len(), 1, "{name}");
            }
        } else if name.starts_with("truncated-") {
            assert!(matches!(end, Ok(n) if *n > 0), "{name}: {end:?}");
        } else if name.starts_with("invalid-") {
            assert!(end.is_err(), "{name}: {end:?}");
            assert!(Frame::decode(&bytes).is_err(), "{name}");
        }
    }
}

#[test]
fn corpus_invalid_inputs_fail_for_the_named_reason() {
    let expect = |file: &str, check: fn(&FrameError) -> bool| {
        let bytes = std::fs::read(corpus_dir().join(file)).unwrap();
        let (_, end) = replay(&bytes, bytes.len());
        let err = end.expect_err(file);
        assert!(check(&err), "{file}: {err}");
    };
    expect("invalid-prelude-crc.bin", |e| {
        matches!(e, FrameError::PreludeCrc { .. })
    });
    expect("invalid-message-crc.bin", |e| {
        matches!(e, FrameError::MessageCrc { .. })
    });
    expect("invalid-oversized-total.bin", |e| {
        matches!(e, FrameError::FrameTooLong { .. })
    });
    expect("invalid-max-u32-lengths.bin", |e| {
        matches!(e, FrameError::FrameTooLong { .. })
    });
    expect("invalid-total-below-16.bin", |e| {
        matches!(e, FrameError::FrameTooShort { .. })
    });
    expect("invalid-headers-longer-than-frame.bin", |e| {
        matches!(e, FrameError::HeadersTooLong { .. })
    });
    expect("invalid-unknown-header-type.bin", |e| {
        matches!(e, FrameError::UnknownHeaderType { code: 10, .. })
    });
    expect("invalid-header-type-255.bin", |e| {
        matches!(e, FrameError::UnknownHeaderType { code: 255, .. })
    });
    expect("invalid-string-value-32768.bin", |e| {
        matches!(e, FrameError::HeaderValueTooLong { len: 32768, .. })
    });
    expect("invalid-empty-header-name.bin", |e| {
        matches!(e, FrameError::EmptyHeaderName { .. })
    });
    expect("invalid-string-not-utf8.bin", |e| {
        matches!(e, FrameError::StringNotUtf8 { .. })
    });
    expect("invalid-name-not-utf8.bin", |e| {
        matches!(e, FrameError::HeaderNameNotUtf8 { .. })
    });
    expect("invalid-header-runs-past-block.bin", |e| {
        matches!(e, FrameError::HeaderTruncated { .. })
    });
    expect("invalid-string-length-past-block.bin", |e| {
        matches!(e, FrameError::HeaderTruncated { .. })
    });
    expect("invalid-1025-headers.bin", |e| {
        matches!(e, FrameError::TooManyHeaders)
    });
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i8>().prop_map(HeaderValue::Byte),
        any::<i16>().prop_map(HeaderValue::Int16),
        any::<i32>().prop_map(HeaderValue::Int32),
        any::<i64>().prop_map(HeaderValue::Int64),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(HeaderValue::ByteBuf),
        "\\PC{0,32}".prop_map(HeaderValue::String),
        any::<i64>().prop_map(HeaderValue::Timestamp),
        any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    ("[:a-zA-Z0-9_-]{1,40}|\\PC{1,20}", header_value()).prop_map(|(n, v)| Header::new(n, v))
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        proptest::collection::vec(header(), 0..12),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_filter_map("within the limits", |(h, p)| Frame::new(h, p).ok())
}

proptest! {
    #[test]
    fn frames_round_trip(frame in frame()) {
        let bytes = frame.encode();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        prop_assert_eq!(Frame::decode(&bytes).unwrap(), frame);
    }

    #[test]
    fn frame_sequences_survive_any_split(frames in proptest::collection::vec(frame(), 1..5), chunk in 1usize..64) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let (out, end) = replay(&bytes, chunk);
        prop_assert_eq!(end, Ok(0));
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..32) {
        let (frames, _) = replay(&bytes, chunk);
        let consumed: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        prop_assert_eq!(&consumed[..], &bytes[..consumed.len()]);
        if let Ok(frame) = Frame::decode(&bytes) {
            prop_assert_eq!(frame.encode(), bytes);
        }
    }

    #[test]
    fn decoder_never_panics_on_bytes_behind_a_valid_prelude(tail in proptest::collection::vec(any::<u8>(), 0..256), headers_length in 0u32..300) {
        // Random bodies rarely get past the prelude CRC; this puts them behind a good one.
        let total = (16 + tail.len()) as u32;
        let mut bytes = total.to_be_bytes().to_vec();
        bytes.extend(headers_length.to_be_bytes());
        let crc = crc32_of(&bytes);
        bytes.extend(crc.to_be_bytes());
        bytes.extend(&tail);
        bytes.extend([0; 4]);
        let n = bytes.len();
        let message_crc = crc32_of(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&message_crc.to_be_bytes());
        if let Ok(frame) = Frame::decode(&bytes) {
            prop_assert_eq!(frame.encode(), bytes);
        }
    }

    #[test]
    fn any_corrupted_byte_of_a_captured_frame_is_caught(which in 0usize..17, at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let mut bytes = hex(CAPTURED[which].1);
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        let mut decoder = Decoder::new();
        decoder.push(&bytes);
        // A changed length may only leave the decoder waiting; it never yields a frame.
        prop_assert!(!matches!(decoder.next_frame(), Ok(Some(_))));
    }
}

/// CRC-32 (IEEE), bit by bit, so the test does not trust the codec's own CRC.
fn crc32_of(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The spec's limits, as the codec applies them: the numbers are written out here, so a
/// changed constant fails as a changed limit would.
#[test]
fn the_specs_limits_hold_exactly_at_their_numbers() {
    // A header value of 32 767 bytes is the longest.
    assert!(Frame::new(vec![Header::string("s", "v".repeat(32_767))], vec![]).is_ok());
    assert!(Frame::new(vec![Header::string("s", "v".repeat(32_768))], vec![]).is_err());
    // 1 024 headers at most.
    let header = Header::new("b", HeaderValue::Bool(true));
    assert!(Frame::new(vec![header.clone(); 1024], vec![]).is_ok());
    assert!(Frame::new(vec![header; 1025], vec![]).is_err());
    // 24 MiB a frame, the 16 bytes of prelude and CRC included: the largest decodes, one
    // byte more is refused by the decoder as soon as its prelude says so.
    let largest = Frame::new(vec![], vec![0; 25_165_824 - 16])
        .unwrap()
        .encode();
    assert_eq!(largest.len(), 25_165_824);
    let mut decoder = Decoder::new();
    decoder.push(&largest);
    assert!(matches!(decoder.next_frame(), Ok(Some(_))));
    assert!(Frame::new(vec![], vec![0; 25_165_824 - 15]).is_err());
    let mut prelude = 25_165_825u32.to_be_bytes().to_vec();
    prelude.extend(0u32.to_be_bytes());
    let crc = crc32_of(&prelude);
    prelude.extend(crc.to_be_bytes());
    let mut decoder = Decoder::new();
    decoder.push(&prelude);
    assert!(decoder.next_frame().is_err());
    // The test's own CRC is the standard one (its check value), so the prelude above is
    // refused for its length, not for its CRC.
    assert_eq!(crc32_of(b"123456789"), 0xCBF4_3926);
}
