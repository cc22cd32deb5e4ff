//! One terminal tab: an xterm.js terminal attached to a session on the host.
//!
//! - Output is written as `Uint8Array`s; flow-control credit goes back to the host only in
//!   xterm.js's write callback, so a page that cannot keep up slows the stream down instead of
//!   piling bytes up or dropping them.
//! - Every byte has a sequence number. After a reconnect the tab re-attaches from the next byte it
//!   has not shown: output produced meanwhile appears once, and the screen is never cleared.
//! - The size is sent only after the first replay has been written, so the replay renders at the
//!   size it was produced in before the program redraws for ours.
//! - The container's `data-seq` is the number of bytes written so far, and `data-ended` is set
//!   when the session has ended: what a test (or a curious user) can check.
//! - The cursor blinks only while nobody types (as in most editors): a blink restarted by a key
//!   asks for a frame in the key's own event, and Chromium then holds the page's other tasks —
//!   the echo among them — until that frame is drawn (measured with real keys: echo p50 9–10 ms
//!   blinking, 3 ms steady).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tether_protocol::api::{Request, Response};
use tether_protocol::input::Key;
use tether_protocol::typeahead::Typeahead;
use wasm_bindgen::prelude::*;
use yew::prelude::*;

use crate::link::{Link, Status, StreamEvent};
use crate::timer::Timer;
use crate::xterm::{FitAddon, SearchAddon, Terminal, WebglAddon};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub link: Link,
    pub session: String,
    /// The link's generation while connected (0 while not): a new one means re-attach.
    pub generation: u64,
    pub active: bool,
    /// Set by the key bar's Ctrl: the next key typed is sent as its control character.
    pub ctrl_latch: Rc<Cell<bool>>,
    /// Where keys from the key bar arrive for the active terminal.
    pub keys: Rc<RefCell<Option<Callback<Key>>>>,
    /// `tether open FILE…` ran in this session: open these (absolute) paths in editors.
    pub on_open_files: Callback<Vec<String>>,
    /// View only (a read-only invite): nothing typed or pasted is sent, the size is never
    /// asked for. (The host refuses both anyway; this keeps the page from offering them.)
    #[prop_or_default]
    pub read_only: bool,
}

/// How long after the last key the cursor blinks again.
const BLINK_AFTER_TYPING_MS: u32 = 1_000;

/// What a tab keeps between renders.
#[derive(Default)]
struct Pane {
    terminal: Option<Terminal>,
    fit: Option<FitAddon>,
    search: Option<SearchAddon>,
    webgl: Option<WebglAddon>,
    /// The next byte of output this tab has not written yet (None before the first attach).
    next_seq: Option<u64>,
    /// The current attach stream.
    stream: Option<u32>,
    /// The current stream of `tether open` requests.
    opens: Option<u32>,
    /// The input count (`Link::inputs_sent`) whose echo was last painted at once.
    echoed_input: u64,
    /// Whether our size has been sent since the last attach.
    sized: bool,
    last_size: (u16, u16),
    ended: bool,
    /// View only: no input, no size sent.
    read_only: bool,
    /// Callbacks xterm.js holds (key handler, input, context loss); dropped after it is disposed.
    callbacks: Vec<JsValue>,
    /// The window's resize listener, removed when the tab goes.
    on_resize: Option<Closure<dyn FnMut()>>,
    /// Where typed and pasted input goes (on the attach stream, in order, big pastes paced).
    input: Option<crate::input::SessionInput>,
    /// Predictive echo: keys typed and not yet echoed, and where they are drawn.
    typeahead: Typeahead,
    overlay: Option<crate::typeahead::Overlay>,
    /// When overdue predictions are given up.
    typeahead_timer: Option<crate::timer::Timer>,
    /// While someone types the cursor holds still; this sets it blinking again.
    blink_again: Option<Timer>,
    _input: Option<crate::xterm::Disposable>,
}

impl Drop for Pane {
    fn drop(&mut self) {
        if let (Some(on_resize), Some(window)) = (self.on_resize.take(), web_sys::window()) {
            let _ = window.remove_event_listener_with_callback("resize", on_resize.as_ref().unchecked_ref());
        }
        if let Some(input) = self._input.take() {
            input.dispose_listener();
        }
        if let Some(webgl) = self.webgl.take() {
            webgl.dispose();
        }
        if let Some(terminal) = self.terminal.take() {
            terminal.dispose();
        }
    }
}

