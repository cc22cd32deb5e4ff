//! The Files tab's transfers: a line per upload or download with its progress, rate and a
//! cancel button, kept where async work can reach it ([`Book`]); and the question an upload asks
//! when its name is taken.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use yew::prelude::*;

use super::human_bytes;

/// How often a transfer's progress bar is redrawn.
const PROGRESS_REDRAW_MS: f64 = 100.0;

/// A transfer's line in the list of transfers.
#[derive(Clone, PartialEq)]
pub struct Transfer {
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

/// The transfers as async work sees them (never a stale state handle); `changed` shows them.
#[derive(Clone)]
pub struct Book {
    log: Rc<RefCell<Vec<Transfer>>>,
    next_id: Rc<Cell<u32>>,
    changed: Callback<Vec<Transfer>>,
}

impl Book {
    /// A book that shows its lines through `changed`.
    pub fn new(changed: Callback<Vec<Transfer>>) -> Self {
        Self { log: Rc::default(), next_id: Rc::default(), changed }
    }

    /// A new line; its id and its cancel flag.
    pub fn start(&self, name: &str, upload: bool, total: u64) -> (u32, Rc<Cell<bool>>) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let cancel = Rc::new(Cell::new(false));
        let transfer = Transfer {
            id,
            name: name.to_owned(),
            upload,
            done: 0,
            total,
            started_ms: now(),
            ended: None,
            cancel: Rc::clone(&cancel),
        };
        self.log.borrow_mut().push(transfer);
        self.show();
        (id, cancel)
    }

    /// What hears transfer `id`'s bytes so far. The count is kept at once, the page redrawn at
    /// most every `PROGRESS_REDRAW_MS`: a redraw per chunk would take the page's thread from the
    /// terminal on the same connection (and from the transfer itself).
    pub fn progress(&self, id: u32) -> impl Fn(u64) + 'static {
        let book = self.clone();
        let redrawn_ms = Cell::new(f64::NEG_INFINITY);
        move |done| {
            let mut whole = false;
            if let Some(transfer) = book.log.borrow_mut().iter_mut().find(|t| t.id == id) {
                transfer.done = done;
                whole = done >= transfer.total;
            }
            if whole || now() - redrawn_ms.get() >= PROGRESS_REDRAW_MS {
                redrawn_ms.set(now());
                book.show();
            }
        }
    }

    pub fn ended(&self, id: u32, result: &Result<(), String>) {
        let how = result.clone().err().unwrap_or_default();
        if let Some(transfer) = self.log.borrow_mut().iter_mut().find(|t| t.id == id) {
            transfer.ended = Some(how);
        }
        self.show();
    }

    fn show(&self) {
        self.changed.emit(self.log.borrow().clone());
    }
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_default()
}

#[derive(Properties, PartialEq)]
pub struct TransfersProps {
    pub transfers: Vec<Transfer>,
}

#[function_component(Transfers)]
pub fn transfers(props: &TransfersProps) -> Html {
    if props.transfers.is_empty() {
        return html! {};
    }
    let rows = props.transfers.iter().map(|t| {
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
    html! { <ul class="transfers">{ for rows }</ul> }
}

/// What to do with an upload whose name is taken.
#[derive(Clone, Copy, PartialEq)]
pub enum Choice {
    Replace,
    KeepBoth,
    Skip,
}

#[derive(Properties, PartialEq)]
pub struct ConflictProps {
    pub name: String,
    pub on_choice: Callback<Choice>,
}

/// "NAME already exists here": replace, keep both, or skip.
#[function_component(ConflictDialog)]
pub fn conflict_dialog(props: &ConflictProps) -> Html {
    let answer = |choice: Choice| {
        let on_choice = props.on_choice.clone();
        Callback::from(move |_: MouseEvent| on_choice.emit(choice))
    };
    html! {
        <div class="conflict" role="dialog">
            <span>{ format!("{} already exists here.", props.name) }</span>
            <button class="replace" onclick={answer(Choice::Replace)}>{ "Replace" }</button>
            <button class="keep-both" onclick={answer(Choice::KeepBoth)}>{ "Keep both" }</button>
            <button class="skip" onclick={answer(Choice::Skip)}>{ "Skip" }</button>
        </div>
    }
}
