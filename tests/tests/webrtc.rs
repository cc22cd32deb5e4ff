//! The WebRTC upgrade with real processes, each test in a private network namespace of its own
//! (`netns`): a real relay, host agent, CLI, coturn and Chromium, and nftables to block UDP.
//! What a user checks: which path `tether -v` and the status bar name, that transfers arrive
//! byte-exact, how many bytes the relay forwarded (its own count, from its log), and that a
//! data channel that dies mid-flood loses nothing and comes back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tether_tests::agent::{pair, wait_reachable, Agent};
use tether_tests::netns::{self, TURN_PORT, TURN_RELAY_PORTS, TURN_SIDE};
use tether_tests::page::{assert_no_console_errors, bash_host, Page};
use tether_tests::process::Guard;
use tether_tests::turn::TurnServer;
use tether_tests::webdriver::Browser;
use tether_tests::{marker, relay_forwarded, wait_until, Relay, Scratch};

/// What the CLI floods through `exec`, and the page through `cat`.
const EXEC_BYTES: usize = 100_000_000; // 100 MB
const CAT_BYTES: usize = 15_000_000; // 15 MB of randomness, 20 MB as base64
/// Enough for a flood through a debug build on a loaded 2-core machine, and for a retry.
const BULK: Duration = Duration::from_secs(240);
const WEBRTC_FLAGS: &[&str] = &["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"];

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// One test's world, in its own network: relay (logging what it forwarded), maybe coturn, a
/// paired host whose shell is bash, and a client agent that reached it.
struct World {
    dir: Scratch,
    relay: Relay,
    relay_log: PathBuf,
    host: Agent,
    invite: String,
    client: Agent,
    _turn: Option<TurnServer>,
}

impl World {
    fn new(with_turn: bool) -> World {
        World::with(with_turn, &[])
    }

    /// With more `tether-relay` arguments.
    fn with(with_turn: bool, relay_args: &[&str]) -> World {
        netns::enter();
        let dir = Scratch::dir(scratch(), "webrtc");
        let relay_log = dir.join("relay.log");
        let (turn, extra) = match with_turn {
            true => {
                let secret = marker("turn-secret");
                let secret_file = dir.join("turn-secret");
                std::fs::write(&secret_file, &secret).expect("secret file");
                let turn = TurnServer::start_on(&dir, &secret, TURN_SIDE, TURN_PORT, TURN_RELAY_PORTS);
                let url = format!("turn:{TURN_SIDE}:{TURN_PORT}");
                (Some(turn), vec!["--turn-url".to_owned(), url, "--turn-secret-file".to_owned(), path(&secret_file)])
            }
            false => (None, Vec::new()),
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).chain(relay_args.iter().copied()).collect();
        let relay = Relay::start_logging(&extra, &relay_log);
        let (host, _) = bash_host(scratch(), &[]);
        let invite = pair(&host, &relay);
        let client = Agent::new(scratch());
        wait_reachable(&client, &invite);
        World { dir, relay, relay_log, host, invite, client, _turn: turn }
    }

    /// A file of `bytes` random bytes; its path and SHA-256.
    fn random_file(&self, name: &str, bytes: usize) -> (PathBuf, String) {
        let file = self.dir.join(name);
        let make = format!("head -c {bytes} /dev/urandom > {}", file.display());
        assert!(Command::new("sh").args(["-c", &make]).status().is_ok_and(|s| s.success()));
        let digest = sha256_hex(&std::fs::read(&file).expect("the file"));
        (file, digest)
    }

    /// Client connections the relay has seen end: (connection id, bytes to the host, bytes to
    /// the client), as its log says.
    fn forwarded(&self) -> Vec<(u64, u64, u64)> {
        relay_forwarded(&self.relay_log).iter().map(|f| (f.conn, f.to_host_bytes, f.to_client_bytes)).collect()
    }

    /// The newest connection id the relay has logged the end of.
    fn last_logged(&self) -> u64 {
        self.forwarded().iter().map(|&(conn, ..)| conn).max().unwrap_or(0)
    }

    /// Wait for the relay to log the end of a connection newer than `after`; the bytes it
    /// forwarded for every such connection, (to the host, to the client).
    fn forwarded_since(&self, after: u64) -> (u64, u64) {
        wait_until(Duration::from_secs(30), "the relay to log the connection's end", || {
            let newer: Vec<_> = self.forwarded().into_iter().filter(|&(conn, ..)| conn > after).collect();
            (!newer.is_empty()).then(|| newer.iter().fold((0, 0), |(u, d), &(_, up, down)| (u + up, d + down)))
        })
    }

