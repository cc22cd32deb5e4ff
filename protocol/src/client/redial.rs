//! When a client dials its host again after losing it, and whether it does at all.
//!
//! Invariants:
//! - A failed authentication is final: a wrong secret stays wrong, and a revoked credential
//!   stays revoked. So is a close the client asked for.
//! - Otherwise a lost link is dialled again after a back-off that doubles from the policy's
//!   first wait to its cap, and starts over once a connection authenticates.
//! - Whether a loss is worth a redial at all is the policy's: a page keeps its host open
//!   (`Always`); a command line keeps it only while it has streams to resume (`WhileResuming`).
//! - "Busy" is not a loss: a relay or host that says too many are authenticating right now
//!   (`BUSY_HINT`) is asked again whatever the policy, after a jittered wait of at most
//!   `BUSY_MAX_WAIT_MS`, for up to `BUSY_RETRY_MS` — so a burst of honest clients from one
//!   address (an agent fanning out commands, an office behind one NAT) gets in, in turn.

/// A shell's choice of redial rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedialPolicy {
    pub when: RedialWhen,
    /// The first wait after a loss, and the longest one.
    pub first_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedialWhen {
    /// After every loss but a final one (the page: it shows its host until closed).
    Always,
    /// Only while a stream is open that can be resumed from its next byte (`attach -H`).
    WhileResuming,
}

impl RedialPolicy {
    /// The page: always, 0.5 s doubling to 10 s.
    pub const PAGE: RedialPolicy = RedialPolicy { when: RedialWhen::Always, first_ms: 500, max_ms: 10_000 };
    /// The command line: while resuming, 0.2 s doubling to 10 s.
    pub const CLI: RedialPolicy = RedialPolicy { when: RedialWhen::WhileResuming, first_ms: 200, max_ms: 10_000 };
}

/// Why a connection ended, as far as redialling is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The host refused us (authentication failed, the credential was revoked): trying again
    /// cannot help.
    Refused(String),
    /// The link was lost (network, relay, host restart): another try may work.
    Lost(String),
    /// We closed it.
    Closed,
}

impl Ending {
    pub fn why(&self) -> &str {
        match self {
            Ending::Refused(why) | Ending::Lost(why) => why,
            Ending::Closed => "closed",
        }
    }
}

/// What the relay and the host say when too many are authenticating at once: try again.
pub const BUSY_HINT: &str = "try again shortly";
/// How long a client keeps asking again while the answer is "busy".
pub const BUSY_RETRY_MS: u64 = 60_000;
/// The longest wait between two tries while busy (the back-off doubles up to it).
pub const BUSY_MAX_WAIT_MS: u64 = 2_000;

/// The relay's word when the host dropped a revoked client's connection. Only a hint (the relay
/// could say it falsely): all it can do is stop redials sooner, which a relay can anyway by not
/// forwarding; a redial after a revocation is refused by the host's proof check regardless.
pub const REVOKED_HINT: &str = "revoked";

/// The back-off of one client.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RedialPolicy,
    next_ms: u64,
}

impl Backoff {
    pub fn new(policy: RedialPolicy) -> Backoff {
        Backoff { policy, next_ms: policy.first_ms }
    }

    pub fn policy(&self) -> RedialPolicy {
        self.policy
    }

    /// The wait before the next try; the one after it doubles.
    pub fn next_wait(&mut self) -> u64 {
        let wait = self.next_ms;
        self.next_ms = (wait * 2).min(self.policy.max_ms);
        wait
    }

    /// The wait before the next try while busy: the back-off's, at most `BUSY_MAX_WAIT_MS`,
    /// spread by `jitter` (any number: a quarter to one and a quarter of the wait) so that
    /// clients refused together do not all come back together.
    pub fn next_busy_wait(&mut self, jitter: u64) -> u64 {
        let wait = self.next_wait().min(BUSY_MAX_WAIT_MS);
        wait / 4 + wait * (jitter % 1000) / 1000
    }

    /// A connection authenticated, or the user asked to try now: start over.
    pub fn reset(&mut self) {
        self.next_ms = self.policy.first_ms;
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.why())
    }
}

impl From<Ending> for String {
    fn from(ending: Ending) -> String {
        ending.why().to_owned()
    }
}
