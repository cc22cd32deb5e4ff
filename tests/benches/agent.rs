//! Agent benchmark (`cargo xtask bench`): real daemon, real PTYs, the real CLI, release build.
//!
//! Reports:
//! - output throughput: `cat` of a large file through a session to an attached `tether attach`
//!   on a PTY and into the log, beside `cat` to a plain PTY and under script(1);
//! - `send` → echoed output in the session log, latency (whole CLI invocation included);
//! - `ls` round trip (whole CLI invocation);
//! - daemon memory: idle, per idle session, and after a 20 MB flood has finished.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tether_tests::agent::{Agent, PtyClient};
use tether_tests::wait_until;

const FLOOD_BYTES: usize = 32 * 1024 * 1024; // 32 MiB for throughput
const MEMORY_FLOOD_BYTES: usize = 20 * 1000 * 1000; // 20 MB, as the issue asks
const LATENCY_SAMPLES: usize = 50;
const IDLE_SESSIONS: usize = 20;

fn main() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("agent-bench");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let data = scratch.join("flood.txt");
    write_flood(&data, FLOOD_BYTES);

    println!("agent benchmark (release binaries, {} MiB flood)", FLOOD_BYTES >> 20);
    let plain = plain_pty_cat(&data);
    println!("  cat → plain PTY:                         {:>8.1} MiB/s", mib_per_s(FLOOD_BYTES, plain));
    let script = script_cat(&data);
    println!("  cat under script(1):                     {:>8.1} MiB/s", mib_per_s(FLOOD_BYTES, script));
    let (attached, logged) = tether_cat(&scratch, &data, true);
    println!(
        "  cat → session → attached client:         {:>8.1} MiB/s  ({:.2}× plain PTY)",
        mib_per_s(FLOOD_BYTES, attached),
        plain.as_secs_f64() / attached.as_secs_f64()
    );
    println!("  cat → session → log file, attached:      {:>8.1} MiB/s", mib_per_s(FLOOD_BYTES, logged));
    // Ingest alone (nobody attached): the PTY drained into the ring and the log, the screen kept.
    let ingest = (0..3).map(|_| tether_cat(&scratch, &data, false).1).min().unwrap_or_default();
    println!(
        "  cat → session → log file (ingest):       {:>8.1} MiB/s  ({:.2}× script(1))",
        mib_per_s(FLOOD_BYTES, ingest),
        script.as_secs_f64() / ingest.as_secs_f64()
    );

    let agent = Agent::new(&scratch);
    let (p50, p99) = send_latency(&agent);
    println!(
        "  send → echo in log ({LATENCY_SAMPLES} samples):       p50 {:>6.2} ms  p99 {:>6.2} ms",
        ms(p50),
        ms(p99)
    );
    let (p50, p99) = ls_latency(&agent);
    println!(
        "  ls round trip ({LATENCY_SAMPLES} samples):            p50 {:>6.2} ms  p99 {:>6.2} ms",
        ms(p50),
        ms(p99)
    );
    drop(agent);

    memory(&scratch);
}

/// Base64-like text without newlines, so the PTY's newline translation adds nothing.
fn write_flood(path: &Path, len: usize) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize]
        })
        .collect();
    std::fs::write(path, bytes).expect("flood file");
}

fn plain_pty_cat(data: &Path) -> Duration {
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};
    let pty =
        native_pty_system().openpty(PtySize { rows: 32, cols: 120, pixel_width: 0, pixel_height: 0 }).expect("openpty");
    let mut command = CommandBuilder::new("cat");
    command.arg(data);
    let started = Instant::now();
    let mut child = pty.slave.spawn_command(command).expect("spawn cat");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while total < FLOOD_BYTES {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    let elapsed = started.elapsed();
    let _ = child.wait();
    assert!(total >= FLOOD_BYTES, "plain PTY delivered {total} bytes");
    elapsed
}

/// The same `cat` under script(1) (a PTY, its output copied out: what a session's ingest does
/// at the least), best of three.
fn script_cat(data: &Path) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let out = std::process::Command::new("script")
                .args(["-q", "-c", &format!("cat {}", data.display()), "/dev/null"])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("script(1) runs");
            let elapsed = started.elapsed();
            assert!(out.stdout.len() >= FLOOD_BYTES, "script(1) passed on {} bytes", out.stdout.len());
            elapsed
        })
        .min()
        .unwrap_or_default()
}

