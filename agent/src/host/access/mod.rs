//! Who may come in and who is connected through which way in, and what happens when a way in
//! is revoked.
//!
//! Ways in are SRP credentials: invites, remembered devices and the host password live in the
//! store (a device also has a row there: name, how it came, when last seen); ephemeral
//! invites (`tether pair --ephemeral`) live only here, in memory, so a crashed or restarted agent
//! can never leave one behind. This module keeps the live side:
//! - how many authenticated connections each credential has (a guard per connection, so a
//!   dropped client can never be miscounted);
//! - which sessions each remote credential started, to stop them when it is revoked or ends;
//! - who is a guest: a credential that is not one of the host's own lasting full-access ways in
//!   (the password, a lasting invite, a device) — an ephemeral invite, a read-only one, or one
//!   that has ended. A guest manages nothing (`dispatch`) and sees only the sessions it started,
//!   or, a viewer, those it was shared (all when none were named);
//! - what each way in may do (`Grant`: read-only, which sessions, until when): an expired one is
//!   no credential at all, so it is refused at the proof; a viewer's requests are checked at the
//!   host's door (`peer::requests`), never trusted to the client;
//! - an event feed: relay links drop a revoked credential's connections at once, and
//!   `pair --ephemeral` reports comings and goings;
//! - the failed-login throttle (`throttle`).

pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tether_protocol::api::Grant;
use tether_protocol::handshake::Credential;
use tether_protocol::identity::is_device_identity;
use tether_protocol::sync::lock;
use tokio::sync::broadcast;

use crate::host::dispatch::LOCAL_USER;
use crate::host::store::{Store, StoredDevice};
use crate::time::now_ms;
use throttle::Throttle;

/// Events buffered per subscriber; a subscriber that falls further behind skips the oldest.
const EVENT_QUEUE: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessEvent {
    Connected { identity: String },
    Disconnected { identity: String },
    Revoked { identity: String },
}

#[derive(Default)]
struct Live {
    /// Authenticated connections per identity.
    connections: HashMap<String, usize>,
    /// Ephemeral invites.
    ephemeral: HashMap<String, Credential>,
    /// Sessions started through each remote credential (while it lasts).
    started: HashMap<String, Vec<String>>,
}

pub struct Access {
    /// Lasting credentials (invites, the password) are kept here, and cached in `stored`: a
    /// handshake looks its credential up in memory, and every change goes through `Access`.
    store: Arc<Mutex<Store>>,
    stored: Mutex<HashMap<String, Credential>>,
    /// What each credential (stored or ephemeral) may do; absent: everything.
    grants: Mutex<HashMap<String, Grant>>,
    live: Arc<Mutex<Live>>,
    events: broadcast::Sender<AccessEvent>,
    pub throttle: Throttle,
}

impl Access {
    pub fn new(store: Arc<Mutex<Store>>) -> Result<Access, String> {
        let stored = lock(&store).credentials()?.into_iter().map(|c| (c.identity.clone(), c)).collect();
        let grants = lock(&store).grants()?.into_iter().filter(|(_, g)| *g != Grant::default()).collect();
        Ok(Access {
            store,
            stored: Mutex::new(stored),
            grants: Mutex::new(grants),
            live: Arc::default(),
            events: broadcast::channel(EVENT_QUEUE).0,
            throttle: Throttle::default(),
        })
    }

    /// The credential `identity` may authenticate with right now (`None`: unknown, revoked or
    /// expired).
    pub fn credential(&self, identity: &str) -> Option<Credential> {
        if self.expired(identity).is_some() {
            return None;
        }
        let ephemeral = lock(&self.live).ephemeral.get(identity).cloned();
        ephemeral.or_else(|| lock(&self.stored).get(identity).cloned())
    }

    /// When `identity`'s grant ran out, if it has (ms since the Unix epoch).
    pub fn expired(&self, identity: &str) -> Option<u64> {
        lock(&self.grants).get(identity).and_then(|g| g.expires_at).filter(|at| *at <= now_ms())
    }

    /// What `identity` may do.
    pub fn grant(&self, identity: &str) -> Grant {
        lock(&self.grants).get(identity).cloned().unwrap_or_default()
    }

    /// Whether `identity` may only watch.
    pub fn is_viewer(&self, identity: &str) -> bool {
        lock(&self.grants).get(identity).is_some_and(|g| g.read_only)
    }

    /// Keep `credential` (created at `now`, ms) with full access. One that replaces another of
    /// its identity (a new password) revokes the old one: its connections close.
    pub fn store(&self, credential: Credential, now: u64) -> Result<(), String> {
        self.store_granting(credential, Grant::default(), now)
    }

