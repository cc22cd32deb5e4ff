//! A real TURN server (Debian's coturn) on loopback, and just enough of a TURN client (RFC 5766
//! Allocate with long-term credentials, RFC 5389) to ask it whether credentials work.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use crate::process::Guard;

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const ALLOCATE_REQUEST: u16 = 0x0003;
const ALLOCATE_SUCCESS: u16 = 0x0103;
const ALLOCATE_ERROR: u16 = 0x0113;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
const UDP_PROTOCOL: u8 = 17;
pub const REALM: &str = "tether.test";

/// coturn with `use-auth-secret` (the TURN REST API scheme) on a free loopback port, killed
/// when dropped. Its database lives in `dir`.
pub struct TurnServer {
    pub ip: String,
    pub port: u16,
    _process: Guard,
}

impl TurnServer {
    pub fn start(dir: &Path, secret: &str) -> TurnServer {
        TurnServer::start_on(dir, secret, "127.0.0.1", free_udp_port(), (49152, 65535))
    }

    /// On `ip`:`port`, relaying from ports `relay_ports` (a range a firewall rule can name).
    pub fn start_on(dir: &Path, secret: &str, ip: &str, port: u16, relay_ports: (u16, u16)) -> TurnServer {
        let mut command = Command::new("turnserver");
        command
            .args(["-n", "--listening-ip", ip, "--relay-ip", ip, "--listening-port"])
            .arg(port.to_string())
            .arg("--min-port")
            .arg(relay_ports.0.to_string())
            .arg("--max-port")
            .arg(relay_ports.1.to_string())
            .args(["--use-auth-secret", "--static-auth-secret", secret])
            .args(["--realm", REALM, "--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers"])
            .arg("--userdb")
            .arg(dir.join("turndb"))
            .arg("--pidfile")
            .arg(dir.join("turnserver.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Guard::spawn(command);
        let server = TurnServer { ip: ip.to_owned(), port, _process: process };
        crate::wait_until(Duration::from_secs(20), "coturn to answer a STUN binding request", || {
            let socket = server.socket();
            socket.send(&message(BINDING_REQUEST, &[], None)).ok()?;
            let mut buf = [0u8; 1500];
            socket.recv(&mut buf).ok().map(|_| ())
        });
        server
    }

    fn socket(&self) -> UdpSocket {
        let socket = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        socket.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        socket.connect((self.ip.as_str(), self.port)).expect("connect");
        socket
    }

    /// Ask for a relayed UDP address with these credentials: `Ok(())` when the server granted
    /// one, `Err(error code)` when it refused.
    pub fn allocate(&self, username: &str, password: &str) -> Result<(), u16> {
        let socket = self.socket();
        let transport = [UDP_PROTOCOL, 0, 0, 0];
        // The first request is unauthenticated: the answer is 401 with the realm and a nonce.
        let challenge = exchange(&socket, &message(ALLOCATE_REQUEST, &[(ATTR_REQUESTED_TRANSPORT, &transport)], None));
        let nonce = attribute(&challenge, ATTR_NONCE).expect("a nonce in the challenge");
        let realm = attribute(&challenge, ATTR_REALM).expect("a realm in the challenge");
        let key = Md5::digest(format!("{username}:{}:{password}", String::from_utf8_lossy(&realm)).as_bytes());
        let attributes: [(u16, &[u8]); 4] = [
            (ATTR_REQUESTED_TRANSPORT, &transport),
            (ATTR_USERNAME, username.as_bytes()),
            (ATTR_REALM, &realm),
            (ATTR_NONCE, &nonce),
        ];
        let answer = exchange(&socket, &message(ALLOCATE_REQUEST, &attributes, Some(&key)));
        match u16::from_be_bytes([answer[0], answer[1]]) {
            ALLOCATE_SUCCESS if attribute(&answer, ATTR_XOR_RELAYED_ADDRESS).is_some() => Ok(()),
            ALLOCATE_ERROR => {
                let code = attribute(&answer, ATTR_ERROR_CODE).expect("an error code");
                Err(u16::from(code[2] & 7) * 100 + u16::from(code[3]))
            }
            other => panic!("unexpected answer type {other:#06x}"),
        }
    }
}

fn free_udp_port() -> u16 {
    // A port free for both UDP and TCP: coturn listens on both.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A STUN message; with `key`, a MESSAGE-INTEGRITY attribute over everything before it.
fn message(kind: u16, attributes: &[(u16, &[u8])], key: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, set below
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    out.extend_from_slice(&nanos.to_be_bytes()[4..]); // 12 bytes of transaction id
    for (kind, value) in attributes {
        push_attribute(&mut out, *kind, value);
    }
    if let Some(key) = key {
        // The length covers the integrity attribute (24 bytes) it is computed without.
        let len = out.len() - 20 + 24;
        set_length(&mut out, len);
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("any key length");
        mac.update(&out);
        push_attribute(&mut out, ATTR_MESSAGE_INTEGRITY, &mac.finalize().into_bytes());
    }
    let len = out.len() - 20;
    set_length(&mut out, len);
    out
}

fn set_length(message: &mut [u8], len: usize) {
    message[2..4].copy_from_slice(&u16::try_from(len).expect("short message").to_be_bytes());
}

fn push_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).expect("short attribute").to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn exchange(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
    crate::wait_until(Duration::from_secs(10), "coturn's answer", || {
        socket.send(request).ok()?;
        let mut buf = [0u8; 1500];
        let n = socket.recv(&mut buf).ok()?;
        // Only the answer to this request (same transaction id) counts.
        (n >= 20 && buf[8..20] == request[8..20]).then(|| buf[..n].to_vec())
    })
}

fn attribute(message: &[u8], kind: u16) -> Option<Vec<u8>> {
    let mut at = 20;
    while at + 4 <= message.len() {
        let found = u16::from_be_bytes([message[at], message[at + 1]]);
        let len = usize::from(u16::from_be_bytes([message[at + 2], message[at + 3]]));
        let value = message.get(at + 4..at + 4 + len)?;
        if found == kind {
            return Some(value.to_vec());
        }
        at += 4 + len.next_multiple_of(4);
    }
    None
}
