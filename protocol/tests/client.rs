//! The client the page and the command line share (`client::Client`), against a real host
//! `Connection`: calls and their answers, streams under stable handles, resume after a lost
//! link (and the attach → logs fallback), redial policies, and credit for unwanted bytes.

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::*;

use tether_protocol::api::{ErrorCode, Request, Response, SessionInfo};
use tether_protocol::channel::{OpenJob, Opened, SealJob, Sealed};
use tether_protocol::client::{Client, ClientEvent, Output, Path, RedialPolicy, Status, StreamEvent};
use tether_protocol::cmd::answer_frame;
use tether_protocol::connection::{Event, Input};

const SESSION: &str = "s1";

/// A client wired to a test host over a pretend relay.
struct Wire {
    client: Client,
    host: TestHost,
    /// Events the client reported, in order (taken by the test).
    events: Vec<ClientEvent>,
    /// Requests the host received: (id, request).
    requests: Vec<(u64, Request)>,
    /// Stream bytes the host received: (stream, seq, bytes).
    typed: Vec<(u32, u64, Vec<u8>)>,
    now: u64,
    seed: u8,
    /// Jobs for the shell's AES (`use_outside_aes`) are kept here instead of answered at once.
    hold_jobs: bool,
    held: Vec<(u64, OpenJob)>,
    held_seals: Vec<(u64, SealJob)>,
    /// The host heard the client close.
    closed: bool,
}

/// What a shell's own AES makes of a job: here the plain block cipher, as WebCrypto's AES-CTR
/// and AES-CBC would.
fn open_job(job: &OpenJob) -> Opened {
    let (mac_key, ctr_key) = job.keys();
    let plain = ctr_64(ctr_key, job.counter_block(), job.ciphertext());
    let mac = cbc_mac(mac_key, &job.mac_input(&plain));
    Opened::Done { plain, mac }
}

/// The same for sealing.
fn seal_job(job: &SealJob) -> Sealed {
    let (mac_key, ctr_key) = job.keys();
    let tag = cbc_mac(mac_key, &job.mac_input());
    Sealed::Done { tag, ciphertext: ctr_64(ctr_key, SealJob::counter_block(&tag), job.plaintext()) }
}

impl Wire {
    fn new(policy: RedialPolicy, secret: &[u8]) -> Wire {
        let client = Client::new(HOST_ID, "invite", secret, policy);
        let host = TestHost::new(vec![credential("invite", SECRET)], entropy(2), 0);
        let mut wire = Wire {
            client,
            host,
            events: Vec::new(),
            requests: Vec::new(),
            typed: Vec::new(),
            now: 0,
            seed: 10,
            hold_jobs: false,
            held: Vec::new(),
            held_seals: Vec::new(),
            closed: false,
        };
        wire.settle();
        wire
    }

    fn connected(policy: RedialPolicy) -> Wire {
        let mut wire = Wire::new(policy, SECRET);
        assert!(wire.take_events().contains(&ClientEvent::Dial));
        wire.dial();
        assert!(wire.take_events().contains(&ClientEvent::Connected { generation: 1 }));
        wire
    }

    /// The shell opened a WebSocket: a fresh host connection behind the relay.
    fn dial(&mut self) {
        self.seed += 1;
        self.host = TestHost::new(vec![credential("invite", SECRET)], entropy(self.seed), self.now);
        self.client.connect(entropy(self.seed + 100), self.now);
        self.settle();
    }

