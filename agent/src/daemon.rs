//! `tether daemon`: owns the sessions and answers clients on the Unix socket.
//!
//! One daemon per state dir (an exclusive `flock` on `daemon.lock`). Clients are trusted only if
//! they run as the same user (`SO_PEERCRED`), and the socket is mode 0600 besides. Each client
//! connection gets a reader loop and a writer task; each request runs in its own task so a slow
//! one (`stop`, `logs --wait-for-prompt`) never holds up the others; each output stream is a task
//! that follows its session (see `session`).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tether_protocol::api::{ErrorCode, Request, Response, SessionInfo, SessionStatus};
use tether_protocol::frame::{Control, Frame, Header};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;

mod ways_in;

use crate::access::Access;
use crate::config::Config;
use crate::host::HostIdentity;
use crate::ipc::{cmd_frame, write_frame, FrameReader};
use crate::notify::Notifier;
use crate::paths::StateDir;
use crate::prompt::PromptDetector;
use crate::relay_link::Throttle;
use crate::session::{Session, Spawn};
use crate::store::Store;

/// Settings key of the relay this host stays connected to.
const RELAY_SETTING: &str = "relay";

/// Output bytes per data frame sent to clients.
const STREAM_CHUNK_BYTES: usize = 64 * 1024; // 64 KiB
/// Frames queued per client connection before output streaming waits for the socket.
const CLIENT_QUEUE_FRAMES: usize = 64;
/// After SIGKILL, how long to wait for the process to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often a session-list watcher looks for changes no event announces (an input-needed
/// flag cleared by new output).
const WATCH_RECHECK: Duration = Duration::from_secs(1);
/// Sessions a watcher gets when it names no limit.
const WATCH_LIMIT: usize = 200;
/// Characters in a session id (from a 36-letter alphabet: 2 billion ids).
const ID_LEN: usize = 6;

type Reply = (Response, Vec<u8>);

pub struct Daemon {
    state: StateDir,
    host: HostIdentity,
    pub throttle: Throttle,
    pub access: Access,
    relays: Mutex<std::collections::HashSet<String>>,
    /// Per relay: registered (`Ok`), or why the last attempt failed.
    link_states: tokio::sync::watch::Sender<HashMap<String, Result<(), String>>>,
    /// Bumped when a session starts, ends, or starts waiting for input.
    sessions_changed: tokio::sync::watch::Sender<u64>,
    config: Config,
    store: Mutex<Store>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    prompts: PromptDetector,
    notifier: Notifier,
    shutdown: Notify,
    me: Weak<Daemon>,
}

/// Run the daemon until `daemon stop`, SIGTERM or SIGINT.
pub async fn run(state: StateDir, config: Config) -> Result<(), String> {
    state.create()?;
    let _lock = match acquire_lock(&state)? {
        Some(lock) => lock,
        None => {
            eprintln!("tether daemon: already running for {}", state.root().display());
            return Ok(());
        }
    };
    let store = Store::open(&state.database())?;
    let orphans = store.mark_orphans(crate::now_ms())?;
    if orphans > 0 {
        eprintln!("tether daemon: {orphans} session(s) did not survive the previous agent; marked unknown");
    }
    let socket = state.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", socket.display()))?;
    std::fs::write(state.root().join("daemon.pid"), std::process::id().to_string())
        .map_err(|e| format!("cannot write pid file: {e}"))?;
    let host = HostIdentity::load_or_create(&state)?;
    let relay = store.setting(RELAY_SETTING)?;

    let daemon = Arc::new_cyclic(|me| Daemon {
        prompts: PromptDetector::new(&config.prompt_patterns).unwrap_or_else(|e| {
            eprintln!("tether daemon: {e}; using the built-in prompt patterns only");
            PromptDetector::new(&[]).unwrap_or_else(|_| unreachable!("built-in patterns compile"))
        }),
        notifier: Notifier::new(config.notify_hook.clone(), config.desktop_notifications),
        state: state.clone(),
        host,
        throttle: Throttle::default(),
        access: Access::new(),
        relays: Mutex::new(Default::default()),
        link_states: tokio::sync::watch::Sender::new(HashMap::new()),
        sessions_changed: tokio::sync::watch::Sender::new(0),
        config,
        store: Mutex::new(store),
        sessions: Mutex::new(HashMap::new()),
        shutdown: Notify::new(),
        me: me.clone(),
    });
    eprintln!("tether daemon {} listening on {}", env!("CARGO_PKG_VERSION"), socket.display());
    if let Some(relay) = relay {
        daemon.ensure_relay_link(&relay);
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("signal handler: {e}"))?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("signal handler: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(daemon.clone().serve(stream)); }
                Err(e) => eprintln!("tether daemon: accept failed: {e}"),
            },
            _ = daemon.shutdown.notified() => break,
            _ = terminate.recv() => { daemon.stop_all(Duration::from_secs(2)).await; break }
            _ = interrupt.recv() => { daemon.stop_all(Duration::from_secs(2)).await; break }
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(state.root().join("daemon.pid"));
    eprintln!("tether daemon: stopped");
    Ok(())
}

