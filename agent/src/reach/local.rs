//! The client end of the Unix socket: requests with answers, and output streams.
//!
//! A reader task routes each incoming frame: `cmd` answers to the waiting request by id, `data`
//! and `eof` frames to their stream's channel (see `reach` for the stream rules).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_protocol::api::{ErrorCode, Request, Response};
use tether_protocol::cmd::{cmd_frame, cmd_parts, MAX_CMD_FRAME_BYTES};
use tether_protocol::frame::{Control, Frame, Header};
use tether_protocol::stream::next_request_id;
use tether_protocol::sync::lock;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::ipc::{write_frame, FrameReader};
use crate::paths::StateDir;
use crate::reach::stream::{lost, stream_channel, Lost, OutputEvent};
use tether_protocol::api::Answer;

/// How long a client waits for a daemon it started to come up.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued toward the daemon before a sender waits.
const OUTGOING_QUEUE_FRAMES: usize = 64;
/// How often a client that started the daemon looks whether its socket is up.
const DAEMON_START_POLL: Duration = Duration::from_millis(20);

/// Requests waiting for their answer, by request id.
type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;
type Streams = Arc<Mutex<HashMap<u32, mpsc::Sender<OutputEvent>>>>;

/// A connection to this machine's daemon.
pub struct LocalClient {
    tx: mpsc::Sender<Frame>,
    waiters: Waiters,
    streams: Streams,
    next_id: AtomicU64,
}

impl LocalClient {
    /// Whether the daemon's socket has gone.
    pub fn link_lost(&self) -> bool {
        self.tx.is_closed()
    }

    /// Connect to the daemon, starting it first if `autostart` and none is running.
    pub async fn connect(state: &StateDir, autostart: bool) -> Result<LocalClient, String> {
        let socket = state.socket();
        let stream = match UnixStream::connect(&socket).await {
            Ok(stream) => stream,
            Err(_) if autostart => {
                spawn_daemon(state, &[])?;
                wait_for_socket(state).await?
            }
            Err(_) => return Err(format!("the tether daemon is not running (no {})", socket.display())),
        };
        Ok(LocalClient::over(stream))
    }

    fn over(stream: UnixStream) -> LocalClient {
        let (read_half, mut write_half) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Frame>(OUTGOING_QUEUE_FRAMES);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if write_frame(&mut write_half, &frame).await.is_err() {
                    break;
                }
            }
        });
        let waiters: Waiters = Arc::default();
        let streams: Streams = Arc::default();
        let (waiters_r, streams_r) = (waiters.clone(), streams.clone());
        tokio::spawn(async move {
            let mut reader = FrameReader::new(read_half);
            while let Ok(Some(frame)) = reader.next().await {
                route(frame, &waiters_r, &streams_r).await;
            }
            // Daemon gone: wake every waiter (their senders drop) and end every stream.
            lock(&waiters_r).clear();
            lock(&streams_r).clear();
        });
        LocalClient { tx, waiters, streams, next_id: AtomicU64::new(1) }
    }

    /// A fresh request id (one that may also name a stream).
    fn id(&self) -> u64 {
        next_request_id(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Send a request and wait for its answer; an error response becomes `Err(message)`.
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<Answer, String> {
        self.call_with_id(self.id(), request, payload).await
    }

    /// Room for one more frame toward the daemon, for a caller that must not wait on a full
    /// queue while it has other work (see `cli::attach`).
    pub async fn reserve(&self) -> Result<LocalPermit<'_>, String> {
        let permit = self.tx.reserve().await.map_err(|_| lost(Lost::Daemon))?;
        Ok(LocalPermit { client: self, permit })
    }

    /// Send without waiting for the answer (keystrokes while attached).
    pub async fn send(&self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        let frame = request_frame(self.id(), request, payload)?;
        self.tx.send(frame).await.map_err(|_| lost(Lost::Daemon))
    }

    /// A request whose answer is followed by a stream of events on stream = its id.
    pub async fn open_with_answer(&self, request: &Request) -> Result<(Response, mpsc::Receiver<OutputEvent>), String> {
        let id = self.id();
        let (events_tx, events) = stream_channel();
        lock(&self.streams).insert(id as u32, events_tx);
        match self.call_with_id(id, request, Vec::new()).await {
            Ok((response, _)) => Ok((response, events)),
            Err(e) => {
                lock(&self.streams).remove(&(id as u32));
                Err(e)
            }
        }
    }

    async fn call_with_id(&self, id: u64, request: &Request, payload: Vec<u8>) -> Result<Answer, String> {
        match self.ask(id, request, payload).await? {
            (Response::Error { message, .. }, _) => Err(message),
            reply => Ok(reply),
        }
    }

    /// A request's answer, an error response included; `Err` only when it cannot be sent or
    /// the daemon has gone.
    async fn ask(&self, id: u64, request: &Request, payload: Vec<u8>) -> Result<Answer, String> {
        let frame = request_frame(id, request, payload)?;
        let (done, wait) = oneshot::channel();
        lock(&self.waiters).insert(id, done);
        self.tx.send(frame).await.map_err(|_| lost(Lost::Daemon))?;
        wait.await.map_err(|_| lost(Lost::Daemon))
    }

    /// Queue typed `bytes` in `session`'s input (`Ok` once they are, not once they are read):
    /// while its backlog is full — a paste into a program that reads late, or another client's
    /// input — wait until what is queued was taken, then queue them. Nothing typed is dropped.
    /// `Err` if the session cannot take them at all (it ended).
    pub async fn queue_input(&self, session: &str, bytes: Vec<u8>) -> Result<(), String> {
        let write = Request::Write { session: session.to_owned(), paced: false };
        loop {
            match self.ask(self.id(), &write, bytes.clone()).await? {
                (Response::Error { code: ErrorCode::LimitReached, .. }, _) => self.input_taken(session).await?,
                (Response::Error { message, .. }, _) => return Err(message),
                _ => return Ok(()),
            }
        }
    }

    /// Wait until the program has taken every byte queued in `session`'s input so far, however
    /// long that is (a typist sends no more meanwhile: the way `attach -H`'s stream credit
    /// paces it through a relay).
    pub async fn input_taken(&self, session: &str) -> Result<(), String> {
        // An empty paced write is answered once all queued before it was written, or after the
        // daemon's wait for a program that is not reading: then wait again.
        let write = Request::Write { session: session.to_owned(), paced: true };
        loop {
            match self.ask(self.id(), &write, Vec::new()).await? {
                (Response::Error { code: ErrorCode::TimedOut, .. }, _) => continue,
                (Response::Error { message, .. }, _) => return Err(message),
                _ => return Ok(()),
            }
        }
    }
}

