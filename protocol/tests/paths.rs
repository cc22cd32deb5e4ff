//! One connection over two paths at once (the relay and a data channel), as `paths` and
//! `Connection::open_direct` promise: a stream's bytes arrive exactly once and in order however
//! the two paths interleave, and when the data channel dies mid-flood with frames in flight,
//! what it lost is resent over the relay.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::*;

use std::collections::VecDeque;

use tether_protocol::connection::{Connection, Event, Input};
use tether_protocol::connection::{DIRECT_PING_MS, DIRECT_SILENCE_MS};
use tether_protocol::frame::{Frame, Header};
use tether_protocol::signal::Route;
use tether_protocol::ConnError;

const STREAM: u32 = 1;
/// More than the initial window, so credit must come back over the paths too. Smaller (and
/// fewer runs) in the browser, where these unoptimised tests run several times slower.
#[cfg(not(target_arch = "wasm32"))]
const TOTAL: usize = 3 << 20; // 3 MiB
#[cfg(target_arch = "wasm32")]
const TOTAL: usize = 5 << 18; // 1.25 MiB
#[cfg(not(target_arch = "wasm32"))]
const RUNS: u64 = 6;
#[cfg(target_arch = "wasm32")]
const RUNS: u64 = 2;
const CHUNK: usize = 40_000;

/// A deterministic generator, so each seed's interleaving is the same on every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn pattern(at: usize) -> u8 {
    (at % 251) as u8
}

/// One direction's two paths: relay bytes (a byte stream) and data-channel messages.
#[derive(Default)]
struct Wire {
    relay: VecDeque<Vec<u8>>,
    direct: VecDeque<Vec<u8>>,
}

impl Wire {
    fn collect(&mut self, conn: &mut Connection) -> Vec<Event> {
        let (relay, direct, events) = drain_paths(conn);
        self.relay.extend(relay);
        self.direct.extend(direct);
        events
    }

    /// Deliver one message from a path chosen by `rng` (each path keeps its own order).
    fn deliver_one(&mut self, to: &mut Connection, rng: &mut Lcg) -> Result<bool, ConnError> {
        let use_direct = match (self.relay.is_empty(), self.direct.is_empty()) {
            (true, true) => return Ok(false),
            (true, false) => true,
            (false, true) => false,
            (false, false) => rng.next().is_multiple_of(2),
        };
        if use_direct {
            let message = self.direct.pop_front().expect("non-empty");
            to.handle_input(Input::Direct(&message), 0)?;
        } else {
            let bytes = self.relay.pop_front().expect("non-empty");
            to.handle_input(Input::Bytes(&bytes), 0)?;
        }
        Ok(true)
    }
}

/// What a flood saw on the way, so a test can tell its case really happened.
struct Flood {
    received: Vec<u8>,
    /// Relay messages still on their way when the data channel opened (they are overtaken).
    relay_backlog_at_open: usize,
    /// Data-channel messages lost when it died.
    lost_at_failure: usize,
}

/// The host streams `TOTAL` bytes to the client. Once `open_at` bytes were sent, a data channel
/// opens beside the relay (relay messages may still be on their way: the first data-channel
/// frames overtake them). With `fail_at`, it dies once that many bytes were sent: its in-flight
/// messages are lost both ways and both ends call `direct_failed`.
fn flood(seed: u64, open_at: usize, fail_at: Option<usize>) -> Flood {
    let mut rng = Lcg(seed);
    let (mut client, mut host) = open_pair();
    let (mut to_client, mut to_host) = (Wire::default(), Wire::default());
    let (mut sent, mut received) = (0usize, Vec::new());
    let (mut opened, mut failed) = (false, false);
    let (mut relay_backlog_at_open, mut lost_at_failure) = (0, 0);
    for _round in 0..100_000 {
        if sent < TOTAL {
            let end = (sent + CHUNK).min(TOTAL);
            let bytes: Vec<u8> = (sent..end).map(pattern).collect();
            sent += host.conn.send_data(STREAM, sent as u64, &bytes).expect("send");
        }
        to_client.collect(&mut host.conn);
        if !opened && sent >= open_at {
            opened = true;
            relay_backlog_at_open = to_client.relay.len();
            client.open_direct(Route::Direct, 0).expect("client opens the data channel");
            host.conn.open_direct(Route::Direct, 0).expect("host opens the data channel");
        }
        if opened && !failed && fail_at.is_some_and(|at| sent >= at) {
            failed = true;
            lost_at_failure = to_client.direct.len() + to_host.direct.len();
            to_client.direct.clear();
            to_host.direct.clear();
            host.conn.direct_failed();
            client.direct_failed();
            to_client.collect(&mut host.conn);
        }
        // Fewer deliveries than sends now and then, so both paths have messages waiting.
        for _ in 0..rng.next() % 3 {
            to_client.deliver_one(&mut client, &mut rng).expect("client takes what arrives");
        }
        if sent == TOTAL {
            // All sent: the rest drains.
            while to_client.deliver_one(&mut client, &mut rng).expect("client takes what arrives") {}
        }
        take_data(&mut client, &mut to_host, &mut received);
        while to_host.deliver_one(&mut host.conn, &mut rng).expect("host takes what arrives") {}
        if received.len() == TOTAL {
            break;
        }
    }
    assert_eq!(host.conn.is_direct(), fail_at.is_none(), "the data channel is used until it fails");
    Flood { received, relay_backlog_at_open, lost_at_failure }
}

