//! MyData rows: pending authorisations (single use), application drafts, and the consent and
//! transfer log. The domain types (`mydata::log::TransferLog`, `mydata::service::DraftStore`)
//! build on these statements.

use super::{params, Db, Result, Row, Val};

/// One transfer-log row as stored (datasets as a JSON list).
#[derive(Debug, Clone)]
pub struct TransferRow {
    pub time: i64,
    pub kind: String,
    pub counterpart: String,
    pub subject: String,
    pub form: String,
    pub tx_id: String,
    pub datasets_json: String,
    pub success: bool,
    pub reason: Option<String>,
}

/// Which transfer-log rows to read.
pub enum TransferLogStore<'a> {
    /// The rows whose subject is this keyed hash, oldest first.
    Subject(&'a str),
    /// The latest rows, newest first.
    Recent(usize),
}

fn transfer(r: &Row) -> TransferRow {
    TransferRow {
        time: r.int(0),
        kind: r.text(1),
        counterpart: r.text(2),
        subject: r.text(3),
        form: r.text(4),
        tx_id: r.text(5),
        datasets_json: r.text(6),
        success: r.int(7) != 0,
        reason: r.opt_text(8),
    }
}

impl Db {
    /// Remembers an authorisation started by `session` for `form`.
    pub fn insert_pending_mydata(
        &self,
        tx_id: &str,
        session: &str,
        form: &str,
        at: i64,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO mydata_pending (tx_id, session, form, created) VALUES (?1, ?2, ?3, ?4)",
            params![tx_id, session, form, at],
        )
        .map(|_| ())
    }

    /// Takes the pending authorisation (one atomic statement, so a replayed or foreign tx_id
    /// finds nothing); returns its form.
    pub fn take_pending_mydata(&self, tx_id: &str, session: &str) -> Result<Option<String>> {
        Ok(self
            .query_one(
                "DELETE FROM mydata_pending WHERE tx_id = ?1 AND session = ?2 RETURNING form",
                params![tx_id, session],
            )?
            .map(|r| r.text(0)))
    }

    pub fn insert_transfer(&self, row: &TransferRow) -> Result<()> {
        self.execute(
            "INSERT INTO transfer_log (time, kind, counterpart, subject, form, tx_id, \
             datasets, success, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.time,
                row.kind.as_str(),
                row.counterpart.as_str(),
                row.subject.as_str(),
                row.form.as_str(),
                row.tx_id.as_str(),
                row.datasets_json.as_str(),
                row.success,
                row.reason.clone()
            ],
        )
        .map(|_| ())
    }

    pub fn transfers(&self, which: TransferLogStore<'_>) -> Result<Vec<TransferRow>> {
        const COLUMNS: &str =
            "SELECT time, kind, counterpart, subject, form, tx_id, datasets, success, reason \
             FROM transfer_log";
        let (filter, args): (&str, Vec<Val>) = match which {
            TransferLogStore::Subject(s) => ("WHERE subject = ?1 ORDER BY id", params![s].to_vec()),
            TransferLogStore::Recent(n) => {
                ("ORDER BY id DESC LIMIT ?1", params![n as i64].to_vec())
            }
        };
        Ok(self
            .query(&format!("{COLUMNS} {filter}"), &args)?
            .iter()
            .map(transfer)
            .collect())
    }

    /// Deletes transfer-log rows older than `cutoff`; returns how many.
    pub fn purge_transfers_before(&self, cutoff: i64) -> Result<usize> {
        self.execute("DELETE FROM transfer_log WHERE time < ?1", params![cutoff])
    }

    /// Inserts or updates a draft (its JSON body, with status and window as columns).
    pub fn save_draft(
        &self,
        id: &str,
        form: &str,
        status: &str,
        created: i64,
        expires: i64,
        body: &str,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO drafts (id, session, form, status, created, expires, body) \
             VALUES (?1, NULL, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET \
             status = excluded.status, expires = excluded.expires, body = excluded.body",
            params![id, form, status, created, expires, body],
        )
        .map(|_| ())
    }

    /// Ties a draft to the session that may see it.
    pub fn bind_draft(&self, id: &str, session: &str) -> Result<()> {
        self.execute(
            "UPDATE drafts SET session = ?2 WHERE id = ?1",
            params![id, session],
        )
        .map(|_| ())
    }

    /// The session a draft belongs to.
    pub fn draft_owner(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .query_one("SELECT session FROM drafts WHERE id = ?1", params![id])?
            .and_then(|r| r.opt_text(0)))
    }

    /// A draft's JSON body.
    pub fn draft_body(&self, id: &str) -> Result<Option<String>> {
        Ok(self
            .query_one("SELECT body FROM drafts WHERE id = ?1", params![id])?
            .map(|r| r.text(0)))
    }

    /// Open drafts whose MyData window ended by `at`.
    pub fn expired_open_drafts(&self, at: i64) -> Result<Vec<String>> {
        Ok(self
            .query(
                "SELECT id FROM drafts WHERE status = 'open' AND expires <= ?1",
                params![at],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect())
    }
}