/// A reserved place in the queue toward the daemon.
pub struct LocalPermit<'a> {
    client: &'a LocalClient,
    permit: mpsc::Permit<'a, Frame>,
}

impl<'a> LocalPermit<'a> {
    /// The client this room is on (for a caller that sends in another way after all).
    pub fn client(&self) -> &'a LocalClient {
        self.client
    }

    /// Send without waiting for the answer; never blocks.
    pub fn send(self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        self.permit.send(request_frame(self.client.id(), request, payload)?);
        Ok(())
    }
}

/// A request as a frame, refused at once if no transport could carry it (rather than breaking
/// the connection on the way).
fn request_frame(id: u64, request: &Request, payload: Vec<u8>) -> Result<Frame, String> {
    let frame = cmd_frame(id, request, payload);
    match frame.encode().map(|bytes| bytes.len()) {
        Ok(len) if len <= MAX_CMD_FRAME_BYTES => Ok(frame),
        Ok(len) => Err(format!("the request is {} KiB, over the {} KiB limit", len >> 10, MAX_CMD_FRAME_BYTES >> 10)),
        Err(e) => Err(format!("the request cannot be sent: {e}")),
    }
}

async fn route(frame: Frame, waiters: &Waiters, streams: &Streams) {
    match frame.header {
        Header::Cmd { id, body, body_bytes } => {
            let parsed =
                cmd_parts(body, body_bytes, frame.payload).map_err(|e| e.to_string()).and_then(|(body, payload)| {
                    Ok((serde_json::from_value::<Response>(body).map_err(|e| e.to_string())?, payload))
                });
            let answer = parsed.unwrap_or_else(|e| {
                let message = format!("unreadable answer from the daemon: {e}");
                (Response::Error { code: tether_protocol::api::ErrorCode::Internal, message }, Vec::new())
            });
            if let Some(waiter) = lock(waiters).remove(&id) {
                let _ = waiter.send(answer);
            }
        }
        Header::Data { stream, .. } => {
            let sender = lock(streams).get(&stream).cloned();
            if let Some(sender) = sender {
                let _ = sender.send(OutputEvent::Data { bytes: frame.payload }).await;
            }
        }
        Header::Control(Control::Skip { stream, from, to }) => {
            let sender = lock(streams).get(&stream).cloned();
            if let Some(sender) = sender {
                let _ = sender.send(OutputEvent::Skipped { from, to }).await;
            }
        }
        Header::Control(Control::Eof { stream, .. }) => {
            let sender = lock(streams).remove(&stream);
            if let Some(sender) = sender {
                let _ = sender.send(OutputEvent::Eof).await;
            }
        }
        _ => {}
    }
}

/// Start `tether daemon ARGS` in the background, in its own session, logging to daemon.log.
pub fn spawn_daemon(state: &StateDir, args: &[String]) -> Result<(), String> {
    state.create()?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the tether binary: {e}"))?;
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(state.daemon_log())
        .map_err(|e| format!("cannot open {}: {e}", state.daemon_log().display()))?;
    let mut command = Command::new(exe);
    // From `/`: a long-lived daemon must not keep the caller's directory busy (umount, rmdir).
    command
        .arg("daemon")
        .args(args)
        .env("TETHER_STATE_DIR", state.root())
        // (Started from a guest's shell, the daemon is still the host's, and so are its sessions.)
        .env_remove(crate::host::origin::VIA_ENV)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal and group.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    command.spawn().map_err(|e| format!("cannot start the daemon: {e}"))?;
    Ok(())
}

/// Wait for a starting daemon's socket to accept connections.
pub async fn wait_for_socket(state: &StateDir) -> Result<UnixStream, String> {
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    loop {
        if let Ok(stream) = UnixStream::connect(state.socket()).await {
            return Ok(stream);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the daemon did not start within {}s; see {}",
                DAEMON_START_TIMEOUT.as_secs(),
                state.daemon_log().display()
            ));
        }
        tokio::time::sleep(DAEMON_START_POLL).await;
    }
}
