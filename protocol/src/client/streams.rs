//! The streams a client has open, by the id their owner knows, and where each resumes.
//!
//! A stream is named on the wire by the id of the request that opened it; after a lost link it
//! is asked for again under a new id, so its owner keeps the first one (the stream's *handle*)
//! for as long as the stream lives, whichever connection carries it.
//!
//! Invariants:
//! - A stream is resumable once its opening request was answered (`attach` or `logs`): from
//!   then on every lost link it outlives is followed by the same request from its next byte,
//!   so its owner sees each byte once, in order, with no gap it is not told of.
//! - `next` is the byte after the last one the owner was handed (data or a skip).
//! - Everything else (a listing, a download, a watch) ends with the link that carried it.
//! - Input rides a stream the other way (keystrokes on an attach, as an exec's stdin): bytes
//!   queue here, at most `MAX_QUEUED_INPUT_BYTES`, and go as the host's credit allows, in order.
//!   What waits when a link is lost goes on the resumed stream; what was in flight is gone with
//!   the link (as with any keystroke typed into a dead connection).

use std::collections::BTreeMap;

use crate::api::{Request, Response};

/// Input one stream may hold back while the host's credit runs out or the link is down (a big
/// paste, typing during an outage). Beyond it input is refused, never dropped unsaid.
pub const MAX_QUEUED_INPUT_BYTES: usize = 8 << 20; // 8 MiB

/// What a stream's owner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// New bytes from `seq` on. Call `Client::consumed` once they are used, or the host stalls.
    Data { seq: u64, bytes: Vec<u8> },
    /// The host no longer had bytes `from .. to` for this client (its log still has them).
    Skipped { from: u64, to: u64 },
    /// The stream ended.
    Eof,
    /// Credit came back: more may be sent on it (an exec's stdin).
    Writable,
    /// After a lost link the stream was asked for again from its next byte; this is the host's
    /// answer (an attach's `streaming`, or the `logs` that stand in for a session that ended
    /// while we were away). Output goes on from there.
    Resumed { response: Response },
    /// The link was lost and the stream cannot go on.
    Lost { why: String },
}

#[derive(Debug)]
struct OpenStream {
    /// The id its owner knows.
    handle: u32,
    /// What opened it, to ask again after a lost link (`attach`, `logs`).
    reopen: Option<Request>,
    /// Answered: from now on it is resumed rather than lost with the link.
    resumable: bool,
    next: Option<u64>,
    /// Input not yet sent, and the sequence number of the next input byte on this wire id.
    input: Vec<u8>,
    input_seq: u64,
    input_end: InputEnd,
}

/// Whether our side of a stream goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    Open,
    /// `eof` goes once the queued input has all gone.
    Ending,
    /// `eof` went: no more input.
    Ended,
}

impl OpenStream {
    fn new(handle: u32, reopen: Option<Request>) -> OpenStream {
        OpenStream {
            handle,
            reopen,
            resumable: false,
            next: None,
            input: Vec::new(),
            input_seq: 0,
            input_end: InputEnd::Open,
        }
    }
}

/// Input of one stream, to send as credit allows.
pub struct InputQueue<'a> {
    pub bytes: &'a mut Vec<u8>,
    pub seq: &'a mut u64,
    pub end: &'a mut InputEnd,
}

#[derive(Debug, Default)]
pub struct StreamTable {
    by_wire: BTreeMap<u32, OpenStream>,
}

/// A stream to ask for again on a new connection.
pub struct Resume {
    pub handle: u32,
    pub request: Request,
    /// Input that had not gone yet: it goes on the resumed stream.
    pub input: Vec<u8>,
}

impl StreamTable {
    /// A stream opened by `request` on wire id `wire` (also its handle).
    pub fn open(&mut self, wire: u32, request: &Request) {
        let reopen = matches!(request, Request::Attach { .. } | Request::Logs { .. }).then(|| request.clone());
        self.by_wire.insert(wire, OpenStream::new(wire, reopen));
    }

    /// A stream on `wire` that is not a request's (an exec's stdout and stderr).
    pub fn open_plain(&mut self, wire: u32) {
        self.by_wire.insert(wire, OpenStream::new(wire, None));
    }

    /// Queue `bytes` of input on the stream on `wire`; false when it would hold more than
    /// `MAX_QUEUED_INPUT_BYTES`, or its input has ended (nothing is queued then).
    pub fn queue_input(&mut self, wire: u32, bytes: &[u8]) -> bool {
        let Some(stream) = self.by_wire.get_mut(&wire) else { return false };
        if stream.input_end != InputEnd::Open || stream.input.len() + bytes.len() > MAX_QUEUED_INPUT_BYTES {
            return false;
        }
        stream.input.extend_from_slice(bytes);
        true
    }

