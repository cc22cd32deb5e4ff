//! Hosts this browser has reached, kept in `localStorage` (id, relay, name, and the device id
//! when the host remembers this browser — never a secret), and their live presence from the
//! relay.
//!
//! An invite's secret is kept only in `sessionStorage` (this tab, until it closes), so a reload
//! reconnects without it ever being written to disk or left in the address bar. A remembered
//! host needs none: its secret is derived from this browser's device key (`device.rs`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, WebSocket};
use yew::prelude::*;

use crate::link::Timer;

const HOSTS_KEY: &str = "tether.hosts";
const SECRET_KEY_PREFIX: &str = "tether.secret.";
/// Presence is re-watched after this long when the relay dropped the watch.
const PRESENCE_RETRY_MS: u32 = 3_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedHost {
    pub host_id: String,
    pub relay: String,
    pub name: String,
    /// The device this browser is on that host, once it remembered us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Whether the page has asked to remember this browser there (it asks once).
    #[serde(default)]
    pub asked: bool,
}

fn local() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn session() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

pub fn load() -> Vec<SavedHost> {
    local()
        .and_then(|s| s.get_item(HOSTS_KEY).ok().flatten())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn store(hosts: &[SavedHost]) {
    if let (Some(storage), Ok(text)) = (local(), serde_json::to_string(hosts)) {
        let _ = storage.set_item(HOSTS_KEY, &text);
    }
}

/// Remember a host reached (or update its relay and name), keeping what else is known of it.
pub fn save(host_id: &str, relay: &str, name: &str) {
    let mut hosts = load();
    match hosts.iter_mut().find(|h| h.host_id == host_id) {
        Some(existing) => (existing.relay, existing.name) = (relay.to_owned(), name.to_owned()),
        None => hosts.push(SavedHost {
            host_id: host_id.to_owned(),
            relay: relay.to_owned(),
            name: name.to_owned(),
            device: None,
            asked: false,
        }),
    }
    store(&hosts);
}

/// A saved host, if this browser has reached it.
pub fn find(host_id: &str) -> Option<SavedHost> {
    load().into_iter().find(|h| h.host_id == host_id)
}

/// Change what is kept of a saved host.
pub fn update(host_id: &str, change: impl FnOnce(&mut SavedHost)) {
    let mut hosts = load();
    if let Some(host) = hosts.iter_mut().find(|h| h.host_id == host_id) {
        change(host);
        store(&hosts);
    }
}

pub fn remove(host_id: &str) {
    let hosts: Vec<SavedHost> = load().into_iter().filter(|h| h.host_id != host_id).collect();
    store(&hosts);
    forget_secret(host_id);
}

pub fn remember_secret(host_id: &str, secret: &str) {
    if let Some(storage) = session() {
        let _ = storage.set_item(&format!("{SECRET_KEY_PREFIX}{host_id}"), secret);
    }
}

pub fn remembered_secret(host_id: &str) -> Option<String> {
    session()?.get_item(&format!("{SECRET_KEY_PREFIX}{host_id}")).ok()?
}

pub fn forget_secret(host_id: &str) {
    if let Some(storage) = session() {
        let _ = storage.remove_item(&format!("{SECRET_KEY_PREFIX}{host_id}"));
    }
}

/// A live presence watch on the relay this page came from.
pub struct Presence {
    ws: Option<WebSocket>,
    _closures: Vec<JsValue>,
    _retry: Option<Timer>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(ws) = self.ws.take() {
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
    }
}

#[derive(Deserialize)]
struct PresenceMessage {
    host: String,
    online: bool,
}

/// Watch `host_ids`; `on_change` hears (host id, online). The watch is redone if it drops.
pub fn watch_presence(
    host_ids: &[String],
    on_change: Callback<(String, bool)>,
) -> Option<std::rc::Rc<std::cell::RefCell<Presence>>> {
    if host_ids.is_empty() {
        return None;
    }
    let cell = std::rc::Rc::new(std::cell::RefCell::new(Presence { ws: None, _closures: Vec::new(), _retry: None }));
    connect_presence(&cell, host_ids.join(","), on_change);
    Some(cell)
}

fn connect_presence(
    cell: &std::rc::Rc<std::cell::RefCell<Presence>>,
    ids: String,
    on_change: Callback<(String, bool)>,
) {
    let location = web_sys::window().map(|w| w.location());
    let (Some(protocol), Some(host)) =
        (location.as_ref().and_then(|l| l.protocol().ok()), location.as_ref().and_then(|l| l.host().ok()))
    else {
        return;
    };
    let scheme = if protocol == "https:" { "wss" } else { "ws" };
    let Ok(ws) = WebSocket::new(&format!("{scheme}://{host}/ws/presence?hosts={ids}")) else { return };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let on_change = on_change.clone();
        move |event: MessageEvent| {
            let message = event.data().as_string().and_then(|t| serde_json::from_str::<PresenceMessage>(&t).ok());
            if let Some(message) = message {
                on_change.emit((message.host, message.online));
            }
        }
    });
    let weak = std::rc::Rc::downgrade(cell);
    let on_close = Closure::<dyn FnMut()>::new(move || {
        let Some(cell) = weak.upgrade() else { return };
        let (weak, ids, on_change) = (std::rc::Rc::downgrade(&cell), ids.clone(), on_change.clone());
        let retry = Timer::after(PRESENCE_RETRY_MS, move || {
            if let Some(cell) = weak.upgrade() {
                connect_presence(&cell, ids, on_change);
            }
        });
        cell.borrow_mut()._retry = retry;
    });
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut presence = cell.borrow_mut();
    if let Some(old) = presence.ws.replace(ws) {
        old.set_onclose(None);
        let _ = old.close();
    }
    presence._closures = vec![on_message.into_js_value(), on_close.into_js_value()];
}

