//! What each request does, whichever way it came in (the Unix socket, or a relay link through
//! `HostService`). Streams and shares are served by their own modules; the rest is here.

use std::sync::Arc;
use std::time::Duration;

use tether_protocol::api::{error_answer, Answer, ErrorCode, Request, Response};
use tether_protocol::sync::lock;

use crate::host::access::Access;
use crate::host::daemon::Daemon;
use crate::host::files::FilesConfig;
use crate::host::identity::HostIdentity;
use crate::host::service::{HostService, InOrder, StreamItem, StreamTx};
use crate::host::session::Written;
use crate::host::{devices, sharing, streams};

/// How long paced input may wait for the program to take it before its sender hears so.
const PACED_INPUT_WAIT: Duration = Duration::from_secs(10);

/// Who asks: the credential a remote client proved, or the host's own user on the socket (or,
/// on the socket, the credential a guest's process came through: `origin`). What a client
/// starts that others must not touch (an upload) is kept under it; a guest
/// (`Access::is_guest`) sees only the sessions it started and manages nothing.
pub const LOCAL_USER: &str = "local";

/// What a guest is told when it asks to manage the host.
const GUEST_REFUSAL: &str =
    "a guest cannot manage this host: this process came through a share (its sessions and execs carry TETHER_VIA)";

/// Whether `request` manages the agent itself (ways in, pairing, what it serves, stopping it).
pub fn manages_the_host(request: &Request) -> bool {
    matches!(
        request,
        Request::Pair { .. }
            | Request::SetFiles { .. }
            | Request::SetWebrtc { .. }
            | Request::Share { .. }
            | Request::ListAccess
            | Request::Revoke { .. }
            | Request::SetPassword { .. }
            | Request::DaemonStop { .. }
            | Request::RenameDevice { .. }
            | Request::PushTest
    )
}

/// Refuse `request` to a guest if it manages the host. (Asked where local requests come in:
/// remote ones may not manage the host at all, `handle_remote`.)
pub fn refuse_to_guest(daemon: &Daemon, owner: &str, request: &Request) -> Option<Answer> {
    (manages_the_host(request) && daemon.access.is_guest(owner))
        .then(|| error_answer(ErrorCode::BadRequest, GUEST_REFUSAL))
}

/// Whether `owner` may touch session `reference` (an id or unique prefix): any, but a guest
/// only those it started — and to a guest another's session reads as one that does not exist.
fn check_session(daemon: &Daemon, owner: &str, reference: &str) -> Result<(), Answer> {
    if !daemon.access.is_guest(owner) {
        return Ok(());
    }
    let id = daemon.sessions.full_id(reference)?;
    match daemon.access.may_see(owner, &id) {
        true => Ok(()),
        false => Err(error_answer(ErrorCode::UnknownSession, format!("no session {reference:?}: see `tether ls`"))),
    }
}

/// The session a request is about, if it names one.
fn session_of(request: &Request) -> Option<&str> {
    match request {
        Request::Send { session, .. }
        | Request::Write { session, .. }
        | Request::Resize { session, .. }
        | Request::WaitForPrompt { session, .. }
        | Request::Stop { session, .. }
        | Request::OpenFiles { session, .. }
        | Request::Attach { session, .. }
        | Request::Logs { session, .. }
        | Request::WatchOpens { session }
        | Request::SetNotify { session, .. } => Some(session),
        Request::Get { id } => id.as_deref(),
        _ => None,
    }
}

/// Input and resizes, handled at once and in order: keystrokes must reach the program in the
/// order they were typed, so these never go to a task of their own. `None`: not one.
pub fn handle_in_order(daemon: &Daemon, owner: &str, request: &Request, payload: &[u8]) -> Option<InOrder> {
    let sessions = &daemon.sessions;
    if matches!(request, Request::Send { .. } | Request::Write { .. } | Request::Resize { .. }) {
        if let Err(answer) = session_of(request).map_or(Ok(()), |session| check_session(daemon, owner, session)) {
            return Some(InOrder::Now(answer));
        }
    }
    let ok = |()| (Response::Ok, Vec::new());
    Some(match request {
        Request::Send { session, chunks } => match sessions.with_live(session, |s| s.send(chunks)) {
            Ok(written) => InOrder::Later(Box::pin(when_written(written))),
            Err(answer) => InOrder::Now(answer),
        },
        Request::Write { session, paced } => match sessions.write_input(session, payload) {
            Ok(written) if *paced => InOrder::Later(Box::pin(when_written(written))),
            Ok(_) => InOrder::Now((Response::Ok, Vec::new())),
            Err(answer) => InOrder::Now(answer),
        },
        Request::Resize { session, cols, rows } => {
            InOrder::Now(sessions.with_live(session, |s| s.resize(*cols, *rows)).map_or_else(|a| a, ok))
        }
        Request::Fs(request) => return daemon.files.handle_in_order(owner, request, payload),
        _ => return None,
    })
}

