//! Layer 2: the SRP-6a handshake (RFC 5054 3072-bit group, SHA-256).
//!
//! ```text
//! client                                   host (holds salt + verifier, never the secret)
//!   auth/client_hello {host_id, identity, nonce_c}  [A]   →
//!                                          ←   auth/server_hello {salt, nonce_h}  [B]
//!   auth/client_proof  [M1]                          →
//!                                          ←   auth/server_proof  [M2]   (only if M1 was right)
//!                                          or  auth/failed {reason}
//! ```
//!
//! Invariants:
//! - The host sends M2 only after checking M1, so a wrong guess teaches the guesser nothing but
//!   "no" (one guess per handshake; the agent throttles handshakes).
//! - Both sides abort on `A ≡ 0 (mod N)`, `B ≡ 0 (mod N)` and `u = 0`, and on A or B longer than N.
//! - No key material leaves a failed handshake; `SessionKeys` exist only after both proofs match.
//! - The SRP username is `<host_id>/<identity>`, so a verifier made for one host is useless for
//!   another; the identity says which secret the client holds (an `invite-…` id or `password`).
//! - Randomness comes from the caller (sans-IO): 64 bytes of ephemeral exponent, 32 of nonce.
//! - A password (identity `password`) is stretched with Argon2id over the credential's salt
//!   before SRP sees it, so a stolen verifier costs an attacker Argon2id per guess, not one
//!   SHA-256. Invite secrets are random (≥ 128 bits) and go to SRP as they are.

use sha2::{Digest, Sha256};
use srp::groups::G3072;

use crate::error::AuthError;
use crate::frame::{AuthStep, Frame, Header};
use crate::hex;
use crate::keys::{derive_session_keys, SessionKeys, NONCE_BYTES, PROTOCOL_VERSION};

mod client;
mod host;

pub use client::ClientHandshake;
pub use host::{HelloAnswer, HelloWork, HostHandshake};

type SrpClient = srp::Client<G3072, Sha256>;
type SrpServer = srp::Server<G3072, Sha256>;

/// Bytes of the 3072-bit modulus N: the longest legal A or B.
const MODULUS_BYTES: usize = 3072 / 8;
/// Private ephemeral exponent (a or b); RFC 5054 asks for at least 256 bits.
const EPHEMERAL_BYTES: usize = 64;
/// Stored salt per credential.
pub const SALT_BYTES: usize = 16;
/// Random bytes a handshake needs from its caller.
pub const HANDSHAKE_ENTROPY_BYTES: usize = EPHEMERAL_BYTES + NONCE_BYTES;

/// The identity of the host owner's password (`tether passwd`).
pub const PASSWORD_IDENTITY: &str = "password";
/// Argon2id cost for passwords: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
const PASSWORD_MEMORY_KIB: u32 = 19 * 1024;
const PASSWORD_PASSES: u32 = 2;
const STRETCHED_BYTES: usize = 32;

