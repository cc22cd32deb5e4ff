//! A client's encrypted connection to a host through a relay: the WebSocket to the relay, and the
//! sans-IO `Connection` (SRP client, secure channel) end to end with the host. The relay sees
//! only ciphertext; the same requests as on the local socket travel inside. When the host invites
//! it, the connection moves onto a WebRTC data channel beside the relay (`crate::direct`, on the
//! schedule of `tether_protocol::upgrade`) and back when that fails; callers see none of it.
//! This type only moves bytes: `remote` (shared by many requests and streams) and `cli::exec`
//! drive it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tether_protocol::api::{cmd_frame, next_request_id, Request};
use tether_protocol::connection::{Connection, Event, Input};
use tether_protocol::handshake::PASSWORD_IDENTITY;
use tether_protocol::identity::{HostAddress, Link};
use tether_protocol::signal::Route;
use tether_protocol::upgrade::{Action, Upgrade};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::direct::{DirectEvent, DirectLink};
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
    host_id: String,
    upgrade: Upgrade,
    /// The data channel being negotiated or carrying the connection.
    direct: Option<DirectLink>,
    direct_events: mpsc::UnboundedReceiver<DirectEvent>,
    report: crate::direct::Report,
    /// `-v`: the path last said, and whether it changed since (said with the next round trip).
    shown_route: Option<Route>,
    path_changed: bool,
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
        let (events, direct_events) = mpsc::unbounded_channel();
        let mut connection = RelayConnection {
            ws,
            conn,
            next_id: 1,
            dial: None,
            host_id: address.host_id.clone(),
            upgrade: Upgrade::default(),
            direct: None,
            direct_events,
            report: Arc::new(move |event| {
                let _ = events.send(event);
            }),
            shown_route: None,
            path_changed: false,
        };
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

    /// When the connection's timers (keep-alive, idle, handshake deadline, data channel) and the
    /// upgrade's want running, on the clock of `monotonic_ms`.
    pub fn next_timeout(&self) -> Option<u64> {
        [self.conn.poll_timeout(), self.upgrade.poll_timeout()].into_iter().flatten().min()
    }

    /// Run the timers: a keep-alive when due, an error once the link is silent; an upgrade
    /// attempt when one is due, or given up when it takes too long.
    pub fn handle_timeout(&mut self) -> Result<(), String> {
        let now = monotonic_ms();
        self.conn.handle_timeout(now).map_err(|e| e.to_string())?;
        let action = self.upgrade.handle_timeout(&mut self.conn, now).map_err(|e| e.to_string())?;
        self.act(action);
        Ok(())
    }

    /// Read one message from the relay or the data channel and feed it to the connection. A close
    /// or a broken socket becomes the error to show: the connection's own (a tampered frame, a
    /// failed handshake) when it has one, else the reason the relay or host gave. Cancel-safe (a
    /// `select!` arm).
    pub async fn receive(&mut self) -> Result<(), String> {
        let message = tokio::select! {
            message = self.ws.next() => message,
            Some(event) = self.direct_events.recv() => {
                let action = self.upgrade.on_direct(&mut self.conn, event, monotonic_ms()).map_err(|e| e.to_string())?;
                self.act(action);
                return Ok(());
            }
        };
        match message {
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

    /// Send what the connection has queued (on the relay, and on the data channel); return what
    /// it reported. Signalling is acted on here and not returned.
    pub async fn flush(&mut self) -> Result<Vec<Event>, String> {
        let mut reported = Vec::new();
        loop {
            let (transmits, events) = self.conn.drain_output();
            for bytes in transmits {
                self.ws.send(Message::Binary(bytes.into())).await.map_err(|e| format!("relay send: {e}"))?;
            }
            for bytes in self.conn.drain_direct() {
                if let Some(link) = &self.direct {
                    link.send(bytes);
                }
            }
            self.note_path();
            if events.is_empty() {
                return Ok(reported);
            }
            let now = monotonic_ms();
            for event in events {
                let action = match event {
                    Event::Webrtc { signal } => self.upgrade.on_signal(&mut self.conn, signal, now),
                    Event::DirectLost { silent_ms } => self.upgrade.on_direct_lost(&mut self.conn, silent_ms, now),
                    Event::RoundTrip { .. } if std::mem::take(&mut self.path_changed) => {
                        eprintln!("tether: {} now {}", self.host_id, self.conn.path_summary());
                        Ok(None)
                    }
                    event => {
                        reported.push(event);
                        Ok(None)
                    }
                };
                let action = action.map_err(|e| e.to_string())?;
                self.act(action);
            }
        }
    }

    /// End in order, so the host sees a close rather than a cut.
    pub async fn close(mut self) {
        if self.conn.close("done").is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.ws.close(None).await;
    }

    /// Do what the upgrade asks of the peer connection.
    fn act(&mut self, action: Option<Action>) {
        match action {
            Some(Action::Offer { attempt, ice_servers }) => {
                self.direct = Some(DirectLink::offer(attempt, &ice_servers, self.report.clone()));
            }
            Some(Action::Answered { attempt, sdp }) => {
                if let Some(link) = self.direct.as_mut().filter(|link| link.attempt == attempt) {
                    link.answered(sdp);
                }
            }
            Some(Action::Close { attempt }) => {
                if self.direct.as_ref().is_some_and(|link| link.attempt == attempt) {
                    self.direct = None;
                }
            }
            None => {}
        }
    }

    /// `-v`: when the path changed, say so with the round trip on the new one.
    fn note_path(&mut self) {
        let route = self.conn.direct_route();
        if route == self.shown_route || !SAY_PATHS.load(Ordering::Relaxed) {
            return;
        }
        if route.is_none() {
            eprintln!("tether: {}: the data channel is gone; back on the relay", self.host_id);
        }
        self.shown_route = route;
        self.path_changed = true;
    }
}

/// Sleep until `at` on the monotonic clock the connection runs on; for ever without one.
pub async fn sleep_until_ms(at: Option<u64>) {
    match at {
        Some(at) => tokio::time::sleep(std::time::Duration::from_millis(at.saturating_sub(monotonic_ms()))).await,
        None => std::future::pending().await,
    }
}
