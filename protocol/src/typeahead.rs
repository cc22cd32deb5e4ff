//! Predictive local echo, sans-IO: on a slow link, what a typed key will most likely show is
//! shown at once, and taken back the moment the host's output says otherwise — as VS Code's
//! terminal typeahead and mosh do. This module decides what to predict and reads the host's
//! output against it; the page draws the prediction over the terminal (never into it) and asks
//! this module what to draw, giving it the cursor's line as the terminal shows it.
//!
//! Invariants:
//! - Nothing predicted is ever written into the terminal: the screen holds only what the host
//!   sent, so a wrong guess can never stay on it. A prediction is dropped as soon as output
//!   arrives that is not its echo.
//! - Predictions are shown only while the line is known to echo: after Enter, after any key that
//!   is not predicted, after output that was not the expected echo, or after an echo that never
//!   came, nothing is shown until a typed key's echo has come back exactly as expected. So at a
//!   password prompt (no echo) nothing typed is ever shown.
//! - Predicted keys are the ones whose effect the line tells: a character or Backspace at the
//!   end of the line, Left over a cell of it, Right over a written cell. Anything else (Enter,
//!   Up, a paste, a character typed mid-line, which a line editor redraws its own way) is not
//!   predicted and ends trust.
//! - A prediction shown is the line as the terminal showed it when the oldest pending key was
//!   typed, edited by exactly the keys typed and not yet echoed, in order. Output that is their
//!   echo moves the terminal's line along the same edits (anything else resets), so the drawn
//!   cells are those where the two differ, even while an echo is only half there.

use std::collections::VecDeque;

/// Below this round trip, echoes come soon enough: nothing is predicted.
pub const MIN_ROUND_TRIP_MS: u64 = 30;
/// An echo later than this (beyond the round trip) is not coming: predictions are dropped.
pub const ECHO_GRACE_MS: u64 = 1_000;

/// The echoes a line editor gives for Backspace at the end of a line.
const ERASE_ECHOES: [&[u8]; 3] = [b"\x08\x1b[K", b"\x08 \x08", b"\x08\x1b[1P"];
/// The echoes of Left: a backspace (readline) or the cursor key's own sequence.
const LEFT_ECHOES: [&[u8]; 2] = [b"\x08", b"\x1b[D"];
/// The echo of Right besides writing the character it steps over again (readline's way).
const RIGHT_ECHO: &[u8] = b"\x1b[C";

/// The cursor's line as the terminal shows it, one character per cell: every cell up to the
/// cursor, then what is written right of it (trailing blanks left off).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    pub cells: Vec<char>,
    /// The cursor's cell (`cells.len()` or less).
    pub cursor: usize,
}

impl Line {
    pub fn new(text: &str, cursor: usize) -> Line {
        Line { cells: text.chars().collect(), cursor }
    }
}

/// A key as typed, before the line says what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Press {
    Char(char),
    Backspace,
    Left,
    Right,
}

impl Press {
    fn parse(bytes: &[u8]) -> Option<Press> {
        match bytes {
            b"\x7f" | b"\x08" => Some(Press::Backspace),
            b"\x1b[D" | b"\x1bOD" => Some(Press::Left),
            b"\x1b[C" | b"\x1bOC" => Some(Press::Right),
            _ => {
                let mut chars = std::str::from_utf8(bytes).ok()?.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_control() => Some(Press::Char(c)),
                    _ => None,
                }
            }
        }
    }
}

/// A key typed and not yet echoed, with what it does to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Char(char),
    Backspace,
    Left,
    /// Right, stepping over this character (which readline writes again as its echo).
    Right(char),
}

/// One cell of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub ch: char,
    /// Differs from what the terminal shows there (a predicted character, or a blank where
    /// Backspace took one).
    pub predicted: bool,
}

