//! The agent's link to a relay: dial out, prove the host id, then serve every client the relay
//! opens a connection for. Each client gets its own sans-IO `Connection` (SRP server, secure
//! channel); this module only moves bytes between it and the WebSocket and hands authenticated
//! requests to the daemon — the same requests the Unix socket carries.
//!
//! Invariants:
//! - Nothing from a client is acted on before its handshake succeeded (`Connection` enforces it).
//! - Failed handshakes are throttled per host: exponential back-off, then a lock-out; while
//!   throttled, new connections are refused at once with the wait in the reason.
//! - A dropped link is re-dialled with back-off; the relay keeps no state, so re-registering is
//!   all it takes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether_protocol::api::{ErrorCode, Request, Response};
use tether_protocol::connection::{Connection, Event, Input, Output};
use tether_protocol::frame::{Frame, FrameDecoder, Header, RelayMsg};
use tether_protocol::handshake::{HandshakeEntropy, HANDSHAKE_ENTROPY_BYTES};
use tether_protocol::{AuthError, ConnError};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::daemon::Daemon;
use crate::ipc::cmd_frame;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often connection timers (keep-alive, handshake deadline) are driven.
const TICK: Duration = Duration::from_millis(500);
/// Consecutive failed handshakes before the lock-out.
const LOCKOUT_AFTER: u32 = 20;
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Back-off after the first failure; doubles with each further one (capped).
const FIRST_PENALTY: Duration = Duration::from_millis(250);
const MAX_PENALTY: Duration = Duration::from_secs(60);

/// Failed-handshake throttle for this host.
#[derive(Default)]
pub struct Throttle {
    state: Mutex<(u32, Option<Instant>)>,
}

impl Throttle {
    /// `Some(wait)` while new handshakes are refused.
    pub fn refuse(&self) -> Option<Duration> {
        let (_, until) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        until.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    pub fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        let penalty = if state.0 >= LOCKOUT_AFTER {
            LOCKOUT
        } else {
            (FIRST_PENALTY * 2u32.saturating_pow(state.0 - 1)).min(MAX_PENALTY)
        };
        state.1 = Some(Instant::now() + penalty);
    }

    pub fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
    }
}

/// Keep a link to `relay` up for the daemon's lifetime.
pub async fn run(daemon: Arc<Daemon>, relay: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        match link_once(&daemon, &relay).await {
            Ok(()) => eprintln!("tether daemon: relay {relay} closed the link; reconnecting"),
            Err(e) => eprintln!("tether daemon: relay {relay}: {e}; retrying in {backoff:?}"),
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF; // it was up for a while: start over gently
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// `http://relay` → `ws://relay/ws/host`. Plain `ws://` only to loopback: anything else would
/// send the host secret in the clear.
pub fn host_ws_url(relay: &str) -> Result<String, String> {
    if let Some(rest) = relay.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or("");
        if !(host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]")) {
            return Err(format!("{relay}: plain http is allowed only for a relay on this machine; use https://"));
        }
        return Ok(format!("ws://{}/ws/host", rest.trim_end_matches('/')));
    }
    if relay.starts_with("https://") {
        return Err(format!("{relay}: TLS relays are not supported by this build yet"));
    }
    Err(format!("{relay}: a relay URL starts with http:// or https://"))
}

