//! TURN credentials for WebRTC upgrades, in the TURN REST API scheme that coturn's
//! `use-auth-secret` implements: the relay and the TURN server share a secret, and the relay
//! mints credentials that the TURN server can check without asking anyone.
//!
//! Invariants:
//! - Only a registered host that has a client past its handshake is given credentials, when it
//!   asks (`ice_request`), never at registration: a stranger's throwaway host must at least
//!   hold a client, and is then held to `GRANT_EVERY_PER_HOST` and, with every host of its
//!   network, to `GRANTS_PER_NETWORK_PER_MINUTE`. (The relay cannot see inside a handshake: the
//!   host says when it ended. So these caps, and the TURN server's own `--denied-peer-ip`
//!   ranges and quotas — README — are what bound a stranger.) A host is to pass credentials on
//!   only to clients that authenticated to it. A browser never asks the relay.
//! - Credentials expire `CREDENTIAL_SECS` after they are minted; each grant mints fresh ones.
//! - The secret is read once at start and never printed, logged or sent anywhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use tether_protocol::frame::TurnCredentials;
use tether_protocol::sync::lock;

/// How long minted credentials work: long enough for an upgrade and its retries, short enough
/// that a leaked pair soon stops working.
pub const CREDENTIAL_SECS: u64 = 10 * 60; // 10 minutes

/// One host is given fresh credentials at most this often (it needs them every few minutes,
/// `CREDENTIAL_SECS` / 2)...
pub const GRANT_EVERY_PER_HOST: Duration = Duration::from_secs(60);
/// ...and all hosts of one network together at most this many a minute.
pub const GRANTS_PER_NETWORK_PER_MINUTE: u32 = 20;
/// The window of the per-network count.
const GRANT_WINDOW: Duration = Duration::from_secs(60);
/// Past this many remembered grants, the expired ones are forgotten.
const GRANTS_REMEMBERED: usize = 10_000;

