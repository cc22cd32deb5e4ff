//! One relay service on several nodes: real `redis-server`, real relay processes on loopback
//! sharing it, real agents, the CLI and Chromium. A host registers on one node; clients reach
//! it through any node; nodes and Redis die and come back.

use std::path::Path;
use std::time::Duration;

use tether_tests::agent::{self, pair, wait_reachable, Agent, PtyClient};
use tether_tests::cluster::{close_of, node, node_secret, PresenceWatch, RedisServer};
use tether_tests::page::{bash_host, Page};
use tether_tests::webdriver::Browser;
use tether_tests::{relay_forwarded_carried, wait_until, Scratch};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

const EXEC_BYTES: usize = 100_000_000; // 100 MB
/// A host whose node died must be back through another node within its redial back-off (the
/// agent's longest wait is 10 s) plus a registration.
const FAILOVER: Duration = Duration::from_secs(20);

/// The invite `invite` (made through one node) with another node's address: the same host,
/// reached through `relay_url`.
fn through(invite: &str, relay_url: &str) -> String {
    let fragment = invite.split_once('#').map(|(_, f)| f).expect("invite has a fragment");
    format!("{}/#{fragment}", relay_url.trim_end_matches('/'))
}

fn host_id_of(invite: &str) -> String {
    invite.split_once('#').and_then(|(_, f)| f.split('.').next()).expect("host id").to_owned()
}

fn ws(relay_url: &str) -> String {
    relay_url.trim_end_matches('/').replace("http://", "ws://")
}

/// Relay nodes on `redis` sharing one node secret, logging to `dir/NAME.log`; without WebRTC, so
/// every byte a carried client moves crosses between the nodes.
fn nodes<const N: usize>(dir: &Path, redis: &RedisServer, names: [&str; N]) -> [tether_tests::Relay; N] {
    let secret = node_secret(dir);
    names.map(|name| node(redis, &secret, "127.0.0.1:0", &dir.join(format!("{name}.log")), &["--no-webrtc"]))
}

