//! The file service's requests and answers: what the browser's file manager, the editor and
//! `tether cp` / `tether fs` ask of a host's files. Plain data, carried in `cmd` frames like the
//! session API ([`crate::api`]); file bytes and long listings travel as stream data, so they are
//! flow-controlled, resumable by offset and fair to the terminal streams on the same connection.
//!
//! Shapes on the wire:
//! - `list`: answered `listing`, then pages of entries as `data` on stream = request id, one JSON
//!   array of [`Entry`] per line (at most [`LIST_PAGE_ENTRIES`] each), then `control/eof`. A
//!   directory of 100,000 entries never sits in one message.
//! - `read`: answered `reading` (size and mtime as opened), then the file's bytes from `offset`
//!   as `data` on stream = request id, numbered by file offset, then `control/eof`.
//! - `write`: answered `writing` with the offset the host already has for this upload (non-zero
//!   when resuming); the client then sends the bytes from that offset as `chunk`s (bytes in the
//!   payload, at most [`MAX_CHUNK_BYTES`], each at the next offset, a few unanswered at a time:
//!   the answers are its flow control), and asks `commit` with the SHA-256 of the whole file.
//!   Only a commit whose digest matches puts the file at its path (atomically). An editor's save
//!   is such an upload with `base` set: refused (`changed`) when the file is no longer the
//!   version the edit started from.
//! - `watch`: answered `watching`, then one [`Version`] per line as `data` whenever the file's
//!   bytes change on disk (the first at once), until the client detaches.
//!
//! Paths are UTF-8 strings, absolute or relative to the home directory (or the files root).

use serde::{Deserialize, Serialize};

/// Entries per page of a listing.
pub const LIST_PAGE_ENTRIES: usize = 500;

/// Largest upload chunk.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024; // 256 KiB

/// Requests to the file service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fs", rename_all = "snake_case")]
pub enum FsRequest {
    /// A directory's entries (`.` and `..` left out), streamed in pages.
    List { path: String },
    /// One entry (a symlink itself, not its target).
    Stat { path: String },
    /// Make a directory; with `parents`, the missing ones above it too (and no error if it is
    /// there).
    Mkdir {
        path: String,
        #[serde(default)]
        parents: bool,
    },
    /// Rename or move; refuses to replace an existing `to` unless `overwrite`.
    Rename {
        from: String,
        to: String,
        #[serde(default)]
        overwrite: bool,
    },
    /// Copy a file or a whole directory tree; refuses an existing `to` unless `overwrite`.
    Copy {
        from: String,
        to: String,
        #[serde(default)]
        overwrite: bool,
    },
    /// Delete: into the trash (answered `trashed`, undone by `restore`), or for good.
    Delete {
        path: String,
        #[serde(default)]
        permanent: bool,
    },
    /// Put a trashed entry back where it was.
    Restore { trash_id: String },
    /// Make a symlink at `path` pointing at `target` (as written; not resolved or checked: a
    /// link that leads out of a files root is refused when followed, like any other).
    Symlink { path: String, target: String },
    /// Set permission bits (`0o777` and the sticky/setuid/setgid bits).
    Chmod { path: String, mode: u32 },
    /// Download from `offset`.
    Read {
        path: String,
        #[serde(default)]
        offset: u64,
    },
    /// A directory as a `.tar.gz` built on the host as it streams (symlinks kept as links):
    /// answered `archiving`, then its bytes on stream = request id, then `control/eof`.
    Archive { path: String },
    /// Start or resume an upload of `size` bytes to `path`. `upload` names it across
    /// reconnects (the client's choice, e.g. a hash of its source and size); the bytes gather
    /// in a temporary file beside `path` until `commit`. Refused at once when `path` exists and
    /// `overwrite` is not set.
    Write {
        path: String,
        size: u64,
        upload: String,
        #[serde(default)]
        overwrite: bool,
        /// Permission bits for a new file (an existing file keeps its own).
        #[serde(default)]
        mode: Option<u32>,
        /// An editor's save: replace the file only while its SHA-256 (hex) is still this, the
        /// version the edit started from. Checked when the write starts and again just before
        /// the rename; a file changed (or gone) meanwhile is refused with `changed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<String>,
    },
    /// The upload's bytes at `offset` (which must be the next one), in the payload. Handled in
    /// the order sent; answered `done` once written.
    Chunk { upload: String, offset: u64 },
    /// Finish an upload whose chunks have all been answered: checked against `sha256` (hex),
    /// synced, renamed into place.
    Commit { upload: String, sha256: String },
    /// Give up an upload: its temporary file goes.
    Cancel { upload: String },
    /// Follow a file an editor has open: answered `watching`, then one [`Version`] per line as
    /// `data` on stream = request id, the first at once and one whenever the file changes on
    /// disk (polled), until the client detaches.
    Watch { path: String },
}

