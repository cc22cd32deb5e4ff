//! Bindings to the editor bundle (`frontend/editor/editor.js`, CodeMirror 6), which the page
//! loads only when the first editor opens: a module script that sets `globalThis.tetherEditor`.
//! Until then the first load pays nothing for it.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Where Trunk puts the bundle (see index.html), relative to the page.
const BUNDLE: &str = "editor/editor.js";

#[wasm_bindgen]
extern "C" {
    /// One editor, as `createEditor` returns it.
    pub type EditorHandle;

    #[wasm_bindgen(js_namespace = tetherEditor, js_name = createEditor)]
    fn create_editor(parent: &web_sys::HtmlElement, options: &js_sys::Object) -> EditorHandle;

    /// The document joined with the file's own line separator: the bytes a save writes.
    #[wasm_bindgen(method)]
    pub fn text(this: &EditorHandle) -> String;

    /// `text`, remembered as what a save under way writes.
    #[wasm_bindgen(method, js_name = beginSave)]
    pub fn begin_save(this: &EditorHandle) -> String;

    /// The text `begin_save` gave is what the file holds now (typing since stays dirty).
    #[wasm_bindgen(method, js_name = markSaved)]
    pub fn mark_saved(this: &EditorHandle);

    /// Show the disk's version instead (as an edit, so undo can bring ours back).
    #[wasm_bindgen(method)]
    pub fn reload(this: &EditorHandle, doc: &str);

    /// Side by side in `into`: ours on the left, `theirs` (the disk's) on the right.
    #[wasm_bindgen(method)]
    pub fn compare(this: &EditorHandle, into: &web_sys::HtmlElement, theirs: &str) -> js_sys::Promise;

    #[wasm_bindgen(method, js_name = closeCompare)]
    pub fn close_compare(this: &EditorHandle);

    #[wasm_bindgen(method)]
    pub fn focus(this: &EditorHandle);

    #[wasm_bindgen(method)]
    pub fn destroy(this: &EditorHandle);
}

/// How an editor starts.
pub struct Options<'a> {
    pub doc: &'a str,
    /// The file's name (picks the language).
    pub name: &'a str,
    /// `"\n"` or `"\r\n"`: lines are split and joined with exactly this.
    pub line_separator: &'a str,
    pub read_only: bool,
}

/// An editor and the callbacks it holds (they live as long as it does).
pub struct Editor {
    pub handle: EditorHandle,
    _on_change: Closure<dyn FnMut(bool)>,
    _on_save: Closure<dyn FnMut()>,
}

impl Drop for Editor {
    fn drop(&mut self) {
        self.handle.destroy();
    }
}

impl Editor {
    /// An editor in `parent`; `on_change(dirty)` when it starts or stops differing from what was
    /// saved, `on_save` on Ctrl/Cmd+S. The bundle must be loaded (`load`).
    pub fn create(
        parent: &web_sys::HtmlElement,
        options: &Options,
        on_change: impl FnMut(bool) + 'static,
        on_save: impl FnMut() + 'static,
    ) -> Editor {
        let on_change = Closure::<dyn FnMut(bool)>::new(on_change);
        let on_save = Closure::<dyn FnMut()>::new(on_save);
        let object = js_sys::Object::new();
        let set = |key: &str, value: &JsValue| {
            // Setting a property on a fresh plain object cannot fail.
            let _ = js_sys::Reflect::set(&object, &key.into(), value);
        };
        set("doc", &options.doc.into());
        set("name", &options.name.into());
        set("lineSeparator", &options.line_separator.into());
        set("readOnly", &options.read_only.into());
        set("onChange", on_change.as_ref());
        set("onSave", on_save.as_ref());
        let handle = create_editor(parent, &object);
        Editor { handle, _on_change: on_change, _on_save: on_save }
    }
}

thread_local! {
    /// The bundle's loading, shared by every editor that waits for it.
    static LOADING: RefCell<Option<js_sys::Promise>> = const { RefCell::new(None) };
}

/// Load the editor bundle (once; later calls wait for the same load).
pub async fn load() -> Result<(), String> {
    let loading = LOADING.with(|loading| loading.borrow().clone());
    let promise = match loading {
        Some(promise) => promise,
        None => {
            let promise = start_loading()?;
            LOADING.with(|loading| *loading.borrow_mut() = Some(promise.clone()));
            promise
        }
    };
    match wasm_bindgen_futures::JsFuture::from(promise).await {
        Ok(_) => Ok(()),
        Err(_) => {
            LOADING.with(|loading| *loading.borrow_mut() = None); // the next editor tries again
            Err("the editor could not be loaded (is the connection to the relay up?)".into())
        }
    }
}

fn start_loading() -> Result<js_sys::Promise, String> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let script: web_sys::HtmlScriptElement =
        document.create_element("script").map_err(|_| "cannot make a script element")?.unchecked_into();
    script.set_type("module");
    script.set_src(BUNDLE);
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        script.set_onload(Some(&resolve));
        script.set_onerror(Some(&reject));
    });
    document.head().ok_or("no head")?.append_child(&script).map_err(|_| "cannot add the editor's script")?;
    Ok(promise)
}
