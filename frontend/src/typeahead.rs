//! Predictive echo on the page: the prediction (`tether_protocol::typeahead`) drawn over a
//! terminal, and the setting that turns it off.
//!
//! Invariants:
//! - The prediction is an element laid over xterm.js's screen at the cursor, never bytes
//!   written into the terminal: hiding it leaves exactly what the host sent.
//! - It is drawn only where the keys would really show: the main screen, scrolled to the bottom,
//!   a line of one-cell characters with room for what is predicted. Anywhere else the
//!   predictions are dropped (and the line is not trusted until it echoes again).
//! - The element says what it shows (`data-text`: the predicted characters; `data-cursor`: the
//!   predicted cursor's column) for tests and curious users.

use std::cell::Cell;

use tether_protocol::typeahead::Prediction;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use crate::xterm::{CursorView, Terminal};

/// `localStorage` key: "off" turns predictive echo off on this browser.
const SETTING_KEY: &str = "tether.typeahead";

thread_local!(static ENABLED: Cell<Option<bool>> = const { Cell::new(None) });

/// Whether predictive echo is on (it is unless turned off here).
pub fn enabled() -> bool {
    ENABLED.with(|cached| {
        if let Some(on) = cached.get() {
            return on;
        }
        let stored = storage().and_then(|s| s.get_item(SETTING_KEY).ok().flatten());
        let on = stored.as_deref() != Some("off");
        cached.set(Some(on));
        on
    })
}

fn set_enabled(on: bool) {
    ENABLED.with(|cached| cached.set(Some(on)));
    if let Some(storage) = storage() {
        let _ = storage.set_item(SETTING_KEY, if on { "on" } else { "off" });
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// The status bar's switch.
#[function_component(TypeaheadToggle)]
pub fn typeahead_toggle() -> Html {
    let on = use_state(enabled);
    let toggle = {
        let on = on.clone();
        Callback::from(move |_| {
            set_enabled(!*on);
            on.set(!*on);
        })
    };
    let title = match *on {
        true => "Predictive echo on: on a slow link, what you type shows at once (underlined until the host echoes it). Click to turn off.",
        false => "Predictive echo off: what you type shows when the host echoes it. Click to turn on.",
    };
    html! {
        <button class={classes!("typeahead-toggle", (*on).then_some("on"))} id="typeahead-toggle"
            aria-pressed={on.to_string()} {title} onclick={toggle}>{ "⌨" }</button>
    }
}

/// The element a prediction is drawn in, over one terminal's screen.
pub struct Overlay {
    element: web_sys::HtmlElement,
    shown: bool,
}

impl Overlay {
    /// Lay an (empty) overlay over the screen inside `parent` (the terminal's container).
    pub fn create(parent: &web_sys::HtmlElement) -> Option<Overlay> {
        let screen: web_sys::HtmlElement = parent.query_selector(".xterm-screen").ok()??.dyn_into().ok()?;
        let document = web_sys::window()?.document()?;
        let element: web_sys::HtmlElement = document.create_element("div").ok()?.dyn_into().ok()?;
        element.set_class_name("typeahead");
        element.set_attribute("aria-hidden", "true").ok()?;
        screen.append_child(&element).ok()?;
        let mut overlay = Overlay { element, shown: true };
        overlay.hide();
        Some(overlay)
    }

    /// Whether a prediction is drawn now.
    pub fn shown(&self) -> bool {
        self.shown
    }

    pub fn hide(&mut self) {
        if !self.shown {
            return;
        }
        self.shown = false;
        let _ = self.element.set_attribute("style", "display: none");
        let _ = self.element.set_attribute("data-text", "");
        let _ = self.element.set_attribute("data-cursor", "");
    }

    /// Show `prediction` over the cursor's line; false (and nothing shown) where it cannot be
    /// drawn truly — the caller then drops the predictions.
    pub fn draw(&mut self, terminal: &Terminal, cursor: Option<&CursorView>, prediction: &Prediction) -> bool {
        if prediction.is_empty() {
            self.hide();
            return true;
        }
        let (cols, rows) = (terminal.cols(), terminal.rows());
        let fits = cursor.is_some_and(|c| {
            c.normal_screen
                && !c.scrolled_back
                && c.line.is_some()
                && prediction.start + prediction.cells.len() <= usize::from(cols)
        });
        // Wide characters would need two cells each: not predicted.
        let narrow = prediction.cells.iter().all(|c| unicode_width_is_one(c.ch));
        let (Some(cursor), true, true) = (cursor, fits, narrow) else {
            self.hide();
            return false;
        };
        let Some(screen) = self.element.parent_element() else { return false };
        let cell_width = f64::from(screen.client_width()) / f64::from(cols.max(1));
        let cell_height = f64::from(screen.client_height()) / f64::from(rows.max(1));
        let style = format!(
            "display: block; left: {}px; top: {}px; height: {cell_height}px; line-height: {cell_height}px",
            prediction.start as f64 * cell_width,
            f64::from(cursor.row) * cell_height
        );
        let _ = self.element.set_attribute("style", &style);
        // One cell per character, on the same grid as the screen: predicted ones underlined,
        // the predicted cursor as a block.
        let cells: String = prediction
            .cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let shown = match cell.ch {
                    '<' => "&lt;".to_owned(),
                    '>' => "&gt;".to_owned(),
                    '&' => "&amp;".to_owned(),
                    ' ' => "&nbsp;".to_owned(),
                    c => c.to_string(),
                };
                let class = match (prediction.start + i == prediction.cursor, cell.predicted && cell.ch != ' ') {
                    (true, _) => " class=\"cursor\"",
                    (false, true) => " class=\"typed\"",
                    (false, false) => "",
                };
                format!("<span{class} style=\"width:{cell_width}px\">{shown}</span>")
            })
            .collect();
        self.element.set_inner_html(&cells);
        let _ = self.element.set_attribute("data-text", &prediction.text());
        let _ = self.element.set_attribute("data-cursor", &prediction.cursor.to_string());
        self.shown = true;
        true
    }
}

/// Whether `c` takes one terminal cell (ASCII and most of Latin, Greek, Cyrillic; wide East
/// Asian characters and emoji take two).
pub fn unicode_width_is_one(c: char) -> bool {
    let wide = matches!(c as u32,
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1FAFF | 0x20000..=0x3FFFD);
    !wide && !c.is_control()
}
