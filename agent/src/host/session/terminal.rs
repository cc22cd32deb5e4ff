//! What the agent must understand of a session's output stream.
//!
//! - `QueryFilter` finds terminal *queries* (cursor position, device attributes, version, colour)
//!   and takes them out of the stream. The agent answers them itself, at once, whether or not a
//!   client is attached — so a program that asks never hangs — and no attached terminal ever
//!   sees them, which would make it answer too and type the answer into the program.
//! - Answers are computed on the session's `Screen` (`screen.rs`): the cursor position.

use crate::escapes::{EscapeState, BEL, ESC};

/// Longest CSI sequence held back while deciding whether it is a query; longer ones pass as-is.
const MAX_CSI_BYTES: usize = 64;
/// Longest OSC sequence held back.
const MAX_OSC_BYTES: usize = 4096;

/// A query a program sent to its terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// DSR 6 (`CSI 6 n`) or DECXCPR (`CSI ? 6 n`).
    CursorPosition {
        private: bool,
    },
    /// DSR 5: "are you OK?".
    Status,
    /// DA1 (`CSI c`).
    PrimaryAttributes,
    /// DA2 (`CSI > c`).
    SecondaryAttributes,
    /// XTVERSION (`CSI > q`).
    Version,
    /// OSC 10/11 `?`: foreground or background colour; `bel` = the query ended with BEL.
    Foreground {
        bel: bool,
    },
    Background {
        bel: bool,
    },
}

impl Query {
    /// The answer a terminal would give. Colours are the web app's default theme.
    pub fn reply(self, screen: &super::screen::Screen) -> Vec<u8> {
        let osc_end = |bel: bool| if bel { "\x07" } else { "\x1b\\" };
        match self {
            Query::CursorPosition { private } => {
                let (row, col) = screen.cursor_position();
                let mark = if private { "?" } else { "" };
                format!("\x1b[{mark}{};{}R", row + 1, col + 1).into_bytes()
            }
            Query::Status => b"\x1b[0n".to_vec(),
            Query::PrimaryAttributes => b"\x1b[?62;22c".to_vec(),
            Query::SecondaryAttributes => b"\x1b[>0;10;1c".to_vec(),
            Query::Version => format!("\x1bP>|tether {}\x1b\\", env!("CARGO_PKG_VERSION")).into_bytes(),
            Query::Foreground { bel } => format!("\x1b]10;rgb:d8d8/dede/e9e9{}", osc_end(bel)).into_bytes(),
            Query::Background { bel } => format!("\x1b]11;rgb:1010/1414/1818{}", osc_end(bel)).into_bytes(),
        }
    }
}

/// A run of output to pass on, or a query to answer, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Output(Vec<u8>),
    Query(Query),
}

/// Streaming query filter; sequences split across reads are held until complete.
#[derive(Debug)]
pub struct QueryFilter {
    state: EscapeState,
    pending: Vec<u8>,
}

impl Default for QueryFilter {
    fn default() -> Self {
        QueryFilter { state: EscapeState::Ground, pending: Vec::new() }
    }
}

impl QueryFilter {
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Piece>) {
        let mut run = Vec::with_capacity(input.len());
        while !input.is_empty() {
            // Fast path: plain output up to the next ESC is copied in one go.
            if self.state == EscapeState::Ground {
                let plain = input.iter().position(|&b| b == ESC).unwrap_or(input.len());
                run.extend_from_slice(&input[..plain]);
                input = &input[plain..];
                if input.is_empty() {
                    break;
                }
            }
            let byte = input[0];
            input = &input[1..];
            match self.state {
                EscapeState::Ground if byte == ESC => {
                    self.pending.push(byte);
                    self.state = EscapeState::Escape;
                }
                EscapeState::Ground => run.push(byte),
                EscapeState::Escape => {
                    self.pending.push(byte);
                    self.state = match byte {
                        b'[' => EscapeState::Csi,
                        b']' => EscapeState::Osc,
                        _ => self.pass(&mut run),
                    };
                }
                EscapeState::Csi => {
                    self.pending.push(byte);
                    if (0x40..=0x7e).contains(&byte) {
                        self.finish(csi_query(&self.pending), &mut run, out);
                    } else if self.pending.len() > MAX_CSI_BYTES {
                        self.state = self.pass(&mut run);
                    }
                }
                EscapeState::Osc => {
                    let after_esc = self.pending.last() == Some(&ESC);
                    self.pending.push(byte);
                    if byte == BEL || (after_esc && byte == b'\\') {
                        self.finish(osc_query(&self.pending), &mut run, out);
                    } else if after_esc || self.pending.len() > MAX_OSC_BYTES {
                        self.state = self.pass(&mut run);
                    }
                }
            }
        }
        if !run.is_empty() {
            out.push(Piece::Output(run));
        }
    }

    /// The output ended: whatever was held back (the start of a sequence that never finished)
    /// is output after all.
    pub fn end_of_output(&mut self) -> Option<Vec<u8>> {
        self.state = EscapeState::Ground;
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }

    /// The held sequence is not a query: pass it on unchanged.
    fn pass(&mut self, run: &mut Vec<u8>) -> EscapeState {
        run.append(&mut self.pending);
        EscapeState::Ground
    }

    fn finish(&mut self, query: Option<Query>, run: &mut Vec<u8>, out: &mut Vec<Piece>) {
        match query {
            Some(query) => {
                if !run.is_empty() {
                    out.push(Piece::Output(std::mem::take(run)));
                }
                out.push(Piece::Query(query));
                self.pending.clear();
                self.state = EscapeState::Ground;
            }
            None => self.state = self.pass(run),
        }
    }
}