/// What to draw over the terminal's cursor line: the cells from `start` on, and the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prediction {
    /// The first cell drawn.
    pub start: usize,
    /// The cells drawn, covering every cell that differs, the terminal's cursor cell and the
    /// predicted cursor's.
    pub cells: Vec<Cell>,
    /// Where the cursor will be.
    pub cursor: usize,
}

impl Prediction {
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The predicted characters, in order (blanks where Backspace erased).
    pub fn text(&self) -> String {
        self.cells.iter().filter(|c| c.predicted).map(|c| c.ch).collect()
    }
}

/// One terminal's predictions.
#[derive(Debug, Default)]
pub struct Typeahead {
    /// Keys sent whose echo has not come, oldest first, with when each was typed.
    pending: VecDeque<(Key, u64)>,
    /// The start of the oldest pending key's echo, seen already (an echo split across messages).
    seen: Vec<u8>,
    /// The line is known to echo what is typed: predictions are shown.
    confident: bool,
    /// The line once every pending key has taken effect (meaningless while none is pending).
    edited: Line,
}

impl Typeahead {
    pub fn new() -> Typeahead {
        Typeahead::default()
    }

    /// Input sent to the program at `now_ms`, the terminal showing `line`. A key whose effect
    /// the line tells is expected back as its echo; anything else (Enter, Up, control keys, a
    /// paste, a character mid-line) makes the line unknown again.
    pub fn typed(&mut self, bytes: &[u8], now_ms: u64, line: &Line) {
        let mut edited = if self.pending.is_empty() { line.clone() } else { self.edited.clone() };
        match Press::parse(bytes).and_then(|press| edited.apply(press)) {
            Some(key) => {
                self.pending.push_back((key, now_ms));
                self.edited = edited;
            }
            None => self.reset(),
        }
    }

    /// Output from the host, in order: the echoes it carries confirm predictions (and make the
    /// line trusted); anything else drops them.
    pub fn output(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(&(key, _)) = self.pending.front() else { return };
            let mut utf8 = [0u8; 4];
            let step = match key {
                Key::Char(c) => self.match_echo(&[c.encode_utf8(&mut utf8).as_bytes()], bytes),
                Key::Backspace => self.match_echo(&ERASE_ECHOES, bytes),
                Key::Left => self.match_echo(&LEFT_ECHOES, bytes),
                Key::Right(over) => self.match_echo(&[RIGHT_ECHO, over.encode_utf8(&mut utf8).as_bytes()], bytes),
            };
            match step {
                Echo::Whole(used) => {
                    self.pending.pop_front();
                    self.seen.clear();
                    self.confident = true;
                    bytes = &bytes[used..];
                }
                Echo::Partial => return,
                Echo::Other => return self.reset(),
            }
        }
    }

    /// Whether a key typed waits for its echo.
    pub fn is_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Drop predictions whose echo is overdue at `now_ms` (the round trip being `round_trip_ms`).
    pub fn expire(&mut self, now_ms: u64, round_trip_ms: u64) {
        if self.next_expiry(round_trip_ms).is_some_and(|at| now_ms >= at) {
            self.reset();
        }
    }

    /// When `expire` should next be asked, if anything is pending.
    pub fn next_expiry(&self, round_trip_ms: u64) -> Option<u64> {
        self.pending.front().map(|&(_, at)| at + round_trip_ms + ECHO_GRACE_MS)
    }

    /// What to draw over `line` (the cursor's line as the terminal shows it now), given the
    /// round trip: nothing when it is short or the line is not trusted.
    pub fn prediction(&self, round_trip_ms: u64, line: &Line) -> Prediction {
        if !self.confident || round_trip_ms < MIN_ROUND_TRIP_MS || self.pending.is_empty() {
            return Prediction::default();
        }
        let edited = &self.edited;
        let width = edited.cells.len().max(line.cells.len());
        let differs = |i: &usize| edited.cells.get(*i) != line.cells.get(*i);
        let first = (0..width).find(differs);
        let last = (0..width).rfind(differs);
        let start = first.unwrap_or(edited.cursor).min(edited.cursor).min(line.cursor);
        let end = last.map_or(0, |i| i + 1).max(edited.cursor + 1).max(line.cursor + 1);
        let cells = (start..end)
            .map(|i| Cell { ch: edited.cells.get(i).copied().unwrap_or(' '), predicted: differs(&i) })
            .collect();
        Prediction { start, cells, cursor: edited.cursor }
    }

    /// Forget every prediction and trust the line no more (a key that is not predicted, a
    /// screen the page will not predict on, output that was not the echo).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.seen.clear();
        self.confident = false;
    }

    /// How `bytes` go on with the oldest pending key's echo, one of `echoes` (that begins with
    /// the bytes of it `seen` already).
    fn match_echo(&mut self, echoes: &[&[u8]], bytes: &[u8]) -> Echo {
        for echo in echoes {
            let Some(rest) = echo.strip_prefix(&self.seen[..]) else { continue };
            let n = rest.len().min(bytes.len());
            if rest[..n] != bytes[..n] {
                continue;
            }
            if n == rest.len() {
                return Echo::Whole(n);
            }
            self.seen.extend_from_slice(&bytes[..n]);
            return Echo::Partial;
        }
        Echo::Other
    }
}

