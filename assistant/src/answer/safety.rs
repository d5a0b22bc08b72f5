//! Safety triage, first in every path (chat, `/api/ask`, `/v1/chat/completions`, the agent's
//! assist, live calls): a message that shows danger to life or property now gets the number to
//! call and the first steps before anything else.
//!
//! Rules are data (`corpus/safety`). A message is normalised ([`fold_for_matching`]) and cut
//! into clauses; a rule fires when one of its phrases or patterns matches inside a clause that
//! holds none of its negations (nor a global one: 「沒有人受傷」「去年」「如果」…, which are
//! not applied to crisis rules, where past or hypothetical talk is still a warning sign).
//! Paraphrases that no phrase catches are caught by a similarity vote: the message's e5
//! embedding against each rule's exemplars, above a threshold calibrated on the triage dev set.

use std::sync::Arc;

use knowledge::safety::{SafetyRule, SafetyRules, Severity};
use knowledge::text::fold_for_matching;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// What fired, for the resident's answer and the agent's red banner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub severity: String,
    /// Emergency, crisis or protection: danger to a person.
    pub urgent: bool,
    /// Emergency or crisis: the alert is the whole answer (no guide after it).
    pub alone: bool,
    pub numbers: Vec<String>,
    pub headline: String,
    pub steps: Vec<String>,
    /// The words that matched (for the agent), or `None` for a similarity vote.
    pub matched: Option<String>,
}

impl Alert {
    /// The alert as text shown before anything else.
    pub fn text(&self) -> String {
        let mut out = format!("【緊急】{}", self.headline);
        if let Some(more) = self.numbers.get(1..).filter(|m| !m.is_empty()) {
            out.push_str(&format!("（必要時也可撥打 {}）", more.join("、")));
        }
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!("\n{}. {s}", i + 1));
        }
        out
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Emergency => "emergency",
        Severity::Crisis => "crisis",
        Severity::Protection => "protection",
        Severity::ReportNow => "report-now",
        Severity::Advice => "advice",
    }
}

struct Compiled {
    rule: SafetyRule,
    patterns: Vec<Regex>,
}

struct DenseVote {
    embedder: Arc<dyn retrieval::Embedder>,
    /// (rule index, unit vector) per exemplar.
    exemplars: Vec<(usize, Vec<f32>)>,
    threshold: f32,
}

/// The triage over one rule set.
pub struct Triage {
    rules: Vec<Compiled>,
    global: Vec<String>,
    cues: Vec<knowledge::safety::DistressCue>,
    dense: Option<DenseVote>,
}

/// A sign of distress heard in a call, for the agent's cue list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cue {
    pub label: String,
    /// The words that matched, as heard.
    pub words: Vec<String>,
    pub hint: String,
    pub numbers: Vec<String>,
    /// From a safety rule (danger now) rather than a softer cue.
    pub urgent: bool,
}

/// Clause boundaries (after width folding the full-width marks are ASCII).
fn clauses(normalised: &str) -> Vec<&str> {
    normalised
        .split(|c: char| c.is_whitespace() || "，。！？；：～、…,.!?;:~「」『』()（）".contains(c))
        .filter(|c| !c.is_empty())
        .collect()
}

