//! The secure channel fails closed on replay, reorder, drop, truncation and any bit flip.
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::*;

use tether_protocol::channel::{Opener, Sealer};
use tether_protocol::connection::{Event, Input, IDLE_TIMEOUT_MS, KEEPALIVE_INTERVAL_MS};
use tether_protocol::frame::{decode_exact, Control, Frame, Header};
use tether_protocol::{ChannelError, ConnError};

fn data(n: u8) -> Frame {
    Frame::new(Header::Data { stream: 1, seq: u64::from(n) }, vec![n])
}

#[test]
fn replayed_frame_is_rejected() {
    let (mut client, mut host) = open_pair();
    client.send_data(1, 0, b"ls\r").expect("send");
    let first = next_transmit(&mut client);
    host.handle_input(Input::Bytes(&first), 0).expect("first copy");
    assert_eq!(
        host.handle_input(Input::Bytes(&first), 0),
        Err(ConnError::Channel(ChannelError::Replayed { expected: 1, got: 0 }))
    );
    // Fail closed: nothing more is accepted.
    client.send_data(1, 3, b"x").expect("send");
    let next = next_transmit(&mut client);
    assert!(host.handle_input(Input::Bytes(&next), 0).is_err());
}

#[test]
fn reordered_and_dropped_frames_are_rejected() {
    let (mut client, mut host) = open_pair();
    for i in 0..3u8 {
        client.send_data(1, u64::from(i), &[i]).expect("send");
    }
    let frames: Vec<Vec<u8>> = (0..3).map(|_| next_transmit(&mut client)).collect();
    // Deliver 0, then 2 (1 dropped or late).
    host.handle_input(Input::Bytes(&frames[0]), 0).expect("in order");
    assert_eq!(
        host.handle_input(Input::Bytes(&frames[2]), 0),
        Err(ConnError::Channel(ChannelError::OutOfOrder { expected: 1, got: 2 }))
    );
    assert!(host.error().is_some());
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let key = [0x42u8; 64];
    let mut sealer = Sealer::new(&key);
    let wire = sealer.seal(&data(7)).expect("seals").encode().expect("encodes");
    for bit in 0..wire.len() * 8 {
        let mut flipped = wire.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        // A flip may break the framing, the header, the counter or the ciphertext: all must fail.
        let accepted = decode_exact(&flipped).ok().and_then(|frame| Opener::new(&key).open(&frame).ok());
        assert_eq!(accepted, None, "flip of bit {bit} was accepted");
    }
    assert_eq!(Opener::new(&key).open(&decode_exact(&wire).expect("intact")).expect("intact opens"), data(7));
}

#[test]
fn truncated_ciphertext_and_wrong_direction_are_forgeries() {
    let key = [0x42u8; 64];
    let sealed = Sealer::new(&key).seal(&data(1)).expect("seals");
    for cut in [1, 16, sealed.payload.len()] {
        let short = Frame::new(sealed.header.clone(), sealed.payload[..sealed.payload.len() - cut].to_vec());
        assert_eq!(Opener::new(&key).open(&short), Err(ChannelError::Forged { ctr: 0 }), "cut {cut}");
    }
    // A frame reflected back at its sender (other direction's key) does not authenticate.
    assert_eq!(Opener::new(&[0x43u8; 64]).open(&sealed), Err(ChannelError::Forged { ctr: 0 }));
}

#[test]
fn stream_truncation_is_reported() {
    let (mut client, mut host) = open_pair();
    client.send_data(1, 0, b"partial").expect("send");
    host.handle_input(Input::Bytes(&next_transmit(&mut client)), 0).expect("data");
    assert_eq!(host.handle_input(Input::TransportClosed, 0), Err(ConnError::Truncated));

    // An orderly close is not a truncation.
    let (mut client, mut host) = open_pair();
    client.close("bye").expect("close");
    host.handle_input(Input::Bytes(&next_transmit(&mut client)), 0).expect("close frame");
    assert_eq!(drain(&mut host).1, vec![Event::Closed { reason: "bye".into() }]);
}

#[test]
fn plaintext_after_handshake_is_refused() {
    let (_, mut host) = open_pair();
    let plain = Frame::bare(Header::Control(Control::Close { reason: "forged".into() }));
    assert_eq!(
        host.handle_input(Input::Bytes(&plain.encode().expect("encodes")), 0),
        Err(ConnError::Channel(ChannelError::NotEncrypted("control")))
    );
}

#[test]
fn sealed_auth_or_nested_frames_are_refused() {
    let key = [9u8; 64];
    let mut sealer = Sealer::new(&key);
    let nested = sealer.seal(&Frame::new(Header::Encrypted { ctr: 0 }, vec![0; 20])).expect("seals");
    assert!(matches!(Opener::new(&key).open(&nested), Err(ChannelError::Inner(_))));
    // Relay routing frames belong outside the channel; inside it they are an attack.
    let mut opener = Opener::new(&key);
    let mut sealer = Sealer::new(&key);
    let relay = Frame::bare(Header::Relay(tether_protocol::frame::RelayMsg::Registered));
    assert!(matches!(opener.open(&sealer.seal(&relay).expect("seals")), Err(ChannelError::Inner(_))));
}