    /// Keep `credential`, letting its holder do what `grant` says.
    pub fn store_granting(&self, credential: Credential, grant: Grant, now: u64) -> Result<(), String> {
        lock(&self.store).add_credential(&credential, &grant, now)?;
        self.set_grant(&credential.identity, grant);
        let identity = credential.identity.clone();
        if lock(&self.stored).insert(identity.clone(), credential).is_some() {
            let _ = self.events.send(AccessEvent::Revoked { identity });
        }
        Ok(())
    }

    /// Lasting ways in, without secrets: (identity, created at).
    pub fn stored_list(&self) -> Result<Vec<(String, u64)>, String> {
        lock(&self.store).credential_list()
    }

    /// Keep a new device's credential and row (both or neither). Fails if its id is taken.
    pub fn add_device(&self, credential: Credential, device: &StoredDevice) -> Result<(), String> {
        if self.credential(&credential.identity).is_some() {
            return Err(format!("{} is taken", credential.identity));
        }
        lock(&self.store).add_device(&credential, device)?;
        lock(&self.stored).insert(credential.identity.clone(), credential);
        Ok(())
    }

    pub fn devices(&self) -> Result<Vec<StoredDevice>, String> {
        lock(&self.store).devices()
    }

    pub fn rename_device(&self, id: &str, name: &str) -> Result<bool, String> {
        lock(&self.store).rename_device(id, name)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AccessEvent> {
        self.events.subscribe()
    }

    /// Count an authenticated connection of `identity` until the guard drops. `verifier` is the
    /// one it proved itself against: a changed password makes it stale.
    pub fn connected(&self, identity: &str, verifier: Vec<u8>) -> ConnectionGuard {
        *lock(&self.live).connections.entry(identity.to_owned()).or_default() += 1;
        let _ = self.events.send(AccessEvent::Connected { identity: identity.to_owned() });
        let device = is_device_identity(identity).then(|| self.store.clone());
        seen(device.as_ref(), identity);
        ConnectionGuard {
            identity: identity.to_owned(),
            verifier,
            live: self.live.clone(),
            events: self.events.clone(),
            device,
        }
    }

    pub fn connections(&self, identity: &str) -> usize {
        lock(&self.live).connections.get(identity).copied().unwrap_or(0)
    }

    pub fn add_ephemeral(&self, credential: Credential, grant: Grant) {
        self.set_grant(&credential.identity, grant);
        lock(&self.live).ephemeral.insert(credential.identity.clone(), credential);
    }

    fn set_grant(&self, identity: &str, grant: Grant) {
        let mut grants = lock(&self.grants);
        match grant == Grant::default() {
            true => grants.remove(identity),
            false => grants.insert(identity.to_owned(), grant),
        };
    }

    pub fn ephemeral_identities(&self) -> Vec<String> {
        lock(&self.live).ephemeral.keys().cloned().collect()
    }

    pub fn is_ephemeral(&self, identity: &str) -> bool {
        lock(&self.live).ephemeral.contains_key(identity)
    }

    /// A session was started through `identity` (not the host's own user): remembered, to stop
    /// it when that way in is revoked or ends, and so a guest sees it.
    pub fn started(&self, identity: &str, session: &str) {
        if identity != LOCAL_USER {
            lock(&self.live).started.entry(identity.to_owned()).or_default().push(session.to_owned());
        }
    }

    /// Whether `identity` is a guest: not the host's user, nor one of its lasting full-access
    /// ways in.
    pub fn is_guest(&self, identity: &str) -> bool {
        identity != LOCAL_USER && (!lock(&self.stored).contains_key(identity) || self.is_viewer(identity))
    }

    /// Whether `identity` may see session `id` (the full id): all of them but for a guest, which
    /// sees those it started — or, a viewer, those it was shared (all, when none were named).
    pub fn may_see(&self, identity: &str, id: &str) -> bool {
        if let Some(grant) = lock(&self.grants).get(identity).filter(|g| g.read_only) {
            return grant.sessions.is_empty() || grant.sessions.iter().any(|s| s == id);
        }
        !self.is_guest(identity)
            || lock(&self.live).started.get(identity).is_some_and(|ids| ids.iter().any(|s| s == id))
    }

    /// Forget `identity` (stored or ephemeral) and close its connections. Returns whether it
    /// existed, and the sessions started through it (for the caller to stop).
    pub fn revoke(&self, identity: &str) -> Result<(bool, Vec<String>), String> {
        let stored = lock(&self.store).remove_credential(identity)?;
        lock(&self.stored).remove(identity);
        lock(&self.grants).remove(identity);
        let mut live = lock(&self.live);
        let existed = stored || live.ephemeral.remove(identity).is_some();
        let started = live.started.remove(identity).unwrap_or_default();
        drop(live);
        let _ = self.events.send(AccessEvent::Revoked { identity: identity.to_owned() });
        Ok((existed, started))
    }
}

/// A device's connection began or ended: when it was last seen.
fn seen(device_store: Option<&Arc<Mutex<Store>>>, identity: &str) {
    if let Some(Err(e)) = device_store.map(|store| lock(store).device_seen(identity, now_ms())) {
        eprintln!("tether daemon: {e}");
    }
}

/// One authenticated connection; dropping it (the client left, failed or was revoked) uncounts it.
pub struct ConnectionGuard {
    identity: String,
    verifier: Vec<u8>,
    live: Arc<Mutex<Live>>,
    events: broadcast::Sender<AccessEvent>,
    /// For a device: the store, to say when it was last seen.
    device: Option<Arc<Mutex<Store>>>,
}

impl ConnectionGuard {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether the credential it authenticated with is still there, unchanged.
    pub fn still_valid(&self, access: &Access) -> bool {
        access.credential(&self.identity).is_some_and(|c| c.verifier == self.verifier)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut live = lock(&self.live);
        if let Some(count) = live.connections.get_mut(&self.identity) {
            *count -= 1;
            if *count == 0 {
                live.connections.remove(&self.identity);
            }
        }
        drop(live);
        seen(self.device.as_ref(), &self.identity);
        let _ = self.events.send(AccessEvent::Disconnected { identity: self.identity.clone() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Access over an in-memory store (SQLite's `:memory:`).
    fn new_access() -> Access {
        Access::new(Arc::new(Mutex::new(Store::open(std::path::Path::new(":memory:")).expect("store"))))
            .expect("access")
    }

    #[test]
    fn connections_are_counted_until_their_guards_drop() {
        let access = new_access();
        let mut events = access.subscribe();
        let credential = |verifier| Credential { identity: "invite-a".into(), salt: vec![], verifier };
        access.store(credential(vec![1]), 0).expect("store");
        let first = access.connected("invite-a", vec![1]);
        let second = access.connected("invite-a", vec![1]);
        assert!(first.still_valid(&access));
        access.store(credential(vec![2]), 0).expect("store");
        assert!(!first.still_valid(&access), "a changed verifier is another credential");
        assert_eq!(events.try_recv(), Ok(AccessEvent::Connected { identity: "invite-a".into() }));
        assert_eq!(events.try_recv(), Ok(AccessEvent::Connected { identity: "invite-a".into() }));
        assert_eq!(events.try_recv(), Ok(AccessEvent::Revoked { identity: "invite-a".into() }));
        access.revoke("invite-a").expect("revoke");
        assert!(!first.still_valid(&access));
        assert_eq!(access.connections("invite-a"), 2);
        drop(first);
        assert_eq!(access.connections("invite-a"), 1);
        drop(second);
        assert_eq!(access.connections("invite-a"), 0);
    }

    #[test]
    fn every_remote_way_in_remembers_its_sessions_and_a_guest_sees_only_those() {
        let access = new_access();
        let credential = Credential { identity: "invite-e".into(), salt: vec![1; 16], verifier: vec![2; 8] };
        let lasting = Credential { identity: "invite-l".into(), salt: vec![1; 16], verifier: vec![3; 8] };
        access.add_ephemeral(credential.clone(), Grant::default());
        access.store(lasting, 0).expect("store");
        access.started("invite-e", "s1");
        access.started("invite-l", "s2");
        access.started(LOCAL_USER, "s3");
        assert_eq!(access.credential("invite-e"), Some(credential));
        // The guest sees its own; the host's user and a lasting invite see all.
        assert!(access.is_guest("invite-e") && !access.is_guest("invite-l") && !access.is_guest(LOCAL_USER));
        assert!(access.may_see("invite-e", "s1") && !access.may_see("invite-e", "s2"));
        assert!(access.may_see("invite-l", "s1") && access.may_see(LOCAL_USER, "s2"));
        assert_eq!(access.revoke("invite-e"), Ok((true, vec!["s1".to_owned()])));
        assert!(!access.is_ephemeral("invite-e"));
        assert_eq!(access.credential("invite-e"), None);
        // An ended guest is still a guest, and sees nothing.
        assert!(access.is_guest("invite-e") && !access.may_see("invite-e", "s1"));
        assert_eq!(access.revoke("invite-l"), Ok((true, vec!["s2".to_owned()])));
        assert_eq!(access.revoke("invite-other"), Ok((false, Vec::new())));
    }
}
