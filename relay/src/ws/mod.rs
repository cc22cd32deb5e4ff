//! WebSocket endpoints.
//!
//! - `/ws/host`: a host agent. Its first frame must be `relay/register` proving its id; then
//!   `relay/forward` and `relay/close` frames flow both ways.
//! - `/ws/presence?hosts=ID,ID…`: whether those hosts are online, as text messages
//!   `{"host":ID,"online":bool}` — each host's state at once, then every change.
//! - `/ws/client/{host_id}`: a client (browser or CLI). Its messages are passed to the host
//!   as they are — the relay never parses them — and the host's answers come back the same way.
//!
//! Limits, each with a clear close reason: message size, clients per host, registration
//! deadline, handshake deadline; and, checked first by `crate::admission`, connections per IP per
//! minute, connections per host (and per source) still handshaking, and browsers from another
//! origin.
//!
//! The relay learns that a client's handshake is over from the *outer* type of the host's
//! frames (`auth/server_proof`, or any `encrypted` frame) — never from what is inside them.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tether_protocol::frame::{
    decode_exact, AuthStep, Frame, FrameDecoder, Header, RelayMsg, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES,
};
use tether_protocol::identity;
use tokio::sync::mpsc;

use crate::admission::{screen_client, Refusal};
use crate::hub::{OpenError, ToClient, HOST_QUEUE_FRAMES};

/// Largest message a host may send: one maximal frame (a `forward` of the largest client
/// message) plus its two length prefixes.
pub const MAX_HOST_MESSAGE_BYTES: usize = MAX_HEADER_BYTES + MAX_PAYLOAD_BYTES + 8;
/// Largest message a client may send: what a `forward` frame's payload holds, the one limit the
/// protocol keeps end to end (`channel::MAX_MESSAGE_BYTES`). A bigger one (up to the socket's
/// own cap, a little above) closes the client's socket with "message too big" (close code
/// 1009) and says why, never a silent drop.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = tether_protocol::channel::MAX_MESSAGE_BYTES;
/// A host must register this soon after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message a presence watcher may send (it has nothing to say; pings are tiny).
const MAX_PRESENCE_MESSAGE_BYTES: usize = 1024;
/// Most hosts one presence watcher may ask about.
const MAX_PRESENCE_HOSTS: usize = 64;
/// Close codes (4000–4999 are for applications).
const CLOSE_HOST_OFFLINE: u16 = 4404;
const CLOSE_TOO_MANY: u16 = 4429;
const CLOSE_REFUSED: u16 = 4401;
const CLOSE_GONE: u16 = 4410;
const CLOSE_TIMEOUT: u16 = 4408;
/// RFC 6455's "message too big".
const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a message from the host to a client shows the handshake is over. Only the outer
/// frame type is looked at; a message that is not exactly one frame says nothing.
fn ends_handshake(message: &[u8]) -> bool {
    matches!(
        decode_exact(message).map(|f| f.header),
        Ok(Header::Auth(AuthStep::ServerProof) | Header::Encrypted { .. })
    )
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

pub async fn host_endpoint(
    State(relay): State<Arc<crate::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if !relay.admission.admit(peer.ip()) {
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response();
    }
    ws.max_message_size(MAX_HOST_MESSAGE_BYTES).on_upgrade(move |socket| host_session(relay, socket))
}

async fn host_session(app: Arc<crate::AppState>, mut socket: WebSocket) {
    let hub = &app.hub;
    let host_id = match tokio::time::timeout(REGISTER_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => match decode_exact(&bytes) {
            Ok(Frame { header: Header::Relay(RelayMsg::Register { host_id, proof }), .. })
                if identity::is_host_id(&host_id) && identity::verify(&host_id, &proof) =>
            {
                host_id
            }
            _ => {
                let _ = socket.send(close(CLOSE_REFUSED, "registration refused: bad host id or proof")).await;
                return;
            }
        },
        _ => {
            let _ = socket.send(close(CLOSE_REFUSED, "registration expected first")).await;
            return;
        }
    };
    let (to_host, mut queue) = mpsc::channel::<Frame>(HOST_QUEUE_FRAMES);
    // Weak: the hub's sender alone keeps the queue open, so a newer registration of this host
    // (which drops it) still ends this connection.
    let answers = to_host.downgrade();
    let generation = hub.register(&host_id, to_host);
    for frame in [Frame::bare(Header::Relay(RelayMsg::Registered)), ice_offer(&app.webrtc, &host_id)] {
        if let Ok(bytes) = frame.encode() {
            let _ = socket.send(Message::Binary(bytes.into())).await;
        }
    }
    // Reading and writing go on side by side: a host slow to take what we send must never stop
    // us taking what it sends (it may be waiting for exactly that before it reads again).
    let (mut sink, mut stream) = socket.split();
    let reading = async {
        let mut decoder = FrameDecoder::new();
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) => {
                    decoder.push(&bytes).map_err(|_| "malformed frame")?;
                    while let Some(frame) = decoder.next_frame().map_err(|_| "malformed frame")? {
                        if frame.header == Header::Relay(RelayMsg::IceRequest) {
                            // Through the host's queue, in order with what else goes to it, and
                            // never waiting on it (reading must not stop for a host slow to
                            // read): asked while its queue is full, the host asks again later.
                            let Some(to_host) = answers.upgrade() else { break };
                            let _ = to_host.try_send(ice_offer(&app.webrtc, &host_id));
                            continue;
                        }
                        hub.deliver_to_client(&host_id, frame);
                    }
                }
                Message::Close(_) => break,
                _ => {} // pings are answered by the library; text is ignored
            }
        }
        Ok(())
    };
    let writing = async {
        while let Some(frame) = queue.recv().await {
            let Ok(bytes) = frame.encode() else { continue };
            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                return Ok(());
            }
        }
        // The hub let go of our queue: a newer registration of this host replaced us.
        Err("replaced by a newer connection of this host")
    };
    let refusal = tokio::select! {
        read = reading => read.err().map(|why| (CLOSE_REFUSED, why)),
        written = writing => written.err().map(|why| (CLOSE_GONE, why)),
    };
    if let Some((code, why)) = refusal {
        let _ = sink.send(close(code, why)).await;
    }
    hub.unregister(&host_id, generation);
}

