//! The agent's link to a relay: dial out, prove the host id, then serve every client the relay
//! opens a connection for. Each client gets its own sans-IO `Connection` (SRP server, secure
//! channel); this module only moves bytes between it and the WebSocket and hands authenticated
//! requests to the daemon — the same requests the Unix socket carries.
//!
//! Invariants:
//! - Nothing from a client is acted on before its handshake succeeded (`Connection` enforces it).
//! - Failed handshakes are throttled per host: exponential back-off, then a lock-out; while
//!   throttled, new connections are refused at once with the wait in the reason.
//! - A revoked credential's connections are closed at once: on every revocation (or missed
//!   event) the link drops each client whose credential is no longer valid.
//! - A dropped link is re-dialled with back-off; the relay keeps no state, so re-registering is
//!   all it takes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether_protocol::api::{exec_stderr, exec_stdout, ErrorCode, Request, Response};
use tether_protocol::connection::{Connection, Event, Input, Output};
use tether_protocol::frame::{Control, Frame, FrameDecoder, Header, RelayMsg};
use tether_protocol::handshake::{HandshakeEntropy, HANDSHAKE_ENTROPY_BYTES};
use tether_protocol::{AuthError, ConnError};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::access::{AccessEvent, ConnectionGuard};
use crate::daemon::Daemon;
use crate::exec::{Exec, ExecEvent};
use crate::ipc::cmd_frame;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// After SIGTERM to a cancelled exec, SIGKILL follows this soon.
const EXEC_KILL_GRACE: Duration = Duration::from_secs(2);
/// How often connection timers (keep-alive, handshake deadline) are driven.
const TICK: Duration = Duration::from_millis(500);
/// Consecutive failed handshakes before the lock-out.
const LOCKOUT_AFTER: u32 = 20;
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Back-off after the first failure; doubles with each further one (capped).
const FIRST_PENALTY: Duration = Duration::from_millis(250);
const MAX_PENALTY: Duration = Duration::from_secs(60);

/// Failed-handshake throttle for this host.
#[derive(Default)]
pub struct Throttle {
    state: Mutex<(u32, Option<Instant>)>,
}

impl Throttle {
    /// `Some(wait)` while new handshakes are refused.
    pub fn refuse(&self) -> Option<Duration> {
        let (_, until) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        until.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    pub fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        let penalty = if state.0 >= LOCKOUT_AFTER {
            LOCKOUT
        } else {
            (FIRST_PENALTY * 2u32.saturating_pow(state.0 - 1)).min(MAX_PENALTY)
        };
        state.1 = Some(Instant::now() + penalty);
    }

    pub fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
    }
}

