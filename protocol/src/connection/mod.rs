//! The sans-IO connection: bytes and time in, events and bytes out (after str0m's `Rtc`).
//!
//! ```ignore
//! let mut conn = Connection::client(host_id, "invite", secret, entropy, now_ms);
//! conn.handle_input(Input::Bytes(&received), now_ms)?;   // from the relay
//! conn.handle_input(Input::Direct(&message), now_ms)?;   // from a data channel, once open
//! conn.send_data(stream, seq, &bytes)?;                  // application data in
//! while let Some(out) = conn.poll_output() {             // everything out, in one queue
//!     match out {
//!         Output::Transmit { path: Path::Relay, bytes } => ..,  // to the relay
//!         Output::Transmit { path: Path::Direct, bytes } => .., // to the data channel
//!         Output::Event(ev) => ..,
//!     }
//! }
//! if let Some(at) = conn.poll_timeout() { /* call handle_timeout(at) then */ }
//! ```
//!
//! The connection owns framing, the handshake (`handshake`), the secure channel, the stream
//! table with its cursors and flow-control windows (`streams`), the two paths a channel may run
//! over (`paths`) and keep-alives and round trips (`liveness`). It owns no sockets, tasks or
//! clocks: the caller passes a monotonic millisecond clock (`now_ms`) of its choosing, which is
//! all WASM and tests need. Clients drive it through `crate::client::Client`; the host drives it
//! itself.
//!
//! Invariants:
//! - Before authentication only `auth` frames are accepted; after it only `encrypted` ones.
//! - Any error is final: the connection enters `Failed`, refuses further input and application
//!   sends, and leaves only what must still go out (a host's `auth/failed`) in the output queue.
//! - A transport that ends without the peer's sealed `close` is reported as truncated.
//! - Everything out is one queue (`poll_output`), in the order it was made; a transmit says its
//!   path. Sealed frames are made when output is next taken, all that were sent since together
//!   (`seal_queued`: one AES-SIV batch), and before the data channel comes or goes or the
//!   connection closes, so each takes the path it would have taken alone; sealed frames that
//!   arrive together over the relay are opened together. Transmits keep counter order; events
//!   may come out ahead of sealed frames sent before them. A `Direct` transmit is queued only while a data channel is open, and when it fails
//!   those not yet taken are dropped: their copies go again on the relay.
//! - Told to (`use_outside_aes`), the connection leaves frames from a size up to the shell's
//!   own AES, both ways. Opening (`poll_open_job`, `opened`): each frame is admitted in its turn
//!   (the counter rules) and acted on only once it and every frame before it came back
//!   authentic, so events keep counter order whichever AES opened what, in whatever order
//!   results come. Sealing (`poll_seal_job`, `sealed`): counters are taken when frames are
//!   sealed as ever, and transmits still leave in counter order — a frame sealed here waits
//!   behind one still out. Before the data channel comes or goes or the connection closes,
//!   frames still out are sealed here instead (SIV is deterministic: the same bytes), so each
//!   still takes the path it would have taken alone; a late result for one is ignored.

use std::collections::{BTreeMap, VecDeque};

mod handshake;
mod liveness;
mod paths;
mod streams;

pub use liveness::{HANDSHAKE_TIMEOUT_MS, HELLO_TIMEOUT_MS, IDLE_TIMEOUT_MS, KEEPALIVE_INTERVAL_MS};
use paths::DirectPath;
pub use paths::{ACK_EVERY_FRAMES, DIRECT_PING_MS, DIRECT_SILENCE_MS};
use streams::StreamState;

use crate::channel::{OpenJob, Opened, Opener, SealJob, Sealed, Sealer, MAX_SEALED_INNER_BYTES, TAG_BYTES};
use crate::error::{AuthError, ChannelError, ConnError};
use crate::frame::{Control, Frame, FrameDecoder, Header};
use crate::handshake::{ClientHandshake, HandshakeEntropy, HostHandshake};
#[cfg(fuzzing)]
use crate::keys::SessionKeys;
use crate::paths::Reorder;

/// Streams one connection may have open at once (either direction). A peer cannot make the
/// table grow past it: unknown streams in `window` frames are ignored, and a new stream beyond
/// it is an error. A stream's state goes when its `eof` has passed both ways.
pub const MAX_STREAMS: usize = 1024;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Host,
}