#[function_component(TerminalPane)]
pub fn terminal_pane(props: &Props) -> Html {
    let container = use_node_ref();
    let pane = use_mut_ref(Pane::default);
    let search_text = use_state(String::new);

    // Mount xterm.js once.
    {
        let (container, pane, link, session, ctrl_latch) =
            (container.clone(), pane.clone(), props.link.clone(), props.session.clone(), props.ctrl_latch.clone());
        let read_only = props.read_only;
        use_effect_with(props.session.clone(), move |_| {
            pane.borrow_mut().read_only = read_only;
            if let Some(parent) = container.cast::<web_sys::HtmlElement>() {
                mount(&pane, &parent, &link, &session, ctrl_latch);
            }
            let pane = pane.clone();
            let link = link.clone();
            move || {
                let streams = {
                    let mut pane = pane.borrow_mut();
                    [pane.stream.take(), pane.opens.take()]
                };
                for stream in streams.into_iter().flatten() {
                    link.forget_stream(stream);
                }
                *pane.borrow_mut() = Pane::default();
            }
        });
    }

    // Attach once connected; the link resumes the attach by itself after a lost connection. The
    // `tether open` watch is opened again on every new connection.
    {
        let (pane, link, session, container) =
            (pane.clone(), props.link.clone(), props.session.clone(), container.clone());
        let on_open_files = props.on_open_files.clone();
        use_effect_with(props.generation, move |generation| {
            if *generation > 0 && !pane.borrow().ended {
                if !pane.borrow().read_only {
                    watch_opens(&pane, &link, &session, on_open_files);
                }
                if pane.borrow().stream.is_none() {
                    attach(pane, link, session, container);
                }
            }
        });
    }

    // The active tab gets the key bar's keys, the focus and a fresh fit.
    {
        let (pane, link, session, keys) = (pane.clone(), props.link.clone(), props.session.clone(), props.keys.clone());
        use_effect_with(props.active, move |active| {
            if *active {
                let pane2 = pane.clone();
                *keys.borrow_mut() = Some(Callback::from(move |key: Key| {
                    let terminal = {
                        let pane = pane2.borrow();
                        let cursor_app = pane.terminal.as_ref().is_some_and(Terminal::application_cursor_keys);
                        if let Some(input) = &pane.input {
                            input.write(key.bytes(cursor_app));
                        }
                        pane.terminal.clone()
                    };
                    if let Some(terminal) = terminal {
                        hold_cursor_still(&pane2, &terminal);
                    }
                }));
                refit(&pane, &link, &session);
                if let Some(terminal) = &pane.borrow().terminal {
                    terminal.focus();
                }
            }
        });
    }

    let on_search_input = {
        let search_text = search_text.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(input) = e.target_dyn_into::<web_sys::HtmlInputElement>() {
                search_text.set(input.value());
            }
        })
    };
    let on_search_key = {
        let (pane, search_text) = (pane.clone(), search_text.clone());
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" {
                if let Some(search) = &pane.borrow().search {
                    if e.shift_key() {
                        search.find_previous(&search_text);
                    } else {
                        search.find_next(&search_text);
                    }
                }
            }
        })
    };

    let class = classes!("pane", (!props.active).then_some("hidden"));
    html! {
        <section {class} data-session={props.session.clone()}>
            <div class="pane-tools">
                <input class="search" type="search" placeholder="Search output (Enter, Shift+Enter)"
                    value={(*search_text).clone()} oninput={on_search_input} onkeydown={on_search_key} />
            </div>
            <div class="terminal" ref={container} data-seq="0"></div>
        </section>
    }
}

/// Hear `tether open` run in this session (for as long as the connection lasts).
fn watch_opens(pane: &Rc<RefCell<Pane>>, link: &Link, session: &str, on_open_files: Callback<Vec<String>>) {
    let owner = crate::read::json_lines(link, move |paths: Vec<String>| on_open_files.emit(paths));
    let (pane, link, request) = (pane.clone(), link.clone(), Request::WatchOpens { session: session.to_owned() });
    wasm_bindgen_futures::spawn_local(async move {
        if let Ok((_, stream)) = link.open_stream(&request, owner).await {
            pane.borrow_mut().opens = Some(stream);
        }
    });
}

