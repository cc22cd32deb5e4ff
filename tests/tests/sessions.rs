//! Sessions owned by a real agent daemon: real PTYs, a real SQLite file, the real CLI.

use std::path::Path;

use tether_tests::agent::{self, Agent, PtyClient};
use tether_tests::{marker, wait_until};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn output_reaches_logs_exactly_and_split_input_forms_one_command() {
    let agent = Agent::new(scratch());
    let id = agent.start_shell();
    let token = marker("mark");
    // One command typed in two pieces, then Enter.
    agent.ok(&["send", &id, &format!("echo {}", &token[..6])]);
    agent.ok(&["send", &id, &token[6..], "key:enter"]);
    agent.wait_for_line(&id, &token);

    agent.ok(&["send", &id, "i=1; while [ $i -le 500 ]; do echo burst-$i; i=$((i+1)); done", "key:enter"]);
    let log = agent.wait_for_line(&id, "burst-500");
    let burst: Vec<&str> =
        log.lines().map(str::trim_end).filter(|l| l.starts_with("burst-") && !l.contains(' ')).collect();
    let expected: Vec<String> = (1..=500).map(|i| format!("burst-{i}")).collect();
    assert_eq!(burst, expected, "500 lines, each once, in order");
}

#[test]
fn ctrl_c_interrupts_and_keys_reach_the_program() {
    let agent = Agent::new(scratch());
    let id = agent.start_shell();
    agent.ok(&["send", &id, "sleep 60; echo sleep-finished", "key:enter"]);
    // The shell echoed the command line (after its prompt, `$ ` or `# `): sleep is running.
    agent.wait_for_text(&id, "sleep 60; echo sleep-finished\n");
    agent.ok(&["send", &id, "key:ctrl+c"]);
    agent.ok(&["send", &id, "echo after-interrupt", "key:enter"]);
    let log = agent.wait_for_line(&id, "after-interrupt");
    assert!(!log.contains("\nsleep-finished"), "sleep was interrupted, not finished");

    // A program reading raw keys gets the arrow's bytes, in the encoding its mode asks for.
    let reader = "stty raw -echo; printf 'ready\\r\\n'; dd bs=1 count=3 2>/dev/null | od -An -tx1";
    let plain = agent.start(&["sh", "-c", reader]);
    agent.wait_for_line(&plain, "ready");
    agent.ok(&["send", &plain, "key:up"]);
    agent.wait_for_line(&plain, " 1b 5b 41");

    let app_mode =
        "printf '\\033[?1h'; stty raw -echo; printf 'ready\\r\\n'; dd bs=1 count=3 2>/dev/null | od -An -tx1";
    let app = agent.start(&["sh", "-c", app_mode]);
    agent.wait_for_line(&app, "ready");
    agent.ok(&["send", &app, "key:up"]);
    agent.wait_for_line(&app, " 1b 4f 41");
}

#[test]
fn attach_replays_then_streams_live_to_every_client() {
    let agent = Agent::new(scratch());
    let id = agent.start_shell();
    agent.ok(&["send", &id, "echo before-attach", "key:enter"]);
    agent.wait_for_line(&id, "before-attach");

    let mut first = PtyClient::spawn(&agent, &["attach", &id]);
    let mut second = PtyClient::spawn(&agent, &["attach", &id]);
    first.wait_for("before-attach");
    second.wait_for("before-attach");

    // Typed on one attached terminal, run once, seen on both, every line.
    first.type_bytes(b"seq 1 3000 | sed 's/^/n/'\r");
    for client in [&first, &second] {
        let out = client.wait_for("n3000");
        let numbers: Vec<String> = out
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| l.starts_with('n') && l[1..].chars().all(|c| c.is_ascii_digit()) && l.len() > 1)
            .map(str::to_owned)
            .collect();
        let expected: Vec<String> = (1..=3000).map(|i| format!("n{i}")).collect();
        assert_eq!(numbers, expected, "every line, once, in order");
    }

    // Detach one; the session and the other client carry on.
    first.type_bytes(b"\x1dd");
    assert_eq!(first.wait_exit(), 0);
    first.wait_for("[detached from");
    assert_eq!(agent.info(&id)["status"], "running");
    agent.ok(&["send", &id, "echo still-here", "key:enter"]);
    second.wait_for("still-here");
    second.type_bytes(b"\x1dd");
    assert_eq!(second.wait_exit(), 0);
    agent.wait_for_line(&id, "still-here");
}

#[test]
fn stop_kills_after_grace_and_exit_codes_are_recorded() {
    let agent = Agent::new(scratch());
    let stubborn = agent.start(&["sh", "-c", "trap '' TERM; echo ready; sleep 60"]);
    agent.wait_for_line(&stubborn, "ready");
    let said = agent.ok(&["stop", &stubborn, "--grace", "500ms"]);
    assert!(said.contains("killed"), "{said}");
    let info = agent.info(&stubborn);
    assert_eq!((info["status"].as_str(), info["exit_code"].as_i64()), (Some("killed"), Some(137)));

    let polite = agent.start(&["sh", "-c", "echo ready; sleep 60"]);
    agent.wait_for_line(&polite, "ready");
    agent.ok(&["stop", &polite, "--grace", "10s"]);
    let info = agent.info(&polite);
    assert_eq!((info["status"].as_str(), info["exit_code"].as_i64()), (Some("stopped"), Some(143)));

    for (code, script) in [(0, "exit 0"), (3, "exit 3")] {
        let id = agent.start(&["sh", "-c", script]);
        let info = agent.wait_ended(&id);
        assert_eq!((info["status"].as_str(), info["exit_code"].as_i64()), (Some("stopped"), Some(code)));
    }
}

