//! The client side of the handshake: holds the secret and proves first (M1); checks the host's
//! proof (M2) before any key is used.

use super::*;

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
            // A wrong M1 is a wrong secret, whatever words came with it; any other refusal of
            // the proof (the credential revoked or expired meanwhile) is said as the host says it.
            (ClientState::AwaitServerProof { .. }, AuthStep::Failed { reason })
                if *reason != AuthError::WrongSecret.reason() =>
            {
                Err(AuthError::Rejected(peer_reason(reason)))
            }
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