/// Keep a link to `relay` up for the daemon's lifetime.
pub async fn run(daemon: Arc<Daemon>, relay: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let why = match link_once(&daemon, &relay).await {
            Ok(()) => "the relay closed the link".to_owned(),
            Err(e) => e,
        };
        eprintln!("tether daemon: relay {relay}: {why}; retrying in {backoff:?}");
        daemon.set_link_state(&relay, Err(why));
        if started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF; // it was up for a while: start over gently
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The relay's endpoint for hosts (plain `ws://` only to this machine).
pub fn host_ws_url(relay: &str) -> Result<String, String> {
    tether_protocol::identity::relay_ws_url(relay, "/ws/host")
}

fn entropy() -> Result<HandshakeEntropy, String> {
    let mut bytes = [0u8; HANDSHAKE_ENTROPY_BYTES];
    crate::random_bytes(&mut bytes)?;
    Ok(HandshakeEntropy(bytes))
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

async fn send(sink: &mut Sink, frame: Frame) -> Result<(), String> {
    let bytes = frame.encode().map_err(|e| e.to_string())?;
    sink.send(Message::Binary(bytes.into())).await.map_err(|e| format!("relay send: {e}"))
}

fn relay_frame(msg: RelayMsg, payload: Vec<u8>) -> Frame {
    Frame::new(Header::Relay(msg), payload)
}

/// Everything the link knows about one remote client.
struct Client {
    conn: Connection,
    /// Which credential it authenticated with (counted in `Access` while it lives).
    access: Option<ConnectionGuard>,
    /// Output accepted from execs but not yet let through by the flow-control window.
    pending: HashMap<u32, Pending>,
    execs: HashMap<u64, Exec>,
    /// Execs that finished while output was still pending: (id, exit code).
    finished: Vec<(u64, i32)>,
    /// Session streams (attach, logs) being served, to stop on detach or disconnect.
    streams: HashMap<u32, tokio::task::AbortHandle>,
    /// Session streams that ended while output was still pending: (stream, end).
    ended: Vec<(u32, u64)>,
}

/// Output waiting for flow-control credit: chunks with their sequence numbers.
struct Pending {
    queue: VecDeque<(u64, Vec<u8>)>,
    permits: Arc<Semaphore>,
}

impl Pending {
    fn new(permits: Arc<Semaphore>) -> Pending {
        Pending { queue: VecDeque::new(), permits }
    }
}

impl Client {
    fn new(conn: Connection) -> Client {
        Client {
            conn,
            access: None,
            pending: HashMap::new(),
            execs: HashMap::new(),
            finished: Vec::new(),
            streams: HashMap::new(),
            ended: Vec::new(),
        }
    }

    /// Send queued output of `stream` as far as the window allows.
    fn drain(&mut self, stream: u32) -> Result<(), ConnError> {
        let Some(pending) = self.pending.get_mut(&stream) else {
            return Ok(());
        };
        while let Some((seq, bytes)) = pending.queue.front_mut() {
            let sent = self.conn.send_data(stream, *seq, bytes)?;
            pending.permits.add_permits(sent);
            if sent < bytes.len() {
                *seq += sent as u64;
                bytes.drain(..sent);
                break;
            }
            pending.queue.pop_front();
        }
        Ok(())
    }

    /// Answer finished execs, and end finished streams, once their output has all gone out
    /// (the answer or `eof` must not overtake it).
    fn settle(&mut self) -> Result<(), ConnError> {
        let drained =
            |pending: &HashMap<u32, Pending>, stream: u32| pending.get(&stream).is_none_or(|p| p.queue.is_empty());
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.finished)
            .into_iter()
            .partition(|&(id, _)| drained(&self.pending, exec_stdout(id)) && drained(&self.pending, exec_stderr(id)));
        self.finished = waiting;
        for (id, code) in done {
            self.execs.remove(&id);
            self.pending.remove(&exec_stdout(id));
            self.pending.remove(&exec_stderr(id));
            self.conn.send_frame(&cmd_frame(id, &Response::Exited { code }, Vec::new()))?;
        }
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.ended).into_iter().partition(|&(stream, _)| drained(&self.pending, stream));
        self.ended = waiting;
        for (stream, end) in done {
            self.pending.remove(&stream);
            self.streams.remove(&stream);
            self.conn.send_frame(&Frame::bare(Header::Control(Control::Eof { stream, end })))?;
        }
        Ok(())
    }

    /// The client is gone: its commands go too (SIGTERM, SIGKILL shortly after).
    fn cancel_execs(&mut self) {
        for exec in self.execs.values() {
            exec.signal(libc::SIGTERM);
            let pid = exec.pid;
            tokio::spawn(async move {
                tokio::time::sleep(EXEC_KILL_GRACE).await;
                // SAFETY: kill(2) only sends a signal.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            });
        }
        self.execs.clear();
        for task in self.streams.values() {
            task.abort();
        }
        self.streams.clear();
    }
}

/// An answer computed by a daemon task, for client `conn`.
type Reply = (u64, Frame);

async fn link_once(daemon: &Arc<Daemon>, relay: &str) -> Result<(), String> {
    let url = host_ws_url(relay)?;
    // disable_nagle: keystrokes and echoes are small; Nagle + delayed ACK would add ~40 ms each.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let host = daemon.host();
    let proof = tether_protocol::hex::encode(&host.secret);
    send(&mut sink, relay_frame(RelayMsg::Register { host_id: host.host_id.clone(), proof }, Vec::new())).await?;

    let mut decoder = FrameDecoder::new();
    let mut registered = false;
    let mut clients: HashMap<u64, Client> = HashMap::new();
    let (link_tx, mut link_rx) = mpsc::unbounded_channel::<Reply>();
    let (exec_tx, mut exec_rx) = mpsc::unbounded_channel::<ExecEvent>();
    let mut tick = tokio::time::interval(TICK);
    let mut access_events = daemon.access.subscribe();
    loop {
        // Which client to flush after this step, and whether it failed.
        let mut touched: Option<(u64, Result<(), ConnError>)> = None;
        tokio::select! {
            incoming = stream.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        end_all(&mut clients);
                        return if registered { Ok(()) } else { Err(format!("refused: {reason}")) };
                    }
                    None => { end_all(&mut clients); return Ok(()) }
                    Some(Err(e)) => { end_all(&mut clients); return Err(format!("relay receive: {e}")) }
                    Some(Ok(_)) => continue,
                };
                decoder.push(&bytes).map_err(|e| e.to_string())?;
                while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                    let Header::Relay(msg) = frame.header else { continue };
                    match msg {
                        RelayMsg::Registered => {
                            registered = true;
                            daemon.set_link_state(relay, Ok(()));
                            eprintln!("tether daemon: reachable through {relay} as {}", host.host_id);
                        }
                        RelayMsg::Open { conn } => {
                            if let Some(wait) = daemon.throttle.refuse() {
                                let reason = format!("too many failed attempts; try again in {}s", wait.as_secs() + 1);
                                send(&mut sink, relay_frame(RelayMsg::Close { conn, reason }, Vec::new())).await?;
                                continue;
                            }
                            let connection = Connection::host(&host.host_id, daemon.credentials(), entropy()?, crate::now_ms());
                            clients.insert(conn, Client::new(connection));
                        }
                        RelayMsg::Forward { conn } => {
                            let Some(client) = clients.get_mut(&conn) else { continue };
                            let result = client.conn.handle_input(Input::Bytes(&frame.payload), crate::now_ms());
                            conclude(daemon, &mut clients, conn, result, &mut sink, &link_tx, &exec_tx).await?;
                        }
                        RelayMsg::Close { conn, .. } => {
                            if let Some(mut client) = clients.remove(&conn) {
                                client.cancel_execs();
                                if let Err(error) = client.conn.handle_input(Input::TransportClosed, crate::now_ms()) {
                                    note_failure(daemon, conn, &error);
                                }
                            }
                        }
                        RelayMsg::Register { .. } => {}
                    }
                }
            }
            Some((conn, frame)) = link_rx.recv() => {
                if let Some(client) = clients.get_mut(&conn) {
                    touched = Some((conn, client.conn.send_frame(&frame)));
                }
            }
            Some(event) = exec_rx.recv() => {
                let conn = match &event {
                    ExecEvent::Output { conn, .. }
                    | ExecEvent::StdinTaken { conn, .. }
                    | ExecEvent::Finished { conn, .. }
                    | ExecEvent::StreamEnd { conn, .. } => *conn,
                };
                if let Some(client) = clients.get_mut(&conn) {
                    touched = Some((conn, apply_exec_event(client, event)));
                }
            }
            event = access_events.recv() => {
                if matches!(event, Ok(AccessEvent::Revoked { .. }) | Err(broadcast::error::RecvError::Lagged(_))) {
                    drop_revoked(daemon, &mut clients, &mut sink).await?;
                }
            }
            _ = tick.tick() => {
                let now = crate::now_ms();
                let due: Vec<u64> = clients
                    .iter()
                    .filter(|(_, c)| c.conn.poll_timeout().is_some_and(|at| at <= now))
                    .map(|(&conn, _)| conn)
                    .collect();
                for conn in due {
                    let Some(client) = clients.get_mut(&conn) else { continue };
                    let result = client.conn.handle_timeout(now);
                    conclude(daemon, &mut clients, conn, result, &mut sink, &link_tx, &exec_tx).await?;
                }
            }
        }
        if let Some((conn, result)) = touched {
            conclude(daemon, &mut clients, conn, result, &mut sink, &link_tx, &exec_tx).await?;
        }
    }
}

