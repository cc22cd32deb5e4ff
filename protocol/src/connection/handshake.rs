//! The connection's handshake: the host's questions (which credential a client claims, its
//! proof checked against the credential as it is at that moment), each step's reply, and the
//! keys that open the secure channel when it succeeds.

use crate::error::ConnError;
use crate::handshake::{Credential, HelloAnswer, HelloWork, HostHandshake, Step};
use crate::keys::SessionKeys;

use super::{Connection, Event, Role, State};
use crate::channel::{Opener, Sealer};

impl Connection {
    /// Host: the identity the client claims, once its hello is in (before it is proven too).
    pub fn claimed_identity(&self) -> Option<&str> {
        match &self.state {
            State::Host(handshake) => handshake.identity(),
            _ => (!self.identity.is_empty()).then_some(self.identity.as_str()),
        }
    }

    /// Host, mid-handshake: the verifier the client's hello was answered with.
    pub fn answered_with(&self) -> Option<&[u8]> {
        match &self.state {
            State::Host(handshake) => handshake.answered_with(),
            _ => None,
        }
    }

    /// Host: answer `Event::CredentialNeeded` with the credential as it is now (`None`:
    /// unknown or revoked). Returns the SRP exponentiations to run (`HelloWork::compute`, on any
    /// thread), whose answer goes to `finish_hello`.
    pub fn answer_hello(&mut self, credential: Option<&Credential>, now_ms: u64) -> Result<HelloWork, ConnError> {
        self.check_usable()?;
        let State::Host(handshake) = &mut self.state else {
            return Err(ConnError::NotReady("no host handshake waiting for that"));
        };
        match handshake.answer_hello(credential) {
            Ok(work) => Ok(work),
            Err(step) => Err(match self.take_step(step, now_ms) {
                Err(error) => self.fail(error),
                Ok(()) => self.fail(ConnError::NotReady("the handshake went on without a credential")),
            }),
        }
    }

    /// Host: refuse the credential asked for by `Event::CredentialNeeded` or
    /// `Event::ProofReceived` with `reason` (it exists but may not be used now, e.g. it expired):
    /// `auth/failed` goes out, and the connection fails.
    pub fn refuse_credential(&mut self, reason: String, now_ms: u64) -> ConnError {
        if let Err(error) = self.check_usable() {
            return error;
        }
        let State::Host(handshake) = &mut self.state else {
            return ConnError::NotReady("no host handshake waiting for that");
        };
        let step = handshake.refuse(reason);
        match self.take_step(step, now_ms) {
            Err(error) => self.fail(error),
            Ok(()) => self.fail(ConnError::NotReady("the handshake went on after a refusal")),
        }
    }

    /// Host: the computed answer to the hello; sends the `server_hello`.
    pub fn finish_hello(&mut self, answer: HelloAnswer, now_ms: u64) -> Result<(), ConnError> {
        self.host_step(now_ms, |handshake| handshake.finish_hello(answer))
    }

    /// Host: answer `Event::ProofReceived`: check the proof against the credential as it is now.
    /// A wrong proof fails with `AuthError::WrongSecret`; a credential revoked or changed since
    /// the hello fails too.
    pub fn verify_proof(&mut self, credential: Option<&Credential>, now_ms: u64) -> Result<(), ConnError> {
        self.host_step(now_ms, |handshake| handshake.verify(credential))
    }

    pub(super) fn host_step(
        &mut self,
        now_ms: u64,
        step: impl FnOnce(&mut HostHandshake) -> Step,
    ) -> Result<(), ConnError> {
        self.check_usable()?;
        let State::Host(handshake) = &mut self.state else {
            return Err(ConnError::NotReady("no host handshake waiting for that"));
        };
        let step = step(handshake);
        self.take_step(step, now_ms).map_err(|e| self.fail(e))
    }

    pub(super) fn take_step(&mut self, step: Step, now_ms: u64) -> Result<(), ConnError> {
        match step {
            Step::NeedCredential { identity } => {
                self.event(Event::CredentialNeeded { identity });
                Ok(())
            }
            Step::NeedVerification { identity } => {
                self.event(Event::ProofReceived { identity });
                Ok(())
            }
            Step::Reply(reply) => {
                self.transmit_plain(&reply);
                Ok(())
            }
            Step::Done { reply, keys } => {
                if let Some(reply) = reply {
                    self.transmit_plain(&reply);
                }
                self.open(keys, now_ms);
                Ok(())
            }
            Step::Failed { reply, error } => {
                if let Some(reply) = reply {
                    self.transmit_plain(&reply);
                }
                Err(ConnError::Auth(error))
            }
        }
    }

    pub(super) fn open(&mut self, keys: SessionKeys, now_ms: u64) {
        let (send_key, recv_key) = match self.role {
            Role::Client => (&keys.client_to_host, &keys.host_to_client),
            Role::Host => (&keys.host_to_client, &keys.client_to_host),
        };
        self.state = State::Open { sealer: Sealer::new(send_key), opener: Opener::new(recv_key) };
        self.last_received_ms = now_ms;
        self.event(Event::Authenticated { identity: self.identity.clone() });
    }
}