/// The client's new stream bytes: each must follow the last (exactly once, in order); credited
/// back at once.
fn take_data(client: &mut Connection, to_host: &mut Wire, received: &mut Vec<u8>) {
    for event in to_host.collect(client) {
        if let Event::Data { stream, seq, bytes } = event {
            assert_eq!((stream, seq as usize), (STREAM, received.len()), "in order, exactly once");
            received.extend_from_slice(&bytes);
            client.consumed(stream, bytes.len() as u64).expect("credit");
        }
    }
}

fn assert_whole(received: &[u8], case: &str) {
    assert_eq!(received.len(), TOTAL, "{case}");
    assert!(received.iter().enumerate().all(|(at, &b)| b == pattern(at)), "{case}: bytes out of place");
}

#[test]
fn a_stream_moving_onto_the_data_channel_arrives_once_in_order() {
    let mut overtaken = 0;
    for seed in 0..RUNS {
        let flood = flood(seed, TOTAL / 6, None);
        assert_whole(&flood.received, &format!("seed {seed}"));
        overtaken += flood.relay_backlog_at_open;
    }
    assert!(overtaken > 0, "no run had relay messages in flight when the data channel opened");
}

#[test]
fn the_data_channel_dying_mid_flood_loses_nothing() {
    let mut lost = 0;
    for seed in 0..RUNS {
        // The data channel opens at a tenth of the flood and dies somewhere in the rest.
        let fail_at = TOTAL / 4 + (TOTAL * 2 / 3) * seed as usize / RUNS as usize;
        let flood = flood(seed, TOTAL / 10, Some(fail_at));
        assert_whole(&flood.received, &format!("seed {seed}, failed at {fail_at}"));
        lost += flood.lost_at_failure;
    }
    assert!(lost > 0, "no run lost data-channel messages when it died");
}

#[test]
fn a_tampered_frame_on_the_data_channel_is_refused_as_on_the_relay() {
    let (mut client, mut host) = open_pair();
    host.conn.open_direct(Route::Direct, 0).expect("open");
    host.conn.send_data(STREAM, 0, b"hello").expect("send");
    let mut message = drain_paths(&mut host.conn).1.pop().expect("a sealed frame on the data channel");
    let last = message.len() - 1;
    message[last] ^= 1;
    let error = client.handle_input(Input::Direct(&message), 0).expect_err("refused");
    assert!(matches!(error, ConnError::Channel(_)), "{error:?}");
}

#[test]
fn only_sealed_frames_may_come_over_the_data_channel() {
    let (mut client, _host) = open_pair();
    let plain = Frame::new(Header::Data { stream: STREAM, seq: 0 }, b"unsealed".to_vec()).encode().expect("encode");
    let error = client.handle_input(Input::Direct(&plain), 0).expect_err("refused");
    assert!(matches!(error, ConnError::Channel(_)), "{error:?}");
}

#[test]
fn a_data_channel_that_keeps_talking_stays_up() {
    let (mut client, mut host) = open_pair();
    client.open_direct(Route::Turn, 0).expect("open");
    host.conn.open_direct(Route::Turn, 0).expect("open");
    assert!(client.path_summary().starts_with("via TURN"), "{}", client.path_summary());
    let mut now = 0;
    while now < 4 * DIRECT_SILENCE_MS {
        now += DIRECT_PING_MS / 2;
        exchange_on_the_data_channel(&mut client, &mut host.conn, now);
        exchange_on_the_data_channel(&mut host.conn, &mut client, now);
    }
    assert!(client.is_direct() && host.conn.is_direct(), "pings on the channel keep it up");
}

/// `from`'s timers run, and what it sends on the data channel reaches `to` at once.
fn exchange_on_the_data_channel(from: &mut Connection, to: &mut Connection, now: u64) {
    from.handle_timeout(now).expect("timers");
    let (_, direct, events) = drain_paths(from);
    assert!(!events.iter().any(|e| matches!(e, Event::DirectLost { .. })), "lost at {now} ms");
    for message in direct {
        to.handle_input(Input::Direct(&message), now).expect("takes a ping or pong");
    }
}

#[test]
fn a_silent_data_channel_is_given_up_and_what_it_lost_goes_over_the_relay() {
    let (mut client, mut host) = open_pair();
    client.open_direct(Route::Direct, 0).expect("open");
    host.conn.open_direct(Route::Direct, 0).expect("open");
    host.conn.send_data(STREAM, 0, b"lost on the way").expect("send");
    assert_eq!(drain_paths(&mut host.conn).1.len(), 1, "the frame went on the data channel, and is lost there");

    host.conn.handle_timeout(DIRECT_SILENCE_MS - 1).expect("timers");
    assert!(host.conn.is_direct(), "not yet given up");
    host.conn.handle_timeout(DIRECT_SILENCE_MS).expect("timers");
    assert!(!host.conn.is_direct());
    assert!(host.conn.path_summary().starts_with("via relay"));
    let (transmits, direct, events) = drain_paths(&mut host.conn);
    assert!(direct.is_empty(), "nothing more on a channel given up");
    assert!(events.contains(&Event::DirectLost { silent_ms: DIRECT_SILENCE_MS }), "{events:?}");
    let mut got = Vec::new();
    for bytes in transmits {
        client.handle_input(Input::Bytes(&bytes), DIRECT_SILENCE_MS).expect("relay delivers the resend");
    }
    for event in client.drain_output().1 {
        if let Event::Data { bytes, .. } = event {
            got.extend(bytes);
        }
    }
    assert_eq!(got, b"lost on the way");
}
