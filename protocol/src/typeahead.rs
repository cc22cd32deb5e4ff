//! Predictive local echo, sans-IO: on a slow link, what a typed key will most likely show is
//! shown at once, and taken back the moment the host's output says otherwise — as VS Code's
//! terminal typeahead and mosh do. This module decides what to predict and reads the host's
//! output against it; the page draws the prediction over the terminal (never into it) and asks
//! this module what to draw.
//!
//! Invariants:
//! - Nothing predicted is ever written into the terminal: the screen holds only what the host
//!   sent, so a wrong guess can never stay on it. A prediction is dropped as soon as output
//!   arrives that is not its echo.
//! - Predictions are shown only while the line is known to echo: after Enter, after any key that
//!   is not a character or Backspace, after output that was not the expected echo, or after an
//!   echo that never came, nothing is shown until a typed key's echo has come back exactly as
//!   expected. So at a password prompt (no echo) nothing typed is ever shown.
//! - A prediction shown is exactly the keys typed and not yet echoed, in order.

use std::collections::VecDeque;

/// Below this round trip, echoes come soon enough: nothing is predicted.
pub const MIN_ROUND_TRIP_MS: u64 = 30;
/// An echo later than this (beyond the round trip) is not coming: predictions are dropped.
pub const ECHO_GRACE_MS: u64 = 1_000;

/// The echoes a line editor gives for Backspace at the end of a line.
const ERASE_ECHOES: [&[u8]; 3] = [b"\x08\x1b[K", b"\x08 \x08", b"\x08\x1b[1P"];

/// A key typed and not yet echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Char(char),
    Backspace,
}

/// What to draw over the terminal at its cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prediction {
    /// Cells left of the cursor the prediction erased (Backspace past what was predicted).
    pub erased: usize,
    /// The characters predicted, drawn from `erased` cells left of the cursor.
    pub text: String,
}

impl Prediction {
    pub fn is_empty(&self) -> bool {
        self.erased == 0 && self.text.is_empty()
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
}

impl Typeahead {
    pub fn new() -> Typeahead {
        Typeahead::default()
    }

    /// Input sent to the program at `now_ms`. A character or Backspace is expected back as its
    /// echo; anything else (Enter, arrows, control keys, a paste) makes the line unknown again.
    pub fn typed(&mut self, bytes: &[u8], now_ms: u64) {
        let key = match std::str::from_utf8(bytes).ok().map(|s| {
            let mut chars = s.chars();
            (chars.next(), chars.next())
        }) {
            Some((Some(c), None)) if !c.is_control() => Some(Key::Char(c)),
            Some((Some('\x7f' | '\x08'), None)) => Some(Key::Backspace),
            _ => None,
        };
        match key {
            Some(key) => self.pending.push_back((key, now_ms)),
            None => self.reset(),
        }
    }

