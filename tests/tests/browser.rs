//! The web app over a real relay and agent, driven in a real headless Chromium: open the invite,
//! use terminals, survive a relay restart, take big output — with no console errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tether_tests::agent::{pair, Agent};
use tether_tests::page::{assert_no_console_errors, bash_host, Page, PAGE};
use tether_tests::webdriver::Browser;
use tether_tests::{marker, wait_until, Relay, Scratch};

/// Enough for 20 MB to cross relay and page on a loaded 2-core machine in a debug build.
const BULK: Duration = Duration::from_secs(180);

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A relay, a host paired with it, its invite, and a browser. The host's shell is bash (the
/// tests type `$RANDOM`) with an empty home (see `bash_host`).
fn setup() -> (Relay, Agent, String, Browser) {
    let relay = Relay::start();
    let (host, _) = bash_host(scratch(), &[]);
    let invite = pair(&host, &relay);
    (relay, host, invite, Browser::start(scratch()))
}

/// Like `setup`, with the browser's downloads saved into the returned directory.
fn setup_downloading() -> (Relay, Agent, String, Browser, Scratch) {
    let relay = Relay::start();
    let (host, _) = bash_host(scratch(), &[]);
    let invite = pair(&host, &relay);
    let downloads = Scratch::dir(scratch(), "downloads");
    let browser = Browser::start_with_downloads(scratch(), &downloads);
    (relay, host, invite, browser, downloads)
}

fn screenshot(browser: &Browser, name: &str) -> PathBuf {
    let path = scratch().join("screenshots").join(format!("{name}.png"));
    browser.screenshot(&path);
    path
}

