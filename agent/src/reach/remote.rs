//! A relay connection shared by several requests and streams at once (what `attach -H` needs:
//! output streaming while keystrokes and resizes go the other way). One task owns the
//! `RelayConnection`; callers talk to it through channels, as with the local daemon's client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tether_protocol::api::{Request, Response};
use tether_protocol::connection::Event;
use tether_protocol::sync::lock;
use tokio::sync::{mpsc, oneshot};

use crate::reach::relay::{sleep_until_ms, Dial, RelayConnection};
use crate::reach::stream::{lost, stream_channel, Lost, StreamEvent};
use tether_protocol::api::Answer;

/// Commands queued toward the connection's task before a caller waits.
const COMMAND_QUEUE: usize = 64;

pub struct RemoteClient {
    commands: mpsc::Sender<Command>,
    /// Why the connection ended, once it has (e.g. "access revoked by the host").
    ended: Arc<Mutex<Option<String>>>,
}

type AnswerTo = oneshot::Sender<Result<Answer, String>>;

/// What callers ask of the connection's task.
enum Command {
    Call { request: Request, payload: Vec<u8>, answer: Option<AnswerTo> },
    Open { request: Request, events: mpsc::Sender<StreamEvent>, answer: AnswerTo },
    Close { done: oneshot::Sender<()> },
}

impl RemoteClient {
    pub fn spawn(connection: RelayConnection) -> RemoteClient {
        let (commands, inbox) = mpsc::channel(COMMAND_QUEUE);
        let ended = Arc::default();
        tokio::spawn(serve(connection, inbox, Arc::clone(&ended)));
        RemoteClient { commands, ended }
    }

    /// Whether the connection has ended (a call's error was the link's, not the host's answer).
    pub fn link_lost(&self) -> bool {
        lock(&self.ended).is_some() || self.commands.is_closed()
    }

    /// Why the connection was lost, for a stream that ended without `eof`.
    pub fn lost_reason(&self) -> String {
        match lock(&self.ended).clone() {
            Some(reason) => format!("lost the connection to the host: {reason}"),
            None => lost(Lost::Host),
        }
    }

    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<Answer, String> {
        let (answer, answered) = oneshot::channel();
        let command = Command::Call { request: request.clone(), payload, answer: Some(answer) };
        self.commands.send(command).await.map_err(|_| lost(Lost::Host))?;
        answered.await.map_err(|_| lost(Lost::Host))?
    }

    /// Room for one more request toward the connection's task (see `LocalClient::reserve`).
    pub async fn reserve(&self) -> Result<RemotePermit<'_>, String> {
        self.commands.reserve().await.map(RemotePermit).map_err(|_| lost(Lost::Host))
    }

    pub async fn send(&self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        let command = Command::Call { request: request.clone(), payload, answer: None };
        self.commands.send(command).await.map_err(|_| lost(Lost::Host))
    }

    /// A request whose answer is followed by a stream of events on stream = its id.
    pub async fn open_with_answer(&self, request: &Request) -> Result<(Response, mpsc::Receiver<StreamEvent>), String> {
        let (events_tx, events) = stream_channel();
        let (answer, answered) = oneshot::channel();
        let command = Command::Open { request: request.clone(), events: events_tx, answer };
        self.commands.send(command).await.map_err(|_| lost(Lost::Host))?;
        let (response, _) = answered.await.map_err(|_| lost(Lost::Host))??;
        Ok((response, events))
    }

    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// A reserved place in the queue toward the connection's task.
pub struct RemotePermit<'a>(mpsc::Permit<'a, Command>);

impl RemotePermit<'_> {
    /// Send without waiting for the answer; never blocks.
    pub fn send(self, request: &Request, payload: Vec<u8>) {
        self.0.send(Command::Call { request: request.clone(), payload, answer: None });
    }
}

/// Back-off between attempts to make a lost link again: doubling from the first, capped.
const FIRST_REDIAL: Duration = Duration::from_millis(200);
const MAX_REDIAL: Duration = Duration::from_secs(10);

/// One output stream as the connection's task keeps it.
struct Stream {
    events: mpsc::Sender<StreamEvent>,
    /// The id its consumer knows (its first request's); after a reconnect the wire id differs.
    known_as: u32,
    /// The request that opened it, to ask again from `next` after a lost link (attach, logs).
    reopen: Option<Request>,
    /// The next byte expected.
    next: Option<u64>,
}

