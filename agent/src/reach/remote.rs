//! A relay connection shared by several requests and streams at once (what `attach -H` needs:
//! output streaming while keystrokes and resizes go the other way). One task owns the
//! `RelayConnection`; callers talk to it through channels, as with the local daemon's client.
//! Calls, streams, resume after a lost link and redials are the protocol's `Client`'s: this task
//! only hands its answers and stream bytes to the callers waiting for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_protocol::api::{Answer, Request, Response};
use tether_protocol::client::{Client, ClientEvent, Refused, StreamEvent};
use tether_protocol::sync::lock;
use tokio::sync::{mpsc, oneshot};

use crate::reach::relay::RelayConnection;
use crate::reach::stream::{lost, stream_channel, Lost, OutputEvent};
use crate::time::monotonic_ms;

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
    Call {
        request: Request,
        payload: Vec<u8>,
        answer: Option<AnswerTo>,
    },
    /// Several calls that go out together (sealed side by side): an upload's chunks.
    Calls {
        calls: Vec<(Request, Vec<u8>, AnswerTo)>,
    },
    Open {
        request: Request,
        events: mpsc::Sender<OutputEvent>,
        answer: AnswerTo,
    },
    /// Input on a stream (keystrokes on an attach), by the stream's handle.
    Input {
        stream: u32,
        bytes: Vec<u8>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
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

    /// Several requests sent together; each answer as it comes, in the order given.
    pub async fn call_all(&self, requests: Vec<(Request, Vec<u8>)>) -> Vec<PendingAnswer> {
        let (calls, pending): (Vec<_>, Vec<_>) = requests
            .into_iter()
            .map(|(request, payload)| {
                let (answer, answered) = oneshot::channel();
                ((request, payload, answer), answered)
            })
            .unzip();
        let sent = self.commands.send(Command::Calls { calls }).await.is_ok();
        pending.into_iter().map(|answered| PendingAnswer { answered, sent }).collect()
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
    pub async fn open_with_answer(&self, request: &Request) -> Result<(Response, mpsc::Receiver<OutputEvent>), String> {
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

/// The answer to one of `call_all`'s requests, to come.
pub struct PendingAnswer {
    answered: oneshot::Receiver<Result<Answer, String>>,
    sent: bool,
}

impl PendingAnswer {
    pub async fn answer(self) -> Result<Answer, String> {
        match self.sent {
            true => self.answered.await.map_err(|_| lost(Lost::Host))?,
            false => Err(lost(Lost::Host)),
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

    /// Input on stream `stream` (keystrokes on an attach); never blocks.
    pub fn type_input(self, stream: u32, bytes: Vec<u8>) {
        self.0.send(Command::Input { stream, bytes });
    }
}

/// Who waits for what: callers by call id, stream readers by stream handle.
#[derive(Default)]
struct Waiting {
    answers: HashMap<u64, AnswerTo>,
    streams: HashMap<u32, mpsc::Sender<OutputEvent>>,
}

/// The connection's task: requests out, answers and stream data in, until closed, until its
/// owner goes, or until the client gives the link up (it redials on its own while streams can
/// resume, saying so on stderr).
async fn serve(mut connection: RelayConnection, mut inbox: mpsc::Receiver<Command>, ended: Arc<Mutex<Option<String>>>) {
    let mut waiting = Waiting::default();
    loop {
        tokio::select! {
            command = inbox.recv() => {
                let Some(first) = command else { return }; // its owner is gone
                // Every command already queued goes in before the flush, so what they send is
                // sealed together (`Connection` seals what is queued as one batch): an upload's
                // chunks, queued while the last flush ran, go out side by side.
                for command in queued_batch(first, &mut inbox, COMMAND_QUEUE) {
                    if let Command::Close { done } = command {
                        connection.close().await;
                        let _ = done.send(());
                        return;
                    }
                    take(&mut connection, command, &mut waiting);
                }
            }
            () = connection.receive() => {}
        }
        let events = connection.flush().await;
        if let Err(why) = hand_out(&mut connection, events, &mut waiting).await {
            // Recorded before the callers are told, so one woken by its failed call sees why.
            *lock(&ended) = Some(why.clone());
            for (_, answer) in waiting.answers.drain() {
                let _ = answer.send(Err(why.clone()));
            }
            return; // dropping the stream senders ends every stream: their readers see the loss
        }
    }
}

/// `first` and what is queued behind it, in order, at most `max` in all (answers and output get
/// their turn between batches). Each is taken from the queue only when the one before it was
/// handled, so none is taken and left (one was, and typed bytes went missing from a paste).
fn queued_batch<T>(first: T, inbox: &mut mpsc::Receiver<T>, max: usize) -> impl Iterator<Item = T> + '_ {
    std::iter::once(first).chain(std::iter::from_fn(|| inbox.try_recv().ok()).take(max.saturating_sub(1)))
}

/// A caller's request, handed to the client.
fn take(connection: &mut RelayConnection, command: Command, waiting: &mut Waiting) {
    let now = monotonic_ms();
    let client = connection.client();
    match command {
        // A detach names the stream as its reader knows it: the client knows where it is now.
        Command::Call { request: Request::Detach { stream }, .. } => {
            waiting.streams.remove(&stream);
            client.detach(stream, now);
        }
        Command::Call { request, payload, answer: None } => {
            let _ = client.send(&request, payload, now);
        }
        Command::Call { request, payload, answer: Some(answer) } => call(client, request, payload, answer, waiting),
        Command::Calls { calls } => {
            for (request, payload, answer) in calls {
                call(client, request, payload, answer, waiting);
            }
        }
        Command::Open { request, events, answer } => match client.open(&request, now) {
            Ok(handle) => {
                waiting.streams.insert(handle, events);
                waiting.answers.insert(u64::from(handle), answer);
            }
            Err(e) => {
                let _ = answer.send(Err(e.to_string()));
            }
        },
        Command::Input { stream, bytes } => {
            if let Err(e) = client.write_input(stream, &bytes, now) {
                eprint!("\r\n[tether: {} bytes of input not sent: {e}]\r\n", bytes.len());
            }
        }
        Command::Close { .. } => {}
    }
}

fn call(client: &mut Client, request: Request, payload: Vec<u8>, answer: AnswerTo, waiting: &mut Waiting) {
    match client.call(&request, payload, monotonic_ms()) {
        Ok(call) => {
            waiting.answers.insert(call, answer);
        }
        Err(e) => {
            let _ = answer.send(Err(e.to_string()));
        }
    }
}

/// Route answers to their callers and stream bytes to their readers (crediting what they took),
/// then send what that produced. `Err(why)` once the link is over for good.
async fn hand_out(
    connection: &mut RelayConnection,
    mut events: Vec<ClientEvent>,
    waiting: &mut Waiting,
) -> Result<(), String> {
    while !events.is_empty() {
        for event in events {
            hand_one(connection, event, waiting).await?;
        }
        // Credit given above goes out now (a failed send may say more).
        events = connection.flush().await;
    }
    Ok(())
}

async fn hand_one(connection: &mut RelayConnection, event: ClientEvent, waiting: &mut Waiting) -> Result<(), String> {
    match event {
        ClientEvent::Answer { call, answer } => {
            if let Some(to) = waiting.answers.remove(&call) {
                let _ = to.send(answer.map_err(|Refused { message, .. }| message));
            }
        }
        ClientEvent::Stream { handle, event } => {
            let Some(reader) = waiting.streams.get(&handle).cloned() else { return Ok(()) };
            match event {
                StreamEvent::Data { bytes, .. } => {
                    let len = bytes.len() as u64;
                    // Waiting here is the back-pressure: no credit until taken.
                    let _ = reader.send(OutputEvent::Data { bytes }).await;
                    connection.client().consumed(handle, len, monotonic_ms());
                }
                StreamEvent::Skipped { from, to } => {
                    let _ = reader.send(OutputEvent::Skipped { from, to }).await;
                }
                StreamEvent::Eof => {
                    let _ = reader.send(OutputEvent::Eof).await;
                    waiting.streams.remove(&handle);
                }
                // It ends without eof: its reader sees the loss.
                StreamEvent::Lost { .. } => {
                    waiting.streams.remove(&handle);
                }
                StreamEvent::Resumed { .. } | StreamEvent::Writable => {}
            }
        }
        ClientEvent::Disconnected { why, redial_in_ms: Some(ms) } => {
            eprint!("\r\n[tether: lost the connection to the host ({why}); reconnecting in {ms} ms]\r\n");
        }
        ClientEvent::Disconnected { why, redial_in_ms: None } => {
            if !waiting.streams.is_empty() {
                eprint!("\r\n[tether: {why}]\r\n");
            }
            return Err(why);
        }
        ClientEvent::Connected { generation } if generation > 1 => eprint!("\r\n[tether: reconnected]\r\n"),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_from_the_queue_only_what_it_hands_over() {
        let (tx, mut inbox) = mpsc::channel(16);
        for n in 1..=10 {
            tx.try_send(n).expect("room");
        }
        // A full batch: the command after it stays queued for the next one.
        assert_eq!(queued_batch(0, &mut inbox, 4).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(queued_batch(100, &mut inbox, 4).collect::<Vec<_>>(), vec![100, 4, 5, 6]);
        // A short queue ends a batch early; nothing went missing on the way.
        assert_eq!(queued_batch(200, &mut inbox, 64).collect::<Vec<_>>(), vec![200, 7, 8, 9, 10]);
        assert_eq!(queued_batch(300, &mut inbox, 64).collect::<Vec<_>>(), vec![300]);
        // A batch left part way (a `close`) leaves the rest queued.
        for n in 11..=13 {
            tx.try_send(n).expect("room");
        }
        assert_eq!(queued_batch(400, &mut inbox, 64).take(2).collect::<Vec<_>>(), vec![400, 11]);
        assert_eq!(inbox.try_recv(), Ok(12));
    }
}
