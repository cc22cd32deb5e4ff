//! A directory held open, and everything in it reached relative to that handle (`openat`,
//! `mkdirat`, `renameat2`, `unlinkat`, `symlinkat`, `readlinkat`, `fchmodat`) — never by a path
//! that the kernel would walk again, so that what was checked is what is used.
//!
//! `tether cp` writes a download through it (names a host sends cannot lead outside the
//! directory the user named), and the host's file service reaches every file through it (a
//! client swapping a directory for a symlink between a check and its use cannot lead the
//! service outside its files root).
//!
//! Invariants:
//! - A name passed to a `Dir` method is one component: no `/`, no NUL, not empty, not `..`
//!   (`.`, the directory itself, only where a method says so).
//! - Nothing named is followed: directories are entered with `O_NOFOLLOW | O_DIRECTORY`, files
//!   opened `O_NOFOLLOW`, stat, chmod and removal act on a link itself. Whoever wants a link
//!   followed reads it (`read_link`) and decides where it leads (`host::files::paths`).
//! - A `Dir` is an `O_PATH` handle: a directory that may be passed through but not listed
//!   (mode `--x`) is reachable, as it is by path; listing it opens it for reading then.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Symlinks followed in one path before giving up, as the kernel's own limit.
pub const MAX_LINKS: u32 = 40;

#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

fn c_name(name: &OsStr, dot: bool) -> io::Result<CString> {
    let bytes = name.as_bytes();
    let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {name:?}")));
    if bytes.is_empty() || bytes == b".." || bytes.contains(&b'/') || (bytes == b"." && !dot) {
        return invalid("not a name in a directory");
    }
    CString::new(bytes).or_else(|_| invalid("a name with NUL"))
}

/// A raw result as `io::Result`, `errno` read at once.
fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    match result {
        0.. => Ok(result),
        _ => Err(io::Error::last_os_error()),
    }
}

