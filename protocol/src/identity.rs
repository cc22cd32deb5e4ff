//! Host identity, provable to a stateless relay.
//!
//! A host keeps a random 256-bit *host secret* in its state dir. Its public **host id** is the
//! first 128 bits of SHA-256 over that secret, in base32 (26 characters). To register with a
//! relay the host shows the secret; the relay hashes it and compares. So:
//! - the relay keeps no table of who owns which id, and a restarted relay needs nothing back;
//! - nobody without the secret can take the id (that would take a SHA-256 preimage);
//! - the host secret only ever goes to the relay over TLS (or loopback); it is unrelated to the
//!   SRP secrets clients use, so a relay that learns it still cannot read or forge traffic.

use sha2::{Digest, Sha256};

/// Bytes of a host secret.
pub const HOST_SECRET_BYTES: usize = 32;
/// Bytes of SHA-256 kept for the id.
const HOST_ID_BYTES: usize = 16;
/// RFC 4648 base32 alphabet, no padding; upper-case so ids read well and survive URLs.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The host id a secret proves.
pub fn host_id(secret: &[u8; HOST_SECRET_BYTES]) -> String {
    let digest = Sha256::digest(secret);
    base32(&digest[..HOST_ID_BYTES])
}

/// Check a registration: does `proof_hex` hash to `host_id`?
pub fn verify(host_id: &str, proof_hex: &str) -> bool {
    match crate::hex::decode_array::<HOST_SECRET_BYTES>(proof_hex) {
        // Both sides of the comparison are public (the id) or the prover's own (the secret):
        // a timing difference reveals nothing worth protecting.
        Some(secret) => self::host_id(&secret) == host_id,
        None => false,
    }
}

/// Whether `text` has the shape of a host id (before looking it up anywhere).
pub fn is_host_id(text: &str) -> bool {
    text.len() == 26 && text.bytes().all(|b| BASE32.contains(&b))
}

pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        // RFC 4648 §10 test vectors (without padding).
        for (input, expected) in [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foobar", "MZXW6YTBOI")] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
    }

    #[test]
    fn only_the_secret_proves_the_id() {
        let secret = [7u8; HOST_SECRET_BYTES];
        let id = host_id(&secret);
        assert!(is_host_id(&id), "{id}");
        assert!(verify(&id, &crate::hex::encode(&secret)));
        assert!(!verify(&id, &crate::hex::encode(&[8u8; HOST_SECRET_BYTES])));
        assert!(!verify(&id, "zz"));
        assert!(!is_host_id("not-an-id"));
    }
}
