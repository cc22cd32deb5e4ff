//! The browser's connection to one host, as the page sees it: a cheap handle whose calls,
//! streams and input go to a link worker (`worker`), which holds the protocol crate's sans-IO
//! `Client` — the same client the command line drives — and the WebSocket to the relay. Sealing
//! and opening run there, off the main thread (long frames through WebCrypto's native AES,
//! `native_aes`); here answers go to the futures waiting for them, stream bytes (plaintext) to
//! their owners, and the WebRTC data channel (`direct`), which only the page can hold, moves
//! sealed bytes between the host and the worker. An upload's bytes go from the file to the
//! worker untouched; the worker hashes them on their way (`upload_bytes`, `upload_digest`).
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
//! - Commands reach the worker in the order they were made. Calls go at the end of the task
//!   that made them, so calls made together (an upload's chunks) are sealed together; keys,
//!   credit and stream opens go at once (after anything queued before them).
//! - Events are handed to owners in the worker's order, one message at a time; an owner that
//!   calls back into the link only queues a command, so no owner hears an event while it is
//!   still busy with the one before.
//! - Call ids and stream handles are this page's, drawn from one count (a stream's answer comes
//!   under its handle); the worker maps them to its client's.

pub(crate) mod messages;
mod native_aes;
pub mod worker;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
pub use messages::Hashing;
use messages::{buffer_of, bytes_of, Batch, DirectNews, FromWorker, ToWorker};
use serde::{Deserialize, Serialize};
use tether_protocol::api::{Request, Response};
pub use tether_protocol::client::{Refused, StreamEvent};
use tether_protocol::fs::{FsRequest, FsResponse};
use tether_protocol::identity::HostAddress;
use tether_protocol::upgrade::Action;
use wasm_bindgen::prelude::*;
use web_sys::MessageEvent;
use yew::Callback;

use crate::direct::PeerAttempt;
pub use crate::timer::{now_ms, sleep_ms, yield_to_page, Timer};

/// The worker's script (copied beside the app): it imports the app's glue with the page's module.
const WORKER_SCRIPT: &str = "/link-worker.js";
/// The page's link to its app script, the glue that starts the WASM build (Trunk preloads it;
/// the JS snippets it imports are preloaded too, under `/snippets/`).
const GLUE_SELECTOR: &str = "link[rel=modulepreload][href*='tether-frontend-'][href$='.js']:not([href*='/snippets/'])";
/// How often a bulk sender looks whether the data channel has room again.
const BULK_POLL_MS: u32 = 1;
/// Times a transfer cut off by a lost connection is taken up again, and how long each waits.
pub const RESUMES: u32 = 10;
pub const RECONNECT_WAIT_MS: u32 = 120_000;
/// How often a transfer waiting for the connection looks whether it is back.
const RECONNECT_POLL_MS: u32 = 250;

/// What the status bar shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The worker that holds the connection, and the handler that hears it.
    worker: Option<web_sys::Worker>,
    _on_message: Option<Closure<dyn FnMut(MessageEvent)>>,
    _on_error: Option<Closure<dyn FnMut(JsValue)>>,
    /// The worker has said it is ready: commands go to it at once.
    ready: bool,
    /// Commands not posted yet (before `ready`, or until the end of the task for calls).
    commands: Batch,
    /// A post at the end of the task is on its way.
    post_queued: bool,
    /// `close` was called: the worker ends itself once it said goodbye.
    closed: bool,
    status: Status,
    generation: u64,
    on_status: Callback<(Status, u64)>,
    /// The path and round trip as the worker last told them.
    summary: String,
    /// The data channel being negotiated or carrying the connection.
    direct: Option<PeerAttempt>,
    /// Who waits for which call's answer, and who owns which stream (by its handle).
    answers: HashMap<u64, oneshot::Sender<Reply>>,
    /// Who waits for which upload's digest (by call id).
    digests: HashMap<u64, oneshot::Sender<Result<String, String>>>,
    owners: HashMap<u32, Callback<(u32, StreamEvent)>>,
    /// The next call id or stream handle (one count: a stream's answer comes under its handle).
    next_id: u32,
    /// Who waits for which ask for room (`room_for_bulk`).
    rooms: HashMap<u64, oneshot::Sender<()>>,
    /// When this page last sent typed input (`now_ms`), so bulk senders can make way, and how
    /// many times it has.
    last_input_ms: Option<u64>,
    inputs: u64,
    /// The latest round trip measured (0 before the first).
    round_trip_ms: u64,
}