#[test]
fn sessions_and_logs_survive_a_daemon_restart() {
    let agent = Agent::new(scratch());
    let token = marker("persisted");
    let finished = agent.start(&["sh", "-c", &format!("echo {token}; exit 4")]);
    agent.wait_ended(&finished);
    let live = agent.start(&["sh", "-c", "echo up; exec sleep 300"]);
    agent.wait_for_line(&live, "up");
    let live_pid = agent.info(&live)["pid"].as_i64().expect("pid");

    // The agent dies without warning; the next command starts a new one.
    let pid = agent.daemon_pid().expect("daemon pid");
    // SAFETY: kill(2) only sends signals.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until(agent::WAIT, "the old daemon to die", || (unsafe { libc::kill(pid, 0) } != 0).then_some(()));

    let info = agent.info(&finished);
    assert_eq!((info["status"].as_str(), info["exit_code"].as_i64()), (Some("stopped"), Some(4)));
    assert_eq!(agent.info(&live)["status"], "unknown", "a session that died with the agent is marked");
    agent.wait_for_line(&finished, &token);
    // SAFETY: clean up the orphaned sleep (its own process group).
    unsafe { libc::kill(-(live_pid as i32), libc::SIGKILL) };

    // An orderly stop keeps everything too.
    agent.ok(&["daemon", "stop"]);
    assert_eq!(agent.info(&finished)["exit_code"], 4);
}

