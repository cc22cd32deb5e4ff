//! `tether cp`: files between this machine and a host, like scp. Every file is tried (a failure
//! is said and counted, the rest go on); one connection per host for the run, made again when it
//! is lost; an upload or download cut off goes on from where it stopped
//! (`tether_protocol::transfer` plans both).
//!
//! Invariant: a host is not trusted with this machine's files. A download is named after what
//! the user asked for; below it, only names that pass `fs::check_listing` are taken, and every
//! file, directory and link is made through `LocalDir` (relative to the opened DST, never
//! through a symlink).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

use futures_util::stream::{FuturesOrdered, StreamExt};
use serde_json::json;
use tether_protocol::api::{Request, Response};
use tether_protocol::client::Ending;
use tether_protocol::file::FILE_CHUNK_BYTES;
use tether_protocol::fs::{self, FsRequest, FsResponse, Kind, MAX_CHUNK_BYTES};
use tether_protocol::transfer::{self, Download, Upload};

use super::local_dir::LocalDir;
use super::{call_fs, list, resolve, Location};
use crate::cli::hosts::dial;
use crate::cli::progress::Progress;
use crate::escapes::printable;
use crate::paths::StateDir;
use crate::reach::agent::Agent;
use crate::reach::stream::OutputEvent;

/// A lost link is made again this many times before `cp` gives up.
const RECONNECTS: u32 = 8;

