//! Bytes in: uploads as ordered chunks into a temporary file that only a matching digest puts
//! in place.
//!
//! An upload's life: `write` opens (or finds again) its temporary file beside the target and
//! says how much of it the host has; `chunk`s append at exactly that offset, in order, through
//! one writer thread; `commit` checks size and SHA-256, syncs, keeps the old file's mode and
//! owner, and renames into place. A mismatch or a `cancel` removes the temporary file; a lost
//! link keeps it, so the same `write` resumes from where it stopped. Temporary files nobody came
//! back for are removed after `ABANDONED_UPLOAD`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use tether_protocol::api::ErrorCode;
use tether_protocol::file::{FileCheck, FILE_CHUNK_BYTES};
use tether_protocol::fs::MAX_CHUNK_BYTES;
use tether_protocol::sync::lock;
use tokio::sync::oneshot;

use super::failure::{io_failure, Failure};
use super::paths::Located;
use crate::dir::Dir;

/// Chunks queued for one upload's writer before more are refused (the sender waits for answers).
const UPLOAD_QUEUE_CHUNKS: usize = 64;
/// An upload nobody sends to for this long lets go of its writer (its file stays, to resume).
const IDLE_UPLOAD: Duration = Duration::from_secs(10 * 60);
/// A temporary file nobody came back for goes after this long.
const ABANDONED_UPLOAD: Duration = Duration::from_secs(24 * 60 * 60);
/// Uploads under way at once on this host.
const MAX_UPLOADS: usize = 64;

/// Work for one upload's writer thread.
enum Job {
    Chunk {
        offset: u64,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), Failure>>,
    },
    Commit {
        sha256: String,
        done: oneshot::Sender<Result<(PathBuf, u64), Failure>>,
    },
    Cancel {
        done: oneshot::Sender<()>,
    },
    /// How far it is (a `write` resuming an upload still open).
    Offset {
        done: oneshot::Sender<u64>,
    },
}

struct Upload {
    /// Where it goes (`Located::path`: which file, for a `write` resuming it).
    target: PathBuf,
    size: u64,
    jobs: std_mpsc::SyncSender<Job>,
}

/// What `write` asks for.
pub struct UploadPlan {
    pub key: String,
    pub target: Located,
    pub shown: String,
    pub size: u64,
    pub overwrite: bool,
    pub mode: Option<u32>,
    /// Only replace a file whose SHA-256 (hex) is still this (an editor's save).
    pub base: Option<String>,
}

/// Uploads under way, each by its name scoped to the credential that started it
/// (`files::scoped_upload`).
pub struct Uploads {
    open: Arc<Mutex<HashMap<String, Upload>>>,
    /// One small file per upload naming its temporary file, so an abandoned one is found.
    records: PathBuf,
}

impl Uploads {
    pub fn new(records: PathBuf) -> Uploads {
        Uploads { open: Arc::new(Mutex::new(HashMap::new())), records }
    }

    /// Start or resume an upload; the offset the host has.
    pub async fn begin(&self, plan: UploadPlan) -> Result<u64, Failure> {
        let running = lock(&self.open).get(&plan.key).map(|u| (u.target.clone(), u.size, u.jobs.clone()));
        if let Some((target, size, jobs)) = running {
            if target != plan.target.path || size != plan.size {
                return Err(Failure::new(ErrorCode::Exists, "an upload of that name is under way for another file"));
            }
            let (done, offset) = oneshot::channel();
            if jobs.try_send(Job::Offset { done }).is_ok() {
                if let Ok(offset) = offset.await {
                    return Ok(offset);
                }
            }
            lock(&self.open).remove(&plan.key); // its writer is gone: start afresh below
        }
        if lock(&self.open).len() >= MAX_UPLOADS {
            return Err(Failure::new(ErrorCode::LimitReached, format!("{MAX_UPLOADS} uploads are under way already")));
        }
        let records = self.records.clone();
        let open = self.open.clone();
        tokio::task::spawn_blocking(move || start_writer(plan, &records, open))
            .await
            .unwrap_or_else(|e| Err(Failure::new(ErrorCode::Internal, e.to_string())))
    }

