//! One secure channel over two transports: the relay's WebSocket and, once one opens, a WebRTC
//! data channel beside it. Sealed frames go on the data channel with copies kept until the peer
//! acknowledges them (`crate::paths::Unacked`); frames from either path are opened strictly in
//! counter order (`crate::paths::Reorder`); when the data channel fails, what it had not
//! delivered goes again on the relay.

use crate::error::{ChannelError, ConnError};
use crate::frame::{Control, Frame, FrameDecoder, Header};
use crate::paths::{Reorder, Unacked};
use crate::signal::Route;

use super::{Connection, Output, Path, State};

/// While a data channel carries the connection, ping this often (on it), so that each end hears
/// from the other at least this often and a dead channel shows within `DIRECT_SILENCE_MS`.
pub const DIRECT_PING_MS: u64 = 1_000;
/// A data channel silent this long is given up. The backstop: a path that dies (ICE consent
/// unanswered) is noticed sooner by the shells, from their peer connection's state; this catches
/// a channel that stays "connected" and delivers nothing. Long enough to ride out SCTP's
/// retransmission back-off (1 s, 2 s, 4 s) when a congested TURN server drops datagrams, which
/// at 3.5 s tore down channels that were only slow.
pub const DIRECT_SILENCE_MS: u64 = 10_000;

/// A receiver acknowledges every this many frames while frames may come over the data channel:
/// the sender keeps at most this many beyond the last acknowledgement (or `MAX_UNACKED_BYTES`).
pub const ACK_EVERY_FRAMES: u64 = 32;

/// Our sending side of a data channel: what goes out on it, and copies until acknowledged.
pub(super) struct DirectPath {
    pub(super) route: Route,
    pub(super) unacked: Unacked,
    /// When something last came over it (or it opened), to notice it dying.
    pub(super) last_received_ms: u64,
}

impl Connection {
    pub(super) fn decoder_of(&mut self, direct: bool) -> &mut FrameDecoder {
        if direct {
            &mut self.direct_decoder
        } else {
            &mut self.decoder
        }
    }

    pub(super) fn start_reordering(&mut self) {
        if self.reorder.is_none() {
            if let State::Open { opener, .. } = &self.state {
                self.reorder = Some(Reorder::starting_at(opener.next_counter()));
                self.acked = opener.next_counter();
            }
        }
    }

    /// A sealed frame from either path, once frames may come over two: held until its turn,
    /// dropped unopened when it is a copy of one already taken.
    pub(super) fn take_sealed(&mut self, frame: Frame) -> Result<(), ConnError> {
        let Header::Encrypted { ctr } = frame.header else {
            return Err(ChannelError::NotEncrypted(crate::channel::header_kind(&frame.header)).into());
        };
        let Some(reorder) = self.reorder.as_mut() else { return Err(ConnError::NotReady("not reordering")) };
        let len = frame.payload.len();
        reorder.push(ctr, len, frame)?;
        while let Some(frame) = self.reorder.as_mut().and_then(Reorder::pop) {
            if self.outside_from.is_some() {
                self.admit(vec![frame])?;
                continue;
            }
            let State::Open { opener, .. } = &mut self.state else { break };
            let inner = opener.open(&frame)?;
            self.handle_inner(inner)?;
        }
        // Tell the sender what it may let go of.
        let next = self.reorder.as_ref().map_or(0, Reorder::next_counter);
        if next >= self.acked + ACK_EVERY_FRAMES && matches!(self.state, State::Open { .. }) {
            self.acked = next;
            self.send_sealed(&Frame::bare(Header::Control(Control::Ack { next })))?;
        }
        Ok(())
    }

    /// A WebRTC data channel is open beside the relay, by `route`: from now on sealed frames go
    /// on it (`Output::Transmit` with `Path::Direct`), and frames from either path are taken in counter order. It is
    /// pinged every `DIRECT_PING_MS` and given up after `DIRECT_SILENCE_MS` of silence.
    pub fn open_direct(&mut self, route: Route, now_ms: u64) -> Result<(), ConnError> {
        self.check_open()?;
        self.seal_all_now();
        self.start_reordering();
        let direct =
            self.direct.get_or_insert_with(|| DirectPath { route, unacked: Unacked::new(), last_received_ms: now_ms });
        direct.route = route;
        Ok(())
    }

    /// The data channel failed (or closed): what it carried that the peer has not acknowledged
    /// is sent again on the relay, in order, and everything after goes there too.
    pub fn direct_failed(&mut self) {
        self.seal_all_now();
        if let Some(mut direct) = self.direct.take() {
            self.out.retain(|out| !matches!(out, Output::Transmit { path: Path::Direct, .. }));
            for (_, bytes) in direct.unacked.take_for_resend() {
                self.out.push_back(Output::Transmit { path: Path::Relay, bytes });
            }
        }
        self.direct_decoder = FrameDecoder::new();
    }

    /// Whether sealed frames go on a data channel now.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The data channel's route, while one carries the connection.
    pub fn direct_route(&self) -> Option<Route> {
        self.direct.as_ref().map(|d| d.route)
    }
}
