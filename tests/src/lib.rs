//! Harness for Tether's end-to-end tests: real binaries, real browser, loopback only.
//!
//! Rules every helper follows:
//! - every wait has a deadline and says what it waited for when it gives up;
//! - every process started is killed (with its whole process group) when its guard drops, so a
//!   failing test leaves no relay or Chromium behind.

pub mod agent;
pub mod cluster;
pub mod hostile;
pub mod http;
pub mod latency;
pub mod netns;
pub mod page;
pub mod process;
pub mod proxy;
pub mod push_service;
pub mod raw;
pub mod turn;
pub mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// Path of a workspace binary. `cargo xtask test` builds them and sets `TETHER_BIN_DIR`; a plain
/// `cargo test` falls back to the default debug target dir.
pub fn bin_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("TETHER_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug")
    });
    let path = dir.join(name);
    assert!(path.exists(), "{} not built: run `cargo xtask test` (or cargo build -p {name})", path.display());
    path
}

/// The built web app. `cargo xtask test` builds it with Trunk and sets `TETHER_WEB_ROOT`.
pub fn web_root() -> PathBuf {
    let root = std::env::var_os("TETHER_WEB_ROOT").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("dist"));
    assert!(root.join("index.html").exists(), "{} has no index.html: run `cargo xtask test`", root.display());
    root
}

/// Poll `probe` until it returns `Some`, or panic after `timeout` naming `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A path for one test's files (a directory or a file) under `parent`, removed with everything
/// in it when dropped, also when the test fails: big test files never pile up between runs.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh, empty directory named after `name` (and a marker).
    pub fn dir(parent: &std::path::Path, name: &str) -> Scratch {
        let path = parent.join(marker(name));
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch(path)
    }

    /// A path for a file named after `name`, not created.
    pub fn file(parent: &std::path::Path, name: &str) -> Scratch {
        Scratch(parent.join(marker(name)))
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_err() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A finished command's stderr, as text (for assertion messages).
pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A marker unlikely to appear by chance, for "did exactly this text arrive" checks, and unique
/// within this process: tests in parallel threads name their scratch directories with it, and
/// the clock alone can read the same for two of them (a coarse clock, or the same nanosecond),
/// which once gave two editor tests one directory.
pub fn marker(prefix: &str) -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:x}-{count}", std::process::id())
}

/// `tether-relay` as an operator runs it: the binary alone, started in an empty directory, so
/// the web app it serves is the one built into it (no `--web-root`, no `dist/` nearby).
pub fn relay_command() -> std::process::Command {
    // One directory for every relay of every run, always left empty.
    let empty = std::env::temp_dir().join("tether-relay-cwd");
    let _ = std::fs::create_dir_all(&empty);
    let mut command = std::process::Command::new(bin_path("tether-relay"));
    command.current_dir(empty).env_remove("TETHER_WEB_ROOT");
    command
}

/// A relay process serving the built web app on a free loopback port.
pub struct Relay {
    pub url: String,
    _process: process::Guard,
}

impl Relay {
    pub fn start() -> Relay {
        Relay::start_at("127.0.0.1:0")
    }

    /// Start on a given address (to restart a relay where its hosts expect it).
    pub fn start_at(listen: &str) -> Relay {
        Relay::start_with(listen, &[])
    }

    /// Start with extra `tether-relay` arguments.
    pub fn start_with(listen: &str, extra: &[&std::ffi::OsStr]) -> Relay {
        let mut command = relay_command();
        command.arg("--listen").arg(listen).args(extra);
        command.stderr(std::process::Stdio::null()); // its start-up notes would clutter test output
        Relay::spawned(command)
    }

    fn spawned(command: std::process::Command) -> Relay {
        let (process, first_line) = process::spawn_reading_first_line(command, Duration::from_secs(20));
        let url = first_line
            .strip_prefix("tether-relay listening on ")
            .unwrap_or_else(|| panic!("unexpected relay banner {first_line:?}"))
            .trim()
            .to_owned();
        Relay { url, _process: process }
    }

    /// Start with extra arguments, its stderr (one line per client connection that ended, with
    /// the bytes it forwarded) written to `log`.
    pub fn start_logging(extra: &[&str], log: &std::path::Path) -> Relay {
        Relay::start_logging_at("127.0.0.1:0", extra, log)
    }

    /// `start_logging` on a given address.
    pub fn start_logging_at(listen: &str, extra: &[&str], log: &std::path::Path) -> Relay {
        let mut command = relay_command();
        command.arg("--listen").arg(listen).args(extra);
        command.stderr(std::fs::File::create(log).expect("relay log"));
        Relay::spawned(command)
    }

    /// Its process id (to stop and continue it, as a network that goes silent would).
    pub fn pid(&self) -> i32 {
        i32::try_from(self._process.id()).expect("pid fits")
    }

    /// `host:port` it listens on.
    pub fn address(&self) -> String {
        let url = self.url.trim_start_matches("http://").trim_start_matches("https://");
        url.trim_end_matches('/').to_owned()
    }
}

/// One client connection whose end a relay logged (`Relay::start_logging`): what it forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub conn: u64,
    pub to_host_bytes: u64,
    pub to_client_bytes: u64,
    pub to_host_messages: u64,
    pub to_client_messages: u64,
}

/// Every client connection the relay log at `log` says has ended, in order.
pub fn relay_forwarded(log: &std::path::Path) -> Vec<Forwarded> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines()
        .filter_map(|line| {
            let conn = line.strip_prefix("tether-relay: client ")?.split(' ').next()?.parse().ok()?;
            // "…; forwarded U bytes to the host, D to the client; M messages to the host, N to the client"
            let (_, counts) = line.split_once("; forwarded ")?;
            let numbers: Vec<u64> = counts
                .split(|c: char| !c.is_ascii_digit())
                .filter(|t| !t.is_empty())
                .filter_map(|t| t.parse().ok())
                .collect();
            let [to_host_bytes, to_client_bytes, to_host_messages, to_client_messages] = numbers[..] else {
                return None;
            };
            Some(Forwarded { conn, to_host_bytes, to_client_bytes, to_host_messages, to_client_messages })
        })
        .collect()
}

/// Every client a relay node carried to another node and whose end it logged
/// (`Relay::start_logging`): bytes forwarded (to the host, to the client).
pub fn relay_forwarded_carried(log: &std::path::Path) -> Vec<(u64, u64)> {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines()
        .filter(|line| line.starts_with("tether-relay: client of host ") && line.contains(" carried to "))
        .filter_map(|line| {
            // "…; forwarded U bytes to the host, D to the client"
            let (_, counts) = line.rsplit_once("; forwarded ")?;
            let mut numbers = counts.split(|c: char| !c.is_ascii_digit()).filter_map(|t| t.parse().ok());
            Some((numbers.next()?, numbers.next()?))
        })
        .collect()
}
