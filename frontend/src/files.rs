//! The Files tab: the host's files over the same connection as the terminals.
//!
//! - A directory is listed as a stream of pages (`fs/list`); only the rows in view are in the
//!   DOM (fixed-height rows over a spacer), so 10,000 entries open and scroll smoothly.
//! - Keyboard: ↑/↓ move, Enter opens (a folder here, a file in an editor tab), Backspace goes up, Space
//!   selects, Delete deletes, F2 renames.
//! - Uploads (button or drop) go through `upload`; each has a progress bar with its rate and a
//!   cancel button. A name that exists asks first: replace, keep both, or skip.
//! - Downloads stream to disk through the service worker (`download`).
//! - Delete moves to the host's trash, with Undo.
//! - The container's `data-path` is the directory shown and `data-count` its number of entries:
//!   what a test (or a curious user) can check.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use tether_protocol::api::{Request, Response};
use tether_protocol::fs::{self, take_pages, Entry, FsRequest, FsResponse, Kind};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::link::Link;

/// Height of one row, in CSS pixels (the list is virtualised on it).
const ROW_PX: i32 = 26;
/// Rows drawn beyond the visible ones, above and below.
const OVERSCAN_ROWS: i32 = 20;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub link: Link,
    /// The link's generation while connected (0 while not).
    pub generation: u64,
    pub active: bool,
    /// Open a terminal in this directory.
    pub on_terminal_here: Callback<String>,
    /// Open this file in an editor tab.
    pub on_open_file: Callback<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum SortBy {
    Name,
    Size,
    Modified,
}

/// A transfer's line in the list of transfers.
#[derive(Clone, PartialEq)]
struct Transfer {
    id: u32,
    name: String,
    upload: bool,
    done: u64,
    total: u64,
    started_ms: f64,
    /// `Some` once it has ended: how (empty: fine).
    ended: Option<String>,
    cancel: Rc<Cell<bool>>,
}

/// How often a transfer's progress bar is redrawn.
const PROGRESS_REDRAW_MS: f64 = 100.0;

/// The transfers list as async work sees it (never a stale state handle); `changed` shows it.
struct Book {
    log: Rc<RefCell<Vec<Transfer>>>,
    changed: Callback<()>,
}

impl Book {
    /// A new line; its id and its cancel flag.
    fn start(&self, next: &Cell<u32>, name: &str, upload: bool, total: u64) -> (u32, Rc<Cell<bool>>) {
        let id = next.get();
        next.set(id + 1);
        let cancel = Rc::new(Cell::new(false));
        let started_ms = now();
        let transfer = Transfer {
            id,
            name: name.to_owned(),
            upload,
            done: 0,
            total,
            started_ms,
            ended: None,
            cancel: Rc::clone(&cancel),
        };
        self.log.borrow_mut().push(transfer);
        self.changed.emit(());
        (id, cancel)
    }

    fn update(&self, id: u32, change: impl FnOnce(&mut Transfer)) {
        if let Some(transfer) = self.log.borrow_mut().iter_mut().find(|t| t.id == id) {
            change(transfer);
        }
        self.changed.emit(());
    }

    /// What hears transfer `id`'s bytes so far. The count is kept at once, the page redrawn at
    /// most every `PROGRESS_REDRAW_MS`: a redraw per chunk would take the page's thread from the
    /// terminal on the same connection (and from the transfer itself).
    fn progress(&self, id: u32) -> impl Fn(u64) + 'static {
        let book = Book { log: Rc::clone(&self.log), changed: self.changed.clone() };
        let redrawn_ms = Cell::new(f64::NEG_INFINITY);
        move |done| {
            let mut whole = false;
            if let Some(transfer) = book.log.borrow_mut().iter_mut().find(|t| t.id == id) {
                transfer.done = done;
                whole = done >= transfer.total;
            }
            if whole || now() - redrawn_ms.get() >= PROGRESS_REDRAW_MS {
                redrawn_ms.set(now());
                book.changed.emit(());
            }
        }
    }

    fn ended(&self, id: u32, result: &Result<(), String>) {
        let how = result.clone().err().unwrap_or_default();
        self.update(id, |t| t.ended = Some(how));
    }
}