/// After a step on client `conn`: send what it produced and act on its events, or, if the step
/// failed, send what is left (a host's `auth/failed`), drop the client and cancel its commands.
async fn conclude(
    daemon: &Arc<Daemon>,
    clients: &mut HashMap<u64, Client>,
    conn: u64,
    step: Result<(), ConnError>,
    sink: &mut Sink,
    link: &mpsc::UnboundedSender<Reply>,
    exec: &mpsc::UnboundedSender<ExecEvent>,
) -> Result<(), String> {
    let Some(client) = clients.get_mut(&conn) else {
        return Ok(());
    };
    let result = match step {
        Ok(()) => flush_and_handle(daemon, conn, client, sink, link, exec).await?,
        Err(error) => {
            flush(conn, client, sink).await?;
            Err(error)
        }
    };
    if let Err(error) = result {
        end(daemon, conn, &error, sink).await?;
        if let Some(mut client) = clients.remove(&conn) {
            client.cancel_execs();
        }
    }
    Ok(())
}

/// Close every client whose credential is no longer among the host's.
async fn drop_revoked(daemon: &Daemon, clients: &mut HashMap<u64, Client>, sink: &mut Sink) -> Result<(), String> {
    let credentials = daemon.credentials();
    let revoked: Vec<u64> = clients
        .iter()
        .filter(|(_, c)| c.access.as_ref().is_some_and(|a| !a.still_valid(&credentials)))
        .map(|(&conn, _)| conn)
        .collect();
    for conn in revoked {
        if let Some(mut client) = clients.remove(&conn) {
            client.cancel_execs();
        }
        send(sink, relay_frame(RelayMsg::Close { conn, reason: "access revoked by the host".into() }, Vec::new()))
            .await?;
    }
    Ok(())
}

