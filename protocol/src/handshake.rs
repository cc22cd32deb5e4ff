//! Layer 2: the SRP-6a handshake (RFC 5054 3072-bit group, SHA-256).
//!
//! ```text
//! client                                   host (holds salt + verifier, never the secret)
//!   auth/client_hello {host_id, identity, nonce_c}  [A]   →
//!                                          ←   auth/server_hello {salt, nonce_h}  [B]
//!   auth/client_proof  [M1]                          →
//!                                          ←   auth/server_proof  [M2]   (only if M1 was right)
//!                                          or  auth/failed {reason}
//! ```
//!
//! Invariants:
//! - The host sends M2 only after checking M1, so a wrong guess teaches the guesser nothing but
//!   "no" (one guess per handshake; the agent throttles handshakes).
//! - Both sides abort on `A ≡ 0 (mod N)`, `B ≡ 0 (mod N)` and `u = 0`, and on A or B longer than N.
//! - No key material leaves a failed handshake; `SessionKeys` exist only after both proofs match.
//! - The SRP username is `<host_id>/<identity>`, so a verifier made for one host is useless for
//!   another; the identity says which secret the client holds (an `invite-…` id or `password`).
//! - Randomness comes from the caller (sans-IO): 64 bytes of ephemeral exponent, 32 of nonce.
//! - A password (identity `password`) is stretched with Argon2id over the credential's salt
//!   before SRP sees it, so a stolen verifier costs an attacker Argon2id per guess, not one
//!   SHA-256. Invite secrets are random (≥ 128 bits) and go to SRP as they are.

use sha2::{Digest, Sha256};
use srp::groups::G3072;

use crate::error::AuthError;
use crate::frame::{AuthStep, Frame, Header};
use crate::hex;
use crate::keys::{derive_session_keys, SessionKeys, NONCE_BYTES, PROTOCOL_VERSION};

type SrpClient = srp::Client<G3072, Sha256>;
type SrpServer = srp::Server<G3072, Sha256>;

/// Bytes of the 3072-bit modulus N: the longest legal A or B.
const MODULUS_BYTES: usize = 3072 / 8;
/// Private ephemeral exponent (a or b); RFC 5054 asks for at least 256 bits.
const EPHEMERAL_BYTES: usize = 64;
/// Stored salt per credential.
pub const SALT_BYTES: usize = 16;
/// Random bytes a handshake needs from its caller.
pub const HANDSHAKE_ENTROPY_BYTES: usize = EPHEMERAL_BYTES + NONCE_BYTES;

/// The identity of the host owner's password (`tether passwd`).
pub const PASSWORD_IDENTITY: &str = "password";
/// Argon2id cost for passwords: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
const PASSWORD_MEMORY_KIB: u32 = 19 * 1024;
const PASSWORD_PASSES: u32 = 2;
const STRETCHED_BYTES: usize = 32;

