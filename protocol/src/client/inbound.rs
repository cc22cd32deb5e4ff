//! What comes back from the connection: answers to calls, stream bytes, the host's signals,
//! authentication (and the streams resumed after it), and the end of a link.

use crate::api::Response;
use crate::cmd::cmd_frame;
use crate::connection::{Event, Output as ConnOutput};
use crate::error::ConnError;
use crate::stream::{next_request_id, request_stream};
use crate::upgrade::Action;

use super::redial::{Ending, RedialWhen};
use super::streams::{Resume, StreamEvent};
use super::{Client, ClientEvent, Output, Pending, Refused, Status};

impl Client {
    /// Move what the connection has to say into our output, acting on its events (which may
    /// make it say more) until it is quiet.
    pub(super) fn pump(&mut self, now_ms: u64) {
        self.unpumped = None;
        loop {
            let Some(conn) = self.conn.as_mut() else { return };
            let mut events = Vec::new();
            while let Some(out) = conn.poll_output() {
                match out {
                    ConnOutput::Transmit { path, bytes } => self.out.push_back(Output::Transmit { path, bytes }),
                    ConnOutput::Event(event) => events.push(event),
                }
            }
            while let Some(job) = conn.poll_open_job() {
                self.open_jobs.push_back((self.link, job));
            }
            while let Some(job) = conn.poll_seal_job() {
                self.seal_jobs.push_back((self.link, job));
            }
            let route = conn.direct_route();
            if route != self.route {
                self.route = route;
                self.event(ClientEvent::PathChanged { route });
            }
            if events.is_empty() {
                return;
            }
            for event in events {
                if let Err(error) = self.on_event(event, now_ms) {
                    return self.lost(ending_of(&error), now_ms);
                }
            }
        }
    }

    fn on_event(&mut self, event: Event, now_ms: u64) -> Result<(), ConnError> {
        match event {
            Event::Authenticated { .. } => self.authenticated(now_ms)?,
            Event::RoundTrip { ms } => self.event(ClientEvent::RoundTrip { ms }),
            Event::Webrtc { signal } => {
                let Some(conn) = self.conn.as_mut() else { return Ok(()) };
                let action = self.upgrade.on_signal(conn, signal, now_ms)?;
                self.out.extend(action.map(Output::Peer));
            }
            Event::DirectLost { silent_ms } => {
                let Some(conn) = self.conn.as_mut() else { return Ok(()) };
                let action = self.upgrade.on_direct_lost(conn, silent_ms, now_ms)?;
                self.out.extend(action.map(Output::Peer));
            }
            Event::Cmd { id, body, payload } => self.answered(id, body, payload, now_ms)?,
            Event::Data { stream, seq, bytes } => match self.streams.handle(stream) {
                Some(handle) => {
                    self.streams.advanced(stream, seq + bytes.len() as u64);
                    self.event(ClientEvent::Stream { handle, event: StreamEvent::Data { seq, bytes } });
                }
                // Nobody wants it (a closed tab): credit it back so the host is not held up.
                None => {
                    if let Some(conn) = self.conn.as_mut() {
                        conn.consumed(stream, bytes.len() as u64)?;
                    }
                }
            },
            Event::Skipped { stream, from, to } => {
                if let Some(handle) = self.streams.handle(stream) {
                    self.streams.advanced(stream, to);
                    self.event(ClientEvent::Stream { handle, event: StreamEvent::Skipped { from, to } });
                }
            }
            Event::Eof { stream, .. } => {
                // Over both ways: input for it has nowhere to go (its session ended).
                if let Some(conn) = self.conn.as_mut() {
                    conn.forget_stream(stream);
                }
                if let Some(handle) = self.streams.close(stream) {
                    self.event(ClientEvent::Stream { handle, event: StreamEvent::Eof });
                }
            }
            Event::Writable { stream } => {
                self.send_input(stream, now_ms);
                if let Some(handle) = self.streams.handle(stream) {
                    self.event(ClientEvent::Stream { handle, event: StreamEvent::Writable });
                }
            }
            Event::Closed { reason } => {
                self.lost(Ending::Lost(format!("the host closed the connection: {reason}")), now_ms)
            }
            // Host-side questions; a client is never asked them.
            Event::CredentialNeeded { .. } | Event::ProofReceived { .. } => {}
        }
        Ok(())
    }

    /// A connection authenticated: time it, and resume every stream that outlived the last one.
    fn authenticated(&mut self, now_ms: u64) -> Result<(), ConnError> {
        self.status = Status::Connected;
        self.generation += 1;
        self.backoff.reset();
        self.busy_since_ms = None;
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        // Time the round trip at once; keep-alives time it again.
        conn.ping(now_ms)?;
        for resume in self.streams.take_resumes() {
            self.resume(resume)?;
        }
        // Input typed while the link was down goes now, on the resumed streams.
        for wire in self.streams.with_input() {
            self.send_input(wire, now_ms);
        }
        self.event(ClientEvent::Connected { generation: self.generation });
        Ok(())
    }

