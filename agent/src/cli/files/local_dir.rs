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

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tether_protocol::fs::check_name;

/// A directory opened for writing into.
pub struct LocalDir {
    fd: OwnedFd,
    /// Its path, for messages only (never used to reach it again).
    shown: String,
}

fn c_name(name: &str) -> io::Result<CString> {
    check_name(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with NUL"))
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result >= 0 {
        return Ok(result);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // What O_NOFOLLOW says when the name is a link.
        Some(libc::ELOOP) => Err(io::Error::other("a symlink is in the way; cp never follows one it did not make")),
        _ => Err(error),
    }
}

impl LocalDir {
    /// The directory the user named (following links in the path, as any command does).
    pub fn open(path: &Path) -> io::Result<LocalDir> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with NUL"))?;
        // SAFETY: a valid C string; the fd returned is owned below.
        let fd = check(unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: `fd` was just opened and is not owned elsewhere.
        Ok(LocalDir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, shown: path.display().to_string() })
    }

    /// What to call `name` inside it, in messages.
    pub fn shown(&self, name: &str) -> String {
        Path::new(&self.shown).join(name).display().to_string()
    }

    /// The directory `name` inside this one: made, or the one already there — never a symlink.
    pub fn subdir(&self, name: &str) -> io::Result<LocalDir> {
        let c = c_name(name)?;
        // SAFETY: a valid directory fd and C string.
        match check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o777) }) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: `fd` was just opened and is not owned elsewhere.
        Ok(LocalDir { fd: unsafe { OwnedFd::from_raw_fd(fd) }, shown: self.shown(name) })
    }

    /// `name` opened for appending (made if missing), never through a symlink; and its length.
    pub fn append(&self, name: &str) -> io::Result<(File, u64)> {
        let c = c_name(name)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a valid directory fd and C string.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, 0o600 as libc::c_uint) })?;
        // SAFETY: `fd` was just opened and is not owned elsewhere.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok((file, meta.len()))
    }

    /// Rename `from` to `to`, both in this directory (what is at `to` is replaced).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid directory fds and C strings.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) }).map(drop)
    }

    /// Remove file `name` (not a directory).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: a valid directory fd and C string.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// A symlink `name` → `target` (the target is the host's text, kept as it is: a link is only
    /// followed by whoever later opens it, never by `cp`).
    pub fn symlink(&self, target: &str, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        let target =
            CString::new(target).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a target with NUL"))?;
        // SAFETY: a valid directory fd and C strings.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.fd.as_raw_fd(), c.as_ptr()) }).map(drop)
    }
}