#[test]
fn the_invite_opens_a_terminal_on_the_host() {
    let (_relay, _host, invite, browser) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    // The cursor blinks while nobody types and holds still while someone does (a blink
    // restarted per key would cost every echo a frame): what it did, looked at every 20 ms.
    let term = "document.querySelector('.pane:not(.hidden) .terminal').xterm";
    page.script(
        &format!("window.blinkSeen = new Set(); setInterval(() => blinkSeen.add({term}.options.cursorBlink), 20)"),
        json!([]),
    );
    page.type_text("echo tether-$RANDOM\n");
    let text = page.wait_text(None, "echo's output", |t| {
        t.lines().any(|l| {
            l.trim_end().strip_prefix("tether-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
    });
    assert_eq!(page.script("return blinkSeen.has(false)", json!([])), json!(true), "steady while typing");
    wait_until(PAGE, "the cursor to blink again after typing", || {
        (page.script(&format!("return {term}.options.cursorBlink"), json!([])) == json!(true)).then_some(())
    });
    let shot = screenshot(&browser, "invite-terminal");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000), "screenshot {}", shot.display());
    // The secret has left the address bar (it stays in this tab's session storage only).
    let url = page.script("return location.href", json!([]));
    let secret = invite.rsplit('.').next().unwrap_or_default();
    assert!(!url.as_str().unwrap_or_default().contains(secret), "{url}\n{text}");

    // The header and the browser's tab name the host; its id is on hover.
    let host_id = invite.split('#').nth(1).and_then(|f| f.split('.').next()).unwrap_or_default().to_owned();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned();
    let named = wait_until(PAGE, "the header to name the host", || {
        let header = page.script(
            "const h = document.querySelector('.bar .host-name'); \
             return h ? [h.textContent.trim(), h.title, document.title] : null",
            json!([]),
        );
        (header[0] == json!(hostname)).then_some(header)
    });
    assert!(named[1].as_str().is_some_and(|t| t.contains(&host_id)), "{named}");
    assert!(named[2].as_str().is_some_and(|t| t.starts_with(&hostname)), "{named}");

    // Something else changes the fragment to another host (a page that opened this tab, a
    // link): the page asks first, and Cancel keeps this host's workspace and address.
    let other = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    page.script("location.hash = arguments[0]", json!([format!("#{other}.{}", "A".repeat(32))]));
    let asked = wait_until(Duration::from_secs(20), "the page to ask before switching hosts", || browser.dialog_text());
    assert!(asked.contains(other) && asked.contains(&host_id), "{asked}");
    browser.answer_dialog(false);
    assert_eq!(page.script("return location.hash", json!([])), json!(format!("#{host_id}")));
    page.type_text("echo still-here-$((40+2))\n");
    page.wait_text(None, "the same terminal after Cancel", |t| t.lines().any(|l| l.trim_end() == "still-here-42"));
    assert_no_console_errors(&browser);
}

#[test]
fn a_wrong_secret_is_refused_clearly_and_a_stopped_agent_shows_offline() {
    let (relay, host, invite, browser) = setup();
    let page = Page(&browser);
    let (base, secret) = invite.rsplit_once('.').expect("invite");
    let wrong: String = secret.chars().rev().collect();
    browser.goto(&format!("{base}.{wrong}"));
    let status = page.wait_status("authentication failed");
    // A refusal is final: said as it is, not retried.
    assert!(status.starts_with("authentication failed") && status.contains("unknown or revoked invite"), "{status}");

    browser.goto(&invite);
    // The status bar names the path and, once a ping came back, the round trip over it.
    let status = page.wait_status("round trip");
    // (Relay first; direct once a data channel opens beside it: the WebRTC tests see to that.)
    let path = ["connected via relay · round trip ", "connected via direct · round trip "];
    assert!(path.iter().any(|p| status.starts_with(p)) && status.ends_with(" ms"), "{status}");
    host.ok(&["daemon", "stop", "--grace", "0s"]);
    page.wait_status("host offline");
    browser.goto(&relay.url);
    wait_until(PAGE, "the host list to show the host offline", || {
        let state =
            page.script("const h = document.querySelector('.host'); return h ? h.dataset.presence : null", json!([]));
        (state == json!("offline")).then_some(())
    });
    screenshot(&browser, "host-offline");
    assert_no_console_errors(&browser);
}

#[test]
fn two_tabs_work_independently_and_cli_sessions_appear() {
    let (_relay, host, invite, browser) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();

    // A session started from the CLI on the host appears in the list by itself.
    let from_cli = host.start_shell();
    wait_until(PAGE, "the CLI's session in the list", || {
        let found = page
            .script("return !!document.querySelector(`.session[data-session='${arguments[0]}']`)", json!([from_cli]));
        (found == json!(true)).then_some(())
    });
    page.click(&format!(".session[data-session='{from_cli}'] .open"));
    wait_until(PAGE, "its tab", || (page.active_session().as_deref() == Some(from_cli.as_str())).then_some(()));
    let other = page.new_shell();

    let (one, two) = (marker("tab-one"), marker("tab-two"));
    page.type_text(&format!("echo {two}\n"));
    page.wait_text(Some(&other), "output in the second tab", |t| t.lines().any(|l| l.trim_end() == two));
    page.click(&format!(".tab[data-session='{from_cli}']"));
    wait_until(PAGE, "the first tab again", || {
        (page.active_session().as_deref() == Some(from_cli.as_str())).then_some(())
    });
    page.type_text(&format!("echo {one}\n"));
    host.wait_for_line(&from_cli, &one);
    page.wait_text(Some(&from_cli), "output in the first tab", |t| t.lines().any(|l| l.trim_end() == one));
    assert!(!page.terminal_text(Some(&other)).contains(&one), "the second tab got the first tab's output");
    assert!(!page.terminal_text(Some(&from_cli)).contains(&two), "the first tab got the second tab's output");
    screenshot(&browser, "two-tabs");
    assert_no_console_errors(&browser);
}

#[test]
fn the_page_reconnects_after_a_relay_restart_and_shows_what_it_missed_once() {
    let (relay, host, invite, browser) = setup();
    let address = relay.address();
    let page = Page(&browser);
    browser.goto(&invite);
    let id = page.landed();

    drop(relay);
    page.wait_status("reconnecting");
    // Output produced while the relay is down (typed on the host itself).
    host.ok(&["send", &id, "echo during-$((20+22))", "key:enter"]);
    host.wait_for_line(&id, "during-42");
    let _relay = Relay::start_at(&address);
    page.wait_status("connected via");
    let text = page.wait_text(Some(&id), "the missed output", |t| t.lines().any(|l| l.trim_end() == "during-42"));
    assert_eq!(text.lines().filter(|l| l.trim_end() == "during-42").count(), 1, "shown once:\n{text}");
    assert_eq!(text.lines().filter(|l| l.contains("echo during-")).count(), 1, "command shown once:\n{text}");
    // And the terminal still works.
    page.type_text("echo after-$((40+2))\n");
    page.wait_text(Some(&id), "output after the restart", |t| t.lines().any(|l| l.trim_end() == "after-42"));
    assert_no_console_errors(&browser);
}

#[test]
fn big_output_reaches_the_terminal_completely() {
    let (_relay, host, invite, browser) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    let id = page.new_shell();

    // Every byte the session printed has been written to the terminal.
    let wait_all_written = |what: &str| {
        wait_until(BULK, what, || {
            let info = host.info(&id);
            let printed = info["output_bytes"].as_u64()?;
            let written: u64 = page.terminal_attr(&id, "data-seq")?.parse().ok()?;
            (written == printed && written > 0).then_some(written)
        })
    };
    page.type_text("seq 1 200000; echo seq-$((1+1))-done\n");
    host.wait_for_line(&id, "seq-2-done");
    page.wait_text(Some(&id), "seq's last line", |t| t.lines().any(|l| l.trim_end() == "seq-2-done"));
    wait_all_written("all of seq's output in the terminal");
    assert!(page.terminal_text(Some(&id)).lines().any(|l| l.trim_end() == "200000"), "last number visible");
    // Responsive: a script runs at once, and typing still echoes.
    page.type_text("echo still-$((3+4))\n");
    page.wait_text(Some(&id), "an echo after seq", |t| t.lines().any(|l| l.trim_end() == "still-7"));

    let file = Scratch::file(scratch(), "bulk.b64");
    let make = format!("head -c 15000000 /dev/urandom | base64 > {}", file.display());
    assert!(std::process::Command::new("sh").args(["-c", &make]).status().is_ok_and(|s| s.success()));
    page.type_text(&format!("cat {}; echo cat-$((5+5))-done\n", file.display()));
    host.wait_for_line(&id, "cat-10-done");
    let written = wait_all_written("all of the 20 MB cat in the terminal");
    assert!(written > 20_000_000, "{written} bytes");
    page.wait_text(Some(&id), "cat's end", |t| t.lines().any(|l| l.trim_end() == "cat-10-done"));
    let _ = std::fs::remove_file(&file);
    assert_no_console_errors(&browser);
}

#[test]
fn a_link_without_a_secret_asks_for_the_password() {
    let (_relay, host, invite, browser) = setup();
    let mut passwd = host.command();
    passwd.args(["passwd", "--stdin"]).stdin(std::process::Stdio::piped());
    let mut child = passwd.spawn().expect("passwd");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"correct horse battery staple\n")
        .expect("write");
    assert!(child.wait().expect("passwd").success());
    let address = invite.rsplit_once('.').map(|(address, _)| address.to_owned()).expect("address");
    let page = Page(&browser);
    browser.goto(&address);

    let field = wait_until(PAGE, "the password field", || browser.find("form.password input[type=password]"));
    browser.send_keys(&field, "wrong horse battery\n");
    wait_until(PAGE, "the wrong password's error", || {
        let text = page.script("return document.body.innerText", json!([]));
        text.as_str().filter(|t| t.contains("authentication failed")).map(|_| ())
    });
    let field = wait_until(PAGE, "the password field again", || browser.find("form.password input[type=password]"));
    browser.send_keys(&field, "correct horse battery staple\n");
    let id = page.landed();
    page.type_text("echo by-$((6*7))-password\n");
    page.wait_text(Some(&id), "output after signing in with the password", |t| {
        t.lines().any(|l| l.trim_end() == "by-42-password")
    });
    assert_no_console_errors(&browser);
}

