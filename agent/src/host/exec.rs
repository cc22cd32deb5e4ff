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
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};

use crate::host::peer::events::PeerEvent;

/// Output bytes a stream may have in flight toward the client (= the protocol's window).
pub const WINDOW_BYTES: usize = tether_protocol::stream::INITIAL_WINDOW_BYTES as usize;
const READ_BYTES: usize = 64 * 1024; // 64 KiB

/// After SIGTERM to a cancelled exec, SIGKILL follows this soon.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// What a peer asks of its running exec. Signals are sent by the task that reaps the process,
/// and only until it has: a pid is never signalled after it may have been reused.
enum Control {
    Signal(i32),
    /// The client is gone: SIGTERM, then SIGKILL after `CANCEL_GRACE`.
    Cancel,
}

/// A running exec, as its peer keeps it.
pub struct Exec {
    control: mpsc::UnboundedSender<Control>,
    /// `Some(bytes)` to write, `None` for end of input.
    pub stdin: mpsc::UnboundedSender<Option<Vec<u8>>>,
    pub stdout_permits: Arc<Semaphore>,
    pub stderr_permits: Arc<Semaphore>,
}

impl Exec {
    /// Signal the command's whole process group (if it is still running).
    pub fn signal(&self, signal: i32) {
        let _ = self.control.send(Control::Signal(signal));
    }

    /// End it: SIGTERM to its process group, SIGKILL shortly after if it is still there.
    pub fn cancel(&self) {
        let _ = self.control.send(Control::Cancel);
    }
}

/// Start `command`; events go to `events` tagged with `conn` and `id`.
pub fn spawn(
    conn: u64,
    id: u64,
    command: &[String],
    cwd: Option<&str>,
    via: &str,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> Result<Exec, String> {
    let program = command.first().ok_or("no command given: tether exec INVITE -- CMD ARGS…")?;
    let cwd = cwd.map(str::to_owned).or_else(|| std::env::var("HOME").ok()).unwrap_or_else(|| "/".into());
    let mut child = tokio::process::Command::new(program)
        .args(&command[1..])
        .current_dir(&cwd)
        .env(crate::host::origin::VIA_ENV, via)
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
    let (control, controls) = mpsc::unbounded_channel();
    let (stdin_tx, mut stdin_rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    let stdout_permits = Arc::new(Semaphore::new(WINDOW_BYTES));
    let stderr_permits = Arc::new(Semaphore::new(WINDOW_BYTES));
    let (out_stream, err_stream) = (tether_protocol::stream::exec_stdout(id), tether_protocol::stream::exec_stderr(id));

    if let Some(mut stdin) = child.stdin.take() {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(Some(bytes)) = stdin_rx.recv().await {
                if stdin.write_all(&bytes).await.is_err() {
                    break; // the process closed its stdin; later input has nowhere to go
                }
                let _ = events.send(PeerEvent::InputTaken { conn, stream: out_stream, n: bytes.len() as u64 });
            }
            // Dropping stdin closes the pipe: the process sees end of input.
        });
    }
    let readers = [
        child.stdout.take().map(|r| forward(r, conn, out_stream, stdout_permits.clone(), events.clone())),
        child.stderr.take().map(|r| forward(r, conn, err_stream, stderr_permits.clone(), events.clone())),
    ];
    tokio::spawn(async move {
        let code = match reap(&mut child, pid, controls).await {
            Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            Err(_) => -1,
        };
        for reader in readers.into_iter().flatten() {
            let _ = reader.await;
        }
        let _ = events.send(PeerEvent::ExecFinished { conn, id, code });
    });
    Ok(Exec { control, stdin: stdin_tx, stdout_permits, stderr_permits })
}

/// Wait for the child, passing on signals until it has exited (its pid is ours until reaped).
async fn reap(
    child: &mut tokio::process::Child,
    pid: i32,
    mut controls: mpsc::UnboundedReceiver<Control>,
) -> std::io::Result<std::process::ExitStatus> {
    // SAFETY: kill(2) only sends a signal; the child leads its own process group, and is not
    // reaped yet, so `pid` still names it.
    let signal_group = |signal: i32| unsafe { libc::kill(-pid, signal) };
    let (mut kill_at, mut open) = (None, true);
    loop {
        let kill_due = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => return status,
            control = controls.recv(), if open => match control {
                Some(Control::Signal(signal)) => { signal_group(signal); }
                Some(Control::Cancel) => {
                    signal_group(libc::SIGTERM);
                    kill_at.get_or_insert(tokio::time::Instant::now() + CANCEL_GRACE);
                }
                // The peer let go of it; a cancel already sent still runs its course.
                None => open = false,
            },
            () = kill_due => {
                signal_group(libc::SIGKILL);
                kill_at = None;
            }
        }
    }
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
