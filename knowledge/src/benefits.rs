//! Benefit rules as data (`corpus/benefits/*.toml`, format in `corpus/benefits/README.md`): who
//! qualifies (conditions over facts such as `child.age_months` or `household_status`), how much
//! (amount tables per period, keyed by facts), which documents are still needed, and where each
//! rule comes from. The engine that applies them is `assistant::eligibility`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a fact is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    /// The fact is one of `value` (an array).
    In,
}

/// One comparison.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Atom {
    pub fact: String,
    pub op: Op,
    pub value: toml::Value,
}

/// A condition: a comparison (and optional further ones that must also hold), with the zh-TW
/// reasons shown when it holds or fails. Conditions sharing a `group` are alternatives (any one
/// suffices); groups and ungrouped conditions must all hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub fact: String,
    pub op: Op,
    pub value: toml::Value,
    #[serde(default)]
    pub and: Vec<Atom>,
    #[serde(default)]
    pub group: Option<String>,
    /// Whether the person is in the benefit's target group at all (a senior, a parent of a
    /// young child, a student…): a benefit whose anchor is unknown is not suggested.
    #[serde(default)]
    pub anchor: bool,
    /// A disqualifier the guide lists (已接受政府公費安置, 已住社會住宅): it rules a person out
    /// only when they said so; unknown, it is left to the office to confirm and not asked.
    #[serde(default)]
    pub exclusion: bool,
    /// The guide section the condition comes from.
    #[serde(default)]
    pub section: Option<String>,
    pub pass: String,
    pub fail: String,
}

/// Amounts in force during one period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// First day (ISO), inclusive.
    pub from: String,
    /// Last day (ISO), inclusive; open-ended when absent.
    #[serde(default)]
    pub to: Option<String>,
    pub label: String,
    /// Amount per key: the `amount_key` facts' values joined with `/` (`一般/2`), or `*`.
    pub amounts: BTreeMap<String, u32>,
}

/// One benefit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benefit {
    pub id: String,
    pub name: String,
    pub bureau: String,
    /// The application form (schema name) this benefit is applied for with.
    #[serde(default)]
    pub form: Option<String>,
    /// What the amount is (`每月`, `每學期學雜費減免比例（%）`).
    #[serde(default)]
    pub unit: Option<String>,
    /// Where the rule comes from (seed table, law), shown to officers.
    pub source: String,
    /// Whether the rule's values still need the city's confirmation (not in the seeds).
    #[serde(default)]
    pub verify: bool,
    #[serde(default)]
    pub amount_key: Vec<String>,
    #[serde(default)]
    pub periods: Vec<Period>,
    /// The guide's own sentence on amounts, where it gives no table (or in addition).
    #[serde(default)]
    pub amount_text: Option<String>,
    pub conditions: Vec<Condition>,
    /// Documents the resident must still bring or upload.
    #[serde(default)]
    pub documents: Vec<String>,
}

/// All rules plus the zh-TW names of the facts they use.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Rulebook {
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    /// The values a text fact takes (`household_status` = 一般, 中低收入戶, 低收入戶): amount
    /// tables keyed by such facts must cover every combination (or give `*`).
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
    #[serde(default, rename = "benefit")]
    pub benefits: Vec<Benefit>,
}

/// Why the rules could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("benefit rules {path}: {message}")]
pub struct RulesError {
    pub path: PathBuf,
    pub message: String,
}

impl Rulebook {
    /// Reads every `*.toml` of a directory into one rulebook and checks it.
    pub fn load(dir: &Path) -> Result<Rulebook, RulesError> {
        let err = |path: &Path, message: String| RulesError {
            path: path.to_path_buf(),
            message,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| err(dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut book = Rulebook::default();
        let mut parts = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| err(&path, e.to_string()))?;
            let part: Rulebook = toml::from_str(&text).map_err(|e| err(&path, e.to_string()))?;
            book.facts.extend(part.facts);
            book.values.extend(part.values);
            parts.push((path, part.benefits));
        }
        // Facts may be declared in any file, so benefits are checked once all are read.
        for (path, benefits) in parts {
            for b in benefits {
                if book.benefits.iter().any(|x| x.id == b.id) {
                    return Err(err(&path, format!("benefit {} is defined twice", b.id)));
                }
                book.check(&b).map_err(|m| err(&path, m))?;
                book.benefits.push(b);
            }
        }
        Ok(book)
    }

