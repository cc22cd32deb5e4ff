//! The session API: what a client (local CLI over the Unix socket, remote CLI or browser over the
//! secure channel) asks of a host agent, and what it answers. Plain data, carried as the `body`
//! of `cmd` frames; bulk bytes (input, log contents) ride in the frame payload.

use serde::{Deserialize, Serialize};

use crate::error::FrameError;
use crate::frame::{Frame, Header};

/// Lifecycle of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Recorded, process not started yet.
    Created,
    Running,
    /// Asked to stop; waiting out the grace period.
    Stopping,
    /// Exited by itself or on SIGTERM.
    Stopped,
    /// Had to be killed with SIGKILL.
    Killed,
    /// Could not be started.
    Failed,
    /// The agent lost track of it (the agent died while it ran).
    Unknown,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 7] =
        [Self::Created, Self::Running, Self::Stopping, Self::Stopped, Self::Killed, Self::Failed, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Killed => "killed",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the process may still produce output.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Created | Self::Running | Self::Stopping)
    }
}

/// Everything a client may want to show about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: String,
    pub title: String,
    pub command: Vec<String>,
    pub cwd: String,
    pub pid: Option<u32>,
    pub status: SessionStatus,
    /// Exit code; 128 + N when ended by signal N.
    pub exit_code: Option<i32>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub ended_at: Option<u64>,
    /// Bytes of output so far (= the next output sequence number).
    pub output_bytes: u64,
    /// The program seems to wait for input (prompt pattern + silence); `input_reason` says which.
    pub waiting_for_input: bool,
    pub input_reason: Option<String>,
    /// Notify (hook, desktop) when this session waits for input or ends.
    #[serde(default)]
    pub notify: bool,
}

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

/// Requests from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start a session; an empty `command` means the user's shell.
    Start {
        command: Vec<String>,
        title: Option<String>,
        cwd: Option<String>,
        cols: u16,
        rows: u16,
        /// Override the agent's `notify_by_default`.
        notify: Option<bool>,
    },
    List {
        statuses: Vec<SessionStatus>,
        search: Option<String>,
        limit: Option<usize>,
    },
    /// Session by id or unique prefix; the newest session when `id` is absent.
    Get {
        id: Option<String>,
    },
    Send {
        session: String,
        chunks: Vec<InputChunk>,
    },
    /// Raw input (attached keystrokes); the bytes are the frame payload (at most
    /// `MAX_INPUT_CHUNK_BYTES`). `paced`: answer only once the program's terminal has taken them,
    /// so a sender of bulk input (a paste) goes at the program's pace. (`Send` is always paced.)
    Write {
        session: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        paced: bool,
    },
    Resize {
        session: String,
        cols: u16,
        rows: u16,
    },
    /// Stream output from byte `from` (default: what the ring still holds), then live.
    Attach {
        session: String,
        from: Option<u64>,
        cols: Option<u16>,
        rows: Option<u16>,
    },
    Detach {
        stream: u32,
    },
    /// The session log (complete output). `follow` streams on like `attach`.
    Logs {
        session: String,
        follow: bool,
        /// Start at this byte (a client resuming after a lost link); the beginning when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
    WaitForPrompt {
        session: String,
        timeout_ms: u64,
    },
    Stop {
        session: String,
        grace_ms: u64,
    },
    DaemonStatus,
    DaemonStop {
        grace_ms: u64,
    },
    /// Connect the agent to `relay` (kept across restarts) and issue a new invite.
    Pair {
        relay: String,
        /// What clients call this host (kept; default: its hostname).
        #[serde(default)]
        name: Option<String>,
    },
    /// The host's id, name and agent version.
    HostInfo,
    /// The session list (newest first, at most `limit`), now and after every change, as `data`
    /// on stream = request id: one JSON array of `SessionInfo` per line. Answered `watching`.
    WatchSessions {
        limit: Option<usize>,
    },
    /// A one-off share: like `pair`, but the invite lives only in memory and only as long as this
    /// request. The answer `paired` comes first; then notes (a client came, left…) as text lines
    /// on stream = request id. When the requesting client goes away, or nobody has been connected
    /// with the invite for `idle_timeout_ms`, the invite is revoked and the sessions started
    /// through it are stopped; `control/eof` ends the stream.
    Share {
        relay: String,
        #[serde(default)]
        name: Option<String>,
        idle_timeout_ms: u64,
    },
    /// The ways in: invites (stored and ephemeral) and the password.
    ListAccess,
    /// Revoke a way in (its identity or a unique prefix, or `password`): its connections close at
    /// once, and an ephemeral invite's sessions are stopped.
    Revoke {
        identity: String,
    },
    /// Set the host password (stretched and turned into an SRP verifier by the agent), or remove
    /// it with `None`.
    SetPassword {
        password: Option<String>,
    },
    /// Run a command without a PTY. Its stdout comes as data on stream `exec_stdout(id)`, stderr
    /// on `exec_stderr(id)`; the client's stdin goes as data on `exec_stdout(id)` the other way,
    /// ended by `control/eof`. The one response, `exited`, comes after all output.
    Exec {
        command: Vec<String>,
        cwd: Option<String>,
    },
    /// Send a signal to a running exec's process group (Ctrl+C on the client: SIGINT).
    Signal {
        exec: u64,
        signal: i32,
    },
    /// The host's files (see [`crate::fs`]).
    Fs(crate::fs::FsRequest),
    /// `tether open FILE…` in a session's terminal: every browser watching `session`'s opens
    /// (`watch_opens`) opens `paths` (absolute) in its editor. Answered `opened` with how many
    /// were told. Only the host's own user (it runs in a session on the host).
    OpenFiles {
        session: String,
        paths: Vec<String>,
    },
    /// A browser's terminal tab listening for `tether open` in `session`: answered `watching`,
    /// then one JSON array of paths per line as `data` on stream = request id, and `control/eof`
    /// when the session ends.
    WatchOpens {
        session: String,
    },
    /// Turn the file service on or off, and confine it to `root` (or not), from now on and
    /// across restarts (`tether pair --files-root DIR`, `--no-files`). Only the host's own user.
    SetFiles {
        enabled: bool,
        root: Option<String>,
    },
    /// Let clients move to a WebRTC data channel beside the relay, or keep them all on the relay,
    /// from now on and across restarts (`tether pair --no-webrtc` / `--webrtc`). Only the host's
    /// own user.
    SetWebrtc {
        enabled: bool,
    },
}

