//! Uploading a browser file to the host, on the protocol's upload planner (`transfer::Upload`,
//! the one `tether cp` follows): in chunks of `CHUNK_BYTES` (`TYPING_CHUNK_BYTES` while someone
//! types), within the planner's window of unanswered bytes, each handed over only once the link
//! has sent nearly everything before it (`Link::room_for_bulk`: so typing is never queued behind
//! file bytes); the host checks the SHA-256 and commits atomically. A chunk goes to the link
//! worker as a piece of the browser's read of the file: the page's main thread neither hashes
//! nor seals it (the worker hashes it on its way to be sealed, `Link::upload_bytes`). A lost
//! connection is no failure:
//! once it is back, the upload goes on from the byte the host has (the same upload name finds
//! its temporary file). Dropped folders are walked here into their files. The editor's saves
//! are uploads too (of its text, conditional on the version it started from).

use std::cell::Cell;

use tether_protocol::fs::{FsRequest, FsResponse};
use tether_protocol::transfer::{upload_key, Upload};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::link::messages::buffer_of;
use crate::link::{Hashing, Link, Refused, RECONNECT_WAIT_MS, RESUMES};

/// A chunk while nobody types: big, for throughput.
const CHUNK_BYTES: usize = 128 * 1024; // 128 KiB
/// A chunk while someone types on this connection: small, because a keystroke waits for the
/// chunk at hand — hashed and sealed in the link worker, in order — and its echo waits with it
/// (measured when both ran on the page's main thread: 64 KiB chunks cost the echo a frame at
/// p50, 16 KiB did not).
const TYPING_CHUNK_BYTES: usize = 16 * 1024; // 16 KiB
/// What a file is read in: a `slice` and its `arrayBuffer` cost the page's main thread about
/// half a millisecond each whatever their length (measured: 1.4 s of the 1.6 s the main thread
/// spent on a 200 MB upload read in 128 KiB chunks), so chunks are cut from bigger pieces.
const READ_AHEAD_BYTES: u64 = 4 << 20; // 4 MiB
/// Input this recent means someone is typing.
const TYPING_MS: u64 = 2_000;

/// What an upload sends.
pub enum Source<'a> {
    /// A file the user picked or dropped, read a chunk at a time.
    File(&'a web_sys::File),
    /// Bytes in memory (an editor's text) and their SHA-256 (hex), which the caller has already.
    Bytes { bytes: &'a [u8], sha256: &'a str },
}

impl Source<'_> {
    fn size(&self) -> u64 {
        match self {
            Source::File(file) => file.size() as u64,
            Source::Bytes { bytes, .. } => bytes.len() as u64,
        }
    }

    /// The upload's name on the host: the same for the same source, so a retry resumes.
    fn upload_name(&self, path: &str) -> String {
        let version = match self {
            Source::File(file) => format!("{}\0{}", file.name(), file.last_modified()),
            Source::Bytes { sha256, .. } => (*sha256).to_owned(),
        };
        upload_key(path, self.size(), &version)
    }
}

/// Reads a source's chunks, each in a buffer of its own to hand to the link worker; a file a
/// whole `READ_AHEAD_BYTES` piece at a time.
struct Reader<'a> {
    source: &'a Source<'a>,
    /// The piece of the file read last, and where it starts.
    piece: Option<js_sys::ArrayBuffer>,
    piece_start: u64,
}

impl<'a> Reader<'a> {
    fn new(source: &'a Source<'a>) -> Self {
        Reader { source, piece: None, piece_start: 0 }
    }

    /// Bytes `start..end` (fewer, none at all, where the file ends sooner than it said).
    async fn read(&mut self, start: u64, end: u64) -> Result<js_sys::ArrayBuffer, String> {
        let file = match self.source {
            Source::File(file) => file,
            Source::Bytes { bytes, .. } => return Ok(buffer_of(&bytes[start as usize..end as usize])),
        };
        let piece_end = |piece: &js_sys::ArrayBuffer| self.piece_start + u64::from(piece.byte_length());
        if !self.piece.as_ref().is_some_and(|piece| start >= self.piece_start && end <= piece_end(piece)) {
            let until = (start + READ_AHEAD_BYTES).max(end).min(self.source.size());
            self.piece = Some(read_slice(file, start, until).await?);
            self.piece_start = start;
        }
        let piece = self.piece.as_ref().ok_or("cannot read the file")?;
        let length = u64::from(piece.byte_length());
        let (from, to) = ((start - self.piece_start).min(length), (end - self.piece_start).min(length));
        Ok(piece.slice_with_end(from as u32, to as u32))
    }
}

/// What may be replaced at the target.
#[derive(Clone, Copy)]
pub struct Replace<'a> {
    /// An existing file may be replaced.
    pub overwrite: bool,
    /// Only while it still has this SHA-256 (an editor's save; refused with `changed`).
    pub base: Option<&'a str>,
}

/// Upload `source` to `path` on the host, going on after lost connections.
pub async fn send(
    link: &Link,
    source: Source<'_>,
    path: &str,
    replace: Replace<'_>,
    cancel: &Cell<bool>,
    progress: &impl Fn(u64),
) -> Result<(), Refused> {
    let mut attempts = 0;
    loop {
        let result = send_once(link, &source, path, replace, cancel, progress).await;
        let lost = !matches!(link.status(), crate::link::Status::Connected);
        if result.is_ok() || cancel.get() || !lost || attempts >= RESUMES {
            return result;
        }
        attempts += 1;
        if !link.connected_again(RECONNECT_WAIT_MS).await {
            return result;
        }
    }
}

