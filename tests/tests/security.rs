//! The security review's findings, each as what a user (or an attacker) would do: real relay,
//! agent and CLI processes, and a hand-driven protocol client where an attacker would stop
//! where no CLI does.

use std::path::Path;
use std::process::Stdio;

use tether_tests::agent::{self, pair, wait_reachable, Agent, PtyClient};
use tether_tests::raw::{RawClient, Received};
use tether_tests::{wait_until, Relay};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn paired() -> (Relay, Agent, String, Agent) {
    agent::paired(scratch())
}

/// `tether passwd --stdin` on the host.
fn set_password(host: &Agent, password: &str) {
    let mut command = host.command();
    command.args(["passwd", "--stdin"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("passwd");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    let out = child.wait_with_output().expect("passwd ran");
    assert!(out.status.success(), "passwd: {}", tether_tests::stderr_of(&out));
}

/// `tether ls -H ADDRESS` with `password` in the environment.
fn ls_with_password(client: &Agent, address: &str, password: &str) -> std::process::Output {
    client.command().args(["ls", "-H", address]).env("TETHER_PASSWORD", password).output().expect("ls")
}

/// The host's address (its invite without the secret), for the password.
fn address_of(invite: &str) -> String {
    invite.rsplit_once('.').map(|(address, _)| address.to_owned()).expect("address")
}

/// A raw client that sent its hello and got the host's answer, and stops there.
fn mid_handshake(client: &mut RawClient) {
    client.flush();
    match client.receive(agent::WAIT) {
        Some(Received::Events(events)) => assert!(events.is_empty(), "{events:?}"),
        other => panic!("no server hello: {other:?}"),
    }
    assert!(!client.conn.is_open());
}

fn run_within(command: std::process::Command, what: &str) -> std::process::Output {
    tether_tests::process::output_within(command, agent::WAIT, what)
}

fn daemon_log(host: &Agent) -> String {
    std::fs::read_to_string(host.state.join("daemon.log")).unwrap_or_default()
}

// 1. Revocation must win every race.

#[test]
fn revoking_an_invite_closes_a_connection_in_the_middle_of_its_handshake() {
    let (_relay, host, invite, _client) = paired();
    let mut attacker = RawClient::hello(&invite);
    mid_handshake(&mut attacker);
    let identity = tether_protocol::identity::Invite::parse(&invite).expect("invite").identity();
    host.ok(&["invites", "rm", &identity]);
    match attacker.receive(agent::WAIT) {
        Some(Received::Closed(reason)) => assert!(reason.contains("revoked"), "{reason}"),
        other => panic!("the half-open connection outlived its invite: {other:?}"),
    }
}

#[test]
fn a_new_password_closes_old_password_connections_even_mid_handshake() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    set_password(&host, "first password");
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let address = address_of(&invite);
    let shell = host.start_shell();

    // One connection authenticated with the old password, one half way through its handshake.
    let mut command = portable_pty::CommandBuilder::new(tether_tests::bin_path("tether"));
    command.args(["attach", "-H", &address, &shell]);
    command.env("TETHER_STATE_DIR", &client.state);
    command.env("TETHER_PASSWORD", "first password");
    let mut attached = PtyClient::spawn_command(command);
    attached.type_bytes(b"echo attached-$((6*7))\r");
    attached.wait_for("attached-42");
    let link = tether_protocol::identity::HostRef::parse(&address).expect("address");
    let mut halfway = RawClient::hello_as(&link.address(), "password", b"first password");
    mid_handshake(&mut halfway);

    set_password(&host, "second password");
    assert_ne!(attached.wait_exit(), 0, "the old password's session ends");
    // Its last words may still be on their way through the PTY when it has exited.
    attached.wait_for("revoked");
    match halfway.receive(agent::WAIT) {
        Some(Received::Closed(reason)) => assert!(reason.contains("revoked"), "{reason}"),
        other => panic!("the half-open connection outlived the old password: {other:?}"),
    }
    // The new password works; the old one does not.
    assert!(ls_with_password(&client, &address, "second password").status.success());
    assert!(!ls_with_password(&client, &address, "first password").status.success());
}

// 2. A stranger cannot lock the owner out.

#[test]
fn abandoned_handshakes_do_not_lock_the_owner_out() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let owner = Agent::new(scratch());
    wait_reachable(&owner, &invite);
    // A stranger who knows only the host id opens handshakes and walks away, over and over.
    let address = tether_protocol::identity::HostRef::parse(&address_of(&invite)).expect("address").address();
    for _ in 0..25 {
        let mut stranger = RawClient::hello_as(&address, "password", b"no idea");
        stranger.flush();
        stranger.drop_socket();
    }
    let out = owner.run(&["ls", "-H", &invite]);
    assert!(out.status.success(), "the owner is locked out: {}", tether_tests::stderr_of(&out));
}

