//! `tether service install | uninstall | status`: the agent as a service of this user's, so the
//! host is reachable after a reboot without anyone logging in or running a command.
//!
//! Linux: a systemd *user* unit (`~/.config/systemd/user/tether.service`, `Restart=always`),
//! enabled and started with `systemctl --user` where a user manager answers, and lingering turned
//! on (or its command said) so that it starts at boot, not at the first login. macOS: a
//! LaunchAgent (`~/Library/LaunchAgents/dev.tether.agent.plist`, `KeepAlive`) loaded with
//! `launchctl`. Either runs `tether daemon` with this binary's absolute path and this state dir;
//! the daemon links to every relay it was paired with (they are in its store) and re-dials them
//! for as long as it runs.
//!
//! Invariants:
//! - Install writes one file (and the directories above it that were missing) and says which;
//!   uninstall removes that file, what enabling it made (the `systemctl enable` link) and those
//!   directories when they are empty, nothing else. `--print` touches nothing.
//! - Install never stops a daemon someone started by hand (its sessions would die): the service
//!   takes over when that one ends, and the output says so.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use tether_protocol::api::{Request, Response};

use crate::cli::args::ServiceAction;
use crate::paths::StateDir;
use crate::reach::local::{wait_for_socket, LocalClient};

/// The systemd unit's name, and the launchd job's label.
const UNIT: &str = "tether.service";
const LABEL: &str = "dev.tether.agent";
/// `service status` exit code when the agent is not running (as `daemon status`).
const EXIT_NOT_RUNNING: u8 = 3;

/// Which service manager this machine has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    fn here() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    /// Where the service's file goes.
    fn file(self) -> Result<PathBuf, String> {
        let home = || std::env::var_os("HOME").map(PathBuf::from).ok_or("HOME is not set");
        Ok(match self {
            Manager::Systemd => {
                let config = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
                config.map_or_else(|| home().map(|h| h.join(".config")), Ok)?.join("systemd/user").join(UNIT)
            }
            Manager::Launchd => home()?.join("Library/LaunchAgents").join(format!("{LABEL}.plist")),
        })
    }

    fn contents(self, exe: &Path, state: &StateDir) -> Result<String, String> {
        match self {
            Manager::Systemd => systemd_unit(exe, state),
            Manager::Launchd => Ok(launchd_plist(exe, state)),
        }
    }
}

pub async fn run(state: &StateDir, action: ServiceAction) -> Result<ExitCode, String> {
    let manager = Manager::here();
    match action {
        ServiceAction::Install { print } => install(state, manager, print).await,
        ServiceAction::Uninstall => uninstall(manager),
        ServiceAction::Status => status(state, manager).await,
    }
}

