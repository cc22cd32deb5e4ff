//! `tether daemon`: start the agent and answer clients on the Unix socket.
//!
//! One daemon per state dir (an exclusive `flock` on `daemon.lock`). Clients are trusted only if
//! they run as the same user (`SO_PEERCRED`), and the socket is mode 0600 besides. A client
//! process that a remote client started (`origin`) asks as that client's credential: a guest's
//! shell is still the guest. Each client
//! connection gets a reader loop and a writer task; each request runs in its own task so a slow
//! one (`stop`, `logs --wait-for-prompt`) never holds up the others; each output stream is a task
//! that follows its session (see `streams`).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_protocol::api::{error_answer, ErrorCode, Request, Response};
use tether_protocol::cmd::cmd_parts;
use tether_protocol::frame::Header;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::host::config::Config;
use crate::host::daemon::Daemon;
use crate::host::files::{FileService, FilesConfig};
use crate::host::identity::HostIdentity;
use crate::host::service::{InOrder, StreamItem};
use crate::host::sessions::Sessions;
use crate::host::store::{Store, RELAY_SETTING};
use crate::host::{dispatch, origin, sharing};
use crate::ipc::{write_frame, FrameReader};
use crate::paths::StateDir;
use crate::time::now_ms;

/// Frames queued per client connection before output streaming waits for the socket.
const CLIENT_QUEUE_FRAMES: usize = 64;
/// Grace for sessions when the daemon is told to stop by a signal.
const SIGNAL_STOP_GRACE: Duration = Duration::from_secs(2);

/// Run the daemon until `daemon stop`, SIGTERM or SIGINT.
pub async fn run(state: StateDir, config: Config) -> Result<(), String> {
    state.create()?;
    survive_file_size_limits();
    let _lock = match acquire_lock(&state)? {
        Some(lock) => lock,
        None => {
            eprintln!("tether daemon: already running for {}", state.root().display());
            return Ok(());
        }
    };
    let store = Store::open(&state.database())?;
    let orphans = store.mark_orphans(now_ms())?;
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
    let store = Arc::new(Mutex::new(store));
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_else(|| "/".into());
    let files_config = FilesConfig { enabled: config.files, root: config.files_root.clone() }
        .with_stored(&tether_protocol::sync::lock(&store))?;
    let files = FileService::new(&files_config, home, state.root())?;
    let sessions = Sessions::new(state.clone(), config, store.clone());
    let daemon = Daemon::new(state.clone(), host, store, sessions, files)?;
    eprintln!("tether daemon {} listening on {}", env!("CARGO_PKG_VERSION"), socket.display());
    tokio::spawn(sweep_uploads(daemon.clone()));
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
                Ok((stream, _)) => { tokio::spawn(serve(daemon.clone(), stream)); }
                Err(e) => eprintln!("tether daemon: accept failed: {e}"),
            },
            _ = daemon.shutdown.notified() => break,
            _ = terminate.recv() => { daemon.sessions.stop_all(SIGNAL_STOP_GRACE).await; break }
            _ = interrupt.recv() => { daemon.sessions.stop_all(SIGNAL_STOP_GRACE).await; break }
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(state.root().join("daemon.pid"));
    eprintln!("tether daemon: stopped");
    Ok(())
}

/// A log that reaches a file-size limit (`ulimit -f`) must fail its write — the session then
/// says which output it could not keep — not kill the agent and every session with it. A
/// handler (not `SIG_IGN`, which programs would inherit) turns SIGXFSZ into EFBIG for us alone:
/// handlers go back to the default in every program we start.
fn survive_file_size_limits() {
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: installs an async-signal-safe handler that does nothing; the sigaction struct is
    // zeroed (empty mask, no flags) and ours.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as *const () as usize;
        libc::sigaction(libc::SIGXFSZ, &action, std::ptr::null_mut());
    }
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

/// How often abandoned uploads' temporary files are looked for.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);