/// What the transport hands in.
#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes received, split wherever the transport split them.
    Bytes(&'a [u8]),
    /// Bytes received on the WebRTC data channel beside the relay (see `open_direct`).
    Direct(&'a [u8]),
    /// The transport ended.
    TransportClosed,
}

/// Which way a transmit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The WebSocket to the relay.
    Relay,
    /// The WebRTC data channel beside it (only while one is open: see `open_direct`).
    Direct,
}

/// What the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes on `path`.
    Transmit {
        path: Path,
        bytes: Vec<u8>,
    },
    Event(Event),
}

/// Something the application needs to know.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake succeeded. On the host, `identity` names the credential the client proved.
    Authenticated {
        identity: String,
    },
    /// Host: a client claims `identity`. Look its credential up now and call `answer_hello`.
    CredentialNeeded {
        identity: String,
    },
    /// Host: the client's proof is in. Call `verify_proof` with the credential as it is then,
    /// when guessing may go on (the caller throttles).
    ProofReceived {
        identity: String,
    },
    /// New bytes of a stream, each delivered once and in order. Call `consumed` once the
    /// application's sink has taken them, or the sender stalls when its window runs out.
    Data {
        stream: u32,
        seq: u64,
        bytes: Vec<u8>,
    },
    /// The sender no longer has bytes `from .. to` of a stream; they are lost to this client (the
    /// host's log still has them). Say so to the user.
    Skipped {
        stream: u32,
        from: u64,
        to: u64,
    },
    /// The peer's stream ended at byte `end`.
    Eof {
        stream: u32,
        end: u64,
    },
    /// Flow-control credit came back: more of `stream` may be sent.
    Writable {
        stream: u32,
    },
    /// A request or response; bulk bytes (input, log data) ride in `payload`.
    Cmd {
        id: u64,
        body: serde_json::Value,
        payload: Vec<u8>,
    },
    Webrtc {
        signal: serde_json::Value,
    },
    /// The answer to our latest ping came back after `ms` (see `Connection::ping`).
    RoundTrip {
        ms: u64,
    },
    /// Nothing came over the data channel for `silent_ms`: it is taken for dead, and everything
    /// goes over the relay again (as after `direct_failed`). Close the peer connection.
    DirectLost {
        silent_ms: u64,
    },
    /// The peer closed in order.
    Closed {
        reason: String,
    },
}

enum State {
    Client(ClientHandshake),
    Host(HostHandshake),
    Open { sealer: Sealer, opener: Opener },
    Closed,
    Failed(ConnError),
}

/// A frame admitted and not yet acted on (see `use_outside_aes`).
enum Opening {
    /// Out with the shell's AES; its tag, to compare with the MAC that comes back.
    Outside { tag: [u8; TAG_BYTES] },
    /// Opened (or failed), waiting for the frames before it.
    Ready(Result<Frame, ChannelError>),
}

/// A frame with its counter, not yet transmitted (see `use_outside_aes`).
enum Sealing {
    /// Out with the shell's AES; the inner frame, to seal here if need be.
    Outside { inner: Vec<u8> },
    /// Sealed, waiting for the frames before it.
    Ready(Frame),
}

/// Most sealed frames opened in one batch (what arrived together beyond that waits its turn).
const MAX_OPEN_BATCH: usize = 16;

/// One end of an end-to-end encrypted Tether connection.
pub struct Connection {
    role: Role,
    state: State,
    decoder: FrameDecoder,
    out: VecDeque<Output>,
    streams: BTreeMap<u32, StreamState>,
    identity: String,
    handshake_deadline: u64,
    /// A host's deadline for the client's hello (`HELLO_TIMEOUT_MS`).
    hello_deadline: u64,
    last_ping_ms: u64,
    last_received_ms: u64,
    ping_nonce: u64,
    /// Whether the latest ping (`ping_nonce`) is still unanswered: only its pong is timed.
    ping_outstanding: bool,
    round_trip_ms: Option<u64>,
    /// The data channel, while one carries our sealed frames (see `paths`).
    direct: Option<DirectPath>,
    /// Set once frames may arrive over two paths: from then on they are put back in order.
    /// Until then (the relay alone) a frame out of order is an error, as it always was.
    reorder: Option<Reorder<Frame>>,
    direct_decoder: FrameDecoder,
    /// The counter our last `ack` told the peer we need next.
    acked: u64,
    /// Inner frames (wire bytes) waiting to be sealed together, in the order they were sent.
    to_seal: Vec<Vec<u8>>,
    /// Sealed frames at least this long go to the shell's AES (`use_outside_aes`).
    outside_from: Option<usize>,
    /// Frames admitted and not yet acted on, by counter (only with `outside_from`).
    opening: BTreeMap<u64, Opening>,
    /// Jobs for the shell's AES, not yet taken (`poll_open_job`).
    open_jobs: VecDeque<OpenJob>,
    /// Frames with counters and not yet transmitted, by counter (only with `outside_from`).
    sealing: BTreeMap<u64, Sealing>,
    /// Jobs for the shell's AES, not yet taken (`poll_seal_job`).
    seal_jobs: VecDeque<SealJob>,
}