/// The `ice` message for a host: may it upgrade, and fresh TURN credentials when there is TURN.
fn ice_offer(policy: &crate::WebrtcPolicy, host_id: &str) -> Frame {
    let turn = policy.turn.as_ref().filter(|_| policy.allowed).map(|turn| turn.credentials(host_id));
    Frame::bare(Header::Relay(RelayMsg::Ice { webrtc: policy.allowed, turn }))
}

#[derive(serde::Deserialize)]
pub struct PresenceQuery {
    hosts: String,
}

pub async fn presence_endpoint(
    State(app): State<Arc<crate::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Query(query): axum::extract::Query<PresenceQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = screen_client(&app, peer, &headers) {
        return refused;
    }
    let hosts: Vec<String> = query.hosts.split(',').filter(|id| identity::is_host_id(id)).map(str::to_owned).collect();
    if hosts.is_empty() || hosts.len() > MAX_PRESENCE_HOSTS {
        return (StatusCode::BAD_REQUEST, "give 1 to 64 host ids: ?hosts=ID,ID\n").into_response();
    }
    ws.max_message_size(MAX_PRESENCE_MESSAGE_BYTES).on_upgrade(move |socket| presence_session(app, hosts, socket))
}

fn presence_message(host_id: &str, online: bool) -> Message {
    Message::Text(format!("{{\"host\":\"{host_id}\",\"online\":{online}}}").into())
}

