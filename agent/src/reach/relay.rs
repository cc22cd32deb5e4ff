//! A client's encrypted connection to a host through a relay: the WebSocket to the relay and the
//! data channel beside it, moving bytes in and out of the protocol's sans-IO
//! `tether_protocol::client::Client` (SRP client, secure channel, calls, streams that resume,
//! redials, the WebRTC upgrade). The relay sees only ciphertext. This type only moves bytes,
//! timers and peer-connection news; `remote` (shared by many requests and streams) and
//! `cli::exec` drive it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tether_protocol::client::{Client, ClientEvent, Ending, Output, Path, RedialPolicy};
use tether_protocol::handshake::PASSWORD_IDENTITY;
use tether_protocol::identity::{HostAddress, HostRef};
use tether_protocol::upgrade::Action;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::direct::{DirectEvent, DirectLink};
use crate::random::handshake_entropy;
use crate::time::{monotonic_ms, sleep_until_ms};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `-v`: say on stderr, for every connection made (and made again), its path and round trip.
/// Process-wide, like a log level: set once by `main` before any connection.
static SAY_PATHS: AtomicBool = AtomicBool::new(false);

pub fn say_paths(on: bool) {
    SAY_PATHS.store(on, Ordering::Relaxed);
}

/// What `-v` says with the next round trip.
#[derive(Clone, Copy, PartialEq)]
enum Say {
    Connected,
    PathChanged,
}

pub struct RelayConnection {
    client: Client,
    address: HostAddress,
    ws: Option<Ws>,
    /// The data channel being negotiated or carrying the connection.
    direct: Option<DirectLink>,
    direct_events: mpsc::UnboundedReceiver<DirectEvent>,
    report: crate::direct::Report,
    /// `-v`: what to say when the next round trip is known.
    say: Option<Say>,
}

impl RelayConnection {
    /// Connect through `link`: with an invite's or a device's secret, or else with the host password, which
    /// `ask_password` supplies (given the host id). Fails with the refusal ("authentication
    /// failed: …") or the reason the relay could not be reached.
    pub async fn open(link: &HostRef, ask_password: fn(&str) -> Result<String, String>) -> Result<Self, Ending> {
        let (address, identity, secret) = match link {
            HostRef::Invite(invite) => (invite.address(), invite.identity(), invite.secret.as_bytes().to_vec()),
            HostRef::Device(device) => {
                (device.address.clone(), device.identity.clone(), device.secret.as_bytes().to_vec())
            }
            HostRef::Address(address) => {
                let password = ask_password(&address.host_id).map_err(Ending::Refused)?;
                (address.clone(), PASSWORD_IDENTITY.to_owned(), password.into_bytes())
            }
        };
        let mut client = Client::new(&address.host_id, &identity, &secret, RedialPolicy::CLI);
        let mut seed = [0u8; 8];
        if crate::random::random_bytes(&mut seed).is_ok() {
            client.seed_jitter(u64::from_le_bytes(seed));
        }
        let (events, direct_events) = mpsc::unbounded_channel();
        let mut connection = RelayConnection {
            client,
            address,
            ws: None,
            direct: None,
            direct_events,
            report: Arc::new(move |event| {
                let _ = events.send(event);
            }),
            say: None,
        };
        // Until authenticated (and with -v, until the path is said): nothing else can arrive yet,
        // as no request has gone out.
        loop {
            for event in connection.flush().await {
                match event {
                    ClientEvent::Connected { .. } if connection.say.is_none() => return Ok(connection),
                    // Busy (too many authenticating at once): the client tries again by itself.
                    ClientEvent::Disconnected { why, redial_in_ms: Some(wait) } => say_retry(&why, wait),
                    ClientEvent::Disconnected { .. } => {
                        return Err(match connection.client.status() {
                            tether_protocol::client::Status::Over(ending) => ending.clone(),
                            _ => Ending::Lost("the connection was lost".into()),
                        })
                    }
                    _ => {}
                }
            }
            if connection.client.is_connected() && connection.say.is_none() {
                return Ok(connection);
            }
            connection.receive().await;
        }
    }

    /// The protocol's client: calls, streams, credit.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Wait for the next thing to happen — a message from the relay or the data channel, news of
    /// the peer connection, a timer — and hand it to the client. Cancel-safe (a `select!` arm).
    pub async fn receive(&mut self) {
        let RelayConnection { client, ws, direct_events, .. } = self;
        let timer = client.poll_timeout();
        tokio::select! {
            message = next_message(ws) => {
                let now = monotonic_ms();
                // What else the relay has already delivered goes in with it, so the connection
                // opens those frames as one batch (`Connection`: sealed frames that arrive
                // together are opened together).
                let message = match message {
                    Some(Ok(Message::Binary(first))) => {
                        let mut batch: Vec<u8> = Vec::new();
                        let mut after = None;
                        while batch.len() + first.len() < GATHER_BYTES {
                            match futures_util::FutureExt::now_or_never(next_message(ws)) {
                                Some(Some(Ok(Message::Binary(more)))) => {
                                    if batch.is_empty() {
                                        batch.extend_from_slice(&first);
                                    }
                                    batch.extend_from_slice(&more);
                                }
                                Some(other) => {
                                    after = Some(other);
                                    break;
                                }
                                None => break,
                            }
                        }
                        client.handle_relay(if batch.is_empty() { &first } else { &batch }, now);
                        match after {
                            Some(message) => message,
                            None => return,
                        }
                    }
                    other => other,
                };
                match message {
                    Some(Ok(Message::Binary(bytes))) => client.handle_relay(&bytes, now),
                    Some(Ok(Message::Close(frame))) => {
                        *ws = None;
                        client.transport_closed(frame.map(|f| f.reason.to_string()), now);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        *ws = None;
                        client.transport_closed(Some(format!("relay connection failed: {e}")), now);
                    }
                    None => {
                        *ws = None;
                        client.transport_closed(None, now);
                    }
                }
            }
            Some(event) = direct_events.recv() => client.handle_direct(event, monotonic_ms()),
            () = sleep_until_ms(timer) => client.handle_timeout(monotonic_ms()),
        }
    }