/// The cursor stops blinking while someone types, and blinks again `BLINK_AFTER_TYPING_MS`
/// after the last key (see the module's notes: a blink restarted per key costs each echo a
/// frame).
fn hold_cursor_still(pane: &Rc<RefCell<Pane>>, terminal: &Terminal) {
    let set_blink = |terminal: &Terminal, on: bool| {
        let _ = js_sys::Reflect::set(&terminal.options(), &"cursorBlink".into(), &on.into());
    };
    if pane.borrow().read_only {
        return; // never blinks
    }
    if pane.borrow().blink_again.is_none() {
        set_blink(terminal, false);
    }
    let (weak, terminal) = (Rc::downgrade(pane), terminal.clone());
    let again = Timer::after(BLINK_AFTER_TYPING_MS, move || {
        if let Some(pane) = weak.upgrade() {
            pane.borrow_mut().blink_again = None;
            set_blink(&terminal, true);
        }
    });
    pane.borrow_mut().blink_again = again;
}

fn mount(pane: &Rc<RefCell<Pane>>, parent: &web_sys::HtmlElement, link: &Link, session: &str, ctrl: Rc<Cell<bool>>) {
    let options = js_sys::Object::new();
    let set = |key: &str, value: JsValue| {
        // Setting a property on a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&options, &key.into(), &value);
    };
    let read_only = pane.borrow().read_only;
    set("cursorBlink", (!read_only).into());
    // xterm.js then emits no data for keys or pastes.
    set("disableStdin", read_only.into());
    set("fontSize", 14.into());
    set("scrollback", 10_000.into());
    let theme = js_sys::Object::new();
    // The page's own background, so the terminal does not look pasted on.
    let _ = js_sys::Reflect::set(&theme, &"background".into(), &"#101418".into());
    set("theme", theme.into());
    let terminal = Terminal::new(&options);
    terminal.open(parent);
    // What is on screen is drawn on a canvas (WebGL); scripts and tests read it through the
    // terminal's buffer API, so the element keeps a reference to its terminal.
    let _ = js_sys::Reflect::set(parent, &"xterm".into(), &terminal);
    let fit = FitAddon::create().ok();
    if let Some(fit) = &fit {
        terminal.load_addon(fit);
        fit.fit();
    }
    if let Ok(search) = SearchAddon::create() {
        terminal.load_addon(&search);
        pane.borrow_mut().search = Some(search);
    }
    if let Ok(links) = crate::xterm::web_links_addon() {
        terminal.load_addon(&links);
    }
    let webgl = load_webgl(&terminal, pane);

    // Ctrl+Shift+C copies the selection and Ctrl+Shift+V pastes (the browser's paste event, which
    // xterm.js takes): as in desktop terminals, since plain Ctrl+C and Ctrl+V belong to programs.
    let copy_from = terminal.clone();
    let key_handler = Closure::<dyn FnMut(web_sys::KeyboardEvent) -> bool>::new(move |e: web_sys::KeyboardEvent| {
        if !(e.ctrl_key() && e.shift_key()) {
            return true;
        }
        match e.key().as_str() {
            "C" | "c" => {
                if e.type_() == "keydown" && copy_from.has_selection() {
                    crate::browser::copy_to_clipboard(&copy_from.get_selection());
                }
                e.prevent_default();
                false
            }
            "V" | "v" => false,
            _ => true,
        }
    });
    terminal.attach_custom_key_event_handler(key_handler.as_ref().unchecked_ref());

    let input = crate::input::SessionInput::new(link.clone());
    pane.borrow_mut().input = Some(input.clone());
    pane.borrow_mut().overlay = crate::typeahead::Overlay::create(parent);
    let (typed_pane, typed_link, typed_terminal) = (pane.clone(), link.clone(), terminal.clone());
    let on_data = Closure::<dyn FnMut(String)>::new(move |data: String| {
        let mut bytes = data.into_bytes();
        if ctrl.replace(false) && bytes.len() == 1 {
            bytes = Key::Ctrl(char::from(bytes[0])).bytes(false);
        }
        // What the key will do is read off the line as it is shown now.
        match typed_terminal.cursor_view().and_then(|view| view.line) {
            Some(line) => typed_pane.borrow_mut().typeahead.typed(&bytes, crate::timer::now_ms(), &line),
            None => typed_pane.borrow_mut().typeahead.reset(),
        }
        input.write(bytes);
        predict(&typed_pane, &typed_link);
        hold_cursor_still(&typed_pane, &typed_terminal);
    });
    let input = terminal.on_data(on_data.as_ref().unchecked_ref());

    let (resize_pane, resize_link, resize_session) = (pane.clone(), link.clone(), session.to_owned());
    let on_resize = Closure::<dyn FnMut()>::new(move || refit(&resize_pane, &resize_link, &resize_session));
    if let Some(window) = web_sys::window() {
        let _ = window.add_event_listener_with_callback("resize", on_resize.as_ref().unchecked_ref());
    }
    let mut pane = pane.borrow_mut();
    pane.callbacks = vec![key_handler.into_js_value(), on_data.into_js_value()];
    pane.on_resize = Some(on_resize);
    pane._input = Some(input);
    pane.terminal = Some(terminal);
    pane.fit = fit;
    pane.webgl = webgl;
}

