//! Consent records and the transfer log (kept at least a year, then purged): time,
//! counterpart, the subject as a keyed hash (never the ID number), datasets, success. A
//! resident can see exactly the rows about themself.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

use crate::store::{Db, TransferLogStore, TransferRow};

/// One row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRecord {
    /// Unix seconds.
    pub time: u64,
    /// `consent` or `transfer`.
    pub kind: String,
    pub counterpart: String,
    /// HMAC-SHA256 of the subject's ID number under the log key.
    pub subject: String,
    pub form: String,
    pub tx_id: String,
    pub datasets: Vec<String>,
    pub success: bool,
    /// Why it failed (no personal data).
    #[serde(default)]
    pub reason: Option<String>,
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// The log, as rows of the `transfer_log` table.
#[derive(Clone)]
pub struct TransferLog {
    db: Db,
    key: Vec<u8>,
}

impl TransferLog {
    /// Opens (creating) a database file holding the log.
    pub fn open(path: &Path, key: &[u8]) -> std::io::Result<TransferLog> {
        let db = Db::open(path).map_err(std::io::Error::other)?;
        Ok(TransferLog::new(db, key))
    }

    /// The log in the product's database.
    pub fn new(db: Db, key: &[u8]) -> TransferLog {
        TransferLog {
            db,
            key: key.to_vec(),
        }
    }

    /// The keyed hash that stands for an ID number in the log (empty when unknown).
    pub fn subject(&self, id_number: &str) -> String {
        let id = id_number.trim().to_uppercase();
        if id.is_empty() {
            return String::new();
        }
        hmac(&self.key, id.as_bytes())
    }

    /// Appends a row (committed with a synced WAL: a row that was written survives a crash).
    pub fn append(&self, mut row: TransferRecord, id_number: &str) -> std::io::Result<()> {
        row.subject = self.subject(id_number);
        self.db
            .insert_transfer(&TransferRow {
                time: row.time as i64,
                kind: row.kind,
                counterpart: row.counterpart,
                subject: row.subject,
                form: row.form,
                tx_id: row.tx_id,
                datasets_json: serde_json::to_string(&row.datasets).unwrap_or_default(),
                success: row.success,
                reason: row.reason,
            })
            .map_err(std::io::Error::other)
    }

    fn read(&self, which: TransferLogStore<'_>) -> std::io::Result<Vec<TransferRecord>> {
        let rows = self.db.transfers(which).map_err(std::io::Error::other)?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// The rows about one resident (what their own access-log page shows).
    pub fn for_subject(&self, id_number: &str) -> std::io::Result<Vec<TransferRecord>> {
        let s = self.subject(id_number);
        self.for_subject_hash(&s)
    }

    /// The rows whose subject is this keyed hash (never the rows with no known subject).
    pub fn for_subject_hash(&self, subject: &str) -> std::io::Result<Vec<TransferRecord>> {
        if subject.is_empty() {
            return Ok(Vec::new());
        }
        self.read(TransferLogStore::Subject(subject))
    }

    /// The latest rows, for administrators (subjects stay hashed), oldest first.
    pub fn recent(&self, limit: usize) -> std::io::Result<Vec<TransferRecord>> {
        let mut rows = self.read(TransferLogStore::Recent(limit))?;
        rows.reverse();
        Ok(rows)
    }

    /// Deletes rows older than `keep_secs` before `now`; returns how many.
    pub fn purge_older_than(&self, now: u64, keep_secs: u64) -> std::io::Result<usize> {
        let cutoff = now.saturating_sub(keep_secs);
        self.db
            .purge_transfers_before(cutoff as i64)
            .map_err(std::io::Error::other)
    }
}

fn record(r: TransferRow) -> TransferRecord {
    TransferRecord {
        time: r.time as u64,
        kind: r.kind,
        counterpart: r.counterpart,
        subject: r.subject,
        form: r.form,
        tx_id: r.tx_id,
        datasets: serde_json::from_str(&r.datasets_json).unwrap_or_default(),
        success: r.success,
        reason: r.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
