//! The file service end to end: `tether cp` and `tether fs` against a real host agent, through a
//! real relay (or the local daemon), with the files checked on disk.

use std::path::Path;

use tether_tests::agent::{self, pair, wait_reachable, Agent};
use tether_tests::{wait_until, Relay, Scratch};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// A fresh directory for one test's files (removed when the test ends).
fn dir(name: &str) -> Scratch {
    Scratch::dir(scratch(), name)
}

/// `len` bytes that do not repeat in any way a bug could hide behind (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn paired() -> (Relay, Agent, String, Agent) {
    agent::paired(scratch())
}

fn sha256_of(bytes: &[u8]) -> String {
    let mut digest = tether_protocol::file::FileDigest::new();
    digest.update(bytes);
    digest.finish()
}

fn sha256(path: &Path) -> String {
    sha256_of(&std::fs::read(path).expect("read for its digest"))
}

fn at(invite: &str, path: &Path) -> String {
    format!("{invite}:{}", path.display())
}

#[test]
fn cp_moves_files_and_trees_both_ways_byte_exact_through_the_relay() {
    let (_relay, _host, invite, client) = paired();
    let here = dir("cp-here");
    let there = dir("cp-there");
    let big = noise(200 << 20, 7); // 200 MiB
    std::fs::write(here.join("big.bin"), &big).expect("write");
    std::fs::create_dir_all(here.join("tree/inner")).expect("tree");
    std::fs::create_dir_all(here.join("tree/empty-dir")).expect("tree");
    std::fs::write(here.join("tree/inner/a.txt"), "a\n").expect("write");
    std::fs::write(here.join("tree/empty"), "").expect("write");
    std::os::unix::fs::symlink("inner/a.txt", here.join("tree/link")).expect("symlink");
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(here.join("tree").join(std::ffi::OsStr::from_bytes(b"caf\xe9")), "x").expect("odd name");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(here.join("tree/inner/a.txt"), std::fs::Permissions::from_mode(0o751)).expect("chmod");

    let up =
        client.ok(&["cp", "--json", &here.join("big.bin").display().to_string(), &at(&invite, &there.join("big.bin"))]);
    let line: serde_json::Value = serde_json::from_str(up.trim()).expect("one JSON line");
    assert_eq!(line["bytes"], 200 << 20);
    assert!(sha256(&there.join("big.bin")) == sha256_of(&big), "uploaded bytes differ");
    // The tree goes whole but for the name that is not UTF-8: said, counted, never mangled.
    let tree =
        client.run(&["cp", "-r", &here.join("tree").display().to_string(), &format!("{}/", at(&invite, &there))]);
    assert!(!tree.status.success(), "a file left behind must fail the copy");
    assert!(tether_tests::stderr_of(&tree).contains("name not valid UTF-8"), "{}", tether_tests::stderr_of(&tree));
    assert_eq!(std::fs::read_to_string(there.join("tree/inner/a.txt")).expect("tree file"), "a\n");
    assert_eq!(std::fs::metadata(there.join("tree/empty")).expect("empty file").len(), 0);
    assert!(there.join("tree/empty-dir").is_dir());
    assert_eq!(std::fs::read_link(there.join("tree/link")).expect("a symlink"), Path::new("inner/a.txt"));
    assert_eq!(
        std::fs::read_dir(there.join("tree")).expect("tree").count(),
        4,
        "inner, empty-dir, empty, link; no odd name"
    );
    let mode = std::fs::metadata(there.join("tree/inner/a.txt")).expect("mode").permissions().mode();
    assert_eq!(mode & 0o777, 0o751, "the mode travels with the file");

    let back = dir("cp-back");
    client.ok(&["cp", &at(&invite, &there.join("big.bin")), &back.join("big.bin").display().to_string()]);
    assert!(sha256(&back.join("big.bin")) == sha256_of(&big), "downloaded bytes differ");
    client.ok(&["cp", "-r", &at(&invite, &there.join("tree")), &back.display().to_string()]);
    assert_eq!(std::fs::read_to_string(back.join("tree/inner/a.txt")).expect("tree file"), "a\n");
    assert!(back.join("tree/empty-dir").is_dir());
    assert_eq!(std::fs::read_link(back.join("tree/link")).expect("a symlink"), Path::new("inner/a.txt"));
    // Nothing half-done is left on either side.
    let leftovers = |d: &Path| {
        std::fs::read_dir(d)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    assert_eq!((leftovers(&there), leftovers(&back)), (0, 0));

    let missing = client.run(&["cp", &at(&invite, &there.join("nope")), &back.display().to_string()]);
    assert!(!missing.status.success());
    assert!(
        tether_tests::stderr_of(&missing).contains("no such file or directory"),
        "{}",
        tether_tests::stderr_of(&missing)
    );
}

/// `tether cp ARGS` with its stderr in the collected output (to see what it says about a cut).
fn spawn_cp(
    client: &Agent,
    args: &[String],
) -> (tether_tests::process::Guard, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut cp = std::process::Command::new("sh");
    cp.args(["-c", "exec \"$0\" \"$@\" 2>&1"]).arg(tether_tests::bin_path("tether"));
    cp.env("TETHER_STATE_DIR", &client.state).stdin(std::process::Stdio::null());
    cp.arg("cp").args(args);
    tether_tests::process::spawn_collecting(cp)
}

/// The temporary file a transfer keeps in `dir` (`suffix`: which side's).
fn partial_in(dir: &Path, suffix: &str) -> Option<std::fs::DirEntry> {
    std::fs::read_dir(dir).ok()?.flatten().find(|e| e.file_name().to_string_lossy().ends_with(suffix))
}

#[test]
fn a_transfer_cut_off_leaves_nothing_at_its_path_and_resumes_where_it_stopped() {
    let (relay, _host, invite, client) = paired();
    let address = relay.address();
    let (here, there) = (dir("resume-here"), dir("resume-there"));
    let file = noise(48 << 20, 11); // 48 MiB: long enough to cut in the middle
    std::fs::write(here.join("data.bin"), &file).expect("write");
    let mut relay = Some(relay);
    // Up, then down; each time the relay goes away once part of the file has arrived.
    let legs = [
        (
            here.join("data.bin").display().to_string(),
            at(&invite, &there.join("data.bin")),
            there.to_path_buf(),
            ".tether-upload",
        ),
        (
            at(&invite, &there.join("data.bin")),
            here.join("back.bin").display().to_string(),
            here.to_path_buf(),
            ".tether-download",
        ),
    ];
    for (from, to, arriving, suffix) in legs {
        let (mut copying, said) = spawn_cp(&client, &[from, to.clone()]);
        wait_until(agent::WAIT, "part of the file to arrive", || {
            partial_in(&arriving, suffix).filter(|e| e.metadata().map(|m| m.len() > 4 << 20).unwrap_or(false))
        });
        drop(relay.take());
        wait_until(agent::WAIT, "cp to notice", || said.lock().expect("said").contains("trying again").then_some(()));
        let kept = partial_in(&arriving, suffix).expect("the part that came is kept").metadata().expect("meta").len();
        assert!(kept > 0);
        let target = if suffix == ".tether-upload" { there.join("data.bin") } else { here.join("back.bin") };
        assert!(!target.exists(), "a partial file appeared at {}", target.display());
        relay = Some(Relay::start_at(&address));
        let done = copying.wait_exit(std::time::Duration::from_secs(120), "cp to finish");
        assert!(done.success(), "{}", said.lock().expect("said"));
        assert!(sha256(&target) == sha256_of(&file), "bytes differ after the resume");
        assert!(partial_in(&arriving, suffix).is_none(), "the temporary file is gone");
    }
}

#[test]
fn an_upload_the_host_got_wrong_is_refused_and_nothing_is_committed() {
    let relay = Relay::start();
    // The host flips byte 100,000 of every upload on its way to disk.
    let host = Agent::with_env(scratch(), &[("TETHER_TEST_FLIP_UPLOAD_BYTE", Path::new("100000"))]);
    let invite = pair(&host, &relay);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);
    let (here, there) = (dir("corrupt-here"), dir("corrupt-there"));
    std::fs::write(here.join("f.bin"), noise(1 << 20, 5)).expect("write");
    std::fs::write(there.join("f.bin"), "the old contents").expect("write");
    let out = client.run(&["cp", &here.join("f.bin").display().to_string(), &at(&invite, &there.join("f.bin"))]);
    assert!(!out.status.success(), "a corrupted upload passed");
    assert!(tether_tests::stderr_of(&out).contains("corrupted"), "{}", tether_tests::stderr_of(&out));
    assert_eq!(std::fs::read_to_string(there.join("f.bin")).expect("old file"), "the old contents");
    assert!(partial_in(&there, ".tether-upload").is_none(), "the bad bytes were not kept");
}