/// What SRP is given as the password for `identity`: passwords are stretched (see above).
fn srp_secret(identity: &str, secret: &[u8], salt: &[u8]) -> Result<Vec<u8>, AuthError> {
    if identity != PASSWORD_IDENTITY {
        return Ok(secret.to_vec());
    }
    let params = argon2::Params::new(PASSWORD_MEMORY_KIB, PASSWORD_PASSES, 1, Some(STRETCHED_BYTES))
        .map_err(|_| AuthError::Unexpected("password parameters".into()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut stretched = vec![0u8; STRETCHED_BYTES];
    // Fails only for a salt outside Argon2's 8..=64 bytes, which only a broken host sends.
    argon.hash_password_into(secret, salt, &mut stretched).map_err(|_| AuthError::Unexpected("salt".into()))?;
    Ok(stretched)
}

/// Fresh randomness for one handshake, supplied by the caller's CSPRNG.
#[derive(Clone)]
pub struct HandshakeEntropy(pub [u8; HANDSHAKE_ENTROPY_BYTES]);

impl HandshakeEntropy {
    /// Fill a fresh one from the caller's CSPRNG (`/dev/urandom`, `crypto.getRandomValues`).
    pub fn generate<E>(fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Self, E> {
        let mut bytes = [0u8; HANDSHAKE_ENTROPY_BYTES];
        fill(&mut bytes)?;
        Ok(HandshakeEntropy(bytes))
    }

    fn split(&self) -> ([u8; EPHEMERAL_BYTES], [u8; NONCE_BYTES]) {
        let mut ephemeral = [0u8; EPHEMERAL_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        ephemeral.copy_from_slice(&self.0[..EPHEMERAL_BYTES]);
        nonce.copy_from_slice(&self.0[EPHEMERAL_BYTES..]);
        (ephemeral, nonce)
    }
}

/// What the host stores for one way in: salt and verifier, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    pub identity: String,
    pub salt: Vec<u8>,
    pub verifier: Vec<u8>,
}

impl Credential {
    /// Make the verifier for `secret`; `salt` must be fresh random bytes.
    /// Fails only if stretching a password fails, and then never with a weaker verifier.
    pub fn derive(host_id: &str, identity: &str, secret: &[u8], salt: [u8; SALT_BYTES]) -> Result<Self, AuthError> {
        let secret = srp_secret(identity, secret, &salt)?;
        let verifier = SrpClient::new().compute_verifier(srp_username(host_id, identity).as_bytes(), &secret, &salt);
        Ok(Credential { identity: identity.to_owned(), salt: salt.to_vec(), verifier })
    }
}

fn srp_username(host_id: &str, identity: &str) -> String {
    format!("{host_id}/{identity}")
}

/// What a handshake step asks of its caller.
#[derive(Debug)]
pub enum Step {
    /// Send this frame and wait for the peer's next one.
    Reply(Frame),
    /// Authenticated. `reply` (the host's M2) must still be sent.
    Done { reply: Option<Frame>, keys: SessionKeys },
    /// Failed. Send `reply` (if any) so the peer learns why, then drop the connection.
    Failed { reply: Option<Frame>, error: AuthError },
    /// Host: the client claims `identity`; call `answer_hello` with its credential.
    NeedCredential { identity: String },
    /// Host: the client's proof is in; call `verify` when it may be checked.
    NeedVerification { identity: String },
}

fn failed_frame(reason: &str) -> Frame {
    Frame::bare(Header::Auth(AuthStep::Failed { reason: reason.to_owned() }))
}

/// A big number from the wire: 1..=N bytes, and not ≡ 0 mod N (the `srp` crate checks the latter).
fn check_public_len(bytes: &[u8], name: &'static str) -> Result<(), AuthError> {
    if bytes.is_empty() || bytes.len() > MODULUS_BYTES {
        return Err(AuthError::IllegalParameter(name));
    }
    Ok(())
}

/// `u = H(PAD(A) ‖ PAD(B))` must not be zero (RFC 5054 §2.6). `srp` computes u but does not check it.
fn check_u_nonzero(a_pub: &[u8], b_pub: &[u8]) -> Result<(), AuthError> {
    let mut hasher = Sha256::new();
    for value in [a_pub, b_pub] {
        hasher.update([0u8; MODULUS_BYTES].get(value.len()..).unwrap_or_default());
        hasher.update(value);
    }
    if hasher.finalize().iter().all(|&b| b == 0) {
        return Err(AuthError::IllegalParameter("u"));
    }
    Ok(())
}

fn map_srp_error(e: srp::AuthError) -> AuthError {
    match e {
        srp::AuthError::IllegalParameter { name } => AuthError::IllegalParameter(name),
        srp::AuthError::BadRecordMac { .. } => AuthError::WrongSecret,
    }
}

// ---------------------------------------------------------------------------------------------
// Client

enum ClientState {
    AwaitServerHello,
    AwaitServerProof { verifier: srp::ClientVerifier<Sha256>, host_nonce: [u8; NONCE_BYTES] },
    Finished,
}

/// The client side: holds the secret, proves first.
pub struct ClientHandshake {
    host_id: String,
    identity: String,
    secret: Vec<u8>,
    ephemeral: [u8; EPHEMERAL_BYTES],
    nonce: [u8; NONCE_BYTES],
    state: ClientState,
}

impl ClientHandshake {
    /// Begin: returns the handshake and the `client_hello` frame to send.
    pub fn start(host_id: &str, identity: &str, secret: &[u8], entropy: HandshakeEntropy) -> (Self, Frame) {
        let (ephemeral, nonce) = entropy.split();
        let a_pub = SrpClient::new().compute_public_ephemeral(&ephemeral);
        let hello = Frame::new(
            Header::Auth(AuthStep::ClientHello {
                version: PROTOCOL_VERSION,
                host_id: host_id.to_owned(),
                identity: identity.to_owned(),
                nonce: hex::encode(&nonce),
            }),
            a_pub,
        );
        let handshake = ClientHandshake {
            host_id: host_id.to_owned(),
            identity: identity.to_owned(),
            secret: secret.to_vec(),
            ephemeral,
            nonce,
            state: ClientState::AwaitServerHello,
        };
        (handshake, hello)
    }

    /// Feed the host's next handshake frame.
    pub fn handle(&mut self, frame: &Frame) -> Step {
        match self.advance(frame) {
            Ok(step) => step,
            Err(error) => {
                self.state = ClientState::Finished;
                Step::Failed { reply: None, error }
            }
        }
    }

    fn advance(&mut self, frame: &Frame) -> Result<Step, AuthError> {
        let Header::Auth(step) = &frame.header else {
            return Err(AuthError::Unexpected("non-handshake frame during handshake".into()));
        };
        match (std::mem::replace(&mut self.state, ClientState::Finished), step) {
            // The host answers a proof with `failed` only when M1 was wrong: the secret was.
            (ClientState::AwaitServerProof { .. }, AuthStep::Failed { .. }) => Err(AuthError::WrongSecret),
            (_, AuthStep::Failed { reason }) => Err(AuthError::Rejected(peer_reason(reason))),
            (ClientState::AwaitServerHello, AuthStep::ServerHello { salt, nonce }) => {
                let host_nonce = hex::decode_array::<NONCE_BYTES>(nonce)
                    .ok_or_else(|| AuthError::Unexpected("host nonce".into()))?;
                let salt = hex::decode(salt).ok_or_else(|| AuthError::Unexpected("salt".into()))?;
                let b_pub = &frame.payload;
                check_public_len(b_pub, "b_pub")?;
                let client = SrpClient::new();
                check_u_nonzero(&client.compute_public_ephemeral(&self.ephemeral), b_pub)?;
                let secret = srp_secret(&self.identity, &self.secret, &salt)?;
                let verifier = client
                    .process_reply(
                        &self.ephemeral,
                        srp_username(&self.host_id, &self.identity).as_bytes(),
                        &secret,
                        &salt,
                        b_pub,
                    )
                    .map_err(map_srp_error)?;
                let proof = Frame::new(Header::Auth(AuthStep::ClientProof), verifier.proof().to_vec());
                self.state = ClientState::AwaitServerProof { verifier, host_nonce };
                Ok(Step::Reply(proof))
            }
            (ClientState::AwaitServerProof { verifier, host_nonce }, AuthStep::ServerProof) => {
                // A wrong M2 means the peer is not the host that holds our verifier.
                let key = verifier
                    .verify_server(&frame.payload)
                    .map_err(|_| AuthError::Rejected("host failed to prove it knows the secret".into()))?;
                let keys = derive_session_keys(key, &self.nonce, &host_nonce, &self.host_id);
                Ok(Step::Done { reply: None, keys })
            }
            (_, other) => Err(AuthError::Unexpected(format!("handshake step {}", step_name(other)))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host
//
// The host never holds a copy of its credentials. It asks its caller for the credential a client
// claims when the hello arrives (`Step::NeedCredential` → `answer_hello`), and again when that
// client's proof arrives (`Step::NeedVerification` → `verify`), so a credential revoked or
// changed mid-handshake is refused, and the caller decides when a proof is checked (the agent
// throttles guessing and checks one password proof at a time). The SRP exponentiations are a
// `HelloWork` the caller runs where it likes (the agent: a blocking thread), then hands back
// with `finish_hello`.

enum HostState {
    AwaitClientHello,
    /// The hello arrived; waiting for the caller to look up `identity`'s credential.
    AwaitCredential {
        client_nonce: [u8; NONCE_BYTES],
        a_pub: Vec<u8>,
    },
    /// The caller is computing the answer to the hello (`HelloWork`).
    Computing {
        client_nonce: [u8; NONCE_BYTES],
        answered_with: Vec<u8>,
        salt: Vec<u8>,
    },
    AwaitClientProof {
        proof: PendingProof,
    },
    /// The proof arrived; waiting for the caller to have it checked.
    AwaitVerification {
        proof: PendingProof,
        m1: Vec<u8>,
    },
    Finished,
}

/// What checking a proof needs: the SRP state and the verifier the hello was answered with.
struct PendingProof {
    verifier: srp::ServerVerifier<Sha256>,
    client_nonce: [u8; NONCE_BYTES],
    answered_with: Vec<u8>,
}

/// The host side: checks M1 against a verifier before proving anything.
pub struct HostHandshake {
    host_id: String,
    ephemeral: [u8; EPHEMERAL_BYTES],
    nonce: [u8; NONCE_BYTES],
    state: HostState,
    identity: Option<String>,
}

impl HostHandshake {
    pub fn new(host_id: &str, entropy: HandshakeEntropy) -> Self {
        let (ephemeral, nonce) = entropy.split();
        HostHandshake {
            host_id: host_id.to_owned(),
            ephemeral,
            nonce,
            state: HostState::AwaitClientHello,
            identity: None,
        }
    }

    /// The identity the client claimed, once its hello arrived (for logs and throttling).
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The verifier the hello was answered with (which credential this handshake is against).
    pub fn answered_with(&self) -> Option<&[u8]> {
        match &self.state {
            HostState::Computing { answered_with, .. } => Some(answered_with),
            HostState::AwaitClientProof { proof } | HostState::AwaitVerification { proof, .. } => {
                Some(&proof.answered_with)
            }
            _ => None,
        }
    }

    /// Feed the client's next handshake frame.
    pub fn handle(&mut self, frame: &Frame) -> Step {
        let step = self.advance(frame);
        self.conclude(step)
    }

    /// The caller's answer to `Step::NeedCredential`: the credential the client claims, as it is
    /// now (`None`: unknown or revoked). Returns the exponentiations to run, or the failure.
    pub fn answer_hello(&mut self, credential: Option<&Credential>) -> Result<HelloWork, Step> {
        self.prepare_hello(credential).map_err(|error| self.conclude(Err(error)))
    }

    /// The computed answer to the hello: the `server_hello` to send.
    pub fn finish_hello(&mut self, answer: HelloAnswer) -> Step {
        let step = self.reply_to_hello(answer);
        self.conclude(step)
    }

    /// The caller's answer to `Step::NeedVerification`: check the proof against the credential
    /// as it is now. A credential revoked or changed since the hello fails the handshake.
    pub fn verify(&mut self, credential: Option<&Credential>) -> Step {
        let step = self.check_proof(credential);
        self.conclude(step)
    }

    fn conclude(&mut self, step: Result<Step, AuthError>) -> Step {
        match step {
            Ok(step) => step,
            Err(error) => {
                self.state = HostState::Finished;
                Step::Failed { reply: Some(failed_frame(&error.reason())), error }
            }
        }
    }

    fn advance(&mut self, frame: &Frame) -> Result<Step, AuthError> {
        let Header::Auth(step) = &frame.header else {
            return Err(AuthError::Unexpected("non-handshake frame during handshake".into()));
        };
        match (std::mem::replace(&mut self.state, HostState::Finished), step) {
            (_, AuthStep::Failed { reason }) => Err(AuthError::Rejected(peer_reason(reason))),
            (HostState::AwaitClientHello, AuthStep::ClientHello { version, host_id, identity, nonce }) => {
                if *version != PROTOCOL_VERSION {
                    return Err(AuthError::UnsupportedVersion(*version));
                }
                if *host_id != self.host_id {
                    return Err(AuthError::Rejected("this is not the host you asked for".into()));
                }
                let client_nonce = hex::decode_array::<NONCE_BYTES>(nonce)
                    .ok_or_else(|| AuthError::Unexpected("client nonce".into()))?;
                check_public_len(&frame.payload, "a_pub")?;
                if identity.is_empty() || identity.len() > MAX_IDENTITY_BYTES {
                    return Err(AuthError::Unexpected("identity".into()));
                }
                self.identity = Some(identity.clone());
                self.state = HostState::AwaitCredential { client_nonce, a_pub: frame.payload.clone() };
                Ok(Step::NeedCredential { identity: identity.clone() })
            }
            (HostState::AwaitClientProof { proof }, AuthStep::ClientProof) => {
                self.state = HostState::AwaitVerification { proof, m1: frame.payload.clone() };
                Ok(Step::NeedVerification { identity: self.identity.clone().unwrap_or_default() })
            }
            (_, other) => Err(AuthError::Unexpected(format!("handshake step {}", step_name(other)))),
        }
    }

    fn prepare_hello(&mut self, credential: Option<&Credential>) -> Result<HelloWork, AuthError> {
        let HostState::AwaitCredential { client_nonce, a_pub } =
            std::mem::replace(&mut self.state, HostState::Finished)
        else {
            return Err(AuthError::Unexpected("credential without a hello".into()));
        };
        let identity = self.identity.clone().unwrap_or_default();
        // Which identities exist (`invite-…`, `password`) is not a secret worth decoys: say
        // plainly that this one is unknown.
        let credential = credential.filter(|c| c.identity == identity).ok_or_else(|| unknown(&identity))?;
        self.state = HostState::Computing {
            client_nonce,
            answered_with: credential.verifier.clone(),
            salt: credential.salt.clone(),
        };
        Ok(HelloWork {
            username: srp_username(&self.host_id, &identity),
            ephemeral: self.ephemeral,
            salt: credential.salt.clone(),
            verifier: credential.verifier.clone(),
            a_pub,
        })
    }

    fn reply_to_hello(&mut self, answer: HelloAnswer) -> Result<Step, AuthError> {
        let HostState::Computing { client_nonce, answered_with, salt } =
            std::mem::replace(&mut self.state, HostState::Finished)
        else {
            return Err(AuthError::Unexpected("an answer to no hello".into()));
        };
        let (verifier, b_pub) = answer.0?;
        self.state = HostState::AwaitClientProof { proof: PendingProof { verifier, client_nonce, answered_with } };
        Ok(Step::Reply(Frame::new(
            Header::Auth(AuthStep::ServerHello { salt: hex::encode(&salt), nonce: hex::encode(&self.nonce) }),
            b_pub,
        )))
    }

    fn check_proof(&mut self, credential: Option<&Credential>) -> Result<Step, AuthError> {
        let HostState::AwaitVerification { proof, m1 } = std::mem::replace(&mut self.state, HostState::Finished) else {
            return Err(AuthError::Unexpected("verification without a proof".into()));
        };
        let identity = self.identity.clone().unwrap_or_default();
        match credential.filter(|c| c.identity == identity) {
            None => return Err(unknown(&identity)),
            Some(now) if now.verifier != proof.answered_with => {
                return Err(AuthError::Rejected("the credential changed during the handshake; try again".into()))
            }
            Some(_) => {}
        }
        let key = proof.verifier.verify_client(&m1).map_err(map_srp_error)?;
        let keys = derive_session_keys(key, &proof.client_nonce, &self.nonce, &self.host_id);
        let reply = Frame::new(Header::Auth(AuthStep::ServerProof), proof.verifier.proof().to_vec());
        Ok(Step::Done { reply: Some(reply), keys })
    }
}

/// The host's SRP exponentiations for one hello: B = kv + g^b and the shared secret. Pure and
/// `Send`, so the caller may run it on any thread; they take milliseconds.
pub struct HelloWork {
    username: String,
    ephemeral: [u8; EPHEMERAL_BYTES],
    salt: Vec<u8>,
    verifier: Vec<u8>,
    a_pub: Vec<u8>,
}

/// What `HelloWork::compute` produced, for `finish_hello`.
pub struct HelloAnswer(Result<(srp::ServerVerifier<Sha256>, Vec<u8>), AuthError>);

impl HelloWork {
    pub fn compute(self) -> HelloAnswer {
        let server = SrpServer::new();
        let b_pub = server.compute_public_ephemeral(&self.ephemeral, &self.verifier);
        let computed = check_u_nonzero(&self.a_pub, &b_pub).and_then(|()| {
            server
                .process_reply(self.username.as_bytes(), &self.salt, &self.ephemeral, &self.verifier, &self.a_pub)
                .map_err(map_srp_error)
        });
        HelloAnswer(computed.map(|verifier| (verifier, b_pub)))
    }
}

/// Longest identity a client may claim (ours are `invite-` + 8 hex digits, or `password`).
const MAX_IDENTITY_BYTES: usize = 64;
/// Longest reason a peer's `failed` may put in our errors (and so in logs).
const MAX_PEER_REASON_CHARS: usize = 200;

fn unknown(identity: &str) -> AuthError {
    AuthError::Rejected(match identity.starts_with("invite-") {
        true => "unknown or revoked invite".to_owned(),
        false => format!("no credential {identity:?} on this host"),
    })
}

/// A peer's `failed` reason, made safe to show and log: printable characters only, capped.
fn peer_reason(reason: &str) -> String {
    let clean: String =
        reason.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_PEER_REASON_CHARS).collect();
    clean.trim().to_owned()
}

fn step_name(step: &AuthStep) -> &'static str {
    match step {
        AuthStep::ClientHello { .. } => "client_hello",
        AuthStep::ServerHello { .. } => "server_hello",
        AuthStep::ClientProof => "client_proof",
        AuthStep::ServerProof => "server_proof",
        AuthStep::Failed { .. } => "failed",
    }
}
