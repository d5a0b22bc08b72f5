//! The pre-fill flow end to end on the product's side: consent screen and redirect, the
//! callback (consent record), the download (transfer record, success or failure), the draft
//! with MyData values and their provenance, the resident's corrections, and the purges: the raw
//! payload never leaves memory, and a draft's MyData values are deleted when the application is
//! submitted or abandoned, or when the retention window ends.

use std::collections::BTreeMap;
use std::path::Path;

use knowledge::FormSchema;
use serde::{Deserialize, Serialize};

use super::client::{ConsentScreen, MyDataClient, MyDataError};
use super::log::{TransferLog, TransferRecord};
use super::prefill;
use crate::store::Db;

/// One value of a draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DraftValue {
    pub value: serde_json::Value,
    /// `mydata` or `resident`.
    pub source: String,
    /// 「資料來源：MyData 個人戶籍資料」 for MyData values.
    pub provenance: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftStatus {
    Open,
    Submitted,
    Abandoned,
    Expired,
}

/// An application being filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub id: String,
    pub form: String,
    pub values: BTreeMap<String, DraftValue>,
    pub created: u64,
    /// When MyData values are purged if the draft is still open (unix seconds).
    pub expires: u64,
    pub status: DraftStatus,
}

/// Drafts, as rows of the `drafts` table (the draft as JSON, with its status and window as
/// columns for the purge).
#[derive(Clone)]
pub struct DraftStore {
    db: Db,
}

impl DraftStore {
    /// Opens (creating) a database in `dir` holding drafts only.
    pub fn open(dir: &Path) -> std::io::Result<DraftStore> {
        std::fs::create_dir_all(dir)?;
        let db = Db::open(&dir.join("drafts.db")).map_err(std::io::Error::other)?;
        Ok(DraftStore::new(db))
    }

    /// Drafts in the product's database.
    pub fn new(db: Db) -> DraftStore {
        DraftStore { db }
    }

    pub fn save(&self, d: &Draft) -> std::io::Result<()> {
        let body = serde_json::to_string(d).map_err(std::io::Error::other)?;
        let status = serde_json::to_value(d.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        self.db
            .save_draft(
                &d.id,
                &d.form,
                &status,
                d.created as i64,
                d.expires as i64,
                &body,
            )
            .map_err(std::io::Error::other)
    }

    /// Ties a draft to the session that may see it.
    pub fn bind(&self, id: &str, session: &str) -> std::io::Result<()> {
        self.db
            .bind_draft(id, session)
            .map_err(std::io::Error::other)
    }

    /// The session a draft belongs to.
    pub fn owner(&self, id: &str) -> std::io::Result<Option<String>> {
        self.db.draft_owner(id).map_err(std::io::Error::other)
    }

    pub fn get(&self, id: &str) -> std::io::Result<Option<Draft>> {
        let body = self.db.draft_body(id).map_err(std::io::Error::other)?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// The resident corrects or adds a value.
    pub fn correct(
        &self,
        id: &str,
        field: &str,
        value: serde_json::Value,
    ) -> std::io::Result<Option<Draft>> {
        let Some(mut d) = self.get(id)? else {
            return Ok(None);
        };
        if d.status != DraftStatus::Open {
            return Ok(Some(d));
        }
        d.values.insert(
            field.to_string(),
            DraftValue {
                value,
                source: "resident".into(),
                provenance: None,
            },
        );
        self.save(&d)?;
        Ok(Some(d))
    }

    fn close(&self, id: &str, status: DraftStatus) -> std::io::Result<Option<Draft>> {
        let Some(mut d) = self.get(id)? else {
            return Ok(None);
        };
        let before = d.clone();
        d.values.retain(|_, v| v.source != "mydata");
        if status != DraftStatus::Expired {
            d.values.clear();
        }
        d.status = status;
        self.save(&d)?;
        Ok(Some(before))
    }

    /// Submits: returns the application as filled in and deletes the draft's values.
    pub fn submit(&self, id: &str) -> std::io::Result<Option<Draft>> {
        self.close(id, DraftStatus::Submitted)
    }

    /// The resident gives up: every value is deleted.
    pub fn abandon(&self, id: &str) -> std::io::Result<Option<Draft>> {
        if self.close(id, DraftStatus::Abandoned)?.is_none() {
            return Ok(None);
        }
        self.get(id)
    }

    /// Deletes the MyData values of open drafts whose window has passed; returns how many.
    pub fn purge_expired(&self, now: u64) -> std::io::Result<usize> {
        let ids = self
            .db
            .expired_open_drafts(now as i64)
            .map_err(std::io::Error::other)?;
        for id in &ids {
            self.close(id, DraftStatus::Expired)?;
        }
        Ok(ids.len())
    }
}

/// What a log row is about.
struct Ctx<'a> {
    form: &'a str,
    tx: &'a str,
    datasets: &'a [String],
    subject: &'a str,
    now: u64,
}

/// The flow's parts.
pub struct PrefillService {
    pub client: MyDataClient,
    pub log: TransferLog,
    pub drafts: DraftStore,
}

impl PrefillService {
    /// Step 1: the consent screen and where to send the browser.
    pub fn begin(
        &self,
        form: &FormSchema,
        tx_id: &str,
        return_url: &str,
    ) -> Result<(ConsentScreen, String), MyDataError> {
        let screen = ConsentScreen::for_form(form)?;
        let url = self.client.authorize_url(&screen, tx_id, return_url)?;
        Ok((screen, url))
    }

