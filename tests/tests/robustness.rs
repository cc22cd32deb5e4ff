//! What a long or heavy day does to sessions and links, with real processes: a log that cannot
//! keep up (a full disk), output cut off mid-escape, a thousand sessions, megabytes of input and
//! output at once, a relay that restarts, a link that goes silent. Every byte arrives exactly
//! once, or the user is told clearly which did not; nothing hangs.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tether_tests::agent::{self, Agent, PtyClient};
use tether_tests::raw::RawClient;
use tether_tests::{wait_until, Relay};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

// Every byte of output, exactly once — or a clear word about the ones the host lost.

#[test]
fn output_the_log_could_not_keep_is_reported_never_misread_or_stalled_on() {
    use std::os::unix::process::CommandExt;
    let agent = Agent::new(scratch());
    // The daemon may write at most 1 MiB per file: the session log fills up, as a full disk would.
    let mut daemon = agent.command();
    daemon.arg("daemon").stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the struct is ours.
    unsafe {
        daemon.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    let mut daemon = daemon.spawn().expect("daemon");
    wait_until(agent::WAIT, "the daemon to answer", || agent.run(&["daemon", "status"]).status.success().then_some(()));
    let script = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo END-OF-OUTPUT; sleep 300";
    let session = agent.start(&["sh", "-c", script]);
    wait_until(agent::WAIT, "the output to be produced", || {
        (agent.info(&session)["output_bytes"].as_u64() >= Some(3_000_000)).then_some(())
    });
    // Running: the first MiB comes from the log, the last from memory, the gap is named.
    let out = agent.run(&["logs", &session]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a log with a hole passed as whole");
    assert!(tether_tests::stderr_of(&out).contains("output lost on the host"), "{}", tether_tests::stderr_of(&out));
    assert!(text.contains("bytes of output are missing here"), "no note of the gap");
    assert!(text.contains("END-OF-OUTPUT"), "output after the gap is missing");
    assert!(text.starts_with("xxxx"), "the start of the log is missing");
    // Ended: what the log could not keep is gone, and said to be.
    agent.ok(&["stop", &session, "--grace", "0s"]);
    let out = agent.run(&["logs", &session]);
    assert!(
        !out.status.success() && tether_tests::stderr_of(&out).contains("output lost on the host"),
        "{}",
        tether_tests::stderr_of(&out)
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// The most memory a process has had resident (`VmHWM`).
fn peak_resident_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size in `/proc/PID/status`, in bytes (0 if it cannot be read).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status.lines().find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok());
    kib.unwrap_or(0u64) * 1024
}

#[test]
fn logs_cut_off_in_the_middle_fails_rather_than_passing_as_whole() {
    let host = Agent::new(scratch());
    let session = host.start(&["seq", "1", "5000000"]); // about 38 MB
    host.wait_ended(&session);
    let mut logs = host.command();
    let printed = scratch().join(tether_tests::marker("cut-logs"));
    let stdout = std::fs::File::create(&printed).expect("stdout file");
    logs.args(["logs", &session]).stdout(stdout).stderr(Stdio::piped());
    let mut reading = logs.spawn().expect("tether logs");
    // Once it is printing (it prints as it reads), the daemon goes; the client is held still
    // meanwhile, so the cut lands in the middle however fast the rest would come.
    let printing = || std::fs::metadata(&printed).map(|m| m.len()).unwrap_or(0) > 1 << 20;
    wait_until(agent::WAIT, "logs to be printing", || printing().then_some(()));
    let pid = i32::try_from(reading.id()).expect("pid");
    // SAFETY: kill(2) only sends signals.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    unsafe { libc::kill(host.daemon_pid().expect("daemon running"), libc::SIGKILL) };
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = wait_until(agent::WAIT, "logs to end", || reading.try_wait().ok().flatten());
    let mut stderr = String::new();
    std::io::Read::read_to_string(reading.stderr.as_mut().expect("stderr"), &mut stderr).expect("stderr");
    let printed = std::fs::metadata(&printed).expect("printed").len();
    assert!(printed < 38_888_896, "the cut came after the end ({printed} bytes printed)");
    assert!(!out.success(), "logs exited 0 with {printed} bytes of the output; stderr: {stderr}");
    assert!(stderr.contains("lost"), "no word of the cut: {stderr}");
}

#[test]
fn output_ending_inside_an_escape_sequence_is_kept() {
    let agent = Agent::new(scratch());
    let session = agent.start(&["printf", "tail\\033["]);
    agent.wait_ended(&session);
    let raw = agent.ok(&["logs", &session, "--keep-color"]);
    assert!(raw.contains("tail\u{1b}["), "{raw:?}");
}

// No request hangs; sizes agree end to end.

/// Make `count` sessions (failed starts: no processes) through an authenticated raw client,
/// titled `title`.
fn make_sessions(invite: &str, count: u64, title: &str) {
    use tether_protocol::api::Request;
    let mut client = RawClient::hello(invite);
    client.authenticate(agent::WAIT);
    let start = Request::Start {
        command: vec!["/nonexistent/tether-test".into()],
        title: Some(title.to_owned()),
        cwd: None,
        cols: 80,
        rows: 24,
        notify: None,
    };
    let mut id = 1;
    while id <= count {
        let batch = (count - id + 1).min(50);
        for n in 0..batch {
            client.conn.send_frame(&tether_protocol::cmd::cmd_frame(id + n, &start, Vec::new())).expect("seal");
        }
        client.flush();
        assert_eq!(client.answers(agent::WAIT, batch as usize).len(), batch as usize);
        id += batch;
    }
}

fn run_within(command: std::process::Command, what: &str) -> std::process::Output {
    tether_tests::process::output_within(command, agent::WAIT, what)
}

#[test]
fn ls_of_a_thousand_sessions_works_and_too_much_is_a_clear_error() {
    let (_relay, host, invite, client) = agent::paired(scratch());
    make_sessions(&invite, 1000, "short");
    for (args, what) in [(vec!["ls", "--json"], "ls"), (vec!["ls", "--json", "-H", &invite], "ls -H")] {
        let mut command = if args.contains(&"-H") { client.command() } else { host.command() };
        command.args(&args);
        let out = run_within(command, what);
        assert!(out.status.success(), "{what}: {}", tether_tests::stderr_of(&out));
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(listed.as_array().map(Vec::len), Some(1000), "{what}");
    }
    // Four more MiB of titles: over what one message carries, so a clear error, at once.
    make_sessions(&invite, 1000, &"t".repeat(4000));
    let mut command = client.command();
    command.args(["ls", "-H", &invite]);
    let out = run_within(command, "a too-big ls");
    assert!(
        !out.status.success() && tether_tests::stderr_of(&out).contains("ask for less"),
        "{}",
        tether_tests::stderr_of(&out)
    );
    let mut command = host.command();
    command.args(["ls", "--limit", "5"]);
    assert!(run_within(command, "ls --limit").status.success());
}

#[test]
fn send_of_8_mib_from_stdin_reaches_the_program_whole() {
    let (_relay, host, invite, client) = agent::paired(scratch());
    // Lines shorter than the terminal's line limit, 8 MiB in all.
    let line = format!("{}\n", "0123456789abcdef".repeat(15));
    let text = line.repeat((8 << 20) / line.len());
    for (who, remote) in [("local", false), ("-H", true)] {
        let target = scratch().join(tether_tests::marker("received"));
        let session = host.start(&["sh", "-c", &format!("stty -echo; cat > {}", target.display())]);
        let mut command = if remote { client.command() } else { host.command() };
        command.arg("send");
        if remote {
            command.args(["-H", &invite]);
        }
        command.arg(&session).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().expect("send");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = {
            let text = text.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(text.as_bytes());
            })
        };
        let mut guard = tether_tests::process::Guard::adopt(child);
        let status = guard.wait_exit(agent::WAIT, &format!("send {who} of 8 MiB"));
        writer.join().expect("writer");
        assert!(status.success(), "send {who} failed");
        wait_until(agent::WAIT, &format!("all 8 MiB to arrive ({who})"), || {
            (std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0) == text.len() as u64).then_some(())
        });
        assert!(std::fs::read(&target).expect("received") == text.as_bytes(), "{who}: bytes differ");
    }
}

