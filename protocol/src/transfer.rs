//! File transfers as the client plans them, sans-IO: which bytes to read next, which chunks to
//! send, when to wait for the host, what to commit — for an upload; where to resume and whether
//! it all came — for a download. `tether cp` and the page's Files tab (and the editor's saves)
//! drive the same planners; each reads and writes its own files and sends the requests.
//!
//! Invariants:
//! - An upload's digest covers the whole file: bytes the host already has (a resumed upload) are
//!   read and hashed, not sent again. The commit names that digest; the host checks it before
//!   the file takes its name. A shell whose bytes pass somewhere else on their way (the page's
//!   link worker) hashes them there with `UploadDigest`, which takes them only in order, from
//!   offset 0, and finishes only once it has the whole size.
//! - At most `UPLOAD_WINDOW_BYTES` (and `UPLOAD_WINDOW_CHUNKS` chunks) are sent and unanswered:
//!   the answers are an upload's flow control, and a connection's other streams (a terminal)
//!   never wait behind more than that.
//! - A full window is refilled only once half of it was answered, so chunks leave in groups the
//!   connection seals side by side (`Sealer::seal_many`) rather than one per answer.
//! - The same source to the same place is the same upload (`upload_key`), so a transfer cut off
//!   by a lost link resumes from the byte the host has, on the next connection.
//! - A download whose consumer asks for bytes only when it runs short (a browser's stream to
//!   disk, `PullCredit`) credits everything it handed over at each ask, never one chunk per ask:
//!   asks undercount what was taken, and with credit granted in half-window lumps that left the
//!   host waiting for credit while the consumer waited for bytes.
//! - A download resumes from the bytes already received; one whose file shrank under it, or that
//!   ends short of the size the host announced, is an error, never a silent partial file.

use std::collections::VecDeque;

pub use crate::error::TransferError;
use crate::file::FileDigest;
use crate::fs::FsRequest;

/// Bytes of an upload sent and not yet answered, at most: about 20 ms at loopback's rate
/// (measured: `cp` up at 2 MiB left a fifth of the two cores idle, waiting for answers; 4 MiB
/// made it 8% faster).
pub const UPLOAD_WINDOW_BYTES: u64 = 4 << 20; // 4 MiB
/// Chunks of an upload unanswered at most: what the host queues per upload, so a window of
/// `tether cp`'s 64 KiB chunks holds `UPLOAD_WINDOW_BYTES`.
pub const UPLOAD_WINDOW_CHUNKS: usize = 64;

/// The upload's name on the host for `source` going to `path`: the same for the same version of
/// the same source (`version` says which: a local file's path and modification time, a browser
/// file's name and `lastModified`, an editor text's SHA-256), so a retry finds what the host has.
pub fn upload_key(path: &str, size: u64, version: &str) -> String {
    let mut key = FileDigest::new();
    key.update(format!("{path}\0{size}\0{version}").as_bytes());
    key.finish()[..32].to_owned()
}

/// One upload under way, after the host answered its `write` with the offset it has.
pub struct Upload {
    upload: String,
    size: u64,
    /// Bytes the host had when this attempt began; the ones before are hashed, not sent.
    host_has: u64,
    /// Bytes read from the source (and hashed) so far.
    read: u64,
    digest: FileDigest,
    /// Lengths of the chunks sent and not yet answered, oldest first.
    in_flight: VecDeque<u64>,
    unanswered: u64,
    /// The window filled and less than half of it was answered since: wait.
    refill_later: bool,
}

impl Upload {
    /// `upload` of `size` bytes, of which the host has the first `host_has`.
    pub fn new(upload: &str, size: u64, host_has: u64) -> Upload {
        Upload {
            upload: upload.to_owned(),
            size,
            host_has: host_has.min(size),
            read: 0,
            digest: FileDigest::new(),
            in_flight: VecDeque::new(),
            unanswered: 0,
            refill_later: false,
        }
    }

