//! One session: a program on a real PTY, owned by the agent.
//!
//! Output path, in this order, on a dedicated reader thread so the PTY is drained whether or not
//! anyone is attached (a program never blocks on a full PTY):
//!
//! ```text
//! PTY → QueryFilter (strip queries) → OutputRing (1 MiB, by sequence number) → log file
//!       (complete, offset = sequence number) → `end` watch → clients
//!     ↘ Tracker (its own thread: the screen's modes and cursor; answers the queries, in order)
//! ```
//!
//! Clients never get a queue of their own: each follows the `end` watch and reads from the ring
//! at its own cursor, falling back to the log file for bytes the ring has dropped. A slow client
//! only slows itself, memory stays bounded, and no byte is ever lost.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use tether_protocol::api::{SessionInfo, SessionStatus};
use tether_protocol::input::InputChunk;
use tether_protocol::stream::OutputRing;
use tether_protocol::sync::lock;
use tokio::sync::{broadcast, watch};

use crate::time::now_ms;
use terminal::{Piece, QueryFilter};
use tracker::Tracker;

pub mod notify;
pub mod prompt;
mod screen;
pub mod terminal;
mod tracker;

/// Bytes per PTY read.
const READ_CHUNK_BYTES: usize = 64 * 1024; // 64 KiB
/// Room left in the read buffer below which a flood's waiting output is not read on (a PTY
/// read returns at most about this much).
const COALESCE_ROOM_BYTES: usize = 4096; // 4 KiB
/// Input waiting for a program that does not read it; more is refused rather than queued. One
/// attach stream's window (`stream::INITIAL_WINDOW_BYTES`): typing on one link never meets it.
const INPUT_BACKLOG_BYTES: usize = 1 << 20; // 1 MiB
/// `tether open` requests a browser may fall behind by before it misses some.
const OPENS_QUEUE: usize = 16;
/// After the process exits, how long to wait for its last output before ending streams anyway
/// (a background child may hold the PTY open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// How a session's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
}

/// Output state shared by the reader thread and every client.
struct Output {
    ring: OutputRing,
    log: File,
    /// The first byte the log failed to take (a full disk, a file-size limit). The log holds
    /// exactly bytes `0..` this, at offset = sequence number, and is not written after it:
    /// older bytes past it are lost, and said to be (`ReadError::Lost`), never misread.
    log_lost_from: Option<u64>,
    filter: QueryFilter,
}

pub struct Session {
    pub id: String,
    info: Mutex<SessionInfo>,
    output: Mutex<Output>,
    /// The screen, kept by a thread of its own (see `tracker`), fed after `output`.
    tracker: Tracker,
    log_path: PathBuf,
    input: InputQueue,
    master: Mutex<Box<dyn MasterPty + Send>>,
    /// Output end (next sequence number); changes wake streaming clients.
    end: watch::Sender<u64>,
    /// Set once output is complete: the process exited and its output drained.
    finished: watch::Sender<bool>,
    /// `Some(reason)` while the program appears to wait for input.
    waiting: watch::Sender<Option<String>>,
    /// We sent SIGKILL (so the end is `killed`, not `stopped`).
    killed_by_us: Mutex<bool>,
    /// Files `tether open` in this session asks the attached browsers to open.
    opens: broadcast::Sender<Arc<Vec<String>>>,
}

/// Where a new session runs and how big its terminal is.
pub struct Spawn {
    pub id: String,
    pub command: Vec<String>,
    pub title: String,
    pub cwd: String,
    pub cols: u16,
    pub rows: u16,
    pub ring_bytes: usize,
    pub log_path: PathBuf,
    pub now: u64,
    pub notify: bool,
    /// The remote credential it was started through (`origin::VIA_ENV`), if any.
    pub via: Option<String>,
}

