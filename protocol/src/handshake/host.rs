//! The host side of the handshake: answers a hello with the credential its caller looks up, and
//! proves itself (M2) only after checking the client's proof (M1).

use super::*;

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

    /// Refuse the hello in words of the caller's (a credential that expired): the client hears
    /// `reason` in its `auth/failed`, and the handshake is over.
    pub fn refuse(&mut self, reason: String) -> Step {
        self.conclude(Err(AuthError::Rejected(reason)))
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
