//! `tether attach`: the local terminal becomes the session's terminal until you detach with
//! `Ctrl-]` then `d` (whatever the program does with its input: the agent never sees those two
//! keys), or the session ends.
//!
//! The local terminal is put in raw mode and restored on every way out, and modes a full-screen
//! program may have left on (alternate screen, hidden cursor, mouse reporting, bracketed paste,
//! application cursor keys) are reset, so detaching from vim leaves a usable shell.

use tether_protocol::api::Request;
use tether_protocol::input::MAX_INPUT_CHUNK_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::reach::agent::{Agent, Typist};
use crate::reach::stream::OutputEvent;

/// `Ctrl-]`: the detach prefix, as in telnet.
const DETACH_PREFIX: u8 = 0x1d;
const DETACH_KEY: u8 = b'd';
/// How long a detach waits for room in the input of a program that is not reading, for keys
/// typed before it.
const DETACH_INPUT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Leave the alternate screen, show the cursor, stop mouse reporting and bracketed paste, normal
/// cursor keys, default colours.
const RESET_MODES: &[u8] =
    b"\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b[0m";

/// Why attach ended.
pub enum Ended {
    Detached,
    SessionEnded,
}

pub async fn attach(client: &Agent, session: &str) -> Result<Ended, String> {
    let size = terminal_size();
    let request =
        Request::Attach { session: session.to_owned(), from: None, cols: size.map(|s| s.0), rows: size.map(|s| s.1) };
    let opened = client.open_stream(&request).await?;
    let (id, stream, mut events) = (opened.session.id, opened.stream, opened.events);
    let raw = RawMode::enable();
    let mut stdout = tokio::io::stdout();
    let mut stdin = tokio::io::stdin();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| format!("signal handler: {e}"))?;
    let mut input = [0u8; 4096];
    let mut prefix_pending = false;
    // Typed but not yet handed on, and a new size to send. Input waits here, never in a send:
    // this loop must always go on draining output, or a flood and fast typing could each wait
    // for the other (the way to the agent full of keystrokes, the output queue full of bytes).
    let mut typed: Vec<u8> = Vec::new();
    let mut resized: Option<(u16, u16)> = None;
    let mut typist = Typist::new(stream, &id);
    let ended = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(OutputEvent::Data { bytes, .. }) => {
                    stdout.write_all(&bytes).await.map_err(|e| e.to_string())?;
                    stdout.flush().await.map_err(|e| e.to_string())?;
                }
                Some(OutputEvent::Skipped { from, to }) => {
                    let note = format!("\r\n[tether: {} bytes of output are missing here: the host could not keep them]\r\n", to - from);
                    stdout.write_all(note.as_bytes()).await.map_err(|e| e.to_string())?;
                }
                Some(OutputEvent::Eof) => break Ended::SessionEnded,
                None => {
                    drop(raw);
                    return Err(client.lost_reason());
                }
            },
            read = stdin.read(&mut input), if typed.len() < MAX_INPUT_CHUNK_BYTES => {
                let n = read.map_err(|e| e.to_string())?;
                if n == 0 {
                    break Ended::Detached;
                }
                let (forward, detach) = filter_input(&input[..n], &mut prefix_pending);
                typed.extend_from_slice(&forward);
                if detach {
                    break Ended::Detached;
                }
            }
            _ = winch.recv() => resized = terminal_size().or(resized),
            permit = client.reserve(), if (!typed.is_empty() && typist.ready()) || resized.is_some() => {
                let permit = permit?;
                match resized.take() {
                    Some((cols, rows)) => permit.send(&Request::Resize { session: id.clone(), cols, rows }, Vec::new())?,
                    None => typist.type_input(permit, std::mem::take(&mut typed)),
                }
            }
            typing = typist.progress() => {
                if let Err(why) = typing {
                    let note = format!("\r\n[tether: typed input was not delivered: {why}]\r\n");
                    stdout.write_all(note.as_bytes()).await.map_err(|e| e.to_string())?;
                }
            }
        }
    };
    // No more output is read from here on: drop the stream so nothing can wait on it.
    drop(events);
    // What was typed before the detach goes on, but the detach does not wait for a program
    // that is not reading (`DETACH_INPUT_WAIT` at most, for room in its input).
    let mut unsent = typist.finish(DETACH_INPUT_WAIT).await.err();
    if !typed.is_empty() && unsent.is_none() {
        if let Ok(permit) = client.reserve().await {
            let mut last = Typist::new(stream, &id);
            last.type_input(permit, typed);
            unsent = last.finish(DETACH_INPUT_WAIT).await.err();
        }
    }
    if let Some(why) = unsent {
        let note = format!("\r\n[tether: detached with typed input not delivered: {why}]\r\n");
        stdout.write_all(note.as_bytes()).await.map_err(|e| e.to_string())?;
    }
    let _ = client.send(&Request::Detach { stream }, Vec::new()).await;
    stdout.write_all(RESET_MODES).await.map_err(|e| e.to_string())?;
    stdout.flush().await.map_err(|e| e.to_string())?;
    drop(raw);
    Ok(ended)
}

/// Split typed bytes into what goes to the session and whether the user asked to detach.
/// `Ctrl-] d` detaches; `Ctrl-] Ctrl-]` sends one `Ctrl-]`; `Ctrl-]` before anything else is
/// sent along with that key. The prefix may end one read and its key start the next.
fn filter_input(bytes: &[u8], prefix_pending: &mut bool) -> (Vec<u8>, bool) {
    let mut forward = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        if *prefix_pending {
            *prefix_pending = false;
            match byte {
                DETACH_KEY | b'D' => return (forward, true),
                DETACH_PREFIX => forward.push(DETACH_PREFIX),
                other => forward.extend_from_slice(&[DETACH_PREFIX, other]),
            }
        } else if byte == DETACH_PREFIX {
            *prefix_pending = true;
        } else {
            forward.push(byte);
        }
    }
    (forward, false)
}

/// (columns, rows) of the terminal on stdout, if it is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// Raw mode on stdin while alive; the saved settings come back on drop (also on error paths).
struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with termios structs we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return RawMode { saved: None }; // not a terminal: nothing to change
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw);
            RawMode { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings saved in `enable`.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_prefix_handling() {
        let mut pending = false;
        assert_eq!(filter_input(b"ls\r", &mut pending), (b"ls\r".to_vec(), false));
        assert_eq!(filter_input(b"a\x1dd", &mut pending), (b"a".to_vec(), true));
        assert_eq!(filter_input(b"\x1d\x1d", &mut pending), (vec![0x1d], false));
        assert_eq!(filter_input(b"x\x1d", &mut pending), (b"x".to_vec(), false));
        assert!(pending);
        assert_eq!(filter_input(b"d", &mut pending), (Vec::new(), true));
        assert_eq!(filter_input(b"\x1dq", &mut pending), (vec![0x1d, b'q'], false));
    }
}
