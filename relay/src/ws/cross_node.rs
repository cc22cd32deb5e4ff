//! Clients whose host another relay node holds (`crate::cluster`).
//!
//! - `carry`: on the node the client reached. It looks up the owner in Redis, dials the owner's
//!   internal endpoint, proves this node with the shared secret, and passes messages both ways
//!   untouched. It keeps the client-side limits of any client here (its address's sockets and
//!   handshakes, message size, pings and silence) and passes the owner's close code and reason
//!   on, so a carried client hears what a local one would.
//! - `internal_client_endpoint`: on the owner. After the dialling node's proof, the socket is a
//!   client of a host held here like any other (`client_session`), counted under the client's
//!   own address: clients per host, handshakes per host and per source, hello and handshake
//!   deadlines, queue limits.
//!
//! Invariant: a carried client's bytes are never read here, only counted, as on one node.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tether_protocol::identity;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as NodeMessage;

use super::{
    client_session, close, pinger, Arrived, CLOSE_DEADLINE, CLOSE_GONE, CLOSE_HOST_OFFLINE, CLOSE_REFUSED,
    CLOSE_TIMEOUT, CLOSE_TOO_BIG, MAX_CLIENT_MESSAGE_BYTES, MAX_HOST_MESSAGE_BYTES, READ_CHUNK_BYTES, SILENCE_LIMIT,
    WRITE_DEADLINE,
};
use crate::cluster::{node_ws_url, Cluster};

/// The dialling node must prove itself this soon after the internal socket opens.
const NODE_PROOF_TIMEOUT: Duration = Duration::from_secs(5);
/// Dialling the owner node, upgrade included, may take this long.
const NODE_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The challenge header of the internal endpoint's answer.
const NODE_CHALLENGE_HEADER: &str = "x-tether-node-challenge";
/// What a client hears when the way to its host's node is not there; the hint makes clients
/// dial again soon (`client::redial::BUSY_HINT`).
const NO_ROUTE: &str = "this relay cannot reach the relay node that holds the host; try again shortly";
/// What the internal endpoint says to a socket that did not prove itself a node.
const NODE_REFUSED: &str = "node authentication failed";
const NO_ROUTING: &str = "this relay cannot look up which relay node holds the host (Redis); try again shortly";

/// Carry a client of a host held elsewhere to its node; or tell it why not.
pub(super) async fn carry(
    cluster: &Cluster,
    host_id: &str,
    source: IpAddr,
    mut socket: WebSocket,
    handshaking: crate::admission::Handshaking<'_>,
) {
    let owner = match cluster.routing.owner(host_id).await {
        Ok(Some(node)) if node != cluster.routing.node_url() => node,
        Ok(_) => {
            let _ = socket.send(close(CLOSE_HOST_OFFLINE, "host offline")).await;
            return;
        }
        Err(_) => {
            let _ = socket.send(close(CLOSE_GONE, NO_ROUTING)).await;
            return;
        }
    };
    let link = match dial_owner(cluster, &owner, host_id, source).await {
        Ok(link) => link,
        Err(why) => {
            eprintln!("tether-relay: cluster: cannot carry a client of host {host_id} to {owner}: {why}");
            let _ = socket.send(close(CLOSE_GONE, NO_ROUTE)).await;
            return;
        }
    };
    let (mut client_sink, mut client_stream) = socket.split();
    let (mut node_sink, mut node_stream) = link.split();
    let mut handshaking = Some(handshaking);
    let (mut up, mut down) = (0u64, 0u64);
    // Each way on its own, so neither waits for the other (as for a local client).
    let from_client = async {
        let silence = tokio::time::sleep(SILENCE_LIMIT);
        tokio::pin!(silence);
        loop {
            let message = tokio::select! {
                () = &mut silence => return Err((CLOSE_TIMEOUT, "silent for too long".to_owned())),
                message = client_stream.next() => message,
            };
            silence.as_mut().reset(tokio::time::Instant::now() + SILENCE_LIMIT);
            let bytes = match message {
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => continue, // pongs (they count as heard), text
            };
            if bytes.len() > MAX_CLIENT_MESSAGE_BYTES {
                let why = format!("message of {} bytes is over the {MAX_CLIENT_MESSAGE_BYTES} byte limit", bytes.len());
                return Err((CLOSE_TOO_BIG, why));
            }
            up += bytes.len() as u64;
            match tokio::time::timeout(WRITE_DEADLINE, node_sink.send(NodeMessage::Binary(bytes))).await {
                Ok(Ok(())) => {}
                _ => return Err((CLOSE_GONE, NO_ROUTE.to_owned())),
            }
        }
    };
    let to_client = async {
        let mut ping = pinger();
        loop {
            let message = tokio::select! {
                message = node_stream.next() => match message {
                    Some(Ok(NodeMessage::Binary(bytes))) => {
                        if handshaking.is_some() && crate::hub::ends_handshake(&bytes) {
                            handshaking = None;
                        }
                        down += bytes.len() as u64;
                        Message::Binary(bytes)
                    }
                    // The owner refused this node: a configuration fault, the operator's to see.
                    Some(Ok(NodeMessage::Close(Some(frame)))) if frame.reason == NODE_REFUSED => {
                        eprintln!(
                            "tether-relay: cluster: node {owner} refused this node's proof; do all nodes share one --node-secret-file?"
                        );
                        return Err((CLOSE_GONE, NO_ROUTE.to_owned()));
                    }
                    // The owner's words, passed on as they are.
                    Some(Ok(NodeMessage::Close(Some(frame)))) => {
                        return Err((u16::from(frame.code), frame.reason.to_string()));
                    }
                    Some(Ok(NodeMessage::Close(None))) => return Err((CLOSE_GONE, NO_ROUTE.to_owned())),
                    Some(Ok(_)) => continue, // pings (answered by the library), pongs
                    None | Some(Err(_)) => return Err((CLOSE_GONE, NO_ROUTE.to_owned())),
                },
                _ = ping.tick() => Message::Ping(Default::default()),
            };
            match tokio::time::timeout(WRITE_DEADLINE, client_sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(()),
                Err(_) => return Err((CLOSE_GONE, "not reading".to_owned())),
            }
        }
    };
    let ended: Result<(), (u16, String)> = tokio::select! { e = from_client => e, e = to_client => e };
    let reason = match ended {
        Ok(()) => "client disconnected".to_owned(),
        Err((code, why)) => {
            let _ = tokio::time::timeout(CLOSE_DEADLINE, client_sink.send(close(code, &why))).await;
            why
        }
    };
    let _ = tokio::time::timeout(CLOSE_DEADLINE, node_sink.close()).await;
    drop(handshaking);
    eprintln!(
        "tether-relay: client of host {host_id} carried to {owner} ended ({reason}); forwarded {up} bytes to the host, {down} to the client"
    );
}

