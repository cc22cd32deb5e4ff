//! The Tether web app: open an invite link (`RELAY/#HOSTID.SECRET`) and you are in the host's
//! workspace; open `RELAY/#HOSTID` and the page asks for the host's password; open the relay
//! itself and you see the hosts this browser knows. The secret lives in the URL fragment, which
//! browsers never send to the relay, and is used for SRP in WASM by the same protocol crate the
//! native CLI uses.

mod browser;
mod codemirror;
mod direct;
mod download;
mod editor;
mod files;
mod hosts;
mod input;
mod keybar;
mod link;
mod read;
mod terminal;
mod timer;
mod upload;
mod workspace;
mod xterm;

use tether_protocol::identity::{HostAddress, HostRef};
use wasm_bindgen::prelude::*;
use yew::prelude::*;

use crate::workspace::Workspace;

/// What the address bar asks for.
#[derive(Debug, Clone, PartialEq)]
enum Screen {
    Hosts,
    Host { address: HostAddress, secret: Option<String> },
    Bad(String),
}

impl Screen {
    fn current() -> Screen {
        let Some(location) = web_sys::window().map(|w| w.location()) else { return Screen::Hosts };
        let hash = location.hash().unwrap_or_default();
        let fragment = hash.trim_start_matches('#');
        if fragment.is_empty() {
            return Screen::Hosts;
        }
        // The page's own origin is the relay: the link was opened from it.
        let origin = location.origin().unwrap_or_default();
        match HostRef::parse(&format!("{origin}/#{fragment}")) {
            Ok(HostRef::Invite(invite)) => Screen::Host { address: invite.address(), secret: Some(invite.secret) },
            Ok(HostRef::Address(address)) => {
                let secret = hosts::remembered_secret(&address.host_id);
                Screen::Host { address, secret }
            }
            Err(e) => Screen::Bad(e),
        }
    }
}

#[function_component(App)]
fn app() -> Html {
    let route = use_state(Screen::current);
    // What is shown, as the hash handler sees it (never a stale state handle).
    let shown = use_mut_ref(Screen::current);
    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let on_hash = Closure::<dyn FnMut()>::new(move || {
                let next = Screen::current();
                let mut held = shown.borrow_mut();
                // Another page (one that opened this tab, a link) may change the fragment: a
                // workspace is never swapped for another host's unasked.
                let question = match (&*held, &next) {
                    (Screen::Host { address: was, .. }, Screen::Host { address, .. })
                        if was.host_id != address.host_id =>
                    {
                        Some((format!("Leave host {} and open host {}?", was.host_id, address.host_id), was))
                    }
                    (Screen::Host { address: was, .. }, Screen::Bad(_)) => {
                        Some((format!("Leave host {} for a link that does not work?", was.host_id), was))
                    }
                    _ => None,
                };
                if let Some((question, was)) = question {
                    if !browser::confirm(&question) {
                        // The address as it was (without its secret), and no hashchange for it.
                        if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
                            let _ =
                                history.replace_state_with_url(&JsValue::NULL, "", Some(&format!("#{}", was.host_id)));
                        }
                        return;
                    }
                }
                *held = next.clone();
                route.set(next);
            });
            if let Some(window) = web_sys::window() {
                let _ = window.add_event_listener_with_callback("hashchange", on_hash.as_ref().unchecked_ref());
            }
            move || {
                if let Some(window) = web_sys::window() {
                    let _ = window.remove_event_listener_with_callback("hashchange", on_hash.as_ref().unchecked_ref());
                }
            }
        });
    }
    let open_host = Callback::from(|host: hosts::SavedHost| {
        if let Some(window) = web_sys::window() {
            let _ = window.location().set_hash(&host.host_id);
        }
    });
    match &*route {
        Screen::Hosts => html! {
            <main class="app home">
                <header class="bar"><span class="brand">{ "Tether" }</span><span class="status">{ "your hosts" }</span></header>
                <hosts::HostList on_open={open_host} />
            </main>
        },
        Screen::Host { address, secret } => html! {
            <main class="app">
                // A new link (another host, or another secret for it) is a new workspace.
                <Workspace key={format!("{}.{}", address.host_id, secret.as_deref().unwrap_or(""))}
                    address={address.clone()} secret={secret.clone()} />
            </main>
        },
        Screen::Bad(why) => html! {
            <main class="app">
                <header class="bar"><a class="brand" href="#">{ "Tether" }</a></header>
                <p class="error" role="alert">{ format!("This link does not work: {why}") }</p>
            </main>
        },
    }
}

fn main() {
    download::register_worker();
    yew::Renderer::<App>::new().render();
}
