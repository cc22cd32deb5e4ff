//! When a client tries to open a WebRTC data channel beside the relay, and when it tries again
//! after one failed or never opened: the one schedule the CLI and the page both follow.
//!
//! ```text
//! not invited ──invite──▶ waiting ──due──▶ negotiating ──opened──▶ open
//!                            ▲                 │ failed / timed out    │ failed
//!                            └──── back-off ◀──┴───────────────────────┘
//! ```
//!
//! `on_signal`, `on_direct`, `on_direct_lost` and `handle_timeout` apply what happens to the
//! client's `Connection` and say what the shell must do with its peer connection (`Action`);
//! the shell (webrtc-rs in the CLI, `RTCPeerConnection` in the page) only runs the peer
//! connection and reports on it (`DirectEvent`).
//!
//! Invariants:
//! - Nothing is tried before the host's invite (it may not allow upgrades at all).
//! - At most one attempt is under way; each has a new number (across reconnects too:
//!   `restart`), and only the current attempt's news counts (a late answer or close of an
//!   abandoned one changes nothing).
//! - Retries back off, doubling from `FIRST_RETRY_MS` to `MAX_RETRY_MS`; a channel that stayed up
//!   `STABLE_MS` starts the doubling over. The relay carries everything meanwhile.

use serde::{Deserialize, Serialize};

use crate::connection::{Connection, Input};
use crate::error::ConnError;
use crate::signal::{IceServer, Route, Signal};

/// An attempt whose data channel is not open by then is given up.
pub const NEGOTIATION_TIMEOUT_MS: u64 = 10_000;
/// The first retry after a failure waits this long; each next one twice as long, at most
/// `MAX_RETRY_MS`.
pub const FIRST_RETRY_MS: u64 = 1_000;
pub const MAX_RETRY_MS: u64 = 30_000;
/// A data channel that lasted this long before failing was good: back-off starts over.
pub const STABLE_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    NotInvited,
    Waiting { at_ms: u64 },
    Negotiating { attempt: u32, deadline_ms: u64 },
    Open { attempt: u32, since_ms: u64 },
}

/// What the shell must do with its peer connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Start attempt `attempt`: a peer connection with these servers, a data channel, an offer.
    Offer { attempt: u32, ice_servers: Vec<IceServer> },
    /// The host answered attempt `attempt`: apply its SDP.
    Answered { attempt: u32, sdp: String },
    /// Close attempt `attempt`'s peer connection (the connection is back on the relay alone).
    Close { attempt: u32 },
}

/// What a shell's peer connection reports, in order (the host's shell reports the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectEvent {
    /// The local offer or answer, with every ICE candidate gathered: to send as a signal.
    Description { attempt: u32, sdp: String },
    /// The data channel is open, by `route`.
    Open { attempt: u32, route: Route },
    /// Bytes that came over the data channel.
    Bytes { attempt: u32, bytes: Vec<u8> },
    /// It failed, closed or never came up. The last event of an attempt.
    Closed { attempt: u32, why: String },
}

#[derive(Debug)]
pub struct Upgrade {
    phase: Phase,
    ice_servers: Vec<IceServer>,
    last_attempt: u32,
    retry_ms: u64,
}

impl Default for Upgrade {
    fn default() -> Self {
        Upgrade { phase: Phase::NotInvited, ice_servers: Vec::new(), last_attempt: 0, retry_ms: FIRST_RETRY_MS }
    }
}

impl Upgrade {
    /// A new connection: not invited yet, back-off from the start — but attempt numbers go on
    /// from the last one, so late news of a peer connection from before (its offer, its close)
    /// can never pass for the new connection's attempt.
    pub fn restart(&mut self) {
        *self = Upgrade { last_attempt: self.last_attempt, ..Upgrade::default() };
    }

    /// The host invited us (again, with fresh TURN credentials: they are used from the next
    /// attempt on).
    pub fn invited(&mut self, ice_servers: Vec<IceServer>, now_ms: u64) {
        self.ice_servers = ice_servers;
        if self.phase == Phase::NotInvited {
            self.phase = Phase::Waiting { at_ms: now_ms };
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { at_ms } => Some(at_ms),
            Phase::Negotiating { deadline_ms, .. } => Some(deadline_ms),
            Phase::NotInvited | Phase::Open { .. } => None,
        }
    }

