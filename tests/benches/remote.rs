//! Remote benchmark (`cargo xtask bench`): tether through a relay on loopback beside OpenSSH on
//! loopback, same machine, release binaries, reported as ratios.
//! - throughput: `tether exec INVITE -- head -c N /dev/zero` vs `ssh localhost head -c N /dev/zero`
//! - keystroke → echo: typing into `tether attach -H` vs `ssh -tt localhost cat`, both on PTYs.
//!
//! The bench starts its own `sshd` on a free loopback port with throwaway keys (Debian's
//! openssh-server must be installed; `cargo xtask bench` installs it when root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_tests::agent::{pair, wait_reachable, Agent, PtyClient};
use tether_tests::process::Guard;
use tether_tests::{wait_until, Relay};

const BYTES: usize = 200 * 1000 * 1000; // 200 MB
const RUNS: usize = 3;
const KEYSTROKES: usize = 50;

fn main() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("remote-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let ssh = Sshd::start(&scratch);

    let relay = Relay::start();
    let host = Agent::new(&scratch);
    let invite = pair(&host, &relay);
    let client = Agent::new(&scratch);
    wait_reachable(&client, &invite);

    println!("remote benchmark (release binaries, loopback, {} MB)", BYTES / 1_000_000);
    let command = format!("head -c {BYTES} /dev/zero");
    let tether = best_of(|| timed_bytes(client.command().args(["exec", &invite, "--", "sh", "-c", &command])));
    let openssh = best_of(|| timed_bytes(ssh.command().arg(&command)));
    println!(
        "  exec throughput   tether {:>7.1} MB/s   ssh {:>7.1} MB/s   tether/ssh {:.2}",
        mb_s(tether),
        mb_s(openssh),
        openssh.as_secs_f64() / tether.as_secs_f64()
    );

    let session = host.start_shell();
    host.ok(&["send", &session, "stty raw -echo; exec cat", "key:enter"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut attached = PtyClient::spawn(&client, &["attach", "-H", &invite, &session]);
    std::thread::sleep(Duration::from_millis(500));
    let (t50, t99) = keystrokes(&mut attached);
    attached.type_bytes(b"\x1dd");

    let mut cmd = portable_pty::CommandBuilder::new("ssh");
    cmd.args(ssh.args());
    cmd.args(["-tt", "stty raw -echo; exec cat"]);
    let mut ssh_pty = PtyClient::spawn_command(cmd);
    std::thread::sleep(Duration::from_millis(800));
    let (s50, s99) = keystrokes(&mut ssh_pty);
    println!(
        "  keystroke → echo  tether p50 {:>5.2} ms p99 {:>5.2} ms   ssh p50 {:>5.2} ms p99 {:>5.2} ms   tether/ssh (p50) {:.2}",
        ms(t50), ms(t99), ms(s50), ms(s99), t50.as_secs_f64() / s50.as_secs_f64()
    );
}

/// Wall time of a command whose stdout must be exactly `BYTES` long.
fn timed_bytes(command: &mut Command) -> Duration {
    let started = Instant::now();
    let out = command.stdin(Stdio::null()).output().expect("run");
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), BYTES);
    elapsed
}

fn best_of(mut run: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| run()).min().unwrap_or_default()
}

/// Type one key at a time; time until its echo (from `cat`) arrives.
fn keystrokes(client: &mut PtyClient) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(KEYSTROKES);
    for i in 0..KEYSTROKES {
        let key = b'a' + (i % 26) as u8;
        let before = client.output_len();
        let started = Instant::now();
        client.type_bytes(&[key]);
        while client.output_len() == before {
            assert!(started.elapsed() < Duration::from_secs(10), "no echo; terminal shows {:?}", client.output());
            std::thread::sleep(Duration::from_micros(50));
        }
        samples.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    samples.sort();
    (samples[KEYSTROKES / 2], samples[(KEYSTROKES * 99) / 100])
}

fn mb_s(d: Duration) -> f64 {
    BYTES as f64 / 1e6 / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A private sshd on loopback, with throwaway host and client keys.
struct Sshd {
    dir: PathBuf,
    port: u16,
    _process: Guard,
}

impl Sshd {
    fn start(scratch: &Path) -> Sshd {
        let dir = scratch.join("sshd");
        std::fs::create_dir_all(&dir).expect("sshd dir");
        for key in ["host_ed25519", "client_ed25519"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(key))
                .status()
                .expect("ssh-keygen");
            assert!(status.success());
        }
        std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nLogLevel ERROR\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).expect("config");
        let _ = std::fs::create_dir_all("/run/sshd"); // privilege separation directory
        let mut command = Command::new("/usr/sbin/sshd");
        command.args(["-D", "-e", "-f"]).arg(dir.join("sshd_config"));
        let process = Guard::spawn(command);
        let sshd = Sshd { dir, port, _process: process };
        wait_until(Duration::from_secs(20), "sshd to accept logins", || {
            sshd.command().arg("true").stdin(Stdio::null()).stderr(Stdio::null()).status().ok().filter(|s| s.success())
        });
        sshd
    }

    fn args(&self) -> Vec<String> {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.dir.join("client_ed25519").display().to_string(),
            "-p".into(),
            self.port.to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            format!("{user}@127.0.0.1"),
        ]
    }

    fn command(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.args());
        command
    }
}