impl Session {
    /// Start the program. On failure the error says why (missing command, bad cwd, …).
    pub fn spawn(spec: Spawn, on_exit: impl FnOnce(&Arc<Session>) + Send + 'static) -> Result<Arc<Session>, String> {
        let program = spec.command.first().ok_or("no command given")?;
        if !std::path::Path::new(&spec.cwd).is_dir() {
            return Err(format!("working directory {} does not exist", spec.cwd));
        }
        let size = PtySize { rows: spec.rows.max(1), cols: spec.cols.max(1), pixel_width: 0, pixel_height: 0 };
        let pty = native_pty_system().openpty(size).map_err(|e| format!("cannot open a PTY: {e}"))?;
        let mut builder = CommandBuilder::new(program);
        builder.args(&spec.command[1..]);
        builder.cwd(&spec.cwd);
        builder.env("TERM", "xterm-256color");
        builder.env("TETHER_SESSION", &spec.id);
        if let Some(via) = &spec.via {
            builder.env(crate::host::origin::VIA_ENV, via);
        }
        let child = pty
            .slave
            .spawn_command(builder)
            .map_err(|e| format!("cannot start {program}: {}", friendly_spawn_error(&e.to_string())))?;
        drop(pty.slave);
        let reader = pty.master.try_clone_reader().map_err(|e| format!("PTY reader: {e}"))?;
        let readable = pty.master.as_raw_fd().and_then(ReadyCheck::new);
        let input = pty.master.take_writer().map_err(|e| format!("PTY writer: {e}"))?;
        let input = InputQueue::start(input, &spec.id)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(|e| format!("cannot create log {}: {e}", spec.log_path.display()))?;

        let info = SessionInfo {
            id: spec.id.clone(),
            title: spec.title,
            command: spec.command,
            cwd: spec.cwd,
            pid: child.process_id(),
            status: SessionStatus::Running,
            exit_code: None,
            created_at: spec.now,
            started_at: Some(spec.now),
            ended_at: None,
            output_bytes: 0,
            waiting_for_input: false,
            input_reason: None,
            notify: spec.notify,
        };
        let tracker = Tracker::start(&spec.id, size.rows, size.cols, {
            let input = input.clone();
            move |reply: &[u8]| drop(input.push(reply))
        })?;
        let session = Arc::new(Session {
            id: spec.id,
            tracker,
            info: Mutex::new(info),
            output: Mutex::new(Output {
                ring: OutputRing::new(spec.ring_bytes),
                log,
                log_lost_from: None,
                filter: QueryFilter::default(),
            }),
            log_path: spec.log_path,
            input,
            master: Mutex::new(pty.master),
            end: watch::channel(0).0,
            finished: watch::channel(false).0,
            waiting: watch::channel(None).0,
            killed_by_us: Mutex::new(false),
            opens: broadcast::channel(OPENS_QUEUE).0,
        });
        let reader_session = session.clone();
        let (eof_tx, eof_rx) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(format!("pty-read-{}", session.id))
            .spawn(move || {
                reader_session.drain(reader, readable);
                let _ = eof_tx.send(());
            })
            .map_err(|e| format!("cannot start reader thread: {e}"))?;
        let waiter_session = session.clone();
        std::thread::Builder::new()
            .name(format!("pty-wait-{}", session.id))
            .spawn(move || {
                let exit = wait_child(child);
                let _ = eof_rx.recv_timeout(DRAIN_AFTER_EXIT);
                waiter_session.record_exit(exit);
                on_exit(&waiter_session);
                waiter_session.finished.send_replace(true);
            })
            .map_err(|e| format!("cannot start waiter thread: {e}"))?;
        Ok(session)
    }

    /// Reader thread body: everything the program prints goes through here.
    ///
    /// A PTY hands over at most a few KiB per read; during a flood, what is already waiting is
    /// read too (up to `READ_CHUNK_BYTES`) and ingested at once, so the tracker, the log and the
    /// clients are woken once per batch rather than once per few KiB. Nothing waits for more:
    /// a lone echo goes on at once.
    fn drain(&self, mut reader: Box<dyn Read + Send>, readable: Option<ReadyCheck>) {
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        let mut pieces = Vec::new();
        loop {
            let mut n = match reader.read(&mut buf) {
                // EOF, or EIO once the last slave fd closed. A sequence the program began but
                // never finished was held back in case it was a query: it is output after all.
                Ok(0) | Err(_) => {
                    let held = lock(&self.output).filter.end_of_output();
                    if let Some(held) = held {
                        self.record(held);
                    }
                    return;
                }
                Ok(n) => n,
            };
            while n + COALESCE_ROOM_BYTES <= buf.len() && readable.as_ref().is_some_and(ReadyCheck::ready) {
                match reader.read(&mut buf[n..]) {
                    Ok(more) if more > 0 => n += more,
                    _ => break, // the end: the next read says so again
                }
            }
            self.ingest(&buf[..n], &mut pieces);
        }
    }

