//! The browser's connection to one host: a WebSocket to the relay and a WebRTC data channel
//! beside it (`direct`), moving bytes, timers and peer-connection news in and out of the
//! protocol crate's sans-IO `Client` — the same client the command line drives. Calls, streams
//! that resume after a lost link, redials with back-off and the data-channel upgrade are all
//! the client's; this module hands its answers to futures and its stream events to owners.
//!
//! Invariants:
//! - One link, many streams: every terminal tab and the session list share the connection.
//! - A dropped connection is redialled on the client's back-off (0.5 s doubling to 10 s; at once
//!   when the browser comes back online or restores the page from its back-forward cache). Each
//!   new authenticated connection bumps `generation`. An attach resumes by itself from the last
//!   byte handed out (`StreamEvent::Resumed`); owners of other streams (listings, watches) open
//!   them again for the new generation.
//! - A failed authentication is final (a wrong secret stays wrong): no redial, a clear message.
//! - Received bytes are credited back (`consumed`) only by their owner, once it has really used
//!   them (xterm.js has parsed them): a slow page slows the host's stream, never loses bytes.
//! - `flush` never runs inside itself. An owner hearing an event may call back into the link
//!   (`consumed`, `forget_stream`, `open_stream`); what that queues is sent, and the events it
//!   brings are handed on, by the flush already under way — never by a nested one that would
//!   hand the next event to an owner still busy with this one (a download holds its state
//!   borrowed while it credits a chunk; several chunks freed at once by the reorder buffer
//!   when a data channel takes over used to meet it there, and the page stopped crediting).
//! - Calls go out at the end of the task that made them (`flush_soon`), sealed together; keys
//!   and credit go at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use tether_protocol::api::{Request, Response};
use tether_protocol::client::{Client, ClientEvent, Output, Path, RedialPolicy};
pub use tether_protocol::client::{Refused, StreamEvent};
use tether_protocol::fs::{FsRequest, FsResponse};
use tether_protocol::identity::HostAddress;
use tether_protocol::upgrade::{Action, DirectEvent};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::direct::PeerAttempt;
pub use crate::timer::{now_ms, sleep_ms, yield_to_page, Timer};

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

type Reply = Result<(Response, Vec<u8>), Refused>;

/// A cheap handle; clones share one connection.
#[derive(Clone)]
pub struct Link(Rc<RefCell<Inner>>);

impl PartialEq for Link {
    fn eq(&self, other: &Link) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

struct Inner {
    client: Client,
    address: HostAddress,
    status: Status,
    on_status: Callback<(Status, u64)>,
    socket: Option<Socket>,
    /// The data channel being negotiated or carrying the connection.
    direct: Option<PeerAttempt>,
    /// Who waits for which call's answer, and who owns which stream (by its handle).
    answers: HashMap<u64, oneshot::Sender<Reply>>,
    owners: HashMap<u32, Callback<(u32, StreamEvent)>>,
    /// When this page last sent typed input (`now_ms`), so bulk senders can make way, and how
    /// many times it has.
    last_input_ms: Option<u64>,
    inputs: u64,
    /// The latest round trip measured (0 before the first).
    round_trip_ms: u64,
    timer: Option<Timer>,
    /// The path and round trip the status bar was last given.
    shown_summary: String,
    /// A `flush` is under way (further up the stack): it sends what is queued now too.
    flushing: bool,
    /// A `flush_soon` is on its way.
    flush_queued: bool,
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

impl Link {
    /// Start connecting to `address` as `identity` with `secret`. `on_status` hears every status
    /// change with the current generation.
    pub fn open(address: HostAddress, identity: String, secret: Vec<u8>, on_status: Callback<(Status, u64)>) -> Link {
        let mut client = Client::new(&address.host_id, &identity, &secret, RedialPolicy::PAGE);
        client.seed_jitter(crate::browser::random_u64());
        let link = Link(Rc::new(RefCell::new(Inner {
            client,
            address,
            status: Status::Connecting,
            on_status,
            socket: None,
            direct: None,
            answers: HashMap::new(),
            owners: HashMap::new(),
            timer: None,
            last_input_ms: None,
            inputs: 0,
            round_trip_ms: 0,
            shown_summary: String::new(),
            flushing: false,
            flush_queued: false,
        })));
        link.flush();
        link
    }

