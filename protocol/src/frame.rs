//! Layer 1: the frame codec — the only framing anywhere in Tether.
//!
//! Wire layout (all lengths big-endian):
//!
//! ```text
//! u32 header_len | header_len bytes of JSON header | u32 payload_len | payload_len bytes of payload
//! ```
//!
//! The header says what a frame is (`type`) and carries small typed fields; the payload carries raw
//! bytes (terminal output, file chunks, ciphertext) so nothing is ever base64'd. WebSocket messages
//! and WebRTC data-channel messages both carry these frames, one or more per message: the decoder
//! does not care where a transport splits its input.
//!
//! Invariants:
//! - A length over its cap is rejected as soon as its four bytes arrive, before any buffering, so a
//!   peer cannot make us allocate more than `MAX_HEADER_BYTES + MAX_PAYLOAD_BYTES` plus one read.
//! - Any error poisons the decoder: after a framing error the byte stream has no trustworthy
//!   boundary left, so the only safe thing is to drop the connection.

use serde::{Deserialize, Serialize};

use crate::error::FrameError;

/// Largest JSON header accepted or produced.
pub const MAX_HEADER_BYTES: usize = 16 * 1024; // 16 KiB
/// Largest payload accepted or produced.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024; // 1 MiB
/// Bytes of the two length prefixes.
const LEN_PREFIX_BYTES: usize = 4;

/// One decoded frame: a typed header and its raw payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(header: Header, payload: Vec<u8>) -> Self {
        Frame { header, payload }
    }

    /// A frame with an empty payload.
    pub fn bare(header: Header) -> Self {
        Frame { header, payload: Vec::new() }
    }

    /// A host ↔ relay routing frame; `payload` is forwarded connection bytes (or empty).
    pub fn relay(msg: RelayMsg, payload: Vec<u8>) -> Self {
        Frame { header: Header::Relay(msg), payload }
    }

    /// Encode into wire bytes. Fails only if a cap would be exceeded, which is a bug in the caller
    /// (every producer in this crate chunks below the caps) but is still reported, never panicked.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Append the wire bytes of this frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let header = serde_json::to_vec(&self.header)
            .map_err(|e| FrameError::Malformed(format!("header does not serialise: {e}")))?;
        if header.len() > MAX_HEADER_BYTES {
            return Err(FrameError::HeaderTooLarge { len: header.len() });
        }
        if self.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(FrameError::PayloadTooLarge { len: self.payload.len() });
        }
        out.reserve(2 * LEN_PREFIX_BYTES + header.len() + self.payload.len());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(())
    }
}

/// What a frame is. Serialised as a JSON object whose `type` field names the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Header {
    /// SRP-6a handshake step; the only plaintext frames besides `encrypted`.
    Auth(AuthStep),
    /// Sealed inner frame; the payload is AES-256-SIV ciphertext. `ctr` is the sender's
    /// per-direction counter, also bound into the ciphertext as associated data.
    Encrypted { ctr: u64 },
    /// Stream output: payload bytes are stream bytes `seq .. seq + payload.len()`.
    Data { stream: u32, seq: u64 },
    /// Stream and connection management.
    Control(Control),
    /// Request or response of an application command (sessions, exec, …). `id` pairs a response
    /// with its request; the body is the application's own schema. A body too big for a header
    /// travels as the first `body_bytes` bytes of the payload instead (`body` is then null).
    Cmd {
        id: u64,
        body: serde_json::Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_bytes: Option<u32>,
    },
    /// WebRTC signalling (offer, answer, ICE candidate), always inside the secure channel.
    Webrtc { signal: serde_json::Value },
    /// Between a host agent and the relay only: registration and per-client routing. The relay
    /// reads these headers and nothing else; forwarded bytes stay opaque to it.
    Relay(RelayMsg),
}