    /// Run output through the pipeline; queries it contained are answered by the tracker.
    /// The tracker is fed after the lock is let go: clients read the ring meanwhile, and a
    /// tracker that is behind holds up only this thread.
    fn ingest(&self, bytes: &[u8], pieces: &mut Vec<Piece>) {
        let end = {
            let mut out = lock(&self.output);
            let out = &mut *out;
            pieces.clear();
            out.filter.feed(bytes, pieces);
            for piece in pieces.iter() {
                if let Piece::Output(data) = piece {
                    record(out, data);
                }
            }
            out.ring.end()
        };
        if self.waiting.borrow().is_some() {
            self.waiting.send_replace(None);
        }
        self.end.send_replace(end);
        for piece in pieces.drain(..) {
            match piece {
                Piece::Output(data) => self.tracker.output(data),
                Piece::Query(query) => self.tracker.query(query),
            }
        }
    }

    /// Output that bypasses the query filter (what it held back at the end).
    fn record(&self, data: Vec<u8>) {
        let end = {
            let mut out = lock(&self.output);
            record(&mut out, &data);
            out.ring.end()
        };
        self.end.send_replace(end);
        self.tracker.output(data);
    }

    fn record_exit(&self, exit: Exit) {
        let end = lock(&self.output).ring.end();
        let mut info = lock(&self.info);
        info.exit_code = Some(exit.code);
        info.ended_at = Some(now_ms());
        info.output_bytes = end;
        info.status = if exit.signal == Some(libc::SIGKILL) || *lock(&self.killed_by_us) {
            SessionStatus::Killed
        } else {
            SessionStatus::Stopped
        };
    }

    /// Current metadata, with live fields filled in.
    pub fn info(&self) -> SessionInfo {
        let mut info = lock(&self.info).clone();
        info.output_bytes = *self.end.borrow();
        let waiting = self.waiting.borrow().clone();
        info.waiting_for_input = waiting.is_some();
        info.input_reason = waiting;
        info
    }

    pub fn is_finished(&self) -> bool {
        *self.finished.borrow()
    }

    pub fn subscribe_end(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    pub fn subscribe_finished(&self) -> watch::Receiver<bool> {
        self.finished.subscribe()
    }

    /// `tether open` in this session, as a browser's terminal tab hears it.
    pub fn subscribe_opens(&self) -> broadcast::Receiver<Arc<Vec<String>>> {
        self.opens.subscribe()
    }

    /// Ask every listening browser to open `paths`; how many were asked.
    pub fn announce_open(&self, paths: Vec<String>) -> usize {
        self.opens.send(Arc::new(paths)).unwrap_or(0)
    }

    pub fn subscribe_waiting(&self) -> watch::Receiver<Option<String>> {
        self.waiting.subscribe()
    }

    /// Output from `from`, at most `max` bytes: from the ring, or from the log for older bytes.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<u8>, ReadError> {
        let (oldest, logged_until) = {
            let out = lock(&self.output);
            if from >= out.ring.oldest() {
                return out.ring.read_from(from, max).map_err(|e| ReadError::Failed(e.to_string()));
            }
            (out.ring.oldest(), out.log_lost_from.unwrap_or(u64::MAX))
        };
        if from >= logged_until {
            return Err(ReadError::Lost { to: oldest });
        }
        let len = ((oldest.min(logged_until) - from) as usize).min(max);
        read_log(&self.log_path, from, len)
    }

