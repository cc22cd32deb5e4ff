//! Web push from the host: remembered browsers subscribe; when a session that notifies waits or
//! ends, the host encrypts a small payload for each subscription (RFC 8291, the protocol's
//! `push`) and posts it straight to that browser's push service, signed with the host's VAPID
//! key. Neither the relay nor the push service can read it.
//!
//! Invariants:
//! - The payload names the host, the session and why — never any of its output.
//! - Only a remembered device subscribes (checked at the request, by the credential); forgetting
//!   the device drops its subscriptions (`Store::remove_credential`).
//! - A push service that answers 404 or 410 has forgotten the subscription: it is dropped.
//! - The VAPID key is made once, kept in the store's settings, and never leaves the host.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_protocol::api::{error_answer, Answer, ErrorCode, Response, SessionInfo};
use tether_protocol::identity::is_device_identity;
use tether_protocol::push::{self, Subscription, Vapid, SALT_BYTES, SECRET_KEY_BYTES};
use tether_protocol::sync::lock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::host::store::{Store, NAME_SETTING};
use crate::random::random_bytes;
use crate::time::now_ms;

/// Settings key of the VAPID private key (hex).
const VAPID_SETTING: &str = "vapid_key";
/// How long a push service may take to answer one push.
const PUSH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a push service keeps a push for a browser that is offline.
const TTL_SECS: u32 = 24 * 60 * 60;
/// Who the push services may write to about this sender (RFC 8292 asks for one).
const SUBJECT: &str = "mailto:tether@localhost";

pub struct Pusher {
    store: Arc<Mutex<Store>>,
    vapid: Vapid,
    runtime: tokio::runtime::Handle,
}

impl Pusher {
    /// The host's pusher, making its VAPID key the first time. Call inside the runtime.
    pub fn new(store: Arc<Mutex<Store>>) -> Result<Arc<Pusher>, String> {
        let vapid = vapid_key(&store)?;
        Ok(Arc::new(Pusher { store, vapid, runtime: tokio::runtime::Handle::current() }))
    }

    /// `push_key`: what a browser subscribes with.
    pub fn key(&self) -> Answer {
        (Response::PushKey { key: self.vapid.public_key() }, Vec::new())
    }

    /// `push_subscribe` from a client that proved `owner`.
    pub fn subscribe(&self, owner: &str, endpoint: &str, p256dh: &str, auth: &str) -> Answer {
        if !is_device_identity(owner) {
            return error_answer(
                ErrorCode::BadRequest,
                "only a remembered browser may subscribe to pushes (remember it first)",
            );
        }
        if let Err(why) = Subscription::parse(endpoint, p256dh, auth) {
            return error_answer(ErrorCode::BadRequest, why);
        }
        match lock(&self.store).add_subscription(endpoint, p256dh, auth, owner, now_ms()) {
            Ok(()) => (Response::Ok, Vec::new()),
            Err(e) => error_answer(ErrorCode::Internal, e),
        }
    }

    /// A session that notifies waits or ended: push to every subscription, in the background.
    pub fn session_needs_you(self: &Arc<Self>, session: &SessionInfo, reason: &str) {
        let payload = serde_json::json!({
            "host": self.host_name(),
            "session": session.id,
            "title": session.title,
            "reason": reason,
        });
        let me = self.clone();
        self.runtime.spawn(async move {
            let (sent, dropped, failed) = me.push_all(payload.to_string().as_bytes()).await;
            if dropped > 0 || !failed.is_empty() {
                eprintln!("tether daemon: push: {sent} sent, {dropped} gone, failed: {failed:?}");
            }
        });
    }

    /// `tether notify test`.
    pub async fn test(&self) -> Answer {
        let payload = serde_json::json!({ "host": self.host_name(), "title": "test", "reason": "tether notify test" });
        let (sent, dropped, failed) = self.push_all(payload.to_string().as_bytes()).await;
        (Response::Pushed { sent, dropped, failed }, Vec::new())
    }

