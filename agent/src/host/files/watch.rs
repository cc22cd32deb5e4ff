//! A file an editor has open, followed: its version now, then again whenever its bytes change on
//! disk, so the editor warns before a save rather than after.
//!
//! Polled (one `stat` per `WATCH_POLL`, a hash only when the stat moved) rather than inotify:
//! it sees changes the same way on every file system (NFS and FUSE mounts tell inotify nothing),
//! needs no per-user watch limit, and a stat of the few files a browser has open costs nothing.
//! A change that leaves the bytes as they were (`touch`) is not reported.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use tether_protocol::api::Response;
use tether_protocol::file::{FileDigest, FILE_CHUNK_BYTES};
use tether_protocol::fs::{FsResponse, Version};

use super::entries;
use super::paths::Located;
use crate::host::service::{StreamItem, StreamTx};
use crate::host::streams::send_json_line;

/// How often a watched file is looked at.
const WATCH_POLL: Duration = Duration::from_millis(500);
/// Files bigger than this are not hashed on every change (the editor opens them read-only).
const MAX_HASHED_BYTES: u64 = 16 * 1024 * 1024; // 16 MiB: above every editable file

/// SHA-256 (hex) of the file `at`; `None` when it is bigger than `MAX_HASHED_BYTES` or not a
/// regular file (a name swapped for a FIFO, a link or `/dev/zero` is never read).
pub fn sha256_of(at: &Located) -> std::io::Result<Option<String>> {
    let Ok((mut file, meta)) = super::entries::open_regular(&at.dir, &at.name, "") else {
        return at.metadata().map(|_| None);
    };
    if meta.len() > MAX_HASHED_BYTES {
        return Ok(None);
    }
    let mut digest = FileDigest::new();
    let mut buffer = vec![0u8; FILE_CHUNK_BYTES];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(Some(digest.finish())),
            n => digest.update(&buffer[..n]),
        }
    }
}

/// What a `stat` says about a file: when it moves, the bytes may have changed.
#[derive(PartialEq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: (i64, i64),
    changed_ns: (i64, i64),
}

fn stamp(at: &Located) -> Option<Stamp> {
    let meta = at.metadata().ok()?;
    Some(Stamp {
        device: meta.dev(),
        inode: meta.ino(),
        size: meta.len(),
        modified_ns: (meta.mtime(), meta.mtime_nsec()),
        changed_ns: (meta.ctime(), meta.ctime_nsec()),
    })
}

fn version(at: &Located) -> Version {
    match at.metadata() {
        Ok(meta) => Version {
            exists: true,
            size: meta.len(),
            mtime_ms: entries::mtime_ms(&meta),
            sha256: sha256_of(at).ok().flatten(),
        },
        Err(_) => Version { exists: false, size: 0, mtime_ms: 0, sha256: None },
    }
}

/// Answer `watching`, then send the version of the file `at` now and after every change of its
/// bytes, until the client goes (the stream's task is aborted on detach, or `tx` closes). The
/// name is followed in its directory: a save that renames a new file into place is seen.
pub async fn watch(at: Located, shown: String, id: u64, stream: u32, tx: StreamTx) {
    let at = Arc::new(at);
    let watching = Response::Fs(FsResponse::Watching { path: shown, stream });
    if tx.send(StreamItem::answer(id, watching)).await.is_err() {
        return;
    }
    let (mut seq, mut last_stamp, mut last_sent) = (0u64, None, None::<(bool, Option<String>)>);
    loop {
        let now = {
            let at = at.clone();
            tokio::task::spawn_blocking(move || stamp(&at)).await.ok().flatten()
        };
        if last_sent.is_none() || now != last_stamp {
            let at = at.clone();
            let Ok(version) = tokio::task::spawn_blocking(move || version(&at)).await else { return };
            let same_bytes = last_sent.as_ref() == Some(&(version.exists, version.sha256.clone()));
            if (!same_bytes || version.sha256.is_none())
                && send_json_line(&tx, stream, &mut seq, &version).await.is_err()
            {
                return;
            }
            last_sent = Some((version.exists, version.sha256));
            last_stamp = now;
        }
        tokio::time::sleep(WATCH_POLL).await;
    }
}