/// Answers of the file service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fs", rename_all = "snake_case")]
pub enum FsResponse {
    /// Pages of the listing of `path` (as resolved) follow on `stream`.
    Listing {
        path: String,
        stream: u32,
    },
    Entry {
        entry: Entry,
    },
    /// The file's bytes from `offset` follow on `stream`.
    Reading {
        path: String,
        size: u64,
        mtime_ms: i64,
        offset: u64,
        stream: u32,
    },
    /// The `.tar.gz` of `path`, to be saved as `name`, follows on `stream`.
    Archiving {
        path: String,
        name: String,
        stream: u32,
    },
    /// Send the upload's bytes from `offset`.
    Writing {
        path: String,
        offset: u64,
    },
    /// The upload is at `path`: `size` bytes with the digest asked for.
    Committed {
        path: String,
        size: u64,
    },
    /// Versions of `path` follow on `stream`.
    Watching {
        path: String,
        stream: u32,
    },
    /// Moved to the trash; `restore` with `trash_id` puts it back.
    Trashed {
        trash_id: String,
    },
    /// Done (mkdir, rename, copy, delete for good, restore, chmod, cancel).
    Done {
        path: String,
    },
}

impl FsRequest {
    /// Whether it is answered once and then streams (`list`, `read`).
    pub fn opens_stream(&self) -> bool {
        matches!(
            self,
            FsRequest::List { .. } | FsRequest::Read { .. } | FsRequest::Archive { .. } | FsRequest::Watch { .. }
        )
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The name as UTF-8; a name that is not valid UTF-8 is shown with U+FFFD here and its exact
    /// bytes in `raw_name`.
    pub name: String,
    /// The name's bytes (hex) when they are not valid UTF-8: shown as such, never renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_name: Option<String>,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner and group names (numbers when the name is unknown).
    pub owner: String,
    pub group: String,
    /// Milliseconds since the Unix epoch.
    pub mtime_ms: i64,
    /// Where a symlink points (as written in the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a symlink: what the target is (`None` when it is broken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<Kind>,
}

impl Entry {
    /// Whether the entry is a directory or a link to one (what a file manager opens).
    pub fn is_dir_like(&self) -> bool {
        self.kind == Kind::Dir || self.target_kind == Some(Kind::Dir)
    }
}

/// A watched file as it is on disk now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// `false`: the file is gone (deleted or moved away).
    pub exists: bool,
    pub size: u64,
    pub mtime_ms: i64,
    /// SHA-256 (hex) of its bytes; `None` when gone or too big to hash on every change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One page of a listing as it travels: a JSON array of entries and a newline.
pub fn encode_page(entries: &[Entry]) -> Vec<u8> {
    let mut line = serde_json::to_vec(entries).unwrap_or_else(|_| b"[]".to_vec());
    line.push(b'\n');
    line
}

/// Split listing bytes into pages: every complete line is taken from `buffer` and parsed; a
/// partial last line stays for the next call.
pub fn take_pages(buffer: &mut Vec<u8>) -> Result<Vec<Entry>, String> {
    let Some(end) = buffer.iter().rposition(|&b| b == b'\n') else { return Ok(Vec::new()) };
    let complete: Vec<u8> = buffer.drain(..=end).collect();
    let mut entries = Vec::new();
    for line in complete.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        let page: Vec<Entry> = serde_json::from_slice(line).map_err(|e| format!("listing page: {e}"))?;
        entries.extend(page);
    }
    Ok(entries)
}

/// `name` inside `dir`, as the file service's paths are written: one `/` between them whatever
/// `dir` ends with, `/name` in the root, `name` alone beside nothing. The one join `tether cp`
/// and the Files tab both use.
pub fn join(dir: &str, name: &str) -> String {
    match dir.trim_end_matches('/') {
        "" if dir.is_empty() => name.to_owned(),
        "" => format!("/{name}"),
        dir => format!("{dir}/{name}"),
    }
}