    /// Do what the client asks — send on the relay or the data channel, run the peer
    /// connection, dial the relay again — and return the events for the caller.
    pub async fn flush(&mut self) -> Vec<ClientEvent> {
        let mut events = Vec::new();
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::Transmit { path: Path::Relay, bytes } => self.send_relay(bytes).await,
                Output::Transmit { path: Path::Direct, bytes } => {
                    if let Some(link) = &self.direct {
                        link.send(bytes);
                    }
                }
                Output::Peer(action) => self.act(action),
                Output::Event(ClientEvent::Dial) => self.dial().await,
                Output::Event(event) => {
                    self.note(&event);
                    if let ClientEvent::Disconnected { .. } = event {
                        if let Some(mut ws) = self.ws.take() {
                            let _ = ws.close(None).await;
                        }
                        self.direct = None;
                    }
                    events.push(event);
                }
            }
        }
        events
    }

    async fn send_relay(&mut self, bytes: Vec<u8>) {
        let Some(ws) = self.ws.as_mut() else { return };
        if let Err(e) = ws.send(Message::Binary(bytes.into())).await {
            self.ws = None;
            self.client.transport_closed(Some(format!("relay send: {e}")), monotonic_ms());
        }
    }

    /// Open the WebSocket to the relay and start the handshake on it.
    async fn dial(&mut self) {
        let url = match self.address.client_ws_url() {
            Ok(url) => url,
            Err(e) => return self.client.transport_closed(Some(e), monotonic_ms()),
        };
        // disable_nagle: small interactive frames must not wait for ACKs (Nagle + delayed ACK
        // would add ~40 ms to every keystroke).
        match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
            Ok((ws, _)) => match handshake_entropy() {
                Ok(entropy) => {
                    self.ws = Some(ws);
                    self.client.connect(entropy, monotonic_ms());
                }
                Err(e) => self.client.transport_closed(Some(e), monotonic_ms()),
            },
            Err(e) => {
                let why = format!("cannot reach the relay at {}: {e}", self.address.relay);
                self.client.transport_closed(Some(why), monotonic_ms());
            }
        }
    }

    /// End in order, so the host sees a close rather than a cut.
    /// End for good: the close goes out on the relay, the relay socket closes, and only then the
    /// data channel — so the host hears that we left before it hears the channel go, and does
    /// not send again on the relay what the channel had carried (to a client that is gone).
    pub async fn close(mut self) {
        self.client.close(monotonic_ms());
        let direct = self.direct.take();
        let _ = self.flush().await;
        drop(direct);
    }

    /// Do what the upgrade asks of the peer connection.
    fn act(&mut self, action: Action) {
        match action {
            Action::Offer { attempt, ice_servers } => {
                self.direct = Some(DirectLink::offer(attempt, &ice_servers, self.report.clone()));
            }
            Action::Answered { attempt, sdp } => {
                if let Some(link) = self.direct.as_mut().filter(|link| link.attempt == attempt) {
                    link.answered(sdp);
                }
            }
            Action::Close { attempt } => {
                if self.direct.as_ref().is_some_and(|link| link.attempt == attempt) {
                    self.direct = None;
                }
            }
        }
    }

    /// `-v`: say where each connection goes, and each change of path with the round trip on the
    /// new one.
    fn note(&mut self, event: &ClientEvent) {
        if !SAY_PATHS.load(Ordering::Relaxed) {
            return;
        }
        let host = &self.address.host_id;
        match event {
            ClientEvent::Connected { .. } => self.say = Some(Say::Connected),
            ClientEvent::PathChanged { route } => {
                if route.is_none() {
                    eprintln!("tether: {host}: the data channel is gone; back on the relay");
                }
                if self.say.is_none() {
                    self.say = Some(Say::PathChanged);
                }
            }
            ClientEvent::RoundTrip { .. } => match self.say.take() {
                Some(Say::Connected) => eprintln!("tether: connected to {host} {}", self.client.path_summary()),
                Some(Say::PathChanged) => eprintln!("tether: {host} now {}", self.client.path_summary()),
                None => {}
            },
            _ => {}
        }
    }
}

/// `-v`: a try that will be made again.
fn say_retry(why: &str, wait_ms: u64) {
    if SAY_PATHS.load(Ordering::Relaxed) {
        eprintln!("tether: {why}; trying again in {wait_ms} ms");
    }
}

/// Most bytes of relay messages already delivered that are handed to the client at once.
const GATHER_BYTES: usize = 1 << 20; // 1 MiB

async fn next_message(ws: &mut Option<Ws>) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}
