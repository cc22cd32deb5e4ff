//! A CLI client that reaches a host through a relay: WebSocket to the relay, then the sans-IO
//! `Connection` (SRP client, secure channel) end to end with the host. The relay sees only
//! ciphertext; the same requests as on the local socket travel inside.

use futures_util::{SinkExt, StreamExt};
use tether_protocol::api::{Request, Response};
use tether_protocol::connection::{Connection, Event, Input, Output};
use tether_protocol::handshake::PASSWORD_IDENTITY;
use tether_protocol::handshake::{HandshakeEntropy, HANDSHAKE_ENTROPY_BYTES};
use tether_protocol::identity::{HostAddress, Link};
use tokio_tungstenite::tungstenite::Message;

use crate::ipc::cmd_frame;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Remote {
    ws: Ws,
    conn: Connection,
    next_id: u64,
}

impl Remote {
    /// Connect through `link`: with an invite's secret, or else with the host password.
    pub async fn open(link: &Link) -> Result<Remote, String> {
        match link {
            Link::Invite(invite) => {
                Remote::connect(&invite.address(), &invite.identity(), invite.secret.as_bytes()).await
            }
            Link::Address(address) => {
                let password = crate::password::for_host(&address.host_id)?;
                Remote::connect(address, PASSWORD_IDENTITY, password.as_bytes()).await
            }
        }
    }

    /// Connect and authenticate; fails with "authentication failed: …" on a wrong secret.
    pub async fn connect(address: &HostAddress, identity: &str, secret: &[u8]) -> Result<Remote, String> {
        let url = address.client_ws_url()?;
        // disable_nagle: see relay_link — small interactive frames must not wait for ACKs.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
            .await
            .map_err(|e| format!("cannot reach the relay at {}: {e}", address.relay))?;
        let mut entropy = [0u8; HANDSHAKE_ENTROPY_BYTES];
        crate::random_bytes(&mut entropy)?;
        let conn = Connection::client(&address.host_id, identity, secret, HandshakeEntropy(entropy), crate::now_ms());
        let mut remote = Remote { ws, conn, next_id: 1 };
        loop {
            for event in remote.pump().await? {
                if let Event::Authenticated { .. } = event {
                    return Ok(remote);
                }
            }
        }
    }

    /// Send what the connection has queued, then read one message from the relay and feed it.
    async fn pump(&mut self) -> Result<Vec<Event>, String> {
        let mut events = self.flush().await?;
        let message = self.ws.next().await;
        let result = self.take(message);
        events.extend(self.flush().await?);
        result.map(|()| events)
    }

