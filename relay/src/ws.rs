//! WebSocket endpoints.
//!
//! - `/ws/host`: a host agent. Its first frame must be `relay/register` proving its id; then
//!   `relay/forward` and `relay/close` frames flow both ways.
//! - `/ws/presence?hosts=ID,ID…`: whether those hosts are online, as text messages
//!   `{"host":ID,"online":bool}` — each host's state at once, then every change.
//! - `/ws/client/{host_id}`: a client (browser or CLI). Its messages are passed to the host
//!   as they are — the relay never parses them — and the host's answers come back the same way.
//!
//! Limits, each with a clear close reason: message size, clients per host, connections per IP
//! per minute, registration deadline, handshake deadline, connections per host still
//! handshaking; and browsers from another origin are refused.
//!
//! The relay learns that a client's handshake is over from the *outer* type of the host's
//! frames (`auth/server_proof`, or any `encrypted` frame) — never from what is inside them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tether_protocol::frame::{
    decode_exact, AuthStep, Frame, FrameDecoder, Header, RelayMsg, MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES,
};
use tether_protocol::identity;
use tether_protocol::sync::lock;
use tokio::sync::mpsc;

use crate::hub::{Hub, OpenError, ToClient, HOST_QUEUE_FRAMES};

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
/// Window of the per-IP connection rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Largest message a presence watcher may send (it has nothing to say; pings are tiny).
const MAX_PRESENCE_MESSAGE_BYTES: usize = 1024;
/// Most hosts one presence watcher may ask about.
const MAX_PRESENCE_HOSTS: usize = 64;
/// Most client connections per host that have not finished their handshake.
const MAX_PENDING_PER_HOST: usize = 64;
/// Most of those from one source address: one stranger cannot fill a host's door.
const MAX_PENDING_PER_SOURCE: usize = 4;

/// Close codes (4000–4999 are for applications).
const CLOSE_HOST_OFFLINE: u16 = 4404;
const CLOSE_TOO_MANY: u16 = 4429;
const CLOSE_REFUSED: u16 = 4401;
const CLOSE_GONE: u16 = 4410;
const CLOSE_TIMEOUT: u16 = 4408;
/// RFC 6455's "message too big".
const CLOSE_TOO_BIG: u16 = 1009;

pub struct Relay {
    pub hub: Hub,
    max_connects_per_minute: u32,
    connects: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// A client must finish its handshake with the host this soon after connecting.
    handshake_timeout: Duration,
    /// Client connections per host still handshaking, in all and per source address.
    pending: Mutex<HashMap<String, Pending>>,
    /// Behind a proxy: the source is the address it appended to `X-Forwarded-For`.
    trust_proxy: bool,
}

#[derive(Default)]
struct Pending {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a client may not start a handshake now.
enum Refusal {
    HostFull,
    SourceFull,
}

impl Relay {
    pub fn new(
        max_clients_per_host: usize,
        max_connects_per_minute: u32,
        handshake_timeout: Duration,
        trust_proxy: bool,
    ) -> Relay {
        Relay {
            hub: Hub::new(max_clients_per_host),
            max_connects_per_minute,
            connects: Mutex::new(HashMap::new()),
            handshake_timeout,
            pending: Mutex::new(HashMap::new()),
            trust_proxy,
        }
    }

    /// Where a connection comes from: the peer, or with `--trust-proxy` the address the proxy
    /// in front of us saw (the last entry of `X-Forwarded-For`: the ones before it are whatever
    /// the client claimed).
    fn source(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trust_proxy {
            return peer.ip();
        }
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back();
        forwarded.and_then(|list| list.rsplit(',').next()).and_then(|ip| ip.trim().parse().ok()).unwrap_or(peer.ip())
    }

    /// Count one more handshaking client of `host_id` from `source`, unless the host or that
    /// source already has as many as it may.
    fn begin_handshake(&self, host_id: &str, source: IpAddr) -> Result<Handshaking<'_>, Refusal> {
        let mut pending = lock(&self.pending);
        let host = pending.entry(host_id.to_owned()).or_default();
        let from_source = host.by_source.get(&source).copied().unwrap_or(0);
        if host.total >= MAX_PENDING_PER_HOST {
            return Err(Refusal::HostFull);
        }
        if from_source >= MAX_PENDING_PER_SOURCE {
            return Err(Refusal::SourceFull);
        }
        host.total += 1;
        *host.by_source.entry(source).or_default() += 1;
        Ok(Handshaking { relay: self, host_id: host_id.to_owned(), source })
    }

