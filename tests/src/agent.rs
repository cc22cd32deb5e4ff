//! A real `tether` agent with its own state dir, driven through the real CLI binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{bin_path, marker, wait_until};

/// Generous bound for things that take milliseconds when healthy.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Agent {
    pub state: PathBuf,
    /// Extra environment for every command (and so for the daemon the first one starts).
    env: Vec<(String, PathBuf)>,
    /// A program every `tether` runs under (and so the daemon the first one starts).
    wrapper: Vec<String>,
}

impl Agent {
    /// A fresh state dir under `scratch`; the daemon starts on the first command.
    pub fn new(scratch: &Path) -> Agent {
        Agent::with_env(scratch, &[])
    }

    /// Like `new`, with `vars` set for every `tether` run (e.g. `SSL_CERT_FILE`).
    pub fn with_env(scratch: &Path, vars: &[(&str, &Path)]) -> Agent {
        let state = scratch.join(marker("agent-state"));
        std::fs::create_dir_all(&state).expect("state dir");
        Agent { state, env: vars.iter().map(|(k, v)| (k.to_string(), v.to_path_buf())).collect(), wrapper: Vec::new() }
    }

    /// Like `with_env`, every `tether` run under `wrapper` (e.g. `unshare --user`: then the
    /// agent, root or not, has no power over file permissions, as an ordinary user would not).
    pub fn wrapped(scratch: &Path, vars: &[(&str, &Path)], wrapper: &[&str]) -> Agent {
        let mut agent = Agent::with_env(scratch, vars);
        agent.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        agent
    }

