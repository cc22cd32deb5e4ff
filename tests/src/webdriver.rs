//! Headless Chromium driven over the W3C WebDriver protocol through chromedriver.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::http;
use crate::process::Guard;

/// WebDriver's key for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Flags that make Chromium behave in a closed, root-run sandbox: no network chatter, no GPU.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
];

fn chromedriver_path() -> PathBuf {
    std::env::var_os("CHROMEDRIVER").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// One browser session. Dropping it ends the session and kills chromedriver and Chromium.
pub struct Browser {
    base: String,
    session: String,
    _driver: Guard,
}

impl Browser {
    /// Start chromedriver and a fresh headless Chromium whose profile lives under `scratch`.
    pub fn start(scratch: &Path) -> Browser {
        Browser::start_with(scratch, None, &[])
    }

    /// Like `start`, with more Chromium command-line flags (a bench comparing a browser policy).
    pub fn start_with_flags(scratch: &Path, flags: &[&str]) -> Browser {
        Browser::start_with(scratch, None, flags)
    }

    /// A Chromium whose profile is `profile`: one started again on it finds what the last one
    /// kept (IndexedDB, localStorage), as a person's browser does after a restart. Dropping the
    /// browser closes it cleanly (WebDriver's quit), so what it wrote is on disk.
    pub fn start_in_profile(profile: &Path) -> Browser {
        Browser::launch(profile, None, &[])
    }

    /// Like `start`, with downloads saved into `downloads` without asking.
    pub fn start_with_downloads(scratch: &Path, downloads: &Path) -> Browser {
        let browser = Browser::start_with(scratch, Some(downloads), &[]);
        let allow = json!({ "behavior": "allow", "downloadPath": downloads.display().to_string() });
        browser.cdp("Browser.setDownloadBehavior", allow);
        browser
    }

    fn start_with(scratch: &Path, downloads: Option<&Path>, flags: &[&str]) -> Browser {
        Browser::launch(&scratch.join(crate::marker("chromium-profile")), downloads, flags)
    }

    fn launch(profile: &Path, downloads: Option<&Path>, flags: &[&str]) -> Browser {
        let port = free_port();
        let mut command = Command::new(chromedriver_path());
        command.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
        let driver = Guard::spawn(command);
        let base = format!("http://127.0.0.1:{port}");
        crate::wait_until(Duration::from_secs(20), "chromedriver to answer /status", || {
            let response = http::request("GET", &format!("{base}/status"), None).ok()?;
            let status: Value = serde_json::from_slice(&response.body).ok()?;
            status["value"]["ready"].as_bool().filter(|ready| *ready)
        });

        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.extend(flags.iter().map(|s| s.to_string()));
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut options = json!({ "binary": chromium_path(), "args": args });
        if let Some(downloads) = downloads {
            options["prefs"] = json!({
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            });
        }
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
                "goog:loggingPrefs": { "browser": "ALL" },
            }}
        });
        let created = call(&base, "POST", "/session", Some(capabilities));
        let session = created["sessionId"].as_str().expect("session id").to_owned();
        Browser { base, session, _driver: driver }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(&self.base, method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// A Chrome DevTools Protocol command (through chromedriver).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call("POST", "/goog/cdp/execute", Some(json!({ "cmd": cmd, "params": params })))
    }

    /// Open a new tab and make it the current window (the one before it is then hidden, as a
    /// tab in the background is); returns the handle of the window that was current.
    pub fn open_tab(&self) -> String {
        let before = self.call("GET", "/window", None).as_str().expect("window handle").to_owned();
        let opened = self.call("POST", "/window/new", Some(json!({ "type": "tab" })));
        let handle = opened["handle"].as_str().expect("new window handle").to_owned();
        self.switch_to(&handle);
        before
    }

    /// Make window `handle` the current one (scripts run there).
    pub fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", Some(json!({ "handle": handle })));
    }

    /// The text of the dialog (`alert`, `confirm`) the page has open, if it has one.
    pub fn dialog_text(&self) -> Option<String> {
        let url = format!("{}/session/{}/alert/text", self.base, self.session);
        let response = http::request("GET", &url, None).ok().filter(|r| r.status < 300)?;
        let value: Value = serde_json::from_slice(&response.body).ok()?;
        value["value"].as_str().map(str::to_owned)
    }

    /// Answer the open dialog: OK (`true`) or Cancel.
    pub fn answer_dialog(&self, accept: bool) {
        let what = if accept { "accept" } else { "dismiss" };
        self.call("POST", &format!("/alert/{what}"), Some(json!({})));
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its result.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Run `script` asynchronously: it ends by calling `arguments[arguments.length - 1](result)`.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/async", Some(json!({ "script": script, "args": args })))
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let body = json!({ "using": "css selector", "value": css });
        let response =
            http::request("POST", &format!("{}/session/{}/element", self.base, self.session), Some(&body.to_string()))
                .ok()?;
        let value: Value = serde_json::from_slice(&response.body).ok()?;
        value["value"][ELEMENT_KEY].as_str().map(str::to_owned)
    }

    /// Type `text` into an element, as a user would.
    pub fn send_keys(&self, element: &str, text: &str) {
        self.call("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    /// Save a PNG screenshot of the page to `path` (directories created).
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.call("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().unwrap_or_default());
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Messages the page logged at SEVERE level (uncaught errors, failed loads, console.error).
    pub fn console_errors(&self) -> Vec<String> {
        let log = self.call("POST", "/se/log", Some(json!({ "type": "browser" })));
        log.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http::request("DELETE", &format!("{}/session/{}", self.base, self.session), None);
    }
}

/// Standard base64 (WebDriver's screenshot encoding), without a dependency for it.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut buffer, mut bits) = (Vec::with_capacity(text.len() * 3 / 4), 0u32, 0u32);
    for sextet in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// One WebDriver command; panics with the driver's own message on failure (tests only).
fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let response = http::request(method, &format!("{base}{path}"), body.as_deref())
        .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
    let value: Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|_| panic!("webdriver {method} {path}: non-JSON answer {}", response.text()));
    assert!(response.status < 300, "webdriver {method} {path} failed ({}): {}", response.status, value["value"]);
    value["value"].clone()
}

/// A port free right now on loopback. (Another process could take it before chromedriver binds;
/// on a test machine that race is theoretical, and chromedriver's /status wait would expose it.)
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}
