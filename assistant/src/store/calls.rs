//! Transcribed phone calls (saved as each utterance finishes, so a dropped call keeps what was
//! said).

use super::{params, Db, Result};

/// A stored call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRow {
    pub id: String,
    pub started: i64,
    pub updated: i64,
    pub status: String,
    pub source: String,
    pub transcript: String,
}

impl Db {
    /// Inserts the call or updates its status and transcript.
    pub fn save_call(
        &self,
        id: &str,
        at: i64,
        status: &str,
        source: &str,
        transcript: &str,
        taken_by: &str,
    ) -> Result<()> {
        let n = self.execute(
            "UPDATE calls SET updated = ?1, status = ?2, transcript = ?3 WHERE id = ?4",
            params![at, status, transcript, id],
        )?;
        if n == 0 {
            self.execute(
                "INSERT INTO calls (id, started, updated, status, source, transcript, taken_by)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6)",
                params![id, at, status, source, transcript, taken_by],
            )?;
        }
        Ok(())
    }

    /// The latest calls.
    pub fn recent_calls(&self, limit: usize) -> Result<Vec<CallRow>> {
        Ok(self
            .query(
                "SELECT id, started, updated, status, source, transcript FROM calls
                 ORDER BY updated DESC LIMIT ?1",
                params![limit as i64],
            )?
            .iter()
            .map(|r| CallRow {
                id: r.text(0),
                started: r.int(1),
                updated: r.int(2),
                status: r.text(3),
                source: r.text(4),
                transcript: r.text(5),
            })
            .collect())
    }
}