/// Host ↔ relay messages (see `identity` for how a host proves its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RelayMsg {
    /// Host → relay: claim `host_id`. With a host key: `proof` is the public key (hex) and
    /// `signature` its Ed25519 signature (hex) over `identity::registration_statement`. With a
    /// host secret (hosts made before keys): `proof` is the secret (hex), and no signature.
    Register {
        host_id: String,
        proof: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Relay → host: registered; clients can reach it now.
    Registered,
    /// Relay → host: a client connected; its bytes will arrive as `forward` on `conn`. `source`
    /// is an opaque tag of where it came from — equal for clients from one IPv4 address or one
    /// IPv6 /64, keyed by the relay so it says nothing of the address — for the host's per-source
    /// cap on handshakes (0 from a relay that does not say).
    Open {
        conn: u64,
        #[serde(default)]
        source: u64,
    },
    /// Either way: connection `conn` is over (`reason` for people).
    Close { conn: u64, reason: String },
    /// Either way: the payload is bytes of connection `conn`, passed on untouched.
    Forward { conn: u64 },
    /// Host → relay: what may a WebRTC upgrade use now? Answered with `ice`.
    IceRequest,
    /// Relay → host, after `registered` and for each `ice_request`: whether this relay lets
    /// connections leave it for a WebRTC data channel (`--no-webrtc` says no), and the TURN
    /// server with fresh short-lived credentials, when it runs one. They are for the host to
    /// hand on to its authenticated clients inside the secure channel, never to anyone else.
    Ice { webrtc: bool, turn: Option<TurnCredentials> },
    /// Relay → host, after `registered`, from a relay that is one node of several (`--redis`):
    /// the public URLs of the other nodes, where the host may register while the relay it was
    /// told to use cannot be reached. A hint to fail over with, nothing more: a host proves its
    /// id to whichever node it dials, as to any relay.
    Peers { urls: Vec<String> },
}

/// Credentials for a TURN server in the TURN REST API scheme (what coturn's `use-auth-secret`
/// checks): `username` is `<expiry as unix seconds>:<label>`, `credential` is
/// base64(HMAC-SHA1(shared secret, username)). They expire on their own; nothing revokes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnCredentials {
    /// `turn:HOST:PORT` or `turns:HOST:PORT` URLs, as `RTCIceServer.urls` takes them.
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
    /// When they stop working, unix seconds (also the username's first field).
    pub expires: u64,
}

/// Handshake messages (see `handshake`). Big numbers (A, B, proofs) travel in the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthStep {
    /// Client → host. Payload: SRP public ephemeral A.
    ClientHello { version: u32, host_id: String, identity: String, nonce: String },
    /// Host → client. Payload: SRP public ephemeral B.
    ServerHello { salt: String, nonce: String },
    /// Client → host. Payload: M1.
    ClientProof,
    /// Host → client. Payload: M2, sent only after M1 checked out.
    ServerProof,
    /// Either way: the handshake is over and failed. `reason` is for people, never for decisions.
    Failed { reason: String },
}

/// Control messages inside the secure channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// While a data channel carries frames: the receiver has every sealed frame before counter
    /// `next`, so the sender may let its copies of them go (see `paths`).
    Ack {
        next: u64,
    },
    /// Flow control: the receiver has consumed `bytes` more of `stream`; the sender may send that
    /// many more.
    Window {
        stream: u32,
        bytes: u64,
    },
    /// The sender no longer holds stream bytes `from .. to` (evicted from its ring); the receiver
    /// continues at `to` and tells its user that output was skipped.
    Skip {
        stream: u32,
        from: u64,
        to: u64,
    },
    /// The sender's stream has ended at byte `end`.
    Eof {
        stream: u32,
        end: u64,
    },
    /// Keep-alive and its answer.
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Orderly end of the connection. A transport that ends without one was truncated.
    Close {
        reason: String,
    },
}

/// Streaming decoder: push bytes as they arrive, split anywhere; pull whole frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of undecoded bytes in `buf`; consumed bytes are compacted away lazily so that a run of
    /// small frames does not cost a memmove each.
    start: usize,
    poisoned: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Buffer more input. Checks caps eagerly so oversized frames fail before they are buffered.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.check_caps()
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn check_caps(&mut self) -> Result<(), FrameError> {
        let pending = &self.buf[self.start..];
        let result = match read_len(pending, 0) {
            Some(h) if h > MAX_HEADER_BYTES => Err(FrameError::HeaderTooLarge { len: h }),
            Some(h) => match read_len(pending, LEN_PREFIX_BYTES + h) {
                Some(p) if p > MAX_PAYLOAD_BYTES => Err(FrameError::PayloadTooLarge { len: p }),
                _ => Ok(()),
            },
            None => Ok(()),
        };
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        let result = self.decode_one();
        match &result {
            Err(_) => self.poisoned = true,
            // Caps of the frame after this one may now be readable.
            Ok(Some(_)) => self.check_caps()?,
            Ok(None) => {}
        }
        result
    }

    fn decode_one(&mut self) -> Result<Option<Frame>, FrameError> {
        let pending = &self.buf[self.start..];
        let Some(header_len) = read_len(pending, 0) else {
            return Ok(None);
        };
        if header_len > MAX_HEADER_BYTES {
            return Err(FrameError::HeaderTooLarge { len: header_len });
        }
        let payload_len_at = LEN_PREFIX_BYTES + header_len;
        let Some(payload_len) = read_len(pending, payload_len_at) else {
            return Ok(None);
        };
        if payload_len > MAX_PAYLOAD_BYTES {
            return Err(FrameError::PayloadTooLarge { len: payload_len });
        }
        let payload_at = payload_len_at + LEN_PREFIX_BYTES;
        let total = payload_at + payload_len;
        if pending.len() < total {
            return Ok(None);
        }
        let header = parse_header(&pending[LEN_PREFIX_BYTES..payload_len_at])?;
        let payload = pending[payload_at..total].to_vec();
        self.start += total;
        Ok(Some(Frame { header, payload }))
    }
}