#[test]
fn a_files_root_keeps_the_service_inside_it_and_no_files_turns_it_off() {
    let relay = Relay::start();
    let root = dir("files-root");
    let outside = dir("files-outside");
    std::fs::write(outside.join("secret"), "s").expect("write");
    std::os::unix::fs::symlink(&outside, root.join("way-out")).expect("symlink");
    std::os::unix::fs::symlink("/etc", root.join("etc")).expect("symlink");
    std::fs::write(root.join("mine.txt"), "mine").expect("write");
    let host = Agent::new(scratch());
    let invite = agent::pair_with(&host, &relay, &["--files-root", &root.display().to_string()]);
    let client = Agent::new(scratch());
    wait_reachable(&client, &invite);

    // Relative paths start at the root.
    let listed = client.ok(&["fs", "ls", &format!("{invite}:")]);
    assert!(listed.contains("mine.txt") && listed.contains("way-out"), "{listed}");
    for escape in ["../", "way-out/secret", &outside.join("secret").display().to_string(), "/etc/passwd", "etc/passwd"]
    {
        let out = client.run(&["cp", &format!("{invite}:{escape}"), &outside.join("copy").display().to_string()]);
        assert!(!out.status.success(), "{escape} was read");
        assert!(
            tether_tests::stderr_of(&out).contains("outside the files root"),
            "{escape}: {}",
            tether_tests::stderr_of(&out)
        );
    }
    let out = client.run(&["cp", &root.join("mine.txt").display().to_string(), &format!("{invite}:way-out/planted")]);
    assert!(tether_tests::stderr_of(&out).contains("outside the files root"), "{}", tether_tests::stderr_of(&out));
    assert!(!outside.join("planted").exists() && !outside.join("copy").exists());

    // The root outlives a restart.
    host.ok(&["daemon", "stop", "--grace", "0s"]);
    host.ok(&["ls"]); // starts it again
    wait_until(agent::WAIT, "the host to be back", || {
        client.run(&["ls", "-H", &invite]).status.success().then_some(())
    });
    let out = client.run(&["fs", "ls", &format!("{invite}:../")]);
    assert!(
        tether_tests::stderr_of(&out).contains("outside the files root"),
        "after a restart: {}",
        tether_tests::stderr_of(&out)
    );

    // Turned off, it says so.
    host.ok(&["pair", "--relay", relay.url.trim_end_matches('/'), "--no-files"]);
    let out = client.run(&["fs", "ls", &format!("{invite}:")]);
    assert!(tether_tests::stderr_of(&out).contains("turned off"), "{}", tether_tests::stderr_of(&out));
}

