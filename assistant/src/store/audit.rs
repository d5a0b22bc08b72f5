//! The audit log: who did what to which record (never a resident's text).

use super::{now, params, Db, Result};

/// One audit row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub time: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
}

impl Db {
    /// Appends an audit row (who did what to which record; never resident text).
    pub fn audit(&self, actor: &str, action: &str, target: &str) -> Result<()> {
        self.execute(
            "INSERT INTO audit_log (time, actor, action, target) VALUES (?1, ?2, ?3, ?4)",
            params![now(), actor, action, target],
        )
        .map(|_| ())
    }

    /// The latest audit rows, newest first.
    pub fn audit_rows(&self, limit: usize) -> Result<Vec<AuditRow>> {
        Ok(self
            .query(
                "SELECT time, actor, action, target FROM audit_log ORDER BY id DESC LIMIT ?1",
                params![limit as i64],
            )?
            .into_iter()
            .map(|r| AuditRow {
                time: r.int(0),
                actor: r.text(1),
                action: r.text(2),
                target: r.text(3),
            })
            .collect())
    }
}
