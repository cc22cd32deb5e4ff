//! The agent's link to a relay: dial out, prove the host id (`identity`: a signature over the
//! relay's challenge, or a legacy host's secret), then carry every client the relay
//! opens a connection for. Each client is a `Peer` (its own sans-IO `Connection`); this module
//! moves bytes between peers and the WebSocket, runs the peers' timers and hands what their
//! tasks report back to them (`peer::requests::on_task_event`), and reaches the daemon through
//! `HostService` alone.
//!
//! Invariants:
//! - Guessing is slowed where the proof is checked (`peer::requests`, `access::throttle`); the
//!   link itself caps how many of its peers may be handshaking at once, in all and per source.
//!   When a cap is reached, the oldest peer that has not said hello (of that source, when it is
//!   the source's cap) makes room, told to try again; a handshake under way is never dropped
//!   for a newcomer. So silent sockets, which the connection drops after `HELLO_TIMEOUT_MS`
//!   anyway, cannot keep honest clients out.
//! - A revoked credential's connections are closed at once: on every revocation (or missed
//!   event) the link drops each peer whose credential is gone or changed — authenticated, or
//!   still mid-handshake.
//! - Each peer's timers run when its connection says (`poll_timeout`), not on a tick: a
//!   data-channel ping due in 1 s goes in 1 s.
//! - A peer's frames for the relay go in its connection's order, several to a `forward` (up to
//!   `FORWARD_BATCH_BYTES`) when it has several at once; the client's framing decoder takes a
//!   message apart, so one frame alone (an echo) is never held back for company.
//! - TURN credentials are asked for only with a client in (the relay gives them to no one
//!   else): a client that authenticates while none fresh are held waits for the relay's answer
//!   before its invite; with no fresh ones in the answer it is invited with what is held.
//! - A dropped link is re-dialled with back-off; the relay keeps no state, so re-registering is
//!   all it takes. A relay of several nodes names its peers; a link that cannot reach the relay
//!   it was given tries them in turn (the link state stays under the relay's own URL).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether_protocol::connection::{Connection, Input, Path};
use tether_protocol::frame::{Frame, FrameDecoder, Header, RelayMsg, TurnCredentials};
use tether_protocol::ConnError;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;

use crate::host::access::AccessEvent;
use crate::host::peer::events::PeerEvent;
use crate::host::peer::requests::{handle_events, on_task_event};
use crate::host::peer::upgrade::{RelayIce, TURN_REFRESH_SECS};
use crate::host::peer::Peer;
use crate::host::service::HostService;
use crate::random::handshake_entropy;
use crate::time::{monotonic_ms, sleep_until_ms};

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the TURN credentials' expiry is looked at, at least (connection timers run when
/// each connection says, from its own `poll_timeout`).
const TURN_CHECK: Duration = Duration::from_secs(5);
/// Peers of one link that may be handshaking at once (the relay has its own, per-host cap).
const MAX_HANDSHAKING: usize = 32;
/// Of those, from one source (one IPv4 address or IPv6 /64, as the relay tags it).
const MAX_HANDSHAKING_PER_SOURCE: usize = 8;
/// What a client refused or dropped for room hears: "busy", which it answers by trying again.
const BUSY: &str = "too many clients are authenticating at once; try again shortly";
/// Fresh TURN credentials are asked for, while clients are in, when the current ones have less
/// than `TURN_REFRESH_SECS` left, at most this often (the relay grants them once a minute).
const TURN_ASK_EVERY_MS: u64 = 30_000;

