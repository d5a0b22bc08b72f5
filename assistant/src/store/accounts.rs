//! Staff accounts, sessions (residents' anonymous ones and staff logins), and the failed-login
//! record with the locks it causes.

use super::{now, params, Db, Result};

/// A stored account.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub password_hash: String,
    pub role: String,
}

/// A stored session: role, username (staff) and the MyData subject it is tied to (residents).
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub role: String,
    pub username: Option<String>,
    pub subject: Option<String>,
}

/// An active login lock: `user:NAME` or `addr:ADDRESS`, locked until `until` (Unix seconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoginLock {
    pub key: String,
    pub until: i64,
    pub created: i64,
    pub failures: i64,
}

impl Db {
    /// Creates or replaces an account (the caller validated the name and hashed the password).
    pub fn upsert_user(&self, username: &str, password_hash: &str, role: &str) -> Result<()> {
        self.execute(
            "INSERT INTO users (username, password_hash, role, created) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, \
             role = excluded.role",
            params![username, password_hash, role, now()],
        )
        .map(|_| ())
    }

    pub fn user_count(&self) -> Result<i64> {
        Ok(self
            .query_one("SELECT COUNT(*) FROM users", &[])?
            .map(|r| r.int(0))
            .unwrap_or_default())
    }

    pub fn user(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(self
            .query_one(
                "SELECT password_hash, role FROM users WHERE username = ?1",
                params![username],
            )?
            .map(|r| UserRow {
                password_hash: r.text(0),
                role: r.text(1),
            }))
    }

    /// The session whose id hashes to `id_hash`.
    pub fn session(&self, id_hash: &str) -> Result<Option<SessionRow>> {
        Ok(self
            .query_one(
                "SELECT role, username, subject FROM sessions WHERE id_hash = ?1",
                params![id_hash],
            )?
            .map(|r| SessionRow {
                role: r.text(0),
                username: r.opt_text(1),
                subject: r.opt_text(2),
            }))
    }

    /// A new staff session after a login.
    pub fn insert_staff_session(&self, id_hash: &str, role: &str, username: &str) -> Result<()> {
        let t = now();
        self.execute(
            "INSERT INTO sessions (id_hash, csrf, role, username, subject, created, last_seen) \
             VALUES (?1, '', ?2, ?3, NULL, ?4, ?4)",
            params![id_hash, role, username, t],
        )
        .map(|_| ())
    }

    /// Ties a resident session to the MyData subject its transfer was about.
    pub fn bind_session_subject(&self, id_hash: &str, subject: &str) -> Result<()> {
        self.execute(
            "INSERT INTO sessions (id_hash, csrf, role, username, subject, created, last_seen) \
             VALUES (?1, '', 'resident', NULL, ?2, ?3, ?3) ON CONFLICT (id_hash) DO UPDATE SET \
             subject = excluded.subject, last_seen = excluded.last_seen",
            params![id_hash, subject, now()],
        )
        .map(|_| ())
    }

    pub fn delete_session(&self, id_hash: &str) -> Result<()> {
        self.execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])
            .map(|_| ())
    }

    /// Records a failed login; returns the failures of the account and of the address since
    /// `since` (this one included).
    pub fn record_login_failure(
        &self,
        username: &str,
        addr: &str,
        since: i64,
    ) -> Result<(i64, i64)> {
        self.execute(
            "INSERT INTO login_failures (time, username, addr) VALUES (?1, ?2, ?3)",
            params![now(), username, addr],
        )?;
        let count = |sql: &str, key: &str| -> Result<i64> {
            Ok(self
                .query_one(sql, params![key, since])?
                .map(|r| r.int(0))
                .unwrap_or(0))
        };
        Ok((
            count(
                "SELECT COUNT(*) FROM login_failures WHERE username = ?1 AND time >= ?2",
                username,
            )?,
            count(
                "SELECT COUNT(*) FROM login_failures WHERE addr = ?1 AND time >= ?2",
                addr,
            )?,
        ))
    }

    /// Forgets an account's failures (after a successful login or a lifted lock).
    pub fn clear_login_failures(&self, username: &str) -> Result<()> {
        self.execute(
            "DELETE FROM login_failures WHERE username = ?1",
            params![username],
        )
        .map(|_| ())
    }

    /// Locks `key` until `until` (extending an existing lock).
    pub fn lock_login(&self, key: &str, until: i64, failures: i64) -> Result<()> {
        self.execute(
            "INSERT INTO login_locks (key, until, created, failures) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (key) DO UPDATE SET until = excluded.until, failures = excluded.failures",
            params![key, until, now(), failures],
        )
        .map(|_| ())
    }

    /// The latest end of the active locks among `keys`, if any.
    pub fn login_locked_until(&self, keys: &[&str], at: i64) -> Result<Option<i64>> {
        let mut latest = None;
        for k in keys {
            if let Some(r) = self.query_one(
                "SELECT until FROM login_locks WHERE key = ?1 AND until > ?2",
                params![*k, at],
            )? {
                latest = latest.max(Some(r.int(0)));
            }
        }
        Ok(latest)
    }

    /// Active locks, for administrators.
    pub fn login_locks(&self, at: i64) -> Result<Vec<LoginLock>> {
        Ok(self
            .query(
                "SELECT key, until, created, failures FROM login_locks WHERE until > ?1 \
                 ORDER BY until DESC",
                params![at],
            )?
            .into_iter()
            .map(|r| LoginLock {
                key: r.text(0),
                until: r.int(1),
                created: r.int(2),
                failures: r.int(3),
            })
            .collect())
    }

    /// Lifts a lock (and forgets the failures behind it); false when there was none.
    pub fn lift_login_lock(&self, key: &str) -> Result<bool> {
        let n = self.execute("DELETE FROM login_locks WHERE key = ?1", params![key])?;
        if let Some(user) = key.strip_prefix("user:") {
            self.clear_login_failures(user)?;
        } else if let Some(addr) = key.strip_prefix("addr:") {
            self.execute("DELETE FROM login_failures WHERE addr = ?1", params![addr])?;
        }
        Ok(n > 0)
    }
}
