//! The host owner's commands about who may come in: `pair` (and `pair --ephemeral`),
//! `invites ls/rm` and `passwd`. They talk to the local daemon only.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::args::GrantArgs;
use tether_protocol::api::{GrantRequest, Request, Response};
use tether_protocol::identity::Invite;

use crate::cli::args::InvitesAction;
use crate::reach::local::LocalClient;
use crate::reach::stream::OutputEvent;
use crate::time::{clock, describe, format_time};

#[derive(Default)]
pub struct PairOptions {
    pub relay: String,
    pub name: Option<String>,
    pub ephemeral: bool,
    pub idle_timeout: Duration,
    pub json: bool,
    /// Confine the file service to this directory (from now on).
    pub files_root: Option<std::path::PathBuf>,
    /// Turn the file service off (from now on).
    pub no_files: bool,
    /// Let clients move to a data channel (`Some(true)`), or keep them on the relay, from now on.
    pub webrtc: Option<bool>,
    /// What the invite lets its holder do.
    pub grant: GrantRequest,
}

impl From<GrantArgs> for GrantRequest {
    fn from(args: GrantArgs) -> GrantRequest {
        GrantRequest {
            read_only: args.read_only,
            sessions: args.sessions,
            expires_in_ms: args.expires.map(|d| d.as_millis() as u64),
        }
    }
}