    /// Count a connection attempt from `ip`; `false` when over the limit.
    fn admit(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut connects = lock(&self.connects);
        if connects.len() > 100_000 {
            connects.retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
        }
        let entry = connects.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.max_connects_per_minute
    }
}

/// One client counted as handshaking until this is dropped (handshake over, or client gone).
struct Handshaking<'a> {
    relay: &'a Relay,
    host_id: String,
    source: IpAddr,
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.relay.pending);
        let Some(host) = pending.get_mut(&self.host_id) else { return };
        host.total = host.total.saturating_sub(1);
        if let Some(count) = host.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                host.by_source.remove(&self.source);
            }
        }
        if host.total == 0 {
            pending.remove(&self.host_id);
        }
    }
}

/// Whether a message from the host to a client shows the handshake is over. Only the outer
/// frame type is looked at; a message that is not exactly one frame says nothing.
fn ends_handshake(message: &[u8]) -> bool {
    matches!(
        decode_exact(message).map(|f| f.header),
        Ok(Header::Auth(AuthStep::ServerProof) | Header::Encrypted { .. })
    )
}

/// A browser's `Origin` must be this relay itself; non-browser clients send none.
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    origin_host == host
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

pub async fn host_endpoint(
    State(relay): State<Arc<crate::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if !relay.relay.admit(peer.ip()) {
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response();
    }
    ws.max_message_size(MAX_HOST_MESSAGE_BYTES).on_upgrade(move |socket| host_session(relay, socket))
}

