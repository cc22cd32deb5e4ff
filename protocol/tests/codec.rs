//! Frame codec: round trips, any split of the input, caps and garbage.
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use tether_protocol::frame::{
    decode_exact, AuthStep, Control, Frame, FrameDecoder, Header, RelayMsg, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES,
};
use tether_protocol::FrameError;

fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::new(
            Header::Auth(AuthStep::ClientHello {
                version: 1,
                host_id: "H".into(),
                identity: "invite".into(),
                nonce: "00ff".into(),
            }),
            vec![1, 2, 3],
        ),
        Frame::bare(Header::Auth(AuthStep::Failed { reason: "nope ✗".into() })),
        Frame::new(Header::Encrypted { ctr: u64::MAX }, vec![0; 40]),
        Frame::new(Header::Data { stream: 3, seq: 1 << 40 }, b"\x1b[31mred\x1b[0m\r\n".to_vec()),
        Frame::bare(Header::Control(Control::Skip { stream: 3, from: 17, to: 20 })),
        Frame::bare(Header::Control(Control::Close { reason: String::new() })),
        Frame::bare(Header::Cmd { id: 5, body: serde_json::json!({"op": "ls", "args": [1, "two"]}), body_bytes: None }),
        Frame::bare(Header::Webrtc { signal: serde_json::json!({"sdp": "v=0\r\n"}) }),
        Frame::new(Header::Data { stream: 0, seq: 0 }, Vec::new()),
        Frame::bare(Header::Relay(RelayMsg::Register { host_id: "ABC".into(), proof: "00".into(), signature: None })),
        Frame::bare(Header::Relay(RelayMsg::Register {
            host_id: "ABC".into(),
            proof: "01".into(),
            signature: Some("02".into()),
        })),
        Frame::bare(Header::Relay(RelayMsg::Open { conn: 7, source: 0xdead_beef })),
        Frame::new(Header::Relay(RelayMsg::Forward { conn: u64::MAX }), vec![1, 2, 3]),
        Frame::bare(Header::Relay(RelayMsg::Close { conn: 3, reason: "host offline".into() })),
    ]
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut wire = Vec::new();
    for frame in frames {
        frame.encode_into(&mut wire).expect("encodes");
    }
    wire
}

fn decode_chunks<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        decoder.push(chunk).expect("push");
        while let Some(frame) = decoder.next_frame().expect("valid stream") {
            frames.push(frame);
        }
    }
    assert_eq!(decoder.buffered(), 0, "nothing left over");
    frames
}

#[test]
fn round_trip_every_frame_type() {
    for frame in sample_frames() {
        assert_eq!(decode_exact(&frame.encode().expect("encodes")).expect("decodes"), frame);
    }
}

#[test]
fn split_at_every_byte_boundary() {
    let frames = sample_frames();
    let wire = encode_all(&frames);
    for cut in 0..=wire.len() {
        let (a, b) = wire.split_at(cut);
        assert_eq!(decode_chunks([a, b].into_iter()), frames, "split at {cut}");
    }
    // And one byte at a time.
    assert_eq!(decode_chunks(wire.chunks(1)), frames);
}

#[test]
fn split_at_random_boundaries() {
    let frames = sample_frames();
    let wire = encode_all(&frames);
    let mut state = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let mut pieces = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let take = (state % 97) as usize % (rest.len() + 1);
            let (a, b) = rest.split_at(take.max(1).min(rest.len()));
            pieces.push(a);
            rest = b;
        }
        assert_eq!(decode_chunks(pieces.into_iter()), frames);
    }
}