    /// The bytes to read from the source next, `start..end`, at most `chunk` of them (bytes the
    /// host has may come in bigger pieces: they are only hashed). `None` when everything has been
    /// read, or while the window is full until half of it was answered (wait: `answered`).
    pub fn next_read(&mut self, chunk: u64) -> Option<(u64, u64)> {
        if self.read >= self.size {
            return None;
        }
        if self.read < self.host_has {
            return Some((self.read, self.host_has.min(self.read + chunk.max(crate::fs::MAX_CHUNK_BYTES as u64))));
        }
        let full = self.in_flight.len() >= UPLOAD_WINDOW_CHUNKS || self.unanswered >= UPLOAD_WINDOW_BYTES;
        let half_answered =
            self.in_flight.len() <= UPLOAD_WINDOW_CHUNKS / 2 && self.unanswered <= UPLOAD_WINDOW_BYTES / 2;
        self.refill_later = full || (self.refill_later && !half_answered);
        (!self.refill_later).then(|| (self.read, self.size.min(self.read + chunk.max(1))))
    }

    /// The bytes just read, from `next_read`'s start: hashed; the `chunk` request to send with
    /// them as its payload when the host does not have them yet. Fewer bytes than asked for (none
    /// at all) mean the source is shorter than announced.
    pub fn read(&mut self, bytes: &[u8]) -> Result<Option<FsRequest>, TransferError> {
        let len = self.usable(bytes.len() as u64)?;
        self.digest.update(&bytes[..len as usize]);
        Ok(self.advance(len))
    }

    /// `read` for bytes hashed where they pass (an `UploadDigest`), not here: `n` bytes were
    /// read from `next_read`'s start. Commit with `commit_with` and that digest.
    pub fn read_hashed_elsewhere(&mut self, n: u64) -> Result<Option<FsRequest>, TransferError> {
        let len = self.usable(n)?;
        Ok(self.advance(len))
    }

    /// Of `n` bytes just read, those within the announced size (none: the source shrank).
    fn usable(&self, n: u64) -> Result<u64, TransferError> {
        if n == 0 {
            return Err(TransferError::SourceShrank { read: self.read, size: self.size });
        }
        Ok(n.min(self.size - self.read))
    }

    /// `len` bytes were read (and hashed): the chunk to send, unless the host has them.
    fn advance(&mut self, len: u64) -> Option<FsRequest> {
        let start = self.read;
        self.read += len;
        if start < self.host_has {
            return None;
        }
        self.in_flight.push_back(len);
        self.unanswered += len;
        Some(FsRequest::Chunk { upload: self.upload.clone(), offset: start })
    }

    /// The oldest chunk unanswered was answered (taken by the host): the bytes the host has now.
    pub fn answered(&mut self) -> u64 {
        if let Some(len) = self.in_flight.pop_front() {
            self.unanswered -= len;
        }
        self.read - self.unanswered
    }

    /// Chunks sent and not answered yet.
    pub fn unanswered_chunks(&self) -> usize {
        self.in_flight.len()
    }

    /// Everything is read and every chunk answered: time to commit.
    pub fn is_sent(&self) -> bool {
        self.read >= self.size && self.in_flight.is_empty()
    }

    /// The `commit` naming the whole file's digest (once `is_sent`).
    pub fn commit(mut self) -> FsRequest {
        let sha256 = std::mem::take(&mut self.digest).finish();
        self.commit_with(sha256)
    }

    /// The `commit` for bytes hashed elsewhere (`read_hashed_elsewhere`): `sha256` is the
    /// `UploadDigest`'s.
    pub fn commit_with(self, sha256: String) -> FsRequest {
        FsRequest::Commit { upload: self.upload, sha256 }
    }
}

/// An upload's SHA-256 taken where its bytes pass on their way to the host (the page's link
/// worker, so its main thread never hashes), apart from the `Upload` that plans them. It takes
/// the bytes of one attempt in order: offset 0 starts anew (an attempt after a lost link reads
/// the file again from its start), any other offset must follow what it has, or the attempt's
/// digest is spoilt (`finish` says why).
#[derive(Default)]
pub struct UploadDigest {
    size: u64,
    hashed: u64,
    digest: FileDigest,
    spoilt: Option<TransferError>,
}

impl UploadDigest {
    /// A digest of an upload of `size` bytes.
    pub fn new(size: u64) -> UploadDigest {
        UploadDigest { size, ..UploadDigest::default() }
    }

