//! What a remote peer's tasks (its execs, its session streams, its requests) tell the link that
//! carries the peer. One channel per link, in the order they happened.

use tether_protocol::api::Answer;
use tether_protocol::handshake::HelloAnswer;

use crate::direct::DirectEvent;

use crate::host::access::throttle::ProofTurn;

pub enum PeerEvent {
    /// The SRP exponentiations for a client's hello are done (on a blocking thread).
    HelloComputed { conn: u64, answer: HelloAnswer },
    /// A client's password proof may be checked now: its turn came.
    ProofTurn { conn: u64, turn: ProofTurn },
    /// Request `id`'s answer.
    Answer { conn: u64, id: u64, answer: Answer },
    /// Output bytes `seq ..` of `stream`; their byte permits were taken and are given back once
    /// sent.
    Output { conn: u64, stream: u32, seq: u64, bytes: Vec<u8> },
    /// A session stream jumps over bytes `from .. to` the host no longer has.
    StreamSkip { conn: u64, stream: u32, from: u64, to: u64 },
    /// A session stream ended at byte `end` (sent on once its output has gone out).
    StreamEnd { conn: u64, stream: u32, end: u64 },
    /// An exec read `n` bytes of its stdin, or a session's terminal took `n` bytes typed on an
    /// attach stream: credit the client.
    InputTaken { conn: u64, stream: u32, n: u64 },
    /// The session attach stream `stream` types into has room in its input again: what the
    /// stream holds is typed (`requests::type_held`).
    InputRoom { conn: u64, stream: u32 },
    /// An exec's output was all read and its process reaped.
    ExecFinished { conn: u64, id: u64, code: i32 },
    /// News of the peer's data channel (see `upgrade`).
    Direct { conn: u64, event: DirectEvent },
}

impl PeerEvent {
    /// The peer (relay connection id) it is about.
    pub fn conn(&self) -> u64 {
        match self {
            PeerEvent::HelloComputed { conn, .. }
            | PeerEvent::ProofTurn { conn, .. }
            | PeerEvent::Answer { conn, .. }
            | PeerEvent::Output { conn, .. }
            | PeerEvent::StreamSkip { conn, .. }
            | PeerEvent::StreamEnd { conn, .. }
            | PeerEvent::InputTaken { conn, .. }
            | PeerEvent::InputRoom { conn, .. }
            | PeerEvent::ExecFinished { conn, .. }
            | PeerEvent::Direct { conn, .. } => *conn,
        }
    }
}
