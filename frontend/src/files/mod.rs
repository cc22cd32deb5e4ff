//! The Files tab: the host's files over the same connection as the terminals.
//!
//! - A directory is listed as a stream of pages (`fs/list`) into a [`Listing`] (order, hidden
//!   files, selection, cursor: `tether_protocol::listing`, unit-tested there); [`list`] draws
//!   only the rows in view, so 10,000 entries open and scroll smoothly.
//! - Keyboard: ↑/↓ move, Enter opens (a folder here, a file in an editor tab), Backspace goes up, Space
//!   selects, Delete deletes, F2 renames.
//! - Uploads (button or drop) go through `upload`; each has a progress bar with its rate and a
//!   cancel button ([`transfers`]). A name that exists asks first: replace, keep both, or skip.
//! - Downloads stream to disk through the service worker (`download`).
//! - Delete moves to the host's trash, with Undo.
//! - The container's `data-path` is the directory shown and `data-count` its number of entries:
//!   what a test (or a curious user) can check.
//!
//! This module holds the pane's state and does what is asked of the host; [`toolbar`], [`list`]
//! and [`transfers`] only draw and report.

mod list;
mod toolbar;
mod transfers;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tether_protocol::api::{Request, Response};
use tether_protocol::fs::{self, take_pages, Entry, FsRequest, FsResponse};
use tether_protocol::listing::{Listing, Move, SortBy};
use yew::prelude::*;

use crate::link::Link;
use list::{FileList, ListAction};
use toolbar::{Edit, EditForm, Tool, Toolbar};
use transfers::{Book, Choice, ConflictDialog, Transfer, Transfers};

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

/// A change of the listing shown, from the list, the toolbar or a new listing.
pub enum Change {
    Listed(String, Vec<Entry>),
    SortBy(SortBy),
    ShowHidden(bool),
    Click(usize, bool),
    Move(Move),
    Toggle,
    SelectAll,
}

/// The listing as the pane's state: one change at a time, so a listing that answers while a
/// key is pressed loses neither.
#[derive(Default, PartialEq)]
struct Shown(Listing);

impl Reducible for Shown {
    type Action = Change;

    fn reduce(self: Rc<Self>, change: Change) -> Rc<Self> {
        let mut listing = self.0.clone();
        match change {
            Change::Listed(path, entries) => listing.listed(path, entries),
            Change::SortBy(by) => listing.sort_by(by),
            Change::ShowHidden(show) => listing.set_show_hidden(show),
            Change::Click(index, add) => listing.click(index, add),
            Change::Move(to) => listing.move_cursor(to),
            Change::Toggle => listing.toggle_at_cursor(),
            Change::SelectAll => listing.select_all(),
        }
        Rc::new(Shown(listing))
    }
}

/// A file to upload whose name is taken: the user picks.
#[derive(Clone, PartialEq)]
struct Conflict {
    file: web_sys::File,
    name: String,
}

/// A byte count as people read it (1000-based, as file managers show sizes).
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

