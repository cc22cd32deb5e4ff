//! One remote client of this host, whichever path carries it (the relay's link, and a WebRTC
//! data channel beside it once one opens: `upgrade`): its sans-IO `Connection` (SRP server,
//! secure channel), the credential it proved, and what it runs here — execs, session streams,
//! and the keystrokes it types on them. The link moves bytes in and out; `requests` acts on what
//! the client asks and sends.
//!
//! Invariants:
//! - Nothing from a client is acted on before its handshake succeeded (`Connection` enforces it).
//! - Output is flow-controlled end to end: a task holds byte permits for what it has produced
//!   and the `Backlog` gives them back only as the connection's window lets bytes out, so a slow
//!   client slows its commands instead of filling memory.
//! - An exec's answer and a stream's `eof` never overtake their output (`send_finished`).

pub mod events;
pub mod requests;
pub mod upgrade;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tether_protocol::api::Response;
use tether_protocol::cmd::{answer_frame, cmd_frame};
use tether_protocol::frame::{Control, Frame, Header};
use tether_protocol::stream::{exec_stderr, exec_stdout};
use tether_protocol::{ConnError, Connection};
use tokio::sync::Semaphore;

use crate::direct::DirectLink;
use crate::host::access::ConnectionGuard;
use crate::host::exec::Exec;
use events::PeerEvent;

/// Requests of one peer being worked on at once (each is a task); more are refused, not queued.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 64;
/// Streams (attach, logs, watch, exec) one peer may have open at once.
pub const MAX_PEER_STREAMS: usize = 256;

pub struct Peer {
    pub conn: Connection,
    /// Where it came from, as the relay tags it (`RelayMsg::Open`): the host's per-source cap.
    pub source: u64,
    /// Which credential it authenticated with (counted in `Access` while it lives).
    pub access: Option<ConnectionGuard>,
    /// The verifier its proof was checked against, until `Authenticated` turns it into `access`.
    proven: Option<Vec<u8>>,
    /// Per stream: output accepted from a task but not yet let through by the window.
    backlogs: HashMap<u32, Backlog>,
    execs: HashMap<u64, Exec>,
    /// Execs that finished while output was still waiting: (id, exit code).
    finished: Vec<(u64, i32)>,
    /// Session streams (attach, logs) being served, to stop on detach or disconnect.
    streams: HashMap<u32, tokio::task::AbortHandle>,
    /// Session streams that ended while output was still waiting: (stream, end).
    ended: Vec<(u32, u64)>,
    /// Attach streams, by where their input (keystrokes, the client's stream bytes the other
    /// way) is typed.
    inputs: HashMap<u32, TypedInput>,
    /// One permit per request task under way.
    in_flight: Arc<Semaphore>,
    /// The data channel being negotiated or carrying the connection (see `upgrade`).
    direct: Option<DirectLink>,
    /// Authenticated, and its invite waits for TURN credentials the link has asked the relay for.
    pub awaiting_invite: bool,
}

/// Where an attach stream's keys go, and those the session's full input backlog refused (another
/// client's paste filled it): kept in order and typed again once it has room, later keys behind
/// them. They are credited only once typed, so the stream's window bounds what is held.
struct TypedInput {
    session: String,
    held: VecDeque<Vec<u8>>,
}

/// Output waiting for flow-control credit, in order, and the permits to give back to the
/// producing task as bytes go out.
struct Backlog {
    queue: VecDeque<Queued>,
    permits: Arc<Semaphore>,
}

enum Queued {
    /// Bytes from sequence number `seq`.
    Bytes { seq: u64, bytes: Vec<u8> },
    /// The stream jumps from `from` to `to` (bytes the host no longer has).
    Skip { from: u64, to: u64 },
}

impl Backlog {
    fn new(permits: Arc<Semaphore>) -> Backlog {
        Backlog { queue: VecDeque::new(), permits }
    }
}

impl Peer {
    pub fn new(conn: Connection, source: u64) -> Peer {
        Peer {
            conn,
            source,
            access: None,
            proven: None,
            backlogs: HashMap::new(),
            execs: HashMap::new(),
            finished: Vec::new(),
            streams: HashMap::new(),
            ended: Vec::new(),
            inputs: HashMap::new(),
            in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
            direct: None,
            awaiting_invite: false,
        }
    }

