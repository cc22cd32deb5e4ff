//! An editor tab: one host file in CodeMirror (`codemirror`), over the same connection as the
//! terminals. What it promises:
//! - A save writes exactly the text's bytes (`tether_protocol::text`), atomically on the host,
//!   and only over the version the edit started from: the host refuses it (`changed`) when the
//!   file moved on meanwhile, and the tab offers reload, overwrite or a side-by-side compare.
//! - The host's watch of the file warns as soon as it changes on disk, before any save.
//! - What is not UTF-8 text, or is big, opens read-only and can never be written from here.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use tether_protocol::api::{ErrorCode, Request};
use tether_protocol::file::FileDigest;
use tether_protocol::fs::{FsRequest, Version};
use tether_protocol::text::{self, Opened, MAX_SHOWN_BYTES};
use yew::prelude::*;

use crate::codemirror::{self, Editor, Options};
use crate::link::Link;
use crate::upload::{Replace, Source};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub link: Link,
    /// The file, as the host names it (absolute, or relative to the home or files root).
    pub path: String,
    /// The link's generation while connected (0 while not).
    pub generation: u64,
    pub active: bool,
    /// The text started (`true`) or stopped differing from the file.
    pub on_dirty: Callback<(String, bool)>,
}

#[derive(Clone, PartialEq)]
enum Phase {
    Loading,
    Failed(String),
    Ready,
}

/// The file on disk against the version the edit is based on.
#[derive(Clone, Copy, PartialEq)]
enum Disk {
    Same,
    Changed,
    Gone,
}

/// What the page shows of the tab (each a piece of Yew state).
#[derive(Clone)]
struct View {
    phase: UseStateHandle<Phase>,
    /// Why the file is read-only.
    note: UseStateHandle<Option<&'static str>>,
    disk: UseStateHandle<Disk>,
    /// A save was refused: the file changed on disk.
    conflict: UseStateHandle<bool>,
    comparing: UseStateHandle<bool>,
    dirty: UseStateHandle<bool>,
    /// The last save's outcome, or another action's failure.
    message: UseStateHandle<Option<String>>,
}

/// The tab's workings, made once and shared by its callbacks.
struct Tab {
    link: Link,
    path: String,
    view: View,
    container: NodeRef,
    compare_into: NodeRef,
    on_dirty: RefCell<Callback<(String, bool)>>,
    editor: RefCell<Option<Editor>>,
    /// SHA-256 of the bytes the text is based on (as loaded, or last saved).
    base: RefCell<Option<String>>,
    /// The SHA-256 a save under way will leave on disk (its own change is not someone else's).
    saving: RefCell<Option<String>>,
    bom: Cell<bool>,
    writable: Cell<bool>,
    /// The host's watch of the file on the current connection.
    watch: Cell<Option<u32>>,
    /// Opening has started (and not failed): a new connection meanwhile must not start another.
    opening: Cell<bool>,
}