    /// How many client connections the host has said moved to a data channel (its daemon log).
    fn host_moves(&self) -> usize {
        self.host_said("moved to a data channel")
    }

    /// The host's daemon log so far.
    fn host_log(&self) -> String {
        std::fs::read_to_string(self.host.state.join("daemon.log")).unwrap_or_default()
    }

    /// How many times the host's daemon log says `what`.
    fn host_said(&self, what: &str) -> usize {
        self.host_log().matches(what).count()
    }

    /// What the host's daemon log says about data channels and the relay (for failure messages).
    fn host_path_log(&self) -> String {
        let log = self.host_log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("data channel") || l.contains("relay")).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// How many data channel attempts have failed, as the host saw it: either side may give up
    /// first (the host's ICE, or the client's negotiation deadline).
    fn host_attempts_failed(&self) -> usize {
        self.host_said("back on the relay") + self.host_said("hung up data channel attempt")
    }

    /// Wait until the host has moved one more client connection than `before` to a data
    /// channel: a client's side opening first, its host may still send a window's worth on the
    /// relay until its own side has.
    fn wait_host_moved(&self, before: usize) {
        wait_until(BULK, "the host to move the connection to the data channel too", || {
            (self.host_moves() > before).then_some(())
        });
    }

    /// `tether -v exec` of `script` on the host, as a child with its output collected.
    fn spawn_exec(&self, script: &str) -> Exec {
        let mut command = self.client.command();
        command.args(["-v", "exec", &self.invite, "--", "sh", "-c", script]);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("tether exec");
        let (stdout, stderr) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        let stdin = child.stdin.take();
        Exec { process: Guard::adopt(child), stdin, stdout, stderr }
    }

    fn browser(&self) -> Browser {
        Browser::start_with_flags(scratch(), WEBRTC_FLAGS)
    }
}

struct Exec {
    process: Guard,
    stdin: Option<std::process::ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Exec {
    fn stdout_len(&self) -> usize {
        self.stdout.lock().expect("stdout lock").len()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).into_owned()
    }
    /// A line on its stdin.
    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("a line to the exec");
    }
    fn wait_stderr(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        wait_until(timeout, what, || Some(self.stderr()).filter(|s| check(s)))
    }
    /// Wait for it to exit 0; its whole stdout's SHA-256.
    fn finish(mut self) -> (String, String) {
        drop(self.stdin.take());
        let status = self.process.wait_exit(BULK, "tether exec");
        let stderr = self.stderr();
        assert!(status.success(), "tether exec failed: {status:?}\n{stderr}");
        // Its readers may not have taken the last bytes yet: they let go at end of file.
        let stdout = wait_until(Duration::from_secs(10), "exec's output readers to finish", || {
            Arc::strong_count(&self.stdout).eq(&1).then(|| std::mem::take(&mut *self.stdout.lock().expect("lock")))
        });
        (sha256_hex(&stdout), stderr)
    }
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            into.lock().expect("output lock").extend_from_slice(&buffer[..n]);
        }
    });
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `-v`'s line for a move to `route` ("direct", "TURN") after connecting via the relay.
fn moved_to(stderr: &str, route: &str) -> bool {
    stderr.lines().any(|l| l.starts_with("tether: ") && l.contains(&format!(" now via {route} · round trip")))
}

/// A 100 MB exec, let go once `-v` says the data channel carries the connection: byte-exact,
/// over `route`, and the relay forwarded under 1% of it.
fn exec_flood_over(world: &World, route: &str) {
    let (file, digest) = world.random_file("flood", EXEC_BYTES);
    let before = world.last_logged();
    let moves = world.host_moves();
    let mut exec = world.spawn_exec(&format!("read go; cat {}", file.display()));
    exec.wait_stderr(&format!("the exec to move to {route}"), BULK, |s| moved_to(s, route));
    world.wait_host_moved(moves);
    exec.say("go");
    let (got, stderr) = exec.finish();
    assert_eq!(got, digest, "the exec's output, byte for byte\n{stderr}");
    assert!(stderr.contains("via relay · round trip"), "-v says where it started\n{stderr}");
    assert!(moved_to(&stderr, route), "-v says it moved to {route}\n{stderr}");
    let (up, down) = world.forwarded_since(before);
    eprintln!("a 100 MB exec over {route}: the relay forwarded {up} + {down} bytes");
    assert!(up + down < EXEC_BYTES as u64 / 100, "the relay forwarded {up} + {down} bytes of a 100 MB exec\n{stderr}");
}

