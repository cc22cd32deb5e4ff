//! Randomness from the kernel, for secrets, salts, ids and handshake nonces.

use std::io::Read;

use tether_protocol::handshake::HandshakeEntropy;

pub fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("no randomness from /dev/urandom: {e}"))
}

/// Fresh randomness for one SRP handshake (either side).
pub fn handshake_entropy() -> Result<HandshakeEntropy, String> {
    HandshakeEntropy::generate(random_bytes)
}
