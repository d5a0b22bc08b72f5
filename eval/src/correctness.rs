//! Answer correctness (EVAL.md, "what the resident reads"): gold rows
//! `{"id", "q", "expect", "doc", "must", "must_not"}` and how one shown answer is scored.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What the assistant should do with a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Answer,
    Handoff,
    Emergency,
    Refuse,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Expect::Answer => "answer",
            Expect::Handoff => "handoff",
            Expect::Emergency => "emergency",
            Expect::Refuse => "refuse",
        }
    }
}

/// One gold row.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldRow {
    pub id: String,
    pub q: String,
    pub expect: Expect,
    #[serde(default)]
    pub doc: Option<String>,
    /// Facts: each inner list holds alternatives, one of which must be shown.
    #[serde(default)]
    pub must: Vec<Vec<String>>,
    /// Regular expressions that must not match the shown answer.
    #[serde(default)]
    pub must_not: Vec<String>,
}

/// Reads a JSONL gold file; every pattern must compile.
pub fn read_gold(path: &Path) -> anyhow::Result<Vec<GoldRow>> {
    crate::queries::read_rows(path, "a gold row", |row: &GoldRow| {
        for p in &row.must_not {
            regex::Regex::new(p).with_context(|| format!("must_not {p:?}"))?;
        }
        Ok(())
    })
}

/// What the assistant did, as far as scoring is concerned.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    /// The whole text the resident can read.
    pub answer: String,
    /// Referred to a person (1999) or refused.
    pub handed_off: bool,
    pub refused: bool,
    /// The emergency numbers shown first, if any.
    pub emergency: bool,
}

/// The verdict on one row.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub correct: bool,
    /// A `must_not` pattern matched: a wrong claim was shown.
    pub wrong_claim: bool,
    /// `must` facts with no alternative shown.
    pub missing: Vec<Vec<String>>,
    /// `must_not` patterns that matched.
    pub matched: Vec<String>,
}

/// Scores one shown answer against its row.
pub fn score(row: &GoldRow, shown: &Shown) -> Verdict {
    let missing: Vec<Vec<String>> = row
        .must
        .iter()
        .filter(|alts| !alts.iter().any(|a| shown.answer.contains(a.as_str())))
        .cloned()
        .collect();
    let matched: Vec<String> = row
        .must_not
        .iter()
        .filter(|p| {
            regex::Regex::new(p)
                .map(|re| re.is_match(&shown.answer))
                .unwrap_or(false)
        })
        .cloned()
        .collect();
    let clean = matched.is_empty();
    let correct = match row.expect {
        Expect::Answer => !shown.handed_off && !shown.refused && missing.is_empty() && clean,
        Expect::Emergency => missing.is_empty() && clean,
        Expect::Handoff => (shown.handed_off || shown.refused) && clean && missing.is_empty(),
        Expect::Refuse => (shown.handed_off || shown.refused) && clean && missing.is_empty(),
    };
    Verdict {
        correct,
        wrong_claim: !clean,
        missing,
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(expect: Expect, must: &[&[&str]], must_not: &[&str]) -> GoldRow {
        GoldRow {
            id: "x".into(),
            q: "q".into(),
            expect,
            doc: None,
            must: must
                .iter()
                .map(|a| a.iter().map(|s| s.to_string()).collect())
                .collect(),
            must_not: must_not.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn shown(answer: &str, handed_off: bool) -> Shown {
        Shown {
            answer: answer.into(),
            handed_off,
            ..Default::default()
        }
    }

    #[test]
    fn an_answer_needs_every_fact_and_no_wrong_claim() {
        let r = row(
            Expect::Answer,
            &[&["兩者擇一", "不能再領"], &["托育補助"]],
            &["可以同時領"],
        );
        assert!(
            score(
                &r,
                &shown("領托育補助就不能再領育兒津貼，兩者擇一。", false)
            )
            .correct
        );
        let v = score(&r, &shown("育兒津貼和托育補助可以同時領。", false));
        assert!(!v.correct && v.wrong_claim);
        assert_eq!(
            v.missing,
            vec![vec!["兩者擇一".to_string(), "不能再領".into()]]
        );
        // A hand-off is not an answer, however right its text.
        assert!(!score(&r, &shown("托育補助兩者擇一", true)).correct);
    }

    #[test]
    fn emergencies_need_the_number_and_hand_offs_need_the_hand_off() {
        let e = row(Expect::Emergency, &[&["119"]], &[]);
        assert!(score(&e, &shown("【緊急】請立即撥打119。", false)).correct);
        assert!(!score(&e, &shown("這個問題建議撥打1999由專人為您服務。", true)).correct);
        let h = row(Expect::Handoff, &[], &["(?:會|不會)下雨"]);
        assert!(score(&h, &shown("建議撥打1999由專人為您服務。", true)).correct);
        let v = score(&h, &shown("明天台北會下雨[1]。", false));
        assert!(!v.correct && v.wrong_claim);
    }
}
