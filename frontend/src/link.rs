//! The browser's connection to one host: a WebSocket to the relay with the protocol crate's
//! sans-IO `Connection` inside. This module only moves bytes and time in and events out; every
//! protocol rule lives in the protocol crate, exactly as in the native CLI.
//!
//! Invariants:
//! - One link, many streams: every terminal tab and the session list share the connection.
//! - A dropped connection is redialled with back-off (0.5 s doubling to 10 s; at once when the
//!   browser comes back online or restores the page from its back-forward cache). Each new
//!   authenticated connection bumps `generation`; stream owners then reopen their streams from
//!   the last byte they hold, so nothing is lost or shown twice.
//! - A failed authentication is final (a wrong secret stays wrong): no redial, a clear message.
//! - Received bytes are credited back (`consumed`) only by their owner, once it has really used
//!   them (xterm.js has parsed them): a slow page slows the host's stream, never loses bytes.
//! - When the host invites it, the connection moves onto a WebRTC data channel beside the relay
//!   (`direct`), on the protocol crate's schedule (`Upgrade`), and back when that fails; streams
//!   and calls never notice.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use tether_protocol::api::{cmd_frame, ErrorCode, Request, Response};
use tether_protocol::connection::{Connection, Event, Input};
use tether_protocol::fs::{FsRequest, FsResponse};
use tether_protocol::handshake::HandshakeEntropy;
use tether_protocol::identity::HostAddress;
use tether_protocol::upgrade::{Action, DirectEvent, Upgrade};
use tether_protocol::ConnError;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::direct::DirectLink;

const MIN_BACKOFF_MS: u32 = 500;
const MAX_BACKOFF_MS: u32 = 10_000;
/// How often a bulk sender looks whether the WebSocket has room again.
const BULK_POLL_MS: u32 = 1;
/// Times a transfer cut off by a lost connection is taken up again, and how long each waits.
pub const RESUMES: u32 = 10;
pub const RECONNECT_WAIT_MS: u32 = 120_000;
/// How often a transfer waiting for the connection looks whether it is back.
const RECONNECT_POLL_MS: u32 = 250;

/// What the status bar shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Connecting,
    Connected,
    Reconnecting {
        in_ms: u32,
        why: String,
    },
    /// Authentication failed or the link is unusable: no more attempts.
    Failed(String),
}

/// What a stream's owner is told.
#[derive(Debug)]
pub enum StreamEvent {
    Data {
        seq: u64,
        bytes: Vec<u8>,
    },
    /// The host no longer had these bytes for this client (its log still has them).
    Skipped {
        from: u64,
        to: u64,
    },
    Eof,
}

type Reply = Result<(Response, Vec<u8>), Refused>;

/// A file service request the host refused (or that could not be asked): the code says which
/// failure it was when the host said so (an editor's save that found the file `changed`).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused { code: None, message }
    }
}

impl From<Refused> for String {
    fn from(refused: Refused) -> String {
        refused.message
    }
}

/// A cheap handle; clones share one connection.
#[derive(Clone)]
pub struct Link(Rc<RefCell<Inner>>);

impl PartialEq for Link {
    fn eq(&self, other: &Link) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

struct Inner {
    address: HostAddress,
    identity: String,
    secret: Vec<u8>,
    status: Status,
    on_status: Callback<(Status, u64)>,
    /// Bumped by every successful authentication.
    generation: u64,
    socket: Option<Socket>,
    conn: Option<Connection>,
    next_id: u64,
    calls: HashMap<u64, oneshot::Sender<Reply>>,
    streams: HashMap<u32, Callback<(u32, StreamEvent)>>,
    backoff_ms: u32,
    /// When this page last sent typed input (`now_ms`), so bulk senders can make way, and how
    /// many times it has.
    last_input_ms: Option<u64>,
    inputs: u64,
    timer: Option<Timer>,
    redial: Option<Timer>,
    closed: bool,
    upgrade: Upgrade,
    /// The data channel being negotiated or carrying the connection.
    direct: Option<DirectLink>,
    /// The path and round trip the status bar was last given.
    shown_summary: String,
}

/// A WebSocket and the closures it calls (they must live as long as it does).
struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// A `setTimeout` that is cancelled when dropped.
pub struct Timer {
    handle: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    pub fn after(ms: u32, callback: impl FnOnce() + 'static) -> Option<Timer> {
        let mut callback = Some(callback);
        let closure = Closure::<dyn FnMut()>::new(move || {
            if let Some(callback) = callback.take() {
                callback();
            }
        });
        let handle = web_sys::window()?
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                closure.as_ref().unchecked_ref(),
                ms.min(i32::MAX as u32) as i32,
            )
            .ok()?;
        Some(Timer { handle, _callback: closure })
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            window.clear_timeout_with_handle(self.handle);
        }
    }
}

