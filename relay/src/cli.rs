//! `/cli`: a POSIX shell bootstrapper, so `curl -fsSL RELAY/cli | sh -s -- pair` works on a
//! machine with nothing installed.
//!
//! The relay is given a directory of binaries named `tether-<os>-<arch>` (`--binaries`). At start
//! it hashes each one; the script it serves carries those SHA-256 sums and the relay's own origin,
//! downloads the binary for the machine from `/bin/NAME` on that same origin, and refuses to run
//! anything whose digest differs. Binaries are read from disk per request (they are large and
//! rarely fetched); a file changed after start no longer matches the sum the script carries.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Binaries {
    dir: PathBuf,
    /// (file name, hex SHA-256), e.g. ("tether-linux-x86_64", "ab12…").
    sums: Vec<(String, String)>,
}

impl Binaries {
    pub fn load(dir: &Path) -> Result<Binaries, String> {
        let mut sums = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_binary_name(&name) {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(|e| format!("cannot read {name}: {e}"))?;
            sums.push((name, Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()));
        }
        sums.sort();
        if sums.is_empty() {
            return Err(format!("{} holds no tether-<os>-<arch> binaries", dir.display()));
        }
        Ok(Binaries { dir: dir.to_path_buf(), sums })
    }

    pub fn names(&self) -> Vec<&str> {
        self.sums.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The bootstrapper for a relay reached at `origin` (`http(s)://host[:port]`, checked by
    /// `origin`); it goes into the script shell-quoted all the same.
    pub fn script(&self, origin: &str) -> Response {
        let mut cases = String::new();
        for (name, sum) in &self.sums {
            // tether-linux-x86_64 → `Linux-x86_64`, matching `uname -s`-`uname -m`.
            let platform = name.trim_start_matches("tether-");
            let (os, arch) = platform.split_once('-').unwrap_or((platform, ""));
            let os = match os {
                "linux" => "Linux",
                "macos" | "darwin" => "Darwin",
                other => other,
            };
            cases.push_str(&format!("  {os}-{arch}) name={name}; sum={sum} ;;\n"));
        }
        let script = SCRIPT.replace("@RELAY@", &shell_quote(origin)).replace("@CASES@", &cases);
        let mut response = Response::new(Body::from(script));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/x-shellscript; charset=utf-8"));
        // It names the origin it was asked at: no shared cache may hand it to anyone else.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        response
    }

    /// `/bin/NAME`: only the names loaded at start, so no path can be reached by a request.
    pub async fn binary(&self, name: &str) -> Response {
        if !self.sums.iter().any(|(known, _)| known == name) {
            return (StatusCode::NOT_FOUND, "no such binary\n").into_response();
        }
        match tokio::fs::read(self.dir.join(name)).await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
                response
            }
            Err(_) => (StatusCode::NOT_FOUND, "binary unavailable\n").into_response(),
        }
    }
}

/// The origin to put in the script: `--public-url` when given, else this request's `Host`
/// (only if it is a plain `host[:port]`) with the scheme this relay serves. `None`: no
/// trustworthy origin (the request gets a 400).
pub fn origin(public_url: Option<&str>, host_header: Option<&str>, tls: bool) -> Option<String> {
    if let Some(url) = public_url {
        return Some(url.to_owned());
    }
    let host = host_header?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!host.is_empty() && host.len() <= 255 && host.chars().all(plain))
        .then(|| format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// `text` as one shell word: single-quoted, each `'` closed, escaped and reopened.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn is_binary_name(name: &str) -> bool {
    name.strip_prefix("tether-").is_some_and(|rest| {
        rest.contains('-') && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

const SCRIPT: &str = r#"#!/bin/sh
# Tether CLI bootstrapper, served by the relay named in `relay` below.
# Downloads the tether binary for this machine from that relay, checks its SHA-256 against the
# sum below, and runs it with your arguments: curl -fsSL RELAY/cli | sh -s -- pair
set -eu
relay=@RELAY@
case "$(uname -s)-$(uname -m)" in
@CASES@  *) echo "tether: $relay has no build for $(uname -s) $(uname -m)" >&2; exit 1 ;;
esac
cache="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tether"
mkdir -p "$cache"
bin="$cache/$name-$sum"
if [ ! -x "$bin" ]; then
  tmp=$(mktemp "$cache/.download.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL "$relay/bin/$name" -o "$tmp"
  else
    wget -qO "$tmp" "$relay/bin/$name"
  fi
  if command -v sha256sum >/dev/null 2>&1; then got=$(sha256sum "$tmp"); else got=$(shasum -a 256 "$tmp"); fi
  got=${got%% *}
  if [ "$got" != "$sum" ]; then
    echo "tether: checksum mismatch for $name from $relay (got $got, expected $sum); not running it" >&2
    exit 1
  fi
  chmod +x "$tmp"
  mv "$tmp" "$bin"
  trap - EXIT
fi
exec "$bin" "$@"
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn origins_come_from_trusted_parts_and_are_quoted() {
        use super::{origin, shell_quote};
        assert_eq!(origin(Some("https://r.example"), Some("evil"), false).as_deref(), Some("https://r.example"));
        assert_eq!(origin(None, Some("127.0.0.1:8080"), false).as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(origin(None, Some("r.example"), true).as_deref(), Some("https://r.example"));
        assert_eq!(origin(None, Some("x'; touch /tmp/p; '"), false), None);
        assert_eq!(origin(None, Some("a b"), false), None);
        assert_eq!(origin(None, None, false), None);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn only_well_formed_names_are_binaries() {
        assert!(super::is_binary_name("tether-linux-x86_64"));
        assert!(!super::is_binary_name("tether"));
        assert!(!super::is_binary_name("tether-../x"));
        assert!(!super::is_binary_name("notes.txt"));
    }
}
