//! WebSocket endpoints.
//!
//! - `/ws/host`: a host agent. The upgrade's answer carries a fresh challenge
//!   (`identity::CHALLENGE_HEADER`); the host's first frame must be `relay/register` proving its
//!   id — signed over that challenge and this relay's address, or, for a legacy host, its
//!   secret; then `relay/forward` and `relay/close` frames flow both ways.
//! - `/ws/presence?hosts=ID,ID…`: whether those hosts are online, as text messages
//!   `{"host":ID,"online":bool}` — each host's state at once, then every change.
//! - `/ws/client/{host_id}`: a client (browser or CLI). Its messages are passed to the host
//!   as they are — the relay never parses them — and the host's answers come back the same way.
//!   For a host another node holds (`--redis`), the client is carried there (`cross_node`).
//! - `/internal/client/{host_id}`: such a client, arriving from the node it reached, after that
//!   node proved itself (`cross_node`); only on a relay that is one node of several.
//!
//! Limits, each with a clear close reason: message size, clients per host, registration
//! deadline, hello deadline (a client's first message), handshake deadline, silence (every
//! socket is pinged; one that answers nothing for `SILENCE_LIMIT` is dropped), a write that does
//! not go through within `WRITE_DEADLINE` (the peer stopped reading); and, checked first by
//! `crate::admission`, connections per source per minute, connections per host (and per source)
//! still handshaking, sockets of each kind per network, and browsers from another origin.
//!
//! The relay learns that a client's handshake is over from the *outer* type of the host's
//! frames (`auth/server_proof`, or any `encrypted` frame; `hub::ends_handshake`) — never from
//! what is inside them.

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
    decode_exact, Frame, FrameDecoder, Header, RelayMsg, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES,
};
use tether_protocol::identity;
use tokio::sync::mpsc;

use crate::admission::{screen_client, Held, Refusal};
use crate::hub::{ClientQueue, OpenError, ToClient, HOST_QUEUE_FRAMES};

/// Largest message a host may send: one maximal frame (a `forward` of the largest client
/// message) plus its two length prefixes.
pub const MAX_HOST_MESSAGE_BYTES: usize = MAX_HEADER_BYTES + MAX_PAYLOAD_BYTES + 8;
/// Largest message a client may send: what a `forward` frame's payload holds, the one limit the
/// protocol keeps end to end (`channel::MAX_MESSAGE_BYTES`). A bigger one (up to the socket's
/// own cap, a little above) closes the client's socket with "message too big" (close code
/// 1009) and says why, never a silent drop.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = tether_protocol::channel::MAX_MESSAGE_BYTES;
/// Bytes a socket reads at a time. The WebSocket library's default (128 KiB) is filled with zeros
/// at the first read, so it would be resident for every idle socket; a bigger message still
/// arrives whole (its buffer grows to it), in reads of this size.
pub const READ_CHUNK_BYTES: usize = 8 * 1024; // 8 KiB
/// A host must register this soon after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send its first message (its hello) this soon after connecting: a silent socket
/// must not hold a place for long (the host has the same deadline).
const HELLO_TIMEOUT: Duration = Duration::from_millis(tether_protocol::connection::HELLO_TIMEOUT_MS);
/// Every socket is pinged this often (browsers and agents answer by themselves)...
const PING_EVERY: Duration = Duration::from_secs(30);
/// ...and dropped once nothing at all (not even a pong) came from it for this long.
const SILENCE_LIMIT: Duration = Duration::from_secs(90);
/// A write to a socket that has not gone through by then drops it: it is not reading, and what
/// is queued for it is freed.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// How long the last words (a close frame) to a socket may take.
const CLOSE_DEADLINE: Duration = Duration::from_secs(1);
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

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

pub async fn host_endpoint(
    State(relay): State<Arc<crate::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let source = relay.admission.source(peer, &headers);
    if !relay.admission.admit(source) {
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response();
    }
    // The addresses a host may have dialled us by, for what it signs: this request's `Host`, and
    // the public URL's.
    let mut authorities: Vec<String> = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .into_iter()
        .collect();
    authorities.extend(relay.public_url.as_deref().and_then(authority_of));
    let mut nonce = [0u8; identity::CHALLENGE_BYTES];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness for a challenge\n").into_response();
    }
    let challenge = tether_protocol::hex::encode(&nonce);
    let expected = Challenge { nonce: challenge.clone(), authorities };
    let mut answer = ws
        .max_message_size(MAX_HOST_MESSAGE_BYTES)
        .read_buffer_size(READ_CHUNK_BYTES)
        .on_upgrade(move |socket| host_session(relay, source, expected, socket));
    if let Ok(value) = axum::http::HeaderValue::from_str(&challenge) {
        answer.headers_mut().insert(identity::CHALLENGE_HEADER, value);
    }
    answer
}

