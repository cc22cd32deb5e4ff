//! The client end of the Unix socket: requests with responses, and output streams.
//!
//! A reader task routes each incoming frame: `cmd` responses to the waiting request by id, `data`
//! and `eof` frames to their stream's channel. A stream's id is the id of the request that opened
//! it, registered *before* the request is sent, so no early frame can miss its channel. Stream
//! channels are bounded: a client that cannot write its output fast enough stops reading the
//! socket, and the agent's stream task waits (the session itself never does).

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_protocol::api::{Request, Response, SessionInfo};
use tether_protocol::frame::{Control, Frame, Header};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::ipc::{cmd_frame, write_frame, FrameReader};
use crate::paths::StateDir;

/// How long a client waits for a daemon it started to come up.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Output frames buffered per stream in the client.
const STREAM_QUEUE_FRAMES: usize = 16;

/// Something that happened on an output stream.
#[derive(Debug)]
pub enum StreamEvent {
    Data { bytes: Vec<u8> },
    Eof,
}

/// An output stream: its session, id, and events.
pub struct OpenStream {
    pub session: SessionInfo,
    pub stream: u32,
    pub events: mpsc::Receiver<StreamEvent>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<(Response, Vec<u8>)>>>>;
type Streams = Arc<Mutex<HashMap<u32, mpsc::Sender<StreamEvent>>>>;

pub struct Client {
    tx: mpsc::Sender<Frame>,
    pending: Pending,
    streams: Streams,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    /// Connect to the daemon, starting it first if `autostart` and none is running.
    pub async fn connect(state: &StateDir, autostart: bool) -> Result<Client, String> {
        let socket = state.socket();
        let stream = match UnixStream::connect(&socket).await {
            Ok(stream) => stream,
            Err(_) if autostart => {
                spawn_daemon(state, &[])?;
                wait_for_socket(state).await?
            }
            Err(_) => return Err(format!("the tether daemon is not running (no {})", socket.display())),
        };
        Ok(Client::over(stream))
    }

    fn over(stream: UnixStream) -> Client {
        let (read_half, mut write_half) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Frame>(64);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if write_frame(&mut write_half, &frame).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let streams: Streams = Arc::default();
        let (pending_r, streams_r) = (pending.clone(), streams.clone());
        tokio::spawn(async move {
            let mut reader = FrameReader::new(read_half);
            while let Ok(Some(frame)) = reader.next().await {
                route(frame, &pending_r, &streams_r).await;
            }
            // Daemon gone: wake every waiter (their senders drop) and end every stream.
            lock(&pending_r).clear();
            lock(&streams_r).clear();
        });
        Client { tx, pending, streams, next_id: AtomicU64::new(1) }
    }

    fn id(&self) -> u64 {
        // Stream ids are request ids and must fit the u32 stream field.
        self.next_id.fetch_add(1, Ordering::Relaxed) % u64::from(u32::MAX)
    }

    /// Send a request and wait for its response; an error response becomes `Err(message)`.
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        self.call_with_id(self.id(), request, payload).await
    }

    /// Send without waiting for the answer (keystrokes while attached).
    pub async fn send(&self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        self.tx.send(cmd_frame(self.id(), request, payload)).await.map_err(|_| lost())
    }

    /// Open an output stream (`attach`, `logs`).
    pub async fn open_stream(&self, request: &Request) -> Result<OpenStream, String> {
        match self.open_with_answer(request).await? {
            (Response::Streaming { session, stream, .. }, events) => Ok(OpenStream { session, stream, events }),
            (other, _) => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// A request whose answer is followed by a stream of events on stream = its id.
    pub async fn open_with_answer(&self, request: &Request) -> Result<(Response, mpsc::Receiver<StreamEvent>), String> {
        let id = self.id();
        let (events_tx, events) = mpsc::channel(STREAM_QUEUE_FRAMES);
        lock(&self.streams).insert(id as u32, events_tx);
        match self.call_with_id(id, request, Vec::new()).await {
            Ok((response, _)) => Ok((response, events)),
            Err(e) => {
                lock(&self.streams).remove(&(id as u32));
                Err(e)
            }
        }
    }

    async fn call_with_id(&self, id: u64, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        let (done, wait) = oneshot::channel();
        lock(&self.pending).insert(id, done);
        self.tx.send(cmd_frame(id, request, payload)).await.map_err(|_| lost())?;
        match wait.await.map_err(|_| lost())? {
            (Response::Error { message, .. }, _) => Err(message),
            reply => Ok(reply),
        }
    }
}

/// Where session commands go: this machine's daemon, or a paired host through a relay. Both
/// offer the same three calls, so every command works either way.
pub enum Transport {
    Local(Client),
    Remote(crate::remote::RemoteClient),
}

impl Transport {
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        match self {
            Transport::Local(client) => client.call(request, payload).await,
            Transport::Remote(remote) => remote.call(request, payload).await,
        }
    }

    pub async fn send(&self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Transport::Local(client) => client.send(request, payload).await,
            Transport::Remote(remote) => remote.send(request, payload).await,
        }
    }

    pub async fn open_stream(&self, request: &Request) -> Result<OpenStream, String> {
        match self {
            Transport::Local(client) => client.open_stream(request).await,
            Transport::Remote(remote) => remote.open_stream(request).await,
        }
    }

    /// What to tell the user when a stream ends without `eof`.
    pub fn lost_reason(&self) -> String {
        match self {
            Transport::Local(_) => lost(),
            Transport::Remote(remote) => remote.lost_reason(),
        }
    }

    pub async fn close(self) {
        if let Transport::Remote(remote) = self {
            remote.close().await;
        }
    }
}

fn lost() -> String {
    "lost the connection to the tether daemon".to_owned()
}

async fn route(frame: Frame, pending: &Pending, streams: &Streams) {
    match frame.header {
        Header::Cmd { id, body } => {
            let response = serde_json::from_value::<Response>(body).unwrap_or_else(|e| Response::Error {
                code: tether_protocol::api::ErrorCode::Internal,
                message: format!("unreadable answer from the daemon: {e}"),
            });
            if let Some(waiter) = lock(pending).remove(&id) {
                let _ = waiter.send((response, frame.payload));
            }
        }
        Header::Data { stream, .. } => {
            let sender = lock(streams).get(&stream).cloned();
            if let Some(sender) = sender {
                let _ = sender.send(StreamEvent::Data { bytes: frame.payload }).await;
            }
        }
        Header::Control(Control::Eof { stream, .. }) => {
            let sender = lock(streams).remove(&stream);
            if let Some(sender) = sender {
                let _ = sender.send(StreamEvent::Eof).await;
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