    /// Our input on `wire` ends once what is queued has gone.
    pub fn end_input(&mut self, wire: u32) {
        if let Some(stream) = self.by_wire.get_mut(&wire).filter(|s| s.input_end == InputEnd::Open) {
            stream.input_end = InputEnd::Ending;
        }
    }

    /// The input waiting on `wire`, to send what credit allows.
    pub fn input(&mut self, wire: u32) -> Option<InputQueue<'_>> {
        let stream = self.by_wire.get_mut(&wire)?;
        Some(InputQueue { bytes: &mut stream.input, seq: &mut stream.input_seq, end: &mut stream.input_end })
    }

    /// Bytes of input queued on `wire`.
    pub fn queued_input(&self, wire: u32) -> usize {
        self.by_wire.get(&wire).map_or(0, |s| s.input.len())
    }

    /// Wire ids with input waiting.
    pub fn with_input(&self) -> Vec<u32> {
        let waiting = |s: &OpenStream| !s.input.is_empty() || s.input_end == InputEnd::Ending;
        self.by_wire.iter().filter(|(_, s)| waiting(s)).map(|(&wire, _)| wire).collect()
    }

    /// Its opening request was answered: resumable from now on (if of a kind that can be).
    pub fn answered(&mut self, wire: u32) {
        if let Some(stream) = self.by_wire.get_mut(&wire) {
            stream.resumable = stream.reopen.is_some();
        }
    }

    /// The handle of the stream on `wire`, if one is open there.
    pub fn handle(&self, wire: u32) -> Option<u32> {
        self.by_wire.get(&wire).map(|s| s.handle)
    }

    /// The wire id of the stream its owner calls `handle`.
    pub fn wire(&self, handle: u32) -> Option<u32> {
        self.by_wire.iter().find(|(_, s)| s.handle == handle).map(|(&wire, _)| wire)
    }

    /// Bytes up to `end` were handed to its owner.
    pub fn advanced(&mut self, wire: u32, end: u64) {
        if let Some(stream) = self.by_wire.get_mut(&wire) {
            stream.next = Some(end);
        }
    }

    /// The stream on `wire` is over; its handle.
    pub fn close(&mut self, wire: u32) -> Option<u32> {
        self.by_wire.remove(&wire).map(|s| s.handle)
    }

    /// Whether any stream would be resumed after a lost link.
    pub fn any_resumable(&self) -> bool {
        self.by_wire.values().any(|s| s.resumable)
    }

    /// The link is lost: the handles of the streams that end with it (all of them when
    /// `keep_resumable` is false); the resumable ones wait for `take_resumes`.
    pub fn lose(&mut self, keep_resumable: bool) -> Vec<u32> {
        let lost: Vec<u32> =
            self.by_wire.iter().filter(|(_, s)| !(keep_resumable && s.resumable)).map(|(&wire, _)| wire).collect();
        lost.into_iter().filter_map(|wire| self.close(wire)).collect()
    }

    /// The requests that resume every waiting stream from its next byte; each is then
    /// registered again under its new wire id with `reopened`.
    pub fn take_resumes(&mut self) -> Vec<Resume> {
        std::mem::take(&mut self.by_wire)
            .into_values()
            .filter_map(|stream| {
                let request = from_byte(stream.reopen?, stream.next);
                Some(Resume { handle: stream.handle, request, input: stream.input })
            })
            .collect()
    }

    /// A resumed stream's request went out as `wire`. `next` carries over from the request.
    pub fn reopened(&mut self, wire: u32, resume: Resume) {
        let next = match &resume.request {
            Request::Attach { from, .. } | Request::Logs { from, .. } => *from,
            _ => None,
        };
        let mut stream = OpenStream::new(resume.handle, Some(resume.request));
        (stream.resumable, stream.next, stream.input) = (true, next, resume.input);
        self.by_wire.insert(wire, stream);
    }

    /// A resumed stream was refused. An attach refused because its session ended meanwhile is
    /// followed by its log from the next byte: the request to send instead (registered with
    /// `reopened`). Anything else ends the stream: `Err` with its handle.
    pub fn refused(&mut self, wire: u32) -> Option<Result<Resume, u32>> {
        let stream = self.by_wire.remove(&wire)?;
        Some(match stream.reopen {
            // The log takes no input: what was typed for the ended session goes with it.
            Some(Request::Attach { session, .. }) => Ok(Resume {
                handle: stream.handle,
                request: Request::Logs { session, follow: true, from: stream.next },
                input: Vec::new(),
            }),
            _ => Err(stream.handle),
        })
    }

    pub fn len(&self) -> usize {
        self.by_wire.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_wire.is_empty()
    }
}

/// `request` asked again from byte `next`.
fn from_byte(request: Request, next: Option<u64>) -> Request {
    match request {
        Request::Attach { session, cols, rows, .. } => Request::Attach { session, from: next, cols, rows },
        Request::Logs { session, follow, .. } => Request::Logs { session, follow, from: next },
        other => other,
    }
}
