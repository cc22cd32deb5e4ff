//! The Files tab's list: a column header that sorts, and the rows of a [`Listing`], only those
//! in view in the DOM (fixed-height rows over a spacer), so 10,000 entries open and scroll
//! smoothly. Clicks and keys become [`Change`]s of the listing or [`ListAction`]s for the pane;
//! the list keeps nothing but where it is scrolled.

use tether_protocol::fs::{Entry, Kind};
use tether_protocol::listing::{Listing, Move, SortBy};
use yew::prelude::*;

use super::{human_bytes, Change};

/// Height of one row, in CSS pixels (the list is virtualised on it).
const ROW_PX: i32 = 26;
/// Rows drawn beyond the visible ones, above and below.
const OVERSCAN_ROWS: i32 = 20;
/// The list's height before it has been measured, in CSS pixels.
const FIRST_VIEWPORT_PX: i32 = 600;

/// What the list asks of the pane.
pub enum ListAction {
    /// Enter or a double click: a folder is opened here, a file in an editor.
    Open(Entry),
    /// Backspace.
    Up,
    /// The Delete key.
    Delete,
    /// F2 on the row under the cursor.
    Rename(String),
}

#[derive(Properties, PartialEq)]
pub struct ListProps {
    pub listing: Listing,
    pub on_change: Callback<Change>,
    pub on_action: Callback<ListAction>,
    /// Something dropped on the list (files or folders to upload).
    pub on_drop: Callback<DragEvent>,
}

#[function_component(FileList)]
pub fn file_list(props: &ListProps) -> Html {
    let scroll = use_state(|| 0i32);
    let viewport = use_state(|| FIRST_VIEWPORT_PX);
    let list_ref = use_node_ref();
    let listing = &props.listing;

    // Keep the cursor's row in view when a key moves it.
    {
        let (list_ref, viewport) = (list_ref.clone(), *viewport);
        use_effect_with(listing.cursor(), move |&index| {
            if let Some(list) = list_ref.cast::<web_sys::Element>() {
                let top = index as i32 * ROW_PX;
                if top < list.scroll_top() {
                    list.set_scroll_top(top);
                } else if top + ROW_PX > list.scroll_top() + viewport {
                    list.set_scroll_top(top + ROW_PX - viewport);
                }
            }
        });
    }

    let on_key = {
        let (on_change, on_action, listing) = (props.on_change.clone(), props.on_action.clone(), listing.clone());
        Callback::from(move |e: KeyboardEvent| {
            let change = |change| on_change.emit(change);
            match e.key().as_str() {
                "ArrowDown" => change(Change::Move(Move::Down)),
                "ArrowUp" => change(Change::Move(Move::Up)),
                "Home" => change(Change::Move(Move::First)),
                "End" => change(Change::Move(Move::Last)),
                " " => change(Change::Toggle),
                "a" if e.ctrl_key() || e.meta_key() => change(Change::SelectAll),
                "Enter" => {
                    if let Some(entry) = listing.at_cursor() {
                        on_action.emit(ListAction::Open(entry.clone()));
                    }
                }
                "Backspace" => on_action.emit(ListAction::Up),
                "Delete" => on_action.emit(ListAction::Delete),
                "F2" => {
                    if let Some(entry) = listing.at_cursor() {
                        on_action.emit(ListAction::Rename(entry.name.clone()));
                    }
                }
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
    let on_drop = props.on_drop.clone();
    let on_drag_over = Callback::from(|e: DragEvent| e.prevent_default());

    let rows = listing.rows();
    let first = ((*scroll / ROW_PX) - OVERSCAN_ROWS).max(0) as usize;
    let last = (((*scroll + *viewport) / ROW_PX) + OVERSCAN_ROWS).max(0) as usize;
    let drawn = rows.iter().enumerate().skip(first).take(last.saturating_sub(first) + 1).map(|(index, entry)| {
        let class = classes!(
            "file",
            if entry.is_dir_like() { "dir" } else { "plain" },
            listing.is_selected(&entry.name).then_some("selected"),
            (index == listing.cursor()).then_some("cursor")
        );
        let onclick = {
            let on_change = props.on_change.clone();
            Callback::from(move |e: MouseEvent| on_change.emit(Change::Click(index, e.ctrl_key() || e.meta_key())))
        };
        let ondblclick = {
            let (on_action, entry) = (props.on_action.clone(), entry.clone());
            Callback::from(move |_: MouseEvent| on_action.emit(ListAction::Open(entry.clone())))
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

    let header = |label: &str, key: SortBy| {
        let (by, ascending) = listing.sort();
        let arrow = match (by == key, ascending) {
            (false, _) => "",
            (true, true) => " ▲",
            (true, false) => " ▼",
        };
        let on_change = props.on_change.clone();
        let onclick = Callback::from(move |_: MouseEvent| on_change.emit(Change::SortBy(key)));
        html! { <button class="sort" {onclick}>{ format!("{label}{arrow}") }</button> }
    };

    html! {
        <>
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
        </>
    }
}

fn size_text(entry: &Entry) -> String {
    match entry.kind {
        Kind::Dir => String::new(),
        _ => human_bytes(entry.size),
    }
}

/// A time as the browser's locale writes it.
fn when(ms: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    String::from(date.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED))
}
