//! Reaching a host through a real relay process: pairing, session commands with -H, wrong
//! secrets, relay restarts. Host and client are separate agents with separate state dirs.

use std::path::Path;

use tether_tests::agent::{self, Agent};
use tether_tests::{wait_until, Relay};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// Pair `host` with `relay`; returns the invite.
fn pair(host: &Agent, relay: &Relay) -> String {
    let out = host.ok(&["pair", "--relay", relay.url.trim_end_matches('/'), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("pair --json is JSON");
    let invite = json["invite"].as_str().expect("invite").to_owned();
    assert!(invite.starts_with(&format!("{}#", relay.url)), "{invite}");
    let fragment = invite.split_once('#').map(|(_, f)| f).unwrap_or_default();
    assert_eq!(fragment.split('.').next(), json["host_id"].as_str(), "host id in the fragment");
    invite
}

/// Run a remote command until the host has registered with the relay (pairing connects it).
fn wait_reachable(client: &Agent, invite: &str) -> String {
    wait_until(agent::WAIT, "the host to be reachable through the relay", || {
        let out = client.run(&["ls", "-H", invite]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
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
    let sessions: serde_json::Value =
        serde_json::from_str(&client.ok(&["ls", "-H", &invite, "--json"])).expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(2));
    // The client machine itself ran nothing.
    assert!(!client.state.join("sessions.sqlite3").exists());
}

#[test]
fn a_wrong_secret_fails_clearly_and_repeats_are_throttled() {
    let relay = Relay::start();
    let host = Agent::new(scratch());
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    let last = invite.chars().last().expect("secret");
    let wrong = format!("{}{}", &invite[..invite.len() - 1], if last == 'A' { 'B' } else { 'A' });
    let out = client.run(&["ls", "-H", &wrong]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("authentication failed"), "{said}");
    let again = client.run(&["ls", "-H", &wrong]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("too many failed attempts"), "throttled");
    // After the back-off the right invite works again.
    wait_reachable(&client, &invite);
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
