//! The relay serves the built web app, and a real headless Chromium runs it.

use std::path::Path;
use std::time::Duration;

use tether_tests::http::request;
use tether_tests::webdriver::Browser;
use tether_tests::{wait_until, Relay};

const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn relay_serves_the_app_health_and_nothing_else() {
    let relay = Relay::start();
    let health = request("GET", &format!("{}healthz", relay.url), None).expect("healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    let index = request("GET", &relay.url, None).expect("index");
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("text/html; charset=utf-8"));
    // A strict policy: the page's own scripts (by hash) and origin only, never framed.
    let policy = index.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("'sha256-") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    // No page that opened the app keeps a handle on its tab (to change its fragment).
    assert_eq!(index.header("cross-origin-opener-policy"), Some("same-origin"));
    let html = index.text();
    // The WASM module Trunk built is served with the type browsers need to stream-compile it.
    let wasm = html
        .split(['"', '\''])
        .find(|s| s.ends_with(".wasm"))
        .unwrap_or_else(|| panic!("index.html names no .wasm file:\n{html}"));
    let wasm_response = request("GET", &format!("{}{}", relay.url, wasm.trim_start_matches('/')), None).expect("wasm");
    assert_eq!(wasm_response.status, 200);
    assert_eq!(wasm_response.header("content-type"), Some("application/wasm"));
    assert_eq!(&wasm_response.body[..4], b"\0asm");

    for path in ["../Cargo.toml", "..%2fCargo.toml", "%2e%2e/%2e%2e/etc/passwd", "no-such-file"] {
        let response = request("GET", &format!("{}{path}", relay.url), None).expect("request");
        assert_eq!(response.status, 404, "{path} must not be served");
    }
}

#[test]
fn the_relay_binary_alone_serves_the_app_it_was_built_with_and_web_root_overrides_it() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Started in an empty directory with no --web-root: the app is the one inside the binary,
    // byte for byte the app that was built.
    let log = tether_tests::Scratch::file(scratch, "embedded-relay.log");
    let relay = Relay::start_logging(&[], &log);
    let index = request("GET", &relay.url, None).expect("index");
    assert_eq!(index.status, 200);
    let built = std::fs::read(tether_tests::web_root().join("index.html")).expect("the built index.html");
    assert_eq!(index.body, built, "the embedded index.html is the built one");
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("serving the web app built into this binary"), "{said}");

    // --web-root serves another directory instead.
    let root = tether_tests::Scratch::dir(scratch, "other-web-root");
    std::fs::write(root.join("index.html"), "<html>another app</html>").expect("index.html");
    let root_arg = root.display().to_string();
    let other =
        Relay::start_with("127.0.0.1:0", &[std::ffi::OsStr::new("--web-root"), std::ffi::OsStr::new(&root_arg)]);
    let served = request("GET", &other.url, None).expect("index");
    assert_eq!(served.text(), "<html>another app</html>");
    // One that holds no app is refused at start, in words.
    let empty = tether_tests::Scratch::dir(scratch, "empty-web-root");
    let mut command = tether_tests::relay_command();
    command.args(["--listen", "127.0.0.1:0", "--web-root"]).arg(&*empty);
    let out = tether_tests::process::output_within(command, Duration::from_secs(20), "a relay with an empty web root");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no index.html"), "{}", tether_tests::stderr_of(&out));
}

#[test]
fn the_start_page_says_how_to_pair() {
    let relay = Relay::start();
    let browser = Browser::start(Path::new(env!("CARGO_TARGET_TMPDIR")));
    browser.goto(&relay.url);
    // The WASM app has started and rendered the (empty) host list with its hint.
    let text = wait_until(PAGE_TIMEOUT, "the start page", || {
        let text = browser.execute("return document.body.innerText", serde_json::json!([]));
        text.as_str().filter(|t| t.contains("No hosts yet")).map(str::to_owned)
    });
    assert!(text.contains("tether pair"), "{text}");
    // An invite link that is not one says so instead of showing a blank page.
    browser.goto(&format!("{}#not-a-host", relay.url));
    wait_until(PAGE_TIMEOUT, "the bad-link message", || {
        let text = browser.execute("return document.body.innerText", serde_json::json!([]));
        text.as_str().filter(|t| t.contains("This link does not work")).map(|_| ())
    });

    let errors = browser.console_errors();
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

#[test]
fn half_sent_requests_are_closed_rather_than_held_for_ever() {
    use std::io::{Read, Write};
    let relay = Relay::start();
    // Fifty clients that send half a request head and stop (a slowloris).
    let mut sockets: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut socket = std::net::TcpStream::connect(relay.address()).expect("connect");
            socket.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\n").expect("half a head");
            socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
            socket
        })
        .collect();
    // The relay gives a head 10 s; every socket is closed (or reset) well within a minute.
    wait_until(Duration::from_secs(60), "the relay to close half-sent requests", || {
        sockets.retain_mut(|socket| {
            let mut byte = [0u8; 1];
            match socket.read(&mut byte) {
                Ok(0) => false,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => true,
                _ => false,
            }
        });
        sockets.is_empty().then_some(())
    });
    // A whole request still gets its answer.
    let health = request("GET", &format!("{}healthz", relay.url), None).expect("healthz");
    assert_eq!(health.status, 200);
}
