//! Where the agent keeps its state: `$TETHER_STATE_DIR`, else `$XDG_STATE_HOME/tether`, else
//! `~/.local/state/tether`. Everything lives below it: the socket, the SQLite database, the
//! session logs, the config file and the daemon's own log.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn from_env() -> Result<StateDir, String> {
        let root = if let Some(dir) = std::env::var_os("TETHER_STATE_DIR") {
            PathBuf::from(dir)
        } else if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            PathBuf::from(xdg).join("tether")
        } else if let Some(home) = std::env::var_os("HOME") {
            PathBuf::from(home).join(".local/state/tether")
        } else {
            return Err("cannot find a state directory: set TETHER_STATE_DIR or HOME".into());
        };
        // Absolute, so a daemon started elsewhere (it runs from `/`) finds the same place.
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir().map_err(|e| format!("cannot resolve {}: {e}", root.display()))?.join(root)
        };
        Ok(StateDir { root })
    }

    /// Create the directory tree, private to this user.
    pub fn create(&self) -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [self.root.clone(), self.logs()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("sessions.sqlite3")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn session_log(&self, id: &str) -> PathBuf {
        self.logs().join(format!("{id}.log"))
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
}
