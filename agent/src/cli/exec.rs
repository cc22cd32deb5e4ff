//! `tether exec HOST -- CMD`: one command on a paired host, without a PTY. Its stdout and stderr
//! go to ours, apart; our stdin goes to it; we exit with its exit code (128 + N for signal N).
//! Ctrl+C is passed on as SIGINT; a second Ctrl+C gives up at once.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tether_protocol::api::{Request, Response};
use tether_protocol::client::{ClientEvent, StreamEvent};
use tether_protocol::stream::{exec_stderr, exec_stdout};

use crate::paths::StateDir;
use crate::reach::hosts::Hosts;
use crate::reach::relay::RelayConnection;
use crate::time::monotonic_ms;

/// Exit status after a second Ctrl+C (as a shell's for SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// stdin chunks read ahead by the reader thread.
const STDIN_QUEUE_CHUNKS: usize = 4;
/// stdin queued in the client (waiting for the host's credit) before we read on.
const STDIN_QUEUED_BYTES: usize = 256 * 1024; // 256 KiB

pub async fn run(
    state: &StateDir,
    invite: Option<String>,
    invite_stdin: bool,
    timeout: Option<Duration>,
    command: Vec<String>,
) -> Result<ExitCode, String> {
    let invite = match (invite, invite_stdin) {
        (_, true) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the invite from stdin: {e}"))?;
            line
        }
        (Some(invite), false) => invite,
        (None, false) => return Err("which host? give its invite, -H, TETHER_INVITE or --invite-stdin".into()),
    };
    let link = Hosts::load(state)?.resolve(invite.trim())?;
    let mut connection = RelayConnection::open(&link, crate::cli::password::for_host).await?;
    let result = exec(&mut connection, command, timeout).await;
    connection.close().await;
    match result? {
        Some(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        None => {
            eprintln!("tether: timed out; the command was killed");
            Ok(ExitCode::from(crate::cli::EXIT_TIMED_OUT))
        }
    }
}

/// Run `command` on the host; `None` when `timeout` ran out (the command was killed).
async fn exec(
    connection: &mut RelayConnection,
    command: Vec<String>,
    timeout: Option<Duration>,
) -> Result<Option<i32>, String> {
    // One listener for the whole run, made before the command starts: a Ctrl+C that comes while
    // the loop is busy waits in it (a `ctrl_c()` made anew each time round would miss it).
    let mut interrupts_in = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot listen for Ctrl+C: {e}"))?;
    let id =
        connection.client().exec(&Request::Exec { command, cwd: None }, monotonic_ms()).map_err(|e| e.to_string())?;
    let (out_stream, err_stream) = (exec_stdout(id), exec_stderr(id));

    // stdin on a thread (blocking reads), in chunks no bigger than a frame's payload.
    let (stdin_tx, mut stdin_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(STDIN_QUEUE_CHUNKS);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; tether_protocol::stream::MAX_DATA_CHUNK];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || stdin_tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
        // Dropping the sender tells the loop: end of input.
    });
    let mut stdin_open = true;
    let mut interrupts = 0;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let signal = |connection: &mut RelayConnection, signal: i32| {
        let _ = connection.client().send(&Request::Signal { exec: id, signal }, Vec::new(), monotonic_ms());
    };
    loop {
        // Send what is queued (credit for what was written out, too) and act on what came; wait
        // for more only once there is nothing left to act on.
        let events = connection.flush().await;
        let idle = events.is_empty();
        for event in events {
            match event {
                ClientEvent::Stream { handle, event: StreamEvent::Data { bytes, .. } } => {
                    let written = if handle == err_stream {
                        stderr.write_all(&bytes).and_then(|_| stderr.flush())
                    } else {
                        stdout.write_all(&bytes).and_then(|_| stdout.flush())
                    };
                    written.map_err(|e| format!("writing output: {e}"))?;
                    // Credit the host only for what we have really passed on.
                    connection.client().consumed(handle, bytes.len() as u64, monotonic_ms());
                }
                ClientEvent::Answer { call, answer } if call == id => {
                    return match answer {
                        Ok((Response::Exited { code }, _)) => Ok(Some(code)),
                        Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
                        Err(refused) => Err(refused.message),
                    };
                }
                ClientEvent::Disconnected { why, .. } => return Err(why),
                _ => {}
            }
        }
        if !idle {
            continue;
        }
        tokio::select! {
            // Bytes in, keep-alives out, and a silent link noticed (no command hangs on a dead one).
            () = connection.receive() => {}
            // Read on while little waits for the host's credit: the client's queue paces stdin.
            chunk = stdin_rx.recv(), if stdin_open && connection.client().queued_input(out_stream) < STDIN_QUEUED_BYTES => match chunk {
                // Input for a command whose output has ended has nowhere to go: it is dropped.
                Some(bytes) => {
                    let _ = connection.client().write_input(out_stream, &bytes, monotonic_ms());
                }
                None => {
                    stdin_open = false;
                    connection.client().end_input(out_stream, monotonic_ms());
                }
            },
            _ = interrupts_in.recv() => {
                interrupts += 1;
                if interrupts > 1 {
                    return Ok(Some(EXIT_INTERRUPTED));
                }
                signal(connection, libc::SIGINT);
            }
            _ = sleep_until(deadline) => {
                signal(connection, libc::SIGKILL);
                let _ = connection.flush().await;
                return Ok(None);
            }
        }
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
