//! Hostile parties on a real relay, for tests of what each side does with them:
//! - `FakeHost`, a host that lies: it registers as any agent does, completes the real handshake
//!   with a real client holding its invite, and then answers requests from a script — so a test
//!   sees what the CLI (or the page) does with answers a compromised host would send.
//! - `ThrowawayHost`, a stranger's host (anyone may register one, with any secret) that speaks
//!   only the relay's part of the protocol: it sees clients open and sends them what it likes.
//! - `SilentClients`, sockets from several source addresses that open a connection to a host and
//!   never say anything, reopened as they are dropped.
//! - `FakeRelay`, a relay that lies to hosts: it registers them and keeps what they showed to
//!   prove their ids, to try at a real relay (`try_register`).

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tether_protocol::api::{Request, Response};
use tether_protocol::cmd::cmd_frame;
use tether_protocol::connection::{Connection, Event, Input, Path};
use tether_protocol::frame::{Control, Frame, FrameDecoder, Header, RelayMsg};
use tether_protocol::handshake::{Credential, HandshakeEntropy, SALT_BYTES};
use tether_protocol::identity::{base32, host_id, invite_identity, HOST_SECRET_BYTES};
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{Message, WebSocket};

/// How long one read may block before the stop flag is looked at again.
const READ_POLL: Duration = Duration::from_millis(50);
/// A silent socket that hears from the relay this soon after opening was refused, not held.
const REFUSED_WITHIN: Duration = Duration::from_millis(300);

/// What the fake host does with one request: answer it, and send on its stream (the stream
/// whose id is the request's, given to the script beside the request).
pub enum Reply {
    Answer(Response),
    Data(Vec<u8>),
    Eof,
}

type Script = Box<dyn Fn(&Request, u32) -> Vec<Reply> + Send>;

