//! The key bar: Esc, Tab, Ctrl and the arrows for screens without a keyboard that has them
//! (shown on narrow screens by the style sheet). Ctrl latches: the next key typed in the
//! terminal goes out as its control character. Keys are encoded by the protocol crate's `Key`,
//! as `tether send key:…` does, so both follow the program's cursor-key mode alike.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tether_protocol::input::Key;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub ctrl_latch: Rc<Cell<bool>>,
    /// The active terminal's key sink.
    pub keys: Rc<RefCell<Option<Callback<Key>>>>,
}

#[function_component(KeyBar)]
pub fn key_bar(props: &Props) -> Html {
    let ctrl_on = use_state(|| false);
    let send = |key: Key| {
        let keys = props.keys.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(keys) = keys.borrow().as_ref() {
                keys.emit(key);
            }
        })
    };
    let toggle_ctrl = {
        let (latch, ctrl_on) = (props.ctrl_latch.clone(), ctrl_on.clone());
        Callback::from(move |_: MouseEvent| {
            let on = !latch.get();
            latch.set(on);
            ctrl_on.set(on);
        })
    };
    let ctrl_class = classes!("key", (*ctrl_on && props.ctrl_latch.get()).then_some("on"));
    html! {
        <nav class="keybar" aria-label="keys">
            <button class="key" onclick={send(Key::Esc)}>{ "Esc" }</button>
            <button class="key" onclick={send(Key::Tab)}>{ "Tab" }</button>
            <button class={ctrl_class} onclick={toggle_ctrl}>{ "Ctrl" }</button>
            <button class="key" onclick={send(Key::Left)} aria-label="left">{ "←" }</button>
            <button class="key" onclick={send(Key::Up)} aria-label="up">{ "↑" }</button>
            <button class="key" onclick={send(Key::Down)} aria-label="down">{ "↓" }</button>
            <button class="key" onclick={send(Key::Right)} aria-label="right">{ "→" }</button>
        </nav>
    }
}
