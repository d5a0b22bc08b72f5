//! 1999 case intake: what a caller or resident said → the case an agent confirms and
//! dispatches.
//!
//! - [`extract`]: form fields with their source spans, validation problems and follow-up
//!   questions (rules and gazetteers first, a schema-constrained LLM for what they miss);
//! - [`category`]: the dispatch category of a report (the classifier the product and
//!   `eval extract --schema case_report` use; the case's bureau comes from its category);
//! - [`route`]: which bureau answers a free-form question or complaint (`assistant route`,
//!   `eval route`);
//! - [`duplicates`]: the same problem reported again (same pole; same place, days, words);
//! - [`case_type`]: 諮詢, 通報 or 陳情 (only reports and complaints get a dispatch category);
//! - [`case`]: the case record and its status transitions.

pub mod case;
pub mod case_type;
pub mod category;
pub mod duplicates;
pub mod extract;
pub mod note;
pub mod route;

use std::sync::Arc;

use serde::Serialize;

pub use case_type::CaseType;
pub use extract::{Extraction, Extractor};

/// Platt scaling of the dispatch category's top score `s1` and its margin over the runner-up
/// `m`: P(right) = σ(c0 + c1·s1 + c2·m). Fitted by `eval intake --fit` on the team's intake dev
/// set (its 5-fold reliability table is in the issue notes). The scores carry little signal
/// there (a high keyword score is as often a wrong category), so the fit is nearly flat at the
/// top-1 accuracy (~0.8): the category never claims 0.9 it has not earned.
pub const CATEGORY_CALIBRATION: [f32; 3] = [1.615, -0.970, 0.927];

/// Below this calibrated confidence the category abstains (「請選擇」, alternatives shown).
pub const CATEGORY_ABSTAIN_BELOW: f32 = 0.6;

/// The calibrated probability that the first of `ranked` (category, score) is right.
pub fn category_confidence(ranked: &[(String, f32)]) -> f32 {
    let s1 = ranked.first().map_or(0.0, |r| r.1);
    let s2 = ranked.get(1).map_or(0.0, |r| r.1);
    let [c0, c1, c2] = CATEGORY_CALIBRATION;
    1.0 / (1.0 + (-(c0 + c1 * s1 + c2 * (s1 - s2))).exp())
}

use crate::answer::{Answer, Answerer, AskContext};

/// One case field as the agent sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CaseField {
    pub name: String,
    pub label: String,
    pub value: serde_json::Value,
    pub confidence: f32,
    pub evidence: Option<String>,
}

/// Another category the classifier considered, with its bureau.
#[derive(Debug, Clone, Serialize)]
pub struct Alternative {
    pub category: String,
    pub bureau: Option<String>,
    pub score: f32,
}

/// The case read from a call so far, for the agent's screen.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    /// 諮詢 (answer it, no dispatch), 通報 or 陳情.
    pub case_type: CaseType,
    /// The dispatch category: only for reports and complaints, and only when the calibrated
    /// confidence reaches [`CATEGORY_ABSTAIN_BELOW`] (else the agent chooses among the
    /// alternatives).
    pub category: Option<String>,
    /// The calibrated probability that the suggested category is right.
    pub category_confidence: Option<f32>,
    /// The classifier was unsure: 「請選擇」.
    pub abstained: bool,
    pub bureau: Option<String>,
    pub fields: Vec<CaseField>,
    pub alternatives: Vec<Alternative>,
    pub problems: Vec<String>,
    pub follow_ups: Vec<String>,
}

/// The agent's view of an extraction: fields with their zh-TW labels, the category with its
/// bureau and the alternatives.
pub fn case_view(extractor: &Extractor, ex: &Extraction, text: &str) -> CaseView {
    let form = extractor.form(&ex.schema).ok();
    let label = |name: &str| {
        form.and_then(|f| f.fields.iter().find(|x| x.name == name))
            .map(|x| x.label.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let tax = extractor.taxonomy();
    let bureau_of = |c: &str| {
        tax.categories
            .iter()
            .find(|x| x.name == c)
            .map(|x| x.bureau.clone())
    };
    let top_score = ex.alternatives.first().map_or(0.0, |a| a.1);
    let case_type = case_type::classify(text, top_score).case_type;
    let confidence = (!ex.alternatives.is_empty()).then(|| category_confidence(&ex.alternatives));
    let sure = confidence.is_some_and(|c| c >= CATEGORY_ABSTAIN_BELOW);
    let category = ex
        .fields
        .get("category")
        .and_then(|v| v.value.as_str())
        .map(String::from)
        .filter(|_| case_type.dispatched() && sure);
    CaseView {
        case_type,
        abstained: case_type.dispatched() && !sure,
        category_confidence: category.as_ref().and(confidence),
        bureau: category.as_ref().and(ex.bureau.clone()),
        category,
        fields: ex
            .fields
            .iter()
            // The category is shown (with its calibrated confidence) only when it is chosen.
            .filter(|(k, _)| k.as_str() != "category" || (case_type.dispatched() && sure))
            .map(|(k, v)| CaseField {
                name: k.clone(),
                label: label(k),
                value: v.value.clone(),
                confidence: if k == "category" {
                    confidence.unwrap_or(v.confidence)
                } else {
                    v.confidence
                },
                evidence: v.evidence.clone(),
            })
            .collect(),
        alternatives: ex
            .alternatives
            .iter()
            .map(|(c, score)| Alternative {
                category: c.clone(),
                bureau: bureau_of(c),
                score: *score,
            })
            .collect(),
        problems: ex.problems.iter().map(|p| p.message.clone()).collect(),
        follow_ups: ex.follow_ups.iter().map(|f| f.question.clone()).collect(),
    }
}

/// The caller's latest question: the last non-empty line of the call so far, cut to `max_chars`.
pub fn latest_question(call: &str, max_chars: usize) -> String {
    call.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(call)
        .chars()
        .take(max_chars)
        .collect()
}

/// What the agent sees while a call runs.
pub struct Assist {
    /// The suggested answer to the latest question, with sources.
    pub answer: Answer,
    /// The case read from the whole call.
    pub case: CaseView,
    /// Danger said anywhere in the call so far (the red banner with the number to call).
    pub alert: Option<crate::answer::safety::Alert>,
    /// Every sign of distress heard so far, for the agent's cue list.
    pub cues: Vec<crate::answer::safety::Cue>,
}

/// The assist for what a caller said so far: the latest utterance is the question (suggested
/// answer with sources), the whole call is the case (fields, category, bureau).
pub async fn assist(
    answerer: &Answerer,
    extractor: Arc<Extractor>,
    call: String,
    max_question_chars: usize,
) -> anyhow::Result<Assist> {
    let question = latest_question(&call, max_question_chars);
    let answer = answerer
        .answer(&question, &AskContext::default(), &mut |_| {})
        .await?;
    let alert = answer.alert.clone().or_else(|| {
        answerer
            .triage()
            .and_then(|t| t.check_rules(&call).into_iter().next())
    });
    let cues = answerer
        .triage()
        .map(|t| t.distress_cues(&call))
        .unwrap_or_default();
    let ex = extractor.clone();
    let (extraction, call) =
        tokio::task::spawn_blocking(move || ex.extract("case_report", &call).map(|x| (x, call)))
            .await??;
    Ok(Assist {
        answer,
        case: case_view(&extractor, &extraction, &call),
        alert,
        cues,
    })
}
