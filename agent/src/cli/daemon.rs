//! `tether daemon --detach | status | stop`: the agent on this machine, seen from outside.
//! (`tether daemon` in the foreground runs the host wing itself; see `main`.)

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tether_protocol::api::{Request, Response};

use crate::cli::args::{DaemonAction, DaemonOptions};
use crate::paths::StateDir;
use crate::reach::local::{spawn_daemon, wait_for_socket, LocalClient};

/// How long `daemon stop` waits beyond the grace period for the daemon to be gone.
const STOP_SLACK: Duration = Duration::from_secs(10);
/// How often `daemon stop` looks whether the daemon is gone.
const STOP_POLL: Duration = Duration::from_millis(20);
/// `daemon status` exit code when none runs (as LSB init scripts: "not running").
const EXIT_NOT_RUNNING: u8 = 3;

/// Start the daemon in the background (unless one runs) and return once it answers.
pub async fn start(state: &StateDir, options: &DaemonOptions) -> Result<ExitCode, String> {
    if LocalClient::connect(state, false).await.is_err() {
        spawn_daemon(state, &options.to_args())?;
        wait_for_socket(state).await?;
    }
    println!("tether daemon running ({})", state.root().display());
    Ok(ExitCode::SUCCESS)
}

pub async fn control(state: &StateDir, action: DaemonAction) -> Result<ExitCode, String> {
    match action {
        DaemonAction::Status => status(state).await,
        DaemonAction::Stop { grace } => stop(state, grace).await,
    }
}

async fn status(state: &StateDir) -> Result<ExitCode, String> {
    let Ok(client) = LocalClient::connect(state, false).await else {
        println!("tether daemon not running ({})", state.root().display());
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    };
    if let (Response::Daemon { pid, version, state_dir, running, total, relays }, _) =
        client.call(&Request::DaemonStatus, Vec::new()).await?
    {
        println!(
            "tether daemon {version} running (pid {pid}), {running} running / {total} sessions, state {state_dir}"
        );
        for link in &relays {
            println!("  {}", describe_link(link));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One relay link in words: `linked to URL since …` or `not linked to URL since … (why)`.
pub fn describe_link(link: &tether_protocol::api::RelayLink) -> String {
    let since = crate::time::format_time(link.since_ms);
    match (&link.why, link.linked) {
        (_, true) => format!("linked to {} since {since} UTC", link.relay),
        (Some(why), false) => {
            format!("not linked to {} since {since} UTC ({}); retrying", link.relay, crate::escapes::printable(why))
        }
        (None, false) => format!("not linked to {} since {since} UTC; retrying", link.relay),
    }
}

async fn stop(state: &StateDir, grace: Duration) -> Result<ExitCode, String> {
    let Ok(client) = LocalClient::connect(state, false).await else {
        println!("tether daemon not running");
        return Ok(ExitCode::SUCCESS);
    };
    // A daemon the service manager runs is stopped through it (else it is restarted at once).
    if let (Response::Daemon { pid, .. }, _) = client.call(&Request::DaemonStatus, Vec::new()).await? {
        if crate::cli::service::stop_if_managing(pid)? {
            println!(
                "tether service stopped (`tether service install` or `systemctl --user start tether` starts it again)"
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    // The daemon may exit before its answer is out: what counts is that it is gone.
    let _ = client.call(&Request::DaemonStop { grace_ms: grace.as_millis() as u64 }, Vec::new()).await;
    drop(client);
    let deadline = Instant::now() + grace + STOP_SLACK;
    while LocalClient::connect(state, false).await.is_ok() {
        if Instant::now() > deadline {
            return Err("the daemon did not stop".into());
        }
        tokio::time::sleep(STOP_POLL).await;
    }
    println!("tether daemon stopped");
    Ok(ExitCode::SUCCESS)
}