/// Decode exactly one frame from a buffer that must hold nothing else (e.g. a decrypted inner frame).
pub fn decode_exact(bytes: &[u8]) -> Result<Frame, FrameError> {
    let mut decoder = FrameDecoder::new();
    decoder.push(bytes)?;
    match decoder.next_frame()? {
        Some(frame) if decoder.buffered() == 0 => Ok(frame),
        Some(_) => Err(FrameError::Malformed("trailing bytes after frame".into())),
        None => Err(FrameError::Truncated),
    }
}

fn read_len(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at + LEN_PREFIX_BYTES)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

fn parse_header(json: &[u8]) -> Result<Header, FrameError> {
    serde_json::from_slice(json).map_err(|e| FrameError::Malformed(format!("bad header: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_json_is_flat_and_tagged() {
        let frame = Frame::bare(Header::Control(Control::Window { stream: 7, bytes: 42 }));
        let bytes = frame.encode().expect("encodes");
        let header_len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        let json = std::str::from_utf8(&bytes[4..4 + header_len]).expect("utf-8");
        assert_eq!(json, r#"{"type":"control","op":"window","stream":7,"bytes":42}"#);
    }

    #[test]
    fn the_relay_offer_of_ice_servers_is_flat_json() {
        let turn = TurnCredentials {
            urls: vec!["turn:relay.example:3478".into()],
            username: "1700000600:h1".into(),
            credential: "c2VjcmV0".into(),
            expires: 1_700_000_600,
        };
        let frame = Frame::bare(Header::Relay(RelayMsg::Ice { webrtc: true, turn: Some(turn) }));
        let bytes = frame.encode().expect("encodes");
        let header_len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        let json = std::str::from_utf8(&bytes[4..4 + header_len]).expect("utf-8");
        assert_eq!(
            json,
            r#"{"type":"relay","op":"ice","webrtc":true,"turn":{"urls":["turn:relay.example:3478"],"username":"1700000600:h1","credential":"c2VjcmV0","expires":1700000600}}"#
        );
        assert_eq!(decode_exact(&bytes).expect("decodes"), frame);
        let off = Frame::bare(Header::Relay(RelayMsg::Ice { webrtc: false, turn: None }));
        assert_eq!(decode_exact(&off.encode().expect("encodes")).expect("decodes"), off);
        // A node's peers, for a host to fail over to.
        let peers = Frame::bare(Header::Relay(RelayMsg::Peers { urls: vec!["https://r2.example".into()] }));
        let bytes = peers.encode().expect("encodes");
        assert!(std::str::from_utf8(&bytes).is_ok_and(|t| t.contains(r#""op":"peers","urls":["https://r2.example"]"#)));
        assert_eq!(decode_exact(&bytes).expect("decodes"), peers);
    }

    #[test]
    fn compaction_keeps_partial_frames_intact() {
        let frame = Frame::new(Header::Data { stream: 1, seq: 0 }, vec![9; 100]);
        let bytes = frame.encode().expect("encodes");
        let mut decoder = FrameDecoder::new();
        for _ in 0..50 {
            decoder.push(&bytes[..30]).expect("push");
            decoder.push(&bytes[30..]).expect("push");
            assert_eq!(decoder.next_frame().expect("decodes"), Some(frame.clone()));
        }
        assert_eq!(decoder.buffered(), 0);
    }
}