impl Request {
    /// Whether it is answered and then streams data on stream = its id (until `eof`).
    pub fn opens_stream(&self) -> bool {
        match self {
            Request::Attach { .. }
            | Request::Logs { .. }
            | Request::WatchSessions { .. }
            | Request::WatchOpens { .. } => true,
            Request::Fs(fs) => fs.opens_stream(),
            _ => false,
        }
    }
}

/// One way in to the host, as `tether invites ls` shows it. Never the secret or verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// `invite-…` or `password`.
    pub identity: String,
    /// ms since the Unix epoch; 0 when not recorded.
    pub created_at: u64,
    /// Lives only as long as its `tether pair --ephemeral`.
    pub ephemeral: bool,
    /// Authenticated connections using it now.
    pub connected: usize,
}

/// A request or response as a `cmd` frame with id `id` (bulk bytes in `payload`).
/// A request's answer as the agent produces it: the response and its bulk payload.
pub type Answer = (Response, Vec<u8>);

/// An error answer.
pub fn error_answer(code: ErrorCode, message: impl Into<String>) -> Answer {
    (Response::Error { code, message: message.into() }, Vec::new())
}

/// Bodies up to this size travel in the header; bigger ones (a long session list, a big `send`)
/// in the payload, so the header cap never limits what a command may carry.
const BODY_IN_HEADER_BYTES: usize = 4 * 1024; // 4 KiB

/// A request or response as a `cmd` frame with id `id` (bulk bytes in `payload`).
pub fn cmd_frame(id: u64, body: &impl Serialize, payload: Vec<u8>) -> Frame {
    let encoded =
        serde_json::to_vec(body).unwrap_or_else(|e| format!("{{\"encode_error\":{:?}}}", e.to_string()).into_bytes());
    if encoded.len() <= BODY_IN_HEADER_BYTES {
        let body = serde_json::from_slice(&encoded).unwrap_or(serde_json::Value::Null);
        return Frame::new(Header::Cmd { id, body, body_bytes: None }, payload);
    }
    let body_bytes = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
    let mut bulk = encoded;
    bulk.extend_from_slice(&payload);
    Frame::new(Header::Cmd { id, body: serde_json::Value::Null, body_bytes: Some(body_bytes) }, bulk)
}

/// A `cmd` frame's body and payload, whichever way the body travelled.
pub fn cmd_parts(
    body: serde_json::Value,
    body_bytes: Option<u32>,
    mut payload: Vec<u8>,
) -> Result<(serde_json::Value, Vec<u8>), FrameError> {
    let Some(len) = body_bytes else { return Ok((body, payload)) };
    let len = len as usize;
    if len > payload.len() {
        return Err(FrameError::Malformed(format!("cmd body of {len} bytes in a {} byte payload", payload.len())));
    }
    let rest = payload.split_off(len);
    let body = serde_json::from_slice(&payload).map_err(|e| FrameError::Malformed(format!("cmd body: {e}")))?;
    Ok((body, rest))
}

/// Largest `cmd` frame (encoded) any transport carries: one that still seals into one message.
pub const MAX_CMD_FRAME_BYTES: usize = crate::channel::MAX_SEALED_INNER_BYTES;

