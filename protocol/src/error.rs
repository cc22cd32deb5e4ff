//! Typed errors, one enum per layer, so callers (and tests) can tell *why* something failed.
//! Messages are written for the person who will read them in a terminal or a browser.

use std::fmt;

/// Framing errors. Any of them ends the connection: the byte stream has lost its boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    HeaderTooLarge {
        len: usize,
    },
    PayloadTooLarge {
        len: usize,
    },
    /// The header is not valid JSON of a known frame type, or bytes follow a single frame.
    Malformed(String),
    /// A buffer that should hold one whole frame ended early.
    Truncated,
    /// The decoder already failed; it accepts nothing more.
    Poisoned,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderTooLarge { len } => {
                write!(f, "frame header of {len} bytes exceeds the {} byte limit", crate::frame::MAX_HEADER_BYTES)
            }
            Self::PayloadTooLarge { len } => {
                write!(f, "frame payload of {len} bytes exceeds the {} byte limit", crate::frame::MAX_PAYLOAD_BYTES)
            }
            Self::Malformed(why) => write!(f, "malformed frame: {why}"),
            Self::Truncated => write!(f, "truncated frame"),
            Self::Poisoned => write!(f, "frame decoder already failed; connection must be dropped"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Handshake failures. Both sides end with one of these and hold no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The secret (invite secret or password) did not match: the peer's proof was wrong.
    WrongSecret,
    /// The peer sent an illegal SRP value (A or B ≡ 0 mod N, u = 0, or an out-of-range length).
    IllegalParameter(&'static str),
    /// The peer speaks a protocol version we do not.
    UnsupportedVersion(u32),
    /// The peer reported failure; `reason` is its text.
    Rejected(String),
    /// A message arrived out of handshake order, or a field was not what the step requires.
    Unexpected(String),
    /// No handshake completed within the deadline.
    TimedOut,
    /// The client sent no hello within `HELLO_TIMEOUT_MS` of connecting.
    NoHello,
}

impl AuthError {
    /// Why, without the "authentication failed" prefix (what a host sends in `auth/failed`).
    pub fn reason(&self) -> String {
        match self {
            Self::WrongSecret => "wrong secret or password".into(),
            Self::IllegalParameter(what) => format!("peer sent an illegal SRP value ({what})"),
            Self::UnsupportedVersion(v) => format!("unsupported protocol version {v}"),
            Self::Rejected(reason) => reason.clone(),
            Self::Unexpected(what) => format!("unexpected {what}"),
            Self::TimedOut => "handshake timed out".into(),
            Self::NoHello => "no hello in time".into(),
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authentication failed: {}", self.reason())
    }
}

impl std::error::Error for AuthError {}

/// Secure-channel failures. Each one means the transport delivered something the peer did not
/// send in that order: the connection fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// A counter we already accepted came again.
    Replayed { expected: u64, got: u64 },
    /// A counter from the future: frames were dropped or reordered on the way.
    OutOfOrder { expected: u64, got: u64 },
    /// The ciphertext or its counter was altered or truncated: authentication failed.
    Forged { ctr: u64 },
    /// A plaintext frame arrived where only `encrypted` frames are allowed.
    NotEncrypted(&'static str),
    /// The decrypted frame is not a valid frame.
    Inner(FrameError),
    /// 2^64 frames sent in one direction; never reached in practice, but never wrapped either.
    CounterExhausted,
    /// The frame to seal would not fit the payload cap once sealed.
    TooLarge { len: usize },
    /// The shell's own AES could not run over frame `ctr` (see `channel::OpenJob`).
    CipherFailed { ctr: u64, why: String },
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replayed { expected, got } => {
                write!(f, "secure channel: replayed frame (counter {got}, expected {expected})")
            }
            Self::OutOfOrder { expected, got } => {
                write!(f, "secure channel: frame dropped or reordered (counter {got}, expected {expected})")
            }
            Self::Forged { ctr } => {
                write!(f, "secure channel: frame {ctr} failed authentication (tampered or truncated)")
            }
            Self::NotEncrypted(what) => {
                write!(f, "secure channel: unencrypted {what} frame refused")
            }
            Self::Inner(e) => write!(f, "secure channel: {e}"),
            Self::CounterExhausted => write!(f, "secure channel: counter exhausted"),
            Self::TooLarge { len } => {
                write!(f, "secure channel: {len} byte frame too large to seal")
            }
            Self::CipherFailed { ctr, why } => write!(f, "secure channel: frame {ctr} could not be decrypted: {why}"),
        }
    }
}

impl std::error::Error for ChannelError {}

/// Failures of one channel carried over several transports (see `paths`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The peer sent frames so far beyond the one still missing that holding them would pass
    /// `paths::MAX_EARLY_BYTES`.
    TooFarAhead { expected: u64, got: u64 },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFarAhead { expected, got } => {
                write!(f, "secure channel: frame {got} arrived too far ahead of frame {expected}, still missing")
            }
        }
    }
}

