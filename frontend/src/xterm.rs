//! Bindings to xterm.js 6 (`@xterm/xterm`) and its addons (fit, WebGL, search, web links),
//! loaded as classic scripts (UMD globals such as `Terminal` and `FitAddon.FitAddon`) by
//! `index.html`.
//!
//! Hand-written rather than `xterm-js-rs`: that crate targets xterm.js 4 (the old `xterm`
//! package names and the removed `setOption`), and the calls we need are a few dozen lines here.

use js_sys::{Function, Uint8Array};
use tether_protocol::typeahead::Line;
use wasm_bindgen::prelude::*;

/// The most bytes handed to xterm.js in one write (see `Terminal::write_bytes_then`).
const WRITE_PIECE_BYTES: u32 = 8 * 1024; // 8 KiB

#[wasm_bindgen]
extern "C" {
    /// An xterm.js terminal.
    #[derive(Clone)]
    pub type Terminal;

    #[wasm_bindgen(constructor)]
    pub fn new(options: &JsValue) -> Terminal;

    #[wasm_bindgen(method)]
    pub fn open(this: &Terminal, parent: &web_sys::HtmlElement);

    /// The live options object: setting a property changes that option at once.
    #[wasm_bindgen(method, getter)]
    pub fn options(this: &Terminal) -> js_sys::Object;

    /// Queue bytes for parsing; `callback` runs once they are processed (used for flow control).
    #[wasm_bindgen(method, js_name = write)]
    fn write_with_callback(this: &Terminal, data: &Uint8Array, callback: &Function);

    #[wasm_bindgen(method, js_name = write)]
    fn write_array(this: &Terminal, data: &Uint8Array);

    /// Register a listener for user input (keys, paste) as a string.
    #[wasm_bindgen(method, js_name = onData)]
    pub fn on_data(this: &Terminal, listener: &Function) -> Disposable;

    /// Decide per key event whether xterm.js handles it (`true`) or the page does.
    #[wasm_bindgen(method, js_name = attachCustomKeyEventHandler)]
    pub fn attach_custom_key_event_handler(this: &Terminal, handler: &Function);

    #[wasm_bindgen(method, js_name = loadAddon)]
    pub fn load_addon(this: &Terminal, addon: &JsValue);

    /// `loadAddon` for addons that may throw (WebGL without a GPU context).
    #[wasm_bindgen(method, catch, js_name = loadAddon)]
    pub fn try_load_addon(this: &Terminal, addon: &JsValue) -> Result<(), JsValue>;

    #[wasm_bindgen(method)]
    pub fn focus(this: &Terminal);

    #[wasm_bindgen(method)]
    pub fn dispose(this: &Terminal);

    #[wasm_bindgen(method, getter)]
    pub fn cols(this: &Terminal) -> u16;

    #[wasm_bindgen(method, getter)]
    pub fn rows(this: &Terminal) -> u16;

    #[wasm_bindgen(method, js_name = hasSelection)]
    pub fn has_selection(this: &Terminal) -> bool;

    #[wasm_bindgen(method, js_name = getSelection)]
    pub fn get_selection(this: &Terminal) -> String;

    #[wasm_bindgen(method)]
    pub fn paste(this: &Terminal, text: &str);

    /// What `onData` returns; disposing it removes the listener.
    pub type Disposable;

    #[wasm_bindgen(method, js_name = dispose)]
    pub fn dispose_listener(this: &Disposable);
}

#[wasm_bindgen]
extern "C" {
    /// The fit addon: sizes the terminal to its container.
    pub type FitAddon;

    #[wasm_bindgen(method)]
    pub fn fit(this: &FitAddon);

    /// The WebGL renderer addon.
    pub type WebglAddon;

    /// Called when the GPU context is lost; the addon must then be disposed (the DOM renderer
    /// takes over).
    #[wasm_bindgen(method, js_name = onContextLoss)]
    pub fn on_context_loss(this: &WebglAddon, listener: &Function) -> Disposable;

    #[wasm_bindgen(method)]
    pub fn dispose(this: &WebglAddon);

    /// The search addon.
    pub type SearchAddon;

    #[wasm_bindgen(method, js_name = findNext)]
    pub fn find_next(this: &SearchAddon, term: &str) -> bool;

    #[wasm_bindgen(method, js_name = findPrevious)]
    pub fn find_previous(this: &SearchAddon, term: &str) -> bool;
}

impl Terminal {
    /// Write raw terminal bytes. The bytes are copied into a JS-owned `Uint8Array`: xterm.js
    /// parses writes asynchronously, and a view into WASM memory could move or be overwritten
    /// before it gets there.
    pub fn write_bytes(&self, bytes: &[u8]) {
        self.write_array(&Uint8Array::from(bytes));
    }

    /// Write raw bytes and get `done` called once xterm.js has processed them.
    ///
    /// Written in pieces of at most `WRITE_PIECE_BYTES`: xterm.js parses queued writes for about
    /// 12 ms and then yields to the page, but it looks at the clock only between writes. A
    /// whole 32 KiB frame of `seq` output (~4,700 lines, each scrolled) parsed in one go made
    /// main-thread tasks of over 100 ms while the scrollback first filled.
    pub fn write_bytes_then(&self, bytes: &[u8], done: &Function) {
        let array = Uint8Array::from(bytes);
        let len = bytes.len() as u32;
        let mut start = 0;
        while len - start > WRITE_PIECE_BYTES {
            self.write_array(&array.subarray(start, start + WRITE_PIECE_BYTES));
            start += WRITE_PIECE_BYTES;
        }
        self.write_with_callback(&array.subarray(start, len), done);
    }