/// `tether cp [-r] SRC… DST`
pub async fn cp(
    state: &StateDir,
    sources: Vec<String>,
    target: String,
    recursive: bool,
    json: bool,
) -> Result<ExitCode, String> {
    let target = Location::parse(&target);
    let copy = Copier { state, recursive, json, failures: Cell::new(0), links: Default::default() };
    for source in &sources {
        match (Location::parse(source), &target) {
            (Location::Here(from), Location::Host { host, path }) => {
                let to = into_dir(path, &from.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
                copy.upload(host, &from, &to).await;
            }
            (Location::Host { host, path: from }, Location::Here(to)) => copy.download(&host, &from, to).await,
            _ => copy.failed(source, "one side of cp must be on a host (HOST:PATH) and the other here"),
        }
    }
    let failed = copy.failures.get() > 0;
    copy.close().await;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// A remote DST ending in `/` (or empty: the home directory) is a directory to copy into.
fn into_dir(to: &str, name: &str) -> String {
    match to.is_empty() || to.ends_with('/') {
        true => fs::join(to, name),
        false => to.to_owned(),
    }
}

/// One `cp` run: every file is tried; each failure is said and counted, and the rest go on.
struct Copier<'a> {
    state: &'a StateDir,
    recursive: bool,
    json: bool,
    failures: Cell<u32>,
    /// One connection per host for the whole run (a handshake per file would cost more than a
    /// small file's bytes), made again when it is lost.
    links: RefCell<HashMap<String, Rc<Agent>>>,
}

impl Copier<'_> {
    /// The connection to `host`: the one this run has, or a new one (with back-off while the
    /// relay or host cannot be reached).
    async fn agent(&self, host: &str) -> Result<Rc<Agent>, String> {
        if let Some(agent) = self.links.borrow().get(host).filter(|agent| !agent.link_lost()) {
            return Ok(agent.clone());
        }
        let link = resolve(self.state, host)?;
        let mut attempt = 0;
        loop {
            match dial(self.state, &link).await {
                Ok(agent) => {
                    let agent = Rc::new(agent);
                    self.links.borrow_mut().insert(host.to_owned(), agent.clone());
                    return Ok(agent);
                }
                Err(Ending::Lost(e)) if attempt < RECONNECTS => {
                    attempt += 1;
                    backoff(attempt, &e).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Say goodbye on every connection the run made.
    async fn close(self) {
        for (_, agent) in self.links.into_inner() {
            if let Ok(agent) = Rc::try_unwrap(agent) {
                agent.close().await;
            }
        }
    }

    fn failed(&self, what: &str, why: &str) {
        eprintln!("tether: {}: {}", printable(what), printable(why));
        self.failures.set(self.failures.get() + 1);
    }

    fn copied(&self, from: &str, to: &str, bytes: u64) {
        if self.json {
            println!("{}", json!({ "from": from, "to": to, "bytes": bytes }));
        }
    }

    async fn upload(&self, host: &str, from: &Path, to: &str) {
        let shown = from.display().to_string();
        if from.file_name().is_some_and(|n| n.to_str().is_none()) {
            return self.failed(&shown, "name not valid UTF-8; not copied");
        }
        let meta = match std::fs::symlink_metadata(from) {
            Ok(meta) => meta,
            Err(e) => return self.failed(&shown, &e.to_string()),
        };
        if meta.file_type().is_symlink() {
            let target = match std::fs::read_link(from).map(|t| t.to_str().map(str::to_owned)) {
                Ok(Some(target)) => target,
                Ok(None) => return self.failed(&shown, "link target not valid UTF-8; not copied"),
                Err(e) => return self.failed(&shown, &e.to_string()),
            };
            let link = FsRequest::Symlink { path: to.to_owned(), target };
            return match self.one_call(host, link).await {
                Ok(_) => self.copied(&shown, &format!("{host}:{to}"), 0),
                Err(e) => self.failed(&shown, &e),
            };
        }
        if meta.is_dir() {
            if !self.recursive {
                return self.failed(&shown, "is a directory (use -r)");
            }
            if let Err(e) = self.one_call(host, FsRequest::Mkdir { path: to.to_owned(), parents: true }).await {
                return self.failed(&shown, &e);
            }
            let mut items: Vec<_> = match std::fs::read_dir(from) {
                Ok(items) => items.flatten().collect(),
                Err(e) => return self.failed(&shown, &e.to_string()),
            };
            items.sort_by_key(|i| i.file_name());
            for item in items {
                let child = fs::join(to, &item.file_name().to_string_lossy());
                Box::pin(self.upload(host, &item.path(), &child)).await;
            }
            return;
        }
        match self.upload_file(host, from, to).await {
            Ok(size) => self.copied(&shown, &format!("{host}:{to}"), size),
            Err(e) => self.failed(&shown, &e),
        }
    }

    /// One request on a connection of its own.
    async fn one_call(&self, host: &str, request: FsRequest) -> Result<FsResponse, String> {
        call_fs(&*self.agent(host).await?, request, Vec::new()).await
    }

    /// `cp HOST:FROM TO`: TO names the copy, or is a directory to copy into, and then the copy
    /// is named after the last part of FROM as the user wrote it — never after the host's answer.
    async fn download(&self, host: &str, from: &str, to: &Path) {
        let shown = format!("{host}:{from}");
        let (dir, name) = if to.is_dir() {
            match last_name(from) {
                Some(name) => (to.to_path_buf(), name),
                None => return self.failed(&shown, "name the copy (DST/NAME)"),
            }
        } else {
            let parent = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            match to.file_name().and_then(|n| n.to_str()) {
                Some(name) => (parent.to_path_buf(), name.to_owned()),
                None => return self.failed(&to.display().to_string(), "not a name this machine can use here"),
            }
        };
        match LocalDir::open(&dir) {
            Ok(dir) => self.download_into(host, from, &dir, &name, true).await,
            Err(e) => self.failed(&dir.display().to_string(), &e.to_string()),
        }
    }

    /// Copy `from` to `name` in `dir`. Only `top` (what the user named) may be a link followed on
    /// the host; below it, links are made as links, directories are entered only when they are
    /// directories here too (never a link in their place), and names come from a checked listing.
    async fn download_into(&self, host: &str, from: &str, dir: &LocalDir, name: &str, top: bool) {
        let shown = format!("{host}:{from}");
        let entry = match self.one_call(host, FsRequest::Stat { path: from.to_owned() }).await {
            Ok(FsResponse::Entry { entry }) => entry,
            Ok(_) => return self.failed(&shown, "unexpected answer to stat"),
            Err(e) => return self.failed(&shown, &e),
        };
        let here = dir.shown(name);
        match (entry.kind, &entry.target) {
            (Kind::Symlink, Some(target)) if !top || self.recursive => {
                return match dir.symlink(target, name) {
                    Ok(()) => self.copied(&shown, &here, 0),
                    Err(e) => self.failed(&here, &e.to_string()),
                };
            }
            _ => {}
        }
        if entry.is_dir_like() {
            if !self.recursive {
                return self.failed(&shown, "is a directory (use -r)");
            }
            let listed = match self.agent(host).await {
                Ok(agent) => list(&agent, from).await,
                Err(e) => Err(e),
            };
            let (mut entries, refused) = match listed {
                Ok(entries) => fs::check_listing(entries),
                Err(e) => return self.failed(&shown, &e),
            };
            for (bad, why) in refused {
                self.failed(&format!("{shown}: {bad}"), &format!("refused from the host: {why}"));
            }
            let sub = match dir.subdir(name) {
                Ok(sub) => sub,
                Err(e) => return self.failed(&here, &e.to_string()),
            };
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for child in entries {
                if child.raw_name.is_some() {
                    self.failed(&fs::join(&shown, &child.name), "name not valid UTF-8; not copied");
                    continue;
                }
                Box::pin(self.download_into(host, &fs::join(from, &child.name), &sub, &child.name, false)).await;
            }
            return;
        }
        match self.download_file(host, from, dir, name).await {
            Ok(size) => self.copied(&shown, &here, size),
            Err(e) => self.failed(&shown, &e),
        }
    }

    /// Upload one file, going on from the host's offset after a lost link; its size.
    async fn upload_file(&self, host: &str, from: &Path, to: &str) -> Result<u64, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(from).map_err(|e| e.to_string())?;
        let upload = upload_key(from, to, &meta);
        let mut attempt = 0;
        loop {
            let agent = self.agent(host).await?;
            match send_file(&agent, from, to, &upload, meta.len(), meta.permissions().mode() & 0o777).await {
                Ok(()) => return Ok(meta.len()),
                Err(e) if attempt < RECONNECTS && agent.link_lost() => {
                    attempt += 1;
                    backoff(attempt, &e).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Download one file into a partial file beside `name` (never through a link), going on
    /// from the bytes it has after a lost link, then rename it to `name`.
    async fn download_file(&self, host: &str, from: &str, dir: &LocalDir, name: &str) -> Result<u64, String> {
        let partial = format!(".{name}.tether-download");
        let mut attempt = 0;
        loop {
            let (file, have) = dir.append(&partial).map_err(|e| format!("{}: {e}", dir.shown(&partial)))?;
            let (got, lost) = match self.agent(host).await {
                Ok(agent) => (receive_file(&agent, from, file, have, &dir.shown(&partial)).await, agent.link_lost()),
                Err(e) => (Err(e), false),
            };
            match got {
                Ok(size) => {
                    dir.rename(&partial, name).map_err(|e| e.to_string())?;
                    return Ok(size);
                }
                Err(e) if attempt < RECONNECTS && lost => {
                    attempt += 1;
                    backoff(attempt, &e).await;
                }
                Err(e) => {
                    let _ = dir.remove(&partial);
                    return Err(e);
                }
            }
        }
    }
}

/// The last part of a host path as the user wrote it (`a/b/` → `b`), when it can name a copy.
fn last_name(from: &str) -> Option<String> {
    let name = from.trim_end_matches('/').rsplit('/').next()?;
    fs::check_name(name).ok().map(|()| name.to_owned())
}

/// A name for an upload the host can find again after a lost link: this file, its size and
/// mtime, and where it goes.
fn upload_key(from: &Path, to: &str, meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let modified = meta.mtime_nsec() + meta.mtime() * 1_000_000_000;
    transfer::upload_key(to, meta.len(), &format!("{}\0{modified}", from.display()))
}

async fn backoff(attempt: u32, why: &str) {
    let wait = std::time::Duration::from_millis(200u64 << attempt.min(6));
    eprintln!("tether: {why}; trying again in {} ms", wait.as_millis());
    tokio::time::sleep(wait).await;
}

async fn send_file(agent: &Agent, from: &Path, to: &str, upload: &str, size: u64, mode: u32) -> Result<(), String> {
    let write = FsRequest::Write {
        path: to.to_owned(),
        size,
        upload: upload.to_owned(),
        overwrite: true,
        mode: Some(mode),
        base: None,
    };
    let FsResponse::Writing { offset, .. } = call_fs(agent, write, Vec::new()).await? else {
        return Err("unexpected answer to write".into());
    };
    let mut file = std::fs::File::open(from).map_err(|e| e.to_string())?;
    let mut plan = Upload::new(upload, size, offset);
    let mut progress = Progress::new(to, size, offset);
    let mut confirmed = offset;
    let mut buffer = vec![0u8; MAX_CHUNK_BYTES];
    let mut in_flight = FuturesOrdered::new();
    let mut chunks = Vec::new();
    while !plan.is_sent() {
        // 64 KiB chunks: bigger ones measured slower and put more time in front of keystrokes.
        match plan.next_read(FILE_CHUNK_BYTES as u64) {
            Some((start, end)) => {
                let n = fill(&mut file, &mut buffer[..(end - start) as usize]).map_err(|e| e.to_string())?;
                if let Some(chunk) = plan.read(&buffer[..n])? {
                    chunks.push((Request::Fs(chunk), buffer[..n].to_vec()));
                }
            }
            // The window is full, or everything is read: what the planner let us read goes out
            // together (sealed side by side); then wait for the oldest answer.
            None => {
                for pending in agent.call_all(std::mem::take(&mut chunks)).await {
                    in_flight.push_back(async move {
                        match pending.answer().await? {
                            (Response::Fs(answer), _) => Ok(answer),
                            (other, _) => Err(format!("unexpected answer {other:?}")),
                        }
                    });
                }
                if let Some(answer) = in_flight.next().await {
                    answer.inspect_err(|_| progress.finish(confirmed))?;
                    confirmed = plan.answered();
                    progress.update(confirmed);
                }
            }
        }
    }
    progress.finish(size);
    call_fs(agent, plan.commit(), Vec::new()).await?;
    Ok(())
}

/// The bytes of `from` after the `have` already in `file` (opened for appending); its size.
async fn receive_file(agent: &Agent, from: &str, mut file: File, have: u64, partial: &str) -> Result<u64, String> {
    use std::io::Write;
    let mut plan = Download::resuming(have);
    let (answer, mut events) = agent.open_fs_stream(&Request::Fs(plan.request(from))).await?;
    let FsResponse::Reading { size, .. } = answer else { return Err("unexpected answer to read".into()) };
    if let Err(e) = plan.started(size) {
        file.set_len(0).map_err(|e| e.to_string())?;
        return Err(format!("{from}: {e}"));
    }
    let mut progress = Progress::new(from, size, have);
    let ended = loop {
        match events.recv().await {
            Some(OutputEvent::Data { bytes }) => {
                file.write_all(&bytes).map_err(|e| format!("{partial}: {e}"))?;
                progress.update(plan.received(bytes.len() as u64));
            }
            Some(OutputEvent::Eof) => break Ok(()),
            Some(OutputEvent::Skipped { .. }) => break Err("bytes were skipped".to_owned()),
            None => break Err(agent.lost_reason()),
        }
    };
    progress.finish(plan.got());
    ended?;
    file.sync_all().map_err(|e| e.to_string())?;
    plan.finished().map_err(|e| format!("{from}: {e}"))
}

/// Read until `buffer` is full or the file ends; the bytes read.
fn fill(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match std::io::Read::read(file, &mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
