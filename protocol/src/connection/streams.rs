//! The connection's stream table: per stream, the receive cursor (each byte delivered once, in
//! order) and both flow-control windows, created when a stream is first used and dropped when
//! its `eof` has passed both ways (or the application forgets it), never more than `MAX_STREAMS`.

use crate::error::ConnError;
use crate::frame::{Control, Frame, Header};
use crate::stream::{InputCursor, RecvWindow, SendWindow, INITIAL_WINDOW_BYTES, MAX_DATA_CHUNK};

use super::{Connection, MAX_STREAMS};

#[derive(Default)]
pub(super) struct StreamState {
    pub(super) cursor: Option<InputCursor>,
    pub(super) recv: Option<RecvWindow>,
    pub(super) send: Option<SendWindow>,
}

impl StreamState {
    pub(super) fn is_empty(&self) -> bool {
        self.cursor.is_none() && self.recv.is_none() && self.send.is_none()
    }
    /// The receive cursor: a stream starts at its first bytes' `seq` (a resume is a request of
    /// the application's, e.g. `attach` from byte N, answered on a fresh stream).
    pub(super) fn cursor_from(&mut self, first_seq: u64) -> &mut InputCursor {
        self.cursor.get_or_insert(InputCursor::new(first_seq))
    }
    pub(super) fn recv(&mut self) -> &mut RecvWindow {
        self.recv.get_or_insert(RecvWindow::new(INITIAL_WINDOW_BYTES))
    }
    pub(super) fn send(&mut self) -> &mut SendWindow {
        self.send.get_or_insert(SendWindow::new(INITIAL_WINDOW_BYTES))
    }
}

impl Connection {
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
    pub(super) fn stream_state(&mut self, stream: u32) -> Result<&mut StreamState, ConnError> {
        if !self.streams.contains_key(&stream) && self.streams.len() >= MAX_STREAMS {
            return Err(ConnError::Stream(crate::error::StreamError::TooManyStreams { max: MAX_STREAMS }));
        }
        Ok(self.streams.entry(stream).or_default())
    }

    pub(super) fn prune(&mut self, stream: u32) {
        if self.streams.get(&stream).is_some_and(StreamState::is_empty) {
            self.streams.remove(&stream);
        }
    }

    /// The application consumed `n` bytes of `stream`: return credit to the sender when due.
    pub fn consumed(&mut self, stream: u32, n: u64) -> Result<(), ConnError> {
        self.check_open()?;
        self.grant(stream, n)
    }

    pub(super) fn grant(&mut self, stream: u32, n: u64) -> Result<(), ConnError> {
        // Credit for an ended (or unknown) stream goes nowhere.
        let Some(recv) = self.streams.get_mut(&stream).and_then(|s| s.recv.as_mut()) else {
            return Ok(());
        };
        if let Some(bytes) = recv.on_consume(n) {
            self.send_sealed(&Frame::bare(Header::Control(Control::Window { stream, bytes })))?;
        }
        Ok(())
    }
}