    /// Draw what was written now rather than at the next animation frame. xterm.js paints on
    /// `requestAnimationFrame`, and measured in Chromium that frame came a whole frame period
    /// (median 16 ms) after the echo of a key was parsed: most of the time from key to echo.
    /// This reaches into xterm.js's render debouncer (not public API), so every step is
    /// checked: on another xterm.js version it does nothing and the frame paints as before.
    pub fn render_now(&self) {
        let get =
            |target: &JsValue, key: &str| js_sys::Reflect::get(target, &key.into()).ok().filter(|v| v.is_object());
        let Some(debouncer) = get(self, "_core")
            .and_then(|core| get(&core, "_renderService"))
            .and_then(|service| get(&service, "_renderDebouncer"))
        else {
            return;
        };
        let pending = js_sys::Reflect::get(&debouncer, &"_animationFrame".into()).ok().and_then(|f| f.as_f64());
        let render =
            js_sys::Reflect::get(&debouncer, &"_innerRefresh".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
        if let (Some(frame), Some(render), Some(window)) = (pending, render, web_sys::window()) {
            let _ = window.cancel_animation_frame(frame as i32);
            let _ = render.call0(&debouncer);
        }
    }

    /// Where the cursor is and its line, as predictive echo needs them (`None` if xterm.js
    /// does not say).
    pub fn cursor_view(&self) -> Option<CursorView> {
        let get = |target: &JsValue, key: &str| js_sys::Reflect::get(target, &key.into()).ok();
        let number = |target: &JsValue, key: &str| get(target, key).and_then(|v| v.as_f64());
        let active = get(self, "buffer").and_then(|buffer| get(&buffer, "active"))?;
        let (x, y) = (number(&active, "cursorX")?, number(&active, "cursorY")?);
        let (base, viewport) = (number(&active, "baseY")?, number(&active, "viewportY")?);
        let get_line: Function = get(&active, "getLine")?.dyn_into().ok()?;
        let line = get_line.call1(&active, &(base + y).into()).ok().filter(|l| l.is_object())?;
        let to_string: Function = get(&line, "translateToString")?.dyn_into().ok()?;
        // Every cell up to the cursor, then what is written right of it.
        let before = to_string.call3(&line, &false.into(), &0.into(), &x.into()).ok()?.as_string()?;
        let after = to_string.call2(&line, &true.into(), &x.into()).ok()?.as_string()?;
        let cursor = x as usize;
        // A wide character takes two cells and one char: such a line is not predicted on.
        let one_per_cell = before.chars().count() == cursor
            && before.chars().chain(after.chars()).all(crate::typeahead::unicode_width_is_one);
        Some(CursorView {
            row: y as u16,
            normal_screen: get(&active, "type").and_then(|t| t.as_string()).as_deref() == Some("normal"),
            scrolled_back: viewport < base,
            line: one_per_cell.then(|| Line { cells: before.chars().chain(after.chars()).collect(), cursor }),
        })
    }

    /// Whether xterm.js sends cursor keys in application mode (DECCKM), as the key bar must too.
    pub fn application_cursor_keys(&self) -> bool {
        let modes = js_sys::Reflect::get(self, &"modes".into()).unwrap_or(JsValue::UNDEFINED);
        js_sys::Reflect::get(&modes, &"applicationCursorKeysMode".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }
}

/// The cursor as xterm.js has it (`Terminal::cursor_view`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorView {
    /// Zero-based row in the viewport.
    pub row: u16,
    /// The main screen (not the alternate one full-screen programs use).
    pub normal_screen: bool,
    /// The user scrolled up: the cursor is not where the viewport shows.
    pub scrolled_back: bool,
    /// The cursor's line, if every character on it takes one cell.
    pub line: Option<Line>,
}

/// `new X.X()` for an addon whose UMD bundle defines the global namespace `X` holding class
/// `X` (all of xterm's addons). `#[wasm_bindgen(constructor, js_namespace = …)]` does not
/// compile for this shape with wasm-bindgen 0.2.130, hence Reflect.
fn construct_addon(name: &str) -> Result<JsValue, JsValue> {
    let namespace = js_sys::Reflect::get(&js_sys::global(), &name.into())?;
    let class: Function = js_sys::Reflect::get(&namespace, &name.into())?.dyn_into()?;
    js_sys::Reflect::construct(&class, &js_sys::Array::new())
}

impl FitAddon {
    pub fn create() -> Result<FitAddon, JsValue> {
        construct_addon("FitAddon").map(JsCast::unchecked_into)
    }
}

impl WebglAddon {
    pub fn create() -> Result<WebglAddon, JsValue> {
        construct_addon("WebglAddon").map(JsCast::unchecked_into)
    }
}

impl SearchAddon {
    pub fn create() -> Result<SearchAddon, JsValue> {
        construct_addon("SearchAddon").map(JsCast::unchecked_into)
    }
}

/// Clickable URLs in the output.
pub fn web_links_addon() -> Result<JsValue, JsValue> {
    construct_addon("WebLinksAddon")
}