/// A link dropped without `close` (its page part gone) ends its worker, socket and all.
impl Drop for Inner {
    fn drop(&mut self) {
        if let (Some(worker), false) = (&self.worker, self.closed) {
            worker.terminate();
        }
    }
}

impl Link {
    /// Start connecting to `address` as `identity` with `secret`. `on_status` hears every status
    /// change with the current generation.
    pub fn open(address: HostAddress, identity: String, secret: Vec<u8>, on_status: Callback<(Status, u64)>) -> Link {
        let link = Link(Rc::new(RefCell::new(Inner {
            worker: None,
            _on_message: None,
            _on_error: None,
            ready: false,
            commands: Batch::default(),
            post_queued: false,
            closed: false,
            status: Status::Connecting,
            generation: 0,
            on_status,
            summary: String::new(),
            direct: None,
            answers: HashMap::new(),
            digests: HashMap::new(),
            owners: HashMap::new(),
            next_id: 1,
            rooms: HashMap::new(),
            last_input_ms: None,
            inputs: 0,
            round_trip_ms: 0,
        })));
        let open = ToWorker::Open { relay: address.relay, host_id: address.host_id, identity, secret };
        link.0.borrow_mut().commands.push(&open, None);
        if let Err(why) = link.start_worker() {
            link.set_status(Status::Failed(why), 0);
        }
        link
    }

    /// Start the worker on this page's own WASM module and glue: `link-worker.js` imports the
    /// glue, which runs `main`, which sees a worker and takes its messages.
    fn start_worker(&self) -> Result<(), String> {
        let glue = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(GLUE_SELECTOR).ok().flatten())
            .and_then(|link| link.get_attribute("href"))
            .ok_or("this page does not name its script (no modulepreload link)")?;
        let worker = web_sys::Worker::new(WORKER_SCRIPT).map_err(|e| format!("cannot start a worker: {e:?}"))?;
        let weak = Rc::downgrade(&self.0);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            with_link(&weak, |link| link.on_news(messages::read::<FromWorker>(&event.data())));
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // The script did not load or threw: the connection cannot start, and the page says so.
        let on_error = Closure::<dyn FnMut(JsValue)>::new({
            let weak = Rc::downgrade(&self.0);
            move |event: JsValue| {
                let message = js_sys::Reflect::get(&event, &"message".into()).ok().and_then(|m| m.as_string());
                let why = format!("the connection's worker failed: {}", message.unwrap_or_default());
                with_link(&weak, |link| link.set_status(Status::Failed(why), 0));
            }
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let start = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&start, &"glue".into(), &glue.into());
        let _ = js_sys::Reflect::set(&start, &"module".into(), &wasm_bindgen::module());
        worker.post_message(&start).map_err(|e| format!("cannot start a worker: {e:?}"))?;
        let mut inner = self.0.borrow_mut();
        inner.worker = Some(worker);
        inner._on_message = Some(on_message);
        inner._on_error = Some(on_error);
        Ok(())
    }

    pub fn status(&self) -> Status {
        self.0.borrow().status.clone()
    }

    /// Which path carries the connection and its round trip ("via relay · round trip 3 ms").
    pub fn path_summary(&self) -> String {
        self.0.borrow().summary.clone()
    }

    /// Redial now (network back, page restored), unless connected or given up.
    pub fn nudge(&self) {
        self.command(&ToWorker::Nudge, None, true);
    }

    /// The page's connection was probably cut without a close event (back-forward cache).
    pub fn reconnect_now(&self) {
        self.command(&ToWorker::ReconnectNow { why: "the page was restored".into() }, None, true);
    }

    /// End for good: the worker says goodbye on the link and ends.
    pub fn close(&self) {
        self.command(&ToWorker::Close, None, true);
        let mut inner = self.0.borrow_mut();
        inner.direct = None;
        inner.closed = true;
        inner.rooms.clear(); // whoever waits for room stops waiting
        if let Some(worker) = &inner.worker {
            worker.set_onmessage(None);
            worker.set_onerror(None);
        }
    }

    /// Queue a command for the worker: posted now (`at_once`: keys, credit) or at the end of
    /// the task (calls, so that those made together are sealed together).
    fn command(&self, command: &ToWorker, bytes: Option<js_sys::ArrayBuffer>, at_once: bool) {
        self.0.borrow_mut().commands.push(command, bytes);
        if at_once {
            self.post_commands();
        } else if !std::mem::replace(&mut self.0.borrow_mut().post_queued, true) {
            let link = self.clone();
            wasm_bindgen_futures::spawn_local(async move {
                link.0.borrow_mut().post_queued = false;
                link.post_commands();
            });
        }
    }