    /// Push `payload` to every subscription: (sent, dropped as gone, why the others failed).
    async fn push_all(&self, payload: &[u8]) -> (usize, usize, Vec<String>) {
        let subscriptions = match lock(&self.store).subscriptions() {
            Ok(list) => list,
            Err(e) => return (0, 0, vec![e]),
        };
        let (mut sent, mut dropped, mut failed) = (0, 0, Vec::new());
        for (endpoint, p256dh, auth) in subscriptions {
            let origin = push::audience(&endpoint).unwrap_or_else(|_| "?".to_owned());
            match self.push_one(&endpoint, &p256dh, &auth, payload).await {
                Ok(200..=299) => sent += 1,
                Ok(404 | 410) => {
                    dropped += 1;
                    if let Err(e) = lock(&self.store).remove_subscription(&endpoint) {
                        failed.push(e);
                    }
                }
                Ok(status) => failed.push(format!("{origin}: answered {status}")),
                Err(why) => failed.push(format!("{origin}: {why}")),
            }
        }
        (sent, dropped, failed)
    }

    async fn push_one(&self, endpoint: &str, p256dh: &str, auth: &str, payload: &[u8]) -> Result<u16, String> {
        let subscription = Subscription::parse(endpoint, p256dh, auth)?;
        let body = loop {
            let (mut salt, mut sender) = ([0u8; SALT_BYTES], [0u8; SECRET_KEY_BYTES]);
            random_bytes(&mut salt)?;
            random_bytes(&mut sender)?;
            // (A random 256-bit value is a P-256 key all but 2^-32 of the time.)
            if let Ok(body) = push::encrypt(&subscription, payload, salt, sender) {
                break body;
            }
        };
        let authorization = self.vapid.authorization(endpoint, now_ms() / 1000, SUBJECT)?;
        let headers = [
            ("TTL", TTL_SECS.to_string()),
            ("Urgency", "high".to_owned()),
            ("Content-Encoding", "aes128gcm".to_owned()),
            ("Content-Type", "application/octet-stream".to_owned()),
            ("Authorization", authorization),
        ];
        tokio::time::timeout(PUSH_TIMEOUT, post(endpoint, &headers, &body))
            .await
            .map_err(|_| format!("no answer in {} s", PUSH_TIMEOUT.as_secs()))?
    }

    fn host_name(&self) -> String {
        lock(&self.store).setting(NAME_SETTING).ok().flatten().unwrap_or_else(crate::host::sharing::hostname)
    }
}

/// The VAPID key: the kept one, or a new one kept from now on.
fn vapid_key(store: &Arc<Mutex<Store>>) -> Result<Vapid, String> {
    let store = lock(store);
    if let Some(hex) = store.setting(VAPID_SETTING)? {
        let secret =
            tether_protocol::hex::decode_array::<SECRET_KEY_BYTES>(&hex).ok_or("the kept VAPID key is damaged")?;
        return Vapid::from_secret(&secret);
    }
    loop {
        let mut secret = [0u8; SECRET_KEY_BYTES];
        random_bytes(&mut secret)?;
        if let Ok(vapid) = Vapid::from_secret(&secret) {
            store.set_setting(VAPID_SETTING, &tether_protocol::hex::encode(&secret))?;
            return Ok(vapid);
        }
    }
}

/// POST `body` to `url` over HTTP/1.1 (TLS for `https`, checked against the system's roots as
/// the relay link is); returns the status code.
async fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> Result<u16, String> {
    push::audience(url)?;
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("a bad IPv6 address")?;
            (host, after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| "a bad port")?),
            None => (authority, default_port),
        },
    };
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("cannot connect: {e}"))?;
    let mut head =
        format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if scheme == "https" {
        let tls = tls_connector()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| "a bad host name")?;
        let stream = tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        exchange(stream, head.as_bytes(), body).await
    } else {
        exchange(tcp, head.as_bytes(), body).await
    }
}

/// Send the request; read the status line of the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, head: &[u8], body: &[u8]) -> Result<u16, String> {
    stream.write_all(head).await.map_err(|e| e.to_string())?;
    stream.write_all(body).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 512];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 4096 {
        match stream.read(&mut chunk).await.map_err(|e| e.to_string())? {
            0 => break,
            n => answer.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok());
    match (line.starts_with("HTTP/1."), status) {
        (true, Some(status)) => Ok(status),
        _ => Err("not an HTTP answer".into()),
    }
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
