//! Where a request's path leads, and whether the file service may go there.
//!
//! Paths are absolute or relative to the base (the home directory, or the files root when one is
//! set). With a files root, every path is resolved (symlinks followed, `..` applied) and must
//! still lie inside the root: `..`, absolute paths and symlinks that lead out are refused. The
//! check is canonicalise-then-check; the read that follows opens with `O_NOFOLLOW`, so a symlink
//! swapped in between fails instead of leading out.

use std::path::{Component, Path, PathBuf};

use tether_protocol::api::ErrorCode;

use super::failure::{io_failure, Failure};

pub struct Roots {
    /// Where relative paths start.
    base: PathBuf,
    /// The files root (canonical), when the service is confined to one.
    root: Option<PathBuf>,
}

impl Roots {
    /// Paths relative to `home`, or confined to `root` (which must exist).
    pub fn new(home: PathBuf, root: Option<&Path>) -> Result<Roots, String> {
        match root {
            None => Ok(Roots { base: home, root: None }),
            Some(root) => {
                let root = root.canonicalize().map_err(|e| format!("files root {}: {e}", root.display()))?;
                if !root.is_dir() {
                    return Err(format!("files root {} is not a directory", root.display()));
                }
                Ok(Roots { base: root.clone(), root: Some(root) })
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

    /// Refuse what lies outside the root.
    fn inside(&self, resolved: PathBuf, asked: &str) -> Result<PathBuf, Failure> {
        match &self.root {
            Some(root) if !resolved.starts_with(root) => {
                Err(Failure::new(ErrorCode::OutsideRoot, format!("{asked}: outside the files root")))
            }
            _ => Ok(resolved),
        }
    }

    /// An existing entry, every symlink followed (what reading it reaches).
    pub fn existing(&self, path: &str) -> Result<PathBuf, Failure> {
        let joined = self.joined(path)?;
        let resolved = joined.canonicalize().map_err(|e| io_failure(path, &e))?;
        self.inside(resolved, path)
    }

    /// An entry itself, a final symlink not followed (what deleting or renaming it touches): its
    /// directory resolved and checked, its name kept. The directory must exist.
    pub fn entry(&self, path: &str) -> Result<PathBuf, Failure> {
        let joined = self.joined(path)?;
        let name = match joined.components().next_back() {
            Some(Component::Normal(name)) => name.to_owned(),
            _ => return Err(Failure::new(ErrorCode::InvalidName, format!("{path}: names no entry"))),
        };
        let parent = joined.parent().unwrap_or(Path::new("/"));
        let parent = parent.canonicalize().map_err(|e| io_failure(path, &e))?;
        if !parent.is_dir() {
            return Err(Failure::new(ErrorCode::NotADirectory, format!("{}: not a directory", parent.display())));
        }
        let entry = self.inside(parent, path)?.join(name);
        // The root itself is not an entry of it that may be deleted or renamed.
        match &self.root {
            Some(root) if !entry.starts_with(root) || entry == *root => {
                Err(Failure::new(ErrorCode::OutsideRoot, format!("{path}: outside the files root")))
            }
            _ => Ok(entry),
        }
    }

    /// Where an upload or a new entry goes: through a final symlink to its target when that
    /// exists (saving a linked file changes the file, the link stays), else the entry itself.
    pub fn target(&self, path: &str) -> Result<PathBuf, Failure> {
        let entry = self.entry(path)?;
        match std::fs::symlink_metadata(&entry) {
            Ok(meta) if meta.file_type().is_symlink() && entry.exists() => self.existing(path),
            _ => Ok(entry),
        }
    }

    /// `mkdir -p`: the deepest existing ancestor is resolved and checked, then every missing
    /// part is a plain name. Returns the directories to create, outermost first.
    pub fn missing_dirs(&self, path: &str) -> Result<Vec<PathBuf>, Failure> {
        let joined = self.joined(path)?;
        let mut missing = Vec::new();
        let mut at = joined.as_path();
        while std::fs::symlink_metadata(at).is_err() {
            match at.components().next_back() {
                Some(Component::Normal(_)) => missing.push(at.to_path_buf()),
                _ => {
                    return Err(Failure::new(ErrorCode::InvalidName, format!("{path}: `..` past a missing directory")))
                }
            }
            at = at.parent().unwrap_or(Path::new("/"));
        }
        let existing = at.canonicalize().map_err(|e| io_failure(path, &e))?;
        let existing = self.inside(existing, path)?;
        // Re-root the missing names on the resolved ancestor.
        let names: Vec<_> = missing.iter().rev().filter_map(|p| p.file_name().map(|n| n.to_owned())).collect();
        let mut dirs = Vec::new();
        let mut dir = existing;
        for name in names {
            dir = dir.join(name);
            dirs.push(dir.clone());
        }
        Ok(dirs)
    }
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

    #[test]
    fn a_files_root_refuses_every_way_out() {
        let dir = scratch("out");
        let roots = Roots::new(dir.clone(), Some(&dir.join("root"))).expect("roots");
        let root = dir.join("root").canonicalize().expect("canonical");
        assert_eq!(roots.existing("inner/file").expect("inside"), root.join("inner/file"));
        assert_eq!(roots.existing("inner/../inner/file").expect("`..` inside"), root.join("inner/file"));
        assert_eq!(roots.existing("in-link").expect("link inside"), root.join("inner/file"));
        assert_eq!(code(roots.existing("../outside/secret")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.existing(&dir.join("outside/secret").display().to_string())), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.existing("out-link/secret")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("out-link/secret")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("../outside/new")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.missing_dirs("out-link/a/b")), ErrorCode::OutsideRoot);
        // The root itself is no entry to delete or rename.
        assert_eq!(code(roots.entry(".")), ErrorCode::OutsideRoot);
        assert_eq!(code(roots.entry("")), ErrorCode::OutsideRoot);
        // The link itself is inside and may be removed; what it points at is not reached.
        assert_eq!(roots.entry("out-link").expect("the link"), root.join("out-link"));
        assert_eq!(roots.missing_dirs("inner/a/b").expect("mkdir -p"), [root.join("inner/a"), root.join("inner/a/b")]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn without_a_root_paths_start_at_home_and_reach_anything() {
        let dir = scratch("home");
        let roots = Roots::new(dir.join("root"), None).expect("roots");
        assert!(roots.existing("../outside/secret").is_ok());
        assert!(roots.existing("~/inner/file").is_ok());
        assert_eq!(code(roots.existing("missing")), ErrorCode::NotFound);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
