//! 1999 cases.

use super::{params, Db, Result, Row};
use crate::intake::case::{Case, CaseStatus};

const CASE_COLUMNS: &str =
    "id, created, updated, status, category, bureau, fields, summary, created_by, reports";

fn read_case(r: &Row) -> Case {
    Case {
        id: r.text(0),
        created: r.int(1),
        updated: r.int(2),
        status: CaseStatus::parse(&r.text(3)),
        category: r.opt_text(4),
        bureau: r.opt_text(5),
        fields: serde_json::from_str(&r.text(6)).unwrap_or_default(),
        summary: r.text(7),
        created_by: r.text(8),
        reports: r.int(9),
    }
}

impl Db {
    pub fn case(&self, id: &str) -> Result<Option<Case>> {
        Ok(self
            .query_one(
                &format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = ?1"),
                params![id],
            )?
            .map(|r| read_case(&r)))
    }

    /// Inserts the case or updates its status, category, bureau and fields.
    pub fn save_case(&self, c: &Case) -> Result<()> {
        self.execute(
            &format!(
                "INSERT INTO cases ({CASE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, \
                 status = excluded.status, category = excluded.category, \
                 bureau = excluded.bureau, fields = excluded.fields, reports = excluded.reports"
            ),
            params![
                c.id,
                c.created,
                c.updated,
                c.status.as_str(),
                c.category,
                c.bureau,
                serde_json::to_string(&c.fields).unwrap_or_default(),
                c.summary,
                c.created_by,
                c.reports
            ],
        )
        .map(|_| ())
    }

    /// The latest cases, newest first.
    pub fn recent_cases(&self, limit: usize) -> Result<Vec<Case>> {
        Ok(self
            .query(
                &format!(
                    "SELECT {CASE_COLUMNS} FROM cases ORDER BY created DESC, id DESC LIMIT ?1"
                ),
                params![limit as i64],
            )?
            .iter()
            .map(read_case)
            .collect())
    }
}