/// An exclusive lock on the state dir, held for the daemon's life; `None` if another has it.
fn acquire_lock(state: &StateDir) -> Result<Option<std::fs::File>, String> {
    use std::os::fd::AsRawFd;
    let path = state.root().join("daemon.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a valid, owned file descriptor.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    Ok(locked.then_some(file))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    (Response::Error { code, message: message.into() }, Vec::new())
}

/// What a session's output is read from: a live session, or the log of a finished one.
enum Source {
    Live(Arc<Session>),
    Log { path: std::path::PathBuf },
}

impl Daemon {
    /// One client connection.
    async fn serve(self: Arc<Self>, stream: UnixStream) {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == me => {}
            _ => return, // another user (or unknown): say nothing, just close
        }
        let (read_half, mut write_half) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Frame>(CLIENT_QUEUE_FRAMES);
        let writer = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if write_frame(&mut write_half, &frame).await.is_err() {
                    break;
                }
            }
        });
        let mut reader = FrameReader::new(read_half);
        let mut streams: HashMap<u32, AbortHandle> = HashMap::new();
        while let Ok(Some(frame)) = reader.next().await {
            let Header::Cmd { id, body } = frame.header else {
                continue;
            };
            let request = match serde_json::from_value::<Request>(body) {
                Ok(request) => request,
                Err(e) => {
                    let reply = error(ErrorCode::BadRequest, format!("bad request: {e}"));
                    let _ = tx.send(cmd_frame(id, &reply.0, reply.1)).await;
                    continue;
                }
            };
            match request {
                Request::Detach { stream } => {
                    if let Some(task) = streams.remove(&stream) {
                        task.abort();
                    }
                    let _ = tx.send(cmd_frame(id, &Response::Ok, Vec::new())).await;
                }
                Request::Attach { .. } | Request::Logs { .. } | Request::WatchSessions { .. } => {
                    // The stream id is the request id: the client registered it before asking.
                    let stream = id as u32;
                    let daemon = self.clone();
                    let tx = tx.clone();
                    let task = tokio::spawn(async move { daemon.open_stream(request, id, stream, tx).await });
                    streams.insert(stream, task.abort_handle());
                }
                Request::Share { relay, name, idle_timeout_ms } => {
                    // Aborted when this connection closes, which ends the share.
                    let idle = Duration::from_millis(idle_timeout_ms);
                    let task = tokio::spawn(self.clone().share(relay, name, idle, id, id as u32, tx.clone()));
                    streams.insert(id as u32, task.abort_handle());
                }
                request => {
                    if let Some((response, payload)) = self.handle_in_order(&request, &frame.payload) {
                        let _ = tx.send(cmd_frame(id, &response, payload)).await;
                        continue;
                    }
                    let daemon = self.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let (response, payload) = daemon.handle(request, frame.payload).await;
                        let _ = tx.send(cmd_frame(id, &response, payload)).await;
                    });
                }
            }
            streams.retain(|_, task| !task.is_finished());
        }
        for task in streams.values() {
            task.abort();
        }
        drop(tx);
        let _ = writer.await;
    }

    /// Input and resizes, handled at once and in order: keystrokes must reach the program in
    /// the order they were typed, so these never go to a task of their own. `None`: not one.
    pub fn handle_in_order(&self, request: &Request, payload: &[u8]) -> Option<Reply> {
        Some(match request {
            Request::Send { session, chunks } => self.with_live(session, |s| s.send(chunks)),
            Request::Write { session } => self.with_live(session, |s| s.write_input(payload)),
            Request::Resize { session, cols, rows } => self.with_live(session, |s| s.resize(*cols, *rows)),
            _ => return None,
        })
    }

    async fn handle(&self, request: Request, payload: Vec<u8>) -> Reply {
        if let Some(reply) = self.handle_in_order(&request, &payload) {
            return reply;
        }
        match request {
            Request::Start { command, title, cwd, cols, rows, notify } => {
                let notify = notify.unwrap_or(self.config.notify_by_default);
                self.start(command, title, cwd, (cols, rows), notify)
            }
            Request::List { statuses, search, limit } => self.list(&statuses, search.as_deref(), limit),
            Request::Get { id } => match self.resolve(id.as_deref()) {
                Ok(info) => (Response::Session { session: info }, Vec::new()),
                Err(reply) => reply,
            },
            Request::Send { .. } | Request::Write { .. } | Request::Resize { .. } => {
                unreachable!("handled in order above")
            }
            Request::WaitForPrompt { session, timeout_ms } => self.wait_for_prompt(&session, timeout_ms).await,
            Request::Stop { session, grace_ms } => self.stop(&session, Duration::from_millis(grace_ms)).await,
            Request::HostInfo => (self.host_info(), Vec::new()),
            Request::DaemonStatus => {
                let sessions = lock(&self.sessions);
                let running = sessions.values().filter(|s| !s.is_finished()).count();
                let total = lock(&self.store).list().map(|l| l.len()).unwrap_or(0);
                let state_dir = self.state.root().display().to_string();
                let version = env!("CARGO_PKG_VERSION").to_owned();
                (Response::Daemon { pid: std::process::id(), version, state_dir, running, total }, Vec::new())
            }
            Request::Pair { relay, name } => self.pair(&relay, name).await,
            Request::ListAccess => self.list_access(),
            Request::Revoke { identity } => self.revoke(&identity).await,
            Request::SetPassword { password } => self.set_password(password).await,
            Request::DaemonStop { grace_ms } => {
                self.stop_all(Duration::from_millis(grace_ms)).await;
                self.shutdown.notify_one();
                (Response::Ok, Vec::new())
            }
            Request::Attach { .. }
            | Request::Logs { .. }
            | Request::WatchSessions { .. }
            | Request::Detach { .. }
            | Request::Share { .. } => error(ErrorCode::BadRequest, "stream requests are handled by the connection"),
            Request::Exec { .. } | Request::Signal { .. } => {
                error(ErrorCode::BadRequest, "exec runs on a paired host: tether exec INVITE -- CMD")
            }
        }
    }

    fn start(
        &self,
        command: Vec<String>,
        title: Option<String>,
        cwd: Option<String>,
        size: (u16, u16),
        notify: bool,
    ) -> Reply {
        // No command (the browser's "new shell"): the user's login shell, as ssh would start.
        let command = if command.is_empty() {
            vec![std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())]
        } else {
            command
        };
        let running = lock(&self.sessions).values().filter(|s| !s.is_finished()).count();
        if running >= self.config.max_running_sessions {
            return error(
                ErrorCode::LimitReached,
                format!(
                    "{running} sessions are running, the limit (max_running_sessions in {})",
                    self.state.config().display()
                ),
            );
        }
        let id = match self.new_id() {
            Ok(id) => id,
            Err(e) => return error(ErrorCode::Internal, e),
        };
        let title = title.unwrap_or_else(|| command.join(" "));
        let cwd = cwd.unwrap_or_else(|| std::env::var("HOME").unwrap_or_else(|_| "/".into()));
        let spec = Spawn {
            log_path: self.state.session_log(&id),
            id: id.clone(),
            command: command.clone(),
            title: title.clone(),
            cwd: cwd.clone(),
            cols: size.0,
            rows: size.1,
            ring_bytes: self.config.ring_bytes,
            now: crate::now_ms(),
            notify,
        };
        let me = self.me.clone();
        match Session::spawn(spec, move |session| {
            if let Some(daemon) = me.upgrade() {
                daemon.on_exit(session);
            }
        }) {
            Ok(session) => {
                let info = session.info();
                if let Err(e) = lock(&self.store).insert(&info) {
                    eprintln!("tether daemon: {e}");
                }
                lock(&self.sessions).insert(id, session.clone());
                if let Some(daemon) = self.me.upgrade() {
                    tokio::spawn(daemon.watch_prompts(session));
                }
                self.note_sessions_changed();
                (Response::Session { session: info }, Vec::new())
            }
            Err(message) => {
                // Remember the failure too: `ls` shows what was tried and why it did not run.
                let now = crate::now_ms();
                let failed = SessionInfo {
                    id,
                    title,
                    command,
                    cwd,
                    pid: None,
                    status: SessionStatus::Failed,
                    exit_code: None,
                    created_at: now,
                    started_at: None,
                    ended_at: Some(now),
                    output_bytes: 0,
                    waiting_for_input: false,
                    input_reason: None,
                    notify,
                };
                let _ = lock(&self.store).insert(&failed);
                error(ErrorCode::BadRequest, message)
            }
        }
    }

    pub fn set_link_state(&self, relay: &str, state: Result<(), String>) {
        self.link_states.send_modify(|states| {
            states.insert(relay.to_owned(), state);
        });
    }

    pub fn host(&self) -> &HostIdentity {
        &self.host
    }

    /// Everything that may authenticate a remote client right now.
    pub fn credentials(&self) -> Vec<tether_protocol::handshake::Credential> {
        let mut credentials = lock(&self.store).credentials().unwrap_or_else(|e| {
            eprintln!("tether daemon: {e}");
            Vec::new()
        });
        credentials.extend(self.access.ephemeral_credentials());
        credentials
    }

    /// A request that came through the relay from a client authenticated as `identity`.
    /// Managing the agent itself (pairing, access, stopping it) stays with the machine's own user.
    pub async fn handle_remote(&self, identity: &str, request: Request, payload: Vec<u8>) -> Reply {
        match request {
            Request::Pair { .. }
            | Request::Share { .. }
            | Request::ListAccess
            | Request::Revoke { .. }
            | Request::SetPassword { .. }
            | Request::DaemonStop { .. } => {
                error(ErrorCode::BadRequest, "only the host's own user can do that (run it on the host)")
            }
            request => {
                let starts = matches!(request, Request::Start { .. });
                let reply = self.handle(request, payload).await;
                if let (true, (Response::Session { session }, _)) = (starts, &reply) {
                    self.access.started(identity, &session.id);
                }
                reply
            }
        }
    }

    fn new_id(&self) -> Result<String, String> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for _ in 0..16 {
            let mut bytes = [0u8; ID_LEN];
            crate::random_bytes(&mut bytes)?;
            let id: String = bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
            if lock(&self.store).get(&id)?.is_none() {
                return Ok(id);
            }
        }
        Err("could not find a free session id".into())
    }

    /// Called on the waiter thread when a session's process has ended and its output drained.
    /// The session leaves the live map, so its ring and screen are freed once the last stream
    /// following it ends; from now on it is served from the database and its log file.
    fn on_exit(&self, session: &Arc<Session>) {
        let info = session.info();
        if let Err(e) = lock(&self.store).update(&info) {
            eprintln!("tether daemon: {e}");
        }
        lock(&self.sessions).remove(&session.id);
        self.note_sessions_changed();
        let reason = match info.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "exited".to_owned(),
        };
        self.notifier.notify(&info, &reason);
    }

    /// Flag the session as waiting for input when its cursor line looks like a prompt and it
    /// has been quiet for `prompt_quiet_ms`; any new output clears the flag (in `Session`).
    async fn watch_prompts(self: Arc<Self>, session: Arc<Session>) {
        let quiet = Duration::from_millis(self.config.prompt_quiet_ms);
        let mut end = session.subscribe_end();
        let mut finished = session.subscribe_finished();
        loop {
            match tokio::time::timeout(quiet, end.changed()).await {
                Ok(Ok(())) => continue, // more output: restart the quiet timer
                Ok(Err(_)) => return,
                Err(_) => {} // quiet long enough
            }
            if session.is_finished() {
                return;
            }
            if *end.borrow() > 0 {
                if let Some(reason) = self.prompts.matches(&session.cursor_line()) {
                    session.set_waiting(Some(reason.to_owned()));
                    self.note_sessions_changed();
                    self.notifier.notify(&session.info(), reason);
                }
            }
            tokio::select! {
                changed = end.changed() => if changed.is_err() { return },
                _ = finished.changed() => return,
            }
        }
    }

    /// Resolve an id or unique prefix (newest session when `None`) to its current info.
    fn resolve(&self, id: Option<&str>) -> Result<SessionInfo, Reply> {
        let id = match id {
            None => {
                let newest = lock(&self.store).newest().map_err(|e| error(ErrorCode::Internal, e))?;
                return newest
                    .map(|s| self.current(s))
                    .ok_or_else(|| error(ErrorCode::UnknownSession, "there are no sessions yet: tether start -- CMD"));
            }
            Some(id) => id,
        };
        let store = lock(&self.store);
        if let Some(info) = store.get(id).map_err(|e| error(ErrorCode::Internal, e))? {
            drop(store);
            return Ok(self.current(info));
        }
        let matches = store.ids_with_prefix(id, 2).map_err(|e| error(ErrorCode::Internal, e))?;
        match matches.as_slice() {
            [] => Err(error(ErrorCode::UnknownSession, format!("no session {id:?}: see `tether ls`"))),
            [only] => {
                let info = store.get(only).map_err(|e| error(ErrorCode::Internal, e))?;
                drop(store);
                info.map(|i| self.current(i))
                    .ok_or_else(|| error(ErrorCode::UnknownSession, format!("no session {id:?}")))
            }
            _ => {
                Err(error(ErrorCode::AmbiguousSession, format!("{id:?} matches several sessions: give more of the id")))
            }
        }
    }

    /// Live info for a running session, stored info otherwise.
    fn current(&self, stored: SessionInfo) -> SessionInfo {
        lock(&self.sessions).get(&stored.id).map_or(stored, |s| s.info())
    }

    fn live(&self, id: &str) -> Result<Arc<Session>, Reply> {
        let info = self.resolve(Some(id))?;
        match lock(&self.sessions).get(&info.id) {
            Some(session) if !session.is_finished() => Ok(session.clone()),
            _ => Err(error(
                ErrorCode::NotRunning,
                format!(
                    "session {} is not running ({}); `tether logs {}` shows its output",
                    info.id,
                    info.status.as_str(),
                    info.id
                ),
            )),
        }
    }

    fn with_live(&self, id: &str, action: impl FnOnce(&Session) -> Result<(), String>) -> Reply {
        match self.live(id) {
            Ok(session) => match action(&session) {
                Ok(()) => (Response::Ok, Vec::new()),
                Err(e) => error(ErrorCode::Internal, e),
            },
            Err(reply) => reply,
        }
    }

    fn list(&self, statuses: &[SessionStatus], search: Option<&str>, limit: Option<usize>) -> Reply {
        let stored = match lock(&self.store).list() {
            Ok(list) => list,
            Err(e) => return error(ErrorCode::Internal, e),
        };
        let search = search.map(str::to_lowercase);
        let sessions: Vec<SessionInfo> = stored
            .into_iter()
            .map(|s| self.current(s))
            .filter(|s| statuses.is_empty() || statuses.contains(&s.status))
            .filter(|s| {
                search.as_ref().is_none_or(|needle| {
                    s.id.contains(needle.as_str())
                        || s.title.to_lowercase().contains(needle.as_str())
                        || s.command.join(" ").to_lowercase().contains(needle.as_str())
                })
            })
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        (Response::Sessions { sessions }, Vec::new())
    }

    async fn wait_for_prompt(&self, id: &str, timeout_ms: u64) -> Reply {
        let session = match self.live(id) {
            Ok(session) => session,
            Err(reply) => return reply,
        };
        let mut waiting = session.subscribe_waiting();
        let mut finished = session.subscribe_finished();
        let wait = async {
            loop {
                if waiting.borrow_and_update().is_some() {
                    return true;
                }
                tokio::select! {
                    changed = waiting.changed() => if changed.is_err() { return false },
                    _ = finished.changed() => return false,
                }
            }
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), wait).await {
            Ok(true) => (Response::Session { session: session.info() }, Vec::new()),
            Ok(false) => error(ErrorCode::NotRunning, format!("session {} ended without a prompt", session.id)),
            Err(_) => error(
                ErrorCode::TimedOut,
                format!(
                    "timed out after {:.1}s: session {} is not waiting for input",
                    timeout_ms as f64 / 1000.0,
                    session.id
                ),
            ),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Reply {
        let session = match self.live(id) {
            Ok(session) => session,
            Err(reply) => return reply,
        };
        self.note_sessions_changed(); // stopping
        stop_session(&session, grace).await;
        (Response::Session { session: session.info() }, Vec::new())
    }

    async fn stop_all(&self, grace: Duration) {
        let live: Vec<Arc<Session>> = lock(&self.sessions).values().filter(|s| !s.is_finished()).cloned().collect();
        // All at once: N stubborn sessions cost one grace period, not N.
        let mut stops = tokio::task::JoinSet::new();
        for session in live {
            stops.spawn(async move { stop_session(&session, grace).await });
        }
        while stops.join_next().await.is_some() {}
    }

    /// Serve `attach` / `logs`: answer `Streaming`, then data frames, then `eof`; and
    /// `watch_sessions`.
    pub async fn open_stream(self: Arc<Self>, request: Request, id: u64, stream: u32, tx: mpsc::Sender<Frame>) {
        let (session_id, from, follow, size, attach) = match request {
            Request::Attach { session, from, cols, rows } => (session, from, true, cols.zip(rows), true),
            Request::Logs { session, follow } => (session, Some(0), follow, None, false),
            Request::WatchSessions { limit } => return self.watch_sessions(limit, id, stream, &tx).await,
            _ => return,
        };
        // Attach needs a running session; logs are served from the log once it has ended.
        let found = if attach {
            self.live(&session_id).map(|session| (session.info(), Source::Live(session)))
        } else {
            self.resolve(Some(&session_id)).map(|info| {
                let source = match lock(&self.sessions).get(&info.id) {
                    Some(session) => Source::Live(session.clone()),
                    None => Source::Log { path: self.state.session_log(&info.id) },
                };
                (info, source)
            })
        };
        let (info, source) = match found {
            Ok(found) => found,
            Err((response, payload)) => {
                let _ = tx.send(cmd_frame(id, &response, payload)).await;
                return;
            }
        };
        if let (Source::Live(session), Some((cols, rows))) = (&source, size) {
            let _ = session.resize(cols, rows);
        }
        let from = match (&source, from) {
            (_, Some(from)) => from,
            (Source::Live(session), None) => session.ring_oldest(),
            (Source::Log { .. }, None) => 0,
        };
        let streaming = Response::Streaming { session: info, stream, from };
        if tx.send(cmd_frame(id, &streaming, Vec::new())).await.is_err() {
            return;
        }
        let end = match source {
            Source::Live(session) => stream_live(&session, stream, from, follow, &tx).await,
            Source::Log { path } => stream_log(&path, stream, from, &tx).await,
        };
        if let Ok(end) = end {
            let _ = tx.send(Frame::bare(Header::Control(Control::Eof { stream, end }))).await;
        }
    }
}

