//! Bytes out, as streams: a directory's listing in pages, a file from any offset (its data
//! numbered by file offset, so a cut-off download goes on from where it got to), and a folder
//! as a `.tar.gz` built as it goes. Each is answered first, then its `data` frames, then `eof`;
//! the connection's flow-control window paces them.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use tether_protocol::api::{ErrorCode, Response};
use tether_protocol::file::FILE_CHUNK_BYTES;
use tether_protocol::fs::{encode_page, Entry, FsResponse};
use tokio::sync::mpsc;

use super::entries;
use super::failure::{io_failure, Failure};
use super::paths::{Located, Roots};
use crate::dir::Dir;

use crate::host::service::{StreamItem, StreamTx};

/// Stream a directory's entries in pages, then `eof`. The first message says whether it could
/// be read at all (answered as an error, never a listing).
pub async fn list(at: Located, roots: Arc<Roots>, id: u64, stream: u32, tx: StreamTx) {
    let (pages_tx, mut pages) = mpsc::channel::<Result<Vec<Entry>, Failure>>(2);
    let shown = at.shown();
    tokio::task::spawn_blocking(move || {
        let shown = at.shown();
        let listed = at.open_dir().map_err(|e| io_failure(&shown, &e)).and_then(|dir| {
            entries::list(&dir, &at.path, &roots, &shown, |page| pages_tx.blocking_send(Ok(page)).is_ok())
        });
        if let Err(failure) = listed {
            let _ = pages_tx.blocking_send(Err(failure));
        }
    });
    let listing = Response::Fs(FsResponse::Listing { path: shown, stream });
    let mut seq = 0u64;
    let mut answered = false;
    while let Some(page) = pages.recv().await {
        let page = match page {
            Ok(page) => page,
            Err(failure) if !answered => {
                let _ = tx.send(StreamItem::Answer { id, answer: failure.answer() }).await;
                return;
            }
            Err(_) => break, // cannot happen: errors come before any page
        };
        if !answered {
            if tx.send(StreamItem::answer(id, listing.clone())).await.is_err() {
                return;
            }
            answered = true;
        }
        let bytes = encode_page(&page);
        let len = bytes.len() as u64;
        if tx.send(StreamItem::Data { stream, seq, bytes }).await.is_err() {
            return;
        }
        seq += len;
    }
    if !answered && tx.send(StreamItem::answer(id, listing)).await.is_err() {
        return;
    }
    let _ = tx.send(StreamItem::Eof { stream, end: seq }).await;
}

/// Stream a file from `offset` (data numbered by file offset), then `eof`.
pub async fn read(at: Located, shown: String, offset: u64, id: u64, stream: u32, tx: StreamTx) {
    let opened = {
        let shown = shown.clone();
        tokio::task::spawn_blocking(move || open_for_reading(&at.dir, &at.name, &shown)).await
    };
    let (mut file, size, mtime_ms) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(failure)) => return drop(tx.send(StreamItem::Answer { id, answer: failure.answer() }).await),
        Err(_) => return,
    };
    let reading = Response::Fs(FsResponse::Reading { path: shown.clone(), size, mtime_ms, offset, stream });
    if tx.send(StreamItem::answer(id, reading)).await.is_err() {
        return;
    }
    let mut cursor = offset;
    loop {
        // A few frames' worth per trip to the blocking pool; each frame one stream chunk.
        let read = tokio::task::spawn_blocking(move || {
            let mut chunk = vec![0u8; READ_BYTES];
            let n = file.seek(SeekFrom::Start(cursor)).and_then(|_| file.read(&mut chunk));
            n.map(|n| {
                chunk.truncate(n);
                (file, chunk)
            })
        })
        .await;
        let Ok(Ok((back, chunk))) = read else { return }; // a read error: the stream ends without eof
        file = back;
        if chunk.is_empty() {
            let _ = tx.send(StreamItem::Eof { stream, end: cursor }).await;
            return;
        }
        for piece in chunk.chunks(FILE_CHUNK_BYTES) {
            if tx.send(StreamItem::Data { stream, seq: cursor, bytes: piece.to_vec() }).await.is_err() {
                return;
            }
            cursor += piece.len() as u64;
        }
    }
}

/// Bytes of a download read at a time.
const READ_BYTES: usize = 4 * FILE_CHUNK_BYTES; // 256 KiB

/// Bytes of a `.tar.gz` gathered before they go out as one `data` frame.
const ARCHIVE_FRAME_BYTES: usize = FILE_CHUNK_BYTES;
/// Frames of a `.tar.gz` the builder may be ahead of the connection.
const ARCHIVE_QUEUE_FRAMES: usize = 4;

