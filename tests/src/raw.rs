//! A protocol client driven by hand: the real `Connection` over a real WebSocket to the relay,
//! stepped one message at a time, so a test can stop where no CLI would (mid-handshake, or
//! authenticated but never reading) and send what no CLI would.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tether_protocol::connection::{Connection, Event, Input};
use tether_protocol::frame::Frame;
use tether_protocol::handshake::HandshakeEntropy;
use tether_protocol::identity::HostRef;
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{Message, WebSocket};

/// How long one read may block before the test's own deadline is looked at again.
const READ_POLL: Duration = Duration::from_millis(100);

/// What arrived from the relay.
#[derive(Debug)]
pub enum Received {
    /// Bytes the connection took; the events they produced.
    Events(Vec<Event>),
    /// The socket closed, with the relay's (or host's) reason.
    Closed(String),
}

pub struct RawClient {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    pub conn: Connection,
    /// What the connection queued while receiving, until `flush`.
    outbox: Vec<Vec<u8>>,
}

impl RawClient {
    /// Connect to the host an invite names and queue the client hello (not sent yet: `flush`).
    pub fn hello(invite: &str) -> RawClient {
        let Ok(HostRef::Invite(invite)) = HostRef::parse(invite) else { panic!("not an invite: {invite}") };
        RawClient::hello_as(&invite.address(), &invite.identity(), invite.secret.as_bytes())
    }

    /// Like `hello`, from the loopback address `source` (127.x.y.z): the relay counts pending
    /// handshakes per source, so many sources can open more of them at once.
    pub fn hello_from(invite: &str, source: std::net::Ipv4Addr) -> RawClient {
        let Ok(HostRef::Invite(invite)) = HostRef::parse(invite) else { panic!("not an invite: {invite}") };
        let url = invite.address().client_ws_url().expect("relay url");
        let authority = url.trim_start_matches("ws://").split('/').next().unwrap_or_default();
        let relay: std::net::SocketAddr = authority.parse().expect("a loopback relay address");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
        let tcp = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(std::net::SocketAddr::new(source.into(), 0)).expect("bind the source address");
            socket.connect(relay).await.expect("connect to the relay")
        });
        let tcp = tcp.into_std().expect("std stream");
        tcp.set_nonblocking(false).expect("blocking");
        let (ws, _) =
            tokio_tungstenite::tungstenite::client(url.as_str(), MaybeTlsStream::Plain(tcp)).expect("websocket");
        RawClient::over(ws, &invite.address(), &invite.identity(), invite.secret.as_bytes())
    }

    /// Connect to `address` as `identity` with `secret`; queue the hello.
    pub fn hello_as(address: &tether_protocol::identity::HostAddress, identity: &str, secret: &[u8]) -> RawClient {
        let url = address.client_ws_url().expect("relay url");
        let (ws, _) = tokio_tungstenite::tungstenite::connect(url.as_str()).expect("websocket to the relay");
        RawClient::over(ws, address, identity, secret)
    }

    fn over(
        ws: WebSocket<MaybeTlsStream<TcpStream>>,
        address: &tether_protocol::identity::HostAddress,
        identity: &str,
        secret: &[u8],
    ) -> RawClient {
        if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            tcp.set_read_timeout(Some(READ_POLL)).expect("read timeout");
        }
        let entropy = HandshakeEntropy::generate(|bytes: &mut [u8]| -> Result<(), ()> {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(113) ^ (std::process::id() as u8);
            }
            Ok(())
        })
        .expect("entropy");
        let conn = Connection::client(&address.host_id, identity, secret, entropy, 0);
        RawClient { ws, conn, outbox: Vec::new() }
    }

    /// Send everything the connection has queued; returns the events it had queued too.
    pub fn flush(&mut self) -> Vec<Event> {
        let (transmits, events) = self.conn.drain_output();
        // A raw client never opens a data channel: everything is for the relay.
        let transmits = transmits.into_iter().map(|(_, bytes)| bytes);
        for bytes in std::mem::take(&mut self.outbox).into_iter().chain(transmits) {
            self.ws.send(Message::Binary(bytes.into())).expect("send to the relay");
        }
        events
    }

    /// Send a frame sealed by the connection (after authentication), or fail.
    pub fn send(&mut self, frame: &Frame) {
        self.conn.send_frame(frame).expect("seal");
        self.flush();
    }

    /// The next message from the relay, fed to the connection, within `timeout`. Nothing queued
    /// in reply is sent (call `flush`). `None`: nothing came in time.
    pub fn receive(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Binary(bytes)) => {
                    if let Err(e) = self.conn.handle_input(Input::Bytes(&bytes), 0) {
                        return Some(Received::Closed(e.to_string()));
                    }
                    let (transmits, events) = self.conn.drain_output();
                    self.outbox.extend(transmits.into_iter().map(|(_, bytes)| bytes));
                    return Some(Received::Events(events));
                }
                Ok(Message::Close(frame)) => {
                    return Some(Received::Closed(frame.map(|f| f.reason.to_string()).unwrap_or_default()))
                }
                Ok(_) => {}
                Err(tokio_tungstenite::tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Some(Received::Closed(e.to_string())),
            }
        }
        None
    }

    /// Feed messages until the handshake is done (`Authenticated`), sending what it asks.
    pub fn authenticate(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.flush();
        while !self.conn.is_open() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receive(left) {
                Some(Received::Events(_)) => {
                    self.flush();
                }
                other => panic!("handshake did not complete: {other:?}"),
            }
        }
    }

    /// Answers (`cmd` events) that arrive within `timeout`, by request id, crediting any data;
    /// stops at `wanted`.
    pub fn answers(&mut self, timeout: Duration, wanted: usize) -> Vec<(u64, serde_json::Value)> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < wanted {
            match self.receive(deadline.saturating_duration_since(Instant::now())) {
                Some(Received::Events(events)) => {
                    for event in events {
                        match event {
                            Event::Cmd { id, body, .. } => got.push((id, body)),
                            Event::Data { stream, bytes, .. } => {
                                let _ = self.conn.consumed(stream, bytes.len() as u64);
                            }
                            _ => {}
                        }
                    }
                    self.flush();
                }
                Some(Received::Closed(reason)) => panic!("closed: {reason}"),
                None => break,
            }
        }
        got
    }

    /// Close the WebSocket abruptly (no sealed close): the host sees the transport end.
    pub fn drop_socket(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
