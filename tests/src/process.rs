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

    /// Take charge of a child started elsewhere (it is killed on drop like the others).
    pub fn adopt(child: std::process::Child) -> Guard {
        Guard { child }
    }

    /// Its standard output, when it was piped (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send `signal` to the process (as Ctrl+C or `kill` would).
    pub fn signal(&self, signal: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) only sends a signal.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Wait for the process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration, what: &str) -> std::process::ExitStatus {
        crate::wait_until(timeout, what, || self.child.try_wait().ok().flatten())
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

/// Start `command` with stdout collected (as text) into the returned buffer as it arrives.
pub fn spawn_collecting(mut command: Command) -> (Guard, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::Read;
    command.stdout(Stdio::piped());
    let mut guard = Guard::spawn(command);
    let mut stdout = guard.child.stdout.take().expect("stdout was piped");
    let collected = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = collected.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (guard, collected)
}

/// Run `command` to its end with stdout and stderr collected; a command still running after
/// `timeout` is killed and the test fails naming `what` (a hang is a failure, never a stall).
pub fn output_within(mut command: Command, timeout: Duration, what: &str) -> std::process::Output {
    use std::io::Read;
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut guard = Guard::spawn(command);
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = collect(Box::new(guard.child.stdout.take().expect("stdout was piped")));
    let stderr = collect(Box::new(guard.child.stderr.take().expect("stderr was piped")));
    let status = guard.wait_exit(timeout, what);
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
