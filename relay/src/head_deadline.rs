//! A connection must finish its first request's head in time. hyper, as `axum::serve` runs it,
//! has no header-read timeout: a client that sends half a request and stops would hold its socket
//! (and a task) for ever, and a few thousand of them would exhaust the relay.
//!
//! Invariants:
//! - Until the first `\r\n\r\n` has been read, a read after `HEAD_TIMEOUT` from accept fails
//!   (`TimedOut`) and the connection is closed.
//! - After it, nothing is timed here: the bytes are a WebSocket's, or the next request of a
//!   keep-alive connection, and other limits apply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a new connection has to send its first request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

const HEAD_END: &[u8] = b"\r\n\r\n";

/// Accepts from `L`, each connection under a head deadline.
pub struct HeadDeadlineListener<L>(pub L);

impl<L: axum::serve::Listener> axum::serve::Listener for HeadDeadlineListener<L> {
    type Io = HeadDeadline<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (HeadDeadline { inner: io, matched: Some(0), deadline: Box::pin(tokio::time::sleep(HEAD_TIMEOUT)) }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

pub struct HeadDeadline<S> {
    inner: S,
    /// How much of `HEAD_END` the bytes so far end with; `None` once the head is in.
    matched: Option<usize>,
    deadline: Pin<Box<Sleep>>,
}

impl<S> HeadDeadline<S> {
    /// The connection inside (to set socket options).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(mut matched) = this.matched else { return Pin::new(&mut this.inner).poll_read(cx, buf) };
        if this.deadline.as_mut().poll(cx).is_ready() {
            let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "request head not sent in time");
            return Poll::Ready(Err(late));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        for &byte in &buf.filled()[before..] {
            matched = match byte == HEAD_END[matched] {
                true => matched + 1,
                false => usize::from(byte == HEAD_END[0]),
            };
            if matched == HEAD_END.len() {
                this.matched = None;
                return polled;
            }
        }
        this.matched = Some(matched);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn wrapped(io: tokio::io::DuplexStream, timeout: Duration) -> HeadDeadline<tokio::io::DuplexStream> {
        HeadDeadline { inner: io, matched: Some(0), deadline: Box::pin(tokio::time::sleep(timeout)) }
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_head_is_cut_off_and_a_whole_one_is_never_timed() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = wrapped(server, HEAD_TIMEOUT);
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("write");
        let mut buf = [0u8; 1024];
        assert!(server.read(&mut buf).await.is_ok());
        let late = server.read(&mut buf).await.expect_err("cut off once the deadline passes");
        assert_eq!(late.kind(), std::io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = wrapped(server, HEAD_TIMEOUT);
        // The end of the head split across writes, then quiet long past the deadline.
        client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r").await.expect("write");
        assert!(server.read(&mut buf).await.is_ok());
        client.write_all(b"\nafter").await.expect("write");
        assert!(server.read(&mut buf).await.is_ok());
        tokio::time::sleep(HEAD_TIMEOUT * 3).await;
        client.write_all(b"more").await.expect("write");
        assert_eq!(server.read(&mut buf).await.expect("still open"), 4);
    }
}