    pub fn status(&self) -> Status {
        self.0.borrow().status.clone()
    }

    /// Which path carries the connection and its round trip ("via relay · round trip 3 ms").
    pub fn path_summary(&self) -> String {
        self.0.borrow().client.path_summary()
    }

    /// Redial now (network back, page restored), unless connected or given up.
    pub fn nudge(&self) {
        self.0.borrow_mut().client.nudge(now_ms());
        self.flush();
    }

    /// The page's connection was probably cut without a close event (back-forward cache).
    pub fn reconnect_now(&self) {
        self.0.borrow_mut().client.reconnect_now("the page was restored", now_ms());
        self.flush();
    }

    /// End for good.
    pub fn close(&self) {
        self.0.borrow_mut().client.close(now_ms());
        self.flush();
        let mut inner = self.0.borrow_mut();
        inner.socket = None;
        inner.timer = None;
    }

    fn dial(&self) {
        let url = self.0.borrow().address.client_ws_url();
        let url = match url {
            Ok(url) => url,
            Err(e) => return self.closed(Some(e)),
        };
        self.set_status(Status::Connecting);
        let ws = match WebSocket::new(&url) {
            Ok(ws) => ws,
            Err(_) => return self.closed(Some("cannot open a WebSocket".into())),
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
                    with_link(&weak, |link| {
                        link.0.borrow_mut().client.handle_relay(&bytes, now_ms());
                        link.flush();
                    });
                }
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            with_link(&weak, |link| link.closed(Some(event.reason())));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.0.borrow_mut().socket =
            Some(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close });
    }

    fn on_open(&self) {
        match crate::browser::entropy() {
            Ok(entropy) => self.0.borrow_mut().client.connect(entropy, now_ms()),
            Err(e) => return self.closed(Some(e)),
        }
        self.flush();
    }

    /// The WebSocket closed, or could not be opened.
    fn closed(&self, reason: Option<String>) {
        let mut inner = self.0.borrow_mut();
        inner.socket = None;
        inner.client.transport_closed(reason, now_ms());
        drop(inner);
        self.flush();
    }

    fn set_status(&self, status: Status) {
        let (callback, generation) = {
            let mut inner = self.0.borrow_mut();
            inner.status = status.clone();
            (inner.on_status.clone(), inner.client.generation())
        };
        callback.emit((status, generation));
    }

    /// Do what the client asks — send on the relay or the data channel, run the peer
    /// connection, dial — and hand its events on; then re-arm its timer. Called from inside an
    /// owner's callback (so from inside a flush), it leaves the work to the flush under way.
    fn flush(&self) {
        if std::mem::replace(&mut self.0.borrow_mut().flushing, true) {
            return;
        }
        self.drain_client();
        self.0.borrow_mut().flushing = false;
        self.arm_timer();
    }

