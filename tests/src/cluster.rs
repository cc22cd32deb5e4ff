//! Relays of one service on several nodes: a real `redis-server` (Debian's), started and killed
//! by the test, and relay processes pointed at it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::Guard;
use crate::{wait_until, Relay};

/// Where Debian puts it (`cargo xtask test` installs the package).
const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` on a loopback port, with no persistence: killed, it forgets everything, as a
/// cache node that restarts does.
pub struct RedisServer {
    pub port: u16,
    process: Option<Guard>,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut redis = RedisServer { port: free_port(), process: None };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: no goodbye to its clients, nothing kept).
    pub fn kill(&mut self) {
        self.process = None;
        wait_until(Duration::from_secs(10), "redis-server to stop listening", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err().then_some(())
        });
    }

    /// Start it (again) on its port, empty, and wait until it answers.
    pub fn restart(&mut self) {
        assert!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} missing: run `cargo xtask test` (it installs redis-server)"
        );
        let mut command = Command::new(REDIS_SERVER);
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.process = Some(Guard::spawn(command));
        wait_until(Duration::from_secs(10), "redis-server to answer PING", || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            stream.write_all(b"PING\r\n").ok()?;
            let mut answer = [0u8; 7];
            stream.read_exact(&mut answer).ok()?;
            (&answer == b"+PONG\r\n").then_some(())
        });
    }
}

/// A node secret file under `dir` (all nodes of one service share it).
pub fn node_secret(dir: &Path) -> PathBuf {
    let path = dir.join("node-secret");
    std::fs::write(&path, "a-node-secret-for-this-test-only\n").expect("node secret");
    path
}

/// A relay node on Redis `redis` with `secret`, its stderr to `log`; `extra` arguments after.
pub fn node(redis: &RedisServer, secret: &Path, listen: &str, log: &Path, extra: &[&str]) -> Relay {
    let (url, secret) = (redis.url(), secret.display().to_string());
    let mut args = vec!["--redis", url.as_str(), "--node-secret-file", secret.as_str()];
    args.extend_from_slice(extra);
    let relay = Relay::start_logging_at(listen, &args, log);
    wait_until(Duration::from_secs(10), "the relay node to reach Redis", || {
        std::fs::read_to_string(log).ok()?.contains("Redis reachable").then_some(())
    });
    relay
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Open the WebSocket `url`, send `first` (a text message) if given, and return how the other
/// side ended it — close code and reason — within 10 s; `Err` with the HTTP answer if the upgrade
/// was refused.
pub fn close_of(url: &str, first: Option<&str>) -> Result<(u16, String), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    runtime().block_on(async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
        if let Some(text) = first {
            socket.send(Message::Text(text.into())).await.map_err(|e| e.to_string())?;
        }
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(message) = socket.next().await {
                match message {
                    Ok(Message::Close(Some(frame))) => return Ok((u16::from(frame.code), frame.reason.to_string())),
                    Ok(Message::Close(None)) => return Ok((1005, String::new())),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err("closed without a close frame".to_owned())
        });
        ended.await.map_err(|_| "still open after 10 s".to_owned())?
    })
}

/// What a relay's `/ws/presence` says of one host, as it says it (`true`: online).
pub struct PresenceWatch {
    seen: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl PresenceWatch {
    /// Watch `host_id` on the relay at `relay_url` (`http://…/`).
    pub fn start(relay_url: &str, host_id: &str) -> PresenceWatch {
        use futures_util::StreamExt;
        let url =
            format!("{}/ws/presence?hosts={host_id}", relay_url.trim_end_matches('/').replace("http://", "ws://"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        // The thread ends when the relay closes the socket (at the latest when the test stops it).
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else { return };
                while let Some(Ok(message)) = socket.next().await {
                    let Ok(text) = message.to_text() else { continue };
                    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
                        if let Some(online) = value["online"].as_bool() {
                            sink.lock().unwrap_or_else(|p| p.into_inner()).push(online);
                        }
                    }
                }
            });
        });
        PresenceWatch { seen }
    }

    /// The last state said, once one was.
    pub fn last(&self) -> Option<bool> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).last().copied()
    }

    /// Wait until the last state said is `online`.
    pub fn wait_for(&self, online: bool, timeout: Duration) {
        let what = format!("presence to say {}", if online { "online" } else { "offline" });
        wait_until(timeout, &what, || (self.last() == Some(online)).then_some(()));
    }
}
