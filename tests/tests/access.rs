//! Who may come in, through a real relay: ephemeral invites (`pair --ephemeral`), revoking an
//! invite while it is in use, the host password, and two sessions streamed at once over one
//! encrypted connection.

use std::path::Path;

use serde_json::Value;
use tether_tests::agent::{self, pair, wait_reachable, Agent, PtyClient};
use tether_tests::process::{spawn_collecting, spawn_reading_first_line};
use tether_tests::{marker, wait_until, Relay};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// `tether invites ls --json` on the host.
fn invites(host: &Agent) -> Vec<Value> {
    let listed: Value = serde_json::from_str(&host.ok(&["invites", "ls", "--json"])).expect("invites ls --json");
    listed.as_array().cloned().unwrap_or_default()
}

/// `tether pair --ephemeral --json ARGS…` running in the background, its stderr going to a file.
/// Returns the process, the invite and the stderr file.
fn share(host: &Agent, relay: &Relay, extra: &[&str]) -> (tether_tests::process::Guard, String, std::path::PathBuf) {
    let stderr = scratch().join(marker("share-stderr"));
    let mut command = host.command();
    command.args(["pair", "--relay", relay.url.trim_end_matches('/'), "--ephemeral", "--json"]).args(extra);
    command.stderr(std::fs::File::create(&stderr).expect("stderr file"));
    let (process, first_line) = spawn_reading_first_line(command, agent::WAIT);
    let json: Value = serde_json::from_str(&first_line).expect("pair --json is JSON");
    (process, json["invite"].as_str().expect("invite").to_owned(), stderr)
}

#[test]
fn an_ephemeral_invite_ends_with_its_command_and_stops_what_it_started() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let own = host.start(&["sleep", "300"]);
    let (mut sharing, invite, stderr) = share(&host, &relay, &[]);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let started = client.ok(&["start", "-H", &invite, "--detach", "--", "sleep", "300"]).trim().to_owned();
    let listed = invites(&host);
    assert!(listed.iter().any(|e| e["ephemeral"] == true), "{listed:?}");

    // Ctrl+C on `pair --ephemeral`: the invite is revoked and what it started is stopped.
    sharing.signal(libc::SIGINT);
    assert!(sharing.wait_exit(agent::WAIT, "pair --ephemeral to end").success());
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(said.contains("Invite revoked; 1 session(s)"), "{said}");
    let ended = host.wait_ended(&started);
    assert_ne!(ended["status"], "running");
    assert_eq!(host.info(&own)["status"], "running", "the host's own session is not the share's");
    let out = client.run(&["ls", "-H", &invite]);
    assert!(
        !out.status.success() && tether_tests::stderr_of(&out).contains("unknown or revoked invite"),
        "{}",
        tether_tests::stderr_of(&out)
    );
    assert!(invites(&host).iter().all(|e| e["ephemeral"] == false));
}

/// Processes on this machine whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .collect()
}

