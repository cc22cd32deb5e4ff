//! `config.toml` in the state dir. Every field is optional; flags to `tether daemon` override.
//!
//! ```toml
//! ring_bytes = 1048576          # output kept in memory per session for attach/resume
//! max_running_sessions = 64
//! prompt_quiet_ms = 400         # silence after a prompt-like line before flagging input-needed
//! prompt_patterns = ['^\$ $']   # extra regexes, matched against the cursor's line
//! notify_hook = "/path/to/cmd"  # run with args: SESSION_ID REASON (and TETHER_* env)
//! desktop_notifications = true
//! notify_by_default = false     # sessions notify only when started with --notify
//! files = true                  # the file service (browser file manager, tether cp / fs)
//! files_root = "/srv/share"     # confine the file service to this directory
//! ```

use serde::Deserialize;

use crate::paths::StateDir;

pub const DEFAULT_RING_BYTES: usize = 1 << 20; // 1 MiB
pub const DEFAULT_MAX_RUNNING: usize = 64;
pub const DEFAULT_PROMPT_QUIET_MS: u64 = 400;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub ring_bytes: usize,
    pub max_running_sessions: usize,
    pub prompt_quiet_ms: u64,
    pub prompt_patterns: Vec<String>,
    pub notify_hook: Option<String>,
    pub desktop_notifications: bool,
    pub notify_by_default: bool,
    pub files: bool,
    pub files_root: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring_bytes: DEFAULT_RING_BYTES,
            max_running_sessions: DEFAULT_MAX_RUNNING,
            prompt_quiet_ms: DEFAULT_PROMPT_QUIET_MS,
            prompt_patterns: Vec::new(),
            notify_hook: None,
            desktop_notifications: true,
            notify_by_default: false,
            files: true,
            files_root: None,
        }
    }
}

impl Config {
    /// Read the state dir's config.toml; a missing file means defaults, a broken one is an error.
    pub fn load(state: &StateDir) -> Result<Config, String> {
        let path = state.config();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let config: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if config.ring_bytes < 4096 {
            return Err(format!("{}: ring_bytes must be at least 4096", path.display()));
        }
        Ok(config)
    }
}
