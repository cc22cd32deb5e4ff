//! This browser as a remembered device of a host (see the agent's `host::devices`).
//!
//! Invariants:
//! - The secret is never stored: it is derived, each time it is needed, from the browser's
//!   non-extractable device key (`keystore.js`, IndexedDB) and a label naming the host and the
//!   device id, so a script can use it only while running on this origin, never carry it away.
//! - The host gets only the SRP verifier, made here; the device id is kept beside the host in
//!   `localStorage` (`hosts.rs`), never a secret.

use tether_protocol::api::{Request, Response};
use tether_protocol::handshake::{Credential, SALT_BYTES};
use tether_protocol::hex;
use tether_protocol::identity::{device_secret_label, DEVICE_ID_BYTES, DEVICE_PREFIX};
use wasm_bindgen::prelude::*;

use crate::link::Link;

#[wasm_bindgen(module = "/src/keystore.js")]
extern "C" {
    #[wasm_bindgen(js_name = deviceSecret, catch)]
    async fn device_secret(label: &str, create: bool) -> Result<JsValue, JsValue>;
}

#[wasm_bindgen(module = "/src/pushsub.js")]
extern "C" {
    #[wasm_bindgen(js_name = subscribePush, catch)]
    async fn subscribe_push(key: &str) -> Result<JsValue, JsValue>;
}

/// Subscribe this (remembered) browser to the host's web pushes: its VAPID key from the host, a
/// subscription from the browser's push service, kept by the host.
pub async fn subscribe(link: &Link) -> Result<(), String> {
    let key = match link.call(&Request::PushKey, Vec::new()).await? {
        (Response::PushKey { key }, _) => key,
        (other, _) => return Err(format!("unexpected answer {other:?}")),
    };
    let json = subscribe_push(&key)
        .await
        .map_err(|e| format!("this browser would not subscribe: {}", js_error(&e)))?
        .as_string()
        .ok_or("no subscription")?;
    #[derive(serde::Deserialize)]
    struct Keys {
        p256dh: String,
        auth: String,
    }
    #[derive(serde::Deserialize)]
    struct Subscribed {
        endpoint: String,
        keys: Keys,
    }
    let subscribed: Subscribed = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    let request = Request::PushSubscribe {
        endpoint: subscribed.endpoint,
        p256dh: subscribed.keys.p256dh,
        auth: subscribed.keys.auth,
    };
    link.call(&request, Vec::new()).await.map(|_| ())
}

/// The secret this browser proves `identity` on `host_id` with (hex); `None` when this browser
/// has no device key any more (its site data was cleared). `create` makes the key if need be.
pub async fn secret(host_id: &str, identity: &str, create: bool) -> Result<Option<String>, String> {
    let bytes = device_secret(&device_secret_label(host_id, identity), create)
        .await
        .map_err(|e| format!("this browser's key store failed: {}", js_error(&e)))?;
    if bytes.is_null() || bytes.is_undefined() {
        return Ok(None);
    }
    Ok(Some(hex::encode(&js_sys::Uint8Array::new(&bytes).to_vec())))
}

/// Ask the host behind `link` to remember this browser; returns the device id it now is.
pub async fn remember(link: &Link, host_id: &str) -> Result<String, String> {
    let crypto = web_sys::window().and_then(|w| w.crypto().ok()).ok_or("this browser has no crypto")?;
    let mut id = [0u8; DEVICE_ID_BYTES];
    let mut salt = [0u8; SALT_BYTES];
    for bytes in [&mut id[..], &mut salt[..]] {
        crypto.get_random_values_with_u8_array(bytes).map_err(|_| "crypto.getRandomValues failed".to_owned())?;
    }
    let identity = format!("{DEVICE_PREFIX}{}", hex::encode(&id));
    let secret = secret(host_id, &identity, true).await?.ok_or("this browser could not make a device key")?;
    let credential = Credential::derive(host_id, &identity, secret.as_bytes(), salt).map_err(|e| e.to_string())?;
    let request = Request::RememberDevice {
        device: identity.clone(),
        name: name(),
        salt: hex::encode(&credential.salt),
        verifier: hex::encode(&credential.verifier),
    };
    match link.call(&request, Vec::new()).await? {
        (Response::Device { .. }, _) => Ok(identity),
        (other, _) => Err(format!("unexpected answer {other:?}")),
    }
}

/// What this browser is, as `tether devices ls` shows it: "Chrome on Linux".
fn name() -> String {
    let agent = web_sys::window().and_then(|w| w.navigator().user_agent().ok()).unwrap_or_default();
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .into_iter()
    .find(|(mark, _)| agent.contains(mark))
    .map_or("A browser", |(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(mark, _)| agent.contains(mark))
    .map_or("", |(_, name)| name);
    match system {
        "" => browser.to_owned(),
        system => format!("{browser} on {system}"),
    }
}

fn js_error(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| js_sys::Reflect::get(e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| "unknown error".to_owned())
}
