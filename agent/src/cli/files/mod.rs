//! `tether fs` and `tether cp`: a host's files from the command line, like scp and sftp.
//!
//! A remote side is `HOST:PATH`: HOST is an invite, a saved host name or `local` (this machine's
//! daemon). Anything else is a path on this machine.

mod copy;
mod local_dir;

use std::path::PathBuf;
use std::process::ExitCode;

use tether_protocol::api::{Request, Response};
use tether_protocol::fs::{take_pages, Entry, FsRequest, FsResponse, Kind};

pub use copy::cp;

use crate::cli::args::FsAction;
use crate::cli::hosts::dial;
use crate::escapes::printable;
use crate::paths::StateDir;
use crate::reach::agent::Agent;
use crate::reach::stream::OutputEvent;

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
fn resolve(state: &StateDir, host: &str) -> Result<Option<tether_protocol::identity::HostRef>, String> {
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
    let (owner, group) = (printable(&entry.owner), printable(&entry.group));
    format!("{kind}{:04o} {owner:<8} {group:<8} {:>12} {when} {}", entry.mode, entry.size, printable(&name))
}

/// A remote directory's entries, page by page.
async fn list(agent: &Agent, path: &str) -> Result<Vec<Entry>, String> {
    let request = Request::Fs(FsRequest::List { path: path.to_owned() });
    let (_, mut events) = agent.open_fs_stream(&request).await?;
    let (mut buffer, mut entries) = (Vec::new(), Vec::new());
    loop {
        match events.recv().await {
            Some(OutputEvent::Data { bytes }) => {
                buffer.extend_from_slice(&bytes);
                entries.extend(take_pages(&mut buffer)?);
            }
            Some(OutputEvent::Eof) => return Ok(entries),
            Some(OutputEvent::Skipped { .. }) => return Err(format!("{path}: part of the listing was lost")),
            None => return Err(agent.lost_reason()),
        }
    }
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
