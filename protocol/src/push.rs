//! Web push, sans-IO: a payload encrypted for one browser's subscription (RFC 8291, the
//! `aes128gcm` content coding of RFC 8188) and the VAPID authorization the sender signs for the
//! push service (RFC 8292). The host sends what these make; a test push service opens it with
//! `decrypt`. Behind the `push` feature: the browser never needs it.
//!
//! Invariants:
//! - Randomness comes from the caller (the salt, the sender's one-time ECDH key), so the RFC's
//!   own example is reproduced byte for byte (pinned below).
//! - One record, padded to nothing, as RFC 8291 asks: the push service sees the payload's length
//!   and when it was sent, never its content; only the subscription's private key opens it.
//! - Everything a subscription carries (endpoint, keys) comes from a client: it is checked here
//!   (an `https` endpoint, or `http` on loopback; a P-256 point; a 16-byte auth secret) before
//!   it is kept or used.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes128Gcm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// Bytes of an uncompressed P-256 point (0x04 ‖ x ‖ y).
pub const PUBLIC_KEY_BYTES: usize = 65;
/// Bytes of a subscription's auth secret.
pub const AUTH_BYTES: usize = 16;
/// Bytes of the salt of one message.
pub const SALT_BYTES: usize = 16;
/// Bytes of a P-256 private key (the VAPID key, the sender's one-time key).
pub const SECRET_KEY_BYTES: usize = 32;
/// The record size the header names: more than any payload we send (one record).
const RECORD_BYTES: u32 = 4096;
/// Longest payload one record carries (record size less the tag and the delimiter).
pub const MAX_PAYLOAD_BYTES: usize = RECORD_BYTES as usize - 16 - 1;
/// How long a VAPID token is good for (the RFC allows at most 24 h).
pub const VAPID_VALID_SECS: u64 = 12 * 60 * 60;

/// One browser's push subscription, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    /// The browser's ECDH public key (`p256dh`).
    pub public_key: [u8; PUBLIC_KEY_BYTES],
    pub auth: [u8; AUTH_BYTES],
}

impl Subscription {
    /// Check what a client sent: `keys.p256dh` and `keys.auth` are base64url, as
    /// `PushSubscription.toJSON()` gives them.
    pub fn parse(endpoint: &str, p256dh: &str, auth: &str) -> Result<Subscription, String> {
        audience(endpoint)?;
        let public_key: [u8; PUBLIC_KEY_BYTES] = decode(p256dh)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or("the subscription's p256dh is not a P-256 public key")?;
        PublicKey::from_sec1_bytes(&public_key).map_err(|_| "the subscription's p256dh is not on P-256")?;
        let auth =
            decode(auth).ok().and_then(|a| a.try_into().ok()).ok_or("the subscription's auth is not 16 bytes")?;
        Ok(Subscription { endpoint: endpoint.to_owned(), public_key, auth })
    }
}

/// The origin of a push endpoint (the VAPID token's audience). Only `https`, or plain `http` to
/// a loopback address (a push service on this machine, as in tests).
pub fn audience(endpoint: &str) -> Result<String, String> {
    let (scheme, rest) = endpoint.split_once("://").ok_or("a push endpoint is a URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err("a push endpoint names a host, and no user".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(format!("https://{authority}")),
        "http" if loopback => Ok(format!("http://{authority}")),
        _ => Err(format!("a push endpoint must be https (got {scheme}://{authority})")),
    }
}

