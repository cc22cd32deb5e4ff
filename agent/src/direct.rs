//! A WebRTC data channel beside the relay, natively (webrtc-rs): one peer connection and its one
//! data channel, moving the sans-IO `Connection`'s sealed bytes (`drain_direct` out,
//! `Input::Direct` in). The client offers (`DirectLink::offer`), the host answers
//! (`DirectLink::answer`); what to do with what it reports (`DirectEvent`, in order) is the
//! caller's, and so is signalling, which travels in the secure channel
//! (`tether_protocol::signal`).
//!
//! Invariants:
//! - Sends are paced by the data channel's own buffer (`SEND_BUFFER_BYTES`, webrtc-rs's
//!   equivalent of `bufferedAmount`): a writer waits for room rather than piling bytes up.
//! - A message is at most `MESSAGE_BYTES`; sealed frames are cut to fit and put together again by
//!   the receiving `Connection` (the channel is reliable and ordered).
//! - Dropping the `DirectLink` closes the peer connection; its last event is `Closed`.

use std::sync::Arc;

use bytes::BytesMut;
use tether_protocol::signal::{IceServer, Route};
pub use tether_protocol::upgrade::DirectEvent;
use tokio::sync::{mpsc, oneshot};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCIceServer, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

/// The label of Tether's data channel.
const LABEL: &str = "tether";
/// Largest message put on the data channel: what every WebRTC stack takes.
const MESSAGE_BYTES: usize = 16 * 1024; // 16 KiB
/// Bytes handed to the channel and not yet acknowledged by the peer before a send waits
/// (Chromium keeps up to 16 MiB; 1 MiB is the SCTP receive window, enough to fill the path).
const SEND_BUFFER_BYTES: usize = 1 << 20; // 1 MiB

/// Where an attempt reports (a channel of the caller's, wrapped as it likes).
pub type Report = Arc<dyn Fn(DirectEvent) + Send + Sync>;

/// One attempt at a data channel, running on its own task until dropped.
pub struct DirectLink {
    pub attempt: u32,
    out: mpsc::UnboundedSender<Vec<u8>>,
    answer: Option<oneshot::Sender<String>>,
    _stop: oneshot::Sender<()>,
}

enum Side {
    Offer { answer: oneshot::Receiver<String> },
    Answer { offer: String },
}

impl DirectLink {
    /// Client: make a peer connection and a data channel, and report the offer.
    pub fn offer(attempt: u32, ice_servers: &[IceServer], report: Report) -> DirectLink {
        let (answer_tx, answer) = oneshot::channel();
        let mut link = DirectLink::start(attempt, ice_servers, Side::Offer { answer }, report);
        link.answer = Some(answer_tx);
        link
    }

    /// Host: answer the client's offer, and report the answer.
    pub fn answer(attempt: u32, ice_servers: &[IceServer], offer: String, report: Report) -> DirectLink {
        DirectLink::start(attempt, ice_servers, Side::Answer { offer }, report)
    }

    /// Client: the host's answer came.
    pub fn answered(&mut self, sdp: String) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(sdp);
        }
    }

    /// Bytes for the data channel, in order (once `Open` was reported).
    pub fn send(&self, bytes: Vec<u8>) {
        let _ = self.out.send(bytes);
    }

    fn start(attempt: u32, ice_servers: &[IceServer], side: Side, report: Report) -> DirectLink {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let servers = ice_servers
            .iter()
            .map(|s| RTCIceServer { urls: s.urls.clone(), username: s.username.clone(), credential: s.credential.clone() })
            .collect();
        tokio::spawn(async move {
            let why = match run(attempt, servers, side, &report, out_rx, stopped).await {
                Ok(why) | Err(why) => why,
            };
            report(DirectEvent::Closed { attempt, why });
        });
        DirectLink { attempt, out, answer: None, _stop: stop }
    }
}

/// What the peer connection's callbacks tell the attempt.
enum Note {
    Gathered,
    State(RTCPeerConnectionState),
    Channel(Arc<dyn DataChannel>),
}

struct Handler(mpsc::UnboundedSender<Note>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(Note::Gathered);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(Note::State(state));
    }
    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.0.send(Note::Channel(channel));
    }
}

async fn run(
    attempt: u32,
    servers: Vec<RTCIceServer>,
    side: Side,
    report: &Report,
    out: mpsc::UnboundedReceiver<Vec<u8>>,
    mut stopped: oneshot::Receiver<()>,
) -> Result<String, String> {
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let pc = build(servers, notes_tx).await?;
    let result = tokio::select! {
        result = negotiate_and_carry(&pc, attempt, side, report, &mut notes, out) => result,
        _ = &mut stopped => Ok("closed on this side".to_owned()),
    };
    let _ = pc.close().await;
    result
}

