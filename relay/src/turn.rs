//! TURN credentials for WebRTC upgrades, in the TURN REST API scheme that coturn's
//! `use-auth-secret` implements: the relay and the TURN server share a secret, and the relay
//! mints credentials that the TURN server can check without asking anyone.
//!
//! Invariants:
//! - Only registered hosts are given credentials (a host proved its id); a host is to pass them
//!   on only to clients that authenticated to it. A browser never asks the relay.
//! - Credentials expire `CREDENTIAL_SECS` after they are minted; each request mints fresh ones.
//! - The secret is read once at start and never printed, logged or sent anywhere.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use tether_protocol::frame::TurnCredentials;

/// How long minted credentials work: long enough for an upgrade and its retries, short enough
/// that a leaked pair soon stops working.
pub const CREDENTIAL_SECS: u64 = 10 * 60; // 10 minutes

/// A TURN server beside this relay, and the secret it shares with it.
pub struct TurnServer {
    urls: Vec<String>,
    secret: Vec<u8>,
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
        Ok(TurnServer { urls, secret: secret.as_bytes().to_vec() })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Fresh credentials for `label` (the host's id: coturn can then count and cap per host).
    pub fn credentials(&self, label: &str) -> TurnCredentials {
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
        TurnServer { urls: vec!["turn:127.0.0.1:3478".into()], secret: secret.as_bytes().to_vec() }
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
