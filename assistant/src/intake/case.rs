//! A 1999 case and its life: a draft from what the caller said, confirmed by the agent (with
//! corrections), dispatched to a bureau. Transitions are checked here; the store keeps rows.

use serde::{Deserialize, Serialize};

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Created from the call; the agent has not checked it yet.
    Draft,
    /// The agent checked (and maybe corrected) it.
    Confirmed,
    /// Sent to the responsible bureau; no more changes.
    Dispatched,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Draft => "draft",
            CaseStatus::Confirmed => "confirmed",
            CaseStatus::Dispatched => "dispatched",
        }
    }

    /// Reads a stored status; anything unknown reads as a draft (never as dispatched).
    pub fn parse(s: &str) -> CaseStatus {
        match s {
            "confirmed" => CaseStatus::Confirmed,
            "dispatched" => CaseStatus::Dispatched,
            _ => CaseStatus::Draft,
        }
    }
}

/// A 1999 case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub created: i64,
    pub updated: i64,
    pub status: CaseStatus,
    pub category: Option<String>,
    pub bureau: Option<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub summary: String,
    pub created_by: String,
    /// How many callers reported it: 1, plus every repeat report an agent linked to it.
    #[serde(default = "one")]
    pub reports: i64,
}

fn one() -> i64 {
    1
}

/// Why a transition was refused (the message is shown to the agent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("案件已派工，無法再修改。")]
    AlreadyDispatched,
    #[error("請先確認案件內容再派工。")]
    NotConfirmed,
    #[error("請選擇派工單位。")]
    NoBureau,
    #[error("沒有「{0}」這個案件類別。")]
    UnknownCategory(String),
}

/// The agent's corrections when confirming.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Corrections {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub bureau: Option<String>,
    #[serde(default)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Case {
    /// A new draft case created by `created_by` at `at` from an extraction of the caller's words.
    pub fn draft(
        at: i64,
        category: Option<String>,
        bureau: Option<String>,
        fields: serde_json::Map<String, serde_json::Value>,
        text: &str,
        created_by: String,
    ) -> Case {
        Case {
            id: format!("C{}-{}", at, hex::encode(rand::random::<[u8; 3]>())),
            created: at,
            updated: at,
            status: CaseStatus::Draft,
            category,
            bureau,
            fields,
            summary: text.chars().take(200).collect(),
            created_by,
            reports: 1,
        }
    }

    /// Applies the agent's corrections and confirms. A category from the taxonomy brings its
    /// bureau unless the agent chose one; `bureau_of` looks a category up.
    pub fn confirm(
        &mut self,
        c: Corrections,
        at: i64,
        bureau_of: impl Fn(&str) -> Option<String>,
    ) -> Result<(), CaseError> {
        if self.status == CaseStatus::Dispatched {
            return Err(CaseError::AlreadyDispatched);
        }
        if let Some(cat) = c.category.filter(|c| !c.is_empty()) {
            let Some(bureau) = bureau_of(&cat) else {
                return Err(CaseError::UnknownCategory(cat));
            };
            if c.bureau.is_none() {
                self.bureau = Some(bureau);
            }
            self.category = Some(cat);
        }
        if let Some(b) = c.bureau.filter(|b| !b.trim().is_empty()) {
            self.bureau = Some(b.trim().to_string());
        }
        if let Some(f) = c.fields {
            self.fields.extend(f);
        }
        self.status = CaseStatus::Confirmed;
        self.updated = at;
        Ok(())
    }

    /// Sends a confirmed case to `bureau` (or the one it has).
    pub fn dispatch(&mut self, bureau: Option<String>, at: i64) -> Result<(), CaseError> {
        if self.status != CaseStatus::Confirmed {
            return Err(CaseError::NotConfirmed);
        }
        if let Some(b) = bureau.filter(|b| !b.trim().is_empty()) {
            self.bureau = Some(b.trim().to_string());
        }
        if self.bureau.is_none() {
            return Err(CaseError::NoBureau);
        }
        self.status = CaseStatus::Dispatched;
        self.updated = at;
        Ok(())
    }

    /// Another caller reports the same problem: counted on this case, in any status (a
    /// dispatched case's crew learns that it is still being reported).
    pub fn add_report(&mut self, at: i64) {
        self.reports += 1;
        self.updated = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> Case {
        Case::draft(
            100,
            Some("路燈不亮或損壞".into()),
            Some("工務局".into()),
            Default::default(),
            "路燈不亮",
            "agent:a".into(),
        )
    }

    #[test]
    fn a_case_goes_draft_confirmed_dispatched_and_then_no_further() {
        let mut c = case();
        assert_eq!(c.dispatch(None, 101), Err(CaseError::NotConfirmed));
        let known = |name: &str| (name == "路樹處理").then(|| "工務局".to_string());
        assert_eq!(
            c.confirm(
                Corrections {
                    category: Some("不存在".into()),
                    ..Default::default()
                },
                101,
                known
            ),
            Err(CaseError::UnknownCategory("不存在".into()))
        );
        c.confirm(
            Corrections {
                category: Some("路樹處理".into()),
                ..Default::default()
            },
            102,
            known,
        )
        .unwrap();
        assert_eq!(c.status, CaseStatus::Confirmed);
        assert_eq!(c.category.as_deref(), Some("路樹處理"));
        c.dispatch(Some(" 環境保護局 ".into()), 103).unwrap();
        assert_eq!(c.bureau.as_deref(), Some("環境保護局"));
        assert_eq!(c.status, CaseStatus::Dispatched);
        assert_eq!(
            c.confirm(Corrections::default(), 104, known),
            Err(CaseError::AlreadyDispatched)
        );
        assert_eq!(CaseStatus::parse("dispatched"), CaseStatus::Dispatched);
        assert_eq!(CaseStatus::parse("garbage"), CaseStatus::Draft);
    }
}