impl Daemon {
    fn note_sessions_changed(&self) {
        self.sessions_changed.send_modify(|n| *n += 1);
    }

    /// The session list now and whenever it changes (see `Request::WatchSessions`). Output
    /// counts alone do not make a change: a busy session would flood the watcher.
    async fn watch_sessions(&self, limit: Option<usize>, id: u64, stream: u32, tx: &mpsc::Sender<Frame>) {
        let mut changes = self.sessions_changed.subscribe();
        if tx.send(cmd_frame(id, &Response::Watching { stream }, Vec::new())).await.is_err() {
            return;
        }
        let mut recheck = tokio::time::interval(WATCH_RECHECK);
        let (mut seq, mut last) = (0u64, None);
        loop {
            let (Response::Sessions { sessions }, _) = self.list(&[], None, Some(limit.unwrap_or(WATCH_LIMIT))) else {
                return;
            };
            let shape: Vec<_> = sessions
                .iter()
                .map(|s| (s.id.clone(), s.status, s.waiting_for_input, s.exit_code, s.title.clone()))
                .collect();
            if last.as_ref() != Some(&shape) {
                let mut line = serde_json::to_vec(&sessions).unwrap_or_default();
                line.push(b'\n');
                let len = line.len() as u64;
                if tx.send(Frame::new(Header::Data { stream, seq }, line)).await.is_err() {
                    return;
                }
                seq += len;
                last = Some(shape);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = recheck.tick() => {}
            }
        }
    }
}

