//! Where `tether cp` writes what it downloads: a directory on this machine, opened once, and
//! everything under it made relative to that handle (`openat`, `mkdirat`, `renameat`,
//! `symlinkat`), so that names a host sends can never lead outside it.
//!
//! Invariants:
//! - Every name passed in is one checked path component (`fs::check_name`): no `/`, no NUL,
//!   not empty, `.` or `..`.
//! - Nothing is followed below the directory the user named: a child directory is entered with
//!   `O_NOFOLLOW | O_DIRECTORY` (a symlink in its place is an error, never descended), files are
//!   opened `O_NOFOLLOW`, and a rename replaces whatever is at the name (a link itself, never
//!   its target).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::path::Path;

use tether_protocol::fs::check_name;

use crate::dir::Dir;

/// A directory opened for writing into.
pub struct LocalDir {
    dir: Dir,
    /// Its path, for messages only (never used to reach it again).
    shown: String,
}

/// A host's name, checked as one component.
fn name_of(name: &str) -> io::Result<&OsStr> {
    check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(OsStr::new(name))
}

/// What O_NOFOLLOW says when the name is a link, said plainly.
fn said(error: io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(libc::ELOOP) => io::Error::other("a symlink is in the way; cp never follows one it did not make"),
        _ => error,
    }
}

impl LocalDir {
    /// The directory the user named (following links in the path, as any command does).
    pub fn open(path: &Path) -> io::Result<LocalDir> {
        Ok(LocalDir { dir: Dir::open(path)?, shown: path.display().to_string() })
    }

    /// What to call `name` inside it, in messages.
    pub fn shown(&self, name: &str) -> String {
        Path::new(&self.shown).join(name).display().to_string()
    }

    /// The directory `name` inside this one: made, or the one already there — never a symlink.
    pub fn subdir(&self, name: &str) -> io::Result<LocalDir> {
        let c = name_of(name)?;
        match self.dir.create_dir(c, 0o777) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let dir = self.dir.dir(c).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) if self.dir.symlink_metadata(c).is_ok_and(|m| m.file_type().is_symlink()) => {
                said(io::Error::from_raw_os_error(libc::ELOOP))
            }
            _ => e,
        })?;
        Ok(LocalDir { dir, shown: self.shown(name) })
    }

    /// `name` opened for appending (made if missing), never through a symlink; and its length.
    pub fn append(&self, name: &str) -> io::Result<(File, u64)> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND;
        let file = self.dir.open_file(name_of(name)?, flags, 0o600).map_err(said)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok((file, meta.len()))
    }

    /// Rename `from` to `to`, both in this directory (what is at `to` is replaced).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.dir.rename(name_of(from)?, &self.dir, name_of(to)?, true)
    }

    /// Remove file `name` (not a directory).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.dir.remove_file(name_of(name)?)
    }

    /// A symlink `name` → `target` (the target is the host's text, kept as it is: a link is only
    /// followed by whoever later opens it, never by `cp`).
    pub fn symlink(&self, target: &str, name: &str) -> io::Result<()> {
        self.dir.symlink(Path::new(target), name_of(name)?)
    }
}