    fn jobs(&self, key: &str) -> Result<std_mpsc::SyncSender<Job>, Failure> {
        lock(&self.open).get(key).map(|u| u.jobs.clone()).ok_or_else(|| {
            Failure::new(ErrorCode::NotFound, "no upload of that name under way here (start it again to resume)")
        })
    }

    /// Queue a chunk (in the order requests came); the future says when it is written.
    pub fn chunk(
        &self,
        key: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<(), Failure>>, Failure> {
        if bytes.len() > MAX_CHUNK_BYTES {
            return Err(Failure::new(ErrorCode::LimitReached, format!("chunks are at most {MAX_CHUNK_BYTES} bytes")));
        }
        let jobs = self.jobs(key)?;
        let (done, written) = oneshot::channel();
        jobs.try_send(Job::Chunk { offset, bytes, done }).map_err(|e| match e {
            std_mpsc::TrySendError::Full(_) => {
                Failure::new(ErrorCode::LimitReached, format!("more than {UPLOAD_QUEUE_CHUNKS} chunks unanswered"))
            }
            std_mpsc::TrySendError::Disconnected(_) => Failure::new(ErrorCode::NotFound, "the upload ended"),
        })?;
        Ok(written)
    }

    /// Put the upload in place; where it went and its size.
    pub async fn commit(&self, key: &str, sha256: String) -> Result<(PathBuf, u64), Failure> {
        let jobs = self.jobs(key)?;
        let (done, committed) = oneshot::channel();
        jobs.send(Job::Commit { sha256, done }).map_err(|_| Failure::new(ErrorCode::NotFound, "the upload ended"))?;
        committed.await.unwrap_or_else(|_| Err(Failure::new(ErrorCode::Internal, "the upload's writer stopped")))
    }

    pub async fn cancel(&self, key: &str) -> Result<(), Failure> {
        let jobs = self.jobs(key)?;
        let (done, cancelled) = oneshot::channel();
        let _ = jobs.send(Job::Cancel { done });
        let _ = cancelled.await;
        Ok(())
    }

    /// Remove temporary files of uploads abandoned for longer than `ABANDONED_UPLOAD`.
    pub fn sweep(&self) {
        let Ok(records) = std::fs::read_dir(&self.records) else { return };
        let in_use: Vec<PathBuf> = lock(&self.open).keys().map(|key| self.records.join(key)).collect();
        for record in records.flatten() {
            let path = record.path();
            if in_use.contains(&path) {
                continue;
            }
            let temp = std::fs::read_to_string(&path).map(PathBuf::from).ok();
            let age = temp.as_ref().and_then(|t| std::fs::metadata(t).ok()).and_then(|m| m.modified().ok());
            let stale = age.and_then(|at| at.elapsed().ok()).is_none_or(|age| age > ABANDONED_UPLOAD);
            if stale {
                if let Some(temp) = temp {
                    let _ = std::fs::remove_file(temp);
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The name of the temporary file beside `target` for upload `key`.
fn temp_name(target: &Located, key: &str) -> OsString {
    let name = target.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let short: String = name.chars().take(100).collect();
    OsString::from(format!(".{short}.{key}.tether-upload"))
}

/// An upload's temporary file `name` in `dir`: the one an earlier attempt left, if it is plainly
/// ours (a regular file of this user with no other name: never a link, nor a hard link someone
/// made to another file); else a new one, made with `O_EXCL`.
fn open_temp(dir: &Dir, name: &OsStr) -> std::io::Result<std::fs::File> {
    let open = |create: bool| {
        let flags = libc::O_RDWR | if create { libc::O_CREAT | libc::O_EXCL } else { 0 };
        dir.open_file(name, flags, 0o600)
    };
    match open(false) {
        Ok(file) => {
            let meta = file.metadata()?;
            // SAFETY: geteuid has no preconditions.
            let mine = meta.is_file() && meta.nlink() == 1 && meta.uid() == unsafe { libc::geteuid() };
            if mine {
                return Ok(file);
            }
            drop(file);
            dir.remove_file(name)?;
            open(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => open(true),
        // A symlink where the temporary file goes: not ours, and never followed.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            dir.remove_file(name)?;
            open(true)
        }
        Err(e) => Err(e),
    }
}

fn start_writer(plan: UploadPlan, records: &Path, open: Arc<Mutex<HashMap<String, Upload>>>) -> Result<u64, Failure> {
    let shown = plan.shown.clone();
    match plan.target.metadata() {
        Ok(meta) if meta.is_dir() => {
            return Err(Failure::new(ErrorCode::IsADirectory, format!("{shown}: is a directory")))
        }
        Ok(_) if !plan.overwrite => return Err(Failure::new(ErrorCode::Exists, format!("{shown}: already exists"))),
        _ => {}
    }
    if let Some(base) = &plan.base {
        still_at(&plan.target, base, &shown)?; // refused before any byte is sent
    }
    let temp = temp_name(&plan.target, &plan.key);
    let mut file = open_temp(&plan.target.dir, &temp).map_err(|e| io_failure(&shown, &e))?;
    std::fs::create_dir_all(records).map_err(|e| io_failure("the upload records", &e))?;
    let temp_path = plan.target.path.with_file_name(&temp);
    let _ = std::fs::write(records.join(&plan.key), temp_path.as_os_str().as_encoded_bytes());
    // What an earlier attempt left is hashed again, so the digest covers the whole file.
    let mut check = FileCheck::new(plan.size);
    let kept = file.metadata().map(|m| m.len()).unwrap_or(0);
    if kept > plan.size || rehash(&mut file, kept, &mut check).is_err() {
        check = FileCheck::new(plan.size);
        file.set_len(0).map_err(|e| io_failure(&shown, &e))?;
    }
    let offset = check.offset();
    let (jobs, inbox) = std_mpsc::sync_channel(UPLOAD_QUEUE_CHUNKS);
    let key = plan.key.clone();
    lock(&open).insert(key.clone(), Upload { target: plan.target.path.clone(), size: plan.size, jobs });
    let record = records.join(&key);
    std::thread::spawn(move || {
        let writer = Writer { plan, temp, file, check };
        writer.run(inbox, &record);
        lock(&open).remove(&key);
    });
    Ok(offset)
}

/// Whether `target` still holds the version with SHA-256 `base` (the one an editor started from).
fn still_at(target: &Located, base: &str, shown: &str) -> Result<(), Failure> {
    let changed =
        || Failure::new(ErrorCode::Changed, format!("{shown}: changed on disk since it was opened; not saved"));
    match super::watch::sha256_of(target) {
        Ok(Some(now)) if now == base => Ok(()),
        Ok(_) => Err(changed()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(changed()),
        Err(e) => Err(io_failure(shown, &e)),
    }
}

fn rehash(file: &mut std::fs::File, len: u64, check: &mut FileCheck) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut buffer = vec![0u8; FILE_CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buffer[..(left.min(FILE_CHUNK_BYTES as u64) as usize)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        check.absorb(&buffer[..n]).map_err(|e| std::io::Error::other(e.to_string()))?;
        left -= n as u64;
    }
    Ok(())
}

/// Debug builds only: `TETHER_TEST_FLIP_UPLOAD_BYTE=N` flips the upload's byte N on its way to
/// disk, as a bad disk or a bug would, so a test can watch the digest check refuse the file.
fn corrupted_for_tests(offset: u64, bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(debug_assertions)]
    if let Some(flip) = std::env::var("TETHER_TEST_FLIP_UPLOAD_BYTE").ok().and_then(|n| n.parse::<u64>().ok()) {
        if let Some(at) = flip.checked_sub(offset).filter(|&at| at < bytes.len() as u64) {
            let mut bytes = bytes.to_vec();
            bytes[at as usize] ^= 0x01;
            return std::borrow::Cow::Owned(bytes);
        }
    }
    let _ = offset;
    std::borrow::Cow::Borrowed(bytes)
}

struct Writer {
    plan: UploadPlan,
    /// The temporary file's name, beside the target.
    temp: OsString,
    file: std::fs::File,
    check: FileCheck,
}

impl Writer {
    fn run(mut self, inbox: std_mpsc::Receiver<Job>, record: &Path) {
        loop {
            let Ok(job) = inbox.recv_timeout(IDLE_UPLOAD) else { return }; // idle: the file stays
            match job {
                Job::Offset { done } => {
                    let _ = done.send(self.check.offset());
                }
                Job::Chunk { offset, bytes, done } => {
                    let _ = done.send(self.append(offset, &bytes));
                }
                Job::Cancel { done } => {
                    let _ = self.plan.target.dir.remove_file(&self.temp);
                    let _ = std::fs::remove_file(record);
                    let _ = done.send(());
                    return;
                }
                Job::Commit { sha256, done } => {
                    let committed = self.commit(&sha256);
                    let keep_for_retry = matches!(&committed, Err(f) if f.code == ErrorCode::Exists);
                    if !keep_for_retry {
                        let _ = self.plan.target.dir.remove_file(&self.temp); // gone by the rename if it worked
                        let _ = std::fs::remove_file(record);
                    }
                    let _ = done.send(committed);
                    if !keep_for_retry {
                        return;
                    }
                }
            }
        }
    }

    fn append(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Failure> {
        let expected = self.check.offset();
        if offset != expected {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                format!("chunk at byte {offset}; the host has {expected}"),
            ));
        }
        let shown = &self.plan.shown;
        let bytes = corrupted_for_tests(offset, bytes);
        self.check.absorb(&bytes).map_err(|e| Failure::new(ErrorCode::BadRequest, format!("{shown}: {e}")))?;
        let written = self.file.seek(SeekFrom::Start(offset)).and_then(|_| self.file.write_all(&bytes));
        if let Err(e) = written {
            // Nothing half-written counts: the next chunk must come again from `expected`.
            let _ = self.file.set_len(expected);
            self.check = FileCheck::new(self.plan.size);
            let _ = rehash(&mut self.file, expected, &mut self.check);
            return Err(io_failure(shown, &e));
        }
        Ok(())
    }

    fn commit(&mut self, sha256: &str) -> Result<(PathBuf, u64), Failure> {
        let shown = self.plan.shown.clone();
        let check = std::mem::replace(&mut self.check, FileCheck::new(self.plan.size));
        let size = check.offset();
        check
            .finish(sha256)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, format!("{shown}: {e}; nothing was written")))?;
        self.file.sync_all().map_err(|e| io_failure(&shown, &e))?;
        let target = &self.plan.target;
        if let Some(base) = &self.plan.base {
            still_at(target, base, &shown)?;
        }
        match target.metadata() {
            Ok(_) if !self.plan.overwrite => {
                return Err(Failure::new(ErrorCode::Exists, format!("{shown}: appeared meanwhile; not replaced")))
            }
            Ok(old) => {
                // The new bytes take the old file's place with its mode and (where allowed) owner.
                let _ = self.file.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777));
                let _ = std::os::unix::fs::fchown(&self.file, Some(old.uid()), Some(old.gid()));
            }
            Err(_) => {
                let mode = self.plan.mode.unwrap_or(0o644) & 0o7777;
                let _ = self.file.set_permissions(std::fs::Permissions::from_mode(mode));
            }
        }
        // Without `overwrite`, a file that appears in the last moment is not replaced either.
        let renamed = target.dir.rename(&self.temp, &target.dir, &target.name, self.plan.overwrite);
        renamed.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Failure::new(ErrorCode::Exists, format!("{shown}: appeared meanwhile; not replaced"))
            }
            _ => io_failure(&shown, &e),
        })?;
        let _ = target.dir.sync();
        Ok((target.path.clone(), size))
    }
}