/// Draw what predictive echo expects over the terminal (or nothing), and set the timer that
/// gives up an echo that does not come.
fn predict(pane: &Rc<RefCell<Pane>>, link: &Link) {
    let round_trip = link.round_trip_ms();
    let mut guard = pane.borrow_mut();
    let pane_ref = &mut *guard;
    let Some(terminal) = pane_ref.terminal.clone() else { return };
    // Nothing typed waits for its echo and nothing is drawn: the common case during output.
    if !pane_ref.typeahead.is_waiting() && !pane_ref.overlay.as_ref().is_some_and(|o| o.shown()) {
        pane_ref.typeahead_timer = None;
        return;
    }
    if !crate::typeahead::enabled() {
        pane_ref.typeahead.reset();
    }
    let view = terminal.cursor_view();
    let prediction = match view.as_ref().and_then(|v| v.line.as_ref()) {
        Some(line) => pane_ref.typeahead.prediction(round_trip, line),
        None => Default::default(),
    };
    let drawn = pane_ref.overlay.as_mut().is_none_or(|o| o.draw(&terminal, view.as_ref(), &prediction));
    if !drawn {
        pane_ref.typeahead.reset();
    }
    let now = crate::timer::now_ms();
    pane_ref.typeahead_timer = pane_ref.typeahead.next_expiry(round_trip).and_then(|at| {
        let (pane, link) = (pane.clone(), link.clone());
        crate::timer::Timer::after(at.saturating_sub(now).min(u64::from(u32::MAX)) as u32, move || {
            pane.borrow_mut().typeahead.expire(crate::timer::now_ms(), link.round_trip_ms());
            predict(&pane, &link);
        })
    });
}

/// The WebGL renderer when the browser has a GPU for it; xterm.js's DOM renderer otherwise — also
/// when WebGL is only emulated in software (SwiftShader, llvmpipe: VMs, headless), where the DOM
/// renderer took a 20 MB `cat` 2.7× faster in our benchmark — and after a GPU context loss.
fn load_webgl(terminal: &Terminal, pane: &Rc<RefCell<Pane>>) -> Option<WebglAddon> {
    if !crate::browser::hardware_webgl2() {
        return None;
    }
    let webgl = WebglAddon::create().ok()?;
    terminal.try_load_addon(&webgl).ok()?;
    let weak = Rc::downgrade(pane);
    let on_loss = Closure::<dyn FnMut()>::new(move || {
        if let Some(pane) = weak.upgrade() {
            if let Some(webgl) = pane.borrow_mut().webgl.take() {
                webgl.dispose();
            }
        }
    });
    let _ = webgl.on_context_loss(on_loss.as_ref().unchecked_ref());
    pane.borrow_mut().callbacks.push(on_loss.into_js_value());
    Some(webgl)
}

