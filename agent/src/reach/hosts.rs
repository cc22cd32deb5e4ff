//! Remembered hosts: `tether hosts add NAME INVITE`, then `-H NAME`. Kept in `hosts.json` in the
//! state dir, mode 0600 — what is kept is a key to a shell, so it is stored like one.
//!
//! An entry is the device credential the host issued this machine for the invite (its own
//! secret, so revoking the invite does not break it, and `tether devices rm` on the host does);
//! or, as kept by earlier versions or for a host that issues none, the link itself.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};
use tether_protocol::identity::{DeviceKey, HostAddress, HostRef};

use crate::paths::StateDir;

/// One remembered host as `hosts.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Device { relay: String, host_id: String, device: String, secret: String },
    Link(String),
}

impl Entry {
    fn host_ref(&self) -> Result<HostRef, String> {
        match self {
            Entry::Link(url) => HostRef::parse(url),
            Entry::Device { relay, host_id, device, secret } => Ok(HostRef::Device(DeviceKey {
                address: HostAddress { relay: relay.clone(), host_id: host_id.clone() },
                identity: device.clone(),
                secret: secret.clone(),
            })),
        }
    }
}

pub struct Hosts {
    path: std::path::PathBuf,
    by_name: BTreeMap<String, Entry>,
}

impl Hosts {
    pub fn load(state: &StateDir) -> Result<Hosts, String> {
        let path = state.root().join("hosts.json");
        let by_name = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Hosts { path, by_name })
    }

    /// Check that `name` can be a host's name here.
    pub fn check_name(name: &str) -> Result<(), String> {
        match name.is_empty() || name.contains("://") || name.contains(char::is_whitespace) {
            true => Err(format!("{name:?} is not a usable host name")),
            false => Ok(()),
        }
    }

    /// Keep `link` under `name`: a device's key as it is, any other link as its URL.
    pub fn add(&mut self, name: &str, link: &HostRef) -> Result<(), String> {
        Hosts::check_name(name)?;
        let entry = match link {
            HostRef::Device(key) => Entry::Device {
                relay: key.address.relay.clone(),
                host_id: key.address.host_id.clone(),
                device: key.identity.clone(),
                secret: key.secret.clone(),
            },
            other => Entry::Link(other.to_url()),
        };
        self.by_name.insert(name.to_owned(), entry);
        self.save()
    }

    pub fn remove(&mut self, name: &str) -> Result<(), String> {
        self.by_name.remove(name).ok_or_else(|| format!("no host named {name:?}: see `tether hosts ls`"))?;
        self.save()
    }

    /// (name, its link — never the secret): how each is reached.
    pub fn list(&self) -> Vec<(String, HostRef)> {
        self.by_name.iter().filter_map(|(name, entry)| entry.host_ref().ok().map(|l| (name.clone(), l))).collect()
    }

    /// `-H` takes an invite, a host's address (for its password) or a remembered name.
    pub fn resolve(&self, name_or_invite: &str) -> Result<HostRef, String> {
        if name_or_invite.contains("://") {
            return HostRef::parse(name_or_invite);
        }
        let entry = self
            .by_name
            .get(name_or_invite)
            .ok_or_else(|| format!("no host named {name_or_invite:?}: `tether hosts add NAME INVITE` first"))?;
        entry.host_ref()
    }

    fn save(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(&self.by_name).map_err(|e| e.to_string())?;
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
        file.write_all(text.as_bytes()).and_then(|_| file.sync_all()).map_err(|e| e.to_string())?;
        std::fs::rename(&temp, &self.path).map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}
