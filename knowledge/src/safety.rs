//! Safety triage rules (`corpus/safety/*.toml`): the kinds of danger a resident may describe,
//! with the number to call, the first steps, and how to recognise them (phrases, patterns,
//! negations, and exemplars for a similarity vote). The matcher lives in `assistant`; this
//! module loads the rules and refuses a broken file with a message that names the rule.

use std::path::Path;

use serde::Deserialize;

/// A safety rules file that cannot be used: which file and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SafetyError {
    pub path: String,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> SafetyError {
    SafetyError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// How urgent a rule's danger is; also the order alerts are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Life or property in danger now (110/119).
    Emergency,
    /// Suicide or self-harm (crisis lines; 119 first when an attempt is under way).
    Crisis,
    /// Violence at home, abuse of a child or an elder, sexual assault (113).
    Protection,
    /// A hazard that 1999 dispatches (a tree across the road, a wire down): the case flow
    /// stays, with what to do now first.
    ReportNow,
    /// Not life-threatening, but the resident should be pointed elsewhere at once (fraud: 165).
    Advice,
}

impl Severity {
    /// Whether the answer is the alert alone (no 1999 case flow, no guide answer first).
    pub fn is_urgent(self) -> bool {
        matches!(
            self,
            Severity::Emergency | Severity::Crisis | Severity::Protection
        )
    }
}

/// One kind of danger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyRule {
    pub id: String,
    pub severity: Severity,
    /// Numbers to show first, most important first.
    pub numbers: Vec<String>,
    /// The first sentence shown.
    pub headline: String,
    /// One to three immediate steps.
    pub steps: Vec<String>,
    /// Substrings of the normalised message ([`crate::text::fold_for_matching`]).
    #[serde(default)]
    pub phrases: Vec<String>,
    /// Regular expressions over the normalised message.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Substrings that cancel a match in the same clause.
    #[serde(default)]
    pub negations: Vec<String>,
    /// Paraphrases for the similarity vote.
    #[serde(default)]
    pub exemplars: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NegationTable {
    #[serde(default)]
    global: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    negation: NegationTable,
    #[serde(default)]
    rule: Vec<SafetyRule>,
    #[serde(default)]
    cue: Vec<DistressCue>,
}

/// A sign of distress for the agent (`distress.toml`): softer than a rule, listed in the
/// console with what to do, never shown to a resident.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistressCue {
    pub id: String,
    /// What the agent reads (`情緒低落、無助`).
    pub label: String,
    /// What to do, one sentence.
    pub hint: String,
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Matched in the normalised call, like rule phrases (written in any form: both sides are
    /// normalised when compared).
    pub phrases: Vec<String>,
    /// Cancel a match in the same clause.
    #[serde(default)]
    pub negations: Vec<String>,
}

/// Every rule, in priority order (files by name, rules in file order).
#[derive(Debug, Clone, Default)]
pub struct SafetyRules {
    pub rules: Vec<SafetyRule>,
    /// Phrases that mean the danger is absent or over (applied within the clause), except to
    /// crisis rules, where past or hypothetical talk is still a warning sign.
    pub global_negations: Vec<String>,
    /// Distress cues for the agent.
    pub cues: Vec<DistressCue>,
}

impl SafetyRules {
    /// Loads every `*.toml` file in `dir`.
    pub fn load(dir: &Path) -> Result<SafetyRules, SafetyError> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| err(dir, format!("reading the folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let mut out = SafetyRules::default();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| err(&f, format!("reading: {e}")))?;
            let file: RulesFile =
                toml::from_str(&text).map_err(|e| err(&f, format!("safety rules: {e}")))?;
            out.global_negations.extend(file.negation.global);
            for c in file.cue {
                if c.id.is_empty() || c.label.trim().is_empty() || c.phrases.is_empty() {
                    return Err(err(
                        &f,
                        format!("cue {}: give an id, a label and phrases", c.id),
                    ));
                }
                if out.cues.iter().any(|x| x.id == c.id) {
                    return Err(err(&f, format!("cue {} is defined twice", c.id)));
                }
                out.cues.push(c);
            }
            for r in file.rule {
                validate(&r).map_err(|m| err(&f, format!("rule {}: {m}", r.id)))?;
                if out.rules.iter().any(|x| x.id == r.id) {
                    return Err(err(&f, format!("rule {} is defined twice", r.id)));
                }
                out.rules.push(r);
            }
        }
        if out.rules.is_empty() {
            return Err(err(dir, "no safety rules found"));
        }
        Ok(out)
    }
}

fn validate(r: &SafetyRule) -> std::result::Result<(), String> {
    if r.id.is_empty() || !r.id.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return Err("the id must be ascii kebab-case".into());
    }
    if r.numbers.is_empty()
        || r.numbers
            .iter()
            .any(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()))
    {
        return Err("numbers must be one or more digit strings".into());
    }
    if r.headline.trim().is_empty() {
        return Err("the headline is empty".into());
    }
    if r.steps.is_empty() || r.steps.len() > 3 {
        return Err("give one to three steps".into());
    }
    if r.phrases.is_empty() && r.patterns.is_empty() {
        return Err("give phrases or patterns".into());
    }
    for p in &r.patterns {
        regex::Regex::new(p).map_err(|e| format!("pattern {p:?} does not compile: {e}"))?;
    }
    for p in &r.phrases {
        if crate::text::fold_for_matching(p) != *p {
            return Err(format!(
                "phrase {p:?} is not in normalised form (write it as {:?})",
                crate::text::fold_for_matching(p)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_rules_load_in_priority_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/safety");
        let rules = SafetyRules::load(&dir).unwrap();
        assert!(rules.rules.len() >= 20, "{}", rules.rules.len());
        let gas = rules.rules.iter().find(|r| r.id == "gas-leak").unwrap();
        assert_eq!(gas.numbers, ["119"]);
        assert_eq!(gas.severity, Severity::Emergency);
        assert!(rules.global_negations.iter().any(|g| g == "沒有人受傷"));
        assert!(rules.rules.iter().all(|r| !r.exemplars.is_empty()));
    }

    #[test]
    fn a_broken_rule_is_refused_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("r.toml"),
            "[[rule]]\nid = \"bad-one\"\nseverity = \"emergency\"\nnumbers = [\"119\"]\n\
             headline = \"x\"\nsteps = [\"y\"]\npatterns = [\"(unclosed\"]\n",
        )
        .unwrap();
        let e = SafetyRules::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad-one") && e.contains("unclosed"), "{e}");
        std::fs::write(
            dir.path().join("r.toml"),
            "[[rule]]\nid = \"bad-two\"\nseverity = \"urgent\"\nnumbers = [\"119\"]\n\
             headline = \"x\"\nsteps = [\"y\"]\nphrases = [\"z\"]\n",
        )
        .unwrap();
        assert!(SafetyRules::load(dir.path()).is_err());
    }
}
