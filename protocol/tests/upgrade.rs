//! The client's side of the WebRTC upgrade (`upgrade::Upgrade`) over a real connection pair:
//! when it tries, what it tells the host, what it asks of the shell's peer connection, and how
//! it backs off. The peer connection itself is the shell's (webrtc-rs, the browser's); here its
//! reports (`DirectEvent`) are made up.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::*;

use tether_protocol::connection::{Connection, Event, Input};
use tether_protocol::signal::{IceServer, Route, Signal};
use tether_protocol::upgrade::{
    Action, DirectEvent, Upgrade, FIRST_RETRY_MS, MAX_RETRY_MS, NEGOTIATION_TIMEOUT_MS, STABLE_MS,
};

fn turn() -> Vec<IceServer> {
    vec![IceServer { urls: vec!["turn:t:3478".into()], username: "9:h".into(), credential: "c".into() }]
}

/// What `from` sent reaches `to`; the signals among `to`'s events.
fn signals(from: &mut Connection, to: &mut Connection) -> Vec<Signal> {
    let (bytes, _) = drain(from);
    to.handle_input(Input::Bytes(&bytes), 0).expect("delivered");
    drain(to)
        .1
        .into_iter()
        .filter_map(|event| match event {
            Event::Webrtc { signal } => Some(Signal::parse(signal).expect("a readable signal")),
            _ => None,
        })
        .collect()
}

/// The host invites; the client's upgrade hears it.
fn invited(client: &mut Connection, host: &mut Connection, upgrade: &mut Upgrade, now: u64) {
    host.send_frame(&Signal::Invite { ice_servers: turn() }.frame()).expect("invite");
    let (bytes, _) = drain(host);
    client.handle_input(Input::Bytes(&bytes), now).expect("delivered");
    for event in drain(client).1 {
        if let Event::Webrtc { signal } = event {
            assert_eq!(upgrade.on_signal(client, signal, now).expect("taken"), None);
        }
    }
}

fn offer_at(upgrade: &mut Upgrade, client: &mut Connection, now: u64) -> u32 {
    match upgrade.handle_timeout(client, now).expect("timers") {
        Some(Action::Offer { attempt, ice_servers }) => {
            assert_eq!(ice_servers, turn(), "the invite's servers");
            attempt
        }
        other => panic!("expected an offer at {now} ms, got {other:?}"),
    }
}

#[test]
fn an_attempt_goes_offer_answer_open_and_back_to_the_relay_when_it_closes() {
    let (mut client, mut host) = open_pair();
    let mut upgrade = Upgrade::default();
    assert_eq!(upgrade.poll_timeout(), None, "nothing is tried before the host invites");
    assert_eq!(upgrade.handle_timeout(&mut client, 1_000_000).expect("timers"), None);

    invited(&mut client, &mut host, &mut upgrade, 500);
    assert_eq!(upgrade.poll_timeout(), Some(500), "tried at once");
    let attempt = offer_at(&mut upgrade, &mut client, 500);

    let description = DirectEvent::Description { attempt, sdp: "v=0 offer".into() };
    assert_eq!(upgrade.on_direct(&mut client, description, 510).expect("taken"), None);
    assert_eq!(signals(&mut client, &mut host), [Signal::Offer { attempt, sdp: "v=0 offer".into() }]);

    host.send_frame(&Signal::Answer { attempt, sdp: "v=0 answer".into() }.frame()).expect("answer");
    let (bytes, _) = drain(&mut host);
    client.handle_input(Input::Bytes(&bytes), 520).expect("delivered");
    let Some(Event::Webrtc { signal }) = drain(&mut client).1.pop() else { panic!("the answer") };
    let answered = upgrade.on_signal(&mut client, signal, 520).expect("taken");
    assert_eq!(answered, Some(Action::Answered { attempt, sdp: "v=0 answer".into() }));

    upgrade.on_direct(&mut client, DirectEvent::Open { attempt, route: Route::Turn }, 530).expect("taken");
    assert!(client.is_direct());
    assert!(client.path_summary().starts_with("via TURN"));
    assert_eq!(drain_paths(&mut client).1.len(), 1, "the new path is timed at once (a ping on it)");

    let closed = DirectEvent::Closed { attempt, why: "ICE failed".into() };
    assert_eq!(upgrade.on_direct(&mut client, closed, 600).expect("taken"), Some(Action::Close { attempt }));
    assert!(!client.is_direct());
    assert_eq!(signals(&mut client, &mut host), [Signal::Hangup { attempt, reason: "ICE failed".into() }]);
    assert_eq!(upgrade.poll_timeout(), Some(600 + FIRST_RETRY_MS), "tried again later");
}

