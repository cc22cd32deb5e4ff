//! `tether service`: the agent as a service, so a host is reachable after a reboot. The service
//! manager itself is not ours to test (there is none in a container); what it is given is — the
//! file `install` writes, checked by systemd's own verifier where it is installed — and what is
//! ours: the daemon it starts links to its relay by itself, and again after being killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tether_tests::agent::{self, wait_reachable, Agent};
use tether_tests::{bin_path, wait_until, Scratch};

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// `tether service ARGS` for `host`, with its config dir (where the unit goes) at `config`.
fn service(host: &Agent, config: &Path, args: &[&str]) -> std::process::Output {
    let mut command = host.command();
    command.env("XDG_CONFIG_HOME", config).arg("service").args(args);
    command.output().expect("tether service")
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "failed ({}): {}", out.status, tether_tests::stderr_of(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A value as systemd reads it from a quoted unit line (`\\`, `\"`, `%%`, `$$`).
fn unquoted(value: &str) -> String {
    let inner = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).expect("a quoted value");
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '%' | '$' => {
                let next = chars.next().expect("an escape");
                assert!(c == '\\' || next == c, "{value}");
                out.push(next);
            }
            c => out.push(c),
        }
    }
    out
}

/// What the unit runs: the program, its arguments, and its environment.
fn exec_of(unit: &str) -> (PathBuf, Vec<String>, Vec<(String, String)>) {
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let (program, args) = exec.rsplit_once("\" ").expect("a quoted program then its arguments");
    let program = PathBuf::from(unquoted(&format!("{program}\"")));
    let args = args.split(' ').map(str::to_owned).collect();
    let env = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|v| {
            let v = unquoted(v);
            let (key, value) = v.split_once('=').expect("KEY=VALUE");
            (key.to_owned(), value.to_owned())
        })
        .collect();
    (program, args, env)
}

/// Files (not directories) under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|e| match e.file_type().is_ok_and(|t| t.is_dir()) {
            true => files_under(&e.path()),
            false => vec![e.path()],
        })
        .collect()
}

#[test]
fn install_writes_a_valid_unit_naming_this_binary_and_uninstall_leaves_nothing_behind() {
    let host = Agent::new(scratch());
    let config = Scratch::dir(scratch(), "service-config");
    let printed = stdout(&service(&host, &config, &["install", "--print"]));
    let unit_path = config.join("systemd/user/tether.service");
    assert_eq!(printed.lines().next(), Some(format!("# {}", unit_path.display()).as_str()), "{printed}");
    assert!(files_under(&config).is_empty(), "--print wrote something: {:?}", files_under(&config));
    let (program, args, env) = exec_of(&printed);
    let binary = bin_path("tether").canonicalize().expect("the binary");
    assert_eq!((program, args), (binary, vec!["daemon".to_owned()]), "{printed}");
    assert!(env.contains(&("TETHER_STATE_DIR".into(), host.state.display().to_string())), "{printed}");
    assert!(printed.lines().any(|l| l == "Restart=always"), "{printed}");
    // systemd's own reading of it, where systemd is installed.
    let checked = Scratch::dir(scratch(), "service-verify");
    std::fs::write(checked.join("tether.service"), &printed).expect("write");
    match Command::new("systemd-analyze").arg("verify").arg(checked.join("tether.service")).output() {
        Ok(out) => assert!(out.status.success(), "systemd-analyze verify: {}", tether_tests::stderr_of(&out)),
        Err(e) => eprintln!("(no systemd-analyze here: {e}; the unit was not verified)"),
    }

    let said = stdout(&service(&host, &config, &["install"]));
    assert!(said.contains(&format!("wrote {}", unit_path.display())), "{said}");
    let written = std::fs::read_to_string(&unit_path).expect("the unit");
    assert_eq!(written, printed.split_once('\n').expect("two parts").1, "install wrote what --print showed");
    let status = service(&host, &config, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("installed: {}", unit_path.display())));

    let said = stdout(&service(&host, &config, &["uninstall"]));
    assert!(said.contains(&format!("removed {}", unit_path.display())), "{said}");
    assert!(files_under(&config).is_empty(), "left behind: {:?}", files_under(&config));
    let status = service(&host, &config, &["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not installed"));
    let again = stdout(&service(&host, &config, &["uninstall"]));
    assert!(again.contains("not installed"), "{again}");
}

/// The daemon, started as the unit's `ExecStart` would start it: that program, those arguments
/// and that environment alone.
struct AsTheServiceStartsIt(Child);

impl AsTheServiceStartsIt {
    fn start(unit: &str) -> AsTheServiceStartsIt {
        let (program, args, env) = exec_of(unit);
        let mut command = Command::new(program);
        command.args(args).env_clear().envs(env).current_dir("/");
        for keep in ["HOME", "PATH"] {
            if let Some(value) = std::env::var_os(keep) {
                command.env(keep, value);
            }
        }
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        AsTheServiceStartsIt(command.spawn().expect("the daemon"))
    }

    /// What `Restart=always` answers to: the daemon killed outright.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AsTheServiceStartsIt {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn the_daemon_the_service_starts_links_to_its_relay_by_itself_and_again_after_being_killed() {
    let (relay, host, invite, client) = agent::paired(scratch());
    let config = Scratch::dir(scratch(), "service-run-config");
    let unit = stdout(&service(&host, &config, &["install", "--print"]));
    // As after a reboot: no agent, until the service manager starts one.
    host.ok(&["daemon", "stop", "--grace", "0s"]);
    let out = client.run(&["ls", "-H", &invite]);
    assert!(!out.status.success(), "the host answered with its agent stopped");

    let mut daemon = AsTheServiceStartsIt::start(&unit);
    wait_reachable(&client, &invite);
    let status = service(&host, &config, &["status"]);
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "{said}");
    assert!(said.contains(&format!("linked to {}", relay.url.trim_end_matches('/'))), "{said}");

    daemon.kill();
    let out = client.run(&["ls", "-H", &invite]);
    assert!(!out.status.success(), "the host answered with its agent killed");
    let _daemon = AsTheServiceStartsIt::start(&unit);
    wait_until(agent::WAIT, "the host to be reachable again", || {
        client.run(&["ls", "-H", &invite]).status.success().then_some(())
    });
}