    /// The oldest byte the ring still holds (attach replays from here).
    pub fn ring_oldest(&self) -> u64 {
        lock(&self.output).ring.oldest()
    }

    /// Raw input to the program, queued in order; never blocks (see `InputQueue`). The receiver
    /// hears when the program's terminal has taken it (for callers that pace themselves); empty
    /// input is heard once everything queued before it was taken.
    pub fn write_input(&self, bytes: &[u8]) -> Result<Written, InputRefused> {
        self.input.push(bytes)
    }

    /// `send` input: keys are encoded for the terminal's current mode (DECCKM).
    pub fn send(&self, chunks: &[InputChunk]) -> Result<Written, String> {
        let application_cursor = self.tracker.with_screen(|s| s.application_cursor());
        let mut bytes = Vec::new();
        for chunk in chunks {
            match chunk {
                InputChunk::Text(text) => bytes.extend_from_slice(text.as_bytes()),
                InputChunk::Key(key) => bytes.extend(key.bytes(application_cursor)),
                InputChunk::Hex(hex) => {
                    bytes.extend(tether_protocol::hex::decode(hex).ok_or_else(|| format!("bad hex {hex:?}"))?)
                }
            }
        }
        self.write_input(&bytes).map_err(|refused| refused.to_string())
    }

    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), String> {
        let size = PtySize { rows: rows.max(1), cols: cols.max(1), pixel_width: 0, pixel_height: 0 };
        lock(&self.master).resize(size).map_err(|e| format!("resize: {e}"))?;
        self.tracker.resize(size.rows, size.cols);
        Ok(())
    }

    /// The line the cursor is on, for prompt detection.
    pub fn cursor_line(&self) -> String {
        self.tracker.with_screen(|s| s.cursor_line())
    }

    /// Notify (hook, desktop, push) when it waits or ends, or not.
    pub fn set_notify(&self, on: bool) {
        lock(&self.info).notify = on;
    }

    pub fn set_waiting(&self, reason: Option<String>) {
        self.waiting.send_replace(reason);
    }

    /// Signal the whole process group (the program and everything it started).
    pub fn signal(&self, signal: i32) {
        let Some(pid) = lock(&self.info).pid.and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        if signal == libc::SIGKILL {
            *lock(&self.killed_by_us) = true;
        }
        // SAFETY: kill(2) has no memory effects; the PTY child leads its own process group.
        unsafe { libc::kill(-pid, signal) };
    }

    pub fn set_status(&self, status: SessionStatus) {
        lock(&self.info).status = status;
    }
}

/// Why output could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Bytes from the requested one up to `to` are gone: out of the ring, and never logged.
    Lost {
        to: u64,
    },
    Failed(String),
}

/// Append output to the pipeline: ring, and the log while it takes writes (the screen is fed
/// after, by the caller, off the output lock: `Tracker::output`).
fn record(out: &mut Output, data: &[u8]) {
    let seq = out.ring.push(data);
    // A full disk must not stop the session: the ring still serves clients, and the gap is
    // remembered so nobody reads past it in the log.
    if out.log_lost_from.is_none() && out.log.write_all(data).is_err() {
        out.log_lost_from = Some(seq);
    }
}

/// `len` bytes of a session log from `from`; fewer only if the log ends first.
pub fn read_log(path: &std::path::Path, from: u64, len: usize) -> Result<Vec<u8>, ReadError> {
    let mut buf = vec![0u8; len];
    let log = File::open(path).map_err(|e| ReadError::Failed(format!("session log: {e}")))?;
    let n = log.read_at(&mut buf, from).map_err(|e| ReadError::Failed(format!("session log: {e}")))?;
    buf.truncate(n);
    Ok(buf)
}

