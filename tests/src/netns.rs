//! A private network for one test: the test's thread moves into a network namespace of its own,
//! so everything it starts afterwards (relay, agents, coturn, Chromium) shares a network that
//! nothing else sees, and the test may block UDP in it (nftables) without touching the machine.
//!
//! Inside: loopback, no route out, and a veth pair whose two ends carry `HOST_SIDE` and
//! `CLIENT_SIDE` (and `TURN_SIDE`, for coturn): ordinary addresses that ICE offers as host
//! candidates, as on a LAN (a WebRTC stack skips loopback).
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), as `cargo xtask test` runs; `ip` (iproute2) and
//! `nft` (nftables), which xtask installs.

use std::process::Command;

pub const HOST_SIDE: &str = "10.77.0.1";
pub const CLIENT_SIDE: &str = "10.77.0.2";
pub const TURN_SIDE: &str = "10.77.0.3";
/// Where coturn listens in the namespace, and the ports it relays from: outside the range
/// `enter` gives every other socket (`EPHEMERAL_PORTS`), so a rule can tell TURN's traffic from
/// peer-to-peer traffic by port alone.
pub const TURN_PORT: u16 = 3478;
pub const TURN_RELAY_PORTS: (u16, u16) = (40000, 40999);
pub const EPHEMERAL_PORTS: (u16, u16) = (20000, 29999);

/// Move the calling thread into a fresh network namespace and set it up (see the module). The
/// namespace goes when the last process in it ends; a test's processes are its own to stop.
pub fn enter() {
    // SAFETY: unshare(2) with CLONE_NEWNET changes only the calling thread's network namespace.
    let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(unshared, 0, "unshare(CLONE_NEWNET): {} (the WebRTC tests need root)", std::io::Error::last_os_error());
    let (low, high) = EPHEMERAL_PORTS;
    for command in [
        "ip link set lo up".to_owned(),
        "ip link add tether-h type veth peer name tether-c".to_owned(),
        format!("ip addr add {HOST_SIDE}/24 dev tether-h"),
        format!("ip addr add {TURN_SIDE}/24 dev tether-h"),
        format!("ip addr add {CLIENT_SIDE}/24 dev tether-c"),
        "ip link set tether-h up".to_owned(),
        "ip link set tether-c up".to_owned(),
        "ip route add unreachable default".to_owned(),
        "ip -6 route add unreachable default".to_owned(),
        format!("sysctl -q -w net.ipv4.ip_local_port_range={low}\t{high}"),
    ] {
        run(&command);
    }
}

/// Drop UDP in the namespace: all of it, or all but TURN's (`allow_turn`).
pub fn block_udp(allow_turn: bool) {
    let (low, high) = TURN_RELAY_PORTS;
    let allow = if allow_turn {
        format!("udp sport {{ {TURN_PORT}, {low}-{high} }} accept\nudp dport {{ {TURN_PORT}, {low}-{high} }} accept\n")
    } else {
        String::new()
    };
    let rules = format!(
        "table inet tether_block {{\n chain out {{\n type filter hook output priority 0; policy accept;\n{allow} meta l4proto udp drop\n }}\n}}\n"
    );
    let mut nft = Command::new("nft");
    nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().expect("nft (apt-get install nftables)");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("rules to nft");
    assert!(child.wait().expect("nft").success(), "nft refused the rules:\n{rules}");
}

/// Let UDP through again.
pub fn unblock_udp() {
    run("nft delete table inet tether_block");
}

fn run(command: &str) {
    let mut words = command.split(' ');
    let program = words.next().expect("a command");
    let args: Vec<String> = words.map(|w| w.replace('\t', " ")).collect();
    let status = Command::new(program).args(&args).status().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "`{command}` failed in the test's network namespace");
}
