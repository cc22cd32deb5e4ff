//! System notifications (the Notification API) when a session needs the user and the page is
//! not being looked at; permission is asked only from a click (`ask`), never on load.

use wasm_bindgen::prelude::*;
use web_sys::{Notification, NotificationOptions, NotificationPermission};

/// Whether notifications may be shown: "granted", "denied", "default" (not asked yet) or
/// "unsupported".
pub fn permission() -> &'static str {
    if js_sys::Reflect::get(&js_sys::global(), &"Notification".into()).map_or(true, |n| n.is_undefined()) {
        return "unsupported";
    }
    match Notification::permission() {
        NotificationPermission::Granted => "granted",
        NotificationPermission::Denied => "denied",
        _ => "default",
    }
}

/// Ask for permission (call from a click); returns the answer as `permission` says it.
pub async fn ask() -> &'static str {
    if permission() == "unsupported" {
        return "unsupported";
    }
    if let Ok(promise) = Notification::request_permission() {
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
    permission()
}

/// Whether the user is not looking at the page: hidden (another tab, minimised) or unfocused.
pub fn page_unseen() -> bool {
    web_sys::window().and_then(|w| w.document()).is_none_or(|d| d.hidden() || !d.has_focus().unwrap_or(true))
}

/// Show a notification; `tag` replaces an earlier one with the same tag. Clicking it brings the
/// page to the front and calls `on_click`.
pub fn show(title: &str, body: &str, tag: &str, on_click: impl FnOnce() + 'static) {
    if permission() != "granted" {
        return;
    }
    let options = NotificationOptions::new();
    options.set_body(body);
    options.set_tag(tag);
    let Ok(notification) = Notification::new_with_options(title, &options) else { return };
    let shown = notification.clone();
    let click = Closure::once_into_js(move || {
        if let Some(window) = web_sys::window() {
            let _ = window.focus();
        }
        on_click();
        shown.close();
    });
    notification.set_onclick(Some(click.unchecked_ref()));
}
