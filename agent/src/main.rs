//! `tether`: the host agent and the CLI in one binary.
//!
//! `tether daemon` runs the agent (the `host` wing); every other command is a client (the `cli`
//! wing) that reaches an agent through `reach`: this machine's over the Unix socket in the state
//! dir, starting it on demand, or a paired host's through a relay (`-H`).

mod cli;
mod dir;
mod direct;
mod escapes;
mod host;
mod ipc;
mod paths;
mod random;
mod reach;
mod time;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::args::{Cli, Command, DaemonOptions};
use crate::paths::StateDir;
use crate::reach::local::LocalClient;

fn main() -> ExitCode {
    let cli = Cli::parse();
    reach::relay::say_paths(cli.verbose);
    let state = match StateDir::from_env() {
        Ok(state) => state,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(dispatch(cli.command, cli.host, state));
    // A blocking read of stdin (attach, exec) may still wait for a key that never comes: exit
    // without waiting for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    // Error text may come from a host: never let it drive the terminal.
    eprintln!("tether: {}", escapes::printable(message));
    ExitCode::FAILURE
}

async fn dispatch(command: Command, host: Option<String>, state: StateDir) -> Result<ExitCode, String> {
    match command {
        Command::Exec { invite, invite_stdin, timeout, command } => {
            cli::exec::run(&state, invite.or(host), invite_stdin, timeout, command).await
        }
        Command::Hosts { action } => cli::hosts::run(&state, action).await,
        Command::Fs { action } => cli::files::fs(&state, action).await,
        Command::Cp { recursive, json, mut paths } => {
            let target = paths.pop().unwrap_or_default();
            cli::files::cp(&state, paths, target, recursive, json).await
        }
        Command::Session(command) => {
            let agent = cli::hosts::dial(&state, &cli::hosts::resolve(&state, host.as_deref())?).await?;
            let result = cli::sessions::run(&agent, command).await;
            agent.close().await;
            result
        }
        Command::Notify { action } => cli::notify::run(&state, host.as_deref(), action).await,
        _ if host.is_some() => {
            Err("-H/--host applies to session commands (start, ls, attach, send, logs, stop) and exec".into())
        }
        Command::Daemon { detach: false, action: None, options } => {
            let config = daemon_config(&state, &options)?;
            host::server::run(state, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { detach: true, action: None, options } => cli::daemon::start(&state, &options).await,
        Command::Daemon { action: Some(action), .. } => cli::daemon::control(&state, action).await,
        Command::Service { action } => cli::service::run(&state, action).await,
        Command::Skill => {
            print!("{}", cli::skill::SKILL);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "tether", &mut script);
            print_all(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            man.render(&mut page).map_err(|e| format!("cannot make the manual: {e}"))?;
            print_all(&page)
        }
        Command::Pair {
            relay,
            name,
            ephemeral,
            idle_timeout,
            json,
            files_root,
            no_files,
            no_webrtc,
            webrtc,
            grant,
        } => {
            let webrtc = (no_webrtc || webrtc).then_some(webrtc);
            let grant = grant.into();
            let options = cli::sharing::PairOptions {
                relay,
                name,
                ephemeral,
                idle_timeout,
                json,
                files_root,
                no_files,
                webrtc,
                grant,
            };
            cli::sharing::pair(&LocalClient::connect(&state, true).await?, options).await
        }
        Command::Share { relay, json, grant } => {
            // A lasting invite with a grant, nothing else changed.
            let options = cli::sharing::PairOptions { relay, json, grant: grant.into(), ..Default::default() };
            cli::sharing::pair(&LocalClient::connect(&state, true).await?, options).await
        }
        Command::Invites { action } => cli::sharing::invites(&LocalClient::connect(&state, true).await?, action).await,
        Command::Devices { action } => cli::devices::run(&LocalClient::connect(&state, true).await?, action).await,
        Command::Passwd { stdin, remove } => {
            cli::sharing::passwd(&LocalClient::connect(&state, true).await?, stdin, remove).await
        }
        Command::Open { files } => cli::open::run(&state, files).await,
    }
}

/// Write `bytes` to stdout; a reader that stopped early (`| head`) is no error.
fn print_all(bytes: &[u8]) -> Result<ExitCode, String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write: {e}")),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// config.toml with the command line's overrides.
fn daemon_config(state: &StateDir, options: &DaemonOptions) -> Result<host::config::Config, String> {
    let mut config = host::config::Config::load(state)?;
    if let Some(bytes) = options.ring_bytes {
        config.ring_bytes = bytes;
    }
    if let Some(max) = options.max_running {
        config.max_running_sessions = max;
    }
    if let Some(quiet) = options.prompt_quiet {
        config.prompt_quiet_ms = quiet.as_millis() as u64;
    }
    if let Some(hook) = &options.notify_hook {
        config.notify_hook = Some(hook.clone());
    }
    Ok(config)
}
