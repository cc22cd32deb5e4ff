//! Where a request's path leads, and whether the file service may go there.
//!
//! Paths are absolute or relative to the base (the home directory, or the files root when one is
//! set). A path is walked one name at a time from a directory held open — the files root, or `/`
//! without one — each step an `openat` of one name in the directory the last step opened, never
//! following a link by itself: a symlink met on the way is read and its target walked in turn,
//! and `..` goes back to the directory the walk came from. A walk ends at a `Located`: the
//! directory holding the entry, open, and the entry's name. Every operation acts on that pair
//! (`crate::dir`), so what was checked is what is used, whatever a client renames or swaps
//! meanwhile.
//!
//! Invariants:
//! - With a files root, a walk never holds a directory outside it: `..` at the root, and an
//!   absolute path or link target not under it, are refused (`OutsideRoot`), even on a way that
//!   would come back in.
//! - A `Located` is a name in a directory reached inside the root; the entry is reached from it
//!   with `O_NOFOLLOW`, so a link swapped in after the walk makes the operation fail, never
//!   leads out.
//! - Without a root the same walk runs from `/` (`..` at `/` stays there): one way for both.
//! - `Located::path` names what was reached without links or `..`: it is what the user is shown
//!   and what is asked again (a trashed entry's way back, a link's target kind), never opened.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use tether_protocol::api::ErrorCode;

use super::failure::{io_failure, Failure};
use crate::dir::{Dir, MAX_LINKS};

pub struct Roots {
    /// Where relative paths start.
    base: PathBuf,
    /// The files root (canonical), when the service is confined to one.
    root: Option<PathBuf>,
    /// Where every walk starts: the files root, or `/`.
    top: Dir,
}

/// An entry a walk reached (it may not exist yet: where something is to be made).
#[derive(Debug)]
pub struct Located {
    /// The directory it is in (for the top itself, the top).
    pub dir: Dir,
    /// Its name there (`.` for the top itself).
    pub name: OsString,
    /// Where it is, without links or `..`.
    pub path: PathBuf,
}

impl Located {
    pub fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// The entry itself (a symlink not followed).
    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.dir.symlink_metadata(&self.name)
    }

    /// The entry, a directory, opened.
    pub fn open_dir(&self) -> std::io::Result<Dir> {
        self.dir.dir(&self.name)
    }
}

/// How a walk treats the path's last name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Followed if it is a link; it must exist (what reading it reaches).
    Follow,
    /// Taken as it is, a link or missing (what deleting, renaming or making it touches).
    Keep,
}

impl Roots {
    /// Paths relative to `home`, or confined to `root` (which must exist).
    pub fn new(home: PathBuf, root: Option<&Path>) -> Result<Roots, String> {
        match root {
            None => {
                let top = Dir::open(Path::new("/")).map_err(|e| format!("/: {e}"))?;
                Ok(Roots { base: home, root: None, top })
            }
            Some(root) => {
                let root = root.canonicalize().map_err(|e| format!("files root {}: {e}", root.display()))?;
                if !root.is_dir() {
                    return Err(format!("files root {} is not a directory", root.display()));
                }
                let top = Dir::open(&root).map_err(|e| format!("files root {}: {e}", root.display()))?;
                Ok(Roots { base: root.clone(), root: Some(root), top })
            }
        }
    }

    /// The path as given, on the base; nothing resolved yet.
    fn joined(&self, path: &str) -> Result<PathBuf, Failure> {
        if path.contains('\0') {
            return Err(Failure::new(ErrorCode::InvalidName, "a path may not contain NUL"));
        }
        let path = Path::new(path);
        let path = match path.strip_prefix("~") {
            Ok(rest) if self.root.is_none() => self.base.join(rest),
            _ => self.base.join(path), // an absolute path replaces the base
        };
        Ok(path)
    }

    fn top_path(&self) -> &Path {
        self.root.as_deref().unwrap_or(Path::new("/"))
    }

    fn outside(asked: &str) -> Failure {
        Failure::new(ErrorCode::OutsideRoot, format!("{asked}: outside the files root"))
    }

    /// The names to walk from the top for an absolute `path`.
    fn below_top(&self, path: &Path, asked: &str) -> Result<VecDeque<OsString>, Failure> {
        let below = path.strip_prefix(self.top_path()).map_err(|_| Roots::outside(asked))?;
        Ok(names_of(below))
    }

