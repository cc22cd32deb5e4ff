//! One secure channel over several transports at once: the relay's WebSocket, always there, and
//! a WebRTC data channel when one opens. Sealed frames keep their single counter sequence per
//! direction (see `channel`) whichever path carries them; this module puts them back in order
//! on the way in and keeps what a failing path may have lost on the way out.
//!
//! ```text
//! sender:   seal ctr n ─┬─ data channel ──(kept in `Unacked` until the peer's ack passes n)
//!                       └─ relay WebSocket
//! receiver: either path ─→ `Reorder` ─→ the opener, strictly n, n+1, n+2, …
//! ```
//!
//! Invariants:
//! - The opener still sees every counter exactly once, in order: `Reorder` holds frames that
//!   arrive early (the first frames on a new data channel overtake the last ones still on the
//!   relay) and drops copies of counters already handed on (a frame resent after a path failed,
//!   that had arrived after all). A dropped copy is never opened, so it changes nothing.
//! - Both holdings are bounded: `Reorder` by `MAX_EARLY_BYTES`, `Unacked` by
//!   `MAX_UNACKED_BYTES`. A peer far ahead is an error; a full `Unacked` means "send on the
//!   relay until the peer acknowledges", never a dropped frame.
//! - When a path fails, everything it carried that the peer did not acknowledge is sent again,
//!   in counter order, on the relay. With the receiver's deduplication, each frame then counts
//!   once whether it arrived the first time or not.

use std::collections::{BTreeMap, VecDeque};

use crate::error::PathError;

/// Early frames a receiver holds while it waits for the one it needs next: more than every
/// flow-control window of a connection's streams together could put in flight.
pub const MAX_EARLY_BYTES: usize = 16 << 20; // 16 MiB
/// Sealed frames a sender keeps for resending until the peer acknowledges them.
pub const MAX_UNACKED_BYTES: usize = 16 << 20; // 16 MiB

/// What became of a frame given to `Reorder::push`.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// It is next, or filled the gap: `Reorder::pop` hands it on now.
    Ready,
    /// It came early and waits for the ones before it.
    Held,
    /// A copy of a counter already handed on (or already held): dropped unopened.
    Duplicate,
}

/// The receiving side: sealed frames from any path in, in counter order out.
#[derive(Debug, Default)]
pub struct Reorder<T> {
    next: u64,
    early: BTreeMap<u64, (T, usize)>,
    early_bytes: usize,
}

impl<T> Reorder<T> {
    pub fn new() -> Self {
        Reorder::starting_at(0)
    }

    /// A receiver that has already taken every frame before `next` (over the relay alone).
    pub fn starting_at(next: u64) -> Self {
        Reorder { next, early: BTreeMap::new(), early_bytes: 0 }
    }

    /// Take the sealed frame with counter `ctr`, `len` bytes long.
    pub fn push(&mut self, ctr: u64, len: usize, frame: T) -> Result<Arrival, PathError> {
        if ctr < self.next || self.early.contains_key(&ctr) {
            return Ok(Arrival::Duplicate);
        }
        if self.early_bytes + len > MAX_EARLY_BYTES {
            return Err(PathError::TooFarAhead { expected: self.next, got: ctr });
        }
        self.early_bytes += len;
        self.early.insert(ctr, (frame, len));
        Ok(if ctr == self.next { Arrival::Ready } else { Arrival::Held })
    }

    /// The next frame in counter order, when it is here.
    pub fn pop(&mut self) -> Option<T> {
        let (frame, len) = self.early.remove(&self.next)?;
        self.early_bytes -= len;
        self.next += 1;
        Some(frame)
    }

    /// The counter needed next: what an acknowledgement tells the sender.
    pub fn next_counter(&self) -> u64 {
        self.next
    }

    /// Bytes held early.
    pub fn held_bytes(&self) -> usize {
        self.early_bytes
    }
}

/// The sending side's copies of sealed frames sent on a path that may fail.
#[derive(Debug, Default)]
pub struct Unacked {
    frames: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
}

impl Unacked {
    pub fn new() -> Self {
        Unacked::default()
    }

    /// Whether a frame of `len` bytes may go on the fallible path now (else: on the relay).
    pub fn has_room(&self, len: usize) -> bool {
        self.bytes + len <= MAX_UNACKED_BYTES
    }

    /// Keep a copy of sealed frame `ctr` (counters rise with each call).
    pub fn keep(&mut self, ctr: u64, sealed: Vec<u8>) {
        debug_assert!(self.frames.back().is_none_or(|(last, _)| *last < ctr));
        self.bytes += sealed.len();
        self.frames.push_back((ctr, sealed));
    }

    /// The peer has every frame before `next`: let their copies go.
    pub fn acknowledge(&mut self, next: u64) {
        while let Some((ctr, sealed)) = self.frames.front() {
            if *ctr >= next {
                break;
            }
            self.bytes -= sealed.len();
            self.frames.pop_front();
        }
    }

