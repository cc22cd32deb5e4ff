//! The sans-IO connection: bytes and time in, events and bytes out (after str0m's `Rtc`).
//!
//! ```ignore
//! let mut conn = Connection::client(host_id, "invite", secret, entropy, now_ms);
//! conn.handle_input(Input::Bytes(&received), now_ms)?;   // from any transport
//! conn.send_data(stream, seq, &bytes)?;                  // application data in
//! while let Some(out) = conn.poll_output() {             // everything out
//!     match out { Output::Transmit(bytes) => .., Output::Event(ev) => .. }
//! }
//! if let Some(at) = conn.poll_timeout() { /* call handle_timeout(at) then */ }
//! ```
//!
//! The connection owns framing, the handshake, the secure channel, per-stream sequence cursors
//! and flow-control windows. It owns no sockets, tasks or clocks: the caller passes a monotonic
//! millisecond clock (`now_ms`) of its choosing, which is all WASM and tests need.
//!
//! Invariants:
//! - Before authentication only `auth` frames are accepted; after it only `encrypted` ones.
//! - Any error is final: the connection enters `Failed`, refuses further input and application
//!   sends, and leaves only what must still go out (a host's `auth/failed`) in the output queue.
//! - A transport that ends without the peer's sealed `close` is reported as truncated.

use std::collections::{BTreeMap, VecDeque};

use crate::channel::{Opener, Sealer};
use crate::error::{AuthError, ChannelError, ConnError};
use crate::frame::{Control, Frame, FrameDecoder, Header};
use crate::handshake::{ClientHandshake, Credential, HandshakeEntropy, HelloAnswer, HelloWork, HostHandshake, Step};
use crate::keys::SessionKeys;
use crate::paths::{Reorder, Unacked};
use crate::signal::Route;
use crate::stream::{InputCursor, RecvWindow, SendWindow, INITIAL_WINDOW_BYTES, MAX_DATA_CHUNK};

/// A handshake that has not finished by then is abandoned.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// Ping this often so idle links stay up (NATs, proxies) and dead ones show.
pub const KEEPALIVE_INTERVAL_MS: u64 = 15_000;
/// After this long without receiving anything, the link is dead.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
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

/// What the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes on the transport.
    Transmit(Vec<u8>),
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

#[derive(Default)]
struct StreamState {
    cursor: Option<InputCursor>,
    recv: Option<RecvWindow>,
    send: Option<SendWindow>,
}

impl StreamState {
    fn is_empty(&self) -> bool {
        self.cursor.is_none() && self.recv.is_none() && self.send.is_none()
    }
    /// The receive cursor: a stream starts at its first bytes' `seq` (a resume is a request of
    /// the application's, e.g. `attach` from byte N, answered on a fresh stream).
    fn cursor_from(&mut self, first_seq: u64) -> &mut InputCursor {
        self.cursor.get_or_insert(InputCursor::new(first_seq))
    }
    fn recv(&mut self) -> &mut RecvWindow {
        self.recv.get_or_insert(RecvWindow::new(INITIAL_WINDOW_BYTES))
    }
    fn send(&mut self) -> &mut SendWindow {
        self.send.get_or_insert(SendWindow::new(INITIAL_WINDOW_BYTES))
    }
}

/// One end of an end-to-end encrypted Tether connection.
pub struct Connection {
    role: Role,
    state: State,
    decoder: FrameDecoder,
    out: VecDeque<Output>,
    streams: BTreeMap<u32, StreamState>,
    identity: String,
    handshake_deadline: u64,
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
}

/// Our sending side of a data channel: what goes out on it, and copies until acknowledged.
struct DirectPath {
    route: Route,
    out: VecDeque<Vec<u8>>,
    unacked: Unacked,
    /// When something last came over it (or it opened), to notice it dying.
    last_received_ms: u64,
}

