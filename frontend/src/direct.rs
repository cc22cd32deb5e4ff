//! A WebRTC data channel beside the relay, in the page: one `RTCPeerConnection` and its one data
//! channel, moving the `Connection`'s sealed bytes (the connection itself is in the link worker;
//! what arrives goes there as the channel gave it, without a copy). It offers (the host
//! answers), reports what happens (`DirectNews`, in order) and does what `link` passes on from
//! the protocol crate's `Upgrade`; no protocol rule lives here.
//!
//! Invariants:
//! - Sends never go blind: while the channel's `bufferedAmount` is over `HIGH_WATER_BYTES`,
//!   bytes wait here in order, and go on when it falls to `LOW_WATER_BYTES`
//!   (`bufferedamountlow`).
//! - A message is at most `MESSAGE_BYTES` (what every WebRTC stack takes); the receiving
//!   `Connection` puts sealed frames back together (the channel is reliable and ordered).
//! - Dropping the `PeerAttempt` closes the peer connection and silences its callbacks.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use tether_protocol::signal::{IceServer, Route};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::link::messages::DirectNews;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelType, RtcIceGatheringState, RtcIceServer,
    RtcPeerConnection, RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

const LABEL: &str = "tether";
const MESSAGE_BYTES: usize = 16 * 1024; // 16 KiB
/// Stop handing the channel bytes above this much buffered...
const HIGH_WATER_BYTES: u32 = 1 << 20; // 1 MiB
/// ...and go on once it is down to this.
const LOW_WATER_BYTES: u32 = 256 * 1024; // 256 KiB

/// Hears what happens, with the bytes that came (`DirectNews::Bytes`).
pub type Report = Rc<dyn Fn(DirectNews, Option<js_sys::ArrayBuffer>)>;

/// One attempt at a data channel.
pub struct PeerAttempt {
    pub attempt: u32,
    pc: RtcPeerConnection,
    channel: RtcDataChannel,
    /// Bytes waiting for room in the channel's buffer, in order.
    waiting: Rc<RefCell<VecDeque<Vec<u8>>>>,
    report: Report,
    _callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Drop for PeerAttempt {
    fn drop(&mut self) {
        for clear in [
            RtcDataChannel::set_onopen,
            RtcDataChannel::set_onmessage,
            RtcDataChannel::set_onclose,
            RtcDataChannel::set_onbufferedamountlow,
        ] {
            clear(&self.channel, None);
        }
        self.pc.set_onicegatheringstatechange(None);
        self.pc.set_onconnectionstatechange(None);
        self.channel.close();
        self.pc.close();
    }
}

impl PeerAttempt {
    /// Make a peer connection and a data channel, and report the offer once ICE has gathered.
    pub fn offer(attempt: u32, ice_servers: &[IceServer], report: Report) -> Result<PeerAttempt, String> {
        let pc = RtcPeerConnection::new_with_configuration(&configuration(ice_servers))
            .map_err(|e| format!("webrtc: {e:?}"))?;
        let channel = pc.create_data_channel(LABEL);
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_buffered_amount_low_threshold(LOW_WATER_BYTES);
        let waiting = Rc::new(RefCell::new(VecDeque::new()));
        let mut callbacks = Vec::new();
        let mut on = |callback: Box<dyn FnMut(JsValue)>| {
            let closure = Closure::wrap(callback);
            let function = closure.as_ref().unchecked_ref::<js_sys::Function>().clone();
            callbacks.push(closure);
            function
        };

        let gathered = on(Box::new({
            let (pc, report) = (pc.clone(), report.clone());
            move |_| {
                if pc.ice_gathering_state() == RtcIceGatheringState::Complete {
                    if let Some(description) = pc.local_description() {
                        report(DirectNews::Description { attempt, sdp: description.sdp() }, None);
                    }
                }
            }
        }));
        pc.set_onicegatheringstatechange(Some(&gathered));
        let state = on(Box::new({
            let (pc, report) = (pc.clone(), report.clone());
            move |_| match pc.connection_state() {
                RtcPeerConnectionState::Failed => {
                    report(DirectNews::Closed { attempt, why: "ICE failed: no path to the host".into() }, None)
                }
                RtcPeerConnectionState::Closed => {
                    report(DirectNews::Closed { attempt, why: "the peer connection closed".into() }, None)
                }
                // Consent checks unanswered: the path is gone (a blocked network, a host gone).
                RtcPeerConnectionState::Disconnected => {
                    report(DirectNews::Closed { attempt, why: "the host stopped answering ICE checks".into() }, None)
                }
                _ => {}
            }
        }));
        pc.set_onconnectionstatechange(Some(&state));
        let opened = on(Box::new({
            let (pc, report) = (pc.clone(), report.clone());
            move |_| {
                let (pc, report) = (pc.clone(), report.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let route = route_of(&pc).await;
                    report(DirectNews::Open { attempt, route }, None);
                });
            }
        }));
        channel.set_onopen(Some(&opened));
        let message = on(Box::new({
            let report = report.clone();
            move |event: JsValue| {
                let Ok(event) = event.dyn_into::<MessageEvent>() else { return };
                if let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() {
                    report(DirectNews::Bytes { attempt }, Some(buffer));
                }
            }
        }));
        channel.set_onmessage(Some(&message));
        let closed = on(Box::new({
            let report = report.clone();
            move |_| report(DirectNews::Closed { attempt, why: "the data channel closed".into() }, None)
        }));
        channel.set_onclose(Some(&closed));
        let low = on(Box::new({
            let (channel, waiting) = (channel.clone(), waiting.clone());
            move |_| send_waiting(&channel, &waiting)
        }));
        channel.set_onbufferedamountlow(Some(&low));

