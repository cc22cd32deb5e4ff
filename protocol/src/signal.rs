//! WebRTC signalling: what the client and the host say to each other, inside the secure channel
//! (the `webrtc` frame), to open a data channel beside the relay.
//!
//! ```text
//! host → client   invite { ice_servers }     after authentication, if the host allows upgrades
//! client → host   offer  { attempt, sdp }    ICE candidates gathered first (no trickle)
//! host → client   answer { attempt, sdp }
//! either way      hangup { attempt, reason } that attempt is over: close your end of it
//! ```
//!
//! Invariants:
//! - Signals only ever travel sealed, so the relay can neither read nor change them: the DTLS
//!   fingerprints in the SDPs are as authentic as the SRP-proven channel they came in, and a
//!   data channel can only open to the peer that proved the password.
//! - The client offers, the host answers; `attempt` numbers tie an answer or a hangup to the
//!   offer it is about, so a late one for an attempt given up is ignored, never applied.
//! - TURN credentials reach only authenticated clients (the invite is sent after the handshake).

use serde::{Deserialize, Serialize};

use crate::frame::{Frame, Header, TurnCredentials};

/// SDPs bigger than this are refused (a real one with candidates is a few KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024; // 64 KiB

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Signal {
    Invite { ice_servers: Vec<IceServer> },
    Offer { attempt: u32, sdp: String },
    Answer { attempt: u32, sdp: String },
    Hangup { attempt: u32, reason: String },
}

/// One STUN or TURN server, as `RTCIceServer` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

impl From<&TurnCredentials> for IceServer {
    fn from(turn: &TurnCredentials) -> IceServer {
        IceServer { urls: turn.urls.clone(), username: turn.username.clone(), credential: turn.credential.clone() }
    }
}

impl Signal {
    /// The frame that carries it (to `Connection::send_frame`).
    pub fn frame(&self) -> Frame {
        // A signal is plain data: serialising it cannot fail.
        let signal = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        Frame::bare(Header::Webrtc { signal })
    }

    /// Read what `Event::Webrtc` brought; a clear error for anything else.
    pub fn parse(signal: serde_json::Value) -> Result<Signal, String> {
        let signal: Signal = serde_json::from_value(signal).map_err(|e| format!("bad webrtc signal: {e}"))?;
        match &signal {
            Signal::Offer { sdp, .. } | Signal::Answer { sdp, .. } if sdp.len() > MAX_SDP_BYTES => {
                Err(format!("bad webrtc signal: an SDP of {} bytes (at most {MAX_SDP_BYTES})", sdp.len()))
            }
            _ => Ok(signal),
        }
    }
}

/// Which path a data channel took, as ICE chose it (see `route_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// Peer to peer: host, server-reflexive or peer-reflexive candidates on both ends.
    Direct,
    /// Through a TURN server: a relayed candidate on either end.
    Turn,
}

impl Route {
    /// From the candidate types of the pair ICE selected ("host", "srflx", "prflx", "relay", as
    /// both the browser's stats and webrtc-rs name them).
    pub fn of_pair(local_type: &str, remote_type: &str) -> Route {
        if [local_type, remote_type].iter().any(|t| t.eq_ignore_ascii_case("relay")) {
            Route::Turn
        } else {
            Route::Direct
        }
    }

    /// As the status bar and `tether -v` say it.
    pub fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Turn => "TURN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_a_pinned_wire_form() {
        let offer = Signal::Offer { attempt: 3, sdp: "v=0".into() };
        let Header::Webrtc { signal } = offer.frame().header else { panic!("a webrtc frame") };
        assert_eq!(signal.to_string(), r#"{"attempt":3,"kind":"offer","sdp":"v=0"}"#);
        assert_eq!(Signal::parse(signal).unwrap(), offer);
        let turn = IceServer { urls: vec!["turn:t:3478".into()], username: "9:h".into(), credential: "c".into() };
        let invite = Signal::Invite { ice_servers: vec![turn, IceServer { urls: vec!["stun:s".into()], ..blank() }] };
        let Header::Webrtc { signal } = invite.frame().header else { panic!("a webrtc frame") };
        assert_eq!(
            signal.to_string(),
            r#"{"ice_servers":[{"credential":"c","urls":["turn:t:3478"],"username":"9:h"},{"urls":["stun:s"]}],"kind":"invite"}"#
        );
    }

    fn blank() -> IceServer {
        IceServer { urls: Vec::new(), username: String::new(), credential: String::new() }
    }

    #[test]
    fn bad_signals_get_clear_errors() {
        let unknown = serde_json::json!({"kind": "teleport"});
        assert!(Signal::parse(unknown).unwrap_err().starts_with("bad webrtc signal"));
        let huge = Signal::Answer { attempt: 1, sdp: "x".repeat(MAX_SDP_BYTES + 1) };
        let Header::Webrtc { signal } = huge.frame().header else { panic!("a webrtc frame") };
        assert!(Signal::parse(signal).unwrap_err().contains("at most"));
    }

    #[test]
    fn a_relayed_candidate_on_either_end_means_turn() {
        assert_eq!(Route::of_pair("host", "srflx"), Route::Direct);
        assert_eq!(Route::of_pair("prflx", "host"), Route::Direct);
        assert_eq!(Route::of_pair("relay", "host"), Route::Turn);
        assert_eq!(Route::of_pair("host", "Relay"), Route::Turn);
    }
}