/// While a data channel carries the connection, ping this often (on it), so that each end hears
/// from the other at least this often and a dead channel shows within `DIRECT_SILENCE_MS`.
pub const DIRECT_PING_MS: u64 = 1_000;
/// A data channel silent this long is given up. The backstop: a path that dies (ICE consent
/// unanswered) is noticed sooner by the shells, from their peer connection's state; this catches
/// a channel that stays "connected" and delivers nothing. Long enough to ride out SCTP's
/// retransmission back-off (1 s, 2 s, 4 s) when a congested TURN server drops datagrams, which
/// at 3.5 s tore down channels that were only slow.
pub const DIRECT_SILENCE_MS: u64 = 10_000;

/// A receiver acknowledges every this many frames while frames may come over the data channel:
/// the sender keeps at most this many beyond the last acknowledgement (or `MAX_UNACKED_BYTES`).
pub const ACK_EVERY_FRAMES: u64 = 32;

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
            last_ping_ms: now_ms,
            last_received_ms: now_ms,
            ping_nonce: 0,
            ping_outstanding: false,
            round_trip_ms: None,
            direct: None,
            reorder: None,
            direct_decoder: FrameDecoder::new(),
            acked: 0,
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

    /// Host: the identity the client claims, once its hello is in (before it is proven too).
    pub fn claimed_identity(&self) -> Option<&str> {
        match &self.state {
            State::Host(handshake) => handshake.identity(),
            _ => (!self.identity.is_empty()).then_some(self.identity.as_str()),
        }
    }

    /// Host, mid-handshake: the verifier the client's hello was answered with.
    pub fn answered_with(&self) -> Option<&[u8]> {
        match &self.state {
            State::Host(handshake) => handshake.answered_with(),
            _ => None,
        }
    }

    /// Host: answer `Event::CredentialNeeded` with the credential as it is now (`None`:
    /// unknown or revoked). Returns the SRP exponentiations to run (`HelloWork::compute`, on any
    /// thread), whose answer goes to `finish_hello`.
    pub fn answer_hello(&mut self, credential: Option<&Credential>, now_ms: u64) -> Result<HelloWork, ConnError> {
        self.check_usable()?;
        let State::Host(handshake) = &mut self.state else {
            return Err(ConnError::NotReady("no host handshake waiting for that"));
        };
        match handshake.answer_hello(credential) {
            Ok(work) => Ok(work),
            Err(step) => Err(match self.take_step(step, now_ms) {
                Err(error) => self.fail(error),
                Ok(()) => self.fail(ConnError::NotReady("the handshake went on without a credential")),
            }),
        }
    }

    /// Host: the computed answer to the hello; sends the `server_hello`.
    pub fn finish_hello(&mut self, answer: HelloAnswer, now_ms: u64) -> Result<(), ConnError> {
        self.host_step(now_ms, |handshake| handshake.finish_hello(answer))
    }

    /// Host: answer `Event::ProofReceived`: check the proof against the credential as it is now.
    /// A wrong proof fails with `AuthError::WrongSecret`; a credential revoked or changed since
    /// the hello fails too.
    pub fn verify_proof(&mut self, credential: Option<&Credential>, now_ms: u64) -> Result<(), ConnError> {
        self.host_step(now_ms, |handshake| handshake.verify(credential))
    }

    fn host_step(&mut self, now_ms: u64, step: impl FnOnce(&mut HostHandshake) -> Step) -> Result<(), ConnError> {
        self.check_usable()?;
        let State::Host(handshake) = &mut self.state else {
            return Err(ConnError::NotReady("no host handshake waiting for that"));
        };
        let step = step(handshake);
        self.take_step(step, now_ms).map_err(|e| self.fail(e))
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
        self.out.pop_front()
    }

    /// Everything queued now, split: bytes to transmit (in order) and events to act on. What the
    /// shells' flush loops do; acting on the events may queue more, so they call it again until
    /// both come back empty.
    pub fn drain_output(&mut self) -> (Vec<Vec<u8>>, Vec<Event>) {
        let (mut transmits, mut events) = (Vec::new(), Vec::new());
        for output in self.out.drain(..) {
            match output {
                Output::Transmit(bytes) => transmits.push(bytes),
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
    fn handle_bytes(&mut self, bytes: &[u8], direct: bool, now_ms: u64) -> Result<(), ConnError> {
        self.decoder_of(direct).push(bytes)?;
        while let Some(frame) = self.decoder_of(direct).next_frame()? {
            self.handle_frame(frame, now_ms)?;
            if matches!(self.state, State::Closed) {
                break;
            }
        }
        Ok(())
    }

    fn decoder_of(&mut self, direct: bool) -> &mut FrameDecoder {
        if direct {
            &mut self.direct_decoder
        } else {
            &mut self.decoder
        }
    }

    fn start_reordering(&mut self) {
        if self.reorder.is_none() {
            if let State::Open { opener, .. } = &self.state {
                self.reorder = Some(Reorder::starting_at(opener.next_counter()));
                self.acked = opener.next_counter();
            }
        }
    }

    /// A sealed frame from either path, once frames may come over two: held until its turn,
    /// dropped unopened when it is a copy of one already taken.
    fn take_sealed(&mut self, frame: Frame) -> Result<(), ConnError> {
        let Header::Encrypted { ctr } = frame.header else {
            return Err(ChannelError::NotEncrypted(crate::channel::header_kind(&frame.header)).into());
        };
        let Some(reorder) = self.reorder.as_mut() else { return Err(ConnError::NotReady("not reordering")) };
        let len = frame.payload.len();
        reorder.push(ctr, len, frame)?;
        while let Some(frame) = self.reorder.as_mut().and_then(Reorder::pop) {
            let State::Open { opener, .. } = &mut self.state else { break };
            let inner = opener.open(&frame)?;
            self.handle_inner(inner)?;
        }
        // Tell the sender what it may let go of.
        let next = self.reorder.as_ref().map_or(0, Reorder::next_counter);
        if next >= self.acked + ACK_EVERY_FRAMES && matches!(self.state, State::Open { .. }) {
            self.acked = next;
            self.send_sealed(&Frame::bare(Header::Control(Control::Ack { next })))?;
        }
        Ok(())
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
            State::Open { opener, .. } => {
                let inner = opener.open(&frame)?;
                return self.handle_inner(inner);
            }
            State::Closed | State::Failed(_) => return Err(ConnError::NotReady("connection is over")),
        };
        self.take_step(step, now_ms)
    }

    fn take_step(&mut self, step: Step, now_ms: u64) -> Result<(), ConnError> {
        match step {
            Step::NeedCredential { identity } => {
                self.event(Event::CredentialNeeded { identity });
                Ok(())
            }
            Step::NeedVerification { identity } => {
                self.event(Event::ProofReceived { identity });
                Ok(())
            }
            Step::Reply(reply) => {
                self.transmit_plain(&reply);
                Ok(())
            }
            Step::Done { reply, keys } => {
                if let Some(reply) = reply {
                    self.transmit_plain(&reply);
                }
                self.open(keys, now_ms);
                Ok(())
            }
            Step::Failed { reply, error } => {
                if let Some(reply) = reply {
                    self.transmit_plain(&reply);
                }
                Err(ConnError::Auth(error))
            }
        }
    }

    fn open(&mut self, keys: SessionKeys, now_ms: u64) {
        let (send_key, recv_key) = match self.role {
            Role::Client => (&keys.client_to_host, &keys.host_to_client),
            Role::Host => (&keys.host_to_client, &keys.client_to_host),
        };
        self.state = State::Open { sealer: Sealer::new(send_key), opener: Opener::new(recv_key) };
        self.last_received_ms = now_ms;
        self.event(Event::Authenticated { identity: self.identity.clone() });
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
                self.state = State::Closed;
                self.event(Event::Closed { reason });
            }
        }
        Ok(())
    }

    /// Send stream bytes starting at sequence number `seq`. Sends as much as the flow-control
    /// window allows and returns how many bytes that was; wait for `Event::Writable` to send the
    /// rest. Bytes are split into frames of at most `MAX_DATA_CHUNK`.
    pub fn send_data(&mut self, stream: u32, seq: u64, bytes: &[u8]) -> Result<usize, ConnError> {
        self.check_open()?;
        crate::stream::end_of(stream, seq, bytes.len())?;
        let window = self.stream_state(stream)?.send();
        let allowed = (window.available().min(bytes.len() as u64)) as usize;
        window.take(allowed as u64);
        let mut sent = 0;
        for chunk in bytes[..allowed].chunks(MAX_DATA_CHUNK) {
            let frame = Frame::new(Header::Data { stream, seq: seq + sent as u64 }, chunk.to_vec());
            self.send_sealed(&frame)?;
            sent += chunk.len();
        }
        Ok(sent)
    }

    /// Bytes of `stream` that may be sent right now.
    pub fn send_window(&self, stream: u32) -> u64 {
        match self.streams.get(&stream).and_then(|s| s.send) {
            Some(window) => window.available(),
            None => INITIAL_WINDOW_BYTES,
        }
    }

    /// Streams with state held now (at most `MAX_STREAMS`).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The application is done with `stream` in both directions (a detach): drop its state.
    pub fn forget_stream(&mut self, stream: u32) {
        self.streams.remove(&stream);
    }

    /// A stream's state, created for a new stream while there is room.
    fn stream_state(&mut self, stream: u32) -> Result<&mut StreamState, ConnError> {
        if !self.streams.contains_key(&stream) && self.streams.len() >= MAX_STREAMS {
            return Err(ConnError::Stream(crate::error::StreamError::TooManyStreams { max: MAX_STREAMS }));
        }
        Ok(self.streams.entry(stream).or_default())
    }

    fn prune(&mut self, stream: u32) {
        if self.streams.get(&stream).is_some_and(StreamState::is_empty) {
            self.streams.remove(&stream);
        }
    }

    /// The application consumed `n` bytes of `stream`: return credit to the sender when due.
    pub fn consumed(&mut self, stream: u32, n: u64) -> Result<(), ConnError> {
        self.check_open()?;
        self.grant(stream, n)
    }

    fn grant(&mut self, stream: u32, n: u64) -> Result<(), ConnError> {
        // Credit for an ended (or unknown) stream goes nowhere.
        let Some(recv) = self.streams.get_mut(&stream).and_then(|s| s.recv.as_mut()) else {
            return Ok(());
        };
        if let Some(bytes) = recv.on_consume(n) {
            self.send_sealed(&Frame::bare(Header::Control(Control::Window { stream, bytes })))?;
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
        self.send_sealed(&Frame::bare(Header::Control(Control::Close { reason: reason.to_owned() })))?;
        self.state = State::Closed;
        Ok(())
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Client(_) | State::Host(_) => Some(self.handshake_deadline),
            State::Open { .. } => {
                let relay = (self.last_ping_ms + KEEPALIVE_INTERVAL_MS).min(self.last_received_ms + IDLE_TIMEOUT_MS);
                let direct = self
                    .direct
                    .as_ref()
                    .map(|d| (self.last_ping_ms + DIRECT_PING_MS).min(d.last_received_ms + DIRECT_SILENCE_MS));
                Some(direct.map_or(relay, |direct| direct.min(relay)))
            }
            State::Closed | State::Failed(_) => None,
        }
    }

    /// Drive timers: handshake deadline, keep-alive, idle detection, and while a data channel
    /// carries the connection, its pings and its death (`Event::DirectLost`).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.check_usable()?;
        if let Some(silent_ms) = self.direct.as_ref().map(|d| now_ms.saturating_sub(d.last_received_ms)) {
            if silent_ms >= DIRECT_SILENCE_MS {
                self.direct_failed();
                self.event(Event::DirectLost { silent_ms });
            } else if now_ms >= self.last_ping_ms + DIRECT_PING_MS {
                self.send_ping(now_ms).map_err(|e| self.fail(e))?;
            }
        }
        let result = match self.state {
            State::Client(_) | State::Host(_) if now_ms >= self.handshake_deadline => {
                Err(ConnError::Auth(AuthError::TimedOut))
            }
            State::Open { .. } if now_ms >= self.last_received_ms + IDLE_TIMEOUT_MS => {
                Err(ConnError::Idle { silent_ms: now_ms - self.last_received_ms })
            }
            State::Open { .. } if now_ms >= self.last_ping_ms + KEEPALIVE_INTERVAL_MS => self.send_ping(now_ms),
            _ => Ok(()),
        };
        result.map_err(|e| self.fail(e))
    }

    /// Ping the peer now (keep-alives do so every `KEEPALIVE_INTERVAL_MS` anyway); its answer
    /// comes as `Event::RoundTrip`. What a status line calls after authenticating, and from time
    /// to time, to show the round-trip time.
    pub fn ping(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.check_open()?;
        self.send_ping(now_ms).map_err(|e| self.fail(e))
    }

    fn send_ping(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.ping_nonce += 1;
        self.last_ping_ms = now_ms;
        self.ping_outstanding = true;
        self.send_sealed(&Frame::bare(Header::Control(Control::Ping { nonce: self.ping_nonce })))
    }

    /// The latest measured round trip (ping → pong), in milliseconds.
    pub fn round_trip_ms(&self) -> Option<u64> {
        self.round_trip_ms
    }

    /// Which path carries the connection and its round trip, as people are told it (the page's
    /// status bar and `tether -v` say the same): "via relay · round trip 3 ms". Milliseconds are
    /// whole, so a round trip under one says "< 1 ms".
    pub fn path_summary(&self) -> String {
        let path = self.direct.as_ref().map_or("relay", |d| d.route.name());
        match self.round_trip_ms {
            Some(0) => format!("via {path} · round trip < 1 ms"),
            Some(ms) => format!("via {path} · round trip {ms} ms"),
            None => format!("via {path}"),
        }
    }

    fn send_sealed(&mut self, frame: &Frame) -> Result<(), ConnError> {
        let State::Open { sealer, .. } = &mut self.state else {
            return Err(ConnError::NotReady("not authenticated"));
        };
        let ctr = sealer.next_counter();
        let sealed = sealer.seal(frame)?;
        let bytes = sealed.encode()?;
        match self.direct.as_mut() {
            // On the data channel, a copy kept until the peer has it; while too many wait for
            // that, frames take the relay (the receiver puts them back in order either way).
            Some(direct) if direct.unacked.has_room(bytes.len()) => {
                direct.unacked.keep(ctr, bytes.clone());
                direct.out.push_back(bytes);
            }
            _ => self.out.push_back(Output::Transmit(bytes)),
        }
        Ok(())
    }

    /// A WebRTC data channel is open beside the relay, by `route`: from now on sealed frames go
    /// on it (`drain_direct`), and frames from either path are taken in counter order. It is
    /// pinged every `DIRECT_PING_MS` and given up after `DIRECT_SILENCE_MS` of silence.
    pub fn open_direct(&mut self, route: Route, now_ms: u64) -> Result<(), ConnError> {
        self.check_open()?;
        self.start_reordering();
        let direct = self.direct.get_or_insert_with(|| DirectPath {
            route,
            out: VecDeque::new(),
            unacked: Unacked::new(),
            last_received_ms: now_ms,
        });
        direct.route = route;
        Ok(())
    }

    /// The data channel failed (or closed): what it carried that the peer has not acknowledged
    /// is sent again on the relay, in order, and everything after goes there too.
    pub fn direct_failed(&mut self) {
        if let Some(mut direct) = self.direct.take() {
            for (_, sealed) in direct.unacked.take_for_resend() {
                self.out.push_back(Output::Transmit(sealed));
            }
        }
        self.direct_decoder = FrameDecoder::new();
    }

    /// Whether sealed frames go on a data channel now.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The data channel's route, while one carries the connection.
    pub fn direct_route(&self) -> Option<Route> {
        self.direct.as_ref().map(|d| d.route)
    }

    /// Bytes to send on the data channel, in order.
    pub fn drain_direct(&mut self) -> Vec<Vec<u8>> {
        self.direct.as_mut().map(|d| d.out.drain(..).collect()).unwrap_or_default()
    }

    fn transmit_plain(&mut self, frame: &Frame) {
        // Handshake frames are built by this crate and far below the caps.
        match frame.encode() {
            Ok(bytes) => self.out.push_back(Output::Transmit(bytes)),
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
        self.state = State::Failed(error.clone());
        error
    }
}