#[test]
fn a_ping_times_the_round_trip_and_only_the_latest_pong_counts() {
    let (mut client, mut host) = open_pair();
    assert_eq!(client.round_trip_ms(), None);
    assert_eq!(client.path_summary(), "via relay");
    client.ping(1_000).expect("ping");
    let first = next_transmit(&mut client);
    client.ping(1_010).expect("ping again");
    let second = next_transmit(&mut client);
    host.handle_input(Input::Bytes(&first), 1_020).expect("host takes ping");
    let first_pong = next_transmit(&mut host);
    host.handle_input(Input::Bytes(&second), 1_020).expect("host takes ping");
    let second_pong = next_transmit(&mut host);

    // The first pong answers an older ping: timing it against the latest would read too short.
    client.handle_input(Input::Bytes(&first_pong), 1_032).expect("pong");
    assert!(!drain(&mut client).1.iter().any(|e| matches!(e, Event::RoundTrip { .. })));
    client.handle_input(Input::Bytes(&second_pong), 1_035).expect("pong");
    assert!(drain(&mut client).1.contains(&Event::RoundTrip { ms: 25 }));
    assert_eq!(client.round_trip_ms(), Some(25));
    assert_eq!(client.path_summary(), "via relay · round trip 25 ms");
}

#[test]
fn a_ping_before_the_handshake_is_refused_without_harm() {
    let mut client = tether_protocol::Connection::client(HOST_ID, "invite", SECRET, entropy(1), 0);
    assert!(client.ping(5).is_err());
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(2), 0);
    let (_, _, error) = pump(&mut client, &mut host);
    assert_eq!(error, None, "the handshake still completes");
    assert!(client.is_open());
}

#[test]
fn keepalive_pings_and_a_silent_peer_is_detected() {
    let (mut client, mut host) = open_pair();
    assert_eq!(client.poll_timeout(), Some(KEEPALIVE_INTERVAL_MS));
    client.handle_timeout(KEEPALIVE_INTERVAL_MS).expect("ping");
    let ping = next_transmit(&mut client);
    host.handle_input(Input::Bytes(&ping), KEEPALIVE_INTERVAL_MS).expect("host takes ping");
    let pong = next_transmit(&mut host);
    client.handle_input(Input::Bytes(&pong), KEEPALIVE_INTERVAL_MS + 5).expect("pong");
    // The pong counted as traffic: not idle 60 s after the handshake, but 60 s after the pong.
    client.handle_timeout(IDLE_TIMEOUT_MS).expect("still alive");
    drain(&mut client);
    assert_eq!(
        client.handle_timeout(KEEPALIVE_INTERVAL_MS + 5 + IDLE_TIMEOUT_MS),
        Err(ConnError::Idle { silent_ms: IDLE_TIMEOUT_MS })
    );
}

#[test]
fn sealing_many_at_once_is_sealing_each_in_turn() {
    use tether_protocol::channel::{Opener, Sealer};
    let key = [0x31; 64];
    let inners: Vec<Vec<u8>> = [0usize, 1, 15, 16, 17, 1000, 65_536].iter().map(|&n| vec![n as u8; n]).collect();
    let mut one_by_one = Sealer::new(&key);
    let expected: Vec<_> = inners.iter().map(|inner| one_by_one.seal_bytes(inner).expect("seals")).collect();
    let mut together = Sealer::new(&key);
    assert_eq!(together.seal_many(&inners).expect("seals"), expected);
    assert_eq!(together.next_counter(), one_by_one.next_counter());
    let mut opener = Opener::new(&key);
    for (frame, inner) in expected.iter().zip(&inners) {
        assert_eq!(&opener.open_bytes(frame).expect("opens"), inner);
    }
    // One too large: nothing sealed, no counter used.
    let too_big = vec![vec![0u8; 3], vec![0u8; tether_protocol::channel::MAX_SEALED_INNER_BYTES + 1]];
    assert!(together.seal_many(&too_big).is_err());
    assert_eq!(together.next_counter(), one_by_one.next_counter());
}

#[test]
fn opening_many_at_once_is_opening_each_in_turn_and_stops_at_the_first_bad_one() {
    use tether_protocol::channel::{Opener, Sealer};
    use tether_protocol::error::ChannelError;
    use tether_protocol::frame::{Frame, Header};
    let key = [0x47; 64];
    let mut sealer = Sealer::new(&key);
    let inners: Vec<Frame> =
        (0..6u64).map(|i| Frame::new(Header::Data { stream: 1, seq: i }, vec![i as u8; 100])).collect();
    let sealed: Vec<Frame> = inners.iter().map(|f| sealer.seal(f).expect("seals")).collect();
    let mut opener = Opener::new(&key);
    assert_eq!(opener.open_many(&sealed[..4]), (inners[..4].to_vec(), None));
    assert_eq!(opener.next_counter(), 4);
    // A forged frame: those before it open, it is refused, nothing after it is taken.
    let mut forged = sealed[4..].to_vec();
    if let Some(byte) = forged[0].payload.last_mut() {
        *byte ^= 1;
    }
    let (opened, error) = opener.open_many(&forged);
    assert!(opened.is_empty());
    assert_eq!(error, Some(ChannelError::Forged { ctr: 4 }));
    assert_eq!(opener.next_counter(), 4);
    // A replay after good ones: the good ones open, the replay is named.
    let mut fresh = Opener::new(&key);
    let replayed = vec![sealed[0].clone(), sealed[1].clone(), sealed[0].clone()];
    let (opened, error) = fresh.open_many(&replayed);
    assert_eq!(opened, inners[..2].to_vec());
    assert_eq!(error, Some(ChannelError::Replayed { expected: 2, got: 0 }));
}