/// `Ok` once `written` fires; an error if the program does not take its input in time.
async fn when_written(written: Written) -> Answer {
    match tokio::time::timeout(PACED_INPUT_WAIT, written).await {
        Ok(Ok(())) => (Response::Ok, Vec::new()),
        Ok(Err(_)) => error_answer(ErrorCode::NotRunning, "the session ended before it read its input"),
        Err(_) => error_answer(
            ErrorCode::TimedOut,
            format!("the program has not read its input for {} s", PACED_INPUT_WAIT.as_secs()),
        ),
    }
}

/// Every other request that has one answer.
pub async fn handle(daemon: &Daemon, owner: &str, request: Request, payload: Vec<u8>) -> Answer {
    match handle_in_order(daemon, owner, &request, &payload) {
        Some(InOrder::Now(answer)) => return answer,
        Some(InOrder::Later(answer)) => return answer.await,
        None => {}
    }
    if let Err(answer) =
        session_of(&request).map_or(Ok(()), |session| blocking(|| check_session(daemon, owner, session)))
    {
        return answer;
    }
    let sessions = &daemon.sessions;
    match request {
        // SQLite (and, for a start, forking a program) block: tell the runtime, so its other
        // tasks (every client's keystrokes) move to another thread meanwhile.
        Request::Start { command, title, cwd, cols, rows, notify } => {
            let via = (owner != LOCAL_USER).then_some(owner);
            let answer = blocking(|| sessions.start(command, title, cwd, (cols, rows), notify, via));
            if let (Response::Session { session }, _) = &answer {
                daemon.access.started(owner, &session.id);
            }
            answer
        }
        Request::List { statuses, search, limit } => {
            let mut answer = blocking(|| sessions.list(&statuses, search.as_deref(), limit));
            if let (Response::Sessions { sessions: list }, _) = &mut answer {
                list.retain(|s| daemon.access.may_see(owner, &s.id));
            }
            answer
        }
        Request::Get { id } => match blocking(|| sessions.resolve(id.as_deref())) {
            Ok(info) if daemon.access.may_see(owner, &info.id) => (Response::Session { session: info }, Vec::new()),
            // (A guest asking for "the latest" gets none of another's.)
            Ok(_) => error_answer(ErrorCode::UnknownSession, "no session of yours yet: tether start -- CMD"),
            Err(answer) => answer,
        },
        Request::WaitForPrompt { session, timeout_ms } => {
            sessions.wait_for_prompt(&session, Duration::from_millis(timeout_ms)).await
        }
        Request::Stop { session, grace_ms } => sessions.stop(&session, Duration::from_millis(grace_ms)).await,
        Request::HostInfo => (sharing::host_info(daemon, owner), Vec::new()),
        Request::RememberDevice { device, name, salt, verifier } => {
            blocking(|| devices::remember(daemon, owner, &device, &name, &salt, &verifier))
        }
        Request::ListDevices => blocking(|| devices::list(daemon, owner)),
        Request::ForgetDevice { device } => devices::forget(daemon, owner, &device).await,
        Request::RenameDevice { device, name } => blocking(|| devices::rename(daemon, &device, &name)),
        Request::PushKey => daemon.push.key(),
        Request::PushSubscribe { endpoint, p256dh, auth } => {
            blocking(|| daemon.push.subscribe(owner, &endpoint, &p256dh, &auth))
        }
        Request::PushTest => daemon.push.test().await,
        Request::SetNotify { session, on } => blocking(|| sessions.set_notify(&session, on)),
        Request::DaemonStatus => {
            let state_dir = daemon.state.root().display().to_string();
            let version = env!("CARGO_PKG_VERSION").to_owned();
            let (running, total) = (sessions.running(), blocking(|| sessions.total()));
            let relays = daemon.relay_links();
            (Response::Daemon { pid: std::process::id(), version, state_dir, running, total, relays }, Vec::new())
        }
        Request::Pair { relay, name, grant } => sharing::pair(daemon, &relay, name, &grant).await,
        Request::ListAccess => blocking(|| sharing::list_access(daemon)),
        Request::Revoke { identity } => sharing::revoke(daemon, &identity).await,
        Request::SetPassword { password } => sharing::set_password(daemon, password).await,
        Request::Fs(request) => daemon.files.handle(owner, request).await,
        Request::OpenFiles { session, paths } => match sessions.live(&session) {
            Ok(live) => (Response::Opened { browsers: live.announce_open(paths) }, Vec::new()),
            Err(answer) => answer,
        },
        Request::SetFiles { enabled, root } => blocking(|| set_files(daemon, enabled, root)),
        Request::SetWebrtc { enabled } => match blocking(|| daemon.set_webrtc(enabled)) {
            Ok(()) => (Response::Ok, Vec::new()),
            Err(message) => error_answer(ErrorCode::BadRequest, message),
        },
        Request::DaemonStop { grace_ms } => {
            sessions.stop_all(Duration::from_millis(grace_ms)).await;
            daemon.shutdown.notify_one();
            (Response::Ok, Vec::new())
        }
        Request::Send { .. } | Request::Write { .. } | Request::Resize { .. } => {
            unreachable!("handled in order above")
        }
        Request::Attach { .. }
        | Request::Logs { .. }
        | Request::WatchSessions { .. }
        | Request::WatchOpens { .. }
        | Request::Detach { .. }
        | Request::Share { .. } => error_answer(ErrorCode::BadRequest, "stream requests are handled by the connection"),
        Request::Exec { .. } | Request::Signal { .. } => {
            error_answer(ErrorCode::BadRequest, "exec runs on a paired host: tether exec INVITE -- CMD")
        }
    }
}

