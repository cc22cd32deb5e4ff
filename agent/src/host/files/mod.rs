//! The file service: a host's files for the browser's file manager, the editor and `tether cp` /
//! `tether fs`, over the same connection as the terminals. It runs as the agent's user and reaches
//! what that user can, like sftp, or only what lies under a files root.
//!
//! - `paths`: where a request's path leads — walked from the files root held open, to an open
//!   directory and a name that every operation then acts on (`crate::dir`).
//! - `entries`: stat and listings. `ops`: mkdir, rename, copy, delete (trash), chmod.
//! - `streams`: bytes out — listings, reads and folder archives as streams.
//! - `upload`: bytes in — atomic, resumable uploads (and an editor's conditional saves).
//! - `watch`: an open editor's file, followed for changes on disk.
//! - `failure`: specific errors (not found, permission denied, exists…) the user sees.

mod entries;
mod failure;
mod ops;
mod paths;
mod streams;
mod upload;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tether_protocol::api::{error_answer, Answer, ErrorCode, Response};
use tether_protocol::fs::{FsRequest, FsResponse};
use tether_protocol::sync::lock;

use crate::host::service::InOrder;
use crate::host::service::{StreamItem, StreamTx};
use failure::Failure;
use paths::Roots;
use upload::{UploadPlan, Uploads};

pub struct FileService {
    /// `None`: the service is off on this host. (Swapped whole by `reconfigure`; a request
    /// under way keeps the rules it started with.)
    roots: std::sync::Mutex<Option<Arc<Roots>>>,
    home: PathBuf,
    /// Where deleted entries wait to be restored.
    trash: PathBuf,
    uploads: Uploads,
}

/// How the service is set up: `files` and `files_root` in the config, unless `tether pair
/// --files-root / --no-files` said otherwise (kept in the store, so it outlives restarts).
pub struct FilesConfig {
    pub enabled: bool,
    pub root: Option<PathBuf>,
}

/// Store settings that `tether pair --files-root DIR` / `--no-files` leave.
const ENABLED_SETTING: &str = "files";
const ROOT_SETTING: &str = "files_root";

impl FilesConfig {
    /// The config's rules, or what `pair` said last.
    pub fn with_stored(self, store: &crate::host::store::Store) -> Result<FilesConfig, String> {
        let Some(enabled) = store.setting(ENABLED_SETTING)? else { return Ok(self) };
        let root = store.setting(ROOT_SETTING)?.filter(|root| !root.is_empty()).map(PathBuf::from);
        Ok(FilesConfig { enabled: enabled == "on", root })
    }

    /// Keep these rules for the next start.
    pub fn store(&self, store: &crate::host::store::Store) -> Result<(), String> {
        store.set_setting(ENABLED_SETTING, if self.enabled { "on" } else { "off" })?;
        let root = self.root.as_ref().map(|r| r.display().to_string()).unwrap_or_default();
        store.set_setting(ROOT_SETTING, &root)
    }
}

impl FileService {
    /// Relative paths start at `home` (or at the root); the trash and upload records live under
    /// `state_dir`.
    pub fn new(config: &FilesConfig, home: PathBuf, state_dir: &Path) -> Result<FileService, String> {
        let roots = std::sync::Mutex::new(FileService::roots_for(config, &home)?);
        let service = FileService {
            roots,
            home,
            trash: state_dir.join("trash"),
            uploads: Uploads::new(state_dir.join("uploads")),
        };
        service.sweep();
        Ok(service)
    }

    fn roots_for(config: &FilesConfig, home: &Path) -> Result<Option<Arc<Roots>>, String> {
        match config.enabled {
            true => Ok(Some(Arc::new(Roots::new(home.to_path_buf(), config.root.as_deref())?))),
            false => Ok(None),
        }
    }

    /// New rules from now on (a missing root is an error, and the old rules stay).
    pub fn reconfigure(&self, config: &FilesConfig) -> Result<(), String> {
        *lock(&self.roots) = FileService::roots_for(config, &self.home)?;
        Ok(())
    }