/// What a host registering on one connection must have signed: this nonce, and one of these
/// addresses of the relay.
struct Challenge {
    nonce: String,
    authorities: Vec<String>,
}

impl Challenge {
    /// Whether `proof` (and `signature`) prove `host_id`: a host key's signature over this
    /// challenge, or a legacy host's secret (`identity`). `Err`: why not, for the host's log.
    fn proves(&self, host_id: &str, proof: &str, signature: Option<&str>) -> Result<(), &'static str> {
        let refused = "registration refused: bad host id or proof";
        if !identity::is_host_id(host_id) {
            return Err(refused);
        }
        let Some(signature) = signature else {
            return identity::verify(host_id, proof).then_some(()).ok_or(refused);
        };
        let (Some(key), Some(signature)) = (
            tether_protocol::hex::decode_array::<{ identity::PUBLIC_KEY_BYTES }>(proof),
            tether_protocol::hex::decode_array::<64>(signature),
        ) else {
            return Err(refused);
        };
        if identity::key_host_id(&key) != host_id {
            return Err(refused);
        }
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
        let signed_here = self.authorities.iter().any(|authority| {
            let statement = identity::registration_statement(host_id, authority, &self.nonce);
            key.verify(&statement, &signature).is_ok()
        });
        signed_here.then_some(()).ok_or(
            // (A close reason has at most 123 bytes.)
            "registration refused: not signed for this relay's challenge (a proxy must pass Host on, or set --public-url)",
        )
    }
}

/// `host[:port]` of a URL, lower case.
fn authority_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