#[test]
fn fs_commands_say_what_went_wrong_and_rm_can_be_undone() {
    let host = Agent::new(scratch());
    let place = dir("fs-local");
    let local = |p: &str| format!("local:{}", place.join(p).display());
    host.ok(&["fs", "mkdir", "-p", &local("a/b/c")]);
    assert!(place.join("a/b/c").is_dir());
    let again = host.run(&["fs", "mkdir", &local("a")]);
    assert!(tether_tests::stderr_of(&again).contains("already exists"), "{}", tether_tests::stderr_of(&again));
    std::fs::write(place.join("a/file"), "keep me").expect("write");
    let not_dir = host.run(&["fs", "ls", &local("a/file/x")]);
    assert!(tether_tests::stderr_of(&not_dir).contains("not a directory"), "{}", tether_tests::stderr_of(&not_dir));
    host.ok(&["fs", "chmod", "600", &local("a/file")]);
    let stat: serde_json::Value =
        serde_json::from_str(&host.ok(&["fs", "stat", "--json", &local("a/file")])).expect("json");
    assert_eq!(
        (stat["kind"].as_str(), stat["mode"].as_u64(), stat["size"].as_u64()),
        (Some("file"), Some(0o600), Some(7))
    );
    host.ok(&["fs", "mv", &local("a/file"), &local("a/moved")]);
    assert!(!place.join("a/file").exists() && place.join("a/moved").exists());

    // rm puts it in the trash; restore brings it back, bytes and all.
    let removed = host.run(&["fs", "rm", &local("a/moved")]);
    assert!(removed.status.success());
    assert!(!place.join("a/moved").exists());
    let said = tether_tests::stderr_of(&removed);
    let trash_id = said.split_whitespace().last().expect("trash id").to_owned();
    host.ok(&["fs", "restore", "local", &trash_id]);
    assert_eq!(std::fs::read_to_string(place.join("a/moved")).expect("restored"), "keep me");
    host.ok(&["fs", "rm", "--permanent", &local("a/moved")]);
    assert!(!place.join("a/moved").exists());

    // A name that is not UTF-8 is listed as such, its bytes shown, never renamed.
    use std::os::unix::ffi::OsStrExt;
    let odd = place.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&odd, "latin-1 name").expect("write");
    let listed = host.ok(&["fs", "ls", "--json", &local("")]);
    let entry: serde_json::Value = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["raw_name"].is_string())
        .expect("the odd name is listed");
    assert_eq!(entry["raw_name"], "636166e92e747874");
    assert!(odd.exists());
}

