//! Handing out and taking back ways in: `pair`, `pair --ephemeral` (a share), `invites ls/rm`
//! and `passwd`, as the daemon serves them. Only the host's own user may ask (the relay path
//! refuses these requests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_protocol::api::{error_answer, AccessEntry, Answer, ErrorCode, Grant, GrantRequest, Response};
use tether_protocol::handshake::{Credential, PASSWORD_IDENTITY, SALT_BYTES};
use tether_protocol::identity::{base32, is_device_identity, Invite, INVITE_SECRET_BYTES};
use tether_protocol::sync::lock;
use tokio::sync::broadcast;

use crate::host::access::AccessEvent;
use crate::host::daemon::Daemon;
use crate::host::service::{StreamItem, StreamTx};
use crate::host::store::{NAME_SETTING, RELAY_SETTING};
use crate::host::{devices, origin, relay_link};
use crate::random::random_bytes;
use crate::time::now_ms;

/// How often a share checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Grace for sessions (and what they left running) stopped because their way in was revoked or
/// its share ended.
const REVOKED_STOP_GRACE: Duration = Duration::from_secs(2);
/// How long `pair` waits for the relay to confirm the host is reachable before warning.
const REACHABLE_WAIT: Duration = Duration::from_secs(5);
/// Shortest password `tether passwd` accepts.
const MIN_PASSWORD_CHARS: usize = 8;

/// A fresh invite through `relay`, letting its holder do what `asked` says: stored (and the
/// relay remembered), or for an ephemeral one, kept in memory only. Connects to the relay
/// either way.
fn issue_invite(daemon: &Daemon, relay: &str, ephemeral: bool, asked: &GrantRequest) -> Result<Invite, Answer> {
    let relay = relay.trim_end_matches('/').to_owned();
    relay_link::host_ws_url(&relay).map_err(|e| error_answer(ErrorCode::BadRequest, e))?;
    let grant = grant_of(daemon, asked)?;
    let mut secret = [0u8; INVITE_SECRET_BYTES];
    let mut salt = [0u8; SALT_BYTES];
    random_bytes(&mut secret)
        .and_then(|_| random_bytes(&mut salt))
        .map_err(|e| error_answer(ErrorCode::Internal, e))?;
    let invite = Invite { relay: relay.clone(), host_id: daemon.host.host_id.clone(), secret: base32(&secret) };
    let credential = Credential::derive(&invite.host_id, &invite.identity(), invite.secret.as_bytes(), salt)
        .map_err(|e| error_answer(ErrorCode::Internal, e.to_string()))?;
    if ephemeral {
        daemon.access.add_ephemeral(credential, grant);
    } else {
        daemon
            .access
            .store_granting(credential, grant, now_ms())
            .and_then(|_| lock(&daemon.store).set_setting(RELAY_SETTING, &relay))
            .map_err(|e| error_answer(ErrorCode::Internal, e))?;
    }
    daemon.ensure_relay_link(&relay);
    Ok(invite)
}

/// What an invite asked for as `asked` may do: its sessions named by full id (each must exist
/// now), its expiry a time.
fn grant_of(daemon: &Daemon, asked: &GrantRequest) -> Result<Grant, Answer> {
    if !asked.sessions.is_empty() && !asked.read_only {
        return Err(error_answer(
            ErrorCode::BadRequest,
            "--session goes with --read-only (a full invite reaches everything)",
        ));
    }
    let sessions = asked.sessions.iter().map(|s| daemon.sessions.full_id(s)).collect::<Result<Vec<_>, _>>()?;
    let expires_at = asked.expires_in_ms.map(|ms| now_ms().saturating_add(ms));
    Ok(Grant { read_only: asked.read_only, sessions, expires_at })
}

/// The name clients see: `wanted` (and kept from now on), else the kept one, else the hostname.
fn host_name(daemon: &Daemon, wanted: Option<String>) -> String {
    let store = lock(&daemon.store);
    if let Some(name) = wanted.filter(|n| !n.trim().is_empty()) {
        if let Err(e) = store.set_setting(NAME_SETTING, name.trim()) {
            eprintln!("tether daemon: {e}");
        }
        return name.trim().to_owned();
    }
    store.setting(NAME_SETTING).ok().flatten().unwrap_or_else(hostname)
}

