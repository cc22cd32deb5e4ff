//! What both ways to an agent share: output streams, and what to say when a link is lost.

use tether_protocol::api::SessionInfo;
use tokio::sync::mpsc;

/// Output frames buffered per stream in the client.
const STREAM_QUEUE_FRAMES: usize = 16;

/// Something that happened on an output stream.
#[derive(Debug)]
pub enum OutputEvent {
    Data {
        bytes: Vec<u8>,
    },
    /// The host no longer has output bytes `from .. to`; what follows comes after them.
    Skipped {
        from: u64,
        to: u64,
    },
    Eof,
}

/// An output stream: its session, id, and events.
pub struct OpenStream {
    pub session: SessionInfo,
    pub stream: u32,
    pub events: mpsc::Receiver<OutputEvent>,
}

/// Whose connection was lost.
#[derive(Clone, Copy)]
pub enum Lost {
    Daemon,
    Host,
}

pub fn lost(whom: Lost) -> String {
    match whom {
        Lost::Daemon => "lost the connection to the tether daemon".to_owned(),
        Lost::Host => "lost the connection to the host".to_owned(),
    }
}

/// A stream's channel, sized the same on both paths.
pub fn stream_channel() -> (mpsc::Sender<OutputEvent>, mpsc::Receiver<OutputEvent>) {
    mpsc::channel(STREAM_QUEUE_FRAMES)
}