/// Whether `name` is what a host may call an entry: one normal path component — not empty, not
/// `.` or `..`, no `/` and no NUL. A client never takes a name from a host that fails this (a
/// hostile host would name `../../.ssh/authorized_keys`); see `check_listing` for whole listings.
pub fn check_name(name: &str) -> Result<(), String> {
    match name {
        "" => Err("an empty name".into()),
        "." | ".." => Err(format!("the name {name:?}")),
        _ if name.contains('/') => Err(format!("{name:?} is not one name (it has a /)")),
        _ if name.contains('\0') => Err(format!("{name:?} has a NUL in it")),
        _ => Ok(()),
    }
}

/// The entries of one listing a client may take: those named by `check_name`, each name once.
/// What is left out comes back apart, each with why, for the client to say.
pub fn check_listing(entries: Vec<Entry>) -> (Vec<Entry>, Vec<(String, String)>) {
    let (mut seen, mut twice) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    let (mut kept, mut refused) = (Vec::with_capacity(entries.len()), Vec::new());
    for entry in entries {
        if let Err(why) = check_name(&entry.name) {
            refused.push((entry.name, why));
        } else if !seen.insert(entry.name.clone()) {
            twice.insert(entry.name.clone());
            refused.push((entry.name, "named twice in one listing".to_owned()));
        } else {
            kept.push(entry);
        }
    }
    // A name listed twice is refused both times: which of the two is real cannot be told.
    kept.retain(|e| !twice.contains(&e.name));
    (kept, refused)
}

/// The directory `path` is in (`/` for the root and what is right under it).
pub fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_owned(),
        Some((up, _)) => up.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Entry {
        Entry {
            name: name.into(),
            raw_name: None,
            kind: Kind::File,
            size: 0,
            mode: 0o644,
            owner: String::new(),
            group: String::new(),
            mtime_ms: 0,
            target: None,
            target_kind: None,
        }
    }

    #[test]
    fn a_host_may_name_only_single_normal_components() {
        for good in ["a", ".profile", "a b", "..a", "…", "a\\b"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        for bad in ["", ".", "..", "/", "/etc/passwd", "../x", "a/b", "a/", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_listing_keeps_good_names_once_and_says_what_it_left_out() {
        let listing = ["ok", "../up", "twice", "/abs", "twice", "fine"].map(named).to_vec();
        let (kept, refused) = check_listing(listing);
        assert_eq!(kept.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["ok", "fine"]);
        let names: Vec<&str> = refused.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["../up", "/abs", "twice"]);
    }

    #[test]
    fn paths_join_with_one_slash_and_climb_to_the_root() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/x", "a"), "/x/a");
        assert_eq!(join("/x/", "a"), "/x/a");
        assert_eq!(join("x//", "a"), "x/a");
        assert_eq!(parent("/x/y"), "/x");
        assert_eq!(parent("/x/"), "/");
        assert_eq!(parent("/"), "/");
    }

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            raw_name: None,
            kind: Kind::File,
            size: 3,
            mode: 0o644,
            owner: "me".into(),
            group: "me".into(),
            mtime_ms: 1,
            target: None,
            target_kind: None,
        }
    }

    #[test]
    fn pages_split_anywhere_come_back_whole() {
        let mut wire = encode_page(&[entry("a"), entry("b")]);
        wire.extend(encode_page(&[entry("c")]));
        for cut in 0..wire.len() {
            let mut buffer = wire[..cut].to_vec();
            let mut got = take_pages(&mut buffer).expect("first part");
            buffer.extend_from_slice(&wire[cut..]);
            got.extend(take_pages(&mut buffer).expect("rest"));
            let names: Vec<_> = got.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ["a", "b", "c"], "cut at {cut}");
            assert!(buffer.is_empty());
        }
    }

    #[test]
    fn requests_read_as_documented() {
        let request: FsRequest = serde_json::from_str(r#"{"fs":"mkdir","path":"a/b","parents":true}"#).expect("mkdir");
        assert_eq!(request, FsRequest::Mkdir { path: "a/b".into(), parents: true });
        let request: FsRequest = serde_json::from_str(r#"{"fs":"read","path":"x"}"#).expect("read");
        assert_eq!(request, FsRequest::Read { path: "x".into(), offset: 0 });
    }
}