impl Connection {
    /// A client that proves knowledge of `secret` for `identity` on `host_id`. The first output
    /// is the `client_hello` to transmit.
    pub fn client(host_id: &str, identity: &str, secret: &[u8], entropy: HandshakeEntropy, now_ms: u64) -> Self {
        let (handshake, hello) = ClientHandshake::start(host_id, identity, secret, entropy);
        let mut conn = Connection::new(Role::Client, State::Client(handshake), now_ms);
        conn.identity = identity.to_owned();
        conn.transmit_plain(&hello);
        conn
    }

    /// A host. It asks for credentials as it needs them (`Event::CredentialNeeded`,
    /// `Event::ProofReceived`), so it never works from a stale copy.
    pub fn host(host_id: &str, entropy: HandshakeEntropy, now_ms: u64) -> Self {
        let handshake = HostHandshake::new(host_id, entropy);
        Connection::new(Role::Host, State::Host(handshake), now_ms)
    }

    fn new(role: Role, state: State, now_ms: u64) -> Self {
        Connection {
            role,
            state,
            decoder: FrameDecoder::new(),
            out: VecDeque::new(),
            streams: BTreeMap::new(),
            identity: String::new(),
            handshake_deadline: now_ms.saturating_add(HANDSHAKE_TIMEOUT_MS),
            hello_deadline: now_ms.saturating_add(HELLO_TIMEOUT_MS),
            last_ping_ms: now_ms,
            last_received_ms: now_ms,
            ping_nonce: 0,
            ping_outstanding: false,
            round_trip_ms: None,
            direct: None,
            reorder: None,
            direct_decoder: FrameDecoder::new(),
            acked: 0,
            to_seal: Vec::new(),
            outside_from: None,
            opening: BTreeMap::new(),
            open_jobs: VecDeque::new(),
            sealing: BTreeMap::new(),
            seal_jobs: VecDeque::new(),
        }
    }

    /// A connected pair that skipped the handshake, for fuzz targets only (cargo-fuzz builds with
    /// `--cfg fuzzing`): SRP's big-number maths would cost far more than what is under test.
    #[cfg(fuzzing)]
    pub fn fuzzing_pair(now_ms: u64) -> (Connection, Connection) {
        let keys =
            || SessionKeys { client_to_host: [1; crate::keys::KEY_BYTES], host_to_client: [2; crate::keys::KEY_BYTES] };
        let mut client = Connection::new(Role::Client, State::Closed, now_ms);
        let mut host = Connection::new(Role::Host, State::Closed, now_ms);
        client.open(keys(), now_ms);
        host.open(keys(), now_ms);
        (client, host)
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// The error that ended the connection, if one did.
    pub fn error(&self) -> Option<&ConnError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Next thing to transmit or report.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.seal_queued();
        self.out.pop_front()
    }

    /// Everything queued now, split: bytes to transmit (each with its path, in order) and events
    /// to act on. What the shells' flush loops do; acting on the events may queue more, so they
    /// call it again until both come back empty.
    pub fn drain_output(&mut self) -> (Vec<(Path, Vec<u8>)>, Vec<Event>) {
        self.seal_queued();
        let (mut transmits, mut events) = (Vec::new(), Vec::new());
        for output in self.out.drain(..) {
            match output {
                Output::Transmit { path, bytes } => transmits.push((path, bytes)),
                Output::Event(event) => events.push(event),
            }
        }
        (transmits, events)
    }

