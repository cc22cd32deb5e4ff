//! The sessions this agent owns: starting them, finding them by id or prefix, listing, waiting
//! for a prompt, stopping. Live sessions are in memory; every session, live or ended, is in the
//! store, so finished ones stay listed with their exit codes across restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tether_protocol::api::{error_answer, Answer, ErrorCode, Response, SessionInfo, SessionStatus};
use tether_protocol::sync::lock;
use tokio::sync::watch;

use crate::host::config::Config;
use crate::host::session::notify::Notifier;
use crate::host::session::prompt::PromptDetector;
use crate::host::session::{InputRefused, Session, Spawn, Written};
use crate::host::store::Store;
use crate::paths::StateDir;
use crate::random::random_bytes;
use crate::time::now_ms;

/// After SIGKILL, how long to wait for the process to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Characters in a session id (from a 36-letter alphabet: 2 billion ids).
const ID_LEN: usize = 6;
/// Tries at a random id before giving up (a collision is already one in 2 billion).
const ID_TRIES: usize = 16;

pub struct Sessions {
    state: StateDir,
    config: Config,
    store: Arc<Mutex<Store>>,
    live: Mutex<HashMap<String, Arc<Session>>>,
    /// Held from the `max_running_sessions` check until the new session is counted, so two
    /// starts at once cannot both pass the check.
    starting: Mutex<()>,
    prompts: PromptDetector,
    notifier: Notifier,
    /// Bumped when a session starts, ends, or starts waiting for input.
    changed: watch::Sender<u64>,
    me: Weak<Sessions>,
}

/// What a session's output is read from: a live session, or the log of a finished one.
pub enum Source {
    Live(Arc<Session>),
    Log { path: std::path::PathBuf },
}

impl Sessions {
    pub fn new(state: StateDir, config: Config, store: Arc<Mutex<Store>>) -> Arc<Sessions> {
        let prompts = PromptDetector::new(&config.prompt_patterns).unwrap_or_else(|e| {
            eprintln!("tether daemon: {e}; using the built-in prompt patterns only");
            PromptDetector::new(&[]).unwrap_or_else(|_| unreachable!("built-in patterns compile"))
        });
        Arc::new_cyclic(|me| Sessions {
            notifier: Notifier::new(config.notify_hook.clone(), config.desktop_notifications),
            prompts,
            state,
            config,
            store,
            live: Mutex::new(HashMap::new()),
            starting: Mutex::new(()),
            changed: watch::Sender::new(0),
            me: me.clone(),
        })
    }

