//! The grammar of terminal escape sequences, as far as the agent must know it: shared by the
//! host's query filter (`host::session::terminal`) and `tether logs` (`plain_text`).

pub const ESC: u8 = 0x1b;
pub const BEL: u8 = 0x07;

/// Where a scanner is in the output: plain text, or inside an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeState {
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC [`, until a final byte 0x40..=0x7e.
    Csi,
    /// After `ESC ]`, until BEL or `ESC \`.
    Osc,
}

/// Raw output → readable text: escape sequences removed, `\r\n` → `\n`, and a line rewritten
/// with `\r` (progress bars) keeps only its last version.
/// Text from a host (a title, a file name, an error) as it may reach the user's terminal: every
/// control character — C0 but tab, DEL, and C1 such as U+009B, the 8-bit CSI — written out
/// escaped (`\u{1b}`) so that nothing a host says can drive the terminal it is printed on.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

pub fn plain_text(raw: &[u8]) -> String {
    let mut stripped = Vec::with_capacity(raw.len());
    let mut state = EscapeState::Ground;
    let mut prev = 0u8;
    for &byte in raw {
        state = match (state, byte) {
            (EscapeState::Ground, ESC) => EscapeState::Escape,
            (EscapeState::Ground, _) => {
                if byte == b'\n' || byte == b'\r' || byte == b'\t' || byte >= 0x20 {
                    stripped.push(byte);
                }
                EscapeState::Ground
            }
            (EscapeState::Escape, b'[') => EscapeState::Csi,
            (EscapeState::Escape, b']') => EscapeState::Osc,
            (EscapeState::Escape, _) => EscapeState::Ground,
            (EscapeState::Csi, 0x40..=0x7e) => EscapeState::Ground,
            (EscapeState::Csi, _) => EscapeState::Csi,
            (EscapeState::Osc, BEL) => EscapeState::Ground,
            (EscapeState::Osc, b'\\') if prev == ESC => EscapeState::Ground,
            (EscapeState::Osc, _) => EscapeState::Osc,
        };
        prev = byte;
    }
    let text = String::from_utf8_lossy(&stripped);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.rsplit('\r').next().unwrap_or(line);
        // C1 controls (U+0080..U+009F, such as the 8-bit CSI U+009B) are escapes too.
        out.extend(line.chars().filter(|c| !('\u{80}'..='\u{9f}').contains(c)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_text_is_printed_with_its_controls_escaped() {
        assert_eq!(printable("a\tb é"), "a\tb é");
        assert_eq!(printable("x\u{1b}[31m\u{9b}2J\u{7}\n"), "x\\u{1b}[31m\\u{9b}2J\\u{7}\\n");
        assert_eq!(plain_text("a\u{9b}2Jb".as_bytes()), "a2Jb", "C1 controls go with the other escapes");
    }

    #[test]
    fn plain_text_strips_colour_and_keeps_last_rewrite() {
        assert_eq!(plain_text(b"\x1b[32mok\x1b[0m\r\n10%\r50%\r100%\r\nend"), "ok\n100%\nend");
    }
}
