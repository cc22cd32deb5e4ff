//! Install what the build needs when it is missing, at the versions the lockfiles pin.
//! A fresh machine of our kind goes from nothing to green with these steps; a machine that
//! already has the right versions pays only a few `--version` calls.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{root, run_cmd, Result};

/// Trunk release known to build here (0.22 needs a newer rustc).
const TRUNK_VERSION: &str = "0.21.14";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Everything `trunk build` and the wasm32 tests need.
pub fn ensure_build_tools() -> Result {
    ensure_wasm_target()?;
    let bindgen = locked_version("wasm-bindgen")?;
    check_trunk_toml(&bindgen)?;
    // The CLI must equal the library version in Cargo.lock. Its own lockfile wants a crate
    // version our registry lacks, so it is installed without --locked.
    ensure_cargo_tool("wasm-bindgen", &bindgen, &["wasm-bindgen-cli", "--version", &bindgen])?;
    ensure_cargo_tool("trunk", TRUNK_VERSION, &["--locked", "trunk", "--version", TRUNK_VERSION])?;
    ensure_npm_deps()
}

/// Clippy, which `test` runs on every crate (in rustup's default profile, but not in every one).
pub fn ensure_clippy() -> Result {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim().starts_with("clippy")) {
        return Ok(());
    }
    run_cmd(Command::new("rustup").args(["component", "add", "clippy"]))
}

/// `PATH` with npm's `node_modules/.bin` first, so Trunk finds binaryen's `wasm-opt` there.
pub fn path_with_node_bin() -> std::ffi::OsString {
    let mut paths = vec![root().join("node_modules/.bin")];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap_or_default()
}

fn ensure_wasm_target() -> Result {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    run_cmd(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// The version of `package` recorded in Cargo.lock.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&needle).ok_or_else(|| format!("{package} is not in Cargo.lock"))? + needle.len();
    let end = lock[start..].find('"').ok_or("Cargo.lock is malformed")?;
    Ok(lock[start..start + end].to_owned())
}

fn check_trunk_toml(bindgen: &str) -> Result {
    let trunk = std::fs::read_to_string(root().join("Trunk.toml")).map_err(|e| format!("Trunk.toml: {e}"))?;
    if trunk.contains(&format!("wasm_bindgen = \"{bindgen}\"")) {
        Ok(())
    } else {
        Err(format!("Trunk.toml's [tools] wasm_bindgen must equal Cargo.lock's wasm-bindgen {bindgen}"))
    }
}

/// `cargo install` a tool unless `<bin> --version` already reports `version`.
fn ensure_cargo_tool(bin: &str, version: &str, install_args: &[&str]) -> Result {
    let current = Command::new(bin).arg("--version").output();
    if let Ok(out) = current {
        if String::from_utf8_lossy(&out.stdout).split_whitespace().any(|w| w == version) {
            return Ok(());
        }
    }
    eprintln!("xtask: installing {bin} {version} (takes minutes, once per machine)");
    run_cmd(Command::new("cargo").arg("install").args(install_args))
}

/// `npm ci` unless node_modules is at least as new as the lockfile.
fn ensure_npm_deps() -> Result {
    let installed_marker = root().join("node_modules/.package-lock.json");
    if is_newer(&installed_marker, &root().join("package-lock.json")) {
        return Ok(());
    }
    run_cmd(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]))
}

fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a >= b)
}

/// Chromium and chromedriver from Debian; returns chromedriver's path.
pub fn ensure_chromium() -> Result<PathBuf> {
    let driver = PathBuf::from("/usr/bin/chromedriver");
    if !(Path::new("/usr/bin/chromium").exists() && driver.exists()) {
        apt_install(&["chromium", "chromium-driver"])?;
    }
    Ok(driver)
}

/// Install Debian `package` unless `path` exists.
pub fn ensure_apt_package(path: &str, package: &str) -> Result {
    if Path::new(path).exists() {
        return Ok(());
    }
    apt_install(&[package])
}

fn apt_install(packages: &[&str]) -> Result {
    let is_root = output(Command::new("id").arg("-u")).map(|uid| uid.trim() == "0").unwrap_or(false);
    if !is_root {
        return Err(format!("missing Debian packages: {} (install them, or run as root)", packages.join(" ")));
    }
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get").args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// cargo-fuzz for `cargo xtask fuzz`.
pub fn ensure_cargo_fuzz() -> Result {
    if Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    run_cmd(Command::new("cargo").args(["install", "--locked", "cargo-fuzz"]))
}

fn output(command: &mut Command) -> Result<String> {
    let out = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
