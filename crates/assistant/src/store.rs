//! The product's state in SQLite: conversations, cases, application drafts, MyData consent and
//! transfer records, the audit log, accounts and sessions. WAL journal with `synchronous =
//! FULL`, so a row whose write returned survives `kill -9` and power loss; schema changes are
//! numbered migrations applied at open, in one transaction each.
//!
//! The SQL is kept to what SQLite and PostgreSQL share (TEXT, BIGINT, no SQLite-only
//! functions), so a PostgreSQL backend can run the same migrations.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

/// The migrations, in order. Never edit one that has shipped: add another.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        role TEXT NOT NULL,
        username TEXT,
        subject TEXT,
        created BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    );
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        state TEXT NOT NULL,
        handoff BIGINT NOT NULL DEFAULT 0,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE INDEX conversations_session ON conversations (session);
    CREATE TABLE cases (
        id TEXT PRIMARY KEY,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        status TEXT NOT NULL,
        category TEXT,
        bureau TEXT,
        fields TEXT NOT NULL,
        summary TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE drafts (
        id TEXT PRIMARY KEY,
        session TEXT,
        form TEXT NOT NULL,
        status TEXT NOT NULL,
        created BIGINT NOT NULL,
        expires BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE mydata_pending (
        tx_id TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        form TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE transfer_log (
        id INTEGER PRIMARY KEY,
        time BIGINT NOT NULL,
        kind TEXT NOT NULL,
        counterpart TEXT NOT NULL,
        subject TEXT NOT NULL,
        form TEXT NOT NULL,
        tx_id TEXT NOT NULL,
        datasets TEXT NOT NULL,
        success BIGINT NOT NULL,
        reason TEXT
    );
    CREATE INDEX transfer_log_subject ON transfer_log (subject);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        time BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL
    );",
];

/// A shared handle on the database (cheap to clone).
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

/// A failure of the store, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database at {path} is newer (schema {found}) than this program (schema {known}); upgrade the program")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Adds what was being done to a SQLite error.
pub trait Context<T> {
    fn what(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn what(self, what: &str) -> Result<T> {
        self.map_err(|source| StoreError::Sql {
            what: what.to_string(),
            source,
        })
    }
}

impl Db {
    /// Opens (creating) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).what(&format!("open {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .what("enable WAL")?;
        Self::setup(conn, &path.display().to_string())
    }

    /// A private in-memory database (tests, `--no-store` runs).
    pub fn memory() -> Result<Db> {
        Self::setup(
            Connection::open_in_memory().what("open in memory")?,
            ":memory:",
        )
    }

    fn setup(mut conn: Connection, path: &str) -> Result<Db> {
        conn.pragma_update(None, "synchronous", "FULL")
            .what("set synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .what("enable foreign keys")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .what("set busy timeout")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
        )
        .what("create schema_migrations")?;
        let current: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .what("read schema version")?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew {
                path: path.to_string(),
                found: current,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = conn.transaction().what("begin migration")?;
            tx.execute_batch(sql)
                .what(&format!("apply migration {}", i + 1))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied) VALUES (?1, ?2)",
                params![i as i64 + 1, now()],
            )
            .what("record migration")?;
            tx.commit().what("commit migration")?;
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection (blocking the calling thread for the lock).
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }

    /// Runs `f` on a blocking thread (for async handlers).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || db.with(f)).await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The schema version.
    pub fn version(&self) -> Result<i64> {
        self.with(|c| {
            c.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .what("read schema version")
        })
    }

    /// Appends an audit row (who did what to which record; never resident text).
    pub fn audit(&self, actor: &str, action: &str, target: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit_log (time, actor, action, target) VALUES (?1, ?2, ?3, ?4)",
                params![now(), actor, action, target],
            )
            .what("append audit row")
            .map(|_| ())
        })
    }

    /// The latest audit rows, newest first.
    pub fn audit_rows(&self, limit: usize) -> Result<Vec<AuditRow>> {
        self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT time, actor, action, target FROM audit_log ORDER BY id DESC LIMIT ?1",
                )
                .what("query audit")?;
            let rows = st
                .query_map([limit as i64], |r| {
                    Ok(AuditRow {
                        time: r.get(0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                    })
                })
                .what("query audit")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .what("read audit")?;
            Ok(rows)
        })
    }

    /// One value by key from a single-column query.
    pub fn scalar<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<T>> {
        self.with(|c| c.query_row(sql, params, |r| r.get(0)).optional().what(sql))
    }
}

/// One audit row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub time: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let db = Db::open(&p).unwrap();
        assert_eq!(db.version().unwrap(), MIGRATIONS.len() as i64);
        db.audit("admin", "login", "-").unwrap();
        drop(db);
        // Reopening applies nothing and keeps the rows.
        let db = Db::open(&p).unwrap();
        assert_eq!(db.audit_rows(10).unwrap().len(), 1);
        db.with(|c| {
            c.execute(
                "INSERT INTO schema_migrations (version, applied) VALUES (99, 0)",
                [],
            )
            .what("bump")
        })
        .unwrap();
        drop(db);
        let e = Db::open(&p).err().expect("a newer schema must be refused");
        assert!(e.to_string().contains("newer"), "{e}");
    }
}
