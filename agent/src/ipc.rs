//! Frames over a byte stream (the local Unix socket): the protocol crate's framing, plaintext,
//! because the socket itself is the security boundary (mode 0600, peer uid checked).
//! Requests and responses are `cmd` frames; session output is `data` frames on a stream.

use tether_protocol::frame::{Frame, FrameDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const READ_BYTES: usize = 64 * 1024; // 64 KiB

/// Reads whole frames from an async byte stream.
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader { inner, decoder: FrameDecoder::new(), buf: vec![0; READ_BYTES] }
    }

    /// The next frame; `None` when the peer closed the stream cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(|e| e.to_string())? {
                return Ok(Some(frame));
            }
            let n = self.inner.read(&mut self.buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return match self.decoder.buffered() {
                    0 => Ok(None),
                    _ => Err("connection closed in the middle of a frame".into()),
                };
            }
            self.decoder.push(&self.buf[..n]).map_err(|e| e.to_string())?;
        }
    }
}

pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &Frame) -> Result<(), String> {
    let bytes = frame.encode().map_err(|e| e.to_string())?;
    writer.write_all(&bytes).await.map_err(|e| format!("write: {e}"))
}
