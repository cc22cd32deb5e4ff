//! Remote benchmark (`cargo xtask bench`): tether through a relay on loopback beside OpenSSH on
//! loopback, same machine, release binaries, reported as ratios.
//! - throughput: `tether exec INVITE -- head -c N /dev/zero` vs `ssh localhost head -c N /dev/zero`
//! - keystroke → echo: typing into `tether attach -H` vs `ssh -tt localhost cat`, both on PTYs;
//!   again with 100 ms of round trip (a proxy holding each direction 50 ms in front of the relay
//!   and of sshd: this kernel has no `tc netem`).
//! - file copy: `tether cp` of 1 GB up and down through the relay vs `scp` both ways (best of
//!   three each, as exec and ssh), beside exec's rate, and the
//!   keystroke echo through the same relay and host while an upload runs, beside idle.
//!
//! The bench starts its own `sshd` on a free loopback port with throwaway keys (Debian's
//! openssh-server must be installed; `cargo xtask bench` installs it when root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_tests::agent::{pair, wait_reachable, Agent, PtyClient};
use tether_tests::latency::DelayProxy;
use tether_tests::process::Guard;
use tether_tests::{wait_until, Relay};

const BYTES: usize = 200 * 1000 * 1000; // 200 MB
const RUNS: usize = 3;
const KEYSTROKES: usize = 200;
/// Half the round trip of the far measurements.
const FAR_ONE_WAY: Duration = Duration::from_millis(50);
/// Keys typed on the far paths (each takes a round trip).
const FAR_KEYSTROKES: usize = 100;

