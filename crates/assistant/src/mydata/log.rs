//! Consent records and the transfer log (kept at least a year, then purged): time,
//! counterpart, the subject as a keyed hash (never the ID number), datasets, success. A
//! resident can see exactly the rows about themself.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
fn hmac(key: &[u8], msg: &[u8]) -> String {
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

/// An append-only JSONL log.
pub struct TransferLog {
    path: PathBuf,
    key: Vec<u8>,
    lock: Mutex<()>,
}

impl TransferLog {
    pub fn open(path: &Path, key: &[u8]) -> std::io::Result<TransferLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(TransferLog {
            path: path.to_path_buf(),
            key: key.to_vec(),
            lock: Mutex::new(()),
        })
    }

    /// The keyed hash that stands for an ID number in the log.
    pub fn subject(&self, id_number: &str) -> String {
        hmac(&self.key, id_number.trim().to_uppercase().as_bytes())
    }

    /// Appends a row (fsync'd: a committed row survives a crash).
    pub fn append(&self, mut row: TransferRecord, id_number: &str) -> std::io::Result<()> {
        row.subject = self.subject(id_number);
        let _g = self.lock.lock().expect("log lock");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = serde_json::to_vec(&row).map_err(std::io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }

    fn rows(&self) -> std::io::Result<Vec<TransferRecord>> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(t
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The rows about one resident (what their own access-log page shows).
    pub fn for_subject(&self, id_number: &str) -> std::io::Result<Vec<TransferRecord>> {
        let s = self.subject(id_number);
        Ok(self
            .rows()?
            .into_iter()
            .filter(|r| r.subject == s)
            .collect())
    }

    /// Deletes rows older than `keep_secs` before `now`; returns how many.
    pub fn purge_older_than(&self, now: u64, keep_secs: u64) -> std::io::Result<usize> {
        let _g = self.lock.lock().expect("log lock");
        let rows = self.rows()?;
        let keep: Vec<&TransferRecord> =
            rows.iter().filter(|r| r.time + keep_secs >= now).collect();
        let removed = rows.len() - keep.len();
        let tmp = self.path.with_extension("tmp");
        let mut out = Vec::new();
        for r in keep {
            out.extend(serde_json::to_vec(r).map_err(std::io::Error::other)?);
            out.push(b'\n');
        }
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(removed)
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