/// `v` scaled to length 1.
pub fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Triage {
    pub fn new(rules: SafetyRules) -> Triage {
        let compiled = rules
            .rules
            .into_iter()
            .map(|rule| Compiled {
                // The loader refused rules whose patterns do not compile.
                patterns: rule
                    .patterns
                    .iter()
                    .filter_map(|p| Regex::new(p).ok())
                    .collect(),
                rule,
            })
            .collect();
        Triage {
            rules: compiled,
            global: rules.global_negations,
            cues: rules.cues,
            dense: None,
        }
    }

    /// Loads the rules in `dir`.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Triage> {
        Ok(Triage::new(SafetyRules::load(dir)?))
    }

    /// Adds the similarity vote: every exemplar embedded once, here (or read from
    /// `cache_dir`, where the vectors are kept per embedder and exemplar set).
    pub fn with_embedder(
        mut self,
        embedder: Arc<dyn retrieval::Embedder>,
        threshold: f32,
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Triage> {
        let mut texts = Vec::new();
        let mut owners = Vec::new();
        for (i, c) in self.rules.iter().enumerate() {
            for e in &c.rule.exemplars {
                texts.push(e.as_str());
                owners.push(i);
            }
        }
        let vectors = crate::embedding::queries_cached(
            embedder.as_ref(),
            &texts,
            cache_dir,
            "safety-exemplars",
        )?;
        self.dense = Some(DenseVote {
            embedder,
            exemplars: owners
                .into_iter()
                .zip(vectors.into_iter().map(unit))
                .collect(),
            threshold,
        });
        Ok(self)
    }

    pub fn rules(&self) -> impl Iterator<Item = &SafetyRule> {
        self.rules.iter().map(|c| &c.rule)
    }

    fn negated(&self, rule: &SafetyRule, clause: &str) -> bool {
        rule.negations.iter().any(|n| clause.contains(n.as_str()))
            || (rule.severity != Severity::Crisis
                && self.global.iter().any(|n| clause.contains(n.as_str())))
    }

    /// The words of `clause` that fire `rule`, if any.
    fn fires(&self, c: &Compiled, clause: &str) -> Option<String> {
        if self.negated(&c.rule, clause) {
            return None;
        }
        if let Some(p) = c.rule.phrases.iter().find(|p| clause.contains(p.as_str())) {
            return Some(p.clone());
        }
        c.patterns
            .iter()
            .find_map(|re| re.find(clause).map(|m| m.as_str().to_string()))
    }

    /// Every rule the words of `text` fire, in priority order.
    pub fn check_rules(&self, text: &str) -> Vec<Alert> {
        let norm = fold_for_matching(text);
        let parts = clauses(&norm);
        self.rules
            .iter()
            .filter_map(|c| {
                let matched = parts.iter().find_map(|clause| self.fires(c, clause))?;
                Some(alert(&c.rule, Some(matched)))
            })
            .collect()
    }

    /// Every sign of distress in a call, for the agent: each safety rule that fires (danger
    /// now, most important first) and each softer cue (`distress.toml`), with the words heard.
    pub fn distress_cues(&self, call: &str) -> Vec<Cue> {
        let mut out: Vec<Cue> = self
            .check_rules(call)
            .into_iter()
            .map(|a| Cue {
                label: a.headline.clone(),
                words: a.matched.into_iter().collect(),
                hint: a.steps.first().cloned().unwrap_or_default(),
                numbers: a.numbers,
                urgent: true,
            })
            .collect();
        let norm = fold_for_matching(call);
        let parts = clauses(&norm);
        for c in &self.cues {
            let mut words: Vec<String> = Vec::new();
            let negations: Vec<String> = c.negations.iter().map(|n| fold_for_matching(n)).collect();
            for clause in &parts {
                if negations.iter().any(|n| clause.contains(n.as_str())) {
                    continue;
                }
                for p in &c.phrases {
                    if clause.contains(fold_for_matching(p).as_str()) && !words.contains(p) {
                        words.push(p.clone());
                    }
                }
            }
            // A phrase inside a longer one heard (撐不下去 in 撐不過…) is listed once.
            let all = words.clone();
            words.retain(|w| !all.iter().any(|o| o != w && o.contains(w.as_str())));
            if !words.is_empty() {
                out.push(Cue {
                    label: c.label.clone(),
                    words,
                    hint: c.hint.clone(),
                    numbers: c.numbers.clone(),
                    urgent: false,
                });
            }
        }
        out
    }

    /// The rule whose exemplars `query_vector` (a unit e5 query embedding of the message) is
    /// closest to, when above the threshold and the message holds no negation of it.
    pub fn check_similar(&self, text: &str, query_vector: &[f32]) -> Option<Alert> {
        let threshold = self.dense.as_ref()?.threshold;
        self.check_similar_at(text, query_vector, threshold)
    }

    /// As [`Triage::check_similar`] at another threshold (for calibration).
    pub fn check_similar_at(
        &self,
        text: &str,
        query_vector: &[f32],
        threshold: f32,
    ) -> Option<Alert> {
        let dense = self.dense.as_ref()?;
        let (best, score) = dense
            .exemplars
            .iter()
            .map(|(i, v)| (*i, dot(v, query_vector)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        if score < threshold {
            return None;
        }
        let rule = &self.rules[best].rule;
        let norm = fold_for_matching(text);
        if clauses(&norm).iter().any(|c| self.negated(rule, c)) {
            return None;
        }
        Some(alert(rule, None))
    }

    /// The message's query embedding with the triage's embedder (`None` without one).
    pub fn embed(&self, text: &str) -> Option<Vec<f32>> {
        let dense = self.dense.as_ref()?;
        match dense.embedder.embed_query(text) {
            Ok(v) => Some(unit(v)),
            Err(e) => {
                tracing::warn!(error = %e, "safety similarity vote skipped");
                None
            }
        }
    }

    /// The most urgent alert for `text`: the rules first, then the similarity vote.
    pub fn check(&self, text: &str, query_vector: Option<&[f32]>) -> Option<Alert> {
        if let Some(a) = self.check_rules(text).into_iter().next() {
            return Some(a);
        }
        match query_vector {
            Some(v) => self.check_similar(text, v),
            None => self.embed(text).and_then(|v| self.check_similar(text, &v)),
        }
    }
}

fn alert(rule: &SafetyRule, matched: Option<String>) -> Alert {
    Alert {
        rule: rule.id.clone(),
        severity: severity_name(rule.severity).to_string(),
        urgent: rule.severity.is_urgent(),
        alone: matches!(rule.severity, Severity::Emergency | Severity::Crisis),
        numbers: rule.numbers.clone(),
        headline: rule.headline.clone(),
        steps: rule.steps.clone(),
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triage() -> Triage {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/safety");
        Triage::load(&dir).unwrap()
    }

    /// The browser test's distressed caller.
    const CALL_IN_DISTRESS: &str =
        "我爸爸剛剛在浴室倒下去叫不醒，我一個人在家，快崩潰了，講了好幾次都沒人來";

    #[test]
    fn the_agent_sees_every_distress_cue_with_the_words_heard() {
        let t = triage();
        let cues = t.distress_cues(
            "我已經講了好幾次了都沒人處理，我一個人住，房租繳不出來，真的快撐不下去了",
        );
        let labels: Vec<&str> = cues.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "情緒低落、無助",
                "經濟急迫",
                "獨居或無人照顧",
                "情緒激動、不滿"
            ],
            "{cues:?}"
        );
        assert!(cues.iter().all(|c| !c.urgent && !c.hint.is_empty()));
        let angry = &cues[3];
        assert_eq!(angry.words, ["講了好幾次", "都沒人處理"]);
        assert_eq!(cues[0].numbers, ["1925"]);
        // Danger now comes first, from the safety rules, with its number.
        let cues = t.distress_cues("活著好累，我今天晚上就想去死，沒有人在乎我");
        assert!(
            cues[0].urgent && cues[0].numbers.contains(&"1925".to_string()),
            "{cues:?}"
        );
        assert!(cues
            .iter()
            .any(|c| c.label == "情緒低落、無助" && c.words == ["沒有人在乎"]));
        let cues = t.distress_cues(CALL_IN_DISTRESS);
        assert!(cues[0].urgent && cues[0].numbers[0] == "119", "{cues:?}");
        assert!(cues.iter().any(|c| c.label == "情緒低落、無助"), "{cues:?}");
        // A negation in the same clause cancels a cue; ordinary calls have none.
        assert!(t.distress_cues("請他打我手機就好，謝謝").is_empty());
        assert!(t
            .distress_cues("我家巷口的路燈不亮，麻煩派人來修")
            .is_empty());
        // Phrases OpenCC rewrites (吃 → 喫) still match and are shown as written.
        let cues = t.distress_cues("這個月已經沒錢吃飯了");
        assert_eq!(cues[0].words, ["沒錢吃飯"]);
    }

    fn first(t: &Triage, text: &str) -> Option<(String, Vec<String>)> {
        t.check_rules(text)
            .into_iter()
            .next()
            .map(|a| (a.rule, a.numbers))
    }

    #[test]
    fn the_reported_emergencies_get_their_numbers() {
        let t = triage();
        let (rule, numbers) = first(&t, "有人在我家樓下打架還拿刀").unwrap();
        assert_eq!(rule, "violence-weapon");
        assert_eq!(numbers[0], "110");
        let (rule, numbers) = first(&t, "瓦斯味很重好像外洩了").unwrap();
        assert_eq!(rule, "gas-leak");
        assert_eq!(numbers, ["119"]);
        let (_, numbers) = first(&t, "我想自殺，不知道該怎麼辦").unwrap();
        assert!(numbers.contains(&"1925".to_string()), "{numbers:?}");
        // Simplified input is folded before matching.
        assert!(first(&t, "瓦斯味很重好像泄漏了").is_some());
    }

    #[test]
    fn danger_words_in_ordinary_questions_do_not_fire() {
        let t = triage();
        for q in [
            "瓦斯費怎麼繳",
            "去年家裡失火，現在可以申請什麼補助",
            "怎麼預防一氧化碳中毒",
            "熱到快死了",
            "路燈不亮",
            "樹倒了但沒有人受傷，也沒擋到路",
        ] {
            assert_eq!(first(&t, q), None, "{q}");
        }
    }

    #[test]
    fn a_negation_only_cancels_its_own_clause() {
        let t = triage();
        assert!(first(&t, "大樹倒在馬路中間擋住車道，還好沒有人受傷").is_some());
    }

    #[test]
    fn the_alert_text_puts_the_number_first_and_lists_the_steps() {
        let t = triage();
        let a = t.check_rules("瓦斯味很重好像外洩了").remove(0);
        let text = a.text();
        assert!(text.starts_with("【緊急】"), "{text}");
        assert!(text.contains("119"), "{text}");
        assert!(text.contains("\n1. "), "{text}");
        assert!(a.urgent);
    }
}
