//! Child processes that cannot outlive their test.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the child's whole process group on drop (Chromium forks helpers; a relay may too).
pub struct Guard {
    child: Child,
}

impl Guard {
    /// Start `command` as the leader of a new process group.
    pub fn spawn(mut command: Command) -> Guard {
        command.process_group(0);
        let program = format!("{:?}", command.get_program());
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Guard { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }
}

/// Start `command` with piped stdout and return once it printed its first line (its banner).
/// The rest of stdout is drained in the background so the child never blocks on a full pipe.
pub fn spawn_reading_first_line(mut command: Command, timeout: Duration) -> (Guard, String) {
    command.stdout(Stdio::piped());
    let mut guard = Guard::spawn(command);
    let stdout = guard.child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(timeout) {
        Ok(Some(Ok(line))) => (guard, line),
        other => panic!("process {} printed no banner within {timeout:?}: {other:?}", guard.id()),
    }
}
