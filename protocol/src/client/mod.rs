//! The client side of a Tether connection, sans-IO: what the page and the command line both
//! drive. Bytes, data-channel news and time in; bytes (tagged with their path), peer-connection
//! actions and events out.
//!
//! ```ignore
//! let mut client = Client::new(host_id, identity, secret, RedialPolicy::PAGE);
//! // Output::Event(ClientEvent::Dial): open a WebSocket to the relay, then
//! client.connect(entropy, now_ms);
//! client.handle_relay(&received, now_ms);               // WebSocket messages
//! client.handle_direct(direct_event, now_ms);           // what the peer connection reports
//! let call = client.call(&request, payload)?;           // its answer comes as an event
//! let stream = client.open(&Request::Attach { .. })?;   // so do its bytes, under this handle
//! client.write_input(stream, b"ls\r", now_ms)?;          // keystrokes ride the same stream
//! while let Some(out) = client.poll_output() {
//!     match out {
//!         Output::Transmit { path, bytes } => ..,   // on the relay or the data channel
//!         Output::Peer(action) => ..,               // create, answer or close the peer connection
//!         Output::Event(event) => ..,               // answers, stream events, status
//!     }
//! }
//! if let Some(at) = client.poll_timeout() { /* call handle_timeout then */ }
//! ```
//!
//! Invariants:
//! - Every call gets exactly one `Answer` event: the host's, or a refusal saying the link was
//!   lost. A fire-and-forget request (`send`) gets none; its answer is dropped when it comes.
//! - Stream events carry the stream's handle (the id of the request that opened it), stable
//!   across reconnects; `consumed` and `detach` take the same handle (see `streams`).
//! - Resumable streams (an answered `attach` or `logs`) outlive a lost link: on the next
//!   authenticated connection each is asked for again from its next byte (an attach whose
//!   session ended meanwhile falls back to the log), and goes on under the same handle.
//! - A lost link is dialled again on the policy's back-off (`redial`); a refusal is final.
//! - A data channel is tried on the `upgrade` schedule once the host invites it; the client
//!   says what the peer connection must do (`Output::Peer`), and what it had not delivered when
//!   it failed goes again on the relay. Callers never see which path carried what.
//! - Bytes received for a stream nobody holds are credited back at once, so a closed tab never
//!   holds up the host.
//! - Input (`write_input`) is queued per stream, bounded, and sent in order as the host's credit
//!   allows; what waits when a link is lost goes on the resumed stream.
//! - A shell with a faster AES of its own (the page's worker: WebCrypto) may open and seal long
//!   frames itself (`use_outside_aes`; `poll_open`/`opened`, `poll_seal`/`sealed`); jobs and
//!   results are tagged with the connection they belong to, so one that comes back after a
//!   redial is dropped, and a transport that closes while frames are out to be opened is taken
//!   as closed only once they are all back (the host's last words may be among them).
//! - What callers send (calls, input, credit) is taken from the connection at the next
//!   `poll_output`, all of it at once, so frames sent back to back are sealed as one batch.

mod inbound;
pub mod redial;
pub mod streams;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::api::{ErrorCode, Request, Response};
use crate::channel::{OpenJob, Opened, SealJob, Sealed};
use crate::cmd::cmd_frame;
pub use crate::connection::Path;
use crate::connection::{Connection, Input};
use crate::error::ConnError;
use crate::frame::{Control, Frame, Header};
use crate::handshake::HandshakeEntropy;
use crate::signal::Route;
use crate::stream::{next_request_id, request_stream};
use crate::upgrade::{Action, DirectEvent, Upgrade};

use inbound::ending_of;
use redial::{Backoff, BUSY_HINT, BUSY_RETRY_MS};
pub use redial::{Ending, RedialPolicy, RedialWhen, REVOKED_HINT};
pub use streams::StreamEvent;
use streams::{InputEnd, StreamTable};

/// Everything a client wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Transmit {
        path: Path,
        bytes: Vec<u8>,
    },
    /// Do this with the peer connection (make one and offer, apply the answer, close it).
    Peer(Action),
    Event(ClientEvent),
}

/// What a shell passes on to its callers, or acts on itself.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Open a transport to the relay now, and call `connect` once it is open (or
    /// `transport_closed` if it cannot be).
    Dial,
    /// Authenticated; `generation` counts the connections so far (1 for the first).
    Connected { generation: u64 },
    /// The answer to call `call`.
    Answer { call: u64, answer: Result<(Response, Vec<u8>), Refused> },
    /// Something happened on stream `handle`.
    Stream { handle: u32, event: StreamEvent },
    /// A ping's answer came back after `ms` (the status line shows it).
    RoundTrip { ms: u64 },
    /// The data channel now carries the connection (`Some`), or it is back on the relay.
    PathChanged { route: Option<Route> },
    /// The link is gone: drop the transport. `redial_in_ms` says when a `Dial` follows; `None`
    /// means never (a refusal, a close, or nothing worth resuming).
    Disconnected { why: String, redial_in_ms: Option<u64> },
}