/// An fd just returned by the kernel, owned from here on.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `fd` was just opened (checked ≥ 0) and nothing else owns it.
    check(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

const PATH_FLAGS: libc::c_int = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl Dir {
    /// The directory at `path`, following links on the way (as any command given a path does).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with NUL"))?;
        // SAFETY: a valid C string.
        let fd = owned(unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        Ok(Dir { fd })
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()? })
    }

    fn open_at(&self, name: &OsStr, dot: bool, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
        let c = c_name(name, dot)?;
        // SAFETY: a valid directory fd and C string.
        owned(unsafe {
            libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode)
        })
    }

    /// The directory `name` in this one (`.`: this one again) — never through a symlink.
    pub fn dir(&self, name: &OsStr) -> io::Result<Dir> {
        Ok(Dir { fd: self.open_at(name, true, libc::O_PATH | libc::O_DIRECTORY, 0)? })
    }

    /// `name` itself, whatever it is (a symlink is not followed); `.`: this directory.
    pub fn symlink_metadata(&self, name: &OsStr) -> io::Result<Metadata> {
        let fd = self.open_at(name, true, PATH_FLAGS, 0)?;
        File::from(fd).metadata()
    }

    /// `name` itself (a symlink is not followed), opened once: what it is, and, when it is a
    /// directory, that directory — so a walk checks and enters the same object in one step.
    pub fn lookup(&self, name: &OsStr) -> io::Result<(Metadata, Option<Dir>)> {
        let fd = self.open_at(name, true, PATH_FLAGS, 0)?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        // An `O_PATH` handle on a directory serves as one for the `*at` calls.
        let dir = meta.is_dir().then(|| Dir { fd: OwnedFd::from(file) });
        Ok((meta, dir))
    }

    /// What a symlink `name` holds (`EINVAL` when it is none).
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let c = c_name(name, false)?;
        let mut buffer = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: a valid directory fd and C string; the buffer's length is passed.
        let n = unsafe { libc::readlinkat(self.fd.as_raw_fd(), c.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        buffer.truncate(n);
        Ok(PathBuf::from(OsString::from_vec(buffer)))
    }

    /// Open `name` with `flags` (`O_RDONLY`, `O_WRONLY | O_CREAT | O_EXCL`, …; `mode` for a new
    /// file), never through a symlink (`ELOOP` if it is one).
    pub fn open_file(&self, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<File> {
        Ok(File::from(self.open_at(name, false, flags, mode as libc::c_uint)?))
    }

    /// The directory itself, opened for reading (to list it or sync it).
    fn readable(&self) -> io::Result<OwnedFd> {
        self.open_at(OsStr::new("."), true, libc::O_RDONLY | libc::O_DIRECTORY, 0)
    }

    /// The names in it (without `.` and `..`), in the order the file system gives them.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = self.readable()?;
        // SAFETY: `fd` is an open directory; `fdopendir` takes it over (closed by `closedir`).
        let stream = unsafe { libc::fdopendir(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
        if stream.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut names = Vec::new();
        loop {
            // SAFETY: `stream` is open until `closedir` below; errno is cleared first so that the
            // end (NULL, errno 0) and a failure (NULL, errno set) can be told apart.
            let entry = unsafe {
                *libc::__errno_location() = 0;
                libc::readdir(stream)
            };
            if entry.is_null() {
                let error = io::Error::last_os_error();
                // SAFETY: `stream` came from `fdopendir` and is closed once.
                unsafe { libc::closedir(stream) };
                return match error.raw_os_error() {
                    Some(0) | None => Ok(names),
                    _ => Err(error),
                };
            }
            // SAFETY: `d_name` is a NUL-terminated name inside the entry `readdir` returned,
            // valid until the next `readdir`; it is copied out at once.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
    }

    /// Make directory `name` with `mode` (less the umask).
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = c_name(name, false)?;
        // SAFETY: a valid directory fd and C string.
        check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// A symlink `name` → `target` (the target is text, kept as it is).
    pub fn symlink(&self, target: &Path, name: &OsStr) -> io::Result<()> {
        let c = c_name(name, false)?;
        let target = CString::new(target.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a target with NUL"))?;
        // SAFETY: a valid directory fd and C strings.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.fd.as_raw_fd(), c.as_ptr()) }).map(drop)
    }

    /// Move `from` here to `to` in `into`. `replace`: what is at `to` goes (a file, or an empty
    /// directory when `from` is one); else `to` must be free, checked in the same step
    /// (`RENAME_NOREPLACE`).
    pub fn rename(&self, from: &OsStr, into: &Dir, to: &OsStr, replace: bool) -> io::Result<()> {
        let (c_from, c_to) = (c_name(from, false)?, c_name(to, false)?);
        let (a, b) = (self.fd.as_raw_fd(), into.fd.as_raw_fd());
        let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
        // SAFETY: valid directory fds and C strings.
        match check(unsafe { libc::renameat2(a, c_from.as_ptr(), b, c_to.as_ptr(), flags) }) {
            // A file system without RENAME_NOREPLACE: look, then rename (the best it allows).
            Err(e) if !replace && e.raw_os_error() == Some(libc::EINVAL) => match into.symlink_metadata(to) {
                Ok(_) => Err(io::Error::from_raw_os_error(libc::EEXIST)),
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                // SAFETY: as above.
                Err(_) => check(unsafe { libc::renameat(a, c_from.as_ptr(), b, c_to.as_ptr()) }).map(drop),
            },
            other => other.map(drop),
        }
    }

    /// Remove `name`: a file or link, or an empty directory when `dir`.
    fn unlink(&self, name: &OsStr, dir: bool) -> io::Result<()> {
        let c = c_name(name, false)?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: a valid directory fd and C string.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
    }

    /// Remove file or link `name` (not a directory).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        self.unlink(name, false)
    }

    /// Remove `name` and, for a directory, everything in it — never following a link.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        if !self.symlink_metadata(name)?.is_dir() {
            return self.unlink(name, false);
        }
        let dir = self.dir(name)?;
        for child in dir.names()? {
            match dir.remove_tree(&child) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // gone meanwhile
                other => other?,
            }
        }
        self.unlink(name, true)
    }

    /// Set `name`'s permission bits; a symlink is refused, never followed.
    pub fn chmod(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c = c_name(name, true)?;
        // SAFETY: a valid directory fd and C string.
        let changed = check(unsafe {
            libc::fchmodat(self.fd.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, libc::AT_SYMLINK_NOFOLLOW)
        });
        match changed {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                Err(io::Error::other("a symlink has no permissions of its own; not changed"))
            }
            other => other.map(drop),
        }
    }

    /// Flush the directory's entries to disk (after a rename into it).
    pub fn sync(&self) -> io::Result<()> {
        File::from(self.readable()?).sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components_and_links_are_never_followed() {
        let scratch = std::env::temp_dir().join(format!("tether-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(scratch.join("inside/sub")).expect("dirs");
        std::fs::create_dir_all(scratch.join("outside")).expect("dirs");
        std::fs::write(scratch.join("outside/secret"), "s").expect("file");
        std::os::unix::fs::symlink(scratch.join("outside"), scratch.join("inside/link")).expect("link");
        let dir = Dir::open(&scratch.join("inside")).expect("open");
        for bad in ["", "..", "a/b", "../outside"] {
            assert_eq!(dir.dir(OsStr::new(bad)).err().map(|e| e.kind()), Some(io::ErrorKind::InvalidInput), "{bad}");
        }
        assert_eq!(dir.dir(OsStr::new("link")).err().and_then(|e| e.raw_os_error()), Some(libc::ENOTDIR));
        assert!(dir.symlink_metadata(OsStr::new("link")).expect("the link").file_type().is_symlink());
        assert_eq!(dir.read_link(OsStr::new("link")).expect("target"), scratch.join("outside"));
        assert_eq!(
            dir.open_file(OsStr::new("link"), libc::O_RDONLY, 0).err().and_then(|e| e.raw_os_error()),
            Some(libc::ELOOP)
        );
        assert!(dir.chmod(OsStr::new("link"), 0o777).is_err());
        let mut names = dir.names().expect("names");
        names.sort();
        assert_eq!(names, [OsString::from("link"), OsString::from("sub")]);
        // A rename that must not replace refuses an existing name; a tree goes without its
        // links' targets.
        std::fs::write(scratch.join("inside/sub/file"), "f").expect("file");
        let refused = dir.rename(OsStr::new("sub"), &dir, OsStr::new("link"), false);
        assert_eq!(refused.err().map(|e| e.kind()), Some(io::ErrorKind::AlreadyExists));
        std::os::unix::fs::symlink(scratch.join("outside"), scratch.join("inside/sub/out")).expect("link");
        dir.remove_tree(OsStr::new("sub")).expect("remove");
        assert!(scratch.join("outside/secret").exists());
        assert!(!scratch.join("inside/sub").exists());
        std::fs::remove_dir_all(&scratch).expect("clean up");
    }
}
