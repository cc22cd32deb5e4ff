//! Browser benchmark (`cargo xtask bench`): the release web app through a relay on loopback in
//! headless Chromium, release binaries. Figures, not pass/fail:
//! - the WASM bundle, raw and gzip -9;
//! - page load → first prompt painted (the app's `tether:first-output` performance mark);
//! - `seq 1 200000` and a 20 MB `cat` of base64: from the Enter's `keydown` to the render showing
//!   the last line, timed in the page (output is written in order, so every byte before it was
//!   written too), with the longest main-thread task meanwhile; each beside xterm.js alone in
//!   the same page writing the same output (the limit), with the CPU every part of the path
//!   used (Chromium's by process and thread) and the floor that puts on the machine's cores;
//! - keystroke → echo painted, measured inside the page (xterm.js input → render), 200 samples;
//!   again while the Files tab uploads on the same connection;
//! - real keys: WebDriver types into xterm.js's textarea, the page times `keydown` → painted,
//!   with the median of each hop on the way (to the link worker, echo back from it, parsed,
//!   frame, painted); again
//!   100 ms away (a proxy holding each direction 50 ms in front of the relay), with predictive
//!   echo on (keydown → the frame painting the prediction) and off; and again in a Chromium with
//!   its deferral of tasks after input turned off, which is what bounds the figure;
//! - Files tab: upload (file input → committed on the host) and download (→ saved by Chromium)
//!   of 200 MB, MB/s, and who used the CPU meanwhile;
//! - the editor: bytes the first load fetched of it (none: it is loaded when an editor opens),
//!   its bundle's size as an editor's first open fetches it (raw and gzip -9), and Enter on a
//!   1 MB source file in the Files tab → its first screen painted, cold (the bundle loaded
//!   then) and warm.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_tests::agent::{pair, Agent};
use tether_tests::latency::DelayProxy;
use tether_tests::page::echo_in_page;
use tether_tests::process::Guard;
use tether_tests::webdriver::Browser;
use tether_tests::{wait_until, web_root, Relay};

const LOADS: usize = 3;
const KEYSTROKES: usize = 200;
const BULK: Duration = Duration::from_secs(300);
/// How long sshx gets for a flood before the bench says it did not finish.
const SSHX_BULK: Duration = Duration::from_secs(120);

/// Chromium's flag turning off its deferral of tasks between a key event and the next frame.
const DEFER_OFF: &str = "--disable-features=DeferRendererTasksAfterInput";

