//! The link worker: a dedicated Worker running this same WASM build, holding one host's
//! protocol `Client` and its WebSocket to the relay. Sealing, opening, reordering, redials and
//! timers all run here, off the page's main thread; the page sends commands and hears plaintext
//! (`messages`). The data channel stays in the page (Chromium has no `RTCPeerConnection` in a
//! worker): its sealed bytes cross to here to be opened, and sealed bytes cross back to be sent.
//!
//! Invariants:
//! - One worker, one `Client`, one host. Commands are handled in the order the page made them;
//!   a message's commands all go in before the client is drained, so what the page asked for
//!   in one task (an upload's chunks) is sealed as one batch.
//! - Everything the client puts out after a message, a socket event or a timer goes back as one
//!   message, in the client's order.
//! - Handles and call ids are the page's: the worker maps them to the client's and back, and
//!   forgets a stream's mapping when it ends.
//! - `Close` is the last command: the worker says goodbye on the link and ends itself.
//! - An upload's bytes are hashed here, in the order the page sent them, on their way to being
//!   sealed; the page asks for the digest to commit with (`FinishDigest`).
//! - Long frames are opened and sealed by WebCrypto (`native_aes`) where the browser has it;
//!   the client puts what comes back in counter order, so the page hears the same events in the
//!   same order, and the host gets the same frames in the same order, either way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use tether_protocol::client::{Client, ClientEvent, Output, Path, RedialPolicy};
use tether_protocol::identity::HostAddress;
use tether_protocol::transfer::UploadDigest;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, DedicatedWorkerGlobalScope, MessageEvent, WebSocket};

use super::messages::{self, buffer_of, bytes_of, Batch, FromWorker, Hashing, StreamNews, ToWorker};
use super::native_aes::{NativeAes, NATIVE_AES_MIN_BYTES};
use super::Status;
use crate::timer::{now_ms, Timer};

/// How often the worker looks whether its WebSocket drained, while the page waits for room.
const ROOM_POLL_MS: u32 = 1;

/// Whether this code runs in a dedicated worker (and not in the page).
pub fn is_worker() -> bool {
    web_sys::window().is_none() && js_sys::global().dyn_ref::<DedicatedWorkerGlobalScope>().is_some()
}

/// Take the worker's messages from now on, and tell the page.
pub fn run() {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let worker: Rc<RefCell<Option<Shared>>> = Rc::default();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        on_commands(&worker, messages::read::<ToWorker>(&event.data()));
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget(); // the worker's handler for as long as it lives
    let mut ready = Batch::default();
    ready.push(&FromWorker::Ready, None);
    post(&mut ready);
}

type Shared = Rc<RefCell<LinkWorker>>;

struct LinkWorker {
    client: Client,
    address: HostAddress,
    socket: Option<Socket>,
    timer: Option<Timer>,
    /// The client's call ids and the page's, for calls and stream answers alike.
    calls: HashMap<u64, u64>,
    /// Stream handles: the page's to the client's, and back.
    to_client: HashMap<u32, u32>,
    to_page: HashMap<u32, u32>,
    /// The summary and round trip the page was last told.
    summary: String,
    round_trip_ms: u64,
    /// The page's asks for room (`WantRoom`: id, below), and the timer that looks again.
    room_wanted: Vec<(u64, u32)>,
    room_poll: Option<Timer>,
    /// Uploads under way, by name: their digests so far.
    digests: HashMap<String, UploadDigest>,
    /// WebCrypto's AES for long frames (`None` without WebCrypto: all open in WASM).
    native_aes: Option<NativeAes>,
    out: Batch,
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

fn on_commands(worker: &Rc<RefCell<Option<Shared>>>, commands: Vec<(ToWorker, Option<js_sys::ArrayBuffer>)>) {
    let mut closing = false;
    for (command, bytes) in commands {
        if let ToWorker::Open { relay, host_id, identity, secret } = command {
            let address = HostAddress { relay, host_id };
            *worker.borrow_mut() = Some(LinkWorker::open(address, identity, secret));
            continue;
        }
        let Some(shared) = worker.borrow().clone() else {
            messages::warn("link worker: a command before Open");
            continue;
        };
        closing |= matches!(command, ToWorker::Close);
        shared.borrow_mut().command(command, bytes.as_ref());
    }
    let shared = worker.borrow().clone();
    if let Some(shared) = shared {
        flush(&shared);
        if closing {
            shared.borrow_mut().socket = None;
            js_sys::global().unchecked_into::<DedicatedWorkerGlobalScope>().close();
        }
    }
}

impl LinkWorker {
    fn open(address: HostAddress, identity: String, secret: Vec<u8>) -> Shared {
        let mut client = Client::new(&address.host_id, &identity, &secret, RedialPolicy::PAGE);
        client.seed_jitter(crate::browser::random_u64());
        let native_aes = NativeAes::new();
        if native_aes.is_some() {
            client.use_outside_aes(NATIVE_AES_MIN_BYTES);
        }
        Rc::new(RefCell::new(LinkWorker {
            client,
            address,
            socket: None,
            timer: None,
            calls: HashMap::new(),
            to_client: HashMap::new(),
            to_page: HashMap::new(),
            summary: String::new(),
            round_trip_ms: 0,
            room_wanted: Vec::new(),
            room_poll: None,
            digests: HashMap::new(),
            native_aes,
            out: Batch::default(),
        }))
    }

