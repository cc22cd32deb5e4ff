//! Who may open a connection, before any endpoint does its job: browsers only from this relay's
//! own origin, so many connections a minute per source address, so many clients per host (and
//! per source) still handshaking — so one stranger cannot fill a host's door — and so many
//! sockets of each kind (clients, hosts, presence watchers) held open at once per source network.
//!
//! Invariants:
//! - A *source* is what one party controls: an IPv4 address, or an IPv6 /64 (one subscriber's
//!   LAN: anyone holding one address of it holds 2^64). A *network* is what caps open sockets:
//!   an IPv4 /24, or an IPv6 /64. Per-source and per-network counts are keyed by these, never by
//!   the raw address, so a wider block buys an attacker nothing.
//! - Hosts learn a source only as an opaque tag (`source_tag`), keyed by this process: equal
//!   for equal sources, and nothing about the address.
//! - Every count taken is given back when its guard drops, however the connection ended.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tether_protocol::sync::lock;

/// Window of the per-IP connection rate limit.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Most client connections per host that have not finished their handshake.
pub const MAX_PENDING_PER_HOST: usize = 64;
/// Most of those from one source: one stranger cannot fill a host's door.
pub const MAX_PENDING_PER_SOURCE: usize = 4;
/// Client sockets one network may hold open at once (an office behind one address has many
/// browsers and CLIs; a stranger's sockets each cost a bounded queue, `hub::CLIENT_BACKLOG_BYTES`).
pub const MAX_CLIENTS_PER_NETWORK: usize = 512;
/// Hosts one network may keep registered at once.
pub const MAX_HOSTS_PER_NETWORK: usize = 256;
/// Presence watchers one network may hold open at once (a page holds one).
pub const MAX_WATCHERS_PER_NETWORK: usize = 256;

/// The kinds of socket counted per network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Held {
    Client,
    Host,
    Watcher,
}

impl Held {
    fn cap(self) -> usize {
        match self {
            Held::Client => MAX_CLIENTS_PER_NETWORK,
            Held::Host => MAX_HOSTS_PER_NETWORK,
            Held::Watcher => MAX_WATCHERS_PER_NETWORK,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Held::Client => "client connections",
            Held::Host => "registered hosts",
            Held::Watcher => "presence watchers",
        }
    }
}

/// The part of an address one party controls: an IPv4 address, an IPv6 /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// The network whose open sockets are capped together: an IPv4 /24, an IPv6 /64.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match source_of(ip) {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & !0xff)),
        v6 => v6,
    }
}

pub struct Admission {
    max_connects_per_minute: u32,
    connects: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// A client must finish its handshake with the host this soon after connecting.
    pub handshake_timeout: Duration,
    /// Client connections per host still handshaking, in all and per source address.
    pending: Mutex<HashMap<String, Pending>>,
    /// Behind a proxy: the source is the address it appended to `X-Forwarded-For`.
    trust_proxy: bool,
    /// Sockets held open, per kind and network.
    held: Mutex<HashMap<(Held, IpAddr), usize>>,
    /// The key of `source_tag`: random per process.
    tag_key: std::collections::hash_map::RandomState,
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
            held: Mutex::new(HashMap::new()),
            tag_key: std::collections::hash_map::RandomState::new(),
        }
    }

    /// The opaque tag of `ip`'s source that a host is given (`RelayMsg::Open`).
    pub fn source_tag(&self, ip: IpAddr) -> u64 {
        self.tag_key.hash_one(source_of(ip))
    }

    /// Count one more socket of `kind` from `ip`'s network, unless it holds as many as it may.
    /// The error says what is full, for the refusal.
    pub fn hold(&self, kind: Held, ip: IpAddr) -> Result<Holding<'_>, String> {
        let key = (kind, network_of(ip));
        let mut held = lock(&self.held);
        let count = held.entry(key).or_default();
        if *count >= kind.cap() {
            return Err(format!("too many {} from your network", kind.name()));
        }
        *count += 1;
        Ok(Holding { admission: self, key })
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
        let source = source_of(source);
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

    /// Count a connection attempt from `ip`'s source; `false` when over the limit.
    pub fn admit(&self, ip: IpAddr) -> bool {
        let ip = source_of(ip);
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

/// One socket counted as held by its network until this is dropped.
pub struct Holding<'a> {
    admission: &'a Admission,
    key: (Held, IpAddr),
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.admission.held);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn a_source_is_an_ipv4_address_or_an_ipv6_64_and_a_network_an_ipv4_24() {
        assert_eq!(source_of(ip("10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"), "IPv4 seen through IPv6 is IPv4");
        assert_eq!(network_of(ip("10.1.2.3")), ip("10.1.2.0"));
        assert_eq!(network_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn each_network_holds_so_many_sockets_of_a_kind() {
        let admission = Admission::new(1000, Duration::from_secs(1), false);
        let mut held = Vec::new();
        for n in 0..MAX_WATCHERS_PER_NETWORK {
            held.push(admission.hold(Held::Watcher, ip(&format!("10.0.0.{}", n % 256))).expect("room"));
        }
        // Another address of the same /24 gets no more; another network, or another kind, does.
        let refused = admission.hold(Held::Watcher, ip("10.0.0.77")).err().expect("full");
        assert!(refused.contains("presence watchers"), "{refused}");
        assert!(admission.hold(Held::Watcher, ip("10.0.1.1")).is_ok());
        assert!(admission.hold(Held::Client, ip("10.0.0.77")).is_ok());
        // One let go, one more fits.
        held.pop();
        assert!(admission.hold(Held::Watcher, ip("10.0.0.77")).is_ok());
        // A whole IPv6 /64 counts as one network, however many addresses it uses.
        let v6: Vec<_> = (0..MAX_HOSTS_PER_NETWORK)
            .map(|n| admission.hold(Held::Host, ip(&format!("2001:db8::{n:x}"))).expect("room"))
            .collect();
        assert!(admission.hold(Held::Host, ip("2001:db8::ffff:1")).is_err());
        drop(v6);
        assert!(admission.hold(Held::Host, ip("2001:db8::ffff:1")).is_ok());
    }
}