#[test]
fn failures_back_off_doubling_to_a_cap_and_a_stable_channel_resets_it() {
    let (mut client, mut host) = open_pair();
    let mut upgrade = Upgrade::default();
    invited(&mut client, &mut host, &mut upgrade, 0);
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..7 {
        let attempt = offer_at(&mut upgrade, &mut client, now);
        let closed = DirectEvent::Closed { attempt, why: "no path".into() };
        upgrade.on_direct(&mut client, closed, now).expect("taken");
        let next = upgrade.poll_timeout().expect("a retry is due");
        waits.push(next - now);
        now = next;
    }
    assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, MAX_RETRY_MS, MAX_RETRY_MS]);
    let attempt = offer_at(&mut upgrade, &mut client, now);
    upgrade.on_direct(&mut client, DirectEvent::Open { attempt, route: Route::Direct }, now).expect("taken");
    let lost = upgrade.on_direct_lost(&mut client, 3_500, now + STABLE_MS).expect("taken");
    assert_eq!(lost, Some(Action::Close { attempt }));
    assert_eq!(upgrade.poll_timeout(), Some(now + STABLE_MS + FIRST_RETRY_MS), "a channel that lasted starts over");
}

#[test]
fn a_negotiation_that_hangs_is_given_up_and_its_late_news_ignored() {
    let (mut client, mut host) = open_pair();
    let mut upgrade = Upgrade::default();
    invited(&mut client, &mut host, &mut upgrade, 0);
    let attempt = offer_at(&mut upgrade, &mut client, 0);
    assert_eq!(upgrade.poll_timeout(), Some(NEGOTIATION_TIMEOUT_MS));
    let given_up = upgrade.handle_timeout(&mut client, NEGOTIATION_TIMEOUT_MS).expect("timers");
    assert_eq!(given_up, Some(Action::Close { attempt }));
    assert!(matches!(&signals(&mut client, &mut host)[..], [Signal::Hangup { attempt: a, .. }] if *a == attempt));

    // The old attempt's channel opens after all: it is closed, and the connection stays put.
    let late = DirectEvent::Open { attempt, route: Route::Direct };
    assert_eq!(
        upgrade.on_direct(&mut client, late, NEGOTIATION_TIMEOUT_MS + 1).expect("taken"),
        Some(Action::Close { attempt })
    );
    assert!(!client.is_direct());
    let late_answer = Signal::Answer { attempt, sdp: "v=0".into() }.frame();
    host.send_frame(&late_answer).expect("answer");
    let (bytes, _) = drain(&mut host);
    client.handle_input(Input::Bytes(&bytes), 0).expect("delivered");
    let Some(Event::Webrtc { signal }) = drain(&mut client).1.pop() else { panic!("the answer") };
    assert_eq!(upgrade.on_signal(&mut client, signal, NEGOTIATION_TIMEOUT_MS + 2).expect("taken"), None);
    assert_eq!(offer_at(&mut upgrade, &mut client, NEGOTIATION_TIMEOUT_MS + FIRST_RETRY_MS), attempt + 1);
}

#[test]
fn a_host_hangup_ends_the_attempt_and_a_signal_it_cannot_read_changes_nothing() {
    let (mut client, mut host) = open_pair();
    let mut upgrade = Upgrade::default();
    invited(&mut client, &mut host, &mut upgrade, 0);
    let attempt = offer_at(&mut upgrade, &mut client, 0);
    upgrade.on_direct(&mut client, DirectEvent::Open { attempt, route: Route::Direct }, 10).expect("taken");
    let unreadable = serde_json::json!({"kind": "teleport"});
    assert_eq!(upgrade.on_signal(&mut client, unreadable, 20).expect("taken"), None);
    assert!(client.is_direct());
    let hangup = serde_json::to_value(Signal::Hangup { attempt, reason: "off".into() }).expect("json");
    assert_eq!(upgrade.on_signal(&mut client, hangup, 30).expect("taken"), Some(Action::Close { attempt }));
    assert!(!client.is_direct());
}
