//! The workspace's smaller parts: the status bar (path, round trip, presence), the host menu
//! (the host's remembered devices; remember or forget this browser), the session list, and the
//! password form.

use tether_protocol::api::{DeviceEntry, Request, Response, SessionInfo, SessionStatus};
use wasm_bindgen::JsValue;
use yew::prelude::*;

use crate::link::Status;

#[derive(Properties, PartialEq)]
pub(super) struct StatusProps {
    pub(super) status: Status,
    pub(super) online: Option<bool>,
    pub(super) host_id: String,
    /// The host's name, once known (the id stands in until then).
    pub(super) host_name: Option<String>,
    /// Which path carries the connection, and its round trip once measured.
    pub(super) path: String,
    /// Open or close the host menu.
    pub(super) on_menu: Callback<MouseEvent>,
    /// Whether this host is the one in front (it names the browser's tab).
    pub(super) front: bool,
    /// This page may only watch.
    pub(super) read_only: bool,
    /// Sessions waiting for input (counted in the browser tab's title).
    pub(super) waiting: usize,
    /// Notification permission (`notify::permission`), and asking for it.
    pub(super) notify: &'static str,
    pub(super) on_notify: Callback<MouseEvent>,
}

#[function_component(StatusBar)]
pub(super) fn status_bar(props: &StatusProps) -> Html {
    let (text, class) = match &props.status {
        Status::Connecting => ("connecting…".to_owned(), "connecting"),
        Status::Connected => (format!("connected {}", props.path), "connected"),
        Status::Reconnecting { in_ms, why } => {
            let offline = if props.online == Some(false) { "host offline; " } else { "" };
            (format!("{offline}reconnecting in {:.1}s ({why})", f64::from(*in_ms) / 1000.0), "reconnecting")
        }
        Status::Failed(message) => (message.clone(), "failed"),
    };
    let presence = match props.online {
        Some(true) => "online",
        Some(false) => "offline",
        None => "",
    };
    // The browser tab says which host too (the one in front, when several are open).
    if let Some(document) = web_sys::window().and_then(|w| w.document()).filter(|_| props.front) {
        let title = props.host_name.as_deref().unwrap_or(&props.host_id);
        match props.waiting {
            0 => document.set_title(&format!("{title} — Tether")),
            n => document.set_title(&format!("({n}) {title} — Tether")),
        }
    }
    html! {
           <header class="bar">
               <a class="brand" href="#">{ "Tether" }</a>
               <span class="host-name" title={format!("host id {}", props.host_id)}>
                   { props.host_name.as_deref().unwrap_or(&props.host_id) }
               </span>
               <span class={classes!("presence", presence)}>{ presence }</span>
               if props.read_only {
                   <span class="view-only" title="A read-only invite: you can watch sessions, not type into them">{ "view only" }</span>
               }
               <span class={classes!("status", class)} id="status" role="status">{ text }</span>
               if !props.read_only {
                   <crate::typeahead::TypeaheadToggle />
               }
    {
                   match props.notify {
                       "default" => html! {
                           <button class="notify-button" onclick={props.on_notify.clone()}
                               title="Notify me when a session waits for input or ends while I look elsewhere">{ "🔔" }</button>
                       },
                       "granted" => html! { <span class="notify-on" title="Notifications on: a session that needs you, while you look elsewhere">{ "🔔" }</span> },
                       "denied" => html! { <span class="notify-off" title="Notifications are blocked for this site (the browser's site settings)">{ "🔕" }</span> },
                       _ => Html::default(),
                   }
               }
               // (A viewer manages nothing: no devices to see, nothing to remember.)
               if !props.read_only {
                   <button class="host-menu-button" title="Host menu: devices, remember or forget this browser"
                       onclick={props.on_menu.clone()}>{ "⋯" }</button>
               }
           </header>
       }
}