/// (time to the attached client, time to the log) for the same `cat`; without `attach`, only
/// the log's (the first is zero).
fn tether_cat(scratch: &Path, data: &Path, attach: bool) -> (Duration, Duration) {
    let agent = Agent::new(scratch);
    let script = format!("read go; cat {}; read done", data.display());
    let id = agent.start(&["sh", "-c", &script]);
    let client = attach.then(|| PtyClient::spawn(&agent, &["attach", &id]));
    wait_until(Duration::from_secs(20), "the session's log to exist", || {
        agent.state.join("logs").join(format!("{id}.log")).exists().then_some(())
    });
    // Attached: let the replay arrive, then start the flood.
    std::thread::sleep(Duration::from_millis(300));
    let log = agent.state.join("logs").join(format!("{id}.log"));
    let base_out = client.as_ref().map_or(0, PtyClient::output_len);
    let base_log = std::fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0);
    let started = Instant::now();
    agent.ok(&["send", &id, "key:enter"]);
    let mut logged = None;
    let mut attached = (!attach).then_some(Duration::ZERO);
    while attached.is_none() || logged.is_none() {
        if logged.is_none() && std::fs::metadata(&log).map(|m| m.len() as usize).unwrap_or(0) >= base_log + FLOOD_BYTES
        {
            logged = Some(started.elapsed());
        }
        if attached.is_none() && client.as_ref().is_some_and(|c| c.output_len() >= base_out + FLOOD_BYTES) {
            attached = Some(started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(120), "flood did not arrive");
        std::thread::sleep(Duration::from_micros(200));
    }
    (attached.unwrap_or_default(), logged.unwrap_or_default())
}

fn send_latency(agent: &Agent) -> (Duration, Duration) {
    let id = agent.start(&["cat"]);
    let log = agent.state.join("logs").join(format!("{id}.log"));
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let token = format!("probe-{i:03}-end");
        let started = Instant::now();
        agent.ok(&["send", &id, &token, "key:enter"]);
        loop {
            let text = std::fs::read(&log).unwrap_or_default();
            if text.windows(token.len()).any(|w| w == token.as_bytes()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no echo of {token}");
            std::thread::sleep(Duration::from_micros(100));
        }
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

fn ls_latency(agent: &Agent) -> (Duration, Duration) {
    let samples = (0..LATENCY_SAMPLES)
        .map(|_| {
            let started = Instant::now();
            agent.ok(&["ls", "--json"]);
            started.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn memory(scratch: &Path) {
    let agent = Agent::new(scratch);
    agent.ok(&["daemon", "--detach"]);
    let pid = agent.daemon_pid().expect("daemon pid");
    let idle = rss_kib(pid);
    println!("  daemon RSS idle:                         {:>8} KiB", idle);
    let ids: Vec<String> = (0..IDLE_SESSIONS).map(|_| agent.start(&["sleep", "600"])).collect();
    std::thread::sleep(Duration::from_millis(500));
    let with_sessions = rss_kib(pid);
    println!(
        "  daemon RSS with {IDLE_SESSIONS} idle sessions:          {:>8} KiB  ({} KiB per session)",
        with_sessions,
        (with_sessions.saturating_sub(idle)) / IDLE_SESSIONS as u64
    );
    for id in &ids {
        agent.ok(&["stop", id, "--grace", "1s"]);
    }
    let flood = format!("head -c {MEMORY_FLOOD_BYTES} /dev/urandom | base64 -w0");
    let id = agent.start(&["sh", "-c", &flood]);
    let peak = {
        let mut peak = 0;
        let started = Instant::now();
        loop {
            peak = peak.max(rss_kib(pid));
            let status = agent.info(&id)["status"].as_str().unwrap_or("").to_owned();
            if status == "stopped" || started.elapsed() > Duration::from_secs(60) {
                break peak;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    println!("  daemon RSS during 20 MB flood (peak):    {:>8} KiB", peak);
    println!("  daemon RSS after the flood ended:        {:>8} KiB", after);
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.50), at(0.99))
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