    /// Remove what abandoned uploads left behind, and what has been in the trash longer than
    /// `ops::TRASH_KEEP` (run now and then; blocks briefly).
    pub fn sweep(&self) {
        self.uploads.sweep();
        ops::empty_old_trash(&self.trash, crate::time::now_ms());
    }

    fn roots(&self) -> Result<Arc<Roots>, Failure> {
        lock(&self.roots)
            .clone()
            .ok_or_else(|| Failure::new(ErrorCode::FilesOff, "the file service is turned off on this host"))
    }

    /// Upload chunks, handled in the order they came (their offsets must follow each other);
    /// `owner` is who asks (see `handle`).
    pub fn handle_in_order(&self, owner: &str, request: &FsRequest, payload: &[u8]) -> Option<InOrder> {
        let FsRequest::Chunk { upload, offset } = request else { return None };
        let scoped = match scoped_upload(owner, upload) {
            Ok(scoped) => scoped,
            Err(failure) => return Some(InOrder::Now(failure.answer())),
        };
        Some(match self.uploads.chunk(&scoped, *offset, payload.to_vec()) {
            Ok(written) => InOrder::Later(Box::pin(async move {
                match written.await {
                    Ok(Ok(())) => (Response::Fs(FsResponse::Done { path: String::new() }), Vec::new()),
                    Ok(Err(failure)) => failure.answer(),
                    Err(_) => error_answer(ErrorCode::Internal, "the upload's writer stopped"),
                }
            })),
            Err(failure) => InOrder::Now(failure.answer()),
        })
    }

    /// Every request with one answer. `owner` is who asks (a credential, or the host's own
    /// user): an upload is theirs alone to resume, commit or cancel.
    pub async fn handle(&self, owner: &str, mut request: FsRequest) -> Answer {
        if let FsRequest::Write { upload, .. } | FsRequest::Commit { upload, .. } | FsRequest::Cancel { upload } =
            &mut request
        {
            match scoped_upload(owner, upload) {
                Ok(scoped) => *upload = scoped,
                Err(failure) => return failure.answer(),
            }
        }
        match self.answer(request).await {
            Ok(response) => (Response::Fs(response), Vec::new()),
            Err(failure) => failure.answer(),
        }
    }

    /// Every request with one answer (uploads named as `scoped_upload` keeps them). Resolving a path walks the file system too, so it runs
    /// on the blocking thread with the operation.
    async fn answer(&self, request: FsRequest) -> Result<FsResponse, Failure> {
        let roots = self.roots()?;
        let shown = |path: &Path| path.display().to_string();
        let trash = self.trash.clone();
        match request {
            FsRequest::Stat { path } => {
                blocking(move || {
                    let entry = roots.entry(&path).or_else(|_| roots.existing(&path))?;
                    Ok(FsResponse::Entry { entry: entries::stat(&entry, &roots, &path)? })
                })
                .await
            }
            FsRequest::Mkdir { path, parents } => {
                blocking(move || {
                    let at = roots.to_make(&path, parents)?;
                    ops::mkdir(&at, parents, &path)?;
                    Ok(FsResponse::Done { path: at.shown() })
                })
                .await
            }
            FsRequest::Rename { from, to, overwrite } => {
                blocking(move || {
                    let (source, target) = (roots.entry(&from)?, roots.entry(&to)?);
                    ops::rename(&source, &target, overwrite, (&from, &to))?;
                    Ok(FsResponse::Done { path: target.shown() })
                })
                .await
            }
            FsRequest::Copy { from, to, overwrite } => {
                blocking(move || {
                    let (source, target) = (roots.entry(&from)?, roots.entry(&to)?);
                    ops::copy(&source, &target, overwrite, (&from, &to))?;
                    Ok(FsResponse::Done { path: target.shown() })
                })
                .await
            }
            FsRequest::Delete { path, permanent } => {
                blocking(move || {
                    let entry = roots.entry(&path)?;
                    Ok(match ops::delete(&entry, permanent, &trash, &path)? {
                        Some(trash_id) => FsResponse::Trashed { trash_id },
                        None => FsResponse::Done { path: entry.shown() },
                    })
                })
                .await
            }
            FsRequest::Restore { trash_id } => {
                blocking(move || Ok(FsResponse::Done { path: shown(&ops::restore(&roots, &trash, &trash_id)?) })).await
            }
            FsRequest::Symlink { path, target } => {
                blocking(move || {
                    let entry = roots.entry(&path)?;
                    ops::symlink(&roots, &entry, &target, &path)?;
                    Ok(FsResponse::Done { path: entry.shown() })
                })
                .await
            }
            FsRequest::Chmod { path, mode } => {
                blocking(move || {
                    let resolved = roots.existing(&path)?;
                    ops::chmod(&resolved, mode, &path)?;
                    Ok(FsResponse::Done { path: resolved.shown() })
                })
                .await
            }
            FsRequest::Write { path, size, upload, overwrite, mode, base } => {
                let asked = path.clone();
                let target = blocking(move || roots.target(&asked)).await?;
                let done = target.shown();
                let plan = UploadPlan { key: upload, target, shown: path, size, overwrite, mode, base };
                let offset = self.uploads.begin(plan).await?;
                Ok(FsResponse::Writing { path: done, offset })
            }
            FsRequest::Commit { upload, sha256 } => {
                let (path, size) = self.uploads.commit(&upload, sha256).await?;
                Ok(FsResponse::Committed { path: shown(&path), size })
            }
            FsRequest::Cancel { upload } => {
                self.uploads.cancel(&upload).await?;
                Ok(FsResponse::Done { path: String::new() })
            }
            FsRequest::Chunk { .. } => Err(Failure::new(ErrorCode::BadRequest, "chunks are handled in order")),
            FsRequest::List { .. } | FsRequest::Read { .. } | FsRequest::Archive { .. } | FsRequest::Watch { .. } => {
                Err(Failure::new(ErrorCode::BadRequest, "listings, reads and watches are streams"))
            }
        }
    }

