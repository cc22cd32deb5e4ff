//! This machine's identity toward relays: a random secret in the state dir (mode 0600) whose
//! hash is the host id (see `tether_protocol::identity`). Created on first use, kept forever, so
//! a restarted agent reclaims the same id and earlier invites keep working.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use tether_protocol::identity::{self, HOST_SECRET_BYTES};

use crate::paths::StateDir;

pub struct HostIdentity {
    pub secret: [u8; HOST_SECRET_BYTES],
    pub host_id: String,
}

impl HostIdentity {
    pub fn load_or_create(state: &StateDir) -> Result<HostIdentity, String> {
        let path = state.root().join("host.secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => tether_protocol::hex::decode_array::<HOST_SECRET_BYTES>(text.trim())
                .ok_or_else(|| format!("{} is damaged; remove it to get a new host id", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; HOST_SECRET_BYTES];
                crate::random::random_bytes(&mut secret)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                file.write_all(tether_protocol::hex::encode(&secret).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                secret
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(HostIdentity { host_id: identity::host_id(&secret), secret })
    }
}
