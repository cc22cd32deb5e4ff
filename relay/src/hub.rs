//! Who is connected: registered hosts and, per host, their clients. Routing metadata only.
//!
//! Invariants:
//! - A host id is held by at most one host connection. A newer registration that proves the same
//!   id (see `tether_protocol::identity`) replaces the older one: that is the same host after a
//!   network change or restart, and the old link is dead or dying.
//! - Every queue is bounded, and nothing waits on one client: the host's frames are handed to
//!   each client's queue at once, and a client whose queue holds more than
//!   `CLIENT_BACKLOG_BYTES` (it stopped reading, or cannot keep up) is disconnected with a reason.
//!   So one stalled client never delays another client of the same host by more than a frame.
//!   (The protocol's flow control keeps an honest client's backlog far below the limit.)
//! - All clients' queues together hold at most the relay's budget (`--max-queued-mib`): the
//!   client whose bytes would go over it is dropped instead. A dropped client's socket task is
//!   told at once (not behind its backlog) and its queue freed when the task lets go of it.
//! - The hub never looks inside forwarded bytes.
//! - Presence (which hosts are online) is announced on a broadcast channel as hosts come and go;
//!   it reveals only what `/ws/client/{id}` would (online or not) to those who know the id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tether_protocol::frame::{decode_exact, AuthStep, Frame, Header, RelayMsg};
use tether_protocol::sync::lock;
use tokio::sync::{broadcast, mpsc};

/// Presence changes buffered per watcher; one that falls behind re-reads the current state.
const PRESENCE_QUEUE: usize = 256;

/// Frames queued toward one host.
pub const HOST_QUEUE_FRAMES: usize = 256;

/// A frame on its way to a host. Boxed: a queue allocates its slots in blocks of 32, and an idle
/// host's first block is then 256 bytes rather than 3.5 KiB.
pub type ToHost = Box<Frame>;
/// Bytes queued toward one client before it counts as stalled and is dropped: what the
/// protocol's flow control lets an honest client have in flight on 8 streams at once
/// (`stream::INITIAL_WINDOW_BYTES` each) — more than a page moves at once — and small enough
/// that a stranger's sockets that never read cost little.
pub const CLIENT_BACKLOG_BYTES: usize = 8 << 20; // 8 MiB

/// What a client's socket task is told.
#[derive(Debug)]
pub enum ToClient {
    Bytes(Vec<u8>),
    Close(String),
}

/// What the two sides of a client's queue share.
struct QueueState {
    /// Bytes in this queue.
    queued: AtomicUsize,
    /// Bytes in all queues (the hub's).
    total: Arc<AtomicUsize>,
    /// Why the client was dropped, once it was: its task stops without sending what is queued.
    dropped: Mutex<Option<String>>,
    dropped_now: tokio::sync::Notify,
    /// The host said this client's handshake is over (by the outer type of its frames).
    authenticated: std::sync::atomic::AtomicBool,
}

/// The sending side of a client's queue.
#[derive(Clone)]
struct ClientSender {
    tx: mpsc::UnboundedSender<ToClient>,
    state: Arc<QueueState>,
}

impl ClientSender {
    /// Drop the client now: its task hears `why` before anything still queued.
    fn drop_client(&self, why: String) {
        *lock(&self.state.dropped) = Some(why);
        self.state.dropped_now.notify_one();
    }
}

/// The receiving side, for the client's socket task.
pub struct ClientQueue {
    rx: mpsc::UnboundedReceiver<ToClient>,
    state: Arc<QueueState>,
}

