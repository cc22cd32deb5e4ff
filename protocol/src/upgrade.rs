//! When a client tries to open a WebRTC data channel beside the relay, and when it tries again
//! after one failed or never opened: the one schedule the CLI and the page both follow.
//!
//! ```text
//! not invited ──invite──▶ waiting ──due──▶ negotiating ──opened──▶ open
//!                            ▲                 │ failed / timed out    │ failed
//!                            └──── back-off ◀──┴───────────────────────┘
//! ```
//!
//! Invariants:
//! - Nothing is tried before the host's invite (it may not allow upgrades at all).
//! - At most one attempt is under way; each has a new number, and only the current attempt's
//!   news counts (a late answer or close of an abandoned one changes nothing).
//! - Retries back off, doubling from `FIRST_RETRY_MS` to `MAX_RETRY_MS`; a channel that stayed up
//!   `STABLE_MS` starts the doubling over. The relay carries everything meanwhile.

use crate::signal::IceServer;

/// An attempt whose data channel is not open by then is given up.
pub const NEGOTIATION_TIMEOUT_MS: u64 = 10_000;
/// The first retry after a failure waits this long; each next one twice as long, at most
/// `MAX_RETRY_MS`.
pub const FIRST_RETRY_MS: u64 = 1_000;
pub const MAX_RETRY_MS: u64 = 30_000;
/// A data channel that lasted this long before failing was good: back-off starts over.
pub const STABLE_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    NotInvited,
    Waiting { at_ms: u64 },
    Negotiating { attempt: u32, deadline_ms: u64 },
    Open { attempt: u32, since_ms: u64 },
}

/// What the shell must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start attempt `attempt`: a peer connection with these servers, a data channel, an offer.
    Offer { attempt: u32, ice_servers: Vec<IceServer> },
    /// Attempt `attempt` took too long: close it, and tell the host (`Signal::Hangup`).
    Abandon { attempt: u32 },
}

#[derive(Debug)]
pub struct Upgrade {
    phase: Phase,
    ice_servers: Vec<IceServer>,
    last_attempt: u32,
    retry_ms: u64,
}

impl Default for Upgrade {
    fn default() -> Self {
        Upgrade { phase: Phase::NotInvited, ice_servers: Vec::new(), last_attempt: 0, retry_ms: FIRST_RETRY_MS }
    }
}

