//! `tether logs`: print sessions' output, whole or followed.
//!
//! With several sessions, each one's text appears under a `==> ID <==` header, printed again
//! whenever the output switches to another session (as `tail -f a b` does). With `--follow`
//! all sessions stream at once over the one connection; whole lines are printed, so lines of two
//! sessions never interleave mid-line.
//!
//! Invariants:
//! - Output is printed as it arrives, never gathered whole: memory holds at most one line
//!   (`MAX_LINE_BYTES` of a line that never ends), or with `--tail N` the last N lines.
//! - Without `--keep-color`, text is cleaned (`escapes::plain_text`: escape sequences and C1
//!   controls dropped) a whole line at a time, so no sequence is cut in two.

use std::collections::VecDeque;
use std::io::Write;

use tether_protocol::api::Request;
use tokio::sync::mpsc;

use crate::escapes::plain_text;
use crate::reach::agent::Agent;
use crate::reach::stream::OutputEvent;

pub struct Options {
    /// Only the last N lines (without --follow).
    pub tail: Option<usize>,
    /// Keep colours and other escape sequences.
    pub keep_color: bool,
    pub follow: bool,
}

/// Past this, a line that has not ended is printed in pieces (a progress bar redrawn with `\r`
/// for hours is one line).
const MAX_LINE_BYTES: usize = 1 << 20; // 1 MiB
/// An escape sequence that began within this many bytes of a cut is kept whole for later.
const ESCAPE_BYTES: usize = 64;

pub async fn print(client: &Agent, sessions: &[String], options: Options) -> Result<(), String> {
    let several = sessions.len() > 1;
    if options.follow {
        return follow(client, sessions, options.keep_color).await;
    }
    let mut out = Output { stdout: std::io::stdout(), current: None, headers: several };
    let mut incomplete = Vec::new();
    for session in sessions {
        let mut opened =
            client.open_stream(&Request::Logs { session: session.clone(), follow: false, from: None }).await?;
        let mut lines = Lines::default();
        let mut tail = options.tail.map(Tail::new);
        let mut lost = 0;
        let mut show = |out: &mut Output, raw: Vec<u8>| {
            let text = clean(raw, options.keep_color);
            match &mut tail {
                Some(tail) => {
                    tail.push(&text);
                    Ok(())
                }
                None => out.write(session, text.as_bytes()),
            }
        };
        let ended = loop {
            match opened.events.recv().await {
                Some(OutputEvent::Data { bytes }) => show(&mut out, lines.push(&bytes))?,
                Some(OutputEvent::Skipped { from, to }) => {
                    lost += to - from;
                    show(&mut out, lines.finish())?;
                    show(&mut out, gap_note(to - from).into_bytes())?;
                }
                Some(OutputEvent::Eof) => break Ok(()),
                // Cut off: what came is printed, and the command fails, never passing as whole.
                None => break Err(client.lost_reason()),
            }
        };
        let mut rest = lines.finish();
        if !rest.is_empty() {
            rest.push(b'\n');
            show(&mut out, rest)?;
        }
        if let Some(tail) = tail {
            out.write(session, tail.text().as_bytes())?;
        }
        ended?;
        if lost > 0 {
            incomplete.push(format!("{session} ({lost} bytes)"));
        }
    }
    match incomplete.is_empty() {
        true => Ok(()),
        false => Err(format!("output lost on the host (the log could not be written): {}", incomplete.join(", "))),
    }
}

/// Text to print: as it was with `--keep-color`, else cleaned.
fn clean(raw: Vec<u8>, keep_color: bool) -> String {
    match keep_color {
        true => String::from_utf8(raw).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        false => plain_text(&raw),
    }
}

/// Whole lines out of a stream of bytes: what `push` returns ends with a newline, except a piece
/// of a line longer than `MAX_LINE_BYTES`, which is cut outside any escape sequence and UTF-8
/// character.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        if let Some(cut) = self.pending.iter().rposition(|&b| b == b'\n') {
            return self.pending.drain(..=cut).collect();
        }
        if self.pending.len() <= MAX_LINE_BYTES {
            return Vec::new();
        }
        // Before an escape sequence that may not have ended (they are short), else before the
        // last UTF-8 character (which may not be whole yet).
        let len = self.pending.len();
        let cut = match self.pending[len - ESCAPE_BYTES..].iter().rposition(|&b| b == 0x1b) {
            Some(esc) => len - ESCAPE_BYTES + esc,
            None => {
                let mut cut = len - 1;
                while cut > 0 && self.pending[cut] & 0xc0 == 0x80 {
                    cut -= 1;
                }
                cut
            }
        };
        self.pending.drain(..cut).collect()
    }

    /// What is left (a last line without its newline).
    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

/// The last `n` lines of text pushed to it.
struct Tail {
    n: usize,
    lines: VecDeque<String>,
    /// The last pushed text did not end its line.
    open: bool,
}

impl Tail {
    fn new(n: usize) -> Tail {
        Tail { n, lines: VecDeque::new(), open: false }
    }

