//! The editor in a real Chromium over a real relay and agent: files opened from the Files tab
//! and from `tether open` in a terminal, saved with Ctrl+S byte for byte, refused over a file
//! changed on disk, and never written when they are not UTF-8 text.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;
use tether_tests::agent::{pair, Agent};
use tether_tests::page::{assert_no_console_errors, Page, PAGE};
use tether_tests::webdriver::Browser;
use tether_tests::{bin_path, marker, wait_until, Relay, Scratch};

/// WebDriver's Control key, and the key that releases it.
const CTRL: char = '\u{E009}';
const RELEASE: char = '\u{E000}';
const ENTER: char = '\u{E007}';
const END: char = '\u{E010}';

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A relay, a host whose shell is bash with an empty home and `tether` on its PATH (as it is for
/// anyone who installed it), its invite, a browser, and a fresh directory for the test's files.
fn setup() -> (Relay, Agent, String, Browser, Scratch) {
    let relay = Relay::start();
    let home = scratch().join(marker("home"));
    std::fs::create_dir_all(&home).expect("home");
    let bin_dir = bin_path("tether").parent().map(Path::to_path_buf).unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    let vars = [("SHELL", Path::new("/bin/bash")), ("HOME", &home), ("PATH", Path::new(&path))];
    let host = Agent::with_env(scratch(), &vars);
    let invite = pair(&host, &relay);
    let files = Scratch::dir(scratch(), "edited");
    (relay, host, invite, Browser::start(scratch()), files)
}

/// The editor pane of `path`, as a selector.
fn pane_of(path: &Path) -> String {
    format!(".editor-pane[data-path='{}']", path.display())
}

/// Open `path` from the Files tab (a double-click on its row) and wait for the editor.
fn open_from_files(page: &Page, path: &Path) {
    page.click(".tab.files-tab");
    page.files_go(path.parent().expect("a file in a directory"));
    let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
    page.files_select(name);
    let clicked = page.script(
        "const r = [...document.querySelectorAll('.pane.files .file')].find(r => r.dataset.name === arguments[0]); \
         r.dispatchEvent(new MouseEvent('dblclick', { bubbles: true })); return true",
        json!([name]),
    );
    assert_eq!(clicked, json!(true));
    wait_ready(page, path);
}

fn wait_ready(page: &Page, path: &Path) {
    let pane = pane_of(path);
    wait_until(PAGE, &format!("the editor of {}", path.display()), || {
        let state = page.script(
            "const p = document.querySelector(arguments[0]); \
             return p && p.querySelector('.cm-content') ? p.dataset.state : (p ? p.dataset.state : null)",
            json!([pane]),
        );
        match state.as_str() {
            Some("ready") => Some(()),
            Some("failed") => panic!("the editor failed: {}", pane_text(page, path, ".error")),
            _ => None,
        }
    });
}

fn pane_text(page: &Page, path: &Path, css: &str) -> String {
    let script = "const e = document.querySelector(`${arguments[0]} ${arguments[1]}`); return e ? e.textContent : ''";
    page.script(script, json!([pane_of(path), css])).as_str().unwrap_or_default().to_owned()
}

fn has(page: &Page, css: &str) -> bool {
    page.script("return !!document.querySelector(arguments[0])", json!([css])) == json!(true)
}

/// Type into the editor of `path`, where its cursor is.
fn type_in(browser: &Browser, path: &Path, keys: &str) {
    let content = wait_until(PAGE, "the editor's content", || browser.find(&format!("{} .cm-content", pane_of(path))));
    browser.send_keys(&content, keys);
}

/// Type at the end of the text (Ctrl+End first, as a user would).
fn type_at_end(browser: &Browser, path: &Path, keys: &str) {
    type_in(browser, path, &format!("{CTRL}{END}{RELEASE}{keys}"));
}

fn save(browser: &Browser, path: &Path) {
    type_in(browser, path, &format!("{CTRL}s{RELEASE}"));
}

fn wait_bytes(path: &Path, wanted: &[u8]) {
    let deadline = std::time::Instant::now() + PAGE;
    loop {
        let now = std::fs::read(path).unwrap_or_default();
        if now == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {} to hold {:?}; it holds {:?}",
            path.display(),
            String::from_utf8_lossy(wanted),
            String::from_utf8_lossy(&now)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The page's resources whose address contains `part`.
fn loaded(page: &Page, part: &str) -> usize {
    let script = "return performance.getEntriesByType('resource').filter(r => r.name.includes(arguments[0])).length";
    page.script(script, json!([part])).as_u64().unwrap_or(0) as usize
}

#[test]
fn an_edit_saved_with_ctrl_s_is_the_old_bytes_plus_the_edit_and_line_endings_stay() {
    let (_relay, _host, invite, browser, dir) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    // Nothing of the editor came with the page: it loads when the first editor opens.
    assert_eq!(loaded(&page, "/editor/"), 0, "the editor was loaded before any file was opened");

    let source = dir.join("main.rs");
    let old = b"fn main() {\n\tprintln!(\"hi\");\n}\n".to_vec();
    std::fs::write(&source, &old).expect("write");
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let inode_before = std::fs::metadata(&source).expect("stat").ino();
    open_from_files(&page, &source);
    assert!(loaded(&page, "/editor/editor.js") > 0, "the editor bundle was not loaded");
    let language = page
        .script("return document.querySelector(arguments[0] + ' .editor').dataset.language", json!([pane_of(&source)]));
    assert_eq!(language, json!("rust"), "the language picked for main.rs");
    type_at_end(&browser, &source, "// edited in the browser");
    let tab = format!(".tab.editor-tab[data-path='{}']", source.display());
    wait_until(PAGE, "the dirty marker", || has(&page, &format!("{tab} .dirty-marker")).then_some(()));

    // Closing a tab with unsaved text asks; saying no keeps it.
    page.script("window.confirm = () => false", json!([]));
    page.click(&format!("{tab} .close"));
    assert!(has(&page, &tab), "the dirty tab closed without asking");

    save(&browser, &source);
    let mut expected = old.clone();
    expected.extend_from_slice(b"// edited in the browser");
    wait_bytes(&source, &expected);
    // Saved by a rename over the old file (never written in place), with the old file's mode.
    let meta = std::fs::metadata(&source).expect("stat");
    assert_ne!(meta.ino(), inode_before, "the save wrote into the file instead of replacing it whole");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    wait_until(PAGE, "the dirty marker to go", || (!has(&page, &format!("{tab} .dirty-marker"))).then_some(()));
    assert!(pane_text(&page, &source, ".message").contains("Saved"));
    browser.screenshot(&scratch().join("screenshots").join("editor-saved.png"));

    // CRLF without a final newline: the edit, a new line included, uses the file's own endings.
    let crlf = dir.join("windows.txt");
    std::fs::write(&crlf, b"one\r\ntwo\r\nthree").expect("write");
    open_from_files(&page, &crlf);
    type_at_end(&browser, &crlf, &format!("!{ENTER}four"));
    save(&browser, &crlf);
    wait_bytes(&crlf, b"one\r\ntwo\r\nthree!\r\nfour");

    // A clean tab closes without asking.
    page.script("window.confirm = () => { throw new Error('asked for a clean tab'); }", json!([]));
    page.click(&format!(".tab.editor-tab[data-path='{}'] .close", crlf.display()));
    wait_until(PAGE, "the clean tab to close", || (!has(&page, &pane_of(&crlf))).then_some(()));
    assert_no_console_errors(&browser);
}

#[test]
fn a_file_changed_on_disk_warns_refuses_the_save_and_overwrite_then_writes() {
    let (_relay, _host, invite, browser, dir) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    let file = dir.join("shared.txt");
    std::fs::write(&file, b"v1\n").expect("write");
    open_from_files(&page, &file);
    type_at_end(&browser, &file, "mine");

    // Someone else writes the file: the page says so before any save.
    std::fs::write(&file, b"v2 from elsewhere\n").expect("write");
    let pane = pane_of(&file);
    wait_until(PAGE, "the changed-on-disk warning", || has(&page, &format!("{pane} .disk-warning")).then_some(()));

    // A save is refused, and the choice appears; the other writer's bytes stay.
    save(&browser, &file);
    wait_until(PAGE, "the conflict choice", || has(&page, &format!("{pane} .conflict")).then_some(()));
    assert_eq!(std::fs::read(&file).expect("read"), b"v2 from elsewhere\n");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tether-upload"))
        .collect();
    assert!(leftovers.is_empty(), "a refused save left {leftovers:?}");

    // Compare shows both versions side by side.
    page.click(&format!("{pane} .conflict .compare"));
    wait_until(PAGE, "the side-by-side diff", || {
        let text = pane_text(&page, &file, ".compare-view");
        (text.contains("v1") && text.contains("mine") && text.contains("v2 from elsewhere")).then_some(())
    });

    browser.screenshot(&scratch().join("screenshots").join("editor-compare.png"));

    // Overwrite writes ours.
    page.click(&format!("{pane} .conflict .overwrite"));
    wait_bytes(&file, b"v1\nmine");
    wait_until(PAGE, "the conflict to clear", || (!has(&page, &format!("{pane} .conflict"))).then_some(()));
    assert_no_console_errors(&browser);
}

#[test]
fn latin1_and_binary_files_open_read_only_and_nothing_writes_them() {
    let (_relay, _host, invite, browser, dir) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    let latin1 = dir.join("latin1.txt");
    let binary = dir.join("program.bin");
    std::fs::write(&latin1, b"caf\xe9 cr\xe8me\n").expect("write");
    let elf: Vec<u8> = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".iter().copied().chain(0..=255u8).collect();
    std::fs::write(&binary, &elf).expect("write");
    for (file, bytes, note) in [(&latin1, &b"caf\xe9 cr\xe8me\n"[..], "not valid UTF-8"), (&binary, &elf[..], "binary")]
    {
        open_from_files(&page, file);
        assert!(pane_text(&page, file, ".note.read-only").contains(note), "{}", pane_text(&page, file, ".editor-bar"));
        let pane = pane_of(file);
        let editable = page.script(
            "return document.querySelector(arguments[0] + ' .cm-content').getAttribute('contenteditable')",
            json!([pane]),
        );
        assert_eq!(editable, json!("false"), "{}", file.display());
        let disabled = page.script("return document.querySelector(arguments[0] + ' .save').disabled", json!([pane]));
        assert_eq!(disabled, json!(true));
        if file == &latin1 {
            assert!(pane_text(&page, file, ".cm-content").contains("caf\u{fffd} cr\u{fffd}me"), "shown as read");
        }
        // Ctrl+S as the editor hears it (typing is refused: the content is not editable), and
        // the disabled button: neither writes.
        page.script(
            "document.querySelector(arguments[0] + ' .cm-content').dispatchEvent(new KeyboardEvent('keydown', \
             { key: 's', code: 'KeyS', ctrlKey: true, bubbles: true, cancelable: true }))",
            json!([pane]),
        );
        page.click(&format!("{pane} .save"));
        assert_eq!(pane_text(&page, file, ".message"), "", "a save was started");
        assert_eq!(std::fs::read(file).expect("read"), bytes, "{} was written", file.display());
        assert!(!has(&page, &format!(".tab.editor-tab[data-path='{}'] .dirty-marker", file.display())));
    }
    assert_no_console_errors(&browser);
}

#[test]
fn tether_open_in_a_terminal_opens_the_file_in_the_browsers_showing_that_session() {
    let (_relay, host, invite, browser, dir) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    let landed = page.landed();
    let script = dir.join("tool.py");
    std::fs::write(&script, b"print('opened by tether open')\n").expect("write");

    // Typed into the browser's terminal, relative to the shell's directory.
    page.type_text(&format!("cd {} && tether open tool.py; echo open-exit-$?\n", dir.display()));
    wait_ready(&page, &script);
    wait_until(PAGE, "the file's text", || {
        pane_text(&page, &script, ".cm-content").contains("print('opened by tether open')").then_some(())
    });
    let active = page.script("return document.querySelector('.pane:not(.hidden)').dataset.path", json!([]));
    assert_eq!(active, json!(script.display().to_string()), "the editor tab is the one shown");
    page.click(&format!(".tab[data-session='{landed}']"));
    page.wait_text(Some(&landed), "tether open's exit status", |t| t.contains("open-exit-0"));

    // A session started from the CLI, shown in the browser: `tether open` inside it works too.
    let cli_session = host.start_shell();
    page.click(&format!(".session[data-session='{cli_session}'] .open"));
    page.wait_prompt(&cli_session);
    let other = dir.join("notes.md");
    std::fs::write(&other, b"# notes\n").expect("write");
    host.ok(&["send", &cli_session, &format!("tether open {}", other.display()), "key:enter"]);
    wait_ready(&page, &other);

    // With no browser showing the session, it says so and fails.
    let unseen = host.start(&["sleep", "600"]);
    let out = host.command().args(["open"]).arg(&other).env("TETHER_SESSION", &unseen).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no browser is showing"), "{out:?}");
    // Outside any session, it says what it needs.
    let out = host.command().args(["open"]).arg(&other).env_remove("TETHER_SESSION").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TETHER_SESSION"), "{out:?}");
    assert_no_console_errors(&browser);
}
