//! The failed-login throttle: every wrong proof makes the next attempt wait longer
//! (exponential back-off), and enough of them in a row lock the door for a while.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tether_protocol::sync::lock;

/// Consecutive failed handshakes before the lock-out.
const LOCKOUT_AFTER: u32 = 20;
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Back-off after the first failure; doubles with each further one (capped).
const FIRST_PENALTY: Duration = Duration::from_millis(250);
const MAX_PENALTY: Duration = Duration::from_secs(60);

/// Failed-handshake throttle for this host: (failures in a row, refused until).
#[derive(Default)]
pub struct Throttle {
    state: Mutex<(u32, Option<Instant>)>,
}

impl Throttle {
    /// `Some(wait)` while new handshakes are refused.
    pub fn refuse(&self) -> Option<Duration> {
        let (_, until) = *lock(&self.state);
        until.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    pub fn failure(&self) {
        let mut state = lock(&self.state);
        state.0 += 1;
        let penalty = if state.0 >= LOCKOUT_AFTER {
            LOCKOUT
        } else {
            (FIRST_PENALTY * 2u32.saturating_pow(state.0 - 1)).min(MAX_PENALTY)
        };
        state.1 = Some(Instant::now() + penalty);
    }

    pub fn success(&self) {
        *lock(&self.state) = (0, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_backs_off_then_locks_out() {
        let throttle = Throttle::default();
        assert_eq!(throttle.refuse(), None);
        throttle.failure();
        assert!(throttle.refuse().is_some_and(|w| w <= FIRST_PENALTY));
        for _ in 1..LOCKOUT_AFTER {
            throttle.failure();
        }
        assert!(throttle.refuse().is_some_and(|w| w > MAX_PENALTY));
        throttle.success();
        assert_eq!(throttle.refuse(), None);
    }
}
