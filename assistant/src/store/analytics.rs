//! The case history behind decision support (`crate::analytics`).

use super::{Db, Result, Row, Val};

/// One case as stored for analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    /// `import` (a published dispatch file) or `product` (a case dispatched here).
    pub source: String,
    pub case_no: String,
    pub category: String,
    pub district: String,
    pub village: String,
    pub address: String,
    pub block: String,
    /// YYYYMMDD.
    pub day: i64,
    /// HHMMSS as published, or empty.
    pub time: String,
    /// 0–23, or -1 when the time is unknown.
    pub hour: i64,
}

const COLUMNS: usize = 10;
/// Rows per INSERT (under SQLite's and PostgreSQL's parameter limits).
const BATCH: usize = 3000;

impl Db {
    /// Adds the records; a record whose (category, address, day, time) is already stored is
    /// skipped. Returns how many were added.
    pub fn add_case_records(&self, records: &[CaseRecord]) -> Result<usize> {
        let mut added = 0;
        for chunk in records.chunks(BATCH) {
            let mut sql = String::from(
                "INSERT INTO case_records (source, case_no, category, district, village, \
                 address, block, day, time, hour) VALUES ",
            );
            let mut params: Vec<Val> = Vec::with_capacity(chunk.len() * COLUMNS);
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for c in 0..COLUMNS {
                    if c > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("?{}", i * COLUMNS + c + 1));
                }
                sql.push(')');
                params.extend([
                    Val::from(&r.source),
                    Val::from(&r.case_no),
                    Val::from(&r.category),
                    Val::from(&r.district),
                    Val::from(&r.village),
                    Val::from(&r.address),
                    Val::from(&r.block),
                    Val::Int(r.day),
                    Val::from(&r.time),
                    Val::Int(r.hour),
                ]);
            }
            sql.push_str(" ON CONFLICT (category, address, day, time) DO NOTHING");
            added += self.execute(&sql, &params)?;
        }
        Ok(added)
    }

    /// The highest record id (0 when empty): a reader that has seen up to it has seen all.
    pub fn last_case_record(&self) -> Result<i64> {
        Ok(self
            .query_one("SELECT COALESCE(MAX(id), 0) FROM case_records", &[])?
            .map(|r| r.int(0))
            .unwrap_or(0))
    }

    /// Every record after `after_id`, in id order, handed to `f` as (id, category, district,
    /// village, block, address, day, hour).
    pub fn scan_case_records(
        &self,
        after_id: i64,
        mut f: impl FnMut(i64, &Row) + Send,
    ) -> Result<()> {
        self.for_each(
            "SELECT id, category, district, village, block, address, day, hour \
             FROM case_records WHERE id > ?1 ORDER BY id",
            &[Val::Int(after_id)],
            |r| f(r.int(0), r),
        )
    }

    /// The (address, block) of these record ids (the repeat-location table's rows).
    pub fn case_record_addresses(&self, ids: &[i64]) -> Result<Vec<(i64, String, String)>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
            let params: Vec<Val> = chunk.iter().map(|i| Val::Int(*i)).collect();
            for r in self.query(
                &format!(
                    "SELECT id, address, block FROM case_records WHERE id IN ({})",
                    marks.join(",")
                ),
                &params,
            )? {
                out.push((r.int(0), r.text(1), r.text(2)));
            }
        }
        Ok(out)
    }
}

impl Db {
    /// Records per month (YYYYMM) between two days (YYYYMMDD), grouped by the database: the
    /// peer `eval analytics` measures the in-memory history against.
    pub fn monthly_case_counts_sql(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        Ok(self
            .query(
                "SELECT day / 100, COUNT(*) FROM case_records WHERE day BETWEEN ?1 AND ?2 \
                 GROUP BY day / 100 ORDER BY day / 100",
                &[Val::Int(from), Val::Int(to)],
            )?
            .iter()
            .map(|r| (r.int(0), r.int(1)))
            .collect())
    }
}

/// A question the guides did not answer well (its personal details already removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapRow {
    pub time: i64,
    pub question: String,
    /// `handoff` or `low_confidence`.
    pub reason: String,
    /// The guide it was answered from (empty for a hand-off).
    pub doc_id: String,
    pub bureau: String,
}

impl Db {
    pub fn add_gap(&self, g: &GapRow) -> Result<()> {
        self.execute(
            "INSERT INTO knowledge_gaps (time, question, reason, doc_id, bureau) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            &[
                Val::Int(g.time),
                Val::from(&g.question),
                Val::from(&g.reason),
                Val::from(&g.doc_id),
                Val::from(&g.bureau),
            ],
        )
        .map(|_| ())
    }

    /// The gaps recorded since `since` (unix seconds), newest first.
    pub fn gaps_since(&self, since: i64) -> Result<Vec<GapRow>> {
        Ok(self
            .query(
                "SELECT time, question, reason, doc_id, bureau FROM knowledge_gaps \
                 WHERE time >= ?1 ORDER BY time DESC, id DESC LIMIT 5000",
                &[Val::Int(since)],
            )?
            .iter()
            .map(|r| GapRow {
                time: r.int(0),
                question: r.text(1),
                reason: r.text(2),
                doc_id: r.text(3),
                bureau: r.text(4),
            })
            .collect())
    }
}
