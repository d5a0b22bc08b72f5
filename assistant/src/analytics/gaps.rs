//! Knowledge gaps: the questions the guides did not answer (handed off) or answered with low
//! confidence, grouped by topic with counts and example wording, for administrators to write
//! guides from. Personal details are removed before a question is stored.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::answer::{Answer, AnswerKind};
use crate::store::GapRow;

/// Why a question is a gap.
pub const HANDOFF: &str = "handoff";
pub const LOW_CONFIDENCE: &str = "low_confidence";

/// The question with ID numbers, phone numbers, e-mail addresses, house numbers and a name
/// the resident gives (「我叫王小明」) replaced by 「○」.
pub fn redact(text: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (r"[A-Za-z][12489]\d{8}", "○○○"),
            (r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "○○○"),
            // Mobile, landline, with or without separators; then any long run of digits.
            (r"\(?0\d{1,3}\)?[-\s]?\d{3,4}[-\s]?\d{3,4}", "○○○"),
            (r"\d{7,}", "○○○"),
            (r"\d+(?:[-之]\d+)?號(?:\d+樓(?:之\d+)?)?", "○號"),
            (r"(我叫|我姓|名字是|叫做|我的名字叫)\p{Han}{1,3}", "${1}○○"),
        ]
        .into_iter()
        .map(|(p, r)| (Regex::new(p).expect("valid pattern"), r))
        .collect()
    });
    // Full-width digits and letters read as ASCII; the punctuation stays as written.
    let mut s: String = text
        .chars()
        .map(|c| match c {
            '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ' | '＠' | '．' | '－' => {
                knowledge::text::fold_width_char(c)
            }
            c => c,
        })
        .collect();
    for (re, with) in rules {
        s = re.replace_all(&s, *with).into_owned();
    }
    s.trim().to_string()
}

/// The gap an answer leaves, if any: a hand-off (not an emergency, a refusal or a crisis
/// alert, which are answered as they should be), or an answer whose best section was only
/// weakly similar to the question.
pub fn gap_of(question: &str, a: &Answer, strong_similarity: f32, now: i64) -> Option<GapRow> {
    if a.alert.is_some() || matches!(a.kind, AnswerKind::Emergency | AnswerKind::Refused) {
        return None;
    }
    let (reason, doc_id, bureau) = if a.handoff {
        (HANDOFF, String::new(), String::new())
    } else if matches!(a.kind, AnswerKind::Extractive | AnswerKind::Generated)
        && a.confidence < strong_similarity
    {
        (
            LOW_CONFIDENCE,
            a.doc_id.clone().unwrap_or_default(),
            a.bureau.clone().unwrap_or_default(),
        )
    } else {
        return None;
    };
    Some(GapRow {
        time: now,
        question: redact(question),
        reason: reason.into(),
        doc_id,
        bureau,
    })
}

/// Questions on one topic.
#[derive(Debug, Clone, Serialize)]
pub struct GapGroup {
    /// The guide's title (answered weakly), or the word the handed-off questions share.
    pub topic: String,
    /// The guide answered from, for weak answers.
    pub doc_id: Option<String>,
    pub bureau: String,
    pub count: usize,
    pub handoffs: usize,
    pub low_confidence: usize,
    /// Up to three different wordings, newest first.
    pub examples: Vec<String>,
}

