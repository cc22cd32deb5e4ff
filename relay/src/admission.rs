//! Who may open a connection, before any endpoint does its job: browsers only from this relay's
//! own origin, so many connections a minute per source address, and so many clients per host
//! (and per source) still handshaking — so one stranger cannot fill a host's door.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tether_protocol::sync::lock;

/// Window of the per-IP connection rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Most client connections per host that have not finished their handshake.
pub const MAX_PENDING_PER_HOST: usize = 64;
/// Most of those from one source address: one stranger cannot fill a host's door.
pub const MAX_PENDING_PER_SOURCE: usize = 4;

pub struct Admission {
    max_connects_per_minute: u32,
    connects: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// A client must finish its handshake with the host this soon after connecting.
    pub handshake_timeout: Duration,
    /// Client connections per host still handshaking, in all and per source address.
    pending: Mutex<HashMap<String, Pending>>,
    /// Behind a proxy: the source is the address it appended to `X-Forwarded-For`.
    trust_proxy: bool,
}

#[derive(Default)]
struct Pending {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a client may not start a handshake now.
pub enum Refusal {
    HostFull,
    SourceFull,
}

impl Admission {
    pub fn new(max_connects_per_minute: u32, handshake_timeout: Duration, trust_proxy: bool) -> Admission {
        Admission {
            max_connects_per_minute,
            connects: Mutex::new(HashMap::new()),
            handshake_timeout,
            pending: Mutex::new(HashMap::new()),
            trust_proxy,
        }
    }

    /// Where a connection comes from: the peer, or with `--trust-proxy` the address the proxy
    /// in front of us saw (the last entry of `X-Forwarded-For`: the ones before it are whatever
    /// the client claimed).
    pub fn source(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trust_proxy {
            return peer.ip();
        }
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back();
        forwarded.and_then(|list| list.rsplit(',').next()).and_then(|ip| ip.trim().parse().ok()).unwrap_or(peer.ip())
    }

    /// Count one more handshaking client of `host_id` from `source`, unless the host or that
    /// source already has as many as it may.
    pub fn begin_handshake(&self, host_id: &str, source: IpAddr) -> Result<Handshaking<'_>, Refusal> {
        let mut pending = lock(&self.pending);
        let host = pending.entry(host_id.to_owned()).or_default();
        let from_source = host.by_source.get(&source).copied().unwrap_or(0);
        if host.total >= MAX_PENDING_PER_HOST {
            return Err(Refusal::HostFull);
        }
        if from_source >= MAX_PENDING_PER_SOURCE {
            return Err(Refusal::SourceFull);
        }
        host.total += 1;
        *host.by_source.entry(source).or_default() += 1;
        Ok(Handshaking { admission: self, host_id: host_id.to_owned(), source })
    }

    /// Count a connection attempt from `ip`; `false` when over the limit.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut connects = lock(&self.connects);
        if connects.len() > 100_000 {
            connects.retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
        }
        let entry = connects.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.max_connects_per_minute
    }
}

/// One client counted as handshaking until this is dropped (handshake over, or client gone).
pub struct Handshaking<'a> {
    admission: &'a Admission,
    host_id: String,
    source: IpAddr,
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.admission.pending);
        let Some(host) = pending.get_mut(&self.host_id) else { return };
        host.total = host.total.saturating_sub(1);
        if let Some(count) = host.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                host.by_source.remove(&self.source);
            }
        }
        if host.total == 0 {
            pending.remove(&self.host_id);
        }
    }
}

/// A browser's `Origin` must be this relay itself; non-browser clients send none.
fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    origin_host == host
}

/// What every client-facing endpoint checks first: a browser's page must come from this relay,
/// and each address may open only so many connections a minute.
/// Returns the connection's source address.
pub fn screen_client(app: &crate::AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<IpAddr, Response> {
    if !origin_allowed(headers) {
        return Err((StatusCode::FORBIDDEN, "cross-origin connections are refused\n").into_response());
    }
    let source = app.admission.source(peer, headers);
    if !app.admission.admit(source) {
        return Err((StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response());
    }
    Ok(source)
}