#[test]
fn wait_for_prompt_returns_at_the_prompt_and_says_when_it_times_out() {
    let agent = Agent::new(scratch());
    let id = agent.start(&["bash", "-c", "sleep 0.3; read -p 'continue? ' answer; echo answer=$answer"]);
    let out = agent.run(&["logs", &id, "--wait-for-prompt", "--timeout", "20s", "--tail", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "continue?");
    assert_eq!(agent.info(&id)["waiting_for_input"], true);
    agent.ok(&["send", &id, "yes", "key:enter"]);
    agent.wait_for_line(&id, "answer=yes");

    let busy = agent.start(&["sleep", "60"]);
    let out = agent.run(&["logs", &busy, "--wait-for-prompt", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let agent = Agent::new(scratch());
    let id = agent.start_shell();
    for (args, says) in [
        (vec!["logs", "zzzzzz"], "no session"),
        (vec!["attach", "zzzzzz"], "no session"),
        (vec!["stop", "zzzzzz"], "no session"),
        (vec!["send", "zzzzzz", "hi"], "no session"),
        (vec!["send", id.as_str(), "key:hyper+q"], "unknown key"),
        (vec!["send", id.as_str(), "hex:zz"], "bad hex"),
        (vec!["start", "--detach", "--", "/no/such/command"], "command not found"),
        (vec!["start", "--detach"], "required"),
        (vec!["ls", "--status", "sleeping"], "unknown status"),
    ] {
        let out = agent.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(agent.info(&id)["status"], "running", "errors disturb nothing");
}

#[test]
fn config_limits_sessions_and_the_hook_hears_about_prompts() {
    let agent = Agent::new(scratch());
    let heard = agent.state.join("hook.txt");
    let config = format!(
        "max_running_sessions = 2\nprompt_quiet_ms = 200\nnotify_hook = \"printf '%s|%s\\\\n' >> {}\"\n",
        heard.display()
    );
    std::fs::write(agent.state.join("config.toml"), config).expect("config");
    let ask = "read -s -p 'Password: ' secret; echo done";
    let quiet = agent.start(&["bash", "-c", ask]);
    let noisy = agent.ok(&["start", "--detach", "--notify", "--", "bash", "-c", ask]).trim().to_owned();
    assert_eq!(agent.info(&noisy)["notify"], true);
    assert_eq!(agent.info(&quiet)["notify"], false, "notify_by_default is off");
    wait_until(agent::WAIT, "the hook to run", || {
        std::fs::read_to_string(&heard).ok().filter(|t| t.contains(&format!("{noisy}|password")))
    });
    wait_until(agent::WAIT, "the quiet session to wait for input", || {
        (agent.info(&quiet)["waiting_for_input"] == true).then_some(())
    });

    let out = agent.run(&["start", "--detach", "--", "sleep", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit"), "{}", String::from_utf8_lossy(&out.stderr));

    agent.ok(&["send", &noisy, "hunter2", "key:enter"]);
    agent.wait_ended(&noisy);
    wait_until(agent::WAIT, "the hook to hear of the exit", || {
        std::fs::read_to_string(&heard).ok().filter(|t| t.contains(&format!("{noisy}|exited with code 0")))
    });
    let heard = std::fs::read_to_string(&heard).unwrap_or_default();
    assert!(!heard.contains(&quiet), "a session without --notify stays quiet: {heard}");
    assert!(!heard.contains("hunter2"), "the hook gets the reason, never what was typed");
}

#[test]
fn terminal_queries_are_answered_without_a_client_and_kept_out_of_the_log() {
    let agent = Agent::new(scratch());
    let script = "stty raw -echo; printf 'x\\033[6n'; dd bs=1 count=6 2>/dev/null | od -An -tx1; \
                  printf '\\033[c'; dd bs=1 count=9 2>/dev/null | od -An -c; printf 'asked\\r\\n'";
    let id = agent.start(&["sh", "-c", script]);
    let log = agent.wait_for_line(&id, "asked");
    // Cursor was at row 1, column 2 (after the "x"): ESC [ 1 ; 2 R.
    assert!(log.contains(" 1b 5b 31 3b 32 52"), "{log}");
    assert!(log.contains("?   6   2   ;   2   2   c"), "{log}");
    let raw = agent.ok(&["logs", &id, "--keep-color"]);
    assert!(!raw.contains("\x1b[6n") && !raw.contains("\x1b[c"), "queries must not be replayed");
}

#[test]
fn output_is_drained_and_kept_with_no_client_attached() {
    let agent = Agent::new(scratch());
    let id = agent.start(&["seq", "1", "200000"]);
    let info = agent.wait_ended(&id);
    assert_eq!(info["exit_code"], 0, "seq finished: nothing blocked it");
    let log = agent.logs(&id);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 200_000);
    assert_eq!((lines[0], lines[199_999]), ("1", "200000"));
    assert_eq!(agent.ok(&["logs", &id, "--tail", "2"]), "199999\n200000\n");
}

#[test]
fn attach_passes_the_terminal_size_and_detaches_from_raw_programs() {
    let agent = Agent::new(scratch());
    let id = agent.start_shell();
    let mut client = PtyClient::spawn(&agent, &["attach", &id]); // a 100×30 terminal
    client.type_bytes(b"stty size\r");
    client.wait_for("30 100");
    client.resize(120, 40);
    // The resize travels asynchronously (SIGWINCH → agent → PTY); ask until it shows.
    wait_until(agent::WAIT, "the session to see the new size", || {
        client.type_bytes(b"stty size\r");
        std::thread::sleep(std::time::Duration::from_millis(50));
        client.output().contains("40 120").then_some(())
    });

    // A program that swallows every key in raw mode cannot keep us attached.
    client.type_bytes(b"stty raw -echo; cat > /dev/null\r");
    agent.wait_for_text(&id, "cat > /dev/null");
    client.type_bytes(b"\x1dd");
    assert_eq!(client.wait_exit(), 0);
    assert_eq!(agent.info(&id)["status"], "running");
}

#[test]
fn logs_follow_streams_until_the_session_ends() {
    let agent = Agent::new(scratch());
    let id = agent.start(&["sh", "-c", "echo first; read line; echo second:$line"]);
    agent.wait_for_line(&id, "first");
    let follow =
        agent.command().args(["logs", &id, "--follow"]).stdout(std::process::Stdio::piped()).spawn().expect("logs -f");
    agent.ok(&["send", &id, "more", "key:enter"]);
    let out = follow.wait_with_output().expect("logs -f ends with the session");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nmore\nsecond:more\n");
}

#[test]
fn bash_completes_tether_commands_and_the_manual_page_renders() {
    let agent = Agent::new(scratch());
    let script = agent.ok(&["completions", "bash"]);
    // What a user's bash does with it: source it, then ask for the words after `tether ser`.
    let completed = std::process::Command::new("bash")
        .args([
            "--norc",
            "-c",
            r#"source /dev/stdin; COMP_WORDS=(tether ser); COMP_CWORD=1; COMP_LINE="tether ser"; COMP_POINT=10
               _tether tether ser tether; printf '%s\n' "${COMPREPLY[@]}""#,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut bash| {
            use std::io::Write;
            bash.stdin.take().expect("stdin").write_all(script.as_bytes())?;
            bash.wait_with_output()
        })
        .expect("bash");
    let words = String::from_utf8_lossy(&completed.stdout);
    assert_eq!(words.trim(), "service", "{words}");
    for shell in ["zsh", "fish"] {
        assert!(agent.ok(&["completions", shell]).contains("tether"), "{shell}");
    }
    let page = agent.ok(&["man"]);
    assert!(page.starts_with(".ie") || page.contains(".TH tether 1"), "{page}");
    // Read as `man -l` would show it, where man is installed.
    match std::process::Command::new("man")
        .env("MANWIDTH", "100")
        .arg("-l")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut man) => {
            use std::io::Write;
            man.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("to man");
            let shown = String::from_utf8_lossy(&man.wait_with_output().expect("man").stdout).into_owned();
            assert!(shown.contains("Persistent terminal sessions") && shown.contains("service"), "{shown}");
        }
        Err(e) => eprintln!("(no man here: {e}; the page was not rendered)"),
    }
}