    fn command(&mut self, command: ToWorker, bytes: Option<&js_sys::ArrayBuffer>) {
        let now = now_ms();
        match command {
            ToWorker::Open { .. } => {}
            ToWorker::Call { id, request, hashing } => {
                let payload = bytes_of(bytes);
                let called = match hashing {
                    Some(hashing) => self.hash(hashing, &payload),
                    None => Ok(()),
                }
                .and_then(|()| self.client.call(&request, payload, now).map_err(|e| e.to_string()));
                match called {
                    Ok(call) => {
                        self.calls.insert(call, id);
                    }
                    Err(why) => self.answer(id, Err(why.into()), Vec::new()),
                }
            }
            // A failure spoils the upload's digest: `FinishDigest` says why.
            ToWorker::Hash { hashing } => {
                if let Err(why) = self.hash(hashing, &bytes_of(bytes)) {
                    messages::warn(&format!("upload not hashed: {why}"));
                }
            }
            ToWorker::FinishDigest { id, upload } => {
                let sha256 = match self.digests.remove(&upload) {
                    Some(digest) => digest.finish().map_err(String::from),
                    None => Err("nothing of this upload was hashed".to_owned()),
                };
                self.out.push(&FromWorker::Digest { id, sha256 }, None);
            }
            ToWorker::WantRoom { id, below } => self.room_wanted.push((id, below)),
            ToWorker::ForgetDigest { upload } => {
                self.digests.remove(&upload);
            }
            ToWorker::Send { request } => {
                let _ = self.client.send(&request, bytes_of(bytes), now);
            }
            ToWorker::OpenStream { handle, request } => match self.client.open(&request, now) {
                Ok(ours) => {
                    self.calls.insert(u64::from(ours), u64::from(handle));
                    self.to_client.insert(handle, ours);
                    self.to_page.insert(ours, handle);
                }
                Err(e) => self.answer(u64::from(handle), Err(e.to_string().into()), Vec::new()),
            },
            ToWorker::Input { handle } => {
                let written = match self.to_client.get(&handle) {
                    Some(&ours) => self.client.write_input(ours, &bytes_of(bytes), now).map_err(|e| e.to_string()),
                    None => Err("that stream is not open".to_owned()),
                };
                if let Err(why) = written {
                    messages::warn(&format!("input not delivered: {why}"));
                }
            }
            ToWorker::Consumed { handle, n } => {
                if let Some(&ours) = self.to_client.get(&handle) {
                    self.client.consumed(ours, n, now);
                }
            }
            ToWorker::Forget { handle } => {
                if let Some(ours) = self.to_client.remove(&handle) {
                    self.to_page.remove(&ours);
                    self.client.detach(ours, now);
                }
            }
            ToWorker::Nudge => self.client.nudge(now),
            ToWorker::ReconnectNow { why } => self.client.reconnect_now(&why, now),
            ToWorker::Close => self.client.close(now),
            ToWorker::Direct(news) => {
                self.client.handle_direct(news.into_event(bytes), now);
            }
        }
    }

    /// Hash an upload's bytes on their way (`transfer::UploadDigest`: in order, offset 0 starts
    /// anew).
    fn hash(&mut self, hashing: Hashing, bytes: &[u8]) -> Result<(), String> {
        let digest = self.digests.entry(hashing.upload).or_insert_with(|| UploadDigest::new(hashing.size));
        digest.update(hashing.offset, bytes).map_err(String::from)
    }

    fn answer(
        &mut self,
        id: u64,
        answer: Result<tether_protocol::api::Response, tether_protocol::client::Refused>,
        payload: Vec<u8>,
    ) {
        let bytes = (!payload.is_empty()).then(|| buffer_of(&payload));
        self.out.push(&FromWorker::Answer { id, answer }, bytes);
    }