fn csi_query(seq: &[u8]) -> Option<Query> {
    let (params, last) = (&seq[2..seq.len() - 1], seq[seq.len() - 1]);
    match (last, params) {
        (b'n', b"6") => Some(Query::CursorPosition { private: false }),
        (b'n', b"?6") => Some(Query::CursorPosition { private: true }),
        (b'n', b"5") => Some(Query::Status),
        (b'c', b"" | b"0") => Some(Query::PrimaryAttributes),
        (b'c', b">" | b">0") => Some(Query::SecondaryAttributes),
        (b'q', b">" | b">0") => Some(Query::Version),
        _ => None,
    }
}

fn osc_query(seq: &[u8]) -> Option<Query> {
    let bel = seq.last() == Some(&BEL);
    let body = &seq[2..seq.len() - if bel { 1 } else { 2 }];
    match body {
        b"10;?" => Some(Query::Foreground { bel }),
        b"11;?" => Some(Query::Background { bel }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<Piece> {
        let mut filter = QueryFilter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            filter.feed(chunk, &mut out);
        }
        out
    }

    #[test]
    fn queries_are_taken_out_in_order_even_when_split() {
        let pieces = run(&[b"ab\x1b[", b"6", b"ncd\x1b[>c\x1b]11;?\x07\x1b[31mred"]);
        assert_eq!(
            pieces,
            vec![
                Piece::Output(b"ab".to_vec()),
                Piece::Query(Query::CursorPosition { private: false }),
                Piece::Output(b"cd".to_vec()),
                Piece::Query(Query::SecondaryAttributes),
                Piece::Query(Query::Background { bel: true }),
                Piece::Output(b"\x1b[31mred".to_vec()),
            ]
        );
    }

    #[test]
    fn a_sequence_cut_off_by_the_end_of_output_is_kept() {
        let mut filter = QueryFilter::default();
        let mut out = Vec::new();
        filter.feed(b"tail\x1b[", &mut out);
        assert_eq!(out, vec![Piece::Output(b"tail".to_vec())]);
        assert_eq!(filter.end_of_output(), Some(b"\x1b[".to_vec()));
        assert_eq!(filter.end_of_output(), None);
    }

    #[test]
    fn other_sequences_pass_untouched() {
        let input: &[u8] = b"\x1b[?1049h\x1b]0;title\x07\x1bc\x1b[1;2H\x1b]10;#fff\x1b\\x";
        let out: Vec<u8> = run(&[input])
            .into_iter()
            .flat_map(|p| match p {
                Piece::Output(b) => b,
                Piece::Query(q) => panic!("not a query: {q:?}"),
            })
            .collect();
        assert_eq!(out, input);
    }

    #[test]
    fn cursor_position_reply_tracks_the_screen() {
        use super::super::screen::Screen;
        let mut screen = Screen::new(24, 80);
        screen.process(b"hello\r\nworld");
        assert_eq!(Query::CursorPosition { private: false }.reply(&screen), b"\x1b[2;6R");
        assert_eq!(screen.cursor_line(), "world");
        screen.process(b"\x1b[?1h");
        assert!(screen.application_cursor());
    }
}
