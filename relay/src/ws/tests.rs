//! The endpoints end to end on loopback: registration, forwarding, limits, presence.
use crate::admission::{Admission, MAX_PENDING_PER_HOST, MAX_PENDING_PER_SOURCE};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tether_protocol::frame::{decode_exact, AuthStep, Frame, Header, RelayMsg};
use tether_protocol::identity;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Short, so the deadline test is quick; long enough for a loaded test machine's handshakes.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start_relay() -> String {
    start_relay_with(crate::WebrtcPolicy { allowed: true, turn: None }).await
}

async fn start_relay_with(webrtc: crate::WebrtcPolicy) -> String {
    start_relay_configured(webrtc, HANDSHAKE_TIMEOUT).await
}

async fn start_relay_configured(webrtc: crate::WebrtcPolicy, handshake_timeout: std::time::Duration) -> String {
    let root =
        std::env::temp_dir().join(format!("tether-relay-ws-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&root).expect("web root");
    std::fs::write(root.join("index.html"), "<html></html>").expect("index");
    let web = crate::web::WebApp::load(&root).expect("web app");
    // The app is read into memory: its directory goes now, not left behind in /tmp.
    let _ = std::fs::remove_dir_all(&root);
    let app = Arc::new(crate::AppState {
        web,
        hub: Arc::new(crate::hub::Hub::new(256, usize::MAX)),
        cluster: None,
        admission: Admission::new(1000, handshake_timeout, true),
        binaries: None,
        public_url: None,
        tls: false,
        webrtc,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let service = crate::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let _ = axum::serve(listener, service).await;
    });
    format!("ws://{addr}")
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.expect("connect").0
}

/// Connect as if through a proxy that saw the client at `source` (the test relay trusts it).
async fn connect_from(url: &str, source: &str) -> Ws {
    let mut request = url.into_client_request().expect("request");
    let claimed = format!("6.6.6.6, {source}");
    request.headers_mut().insert("x-forwarded-for", claimed.parse().expect("header"));
    tokio_tungstenite::connect_async(request).await.expect("connect").0
}

async fn send_frame(ws: &mut Ws, frame: Frame) {
    ws.send(WsMessage::Binary(frame.encode().expect("encode").into())).await.expect("send");
}

async fn next_frame(ws: &mut Ws) -> Frame {
    loop {
        match ws.next().await.expect("open").expect("message") {
            WsMessage::Binary(bytes) => return decode_exact(&bytes).expect("frame"),
            WsMessage::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

async fn close_reason(ws: &mut Ws) -> String {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Close(Some(frame)))) => return frame.reason.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Register a host; returns its socket, its id and the relay's `ice` offer that follows.
async fn register_host(url: &str, secret: [u8; 32]) -> (Ws, String, RelayMsg) {
    let host_id = identity::host_id(&secret);
    let mut host = connect(&format!("{url}/ws/host")).await;
    let proof = tether_protocol::hex::encode(&secret);
    send_frame(
        &mut host,
        Frame::bare(Header::Relay(RelayMsg::Register { host_id: host_id.clone(), proof, signature: None })),
    )
    .await;
    assert_eq!(next_frame(&mut host).await.header, Header::Relay(RelayMsg::Registered));
    let Header::Relay(offer) = next_frame(&mut host).await.header else { panic!("an ice offer") };
    (host, host_id, offer)
}

async fn register(url: &str, secret: [u8; 32]) -> (Ws, String) {
    let (host, host_id, offer) = register_host(url, secret).await;
    assert_eq!(offer, RelayMsg::Ice { webrtc: true, turn: None });
    (host, host_id)
}

#[tokio::test]
async fn turn_credentials_go_only_to_a_host_with_a_client_in_and_not_too_often() {
    let dir = std::env::temp_dir().join(format!("tether-relay-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("secret"), "s3cret\n").expect("secret");
    let turn = crate::turn::TurnServer::load(vec!["turn:127.0.0.1:3478".into()], &dir.join("secret")).expect("turn");
    let _ = std::fs::remove_dir_all(&dir);
    let url = start_relay_with(crate::WebrtcPolicy { allowed: true, turn: Some(turn) }).await;
    // Registration says WebRTC is on, with no credentials: anyone may register a host.
    let (mut host, host_id, offer) = register_host(&url, [7; 32]).await;
    assert_eq!(offer, RelayMsg::Ice { webrtc: true, turn: None });
    let ask = async |host: &mut Ws| {
        send_frame(host, Frame::bare(Header::Relay(RelayMsg::IceRequest))).await;
        loop {
            if let Header::Relay(RelayMsg::Ice { webrtc: true, turn }) = next_frame(host).await.header {
                return turn;
            }
        }
    };
    // Asking with no client, or with one still handshaking: none.
    assert_eq!(ask(&mut host).await, None);
    let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
    client.send(WsMessage::Binary(b"hello".to_vec().into())).await.expect("hello");
    let Header::Relay(RelayMsg::Open { conn, .. }) = next_frame(&mut host).await.header else { panic!("open") };
    assert_eq!(ask(&mut host).await, None);
    // Asked right behind the host's proof to its client (as the agent does, before the client
    // has read it): credentials, labelled with the host's id.
    let proof = Frame::new(Header::Auth(AuthStep::ServerProof), vec![0; 32]).encode().expect("encode");
    send_frame(&mut host, Frame::new(Header::Relay(RelayMsg::Forward { conn }), proof)).await;
    let turn = ask(&mut host).await.expect("credentials for a host with a client in");
    assert!(matches!(client.next().await, Some(Ok(WsMessage::Binary(_)))));
    assert_eq!(turn.urls, ["turn:127.0.0.1:3478"]);
    assert_eq!(turn.username, format!("{}:{host_id}", turn.expires));
    assert!(!turn.credential.is_empty() && !turn.credential.contains("s3cret"));
    // Asked again at once: none (the host keeps what it has).
    assert_eq!(ask(&mut host).await, None);

    let url = start_relay_with(crate::WebrtcPolicy { allowed: false, turn: None }).await;
    let (_host, _, offer) = register_host(&url, [8; 32]).await;
    assert_eq!(offer, RelayMsg::Ice { webrtc: false, turn: None });
}

#[tokio::test]
async fn forwards_opaque_bytes_between_client_and_host() {
    let url = start_relay().await;
    let (mut host, host_id) = register(&url, [1; 32]).await;
    let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
    let Header::Relay(RelayMsg::Open { conn, .. }) = next_frame(&mut host).await.header else { panic!("open") };

    // Whatever the client sends — here not even a valid frame — reaches the host untouched.
    client.send(WsMessage::Binary(b"\x00opaque bytes".to_vec().into())).await.expect("send");
    let forwarded = next_frame(&mut host).await;
    assert_eq!(forwarded.header, Header::Relay(RelayMsg::Forward { conn }));
    assert_eq!(forwarded.payload, b"\x00opaque bytes");

    send_frame(&mut host, Frame::new(Header::Relay(RelayMsg::Forward { conn }), b"answer".to_vec())).await;
    match client.next().await {
        Some(Ok(WsMessage::Binary(bytes))) => assert_eq!(&bytes[..], b"answer"),
        other => panic!("{other:?}"),
    }

    // The host closes the connection with a reason the client sees.
    send_frame(&mut host, Frame::bare(Header::Relay(RelayMsg::Close { conn, reason: "bye".into() }))).await;
    assert_eq!(close_reason(&mut client).await, "bye");
}

#[tokio::test]
async fn a_client_message_too_big_to_forward_is_refused_not_dropped() {
    let url = start_relay().await;
    let (mut host, host_id) = register(&url, [2; 32]).await;
    let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
    let Header::Relay(RelayMsg::Open { conn, .. }) = next_frame(&mut host).await.header else { panic!("open") };
    // The largest message that fits a forward frame is passed on whole...
    let fits = vec![7u8; super::MAX_CLIENT_MESSAGE_BYTES];
    client.send(WsMessage::Binary(fits.clone().into())).await.expect("send");
    let forwarded = next_frame(&mut host).await;
    assert_eq!((forwarded.header, forwarded.payload.len()), (Header::Relay(RelayMsg::Forward { conn }), fits.len()));
    // ...one byte more is refused where it enters, and the sender hears of it.
    let _ = client.send(WsMessage::Binary(vec![7u8; super::MAX_CLIENT_MESSAGE_BYTES + 1].into())).await;
    let ended = async {
        loop {
            match client.next().await {
                Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    };
    let code = tokio::time::timeout(std::time::Duration::from_secs(10), ended).await.expect("the relay answered");
    assert_eq!(code, Some(1009), "closed as 'message too big'");
    // The host is told the client is gone.
    let closed = next_frame(&mut host).await;
    assert!(matches!(closed.header, Header::Relay(RelayMsg::Close { conn: c, .. }) if c == conn), "{closed:?}");
}

#[tokio::test]
async fn offline_hosts_and_bad_registrations_are_refused_clearly() {
    let url = start_relay().await;
    let offline = identity::host_id(&[9; 32]);
    let mut client = connect(&format!("{url}/ws/client/{offline}")).await;
    assert_eq!(close_reason(&mut client).await, "host offline");

    // Claiming an id without its secret fails.
    let victim = identity::host_id(&[2; 32]);
    let mut squatter = connect(&format!("{url}/ws/host")).await;
    let proof = tether_protocol::hex::encode(&[3u8; 32]);
    send_frame(
        &mut squatter,
        Frame::bare(Header::Relay(RelayMsg::Register { host_id: victim, proof, signature: None })),
    )
    .await;
    assert!(close_reason(&mut squatter).await.contains("registration refused"));

    // A browser page from another origin cannot connect.
    let mut request = format!("{url}/ws/client/{offline}").into_client_request().expect("request");
    request.headers_mut().insert("origin", "https://evil.example".parse().expect("header"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

#[tokio::test]
async fn a_reconnecting_host_takes_over_its_id() {
    let url = start_relay().await;
    let (mut old, host_id) = register(&url, [4; 32]).await;
    let (mut new, _) = register(&url, [4; 32]).await;
    assert!(close_reason(&mut old).await.contains("replaced"));
    let _client = connect(&format!("{url}/ws/client/{host_id}")).await;
    assert!(matches!(next_frame(&mut new).await.header, Header::Relay(RelayMsg::Open { .. })));
}

#[tokio::test]
async fn a_client_must_finish_its_handshake_in_time() {
    let url = start_relay().await;
    let (mut host, host_id) = register(&url, [5; 32]).await;

    // A client that never completes a handshake is closed at the deadline, and the host told.
    let mut idle = connect(&format!("{url}/ws/client/{host_id}")).await;
    let Header::Relay(RelayMsg::Open { conn: idle_conn, .. }) = next_frame(&mut host).await.header else { panic!() };
    assert_eq!(close_reason(&mut idle).await, "handshake timed out");
    assert!(
        matches!(next_frame(&mut host).await.header, Header::Relay(RelayMsg::Close { conn, .. }) if conn == idle_conn)
    );

    // Once the host's proof has gone through, the deadline no longer applies. (This waits out
    // the deadline on purpose: it checks that something does *not* happen.)
    let mut client = connect(&format!("{url}/ws/client/{host_id}")).await;
    let Header::Relay(RelayMsg::Open { conn, .. }) = next_frame(&mut host).await.header else { panic!() };
    let proof = Frame::new(Header::Auth(AuthStep::ServerProof), vec![0; 32]).encode().expect("encode");
    send_frame(&mut host, Frame::new(Header::Relay(RelayMsg::Forward { conn }), proof)).await;
    assert!(matches!(client.next().await, Some(Ok(WsMessage::Binary(_)))));
    tokio::time::sleep(HANDSHAKE_TIMEOUT * 2).await;
    client.send(WsMessage::Binary(b"still here".to_vec().into())).await.expect("send");
    assert_eq!(next_frame(&mut host).await.payload, b"still here");
}

#[tokio::test]
async fn a_client_that_says_nothing_is_dropped_at_the_hello_deadline() {
    // A long handshake deadline, so the hello deadline is the one that shows.
    let webrtc = crate::WebrtcPolicy { allowed: true, turn: None };
    let url = start_relay_configured(webrtc, std::time::Duration::from_secs(60)).await;
    let (mut host, host_id) = register(&url, [10; 32]).await;
    let started = std::time::Instant::now();
    let mut silent = connect(&format!("{url}/ws/client/{host_id}")).await;
    let mut talking = connect(&format!("{url}/ws/client/{host_id}")).await;
    talking.send(WsMessage::Binary(b"hello".to_vec().into())).await.expect("send");
    assert_eq!(close_reason(&mut silent).await, "no hello in time");
    assert!(started.elapsed() >= super::HELLO_TIMEOUT);
    // The host hears of it; the client that spoke is still there.
    let mut closed = None;
    while closed.is_none() {
        if let Header::Relay(RelayMsg::Close { conn, reason }) = next_frame(&mut host).await.header {
            closed = Some((conn, reason));
        }
    }
    talking.send(WsMessage::Binary(b"still here".to_vec().into())).await.expect("send");
    assert_eq!(next_frame(&mut host).await.payload, b"still here");
}

#[tokio::test]
async fn the_host_learns_a_clients_source_only_as_a_tag() {
    let url = start_relay().await;
    let (mut host, host_id) = register(&url, [11; 32]).await;
    let client_url = format!("{url}/ws/client/{host_id}");
    let mut tags = Vec::new();
    let mut clients = Vec::new();
    for source in ["10.0.0.1", "10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2", "2001:db8:0:1::1"] {
        clients.push(connect_from(&client_url, source).await);
        let Header::Relay(RelayMsg::Open { source: tag, .. }) = next_frame(&mut host).await.header else {
            panic!("open")
        };
        tags.push(tag);
    }
    assert_eq!(tags[0], tags[1], "one address, one tag");
    assert_ne!(tags[0], tags[2], "another address, another tag");
    assert_eq!(tags[3], tags[4], "one IPv6 /64 is one source");
    assert_ne!(tags[3], tags[5], "another /64 is another");
    assert!(tags.iter().all(|&tag| tag != 0), "a tag, not the 0 of a relay that says nothing: {tags:?}");
}

#[tokio::test]
async fn too_many_handshaking_clients_are_refused() {
    let url = start_relay().await;
    let (_host, host_id) = register(&url, [6; 32]).await;
    let client_url = format!("{url}/ws/client/{host_id}");
    let mut waiting = Vec::new();
    for i in 0..MAX_PENDING_PER_HOST {
        waiting.push(connect_from(&client_url, &format!("10.1.{}.{}", i / 200, i % 200)).await);
    }
    let mut one_more = connect_from(&client_url, "10.2.0.1").await;
    assert!(close_reason(&mut one_more).await.contains("too many connections waiting"));
}

#[test]
fn the_source_is_the_peer_unless_a_trusted_proxy_names_it() {
    let peer: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.9".parse().expect("header"));
    let direct = Admission::new(1, HANDSHAKE_TIMEOUT, false);
    assert_eq!(direct.source(peer, &headers), peer.ip(), "a client cannot pick its own address");
    let proxied = Admission::new(1, HANDSHAKE_TIMEOUT, true);
    assert_eq!(proxied.source(peer, &headers).to_string(), "10.0.0.9", "the proxy's entry, not the claim");
}

#[tokio::test]
async fn one_source_cannot_fill_a_hosts_door() {
    let url = start_relay().await;
    let (mut host, host_id) = register(&url, [8; 32]).await;
    let client_url = format!("{url}/ws/client/{host_id}");
    let mut idle = Vec::new();
    for _ in 0..MAX_PENDING_PER_SOURCE {
        idle.push(connect_from(&client_url, "10.0.0.1").await);
    }
    let mut one_more = connect_from(&client_url, "10.0.0.1").await;
    assert!(close_reason(&mut one_more).await.contains("from your address"));
    // Someone else still gets through to the host.
    let _other = connect_from(&client_url, "10.0.0.2").await;
    let opened = next_frame(&mut host).await;
    assert!(matches!(opened.header, Header::Relay(RelayMsg::Open { .. })), "{opened:?}");
}

#[tokio::test]
async fn presence_follows_hosts_coming_and_going() {
    let url = start_relay().await;
    let host_id = identity::host_id(&[7; 32]);
    let mut watcher = connect(&format!("{url}/ws/presence?hosts={host_id}")).await;
    let mut next_text = async || loop {
        match watcher.next().await.expect("open").expect("message") {
            WsMessage::Text(text) => return serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            _ => continue,
        }
    };
    assert_eq!(next_text().await, serde_json::json!({ "host": host_id, "online": false }));
    let (host, _) = register(&url, [7; 32]).await;
    assert_eq!(next_text().await, serde_json::json!({ "host": host_id, "online": true }));
    drop(host);
    assert_eq!(next_text().await, serde_json::json!({ "host": host_id, "online": false }));
    assert!(connect_async_status(&format!("{url}/ws/presence?hosts=nonsense")).await.is_err());
}

#[tokio::test]
async fn a_presence_watcher_cannot_send_big_messages() {
    let url = start_relay().await;
    let host_id = identity::host_id(&[9; 32]);
    let mut watcher = connect(&format!("{url}/ws/presence?hosts={host_id}")).await;
    watcher.send(WsMessage::Text("x".repeat(super::MAX_PRESENCE_MESSAGE_BYTES + 1).into())).await.expect("send");
    // Its first presence line may come before the refusal; then the socket must end.
    let ended = async {
        loop {
            match watcher.next().await {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    };
    let deadline = std::time::Duration::from_secs(10);
    assert!(tokio::time::timeout(deadline, ended).await.is_ok(), "the relay kept reading an oversized message");
}

async fn connect_async_status(url: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async(url).await.map(|_| ())
}

/// Connect as a host, read the relay's challenge, send what `register` makes of it; the relay's
/// answer: registered, or its close reason.
async fn register_with(url: &str, register: impl FnOnce(&str) -> RelayMsg) -> Result<(), String> {
    let (mut host, answer) = tokio_tungstenite::connect_async(format!("{url}/ws/host")).await.expect("connect");
    let challenge = answer.headers().get(identity::CHALLENGE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    send_frame(&mut host, Frame::bare(Header::Relay(register(challenge)))).await;
    match host.next().await {
        Some(Ok(WsMessage::Binary(bytes))) => {
            assert_eq!(decode_exact(&bytes).expect("frame").header, Header::Relay(RelayMsg::Registered));
            Ok(())
        }
        Some(Ok(WsMessage::Close(Some(frame)))) => Err(frame.reason.to_string()),
        other => panic!("neither registered nor refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_host_key_signs_this_relays_challenge_and_the_signature_is_no_use_elsewhere() {
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let url = start_relay().await;
    let key = Ed25519KeyPair::from_seed_unchecked(&[3; 32]).expect("key");
    let public: [u8; identity::PUBLIC_KEY_BYTES] = key.public_key().as_ref().try_into().expect("32 bytes");
    let host_id = identity::key_host_id(&public);
    let authority = url.trim_start_matches("ws://").to_owned();
    let signed = |authority: &str, nonce: &str| RelayMsg::Register {
        host_id: host_id.clone(),
        proof: tether_protocol::hex::encode(&public),
        signature: Some(tether_protocol::hex::encode(
            key.sign(&identity::registration_statement(&host_id, authority, nonce)).as_ref(),
        )),
    };
    // Signed over this relay's challenge and address: registered.
    let mut seen = None;
    register_with(&url, |nonce| {
        let message = signed(&authority, nonce);
        seen = Some(message.clone());
        message
    })
    .await
    .expect("registered");
    // What this relay saw, shown to it (or any relay) again: refused, the challenge is new.
    let replayed = seen.expect("a registration");
    let refused = register_with(&url, |_| replayed).await.expect_err("a replay");
    assert!(refused.contains("registration refused"), "{refused}");
    // Signed for another relay's address: refused, saying so.
    let refused = register_with(&url, |nonce| signed("relay.example:443", nonce)).await.expect_err("elsewhere");
    assert!(refused.contains("not signed for this relay"), "{refused}");
    // The public key shown as a legacy secret: refused (the id is labelled).
    let as_secret =
        RelayMsg::Register { host_id: host_id.clone(), proof: tether_protocol::hex::encode(&public), signature: None };
    assert!(register_with(&url, |_| as_secret).await.is_err());
    // A legacy host still registers with its secret.
    let secret = [12u8; 32];
    let legacy = RelayMsg::Register {
        host_id: identity::host_id(&secret),
        proof: tether_protocol::hex::encode(&secret),
        signature: None,
    };
    register_with(&url, |_| legacy).await.expect("a legacy host");
}
