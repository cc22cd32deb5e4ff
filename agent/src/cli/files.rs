//! `tether fs` and `tether cp`: a host's files from the command line, like scp and sftp.
//!
//! A remote side is `HOST:PATH`: HOST is an invite, a saved host name or `local` (this machine's
//! daemon). Anything else is a path on this machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use futures_util::stream::{FuturesOrdered, StreamExt};
use serde_json::json;
use tether_protocol::api::{Request, Response};
use tether_protocol::file::FILE_CHUNK_BYTES;
use tether_protocol::fs::{self, take_pages, Entry, FsRequest, FsResponse, Kind, MAX_CHUNK_BYTES};
use tether_protocol::transfer::{self, Download, Upload};

use crate::cli::args::FsAction;
use crate::cli::hosts::dial;
use crate::cli::progress::Progress;
use crate::paths::StateDir;
use crate::reach::agent::Agent;
use crate::reach::stream::StreamEvent;
use tether_protocol::client::Ending;

/// A lost link is made again this many times before `cp` gives up.
const RECONNECTS: u32 = 8;

/// Where a `cp`/`fs` argument points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Here(PathBuf),
    Host { host: String, path: String },
}

impl Location {
    /// `https://RELAY/#ID.SECRET:PATH`, `NAME:PATH`, `local:PATH`, or a local path (a colon
    /// after a slash, as in `./a:b`, is part of a local name, as with scp).
    pub fn parse(arg: &str) -> Location {
        if let Some(hash) = arg.find('#').filter(|_| arg.starts_with("http://") || arg.starts_with("https://")) {
            return match arg[hash..].find(':') {
                Some(colon) => {
                    Location::Host { host: arg[..hash + colon].into(), path: arg[hash + colon + 1..].into() }
                }
                None => Location::Host { host: arg.into(), path: String::new() },
            };
        }
        match arg.find(':') {
            Some(colon) if colon > 0 && !arg[..colon].contains('/') => {
                Location::Host { host: arg[..colon].into(), path: arg[colon + 1..].into() }
            }
            _ => Location::Here(PathBuf::from(arg)),
        }
    }
}

async fn connect(state: &StateDir, host: &str) -> Result<Agent, String> {
    Ok(dial(state, &resolve(state, host)?).await?)
}

/// The way to HOST of `HOST:PATH`; `local` is this machine's daemon.
fn resolve(state: &StateDir, host: &str) -> Result<Option<tether_protocol::identity::Link>, String> {
    crate::cli::hosts::resolve(state, Some(host).filter(|h| *h != "local"))
}

async fn call_fs(agent: &Agent, request: FsRequest, payload: Vec<u8>) -> Result<FsResponse, String> {
    match agent.call(&Request::Fs(request), payload).await? {
        (Response::Fs(answer), _) => Ok(answer),
        (other, _) => Err(format!("unexpected answer {other:?}")),
    }
}

fn remote(arg: &str) -> Result<(String, String), String> {
    match Location::parse(arg) {
        Location::Host { host, path } => Ok((host, path)),
        Location::Here(_) => Err(format!("{arg}: say which host (HOST:PATH, or local:PATH for this machine)")),
    }
}

/// `tether fs ACTION HOST:PATH…`
pub async fn fs(state: &StateDir, action: FsAction) -> Result<ExitCode, String> {
    let (target, json) = match &action {
        FsAction::Ls { path, json, .. } | FsAction::Stat { path, json } => (path.clone(), *json),
        FsAction::Mkdir { path, .. } | FsAction::Rm { path, .. } | FsAction::Chmod { path, .. } => {
            (path.clone(), false)
        }
        FsAction::Mv { from, .. } => (from.clone(), false),
        FsAction::Restore { host, .. } => (format!("{host}:"), false),
    };
    let (host, path) = remote(&target)?;
    let agent = connect(state, &host).await?;
    let done = run_fs(&agent, action, path, json).await;
    agent.close().await;
    done.map(|()| ExitCode::SUCCESS)
}

