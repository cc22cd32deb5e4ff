//! `tether`: the host agent and the CLI in one binary.
//!
//! `tether daemon` runs the agent; every other command is a client that talks to it over the
//! Unix socket in the state dir, starting it on demand.

mod access;
mod attach;
mod client;
mod config;
mod daemon;
mod exec;
mod host;
mod hosts;
mod ipc;
mod logs;
mod notify;
mod password;
mod paths;
mod prompt;
mod qr;
mod relay_link;
mod remote;
mod session;
mod sharing;
mod store;
mod terminal;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tether_protocol::api::{parse_input_chunk, InputChunk, Request, Response, SessionInfo, SessionStatus};

use crate::client::{Client, Transport};
use crate::paths::StateDir;

/// Exit status when `logs --wait-for-prompt` times out (as timeout(1)).
const EXIT_TIMED_OUT: u8 = 124;
/// Default terminal size for detached sessions.
const DEFAULT_COLS: u16 = 120;
const DEFAULT_ROWS: u16 = 32;

#[derive(Parser)]
#[command(name = "tether", version, about = "Persistent terminal sessions you can reach from anywhere")]
struct Cli {
    /// Run the session command on a paired host: its invite (https://RELAY/#HOST.SECRET) or a
    /// name from `tether hosts add`.
    #[arg(short = 'H', long = "host", global = true, env = "TETHER_INVITE", value_name = "INVITE|NAME")]
    host: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (sessions live as long as it does).
    Daemon {
        /// Start in the background and return once it is ready.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        options: DaemonOptions,
        #[command(subcommand)]
        action: Option<DaemonAction>,
    },
    /// Start a session: tether start [--title T] [--cwd DIR] [--detach] -- CMD ARGS…
    Start {
        #[arg(long)]
        title: Option<String>,
        /// Working directory (default: the current one).
        #[arg(long)]
        cwd: Option<String>,
        /// Print the session id instead of attaching.
        #[arg(long, short)]
        detach: bool,
        /// Notify (hook, desktop) when it waits for input or ends.
        #[arg(long, overrides_with = "no_notify")]
        notify: bool,
        /// Do not notify, whatever notify_by_default says.
        #[arg(long)]
        no_notify: bool,
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// List sessions, newest first.
    Ls {
        #[arg(long)]
        json: bool,
        /// Only sessions with this status (repeatable): created running stopping stopped killed failed unknown.
        #[arg(long, value_parser = parse_status)]
        status: Vec<SessionStatus>,
        /// Only sessions whose id, title or command contains TEXT.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Attach this terminal to a session (detach: Ctrl-] then d).
    Attach { id: Option<String> },
    /// Type into a session: text, key:NAME (enter, ctrl+c, up, …), hex:BYTES; stdin when piped.
    Send {
        /// [ID] CHUNK… — with more input after it, a first argument that looks like an id must name
        /// a session; otherwise all arguments go to the newest session.
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a session's output; with several ids, each under a `==> ID <==` header (as tail).
    Logs {
        /// Sessions (default: the newest); with --follow, all of them at once.
        ids: Vec<String>,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Keep colours and other escape sequences.
        #[arg(long)]
        keep_color: bool,
        /// Keep printing new output until the session ends.
        #[arg(long, short)]
        follow: bool,
        /// First wait until the session waits for input (prompt + silence).
        #[arg(long)]
        wait_for_prompt: bool,
        /// Limit for --wait-for-prompt (e.g. 30s, 500ms, 2m).
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Stop a session: SIGTERM to its process group, SIGKILL after the grace period.
    Stop {
        id: Option<String>,
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        grace: Duration,
    },
    /// Print a guide for AI agents driving sessions with these commands.
    Skill,
    /// Run one command on a paired host; exits with its exit code. Ctrl+C interrupts it.
    Exec {
        /// The host's invite (or -H, TETHER_INVITE, --invite-stdin).
        #[arg(value_name = "INVITE")]
        invite: Option<String>,
        /// Read the invite from the first line of stdin (the rest is the command's input).
        #[arg(long)]
        invite_stdin: bool,
        /// Kill the command after this long (exit 124), e.g. 30s, 5m.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Remember hosts by name: add NAME INVITE, ls, rm NAME.
    Hosts {
        #[command(subcommand)]
        action: HostsAction,
    },
    /// Make this machine reachable through a relay and print an invite (and a QR code).
    Pair {
        /// The relay (plain http only for one on this machine).
        #[arg(long, env = "TETHER_RELAY", default_value = "http://127.0.0.1:8080")]
        relay: String,
        /// What clients call this host (kept; default: its hostname).
        #[arg(long)]
        name: Option<String>,
        /// A one-off share: the invite ends when this command does (Ctrl+C) or when nobody has
        /// been connected for --idle-timeout, and the sessions started through it are stopped.
        #[arg(long)]
        ephemeral: bool,
        /// With --ephemeral: end the share after this long without a client (e.g. 30m, 2h).
        #[arg(long, value_parser = parse_duration, default_value = "30m", requires = "ephemeral")]
        idle_timeout: Duration,
        /// Print one JSON object with `invite`, `host_id` and `name`.
        #[arg(long)]
        json: bool,
    },
    /// The ways in to this host: `invites ls`, `invites rm ID` (revokes it at once).
    Invites {
        #[command(subcommand)]
        action: InvitesAction,
    },
    /// Set a password that reaches this host with its address alone (https://RELAY/#HOSTID).
    Passwd {
        /// Read the new password from stdin (its first line) instead of asking twice.
        #[arg(long)]
        stdin: bool,
        /// Remove the password (its connections are closed).
        #[arg(long, conflicts_with = "stdin")]
        remove: bool,
    },
}

/// Flags that override config.toml.
#[derive(clap::Args, Default)]
struct DaemonOptions {
    /// Output kept in memory per session (bytes).
    #[arg(long)]
    ring_bytes: Option<usize>,
    /// Most sessions running at once.
    #[arg(long)]
    max_running: Option<usize>,
    /// Silence after a prompt-like line before a session counts as waiting for input.
    #[arg(long, value_parser = parse_duration)]
    prompt_quiet: Option<Duration>,
    /// Command run when a session needs input or ends (gets SESSION_ID REASON).
    #[arg(long)]
    notify_hook: Option<String>,
}

impl DaemonOptions {
    fn apply(&self, config: &mut config::Config) {
        if let Some(bytes) = self.ring_bytes {
            config.ring_bytes = bytes;
        }
        if let Some(max) = self.max_running {
            config.max_running_sessions = max;
        }
        if let Some(quiet) = self.prompt_quiet {
            config.prompt_quiet_ms = quiet.as_millis() as u64;
        }
        if let Some(hook) = &self.notify_hook {
            config.notify_hook = Some(hook.clone());
        }
    }

    /// The same flags, for a daemon started in the background.
    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(bytes) = self.ring_bytes {
            args.extend(["--ring-bytes".to_owned(), bytes.to_string()]);
        }
        if let Some(max) = self.max_running {
            args.extend(["--max-running".to_owned(), max.to_string()]);
        }
        if let Some(quiet) = self.prompt_quiet {
            args.extend(["--prompt-quiet".to_owned(), format!("{}ms", quiet.as_millis())]);
        }
        if let Some(hook) = &self.notify_hook {
            args.extend(["--notify-hook".to_owned(), hook.clone()]);
        }
        args
    }
}

#[derive(Subcommand)]
enum HostsAction {
    Add { name: String, invite: String },
    Ls,
    Rm { name: String },
}

#[derive(Subcommand)]
enum InvitesAction {
    /// List invites and the password (never their secrets), with how many clients use each.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an invite (its id or a unique prefix) or `password`: its connections close now.
    Rm { id: String },
}

#[derive(Subcommand)]
enum DaemonAction {
    /// Stop the daemon and every session it runs.
    Stop {
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        grace: Duration,
    },
    /// Is it running, and with how many sessions?
    Status,
}

fn parse_status(text: &str) -> Result<SessionStatus, String> {
    SessionStatus::parse(text).ok_or_else(|| {
        let all: Vec<&str> = SessionStatus::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown status {text:?}; one of: {}", all.join(", "))
    })
}

/// `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.find(|c: char| c.is_ascii_alphabetic()).map_or((text, "s"), |i| text.split_at(i));
    let value: f64 = number.trim().parse().map_err(|_| format!("bad duration {text:?}: try 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?}: use ms, s, m or h")),
    };
    if !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("no randomness from /dev/urandom: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let state = match StateDir::from_env() {
        Ok(state) => state,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(run(cli.command, cli.host, state));
    // A blocking read of stdin (attach, exec) may still wait for a key that never comes: exit
    // without waiting for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("tether: {message}");
    ExitCode::FAILURE
}

async fn run(command: Command, host: Option<String>, state: StateDir) -> Result<ExitCode, String> {
    if let Command::Exec { invite, invite_stdin, timeout, command } = command {
        return exec(&state, invite.or(host), invite_stdin, timeout, command).await;
    }
    if let Command::Hosts { action } = command {
        let mut hosts = hosts::Hosts::load(&state)?;
        match action {
            HostsAction::Add { name, invite } => {
                state.create()?;
                hosts.add(&name, &invite)?;
                println!("remembered {name}: tether ls -H {name}");
            }
            HostsAction::Rm { name } => hosts.remove(&name)?,
            HostsAction::Ls => {
                for (name, relay, host_id) in hosts.list() {
                    println!("{name:<16} {host_id}  via {relay}");
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(invite) = host {
        return match command {
            Command::Daemon { .. }
            | Command::Skill
            | Command::Pair { .. }
            | Command::Exec { .. }
            | Command::Hosts { .. } => {
                Err("-H/--host applies to session commands (start, ls, attach, send, logs, stop)".into())
            }
            command => {
                let invite = hosts::Hosts::load(&state)?.resolve(&invite)?;
                let remote = remote::Remote::open(&invite).await?;
                let transport = Transport::Remote(remote::RemoteClient::spawn(remote));
                let result = session_command(&transport, command).await;
                transport.close().await;
                result
            }
        };
    }
    match command {
        Command::Daemon { detach: false, action: None, options } => {
            let mut config = config::Config::load(&state)?;
            options.apply(&mut config);
            daemon::run(state, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { detach: true, action: None, options } => {
            if Client::connect(&state, false).await.is_err() {
                client::spawn_daemon(&state, &options.to_args())?;
                client::wait_for_socket(&state).await?;
            }
            println!("tether daemon running ({})", state.root().display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { action: Some(DaemonAction::Status), .. } => match Client::connect(&state, false).await {
            Ok(client) => {
                if let (Response::Daemon { pid, version, state_dir, running, total }, _) =
                    client.call(&Request::DaemonStatus, Vec::new()).await?
                {
                    println!("tether daemon {version} running (pid {pid}), {running} running / {total} sessions, state {state_dir}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(_) => {
                println!("tether daemon not running ({})", state.root().display());
                Ok(ExitCode::from(3))
            }
        },
        Command::Daemon { action: Some(DaemonAction::Stop { grace }), .. } => {
            let Ok(client) = Client::connect(&state, false).await else {
                println!("tether daemon not running");
                return Ok(ExitCode::SUCCESS);
            };
            // The daemon may exit before its answer is out: what counts is that it is gone.
            let _ = client.call(&Request::DaemonStop { grace_ms: grace.as_millis() as u64 }, Vec::new()).await;
            drop(client);
            let deadline = std::time::Instant::now() + grace + Duration::from_secs(10);
            while Client::connect(&state, false).await.is_ok() {
                if std::time::Instant::now() > deadline {
                    return Err("the daemon did not stop".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!("tether daemon stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Skill => {
            print!("{}", SKILL);
            Ok(ExitCode::SUCCESS)
        }
        Command::Pair { relay, name, ephemeral, idle_timeout, json } => {
            let client = Client::connect(&state, true).await?;
            sharing::pair(&client, sharing::PairOptions { relay, name, ephemeral, idle_timeout, json }).await
        }
        Command::Invites { action: InvitesAction::Ls { json } } => {
            sharing::list_invites(&Client::connect(&state, true).await?, json).await
        }
        Command::Invites { action: InvitesAction::Rm { id } } => {
            sharing::revoke(&Client::connect(&state, true).await?, id).await
        }
        Command::Passwd { stdin, remove } => {
            sharing::passwd(&Client::connect(&state, true).await?, stdin, remove).await
        }
        command => {
            let client = Client::connect(&state, true).await?;
            session_command(&Transport::Local(client), command).await
        }
    }
}

async fn exec(
    state: &StateDir,
    invite: Option<String>,
    invite_stdin: bool,
    timeout: Option<Duration>,
    command: Vec<String>,
) -> Result<ExitCode, String> {
    let invite = match (invite, invite_stdin) {
        (_, true) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the invite from stdin: {e}"))?;
            line
        }
        (Some(invite), false) => invite,
        (None, false) => return Err("which host? give its invite, -H, TETHER_INVITE or --invite-stdin".into()),
    };
    let invite = hosts::Hosts::load(state)?.resolve(invite.trim())?;
    let mut remote = remote::Remote::open(&invite).await?;
    let result = remote.exec(command, timeout).await;
    remote.close().await;
    match result? {
        Some(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        None => {
            eprintln!("tether: timed out; the command was killed");
            Ok(ExitCode::from(EXIT_TIMED_OUT))
        }
    }
}

async fn session_command(client: &Transport, command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Start { title, cwd, detach, notify, no_notify, command } => {
            let cwd = match cwd {
                Some(cwd) => cwd,
                None => std::env::current_dir().map_err(|e| e.to_string())?.display().to_string(),
            };
            let (cols, rows) = attach::terminal_size().unwrap_or((DEFAULT_COLS, DEFAULT_ROWS));
            let notify = match (notify, no_notify) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let request = Request::Start { command, title, cwd: Some(cwd), cols, rows, notify };
            let info = expect_session(client.call(&request, Vec::new()).await?)?;
            if detach || !std::io::stdin().is_terminal() {
                println!("{}", info.id);
                return Ok(ExitCode::SUCCESS);
            }
            attach_and_report(client, &info.id).await
        }
        Command::Ls { json, status, search, limit } => {
            let request = Request::List { statuses: status, search, limit };
            let Response::Sessions { sessions } = client.call(&request, Vec::new()).await?.0 else {
                return Err("unexpected answer to ls".into());
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions).map_err(|e| e.to_string())?);
            } else {
                print_table(&sessions);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Attach { id } => {
            let info = get(client, id).await?;
            attach_and_report(client, &info.id).await
        }
        Command::Send { args } => send(client, args).await,
        Command::Logs { ids, tail, keep_color, follow, wait_for_prompt, timeout } => {
            // No id: the newest session.
            let wanted = if ids.is_empty() { vec![None] } else { ids.into_iter().map(Some).collect() };
            let mut sessions = Vec::new();
            for id in wanted {
                sessions.push(get(client, id).await?.id);
            }
            let mut code = ExitCode::SUCCESS;
            if wait_for_prompt {
                for session in &sessions {
                    let request =
                        Request::WaitForPrompt { session: session.clone(), timeout_ms: timeout.as_millis() as u64 };
                    if let Err(e) = client.call(&request, Vec::new()).await {
                        eprintln!("tether: {e}");
                        code = ExitCode::from(EXIT_TIMED_OUT);
                    }
                }
            }
            logs::print(client, &sessions, logs::Options { tail, keep_color, follow }).await?;
            Ok(code)
        }
        Command::Stop { id, grace } => {
            let info = get(client, id).await?;
            let request = Request::Stop { session: info.id.clone(), grace_ms: grace.as_millis() as u64 };
            let info = expect_session(client.call(&request, Vec::new()).await?)?;
            let code = info.exit_code.map_or("?".to_owned(), |c| c.to_string());
            println!("{} {} (exit code {code})", info.id, info.status.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon { .. }
        | Command::Skill
        | Command::Pair { .. }
        | Command::Invites { .. }
        | Command::Passwd { .. }
        | Command::Exec { .. }
        | Command::Hosts { .. } => {
            unreachable!("handled before connecting")
        }
    }
}

fn expect_session(reply: (Response, Vec<u8>)) -> Result<SessionInfo, String> {
    match reply.0 {
        Response::Session { session } => Ok(session),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

async fn get(client: &Transport, id: Option<String>) -> Result<SessionInfo, String> {
    expect_session(client.call(&Request::Get { id }, Vec::new()).await?)
}

async fn attach_and_report(client: &Transport, id: &str) -> Result<ExitCode, String> {
    match attach::attach(client, id).await? {
        attach::Ended::Detached => {
            eprintln!("[detached from {id}; `tether attach {id}` to return]");
            Ok(ExitCode::SUCCESS)
        }
        attach::Ended::SessionEnded => {
            let info = get(client, Some(id.to_owned())).await?;
            let code = info.exit_code.unwrap_or(0);
            eprintln!("[session {id} {} with exit code {code}]", info.status.as_str());
            Ok(ExitCode::from(code.clamp(0, 255) as u8))
        }
    }
}

async fn send(client: &Transport, mut args: Vec<String>) -> Result<ExitCode, String> {
    let stdin_piped = !std::io::stdin().is_terminal();
    // With input following (more args, or stdin), the first argument is the session when it
    // names one. One that looks like an id but names none is an error, never typed as text.
    let mut session = None;
    if let Some(first) = args.first().cloned() {
        let is_chunk = first.starts_with("key:") || first.starts_with("hex:");
        if !is_chunk && (args.len() > 1 || stdin_piped) {
            match get(client, Some(first.clone())).await {
                Ok(info) => {
                    session = Some(info.id);
                    args.remove(0);
                }
                Err(e) if looks_like_id(&first) => return Err(e),
                Err(_) => {}
            }
        }
    }
    let mut chunks = args.iter().map(|a| parse_input_chunk(a)).collect::<Result<Vec<InputChunk>, String>>()?;
    if stdin_piped && chunks.is_empty() {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| format!("reading stdin: {e}"))?;
        chunks.push(match String::from_utf8(bytes) {
            Ok(text) => InputChunk::Text(text),
            Err(e) => InputChunk::Hex(tether_protocol::hex::encode(e.as_bytes())),
        });
    }
    if chunks.is_empty() {
        return Err("nothing to send: give text, key:NAME or hex:BYTES, or pipe stdin".into());
    }
    let session = match session {
        Some(id) => id,
        None => get(client, None).await?.id,
    };
    client.call(&Request::Send { session, chunks }, Vec::new()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Session ids are short lower-case alphanumerics; text to type rarely is.
fn looks_like_id(arg: &str) -> bool {
    (1..=12).contains(&arg.len()) && arg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn print_table(sessions: &[SessionInfo]) {
    println!("{:<8} {:<9} {:<6} {:<5} {:<19} TITLE", "ID", "STATUS", "EXIT", "INPUT", "CREATED");
    for s in sessions {
        let exit = s.exit_code.map_or("-".to_owned(), |c| c.to_string());
        let input = if s.waiting_for_input { "yes" } else { "-" };
        println!(
            "{:<8} {:<9} {:<6} {:<5} {:<19} {}",
            s.id,
            s.status.as_str(),
            exit,
            input,
            format_time(s.created_at),
            s.title
        );
    }
}

/// The time of day, UTC, `HH:MM:SS`.
pub fn clock() -> String {
    format_time(now_ms())[11..].to_owned()
}

/// A duration as a person would write it: `30m`, `2h`, `45s`.
pub fn describe(duration: Duration) -> String {
    match duration.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC, without a date crate.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

const SKILL: &str = "\
# Driving terminals with tether (guide for AI agents)

Sessions are real terminals owned by a background agent: they keep running when you disconnect,
and everything they print is kept. Ids are short; any unique prefix works; no id = newest.

  tether start --detach --title build -- make test     # prints the session id
  tether send ID 'ls -la' key:enter                     # type text, then press Enter
  tether send ID key:ctrl+c                             # interrupt
  tether logs ID --tail 50                              # last 50 lines, colours stripped
  tether logs ID --wait-for-prompt --timeout 60s --tail 20
        # wait until the program waits for input (a prompt, then silence); exit 124 on timeout
  tether ls --json                                      # status, exit code, waiting_for_input
  tether stop ID --grace 5s                             # SIGTERM, then SIGKILL
  tether start --detach --notify -- ./deploy.sh         # run the configured hook when it needs you

Keys: key:enter tab shift+tab esc backspace up down left right home end pageup pagedown delete
insert ctrl+<letter> alt+<char>; raw bytes: hex:1b5b41. Text is sent exactly as given (no newline):
add key:enter. Piped stdin is sent as text: printf 'y\\n' | tether send ID

Loop that works: send a command, `logs --wait-for-prompt --tail N` to read the result, decide,
repeat. `ls` shows INPUT=yes for sessions waiting on you (y/n, password, continue?, shell prompt).
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_tails() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000_000), "2026-11-18 11:06:40");
    }
}