/// Input on its way to the PTY, written by a thread of its own. Writing to a PTY blocks when the
/// program is not reading; with the queue, neither a client's request nor the reader thread's
/// query answers ever wait on that, and input keeps the order it was given in.
#[derive(Clone)]
struct InputQueue {
    tx: std::sync::mpsc::Sender<(Vec<u8>, tokio::sync::oneshot::Sender<()>)>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// Fires once input has been written to the program's terminal (dropped if it never is).
pub type Written = tokio::sync::oneshot::Receiver<()>;

impl InputQueue {
    fn start(mut pty: Box<dyn Write + Send>, id: &str) -> Result<InputQueue, String> {
        use std::sync::atomic::Ordering;
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<u8>, tokio::sync::oneshot::Sender<()>)>();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = queued.clone();
        std::thread::Builder::new()
            .name(format!("pty-input-{id}"))
            .spawn(move || {
                for (bytes, written) in rx {
                    if pty.write_all(&bytes).and_then(|_| pty.flush()).is_err() {
                        return; // the PTY is gone; later pushes fail
                    }
                    counter.fetch_sub(bytes.len(), Ordering::Relaxed);
                    let _ = written.send(());
                }
            })
            .map_err(|e| format!("cannot start input thread: {e}"))?;
        Ok(InputQueue { tx, queued })
    }

    fn push(&self, bytes: &[u8]) -> Result<Written, InputRefused> {
        use std::sync::atomic::Ordering;
        let waiting = self.queued.load(Ordering::Relaxed);
        if waiting + bytes.len() > INPUT_BACKLOG_BYTES {
            return Err(InputRefused::Backlog { waiting });
        }
        self.queued.fetch_add(bytes.len(), Ordering::Relaxed);
        let (written, heard) = tokio::sync::oneshot::channel();
        self.tx.send((bytes.to_vec(), written)).map_err(|_| InputRefused::Ended)?;
        Ok(heard)
    }
}

/// Why input was not queued: nothing of it was.
#[derive(Debug)]
pub enum InputRefused {
    /// The program has left this much input unread, and the backlog has no room for more: a
    /// sender waits for what is queued to be taken (empty input says when) and sends again.
    Backlog { waiting: usize },
    /// The program's terminal is gone.
    Ended,
}

impl std::fmt::Display for InputRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            InputRefused::Backlog { waiting } => {
                write!(f, "the program is not reading its input ({waiting} bytes are waiting)")
            }
            InputRefused::Ended => write!(f, "the session no longer takes input"),
        }
    }
}

fn wait_child(mut child: Box<dyn Child + Send + Sync>) -> Exit {
    match child.wait() {
        Ok(status) => match status.signal() {
            Some(name) => {
                let signal = signal_number(name);
                Exit { code: 128 + signal.unwrap_or(0), signal }
            }
            None => Exit { code: status.exit_code() as i32, signal: None },
        },
        Err(_) => Exit { code: -1, signal: None },
    }
}

/// portable-pty reports signals by their `strsignal` text; map back to the number.
fn signal_number(name: &str) -> Option<i32> {
    (1..32).find(|&sig| {
        // SAFETY: strsignal returns a pointer to a static or thread-local NUL-terminated string.
        let text = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
        text.to_string_lossy() == name
    })
}

fn friendly_spawn_error(error: &str) -> String {
    if error.contains("No such file") || error.contains("not found") {
        "command not found".into()
    } else {
        error.to_owned()
    }
}

/// Whether a PTY has output waiting, without reading it: a `poll` with no wait on a duplicate of
/// the master's descriptor (the reader thread's own, so it stays valid while the thread runs).
struct ReadyCheck(std::os::fd::OwnedFd);

impl ReadyCheck {
    fn new(fd: std::os::fd::RawFd) -> Option<ReadyCheck> {
        // SAFETY: `fd` is the PTY master's, open while the session is being set up; `dup` makes
        // a descriptor this value owns (and closes).
        let copy = unsafe { libc::dup(fd) };
        // SAFETY: a non-negative `dup` result is a new descriptor nothing else owns.
        (copy >= 0).then(|| ReadyCheck(unsafe { std::os::fd::OwnedFd::from_raw_fd(copy) }))
    }

    fn ready(&self) -> bool {
        let mut poll = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, a timeout of 0 (never blocks).
        let n = unsafe { libc::poll(&mut poll, 1, 0) };
        n == 1 && poll.revents & libc::POLLIN != 0
    }
}
