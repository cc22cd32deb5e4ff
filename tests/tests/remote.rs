//! Reaching a host through a real relay process: pairing, session commands with -H, wrong
//! secrets, relay restarts. Host and client are separate agents with separate state dirs.

use std::path::Path;

use tether_tests::agent::{self, pair, wait_reachable, Agent};
use tether_tests::{wait_until, Relay};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn session_commands_work_through_the_relay() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let local = host.start(&["sh", "-c", "echo on-the-host; exec sleep 300"]);
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());

    let listing = wait_reachable(&client, &invite);
    assert!(listing.contains(&local), "{listing}");

    let remote = client.ok(&["start", "-H", &invite, "--", "sh"]).trim().to_owned();
    client.ok(&["send", "-H", &invite, &remote, "echo typed-remotely", "key:enter"]);
    host.wait_for_line(&remote, "typed-remotely");
    let said = client.ok(&["stop", "-H", &invite, &remote, "--grace", "300ms"]);
    assert!(said.starts_with(&remote), "{said}");
    let sessions: serde_json::Value = serde_json::from_str(&client.ok(&["ls", "-H", &invite, "--json"])).expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(2));
    // The client machine itself ran nothing.
    assert!(!client.state.join("sessions.sqlite3").exists());

    // A remembered name works wherever an invite does; its secret is stored 0600, never listed.
    client.ok(&["hosts", "add", "box", &invite]);
    assert!(client.ok(&["ls", "-H", "box"]).contains(&local));
    assert_eq!(client.ok(&["exec", "box", "--", "echo", "by-name"]), "by-name\n");
    let listed = client.ok(&["hosts", "ls"]);
    let secret = invite.rsplit('.').next().expect("secret");
    assert!(listed.contains("box") && !listed.contains(secret), "{listed}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(client.state.join("hosts.json")).expect("hosts.json").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = client.run(&["ls", "-H", "nobox"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host named"));
}