    /// Move bytes both ways until both ends are quiet.
    fn settle(&mut self) {
        loop {
            let mut to_host = Vec::new();
            while let Some(out) = self.client.poll_output() {
                match out {
                    Output::Transmit { path: Path::Relay, bytes } => to_host.extend(bytes),
                    Output::Transmit { path: Path::Direct, .. } => panic!("no data channel here"),
                    Output::Peer(_) => {}
                    Output::Event(event) => self.events.push(event),
                }
            }
            let mut answered = false;
            while let Some((link, job)) = self.client.poll_open() {
                if self.hold_jobs {
                    self.held.push((link, job));
                } else {
                    self.client.opened(link, job.ctr(), open_job(&job), self.now);
                    answered = true;
                }
            }
            while let Some((link, job)) = self.client.poll_seal() {
                if self.hold_jobs {
                    self.held_seals.push((link, job));
                } else {
                    self.client.sealed(link, job.ctr(), seal_job(&job), self.now);
                    answered = true;
                }
            }
            if answered {
                continue;
            }
            if !to_host.is_empty() && self.host.handle_input(Input::Bytes(&to_host), self.now).is_err() {
                let (bytes, _) = drain(&mut self.host.conn);
                self.client.handle_relay(&bytes, self.now);
                continue;
            }
            let (to_client, host_events) = match self.host.drain_answering() {
                Ok(drained) => drained,
                // The host refused the handshake: its `auth/failed` goes to the client.
                Err(_) => (drain(&mut self.host.conn).0, Vec::new()),
            };
            for event in host_events {
                match event {
                    Event::Cmd { id, body, .. } => {
                        self.requests.push((id, serde_json::from_value(body).expect("a request")));
                    }
                    Event::Data { stream, seq, bytes } => self.typed.push((stream, seq, bytes)),
                    Event::Closed { .. } => self.closed = true,
                    _ => {}
                }
            }
            if to_host.is_empty() && to_client.is_empty() {
                return;
            }
            if !to_client.is_empty() {
                self.client.handle_relay(&to_client, self.now);
            }
        }
    }

    fn take_events(&mut self) -> Vec<ClientEvent> {
        self.settle();
        std::mem::take(&mut self.events)
    }

    fn answer(&mut self, id: u64, response: Response) {
        self.host.send_frame(&answer_frame(id, &(response, Vec::new()))).expect("sends");
        self.settle();
    }

    fn data(&mut self, stream: u32, seq: u64, bytes: &[u8]) {
        assert_eq!(self.host.send_data(stream, seq, bytes).expect("sends"), bytes.len());
        self.settle();
    }

    fn last_request(&mut self) -> (u64, Request) {
        self.settle();
        self.requests.last().cloned().expect("a request came")
    }

    /// The relay dropped the WebSocket; returns the wait before the redial.
    fn cut(&mut self) -> Option<u64> {
        self.client.transport_closed(Some("network gone".into()), self.now);
        self.take_events().into_iter().find_map(|event| match event {
            ClientEvent::Disconnected { redial_in_ms, .. } => Some(redial_in_ms),
            _ => None,
        })?
    }

    /// Wait out the back-off: `Dial` comes; dial.
    fn redial(&mut self) {
        self.now = self.client.poll_timeout().expect("a redial is scheduled");
        self.client.handle_timeout(self.now);
        self.settle();
        assert!(self.take_events().contains(&ClientEvent::Dial));
        self.dial();
    }
}

fn session_info() -> SessionInfo {
    serde_json::from_value(serde_json::json!({
        "id": SESSION, "title": "t", "command": ["sh"], "cwd": "/", "status": "running",
        "created_at": 0, "output_bytes": 10, "waiting_for_input": false
    }))
    .expect("a session")
}

fn streaming(stream: u32, from: u64) -> Response {
    Response::Streaming { session: session_info(), stream, from }
}

fn attach() -> Request {
    Request::Attach { session: SESSION.into(), from: None, cols: Some(80), rows: Some(24) }
}