    /// Feed one message from the relay to the connection. A close or a broken socket becomes the
    /// error to show: the connection's own (a tampered frame, a failed handshake) when it has
    /// one, else the reason the relay or host gave.
    fn take(&mut self, message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Result<(), String> {
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                self.conn.handle_input(Input::Bytes(&bytes), crate::now_ms()).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                let own = self.conn.error().map(|e| e.to_string());
                Err(own.or(reason).unwrap_or_else(|| "the relay closed the connection".into()))
            }
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(format!("relay connection failed: {e}")),
            None => Err("the relay closed the connection".into()),
        }
    }

    async fn flush(&mut self) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        while let Some(output) = self.conn.poll_output() {
            match output {
                Output::Transmit(bytes) => {
                    self.ws.send(Message::Binary(bytes.into())).await.map_err(|e| format!("relay send: {e}"))?
                }
                Output::Event(event) => events.push(event),
            }
        }
        Ok(events)
    }

    /// Run a command on the host: its stdout and stderr to ours, our stdin to it. Returns its
    /// exit code (128 + N for signal N); `None` when `timeout` ran out (the command was killed).
    /// Ctrl+C is passed on as SIGINT; a second Ctrl+C gives up at once.
    pub async fn exec(
        &mut self,
        command: Vec<String>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<i32>, String> {
        use std::io::Write;
        use tether_protocol::api::{exec_stderr, exec_stdout};
        use tether_protocol::frame::{Control, Frame, Header};

        let id = self.next_id;
        self.next_id += 1;
        let (out_stream, err_stream) = (exec_stdout(id), exec_stderr(id));
        self.conn
            .send_frame(&cmd_frame(id, &Request::Exec { command, cwd: None }, Vec::new()))
            .map_err(|e| e.to_string())?;
        self.flush().await?;

        // stdin on a thread (blocking reads), in chunks no bigger than a frame's payload.
        let (stdin_tx, mut stdin_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = vec![0u8; tether_protocol::stream::MAX_DATA_CHUNK];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || stdin_tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
            // Dropping the sender tells the loop: end of input.
        });
        let mut stdin_open = true;
        let mut stdin_pending: Vec<u8> = Vec::new();
        let mut stdin_seq = 0u64;
        let mut interrupts = 0;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        loop {
            let mut events = Vec::new();
            tokio::select! {
                message = self.ws.next() => self.take(message)?,
                chunk = stdin_rx.recv(), if stdin_open && stdin_pending.is_empty() => match chunk {
                    Some(bytes) => stdin_pending = bytes,
                    None => {
                        stdin_open = false;
                        let eof = Frame::bare(Header::Control(Control::Eof { stream: out_stream, end: stdin_seq }));
                        self.conn.send_frame(&eof).map_err(|e| e.to_string())?;
                    }
                },
                _ = tokio::signal::ctrl_c() => {
                    interrupts += 1;
                    if interrupts > 1 {
                        return Ok(Some(130));
                    }
                    let signal = Request::Signal { exec: id, signal: libc::SIGINT };
                    let signal_id = self.next_id;
                    self.next_id += 1;
                    self.conn.send_frame(&cmd_frame(signal_id, &signal, Vec::new())).map_err(|e| e.to_string())?;
                }
                _ = sleep_until(deadline) => {
                    let kill = Request::Signal { exec: id, signal: libc::SIGKILL };
                    let kill_id = self.next_id;
                    self.next_id += 1;
                    let _ = self.conn.send_frame(&cmd_frame(kill_id, &kill, Vec::new()));
                    let _ = self.flush().await;
                    return Ok(None);
                }
            }
            if !stdin_pending.is_empty() {
                let sent = self.conn.send_data(out_stream, stdin_seq, &stdin_pending).map_err(|e| e.to_string())?;
                stdin_seq += sent as u64;
                stdin_pending.drain(..sent);
            }
            events.extend(self.flush().await?);
            for event in events {
                match event {
                    Event::Data { stream, bytes, .. } => {
                        let written = if stream == err_stream {
                            stderr.write_all(&bytes).and_then(|_| stderr.flush())
                        } else {
                            stdout.write_all(&bytes).and_then(|_| stdout.flush())
                        };
                        written.map_err(|e| format!("writing output: {e}"))?;
                        // Credit the host only for what we have really passed on.
                        self.conn.consumed(stream, bytes.len() as u64).map_err(|e| e.to_string())?;
                    }
                    Event::Cmd { id: got, body, .. } if got == id => {
                        return match serde_json::from_value::<Response>(body) {
                            Ok(Response::Exited { code }) => Ok(Some(code)),
                            Ok(Response::Error { message, .. }) => Err(message),
                            Ok(other) => Err(format!("unexpected answer {other:?}")),
                            Err(e) => Err(format!("unreadable answer from the host: {e}")),
                        };
                    }
                    _ => {}
                }
            }
            self.flush().await?;
        }
    }

    /// End in order, so the host sees a close rather than a cut.
    pub async fn close(mut self) {
        if self.conn.close("done").is_ok() {
            let _ = self.flush().await;
        }
        let _ = self.ws.close(None).await;
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A relay connection shared by several requests and streams at once (what `attach -H` needs:
/// output streaming while keystrokes and resizes go the other way). One task owns the socket and
/// the `Connection`; callers talk to it through channels, as with the local daemon's client.
pub struct RemoteClient {
    commands: tokio::sync::mpsc::Sender<ActorCommand>,
    /// Why the connection ended, once it has (e.g. "access revoked by the host").
    ended: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

type CallReply = tokio::sync::oneshot::Sender<Result<(Response, Vec<u8>), String>>;

enum ActorCommand {
    Call { request: Request, payload: Vec<u8>, reply: Option<CallReply> },
    Open { request: Request, events: tokio::sync::mpsc::Sender<crate::client::StreamEvent>, reply: CallReply },
    Close { done: tokio::sync::oneshot::Sender<()> },
}

impl RemoteClient {
    pub fn spawn(remote: Remote) -> RemoteClient {
        let (commands, inbox) = tokio::sync::mpsc::channel(64);
        let ended = std::sync::Arc::default();
        tokio::spawn(remote.serve(inbox, std::sync::Arc::clone(&ended)));
        RemoteClient { commands, ended }
    }

    /// Why the connection was lost, for a stream that ended without `eof`.
    pub fn lost_reason(&self) -> String {
        let ended = self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ended.map_or_else(lost, |reason| format!("lost the connection to the host: {reason}"))
    }

    pub async fn call(&self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = ActorCommand::Call { request: request.clone(), payload, reply: Some(reply) };
        self.commands.send(command).await.map_err(|_| lost())?;
        answer.await.map_err(|_| lost())?
    }

    pub async fn send(&self, request: &Request, payload: Vec<u8>) -> Result<(), String> {
        let command = ActorCommand::Call { request: request.clone(), payload, reply: None };
        self.commands.send(command).await.map_err(|_| lost())
    }

    pub async fn open_stream(&self, request: &Request) -> Result<crate::client::OpenStream, String> {
        let (events_tx, events) = tokio::sync::mpsc::channel(16);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let command = ActorCommand::Open { request: request.clone(), events: events_tx, reply };
        self.commands.send(command).await.map_err(|_| lost())?;
        match answer.await.map_err(|_| lost())?? {
            (Response::Streaming { session, stream, .. }, _) => {
                Ok(crate::client::OpenStream { session, stream, events })
            }
            (other, _) => Err(format!("unexpected answer {other:?}")),
        }
    }

    pub async fn close(self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.commands.send(ActorCommand::Close { done }).await.is_ok() {
            let _ = closed.await;
        }
    }
}

fn lost() -> String {
    "lost the connection to the host".to_owned()
}

impl Remote {
    /// The actor: requests out, answers and stream data in, until closed or the link fails.
    async fn serve(
        mut self,
        mut inbox: tokio::sync::mpsc::Receiver<ActorCommand>,
        ended: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    ) {
        use crate::client::StreamEvent;
        use std::collections::HashMap;
        let mut replies: HashMap<u64, CallReply> = HashMap::new();
        let mut streams: HashMap<u32, tokio::sync::mpsc::Sender<StreamEvent>> = HashMap::new();
        let result: Result<(), String> = async {
            loop {
                let mut events = Vec::new();
                tokio::select! {
                    command = inbox.recv() => {
                        let Some(command) = command else { return Ok(()) };
                        let id = self.next_id;
                        self.next_id += 1;
                        let (request, payload) = match command {
                            ActorCommand::Call { request, payload, reply } => {
                                if let Some(reply) = reply {
                                    replies.insert(id, reply);
                                }
                                (request, payload)
                            }
                            ActorCommand::Open { request, events, reply } => {
                                // Registered before asking, so no early data can miss it.
                                streams.insert(id as u32, events);
                                replies.insert(id, reply);
                                (request, Vec::new())
                            }
                            ActorCommand::Close { done } => {
                                let _ = self.conn.close("done");
                                let _ = self.flush().await;
                                let _ = self.ws.close(None).await;
                                let _ = done.send(());
                                return Ok(());
                            }
                        };
                        self.conn.send_frame(&cmd_frame(id, &request, payload)).map_err(|e| e.to_string())?;
                    }
                    message = self.ws.next() => self.take(message)?,
                }
                events.extend(self.flush().await?);
                for event in events {
                    match event {
                        Event::Cmd { id, body, payload } => {
                            let Some(reply) = replies.remove(&id) else { continue };
                            let answer = match serde_json::from_value::<Response>(body) {
                                Ok(Response::Error { message, .. }) => Err(message),
                                Ok(response) => Ok((response, payload)),
                                Err(e) => Err(format!("unreadable answer from the host: {e}")),
                            };
                            if answer.is_err() {
                                streams.remove(&(id as u32));
                            }
                            let _ = reply.send(answer);
                        }
                        Event::Data { stream, bytes, .. } => {
                            let len = bytes.len() as u64;
                            if let Some(events) = streams.get(&stream) {
                                // Waiting here is the back-pressure: no credit until taken.
                                let _ = events.send(StreamEvent::Data { bytes }).await;
                            }
                            self.conn.consumed(stream, len).map_err(|e| e.to_string())?;
                        }
                        Event::Eof { stream, .. } => {
                            if let Some(events) = streams.remove(&stream) {
                                let _ = events.send(StreamEvent::Eof).await;
                            }
                        }
                        _ => {}
                    }
                }
                self.flush().await?;
            }
        }
        .await;
        if let Err(message) = result {
            *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.clone());
            for (_, reply) in replies.drain() {
                let _ = reply.send(Err(message.clone()));
            }
        }
        // Dropping the stream senders ends every stream: their readers see the loss.
    }
}