    /// Output from the host, in order: the echoes it carries confirm predictions (and make the
    /// line trusted); anything else drops them.
    pub fn output(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let Some(&(key, _)) = self.pending.front() else { return };
            let step = match key {
                Key::Char(c) => {
                    let mut utf8 = [0u8; 4];
                    self.match_echo(&[c.encode_utf8(&mut utf8).as_bytes()], bytes)
                }
                Key::Backspace => self.match_echo(&ERASE_ECHOES, bytes),
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

    /// Drop predictions whose echo is overdue at `now_ms` (the round trip being `round_trip_ms`).
    pub fn expire(&mut self, now_ms: u64, round_trip_ms: u64) {
        let overdue = self.pending.front().is_some_and(|&(_, at)| now_ms >= at + round_trip_ms + ECHO_GRACE_MS);
        if overdue {
            self.reset();
        }
    }

    /// When `expire` should next be asked, if anything is pending.
    pub fn next_expiry(&self, round_trip_ms: u64) -> Option<u64> {
        self.pending.front().map(|&(_, at)| at + round_trip_ms + ECHO_GRACE_MS)
    }

    /// What to draw now, given the round trip: nothing when it is short or the line is not
    /// trusted.
    pub fn prediction(&self, round_trip_ms: u64) -> Prediction {
        let mut shown = Prediction::default();
        if !self.confident || round_trip_ms < MIN_ROUND_TRIP_MS {
            return shown;
        }
        for &(key, _) in &self.pending {
            match key {
                Key::Char(c) => shown.text.push(c),
                Key::Backspace => {
                    if shown.text.pop().is_none() {
                        shown.erased += 1;
                    }
                }
            }
        }
        shown
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

    fn shown(t: &Typeahead) -> (usize, String) {
        let p = t.prediction(RTT);
        (p.erased, p.text)
    }

    /// A line that has echoed once: predictions show from then on.
    fn trusted() -> Typeahead {
        let mut t = Typeahead::new();
        t.typed(b"l", 0);
        assert_eq!(shown(&t), (0, String::new()), "nothing before the line is known to echo");
        t.output(b"l");
        t
    }

    #[test]
    fn keys_show_at_once_and_go_when_their_echo_comes() {
        let mut t = trusted();
        t.typed(b"s", 10);
        t.typed(b" ", 11);
        assert_eq!(shown(&t), (0, "s ".into()));
        t.output(b"s");
        assert_eq!(shown(&t), (0, " ".into()));
        t.output(b" ");
        assert_eq!(shown(&t), (0, String::new()));
        t.typed("é".as_bytes(), 12);
        t.output(&"é".as_bytes()[..1]);
        assert_eq!(shown(&t), (0, "é".into()), "half an echo confirms nothing yet");
        t.output(&"é".as_bytes()[1..]);
        assert!(t.prediction(RTT).is_empty());
    }

    #[test]
    fn backspace_takes_back_a_prediction_or_erases_before_the_cursor() {
        let mut t = trusted();
        t.typed(b"ab", 0); // a paste: the line is unknown again
        assert!(t.prediction(RTT).is_empty());
        let mut t = trusted();
        t.typed(b"a", 0);
        t.typed(b"\x7f", 1);
        t.typed(b"\x7f", 2);
        assert_eq!(shown(&t), (1, String::new()), "the second erases what the host shows");
        t.output(b"a\x08\x1b[K\x08");
        assert_eq!(shown(&t), (1, String::new()), "an erase's echo split across messages");
        t.output(b" \x08");
        assert!(t.prediction(RTT).is_empty());
        t.typed(b"x", 3);
        assert_eq!(shown(&t), (0, "x".into()), "still trusted");
    }

    #[test]
    fn output_that_is_not_the_echo_drops_every_prediction_until_an_echo_is_seen_again() {
        let mut t = trusted();
        t.typed(b"a", 0);
        t.typed(b"b", 1);
        t.output(b"\x1b[2K\r$ ab"); // a redraw, not an echo
        assert!(t.prediction(RTT).is_empty());
        t.typed(b"c", 2);
        assert!(t.prediction(RTT).is_empty(), "not shown: the line is not trusted");
        t.output(b"c");
        t.typed(b"d", 3);
        assert_eq!(shown(&t), (0, "d".into()));
    }

    #[test]
    fn enter_and_other_keys_end_trust_so_a_password_prompt_shows_nothing() {
        let mut t = trusted();
        t.typed(b"\r", 0);
        t.output(b"\r\nPassword: ");
        for (i, key) in [b"s", b"e", b"c"].iter().enumerate() {
            t.typed(*key, i as u64);
            assert!(t.prediction(RTT).is_empty(), "no echo has been seen since Enter");
        }
        let mut t = trusted();
        t.typed(b"\x1b[A", 0); // up: the shell redraws the line
        t.typed(b"x", 1);
        assert!(t.prediction(RTT).is_empty());
    }

    #[test]
    fn an_echo_that_never_comes_is_given_up_and_a_short_round_trip_predicts_nothing() {
        let mut t = trusted();
        t.typed(b"a", 1_000);
        assert_eq!(t.next_expiry(RTT), Some(1_000 + RTT + ECHO_GRACE_MS));
        t.expire(1_000 + RTT + ECHO_GRACE_MS - 1, RTT);
        assert_eq!(shown(&t), (0, "a".into()));
        t.expire(1_000 + RTT + ECHO_GRACE_MS, RTT);
        assert!(t.prediction(RTT).is_empty());
        t.typed(b"b", 3_000);
        assert!(t.prediction(RTT).is_empty(), "not trusted after a lost echo");

        let mut t = trusted();
        t.typed(b"a", 0);
        assert!(t.prediction(MIN_ROUND_TRIP_MS - 1).is_empty());
        assert_eq!(t.prediction(MIN_ROUND_TRIP_MS).text, "a");
    }
}
