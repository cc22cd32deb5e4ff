//! `exec`: one command on the host, without a PTY, for a remote client.
//!
//! stdout and stderr are read on their own tasks and stay separate streams; stdin arrives from
//! the client and is written as the process takes it. Flow control is end to end: a reader may
//! hold at most `WINDOW_BYTES` of output not yet accepted by the connection (byte permits, given
//! back as the peer's link sends), and stdin is credited to the client only once the process has
//! read it. So a slow client slows the command instead of filling memory, and nothing is dropped.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};

use crate::host::peer::events::PeerEvent;

/// Output bytes a stream may have in flight toward the client (= the protocol's window).
pub const WINDOW_BYTES: usize = tether_protocol::stream::INITIAL_WINDOW_BYTES as usize;
const READ_BYTES: usize = 64 * 1024; // 64 KiB

/// A running exec, as its peer keeps it.
pub struct Exec {
    pub pid: i32,
    /// `Some(bytes)` to write, `None` for end of input.
    pub stdin: mpsc::UnboundedSender<Option<Vec<u8>>>,
    pub stdout_permits: Arc<Semaphore>,
    pub stderr_permits: Arc<Semaphore>,
}

impl Exec {
    /// Signal the command's whole process group.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) only sends a signal; the child leads its own process group.
        unsafe { libc::kill(-self.pid, signal) };
    }
}

/// Start `command`; events go to `events` tagged with `conn` and `id`.
pub fn spawn(
    conn: u64,
    id: u64,
    command: &[String],
    cwd: Option<&str>,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> Result<Exec, String> {
    let program = command.first().ok_or("no command given: tether exec INVITE -- CMD ARGS…")?;
    let cwd = cwd.map(str::to_owned).or_else(|| std::env::var("HOME").ok()).unwrap_or_else(|| "/".into());
    let mut child = tokio::process::Command::new(program)
        .args(&command[1..])
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("cannot run {program}: command not found"),
            _ => format!("cannot run {program}: {e}"),
        })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).ok_or("the command exited at once")?;
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    let stdout_permits = Arc::new(Semaphore::new(WINDOW_BYTES));
    let stderr_permits = Arc::new(Semaphore::new(WINDOW_BYTES));
    let (out_stream, err_stream) = (tether_protocol::api::exec_stdout(id), tether_protocol::api::exec_stderr(id));

    if let Some(mut stdin) = child.stdin.take() {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(Some(bytes)) = stdin_rx.recv().await {
                if stdin.write_all(&bytes).await.is_err() {
                    break; // the process closed its stdin; later input has nowhere to go
                }
                let _ = events.send(PeerEvent::StdinTaken { conn, stream: out_stream, n: bytes.len() as u64 });
            }
            // Dropping stdin closes the pipe: the process sees end of input.
        });
    }
    let readers = [
        child.stdout.take().map(|r| forward(r, conn, out_stream, stdout_permits.clone(), events.clone())),
        child.stderr.take().map(|r| forward(r, conn, err_stream, stderr_permits.clone(), events.clone())),
    ];
    tokio::spawn(async move {
        for reader in readers.into_iter().flatten() {
            let _ = reader.await;
        }
        let code = match child.wait().await {
            Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            Err(_) => -1,
        };
        let _ = events.send(PeerEvent::ExecFinished { conn, id, code });
    });
    Ok(Exec { pid, stdin: stdin_tx, stdout_permits, stderr_permits })
}

fn forward(
    mut reader: impl AsyncReadExt + Unpin + Send + 'static,
    conn: u64,
    stream: u32,
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BYTES];
        let mut seq = 0u64;
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Wait for room in the window before taking more from the process.
            match permits.acquire_many(n as u32).await {
                Ok(permit) => permit.forget(),
                Err(_) => return,
            }
            if events.send(PeerEvent::Output { conn, stream, seq, bytes: buf[..n].to_vec() }).is_err() {
                return;
            }
            seq += n as u64;
        }
    })
}
