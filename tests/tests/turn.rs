//! TURN credentials from the relay (`--turn-url`, `--turn-secret-file`), checked by a real coturn
//! on loopback; and `--no-webrtc`. A host is what asks: it registers with the relay as the agent
//! does, and gets the relay's `ice` offer after `registered` (never with credentials) and on each
//! `ice_request` (with credentials only once a client is past its handshake, and not too often).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_protocol::frame::{decode_exact, Frame, Header, RelayMsg, TurnCredentials};
use tether_tests::process::{output_within, spawn_reading_first_line, Guard};
use tether_tests::turn::TurnServer;
use tether_tests::{bin_path, marker, web_root, Scratch};
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A relay with `extra` arguments; its stderr goes to `stderr`. Returns it and its `ws://` base.
fn relay(extra: &[&str], stderr: &Path) -> (Guard, String) {
    let mut command = Command::new(bin_path("tether-relay"));
    command.args(["--listen", "127.0.0.1:0", "--web-root"]).arg(web_root()).args(extra);
    command.stderr(std::fs::File::create(stderr).expect("stderr file"));
    let (process, banner) = spawn_reading_first_line(command, Duration::from_secs(20));
    let url = banner.strip_prefix("tether-relay listening on http://").expect("banner").trim().trim_end_matches('/');
    (process, format!("ws://{url}"))
}

/// Register as a host with a fresh secret, as the agent does: returns the socket, the host id,
/// and the relay's first `ice` offer.
fn register(relay: &str) -> (Socket, String, RelayMsg) {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(&nanos.to_be_bytes());
    secret[16..20].copy_from_slice(&std::process::id().to_be_bytes());
    let host_id = tether_protocol::identity::host_id(&secret);
    let (mut socket, _) = tokio_tungstenite::tungstenite::connect(format!("{relay}/ws/host")).expect("connect");
    let register =
        RelayMsg::Register { host_id: host_id.clone(), proof: tether_protocol::hex::encode(&secret), signature: None };
    send(&mut socket, register);
    assert_eq!(next(&mut socket), RelayMsg::Registered);
    let offer = next(&mut socket);
    (socket, host_id, offer)
}

/// A client of `host_id` past its handshake, as far as the relay can tell: it said hello and the
/// host's `server_proof` went to it.
fn client_in(relay: &str, host_id: &str, host: &mut Socket) -> Socket {
    let (mut client, _) =
        tokio_tungstenite::tungstenite::connect(format!("{relay}/ws/client/{host_id}")).expect("client");
    client.send(Message::Binary(b"hello".to_vec().into())).expect("hello");
    let conn = loop {
        if let RelayMsg::Open { conn, .. } = next(host) {
            break conn;
        }
    };
    // Its hello comes next.
    while next(host) != (RelayMsg::Forward { conn }) {}
    let proof = Frame::new(Header::Auth(tether_protocol::frame::AuthStep::ServerProof), vec![0; 32]);
    let forward = Frame::new(Header::Relay(RelayMsg::Forward { conn }), proof.encode().expect("encode"));
    host.send(Message::Binary(forward.encode().expect("encode").into())).expect("forward");
    assert!(matches!(client.read(), Ok(Message::Binary(_))), "the proof reaches the client");
    client
}

fn send(socket: &mut Socket, message: RelayMsg) {
    let bytes = Frame::bare(Header::Relay(message)).encode().expect("encode");
    socket.send(Message::Binary(bytes.into())).expect("send");
}

