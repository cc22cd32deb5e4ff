//! How a client gets to an agent: this machine's daemon over the Unix socket (`local`), or a
//! paired host through a relay, end to end encrypted (`relay`, `remote`). Both carry the same
//! requests and answer the same way, so every CLI command takes an [`Agent`] and works either way.
//!
//! A stream's id is the id of the request that opened it, registered before the request is sent,
//! so no early frame can miss its channel. Stream channels are bounded: a client that cannot
//! write its output fast enough stops taking frames, and the agent's side waits (the session
//! itself never does).

pub mod agent;
pub mod hosts;
pub mod local;
pub mod relay;
pub mod remote;
pub mod stream;
