//! A host's workspace: authenticate (invite secret, this browser's device credential, or the
//! password), then the session list, the tabs (Files, terminals, editors), the key bar, and the
//! connection status, always visible; the host menu (devices, remember or forget this browser).
//! Closing an editor tab with unsaved text, or the page while one has some, asks first.
//!
//! Invariants:
//! - A workspace owns its host's connection and nothing else's: several may be open in one page
//!   (`main.rs`), and one losing its host never touches another.
//! - It offers to remember this browser only when the host says it may (a lasting way in, never
//!   a share), once per host; an explicit invite link wins over a remembered device.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use tether_protocol::api::{Request, Response, SessionInfo, SessionStatus};
use tether_protocol::attention::Attention;
use tether_protocol::handshake::PASSWORD_IDENTITY;
use tether_protocol::identity::{invite_identity, HostAddress};
use wasm_bindgen::prelude::*;
use yew::prelude::*;

use crate::editor::EditorPane;
use crate::files::FilesPane;
use crate::hosts;
use crate::keybar::KeyBar;
use crate::link::{Link, Status};
use crate::terminal::TerminalPane;

mod parts;
use parts::{HostMenu, PasswordForm, SessionList, StatusBar};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub address: HostAddress,
    /// The invite's secret, when the page was opened with one (or this tab still has it).
    pub secret: Option<String>,
    /// Hears the host's name once it said it.
    #[prop_or_default]
    pub on_named: Callback<String>,
    /// In front (of several open hosts): the browser's tab is named after it.
    #[prop_or(true)]
    pub front: bool,
    /// A notification of this host's was clicked: bring it to the front.
    #[prop_or_default]
    pub on_wanted: Callback<()>,
    /// Hears whether any of its editors has unsaved text (closing the host asks first).
    #[prop_or_default]
    pub on_unsaved: Callback<bool>,
}

/// How this page proves itself to the host.
#[derive(Clone, PartialEq)]
struct Credential {
    identity: String,
    secret: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// An invite's secret, kept for this tab.
    Invite,
    /// Derived from this browser's device key, kept nowhere.
    Device,
    /// Typed, kept nowhere.
    Password,
}

/// The "remember this browser?" question, and how answering it went.
#[derive(Clone, PartialEq)]
enum Remember {
    Hidden,
    Asking,
    Working,
    Done,
    Failed(String),
}