/// Kills what a test left behind (should its assertions fail first).
struct KillOnDrop(Vec<String>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for needle in &self.0 {
            for pid in processes_with(needle) {
                // SAFETY: kill(2) only sends a signal.
                unsafe { libc::kill(i32::try_from(pid).unwrap_or(0), libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn a_guest_sees_only_its_own_sessions_and_sets_up_nothing_that_outlives_the_share() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let own = host.start(&["sleep", "300"]);
    let (mut sharing, invite, _stderr) = share(&host, &relay, &[]);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let mine = client.ok(&["start", "-H", &invite, "--detach", "--", "sleep", "300"]).trim().to_owned();

    // The owner's sessions are not the guest's: not listed, not readable, not stoppable.
    let listed = client.ok(&["ls", "-H", &invite]);
    assert!(listed.contains(&mine) && !listed.contains(&own), "{listed}");
    for command in [vec!["logs", "-H", &invite, &own], vec!["stop", "-H", &invite, &own]] {
        let out = client.run(&command);
        assert!(!out.status.success(), "{command:?} was allowed");
        assert!(tether_tests::stderr_of(&out).contains("no session"), "{}", tether_tests::stderr_of(&out));
    }
    assert_eq!(host.info(&own)["status"], "running");

    // Managing the host from the guest's shell, through the daemon's socket, is refused: from an
    // exec, from a session, and with the mark wiped from the environment.
    let tether = tether_tests::bin_path("tether").to_string_lossy().into_owned();
    let relay_url = relay.url.trim_end_matches('/');
    let out = client.run(&["exec", &invite, "--", &tether, "pair", "--relay", relay_url, "--json"]);
    assert!(!out.status.success(), "a guest paired: {}", String::from_utf8_lossy(&out.stdout));
    assert!(tether_tests::stderr_of(&out).contains("guest"), "{}", tether_tests::stderr_of(&out));
    let wiped = format!("env -u TETHER_VIA {tether} invites ls 2>&1; echo exit=$?");
    let out = client.run(&["exec", &invite, "--", "sh", "-c", &wiped]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("guest") && !said.contains("exit=0"), "{said}");
    let in_session = client.ok(&["start", "-H", &invite, "--detach", "--", &tether, "passwd", "--remove"]);
    let said = host.wait_for_text(in_session.trim(), "guest");
    assert!(said.contains("guest"), "{said}");

    // What the guest left running outside its sessions' process groups ends with the share.
    let left_in_session = marker("guest-session-left");
    let left_by_exec = marker("guest-exec-left");
    let _cleanup = KillOnDrop(vec![left_in_session.clone(), left_by_exec.clone()]);
    let escape = |mark: &str| format!("setsid -f sh -c 'sleep 300; : {mark}' </dev/null >/dev/null 2>&1");
    client.ok(&[
        "start",
        "-H",
        &invite,
        "--detach",
        "--",
        "sh",
        "-c",
        &format!("{}; sleep 300", escape(&left_in_session)),
    ]);
    client.ok(&["exec", &invite, "--", "sh", "-c", &escape(&left_by_exec)]);
    for mark in [&left_in_session, &left_by_exec] {
        wait_until(agent::WAIT, "the guest's process to run", || (!processes_with(mark).is_empty()).then_some(()));
    }
    sharing.signal(libc::SIGINT);
    assert!(sharing.wait_exit(agent::WAIT, "pair --ephemeral to end").success());
    for mark in [&left_in_session, &left_by_exec] {
        wait_until(agent::WAIT, "the guest's process to be stopped", || processes_with(mark).is_empty().then_some(()));
    }
    assert_ne!(host.wait_ended(&mine)["status"], "running");
    assert_eq!(host.info(&own)["status"], "running", "the host's own session is not the guest's");
    // No lasting invite came of it.
    assert!(invites(&host).is_empty(), "{:?}", invites(&host));
}

#[test]
fn an_unused_ephemeral_invite_expires_by_itself() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let (mut sharing, invite, stderr) = share(&host, &relay, &["--idle-timeout", "1s"]);
    assert!(sharing.wait_exit(agent::WAIT, "an idle share to end").success());
    let said = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(said.contains("nobody connected for 1s: invite revoked"), "{said}");
    let out = Agent::new(scratch()).run(&["ls", "-H", &invite]);
    assert!(!out.status.success(), "an expired invite still works");
}

#[test]
fn revoking_an_invite_closes_its_live_connections_at_once() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let shell = host.start_shell();
    let invite = pair(&host, &relay);
    let other = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    let mut attached = PtyClient::spawn(&client, &["attach", "-H", &invite, &shell]);
    let identity = wait_until(agent::WAIT, "the attached client to be counted", || {
        invites(&host)
            .into_iter()
            .find(|e| e["connected"] == 1)
            .map(|e| e["identity"].as_str().unwrap_or("").to_owned())
    });
    let started = client.ok(&["start", "-H", &invite, "--detach", "--", "sleep", "300"]).trim().to_owned();
    host.ok(&["invites", "rm", &identity]);
    assert_ne!(attached.wait_exit(), 0);
    // Its last words may still be on their way through the PTY when it has exited.
    attached.wait_for("access revoked");
    // What it started is stopped; what it only looked at (the host's shell) is not.
    assert_ne!(host.wait_ended(&started)["status"], "running");
    assert_eq!(host.info(&shell)["status"], "running");

    let out = client.run(&["ls", "-H", &invite]);
    assert!(tether_tests::stderr_of(&out).contains("unknown or revoked invite"), "{}", tether_tests::stderr_of(&out));
    // Another invite is untouched.
    let out = client.run(&["ls", "-H", &other]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&shell), "{}", tether_tests::stderr_of(&out));
    let out = host.run(&["invites", "rm", "invite-nonesuch"]);
    assert!(
        !out.status.success() && tether_tests::stderr_of(&out).contains("no invite"),
        "{}",
        tether_tests::stderr_of(&out)
    );
}

#[test]
fn the_host_password_reaches_the_host_by_its_address() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let own = host.start(&["sleep", "300"]);
    let invite = pair(&host, &relay);
    let address = invite.rsplit_once('.').map(|(address, _)| address.to_owned()).expect("address");
    let passwd = |input: &str| {
        let mut command = host.command();
        command.args(["passwd", "--stdin"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        command.stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("passwd");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        child.wait_with_output().expect("passwd output")
    };
    let short = passwd("short\n");
    assert!(
        !short.status.success() && tether_tests::stderr_of(&short).contains("at least 8"),
        "{}",
        tether_tests::stderr_of(&short)
    );
    assert!(passwd("correct horse battery staple\n").status.success());

    let client = Agent::new(scratch());
    let with_password = |password: &str| {
        let mut command = client.command();
        command.env("TETHER_PASSWORD", password).args(["ls", "-H", &address]);
        command.output().expect("ls -H")
    };
    let listed = wait_until(agent::WAIT, "ls with the password", || {
        let out = with_password("correct horse battery staple");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(listed.contains(&own), "{listed}");
    let wrong = with_password("incorrect horse");
    assert!(
        !wrong.status.success() && tether_tests::stderr_of(&wrong).contains("authentication failed"),
        "{}",
        tether_tests::stderr_of(&wrong)
    );
    // The password is stored as a verifier only.
    let database = std::fs::read(host.state.join("sessions.sqlite3")).expect("database");
    assert!(!database.windows(5).any(|w| w == b"horse"), "the password is in the database");

    host.ok(&["passwd", "--remove"]);
    // (Retried: the wrong password above makes the host hold off new attempts for a moment.)
    wait_until(agent::WAIT, "a later client to be told there is no password", || {
        let out = with_password("correct horse battery staple");
        (!out.status.success() && tether_tests::stderr_of(&out).contains("no credential \"password\"")).then_some(())
    });
}

#[test]
fn two_sessions_stream_at_once_over_one_connection() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let first = client.ok(&["start", "-H", &invite, "--detach", "--", "sh"]).trim().to_owned();
    let second = client.ok(&["start", "-H", &invite, "--detach", "--", "sh"]).trim().to_owned();
    for id in [&first, &second] {
        client.ok(&["logs", "-H", &invite, id, "--wait-for-prompt", "--timeout", "20s"]);
    }

    let mut command = client.command();
    command.args(["logs", "-H", &invite, "--follow", &first, &second]);
    let (mut following, output) = spawn_collecting(command);
    // Every other command has finished: one connection left, the one following both sessions.
    wait_until(agent::WAIT, "exactly one connection (logs --follow)", || {
        (invites(&host).iter().map(|e| e["connected"].as_u64().unwrap_or(0)).sum::<u64>() == 1).then_some(())
    });
    let (one, two) = (marker("one"), marker("two"));
    client.ok(&["send", "-H", &invite, &first, &format!("echo {one}"), "key:enter"]);
    client.ok(&["send", "-H", &invite, &second, &format!("echo {two}"), "key:enter"]);
    let text = wait_until(agent::WAIT, "both sessions' output in one `logs --follow`", || {
        let text = output.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (section_has(&text, &first, &one) && section_has(&text, &second, &two)).then_some(text)
    });
    assert!(!section_has(&text, &first, &two) && !section_has(&text, &second, &one), "{text}");

    for id in [&first, &second] {
        client.ok(&["stop", "-H", &invite, id, "--grace", "300ms"]);
    }
    assert!(following.wait_exit(agent::WAIT, "logs --follow to end with its sessions").success());
}

/// Whether a line `needle` appears under a `==> id <==` header of `text`.
fn section_has(text: &str, id: &str, needle: &str) -> bool {
    let mut current = "";
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("==> ").and_then(|l| l.strip_suffix(" <==")) {
            current = header;
        } else if current == id && line.trim_end() == needle {
            return true;
        }
    }
    false
}

#[test]
fn pairing_with_a_relay_that_is_down_says_so() {
    // A port nothing listens on: take a free one and let it go again.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let host = Agent::new(scratch());
    let out = host.run(&["pair", "--relay", &format!("http://127.0.0.1:{port}")]);
    assert!(out.status.success(), "the invite is still issued: the agent keeps trying");
    assert!(tether_tests::stderr_of(&out).contains("cannot reach this host yet"), "{}", tether_tests::stderr_of(&out));
}

/// `tether devices ls --json` on the host.
fn devices(host: &Agent) -> Vec<Value> {
    let listed: Value = serde_json::from_str(&host.ok(&["devices", "ls", "--json"])).expect("devices ls --json");
    listed.as_array().cloned().unwrap_or_default()
}

#[test]
fn hosts_add_trades_the_invite_for_a_device_that_outlives_it_until_devices_rm() {
    let (relay, host, invite, client) = agent::paired(scratch());
    let said = client.ok(&["hosts", "add", "box", &invite]);
    assert!(said.contains("remembered box as device-"), "{said}");
    // The CLI keeps its own secret (0600), not the invite's.
    let kept = std::fs::read_to_string(client.state.join("hosts.json")).expect("hosts.json");
    let invite_secret = invite.rsplit('.').next().expect("secret");
    assert!(!kept.contains(invite_secret) && kept.contains("device-"), "{kept}");
    let listed = devices(&host);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let device = listed[0]["id"].as_str().expect("id").to_owned();
    let invite_id = invites(&host)[0]["identity"].as_str().expect("identity").to_owned();
    assert_eq!(listed[0]["via"], Value::from(invite_id.clone()), "{listed:?}");
    assert!(listed[0]["name"].as_str().is_some_and(|n| n.starts_with("tether CLI on ")), "{listed:?}");
    let created = listed[0]["last_seen"].as_u64().expect("last seen");

    // The invite is revoked: the device goes on working, and is seen again.
    host.ok(&["invites", "rm", &invite_id]);
    assert!(client.run(&["ls", "-H", &invite]).status.code() != Some(0), "the invite itself is gone");
    assert_eq!(client.ok(&["exec", "box", "--", "echo", "still-in"]), "still-in\n");
    let seen = devices(&host)[0]["last_seen"].as_u64().expect("last seen");
    assert!(seen >= created, "{seen} < {created}");
    host.ok(&["devices", "rename", &device[..12], "build box CLI"]);
    assert_eq!(devices(&host)[0]["name"], "build box CLI");
    let table = host.ok(&["devices", "ls"]);
    assert!(table.contains(&device) && table.contains("build box CLI"), "{table}");

    // While one of its commands runs, the device is connected; `devices rm` ends it at once.
    let mut command = client.command();
    command.args(["exec", "box", "--", "sleep", "300"]);
    let (mut running, _) = spawn_collecting(command);
    wait_until(agent::WAIT, "the device's exec to connect", || {
        (devices(&host)[0]["connected"].as_u64() == Some(1)).then_some(())
    });
    let said = host.ok(&["devices", "rm", &device]);
    assert!(said.contains(&format!("{device} forgotten")), "{said}");
    let status = running.wait_exit(agent::WAIT, "the forgotten device's exec to end");
    assert!(!status.success(), "{status:?}");
    assert!(devices(&host).is_empty());
    let out = client.run(&["exec", "box", "--", "true"]);
    let err = tether_tests::stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("this device is not remembered by the host"), "{err}");
    let out = host.run(&["devices", "rm", &device]);
    assert!(tether_tests::stderr_of(&out).contains("no device"), "{}", tether_tests::stderr_of(&out));

    // `hosts rm` of a host kept as a device forgets the device on the host too.
    let again = agent::pair(&host, &relay);
    client.ok(&["hosts", "add", "box2", &again]);
    assert_eq!(devices(&host).len(), 1);
    let said = client.ok(&["hosts", "rm", "box2"]);
    assert!(said.contains("the host forgot device-"), "{said}");
    assert!(devices(&host).is_empty());
}

/// `tether share --read-only --json ARGS…` on the host: the viewers' invite.
fn share_read_only(host: &Agent, relay: &Relay, extra: &[&str]) -> String {
    let mut args = vec!["share", "--relay", relay.url.trim_end_matches('/'), "--read-only", "--json"];
    args.extend_from_slice(extra);
    let json: Value = serde_json::from_str(&host.ok(&args)).expect("share --json is JSON");
    json["invite"].as_str().expect("invite").to_owned()
}

#[test]
fn a_read_only_invite_watches_its_sessions_and_the_host_refuses_everything_else() {
    let (relay, host, _invite, client) = agent::paired(scratch());
    let shared = host.start(&["cat"]);
    let hidden = host.start(&["sleep", "300"]);
    let viewer = share_read_only(&host, &relay, &["--session", &shared]);
    let listed = invites(&host);
    let entry = listed.iter().find(|e| e["grant"]["read_only"] == true).expect("the read-only invite listed");
    assert_eq!(entry["grant"]["sessions"], serde_json::json!([shared]), "{entry}");

    // It lists and watches the shared session, live.
    let ls = client.ok(&["ls", "-H", &viewer]);
    assert!(ls.contains(&shared) && !ls.contains(&hidden), "{ls}");
    let mut attached = PtyClient::spawn(&client, &["attach", "-H", &viewer, &shared]);
    host.ok(&["send", &shared, "from-the-host", "key:enter"]);
    attached.wait_for("from-the-host");
    // Keys typed into the viewer's attach reach nothing.
    attached.type_bytes(b"typed-by-viewer\r");

    // Everything else is refused at the host, in words, and changes nothing.
    let source = scratch().join(marker("viewer-upload"));
    std::fs::write(&source, "x").expect("source");
    let target = scratch().join(marker("viewer-target"));
    let target_remote = format!("{viewer}:{}", target.display());
    let outside = format!("{viewer}:/");
    let refused: [&[&str]; 6] = [
        &["send", "-H", &viewer, &shared, "typed-by-send", "key:enter"],
        &["start", "-H", &viewer, "--detach", "--", "touch", "/tmp/never"],
        &["stop", "-H", &viewer, &shared],
        &["exec", &viewer, "--", "true"],
        &["cp", source.to_str().expect("utf-8"), &target_remote],
        &["fs", "ls", &outside],
    ];
    for args in refused {
        let out = client.run(args);
        let err = tether_tests::stderr_of(&out);
        assert!(!out.status.success() && err.contains("read-only"), "{args:?}: {err}");
    }
    assert!(!target.exists());
    let out = client.run(&["attach", "-H", &viewer, &hidden]);
    assert!(tether_tests::stderr_of(&out).contains("no session"), "{}", tether_tests::stderr_of(&out));
    // The session's terminal got no byte from the viewer: its log holds the host's line only.
    host.ok(&["send", &shared, "after-the-viewer", "key:enter"]);
    let log = host.wait_for_line(&shared, "after-the-viewer");
    assert!(!log.contains("typed-by"), "{log}");
    assert_eq!(host.info(&shared)["status"], "running");
    drop(attached);

    // An invite that expires is refused at the proof once it has, in words.
    let brief = share_read_only(&host, &relay, &["--expires", "2s"]);
    client.ok(&["ls", "-H", &brief]);
    let said = wait_until(agent::WAIT, "the invite to expire", || {
        let out = client.run(&["ls", "-H", &brief]);
        (!out.status.success()).then(|| tether_tests::stderr_of(&out))
    });
    assert!(said.contains("this invite expired at"), "{said}");
    let listed = invites(&host);
    assert!(listed.iter().any(|e| e["grant"]["expires_at"].as_u64().is_some()), "{listed:?}");
}

#[test]
fn a_remembered_browser_subscribes_and_the_host_pushes_it_encrypted_when_a_session_waits() {
    use tether_protocol::api::Request;
    use tether_protocol::handshake::Credential;
    use tether_protocol::push;
    use tether_tests::raw::RawClient;

    let (_relay, host, invite, _client) = agent::paired(scratch());
    let service = tether_tests::push_service::PushService::start();
    let address = tether_protocol::identity::HostRef::parse(&invite).expect("invite").address();
    let call = |client: &mut RawClient, id: u64, request: &Request| -> Value {
        client.send(&tether_protocol::cmd::cmd_frame(id, request, Vec::new()));
        client.answers(agent::WAIT, 1).pop().expect("an answer").1
    };

    // A browser, remembered as a device (as the page does it), subscribes with its keys.
    let (device, secret) = ("device-00112233445566aa", "0f".repeat(32));
    let credential = Credential::derive(&address.host_id, device, secret.as_bytes(), [5; 16]).expect("verifier");
    let mut with_invite = RawClient::hello(&invite);
    with_invite.authenticate(agent::WAIT);
    let remember = Request::RememberDevice {
        device: device.into(),
        name: "a test browser".into(),
        salt: tether_protocol::hex::encode(&credential.salt),
        verifier: tether_protocol::hex::encode(&credential.verifier),
    };
    assert_eq!(call(&mut with_invite, 1, &remember)["kind"], "device");
    // Only a remembered device may subscribe.
    let by_invite =
        Request::PushSubscribe { endpoint: format!("{}/x", service.url), p256dh: "A".into(), auth: "A".into() };
    assert!(call(&mut with_invite, 2, &by_invite)["message"].as_str().is_some_and(|m| m.contains("remembered")));
    let mut browser = RawClient::hello_as(&address, device, secret.as_bytes());
    browser.authenticate(agent::WAIT);
    let key = call(&mut browser, 1, &Request::PushKey)["key"].as_str().expect("VAPID key").to_owned();
    let receiver_secret = [9u8; push::SECRET_KEY_BYTES];
    let auth = [3u8; push::AUTH_BYTES];
    let subscribe = Request::PushSubscribe {
        endpoint: format!("{}/push/sub-1", service.url),
        p256dh: push::encode(&push::public_key_of(&receiver_secret).expect("key")),
        auth: push::encode(&auth),
    };
    assert_eq!(call(&mut browser, 2, &subscribe)["kind"], "ok");

    // A session told to notify (`notify on`) asks a question: one push, which only the
    // subscription opens.
    let prompt = "read go; echo secret-output-$((6*7)); printf 'Continue? [y/n] '; read answer";
    let deploy = host.ok(&["start", "--detach", "--title", "deploy", "--", "sh", "-c", prompt]).trim().to_owned();
    assert_eq!(host.info(&deploy)["notify"], false);
    host.ok(&["notify", "off", &deploy]);
    host.ok(&["notify", "on", &deploy]);
    assert_eq!(host.info(&deploy)["notify"], true);
    host.ok(&["send", &deploy, "go", "key:enter"]);
    let pushed = wait_until(agent::WAIT, "a push", || service.received().into_iter().next());
    assert_eq!(pushed.path, "/push/sub-1");
    assert_eq!(pushed.header("content-encoding"), Some("aes128gcm"));
    let authorization = pushed.header("authorization").expect("VAPID");
    assert!(authorization.starts_with("vapid t=") && authorization.ends_with(&format!(", k={key}")), "{authorization}");
    let opened = push::decrypt(&receiver_secret, &auth, &pushed.body).expect("opens with the subscription's key");
    let payload: Value = serde_json::from_slice(&opened).expect("JSON");
    assert_eq!(
        (payload["title"].as_str(), payload["reason"].as_str()),
        (Some("deploy"), Some("confirmation")),
        "{payload}"
    );
    assert!(!String::from_utf8_lossy(&opened).contains("secret-output"), "no output in a push: {payload}");
    assert!(push::decrypt(&[8; push::SECRET_KEY_BYTES], &auth, &pushed.body).is_err());

    // `notify test` reaches it; a push service that says 410 has forgotten it: dropped.
    assert!(host.ok(&["notify", "test"]).contains("pushed to 1 browser(s)"));
    service.answer_with(410);
    assert!(host.ok(&["notify", "test"]).contains("1 subscription(s) gone and dropped"));
    assert!(host.ok(&["notify", "test"]).contains("pushed to 0 browser(s)"));
    assert_eq!(service.received().len(), 3, "nothing after the drop");
}
