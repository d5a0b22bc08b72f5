//! Uploaded guides: the files administrators add, kept in the database so that every instance
//! behind a load balancer serves the same ones (see `crate::kb::sync_uploads`).

use sha2::{Digest, Sha256};

use super::{now, params, Db, Result};

/// The SHA-256 of a guide file's text, hex.
pub fn guide_digest(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

impl Db {
    /// Adds or replaces the uploaded guide `name`.
    pub fn put_guide(&self, name: &str, content: &str, actor: &str) -> Result<()> {
        self.execute(
            "INSERT INTO guide_files (name, sha256, content, actor, updated) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (name) DO UPDATE SET sha256 = excluded.sha256, \
             content = excluded.content, actor = excluded.actor, updated = excluded.updated",
            params![name, guide_digest(content), content, actor, now()],
        )
        .map(|_| ())
    }

    /// Removes the uploaded guide `name`; false when there was none.
    pub fn delete_guide(&self, name: &str) -> Result<bool> {
        Ok(self.execute("DELETE FROM guide_files WHERE name = ?1", params![name])? > 0)
    }

    /// Every uploaded guide's name and digest, by name (cheap: what instances poll).
    pub fn guide_digests(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .query(
                "SELECT name, sha256 FROM guide_files ORDER BY name",
                params![],
            )?
            .into_iter()
            .map(|r| (r.text(0), r.text(1)))
            .collect())
    }

    /// One uploaded guide's text.
    pub fn guide_content(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .query_one(
                "SELECT content FROM guide_files WHERE name = ?1",
                params![name],
            )?
            .map(|r| r.text(0)))
    }
}