#[function_component(Workspace)]
pub fn workspace(props: &Props) -> Html {
    let credential = use_state(|| {
        props.secret.clone().map(|secret| Credential { identity: invite_identity(&secret), secret, kind: Kind::Invite })
    });
    // No invite: this browser's device credential, when the host remembers it (derived, async).
    let device = use_state(|| match props.secret {
        Some(_) => None,
        None => hosts::find(&props.address.host_id).and_then(|h| h.device),
    });
    {
        let (credential, device, host_id) = (credential.clone(), device.clone(), props.address.host_id.clone());
        use_effect_with((), move |_| {
            if let (None, Some(identity)) = ((*credential).clone(), (*device).clone()) {
                wasm_bindgen_futures::spawn_local(async move {
                    match crate::device::secret(&host_id, &identity, false).await {
                        Ok(Some(secret)) => credential.set(Some(Credential { identity, secret, kind: Kind::Device })),
                        // The key is gone (site data cleared): the device cannot be proved.
                        _ => {
                            hosts::update(&host_id, |h| h.device = None);
                            device.set(None);
                        }
                    }
                });
            }
        });
    }
    let remember = use_state(|| Remember::Hidden);
    // Whether the host would remember this browser (it came in with a lasting way in).
    let may_remember = use_state(|| false);
    // View only (a read-only invite): no input, no Files, nothing started or stopped.
    let read_only = use_state(|| false);
    let menu_open = use_state(|| false);
    // Sessions that need the user: notifications while the page is unseen, a count in the title.
    let attention = use_mut_ref(Attention::default);
    let waiting = use_state(|| 0usize);
    let notify_state = use_state(crate::notify::permission);
    let status = use_state(|| (Status::Connecting, 0u64));
    let link = use_state(|| None::<Link>);
    let sessions = use_state(Vec::<SessionInfo>::new);
    let tabs = use_state(Vec::<String>::new);
    let active = use_state(|| None::<String>);
    let online = use_state(|| None::<bool>);
    // What the header calls the host: its name as last heard (this visit or one before).
    let host_name = {
        let host_id = props.address.host_id.clone();
        use_state(move || hosts::load().into_iter().find(|h| h.host_id == host_id).map(|h| h.name))
    };
    let ctrl_latch = use_memo((), |_| Cell::new(false));
    let keys = use_memo((), |_| RefCell::new(None::<Callback<tether_protocol::input::Key>>));
    // Editor tabs (by path) whose text differs from their file.
    let dirty = use_mut_ref(HashSet::<String>::new);
    let redraw = use_force_update();
    let unsaved = !dirty.borrow().is_empty();
    {
        let on_unsaved = props.on_unsaved.clone();
        use_effect_with(unsaved, move |unsaved| {
            on_unsaved.emit(*unsaved);
            let guard = unsaved.then(LeaveGuard::new);
            move || drop(guard)
        });
    }

    // Connect once we know how to prove ourselves; close when leaving.
    {
        let (status, link, address) = (status.clone(), link.clone(), props.address.clone());
        use_effect_with((*credential).clone(), move |credential| {
            let opened = credential.as_ref().map(|c| {
                let on_status = Callback::from(move |update: (Status, u64)| status.set(update));
                Link::open(address, c.identity.clone(), c.secret.as_bytes().to_vec(), on_status)
            });
            link.set(opened.clone());
            let listeners = opened.as_ref().map(page_listeners);
            move || {
                drop(listeners);
                if let Some(link) = opened {
                    link.close();
                }
            }
        });
    }

    // Presence of this host, to say "offline" rather than just "reconnecting".
    {
        let online = online.clone();
        use_effect_with(props.address.host_id.clone(), move |host_id| {
            let watch = hosts::watch_presence(
                std::slice::from_ref(host_id),
                Callback::from(move |(_, up): (String, bool)| online.set(Some(up))),
            );
            move || drop(watch)
        });
    }

    // The host came back online: redial now rather than at the end of the back-off.
    {
        let link = (*link).clone();
        use_effect_with(*online, move |online| {
            if let (Some(true), Some(link)) = (online, link) {
                link.nudge();
            }
        });
    }

    // Each new connection: remember the host, and (re)open the live session list.
    let generation = match status.0 {
        Status::Connected => status.1,
        _ => 0,
    };
    let open_tab = {
        let (tabs, active) = (tabs.clone(), active.clone());
        Callback::from(move |id: String| {
            if !tabs.contains(&id) {
                let mut next = (*tabs).clone();
                next.push(id.clone());
                tabs.set(next);
            }
            active.set(Some(id));
        })
    };
    {
        let (link, sessions, credential, address, open_tab, host_name) = (
            (*link).clone(),
            sessions.clone(),
            (*credential).clone(),
            props.address.clone(),
            open_tab.clone(),
            host_name.clone(),
        );
        let first_visit = tabs.is_empty();
        let (remember, on_named, may_remember) = (remember.clone(), props.on_named.clone(), may_remember.clone());
        let read_only = read_only.clone();
        let host_id = props.address.host_id.clone();
        use_effect_with(generation, move |generation| {
            if let (true, Some(link)) = (*generation > 0, link) {
                let land = (*generation == 1 && first_visit).then_some(open_tab);
                let named = Callback::from(move |name: String| {
                    on_named.emit(name.clone());
                    host_name.set(Some(name))
                });
                let offer = Callback::from(move |(allowed, viewer): (bool, bool)| {
                    read_only.set(viewer);
                    may_remember.set(allowed);
                    let saved = hosts::find(&host_id);
                    if allowed && saved.is_some_and(|h| h.device.is_none() && !h.asked) {
                        remember.set(Remember::Asking);
                    }
                });
                wasm_bindgen_futures::spawn_local(on_connected(
                    link, sessions, credential, address, land, named, offer,
                ));
            }
        });
    }

    // The session list changed: tell the user what needs them (see `attention`).
    {
        let (attention, waiting, open_tab, on_wanted) =
            (attention.clone(), waiting.clone(), open_tab.clone(), props.on_wanted.clone());
        let (host_id, host) = (props.address.host_id.clone(), (*host_name).clone());
        use_effect_with((*sessions).clone(), move |list| {
            let alerts = attention.borrow_mut().update(list);
            waiting.set(attention.borrow().waiting());
            let host = host.unwrap_or_else(|| host_id.clone());
            for alert in alerts.into_iter().filter(|_| crate::notify::page_unseen()) {
                let (open_tab, on_wanted, session) = (open_tab.clone(), on_wanted.clone(), alert.session.clone());
                crate::notify::show(
                    &format!("{host}: {}", alert.describe()),
                    "Tether — click to open it",
                    &format!("{host_id}/{}", alert.session),
                    move || {
                        on_wanted.emit(());
                        open_tab.emit(session);
                    },
                );
            }
        });
    }
    let ask_notify = {
        let notify_state = notify_state.clone();
        Callback::from(move |_: MouseEvent| {
            let notify_state = notify_state.clone();
            wasm_bindgen_futures::spawn_local(async move { notify_state.set(crate::notify::ask().await) });
        })
    };

    // No secret, or a password that did not work: ask (again).
    let failed = match &status.0 {
        Status::Failed(message) => Some(message.clone()),
        _ => None,
    };
    // A device the host refused at the handshake (forgotten there) is forgotten here too, and
    // the page may ask again once in another way. (One revoked while connected is kept until
    // then, so the next visit hears the host's refusal in words.)
    let ever_connected = use_mut_ref(|| false);
    if generation > 0 {
        *ever_connected.borrow_mut() = true;
    }
    {
        let refused_device = failed.is_some()
            && !*ever_connected.borrow()
            && credential.as_ref().is_some_and(|c| c.kind == Kind::Device);
        let host_id = props.address.host_id.clone();
        use_effect_with(refused_device, move |refused| {
            if *refused {
                hosts::update(&host_id, |h| (h.device, h.asked) = (None, false));
            }
        });
    }
    let asking = match &*credential {
        None if device.is_some() => None,
        None => Some(None),
        Some(c) if c.kind != Kind::Invite && failed.is_some() => Some(failed),
        Some(_) => None,
    };
    if let Some(error) = asking {
        let on_password = {
            let (credential, status) = (credential.clone(), status.clone());
            Callback::from(move |password: String| {
                status.set((Status::Connecting, 0));
                credential.set(Some(Credential {
                    identity: PASSWORD_IDENTITY.to_owned(),
                    secret: password,
                    kind: Kind::Password,
                }))
            })
        };
        return html! { <PasswordForm host_id={props.address.host_id.clone()} on_submit={on_password} {error} /> };
    }

    let close_tab = {
        let (tabs, active, dirty) = (tabs.clone(), active.clone(), dirty.clone());
        Callback::from(move |id: String| {
            if let Some(path) = id.strip_prefix(EDITOR_TAB) {
                if dirty.borrow().contains(path)
                    && !crate::browser::confirm(&format!("{path} has unsaved changes. Close it anyway?"))
                {
                    return;
                }
                dirty.borrow_mut().remove(path);
            }
            let next: Vec<String> = tabs.iter().filter(|t| **t != id).cloned().collect();
            if active.as_deref() == Some(id.as_str()) {
                active.set(next.last().cloned());
            }
            tabs.set(next);
        })
    };
    let new_shell = {
        let (link, open_tab) = ((*link).clone(), open_tab.clone());
        Callback::from(move |_: MouseEvent| {
            let (Some(link), open_tab) = (link.clone(), open_tab.clone()) else { return };
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok((Response::Session { session }, _)) = link.call(&new_shell_request(), Vec::new()).await {
                    open_tab.emit(session.id);
                }
            });
        })
    };
    let stop = {
        let link = (*link).clone();
        Callback::from(move |id: String| {
            if let Some(link) = link.clone() {
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = link.call(&Request::Stop { session: id, grace_ms: 2_000 }, Vec::new()).await;
                });
            }
        })
    };

    let open_files = {
        let open_tab = open_tab.clone();
        Callback::from(move |paths: Vec<String>| {
            for path in paths {
                open_tab.emit(format!("{EDITOR_TAB}{path}"));
            }
        })
    };
    let open_file = {
        let open_files = open_files.clone();
        Callback::from(move |path: String| open_files.emit(vec![path]))
    };
    let on_dirty = {
        let (dirty, redraw) = (dirty.clone(), redraw.clone());
        Callback::from(move |(path, now): (String, bool)| {
            let changed = if now { dirty.borrow_mut().insert(path) } else { dirty.borrow_mut().remove(&path) };
            if changed {
                redraw.force_update();
            }
        })
    };
    let titles: HashMap<&str, &str> = sessions.iter().map(|s| (s.id.as_str(), s.title.as_str())).collect();
    let tab_buttons = tabs.iter().map(|id| {
        let select = {
            let (active, id) = (active.clone(), id.clone());
            Callback::from(move |_: MouseEvent| active.set(Some(id.clone())))
        };
        let close = {
            let (close_tab, id) = (close_tab.clone(), id.clone());
            Callback::from(move |e: MouseEvent| {
                e.stop_propagation();
                close_tab.emit(id.clone())
            })
        };
        let class = classes!("tab", (active.as_deref() == Some(id.as_str())).then_some("active"));
        if let Some(path) = id.strip_prefix(EDITOR_TAB) {
            let unsaved = dirty.borrow().contains(path);
            let name = path.rsplit('/').next().unwrap_or(path);
            return html! {
                <span class={classes!(class, "editor-tab", unsaved.then_some("dirty"))} data-path={path.to_owned()}
                    title={path.to_owned()} onclick={select}>
                    { name }
                    if unsaved { <span class="dirty-marker" title="Unsaved changes">{ "●" }</span> }
                    <button class="close" title="Close the editor" onclick={close}>{ "×" }</button>
                </span>
            };
        }
        html! {
            <span {class} data-session={id.clone()} onclick={select}>
                { titles.get(id.as_str()).copied().unwrap_or(id.as_str()) }
                <button class="close" title="Close the tab (the session keeps running)" onclick={close}>{ "×" }</button>
            </span>
        }
    });
    let files_tab = {
        let active = active.clone();
        let class = classes!("tab", "files-tab", (active.as_deref() == Some(FILES_TAB)).then_some("active"));
        let select = Callback::from(move |_: MouseEvent| active.set(Some(FILES_TAB.to_owned())));
        html! { <span {class} onclick={select}>{ "Files" }</span> }
    };
    let terminal_here = {
        let (link, open_tab) = ((*link).clone(), open_tab.clone());
        Callback::from(move |dir: String| {
            let (Some(link), open_tab) = (link.clone(), open_tab.clone()) else { return };
            wasm_bindgen_futures::spawn_local(async move {
                let request = Request::Start {
                    command: Vec::new(),
                    title: None,
                    cwd: Some(dir),
                    cols: 80,
                    rows: 24,
                    notify: None,
                };
                if let Ok((Response::Session { session }, _)) = link.call(&request, Vec::new()).await {
                    open_tab.emit(session.id);
                }
            });
        })
    };
    let (files_tab, files_pane) = match (&*link, *read_only) {
        (_, true) => (Html::default(), Html::default()),
        (Some(link), false) => (
            files_tab,
            html! {
                <FilesPane link={link.clone()} {generation} active={active.as_deref() == Some(FILES_TAB)}
                    on_terminal_here={terminal_here} on_open_file={open_file} />
            },
        ),
        (None, false) => (files_tab, Html::default()),
    };
    let panes = match &*link {
        Some(link) => tabs
            .iter()
            .map(|id| {
                let active = active.as_deref() == Some(id.as_str());
                match id.strip_prefix(EDITOR_TAB) {
                    Some(path) => html! {
                        <EditorPane key={id.clone()} link={link.clone()} path={path.to_owned()} {generation} {active}
                            on_dirty={on_dirty.clone()} />
                    },
                    None => html! {
                        <TerminalPane key={id.clone()} link={link.clone()} session={id.clone()} {generation} {active}
                            ctrl_latch={Rc::clone(&ctrl_latch)} keys={Rc::clone(&keys)}
                            on_open_files={open_files.clone()} read_only={*read_only} />
                    },
                }
            })
            .collect::<Html>(),
        None => Html::default(),
    };
    let host_label = (*host_name).clone().unwrap_or_else(|| props.address.host_id.clone());
    let toggle_menu = {
        let menu_open = menu_open.clone();
        Callback::from(move |_: MouseEvent| menu_open.set(!*menu_open))
    };
    let remember_bar = remember_bar(&remember, &link, &props.address.host_id, &host_label);
    let this_device = credential.as_ref().filter(|c| c.kind == Kind::Device).map(|c| c.identity.clone());
    let menu = match (&*link, *menu_open) {
        (Some(link), true) => html! {
            <HostMenu link={link.clone()} host_id={props.address.host_id.clone()} {generation}
                this_device={this_device.clone()} may_remember={*may_remember && this_device.is_none()}
                on_remember={{
                    let (remember, menu_open) = (remember.clone(), menu_open.clone());
                    Callback::from(move |()| {
                        menu_open.set(false);
                        remember.set(Remember::Asking)
                    })
                }} />
        },
        _ => Html::default(),
    };
    html! {
        <div class="workspace">
            <StatusBar status={status.0.clone()} online={*online} host_id={props.address.host_id.clone()}
                host_name={(*host_name).clone()} on_menu={toggle_menu} front={props.front} read_only={*read_only}
                waiting={*waiting} notify={*notify_state} on_notify={ask_notify}
                path={link.as_ref().map(Link::path_summary).unwrap_or_default()} />
            { remember_bar }
            { menu }
            <div class="columns">
                <SessionList sessions={(*sessions).clone()} on_open={open_tab} on_stop={stop}
                    on_new={new_shell} connected={generation > 0} read_only={*read_only} />
                <div class="terminals">
                    <div class="tabs">{ files_tab }{ for tab_buttons }</div>
                    { files_pane }
                    { panes }
                    if !*read_only { <KeyBar ctrl_latch={Rc::clone(&ctrl_latch)} keys={Rc::clone(&keys)} /> }
                </div>
            </div>
        </div>
    }
}