/// Encrypt `plaintext` for `subscription` (RFC 8291): `salt` and the one-time `sender_secret`
/// are fresh randomness from the caller. Returns the request body.
pub fn encrypt(
    subscription: &Subscription,
    plaintext: &[u8],
    salt: [u8; SALT_BYTES],
    sender_secret: [u8; SECRET_KEY_BYTES],
) -> Result<Vec<u8>, String> {
    if plaintext.len() > MAX_PAYLOAD_BYTES {
        return Err(format!("a push payload is at most {MAX_PAYLOAD_BYTES} bytes"));
    }
    let sender = SecretKey::from_slice(&sender_secret).map_err(|_| "a sender key out of range")?;
    let sender_public = public_bytes(&sender.public_key());
    let receiver = PublicKey::from_sec1_bytes(&subscription.public_key).map_err(|_| "not a P-256 point")?;
    let (key, nonce) =
        content_keys(&sender, &receiver, &subscription.public_key, &sender_public, &subscription.auth, &salt)?;
    let mut record = plaintext.to_vec();
    record.push(2); // the last (and only) record's delimiter
    let sealed = Aes128Gcm::new(&key.into())
        .encrypt(&nonce.into(), Payload { msg: &record, aad: &[] })
        .map_err(|_| "sealing the push failed")?;
    let mut body = Vec::with_capacity(SALT_BYTES + 4 + 1 + PUBLIC_KEY_BYTES + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_BYTES.to_be_bytes());
    body.push(PUBLIC_KEY_BYTES as u8);
    body.extend_from_slice(&sender_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// Open a push body as the browser would, with its private key and auth secret.
pub fn decrypt(
    receiver_secret: &[u8; SECRET_KEY_BYTES],
    auth: &[u8; AUTH_BYTES],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let header = SALT_BYTES + 4 + 1;
    if body.len() < header {
        return Err("a push body shorter than its header".into());
    }
    let salt: [u8; SALT_BYTES] = body[..SALT_BYTES].try_into().map_err(|_| "salt")?;
    let id_len = usize::from(body[SALT_BYTES + 4]);
    if id_len != PUBLIC_KEY_BYTES || body.len() < header + id_len {
        return Err("a push body whose key id is not a P-256 point".into());
    }
    let sender_public = &body[header..header + id_len];
    let sender = PublicKey::from_sec1_bytes(sender_public).map_err(|_| "the sender's key is not on P-256")?;
    let receiver = SecretKey::from_slice(receiver_secret).map_err(|_| "a receiver key out of range")?;
    let receiver_public = public_bytes(&receiver.public_key());
    let (key, nonce) = content_keys(&receiver, &sender, &receiver_public, sender_public, auth, &salt)?;
    let mut record = Aes128Gcm::new(&key.into())
        .decrypt(&nonce.into(), Payload { msg: &body[header + id_len..], aad: &[] })
        .map_err(|_| "the push does not open with this key (altered, or for another subscription)")?;
    // Padding is zeros after the delimiter; the last record's delimiter is 2.
    while record.last() == Some(&0) {
        record.pop();
    }
    match record.pop() {
        Some(2) => Ok(record),
        _ => Err("a push record without its last-record delimiter".into()),
    }
}

/// The content key and nonce of RFC 8291 §3.4, from our key pair's secret and the other side's
/// public key; `receiver_public` and `sender_public` are named by role, whichever side we are.
fn content_keys(
    ours: &SecretKey,
    theirs: &PublicKey,
    receiver_public: &[u8],
    sender_public: &[u8],
    auth: &[u8; AUTH_BYTES],
    salt: &[u8; SALT_BYTES],
) -> Result<([u8; 16], [u8; 12]), String> {
    let shared = p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), theirs.as_affine());
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(receiver_public);
    key_info.extend_from_slice(sender_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|_| "HKDF length")?;
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut key, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut key).map_err(|_| "HKDF length")?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).map_err(|_| "HKDF length")?;
    Ok((key, nonce))
}

/// The sender's VAPID identity: one P-256 key the host keeps; browsers subscribe with its public
/// key, and push services accept only pushes signed by it.
pub struct Vapid {
    key: SigningKey,
}

impl Vapid {
    pub fn from_secret(secret: &[u8; SECRET_KEY_BYTES]) -> Result<Vapid, String> {
        Ok(Vapid { key: SigningKey::from_slice(secret).map_err(|_| "a VAPID key out of range")? })
    }

    /// The public key browsers subscribe with (`applicationServerKey`), base64url.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(public_bytes(&PublicKey::from(self.key.verifying_key())))
    }

    /// The `Authorization` header for a push to `endpoint` at `now_secs` (Unix time): a JWT
    /// (ES256) naming the endpoint's origin, an expiry and `subject` (a `mailto:` or URL).
    pub fn authorization(&self, endpoint: &str, now_secs: u64, subject: &str) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience(endpoint)?,
            "exp": now_secs + VAPID_VALID_SECS,
            "sub": subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature: Signature = self.key.sign(signed.as_bytes());
        let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(format!("vapid t={token}, k={}", self.public_key()))
    }
}

