//! The page's clock and timers: `setTimeout` that cancels when dropped, sleeping, yielding to
//! the page between chunks of bulk work, and the monotonic milliseconds the protocol runs on.
//! All of it works in the page and in its link worker alike (the globals both scopes have).

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout, catch)]
    fn set_timeout(callback: &js_sys::Function, ms: i32) -> Result<i32, JsValue>;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: i32);
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// A `setTimeout` that is cancelled when dropped.
pub struct Timer {
    handle: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    pub fn after(ms: u32, callback: impl FnOnce() + 'static) -> Option<Timer> {
        let mut callback = Some(callback);
        let closure = Closure::<dyn FnMut()>::new(move || {
            if let Some(callback) = callback.take() {
                callback();
            }
        });
        let handle = set_timeout(closure.as_ref().unchecked_ref(), ms.min(i32::MAX as u32) as i32).ok()?;
        Some(Timer { handle, _callback: closure })
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        clear_timeout(self.handle);
    }
}

/// Wait `ms` on a timer (a task of its own, so the page handles its events first).
pub async fn sleep_ms(ms: u32) {
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let timer = Timer::after(ms, move || {
        let _ = tx.send(());
    });
    let _ = rx.await;
    drop(timer);
}

/// Let the page handle what waits (a key pressed meanwhile, a frame to paint), then go on: a
/// message posted to ourselves is a task of its own, and unlike a chained `setTimeout(0)` it is
/// never held back 4 ms, so a bulk sender that yields before every chunk is not slowed by it.
pub async fn yield_to_page() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| match web_sys::MessageChannel::new() {
        Ok(channel) => {
            // The port lives while its message is queued; its handler resolves the promise.
            channel.port1().set_onmessage(Some(&resolve));
            if channel.port2().post_message(&JsValue::NULL).is_err() {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
        Err(_) => {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Milliseconds on this scope's monotonic clock (`performance.now()`), what the connection's
/// timers run on: `Date.now()` jumps with the wall clock (NTP, a suspended laptop). The page and
/// its link worker each count from their own start: their times are never compared.
pub fn now_ms() -> u64 {
    performance_now() as u64
}