#[test]
fn an_8_mib_paste_reaches_the_program_whole() {
    let (_relay, _host, invite, browser) = setup();
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    let target = Scratch::file(scratch(), "pasted");
    page.type_text(&format!("stty -echo; echo ready-$((6*7)); cat > {}\n", target.display()));
    page.wait_text(None, "cat to be reading", |t| t.lines().any(|l| l.trim_end() == "ready-42"));
    // 8 MiB of lines, pasted as a user would (xterm.js sends a paste as one input).
    let line = format!("{}\n", "0123456789abcdef".repeat(15));
    let lines = (8 << 20) / line.len();
    let pasted = page.script(
        "const term = document.querySelector('.pane:not(.hidden) .terminal').xterm; \
         const text = arguments[0].repeat(arguments[1]); term.paste(text); return text.length",
        json!([line, lines]),
    );
    let expected = (line.len() * lines) as u64;
    assert_eq!(pasted.as_u64(), Some(expected));
    wait_until(BULK, "all of the paste to reach the program", || {
        (std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0) == expected).then_some(())
    });
    assert!(std::fs::read(&target).expect("pasted") == line.repeat(lines).as_bytes(), "the bytes differ");
    assert_no_console_errors(&browser);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let mut digest = tether_protocol::file::FileDigest::new();
    digest.update(bytes);
    digest.finish()
}

/// Fill the toolbar's field and submit it.
fn files_submit(page: &Page, browser: &Browser, value: &str) {
    let field = wait_until(PAGE, "the edit field", || browser.find(".pane.files form.edit input"));
    page.script("document.querySelector('.pane.files form.edit input').value = ''", json!([]));
    browser.send_keys(&field, &format!("{value}\n"));
}