#[derive(Properties, PartialEq)]
pub(super) struct MenuProps {
    pub(super) link: crate::link::Link,
    pub(super) host_id: String,
    /// The connection's generation: the list is asked for again on each.
    pub(super) generation: u64,
    /// The device this page came in as, if it did.
    pub(super) this_device: Option<String>,
    /// Whether "Remember this browser" may be offered.
    pub(super) may_remember: bool,
    pub(super) on_remember: Callback<()>,
}

/// The host menu: the devices the host remembers (this browser marked), and forgetting or
/// remembering this browser.
#[function_component(HostMenu)]
pub(super) fn host_menu(props: &MenuProps) -> Html {
    let devices = use_state(|| None::<Result<Vec<DeviceEntry>, String>>);
    {
        let (devices, link) = (devices.clone(), props.link.clone());
        use_effect_with(props.generation, move |generation| {
            // Not connected (generation 0): nothing to ask, and no error to show for it; the
            // status bar says why, and the next connection asks again.
            if *generation == 0 {
                return devices.set(None);
            }
            wasm_bindgen_futures::spawn_local(async move {
                devices.set(Some(match link.call(&Request::ListDevices, Vec::new()).await {
                    Ok((Response::Devices { devices }, _)) => Ok(devices),
                    Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
                    Err(why) => Err(why),
                }));
            });
        });
    }
    let forget = props.this_device.clone().map(|device| {
        let (link, host_id, devices) = (props.link.clone(), props.host_id.clone(), devices.clone());
        Callback::from(move |_: MouseEvent| {
            if !crate::browser::confirm(
                "Forget this browser on this host? Next time it needs an invite or the password.",
            ) {
                return;
            }
            crate::hosts::update(&host_id, |h| h.device = None);
            let (link, device, devices) = (link.clone(), device.clone(), devices.clone());
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(why) = link.call(&Request::ForgetDevice { device }, Vec::new()).await {
                    devices.set(Some(Err(why)));
                }
            });
        })
    });
    let list = match &*devices {
        None if props.generation == 0 => html! { <p class="note">{ "not connected" }</p> },
        None => html! { <p class="note">{ "asking the host…" }</p> },
        Some(Err(why)) => html! { <p class="error" role="alert">{ why }</p> },
        Some(Ok(list)) if list.is_empty() => html! { <p class="note">{ "No remembered devices." }</p> },
        Some(Ok(list)) => html! {
            <ul class="devices">
                { for list.iter().map(|d| {
                    let this = props.this_device.as_deref() == Some(d.id.as_str());
                    let seen = match d.connected {
                        0 => format!("last seen {}", local_time(d.last_seen)),
                        _ => "connected now".to_owned(),
                    };
                    html! {
                        <li class={classes!("device", this.then_some("this"))} data-device={d.id.clone()}>
                            <span class="name">{ &d.name }</span>
                            if this { <span class="badge">{ "this browser" }</span> }
                            <span class="seen">{ seen }</span>
                            <span class="via" title={format!("{} · remembered {}", d.id, local_time(d.created_at))}>
                                { format!("via {}", d.via) }
                            </span>
                        </li>
                    }
                }) }
            </ul>
        },
    };
    let remember = {
        let on_remember = props.on_remember.clone();
        Callback::from(move |_: MouseEvent| on_remember.emit(()))
    };
    let push_state = use_state(|| None::<Result<(), String>>);
    let subscribe = {
        let (link, push_state) = (props.link.clone(), push_state.clone());
        Callback::from(move |_: MouseEvent| {
            let (link, push_state) = (link.clone(), push_state.clone());
            wasm_bindgen_futures::spawn_local(async move {
                push_state.set(Some(crate::device::subscribe(&link).await));
            });
        })
    };
    html! {
        <div class="host-menu" role="menu">
            <h3>{ "Devices this host remembers" }</h3>
            { list }
            <div class="actions">
                if let Some(forget) = forget {
                    <button class="forget" onclick={forget}>{ "Forget this browser" }</button>
                }
                if props.may_remember {
                    <button class="remember-this" onclick={remember}>{ "Remember this browser" }</button>
                }
                if props.this_device.is_some() {
                    <button class="push-this" onclick={subscribe}
                        title="The host pushes a notice here when a session that notifies (tether notify on) waits or ends, even with no page open">
                        { "Push notifications to this browser" }</button>
                }
            </div>
            { match &*push_state {
                Some(Ok(())) => html! { <p class="note">{ "Subscribed: this browser hears from the host even with no page open." }</p> },
                Some(Err(why)) => html! { <p class="error" role="alert">{ why }</p> },
                None => Html::default(),
            } }
        </div>
    }
}

