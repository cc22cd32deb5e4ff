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
}

/// Keys typed while attached, on their way into the session, paced so that a program that
/// reads late makes the typist wait rather than lose input. Through a relay keys ride the
/// attach stream, paced by the host's credit: nothing to wait for here. To the local daemon
/// each batch is queued, then waited for until the program took it
/// (`LocalClient::queue_input`, `input_taken`), and the next batch waits for both.
pub struct Typist<'a> {
    stream: u32,
    session: &'a str,
    under_way: Option<(Step, &'a LocalClient, Typing<'a>)>,
}

/// Where a local batch is.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    Queueing,
    Taking,
}

type Typing<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + 'a>>;

impl<'a> Typist<'a> {
    /// The typist for keys into `session`, attached on `stream`.
    pub fn new(stream: u32, session: &'a str) -> Typist<'a> {
        Typist { stream, session, under_way: None }
    }

    /// Whether it may take the next batch now.
    pub fn ready(&self) -> bool {
        self.under_way.is_none()
    }

    /// Type `bytes` (only when `ready`): through a relay into `permit` at once; to the local
    /// daemon the permit is let go and `progress` carries them on.
    pub fn type_input(&mut self, permit: SendPermit<'a>, bytes: Vec<u8>) {
        match permit {
            SendPermit::Remote(permit) => permit.type_input(self.stream, bytes),
            SendPermit::Local(permit) => {
                let client = permit.client();
                self.under_way = Some((Step::Queueing, client, Box::pin(client.queue_input(self.session, bytes))));
            }
        }
    }

    /// Local typing's next step: resolves when the batch under way was queued (its wait for
    /// the program then begins) or taken (the typist is ready again); never, with none under
    /// way. `Err`: the session refused it (the batch is dropped).
    pub async fn progress(&mut self) -> Result<(), String> {
        let Some((step, client, typing)) = &mut self.under_way else { return std::future::pending().await };
        let (step, client) = (*step, *client);
        let result = typing.as_mut().await;
        self.under_way = match (step, &result) {
            (Step::Queueing, Ok(())) => Some((Step::Taking, client, Box::pin(client.input_taken(self.session)))),
            _ => None,
        };
        result
    }

    /// On detach: a batch still being queued gets until `deadline` to be. What is queued stays
    /// queued — the program reads it when it reads; waiting for that is not the detach's job.
    /// `Err` says why a batch was not delivered.
    pub async fn finish(self, deadline: std::time::Duration) -> Result<(), String> {
        match self.under_way {
            Some((Step::Queueing, _, typing)) => match tokio::time::timeout(deadline, typing).await {
                Ok(result) => result,
                Err(_) => Err("the program is not reading its input".to_owned()),
            },
            _ => Ok(()),
        }
    }
}