    fn push(&mut self, text: &str) {
        for (i, line) in text.split_inclusive('\n').enumerate() {
            match self.lines.back_mut() {
                Some(last) if i == 0 && self.open => last.push_str(line),
                _ => self.lines.push_back(line.to_owned()),
            }
            self.open = !line.ends_with('\n');
            if self.lines.len() > self.n {
                self.lines.pop_front();
            }
        }
    }

    fn text(&self) -> String {
        self.lines.iter().map(String::as_str).collect()
    }
}

/// Where bytes are missing from a session's output, in its text.
fn gap_note(bytes: u64) -> String {
    format!("\n[tether: {bytes} bytes of output are missing here: the host could not keep them]\n")
}

/// Stream every session until all have ended.
async fn follow(client: &Agent, sessions: &[String], keep_color: bool) -> Result<(), String> {
    // (which session, its next event — `None` when its stream was lost without `eof`)
    let (tx, mut merged) = mpsc::channel::<(usize, Option<OutputEvent>)>(16);
    for (index, session) in sessions.iter().enumerate() {
        let mut opened =
            client.open_stream(&Request::Logs { session: session.clone(), follow: true, from: None }).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let event = opened.events.recv().await;
                let last = matches!(event, Some(OutputEvent::Eof) | None);
                if tx.send((index, event)).await.is_err() || last {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut out = Output { stdout: std::io::stdout(), current: None, headers: sessions.len() > 1 };
    // Per session: bytes after its last complete line.
    let mut partial: Vec<Lines> = sessions.iter().map(|_| Lines::default()).collect();
    let mut open = sessions.len();
    let mut lost = 0;
    while let Some((index, event)) = merged.recv().await {
        let session = &sessions[index];
        match event {
            None => return Err(client.lost_reason()),
            Some(OutputEvent::Skipped { from, to }) => {
                let rest = partial[index].finish();
                let rest = if keep_color { rest } else { plain_text(&rest).into_bytes() };
                out.write(session, &rest)?;
                out.write(session, gap_note(to - from).as_bytes())?;
                lost += to - from;
            }
            Some(OutputEvent::Data { bytes }) if keep_color => out.write(session, &bytes)?,
            Some(OutputEvent::Data { bytes }) => {
                let lines = partial[index].push(&bytes);
                out.write(session, plain_text(&lines).as_bytes())?;
            }
            Some(OutputEvent::Eof) => {
                let rest = partial[index].finish();
                if !rest.is_empty() {
                    out.write(session, format!("{}\n", plain_text(&rest)).as_bytes())?;
                }
                open -= 1;
                if open == 0 {
                    break;
                }
            }
        }
    }
    match lost {
        0 => Ok(()),
        lost => Err(format!("output lost on the host (the log could not be written): {lost} bytes")),
    }
}

/// stdout, with a header whenever the session whose text it is changes.
struct Output {
    stdout: std::io::Stdout,
    current: Option<String>,
    headers: bool,
}

impl Output {
    fn write(&mut self, session: &str, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut stdout = self.stdout.lock();
        if self.headers && self.current.as_deref() != Some(session) {
            let gap = if self.current.is_some() { "\n" } else { "" };
            writeln!(stdout, "{gap}==> {session} <==").map_err(|e| e.to_string())?;
            self.current = Some(session.to_owned());
        }
        stdout.write_all(bytes).and_then(|_| stdout.flush()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(n: usize, pieces: &[&str]) -> String {
        let mut tail = Tail::new(n);
        for piece in pieces {
            tail.push(piece);
        }
        tail.text()
    }

    #[test]
    fn tails() {
        assert_eq!(tail(2, &["a\nb\nc\n"]), "b\nc\n");
        assert_eq!(tail(5, &["a\nb\nc"]), "a\nb\nc");
        assert_eq!(tail(0, &["a\nb\n"]), "");
        // A line that came in pieces is one line.
        assert_eq!(tail(2, &["a\nb", "b\nc", "c\n"]), "bb\ncc\n");
    }

    #[test]
    fn lines_come_out_whole_and_a_line_that_never_ends_in_pieces_that_cut_nothing() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"one\ntw"), b"one\n");
        assert_eq!(lines.push(b"o\n"), b"two\n");
        assert_eq!(lines.push(b"three"), b"");
        assert_eq!(lines.finish(), b"three");

        // 1 MiB and more without a newline, ending inside an escape sequence and a character.
        let mut long = vec![b'x'; MAX_LINE_BYTES];
        long.extend_from_slice("\x1b[3".as_bytes());
        long.extend_from_slice(&"é".as_bytes()[..1]);
        let piece = lines.push(&long);
        assert_eq!(piece.len(), MAX_LINE_BYTES, "cut before the escape sequence");
        assert!(piece.iter().all(|&b| b == b'x'));
        assert_eq!(lines.push(&"é".as_bytes()[1..]), b"");
        assert_eq!(lines.finish(), "\x1b[3é".as_bytes());
        // No escape sequence near the end: the cut is before the last character.
        let mut long = vec![b'y'; MAX_LINE_BYTES];
        long.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(lines.push(&long).len(), MAX_LINE_BYTES);
        assert_eq!(lines.push(&"é".as_bytes()[1..]), b"");
        assert_eq!(lines.finish(), "é".as_bytes());
    }
}