impl ClientQueue {
    /// The next message; a `Close` at once if the client was dropped.
    pub async fn recv(&mut self) -> Option<ToClient> {
        // (No lock per message: a drop stores a permit in `dropped_now` even when nobody waits,
        // and the biased select takes it before any queued bytes.)
        let message = tokio::select! {
            biased;
            () = self.state.dropped_now.notified() => {
                return Some(ToClient::Close(lock(&self.state.dropped).take().unwrap_or_default()));
            }
            message = self.rx.recv() => message,
        };
        if let Some(ToClient::Bytes(bytes)) = &message {
            self.state.queued.fetch_sub(bytes.len(), Ordering::Relaxed);
            self.state.total.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
        message
    }

    /// Whether the host's frames have shown this client's handshake is over (as they were
    /// queued: a message taken from the queue after the one that showed it sees it set).
    pub fn is_authenticated(&self) -> bool {
        self.state.authenticated.load(Ordering::Relaxed)
    }

    /// Resolves when the client is dropped (for a task blocked writing to its socket).
    pub async fn dropped(&self) -> String {
        loop {
            if let Some(why) = lock(&self.state.dropped).clone() {
                return why;
            }
            self.state.dropped_now.notified().await;
        }
    }
}

impl Drop for ClientQueue {
    fn drop(&mut self) {
        // What is still queued is freed with the channel.
        self.state.total.fetch_sub(self.state.queued.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
}

struct HostEntry {
    generation: u64,
    to_host: mpsc::Sender<ToHost>,
    clients: HashMap<u64, ClientSender>,
}

/// A host came online (`true`) or went offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub host_id: String,
    pub online: bool,
}

pub struct Hub {
    hosts: Mutex<HashMap<String, HostEntry>>,
    presence: broadcast::Sender<Presence>,
    next_id: AtomicU64,
    max_clients_per_host: usize,
    /// Bytes in all clients' queues, and the most they may hold.
    queued_total: Arc<AtomicUsize>,
    max_queued_bytes: usize,
}

/// Why a client could not be connected.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    HostOffline,
    TooManyClients,
}

impl Hub {
    pub fn new(max_clients_per_host: usize, max_queued_bytes: usize) -> Hub {
        Hub {
            hosts: Mutex::new(HashMap::new()),
            presence: broadcast::channel(PRESENCE_QUEUE).0,
            next_id: AtomicU64::new(1),
            max_clients_per_host,
            queued_total: Arc::new(AtomicUsize::new(0)),
            max_queued_bytes,
        }
    }

    /// Bytes waiting in all clients' queues.
    #[cfg(test)]
    pub fn queued_bytes(&self) -> usize {
        self.queued_total.load(Ordering::Relaxed)
    }

    pub fn is_online(&self, host_id: &str) -> bool {
        lock(&self.hosts).contains_key(host_id)
    }

    /// Whether `host_id` has a client past its handshake (what TURN credentials are for).
    pub fn has_authenticated_client(&self, host_id: &str) -> bool {
        lock(&self.hosts)
            .get(host_id)
            .is_some_and(|host| host.clients.values().any(|c| c.state.authenticated.load(Ordering::Relaxed)))
    }

    pub fn watch_presence(&self) -> broadcast::Receiver<Presence> {
        self.presence.subscribe()
    }

    #[cfg(test)]
    pub fn host_count(&self) -> usize {
        lock(&self.hosts).len()
    }

    /// Register a host (already proven). Returns this registration's generation. Clients of a
    /// replaced registration are told the host went away; they reconnect to the new one.
    pub fn register(&self, host_id: &str, to_host: mpsc::Sender<ToHost>) -> u64 {
        let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
        let old =
            lock(&self.hosts).insert(host_id.to_owned(), HostEntry { generation, to_host, clients: HashMap::new() });
        match old {
            Some(old) => close_all(old, "host reconnected elsewhere"),
            None => {
                let _ = self.presence.send(Presence { host_id: host_id.to_owned(), online: true });
            }
        }
        generation
    }

    /// The host connection `generation` ended. `true` if it was still the registration (not
    /// replaced or evicted), so the host went offline here.
    pub fn unregister(&self, host_id: &str, generation: u64) -> bool {
        let gone = self.remove(host_id, generation, "host went offline");
        if gone {
            let _ = self.presence.send(Presence { host_id: host_id.to_owned(), online: false });
        }
        gone
    }

    /// Registration `generation` of `host_id` was replaced on another relay node: drop it (its
    /// socket task ends, as for a newer registration here) without saying it went offline.
    pub fn evict_generation(&self, host_id: &str, generation: u64) {
        self.remove(host_id, generation, "host reconnected elsewhere");
    }

    /// Forget registration `generation` of `host_id`, if it is still the one held, telling its
    /// clients `why`.
    fn remove(&self, host_id: &str, generation: u64, why: &str) -> bool {
        let mut hosts = lock(&self.hosts);
        if hosts.get(host_id).is_none_or(|h| h.generation != generation) {
            return false;
        }
        let entry = hosts.remove(host_id);
        drop(hosts);
        entry.map(|entry| close_all(entry, why)).is_some()
    }

    /// The registration of `host_id` held here, if one is.
    pub fn generation_of(&self, host_id: &str) -> Option<u64> {
        lock(&self.hosts).get(host_id).map(|h| h.generation)
    }

    /// Every host held here, with its registration.
    pub fn local_hosts(&self) -> Vec<(String, u64)> {
        lock(&self.hosts).iter().map(|(id, h)| (id.clone(), h.generation)).collect()
    }

    /// A presence change heard from another relay node, for this node's watchers.
    pub fn announce(&self, change: Presence) {
        let _ = self.presence.send(change);
    }