/// A request the host refused, or that could not be asked: the code says which failure it was
/// when the host said so (an editor's save that found the file `changed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl Refused {
    fn local(message: impl Into<String>) -> Refused {
        Refused { code: None, message: message.into() }
    }
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused::local(message)
    }
}

impl From<Refused> for String {
    fn from(refused: Refused) -> String {
        refused.message
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Why a request could not even be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Not connected right now (dialling, or between tries).
    NotConnected,
    /// The connection refused it (too big to seal, …).
    Conn(ConnError),
    /// No such stream open (it ended, or was never opened).
    NoStream,
    /// The stream holds `streams::MAX_QUEUED_INPUT_BYTES` of input already.
    InputQueueFull,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotConnected => f.write_str("not connected"),
            SendError::Conn(e) => write!(f, "cannot send that request: {e}"),
            SendError::NoStream => f.write_str("that stream is not open"),
            SendError::InputQueueFull => {
                write!(f, "more than {} MiB of input is waiting already", streams::MAX_QUEUED_INPUT_BYTES >> 20)
            }
        }
    }
}

/// Where the link stands, as a status line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Dialling or authenticating.
    Connecting,
    Connected,
    /// Lost; dialled again at `at_ms`.
    Waiting {
        at_ms: u64,
        why: String,
    },
    /// Over for good.
    Over(Ending),
}

/// Who waits for an answer.
enum Pending {
    /// A caller: the answer goes out as an event.
    Caller,
    /// Nobody (a keystroke's write, a resize).
    Nobody,
    /// The client itself: a stream it resumed.
    Resume,
}

/// One client of one host.
pub struct Client {
    host_id: String,
    identity: String,
    secret: Vec<u8>,
    status: Status,
    conn: Option<Connection>,
    upgrade: Upgrade,
    backoff: Backoff,
    /// Since when every try has been answered "busy" (`None`: the last was not).
    busy_since_ms: Option<u64>,
    /// The next redial is a retry after "busy".
    busy_retry: bool,
    /// A random walk for busy waits' jitter (`seed_jitter`).
    jitter: u64,
    generation: u64,
    next_id: u64,
    calls: BTreeMap<u64, Pending>,
    streams: StreamTable,
    /// The data channel's route as last told (`PathChanged`).
    route: Option<Route>,
    out: VecDeque<Output>,
    /// Frames were handed to the connection since it was last pumped, at this time: they are
    /// taken (and sealed together) at the next `poll_output`.
    unpumped: Option<u64>,
    /// Frames at least this long are opened and sealed by the shell (`use_outside_aes`).
    outside_from: Option<usize>,
    /// Connections made so far (`connect`): what the shell's AES jobs are tagged with.
    link: u64,
    /// Jobs for the shell's AES, with their link.
    open_jobs: VecDeque<(u64, OpenJob)>,
    seal_jobs: VecDeque<(u64, SealJob)>,
    /// The transport closed (with this reason) while frames were out: taken as closed once
    /// they are back.
    closed_while_opening: Option<Option<String>>,
}