impl Line {
    /// What `press` does to the line, if the line tells (see the module's invariants).
    fn apply(&mut self, press: Press) -> Option<Key> {
        if self.cursor > self.cells.len() {
            return None;
        }
        let at_end = self.cursor == self.cells.len();
        match press {
            Press::Char(c) if at_end => {
                self.cells.push(c);
                self.cursor += 1;
                Some(Key::Char(c))
            }
            Press::Backspace if at_end && self.cursor > 0 => {
                self.cells.pop();
                self.cursor -= 1;
                Some(Key::Backspace)
            }
            Press::Left if self.cursor > 0 => {
                self.cursor -= 1;
                Some(Key::Left)
            }
            Press::Right if !at_end => {
                let over = self.cells[self.cursor];
                self.cursor += 1;
                Some(Key::Right(over))
            }
            _ => None,
        }
    }
}

enum Echo {
    /// The echo is complete, using this many bytes.
    Whole(usize),
    /// All the bytes were the start of the echo.
    Partial,
    /// Not the echo.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: u64 = 100;

    /// A terminal line for the tests: the prompt, what the host echoed, the cursor.
    struct Term {
        line: Line,
    }

    impl Term {
        fn new() -> Term {
            Term { line: Line::new("$ ", 2) }
        }

        /// The host's output reaches the terminal (the few sequences these tests use).
        fn show(&mut self, t: &mut Typeahead, bytes: &[u8]) {
            t.output(bytes);
            let text = String::from_utf8_lossy(bytes).into_owned();
            let mut rest = text.as_str();
            while let Some(c) = rest.chars().next() {
                let line = &mut self.line;
                if let Some(after) = rest.strip_prefix("\x1b[K") {
                    line.cells.truncate(line.cursor);
                    rest = after;
                } else if let Some(after) = rest.strip_prefix("\x1b[D") {
                    line.cursor -= 1;
                    rest = after;
                } else if let Some(after) = rest.strip_prefix("\x1b[C") {
                    line.cursor += 1;
                    rest = after;
                } else {
                    match c {
                        '\x08' => line.cursor -= 1,
                        c if line.cursor < line.cells.len() => line.cells[line.cursor] = c,
                        c => line.cells.push(c),
                    }
                    if c != '\x08' {
                        line.cursor += 1;
                    }
                    rest = &rest[c.len_utf8()..];
                }
            }
            // The right part is kept without trailing blanks, as the page reads it.
            while self.line.cells.len() > self.line.cursor && self.line.cells.last() == Some(&' ') {
                self.line.cells.pop();
            }
        }