/// The public key (uncompressed point) of a P-256 private key: what a browser's subscription
/// gives as `p256dh` for the key it keeps.
pub fn public_key_of(secret: &[u8; SECRET_KEY_BYTES]) -> Result<[u8; PUBLIC_KEY_BYTES], String> {
    let secret = SecretKey::from_slice(secret).map_err(|_| "a key out of range")?;
    Ok(public_bytes(&secret.public_key()))
}

fn public_bytes(key: &PublicKey) -> [u8; PUBLIC_KEY_BYTES] {
    let point = key.to_encoded_point(false);
    let mut out = [0u8; PUBLIC_KEY_BYTES];
    out.copy_from_slice(point.as_bytes());
    out
}

/// base64url without padding (what browsers give and push services take).
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| "not base64url".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8291, Appendix A.
    const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const SENDER_SECRET: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const RECEIVER_SECRET: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const RECEIVER_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn array<const N: usize>(text: &str) -> [u8; N] {
        decode(text).expect("base64url").try_into().expect("length")
    }

    #[test]
    fn the_rfc_8291_example_is_reproduced_and_opened_byte_for_byte() {
        let subscription =
            Subscription::parse("https://push.example.net/p/JzLQ3raZJfFBR0aqvOMsLrt54w4rJUsV", RECEIVER_PUBLIC, AUTH)
                .expect("the RFC's subscription");
        let body = encrypt(&subscription, PLAINTEXT, array(SALT), array(SENDER_SECRET)).expect("encrypt");
        assert_eq!(encode(&body), BODY);
        let opened = decrypt(&array(RECEIVER_SECRET), &array(AUTH), &decode(BODY).expect("body")).expect("decrypt");
        assert_eq!(opened, PLAINTEXT);
        // Any changed byte, or another auth secret, opens nothing.
        let mut altered = body.clone();
        *altered.last_mut().expect("byte") ^= 1;
        assert!(decrypt(&array(RECEIVER_SECRET), &array(AUTH), &altered).is_err());
        assert!(decrypt(&array(RECEIVER_SECRET), &[0; AUTH_BYTES], &body).is_err());
        assert!(decrypt(&array(RECEIVER_SECRET), &array(AUTH), &body[..20]).is_err());
    }

    #[test]
    fn a_vapid_token_names_the_endpoints_origin_and_verifies_with_its_key() {
        use p256::ecdsa::signature::Verifier;
        use p256::ecdsa::VerifyingKey;
        let vapid = Vapid::from_secret(&[7; SECRET_KEY_BYTES]).expect("key");
        let header = vapid
            .authorization("https://push.example.net:8443/send/abc?x=1", 1_000, "mailto:host@example")
            .expect("jwt");
        let (token, key) = header.strip_prefix("vapid t=").and_then(|h| h.split_once(", k=")).expect("shape");
        assert_eq!(key, vapid.public_key());
        let (signed, signature) = token.rsplit_once('.').expect("signature");
        let claims: serde_json::Value =
            serde_json::from_slice(&decode(signed.split('.').nth(1).expect("claims")).expect("b64")).expect("json");
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 1_000 + VAPID_VALID_SECS);
        let verifying = VerifyingKey::from_sec1_bytes(&decode(key).expect("key")).expect("point");
        let signature = Signature::from_slice(&decode(signature).expect("sig")).expect("r||s");
        assert!(verifying.verify(signed.as_bytes(), &signature).is_ok());
    }

    #[test]
    fn subscriptions_from_clients_are_checked() {
        assert!(Subscription::parse("http://127.0.0.1:9/p", RECEIVER_PUBLIC, AUTH).is_ok());
        assert!(Subscription::parse("http://push.example.net/p", RECEIVER_PUBLIC, AUTH).is_err(), "plain http away");
        assert!(Subscription::parse("https://user@push.example.net/p", RECEIVER_PUBLIC, AUTH).is_err());
        assert!(Subscription::parse("file:///etc/passwd", RECEIVER_PUBLIC, AUTH).is_err());
        assert!(Subscription::parse("https://push.example.net/p", AUTH, AUTH).is_err(), "not a point");
        assert!(Subscription::parse("https://push.example.net/p", RECEIVER_PUBLIC, SALT).is_ok());
        assert!(Subscription::parse("https://push.example.net/p", RECEIVER_PUBLIC, "AAAA").is_err());
        let mut off_curve = decode(RECEIVER_PUBLIC).expect("key");
        off_curve[64] ^= 1;
        assert!(Subscription::parse("https://push.example.net/p", &encode(&off_curve), AUTH).is_err());
    }
}
