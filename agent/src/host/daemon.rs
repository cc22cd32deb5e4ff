//! The daemon's state: who this host is, its sessions, its ways in, and its links to relays.
//! How it is reached is elsewhere: the Unix socket in `server`, relays in `relay_link`, and what
//! each request does in `dispatch`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tether_protocol::sync::lock;
use tokio::sync::{watch, Notify};

use crate::host::access::Access;
use crate::host::files::FileService;
use crate::host::identity::HostIdentity;
use crate::host::relay_link;
use crate::host::sessions::Sessions;
use crate::host::store::Store;
use crate::paths::StateDir;

/// How long a supervisor waits before starting a link that ended again.
const LINK_RESTART_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The store setting `tether pair --no-webrtc` / `--webrtc` leaves ("on" or "off"; none: on).
const WEBRTC_SETTING: &str = "webrtc";

/// Per relay: registered (`Ok`), or why the last attempt failed; and since when (ms since the
/// Unix epoch) it has been up, or down.
pub type LinkStates = HashMap<String, LinkState>;

#[derive(Clone, Debug)]
pub struct LinkState {
    pub up: Result<(), String>,
    pub since_ms: u64,
}

pub struct Daemon {
    pub state: StateDir,
    pub host: HostIdentity,
    pub store: Arc<Mutex<Store>>,
    pub sessions: Arc<Sessions>,
    pub access: Access,
    pub files: FileService,
    /// Relays this host keeps a link to (one task each).
    relays: Mutex<HashSet<String>>,
    link_states: watch::Sender<LinkStates>,
    /// Notified by `daemon stop`.
    pub shutdown: Notify,
    /// Whether clients may move to a data channel (`tether pair --no-webrtc` turns it off).
    pub webrtc: AtomicBool,
    /// Web pushes to the browsers that subscribed.
    pub push: Arc<crate::host::push::Pusher>,
    me: Weak<Daemon>,
}

impl Daemon {
    pub fn new(
        state: StateDir,
        host: HostIdentity,
        store: Arc<Mutex<Store>>,
        sessions: Arc<Sessions>,
        files: FileService,
    ) -> Result<Arc<Daemon>, String> {
        let access = Access::new(store.clone())?;
        let webrtc = lock(&store).setting(WEBRTC_SETTING)?.is_none_or(|on| on == "on");
        let push = crate::host::push::Pusher::new(store.clone())?;
        sessions.push_with(push.clone());
        Ok(Arc::new_cyclic(|me| Daemon {
            push,
            access,
            files,
            state,
            host,
            store,
            sessions,
            relays: Mutex::new(HashSet::new()),
            link_states: watch::Sender::new(HashMap::new()),
            shutdown: Notify::new(),
            webrtc: AtomicBool::new(webrtc),
            me: me.clone(),
        }))
    }

    /// Keep a link to `relay` up from now on (once per relay). The link re-dials by itself; if
    /// its task ever ends anyway (a bug, a panic), a supervisor starts it again.
    pub fn ensure_relay_link(&self, relay: &str) {
        if !lock(&self.relays).insert(relay.to_owned()) {
            return;
        }
        let Some(daemon) = self.me.upgrade() else { return };
        let (me, relay) = (self.me.clone(), relay.to_owned());
        let link_to = relay.clone();
        tokio::spawn(keep_running(LINK_RESTART_PAUSE, move || relay_link::run(daemon.clone(), link_to.clone()), {
            let daemon = me;
            move |why| {
                eprintln!("tether daemon: the link to {relay} {why}; starting it again");
                if let Some(daemon) = daemon.upgrade() {
                    daemon.set_link_state(&relay, Err(format!("link {why}")));
                }
            }
        }));
    }

    /// `tether pair --no-webrtc` / `--webrtc`: for clients that come from now on, and after
    /// restarts. (Connections already on a data channel keep it.)
    pub fn set_webrtc(&self, enabled: bool) -> Result<(), String> {
        lock(&self.store).set_setting(WEBRTC_SETTING, if enabled { "on" } else { "off" })?;
        self.webrtc.store(enabled, Ordering::Relaxed);
        Ok(())
    }

    pub fn set_link_state(&self, relay: &str, up: Result<(), String>) {
        self.link_states.send_modify(|states| {
            let now = crate::time::now_ms();
            // "Since" is when it last went up, or down: a retry that fails again keeps it.
            let since_ms = match states.get(relay) {
                Some(was) if was.up.is_ok() == up.is_ok() => was.since_ms,
                _ => now,
            };
            states.insert(relay.to_owned(), LinkState { up, since_ms });
        });
    }

    /// Every relay link and how it stands, for `daemon status` and `service status`.
    pub fn relay_links(&self) -> Vec<tether_protocol::api::RelayLink> {
        let mut links: Vec<_> = self
            .link_states
            .borrow()
            .iter()
            .map(|(relay, state)| tether_protocol::api::RelayLink {
                relay: relay.clone(),
                linked: state.up.is_ok(),
                since_ms: state.since_ms,
                why: state.up.clone().err(),
            })
            .collect();
        links.sort_by(|a, b| a.relay.cmp(&b.relay));
        links
    }

    pub fn subscribe_link_states(&self) -> watch::Receiver<LinkStates> {
        self.link_states.subscribe()
    }
}

/// Run the task `start` makes, and again (after `pause`) whenever it ends or panics, telling
/// `ended` why ("ended", "crashed"); stops only when the runtime shuts down.
async fn keep_running<F, Fut>(pause: std::time::Duration, mut start: F, mut ended: impl FnMut(&str))
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let why = match tokio::spawn(start()).await {
            Err(e) if e.is_panic() => "crashed",
            Err(_) => return, // the runtime is shutting down
            Ok(()) => "ended",
        };
        ended(why);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::keep_running;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_started_again() {
        let starts = Arc::new(AtomicUsize::new(0));
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let (third_start, mut started_thrice) = tokio::sync::mpsc::unbounded_channel();
        let counter = starts.clone();
        let start = move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let third_start = third_start.clone();
            async move {
                match n {
                    0 => panic!("a bug in the link"),
                    1 => {}
                    _ => {
                        let _ = third_start.send(());
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let log = reasons.clone();
        let supervisor = tokio::spawn(keep_running(std::time::Duration::ZERO, start, move |why| {
            log.lock().expect("log").push(why.to_owned())
        }));
        tokio::time::timeout(std::time::Duration::from_secs(10), started_thrice.recv())
            .await
            .expect("started a third time");
        assert_eq!(*reasons.lock().expect("log"), ["crashed", "ended"]);
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        supervisor.abort();
    }
}