fn local_time(ms: u64) -> String {
    js_sys::Date::new(&JsValue::from_f64(ms as f64)).to_locale_string("default", &JsValue::UNDEFINED).into()
}

#[derive(Properties, PartialEq)]
pub(super) struct ListProps {
    pub(super) sessions: Vec<SessionInfo>,
    pub(super) on_open: Callback<String>,
    pub(super) on_stop: Callback<String>,
    pub(super) on_new: Callback<MouseEvent>,
    pub(super) connected: bool,
    /// View only: nothing to start or stop.
    pub(super) read_only: bool,
}

#[function_component(SessionList)]
pub(super) fn session_list(props: &ListProps) -> Html {
    let rows = props.sessions.iter().map(|s| {
        let live = matches!(s.status, SessionStatus::Running | SessionStatus::Created | SessionStatus::Stopping);
        let open = {
            let (on_open, id) = (props.on_open.clone(), s.id.clone());
            Callback::from(move |_: MouseEvent| on_open.emit(id.clone()))
        };
        let stop = {
            let (on_stop, id) = (props.on_stop.clone(), s.id.clone());
            Callback::from(move |_: MouseEvent| on_stop.emit(id.clone()))
        };
        let created = js_sys::Date::new(&JsValue::from_f64(s.created_at as f64)).to_locale_string("default", &JsValue::UNDEFINED);
        html! {
            <li class={classes!("session", s.status.as_str())} data-session={s.id.clone()}>
                <button class="open" onclick={open} title={s.command.join(" ")}>
                    <span class="title">{ &s.title }</span>
                    if s.waiting_for_input { <span class="badge" title={s.input_reason.clone()}>{ "input" }</span> }
                    <span class="command">{ s.command.join(" ") }</span>
                    <span class="meta">{ format!("{} · {} · {}", s.id, s.status.as_str(), String::from(created)) }</span>
                </button>
                if live && !props.read_only {
                    <button class="stop" onclick={stop} title="Stop (SIGTERM, then SIGKILL)">{ "Stop" }</button>
                }
            </li>
        }
    });
    html! {
        <aside class="sessions">
            if !props.read_only {
                <button class="new" onclick={props.on_new.clone()} disabled={!props.connected}>{ "New shell" }</button>
            }
            <ul>{ for rows }</ul>
        </aside>
    }
}

#[derive(Properties, PartialEq)]
pub(super) struct PasswordProps {
    pub(super) host_id: String,
    pub(super) on_submit: Callback<String>,
    /// Why the last attempt failed.
    pub(super) error: Option<String>,
}

#[function_component(PasswordForm)]
pub(super) fn password_form(props: &PasswordProps) -> Html {
    let input = use_node_ref();
    let submit = {
        let (input, on_submit) = (input.clone(), props.on_submit.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some(field) = input.cast::<web_sys::HtmlInputElement>() {
                on_submit.emit(field.value());
            }
        })
    };
    html! {
        <form class="password" onsubmit={submit}>
            <h2>{ "Password" }</h2>
            <p>{ "This link has no secret. Enter the host's password (" }<code>{ "tether passwd" }</code>{ ")." }</p>
            <p class="host-id">{ &props.host_id }</p>
            if let Some(error) = &props.error { <p class="error" role="alert">{ error }</p> }
            <input ref={input} type="password" autocomplete="current-password" autofocus=true />
            <button type="submit">{ "Connect" }</button>
        </form>
    }
}