pub async fn pair(client: &LocalClient, options: PairOptions) -> Result<ExitCode, String> {
    let PairOptions { relay, name, ephemeral, idle_timeout, json, files_root, no_files, webrtc, grant } = options;
    let read_only = grant.read_only;
    if let Some(enabled) = webrtc {
        client.call(&Request::SetWebrtc { enabled }, Vec::new()).await?;
    }
    if files_root.is_some() || no_files {
        let root = match files_root {
            Some(dir) => Some(
                dir.canonicalize().map_err(|e| format!("--files-root {}: {e}", dir.display()))?.display().to_string(),
            ),
            None => None,
        };
        client.call(&Request::SetFiles { enabled: !no_files, root }, Vec::new()).await?;
    }
    if !ephemeral {
        let (paired, _) = client.call(&Request::Pair { relay, name, grant }, Vec::new()).await?;
        show_invite(&paired, json, read_only)?;
        return Ok(ExitCode::SUCCESS);
    }
    let request = Request::Share { relay, name, idle_timeout_ms: idle_timeout.as_millis() as u64, grant };
    let (paired, mut notes) = client.open_with_answer(&request).await?;
    let invite = show_invite(&paired, json, read_only)?;
    if !json {
        println!("Shared until Ctrl+C, or until nobody has been connected for {}.", describe(idle_timeout));
    }
    // One listener for the whole share: a Ctrl+C while a note is printed is not missed.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot listen for Ctrl+C: {e}"))?;
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(OutputEvent::Data { bytes }) => eprint!("[{}] {}", clock(), String::from_utf8_lossy(&bytes)),
                // The agent ended the share (idle, or revoked with `tether invites rm`).
                Some(OutputEvent::Eof) | None => return Ok(ExitCode::SUCCESS),
                Some(OutputEvent::Skipped { .. }) => {}
            },
            _ = interrupts.recv() => {
                let revoke = Request::Revoke { identity: invite.identity() };
                let (Response::Revoked { stopped, .. }, _) = client.call(&revoke, Vec::new()).await? else {
                    return Err("unexpected answer to revoke".into());
                };
                eprintln!("Invite revoked; {} session(s) it started were stopped.", stopped.len());
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// `tether invites ls | rm ID`.
pub async fn invites(client: &LocalClient, action: InvitesAction) -> Result<ExitCode, String> {
    match action {
        InvitesAction::Ls { json } => list_invites(client, json).await,
        InvitesAction::Rm { id } => revoke(client, id).await,
    }
}

/// Print the invite (JSON, or text with a QR code on a terminal); returns it parsed.
fn show_invite(paired: &Response, json: bool, read_only: bool) -> Result<Invite, String> {
    let Response::Paired { invite, host_id, name, warning } = paired else {
        return Err(format!("unexpected answer to pair: {paired:?}"));
    };
    let parsed = Invite::parse(invite)?;
    if let Some(warning) = warning {
        eprintln!("tether: warning: {warning}");
    }
    if json {
        println!("{}", serde_json::json!({ "invite": invite, "host_id": host_id, "name": name }));
        return Ok(parsed);
    }
    match read_only {
        true => println!(
            "View-only invite to {name} (it shows the shared sessions, and nothing can be typed):\n\n  {invite}\n"
        ),
        false => println!("Invite to {name} (keep it secret: it opens a shell on this machine):\n\n  {invite}\n"),
    }
    if std::io::stdout().is_terminal() {
        for line in crate::cli::qr::render(invite).unwrap_or_default() {
            println!("  {line}");
        }
        println!();
    }
    println!("From another machine:  tether ls -H '{invite}'");
    println!("For an AI agent:       run commands here with: tether exec '{invite}' -- CMD ARGS");
    Ok(parsed)
}

async fn list_invites(client: &LocalClient, json: bool) -> Result<ExitCode, String> {
    let (Response::Access { entries }, _) = client.call(&Request::ListAccess, Vec::new()).await? else {
        return Err("unexpected answer to invites ls".into());
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<16} {:<19} {:<20} {:<10} {:<19} SESSIONS", "ID", "CREATED", "KIND", "CONNECTED", "EXPIRES");
    for entry in entries {
        let created = if entry.created_at == 0 { "-".to_owned() } else { format_time(entry.created_at) };
        let kind = match (entry.ephemeral, entry.identity.as_str()) {
            (true, _) => "ephemeral",
            (false, tether_protocol::handshake::PASSWORD_IDENTITY) => "password",
            _ => "invite",
        };
        let kind = if entry.grant.read_only { format!("{kind}, read-only") } else { kind.to_owned() };
        let expires = match entry.grant.expires_at {
            Some(at) if at <= crate::time::now_ms() => format!("expired {}", format_time(at)),
            Some(at) => format_time(at),
            None => "-".to_owned(),
        };
        let sessions = if entry.grant.sessions.is_empty() { "all".to_owned() } else { entry.grant.sessions.join(" ") };
        println!("{:<16} {created:<19} {kind:<20} {:<10} {expires:<19} {sessions}", entry.identity, entry.connected);
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(client: &LocalClient, identity: String) -> Result<ExitCode, String> {
    let (Response::Revoked { identity, stopped }, _) = client.call(&Request::Revoke { identity }, Vec::new()).await?
    else {
        return Err("unexpected answer to invites rm".into());
    };
    println!("{identity} revoked; its connections were closed");
    if !stopped.is_empty() {
        println!("stopped the sessions it started: {}", stopped.join(" "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tether passwd`: the new password typed twice on the terminal, or one line of stdin.
pub async fn passwd(client: &LocalClient, from_stdin: bool, remove: bool) -> Result<ExitCode, String> {
    let password = if remove {
        None
    } else if from_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("reading stdin: {e}"))?;
        Some(text.lines().next().unwrap_or("").to_owned())
    } else {
        let first = crate::cli::password::read_hidden("New password for this host: ")?;
        let again = crate::cli::password::read_hidden("Again: ")?;
        if first != again {
            return Err("the two passwords differ; nothing changed".into());
        }
        Some(first)
    };
    client.call(&Request::SetPassword { password: password.clone() }, Vec::new()).await?;
    if password.is_some() {
        println!("Password set. Reach this host with its address alone (https://RELAY/#HOSTID) and the password.");
    } else {
        println!("Password removed; connections made with it were closed.");
    }
    Ok(ExitCode::SUCCESS)
}