#[test]
fn oversized_lengths_fail_before_buffering() {
    let mut decoder = FrameDecoder::new();
    let err = decoder.push(&((MAX_HEADER_BYTES as u32) + 1).to_be_bytes()).expect_err("header cap");
    assert_eq!(err, FrameError::HeaderTooLarge { len: MAX_HEADER_BYTES + 1 });
    assert_eq!(decoder.push(b"x"), Err(FrameError::Poisoned));

    let header = br#"{"type":"data","stream":1,"seq":0}"#;
    let mut wire = (header.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(header);
    wire.extend_from_slice(&((MAX_PAYLOAD_BYTES as u32) + 1).to_be_bytes());
    let mut decoder = FrameDecoder::new();
    assert_eq!(decoder.push(&wire), Err(FrameError::PayloadTooLarge { len: MAX_PAYLOAD_BYTES + 1 }));

    // u32::MAX lengths, the classic allocation bomb.
    let mut decoder = FrameDecoder::new();
    assert!(decoder.push(&[0xff; 4]).is_err());
}

#[test]
fn encoding_refuses_over_cap() {
    let big = Frame::new(Header::Data { stream: 1, seq: 0 }, vec![0; MAX_PAYLOAD_BYTES + 1]);
    assert_eq!(big.encode(), Err(FrameError::PayloadTooLarge { len: MAX_PAYLOAD_BYTES + 1 }));
    let long_reason = "x".repeat(MAX_HEADER_BYTES);
    let big_header = Frame::bare(Header::Control(Control::Close { reason: long_reason }));
    assert!(matches!(big_header.encode(), Err(FrameError::HeaderTooLarge { .. })));
    let exactly = Frame::new(Header::Data { stream: 1, seq: 0 }, vec![0; MAX_PAYLOAD_BYTES]);
    assert_eq!(decode_exact(&exactly.encode().expect("at cap")).expect("decodes"), exactly);
}

fn frame_with_header(json: &str) -> Vec<u8> {
    let mut wire = (json.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(json.as_bytes());
    wire.extend_from_slice(&0u32.to_be_bytes());
    wire
}

#[test]
fn garbage_headers_are_typed_errors() {
    for json in [
        "not json",
        "[]",
        "{}",
        r#"{"type":"teleport"}"#,
        r#"{"type":"data","stream":1}"#,
        r#"{"type":"data","stream":-1,"seq":0}"#,
        r#"{"type":"data","stream":1,"seq":0,"extra":true}"#,
        r#"{"type":"auth","step":"client_hello"}"#,
        r#"{"type":"control","op":"window","stream":"1","bytes":0}"#,
        "\u{0}\u{1}",
    ] {
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame_with_header(json)).expect("lengths fine");
        match decoder.next_frame() {
            Err(FrameError::Malformed(_)) => {}
            other => panic!("{json:?} gave {other:?}"),
        }
        assert_eq!(decoder.next_frame(), Err(FrameError::Poisoned));
    }
    let mut invalid_utf8 = frame_with_header("{}");
    invalid_utf8[4] = 0xff;
    assert!(matches!(decode_exact(&invalid_utf8), Err(FrameError::Malformed(_))));
}

#[test]
fn decode_exact_wants_exactly_one_frame() {
    let wire = encode_all(&sample_frames()[..2]);
    assert!(matches!(decode_exact(&wire), Err(FrameError::Malformed(_))));
    let one = sample_frames()[0].encode().expect("encodes");
    assert_eq!(decode_exact(&one[..one.len() - 1]), Err(FrameError::Truncated));
    assert_eq!(decode_exact(&[]), Err(FrameError::Truncated));
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn data_frames_round_trip_under_any_split(
            stream in any::<u32>(), seq in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let frames = vec![
                Frame::new(Header::Data { stream, seq }, payload.clone()),
                Frame::new(Header::Control(Control::Eof { stream, end: seq }), Vec::new()),
            ];
            let wire = encode_all(&frames);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for p in points { pieces.push(&wire[last..p]); last = p; }
            pieces.push(&wire[last..]);
            prop_assert_eq!(decode_chunks(pieces.into_iter()), frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut decoder = FrameDecoder::new();
            if decoder.push(&bytes).is_ok() {
                while let Ok(Some(_)) = decoder.next_frame() {}
            }
        }
    }
}