        fn typed(&self, t: &mut Typeahead, bytes: &[u8], at: u64) {
            t.typed(bytes, at, &self.line);
        }

        /// The predicted characters and the predicted cursor.
        fn shown(&self, t: &Typeahead) -> (String, usize) {
            let p = t.prediction(RTT, &self.line);
            (p.text(), if p.is_empty() { self.line.cursor } else { p.cursor })
        }
    }

    /// A line that has echoed once: predictions show from then on.
    fn trusted() -> (Typeahead, Term) {
        let (mut t, mut term) = (Typeahead::new(), Term::new());
        term.typed(&mut t, b"l", 0);
        assert!(t.prediction(RTT, &term.line).is_empty(), "nothing before the line echoes");
        term.show(&mut t, b"l");
        (t, term)
    }

    #[test]
    fn keys_show_at_once_and_go_when_their_echo_comes() {
        let (mut t, mut term) = trusted();
        term.typed(&mut t, b"s", 10);
        term.typed(&mut t, b" ", 11);
        assert_eq!(term.shown(&t), ("s ".into(), 5));
        let p = t.prediction(RTT, &term.line);
        assert_eq!((p.start, p.cells.len()), (3, 3), "the typed cells and the cursor's after them");
        term.show(&mut t, b"s");
        assert_eq!(term.shown(&t), (" ".into(), 5));
        term.show(&mut t, b" ");
        assert!(t.prediction(RTT, &term.line).is_empty());
        term.typed(&mut t, "é".as_bytes(), 12);
        term.show(&mut t, &"é".as_bytes()[..1]);
        assert_eq!(term.shown(&t).0, "é", "half an echo confirms nothing yet");
        term.show(&mut t, &"é".as_bytes()[1..]);
        assert!(t.prediction(RTT, &term.line).is_empty());
    }

    #[test]
    fn backspace_takes_back_a_prediction_or_erases_before_the_cursor() {
        let (mut t, term) = trusted();
        term.typed(&mut t, b"ab", 0); // a paste: the line is unknown again
        assert!(t.prediction(RTT, &term.line).is_empty());
        let (mut t, mut term) = trusted();
        term.typed(&mut t, b"a", 0);
        term.typed(&mut t, b"\x7f", 1);
        term.typed(&mut t, b"\x7f", 2);
        assert_eq!(term.shown(&t), (" ".into(), 2), "the second erases what the host shows");
        term.show(&mut t, b"a\x08\x1b[K\x08");
        assert_eq!(term.shown(&t), (" ".into(), 2), "an erase's echo split across messages");
        term.show(&mut t, b" \x08");
        assert!(t.prediction(RTT, &term.line).is_empty());
        term.typed(&mut t, b"x", 3);
        assert_eq!(term.shown(&t), ("x".into(), 3), "still trusted");
    }