fn main() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    println!("browser benchmark (release app and binaries, headless Chromium, loopback relay)");

    let (raw, gzipped) = wasm_size(&web_root());
    println!("  WASM bundle        {raw} B, {gzipped} B gzip -9");

    let relay = Relay::start();
    // bash with an empty home: the machine's dotfiles are not what is measured.
    let home = scratch.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let host = Agent::with_env(&scratch, &[("SHELL", Path::new("/bin/bash")), ("HOME", &home)]);
    let invite = pair(&host, &relay);
    // Through the relay, as this bench says: the data channel beside it is the webrtc bench's.
    host.ok(&["pair", "--relay", relay.url.trim_end_matches('/'), "--no-webrtc", "--json"]);
    let downloads = scratch.join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");
    let browser = Browser::start_with_downloads(&scratch, &downloads);

    let loads: Vec<f64> = (0..LOADS)
        .map(|_| {
            browser.goto(&relay.url); // leave the page, so the next goto is a fresh load
            browser.goto(&invite);
            wait_until(Duration::from_secs(60), "the first output mark", || {
                let mark =
                    "const m = performance.getEntriesByName('tether:first-output')[0]; return m ? m.startTime : null";
                browser.execute(mark, json!([])).as_f64()
            })
        })
        .collect();
    println!("  load → first prompt {}", loads.iter().map(|ms| format!("{ms:.0} ms")).collect::<Vec<_>>().join(", "));

    let input = wait_until(Duration::from_secs(30), "the terminal", || {
        browser.find(".pane:not(.hidden) .xterm-helper-textarea")
    });
    let before = CpuTimes::now();
    let seq = bulk(&browser, TETHER, &input, "clear; seq 1 200000; echo seq-$((1+1))-done", "seq-2-done");
    println!("  seq 1 200000        {seq}");
    let used = CpuTimes::now().since(&before);
    println!("    CPU meanwhile     {}", used.report(seq.outside));
    compare_with_alone(&browser, "seq", &seq, &used);

    let file = scratch.join("bulk.b64");
    let make = format!("head -c 15000000 /dev/urandom | base64 > {}", file.display());
    assert!(Command::new("sh").args(["-c", &make]).status().is_ok_and(|s| s.success()));
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let before = CpuTimes::now();
    let cat = bulk(
        &browser,
        TETHER,
        &input,
        &format!("clear; cat {}; echo cat-$((5+5))-done", file.display()),
        "cat-10-done",
    );
    println!("  cat {:.1} MB base64   {cat} ({:.1} MB/s)", size as f64 / 1e6, size as f64 / 1e6 / cat.seconds);
    let used = CpuTimes::now().since(&before);
    println!("    CPU meanwhile     {}", used.report(cat.outside));
    compare_with_alone(&browser, "cat", &cat, &used);

    browser.send_keys(&input, "clear; exec cat\n");
    std::thread::sleep(Duration::from_millis(500));
    let (p50, p99, n) = echo_in_page(&browser, KEYSTROKES);
    println!("  keystroke → echo   p50 {p50:.2} ms  p99 {p99:.2} ms ({n} samples, painted)");

    editor_bench(&browser, &scratch);

    // Timestamps at the page's socket (every send, every message), from a script that runs
    // before the app's own: a fresh load with it, then real keys.
    browser.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": LINK_TRACE }));
    browser.goto(&relay.url);
    let input = reopen(&browser, &invite);
    let Keys { p50, p99, n, hops, .. } = real_keystrokes(&browser, TETHER, &input);
    println!("  real key → echo    p50 {p50:.2} ms  p99 {p99:.2} ms ({n} WebDriver key events, keydown → painted)");
    print!("{hops}");

    // What bounds that figure: after a discrete input event Chromium's renderer defers every
    // per-frame task (a socket's message among them) until the next frame is drawn. The same
    // keys in a Chromium with that policy off show the cost of the policy alone.
    {
        let undeferred = Browser::start_with_flags(&scratch, &[DEFER_OFF]);
        undeferred.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": LINK_TRACE }));
        let input = reopen(&undeferred, &invite);
        let Keys { p50, p99, n, hops, .. } = real_keystrokes(&undeferred, TETHER, &input);
        println!("  real key, {DEFER_OFF}  p50 {p50:.2} ms  p99 {p99:.2} ms ({n} keys)");
        print!("{hops}");
    }

    // The same page 100 ms away: through a proxy holding each direction 50 ms (no `tc netem`
    // in this kernel), beside `attach -H` and `ssh -tt` in the remote bench.
    let far =
        DelayProxy::start(relay.url.trim_start_matches("http://").trim_end_matches('/'), Duration::from_millis(50));
    let far_url = format!("http://{}/{}", far.addr, &invite[invite.find('#').unwrap_or(0)..]);
    for on in [true, false] {
        if !on {
            click(&browser, "#typeahead-toggle"); // the setting is kept by the browser
        }
        browser.goto(&relay.url); // leave the page, so the next goto is a fresh load
        let input = reopen(&browser, &far_url);
        // Predictive echo acts once the page has measured the round trip (the status bar shows it).
        wait_until(Duration::from_secs(30), "a round trip of 100 ms measured", || {
            let status = browser.execute("return document.getElementById('status').textContent", json!([]));
            let ms = status.as_str()?.split("round trip ").nth(1)?.split(' ').next()?.parse::<u64>().ok()?;
            (ms >= 90).then_some(())
        });
        let Keys { p50, p99, n, predicted, hops } = real_keystrokes(&browser, TETHER, &input);
        let setting = if on { "on " } else { "off" };
        println!(
            "  real key, 100 ms RTT, predictive echo {setting} p50 {p50:.1} ms  p99 {p99:.1} ms ({n} keys, {predicted} \
             painted by prediction; keydown → painted)"
        );
        print!("{hops}");
    }
    click(&browser, "#typeahead-toggle");
    browser.goto(&invite);
    wait_until(Duration::from_secs(30), "the page back on the near path", || browser.find(".tab.files-tab"));

    files_bench(&browser, &scratch, &downloads);
    drop(browser);
    sshx_bench(&scratch, &home);
}

/// The page's terminal in sshx (`window.benchTerm`, from the local patch `sshx_bench` names).
const SSHX: Target = Target { term: "window.benchTerm", area: "textarea[data-bench]" };