#[test]
fn wrong_passwords_slow_guessing_but_the_right_one_and_invites_still_get_in() {
    let (_relay, host, invite, client) = paired();
    set_password(&host, "the right password");
    let address = address_of(&invite);
    for _ in 0..5 {
        let out = ls_with_password(&client, &address, "a wrong guess");
        assert!(
            tether_tests::stderr_of(&out).contains("wrong secret or password"),
            "{}",
            tether_tests::stderr_of(&out)
        );
    }
    // While the password is being guessed at, an invite is not held up at all...
    let out = client.run(&["ls", "-H", &invite]);
    assert!(
        out.status.success(),
        "an invite is refused while the password is throttled: {}",
        tether_tests::stderr_of(&out)
    );
    // ...and the right password gets in on its first try: slowed, never refused.
    let out = ls_with_password(&client, &address, "the right password");
    assert!(out.status.success(), "the owner is refused: {}", tether_tests::stderr_of(&out));
}

// 3. No parallel guesses.

#[test]
fn parallel_password_guesses_are_checked_one_at_a_time_with_back_off() {
    let (_relay, host, invite, _client) = paired();
    set_password(&host, "the right password");
    let address = tether_protocol::identity::HostRef::parse(&address_of(&invite)).expect("address").address();
    // Four guessers (all one address lets the relay hold), each half way through its
    // handshake, then all proofs at once.
    let mut guessers: Vec<RawClient> =
        (0..4).map(|_| RawClient::hello_as(&address, "password", b"a wrong guess")).collect();
    for guesser in &mut guessers {
        mid_handshake(guesser);
    }
    for guesser in &mut guessers {
        guesser.flush();
    }
    for guesser in &mut guessers {
        match guesser.receive(agent::WAIT) {
            Some(Received::Closed(why)) => assert!(why.contains("wrong secret or password"), "{why}"),
            other => panic!("a wrong guess got in: {other:?}"),
        }
    }
    // Each guess after the first waited for the one before it and for its back-off.
    let log = daemon_log(&host);
    let waited = log.lines().filter(|l| l.contains("password proof checked after")).count();
    assert!(waited >= 3, "guesses were checked in parallel, without back-off:\n{log}");
}

// 5. `/cli` is built from trusted parts only.

/// A directory with one binary for this machine, as `--binaries` wants it.
fn binaries_dir() -> std::path::PathBuf {
    let dir = scratch().join(tether_tests::marker("binaries"));
    std::fs::create_dir_all(&dir).expect("binaries dir");
    std::fs::copy(tether_tests::bin_path("tether"), dir.join("tether-linux-x86_64")).expect("copy binary");
    dir
}

