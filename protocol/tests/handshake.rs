//! SRP-6a handshake through the real `Connection` state machine.
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::*;

use tether_protocol::connection::{Connection, Event, Input, HANDSHAKE_TIMEOUT_MS, HELLO_TIMEOUT_MS};
use tether_protocol::frame::{AuthStep, Frame, Header};
use tether_protocol::{AuthError, ConnError};

#[test]
fn right_secret_opens_both_sides_and_data_flows() {
    let (mut client, mut host) = open_pair();
    assert_eq!(client.send_data(1, 0, b"echo hi\r").expect("send"), 8);
    let (_, host_events, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    assert_eq!(host_events, vec![Event::Data { stream: 1, seq: 0, bytes: b"echo hi\r".to_vec() }]);
}

#[test]
fn any_of_several_credentials_is_accepted() {
    let mut client = Connection::client(HOST_ID, "password", b"hunter2", entropy(3), 0);
    let creds = vec![credential("invite", SECRET), credential("password", b"hunter2")];
    let mut host = TestHost::new(creds, entropy(4), 0);
    let (_, host_events, error) = pump(&mut client, &mut host);
    assert_eq!(error, None);
    assert_eq!(host_events, vec![Event::Authenticated { identity: "password".into() }]);
}

#[test]
fn wrong_secret_fails_on_both_sides_without_keys() {
    let mut client = Connection::client(HOST_ID, "invite", b"wrong secret", entropy(5), 0);
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(6), 0);
    let (client_events, host_events, error) = pump(&mut client, &mut host);
    assert_eq!(error, Some(ConnError::Auth(AuthError::WrongSecret)));
    assert_eq!(host.error(), Some(&ConnError::Auth(AuthError::WrongSecret)));
    assert_eq!(client.error(), Some(&ConnError::Auth(AuthError::WrongSecret)));
    assert!(client_events.is_empty() && host_events.is_empty(), "no Authenticated anywhere");
    assert!(!client.is_open() && !host.is_open());
    assert_eq!(client.send_data(1, 0, b"x"), Err(ConnError::Auth(AuthError::WrongSecret)));
    assert_eq!(ConnError::Auth(AuthError::WrongSecret).to_string(), "authentication failed: wrong secret or password");
}

#[test]
fn unknown_identity_and_wrong_host_are_refused() {
    let mut client = Connection::client(HOST_ID, "device-x", SECRET, entropy(7), 0);
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(8), 0);
    let (_, _, error) = pump(&mut client, &mut host);
    assert!(matches!(error, Some(ConnError::Auth(AuthError::Rejected(_)))), "{error:?}");
    assert!(matches!(client.error(), Some(ConnError::Auth(AuthError::Rejected(_)))));

    let mut client = Connection::client("SOMEOTHERHOST", "invite", SECRET, entropy(9), 0);
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(10), 0);
    let (_, _, error) = pump(&mut client, &mut host);
    assert!(matches!(error, Some(ConnError::Auth(AuthError::Rejected(_)))));
}

fn hello_with_a(a_pub: Vec<u8>) -> Vec<u8> {
    Frame::new(
        Header::Auth(AuthStep::ClientHello {
            version: 1,
            host_id: HOST_ID.into(),
            identity: "invite".into(),
            nonce: "11".repeat(32),
        }),
        a_pub,
    )
    .encode()
    .expect("encodes")
}

/// The RFC 5054 3072-bit modulus N, big-endian.
fn modulus() -> Vec<u8> {
    const N_HEX: &str = concat!(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD",
        "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
        "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
        "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C",
        "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    );
    hex::decode(N_HEX).expect("hex")
}

#[test]
fn host_refuses_illegal_client_ephemeral() {
    let mut too_long = vec![1u8];
    too_long.extend(modulus());
    for (name, a_pub) in [
        ("A = 0", vec![0u8]),
        ("A = N", modulus()),
        ("A = 0 padded", vec![0u8; 384]),
        ("A longer than N", too_long),
        ("A empty", Vec::new()),
    ] {
        let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(11), 0);
        // A length out of range is refused on sight; a value ≡ 0 mod N when the host computes.
        let error = match host.handle_input(Input::Bytes(&hello_with_a(a_pub)), 0) {
            Err(error) => error,
            Ok(()) => host.drain_answering().expect_err(name),
        };
        assert!(matches!(error, ConnError::Auth(AuthError::IllegalParameter("a_pub"))), "{name}: {error:?}");
        let (reply, _) = drain(&mut host);
        let failed = tether_protocol::frame::decode_exact(&reply).expect("host explains");
        assert!(matches!(failed.header, Header::Auth(AuthStep::Failed { .. })), "{name}");
    }
}