    /// A combination of the amount key's values with no amount (when every key fact has a
    /// declared value set).
    fn hole(&self, b: &Benefit, p: &Period) -> Option<String> {
        if p.amounts.contains_key("*") || b.amount_key.is_empty() {
            return None;
        }
        let sets: Option<Vec<&Vec<String>>> =
            b.amount_key.iter().map(|k| self.values.get(k)).collect();
        let mut combos: Vec<String> = vec![String::new()];
        for set in sets? {
            combos = combos
                .iter()
                .flat_map(|c| {
                    set.iter().map(move |v| {
                        if c.is_empty() {
                            v.clone()
                        } else {
                            format!("{c}/{v}")
                        }
                    })
                })
                .collect();
        }
        combos.into_iter().find(|c| !p.amounts.contains_key(c))
    }

    /// Refuses a benefit whose id is not one of the guides (`guide_ids`): the id is the guide's
    /// file stem, so answers, citations and suggestions line up.
    pub fn check_guides(&self, guide_ids: &[String]) -> Result<(), String> {
        match self.benefits.iter().find(|b| !guide_ids.contains(&b.id)) {
            Some(b) => Err(format!(
                "benefit {} has no guide corpus/guides/{}.md (a benefit's id is its guide's file name)",
                b.id, b.id
            )),
            None => Ok(()),
        }
    }

    fn check(&self, b: &Benefit) -> Result<(), String> {
        let mut facts: Vec<&str> = b.amount_key.iter().map(String::as_str).collect();
        for c in &b.conditions {
            facts.push(&c.fact);
            facts.extend(c.and.iter().map(|a| a.fact.as_str()));
        }
        if let Some(f) = facts.iter().find(|f| !self.facts.contains_key(**f)) {
            return Err(format!(
                "benefit {} uses fact `{f}`, which has no entry in [facts]",
                b.id
            ));
        }
        for p in &b.periods {
            if p.amounts.is_empty() {
                return Err(format!(
                    "benefit {} period {} has no amounts",
                    b.id, p.label
                ));
            }
            let bad_key = p
                .amounts
                .keys()
                .find(|k| k.as_str() != "*" && k.split('/').count() != b.amount_key.len());
            if let Some(k) = bad_key {
                return Err(format!(
                    "benefit {} period {}: amount key `{k}` does not match amount_key {:?}",
                    b.id, p.label, b.amount_key
                ));
            }
            if let Some(hole) = self.hole(b, p) {
                return Err(format!(
                    "benefit {} period {}: no amount for `{hole}` (add it, or a `*` entry)",
                    b.id, p.label
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_rules_load_and_name_every_fact() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/benefits");
        let book = Rulebook::load(&dir).unwrap();
        for id in [
            "childcare-allowance-under-2",
            "senior-card",
            "tuition-fee-reduction",
        ] {
            assert!(book.benefits.iter().any(|b| b.id == id), "{id} missing");
        }
    }

    #[test]
    fn an_unknown_fact_or_a_bad_amount_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rule = r#"
[facts]
"a" = "甲"
[[benefit]]
id = "x"
name = "x"
bureau = "x"
source = "x"
amount_key = ["a"]
[[benefit.periods]]
from = "2020-01-01"
label = "p"
amounts = { "1/2" = 3 }
[[benefit.conditions]]
fact = "b"
op = "eq"
value = 1
pass = "ok"
fail = "no"
"#;
        std::fs::write(dir.path().join("x.toml"), rule).unwrap();
        let e = Rulebook::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("`b`"), "{e}");
        std::fs::write(
            dir.path().join("x.toml"),
            rule.replace("fact = \"b\"", "fact = \"a\""),
        )
        .unwrap();
        let e = Rulebook::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
    }
}