/// After authenticating: remember the host (and, for an invite, its secret for this tab only,
/// taking it out of the address bar), offer once to remember this browser there when the host
/// allows it (`offer`), land in a terminal on the first visit (`land`: the newest running
/// session, or a new shell), then follow the session list.
async fn on_connected(
    link: Link,
    sessions: UseStateHandle<Vec<SessionInfo>>,
    credential: Option<Credential>,
    address: HostAddress,
    land: Option<Callback<String>>,
    named: Callback<String>,
    offer: Callback<(bool, bool)>,
) {
    let mut viewer = false;
    if let Ok((Response::HostInfo { name, remember, read_only, .. }, _)) =
        link.call(&Request::HostInfo, Vec::new()).await
    {
        named.emit(name.clone());
        hosts::save(&address.host_id, &address.relay, &name);
        offer.emit((remember, read_only));
        viewer = read_only;
    }
    if let Some(credential) = credential.filter(|c| c.kind == Kind::Invite) {
        hosts::remember_secret(&address.host_id, &credential.secret);
        // Only if the address bar still shows this invite (another host may be in front now).
        let window = web_sys::window();
        let shown = window.as_ref().and_then(|w| w.location().hash().ok()).unwrap_or_default();
        if let (true, Some(history)) = (shown.contains(&credential.secret), window.and_then(|w| w.history().ok())) {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&format!("#{}", address.host_id)));
        }
    }
    if let Some(open_tab) = land {
        let running = Request::List { statuses: vec![SessionStatus::Running], search: None, limit: Some(1) };
        let newest = match link.call(&running, Vec::new()).await {
            Ok((Response::Sessions { sessions }, _)) => sessions.into_iter().next(),
            _ => None,
        };
        let landing = match newest {
            Some(session) => Some(session),
            // A viewer starts nothing: it lands in the list.
            None if viewer => None,
            None => match link.call(&new_shell_request(), Vec::new()).await {
                Ok((Response::Session { session }, _)) => Some(session),
                _ => None,
            },
        };
        if let Some(session) = landing {
            open_tab.emit(session.id);
        }
    }
    let owner = crate::read::json_lines(&link, move |list: Vec<SessionInfo>| sessions.set(list));
    let _ = link.open_stream(&Request::WatchSessions { limit: None }, owner).await;
}