    #[test]
    fn left_and_right_move_the_cursor_over_the_line_and_a_character_mid_line_is_not_guessed() {
        let (mut t, mut term) = trusted(); // "$ l", cursor 3
        term.typed(&mut t, b"s", 0);
        term.typed(&mut t, b"\x1b[D", 1);
        term.typed(&mut t, b"\x1b[D", 2);
        assert_eq!(term.shown(&t), ("s".into(), 2));
        let p = t.prediction(RTT, &term.line);
        assert_eq!(p.start, 2, "drawn from the predicted cursor");
        assert_eq!(p.cells.iter().map(|c| c.ch).collect::<String>(), "ls", "the cells under it kept");
        term.show(&mut t, b"s\x08");
        assert_eq!(term.shown(&t), ("".into(), 2), "one Left echoed, one to come");
        term.show(&mut t, b"\x1b[D");
        assert!(t.prediction(RTT, &term.line).is_empty());
        // Right over "l", then over "s": readline writes each again as it steps over it.
        term.typed(&mut t, b"\x1bOC", 3);
        term.typed(&mut t, b"\x1b[C", 4);
        assert_eq!(term.shown(&t), ("".into(), 4));
        term.show(&mut t, b"l");
        term.show(&mut t, b"\x1b[C");
        assert!(t.prediction(RTT, &term.line).is_empty());
        assert_eq!(term.line.cursor, 4);
        // Right at the end of the line moves nothing: not predicted, and trust ends.
        term.typed(&mut t, b"\x1b[C", 5);
        term.typed(&mut t, b"x", 6);
        assert!(t.prediction(RTT, &term.line).is_empty());
        term.show(&mut t, b"x");
        // Mid-line, a character is not guessed (the editor redraws the rest its own way).
        term.typed(&mut t, b"\x1b[D", 7);
        assert_eq!(term.shown(&t).1, 4);
        term.typed(&mut t, b"z", 8);
        assert!(t.prediction(RTT, &term.line).is_empty());
        // Left at the first cell: nothing to move over.
        let (mut t, mut term) = (Typeahead::new(), Term { line: Line::new("", 0) });
        term.typed(&mut t, b"a", 0);
        term.show(&mut t, b"a");
        term.typed(&mut t, b"\x1b[D", 1);
        term.typed(&mut t, b"\x1b[D", 2);
        assert!(t.prediction(RTT, &term.line).is_empty());
    }

    #[test]
    fn output_that_is_not_the_echo_drops_every_prediction_until_an_echo_is_seen_again() {
        let (mut t, mut term) = trusted();
        term.typed(&mut t, b"a", 0);
        term.typed(&mut t, b"b", 1);
        term.show(&mut t, b"\x08\x08\x08lab"); // a redraw, not an echo
        assert!(t.prediction(RTT, &term.line).is_empty());
        term.typed(&mut t, b"c", 2);
        assert!(t.prediction(RTT, &term.line).is_empty(), "not shown: the line is not trusted");
        term.show(&mut t, b"c");
        term.typed(&mut t, b"d", 3);
        assert_eq!(term.shown(&t).0, "d");
    }

    #[test]
    fn enter_and_other_keys_end_trust_so_a_password_prompt_shows_nothing() {
        let (mut t, mut term) = trusted();
        term.typed(&mut t, b"\r", 0);
        t.output(b"\r\nPassword: ");
        term.line = Line::new("Password: ", 10);
        for (i, key) in [b"s", b"e", b"c"].iter().enumerate() {
            term.typed(&mut t, *key, i as u64);
            assert!(t.prediction(RTT, &term.line).is_empty(), "no echo has been seen since Enter");
        }
        let (mut t, term) = trusted();
        term.typed(&mut t, b"\x1b[A", 0); // up: the shell redraws the line
        term.typed(&mut t, b"x", 1);
        assert!(t.prediction(RTT, &term.line).is_empty());
    }

    #[test]
    fn an_echo_that_never_comes_is_given_up_and_a_short_round_trip_predicts_nothing() {
        let (mut t, term) = trusted();
        term.typed(&mut t, b"a", 1_000);
        assert_eq!(t.next_expiry(RTT), Some(1_000 + RTT + ECHO_GRACE_MS));
        t.expire(1_000 + RTT + ECHO_GRACE_MS - 1, RTT);
        assert_eq!(term.shown(&t).0, "a");
        t.expire(1_000 + RTT + ECHO_GRACE_MS, RTT);
        assert!(t.prediction(RTT, &term.line).is_empty());
        term.typed(&mut t, b"b", 3_000);
        assert!(t.prediction(RTT, &term.line).is_empty(), "not trusted after a lost echo");

        let (mut t, term) = trusted();
        term.typed(&mut t, b"a", 0);
        assert!(t.prediction(MIN_ROUND_TRIP_MS - 1, &term.line).is_empty());
        assert_eq!(t.prediction(MIN_ROUND_TRIP_MS, &term.line).text(), "a");
    }
}