/// Keep a link to `relay` up for the daemon's lifetime. A relay that is one node of several
/// names its peers (`RelayMsg::Peers`); while `relay` cannot be reached they are dialled in
/// turn, so a host whose node died registers through another within a back-off step.
pub async fn run<H: HostService>(host: Arc<H>, relay: String) {
    let mut backoff = MIN_BACKOFF;
    let mut peers: Vec<String> = Vec::new();
    // Which of `relay` and its peers to dial next; after a link that was up, `relay` again.
    let mut attempt = 0usize;
    loop {
        let candidates: Vec<String> =
            std::iter::once(relay.clone()).chain(peers.iter().filter(|p| **p != relay).cloned()).collect();
        let target = &candidates[attempt % candidates.len()];
        let started = Instant::now();
        let mut registered = false;
        let why = match link_once(&host, &relay, target, &mut peers, &mut registered).await {
            Ok(()) => "the relay closed the link".to_owned(),
            Err(e) => e,
        };
        let through = if *target == relay { String::new() } else { format!(" (through its peer {target})") };
        host.set_link_state(&relay, Err(format!("{why}{through}")));
        if started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF; // it was up for a while: start over gently
        }
        attempt = if registered { 0 } else { attempt + 1 };
        // Another candidate is tried at once; a full round without one answering backs off.
        let round_over = registered || attempt.is_multiple_of(candidates.len());
        let pause = if round_over { backoff } else { MIN_BACKOFF };
        eprintln!("tether daemon: relay {relay}{through}: {why}; retrying in {pause:?}");
        tokio::time::sleep(pause).await;
        if round_over {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Most bytes of relay messages already delivered that are taken in at once.
const GATHER_BYTES: usize = 1 << 20; // 1 MiB

/// Most peer URLs kept from one relay, and the longest one.
const MAX_PEERS: usize = 16;
const MAX_PEER_URL_BYTES: usize = 256;

/// What one `forward` to a client carries at most when a peer has several frames to send at
/// once: four full stream frames, which the client opens as one batch. Far under what a
/// `forward` may hold (`channel::MAX_MESSAGE_BYTES`).
const FORWARD_BATCH_BYTES: usize = 256 * 1024; // 256 KiB

/// The peers a relay named that a host may dial (the same rules as any relay URL).
fn usable_peers(urls: Vec<String>) -> Vec<String> {
    urls.into_iter().filter(|url| url.len() <= MAX_PEER_URL_BYTES && host_ws_url(url).is_ok()).take(MAX_PEERS).collect()
}

/// The relay's endpoint for hosts (plain `ws://` only to this machine).
pub fn host_ws_url(relay: &str) -> Result<String, String> {
    tether_protocol::identity::relay_ws_url(relay, "/ws/host")
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

async fn send(sink: &mut Sink, frame: Frame) -> Result<(), String> {
    let bytes = frame.encode().map_err(|e| e.to_string())?;
    sink.send(Message::Binary(bytes.into())).await.map_err(|e| format!("relay send: {e}"))
}

/// The host registered at the relay, for one socket's life: the socket and the peers it carries.
struct Registration<'a, H> {
    host: &'a Arc<H>,
    sink: Sink,
    peers: HashMap<u64, Peer>,
    /// Where the peers' tasks report.
    tasks: mpsc::UnboundedSender<PeerEvent>,
    /// What the relay lets data channels use, as it last said.
    ice: RelayIce,
    /// When fresh TURN credentials were last asked for (monotonic ms).
    ice_asked_ms: u64,
    /// An `ice_request` is out, not yet answered.
    ice_asked: bool,
}

/// One link: dial `target` (`relay` itself or one of its peers), register, carry clients until
/// the socket ends. `registered` says whether it got that far; `peers` takes what it names.
async fn link_once<H: HostService>(
    host: &Arc<H>,
    relay: &str,
    target: &str,
    peers: &mut Vec<String>,
    registered: &mut bool,
) -> Result<(), String> {
    let url = host_ws_url(target)?;
    // disable_nagle: keystrokes and echoes are small; Nagle + delayed ACK would add ~40 ms each.
    let (ws, answer) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let challenge = answer.headers().get(tether_protocol::identity::CHALLENGE_HEADER).and_then(|v| v.to_str().ok());
    let register = host.identity().register(&url, challenge)?;
    let (sink, mut stream) = ws.split();
    let identity = host.identity();
    let (tasks, mut task_events) = mpsc::unbounded_channel::<PeerEvent>();
    let mut link = Registration {
        host,
        sink,
        peers: HashMap::new(),
        tasks,
        ice: RelayIce::default(),
        ice_asked_ms: 0,
        ice_asked: false,
    };
    send(&mut link.sink, Frame::relay(register, Vec::new())).await?;

    let mut decoder = FrameDecoder::new();
    let mut turn_check = tokio::time::interval(TURN_CHECK);
    let mut access_events = host.access().subscribe();
    loop {
        let next_timer = link.peers.values().filter_map(|peer| peer.conn.poll_timeout()).min();
        tokio::select! {
            incoming = stream.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return if *registered { Ok(()) } else { Err(format!("refused: {reason}")) };
                    }
                    None => return Ok(()),
                    Some(Err(e)) => return Err(format!("relay receive: {e}")),
                    Some(Ok(_)) => continue,
                };
                decoder.push(&bytes).map_err(|e| e.to_string())?;
                // What else the relay has already delivered is taken too, so a client's frames
                // that came together reach its connection together (opened as one batch).
                let mut gathered = bytes.len();
                let mut after = None;
                while gathered < GATHER_BYTES {
                    match futures_util::FutureExt::now_or_never(stream.next()) {
                        Some(Some(Ok(Message::Binary(more)))) => {
                            gathered += more.len();
                            decoder.push(&more).map_err(|e| e.to_string())?;
                        }
                        Some(other) => {
                            after = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                // Consecutive `forward`s of one client, joined.
                let mut forwarded: Option<(u64, Vec<u8>)> = None;
                while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                    let Header::Relay(msg) = frame.header else { continue };
                    if let RelayMsg::Forward { conn } = msg {
                        match &mut forwarded {
                            Some((pending, bytes)) if *pending == conn => bytes.extend_from_slice(&frame.payload),
                            _ => {
                                if let Some((pending, bytes)) = forwarded.replace((conn, frame.payload)) {
                                    link.forward(pending, &bytes).await?;
                                }
                            }
                        }
                        continue;
                    }
                    if let Some((pending, bytes)) = forwarded.take() {
                        link.forward(pending, &bytes).await?;
                    }
                    match msg {
                        RelayMsg::Registered => {
                            *registered = true;
                            host.set_link_state(relay, Ok(()));
                            let through = if target == relay { String::new() } else { format!(" (its peer {target})") };
                            eprintln!("tether daemon: reachable through {relay}{through} as {}", identity.host_id);
                        }
                        RelayMsg::Peers { urls } => *peers = usable_peers(urls),
                        RelayMsg::Open { conn, source } => link.open(conn, source).await?,
                        RelayMsg::Forward { .. } => {}
                        RelayMsg::Close { conn, .. } => {
                            if let Some(mut peer) = link.peers.remove(&conn) {
                                peer.cancel();
                                if let Err(error) = peer.conn.handle_input(Input::TransportClosed, monotonic_ms()) {
                                    note_failure(conn, &error);
                                }
                            }
                        }
                        // What data channels may use, for clients invited from now on.
                        RelayMsg::Ice { webrtc, turn } => link.on_ice(relay, webrtc, turn).await?,
                        RelayMsg::Register { .. } | RelayMsg::IceRequest => {}
                    }
                }
                if let Some((pending, bytes)) = forwarded.take() {
                    link.forward(pending, &bytes).await?;
                }
                match after {
                    Some(Some(Ok(Message::Close(frame)))) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return if *registered { Ok(()) } else { Err(format!("refused: {reason}")) };
                    }
                    Some(None) => return Ok(()),
                    Some(Some(Err(e))) => return Err(format!("relay receive: {e}")),
                    Some(Some(Ok(_))) | None => {}
                }
            }
            Some(event) = task_events.recv() => {
                let conn = event.conn();
                if let Some(peer) = link.peers.get_mut(&conn) {
                    let step = on_task_event(host, peer, event, &link.tasks);
                    link.after_step(conn, step).await?;
                }
            }
            event = access_events.recv() => {
                if matches!(event, Ok(AccessEvent::Revoked { .. }) | Err(broadcast::error::RecvError::Lagged(_))) {
                    link.drop_revoked().await?;
                }
            }
            () = sleep_until_ms(next_timer) => link.run_timers(monotonic_ms()).await?,
            _ = turn_check.tick() => link.refresh_turn(monotonic_ms()).await?,
        }
    }
}