async fn run_fs(agent: &Agent, action: FsAction, path: String, json: bool) -> Result<(), String> {
    match action {
        FsAction::Ls { all, .. } => {
            let mut entries = list(agent, &path).await?;
            entries.retain(|e| all || !e.name.starts_with('.'));
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for entry in &entries {
                match json {
                    true => println!("{}", serde_json::to_string(entry).unwrap_or_default()),
                    false => println!("{}", ls_line(entry)),
                }
            }
        }
        FsAction::Stat { .. } => {
            let FsResponse::Entry { entry } = call_fs(agent, FsRequest::Stat { path }, Vec::new()).await? else {
                return Err("unexpected answer to stat".into());
            };
            match json {
                true => println!("{}", serde_json::to_string(&entry).unwrap_or_default()),
                false => println!("{}", ls_line(&entry)),
            }
        }
        FsAction::Mkdir { parents, .. } => {
            call_fs(agent, FsRequest::Mkdir { path, parents }, Vec::new()).await?;
        }
        FsAction::Mv { to, overwrite, .. } => {
            let (_, to) = remote(&to)?;
            call_fs(agent, FsRequest::Rename { from: path, to, overwrite }, Vec::new()).await?;
        }
        FsAction::Rm { permanent, .. } => {
            if let FsResponse::Trashed { trash_id } =
                call_fs(agent, FsRequest::Delete { path, permanent }, Vec::new()).await?
            {
                eprintln!("moved to the host's trash; undo with: tether fs restore HOST {trash_id}");
            }
        }
        FsAction::Chmod { mode, .. } => {
            let mode = u32::from_str_radix(&mode, 8).map_err(|_| format!("{mode}: not an octal mode"))?;
            call_fs(agent, FsRequest::Chmod { path, mode }, Vec::new()).await?;
        }
        FsAction::Restore { trash_id, .. } => {
            if let FsResponse::Done { path } = call_fs(agent, FsRequest::Restore { trash_id }, Vec::new()).await? {
                println!("{path}");
            }
        }
    }
    Ok(())
}

fn ls_line(entry: &Entry) -> String {
    let kind = match entry.kind {
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::File => '-',
        Kind::Other => '?',
    };
    let when = crate::time::format_time(entry.mtime_ms.max(0) as u64);
    let name = match (&entry.raw_name, &entry.target) {
        (Some(raw), _) => format!("{} (not UTF-8: hex {raw})", entry.name),
        (None, Some(target)) => format!("{} -> {target}", entry.name),
        (None, None) => entry.name.clone(),
    };
    format!("{kind}{:04o} {:<8} {:<8} {:>12} {when} {name}", entry.mode, entry.owner, entry.group, entry.size)
}

/// A remote directory's entries, page by page.
async fn list(agent: &Agent, path: &str) -> Result<Vec<Entry>, String> {
    let request = Request::Fs(FsRequest::List { path: path.to_owned() });
    let (_, mut events) = agent.open_fs_stream(&request).await?;
    let (mut buffer, mut entries) = (Vec::new(), Vec::new());
    loop {
        match events.recv().await {
            Some(StreamEvent::Data { bytes }) => {
                buffer.extend_from_slice(&bytes);
                entries.extend(take_pages(&mut buffer)?);
            }
            Some(StreamEvent::Eof) => return Ok(entries),
            Some(StreamEvent::Skipped { .. }) => return Err(format!("{path}: part of the listing was lost")),
            None => return Err(agent.lost_reason()),
        }
    }
}

