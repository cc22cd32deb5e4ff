//! Layer 6: file transfer chunks. A file travels as `file/begin`, `file/chunk`s of at most 64 KiB
//! at increasing offsets, and `file/end` carrying the SHA-256 of the whole file.
//!
//! Invariants:
//! - The receiver hashes every byte as it arrives (running SHA-256) and accepts chunks only at the
//!   exact next offset, so what it hashes is what it wrote.
//! - Nothing is committed until `end` arrives, the size matches the announcement and the digest
//!   matches. (Where the bytes go until then is the receiver's business: this layer only
//!   checks them.)
//! - A transfer resumes from an offset: the receiver re-hashes the bytes it already has
//!   (`FileReceiver::resume`) and the sender starts there; the final digest still covers it all.

use sha2::{Digest, Sha256};

use crate::error::FileError;
use crate::frame::{FileStep, Frame, Header};
use crate::hex;

/// Largest chunk of file bytes per frame.
pub const FILE_CHUNK_BYTES: usize = 64 * 1024; // 64 KiB

/// Sender: turns file bytes, read in order, into frames.
pub struct FileSender {
    transfer: u32,
    size: u64,
    offset: u64,
    hasher: Sha256,
}

impl FileSender {
    /// Start sending `name` of `size` bytes. When resuming from `offset`, first feed the bytes
    /// before it through `absorb_prefix` so the final digest covers the whole file.
    pub fn begin(transfer: u32, name: &str, size: u64, offset: u64) -> (Self, Frame) {
        let frame = Frame::bare(Header::File(FileStep::Begin { transfer, name: name.to_owned(), size, offset }));
        (FileSender { transfer, size, offset, hasher: Sha256::new() }, frame)
    }

    /// Hash bytes the receiver already has (resume); they are not sent again.
    pub fn absorb_prefix(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// Frame the next piece of the file (at most `FILE_CHUNK_BYTES`).
    pub fn chunk(&mut self, bytes: &[u8]) -> Result<Frame, FileError> {
        if bytes.len() > FILE_CHUNK_BYTES {
            return Err(FileError::ChunkTooLarge { len: bytes.len() });
        }
        let frame =
            Frame::new(Header::File(FileStep::Chunk { transfer: self.transfer, offset: self.offset }), bytes.to_vec());
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(frame)
    }

    /// The closing frame with the whole file's digest.
    pub fn end(self) -> Result<Frame, FileError> {
        if self.offset != self.size {
            return Err(FileError::SizeMismatch { expected: self.size, got: self.offset });
        }
        let sha256 = hex::encode(&self.hasher.finalize());
        Ok(Frame::bare(Header::File(FileStep::End { transfer: self.transfer, sha256 })))
    }
}

/// Receiver: checks order and digest; says when the bytes may be committed.
pub struct FileReceiver {
    size: u64,
    offset: u64,
    hasher: Sha256,
}

impl FileReceiver {
    /// Receive a new file of `size` bytes.
    pub fn new(size: u64) -> Self {
        FileReceiver { size, offset: 0, hasher: Sha256::new() }
    }

    /// Resume: `existing` are the bytes already received (read back from the partial file).
    pub fn resume(size: u64, existing: &[u8]) -> Self {
        let mut receiver = FileReceiver::new(size);
        receiver.hasher.update(existing);
        receiver.offset = existing.len() as u64;
        receiver
    }

    /// Next offset expected (what to ask the sender to resume from).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Check a chunk frame; returns the bytes to write at the current offset.
    pub fn accept<'a>(&mut self, frame: &'a Frame) -> Result<&'a [u8], FileError> {
        let Header::File(FileStep::Chunk { offset, .. }) = frame.header else {
            return Err(FileError::Unexpected("frame in place of a file chunk".into()));
        };
        if offset != self.offset {
            return Err(FileError::WrongOffset { expected: self.offset, got: offset });
        }
        if frame.payload.len() > FILE_CHUNK_BYTES {
            return Err(FileError::ChunkTooLarge { len: frame.payload.len() });
        }
        let end = self.offset + frame.payload.len() as u64;
        if end > self.size {
            return Err(FileError::SizeMismatch { expected: self.size, got: end });
        }
        self.hasher.update(&frame.payload);
        self.offset = end;
        Ok(&frame.payload)
    }

    /// Check the `end` frame: size and digest must both match before the file may be committed.
    pub fn finish(self, frame: &Frame) -> Result<(), FileError> {
        let Header::File(FileStep::End { sha256, .. }) = &frame.header else {
            return Err(FileError::Unexpected("frame in place of file end".into()));
        };
        if self.offset != self.size {
            return Err(FileError::SizeMismatch { expected: self.size, got: self.offset });
        }
        let actual = hex::encode(&self.hasher.finalize());
        if !actual.eq_ignore_ascii_case(sha256) {
            return Err(FileError::DigestMismatch { expected: sha256.clone(), actual });
        }
        Ok(())
    }
}
