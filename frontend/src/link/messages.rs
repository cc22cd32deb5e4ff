//! What the page and its link worker say to each other: commands in (`ToWorker`), news out
//! (`FromWorker`), each a JSON header and, where there are bytes, an `ArrayBuffer` beside it.
//!
//! Invariants:
//! - A message is a batch: a JS array of `[header, bytes]` pairs, handled in order. `header` is
//!   the JSON of one `ToWorker` or `FromWorker`; `bytes` is an `ArrayBuffer` or `null`.
//! - Bytes are transferred, never copied by `postMessage`: the sender gives its buffer up.
//! - Only plaintext the page itself made or will show crosses here, inside one browser tab;
//!   secrets cross once (the host's secret, to the worker that proves it).
//! - A malformed item (never expected: both ends are this one WASM build) is dropped with a
//!   console warning, never a panic.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tether_protocol::api::{Request, Response};
use tether_protocol::client::{Refused, StreamEvent};
use tether_protocol::signal::Route;
use tether_protocol::upgrade::{Action, DirectEvent};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::Status;

/// The page's commands to its link worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// The first command: whom to reach, as whom.
    Open {
        relay: String,
        host_id: String,
        identity: String,
        secret: Vec<u8>,
    },
    /// A call; its answer comes back as `Answer { id }`. Bytes: the payload — with `hashing`,
    /// an upload's bytes, hashed here on their way.
    Call {
        id: u64,
        request: Request,
        hashing: Option<Hashing>,
    },
    /// Bytes: an upload's bytes the host already has, only hashed.
    Hash {
        hashing: Hashing,
    },
    /// An upload's digest, once all its bytes were hashed; it comes back as `Digest { id }`, and
    /// the worker forgets the upload.
    FinishDigest {
        id: u64,
        upload: String,
    },
    /// Answer `Room { id }` once at most `below` bytes are unsent (to be sealed, or held by
    /// the WebSocket), counting everything the page sent before this: what a bulk sender waits
    /// for before it sends more.
    WantRoom {
        id: u64,
        below: u32,
    },
    /// The upload ended otherwise (cancelled, failed): forget its digest.
    ForgetDigest {
        upload: String,
    },
    /// A request whose answer nobody waits for. Bytes: the payload.
    Send {
        request: Request,
    },
    /// Open a stream under the page's `handle`; its answer comes as `Answer { id: handle }`.
    OpenStream {
        handle: u32,
        request: Request,
    },
    /// Input on stream `handle`. Bytes: the input.
    Input {
        handle: u32,
    },
    Consumed {
        handle: u32,
        n: u64,
    },
    Forget {
        handle: u32,
    },
    Nudge,
    ReconnectNow {
        why: String,
    },
    Close,
    /// What the page's peer connection reports (it lives in the page: workers have none).
    Direct(DirectNews),
}

/// Where bytes beside a command sit in an upload, to be hashed in the worker
/// (`transfer::UploadDigest`) so the page's main thread never hashes a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hashing {
    /// The upload's name on the host.
    pub upload: String,
    /// The whole file's size.
    pub size: u64,
    /// The bytes' offset in the file (0: an attempt starts, the digest anew).
    pub offset: u64,
}

/// `upgrade::DirectEvent`, its bytes beside the header.
#[derive(Debug, Serialize, Deserialize)]
pub enum DirectNews {
    Description {
        attempt: u32,
        sdp: String,
    },
    Open {
        attempt: u32,
        route: Route,
    },
    /// Bytes: what came over the data channel.
    Bytes {
        attempt: u32,
    },
    Closed {
        attempt: u32,
        why: String,
    },
}

/// The worker's news for the page.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker runs and takes commands.
    Ready,
    Status {
        status: Status,
        generation: u64,
    },
    /// The path and round trip the status bar shows ("via relay · round trip 3 ms").
    Summary {
        summary: String,
        round_trip_ms: u64,
    },
    /// A call's or a stream's answer. Bytes: the payload.
    Answer {
        id: u64,
        answer: Result<Response, Refused>,
    },
    /// An upload's digest (`FinishDigest`), or why there is none.
    Digest {
        id: u64,
        sha256: Result<String, String>,
    },
    /// Something happened on stream `handle`.
    Stream {
        handle: u32,
        event: StreamNews,
    },
    /// Do this with the peer connection.
    Peer(Action),
    /// Bytes: sealed bytes for the data channel.
    DirectSend,
    /// At most the `below` of `WantRoom { id }` is unsent now.
    Room {
        id: u64,
    },
}

