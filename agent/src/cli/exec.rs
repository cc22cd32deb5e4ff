//! `tether exec HOST -- CMD`: one command on a paired host, without a PTY. Its stdout and stderr
//! go to ours, apart; our stdin goes to it; we exit with its exit code (128 + N for signal N).
//! Ctrl+C is passed on as SIGINT; a second Ctrl+C gives up at once.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tether_protocol::api::{exec_stderr, exec_stdout, Request, Response};
use tether_protocol::connection::Event;
use tether_protocol::frame::{Control, Frame, Header};

use crate::paths::StateDir;
use crate::reach::hosts::Hosts;
use crate::reach::relay::{sleep_until_ms, RelayConnection};

/// Exit status after a second Ctrl+C (as a shell's for SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// stdin chunks waiting for flow-control credit before the reader thread waits.
const STDIN_QUEUE_CHUNKS: usize = 4;

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
    let id = connection.request(&Request::Exec { command, cwd: None }, Vec::new())?;
    let (out_stream, err_stream) = (exec_stdout(id), exec_stderr(id));
    connection.flush().await?;

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
    let mut stdin_pending: Vec<u8> = Vec::new();
    let mut stdin_seq = 0u64;
    let mut interrupts = 0;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    loop {
        let timer = connection.next_timeout();
        tokio::select! {
            received = connection.receive() => received?,
            // Keep-alives out, and a silent link noticed (no command hangs on a dead one).
            () = sleep_until_ms(timer) => connection.handle_timeout()?,
            chunk = stdin_rx.recv(), if stdin_open && stdin_pending.is_empty() => match chunk {
                Some(bytes) => stdin_pending = bytes,
                None => {
                    stdin_open = false;
                    let eof = Frame::bare(Header::Control(Control::Eof { stream: out_stream, end: stdin_seq }));
                    connection.conn().send_frame(&eof).map_err(|e| e.to_string())?;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts > 1 {
                    return Ok(Some(EXIT_INTERRUPTED));
                }
                connection.request(&Request::Signal { exec: id, signal: libc::SIGINT }, Vec::new())?;
            }
            _ = sleep_until(deadline) => {
                let _ = connection.request(&Request::Signal { exec: id, signal: libc::SIGKILL }, Vec::new());
                let _ = connection.flush().await;
                return Ok(None);
            }
        }
        if !stdin_pending.is_empty() {
            let sent = connection.conn().send_data(out_stream, stdin_seq, &stdin_pending).map_err(|e| e.to_string())?;
            stdin_seq += sent as u64;
            stdin_pending.drain(..sent);
        }
        for event in connection.flush().await? {
            match event {
                Event::Data { stream, bytes, .. } => {
                    let written = if stream == err_stream {
                        stderr.write_all(&bytes).and_then(|_| stderr.flush())
                    } else {
                        stdout.write_all(&bytes).and_then(|_| stdout.flush())
                    };
                    written.map_err(|e| format!("writing output: {e}"))?;
                    // Credit the host only for what we have really passed on.
                    connection.conn().consumed(stream, bytes.len() as u64).map_err(|e| e.to_string())?;
                }
                Event::Cmd { id: got, body, .. } if got == id => {
                    return match serde_json::from_value::<Response>(body) {
                        Ok(Response::Exited { code }) => Ok(Some(code)),
                        Ok(Response::Error { message, .. }) => Err(message),
                        Ok(other) => Err(format!("unexpected answer {other:?}")),
                        Err(e) => Err(format!("unreadable answer from the host: {e}")),
                    };
                }
                _ => {}
            }
        }
        connection.flush().await?;
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