    fn post_commands(&self) {
        let mut inner = self.0.borrow_mut();
        if !inner.ready || inner.commands.is_empty() {
            return;
        }
        let (message, transfer) = inner.commands.take();
        if let Some(worker) = &inner.worker {
            if let Err(e) = worker.post_message_with_transfer(&message, &transfer) {
                messages::warn(&format!("link: cannot post to the worker: {e:?}"));
            }
        }
    }

    fn set_status(&self, status: Status, generation: u64) {
        let callback = {
            let mut inner = self.0.borrow_mut();
            inner.status = status.clone();
            inner.generation = generation;
            inner.on_status.clone()
        };
        callback.emit((status, generation));
    }

    /// What the worker said, in order. Owners hearing an event may call back into the link:
    /// that only queues commands, so the next event waits for nothing.
    fn on_news(&self, news: Vec<(FromWorker, Option<js_sys::ArrayBuffer>)>) {
        for (item, bytes) in news {
            match item {
                FromWorker::Ready => {
                    self.0.borrow_mut().ready = true;
                    self.post_commands();
                }
                FromWorker::Status { status, generation } => {
                    if matches!(status, Status::Reconnecting { .. } | Status::Failed(_)) {
                        self.0.borrow_mut().direct = None;
                    }
                    self.set_status(status, generation);
                }
                // The status bar shows the path and round trip: say the status again.
                FromWorker::Summary { summary, round_trip_ms } => {
                    let (status, generation) = {
                        let mut inner = self.0.borrow_mut();
                        inner.summary = summary;
                        inner.round_trip_ms = round_trip_ms;
                        (inner.status.clone(), inner.generation)
                    };
                    self.set_status(status, generation);
                }
                FromWorker::Answer { id, answer } => {
                    let waiting = self.0.borrow_mut().answers.remove(&id);
                    if let Some(waiting) = waiting {
                        let _ = waiting.send(answer.map(|response| (response, bytes_of(bytes.as_ref()))));
                    }
                }
                FromWorker::Digest { id, sha256 } => hand_over(&mut self.0.borrow_mut().digests, id, sha256),
                FromWorker::Stream { handle, event } => {
                    let event = event.into_event(bytes.as_ref());
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
                FromWorker::Peer(action) => self.act(action),
                FromWorker::DirectSend => {
                    if let Some(direct) = &self.0.borrow().direct {
                        direct.send(bytes_of(bytes.as_ref()));
                    }
                }
                FromWorker::Room { id } => hand_over(&mut self.0.borrow_mut().rooms, id, ()),
            }
        }
    }

    /// Do what the upgrade asks of the peer connection; what it reports goes to the worker.
    fn act(&self, action: Action) {
        let mut inner = self.0.borrow_mut();
        match action {
            Action::Offer { attempt, ice_servers } => {
                let weak = Rc::downgrade(&self.0);
                let report = Rc::new(move |news: DirectNews, bytes: Option<js_sys::ArrayBuffer>| {
                    with_link(&weak, |link| link.command(&ToWorker::Direct(news), bytes, true))
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

    fn next_id(&self) -> u32 {
        let mut inner = self.0.borrow_mut();
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1).max(1);
        id
    }

    /// An upload's bytes (`bytes`, straight from the file: the page never copies nor hashes
    /// them), hashed in the worker as `hashing` says, and sent as `request`'s payload — or, with
    /// no request, only hashed (bytes the host has). Queued at once, in order with everything
    /// else; the answer to wait for, if a request went.
    pub fn upload_bytes(
        &self,
        request: Option<FsRequest>,
        bytes: js_sys::ArrayBuffer,
        hashing: Hashing,
    ) -> Option<impl std::future::Future<Output = Result<FsResponse, Refused>>> {
        let Some(request) = request else {
            self.command(&ToWorker::Hash { hashing }, Some(bytes), false);
            return None;
        };
        let answer = self.start_call(&Request::Fs(request), Some(bytes), Some(hashing));
        Some(async move { fs_answer(answer.await) })
    }

    /// The digest the worker took of upload `upload`'s bytes, once they all went by.
    pub async fn upload_digest(&self, upload: &str) -> Result<String, String> {
        let id = u64::from(self.next_id());
        let (reply, answer) = oneshot::channel();
        self.0.borrow_mut().digests.insert(id, reply);
        self.command(&ToWorker::FinishDigest { id, upload: upload.to_owned() }, None, false);
        answer.await.map_err(|_| "connection's worker gone".to_owned())?
    }

    /// The upload ended before its digest was asked for: the worker forgets it.
    pub fn forget_upload_digest(&self, upload: &str) {
        self.command(&ToWorker::ForgetDigest { upload: upload.to_owned() }, None, false);
    }

    /// Send a request; the answer comes back through the returned future.
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        self.call_coded(request, payload).await.map_err(String::from)
    }

    /// `call`, keeping the code of a refusal.
    async fn call_coded(&self, request: &Request, payload: Vec<u8>) -> Reply {
        let bytes = (!payload.is_empty()).then(|| buffer_of(&payload));
        self.start_call(request, bytes, None).await
    }

    /// Queue a call with its payload in a buffer (hashed on the way as an upload's, with
    /// `hashing`); its answer to wait for.
    fn start_call(
        &self,
        request: &Request,
        bytes: Option<js_sys::ArrayBuffer>,
        hashing: Option<Hashing>,
    ) -> impl std::future::Future<Output = Reply> {
        let id = u64::from(self.next_id());
        let (reply, answer) = oneshot::channel();
        self.0.borrow_mut().answers.insert(id, reply);
        self.command(&ToWorker::Call { id, request: request.clone(), hashing }, bytes, false);
        async move { answer.await.map_err(|_| Refused { code: None, message: "connection lost".to_owned() })? }
    }

    /// A file service request (`Response::Error` becomes `Err` with its message).
    pub async fn call_fs(&self, request: FsRequest) -> Result<FsResponse, String> {
        self.call_fs_with(request, Vec::new()).await.map_err(String::from)
    }

    /// The same with bytes in the payload (an upload's chunk), and the refusal's code.
    pub async fn call_fs_with(&self, request: FsRequest, payload: Vec<u8>) -> Result<FsResponse, Refused> {
        fs_answer(self.call_coded(&Request::Fs(request), payload).await)
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
        let handle = self.next_id();
        let (reply, answer) = oneshot::channel();
        {
            let mut inner = self.0.borrow_mut();
            inner.answers.insert(u64::from(handle), reply);
            inner.owners.insert(handle, owner);
        }
        self.command(&ToWorker::OpenStream { handle, request: request.clone() }, None, true);
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
    pub fn write_input(&self, handle: u32, bytes: &[u8]) {
        self.command(&ToWorker::Input { handle }, Some(buffer_of(bytes)), true);
    }

    /// Send without waiting for the answer (keystrokes, resizes).
    pub fn send(&self, request: &Request, payload: Vec<u8>) {
        let bytes = (!payload.is_empty()).then(|| buffer_of(&payload));
        self.command(&ToWorker::Send { request: request.clone() }, bytes, true);
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

    /// Until at most `low_water` bytes are unsent: the worker's (to be sealed, or held by its
    /// WebSocket; it answers once that holds, counting everything sent before the ask) and the
    /// data channel's. Bulk senders (uploads) wait for it before they send more, so a keystroke
    /// sent meanwhile never waits behind a pile of file chunks: frames are sealed in order and
    /// cannot be reordered afterwards.
    /// Always after letting the page handle what waits (a key pressed meanwhile is a task of its
    /// own; a chain of resolved promises would never let it in between two chunks).
    pub async fn room_for_bulk(&self, low_water: u32) {
        yield_to_page().await;
        let id = u64::from(self.next_id());
        let (reply, room) = oneshot::channel();
        self.0.borrow_mut().rooms.insert(id, reply);
        self.command(&ToWorker::WantRoom { id, below: low_water }, None, true);
        // No answer: the worker is gone, and so are the sender's calls.
        let _ = room.await;
        loop {
            let direct = self.0.borrow().direct.as_ref().map_or(0, PeerAttempt::unsent_bytes);
            if direct <= low_water {
                return;
            }
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
        self.command(&ToWorker::Consumed { handle, n }, None, true);
    }

    /// Stop hearing stream `handle` (its tab closed); the host is told to stop sending it.
    pub fn forget_stream(&self, handle: u32) {
        self.0.borrow_mut().owners.remove(&handle);
        self.command(&ToWorker::Forget { handle }, None, true);
    }
}

/// Hand `value` to whoever waits under `id` (nobody: they gave up).
fn hand_over<T>(waiting: &mut HashMap<u64, oneshot::Sender<T>>, id: u64, value: T) {
    if let Some(waiting) = waiting.remove(&id) {
        let _ = waiting.send(value);
    }
}

/// A file service call's answer.
fn fs_answer(reply: Reply) -> Result<FsResponse, Refused> {
    match reply? {
        (Response::Fs(answer), _) => Ok(answer),
        (other, _) => Err(Refused { code: None, message: format!("unexpected answer {other:?}") }),
    }
}

fn with_link(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&Link)) {
    if let Some(inner) = weak.upgrade() {
        f(&Link(inner));
    }
}
