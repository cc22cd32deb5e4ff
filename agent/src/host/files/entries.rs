//! Directory entries as the file manager shows them: kind, size, mode, owner, mtime, link target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::dir::Dir;

use tether_protocol::fs::{Entry, Kind, LIST_PAGE_ENTRIES};
use tether_protocol::hex;

use super::failure::{io_failure, Failure};
use super::paths::{Located, Roots};
use tether_protocol::api::ErrorCode;

fn kind_of(file_type: std::fs::FileType) -> Kind {
    if file_type.is_symlink() {
        Kind::Symlink
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// Owner and group names by number, looked up once each.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn user(&mut self, uid: u32) -> String {
        self.users.entry(uid).or_insert_with(|| user_name(uid).unwrap_or_else(|| uid.to_string())).clone()
    }

    fn group(&mut self, gid: u32) -> String {
        self.groups.entry(gid).or_insert_with(|| group_name(gid).unwrap_or_else(|| gid.to_string())).clone()
    }
}

/// Bytes for the passwd/group lookups' strings.
const LOOKUP_BUFFER_BYTES: usize = 16 * 1024; // 16 KiB

fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER_BYTES];
    // SAFETY: an all-zero passwd is a valid out-parameter; the buffer outlives the call and its
    // length is passed; the name is copied out before the buffer goes.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut found = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found);
        (rc == 0 && !found.is_null()).then(|| std::ffi::CStr::from_ptr(entry.pw_name).to_string_lossy().into_owned())
    }
}

fn group_name(gid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER_BYTES];
    // SAFETY: as in `user_name`.
    unsafe {
        let mut entry: libc::group = std::mem::zeroed();
        let mut found = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found);
        (rc == 0 && !found.is_null()).then(|| std::ffi::CStr::from_ptr(entry.gr_name).to_string_lossy().into_owned())
    }
}

/// A regular file opened for reading, never through a symlink and never blocking: a FIFO,
/// socket or device (`/dev/zero`) is refused before a byte is read, so no read, copy or hash can
/// hold a thread for ever.
pub fn open_regular(dir: &Dir, name: &OsStr, shown: &str) -> Result<(std::fs::File, std::fs::Metadata), Failure> {
    let file = dir.open_file(name, libc::O_RDONLY | libc::O_NONBLOCK, 0).map_err(|e| io_failure(shown, &e))?;
    let meta = file.metadata().map_err(|e| io_failure(shown, &e))?;
    if meta.is_dir() {
        return Err(Failure::new(ErrorCode::IsADirectory, format!("{shown}: is a directory")));
    }
    if !meta.is_file() {
        let message = format!("{shown}: not a regular file (a FIFO, socket or device); not read");
        return Err(Failure::new(ErrorCode::BadRequest, message));
    }
    Ok((file, meta))
}

/// When it was last modified, in ms since the Unix epoch.
pub fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.mtime().saturating_mul(1000).saturating_add(meta.mtime_nsec() / 1_000_000)
}

/// The entry `name` in `dir`, which is at `path` (a symlink itself, with where it points and
/// what that is — when the way there stays inside the files root).
pub fn entry_at(dir: &Dir, name: &OsStr, path: &Path, roots: &Roots, names: &mut Names) -> std::io::Result<Entry> {
    let meta = dir.symlink_metadata(name)?;
    let kind = kind_of(meta.file_type());
    let (target, target_kind) = match kind {
        Kind::Symlink => {
            let target = dir.read_link(name).ok().map(|t| t.to_string_lossy().into_owned());
            let reached = roots.existing_path(path).ok().and_then(|at| at.metadata().ok());
            (target, reached.map(|m| kind_of(m.file_type())))
        }
        _ => (None, None),
    };
    let raw_name = std::str::from_utf8(name.as_bytes()).is_err().then(|| hex::encode(name.as_bytes()));
    Ok(Entry {
        name: name.to_string_lossy().into_owned(),
        raw_name,
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        owner: names.user(meta.uid()),
        group: names.group(meta.gid()),
        mtime_ms: mtime_ms(&meta),
        target,
        target_kind,
    })
}

/// One entry (`stat`).
pub fn stat(at: &Located, roots: &Roots, asked: &str) -> Result<Entry, Failure> {
    let mut entry =
        entry_at(&at.dir, &at.name, &at.path, roots, &mut Names::default()).map_err(|e| io_failure(asked, &e))?;
    if at.name == "." {
        // The top itself (the files root, or `/`): named as its path ends.
        entry.name = at.path.file_name().unwrap_or(at.path.as_os_str()).to_string_lossy().into_owned();
    }
    Ok(entry)
}

/// Read the directory `dir` (at `path`), handing its entries to `page` a page at a time (in the
/// order the directory gives them: the client sorts). Stops early when `page` returns false.
pub fn list(
    dir: &Dir,
    path: &Path,
    roots: &Roots,
    asked: &str,
    mut page: impl FnMut(Vec<Entry>) -> bool,
) -> Result<(), Failure> {
    let listed = dir.names().map_err(|e| io_failure(asked, &e))?;
    let mut names = Names::default();
    let mut entries = Vec::with_capacity(LIST_PAGE_ENTRIES);
    for name in listed {
        let Ok(entry) = entry_at(dir, &name, &path.join(&name), roots, &mut names) else { continue }; // vanished
        entries.push(entry);
        if entries.len() == LIST_PAGE_ENTRIES && !page(std::mem::take(&mut entries)) {
            return Ok(());
        }
    }
    if !entries.is_empty() {
        page(entries);
    }
    Ok(())
}
