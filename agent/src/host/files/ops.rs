//! The file service's one-shot operations: mkdir, rename, copy, delete (to the trash), restore,
//! chmod. Each runs on a blocking thread; paths come resolved and checked (`paths::Roots`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tether_protocol::api::ErrorCode;

use super::failure::{io_failure, Failure};

pub fn mkdir(dirs: &[PathBuf], parents: bool, asked: &str) -> Result<(), Failure> {
    if dirs.is_empty() {
        return match parents {
            true => Ok(()), // `mkdir -p` of what is there
            false => Err(Failure::new(ErrorCode::Exists, format!("{asked}: already exists"))),
        };
    }
    if !parents && dirs.len() > 1 {
        return Err(Failure::new(ErrorCode::NotFound, format!("{asked}: the directory above it does not exist")));
    }
    for dir in dirs {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if parents && e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(io_failure(asked, &e)),
        }
    }
    Ok(())
}

/// Refuse to replace `to` unless asked to; with `overwrite`, what is there goes first.
fn make_room(to: &Path, overwrite: bool, asked: &str) -> Result<(), Failure> {
    let Ok(meta) = std::fs::symlink_metadata(to) else { return Ok(()) };
    if !overwrite {
        return Err(Failure::new(ErrorCode::Exists, format!("{asked}: already exists")));
    }
    let removed = if meta.is_dir() { std::fs::remove_dir_all(to) } else { std::fs::remove_file(to) };
    removed.map_err(|e| io_failure(asked, &e))
}

pub fn rename(from: &Path, to: &Path, overwrite: bool, asked: (&str, &str)) -> Result<(), Failure> {
    std::fs::symlink_metadata(from).map_err(|e| io_failure(asked.0, &e))?;
    if to.starts_with(from) && to != from {
        return Err(Failure::new(ErrorCode::BadRequest, format!("{}: cannot move a directory into itself", asked.0)));
    }
    make_room(to, overwrite, asked.1)?;
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Another file system: copy, then remove the original.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_tree(from, to).map_err(|e| io_failure(asked.1, &e))?;
            remove_tree(from).map_err(|e| io_failure(asked.0, &e))
        }
        Err(e) => Err(io_failure(asked.1, &e)),
    }
}

pub fn copy(from: &Path, to: &Path, overwrite: bool, asked: (&str, &str)) -> Result<(), Failure> {
    std::fs::symlink_metadata(from).map_err(|e| io_failure(asked.0, &e))?;
    if to.starts_with(from) {
        return Err(Failure::new(ErrorCode::BadRequest, format!("{}: cannot copy a directory into itself", asked.0)));
    }
    make_room(to, overwrite, asked.1)?;
    copy_tree(from, to).map_err(|e| io_failure(asked.1, &e))
}

/// Copy a file, a symlink (as a symlink) or a directory tree, keeping permission bits.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        return std::os::unix::fs::symlink(std::fs::read_link(from)?, to);
    }
    if !meta.is_dir() {
        return copy_file(from, to, &meta);
    }
    std::fs::create_dir(to)?;
    for item in std::fs::read_dir(from)? {
        let item = item?;
        copy_tree(&item.path(), &to.join(item.file_name()))?;
    }
    std::fs::set_permissions(to, meta.permissions())
}

/// One regular file's bytes and permission bits; anything else (a FIFO, a device) is refused
/// before it is opened for reading, and opened so it could never block.
fn copy_file(from: &Path, to: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let refused = || std::io::Error::other("not a regular file (a FIFO, socket or device); not copied");
    if !meta.is_file() {
        return Err(refused());
    }
    let mut source =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(from)?;
    if !source.metadata()?.is_file() {
        return Err(refused()); // swapped since it was looked at
    }
    let mut target = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
    std::io::copy(&mut source, &mut target)?;
    target.set_permissions(meta.permissions())
}

fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path)?.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    }
}

pub fn symlink(path: &Path, target: &str, asked: &str) -> Result<(), Failure> {
    std::os::unix::fs::symlink(target, path).map_err(|e| io_failure(asked, &e))
}

pub fn chmod(path: &Path, mode: u32, asked: &str) -> Result<(), Failure> {
    if mode > 0o7777 {
        return Err(Failure::new(ErrorCode::BadRequest, format!("mode {mode:o} is not a permission mode")));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io_failure(asked, &e))
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

pub fn delete(path: &Path, permanent: bool, trash: &Path, asked: &str) -> Result<Option<String>, Failure> {
    std::fs::symlink_metadata(path).map_err(|e| io_failure(asked, &e))?;
    if permanent {
        return remove_tree(path).map(|()| None).map_err(|e| io_failure(asked, &e));
    }
    let mut nonce = [0u8; 6];
    crate::random::random_bytes(&mut nonce).map_err(|e| Failure::new(ErrorCode::Internal, e))?;
    let id = format!("{:x}-{}", crate::time::now_ms(), tether_protocol::hex::encode(&nonce));
    let slot = trash.join(&id);
    std::fs::create_dir_all(&slot).map_err(|e| io_failure("the trash", &e))?;
    let record = Trashed { path: path.to_path_buf(), deleted_at: crate::time::now_ms() };
    let record = serde_json::to_vec(&record).unwrap_or_default();
    std::fs::write(slot.join(TRASH_RECORD), record).map_err(|e| io_failure("the trash", &e))?;
    let name = path.file_name().unwrap_or(path.as_os_str());
    if let Err(failure) = rename(path, &slot.join(name), false, (asked, "the trash")) {
        let _ = std::fs::remove_dir_all(&slot);
        return Err(failure);
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
pub fn trashed_from(trash: &Path, id: &str) -> Result<PathBuf, Failure> {
    let unknown = || Failure::new(ErrorCode::NotFound, format!("nothing in the trash is called {id}"));
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(unknown());
    }
    let record = std::fs::read(trash.join(id).join(TRASH_RECORD)).map_err(|_| unknown())?;
    let record: Trashed = serde_json::from_slice(&record).map_err(|_| unknown())?;
    Ok(record.path)
}

/// Put a trashed entry back; returns where it went. The place must be free.
pub fn restore(trash: &Path, id: &str) -> Result<PathBuf, Failure> {
    let unknown = || Failure::new(ErrorCode::NotFound, format!("nothing in the trash is called {id}"));
    let record = Trashed { path: trashed_from(trash, id)?, deleted_at: 0 };
    let slot = trash.join(id);
    let name = record.path.file_name().ok_or_else(unknown)?;
    let shown = record.path.display().to_string();
    rename(&slot.join(name), &record.path, false, ("the trash", &shown))?;
    let _ = std::fs::remove_dir_all(&slot);
    Ok(record.path)
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
        for name in ["old", "new"] {
            std::fs::write(dir.join(name), name).expect("file");
            delete(&dir.join(name), false, &trash, name).expect("to the trash");
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
        assert_eq!(restore(&trash, &id).expect("restore"), dir.join("new"));
        assert_eq!(std::fs::read_to_string(dir.join("new")).expect("back"), "new");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
