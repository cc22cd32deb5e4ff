//! Routing state shared through Redis: which node holds each host, which nodes are alive, and
//! hosts coming and going (pub/sub).
//!
//! Keys (all under `tether:`):
//! - `tether:owner:{host_id}` = `"{node_url} {claim}"`, with a TTL of `OWNER_TTL`. Set by the
//!   node a host registers on (`claim`, a fresh token per registration); refreshed for every host
//!   a node holds, in one pipelined sweep every `REFRESH_EVERY` — no timer per host.
//! - `tether:nodes`: a sorted set of live nodes' public URLs scored by when they lapse (unix
//!   ms), for hosts to fail over to (`peers`).
//! - channel `tether:presence`: `"1 {host_id} {node_url}"` when a host registers on a node,
//!   `"0 {host_id} {node_url}"` when it leaves it.
//!
//! Invariants:
//! - A claim is atomic with its announcement (one Lua script): the order of announcements on
//!   the channel is the order of the owner key's values, so every node sees one history.
//! - The newest registration wins: a claim overwrites, and the node that held the host before
//!   learns it from the announcement (or, if it missed it, from its next refresh, which finds
//!   another claim in the key) and drops its socket.
//! - A node releases a host only with its own claim still in the key (compare and delete), so a
//!   host that moved on is never reported offline by the node it left.
//! - Losing Redis stops nothing local: hosts stay registered and served on their node; lookups
//!   fail with `Unreachable` (the caller tells its client to try again); the supervisor redials
//!   and, once back, re-asserts every local host's claim (Redis may have lost them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tether_protocol::sync::lock;

use crate::hub::{Hub, Presence};

/// An owner key lives this long unless refreshed...
const OWNER_TTL: Duration = Duration::from_secs(30);
/// ...and every held host's key is refreshed this often (and this node's entry in the node set).
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Refreshes go to Redis in pipelines of this many commands.
const REFRESH_BATCH: usize = 500;
/// A Redis command not answered by then counts as Redis being unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between attempts to reach Redis again, doubling up to the second.
const REDIAL_FIRST: Duration = Duration::from_millis(250);
const REDIAL_MAX: Duration = Duration::from_secs(4);

const PRESENCE_CHANNEL: &str = "tether:presence";
const NODES_KEY: &str = "tether:nodes";

/// Set the owner and announce it.
const CLAIM: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1";
/// Delete the owner and announce it — only if the key still holds this claim.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0";
/// Extend this claim; set it again if the key is gone (Redis restarted); 0 if another claim
/// holds the key (the host moved to another node).
const REFRESH: &str = r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0";

/// Redis cannot be asked right now.
#[derive(Debug)]
pub struct Unreachable;

pub struct Routing {
    client: redis::Client,
    /// The command connection; `None` while Redis is unreachable.
    connection: Mutex<Option<MultiplexedConnection>>,
    /// How other nodes reach this one (internal), as it goes into owner keys.
    node_url: String,
    /// Where hosts may dial this node, for other nodes' hosts to fail over to.
    public_url: Option<String>,
    /// Distinguishes this process's claims from an earlier one's on the same node URL.
    instance: String,
    claim: redis::Script,
    release: redis::Script,
    refresh: redis::Script,
}

