//! Host identity, provable to a stateless relay.
//!
//! A host's public **host id** is 128 bits of SHA-256, in base32 (26 characters), over one of:
//! - a **host key** (hosts made from now on): an Ed25519 public key, hashed under
//!   `KEY_ID_LABEL`. To register, the host signs a statement (`registration_statement`) naming
//!   the id, the relay's address as the host dialled it, and a nonce the relay chose for this
//!   connection (the `x-tether-challenge` header of its WebSocket answer). The relay checks the
//!   signature and that the key hashes to the id, and learns nothing it could use elsewhere: its
//!   nonce and its address are in what was signed, so another relay would refuse it.
//! - a **host secret** (hosts made before): a random 256-bit value, hashed as it is. To register
//!   the host shows the secret; the relay hashes it and compares. A relay that saw it could
//!   claim the id on another relay; such a host keeps its id (its invites and password are bound
//!   to it) until its owner makes a new one.
//!
//! Either way:
//! - the relay keeps no table of who owns which id, and a restarted relay needs nothing back;
//! - nobody without the key or secret can take the id (a signature forgery, or a SHA-256
//!   preimage); the label keeps the two apart, so a host key shown as a "secret" proves nothing;
//! - neither is related to the SRP secrets clients use, so a relay that learns one still cannot
//!   read or forge traffic.

use sha2::{Digest, Sha256};

/// Bytes of a host secret (and of a host key's seed).
pub const HOST_SECRET_BYTES: usize = 32;
/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Bytes of the nonce a relay challenges a registering host with.
pub const CHALLENGE_BYTES: usize = 32;
/// The header of a relay's WebSocket answer to a host that carries the challenge (hex).
pub const CHALLENGE_HEADER: &str = "x-tether-challenge";
/// Bytes of SHA-256 kept for the id.
const HOST_ID_BYTES: usize = 16;
/// What a host key's id hashes before the key: no host secret hashes to a key's id.
const KEY_ID_LABEL: &[u8] = b"tether host key v1\0";
/// What a registration statement starts with.
const STATEMENT_LABEL: &str = "tether host registration v1";
/// RFC 4648 base32 alphabet, no padding; upper-case so ids read well and survive URLs.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The host id a secret proves (a host made before host keys).
pub fn host_id(secret: &[u8; HOST_SECRET_BYTES]) -> String {
    let digest = Sha256::digest(secret);
    base32(&digest[..HOST_ID_BYTES])
}

/// The host id of a host key.
pub fn key_host_id(public_key: &[u8; PUBLIC_KEY_BYTES]) -> String {
    let digest = Sha256::new().chain_update(KEY_ID_LABEL).chain_update(public_key).finalize();
    base32(&digest[..HOST_ID_BYTES])
}

/// Check a registration by secret: does `proof_hex` hash to `host_id`?
pub fn verify(host_id: &str, proof_hex: &str) -> bool {
    match crate::hex::decode_array::<HOST_SECRET_BYTES>(proof_hex) {
        // Both sides of the comparison are public (the id) or the prover's own (the secret):
        // a timing difference reveals nothing worth protecting.
        Some(secret) => self::host_id(&secret) == host_id,
        None => false,
    }
}

/// What a host signs to register with a relay: the id it claims, the relay's address as the
/// host dialled it (`authority`: `host[:port]`, lower case, as the `Host` header says it), and
/// the relay's nonce for this connection (hex).
pub fn registration_statement(host_id: &str, authority: &str, nonce_hex: &str) -> Vec<u8> {
    format!("{STATEMENT_LABEL}\nhost {host_id}\nrelay {}\nnonce {nonce_hex}\n", authority.to_ascii_lowercase())
        .into_bytes()
}

/// Whether `text` has the shape of a host id (before looking it up anywhere).
pub fn is_host_id(text: &str) -> bool {
    text.len() == 26 && text.bytes().all(|b| BASE32.contains(&b))
}

pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_keys_id_is_labelled_so_no_secret_proves_it() {
        let key = [7u8; PUBLIC_KEY_BYTES];
        let id = key_host_id(&key);
        assert!(is_host_id(&id));
        assert_ne!(id, host_id(&key));
        assert!(!verify(&id, &crate::hex::encode(&key)), "the key shown as a secret proves nothing");
        // Pinned (Python's hashlib and base32 agree), so another implementation derives the
        // same ids and statements.
        assert_eq!(id, "2C2BOXVGXA6DW46DMCO3QRVOPA");
        assert_eq!(
            String::from_utf8(registration_statement("ABC", "Relay.Example:8443", "00ff")).expect("text"),
            "tether host registration v1\nhost ABC\nrelay relay.example:8443\nnonce 00ff\n"
        );
    }

    #[test]
    fn base32_matches_rfc4648() {
        // RFC 4648 §10 test vectors (without padding).
        for (input, expected) in [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foobar", "MZXW6YTBOI")] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
    }

    #[test]
    fn only_the_secret_proves_the_id() {
        let secret = [7u8; HOST_SECRET_BYTES];
        let id = host_id(&secret);
        assert!(is_host_id(&id), "{id}");
        assert!(verify(&id, &crate::hex::encode(&secret)));
        assert!(!verify(&id, &crate::hex::encode(&[8u8; HOST_SECRET_BYTES])));
        assert!(!verify(&id, "zz"));
        assert!(!is_host_id("not-an-id"));
    }
}

/// Bytes of randomness in an invite secret (≥ 128 bits, as the design requires).
pub const INVITE_SECRET_BYTES: usize = 20; // 160 bits → 32 base32 characters

/// An invite: where the relay is, which host, and the secret that proves the right to connect.
/// Written `https://RELAY/#<host-id>.<secret>`: the part after `#` never leaves the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// `http(s)://host[:port]`, no trailing slash.
    pub relay: String,
    pub host_id: String,
    pub secret: String,
}

/// Where a host is: its relay and id, written `https://RELAY/#<host-id>`. Without a secret
/// attached, a client gets in with the host's password (`tether passwd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// `http(s)://host[:port]`, no trailing slash.
    pub relay: String,
    pub host_id: String,
}

impl HostAddress {
    pub fn to_url(&self) -> String {
        format!("{}/#{}", self.relay, self.host_id)
    }

    /// The relay's WebSocket URL for clients of this host.
    pub fn client_ws_url(&self) -> Result<String, String> {
        relay_ws_url(&self.relay, &format!("/ws/client/{}", self.host_id))
    }
}

/// A host as someone was given it (a link): an invite (address and secret), or its bare address;
/// or as this machine keeps it, a device credential the host issued it (`tether hosts add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRef {
    Invite(Invite),
    Address(HostAddress),
    Device(DeviceKey),
}

impl HostRef {
    pub fn parse(text: &str) -> Result<HostRef, String> {
        let text = text.trim();
        let (base, fragment) = text
            .split_once('#')
            .ok_or("a host link looks like https://RELAY/#HOSTID.SECRET (or https://RELAY/#HOSTID)")?;
        let (host_id, secret) = match fragment.split_once('.') {
            Some((host_id, secret)) => (host_id, Some(secret)),
            None => (fragment, None),
        };
        if !is_host_id(host_id) {
            return Err(format!("{host_id:?} is not a host id"));
        }
        let relay = base.trim_end_matches('/');
        if !(relay.starts_with("http://") || relay.starts_with("https://")) {
            return Err("a host link must start with http:// or https://".into());
        }
        let (relay, host_id) = (relay.to_owned(), host_id.to_owned());
        let Some(secret) = secret else { return Ok(HostRef::Address(HostAddress { relay, host_id })) };
        if secret.len() < INVITE_SECRET_BYTES * 8 / 5 || !secret.bytes().all(|b| BASE32.contains(&b)) {
            return Err("the invite's secret is malformed (copied only in part?)".into());
        }
        Ok(HostRef::Invite(Invite { relay, host_id, secret: secret.to_owned() }))
    }

    pub fn address(&self) -> HostAddress {
        match self {
            HostRef::Invite(invite) => invite.address(),
            HostRef::Address(address) => address.clone(),
            HostRef::Device(device) => device.address.clone(),
        }
    }

    /// The link, with the invite's secret when it is one (a device's secret never goes in a URL).
    pub fn to_url(&self) -> String {
        match self {
            HostRef::Invite(invite) => invite.to_url(),
            HostRef::Address(address) => address.to_url(),
            HostRef::Device(device) => device.address.to_url(),
        }
    }
}

