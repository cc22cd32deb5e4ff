//! Acting on what a remote client sends: its handshake (credentials looked up when they are
//! needed, the SRP maths on a blocking thread, password proofs in turn), then its requests
//! (exec, signals, streams, and everything the daemon answers through `HostService`) and its
//! stream bytes: an exec's stdin, and keystrokes typed on an attach stream.

use std::collections::VecDeque;
use std::sync::Arc;

use tether_protocol::api::{ErrorCode, Request, Response};
use tether_protocol::cmd::{answer_frame, cmd_frame};
use tether_protocol::connection::Event;
use tether_protocol::stream::{exec_stderr, exec_stdout, request_stream};
use tether_protocol::{AuthError, ConnError};
use tokio::sync::{mpsc, Semaphore};

use super::events::PeerEvent;
use super::upgrade::RelayIce;
use super::{Backlog, Peer, TypedInput, MAX_PEER_STREAMS, MAX_REQUESTS_IN_FLIGHT};
use crate::host::access::throttle::{ProofTurn, Throttle};
use crate::host::exec::{self, Exec, WINDOW_BYTES};
use crate::host::service::{HostService, InOrder, StreamItem};
use crate::time::monotonic_ms;

/// Frames a session stream's task may have ready before it waits for the peer.
const STREAM_TASK_FRAMES: usize = 4;

