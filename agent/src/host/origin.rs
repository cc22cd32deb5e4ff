//! Which way in a process on this machine came through. Every session and exec a remote client
//! starts carries `TETHER_VIA=<the credential's identity>` in its environment, and what it runs
//! inherits it. The daemon reads it (from `/proc`) to know who asks on its socket — a guest's
//! shell running `tether pair` is the guest, not the host's user — and to find what a revoked
//! credential left running outside its sessions' process groups (`setsid`, `nohup`, a daemon).
//!
//! Invariants:
//! - This is a speed bump, not a boundary: a process of the host's user can wipe its
//!   environment and leave its parents (`env -i` after a double fork). The README says so: a
//!   full-access invite is a shell as the host user. The caller's ancestors are looked at too,
//!   so a wiped environment alone does not hide a guest's shell.
//! - Only processes of this user are looked at or signalled (`/proc` shows others' environments
//!   to no one but root, and the daemon never runs as root for someone else).

use std::time::Duration;

/// The variable that says which credential a process came through.
pub const VIA_ENV: &str = "TETHER_VIA";
/// How far up its ancestors a caller is traced.
const MAX_ANCESTORS: usize = 64;

/// The identity `pid` (or its nearest marked ancestor) came through; `None`: the host's user.
pub fn caller_identity(pid: u32) -> Option<String> {
    let mut pid = pid;
    for _ in 0..MAX_ANCESTORS {
        if let Some(identity) = via_of(pid) {
            return Some(identity);
        }
        pid = parent_of(pid).filter(|&parent| parent > 1)?;
    }
    None
}

/// The `TETHER_VIA` of process `pid`, if it has one (and we may read it).
fn via_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{VIA_ENV}=");
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

/// The parent of process `pid` (field 4 of `/proc/PID/stat`, after the command's parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Every process of ours that came through `identity`.
fn processes_via(identity: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && via_of(pid).as_deref() == Some(identity))
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// End whatever `identity` left running: SIGTERM, then SIGKILL to those still there after
/// `grace`. Returns how many there were. Blocking (it reads `/proc` and waits): run it off the
/// async threads.
pub fn stop_processes_via(identity: &str, grace: Duration) -> usize {
    let found = processes_via(identity);
    for &pid in &found {
        // SAFETY: kill(2) only sends a signal, to a process of our own user.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline && !processes_via(identity).is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in processes_via(identity) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    found.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_process_and_its_unmarked_children_are_traced_to_their_identity() {
        let identity = format!("test-via-{}", std::process::id());
        let mut marked = std::process::Command::new("sh")
            .args(["-c", "env -u TETHER_VIA sleep 30 & wait"])
            .env(VIA_ENV, &identity)
            .spawn()
            .expect("sh");
        let shell = marked.id();
        // The child whose environment was wiped of the mark (once `env` has run `sleep`) is still
        // traced, through its parent.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let child = loop {
            let children = std::fs::read_dir("/proc")
                .expect("/proc")
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .find(|&pid| {
                    parent_of(pid) == Some(shell)
                        && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
                });
            if let Some(child) = children {
                break child;
            }
            assert!(std::time::Instant::now() < deadline, "no child of the marked shell");
            std::thread::yield_now();
        };
        assert_eq!(caller_identity(shell).as_deref(), Some(identity.as_str()));
        assert_eq!(caller_identity(child).as_deref(), Some(identity.as_str()));
        assert_eq!(caller_identity(std::process::id()), None, "this test is not marked");
        assert_eq!(stop_processes_via(&identity, Duration::from_secs(5)), 1, "only the marked shell");
        assert!(marked.wait().is_ok());
        // SAFETY: kill(2) only sends a signal (to the sleep this test started).
        unsafe { libc::kill(i32::try_from(child).expect("pid"), libc::SIGKILL) };
    }
}