#[test]
fn the_files_tab_lists_uploads_downloads_renames_deletes_and_undoes() {
    let (_relay, _host, invite, browser, downloads) = setup_downloading();
    let page = Page(&browser);

    // A directory of 10,000 files, and one to download.
    let place = Scratch::file(scratch(), "files-place");
    let many = place.join("many");
    std::fs::create_dir_all(&many).expect("dirs");
    for n in 0..10_000 {
        std::fs::write(many.join(format!("file-{n:05}.txt")), "x").expect("many files");
    }
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(place.join("from-host.bin"), &payload).expect("write");

    browser.goto(&invite);
    page.landed();
    page.click(".tab.files-tab");
    page.files_go(&many);
    assert_eq!(page.files_attr("data-count"), "10000");
    let drawn = page.script("return document.querySelectorAll('.pane.files .file').length", json!([]));
    assert!(drawn.as_u64().is_some_and(|n| n > 0 && n < 200), "only the rows in view are drawn: {drawn}");

    // Download through Chromium's downloads, streamed by the service worker.
    wait_until(PAGE, "the download worker to control the page", || {
        (page.script("return !!navigator.serviceWorker.controller", json!([])) == json!(true)).then_some(())
    });
    page.files_go(&place);
    page.files_select("from-host.bin");
    page.click(".pane.files .download");
    let saved = downloads.join("from-host.bin");
    wait_until(BULK, "the download", || {
        let complete = std::fs::metadata(&saved).map(|m| m.len() == payload.len() as u64).unwrap_or(false);
        (complete && !downloads.join("from-host.bin.crdownload").exists()).then_some(())
    });
    assert_eq!(sha256_hex(&std::fs::read(&saved).expect("downloaded")), sha256_hex(&payload));

    // A folder comes as a .tar.gz built on the host, symlinks kept.
    let tree = place.join("tree");
    std::fs::create_dir_all(tree.join("inner")).expect("tree");
    std::fs::write(tree.join("inner/a.txt"), "in the tree\n").expect("write");
    std::os::unix::fs::symlink("inner/a.txt", tree.join("link")).expect("symlink");
    page.files_go(&place); // the same place again: listed again
    page.files_select("tree");
    page.click(".pane.files .download");
    let archive = downloads.join("tree.tar.gz");
    wait_until(BULK, "the folder's archive", || {
        (archive.exists() && !downloads.join("tree.tar.gz.crdownload").exists()).then_some(())
    });
    let unpacked = Scratch::file(scratch(), "unpacked");
    std::fs::create_dir_all(&unpacked).expect("unpack dir");
    let untar = std::process::Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(&unpacked).status();
    assert!(untar.expect("tar").success(), "the archive unpacks");
    assert_eq!(std::fs::read_to_string(unpacked.join("tree/inner/a.txt")).expect("file"), "in the tree\n");
    assert_eq!(std::fs::read_link(unpacked.join("tree/link")).expect("link"), Path::new("inner/a.txt"));

    // Upload through the file input.
    let local = Scratch::file(scratch(), "to-upload.bin");
    let upload: Vec<u8> = payload.iter().rev().copied().collect();
    std::fs::write(&local, &upload).expect("write");
    let input = browser.find(".pane.files .file-input").expect("the file input");
    browser.send_keys(&input, &local.display().to_string());
    let name = local.file_name().expect("name").to_string_lossy().into_owned();
    wait_until(BULK, "the upload", || {
        std::fs::read(place.join(&name)).ok().filter(|got| got.len() == upload.len()).map(|_| ())
    });
    assert_eq!(sha256_hex(&std::fs::read(place.join(&name)).expect("uploaded")), sha256_hex(&upload));

    // Upload by dropping a file on the list.
    let dropped = page.script(
        "const bytes = new Uint8Array(100000).map((_, i) => (i * 7) & 255); \
         const data = new DataTransfer(); data.items.add(new File([bytes], 'dropped.bin')); \
         const list = document.querySelector('.pane.files .file-list'); \
         list.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true })); return true",
        json!([]),
    );
    assert_eq!(dropped, json!(true));
    let expected: Vec<u8> = (0..100_000u32).map(|i| ((i * 7) & 255) as u8).collect();
    wait_until(BULK, "the dropped file", || {
        std::fs::read(place.join("dropped.bin")).ok().filter(|got| *got == expected).map(|_| ())
    });

    // A folder through the folder button: its files keep their places in it.
    let folder = Scratch::file(scratch(), "folder-up");
    std::fs::create_dir_all(folder.join("sub")).expect("folder");
    std::fs::write(folder.join("top.txt"), "top\n").expect("write");
    std::fs::write(folder.join("sub/deep.txt"), "deep\n").expect("write");
    let input = browser.find(".pane.files .folder-input").expect("the folder input");
    browser.send_keys(&input, &folder.display().to_string());
    let arrived = place.join(folder.file_name().expect("name"));
    wait_until(BULK, "the folder's files", || {
        let deep = std::fs::read_to_string(arrived.join("sub/deep.txt")).ok()?;
        let top = std::fs::read_to_string(arrived.join("top.txt")).ok()?;
        (deep == "deep\n" && top == "top\n").then_some(())
    });

    // The same name again: the page asks; "keep both" puts it beside the first.
    let input = browser.find(".pane.files .file-input").expect("the file input");
    browser.send_keys(&input, &local.display().to_string());
    wait_until(PAGE, "the question", || browser.find(".pane.files .conflict .keep-both"));
    page.click(".pane.files .conflict .keep-both");
    let (stem, ext) = name.rsplit_once('.').expect("an extension");
    let both = place.join(format!("{stem} (1).{ext}"));
    wait_until(BULK, "the second copy", || {
        std::fs::read(&both).ok().filter(|got| got.len() == upload.len()).map(|_| ())
    });
    assert_eq!(std::fs::read(place.join(&name)).expect("the first"), upload, "the first copy is untouched");

    // A cancelled upload leaves nothing behind.
    let slow = Scratch::file(scratch(), "cancelled.bin");
    std::fs::write(&slow, vec![7u8; 64 << 20]).expect("write");
    let input = browser.find(".pane.files .file-input").expect("the file input");
    browser.send_keys(&input, &slow.display().to_string());
    let slow_name = slow.file_name().expect("name").to_string_lossy().into_owned();
    wait_until(BULK, "the upload to start", || {
        std::fs::read_dir(&place).ok()?.flatten().find(|e| e.file_name().to_string_lossy().ends_with(".tether-upload"))
    });
    page.script(
        "const t = [...document.querySelectorAll('.pane.files .transfer')].find(t => t.dataset.name === arguments[0]); \
         t.querySelector('.cancel').click()",
        json!([slow_name]),
    );
    wait_until(BULK, "the cancel to clean up", || {
        let left = std::fs::read_dir(&place)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tether-upload"));
        (!left).then_some(())
    });
    assert!(!place.join(&slow_name).exists(), "a cancelled upload reached its path");

    // New folder, rename, delete, undo.
    page.click(".pane.files .mkdir");
    files_submit(&page, &browser, "made-here");
    wait_until(PAGE, "the new folder", || place.join("made-here").is_dir().then_some(()));
    page.files_select("dropped.bin");
    page.click(".pane.files .rename");
    files_submit(&page, &browser, "renamed.bin");
    wait_until(PAGE, "the rename", || place.join("renamed.bin").exists().then_some(()));
    assert!(
        !place.join("dropped.bin").exists(),
        "{:?}",
        std::fs::read_dir(&place).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    page.files_select("renamed.bin");
    page.click(".pane.files .delete");
    wait_until(PAGE, "the delete", || (!place.join("renamed.bin").exists()).then_some(()));
    wait_until(PAGE, "the undo button", || browser.find(".pane.files .undo"));
    page.click(".pane.files .undo");
    wait_until(PAGE, "the undo", || place.join("renamed.bin").exists().then_some(()));

    // An error is said in words on the page.
    page.files_go(&place);
    let field = browser.find(".pane.files .goto .path").expect("path field");
    page.script("document.querySelector('.pane.files .goto .path').value = ''", json!([]));
    browser.send_keys(&field, &format!("{}\n", place.join("nowhere").display()));
    let said = wait_until(PAGE, "the error", || {
        let text = page.script(
            "const e = document.querySelector('.pane.files .file-error'); return e ? e.textContent : null",
            json!([]),
        );
        text.as_str().map(str::to_owned)
    });
    assert!(said.contains("no such file or directory"), "{said}");
    assert_no_console_errors(&browser);
}

#[test]
fn a_permission_error_is_said_in_the_page() {
    let relay = Relay::start();
    // In a user namespace of its own the agent has no power over permissions (as a user
    // without root would not), so a directory of mode 000 is closed to it.
    let (host, home) = bash_host(scratch(), &["unshare", "--user"]);
    let invite = pair(&host, &relay);
    let locked = Scratch::file(scratch(), "locked");
    std::fs::create_dir_all(&locked).expect("dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let browser = Browser::start(scratch());
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    page.click(".tab.files-tab");
    // Once the home directory is listed, go to the locked one.
    wait_until(PAGE, "the home listing", || (page.files_attr("data-path") == home.display().to_string()).then_some(()));
    let field = wait_until(PAGE, "the path field", || browser.find(".pane.files .goto .path"));
    page.script("document.querySelector('.pane.files .goto .path').value = ''", json!([]));
    browser.send_keys(&field, &format!("{}\n", locked.display()));
    let said = wait_until(PAGE, "the error", || {
        let text = page.script(
            "const e = document.querySelector('.pane.files .file-error'); return e ? e.textContent : null",
            json!([]),
        );
        text.as_str().map(str::to_owned)
    });
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert!(said.contains("permission denied"), "{said}");
}

#[test]
fn a_browser_transfer_cut_off_goes_on_when_the_relay_is_back() {
    let (relay, _host, invite, browser, downloads) = setup_downloading();
    let address = relay.address();
    let page = Page(&browser);
    let place = Scratch::file(scratch(), "cut-place");
    std::fs::create_dir_all(&place).expect("dir");
    let bytes: Vec<u8> = (0..48u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(place.join("down.bin"), &bytes).expect("write");
    let local = Scratch::file(scratch(), "up.bin");
    std::fs::write(&local, &bytes).expect("write");
    browser.goto(&invite);
    page.landed();
    wait_until(PAGE, "the download worker to control the page", || {
        (page.script("return !!navigator.serviceWorker.controller", json!([])) == json!(true)).then_some(())
    });
    page.click(".tab.files-tab");
    page.files_go(&place);
    let mut relay = Some(relay);

    // Up: the relay goes away with part of the file on the host, and comes back.
    let input = browser.find(".pane.files .file-input").expect("the file input");
    browser.send_keys(&input, &local.display().to_string());
    wait_until(BULK, "part of the upload", || {
        std::fs::read_dir(&place).ok()?.flatten().find(|e| {
            e.file_name().to_string_lossy().ends_with(".tether-upload") && e.metadata().is_ok_and(|m| m.len() > 4 << 20)
        })
    });
    drop(relay.take());
    let uploaded = place.join(local.file_name().expect("name"));
    assert!(!uploaded.exists(), "a partial upload reached its path");
    relay = Some(Relay::start_at(&address));
    wait_until(BULK, "the upload to finish", || {
        std::fs::metadata(&uploaded).ok().filter(|m| m.len() == bytes.len() as u64).map(|_| ())
    });
    assert_eq!(sha256_hex(&std::fs::read(&uploaded).expect("uploaded")), sha256_hex(&bytes));

    // Down: the same, with the browser's download open meanwhile.
    page.wait_status("connected via");
    page.files_select("down.bin");
    page.click(".pane.files .download");
    // Part of the way: the page's own progress bar for it says how far.
    wait_until(BULK, "part of the download", || {
        let percent = page.script(
            "const t = [...document.querySelectorAll('.pane.files .transfer')].find(t => t.dataset.name === 'down.bin'); \
             return t ? Number(t.querySelector('progress').value) : 0",
            json!([]),
        );
        percent.as_f64().filter(|p| (10.0..90.0).contains(p))
    });
    drop(relay.take());
    let partial = || {
        std::fs::read_dir(&downloads).ok()?.flatten().find(|e| e.file_name().to_string_lossy().ends_with(".crdownload"))
    };
    let _relay = Relay::start_at(&address);
    let saved = downloads.join("down.bin");
    let mut polls = 0u32;
    let mut console_errors = Vec::new();
    wait_until(BULK, "the download to finish", || {
        polls += 1;
        // Every 30 s or so, what the page says of it (for a run that times out).
        if polls.is_multiple_of(300) {
            let rows = page.script(
                "return [...document.querySelectorAll('.pane.files .transfer')].map(t => t.textContent).join(' | ')",
                json!([]),
            );
            let partial_len = partial().and_then(|e| e.metadata().ok()).map(|m| m.len());
            // (A page that panicked says so only here: the log is read once, so keep it.)
            console_errors.extend(browser.console_errors());
            eprintln!(
                "still waiting: status {:?}, transfers {rows}, partial file {partial_len:?}, console errors {console_errors:?}",
                page.status()
            );
        }
        let complete = std::fs::metadata(&saved).is_ok_and(|m| m.len() == bytes.len() as u64);
        (complete && partial().is_none()).then_some(())
    });
    assert_eq!(sha256_hex(&std::fs::read(&saved).expect("downloaded")), sha256_hex(&bytes));
    assert!(console_errors.is_empty(), "browser console errors: {console_errors:#?}");
    assert_no_console_errors(&browser);
}

/// `tether devices ls --json` on the host.
fn devices(host: &Agent) -> Vec<serde_json::Value> {
    let listed: serde_json::Value =
        serde_json::from_str(&host.ok(&["devices", "ls", "--json"])).expect("devices ls --json");
    listed.as_array().cloned().unwrap_or_default()
}

/// Wait until the element at `css` exists; returns its text. On time-out, shows what the page
/// said instead.
fn wait_element(page: &Page, css: &str, what: &str) -> String {
    let deadline = std::time::Instant::now() + PAGE;
    loop {
        let found = page
            .script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null", json!([css]));
        if let Some(text) = found.as_str() {
            return text.to_owned();
        }
        if std::time::Instant::now() > deadline {
            let shown = page.script("return document.body.innerText", json!([]));
            panic!("timed out waiting for {what} ({css}); the page shows:\n{}", shown.as_str().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_remembered_browser_opens_its_host_from_the_relay_page_until_the_host_forgets_it() {
    let (relay, host, invite, first) = setup();
    drop(first);
    let profile = Scratch::dir(scratch(), "kept-profile");
    let host_id = invite.split('#').nth(1).and_then(|f| f.split('.').next()).expect("host id").to_owned();

    // Open the invite, and say yes to "Remember this browser on HOST?".
    let browser = Browser::start_in_profile(&profile);
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    let asked = wait_element(&page, ".remember[data-state='asking']", "the page to offer to remember this browser");
    assert!(asked.starts_with("Remember this browser on "), "{asked}");
    page.click(".remember .yes");
    wait_element(&page, ".remember[data-state='done']", "the host to remember this browser");
    let listed = devices(&host);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "Chrome on Linux", "{listed:?}");
    let device = listed[0]["id"].as_str().expect("id").to_owned();
    assert_no_console_errors(&browser);
    drop(browser);

    // The browser started again on the same profile: the relay's page lists the host, online,
    // and one click opens a terminal on it — no secret in the address, none typed.
    let browser = Browser::start_in_profile(&profile);
    let page = Page(&browser);
    browser.goto(&relay.url);
    let row = format!(".host[data-host='{host_id}']");
    wait_until(PAGE, "the host list to show the host online and remembered", || {
        let state = page.script(
            "const h = document.querySelector(arguments[0]); \
             return h && h.querySelector('.remembered') ? h.dataset.presence : null",
            json!([row]),
        );
        (state == json!("online")).then_some(())
    });
    page.click(&format!("{row} .open"));
    page.landed();
    assert_eq!(page.script("return location.hash", json!([])), json!(format!("#{host_id}")));
    assert_eq!(page.script("return document.querySelector('form.password') === null", json!([])), json!(true));
    page.type_text("echo remembered-$((6*7))\n");
    page.wait_text(None, "the command's output", |t| t.lines().any(|l| l.trim_end() == "remembered-42"));
    let seen = wait_until(PAGE, "devices ls to show the browser connected", || {
        devices(&host).into_iter().find(|d| d["id"] == json!(device) && d["connected"] == json!(1))
    });
    assert!(seen["last_seen"].as_u64().is_some_and(|t| t > 0), "{seen}");

    // The host menu lists it as this browser.
    page.click(".host-menu-button");
    let mine = wait_element(&page, &format!(".host-menu .device.this[data-device='{device}']"), "the host menu's list");
    assert!(mine.contains("Chrome on Linux") && mine.contains("this browser"), "{mine}");

    // Forgotten on the host: the open page's connection closes, and it says so.
    host.ok(&["devices", "rm", &device]);
    let said = wait_element(&page, ".error[role='alert']", "the page to say its access ended");
    assert!(said.contains("revoked"), "{said}");
    // The next click is refused with words, not a hang.
    browser.goto(&relay.url);
    page.click(&format!("{row} .open"));
    let said = wait_element(&page, "form.password .error", "the page to say the host refused this browser");
    assert!(said.contains("this device is not remembered by the host"), "{said}");
    assert!(devices(&host).is_empty());
}

#[test]
fn an_ephemeral_share_never_offers_to_remember_the_browser() {
    let relay = Relay::start();
    let (host, _) = bash_host(scratch(), &[]);
    let mut command = host.command();
    command.args(["pair", "--relay", relay.url.trim_end_matches('/'), "--ephemeral", "--json"]);
    let (_share, line) = tether_tests::process::spawn_reading_first_line(command, tether_tests::agent::WAIT);
    let json: serde_json::Value = serde_json::from_str(&line).expect("pair --json is JSON");
    let invite = json["invite"].as_str().expect("invite").to_owned();
    let name = json["name"].as_str().expect("name").to_owned();
    let browser = Browser::start(scratch());
    let page = Page(&browser);
    browser.goto(&invite);
    page.landed();
    // Once the host has said who it is (the header names it), the page has decided.
    wait_until(PAGE, "the header to name the host", || {
        let header =
            page.script("const h = document.querySelector('.bar .host-name'); return h && h.textContent", json!([]));
        (header == json!(name)).then_some(())
    });
    page.click(".host-menu-button");
    wait_element(&page, ".host-menu", "the host menu");
    let offered = page.script(
        "return [!!document.querySelector('.remember'), !!document.querySelector('.host-menu .remember-this')]",
        json!([]),
    );
    assert_eq!(offered, json!([false, false]));
    assert!(devices(&host).is_empty());
    assert_no_console_errors(&browser);
}

/// The visible text of the front terminal in host `host_id`'s pane.
fn host_terminal_text(page: &Page, host_id: &str) -> String {
    let script = "const pane = document.querySelector(`.host-pane[data-host='${arguments[0]}'] .pane:not(.hidden)`); \
                  const term = pane && pane.querySelector('.terminal') && pane.querySelector('.terminal').xterm; \
                  if (!term) return ''; const buf = term.buffer.active; const lines = []; \
                  for (let i = buf.viewportY; i < buf.viewportY + term.rows; i++) { \
                    const line = buf.getLine(i); lines.push(line ? line.translateToString(true) : ''); } \
                  return lines.join('\\n')";
    page.script(script, json!([host_id])).as_str().unwrap_or_default().to_owned()
}

fn wait_host_line(page: &Page, host_id: &str, line: &str) {
    wait_until(PAGE, &format!("{line:?} in host {host_id}'s terminal"), || {
        host_terminal_text(page, host_id).lines().any(|l| l.trim_end() == line).then_some(())
    });
}

fn type_into_host(browser: &Browser, host_id: &str, text: &str) {
    let css = format!(".host-pane[data-host='{host_id}'] .pane:not(.hidden) .xterm-helper-textarea");
    let input = wait_until(PAGE, "the host's terminal input", || browser.find(&css));
    browser.send_keys(&input, text);
}

#[test]
fn two_hosts_side_by_side_in_one_page_each_run_their_own_commands_and_one_lost_leaves_the_other() {
    let relay = Relay::start();
    let (alpha, alpha_home) = bash_host(scratch(), &[]);
    let (beta, beta_home) = bash_host(scratch(), &[]);
    std::fs::write(alpha_home.join("which.txt"), "i-am-alpha\n").expect("alpha file");
    std::fs::write(beta_home.join("which.txt"), "i-am-beta\n").expect("beta file");
    let alpha_invite = tether_tests::agent::pair_with(&alpha, &relay, &["--name", "alpha"]);
    let beta_invite = tether_tests::agent::pair_with(&beta, &relay, &["--name", "beta"]);
    let id_of = |invite: &str| invite.split('#').nth(1).and_then(|f| f.split('.').next()).expect("id").to_owned();
    let (alpha_id, beta_id) = (id_of(&alpha_invite), id_of(&beta_invite));
    let browser = Browser::start(scratch());
    let page = Page(&browser);
    browser.goto(&alpha_invite);
    page.landed();

    // The second host's link, pasted into the address bar: asked, then opened beside the first.
    let fragment = beta_invite.split_once('#').expect("fragment").1.to_owned();
    page.script("location.hash = arguments[0]", json!([format!("#{fragment}")]));
    let asked = wait_until(PAGE, "the page to ask before opening another host", || browser.dialog_text());
    assert!(asked.contains(&beta_id) && asked.contains(&alpha_id), "{asked}");
    browser.answer_dialog(true);
    wait_until(PAGE, "both hosts' tabs", || {
        let tabs =
            page.script("return [...document.querySelectorAll('.host-tab')].map(t => t.dataset.host)", json!([]));
        (tabs == json!([alpha_id, beta_id])).then_some(())
    });
    page.click(".hostbar .split");
    // Both shown, each labelled with its host.
    let labels = wait_until(PAGE, "both workspaces shown and named", || {
        let labels = page.script(
            "return [...document.querySelectorAll('.host-pane:not(.hidden)')] \
               .map(p => [p.dataset.host, (p.querySelector('.bar .host-name') || {}).textContent])",
            json!([]),
        );
        (labels == json!([[alpha_id, "alpha"], [beta_id, "beta"]])).then_some(labels)
    });
    assert!(labels.is_array());

    // A command typed into each runs on its own host.
    wait_until(PAGE, "beta's prompt", || {
        host_terminal_text(&page, &beta_id).lines().any(|l| l.trim_end().ends_with(['$', '#'])).then_some(())
    });
    type_into_host(&browser, &alpha_id, "cat which.txt\n");
    type_into_host(&browser, &beta_id, "cat which.txt\n");
    wait_host_line(&page, &alpha_id, "i-am-alpha");
    wait_host_line(&page, &beta_id, "i-am-beta");
    assert!(!host_terminal_text(&page, &alpha_id).contains("i-am-beta"));
    assert!(!host_terminal_text(&page, &beta_id).contains("i-am-alpha"));

    // Alpha's agent stops: alpha's pane says so, beta's terminal goes on working.
    alpha.ok(&["daemon", "stop", "--grace", "0s"]);
    wait_until(PAGE, "alpha's pane to say its host is offline", || {
        let status = page.script(
            "const s = document.querySelector(`.host-pane[data-host='${arguments[0]}'] .status`); return s && s.textContent",
            json!([alpha_id]),
        );
        status.as_str().filter(|s| s.contains("host offline")).map(str::to_owned)
    });
    type_into_host(&browser, &beta_id, "echo beta-still-$((40+2))\n");
    wait_host_line(&page, &beta_id, "beta-still-42");
    let tab = page.script(
        "return document.querySelector(`.host-tab[data-host='${arguments[0]}']`).dataset.presence",
        json!([alpha_id]),
    );
    assert_eq!(tab, json!("offline"));
    screenshot(&browser, "two-hosts-side-by-side");
    assert_no_console_errors(&browser);
}

#[test]
fn a_read_only_share_shows_view_only_and_nothing_typed_reaches_the_session() {
    let relay = Relay::start();
    let (host, _) = bash_host(scratch(), &[]);
    let watched = host.start(&["cat"]);
    let mut command = host.command();
    command.args(["pair", "--relay", relay.url.trim_end_matches('/'), "--ephemeral", "--read-only", "--json"]);
    let (_share, line) = tether_tests::process::spawn_reading_first_line(command, tether_tests::agent::WAIT);
    let json: serde_json::Value = serde_json::from_str(&line).expect("pair --json is JSON");
    let browser = Browser::start(scratch());
    let page = Page(&browser);
    browser.goto(json["invite"].as_str().expect("invite"));
    page.wait_status("connected via");
    wait_element(&page, ".bar .view-only", "the page to say view only");
    // It lands in the running session, watching.
    let id = wait_until(PAGE, "the watched session's tab", || page.active_session());
    assert_eq!(id, watched);
    host.ok(&["send", &watched, "from-the-host", "key:enter"]);
    page.wait_text(None, "the host's line", |t| t.lines().any(|l| l.trim_end() == "from-the-host"));
    // Nothing to type into, start, stop or browse.
    let offered = page.script(
        "return ['.files-tab', '.sessions .new', '.sessions .stop', '.keybar', '.remember', '.host-menu-button'] \
           .filter(css => document.querySelector(css))",
        json!([]),
    );
    assert_eq!(offered, json!([]), "the page offers actions a viewer may not take");
    page.type_text("typed-in-page\n");
    host.ok(&["send", &watched, "after-the-page", "key:enter"]);
    let log = host.wait_for_line(&watched, "after-the-page");
    assert!(!log.contains("typed-in-page"), "{log}");
    assert_no_console_errors(&browser);
}

#[test]
fn a_session_that_waits_while_the_page_is_hidden_raises_one_notification_naming_it() {
    let (relay, host, invite, browser) = setup();
    let page = Page(&browser);
    let origin = relay.url.trim_end_matches('/').to_owned();
    browser.cdp("Browser.grantPermissions", json!({ "permissions": ["notifications"], "origin": origin }));
    browser.goto(&invite);
    let shell = page.landed();
    // (The landing shell idle at its prompt, as far as the page knows, before it is hidden.)
    wait_element(&page, &format!(".session[data-session='{shell}'] .badge"), "the shell's input badge");
    // Every notification the page makes is also said on a channel another tab can hear (the
    // real one is still made).
    page.script(
        "const Real = window.Notification; const said = new BroadcastChannel('notifications-seen'); \
         window.Notification = class extends Real { \
           static get permission() { return Real.permission; } \
           static requestPermission(...args) { return Real.requestPermission(...args); } \
           constructor(title, options) { super(title, options); \
             said.postMessage([title, (options || {}).body, document.hidden]); } };",
        json!([]),
    );
    assert!(page.script("return document.title", json!([])).as_str().is_some_and(|t| !t.starts_with('(')));

    // Another tab in front: the page is hidden. A session then asks a question.
    let first = browser.open_tab();
    browser.goto(&relay.url);
    page.script(
        "window.seen = []; new BroadcastChannel('notifications-seen').onmessage = e => window.seen.push(e.data);",
        json!([]),
    );
    let prompt = "printf 'Continue? [y/n] '; read answer";
    host.ok(&["start", "--detach", "--title", "deploy", "--", "sh", "-c", prompt]);
    let seen = wait_until(PAGE, "a notification", || {
        let seen = page.script("return window.seen", json!([]));
        seen.as_array().is_some_and(|s| !s.is_empty()).then_some(seen)
    });
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned();
    assert_eq!(seen.as_array().map(Vec::len), Some(1), "{seen}");
    let (title, hidden) = (seen[0][0].as_str().unwrap_or_default(), &seen[0][2]);
    assert_eq!(title, format!("{hostname}: deploy waits for input (confirmation)"), "{seen}");
    assert_eq!(hidden, &json!(true), "made while the page was hidden");

    // Back on the page: its tab counts the session that waits.
    browser.switch_to(&first);
    let title = wait_until(PAGE, "the tab's title to count the waiting session", || {
        let title = page.script("return document.title", json!([]));
        title.as_str().filter(|t| t.starts_with("(1) ")).map(str::to_owned)
    });
    assert!(title.contains(&hostname), "{title}");
    assert_no_console_errors(&browser);
}

/// The terminal's last line with something on it (where the cursor is, in these tests).
fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim_end).rfind(|l| !l.is_empty())
}

/// What the predictive-echo overlay of the active terminal shows (`data-text`, "" when hidden).
fn predicted(page: &Page) -> String {
    let script = "const o = document.querySelector('.pane:not(.hidden) .typeahead'); \
                  return o && o.style.display !== 'none' ? o.getAttribute('data-text') : ''";
    page.script(script, json!([])).as_str().unwrap_or_default().to_owned()
}

/// The active terminal's cursor column, and the one the overlay predicts (`None` when hidden).
fn cursor_columns(page: &Page) -> (u64, Option<u64>) {
    let script = "const t = document.querySelector('.pane:not(.hidden) .terminal').xterm; \
                  const o = document.querySelector('.pane:not(.hidden) .typeahead'); \
                  const shown = o && o.style.display !== 'none'; \
                  return [t.buffer.active.cursorX, shown ? Number(o.getAttribute('data-cursor')) : null]";
    let columns = page.script(script, json!([]));
    (columns[0].as_u64().unwrap_or(u64::MAX), columns[1].as_u64())
}

#[test]
fn typing_ahead_of_a_slow_link_shows_at_once_and_never_leaves_a_wrong_character() {
    let relay = Relay::start();
    let (host, _) = bash_host(scratch(), &[]);
    // Through the relay only (a data channel would go around the slow path).
    let invite = tether_tests::agent::pair_with(&host, &relay, &["--no-webrtc"]);
    // 100 ms of round trip: the page reaches the relay through a proxy holding each way 50 ms.
    let far = tether_tests::latency::DelayProxy::start(&relay.address(), Duration::from_millis(50));
    let far_invite = format!("http://{}/{}", far.addr, &invite[invite.find('#').unwrap_or(0)..]);
    let browser = Browser::start(scratch());
    let page = Page(&browser);
    browser.goto(&far_invite);
    let id = page.landed();
    wait_until(PAGE, "a round trip of 100 ms measured", || {
        let status = page.status();
        let ms = status.split("round trip ").nth(1)?.split(' ').next()?.parse::<u64>().ok()?;
        (ms >= 90).then_some(ms)
    });

    // A program that echoes each key (an arrow's three bytes together) half a second late: the
    // prediction shows meanwhile, and goes once the echo is there, which shows once.
    page.type_text(
        "stty -echo; while IFS= read -rsn1 c; do [ \"$c\" = $'\\e' ] && read -rsn2 r && c=\"$c$r\"; \
         sleep 0.5; printf %s \"$c\"; done\n",
    );
    page.wait_text(Some(&id), "the loop to start", |t| t.lines().any(|l| l.trim_end().ends_with("done")));
    page.type_text("a");
    page.wait_text(Some(&id), "the first echo", |t| last_line(t).is_some_and(|l| l == "a"));
    assert_eq!(predicted(&page), "", "the first key after Enter is not predicted: the line is not known to echo");
    page.type_text("b");
    let shown = predicted(&page);
    let screen = page.terminal_text(Some(&id));
    assert_eq!(shown, "b", "a key is shown at once once the line echoes; the terminal shows:\n{screen}");
    assert!(!screen.lines().any(|l| l.trim_end() == "ab"), "before its echo:\n{screen}");
    page.wait_text(Some(&id), "the late echo", |t| last_line(t) == Some("ab"));
    wait_until(PAGE, "the prediction to go with its echo", || predicted(&page).is_empty().then_some(()));
    // The setting turns it off; back on, it waits for an echo again before it shows anything.
    page.click("#typeahead-toggle");
    page.type_text("c");
    assert_eq!(predicted(&page), "", "the setting turns it off");
    page.wait_text(Some(&id), "the echo of c", |t| last_line(t) == Some("abc"));
    page.click("#typeahead-toggle");
    page.type_text("d");
    assert_eq!(predicted(&page), "");
    page.wait_text(Some(&id), "the echo of d", |t| last_line(t) == Some("abcd"));
    page.type_text("e");
    assert_eq!(predicted(&page), "e");
    page.wait_text(Some(&id), "the echo of e", |t| last_line(t) == Some("abcde"));
    // Left and Right move the cursor at once over the line; the terminal's follows with the echo.
    for (key, before, after) in [("\u{e012}", 5, 4), ("\u{e012}", 4, 3), ("\u{e014}", 3, 4)] {
        page.type_text(key);
        assert_eq!(cursor_columns(&page), (before, Some(after)), "the cursor predicted at once");
        wait_until(PAGE, "the arrow's echo", || (cursor_columns(&page) == (after, None)).then_some(()));
    }
    // A character typed mid-line is not guessed: the line editor redraws the rest its own way.
    page.type_text("z");
    assert_eq!(predicted(&page), "", "nothing guessed mid-line");
    page.wait_text(Some(&id), "the echo of z", |t| last_line(t) == Some("abcdz"));
    page.type_text("\u{e009}c\u{e009}"); // Ctrl+C ends the loop
    page.type_text("stty echo\n");

    // A password prompt (no echo): nothing typed is ever shown.
    page.type_text("read -rs -p 'Password: ' pw; echo \"got ${#pw}\"\n");
    page.wait_text(Some(&id), "the password prompt", |t| last_line(t) == Some("Password:"));
    for key in ["s", "e", "c", "r", "e", "t"] {
        page.type_text(key);
        assert_eq!(predicted(&page), "", "a key typed at a password prompt is never shown");
    }
    page.type_text("\n");
    let text = page.wait_text(Some(&id), "the password read", |t| t.lines().any(|l| l.trim_end().ends_with("got 6")));
    assert!(!text.contains("secret"), "{text}");

    page.type_text("echo typed-$((6*7))\n");
    page.wait_text(Some(&id), "the command's output", |t| t.lines().any(|l| l.trim_end() == "typed-42"));

    // A full-screen program (vim, the alternate screen): nothing is predicted in it, and what it
    // shows is only what it drew.
    page.type_text("vim -u NONE -N\n");
    page.wait_text(Some(&id), "vim", |t| t.lines().filter(|l| l.starts_with('~')).count() > 3);
    page.type_text("i");
    page.wait_text(Some(&id), "insert mode", |t| t.contains("-- INSERT --"));
    // One key at a time, each echoed before the next: vim echoes them as typed, and still
    // nothing is predicted on its screen.
    for (i, key) in ["h", "e", "l", "l", "o"].iter().enumerate() {
        page.type_text(key);
        assert_eq!(predicted(&page), "", "nothing is predicted in a full-screen program");
        let typed = &"hello"[..=i];
        page.wait_text(Some(&id), "vim's text", |t| t.lines().next().is_some_and(|l| l.trim_end() == typed));
    }
    page.type_text("\u{e00c}:q!\n"); // Escape, quit
    page.wait_text(Some(&id), "the shell again", |t| t.lines().any(|l| l.contains("typed-42")));
    // The alternate screen with a program that does echo plainly (late): still nothing predicted.
    page.type_text("printf '\\e[?1049h'; stty -echo; while IFS= read -rsn1 c; do sleep 0.5; printf %s \"$c\"; done\n");
    page.wait_text(Some(&id), "the alternate screen", |t| !t.contains("typed-42"));
    page.type_text("x");
    page.wait_text(Some(&id), "the echo of x", |t| last_line(t) == Some("x"));
    page.type_text("y");
    assert_eq!(predicted(&page), "", "nothing is predicted on the alternate screen");
    page.wait_text(Some(&id), "the echo of y", |t| last_line(t) == Some("xy"));
    page.type_text("\u{e009}c\u{e009}");
    page.type_text("stty echo; printf '\\e[?1049l'\n");
    page.wait_text(Some(&id), "the main screen again", |t| t.lines().any(|l| l.contains("typed-42")));
    assert_no_console_errors(&browser);
}
