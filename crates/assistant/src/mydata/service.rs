//! The pre-fill flow end to end on the product's side: consent screen and redirect, the
//! callback (consent record), the download (transfer record, success or failure), the draft
//! with MyData values and their provenance, the resident's corrections, and the purges: the raw
//! payload never leaves memory, and a draft's MyData values are deleted when the application is
//! submitted or abandoned, or when the retention window ends.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use knowledge::FormSchema;
use serde::{Deserialize, Serialize};

use super::client::{ConsentScreen, MyDataClient, MyDataError};
use super::log::{TransferLog, TransferRecord};
use super::prefill;

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

/// Drafts, one JSON file each (written to a temporary file, synced, then renamed).
pub struct DraftStore {
    dir: PathBuf,
}

impl DraftStore {
    pub fn open(dir: &Path) -> std::io::Result<DraftStore> {
        std::fs::create_dir_all(dir)?;
        Ok(DraftStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        let safe: String = id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    pub fn save(&self, d: &Draft) -> std::io::Result<()> {
        let tmp = self.path(&d.id).with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(d).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(&d.id))
    }

    pub fn get(&self, id: &str) -> std::io::Result<Option<Draft>> {
        match std::fs::read(self.path(id)) {
            Ok(b) => Ok(serde_json::from_slice(&b).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
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
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let id = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                if let Some(d) = self.get(&id)? {
                    if d.status == DraftStatus::Open && d.expires <= now {
                        self.close(&id, DraftStatus::Expired)?;
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
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

    /// Step 2: the platform's callback. Records the consent, downloads and checks the package,
    /// records the transfer, and opens a draft with only the form's fields.
    pub fn complete(
        &self,
        form: &FormSchema,
        subject_id: &str,
        callback: &BTreeMap<String, String>,
        now: u64,
        draft_id: &str,
    ) -> Result<Draft, MyDataError> {
        let screen = ConsentScreen::for_form(form)?;
        let datasets = screen.dataset_names();
        let tx = callback.get("tx_id").cloned().unwrap_or_default();
        let granted = callback.get("code").map(String::as_str) == Some("200");
        let ticket = callback.get("permission_ticket");
        let consent = match (granted, ticket) {
            (true, Some(_)) => Ok(()),
            _ => Err(format!(
                "consent not given (code {})",
                callback.get("code").cloned().unwrap_or_default()
            )),
        };
        let ctx = Ctx {
            form: &form.name,
            tx: &tx,
            datasets: &datasets,
            subject: subject_id,
            now,
        };
        self.record("consent", &ctx, consent.clone());
        if consent.is_err() {
            return Err(MyDataError::Refused("民眾未同意傳送資料".into()));
        }
        let fetched = self.client.fetch(
            &tx,
            ticket.map(String::as_str).unwrap_or_default(),
            &datasets,
        );
        self.record(
            "transfer",
            &ctx,
            fetched.as_ref().map(|_| ()).map_err(|e| format!("{e:?}")),
        );
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
        Ok(draft)
    }
}