/// However a link ends, its peers' commands and streams end with it.
impl<H> Drop for Registration<'_, H> {
    fn drop(&mut self) {
        for peer in self.peers.values_mut() {
            peer.cancel();
        }
    }
}

impl<H: HostService> Registration<'_, H> {
    /// The relay has a new client for us: start its handshake, making room if need be.
    async fn open(&mut self, conn: u64, source: u64) -> Result<(), String> {
        let handshaking = |p: &&Peer| p.is_handshaking();
        let from_source = self.peers.values().filter(handshaking).filter(|p| p.source == source).count();
        let full = if from_source >= MAX_HANDSHAKING_PER_SOURCE {
            Some(Some(source))
        } else if self.peers.values().filter(handshaking).count() >= MAX_HANDSHAKING {
            Some(None)
        } else {
            None
        };
        if let Some(among) = full {
            // The relay numbers connections in the order they came: the lowest is the oldest.
            let oldest_silent = self
                .peers
                .iter()
                .filter(|(_, p)| p.is_silent() && among.is_none_or(|source| p.source == source))
                .map(|(&conn, _)| conn)
                .min();
            let Some(oldest) = oldest_silent else {
                return send(&mut self.sink, Frame::relay(RelayMsg::Close { conn, reason: BUSY.into() }, Vec::new()))
                    .await;
            };
            if let Some(mut peer) = self.peers.remove(&oldest) {
                peer.cancel();
            }
            let close = RelayMsg::Close { conn: oldest, reason: BUSY.into() };
            send(&mut self.sink, Frame::relay(close, Vec::new())).await?;
        }
        let host_id = &self.host.identity().host_id;
        let connection = Connection::host(host_id, handshake_entropy()?, monotonic_ms());
        self.peers.insert(conn, Peer::new(connection, source));
        Ok(())
    }

    /// After a step on peer `conn`: send what it produced and act on its events, or, if the step
    /// failed, send what is left (a host's `auth/failed`), drop the peer and cancel its commands.
    /// Bytes the relay forwarded from client `conn` (one or more of its messages).
    async fn forward(&mut self, conn: u64, bytes: &[u8]) -> Result<(), String> {
        let Some(peer) = self.peers.get_mut(&conn) else { return Ok(()) };
        let step = peer.conn.handle_input(Input::Bytes(bytes), monotonic_ms());
        self.after_step(conn, step).await
    }

    async fn after_step(&mut self, conn: u64, step: Result<(), ConnError>) -> Result<(), String> {
        let result = match step {
            Ok(()) => self.flush_and_handle(conn).await?,
            Err(error) => {
                self.flush(conn).await?;
                Err(error)
            }
        };
        if let Err(error) = result {
            note_failure(conn, &error);
            let close = RelayMsg::Close { conn, reason: error.to_string() };
            send(&mut self.sink, Frame::relay(close, Vec::new())).await?;
            if let Some(mut peer) = self.peers.remove(&conn) {
                peer.cancel();
            }
        }
        // Just authenticated, its invite waits for TURN credentials: ask for them now.
        if self.peers.get(&conn).is_some_and(|peer| peer.awaiting_invite) {
            self.ask_for_ice(monotonic_ms()).await?;
        }
        Ok(())
    }

    /// Flush, and keep acting on what the flush reported until nothing new comes of it.
    async fn flush_and_handle(&mut self, conn: u64) -> Result<Result<(), ConnError>, String> {
        loop {
            let events = self.flush(conn).await?;
            if events.is_empty() {
                return Ok(Ok(()));
            }
            let Some(peer) = self.peers.get_mut(&conn) else { return Ok(Ok(())) };
            if let Err(e) = handle_events(self.host, conn, peer, events, &self.ice, &self.tasks) {
                // What failing produced goes out before the close: an unknown credential's
                // `auth/failed`, so the client hears a refusal (final) rather than a lost link.
                self.flush(conn).await?;
                return Ok(Err(e));
            }
        }
    }

    /// Send what peer `conn`'s connection wants sent; return what it reported.
    async fn flush(&mut self, conn: u64) -> Result<Vec<tether_protocol::Event>, String> {
        let Some(peer) = self.peers.get_mut(&conn) else { return Ok(Vec::new()) };
        let (transmits, events) = peer.conn.drain_output();
        // Frames for the relay go out several to a message: the client then opens them side by
        // side (`Opener::open_many`), and the relay and the page handle fewer messages.
        let mut forward: Vec<u8> = Vec::new();
        for (path, bytes) in transmits {
            match path {
                Path::Relay => {
                    if !forward.is_empty() && forward.len() + bytes.len() > FORWARD_BATCH_BYTES {
                        let full = std::mem::take(&mut forward);
                        send(&mut self.sink, Frame::relay(RelayMsg::Forward { conn }, full)).await?;
                    }
                    if forward.is_empty() {
                        forward = bytes;
                    } else {
                        forward.extend_from_slice(&bytes);
                    }
                }
                Path::Direct => peer.send_direct(bytes),
            }
        }
        if !forward.is_empty() {
            send(&mut self.sink, Frame::relay(RelayMsg::Forward { conn }, forward)).await?;
        }
        Ok(events)
    }

    /// Run the timers (keep-alive, handshake deadline, data-channel pings) of every peer
    /// whose connection has one due.
    async fn run_timers(&mut self, now: u64) -> Result<(), String> {
        let due: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.conn.poll_timeout().is_some_and(|at| at <= now))
            .map(|(&conn, _)| conn)
            .collect();
        for conn in due {
            let Some(peer) = self.peers.get_mut(&conn) else { continue };
            let step = peer.conn.handle_timeout(now);
            self.after_step(conn, step).await?;
        }
        Ok(())
    }

    /// The relay's `ice`: whether upgrades are allowed, and TURN credentials when it gave some
    /// (without them, those held are kept: they expire on their own). Fresh ones go to every
    /// client in, for its next attempt; otherwise the clients waiting for an invite get one.
    async fn on_ice(&mut self, relay: &str, webrtc: bool, turn: Option<TurnCredentials>) -> Result<(), String> {
        self.ice_asked = false;
        if self.ice.allowed != webrtc {
            eprintln!("tether daemon: {relay} allows WebRTC upgrades: {webrtc}");
        }
        let fresh = turn.is_some();
        if let Some(turn) = &turn {
            if self.ice.turn.is_none() {
                eprintln!("tether daemon: {relay} gave TURN credentials for {}", turn.urls.join(", "));
            }
        }
        self.ice.allowed = webrtc;
        if !webrtc {
            self.ice.turn = None;
        } else if fresh {
            self.ice.turn = turn;
        }
        let allowed = self.host.webrtc_allowed();
        let invited: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.is_handshaking() && (fresh || p.awaiting_invite))
            .map(|(&conn, _)| conn)
            .collect();
        for conn in invited {
            let Some(peer) = self.peers.get_mut(&conn) else { continue };
            peer.awaiting_invite = false;
            let step = match peer.invite(&self.ice, allowed) {
                Ok(Err(off)) => {
                    eprintln!("tether daemon: client {conn}: no data channel offered (WebRTC is off on {off})");
                    Ok(())
                }
                other => other.map(|_| ()),
            };
            self.after_step(conn, step).await?;
        }
        Ok(())
    }

    /// TURN credentials last minutes: while clients are in, ask for fresh ones well before
    /// those held expire (at most every `TURN_ASK_EVERY_MS`), so an invite never hands out
    /// stale ones.
    async fn refresh_turn(&mut self, now_ms: u64) -> Result<(), String> {
        let running_low = self.ice.turn.as_ref().is_some_and(|turn| {
            turn.expires.saturating_sub(crate::time::now_ms() / 1000) < TURN_REFRESH_SECS
                && now_ms.saturating_sub(self.ice_asked_ms) >= TURN_ASK_EVERY_MS
                && self.peers.values().any(|p| !p.is_handshaking())
        });
        match running_low {
            true => self.ask_for_ice(now_ms).await,
            false => Ok(()),
        }
    }

    /// Send an `ice_request`, unless one is out already (its answer serves every client
    /// waiting for an invite).
    async fn ask_for_ice(&mut self, now_ms: u64) -> Result<(), String> {
        if self.ice_asked {
            return Ok(());
        }
        self.ice_asked = true;
        self.ice_asked_ms = now_ms;
        send(&mut self.sink, Frame::relay(RelayMsg::IceRequest, Vec::new())).await
    }

    /// Close every peer whose credential is gone or changed: authenticated ones, and those whose
    /// hello was answered with it.
    async fn drop_revoked(&mut self) -> Result<(), String> {
        let access = self.host.access();
        let stale = |peer: &Peer| match (&peer.access, peer.conn.claimed_identity(), peer.conn.answered_with()) {
            (Some(guard), _, _) => !guard.still_valid(access),
            (None, Some(identity), Some(verifier)) => {
                access.credential(identity).is_none_or(|c| c.verifier != verifier)
            }
            (None, _, _) => false,
        };
        let revoked: Vec<u64> = self.peers.iter().filter(|(_, p)| stale(p)).map(|(&conn, _)| conn).collect();
        for conn in revoked {
            if let Some(mut peer) = self.peers.remove(&conn) {
                peer.cancel();
            }
            let close = RelayMsg::Close { conn, reason: "access revoked by the host".into() };
            send(&mut self.sink, Frame::relay(close, Vec::new())).await?;
        }
        Ok(())
    }
}

/// A connection failed: say so in the log. (Guesses are counted where proofs are checked.)
fn note_failure(conn: u64, error: &ConnError) {
    if let ConnError::Auth(_) = error {
        eprintln!("tether daemon: client {conn} failed to authenticate: {error}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_peers_a_host_could_dial_as_its_relay_are_kept() {
        let long = format!("https://{}.example", "a".repeat(300));
        let named = vec![
            "https://r2.example".to_owned(),
            "http://127.0.0.1:9000".to_owned(),
            "http://r3.example".to_owned(), // plain text off this machine: never
            "file:///etc/passwd".to_owned(),
            long,
        ];
        assert_eq!(super::usable_peers(named), vec!["https://r2.example", "http://127.0.0.1:9000"]);
        let many: Vec<String> = (0..40).map(|i| format!("https://r{i}.example")).collect();
        assert_eq!(super::usable_peers(many).len(), super::MAX_PEERS);
    }
}
