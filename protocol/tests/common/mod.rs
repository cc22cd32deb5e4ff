//! Helpers shared by the protocol test files; compiled natively and for wasm32.
#![allow(dead_code)]

use tether_protocol::connection::{Connection, Event, Input, Output, Path};
use tether_protocol::handshake::{Credential, HandshakeEntropy, HANDSHAKE_ENTROPY_BYTES, SALT_BYTES};
use tether_protocol::ConnError;

pub const HOST_ID: &str = "TETHERTESTHOSTID7QXK3M5VZA";
pub const SECRET: &[u8] = b"correct horse battery staple";

/// Deterministic "randomness" so failures reproduce; distinct per seed.
pub fn entropy(seed: u8) -> HandshakeEntropy {
    let mut bytes = [0u8; HANDSHAKE_ENTROPY_BYTES];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(167) ^ 0x5a;
    }
    HandshakeEntropy(bytes)
}

pub fn credential(identity: &str, secret: &[u8]) -> Credential {
    Credential::derive(HOST_ID, identity, secret, [7u8; SALT_BYTES]).expect("derives")
}

/// Everything a connection wants to transmit on the relay, concatenated, and the events it
/// reported. Fails on a transmit for the data channel: a test with one open uses `drain_paths`.
pub fn drain(conn: &mut Connection) -> (Vec<u8>, Vec<Event>) {
    let (relay, direct, events) = drain_paths(conn);
    assert!(direct.is_empty(), "{} transmits for the data channel", direct.len());
    (relay.concat(), events)
}

/// Everything queued, by path: relay transmits, data-channel messages, events.
#[allow(dead_code)] // not every test file has a data channel
pub fn drain_paths(conn: &mut Connection) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Event>) {
    let (mut relay, mut direct, mut events) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(out) = conn.poll_output() {
        match out {
            Output::Transmit { path: Path::Relay, bytes } => relay.push(bytes),
            Output::Transmit { path: Path::Direct, bytes } => direct.push(bytes),
            Output::Event(e) => events.push(e),
        }
    }
    (relay, direct, events)
}

/// A host connection with the credentials it answers its handshakes' questions from.
pub struct TestHost {
    pub conn: Connection,
    pub credentials: Vec<Credential>,
}

impl TestHost {
    pub fn new(credentials: Vec<Credential>, entropy: HandshakeEntropy, now_ms: u64) -> TestHost {
        TestHost { conn: Connection::host(HOST_ID, entropy, now_ms), credentials }
    }

    fn lookup(&self, identity: &str) -> Option<Credential> {
        self.credentials.iter().find(|c| c.identity == identity).cloned()
    }

    /// Drain like `drain`, answering credential and proof questions at once from `credentials`
    /// (the events asked with are not returned).
    pub fn drain_answering(&mut self) -> Result<(Vec<u8>, Vec<Event>), ConnError> {
        let (mut bytes, mut events) = (Vec::new(), Vec::new());
        loop {
            let (more, asked) = drain(&mut self.conn);
            bytes.extend(more);
            let mut answered = false;
            for event in asked {
                match event {
                    Event::CredentialNeeded { identity } => {
                        answered = true;
                        let credential = self.lookup(&identity);
                        let work = self.conn.answer_hello(credential.as_ref(), 0)?;
                        self.conn.finish_hello(work.compute(), 0)?;
                    }
                    Event::ProofReceived { identity } => {
                        answered = true;
                        let credential = self.lookup(&identity);
                        self.conn.verify_proof(credential.as_ref(), 0)?;
                    }
                    other => events.push(other),
                }
            }
            if !answered {
                return Ok((bytes, events));
            }
        }
    }
}

impl std::ops::Deref for TestHost {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for TestHost {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Shuttle bytes both ways until neither side has anything to say. Returns events seen by
/// (client, host) and the first error on either side.
pub fn pump(client: &mut Connection, host: &mut TestHost) -> (Vec<Event>, Vec<Event>, Option<ConnError>) {
    let (mut client_events, mut host_events) = (Vec::new(), Vec::new());
    // The host failed: what it still has to say (its `auth/failed`) reaches the client.
    let host_failed = |client: &mut Connection, host: &mut TestHost, client_events: &mut Vec<Event>| {
        let (to_client, _) = drain(&mut host.conn);
        let _ = client.handle_input(Input::Bytes(&to_client), 0);
        client_events.extend(drain(client).1);
    };
    loop {
        let (to_host, ev) = drain(client);
        client_events.extend(ev);
        let to_client = match host.drain_answering() {
            Ok((bytes, ev)) => {
                host_events.extend(ev);
                bytes
            }
            Err(e) => {
                host_failed(client, host, &mut client_events);
                return (client_events, host_events, Some(e));
            }
        };
        if to_host.is_empty() && to_client.is_empty() {
            return (client_events, host_events, None);
        }
        if !to_host.is_empty() {
            if let Err(e) = host.handle_input(Input::Bytes(&to_host), 0) {
                host_failed(client, host, &mut client_events);
                return (client_events, host_events, Some(e));
            }
        }
        if !to_client.is_empty() {
            if let Err(e) = client.handle_input(Input::Bytes(&to_client), 0) {
                client_events.extend(drain(client).1);
                return (client_events, host_events, Some(e));
            }
        }
    }
}

/// A client and host that completed the handshake with the invite secret.
pub fn open_pair() -> (Connection, TestHost) {
    let mut client = Connection::client(HOST_ID, "invite", SECRET, entropy(1), 0);
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(2), 0);
    let (client_events, host_events, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    assert!(client.is_open() && host.is_open());
    assert!(client_events.contains(&Event::Authenticated { identity: "invite".into() }));
    assert!(host_events.contains(&Event::Authenticated { identity: "invite".into() }));
    (client, host)
}

/// The first transmit a connection has queued (one sealed frame).
pub fn next_transmit(conn: &mut Connection) -> Vec<u8> {
    match conn.poll_output() {
        Some(Output::Transmit { path: Path::Relay, bytes }) => bytes,
        other => panic!("expected a transmit, got {other:?}"),
    }
}

/// AES-CBC's last block from a zero IV and AES-CTR counting in the low 64 bits, as a browser's
/// WebCrypto runs them, here on the plain block cipher.
pub fn cbc_mac(key: &[u8], input: &[u8]) -> [u8; 16] {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    let cipher = aes::Aes256::new_from_slice(key).expect("a 32-byte key");
    let mut chain = [0u8; 16];
    for block in input.chunks(16) {
        let mut next = aes::Block::default();
        for ((out, a), b) in next.iter_mut().zip(block).zip(&chain) {
            *out = a ^ b;
        }
        cipher.encrypt_block(&mut next);
        chain.copy_from_slice(&next);
    }
    chain
}

pub fn ctr_64(key: &[u8], first: [u8; 16], data: &[u8]) -> Vec<u8> {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    let cipher = aes::Aes256::new_from_slice(key).expect("a 32-byte key");
    let high = u64::from_be_bytes(first[..8].try_into().expect("8 bytes"));
    let mut low = u64::from_be_bytes(first[8..].try_into().expect("8 bytes"));
    let mut out = Vec::with_capacity(data.len());
    for chunk in data.chunks(16) {
        let mut block = aes::Block::default();
        block[..8].copy_from_slice(&high.to_be_bytes());
        block[8..].copy_from_slice(&low.to_be_bytes());
        cipher.encrypt_block(&mut block);
        out.extend(chunk.iter().zip(block.iter()).map(|(a, b)| a ^ b));
        low = low.wrapping_add(1);
    }
    out
}