    /// `list`, `read`, `archive` and `watch`: the answer, then the stream's frames, go to `tx`.
    pub async fn open_stream(&self, request: FsRequest, id: u64, stream: u32, tx: StreamTx) {
        let refused =
            |failure: Failure| async { drop(tx.send(StreamItem::Answer { id, answer: failure.answer() }).await) };
        let roots = match self.roots() {
            Ok(roots) => roots,
            Err(failure) => return refused(failure).await,
        };
        let (FsRequest::List { path }
        | FsRequest::Read { path, .. }
        | FsRequest::Archive { path }
        | FsRequest::Watch { path }) = &request
        else {
            return refused(Failure::new(ErrorCode::BadRequest, "not a stream request")).await;
        };
        let asked = path.clone();
        let walked = roots.clone();
        let resolved = match blocking(move || walked.existing(&asked)).await {
            Ok(resolved) => resolved,
            Err(failure) => return refused(failure).await,
        };
        match request {
            FsRequest::List { .. } => streams::list(resolved, roots, id, stream, tx).await,
            FsRequest::Read { path, offset } => streams::read(resolved, path, offset, id, stream, tx).await,
            FsRequest::Watch { path } => watch::watch(resolved, path, id, stream, tx).await,
            _ => streams::archive(resolved, id, stream, tx).await,
        }
    }
}

/// File system work runs on a blocking thread, never on the task carrying every client.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| Err(Failure::new(ErrorCode::Internal, e.to_string())))
}

/// An upload's name as the host keeps it: the client's name (1 to 64 letters, digits, `-` or
/// `_`) behind a tag of the credential that started it, so that no other credential can resume,
/// commit or cancel it, and two credentials' uploads to one file never share a temporary file.
fn scoped_upload(owner: &str, upload: &str) -> Result<String, Failure> {
    let well_named =
        (1..=64).contains(&upload.len()) && upload.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !well_named {
        return Err(Failure::new(ErrorCode::BadRequest, "an upload's name is 1 to 64 letters, digits, - or _"));
    }
    let mut tag = tether_protocol::file::FileDigest::new();
    tag.update(owner.as_bytes());
    Ok(format!("{}-{upload}", &tag.finish()[..16]))
}
