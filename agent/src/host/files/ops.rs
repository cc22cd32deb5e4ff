//! The file service's one-shot operations: mkdir, rename, copy, delete (to the trash), restore,
//! chmod, symlink. Each runs on a blocking thread on entries a walk reached (`paths::Located`:
//! an open directory and a name), through `*at` calls that follow no link: what was checked is
//! what is changed.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tether_protocol::api::ErrorCode;

use super::failure::{io_failure, Failure};
use super::paths::{Located, Roots};
use crate::dir::Dir;

/// `mkdir` (`parents`: `-p`, and what is there already is fine when it is a directory).
pub fn mkdir(at: &Located, parents: bool, asked: &str) -> Result<(), Failure> {
    match at.dir.create_dir(&at.name, 0o777) {
        Ok(()) => Ok(()),
        Err(e)
            if parents && e.kind() == std::io::ErrorKind::AlreadyExists && at.metadata().is_ok_and(|m| m.is_dir()) =>
        {
            Ok(())
        }
        Err(e) => Err(io_failure(asked, &e)),
    }
}

/// Refuse to replace `to` unless asked to; with `overwrite`, what is there goes first.
fn make_room(to: &Located, overwrite: bool, asked: &str) -> Result<(), Failure> {
    if to.metadata().is_err() {
        return Ok(());
    }
    if !overwrite {
        return Err(Failure::new(ErrorCode::Exists, format!("{asked}: already exists")));
    }
    to.dir.remove_tree(&to.name).map_err(|e| io_failure(asked, &e))
}

/// Whether `to` lies in `from` (a directory cannot go into itself).
fn into_itself(from: &Located, to: &Located) -> bool {
    to.path.starts_with(&from.path)
}

pub fn rename(from: &Located, to: &Located, overwrite: bool, asked: (&str, &str)) -> Result<(), Failure> {
    from.metadata().map_err(|e| io_failure(asked.0, &e))?;
    if to.path == from.path {
        return Ok(());
    }
    let itself = || Failure::new(ErrorCode::BadRequest, format!("{}: cannot move a directory into itself", asked.0));
    if into_itself(from, to) {
        return Err(itself());
    }
    make_room(to, overwrite, asked.1)?;
    move_entry(&from.dir, &from.name, &to.dir, &to.name).map_err(|e| match e.raw_os_error() {
        // What the kernel says of a move into itself that the paths did not show (a link).
        Some(libc::EINVAL) => itself(),
        Some(libc::EEXIST) => Failure::new(ErrorCode::Exists, format!("{}: appeared meanwhile", asked.1)),
        _ => io_failure(asked.1, &e),
    })
}

/// Move an entry (never replacing one); to another file system, by copy then removal.
fn move_entry(from: &Dir, name: &OsStr, into: &Dir, to: &OsStr) -> std::io::Result<()> {
    match from.rename(name, into, to, false) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_tree(from, name, into, to, None)?;
            from.remove_tree(name)
        }
        other => other,
    }
}

pub fn copy(from: &Located, to: &Located, overwrite: bool, asked: (&str, &str)) -> Result<(), Failure> {
    from.metadata().map_err(|e| io_failure(asked.0, &e))?;
    if into_itself(from, to) {
        return Err(Failure::new(ErrorCode::BadRequest, format!("{}: cannot copy a directory into itself", asked.0)));
    }
    make_room(to, overwrite, asked.1)?;
    copy_tree(&from.dir, &from.name, &to.dir, &to.name, None).map_err(|e| io_failure(asked.1, &e))
}

/// Copy a file, a symlink (as a symlink) or a directory tree, keeping permission bits; nothing
/// is followed. `made`: the (device, inode) of the copy's top directory, never copied into
/// itself should it turn up inside what is copied.
fn copy_tree(from: &Dir, name: &OsStr, into: &Dir, to: &OsStr, made: Option<(u64, u64)>) -> std::io::Result<()> {
    let meta = from.symlink_metadata(name)?;
    if made == Some((meta.dev(), meta.ino())) {
        return Ok(());
    }
    if meta.file_type().is_symlink() {
        return into.symlink(&from.read_link(name)?, to);
    }
    if !meta.is_dir() {
        return copy_file(from, name, into, to, &meta);
    }
    into.create_dir(to, 0o700)?;
    let (source, target) = (from.dir(name)?, into.dir(to)?);
    let made = match made {
        Some(made) => made,
        None => target.symlink_metadata(OsStr::new(".")).map(|m| (m.dev(), m.ino()))?,
    };
    for child in source.names()? {
        copy_tree(&source, &child, &target, &child, Some(made))?;
    }
    into.chmod(to, meta.mode() & 0o7777)
}