/// `tether cp [-r] SRC… DST`
pub async fn cp(
    state: &StateDir,
    sources: Vec<String>,
    target: String,
    recursive: bool,
    json: bool,
) -> Result<ExitCode, String> {
    let target = Location::parse(&target);
    let copy = Copier { state, recursive, json, failures: std::cell::Cell::new(0), links: Default::default() };
    for source in &sources {
        match (Location::parse(source), &target) {
            (Location::Here(from), Location::Host { host, path }) => {
                let to = into_dir(path, &from.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
                copy.upload(host, &from, &to).await;
            }
            (Location::Host { host, path: from }, Location::Here(to)) => copy.download(&host, &from, to, true).await,
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
    failures: std::cell::Cell<u32>,
    /// One connection per host for the whole run (a handshake per file would cost more than a
    /// small file's bytes), made again when it is lost.
    links: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<Agent>>>,
}

impl Copier<'_> {
    /// The connection to `host`: the one this run has, or a new one (with back-off while the
    /// relay or host cannot be reached).
    async fn agent(&self, host: &str) -> Result<std::rc::Rc<Agent>, String> {
        if let Some(agent) = self.links.borrow().get(host).filter(|agent| !agent.link_lost()) {
            return Ok(agent.clone());
        }
        let link = resolve(self.state, host)?;
        let mut attempt = 0;
        loop {
            match dial(self.state, &link).await {
                Ok(agent) => {
                    let agent = std::rc::Rc::new(agent);
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
            if let Ok(agent) = std::rc::Rc::try_unwrap(agent) {
                agent.close().await;
            }
        }
    }

    fn failed(&self, what: &str, why: &str) {
        eprintln!("tether: {what}: {why}");
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

    /// `top`: the path as given (a DST that is a directory takes the entry's name).
    async fn download(&self, host: &str, from: &str, to: &Path, top: bool) {
        let shown = format!("{host}:{from}");
        let entry = match self.one_call(host, FsRequest::Stat { path: from.to_owned() }).await {
            Ok(FsResponse::Entry { entry }) => entry,
            Ok(_) => return self.failed(&shown, "unexpected answer to stat"),
            Err(e) => return self.failed(&shown, &e),
        };
        if entry.raw_name.is_some() {
            return self.failed(&shown, "name not valid UTF-8; not copied");
        }
        let to = if top && to.is_dir() { to.join(&entry.name) } else { to.to_path_buf() };
        match (entry.kind, &entry.target) {
            (Kind::Symlink, Some(target)) if !top || self.recursive => {
                return match std::os::unix::fs::symlink(target, &to) {
                    Ok(()) => self.copied(&shown, &to.display().to_string(), 0),
                    Err(e) => self.failed(&shown, &e.to_string()),
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
            let mut entries = match listed {
                Ok(entries) => entries,
                Err(e) => return self.failed(&shown, &e),
            };
            if let Err(e) = std::fs::create_dir_all(&to) {
                return self.failed(&to.display().to_string(), &e.to_string());
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for child in entries {
                if child.raw_name.is_some() {
                    self.failed(&fs::join(&shown, &child.name), "name not valid UTF-8; not copied");
                    continue;
                }
                Box::pin(self.download(host, &fs::join(from, &child.name), &to.join(&child.name), false)).await;
            }
            return;
        }
        match self.download_file(host, from, &to).await {
            Ok(size) => self.copied(&shown, &to.display().to_string(), size),
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

    /// Download one file into a temporary file beside `to`, going on from the bytes it has
    /// after a lost link, then rename.
    async fn download_file(&self, host: &str, from: &str, to: &Path) -> Result<u64, String> {
        let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = to.with_file_name(format!(".{name}.tether-download"));
        let mut attempt = 0;
        loop {
            let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            let (got, lost) = match self.agent(host).await {
                Ok(agent) => (receive_file(&agent, from, &partial, have).await, agent.link_lost()),
                Err(e) => (Err(e), false),
            };
            match got {
                Ok(size) => {
                    std::fs::rename(&partial, to).map_err(|e| e.to_string())?;
                    return Ok(size);
                }
                Err(e) if attempt < RECONNECTS && lost => {
                    attempt += 1;
                    backoff(attempt, &e).await;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
            }
        }
    }
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
    while !plan.is_sent() {
        // 64 KiB chunks: bigger ones measured slower and put more time in front of keystrokes.
        match plan.next_read(FILE_CHUNK_BYTES as u64) {
            Some((start, end)) => {
                let n = fill(&mut file, &mut buffer[..(end - start) as usize]).map_err(|e| e.to_string())?;
                if let Some(chunk) = plan.read(&buffer[..n])? {
                    in_flight.push_back(call_fs(agent, chunk, buffer[..n].to_vec()));
                }
            }
            // The window is full, or everything is read: wait for the oldest answer.
            None => {
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

async fn receive_file(agent: &Agent, from: &str, partial: &Path, have: u64) -> Result<u64, String> {
    use std::io::Write;
    let mut plan = Download::resuming(have);
    let (answer, mut events) = agent.open_fs_stream(&Request::Fs(plan.request(from))).await?;
    let FsResponse::Reading { size, .. } = answer else { return Err("unexpected answer to read".into()) };
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(partial).map_err(|e| e.to_string())?;
    if let Err(e) = plan.started(size) {
        file.set_len(0).map_err(|e| e.to_string())?;
        return Err(format!("{from}: {e}"));
    }
    let mut progress = Progress::new(from, size, have);
    let ended = loop {
        match events.recv().await {
            Some(StreamEvent::Data { bytes }) => {
                file.write_all(&bytes).map_err(|e| format!("{}: {e}", partial.display()))?;
                progress.update(plan.received(bytes.len() as u64));
            }
            Some(StreamEvent::Eof) => break Ok(()),
            Some(StreamEvent::Skipped { .. }) => break Err("bytes were skipped".to_owned()),
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

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn locations_read_like_scp() {
        let host = |h: &str, p: &str| Location::Host { host: h.into(), path: p.into() };
        assert_eq!(Location::parse("box:notes/a.txt"), host("box", "notes/a.txt"));
        assert_eq!(Location::parse("local:/tmp/x"), host("local", "/tmp/x"));
        assert_eq!(
            Location::parse("https://relay.example/#ID.SECRET:/etc/hosts"),
            host("https://relay.example/#ID.SECRET", "/etc/hosts")
        );
        assert_eq!(Location::parse("http://127.0.0.1:8080/#ID.SECRET"), host("http://127.0.0.1:8080/#ID.SECRET", ""));
        assert_eq!(Location::parse("./a:b"), Location::Here("./a:b".into()));
        assert_eq!(Location::parse("plain.txt"), Location::Here("plain.txt".into()));
    }
}
