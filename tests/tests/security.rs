//! The security review's findings, each as what a user (or an attacker) would do: real relay,
//! agent and CLI processes, and a hand-driven protocol client where an attacker would stop
//! where no CLI does.

use std::path::Path;
use std::process::Stdio;

use tether_tests::agent::{self, pair, wait_reachable, Agent, PtyClient};
use tether_tests::raw::{RawClient, Received};
use tether_tests::Relay;

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tether passwd --stdin` on the host.
fn set_password(host: &Agent, password: &str) {
    let mut command = host.command();
    command.args(["passwd", "--stdin"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("passwd");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("password");
    let out = child.wait_with_output().expect("passwd ran");
    assert!(out.status.success(), "passwd: {}", stderr_of(&out));
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

fn daemon_log(host: &Agent) -> String {
    std::fs::read_to_string(host.state.join("daemon.log")).unwrap_or_default()
}

// 1. Revocation must win every race.

#[test]
fn revoking_an_invite_closes_a_connection_in_the_middle_of_its_handshake() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    wait_reachable(&Agent::new(scratch()), &invite);
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
    let link = tether_protocol::identity::Link::parse(&address).expect("address");
    let mut halfway = RawClient::hello_as(&link.address(), "password", b"first password");
    mid_handshake(&mut halfway);

    set_password(&host, "second password");
    assert_ne!(attached.wait_exit(), 0, "the old password's session ends");
    assert!(attached.output().contains("revoked"), "{}", attached.output());
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
    let address = tether_protocol::identity::Link::parse(&address_of(&invite)).expect("address").address();
    for _ in 0..25 {
        let mut stranger = RawClient::hello_as(&address, "password", b"no idea");
        stranger.flush();
        stranger.drop_socket();
    }
    let out = owner.run(&["ls", "-H", &invite]);
    assert!(out.status.success(), "the owner is locked out: {}", stderr_of(&out));
}

#[test]
fn wrong_passwords_slow_guessing_but_the_right_one_and_invites_still_get_in() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    set_password(&host, "the right password");
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let address = address_of(&invite);
    for _ in 0..5 {
        let out = ls_with_password(&client, &address, "a wrong guess");
        assert!(stderr_of(&out).contains("wrong secret or password"), "{}", stderr_of(&out));
    }
    // While the password is being guessed at, an invite is not held up at all...
    let out = client.run(&["ls", "-H", &invite]);
    assert!(out.status.success(), "an invite is refused while the password is throttled: {}", stderr_of(&out));
    // ...and the right password gets in on its first try: slowed, never refused.
    let out = ls_with_password(&client, &address, "the right password");
    assert!(out.status.success(), "the owner is refused: {}", stderr_of(&out));
}

// 3. No parallel guesses.

#[test]
fn parallel_password_guesses_are_checked_one_at_a_time_with_back_off() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    set_password(&host, "the right password");
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let address = address_of(&invite);
    let guesses: Vec<_> = (0..5)
        .map(|_| {
            let mut command = client.command();
            command.args(["ls", "-H", &address]).env("TETHER_PASSWORD", "a wrong guess");
            command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("guess")
        })
        .collect();
    for guess in guesses {
        let out = guess.wait_with_output().expect("guess ran");
        assert!(!out.status.success());
    }
    // Each guess after the first waited for the one before it and for its back-off.
    let log = daemon_log(&host);
    let waited = log.lines().filter(|l| l.contains("password proof checked after")).count();
    assert!(waited >= 4, "guesses were checked in parallel, without back-off:\n{log}");
}