fn this_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the tether binary: {e}"))?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// A systemd unit line's value, quoted: `\` and `"` escaped, `%` (specifiers) doubled, and `$`
/// (variable expansion, in `ExecStart`) doubled.
fn systemd_quoted(value: &str, in_exec: bool) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err(format!("{value:?}: a path with a line break cannot go in a systemd unit"));
    }
    let mut quoted = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '%' => quoted.push_str("%%"),
            '$' if in_exec => quoted.push_str("$$"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    Ok(quoted)
}

fn text_of(path: &Path) -> Result<&str, String> {
    path.to_str().ok_or_else(|| format!("{}: not UTF-8, cannot go in a service file", path.display()))
}

fn systemd_unit(exe: &Path, state: &StateDir) -> Result<String, String> {
    let exec = systemd_quoted(text_of(exe)?, true)?;
    let state_dir = systemd_quoted(&format!("TETHER_STATE_DIR={}", text_of(state.root())?), false)?;
    Ok(format!(
        "# Written by `tether service install`; `tether service uninstall` removes it.
[Unit]
Description=Tether agent: this machine's terminals and files, reachable through its relays
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec} daemon
Environment={state_dir}
Restart=always
RestartSec=2
# The agent is told first (it ends its sessions within their grace); what is left goes after.
KillMode=mixed
TimeoutStopSec=20

[Install]
WantedBy=default.target
"
    ))
}

fn xml_escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn launchd_plist(exe: &Path, state: &StateDir) -> String {
    let exe = xml_escaped(&exe.display().to_string());
    let root = xml_escaped(&state.root().display().to_string());
    let log = xml_escaped(&state.daemon_log().display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `tether service install`; `tether service uninstall` removes it. -->
<plist version="1.0">
<dict>
  <key>Label</key><string>{LABEL}</string>
  <key>ProgramArguments</key>
  <array><string>{exe}</string><string>daemon</string></array>
  <key>EnvironmentVariables</key>
  <dict><key>TETHER_STATE_DIR</key><string>{root}</string></dict>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><true/>
  <key>StandardErrorPath</key><string>{log}</string>
</dict>
</plist>
"#
    )
}

/// Run a service manager's command; its output, or why it failed (`None`: not there at all).
fn manager_command(program: &str, args: &[&str]) -> Option<Result<String, String>> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Some(match out.status.success() {
        true => Ok(text),
        false => {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(if said.is_empty() { text } else { said })
        }
    })
}

fn systemctl(args: &[&str]) -> Option<Result<String, String>> {
    let mut all = vec!["--user"];
    all.extend_from_slice(args);
    manager_command("systemctl", &all)
}

/// Whether a systemd user manager answers (none in most containers, or without a session bus).
fn user_manager() -> bool {
    matches!(systemctl(&["show-environment"]), Some(Ok(_)))
}

fn user_name() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() }.to_string()
    })
}

async fn install(state: &StateDir, manager: Manager, print: bool) -> Result<ExitCode, String> {
    let exe = this_binary()?;
    let file = manager.file()?;
    let contents = manager.contents(&exe, state)?;
    if print {
        print!("# {}\n{contents}", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(&file, &contents).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    println!("wrote {} (runs {} daemon)", file.display(), exe.display());
    let running = LocalClient::connect(state, false).await.is_ok();
    match manager {
        Manager::Systemd => enable_systemd(state, running).await,
        Manager::Launchd => load_launchd(&file, running),
    }
}

async fn enable_systemd(state: &StateDir, running: bool) -> Result<ExitCode, String> {
    if !user_manager() {
        println!(
            "No systemd user manager answers here (a container, or no login session): run \
             `systemctl --user daemon-reload && systemctl --user enable --now {UNIT}` where one does, \
             or start `tether daemon` from this machine's init system."
        );
        return Ok(ExitCode::SUCCESS);
    }
    for args in [&["daemon-reload"][..], &["enable", UNIT]] {
        if let Some(Err(why)) = systemctl(args) {
            return Err(format!("systemctl --user {}: {why}", args.join(" ")));
        }
    }
    let active = matches!(systemctl(&["is-active", UNIT]), Some(Ok(_)));
    if active {
        println!("enabled; the service is running");
    } else if running {
        println!(
            "enabled; a tether daemon started by hand is running now (with its sessions): the service \
             takes over when it stops (`tether daemon stop`, then `systemctl --user start {UNIT}`) or at \
             the next boot"
        );
    } else {
        if let Some(Err(why)) = systemctl(&["start", UNIT]) {
            return Err(format!("systemctl --user start {UNIT}: {why}"));
        }
        wait_for_socket(state).await?;
        println!("enabled and started");
    }
    // Without lingering, a user's services start at their first login, not at boot.
    let user = user_name();
    let lingering = manager_command("loginctl", &["show-user", &user, "--property=Linger", "--value"]);
    if !matches!(&lingering, Some(Ok(value)) if value == "yes") {
        match manager_command("loginctl", &["enable-linger", &user]) {
            Some(Ok(_)) => println!("lingering turned on for {user}: the service starts at boot, before any login"),
            _ => println!("To start it at boot rather than at your first login: sudo loginctl enable-linger {user}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn launchd_domain() -> String {
    // SAFETY: getuid has no preconditions.
    format!("gui/{}", unsafe { libc::getuid() })
}

fn load_launchd(file: &Path, running: bool) -> Result<ExitCode, String> {
    let file = file.display().to_string();
    let domain = launchd_domain();
    // Loaded already (a reinstall): out first, so the new file is what runs.
    let _ = manager_command("launchctl", &["bootout", &format!("{domain}/{LABEL}")]);
    if running {
        println!("a tether daemon started by hand is running; the service takes over when it stops");
    }
    match manager_command("launchctl", &["bootstrap", &domain, &file]) {
        Some(Ok(_)) => println!("loaded; it starts at every login and is restarted if it stops"),
        Some(Err(why)) => return Err(format!("launchctl bootstrap {domain} {file}: {why}")),
        None => println!("launchctl is not here: load {file} with `launchctl bootstrap {domain} {file}`"),
    }
    Ok(ExitCode::SUCCESS)
}

fn uninstall(manager: Manager) -> Result<ExitCode, String> {
    let file = manager.file()?;
    if std::fs::symlink_metadata(&file).is_err() {
        println!("not installed ({} is not there)", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    match manager {
        Manager::Systemd if user_manager() => {
            // Stopped as any service is on removal: its agent ends its sessions within their grace.
            if let Some(Err(why)) = systemctl(&["disable", "--now", UNIT]) {
                return Err(format!("systemctl --user disable --now {UNIT}: {why}"));
            }
        }
        Manager::Systemd => {
            // No manager to ask: remove the link `enable` made, if it is ours.
            let wants = file.with_file_name("default.target.wants").join(UNIT);
            if std::fs::read_link(&wants).is_ok_and(|target| target == file) {
                std::fs::remove_file(&wants).map_err(|e| format!("cannot remove {}: {e}", wants.display()))?;
            }
        }
        Manager::Launchd => {
            let _ = manager_command("launchctl", &["bootout", &format!("{}/{LABEL}", launchd_domain())]);
        }
    }
    std::fs::remove_file(&file).map_err(|e| format!("cannot remove {}: {e}", file.display()))?;
    // The directories install may have made go too, when nothing else is in them.
    if manager == Manager::Systemd {
        let user_dir = file.parent();
        for dir in [user_dir, user_dir.and_then(Path::parent)].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir); // only ever an empty one
        }
    }
    if manager == Manager::Systemd && user_manager() {
        let _ = systemctl(&["daemon-reload"]);
    }
    println!("removed {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// When the service manager runs the daemon `pid` (systemd), stop it through the manager, which
/// would otherwise restart it; whether it did.
pub fn stop_if_managing(pid: u32) -> Result<bool, String> {
    if Manager::here() != Manager::Systemd || !user_manager() {
        return Ok(false);
    }
    let main_pid = systemctl(&["show", "--property=MainPID", "--value", UNIT]);
    if !matches!(&main_pid, Some(Ok(main)) if main == &pid.to_string()) {
        return Ok(false);
    }
    match systemctl(&["stop", UNIT]) {
        Some(Ok(_)) => Ok(true),
        Some(Err(why)) => Err(format!("systemctl --user stop {UNIT}: {why}")),
        None => Ok(false),
    }
}

async fn status(state: &StateDir, manager: Manager) -> Result<ExitCode, String> {
    let file = manager.file()?;
    match std::fs::read_to_string(&file) {
        Ok(contents) => {
            let exe = this_binary()?;
            let names_this = contents.contains(&exe.display().to_string());
            let note = if names_this { String::new() } else { " — for another tether binary: install again".into() };
            println!("installed: {}{note}", file.display());
        }
        Err(_) => println!("not installed ({} is not there)", file.display()),
    }
    if manager == Manager::Systemd && user_manager() {
        let word = |args: &[&str]| match systemctl(args) {
            Some(Ok(word)) | Some(Err(word)) => word,
            None => "unknown".into(),
        };
        println!("systemd: {}, {}", word(&["is-enabled", UNIT]), word(&["is-active", UNIT]));
    }
    let Ok(client) = LocalClient::connect(state, false).await else {
        println!("agent: not running ({})", state.root().display());
        return Ok(ExitCode::from(EXIT_NOT_RUNNING));
    };
    if let (Response::Daemon { pid, running, relays, .. }, _) = client.call(&Request::DaemonStatus, Vec::new()).await? {
        println!("agent: running (pid {pid}), {running} sessions running");
        if relays.is_empty() {
            println!("  not paired with a relay (`tether pair`)");
        }
        for link in &relays {
            println!("  {}", crate::cli::daemon::describe_link(link));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_values_are_quoted_as_systemd_reads_them() {
        assert_eq!(systemd_quoted("/opt/my tether/tether", true).expect("quoted"), "\"/opt/my tether/tether\"");
        assert_eq!(systemd_quoted("/a/100%/$HOME\\\"", true).expect("quoted"), "\"/a/100%%/$$HOME\\\\\\\"\"");
        assert_eq!(systemd_quoted("X=$HOME", false).expect("quoted"), "\"X=$HOME\"");
        assert!(systemd_quoted("/a\nb", true).is_err());
        assert_eq!(xml_escaped("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
