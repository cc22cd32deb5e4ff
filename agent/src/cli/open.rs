//! `tether open FILE…`: from a session's terminal on the host, open files in the editor of the
//! browsers showing that session. The session is the one the shell runs in (`TETHER_SESSION`,
//! set by the agent for every session); the daemon passes the paths to those browsers, which
//! open them through the file service like any other file (its files root still applies).

use std::path::PathBuf;
use std::process::ExitCode;

use tether_protocol::api::{Request, Response};

use crate::paths::StateDir;
use crate::reach::local::LocalClient;

/// What the agent sets in every session's environment.
const SESSION_ENV: &str = "TETHER_SESSION";

pub async fn run(state: &StateDir, files: Vec<PathBuf>) -> Result<ExitCode, String> {
    let session = std::env::var(SESSION_ENV)
        .map_err(|_| format!("open works in a terminal of a tether session ({SESSION_ENV} is not set here)"))?;
    let mut paths = Vec::with_capacity(files.len());
    for file in &files {
        // Absolute, as this shell sees it (its cwd); the browser may be anywhere.
        let path = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => return Err(format!("{}: is a directory", file.display())),
            // A FIFO or a device would never end for the editors it is pushed to.
            Ok(meta) if !meta.is_file() => {
                return Err(format!("{}: not a regular file (a FIFO, socket or device)", file.display()))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
        let path = path.into_os_string().into_string().map_err(|p| {
            format!("{}: the name is not valid UTF-8, so a browser cannot ask for it", PathBuf::from(p).display())
        })?;
        paths.push(path);
    }
    let client = LocalClient::connect(state, false).await?;
    match client.call(&Request::OpenFiles { session: session.clone(), paths }, Vec::new()).await? {
        (Response::Opened { browsers: 0 }, _) => Err(format!(
            "no browser is showing session {session}: open it in the web app first (the files were not opened)"
        )),
        (Response::Opened { .. }, _) => Ok(ExitCode::SUCCESS),
        (Response::Error { message, .. }, _) => Err(message),
        (other, _) => Err(format!("unexpected answer {other:?}")),
    }
}