    /// Walk `path` (absolute) from the top. `make_dirs`: directories missing on the way are
    /// made (`mkdir -p`).
    fn walk(&self, path: &Path, asked: &str, last: Last, make_dirs: bool) -> Result<Located, Failure> {
        let mut todo = self.below_top(path, asked)?;
        // The directories entered below the top, each with its name.
        let mut entered: Vec<(Dir, OsString)> = Vec::new();
        let mut links = 0u32;
        let failed = |e: std::io::Error| io_failure(asked, &e);
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if entered.pop().is_none() && self.root.is_some() {
                    return Err(Roots::outside(asked));
                }
                continue;
            }
            let here = entered.last().map_or(&self.top, |(dir, _)| dir);
            let is_last = todo.is_empty();
            if is_last && last == Last::Keep {
                return self.located(here, &entered, name).map_err(failed);
            }
            match here.lookup(&name) {
                Ok((meta, _)) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        let message = format!("{asked}: too many levels of symbolic links");
                        return Err(Failure::new(ErrorCode::InvalidName, message));
                    }
                    let target = here.read_link(&name).map_err(failed)?;
                    let mut next = match target.is_absolute() {
                        true => {
                            entered.clear();
                            self.below_top(&target, asked)?
                        }
                        false => names_of(&target),
                    };
                    next.extend(todo.drain(..));
                    todo = next;
                }
                Ok(_) if is_last => return self.located(here, &entered, name).map_err(failed),
                Ok((_, Some(dir))) => entered.push((dir, name)),
                Ok((_, None)) => return Err(failed(std::io::Error::from_raw_os_error(libc::ENOTDIR))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && make_dirs && !is_last => {
                    match here.create_dir(&name, 0o777) {
                        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(failed(e)),
                        _ => {}
                    }
                    let dir = here.dir(&name).map_err(failed)?;
                    entered.push((dir, name));
                }
                Err(e) => return Err(failed(e)),
            }
        }
        // It ended on a directory already entered (or the top): that directory, in its parent.
        match entered.pop() {
            Some((_, name)) => {
                let here = entered.last().map_or(&self.top, |(dir, _)| dir);
                self.located(here, &entered, name).map_err(failed)
            }
            None => self.located(&self.top, &entered, OsString::from(".")).map_err(failed),
        }
    }

    fn located(&self, here: &Dir, entered: &[(Dir, OsString)], name: OsString) -> std::io::Result<Located> {
        let mut path = self.top_path().to_path_buf();
        path.extend(entered.iter().map(|(_, name)| name));
        if name != "." {
            path.push(&name);
        }
        Ok(Located { dir: here.try_clone()?, name, path })
    }

    /// An existing entry, every symlink followed (what reading it reaches).
    pub fn existing(&self, path: &str) -> Result<Located, Failure> {
        self.walk(&self.joined(path)?, path, Last::Follow, false)
    }

    /// What `path` (absolute: a `Located::path` and more) reaches, every symlink followed.
    pub fn existing_path(&self, path: &Path) -> Result<Located, Failure> {
        self.walk(path, &path.display().to_string(), Last::Follow, false)
    }

    /// An entry itself, a final symlink not followed (what deleting or renaming it touches): the
    /// directory it is in must exist. The root (or `/`) itself is no entry.
    pub fn entry(&self, path: &str) -> Result<Located, Failure> {
        self.entry_path(&self.joined(path)?, path)
    }

    /// `entry` of an absolute path (a trashed entry's way back).
    pub fn entry_path(&self, path: &Path, asked: &str) -> Result<Located, Failure> {
        let located = self.walk(path, asked, Last::Keep, false)?;
        match (located.name == ".", &self.root) {
            (false, _) => Ok(located),
            (true, Some(_)) => Err(Roots::outside(asked)),
            (true, None) => Err(Failure::new(ErrorCode::InvalidName, format!("{asked}: names no entry"))),
        }
    }

    /// Where an upload or a new entry goes: through a final symlink to its target when that
    /// exists (saving a linked file changes the file, the link stays), else the entry itself.
    pub fn target(&self, path: &str) -> Result<Located, Failure> {
        let entry = self.entry(path)?;
        match entry.metadata() {
            Ok(meta) if meta.file_type().is_symlink() => Ok(self.existing(path).unwrap_or(entry)),
            _ => Ok(entry),
        }
    }

    /// Where `mkdir` makes `path`: the entry, its directory reached — with `parents`, made on
    /// the way where missing (`mkdir -p`).
    pub fn to_make(&self, path: &str, parents: bool) -> Result<Located, Failure> {
        let located = self.walk(&self.joined(path)?, path, Last::Keep, parents)?;
        match located.name == "." {
            true => Err(Failure::new(ErrorCode::Exists, format!("{path}: already exists"))),
            false => Ok(located),
        }
    }

    /// Refuse a symlink `target` made at `link` that would lead outside the root (links inside
    /// it, and dangling ones, are made as asked; without a root, any).
    pub fn check_link_target(&self, link: &Located, target: &str) -> Result<(), Failure> {
        if self.root.is_none() {
            return Ok(());
        }
        let dir = link.path.parent().unwrap_or(self.top_path());
        match self.walk(&dir.join(target), target, Last::Follow, false) {
            Err(failure) if failure.code == ErrorCode::OutsideRoot => {
                Err(Failure::new(ErrorCode::OutsideRoot, format!("{target}: a link to outside the files root")))
            }
            _ => Ok(()),
        }
    }
}