    /// Send queued output of `stream` as far as the window allows.
    fn drain(&mut self, stream: u32) -> Result<(), ConnError> {
        let Some(backlog) = self.backlogs.get_mut(&stream) else {
            return Ok(());
        };
        while let Some(queued) = backlog.queue.front_mut() {
            let (seq, bytes) = match queued {
                Queued::Bytes { seq, bytes } => (seq, bytes),
                Queued::Skip { from, to } => {
                    let skip = Control::Skip { stream, from: *from, to: *to };
                    self.conn.send_frame(&Frame::bare(Header::Control(skip)))?;
                    backlog.queue.pop_front();
                    continue;
                }
            };
            let sent = self.conn.send_data(stream, *seq, bytes)?;
            backlog.permits.add_permits(sent);
            if sent < bytes.len() {
                *seq += sent as u64;
                bytes.drain(..sent);
                break;
            }
            backlog.queue.pop_front();
        }
        Ok(())
    }

    /// Whether it has not even said hello yet (a socket that may never say anything).
    pub fn is_silent(&self) -> bool {
        self.is_handshaking() && self.conn.claimed_identity().is_none()
    }

    /// Whether it is still proving who it is.
    pub fn is_handshaking(&self) -> bool {
        self.access.is_none()
    }

    /// Answer finished execs, and end finished streams, once their output has all gone out
    /// (the answer or `eof` must not overtake it).
    fn send_finished(&mut self) -> Result<(), ConnError> {
        let drained =
            |backlogs: &HashMap<u32, Backlog>, stream: u32| backlogs.get(&stream).is_none_or(|b| b.queue.is_empty());
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.finished)
            .into_iter()
            .partition(|&(id, _)| drained(&self.backlogs, exec_stdout(id)) && drained(&self.backlogs, exec_stderr(id)));
        self.finished = waiting;
        for (id, code) in done {
            self.execs.remove(&id);
            self.backlogs.remove(&exec_stdout(id));
            self.backlogs.remove(&exec_stderr(id));
            self.conn.send_frame(&cmd_frame(id, &Response::Exited { code }, Vec::new()))?;
        }
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.ended).into_iter().partition(|&(stream, _)| drained(&self.backlogs, stream));
        self.ended = waiting;
        for (stream, end) in done {
            self.backlogs.remove(&stream);
            self.streams.remove(&stream);
            self.conn.send_frame(&Frame::bare(Header::Control(Control::Eof { stream, end })))?;
            // Over both ways: input for an ended session has nowhere to go.
            if self.inputs.remove(&stream).is_some() {
                self.conn.forget_stream(stream);
            }
        }
        Ok(())
    }

    /// What one of this peer's tasks reported.
    pub fn apply(&mut self, event: PeerEvent) -> Result<(), ConnError> {
        match event {
            PeerEvent::Answer { id, answer, .. } => self.conn.send_frame(&answer_frame(id, &answer))?,
            PeerEvent::Output { stream, seq, bytes, .. } => {
                if let Some(backlog) = self.backlogs.get_mut(&stream) {
                    backlog.queue.push_back(Queued::Bytes { seq, bytes });
                    self.drain(stream)?;
                }
            }
            PeerEvent::StreamSkip { stream, from, to, .. } => {
                if let Some(backlog) = self.backlogs.get_mut(&stream) {
                    backlog.queue.push_back(Queued::Skip { from, to });
                    self.drain(stream)?;
                }
            }
            PeerEvent::StreamEnd { stream, end, .. } => self.ended.push((stream, end)),
            PeerEvent::InputTaken { stream, n, .. } => self.conn.consumed(stream, n)?,
            PeerEvent::ExecFinished { id, code, .. } => self.finished.push((id, code)),
            PeerEvent::Direct { conn, event } => self.on_direct(conn, event)?,
            // The handshake's events, and typing what was held, are the link's to act on
            // (`requests::on_task_event`).
            PeerEvent::HelloComputed { .. } | PeerEvent::ProofTurn { .. } | PeerEvent::InputRoom { .. } => {
                return Ok(())
            }
        }
        self.send_finished()
    }

    /// The client is gone: its commands go too (SIGTERM, SIGKILL shortly after), and so do its
    /// streams.
    pub fn cancel(&mut self) {
        for exec in self.execs.values() {
            exec.cancel();
        }
        self.execs.clear();
        for task in self.streams.values() {
            task.abort();
        }
        self.streams.clear();
        self.direct = None;
    }
}