    fn record(&self, kind: &str, ctx: &Ctx<'_>, result: Result<(), String>) {
        let row = TransferRecord {
            time: ctx.now,
            kind: kind.into(),
            counterpart: "MyData 平臺".into(),
            subject: String::new(),
            form: ctx.form.to_string(),
            tx_id: ctx.tx.to_string(),
            datasets: ctx.datasets.to_vec(),
            success: result.is_ok(),
            reason: result.err(),
        };
        if let Err(e) = self.log.append(row, ctx.subject) {
            tracing::error!(error = %e, "writing the transfer log failed");
        }
    }

    /// Step 2: the platform's callback. Downloads and checks the package, records the consent
    /// and the transfer, and opens a draft with only the form's fields. The subject of the log
    /// rows is `subject_id` when the caller knows it, otherwise the ID number in the records
    /// (kept only as its keyed hash); a refusal before any data has no known subject.
    pub fn complete(
        &self,
        form: &FormSchema,
        subject_id: Option<&str>,
        callback: &BTreeMap<String, String>,
        now: u64,
        draft_id: &str,
    ) -> Result<Completed, MyDataError> {
        let screen = ConsentScreen::for_form(form)?;
        let datasets = screen.dataset_names();
        let tx = callback.get("tx_id").cloned().unwrap_or_default();
        let granted = callback.get("code").map(String::as_str) == Some("200");
        let ticket = callback.get("permission_ticket");
        let mut ctx = Ctx {
            form: &form.name,
            tx: &tx,
            datasets: &datasets,
            subject: subject_id.unwrap_or_default(),
            now,
        };
        let ticket = match (granted, ticket) {
            (true, Some(t)) => t,
            _ => {
                let code = callback.get("code").cloned().unwrap_or_default();
                self.record(
                    "consent",
                    &ctx,
                    Err(format!("consent not given (code {code})")),
                );
                return Err(MyDataError::Refused("民眾未同意傳送資料".into()));
            }
        };
        let fetched = self.client.fetch(&tx, ticket, &datasets);
        let found = fetched.as_ref().ok().and_then(subject_of);
        if subject_id.is_none() {
            if let Some(id) = &found {
                ctx.subject = id;
            }
        }
        self.record("consent", &ctx, Ok(()));
        self.record(
            "transfer",
            &ctx,
            fetched.as_ref().map(|_| ()).map_err(|e| format!("{e:?}")),
        );
        let subject = self.log.subject(ctx.subject);
        let records = fetched?;
        let values = prefill(form, &records)
            .into_iter()
            .map(|(k, p)| {
                (
                    k,
                    DraftValue {
                        value: p.value,
                        source: "mydata".into(),
                        provenance: Some(p.provenance),
                    },
                )
            })
            .collect();
        drop(records);
        let draft = Draft {
            id: draft_id.to_string(),
            form: form.name.clone(),
            values,
            created: now,
            expires: now + u64::from(screen.retention_days) * 86_400,
            status: DraftStatus::Open,
        };
        self.drafts
            .save(&draft)
            .map_err(|e| MyDataError::Format(e.to_string()))?;
        Ok(Completed { draft, subject })
    }
}

/// A finished transfer: the draft and the keyed hash of whom the data was about.
#[derive(Debug, Clone)]
pub struct Completed {
    pub draft: Draft,
    pub subject: String,
}

/// The resident's ID number in their records (household registration first).
fn subject_of(records: &super::Records) -> Option<String> {
    ["個人戶籍資料", "現戶全戶戶籍資料"]
        .iter()
        .filter_map(|d| records.get(*d))
        .chain(records.values())
        .find_map(|r| {
            r.get("id_number")
                .and_then(|v| v.as_str())
                .map(String::from)
        })
}
