//! Layer 5: streams. Many logical byte streams (PTY sessions, transfers, control) share one
//! connection; each output byte has a sequence number, its offset from the stream's start.
//!
//! Invariants:
//! - The sender keeps recent output in an `OutputRing` addressed by sequence number, so a client
//!   that reconnects (or switches transport) asks "from byte N" (its application request, e.g.
//!   `attach` with `from`) and gets exactly what it missed. The agent reads bytes that have left
//!   the ring back from the session log; a sender that truly no longer has them says so with
//!   `Control::Skip`, and the receiver tells its user. Bytes are never dropped silently.
//! - The receiver's `InputCursor` delivers each byte once: overlap with bytes already delivered is
//!   trimmed, and a jump forward (a gap) is an error, not a skip.
//! - Flow control is credit-based, as in SSH channels: a sender may have at most the granted
//!   window in flight; the receiver grants more only as its consumer really takes bytes. So a slow
//!   reader slows the sender down instead of growing a queue, and every queue stays bounded.

use std::collections::VecDeque;

use crate::error::StreamError;

/// Default bytes a sender may have unacknowledged per stream.
pub const INITIAL_WINDOW_BYTES: u64 = 1024 * 1024; // 1 MiB
/// Largest data payload per frame; bigger writes are split.
pub const MAX_DATA_CHUNK: usize = 64 * 1024; // 64 KiB

/// Sender side: the last `capacity` bytes of a stream, addressed by sequence number.
#[derive(Debug)]
pub struct OutputRing {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Sequence number of `bytes[0]`.
    oldest: u64,
}

impl OutputRing {
    pub fn new(capacity: usize) -> Self {
        OutputRing { bytes: VecDeque::with_capacity(capacity.min(64 * 1024)), capacity, oldest: 0 }
    }

    /// Append output; returns the sequence number of its first byte. Evicts the oldest bytes when
    /// over capacity (they live on in the session log on disk).
    pub fn push(&mut self, data: &[u8]) -> u64 {
        let seq = self.end();
        let data = if data.len() > self.capacity {
            // Only the tail can stay; the head is evicted as soon as it arrives.
            let skip = data.len() - self.capacity;
            self.oldest += (self.bytes.len() + skip) as u64;
            self.bytes.clear();
            &data[skip..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.oldest += overflow as u64;
        self.bytes.extend(data);
        seq
    }

    /// Sequence number one past the newest byte (= total bytes ever pushed).
    pub fn end(&self) -> u64 {
        self.oldest + self.bytes.len() as u64
    }

    /// Sequence number of the oldest byte still held.
    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Up to `max` bytes starting at `from`.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<u8>, StreamError> {
        if from < self.oldest {
            return Err(StreamError::Evicted { requested: from, oldest: self.oldest });
        }
        if from > self.end() {
            return Err(StreamError::Future { requested: from, end: self.end() });
        }
        let start = (from - self.oldest) as usize;
        let len = max.min(self.bytes.len() - start);
        Ok(self.bytes.range(start..start + len).copied().collect())
    }
}

/// Receiver side: which byte of a stream comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputCursor {
    next: u64,
}

impl InputCursor {
    /// Expect bytes from `next` on (0 for a new stream, the last seen byte + 1 when resuming).
    pub fn new(next: u64) -> Self {
        InputCursor { next }
    }

    pub fn next(&self) -> u64 {
        self.next
    }

    /// Take a chunk holding bytes `seq .. seq + data.len()`; returns the part not seen before.
    pub fn accept<'a>(&mut self, stream: u32, seq: u64, data: &'a [u8]) -> Result<&'a [u8], StreamError> {
        if seq > self.next {
            return Err(StreamError::Gap { stream, expected: self.next, got: seq });
        }
        let end = end_of(stream, seq, data.len())?;
        let seen = ((self.next - seq) as usize).min(data.len());
        let fresh = &data[seen..];
        self.next = self.next.max(end);
        Ok(fresh)
    }

    /// The sender declared bytes before `to` unavailable; continue from there.
    pub fn skip_to(&mut self, to: u64) {
        self.next = self.next.max(to);
    }
}

/// The sequence number after `len` bytes from `seq`; refused past `u64::MAX` (a peer controls
/// `seq`, and wrapping would make old bytes look new).
pub fn end_of(stream: u32, seq: u64, len: usize) -> Result<u64, StreamError> {
    seq.checked_add(len as u64).ok_or(StreamError::SeqOverflow { stream })
}

/// Sender's view of one stream's flow-control credit.
#[derive(Debug, Clone, Copy)]
pub struct SendWindow {
    available: u64,
}

impl SendWindow {
    pub fn new(initial: u64) -> Self {
        SendWindow { available: initial }
    }

    /// Bytes that may be sent now.
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Take credit for `n` bytes about to be sent; the caller sends at most `available()`.
    pub fn take(&mut self, n: u64) {
        self.available = self.available.saturating_sub(n);
    }