#[test]
fn client_refuses_illegal_host_ephemeral() {
    for (name, b_pub) in [("B = 0", vec![0u8]), ("B = N", modulus()), ("B longer than N", vec![1u8; 385])] {
        let mut client = Connection::client(HOST_ID, "invite", SECRET, entropy(12), 0);
        drain(&mut client);
        let hello =
            Frame::new(Header::Auth(AuthStep::ServerHello { salt: "07".repeat(16), nonce: "22".repeat(32) }), b_pub);
        let error = client.handle_input(Input::Bytes(&hello.encode().expect("encodes")), 0).expect_err(name);
        assert_eq!(error, ConnError::Auth(AuthError::IllegalParameter("b_pub")), "{name}");
    }
}

#[test]
fn rogue_host_without_verifier_cannot_complete() {
    // A host holding a verifier for a different secret answers the proof step; the client must
    // never accept it (M2 cannot be right), and neither side opens.
    let mut client = Connection::client(HOST_ID, "invite", SECRET, entropy(13), 0);
    let mut rogue = TestHost::new(vec![credential("invite", b"guess")], entropy(14), 0);
    let (client_events, _, _) = pump(&mut client, &mut rogue);
    assert!(client_events.is_empty());
    assert!(!client.is_open());
}

#[test]
fn out_of_order_and_plaintext_frames_fail_the_handshake() {
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(15), 0);
    let proof = Frame::new(Header::Auth(AuthStep::ClientProof), vec![0; 32]).encode().expect("encodes");
    assert!(matches!(host.handle_input(Input::Bytes(&proof), 0), Err(ConnError::Auth(AuthError::Unexpected(_)))));

    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(16), 0);
    let data = Frame::new(Header::Data { stream: 1, seq: 0 }, b"rm -rf /".to_vec()).encode().expect("encodes");
    assert!(matches!(host.handle_input(Input::Bytes(&data), 0), Err(ConnError::Auth(AuthError::Unexpected(_)))));

    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(17), 0);
    let v2 = Frame::new(
        Header::Auth(AuthStep::ClientHello {
            version: 2,
            host_id: HOST_ID.into(),
            identity: "invite".into(),
            nonce: "11".repeat(32),
        }),
        vec![2],
    );
    let error = host.handle_input(Input::Bytes(&v2.encode().expect("encodes")), 0).expect_err("v2");
    assert_eq!(error, ConnError::Auth(AuthError::UnsupportedVersion(2)));
}

#[test]
fn a_silent_client_is_dropped_at_the_hello_deadline_and_a_slow_handshake_at_the_handshake_deadline() {
    // A socket that never says hello holds a handshake place for 5 s, not 30.
    let mut silent = TestHost::new(vec![credential("invite", SECRET)], entropy(18), 1000);
    assert_eq!(silent.poll_timeout(), Some(1000 + HELLO_TIMEOUT_MS));
    silent.handle_timeout(1000 + HELLO_TIMEOUT_MS - 1).expect("not yet");
    assert_eq!(silent.handle_timeout(1000 + HELLO_TIMEOUT_MS), Err(ConnError::Auth(AuthError::NoHello)));

    // Once the hello is in, the whole handshake has its 30 s.
    let mut client = Connection::client(HOST_ID, "invite", SECRET, entropy(17), 1000);
    let mut host = TestHost::new(vec![], entropy(18), 1000);
    let (hello, _) = drain(&mut client);
    host.handle_input(Input::Bytes(&hello), 1000).expect("hello");
    assert_eq!(host.poll_timeout(), Some(1000 + HANDSHAKE_TIMEOUT_MS));
    host.handle_timeout(1000 + HANDSHAKE_TIMEOUT_MS - 1).expect("not yet");
    assert_eq!(host.handle_timeout(1000 + HANDSHAKE_TIMEOUT_MS), Err(ConnError::Auth(AuthError::TimedOut)));
}

