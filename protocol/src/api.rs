//! The session API: what a client (local CLI over the Unix socket, remote CLI or browser over the
//! secure channel) asks of a host agent, and what it answers. Plain data, carried as the `body`
//! of `cmd` frames; bulk bytes (input, log contents) ride in the frame payload.

use serde::{Deserialize, Serialize};

use crate::input::InputChunk;

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
        /// What the invite lets its holder do (default: everything).
        #[serde(default)]
        grant: GrantRequest,
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
        #[serde(default)]
        grant: GrantRequest,
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
    /// Remember the asking client as a device of its own: keep `verifier` (which the client made
    /// over `salt` from a fresh secret it keeps, for identity `device`, see
    /// `identity::is_device_identity`) as a credential that outlives the invite or password it
    /// came in with. Only a client that came in with a lasting way in may ask — never a share, a
    /// device, or the host's own user. Answered `device`.
    RememberDevice {
        device: String,
        /// What it is, as `devices ls` shows it ("Chromium on Linux").
        name: String,
        /// Hex.
        salt: String,
        /// Hex.
        verifier: String,
    },
    /// The remembered devices. Answered `devices`.
    ListDevices,
    /// Forget a device (its id or a unique prefix): its connections close at once and its
    /// credential is gone. A remote client may forget only the device it is. Answered `revoked`.
    ForgetDevice {
        device: String,
    },
    /// Rename a device. Only the host's own user.
    RenameDevice {
        device: String,
        name: String,
    },
    /// The host's VAPID public key (base64url), for a browser to subscribe with. Answered
    /// `push_key`.
    PushKey,
    /// Keep a browser's push subscription (`PushSubscription.toJSON()`'s endpoint and keys):
    /// the host then pushes to it when a session that notifies waits or ends. Only a remembered
    /// device may subscribe; forgetting the device drops its subscriptions.
    PushSubscribe {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    /// Push a test notification to every subscription now (`tether notify test`). Only the
    /// host's own user. Answered `pushed`.
    PushTest,
    /// Notify (hook, desktop, push) when `session` waits or ends, or not (`tether notify on|off`).
    /// Answered `session`.
    SetNotify {
        session: String,
        on: bool,
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

/// What an invite asked for lets its holder do (`tether share --read-only --session ID
/// --expires 1h`). The default is everything, for ever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// Watch only: list, attach, read logs — never type, resize, start, stop, exec or files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Only these sessions (ids or unique prefixes); empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
    /// Refused at the proof from this long after it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// What a way in lets its holder do, as the host keeps it and checks it at every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Full session ids; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<String>,
    /// ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
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
    /// What it lets its holder do.
    #[serde(default)]
    pub grant: Grant,
}

/// A remembered device, as `tether devices ls` and the page's host menu show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// `device-…`.
    pub id: String,
    pub name: String,
    /// The way in it came through when it was remembered (`invite-…` or `password`).
    pub via: String,
    /// ms since the Unix epoch.
    pub created_at: u64,
    /// When a connection of it last began or ended, ms since the Unix epoch.
    pub last_seen: u64,
    /// Authenticated connections using it now.
    pub connected: usize,
}

/// A request's answer as the agent produces it: the response and its bulk payload.
pub type Answer = (Response, Vec<u8>);

/// An error answer.
pub fn error_answer(code: ErrorCode, message: impl Into<String>) -> Answer {
    (Response::Error { code, message: message.into() }, Vec::new())
}

/// A host's link to a relay, as `daemon status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayLink {
    pub relay: String,
    /// Registered there: clients can reach the host through it.
    pub linked: bool,
    /// Since when it has been linked (or not), in ms since the Unix epoch.
    pub since_ms: u64,
    /// Why it is not, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
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
        /// The relays it keeps a link to, and how each stands.
        #[serde(default)]
        relays: Vec<RelayLink>,
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
        /// Whether the asking client may be remembered as a device (`remember_device`): it came
        /// in with a lasting invite or the password.
        #[serde(default)]
        remember: bool,
        /// The device the asking client is, when it came in as one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        /// The asking client may only watch (a read-only invite).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read_only: bool,
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
    Device {
        device: DeviceEntry,
    },
    Devices {
        devices: Vec<DeviceEntry>,
    },
    PushKey {
        key: String,
    },
    /// What a push to every subscription did.
    Pushed {
        /// Accepted by their push services.
        sent: usize,
        /// Gone (404/410): dropped.
        dropped: usize,
        /// Why the others failed (endpoint origin and reason).
        #[serde(default)]
        failed: Vec<String>,
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
    /// The client's way in may only watch (`tether share --read-only`).
    ReadOnly,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Key;

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