/// sshx beside us, measured the same way in the same Chromium: `seq`, `cat`, real keys. It runs
/// from a checkout of ekzhang/sshx named by `SSHX_DIR`, built there (`cargo build --release`,
/// `npm ci && npm run build`) with a local patch that is never committed here: its page puts
/// its xterm.js `Terminal` on `window.benchTerm` and its "new terminal" on
/// `window.benchCreate`. Without `SSHX_DIR` the bench says it was not measured.
fn sshx_bench(scratch: &Path, home: &Path) {
    let Some(dir) = std::env::var_os("SSHX_DIR").map(PathBuf::from) else {
        println!("  sshx beside us      not measured: set SSHX_DIR to a built, patched sshx checkout");
        return;
    };
    let port = tether_tests::cluster::free_port();
    let server = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(dir.join("target/release/sshx-server"));
    command.args(["--listen", "127.0.0.1", "--port", &port.to_string()]).current_dir(&dir);
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let _server = Guard::spawn(command);
    wait_until(Duration::from_secs(30), "sshx-server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // Its host side, with the same shell and empty home as ours.
    let mut command = Command::new(dir.join("target/release/sshx"));
    command.args(["--server", &server, "--quiet"]).env("SHELL", "/bin/bash").env("HOME", home).current_dir(home);
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
    let mut client = Guard::spawn(command);
    let stdout = client.take_stdout().expect("sshx's stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim().starts_with("http") {
                let _ = tx.send(line.trim().to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("sshx prints its link");

    let browser = Browser::start(scratch);
    browser.goto(&server);
    browser.execute("localStorage.setItem('sshx-settings-store', JSON.stringify({ name: 'bench' }))", json!([]));
    browser.goto(&url);
    // A terminal of its own (sshx starts with none open in a new session): asked for once its
    // page is up, and again only if none came within a few seconds. Keys go to its textarea.
    wait_until(Duration::from_secs(60), "sshx's terminal", || {
        browser.execute("if (window.benchCreate) window.benchCreate(); return null", json!([]));
        (0..50).find_map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            browser
                .execute(
                    "const t = window.benchTerm; if (!t || !t.textarea) return null; \
                     t.textarea.setAttribute('data-bench', ''); return true",
                    json!([]),
                )
                .as_bool()
        })
    });
    let input = wait_until(Duration::from_secs(30), "sshx's textarea", || browser.find(SSHX.area));
    wait_until(Duration::from_secs(30), "sshx's prompt", || {
        terminal_lines(&browser, SSHX).iter().any(|l| !l.trim().is_empty()).then_some(())
    });
    // Keys first (into `cat`, as ours), then the floods: typed after a flood, its page took no
    // keys for minutes here.
    browser.send_keys(&input, "cat\n");
    std::thread::sleep(Duration::from_millis(500));
    let Keys { p50, p99, n, .. } = real_keystrokes(&browser, SSHX, &input);
    println!("  sshx: real key → echo p50 {p50:.2} ms  p99 {p99:.2} ms ({n} WebDriver key events, keydown → painted)");
    browser.send_keys(&input, "\u{3}"); // Ctrl+C: back to the shell
    std::thread::sleep(Duration::from_millis(500));
    let said = |bulk: Option<Bulk>| bulk.map_or(format!("not on screen within {SSHX_BULK:?}"), |b| b.to_string());
    let seq =
        bulk_within(&browser, SSHX, &input, "clear; seq 1 200000; echo seq-$((1+1))-done", "seq-2-done", SSHX_BULK);
    println!("  sshx: seq 1 200000  {}", said(seq));
    let file = scratch.join("bulk.b64");
    let command = format!("clear; cat {}; echo cat-$((5+5))-done", file.display());
    let cat = bulk_within(&browser, SSHX, &input, &command, "cat-10-done", SSHX_BULK);
    println!("  sshx: cat base64    {}", said(cat));
}

/// CPU seconds used so far on this machine, by who used them: what bounds a flood when every
/// part of the path shares the machine's cores. From `/proc`, thread by thread; Chromium's by
/// process type (`--type=` on its command line) and, in the renderer, by thread. Beside them,
/// how long the page's main thread was ready to run but waited for a core (its `schedstat`):
/// the share of a flood's time that more busy threads than cores cost it.
struct CpuTimes {
    used: Vec<(&'static str, f64)>,
    main_waited: f64,
}

impl CpuTimes {
    const PARTS: [&'static str; 10] = [
        "page main thread",
        "link worker",
        "renderer's thread pool (WebCrypto, V8's GC)",
        "renderer's other threads",
        "Chromium's network service",
        "Chromium's GPU process",
        "Chromium's browser process",
        "relay",
        "agent",
        "the rest",
    ];

    fn now() -> CpuTimes {
        const TICKS_PER_S: f64 = 100.0; // USER_HZ on Linux
        const NS_PER_S: f64 = 1e9;
        let mut used = vec![0.0; Self::PARTS.len()];
        let mut main_waited = 0.0;
        for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else { continue };
            let name = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            let command = std::fs::read(process.path().join("cmdline")).unwrap_or_default();
            let command = String::from_utf8_lossy(&command);
            for thread in std::fs::read_dir(process.path().join("task")).into_iter().flatten().flatten() {
                let tid = thread.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
                let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
                let thread_name = std::fs::read_to_string(thread.path().join("comm")).unwrap_or_default();
                // Fields after the name's closing parenthesis: state is the first, utime the 12th.
                let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
                let ticks: f64 =
                    fields.get(11..13).map_or(0.0, |t| t.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
                let part = match name.trim() {
                    n if n.starts_with("chromium") || n.starts_with("chrome") => {
                        if command.contains("--type=renderer") {
                            if thread_name.starts_with("DedicatedWorker") {
                                1
                            } else if tid == pid {
                                0
                            } else if thread_name.starts_with("ThreadPool") {
                                2
                            } else {
                                3
                            }
                        } else if command.contains("NetworkService") {
                            4
                        } else if command.contains("--type=gpu-process") {
                            5
                        } else if !command.contains("--type=") {
                            6
                        } else {
                            9 // zygote, storage, audio and the like
                        }
                    }
                    "tether-relay" => 7,
                    "tether" => 8,
                    _ => 9,
                };
                used[part] += ticks / TICKS_PER_S;
                if part == 0 {
                    // On a CPU, waiting on a run queue (ns), time slices.
                    let schedstat = std::fs::read_to_string(thread.path().join("schedstat")).unwrap_or_default();
                    let waited = schedstat.split_whitespace().nth(1).and_then(|ns| ns.parse::<f64>().ok());
                    main_waited += waited.unwrap_or(0.0) / NS_PER_S;
                }
            }
        }
        CpuTimes { used: Self::PARTS.iter().copied().zip(used).collect(), main_waited }
    }

    /// What each part used since `before`.
    fn since(&self, before: &CpuTimes) -> CpuTimes {
        CpuTimes {
            used: self.used.iter().zip(&before.used).map(|(&(part, now), &(_, then))| (part, now - then)).collect(),
            main_waited: self.main_waited - before.main_waited,
        }
    }

    /// What the page's main thread ran for.
    fn main_ran(&self) -> f64 {
        self.used[0].1
    }

    fn total(&self) -> f64 {
        self.used.iter().map(|(_, s)| s).sum()
    }

    /// What each part used, over `seconds` of wall time on this machine's cores.
    fn report(&self, seconds: f64) -> String {
        let total = self.total();
        let parts: Vec<String> = self.used.iter().map(|(part, s)| format!("{part} {s:.2}")).collect();
        format!(
            "{} s — {total:.2} CPU-s in {seconds:.2} s on {} cores ({:.0}% of the machine); the page's main thread \
             waited {:.2} s for a core",
            parts.join(", "),
            cores(),
            100.0 * total / (seconds * cores() as f64),
            self.main_waited
        )
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// xterm.js alone writing what a bulk output wrote, beside the page's figure, and what bounds
/// the page's: the CPU the whole path used, spread over all of the machine's cores, is the least
/// wall time this machine could take for it — printed as a ratio to xterm.js alone; and the
/// page's main thread, which runs xterm.js: what it ran for beside xterm.js alone's, and how
/// long it waited for a core that the rest of the path had.
fn compare_with_alone(browser: &Browser, kind: &str, page: &Bulk, used: &CpuTimes) {
    let (alone, alone_used) = xterm_alone(browser, kind);
    println!(
        "    xterm.js alone    {:.2} s first write → last line painted, longest task {:.0} ms, {} renders, output parsed from {:.0} to {:.0} ms: the page takes {:.2}× that",
        alone.seconds,
        alone.longest_task_ms,
        alone.renders,
        alone.parsed.map_or(f64::NAN, |p| p.0),
        alone.parsed.map_or(f64::NAN, |p| p.1),
        page.seconds / alone.seconds
    );
    println!("    CPU xterm.js alone {}", alone_used.report(alone.outside));
    let alone = alone.seconds;
    let floor = used.total() / cores() as f64;
    println!(
        "    floor on {} cores  {floor:.2} s ({:.2}× xterm.js alone): the page's path used {:.2} CPU-s, {:.2} more than xterm.js alone",
        cores(),
        floor / alone,
        used.total(),
        used.total() - alone_used.total()
    );
    println!(
        "    page main thread  ran {:.2} s ({:.2}× xterm.js alone's {:.2} s), waited {:.2} s for a core",
        used.main_ran(),
        used.main_ran() / alone_used.main_ran(),
        alone_used.main_ran(),
        used.main_waited
    );
}

/// Where a page keeps its terminal: a JS expression for its xterm.js `Terminal`, and the CSS
/// selector of the textarea its keys go to (`$TERM$` and `$AREA$` in the bench's scripts).
#[derive(Clone, Copy)]
struct Target {
    term: &'static str,
    area: &'static str,
}

const TETHER: Target = Target {
    term: "document.querySelector('.pane:not(.hidden) .terminal').xterm",
    area: ".pane:not(.hidden) .xterm-helper-textarea",
};

impl Target {
    fn script(&self, js: &str) -> String {
        js.replace("$TERM$", self.term).replace("$AREA$", self.area)
    }
}

/// A bulk output's figures: Enter → the render showing its last line, timed in the page.
struct Bulk {
    seconds: f64,
    /// The same from outside: WebDriver's send → the page's answer that it is shown.
    outside: f64,
    /// The longest main-thread task meanwhile (Long Tasks API; 0: none over 50 ms).
    longest_task_ms: f64,
    /// Renders of the terminal meanwhile: a page showing output as it streams in paints a
    /// frame's worth of rows each frame, where xterm.js given everything at once paints few.
    renders: f64,
    /// When xterm.js parsed the first and the last of the output, ms from the start: before the
    /// first, the command starting and its output on its way; between them, the output
    /// streaming in (or, alone, being parsed); after the last, the frame that paints it.
    parsed: Option<(f64, f64)>,
}

impl Bulk {
    /// From what `WATCH_FLOOD` recorded in the page, and the time from outside.
    fn of(flood: &Value, outside: f64) -> Bulk {
        let figure = |name: &str| flood[name].as_f64().unwrap_or(f64::NAN);
        let start = figure("start");
        Bulk {
            seconds: (figure("shown") - start) / 1000.0,
            outside,
            longest_task_ms: figure("longest"),
            renders: figure("renders"),
            parsed: flood["first"]
                .as_f64()
                .zip(flood["last"].as_f64())
                .map(|(first, last)| (first - start, last - start)),
        }
    }
}

/// In-page: `watchFlood(term, last, done)` watches `term` from when the returned record is given
/// its `start` (a `performance.now()` time) until a render shows `last`: the longest task, the
/// renders and when the first and last output was parsed meanwhile, then when it was `shown`;
/// `done(record)` is called once it is. One watcher for the page's terminal and for xterm.js
/// alone, so both are timed alike.
const WATCH_FLOOD: &str = "const watchFlood = (term, last, done) => { \
    const flood = { start: null, shown: null, longest: 0, renders: 0, first: null, last: null }; \
    const tasks = new PerformanceObserver((list) => { \
      for (const t of list.getEntries()) flood.longest = Math.max(flood.longest, t.duration); }); \
    tasks.observe({ type: 'longtask' }); \
    const parsed = term.onWriteParsed && term.onWriteParsed(() => { \
      if (flood.start === null || flood.shown !== null) return; \
      flood.last = performance.now(); if (flood.first === null) flood.first = flood.last; }); \
    const rendered = term.onRender(() => { \
      if (flood.start === null) return; \
      flood.renders++; \
      const buf = term.buffer.active; \
      for (let i = buf.viewportY; i < buf.viewportY + term.rows; i++) { \
        const line = buf.getLine(i); \
        if (line && line.translateToString(true) === last) { \
          flood.shown = performance.now(); rendered.dispose(); if (parsed) parsed.dispose(); \
          setTimeout(() => { tasks.disconnect(); done(flood); }, 0); return; } } }); \
    return flood; }; ";

impl std::fmt::Display for Bulk {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s Enter → last line painted (from outside: {:.2} s), longest main-thread task {:.0} ms, {} renders",
            self.seconds, self.outside, self.longest_task_ms, self.renders
        )?;
        match self.parsed {
            Some((first, last)) => write!(f, ", output parsed from {first:.0} to {last:.0} ms"),
            None => Ok(()),
        }
    }
}

/// Type `command` and Enter; time in the page from the Enter's `keydown` to the first render
/// whose screen shows `last_line` (output is written in order, so every byte before it was too).
fn bulk(browser: &Browser, target: Target, input: &str, command: &str, last_line: &str) -> Bulk {
    bulk_within(browser, target, input, command, last_line, BULK)
        .unwrap_or_else(|| panic!("{last_line:?} not on screen within {BULK:?}"))
}

/// `bulk`, or `None` when the last line is not on screen within `limit`.
fn bulk_within(
    browser: &Browser,
    target: Target,
    input: &str,
    command: &str,
    last_line: &str,
    limit: Duration,
) -> Option<Bulk> {
    let watch = target.script(
        "const [last] = arguments; \
         const area = document.querySelector('$AREA$'); \
         const bulk = window.tetherBulk = watchFlood($TERM$, last, () => { if (bulk.wake) bulk.wake(); }); \
         const onKey = (e) => { if (e.key === 'Enter') { bulk.start = e.timeStamp; area.removeEventListener('keydown', onKey, true); } }; \
         area.addEventListener('keydown', onKey, true);",
    );
    browser.execute(&format!("{WATCH_FLOOD}{watch}"), json!([last_line]));
    let started = Instant::now();
    browser.send_keys(input, &format!("{command}\n"));
    // The page says when the line is shown: nothing polls it meanwhile, which would take the
    // main thread (and Chromium's browser process) from the flood being measured. Each wait is
    // shorter than WebDriver's 30 s script timeout.
    let wait = "const done = arguments[arguments.length - 1]; const b = window.tetherBulk; \
                const answer = () => done(b.shown === null ? null : b); \
                if (b.shown !== null) { answer(); return; } \
                b.wake = answer; setTimeout(answer, 20000);";
    let flood = loop {
        let flood = browser.execute_async(wait, json!([]));
        if flood["shown"].is_number() {
            break flood;
        }
        if started.elapsed() > limit {
            return None;
        }
    };
    Some(Bulk::of(&flood, started.elapsed().as_secs_f64()))
}

/// The limit for a bulk output: xterm.js alone, in the same page, at the app terminal's place
/// and size and with its options, writing the same output (`seq`: the same lines; `cat`: 15 MB
/// of fresh random bytes as base64, 76 characters a line, as the PTY gives them) in 64 KiB
/// writes queued at once, from the first write to the render showing the last line; and the
/// CPU used meanwhile (the output is made before, outside that).
fn xterm_alone(browser: &Browser, kind: &str) -> (Bulk, CpuTimes) {
    browser.execute(
        "const [kind] = arguments; \
         const lines = []; let last; \
         if (kind === 'seq') { \
           for (let i = 1; i <= 200000; i++) lines.push(String(i)); last = 'seq-2-done'; \
         } else { \
           const raw = new Uint8Array(15000000); \
           for (let i = 0; i < raw.length; i += 65536) crypto.getRandomValues(raw.subarray(i, i + 65536)); \
           let b64 = ''; \
           for (let i = 0; i < raw.length; i += 57000) b64 += btoa(String.fromCharCode.apply(null, raw.subarray(i, i + 57000))); \
           for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76)); last = 'cat-10-done'; \
         } \
         lines.push(last); \
         window.tetherAlone = { last, bytes: new TextEncoder().encode(lines.join('\\r\\n') + '\\r\\n') };",
        json!([kind]),
    );
    let (before, started) = (CpuTimes::now(), Instant::now());
    let script = "const done = arguments[arguments.length - 1]; \
         const { last, bytes } = window.tetherAlone; delete window.tetherAlone; \
         const app = document.querySelector('.pane:not(.hidden) .terminal'); \
         const r = app.getBoundingClientRect(); \
         const box = document.createElement('div'); \
         box.style.cssText = `position: fixed; left: ${r.left}px; top: ${r.top}px; width: ${r.width}px; \
           height: ${r.height}px; z-index: 100; background: #101418`; \
         document.body.appendChild(box); \
         const term = new Terminal({ fontSize: 14, scrollback: 10000, cols: app.xterm.cols, rows: app.xterm.rows, \
           theme: { background: '#101418' } }); \
         term.open(box); \
         const flood = watchFlood(term, last, () => { term.dispose(); box.remove(); done(flood); }); \
         flood.start = performance.now(); \
         for (let i = 0; i < bytes.length; i += 65536) term.write(bytes.subarray(i, i + 65536));";
    let flood = browser.execute_async(&format!("{WATCH_FLOOD}{script}"), json!([]));
    (Bulk::of(&flood, started.elapsed().as_secs_f64()), CpuTimes::now().since(&before))
}

/// Open `url` and wait for its terminal: the newest session (the `cat` the keystrokes go to),
/// attached once its output is replayed. Returns the terminal's input element.
fn reopen(browser: &Browser, url: &str) -> String {
    browser.goto(url);
    let input = wait_until(Duration::from_secs(60), "the terminal", || {
        browser.find(".pane:not(.hidden) .xterm-helper-textarea")
    });
    wait_until(Duration::from_secs(60), "the session replayed", || {
        let seq =
            browser.execute("return document.querySelector('.pane:not(.hidden) .terminal').dataset.seq", json!([]));
        (seq.as_str().and_then(|s| s.parse::<u64>().ok())? > 0).then_some(())
    });
    input
}

/// A Rust source file of about `bytes`.
fn write_source(path: &Path, bytes: usize) {
    let unit = "/// Adds two numbers, and says so.\npub fn add(a: u64, b: u64) -> u64 {\n    let sum = a + b; // no overflow here\n    println!(\"{a} + {b} = {sum}\");\n    sum\n}\n\n";
    std::fs::write(path, unit.repeat(bytes / unit.len() + 1)).expect("source file");
}

/// Press Enter on `name` in the Files tab; ms from the keydown to the first frame painted with
/// its text in an editor.
fn enter_to_painted(browser: &Browser, name: &str) -> f64 {
    browser.execute(
        "[...document.querySelectorAll('.pane.files .file')].find(r => r.dataset.name === arguments[0]).click()",
        json!([name]),
    );
    browser.execute(
        "window.tetherPainted = null; const name = arguments[0]; \
         document.addEventListener('keydown', function started(e) { \
           if (e.key !== 'Enter') return; document.removeEventListener('keydown', started, true); \
           const t0 = performance.now(); \
           const look = () => { \
             const pane = [...document.querySelectorAll('.editor-pane')].find(p => p.dataset.path.endsWith('/' + name)); \
             if (pane && pane.querySelector('.cm-line')) { \
               requestAnimationFrame(() => { window.tetherPainted = performance.now() - t0; }); return; } \
             requestAnimationFrame(look); }; \
           look(); }, true);",
        json!([name]),
    );
    let list = browser.find(".pane.files .file-list").expect("the file list");
    browser.send_keys(&list, "\u{E007}");
    wait_until(Duration::from_secs(60), "the editor's first screen", || {
        browser.execute("return window.tetherPainted", json!([])).as_f64()
    })
}

/// Bytes of the page's resources under `/editor/` so far: (files, raw bytes, gzip -9 bytes of
/// the same files in the web root).
fn editor_resources(browser: &Browser) -> (usize, u64, u64) {
    let names = browser.execute(
        "return performance.getEntriesByType('resource').map(r => new URL(r.name).pathname) \
         .filter(p => p.startsWith('/editor/'))",
        json!([]),
    );
    let names: Vec<String> = serde_json::from_value(names).unwrap_or_default();
    let root = web_root();
    let (mut raw, mut gzipped) = (0, 0);
    for name in &names {
        let file = root.join(name.trim_start_matches('/'));
        raw += std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let gzip = Command::new("gzip").args(["-9", "-c"]).arg(&file).output().expect("gzip");
        gzipped += gzip.stdout.len() as u64;
    }
    (names.len(), raw, gzipped)
}

fn editor_bench(browser: &Browser, scratch: &Path) {
    let (files, raw, _) = editor_resources(browser);
    println!("  editor on first load {files} files, {raw} B (loaded when an editor opens)");
    let place = scratch.join("sources");
    std::fs::create_dir_all(&place).expect("sources dir");
    write_source(&place.join("cold.rs"), 1_000_000);
    write_source(&place.join("warm.rs"), 1_000_000);
    click(browser, ".tab.files-tab");
    files_go(browser, &place);
    let cold = enter_to_painted(browser, "cold.rs");
    // The language's chunk comes after the first screen: counted once its colours are on screen.
    wait_until(Duration::from_secs(30), "Rust highlighting", || {
        let script = "return !!document.querySelector('.editor-pane .cm-line span[class^=\"ͼ\"]')";
        (browser.execute(script, json!([])) == json!(true)).then_some(())
    });
    let (files, raw, gzipped) = editor_resources(browser);
    println!("  editor bundle       {files} files, {raw} B, {gzipped} B gzip -9 (on first open, Rust included)");
    click(browser, ".tab.files-tab");
    let warm = enter_to_painted(browser, "warm.rs");
    println!("  Enter → 1 MB .rs painted  {cold:.0} ms cold (bundle loaded), {warm:.0} ms warm");
    browser.execute("document.querySelector('.tab[data-session]').click()", json!([]));
}

const TRANSFER_BYTES: u64 = 200_000_000; // 200 MB

/// Type `path` into the Files tab's path field and wait for its listing.
fn files_go(browser: &Browser, dir: &Path) {
    // Once the pane is shown (a click on its tab renders it a moment later).
    let field =
        wait_until(Duration::from_secs(30), "the path field", || browser.find(".pane.files:not(.hidden) .goto .path"));
    browser.execute("document.querySelector('.pane.files .goto .path').value = ''", json!([]));
    browser.send_keys(&field, &format!("{}\n", dir.display()));
    let wanted = dir.display().to_string();
    wait_until(Duration::from_secs(30), "the listing", || {
        let path = browser.execute("return document.querySelector('.pane.files').dataset.path", json!([]));
        (path.as_str() == Some(wanted.as_str())).then_some(())
    });
}

fn click(browser: &Browser, css: &str) {
    browser.execute("document.querySelector(arguments[0]).click()", json!([css]));
}

fn write_noise(path: &Path, bytes: u64) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create");
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).expect("write");
        left -= n as u64;
    }
}