/// A shell on `host`, attached from `client` through `link`, once a command typed in it echoed.
fn attached_shell(host: &Agent, client: &Agent, link: &str) -> (String, PtyClient) {
    let shell = host.start_shell();
    let mut attached = PtyClient::spawn(client, &["attach", "-H", link, &shell]);
    attached.type_bytes(b"echo before-$((1+1))\r");
    attached.wait_for("before-2");
    (shell, attached)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_host_on_one_node_is_reached_through_the_others_for_exec_the_page_and_presence() {
    use sha2::{Digest, Sha256};
    let dir = Scratch::dir(scratch(), "cluster-three");
    let redis = RedisServer::start();
    let [a, b, c] = nodes(&dir, &redis, ["a", "b", "c"]);
    let (host, _) = bash_host(&dir, &[]);
    let invite = pair(&host, &a);
    let host_id = host_id_of(&invite);
    let client = Agent::new(&dir);
    let via_b = through(&invite, &b.url);
    wait_reachable(&client, &via_b);

    // 100 MB through node B, carried to node A: byte for byte.
    let script = format!("f=$(mktemp); head -c {EXEC_BYTES} /dev/urandom > $f; sha256sum $f >&2; cat $f; rm -f $f");
    let out = client.run(&["exec", &via_b, "--", "sh", "-c", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), EXEC_BYTES);
    let host_digest = String::from_utf8_lossy(&out.stderr).split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(hex(&Sha256::digest(&out.stdout)), host_digest, "byte-identical through node B");
    // Node B carried it (its log counts what it forwarded to the client).
    let carried = wait_until(agent::WAIT, "node B to log the carried exec", || {
        relay_forwarded_carried(&dir.join("b.log")).into_iter().find(|&(_, down)| down >= EXEC_BYTES as u64)
    });
    eprintln!("node B carried {} bytes up and {} down to node A", carried.0, carried.1);

    // Presence through node C: online; the page through node C runs a command.
    let watch = PresenceWatch::start(&c.url, &host_id);
    watch.wait_for(true, agent::WAIT);
    let browser = Browser::start(&dir);
    let page = Page(&browser);
    browser.goto(&through(&invite, &c.url));
    page.landed();
    page.type_text("echo via-node-c-$((40+2))\n");
    page.wait_text(None, "the command's output on the page via node C", |t| {
        t.lines().any(|l| l.trim_end() == "via-node-c-42")
    });

    // The host's agent stops: node C says offline within seconds.
    drop(host);
    watch.wait_for(false, agent::WAIT);
    drop(browser);
    drop((a, b, c));
}

#[test]
fn a_dead_node_hands_its_hosts_to_another_and_a_carried_client_resumes_from_the_last_byte() {
    let dir = Scratch::dir(scratch(), "cluster-failover");
    let redis = RedisServer::start();
    let [a, b] = nodes(&dir, &redis, ["a", "b"]);
    let host = Agent::new(&dir);
    let invite = pair(&host, &a);
    let client = Agent::new(&dir);
    let via_b = through(&invite, &b.url);
    wait_reachable(&client, &via_b);
    let (shell, mut attached) = attached_shell(&host, &client, &via_b);

    // Node A dies with the host on it.
    drop(a);
    // Output the client misses while its route is gone.
    host.ok(&["send", &shell, "echo during-$((2+3))", "key:enter"]);
    host.wait_for_text(&shell, "during-5");
    // The host registers through node B (a peer node A named), and the client through B
    // resumes: what it missed exactly once, then typing works again.
    let started = std::time::Instant::now();
    wait_until(FAILOVER, "the client through node B to show what it missed", || {
        attached.output().contains("during-5").then_some(())
    });
    eprintln!("the carried client resumed {:?} after node A died", started.elapsed());
    attached.type_bytes(b"echo after-$((3+4))\r");
    attached.wait_for("after-7");
    let seen = attached.output();
    assert_eq!(seen.matches("during-5").count(), 1, "missed output shown once:\n{seen}");
    // Node B holds the host now: a new client through B is not carried anywhere.
    assert_eq!(client.ok(&["exec", &via_b, "--", "echo", "on-b"]), "on-b\n");
    attached.type_bytes(b"exit\r");
    assert_eq!(attached.wait_exit(), 0);
    drop(b);
}

#[test]
fn losing_redis_keeps_each_node_serving_its_own_hosts_and_routing_comes_back_by_itself() {
    let dir = Scratch::dir(scratch(), "cluster-redis");
    let mut redis = RedisServer::start();
    let [a, b] = nodes(&dir, &redis, ["a", "b"]);
    let host = Agent::new(&dir);
    let invite = pair(&host, &a);
    let host_id = host_id_of(&invite);
    let client = Agent::new(&dir);
    let via_b = through(&invite, &b.url);
    wait_reachable(&client, &via_b);
    let (_shell, mut attached) = attached_shell(&host, &client, &invite);

    redis.kill();
    wait_until(agent::WAIT, "node A to say Redis is gone", || {
        std::fs::read_to_string(dir.join("a.log")).ok()?.contains("Redis unreachable").then_some(())
    });
    // The host's own node goes on: the attached client types and sees, a new exec works.
    attached.type_bytes(b"echo during-$((2+3))\r");
    attached.wait_for("during-5");
    assert_eq!(client.ok(&["exec", &invite, "--", "echo", "still-on-a"]), "still-on-a\n");
    // Through node B, the client hears why it cannot get there, in words it retries on.
    let (code, reason) = close_of(&format!("{}/ws/client/{host_id}", ws(&b.url)), None).expect("a close");
    assert!(reason.contains("Redis") && reason.contains("try again shortly"), "{code} {reason}");

    // Redis comes back empty: the nodes find it, claims come back, B routes to A again.
    redis.restart();
    let out = wait_until(Duration::from_secs(30), "exec through node B to work again", || {
        let out = client.run(&["exec", &via_b, "--", "echo", "via-b-again"]);
        out.status.success().then_some(out)
    });
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via-b-again\n");
    attached.type_bytes(b"echo after-$((3+4))\r");
    attached.wait_for("after-7");
    attached.type_bytes(b"exit\r");
    assert_eq!(attached.wait_exit(), 0);
    drop((a, b));
}

#[test]
fn a_node_internal_endpoint_refuses_anyone_without_the_node_secret() {
    let dir = Scratch::dir(scratch(), "cluster-secret");
    let redis = RedisServer::start();
    let [a] = nodes(&dir, &redis, ["a"]);
    let host = Agent::new(&dir);
    let invite = pair(&host, &a);
    let host_id = host_id_of(&invite);
    let internal = format!("{}/internal/client/{host_id}", ws(&a.url));
    // A stranger: a made-up proof, no proof at all.
    let bogus = format!("127.0.0.1 {}", "ab".repeat(32));
    for first in [Some(bogus.as_str()), Some("127.0.0.1"), None] {
        let (code, reason) = close_of(&internal, first).expect("the endpoint answers with a close");
        assert_eq!((code, reason.as_str()), (4401, "node authentication failed"), "{first:?}");
    }
    // A node of another service (another secret) on the same Redis cannot carry a client.
    let other_secret = dir.join("other-secret");
    std::fs::write(&other_secret, "some-other-services-secret\n").expect("secret");
    let x = node(&redis, &other_secret, "127.0.0.1:0", &dir.join("x.log"), &["--no-webrtc"]);
    let (code, reason) = close_of(&format!("{}/ws/client/{host_id}", ws(&x.url)), None).expect("a close");
    assert!(reason.contains("cannot reach the relay node that holds the host"), "{code} {reason}");
    // A relay that is no node has no internal endpoint at all.
    let single = tether_tests::Relay::start();
    let refused = close_of(&format!("{}/internal/client/{host_id}", ws(&single.url)), None);
    assert!(refused.is_err_and(|e| e.contains("404")), "a single relay has no internal endpoint");
    drop((a, x));
}