    /// Feed what the transport delivered.
    pub fn handle_input(&mut self, input: Input<'_>, now_ms: u64) -> Result<(), ConnError> {
        self.check_usable()?;
        let result = match input {
            Input::Bytes(bytes) => {
                self.last_received_ms = now_ms;
                self.handle_bytes(bytes, false, now_ms)
            }
            // Only ever sealed frames, after the handshake (`take_sealed` refuses others).
            Input::Direct(bytes) => self.check_open().and_then(|()| {
                self.last_received_ms = now_ms;
                if let Some(direct) = self.direct.as_mut() {
                    direct.last_received_ms = now_ms;
                }
                self.start_reordering();
                self.handle_bytes(bytes, true, now_ms)
            }),
            Input::TransportClosed => Err(match self.state {
                State::Open { .. } => ConnError::Truncated,
                _ => ConnError::Auth(AuthError::Rejected("connection ended during handshake".into())),
            }),
        };
        result.map_err(|e| self.fail(e))
    }

    /// Bytes of one path (each has its own framing): the relay's, or the data channel's.
    /// Sealed frames that arrived together over the relay are opened together (`open_many`);
    /// everything else one frame at a time, as it comes.
    fn handle_bytes(&mut self, bytes: &[u8], direct: bool, now_ms: u64) -> Result<(), ConnError> {
        self.decoder_of(direct).push(bytes)?;
        let mut sealed = Vec::new();
        loop {
            let frame = self.decoder_of(direct).next_frame()?;
            let batchable = matches!(self.state, State::Open { .. }) && self.reorder.is_none();
            match frame {
                Some(frame @ Frame { header: Header::Encrypted { .. }, .. })
                    if batchable && sealed.len() < MAX_OPEN_BATCH =>
                {
                    sealed.push(frame);
                    continue;
                }
                frame => {
                    self.open_sealed(std::mem::take(&mut sealed))?;
                    let Some(frame) = frame else { break };
                    if !matches!(self.state, State::Closed) {
                        self.handle_frame(frame, now_ms)?;
                    }
                }
            }
            if matches!(self.state, State::Closed) {
                break;
            }
        }
        Ok(())
    }

    /// Open sealed frames of the relay in one batch and act on each in turn.
    fn open_sealed(&mut self, frames: Vec<Frame>) -> Result<(), ConnError> {
        let opened = match &mut self.state {
            _ if frames.is_empty() => return Ok(()),
            State::Open { .. } if self.outside_from.is_some() => return self.admit(frames),
            State::Open { opener, .. } => opener.open_many(&frames),
            _ => return Err(ConnError::NotReady("connection is over")),
        };
        let (inners, error) = opened;
        for inner in inners {
            if matches!(self.state, State::Closed) {
                return Ok(());
            }
            self.handle_inner(inner)?;
        }
        error.map_or(Ok(()), |error| Err(error.into()))
    }

    fn handle_frame(&mut self, frame: Frame, now_ms: u64) -> Result<(), ConnError> {
        let step = match &mut self.state {
            State::Client(handshake) => handshake.handle(&frame),
            State::Host(handshake) => {
                let step = handshake.handle(&frame);
                if let Some(identity) = handshake.identity() {
                    self.identity = identity.to_owned();
                }
                step
            }
            State::Open { .. } if self.reorder.is_some() => return self.take_sealed(frame),
            State::Open { .. } if self.outside_from.is_some() => return self.admit(vec![frame]),
            State::Open { opener, .. } => {
                let inner = opener.open(&frame)?;
                return self.handle_inner(inner);
            }
            State::Closed | State::Failed(_) => return Err(ConnError::NotReady("connection is over")),
        };
        self.take_step(step, now_ms)
    }

    /// From now on, frames of at least `min_bytes` go to the shell's own AES: sealed frames
    /// that long become `OpenJob`s (`poll_open_job`; results back through `opened`), inner
    /// frames that long `SealJob`s (`poll_seal_job`, `sealed`). Shorter ones (an echo, credit)
    /// are still done here, at once, though they wait their turn behind frames still out.
    pub fn use_outside_aes(&mut self, min_bytes: usize) {
        self.outside_from = Some(min_bytes.max(TAG_BYTES));
    }

    /// The next sealed frame for the shell's AES (see `use_outside_aes`).
    pub fn poll_open_job(&mut self) -> Option<OpenJob> {
        self.open_jobs.pop_front()
    }

    /// The next frame for the shell's AES to seal (see `use_outside_aes`).
    pub fn poll_seal_job(&mut self) -> Option<SealJob> {
        self.seal_jobs.pop_front()
    }

