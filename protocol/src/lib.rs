//! # tether-protocol
//!
//! Tether's wire protocol as a sans-IO library: no sockets, no async runtime, no threads, no
//! clock. Callers feed it received bytes and the current time; it returns bytes to send and
//! events. The same crate runs in the host agent, the CLI and (compiled to wasm32) the browser.
//!
//! Layers, bottom up — one module each:
//! 1. [`frame`]: `u32 header_len | JSON header | u32 payload_len | payload`, capped, streaming.
//! 2. [`handshake`]: SRP-6a (RFC 5054 3072-bit group, SHA-256); the host holds only a verifier.
//! 3. [`keys`]: HKDF-SHA256 → one AES-256-SIV key per direction.
//! 4. [`channel`]: sealed frames with strict per-direction counters; [`paths`] keeps them in
//!    that order across transports (relay WebSocket, WebRTC data channel) and resends what a
//!    failed path may have lost; [`signal`] is how the two ends agree on a data channel, and
//!    [`upgrade`] when a client tries (again).
//! 5. [`stream`]: sequence numbers, resume, flow-control windows.
//! 6. [`file`]: a file's bytes checked end to end (running SHA-256); [`fs`] is the file
//!    service's API, whose transfers travel as streams, and [`transfer`] how a client plans them
//!    (window, digest, resume); [`listing`] is a listed directory as a file manager shows it
//!    (order, hidden files, selection, cursor); [`text`] is how an editor turns a file's
//!    bytes into text and back without changing a byte outside the edit.
//!
//! [`attention`] says when a watched session needs its user (waits for input, ended); `push`
//! (feature `push`, the host's) encrypts web pushes for a browser (RFC 8291) and signs the
//! push service's authorization (VAPID, RFC 8292).
//!
//! [`connection::Connection`] ties them into one state machine; [`client::Client`] is the client
//! side over it that the page and the command line both drive (calls, streams that resume after
//! a lost link, redials, the data-channel upgrade).

pub mod api;
pub mod attention;
pub mod channel;
pub mod client;
pub mod cmd;
pub mod connection;
pub mod error;
pub mod file;
pub mod frame;
pub mod fs;
pub mod handshake;
pub mod hex;
pub mod identity;
pub mod input;
pub mod keys;
pub mod listing;
pub mod paths;
#[cfg(feature = "push")]
pub mod push;
pub mod signal;
pub mod siv;
pub mod stream;
pub mod sync;
pub mod text;
pub mod transfer;
pub mod typeahead;
pub mod upgrade;

pub use connection::{Connection, Event, Input, Output, Path, Role};
pub use error::{AuthError, ChannelError, ConnError, FileError, FrameError, PathError, StreamError};
pub use frame::{Frame, FrameDecoder, Header};
pub use handshake::{Credential, HandshakeEntropy, HANDSHAKE_ENTROPY_BYTES};
