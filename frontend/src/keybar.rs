//! The key bar: Esc, Tab, Ctrl and the arrows for screens without a keyboard that has them
//! (shown on narrow screens by the style sheet). Ctrl latches: the next key typed in the
//! terminal goes out as its control character.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use yew::prelude::*;

/// `a`..`z` and `@[\]^_` to their control characters (Ctrl+C → 0x03); `?` → DEL.
pub fn control_byte(byte: u8) -> u8 {
    match byte {
        b'a'..=b'z' => byte - b'a' + 1,
        b'@'..=b'_' => byte - b'@',
        b'?' => 0x7f,
        other => other,
    }
}

/// Arrows are `ESC [ X` normally and `ESC O X` when the program asked for application cursor
/// keys (DECCKM), as vim and less do.
pub fn adjust_cursor_keys(mut bytes: Vec<u8>, application: bool) -> Vec<u8> {
    if application && bytes.len() == 3 && bytes[0] == 0x1b && bytes[1] == b'[' && (b'A'..=b'D').contains(&bytes[2]) {
        bytes[1] = b'O';
    }
    bytes
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub ctrl_latch: Rc<Cell<bool>>,
    pub keys: Rc<RefCell<Option<Callback<Vec<u8>>>>>,
}

#[function_component(KeyBar)]
pub fn key_bar(props: &Props) -> Html {
    let ctrl_on = use_state(|| false);
    let send = |bytes: &'static [u8]| {
        let keys = props.keys.clone();
        Callback::from(move |_: MouseEvent| {
            if let Some(keys) = keys.borrow().as_ref() {
                keys.emit(bytes.to_vec());
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
            <button class="key" onclick={send(b"\x1b")}>{ "Esc" }</button>
            <button class="key" onclick={send(b"\t")}>{ "Tab" }</button>
            <button class={ctrl_class} onclick={toggle_ctrl}>{ "Ctrl" }</button>
            <button class="key" onclick={send(b"\x1b[D")} aria-label="left">{ "←" }</button>
            <button class="key" onclick={send(b"\x1b[A")} aria-label="up">{ "↑" }</button>
            <button class="key" onclick={send(b"\x1b[B")} aria-label="down">{ "↓" }</button>
            <button class="key" onclick={send(b"\x1b[C")} aria-label="right">{ "→" }</button>
        </nav>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_cursor_modes() {
        assert_eq!(control_byte(b'c'), 0x03);
        assert_eq!(control_byte(b'['), 0x1b);
        assert_eq!(control_byte(b'1'), b'1');
        assert_eq!(adjust_cursor_keys(b"\x1b[A".to_vec(), true), b"\x1bOA");
        assert_eq!(adjust_cursor_keys(b"\x1b[A".to_vec(), false), b"\x1b[A");
    }
}
