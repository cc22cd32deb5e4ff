//! The web app as a test sees it: a page in a real Chromium, read and driven through small
//! scripts (what is on screen, the status line, the tabs), and the host a page talks to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::agent::Agent;
use crate::webdriver::Browser;
use crate::{marker, wait_until};

/// Page work (WASM start, SRP, first prompt) takes well under a second when healthy.
pub const PAGE: Duration = Duration::from_secs(30);

/// A host agent whose shell is bash with an empty home, run under `wrapper`; and that home. An
/// empty home: this machine's dotfiles must not decide whether a prompt appears (a `pyenv
/// rehash` in ~/.bashrc, killed mid-way by an earlier test, left a lock that hung every new bash
/// for a minute).
pub fn bash_host(scratch: &Path, wrapper: &[&str]) -> (Agent, PathBuf) {
    let home = scratch.join(marker("home"));
    std::fs::create_dir_all(&home).expect("home");
    (Agent::wrapped(scratch, &[("SHELL", Path::new("/bin/bash")), ("HOME", &home)], wrapper), home)
}

/// The browser's view of the page, through small scripts.
pub struct Page<'a>(pub &'a Browser);

impl Page<'_> {
    pub fn script(&self, body: &str, args: Value) -> Value {
        self.0.execute(body, args)
    }

    pub fn status(&self) -> String {
        self.script("return (document.getElementById('status') || {}).textContent || ''", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn wait_status(&self, wanted: &str) -> String {
        wait_until(PAGE, &format!("the status to say {wanted:?}"), || {
            let status = self.status();
            status.contains(wanted).then_some(status)
        })
    }

    pub fn click(&self, css: &str) {
        let found =
            self.script("const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e", json!([css]));
        assert_eq!(found, json!(true), "nothing to click at {css}");
    }

    /// The visible text of the terminal of `session` (the active one when `None`).
    pub fn terminal_text(&self, session: Option<&str>) -> String {
        // What is on screen: the viewport's lines of the terminal's buffer.
        let script = "const pane = arguments[0] ? document.querySelector(`.pane[data-session='${arguments[0]}']`) \
                      : document.querySelector('.pane:not(.hidden)'); \
                      const term = pane && pane.querySelector('.terminal').xterm; if (!term) return ''; \
                      const buf = term.buffer.active; const lines = []; \
                      for (let i = buf.viewportY; i < buf.viewportY + term.rows; i++) { \
                        const line = buf.getLine(i); lines.push(line ? line.translateToString(true) : ''); } \
                      return lines.join('\\n')";
        self.script(script, json!([session])).as_str().unwrap_or_default().to_owned()
    }

    /// A terminal attribute (`data-seq`: bytes written; `data-ended`).
    pub fn terminal_attr(&self, session: &str, name: &str) -> Option<String> {
        let script = "const t = document.querySelector(`.pane[data-session='${arguments[0]}'] .terminal`); \
                      return t ? t.getAttribute(arguments[1]) : null";
        self.script(script, json!([session, name])).as_str().map(str::to_owned)
    }

    pub fn active_session(&self) -> Option<String> {
        self.script(
            "const p = document.querySelector('.pane:not(.hidden)'); return p ? p.dataset.session : null",
            json!([]),
        )
        .as_str()
        .map(str::to_owned)
    }

    /// Wait until the terminal's text passes `check`; on time-out, show what it did say.
    pub fn wait_text(&self, session: Option<&str>, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + PAGE;
        loop {
            let text = self.terminal_text(session);
            if check(&text) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; the terminal shows:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Type into the active terminal as a user would.
    pub fn type_text(&self, text: &str) {
        let input =
            wait_until(PAGE, "the terminal's input", || self.0.find(".pane:not(.hidden) .xterm-helper-textarea"));
        self.0.send_keys(&input, text);
    }

    pub fn tabs(&self) -> Vec<String> {
        let ids = self.script(
            "return [...document.querySelectorAll('.tab[data-session]')].map(t => t.dataset.session)",
            json!([]),
        );
        serde_json::from_value(ids).unwrap_or_default()
    }

    pub fn wait_prompt(&self, id: &str) {
        self.wait_text(Some(id), "a shell prompt", |t| t.lines().any(|l| l.trim_end().ends_with(['$', '#'])));
    }

    /// Opening the invite lands in a terminal: wait for it and its prompt; returns the session.
    pub fn landed(&self) -> String {
        self.wait_status("connected via");
        let id = wait_until(PAGE, "the first terminal tab", || self.active_session());
        self.wait_prompt(&id);
        id
    }

    /// "New shell", then wait for its prompt; returns the session id.
    pub fn new_shell(&self) -> String {
        let before = self.tabs();
        self.click(".sessions .new");
        let id = wait_until(PAGE, "a new tab", || self.active_session().filter(|id| !before.contains(id)));
        self.wait_prompt(&id);
        id
    }

    /// The Files tab's listing attribute (`data-path`, `data-count`, `data-loading`).
    pub fn files_attr(&self, name: &str) -> String {
        let script = "const f = document.querySelector('.pane.files'); return f ? f.getAttribute(arguments[0]) : null";
        self.script(script, json!([name])).as_str().unwrap_or_default().to_owned()
    }

    /// Go to `dir` in the Files tab (typed into its path field) and wait for its listing.
    pub fn files_go(&self, dir: &Path) {
        let field = wait_until(PAGE, "the path field", || self.0.find(".pane.files .goto .path"));
        self.script("document.querySelector('.pane.files .goto .path').value = ''", json!([]));
        self.0.send_keys(&field, &format!("{}\n", dir.display()));
        let wanted = dir.display().to_string();
        wait_until(PAGE, &format!("the listing of {wanted}"), || {
            (self.files_attr("data-path") == wanted && self.files_attr("data-loading") == "false").then_some(())
        });
    }

    /// Click the row named `name` (selecting it alone).
    pub fn files_select(&self, name: &str) {
        wait_until(PAGE, &format!("the row {name}"), || {
            let found = self.script(
                "const r = [...document.querySelectorAll('.pane.files .file')].find(r => r.dataset.name === arguments[0]); \
                 if (r) r.click(); return !!r",
                json!([name]),
            );
            (found == json!(true)).then_some(())
        });
    }
}

pub fn assert_no_console_errors(browser: &Browser) {
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

/// Benches: type `count` keys one at a time into the active terminal (as xterm.js's own input;
/// a `cat` there echoes them) and time each until its echo moved the cursor and was rendered.
/// Returns p50 and p99 in ms, and how many samples.
pub fn echo_in_page(browser: &Browser, count: usize) -> (f64, f64, usize) {
    let samples = browser.execute_async(ECHO_IN_PAGE, json!([count]));
    let mut samples: Vec<f64> = serde_json::from_value(samples).expect("samples");
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100], samples.len())
}

const ECHO_IN_PAGE: &str = "
const [count, done] = [arguments[0], arguments[arguments.length - 1]];
const term = document.querySelector('.pane:not(.hidden) .terminal').xterm;
const samples = [];
const cursor = () => `${term.buffer.active.cursorY + term.buffer.active.baseY}:${term.buffer.active.cursorX}`;
function one() {
  if (samples.length >= count) { done(samples); return; }
  const before = cursor();
  const started = performance.now();
  const sub = term.onRender(() => {
    if (cursor() !== before) { sub.dispose(); samples.push(performance.now() - started); setTimeout(one, 20); }
  });
  term.input('k', true);
}
one();
";
