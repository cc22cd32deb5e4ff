//! When a session needs someone: what a client watching a host's session list (`watch_sessions`)
//! should tell its user about — a session that began to wait for input, or one that ended — and
//! how many wait now. The page raises system notifications and a count in its title from this;
//! plain data in, alerts out, so the rule is tested here once.
//!
//! Invariants:
//! - The first list seen only sets the baseline: opening a page alerts for nothing that was
//!   already so.
//! - A session alerts once per change: waiting again after it went on, or ending, each once.
//! - The count is of questions: a shell idle at its prompt is not counted (every open shell
//!   would be), though one coming back to its prompt after work is still an alert.
//! - A session that disappears from the list (trimmed, or no longer visible) alerts nothing; one
//!   new to it alerts only if it waits already (one started and ended meanwhile is not news).

use std::collections::HashMap;

use crate::api::SessionInfo;

/// Why a session wants attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// It waits for input (the host's word for why: `y/n`, `password`, …).
    Waiting(Option<String>),
    /// It ended, with this exit code if known.
    Ended(Option<i32>),
}

/// One thing to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub session: String,
    pub title: String,
    pub reason: Reason,
}

impl Alert {
    /// The alert in words: "build waits for input (y/n)", "build ended (exit 0)".
    pub fn describe(&self) -> String {
        match &self.reason {
            Reason::Waiting(Some(why)) => format!("{} waits for input ({why})", self.title),
            Reason::Waiting(None) => format!("{} waits for input", self.title),
            Reason::Ended(Some(code)) => format!("{} ended (exit {code})", self.title),
            Reason::Ended(None) => format!("{} ended", self.title),
        }
    }
}

/// The host's reason for a shell back at its prompt (`agent::host::session::prompt`).
pub const SHELL_PROMPT: &str = "shell prompt";

/// What was last seen of each session: (waiting, live, a question rather than a shell prompt).
#[derive(Debug, Default)]
pub struct Attention {
    seen: Option<HashMap<String, (bool, bool, bool)>>,
}

impl Attention {
    /// Take the session list as it is now; returns what changed that deserves telling.
    pub fn update(&mut self, sessions: &[SessionInfo]) -> Vec<Alert> {
        let now: HashMap<String, (bool, bool, bool)> = sessions
            .iter()
            .map(|s| {
                let question = s.input_reason.as_deref() != Some(SHELL_PROMPT);
                (s.id.clone(), (s.waiting_for_input, s.status.is_live(), question))
            })
            .collect();
        let Some(before) = self.seen.replace(now) else { return Vec::new() };
        sessions
            .iter()
            .filter_map(|s| {
                // One new to the list is news only if it waits already.
                let (was_waiting, was_live, _) = before.get(&s.id).copied().unwrap_or((false, false, true));
                let reason = if was_live && !s.status.is_live() {
                    Reason::Ended(s.exit_code)
                } else if s.waiting_for_input && !was_waiting && s.status.is_live() {
                    Reason::Waiting(s.input_reason.clone())
                } else {
                    return None;
                };
                Some(Alert { session: s.id.clone(), title: s.title.clone(), reason })
            })
            .collect()
    }

    /// How many sessions wait for an answer now (shells at their prompt aside).
    pub fn waiting(&self) -> usize {
        let asking = |(waiting, live, question): &&(bool, bool, bool)| *waiting && *live && *question;
        self.seen.as_ref().map_or(0, |seen| seen.values().filter(asking).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SessionStatus;

    fn session(id: &str, status: SessionStatus, waiting: bool) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            title: format!("t-{id}"),
            command: vec![],
            cwd: "/".into(),
            pid: None,
            status,
            exit_code: (!status.is_live()).then_some(3),
            created_at: 0,
            started_at: None,
            ended_at: None,
            output_bytes: 0,
            waiting_for_input: waiting,
            input_reason: waiting.then(|| "y/n".to_owned()),
            notify: false,
        }
    }

    #[test]
    fn alerts_once_per_change_and_never_for_the_first_list() {
        use SessionStatus::{Running, Stopped};
        let mut attention = Attention::default();
        assert_eq!(attention.update(&[session("a", Running, true), session("b", Stopped, false)]), vec![]);
        assert_eq!(attention.waiting(), 1);
        // Unchanged: nothing.
        assert_eq!(attention.update(&[session("a", Running, true), session("b", Stopped, false)]), vec![]);
        // `a` goes on, then waits again; `c` appears waiting, `e` appears ended, `d` ends.
        attention.update(&[session("a", Running, false), session("d", Running, false)]);
        let alerts = attention.update(&[
            session("a", Running, true),
            session("c", Running, true),
            session("d", Stopped, false),
            session("e", Stopped, false),
        ]);
        assert_eq!(
            alerts,
            vec![
                Alert { session: "a".into(), title: "t-a".into(), reason: Reason::Waiting(Some("y/n".into())) },
                Alert { session: "c".into(), title: "t-c".into(), reason: Reason::Waiting(Some("y/n".into())) },
                Alert { session: "d".into(), title: "t-d".into(), reason: Reason::Ended(Some(3)) },
            ]
        );
        assert_eq!(alerts[0].describe(), "t-a waits for input (y/n)");
        assert_eq!(alerts[2].describe(), "t-d ended (exit 3)");
        assert_eq!(attention.waiting(), 2);
        // A shell back at its prompt alerts, and is not counted.
        let mut shell = session("s", Running, true);
        shell.input_reason = Some(SHELL_PROMPT.into());
        attention.update(&[session("s", Running, false)]);
        assert_eq!(attention.update(&[shell]).len(), 1);
        assert_eq!(attention.waiting(), 0);
        // Gone from the list: nothing.
        assert_eq!(attention.update(&[]), vec![]);
        assert_eq!(attention.waiting(), 0);
    }
}