/// The answer to `pair`, once the relay has confirmed the host is reachable through it — or
/// with a warning saying why not yet (the link keeps retrying).
async fn paired(daemon: &Daemon, invite: &Invite, name: Option<String>) -> Response {
    let mut states = daemon.subscribe_link_states();
    let reachable = states.wait_for(|states| states.get(&invite.relay).is_some_and(|s| s.up.is_ok()));
    let reached = matches!(tokio::time::timeout(REACHABLE_WAIT, reachable).await, Ok(Ok(_)));
    let warning = match reached {
        true => None,
        false => {
            let why = match states.borrow().get(&invite.relay).map(|s| &s.up) {
                Some(Err(e)) => e.clone(),
                _ => "no answer yet".to_owned(),
            };
            Some(format!("{} cannot reach this host yet ({why}); the agent keeps trying", invite.relay))
        }
    };
    let name = host_name(daemon, name);
    Response::Paired { invite: invite.to_url(), host_id: invite.host_id.clone(), name, warning }
}

/// Who this host is, for a client's host list; and whether `owner` (the asking client) may be
/// remembered as a device, or is one.
pub fn host_info(daemon: &Daemon, owner: &str) -> Response {
    Response::HostInfo {
        read_only: daemon.access.is_viewer(owner),
        host_id: daemon.host.host_id.clone(),
        name: host_name(daemon, None),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        remember: devices::may_remember(daemon, owner),
        device: is_device_identity(owner).then(|| owner.to_owned()),
    }
}

/// `tether pair`: a lasting invite.
pub async fn pair(daemon: &Daemon, relay: &str, name: Option<String>, grant: &GrantRequest) -> Answer {
    match issue_invite(daemon, relay, false, grant) {
        Ok(invite) => (paired(daemon, &invite, name).await, Vec::new()),
        Err(answer) => answer,
    }
}

/// `tether pair --ephemeral`: an invite that lasts as long as this request (see
/// `Request::Share`). Notes go out as text lines on `stream`.
#[allow(clippy::too_many_arguments)]
pub async fn share(
    daemon: Arc<Daemon>,
    relay: String,
    name: Option<String>,
    idle: Duration,
    grant: GrantRequest,
    id: u64,
    stream: u32,
    tx: StreamTx,
) {
    // Subscribe first, so no comings and goings are missed.
    let mut events = daemon.access.subscribe();
    let invite = match issue_invite(&daemon, &relay, true, &grant) {
        Ok(invite) => invite,
        Err((response, payload)) => {
            let _ = tx.send(StreamItem::Answer { id, answer: (response, payload) }).await;
            return;
        }
    };
    let identity = invite.identity();
    // However this task ends — the requester vanished and it was aborted, or below — the
    // invite ends with it.
    let mut ending = EndOnDrop { daemon: daemon.clone(), identity: Some(identity.clone()) };
    if tx.send(StreamItem::answer(id, paired(&daemon, &invite, name).await)).await.is_err() {
        return;
    }
    let mut notes = Notes { stream, seq: 0, tx: &tx };
    let mut idle_since = Instant::now();
    let mut check = tokio::time::interval(IDLE_CHECK);
    let why = loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(AccessEvent::Connected { identity: who }) if who == identity => {
                    notes.say(&format!("a client connected ({} now)", daemon.access.connections(&identity))).await;
                }
                Ok(AccessEvent::Disconnected { identity: who }) if who == identity => {
                    notes.say(&format!("a client left ({} now)", daemon.access.connections(&identity))).await;
                }
                Ok(AccessEvent::Revoked { identity: who }) if who == identity => break "the invite was revoked".to_owned(),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break "the agent is stopping".to_owned(),
            },
            _ = check.tick() => {
                if daemon.access.connections(&identity) > 0 {
                    idle_since = Instant::now();
                } else if idle_since.elapsed() >= idle {
                    break format!("nobody connected for {}s", idle.as_secs());
                }
            }
        }
    };
    ending.identity = None;
    let stopped = end_access(&daemon, &identity).await;
    notes.say(&format!("{why}: invite revoked, {} session(s) it started stopped", stopped.len())).await;
    let _ = tx.send(StreamItem::Eof { stream, end: notes.seq }).await;
}

/// Revoke `identity` everywhere: the store, live connections, and an ephemeral invite's
/// sessions (stopped together). Returns the sessions stopped.
pub async fn end_access(daemon: &Daemon, identity: &str) -> Vec<String> {
    let sessions = match daemon.access.revoke(identity) {
        Ok((_, sessions)) => sessions,
        Err(e) => {
            eprintln!("tether daemon: {e}");
            Vec::new()
        }
    };
    eprintln!("tether daemon: {identity} revoked");
    daemon.sessions.stop_ids(&sessions, REVOKED_STOP_GRACE).await;
    // And what it left running outside them (its execs' process groups are ended as its
    // connections close).
    let via = identity.to_owned();
    let left = tokio::task::spawn_blocking(move || origin::stop_processes_via(&via, REVOKED_STOP_GRACE)).await;
    if let Ok(left @ 1..) = left {
        eprintln!("tether daemon: stopped {left} process(es) {identity} left running");
    }
    sessions
}