/// Fit to the container; tell the host when the size changed (only once the replay is in).
fn refit(pane: &Rc<RefCell<Pane>>, link: &Link, session: &str) {
    let size = {
        let pane = pane.borrow();
        let (Some(terminal), Some(fit)) = (&pane.terminal, &pane.fit) else { return };
        fit.fit();
        (terminal.cols(), terminal.rows())
    };
    let mut pane = pane.borrow_mut();
    if pane.sized && size != pane.last_size && !pane.ended && !pane.read_only {
        pane.last_size = size;
        // The lines reflow: what was predicted on one is not known to hold.
        pane.typeahead.reset();
        if let Some(overlay) = pane.overlay.as_mut() {
            overlay.hide();
        }
        link.send(&Request::Resize { session: session.to_owned(), cols: size.0, rows: size.1 }, Vec::new());
    }
}

/// Send our size for the first time since attaching.
fn send_size(pane: &Rc<RefCell<Pane>>, link: &Link, session: &str) {
    if pane.borrow().sized {
        return;
    }
    pane.borrow_mut().sized = true;
    pane.borrow_mut().last_size = (0, 0);
    refit(pane, link, session);
}

fn attach(pane: Rc<RefCell<Pane>>, link: Link, session: String, container: NodeRef) {
    let from = pane.borrow().next_seq;
    pane.borrow_mut().sized = false;
    let owner = {
        let (pane, link, session) = (pane.clone(), link.clone(), session.clone());
        Callback::from(move |(stream, event): (u32, StreamEvent)| {
            on_stream_event(&pane, &link, &session, &container, stream, event)
        })
    };
    wasm_bindgen_futures::spawn_local(async move {
        let request = Request::Attach { session: session.clone(), from, cols: None, rows: None };
        let Ok((handle, answered)) = link.start_stream(&request, owner.clone()) else { return };
        // Keys typed from now on follow the attach request on its stream.
        let input = pane.borrow().input.clone();
        if let Some(input) = &input {
            input.attached(Some(handle));
        }
        let (answer, replay_from) = match answered.await {
            Ok(Response::Streaming { session: info, from, .. }) => {
                // Nothing to replay: our size can go now.
                (Ok(handle), (from < info.output_bytes).then_some(from))
            }
            Ok(_) => (Err("unexpected answer to attach".to_owned()), None),
            // It ended (perhaps while we were away): what it printed since is in its log. The
            // log starts at byte 0; what this tab already shows is skipped as a duplicate.
            Err(_) if link.status() == Status::Connected => {
                if let Some(input) = &input {
                    input.attached(None);
                }
                match link
                    .open_stream(&Request::Logs { session: session.clone(), follow: false, from: None }, owner)
                    .await
                {
                    Ok((Response::Streaming { .. }, stream)) => (Ok(stream), Some(0)),
                    Ok(_) => (Err("unexpected answer to logs".to_owned()), None),
                    Err(message) => (Err(message), None),
                }
            }
            Err(message) => {
                if let Some(input) = &input {
                    input.attached(None);
                }
                (Err(message), None)
            }
        };
        match answer {
            Ok(stream) => {
                let old = pane.borrow_mut().stream.replace(stream);
                if let Some(old) = old.filter(|old| *old != stream) {
                    link.forget_stream(old);
                }
                if replay_from.is_none() {
                    send_size(&pane, &link, &session);
                }
            }
            Err(message) => {
                if let Some(terminal) = &pane.borrow().terminal {
                    terminal.write_bytes(format!("\r\n\x1b[2m[tether: {message}]\x1b[0m\r\n").as_bytes());
                }
            }
        }
    });
}