    /// A client from `source` (an opaque tag, `Admission::source_tag`) wants `host_id`. On
    /// success the host has been told (`open`) and the client gets its connection id and queue.
    pub fn open_client(&self, host_id: &str, source: u64) -> Result<(u64, ClientQueue), OpenError> {
        let mut hosts = lock(&self.hosts);
        let host = hosts.get_mut(host_id).ok_or(OpenError::HostOffline)?;
        if host.clients.len() >= self.max_clients_per_host {
            return Err(OpenError::TooManyClients);
        }
        let conn = self.next_id.fetch_add(1, Ordering::Relaxed);
        // try_send: opening must not wait on a busy host while holding the lock.
        let open = RelayMsg::Open { conn, source };
        host.to_host.try_send(Box::new(Frame::relay(open, Vec::new()))).map_err(|_| OpenError::HostOffline)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(QueueState {
            queued: AtomicUsize::new(0),
            total: self.queued_total.clone(),
            dropped: Mutex::new(None),
            dropped_now: tokio::sync::Notify::new(),
            authenticated: std::sync::atomic::AtomicBool::new(false),
        });
        host.clients.insert(conn, ClientSender { tx, state: state.clone() });
        Ok((conn, ClientQueue { rx, state }))
    }

    fn host_sender(&self, host_id: &str, conn: u64) -> Option<mpsc::Sender<ToHost>> {
        let hosts = lock(&self.hosts);
        let host = hosts.get(host_id)?;
        host.clients.contains_key(&conn).then(|| host.to_host.clone())
    }

    /// Bytes from client `conn`, for its host. `false` if the host is gone.
    pub async fn deliver_to_host(&self, host_id: &str, conn: u64, bytes: Vec<u8>) -> bool {
        match self.host_sender(host_id, conn) {
            Some(to_host) => to_host.send(Box::new(Frame::relay(RelayMsg::Forward { conn }, bytes))).await.is_ok(),
            None => false,
        }
    }

    /// Client `conn` disconnected: forget it and tell its host.
    pub fn client_gone(&self, host_id: &str, conn: u64, reason: &str) {
        let mut hosts = lock(&self.hosts);
        if let Some(host) = hosts.get_mut(host_id) {
            if host.clients.remove(&conn).is_some() {
                let _ = host
                    .to_host
                    .try_send(Box::new(Frame::relay(RelayMsg::Close { conn, reason: reason.to_owned() }, Vec::new())));
            }
        }
    }