/// Every way in, without secrets.
pub fn list_access(daemon: &Daemon) -> Answer {
    let stored = match daemon.access.stored_list() {
        Ok(list) => list,
        Err(e) => return error_answer(ErrorCode::Internal, e),
    };
    let ephemeral = daemon.access.ephemeral_identities().into_iter().map(|identity| (identity, 0));
    // Devices are listed by `devices ls`, and forgotten by `devices rm`.
    let entries = stored
        .into_iter()
        .filter(|(identity, _)| !is_device_identity(identity))
        .chain(ephemeral)
        .map(|(identity, created_at)| AccessEntry {
            ephemeral: daemon.access.is_ephemeral(&identity),
            connected: daemon.access.connections(&identity),
            grant: daemon.access.grant(&identity),
            identity,
            created_at,
        })
        .collect();
    (Response::Access { entries }, Vec::new())
}

/// `tether invites rm ID` (an identity or unique prefix; `password` too).
pub async fn revoke(daemon: &Daemon, wanted: &str) -> Answer {
    let (Response::Access { entries }, _) = list_access(daemon) else {
        return error_answer(ErrorCode::Internal, "cannot list the ways in");
    };
    let matching: Vec<&AccessEntry> = match entries.iter().find(|e| e.identity == wanted) {
        Some(exact) => vec![exact],
        None => entries.iter().filter(|e| !wanted.is_empty() && e.identity.starts_with(wanted)).collect(),
    };
    let identity = match matching.as_slice() {
        [one] => one.identity.clone(),
        [] => return error_answer(ErrorCode::BadRequest, format!("no invite {wanted:?}: see `tether invites ls`")),
        _ => {
            return error_answer(ErrorCode::BadRequest, format!("{wanted:?} matches several invites; give more of it"))
        }
    };
    let stopped = end_access(daemon, &identity).await;
    (Response::Revoked { identity, stopped }, Vec::new())
}

/// `tether passwd`: set or remove the host password.
pub async fn set_password(daemon: &Daemon, password: Option<String>) -> Answer {
    let Some(password) = password else {
        return match daemon.access.revoke(PASSWORD_IDENTITY) {
            Ok((true, _)) => (Response::Ok, Vec::new()),
            Ok((false, _)) => error_answer(ErrorCode::BadRequest, "no password is set"),
            Err(e) => error_answer(ErrorCode::Internal, e),
        };
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return error_answer(
            ErrorCode::BadRequest,
            format!("a password needs at least {MIN_PASSWORD_CHARS} characters"),
        );
    }
    let mut salt = [0u8; SALT_BYTES];
    if let Err(e) = random_bytes(&mut salt) {
        return error_answer(ErrorCode::Internal, e);
    }
    // Argon2id takes a moment: off the async threads.
    let host_id = daemon.host.host_id.clone();
    let derived =
        tokio::task::spawn_blocking(move || Credential::derive(&host_id, PASSWORD_IDENTITY, password.as_bytes(), salt))
            .await;
    let credential = match derived {
        Ok(Ok(credential)) => credential,
        Ok(Err(e)) => return error_answer(ErrorCode::Internal, format!("deriving the verifier failed: {e}")),
        Err(_) => return error_answer(ErrorCode::Internal, "deriving the verifier failed"),
    };
    // Connections made with the old password are closed (`store` revokes what it replaces).
    match daemon.access.store(credential, now_ms()) {
        Ok(()) => (Response::Ok, Vec::new()),
        Err(e) => error_answer(ErrorCode::Internal, e),
    }
}

/// This machine's hostname, or "host".
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "host".to_owned(),
    }
}

/// Text notes on a share's stream.
struct Notes<'a> {
    stream: u32,
    seq: u64,
    tx: &'a StreamTx,
}

impl Notes<'_> {
    async fn say(&mut self, line: &str) {
        let bytes = format!("{line}\n").into_bytes();
        let len = bytes.len() as u64;
        let _ = self.tx.send(StreamItem::Data { stream: self.stream, seq: self.seq, bytes }).await;
        self.seq += len;
    }
}

/// Ends an ephemeral invite when its share task is dropped without ending it itself.
struct EndOnDrop {
    daemon: Arc<Daemon>,
    identity: Option<String>,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let Some(identity) = self.identity.take() else { return };
        let daemon = self.daemon.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { end_access(&daemon, &identity).await });
            }
            // No runtime: the agent is exiting, and an in-memory invite goes with it.
            Err(_) => {
                let _ = daemon.access.revoke(&identity);
            }
        }
    }
}
