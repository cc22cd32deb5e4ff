//! The host wing: what `tether daemon` owns and serves. Reading order for a keystroke from a
//! remote browser: `relay_link` (bytes off the WebSocket) → `peer` (decrypt, requests) →
//! `service` (the narrow door into the daemon) → `dispatch` → `sessions` → `session` (the PTY);
//! output comes back through `session` (ring, log) → `streams` → `peer` (flow control) →
//! `relay_link` (or, once a client moved onto a WebRTC data channel, `peer::upgrade` and the
//! shared `crate::direct`). `files` serves the file manager and the editor beside `exec` and
//! `streams`.

pub mod access;
pub mod config;
pub mod daemon;
pub mod devices;
pub mod dispatch;
pub mod exec;
pub mod files;
pub mod identity;
pub mod origin;
pub mod peer;
pub mod push;
pub mod relay_link;
pub mod server;
pub mod service;
pub mod session;
pub mod sessions;
pub mod sharing;
pub mod store;
pub mod streams;