    /// Start `command` (the login shell when empty, as ssh would). `notify: None` follows the
    /// configured default. `via`: the remote credential that asked (`origin::VIA_ENV`).
    pub fn start(
        &self,
        command: Vec<String>,
        title: Option<String>,
        cwd: Option<String>,
        size: (u16, u16),
        notify: Option<bool>,
        via: Option<&str>,
    ) -> Answer {
        let notify = notify.unwrap_or(self.config.notify_by_default);
        let command = if command.is_empty() {
            vec![std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())]
        } else {
            command
        };
        let _starting = lock(&self.starting);
        let running = self.running();
        if running >= self.config.max_running_sessions {
            return error_answer(
                ErrorCode::LimitReached,
                format!(
                    "{running} sessions are running, the limit (max_running_sessions in {})",
                    self.state.config().display()
                ),
            );
        }
        let id = match self.new_id() {
            Ok(id) => id,
            Err(e) => return error_answer(ErrorCode::Internal, e),
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
            now: now_ms(),
            notify,
            via: via.map(str::to_owned),
        };
        let me = self.me.clone();
        let spawned = Session::spawn(spec, move |session| {
            if let Some(sessions) = me.upgrade() {
                sessions.on_exit(session);
            }
        });
        match spawned {
            Ok(session) => {
                let info = session.info();
                if let Err(e) = lock(&self.store).insert(&info) {
                    eprintln!("tether daemon: {e}");
                }
                lock(&self.live).insert(id, session.clone());
                if let Some(sessions) = self.me.upgrade() {
                    tokio::spawn(sessions.watch_prompts(session));
                }
                self.note_changed();
                (Response::Session { session: info }, Vec::new())
            }
            Err(message) => {
                // Remember the failure too: `ls` shows what was tried and why it did not run.
                let now = now_ms();
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
                error_answer(ErrorCode::BadRequest, message)
            }
        }
    }

    /// How many sessions are running now.
    pub fn running(&self) -> usize {
        lock(&self.live).values().filter(|s| !s.is_finished()).count()
    }

    /// How many sessions the store knows, live or ended.
    pub fn total(&self) -> usize {
        lock(&self.store).list().map(|l| l.len()).unwrap_or(0)
    }

    /// A watch bumped whenever the session list changes in a way a list view shows.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn note_changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn new_id(&self) -> Result<String, String> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for _ in 0..ID_TRIES {
            let mut bytes = [0u8; ID_LEN];
            random_bytes(&mut bytes)?;
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
        lock(&self.live).remove(&session.id);
        self.note_changed();
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
                    self.note_changed();
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
    pub fn resolve(&self, id: Option<&str>) -> Result<SessionInfo, Answer> {
        let internal = |e: String| error_answer(ErrorCode::Internal, e);
        let Some(id) = id else {
            let newest = lock(&self.store).newest().map_err(internal)?;
            return newest.map(|s| self.current(s)).ok_or_else(|| {
                error_answer(ErrorCode::UnknownSession, "there are no sessions yet: tether start -- CMD")
            });
        };
        let store = lock(&self.store);
        if let Some(info) = store.get(id).map_err(internal)? {
            drop(store);
            return Ok(self.current(info));
        }
        let matches = store.ids_with_prefix(id, 2).map_err(internal)?;
        match matches.as_slice() {
            [] => Err(error_answer(ErrorCode::UnknownSession, format!("no session {id:?}: see `tether ls`"))),
            [only] => {
                let info = store.get(only).map_err(internal)?;
                drop(store);
                info.map(|i| self.current(i))
                    .ok_or_else(|| error_answer(ErrorCode::UnknownSession, format!("no session {id:?}")))
            }
            _ => Err(error_answer(
                ErrorCode::AmbiguousSession,
                format!("{id:?} matches several sessions: give more of the id"),
            )),
        }
    }

    /// The full id `reference` (an id or unique prefix) names: from memory when it is a live
    /// session's full id (every keystroke comes this way), else from the store.
    pub fn full_id(&self, reference: &str) -> Result<String, Answer> {
        if lock(&self.live).contains_key(reference) {
            return Ok(reference.to_owned());
        }
        self.resolve(Some(reference)).map(|info| info.id)
    }

    /// Live info for a running session, stored info otherwise.
    fn current(&self, stored: SessionInfo) -> SessionInfo {
        lock(&self.live).get(&stored.id).map_or(stored, |s| s.info())
    }

    /// The running session `id` names. A full id is found in memory (every keystroke comes
    /// this way); only a prefix or an ended session needs the store.
    pub fn live(&self, id: &str) -> Result<Arc<Session>, Answer> {
        if let Some(session) = lock(&self.live).get(id).filter(|s| !s.is_finished()) {
            return Ok(session.clone());
        }
        let info = self.resolve(Some(id))?;
        match lock(&self.live).get(&info.id) {
            Some(session) if !session.is_finished() => Ok(session.clone()),
            _ => Err(error_answer(
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

    /// Do `action` to the running session `id`; what it returned, or the error as an answer.
    /// `tether notify on|off ID`: kept, and followed from now on.
    pub fn set_notify(&self, id: &str, on: bool) -> Answer {
        let session = match self.live(id) {
            Ok(session) => session,
            Err(answer) => return answer,
        };
        session.set_notify(on);
        let info = session.info();
        if let Err(e) = lock(&self.store).update(&info) {
            return error_answer(ErrorCode::Internal, e);
        }
        self.note_changed();
        (Response::Session { session: info }, Vec::new())
    }

    /// Where pushes go from now on (the daemon's, once it is up).
    pub fn push_with(&self, pusher: std::sync::Arc<crate::host::push::Pusher>) {
        self.notifier.push_with(pusher);
    }

    /// Raw input to a live session (`Session::write_input`), refused with the reason's code:
    /// `LimitReached` while the program leaves its backlog unread, `NotRunning` once it ended.
    pub fn write_input(&self, id: &str, bytes: &[u8]) -> Result<Written, Answer> {
        self.live(id)?.write_input(bytes).map_err(|refused| {
            let code = match refused {
                InputRefused::Backlog { .. } => ErrorCode::LimitReached,
                InputRefused::Ended => ErrorCode::NotRunning,
            };
            error_answer(code, refused.to_string())
        })
    }

    pub fn with_live<T>(&self, id: &str, action: impl FnOnce(&Session) -> Result<T, String>) -> Result<T, Answer> {
        let session = self.live(id)?;
        action(&session).map_err(|e| error_answer(ErrorCode::Internal, e))
    }

    /// Where `id`'s output is read from: the live session, or the log once it has ended.
    pub fn source(&self, id: &str) -> Result<(SessionInfo, Source), Answer> {
        let info = self.resolve(Some(id))?;
        let source = match lock(&self.live).get(&info.id) {
            Some(session) => Source::Live(session.clone()),
            None => Source::Log { path: self.state.session_log(&info.id) },
        };
        Ok((info, source))
    }

    /// Sessions newest first, filtered by status and a case-insensitive search of id, title and
    /// command.
    pub fn list(&self, statuses: &[SessionStatus], search: Option<&str>, limit: Option<usize>) -> Answer {
        let stored = match lock(&self.store).list() {
            Ok(list) => list,
            Err(e) => return error_answer(ErrorCode::Internal, e),
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

    pub async fn wait_for_prompt(&self, id: &str, timeout: Duration) -> Answer {
        let session = match self.live(id) {
            Ok(session) => session,
            Err(answer) => return answer,
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
        match tokio::time::timeout(timeout, wait).await {
            Ok(true) => (Response::Session { session: session.info() }, Vec::new()),
            Ok(false) => error_answer(ErrorCode::NotRunning, format!("session {} ended without a prompt", session.id)),
            Err(_) => error_answer(
                ErrorCode::TimedOut,
                format!(
                    "timed out after {:.1}s: session {} is not waiting for input",
                    timeout.as_secs_f64(),
                    session.id
                ),
            ),
        }
    }

    pub async fn stop(&self, id: &str, grace: Duration) -> Answer {
        let session = match self.live(id) {
            Ok(session) => session,
            Err(answer) => return answer,
        };
        self.note_changed(); // stopping
        stop_session(&session, grace).await;
        (Response::Session { session: session.info() }, Vec::new())
    }

    /// Stop every running session.
    pub async fn stop_all(&self, grace: Duration) {
        let live: Vec<Arc<Session>> = lock(&self.live).values().filter(|s| !s.is_finished()).cloned().collect();
        stop_together(live, grace).await;
    }

    /// Stop those of `ids` that still run (an ephemeral invite's, when it ends).
    pub async fn stop_ids(&self, ids: &[String], grace: Duration) {
        let live: Vec<Arc<Session>> = ids.iter().filter_map(|id| self.live(id).ok()).collect();
        stop_together(live, grace).await;
    }
}

/// All at once: N stubborn sessions cost one grace period, not N.
async fn stop_together(sessions: Vec<Arc<Session>>, grace: Duration) {
    let mut stops = tokio::task::JoinSet::new();
    for session in sessions {
        stops.spawn(async move { stop_session(&session, grace).await });
    }
    while stops.join_next().await.is_some() {}
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
