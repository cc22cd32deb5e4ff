//! A client's encrypted connection to a host through a relay: the WebSocket to the relay, and the
//! sans-IO `Connection` (SRP client, secure channel) end to end with the host. The relay sees
//! only ciphertext; the same requests as on the local socket travel inside. This type only moves
//! bytes: `remote` (shared by many requests and streams) and `cli::exec` drive it.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt, StreamExt};
use tether_protocol::api::{cmd_frame, next_request_id, Request};
use tether_protocol::connection::{Connection, Event, Input};
use tether_protocol::handshake::PASSWORD_IDENTITY;
use tether_protocol::identity::{HostAddress, Link};
use tokio_tungstenite::tungstenite::Message;

use crate::random::handshake_entropy;
use crate::time::monotonic_ms;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `-v`: say on stderr, for every connection made (and made again), its path and round trip.
/// Process-wide, like a log level: set once by `main` before any connection.
static SAY_PATHS: AtomicBool = AtomicBool::new(false);

pub fn say_paths(on: bool) {
    SAY_PATHS.store(on, Ordering::Relaxed);
}

pub struct RelayConnection {
    ws: Ws,
    conn: Connection,
    next_id: u64,
    dial: Option<Dial>,
}

/// Where and as whom to connect: kept so a lost link can be made again without asking anew.
#[derive(Clone)]
pub struct Dial {
    address: HostAddress,
    identity: String,
    secret: Vec<u8>,
}

impl Dial {
    pub fn for_link(link: &Link, ask_password: fn(&str) -> Result<String, String>) -> Result<Dial, String> {
        Ok(match link {
            Link::Invite(invite) => Dial {
                address: invite.address(),
                identity: invite.identity(),
                secret: invite.secret.as_bytes().to_vec(),
            },
            Link::Address(address) => Dial {
                address: address.clone(),
                identity: PASSWORD_IDENTITY.to_owned(),
                secret: ask_password(&address.host_id)?.into_bytes(),
            },
        })
    }
}

impl RelayConnection {
    /// Connect through `link`: with an invite's secret, or else with the host password, which
    /// `ask_password` supplies (given the host id).
    pub async fn open(link: &Link, ask_password: fn(&str) -> Result<String, String>) -> Result<Self, String> {
        Self::dial(&Dial::for_link(link, ask_password)?).await
    }

    /// Connect (again) as `dial` says.
    pub async fn dial(dial: &Dial) -> Result<Self, String> {
        let mut connection = Self::connect(&dial.address, &dial.identity, &dial.secret).await?;
        connection.dial = Some(dial.clone());
        Ok(connection)
    }

    /// How this connection was made, to make it again after a lost link.
    pub fn redial(&self) -> Option<&Dial> {
        self.dial.as_ref()
    }

    /// Connect and authenticate; fails with "authentication failed: …" on a wrong secret.
    pub async fn connect(address: &HostAddress, identity: &str, secret: &[u8]) -> Result<Self, String> {
        let url = address.client_ws_url()?;
        // disable_nagle: small interactive frames must not wait for ACKs (Nagle + delayed ACK
        // would add ~40 ms to every keystroke).
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .map_err(|e| format!("cannot reach the relay at {}: {e}", address.relay))?;
        let conn = Connection::client(&address.host_id, identity, secret, handshake_entropy()?, monotonic_ms());
        let mut connection = RelayConnection { ws, conn, next_id: 1, dial: None };
        loop {
            let events = connection.step().await?;
            if events.iter().any(|e| matches!(e, Event::Authenticated { .. })) {
                if SAY_PATHS.load(Ordering::Relaxed) {
                    connection.say_path(address).await?;
                }
                return Ok(connection);
            }
        }
    }

    /// Time one ping and say the path and round trip on stderr. Nothing else can arrive yet
    /// (no request has gone out), so waiting for the pong loses nothing.
    async fn say_path(&mut self, address: &HostAddress) -> Result<(), String> {
        self.conn.ping(monotonic_ms()).map_err(|e| e.to_string())?;
        while !self.step().await?.iter().any(|e| matches!(e, Event::RoundTrip { .. })) {}
        eprintln!("tether: connected to {} {}", address.host_id, self.conn.path_summary());
        Ok(())
    }

    /// Send what is queued, take one message, send what that produced; the events on the way.
    /// A receive error comes after the flush, so what the connection had to say still goes out.
    async fn step(&mut self) -> Result<Vec<Event>, String> {
        let mut events = self.flush().await?;
        let received = self.receive().await;
        events.extend(self.flush().await?);
        received?;
        Ok(events)
    }

    /// The protocol state, for sending data and crediting what was taken.
    pub fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A fresh request id (one that may also name a stream).
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = next_request_id(id);
        id
    }

    /// Queue `request` under a fresh id; returns the id. Sent with the next `flush`.
    pub fn request(&mut self, request: &Request, payload: Vec<u8>) -> Result<u64, String> {
        let id = self.next_id();
        self.conn.send_frame(&cmd_frame(id, request, payload)).map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// When the connection's timers (keep-alive, idle, handshake deadline) want running, on the
    /// clock of `monotonic_ms`.
    pub fn next_timeout(&self) -> Option<u64> {
        self.conn.poll_timeout()
    }

    /// Run the connection's timers: a keep-alive when due, an error once the link is silent.
    pub fn handle_timeout(&mut self) -> Result<(), String> {
        self.conn.handle_timeout(monotonic_ms()).map_err(|e| e.to_string())
    }

    /// Read one message from the relay and feed it to the connection. A close or a broken socket
    /// becomes the error to show: the connection's own (a tampered frame, a failed handshake)
    /// when it has one, else the reason the relay or host gave. Cancel-safe (a `select!` arm).
    pub async fn receive(&mut self) -> Result<(), String> {
        match self.ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                self.conn.handle_input(Input::Bytes(&bytes), monotonic_ms()).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                let own = self.conn.error().map(|e| e.to_string());
                Err(own.or(reason).unwrap_or_else(|| "the relay closed the connection".into()))
            }
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(format!("relay connection failed: {e}")),
            None => Err("the relay closed the connection".into()),
        }
    }

    /// Send what the connection has queued; return what it reported.
    pub async fn flush(&mut self) -> Result<Vec<Event>, String> {
        let (transmits, events) = self.conn.drain_output();
        for bytes in transmits {
            self.ws.send(Message::Binary(bytes.into())).await.map_err(|e| format!("relay send: {e}"))?;
        }
        Ok(events)
    }

    /// End in order, so the host sees a close rather than a cut.
    pub async fn close(mut self) {
        if self.conn.close("done").is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.ws.close(None).await;
    }
}

/// Sleep until `at` on the monotonic clock the connection runs on; for ever without one.
pub async fn sleep_until_ms(at: Option<u64>) {
    match at {
        Some(at) => tokio::time::sleep(std::time::Duration::from_millis(at.saturating_sub(monotonic_ms()))).await,
        None => std::future::pending().await,
    }
}