/// A TURN server beside this relay, and the secret it shares with it.
pub struct TurnServer {
    urls: Vec<String>,
    secret: Vec<u8>,
    /// When each host was last given credentials.
    last_grant: Mutex<HashMap<String, Instant>>,
    /// Grants per network in the current window: (window start, count).
    network_grants: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Why a host was not given credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum NoGrant {
    /// It has no client past its handshake.
    NoClient,
    /// It, or its network, asked too often.
    TooSoon,
}

impl TurnServer {
    /// `urls` as given to `--turn-url`; the secret is the first line of `secret_file`.
    pub fn load(urls: Vec<String>, secret_file: &Path) -> Result<TurnServer, String> {
        for url in &urls {
            let rest = url.strip_prefix("turn:").or_else(|| url.strip_prefix("turns:"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                return Err(format!("--turn-url {url:?}: expected turn:HOST:PORT or turns:HOST:PORT"));
            }
        }
        let text = std::fs::read_to_string(secret_file)
            .map_err(|e| format!("--turn-secret-file {}: {e}", secret_file.display()))?;
        let secret = text.lines().next().unwrap_or("").trim();
        if secret.is_empty() {
            return Err(format!("--turn-secret-file {}: the file is empty", secret_file.display()));
        }
        Ok(TurnServer::new(urls, secret.as_bytes().to_vec()))
    }

    fn new(urls: Vec<String>, secret: Vec<u8>) -> TurnServer {
        TurnServer { urls, secret, last_grant: Mutex::new(HashMap::new()), network_grants: Mutex::new(HashMap::new()) }
    }

    /// Credentials for `host_id` (registered from `network`), if it has an authenticated client
    /// and neither it nor its network asked too often.
    pub fn grant(&self, host_id: &str, network: IpAddr, has_client: bool) -> Result<TurnCredentials, NoGrant> {
        if !has_client {
            return Err(NoGrant::NoClient);
        }
        let now = Instant::now();
        let mut last_grant = lock(&self.last_grant);
        if last_grant.len() > GRANTS_REMEMBERED {
            last_grant.retain(|_, at| now.duration_since(*at) < GRANT_EVERY_PER_HOST);
        }
        if last_grant.get(host_id).is_some_and(|at| now.duration_since(*at) < GRANT_EVERY_PER_HOST) {
            return Err(NoGrant::TooSoon);
        }
        let mut network_grants = lock(&self.network_grants);
        if network_grants.len() > GRANTS_REMEMBERED {
            network_grants.retain(|_, (start, _)| now.duration_since(*start) < GRANT_WINDOW);
        }
        let window = network_grants.entry(network).or_insert((now, 0));
        if now.duration_since(window.0) >= GRANT_WINDOW {
            *window = (now, 0);
        }
        if window.1 >= GRANTS_PER_NETWORK_PER_MINUTE {
            return Err(NoGrant::TooSoon);
        }
        window.1 += 1;
        last_grant.insert(host_id.to_owned(), now);
        Ok(self.credentials(host_id))
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Fresh credentials for `label` (the host's id: coturn can then count and cap per host).
    fn credentials(&self, label: &str) -> TurnCredentials {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.credentials_at(now, label)
    }

    fn credentials_at(&self, now_unix: u64, label: &str) -> TurnCredentials {
        let expires = now_unix + CREDENTIAL_SECS;
        let username = format!("{expires}:{label}");
        TurnCredentials { urls: self.urls.clone(), credential: password(&self.secret, &username), username, expires }
    }
}

/// base64(HMAC-SHA1(secret, username)): what the TURN server computes to check the password.
fn password(secret: &[u8], username: &str) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    crate::web::base64(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(secret: &str) -> TurnServer {
        TurnServer::new(vec!["turn:127.0.0.1:3478".into()], secret.as_bytes().to_vec())
    }

    #[test]
    fn only_a_host_with_a_client_gets_credentials_and_not_too_often() {
        let server = turn("north-wind");
        let network: IpAddr = "10.0.0.0".parse().expect("ip");
        assert_eq!(server.grant("a", network, false), Err(NoGrant::NoClient));
        assert!(server.grant("a", network, true).is_ok());
        assert_eq!(server.grant("a", network, true), Err(NoGrant::TooSoon), "one host, once a minute");
        // One network's hosts together: so many a minute.
        for n in 1..GRANTS_PER_NETWORK_PER_MINUTE {
            assert!(server.grant(&format!("host-{n}"), network, true).is_ok(), "grant {n}");
        }
        assert_eq!(server.grant("one-more", network, true), Err(NoGrant::TooSoon));
        assert!(server.grant("one-more", "10.0.1.0".parse().expect("ip"), true).is_ok(), "another network");
    }

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Pinned: `printf %s 1700000600:host | openssl dgst -sha1 -hmac north-wind -binary | base64`.
        let minted = turn("north-wind").credentials_at(1_700_000_000, "host");
        assert_eq!(minted.username, "1700000600:host");
        assert_eq!(minted.expires, 1_700_000_600);
        assert_eq!(minted.credential, "AOE/MonmDeTUMKogVBMFqK4ykRM=");
        assert_eq!(minted.urls, ["turn:127.0.0.1:3478"]);
    }

    #[test]
    fn another_secret_or_time_gives_another_password() {
        let a = turn("north-wind").credentials_at(1_700_000_000, "host");
        assert_ne!(a.credential, turn("south-wind").credentials_at(1_700_000_000, "host").credential);
        assert_ne!(a.credential, turn("north-wind").credentials_at(1_700_000_001, "host").credential);
    }

    #[test]
    fn bad_urls_and_empty_secrets_are_refused() {
        let dir = std::env::temp_dir().join(format!("tether-turn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret\n").expect("write");
        assert!(TurnServer::load(vec!["turn:h:3478".into(), "turns:h:5349".into()], &file).is_ok());
        for url in ["http://h:3478", "turn:", "stun:h:3478", "turn:h 3478"] {
            let error = TurnServer::load(vec![url.into()], &file).err().expect("refused");
            assert!(error.contains("turn:HOST:PORT"), "{error}");
        }
        std::fs::write(&file, "\n").expect("write");
        assert!(TurnServer::load(vec!["turn:h:3478".into()], &file).err().expect("refused").contains("empty"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
