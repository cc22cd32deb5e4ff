//! Builds the web app into the relay binary: every file of Trunk's `dist/` (which `cargo xtask`
//! builds before the relay) is embedded with `include_bytes!`, so the binary alone serves the app
//! (`web::WebApp::embedded`). Without a built `dist/` — a plain `cargo build` on a fresh checkout —
//! nothing is embedded, and the relay asks for `--web-root` when started.
//!
//! `TETHER_EMBED_WEB_ROOT` names another directory to embed.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=TETHER_EMBED_WEB_ROOT");
    let root = match std::env::var_os("TETHER_EMBED_WEB_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist"),
    };
    // (A directory is scanned for changes as a whole: a rebuilt app rebuilds the relay.)
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.join("index.html").is_file() {
        collect(&root, &root, &mut files);
    }
    files.sort();
    let mut source = String::from("/// The web app's files by URL path, as built (empty: built without one).\n");
    source.push_str("pub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for (url, path) in &files {
        source.push_str(&format!("    ({url:?}, include_bytes!({path:?})),\n"));
    }
    source.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_web.rs");
    std::fs::write(out, source).expect("write embedded_web.rs");
}

/// Every file under `dir`, as (URL path, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
            continue;
        }
        let (Ok(relative), Ok(absolute)) = (path.strip_prefix(root), path.canonicalize()) else { continue };
        let parts: Option<Vec<&str>> = relative.iter().map(|p| p.to_str()).collect();
        if let (Some(parts), Some(absolute)) = (parts, absolute.to_str()) {
            files.push((format!("/{}", parts.join("/")), absolute.to_owned()));
        }
    }
}