async fn host_session(app: Arc<crate::AppState>, mut socket: WebSocket) {
    let hub = &app.relay.hub;
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

/// What every client-facing endpoint checks first: a browser's page must come from this relay,
/// and each address may open only so many connections a minute.
/// Returns the connection's source address.
fn screen_client(app: &crate::AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<IpAddr, Response> {
    if !origin_allowed(headers) {
        return Err((StatusCode::FORBIDDEN, "cross-origin connections are refused\n").into_response());
    }
    let source = app.relay.source(peer, headers);
    if !app.relay.admit(source) {
        return Err((StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response());
    }
    Ok(source)
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
    let hub = &app.relay.hub;
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
    let hub = &app.relay.hub;
    let handshaking = match app.relay.begin_handshake(&host_id, source) {
        Ok(handshaking) => handshaking,
        Err(refusal) => {
            let why = match refusal {
                Refusal::HostFull => "too many connections waiting to authenticate with this host",
                Refusal::SourceFull => "too many connections from your address waiting to authenticate",
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
        let deadline = tokio::time::sleep(app.relay.handshake_timeout);
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
mod tests {
    use std::sync::Arc;

    use futures_util::{SinkExt, StreamExt};
    use tether_protocol::frame::{decode_exact, AuthStep, Frame, Header, RelayMsg};
    use tether_protocol::identity;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    /// Short, so the deadline test is quick; long enough for a loaded test machine's handshakes.
    const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn start_relay() -> String {
        start_relay_with(crate::WebrtcPolicy { allowed: true, turn: None }).await
    }

    async fn start_relay_with(webrtc: crate::WebrtcPolicy) -> String {
        let root = std::env::temp_dir().join(format!(
            "tether-relay-ws-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&root).expect("web root");
        std::fs::write(root.join("index.html"), "<html></html>").expect("index");
        let web = crate::web::WebApp::load(&root).expect("web app");
        let app = Arc::new(crate::AppState {
            web,
            relay: super::Relay::new(256, 1000, HANDSHAKE_TIMEOUT, true),
            binaries: None,
            public_url: None,
            tls: false,
            webrtc,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let service = crate::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        format!("ws://{addr}")
    }

    async fn connect(url: &str) -> Ws {
        tokio_tungstenite::connect_async(url).await.expect("connect").0
    }

    /// Connect as if through a proxy that saw the client at `source` (the test relay trusts it).
    async fn connect_from(url: &str, source: &str) -> Ws {
        let mut request = url.into_client_request().expect("request");
        let claimed = format!("6.6.6.6, {source}");
        request.headers_mut().insert("x-forwarded-for", claimed.parse().expect("header"));
        tokio_tungstenite::connect_async(request).await.expect("connect").0
    }

    async fn send_frame(ws: &mut Ws, frame: Frame) {
        ws.send(WsMessage::Binary(frame.encode().expect("encode").into())).await.expect("send");
    }

    async fn next_frame(ws: &mut Ws) -> Frame {
        loop {
            match ws.next().await.expect("open").expect("message") {
                WsMessage::Binary(bytes) => return decode_exact(&bytes).expect("frame"),
                WsMessage::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    async fn close_reason(ws: &mut Ws) -> String {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Close(Some(frame)))) => return frame.reason.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Register a host; returns its socket, its id and the relay's `ice` offer that follows.
    async fn register_host(url: &str, secret: [u8; 32]) -> (Ws, String, RelayMsg) {
        let host_id = identity::host_id(&secret);
        let mut host = connect(&format!("{url}/ws/host")).await;
        let proof = tether_protocol::hex::encode(&secret);
        send_frame(&mut host, Frame::bare(Header::Relay(RelayMsg::Register { host_id: host_id.clone(), proof }))).await;
        assert_eq!(next_frame(&mut host).await.header, Header::Relay(RelayMsg::Registered));
        let Header::Relay(offer) = next_frame(&mut host).await.header else { panic!("an ice offer") };
        (host, host_id, offer)
    }

    async fn register(url: &str, secret: [u8; 32]) -> (Ws, String) {
        let (host, host_id, offer) = register_host(url, secret).await;
        assert_eq!(offer, RelayMsg::Ice { webrtc: true, turn: None });
        (host, host_id)
    }

    #[tokio::test]
    async fn hosts_learn_the_webrtc_policy_and_get_fresh_turn_credentials_on_request() {
        let dir = std::env::temp_dir().join(format!("tether-relay-turn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("secret"), "s3cret\n").expect("secret");
        let turn = crate::turn::Turn::load(vec!["turn:127.0.0.1:3478".into()], &dir.join("secret")).expect("turn");
        let url = start_relay_with(crate::WebrtcPolicy { allowed: true, turn: Some(turn) }).await;
        let (mut host, host_id, mut offer) = register_host(&url, [7; 32]).await;
        for _ in 0..2 {
            let RelayMsg::Ice { webrtc: true, turn: Some(turn) } = offer else { panic!("an ice offer with TURN") };
            assert_eq!(turn.urls, ["turn:127.0.0.1:3478"]);
            assert_eq!(turn.username, format!("{}:{host_id}", turn.expires));
            assert!(!turn.credential.is_empty() && !turn.credential.contains("s3cret"));
            send_frame(&mut host, Frame::bare(Header::Relay(RelayMsg::IceRequest))).await;
            let Header::Relay(next) = next_frame(&mut host).await.header else { panic!("an ice offer") };
            offer = next;
        }
        let _ = std::fs::remove_dir_all(&dir);

        let url = start_relay_with(crate::WebrtcPolicy { allowed: false, turn: None }).await;
        let (_host, _, offer) = register_host(&url, [8; 32]).await;
        assert_eq!(offer, RelayMsg::Ice { webrtc: false, turn: None });
    }

    #[tokio::test]
    async fn forwards_opaque_bytes_between_client_and_host() {
        let url = start_relay().await;
        let (mut host, host_id) = register(&url, [1; 32]).await;
        let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
        let Header::Relay(RelayMsg::Open { conn }) = next_frame(&mut host).await.header else { panic!("open") };

        // Whatever the client sends — here not even a valid frame — reaches the host untouched.
        client.send(WsMessage::Binary(b"\x00opaque bytes".to_vec().into())).await.expect("send");
        let forwarded = next_frame(&mut host).await;
        assert_eq!(forwarded.header, Header::Relay(RelayMsg::Forward { conn }));
        assert_eq!(forwarded.payload, b"\x00opaque bytes");

        send_frame(&mut host, Frame::new(Header::Relay(RelayMsg::Forward { conn }), b"answer".to_vec())).await;
        match client.next().await {
            Some(Ok(WsMessage::Binary(bytes))) => assert_eq!(&bytes[..], b"answer"),
            other => panic!("{other:?}"),
        }

        // The host closes the connection with a reason the client sees.
        send_frame(&mut host, Frame::bare(Header::Relay(RelayMsg::Close { conn, reason: "bye".into() }))).await;
        assert_eq!(close_reason(&mut client).await, "bye");
    }

    #[tokio::test]
    async fn a_client_message_too_big_to_forward_is_refused_not_dropped() {
        let url = start_relay().await;
        let (mut host, host_id) = register(&url, [2; 32]).await;
        let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
        let Header::Relay(RelayMsg::Open { conn }) = next_frame(&mut host).await.header else { panic!("open") };
        // The largest message that fits a forward frame is passed on whole...
        let fits = vec![7u8; super::MAX_CLIENT_MESSAGE_BYTES];
        client.send(WsMessage::Binary(fits.clone().into())).await.expect("send");
        let forwarded = next_frame(&mut host).await;
        assert_eq!(
            (forwarded.header, forwarded.payload.len()),
            (Header::Relay(RelayMsg::Forward { conn }), fits.len())
        );
        // ...one byte more is refused where it enters, and the sender hears of it.
        let _ = client.send(WsMessage::Binary(vec![7u8; super::MAX_CLIENT_MESSAGE_BYTES + 1].into())).await;
        let ended = async {
            loop {
                match client.next().await {
                    Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    None | Some(Err(_)) => return None,
                    Some(Ok(_)) => continue,
                }
            }
        };
        let code = tokio::time::timeout(std::time::Duration::from_secs(10), ended).await.expect("the relay answered");
        assert_eq!(code, Some(1009), "closed as 'message too big'");
        // The host is told the client is gone.
        let closed = next_frame(&mut host).await;
        assert!(matches!(closed.header, Header::Relay(RelayMsg::Close { conn: c, .. }) if c == conn), "{closed:?}");
    }

    #[tokio::test]
    async fn offline_hosts_and_bad_registrations_are_refused_clearly() {
        let url = start_relay().await;
        let offline = identity::host_id(&[9; 32]);
        let mut client = connect(&format!("{url}/ws/client/{offline}")).await;
        assert_eq!(close_reason(&mut client).await, "host offline");

        // Claiming an id without its secret fails.
        let victim = identity::host_id(&[2; 32]);
        let mut squatter = connect(&format!("{url}/ws/host")).await;
        let proof = tether_protocol::hex::encode(&[3u8; 32]);
        send_frame(&mut squatter, Frame::bare(Header::Relay(RelayMsg::Register { host_id: victim, proof }))).await;
        assert!(close_reason(&mut squatter).await.contains("registration refused"));

        // A browser page from another origin cannot connect.
        let mut request = format!("{url}/ws/client/{offline}").into_client_request().expect("request");
        request.headers_mut().insert("origin", "https://evil.example".parse().expect("header"));
        assert!(tokio_tungstenite::connect_async(request).await.is_err());
    }

    #[tokio::test]
    async fn a_reconnecting_host_takes_over_its_id() {
        let url = start_relay().await;
        let (mut old, host_id) = register(&url, [4; 32]).await;
        let (mut new, _) = register(&url, [4; 32]).await;
        assert!(close_reason(&mut old).await.contains("replaced"));
        let _client = connect(&format!("{url}/ws/client/{host_id}")).await;
        assert!(matches!(next_frame(&mut new).await.header, Header::Relay(RelayMsg::Open { .. })));
    }

    #[tokio::test]
    async fn a_client_must_finish_its_handshake_in_time() {
        let url = start_relay().await;
        let (mut host, host_id) = register(&url, [5; 32]).await;

        // A client that never completes a handshake is closed at the deadline, and the host told.
        let mut idle = connect(&format!("{url}/ws/client/{host_id}")).await;
        let Header::Relay(RelayMsg::Open { conn: idle_conn }) = next_frame(&mut host).await.header else { panic!() };
        assert_eq!(close_reason(&mut idle).await, "handshake timed out");
        assert!(
            matches!(next_frame(&mut host).await.header, Header::Relay(RelayMsg::Close { conn, .. }) if conn == idle_conn)
        );

        // Once the host's proof has gone through, the deadline no longer applies. (This waits out
        // the deadline on purpose: it checks that something does *not* happen.)
        let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
        let Header::Relay(RelayMsg::Open { conn }) = next_frame(&mut host).await.header else { panic!() };
        let proof = Frame::new(Header::Auth(AuthStep::ServerProof), vec![0; 32]).encode().expect("encode");
        send_frame(&mut host, Frame::new(Header::Relay(RelayMsg::Forward { conn }), proof)).await;
        assert!(matches!(client.next().await, Some(Ok(WsMessage::Binary(_)))));
        tokio::time::sleep(HANDSHAKE_TIMEOUT * 2).await;
        client.send(WsMessage::Binary(b"still here".to_vec().into())).await.expect("send");
        assert_eq!(next_frame(&mut host).await.payload, b"still here");
    }

    #[tokio::test]
    async fn too_many_handshaking_clients_are_refused() {
        let url = start_relay().await;
        let (_host, host_id) = register(&url, [6; 32]).await;
        let client_url = format!("{url}/ws/client/{host_id}");
        let mut waiting = Vec::new();
        for i in 0..super::MAX_PENDING_PER_HOST {
            waiting.push(connect_from(&client_url, &format!("10.1.{}.{}", i / 200, i % 200)).await);
        }
        let mut one_more = connect_from(&client_url, "10.2.0.1").await;
        assert!(close_reason(&mut one_more).await.contains("too many connections waiting"));
    }

    #[test]
    fn the_source_is_the_peer_unless_a_trusted_proxy_names_it() {
        let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.9".parse().expect("header"));
        let direct = super::Relay::new(1, 1, HANDSHAKE_TIMEOUT, false);
        assert_eq!(direct.source(peer, &headers), peer.ip(), "a client cannot pick its own address");
        let proxied = super::Relay::new(1, 1, HANDSHAKE_TIMEOUT, true);
        assert_eq!(proxied.source(peer, &headers).to_string(), "10.0.0.9", "the proxy's entry, not the claim");
    }

    #[tokio::test]
    async fn one_source_cannot_fill_a_hosts_door() {
        let url = start_relay().await;
        let (mut host, host_id) = register(&url, [8; 32]).await;
        let client_url = format!("{url}/ws/client/{host_id}");
        let mut idle = Vec::new();
        for _ in 0..super::MAX_PENDING_PER_SOURCE {
            idle.push(connect_from(&client_url, "10.0.0.1").await);
        }
        let mut one_more = connect_from(&client_url, "10.0.0.1").await;
        assert!(close_reason(&mut one_more).await.contains("from your address"));
        // Someone else still gets through to the host.
        let _other = connect_from(&client_url, "10.0.0.2").await;
        let opened = next_frame(&mut host).await;
        assert!(matches!(opened.header, Header::Relay(RelayMsg::Open { .. })), "{opened:?}");
    }

    #[tokio::test]
    async fn presence_follows_hosts_coming_and_going() {
        let url = start_relay().await;
        let host_id = identity::host_id(&[7; 32]);
        let mut watcher = connect(&format!("{url}/ws/presence?hosts={host_id}")).await;
        let mut next_text = async || loop {
            match watcher.next().await.expect("open").expect("message") {
                WsMessage::Text(text) => return serde_json::from_str::<serde_json::Value>(&text).expect("json"),
                _ => continue,
            }
        };
        assert_eq!(next_text().await, serde_json::json!({ "host": host_id, "online": false }));
        let (host, _) = register(&url, [7; 32]).await;
        assert_eq!(next_text().await, serde_json::json!({ "host": host_id, "online": true }));
        drop(host);
        assert_eq!(next_text().await, serde_json::json!({ "host": host_id, "online": false }));
        assert!(connect_async_status(&format!("{url}/ws/presence?hosts=nonsense")).await.is_err());
    }

    #[tokio::test]
    async fn a_presence_watcher_cannot_send_big_messages() {
        let url = start_relay().await;
        let host_id = identity::host_id(&[9; 32]);
        let mut watcher = connect(&format!("{url}/ws/presence?hosts={host_id}")).await;
        watcher.send(WsMessage::Text("x".repeat(super::MAX_PRESENCE_MESSAGE_BYTES + 1).into())).await.expect("send");
        // Its first presence line may come before the refusal; then the socket must end.
        let ended = async {
            loop {
                match watcher.next().await {
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                }
            }
        };
        let deadline = std::time::Duration::from_secs(10);
        assert!(tokio::time::timeout(deadline, ended).await.is_ok(), "the relay kept reading an oversized message");
    }

    async fn connect_async_status(url: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        tokio_tungstenite::connect_async(url).await.map(|_| ())
    }
}