    /// Start an attempt when one is due; give one up that took too long (telling the host).
    pub fn handle_timeout(&mut self, conn: &mut Connection, now_ms: u64) -> Result<Option<Action>, ConnError> {
        match self.phase {
            Phase::Waiting { at_ms } if now_ms >= at_ms && conn.is_open() => {
                self.last_attempt += 1;
                let attempt = self.last_attempt;
                self.phase = Phase::Negotiating { attempt, deadline_ms: now_ms + NEGOTIATION_TIMEOUT_MS };
                Ok(Some(Action::Offer { attempt, ice_servers: self.ice_servers.clone() }))
            }
            Phase::Negotiating { attempt, deadline_ms } if now_ms >= deadline_ms => {
                self.leave(conn, attempt, "the data channel did not open in time".into(), now_ms).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A signal from the host (`Event::Webrtc`).
    pub fn on_signal(
        &mut self,
        conn: &mut Connection,
        signal: serde_json::Value,
        now_ms: u64,
    ) -> Result<Option<Action>, ConnError> {
        // A signal the host sealed but this client cannot read is the host's bug, not an attack
        // (the relay cannot forge sealed frames): the upgrade ignores it; the relay carries on.
        let Ok(signal) = Signal::parse(signal) else { return Ok(None) };
        Ok(match signal {
            Signal::Invite { ice_servers } => {
                self.invited(ice_servers, now_ms);
                None
            }
            Signal::Answer { attempt, sdp } if self.is_current(attempt) => Some(Action::Answered { attempt, sdp }),
            Signal::Hangup { attempt, .. } if self.is_current(attempt) => {
                self.stop(conn, attempt, now_ms);
                Some(Action::Close { attempt })
            }
            _ => None, // late news of an attempt given up; an offer is ours to make
        })
    }

    /// What the shell's peer connection reported.
    pub fn on_direct(
        &mut self,
        conn: &mut Connection,
        event: DirectEvent,
        now_ms: u64,
    ) -> Result<Option<Action>, ConnError> {
        match event {
            DirectEvent::Description { attempt, sdp } if self.is_current(attempt) => {
                conn.send_frame(&Signal::Offer { attempt, sdp }.frame())?;
            }
            DirectEvent::Open { attempt, route } if self.opened(attempt, now_ms) => {
                conn.open_direct(route, now_ms)?;
                // Time the new path at once (the status line shows it).
                conn.ping(now_ms)?;
            }
            DirectEvent::Bytes { attempt, bytes } if self.is_current(attempt) => {
                conn.handle_input(Input::Direct(&bytes), now_ms)?;
            }
            DirectEvent::Closed { attempt, why } if self.is_current(attempt) => {
                return self.leave(conn, attempt, why, now_ms).map(Some);
            }
            DirectEvent::Open { attempt, .. } => return Ok(Some(Action::Close { attempt })),
            _ => {} // news of an attempt given up
        }
        Ok(None)
    }

    /// The connection gave the data channel up (`Event::DirectLost`).
    pub fn on_direct_lost(
        &mut self,
        conn: &mut Connection,
        silent_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Action>, ConnError> {
        match self.phase {
            Phase::Open { attempt, .. } => {
                let why = format!("nothing came over the data channel for {silent_ms} ms");
                self.leave(conn, attempt, why, now_ms).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Give attempt `attempt` up and tell the host why.
    fn leave(&mut self, conn: &mut Connection, attempt: u32, reason: String, now_ms: u64) -> Result<Action, ConnError> {
        self.stop(conn, attempt, now_ms);
        conn.send_frame(&Signal::Hangup { attempt, reason }.frame())?;
        Ok(Action::Close { attempt })
    }

    /// Back to the relay alone, with what the channel may have lost resent; retry later.
    fn stop(&mut self, conn: &mut Connection, attempt: u32, now_ms: u64) {
        let was_direct = conn.is_direct();
        conn.direct_failed();
        self.failed(attempt, now_ms);
        if was_direct {
            // Time the relay again (the status line shows it); a connection that has failed
            // meanwhile says so on its own.
            let _ = conn.ping(now_ms);
        }
    }

    /// Attempt `attempt`'s data channel opened. False if that attempt is not the current one
    /// (the shell closes it then).
    pub fn opened(&mut self, attempt: u32, now_ms: u64) -> bool {
        match self.phase {
            Phase::Negotiating { attempt: current, .. } if current == attempt => {
                self.phase = Phase::Open { attempt, since_ms: now_ms };
                true
            }
            _ => false,
        }
    }

    /// Attempt `attempt` failed (refused, closed, its channel died): wait, then try again.
    /// Returns whether it was the current attempt.
    pub fn failed(&mut self, attempt: u32, now_ms: u64) -> bool {
        match self.phase {
            Phase::Negotiating { attempt: current, .. } if current == attempt => {}
            Phase::Open { attempt: current, since_ms } if current == attempt => {
                if now_ms.saturating_sub(since_ms) >= STABLE_MS {
                    self.retry_ms = FIRST_RETRY_MS;
                }
            }
            _ => return false,
        }
        self.back_off(now_ms);
        true
    }

    /// The attempt under way (negotiating or open), whose peer connection exists.
    pub fn attempt(&self) -> Option<u32> {
        match self.phase {
            Phase::Negotiating { attempt, .. } | Phase::Open { attempt, .. } => Some(attempt),
            Phase::NotInvited | Phase::Waiting { .. } => None,
        }
    }

    /// Whether `attempt` is the one under way (negotiating or open).
    pub fn is_current(&self, attempt: u32) -> bool {
        matches!(self.phase, Phase::Negotiating { attempt: a, .. } | Phase::Open { attempt: a, .. } if a == attempt)
    }

    fn back_off(&mut self, now_ms: u64) {
        self.phase = Phase::Waiting { at_ms: now_ms + self.retry_ms };
        self.retry_ms = (self.retry_ms * 2).min(MAX_RETRY_MS);
    }
}