/// `curl -sS -i ARGS URL/cli`: status line, headers and body.
fn fetch_cli(url: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i"])
        .args(args)
        .arg(format!("{}cli", url))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cli_script_never_pastes_an_unchecked_host_into_shell() {
    let binaries = binaries_dir();
    let relay = Relay::start_with("127.0.0.1:0", &["--binaries".as_ref(), binaries.as_os_str()]);
    let mark = scratch().join(tether_tests::marker("injected"));
    let evil = format!("Host: x'; touch {}; '", mark.display());
    let response = fetch_cli(&relay.url, &["-H", &evil]);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    let ran = std::process::Command::new("sh").arg("-c").arg(&body).env("HOME", scratch()).output().expect("sh");
    drop(ran);
    assert!(!mark.exists(), "a Host header ran shell code: {response}");
    // An honest request gets a script that shared caches must not keep.
    let response = fetch_cli(&relay.url, &[]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let cache = response.lines().find(|l| l.to_ascii_lowercase().starts_with("cache-control:")).unwrap_or("");
    assert!(cache.contains("no-store") && cache.contains("private"), "{cache}");
    assert!(response.contains(&format!("relay='{}'", relay.url.trim_end_matches('/'))), "{response}");
}

#[test]
fn the_cli_script_names_the_public_url_and_https_behind_tls() {
    let binaries = binaries_dir();
    let relay = Relay::start_with(
        "127.0.0.1:0",
        &["--binaries".as_ref(), binaries.as_os_str(), "--public-url".as_ref(), "https://relay.example/".as_ref()],
    );
    let response = fetch_cli(&relay.url, &["-H", "Host: attacker.example"]);
    assert!(response.contains("relay='https://relay.example'"), "{response}");
    assert!(!response.contains("attacker.example"), "{response}");

    let certs = scratch().join(tether_tests::marker("certs"));
    std::fs::create_dir_all(&certs).expect("cert dir");
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=tether-test", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let tls = Relay::start_with(
        "127.0.0.1:0",
        &[
            "--binaries".as_ref(),
            binaries.as_os_str(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    );
    let response = fetch_cli(&tls.url, &["--insecure"]);
    let origin = tls.url.trim_end_matches('/');
    assert!(origin.starts_with("https://") && response.contains(&format!("relay='{origin}'")), "{response}");
}

// 7 and 8. Peer-controlled numbers and requests.

/// Send `request` as a `cmd` with id `id` over an authenticated raw client.
fn request(client: &mut RawClient, id: u64, request: &tether_protocol::api::Request) {
    client.send(&tether_protocol::cmd::cmd_frame(id, request, Vec::new()));
}

fn is_error_with(body: &serde_json::Value, text: &str) -> bool {
    body["kind"] == "error" && body["message"].as_str().is_some_and(|m| m.contains(text))
}

#[test]
fn sequence_numbers_at_the_end_of_u64_cost_the_sender_its_connection_and_nobody_else() {
    use tether_protocol::frame::{Control, Frame, Header};
    let (_relay, _host, invite, client) = paired();
    let mut attacker = RawClient::hello(&invite);
    attacker.authenticate(agent::WAIT);
    // Bytes numbered up to u64::MAX - 3, then ten more: they would run past the end.
    let near_the_end = u64::MAX - 3;
    attacker.send(&Frame::bare(Header::Control(Control::Skip { stream: 5, from: 0, to: near_the_end })));
    attacker.send(&Frame::new(Header::Data { stream: 5, seq: near_the_end }, vec![b'x'; 10]));
    loop {
        match attacker.receive(agent::WAIT) {
            Some(Received::Closed(why)) => {
                break assert!(why.contains("64-bit range"), "closed for another reason: {why}")
            }
            Some(Received::Events(_)) => continue,
            None => panic!("the host kept a connection that numbered bytes past u64::MAX"),
        }
    }
    // The host stays reachable for everyone else.
    let mut ls = client.command();
    ls.args(["ls", "-H", &invite]);
    let listed = run_within(ls, "ls -H after the attack");
    assert!(listed.status.success(), "ls -H failed after the attack: {}", tether_tests::stderr_of(&listed));
}

#[test]
fn request_ids_that_would_collide_as_streams_are_refused() {
    use tether_protocol::api::Request;
    let (_relay, host, invite, _client) = paired();
    let session = host.start(&["sleep", "300"]);
    let mut client = RawClient::hello(&invite);
    client.authenticate(agent::WAIT);
    let attach = Request::Attach { session: session.clone(), from: None, cols: None, rows: None };
    // 2^32 + 5 would be stream 5, and so would 5 itself.
    request(&mut client, (1 << 32) + 5, &attach);
    request(&mut client, 5, &attach);
    request(&mut client, 5, &attach);
    let got = client.answers(agent::WAIT, 3);
    assert!(got.iter().any(|(id, b)| *id == (1 << 32) + 5 && is_error_with(b, "cannot name a stream")), "{got:?}");
    assert!(got.iter().any(|(id, b)| *id == 5 && b["kind"] == "streaming"), "{got:?}");
    assert!(got.iter().any(|(id, b)| *id == 5 && is_error_with(b, "already open")), "{got:?}");
}

#[test]
fn a_flood_of_requests_is_refused_rather_than_spawned_without_bound() {
    use tether_protocol::api::Request;
    let (_relay, host, invite, _client) = paired();
    let session = host.start(&["sleep", "300"]);
    let mut client = RawClient::hello(&invite);
    client.authenticate(agent::WAIT);
    // Each of these would wait a minute for a prompt that never comes.
    let wait = Request::WaitForPrompt { session, timeout_ms: 60_000 };
    for id in 1..=300 {
        request(&mut client, id, &wait);
    }
    let refused = client
        .answers(agent::WAIT, 300 - 64)
        .iter()
        .filter(|(_, body)| is_error_with(body, "requests under way"))
        .count();
    assert_eq!(refused, 300 - 64, "requests beyond the cap were not refused");
}

// 9. The session limit holds under concurrent starts.

/// The host side of `a_cancelled_exec_never_signals_a_process_that_took_its_pid`, run as pid 1
/// of a pid namespace of its own (and root of a user namespace, so it may set the next pid).
/// It pairs, waits until the exec's process group leader has been reaped, makes the next
/// process take that pid as a group leader of its own, and writes down how that one ended.
const PID_REUSE_HOST: &str = r#"
set -e
"$TETHER" pair --relay "$RELAY" --json > "$DIR/paired.json"
until [ -s "$DIR/victim" ]; do sleep 0.02; done
victim=$(cat "$DIR/victim")
while kill -0 "$victim" 2>/dev/null; do sleep 0.01; done
# Only builtins from here to the fork, so the fork is the next pid.
echo $((victim - 1)) > /proc/sys/kernel/ns_last_pid
setsid sleep 4 &
echo "$!" > "$DIR/innocent"
status=0; wait $! || status=$?
echo "$status" > "$DIR/innocent-status"
"$TETHER" daemon stop --grace 0s
"#;

#[test]
fn a_cancelled_exec_never_signals_a_process_that_took_its_pid() {
    let relay = Relay::start();
    let dir = scratch().join(tether_tests::marker("pid-reuse"));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut command = std::process::Command::new("unshare");
    command.args(["--user", "--map-root-user", "--pid", "--fork", "--mount", "--mount-proc", "--kill-child"]);
    command.args(["sh", "-c", PID_REUSE_HOST]);
    command.env("TETHER", tether_tests::bin_path("tether")).env("RELAY", relay.url.trim_end_matches('/'));
    command.env("DIR", &dir).env("TETHER_STATE_DIR", dir.join("host-state")).stdin(Stdio::null());
    let _host = tether_tests::process::Guard::spawn(command);
    let paired = wait_until(agent::WAIT, "the host in its namespace to pair", || {
        let text = std::fs::read_to_string(dir.join("paired.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    });
    let invite = paired["invite"].as_str().expect("invite").to_owned();
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    // An exec that ends at SIGTERM at once; its client goes away, which cancels it.
    let mut exec = client.command();
    let victim = dir.join("victim");
    let script = format!(
        "cut -d' ' -f5 /proc/$$/stat > {}.tmp && mv {0}.tmp {0}; trap 'exit 0' TERM; while :; do sleep 0.1; done",
        victim.display()
    );
    exec.args(["exec", "-H", &invite, "--", "sh", "-c", &script]);
    let exec = tether_tests::process::Guard::spawn(exec);
    let victim_pid = wait_until(agent::WAIT, "the exec to start", || std::fs::read_to_string(&victim).ok());
    exec.signal(libc::SIGKILL);
    drop(exec);

    // The pid is taken by a process the exec never knew, which must end by itself.
    let innocent_status = dir.join("innocent-status");
    let status = wait_until(agent::WAIT, "the process that took the pid to end", || {
        std::fs::read_to_string(&innocent_status).ok().filter(|s| s.ends_with('\n'))
    });
    let innocent = std::fs::read_to_string(dir.join("innocent")).expect("innocent pid");
    assert_eq!(innocent.trim(), victim_pid.trim(), "the next process took the exec's pid");
    assert_eq!(status.trim(), "0", "the process that took the exec's pid was signalled (exit status)");
}

#[test]
fn concurrent_starts_never_pass_the_session_limit() {
    use tether_protocol::api::Request;
    let relay = Relay::start();
    let host = Agent::new(scratch());
    std::fs::write(host.state.join("config.toml"), "max_running_sessions = 1\n").expect("config");
    let invite = pair(&host, &relay);
    wait_reachable(&Agent::new(scratch()), &invite);
    let mut client = RawClient::hello(&invite);
    client.authenticate(agent::WAIT);
    // One burst: the host works on all of them at once.
    let start = |n: u64| Request::Start {
        command: vec!["sleep".into(), format!("{}", 60 + n)],
        title: None,
        cwd: None,
        cols: 80,
        rows: 24,
        notify: None,
    };
    let frames: Vec<_> = (1..=16).map(|id| tether_protocol::cmd::cmd_frame(id, &start(id), Vec::new())).collect();
    for frame in &frames {
        client.conn.send_frame(frame).expect("seal");
    }
    client.flush();
    let got = client.answers(agent::WAIT, 16);
    let started = got.iter().filter(|(_, body)| body["kind"] == "session").count();
    let listed: serde_json::Value =
        serde_json::from_str(&host.ok(&["ls", "--json", "--status", "running"])).expect("ls --json");
    let running = listed.as_array().map_or(0, Vec::len);
    assert_eq!((started, running), (1, 1), "the limit of 1 let {started} start: {got:?}");
}

// 16. Nothing blocks the runtime.

#[test]
fn handshakes_being_computed_never_hold_up_another_clients_requests() {
    use tether_protocol::api::Request;
    let (_relay, _host, invite, _client) = paired();
    let mut busy = RawClient::hello(&invite);
    busy.authenticate(agent::WAIT);
    // Strangers' hellos from 4 loopback sources, 4 each (what the relay lets one source have
    // pending), set the host to 16 handshakes' SRP maths; meanwhile an authenticated client
    // asks something. Each reads on a thread of its own, so each arrival is seen as it happens.
    let strangers: Vec<RawClient> =
        (0..16u8).map(|n| RawClient::hello_from(&invite, std::net::Ipv4Addr::new(127, 0, 1, 1 + n / 4))).collect();
    let start = std::time::Instant::now();
    let hellos: Vec<_> = strangers
        .into_iter()
        .map(|mut stranger| {
            std::thread::spawn(move || {
                stranger.flush();
                match stranger.receive(agent::WAIT) {
                    Some(Received::Events(_)) => start.elapsed(),
                    other => panic!("no server hello: {other:?}"),
                }
            })
        })
        .collect();
    request(&mut busy, 7, &Request::HostInfo);
    assert_eq!(busy.answers(agent::WAIT, 1).len(), 1, "the host info came");
    let answered = start.elapsed();
    let mut hellos: Vec<_> = hellos.into_iter().map(|h| h.join().expect("stranger")).collect();
    hellos.sort();
    // Done one after another where the client's requests are handled, the handshakes would all
    // come before the answer; beside it, most come after.
    let before = hellos.iter().filter(|&&at| at < answered).count();
    assert!(
        before < hellos.len() / 2,
        "{before} of {} handshakes came first: answered after {answered:?}, hellos {hellos:?}",
        hellos.len()
    );
}

// Second review, 11. An upload belongs to the credential that started it.

#[test]
fn one_credential_cannot_resume_commit_or_cancel_anothers_upload() {
    use tether_protocol::api::Request;
    use tether_protocol::cmd::cmd_frame;
    use tether_protocol::fs::FsRequest;
    let (relay, host, invite_a, _client) = paired();
    let invite_b = pair(&host, &relay); // a second invite: another credential
    let target = tether_tests::Scratch::file(scratch(), "upload-target");
    let key = "the-same-key";
    let write = Request::Fs(FsRequest::Write {
        path: target.display().to_string(),
        size: 10,
        upload: key.into(),
        overwrite: true,
        mode: None,
        base: None,
    });
    let chunk = |offset| Request::Fs(FsRequest::Chunk { upload: key.into(), offset });
    let offset_of = |body: &serde_json::Value| body["offset"].as_u64();

    // A file someone hard-linked where the upload's temporary file goes (named as this host
    // names it, and as it named it before uploads were scoped): never written through.
    let victim = tether_tests::Scratch::file(scratch(), "victim");
    std::fs::write(&victim, "precious").expect("victim");
    let Ok(tether_protocol::identity::HostRef::Invite(invite)) = tether_protocol::identity::HostRef::parse(&invite_a)
    else {
        panic!("an invite")
    };
    let tag = {
        let mut digest = tether_protocol::file::FileDigest::new();
        digest.update(invite.identity().as_bytes());
        digest.finish()[..16].to_owned()
    };
    let name = target.file_name().expect("name").to_string_lossy().into_owned();
    for temp in [format!(".{name}.{tag}-{key}.tether-upload"), format!(".{name}.{key}.tether-upload")] {
        std::fs::hard_link(&victim, target.with_file_name(temp)).expect("hard link");
    }

    let mut a = RawClient::hello(&invite_a);
    a.authenticate(agent::WAIT);
    request(&mut a, 1, &write);
    let got = a.answers(agent::WAIT, 1);
    assert_eq!(got.first().and_then(|(_, body)| offset_of(body)), Some(0), "{got:?}");
    a.send(&cmd_frame(3, &chunk(0), b"hello".to_vec()));
    let got = a.answers(agent::WAIT, 1);
    assert!(got.first().is_some_and(|(_, body)| body["kind"] == "fs"), "A's chunk: {got:?}");

    // B names the same upload: it gets one of its own, from 0, and its cancel and commit reach
    // only that one.
    let mut b = RawClient::hello(&invite_b);
    b.authenticate(agent::WAIT);
    request(&mut b, 1, &write);
    let got = b.answers(agent::WAIT, 1);
    assert_eq!(got.first().and_then(|(_, body)| offset_of(body)), Some(0), "B resumed A's upload: {got:?}");
    request(&mut b, 3, &Request::Fs(FsRequest::Cancel { upload: key.into() }));
    request(&mut b, 5, &Request::Fs(FsRequest::Commit { upload: key.into(), sha256: "0".repeat(64) }));
    let got = b.answers(agent::WAIT, 2);
    assert!(got.iter().all(|(_, body)| body["kind"] != "fs" || body["fs"] != "committed"), "{got:?}");

    // A's upload is whole and its own.
    a.send(&cmd_frame(5, &chunk(5), b"world".to_vec()));
    let got = a.answers(agent::WAIT, 1);
    assert!(got.first().is_some_and(|(_, body)| body["kind"] == "fs"), "A's chunk: {got:?}");
    let digest = {
        let mut digest = tether_protocol::file::FileDigest::new();
        digest.update(b"helloworld");
        digest.finish()
    };
    request(&mut a, 7, &Request::Fs(FsRequest::Commit { upload: key.into(), sha256: digest }));
    let got = a.answers(agent::WAIT, 1);
    assert!(got.iter().any(|(_, body)| body["fs"] == "committed"), "A's upload was disturbed: {got:?}");
    assert_eq!(std::fs::read(&*target).expect("committed"), b"helloworld");
    assert_eq!(std::fs::read(&*victim).expect("victim"), b"precious", "written through a hard link");
    for entry in std::fs::read_dir(target.parent().expect("dir")).expect("dir").flatten() {
        if entry.file_name().to_string_lossy().contains(key) {
            let _ = std::fs::remove_file(entry.path()); // the planted links, and B's temporary file
        }
    }
}

// Second review, 7. FIFOs and devices never wedge the host.

#[test]
fn fifos_and_devices_are_refused_at_once_never_read() {
    use tether_protocol::api::Request;
    use tether_protocol::fs::FsRequest;
    let (_relay, _host, invite, client) = paired();
    let dir = tether_tests::Scratch::dir(scratch(), "fifo");
    let fifo = dir.join("pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    // A download opens what it reads: a FIFO would hold a host thread until a writer came, and
    // /dev/zero would never end.
    for source in [fifo.display().to_string(), "/dev/zero".to_owned()] {
        let mut cp = client.command();
        cp.args(["cp", &format!("{invite}:{source}"), &dir.join("copy").display().to_string()]);
        let out = run_within(cp, &format!("cp of {source}"));
        let said = tether_tests::stderr_of(&out);
        assert!(!out.status.success() && said.contains("not a regular file"), "{source}: {said}");
    }
    // The file service's own copy of a FIFO: refused the same way.
    let mut raw = RawClient::hello(&invite);
    raw.authenticate(agent::WAIT);
    let to = dir.join("copied").display().to_string();
    let copy = FsRequest::Copy { from: fifo.display().to_string(), to, overwrite: false };
    request(&mut raw, 1, &Request::Fs(copy));
    let got = raw.answers(agent::WAIT, 1);
    assert!(got.first().is_some_and(|(_, body)| is_error_with(body, "not a regular file")), "{got:?}");
    assert!(!dir.join("copied").exists());
}

// Second review, 9. What a host sends is never printed raw to the user's terminal.

#[test]
fn host_text_reaches_the_terminal_with_its_control_characters_escaped() {
    let (_relay, host, invite, client) = paired();
    // A title, a file name and output that would drive the user's terminal if printed as they
    // are: a 7-bit escape, an OSC (set the window title) and the 8-bit CSI, U+009B.
    let nasty = "t\u{1b}[31m\u{1b}]0;pwned\u{7}\u{9b}2J";
    let dir = tether_tests::Scratch::dir(scratch(), "nasty");
    std::fs::write(dir.join(nasty), "x").expect("a nasty name");
    let session = host.start(&["sh", "-c", "printf 'out\\302\\2332Jput\\n'; sleep 30"]);
    host.wait_for_text(&session, "put");
    let mut start = client.command();
    start.args(["start", "-H", &invite, "--title", nasty, "--", "sleep", "30"]);
    assert!(run_within(start, "start").status.success());
    let listed = format!("{invite}:{}", dir.display());
    let runs = [vec!["ls", "-H", &invite], vec!["fs", "ls", &listed], vec!["logs", "-H", &invite, &session]];
    for args in runs {
        let mut command = client.command();
        command.args(&args);
        let out = run_within(command, &args.join(" "));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", tether_tests::stderr_of(&out));
        assert!(!text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\u{7}'), "{args:?}: {text:?}");
    }
}

#[test]
fn a_relay_that_saw_a_hosts_registration_cannot_claim_its_id_at_another() {
    // The host pairs with a relay that keeps what the host showed it; that relay's operator then
    // takes it to a real relay. The host signed the first relay's challenge and address, so the
    // real one refuses it — and the host itself registers there as always.
    let lying = tether_tests::hostile::FakeRelay::start();
    let host = Agent::new(scratch());
    host.ok(&["pair", "--relay", &lying.url, "--json"]);
    let shown = wait_until(agent::WAIT, "the host to register with the lying relay", || {
        lying.registrations().into_iter().next()
    });
    let relay = Relay::start();
    let claimed = tether_tests::hostile::try_register(&relay, shown.clone());
    assert!(claimed.is_err(), "another relay took the host's id from what it showed one: {shown:?}");
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
}

// Second review, 6. A files root holds against a client racing its own requests.

#[test]
fn a_folder_swapped_for_a_link_while_its_archive_waits_yields_nothing_outside_the_files_root() {
    use tether_protocol::api::Request;
    use tether_protocol::connection::Event;
    use tether_protocol::fs::FsRequest;
    let relay = Relay::start();
    let root = tether_tests::Scratch::dir(scratch(), "race-root");
    let outside = tether_tests::Scratch::dir(scratch(), "race-outside");
    std::fs::write(outside.join("z-file"), "SECRET from outside the root").expect("write");
    std::fs::create_dir_all(root.join("dir/a-sub")).expect("dirs");
    std::fs::create_dir_all(root.join("x/y")).expect("dirs");
    // Bytes gzip cannot shrink, more than the stream's window and every queue on the way
    // together: the archive's walk waits inside them.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..16 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(root.join("dir/a-sub/big"), &big).expect("write");
    std::fs::write(root.join("dir/a-sub/z-file"), "inside").expect("write");
    let host = Agent::new(scratch());
    let invite = agent::pair_with(&host, &relay, &["--files-root", &root.display().to_string()]);

    let mut client = RawClient::hello(&invite);
    client.authenticate(agent::WAIT);
    request(&mut client, 1, &Request::Fs(FsRequest::Archive { path: "dir".into() }));
    // Take the archive's first window and credit none of it: the host's walk stops in `big`.
    let mut archive = Vec::new();
    let mut answered = false;
    let window = tether_protocol::stream::INITIAL_WINDOW_BYTES as usize;
    while archive.len() < window {
        match client.receive(agent::WAIT) {
            Some(Received::Events(events)) => {
                for event in events {
                    match event {
                        Event::Cmd { id: 1, body, .. } => {
                            assert_eq!(body["fs"], "archiving", "{body}");
                            answered = true;
                        }
                        Event::Data { stream: 1, bytes, .. } => archive.extend_from_slice(&bytes),
                        _ => {}
                    }
                }
            }
            other => panic!("the archive stopped before its window was full: {other:?}"),
        }
    }
    assert!(answered && archive.len() == window, "{} bytes", archive.len());

    // Meanwhile, through the service: the folder being archived moves away, and a link that led
    // inside where it was made takes its name — from there it leads out.
    let outside_name = outside.file_name().expect("name").to_string_lossy().into_owned();
    let swaps = [
        Request::Fs(FsRequest::Rename { from: "dir/a-sub".into(), to: "moved".into(), overwrite: false }),
        Request::Fs(FsRequest::Symlink { path: "x/y/a-sub".into(), target: format!("../../{outside_name}") }),
        Request::Fs(FsRequest::Rename { from: "x/y/a-sub".into(), to: "dir/a-sub".into(), overwrite: false }),
    ];
    for (n, swap) in swaps.iter().enumerate() {
        request(&mut client, 3 + 2 * n as u64, swap);
        let got = client.answers(agent::WAIT, 1);
        assert!(got.first().is_some_and(|(_, body)| body["kind"] == "fs"), "{swap:?}: {got:?}");
    }
    assert_eq!(
        std::fs::read_to_string(root.join("dir/a-sub/z-file")).expect("through the link"),
        "SECRET from outside the root"
    );
    // A link made through the service that leads out from where it is made is refused.
    let leading_out = Request::Fs(FsRequest::Symlink { path: "x/out".into(), target: format!("../../{outside_name}") });
    request(&mut client, 9, &leading_out);
    let got = client.answers(agent::WAIT, 1);
    assert!(got.first().is_some_and(|(_, body)| is_error_with(body, "outside the files root")), "{got:?}");
    assert!(std::fs::symlink_metadata(root.join("x/out")).is_err(), "the link was made");

    // Now the rest of the archive, credited as it comes.
    client.conn.consumed(1, archive.len() as u64).expect("credit");
    client.flush();
    let mut ended = false;
    while !ended {
        match client.receive(agent::WAIT) {
            Some(Received::Events(events)) => {
                for event in events {
                    match event {
                        Event::Data { stream: 1, bytes, .. } => {
                            client.conn.consumed(1, bytes.len() as u64).expect("credit");
                            archive.extend_from_slice(&bytes);
                        }
                        Event::Eof { stream: 1, .. } => ended = true,
                        _ => {}
                    }
                }
                client.flush();
            }
            other => panic!("the archive did not end: {other:?}"),
        }
    }
    // What the user unpacks: the folder as it was when its walk entered it.
    let saved = tether_tests::Scratch::file(scratch(), "race.tar.gz");
    std::fs::write(&saved, &archive).expect("save");
    let unpacked = tether_tests::Scratch::dir(scratch(), "race-unpacked");
    let tar = std::process::Command::new("tar")
        .args(["-xzf", &saved.display().to_string(), "-C", &unpacked.display().to_string()])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar: {}", tether_tests::stderr_of(&tar));
    assert_eq!(std::fs::read(unpacked.join("dir/a-sub/big")).expect("big"), big);
    let z_file = std::fs::read_to_string(unpacked.join("dir/a-sub/z-file")).expect("z-file");
    assert_eq!(z_file, "inside", "the archive read through the swapped-in link");
}

#[test]
fn a_read_only_credential_is_refused_writes_and_files_at_the_host_whatever_the_client_sends() {
    use tether_protocol::api::Request;
    use tether_protocol::fs::FsRequest;
    let (relay, host, _invite, _client) = paired();
    let shared = host.start(&["cat"]);
    let out = host.ok(&["share", "--relay", relay.url.trim_end_matches('/'), "--read-only", "--json"]);
    let viewer: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut raw = RawClient::hello(viewer["invite"].as_str().expect("invite"));
    raw.authenticate(agent::WAIT);
    raw.send(&tether_protocol::cmd::cmd_frame(
        1,
        &Request::Write { session: shared.clone(), paced: false },
        b"raw-typed\r".to_vec(),
    ));
    request(&mut raw, 2, &Request::Resize { session: shared.clone(), cols: 10, rows: 5 });
    request(&mut raw, 3, &Request::Fs(FsRequest::Stat { path: "/".into() }));
    request(
        &mut raw,
        4,
        &Request::Start { command: vec!["true".into()], title: None, cwd: None, cols: 80, rows: 24, notify: None },
    );
    request(&mut raw, 5, &Request::List { statuses: vec![], search: None, limit: None });
    let mut answers = raw.answers(agent::WAIT, 5);
    answers.sort_by_key(|(id, _)| *id);
    for (id, body) in &answers[..4] {
        assert!(is_error_with(body, "read-only") && body["code"] == "read_only", "request {id}: {body}");
    }
    assert_eq!(answers[4].1["kind"], "sessions", "{:?}", answers[4]);
    host.ok(&["send", &shared, "host-line", "key:enter"]);
    let log = host.wait_for_line(&shared, "host-line");
    assert!(!log.contains("raw-typed"), "{log}");
}
