//! `cargo xtask <command>` — the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `run`: install what is missing, build everything, start a relay and an agent on 127.0.0.1,
//!   print the invite link.
//! - `test`: install what is missing, build, run every test: native, wasm32 in headless Chromium,
//!   end-to-end with real processes and a real browser; clippy on every crate.
//! - `bench`: the benchmarks (criterion for the protocol; real processes and Chromium for the rest).
//! - `fuzz [SECONDS]`: the cargo-fuzz targets (nightly toolchain).

mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        _ => Err("usage: cargo xtask run [--listen ADDR] | test | bench [FILTER] | fuzz [SECONDS]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Run a command (in the workspace root unless it names a directory of its own), failing with
/// its description if it fails.
fn run_cmd(command: &mut Command) -> Result {
    if command.get_current_dir().is_none() {
        command.current_dir(root());
    }
    let shown = format!("{command:?}");
    eprintln!("xtask: $ {shown}");
    let status = command.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Build the web app into `dist/` with Trunk, strictly from Cargo.lock and never downloading tools.
fn build_web() -> Result {
    // Trunk's --frozen wants every crate already fetched; fetch them (locked) first.
    run_cmd(cargo().args(["fetch", "--locked"]))?;
    run_cmd(Command::new("trunk").args(["build", "--release", "--frozen"]).env("PATH", tools::path_with_node_bin()))
}

/// The binaries the end-to-end tests drive, built in one go with the test targets, so with the
/// same features (dev-dependencies included): built apart, tokio and everything on it (webrtc-rs
/// above all) compiled twice, once for the binaries and once for `cargo test`.
fn build_bins_for_tests() -> Result<PathBuf> {
    run_cmd(cargo().args(["build", "--locked", "--workspace", "--exclude", "tether-frontend", "--bins", "--tests"]))?;
    Ok(target_dir().join("debug"))
}

fn build_bins(release: bool) -> Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--locked", "-p", "tether-relay", "-p", "tether-agent"]);
    if release {
        command.arg("--release");
    }
    run_cmd(&mut command)?;
    Ok(target_dir().join(if release { "release" } else { "debug" }))
}

/// Build everything, then run a relay and an agent on this machine and print the invite. The
/// agent has its own state dir under target/, so it never touches the user's own sessions. Both
/// run in the foreground: Ctrl+C stops them together.
fn run(args: &[String]) -> Result {
    use std::io::{BufRead, BufReader};
    tools::ensure_build_tools()?;
    build_web()?;
    let bins = build_bins(true)?;

    // The relay serves the app built into it (dist/ was built just before it).
    let mut relay = Command::new(bins.join("tether-relay"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start tether-relay: {e}"))?;
    let mut lines = BufReader::new(relay.stdout.take().ok_or("no relay stdout")?).lines();
    let banner = lines.next().and_then(|l| l.ok()).ok_or("the relay stopped before printing its address")?;
    println!("{banner}");
    std::thread::spawn(move || lines.map_while(|l| l.ok()).for_each(|line| println!("{line}")));
    let url = banner.rsplit(' ').next().unwrap_or_default().trim_end_matches('/').to_owned();

    let state = target_dir().join("xtask-run/agent");
    let tether = |args: &[&str]| {
        let mut command = Command::new(bins.join("tether"));
        command.env("TETHER_STATE_DIR", &state).args(args);
        command
    };
    let mut agent = tether(&["daemon"]).spawn().map_err(|e| format!("cannot start the agent: {e}"))?;
    let started = std::time::Instant::now();
    while !tether(&["daemon", "status"]).stdout(std::process::Stdio::null()).status().is_ok_and(|s| s.success()) {
        if started.elapsed() > std::time::Duration::from_secs(10) {
            return Err("the agent did not come up".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    run_cmd(&mut tether(&["pair", "--relay", &url]))?;
    eprintln!("xtask: relay and agent running (agent state in {}); Ctrl+C stops both", state.display());
    let status = relay.wait().map_err(|e| e.to_string())?;
    let _ = agent.wait();
    if status.success() {
        Ok(())
    } else {
        Err(format!("tether-relay exited ({status})"))
    }
}

fn test() -> Result {
    tools::ensure_build_tools()?;
    let chromedriver = tools::ensure_chromium()?;
    // The TLS relay test makes its certificate with openssl(1).
    tools::ensure_apt_package("/usr/bin/openssl", "openssl")?;
    // The TURN test checks the relay's credentials against a real coturn.
    tools::ensure_apt_package("/usr/bin/turnserver", "coturn")?;
    // The WebRTC tests each run in a network namespace of their own (ip) and block UDP in it
    // (nft).
    tools::ensure_apt_package("/usr/sbin/ip", "iproute2")?;
    tools::ensure_apt_package("/usr/sbin/nft", "nftables")?;
    // The cluster tests share routing between relay nodes through a real Redis.
    tools::ensure_apt_package("/usr/bin/redis-server", "redis-server")?;
    build_web()?;
    lint()?;
    let bins = build_bins_for_tests()?;
    run_cmd(
        cargo()
            .args(["test", "--locked", "--workspace", "--exclude", "tether-frontend"])
            .env("TETHER_BIN_DIR", &bins)
            .env("TETHER_WEB_ROOT", root().join("dist"))
            .env("CHROMEDRIVER", &chromedriver),
    )?;
    // The same protocol tests again, compiled to wasm32 and run in headless Chromium.
    run_cmd(
        cargo()
            .args(["test", "--locked", "-p", "tether-protocol", "--target", "wasm32-unknown-unknown"])
            .env("CHROMEDRIVER", &chromedriver)
            .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", root().join("protocol/webdriver.json"))
            // A test file gets 20 s by default; the two-path floods take ~7 s unoptimised here,
            // more on a loaded machine.
            .env("WASM_BINDGEN_TEST_TIMEOUT", "120"),
    )?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

/// Clippy with warnings as errors: the native crates with every target (tests, benches), the
/// frontend for wasm32. A check build, sharing nothing with the test build but the sources.
fn lint() -> Result {
    tools::ensure_clippy()?;
    let deny = ["--", "-D", "warnings"];
    run_cmd(
        cargo().args(["clippy", "--locked", "--workspace", "--exclude", "tether-frontend", "--all-targets"]).args(deny),
    )?;
    run_cmd(
        cargo().args(["clippy", "--locked", "-p", "tether-frontend", "--target", "wasm32-unknown-unknown"]).args(deny),
    )
}

fn bench(args: &[String]) -> Result {
    run_cmd(cargo().args(["bench", "--locked", "-p", "tether-protocol", "--bench", "channel", "--"]).args(args))?;
    // The agent benchmark drives release binaries, as users run them; the relay's carries the
    // web app, so that is built first.
    tools::ensure_build_tools()?;
    build_web()?;
    let bins = build_bins(true)?;
    run_cmd(
        cargo().args(["bench", "--locked", "-p", "tether-tests", "--bench", "agent"]).env("TETHER_BIN_DIR", &bins),
    )?;
    // What idle hosts and clients cost one relay (10,000 sockets from loopback addresses).
    run_cmd(
        cargo().args(["bench", "--locked", "-p", "tether-tests", "--bench", "relay"]).env("TETHER_BIN_DIR", &bins),
    )?;
    // Beside OpenSSH on loopback: needs sshd.
    tools::ensure_apt_package("/usr/sbin/sshd", "openssh-server")?;
    run_cmd(
        cargo()
            .args(["bench", "--locked", "-p", "tether-tests", "--bench", "remote"])
            .env("TETHER_BIN_DIR", &bins)
            .env("TETHER_WEB_ROOT", root().join("dist")),
    )?;
    // The web app in headless Chromium.
    let chromedriver = tools::ensure_chromium()?;
    run_cmd(
        cargo()
            .args(["bench", "--locked", "-p", "tether-tests", "--bench", "browser"])
            .env("TETHER_BIN_DIR", &bins)
            .env("TETHER_WEB_ROOT", root().join("dist"))
            .env("CHROMEDRIVER", &chromedriver),
    )?;
    // The data channel beside the relay, in a network namespace of its own (root, ip, nft).
    tools::ensure_apt_package("/usr/sbin/ip", "iproute2")?;
    tools::ensure_apt_package("/usr/sbin/nft", "nftables")?;
    run_cmd(
        cargo()
            .args(["bench", "--locked", "-p", "tether-tests", "--bench", "webrtc"])
            .env("TETHER_BIN_DIR", &bins)
            .env("TETHER_WEB_ROOT", root().join("dist"))
            .env("CHROMEDRIVER", &chromedriver),
    )
}

fn fuzz(args: &[String]) -> Result {
    let seconds: u64 = match args.first() {
        Some(s) => s.parse().map_err(|_| format!("fuzz: {s:?} is not a number of seconds"))?,
        None => 60,
    };
    tools::ensure_cargo_fuzz()?;
    let fuzz_dir = root().join("protocol");
    for target in ["frame_decoder", "channel_open", "host_session", "two_paths", "siv_batch"] {
        // Plain `cargo` (the rustup proxy), not $CARGO: only the proxy understands `+nightly`.
        run_cmd(Command::new("cargo").current_dir(&fuzz_dir).args([
            "+nightly",
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
        ]))?;
    }
    Ok(())
}
