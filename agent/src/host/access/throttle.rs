//! Slowing password guessing, without handing anyone a lock-out.
//!
//! Only a wrong proof counts: a connection dropped or timed out mid-handshake says nothing about
//! a guess. After `n` wrong proofs of the host password in a row, the next password proof is
//! checked no sooner than `FIRST_PENALTY · 2^(n-1)` (at most `MAX_PENALTY`) after the last one,
//! and proofs are checked one at a time, in turn. A proof waits for its turn rather than being
//! refused, so parallel handshakes buy a guesser nothing, and a stranger guessing can slow the
//! owner's login down but never keep it out. Invite secrets are random (≥ 128 bits), so their
//! proofs are checked at once: guessing them is hopeless, and no counter is kept for them. Each
//! identity has its own record, so a success with one never clears another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_protocol::handshake::PASSWORD_IDENTITY;
use tether_protocol::sync::lock;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// Wait before the next proof after the first wrong one; doubles with each further one.
const FIRST_PENALTY: Duration = Duration::from_millis(250);
/// The longest a proof waits behind wrong ones (per proof ahead of it in the queue).
const MAX_PENALTY: Duration = Duration::from_secs(8);

#[derive(Default)]
pub struct Throttle {
    records: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Record>>>>,
}

/// Wrong proofs of one identity in a row, and when the last one was checked.
#[derive(Default)]
struct Record {
    failures: u32,
    last_failure: Option<Instant>,
}

/// The right to check one proof now; say how it went with `record`.
pub struct ProofTurn {
    record: OwnedMutexGuard<Record>,
}

impl Throttle {
    /// Whether proofs of `identity` wait for turns (only the host password: people choose it).
    pub fn applies_to(identity: &str) -> bool {
        identity == PASSWORD_IDENTITY
    }

    /// Wait for the next turn to check a proof of `identity`: after the proofs ahead of it, and
    /// after the back-off their failures earned. Returns the turn and how long it waited for
    /// the back-off.
    pub async fn turn(&self, identity: &str) -> (ProofTurn, Duration) {
        let record = lock(&self.records).entry(identity.to_owned()).or_default().clone();
        let record = record.lock_owned().await;
        let wait = record.wait();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        (ProofTurn { record }, wait)
    }
}

impl Record {
    fn wait(&self) -> Duration {
        let Some(last) = self.last_failure else { return Duration::ZERO };
        let penalty = (FIRST_PENALTY * 2u32.saturating_pow(self.failures.saturating_sub(1))).min(MAX_PENALTY);
        (last + penalty).saturating_duration_since(Instant::now())
    }
}

impl ProofTurn {
    /// The proof was right (`false`: it was wrong). Ends the turn.
    pub fn record(mut self, right: bool) {
        if right {
            *self.record = Record::default();
        } else {
            self.record.failures = self.record.failures.saturating_add(1);
            self.record.last_failure = Some(Instant::now());
        }
    }

    /// Wrong proofs in a row so far (for the log).
    pub fn failures(&self) -> u32 {
        self.record.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wrong_proofs_back_off_to_a_cap_and_a_right_one_starts_over() {
        let throttle = Throttle::default();
        let (turn, waited) = throttle.turn(PASSWORD_IDENTITY).await;
        assert_eq!(waited, Duration::ZERO);
        turn.record(false);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let (turn, waited) = throttle.turn(PASSWORD_IDENTITY).await;
            waits.push(waited);
            turn.record(false);
        }
        assert_eq!(waits[0], FIRST_PENALTY);
        assert_eq!(waits[1], FIRST_PENALTY * 2);
        assert_eq!(*waits.last().expect("waits"), MAX_PENALTY, "capped, never a lock-out: {waits:?}");
        let (turn, _) = throttle.turn(PASSWORD_IDENTITY).await;
        turn.record(true);
        assert_eq!(throttle.turn(PASSWORD_IDENTITY).await.1, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn proofs_are_checked_one_at_a_time_and_identities_apart() {
        let throttle = Arc::new(Throttle::default());
        let (first, _) = throttle.turn(PASSWORD_IDENTITY).await;
        let waiting = tokio::spawn({
            let throttle = throttle.clone();
            async move { throttle.turn(PASSWORD_IDENTITY).await.1 }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second proof waits for the first one's outcome");
        // Another identity is not held up, and its record is its own.
        let (other, waited) = throttle.turn("invite-1234abcd").await;
        assert_eq!(waited, Duration::ZERO);
        other.record(true);
        first.record(false);
        assert_eq!(waiting.await.expect("second turn"), FIRST_PENALTY);
        assert!(!Throttle::applies_to("invite-1234abcd") && Throttle::applies_to(PASSWORD_IDENTITY));
    }
}