impl Client {
    /// A client for `host_id`, proving `secret` for `identity`. Its first output is `Dial`.
    pub fn new(host_id: &str, identity: &str, secret: &[u8], policy: RedialPolicy) -> Client {
        let mut client = Client {
            host_id: host_id.to_owned(),
            identity: identity.to_owned(),
            secret: secret.to_vec(),
            status: Status::Connecting,
            conn: None,
            upgrade: Upgrade::default(),
            backoff: Backoff::new(policy),
            busy_since_ms: None,
            busy_retry: false,
            jitter: host_id
                .bytes()
                .fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)),
            generation: 0,
            next_id: 1,
            calls: BTreeMap::new(),
            streams: StreamTable::default(),
            route: None,
            out: VecDeque::new(),
            unpumped: None,
            outside_from: None,
            link: 0,
            open_jobs: VecDeque::new(),
            seal_jobs: VecDeque::new(),
            closed_while_opening: None,
        };
        client.event(ClientEvent::Dial);
        client
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn is_connected(&self) -> bool {
        self.status == Status::Connected
    }

    /// Connections authenticated so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// "via relay · round trip 3 ms" (empty while not connected).
    pub fn path_summary(&self) -> String {
        self.conn.as_ref().filter(|c| c.is_open()).map(Connection::path_summary).unwrap_or_default()
    }

    /// The data channel's route, while one carries the connection.
    pub fn direct_route(&self) -> Option<Route> {
        self.conn.as_ref().and_then(Connection::direct_route)
    }

    /// The transport to the relay is open: start the handshake on it.
    pub fn connect(&mut self, entropy: HandshakeEntropy, now_ms: u64) {
        if matches!(self.status, Status::Over(_)) {
            return;
        }
        self.upgrade.restart();
        let mut conn = Connection::client(&self.host_id, &self.identity, &self.secret, entropy, now_ms);
        if let Some(min_bytes) = self.outside_from {
            conn.use_outside_aes(min_bytes);
        }
        self.conn = Some(conn);
        self.link += 1;
        self.open_jobs.clear();
        self.seal_jobs.clear();
        self.closed_while_opening = None;
        self.status = Status::Connecting;
        self.pump(now_ms);
    }

    /// A message from the relay.
    pub fn handle_relay(&mut self, bytes: &[u8], now_ms: u64) {
        let Some(conn) = self.conn.as_mut() else { return };
        let result = conn.handle_input(Input::Bytes(bytes), now_ms);
        self.after(result, now_ms);
    }

    /// What the peer connection reported (its offer, open, bytes, close).
    pub fn handle_direct(&mut self, event: DirectEvent, now_ms: u64) {
        let Some(conn) = self.conn.as_mut() else { return };
        let result = self.upgrade.on_direct(conn, event, now_ms);
        self.after_upgrade(result, now_ms);
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match &self.status {
            Status::Waiting { at_ms, .. } => Some(*at_ms),
            Status::Over(_) => None,
            Status::Connecting | Status::Connected => {
                let conn = self.conn.as_ref().and_then(Connection::poll_timeout);
                [conn, self.upgrade.poll_timeout()].into_iter().flatten().min()
            }
        }
    }

    /// Run the timers: the connection's (keep-alive, idle, handshake, data channel), the
    /// upgrade's, and a redial that is due.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Status::Waiting { at_ms, .. } = self.status {
            if now_ms >= at_ms {
                self.status = Status::Connecting;
                self.event(ClientEvent::Dial);
            }
            return;
        }
        let Some(conn) = self.conn.as_mut() else { return };
        if let Err(error) = conn.handle_timeout(now_ms) {
            return self.lost(ending_of(&error), now_ms);
        }
        let result = self.upgrade.handle_timeout(conn, now_ms);
        self.after_upgrade(result, now_ms);
    }

    /// Open and seal frames of at least `min_bytes` with the shell's own AES, on every
    /// connection from the next one on: take the jobs with `poll_open` and `poll_seal`, hand
    /// back results with `opened` and `sealed`.
    pub fn use_outside_aes(&mut self, min_bytes: usize) {
        self.outside_from = Some(min_bytes);
    }

    /// Bytes sent and not yet put out to transmit (`Connection::unsealed_bytes`; none while
    /// there is no connection).
    pub fn unsealed_bytes(&self) -> usize {
        self.conn.as_ref().map_or(0, Connection::unsealed_bytes)
    }

    /// The next frame for the shell's AES to open, with the link it belongs to.
    pub fn poll_open(&mut self) -> Option<(u64, OpenJob)> {
        if let Some(now_ms) = self.unpumped {
            self.pump(now_ms);
        }
        self.open_jobs.pop_front()
    }

    /// The next frame for the shell's AES to seal, with the link it belongs to.
    pub fn poll_seal(&mut self) -> Option<(u64, SealJob)> {
        if let Some(now_ms) = self.unpumped {
            self.pump(now_ms);
        }
        self.seal_jobs.pop_front()
    }

    /// What the shell's AES made of seal job `ctr` of `link`. One of a link that is gone is
    /// dropped.
    pub fn sealed(&mut self, link: u64, ctr: u64, sealed: Sealed, now_ms: u64) {
        if link != self.link {
            return;
        }
        let Some(conn) = self.conn.as_mut() else { return };
        conn.sealed(ctr, sealed);
        self.after(Ok(()), now_ms);
    }

    /// What the shell's AES made of open job `ctr` of `link`. One of a link that is gone is
    /// dropped.
    pub fn opened(&mut self, link: u64, ctr: u64, opened: Opened, now_ms: u64) {
        if link != self.link {
            return;
        }
        let Some(conn) = self.conn.as_mut() else { return };
        let result = conn.opened(ctr, opened);
        let still_opening = conn.is_opening();
        self.after(result, now_ms);
        if !still_opening {
            if let Some(reason) = self.closed_while_opening.take() {
                self.transport_closed(reason, now_ms);
            }
        }
    }

    /// The transport to the relay closed (with the relay's reason, if it gave one), or could
    /// not be opened.
    pub fn transport_closed(&mut self, reason: Option<String>, now_ms: u64) {
        if !matches!(self.status, Status::Connecting | Status::Connected) {
            return;
        }
        if self.conn.as_ref().is_some_and(Connection::is_opening) {
            self.closed_while_opening = Some(reason);
            return;
        }
        let why = reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "the relay closed the connection".to_owned());
        if why.contains(BUSY_HINT) && self.status == Status::Connecting {
            let since = *self.busy_since_ms.get_or_insert(now_ms);
            self.busy_retry = now_ms.saturating_sub(since) < BUSY_RETRY_MS;
        } else {
            self.busy_since_ms = None;
        }
        let ending = if why.contains(REVOKED_HINT) { Ending::Refused(why) } else { Ending::Lost(why) };
        self.lost(ending, now_ms);
    }

    /// Randomness for the jitter of waits after "busy" (any bits; the shell's random source).
    pub fn seed_jitter(&mut self, seed: u64) {
        self.jitter ^= seed;
    }

    /// The next jitter value (xorshift).
    fn next_jitter(&mut self) -> u64 {
        let mut x = self.jitter | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter = x;
        x
    }

    /// Try now if waiting to redial (the network came back, the page was restored).
    pub fn nudge(&mut self, now_ms: u64) {
        if let Status::Waiting { at_ms, .. } = &mut self.status {
            *at_ms = now_ms;
            self.backoff.reset();
            self.handle_timeout(now_ms);
        }
    }

    /// The transport was probably cut without a close (a page restored from the back-forward
    /// cache): drop it and dial again at once.
    pub fn reconnect_now(&mut self, why: &str, now_ms: u64) {
        if matches!(self.status, Status::Over(_)) {
            return;
        }
        self.backoff.reset();
        if matches!(self.status, Status::Connecting | Status::Connected) {
            self.lost(Ending::Lost(why.to_owned()), now_ms);
        }
        self.nudge(now_ms);
    }

    /// End for good, in order: the host sees a close rather than a cut.
    pub fn close(&mut self, now_ms: u64) {
        if let Some(conn) = self.conn.as_mut().filter(|c| c.is_open()) {
            let _ = conn.close("closed");
        }
        self.pump(now_ms);
        self.lost(Ending::Closed, now_ms);
    }

    /// Send `request`; its answer comes as `ClientEvent::Answer` with the returned call id.
    pub fn call(&mut self, request: &Request, payload: Vec<u8>, now_ms: u64) -> Result<u64, SendError> {
        self.request(request, payload, Pending::Caller, now_ms)
    }

    /// Send `request` and forget its answer (keystrokes, resizes).
    pub fn send(&mut self, request: &Request, payload: Vec<u8>, now_ms: u64) -> Result<(), SendError> {
        self.request(request, payload, Pending::Nobody, now_ms).map(|_| ())
    }

    /// Open a stream (`attach`, `logs`, a watch, a file read): the answer comes as a call's
    /// (`Answer` with the returned id), its bytes as `Stream` events under the same number.
    pub fn open(&mut self, request: &Request, now_ms: u64) -> Result<u32, SendError> {
        let id = self.next_id;
        let handle = request_stream(id).ok_or(SendError::NotConnected)?;
        // Registered before it goes out, so no early data can miss it.
        self.streams.open(handle, request);
        self.request(request, Vec::new(), Pending::Caller, now_ms).inspect_err(|_| {
            self.streams.close(handle);
        })?;
        Ok(handle)
    }

    /// Run a command without a PTY (`exec`): its stdout and stderr come as `Stream` events on
    /// `api::exec_stdout(id)` and `api::exec_stderr(id)`, its exit code as the call's answer.
    pub fn exec(&mut self, request: &Request, now_ms: u64) -> Result<u64, SendError> {
        let id = self.next_id;
        let streams = [crate::stream::exec_stdout(id), crate::stream::exec_stderr(id)];
        for stream in streams {
            self.streams.open_plain(stream);
        }
        self.call(request, Vec::new(), now_ms).inspect_err(|_| {
            for stream in streams {
                self.streams.close(stream);
            }
        })
    }

    fn request(
        &mut self,
        request: &Request,
        payload: Vec<u8>,
        pending: Pending,
        now_ms: u64,
    ) -> Result<u64, SendError> {
        let conn = self.conn.as_mut().filter(|c| c.is_open()).ok_or(SendError::NotConnected)?;
        let id = self.next_id;
        conn.send_frame(&cmd_frame(id, request, payload)).map_err(SendError::Conn)?;
        self.next_id = next_request_id(id);
        self.calls.insert(id, pending);
        self.sent(Ok(()), now_ms);
        Ok(id)
    }

    /// Input toward the host on stream `handle` (keystrokes on an attach, an exec's stdin):
    /// queued, and sent in order as the host's credit allows — so a big paste goes at the
    /// program's pace, and what is typed while the link is down goes once it is back.
    pub fn write_input(&mut self, handle: u32, bytes: &[u8], now_ms: u64) -> Result<(), SendError> {
        let wire = self.streams.wire(handle).ok_or(SendError::NoStream)?;
        if !self.streams.queue_input(wire, bytes) {
            return Err(SendError::InputQueueFull);
        }
        self.send_input(wire, now_ms);
        Ok(())
    }

    /// Bytes of input on stream `handle` not sent yet (a reader of a pipe reads on below some).
    pub fn queued_input(&self, handle: u32) -> usize {
        self.streams.wire(handle).map_or(0, |wire| self.streams.queued_input(wire))
    }

    /// Our input on stream `handle` ends (an exec's stdin closed): `eof` follows what is queued.
    pub fn end_input(&mut self, handle: u32, now_ms: u64) {
        let Some(wire) = self.streams.wire(handle) else { return };
        self.streams.end_input(wire);
        self.send_input(wire, now_ms);
    }

    /// Send what credit allows of the input queued on `wire` (nothing while not connected).
    pub(crate) fn send_input(&mut self, wire: u32, now_ms: u64) {
        let Some(conn) = self.conn.as_mut().filter(|c| c.is_open()) else { return };
        let Some(input) = self.streams.input(wire) else { return };
        let result = conn.send_data(wire, *input.seq, input.bytes).and_then(|sent| {
            *input.seq += sent as u64;
            input.bytes.drain(..sent);
            if *input.end == InputEnd::Ending && input.bytes.is_empty() {
                *input.end = InputEnd::Ended;
                let end = *input.seq;
                conn.send_frame(&Frame::bare(Header::Control(Control::Eof { stream: wire, end })))?;
            }
            Ok(())
        });
        self.sent(result, now_ms);
    }

    /// The owner of stream `handle` has used `n` of its bytes: credit goes back to the host.
    pub fn consumed(&mut self, handle: u32, n: u64, now_ms: u64) {
        let Some(wire) = self.streams.wire(handle) else { return };
        self.credit(wire, n, now_ms);
    }

    fn credit(&mut self, wire: u32, n: u64, now_ms: u64) {
        let Some(conn) = self.conn.as_mut().filter(|c| c.is_open()) else { return };
        let result = conn.consumed(wire, n);
        self.sent(result, now_ms);
    }

    /// Stop hearing stream `handle` (its tab closed); the host is told to stop sending it.
    pub fn detach(&mut self, handle: u32, now_ms: u64) {
        let Some(wire) = self.streams.wire(handle) else { return };
        self.streams.close(wire);
        let _ = self.send(&Request::Detach { stream: wire }, Vec::new(), now_ms);
    }

    /// Streams open now (resumable ones waiting for a connection included).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// What the client wants done next.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(now_ms) = self.unpumped {
            self.pump(now_ms);
        }
        self.out.pop_front()
    }

    fn event(&mut self, event: ClientEvent) {
        self.out.push_back(Output::Event(event));
    }

    /// Frames were handed to the connection: they go when output is next taken, together with
    /// whatever else the caller sends before that (`Sealer::seal_many`); an error at once.
    fn sent(&mut self, result: Result<(), ConnError>, now_ms: u64) {
        match result {
            Ok(()) => self.unpumped = Some(now_ms),
            Err(error) => self.after(Err(error), now_ms),
        }
    }

    fn after(&mut self, result: Result<(), ConnError>, now_ms: u64) {
        match result {
            Ok(()) => self.pump(now_ms),
            Err(error) => {
                self.pump(now_ms);
                self.lost(ending_of(&error), now_ms);
            }
        }
    }

    fn after_upgrade(&mut self, result: Result<Option<Action>, ConnError>, now_ms: u64) {
        match result {
            Ok(action) => {
                if let Some(action) = action {
                    self.out.push_back(Output::Peer(action));
                }
                self.pump(now_ms);
            }
            Err(error) => self.after(Err(error), now_ms),
        }
    }
}