/// A fake host on the relay; stops when dropped.
pub struct FakeHost {
    /// The invite a real client uses to reach it.
    pub invite: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHost {
    /// Register with `relay` and serve every client by `script`.
    pub fn start(relay: &crate::Relay, script: impl Fn(&Request, u32) -> Vec<Reply> + Send + 'static) -> FakeHost {
        let secret = [42u8; HOST_SECRET_BYTES];
        let id = host_id(&secret);
        let invite_secret = base32(&[7u8; 20]);
        let credential =
            Credential::derive(&id, &invite_identity(&invite_secret), invite_secret.as_bytes(), [9; SALT_BYTES])
                .expect("a credential");
        let relay_url = relay.url.trim_end_matches('/').to_owned();
        let ws = register(relay, &secret);
        let stop = Arc::new(AtomicBool::new(false));
        let serving = Serving { ws, host_id: id.clone(), credential, script: Box::new(script), peers: HashMap::new() };
        let (stopping, registered) = (stop.clone(), Arc::new(AtomicBool::new(false)));
        let seen = registered.clone();
        let thread = std::thread::spawn(move || serving.run(&stopping, &seen));
        crate::wait_until(Duration::from_secs(10), "the fake host to register", || {
            registered.load(Ordering::SeqCst).then_some(())
        });
        FakeHost { invite: format!("{relay_url}/#{id}.{invite_secret}"), stop, thread: Some(thread) }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Serving {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    host_id: String,
    credential: Credential,
    script: Script,
    peers: HashMap<u64, Connection>,
}

impl Serving {
    fn run(mut self, stop: &AtomicBool, registered: &AtomicBool) {
        let mut decoder = FrameDecoder::new();
        while !stop.load(Ordering::SeqCst) {
            let bytes = match self.ws.read() {
                Ok(Message::Binary(bytes)) => bytes,
                Ok(Message::Close(_)) => return,
                Ok(_) => continue,
                Err(tokio_tungstenite::tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(_) => return,
            };
            if decoder.push(&bytes).is_err() {
                return;
            }
            while let Ok(Some(frame)) = decoder.next_frame() {
                let Header::Relay(msg) = frame.header else { continue };
                match msg {
                    RelayMsg::Registered => registered.store(true, Ordering::SeqCst),
                    RelayMsg::Open { conn, .. } => {
                        let entropy = HandshakeEntropy::generate(|bytes: &mut [u8]| -> Result<(), ()> {
                            bytes
                                .iter_mut()
                                .enumerate()
                                .for_each(|(i, b)| *b = (i as u8).wrapping_mul(31) ^ conn as u8);
                            Ok(())
                        })
                        .expect("entropy");
                        self.peers.insert(conn, Connection::host(&self.host_id, entropy, 0));
                    }
                    RelayMsg::Forward { conn } => self.take(conn, &frame.payload),
                    RelayMsg::Close { conn, .. } => {
                        self.peers.remove(&conn);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Bytes from client `conn`: its handshake, then its requests, answered by the script.
    fn take(&mut self, conn: u64, bytes: &[u8]) {
        let Some(peer) = self.peers.get_mut(&conn) else { return };
        if peer.handle_input(Input::Bytes(bytes), 0).is_err() {
            self.peers.remove(&conn);
            return;
        }
        loop {
            let Some(peer) = self.peers.get_mut(&conn) else { return };
            let (transmits, events) = peer.drain_output();
            for (path, bytes) in transmits {
                assert_eq!(path, Path::Relay, "the fake host opens no data channel");
                send(&mut self.ws, Frame::relay(RelayMsg::Forward { conn }, bytes));
            }
            if events.is_empty() {
                return;
            }
            for event in events {
                let step = match event {
                    Event::CredentialNeeded { .. } => peer
                        .answer_hello(Some(&self.credential), 0)
                        .and_then(|work| peer.finish_hello(work.compute(), 0)),
                    Event::ProofReceived { .. } => peer.verify_proof(Some(&self.credential), 0),
                    Event::Cmd { id, body, .. } => {
                        let request = serde_json::from_value::<Request>(body).ok();
                        let replies = request.map(|request| (self.script)(&request, id as u32)).unwrap_or_default();
                        answer(peer, id, replies)
                    }
                    Event::Data { stream, bytes, .. } => peer.consumed(stream, bytes.len() as u64),
                    _ => Ok(()),
                };
                if step.is_err() {
                    self.peers.remove(&conn);
                    return;
                }
            }
        }
    }
}

fn answer(peer: &mut Connection, id: u64, replies: Vec<Reply>) -> Result<(), tether_protocol::ConnError> {
    let stream = id as u32;
    let mut seq = 0u64;
    for reply in replies {
        match reply {
            Reply::Answer(response) => peer.send_frame(&cmd_frame(id, &response, Vec::new()))?,
            Reply::Data(bytes) => {
                let sent = peer.send_data(stream, seq, &bytes)?;
                assert_eq!(sent, bytes.len(), "a fake host's replies fit the first window");
                seq += bytes.len() as u64;
            }
            Reply::Eof => peer.send_frame(&Frame::bare(Header::Control(Control::Eof { stream, end: seq })))?,
        }
    }
    Ok(())
}

/// Connect to `relay` as a host and ask to register the id of `secret` (what comes back is for
/// the caller to read).
fn register(relay: &crate::Relay, secret: &[u8; HOST_SECRET_BYTES]) -> WebSocket<MaybeTlsStream<TcpStream>> {
    let url = tether_protocol::identity::relay_ws_url(relay.url.trim_end_matches('/'), "/ws/host").expect("relay url");
    let (mut ws, _) = tokio_tungstenite::tungstenite::connect(url.as_str()).expect("websocket to the relay");
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_read_timeout(Some(READ_POLL)).expect("read timeout");
    }
    let register =
        RelayMsg::Register { host_id: host_id(secret), proof: tether_protocol::hex::encode(secret), signature: None };
    send(&mut ws, Frame::relay(register, Vec::new()));
    ws
}

/// A stranger's host on the relay: registered with `secret`, it reads what the relay tells it
/// and forwards whatever bytes it is told to, with no handshake behind them.
pub struct ThrowawayHost {
    pub host_id: String,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    decoder: FrameDecoder,
}

impl ThrowawayHost {
    pub fn register(relay: &crate::Relay, secret: [u8; HOST_SECRET_BYTES]) -> ThrowawayHost {
        let mut host =
            ThrowawayHost { host_id: host_id(&secret), ws: register(relay, &secret), decoder: FrameDecoder::new() };
        let registered = host.next_message(Duration::from_secs(10));
        assert_eq!(registered, Some(RelayMsg::Registered), "the relay registers a throwaway host");
        host
    }

    /// The relay's next message, or `None` if none came within `timeout` (or the link ended).
    pub fn next_message(&mut self, timeout: Duration) -> Option<RelayMsg> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(frame)) = self.decoder.next_frame() {
                if let Header::Relay(msg) = frame.header {
                    return Some(msg);
                }
                continue;
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => self.decoder.push(&bytes).ok()?,
                Ok(Message::Close(_)) => return None,
                Ok(_) => {}
                Err(tokio_tungstenite::tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Send `bytes` to client `conn`, as a host's `forward`.
    pub fn forward(&mut self, conn: u64, bytes: Vec<u8>) {
        let bytes = Frame::relay(RelayMsg::Forward { conn }, bytes).encode().expect("a relay frame");
        self.ws.send(Message::Binary(bytes.into())).expect("the relay takes a host's frames");
    }
}

/// Client sockets to one host that never say anything: `per_source` from each of `sources`
/// (loopback addresses), each reopened as soon as it is dropped, until this is dropped.
pub struct SilentClients {
    runtime: Option<tokio::runtime::Runtime>,
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentClients {
    pub fn hold(
        relay: &crate::Relay,
        host_id: &str,
        sources: &[std::net::Ipv4Addr],
        per_source: usize,
    ) -> SilentClients {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the silent clients");
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let relay_addr: std::net::SocketAddr = relay.address().parse().expect("relay address");
        let url =
            tether_protocol::identity::relay_ws_url(relay.url.trim_end_matches('/'), &format!("/ws/client/{host_id}"))
                .expect("client url");
        for &source in sources {
            for _ in 0..per_source {
                let (open, url) = (open.clone(), url.clone());
                runtime.spawn(async move {
                    loop {
                        if let Some(mut ws) = silent_socket(source, relay_addr, &url).await {
                            // Refused at once (a cap) is not held: the relay closes such a
                            // socket straight after opening it.
                            let refused = tokio::time::timeout(REFUSED_WITHIN, futures_util::StreamExt::next(&mut ws));
                            if refused.await.is_ok() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                            open.fetch_add(1, Ordering::SeqCst);
                            // Say nothing; wait for the other end to give up on us.
                            while let Some(Ok(message)) = futures_util::StreamExt::next(&mut ws).await {
                                if matches!(message, Message::Close(_)) {
                                    break;
                                }
                            }
                            open.fetch_sub(1, Ordering::SeqCst);
                        } else {
                            // Refused (a cap, the rate limit): knock again a little later.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                });
            }
        }
        SilentClients { runtime: Some(runtime), open }
    }

    /// How many are open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn silent_socket(
    source: std::net::Ipv4Addr,
    relay: std::net::SocketAddr,
    url: &str,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind((source, 0).into()).ok()?;
    let tcp = socket.connect(relay).await.ok()?;
    tokio_tungstenite::client_async(url, tcp).await.ok().map(|(ws, _)| ws)
}

impl Drop for SilentClients {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Show `register` to `relay` as a host would: `Ok` if it registered, else the close reason.
pub fn try_register(relay: &crate::Relay, register: RelayMsg) -> Result<(), String> {
    let url = tether_protocol::identity::relay_ws_url(relay.url.trim_end_matches('/'), "/ws/host").expect("relay url");
    let (mut ws, _) = tokio_tungstenite::tungstenite::connect(url.as_str()).expect("websocket to the relay");
    send(&mut ws, Frame::relay(register, Vec::new()));
    match ws.read() {
        Ok(Message::Binary(bytes)) => match tether_protocol::frame::decode_exact(&bytes).map(|f| f.header) {
            Ok(Header::Relay(RelayMsg::Registered)) => Ok(()),
            other => Err(format!("unexpected {other:?}")),
        },
        Ok(Message::Close(frame)) => Err(frame.map(|f| f.reason.to_string()).unwrap_or_default()),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// A relay that lies to hosts: it challenges and registers any host that dials it, keeps the
/// `register` message each showed, and then says nothing more. Stops when dropped.
pub struct FakeRelay {
    /// `http://127.0.0.1:PORT`, for `tether pair --relay`.
    pub url: String,
    registrations: Arc<std::sync::Mutex<Vec<RelayMsg>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRelay {
    pub fn start() -> FakeRelay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let registrations = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (registrations.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut hosts = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        if let Some(host) = take_registration(tcp, &kept) {
                            hosts.push(host); // held open: the host thinks it is registered
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(READ_POLL),
                    Err(_) => return,
                }
            }
        });
        FakeRelay { url, registrations, stop, thread: Some(thread) }
    }

    /// The `register` messages hosts have shown it.
    pub fn registrations(&self) -> Vec<RelayMsg> {
        self.registrations.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Accept one host: challenge it (as a real relay does), keep its `register`, say `registered`.
fn take_registration(tcp: TcpStream, kept: &std::sync::Mutex<Vec<RelayMsg>>) -> Option<WebSocket<TcpStream>> {
    use tokio_tungstenite::tungstenite::handshake::server::{Request as Upgrade, Response as Answer};
    tcp.set_nonblocking(false).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let challenge = |_: &Upgrade, mut answer: Answer| {
        let nonce = tether_protocol::hex::encode(&[0x5c; tether_protocol::identity::CHALLENGE_BYTES]);
        if let Ok(value) = nonce.parse() {
            answer.headers_mut().insert(tether_protocol::identity::CHALLENGE_HEADER, value);
        }
        Ok(answer)
    };
    let mut ws = tokio_tungstenite::tungstenite::accept_hdr(tcp, challenge).ok()?;
    let Ok(Message::Binary(bytes)) = ws.read() else { return None };
    let Ok(Header::Relay(register)) = tether_protocol::frame::decode_exact(&bytes).map(|f| f.header) else {
        return None;
    };
    if let Ok(mut kept) = kept.lock() {
        kept.push(register);
    }
    let registered = Frame::relay(RelayMsg::Registered, Vec::new()).encode().ok()?;
    ws.send(Message::Binary(registered.into())).ok()?;
    Some(ws)
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn send(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, frame: Frame) {
    let bytes = frame.encode().expect("a relay frame");
    let _ = ws.send(Message::Binary(bytes.into()));
}