    /// The bytes read from `offset` (those past the size are not the file's).
    pub fn update(&mut self, offset: u64, bytes: &[u8]) -> Result<(), TransferError> {
        if offset == 0 {
            *self = UploadDigest::new(self.size);
        }
        if let Some(spoilt) = &self.spoilt {
            return Err(spoilt.clone());
        }
        if offset != self.hashed {
            let spoilt = TransferError::OutOfOrder { offset, hashed: self.hashed };
            self.spoilt = Some(spoilt.clone());
            return Err(spoilt);
        }
        let len = (bytes.len() as u64).min(self.size - self.hashed);
        self.digest.update(&bytes[..len as usize]);
        self.hashed += len;
        Ok(())
    }

    /// The hex SHA-256 of the whole file, once all of it was hashed.
    pub fn finish(self) -> Result<String, TransferError> {
        if let Some(spoilt) = self.spoilt {
            return Err(spoilt);
        }
        if self.hashed < self.size {
            return Err(TransferError::SourceShrank { read: self.hashed, size: self.size });
        }
        Ok(self.digest.finish())
    }
}

/// One download: what the next attempt asks for, and whether what came is the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Download {
    got: u64,
    size: Option<u64>,
}

impl Download {
    /// A download of which the first `have` bytes are already here (0 for a new one).
    pub fn resuming(have: u64) -> Download {
        Download { got: have, size: None }
    }

    /// The read that goes on from the bytes already here.
    pub fn request(&self, path: &str) -> FsRequest {
        FsRequest::Read { path: path.to_owned(), offset: self.got }
    }

    /// The host answered with the file's size.
    pub fn started(&mut self, size: u64) -> Result<(), TransferError> {
        if self.got > size {
            return Err(TransferError::RemoteShrank { have: self.got, size });
        }
        self.size = Some(size);
        Ok(())
    }

    /// `n` more bytes arrived; the bytes here now.
    pub fn received(&mut self, n: u64) -> u64 {
        self.got += n;
        self.got
    }

    pub fn got(&self) -> u64 {
        self.got
    }

    /// The size the host announced, once it has.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The stream ended: the whole file came, or it changed while it was read.
    pub fn finished(&self) -> Result<u64, TransferError> {
        match self.size {
            Some(size) if size != self.got => Err(TransferError::Changed { got: self.got, size }),
            _ => Ok(self.got),
        }
    }
}

/// Credit for a download whose bytes go to a consumer that asks for more only when it runs short
/// (a browser's `ReadableStream` pulling below its high-water mark): a chunk handed over is
/// credited back when the consumer next asks, and all of them then — an ask means everything
/// handed over before it was taken, or sits within the consumer's mark. The host's window still
/// bounds what the consumer holds. Credit is (stream, bytes), for the stream the chunk came on.
#[derive(Debug, Default)]
pub struct PullCredit {
    /// Chunks handed over since the last ask.
    unpulled: VecDeque<(u32, u64)>,
    /// Asks that came with nothing handed over: the next chunks are credited as they come.
    asks: u32,
}

impl PullCredit {
    /// A chunk of `n` bytes of `stream` was handed to the consumer: credit to give now, if the
    /// consumer asked before it came.
    pub fn handed(&mut self, stream: u32, n: u64) -> Option<(u32, u64)> {
        if self.asks > 0 {
            self.asks -= 1;
            return Some((stream, n));
        }
        self.unpulled.push_back((stream, n));
        None
    }

    /// The consumer asks for more: credit for everything handed to it since it last asked.
    pub fn asked(&mut self) -> Vec<(u32, u64)> {
        if self.unpulled.is_empty() {
            self.asks += 1;
        }
        self.unpulled.drain(..).collect()
    }