#[derive(Properties, PartialEq)]
pub struct ListProps {
    pub on_open: Callback<SavedHost>,
}

/// The start page: hosts this browser knows, with presence.
#[function_component(HostList)]
pub fn host_list(props: &ListProps) -> Html {
    let hosts = use_state(load);
    let online = use_state(HashMap::<String, bool>::new);
    {
        let online = online.clone();
        let ids: Vec<String> = hosts.iter().map(|h| h.host_id.clone()).collect();
        use_effect_with(ids, move |ids| {
            let current = std::rc::Rc::new(std::cell::RefCell::new(HashMap::new()));
            let watch = watch_presence(
                ids,
                Callback::from(move |(host, up): (String, bool)| {
                    current.borrow_mut().insert(host, up);
                    online.set(current.borrow().clone());
                }),
            );
            move || drop(watch)
        });
    }
    if hosts.is_empty() {
        return html! {
            <div class="empty">
                <h2>{ "No hosts yet" }</h2>
                <p>{ "Run " }<code>{ "tether pair" }</code>{ " on the machine you want to reach, then open the invite link it prints." }</p>
            </div>
        };
    }
    let rows = hosts.iter().map(|host| {
        let state = match online.get(&host.host_id) {
            Some(true) => "online",
            Some(false) => "offline",
            None => "unknown",
        };
        let open = {
            let (on_open, host) = (props.on_open.clone(), host.clone());
            Callback::from(move |_: MouseEvent| on_open.emit(host.clone()))
        };
        let forget = {
            let (hosts, id) = (hosts.clone(), host.host_id.clone());
            Callback::from(move |_: MouseEvent| {
                remove(&id);
                hosts.set(load());
            })
        };
        html! {
            <li class="host" data-host={host.host_id.clone()} data-presence={state}>
                <span class={classes!("dot", state)} title={state}></span>
                <button class="open" onclick={open}>
                    <span class="name">{ &host.name }</span>
                    <span class="id">{ &host.host_id }</span>
                    if host.device.is_some() { <span class="remembered" title="This browser is remembered there: no secret to type">{ "remembered" }</span> }
                </button>
                <span class="presence">{ state }</span>
                <button class="remove" onclick={forget} title="Forget this host">{ "Remove" }</button>
            </li>
        }
    });
    html! { <ul class="hosts">{ for rows }</ul> }
}
