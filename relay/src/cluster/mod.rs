//! One relay node of several (`--redis`): routing state in Redis (`routing`), and how nodes
//! prove themselves to each other on the internal endpoint (`NodeSecret`).
//!
//! A client that reaches a node which does not hold its host is carried to the node that does
//! over an internal WebSocket (`ws::cross_node`): the bytes that cross are the client's and the
//! host's, still sealed end to end, and the owner node applies every limit to them as to a
//! client of its own (the client's address travels with the link).
//!
//! Invariants:
//! - Only a node that holds the shared secret may use another node's internal endpoint: the
//!   endpoint's answer carries a fresh challenge, and the dialling node's first message is an
//!   HMAC-SHA256 over that challenge, the host id and the client's address. The secret itself
//!   never crosses the network, and a recorded answer is worth nothing on another socket.
//! - A carried client is never carried again: the internal endpoint serves only hosts held on
//!   its own node, so two nodes with different views of Redis cannot bounce a client between
//!   them.
//! - Nothing node-local leaks into what hosts and clients see: TURN credentials come from the
//!   same secret on every node, and host ids, close reasons and limits are the same everywhere.

pub mod routing;

use std::path::Path;
use std::sync::Arc;

use hmac::{KeyInit, Mac};

/// Where nodes reach each other: `{node_url}/internal/client/{host_id}`.
pub const INTERNAL_CLIENT_PATH: &str = "/internal/client/";
/// Shortest node secret accepted (bytes on the file's first line).
const MIN_SECRET_BYTES: usize = 16;
/// What a node's MAC covers first, so it can never be mistaken for any other MAC.
const MAC_CONTEXT: &[u8] = b"tether relay node link v1";

/// This relay as one node of several.
pub struct Cluster {
    pub routing: Arc<routing::Routing>,
    pub secret: NodeSecret,
}

/// The secret every node of one relay service shares (`--node-secret-file`).
pub struct NodeSecret(Vec<u8>);

impl NodeSecret {
    pub fn load(path: &Path) -> Result<NodeSecret, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let secret = text.lines().next().unwrap_or_default().trim();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "{}: the node secret must be at least {MIN_SECRET_BYTES} characters on the first line",
                path.display()
            ));
        }
        Ok(NodeSecret(secret.as_bytes().to_vec()))
    }

    fn keyed(&self, challenge: &str, host_id: &str, source: &str) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        for part in [MAC_CONTEXT, challenge.as_bytes(), host_id.as_bytes(), source.as_bytes()] {
            // Length-prefixed, so no two different triples read the same.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The dialling node's proof for one link (hex).
    pub fn prove(&self, challenge: &str, host_id: &str, source: &str) -> String {
        tether_protocol::hex::encode(&self.keyed(challenge, host_id, source).finalize().into_bytes())
    }

    /// Whether `proof` is this secret's for that link (compared in constant time).
    pub fn verify(&self, challenge: &str, host_id: &str, source: &str, proof: &str) -> bool {
        let Some(proof) = tether_protocol::hex::decode_array::<32>(proof) else { return false };
        self.keyed(challenge, host_id, source).verify_slice(&proof).is_ok()
    }
}

/// `ws://…` for a node's `http://…` URL (nodes talk plain WebSocket on their internal network;
/// what they carry is sealed end to end, and each link is authenticated).
pub fn node_ws_url(node_url: &str, host_id: &str) -> Result<String, String> {
    let rest = node_url
        .strip_prefix("http://")
        .ok_or_else(|| format!("node URL {node_url} is not http://HOST:PORT"))?
        .trim_end_matches('/');
    Ok(format!("ws://{rest}{INTERNAL_CLIENT_PATH}{host_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_for_its_own_challenge_host_and_source_only() {
        let secret = NodeSecret(b"0123456789abcdef-node-secret".to_vec());
        let proof = secret.prove("c1", "h1", "10.0.0.1");
        assert!(secret.verify("c1", "h1", "10.0.0.1", &proof));
        for (challenge, host, source) in [("c2", "h1", "10.0.0.1"), ("c1", "h2", "10.0.0.1"), ("c1", "h1", "10.0.0.2")]
        {
            assert!(!secret.verify(challenge, host, source, &proof), "{challenge} {host} {source}");
        }
        let other = NodeSecret(b"another-secret-of-16+".to_vec());
        assert!(!other.verify("c1", "h1", "10.0.0.1", &proof));
        assert!(!secret.verify("c1", "h1", "10.0.0.1", "zz"));
        // Parts are length-prefixed: moving a boundary changes the MAC.
        assert_ne!(secret.prove("ab", "c", "d"), secret.prove("a", "bc", "d"));
    }

    #[test]
    fn node_urls_become_internal_websocket_urls() {
        assert_eq!(node_ws_url("http://10.0.0.5:8080/", "h").as_deref(), Ok("ws://10.0.0.5:8080/internal/client/h"));
        assert!(node_ws_url("https://x", "h").is_err());
    }
}
