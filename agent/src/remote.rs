//! A CLI client that reaches a host through a relay: WebSocket to the relay, then the sans-IO
//! `Connection` (SRP client, secure channel) end to end with the host. The relay sees only
//! ciphertext; the same requests as on the local socket travel inside.

use futures_util::{SinkExt, StreamExt};
use tether_protocol::api::{Request, Response};
use tether_protocol::connection::{Connection, Event, Input, Output};
use tether_protocol::handshake::{HandshakeEntropy, HANDSHAKE_ENTROPY_BYTES};
use tether_protocol::identity::Invite;
use tokio_tungstenite::tungstenite::Message;

use crate::ipc::cmd_frame;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Remote {
    ws: Ws,
    conn: Connection,
    next_id: u64,
}

impl Remote {
    /// Connect and authenticate; fails with "authentication failed: …" on a wrong secret.
    pub async fn connect(invite: &Invite) -> Result<Remote, String> {
        let url = invite.client_ws_url();
        if url.starts_with("wss://") {
            return Err("TLS relays are not supported by this build yet".into());
        }
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("cannot reach the relay at {}: {e}", invite.relay))?;
        let mut entropy = [0u8; HANDSHAKE_ENTROPY_BYTES];
        crate::random_bytes(&mut entropy)?;
        let conn = Connection::client(
            &invite.host_id,
            &invite.identity(),
            invite.secret.as_bytes(),
            HandshakeEntropy(entropy),
            crate::now_ms(),
        );
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
        let message = match self.ws.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => return Err(format!("relay connection failed: {e}")),
            None => return Err("the relay closed the connection".into()),
        };
        match message {
            Message::Binary(bytes) => {
                let result = self.conn.handle_input(Input::Bytes(&bytes), crate::now_ms());
                events.extend(self.flush().await?);
                result.map_err(|e| e.to_string())?;
            }
            Message::Close(frame) => {
                // A refusal from the relay or host comes as the close reason.
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                let error = self.conn.error().map(|e| e.to_string());
                return Err(error.unwrap_or(if reason.is_empty() { "the relay closed the connection".into() } else { reason }));
            }
            _ => {}
        }
        Ok(events)
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

    /// One request, one response (error responses become `Err`).
    pub async fn call(&mut self, request: &Request, payload: Vec<u8>) -> Result<(Response, Vec<u8>), String> {
        let id = self.next_id;
        self.next_id += 1;
        self.conn.send_frame(&cmd_frame(id, request, payload)).map_err(|e| e.to_string())?;
        loop {
            for event in self.pump().await? {
                if let Event::Cmd { id: got, body, payload } = event {
                    if got != id {
                        continue;
                    }
                    let response: Response =
                        serde_json::from_value(body).map_err(|e| format!("unreadable answer from the host: {e}"))?;
                    return match response {
                        Response::Error { message, .. } => Err(message),
                        response => Ok((response, payload)),
                    };
                }
            }
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
