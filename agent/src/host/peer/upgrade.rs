//! The host's half of the WebRTC upgrade for one peer: invite it once it is authenticated,
//! answer its offers with a data channel (`crate::direct`), and move the connection onto that
//! channel and back. The client decides when to try (`tether_protocol::upgrade`); the host only
//! answers, and only while both the relay and this host allow upgrades.
//!
//! Invariants:
//! - At most one attempt per peer; a new offer replaces the old one, whose news is then ignored
//!   (attempt numbers).
//! - Whenever the connection stops using a data channel (it closed, failed, went silent, was
//!   replaced), `direct_failed` runs first, so what it may have lost is resent on the relay.

use std::sync::Arc;

use tether_protocol::connection::Input;
use tether_protocol::frame::TurnCredentials;
use tether_protocol::signal::{IceServer, Signal};
use tether_protocol::ConnError;
use tokio::sync::mpsc;

use super::events::PeerEvent;
use super::Peer;
use crate::direct::{DirectEvent, DirectLink};
use crate::time::monotonic_ms;

/// What the relay said a data channel may use (its `ice` message); nothing until it spoke.
#[derive(Debug, Clone, Default)]
pub struct RelayIce {
    pub allowed: bool,
    pub turn: Option<TurnCredentials>,
}

/// TURN credentials with less than this left are asked for afresh before an invite uses them.
pub const TURN_REFRESH_SECS: u64 = 5 * 60;

impl RelayIce {
    fn ice_servers(&self) -> Vec<IceServer> {
        self.turn.iter().map(IceServer::from).collect()
    }

    /// Whether an invite should wait for the relay's answer to an `ice_request`: upgrades are
    /// allowed, and the TURN credentials held (if any) are missing or nearly spent. (The relay
    /// gives them only to a host with a client in, so they are asked for when one comes.)
    pub fn wants_credentials(&self, now_unix: u64) -> bool {
        self.allowed && self.turn.as_ref().is_none_or(|t| t.expires.saturating_sub(now_unix) < TURN_REFRESH_SECS)
    }
}

impl Peer {
    /// Just authenticated (or fresh TURN credentials came): tell the client it may offer, with
    /// the servers to use. `Err(why)` inside: no invite, because WebRTC is off there.
    pub fn invite(&mut self, ice: &RelayIce, host_allows: bool) -> Result<Result<(), &'static str>, ConnError> {
        match (ice.allowed, host_allows) {
            (true, true) => self.conn.send_frame(&Signal::Invite { ice_servers: ice.ice_servers() }.frame())?,
            (false, _) => return Ok(Err("the relay")),
            (true, false) => return Ok(Err("this host")),
        }
        Ok(Ok(()))
    }

    /// A signal from the client.
    pub fn on_signal(
        &mut self,
        conn: u64,
        signal: serde_json::Value,
        ice: &RelayIce,
        host_allows: bool,
        tasks: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(), ConnError> {
        match Signal::parse(signal) {
            Ok(Signal::Offer { attempt, sdp }) if ice.allowed && host_allows => {
                self.leave_direct();
                let tasks = tasks.clone();
                let report = Arc::new(move |event| {
                    let _ = tasks.send(PeerEvent::Direct { conn, event });
                });
                self.direct = Some(DirectLink::answer(attempt, &ice.ice_servers(), sdp, report));
            }
            Ok(Signal::Offer { attempt, .. }) => {
                let reason = "this host does not take WebRTC upgrades".to_owned();
                self.conn.send_frame(&Signal::Hangup { attempt, reason }.frame())?;
            }
            Ok(Signal::Hangup { attempt, reason }) if self.is_current(attempt) => {
                eprintln!("tether daemon: client {conn} hung up data channel attempt {attempt}: {reason:?}");
                self.leave_direct();
            }
            // An invite or answer is the host's to send; a hangup of an old attempt is late.
            Ok(_) => {}
            Err(e) => eprintln!("tether daemon: client {conn}: {e}"),
        }
        Ok(())
    }

    /// What the data channel's task reported.
    pub fn on_direct(&mut self, conn: u64, event: DirectEvent) -> Result<(), ConnError> {
        match event {
            DirectEvent::Description { attempt, sdp } if self.is_current(attempt) => {
                self.conn.send_frame(&Signal::Answer { attempt, sdp }.frame())?;
            }
            DirectEvent::Open { attempt, route } if self.is_current(attempt) => {
                eprintln!("tether daemon: client {conn} moved to a data channel ({})", route.name());
                self.conn.open_direct(route, monotonic_ms())?;
            }
            DirectEvent::Bytes { attempt, bytes } if self.is_current(attempt) => {
                self.conn.handle_input(Input::Direct(&bytes), monotonic_ms())?;
            }
            DirectEvent::Closed { attempt, why } if self.is_current(attempt) => {
                eprintln!("tether daemon: client {conn} back on the relay: {why}");
                self.leave_direct();
                self.conn.send_frame(&Signal::Hangup { attempt, reason: why }.frame())?;
            }
            _ => {} // news of an attempt given up
        }
        Ok(())
    }

    /// The connection gave the data channel up (`Event::DirectLost`): close it, and say so.
    pub fn on_direct_lost(&mut self, conn: u64, silent_ms: u64) -> Result<(), ConnError> {
        if let Some(link) = self.direct.take() {
            eprintln!("tether daemon: client {conn} back on the relay: the data channel was silent {silent_ms} ms");
            let reason = format!("nothing came over the data channel for {silent_ms} ms");
            self.conn.send_frame(&Signal::Hangup { attempt: link.attempt, reason }.frame())?;
        }
        Ok(())
    }

    /// Send what the connection put on the data channel. (Without one the connection has
    /// copies, sent again on the relay when it learns the channel failed.)
    pub fn send_direct(&self, bytes: Vec<u8>) {
        if let Some(link) = &self.direct {
            link.send(bytes);
        }
    }

    fn is_current(&self, attempt: u32) -> bool {
        self.direct.as_ref().is_some_and(|link| link.attempt == attempt)
    }

    /// Stop using the data channel (closing it), with what it may have lost resent.
    fn leave_direct(&mut self) {
        self.direct = None;
        self.conn.direct_failed();
    }
}