fn sha256(bytes: &[u8]) -> String {
    let mut digest = FileDigest::new();
    digest.update(bytes);
    digest.finish()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Tab {
    /// Load the editor bundle and the file, and show it.
    async fn open(self: Rc<Self>) {
        self.opening.set(true);
        let loaded = async {
            codemirror::load().await?;
            crate::read::whole_file(&self.link, &self.path, MAX_SHOWN_BYTES).await
        };
        let bytes = match loaded.await {
            Ok(bytes) => bytes,
            Err(message) => {
                self.opening.set(false); // tried again on the next connection
                return self.view.phase.set(Phase::Failed(message));
            }
        };
        let Some(parent) = self.container.cast::<web_sys::HtmlElement>() else { return };
        let (shown, separator, note) = match text::decode(&bytes) {
            Opened::Editable(editable) => {
                self.bom.set(editable.bom);
                self.writable.set(true);
                (editable.text, editable.line_separator, None)
            }
            Opened::ReadOnly { text, why } => (text, "\n", Some(why.note())),
        };
        *self.base.borrow_mut() = Some(sha256(&bytes));
        let options =
            Options { doc: &shown, name: file_name(&self.path), line_separator: separator, read_only: note.is_some() };
        let on_change = {
            let tab = Rc::downgrade(&self);
            move |dirty: bool| {
                if let Some(tab) = tab.upgrade() {
                    tab.view.dirty.set(dirty);
                    tab.on_dirty.borrow().emit((tab.path.clone(), dirty));
                }
            }
        };
        let on_save = {
            let tab = Rc::downgrade(&self);
            move || {
                if let Some(tab) = tab.upgrade() {
                    wasm_bindgen_futures::spawn_local(tab.save(false));
                }
            }
        };
        let editor = Editor::create(&parent, &options, on_change, on_save);
        editor.handle.focus();
        *self.editor.borrow_mut() = Some(editor);
        self.view.note.set(note);
        self.view.phase.set(Phase::Ready);
        self.clone().watch();
    }

    /// Follow the file on the host (again, on each new connection).
    fn watch(self: Rc<Self>) {
        if self.editor.borrow().is_none() {
            return;
        }
        let on_version = {
            let tab = Rc::downgrade(&self);
            move |version: Version| {
                let Some(tab) = tab.upgrade() else { return };
                let disk = match version.sha256 {
                    _ if !version.exists => Disk::Gone,
                    Some(now) if Some(&now) == tab.base.borrow().as_ref() => Disk::Same,
                    Some(now) if Some(&now) == tab.saving.borrow().as_ref() => return, // our own save
                    _ => Disk::Changed,
                };
                tab.view.disk.set(disk);
            }
        };
        let owner = crate::read::json_lines(&self.link, on_version);
        wasm_bindgen_futures::spawn_local(async move {
            let request = Request::Fs(FsRequest::Watch { path: self.path.clone() });
            if let Ok((_, stream)) = self.link.open_stream(&request, owner).await {
                self.watch.set(Some(stream));
            }
        });
    }

    /// Save the text: only over the version it started from, unless `overwrite`.
    async fn save(self: Rc<Self>, overwrite: bool) {
        if !self.writable.get() || self.saving.borrow().is_some() {
            return;
        }
        let Some(text) = self.editor.borrow().as_ref().map(|e| e.handle.begin_save()) else { return };
        let bytes = text::encode(&text, self.bom.get());
        let hash = sha256(&bytes);
        *self.saving.borrow_mut() = Some(hash.clone());
        self.view.message.set(Some("Saving…".into()));
        let base = if overwrite { None } else { self.base.borrow().clone() };
        let replace = Replace { overwrite: true, base: base.as_deref() };
        let never_cancelled = Cell::new(false);
        let source = Source::Bytes { bytes: &bytes, sha256: &hash };
        let result = crate::upload::send(&self.link, source, &self.path, replace, &never_cancelled, &|_| {}).await;
        *self.saving.borrow_mut() = None;
        match result {
            Ok(()) => {
                *self.base.borrow_mut() = Some(hash);
                if let Some(editor) = self.editor.borrow().as_ref() {
                    editor.handle.mark_saved();
                }
                self.view.disk.set(Disk::Same);
                self.view.conflict.set(false);
                self.view.message.set(Some("Saved".into()));
            }
            Err(refused) if refused.code == Some(ErrorCode::Changed) => {
                self.view.conflict.set(true);
                self.view.message.set(None);
            }
            Err(refused) => self.view.message.set(Some(format!("Not saved: {}", refused.message))),
        }
    }

    /// Take the disk's version (the edit stays in the undo history).
    async fn reload(self: Rc<Self>) {
        let bytes = match crate::read::whole_file(&self.link, &self.path, MAX_SHOWN_BYTES).await {
            Ok(bytes) => bytes,
            Err(message) => return self.view.message.set(Some(format!("Cannot reload: {message}"))),
        };
        let Opened::Editable(editable) = text::decode(&bytes) else {
            return self.view.message.set(Some("Cannot reload: the file on disk is no longer editable text".into()));
        };
        self.close_compare();
        if let Some(editor) = self.editor.borrow().as_ref() {
            editor.handle.reload(&editable.text);
        }
        self.bom.set(editable.bom);
        *self.base.borrow_mut() = Some(sha256(&bytes));
        self.view.disk.set(Disk::Same);
        self.view.conflict.set(false);
        self.view.message.set(None);
    }

    /// The text beside the disk's version.
    async fn compare(self: Rc<Self>) {
        let bytes = match crate::read::whole_file(&self.link, &self.path, MAX_SHOWN_BYTES).await {
            Ok(bytes) => bytes,
            Err(message) => return self.view.message.set(Some(format!("Cannot compare: {message}"))),
        };
        let theirs = match text::decode(&bytes) {
            Opened::Editable(editable) => editable.text,
            Opened::ReadOnly { text, .. } => text,
        };
        let Some(into) = self.compare_into.cast::<web_sys::HtmlElement>() else { return };
        self.view.comparing.set(true);
        let shown = self.editor.borrow().as_ref().map(|editor| editor.handle.compare(&into, &theirs));
        if let Some(shown) = shown {
            if wasm_bindgen_futures::JsFuture::from(shown).await.is_err() {
                self.view.comparing.set(false);
                self.view.message.set(Some("Cannot compare: the diff view did not load".into()));
            }
        }
    }

    fn close_compare(&self) {
        if let Some(editor) = self.editor.borrow().as_ref() {
            editor.handle.close_compare();
        }
        self.view.comparing.set(false);
    }
}

#[function_component(EditorPane)]
pub fn editor_pane(props: &Props) -> Html {
    let view = View {
        phase: use_state(|| Phase::Loading),
        note: use_state(|| None),
        disk: use_state(|| Disk::Same),
        conflict: use_state(|| false),
        comparing: use_state(|| false),
        dirty: use_state(|| false),
        message: use_state(|| None),
    };
    let container = use_node_ref();
    let compare_into = use_node_ref();
    let tab = {
        let (view, container, compare_into) = (view.clone(), container.clone(), compare_into.clone());
        let (link, path, on_dirty) = (props.link.clone(), props.path.clone(), props.on_dirty.clone());
        use_memo((), move |_| Tab {
            link,
            path,
            view,
            container,
            compare_into,
            on_dirty: RefCell::new(on_dirty),
            editor: RefCell::new(None),
            base: RefCell::new(None),
            saving: RefCell::new(None),
            bom: Cell::new(false),
            writable: Cell::new(false),
            watch: Cell::new(None),
            opening: Cell::new(false),
        })
    };
    *tab.on_dirty.borrow_mut() = props.on_dirty.clone();

    // Open once connected; follow the file again on every new connection; let go when closed.
    {
        let tab = tab.clone();
        use_effect_with(props.generation, move |generation| {
            if *generation > 0 {
                if tab.editor.borrow().is_some() {
                    tab.clone().watch();
                } else if !tab.opening.get() {
                    wasm_bindgen_futures::spawn_local(tab.clone().open());
                }
            }
        });
    }
    {
        let tab = tab.clone();
        use_effect_with((), move |_| {
            move || {
                if let Some(stream) = tab.watch.take() {
                    tab.link.forget_stream(stream);
                }
                tab.editor.borrow_mut().take();
            }
        });
    }
    {
        let tab = tab.clone();
        use_effect_with(props.active, move |active| {
            if *active {
                if let Some(editor) = tab.editor.borrow().as_ref() {
                    editor.handle.focus();
                }
            }
        });
    }

    let action = |act: fn(Rc<Tab>) -> LocalBoxFuture<'static, ()>| {
        let tab = tab.clone();
        Callback::from(move |_: MouseEvent| wasm_bindgen_futures::spawn_local(act(Rc::clone(&tab))))
    };
    let save = action(|tab| Box::pin(tab.save(false)));
    let overwrite = action(|tab| Box::pin(tab.save(true)));
    let reload = action(|tab| Box::pin(tab.reload()));
    let compare = action(|tab| Box::pin(tab.compare()));
    let close_compare = {
        let tab = tab.clone();
        Callback::from(move |_: MouseEvent| tab.close_compare())
    };

    let name = file_name(&props.path).to_owned();
    let state = match &*view.phase {
        Phase::Loading => "loading",
        Phase::Failed(_) => "failed",
        Phase::Ready => "ready",
    };
    let writable = tab.writable.get();
    let disk_warning = match (*view.disk, *view.conflict) {
        (_, true) => Some(html! {
            <div class="conflict" role="alert">
                { format!("Not saved: {name} changed on disk since you opened it.") }
                <button class="reload" onclick={reload.clone()}>{ "Reload" }</button>
                <button class="overwrite" onclick={overwrite}>{ "Overwrite" }</button>
                <button class="compare" onclick={compare.clone()}>{ "Compare" }</button>
            </div>
        }),
        (Disk::Changed, false) => Some(html! {
            <div class="disk-warning" role="alert">
                { format!("{name} changed on disk since you opened it. Saving now will ask first.") }
                <button class="reload" onclick={reload}>{ "Reload" }</button>
                <button class="compare" onclick={compare}>{ "Compare" }</button>
            </div>
        }),
        (Disk::Gone, false) => Some(html! {
            <div class="disk-warning" role="alert">{ format!("{name} is gone from disk (deleted or moved).") }</div>
        }),
        (Disk::Same, false) => None,
    };
    let class = classes!("pane", "editor-pane", (!props.active).then_some("hidden"));
    html! {
        <section {class} data-path={props.path.clone()} data-state={state} data-dirty={view.dirty.to_string()}>
            <div class="pane-tools editor-bar">
                <span class="editor-path" title={props.path.clone()}>{ &props.path }</span>
                if let Some(note) = *view.note { <span class="note read-only" role="note">{ note }</span> }
                if let Phase::Failed(message) = &*view.phase {
                    <span class="error" role="alert">{ format!("Cannot open {name}: {message}") }</span>
                }
                if let Some(message) = &*view.message { <span class="message">{ message }</span> }
                <button class="save" onclick={save} disabled={!writable} title="Save (Ctrl+S)">{ "Save" }</button>
            </div>
            { for disk_warning }
            if *view.comparing {
                <div class="compare-bar">
                    { "Left: your text. Right: the file on disk." }
                    <button class="close-compare" onclick={close_compare}>{ "Back to editing" }</button>
                </div>
            }
            <div class={classes!("compare-view", (!*view.comparing).then_some("hidden"))} ref={compare_into}></div>
            <div class={classes!("editor", (*view.comparing).then_some("hidden"))} ref={container}></div>
        </section>
    }
}