async fn sweep_uploads(daemon: Arc<Daemon>) {
    loop {
        tokio::time::sleep(UPLOAD_SWEEP_INTERVAL).await;
        let daemon = daemon.clone();
        let _ = tokio::task::spawn_blocking(move || daemon.files.sweep()).await;
    }
}

/// One client connection on the socket.
async fn serve(daemon: Arc<Daemon>, stream: UnixStream) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let caller = match stream.peer_cred() {
        Ok(cred) if cred.uid() == me => cred.pid(),
        _ => return, // another user (or unknown): say nothing, just close
    };
    // A process a remote client started (a guest's shell running `tether pair`) asks as that
    // client's credential, not as the host's user.
    let caller = caller.and_then(|pid| u32::try_from(pid).ok());
    let owner = match caller {
        Some(pid) => tokio::task::spawn_blocking(move || origin::caller_identity(pid)).await.ok().flatten(),
        None => None,
    };
    let owner: Arc<str> = owner.as_deref().unwrap_or(dispatch::LOCAL_USER).into();
    let (read_half, mut write_half) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<StreamItem>(CLIENT_QUEUE_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            if write_frame(&mut write_half, &item.into_frame()).await.is_err() {
                break;
            }
        }
    });
    let mut reader = FrameReader::new(read_half);
    let mut streams: HashMap<u32, AbortHandle> = HashMap::new();
    while let Ok(Some(frame)) = reader.next().await {
        let Header::Cmd { id, body, body_bytes } = frame.header else {
            continue;
        };
        let parsed =
            cmd_parts(body, body_bytes, frame.payload).map_err(|e| e.to_string()).and_then(|(body, payload)| {
                Ok((serde_json::from_value::<Request>(body).map_err(|e| e.to_string())?, payload))
            });
        let (request, payload) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                let _ = tx
                    .send(StreamItem::Answer {
                        id,
                        answer: error_answer(ErrorCode::BadRequest, format!("bad request: {e}")),
                    })
                    .await;
                continue;
            }
        };
        if let Some(answer) = dispatch::refuse_to_guest(&daemon, &owner, &request) {
            let _ = tx.send(StreamItem::Answer { id, answer }).await;
            continue;
        }
        match request {
            Request::Detach { stream } => {
                if let Some(task) = streams.remove(&stream) {
                    task.abort();
                }
                let _ = tx.send(StreamItem::answer(id, Response::Ok)).await;
            }
            request if request.opens_stream() => {
                // The stream id is the request id: the client registered it before asking.
                let stream = id as u32;
                let (daemon, tx, owner) = (daemon.clone(), tx.clone(), owner.clone());
                let task =
                    tokio::spawn(async move { dispatch::open_stream(&daemon, &owner, request, id, stream, tx).await });
                streams.insert(stream, task.abort_handle());
            }
            Request::Share { relay, name, idle_timeout_ms, grant } => {
                // Aborted when this connection closes, which ends the share.
                let idle = Duration::from_millis(idle_timeout_ms);
                let task =
                    tokio::spawn(sharing::share(daemon.clone(), relay, name, idle, grant, id, id as u32, tx.clone()));
                streams.insert(id as u32, task.abort_handle());
            }
            request => match dispatch::handle_in_order(&daemon, &owner, &request, &payload) {
                Some(InOrder::Now(answer)) => {
                    let _ = tx.send(StreamItem::Answer { id, answer }).await;
                }
                Some(InOrder::Later(answer)) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(StreamItem::Answer { id, answer: answer.await }).await;
                    });
                }
                None => {
                    let (daemon, tx, owner) = (daemon.clone(), tx.clone(), owner.clone());
                    tokio::spawn(async move {
                        let answer = dispatch::handle(&daemon, &owner, request, payload).await;
                        let _ = tx.send(StreamItem::Answer { id, answer }).await;
                    });
                }
            },
        }
        streams.retain(|_, task| !task.is_finished());
    }
    for task in streams.values() {
        task.abort();
    }
    drop(tx);
    let _ = writer.await;
}