async fn host_session(app: Arc<crate::AppState>, source: IpAddr, challenge: Challenge, mut socket: WebSocket) {
    let hub = &app.hub;
    let Some(_holding) = hold_or_refuse(&app, Held::Host, source, &mut socket).await else { return };
    let host_id = match tokio::time::timeout(REGISTER_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Binary(bytes)))) => {
            let proven = match decode_exact(&bytes) {
                Ok(Frame { header: Header::Relay(RelayMsg::Register { host_id, proof, signature }), .. }) => {
                    challenge.proves(&host_id, &proof, signature.as_deref()).map(|()| host_id)
                }
                _ => Err("registration refused: a register message was expected"),
            };
            match proven {
                Ok(host_id) => host_id,
                Err(why) => {
                    let _ = socket.send(close(CLOSE_REFUSED, why)).await;
                    return;
                }
            }
        }
        _ => {
            let _ = socket.send(close(CLOSE_REFUSED, "registration expected first")).await;
            return;
        }
    };
    let (to_host, mut queue) = mpsc::channel::<crate::hub::ToHost>(HOST_QUEUE_FRAMES);
    // Weak: the hub's sender alone keeps the queue open, so a newer registration of this host
    // (which drops it) still ends this connection.
    let answers = to_host.downgrade();
    let generation = hub.register(&host_id, to_host);
    let mut peers = Vec::new();
    if let Some(cluster) = &app.cluster {
        cluster.routing.claim(&host_id, generation).await;
        peers = cluster.routing.peers().await;
    }
    // What data channels may use; TURN credentials only later, asked for with a client in.
    let policy = Frame::bare(Header::Relay(RelayMsg::Ice { webrtc: app.webrtc.allowed, turn: None }));
    let mut greeting = vec![Frame::bare(Header::Relay(RelayMsg::Registered)), policy];
    if !peers.is_empty() {
        greeting.push(Frame::bare(Header::Relay(RelayMsg::Peers { urls: peers })));
    }
    for frame in greeting {
        if let Ok(bytes) = frame.encode() {
            let _ = socket.send(Message::Binary(bytes.into())).await;
        }
    }
    // Reading and writing go on side by side: a host slow to take what we send must never stop
    // us taking what it sends (it may be waiting for exactly that before it reads again).
    let (mut sink, mut stream) = socket.split();
    let reading = async {
        let mut decoder = FrameDecoder::new();
        loop {
            let message = match tokio::time::timeout(SILENCE_LIMIT, stream.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(_) => break,
                Err(_) => return Err("silent for too long"),
            };
            match message {
                Message::Binary(bytes) => {
                    decoder.push(&bytes).map_err(|_| "malformed frame")?;
                    while let Some(frame) = decoder.next_frame().map_err(|_| "malformed frame")? {
                        if frame.header == Header::Relay(RelayMsg::IceRequest) {
                            // Through the host's queue, in order with what else goes to it, and
                            // never waiting on it (reading must not stop for a host slow to
                            // read): asked while its queue is full, the host asks again later.
                            let Some(to_host) = answers.upgrade() else { break };
                            let _ = to_host.try_send(Box::new(ice_offer(&app, &host_id, source)));
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
        let mut ping = pinger();
        loop {
            let message = tokio::select! {
                frame = queue.recv() => match frame {
                    Some(frame) => match frame.encode() {
                        Ok(bytes) => Message::Binary(bytes.into()),
                        Err(_) => continue,
                    },
                    // The hub let go of our queue: a newer registration of this host replaced us.
                    None => return Err("replaced by a newer connection of this host"),
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            match tokio::time::timeout(WRITE_DEADLINE, sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(()),
                Err(_) => return Err("not reading"),
            }
        }
    };
    let refusal = tokio::select! {
        read = reading => read.err().map(|why| (CLOSE_REFUSED, why)),
        written = writing => written.err().map(|why| (CLOSE_GONE, why)),
    };
    if let Some((code, why)) = refusal {
        let _ = tokio::time::timeout(CLOSE_DEADLINE, sink.send(close(code, why))).await;
    }
    if hub.unregister(&host_id, generation) {
        if let Some(cluster) = &app.cluster {
            cluster.routing.release(&host_id, generation).await;
        }
    }
}

/// The answer to a host's `ice_request`: may it upgrade, and fresh TURN credentials when there
/// is TURN and the host may have them now (`turn::TurnServer::grant`); without them, the host
/// keeps what it has.
fn ice_offer(app: &crate::AppState, host_id: &str, source: IpAddr) -> Frame {
    let policy = &app.webrtc;
    let turn = match policy.turn.as_ref().filter(|_| policy.allowed) {
        Some(turn) => {
            let has_client = app.hub.has_authenticated_client(host_id);
            match turn.grant(host_id, crate::admission::network_of(source), has_client) {
                Ok(credentials) => Some(credentials),
                Err(why) => {
                    eprintln!("tether-relay: no TURN credentials for host {host_id}: {why:?}");
                    None
                }
            }
        }
        None => None,
    };
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
    let source = match screen_client(&app, peer, &headers) {
        Ok(source) => source,
        Err(refused) => return refused,
    };
    let hosts: Vec<String> = query.hosts.split(',').filter(|id| identity::is_host_id(id)).map(str::to_owned).collect();
    if hosts.is_empty() || hosts.len() > MAX_PRESENCE_HOSTS {
        return (StatusCode::BAD_REQUEST, "give 1 to 64 host ids: ?hosts=ID,ID\n").into_response();
    }
    ws.max_message_size(MAX_PRESENCE_MESSAGE_BYTES)
        .read_buffer_size(READ_CHUNK_BYTES)
        .on_upgrade(move |socket| presence_session(app, hosts, source, socket))
}

/// Send with the write deadline: `false` if the socket is gone or not reading.
async fn send_within(socket: &mut WebSocket, message: Message) -> bool {
    matches!(tokio::time::timeout(WRITE_DEADLINE, socket.send(message)).await, Ok(Ok(())))
}

/// Count `socket` as one more of `kind` from `source`'s network, or tell it why not (`None`).
async fn hold_or_refuse<'a>(
    app: &'a crate::AppState,
    kind: Held,
    source: IpAddr,
    socket: &mut WebSocket,
) -> Option<crate::admission::Holding<'a>> {
    match app.admission.hold(kind, source) {
        Ok(holding) => Some(holding),
        Err(why) => {
            let _ = socket.send(close(CLOSE_TOO_MANY, &why)).await;
            None
        }
    }
}

/// Pings every `PING_EVERY`, the first one a period from now.
fn pinger() -> tokio::time::Interval {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping
}

fn presence_message(host_id: &str, online: bool) -> Message {
    Message::Text(format!("{{\"host\":\"{host_id}\",\"online\":{online}}}").into())
}

async fn presence_session(app: Arc<crate::AppState>, hosts: Vec<String>, source: IpAddr, mut socket: WebSocket) {
    let hub = &app.hub;
    let Some(_holding) = hold_or_refuse(&app, Held::Watcher, source, &mut socket).await else { return };
    // Subscribe before reading the current state, so no change falls between the two.
    let mut changes = hub.watch_presence();
    let mut resend_all = true;
    // What the watcher was told last: only changes go out.
    let mut told: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut ping = pinger();
    let silence = tokio::time::sleep(SILENCE_LIMIT);
    tokio::pin!(silence);
    loop {
        if std::mem::take(&mut resend_all) {
            for host in &hosts {
                let online = app.host_online(host).await;
                if told.insert(host.clone(), online) != Some(online)
                    && !send_within(&mut socket, presence_message(host, online)).await
                {
                    return;
                }
            }
        }
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) if hosts.contains(&change.host_id) => {
                    if told.insert(change.host_id.clone(), change.online) != Some(change.online)
                        && !send_within(&mut socket, presence_message(&change.host_id, change.online)).await
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => resend_all = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => silence.as_mut().reset(tokio::time::Instant::now() + SILENCE_LIMIT),
            },
            _ = ping.tick() => {
                if !send_within(&mut socket, Message::Ping(Default::default())).await {
                    return;
                }
                // Of several nodes, one may have died holding a host (its claims lapse in Redis
                // with no word on the channel): look again.
                resend_all = app.cluster.is_some();
            }
            () = &mut silence => {
                let _ = tokio::time::timeout(CLOSE_DEADLINE, socket.send(close(CLOSE_TIMEOUT, "silent for too long"))).await;
                return;
            }
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
    ws.max_message_size(MAX_HOST_MESSAGE_BYTES)
        .read_buffer_size(READ_CHUNK_BYTES)
        .on_upgrade(move |socket| client_session(app, host_id, source, Arrived::FromClient, socket))
}

/// How a client's socket reached this node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arrived {
    /// From the client itself: if another node holds its host, it is carried there.
    FromClient,
    /// From another node, which carries it (`cross_node`): only a host held here will do.
    FromNode,
}

async fn client_session(
    app: Arc<crate::AppState>,
    host_id: String,
    source: IpAddr,
    arrived: Arrived,
    mut socket: WebSocket,
) {
    let hub = &app.hub;
    let Some(_holding) = hold_or_refuse(&app, Held::Client, source, &mut socket).await else { return };
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
    let (conn, queue) = match hub.open_client(&host_id, app.admission.source_tag(source)) {
        Ok(opened) => opened,
        Err(OpenError::HostOffline) => {
            if let (Some(cluster), Arrived::FromClient) = (&app.cluster, arrived) {
                return cross_node::carry(cluster, &host_id, source, socket, handshaking).await;
            }
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
    let traffic = Traffic::default();
    let reading = read_client(&app, &host_id, conn, &mut stream, &authenticated, &traffic);
    let writing = write_client(&mut sink, queue, handshaking, &authenticated, &traffic);
    let ended = tokio::select! { read = reading => read, written = writing => written };
    let reason = match ended {
        Ok(reason) => reason.to_owned(),
        Err((code, why)) => {
            let _ = tokio::time::timeout(CLOSE_DEADLINE, sink.send(close(code, &why))).await;
            // The closing handshake: read on until the client's close comes back. A socket
            // dropped with unread bytes in it is reset, and a reset can take the close frame
            // (and its reason — "access revoked", say) with it before the client reads it.
            let _ = tokio::time::timeout(CLOSE_DEADLINE, async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
            why
        }
    };
    let (up, down) = (traffic.to_host_bytes.into_inner(), traffic.to_client_bytes.into_inner());
    let (ups, downs) = (traffic.to_host_messages.into_inner(), traffic.to_client_messages.into_inner());
    eprintln!(
        "tether-relay: client {conn} of host {host_id} ended ({reason}); forwarded {up} bytes to the host, {down} to the client; {ups} messages to the host, {downs} to the client"
    );
    hub.client_gone(&host_id, conn, &reason);
}

/// Bytes and messages forwarded each way, said when the connection ends: how an operator (and
/// a test) sees how much a connection leaned on the relay rather than a data channel, and how
/// chatty it was.
#[derive(Default)]
struct Traffic {
    to_host_bytes: AtomicU64,
    to_client_bytes: AtomicU64,
    to_host_messages: AtomicU64,
    to_client_messages: AtomicU64,
}

/// How a client's connection ended: in order (`Ok`), or with a close code and reason.
type Ended = Result<&'static str, (u16, String)>;

/// Take what the client sends and pass it to its host, within the hello, handshake and
/// silence deadlines.
async fn read_client(
    app: &crate::AppState,
    host_id: &str,
    conn: u64,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    authenticated: &std::sync::atomic::AtomicBool,
    traffic: &Traffic,
) -> Ended {
    let handshake_deadline = tokio::time::sleep(app.admission.handshake_timeout);
    let hello_deadline = tokio::time::sleep(HELLO_TIMEOUT);
    let silence = tokio::time::sleep(SILENCE_LIMIT);
    tokio::pin!(handshake_deadline, hello_deadline, silence);
    let mut said_hello = false;
    loop {
        let message = tokio::select! {
            () = &mut hello_deadline, if !said_hello => {
                return Err((CLOSE_TIMEOUT, "no hello in time".to_owned()));
            }
            // (Armed while waiting: the handshake may have ended since, so look again.)
            () = &mut handshake_deadline, if !authenticated.load(Ordering::Relaxed) => {
                if authenticated.load(Ordering::Relaxed) {
                    continue;
                }
                return Err((CLOSE_TIMEOUT, "handshake timed out".to_owned()));
            }
            () = &mut silence => return Err((CLOSE_TIMEOUT, "silent for too long".to_owned())),
            message = stream.next() => message,
        };
        silence.as_mut().reset(tokio::time::Instant::now() + SILENCE_LIMIT);
        match message {
            Some(Ok(Message::Binary(bytes))) if bytes.len() > MAX_CLIENT_MESSAGE_BYTES => {
                let why = format!("message of {} bytes is over the {MAX_CLIENT_MESSAGE_BYTES} byte limit", bytes.len());
                return Err((CLOSE_TOO_BIG, why));
            }
            Some(Ok(Message::Binary(bytes))) => {
                said_hello = true;
                traffic.to_host_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                traffic.to_host_messages.fetch_add(1, Ordering::Relaxed);
                if !app.hub.deliver_to_host(host_id, conn, bytes.to_vec()).await {
                    return Err((CLOSE_HOST_OFFLINE, "host offline".to_owned()));
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok("client disconnected"),
            Some(Ok(_)) => {} // pongs (they count as heard), text
        }
    }
}

/// Pass the host's messages to the client, and pings; within the write deadline, and at once
/// out when the hub drops the client. The handshake ends (`handshaking` is let go) at the
/// host's first `server_proof` or `encrypted` frame.
async fn write_client(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    mut queue: ClientQueue,
    handshaking: crate::admission::Handshaking<'_>,
    authenticated: &std::sync::atomic::AtomicBool,
    traffic: &Traffic,
) -> Ended {
    let mut handshaking = Some(handshaking);
    let mut ping = pinger();
    loop {
        let message = tokio::select! {
            message = queue.recv() => match message {
                Some(ToClient::Bytes(bytes)) => {
                    if handshaking.is_some() && queue.is_authenticated() {
                        handshaking = None;
                        authenticated.store(true, Ordering::Relaxed);
                    }
                    traffic.to_client_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    traffic.to_client_messages.fetch_add(1, Ordering::Relaxed);
                    Message::Binary(bytes.into())
                }
                Some(ToClient::Close(why)) => return Err((CLOSE_GONE, why)),
                None => return Ok("client disconnected"),
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        tokio::select! {
            sent = tokio::time::timeout(WRITE_DEADLINE, sink.send(message)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok("client disconnected"),
                Err(_) => return Err((CLOSE_GONE, "not reading".to_owned())),
            },
            why = queue.dropped() => return Err((CLOSE_GONE, why)),
        }
    }
}

mod cross_node;
pub use cross_node::internal_client_endpoint;

#[cfg(test)]
mod tests;
