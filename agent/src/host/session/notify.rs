//! Telling someone a session needs them: a configured hook command, where a desktop session
//! exists a desktop notification, and web pushes to the browsers that subscribed (`push`). All
//! run detached; a slow hook or push service never delays the agent.

use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use tether_protocol::api::SessionInfo;

use crate::host::push::Pusher;

pub struct Notifier {
    hook: Option<String>,
    desktop: bool,
    push: OnceLock<Arc<Pusher>>,
}

impl Notifier {
    pub fn new(hook: Option<String>, desktop: bool) -> Notifier {
        let has_display = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
        Notifier { hook, desktop: desktop && has_display, push: OnceLock::new() }
    }

    pub fn push_with(&self, pusher: Arc<Pusher>) {
        let _ = self.push.set(pusher);
    }

    /// `reason` is a short phrase: "password", "shell prompt", "exited with code 3", …
    pub fn notify(&self, session: &SessionInfo, reason: &str) {
        if !session.notify {
            return;
        }
        if let Some(hook) = &self.hook {
            // `sh -c 'HOOK "$@"'` lets the hook carry its own arguments; ours follow.
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("{hook} \"$@\""))
                .arg("tether-hook")
                .arg(&session.id)
                .arg(reason)
                .env("TETHER_SESSION", &session.id)
                .env("TETHER_REASON", reason)
                .env("TETHER_TITLE", &session.title);
            run_detached(command);
        }
        if let Some(pusher) = self.push.get() {
            pusher.session_needs_you(session, reason);
        }
        if self.desktop {
            let mut command = Command::new("notify-send");
            command.arg(format!("Tether: {}", session.title)).arg(format!("{} — {}", session.id, reason));
            run_detached(command);
        }
    }
}

fn run_detached(mut command: Command) {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    if let Ok(mut child) = command.spawn() {
        // Reap it so it does not linger as a zombie.
        std::thread::spawn(move || child.wait());
    }
}