#[test]
fn a_credential_revoked_or_changed_mid_handshake_is_refused_at_the_proof() {
    // The host looks the credential up again when the proof is checked, so revocation wins the
    // race with a handshake under way, and a new password never blesses an old connection.
    for (name, at_proof) in [("revoked", None), ("changed", Some(credential("password", b"new password")))] {
        let mut client = Connection::client(HOST_ID, "password", b"old password", entropy(19), 0);
        let mut host = TestHost::new(vec![], entropy(20), 0);
        let old = credential("password", b"old password");
        let (hello, _) = drain(&mut client);
        host.handle_input(Input::Bytes(&hello), 0).expect("hello");
        assert_eq!(drain(&mut host).1, vec![Event::CredentialNeeded { identity: "password".into() }]);
        let work = host.answer_hello(Some(&old), 0).expect("answered with the credential of that moment");
        host.finish_hello(work.compute(), 0).expect("server hello");
        let (server_hello, _) = drain(&mut host);
        client.handle_input(Input::Bytes(&server_hello), 0).expect("server hello");
        let (proof, _) = drain(&mut client);
        host.handle_input(Input::Bytes(&proof), 0).expect("proof in");
        assert_eq!(drain(&mut host).1, vec![Event::ProofReceived { identity: "password".into() }]);
        let error = host.verify_proof(at_proof.as_ref(), 0).expect_err(name);
        assert!(matches!(error, ConnError::Auth(AuthError::Rejected(_))), "{name}: {error:?}");
        assert!(!host.is_open(), "{name}");
        // The client hears the host's words, not "wrong secret": its secret was right.
        let (failed, _) = drain(&mut host);
        let heard = client.handle_input(Input::Bytes(&failed), 0).expect_err("refused");
        assert_eq!(heard, error, "{name}");
    }
}

#[test]
fn a_credential_refused_in_the_hosts_words_says_so_to_the_client() {
    let mut client = Connection::client(HOST_ID, "invite-1", b"secret", entropy(21), 0);
    let mut host = TestHost::new(vec![], entropy(22), 0);
    let (hello, _) = drain(&mut client);
    host.handle_input(Input::Bytes(&hello), 0).expect("hello");
    drain(&mut host);
    let refused = host.refuse_credential("this invite expired at noon".into(), 0);
    assert_eq!(refused, ConnError::Auth(AuthError::Rejected("this invite expired at noon".into())));
    let (failed, _) = drain(&mut host);
    let heard = client.handle_input(Input::Bytes(&failed), 0).expect_err("refused");
    assert_eq!(heard.to_string(), "authentication failed: this invite expired at noon");
}

#[test]
fn a_peers_failure_reason_is_cleaned_and_capped_before_it_reaches_logs() {
    // What a peer says in `auth/failed` ends up in error messages and the host's log: no
    // terminal escapes, no forged log lines, no megabytes.
    let mut host = TestHost::new(vec![credential("invite", SECRET)], entropy(21), 0);
    let reason = format!("\u{1b}[2J\nfake log line\r{}", "x".repeat(10_000));
    let failed = Frame::new(Header::Auth(AuthStep::Failed { reason }), Vec::new()).encode().expect("encodes");
    let Err(ConnError::Auth(AuthError::Rejected(said))) = host.handle_input(Input::Bytes(&failed), 0) else {
        panic!("a peer's failure is a rejection");
    };
    assert!(!said.chars().any(char::is_control), "{said:?}");
    assert!(said.chars().count() <= 200, "{} chars", said.chars().count());
}