/// `client::StreamEvent`, its bytes beside the header.
#[derive(Debug, Serialize, Deserialize)]
pub enum StreamNews {
    /// Bytes: the data.
    Data {
        seq: u64,
    },
    Skipped {
        from: u64,
        to: u64,
    },
    Eof,
    Writable,
    Resumed {
        response: Response,
    },
    Lost {
        why: String,
    },
}

impl DirectNews {
    /// The event the protocol's client hears, with the bytes that came beside it.
    pub fn into_event(self, bytes: Option<&js_sys::ArrayBuffer>) -> DirectEvent {
        match self {
            DirectNews::Description { attempt, sdp } => DirectEvent::Description { attempt, sdp },
            DirectNews::Open { attempt, route } => DirectEvent::Open { attempt, route },
            DirectNews::Bytes { attempt } => DirectEvent::Bytes { attempt, bytes: bytes_of(bytes) },
            DirectNews::Closed { attempt, why } => DirectEvent::Closed { attempt, why },
        }
    }
}

impl StreamNews {
    /// A stream event as it crosses: the header, and its bytes in a buffer to transfer.
    pub fn of_event(event: StreamEvent) -> (StreamNews, Option<js_sys::ArrayBuffer>) {
        match event {
            StreamEvent::Data { seq, bytes } => (StreamNews::Data { seq }, Some(buffer_of(&bytes))),
            StreamEvent::Skipped { from, to } => (StreamNews::Skipped { from, to }, None),
            StreamEvent::Eof => (StreamNews::Eof, None),
            StreamEvent::Writable => (StreamNews::Writable, None),
            StreamEvent::Resumed { response } => (StreamNews::Resumed { response }, None),
            StreamEvent::Lost { why } => (StreamNews::Lost { why }, None),
        }
    }

    /// The event again, with the bytes that came beside it.
    pub fn into_event(self, bytes: Option<&js_sys::ArrayBuffer>) -> StreamEvent {
        match self {
            StreamNews::Data { seq } => StreamEvent::Data { seq, bytes: bytes_of(bytes) },
            StreamNews::Skipped { from, to } => StreamEvent::Skipped { from, to },
            StreamNews::Eof => StreamEvent::Eof,
            StreamNews::Writable => StreamEvent::Writable,
            StreamNews::Resumed { response } => StreamEvent::Resumed { response },
            StreamNews::Lost { why } => StreamEvent::Lost { why },
        }
    }
}

/// Items gathered to go as one message.
#[derive(Default)]
pub struct Batch {
    items: Vec<(String, Option<js_sys::ArrayBuffer>)>,
}

impl Batch {
    pub fn push(&mut self, header: &impl Serialize, bytes: Option<js_sys::ArrayBuffer>) {
        match serde_json::to_string(header) {
            Ok(json) => self.items.push((json, bytes)),
            Err(e) => warn(&format!("link: cannot encode a message: {e}")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The message and its transfer list, leaving the batch empty.
    pub fn take(&mut self) -> (js_sys::Array, js_sys::Array) {
        let (message, transfer) = (js_sys::Array::new(), js_sys::Array::new());
        for (header, bytes) in self.items.drain(..) {
            let bytes: JsValue = match bytes {
                Some(buffer) => {
                    transfer.push(&buffer);
                    buffer.into()
                }
                None => JsValue::NULL,
            };
            message.push(&js_sys::Array::of2(&header.into(), &bytes));
        }
        (message, transfer)
    }
}

/// A copy of `bytes` in a buffer of its own, to transfer.
pub fn buffer_of(bytes: &[u8]) -> js_sys::ArrayBuffer {
    js_sys::Uint8Array::from(bytes).buffer()
}

/// The bytes of a transferred buffer (none: empty).
pub fn bytes_of(buffer: Option<&js_sys::ArrayBuffer>) -> Vec<u8> {
    buffer.map(|b| js_sys::Uint8Array::new(b).to_vec()).unwrap_or_default()
}

/// The items of a message, in order.
pub fn read<T: DeserializeOwned>(data: &JsValue) -> Vec<(T, Option<js_sys::ArrayBuffer>)> {
    let Some(items) = data.dyn_ref::<js_sys::Array>() else {
        warn("link: a message that is not a batch");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let item = item.dyn_into::<js_sys::Array>().ok()?;
            let header = item.get(0).as_string()?;
            match serde_json::from_str(&header) {
                Ok(header) => Some((header, item.get(1).dyn_into::<js_sys::ArrayBuffer>().ok())),
                Err(e) => {
                    warn(&format!("link: cannot read a message: {e}"));
                    None
                }
            }
        })
        .collect()
}

pub fn warn(message: &str) {
    web_sys::console::warn_1(&message.into());
}
