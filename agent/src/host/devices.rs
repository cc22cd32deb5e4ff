//! Remembered devices: a browser or a CLI that came in with a lasting invite or the password may
//! ask to be remembered, and from then on proves a credential of its own (`device-…`).
//!
//! Invariants:
//! - The host never sees a device's secret: the device makes the SRP verifier itself (a browser
//!   from its non-extractable key, the CLI from fresh randomness) and sends only salt and
//!   verifier. So the host's disk holds for a device what it holds for an invite.
//! - Only a lasting way in mints a device: not a share (a guest), not a device (one device never
//!   begets another), not the host's own user (who has no use for one). The check is here, at
//!   the host, by the credential the connection proved.
//! - A device outlives the invite it came with: `invites rm` of that invite leaves it working,
//!   `devices rm` (or the device forgetting itself) ends it, and its connections close at once,
//!   as a revoked invite's do — the credential is looked up at every proof.
//! - A remote client may forget only the device it is; listing them is for any lasting way in.

use tether_protocol::api::{error_answer, Answer, DeviceEntry, ErrorCode, Response};
use tether_protocol::handshake::{Credential, SALT_BYTES};
use tether_protocol::hex;
use tether_protocol::identity::is_device_identity;

use crate::host::daemon::Daemon;
use crate::host::dispatch::{blocking, LOCAL_USER};
use crate::host::sharing;
use crate::host::store::StoredDevice;
use crate::time::now_ms;

/// Longest device name kept (characters); longer ones are cut.
const MAX_NAME_CHARS: usize = 80;
/// Longest SRP verifier accepted (bytes): the 3072-bit group's modulus.
const MAX_VERIFIER_BYTES: usize = 3072 / 8;

/// Whether a client that proved `identity` may be remembered as a device.
pub fn may_remember(daemon: &Daemon, identity: &str) -> bool {
    identity != LOCAL_USER && !is_device_identity(identity) && !daemon.access.is_guest(identity)
}

/// `remember_device` from a client that proved `owner`.
pub fn remember(daemon: &Daemon, owner: &str, device: &str, name: &str, salt: &str, verifier: &str) -> Answer {
    if owner == LOCAL_USER {
        return error_answer(ErrorCode::BadRequest, "the host's own user needs no device credential");
    }
    if is_device_identity(owner) {
        return error_answer(ErrorCode::BadRequest, format!("this client is already remembered, as {owner}"));
    }
    if daemon.access.is_guest(owner) {
        return error_answer(
            ErrorCode::BadRequest,
            "a share cannot remember a device: ask the host's owner for a lasting invite",
        );
    }
    if !is_device_identity(device) {
        return error_answer(ErrorCode::BadRequest, format!("{device:?} is not a device id"));
    }
    let salt = hex::decode(salt).filter(|s| s.len() == SALT_BYTES);
    let verifier = hex::decode(verifier).filter(|v| !v.is_empty() && v.len() <= MAX_VERIFIER_BYTES);
    let (Some(salt), Some(verifier)) = (salt, verifier) else {
        return error_answer(ErrorCode::BadRequest, "a device's salt or verifier is malformed");
    };
    let now = now_ms();
    let row = StoredDevice {
        id: device.to_owned(),
        name: clean_name(name).unwrap_or_else(|| "a device".to_owned()),
        via: owner.to_owned(),
        created_at: now,
        last_seen: now,
    };
    let credential = Credential { identity: device.to_owned(), salt, verifier };
    match daemon.access.add_device(credential, &row) {
        Ok(()) => {
            eprintln!("tether daemon: {} remembered as {:?} (came through {owner})", row.id, row.name);
            (Response::Device { device: entry(daemon, row) }, Vec::new())
        }
        Err(e) => error_answer(ErrorCode::Exists, format!("cannot remember this device: {e}")),
    }
}

/// `tether devices ls`, and the page's host menu: every remembered device.
pub fn list(daemon: &Daemon, owner: &str) -> Answer {
    if daemon.access.is_guest(owner) {
        return error_answer(ErrorCode::BadRequest, "a share cannot see the host's devices");
    }
    match daemon.access.devices() {
        Ok(rows) => {
            (Response::Devices { devices: rows.into_iter().map(|row| entry(daemon, row)).collect() }, Vec::new())
        }
        Err(e) => error_answer(ErrorCode::Internal, e),
    }
}

/// `tether devices rm ID` (an id or unique prefix), or a device forgetting itself.
pub async fn forget(daemon: &Daemon, owner: &str, wanted: &str) -> Answer {
    let id = match blocking(|| find(daemon, wanted)) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    if owner != LOCAL_USER && owner != id {
        return error_answer(
            ErrorCode::BadRequest,
            "a client may forget only the device it is (`tether devices rm` on the host forgets any)",
        );
    }
    let stopped = sharing::end_access(daemon, &id).await;
    (Response::Revoked { identity: id, stopped }, Vec::new())
}

/// `tether devices rename ID NAME`.
pub fn rename(daemon: &Daemon, wanted: &str, name: &str) -> Answer {
    let id = match find(daemon, wanted) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    let Some(name) = clean_name(name) else {
        return error_answer(ErrorCode::BadRequest, "a device's name cannot be empty");
    };
    match daemon.access.rename_device(&id, &name) {
        Ok(true) => (Response::Ok, Vec::new()),
        Ok(false) => error_answer(ErrorCode::NotFound, format!("no device {wanted:?}: see `tether devices ls`")),
        Err(e) => error_answer(ErrorCode::Internal, e),
    }
}

/// The device `wanted` names: its full id, or a unique prefix of it (with or without `device-`).
fn find(daemon: &Daemon, wanted: &str) -> Result<String, Answer> {
    let rows = daemon.access.devices().map_err(|e| error_answer(ErrorCode::Internal, e))?;
    let prefixed = match wanted.starts_with("device-") {
        true => wanted.to_owned(),
        false => format!("device-{wanted}"),
    };
    if let Some(exact) = rows.iter().find(|d| d.id == prefixed) {
        return Ok(exact.id.clone());
    }
    let matching: Vec<&StoredDevice> =
        rows.iter().filter(|d| !wanted.is_empty() && d.id.starts_with(&prefixed)).collect();
    match matching.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(error_answer(ErrorCode::NotFound, format!("no device {wanted:?}: see `tether devices ls`"))),
        _ => Err(error_answer(ErrorCode::BadRequest, format!("{wanted:?} matches several devices; give more of it"))),
    }
}

fn entry(daemon: &Daemon, row: StoredDevice) -> DeviceEntry {
    let connected = daemon.access.connections(&row.id);
    DeviceEntry {
        connected,
        id: row.id,
        name: row.name,
        via: row.via,
        created_at: row.created_at,
        last_seen: row.last_seen,
    }
}

/// A name as kept: printable, trimmed, at most `MAX_NAME_CHARS`; `None` when nothing is left.
fn clean_name(name: &str) -> Option<String> {
    let clean: String = name.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}