fn next(socket: &mut Socket) -> RelayMsg {
    loop {
        match socket.read().expect("a message from the relay") {
            Message::Binary(bytes) => match decode_exact(&bytes).expect("a frame").header {
                Header::Relay(message) => return message,
                other => panic!("not a relay message: {other:?}"),
            },
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

fn turn_offer(message: RelayMsg) -> TurnCredentials {
    match message {
        RelayMsg::Ice { webrtc: true, turn: Some(turn) } => turn,
        other => panic!("expected an ice offer with TURN, got {other:?}"),
    }
}

#[test]
fn hosts_get_short_lived_turn_credentials_that_coturn_accepts() {
    let dir = Scratch::dir(&scratch(), "turn");
    let secret = marker("turn-secret");
    let secret_file = dir.join("turn-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
    let turn = TurnServer::start(&dir, &secret);
    let turn_url = format!("turn:127.0.0.1:{}", turn.port);
    let stderr = dir.join("relay.stderr");
    let (_relay, relay_url) =
        relay(&["--turn-url", &turn_url, "--turn-secret-file", &secret_file.to_string_lossy()], &stderr);

    // Registering gets no credentials (anyone can register a host), nor does asking with no
    // client past its handshake.
    let (mut host, host_id, offer) = register(&relay_url);
    assert_eq!(offer, RelayMsg::Ice { webrtc: true, turn: None });
    send(&mut host, RelayMsg::IceRequest);
    assert_eq!(next(&mut host), RelayMsg::Ice { webrtc: true, turn: None });
    let _client = client_in(&relay_url, &host_id, &mut host);
    send(&mut host, RelayMsg::IceRequest);
    let first = turn_offer(next(&mut host));
    assert_eq!(first.urls, std::slice::from_ref(&turn_url));
    assert_eq!(first.username, format!("{}:{host_id}", first.expires));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    assert!((now + 9 * 60..=now + 11 * 60).contains(&first.expires), "expires {} at {now}", first.expires);
    assert_eq!(turn.allocate(&first.username, &first.credential), Ok(()), "coturn accepts the relay's credentials");

    // A credential changed on the way (or guessed) is refused by the TURN server itself.
    let mut forged = first.credential.clone().into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(turn.allocate(&first.username, &forged), Err(401));
    // So is the right credential under another name: it is bound to the username.
    let renamed = format!("{}:{host_id}", first.expires + 60);
    assert_eq!(turn.allocate(&renamed, &first.credential), Err(401));

    // Asking again at once gets none (a host needs fresh ones every few minutes, not more).
    send(&mut host, RelayMsg::IceRequest);
    assert_eq!(next(&mut host), RelayMsg::Ice { webrtc: true, turn: None });

    // The relay says it offers TURN, and when it refused and why, and never prints the secret.
    let log = std::fs::read_to_string(&stderr).expect("relay stderr");
    assert!(log.contains(&format!("TURN at {turn_url}")), "{log}");
    assert!(log.contains(&format!("no TURN credentials for host {host_id}: NoClient")), "{log}");
    assert!(log.contains(&format!("no TURN credentials for host {host_id}: TooSoon")), "{log}");
    assert!(!log.contains(&secret), "the relay printed its TURN secret: {log}");
}

#[test]
fn no_webrtc_keeps_hosts_on_the_relay_and_bad_turn_settings_are_refused() {
    let dir = Scratch::dir(&scratch(), "no-webrtc");
    let (_relay, relay_url) = relay(&["--no-webrtc"], &dir.join("relay.stderr"));
    let (_host, _, offer) = register(&relay_url);
    assert_eq!(offer, RelayMsg::Ice { webrtc: false, turn: None });

    let (_relay, relay_url) = relay(&[], &dir.join("plain.stderr"));
    let (_host, _, offer) = register(&relay_url);
    assert_eq!(offer, RelayMsg::Ice { webrtc: true, turn: None });

    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "s3cret\n").expect("secret");
    let empty_file = dir.join("empty");
    std::fs::write(&empty_file, "").expect("empty");
    let secret = secret_file.to_string_lossy().into_owned();
    let empty = empty_file.to_string_lossy().into_owned();
    let missing = dir.join("missing").to_string_lossy().into_owned();
    for (args, says) in [
        (
            vec!["--no-webrtc", "--turn-url", "turn:127.0.0.1:3478", "--turn-secret-file", &secret],
            "cannot be used with",
        ),
        (vec!["--turn-url", "turn:127.0.0.1:3478"], "--turn-secret-file"),
        (vec!["--turn-url", "http://127.0.0.1:3478", "--turn-secret-file", &secret], "turn:HOST:PORT"),
        (vec!["--turn-url", "turn:127.0.0.1:3478", "--turn-secret-file", &empty], "empty"),
        (vec!["--turn-url", "turn:127.0.0.1:3478", "--turn-secret-file", &missing], "missing"),
    ] {
        let mut command = Command::new(bin_path("tether-relay"));
        command.args(["--listen", "127.0.0.1:0", "--web-root"]).arg(web_root()).args(&args).stdin(Stdio::null());
        let out = output_within(command, Duration::from_secs(20), "tether-relay with bad TURN settings");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started a relay");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{args:?} printed the secret: {stderr}");
    }
}