/// Groups gaps: weak answers by the guide they came from; hand-offs by the content word they
/// share with the most other hand-offs (「身分證」 for 「我想換新的身分證」 and 「身分證掉了要去哪裡補」).
/// Largest groups first. `title` names a guide id.
pub fn group(rows: &[GapRow], title: impl Fn(&str) -> Option<String>) -> Vec<GapGroup> {
    let terms: Vec<Vec<String>> = rows
        .iter()
        .map(|r| crate::answer::lead::content_terms(&r.question))
        .collect();
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for (r, ts) in rows.iter().zip(&terms) {
        if r.reason == HANDOFF {
            for t in ts {
                *freq.entry(t.as_str()).or_default() += 1;
            }
        }
    }
    let mut groups: Vec<GapGroup> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (r, ts) in rows.iter().zip(&terms) {
        let (key, topic, doc) = if r.reason == HANDOFF {
            let best = ts.iter().max_by(|a, b| {
                freq.get(a.as_str())
                    .cmp(&freq.get(b.as_str()))
                    .then(a.chars().count().cmp(&b.chars().count()))
                    .then(b.cmp(a))
            });
            let t = best.cloned().unwrap_or_else(|| "其他".to_string());
            (format!("term:{t}"), t, None)
        } else {
            let t = title(&r.doc_id).unwrap_or_else(|| r.doc_id.clone());
            (format!("doc:{}", r.doc_id), t, Some(r.doc_id.clone()))
        };
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(GapGroup {
                topic,
                doc_id: doc,
                bureau: String::new(),
                count: 0,
                handoffs: 0,
                low_confidence: 0,
                examples: Vec::new(),
            });
            groups.len() - 1
        });
        let g = &mut groups[i];
        g.count += 1;
        if r.reason == HANDOFF {
            g.handoffs += 1;
        } else {
            g.low_confidence += 1;
        }
        if g.bureau.is_empty() && !r.bureau.is_empty() {
            g.bureau = r.bureau.clone();
        }
        if g.examples.len() < 3 && !g.examples.contains(&r.question) {
            g.examples.push(r.question.clone());
        }
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.topic.cmp(&b.topic)));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_details_are_removed() {
        let r = redact("我叫王小明，身分證A123456789，電話0912-345-678，住仁愛路四段300巷20號3樓，想換新的身分證");
        assert!(!r.contains("王小明") && !r.contains("A123456789"), "{r}");
        assert!(!r.contains("0912") && !r.contains("345"), "{r}");
        assert!(!r.contains("20號"), "{r}");
        assert!(
            r.contains("仁愛路四段300巷○號") && r.contains("想換新的身分證"),
            "{r}"
        );
        assert_eq!(redact("寄到 abc.def@example.com.tw 就好"), "寄到 ○○○ 就好");
        assert_eq!(redact("電話０９１２３４５６７８，謝謝"), "電話○○○，謝謝");
        // Amounts and ages stay: they are what the question is about.
        assert_eq!(
            redact("我媽70歲，每月領8,329元嗎"),
            "我媽70歲，每月領8,329元嗎"
        );
    }

    fn row(q: &str, reason: &str, doc: &str) -> GapRow {
        GapRow {
            time: 0,
            question: q.into(),
            reason: reason.into(),
            doc_id: doc.into(),
            bureau: if doc.is_empty() { "" } else { "社會局" }.into(),
        }
    }

    #[test]
    fn hand_offs_group_by_the_word_they_share_and_weak_answers_by_guide() {
        let rows = vec![
            row("我想換新的身分證，要帶什麼", HANDOFF, ""),
            row("身分證掉了要去哪裡補辦", HANDOFF, ""),
            row("身分證照片有規定嗎", HANDOFF, ""),
            row("明天會下雨嗎", HANDOFF, ""),
            row("敬老卡的點數可以給孫子用嗎", LOW_CONFIDENCE, "senior-card"),
        ];
        let g = group(&rows, |id| {
            (id == "senior-card").then(|| "敬老卡".to_string())
        });
        assert_eq!(g[0].topic, "身分證");
        assert_eq!((g[0].count, g[0].handoffs), (3, 3));
        assert_eq!(g[0].examples.len(), 3);
        let card = g.iter().find(|x| x.topic == "敬老卡").unwrap();
        assert_eq!((card.low_confidence, card.bureau.as_str()), (1, "社會局"));
        assert_eq!(card.doc_id.as_deref(), Some("senior-card"));
        assert_eq!(g.iter().map(|x| x.count).sum::<usize>(), 5);
    }
}