fn owner_key(host_id: &str) -> String {
    format!("tether:owner:{host_id}")
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

impl Routing {
    pub fn new(redis_url: &str, node_url: String, public_url: Option<String>) -> Result<Routing, String> {
        let client = redis::Client::open(redis_url).map_err(|e| format!("--redis {redis_url}: {e}"))?;
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| "no randomness for the node's instance id".to_owned())?;
        Ok(Routing {
            client,
            connection: Mutex::new(None),
            node_url,
            public_url,
            instance: tether_protocol::hex::encode(&nonce),
            claim: redis::Script::new(CLAIM),
            release: redis::Script::new(RELEASE),
            refresh: redis::Script::new(REFRESH),
        })
    }

    pub fn node_url(&self) -> &str {
        &self.node_url
    }

    /// The owner key's value for registration `generation` of a host on this node.
    fn claim_value(&self, generation: u64) -> String {
        format!("{} {}-{generation}", self.node_url, self.instance)
    }

    fn connection(&self) -> Result<MultiplexedConnection, Unreachable> {
        lock(&self.connection).clone().ok_or(Unreachable)
    }

    /// Run one command (or script) within `COMMAND_TIMEOUT`.
    async fn ask<T, F>(&self, call: impl FnOnce(MultiplexedConnection) -> F) -> Result<T, Unreachable>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection()?;
        match tokio::time::timeout(COMMAND_TIMEOUT, call(connection)).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(Unreachable),
        }
    }

    /// Host `host_id` registered here (registration `generation`): this node owns it now, and
    /// every node hears so. Without Redis, it is served here all the same (and claimed when
    /// Redis is back).
    pub async fn claim(&self, host_id: &str, generation: u64) {
        let value = self.claim_value(generation);
        let announcement = format!("1 {host_id} {}", self.node_url);
        let ttl = OWNER_TTL.as_millis() as u64;
        if self.connection().is_err() {
            return; // Redis is down (said once); claimed when it is back.
        }
        let claimed = self
            .ask(|mut c| async move {
                let mut call = self.claim.key(owner_key(host_id));
                call.arg(value).arg(ttl).arg(PRESENCE_CHANNEL).arg(announcement);
                call.invoke_async::<i64>(&mut c).await
            })
            .await;
        if claimed.is_err() {
            eprintln!("tether-relay: cluster: could not claim host {host_id} in Redis; serving it from this node only");
        }
    }

    /// Registration `generation` of `host_id` ended here: forget it, unless it moved on.
    pub async fn release(&self, host_id: &str, generation: u64) {
        let value = self.claim_value(generation);
        let announcement = format!("0 {host_id} {}", self.node_url);
        let _ = self
            .ask(|mut c| async move {
                let mut call = self.release.key(owner_key(host_id));
                call.arg(value).arg(PRESENCE_CHANNEL).arg(announcement);
                call.invoke_async::<i64>(&mut c).await
            })
            .await;
    }

    /// The claim in `host_id`'s owner key, if any node holds it.
    async fn claim_held(&self, host_id: &str) -> Result<Option<String>, Unreachable> {
        self.ask(|mut c| async move { redis::cmd("GET").arg(owner_key(host_id)).query_async(&mut c).await }).await
    }

    /// The internal URL of the node that holds `host_id`, if any node does.
    pub async fn owner(&self, host_id: &str) -> Result<Option<String>, Unreachable> {
        let claim = self.claim_held(host_id).await?;
        Ok(claim.and_then(|v| v.rsplit_once(' ').map(|(node, _)| node.to_owned())))
    }

    /// Live nodes' public URLs, this one's left out (read at each registration, so a node that
    /// came up a moment ago is named).
    pub async fn peers(&self) -> Vec<String> {
        let now = now_unix_ms();
        let nodes: Vec<String> = self
            .ask(|mut c| async move {
                redis::cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(now).arg("+inf").query_async(&mut c).await
            })
            .await
            .unwrap_or_default();
        nodes.into_iter().filter(|url| Some(url) != self.public_url.as_ref()).collect()
    }

    /// Keep a connection to Redis for the relay's lifetime: subscribe to presence, refresh every
    /// held host's claim, and when Redis is lost, say so and dial again.
    pub async fn run(self: Arc<Self>, hub: Arc<Hub>) {
        let mut wait = REDIAL_FIRST;
        let mut was_up = true; // so the first failure is said
        loop {
            match self.serve(&hub).await {
                Ok(never) => match never {},
                Err(why) => {
                    *lock(&self.connection) = None;
                    if was_up {
                        eprintln!(
                            "tether-relay: cluster: Redis unreachable ({why}); serving this node's hosts only, \
                             retrying"
                        );
                    }
                    was_up = false;
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(REDIAL_MAX);
            if lock(&self.connection).is_some() {
                wait = REDIAL_FIRST;
                was_up = true;
            }
        }
    }

    /// One life of the Redis connection; returns only with why it ended.
    async fn serve(self: &Arc<Self>, hub: &Arc<Hub>) -> Result<std::convert::Infallible, String> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut connection =
            self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| e.to_string())?;
        let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        pubsub.subscribe(PRESENCE_CHANNEL).await.map_err(|e| e.to_string())?;
        self.refresh.prepare_invoke().load_async(&mut connection).await.map_err(|e| e.to_string())?;
        *lock(&self.connection) = Some(connection.clone());
        eprintln!("tether-relay: cluster: Redis reachable; node {} routing through it", self.node_url);
        let mut messages = pubsub.on_message();
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                message = futures_util::StreamExt::next(&mut messages) => {
                    let Some(message) = message else { return Err("subscription lost".to_owned()) };
                    if let Ok(text) = message.get_payload::<String>() {
                        self.on_announcement(hub, &text);
                    }
                }
                // (The first tick is at once: claims Redis may have lost come back at once.)
                _ = refresh.tick() => self.refresh_all(hub, &mut connection).await?,
            }
        }
    }

    /// Another node's news: a host it now holds leaves this node; presence watchers hear both.
    fn on_announcement(self: &Arc<Self>, hub: &Arc<Hub>, text: &str) {
        let mut parts = text.splitn(3, ' ');
        let (Some(state), Some(host_id), Some(node)) = (parts.next(), parts.next(), parts.next()) else { return };
        if node == self.node_url || !tether_protocol::identity::is_host_id(host_id) {
            return;
        }
        match state {
            "1" => {
                // Held here too: the key says which registration is newer (the announcement of
                // an older claim elsewhere may arrive after this node's own, newer one).
                if let Some(generation) = hub.generation_of(host_id) {
                    let (routing, hub, host_id) = (self.clone(), hub.clone(), host_id.to_owned());
                    tokio::spawn(async move {
                        let held = routing.claim_held(&host_id).await;
                        if matches!(held, Ok(Some(other)) if other != routing.claim_value(generation)) {
                            hub.evict_generation(&host_id, generation);
                        }
                    });
                }
                hub.announce(Presence { host_id: host_id.to_owned(), online: true });
            }
            "0" if !hub.is_online(host_id) => hub.announce(Presence { host_id: host_id.to_owned(), online: false }),
            _ => {}
        }
    }

    /// Extend every held host's claim (pipelined), drop those another node has claimed since,
    /// and keep this node in the node set.
    async fn refresh_all(&self, hub: &Hub, connection: &mut MultiplexedConnection) -> Result<(), String> {
        let ttl = OWNER_TTL.as_millis() as u64;
        for batch in hub.local_hosts().chunks(REFRESH_BATCH) {
            let mut pipe = redis::pipe();
            for (host_id, generation) in batch {
                let mut call = self.refresh.key(owner_key(host_id));
                call.arg(self.claim_value(*generation)).arg(ttl);
                pipe.invoke_script(&call);
            }
            let results: Vec<i64> = tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async(connection))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            for ((host_id, generation), result) in batch.iter().zip(results) {
                if result == 0 {
                    hub.evict_generation(host_id, *generation);
                }
            }
        }
        let now = now_unix_ms();
        let mut pipe = redis::pipe();
        if let Some(public) = &self.public_url {
            pipe.cmd("ZADD").arg(NODES_KEY).arg(now + OWNER_TTL.as_millis() as u64).arg(public).ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE").arg(NODES_KEY).arg("-inf").arg(now).ignore();
        tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(connection))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
