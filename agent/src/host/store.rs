//! Session metadata in SQLite (the output itself is in per-session log files beside it).
//!
//! The database is the agent's memory across restarts: finished sessions stay listed with their
//! exit codes, and sessions that were live when the agent died are marked `unknown` at the next
//! start instead of being forgotten or shown as running.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use tether_protocol::api::{Grant, SessionInfo, SessionStatus};
use tether_protocol::handshake::Credential;

/// Settings key of the relay this host stays connected to.
pub const RELAY_SETTING: &str = "relay";
/// Settings key of the name clients see for this host.
pub const NAME_SETTING: &str = "name";

pub struct Store {
    db: Connection,
}

/// A remembered device's row (its credential is kept beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    pub id: String,
    pub name: String,
    pub via: String,
    pub created_at: u64,
    pub last_seen: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id          TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    command     TEXT NOT NULL,      -- JSON array of argv
    cwd         TEXT NOT NULL,
    pid         INTEGER,
    status      TEXT NOT NULL,
    exit_code   INTEGER,
    created_at  INTEGER NOT NULL,   -- ms since the Unix epoch
    started_at  INTEGER,
    ended_at    INTEGER,
    output_bytes INTEGER NOT NULL DEFAULT 0,
    notify      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
-- SRP verifiers of the ways in (invites, password): never the secrets themselves. What each
-- lets its holder do (read-only, which sessions, until when) is `grant_json` (added by `open`).
CREATE TABLE IF NOT EXISTS credentials (
    identity    TEXT PRIMARY KEY,
    salt        BLOB NOT NULL,
    verifier    BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
-- Remembered devices: each is also a credential (`device-…`), kept beside it.
CREATE TABLE IF NOT EXISTS devices (
    identity    TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    via         TEXT NOT NULL,      -- the way in it came through when remembered
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
-- Browsers' web push subscriptions, each a remembered device's (dropped with it).
CREATE TABLE IF NOT EXISTS push_subscriptions (
    endpoint    TEXT PRIMARY KEY,
    p256dh      TEXT NOT NULL,
    auth        TEXT NOT NULL,
    device      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

fn db_error(e: rusqlite::Error) -> String {
    format!("session database: {e}")
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, String> {
        let db = Connection::open(path).map_err(db_error)?;
        // WAL: readers never wait for the writer; NORMAL sync is durable across process crashes.
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(db_error)?;
        db.execute_batch(SCHEMA).map_err(db_error)?;
        // Stores made before grants: a credential kept without one may do everything.
        let has_grant: i64 = db
            .query_row("SELECT COUNT(*) FROM pragma_table_info('credentials') WHERE name = 'grant_json'", [], |r| {
                r.get(0)
            })
            .map_err(db_error)?;
        if has_grant == 0 {
            db.execute_batch("ALTER TABLE credentials ADD COLUMN grant_json TEXT NOT NULL DEFAULT '{}'")
                .map_err(db_error)?;
        }
        Ok(Store { db })
    }

    /// Sessions that were live when the previous agent ended cannot be live now.
    pub fn mark_orphans(&self, now: u64) -> Result<usize, String> {
        self.db
            .execute(
                "UPDATE sessions SET status = 'unknown', ended_at = COALESCE(ended_at, ?1)
                 WHERE status IN ('created', 'running', 'stopping')",
                params![now as i64],
            )
            .map_err(db_error)
    }

    pub fn insert(&self, s: &SessionInfo) -> Result<(), String> {
        let command = serde_json::to_string(&s.command).map_err(|e| e.to_string())?;
        self.db
            .execute(
                "INSERT INTO sessions (id, title, command, cwd, pid, status, exit_code, created_at,
                                       started_at, ended_at, output_bytes, notify)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    s.id,
                    s.title,
                    command,
                    s.cwd,
                    s.pid,
                    s.status.as_str(),
                    s.exit_code,
                    s.created_at as i64,
                    s.started_at.map(|t| t as i64),
                    s.ended_at.map(|t| t as i64),
                    s.output_bytes as i64,
                    s.notify
                ],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// Write back the mutable fields of a session.
    pub fn update(&self, s: &SessionInfo) -> Result<(), String> {
        self.db
            .execute(
                "UPDATE sessions SET pid = ?2, status = ?3, exit_code = ?4, started_at = ?5,
                                     ended_at = ?6, output_bytes = ?7, title = ?8
                 WHERE id = ?1",
                params![
                    s.id,
                    s.pid,
                    s.status.as_str(),
                    s.exit_code,
                    s.started_at.map(|t| t as i64),
                    s.ended_at.map(|t| t as i64),
                    s.output_bytes as i64,
                    s.title
                ],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    pub fn get(&self, id: &str) -> Result<Option<SessionInfo>, String> {
        self.db.query_row(&format!("{SELECT} WHERE id = ?1"), params![id], from_row).optional().map_err(db_error)
    }

    /// Ids starting with `prefix`, newest first (at most `limit`).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, String> {
        let pattern = format!("{}%", prefix.replace(['%', '_'], ""));
        let mut stmt = self
            .db
            .prepare("SELECT id FROM sessions WHERE id LIKE ?1 ORDER BY created_at DESC LIMIT ?2")
            .map_err(db_error)?;
        let rows = stmt.query_map(params![pattern, limit as i64], |r| r.get(0)).map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    pub fn newest(&self) -> Result<Option<SessionInfo>, String> {
        self.db
            .query_row(&format!("{SELECT} ORDER BY created_at DESC, rowid DESC LIMIT 1"), [], from_row)
            .optional()
            .map_err(db_error)
    }

    /// All sessions, newest first.
    pub fn list(&self) -> Result<Vec<SessionInfo>, String> {
        let mut stmt = self.db.prepare(&format!("{SELECT} ORDER BY created_at DESC, rowid DESC")).map_err(db_error)?;
        let rows = stmt.query_map([], from_row).map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }
}

impl Store {
    pub fn add_credential(&self, credential: &Credential, grant: &Grant, now: u64) -> Result<(), String> {
        let grant = serde_json::to_string(grant).map_err(|e| e.to_string())?;
        self.db
            .execute(
                "INSERT OR REPLACE INTO credentials (identity, salt, verifier, created_at, grant_json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![credential.identity, credential.salt, credential.verifier, now as i64, grant],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// What each stored credential may do (one unreadable reads as read-only, nothing shared,
    /// expired: never more than it was given).
    pub fn grants(&self) -> Result<Vec<(String, Grant)>, String> {
        let mut stmt = self.db.prepare("SELECT identity, grant_json FROM credentials").map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| {
                let text: String = r.get(1)?;
                let grant = serde_json::from_str(&text).unwrap_or(Grant {
                    read_only: true,
                    sessions: vec![String::new()],
                    expires_at: Some(0),
                });
                Ok((r.get(0)?, grant))
            })
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    pub fn credentials(&self) -> Result<Vec<Credential>, String> {
        let mut stmt = self.db.prepare("SELECT identity, salt, verifier FROM credentials").map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok(Credential { identity: r.get(0)?, salt: r.get(1)?, verifier: r.get(2)? }))
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// (identity, created_at) of every stored credential, oldest first.
    pub fn credential_list(&self) -> Result<Vec<(String, u64)>, String> {
        let mut stmt =
            self.db.prepare("SELECT identity, created_at FROM credentials ORDER BY created_at").map_err(db_error)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// Whether a credential was there to remove (a device's row goes with it).
    pub fn remove_credential(&self, identity: &str) -> Result<bool, String> {
        self.db.execute("DELETE FROM devices WHERE identity = ?1", params![identity]).map_err(db_error)?;
        self.db.execute("DELETE FROM push_subscriptions WHERE device = ?1", params![identity]).map_err(db_error)?;
        self.db
            .execute("DELETE FROM credentials WHERE identity = ?1", params![identity])
            .map(|n| n > 0)
            .map_err(db_error)
    }

    /// Keep a device: its credential and its row, both or neither. Fails if the id is taken.
    pub fn add_device(&mut self, credential: &Credential, device: &StoredDevice) -> Result<(), String> {
        let tx = self.db.transaction().map_err(db_error)?;
        tx.execute(
            "INSERT INTO credentials (identity, salt, verifier, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![credential.identity, credential.salt, credential.verifier, device.created_at as i64],
        )
        .map_err(db_error)?;
        tx.execute(
            "INSERT INTO devices (identity, name, via, created_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![device.id, device.name, device.via, device.created_at as i64, device.last_seen as i64],
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)
    }

    /// Every remembered device, oldest first.
    pub fn devices(&self) -> Result<Vec<StoredDevice>, String> {
        let mut stmt = self
            .db
            .prepare("SELECT identity, name, via, created_at, last_seen FROM devices ORDER BY created_at")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredDevice {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    via: r.get(2)?,
                    created_at: r.get::<_, i64>(3)? as u64,
                    last_seen: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// Whether there was such a device.
    pub fn rename_device(&self, id: &str, name: &str) -> Result<bool, String> {
        self.db
            .execute("UPDATE devices SET name = ?2 WHERE identity = ?1", params![id, name])
            .map(|n| n > 0)
            .map_err(db_error)
    }

    pub fn device_seen(&self, id: &str, now: u64) -> Result<(), String> {
        self.db
            .execute("UPDATE devices SET last_seen = ?2 WHERE identity = ?1", params![id, now as i64])
            .map(|_| ())
            .map_err(db_error)
    }

    /// Keep (or renew) a push subscription of `device`.
    pub fn add_subscription(
        &self,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        device: &str,
        now: u64,
    ) -> Result<(), String> {
        self.db
            .execute(
                "INSERT OR REPLACE INTO push_subscriptions (endpoint, p256dh, auth, device, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![endpoint, p256dh, auth, device, now as i64],
            )
            .map(|_| ())
            .map_err(db_error)
    }

    /// Every push subscription: (endpoint, p256dh, auth).
    pub fn subscriptions(&self) -> Result<Vec<(String, String, String)>, String> {
        let mut stmt = self.db.prepare("SELECT endpoint, p256dh, auth FROM push_subscriptions").map_err(db_error)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    pub fn remove_subscription(&self, endpoint: &str) -> Result<(), String> {
        self.db
            .execute("DELETE FROM push_subscriptions WHERE endpoint = ?1", params![endpoint])
            .map(|_| ())
            .map_err(db_error)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), String> {
        self.db
            .execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", params![key, value])
            .map(|_| ())
            .map_err(db_error)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>, String> {
        self.db
            .query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(db_error)
    }
}

const SELECT: &str = "SELECT id, title, command, cwd, pid, status, exit_code, created_at, started_at,
                             ended_at, output_bytes, notify FROM sessions";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    let command: String = row.get(2)?;
    let status: String = row.get(5)?;
    Ok(SessionInfo {
        id: row.get(0)?,
        title: row.get(1)?,
        command: serde_json::from_str(&command).unwrap_or_default(),
        cwd: row.get(3)?,
        pid: row.get(4)?,
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Unknown),
        exit_code: row.get(6)?,
        created_at: row.get::<_, i64>(7)? as u64,
        started_at: row.get::<_, Option<i64>>(8)?.map(|t| t as u64),
        ended_at: row.get::<_, Option<i64>>(9)?.map(|t| t as u64),
        output_bytes: row.get::<_, i64>(10)? as u64,
        waiting_for_input: false,
        input_reason: None,
        notify: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, created_at: u64, status: SessionStatus) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            title: "t".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            cwd: "/".into(),
            pid: Some(42),
            status,
            exit_code: None,
            created_at,
            started_at: Some(created_at),
            ended_at: None,
            output_bytes: 0,
            waiting_for_input: false,
            input_reason: None,
            notify: true,
        }
    }

    #[test]
    fn survives_reopen_and_marks_orphans() {
        let dir = std::env::temp_dir().join(format!("tether-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s.sqlite3");
        let _ = std::fs::remove_file(&path);
        {
            let store = Store::open(&path).expect("open");
            store.insert(&info("aaa111", 1, SessionStatus::Running)).expect("insert");
            let mut done = info("aab222", 2, SessionStatus::Running);
            store.insert(&done).expect("insert");
            done.status = SessionStatus::Stopped;
            done.exit_code = Some(3);
            store.update(&done).expect("update");
        }
        let mut store = Store::open(&path).expect("reopen");
        assert_eq!(store.mark_orphans(99).expect("mark"), 1);
        let orphan = store.get("aaa111").expect("get").expect("present");
        assert_eq!((orphan.status, orphan.ended_at), (SessionStatus::Unknown, Some(99)));
        let done = store.get("aab222").expect("get").expect("present");
        assert_eq!((done.status, done.exit_code, done.notify), (SessionStatus::Stopped, Some(3), true));
        assert_eq!(store.ids_with_prefix("aa", 5).expect("prefix"), vec!["aab222", "aaa111"]);
        assert_eq!(store.newest().expect("newest").map(|s| s.id), Some("aab222".into()));
        assert_eq!(store.list().expect("list").len(), 2);
        let credential = Credential { identity: "invite-1".into(), salt: vec![1; 16], verifier: vec![2; 384] };
        store.add_credential(&credential, &Grant::default(), 5).expect("credential");
        assert_eq!(store.credentials().expect("credentials"), vec![credential]);
        assert_eq!(store.credential_list().expect("list"), vec![("invite-1".to_owned(), 5)]);
        assert!(store.remove_credential("invite-1").expect("remove"));
        assert!(!store.remove_credential("invite-1").expect("remove again"));
        assert!(store.credentials().expect("credentials").is_empty());
        // A device is a credential and a row: both or neither.
        let device =
            Credential { identity: "device-0011223344556677".into(), salt: vec![3; 16], verifier: vec![4; 384] };
        let row = StoredDevice {
            id: device.identity.clone(),
            name: "Chromium on Linux".into(),
            via: "invite-1".into(),
            created_at: 7,
            last_seen: 7,
        };
        store.add_device(&device, &row).expect("device");
        assert!(store.add_device(&device, &row).is_err(), "an id is taken once");
        assert!(store.rename_device(&row.id, "laptop").expect("rename"));
        store.device_seen(&row.id, 9).expect("seen");
        let listed = store.devices().expect("devices");
        assert_eq!(listed, vec![StoredDevice { name: "laptop".into(), last_seen: 9, ..row.clone() }]);
        assert!(store.remove_credential(&row.id).expect("remove"));
        assert!(store.devices().expect("devices").is_empty() && store.credentials().expect("credentials").is_empty());
        store.set_setting("relay", "http://r").expect("setting");
        assert_eq!(store.setting("relay").expect("setting"), Some("http://r".into()));
        let _ = std::fs::remove_dir_all(dir);
    }
}
