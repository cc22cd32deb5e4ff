//! What a client types into a session: named keys (`send key:ctrl+c`, the browser's key bar) and
//! the pieces `send` takes (text, keys, raw bytes), with the bytes a terminal sends for each.

use serde::{Deserialize, Serialize};

/// Largest input one `write` or `send` should carry: bigger input (an 8 MiB paste, a piped
/// `send`) goes as several paced ones.
pub const MAX_INPUT_CHUNK_BYTES: usize = 256 * 1024; // 256 KiB

/// A piece of input for `send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum InputChunk {
    /// Text typed as is (no newline added).
    Text(String),
    /// A named key, encoded by the agent for the terminal's current modes.
    Key(Key),
    /// Raw bytes, hex-encoded.
    Hex(String),
}

/// A named key (`send key:…`, the browser's key bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    Enter,
    Tab,
    ShiftTab,
    Esc,
    Backspace,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    Delete,
    Insert,
    /// Ctrl + a letter or one of `@[\]^_ ?`.
    Ctrl(char),
    /// Alt (Meta) + a character: ESC then the character.
    Alt(char),
}

impl Key {
    /// Parse the part after `key:` — `enter`, `ctrl+c`, `alt+x`, `shift+tab`, …
    pub fn parse(spec: &str) -> Result<Key, String> {
        let lower = spec.to_ascii_lowercase();
        let named = match lower.as_str() {
            "enter" | "return" => Some(Key::Enter),
            "tab" => Some(Key::Tab),
            "shift+tab" | "backtab" => Some(Key::ShiftTab),
            "esc" | "escape" => Some(Key::Esc),
            "backspace" | "bs" => Some(Key::Backspace),
            "up" => Some(Key::Up),
            "down" => Some(Key::Down),
            "left" => Some(Key::Left),
            "right" => Some(Key::Right),
            "home" => Some(Key::Home),
            "end" => Some(Key::End),
            "pageup" | "pgup" => Some(Key::PageUp),
            "pagedown" | "pgdn" => Some(Key::PageDown),
            "delete" | "del" => Some(Key::Delete),
            "insert" | "ins" => Some(Key::Insert),
            _ => None,
        };
        if let Some(key) = named {
            return Ok(key);
        }
        let single = |rest: &str| {
            let mut chars = rest.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        };
        if let Some(c) = lower.strip_prefix("ctrl+").and_then(single) {
            if c.is_ascii_lowercase() || "@[\\]^_ ?".contains(c) {
                return Ok(Key::Ctrl(c));
            }
        }
        if let Some(c) = spec.get(4..).filter(|_| lower.starts_with("alt+")).and_then(single) {
            return Ok(Key::Alt(c));
        }
        Err(format!(
            "unknown key {spec:?}: use enter, tab, shift+tab, esc, backspace, up, down, left, right, \
             home, end, pageup, pagedown, delete, insert, ctrl+<letter>, alt+<char>"
        ))
    }

    /// The bytes a terminal sends for this key. `application_cursor` is DECCKM: full-screen
    /// programs switch arrows to `ESC O x`.
    pub fn bytes(self, application_cursor: bool) -> Vec<u8> {
        let arrow = |c: u8| {
            if application_cursor {
                vec![0x1b, b'O', c]
            } else {
                vec![0x1b, b'[', c]
            }
        };
        match self {
            Key::Enter => b"\r".to_vec(),
            Key::Tab => b"\t".to_vec(),
            Key::ShiftTab => b"\x1b[Z".to_vec(),
            Key::Esc => b"\x1b".to_vec(),
            Key::Backspace => b"\x7f".to_vec(),
            Key::Up => arrow(b'A'),
            Key::Down => arrow(b'B'),
            Key::Right => arrow(b'C'),
            Key::Left => arrow(b'D'),
            Key::Home => arrow(b'H'),
            Key::End => arrow(b'F'),
            Key::PageUp => b"\x1b[5~".to_vec(),
            Key::PageDown => b"\x1b[6~".to_vec(),
            Key::Delete => b"\x1b[3~".to_vec(),
            Key::Insert => b"\x1b[2~".to_vec(),
            Key::Ctrl(c) => vec![match c {
                ' ' | '@' => 0,
                '?' => 0x7f,
                c => (c.to_ascii_uppercase() as u8) & 0x1f,
            }],
            Key::Alt(c) => {
                let mut bytes = vec![0x1b];
                bytes.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
                bytes
            }
        }
    }
}

/// Parse one `send` argument: `key:SPEC`, `hex:BYTES`, or text.
pub fn parse_input_chunk(arg: &str) -> Result<InputChunk, String> {
    if let Some(spec) = arg.strip_prefix("key:") {
        return Key::parse(spec).map(InputChunk::Key);
    }
    if let Some(hex) = arg.strip_prefix("hex:") {
        return match crate::hex::decode(hex) {
            Some(bytes) if !bytes.is_empty() => Ok(InputChunk::Hex(crate::hex::encode(&bytes))),
            _ => Err(format!("bad hex input {arg:?}: want an even number of hex digits")),
        };
    }
    Ok(InputChunk::Text(arg.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs_parse_and_encode() {
        assert_eq!(Key::parse("ctrl+c").map(|k| k.bytes(false)), Ok(vec![3]));
        assert_eq!(Key::parse("CTRL+]").map(|k| k.bytes(false)), Ok(vec![0x1d]));
        assert_eq!(Key::parse("up").map(|k| k.bytes(false)), Ok(b"\x1b[A".to_vec()));
        assert_eq!(Key::parse("up").map(|k| k.bytes(true)), Ok(b"\x1bOA".to_vec()));
        assert_eq!(Key::parse("alt+X").map(|k| k.bytes(false)), Ok(b"\x1bX".to_vec()));
        assert_eq!(Key::parse("shift+tab").map(|k| k.bytes(false)), Ok(b"\x1b[Z".to_vec()));
        assert!(Key::parse("ctrl+1").is_err());
        assert!(Key::parse("hyper+q").is_err());
        assert_eq!(parse_input_chunk("hex:1b5b41"), Ok(InputChunk::Hex("1b5b41".into())));
        assert!(parse_input_chunk("hex:1b5").is_err());
        assert_eq!(parse_input_chunk("echo hi"), Ok(InputChunk::Text("echo hi".into())));
    }
}