    /// What the shell's AES made of seal job `ctr`: transmitted once every frame before it
    /// was. One that failed is sealed here; one for a frame no longer out is ignored.
    pub fn sealed(&mut self, ctr: u64, sealed: Sealed) {
        let Some(Sealing::Outside { .. }) = self.sealing.get(&ctr) else { return };
        match sealed {
            Sealed::Done { tag, ciphertext } => {
                self.sealing.insert(ctr, Sealing::Ready(Sealed::frame(ctr, tag, ciphertext)));
            }
            Sealed::Failed(_) => self.seal_outside_here(),
        }
        self.release_sealed();
    }

    /// Bytes sent on this connection and not yet put out to transmit: queued to be sealed, out
    /// with the shell's AES, or sealed behind a frame still out. With what the transport holds,
    /// what a bulk sender paces on (a keystroke sent now waits behind all of it).
    pub fn unsealed_bytes(&self) -> usize {
        let queued: usize = self.to_seal.iter().map(Vec::len).sum();
        let sealing: usize = self
            .sealing
            .values()
            .map(|sealing| match sealing {
                Sealing::Outside { inner } => inner.len(),
                Sealing::Ready(frame) => frame.payload.len(),
            })
            .sum();
        queued + sealing
    }

    /// Whether frames are admitted and not yet acted on (some are out with the shell's AES).
    pub fn is_opening(&self) -> bool {
        !self.opening.is_empty()
    }

    /// What the shell's AES made of job `ctr`: it is acted on once every frame before it was.
    /// A result for a frame not out (the connection failed or closed meanwhile) is ignored.
    pub fn opened(&mut self, ctr: u64, opened: Opened) -> Result<(), ConnError> {
        let Some(Opening::Outside { tag }) = self.opening.get(&ctr) else { return Ok(()) };
        let inner = Opener::finish(ctr, tag, opened);
        self.opening.insert(ctr, Opening::Ready(inner));
        self.act_on_opened().map_err(|e| self.fail(e))
    }

    /// Admit sealed frames in counter order: long ones go out as jobs, short ones open here.
    fn admit(&mut self, frames: Vec<Frame>) -> Result<(), ConnError> {
        let min_bytes = self.outside_from.unwrap_or(usize::MAX);
        for frame in frames {
            let State::Open { opener, .. } = &mut self.state else { break };
            let ctr = opener.admit(&frame)?;
            let opening = match frame.payload.len() >= min_bytes {
                true => match opener.job(ctr, frame.payload) {
                    Ok(job) => {
                        let tag = job.tag();
                        self.open_jobs.push_back(job);
                        Opening::Outside { tag }
                    }
                    Err(short) => Opening::Ready(opener.open_admitted(ctr, &short)),
                },
                false => Opening::Ready(opener.open_admitted(ctr, &frame.payload)),
            };
            self.opening.insert(ctr, opening);
        }
        self.act_on_opened()
    }

    /// Act on opened frames in counter order, up to the first still out.
    fn act_on_opened(&mut self) -> Result<(), ConnError> {
        while let Some(entry) = self.opening.first_entry() {
            if matches!(entry.get(), Opening::Outside { .. }) {
                break;
            }
            let Opening::Ready(inner) = entry.remove() else { break };
            if !matches!(self.state, State::Open { .. }) {
                // Closed in order: what came after the close is dropped.
                self.opening.clear();
                self.open_jobs.clear();
                break;
            }
            self.handle_inner(inner?)?;
        }
        Ok(())
    }

    fn handle_inner(&mut self, frame: Frame) -> Result<(), ConnError> {
        match frame.header {
            Header::Data { stream, seq } => {
                let state = self.stream_state(stream)?;
                state.recv().on_receive(stream, frame.payload.len() as u64)?;
                let cursor = state.cursor_from(seq);
                let at = cursor.next().max(seq);
                let fresh = cursor.accept(stream, seq, &frame.payload)?;
                // Duplicates still used window credit; hand it straight back.
                let dup = (frame.payload.len() - fresh.len()) as u64;
                let fresh = fresh.to_vec();
                if dup > 0 {
                    self.grant(stream, dup)?;
                }
                if !fresh.is_empty() {
                    self.event(Event::Data { stream, seq: at, bytes: fresh });
                }
            }
            Header::Control(control) => self.handle_control(control)?,
            Header::Cmd { id, body, body_bytes } => {
                let (body, payload) = crate::cmd::cmd_parts(body, body_bytes, frame.payload)?;
                self.event(Event::Cmd { id, body, payload })
            }
            Header::Webrtc { signal } => self.event(Event::Webrtc { signal }),
            Header::Auth(_) | Header::Encrypted { .. } | Header::Relay(_) => {
                unreachable!("Opener::open refuses auth, encrypted and relay inner frames")
            }
        }
        Ok(())
    }