/// Wait `ms` on a timer (a task of its own, so the page handles its events first).
pub async fn sleep_ms(ms: u32) {
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let timer = Timer::after(ms, move || {
        let _ = tx.send(());
    });
    let _ = rx.await;
    drop(timer);
}

/// Let the page handle what waits (a key pressed meanwhile, a frame to paint), then go on: a
/// message posted to ourselves is a task of its own, and unlike a chained `setTimeout(0)` it is
/// never held back 4 ms, so a bulk sender that yields before every chunk is not slowed by it.
pub async fn yield_to_page() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| match web_sys::MessageChannel::new() {
        Ok(channel) => {
            // The port lives while its message is queued; its handler resolves the promise.
            channel.port1().set_onmessage(Some(&resolve));
            if channel.port2().post_message(&JsValue::NULL).is_err() {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
        Err(_) => {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Milliseconds on the page's monotonic clock (`performance.now()`), what the connection's
/// timers run on: `Date.now()` jumps with the wall clock (NTP, a suspended laptop).
pub fn now_ms() -> u64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now()) as u64
}

fn entropy() -> Result<HandshakeEntropy, String> {
    let crypto = web_sys::window().and_then(|w| w.crypto().ok()).ok_or("this browser has no crypto.getRandomValues")?;
    HandshakeEntropy::generate(|bytes| {
        crypto
            .get_random_values_with_u8_array(bytes)
            .map(|_| ())
            .map_err(|_| "crypto.getRandomValues failed".to_owned())
    })
}

impl Link {
    /// Start connecting to `address` as `identity` with `secret`. `on_status` hears every status
    /// change with the current generation.
    pub fn open(address: HostAddress, identity: String, secret: Vec<u8>, on_status: Callback<(Status, u64)>) -> Link {
        let link = Link(Rc::new(RefCell::new(Inner {
            address,
            identity,
            secret,
            status: Status::Connecting,
            on_status,
            generation: 0,
            socket: None,
            conn: None,
            next_id: 1,
            calls: HashMap::new(),
            streams: HashMap::new(),
            backoff_ms: MIN_BACKOFF_MS,
            timer: None,
            redial: None,
            closed: false,
            last_input_ms: None,
            inputs: 0,
            upgrade: Upgrade::default(),
            direct: None,
            shown_summary: String::new(),
        })));
        link.dial();
        link
    }

    pub fn status(&self) -> Status {
        self.0.borrow().status.clone()
    }

    /// Which path carries the connection and its round trip ("via relay · round trip 3 ms").
    pub fn path_summary(&self) -> String {
        self.0.borrow().conn.as_ref().map(Connection::path_summary).unwrap_or_default()
    }

    /// Redial now (network back, page restored), unless connected or given up.
    pub fn nudge(&self) {
        let idle = matches!(self.0.borrow().status, Status::Reconnecting { .. });
        if idle {
            self.0.borrow_mut().backoff_ms = MIN_BACKOFF_MS;
            self.dial();
        }
    }

    /// The page's connection was probably cut without a close event (back-forward cache).
    pub fn reconnect_now(&self) {
        if matches!(self.0.borrow().status, Status::Failed(_)) {
            return;
        }
        self.lost("the page was restored".into());
        self.0.borrow_mut().backoff_ms = MIN_BACKOFF_MS;
        self.dial();
    }

    /// End for good.
    pub fn close(&self) {
        let mut inner = self.0.borrow_mut();
        inner.closed = true;
        if let Some(conn) = inner.conn.as_mut() {
            let _ = conn.close("closed");
        }
        drop(inner);
        self.flush();
        let mut inner = self.0.borrow_mut();
        inner.socket = None;
        inner.timer = None;
        inner.redial = None;
    }

    fn dial(&self) {
        let url = {
            let mut inner = self.0.borrow_mut();
            if inner.closed {
                return;
            }
            inner.redial = None;
            inner.socket = None;
            inner.conn = None;
            inner.direct = None;
            inner.upgrade = Upgrade::default();
            inner.address.client_ws_url()
        };
        let url = match url {
            Ok(url) => url,
            Err(e) => return self.set_status(Status::Failed(e)),
        };
        self.set_status(Status::Connecting);
        let ws = match WebSocket::new(&url) {
            Ok(ws) => ws,
            Err(_) => return self.schedule_redial("cannot open a WebSocket".into()),
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let weak = Rc::downgrade(&self.0);
        let on_open = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            move || with_link(&weak, |link| link.on_open())
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
            let weak = weak.clone();
            move |event: MessageEvent| {
                if let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() {
                    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                    with_link(&weak, |link| link.on_bytes(&bytes));
                }
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            with_link(&weak, |link| link.on_close(event.reason()));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.0.borrow_mut().socket =
            Some(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close });
    }

    fn on_open(&self) {
        let conn = {
            let inner = self.0.borrow();
            entropy().map(|e| Connection::client(&inner.address.host_id, &inner.identity, &inner.secret, e, now_ms()))
        };
        match conn {
            Ok(conn) => {
                self.0.borrow_mut().conn = Some(conn);
                self.flush();
            }
            Err(e) => self.set_status(Status::Failed(e)),
        }
    }

    fn on_bytes(&self, bytes: &[u8]) {
        let result = match self.0.borrow_mut().conn.as_mut() {
            Some(conn) => conn.handle_input(Input::Bytes(bytes), now_ms()),
            None => return,
        };
        self.flush();
        if let Err(error) = result {
            self.fail_connection(error);
        }
    }

    fn on_close(&self, reason: String) {
        let own = self.0.borrow().conn.as_ref().and_then(|c| c.error().cloned());
        match own {
            Some(error) => self.fail_connection(error),
            None => {
                let why = if reason.is_empty() { "the relay closed the connection".to_owned() } else { reason };
                self.lost(why.clone());
                self.schedule_redial(why);
            }
        }
    }

    /// The connection broke a protocol rule or failed to authenticate.
    fn fail_connection(&self, error: ConnError) {
        let message = error.to_string();
        self.lost(message.clone());
        match error {
            ConnError::Auth(_) => {
                self.0.borrow_mut().socket = None;
                self.set_status(Status::Failed(message));
            }
            _ => self.schedule_redial(message),
        }
    }

    /// Forget the connection: pending calls fail; streams wait for the next generation.
    fn lost(&self, why: String) {
        let calls: Vec<_> = {
            let mut inner = self.0.borrow_mut();
            inner.conn = None;
            inner.socket = None;
            inner.timer = None;
            inner.direct = None;
            inner.upgrade = Upgrade::default();
            inner.streams.clear();
            inner.calls.drain().map(|(_, reply)| reply).collect()
        };
        for reply in calls {
            let _ = reply.send(Err(format!("connection lost: {why}").into()));
        }
    }

    fn schedule_redial(&self, why: String) {
        let in_ms = {
            let mut inner = self.0.borrow_mut();
            if inner.closed {
                return;
            }
            let in_ms = inner.backoff_ms;
            inner.backoff_ms = (in_ms * 2).min(MAX_BACKOFF_MS);
            let weak = Rc::downgrade(&self.0);
            inner.redial = Timer::after(in_ms, move || with_link(&weak, |link| link.dial()));
            in_ms
        };
        self.set_status(Status::Reconnecting { in_ms, why });
    }

    fn set_status(&self, status: Status) {
        let (callback, generation) = {
            let mut inner = self.0.borrow_mut();
            inner.status = status.clone();
            (inner.on_status.clone(), inner.generation)
        };
        callback.emit((status, generation));
    }

    /// Send what the connection wants sent, act on its events, and re-arm its timer.
    fn flush(&self) {
        loop {
            let (transmits, events) = {
                let mut inner = self.0.borrow_mut();
                let Some(conn) = inner.conn.as_mut() else { return };
                let out = conn.drain_output();
                let direct = conn.drain_direct();
                if let Some(link) = &inner.direct {
                    for bytes in direct {
                        link.send(bytes);
                    }
                }
                out
            };
            if transmits.is_empty() && events.is_empty() {
                break;
            }
            if let Some(socket) = &self.0.borrow().socket {
                for bytes in &transmits {
                    let _ = socket.ws.send_with_u8_array(bytes);
                }
            }
            // Acting on events may queue more output: go round again.
            for event in events {
                self.on_event(event);
            }
        }
        self.arm_timer();
    }

    fn arm_timer(&self) {
        let mut inner = self.0.borrow_mut();
        let conn_at = inner.conn.as_ref().and_then(Connection::poll_timeout);
        let Some(at) = [conn_at, inner.upgrade.poll_timeout()].into_iter().flatten().min() else {
            inner.timer = None;
            return;
        };
        let weak = Rc::downgrade(&self.0);
        inner.timer = Timer::after(at.saturating_sub(now_ms()) as u32, move || {
            with_link(&weak, |link| {
                let result = {
                    let mut inner = link.0.borrow_mut();
                    let Inner { conn, upgrade, .. } = &mut *inner;
                    let Some(conn) = conn.as_mut() else { return };
                    let now = now_ms();
                    conn.handle_timeout(now).and_then(|()| upgrade.handle_timeout(conn, now))
                };
                link.after_upgrade_step(result);
            })
        });
    }

    /// After the upgrade acted on something: do what it asks of the peer connection, send what
    /// it queued, or fail the connection.
    fn after_upgrade_step(&self, result: Result<Option<Action>, ConnError>) {
        match result {
            Ok(action) => {
                self.act(action);
                self.flush();
            }
            Err(error) => {
                self.flush();
                self.fail_connection(error);
            }
        }
    }

    fn act(&self, action: Option<Action>) {
        let mut inner = self.0.borrow_mut();
        match action {
            Some(Action::Offer { attempt, ice_servers }) => {
                let weak = Rc::downgrade(&self.0);
                let report = Rc::new(move |event| with_link(&weak, |link| link.on_direct(event)));
                // A page that cannot make one stays on the relay; the attempt times out.
                inner.direct = DirectLink::offer(attempt, &ice_servers, report).ok();
            }
            Some(Action::Answered { attempt, sdp }) => {
                if let Some(link) = inner.direct.as_ref().filter(|link| link.attempt == attempt) {
                    link.answered(sdp);
                }
            }
            Some(Action::Close { attempt }) => {
                if inner.direct.as_ref().is_some_and(|link| link.attempt == attempt) {
                    inner.direct = None;
                }
            }
            None => {}
        }
    }

    /// What the data channel reported.
    fn on_direct(&self, event: DirectEvent) {
        let result = {
            let mut inner = self.0.borrow_mut();
            let Inner { conn, upgrade, .. } = &mut *inner;
            let Some(conn) = conn.as_mut() else { return };
            upgrade.on_direct(conn, event, now_ms())
        };
        self.after_upgrade_step(result);
    }

    /// A signal from the host, or the connection giving its data channel up.
    fn on_upgrade_event(&self, event: Event) {
        let result = {
            let mut inner = self.0.borrow_mut();
            let Inner { conn, upgrade, .. } = &mut *inner;
            let Some(conn) = conn.as_mut() else { return };
            match event {
                Event::Webrtc { signal } => upgrade.on_signal(conn, signal, now_ms()),
                Event::DirectLost { silent_ms } => upgrade.on_direct_lost(conn, silent_ms, now_ms()),
                _ => Ok(None),
            }
        };
        self.after_upgrade_step(result);
    }

    fn on_event(&self, event: Event) {
        match event {
            Event::Authenticated { .. } => {
                {
                    let mut inner = self.0.borrow_mut();
                    inner.backoff_ms = MIN_BACKOFF_MS;
                    inner.generation += 1;
                    // Time the round trip at once; keep-alives time it again every 15 s.
                    if let Some(conn) = inner.conn.as_mut() {
                        let _ = conn.ping(now_ms());
                    }
                }
                self.set_status(Status::Connected);
            }
            // The status bar shows it: say the status again, if its words changed (while a data
            // channel carries the connection, a ping goes every second).
            Event::RoundTrip { .. } => {
                let summary = self.path_summary();
                let changed = std::mem::replace(&mut self.0.borrow_mut().shown_summary, summary.clone()) != summary;
                if changed {
                    self.set_status(self.status());
                }
            }
            event @ (Event::Webrtc { .. } | Event::DirectLost { .. }) => self.on_upgrade_event(event),
            Event::Cmd { id, body, payload } => {
                let Some(reply) = self.0.borrow_mut().calls.remove(&id) else { return };
                let answer = match serde_json::from_value::<Response>(body) {
                    Ok(Response::Error { code, message }) => Err(Refused { code: Some(code), message }),
                    Ok(response) => Ok((response, payload)),
                    Err(e) => Err(format!("unreadable answer from the host: {e}").into()),
                };
                if answer.is_err() {
                    self.0.borrow_mut().streams.remove(&(id as u32));
                }
                let _ = reply.send(answer);
            }
            Event::Data { stream, seq, bytes } => self.to_stream(stream, StreamEvent::Data { seq, bytes }),
            Event::Skipped { stream, from, to } => self.to_stream(stream, StreamEvent::Skipped { from, to }),
            Event::Eof { stream, .. } => {
                let owner = self.0.borrow_mut().streams.remove(&stream);
                if let Some(owner) = owner {
                    owner.emit((stream, StreamEvent::Eof));
                }
            }
            _ => {}
        }
    }

    fn to_stream(&self, stream: u32, event: StreamEvent) {
        let owner = self.0.borrow().streams.get(&stream).cloned();
        match owner {
            Some(owner) => owner.emit((stream, event)),
            // Nobody wants it (a closed tab): credit it back so the host is not held up.
            None => {
                if let StreamEvent::Data { bytes, .. } = event {
                    self.consumed(stream, bytes.len() as u64);
                }
            }
        }
    }

    /// Send a request; the answer comes back through the returned future.
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        self.call_coded(request, payload).await.map_err(String::from)
    }

    /// `call`, keeping the code of a refusal.
    async fn call_coded(&self, request: &Request, payload: Vec<u8>) -> Reply {
        let (_, answer) = self.send_request(request, payload, None)?;
        answer.await.map_err(|_| Refused::from("connection lost".to_owned()))?
    }

    /// A file service request (`Response::Error` becomes `Err` with its message).
    pub async fn call_fs(&self, request: FsRequest) -> Result<FsResponse, String> {
        self.call_fs_with(request, Vec::new()).await.map_err(String::from)
    }

    /// The same with bytes in the payload (an upload's chunk), and the refusal's code.
    pub async fn call_fs_with(&self, request: FsRequest, payload: Vec<u8>) -> Result<FsResponse, Refused> {
        match self.call_coded(&Request::Fs(request), payload).await? {
            (Response::Fs(answer), _) => Ok(answer),
            (other, _) => Err(format!("unexpected answer {other:?}").into()),
        }
    }

    /// Open a stream (attach, logs, watch_sessions): `owner` hears its events with the stream id
    /// (they may come before the answer does); returns the answer and the stream id.
    pub async fn open_stream(
        &self,
        request: &Request,
        owner: Callback<(u32, StreamEvent)>,
    ) -> Result<(Response, u32), String> {
        let (id, answer) = self.send_request(request, Vec::new(), Some(owner))?;
        let (response, _) = answer.await.map_err(|_| "connection lost".to_owned())?.map_err(String::from)?;
        Ok((response, id as u32))
    }

    fn send_request(
        &self,
        request: &Request,
        payload: Vec<u8>,
        owner: Option<Callback<(u32, StreamEvent)>>,
    ) -> Result<(u64, oneshot::Receiver<Reply>), String> {
        let (reply, answer) = oneshot::channel();
        let id = {
            let mut inner = self.0.borrow_mut();
            let id = inner.next_id;
            inner.next_id = tether_protocol::api::next_request_id(id);
            let Some(conn) = inner.conn.as_mut().filter(|c| c.is_open()) else {
                return Err("not connected".into());
            };
            conn.send_frame(&cmd_frame(id, request, payload)).map_err(|e| e.to_string())?;
            // Registered before any answer can arrive (answers come from the event loop).
            inner.calls.insert(id, reply);
            if let Some(owner) = owner {
                inner.streams.insert(id as u32, owner);
            }
            id
        };
        self.flush();
        Ok((id, answer))
    }

    /// Send without waiting for the answer (keystrokes, resizes).
    pub fn send(&self, request: &Request, payload: Vec<u8>) {
        if let Ok((id, _)) = self.send_request(request, payload, None) {
            self.0.borrow_mut().calls.remove(&id);
        }
    }

    /// After a lost connection: whether it is up again within `within_ms` (polled).
    pub async fn connected_again(&self, within_ms: u32) -> bool {
        let started = now_ms();
        loop {
            // A moment first: the loss that brought us here may not have been noticed yet.
            sleep_ms(RECONNECT_POLL_MS).await;
            match self.status() {
                Status::Connected => return true,
                Status::Failed(_) => return false,
                _ if now_ms().saturating_sub(started) > u64::from(within_ms) => return false,
                _ => {}
            }
        }
    }

    /// Bytes the WebSocket has queued and not yet sent. Bulk senders (uploads) wait for it to
    /// drain before they seal more, so a keystroke sealed meanwhile never waits behind a pile of
    /// file chunks: frames are sealed in order and cannot be reordered afterwards.
    pub fn unsent_bytes(&self) -> u32 {
        let inner = self.0.borrow();
        let relay = inner.socket.as_ref().map_or(0, |socket| socket.ws.buffered_amount());
        relay.saturating_add(inner.direct.as_ref().map_or(0, DirectLink::unsent_bytes))
    }

    /// Until the WebSocket's queue is under `low_water` bytes (polled every few ms).
    /// Always after letting the page handle what waits (a key pressed meanwhile is a task of its
    /// own; a chain of resolved promises would never let it in between two chunks).
    pub async fn room_for_bulk(&self, low_water: u32) {
        yield_to_page().await;
        while self.unsent_bytes() > low_water {
            sleep_ms(BULK_POLL_MS).await;
        }
    }

    /// Typed input went out (a terminal's keys or paste).
    pub fn note_input(&self) {
        let mut inner = self.0.borrow_mut();
        inner.last_input_ms = Some(now_ms());
        inner.inputs += 1;
    }

    /// How many times typed input went out (a new count: a new key whose echo may come).
    pub fn inputs_sent(&self) -> u64 {
        self.0.borrow().inputs
    }

    /// Whether input went out in the last `ms`.
    pub fn input_within(&self, ms: u64) -> bool {
        self.0.borrow().last_input_ms.is_some_and(|at| now_ms().saturating_sub(at) < ms)
    }

    /// Hand back flow-control credit for `n` bytes of `stream` its owner has used.
    pub fn consumed(&self, stream: u32, n: u64) {
        let result = match self.0.borrow_mut().conn.as_mut() {
            Some(conn) => conn.consumed(stream, n),
            None => return,
        };
        match result {
            Ok(()) => self.flush(),
            Err(error) => self.fail_connection(error),
        }
    }

    /// Stop hearing `stream` (its tab closed); the host is told to stop sending it.
    pub fn forget_stream(&self, stream: u32) {
        self.0.borrow_mut().streams.remove(&stream);
        self.send(&Request::Detach { stream }, Vec::new());
    }
}

/// A stream owner for streams of JSON lines (the session list, `tether open`, a watched file):
/// lines may arrive in pieces; each whole one is parsed and handed to `on_line` (unreadable ones
/// are skipped), and the bytes are credited back.
pub fn json_lines<T: serde::de::DeserializeOwned + 'static>(
    link: &Link,
    on_line: impl Fn(T) + 'static,
) -> Callback<(u32, StreamEvent)> {
    let link = link.clone();
    let partial = RefCell::new(Vec::<u8>::new());
    Callback::from(move |(stream, event): (u32, StreamEvent)| {
        let StreamEvent::Data { bytes, .. } = event else { return };
        let lines: Vec<u8> = {
            let mut buffer = partial.borrow_mut();
            buffer.extend_from_slice(&bytes);
            match buffer.iter().rposition(|&b| b == b'\n') {
                Some(cut) => buffer.drain(..=cut).collect(),
                None => Vec::new(),
            }
        };
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(value) = serde_json::from_slice::<T>(line) {
                on_line(value);
            }
        }
        link.consumed(stream, bytes.len() as u64);
    })
}

fn with_link(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&Link)) {
    if let Some(inner) = weak.upgrade() {
        f(&Link(inner));
    }
}
