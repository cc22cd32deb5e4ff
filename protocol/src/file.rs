//! Layer 6: a file's bytes checked end to end. A transfer travels as an ordinary stream (data
//! numbered by file offset, flow-controlled, resumable by offset: see [`crate::fs`]); this layer
//! is the receiver's check that what it is about to commit is exactly what the sender read.
//!
//! Invariants:
//! - The receiver hashes every byte as it arrives (running SHA-256), in offset order, so what it
//!   hashes is what it wrote; bytes past the announced size are refused.
//! - Nothing is committed until the sender's digest of the whole file is in, the size matches
//!   the announcement and the digest matches.
//! - A transfer resumes from an offset: the receiver re-hashes the bytes it already has
//!   ([`FileCheck::absorb`] before any new byte) and the sender starts there; the final digest
//!   still covers the whole file.

use sha2::{Digest, Sha256};

use crate::error::FileError;
use crate::hex;

/// Bytes of a file per stream `data` frame.
pub const FILE_CHUNK_BYTES: usize = 64 * 1024; // 64 KiB

/// The receiver's running check of one file of a known size.
pub struct FileCheck {
    size: u64,
    offset: u64,
    hasher: Sha256,
}

impl FileCheck {
    /// Receive a file of `size` bytes from its start.
    pub fn new(size: u64) -> Self {
        FileCheck { size, offset: 0, hasher: Sha256::new() }
    }

    /// Take the next bytes of the file (whether just received or, on resume, read back from
    /// what was received before).
    pub fn absorb(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        let end = self.offset.checked_add(bytes.len() as u64).filter(|&end| end <= self.size);
        let Some(end) = end else {
            return Err(FileError::SizeMismatch {
                expected: self.size,
                got: self.offset.saturating_add(bytes.len() as u64),
            });
        };
        self.hasher.update(bytes);
        self.offset = end;
        Ok(())
    }

    /// Bytes taken so far: the offset to ask the sender to go on from.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The whole file is in and `sha256` (hex, from the sender) is its digest.
    pub fn finish(self, sha256: &str) -> Result<(), FileError> {
        if self.offset != self.size {
            return Err(FileError::SizeMismatch { expected: self.size, got: self.offset });
        }
        let actual = hex::encode(&self.hasher.finalize());
        if !actual.eq_ignore_ascii_case(sha256) {
            return Err(FileError::DigestMismatch { expected: sha256.to_owned(), actual });
        }
        Ok(())
    }
}

/// The sender's digest of a file, fed in order as it is read.
#[derive(Default)]
pub struct FileDigest(Sha256);

impl FileDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Hex SHA-256 of everything fed.
    pub fn finish(self) -> String {
        hex::encode(&self.0.finalize())
    }
}
