//! Relay benchmark (`cargo xtask bench`): what idle hosts and idle clients cost one relay
//! process (release build, the binary alone, as an operator runs it).
//!
//! Reports, for 10,000 registered hosts that say nothing (each from its own loopback address,
//! proving a host key as real agents do), and separately for 1,000 connected clients past their
//! handshake (spread over 20 hosts) that say nothing:
//! - relay resident memory before and after, and per host / per client;
//! - relay CPU over `IDLE_SECS` idle seconds (only keep-alive pings happen);
//! - the time to register them all (256 registrations in flight at once).
//!
//! The hosts and clients here are this program's, not agents: an idle host is a socket that
//! registered and answers pings, which is what the relay holds for any idle host. A client's
//! host answers its first message with a frame whose outer type ends the handshake
//! (`auth/server_proof`), the one thing the relay looks at.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether_protocol::frame::{AuthStep, Frame, FrameDecoder, Header, RelayMsg};
use tether_protocol::identity;
use tokio_tungstenite::tungstenite::Message;

const HOSTS: usize = 10_000;
const CLIENTS: usize = 1_000;
const CLIENT_HOSTS: usize = 20;
/// Registrations (or client connections) in flight at once.
const IN_FLIGHT: usize = 256;
/// Sockets per /24 of loopback sources: under the relay's per-network caps (256 hosts, 512
/// clients), as hosts spread over many networks would be.
const PER_NETWORK: usize = 200;

fn idle_secs() -> u64 {
    std::env::var("TETHER_BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60)
}

fn main() {
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("relay benchmark (release binary, idle for {} s per part)", idle_secs());
    runtime.block_on(idle_hosts());
    runtime.block_on(idle_clients());
}

/// A loopback source address: `first_octet`.N.M, `PER_NETWORK` to a /24.
fn source(first_octet: u8, index: usize) -> Ipv4Addr {
    let network = index / PER_NETWORK;
    Ipv4Addr::new(127, first_octet, u8::try_from(network).expect("few networks"), (index % PER_NETWORK + 1) as u8)
}

async fn idle_hosts() {
    let relay = tether_tests::Relay::start();
    let pid = relay.pid();
    let address: SocketAddr = relay.address().parse().expect("relay address");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = resident_bytes(pid);
    let (hosts, took) = open_all(HOSTS, |index| async move { register_host(address, source(10, index)).await.0 }).await;
    let (after, cpu, readers) = idle(pid, hosts).await;
    let per_host = after.saturating_sub(before) / HOSTS as u64;
    println!("  {HOSTS} idle hosts:");
    println!(
        "    register all:                {:>8.2} s  ({:.0} per second)",
        took.as_secs_f64(),
        HOSTS as f64 / took.as_secs_f64()
    );
    println!("    relay resident:              {:>8.1} MiB before, {:.1} MiB after", mib(before), mib(after));
    println!("    per idle host:               {:>8.1} KiB  (aim: ≤ 20 KiB)", per_host as f64 / 1024.0);
    println!("    relay CPU while idle:        {:>8.2} % of one core ({:.2} s over {} s)", cpu.0, cpu.1, idle_secs());
    for reader in readers {
        reader.abort();
    }
}

async fn idle_clients() {
    let relay = tether_tests::Relay::start();
    let pid = relay.pid();
    let address: SocketAddr = relay.address().parse().expect("relay address");
    let mut host_ids = Vec::new();
    let mut host_tasks = Vec::new();
    for index in 0..CLIENT_HOSTS {
        let (socket, host_id) = register_host(address, source(30, index)).await;
        host_ids.push(host_id);
        host_tasks.push(tokio::spawn(answer_hellos(socket)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = resident_bytes(pid);
    let host_ids = Arc::new(host_ids);
    let (clients, took) = open_all(CLIENTS, |index| {
        let host_ids = host_ids.clone();
        async move { connect_client(address, source(40, index), &host_ids[index % CLIENT_HOSTS]).await }
    })
    .await;
    let (after, cpu, readers) = idle(pid, clients).await;
    let per_client = after.saturating_sub(before) / CLIENTS as u64;
    println!("  {CLIENTS} idle clients past their handshake ({CLIENT_HOSTS} hosts):");
    println!("    connect all:                 {:>8.2} s", took.as_secs_f64());
    println!("    relay resident:              {:>8.1} MiB before, {:.1} MiB after", mib(before), mib(after));
    println!("    per idle client:             {:>8.1} KiB", per_client as f64 / 1024.0);
    println!("    relay CPU while idle:        {:>8.2} % of one core ({:.2} s over {} s)", cpu.0, cpu.1, idle_secs());
    for task in readers.into_iter().chain(host_tasks) {
        task.abort();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Open `count` sockets with `open(index)`, `IN_FLIGHT` at a time; them, and how long it took.
async fn open_all<F, O>(count: usize, open: O) -> (Vec<Socket>, Duration)
where
    F: std::future::Future<Output = Socket> + Send + 'static,
    O: Fn(usize) -> F,
{
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let (gate, opening) = (gate.clone(), open(index));
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("gate");
                opening.await
            })
        })
        .collect();
    let mut sockets = Vec::with_capacity(count);
    for task in tasks {
        sockets.push(task.await.expect("a socket opens"));
    }
    (sockets, started.elapsed())
}

/// Let `sockets` idle — each read, so pings are answered, and nothing else — and take the
/// relay's resident bytes after, its CPU over the idle window, and the readers (to stop).
async fn idle(pid: i32, sockets: Vec<Socket>) -> (u64, (f64, f64), Vec<tokio::task::JoinHandle<()>>) {
    let readers =
        sockets.into_iter().map(|mut s| tokio::spawn(async move { while s.next().await.is_some() {} })).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = resident_bytes(pid);
    (after, idle_cpu(pid).await, readers)
}

async fn dial(relay: SocketAddr, from: Ipv4Addr, path: &str) -> (Socket, Option<String>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from.into(), 0)).expect("bind a loopback source");
    let stream = socket.connect(relay).await.expect("connect to the relay");
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{relay}{path}");
    let (socket, answer) = tokio_tungstenite::client_async(url.as_str(), stream).await.expect("websocket upgrade");
    let challenge = answer.headers().get(identity::CHALLENGE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (socket, challenge)
}

/// A host with a fresh key, registered as an agent registers; the socket and its id.
async fn register_host(relay: SocketAddr, from: Ipv4Addr) -> (Socket, String) {
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("a key");
    let key = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key");
    let public: [u8; identity::PUBLIC_KEY_BYTES] = key.public_key().as_ref().try_into().expect("32 bytes");
    let host_id = identity::key_host_id(&public);
    let (mut socket, challenge) = dial(relay, from, "/ws/host").await;
    let challenge = challenge.expect("the relay challenges a host");
    let statement = identity::registration_statement(&host_id, &relay.to_string(), &challenge);
    let register = RelayMsg::Register {
        host_id: host_id.clone(),
        proof: tether_protocol::hex::encode(&public),
        signature: Some(tether_protocol::hex::encode(key.sign(&statement).as_ref())),
    };
    let bytes = Frame::relay(register, Vec::new()).encode().expect("a frame");
    socket.send(Message::Binary(bytes.into())).await.expect("send register");
    let mut decoder = FrameDecoder::new();
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                decoder.push(&bytes).expect("frames");
                while let Some(frame) = decoder.next_frame().expect("a frame") {
                    if frame.header == Header::Relay(RelayMsg::Registered) {
                        return (socket, host_id);
                    }
                }
            }
            Some(Ok(_)) => {}
            other => panic!("registration failed: {other:?}"),
        }
    }
}