fn end_all(clients: &mut HashMap<u64, Client>) {
    for client in clients.values_mut() {
        client.cancel_execs();
    }
    clients.clear();
}

fn apply_exec_event(client: &mut Client, event: ExecEvent) -> Result<(), ConnError> {
    match event {
        ExecEvent::Output { stream, seq, bytes, .. } => {
            if let Some(pending) = client.pending.get_mut(&stream) {
                pending.queue.push_back((seq, bytes));
                client.drain(stream)?;
            }
        }
        ExecEvent::StreamEnd { stream, end, .. } => client.ended.push((stream, end)),
        ExecEvent::StdinTaken { stream, n, .. } => client.conn.consumed(stream, n)?,
        ExecEvent::Finished { id, code, .. } => client.finished.push((id, code)),
    }
    client.settle()
}

/// Flush, and keep handling what the flush reported until nothing new comes of it.
async fn flush_and_handle(
    daemon: &Arc<Daemon>,
    conn: u64,
    client: &mut Client,
    sink: &mut Sink,
    link: &mpsc::UnboundedSender<Reply>,
    exec: &mpsc::UnboundedSender<ExecEvent>,
) -> Result<Result<(), ConnError>, String> {
    loop {
        let events = flush(conn, client, sink).await?;
        if events.is_empty() {
            return Ok(Ok(()));
        }
        if let Err(e) = handle_events(daemon, conn, client, events, link, exec) {
            return Ok(Err(e));
        }
    }
}

/// Send what the connection wants sent; return what it reported.
async fn flush(conn: u64, client: &mut Client, sink: &mut Sink) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    while let Some(output) = client.conn.poll_output() {
        match output {
            Output::Transmit(bytes) => send(sink, relay_frame(RelayMsg::Forward { conn }, bytes)).await?,
            Output::Event(event) => events.push(event),
        }
    }
    Ok(events)
}