    /// A frame from the host: route `forward` and `close` to the client. Never waits.
    pub fn deliver_to_client(&self, host_id: &str, frame: Frame) {
        let Header::Relay(msg) = frame.header else {
            return;
        };
        let (conn, message) = match msg {
            RelayMsg::Forward { conn } => (conn, ToClient::Bytes(frame.payload)),
            RelayMsg::Close { conn, reason } => (conn, ToClient::Close(reason)),
            _ => return,
        };
        let client = {
            let mut hosts = lock(&self.hosts);
            let Some(host) = hosts.get_mut(host_id) else {
                return;
            };
            if matches!(message, ToClient::Close(_)) {
                host.clients.remove(&conn)
            } else {
                host.clients.get(&conn).cloned()
            }
        };
        let Some(client) = client else { return };
        if let ToClient::Bytes(bytes) = &message {
            // Marked here, as the host's frame is routed — not when the client's task gets to it
            // — so a host's `ice_request` right behind its `server_proof` finds its client in.
            if !client.state.authenticated.load(Ordering::Relaxed) && ends_handshake(bytes) {
                client.state.authenticated.store(true, Ordering::Relaxed);
            }
            let queued = client.state.queued.load(Ordering::Relaxed) + bytes.len();
            let total = self.queued_total.load(Ordering::Relaxed) + bytes.len();
            let over = if queued > CLIENT_BACKLOG_BYTES {
                Some(format!("too slow: fell {} MiB behind its host", queued >> 20))
            } else if total > self.max_queued_bytes {
                Some("the relay is short of buffer space; reconnect".to_owned())
            } else {
                None
            };
            if let Some(why) = over {
                self.client_gone(host_id, conn, "client too slow");
                client.drop_client(why);
                return;
            }
            client.state.queued.fetch_add(bytes.len(), Ordering::Relaxed);
            self.queued_total.fetch_add(bytes.len(), Ordering::Relaxed);
        }
        let _ = client.tx.send(message);
    }
}

/// Whether a message from the host to a client shows the handshake is over. Only the outer
/// frame type is looked at; a message that is not exactly one frame says nothing.
pub fn ends_handshake(message: &[u8]) -> bool {
    matches!(
        decode_exact(message).map(|f| f.header),
        Ok(Header::Auth(AuthStep::ServerProof) | Header::Encrypted { .. })
    )
}

fn close_all(entry: HostEntry, reason: &str) {
    // Behind what the host sent before it went: the client gets all of it, then the reason.
    for client in entry.clients.values() {
        let _ = client.tx.send(ToClient::Close(reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_between_one_host_and_its_clients() {
        let hub = Hub::new(2, usize::MAX);
        let (host_tx, mut host_rx) = mpsc::channel(8);
        assert!(matches!(hub.open_client("H", 0), Err(OpenError::HostOffline)));
        let generation = hub.register("H", host_tx);

        let (a, mut a_rx) = hub.open_client("H", 0).expect("open");
        assert_eq!(host_rx.recv().await.map(|f| f.header), Some(Header::Relay(RelayMsg::Open { conn: a, source: 0 })));
        assert!(hub.deliver_to_host("H", a, b"hello".to_vec()).await);
        let forwarded = host_rx.recv().await.expect("forwarded");
        assert_eq!(
            (forwarded.header, forwarded.payload),
            (Header::Relay(RelayMsg::Forward { conn: a }), b"hello".to_vec())
        );
        hub.deliver_to_client("H", Frame::relay(RelayMsg::Forward { conn: a }, b"world".to_vec()));
        assert!(matches!(a_rx.recv().await, Some(ToClient::Bytes(b)) if b == b"world"));

        let _b = hub.open_client("H", 0).expect("second client");
        assert!(matches!(hub.open_client("H", 0), Err(OpenError::TooManyClients)));

        // A stale generation cannot unregister the live one; the live one can.
        hub.unregister("H", generation + 1000);
        assert_eq!(hub.host_count(), 1);
        hub.unregister("H", generation);
        assert_eq!(hub.host_count(), 0);
        assert!(matches!(a_rx.recv().await, Some(ToClient::Close(reason)) if reason == "host went offline"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_never_holds_up_another() {
        let hub = Hub::new(4, usize::MAX);
        let (host_tx, mut host_rx) = mpsc::channel(8);
        hub.register("H", host_tx);
        let (stalled, mut stalled_rx) = hub.open_client("H", 0).expect("open");
        let (typing, mut typing_rx) = hub.open_client("H", 0).expect("open");
        let started = tokio::time::Instant::now();
        // The host floods the client that stopped reading, then echoes a keystroke to the other.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(CLIENT_BACKLOG_BYTES >> 20) + 2 {
            hub.deliver_to_client("H", Frame::relay(RelayMsg::Forward { conn: stalled }, chunk.clone()));
        }
        hub.deliver_to_client("H", Frame::relay(RelayMsg::Forward { conn: typing }, b"e".to_vec()));
        assert!(matches!(typing_rx.recv().await, Some(ToClient::Bytes(b)) if b == b"e"));
        // No waiting at all, not even on the paused clock.
        assert_eq!(tokio::time::Instant::now(), started);
        // The stalled client is told why, before what is queued, and dropped; its host hears
        // of it; its queue is freed when its task lets go of it.
        let first = stalled_rx.recv().await;
        assert!(matches!(&first, Some(ToClient::Close(why)) if why.starts_with("too slow")), "{first:?}");
        assert!(hub.queued_bytes() >= CLIENT_BACKLOG_BYTES - (1 << 20));
        drop(stalled_rx);
        assert_eq!(hub.queued_bytes(), 0);
        let mut closed = false;
        while let Ok(frame) = host_rx.try_recv() {
            closed |=
                frame.header == Header::Relay(RelayMsg::Close { conn: stalled, reason: "client too slow".into() });
        }
        assert!(closed, "the host is told its client was dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn all_queues_together_stay_within_the_budget() {
        // Clients that never read, each under its own limit: together they may not hold more
        // than the relay's budget; the one that would go over is dropped.
        let hub = Hub::new(64, 3 << 20);
        let (host_tx, _host_rx) = mpsc::channel(1024);
        hub.register("H", host_tx);
        let mut queues = Vec::new();
        for _ in 0..4 {
            let (conn, queue) = hub.open_client("H", 0).expect("open");
            hub.deliver_to_client("H", Frame::relay(RelayMsg::Forward { conn }, vec![0; 1 << 20]));
            queues.push(queue);
        }
        assert_eq!(hub.queued_bytes(), 3 << 20);
        let last = queues.last_mut().expect("four");
        let dropped = last.recv().await;
        assert!(matches!(&dropped, Some(ToClient::Close(why)) if why.contains("buffer space")), "{dropped:?}");
    }
}
