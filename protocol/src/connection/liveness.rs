//! Whether the peer is still there, and how far away: the handshake deadline, keep-alive pings
//! (every `KEEPALIVE_INTERVAL_MS` on the relay, every `DIRECT_PING_MS` on a data channel), the
//! idle timeout, a data channel given up after `DIRECT_SILENCE_MS` of silence, and the round trip
//! the status line shows.

use crate::error::{AuthError, ConnError};
use crate::frame::{Control, Frame, Header};

use super::paths::{DIRECT_PING_MS, DIRECT_SILENCE_MS};
use super::{Connection, Event, State};

/// A handshake that has not finished by then is abandoned.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// A host drops a client whose hello has not come by then (the relay drops a client that has
/// sent nothing by then too): a silent socket must not hold one of a host's handshake places
/// for long. An honest client sends its hello as soon as it connects.
pub const HELLO_TIMEOUT_MS: u64 = 5_000;
/// Ping this often so idle links stay up (NATs, proxies) and dead ones show.
pub const KEEPALIVE_INTERVAL_MS: u64 = 15_000;
/// After this long without receiving anything, the link is dead.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;

impl Connection {
    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Host(ref handshake) if handshake.identity().is_none() => {
                Some(self.handshake_deadline.min(self.hello_deadline))
            }
            State::Client(_) | State::Host(_) => Some(self.handshake_deadline),
            State::Open { .. } => {
                let relay = (self.last_ping_ms + KEEPALIVE_INTERVAL_MS).min(self.last_received_ms + IDLE_TIMEOUT_MS);
                let direct = self
                    .direct
                    .as_ref()
                    .map(|d| (self.last_ping_ms + DIRECT_PING_MS).min(d.last_received_ms + DIRECT_SILENCE_MS));
                Some(direct.map_or(relay, |direct| direct.min(relay)))
            }
            State::Closed | State::Failed(_) => None,
        }
    }

    /// Drive timers: handshake deadline, keep-alive, idle detection, and while a data channel
    /// carries the connection, its pings and its death (`Event::DirectLost`).
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.check_usable()?;
        if let Some(silent_ms) = self.direct.as_ref().map(|d| now_ms.saturating_sub(d.last_received_ms)) {
            if silent_ms >= DIRECT_SILENCE_MS {
                self.direct_failed();
                self.event(Event::DirectLost { silent_ms });
            } else if now_ms >= self.last_ping_ms + DIRECT_PING_MS {
                self.send_ping(now_ms).map_err(|e| self.fail(e))?;
            }
        }
        let result = match self.state {
            State::Host(ref handshake) if handshake.identity().is_none() && now_ms >= self.hello_deadline => {
                Err(ConnError::Auth(AuthError::NoHello))
            }
            State::Client(_) | State::Host(_) if now_ms >= self.handshake_deadline => {
                Err(ConnError::Auth(AuthError::TimedOut))
            }
            State::Open { .. } if now_ms >= self.last_received_ms + IDLE_TIMEOUT_MS => {
                Err(ConnError::Idle { silent_ms: now_ms - self.last_received_ms })
            }
            State::Open { .. } if now_ms >= self.last_ping_ms + KEEPALIVE_INTERVAL_MS => self.send_ping(now_ms),
            _ => Ok(()),
        };
        result.map_err(|e| self.fail(e))
    }

    /// Ping the peer now (keep-alives do so every `KEEPALIVE_INTERVAL_MS` anyway); its answer
    /// comes as `Event::RoundTrip`. What a status line calls after authenticating, and from time
    /// to time, to show the round-trip time.
    pub fn ping(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.check_open()?;
        self.send_ping(now_ms).map_err(|e| self.fail(e))
    }

    pub(super) fn send_ping(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.ping_nonce += 1;
        self.last_ping_ms = now_ms;
        self.ping_outstanding = true;
        self.send_sealed(&Frame::bare(Header::Control(Control::Ping { nonce: self.ping_nonce })))
    }

    /// The latest measured round trip (ping → pong), in milliseconds.
    pub fn round_trip_ms(&self) -> Option<u64> {
        self.round_trip_ms
    }

    /// Which path carries the connection and its round trip, as people are told it (the page's
    /// status bar and `tether -v` say the same): "via relay · round trip 3 ms". Milliseconds are
    /// whole, so a round trip under one says "< 1 ms".
    pub fn path_summary(&self) -> String {
        let path = self.direct.as_ref().map_or("relay", |d| d.route.name());
        match self.round_trip_ms {
            Some(0) => format!("via {path} · round trip < 1 ms"),
            Some(ms) => format!("via {path} · round trip {ms} ms"),
            None => format!("via {path}"),
        }
    }
}