fn stream_events(events: &[ClientEvent], want: u32) -> Vec<StreamEvent> {
    events
        .iter()
        .filter_map(|event| match event {
            ClientEvent::Stream { handle, event } if *handle == want => Some(event.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_gets_its_answer_and_a_refusal_keeps_its_code() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let call = wire.client.call(&Request::HostInfo, Vec::new(), 0).expect("connected");
    let (id, request) = wire.last_request();
    assert_eq!((id, request), (call, Request::HostInfo));
    let info = Response::HostInfo {
        host_id: HOST_ID.into(),
        name: "box".into(),
        version: "1".into(),
        remember: false,
        device: None,
        read_only: false,
    };
    wire.answer(id, info.clone());
    assert_eq!(wire.take_events(), vec![ClientEvent::Answer { call, answer: Ok((info, Vec::new())) }]);

    let call = wire.client.call(&Request::Get { id: Some("nope".into()) }, Vec::new(), 0).expect("connected");
    wire.answer(call, Response::Error { code: ErrorCode::UnknownSession, message: "no such session".into() });
    match wire.take_events().as_slice() {
        [ClientEvent::Answer { answer: Err(refused), .. }] => {
            assert_eq!(refused.code, Some(ErrorCode::UnknownSession));
            assert_eq!(refused.message, "no such session");
        }
        other => panic!("{other:?}"),
    }

    // A request sent without waiting gets no answer event.
    wire.client.send(&Request::Resize { session: SESSION.into(), cols: 1, rows: 1 }, Vec::new(), 0).expect("sent");
    let (id, _) = wire.last_request();
    wire.answer(id, Response::Ok);
    assert_eq!(wire.take_events(), vec![]);
}

#[test]
fn an_attach_resumes_from_its_next_byte_under_the_same_handle_after_a_lost_link() {
    let mut wire = Wire::connected(RedialPolicy::CLI);
    let handle = wire.client.open(&attach(), 0).expect("connected");
    wire.answer(handle as u64, streaming(handle, 0));
    wire.data(handle, 0, b"hello ");
    let events = wire.take_events();
    assert_eq!(stream_events(&events, handle), vec![StreamEvent::Data { seq: 0, bytes: b"hello ".to_vec() }]);
    wire.client.consumed(handle, 6, 0);

    // The stream waits for the next connection.
    assert_eq!(wire.cut(), Some(RedialPolicy::CLI.first_ms));
    assert!(matches!(wire.client.status(), Status::Waiting { .. }));
    wire.redial();
    let events = wire.take_events();
    assert!(events.contains(&ClientEvent::Connected { generation: 2 }), "{events:?}");
    let (id, request) = wire.last_request();
    assert_eq!(request, Request::Attach { session: SESSION.into(), from: Some(6), cols: Some(80), rows: Some(24) });
    assert_ne!(id, handle as u64, "a new request id on the new connection");
    wire.answer(id, streaming(id as u32, 6));
    wire.data(id as u32, 6, b"world");
    let events = stream_events(&wire.take_events(), handle);
    assert_eq!(
        events,
        vec![
            StreamEvent::Resumed { response: streaming(id as u32, 6) },
            StreamEvent::Data { seq: 6, bytes: b"world".to_vec() }
        ]
    );
    // Credit under the handle reaches the new wire stream, and a detach names it.
    wire.client.consumed(handle, 5, 0);
    wire.client.detach(handle, 0);
    wire.settle();
    assert_eq!(wire.last_request().1, Request::Detach { stream: id as u32 });
    assert_eq!(wire.client.open_streams(), 0);
}

#[test]
fn a_call_in_flight_fails_when_the_link_is_lost() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let call = wire.client.call(&Request::HostInfo, Vec::new(), 0).expect("connected");
    wire.client.transport_closed(None, 0);
    let events = wire.take_events();
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::Answer { call: c, answer: Err(r) }
            if *c == call && r.message == "connection lost: the relay closed the connection")),
        "{events:?}"
    );
    // Its answer, had it come late, would find no caller: nothing more is said.
    assert_eq!(events.iter().filter(|e| matches!(e, ClientEvent::Answer { .. })).count(), 1);
}

#[test]
fn an_attach_refused_after_a_reconnect_falls_back_to_the_log_from_the_next_byte() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let handle = wire.client.open(&attach(), 0).expect("connected");
    wire.answer(handle as u64, streaming(handle, 0));
    wire.data(handle, 0, b"0123456789");
    let before = stream_events(&wire.take_events(), handle);
    assert_eq!(before, vec![StreamEvent::Data { seq: 0, bytes: b"0123456789".to_vec() }]);
    wire.cut();
    wire.redial();
    let (id, _) = wire.last_request();
    wire.answer(id, Response::Error { code: ErrorCode::NotRunning, message: "the session ended".into() });
    let (logs_id, request) = wire.last_request();
    assert_eq!(request, Request::Logs { session: SESSION.into(), follow: true, from: Some(10) });
    wire.answer(logs_id, streaming(logs_id as u32, 10));
    wire.data(logs_id as u32, 10, b"bye");
    wire.host
        .send_frame(&tether_protocol::frame::Frame::bare(tether_protocol::frame::Header::Control(
            tether_protocol::frame::Control::Eof { stream: logs_id as u32, end: 13 },
        )))
        .expect("sends");
    wire.settle();
    let events = stream_events(&wire.take_events(), handle);
    assert_eq!(
        events,
        vec![
            StreamEvent::Resumed { response: streaming(logs_id as u32, 10) },
            StreamEvent::Data { seq: 10, bytes: b"bye".to_vec() },
            StreamEvent::Eof,
        ]
    );
}

