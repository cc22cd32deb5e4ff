//! Known-answer vectors from an independent implementation (`vectors/gen_vectors.py`, pyca
//! cryptography): the key schedule and sealing must match byte for byte, natively and in wasm32.
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use tether_protocol::channel::{Opener, Sealer};
use tether_protocol::frame::{decode_exact, Header};
use tether_protocol::handshake::{Credential, PASSWORD_IDENTITY};
use tether_protocol::keys::derive_session_keys;

struct Vectors(serde_json::Value);

impl Vectors {
    fn load() -> Self {
        Vectors(serde_json::from_str(include_str!("../vectors/vectors.json")).expect("vectors.json parses"))
    }
    fn hex(&self, key: &str) -> Vec<u8> {
        hex::decode(self.0[key].as_str().expect("string field")).expect("hex field")
    }
    fn array<const N: usize>(&self, key: &str) -> [u8; N] {
        self.hex(key).try_into().expect("field length")
    }
}

#[test]
fn key_schedule_matches_independent_implementation() {
    let v = Vectors::load();
    let keys = derive_session_keys(
        &v.hex("srp_key"),
        &v.array("client_nonce"),
        &v.array("host_nonce"),
        v.0["host_id"].as_str().expect("host id"),
    );
    assert_eq!(keys.client_to_host.to_vec(), v.hex("client_to_host"));
    assert_eq!(keys.host_to_client.to_vec(), v.hex("host_to_client"));
}

#[test]
fn key_schedule_binds_host_and_nonces() {
    let v = Vectors::load();
    let (srp, cn, hn) = (v.hex("srp_key"), v.array("client_nonce"), v.array("host_nonce"));
    let base = derive_session_keys(&srp, &cn, &hn, "HOSTA");
    assert_ne!(base, derive_session_keys(&srp, &cn, &hn, "HOSTB"));
    assert_ne!(base, derive_session_keys(&srp, &hn, &cn, "HOSTA"));
    assert_ne!(base.client_to_host, base.host_to_client);
}

#[test]
fn sealing_matches_independent_implementation() {
    let v = Vectors::load();
    let key: [u8; 64] = v.array("client_to_host");
    let inner = v.hex("inner_frame");
    let mut sealer = Sealer::new(&key);
    for ctr_field in ["sealed_ctr0", "sealed_ctr1"] {
        let sealed = sealer.seal_bytes(&inner).expect("seals");
        assert_eq!(sealed.payload, v.hex(ctr_field), "{ctr_field}");
    }
    // And we open what the other implementation sealed.
    let mut opener = Opener::new(&key);
    for (ctr, field) in [(0, "sealed_ctr0"), (1, "sealed_ctr1")] {
        let frame = tether_protocol::Frame::new(Header::Encrypted { ctr }, v.hex(field));
        let opened = opener.open(&frame).expect("opens");
        assert_eq!(opened, decode_exact(&inner).expect("inner frame"));
        assert_eq!(opened.payload, b"hello, tether");
    }
}

#[test]
fn password_verifier_matches_independent_implementation() {
    // Argon2id stretching, then SRP: the host's stored verifier for `tether passwd`.
    let v = Vectors::load();
    let host_id = v.0["host_id"].as_str().expect("host id");
    let password = v.0["password"].as_str().expect("password");
    let credential =
        Credential::derive(host_id, PASSWORD_IDENTITY, password.as_bytes(), v.array("password_salt")).expect("derives");
    assert_eq!(credential.verifier, v.hex("password_verifier"));
    // Any other identity takes its secret as it is: the same bytes give another verifier.
    let unstretched =
        Credential::derive(host_id, "invite-x", password.as_bytes(), v.array("password_salt")).expect("derives");
    assert_ne!(unstretched.verifier, credential.verifier);
}