/// Upload `source` to `path` in chunks; the host checks the SHA-256 and commits.
async fn send_once(
    link: &Link,
    source: &Source<'_>,
    path: &str,
    replace: Replace<'_>,
    cancel: &Cell<bool>,
    progress: &impl Fn(u64),
) -> Result<(), Refused> {
    let size = source.size();
    let upload = source.upload_name(path);
    let write = FsRequest::Write {
        path: path.to_owned(),
        size,
        upload: upload.clone(),
        overwrite: replace.overwrite,
        mode: None,
        base: replace.base.map(str::to_owned),
    };
    let FsResponse::Writing { offset, .. } = link.call_fs_with(write, Vec::new()).await? else {
        return Err("unexpected answer to write".to_owned().into());
    };
    use futures_util::stream::{FuturesOrdered, StreamExt};
    let mut plan = Upload::new(&upload, size, offset);
    let digest = DigestInWorker { link, upload: &upload };
    let mut reader = Reader::new(source);
    // A few chunks unanswered at a time: the next is read while the last ones travel.
    let mut in_flight = FuturesOrdered::new();
    while !plan.is_sent() {
        if cancel.get() {
            let _ = link.call_fs(FsRequest::Cancel { upload: upload.clone() }).await;
            return Err("cancelled".to_owned().into());
        }
        let chunk_bytes = if link.input_within(TYPING_MS) { TYPING_CHUNK_BYTES } else { CHUNK_BYTES };
        match plan.next_read(chunk_bytes as u64) {
            Some((start, end)) => {
                // Handed over only when the link has room: typing goes out ahead of what is queued.
                if start >= offset {
                    link.room_for_bulk(chunk_bytes as u32).await;
                }
                let bytes = reader.read(start, end).await?;
                let chunk = plan.read_hashed_elsewhere(u64::from(bytes.byte_length())).map_err(String::from)?;
                let hashing = Hashing { upload: upload.clone(), size, offset: start };
                if let Some(answer) = link.upload_bytes(chunk, bytes, hashing) {
                    in_flight.push_back(answer);
                }
            }
            // The window is full, or everything is read: wait for the oldest answer.
            None => {
                if let Some(answered) = in_flight.next().await {
                    answered?;
                    progress(plan.answered());
                }
            }
        }
    }
    progress(size);
    let sha256 = digest.finish().await?;
    link.call_fs_with(plan.commit_with(sha256), Vec::new()).await?;
    Ok(())
}

/// An upload's digest, taken in the link worker: asked for at the end, forgotten there when the
/// upload ends any other way.
struct DigestInWorker<'a> {
    link: &'a Link,
    upload: &'a str,
}

impl DigestInWorker<'_> {
    async fn finish(self) -> Result<String, String> {
        let digest = self.link.upload_digest(self.upload).await;
        std::mem::forget(self); // the worker forgot it as it answered
        digest
    }
}

impl Drop for DigestInWorker<'_> {
    fn drop(&mut self) {
        self.link.forget_upload_digest(self.upload);
    }
}

/// Bytes `start..end` of a browser file.
async fn read_slice(file: &web_sys::File, start: u64, end: u64) -> Result<js_sys::ArrayBuffer, String> {
    let blob = file.slice_with_f64_and_f64(start as f64, end as f64).map_err(|_| "cannot read the file".to_owned())?;
    let buffer = wasm_bindgen_futures::JsFuture::from(blob.array_buffer())
        .await
        .map_err(|_| "cannot read the file".to_owned())?;
    buffer.dyn_into().map_err(|_| "cannot read the file".to_owned())
}

/// Files found under a dropped entry, each with its path.
type Walked = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<(web_sys::File, String)>>>>;

/// A dropped entry's files: itself, or everything in a folder, each with its path from `prefix`.
pub fn walk_entry(entry: web_sys::FileSystemEntry, prefix: String) -> Walked {
    Box::pin(async move {
        let name = format!("{prefix}{}", entry.name());
        if entry.is_file() {
            let file_entry: web_sys::FileSystemFileEntry = entry.unchecked_into();
            return file_of(&file_entry).await.map(|file| vec![(file, name)]).unwrap_or_default();
        }
        let dir: web_sys::FileSystemDirectoryEntry = entry.unchecked_into();
        let reader = dir.create_reader();
        let mut files = Vec::new();
        // readEntries gives a batch at a time, then an empty one.
        loop {
            let batch = read_entries(&reader).await;
            if batch.is_empty() {
                break;
            }
            for child in batch {
                files.extend(walk_entry(child, format!("{name}/")).await);
            }
        }
        files
    })
}

/// A browser API that takes a success and a failure callback, as a future.
async fn called_back(call: impl FnOnce(&js_sys::Function, &js_sys::Function)) -> Result<JsValue, JsValue> {
    let mut call = Some(call);
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        if let Some(call) = call.take() {
            call(&resolve, &reject);
        }
    });
    wasm_bindgen_futures::JsFuture::from(promise).await
}

async fn file_of(entry: &web_sys::FileSystemFileEntry) -> Option<web_sys::File> {
    let file = called_back(|ok, failed| entry.file_with_callback_and_callback(ok, failed)).await;
    file.ok().map(|file| file.unchecked_into())
}

async fn read_entries(reader: &web_sys::FileSystemDirectoryReader) -> Vec<web_sys::FileSystemEntry> {
    let batch = called_back(|ok, failed| {
        let _ = reader.read_entries_with_callback_and_callback(ok, failed);
    })
    .await;
    batch.map(|entries| js_sys::Array::from(&entries).iter().map(|e| e.unchecked_into()).collect()).unwrap_or_default()
}