fn handle_events(
    daemon: &Arc<Daemon>,
    conn: u64,
    client: &mut Client,
    events: Vec<Event>,
    link: &mpsc::UnboundedSender<Reply>,
    exec_events: &mpsc::UnboundedSender<ExecEvent>,
) -> Result<(), ConnError> {
    for event in events {
        match event {
            Event::Authenticated { identity } => {
                daemon.throttle.success();
                eprintln!("tether daemon: client {conn} authenticated with {identity}");
                let credentials = daemon.credentials();
                let verifier = credentials.into_iter().find(|c| c.identity == identity).map(|c| c.verifier);
                client.access = Some(daemon.access.connected(&identity, verifier.unwrap_or_default()));
            }
            Event::Cmd { id, body, payload } => match serde_json::from_value::<Request>(body) {
                Ok(Request::Exec { command, cwd }) => {
                    match crate::exec::spawn(conn, id, &command, cwd.as_deref(), exec_events.clone()) {
                        Ok(exec) => {
                            for (stream, permits) in [
                                (exec_stdout(id), exec.stdout_permits.clone()),
                                (exec_stderr(id), exec.stderr_permits.clone()),
                            ] {
                                client.pending.insert(stream, Pending::new(permits));
                            }
                            client.execs.insert(id, exec);
                        }
                        Err(message) => {
                            let reply = Response::Error { code: ErrorCode::BadRequest, message };
                            client.conn.send_frame(&cmd_frame(id, &reply, Vec::new()))?;
                        }
                    }
                }
                Ok(request @ (Request::Attach { .. } | Request::Logs { .. } | Request::WatchSessions { .. })) => {
                    serve_stream(daemon, conn, client, id, request, link, exec_events);
                }
                Ok(Request::Detach { stream }) => {
                    if let Some(task) = client.streams.remove(&stream) {
                        task.abort();
                    }
                    client.pending.remove(&stream);
                    client.conn.send_frame(&cmd_frame(id, &Response::Ok, Vec::new()))?;
                }
                Ok(Request::Signal { exec, signal }) => {
                    let reply = match client.execs.get(&exec) {
                        Some(running) if (1..32).contains(&signal) => {
                            running.signal(signal);
                            Response::Ok
                        }
                        Some(_) => {
                            Response::Error { code: ErrorCode::BadRequest, message: format!("bad signal {signal}") }
                        }
                        None => Response::Error {
                            code: ErrorCode::NotRunning,
                            message: "that command is not running".into(),
                        },
                    };
                    client.conn.send_frame(&cmd_frame(id, &reply, Vec::new()))?;
                }
                Ok(request) => {
                    if let Some((response, payload)) = daemon.handle_in_order(&request, &payload) {
                        client.conn.send_frame(&cmd_frame(id, &response, payload))?;
                        continue;
                    }
                    let daemon = daemon.clone();
                    let link = link.clone();
                    let identity = client.access.as_ref().map(|a| a.identity().to_owned()).unwrap_or_default();
                    tokio::spawn(async move {
                        let (response, payload) = daemon.handle_remote(&identity, request, payload).await;
                        let _ = link.send((conn, cmd_frame(id, &response, payload)));
                    });
                }
                Err(e) => {
                    let reply = Response::Error { code: ErrorCode::BadRequest, message: format!("bad request: {e}") };
                    client.conn.send_frame(&cmd_frame(id, &reply, Vec::new()))?;
                }
            },
            Event::Data { stream, bytes, .. } => match exec_for_stream(client, stream) {
                // Credited back when the process has read it (ExecEvent::StdinTaken).
                Some(exec) => {
                    let _ = exec.stdin.send(Some(bytes));
                }
                // Input for nothing we run: credit it back so the client is not stuck.
                None => client.conn.consumed(stream, bytes.len() as u64)?,
            },
            Event::Eof { stream, .. } => {
                if let Some(exec) = exec_for_stream(client, stream) {
                    let _ = exec.stdin.send(None);
                }
            }
            Event::Writable { stream } => {
                client.drain(stream)?;
                client.settle()?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Serve `attach` / `logs` to a remote client with the daemon's own stream code: its frames are
/// turned into permit-gated output (so the window bounds what is in flight) and a deferred `eof`.
fn serve_stream(
    daemon: &Arc<Daemon>,
    conn: u64,
    client: &mut Client,
    id: u64,
    request: Request,
    replies: &mpsc::UnboundedSender<Reply>,
    events: &mpsc::UnboundedSender<ExecEvent>,
) {
    let stream = id as u32;
    let permits = Arc::new(Semaphore::new(crate::exec::WINDOW_BYTES));
    client.pending.insert(stream, Pending::new(permits.clone()));
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(4);
    let task = tokio::spawn(daemon.clone().open_stream(request, id, stream, frames_tx));
    client.streams.insert(stream, task.abort_handle());
    let (replies, events) = (replies.clone(), events.clone());
    tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            match frame.header {
                Header::Cmd { .. } => {
                    let _ = replies.send((conn, frame));
                }
                Header::Data { stream, seq } => {
                    match permits.acquire_many(frame.payload.len() as u32).await {
                        Ok(permit) => permit.forget(),
                        Err(_) => return,
                    }
                    let _ = events.send(ExecEvent::Output { conn, stream, seq, bytes: frame.payload });
                }
                Header::Control(Control::Eof { stream, end }) => {
                    let _ = events.send(ExecEvent::StreamEnd { conn, stream, end });
                }
                _ => {}
            }
        }
    });
}

/// The exec whose stdin travels on `stream`.
fn exec_for_stream(client: &Client, stream: u32) -> Option<&Exec> {
    client.execs.iter().find(|(id, _)| exec_stdout(**id) == stream).map(|(_, exec)| exec)
}

/// A connection failed: log it, count auth failures, tell the relay to drop the client.
async fn end(daemon: &Daemon, conn: u64, error: &ConnError, sink: &mut Sink) -> Result<(), String> {
    note_failure(daemon, conn, error);
    send(sink, relay_frame(RelayMsg::Close { conn, reason: error.to_string() }, Vec::new())).await
}

fn note_failure(daemon: &Daemon, conn: u64, error: &ConnError) {
    if let ConnError::Auth(auth) = error {
        if !matches!(auth, AuthError::TimedOut) {
            daemon.throttle.failure();
        }
        eprintln!("tether daemon: client {conn} failed to authenticate: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_backs_off_then_locks_out() {
        let throttle = Throttle::default();
        assert_eq!(throttle.refuse(), None);
        throttle.failure();
        assert!(throttle.refuse().is_some_and(|w| w <= FIRST_PENALTY));
        for _ in 1..LOCKOUT_AFTER {
            throttle.failure();
        }
        assert!(throttle.refuse().is_some_and(|w| w > MAX_PENALTY));
        throttle.success();
        assert_eq!(throttle.refuse(), None);
    }
}