    pub fn command(&self) -> Command {
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin_path("tether"));
                command
            }
            None => Command::new(bin_path("tether")),
        };
        command.env("TETHER_STATE_DIR", &self.state).stdin(Stdio::null());
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Run `tether ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run tether")
    }

    /// Run `tether ARGS`, insist on success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tether {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start a detached session; returns its id.
    pub fn start(&self, command: &[&str]) -> String {
        let mut args = vec!["start", "--detach", "--"];
        args.extend_from_slice(command);
        self.ok(&args).trim().to_owned()
    }

    /// Start an interactive `sh` and wait for its first prompt, as a person would before typing.
    pub fn start_shell(&self) -> String {
        let id = self.start(&["sh"]);
        self.ok(&["logs", &id, "--wait-for-prompt", "--timeout", "20s"]);
        id
    }

    pub fn logs(&self, id: &str) -> String {
        self.ok(&["logs", id])
    }

    /// Wait until the session's log has a line equal to `line`; returns the log.
    pub fn wait_for_line(&self, id: &str, line: &str) -> String {
        wait_until(WAIT, &format!("a line {line:?} in the log of {id}"), || {
            let log = self.logs(id);
            log.lines().any(|l| l.trim_end() == line).then_some(log)
        })
    }

    /// Wait until the session's log contains `text` anywhere; returns the log.
    pub fn wait_for_text(&self, id: &str, text: &str) -> String {
        wait_until(WAIT, &format!("{text:?} in the log of {id}"), || {
            let log = self.logs(id);
            log.contains(text).then_some(log)
        })
    }

    /// The session as `ls --json` reports it.
    pub fn info(&self, id: &str) -> Value {
        let list: Value = serde_json::from_str(&self.ok(&["ls", "--json"])).expect("ls --json is JSON");
        list.as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id).cloned())
            .unwrap_or_else(|| panic!("session {id} not in ls"))
    }

    /// Wait until the session has ended; returns its info.
    pub fn wait_ended(&self, id: &str) -> Value {
        wait_until(WAIT, &format!("session {id} to end"), || {
            let info = self.info(id);
            (!["running", "created", "stopping"].contains(&info["status"].as_str().unwrap_or(""))).then_some(info)
        })
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state.join("daemon.pid")).ok()?.trim().parse().ok()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.run(&["daemon", "stop", "--grace", "0s"]);
        if let Some(pid) = self.daemon_pid() {
            // SAFETY: kill(2) only sends a signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Pair `host` with `relay` (`tether pair --json`); returns the invite.
pub fn pair(host: &Agent, relay: &crate::Relay) -> String {
    pair_with(host, relay, &[])
}

/// `pair` with more of its flags (`--files-root DIR`, …); the invite.
pub fn pair_with(host: &Agent, relay: &crate::Relay, flags: &[&str]) -> String {
    let mut args = vec!["pair", "--relay", relay.url.trim_end_matches('/'), "--json"];
    args.extend_from_slice(flags);
    let out = host.ok(&args);
    let json: Value = serde_json::from_str(&out).expect("pair --json is JSON");
    let invite = json["invite"].as_str().expect("invite").to_owned();
    assert!(invite.starts_with(&format!("{}#", relay.url)), "{invite}");
    let fragment = invite.split_once('#').map(|(_, f)| f).unwrap_or_default();
    assert_eq!(fragment.split('.').next(), json["host_id"].as_str(), "host id in the fragment");
    invite
}

/// A relay, a host paired with it, the invite, and a client agent that reached the host (state
/// dirs under `scratch`).
pub fn paired(scratch: &Path) -> (crate::Relay, Agent, String, Agent) {
    let relay = crate::Relay::start();
    let host = Agent::new(scratch);
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch);
    wait_reachable(&client, &invite);
    (relay, host, invite, client)
}

/// Run `ls -H` until the host has registered with the relay (pairing connects it); returns it.
pub fn wait_reachable(client: &Agent, invite: &str) -> String {
    wait_until(WAIT, "the host to be reachable through the relay", || {
        let out = client.run(&["ls", "-H", invite]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// A `tether` process on a real PTY, as a person at a terminal would run it.
pub struct PtyClient {
    keyboard: Keyboard,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl PtyClient {
    pub fn spawn(agent: &Agent, args: &[&str]) -> PtyClient {
        let mut command = portable_pty::CommandBuilder::new(bin_path("tether"));
        command.args(args);
        command.env("TETHER_STATE_DIR", &agent.state);
        for (key, value) in &agent.env {
            command.env(key, value);
        }
        PtyClient::spawn_command(command)
    }

    /// Any program on a PTY (the benchmark runs `ssh -tt` this way).
    pub fn spawn_command(command: portable_pty::CommandBuilder) -> PtyClient {
        use portable_pty::{native_pty_system, PtySize};
        let pty = native_pty_system()
            .openpty(PtySize { rows: 30, cols: 100, pixel_width: 0, pixel_height: 0 })
            .expect("openpty");
        let child = pty.slave.spawn_command(command).expect("spawn on pty");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("pty reader");
        let writer = pty.master.take_writer().expect("pty writer");
        let output = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sink, hold) = (output.clone(), paused.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                while hold.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                let Ok(n) = reader.read(&mut buf) else { break };
                if n == 0 {
                    break;
                }
                sink.lock().expect("output lock").extend_from_slice(&buf[..n]);
            }
        });
        let keyboard = Keyboard { writer: Arc::new(Mutex::new(writer)), output, paused };
        PtyClient { keyboard, child, _master: pty.master }
    }

    /// Resize the terminal, as a window resize would (the client gets SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let size = portable_pty::PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
        self._master.resize(size).expect("resize pty");
    }

    pub fn type_bytes(&mut self, bytes: &[u8]) {
        self.keyboard.type_bytes(bytes);
    }

    /// A handle that types and watches from another thread, so a test can notice a client that
    /// stopped reading its keyboard instead of blocking in a write to it.
    pub fn keyboard(&self) -> Keyboard {
        self.keyboard.clone()
    }

    /// Bytes received so far.
    pub fn output_len(&self) -> usize {
        self.keyboard.output_len()
    }

    /// The last `n` bytes received (cheap to look at while a flood comes in).
    pub fn tail(&self, n: usize) -> String {
        let output = self.keyboard.output.lock().expect("output lock");
        String::from_utf8_lossy(&output[output.len().saturating_sub(n)..]).into_owned()
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.keyboard.output.lock().expect("output lock")).into_owned()
    }

    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let out = self.output();
            if out.contains(needle) {
                return out;
            }
            // On failure, what the terminal did show (the end of it).
            let shown = &out[out.floor_char_boundary(out.len().saturating_sub(2048))..];
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not on the attached terminal in {WAIT:?}; it ends {shown:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Wait for the process to exit; returns its exit code.
    /// Type `count` keys one at a time (20 ms apart) and time each until its echo arrives: the
    /// samples, sorted.
    pub fn echo_samples(&mut self, count: usize) -> Vec<Duration> {
        let mut samples = Vec::with_capacity(count);
        for i in 0..count {
            let key = b'a' + (i % 26) as u8;
            let before = self.output_len();
            let started = std::time::Instant::now();
            self.type_bytes(&[key]);
            while self.output_len() == before {
                assert!(started.elapsed() < Duration::from_secs(10), "no echo; terminal shows {:?}", self.output());
                std::thread::sleep(Duration::from_micros(50));
            }
            samples.push(started.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        samples.sort();
        samples
    }

    pub fn wait_exit(&mut self) -> u32 {
        let child = &mut self.child;
        wait_until(WAIT, "the attached client to exit", || child.try_wait().ok().flatten()).exit_code()
    }
}

/// A PTY client's keyboard and screen byte count, shareable across threads.
#[derive(Clone)]
pub struct Keyboard {
    writer: Arc<Mutex<Box<dyn std::io::Write + Send>>>,
    output: Arc<Mutex<Vec<u8>>>,
    /// While set, the screen reads nothing (a terminal that cannot keep up).
    paused: Arc<std::sync::atomic::AtomicBool>,
}

impl Keyboard {
    pub fn type_bytes(&self, bytes: &[u8]) {
        self.try_type_bytes(bytes).expect("type into pty");
    }

    /// Type, or say why not (the client has gone).
    pub fn try_type_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().expect("keyboard lock");
        writer.write_all(bytes).and_then(|_| writer.flush())
    }

    /// Bytes received so far.
    pub fn output_len(&self) -> usize {
        self.output.lock().expect("output lock").len()
    }

    /// Stop reading the client's output (`true`) or go on (`false`).
    pub fn pause_screen(&self, paused: bool) {
        self.paused.store(paused, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for PtyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

use std::io::Read as _;