        wasm_bindgen_futures::spawn_local({
            let (pc, report) = (pc.clone(), report.clone());
            async move {
                if let Err(e) = make_offer(&pc).await {
                    report(DirectNews::Closed { attempt, why: format!("webrtc: cannot make an offer: {e:?}") }, None);
                }
            }
        });
        Ok(PeerAttempt { attempt, pc, channel, waiting, report, _callbacks: callbacks })
    }

    /// The host's answer came: apply it (a failure is reported as `Closed`).
    pub fn answered(&self, sdp: String) {
        let (pc, attempt, report) = (self.pc.clone(), self.attempt, self.report.clone());
        wasm_bindgen_futures::spawn_local(async move {
            let answer = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            answer.set_sdp(&sdp);
            if let Err(e) = JsFuture::from(pc.set_remote_description(&answer)).await {
                report(DirectNews::Closed { attempt, why: format!("webrtc: the host's answer: {e:?}") }, None);
            }
        });
    }

    /// Bytes for the data channel, in order.
    pub fn send(&self, bytes: Vec<u8>) {
        let mut waiting = self.waiting.borrow_mut();
        if bytes.len() <= MESSAGE_BYTES {
            waiting.push_back(bytes); // most frames (keys, echoes, credit): no copy
        } else {
            waiting.extend(bytes.chunks(MESSAGE_BYTES).map(<[u8]>::to_vec));
        }
        drop(waiting);
        send_waiting(&self.channel, &self.waiting);
    }

    /// Bytes given to the channel or waiting here, not yet sent (what a bulk sender paces on).
    pub fn unsent_bytes(&self) -> u32 {
        let waiting: usize = self.waiting.borrow().iter().map(Vec::len).sum();
        self.channel.buffered_amount().saturating_add(waiting as u32)
    }
}

/// Hand the channel what waits while its buffer has room.
fn send_waiting(channel: &RtcDataChannel, waiting: &RefCell<VecDeque<Vec<u8>>>) {
    let mut waiting = waiting.borrow_mut();
    while channel.buffered_amount() < HIGH_WATER_BYTES {
        let Some(message) = waiting.pop_front() else { break };
        // A closed channel throws; its close event follows, and the connection resends.
        if channel.send_with_u8_array(&message).is_err() {
            break;
        }
    }
}

fn configuration(ice_servers: &[IceServer]) -> RtcConfiguration {
    let servers = js_sys::Array::new();
    for server in ice_servers {
        let ice = RtcIceServer::new();
        let urls: js_sys::Array = server.urls.iter().map(|u| JsValue::from_str(u)).collect();
        ice.set_urls(&urls);
        if !server.username.is_empty() {
            ice.set_username(&server.username);
            ice.set_credential(&server.credential);
        }
        servers.push(&ice);
    }
    let configuration = RtcConfiguration::new();
    configuration.set_ice_servers(&servers);
    configuration
}

async fn make_offer(pc: &RtcPeerConnection) -> Result<(), JsValue> {
    let offer = JsFuture::from(pc.create_offer()).await?;
    let sdp = js_sys::Reflect::get(&offer, &JsValue::from_str("sdp"))?.as_string().unwrap_or_default();
    let description = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
    description.set_sdp(&sdp);
    JsFuture::from(pc.set_local_description(&description)).await?;
    Ok(())
}

/// Which route ICE chose: TURN if the selected pair has a relayed candidate on either end.
async fn route_of(pc: &RtcPeerConnection) -> Route {
    let Ok(report) = JsFuture::from(pc.get_stats()).await else { return Route::Direct };
    let get = |object: &JsValue, key: &str| {
        js_sys::Reflect::get(object, &JsValue::from_str(key)).ok().and_then(|v| v.as_string()).unwrap_or_default()
    };
    let by_id = |id: &str| -> JsValue {
        js_sys::Reflect::apply(
            &js_sys::Reflect::get(&report, &JsValue::from_str("get")).unwrap_or(JsValue::UNDEFINED).into(),
            &report,
            &js_sys::Array::of1(&JsValue::from_str(id)),
        )
        .unwrap_or(JsValue::UNDEFINED)
    };
    let mut pair = JsValue::UNDEFINED;
    if let Ok(Some(entries)) = js_sys::try_iter(&report) {
        for entry in entries.flatten() {
            let stats = js_sys::Reflect::get(&entry, &JsValue::from_f64(1.0)).unwrap_or(JsValue::UNDEFINED);
            if get(&stats, "type") == "transport" {
                pair = by_id(&get(&stats, "selectedCandidatePairId"));
            }
        }
    }
    if pair.is_undefined() {
        return Route::Direct;
    }
    let candidate_type = |id: String| get(&by_id(&id), "candidateType");
    Route::of_pair(&candidate_type(get(&pair, "localCandidateId")), &candidate_type(get(&pair, "remoteCandidateId")))
}
