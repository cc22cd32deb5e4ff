//! A WebSocket proxy standing where an attacker in the relay's position would: it sees exactly
//! the messages the relay sees, records them, and can flip, replay or reorder what it passes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// What to do to the relay → client messages of each client connection (counting binary
/// messages from 0: the server's hello, its proof, then sealed frames).
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    None,
    /// Flip one bit in message `nth`.
    FlipBit {
        nth: usize,
    },
    /// Flip one bit in the first sealed message (after the handshake's two) of at least
    /// `min_bytes`: the host's WebRTC answer, in a session whose output is all small.
    FlipFirstLarge {
        min_bytes: usize,
    },
    /// Pass message `nth` on twice.
    Replay {
        nth: usize,
    },
    /// Hold message `nth` back until the one after it has gone.
    Reorder {
        nth: usize,
    },
}

pub struct WsProxy {
    /// `http://127.0.0.1:PORT`: use it as the relay URL.
    pub url: String,
    recorded: Arc<Mutex<Vec<u8>>>,
    tampered: Arc<AtomicBool>,
    _runtime: tokio::runtime::Runtime,
}

impl WsProxy {
    /// Proxy to the relay at `relay` (`host:port`).
    pub fn start(relay: &str, tamper: Tamper) -> WsProxy {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let relay = relay.to_owned();
        let (record, tampered) = (recorded.clone(), Arc::new(AtomicBool::new(false)));
        let done = tampered.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(proxy_one(tcp, relay.clone(), tamper, record.clone(), done.clone()));
            }
        });
        WsProxy { url, recorded, tampered, _runtime: runtime }
    }

    /// Whether the tampering has been done: the message changed, doubled or moved has been
    /// passed on to the client.
    pub fn tampered(&self) -> bool {
        self.tampered.load(Ordering::SeqCst)
    }

    /// Wait (at most `timeout`) for the tampering to be done, then create `gate`: a script that
    /// waits for it goes on only once the client has been handed the tampered message, so what
    /// it prints next must never reach the client. Returns whether it was done in time.
    pub fn open_gate_once_tampered(&self, gate: &std::path::Path, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.tampered() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(gate, b"").expect("create the gate");
        self.tampered()
    }

    /// Every byte of every message seen, both directions.
    pub fn recorded(&self) -> Vec<u8> {
        self.recorded.lock().expect("record lock").clone()
    }
}

/// The path and `Host` of the HTTP request waiting on `tcp` (peeked: the WebSocket handshake
/// still reads it).
async fn request_head(tcp: &tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buffer = vec![0u8; 8192];
    let head = loop {
        tcp.readable().await.ok()?;
        let n = tcp.peek(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        let seen = &buffer[..n];
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&seen[..end]).into_owned();
        }
        if n == buffer.len() {
            return None;
        }
        // Not all of it yet (peeking leaves the socket readable, so wait a moment for more).
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    };
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let host = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim().to_owned())
    })?;
    Some((path, host))
}

async fn proxy_one(
    tcp: tokio::net::TcpStream,
    relay: String,
    tamper: Tamper,
    record: Arc<Mutex<Vec<u8>>>,
    tampered: Arc<AtomicBool>,
) {
    // As a reverse proxy does: the relay sees the address the client dialled (`Host`, which a
    // host signs when it registers), and the client gets the relay's answer headers (a host's
    // challenge). So the upstream connection is made before the client's handshake is answered.
    let Some((path, host)) = request_head(&tcp).await else { return };
    let Ok(mut upstream_request) = format!("ws://{relay}{path}").into_client_request() else { return };
    if let Ok(host) = host.parse() {
        upstream_request.headers_mut().insert("host", host);
    }
    let Ok((upstream, answer)) = tokio_tungstenite::connect_async(upstream_request).await else {
        return;
    };
    let challenge = answer.headers().get(tether_protocol::identity::CHALLENGE_HEADER).cloned();
    let callback = move |_: &Request, mut response: Response| {
        if let Some(challenge) = challenge {
            response.headers_mut().insert(tether_protocol::identity::CHALLENGE_HEADER, challenge);
        }
        Ok(response)
    };
    let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let tamper = if path.starts_with("/ws/client/") { tamper } else { Tamper::None };
    let (mut client_tx, mut client_rx) = client.split();
    let (mut relay_tx, mut relay_rx) = upstream.split();
    let up_record = record.clone();
    let upward = async move {
        while let Some(Ok(message)) = client_rx.next().await {
            if let Message::Binary(bytes) = &message {
                up_record.lock().expect("record lock").extend_from_slice(bytes);
            }
            if relay_tx.send(message).await.is_err() {
                break;
            }
        }
    };
    let downward = async move {
        let mut index = 0;
        let mut held: Option<Message> = None;
        let mut flipped_large = false;
        while let Some(Ok(message)) = relay_rx.next().await {
            let Message::Binary(bytes) = &message else {
                if client_tx.send(message).await.is_err() {
                    break;
                }
                continue;
            };
            record.lock().expect("record lock").extend_from_slice(bytes);
            let mut out = vec![message.clone()];
            let mut done = true;
            match tamper {
                Tamper::FlipBit { nth } if index == nth => out = vec![flip_middle_bit(bytes)],
                Tamper::FlipFirstLarge { min_bytes } if index >= 2 && bytes.len() >= min_bytes && !flipped_large => {
                    flipped_large = true;
                    out = vec![flip_middle_bit(bytes)];
                }
                Tamper::Replay { nth } if index == nth => out.push(message.clone()),
                Tamper::Reorder { nth } if index == nth => {
                    held = Some(message.clone());
                    out.clear();
                    done = false;
                }
                Tamper::Reorder { nth } if index == nth + 1 => out.extend(held.take()),
                _ => done = false,
            }
            index += 1;
            for message in out {
                if client_tx.send(message).await.is_err() {
                    return;
                }
            }
            if done {
                tampered.store(true, Ordering::SeqCst);
            }
        }
    };
    tokio::select! { _ = upward => {}, _ = downward => {} }
}

fn flip_middle_bit(bytes: &[u8]) -> Message {
    let mut flipped = bytes.to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    Message::Binary(flipped.into())
}
