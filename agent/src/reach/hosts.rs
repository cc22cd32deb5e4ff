//! Remembered hosts: `tether hosts add NAME INVITE`, then `-H NAME`. Kept in `hosts.json` in the
//! state dir, mode 0600 — an invite is a key to a shell, so it is stored like one.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use tether_protocol::identity::HostRef;

use crate::paths::StateDir;

pub struct Hosts {
    path: std::path::PathBuf,
    by_name: BTreeMap<String, String>,
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

    pub fn add(&mut self, name: &str, invite: &str) -> Result<(), String> {
        if name.is_empty() || name.contains("://") || name.contains(char::is_whitespace) {
            return Err(format!("{name:?} is not a usable host name"));
        }
        let link = HostRef::parse(invite)?;
        self.by_name.insert(name.to_owned(), link.to_url());
        self.save()
    }

    pub fn remove(&mut self, name: &str) -> Result<(), String> {
        self.by_name.remove(name).ok_or_else(|| format!("no host named {name:?}: see `tether hosts ls`"))?;
        self.save()
    }

    /// (name, relay, host id): never the secret.
    pub fn list(&self) -> Vec<(String, String, String)> {
        self.by_name
            .iter()
            .filter_map(|(name, url)| {
                HostRef::parse(url).ok().map(|l| (name.clone(), l.address().relay, l.address().host_id))
            })
            .collect()
    }

    /// `-H` takes an invite, a host's address (for its password) or a remembered name.
    pub fn resolve(&self, name_or_invite: &str) -> Result<HostRef, String> {
        if name_or_invite.contains("://") {
            return HostRef::parse(name_or_invite);
        }
        let url = self
            .by_name
            .get(name_or_invite)
            .ok_or_else(|| format!("no host named {name_or_invite:?}: `tether hosts add NAME INVITE` first"))?;
        HostRef::parse(url)
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
