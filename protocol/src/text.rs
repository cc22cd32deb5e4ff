//! A file's bytes as an editor's text, and the text back as bytes, with nothing changed outside
//! the edit: the one place that decides what may be edited at all.
//!
//! Invariants (each has a test below):
//! - `encode(decode(bytes))` is `bytes` for every editable file: CRLF or LF line endings, a
//!   missing final newline, a UTF-8 byte-order mark and tabs all come back as they were. The
//!   editor splits and joins lines with [`Editable::line_separator`] only, so a lone CR in an LF
//!   file (or a lone LF in a CRLF file) stays a character of its line.
//! - Only valid UTF-8 is editable. Anything else opens read-only and is never re-encoded: a
//!   save could not give back its bytes.
//! - A file that looks binary (a NUL byte near its start, as git and grep decide) is not shown
//!   as text at all.

/// Bigger files open read-only: an editor is not the tool for them, and a browser tab would
/// hold them several times over.
pub const MAX_EDITABLE_BYTES: u64 = 10 * 1000 * 1000; // 10 MB
/// Bigger files are not opened in the editor at all (download them instead).
pub const MAX_SHOWN_BYTES: u64 = 64 * 1024 * 1024; // 64 MiB
/// A NUL in this many first bytes makes a file binary.
const BINARY_SNIFF_BYTES: usize = 8 * 1024; // 8 KiB

const BOM: &str = "\u{feff}";

/// What the editor gets for a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    Editable(Editable),
    /// Shown, but nothing can save it; `text` is what can be shown (empty for binary).
    ReadOnly {
        text: String,
        why: ReadOnly,
    },
}

/// A file the editor may change and save.
#[derive(Debug, PartialEq, Eq)]
pub struct Editable {
    /// The text without its byte-order mark.
    pub text: String,
    /// The file began with a UTF-8 byte-order mark (written back before the text).
    pub bom: bool,
    /// `"\r\n"` when most line breaks are CRLF, else `"\n"`.
    pub line_separator: &'static str,
}

/// Why a file opened read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOnly {
    Binary,
    NotUtf8,
    TooBig,
}

impl ReadOnly {
    /// The note shown above the file.
    pub fn note(self) -> &'static str {
        match self {
            ReadOnly::Binary => "This file looks binary: it is not shown, and it cannot be saved from here.",
            ReadOnly::NotUtf8 => {
                "This file is not valid UTF-8: it is shown read-only (unreadable bytes as �) and is never re-encoded."
            }
            ReadOnly::TooBig => "This file is over 10 MB: it is shown read-only.",
        }
    }
}

/// Decide how the editor opens `bytes`.
pub fn decode(bytes: &[u8]) -> Opened {
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Opened::ReadOnly { text: String::new(), why: ReadOnly::Binary };
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => {
            return Opened::ReadOnly { text: String::from_utf8_lossy(bytes).into_owned(), why: ReadOnly::NotUtf8 }
        }
    };
    if bytes.len() as u64 > MAX_EDITABLE_BYTES {
        return Opened::ReadOnly { text: text.to_owned(), why: ReadOnly::TooBig };
    }
    let (bom, text) = match text.strip_prefix(BOM) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    Opened::Editable(Editable { text: text.to_owned(), bom, line_separator: line_separator(text) })
}

/// The file's bytes for the editor's text (joined with the file's own separator).
pub fn encode(text: &str, bom: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + BOM.len());
    if bom {
        bytes.extend_from_slice(BOM.as_bytes());
    }
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

/// `"\r\n"` when CRLF line breaks outnumber bare LFs, else `"\n"` (also for a file with none).
fn line_separator(text: &str) -> &'static str {
    let lf = text.matches('\n').count();
    let crlf = text.matches("\r\n").count();
    if crlf > lf - crlf {
        "\r\n"
    } else {
        "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn editable(bytes: &[u8]) -> Editable {
        match decode(bytes) {
            Opened::Editable(editable) => editable,
            other => panic!("{bytes:?} should be editable: {other:?}"),
        }
    }

    /// What a CodeMirror document does with the text: split on the separator, join with it.
    fn through_editor(editable: &Editable) -> String {
        let lines: Vec<&str> = editable.text.split(editable.line_separator).collect();
        lines.join(editable.line_separator)
    }

    #[test]
    fn every_editable_file_comes_back_byte_for_byte() {
        let files: [&[u8]; 9] = [
            b"",
            b"no final newline",
            b"unix\nlines\n",
            b"windows\r\nlines\r\nno final newline",
            b"mixed\r\nmostly\r\ncrlf\nhere\r\n",
            b"a lone\rcarriage return\n",
            "\u{feff}bom\r\nand crlf\r\n".as_bytes(),
            b"\tindented\n\t\twith tabs\n    and spaces\n",
            "ünïcödé ✓ 🦀\n".as_bytes(),
        ];
        for bytes in files {
            let editable = editable(bytes);
            assert_eq!(encode(&through_editor(&editable), editable.bom), bytes, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn the_separator_is_what_most_lines_end_with() {
        assert_eq!(editable(b"a\r\nb\r\nc\n").line_separator, "\r\n");
        assert_eq!(editable(b"a\nb\nc\r\n").line_separator, "\n");
        assert_eq!(editable(b"one line").line_separator, "\n");
    }

    #[test]
    fn a_bom_is_kept_out_of_the_text_and_written_back() {
        let editable = editable("\u{feff}x\n".as_bytes());
        assert!(editable.bom);
        assert_eq!(editable.text, "x\n");
        assert_eq!(encode("y\n", true), "\u{feff}y\n".as_bytes());
    }

    #[test]
    fn latin1_opens_read_only_and_binary_is_not_shown() {
        let latin1 = b"caf\xe9 cr\xe8me\n";
        assert_eq!(
            decode(latin1),
            Opened::ReadOnly { text: "caf\u{fffd} cr\u{fffd}me\n".into(), why: ReadOnly::NotUtf8 }
        );
        let binary = b"\x7fELF\x02\x01\x01\x00\x00\x00";
        assert_eq!(decode(binary), Opened::ReadOnly { text: String::new(), why: ReadOnly::Binary });
    }

    #[test]
    fn a_file_over_the_limit_is_read_only() {
        let big = vec![b'x'; MAX_EDITABLE_BYTES as usize + 1];
        assert!(matches!(decode(&big), Opened::ReadOnly { why: ReadOnly::TooBig, .. }));
        let at_limit = vec![b'x'; MAX_EDITABLE_BYTES as usize];
        assert!(matches!(decode(&at_limit), Opened::Editable(_)));
    }
}