/// What SRP is given as the password for `identity`: passwords are stretched (see above).
fn srp_secret(identity: &str, secret: &[u8], salt: &[u8]) -> Result<Vec<u8>, AuthError> {
    if identity != PASSWORD_IDENTITY {
        return Ok(secret.to_vec());
    }
    let params = argon2::Params::new(PASSWORD_MEMORY_KIB, PASSWORD_PASSES, 1, Some(STRETCHED_BYTES))
        .map_err(|_| AuthError::Unexpected("password parameters".into()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut stretched = vec![0u8; STRETCHED_BYTES];
    // Fails only for a salt outside Argon2's 8..=64 bytes, which only a broken host sends.
    argon.hash_password_into(secret, salt, &mut stretched).map_err(|_| AuthError::Unexpected("salt".into()))?;
    Ok(stretched)
}

/// Fresh randomness for one handshake, supplied by the caller's CSPRNG.
#[derive(Clone)]
pub struct HandshakeEntropy(pub [u8; HANDSHAKE_ENTROPY_BYTES]);

impl HandshakeEntropy {
    /// Fill a fresh one from the caller's CSPRNG (`/dev/urandom`, `crypto.getRandomValues`).
    pub fn generate<E>(fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Self, E> {
        let mut bytes = [0u8; HANDSHAKE_ENTROPY_BYTES];
        fill(&mut bytes)?;
        Ok(HandshakeEntropy(bytes))
    }

    fn split(&self) -> ([u8; EPHEMERAL_BYTES], [u8; NONCE_BYTES]) {
        let mut ephemeral = [0u8; EPHEMERAL_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        ephemeral.copy_from_slice(&self.0[..EPHEMERAL_BYTES]);
        nonce.copy_from_slice(&self.0[EPHEMERAL_BYTES..]);
        (ephemeral, nonce)
    }
}

/// What the host stores for one way in: salt and verifier, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    pub identity: String,
    pub salt: Vec<u8>,
    pub verifier: Vec<u8>,
}

impl Credential {
    /// Make the verifier for `secret`; `salt` must be fresh random bytes.
    /// Fails only if stretching a password fails, and then never with a weaker verifier.
    pub fn derive(host_id: &str, identity: &str, secret: &[u8], salt: [u8; SALT_BYTES]) -> Result<Self, AuthError> {
        let secret = srp_secret(identity, secret, &salt)?;
        let verifier = SrpClient::new().compute_verifier(srp_username(host_id, identity).as_bytes(), &secret, &salt);
        Ok(Credential { identity: identity.to_owned(), salt: salt.to_vec(), verifier })
    }
}

fn srp_username(host_id: &str, identity: &str) -> String {
    format!("{host_id}/{identity}")
}

/// What a handshake step asks of its caller.
#[derive(Debug)]
pub enum Step {
    /// Send this frame and wait for the peer's next one.
    Reply(Frame),
    /// Authenticated. `reply` (the host's M2) must still be sent.
    Done { reply: Option<Frame>, keys: SessionKeys },
    /// Failed. Send `reply` (if any) so the peer learns why, then drop the connection.
    Failed { reply: Option<Frame>, error: AuthError },
    /// Host: the client claims `identity`; call `answer_hello` with its credential.
    NeedCredential { identity: String },
    /// Host: the client's proof is in; call `verify` when it may be checked.
    NeedVerification { identity: String },
}

fn failed_frame(reason: &str) -> Frame {
    Frame::bare(Header::Auth(AuthStep::Failed { reason: reason.to_owned() }))
}

/// A big number from the wire: 1..=N bytes, and not ≡ 0 mod N (the `srp` crate checks the latter).
fn check_public_len(bytes: &[u8], name: &'static str) -> Result<(), AuthError> {
    if bytes.is_empty() || bytes.len() > MODULUS_BYTES {
        return Err(AuthError::IllegalParameter(name));
    }
    Ok(())
}

/// `u = H(PAD(A) ‖ PAD(B))` must not be zero (RFC 5054 §2.6). `srp` computes u but does not check it.
fn check_u_nonzero(a_pub: &[u8], b_pub: &[u8]) -> Result<(), AuthError> {
    let mut hasher = Sha256::new();
    for value in [a_pub, b_pub] {
        hasher.update([0u8; MODULUS_BYTES].get(value.len()..).unwrap_or_default());
        hasher.update(value);
    }
    if hasher.finalize().iter().all(|&b| b == 0) {
        return Err(AuthError::IllegalParameter("u"));
    }
    Ok(())
}

fn map_srp_error(e: srp::AuthError) -> AuthError {
    match e {
        srp::AuthError::IllegalParameter { name } => AuthError::IllegalParameter(name),
        srp::AuthError::BadRecordMac { .. } => AuthError::WrongSecret,
    }
}

/// Longest identity a client may claim (ours are `invite-` + 8 hex digits, `device-` + 16, or
/// `password`).
const MAX_IDENTITY_BYTES: usize = 64;
/// Longest reason a peer's `failed` may put in our errors (and so in logs).
const MAX_PEER_REASON_CHARS: usize = 200;

fn unknown(identity: &str) -> AuthError {
    AuthError::Rejected(if identity.starts_with("invite-") {
        "unknown or revoked invite".to_owned()
    } else if crate::identity::is_device_identity(identity) {
        "this device is not remembered by the host (forgotten with `tether devices rm`?)".to_owned()
    } else {
        format!("no credential {identity:?} on this host")
    })
}

/// A peer's `failed` reason, made safe to show and log: printable characters only, capped.
fn peer_reason(reason: &str) -> String {
    let clean: String =
        reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_PEER_REASON_CHARS).collect();
    clean.trim().to_owned()
}

fn step_name(step: &AuthStep) -> &'static str {
    match step {
        AuthStep::ClientHello { .. } => "client_hello",
        AuthStep::ServerHello { .. } => "server_hello",
        AuthStep::ClientProof => "client_proof",
        AuthStep::ServerProof => "server_proof",
        AuthStep::Failed { .. } => "failed",
    }
}