/// The connection's task: requests out, answers and stream data in. A lost link is made again
/// (with back-off, saying so on stderr) while streams are open, and each resumes from its next
/// byte: nothing missed, nothing twice. It ends when closed, or when the host refuses it.
async fn serve(mut connection: RelayConnection, mut inbox: mpsc::Receiver<Command>, ended: Arc<Mutex<Option<String>>>) {
    let mut answers: HashMap<u64, AnswerTo> = HashMap::new();
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    loop {
        let why = match run(&mut connection, &mut inbox, &mut answers, &mut streams).await {
            Ok(Some(closing)) => {
                connection.close().await;
                let _ = closing.send(());
                return;
            }
            Ok(None) => return, // its owner is gone
            Err(why) => why,
        };
        // Calls in flight cannot be answered any more; open streams can be resumed. (When this
        // is the end, it is recorded first, so a caller woken by its failed call sees why.)
        let resumable = streams.values().any(|s| s.reopen.is_some());
        let redial = connection.redial().cloned().filter(|_| resumable && !is_refusal(&why));
        if redial.is_none() {
            *lock(&ended) = Some(why.clone());
        }
        for (_, answer) in answers.drain() {
            let _ = answer.send(Err(why.clone()));
        }
        let Some(dial) = redial else {
            return; // dropping the stream senders ends every stream: their readers see the loss
        };
        let Some(again) = reconnect(&dial, &why).await else {
            *lock(&ended) = Some(why);
            return;
        };
        connection = again;
        if let Err(why) = resume(&mut connection, &mut streams).await {
            *lock(&ended) = Some(why);
            return;
        }
    }
}

/// Whether the host (not the network) ended the link: then trying again cannot help. (Not
/// "refused": a relay that is down refuses TCP connections, and that is worth another try.)
pub fn is_refusal(why: &str) -> bool {
    ["authentication failed", "revoked"].iter().any(|word| why.contains(word))
}

/// Dial until the link is up again; `None` if the host refuses us.
async fn reconnect(dial: &Dial, why: &str) -> Option<RelayConnection> {
    let mut wait = FIRST_REDIAL;
    let mut why = why.to_owned();
    loop {
        eprint!("\r\n[tether: lost the connection to the host ({why}); reconnecting in {} ms]\r\n", wait.as_millis());
        tokio::time::sleep(wait).await;
        match RelayConnection::dial(dial).await {
            Ok(connection) => {
                eprint!("\r\n[tether: reconnected]\r\n");
                return Some(connection);
            }
            Err(e) if is_refusal(&e) => {
                eprint!("\r\n[tether: {e}]\r\n");
                return None;
            }
            Err(e) => why = e,
        }
        wait = (wait * 2).min(MAX_REDIAL);
    }
}

/// Ask again for every resumable stream, from its next byte, on the new connection. Its answer
/// is the task's own (no caller waits for it).
async fn resume(connection: &mut RelayConnection, streams: &mut HashMap<u32, Stream>) -> Result<(), String> {
    for (_, stream) in std::mem::take(streams) {
        let Some(request) = stream.reopen.clone() else { continue };
        let request = match request {
            Request::Attach { session, cols, rows, .. } => Request::Attach { session, from: stream.next, cols, rows },
            Request::Logs { session, follow, .. } => Request::Logs { session, follow, from: stream.next },
            other => other,
        };
        let id = connection.request(&request, Vec::new())?;
        streams.insert(id as u32, Stream { reopen: Some(request), ..stream });
    }
    connection.flush().await?;
    Ok(())
}

