//! The built web app (Trunk's `dist/`): built into the binary (`build.rs`), or loaded into
//! memory at start-up from `--web-root`.
//!
//! Serving from a map of known names rather than from the file system means no request path can
//! reach outside the web root, whatever `..` or encoding tricks it holds, and a request costs no
//! disk I/O. The app is a few hundred KiB; a rebuilt app needs a relay restart.
//!
//! The page is a shell on someone's machine, so it is served with a strict Content Security
//! Policy: scripts only from this origin plus the hashes of index.html's own inline scripts
//! (Trunk's loader), WebAssembly allowed, connections only back to this origin, and no framing
//! (no click-jacking a terminal).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Refuse to load a web root bigger than this: a mistaken `--web-root /` should fail, not eat RAM.
const MAX_WEB_ROOT_BYTES: u64 = 64 * 1024 * 1024; // 64 MiB

/// The link worker runs under its own response's policy (a worker does not inherit the page's):
/// the app's script and module from here, its WebSocket to here, nothing else.
const WORKER_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'";

/// The app's files that keep their name from build to build: index.html, the service worker,
/// the link worker's script and the editor bundle's entry (whose chunks are hashed).
const UNHASHED_ASSETS: [&str; 4] = ["/index.html", "/sw.js", "/link-worker.js", "/editor/editor.js"];

/// One file of the app.
struct Asset {
    content_type: &'static str,
    bytes: std::borrow::Cow<'static, [u8]>,
}

mod built_in {
    include!(concat!(env!("OUT_DIR"), "/embedded_web.rs"));
}

/// The app's files by URL path (`/index.html`, `/tether-frontend-<hash>.js`, …).
pub struct WebApp {
    assets: HashMap<String, Asset>,
    /// The Content-Security-Policy for index.html.
    policy: HeaderValue,
}

impl WebApp {
    /// The app built into this binary.
    pub fn embedded() -> Result<Self, String> {
        let files = built_in::EMBEDDED.iter().map(|&(url, bytes)| (url.to_owned(), std::borrow::Cow::Borrowed(bytes)));
        Self::from_files(files.collect()).map_err(|_| {
            "this relay was built without the web app (no dist/ when it was compiled): \
             build it with `cargo xtask run`, or pass --web-root DIR"
                .to_owned()
        })
    }