impl std::error::Error for PathError {}

/// Stream-layer failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// Bytes from `got` arrived while we still wait for `expected`: something in between is missing.
    Gap { stream: u32, expected: u64, got: u64 },
    /// The sender no longer holds bytes before `oldest`; a resume from earlier cannot be served.
    Evicted { requested: u64, oldest: u64 },
    /// A resume asked for bytes the sender has not produced yet.
    Future { requested: u64, end: u64 },
    /// The peer sent more than the window it was granted.
    WindowExceeded { stream: u32 },
    /// Bytes numbered past `u64::MAX`: a peer's nonsense, refused rather than wrapped.
    SeqOverflow { stream: u32 },
    /// A new stream beyond the `max` one connection may hold.
    TooManyStreams { max: usize },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gap { stream, expected, got } => {
                write!(f, "stream {stream}: gap in output (expected byte {expected}, got {got})")
            }
            Self::Evicted { requested, oldest } => {
                write!(f, "output from byte {requested} is no longer buffered (oldest kept is {oldest})")
            }
            Self::Future { requested, end } => {
                write!(f, "resume from byte {requested} is past the end of output ({end})")
            }
            Self::WindowExceeded { stream } => {
                write!(f, "stream {stream}: peer ignored flow control")
            }
            Self::SeqOverflow { stream } => {
                write!(f, "stream {stream}: sequence numbers past the end of the 64-bit range")
            }
            Self::TooManyStreams { max } => write!(f, "more than {max} streams open on one connection"),
        }
    }
}

impl std::error::Error for StreamError {}

/// File transfer failures; the partial file is never committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    DigestMismatch { expected: String, actual: String },
    SizeMismatch { expected: u64, got: u64 },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DigestMismatch { expected, actual } => {
                write!(f, "file corrupted in transit: SHA-256 {actual}, sender had {expected}")
            }
            Self::SizeMismatch { expected, got } => {
                write!(f, "file size {got} differs from announced {expected}")
            }
        }
    }
}

impl std::error::Error for FileError {}

/// Why a client's transfer cannot finish (see `transfer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferError {
    /// The source ended before the size the upload announced.
    SourceShrank { read: u64, size: u64 },
    /// An upload's bytes came to be hashed at `offset` with `hashed` bytes hashed so far (the
    /// shell skipped or repeated some: never the user's doing).
    OutOfOrder { offset: u64, hashed: u64 },
    /// The host's file is smaller than what was already downloaded of it.
    RemoteShrank { have: u64, size: u64 },
    /// A download ended at `got` bytes, not the `size` the host announced.
    Changed { got: u64, size: u64 },
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::SourceShrank { read, size } => {
                write!(f, "the file changed while it was sent ({read} bytes, not {size})")
            }
            TransferError::OutOfOrder { offset, hashed } => {
                write!(f, "upload bytes came out of order (at {offset}, after {hashed}); send it again")
            }
            TransferError::RemoteShrank { have, size } => {
                write!(f, "the file got smaller ({size} bytes) than what was downloaded ({have}); copy it again")
            }
            TransferError::Changed { got, size } => {
                write!(f, "the file changed while it was read ({got} bytes, not {size})")
            }
        }
    }
}

impl std::error::Error for TransferError {}

impl From<TransferError> for String {
    fn from(error: TransferError) -> String {
        error.to_string()
    }
}

/// Anything that ends a `Connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnError {
    Frame(FrameError),
    Auth(AuthError),
    Channel(ChannelError),
    Path(PathError),
    Stream(StreamError),
    /// The transport ended without the peer's authenticated `close`: traffic may have been cut.
    Truncated,
    /// Nothing arrived from the peer for `silent_ms` (the connection's idle timeout), not even
    /// a keep-alive answer.
    Idle {
        silent_ms: u64,
    },
    /// The peer closed the connection in order.
    Closed(String),
    /// The call is not allowed in the connection's current state (e.g. send before auth).
    NotReady(&'static str),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::Auth(e) => e.fmt(f),
            Self::Channel(e) => e.fmt(f),
            Self::Path(e) => e.fmt(f),
            Self::Stream(e) => e.fmt(f),
            Self::Truncated => write!(f, "connection cut: transport ended without an authenticated close"),
            Self::Idle { silent_ms } => {
                write!(f, "connection lost: no traffic from the peer for {} s", silent_ms / 1000)
            }
            Self::Closed(reason) => write!(f, "connection closed by peer: {reason}"),
            Self::NotReady(what) => write!(f, "connection not ready: {what}"),
        }
    }
}

impl std::error::Error for ConnError {}

macro_rules! from_layer {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for ConnError {
            fn from(e: $ty) -> Self { ConnError::$variant(e) }
        }
    )*};
}
from_layer!(Frame(FrameError), Auth(AuthError), Channel(ChannelError), Path(PathError), Stream(StreamError));

impl From<FrameError> for ChannelError {
    fn from(e: FrameError) -> Self {
        ChannelError::Inner(e)
    }
}