    fn handle_control(&mut self, control: Control) -> Result<(), ConnError> {
        match control {
            Control::Window { stream, bytes } => {
                // Credit for a stream we never sent on (or have ended) means nothing.
                if let Some(send) = self.streams.get_mut(&stream).and_then(|s| s.send.as_mut()) {
                    send.grant(bytes);
                    self.event(Event::Writable { stream });
                }
            }
            Control::Skip { stream, from, to } => {
                self.stream_state(stream)?.cursor_from(to).skip_to(to);
                self.event(Event::Skipped { stream, from, to });
            }
            Control::Eof { stream, end } => {
                // Our receiving side of the stream is over; its sending side may go on (an
                // exec's stdout after its stdin ended).
                if let Some(state) = self.streams.get_mut(&stream) {
                    (state.cursor, state.recv) = (None, None);
                }
                self.prune(stream);
                self.event(Event::Eof { stream, end });
            }
            Control::Ack { next } => {
                if let Some(direct) = self.direct.as_mut() {
                    direct.unacked.acknowledge(next);
                }
            }
            Control::Ping { nonce } => self.send_sealed(&Frame::bare(Header::Control(Control::Pong { nonce })))?,
            // Only the latest ping's answer is timed: an older one's would read too short.
            Control::Pong { nonce } if self.ping_outstanding && nonce == self.ping_nonce => {
                self.ping_outstanding = false;
                let ms = self.last_received_ms.saturating_sub(self.last_ping_ms);
                self.round_trip_ms = Some(ms);
                self.event(Event::RoundTrip { ms });
            }
            Control::Pong { .. } => {}
            Control::Close { reason } => {
                self.seal_all_now();
                self.state = State::Closed;
                self.event(Event::Closed { reason });
            }
        }
        Ok(())
    }

    /// Send a control, cmd or webrtc frame.
    pub fn send_frame(&mut self, frame: &Frame) -> Result<(), ConnError> {
        self.check_open()?;
        self.send_sealed(frame)?;
        // Our sending side of a stream ends with its `eof`.
        if let Header::Control(Control::Eof { stream, .. }) = frame.header {
            if let Some(state) = self.streams.get_mut(&stream) {
                state.send = None;
            }
            self.prune(stream);
        }
        Ok(())
    }

    /// End the connection in order; the peer sees `Event::Closed`.
    pub fn close(&mut self, reason: &str) -> Result<(), ConnError> {
        self.check_open()?;
        // Last words go on the relay, the path that stays to the end: the data channel is closed
        // right after, and what is still in it may never arrive.
        self.seal_all_now();
        let direct = self.direct.take();
        let sent = self.send_sealed(&Frame::bare(Header::Control(Control::Close { reason: reason.to_owned() })));
        self.seal_all_now();
        self.direct = direct;
        sent?;
        self.state = State::Closed;
        Ok(())
    }

    /// Queue `frame` to be sealed: it is, with everything queued beside it, when output is next
    /// taken (`seal_queued`). A frame too large to seal is refused here, at once.
    fn send_sealed(&mut self, frame: &Frame) -> Result<(), ConnError> {
        if !matches!(self.state, State::Open { .. }) {
            return Err(ConnError::NotReady("not authenticated"));
        }
        let inner = frame.encode()?;
        if inner.len() > MAX_SEALED_INNER_BYTES {
            return Err(ChannelError::TooLarge { len: inner.len() }.into());
        }
        self.to_seal.push(inner);
        Ok(())
    }

