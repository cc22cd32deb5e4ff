//! The Tether web app. For now: the page shell with a live xterm.js terminal. Pairing and the
//! encrypted connection to a host arrive with the browser-app work; until then the terminal says
//! so and echoes what is typed, which proves input and rendering end to end.

mod xterm;

use wasm_bindgen::prelude::*;
use yew::prelude::*;

use xterm::{FitAddon, Terminal};

/// Shown until the app can connect to a host.
const BANNER: &str =
    "Tether \u{2014} not connected.\r\nOpen an invite link from `tether pair` to reach a host.\r\n\r\n";

#[function_component(App)]
fn app() -> Html {
    let container = use_node_ref();
    {
        let container = container.clone();
        use_effect_with((), move |_| {
            let mounted = container.cast::<web_sys::HtmlElement>().map(mount_terminal);
            move || drop(mounted)
        });
    }
    html! {
        <main class="app">
            <header class="bar">
                <span class="brand">{ "Tether" }</span>
                <span class="status" id="status">{ "not connected" }</span>
            </header>
            <div class="terminal" id="terminal" ref={container}></div>
        </main>
    }
}

/// A terminal attached to the page, with the listeners that must live exactly as long as it.
struct MountedTerminal {
    terminal: Terminal,
    input: xterm::Disposable,
    _on_input: Closure<dyn FnMut(String)>,
    _on_resize: Closure<dyn FnMut()>,
}

impl Drop for MountedTerminal {
    fn drop(&mut self) {
        self.input.dispose_listener();
        self.terminal.dispose();
    }
}

fn mount_terminal(parent: web_sys::HtmlElement) -> MountedTerminal {
    let options = js_sys::Object::new();
    let set = |key: &str, value: JsValue| {
        // Setting a property on a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&options, &key.into(), &value);
    };
    set("cursorBlink", true.into());
    set("fontSize", 14.into());
    set("scrollback", 10_000.into());
    let terminal = Terminal::new(&options);
    terminal.open(&parent);
    let fit = FitAddon::create().ok();
    if let Some(fit) = &fit {
        terminal.load_addon(fit);
        fit.fit();
    }
    terminal.write_bytes(BANNER.as_bytes());
    terminal.focus();

    // Local echo until a host is connected: carriage return becomes a new line.
    let echo_target = terminal.clone();
    let on_input = Closure::<dyn FnMut(String)>::new(move |data: String| {
        let echoed = data.replace('\r', "\r\n");
        echo_target.write_bytes(echoed.as_bytes());
    });
    let input = terminal.on_data(on_input.as_ref().unchecked_ref());

    let on_resize = Closure::<dyn FnMut()>::new(move || {
        if let Some(fit) = &fit {
            fit.fit();
        }
    });
    if let Some(window) = web_sys::window() {
        let _ = window.add_event_listener_with_callback("resize", on_resize.as_ref().unchecked_ref());
    }
    MountedTerminal { terminal, input, _on_input: on_input, _on_resize: on_resize }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