/// An edit in progress in the toolbar's field.
#[derive(Clone, PartialEq)]
enum Edit {
    NewFolder,
    Rename(String),
    Chmod(String, u32),
}

/// A file to upload whose name is taken: the user picks.
#[derive(Clone, PartialEq)]
struct Conflict {
    file: web_sys::File,
    name: String,
}

fn size_text(entry: &Entry) -> String {
    match entry.kind {
        Kind::Dir => String::new(),
        _ => human_bytes(entry.size),
    }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let (mut value, mut unit) = (n as f64, 0);
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

fn when(ms: i64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    String::from(date.to_locale_string("default", &JsValue::UNDEFINED))
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_default()
}

/// A name not in `taken`: `name (1).ext`, `name (2).ext`…
fn free_name(name: &str, taken: &[Entry]) -> String {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    (1..)
        .map(|n| format!("{stem} ({n}){ext}"))
        .find(|candidate| !taken.iter().any(|e| &e.name == candidate))
        .unwrap_or_else(|| name.to_owned())
}

#[function_component(FilesPane)]
pub fn files_pane(props: &Props) -> Html {
    // What was asked ("" = home) and what the host says it is.
    let asked = use_state(String::new);
    let shown = use_state(String::new);
    let entries = use_state(Vec::<Entry>::new);
    let loading = use_state(|| false);
    let error = use_state(|| None::<String>);
    let sort = use_state(|| (SortBy::Name, true));
    let hidden = use_state(|| false);
    let selected = use_state(HashSet::<String>::new);
    let cursor = use_state(|| 0usize);
    let scroll = use_state(|| 0i32);
    let viewport = use_state(|| 600i32);
    let reload = use_state(|| 0u32);
    let edit = use_state(|| None::<Edit>);
    let undo = use_state(|| None::<Vec<String>>);
    let conflicts = use_state(Vec::<Conflict>::new);
    let transfers = use_state(Vec::<Transfer>::new);
    // Async work updates transfers through this, never through a stale handle.
    let transfer_log = use_memo((), |_| Rc::new(RefCell::new(Vec::<Transfer>::new())));
    let next_transfer = use_memo((), |_| Cell::new(0u32));
    let list_ref = use_node_ref();
    let file_input = use_node_ref();
    let folder_input = use_node_ref();

    // The newest listing asked for: an older one that answers late is dropped, never shown over it.
    let latest_listing = use_memo((), |_| Cell::new(0u32));

    // List the directory whenever it, the connection or a change asks for it.
    {
        let latest = Rc::clone(&latest_listing);
        let (link, entries, shown, loading, error, selected, cursor) = (
            props.link.clone(),
            entries.clone(),
            shown.clone(),
            loading.clone(),
            error.clone(),
            selected.clone(),
            cursor.clone(),
        );
        use_effect_with(((*asked).clone(), props.generation, *reload), move |(path, generation, _)| {
            if *generation > 0 {
                loading.set(true);
                let path = path.clone();
                let ticket = latest.get().wrapping_add(1);
                latest.set(ticket);
                wasm_bindgen_futures::spawn_local(async move {
                    let listed = list(&link, &path).await;
                    if latest.get() != ticket {
                        return; // another directory (or a newer listing) was asked for meanwhile
                    }
                    match listed {
                        Ok((resolved, listed)) => {
                            // The same directory again (after a change) keeps its selection (what
                            // has gone from it is left out where it is used); another starts afresh.
                            if *shown != resolved {
                                selected.set(HashSet::new());
                                cursor.set(0);
                            }
                            shown.set(resolved);
                            entries.set(listed);
                            error.set(None);
                        }
                        Err(message) => error.set(Some(message)),
                    }
                    loading.set(false);
                });
            }
        });
    }

    // The rows in the order shown.
    let mut rows: Vec<Entry> = entries.iter().filter(|e| *hidden || !e.name.starts_with('.')).cloned().collect();
    let (by, ascending) = *sort;
    rows.sort_by(|a, b| {
        let dirs_first = b.is_dir_like().cmp(&a.is_dir_like());
        let order = match by {
            SortBy::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            SortBy::Size => a.size.cmp(&b.size),
            SortBy::Modified => a.mtime_ms.cmp(&b.mtime_ms),
        };
        dirs_first.then(if ascending { order } else { order.reverse() })
    });
    let rows = Rc::new(rows);

    // Go to a directory; going to the one asked for again lists it again.
    let go = {
        let (asked, undo, reload) = (asked.clone(), undo.clone(), reload.clone());
        Callback::from(move |path: String| {
            undo.set(None);
            if *asked == path {
                reload.set(*reload + 1);
            }
            asked.set(path);
        })
    };
    let refresh = {
        let reload = reload.clone();
        Callback::from(move |_: ()| reload.set(*reload + 1))
    };
    let set_transfers = {
        let transfers = transfers.clone();
        let log = Rc::clone(&transfer_log);
        Callback::from(move |_: ()| transfers.set(log.borrow().clone()))
    };

    // Download a file: its bytes as a stream, then saved through the browser's downloads.
    let download = {
        let (link, log, next, set_transfers, error) = (
            props.link.clone(),
            Rc::clone(&transfer_log),
            Rc::clone(&next_transfer),
            set_transfers.clone(),
            error.clone(),
        );
        // (path, name to save as, size if known, whether it is a folder to archive)
        Callback::from(move |(path, name, size, folder): (String, String, u64, bool)| {
            let book = Book { log: Rc::clone(&log), changed: set_transfers.clone() };
            let (id, _) = book.start(&next, &name, false, size);
            let (link, error) = (link.clone(), error.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let progress = book.progress(id);
                let request = match folder {
                    true => FsRequest::Archive { path },
                    false => FsRequest::Read { path, offset: 0 },
                };
                let result = crate::download::save(&link, request, &name, progress).await;
                book.ended(id, &result);
                if let Err(message) = result {
                    error.set(Some(message));
                }
            });
        })
    };

    // Upload files into the directory shown; a taken name asks first.
    let upload = {
        let (link, log, next, set_transfers, shown, entries, refresh, conflicts) = (
            props.link.clone(),
            Rc::clone(&transfer_log),
            Rc::clone(&next_transfer),
            set_transfers.clone(),
            shown.clone(),
            entries.clone(),
            refresh.clone(),
            conflicts.clone(),
        );
        Callback::from(move |(file, name, overwrite): (web_sys::File, String, bool)| {
            if !overwrite && entries.iter().any(|e| e.name == name) {
                let mut waiting = (*conflicts).clone();
                waiting.push(Conflict { file, name });
                conflicts.set(waiting);
                return;
            }
            let book = Book { log: Rc::clone(&log), changed: set_transfers.clone() };
            let (id, cancel) = book.start(&next, &name, true, file.size() as u64);
            let path = fs::join(&shown, &name);
            let (link, refresh) = (link.clone(), refresh.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let progress = book.progress(id);
                // A file from a folder (`name` is its path inside it): its directories first.
                if let Some((dir, _)) = path.rsplit_once('/').filter(|_| name.contains('/')) {
                    let _ = link.call_fs(FsRequest::Mkdir { path: dir.to_owned(), parents: true }).await;
                }
                let replace = crate::upload::Replace { overwrite, base: None };
                let source = crate::upload::Source::File(&file);
                let result =
                    crate::upload::send(&link, source, &path, replace, &cancel, &progress).await.map_err(String::from);
                book.ended(id, &result);
                refresh.emit(());
            });
        })
    };

    let open_entry = {
        let (go, on_open_file, shown) = (go.clone(), props.on_open_file.clone(), shown.clone());
        Callback::from(move |entry: Entry| {
            if entry.raw_name.is_some() {
                return; // cannot be named in a request; shown as it is
            }
            let path = fs::join(&shown, &entry.name);
            if entry.is_dir_like() {
                go.emit(path);
            } else {
                on_open_file.emit(path);
            }
        })
    };

    let delete_selected = {
        let (link, selected, shown, undo, error, refresh, rows) = (
            props.link.clone(),
            selected.clone(),
            shown.clone(),
            undo.clone(),
            error.clone(),
            refresh.clone(),
            Rc::clone(&rows),
        );
        Callback::from(move |_: ()| {
            let names: Vec<String> =
                rows.iter().filter(|e| selected.contains(&e.name)).map(|e| e.name.clone()).collect();
            if names.is_empty() {
                return;
            }
            let (link, shown, undo, error, refresh) =
                (link.clone(), (*shown).clone(), undo.clone(), error.clone(), refresh.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let mut trashed = Vec::new();
                for name in names {
                    let delete = FsRequest::Delete { path: fs::join(&shown, &name), permanent: false };
                    match link.call_fs(delete).await {
                        Ok(FsResponse::Trashed { trash_id }) => trashed.push(trash_id),
                        Ok(_) => {}
                        Err(message) => error.set(Some(message)),
                    }
                }
                undo.set((!trashed.is_empty()).then_some(trashed));
                refresh.emit(());
            });
        })
    };

    let restore = {
        let (link, undo, error, refresh) = (props.link.clone(), undo.clone(), error.clone(), refresh.clone());
        Callback::from(move |_: MouseEvent| {
            let Some(ids) = (*undo).clone() else { return };
            undo.set(None);
            let (link, error, refresh) = (link.clone(), error.clone(), refresh.clone());
            wasm_bindgen_futures::spawn_local(async move {
                for trash_id in ids {
                    if let Err(message) = link.call_fs(FsRequest::Restore { trash_id }).await {
                        error.set(Some(message));
                    }
                }
                refresh.emit(());
            });
        })
    };

    let on_key = {
        let (rows, cursor, selected, open_entry, go, shown, delete_selected, edit, list_ref, viewport) = (
            Rc::clone(&rows),
            cursor.clone(),
            selected.clone(),
            open_entry.clone(),
            go.clone(),
            shown.clone(),
            delete_selected.clone(),
            edit.clone(),
            list_ref.clone(),
            viewport.clone(),
        );
        Callback::from(move |e: KeyboardEvent| {
            let count = rows.len();
            let at = (*cursor).min(count.saturating_sub(1));
            let move_to = |index: usize| {
                cursor.set(index);
                // Keep the cursor's row in view.
                if let Some(list) = list_ref.cast::<web_sys::Element>() {
                    let top = index as i32 * ROW_PX;
                    if top < list.scroll_top() {
                        list.set_scroll_top(top);
                    } else if top + ROW_PX > list.scroll_top() + *viewport {
                        list.set_scroll_top(top + ROW_PX - *viewport);
                    }
                }
            };
            match e.key().as_str() {
                "ArrowDown" if count > 0 => move_to((at + 1).min(count - 1)),
                "ArrowUp" if count > 0 => move_to(at.saturating_sub(1)),
                "Home" if count > 0 => move_to(0),
                "End" if count > 0 => move_to(count - 1),
                "Enter" => {
                    if let Some(entry) = rows.get(at) {
                        open_entry.emit(entry.clone());
                    }
                }
                "Backspace" => go.emit(fs::parent(&shown)),
                " " => {
                    if let Some(entry) = rows.get(at) {
                        let mut next = (*selected).clone();
                        if !next.remove(&entry.name) {
                            next.insert(entry.name.clone());
                        }
                        selected.set(next);
                    }
                }
                "Delete" => delete_selected.emit(()),
                "F2" => {
                    if let Some(entry) = rows.get(at) {
                        edit.set(Some(Edit::Rename(entry.name.clone())));
                    }
                }
                "a" if e.ctrl_key() || e.meta_key() => selected.set(rows.iter().map(|r| r.name.clone()).collect()),
                _ => return,
            }
            e.prevent_default();
        })
    };

    let on_scroll = {
        let (scroll, viewport, list_ref) = (scroll.clone(), viewport.clone(), list_ref.clone());
        Callback::from(move |_: Event| {
            if let Some(list) = list_ref.cast::<web_sys::Element>() {
                scroll.set(list.scroll_top());
                viewport.set(list.client_height().max(ROW_PX));
            }
        })
    };

    // Files chosen with the button (a folder's keep their paths inside it).
    let chosen = |input: NodeRef| {
        let upload = upload.clone();
        Callback::from(move |_: Event| {
            let Some(input) = input.cast::<web_sys::HtmlInputElement>() else { return };
            if let Some(files) = input.files() {
                for index in 0..files.length() {
                    if let Some(file) = files.get(index) {
                        let relative = js_sys::Reflect::get(&file, &JsValue::from_str("webkitRelativePath"))
                            .ok()
                            .and_then(|v| v.as_string())
                            .unwrap_or_default();
                        let name = if relative.is_empty() { file.name() } else { relative };
                        upload.emit((file, name, false));
                    }
                }
            }
            input.set_value("");
        })
    };
    let on_files_chosen = chosen(file_input.clone());
    let on_folder_chosen = chosen(folder_input.clone());
    // Dropped files and folders (a folder is walked, its files keeping their paths in it).
    let on_drop = {
        let upload = upload.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            let Some(data) = e.data_transfer() else { return };
            let items = data.items();
            let entries: Vec<web_sys::FileSystemEntry> = (0..items.length())
                .filter_map(|i| items.get(i))
                .filter_map(|item| item.webkit_get_as_entry().ok().flatten())
                .collect();
            if entries.is_empty() {
                // No entries (an older browser): the plain files.
                if let Some(files) = data.files() {
                    for file in (0..files.length()).filter_map(|i| files.get(i)) {
                        let name = file.name();
                        upload.emit((file, name, false));
                    }
                }
                return;
            }
            let upload = upload.clone();
            wasm_bindgen_futures::spawn_local(async move {
                for entry in entries {
                    for (file, name) in crate::upload::walk_entry(entry, String::new()).await {
                        upload.emit((file, name, false));
                    }
                }
            });
        })
    };
    let on_drag_over = Callback::from(|e: DragEvent| e.prevent_default());

    // The toolbar's field: new folder, rename, chmod.
    let field = use_node_ref();
    let path_field = use_node_ref();
    let on_edit_submit = {
        let (link, edit, shown, field, error, refresh) =
            (props.link.clone(), edit.clone(), shown.clone(), field.clone(), error.clone(), refresh.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(input) = field.cast::<web_sys::HtmlInputElement>() else { return };
            let value = input.value();
            let Some(current) = (*edit).clone() else { return };
            edit.set(None);
            let request = match current {
                Edit::NewFolder => FsRequest::Mkdir { path: fs::join(&shown, &value), parents: false },
                Edit::Rename(from) => {
                    FsRequest::Rename { from: fs::join(&shown, &from), to: fs::join(&shown, &value), overwrite: false }
                }
                Edit::Chmod(name, _) => match u32::from_str_radix(value.trim(), 8) {
                    Ok(mode) => FsRequest::Chmod { path: fs::join(&shown, &name), mode },
                    Err(_) => return error.set(Some(format!("{value}: not an octal mode (e.g. 644)"))),
                },
            };
            let (link, error, refresh) = (link.clone(), error.clone(), refresh.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match link.call_fs(request).await {
                    Ok(_) => error.set(None),
                    Err(message) => error.set(Some(message)),
                }
                refresh.emit(());
            });
        })
    };

    // The rows in view.
    let first = ((*scroll / ROW_PX) - OVERSCAN_ROWS).max(0) as usize;
    let last = (((*scroll + *viewport) / ROW_PX) + OVERSCAN_ROWS).max(0) as usize;
    let drawn = rows.iter().enumerate().skip(first).take(last.saturating_sub(first) + 1).map(|(index, entry)| {
        let is_selected = selected.contains(&entry.name);
        let class = classes!(
            "file",
            if entry.is_dir_like() { "dir" } else { "plain" },
            is_selected.then_some("selected"),
            (index == *cursor).then_some("cursor")
        );
        let onclick = {
            let (selected, cursor, name) = (selected.clone(), cursor.clone(), entry.name.clone());
            Callback::from(move |e: MouseEvent| {
                let mut next = if e.ctrl_key() || e.meta_key() { (*selected).clone() } else { HashSet::new() };
                if !next.remove(&name) {
                    next.insert(name.clone());
                }
                selected.set(next);
                cursor.set(index);
            })
        };
        let ondblclick = {
            let (open_entry, entry) = (open_entry.clone(), entry.clone());
            Callback::from(move |_: MouseEvent| open_entry.emit(entry.clone()))
        };
        let name = match (&entry.raw_name, &entry.target) {
            (Some(_), _) => html! { <>{ &entry.name }<span class="note" title="This name is not valid UTF-8; it is shown, never renamed">{ " (not UTF-8)" }</span></> },
            (None, Some(target)) => html! { <>{ &entry.name }<span class="note">{ format!(" → {target}") }</span></> },
            (None, None) => html! { { &entry.name } },
        };
        html! {
            <div {class} style={format!("top: {}px", index as i32 * ROW_PX)} data-name={entry.name.clone()} {onclick} {ondblclick}>
                <span class="name">{ name }</span>
                <span class="size">{ size_text(entry) }</span>
                <span class="mtime">{ when(entry.mtime_ms) }</span>
                <span class="mode">{ format!("{:o}", entry.mode) }</span>
            </div>
        }
    });

    let crumbs = {
        let path = (*shown).clone();
        let mut parts = vec![("/".to_owned(), "/".to_owned())];
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = format!("{at}/{part}");
            parts.push((part.to_owned(), at.clone()));
        }
        parts.into_iter().map(|(label, target)| {
            let go = go.clone();
            html! { <button class="crumb" onclick={Callback::from(move |_: MouseEvent| go.emit(target.clone()))}>{ label }</button> }
        })
    };
    let header = |label: &str, key: SortBy| {
        let sort = sort.clone();
        let arrow = if sort.0 == key {
            if sort.1 {
                " ▲"
            } else {
                " ▼"
            }
        } else {
            ""
        };
        let onclick = Callback::from(move |_: MouseEvent| {
            let ascending = if sort.0 == key { !sort.1 } else { true };
            sort.set((key, ascending));
        });
        html! { <button class="sort" {onclick}>{ format!("{label}{arrow}") }</button> }
    };
    let selection: Vec<String> = rows.iter().filter(|e| selected.contains(&e.name)).map(|e| e.name.clone()).collect();
    let single = (selection.len() == 1).then(|| selection[0].clone());
    let transfer_rows = transfers.iter().map(|t| {
        let seconds = ((now() - t.started_ms) / 1000.0).max(0.001);
        let rate = human_bytes((t.done as f64 / seconds) as u64);
        let percent = (t.done * 100).checked_div(t.total).unwrap_or(100);
        let state = match &t.ended {
            // A folder's archive has no size until it is done.
            None if t.total == 0 => format!("{} · {rate}/s", human_bytes(t.done)),
            None => format!("{} / {} · {rate}/s", human_bytes(t.done), human_bytes(t.total)),
            Some(why) if why.is_empty() => "done".to_owned(),
            Some(why) => why.clone(),
        };
        let cancel = {
            let flag = Rc::clone(&t.cancel);
            Callback::from(move |_: MouseEvent| flag.set(true))
        };
        let class = classes!("transfer", t.ended.as_ref().map(|w| if w.is_empty() { "done" } else { "failed" }));
        html! {
            <li {class} data-name={t.name.clone()}>
                <span class="what">{ if t.upload { "↑ " } else { "↓ " } }{ &t.name }</span>
                if t.total > 0 || t.ended.is_some() {
                    <progress max="100" value={percent.to_string()}></progress>
                } else {
                    <progress></progress>
                }
                <span class="state">{ state }</span>
                if t.ended.is_none() { <button class="cancel" onclick={cancel}>{ "Cancel" }</button> }
            </li>
        }
    });
    let conflict_dialog = conflicts.first().cloned().map(|conflict| {
        let answer = |choice: u8| {
            let (conflicts, upload, entries, conflict) =
                (conflicts.clone(), upload.clone(), entries.clone(), conflict.clone());
            Callback::from(move |_: MouseEvent| {
                conflicts.set(conflicts.iter().skip(1).cloned().collect());
                match choice {
                    0 => upload.emit((conflict.file.clone(), conflict.name.clone(), true)),
                    1 => upload.emit((conflict.file.clone(), free_name(&conflict.name, &entries), false)),
                    _ => {}
                }
            })
        };
        html! {
            <div class="conflict" role="dialog">
                <span>{ format!("{} already exists here.", conflict.name) }</span>
                <button class="replace" onclick={answer(0)}>{ "Replace" }</button>
                <button class="keep-both" onclick={answer(1)}>{ "Keep both" }</button>
                <button class="skip" onclick={answer(2)}>{ "Skip" }</button>
            </div>
        }
    });
    // The fields are filled when what they show changes, never on a re-render (a status update
    // every second): a `value` attribute would put back its value over what is being typed.
    {
        let field = field.clone();
        use_effect_with((*edit).clone(), move |current| {
            let value = match current {
                Some(Edit::NewFolder) | None => String::new(),
                Some(Edit::Rename(name)) => name.clone(),
                Some(Edit::Chmod(_, mode)) => format!("{mode:o}"),
            };
            if let Some(input) = field.cast::<web_sys::HtmlInputElement>() {
                input.set_value(&value);
            }
        });
    }
    {
        let path_field = path_field.clone();
        use_effect_with((*shown).clone(), move |shown| {
            if let Some(input) = path_field.cast::<web_sys::HtmlInputElement>() {
                input.set_value(shown);
            }
        });
    }
    let edit_form = (*edit).clone().map(|current| {
        let label = match &current {
            Edit::NewFolder => "New folder",
            Edit::Rename(_) => "Rename to",
            Edit::Chmod(..) => "Mode (octal)",
        };
        let cancel = {
            let edit = edit.clone();
            Callback::from(move |_: MouseEvent| edit.set(None))
        };
        html! {
            <form class="edit" onsubmit={on_edit_submit.clone()}>
                <label>{ label }<input ref={field.clone()} name="value" autofocus=true /></label>
                <button type="submit">{ "OK" }</button>
                <button type="button" onclick={cancel}>{ "Cancel" }</button>
            </form>
        }
    });

    let button = |label: &'static str, class: &'static str, enabled: bool, onclick: Callback<MouseEvent>| {
        html! { <button {class} disabled={!enabled} {onclick}>{ label }</button> }
    };
    let up = {
        let (go, shown) = (go.clone(), shown.clone());
        Callback::from(move |_: MouseEvent| go.emit(fs::parent(&shown)))
    };
    let new_folder = {
        let edit = edit.clone();
        Callback::from(move |_: MouseEvent| edit.set(Some(Edit::NewFolder)))
    };
    let choose_files = {
        let file_input = file_input.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(input) = file_input.cast::<web_sys::HtmlElement>() {
                input.click();
            }
        })
    };
    let choose_folder = {
        let folder_input = folder_input.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(input) = folder_input.cast::<web_sys::HtmlElement>() {
                input.click();
            }
        })
    };
    let download_selected = {
        let (rows, selected, download, shown) = (Rc::clone(&rows), selected.clone(), download.clone(), shown.clone());
        Callback::from(move |_: MouseEvent| {
            for entry in rows.iter().filter(|e| selected.contains(&e.name)) {
                let folder = entry.is_dir_like();
                let name = if folder { format!("{}.tar.gz", entry.name) } else { entry.name.clone() };
                download.emit((fs::join(&shown, &entry.name), name, if folder { 0 } else { entry.size }, folder));
            }
        })
    };
    let rename = {
        let (edit, single) = (edit.clone(), single.clone());
        Callback::from(move |_: MouseEvent| {
            if let Some(name) = single.clone() {
                edit.set(Some(Edit::Rename(name)));
            }
        })
    };
    let chmod = {
        let (edit, single, rows) = (edit.clone(), single.clone(), Rc::clone(&rows));
        Callback::from(move |_: MouseEvent| {
            if let Some(entry) = single.as_ref().and_then(|name| rows.iter().find(|e| &e.name == name)) {
                edit.set(Some(Edit::Chmod(entry.name.clone(), entry.mode)));
            }
        })
    };
    let delete = {
        let delete_selected = delete_selected.clone();
        Callback::from(move |_: MouseEvent| delete_selected.emit(()))
    };
    let terminal_here = {
        let (on_terminal_here, shown) = (props.on_terminal_here.clone(), shown.clone());
        Callback::from(move |_: MouseEvent| on_terminal_here.emit((*shown).clone()))
    };
    let toggle_hidden = {
        let hidden = hidden.clone();
        Callback::from(move |_: Event| hidden.set(!*hidden))
    };
    let connected = props.generation > 0;
    let some = !selection.is_empty();
    // Type a path and press Enter to go there.
    let on_path = {
        let go = go.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let field = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlFormElement>().ok());
            let input = field
                .and_then(|f| f.elements().named_item("path"))
                .and_then(|i| i.dyn_into::<web_sys::HtmlInputElement>().ok());
            if let Some(input) = input {
                go.emit(input.value());
            }
        })
    };

    html! {
        <div class={classes!("pane", "files", (!props.active).then_some("hidden"))}
            data-path={(*shown).clone()} data-count={entries.len().to_string()} data-loading={loading.to_string()}>
            <div class="file-tools">
                { button("Up", "up", connected, up) }
                <nav class="crumbs">{ for crumbs }</nav>
                <form class="goto" onsubmit={on_path}>
                    <input ref={path_field} name="path" class="path" placeholder="Go to a path" />
                </form>
                <label class="hidden-toggle"><input type="checkbox" checked={*hidden} onchange={toggle_hidden} />{ "Hidden files" }</label>
            </div>
            <div class="file-tools">
                { button("New folder", "mkdir", connected, new_folder) }
                { button("Upload", "upload", connected, choose_files) }
                <input ref={file_input} type="file" multiple=true class="file-input" onchange={on_files_chosen} />
                { button("Upload folder", "upload-folder", connected, choose_folder) }
                <input ref={folder_input.clone()} type="file" webkitdirectory=true class="file-input folder-input" onchange={on_folder_chosen} />
                { button("Download", "download", some, download_selected) }
                { button("Rename", "rename", single.is_some(), rename) }
                { button("Permissions", "chmod", single.is_some(), chmod) }
                { button("Delete", "delete", some, delete) }
                { button("Terminal here", "terminal-here", connected, terminal_here) }
                if undo.is_some() { <button class="undo" onclick={restore}>{ "Undo delete" }</button> }
            </div>
            { for edit_form }
            { for conflict_dialog }
            if let Some(message) = &*error { <p class="error file-error" role="alert">{ message }</p> }
            <div class="file-header">
                { header("Name", SortBy::Name) }
                { header("Size", SortBy::Size) }
                { header("Modified", SortBy::Modified) }
                <span class="mode">{ "Mode" }</span>
            </div>
            <div class="file-list" ref={list_ref} tabindex="0" onkeydown={on_key} onscroll={on_scroll}
                ondrop={on_drop} ondragover={on_drag_over}>
                <div class="file-rows" style={format!("height: {}px", rows.len() as i32 * ROW_PX)}>
                    { for drawn }
                </div>
            </div>
            if !transfers.is_empty() { <ul class="transfers">{ for transfer_rows }</ul> }
        </div>
    }
}

/// A directory's entries (every page), and its path as the host resolved it.
async fn list(link: &Link, path: &str) -> Result<(String, Vec<Entry>), String> {
    let pages = Rc::new(RefCell::new((Vec::<u8>::new(), Vec::<Entry>::new())));
    let request = Request::Fs(FsRequest::List { path: path.to_owned() });
    let held = Rc::clone(&pages);
    let take = move |bytes: &[u8]| {
        let (buffer, entries) = &mut *held.borrow_mut();
        buffer.extend_from_slice(bytes);
        entries.extend(take_pages(buffer)?);
        Ok(())
    };
    let answer = crate::read::to_end(link, &request, |_| Ok(()), take).await?;
    let Response::Fs(FsResponse::Listing { path, .. }) = answer else {
        return Err(format!("unexpected answer {answer:?}"));
    };
    let entries = std::mem::take(&mut pages.borrow_mut().1);
    Ok((path, entries))
}
