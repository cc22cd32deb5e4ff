//! Helpers shared by the protocol test files; compiled natively and for wasm32.
#![allow(dead_code)]

use tether_protocol::connection::{Connection, Event, Input, Output};
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
    Credential::derive(HOST_ID, identity, secret, [7u8; SALT_BYTES])
}

/// Everything a connection wants to transmit, concatenated, and the events it reported.
pub fn drain(conn: &mut Connection) -> (Vec<u8>, Vec<Event>) {
    let mut bytes = Vec::new();
    let mut events = Vec::new();
    while let Some(out) = conn.poll_output() {
        match out {
            Output::Transmit(b) => bytes.extend_from_slice(&b),
            Output::Event(e) => events.push(e),
        }
    }
    (bytes, events)
}

/// Shuttle bytes both ways until neither side has anything to say. Returns events seen by
/// (client, host) and the first error on either side.
pub fn pump(client: &mut Connection, host: &mut Connection) -> (Vec<Event>, Vec<Event>, Option<ConnError>) {
    let (mut client_events, mut host_events) = (Vec::new(), Vec::new());
    loop {
        let (to_host, ev) = drain(client);
        client_events.extend(ev);
        let (to_client, ev) = drain(host);
        host_events.extend(ev);
        if to_host.is_empty() && to_client.is_empty() {
            return (client_events, host_events, None);
        }
        if !to_host.is_empty() {
            if let Err(e) = host.handle_input(Input::Bytes(&to_host), 0) {
                let (to_client, ev) = drain(host);
                host_events.extend(ev);
                let _ = client.handle_input(Input::Bytes(&to_client), 0);
                client_events.extend(drain(client).1);
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
pub fn open_pair() -> (Connection, Connection) {
    let mut client = Connection::client(HOST_ID, "invite", SECRET, entropy(1), 0);
    let mut host = Connection::host(HOST_ID, vec![credential("invite", SECRET)], entropy(2), 0);
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
        Some(Output::Transmit(bytes)) => bytes,
        other => panic!("expected a transmit, got {other:?}"),
    }
}