    /// Seal what is queued, all at once (`Sealer::seal_at`: one batch), and queue it to transmit
    /// in counter order; with `use_outside_aes`, long frames go to the shell's AES instead, and
    /// what is sealed here waits behind them. Run before output is taken.
    pub(super) fn seal_queued(&mut self) {
        if self.to_seal.is_empty() {
            return;
        }
        let inners = std::mem::take(&mut self.to_seal);
        let State::Open { sealer, .. } = &mut self.state else { return };
        // Sizes were checked when queued: only the counter space (2^64) can run out.
        let first = match sealer.reserve(&inners) {
            Ok(first) => first,
            Err(error) => {
                self.fail(error.into());
                return;
            }
        };
        let min_bytes = self.outside_from.unwrap_or(usize::MAX);
        let mut here = Vec::with_capacity(inners.len());
        for (ctr, inner) in (first..).zip(inners) {
            if inner.len() >= min_bytes {
                self.seal_jobs.push_back(sealer.job(ctr, inner.clone()));
                self.sealing.insert(ctr, Sealing::Outside { inner });
            } else {
                here.push((ctr, inner));
            }
        }
        let items: Vec<(u64, &[u8])> = here.iter().map(|(ctr, inner)| (*ctr, &inner[..])).collect();
        let frames = sealer.seal_at(&items);
        if self.sealing.is_empty() {
            frames.into_iter().for_each(|frame| self.route_sealed(frame));
            return;
        }
        for frame in frames {
            if let Header::Encrypted { ctr } = frame.header {
                self.sealing.insert(ctr, Sealing::Ready(frame));
            }
        }
        self.release_sealed();
    }

    /// Seal what is queued and whatever is still out with the shell's AES, here and now, and
    /// queue all of it to transmit: before anything that changes where sealed frames go (the
    /// data channel coming or going, closing), so every frame takes the path it would have taken
    /// sealed alone.
    pub(super) fn seal_all_now(&mut self) {
        self.seal_queued();
        self.seal_outside_here();
        self.release_sealed();
    }

    /// Seal here the frames out with the shell's AES (the same bytes it would have made).
    fn seal_outside_here(&mut self) {
        let State::Open { sealer, .. } = &self.state else { return };
        let items: Vec<(u64, &[u8])> = self
            .sealing
            .iter()
            .filter_map(|(&ctr, sealing)| match sealing {
                Sealing::Outside { inner } => Some((ctr, &inner[..])),
                Sealing::Ready(_) => None,
            })
            .collect();
        if items.is_empty() {
            return;
        }
        let frames = sealer.seal_at(&items);
        self.seal_jobs.clear();
        for frame in frames {
            if let Header::Encrypted { ctr } = frame.header {
                self.sealing.insert(ctr, Sealing::Ready(frame));
            }
        }
    }

    /// Queue sealed frames to transmit in counter order, up to the first still out.
    fn release_sealed(&mut self) {
        while let Some(entry) = self.sealing.first_entry() {
            if matches!(entry.get(), Sealing::Outside { .. }) {
                break;
            }
            if let Sealing::Ready(frame) = entry.remove() {
                self.route_sealed(frame);
            }
        }
    }

    /// Queue one sealed frame to transmit, on the data channel while one is open and has room.
    fn route_sealed(&mut self, frame: Frame) {
        let Header::Encrypted { ctr } = frame.header else { return };
        let bytes = match frame.encode() {
            Ok(bytes) => bytes,
            Err(error) => {
                self.fail(error.into());
                return;
            }
        };
        match self.direct.as_mut() {
            // On the data channel, a copy kept until the peer has it; while too many wait
            // for that, frames take the relay (the receiver puts them back in order either way).
            Some(direct) if direct.unacked.has_room(bytes.len()) => {
                direct.unacked.keep(ctr, bytes.clone());
                self.out.push_back(Output::Transmit { path: Path::Direct, bytes });
            }
            _ => self.out.push_back(Output::Transmit { path: Path::Relay, bytes }),
        }
    }

    fn transmit_plain(&mut self, frame: &Frame) {
        // Handshake frames are built by this crate and far below the caps.
        match frame.encode() {
            Ok(bytes) => self.out.push_back(Output::Transmit { path: Path::Relay, bytes }),
            Err(e) => unreachable!("handshake frame over cap: {e}"),
        }
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn check_usable(&self) -> Result<(), ConnError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Closed => Err(ConnError::NotReady("connection closed")),
            _ => Ok(()),
        }
    }

    fn check_open(&self) -> Result<(), ConnError> {
        self.check_usable()?;
        match self.state {
            State::Open { .. } => Ok(()),
            _ => Err(ConnError::NotReady("handshake not finished")),
        }
    }

    fn fail(&mut self, error: ConnError) -> ConnError {
        self.opening.clear();
        self.open_jobs.clear();
        self.sealing.clear();
        self.seal_jobs.clear();
        self.state = State::Failed(error.clone());
        error
    }
}
