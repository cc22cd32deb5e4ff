//! The command line, as clap parses it: every command, flag and help text in one place.

use std::time::Duration;

use clap::{Parser, Subcommand};
use tether_protocol::api::SessionStatus;

use crate::time::parse_duration;

#[derive(Parser)]
#[command(name = "tether", version, about = "Persistent terminal sessions you can reach from anywhere")]
pub struct Cli {
    /// Run the session command on a paired host: its invite (https://RELAY/#HOST.SECRET) or a
    /// name from `tether hosts add`.
    #[arg(short = 'H', long = "host", global = true, env = "TETHER_INVITE", value_name = "INVITE|NAME")]
    pub host: Option<String>,
    /// Say on stderr, for each connection to a host, which path carries it and its round-trip
    /// time (exec, attach, cp and every command with -H).
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    #[command(flatten)]
    Session(SessionCommand),
    /// Print a guide for AI agents driving sessions with these commands.
    Skill,
    /// Print the completion script for SHELL, e.g. `tether completions bash >
    /// ~/.local/share/bash-completion/completions/tether`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `tether man | man -l -`.
    Man,
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
    /// Copy files to or from a host, like scp: `tether cp [-r] SRC… DST`, one side HOST:PATH
    /// (HOST: an invite, a saved name, or `local`). A DST ending in `/` is a directory to copy
    /// into. Uploads are atomic (all or nothing at DST) and a lost link resumes by itself.
    Cp {
        /// Copy directories and everything in them.
        #[arg(short, long)]
        recursive: bool,
        /// Print one JSON line per file copied.
        #[arg(long)]
        json: bool,
        #[arg(required = true, num_args = 2.., value_name = "SRC… DST")]
        paths: Vec<String>,
    },
    /// A host's files for scripts: ls, stat, mkdir, mv, rm, chmod, restore (HOST:PATH).
    Fs {
        #[command(subcommand)]
        action: FsAction,
    },
    /// In a session's terminal: open FILEs in the editor of every browser showing this session
    /// (as `code FILE` in VS Code's terminal). Fails when no browser shows it.
    Open {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
    },
    /// Notifications: `notify on|off [ID]` (hook, desktop and web push when a session waits or
    /// ends; with -H on a paired host), `notify test` (a web push to every subscribed browser).
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Run the agent as a service of this user's (systemd user unit, macOS LaunchAgent), so the
    /// host is reachable after a reboot: install [--print], uninstall, status.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Remember hosts by name: add NAME INVITE (traded for a device credential of this
    /// machine's own, so revoking the invite does not break it), ls, rm NAME.
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
        /// Confine the file service (file manager, editor, tether cp) to DIR: paths outside it,
        /// `..` and symlinks that lead out are refused. Kept until said otherwise.
        #[arg(long, value_name = "DIR", conflicts_with = "no_files")]
        files_root: Option<std::path::PathBuf>,
        /// Turn the file service off (clients keep terminals only). Kept until said otherwise.
        #[arg(long)]
        no_files: bool,
        /// Keep every client on the relay: no WebRTC data channel, even where the network
        /// allows one. Kept until `--webrtc`.
        #[arg(long)]
        no_webrtc: bool,
        /// Let clients move to a direct (or TURN) data channel again after `--no-webrtc`.
        #[arg(long, conflicts_with = "no_webrtc")]
        webrtc: bool,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// An invite for viewers: `share --read-only [--session ID]… [--expires 1h]`. Its holder
    /// may list and watch the shared sessions (replay included) and read their logs — never
    /// type, resize, start, stop, exec, or use files or the editor. The host enforces it.
    Share {
        /// The relay (plain http only for one on this machine).
        #[arg(long, env = "TETHER_RELAY", default_value = "http://127.0.0.1:8080")]
        relay: String,
        /// Print one JSON object with `invite`, `host_id` and `name`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// The ways in to this host: `invites ls`, `invites rm ID` (revokes it at once).
    Invites {
        #[command(subcommand)]
        action: InvitesAction,
    },
    /// The browsers and machines this host remembers: `devices ls`, `devices rm ID` (its
    /// connections close at once), `devices rename ID NAME`.
    Devices {
        #[command(subcommand)]
        action: DevicesAction,
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

/// The commands that work on this machine's agent and, with `-H`, on a paired host alike.
#[derive(Subcommand)]
pub enum SessionCommand {
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
}

/// Flags that override config.toml.
#[derive(clap::Args, Default)]
pub struct DaemonOptions {
    /// Output kept in memory per session (bytes).
    #[arg(long)]
    pub ring_bytes: Option<usize>,
    /// Most sessions running at once.
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Silence after a prompt-like line before a session counts as waiting for input.
    #[arg(long, value_parser = parse_duration)]
    pub prompt_quiet: Option<Duration>,
    /// Command run when a session needs input or ends (gets SESSION_ID REASON).
    #[arg(long)]
    pub notify_hook: Option<String>,
}

impl DaemonOptions {
    /// The same flags, for a daemon started in the background.
    pub fn to_args(&self) -> Vec<String> {
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
pub enum FsAction {
    /// List a directory (sorted by name; dot files with -a).
    Ls {
        path: String,
        #[arg(short, long)]
        all: bool,
        /// One JSON object per entry.
        #[arg(long)]
        json: bool,
    },
    /// One entry (a symlink itself).
    Stat {
        path: String,
        #[arg(long)]
        json: bool,
    },
    Mkdir {
        path: String,
        /// Make missing parents too; no error if it exists.
        #[arg(short, long)]
        parents: bool,
    },
    /// Rename or move within the host: mv HOST:FROM HOST:TO.
    Mv {
        from: String,
        to: String,
        /// Replace what is at TO.
        #[arg(long)]
        overwrite: bool,
    },
    /// Delete into the host's trash (undo with `restore`), or for good with --permanent.
    Rm {
        path: String,
        #[arg(long)]
        permanent: bool,
    },
    /// Set permission bits (octal, e.g. 644).
    Chmod { mode: String, path: String },
    /// Put back what `rm` moved to the trash: restore HOST TRASH_ID.
    Restore { host: String, trash_id: String },
}

#[derive(Subcommand)]
pub enum NotifyAction {
    /// Notify when this session (id or prefix; default: the newest) waits for input or ends.
    On { id: Option<String> },
    /// Stop notifying for it.
    Off { id: Option<String> },
    /// Push a test notification to every browser subscribed to this host.
    Test,
}

#[derive(Subcommand)]
pub enum ServiceAction {
    /// Write the service file, enable and start it (and ask for lingering, on Linux).
    Install {
        /// Print what would be installed, and where, without touching anything.
        #[arg(long)]
        print: bool,
    },
    /// Stop the service and remove exactly what install wrote.
    Uninstall,
    /// Installed? Running? Linked to which relays, since when?
    Status,
}

#[derive(Subcommand)]
pub enum HostsAction {
    Add { name: String, invite: String },
    Ls,
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum InvitesAction {
    /// List invites and the password (never their secrets), with how many clients use each.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an invite (its id or a unique prefix) or `password`: its connections close now.
    Rm { id: String },
}

/// What an invite lets its holder do.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GrantArgs {
    /// View only: watch sessions, never type into them or change anything on the host.
    #[arg(long)]
    pub read_only: bool,
    /// Only this session (id or unique prefix; repeat for more). Default: all of them.
    #[arg(long = "session", value_name = "ID", requires = "read_only")]
    pub sessions: Vec<String>,
    /// Refuse the invite from this long after it is made (e.g. 2s, 30m, 8h).
    #[arg(long, value_parser = parse_duration)]
    pub expires: Option<Duration>,
}

#[derive(Subcommand)]
pub enum DevicesAction {
    /// List the remembered devices (never their secrets): name, how each came, last seen.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Forget a device (its id or a unique prefix): its connections close now.
    Rm { id: String },
    /// Give a device another name.
    Rename { id: String, name: String },
}

#[derive(Subcommand)]
pub enum DaemonAction {
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
