//! A relay connection shared by several requests and streams at once (what `attach -H` needs:
//! output streaming while keystrokes and resizes go the other way). One task owns the
//! `RelayConnection`; callers talk to it through channels, as with the local daemon's client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_protocol::api::{Request, Response};
use tether_protocol::connection::Event;
use tether_protocol::sync::lock;
use tokio::sync::{mpsc, oneshot};

use crate::reach::relay::RelayConnection;
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

/// The connection's task: requests out, answers and stream data in, until closed or the link
/// fails.
async fn serve(mut connection: RelayConnection, mut inbox: mpsc::Receiver<Command>, ended: Arc<Mutex<Option<String>>>) {
    let mut answers: HashMap<u64, AnswerTo> = HashMap::new();
    let mut streams: HashMap<u32, mpsc::Sender<StreamEvent>> = HashMap::new();
    let result: Result<(), String> = async {
        loop {
            tokio::select! {
                command = inbox.recv() => {
                    let (request, payload, answer, stream_events) = match command {
                        None => return Ok(()),
                        Some(Command::Call { request, payload, answer }) => (request, payload, answer, None),
                        Some(Command::Open { request, events, answer }) => (request, Vec::new(), Some(answer), Some(events)),
                        Some(Command::Close { done }) => {
                            connection.close().await;
                            let _ = done.send(());
                            return Ok(());
                        }
                    };
                    // A request too big to seal fails alone; the connection goes on.
                    match connection.request(&request, payload) {
                        Ok(id) => {
                            // Registered before the request goes out, so no early data can miss it.
                            if let Some(events) = stream_events {
                                streams.insert(id as u32, events);
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
            }
            let events = connection.flush().await?;
            handle(&mut connection, events, &mut answers, &mut streams).await?;
        }
    }
    .await;
    if let Err(message) = result {
        *lock(&ended) = Some(message.clone());
        for (_, answer) in answers.drain() {
            let _ = answer.send(Err(message.clone()));
        }
    }
    // Dropping the stream senders ends every stream: their readers see the loss.
}

/// Route answers to their callers and stream bytes to their readers, then send what that
/// produced (credit for the bytes taken).
async fn handle(
    connection: &mut RelayConnection,
    events: Vec<Event>,
    answers: &mut HashMap<u64, AnswerTo>,
    streams: &mut HashMap<u32, mpsc::Sender<StreamEvent>>,
) -> Result<(), String> {
    for event in events {
        match event {
            Event::Cmd { id, body, payload } => {
                let Some(answer) = answers.remove(&id) else { continue };
                let answered = match serde_json::from_value::<Response>(body) {
                    Ok(Response::Error { message, .. }) => Err(message),
                    Ok(response) => Ok((response, payload)),
                    Err(e) => Err(format!("unreadable answer from the host: {e}")),
                };
                if answered.is_err() {
                    streams.remove(&(id as u32));
                }
                let _ = answer.send(answered);
            }
            Event::Data { stream, bytes, .. } => {
                let len = bytes.len() as u64;
                if let Some(events) = streams.get(&stream) {
                    // Waiting here is the back-pressure: no credit until taken.
                    let _ = events.send(StreamEvent::Data { bytes }).await;
                }
                connection.conn().consumed(stream, len).map_err(|e| e.to_string())?;
            }
            Event::Skipped { stream, from, to } => {
                if let Some(events) = streams.get(&stream) {
                    let _ = events.send(StreamEvent::Skipped { from, to }).await;
                }
            }
            Event::Eof { stream, .. } => {
                if let Some(events) = streams.remove(&stream) {
                    let _ = events.send(StreamEvent::Eof).await;
                }
            }
            _ => {}
        }
    }
    // Only credit went out of the handling above; it produces no events of its own.
    connection.flush().await?;
    Ok(())
}