/// The question "Remember this browser on HOST?" (asked once per host), and how it went.
fn remember_bar(remember: &UseStateHandle<Remember>, link: &Option<Link>, host_id: &str, host: &str) -> Html {
    let answer = |yes: bool| {
        let (remember, link, host_id) = (remember.clone(), link.clone(), host_id.to_owned());
        Callback::from(move |_: MouseEvent| {
            hosts::update(&host_id, |h| h.asked = true);
            let Some(link) = link.clone().filter(|_| yes) else {
                remember.set(Remember::Hidden);
                return;
            };
            remember.set(Remember::Working);
            let (remember, host_id) = (remember.clone(), host_id.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match crate::device::remember(&link, &host_id).await {
                    Ok(device) => {
                        hosts::update(&host_id, |h| h.device = Some(device));
                        remember.set(Remember::Done);
                    }
                    Err(why) => remember.set(Remember::Failed(why)),
                }
            });
        })
    };
    let dismiss = {
        let remember = remember.clone();
        Callback::from(move |_: MouseEvent| remember.set(Remember::Hidden))
    };
    let (text, buttons) = match &**remember {
        Remember::Hidden => return Html::default(),
        Remember::Asking => (
            format!(
                "Remember this browser on {host}? Next time it opens from the relay's page with no secret to type."
            ),
            html! { <>
                <button class="yes" onclick={answer(true)}>{ "Remember" }</button>
                <button class="no" onclick={answer(false)}>{ "Not now" }</button>
            </> },
        ),
        Remember::Working => ("Remembering this browser…".to_owned(), Html::default()),
        Remember::Done => (
            format!("This browser is remembered on {host}. The host menu (⋯) lists its devices and can forget it."),
            html! { <button class="no" onclick={dismiss.clone()}>{ "OK" }</button> },
        ),
        Remember::Failed(why) => (
            format!("Could not remember this browser: {why}"),
            html! { <button class="no" onclick={dismiss}>{ "OK" }</button> },
        ),
    };
    let state = match &**remember {
        Remember::Asking => "asking",
        Remember::Working => "working",
        Remember::Done => "done",
        _ => "failed",
    };
    html! {
        <div class="remember" role="dialog" data-state={state}>
            <span class="text">{ text }</span>
            { buttons }
        </div>
    }
}

