//! A WebRTC data channel beside the relay, natively (webrtc-rs): one peer connection and its one
//! data channel, moving the sans-IO `Connection`'s sealed bytes (transmits for `Path::Direct` out,
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
//! - Every UDP socket asks for a receive buffer of `UDP_RECEIVE_BUFFER_BYTES` (the kernel caps it
//!   at `net.core.rmem_max`): a fast channel's bursts overflow the usual 208 KiB, and each
//!   datagram dropped there costs SCTP a retransmission and its congestion window.

use std::future::Future;
use std::pin::Pin;
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
use webrtc::runtime::{AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime};

/// The label of Tether's data channel.
const LABEL: &str = "tether";
/// Largest message put on the data channel: what every WebRTC stack takes.
const MESSAGE_BYTES: usize = 16 * 1024; // 16 KiB
/// ICE checks the path every `ICE_KEEPALIVE`; with no answer for `ICE_DISCONNECTED` the path is
/// taken for dead (a blocked network, a peer gone), which is how a channel's death is noticed
/// within seconds (the connection's own silence timer is the slower backstop).
const ICE_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(1);
const ICE_DISCONNECTED: std::time::Duration = std::time::Duration::from_secs(3);
const ICE_FAILED: std::time::Duration = std::time::Duration::from_secs(6);

/// What each UDP socket asks the kernel to buffer on receipt. With the default (208 KiB), a 200 MB
/// flood here lost thousands of datagrams and ran at 29 MB/s; with room, none and 69 MB/s.
const UDP_RECEIVE_BUFFER_BYTES: libc::c_int = 4 << 20; // 4 MiB

/// Bytes handed to the channel and not yet acknowledged by the peer before a send waits. Small
/// enough that a burst fits a TURN server's socket buffer (with 1 MiB, a flood through coturn lost
/// enough datagrams for SCTP to stall past `DIRECT_SILENCE_MS`), and still ~100 MB/s here.
const SEND_BUFFER_BYTES: usize = 256 * 1024; // 256 KiB

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
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
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
    let runtime: Arc<dyn Runtime> = Arc::new(RoomyUdp(webrtc::runtime::default_runtime().ok_or("webrtc: no runtime")?));
    let mut last_error = String::new();
    for mdns in [MulticastDnsMode::QueryOnly, MulticastDnsMode::Disabled] {
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(mdns)
            .with_ice_timeouts(Some(ICE_DISCONNECTED), Some(ICE_FAILED), Some(ICE_KEEPALIVE))
            .build();
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
            match describe(pc, attempt, report, notes).await? {
                Some(channel) => channel,
                None => loop {
                    if let Note::Channel(channel) = next_note(notes).await? {
                        break channel;
                    }
                },
            }
        }
    };
    carry(pc, attempt, channel, report, notes, out).await
}

/// Once ICE gathering is complete, report the local description (candidates included). A data
/// channel that came meanwhile is kept, not dropped.
async fn describe(
    pc: &impl PeerConnection,
    attempt: u32,
    report: &Report,
    notes: &mut mpsc::UnboundedReceiver<Note>,
) -> Result<Option<Arc<dyn DataChannel>>, String> {
    let mut channel = None;
    loop {
        match next_note(notes).await? {
            Note::Gathered => break,
            Note::Channel(early) => channel = Some(early),
            Note::State(_) => {}
        }
    }
    let sdp = pc.local_description().await.ok_or("webrtc: no local description")?.sdp;
    report(DirectEvent::Description { attempt, sdp });
    Ok(channel)
}

/// The next note; a failed or closed peer connection ends the attempt.
async fn next_note(notes: &mut mpsc::UnboundedReceiver<Note>) -> Result<Note, String> {
    match notes.recv().await {
        Some(Note::State(RTCPeerConnectionState::Failed)) => Err("ICE failed: no path to the peer".into()),
        Some(Note::State(RTCPeerConnectionState::Disconnected)) => {
            Err(format!("the peer stopped answering ICE consent checks for {} s", ICE_DISCONNECTED.as_secs()))
        }
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

/// webrtc-rs's own runtime, except that each UDP socket it binds gets a roomier receive buffer.
#[derive(Debug)]
struct RoomyUdp(Arc<dyn Runtime>);

impl Runtime for RoomyUdp {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }
    fn spawn_reactor(&self, pool: usize, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.0.spawn_reactor(pool, future)
    }
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        use std::os::fd::AsRawFd;
        let size = UDP_RECEIVE_BUFFER_BYTES;
        // SAFETY: setsockopt(2) on a socket we own, with a pointer to a c_int and its size. A
        // refusal leaves the default buffer, which works, only slower.
        unsafe {
            let size_ptr = (&size as *const libc::c_int).cast();
            let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, size_ptr, len);
        }
        self.0.wrap_udp_socket(socket)
    }
    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }
    fn connect_tcp<'a>(
        &'a self,
        remote: std::net::SocketAddr,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.0.connect_tcp(remote)
    }
    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send + 'a>> {
        self.0.resolve_host(host)
    }
    fn now(&self) -> std::time::Instant {
        self.0.now()
    }
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }
    fn interval(&self, period: std::time::Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }
    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }
    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }
    fn name(&self) -> &'static str {
        self.0.name()
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
