//! The narrow interface between the daemon and the links that bring remote clients to it (the
//! relay link, and the data channels beside it): what a link may ask of the host, and nothing more. Links
//! depend on this trait, never on the daemon's fields, so neither imports the other.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tether_protocol::api::{Answer, Request, Response};
use tether_protocol::cmd::answer_frame;
use tether_protocol::frame::{Control, Frame, Header};
use tokio::sync::{mpsc, oneshot};

use crate::host::access::Access;
use crate::host::identity::HostIdentity;

/// What the daemon's stream code (sessions, files, sharing) hands on toward a client, in order:
/// the request's answer, then the stream's bytes (with a jump over bytes it no longer has, if
/// any), then its end. Typed, not a wire frame: the local socket and a remote peer each make
/// their own frame of it, once, where it leaves the process.
#[derive(Debug)]
pub enum StreamItem {
    Answer { id: u64, answer: Answer },
    Data { stream: u32, seq: u64, bytes: Vec<u8> },
    Skip { stream: u32, from: u64, to: u64 },
    Eof { stream: u32, end: u64 },
}

/// Where a stream's items go.
pub type StreamTx = mpsc::Sender<StreamItem>;

impl StreamItem {
    /// Request `id`'s answer (with no payload).
    pub fn answer(id: u64, response: Response) -> StreamItem {
        StreamItem::Answer { id, answer: (response, Vec::new()) }
    }

    /// The frame for a socket (an answer too big for one frame becomes an error saying so).
    pub fn into_frame(self) -> Frame {
        match self {
            StreamItem::Answer { id, answer } => answer_frame(id, &answer),
            StreamItem::Data { stream, seq, bytes } => Frame::new(Header::Data { stream, seq }, bytes),
            StreamItem::Skip { stream, from, to } => Frame::bare(Header::Control(Control::Skip { stream, from, to })),
            StreamItem::Eof { stream, end } => Frame::bare(Header::Control(Control::Eof { stream, end })),
        }
    }
}

/// The answer to input: now, or once the program's terminal has taken it.
pub enum InOrder {
    Now(Answer),
    Later(Pin<Box<dyn Future<Output = Answer> + Send>>),
}

pub trait HostService: Send + Sync + 'static {
    /// This host's id and relay registration secret.
    fn identity(&self) -> &HostIdentity;

    /// Credentials, live connections, revocation events and the failed-login throttle.
    fn access(&self) -> &Access;

    /// Input and resizes, answered at once and in order (keystrokes must reach the program in
    /// the order they were typed), from a client authenticated as `identity`. `None`: not one
    /// of those.
    fn handle_in_order(&self, identity: &str, request: &Request, payload: &[u8]) -> Option<InOrder>;

    /// Keystrokes (or a paste) typed on an attach stream into `session`, queued in order behind
    /// what came before; the receiver fires once the program's terminal has taken them, however
    /// long the program leaves its input unread (the client's credit waits with it, so its
    /// window, not a timeout, bounds what the host holds). `Err`: they go nowhere (the session
    /// ended, or is not this client's to type into).
    fn type_into(&self, identity: &str, session: &str, bytes: &[u8]) -> Result<oneshot::Receiver<()>, Answer>;

    /// Any other request, from a remote client authenticated as `identity`.
    fn handle_remote(
        self: Arc<Self>,
        identity: String,
        request: Request,
        payload: Vec<u8>,
    ) -> impl Future<Output = Answer> + Send;

    /// Serve a stream request (`attach`, `logs`, `watch_sessions`, `watch_opens`, and the file
    /// service's listings, reads and archives) from a client authenticated as `identity`: its
    /// answer and then its items go to `tx`, on stream `stream`.
    fn open_stream(
        self: Arc<Self>,
        identity: String,
        request: Request,
        id: u64,
        stream: u32,
        tx: StreamTx,
    ) -> impl Future<Output = ()> + Send;

    /// Whether clients may move to a WebRTC data channel (`tether pair --no-webrtc` says no).
    fn webrtc_allowed(&self) -> bool;

    /// The link to `relay` is up (`Ok`), or why it is not.
    fn set_link_state(&self, relay: &str, state: Result<(), String>);
}