/// SIGTERM to the process group; SIGKILL if it is still there after `grace`.
async fn stop_session(session: &Session, grace: Duration) {
    let mut finished = session.subscribe_finished();
    session.set_status(SessionStatus::Stopping);
    session.signal(libc::SIGTERM);
    if tokio::time::timeout(grace, finished.wait_for(|done| *done)).await.is_err() {
        session.signal(libc::SIGKILL);
        let _ = tokio::time::timeout(KILL_WAIT, finished.wait_for(|done| *done)).await;
    }
}

/// Follow a live session from `from`; with `follow` false, stop at the current end.
/// Returns the end sequence number reached.
async fn stream_live(
    session: &Session,
    stream: u32,
    from: u64,
    follow: bool,
    tx: &mpsc::Sender<Frame>,
) -> Result<u64, ()> {
    let mut end_rx = session.subscribe_end();
    let mut finished = session.subscribe_finished();
    let mut cursor = from;
    loop {
        let done = *finished.borrow_and_update();
        let end = *end_rx.borrow_and_update();
        while cursor < end {
            let chunk = session.read_from(cursor, STREAM_CHUNK_BYTES).map_err(|_| ())?;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len() as u64;
            tx.send(Frame::new(Header::Data { stream, seq: cursor }, chunk)).await.map_err(|_| ())?;
            cursor += len;
        }
        if done || !follow {
            return Ok(cursor);
        }
        tokio::select! {
            changed = end_rx.changed() => changed.map_err(|_| ())?,
            changed = finished.changed() => changed.map_err(|_| ())?,
        }
    }
}

/// Send a finished session's log from `from`.
async fn stream_log(path: &std::path::Path, stream: u32, from: u64, tx: &mpsc::Sender<Frame>) -> Result<u64, ()> {
    use std::os::unix::fs::FileExt;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(_) => return Ok(0), // no output was ever written
    };
    let mut cursor = from;
    let mut buf = vec![0u8; STREAM_CHUNK_BYTES];
    loop {
        let n = file.read_at(&mut buf, cursor).map_err(|_| ())?;
        if n == 0 {
            return Ok(cursor);
        }
        tx.send(Frame::new(Header::Data { stream, seq: cursor }, buf[..n].to_vec())).await.map_err(|_| ())?;
        cursor += n as u64;
    }
}
