//! Streams: resume without gap or duplicate, flow control, skip notices, file digests.
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::*;

use tether_protocol::connection::Event;
use tether_protocol::file::{FileCheck, FileDigest, FILE_CHUNK_BYTES};
use tether_protocol::frame::{Control, Frame, Header};
use tether_protocol::stream::{OutputRing, INITIAL_WINDOW_BYTES};
use tether_protocol::{ConnError, FileError, StreamError};

fn received(events: &[Event], stream: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        if let Event::Data { stream: s, bytes, .. } = event {
            if *s == stream {
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

#[test]
fn reconnect_resumes_from_last_byte_without_gap_or_duplicate() {
    // Host side keeps the session's output in a ring; the client sees part of it, the link
    // drops, a new connection resumes from the last byte the client had.
    let output: Vec<u8> = (0..50_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let mut ring = OutputRing::new(1 << 20);
    ring.push(&output[..200_000]);

    let (mut client, mut host) = open_pair();
    host.send_data(7, 0, &ring.read_from(0, 150_000).expect("held")).expect("send");
    let (client_events, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    let mut seen = received(&client_events, 7);
    // The client's own cursor: the byte after the last one it was given.
    let resume_at = match client_events.last() {
        Some(Event::Data { seq, bytes, .. }) => seq + bytes.len() as u64,
        other => panic!("client saw {other:?}"),
    };
    assert_eq!(resume_at, 150_000);

    // More output while disconnected; the new connection's stream starts where the client asked
    // (its `attach` names `from`), and from then on every byte follows the last, once.
    ring.push(&output[200_000..]);
    let (mut client, mut host) = open_pair();
    let mut at = resume_at;
    let mut client_events = Vec::new();
    while at < ring.end() {
        let chunk = ring.read_from(at, 256 * 1024).expect("held");
        let sent = host.send_data(7, at, &chunk).expect("send");
        at += sent as u64;
        let (events, _, error) = pump(&mut client, &mut host);
        assert_eq!(error, None);
        for event in &events {
            if let Event::Data { stream, bytes, .. } = event {
                client.consumed(*stream, bytes.len() as u64).expect("grant");
            }
        }
        pump(&mut client, &mut host);
        client_events.extend(events);
    }
    seen.extend(received(&client_events, 7));
    assert_eq!(seen.len(), output.len());
    assert!(seen == output, "resumed output differs");
}

#[test]
fn flow_control_bounds_the_sender_until_the_reader_consumes() {
    let (mut client, mut host) = open_pair();
    let big = vec![b'x'; 3 * INITIAL_WINDOW_BYTES as usize];
    let sent = host.send_data(1, 0, &big).expect("send");
    assert_eq!(sent as u64, INITIAL_WINDOW_BYTES, "only one window in flight");
    assert_eq!(host.send_data(1, sent as u64, &big[sent..]).expect("send"), 0, "blocked");
    let (client_events, host_events, _) = pump(&mut client, &mut host);
    assert_eq!(received(&client_events, 1).len() as u64, INITIAL_WINDOW_BYTES);
    assert!(host_events.is_empty(), "no credit back until the reader consumes");

    client.consumed(1, INITIAL_WINDOW_BYTES).expect("consume");
    let (_, host_events, _) = pump(&mut client, &mut host);
    assert_eq!(host_events, vec![Event::Writable { stream: 1 }]);
    assert_eq!(host.send_window(1), INITIAL_WINDOW_BYTES);
}

#[test]
fn peer_ignoring_flow_control_is_cut_off() {
    let (mut client, mut host) = open_pair();
    client.send_data(2, 0, &vec![0u8; INITIAL_WINDOW_BYTES as usize]).expect("first window");
    pump(&mut client, &mut host);
    // The host hands out credit as a raw frame, behind the back of its own window accounting:
    // the client, trusting it, sends bytes the host never made room for, exactly like a peer
    // that ignores flow control. The host must refuse rather than buffer without bound.
    host.send_frame(&Frame::bare(Header::Control(Control::Window { stream: 2, bytes: 10 }))).expect("raw grant");
    pump(&mut client, &mut host);
    client.send_data(2, INITIAL_WINDOW_BYTES, &[1; 10]).expect("within the forged credit");
    let (_, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, Some(ConnError::Stream(StreamError::WindowExceeded { stream: 2 })));
}

#[test]
fn evicted_output_is_skipped_with_a_notice() {
    let (mut client, mut host) = open_pair();
    host.send_frame(&Frame::bare(Header::Control(Control::Skip { stream: 3, from: 10, to: 500 }))).expect("skip");
    host.send_data(3, 500, b"after").expect("send");
    let (client_events, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    assert_eq!(
        client_events,
        vec![
            Event::Skipped { stream: 3, from: 10, to: 500 },
            Event::Data { stream: 3, seq: 500, bytes: b"after".to_vec() }
        ]
    );
}

#[test]
fn data_after_a_gap_is_an_error() {
    let (mut client, mut host) = open_pair();
    // A stream starts wherever its first bytes are (an attach replays from the oldest byte the
    // host still holds, or resumes from where this client was)...
    host.send_data(4, 100, b"late").expect("send");
    let (events, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    assert_eq!(events, vec![Event::Data { stream: 4, seq: 100, bytes: b"late".to_vec() }]);
    // ...and from then on every byte must follow the last.
    host.send_data(4, 200, b"gap").expect("send");
    let (_, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, Some(ConnError::Stream(StreamError::Gap { stream: 4, expected: 104, got: 200 })));
}

fn file_bytes() -> Vec<u8> {
    (0..(3 * FILE_CHUNK_BYTES + 123)).map(|i| (i * 7 % 251) as u8).collect()
}

fn digest(bytes: &[u8]) -> String {
    let mut digest = FileDigest::new();
    digest.update(bytes);
    digest.finish()
}

#[test]
fn a_file_is_checked_by_size_and_digest_before_it_may_be_committed() {
    let file = file_bytes();
    let receive = |bytes: &[u8]| -> Result<(), FileError> {
        let mut check = FileCheck::new(file.len() as u64);
        for piece in bytes.chunks(FILE_CHUNK_BYTES) {
            check.absorb(piece)?;
        }
        check.finish(&digest(&file))
    };
    assert_eq!(receive(&file), Ok(()));
    let mut flipped = file.clone();
    flipped[5] ^= 1;
    assert!(matches!(receive(&flipped), Err(FileError::DigestMismatch { .. })));
    assert!(matches!(receive(&file[..100]), Err(FileError::SizeMismatch { .. })));
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(receive(&longer), Err(FileError::SizeMismatch { .. })), "bytes past the size are refused");
}

#[test]
fn a_resumed_file_is_checked_whole() {
    let file = file_bytes();
    let split = FILE_CHUNK_BYTES + 500;
    // What the receiver kept from the first attempt is hashed again; the rest comes from `split`.
    let mut check = FileCheck::new(file.len() as u64);
    check.absorb(&file[..split]).expect("kept part");
    assert_eq!(check.offset(), split as u64);
    check.absorb(&file[split..]).expect("rest");
    check.finish(&digest(&file)).expect("digest of the whole file");
}

#[test]
fn sequence_numbers_near_the_end_of_u64_are_refused_not_wrapped() {
    // A peer controls `seq`: bytes that would run past u64::MAX are a typed error, never an
    // overflow (a panic in debug builds, a wrap to 0 in release).
    let (mut client, mut host) = open_pair();
    host.send_frame(&Frame::new(Header::Data { stream: 5, seq: u64::MAX - 3 }, vec![b'x'; 10])).expect("raw data");
    let (_, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, Some(ConnError::Stream(StreamError::SeqOverflow { stream: 5 })));
    // And our own sender refuses to number bytes past the end.
    let (_, mut host) = open_pair();
    assert_eq!(host.send_data(6, u64::MAX - 1, b"abc"), Err(ConnError::Stream(StreamError::SeqOverflow { stream: 6 })));
}

#[test]
fn a_peer_cannot_grow_the_stream_table() {
    use tether_protocol::connection::MAX_STREAMS;
    let (mut client, mut host) = open_pair();
    // Credit for streams nobody sent on: ignored, nothing kept.
    for stream in 0..5_000 {
        client.send_frame(&Frame::bare(Header::Control(Control::Window { stream, bytes: 1 }))).expect("window");
    }
    let (_, host_events, error) = pump(&mut client, &mut host);
    assert_eq!((error, host_events.len(), host.stream_count()), (None, 0, 0));
    // A stream ends both ways: its state goes.
    host.send_data(9, 0, b"out").expect("send");
    host.send_frame(&Frame::bare(Header::Control(Control::Eof { stream: 9, end: 3 }))).expect("eof");
    assert_eq!(host.stream_count(), 0);
    // New streams past the cap are an error, not more memory.
    for stream in 0..MAX_STREAMS as u32 + 1 {
        client.send_frame(&Frame::bare(Header::Control(Control::Skip { stream, from: 0, to: 1 }))).expect("skip");
    }
    let (_, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, Some(ConnError::Stream(StreamError::TooManyStreams { max: MAX_STREAMS })));
    assert!(host.stream_count() <= MAX_STREAMS);
}

#[test]
fn command_bodies_too_big_for_a_header_travel_in_the_payload() {
    use tether_protocol::api::{ErrorCode, Response};
    use tether_protocol::cmd::{answer_frame, cmd_frame, MAX_CMD_FRAME_BYTES};
    let (mut client, mut host) = open_pair();
    // A list far over the 16 KiB header cap, with bulk bytes after it.
    let body = serde_json::json!({ "kind": "sessions", "names": vec!["x".repeat(100); 5_000] });
    host.send_frame(&cmd_frame(7, &body, b"bulk".to_vec())).expect("sealed");
    let (events, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    assert_eq!(events, vec![Event::Cmd { id: 7, body, payload: b"bulk".to_vec() }]);
    // An answer too big for one message becomes an error answer, never a dropped one.
    let huge = (Response::Ok, vec![0u8; MAX_CMD_FRAME_BYTES]);
    let frame = answer_frame(8, &huge);
    host.send_frame(&frame).expect("the substitute fits");
    let (events, _, _) = pump(&mut client, &mut host);
    let Some(Event::Cmd { id: 8, body, .. }) = events.first() else { panic!("{events:?}") };
    let response: Response = serde_json::from_value(body.clone()).expect("a response");
    assert!(matches!(response, Response::Error { code: ErrorCode::LimitReached, .. }), "{response:?}");
}