/// One regular file's bytes and permission bits; anything else (a FIFO, a device) is refused
/// before it is opened for reading, and opened so it could never block.
fn copy_file(from: &Dir, name: &OsStr, into: &Dir, to: &OsStr, meta: &std::fs::Metadata) -> std::io::Result<()> {
    let refused = || std::io::Error::other("not a regular file (a FIFO, socket or device); not copied");
    if !meta.is_file() {
        return Err(refused());
    }
    let mut source = from.open_file(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    if !source.metadata()?.is_file() {
        return Err(refused()); // swapped since it was looked at
    }
    let mut target = into.open_file(to, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
    std::io::copy(&mut source, &mut target)?;
    into.chmod(to, meta.mode() & 0o7777)
}

/// A symlink at `at` → `target`; under a files root, only to somewhere inside it.
pub fn symlink(roots: &Roots, at: &Located, target: &str, asked: &str) -> Result<(), Failure> {
    roots.check_link_target(at, target)?;
    at.dir.symlink(Path::new(target), &at.name).map_err(|e| io_failure(asked, &e))
}

pub fn chmod(at: &Located, mode: u32, asked: &str) -> Result<(), Failure> {
    if mode > 0o7777 {
        return Err(Failure::new(ErrorCode::BadRequest, format!("mode {mode:o} is not a permission mode")));
    }
    at.dir.chmod(&at.name, mode).map_err(|e| io_failure(asked, &e))
}

/// What the trash remembers of a deleted entry.
#[derive(Serialize, Deserialize)]
struct Trashed {
    /// Where it was.
    path: PathBuf,
    /// ms since the Unix epoch.
    deleted_at: u64,
}

/// Each deleted entry gets `trash/ID/` with the entry inside (under its own name) and
/// `trashed.json` saying where it came from.
const TRASH_RECORD: &str = "trashed.json";

pub fn delete(at: &Located, permanent: bool, trash: &Path, asked: &str) -> Result<Option<String>, Failure> {
    at.metadata().map_err(|e| io_failure(asked, &e))?;
    if permanent {
        return at.dir.remove_tree(&at.name).map(|()| None).map_err(|e| io_failure(asked, &e));
    }
    let mut nonce = [0u8; 6];
    crate::random::random_bytes(&mut nonce).map_err(|e| Failure::new(ErrorCode::Internal, e))?;
    let id = format!("{:x}-{}", crate::time::now_ms(), tether_protocol::hex::encode(&nonce));
    let slot = trash.join(&id);
    let in_trash = |e: std::io::Error| io_failure("the trash", &e);
    std::fs::create_dir_all(&slot).map_err(in_trash)?;
    let record = Trashed { path: at.path.clone(), deleted_at: crate::time::now_ms() };
    let record = serde_json::to_vec(&record).unwrap_or_default();
    std::fs::write(slot.join(TRASH_RECORD), record).map_err(in_trash)?;
    let moved = Dir::open(&slot).and_then(|into| move_entry(&at.dir, &at.name, &into, &at.name));
    if let Err(e) = moved {
        let _ = std::fs::remove_dir_all(&slot);
        return Err(io_failure(asked, &e));
    }
    Ok(Some(id))
}

/// How long a deleted entry can be restored before the trash lets it go.
pub const TRASH_KEEP: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 60 * 60); // 30 days

/// Remove trash entries deleted more than `TRASH_KEEP` before `now_ms` (and slots without a
/// readable record: nothing could restore them).
pub fn empty_old_trash(trash: &Path, now_ms: u64) {
    let Ok(slots) = std::fs::read_dir(trash) else { return };
    let keep_ms = TRASH_KEEP.as_millis() as u64;
    for slot in slots.flatten() {
        let record = std::fs::read(slot.path().join(TRASH_RECORD)).ok();
        let record = record.and_then(|bytes| serde_json::from_slice::<Trashed>(&bytes).ok());
        if record.is_none_or(|r| now_ms.saturating_sub(r.deleted_at) > keep_ms) {
            let _ = std::fs::remove_dir_all(slot.path());
        }
    }
}

/// Where a trashed entry came from (and so goes back to).
fn trashed_from(trash: &Path, id: &str) -> Result<PathBuf, Failure> {
    let unknown = || Failure::new(ErrorCode::NotFound, format!("nothing in the trash is called {id}"));
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(unknown());
    }
    let record = std::fs::read(trash.join(id).join(TRASH_RECORD)).map_err(|_| unknown())?;
    let record: Trashed = serde_json::from_slice(&record).map_err(|_| unknown())?;
    Ok(record.path)
}

/// Put a trashed entry back where it was — which must still be reachable under the rules now
/// (`roots`) and free; returns where it went.
pub fn restore(roots: &Roots, trash: &Path, id: &str) -> Result<PathBuf, Failure> {
    let was = trashed_from(trash, id)?;
    let shown = was.display().to_string();
    let back = roots.entry_path(&was, &shown)?;
    let slot = trash.join(id);
    let from = Dir::open(&slot).map_err(|e| io_failure("the trash", &e))?;
    match move_entry(&from, &back.name, &back.dir, &back.name) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::new(ErrorCode::Exists, format!("{shown}: already exists")))
        }
        Err(e) => return Err(io_failure(&shown, &e)),
    }
    let _ = std::fs::remove_dir_all(&slot);
    Ok(back.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trash_keeps_what_was_deleted_for_thirty_days_then_lets_it_go() {
        let dir = std::env::temp_dir().join(format!("tether-trash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let trash = dir.join("trash");
        std::fs::create_dir_all(&dir).expect("dir");
        let roots = Roots::new(dir.clone(), None).expect("roots");
        for name in ["old", "new"] {
            std::fs::write(dir.join(name), name).expect("file");
            delete(&roots.entry(name).expect("entry"), false, &trash, name).expect("to the trash");
        }
        // Make "old" look 31 days old.
        let day_ms = 24 * 60 * 60 * 1000;
        let now = crate::time::now_ms();
        for slot in std::fs::read_dir(&trash).expect("trash").flatten() {
            let path = slot.path().join(TRASH_RECORD);
            let record: Trashed = serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("json");
            if record.path.ends_with("old") {
                let aged = Trashed { deleted_at: now - 31 * day_ms, ..record };
                std::fs::write(&path, serde_json::to_vec(&aged).expect("json")).expect("write");
            }
        }
        empty_old_trash(&trash, now);
        let left: Vec<_> = std::fs::read_dir(&trash).expect("trash").flatten().collect();
        assert_eq!(left.len(), 1, "only the new one stays");
        let id = left[0].file_name().to_string_lossy().into_owned();
        assert_eq!(restore(&roots, &trash, &id).expect("restore"), dir.join("new"));
        assert_eq!(std::fs::read_to_string(dir.join("new")).expect("back"), "new");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