/// Stream a directory as a `.tar.gz`, built as it goes on a blocking thread; then `eof`. An
/// entry that cannot be read is left out and named in `tether-skipped.txt` at the end.
pub async fn archive(at: Located, id: u64, stream: u32, tx: StreamTx) {
    let opened = tokio::task::spawn_blocking(move || {
        let shown = at.shown();
        match at.metadata() {
            Ok(meta) if meta.is_dir() => at.open_dir().map(|dir| (dir, at)).map_err(|e| io_failure(&shown, &e)),
            Ok(_) => Err(Failure::new(ErrorCode::NotADirectory, format!("{shown}: not a directory"))),
            Err(e) => Err(io_failure(&shown, &e)),
        }
    })
    .await;
    let (dir, at) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(failure)) => return drop(tx.send(StreamItem::Answer { id, answer: failure.answer() }).await),
        Err(_) => return,
    };
    let base = at.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
    let name = format!("{base}.tar.gz");
    let archiving = Response::Fs(FsResponse::Archiving { path: at.shown(), name, stream });
    if tx.send(StreamItem::answer(id, archiving)).await.is_err() {
        return;
    }
    let (chunks_tx, mut chunks) = mpsc::channel::<Vec<u8>>(ARCHIVE_QUEUE_FRAMES);
    let built = tokio::task::spawn_blocking(move || build_archive(dir, &base, chunks_tx));
    let mut seq = 0u64;
    while let Some(chunk) = chunks.recv().await {
        let len = chunk.len() as u64;
        if tx.send(StreamItem::Data { stream, seq, bytes: chunk }).await.is_err() {
            return; // the client went: the builder stops at its next write
        }
        seq += len;
    }
    if let Ok(Ok(())) = built.await {
        let _ = tx.send(StreamItem::Eof { stream, end: seq }).await;
    }
}

/// Writes into the archive stream, a frame's worth at a time.
struct FrameWriter {
    pending: Vec<u8>,
    out: mpsc::Sender<Vec<u8>>,
}

impl Write for FrameWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= ARCHIVE_FRAME_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.pending);
        self.out.blocking_send(chunk).map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

fn build_archive(dir: Dir, base: &str, out: mpsc::Sender<Vec<u8>>) -> std::io::Result<()> {
    let writer = FrameWriter { pending: Vec::with_capacity(ARCHIVE_FRAME_BYTES), out };
    let gzip = flate2::write::GzEncoder::new(writer, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    let mut skipped = Vec::new();
    let meta = dir.symlink_metadata(OsStr::new("."))?;
    add_dir(&mut tar, &dir, &meta, Path::new(base), &mut skipped)?;
    if !skipped.is_empty() {
        let note = skipped.join("\n") + "\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(note.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, Path::new(base).join("tether-skipped.txt"), note.as_bytes())?;
    }
    let mut writer = tar.into_inner()?.finish()?;
    writer.flush()
}

/// Whether an error is the archive's own (the client went): only that stops the walk.
fn stops(e: std::io::Error, name: &Path, skipped: &mut Vec<String>) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return Err(e);
    }
    skipped.push(format!("{}: {e}", name.display()));
    Ok(())
}

/// Add the directory `dir` (as `name` in the archive, `meta` its own) and everything under it,
/// sorted. Each entry is reached from its directory's handle and nothing is followed: a link is
/// archived as a link, a directory swapped for one meanwhile is not entered.
fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Dir,
    meta: &std::fs::Metadata,
    name: &Path,
    skipped: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_metadata(meta);
    header.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut header, name, std::io::empty())?;
    let mut children = match dir.names() {
        Ok(children) => children,
        Err(e) => return stops(e, name, skipped),
    };
    children.sort();
    for child in children {
        if let Err(e) = add_entry(tar, dir, &child, &name.join(&child), skipped) {
            stops(e, &name.join(&child), skipped)?;
        }
    }
    Ok(())
}

fn add_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Dir,
    child: &OsStr,
    name: &Path,
    skipped: &mut Vec<String>,
) -> std::io::Result<()> {
    let meta = dir.symlink_metadata(child)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata(&meta);
    if meta.is_dir() {
        return add_dir(tar, &dir.dir(child)?, &meta, name, skipped);
    }
    if meta.file_type().is_symlink() {
        header.set_size(0);
        return tar.append_link(&mut header, name, dir.read_link(child)?);
    }
    if !meta.is_file() {
        // A FIFO, socket or device: its entry, never its bytes.
        header.set_size(0);
        return tar.append_data(&mut header, name, std::io::empty());
    }
    let file = dir.open_file(child, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    let opened = file.metadata()?;
    if !opened.is_file() || (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(std::io::Error::other("changed while archived")); // swapped since it was looked at
    }
    header.set_metadata(&opened);
    // Exactly the size said in the header, even if the file grows or shrinks meanwhile.
    let size = opened.len();
    tar.append_data(&mut header, name, PaddedTo { inner: file.take(size), left: size })
}

/// A reader that gives exactly `left` bytes: the file's, then zeros if it shrank.
struct PaddedTo<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for PaddedTo<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let most = buffer.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = match self.inner.read(&mut buffer[..most])? {
            0 => {
                buffer[..most].fill(0);
                most
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

fn open_for_reading(dir: &Dir, name: &OsStr, shown: &str) -> Result<(std::fs::File, u64, i64), Failure> {
    let (file, meta) = entries::open_regular(dir, name, shown)?;
    Ok((file, meta.len(), entries::mtime_ms(&meta)))
}
