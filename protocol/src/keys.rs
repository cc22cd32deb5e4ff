//! Layer 3: the key schedule. One AES-256-SIV key per direction from the SRP session key.
//!
//! ```text
//! PRK            = HKDF-Extract(salt = client_nonce ‖ host_nonce, IKM = K)      K = SRP session key
//! key(direction) = HKDF-Expand(PRK, info = "tether/v<version> host=<host_id> <direction>", 64 bytes)
//! ```
//!
//! Why each input is there:
//! - both nonces: a fresh key pair per connection even if an SRP exponent were ever reused;
//! - host id and version in `info`: a key derived for one host or protocol version is useless for
//!   another; the direction label gives the two directions independent keys, so a frame reflected
//!   back at its sender cannot authenticate.
//!
//! The schedule is pinned by known-answer vectors computed with an independent implementation
//! (Python `cryptography`), checked by both the native and the wasm32 test runs.

use hkdf::Hkdf;
use sha2::Sha256;

/// The only protocol version spoken; bound into every key.
pub const PROTOCOL_VERSION: u32 = 1;
/// AES-256-SIV takes two AES-256 keys (one for S2V/CMAC, one for CTR).
pub const KEY_BYTES: usize = 64;
/// Per-side handshake nonce.
pub const NONCE_BYTES: usize = 32;

/// Which way a key protects traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToHost,
    HostToClient,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::ClientToHost => "client->host",
            Direction::HostToClient => "host->client",
        }
    }
}

/// The two directional keys of one connection.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub client_to_host: [u8; KEY_BYTES],
    pub host_to_client: [u8; KEY_BYTES],
}

impl std::fmt::Debug for SessionKeys {
    // Key material never reaches logs, not even through a stray `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// Derive both directional keys. Pure function of its inputs.
pub fn derive_session_keys(
    srp_session_key: &[u8],
    client_nonce: &[u8; NONCE_BYTES],
    host_nonce: &[u8; NONCE_BYTES],
    host_id: &str,
) -> SessionKeys {
    let mut salt = [0u8; 2 * NONCE_BYTES];
    salt[..NONCE_BYTES].copy_from_slice(client_nonce);
    salt[NONCE_BYTES..].copy_from_slice(host_nonce);
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), srp_session_key);
    let expand = |direction: Direction| {
        let info = format!("tether/v{PROTOCOL_VERSION} host={host_id} {}", direction.label());
        let mut key = [0u8; KEY_BYTES];
        // 64 bytes is far below HKDF-SHA256's 255 * 32 byte limit, so this cannot fail.
        if hkdf.expand(info.as_bytes(), &mut key).is_err() {
            unreachable!("HKDF-SHA256 expand of {KEY_BYTES} bytes");
        }
        key
    };
    SessionKeys { client_to_host: expand(Direction::ClientToHost), host_to_client: expand(Direction::HostToClient) }
}