/// A peer connection on every interface. mDNS (to resolve the `.local` names browsers give
/// their host candidates) is used where the network allows it, else left out.
async fn build(servers: Vec<RTCIceServer>, notes: mpsc::UnboundedSender<Note>) -> Result<impl PeerConnection, String> {
    use rtc::ice::mdns::MulticastDnsMode;
    let runtime = webrtc::runtime::default_runtime().ok_or("webrtc: no async runtime")?;
    let mut last_error = String::new();
    for mdns in [MulticastDnsMode::QueryOnly, MulticastDnsMode::Disabled] {
        let settings = SettingEngineBuilder::new().with_multicast_dns_mode(mdns).build();
        let built = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().with_ice_servers(servers.clone()).build())
            .with_setting_engine(settings)
            .with_handler(Arc::new(Handler(notes.clone())))
            .with_runtime(runtime.clone())
            .with_udp_addrs(vec!["0.0.0.0:0".to_owned()])
            .with_data_channel_send_buffer_limit(SEND_BUFFER_BYTES)
            .build()
            .await;
        match built {
            Ok(pc) => return Ok(pc),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(format!("webrtc: cannot make a peer connection: {last_error}"))
}

async fn negotiate_and_carry(
    pc: &impl PeerConnection,
    attempt: u32,
    side: Side,
    report: &Report,
    notes: &mut mpsc::UnboundedReceiver<Note>,
    out: mpsc::UnboundedReceiver<Vec<u8>>,
) -> Result<String, String> {
    let failed = |what: &str, e: webrtc::error::Error| format!("webrtc: {what}: {e}");
    let channel = match side {
        Side::Offer { answer } => {
            let channel = pc.create_data_channel(LABEL, None).await.map_err(|e| failed("data channel", e))?;
            let offer = pc.create_offer(None).await.map_err(|e| failed("offer", e))?;
            pc.set_local_description(offer).await.map_err(|e| failed("offer", e))?;
            describe(pc, attempt, report, notes).await?;
            let sdp = answer.await.map_err(|_| "no answer".to_owned())?;
            let answer = RTCSessionDescription::answer(sdp).map_err(|e| failed("the host's answer", e))?;
            pc.set_remote_description(answer).await.map_err(|e| failed("the host's answer", e))?;
            channel
        }
        Side::Answer { offer } => {
            let offer = RTCSessionDescription::offer(offer).map_err(|e| failed("the client's offer", e))?;
            pc.set_remote_description(offer).await.map_err(|e| failed("the client's offer", e))?;
            let answer = pc.create_answer(None).await.map_err(|e| failed("answer", e))?;
            pc.set_local_description(answer).await.map_err(|e| failed("answer", e))?;
            describe(pc, attempt, report, notes).await?;
            loop {
                match next_note(notes).await? {
                    Note::Channel(channel) => break channel,
                    Note::Gathered => {}
                    Note::State(_) => {}
                }
            }
        }
    };
    carry(pc, attempt, channel, report, notes, out).await
}

/// Once ICE gathering is complete, report the local description (candidates included).
async fn describe(
    pc: &impl PeerConnection,
    attempt: u32,
    report: &Report,
    notes: &mut mpsc::UnboundedReceiver<Note>,
) -> Result<(), String> {
    while !matches!(next_note(notes).await?, Note::Gathered) {}
    let sdp = pc.local_description().await.ok_or("webrtc: no local description")?.sdp;
    report(DirectEvent::Description { attempt, sdp });
    Ok(())
}

/// The next note; a failed or closed peer connection ends the attempt.
async fn next_note(notes: &mut mpsc::UnboundedReceiver<Note>) -> Result<Note, String> {
    match notes.recv().await {
        Some(Note::State(RTCPeerConnectionState::Failed)) => Err("ICE failed: no path to the peer".into()),
        Some(Note::State(RTCPeerConnectionState::Closed)) | None => Err("the peer connection closed".into()),
        Some(note) => Ok(note),
    }
}

/// Carry bytes both ways until the channel or the peer connection ends.
async fn carry(
    pc: &impl PeerConnection,
    attempt: u32,
    channel: Arc<dyn DataChannel>,
    report: &Report,
    notes: &mut mpsc::UnboundedReceiver<Note>,
    mut out: mpsc::UnboundedReceiver<Vec<u8>>,
) -> Result<String, String> {
    // Writes wait for room in the channel's buffer; on their own task, so that reading never
    // waits behind them (two ends both waiting to write would otherwise stall each other).
    let writer = channel.clone();
    let writing = tokio::spawn(async move {
        while let Some(bytes) = out.recv().await {
            for message in bytes.chunks(MESSAGE_BYTES) {
                writer.send(BytesMut::from(message)).await.map_err(|e| format!("data channel send: {e}"))?;
            }
        }
        Ok::<(), String>(())
    });
    let _stop_writing = AbortOnDrop(writing.abort_handle());
    loop {
        tokio::select! {
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnOpen) => {
                    report(DirectEvent::Open { attempt, route: route_of(pc).await });
                }
                Some(DataChannelEvent::OnMessage(message)) => {
                    report(DirectEvent::Bytes { attempt, bytes: message.data.to_vec() });
                }
                Some(DataChannelEvent::OnClose) | None => return Ok("the data channel closed".into()),
                Some(_) => {}
            },
            note = next_note(notes) => { note?; }
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which route ICE chose: TURN if the selected pair has a relayed candidate on either end.
async fn route_of(pc: &impl PeerConnection) -> Route {
    let Some(sctp) = pc.sctp().await else { return Route::Direct };
    match sctp.transport().ice_transport().get_selected_candidate_pair().await {
        Ok(Some(pair)) => Route::of_pair(&pair.local().typ.to_string(), &pair.remote().typ.to_string()),
        _ => Route::Direct,
    }
}
