//! The Tether web app: open an invite link (`RELAY/#HOSTID.SECRET`) and you are in the host's
//! workspace; open `RELAY/#HOSTID` and the page proves this browser's device credential if the
//! host remembers it, else asks for the host's password; open the relay itself and you see the
//! hosts this browser knows. The secret lives in the URL fragment, which browsers never send to
//! the relay, and is used for SRP in WASM by the same protocol crate the native CLI uses. Several
//! hosts may be open at once, each its own workspace and connection (`Shown`).

mod browser;
mod codemirror;
mod device;
mod direct;
mod download;
mod editor;
mod files;
mod hosts;
mod input;
mod keybar;
mod link;
mod notify;
mod read;
mod terminal;
mod timer;
mod typeahead;
mod upload;
mod workspace;
mod xterm;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tether_protocol::identity::{HostAddress, HostRef};
use wasm_bindgen::prelude::*;
use yew::prelude::*;

use crate::workspace::Workspace;

/// What the address bar asks for.
#[derive(Debug, Clone, PartialEq)]
enum Screen {
    Hosts,
    Host(OpenHost),
    Bad(String),
}

/// A host open in this page: its own workspace and connection.
#[derive(Debug, Clone, PartialEq)]
struct OpenHost {
    address: HostAddress,
    /// An invite's secret, when it was opened with one (or this tab still has it).
    secret: Option<String>,
}

impl OpenHost {
    fn id(&self) -> &str {
        &self.address.host_id
    }
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
            Ok(HostRef::Invite(invite)) => {
                Screen::Host(OpenHost { address: invite.address(), secret: Some(invite.secret) })
            }
            Ok(link) => {
                let address = link.address();
                let secret = hosts::remembered_secret(&address.host_id);
                Screen::Host(OpenHost { address, secret })
            }
            Err(e) => Screen::Bad(e),
        }
    }
}

/// The page: the hosts open in it (each its own workspace and connection, kept while another is
/// shown), which is in front (`None`: the list of hosts this browser knows), side by side or
/// one at a time.
///
/// Invariants:
/// - Opening or switching hosts from inside the page never goes through `hashchange`: the
///   address bar is set with `replaceState`. A `hashchange` comes from outside (a link, another
///   window, the address bar), and one that would bring in another host asks first.
/// - Closing a host's tab is the only thing that ends its connection here; hiding it does not.
#[derive(Debug, Clone, PartialEq, Default)]
struct Shown {
    open: Vec<OpenHost>,
    front: Option<String>,
    side_by_side: bool,
    bad: Option<String>,
}

impl Shown {
    fn from_screen(screen: Screen) -> Shown {
        match screen {
            Screen::Hosts => Shown::default(),
            Screen::Host(host) => Shown { front: Some(host.id().to_owned()), open: vec![host], ..Shown::default() },
            Screen::Bad(why) => Shown { bad: Some(why), ..Shown::default() },
        }
    }

    /// Open `host` (or bring it to the front; a new secret for it makes a new workspace).
    fn bring(&mut self, host: OpenHost) {
        self.bad = None;
        self.front = Some(host.id().to_owned());
        match self.open.iter_mut().find(|h| h.id() == host.id()) {
            Some(open) if host.secret.is_some() => *open = host,
            Some(_) => {}
            None => self.open.push(host),
        }
    }

    fn close(&mut self, host_id: &str) {
        let at = self.open.iter().position(|h| h.id() == host_id);
        self.open.retain(|h| h.id() != host_id);
        if self.front.as_deref() == Some(host_id) {
            self.front =
                at.and_then(|i| self.open.get(i.min(self.open.len().saturating_sub(1)))).map(|h| h.id().to_owned());
        }
        if self.open.len() < 2 {
            self.side_by_side = false;
        }
    }

    fn front_host(&self) -> Option<&OpenHost> {
        self.open.iter().find(|h| Some(h.id()) == self.front.as_deref())
    }
}

/// Show `host_id` (or nothing) in the address bar without a `hashchange`.
fn set_address(host_id: Option<&str>) {
    if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
        let url = match host_id {
            Some(id) => format!("#{id}"),
            None => web_sys::window().and_then(|w| w.location().pathname().ok()).unwrap_or_else(|| "/".to_owned()),
        };
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&url));
    }
}