/// The frame for `answer` to request `id`, or an error answer saying why when `answer` is too
/// big to send (so a caller always gets an answer).
pub fn answer_frame(id: u64, answer: &Answer) -> Frame {
    let frame = cmd_frame(id, &answer.0, answer.1.clone());
    match frame.encode().map(|bytes| bytes.len()) {
        Ok(len) if len <= MAX_CMD_FRAME_BYTES => frame,
        Ok(len) => too_big(id, len),
        Err(_) => too_big(id, frame.payload.len()),
    }
}

fn too_big(id: u64, len: usize) -> Frame {
    let message = format!(
        "the answer would be {} KiB, over the {} KiB one message carries; ask for less (e.g. ls --limit)",
        len >> 10,
        MAX_CMD_FRAME_BYTES >> 10
    );
    cmd_frame(id, &Response::Error { code: ErrorCode::LimitReached, message }, Vec::new())
}

/// Largest input one `write` or `send` should carry: bigger input (an 8 MiB paste, a piped
/// `send`) goes as several paced ones.
pub const MAX_INPUT_CHUNK_BYTES: usize = 256 * 1024; // 256 KiB

/// Largest request id that may open a stream. A stream's id is its request's id, and an exec's
/// stderr is that id with the top bit set, so below 2^31 no two requests' streams can meet.
pub const MAX_STREAM_REQUEST_ID: u64 = 0x7fff_ffff;

/// The stream a request with id `id` opens; `None` for an id that cannot name one.
pub fn request_stream(id: u64) -> Option<u32> {
    (1..=MAX_STREAM_REQUEST_ID).contains(&id).then_some(id as u32)
}

/// The request id after `id`, wrapping within 1..=`MAX_STREAM_REQUEST_ID`.
pub fn next_request_id(id: u64) -> u64 {
    id % MAX_STREAM_REQUEST_ID + 1
}

/// Stream carrying an exec's stdout (and, client → host, its stdin).
pub fn exec_stdout(request_id: u64) -> u32 {
    (request_id as u32) & 0x7fff_ffff
}

/// Stream carrying an exec's stderr.
pub fn exec_stderr(request_id: u64) -> u32 {
    exec_stdout(request_id) | 0x8000_0000
}

/// Answers. Every request gets exactly one, with the request's `cmd` id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Session {
        session: SessionInfo,
    },
    Sessions {
        sessions: Vec<SessionInfo>,
    },
    /// Output of `session` follows as `data` frames on `stream`, starting at byte `from`; a
    /// `control/eof` ends it when the session's output ends.
    Streaming {
        session: SessionInfo,
        stream: u32,
        from: u64,
    },
    Daemon {
        pid: u32,
        version: String,
        state_dir: String,
        running: usize,
        total: usize,
    },
    Paired {
        invite: String,
        host_id: String,
        name: String,
        /// Set when the relay has not confirmed the host is reachable (e.g. it is down).
        #[serde(default)]
        warning: Option<String>,
    },
    HostInfo {
        host_id: String,
        name: String,
        version: String,
    },
    /// A `watch_sessions` or `watch_opens` stream follows on `stream`.
    Watching {
        stream: u32,
    },
    /// `open_files` reached this many browsers.
    Opened {
        browsers: usize,
    },
    Access {
        entries: Vec<AccessEntry>,
    },
    Revoked {
        identity: String,
        /// Sessions stopped because an ephemeral invite that started them ended.
        stopped: Vec<String>,
    },
    /// An exec finished: exit code, 128 + N when killed by signal N.
    Exited {
        code: i32,
    },
    /// The file service's answer.
    Fs(crate::fs::FsResponse),
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnknownSession,
    AmbiguousSession,
    NotRunning,
    BadRequest,
    LimitReached,
    TimedOut,
    Internal,
    // The file service's failures, each shown to the user as it is.
    NotFound,
    PermissionDenied,
    Exists,
    NotADirectory,
    IsADirectory,
    NoSpace,
    /// The path leads outside the files root.
    OutsideRoot,
    /// A name that is not valid UTF-8 (or `.`/`..`/empty where a name is needed).
    InvalidName,
    /// The file service is turned off on this host (`--no-files`).
    FilesOff,
    /// A conditional write (an editor's save) found the file changed since the version it was
    /// based on: nothing was written.
    Changed,
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

    #[test]
    fn requests_round_trip_as_json() {
        let request = Request::Send {
            session: "ab12".into(),
            chunks: vec![InputChunk::Text("ls".into()), InputChunk::Key(Key::Ctrl('c'))],
        };
        let json = serde_json::to_value(&request).expect("serialises");
        assert_eq!(serde_json::from_value::<Request>(json).expect("parses"), request);
    }
}