#[function_component(FilesPane)]
pub fn files_pane(props: &Props) -> Html {
    // What was asked ("" = home); the listing says what the host resolved it to.
    let asked = use_state(String::new);
    let shown = use_reducer(Shown::default);
    let loading = use_state(|| false);
    let error = use_state(|| None::<String>);
    let reload = use_state(|| 0u32);
    let edit = use_state(|| None::<Edit>);
    let undo = use_state(|| None::<Vec<String>>);
    let conflicts = use_state(Vec::<Conflict>::new);
    let transfers = use_state(Vec::<Transfer>::new);
    // Async work updates the transfers through the book, never through a stale handle.
    let book = {
        let transfers = transfers.setter();
        use_memo((), move |_| Book::new(Callback::from(move |lines| transfers.set(lines))))
    };
    // The newest listing asked for: an older one that answers late is dropped, never shown over it.
    let latest_listing = use_memo((), |_| Cell::new(0u32));
    let listing = &shown.0;

    // List the directory whenever it, the connection or a change asks for it.
    {
        let latest = Rc::clone(&latest_listing);
        let (link, shown, loading, error) = (props.link.clone(), shown.dispatcher(), loading.clone(), error.clone());
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
                        Ok((resolved, entries)) => {
                            // Only names that are one path component, each once: a host that
                            // lists `../x` or `/etc/x` never gets them opened, saved or sent to.
                            let (entries, refused) = fs::check_listing(entries);
                            shown.dispatch(Change::Listed(resolved, entries));
                            error.set((!refused.is_empty()).then(|| left_out(&refused)));
                        }
                        Err(message) => error.set(Some(message)),
                    }
                    loading.set(false);
                });
            }
        });
    }

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
    let path = listing.path().to_owned();
    let link = props.link.clone();
    // Run a file request; its error (or none) shows, and the listing is refreshed.
    let call = {
        let (link, error, refresh) = (link.clone(), error.clone(), refresh.clone());
        move |requests: Vec<FsRequest>, then: Box<dyn FnOnce(Vec<FsResponse>)>| {
            let (link, error, refresh) = (link.clone(), error.clone(), refresh.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let mut answers = Vec::new();
                let mut failed = None;
                for request in requests {
                    match link.call_fs(request).await {
                        Ok(answer) => answers.push(answer),
                        Err(message) => failed = Some(message),
                    }
                }
                error.set(failed);
                then(answers);
                refresh.emit(());
            });
        }
    };

    // Download a file, or a folder as an archive: its bytes as a stream, saved through the
    // browser's downloads.
    let download = {
        let (link, book, error, path) = (link.clone(), (*book).clone(), error.clone(), path.clone());
        move |entry: &Entry| {
            let folder = entry.is_dir_like();
            let name = if folder { format!("{}.tar.gz", entry.name) } else { entry.name.clone() };
            let at = fs::join(&path, &entry.name);
            let request = match folder {
                true => FsRequest::Archive { path: at },
                false => FsRequest::Read { path: at, offset: 0 },
            };
            let (id, _) = book.start(&name, false, if folder { 0 } else { entry.size });
            let (link, book, error) = (link.clone(), book.clone(), error.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let result = crate::download::save(&link, request, &name, book.progress(id)).await;
                book.ended(id, &result);
                if let Err(message) = result {
                    error.set(Some(message));
                }
            });
        }
    };

    // Upload a file into the directory shown; a taken name asks first.
    let upload = {
        let (link, book, refresh, conflicts, listing) =
            (link.clone(), (*book).clone(), refresh.clone(), conflicts.clone(), listing.clone());
        Callback::from(move |(file, name, overwrite): (web_sys::File, String, bool)| {
            if !overwrite && listing.has(&name) {
                let mut waiting = (*conflicts).clone();
                waiting.push(Conflict { file, name });
                conflicts.set(waiting);
                return;
            }
            let (id, cancel) = book.start(&name, true, file.size() as u64);
            let path = fs::join(listing.path(), &name);
            let (link, book, refresh) = (link.clone(), book.clone(), refresh.clone());
            wasm_bindgen_futures::spawn_local(async move {
                // A file from a folder (`name` is its path inside it): its directories first.
                if let Some((dir, _)) = path.rsplit_once('/').filter(|_| name.contains('/')) {
                    let _ = link.call_fs(FsRequest::Mkdir { path: dir.to_owned(), parents: true }).await;
                }
                let replace = crate::upload::Replace { overwrite, base: None };
                let source = crate::upload::Source::File(&file);
                let progress = book.progress(id);
                let result =
                    crate::upload::send(&link, source, &path, replace, &cancel, &progress).await.map_err(String::from);
                book.ended(id, &result);
                refresh.emit(());
            });
        })
    };
    let on_file = {
        let upload = upload.clone();
        Callback::from(move |(file, name): (web_sys::File, String)| upload.emit((file, name, false)))
    };

    let delete_selected = {
        let (call, undo, path) = (call.clone(), undo.clone(), path.clone());
        let names: Vec<String> = listing.selection().iter().map(|e| e.name.clone()).collect();
        move || {
            if names.is_empty() {
                return;
            }
            let requests =
                names.iter().map(|name| FsRequest::Delete { path: fs::join(&path, name), permanent: false }).collect();
            let undo = undo.clone();
            call(
                requests,
                Box::new(move |answers| {
                    let trashed: Vec<String> = answers
                        .into_iter()
                        .filter_map(|answer| match answer {
                            FsResponse::Trashed { trash_id } => Some(trash_id),
                            _ => None,
                        })
                        .collect();
                    undo.set((!trashed.is_empty()).then_some(trashed));
                }),
            );
        }
    };

    let on_action = {
        let (go, on_open_file, edit, path, delete_selected) =
            (go.clone(), props.on_open_file.clone(), edit.clone(), path.clone(), delete_selected.clone());
        Callback::from(move |action: ListAction| match action {
            // A name that is not UTF-8 cannot be named in a request; it is only shown.
            ListAction::Open(entry) if entry.raw_name.is_some() => {}
            ListAction::Open(entry) if entry.is_dir_like() => go.emit(fs::join(&path, &entry.name)),
            ListAction::Open(entry) => on_open_file.emit(fs::join(&path, &entry.name)),
            ListAction::Up => go.emit(fs::parent(&path)),
            ListAction::Delete => delete_selected(),
            ListAction::Rename(name) => edit.set(Some(Edit::Rename(name))),
        })
    };

    let on_tool = {
        let (go, edit, undo, path, shown, listing) =
            (go.clone(), edit.clone(), undo.clone(), path.clone(), shown.dispatcher(), listing.clone());
        let (call, on_terminal_here) = (call.clone(), props.on_terminal_here.clone());
        Callback::from(move |tool: Tool| match tool {
            Tool::Up => go.emit(fs::parent(&path)),
            Tool::NewFolder => edit.set(Some(Edit::NewFolder)),
            Tool::Download => listing.selection().into_iter().for_each(&download),
            Tool::Rename => {
                if let Some(entry) = listing.single() {
                    edit.set(Some(Edit::Rename(entry.name.clone())));
                }
            }
            Tool::Chmod => {
                if let Some(entry) = listing.single() {
                    edit.set(Some(Edit::Chmod(entry.name.clone(), entry.mode)));
                }
            }
            Tool::Delete => delete_selected(),
            Tool::TerminalHere => on_terminal_here.emit(path.clone()),
            Tool::ShowHidden(show) => shown.dispatch(Change::ShowHidden(show)),
            Tool::Undo => {
                let Some(ids) = (*undo).clone() else { return };
                undo.set(None);
                call(ids.into_iter().map(|trash_id| FsRequest::Restore { trash_id }).collect(), Box::new(|_| {}));
            }
        })
    };

    // The toolbar's field: new folder, rename, chmod.
    let edit_form = (*edit).clone().map(|current| {
        let on_submit = {
            let (edit, call, error, path, current) =
                (edit.clone(), call.clone(), error.clone(), path.clone(), current.clone());
            Callback::from(move |value: String| {
                edit.set(None);
                let request = match &current {
                    Edit::NewFolder => FsRequest::Mkdir { path: fs::join(&path, &value), parents: false },
                    Edit::Rename(from) => {
                        FsRequest::Rename { from: fs::join(&path, from), to: fs::join(&path, &value), overwrite: false }
                    }
                    Edit::Chmod(name, _) => match u32::from_str_radix(value.trim(), 8) {
                        Ok(mode) => FsRequest::Chmod { path: fs::join(&path, name), mode },
                        Err(_) => return error.set(Some(format!("{value}: not an octal mode (e.g. 644)"))),
                    },
                };
                call(vec![request], Box::new(|_| {}));
            })
        };
        let on_cancel = {
            let edit = edit.clone();
            Callback::from(move |_: ()| edit.set(None))
        };
        html! { <EditForm edit={current} {on_submit} {on_cancel} /> }
    });

    let conflict_dialog = conflicts.first().cloned().map(|conflict| {
        let name = conflict.name.clone();
        let on_choice = {
            let (conflicts, upload, listing) = (conflicts.clone(), upload.clone(), listing.clone());
            Callback::from(move |choice: Choice| {
                conflicts.set(conflicts.iter().skip(1).cloned().collect());
                match choice {
                    Choice::Replace => upload.emit((conflict.file.clone(), conflict.name.clone(), true)),
                    Choice::KeepBoth => upload.emit((conflict.file.clone(), listing.free_name(&conflict.name), false)),
                    Choice::Skip => {}
                }
            })
        };
        html! { <ConflictDialog {name} {on_choice} /> }
    });

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

    let on_change = {
        let shown = shown.dispatcher();
        Callback::from(move |change: Change| shown.dispatch(change))
    };

    html! {
        <div class={classes!("pane", "files", (!props.active).then_some("hidden"))}
            data-path={path.clone()} data-count={listing.len().to_string()} data-loading={loading.to_string()}>
            <Toolbar path={path.clone()} connected={props.generation > 0} selected={listing.selection().len()}
                show_hidden={listing.show_hidden()} can_undo={undo.is_some()} on_go={go} {on_tool} {on_file} />
            { for edit_form }
            { for conflict_dialog }
            if let Some(message) = &*error { <p class="error file-error" role="alert">{ message }</p> }
            <FileList listing={listing.clone()} {on_change} {on_action} {on_drop} />
            <Transfers transfers={(*transfers).clone()} />
        </div>
    }
}

/// What the page says about names a listing had that it left out.
fn left_out(refused: &[(String, String)]) -> String {
    let names: Vec<String> = refused.iter().take(3).map(|(name, why)| format!("{name:?} ({why})")).collect();
    let more = refused.len().saturating_sub(names.len());
    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
    format!("The host listed names that are not shown: {}{more}", names.join(", "))
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