    /// Ask for a stream again (registered under its new wire id before the request goes).
    fn resume(&mut self, resume: Resume) -> Result<(), ConnError> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        let id = self.next_id;
        let Some(wire) = request_stream(id) else { return Ok(()) };
        conn.send_frame(&cmd_frame(id, &resume.request, Vec::new()))?;
        self.next_id = next_request_id(id);
        self.calls.insert(id, Pending::Resume);
        self.streams.reopened(wire, resume);
        Ok(())
    }

    fn answered(&mut self, id: u64, body: serde_json::Value, payload: Vec<u8>, _now_ms: u64) -> Result<(), ConnError> {
        let Some(pending) = self.calls.remove(&id) else { return Ok(()) };
        let answer = match serde_json::from_value::<Response>(body) {
            Ok(Response::Error { code, message }) => Err(Refused { code: Some(code), message }),
            Ok(response) => Ok((response, payload)),
            Err(e) => Err(Refused::local(format!("unreadable answer from the host: {e}"))),
        };
        let wire = request_stream(id);
        match pending {
            Pending::Nobody => {}
            Pending::Caller => {
                if let Some(wire) = wire {
                    match answer {
                        Ok(_) => self.streams.answered(wire),
                        Err(_) => {
                            self.streams.close(wire);
                        }
                    }
                }
                self.event(ClientEvent::Answer { call: id, answer });
            }
            Pending::Resume => {
                let Some(wire) = wire else { return Ok(()) };
                match answer {
                    Ok((response, _)) => {
                        if let Some(handle) = self.streams.handle(wire) {
                            self.event(ClientEvent::Stream { handle, event: StreamEvent::Resumed { response } });
                        }
                    }
                    Err(refused) => match self.streams.refused(wire) {
                        Some(Ok(instead)) => self.resume(instead)?,
                        Some(Err(handle)) => {
                            let event = StreamEvent::Lost { why: refused.message };
                            self.event(ClientEvent::Stream { handle, event });
                        }
                        None => {}
                    },
                }
            }
        }
        Ok(())
    }

    /// The link is gone: the data channel closes, a redial is scheduled if the policy and the
    /// ending allow one (`Disconnected` says which), calls fail, and streams that cannot be
    /// resumed end.
    pub(super) fn lost(&mut self, ending: Ending, now_ms: u64) {
        if matches!(self.status, Status::Over(_) | Status::Waiting { .. }) {
            return;
        }
        self.conn = None;
        if let Some(attempt) = self.upgrade.attempt() {
            self.out.push_back(Output::Peer(Action::Close { attempt }));
        }
        self.upgrade.restart();
        // (No `PathChanged`: `Disconnected` says more.)
        self.route = None;
        let why = ending.why().to_owned();
        let busy = std::mem::take(&mut self.busy_retry);
        let redial = matches!(ending, Ending::Lost(_))
            && (busy
                || match self.backoff.policy().when {
                    RedialWhen::Always => true,
                    RedialWhen::WhileResuming => self.streams.any_resumable(),
                });
        // Said first, so a shell knows why before its callers hear of failed calls and ended
        // streams.
        if redial {
            let wait = match busy {
                true => {
                    let jitter = self.next_jitter();
                    self.backoff.next_busy_wait(jitter)
                }
                false => self.backoff.next_wait(),
            };
            self.status = Status::Waiting { at_ms: now_ms + wait, why: why.clone() };
            self.event(ClientEvent::Disconnected { why: why.clone(), redial_in_ms: Some(wait) });
        } else {
            self.status = Status::Over(ending);
            self.event(ClientEvent::Disconnected { why: why.clone(), redial_in_ms: None });
        }
        for (call, pending) in std::mem::take(&mut self.calls) {
            if let Pending::Caller = pending {
                let answer = Err(Refused::local(format!("connection lost: {why}")));
                self.event(ClientEvent::Answer { call, answer });
            }
        }
        for handle in self.streams.lose(redial) {
            self.event(ClientEvent::Stream { handle, event: StreamEvent::Lost { why: why.clone() } });
        }
    }
}

/// Whether a connection's error is a refusal (final) or a loss (worth another try).
pub(super) fn ending_of(error: &ConnError) -> Ending {
    match error {
        ConnError::Auth(_) => Ending::Refused(error.to_string()),
        other => Ending::Lost(other.to_string()),
    }
}