    fn set_status(&mut self, status: Status) {
        self.out.push(&FromWorker::Status { status, generation: self.client.generation() }, None);
    }

    /// Tell the page the path and round trip when either changed.
    fn tell_summary(&mut self, round_trip_ms: Option<u64>) {
        let summary = self.client.path_summary();
        let round_trip_ms = round_trip_ms.unwrap_or(self.round_trip_ms);
        if summary != self.summary || round_trip_ms != self.round_trip_ms {
            self.summary = summary.clone();
            self.round_trip_ms = round_trip_ms;
            self.out.push(&FromWorker::Summary { summary, round_trip_ms }, None);
        }
    }

    fn on_event(&mut self, event: ClientEvent) -> bool {
        match event {
            ClientEvent::Dial => return true,
            ClientEvent::Connected { .. } => self.set_status(Status::Connected),
            ClientEvent::RoundTrip { ms } => self.tell_summary(Some(ms)),
            ClientEvent::PathChanged { .. } => self.tell_summary(None),
            ClientEvent::Answer { call, answer } => {
                let Some(id) = self.calls.remove(&call) else { return false };
                match answer {
                    Ok((response, payload)) => self.answer(id, Ok(response), payload),
                    Err(refused) => {
                        // A stream that was never opened is forgotten.
                        if let Some(ours) = u32::try_from(call).ok().filter(|c| self.to_page.contains_key(c)) {
                            self.to_page.remove(&ours);
                            self.to_client.remove(&(id as u32));
                        }
                        self.answer(id, Err(refused), Vec::new())
                    }
                }
            }
            ClientEvent::Stream { handle, event } => {
                let Some(&page) = self.to_page.get(&handle) else { return false };
                let (news, bytes) = StreamNews::of_event(event);
                if matches!(news, StreamNews::Eof | StreamNews::Lost { .. }) {
                    self.to_page.remove(&handle);
                    self.to_client.remove(&page);
                }
                self.out.push(&FromWorker::Stream { handle: page, event: news }, bytes);
            }
            ClientEvent::Disconnected { why, redial_in_ms } => {
                self.socket = None;
                self.set_status(match redial_in_ms {
                    Some(ms) => Status::Reconnecting { in_ms: ms.min(u64::from(u32::MAX)) as u32, why },
                    None => Status::Failed(why),
                });
            }
        }
        false
    }

    /// Bytes sent and not gone yet: to be sealed (`Client::unsealed_bytes`), or held by the
    /// WebSocket.
    fn unsent_bytes(&self) -> u32 {
        let held = self.socket.as_ref().map_or(0, |socket| socket.ws.buffered_amount());
        held.saturating_add(u32::try_from(self.client.unsealed_bytes()).unwrap_or(u32::MAX))
    }
}

/// Do what the client asks and send the page what it has to say; then re-arm the client's
/// timer.
fn flush(shared: &Shared) {
    loop {
        let out = shared.borrow_mut().client.poll_output();
        let Some(out) = out else {
            if !run_native_aes(shared) {
                break;
            }
            continue;
        };
        match out {
            Output::Transmit { path: Path::Relay, bytes } => {
                // Not on a socket already closing (the relay or the network ended it; its close
                // event, still to come, tells the client): Chromium would only log an error.
                if let Some(socket) = shared.borrow().socket.as_ref().filter(|s| s.ws.ready_state() == WebSocket::OPEN)
                {
                    let _ = socket.ws.send_with_u8_array(&bytes);
                }
            }
            Output::Transmit { path: Path::Direct, bytes } => {
                shared.borrow_mut().out.push(&FromWorker::DirectSend, Some(buffer_of(&bytes)));
            }
            Output::Peer(action) => shared.borrow_mut().out.push(&FromWorker::Peer(action), None),
            Output::Event(event) => {
                let dial = shared.borrow_mut().on_event(event);
                if dial {
                    dial_relay(shared);
                }
            }
        }
    }
    arm_timer(shared);
    answer_room_wanted(shared);
    post(&mut shared.borrow_mut().out);
}

/// Hand the client's open and seal jobs to WebCrypto; each result goes back to the client as
/// it comes (it keeps counter order). Whether there were any.
fn run_native_aes(shared: &Shared) -> bool {
    let mut any = false;
    loop {
        let mut worker = shared.borrow_mut();
        let worker = &mut *worker;
        // The client is told to use an outside AES only when WebCrypto is there.
        let Some(aes) = worker.native_aes.as_mut() else { return any };
        if let Some((link, job)) = worker.client.poll_open() {
            let ctr = job.ctr();
            back_to_client(shared, aes.open(link, job), move |client, opened| {
                client.opened(link, ctr, opened, now_ms())
            });
        } else if let Some((link, job)) = worker.client.poll_seal() {
            let ctr = job.ctr();
            back_to_client(shared, aes.seal(link, job), move |client, sealed| {
                client.sealed(link, ctr, sealed, now_ms())
            });
        } else {
            return any;
        }
        any = true;
    }
}

/// Once `result` is ready, hand it to the client and do what it then asks.
fn back_to_client<T: 'static>(
    shared: &Shared,
    result: impl std::future::Future<Output = T> + 'static,
    deliver: impl FnOnce(&mut Client, T) + 'static,
) {
    let weak = Rc::downgrade(shared);
    wasm_bindgen_futures::spawn_local(async move {
        let result = result.await;
        with_worker(&weak, |shared| {
            deliver(&mut shared.borrow_mut().client, result);
            flush(shared);
        });
    });
}