/// The Files tab's place among the terminal tabs (no session id looks like it).
const FILES_TAB: &str = ":files";
/// An editor tab's id: this, then the file's path.
const EDITOR_TAB: &str = ":edit:";

/// While `unsaved`, leaving or reloading the page asks first (the browser's own dialog).
struct LeaveGuard(Closure<dyn FnMut(web_sys::BeforeUnloadEvent)>);

impl LeaveGuard {
    fn new() -> LeaveGuard {
        let guard = Closure::<dyn FnMut(web_sys::BeforeUnloadEvent)>::new(|e: web_sys::BeforeUnloadEvent| {
            e.prevent_default();
            e.set_return_value("unsaved changes");
        });
        if let Some(window) = web_sys::window() {
            let _ = window.add_event_listener_with_callback("beforeunload", guard.as_ref().unchecked_ref());
        }
        LeaveGuard(guard)
    }
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window.remove_event_listener_with_callback("beforeunload", self.0.as_ref().unchecked_ref());
        }
    }
}

/// The user's shell; its size follows once the tab has attached.
fn new_shell_request() -> Request {
    Request::Start { command: Vec::new(), title: None, cwd: None, cols: 80, rows: 24, notify: None }
}

/// Window listeners that must live as long as the link: back online, and page restored from
/// the back-forward cache (its sockets are dead even if no close event said so).
struct PageListeners {
    online: Closure<dyn FnMut()>,
    pageshow: Closure<dyn FnMut(web_sys::PageTransitionEvent)>,
}

impl Drop for PageListeners {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            let _ = window.remove_event_listener_with_callback("online", self.online.as_ref().unchecked_ref());
            let _ = window.remove_event_listener_with_callback("pageshow", self.pageshow.as_ref().unchecked_ref());
        }
    }
}

fn page_listeners(link: &Link) -> PageListeners {
    let online = {
        let link = link.clone();
        Closure::<dyn FnMut()>::new(move || link.nudge())
    };
    let pageshow = {
        let link = link.clone();
        Closure::<dyn FnMut(web_sys::PageTransitionEvent)>::new(move |e: web_sys::PageTransitionEvent| {
            if e.persisted() {
                link.reconnect_now();
            }
        })
    };
    if let Some(window) = web_sys::window() {
        let _ = window.add_event_listener_with_callback("online", online.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("pageshow", pageshow.as_ref().unchecked_ref());
    }
    PageListeners { online, pageshow }
}