impl Upgrade {
    /// The host invited us (again, with fresh TURN credentials: they are used from the next
    /// attempt on).
    pub fn invited(&mut self, ice_servers: Vec<IceServer>, now_ms: u64) {
        self.ice_servers = ice_servers;
        if self.phase == Phase::NotInvited {
            self.phase = Phase::Waiting { at_ms: now_ms };
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Waiting { at_ms } => Some(at_ms),
            Phase::Negotiating { deadline_ms, .. } => Some(deadline_ms),
            Phase::NotInvited | Phase::Open { .. } => None,
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) -> Option<Action> {
        match self.phase {
            Phase::Waiting { at_ms } if now_ms >= at_ms => {
                self.last_attempt += 1;
                let attempt = self.last_attempt;
                self.phase = Phase::Negotiating { attempt, deadline_ms: now_ms + NEGOTIATION_TIMEOUT_MS };
                Some(Action::Offer { attempt, ice_servers: self.ice_servers.clone() })
            }
            Phase::Negotiating { attempt, deadline_ms } if now_ms >= deadline_ms => {
                self.back_off(now_ms);
                Some(Action::Abandon { attempt })
            }
            _ => None,
        }
    }

    /// Attempt `attempt`'s data channel opened. False if that attempt is not the current one
    /// (the shell closes it then).
    pub fn opened(&mut self, attempt: u32, now_ms: u64) -> bool {
        match self.phase {
            Phase::Negotiating { attempt: current, .. } if current == attempt => {
                self.phase = Phase::Open { attempt, since_ms: now_ms };
                true
            }
            _ => false,
        }
    }

    /// Attempt `attempt` failed (refused, closed, its channel died): wait, then try again.
    /// Returns whether it was the current attempt.
    pub fn failed(&mut self, attempt: u32, now_ms: u64) -> bool {
        match self.phase {
            Phase::Negotiating { attempt: current, .. } if current == attempt => {}
            Phase::Open { attempt: current, since_ms } if current == attempt => {
                if now_ms.saturating_sub(since_ms) >= STABLE_MS {
                    self.retry_ms = FIRST_RETRY_MS;
                }
            }
            _ => return false,
        }
        self.back_off(now_ms);
        true
    }

    /// Whether `attempt` is the one under way (negotiating or open).
    pub fn is_current(&self, attempt: u32) -> bool {
        matches!(self.phase, Phase::Negotiating { attempt: a, .. } | Phase::Open { attempt: a, .. } if a == attempt)
    }

    fn back_off(&mut self, now_ms: u64) {
        self.phase = Phase::Waiting { at_ms: now_ms + self.retry_ms };
        self.retry_ms = (self.retry_ms * 2).min(MAX_RETRY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_at(upgrade: &mut Upgrade, now: u64) -> u32 {
        match upgrade.handle_timeout(now) {
            Some(Action::Offer { attempt, .. }) => attempt,
            other => panic!("expected an offer at {now}, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_tried_before_the_invite_then_at_once() {
        let mut upgrade = Upgrade::default();
        assert_eq!(upgrade.poll_timeout(), None);
        assert_eq!(upgrade.handle_timeout(1_000_000), None);
        upgrade.invited(Vec::new(), 500);
        assert_eq!(upgrade.poll_timeout(), Some(500));
        assert_eq!(offer_at(&mut upgrade, 500), 1);
        assert!(upgrade.opened(1, 600));
        assert_eq!(upgrade.poll_timeout(), None, "an open channel needs no timer");
    }

    #[test]
    fn failures_back_off_doubling_to_a_cap_and_a_stable_channel_resets_it() {
        let mut upgrade = Upgrade::default();
        upgrade.invited(Vec::new(), 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let attempt = offer_at(&mut upgrade, now);
            assert!(upgrade.failed(attempt, now));
            let next = upgrade.poll_timeout().expect("a retry is due");
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        let attempt = offer_at(&mut upgrade, now);
        assert!(upgrade.opened(attempt, now));
        assert!(upgrade.failed(attempt, now + STABLE_MS));
        assert_eq!(upgrade.poll_timeout(), Some(now + STABLE_MS + FIRST_RETRY_MS));
    }

    #[test]
    fn a_negotiation_that_hangs_is_abandoned() {
        let mut upgrade = Upgrade::default();
        upgrade.invited(Vec::new(), 0);
        let attempt = offer_at(&mut upgrade, 0);
        assert_eq!(upgrade.poll_timeout(), Some(NEGOTIATION_TIMEOUT_MS));
        assert_eq!(upgrade.handle_timeout(NEGOTIATION_TIMEOUT_MS), Some(Action::Abandon { attempt }));
        assert!(!upgrade.is_current(attempt));
        assert!(!upgrade.opened(attempt, NEGOTIATION_TIMEOUT_MS + 1), "a late open of an abandoned attempt");
        assert_eq!(offer_at(&mut upgrade, NEGOTIATION_TIMEOUT_MS + FIRST_RETRY_MS), attempt + 1);
    }

    #[test]
    fn news_of_an_old_attempt_changes_nothing() {
        let mut upgrade = Upgrade::default();
        upgrade.invited(Vec::new(), 0);
        let first = offer_at(&mut upgrade, 0);
        assert!(upgrade.failed(first, 0));
        let second = offer_at(&mut upgrade, FIRST_RETRY_MS);
        assert!(!upgrade.failed(first, FIRST_RETRY_MS));
        assert!(upgrade.is_current(second));
    }
}