/// A relative path's names, `.` left out, `..` kept.
fn names_of(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|part| match part {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-roots-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/inner")).expect("dirs");
        std::fs::create_dir_all(dir.join("outside")).expect("dirs");
        std::fs::write(dir.join("outside/secret"), "s").expect("file");
        std::fs::write(dir.join("root/inner/file"), "f").expect("file");
        std::os::unix::fs::symlink(dir.join("outside"), dir.join("root/out-link")).expect("link");
        std::os::unix::fs::symlink("inner/file", dir.join("root/in-link")).expect("link");
        dir
    }

    fn code<T: std::fmt::Debug>(result: Result<T, Failure>) -> ErrorCode {
        result.expect_err("refused").code
    }

    fn path(located: Result<Located, Failure>) -> PathBuf {
        located.expect("reached").path
    }

    #[test]
    fn a_files_root_refuses_every_way_out() {
        let dir = scratch("out");
        let roots = Roots::new(dir.clone(), Some(&dir.join("root"))).expect("roots");
        let root = dir.join("root").canonicalize().expect("canonical");
        assert_eq!(path(roots.existing("inner/file")), root.join("inner/file"));
        assert_eq!(path(roots.existing("inner/../inner/file")), root.join("inner/file"));
        assert_eq!(path(roots.existing("in-link")), root.join("inner/file"));
        assert_eq!(path(roots.existing(&root.join("inner/file").display().to_string())), root.join("inner/file"));
        assert_eq!(code(roots.existing("../outside/secret")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.existing(&dir.join("outside/secret").display().to_string())), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.existing("out-link/secret")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("out-link/secret")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("../outside/new")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.to_make("out-link/a/b", true)), ErrorCode::OutsideRoot);
        // Out and back in is out: the walk never holds a directory outside the root.
        assert_eq!(code(roots.existing("../root/inner/file")), ErrorCode::OutsideRoot);
        // The root itself is no entry to delete or rename.
        assert_eq!(code(roots.entry(".")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("inner/..")), ErrorCode::OutsideRoot);
        // The link itself is inside and may be removed; what it points at is not reached.
        let link = roots.entry("out-link").expect("the link");
        assert_eq!(link.path, root.join("out-link"));
        assert!(link.metadata().expect("stat").file_type().is_symlink());
        // mkdir -p makes what is missing on the way, inside.
        assert_eq!(path(roots.to_make("inner/a/b", true)), root.join("inner/a/b"));
        assert!(root.join("inner/a").is_dir());
        // A link made through the service may not lead out; inside (or dangling inside) it may.
        let at = roots.entry("new-link").expect("entry");
        assert_eq!(code(roots.check_link_target(&at, "../outside")), ErrorCode::OutsideRoot);
        assert_eq!(
            code(roots.check_link_target(&at, &dir.join("outside").display().to_string())),
            ErrorCode::OutsideRoot
        );
        assert_eq!(code(roots.check_link_target(&at, "out-link/secret")), ErrorCode::OutsideRoot);
        assert!(roots.check_link_target(&at, "inner/file").is_ok());
        assert!(roots.check_link_target(&at, "inner/not-yet").is_ok());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_walk_holds_what_it_checked_when_a_directory_is_swapped_for_a_link() {
        let dir = scratch("swap");
        let roots = Roots::new(dir.clone(), Some(&dir.join("root"))).expect("roots");
        let reached = roots.existing("inner").expect("inner");
        let inner = reached.open_dir().expect("open");
        // The directory goes, a link to outside takes its name: the handle still has the
        // directory that was checked, and the name no longer leads anywhere.
        std::fs::rename(dir.join("root/inner"), dir.join("root/moved")).expect("move");
        std::os::unix::fs::symlink(dir.join("outside"), dir.join("root/inner")).expect("link");
        assert!(inner.symlink_metadata(std::ffi::OsStr::new("file")).is_ok(), "the checked directory");
        assert!(inner.symlink_metadata(std::ffi::OsStr::new("secret")).is_err(), "not the outside one");
        assert!(reached.open_dir().is_err(), "a link in its place is not entered");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn without_a_root_paths_start_at_home_and_reach_anything() {
        let dir = scratch("home");
        let roots = Roots::new(dir.join("root"), None).expect("roots");
        assert!(roots.existing("../outside/secret").is_ok());
        assert!(roots.existing("~/inner/file").is_ok());
        assert!(roots.existing("/../..").is_ok(), "`..` at / stays at /");
        assert_eq!(code(roots.existing("missing")), ErrorCode::NotFound);
        assert_eq!(code(roots.entry("/")), ErrorCode::InvalidName);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