async fn presence_session(app: Arc<crate::AppState>, hosts: Vec<String>, mut socket: WebSocket) {
    let hub = &app.hub;
    // Subscribe before reading the current state, so no change falls between the two.
    let mut changes = hub.watch_presence();
    let mut resend_all = true;
    loop {
        if std::mem::take(&mut resend_all) {
            for host in &hosts {
                if socket.send(presence_message(host, hub.is_online(host))).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) if hosts.contains(&change.host_id) => {
                    if socket.send(presence_message(&change.host_id, change.online)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => resend_all = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

pub async fn client_endpoint(
    State(app): State<Arc<crate::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(host_id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let source = match screen_client(&app, peer, &headers) {
        Ok(source) => source,
        Err(refused) => return refused,
    };
    if !identity::is_host_id(&host_id) {
        return (StatusCode::BAD_REQUEST, "not a host id\n").into_response();
    }
    ws.max_message_size(MAX_HOST_MESSAGE_BYTES).on_upgrade(move |socket| client_session(app, host_id, source, socket))
}

async fn client_session(app: Arc<crate::AppState>, host_id: String, source: IpAddr, mut socket: WebSocket) {
    let hub = &app.hub;
    let handshaking = match app.admission.begin_handshake(&host_id, source) {
        Ok(handshaking) => handshaking,
        Err(refusal) => {
            let why = match refusal {
                // "Try again": the client's rule for a burst (`client::redial::BUSY_HINT`).
                Refusal::HostFull => "too many connections waiting to authenticate with this host; try again shortly",
                Refusal::SourceFull => {
                    "too many connections from your address waiting to authenticate; try again shortly"
                }
            };
            let _ = socket.send(close(CLOSE_TOO_MANY, why)).await;
            return;
        }
    };
    let (conn, mut queue) = match hub.open_client(&host_id) {
        Ok(opened) => opened,
        Err(OpenError::HostOffline) => {
            let _ = socket.send(close(CLOSE_HOST_OFFLINE, "host offline")).await;
            return;
        }
        Err(OpenError::TooManyClients) => {
            let _ = socket.send(close(CLOSE_TOO_MANY, "too many clients for this host")).await;
            return;
        }
    };
    // As with hosts, reading and writing go on side by side, so neither waits for the other.
    let (mut sink, mut stream) = socket.split();
    let authenticated = std::sync::atomic::AtomicBool::new(false);
    // Bytes and messages forwarded each way, said when the connection ends: how an operator (and
    // a test) sees how much a connection leaned on the relay rather than a data channel, and how
    // chatty it was.
    let (to_host_bytes, to_client_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let (to_host_messages, to_client_messages) = (AtomicU64::new(0), AtomicU64::new(0));
    let reading = async {
        let deadline = tokio::time::sleep(app.admission.handshake_timeout);
        tokio::pin!(deadline);
        loop {
            let message = tokio::select! {
                // (Armed while waiting: the handshake may have ended since, so look again.)
                () = &mut deadline, if !authenticated.load(Ordering::Relaxed) => {
                    if authenticated.load(Ordering::Relaxed) {
                        continue;
                    }
                    return Err((CLOSE_TIMEOUT, "handshake timed out".to_owned()));
                }
                message = stream.next() => message,
            };
            match message {
                Some(Ok(Message::Binary(bytes))) if bytes.len() > MAX_CLIENT_MESSAGE_BYTES => {
                    let why =
                        format!("message of {} bytes is over the {MAX_CLIENT_MESSAGE_BYTES} byte limit", bytes.len());
                    return Err((CLOSE_TOO_BIG, why));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    to_host_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    to_host_messages.fetch_add(1, Ordering::Relaxed);
                    if !hub.deliver_to_host(&host_id, conn, bytes.to_vec()).await {
                        return Err((CLOSE_HOST_OFFLINE, "host offline".to_owned()));
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok("client disconnected"),
                Some(Ok(_)) => {}
            }
        }
    };
    let writing = async {
        let mut handshaking = Some(handshaking);
        while let Some(message) = queue.recv().await {
            match message {
                ToClient::Bytes(bytes) => {
                    if handshaking.is_some() && ends_handshake(&bytes) {
                        handshaking = None;
                        authenticated.store(true, Ordering::Relaxed);
                    }
                    to_client_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    to_client_messages.fetch_add(1, Ordering::Relaxed);
                    if sink.send(Message::Binary(bytes.into())).await.is_err() {
                        return Ok("client disconnected");
                    }
                }
                ToClient::Close(why) => return Err((CLOSE_GONE, why)),
            }
        }
        Ok("client disconnected")
    };
    let ended = tokio::select! { read = reading => read, written = writing => written };
    let reason = match ended {
        Ok(reason) => reason,
        Err((code, why)) => {
            let _ = sink.send(close(code, &why)).await;
            match code {
                CLOSE_TIMEOUT => "handshake timed out",
                CLOSE_TOO_BIG => "message too big",
                CLOSE_HOST_OFFLINE => "host gone",
                _ => "closed by host",
            }
        }
    };
    let (up, down) = (to_host_bytes.into_inner(), to_client_bytes.into_inner());
    let (ups, downs) = (to_host_messages.into_inner(), to_client_messages.into_inner());
    eprintln!(
        "tether-relay: client {conn} of host {host_id} ended ({reason}); forwarded {up} bytes to the host, {down} to the client; {ups} messages to the host, {downs} to the client"
    );
    hub.client_gone(&host_id, conn, reason);
}

#[cfg(test)]
mod tests;