#[test]
fn streams_that_cannot_resume_end_with_the_link() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let watch = wire.client.open(&Request::WatchSessions { limit: None }, 0).expect("connected");
    wire.answer(watch as u64, Response::Watching { stream: watch });
    wire.client.transport_closed(Some("gone".into()), 0);
    let events = wire.take_events();
    assert_eq!(stream_events(&events, watch), vec![StreamEvent::Lost { why: "gone".into() }]);
    assert!(events.contains(&ClientEvent::Disconnected { why: "gone".into(), redial_in_ms: Some(500) }));
}

#[test]
fn the_command_line_redials_only_while_a_stream_can_resume() {
    let mut wire = Wire::connected(RedialPolicy::CLI);
    assert_eq!(wire.cut(), None);
    assert!(matches!(wire.client.status(), Status::Over(_)));
    assert_eq!(wire.client.poll_timeout(), None);
}

#[test]
fn redials_back_off_and_start_over_once_connected() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    assert_eq!(wire.cut(), Some(500));
    // The relay is down: each failed dial waits twice as long, up to the cap.
    let mut waits = Vec::new();
    for _ in 0..6 {
        wire.now = wire.client.poll_timeout().expect("scheduled");
        wire.client.handle_timeout(wire.now);
        assert!(wire.take_events().contains(&ClientEvent::Dial));
        waits.push(wire.cut().expect("redials"));
    }
    assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
    wire.redial();
    assert!(wire.take_events().contains(&ClientEvent::Connected { generation: 2 }));
    assert_eq!(wire.cut(), Some(500));
}

#[test]
fn a_wrong_secret_is_final() {
    let mut wire = Wire::new(RedialPolicy::PAGE, b"wrong secret");
    wire.take_events();
    wire.dial();
    let events = wire.take_events();
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::Disconnected { why, redial_in_ms: None } if why.contains("authentication failed"))),
        "{events:?}"
    );
    assert!(matches!(wire.client.status(), Status::Over(_)));
    // A close from the relay afterwards changes nothing.
    wire.client.transport_closed(None, 0);
    assert!(wire.take_events().is_empty());
}

#[test]
fn a_revoked_credential_is_not_redialled() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    wire.client.transport_closed(Some("access revoked by the host".into()), 0);
    assert!(wire
        .take_events()
        .contains(&ClientEvent::Disconnected { why: "access revoked by the host".into(), redial_in_ms: None }));
}

#[test]
fn bytes_for_a_stream_nobody_holds_are_credited_back() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let handle = wire.client.open(&attach(), 0).expect("connected");
    wire.answer(handle as u64, streaming(handle, 0));
    wire.client.detach(handle, 0);
    wire.settle();
    // More than a window's worth after the detach: it all gets through, so credit came back.
    let chunk = vec![b'x'; 64 * 1024];
    let window = tether_protocol::stream::INITIAL_WINDOW_BYTES;
    let mut seq = 0u64;
    while seq < 3 * window {
        wire.data(handle, seq, &chunk);
        seq += chunk.len() as u64;
    }
    assert!(stream_events(&wire.take_events(), handle).is_empty());
}

#[test]
fn not_connected_is_said_before_anything_goes() {
    let mut wire = Wire::new(RedialPolicy::PAGE, SECRET);
    assert!(wire.client.call(&Request::HostInfo, Vec::new(), 0).is_err());
    assert!(wire.client.open(&attach(), 0).is_err());
    assert_eq!(wire.client.open_streams(), 0);
}