// No flow-control deadlock.

/// Generous bound for 50 MB through a debug build, a relay and a PTY.
const FLOOD_WAIT: std::time::Duration = std::time::Duration::from_secs(90);
/// Typed through the flood: `TYPE_BYTES` for every `TYPE_EVERY_BYTES` of output.
const TYPE_BYTES: usize = 128 << 10; // 128 KiB
const TYPE_EVERY_BYTES: usize = 256 << 10; // 256 KiB
/// How often the screen stops reading during the flood, and for how long.
const PAUSE_EVERY_BYTES: usize = 8 << 20; // 8 MiB
const PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

#[test]
fn attach_takes_a_50_mb_flood_while_keys_are_typed() {
    let (_relay, host, invite, client) = agent::paired(scratch());
    for (who, remote) in [("local", false), ("-H", true)] {
        // Once started, a flood to the terminal while everything typed is read into a file (raw:
        // no line limit). (`read` in the foreground: a background job's stdin is /dev/null.)
        let typed_file = scratch().join(tether_tests::marker("typed"));
        let script =
            format!("stty raw -echo; read go; (seq 1 6500000; echo flood-done) & exec cat > {}", typed_file.display());
        let session = host.start(&["sh", "-c", &script]);
        let mut command = portable_pty::CommandBuilder::new(tether_tests::bin_path("tether"));
        let agent = if remote { &client } else { &host };
        command.env("TETHER_STATE_DIR", &agent.state);
        command.args(["attach", &session]);
        if remote {
            command.args(["-H", &invite]);
        }
        let mut attached = PtyClient::spawn_command(command);
        attached.type_bytes(b"go\n");
        // Through the flood, 128 KiB typed (as a paste would come) for every 256 KiB of output,
        // from a thread of its own: a client that stops reading its keyboard blocks that thread,
        // not this one, and the flood's deadline below still fails the test.
        let keyboard = attached.keyboard();
        let done = Arc::new(AtomicBool::new(false));
        let (typed_tx, typed_rx) = std::sync::mpsc::channel();
        {
            let done = done.clone();
            std::thread::spawn(move || {
                let (mut typed, mut typed_at) = (0usize, 0usize);
                while !done.load(Ordering::Relaxed) {
                    let got = keyboard.output_len();
                    if got < typed_at + TYPE_EVERY_BYTES {
                        std::thread::yield_now();
                        continue;
                    }
                    if keyboard.try_type_bytes(&[b'k'; TYPE_BYTES]).is_err() {
                        break;
                    }
                    (typed, typed_at) = (typed + TYPE_BYTES, got);
                }
                let _ = typed_tx.send(typed);
            });
        }
        // Every 8 MB the screen stops reading for a moment, as a slow terminal would, while the
        // typing goes on: the queues between the keyboard and the PTY fill in both directions.
        let screen = attached.keyboard();
        let deadline = std::time::Instant::now() + FLOOD_WAIT;
        let mut pause_at = PAUSE_EVERY_BYTES;
        while !attached.tail(1 << 10).contains("flood-done") {
            let got = attached.output_len();
            assert!(std::time::Instant::now() < deadline, "{who}: the flood stopped after {got} bytes");
            if got >= pause_at {
                screen.pause_screen(true);
                std::thread::sleep(PAUSE);
                screen.pause_screen(false);
                pause_at += PAUSE_EVERY_BYTES;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        done.store(true, Ordering::Relaxed);
        // A client that stopped reading its keyboard leaves the typist stuck in a write.
        let typed = typed_rx.recv_timeout(agent::WAIT).unwrap_or_else(|_| panic!("{who}: the keyboard is stuck"));
        assert!(typed > 0, "{who}: nothing was typed through the flood");
        let out = attached.output();
        let mut expected = 1u64;
        for line in out.split('\n').filter_map(|l| l.trim().parse::<u64>().ok()) {
            assert_eq!(line, expected, "{who}: after {} the next number was {line}", expected - 1);
            expected += 1;
        }
        assert_eq!(expected, 6_500_001, "{who}: every number, about 51 MB");
        // Every byte typed reaches the program: none lost, none twice.
        wait_all_typed_arrived(&attached, &typed_file, typed as u64, who);
        attached.type_bytes(b"\x1d"); // Ctrl-] d detaches
        attached.type_bytes(b"d");
        assert_eq!(attached.wait_exit(), 0, "{who}");
    }
}

/// A paste bigger than the session's input backlog (1 MiB) and the link's window, into a program
/// that leaves its input unread for longer than `tether send` waits for it (10 s), all arrives
/// once the program reads — through a relay (the host holds one window, the client the rest)
/// and attached locally (the daemon holds the backlog, the client waits for room).
#[test]
fn a_paste_into_a_program_that_reads_late_all_arrives() {
    pastes_into_a_late_reader(true, &[(b'p', 3 << 20)]); // 3 MiB: three windows, three backlogs
}

#[test]
fn a_local_paste_into_a_program_that_reads_late_all_arrives() {
    pastes_into_a_late_reader(false, &[(b'p', 3 << 20)]);
}

/// Two clients pasting at once into a program that reads late fill its input backlog between
/// them: the one refused room waits for it, and both pastes arrive whole — attached locally
/// (the client waits) and through a relay (the host holds the refused keys, uncredited).
#[test]
fn two_local_pastes_into_a_late_reader_both_arrive() {
    // 1.5 MiB each: together over the 1 MiB backlog twice.
    pastes_into_a_late_reader(false, &[(b'a', 1536 << 10), (b'b', 1536 << 10)]);
}

#[test]
fn two_pastes_through_a_relay_into_a_late_reader_both_arrive() {
    pastes_into_a_late_reader(true, &[(b'a', 1536 << 10), (b'b', 1536 << 10)]);
}

/// Each `(key, bytes)` pasted at once by a client of its own, attached through a relay or
/// locally, into a program that reads only after 12 s: every paste arrives whole, and nothing
/// else does.
fn pastes_into_a_late_reader(remote: bool, pastes: &[(u8, usize)]) {
    let (_relay, host, invite, client) = agent::paired(scratch());
    let typed_file = scratch().join(tether_tests::marker("late"));
    let script = format!("stty raw -echo; echo ready; sleep 12; exec cat > {}", typed_file.display());
    let session = host.start(&["sh", "-c", &script]);
    let attached: Vec<PtyClient> = pastes
        .iter()
        .map(|_| match remote {
            true => PtyClient::spawn(&client, &["attach", &session, "-H", &invite]),
            false => PtyClient::spawn(&host, &["attach", &session]),
        })
        .collect();
    for (attached, &(key, bytes)) in attached.iter().zip(pastes) {
        attached.wait_for("ready");
        // From a thread: the client may stop reading its keyboard while its own queue is full.
        let keyboard = attached.keyboard();
        std::thread::spawn(move || keyboard.try_type_bytes(&vec![key; bytes]));
    }
    let who = format!("{} paste(s) {}", pastes.len(), if remote { "through a relay" } else { "attached locally" });
    let total: usize = pastes.iter().map(|&(_, bytes)| bytes).sum();
    wait_all_typed_arrived(&attached[0], &typed_file, total as u64, &who);
    let typed = std::fs::read(&typed_file).expect("read");
    for &(key, bytes) in pastes {
        assert_eq!(typed.iter().filter(|&&b| b == key).count(), bytes, "{who}: the {:?} paste whole", key as char);
    }
}

/// Wait until `file`, where a program writes what it reads, holds exactly the `typed` bytes
/// typed into `attached`; on failure say how many came and what the client printed on its
/// terminal (a lost link, refused input).
fn wait_all_typed_arrived(attached: &PtyClient, file: &std::path::Path, typed: u64, who: &str) {
    let arrived = || std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let deadline = std::time::Instant::now() + FLOOD_WAIT;
    while arrived() != typed {
        let out = attached.output();
        let said: Vec<&str> = out.lines().filter(|l| l.contains("[tether")).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "{who}: {} of {typed} typed bytes arrived; the client said {said:?}",
            arrived()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// The CLI runs the connection's timers, and a lost link is made again.

/// `attach -H` to `shell` on a PTY, once a command typed into it has echoed.
fn attached_and_typing(client: &Agent, invite: &str, shell: &str) -> PtyClient {
    let mut attached = PtyClient::spawn(client, &["attach", "-H", invite, shell]);
    attached.type_bytes(b"echo before-$((1+1))\r");
    attached.wait_for("before-2");
    attached
}

#[test]
fn attach_and_logs_follow_resume_after_the_relay_restarts() {
    let (relay, host, invite, client) = agent::paired(scratch());
    let address = relay.address();
    let shell = host.start_shell();
    let mut attached = attached_and_typing(&client, &invite, &shell);
    let mut follow = client.command();
    follow.args(["logs", "-H", &invite, "-f", &shell]);
    let (mut following, followed) = tether_tests::process::spawn_collecting(follow);
    wait_until(agent::WAIT, "logs -f to show the history", || {
        followed.lock().expect("collected").contains("before-2").then_some(())
    });

    drop(relay); // killed: both lose their link
                 // Output the clients miss while the relay is down.
    host.ok(&["send", &shell, "echo during-$((2+3))", "key:enter"]);
    host.wait_for_text(&shell, "during-5");
    let _relay = Relay::start_at(&address);

    // Both come back by themselves, say so, and show what they missed exactly once.
    attached.wait_for("reconnected");
    attached.wait_for("during-5");
    attached.type_bytes(b"echo after-$((3+4))\r");
    attached.wait_for("after-7");
    wait_until(agent::WAIT, "logs -f to catch up", || {
        followed.lock().expect("collected").contains("after-7").then_some(())
    });
    let seen = followed.lock().expect("collected").clone();
    assert_eq!(seen.matches("during-5").count(), 1, "missed output shown once:\n{seen}");
    let attached_out = attached.output();
    assert_eq!(attached_out.matches("during-5").count(), 1, "{attached_out}");
    // The session ends: logs -f ends well, and so does attach.
    attached.type_bytes(b"exit\r");
    assert_eq!(attached.wait_exit(), 0);
    assert!(following.wait_exit(agent::WAIT, "logs -f to end with the session").success());
}

#[test]
fn attach_notices_a_link_gone_silent_and_comes_back_when_it_speaks_again() {
    let (relay, host, invite, client) = agent::paired(scratch());
    // The relay as the only path (`pair --no-webrtc`): a data channel beside it would carry the
    // session on through the relay's silence, as it should.
    host.ok(&["pair", "--relay", relay.url.trim_end_matches('/'), "--no-webrtc", "--json"]);
    let shell = host.start_shell();
    let mut attached = attached_and_typing(&client, &invite, &shell);
    // The relay stops dead (no close, no reset: a network gone silent), then goes on.
    // SAFETY: kill(2) only sends signals.
    unsafe { libc::kill(relay.pid(), libc::SIGSTOP) };
    let noticed = wait_until(SILENCE_WAIT, "attach to notice the silent link", || {
        let out = attached.output();
        out.contains("lost the connection").then_some(out)
    });
    unsafe { libc::kill(relay.pid(), libc::SIGCONT) };
    assert!(noticed.contains("reconnecting"), "{noticed}");
    attached.wait_for("reconnected");
    attached.type_bytes(b"echo after-$((3+4))\r");
    attached.wait_for("after-7");
    attached.type_bytes(b"exit\r");
    assert_eq!(attached.wait_exit(), 0);
}

/// The connection's idle timeout (60 s) with room to notice.
const SILENCE_WAIT: std::time::Duration =
    std::time::Duration::from_millis(tether_protocol::connection::IDLE_TIMEOUT_MS + 20_000);

#[test]
fn clients_that_never_read_cannot_run_the_relay_out_of_memory() {
    // A stranger registers a host of their own (any secret will do), opens 12 clients to it that
    // say one word and then never read, ends their handshake deadline with one `encrypted`-typed
    // frame each, and floods them. Each is dropped with a reason once it is a few MiB behind,
    // and the relay's memory stays bounded rather than holding every byte.
    const CLIENTS: usize = 12;
    const FLOOD_BYTES: usize = 30 << 20; // 30 MiB each
    const CHUNK_BYTES: usize = 256 << 10;
    let relay = Relay::start();
    let mut host = tether_tests::hostile::ThrowawayHost::register(&relay, [0x5a; 32]);
    let url = format!("{}/ws/client/{}", relay.url.trim_end_matches('/').replace("http://", "ws://"), host.host_id);
    let mut clients = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        let (mut ws, _) = tokio_tungstenite::tungstenite::connect(url.as_str()).expect("a client socket");
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(vec![0u8; 8].into())).expect("a word");
        let conn = loop {
            match host.next_message(std::time::Duration::from_secs(10)) {
                Some(tether_protocol::frame::RelayMsg::Open { conn, .. }) => break conn,
                Some(_) => continue,
                None => panic!("the relay opened no client"),
            }
        };
        let ends_handshake = tether_protocol::frame::Frame::bare(tether_protocol::frame::Header::Encrypted { ctr: 0 });
        host.forward(conn, ends_handshake.encode().expect("frame"));
        // Read that one (so the handshake is over before the next opens); never read again.
        ws.read().expect("the host's frame");
        clients.push(ws);
        conns.push(conn);
    }
    for _ in 0..FLOOD_BYTES / CHUNK_BYTES {
        for &conn in &conns {
            host.forward(conn, vec![0x41; CHUNK_BYTES]);
        }
    }
    let mut dropped = std::collections::BTreeMap::new();
    wait_until(std::time::Duration::from_secs(20), "every client that never reads to be dropped", || {
        while let Some(message) = host.next_message(std::time::Duration::from_millis(100)) {
            if let tether_protocol::frame::RelayMsg::Close { conn, reason } = message {
                dropped.insert(conn, reason);
            }
        }
        (dropped.len() == CLIENTS).then_some(())
    });
    assert!(dropped.values().all(|why| why.contains("too slow")), "{dropped:?}");
    let peak = peak_resident_bytes(u32::try_from(relay.pid()).expect("pid"));
    println!(
        "relay peak resident: {} MiB for {CLIENTS} clients flooded with {} MiB each",
        peak >> 20,
        FLOOD_BYTES >> 20
    );
    assert!(peak < 200 << 20, "the relay's peak memory was {} MiB", peak >> 20);
}

#[test]
fn logs_of_a_big_session_are_printed_as_they_come_never_held_whole() {
    // 32 MB of output: `tether logs` prints it as it arrives, holding a line at a time, so its
    // memory does not grow with the log.
    const OUTPUT_BYTES: usize = 32_000_000;
    let client = Agent::new(scratch());
    let zeros = OUTPUT_BYTES / 4 * 3;
    let id = client.start(&["sh", "-c", &format!("head -c {zeros} /dev/zero | base64 -w 99; echo all-printed")]);
    client.wait_ended(&id);
    let mut command = client.command();
    command.args(["logs", &id]).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().expect("logs");
    let mut stdout = child.stdout.take().expect("stdout");
    // Read all but the last MB, then stop: `logs` is then blocked writing, alive, with all of
    // the log but that behind it — its memory's high-water mark says what it held.
    let mut printed = 0usize;
    let mut buffer = vec![0u8; 1 << 16];
    while printed < OUTPUT_BYTES - (1 << 20) {
        let n = std::io::Read::read(&mut stdout, &mut buffer).expect("read");
        assert!(n > 0, "logs ended after {printed} bytes");
        printed += n;
    }
    let peak = peak_resident_bytes(child.id());
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).expect("the rest");
    printed += rest.len();
    assert!(child.wait().expect("logs ends").success());
    assert!(printed >= OUTPUT_BYTES, "printed {printed} bytes");
    let last = String::from_utf8_lossy(&rest[rest.len().saturating_sub(64)..]).into_owned();
    assert!(last.trim_end().ends_with("all-printed"), "{last:?}");
    println!("tether logs printed {} MB with a peak of {} MiB resident", printed / 1_000_000, peak >> 20);
    assert!(peak < 24 << 20, "tether logs held {} MiB for a {} MB log", peak >> 20, printed / 1_000_000);
}
