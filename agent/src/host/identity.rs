//! This machine's identity toward relays (see `tether_protocol::identity`): an Ed25519 host key
//! whose seed is kept in the state dir (`host.key`, mode 0600), or — for a host made before
//! host keys — the random secret it already has (`host.secret`), kept so its id, and with it
//! its invites and password, stay as they were. Created on first use, kept forever, so a
//! restarted agent reclaims the same id and earlier invites keep working.
//!
//! Invariants:
//! - The seed never leaves this process: a relay sees the public key and a signature over its
//!   own nonce and address, which no other relay would take.
//! - A legacy secret is shown only to the relays this host registers with (over TLS, or on this
//!   machine), as before.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair};
use tether_protocol::frame::RelayMsg;
use tether_protocol::hex;
use tether_protocol::identity::{self, HOST_SECRET_BYTES, PUBLIC_KEY_BYTES};

use crate::paths::StateDir;

pub struct HostIdentity {
    pub host_id: String,
    proof: Proof,
}

/// How this host proves its id to a relay.
enum Proof {
    /// A signature by the host key.
    Key(Ed25519KeyPair),
    /// Showing the legacy secret.
    Secret([u8; HOST_SECRET_BYTES]),
}

impl HostIdentity {
    pub fn load_or_create(state: &StateDir) -> Result<HostIdentity, String> {
        let legacy = state.root().join("host.secret");
        if let Some(secret) = read_hex(&legacy)? {
            return Ok(HostIdentity { host_id: identity::host_id(&secret), proof: Proof::Secret(secret) });
        }
        let path = state.root().join("host.key");
        let seed = match read_hex(&path)? {
            Some(seed) => seed,
            None => create(&path)?,
        };
        let key = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| format!("{} is damaged; remove it to get a new host id", path.display()))?;
        let public: [u8; PUBLIC_KEY_BYTES] =
            key.public_key().as_ref().try_into().map_err(|_| "an Ed25519 public key is 32 bytes".to_owned())?;
        Ok(HostIdentity { host_id: identity::key_host_id(&public), proof: Proof::Key(key) })
    }

    /// The `register` message for the relay at `ws_url`, which challenged this connection with
    /// `nonce` (hex; `None` from a relay too old to).
    pub fn register(&self, ws_url: &str, nonce: Option<&str>) -> Result<RelayMsg, String> {
        let host_id = self.host_id.clone();
        match &self.proof {
            Proof::Secret(secret) => Ok(RelayMsg::Register { host_id, proof: hex::encode(secret), signature: None }),
            Proof::Key(key) => {
                let nonce = nonce.ok_or("the relay sent no challenge: it is older than this host's key")?;
                let authority = ws_url
                    .parse::<tokio_tungstenite::tungstenite::http::Uri>()
                    .ok()
                    .and_then(|uri| uri.authority().map(|a| a.as_str().to_owned()))
                    .ok_or_else(|| format!("no address in {ws_url}"))?;
                let statement = identity::registration_statement(&host_id, &authority, nonce);
                let signature = hex::encode(key.sign(&statement).as_ref());
                Ok(RelayMsg::Register {
                    host_id,
                    proof: hex::encode(key.public_key().as_ref()),
                    signature: Some(signature),
                })
            }
        }
    }
}

/// A 32-byte value kept in hex at `path`; `None` if there is no such file.
fn read_hex(path: &Path) -> Result<Option<[u8; HOST_SECRET_BYTES]>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode_array::<HOST_SECRET_BYTES>(text.trim())
            .map(Some)
            .ok_or_else(|| format!("{} is damaged; remove it to get a new host id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A fresh random seed, written to `path` (mode 0600, never over an existing file).
fn create(path: &Path) -> Result<[u8; HOST_SECRET_BYTES], String> {
    let mut seed = [0u8; HOST_SECRET_BYTES];
    crate::random::random_bytes(&mut seed)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(hex::encode(&seed).as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(seed)
}