/// What a device credential's identity starts with; 16 hex digits (64 random bits the device
/// chose) follow. Unlike an invite's, a device's identity is not derived from its secret: a
/// browser derives the secret from its key *and* the identity (`device_secret_label`).
pub const DEVICE_PREFIX: &str = "device-";
/// Random bytes of a device id.
pub const DEVICE_ID_BYTES: usize = 8;
/// Bytes of a device secret (the CLI's random one; a browser's HMAC-SHA256 output).
pub const DEVICE_SECRET_BYTES: usize = 32;

/// Whether `identity` names a device credential (`device-` and 16 lower-case hex digits).
pub fn is_device_identity(identity: &str) -> bool {
    identity.strip_prefix(DEVICE_PREFIX).is_some_and(|id| {
        id.len() == DEVICE_ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// What a browser's non-extractable device key signs (HMAC-SHA256) to get its secret for one
/// host and device id: so each host gets its own secret, and the key itself never leaves the
/// browser's key store. Pinned in a test: the page and any other client must agree.
pub fn device_secret_label(host_id: &str, identity: &str) -> String {
    format!("tether device secret v1\nhost {host_id}\ndevice {identity}\n")
}

/// A device credential the host issued this machine: which host, through which relay, and the
/// secret (hex of `DEVICE_SECRET_BYTES`) proving `identity`. Kept like a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKey {
    pub address: HostAddress,
    pub identity: String,
    pub secret: String,
}

impl Invite {
    pub fn parse(text: &str) -> Result<Invite, String> {
        match HostRef::parse(text)? {
            HostRef::Invite(invite) => Ok(invite),
            HostRef::Address(_) | HostRef::Device(_) => Err("the invite's #part must be HOSTID.SECRET".into()),
        }
    }

    pub fn address(&self) -> HostAddress {
        HostAddress { relay: self.relay.clone(), host_id: self.host_id.clone() }
    }

    pub fn to_url(&self) -> String {
        format!("{}/#{}.{}", self.relay, self.host_id, self.secret)
    }

    /// The SRP identity this invite's secret is registered under on the host. Derived from the
    /// secret, so each invite is its own revocable credential and the URL needs nothing more.
    pub fn identity(&self) -> String {
        invite_identity(&self.secret)
    }

    /// The relay's WebSocket URL for clients of this host.
    pub fn client_ws_url(&self) -> Result<String, String> {
        self.address().client_ws_url()
    }
}

/// The WebSocket URL for `path` on `relay` (`http(s)://host[:port]`). `https` becomes `wss`;
/// plain `http` is accepted only for a relay on this machine, because anywhere else the host's
/// registration secret and who talks to whom would cross the network in the clear.
pub fn relay_ws_url(relay: &str, path: &str) -> Result<String, String> {
    let trimmed = relay.trim_end_matches('/');
    let (secure, rest) = match (trimmed.strip_prefix("https://"), trimmed.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(format!("{relay}: a relay URL starts with https:// (or http:// on this machine)")),
    };
    // Parsed, not matched: the authority ends at the first `/`, and everything in it must be a
    // host and an optional port. `http://localhost:x@evil` is user `localhost` at host `evil`.
    let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if rest.contains(['?', '#']) {
        return Err(format!("{relay}: a relay URL has no query or fragment"));
    }
    if authority.contains('@') {
        return Err(format!("{relay}: a relay URL has no user name or password"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(literal) => {
            let (ip, after) = literal.split_once(']').ok_or_else(|| format!("{relay}: unclosed IPv6 address"))?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{relay}: bad IPv6 address"))?;
            (&authority[..ip.len() + 2], after)
        }
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    if let Some(port) = port.strip_prefix(':') {
        port.parse::<u16>().map_err(|_| format!("{relay}: bad port {port:?}"))?;
    } else if !port.is_empty() {
        return Err(format!("{relay}: unexpected {port:?} after the host"));
    }
    let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if host.is_empty() || !(host.starts_with('[') || host.chars().all(name_ok)) {
        return Err(format!("{relay}: bad host name {host:?}"));
    }
    let loopback =
        host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()) || host == "[::1]";
    match (secure, loopback) {
        (true, _) => Ok(format!("wss://{authority}{prefix}{path}")),
        (false, true) => Ok(format!("ws://{authority}{prefix}{path}")),
        (false, false) => Err(format!("{relay}: plain http is allowed only for a relay on this machine; use https://")),
    }
}

/// `invite-` and 8 hex digits of SHA-256 over the secret.
pub fn invite_identity(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("invite-{}", crate::hex::encode(&digest[..4]))
}

#[cfg(test)]
mod invite_tests {
    use super::*;

    #[test]
    fn device_identities_have_one_shape_and_their_label_is_pinned() {
        assert!(is_device_identity("device-0123456789abcdef"));
        for bad in ["device-0123456789ABCDEF", "device-0123", "device-0123456789abcdef0", "invite-01234567", "password"]
        {
            assert!(!is_device_identity(bad), "{bad}");
        }
        assert_eq!(device_secret_label("HOST", "device-00"), "tether device secret v1\nhost HOST\ndevice device-00\n");
    }

    #[test]
    fn invites_round_trip_and_refuse_damage() {
        let id = host_id(&[5; HOST_SECRET_BYTES]);
        let secret = base32(&[6; INVITE_SECRET_BYTES]);
        let url = format!("http://127.0.0.1:8080/#{id}.{secret}");
        let invite = Invite::parse(&url).expect("parses");
        assert_eq!(invite.to_url(), url);
        assert_eq!(invite.client_ws_url(), Ok(format!("ws://127.0.0.1:8080/ws/client/{id}")));
        assert!(invite.identity().starts_with("invite-"));
        assert!(Invite::parse(&format!("http://r/#{id}.{}", &secret[..10])).is_err());
        assert!(Invite::parse(&format!("ftp://r/#{id}.{secret}")).is_err());
        assert!(Invite::parse("http://r/").is_err());
        assert!(Invite::parse(&format!("http://r/#{id}")).is_err(), "no secret: not an invite");
    }

    #[test]
    fn a_bare_address_is_a_link_for_the_password() {
        let id = host_id(&[5; HOST_SECRET_BYTES]);
        let link = HostRef::parse(&format!("https://relay.example/#{id}")).expect("parses");
        let address = HostAddress { relay: "https://relay.example".into(), host_id: id.clone() };
        assert_eq!(link, HostRef::Address(address.clone()));
        assert_eq!(link.to_url(), format!("https://relay.example/#{id}"));
        assert_eq!(address.client_ws_url(), Ok(format!("wss://relay.example/ws/client/{id}")));
        assert!(HostRef::parse("https://relay.example/#not-an-id").is_err());
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        assert_eq!(relay_ws_url("http://127.0.0.1:8080", "/ws/host"), Ok("ws://127.0.0.1:8080/ws/host".into()));
        assert_eq!(relay_ws_url("http://localhost:9/", "/ws/host"), Ok("ws://localhost:9/ws/host".into()));
        assert_eq!(relay_ws_url("http://[::1]:9", "/x"), Ok("ws://[::1]:9/x".into()));
        assert_eq!(relay_ws_url("https://relay.example.com", "/x"), Ok("wss://relay.example.com/x".into()));
        assert!(relay_ws_url("http://relay.example.com", "/x").is_err());
        assert!(relay_ws_url("http://localhost.evil.com", "/x").is_err());
        assert!(relay_ws_url("http://127.0.0.1.evil.com", "/x").is_err());
        assert!(relay_ws_url("ftp://x", "/x").is_err());
    }

    #[test]
    fn relay_urls_are_parsed_not_matched() {
        // Userinfo would make the loopback name a user name and send the secret elsewhere.
        assert!(relay_ws_url("http://localhost:x@evil.example", "/x").is_err());
        assert!(relay_ws_url("http://127.0.0.1@evil.example", "/x").is_err());
        assert!(relay_ws_url("https://user:pw@relay.example.com", "/x").is_err());
        assert!(relay_ws_url("http://localhost:99999", "/x").is_err(), "port out of range");
        assert!(relay_ws_url("http://localhost:80x", "/x").is_err(), "port not a number");
        assert!(relay_ws_url("https://", "/x").is_err(), "no host");
        assert!(relay_ws_url("https://relay.example.com?a=b", "/x").is_err(), "no query");
        assert!(relay_ws_url("http://[::1", "/x").is_err(), "unclosed IPv6 literal");
        assert!(relay_ws_url("http://[::2]:9", "/x").is_err(), "not loopback");
        assert_eq!(relay_ws_url("http://127.0.0.9:1/", "/x"), Ok("ws://127.0.0.9:1/x".into()));
        assert_eq!(relay_ws_url("https://relay.example.com/t/", "/x"), Ok("wss://relay.example.com/t/x".into()));
    }
}