    /// `flush` once the code running now is done (a microtask: before anything else happens on
    /// the page). Calls made together — an upload's chunks, started in one go — are then sealed
    /// together (`Sealer::seal_many`, their AES-SIV side by side).
    fn flush_soon(&self) {
        if std::mem::replace(&mut self.0.borrow_mut().flush_queued, true) {
            return;
        }
        let link = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            link.0.borrow_mut().flush_queued = false;
            link.flush();
        });
    }

    fn drain_client(&self) {
        loop {
            let out = self.0.borrow_mut().client.poll_output();
            let Some(out) = out else { break };
            match out {
                Output::Transmit { path: Path::Relay, bytes } => {
                    if let Some(socket) = &self.0.borrow().socket {
                        let _ = socket.ws.send_with_u8_array(&bytes);
                    }
                }
                Output::Transmit { path: Path::Direct, bytes } => {
                    if let Some(direct) = &self.0.borrow().direct {
                        direct.send(bytes);
                    }
                }
                Output::Peer(action) => self.act(action),
                Output::Event(ClientEvent::Dial) => self.dial(),
                Output::Event(event) => self.on_event(event),
            }
        }
    }

    fn arm_timer(&self) {
        let mut inner = self.0.borrow_mut();
        let Some(at) = inner.client.poll_timeout() else {
            inner.timer = None;
            return;
        };
        let weak = Rc::downgrade(&self.0);
        inner.timer = Timer::after(at.saturating_sub(now_ms()) as u32, move || {
            with_link(&weak, |link| {
                link.0.borrow_mut().client.handle_timeout(now_ms());
                link.flush();
            })
        });
    }

    /// Do what the upgrade asks of the peer connection.
    fn act(&self, action: Action) {
        let mut inner = self.0.borrow_mut();
        match action {
            Action::Offer { attempt, ice_servers } => {
                let weak = Rc::downgrade(&self.0);
                let report = Rc::new(move |event: DirectEvent| {
                    with_link(&weak, |link| {
                        link.0.borrow_mut().client.handle_direct(event, now_ms());
                        link.flush();
                    })
                });
                // A page that cannot make one stays on the relay; the attempt times out.
                inner.direct = PeerAttempt::offer(attempt, &ice_servers, report).ok();
            }
            Action::Answered { attempt, sdp } => {
                if let Some(link) = inner.direct.as_ref().filter(|link| link.attempt == attempt) {
                    link.answered(sdp);
                }
            }
            Action::Close { attempt } => {
                if inner.direct.as_ref().is_some_and(|link| link.attempt == attempt) {
                    inner.direct = None;
                }
            }
        }
    }

    fn on_event(&self, event: ClientEvent) {
        match event {
            ClientEvent::Connected { .. } => self.set_status(Status::Connected),
            // The status bar shows the path and round trip: say the status again when its words
            // changed (while a data channel carries the connection, a ping goes every second).
            ClientEvent::RoundTrip { .. } | ClientEvent::PathChanged { .. } => {
                if let ClientEvent::RoundTrip { ms } = event {
                    self.0.borrow_mut().round_trip_ms = ms;
                }
                let summary = self.path_summary();
                let changed = std::mem::replace(&mut self.0.borrow_mut().shown_summary, summary.clone()) != summary;
                if changed {
                    self.set_status(self.status());
                }
            }
            ClientEvent::Answer { call, answer } => {
                let waiting = self.0.borrow_mut().answers.remove(&call);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(answer);
                }
            }
            ClientEvent::Stream { handle, event } => {
                let ends = matches!(event, StreamEvent::Eof | StreamEvent::Lost { .. });
                let owner = {
                    let mut inner = self.0.borrow_mut();
                    if ends {
                        inner.owners.remove(&handle)
                    } else {
                        inner.owners.get(&handle).cloned()
                    }
                };
                if let Some(owner) = owner {
                    owner.emit((handle, event));
                }
            }
            ClientEvent::Disconnected { why, redial_in_ms } => {
                {
                    let mut inner = self.0.borrow_mut();
                    inner.socket = None;
                    inner.direct = None;
                }
                self.set_status(match redial_in_ms {
                    Some(ms) => Status::Reconnecting { in_ms: ms.min(u64::from(u32::MAX)) as u32, why },
                    None => Status::Failed(why),
                });
            }
            ClientEvent::Dial => self.dial(),
        }
    }

    /// Send a request; the answer comes back through the returned future.
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        self.call_coded(request, payload).await.map_err(String::from)
    }

    /// `call`, keeping the code of a refusal.
    async fn call_coded(&self, request: &Request, payload: Vec<u8>) -> Reply {
        let answer = {
            let mut inner = self.0.borrow_mut();
            let call = inner
                .client
                .call(request, payload, now_ms())
                .map_err(|e| Refused { code: None, message: e.to_string() })?;
            let (reply, answer) = oneshot::channel();
            inner.answers.insert(call, reply);
            answer
        };
        self.flush_soon();
        answer.await.map_err(|_| Refused { code: None, message: "connection lost".to_owned() })?
    }

    /// A file service request (`Response::Error` becomes `Err` with its message).
    pub async fn call_fs(&self, request: FsRequest) -> Result<FsResponse, String> {
        self.call_fs_with(request, Vec::new()).await.map_err(String::from)
    }

    /// The same with bytes in the payload (an upload's chunk), and the refusal's code.
    pub async fn call_fs_with(&self, request: FsRequest, payload: Vec<u8>) -> Result<FsResponse, Refused> {
        match self.call_coded(&Request::Fs(request), payload).await? {
            (Response::Fs(answer), _) => Ok(answer),
            (other, _) => Err(Refused { code: None, message: format!("unexpected answer {other:?}") }),
        }
    }

    /// Open a stream (attach, logs, watch_sessions): `owner` hears its events with the stream's
    /// handle (they may come before the answer does); returns the answer and the handle.
    pub async fn open_stream(
        &self,
        request: &Request,
        owner: Callback<(u32, StreamEvent)>,
    ) -> Result<(Response, u32), String> {
        let (handle, answered) = self.start_stream(request, owner)?;
        Ok((answered.await?, handle))
    }

    /// `open_stream`, with the stream's handle at once (input may go on it before the answer
    /// comes) and its answer to wait for.
    pub fn start_stream(
        &self,
        request: &Request,
        owner: Callback<(u32, StreamEvent)>,
    ) -> Result<(u32, impl std::future::Future<Output = Result<Response, String>>), String> {
        let (handle, answer) = {
            let mut inner = self.0.borrow_mut();
            let handle = inner.client.open(request, now_ms()).map_err(|e| e.to_string())?;
            let (reply, answer) = oneshot::channel();
            inner.answers.insert(u64::from(handle), reply);
            inner.owners.insert(handle, owner);
            (handle, answer)
        };
        self.flush();
        let link = self.clone();
        Ok((handle, async move {
            let answered = answer.await.map_err(|_| "connection lost".to_owned()).and_then(|a| a.map_err(String::from));
            if answered.is_err() {
                link.0.borrow_mut().owners.remove(&handle);
            }
            answered.map(|(response, _)| response)
        }))
    }

    /// Input toward the host on stream `handle` (keystrokes on an attach): queued and sent in
    /// order as the host's credit allows.
    pub fn write_input(&self, handle: u32, bytes: &[u8]) -> Result<(), String> {
        let written = self.0.borrow_mut().client.write_input(handle, bytes, now_ms());
        self.flush();
        written.map_err(|e| e.to_string())
    }

    /// Send without waiting for the answer (keystrokes, resizes).
    pub fn send(&self, request: &Request, payload: Vec<u8>) {
        let sent = self.0.borrow_mut().client.send(request, payload, now_ms());
        if sent.is_ok() {
            self.flush();
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
        relay.saturating_add(inner.direct.as_ref().map_or(0, PeerAttempt::unsent_bytes))
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

    /// The latest round trip to the host (0 before one was measured): predictive echo's cue.
    pub fn round_trip_ms(&self) -> u64 {
        self.0.borrow().round_trip_ms
    }

    /// Whether input went out in the last `ms`.
    pub fn input_within(&self, ms: u64) -> bool {
        self.0.borrow().last_input_ms.is_some_and(|at| now_ms().saturating_sub(at) < ms)
    }

    /// Hand back flow-control credit for `n` bytes of stream `handle` its owner has used.
    pub fn consumed(&self, handle: u32, n: u64) {
        self.0.borrow_mut().client.consumed(handle, n, now_ms());
        self.flush();
    }

    /// Stop hearing stream `handle` (its tab closed); the host is told to stop sending it.
    pub fn forget_stream(&self, handle: u32) {
        let mut inner = self.0.borrow_mut();
        inner.owners.remove(&handle);
        inner.client.detach(handle, now_ms());
        drop(inner);
        self.flush();
    }
}

fn with_link(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&Link)) {
    if let Some(inner) = weak.upgrade() {
        f(&Link(inner));
    }
}
