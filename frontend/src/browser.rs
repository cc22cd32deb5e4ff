//! What the page asks of the browser itself: randomness, a GPU for WebGL, the clipboard, a
//! confirmation dialog.

use tether_protocol::handshake::HandshakeEntropy;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen]
extern "C" {
    /// `crypto.getRandomValues`, which the page and its link worker both have.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(bytes: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Fresh randomness for a handshake, from the browser's `crypto.getRandomValues`.
pub fn entropy() -> Result<HandshakeEntropy, String> {
    HandshakeEntropy::generate(|bytes| {
        get_random_values(bytes).map(|_| ()).map_err(|_| "crypto.getRandomValues failed".to_owned())
    })
}

/// A random number (for jitter, not for keys): 0 when the browser cannot give one.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match get_random_values(&mut bytes) {
        Ok(_) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}

/// Whether WebGL 2 is available and drawn by a GPU (the renderer string says which).
pub fn hardware_webgl2() -> bool {
    const UNMASKED_RENDERER: u32 = 0x9246; // WEBGL_debug_renderer_info
    const RENDERER: u32 = 0x1F01;
    let Some(canvas) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.create_element("canvas").ok())
        .and_then(|c| c.dyn_into::<web_sys::HtmlCanvasElement>().ok())
    else {
        return false;
    };
    let Some(context) = canvas.get_context("webgl2").ok().flatten() else { return false };
    let call = |name: &str, arg: JsValue| -> JsValue {
        js_sys::Reflect::get(&context, &name.into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .and_then(|f| f.call1(&context, &arg).ok())
            .unwrap_or(JsValue::NULL)
    };
    let debug_info = call("getExtension", "WEBGL_debug_renderer_info".into());
    let which = if debug_info.is_null() { RENDERER } else { UNMASKED_RENDERER };
    let renderer = call("getParameter", which.into()).as_string().unwrap_or_default().to_ascii_lowercase();
    !["swiftshader", "llvmpipe", "software"].iter().any(|soft| renderer.contains(soft))
}

/// `navigator.clipboard.writeText(text)`, where the browser allows it (secure contexts).
pub fn copy_to_clipboard(text: &str) {
    let Some(window) = web_sys::window() else { return };
    let clipboard = js_sys::Reflect::get(&window.navigator(), &"clipboard".into()).unwrap_or(JsValue::UNDEFINED);
    let write =
        js_sys::Reflect::get(&clipboard, &"writeText".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    if let Some(write) = write {
        // The promise is left to itself: a refused copy changes nothing on the page.
        let _ = write.call1(&clipboard, &text.into());
    }
}

/// Ask the user to confirm (the browser's own dialog); `false` when it cannot be asked.
pub fn confirm(question: &str) -> bool {
    web_sys::window().and_then(|w| w.confirm_with_message(question).ok()).unwrap_or(false)
}