    /// Load every file under `root`; `root/index.html` must exist.
    pub fn load(root: &Path) -> Result<Self, String> {
        let mut assets = Vec::new();
        let mut total = 0u64;
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            for entry in entries {
                let path = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                total += bytes.len() as u64;
                if total > MAX_WEB_ROOT_BYTES {
                    return Err(format!("web root {} is over {MAX_WEB_ROOT_BYTES} bytes", root.display()));
                }
                assets.push((url_path(root, &path)?, std::borrow::Cow::Owned(bytes)));
            }
        }
        Self::from_files(assets).map_err(|()| {
            format!("{} has no index.html: build the web app first (cargo xtask run does)", root.display())
        })
    }

    /// The app from its files by URL path; `Err` without `/index.html`.
    fn from_files(files: Vec<(String, std::borrow::Cow<'static, [u8]>)>) -> Result<Self, ()> {
        let assets: HashMap<String, Asset> = files
            .into_iter()
            .map(|(url, bytes)| {
                let content_type = content_type(Path::new(&url));
                (url, Asset { content_type, bytes })
            })
            .collect();
        let Some(index) = assets.get("/index.html") else { return Err(()) };
        let policy = content_security_policy(&String::from_utf8_lossy(&index.bytes));
        // (Inline script hashes are base64 and the rest is fixed text: always a header value.)
        let policy = HeaderValue::from_str(&policy).map_err(|_| ())?;
        Ok(WebApp { assets, policy })
    }

    /// Number of files and bytes held, for the start-up line.
    pub fn size(&self) -> (usize, usize) {
        (self.assets.len(), self.assets.values().map(|a| a.bytes.len()).sum())
    }

    /// Respond to a GET of `path`. `/` is the app itself; its fragment (`#<host>.<secret>`) never
    /// reaches us, by design of URLs.
    pub fn respond(&self, path: &str) -> Response {
        let key = if path == "/" { "/index.html" } else { path };
        let Some(asset) = self.assets.get(key) else {
            return (StatusCode::NOT_FOUND, "not found\n").into_response();
        };
        // index.html names the hashed asset files, so it must never be cached; they may be. The
        // files whose names carry no hash must be looked at again too.
        let cache = match UNHASHED_ASSETS.contains(&key) {
            true => "no-cache",
            false => "public, max-age=31536000, immutable",
        };
        let mut response = Response::new(Body::from(asset.bytes.clone()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if key == "/link-worker.js" {
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(WORKER_POLICY));
        }
        if key == "/index.html" {
            headers.insert(header::CONTENT_SECURITY_POLICY, self.policy.clone());
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            // A page that opened the app (window.open) keeps no handle on it: it cannot
            // navigate the app's tab to another host's fragment.
            headers
                .insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
        }
        response
    }
}

/// The policy for a page whose inline scripts are those of `html`.
fn content_security_policy(html: &str) -> String {
    let hashes: String =
        inline_scripts(html).map(|script| format!(" 'sha256-{}'", base64(&Sha256::digest(script)))).collect();
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The bodies of `<script>` elements without a `src`, exactly as the browser hashes them.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script").skip(1).filter_map(|rest| {
        let (tag, body) = rest.split_once('>')?;
        let (body, _) = body.split_once("</script>")?;
        (!tag.contains("src=")).then_some(body)
    })
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn url_path(root: &Path, file: &Path) -> Result<String, String> {
    let relative: PathBuf =
        file.strip_prefix(root).map_err(|_| format!("{} is outside {}", file.display(), root.display()))?.to_path_buf();
    let parts: Option<Vec<&str>> = relative.iter().map(|p| p.to_str()).collect();
    let parts = parts.ok_or_else(|| format!("{} is not UTF-8", file.display()))?;
    Ok(format!("/{}", parts.join("/")))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        // Browsers compile WASM while it streams in only when served with this exact type.
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") | Some("map") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("tether-web-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).expect("temp dir");
        root
    }

    #[test]
    fn serves_known_files_only() {
        let root = temp_root("serve");
        std::fs::write(root.join("index.html"), "<html></html>").expect("write");
        std::fs::write(root.join("sub/app.wasm"), [0, 97, 115, 109]).expect("write");
        std::fs::write(root.join("link-worker.js"), "'use strict';").expect("write");
        let app = WebApp::load(&root).expect("loads");
        assert_eq!(app.size(), (3, 30));
        let index = app.respond("/");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(index.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(app.respond("/sub/app.wasm").headers()[header::CONTENT_TYPE], "application/wasm");
        // The link worker runs under a policy of its own: nothing but this relay.
        let worker = app.respond("/link-worker.js");
        assert_eq!(worker.headers()[header::CONTENT_SECURITY_POLICY], WORKER_POLICY);
        assert_eq!(worker.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(!app.respond("/sub/app.wasm").headers().contains_key(header::CONTENT_SECURITY_POLICY));
        for escape in ["/../Cargo.toml", "/sub/../../etc/passwd", "/%2e%2e/x", "/nope"] {
            assert_eq!(app.respond(escape).status(), StatusCode::NOT_FOUND, "{escape}");
        }
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn the_page_allows_exactly_its_own_inline_scripts() {
        let html = "<script src=\"/a.js\"></script>\n<script type=\"module\">\nimport x;\n</script>";
        assert_eq!(inline_scripts(html).collect::<Vec<_>>(), vec!["\nimport x;\n"]);
        let policy = content_security_policy(html);
        // sha256("\nimport x;\n"), base64: the form browsers compare against.
        let expected = base64(&Sha256::digest(b"\nimport x;\n"));
        assert!(policy.contains(&format!("'sha256-{expected}'")), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'") && policy.contains("connect-src 'self'"), "{policy}");
        // RFC 4648 test vectors for the encoder.
        for (input, output) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    #[test]
    fn missing_index_is_a_clear_error() {
        let root = temp_root("empty");
        let error = WebApp::load(&root).err().expect("no index.html");
        assert!(error.contains("no index.html"), "{error}");
        let _ = std::fs::remove_dir_all(root);
    }
}