#[test]
fn keystrokes_ride_the_attach_stream_and_wait_out_a_lost_link() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let handle = wire.client.open(&attach(), 0).expect("connected");
    // Typed before the answer: they follow the attach request on its stream.
    wire.client.write_input(handle, b"ls", 0).expect("queued");
    wire.answer(handle as u64, streaming(handle, 0));
    wire.client.write_input(handle, b"\r", 0).expect("queued");
    wire.settle();
    assert_eq!(wire.typed, vec![(handle, 0, b"ls".to_vec()), (handle, 2, b"\r".to_vec())]);
    // No answer for a keystroke: the host sent nothing back.
    assert_eq!(stream_events(&wire.take_events(), handle), vec![]);

    // Typed while the link is down: sent on the resumed stream, from its first byte.
    wire.cut();
    wire.client.write_input(handle, b"echo back", 0).expect("queued while away");
    assert_eq!(wire.client.queued_input(handle), 9);
    wire.typed.clear();
    wire.redial();
    let (id, request) = wire.last_request();
    // (Nothing was shown yet: it asks from wherever the host's replay starts.)
    assert!(matches!(request, Request::Attach { from: None, .. }), "{request:?}");
    assert_eq!(wire.typed, vec![(id as u32, 0, b"echo back".to_vec())]);
    assert_eq!(wire.client.queued_input(handle), 0);
}

#[test]
fn a_paste_bigger_than_the_window_goes_as_credit_comes_back() {
    let mut wire = Wire::connected(RedialPolicy::PAGE);
    let handle = wire.client.open(&attach(), 0).expect("connected");
    wire.answer(handle as u64, streaming(handle, 0));
    let window = tether_protocol::stream::INITIAL_WINDOW_BYTES as usize;
    let paste: Vec<u8> = (0..window * 5 / 2).map(|i| (i % 251) as u8).collect();
    wire.client.write_input(handle, &paste, 0).expect("queued");
    wire.settle();
    let sent = |wire: &Wire| wire.typed.iter().map(|(_, _, b)| b.len()).sum::<usize>();
    assert_eq!(sent(&wire), window, "one window's worth, then it waits");
    assert_eq!(wire.client.queued_input(handle), paste.len() - window);
    // The program takes it all: credit comes back, and the rest goes, in order.
    let mut credited = 0;
    while sent(&wire) < paste.len() {
        let got = sent(&wire) as u64;
        wire.host.consumed(handle, got - credited).expect("credit");
        credited = got;
        wire.settle();
        assert!(sent(&wire) as u64 > got, "credit let more go");
    }
    let all: Vec<u8> = wire.typed.iter().flat_map(|(_, _, b)| b.clone()).collect();
    assert_eq!(all, paste);
    // Too much waiting at once is refused, not dropped unsaid.
    let huge = vec![0u8; tether_protocol::client::streams::MAX_QUEUED_INPUT_BYTES + 1];
    assert!(wire.client.write_input(handle, &huge, 0).is_err());
}

#[test]
fn busy_is_asked_again_with_jitter_whatever_the_policy_until_it_has_lasted_a_minute() {
    let mut wire = Wire::new(RedialPolicy::CLI, SECRET);
    assert!(wire.take_events().contains(&ClientEvent::Dial));
    let busy = "too many connections from your address waiting to authenticate; try again shortly";
    let mut waits = Vec::new();
    while wire.now < 70_000 {
        // The relay refuses the dial before any handshake (the command line has no streams).
        wire.client.connect(entropy(7), wire.now);
        wire.client.transport_closed(Some(busy.into()), wire.now);
        let wait = wire.take_events().into_iter().find_map(|event| match event {
            ClientEvent::Disconnected { redial_in_ms, .. } => Some(redial_in_ms),
            _ => None,
        });
        match wait {
            Some(Some(wait)) => {
                waits.push(wait);
                wire.now = wire.client.poll_timeout().expect("a redial is scheduled");
                wire.client.handle_timeout(wire.now);
                assert!(wire.take_events().contains(&ClientEvent::Dial));
            }
            _ => break,
        }
    }
    assert!(waits.len() > 20, "kept asking: {waits:?}");
    assert!(waits.iter().all(|&w| (50..=2_500).contains(&w)), "short, jittered waits: {waits:?}");
    assert!(waits.windows(2).any(|w| w[0] != w[1] && w[0] >= 500), "not all alike: {waits:?}");
    assert!((60_000..=63_000).contains(&wire.now), "gave up after a minute of busy, at {}", wire.now);
    assert!(matches!(wire.client.status(), Status::Over(_)));

    // Once in, a later loss is back under the policy (none for the command line without
    // streams), and a new burst gets its own minute.
    let mut wire = Wire::new(RedialPolicy::CLI, SECRET);
    wire.take_events();
    wire.client.transport_closed(Some(busy.into()), 0);
    wire.now = wire.client.poll_timeout().expect("busy is asked again");
    wire.client.handle_timeout(wire.now);
    wire.take_events();
    wire.dial();
    assert!(wire.take_events().contains(&ClientEvent::Connected { generation: 1 }));
    assert_eq!(wire.cut(), None);
}

