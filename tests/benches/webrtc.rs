//! WebRTC benchmark (`cargo xtask bench`): the data channel beside the relay WebSocket, same run,
//! same host, release binaries, in a private network namespace (`netns`: a veth pair, so ICE has
//! host candidates as on a LAN). The host switches between `tether pair --no-webrtc` (relay only)
//! and `--webrtc` (the upgrade) between measurements.
//! - `tether exec` throughput, from the moment the path is settled to the last byte.
//! - keystroke → echo through `tether attach -H` (CLI, on a PTY) and in the page (xterm.js's own
//!   input to the echo rendered), p50 / p99.
//! - the page's load → its data channel carrying traffic (the status bar says `via direct`).
//!
//! Needs root (the namespace), like the WebRTC tests.

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_tests::agent::{pair, wait_reachable, Agent, PtyClient};
use tether_tests::page::{bash_host, echo_in_page};
use tether_tests::webdriver::Browser;
use tether_tests::{netns, wait_until, Relay};

const BYTES: usize = 200 * 1000 * 1000; // 200 MB
const RUNS: usize = 3;
const KEYSTROKES: usize = 200;
const LOADS: usize = 5;
const WEBRTC_FLAGS: &[&str] = &["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"];

fn main() {
    netns::enter();
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("webrtc-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    println!("webrtc benchmark (release binaries, private network namespace, veth pair)");

    let relay = Relay::start();
    // bash with an empty home: the machine's dotfiles are not what is measured.
    let (host, _home) = bash_host(&scratch, &[]);
    let invite = pair(&host, &relay);
    let client = Agent::new(&scratch);
    wait_reachable(&client, &invite);
    let webrtc = |on: bool| {
        let flag = if on { "--webrtc" } else { "--no-webrtc" };
        host.ok(&["pair", "--relay", relay.url.trim_end_matches('/'), flag, "--json"]);
    };

    for (on, path) in [(false, "relay"), (true, "direct")] {
        webrtc(on);
        let best = (0..RUNS).map(|_| exec_seconds(&client, &invite, on)).fold(f64::MAX, f64::min);
        println!(
            "  exec throughput, {path:<6}  {:>7.1} MB/s (best of {RUNS}, {} MB)",
            BYTES as f64 / 1e6 / best,
            BYTES / 1_000_000
        );
    }

    let session = host.start_shell();
    host.ok(&["send", &session, "stty raw -echo; exec cat", "key:enter"]);
    std::thread::sleep(Duration::from_millis(300));
    for (on, path) in [(false, "relay"), (true, "direct")] {
        webrtc(on);
        let mut attached = PtyClient::spawn(&client, &["-v", "attach", "-H", &invite, &session]);
        let moved = if on { " now via direct" } else { "via relay · round trip" };
        wait_until(Duration::from_secs(60), "attach on its path", || attached.output().contains(moved).then_some(()));
        std::thread::sleep(Duration::from_millis(500));
        let (p50, p99) = keystrokes(&mut attached, KEYSTROKES);
        attached.type_bytes(b"\x1dd");
        println!("  attach -H echo, {path:<6} p50 {p50:.2} ms  p99 {p99:.2} ms ({KEYSTROKES} keys)");
    }

    let browser = Browser::start_with_flags(&scratch, WEBRTC_FLAGS);
    browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": DIRECT_MARK }));
    webrtc(true);
    let loads: Vec<String> = (0..LOADS)
        .map(|_| {
            browser.goto(&relay.url);
            browser.goto(&invite);
            let (prompt, direct) = wait_until(Duration::from_secs(60), "the page on its data channel", || {
                let script = "const p = performance.getEntriesByName('tether:first-output')[0]; \
                              return p && window.tetherDirectAt ? [p.startTime, window.tetherDirectAt] : null";
                let times: Vec<f64> = serde_json::from_value(browser.execute(script, json!([]))).ok()?;
                Some((times[0], times[1]))
            });
            format!("prompt {prompt:.0} ms, direct {direct:.0} ms")
        })
        .collect();
    println!("  page load →        {}", loads.join("; "));
    println!("    (from navigation: the first prompt painted; the status bar saying `via direct`)");
    for (on, path) in [(false, "relay"), (true, "direct")] {
        webrtc(on);
        browser.goto(&relay.url);
        browser.goto(&invite);
        let wanted = if on { "via direct" } else { "via relay" };
        wait_until(Duration::from_secs(60), "the page on its path", || {
            let status =
                browser.execute("return (document.getElementById('status') || {}).textContent || ''", json!([]));
            status.as_str().is_some_and(|s| s.contains(wanted)).then_some(())
        });
        let input = wait_until(Duration::from_secs(30), "the terminal", || {
            browser.find(".pane:not(.hidden) .xterm-helper-textarea")
        });
        browser.send_keys(&input, "clear; exec cat\n");
        std::thread::sleep(Duration::from_millis(500));
        let (p50, p99, n) = echo_in_page(&browser, KEYSTROKES);
        println!("  page echo, {path:<6}     p50 {p50:.2} ms  p99 {p99:.2} ms ({n} keys, input → painted)");
    }
}

/// One `exec` of `BYTES` zeros; seconds from "go" (once the path is settled: with WebRTC on,
/// `-v` said the data channel carries it) to the last byte.
fn exec_seconds(client: &Agent, invite: &str, direct: bool) -> f64 {
    let mut command = client.command();
    let script = format!("read go; head -c {BYTES} /dev/zero");
    command.args(["-v", "exec", invite, "--", "sh", "-c", &script]);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("tether exec");
    let mut stderr = child.stderr.take().expect("stderr");
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buffer = [0u8; 512];
        while let Ok(n @ 1..) = stderr.read(&mut buffer) {
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
            let settled = if direct { text.contains(" now via direct") } else { text.contains("via relay") };
            if settled {
                break;
            }
        }
        (text, stderr)
    });
    let (text, _stderr) = said.join().expect("stderr reader");
    assert!(text.contains(if direct { "now via direct" } else { "via relay" }), "{text}");
    let mut stdout = child.stdout.take().expect("stdout");
    let started = Instant::now();
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(b"go\n").expect("go");
    let mut total = 0;
    let mut buffer = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = stdout.read(&mut buffer) {
        total += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(child.wait().expect("exec").success());
    assert_eq!(total, BYTES);
    seconds
}

/// Type `count` keys one at a time; p50 and p99 (ms) until each one's echo (from `cat`) arrives.
fn keystrokes(client: &mut PtyClient, count: usize) -> (f64, f64) {
    let samples = client.echo_samples(count);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(samples[count / 2]), ms(samples[(count * 99) / 100]))
}

/// Runs before the app on every load: the page's clock when its status bar first said the data
/// channel carries the connection.
const DIRECT_MARK: &str = "
new MutationObserver(() => {
  const status = document.getElementById('status');
  if (!window.tetherDirectAt && status && status.textContent.includes('via direct')) {
    window.tetherDirectAt = performance.now();
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
";