#[test]
fn a_hostile_host_cannot_make_cp_write_outside_where_it_was_asked() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tether_protocol::api::{Request, Response};
    use tether_protocol::fs::{encode_page, Entry, FsRequest, FsResponse, Kind};
    use tether_tests::hostile::{FakeHost, Reply};

    let root = dir("hostile-cp");
    let (inside, outside) = (root.join("inside"), root.join("outside"));
    for d in [&inside, &outside] {
        std::fs::create_dir(d).expect("dir");
    }
    for name in ["victim", "victim2"] {
        std::fs::write(outside.join(name), "safe").expect("a file outside");
    }
    // Already here before the copy: links from inside DST to outside it.
    std::os::unix::fs::symlink(&outside, inside.join("tree2")).expect("link");
    std::os::unix::fs::symlink(outside.join("victim2"), inside.join(".h.tether-download")).expect("link");

    let entry = |name: &str, kind: Kind, target: Option<String>| Entry {
        name: name.to_owned(),
        raw_name: None,
        kind,
        size: 5,
        mode: 0o644,
        owner: "x".into(),
        group: "x".into(),
        mtime_ms: 0,
        target,
        target_kind: None,
    };
    let absolute = outside.join("abs").display().to_string();
    let outside_text = outside.display().to_string();
    let dup_stats = AtomicUsize::new(0);
    let relay = Relay::start();
    let host = FakeHost::start(&relay, move |request, stream| {
        let answer = |response| Reply::Answer(Response::Fs(response));
        let listing = |path: &str, entries: Vec<Entry>| {
            let page = encode_page(&entries);
            vec![answer(FsResponse::Listing { path: path.to_owned(), stream }), Reply::Data(page), Reply::Eof]
        };
        let stat = |entry| vec![answer(FsResponse::Entry { entry })];
        match request {
            Request::Fs(FsRequest::Stat { path }) => match path.as_str() {
                // The names a host answers with: never what the copy is called.
                "evil" | "h" => stat(entry("../escaped", Kind::File, None)),
                "tree" => stat(entry("../outside", Kind::Dir, None)),
                "tree2" => stat(entry("tree2", Kind::Dir, None)),
                // A link to outside first, then a directory of the same name.
                "tree/dup" if dup_stats.fetch_add(1, Ordering::SeqCst) == 0 => {
                    stat(entry("dup", Kind::Symlink, Some(outside_text.clone())))
                }
                "tree/dup" => stat(entry("dup", Kind::Dir, None)),
                other => stat(entry(other.rsplit('/').next().unwrap_or(other), Kind::File, None)),
            },
            Request::Fs(FsRequest::List { path }) => match path.as_str() {
                "tree" => listing(
                    path,
                    vec![
                        entry("victim", Kind::File, None),
                        entry("../up", Kind::File, None),
                        entry(&absolute, Kind::File, None),
                        entry("dup", Kind::Symlink, Some(outside_text.clone())),
                        entry("dup", Kind::Dir, None),
                        entry("fine", Kind::File, None),
                    ],
                ),
                _ => listing(path, vec![entry("victim", Kind::File, None)]),
            },
            Request::Fs(FsRequest::Read { path, .. }) => vec![
                answer(FsResponse::Reading { path: path.clone(), size: 5, mtime_ms: 0, offset: 0, stream }),
                Reply::Data(b"owned".to_vec()),
                Reply::Eof,
            ],
            _ => vec![Reply::Answer(Response::Ok)],
        }
    });
    let client = Agent::new(scratch());
    let into = format!("{}/", inside.display());
    let cp = |args: &[&str], refuses: bool| {
        let out = client.run(args);
        let said = tether_tests::stderr_of(&out);
        assert_eq!(out.status.success(), !refuses, "cp {args:?}: refuses {refuses}\n{said}");
        said
    };
    let said = [
        // Named by the host "../escaped": the copy is called "evil", as asked.
        cp(&["cp", &format!("{}:evil", host.invite), &into], false),
        // "../outside" for the top; "../up", an absolute name, a link then a directory "dup".
        cp(&["cp", "-r", &format!("{}:tree", host.invite), &into], true),
        // A link to outside already where the directory would go.
        cp(&["cp", "-r", &format!("{}:tree2", host.invite), &into], true),
        // A link to outside already where the partial download goes.
        cp(&["cp", &format!("{}:h", host.invite), &into], true),
    ]
    .join("\n");

    // Outside DST nothing changed, and nothing was made beside it.
    let mut left: Vec<_> = std::fs::read_dir(&outside).expect("outside").flatten().map(|e| e.file_name()).collect();
    left.sort();
    assert_eq!(left, ["victim", "victim2"], "files appeared outside DST\n{said}");
    for name in ["victim", "victim2"] {
        let text = std::fs::read_to_string(outside.join(name)).expect("outside file");
        assert_eq!(text, "safe", "{name} outside DST was written through\n{said}");
    }
    assert!(!root.join("escaped").exists() && !root.join("up").exists(), "written beside DST\n{said}");
    // The copies are named after what was asked for, and what the host named well arrived.
    assert_eq!(std::fs::read_to_string(inside.join("evil")).ok().as_deref(), Some("owned"), "{said}");
    for name in ["victim", "fine"] {
        assert_eq!(std::fs::read_to_string(inside.join("tree").join(name)).ok().as_deref(), Some("owned"), "{said}");
    }
    assert!(!inside.join("tree").join("dup").exists(), "a name listed twice is refused\n{said}");
    assert!(said.contains("refused from the host"), "{said}");
}