/// A connected wire whose client opens frames of `min_bytes` and more with the shell's AES.
fn opening_outside(min_bytes: usize) -> (Wire, u32) {
    let mut wire = Wire::new(RedialPolicy::PAGE, SECRET);
    wire.client.use_outside_aes(min_bytes);
    assert!(wire.take_events().contains(&ClientEvent::Dial));
    wire.dial();
    assert!(wire.take_events().contains(&ClientEvent::Connected { generation: 1 }));
    let handle = wire.client.open(&attach(), 0).expect("connected");
    wire.answer(handle as u64, streaming(handle, 0));
    wire.take_events();
    (wire, handle)
}

/// The host sends these chunks in a row; the client gets them all in one message.
fn send_chunks(wire: &mut Wire, handle: u32, chunks: &[Vec<u8>]) {
    let mut seq = 0;
    for chunk in chunks {
        assert_eq!(wire.host.send_data(handle, seq, chunk).expect("sends"), chunk.len());
        seq += chunk.len() as u64;
    }
    let (bytes, _) = drain(&mut wire.host.conn);
    wire.client.handle_relay(&bytes, wire.now);
}

fn stream_bytes(events: &[ClientEvent], handle: u32) -> Vec<u8> {
    stream_events(events, handle)
        .into_iter()
        .flat_map(|event| match event {
            StreamEvent::Data { bytes, .. } => bytes,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn frames_opened_by_the_shells_aes_come_out_in_order_whatever_order_they_come_back_in() {
    let (mut wire, handle) = opening_outside(1024);
    wire.hold_jobs = true;
    let chunks: Vec<Vec<u8>> =
        [10usize, 5000, 100, 3000, 7, 20_000].iter().enumerate().map(|(i, &n)| vec![i as u8 + 1; n]).collect();
    send_chunks(&mut wire, handle, &chunks);
    wire.settle();
    // The long ones went out; nothing came out ahead of the first of them, not even the short
    // one behind it.
    assert_eq!(wire.held.len(), 3, "5000, 3000 and 20000 bytes go to the shell's AES");
    let events = std::mem::take(&mut wire.events);
    assert_eq!(stream_bytes(&events, handle), chunks[0]);
    // Back last first: each comes out only once those before it are out.
    let held = std::mem::take(&mut wire.held);
    let mut seen = Vec::new();
    for (link, job) in held.into_iter().rev() {
        wire.client.opened(link, job.ctr(), open_job(&job), wire.now);
        wire.settle();
        seen.push(stream_bytes(&std::mem::take(&mut wire.events), handle).len());
    }
    assert_eq!(seen, vec![0, 0, 5000 + 100 + 3000 + 7 + 20_000]);
    // A short frame alone is opened at once.
    wire.hold_jobs = false;
    wire.data(handle, 28_117, b"echo");
    assert_eq!(stream_bytes(&wire.take_events(), handle), b"echo");
}

#[test]
fn a_mac_that_is_not_the_tag_fails_the_link_and_nothing_of_the_frame_is_used() {
    let (mut wire, handle) = opening_outside(64);
    wire.hold_jobs = true;
    send_chunks(&mut wire, handle, &[vec![b'x'; 500]]);
    wire.settle();
    let (link, job) = wire.held.pop().expect("a job");
    let Opened::Done { plain, mut mac } = open_job(&job) else { panic!("opens") };
    mac[15] ^= 0x40;
    wire.client.opened(link, job.ctr(), Opened::Done { plain, mac }, wire.now);
    let events = wire.take_events();
    assert!(stream_bytes(&events, handle).is_empty(), "{events:?}");
    let why = events.iter().find_map(|event| match event {
        ClientEvent::Disconnected { why, .. } => Some(why.clone()),
        _ => None,
    });
    assert!(why.as_deref().is_some_and(|why| why.contains("failed authentication")), "{events:?}");
}

#[test]
fn a_relay_that_closes_while_frames_are_out_is_heard_once_they_are_back() {
    let (mut wire, handle) = opening_outside(64);
    wire.hold_jobs = true;
    send_chunks(&mut wire, handle, &[vec![b'y'; 4096]]);
    wire.settle();
    wire.client.transport_closed(Some("network gone".into()), wire.now);
    wire.settle();
    assert!(wire.events.is_empty(), "{:?}", wire.events);
    let (link, job) = wire.held.pop().expect("a job");
    wire.client.opened(link, job.ctr(), open_job(&job), wire.now);
    let events = wire.take_events();
    assert_eq!(stream_bytes(&events[..1], handle).len(), 4096, "{events:?}");
    assert!(
        matches!(events.last(), Some(ClientEvent::Disconnected { why, .. }) if why == "network gone"),
        "{events:?}"
    );

    // What comes back for the old link after a redial is dropped.
    wire.hold_jobs = false;
    wire.redial();
    assert!(wire.take_events().contains(&ClientEvent::Connected { generation: 2 }));
    let stale = open_job(&job);
    wire.client.opened(link, job.ctr(), stale, wire.now);
    assert!(wire.client.is_connected());
}

/// What the host got of stream `handle`, in order.
fn typed_bytes(wire: &Wire, handle: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (stream, seq, chunk) in &wire.typed {
        if *stream == handle {
            assert_eq!(*seq, bytes.len() as u64, "in order, nothing missing");
            bytes.extend_from_slice(chunk);
        }
    }
    bytes
}

#[test]
fn frames_sealed_by_the_shells_aes_reach_the_host_in_order_and_a_key_behind_one_waits_for_it() {
    let (mut wire, handle) = opening_outside(1024);
    wire.hold_jobs = true;
    let paste = vec![b'p'; 3000];
    wire.client.write_input(handle, &paste, 0).expect("connected");
    wire.settle();
    wire.client.write_input(handle, b"k", 0).expect("connected");
    wire.settle();
    assert_eq!(wire.held_seals.len(), 1, "the paste goes to the shell's AES, the key not");
    assert!(typed_bytes(&wire, handle).is_empty(), "the key waits behind the paste");
    // What a bulk sender paces on counts both, framed, until they are put out to transmit.
    assert!(wire.client.unsealed_bytes() > paste.len() + 1, "{}", wire.client.unsealed_bytes());
    let (link, job) = wire.held_seals.pop().expect("a job");
    wire.client.sealed(link, job.ctr(), seal_job(&job), 0);
    wire.settle();
    assert_eq!(typed_bytes(&wire, handle), [&paste[..], b"k"].concat());
    assert_eq!(wire.client.unsealed_bytes(), 0);

    // A failed job is sealed here; so is one still out when the client closes.
    wire.client.write_input(handle, &paste, 0).expect("connected");
    wire.settle();
    let (link, job) = wire.held_seals.pop().expect("a job");
    wire.client.sealed(link, job.ctr(), Sealed::Failed("no AES today".into()), 0);
    wire.client.write_input(handle, &paste, 0).expect("connected");
    wire.settle();
    assert_eq!(wire.held_seals.len(), 1);
    wire.client.close(0);
    wire.settle();
    assert_eq!(typed_bytes(&wire, handle).len(), 3 * paste.len() + 1);
    assert!(wire.closed, "the close reached the host after what was out");
    // The job's late result changes nothing.
    let (link, job) = wire.held_seals.pop().expect("a job");
    wire.client.sealed(link, job.ctr(), seal_job(&job), 0);
    wire.settle();
    assert_eq!(typed_bytes(&wire, handle).len(), 3 * paste.len() + 1);
}
