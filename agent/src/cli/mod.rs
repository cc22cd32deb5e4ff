//! The CLI wing: what a person or an AI agent types. Each command family is one module; they
//! reach an agent only through `crate::reach`, never by calling into the host wing.

pub mod args;
pub mod attach;
pub mod daemon;
pub mod devices;
pub mod exec;
pub mod files;
pub mod hosts;
pub mod logs;
pub mod notify;
pub mod open;
pub mod password;
pub mod progress;
pub mod qr;
pub mod service;
pub mod sessions;
pub mod sharing;
pub mod skill;

/// Exit status when something waited for ran out of time (as timeout(1)).
pub const EXIT_TIMED_OUT: u8 = 124;