fn arm_timer(shared: &Shared) {
    let mut worker = shared.borrow_mut();
    let Some(at) = worker.client.poll_timeout() else {
        worker.timer = None;
        return;
    };
    let weak = Rc::downgrade(shared);
    worker.timer = Timer::after(at.saturating_sub(now_ms()) as u32, move || {
        with_worker(&weak, |shared| {
            shared.borrow_mut().client.handle_timeout(now_ms());
            flush(shared);
        })
    });
}

/// Answer the page's asks for room that hold now, and look again soon while any wait (the
/// WebSocket drains without telling).
fn answer_room_wanted(shared: &Shared) {
    let mut worker = shared.borrow_mut();
    if worker.room_wanted.is_empty() {
        return;
    }
    let unsent = worker.unsent_bytes();
    let (room, waiting): (Vec<_>, Vec<_>) = worker.room_wanted.drain(..).partition(|&(_, below)| unsent <= below);
    worker.room_wanted = waiting;
    for (id, _) in room {
        worker.out.push(&FromWorker::Room { id }, None);
    }
    if worker.room_wanted.is_empty() {
        worker.room_poll = None;
    } else if worker.room_poll.is_none() {
        let weak = Rc::downgrade(shared);
        worker.room_poll = Timer::after(ROOM_POLL_MS, move || {
            with_worker(&weak, |shared| {
                shared.borrow_mut().room_poll = None;
                answer_room_wanted(shared);
                post(&mut shared.borrow_mut().out);
            })
        });
    }
}

fn dial_relay(shared: &Shared) {
    let url = shared.borrow().address.client_ws_url();
    let closed = |shared: &Shared, why: String| {
        shared.borrow_mut().client.transport_closed(Some(why), now_ms());
    };
    let url = match url {
        Ok(url) => url,
        Err(e) => return closed(shared, e),
    };
    shared.borrow_mut().set_status(Status::Connecting);
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(_) => return closed(shared, "cannot open a WebSocket".into()),
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let weak = Rc::downgrade(shared);
    let on_open = Closure::<dyn FnMut()>::new({
        let weak = weak.clone();
        move || {
            with_worker(&weak, |shared| {
                let entropy = crate::browser::entropy();
                let mut worker = shared.borrow_mut();
                match entropy {
                    Ok(entropy) => worker.client.connect(entropy, now_ms()),
                    Err(e) => {
                        worker.socket = None;
                        worker.client.transport_closed(Some(e), now_ms());
                    }
                }
                drop(worker);
                flush(shared);
            })
        }
    });
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |event: MessageEvent| {
            if let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() {
                let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
                with_worker(&weak, |shared| {
                    shared.borrow_mut().client.handle_relay(&bytes, now_ms());
                    flush(shared);
                });
            }
        }
    });
    let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
        with_worker(&weak, |shared| {
            let mut worker = shared.borrow_mut();
            worker.socket = None;
            worker.client.transport_closed(Some(event.reason()), now_ms());
            drop(worker);
            flush(shared);
        });
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    shared.borrow_mut().socket = Some(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close });
}

fn post(batch: &mut Batch) {
    if batch.is_empty() {
        return;
    }
    let (message, transfer) = batch.take();
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    if let Err(e) = scope.post_message_with_transfer(&message, &transfer) {
        messages::warn(&format!("link worker: cannot post to the page: {e:?}"));
    }
}

fn with_worker(weak: &Weak<RefCell<LinkWorker>>, f: impl FnOnce(&Shared)) {
    if let Some(shared) = weak.upgrade() {
        f(&shared);
    }
}