    /// The stream was cut and asked for again: credit owed on the old one is moot.
    pub fn restart(&mut self) {
        self.unpulled.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive an upload of `data` the host has `host_has` bytes of, answering chunks as the window
    /// fills; returns the chunks sent (offset, len) and the commit.
    fn run(data: &[u8], host_has: u64, chunk: u64) -> (Vec<(u64, u64)>, FsRequest) {
        let mut upload = Upload::new("u", data.len() as u64, host_has);
        let mut sent = Vec::new();
        while !upload.is_sent() {
            match upload.next_read(chunk) {
                Some((start, end)) => {
                    if let Some(FsRequest::Chunk { offset, .. }) =
                        upload.read(&data[start as usize..end as usize]).expect("reads")
                    {
                        sent.push((offset, end - start));
                    }
                }
                None => {
                    assert!(upload.unanswered_chunks() > 0, "waits only for answers");
                    upload.answered();
                }
            }
        }
        (sent, upload.commit())
    }

    #[test]
    fn an_upload_sends_in_order_within_its_window_and_commits_the_whole_digest() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut digest = FileDigest::new();
        digest.update(&data);
        let whole = digest.finish();
        let (sent, commit) = run(&data, 0, 64 * 1024);
        assert_eq!(sent.iter().map(|(_, len)| len).sum::<u64>(), data.len() as u64);
        assert!(sent.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0), "in order, no gap");
        assert_eq!(commit, FsRequest::Commit { upload: "u".into(), sha256: whole.clone() });