    /// The path failed: every frame not acknowledged, in counter order, to send again.
    pub fn take_for_resend(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.bytes = 0;
        self.frames.drain(..).collect()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator, so the shuffles below are the same on every run.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    fn drain(reorder: &mut Reorder<u64>, out: &mut Vec<u64>) {
        while let Some(ctr) = reorder.pop() {
            out.push(ctr);
        }
    }

    #[test]
    fn frames_from_two_paths_in_any_interleaving_come_out_once_in_order() {
        for seed in 0..50 {
            let mut rng = Lcg(seed);
            // Each path keeps its own order; the paths race each other. Some counters go on
            // both (a resend of what had arrived after all).
            let (mut relay, mut direct) = (VecDeque::new(), VecDeque::new());
            for ctr in 0..500u64 {
                match rng.next() % 4 {
                    0 => relay.push_back(ctr),
                    1 => {
                        relay.push_back(ctr);
                        direct.push_back(ctr);
                    }
                    _ => direct.push_back(ctr),
                }
            }
            let mut reorder = Reorder::new();
            let mut out = Vec::new();
            while !relay.is_empty() || !direct.is_empty() {
                // Either path while both have some, a coin deciding.
                let take_relay = direct.is_empty() || (!relay.is_empty() && rng.next().is_multiple_of(2));
                let path = if take_relay { &mut relay } else { &mut direct };
                let ctr = path.pop_front().expect("non-empty");
                reorder.push(ctr, 100, ctr).expect("within bounds");
                drain(&mut reorder, &mut out);
            }
            assert_eq!(out, (0..500).collect::<Vec<_>>(), "seed {seed}");
            assert_eq!(reorder.held_bytes(), 0);
        }
    }

    #[test]
    fn copies_are_dropped_and_early_frames_held() {
        let mut reorder = Reorder::new();
        assert_eq!(reorder.push(1, 10, "b"), Ok(Arrival::Held));
        assert_eq!(reorder.push(1, 10, "b again"), Ok(Arrival::Duplicate));
        assert_eq!(reorder.pop(), None);
        assert_eq!(reorder.push(0, 10, "a"), Ok(Arrival::Ready));
        assert_eq!((reorder.pop(), reorder.pop(), reorder.pop()), (Some("a"), Some("b"), None));
        assert_eq!(reorder.push(0, 10, "a resent"), Ok(Arrival::Duplicate));
        assert_eq!(reorder.next_counter(), 2);
    }

    #[test]
    fn a_peer_too_far_ahead_is_an_error_not_a_growing_buffer() {
        let mut reorder = Reorder::new();
        let chunk = MAX_EARLY_BYTES / 4;
        for ctr in 1..=4 {
            assert_eq!(reorder.push(ctr, chunk, ()), Ok(Arrival::Held));
        }
        assert_eq!(reorder.push(5, 1, ()), Err(PathError::TooFarAhead { expected: 0, got: 5 }));
        assert_eq!(reorder.held_bytes(), MAX_EARLY_BYTES);
    }

    #[test]
    fn a_path_that_fails_mid_flood_loses_nothing_once_its_unacked_frames_are_resent() {
        for seed in 0..20 {
            let mut rng = Lcg(seed);
            let mut unacked = Unacked::new();
            let mut reorder = Reorder::new();
            let mut out = Vec::new();
            let mut relay = VecDeque::new();
            let fails_at = 100 + rng.next() % 300;
            for ctr in 0..600u64 {
                if ctr < fails_at {
                    // On the data channel, a copy kept. Frames sent in the last moments before
                    // the failure (1 in 3 here) never arrive.
                    unacked.keep(ctr, ctr.to_be_bytes().to_vec());
                    if ctr + 20 < fails_at || !rng.next().is_multiple_of(3) {
                        reorder.push(ctr, 8, ctr).expect("bounded");
                        drain(&mut reorder, &mut out);
                    }
                    // Now and then the receiver's acknowledgement reaches the sender.
                    if rng.next().is_multiple_of(16) {
                        unacked.acknowledge(reorder.next_counter());
                    }
                } else {
                    if ctr == fails_at {
                        // The data channel is gone: what it may have lost goes on the relay.
                        relay.extend(unacked.take_for_resend().into_iter().map(|(ctr, _)| ctr));
                    }
                    relay.push_back(ctr);
                }
            }
            for ctr in relay {
                reorder.push(ctr, 8, ctr).expect("bounded");
                drain(&mut reorder, &mut out);
            }
            assert_eq!(out, (0..600).collect::<Vec<_>>(), "seed {seed}, failed at {fails_at}");
            assert_eq!(unacked.bytes(), 0);
        }
    }

    #[test]
    fn acknowledged_frames_are_let_go_and_a_full_buffer_says_so() {
        let mut unacked = Unacked::new();
        let half = MAX_UNACKED_BYTES / 2;
        unacked.keep(0, vec![0; half]);
        unacked.keep(1, vec![1; half]);
        assert!(!unacked.has_room(1));
        unacked.acknowledge(1);
        assert_eq!(unacked.bytes(), half);
        assert!(unacked.has_room(half));
        assert_eq!(unacked.take_for_resend().iter().map(|(ctr, _)| *ctr).collect::<Vec<_>>(), [1]);
    }
}