fn on_stream_event(
    pane: &Rc<RefCell<Pane>>,
    link: &Link,
    session: &str,
    container: &NodeRef,
    stream: u32,
    event: StreamEvent,
) {
    let Some(terminal) = pane.borrow().terminal.clone() else { return };
    match event {
        StreamEvent::Data { seq, bytes } => {
            let len = bytes.len() as u64;
            let next = pane.borrow().next_seq.unwrap_or(seq);
            let end = seq + len;
            // Bytes this tab already shows (an overlapping replay after a reconnect) are credited
            // and skipped; a gap means the host could not send them: say so.
            let fresh: &[u8] = if end <= next {
                link.consumed(stream, len);
                return;
            } else if seq < next {
                &bytes[(next - seq) as usize..]
            } else {
                if seq > next {
                    terminal.write_bytes(skipped_note(next, seq, session).as_bytes());
                }
                &bytes
            };
            pane.borrow_mut().next_seq = Some(end);
            let (pane, link, session, container) = (pane.clone(), link.clone(), session.to_owned(), container.clone());
            // Output can only be the echo of keys typed before it came.
            let echo_of = pane.borrow().typeahead.is_waiting().then(|| fresh.to_vec());
            let done = Closure::once_into_js(move || {
                // Read against the keys predicted once xterm.js has it (the cursor moved with it).
                let waiting = pane.borrow().typeahead.is_waiting();
                match echo_of {
                    Some(echo_of) => pane.borrow_mut().typeahead.output(&echo_of),
                    // Output from before a key, written after the key's line was read off the
                    // screen: that line may have changed under the prediction.
                    None if waiting => pane.borrow_mut().typeahead.reset(),
                    None => {}
                }
                predict(&pane, &link);
                // The first little output after a key is most likely its echo: painted at once
                // (once per key, so a flood after a command still paints once per frame).
                let inputs = link.inputs_sent();
                let echo = len <= ECHO_BYTES && link.input_within(ECHO_WINDOW_MS);
                if echo && pane.borrow().echoed_input != inputs {
                    pane.borrow_mut().echoed_input = inputs;
                    if let Some(terminal) = &pane.borrow().terminal {
                        terminal.render_now();
                    }
                }
                link.consumed(stream, len);
                mark_first_output();
                if let Some(element) = container.cast::<web_sys::Element>() {
                    let _ = element.set_attribute("data-seq", &end.to_string());
                }
                send_size(&pane, &link, &session);
            });
            terminal.write_bytes_then(fresh, done.unchecked_ref());
        }
        StreamEvent::Skipped { from, to } => {
            terminal.write_bytes(skipped_note(from, to, session).as_bytes());
            pane.borrow_mut().next_seq = Some(to);
        }
        // Back after a lost connection, from the next byte: our size goes again once the replay
        // (if any) is shown.
        StreamEvent::Resumed { response } => {
            pane.borrow_mut().sized = false;
            pane.borrow_mut().typeahead.reset();
            predict(pane, link);
            if let Response::Streaming { session: info, from, .. } = response {
                if from >= info.output_bytes {
                    send_size(pane, link, session);
                }
            }
        }
        StreamEvent::Lost { why } => {
            pane.borrow_mut().stream = None;
            pane.borrow_mut().typeahead.reset();
            predict(pane, link);
            if let Some(input) = &pane.borrow().input {
                input.attached(None);
            }
            terminal.write_bytes(format!("\r\n\x1b[2m[tether: {why}]\x1b[0m\r\n").as_bytes());
        }
        StreamEvent::Writable => {}
        StreamEvent::Eof => {
            pane.borrow_mut().ended = true;
            terminal.write_bytes(b"\r\n\x1b[2m[session ended]\x1b[0m\r\n");
            if let Some(element) = container.cast::<web_sys::Element>() {
                let _ = element.set_attribute("data-ended", "true");
            }
        }
    }
}

/// Output at most this big, arriving within `ECHO_WINDOW_MS` of typed input, is painted at once
/// (see `Terminal::render_now`); floods keep xterm.js's one paint per frame.
const ECHO_BYTES: u64 = 4 * 1024; // 4 KiB
const ECHO_WINDOW_MS: u64 = 1_000;

/// `performance` mark `tether:first-output` once the first output of the page has been
/// painted (the frame after xterm.js parsed it): the page-load → first-prompt figure.
fn mark_first_output() {
    thread_local!(static MARKED: Cell<bool> = const { Cell::new(false) });
    if MARKED.with(|m| m.replace(true)) {
        return;
    }
    let Some(window) = web_sys::window() else { return };
    let mark = Closure::once_into_js(|| {
        if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
            let _ = performance.mark("tether:first-output");
        }
    });
    let _ = window.request_animation_frame(mark.unchecked_ref());
}

fn skipped_note(from: u64, to: u64, session: &str) -> String {
    format!(
        "\r\n\x1b[7m[tether: {} bytes of output skipped here; `tether logs {session}` has them all]\x1b[0m\r\n",
        to - from
    )
}