/// A host that ends each client's handshake at its first message (by outer type), as far as
/// the relay can tell.
async fn answer_hellos(mut socket: Socket) {
    let mut decoder = FrameDecoder::new();
    let proof = Frame::bare(Header::Auth(AuthStep::ServerProof)).encode().expect("a frame");
    while let Some(Ok(message)) = socket.next().await {
        let Message::Binary(bytes) = message else { continue };
        if decoder.push(&bytes).is_err() {
            return;
        }
        while let Ok(Some(frame)) = decoder.next_frame() {
            if let Header::Relay(RelayMsg::Forward { conn }) = frame.header {
                let answer = Frame::relay(RelayMsg::Forward { conn }, proof.clone()).encode().expect("a frame");
                if socket.send(Message::Binary(answer.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A client that says hello and waits until its host's answer ended the handshake.
async fn connect_client(relay: SocketAddr, from: Ipv4Addr, host_id: &str) -> Socket {
    let (mut socket, _) = dial(relay, from, &format!("/ws/client/{host_id}")).await;
    socket.send(Message::Binary(b"hello".to_vec().into())).await.expect("hello");
    loop {
        match socket.next().await {
            Some(Ok(Message::Binary(_))) => return socket,
            Some(Ok(_)) => {}
            other => panic!("client refused: {other:?}"),
        }
    }
}

fn resident_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("relay status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("relay stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// The relay's CPU over the idle window: (% of one core, seconds).
async fn idle_cpu(pid: i32) -> (f64, f64) {
    let window = Duration::from_secs(idle_secs());
    let start = cpu_seconds(pid);
    tokio::time::sleep(window).await;
    let used = cpu_seconds(pid) - start;
    (100.0 * used / window.as_secs_f64(), used)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