/// The page lands on the host, its status names `route`, and a 20 MB `cat` reaches the
/// terminal whole; the relay forwarded under 1% of it.
fn browser_cat_over(world: &World, route: &str) {
    let browser = world.browser();
    let page = Page(&browser);
    let before = world.last_logged();
    let moves = world.host_moves();
    browser.goto(&world.invite);
    let id = page.landed();
    page.wait_status(&format!("connected via {route} · round trip"));
    world.wait_host_moved(moves);
    let (file, _) = world.random_file("page-flood", CAT_BYTES);
    let b64 = world.dir.join("page-flood.b64");
    let make = format!("base64 {} > {}", file.display(), b64.display());
    assert!(Command::new("sh").args(["-c", &make]).status().is_ok_and(|s| s.success()));
    page.type_text(&format!("cat {}; echo cat-$((5+5))-done\n", b64.display()));
    world.host.wait_for_line(&id, "cat-10-done");
    let written = wait_until(BULK, "all of the 20 MB cat in the terminal", || {
        let printed = world.host.info(&id)["output_bytes"].as_u64()?;
        let written: u64 = page.terminal_attr(&id, "data-seq")?.parse().ok()?;
        (written == printed && written > 0).then_some(written)
    });
    assert!(written > 20_000_000, "{written} bytes");
    page.wait_text(Some(&id), "cat's end", |t| t.lines().any(|l| l.trim_end() == "cat-10-done"));
    assert!(page.status().contains(&format!("via {route}")), "still {route}: {}", page.status());
    assert_no_console_errors(&browser);
    browser.goto("about:blank");
    let (up, down) = world.forwarded_since(before);
    assert!(
        up + down < written / 100,
        "the relay forwarded {up} + {down} bytes of a {written} byte cat; the host's log on paths:\n{}",
        world.host_path_log()
    );
}

#[test]
fn direct_carries_the_cli_and_the_page_and_the_relay_steps_out() {
    let world = World::new(false);
    exec_flood_over(&world, "direct");
    browser_cat_over(&world, "direct");
}

#[test]
fn with_peer_to_peer_udp_blocked_turn_carries_them() {
    let world = World::new(true);
    netns::block_udp(true);
    exec_flood_over(&world, "TURN");
    browser_cat_over(&world, "TURN");
}

#[test]
fn with_all_udp_blocked_everything_stays_on_the_relay_and_works() {
    let world = World::new(true);
    netns::block_udp(false);
    let bytes = 10_000_000;
    let (file, digest) = world.random_file("relayed", bytes);
    let before = world.last_logged();
    let failed_before = world.host_attempts_failed();
    let mut exec = world.spawn_exec(&format!("read go; cat {}", file.display()));
    // Once an attempt has failed, the flood runs while the client is back off to its next one.
    wait_until(BULK, "a data channel attempt to fail", || (world.host_attempts_failed() > failed_before).then_some(()));
    exec.say("go");
    let (got, stderr) = exec.finish();
    assert_eq!(got, digest, "byte for byte over the relay\n{stderr}");
    assert!(stderr.contains("via relay · round trip") && !stderr.contains(" now via "), "{stderr}");
    let (_, down) = world.forwarded_since(before);
    assert!(down >= bytes as u64, "the relay carried it all: {down} bytes");

    let browser = world.browser();
    let page = Page(&browser);
    browser.goto(&world.invite);
    page.landed();
    page.type_text("echo relayed-$((6*7))\n");
    page.wait_text(None, "an echo over the relay", |t| t.lines().any(|l| l.trim_end() == "relayed-42"));
    assert!(page.status().contains("connected via relay"), "{}", page.status());
    assert_no_console_errors(&browser);
}

