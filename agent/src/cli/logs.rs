//! `tether logs`: print sessions' output, whole or followed.
//!
//! With several sessions, each one's text appears under a `==> ID <==` header, printed again
//! whenever the output switches to another session (as `tail -f a b` does). With `--follow`
//! all sessions stream at once over the one connection; whole lines are printed, so lines of two
//! sessions never interleave mid-line.

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
        let mut collected = Vec::new();
        let mut lost = 0;
        let ended = loop {
            match opened.events.recv().await {
                Some(OutputEvent::Data { bytes }) => collected.extend_from_slice(&bytes),
                Some(OutputEvent::Skipped { from, to }) => {
                    lost += to - from;
                    collected.extend_from_slice(gap_note(to - from).as_bytes());
                }
                Some(OutputEvent::Eof) => break Ok(()),
                // Cut off: what came is printed, and the command fails, never passing as whole.
                None => break Err(client.lost_reason()),
            }
        };
        let text =
            if options.keep_color { String::from_utf8_lossy(&collected).into_owned() } else { plain_text(&collected) };
        let mut text = match options.tail {
            Some(n) => last_lines(&text, n).to_owned(),
            None => text,
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        out.write(session, text.as_bytes())?;
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
    let mut partial = vec![Vec::new(); sessions.len()];
    let mut open = sessions.len();
    let mut lost = 0;
    while let Some((index, event)) = merged.recv().await {
        let session = &sessions[index];
        match event {
            None => return Err(client.lost_reason()),
            Some(OutputEvent::Skipped { from, to }) => {
                let rest = std::mem::take(&mut partial[index]);
                let rest = if keep_color { rest } else { plain_text(&rest).into_bytes() };
                out.write(session, &rest)?;
                out.write(session, gap_note(to - from).as_bytes())?;
                lost += to - from;
            }
            Some(OutputEvent::Data { bytes }) if keep_color => out.write(session, &bytes)?,
            Some(OutputEvent::Data { bytes }) => {
                let pending = &mut partial[index];
                pending.extend_from_slice(&bytes);
                if let Some(cut) = pending.iter().rposition(|&b| b == b'\n') {
                    let lines: Vec<u8> = pending.drain(..=cut).collect();
                    out.write(session, plain_text(&lines).as_bytes())?;
                }
            }
            Some(OutputEvent::Eof) => {
                let rest = std::mem::take(&mut partial[index]);
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

fn last_lines(text: &str, n: usize) -> &str {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    let start =
        trimmed.char_indices().rev().filter(|&(_, c)| c == '\n').nth(n.saturating_sub(1)).map_or(0, |(i, _)| i + 1);
    if n == 0 {
        ""
    } else {
        &text[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(last_lines("a\nb\n", 0), "");
    }
}