fn entropy() -> Result<HandshakeEntropy, String> {
    let mut bytes = [0u8; HANDSHAKE_ENTROPY_BYTES];
    crate::random_bytes(&mut bytes)?;
    Ok(HandshakeEntropy(bytes))
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

async fn send(sink: &mut Sink, frame: Frame) -> Result<(), String> {
    let bytes = frame.encode().map_err(|e| e.to_string())?;
    sink.send(Message::Binary(bytes.into())).await.map_err(|e| format!("relay send: {e}"))
}

fn relay_frame(msg: RelayMsg, payload: Vec<u8>) -> Frame {
    Frame::new(Header::Relay(msg), payload)
}

async fn link_once(daemon: &Arc<Daemon>, relay: &str) -> Result<(), String> {
    let url = host_ws_url(relay)?;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let host = daemon.host();
    let proof = tether_protocol::hex::encode(&host.secret);
    send(&mut sink, relay_frame(RelayMsg::Register { host_id: host.host_id.clone(), proof }, Vec::new())).await?;

    let mut decoder = FrameDecoder::new();
    let mut registered = false;
    let mut conns: HashMap<u64, Connection> = HashMap::new();
    let (reply_tx, mut reply_rx) = mpsc::channel::<(u64, Frame)>(256);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return if registered { Ok(()) } else { Err(format!("refused: {reason}")) };
                    }
                    None => return Ok(()),
                    Some(Err(e)) => return Err(format!("relay receive: {e}")),
                    Some(Ok(_)) => continue,
                };
                decoder.push(&bytes).map_err(|e| e.to_string())?;
                while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                    let Header::Relay(msg) = frame.header else { continue };
                    match msg {
                        RelayMsg::Registered => {
                            registered = true;
                            eprintln!("tether daemon: reachable through {relay} as {}", host.host_id);
                        }
                        RelayMsg::Open { conn } => {
                            if let Some(wait) = daemon.throttle.refuse() {
                                let reason = format!("too many failed attempts; try again in {}s", wait.as_secs() + 1);
                                send(&mut sink, relay_frame(RelayMsg::Close { conn, reason }, Vec::new())).await?;
                                continue;
                            }
                            let host_conn = Connection::host(&host.host_id, daemon.credentials(), entropy()?, crate::now_ms());
                            conns.insert(conn, host_conn);
                        }
                        RelayMsg::Forward { conn } => {
                            let Some(connection) = conns.get_mut(&conn) else { continue };
                            let result = connection.handle_input(Input::Bytes(&frame.payload), crate::now_ms());
                            flush(daemon, conn, connection, &mut sink, &reply_tx).await?;
                            if let Err(error) = result {
                                end(daemon, conn, &error, &mut sink).await?;
                                conns.remove(&conn);
                            }
                        }
                        RelayMsg::Close { conn, .. } => {
                            if let Some(mut connection) = conns.remove(&conn) {
                                if let Err(error) = connection.handle_input(Input::TransportClosed, crate::now_ms()) {
                                    note_failure(daemon, conn, &error);
                                }
                            }
                        }
                        RelayMsg::Register { .. } => {}
                    }
                }
            }
            Some((conn, frame)) = reply_rx.recv() => {
                if let Some(connection) = conns.get_mut(&conn) {
                    if connection.send_frame(&frame).is_ok() {
                        flush(daemon, conn, connection, &mut sink, &reply_tx).await?;
                    }
                }
            }
            _ = tick.tick() => {
                let now = crate::now_ms();
                let mut ended = Vec::new();
                for (&conn, connection) in conns.iter_mut() {
                    let due = connection.poll_timeout().is_some_and(|at| at <= now);
                    if due {
                        if let Err(error) = connection.handle_timeout(now) {
                            ended.push((conn, error));
                        }
                    }
                    flush(daemon, conn, connection, &mut sink, &reply_tx).await?;
                }
                for (conn, error) in ended {
                    end(daemon, conn, &error, &mut sink).await?;
                    conns.remove(&conn);
                }
            }
        }
    }
}

/// Send what the connection wants sent; act on what it reports.
async fn flush(
    daemon: &Arc<Daemon>,
    conn: u64,
    connection: &mut Connection,
    sink: &mut Sink,
    replies: &mpsc::Sender<(u64, Frame)>,
) -> Result<(), String> {
    while let Some(output) = connection.poll_output() {
        match output {
            Output::Transmit(bytes) => send(sink, relay_frame(RelayMsg::Forward { conn }, bytes)).await?,
            Output::Event(Event::Authenticated { identity }) => {
                daemon.throttle.success();
                eprintln!("tether daemon: client {conn} authenticated with {identity}");
            }
            Output::Event(Event::Cmd { id, body, payload }) => {
                let daemon = daemon.clone();
                let replies = replies.clone();
                tokio::spawn(async move {
                    let (response, payload) = match serde_json::from_value::<Request>(body) {
                        Ok(request) => daemon.handle_remote(request, payload).await,
                        Err(e) => (Response::Error { code: ErrorCode::BadRequest, message: format!("bad request: {e}") }, Vec::new()),
                    };
                    let _ = replies.send((conn, cmd_frame(id, &response, payload))).await;
                });
            }
            Output::Event(_) => {}
        }
    }
    Ok(())
}

/// A connection failed: log it, count auth failures, tell the relay to drop the client.
async fn end(daemon: &Daemon, conn: u64, error: &ConnError, sink: &mut Sink) -> Result<(), String> {
    note_failure(daemon, conn, error);
    send(sink, relay_frame(RelayMsg::Close { conn, reason: error.to_string() }, Vec::new())).await
}

fn note_failure(daemon: &Daemon, conn: u64, error: &ConnError) {
    if let ConnError::Auth(auth) = error {
        if !matches!(auth, AuthError::TimedOut) {
            daemon.throttle.failure();
        }
        eprintln!("tether daemon: client {conn} failed to authenticate: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_backs_off_then_locks_out() {
        let throttle = Throttle::default();
        assert_eq!(throttle.refuse(), None);
        throttle.failure();
        assert!(throttle.refuse().is_some_and(|w| w <= FIRST_PENALTY));
        for _ in 1..LOCKOUT_AFTER {
            throttle.failure();
        }
        assert!(throttle.refuse().is_some_and(|w| w > MAX_PENALTY));
        throttle.success();
        assert_eq!(throttle.refuse(), None);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert_eq!(host_ws_url("http://127.0.0.1:8080"), Ok("ws://127.0.0.1:8080/ws/host".into()));
        assert_eq!(host_ws_url("http://localhost:9/"), Ok("ws://localhost:9/ws/host".into()));
        assert!(host_ws_url("http://relay.example.com").is_err());
        assert!(host_ws_url("ftp://x").is_err());
    }
}