#[test]
fn a_data_channel_killed_mid_flood_loses_nothing_and_comes_back() {
    let world = World::new(false);
    let (file, digest) = world.random_file("cut", EXEC_BYTES);
    // The exec waits for a line on stdin at the end, so the connection outlives the flood.
    let mut exec = world.spawn_exec(&format!("read go; cat {}; read done", file.display()));
    exec.wait_stderr("the exec to move to the data channel", BULK, |s| moved_to(s, "direct"));
    exec.say("go");
    wait_until(BULK, "a third of the flood", || (exec.stdout_len() >= EXEC_BYTES / 3).then_some(()));
    netns::block_udp(false);
    let gone = exec.wait_stderr("-v to say the data channel is gone", BULK, |s| s.contains("data channel is gone"));
    assert!(exec.stdout_len() < EXEC_BYTES, "the flood was still under way when the channel died\n{gone}");
    wait_until(BULK, "the rest of the flood over the relay", || (exec.stdout_len() >= EXEC_BYTES).then_some(()));
    netns::unblock_udp();
    exec.wait_stderr("a new data channel once UDP is back", BULK, |s| {
        s.split("data channel is gone").nth(1).is_some_and(|after| moved_to(after, "direct"))
    });
    exec.say("done");
    let (got, stderr) = exec.finish();
    assert_eq!(got, digest, "every byte exactly once, in order\n{stderr}");
}

#[test]
fn a_tampered_signal_is_refused_as_any_tampered_frame() {
    use tether_tests::proxy::{Tamper, WsProxy};
    let world = World::new(false);
    // The host's answer (an SDP of several hundred bytes) is the first big message to come.
    let proxy = WsProxy::start(&world.relay.address(), Tamper::FlipFirstLarge { min_bytes: 300 });
    let through_proxy = world.invite.replace(world.relay.url.trim_end_matches('/'), &proxy.url);
    // "third" is printed only once the tampered answer has reached the client.
    let gate = world.dir.join("gate");
    let script = format!("echo first; until [ -e {0} ]; do sleep 0.02; done; echo third", gate.display());
    let (out, tampered) = std::thread::scope(|scope| {
        let opener = scope.spawn(|| proxy.open_gate_once_tampered(&gate, BULK));
        let out = world.client.run(&["-v", "exec", &through_proxy, "--", "sh", "-c", &script]);
        (out, opener.join().expect("gate opener"))
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(tampered, "the proxy never got to tamper\n{stderr}");
    assert!(!out.status.success(), "a tampered answer must not be taken");
    assert!(stderr.contains("secure channel") && stderr.contains("failed authentication"), "{stderr}");
    assert!(!moved_to(&stderr, "direct"), "no data channel from a tampered answer\n{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("third"), "output went on after tampering");
}

#[test]
fn pair_no_webrtc_and_relay_no_webrtc_keep_clients_on_the_relay() {
    // The host decides at the proof whether to invite a client to a data channel, and a client
    // never offers one uninvited: once the host says it did not invite, the exec is on the relay
    // for good.
    let stays_on_the_relay = |world: &World| {
        let not_invited = world.host_said("no data channel offered");
        let mut exec = world.spawn_exec("read go; echo done");
        wait_until(BULK, "the host to say it offered no data channel", || {
            (world.host_said("no data channel offered") > not_invited).then_some(())
        });
        exec.say("go");
        let (got, stderr) = exec.finish();
        assert_eq!(got, sha256_hex(b"done\n"), "{stderr}");
        assert!(stderr.contains("via relay · round trip") && !stderr.contains(" now via "), "{stderr}");
    };
    let world = World::new(false);
    let relay_url = world.relay.url.trim_end_matches('/').to_owned();
    world.host.ok(&["pair", "--relay", &relay_url, "--no-webrtc", "--json"]);
    stays_on_the_relay(&world);
    // Kept until said otherwise: after a restart of the agent too.
    world.host.ok(&["daemon", "stop", "--grace", "0s"]);
    world.host.ok(&["pair", "--relay", &relay_url, "--json"]);
    wait_reachable(&world.client, &world.invite);
    stays_on_the_relay(&world);
    world.host.ok(&["pair", "--relay", &relay_url, "--webrtc", "--json"]);
    let mut exec = world.spawn_exec("read go; echo done");
    exec.wait_stderr("the exec to move to the data channel", BULK, |s| moved_to(s, "direct"));
    exec.say("go");
    exec.finish();
    drop(world);

    let world = World::with(false, &["--no-webrtc"]);
    stays_on_the_relay(&world);
}
