//! Resident conversations (their state as JSON, owned by one session) and hand-offs.

use super::{now, params, Db, Result};

/// A conversation waiting for an agent.
#[derive(Debug, Clone)]
pub struct HandoffRow {
    pub id: String,
    pub updated: i64,
    pub state: String,
}

/// A stored conversation's state (JSON) for the agent's view.
pub type ConversationRow = String;

impl Db {
    /// The state of conversation `id` if it belongs to `session`.
    pub fn conversation_of(&self, id: &str, session: &str) -> Result<Option<ConversationRow>> {
        Ok(self
            .query_one(
                "SELECT state FROM conversations WHERE id = ?1 AND session = ?2",
                params![id, session],
            )?
            .map(|r| r.text(0)))
    }

    /// The state of conversation `id`, whoever owns it (agents).
    pub fn conversation(&self, id: &str) -> Result<Option<ConversationRow>> {
        Ok(self
            .query_one("SELECT state FROM conversations WHERE id = ?1", params![id])?
            .map(|r| r.text(0)))
    }

    pub fn save_conversation(&self, id: &str, session: &str, state_json: &str) -> Result<()> {
        let t = now();
        self.execute(
            "INSERT INTO conversations (id, session, state, handoff, created, updated) \
             VALUES (?1, ?2, ?3, 0, ?4, ?4) ON CONFLICT (id) DO UPDATE SET \
             state = excluded.state, updated = excluded.updated",
            params![id, session, state_json, t],
        )
        .map(|_| ())
    }

    /// Flags the session's conversation for an agent; false when there is no such conversation.
    pub fn request_handoff(&self, id: &str, session: &str) -> Result<bool> {
        let n = self.execute(
            "UPDATE conversations SET handoff = 1, updated = ?3 WHERE id = ?1 AND session = ?2",
            params![id, session, now()],
        )?;
        Ok(n > 0)
    }

    /// Conversations waiting for a person, latest first.
    pub fn handoffs(&self, limit: usize) -> Result<Vec<HandoffRow>> {
        Ok(self
            .query(
                "SELECT id, updated, state FROM conversations WHERE handoff = 1 \
                 ORDER BY updated DESC LIMIT ?1",
                params![limit as i64],
            )?
            .into_iter()
            .map(|r| HandoffRow {
                id: r.text(0),
                updated: r.int(1),
                state: r.text(2),
            })
            .collect())
    }

    /// Deletes conversations, calls and knowledge-gap questions last touched before
    /// `conversations_before`, idle staff
    /// sessions last seen before `sessions_before`, and MyData transactions started before
    /// `pending_before`.
    pub fn purge_old(
        &self,
        conversations_before: i64,
        sessions_before: i64,
        pending_before: i64,
    ) -> Result<()> {
        self.execute(
            "DELETE FROM conversations WHERE updated < ?1",
            params![conversations_before],
        )?;
        self.execute(
            "DELETE FROM calls WHERE updated < ?1",
            params![conversations_before],
        )?;
        self.execute(
            "DELETE FROM knowledge_gaps WHERE time < ?1",
            params![conversations_before],
        )?;
        self.execute(
            "DELETE FROM sessions WHERE last_seen < ?1 AND role <> 'resident'",
            params![sessions_before],
        )?;
        self.execute(
            "DELETE FROM mydata_pending WHERE created < ?1",
            params![pending_before],
        )?;
        self.execute(
            "DELETE FROM login_failures WHERE time < ?1",
            params![sessions_before],
        )?;
        self.execute("DELETE FROM login_locks WHERE until < ?1", params![now()])?;
        Ok(())
    }
}