    /// The receiver granted `n` more bytes.
    pub fn grant(&mut self, n: u64) {
        self.available = self.available.saturating_add(n);
    }
}

/// Receiver's view: enforces the window the peer was given and decides when to grant more.
#[derive(Debug, Clone, Copy)]
pub struct RecvWindow {
    window: u64,
    /// Bytes received but not yet handed back as credit.
    outstanding: u64,
    /// Bytes consumed since the last grant.
    consumed: u64,
}

impl RecvWindow {
    pub fn new(window: u64) -> Self {
        RecvWindow { window, outstanding: 0, consumed: 0 }
    }

    /// Account for `n` received bytes; the peer may not exceed its credit.
    pub fn on_receive(&mut self, stream: u32, n: u64) -> Result<(), StreamError> {
        let outstanding = self.outstanding.saturating_add(n);
        if outstanding > self.window {
            return Err(StreamError::WindowExceeded { stream });
        }
        self.outstanding = outstanding;
        Ok(())
    }

    /// The consumer took `n` bytes. Returns credit to grant once enough has accumulated: batching
    /// grants to half a window keeps control traffic small without ever stalling the sender.
    pub fn on_consume(&mut self, n: u64) -> Option<u64> {
        // Never credit more than was received (consumed ≤ outstanding always holds).
        let n = n.min(self.outstanding.saturating_sub(self.consumed));
        self.consumed += n;
        if self.consumed * 2 >= self.window {
            let grant = std::mem::take(&mut self.consumed);
            self.outstanding -= grant;
            Some(grant)
        } else {
            None
        }
    }
}

/// Largest request id that may open a stream. A stream's id is its request's id, and an exec's
/// stderr is that id with the top bit set, so below 2^31 no two requests' streams can meet.
pub const MAX_STREAM_REQUEST_ID: u64 = 0x7fff_ffff;

/// The stream a request with id `id` opens; `None` for an id that cannot name one.
pub fn request_stream(id: u64) -> Option<u32> {
    (1..=MAX_STREAM_REQUEST_ID).contains(&id).then_some(id as u32)
}

/// The request id after `id`, wrapping within 1..=`MAX_STREAM_REQUEST_ID`.
pub fn next_request_id(id: u64) -> u64 {
    id % MAX_STREAM_REQUEST_ID + 1
}

/// Stream carrying an exec's stdout (and, client → host, its stdin).
pub fn exec_stdout(request_id: u64) -> u32 {
    (request_id as u32) & 0x7fff_ffff
}

/// Stream carrying an exec's stderr.
pub fn exec_stderr(request_id: u64) -> u32 {
    exec_stdout(request_id) | 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_serves_exact_ranges_and_reports_eviction() {
        let mut ring = OutputRing::new(10);
        assert_eq!(ring.push(b"0123456"), 0);
        assert_eq!(ring.push(b"789abc"), 7);
        assert_eq!((ring.oldest(), ring.end()), (3, 13));
        assert_eq!(ring.read_from(5, 100).expect("held"), b"56789abc");
        assert_eq!(ring.read_from(13, 100).expect("at end"), b"");
        assert_eq!(ring.read_from(2, 1), Err(StreamError::Evicted { requested: 2, oldest: 3 }));
        assert_eq!(ring.read_from(14, 1), Err(StreamError::Future { requested: 14, end: 13 }));
        // A write larger than the ring keeps only its tail.
        ring.push(&[b'x'; 25]);
        assert_eq!((ring.oldest(), ring.end()), (28, 38));
    }

    #[test]
    fn cursor_trims_overlap_and_refuses_gaps() {
        let mut cursor = InputCursor::new(0);
        assert_eq!(cursor.accept(1, 0, b"hello").expect("fresh"), b"hello");
        assert_eq!(cursor.accept(1, 3, b"lo world").expect("overlap"), b" world");
        assert_eq!(cursor.accept(1, 0, b"hello").expect("dup"), b"");
        assert_eq!(cursor.accept(1, 20, b"x"), Err(StreamError::Gap { stream: 1, expected: 11, got: 20 }));
    }

    #[test]
    fn windows_bound_the_sender_and_grant_in_batches() {
        let mut recv = RecvWindow::new(100);
        recv.on_receive(1, 100).expect("within window");
        assert_eq!(recv.on_receive(1, 1), Err(StreamError::WindowExceeded { stream: 1 }));
        assert_eq!(recv.on_consume(30), None);
        assert_eq!(recv.on_consume(30), Some(60));
        recv.on_receive(1, 60).expect("credit returned");
        let mut send = SendWindow::new(100);
        send.take(100);
        assert_eq!(send.available(), 0);
        send.grant(60);
        assert_eq!(send.available(), 60);
    }
}