/// Run blocking work (SQLite, a fork) on this worker thread, with the runtime told so.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

/// `tether pair --files-root DIR` / `--no-files`: new rules now, and after restarts.
fn set_files(daemon: &Daemon, enabled: bool, root: Option<String>) -> Answer {
    let config = FilesConfig { enabled, root: root.map(std::path::PathBuf::from) };
    let applied = daemon.files.reconfigure(&config).and_then(|()| config.store(&lock(&daemon.store)));
    match applied {
        Ok(()) => (Response::Ok, Vec::new()),
        Err(message) => error_answer(ErrorCode::BadRequest, message),
    }
}

/// Serve a stream request from `owner`: its answer and then its items go to `tx`, on stream
/// `stream`.
pub async fn open_stream(daemon: &Daemon, owner: &str, request: Request, id: u64, stream: u32, tx: StreamTx) {
    if let Err(answer) =
        session_of(&request).map_or(Ok(()), |session| blocking(|| check_session(daemon, owner, session)))
    {
        let _ = tx.send(StreamItem::Answer { id, answer }).await;
        return;
    }
    match request {
        Request::Fs(request) => daemon.files.open_stream(request, id, stream, tx).await,
        request => {
            let visible = |session: &str| daemon.access.may_see(owner, session);
            streams::open_stream(&daemon.sessions, &visible, request, id, stream, tx).await
        }
    }
}

/// A request that came through a relay from a client authenticated as `identity`. Managing the
/// agent itself (pairing, access, stopping it) stays with the machine's own user.
async fn handle_remote(daemon: &Daemon, identity: &str, request: Request, payload: Vec<u8>) -> Answer {
    if manages_the_host(&request) || matches!(request, Request::OpenFiles { .. }) {
        return error_answer(ErrorCode::BadRequest, "only the host's own user can do that (run it on the host)");
    }
    handle(daemon, identity, request, payload).await
}

impl HostService for Daemon {
    fn identity(&self) -> &HostIdentity {
        &self.host
    }

    fn access(&self) -> &Access {
        &self.access
    }

    fn handle_in_order(&self, identity: &str, request: &Request, payload: &[u8]) -> Option<InOrder> {
        handle_in_order(self, identity, request, payload)
    }

    fn type_into(&self, identity: &str, session: &str, bytes: &[u8]) -> Result<Written, Answer> {
        check_session(self, identity, session)?;
        self.sessions.write_input(session, bytes)
    }

    async fn handle_remote(self: Arc<Self>, identity: String, request: Request, payload: Vec<u8>) -> Answer {
        handle_remote(&self, &identity, request, payload).await
    }

    async fn open_stream(self: Arc<Self>, identity: String, request: Request, id: u64, stream: u32, tx: StreamTx) {
        open_stream(&self, &identity, request, id, stream, tx).await
    }

    fn webrtc_allowed(&self) -> bool {
        self.webrtc.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_link_state(&self, relay: &str, state: Result<(), String>) {
        Daemon::set_link_state(self, relay, state)
    }
}