#[test]
fn a_wrong_secret_fails_clearly_and_the_right_one_still_works() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    let last = invite.chars().last().expect("secret");
    let wrong = format!("{}{}", &invite[..invite.len() - 1], if last == 'A' { 'B' } else { 'A' });
    for _ in 0..3 {
        let out = client.run(&["ls", "-H", &wrong]);
        assert!(!out.status.success());
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("authentication failed: unknown or revoked invite"), "{said}");
    }
    // Guessing invites is hopeless (160 random bits), so nothing holds the right one back.
    // (Password guessing is slowed: see tests/security.rs.)
    let out = client.run(&["ls", "-H", &invite]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_agent_reregisters_after_a_relay_restart() {
    let relay = Relay::start();
    let address = relay.address();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    drop(relay); // killed
    let out = client.run(&["ls", "-H", &invite]);
    assert!(!out.status.success(), "no relay, no connection");
    let _relay = Relay::start_at(&address);
    wait_reachable(&client, &invite); // same invite, no re-pairing
}

/// A relay, a paired host, and a client agent ready to exec.
fn exec_setup() -> (Relay, Agent, Agent, String) {
    let (relay, host, invite, client) = agent::paired(scratch());
    (relay, host, client, invite)
}

#[test]
fn exec_returns_exit_codes_and_keeps_stdout_and_stderr_apart() {
    let (_relay, _host, client, invite) = exec_setup();
    for (script, code) in [("exit 0", 0), ("exit 3", 3), ("kill -INT $$", 130), ("kill -TERM $$", 143)] {
        let out = client.run(&["exec", &invite, "--", "sh", "-c", script]);
        assert_eq!(out.status.code(), Some(code), "{script}");
    }
    let out = client.run(&["exec", &invite, "--", "sh", "-c", "echo to-out; echo to-err >&2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");

    let out = client.run(&["exec", &invite, "--", "/no/such/command"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("command not found"));

    // -v says the path and the round trip on stderr, before the command's own output; without
    // it, stderr is the command's alone (as above).
    let out = client.run(&["-v", "exec", &invite, "--", "sh", "-c", "echo to-err >&2"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let host_id = tether_protocol::identity::Invite::parse(&invite).expect("invite").host_id;
    let said = format!("tether: connected to {host_id} via relay · round trip ");
    assert!(stderr.starts_with(&said) && stderr.ends_with(" ms\nto-err\n"), "{stderr}");
}

#[test]
fn exec_forwards_stdin_and_moves_50_mb_intact() {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let (_relay, _host, client, invite) = exec_setup();

    let mut child = client
        .command()
        .args(["exec", &invite, "--", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("exec");
    child.stdin.take().expect("stdin").write_all(b"piped through\n").expect("write");
    let out = child.wait_with_output().expect("exec ends");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED THROUGH\n");

    // 50 MB of pseudo-random bytes, generated on the host, compared by digest.
    let script = "f=$(mktemp); head -c 50000000 /dev/urandom > $f; sha256sum $f >&2; cat $f; rm -f $f";
    let out = client.run(&["exec", &invite, "--", "sh", "-c", script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), 50_000_000);
    let host_digest = String::from_utf8_lossy(&out.stderr).split_whitespace().next().unwrap_or_default().to_owned();
    let local_digest = tether_protocol_hex(&Sha256::digest(&out.stdout));
    assert_eq!(local_digest, host_digest, "byte-identical");
}

fn tether_protocol_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn exec_is_bounded_interrupted_and_cancelled_with_its_client() {
    let (_relay, _host, client, invite) = exec_setup();
    let out = client.run(&["exec", "--timeout", "300ms", &invite, "--", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(124));

    // Ctrl+C on the client interrupts the remote command: 130, like a local one.
    let marker = std::env::temp_dir().join(tether_tests::marker("exec-int"));
    let script = format!("trap 'exit 130' INT; touch {}; sleep 30 & wait", marker.display());
    let child = client.command().args(["exec", &invite, "--", "sh", "-c", &script]).spawn().expect("exec");
    wait_until(agent::WAIT, "the remote command to start", || marker.exists().then_some(()));
    // SAFETY: kill(2) only sends a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("exec ends");
    assert_eq!(out.status.code(), Some(130));

    // The client vanishing takes the remote command (and its children) with it.
    let pid_file = std::env::temp_dir().join(tether_tests::marker("exec-pid"));
    let script = format!("echo $$ > {}; sleep 300", pid_file.display());
    let mut child = client.command().args(["exec", &invite, "--", "sh", "-c", &script]).spawn().expect("exec");
    let pid: i32 = wait_until(agent::WAIT, "the remote pid", || {
        std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok())
    });
    child.kill().expect("kill client");
    let _ = child.wait();
    // SAFETY: kill(pid, 0) only checks whether the process exists.
    wait_until(agent::WAIT, "the remote command to be cancelled", || {
        (unsafe { libc::kill(pid, 0) } != 0).then_some(())
    });
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn the_relay_never_sees_plaintext() {
    use tether_tests::proxy::{Tamper, WsProxy};
    let relay = Relay::start();
    // Host and client both reach the relay through the tap, so it sees all the relay sees.
    let tap = WsProxy::start(&relay.address(), Tamper::None);
    let host = Agent::new(scratch());
    let out = host.ok(&["pair", "--relay", &tap.url, "--json"]);
    let invite: String =
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["invite"].as_str().expect("invite").into();
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    let secret_marker = tether_tests::marker("sekrit");
    let out = client.run(&["exec", &invite, "--", "sh", "-c", &format!("echo {secret_marker}-output")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{secret_marker}-output\n"));
    let session = client.ok(&["start", "-H", &invite, "--", "sh"]).trim().to_owned();
    client.ok(&["send", "-H", &invite, &session, &format!("echo typed-{secret_marker}"), "key:enter"]);
    host.wait_for_line(&session, &format!("typed-{secret_marker}"));

    let seen = tap.recorded();
    let host_id = invite.split_once('#').and_then(|(_, f)| f.split('.').next()).expect("host id");
    let contains = |needle: &str| seen.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(host_id), "the tap saw the traffic (routing metadata is plaintext by design)");
    assert!(!contains(&secret_marker), "command, input or output leaked to the relay");
    let invite_secret = invite.rsplit('.').next().expect("secret");
    assert!(!contains(invite_secret), "the invite secret leaked to the relay");
}

#[test]
fn tampering_in_the_relay_fails_closed_with_a_clear_error() {
    use tether_tests::proxy::{Tamper, WsProxy};
    // Messages from the host to the client: 0 = hello, 1 = proof, 2 = first sealed output.
    for (tamper, says) in [
        (Tamper::FlipBit { nth: 2 }, "failed authentication"),
        (Tamper::Replay { nth: 2 }, "replayed"),
        (Tamper::Reorder { nth: 2 }, "dropped or reordered"),
    ] {
        let relay = Relay::start();
        let host = Agent::new(scratch());
        let invite = pair(&host, &relay);
        let client = Agent::new(scratch());
        wait_reachable(&client, &invite);
        let proxy = WsProxy::start(&relay.address(), tamper);
        let through_proxy = invite.replace(relay.url.trim_end_matches('/'), &proxy.url);
        // "third" is printed only once the tampered message has reached the client.
        let gate = tether_tests::Scratch::file(scratch(), "gate");
        let script =
            format!("echo first; echo second; until [ -e {0} ]; do sleep 0.02; done; echo third", gate.display());
        let (out, tampered) = std::thread::scope(|scope| {
            let opener = scope.spawn(|| proxy.open_gate_once_tampered(&gate, agent::WAIT));
            let out = client.run(&["exec", &through_proxy, "--", "sh", "-c", &script]);
            (out, opener.join().expect("gate opener"))
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(tampered, "{tamper:?}: the proxy never got to tamper\n{stderr}");
        assert!(!out.status.success(), "{tamper:?} must not succeed");
        assert!(stderr.contains("secure channel") && stderr.contains(says), "{tamper:?}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("third"), "{tamper:?}: output went on after tampering");
    }
}

#[test]
fn logs_and_attach_work_through_the_relay() {
    use tether_tests::agent::PtyClient;
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    let id = host.start_shell();
    // 1.6 MB: more than the 1 MiB ring, so attach replays from a byte well past 0.
    host.ok(&["send", &id, "seq 1 150000 | sed 's/^/row-/'", "key:enter"]);
    host.wait_for_line(&id, "row-150000");
    let tail = client.ok(&["logs", "-H", &invite, &id, "--tail", "2"]);
    assert!(tail.starts_with("row-150000\n"), "the last row, then the prompt: {tail:?}");
    let all = client.ok(&["logs", "-H", &invite, &id]);
    let rows: Vec<&str> = all.lines().filter(|l| l.starts_with("row-")).collect();
    assert_eq!(rows.len(), 150_000, "every line through the relay");

    let mut attached = PtyClient::spawn(&client, &["attach", "-H", &invite, &id]);
    attached.wait_for("row-150000");
    attached.type_bytes(b"echo typed-over-relay\r");
    host.wait_for_line(&id, "typed-over-relay");
    attached.wait_for("typed-over-relay\r\n");
    attached.type_bytes(b"\x1dd");
    assert_eq!(attached.wait_exit(), 0);
    assert_eq!(host.info(&id)["status"], "running", "detaching remotely leaves the session running");
}

#[test]
fn the_cli_bootstrapper_runs_only_a_binary_with_the_right_checksum() {
    let binaries = scratch().join(tether_tests::marker("binaries"));
    std::fs::create_dir_all(&binaries).expect("dir");
    let name = format!("tether-linux-{}", std::env::consts::ARCH);
    std::fs::copy(tether_tests::bin_path("tether"), binaries.join(&name)).expect("copy binary");
    let relay = Relay::start_with("127.0.0.1:0", &["--binaries".as_ref(), binaries.as_os_str()]);
    let bootstrap = |home: &str| {
        let home = scratch().join(tether_tests::marker(home));
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("curl -fsSL {}cli | sh -s -- --version", relay.url))
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .output()
            .expect("sh")
    };
    let out = bootstrap("home-ok");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("tether {}\n", env!("CARGO_PKG_VERSION")));

    // The file changes after the relay hashed it: the script refuses what it downloads.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(binaries.join(&name)).expect("open");
    file.write_all(b"tampered").expect("tamper");
    let out = bootstrap("home-tampered");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(binaries);
}

/// A self-signed certificate for 127.0.0.1, made with openssl(1): (cert, key).
fn loopback_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).expect("cert dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=tether-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

#[test]
fn a_tls_relay_is_reached_over_wss_and_its_certificate_checked() {
    let (cert, key) = loopback_certificate(&scratch().join(tether_tests::marker("tls")));
    let relay = Relay::start_with(
        "127.0.0.1:0",
        &["--tls-cert".as_ref(), cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str()],
    );
    assert!(relay.url.starts_with("https://127.0.0.1:"), "{}", relay.url);
    // Host and client trust this certificate (as they would a public CA's) through SSL_CERT_FILE.
    let host = Agent::with_env(scratch(), &[("SSL_CERT_FILE", &cert)]);
    let invite = pair(&host, &relay);
    let client = Agent::with_env(scratch(), &[("SSL_CERT_FILE", &cert)]);
    wait_reachable(&client, &invite);
    assert_eq!(client.ok(&["exec", &invite, "--", "echo", "over-tls"]), "over-tls\n");

    // A client that does not trust the certificate refuses to go on.
    let stranger = Agent::new(scratch());
    let out = stranger.run(&["exec", &invite, "--", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("certificate"), "{stderr}");

    // Plain http is refused for anything but this machine, before anything is sent.
    let out = host.run(&["pair", "--relay", "http://192.0.2.1:8080"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("use https://"), "{stderr}");
    let plain = invite.replace(relay.url.trim_end_matches('/'), "http://192.0.2.1:8080");
    let out = client.run(&["exec", &plain, "--", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("use https://"), "{stderr}");
}

/// A keystroke rides the attach stream like an exec's stdin: it costs the host no reply of its
/// own, only its echo (and, now and then, flow-control credit).
#[test]
fn a_keystroke_costs_no_reply_of_its_own() {
    use tether_tests::agent::PtyClient;
    const KEYS: usize = 200;
    let log = scratch().join(tether_tests::marker("relay-log"));
    // Everything on the relay, where it counts what it forwards.
    let relay = Relay::start_logging(&["--no-webrtc"], &log);
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let seen_before = tether_tests::relay_forwarded(&log).len();

    let id = host.start(&["cat"]);
    let mut attached = PtyClient::spawn(&client, &["attach", "-H", &invite, &id]);
    // Attached once the first key's echo is back.
    attached.type_bytes(b"x");
    attached.wait_for("x");
    let echoes = attached.echo_samples(KEYS);
    assert_eq!(echoes.len(), KEYS);
    attached.type_bytes(b"\x1dd");
    assert_eq!(attached.wait_exit(), 0);
    host.wait_for_text(&id, "xabc");

    let ended = wait_until(agent::WAIT, "the relay to log the attach's end", || {
        let all = tether_tests::relay_forwarded(&log);
        (all.len() > seen_before).then(|| all[seen_before..].to_vec())
    });
    let to_client: u64 = ended.iter().map(|f| f.to_client_messages).sum();
    let to_host: u64 = ended.iter().map(|f| f.to_host_messages).sum();
    eprintln!("{KEYS} keys: the host sent {to_client} messages, the client {to_host}");
    // One echo per key (the handshake, the attach's answer, a ping's pong and the odd credit
    // besides): not an `ok` per key as well.
    assert!(
        (KEYS as u64..KEYS as u64 + 40).contains(&to_client),
        "the host sent {to_client} messages for {KEYS} keys (and the client {to_host})"
    );
    std::fs::remove_file(&log).ok();
}

#[test]
fn sixty_four_execs_at_once_from_one_address_all_get_in_while_strangers_hold_silent_sockets() {
    // An agent fanning out commands, or an office behind one NAT address: more at once than the
    // relay lets one address have authenticating. "Busy" is "try again", not an error. And a
    // stranger who knows the host id holds 32 sockets that never say hello, from 8 addresses,
    // reopening each as it is dropped: they must not keep anyone out.
    let (relay, _host, client, invite) = exec_setup();
    let host_id = tether_protocol::identity::Invite::parse(&invite).expect("invite").host_id;
    let sources: Vec<std::net::Ipv4Addr> = (2..=9).map(|n| std::net::Ipv4Addr::new(127, 0, 0, n)).collect();
    let silent = tether_tests::hostile::SilentClients::hold(&relay, &host_id, &sources, 4);
    wait_until(std::time::Duration::from_secs(20), "32 silent sockets held", || (silent.open() >= 32).then_some(()));
    let started: Vec<_> = (0..64)
        .map(|n| {
            let mut command = client.command();
            command.args(["exec", &invite, "--", "echo", &format!("run-{n}")]);
            command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            (n, command.spawn().expect("exec"))
        })
        .collect();
    let mut failed = Vec::new();
    for (n, child) in started {
        let out = child.wait_with_output().expect("exec ends");
        let said = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || said.trim() != format!("run-{n}") {
            failed.push(format!("{n}: {:?} {said:?} {}", out.status.code(), tether_tests::stderr_of(&out).trim()));
        }
    }
    assert!(failed.is_empty(), "{} of 64 failed:\n{}", failed.len(), failed.join("\n"));
}