fn main() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("remote-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch");
    let ssh = Sshd::start(&scratch);

    let relay = Relay::start();
    let host = Agent::new(&scratch);
    let invite = pair(&host, &relay);
    // Through the relay, as this bench says: the data channel beside it is the webrtc bench's.
    host.ok(&["pair", "--relay", relay.url.trim_end_matches('/'), "--no-webrtc", "--json"]);
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
    let (t50, t99) = keystrokes(&mut attached, KEYSTROKES);
    attached.type_bytes(b"\x1dd");

    let mut cmd = portable_pty::CommandBuilder::new("ssh");
    cmd.args(ssh.args());
    cmd.args(["-tt", "stty raw -echo; exec cat"]);
    let mut ssh_pty = PtyClient::spawn_command(cmd);
    std::thread::sleep(Duration::from_millis(800));
    let (s50, s99) = keystrokes(&mut ssh_pty, KEYSTROKES);
    println!(
        "  keystroke → echo  tether p50 {:>5.2} ms p99 {:>5.2} ms   ssh p50 {:>5.2} ms p99 {:>5.2} ms   tether/ssh (p50) {:.2}",
        ms(t50), ms(t99), ms(s50), ms(s99), t50.as_secs_f64() / s50.as_secs_f64()
    );

    // The same keys 100 ms away: 50 ms each way through a delaying proxy in front of the relay
    // and of sshd. What each path adds to the network's round trip shows beside it.
    let far_relay = DelayProxy::start(relay.url.trim_start_matches("http://").trim_end_matches('/'), FAR_ONE_WAY);
    let far_invite = format!("http://{}/{}", far_relay.addr, &invite[invite.find('#').unwrap_or(0)..]);
    let mut far_attached = PtyClient::spawn(&client, &["attach", "-H", &far_invite, &session]);
    wait_until(Duration::from_secs(30), "attach through the slow path", || {
        (far_attached.output_len() > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let (ft50, ft99) = keystrokes(&mut far_attached, FAR_KEYSTROKES);
    far_attached.type_bytes(b"\x1dd");
    let far_sshd = DelayProxy::start(&format!("127.0.0.1:{}", ssh.port), FAR_ONE_WAY);
    let far_port = far_sshd.addr.rsplit(':').next().unwrap_or_default().to_owned();
    let mut cmd = portable_pty::CommandBuilder::new("ssh");
    cmd.args(ssh.args_with_port(&far_port));
    cmd.args(["-tt", "stty raw -echo; exec cat"]);
    let mut far_ssh = PtyClient::spawn_command(cmd);
    std::thread::sleep(Duration::from_millis(2_000)); // a handshake of several round trips
    let (fs50, fs99) = keystrokes(&mut far_ssh, FAR_KEYSTROKES);
    println!(
        "  echo, 100 ms RTT  tether p50 {:>5.1} ms p99 {:>5.1} ms   ssh p50 {:>5.1} ms p99 {:>5.1} ms   ({} keys each)",
        ms(ft50),
        ms(ft99),
        ms(fs50),
        ms(fs99),
        FAR_KEYSTROKES
    );
    copy_bench(&scratch, &ssh, &host, &client, &invite, &session, mb_s(tether));
}

const COPY_BYTES: u64 = 1_000_000_000; // 1 GB

/// `tether cp` beside `scp` and beside exec's rate through the same relay (`exec_mb_s`), both
/// ways, and keystroke echo during an upload.
fn copy_bench(scratch: &Path, ssh: &Sshd, host: &Agent, client: &Agent, invite: &str, session: &str, exec_mb_s: f64) {
    let source = scratch.join("copy-source.bin");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&source).expect("source");
        let block: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for _ in 0..COPY_BYTES / block.len() as u64 {
            file.write_all(&block).expect("write source");
        }
        file.write_all(&block[..(COPY_BYTES % block.len() as u64) as usize]).expect("write source");
    }
    let there = scratch.join("copy-there.bin");
    let back = scratch.join("copy-back.bin");
    let remote = format!("{invite}:{}", there.display());
    let timed = |command: &mut Command, target: &Path| {
        let _ = std::fs::remove_file(target);
        let started = Instant::now();
        let out = command.stdin(Stdio::null()).output().expect("run");
        let elapsed = started.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::metadata(target).map(|m| m.len()).unwrap_or(0), COPY_BYTES);
        elapsed
    };
    // Best of `RUNS` each, as exec and ssh are: single runs of a 1 GB copy on this machine
    // spread by a fifth.
    let up = best_of(|| timed(client.command().args(["cp"]).arg(&source).arg(&remote), &there));
    let down = best_of(|| timed(client.command().args(["cp", &remote]).arg(&back), &back));
    let scp = |from: &str, to: &str| {
        let mut command = Command::new("scp");
        // The classic protocol: the bench's sshd runs no sftp subsystem.
        command.arg("-O");
        let args = ssh.args();
        let (login, options) = args.split_last().expect("ssh args");
        // scp spells the port -P.
        let options: Vec<String> =
            options.iter().map(|a| if a == "-p" { "-P".to_owned() } else { a.clone() }).collect();
        command
            .args(options)
            .arg(from.replace("HOST:", &format!("{login}:")))
            .arg(to.replace("HOST:", &format!("{login}:")));
        command
    };
    let scp_up =
        best_of(|| timed(&mut scp(&source.display().to_string(), &format!("HOST:{}", there.display())), &there));
    let scp_down =
        best_of(|| timed(&mut scp(&format!("HOST:{}", there.display()), &back.display().to_string()), &back));
    let rate = |d: Duration| COPY_BYTES as f64 / 1e6 / d.as_secs_f64();
    println!(
        "  cp 1 GB up        tether {:>7.1} MB/s   scp {:>7.1} MB/s   tether/scp {:.2}   tether cp/exec {:.2}",
        rate(up),
        rate(scp_up),
        scp_up.as_secs_f64() / up.as_secs_f64(),
        rate(up) / exec_mb_s
    );
    println!(
        "  cp 1 GB down      tether {:>7.1} MB/s   scp {:>7.1} MB/s   tether/scp {:.2}   tether cp/exec {:.2}",
        rate(down),
        rate(scp_down),
        scp_down.as_secs_f64() / down.as_secs_f64(),
        rate(down) / exec_mb_s
    );

    // Keystrokes while an upload runs through the same relay and host.
    let mut attached = PtyClient::spawn(client, &["attach", "-H", invite, session]);
    std::thread::sleep(Duration::from_millis(500));
    let (idle50, idle99) = keystrokes(&mut attached, KEYSTROKES);
    let _ = std::fs::remove_file(&there);
    let mut upload = client.command();
    upload.arg("cp").arg(&source).arg(&remote).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut copying = Guard::spawn(upload);
    // Measured once the upload is well under way.
    wait_until(Duration::from_secs(60), "the upload to start", || {
        std::fs::read_dir(scratch).ok()?.flatten().find(|e| e.file_name().to_string_lossy().ends_with(".tether-upload"))
    });
    let (busy50, busy99) = keystrokes(&mut attached, KEYSTROKES);
    let still_copying = copying.is_running();
    println!(
        "  echo during cp    idle p50 {:>5.2} ms p99 {:>5.2} ms   uploading p50 {:>5.2} ms p99 {:>5.2} ms{}",
        ms(idle50),
        ms(idle99),
        ms(busy50),
        ms(busy99),
        if still_copying { "" } else { "   (the upload ended before the last key)" }
    );
    let _ = copying.wait_exit(Duration::from_secs(300), "the upload to end");
    attached.type_bytes(b"\x1dd");
    for file in [&source, &there, &back] {
        let _ = std::fs::remove_file(file);
    }
    let _ = host;
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

/// Type `count` keys one at a time; p50 and p99 until each one's echo (from `cat`) arrives.
fn keystrokes(client: &mut PtyClient, count: usize) -> (Duration, Duration) {
    let samples = client.echo_samples(count);
    (samples[count / 2], samples[(count * 99) / 100])
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
        self.args_with_port(&self.port.to_string())
    }

    /// `args`, reaching sshd through another port (a proxy in front of it).
    fn args_with_port(&self, port: &str) -> Vec<String> {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.dir.join("client_ed25519").display().to_string(),
            "-p".into(),
            port.to_owned(),
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
