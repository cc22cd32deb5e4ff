//! [`Agent`]: the one type every CLI command talks to, whichever way the agent is reached.

use tether_protocol::api::{Answer, Request, Response};
use tether_protocol::client::Ending;
use tether_protocol::identity::HostRef;

use crate::reach::local::{LocalClient, LocalPermit};
use crate::reach::relay::RelayConnection;
use crate::reach::remote::{PendingAnswer, RemoteClient, RemotePermit};
use crate::reach::stream::{lost, Lost, OpenStream};

/// The agent a command talks to.
pub enum Agent {
    /// This machine's daemon.
    Local(LocalClient),
    /// A paired host, through a relay.
    Remote(RemoteClient),
}

impl Agent {
    /// Connect through `link` to a paired host; `ask_password` supplies the host password for a
    /// link without a secret (given the host id).
    pub async fn remote(link: &HostRef, ask_password: fn(&str) -> Result<String, String>) -> Result<Agent, Ending> {
        let connection = RelayConnection::open(link, ask_password).await?;
        Ok(Agent::Remote(RemoteClient::spawn(connection)))
    }

    /// Send a request and wait for its answer; an error response becomes `Err(message)`.
    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<Answer, String> {
        match self {
            Agent::Local(client) => client.call(request, payload).await,
            Agent::Remote(remote) => remote.call(request, payload).await,
        }
    }

    /// Send several requests together (through a relay they are sealed side by side: an
    /// upload's chunks); each answer, in the order given, from its `Pending`.
    pub async fn call_all(&self, requests: Vec<(Request, Vec<u8>)>) -> Vec<Pending<'_>> {
        match self {
            Agent::Local(client) => {
                requests.into_iter().map(|(request, payload)| Pending::Local(client, request, payload)).collect()
            }
            Agent::Remote(remote) => remote.call_all(requests).await.into_iter().map(Pending::Remote).collect(),
        }
    }

    /// Send without waiting for the answer (keystrokes while attached).
    pub async fn send(&self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        match self {
            Agent::Local(client) => client.send(request, payload).await,
            Agent::Remote(remote) => remote.send(request, payload).await,
        }
    }

    /// Room to send one request without waiting: for a loop that must go on reading its streams
    /// while the way to the agent is busy (a full queue must never stop it draining output).
    pub async fn reserve(&self) -> Result<SendPermit<'_>, String> {
        Ok(match self {
            Agent::Local(client) => SendPermit::Local(client.reserve().await?),
            Agent::Remote(remote) => SendPermit::Remote(remote.reserve().await?),
        })
    }

    /// Open an output stream (`attach`, `logs`).
    pub async fn open_stream(&self, request: &Request) -> Result<OpenStream, String> {
        let (answer, events) = match self {
            Agent::Local(client) => client.open_with_answer(request).await?,
            Agent::Remote(remote) => remote.open_with_answer(request).await?,
        };
        match answer {
            Response::Streaming { session, stream, .. } => Ok(OpenStream { session, stream, events }),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Open a file service stream (`list`, `read`): its answer and events.
    pub async fn open_fs_stream(
        &self,
        request: &Request,
    ) -> Result<(tether_protocol::fs::FsResponse, tokio::sync::mpsc::Receiver<crate::reach::stream::OutputEvent>), String>
    {
        let (answer, events) = match self {
            Agent::Local(client) => client.open_with_answer(request).await?,
            Agent::Remote(remote) => remote.open_with_answer(request).await?,
        };
        match answer {
            Response::Fs(answer) => Ok((answer, events)),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Whether the way to the agent has gone (so a failed call was the link's fault).
    pub fn link_lost(&self) -> bool {
        match self {
            Agent::Local(client) => client.link_lost(),
            Agent::Remote(remote) => remote.link_lost(),
        }
    }

    /// What to tell the user when a stream ends without `eof`.
    pub fn lost_reason(&self) -> String {
        match self {
            Agent::Local(_) => lost(Lost::Daemon),
            Agent::Remote(remote) => remote.lost_reason(),
        }
    }

    pub async fn close(self) {
        if let Agent::Remote(remote) = self {
            remote.close().await;
        }
    }
}

/// One of `Agent::call_all`'s answers, to come (to the local daemon, the call goes out when its
/// answer is first awaited).
pub enum Pending<'a> {
    Local(&'a LocalClient, Request, Vec<u8>),
    Remote(PendingAnswer),
}

impl Pending<'_> {
    pub async fn answer(self) -> Result<Answer, String> {
        match self {
            Pending::Local(client, request, payload) => client.call(&request, payload).await,
            Pending::Remote(pending) => pending.answer().await,
        }
    }
}

/// Room reserved by `Agent::reserve` for one request.
pub enum SendPermit<'a> {
    Local(LocalPermit<'a>),
    Remote(RemotePermit<'a>),
}

impl SendPermit<'_> {
    /// Send without waiting for the answer; never blocks.
    pub fn send(self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        match self {
            SendPermit::Local(permit) => permit.send(request, payload),
            SendPermit::Remote(permit) => {
                permit.send(request, payload);
                Ok(())
            }
        }
    }

    /// Type `bytes` into `session`, attached on `stream`: through a relay they ride the attach
    /// stream (paced by the host's credit, no answer of their own); to the local daemon they are
    /// a `write`. Never blocks.
    pub fn type_input(self, stream: u32, session: &str, bytes: Vec<u8>) -> Result<(), String> {
        match self {
            SendPermit::Local(permit) => {
                permit.send(&Request::Write { session: session.to_owned(), paced: false }, bytes)
            }
            SendPermit::Remote(permit) => {
                permit.type_input(stream, bytes);
                Ok(())
            }
        }
    }
}