/// Upload and download through the Files tab, and keystrokes while an upload runs.
fn files_bench(browser: &Browser, scratch: &Path, downloads: &Path) {
    let place = scratch.join("files");
    std::fs::create_dir_all(&place).expect("files dir");
    let local = scratch.join("upload.bin");
    write_noise(&local, TRANSFER_BYTES);
    // Connected first: a freshly loaded page lands on a session's tab when it connects.
    wait_until(Duration::from_secs(30), "the page connected", || {
        let status = browser.execute("return document.getElementById('status').textContent", json!([]));
        status.as_str()?.starts_with("connected").then_some(())
    });
    click(browser, ".tab.files-tab");
    files_go(browser, &place);

    let input = browser.find(".pane.files .file-input").expect("the file input");
    let before = CpuTimes::now();
    let started = Instant::now();
    browser.send_keys(&input, &local.display().to_string());
    wait_until(BULK, "the upload", || {
        (std::fs::metadata(place.join("upload.bin")).map(|m| m.len()).unwrap_or(0) == TRANSFER_BYTES).then_some(())
    });
    let up = started.elapsed();
    let up_cpu = CpuTimes::now().since(&before).report(up.as_secs_f64());

    files_go(browser, &place);
    browser.execute(
        "[...document.querySelectorAll('.pane.files .file')].find(r => r.dataset.name === 'upload.bin').click()",
        json!([]),
    );
    let before = CpuTimes::now();
    let started = Instant::now();
    click(browser, ".pane.files .download");
    let saved = downloads.join("upload.bin");
    wait_until(BULK, "the download", || {
        let complete = std::fs::metadata(&saved).map(|m| m.len() == TRANSFER_BYTES).unwrap_or(false);
        (complete && !downloads.join("upload.bin.crdownload").exists()).then_some(())
    });
    let down = started.elapsed();
    let down_cpu = CpuTimes::now().since(&before).report(down.as_secs_f64());
    let rate = |d: Duration| TRANSFER_BYTES as f64 / 1e6 / d.as_secs_f64();
    println!(
        "  Files upload        {:.1} MB/s   download {:.1} MB/s ({} MB)",
        rate(up),
        rate(down),
        TRANSFER_BYTES / 1_000_000
    );
    println!("    CPU upload        {up_cpu}");
    println!("    CPU download      {down_cpu}");

    // Keystrokes in the terminal while the same connection uploads.
    let big = scratch.join("big-upload.bin");
    write_noise(&big, 5 * TRANSFER_BYTES);
    browser.send_keys(&input, &big.display().to_string());
    wait_until(BULK, "the upload to be under way", || {
        std::fs::read_dir(&place).ok()?.flatten().find(|e| {
            e.file_name().to_string_lossy().ends_with(".tether-upload")
                && e.metadata().map(|m| m.len() > 20_000_000).unwrap_or(false)
        })
    });
    browser.execute("document.querySelector('.tab[data-session]').click()", json!([]));
    std::thread::sleep(Duration::from_millis(300));
    let (p50, p99, _) = echo_in_page(browser, KEYSTROKES);
    let still = std::fs::metadata(place.join("big-upload.bin")).is_err();
    println!(
        "  echo during upload p50 {p50:.2} ms  p99 {p99:.2} ms{}",
        if still { "" } else { "   (the upload ended before the last key)" }
    );
    for file in [&local, &big] {
        let _ = std::fs::remove_file(file);
    }
}

