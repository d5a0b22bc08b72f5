//! MyData on the service-provider side: pre-filling a form from the datasets a resident released
//! with consent. Only the fields the form maps (`mydata = {dataset, field}` in its schema) are
//! kept — everything else in the records is dropped here (minimum data) — and each value carries
//! its provenance (「資料來源：MyData 個人戶籍資料」).

use knowledge::validate::{date_iso, taiwan_id};
use knowledge::{FieldKind, FormSchema};
use serde::Serialize;
use std::collections::BTreeMap;

/// A value taken from a MyData record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prefilled {
    pub value: serde_json::Value,
    pub dataset: String,
    /// Shown next to the value: 「資料來源：MyData 個人戶籍資料」.
    pub provenance: String,
}

/// Records by dataset name, each a JSON object.
pub type Records = BTreeMap<String, serde_json::Map<String, serde_json::Value>>;

/// A form's fields filled from `records`; fields whose dataset or key is absent, or whose value
/// fails its validator, stay empty (the resident fills them in).
pub fn prefill(form: &FormSchema, records: &Records) -> BTreeMap<String, Prefilled> {
    let mut out = BTreeMap::new();
    for f in &form.fields {
        let Some(src) = &f.mydata else { continue };
        if !form.mydata.contains(&src.dataset) {
            continue;
        }
        let Some(v) = records.get(&src.dataset).and_then(|r| r.get(&src.field)) else {
            continue;
        };
        let value = match (f.kind, v) {
            (FieldKind::IdNumber, serde_json::Value::String(s)) => match taiwan_id(s) {
                Ok((id, _)) => id.into(),
                Err(_) => continue,
            },
            (FieldKind::Date, serde_json::Value::String(s)) => match date_iso(s) {
                Some(d) => d.into(),
                None => continue,
            },
            (FieldKind::Enum, serde_json::Value::String(s)) if !f.options.contains(s) => continue,
            (_, v) => v.clone(),
        };
        out.insert(
            f.name.clone(),
            Prefilled {
                value,
                dataset: src.dataset.clone(),
                provenance: format!("資料來源：MyData {}", src.dataset),
            },
        );
    }
    out
}

pub mod client;
pub mod log;
pub mod service;