type NodeLink = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open an internal link to `owner` for a client of `host_id` from `source`, proven.
async fn dial_owner(cluster: &Cluster, owner: &str, host_id: &str, source: IpAddr) -> Result<NodeLink, String> {
    let url = node_ws_url(owner, host_id)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK_BYTES)
        .max_message_size(Some(MAX_HOST_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_HOST_MESSAGE_BYTES));
    let dialled = tokio::time::timeout(
        NODE_DIAL_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let (mut link, answer) = dialled;
    let challenge = answer
        .headers()
        .get(NODE_CHALLENGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or("no challenge in the node's answer")?
        .to_owned();
    let source = source.to_string();
    let proof = cluster.secret.prove(&challenge, host_id, &source);
    link.send(NodeMessage::Text(format!("{source} {proof}").into())).await.map_err(|e| e.to_string())?;
    Ok(link)
}

/// `/internal/client/{host_id}`: a client carried here by another node.
pub async fn internal_client_endpoint(
    State(app): State<Arc<crate::AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(host_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    if app.cluster.is_none() {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    // A stranger knocking is rate-limited like any other source.
    if !app.admission.admit(peer.ip()) {
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response();
    }
    if !identity::is_host_id(&host_id) {
        return (StatusCode::BAD_REQUEST, "not a host id\n").into_response();
    }
    let mut nonce = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness for a challenge\n").into_response();
    }
    let challenge = tether_protocol::hex::encode(&nonce);
    let expected = challenge.clone();
    let mut answer = ws
        .max_message_size(MAX_HOST_MESSAGE_BYTES)
        .read_buffer_size(READ_CHUNK_BYTES)
        .on_upgrade(move |socket| carried_session(app, host_id, expected, socket));
    if let Ok(value) = axum::http::HeaderValue::from_str(&challenge) {
        answer.headers_mut().insert(NODE_CHALLENGE_HEADER, value);
    }
    answer
}

async fn carried_session(app: Arc<crate::AppState>, host_id: String, challenge: String, mut socket: WebSocket) {
    let Some(cluster) = &app.cluster else { return };
    let proven = match tokio::time::timeout(NODE_PROOF_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.split_once(' ').and_then(|(source, proof)| {
            let ip: IpAddr = source.parse().ok()?;
            cluster.secret.verify(&challenge, &host_id, source, proof).then_some(ip)
        }),
        _ => None,
    };
    let Some(source) = proven else {
        let _ = socket.send(close(CLOSE_REFUSED, NODE_REFUSED)).await;
        return;
    };
    client_session(app, host_id, source, Arrived::FromNode, socket).await;
}