/// Serve one link until it is lost (`Err(why)`) or its owner closes it (`Ok(Some(done))`) or
/// goes (`Ok(None)`).
async fn run(
    connection: &mut RelayConnection,
    inbox: &mut mpsc::Receiver<Command>,
    answers: &mut HashMap<u64, AnswerTo>,
    streams: &mut HashMap<u32, Stream>,
) -> Result<Option<oneshot::Sender<()>>, String> {
    loop {
        let timer = connection.next_timeout();
        tokio::select! {
            command = inbox.recv() => {
                let (request, payload, answer, stream_events) = match command {
                    None => return Ok(None),
                    Some(Command::Call { request, payload, answer }) => (request, payload, answer, None),
                    Some(Command::Open { request, events, answer }) => (request, Vec::new(), Some(answer), Some(events)),
                    Some(Command::Close { done }) => return Ok(Some(done)),
                };
                // A detach names the stream as its consumer knows it.
                let request = match request {
                    Request::Detach { stream } => Request::Detach { stream: wire_id(streams, stream) },
                    other => other,
                };
                // A request too big to seal fails alone; the connection goes on.
                match connection.request(&request, payload) {
                    Ok(id) => {
                        // Registered before the request goes out, so no early data can miss it.
                        if let Some(events) = stream_events {
                            let reopen = matches!(request, Request::Attach { .. } | Request::Logs { .. }).then(|| request.clone());
                            streams.insert(id as u32, Stream { events, known_as: id as u32, reopen, next: None });
                        }
                        if let Some(answer) = answer {
                            answers.insert(id, answer);
                        }
                    }
                    Err(e) => {
                        if let Some(answer) = answer {
                            let _ = answer.send(Err(format!("cannot send that request: {e}")));
                        }
                    }
                }
            }
            received = connection.receive() => received?,
            () = sleep_until_ms(timer) => connection.handle_timeout()?,
        }
        let events = connection.flush().await?;
        handle(connection, events, answers, streams).await?;
    }
}

/// The wire id of the stream its consumer calls `known_as`.
fn wire_id(streams: &HashMap<u32, Stream>, known_as: u32) -> u32 {
    streams.iter().find(|(_, s)| s.known_as == known_as).map_or(known_as, |(&id, _)| id)
}

/// Route answers to their callers and stream bytes to their readers, then send what that
/// produced (credit for the bytes taken).
async fn handle(
    connection: &mut RelayConnection,
    events: Vec<Event>,
    answers: &mut HashMap<u64, AnswerTo>,
    streams: &mut HashMap<u32, Stream>,
) -> Result<(), String> {
    for event in events {
        match event {
            Event::Cmd { id, body, payload } => {
                let answered = match serde_json::from_value::<Response>(body) {
                    Ok(Response::Error { message, .. }) => Err(message),
                    Ok(response) => Ok((response, payload)),
                    Err(e) => Err(format!("unreadable answer from the host: {e}")),
                };
                match answers.remove(&id) {
                    Some(answer) => {
                        if answered.is_err() {
                            streams.remove(&(id as u32));
                        }
                        let _ = answer.send(answered);
                    }
                    // The answer to a resumed stream. An attach refused because its session
                    // ended meanwhile: the rest of its output is read from its log instead.
                    None => {
                        let refused = answered.is_err();
                        if let Some(stream) = refused.then(|| streams.remove(&(id as u32))).flatten() {
                            if let Some(Request::Attach { session, .. }) = &stream.reopen {
                                let logs = Request::Logs { session: session.clone(), follow: true, from: stream.next };
                                let id = connection.request(&logs, Vec::new())?;
                                streams.insert(id as u32, Stream { reopen: Some(logs), ..stream });
                            }
                        }
                    }
                }
            }
            Event::Data { stream, seq, bytes } => {
                let len = bytes.len() as u64;
                if let Some(open) = streams.get_mut(&stream) {
                    open.next = Some(seq + len);
                    // Waiting here is the back-pressure: no credit until taken.
                    let _ = open.events.send(StreamEvent::Data { bytes }).await;
                }
                connection.conn().consumed(stream, len).map_err(|e| e.to_string())?;
            }
            Event::Skipped { stream, from, to } => {
                if let Some(open) = streams.get_mut(&stream) {
                    open.next = Some(to);
                    let _ = open.events.send(StreamEvent::Skipped { from, to }).await;
                }
            }
            Event::Eof { stream, .. } => {
                if let Some(open) = streams.remove(&stream) {
                    let _ = open.events.send(StreamEvent::Eof).await;
                }
            }
            _ => {}
        }
    }
    // Only credit went out of the handling above; it produces no events of its own.
    connection.flush().await?;
    Ok(())
}