#[function_component(App)]
fn app() -> Html {
    let shown = use_state(|| Shown::from_screen(Screen::current()));
    // The same, for the hash handler (never a stale state handle).
    let latest = use_memo((), |_| RefCell::new((*shown).clone()));
    let names = use_state(HashMap::<String, String>::new);
    // Hosts whose workspace has an editor with unsaved text: closing one asks first.
    let unsaved = use_mut_ref(std::collections::HashSet::<String>::new);
    let online = use_state(HashMap::<String, bool>::new);
    let update = {
        let (shown, latest) = (shown.clone(), latest.clone());
        Rc::new(move |change: &dyn Fn(&mut Shown)| {
            let mut next = latest.borrow().clone();
            change(&mut next);
            *latest.borrow_mut() = next.clone();
            shown.set(next);
        })
    };
    {
        let update = update.clone();
        let latest = latest.clone();
        use_effect_with((), move |_| {
            let on_hash = Closure::<dyn FnMut()>::new(move || {
                let next = Screen::current();
                let held = latest.borrow().clone();
                let front = held.front_host().cloned();
                // Another page (one that opened this tab, a link) may change the fragment: no
                // other host comes in unasked.
                let question = match (&front, &next) {
                    (Some(was), Screen::Host(host))
                        if was.id() != host.id() && !held.open.iter().any(|h| h.id() == host.id()) =>
                    {
                        Some(format!("Open host {} beside host {}?", host.id(), was.id()))
                    }
                    (Some(was), Screen::Bad(_)) => {
                        Some(format!("Leave host {} for a link that does not work?", was.id()))
                    }
                    _ => None,
                };
                if let Some(question) = question {
                    if !browser::confirm(&question) {
                        // The address as it was (without any secret), and no hashchange for it.
                        set_address(held.front.as_deref());
                        return;
                    }
                }
                match next {
                    Screen::Hosts => update(&|s: &mut Shown| s.front = None),
                    Screen::Host(host) => update(&|s: &mut Shown| s.bring(host.clone())),
                    Screen::Bad(why) => update(&|s: &mut Shown| s.bad = Some(why.clone())),
                }
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
    // Presence of every open host, for the host tabs.
    {
        let online = online.clone();
        let ids: Vec<String> = shown.open.iter().map(|h| h.id().to_owned()).collect();
        use_effect_with(ids, move |ids| {
            let current = Rc::new(RefCell::new(HashMap::new()));
            let watch = hosts::watch_presence(
                ids,
                Callback::from(move |(host, up): (String, bool)| {
                    current.borrow_mut().insert(host, up);
                    online.set(current.borrow().clone());
                }),
            );
            move || drop(watch)
        });
    }
    let open_host = {
        let update = update.clone();
        Callback::from(move |host: hosts::SavedHost| {
            let address = HostAddress { relay: host.relay.clone(), host_id: host.host_id.clone() };
            let secret = hosts::remembered_secret(&host.host_id);
            set_address(Some(&host.host_id));
            update(&|s: &mut Shown| s.bring(OpenHost { address: address.clone(), secret: secret.clone() }));
        })
    };
    let show = |front: Option<String>| {
        let update = update.clone();
        Callback::from(move |_: MouseEvent| {
            set_address(front.as_deref());
            update(&|s: &mut Shown| {
                s.front = front.clone();
                s.bad = None;
            });
        })
    };
    let host_tabs = shown.open.iter().map(|host| {
        let id = host.id().to_owned();
        let name = names.get(&id).cloned().or_else(|| hosts::find(&id).map(|h| h.name)).unwrap_or_else(|| id.clone());
        let presence = match online.get(&id) {
            Some(true) => "online",
            Some(false) => "offline",
            None => "unknown",
        };
        let close = {
            let (update, id, latest, unsaved) = (update.clone(), id.clone(), latest.clone(), unsaved.clone());
            Callback::from(move |e: MouseEvent| {
                e.stop_propagation();
                if unsaved.borrow().contains(&id)
                    && !browser::confirm("An editor on this host has unsaved changes. Close the host anyway?")
                {
                    return;
                }
                unsaved.borrow_mut().remove(&id);
                update(&|s: &mut Shown| s.close(&id));
                set_address(latest.borrow().front.as_deref());
            })
        };
        let front = shown.front.as_deref() == Some(id.as_str());
        html! {
            <span class={classes!("host-tab", front.then_some("front"))} data-host={id.clone()} data-presence={presence}
                title={format!("host id {id} · {presence}")} onclick={show(Some(id.clone()))}>
                <span class={classes!("dot", presence)}></span>
                <span class="name">{ name }</span>
                <button class="close" title="Close this host (its sessions keep running)" onclick={close}>{ "×" }</button>
            </span>
        }
    });
    let toggle_split = {
        let update = update.clone();
        Callback::from(move |_: MouseEvent| update(&|s: &mut Shown| s.side_by_side = !s.side_by_side))
    };
    let hostbar = match shown.open.is_empty() {
        true => Html::default(),
        false => html! {
            <nav class="hostbar" aria-label="Open hosts">
                { for host_tabs }
                <button class={classes!("add-host", shown.front.is_none().then_some("front"))} title="Your hosts: open another"
                    onclick={show(None)}>{ "+ host" }</button>
                if shown.open.len() > 1 {
                    <button class={classes!("split", shown.side_by_side.then_some("on"))} onclick={toggle_split}
                        title="Show the open hosts side by side">{ "side by side" }</button>
                }
            </nav>
        },
    };
    let home = shown.front.is_none() && shown.bad.is_none();
    let panes = shown.open.iter().map(|host| {
        let id = host.id().to_owned();
        let visible =
            !home && shown.bad.is_none() && (shown.side_by_side || shown.front.as_deref() == Some(id.as_str()));
        let on_named = {
            let (names, id) = (names.clone(), id.clone());
            Callback::from(move |name: String| {
                if names.get(&id) != Some(&name) {
                    let mut next = (*names).clone();
                    next.insert(id.clone(), name);
                    names.set(next);
                }
            })
        };
        let on_wanted = {
            let (update, id) = (update.clone(), id.clone());
            Callback::from(move |()| {
                set_address(Some(&id));
                update(&|s: &mut Shown| {
                    s.front = Some(id.clone());
                    s.bad = None;
                });
            })
        };
        let on_unsaved = {
            let (unsaved, id) = (unsaved.clone(), id.clone());
            Callback::from(move |now: bool| {
                match now {
                    true => unsaved.borrow_mut().insert(id.clone()),
                    false => unsaved.borrow_mut().remove(&id),
                };
            })
        };
        html! {
            <div class={classes!("host-pane", (!visible).then_some("hidden"))} data-host={id.clone()} key={id.clone()}>
                // A new secret for a host is a new workspace.
                <Workspace key={format!("{}.{}", id, host.secret.as_deref().unwrap_or(""))}
                    address={host.address.clone()} secret={host.secret.clone()} {on_named} {on_wanted} {on_unsaved}
                    front={shown.front.as_deref() == Some(id.as_str())} />
            </div>
        }
    });
    // On the host list, the browser's tab is the app's (a host's workspace names it otherwise).
    use_effect_with(home, |home| {
        if let (true, Some(document)) = (*home, web_sys::window().and_then(|w| w.document())) {
            document.set_title("Tether");
        }
    });
    html! {
        <main class={classes!("app", home.then_some("home"))}>
            { hostbar }
            if home {
                <header class="bar"><span class="brand">{ "Tether" }</span><span class="status">{ "your hosts" }</span></header>
                <hosts::HostList on_open={open_host} />
            }
            if let Some(why) = &shown.bad {
                <header class="bar"><a class="brand" href="#">{ "Tether" }</a></header>
                <p class="error" role="alert">{ format!("This link does not work: {why}") }</p>
            }
            <div class={classes!("host-panes", shown.side_by_side.then_some("side-by-side"))}>{ for panes }</div>
        </main>
    }
}

fn main() {
    // The same build runs the page and its link workers (`link::worker`).
    if link::worker::is_worker() {
        return link::worker::run();
    }
    download::register_worker();
    yew::Renderer::<App>::new().render();
}