/// Run before the app's scripts: timestamps of every message the page posts to its link worker
/// (which holds the connection, seals and sends) and every message it hears back (opened
/// output), and of animation frames. The app's bindings take `postMessage` from the prototype
/// when they load, so it is wrapped first.
const LINK_TRACE: &str = "
(() => {
  const trace = window.tetherTrace = { sends: [], messages: [], frames: [] };
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) => raf((t) => { trace.frames.push(performance.now()); callback(t); });
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (...args) { trace.sends.push(performance.now()); return post.apply(this, args); };
  const Native = window.Worker;
  const Traced = function (...args) {
    const worker = new Native(...args);
    worker.addEventListener('message', () => trace.messages.push(performance.now()));
    return worker;
  };
  Traced.prototype = Native.prototype;
  window.Worker = Traced;
})();
";

/// Real keys' figures: p50, p99, keys, how many of them predictive echo showed first.
struct Keys {
    p50: f64,
    p99: f64,
    n: usize,
    predicted: u64,
    /// The median of each hop on the way, as a line to print under the figure (empty where the
    /// page has no trace of its link: sshx).
    hops: String,
}

/// Real key events, one at a time, typed by WebDriver into xterm.js's textarea; the page times
/// each from its `keydown` (the event's own time stamp) to the render in which the cursor moved,
/// or to the frame that paints the key's prediction if predictive echo drew it first. WebDriver's
/// own pace gives each key a random phase against the page's frames.
fn real_keystrokes(browser: &Browser, target: Target, input: &str) -> Keys {
    browser.execute(
        &target.script("const term = $TERM$; \
         const area = document.querySelector('$AREA$'); \
         const trace = window.tetherTrace || { sends: [], messages: [], frames: [] }; \
         window.tetherKeys = []; window.tetherHops = []; \
         const cursor = () => `${term.buffer.active.cursorY + term.buffer.active.baseY}:${term.buffer.active.cursorX}`; \
         const parsed = []; term.onWriteParsed(() => parsed.push(performance.now())); \
         const after = (list, t) => { for (let i = list.length - 1; i >= 0; i--) { if (list[i] < t) return list[i + 1]; } return list[0]; }; \
         const overlay = document.querySelector('.pane:not(.hidden) .typeahead'); \
         const predicted = () => overlay && overlay.style.display !== 'none' ? \
           `${overlay.getAttribute('data-text')}@${overlay.getAttribute('data-cursor')}` : ''; \
         window.tetherPredicted = 0; \
         /* On the window, capturing: before xterm.js's own listener, which draws a prediction. */ \
         window.addEventListener('keydown', (e) => { if (e.target !== area) return; \
           const before = cursor(); const shown = predicted(); const key = e.timeStamp; let done = false; \
           const sub = term.onRender(() => { \
             if (!done && cursor() !== before) { done = true; sub.dispose(); watch.disconnect(); const painted = performance.now(); \
               const sent = after(trace.sends, key); const message = after(trace.messages, sent); \
               window.tetherKeys.push(painted - key); \
               const parsedAt = after(parsed, message); \
               window.tetherHops.push({ key, sent, message, parsed: parsedAt, frame: after(trace.frames, parsedAt), painted }); } }); \
           /* Predictive echo: the key drawn over the terminal, painted in the next frame. */ \
           const watch = new MutationObserver(() => { \
             if (!done && predicted() && predicted() !== shown) { done = true; sub.dispose(); watch.disconnect(); \
               requestAnimationFrame(() => { window.tetherPredicted++; window.tetherKeys.push(performance.now() - key); }); } }); \
           if (overlay) watch.observe(overlay, { attributes: true }); \
         }, true);"),
        json!([]),
    );
    for n in 1..=KEYSTROKES {
        browser.send_keys(input, "k");
        wait_until(Duration::from_secs(10), "a real key's echo", || {
            (browser.execute("return window.tetherKeys.length", json!([])).as_u64()? >= n as u64).then_some(())
        });
    }
    // Where the time goes, median per hop: the key to the link worker (event, xterm.js), the
    // round trip (the worker's sealing and opening, relay, host, program), parsing the echo, and
    // waiting to paint it.
    let hops = browser.execute(
        "const h = window.tetherHops.filter(h => h.sent && h.message).map(h => { \
           const parsed = Math.min(h.parsed || h.painted, h.painted); \
           const frame = Math.min(Math.max(h.frame || h.painted, parsed), h.painted); \
           return { ...h, parsed, frame }; }); \
         const median = (f) => { const v = h.map(f).sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; }; \
         return [median(h => h.sent - h.key), median(h => h.message - h.sent), \
                 median(h => h.parsed - h.message), median(h => h.frame - h.parsed), median(h => h.painted - h.frame), h.length]",
        json!([]),
    );
    let hops: Vec<f64> = serde_json::from_value(hops).unwrap_or_default();
    let hops = match hops[..] {
        [to_worker, round_trip, parse, frame, paint, n] => format!(
            "    median hops: keydown → to the link worker {to_worker:.2} · → echo back from it {round_trip:.2} · → parsed {parse:.2} · \
             → animation frame {frame:.2} · → painted {paint:.2} ms ({n} keys)\n"
        ),
        _ => String::new(),
    };
    let samples = browser.execute("return window.tetherKeys", json!([]));
    let mut samples: Vec<f64> = serde_json::from_value(samples).expect("samples");
    samples.sort_by(f64::total_cmp);
    let predicted = browser.execute("return window.tetherPredicted", json!([])).as_u64().unwrap_or(0);
    Keys { p50: samples[samples.len() / 2], p99: samples[samples.len() * 99 / 100], n: samples.len(), predicted, hops }
}

fn terminal_lines(browser: &Browser, target: Target) -> Vec<String> {
    let script = target.script(
        "const term = $TERM$; \
                  const buf = term.buffer.active; const lines = []; \
                  for (let i = buf.viewportY; i < buf.viewportY + term.rows; i++) { \
                    const line = buf.getLine(i); lines.push(line ? line.translateToString(true) : ''); } \
                  return lines",
    );
    let value: Value = browser.execute(&script, json!([]));
    serde_json::from_value(value).unwrap_or_default()
}

fn wasm_size(dist: &Path) -> (u64, u64) {
    let wasm = std::fs::read_dir(dist)
        .expect("dist")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))
        .expect("a .wasm in dist");
    let raw = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    let gzip = Command::new("gzip").args(["-9", "-c"]).arg(&wasm).output().expect("gzip");
    (raw, gzip.stdout.len() as u64)
}