/// Act on `events` of the peer on connection `conn`. Work that takes time runs in tasks that
/// report back on `tasks`.
pub fn handle_events<H: HostService>(
    host: &Arc<H>,
    conn: u64,
    peer: &mut Peer,
    events: Vec<Event>,
    ice: &RelayIce,
    tasks: &mpsc::UnboundedSender<PeerEvent>,
) -> Result<(), ConnError> {
    for event in events {
        match event {
            Event::CredentialNeeded { identity } => {
                if let Some(reason) = expired(host.access(), &identity) {
                    return Err(peer.conn.refuse_credential(reason, monotonic_ms()));
                }
                let credential = host.access().credential(&identity);
                let work = peer.conn.answer_hello(credential.as_ref(), monotonic_ms())?;
                // Milliseconds of big-number maths: never on the task that carries every client.
                let tasks = tasks.clone();
                tokio::spawn(async move {
                    if let Ok(answer) = tokio::task::spawn_blocking(move || work.compute()).await {
                        let _ = tasks.send(PeerEvent::HelloComputed { conn, answer });
                    }
                });
            }
            Event::ProofReceived { identity } if Throttle::applies_to(&identity) => {
                let (host, tasks) = (host.clone(), tasks.clone());
                tokio::spawn(async move {
                    let (turn, waited) = host.access().throttle.turn(&identity).await;
                    if !waited.is_zero() {
                        eprintln!(
                            "tether daemon: client {conn}: {identity} proof checked after {} ms ({} wrong in a row)",
                            waited.as_millis(),
                            turn.failures()
                        );
                    }
                    let _ = tasks.send(PeerEvent::ProofTurn { conn, turn });
                });
            }
            Event::ProofReceived { .. } => verify(host, peer, None)?,
            Event::Authenticated { identity } => {
                eprintln!("tether daemon: client {conn} authenticated with {identity}");
                let verifier = peer.proven.take().unwrap_or_default();
                peer.access = Some(host.access().connected(&identity, verifier));
                if host.webrtc_allowed() && ice.wants_credentials(crate::time::now_ms() / 1000) {
                    // The link asks the relay for TURN credentials and invites when it answers.
                    peer.awaiting_invite = true;
                } else if let Err(off) = peer.invite(ice, host.webrtc_allowed())? {
                    eprintln!("tether daemon: client {conn}: no data channel offered (WebRTC is off on {off})");
                }
            }
            Event::Webrtc { signal } => peer.on_signal(conn, signal, ice, host.webrtc_allowed(), tasks)?,
            Event::DirectLost { silent_ms } => peer.on_direct_lost(conn, silent_ms)?,
            Event::Cmd { id, body, payload } => match serde_json::from_value::<Request>(body) {
                Ok(request) => handle_request(host, conn, peer, id, request, payload, tasks)?,
                Err(e) => {
                    let reply = Response::Error { code: ErrorCode::BadRequest, message: format!("bad request: {e}") };
                    peer.conn.send_frame(&cmd_frame(id, &reply, Vec::new()))?;
                }
            },
            Event::Data { stream, bytes, .. } => match exec_for_stdin(peer, stream) {
                // Credited back when the process has read it (PeerEvent::InputTaken).
                Some(exec) => {
                    let _ = exec.stdin.send(Some(bytes));
                }
                None => type_into_session(host, conn, peer, stream, bytes, tasks)?,
            },
            Event::Eof { stream, .. } => {
                if let Some(exec) = exec_for_stdin(peer, stream) {
                    let _ = exec.stdin.send(None);
                }
            }
            Event::Writable { stream } => {
                peer.drain(stream)?;
                peer.send_finished()?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What one of a peer's tasks reported: the hello's maths are done, or a proof's turn came (the
/// handshake's, acted on here), or anything else its execs, streams and requests produced
/// (`Peer::apply`).
pub fn on_task_event<H: HostService>(
    host: &Arc<H>,
    peer: &mut Peer,
    event: PeerEvent,
    tasks: &mpsc::UnboundedSender<PeerEvent>,
) -> Result<(), ConnError> {
    match event {
        PeerEvent::HelloComputed { answer, .. } => peer.conn.finish_hello(answer, monotonic_ms()),
        PeerEvent::ProofTurn { turn, .. } => verify(host, peer, Some(turn)),
        PeerEvent::InputRoom { conn, stream } => type_held(host, conn, peer, stream, tasks),
        other => peer.apply(other),
    }
}

/// Check the client's proof against its credential as it is at this moment (so a revocation or a
/// new password wins any race), and tell the throttle how it went.
fn verify<H: HostService>(host: &Arc<H>, peer: &mut Peer, turn: Option<ProofTurn>) -> Result<(), ConnError> {
    let identity = peer.conn.claimed_identity().unwrap_or_default().to_owned();
    // Expired since the hello: said so, not taken for a wrong secret.
    if let Some(reason) = expired(host.access(), &identity) {
        return Err(peer.conn.refuse_credential(reason, monotonic_ms()));
    }
    let answered_with = peer.conn.answered_with().map(<[u8]>::to_vec);
    let credential = host.access().credential(&identity);
    let result = peer.conn.verify_proof(credential.as_ref(), monotonic_ms());
    match (&result, turn) {
        (Ok(()), Some(turn)) => turn.record(true),
        // Only a wrong proof is a guess; a credential revoked meanwhile is not.
        (Err(ConnError::Auth(AuthError::WrongSecret)), Some(turn)) => turn.record(false),
        _ => {}
    }
    if result.is_ok() {
        peer.proven = answered_with;
    }
    result
}

/// Why `identity` may not come in any more, if its grant ran out.
fn expired(access: &crate::host::access::Access, identity: &str) -> Option<String> {
    let at = access.expired(identity)?;
    Some(format!("this invite expired at {} (host time)", crate::time::format_time(at)))
}

/// What a viewer (a read-only way in) hears when it asks for more than watching.
const READ_ONLY_REFUSAL: &str =
    "read-only: this invite may only watch sessions (no typing, resizing, starting, stopping, exec or files)";

/// A viewer's request as the host lets it through: listing and watching only (an attach never
/// resizes, and takes no keystrokes), or `None`: refused. Checked here, at the door every
/// request of a remote client comes through (relay or data channel alike), by the credential
/// it proved — never left to the client.
fn as_viewer_may(request: Request) -> Option<Request> {
    match request {
        Request::Attach { session, from, .. } => Some(Request::Attach { session, from, cols: None, rows: None }),
        allowed @ (Request::List { .. }
        | Request::Get { .. }
        | Request::Logs { .. }
        | Request::WaitForPrompt { .. }
        | Request::WatchSessions { .. }
        | Request::Detach { .. }
        | Request::HostInfo) => Some(allowed),
        _ => None,
    }
}

fn handle_request<H: HostService>(
    host: &Arc<H>,
    conn: u64,
    peer: &mut Peer,
    id: u64,
    request: Request,
    payload: Vec<u8>,
    tasks: &mpsc::UnboundedSender<PeerEvent>,
) -> Result<(), ConnError> {
    let viewer = peer.access.as_ref().is_some_and(|a| host.access().is_viewer(a.identity()));
    let request = match viewer {
        false => request,
        true => match as_viewer_may(request) {
            Some(request) => request,
            None => {
                let reply = Response::Error { code: ErrorCode::ReadOnly, message: READ_ONLY_REFUSAL.into() };
                return peer.conn.send_frame(&cmd_frame(id, &reply, Vec::new()));
            }
        },
    };
    let opens_streams = request.opens_stream() || matches!(request, Request::Exec { .. });
    if opens_streams {
        if let Err(message) = check_new_streams(peer, id, matches!(request, Request::Exec { .. })) {
            let reply = Response::Error { code: ErrorCode::BadRequest, message };
            return peer.conn.send_frame(&cmd_frame(id, &reply, Vec::new()));
        }
    }
    match request {
        Request::Exec { command, cwd } => {
            let via = peer.access.as_ref().map_or("", |a| a.identity());
            match exec::spawn(conn, id, &command, cwd.as_deref(), via, tasks.clone()) {
                Ok(exec) => {
                    for (stream, permits) in
                        [(exec_stdout(id), exec.stdout_permits.clone()), (exec_stderr(id), exec.stderr_permits.clone())]
                    {
                        peer.backlogs.insert(stream, Backlog::new(permits));
                    }
                    peer.execs.insert(id, exec);
                }
                Err(message) => {
                    let reply = Response::Error { code: ErrorCode::BadRequest, message };
                    peer.conn.send_frame(&cmd_frame(id, &reply, Vec::new()))?;
                }
            }
        }
        request if request.opens_stream() => {
            // A viewer's keystrokes go nowhere (credited back, dropped).
            if let (Request::Attach { session, .. }, false) = (&request, viewer) {
                peer.inputs.insert(id as u32, TypedInput { session: session.clone(), held: VecDeque::new() });
            }
            serve_stream(host, conn, peer, id, request, tasks)
        }
        Request::Detach { stream } => {
            if let Some(task) = peer.streams.remove(&stream) {
                task.abort();
            }
            peer.backlogs.remove(&stream);
            peer.inputs.remove(&stream);
            peer.conn.forget_stream(stream);
            peer.conn.send_frame(&cmd_frame(id, &Response::Ok, Vec::new()))?;
        }
        Request::Signal { exec, signal } => {
            let reply = match peer.execs.get(&exec) {
                Some(running) if (1..32).contains(&signal) => {
                    running.signal(signal);
                    Response::Ok
                }
                Some(_) => Response::Error { code: ErrorCode::BadRequest, message: format!("bad signal {signal}") },
                None => Response::Error { code: ErrorCode::NotRunning, message: "that command is not running".into() },
            };
            peer.conn.send_frame(&cmd_frame(id, &reply, Vec::new()))?;
        }
        request => {
            let identity = peer.access.as_ref().map(|a| a.identity().to_owned()).unwrap_or_default();
            match host.handle_in_order(&identity, &request, &payload) {
                Some(InOrder::Now(answer)) => return peer.conn.send_frame(&answer_frame(id, &answer)),
                Some(InOrder::Later(answer)) => {
                    let tasks = tasks.clone();
                    tokio::spawn(async move {
                        let _ = tasks.send(PeerEvent::Answer { conn, id, answer: answer.await });
                    });
                    return Ok(());
                }
                None => {}
            }
            // Bounded: a peer that floods requests gets refusals, not a task each.
            let Ok(permit) = peer.in_flight.clone().try_acquire_owned() else {
                let message = format!("more than {MAX_REQUESTS_IN_FLIGHT} requests under way; wait for answers");
                let reply = Response::Error { code: ErrorCode::LimitReached, message };
                return peer.conn.send_frame(&cmd_frame(id, &reply, Vec::new()));
            };
            let host = host.clone();
            let tasks = tasks.clone();
            tokio::spawn(async move {
                let answer = host.handle_remote(identity, request, payload).await;
                let _ = tasks.send(PeerEvent::Answer { conn, id, answer });
                drop(permit);
            });
        }
    }
    Ok(())
}

/// Keystrokes (or a paste) typed on attach stream `stream`: into its session's terminal, in
/// order, credited back once the program's terminal has taken them — so the client's window
/// paces a paste, and a keystroke costs no answer of its own. However long that takes: a program
/// that leaves its input unread keeps the window shut, so what the host holds stays within the
/// session's input backlog and the rest waits in the client — never dropped here. Bytes on a
/// stream that takes no input (or for a session that ended) are credited back at once, so the
/// client is not stuck.
fn type_into_session<H: HostService>(
    host: &Arc<H>,
    conn: u64,
    peer: &mut Peer,
    stream: u32,
    bytes: Vec<u8>,
    tasks: &mpsc::UnboundedSender<PeerEvent>,
) -> Result<(), ConnError> {
    let Some(input) = peer.inputs.get_mut(&stream) else { return peer.conn.consumed(stream, bytes.len() as u64) };
    let waiting = !input.held.is_empty();
    input.held.push_back(bytes);
    if waiting {
        return Ok(()); // behind keys waiting for room: typed after them
    }
    type_held(host, conn, peer, stream, tasks)
}

/// Type what attach stream `stream` holds, in order, each credited once the terminal took it,
/// until all is typed or the session's input backlog is full: then what is left waits for
/// room (`PeerEvent::InputRoom`). Input the session refuses otherwise (it ended) is credited and
/// dropped.
fn type_held<H: HostService>(
    host: &Arc<H>,
    conn: u64,
    peer: &mut Peer,
    stream: u32,
    tasks: &mpsc::UnboundedSender<PeerEvent>,
) -> Result<(), ConnError> {
    // Borrowed, not copied: this runs for every keystroke.
    let identity = peer.access.as_ref().map_or("", |a| a.identity());
    let Some(input) = peer.inputs.get_mut(&stream) else { return Ok(()) };
    while let Some(bytes) = input.held.pop_front() {
        let n = bytes.len() as u64;
        match host.type_into(identity, &input.session, &bytes) {
            Ok(taken) => {
                let tasks = tasks.clone();
                tokio::spawn(async move {
                    let _ = taken.await; // also when the session ends with them unread
                    let _ = tasks.send(PeerEvent::InputTaken { conn, stream, n });
                });
            }
            // Empty input is taken once all queued before it was: there is room then.
            Err((Response::Error { code: ErrorCode::LimitReached, .. }, _)) => {
                match host.type_into(identity, &input.session, &[]) {
                    Ok(room) => {
                        input.held.push_front(bytes);
                        let tasks = tasks.clone();
                        tokio::spawn(async move {
                            let _ = room.await;
                            let _ = tasks.send(PeerEvent::InputRoom { conn, stream });
                        });
                        return Ok(());
                    }
                    Err(_) => peer.conn.consumed(stream, n)?, // it takes no input at all now
                }
            }
            Err(_) => peer.conn.consumed(stream, n)?,
        }
    }
    Ok(())
}

/// Serve a stream request (`attach`, `logs`, the watches, file listings, reads and archives)
/// with the daemon's own stream code: its items are turned into permit-gated output (so the
/// window bounds what is in flight) and a deferred `eof`.
fn serve_stream<H: HostService>(
    host: &Arc<H>,
    conn: u64,
    peer: &mut Peer,
    id: u64,
    request: Request,
    tasks: &mpsc::UnboundedSender<PeerEvent>,
) {
    let stream = id as u32;
    let permits = Arc::new(Semaphore::new(WINDOW_BYTES));
    peer.backlogs.insert(stream, Backlog::new(permits.clone()));
    let (items_tx, mut items_rx) = mpsc::channel::<StreamItem>(STREAM_TASK_FRAMES);
    let identity = peer.access.as_ref().map(|a| a.identity().to_owned()).unwrap_or_default();
    let task = tokio::spawn(host.clone().open_stream(identity, request, id, stream, items_tx));
    peer.streams.insert(stream, task.abort_handle());
    let tasks = tasks.clone();
    tokio::spawn(async move {
        while let Some(item) = items_rx.recv().await {
            let event = match item {
                StreamItem::Answer { id, answer } => PeerEvent::Answer { conn, id, answer },
                StreamItem::Data { stream, seq, bytes } => {
                    match permits.acquire_many(bytes.len() as u32).await {
                        Ok(permit) => permit.forget(),
                        Err(_) => return,
                    }
                    PeerEvent::Output { conn, stream, seq, bytes }
                }
                StreamItem::Skip { stream, from, to } => PeerEvent::StreamSkip { conn, stream, from, to },
                StreamItem::Eof { stream, end } => PeerEvent::StreamEnd { conn, stream, end },
            };
            let _ = tasks.send(event);
        }
    });
}

/// Whether request `id` may open its stream(s): an id that names a stream (see
/// `request_stream`), not in use already, and room for more.
fn check_new_streams(peer: &Peer, id: u64, exec: bool) -> Result<(), String> {
    let stream = request_stream(id).ok_or_else(|| format!("request id {id} cannot name a stream"))?;
    let wanted = if exec { vec![exec_stdout(id), exec_stderr(id)] } else { vec![stream] };
    if wanted.iter().any(|s| peer.backlogs.contains_key(s) || peer.streams.contains_key(s)) {
        return Err(format!("stream {stream} is already open"));
    }
    if peer.backlogs.len() + wanted.len() > MAX_PEER_STREAMS {
        return Err(format!("more than {MAX_PEER_STREAMS} streams open; close some first"));
    }
    Ok(())
}

/// The exec whose stdin travels on `stream`.
fn exec_for_stdin(peer: &Peer, stream: u32) -> Option<&Exec> {
    peer.execs.iter().find(|(id, _)| exec_stdout(**id) == stream).map(|(_, exec)| exec)
}
