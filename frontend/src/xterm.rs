//! Bindings to xterm.js 6 (`@xterm/xterm`) and its fit addon, loaded as classic scripts (UMD
//! globals `Terminal` and `FitAddon.FitAddon`) by `index.html`.
//!
//! Hand-written rather than `xterm-js-rs`: that crate targets xterm.js 4 (the old `xterm`
//! package names and the removed `setOption`), and the few calls we need are a dozen lines here.

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// An xterm.js terminal.
    #[derive(Clone)]
    pub type Terminal;

    #[wasm_bindgen(constructor)]
    pub fn new(options: &JsValue) -> Terminal;

    #[wasm_bindgen(method)]
    pub fn open(this: &Terminal, parent: &web_sys::HtmlElement);

    /// Queue bytes for parsing; `callback` runs once they are processed (used for flow control).
    #[wasm_bindgen(method, js_name = write)]
    fn write_with_callback(this: &Terminal, data: &Uint8Array, callback: &Function);

    #[wasm_bindgen(method, js_name = write)]
    fn write_array(this: &Terminal, data: &Uint8Array);

    /// Register a listener for user input (keys, paste) as a string.
    #[wasm_bindgen(method, js_name = onData)]
    pub fn on_data(this: &Terminal, listener: &Function) -> Disposable;

    #[wasm_bindgen(method, js_name = loadAddon)]
    pub fn load_addon(this: &Terminal, addon: &JsValue);

    #[wasm_bindgen(method)]
    pub fn focus(this: &Terminal);

    #[wasm_bindgen(method)]
    pub fn dispose(this: &Terminal);

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
}

impl Terminal {
    /// Write raw terminal bytes. The bytes are copied into a JS-owned `Uint8Array`: xterm.js
    /// parses writes asynchronously, and a view into WASM memory could move or be overwritten
    /// before it gets there.
    pub fn write_bytes(&self, bytes: &[u8]) {
        self.write_array(&Uint8Array::from(bytes));
    }

    /// Write raw bytes and get `done` called once xterm.js has processed them.
    pub fn write_bytes_then(&self, bytes: &[u8], done: &Function) {
        self.write_with_callback(&Uint8Array::from(bytes), done);
    }
}

impl FitAddon {
    /// `new FitAddon.FitAddon()`: the UMD bundle exposes the class inside a namespace object,
    /// which `#[wasm_bindgen(constructor, js_namespace = …)]` does not compile for (0.2.130).
    pub fn create() -> Result<FitAddon, JsValue> {
        let namespace = js_sys::Reflect::get(&js_sys::global(), &"FitAddon".into())?;
        let class: Function = js_sys::Reflect::get(&namespace, &"FitAddon".into())?.dyn_into()?;
        Ok(js_sys::Reflect::construct(&class, &js_sys::Array::new())?.unchecked_into())
    }
}