        // Resumed: what the host has is hashed, not sent; the digest is the same.
        let (sent, commit) = run(&data, 1_000_000, 64 * 1024);
        assert_eq!(sent.first().map(|c| c.0), Some(1_000_000));
        assert_eq!(sent.iter().map(|(_, len)| len).sum::<u64>(), 2_000_000);
        assert_eq!(commit, FsRequest::Commit { upload: "u".into(), sha256: whole });
    }

    #[test]
    fn a_digest_taken_where_the_bytes_pass_is_the_planners_and_takes_them_only_in_order() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (_, own) = run(&data, 300_000, 64 * 1024);
        let FsRequest::Commit { sha256: whole, .. } = own else { panic!("a commit") };

        // The shell's way: the planner counts, the bytes are hashed elsewhere; an attempt cut
        // off half way begins again at 0, and the host has some of it by then.
        let mut elsewhere = UploadDigest::new(data.len() as u64);
        elsewhere.update(0, &data[..500_000]).expect("in order");
        let mut plan = Upload::new("u", data.len() as u64, 300_000);
        while !plan.is_sent() {
            match plan.next_read(100_000) {
                Some((start, end)) => {
                    let bytes = &data[start as usize..end as usize];
                    elsewhere.update(start, bytes).expect("in order");
                    plan.read_hashed_elsewhere(bytes.len() as u64).expect("reads");
                }
                None => {
                    plan.answered();
                }
            }
        }
        assert_eq!(
            plan.commit_with(elsewhere.finish().expect("all of it")),
            FsRequest::Commit { upload: "u".into(), sha256: whole }
        );

        let mut gap = UploadDigest::new(100);
        gap.update(0, &[1; 40]).expect("in order");
        let out_of_order = Err(TransferError::OutOfOrder { offset: 50, hashed: 40 });
        assert_eq!(gap.update(50, &[1; 10]), out_of_order);
        assert_eq!(gap.update(40, &[1; 60]), out_of_order, "spoilt for the rest of the attempt");
        assert_eq!(gap.finish(), Err(TransferError::OutOfOrder { offset: 50, hashed: 40 }));
        let mut short = UploadDigest::new(100);
        short.update(0, &[1; 40]).expect("in order");
        assert_eq!(short.finish(), Err(TransferError::SourceShrank { read: 40, size: 100 }));
        let mut again = UploadDigest::new(3);
        again.update(2, &[1]).expect_err("not from the start");
        again.update(0, &[1, 2, 3]).expect("an attempt starts anew");
        assert!(again.finish().is_ok());
    }

    #[test]
    fn the_window_bounds_what_is_unanswered() {
        let mut upload = Upload::new("u", 10 << 20, 0);
        let mut chunks = 0;
        while let Some((start, end)) = upload.next_read(128 * 1024) {
            upload.read(&vec![0; (end - start) as usize]).expect("reads");
            chunks += 1;
        }
        assert_eq!(chunks, (UPLOAD_WINDOW_BYTES / (128 * 1024)) as usize);
        // Refilled in groups: one answer is not enough, half the window answered is.
        for _ in 0..chunks / 2 - 1 {
            upload.answered();
            assert!(upload.next_read(128 * 1024).is_none(), "waits until half the window was answered");
        }
        upload.answered();
        let mut refill = 0;
        while let Some((start, end)) = upload.next_read(128 * 1024) {
            upload.read(&vec![0; (end - start) as usize]).expect("reads");
            refill += 1;
        }
        assert_eq!(refill, chunks / 2, "then the window fills again at once");
        let mut small = Upload::new("u", 10 << 20, 0);
        let mut chunks = 0;
        while let Some((start, end)) = small.next_read(1024) {
            small.read(&vec![0; (end - start) as usize]).expect("reads");
            chunks += 1;
        }
        assert_eq!(chunks, UPLOAD_WINDOW_CHUNKS);
    }

    #[test]
    fn a_source_shorter_than_announced_is_an_error() {
        let mut upload = Upload::new("u", 100, 0);
        assert!(upload.next_read(64).is_some());
        upload.read(&[1; 64]).expect("reads");
        assert_eq!(upload.read(&[]), Err(TransferError::SourceShrank { read: 64, size: 100 }));
    }

    #[test]
    fn a_download_resumes_and_says_when_the_file_changed() {
        let mut download = Download::resuming(10);
        assert_eq!(download.request("/f"), FsRequest::Read { path: "/f".into(), offset: 10 });
        download.started(30).expect("bigger than what we have");
        assert_eq!(download.received(15), 25);
        assert_eq!(download.finished(), Err(TransferError::Changed { got: 25, size: 30 }));
        download.received(5);
        assert_eq!(download.finished(), Ok(30));
        assert_eq!(Download::resuming(50).started(30), Err(TransferError::RemoteShrank { have: 50, size: 30 }));
    }

    #[test]
    fn the_same_source_to_the_same_place_is_the_same_upload() {
        assert_eq!(upload_key("/a", 3, "v1"), upload_key("/a", 3, "v1"));
        assert_ne!(upload_key("/a", 3, "v1"), upload_key("/b", 3, "v1"));
        assert_ne!(upload_key("/a", 3, "v1"), upload_key("/a", 3, "v2"));
        assert_eq!(upload_key("/a", 3, "v1").len(), 32);
    }

    /// A consumer like a browser's stream: it takes up to three chunks a turn and asks once a
    /// turn while it is short, and only in a turn in which something came or went (its pulls
    /// coalesce, and it does not ask again unprompted); the host sends while its window allows
    /// and the receiver grants credit in half-window lumps, as the connection does.
    #[test]
    fn a_consumer_that_asks_less_often_than_it_takes_never_stalls_the_download() {
        use crate::stream::{RecvWindow, INITIAL_WINDOW_BYTES, MAX_DATA_CHUNK};
        const CHUNK: u64 = MAX_DATA_CHUNK as u64;
        const CHUNKS: u64 = 400;
        const HIGH_WATER_CHUNKS: u64 = 4;
        let mut receiver = RecvWindow::new(INITIAL_WINDOW_BYTES);
        let mut host_may_send = INITIAL_WINDOW_BYTES;
        let mut credit = PullCredit::default();
        let (mut sent, mut held, mut taken) = (0u64, 0u64, 0u64);
        let give = |receiver: &mut RecvWindow, host_may_send: &mut u64, owed: Vec<(u32, u64)>| {
            for (_, n) in owed {
                *host_may_send += receiver.on_consume(n).unwrap_or(0);
            }
        };
        for _turn in 0..10_000 {
            let before = sent;
            while sent < CHUNKS && host_may_send >= CHUNK {
                host_may_send -= CHUNK;
                receiver.on_receive(1, CHUNK).expect("within the window");
                sent += 1;
                held += 1;
                let now = credit.handed(1, CHUNK).into_iter().collect();
                give(&mut receiver, &mut host_may_send, now);
            }
            let took = held.min(3);
            held -= took;
            taken += took;
            if taken == CHUNKS {
                return;
            }
            if held < HIGH_WATER_CHUNKS && (took > 0 || sent > before) {
                let owed = credit.asked();
                give(&mut receiver, &mut host_may_send, owed);
            }
        }
        panic!("stalled: {taken} of {CHUNKS} chunks taken, {sent} sent");
    }
}
