//! Eligibility suggestions and simple-case review from the benefit rules
//! (`knowledge::benefits`): facts come from a form's values or MyData records (with consent),
//! ages are computed on the assessment date, and the date also picks the period whose amounts
//! apply. A benefit is `eligible` only when every condition holds on known facts; a missing fact
//! makes it `needs_info` (with what to ask), never a guess.

pub mod speech;

use knowledge::benefits::{Atom, Benefit, Condition, Op, Rulebook};
use serde::Serialize;
use std::collections::BTreeMap;

/// A known fact.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Fact {
    Bool(bool),
    Num(f64),
    Text(String),
}

/// Facts about an applicant's case, by dotted name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts(pub BTreeMap<String, Fact>);

fn ymd(iso: &str) -> Option<(i32, i32, i32)> {
    let mut it = iso.split('-').map(|p| p.parse::<i32>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// Whole months from `birth` to `on` (both ISO).
pub fn age_months(birth: &str, on: &str) -> Option<i64> {
    let (y1, m1, d1) = ymd(birth)?;
    let (y2, m2, d2) = ymd(on)?;
    let months = (y2 - y1) * 12 + (m2 - m1) - i32::from(d2 < d1);
    (months >= 0).then_some(months as i64)
}

impl Facts {
    pub fn set(&mut self, name: &str, fact: Fact) {
        self.0.insert(name.to_string(), fact);
    }

    /// From flat form or record values (`child.birth_date`, `household_status`,
    /// `elder.address`, …): copies them and derives ages on `on` (`*.age_years`,
    /// `*.age_months`), residency (`*.resident_here`: the address names one of `city_names`)
    /// and `child.birth_order_group` (`1`, `2`, `3+`).
    pub fn from_values(
        values: &serde_json::Map<String, serde_json::Value>,
        on: &str,
        city_names: &[String],
    ) -> Facts {
        let mut f = Facts::default();
        for (k, v) in values {
            let fact = match v {
                serde_json::Value::Bool(b) => Fact::Bool(*b),
                serde_json::Value::Number(n) => Fact::Num(n.as_f64().unwrap_or_default()),
                serde_json::Value::String(s) => Fact::Text(s.clone()),
                _ => continue,
            };
            f.set(k, fact);
            let (prefix, leaf) = k.rsplit_once('.').unwrap_or(("", k.as_str()));
            let dotted = |name: &str| {
                if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}.{name}")
                }
            };
            match (leaf, v) {
                ("birth_date", serde_json::Value::String(d)) => {
                    if let Some(m) = age_months(d, on) {
                        f.set(&dotted("age_months"), Fact::Num(m as f64));
                        f.set(&dotted("age_years"), Fact::Num((m / 12) as f64));
                    }
                }
                ("address", serde_json::Value::String(a)) => {
                    let here = city_names.iter().any(|c| a.contains(c.as_str()));
                    f.set(&dotted("resident_here"), Fact::Bool(here));
                }
                ("birth_order", serde_json::Value::Number(n)) => {
                    let group = match n.as_u64() {
                        Some(1) => "1",
                        Some(2) => "2",
                        _ => "3+",
                    };
                    f.set(&dotted("birth_order_group"), Fact::Text(group.into()));
                }
                _ => {}
            }
        }
        f
    }

    fn get(&self, name: &str) -> Option<&Fact> {
        self.0.get(name)
    }
}

/// How one condition came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    Unknown,
}

/// Where an application or a resident stands for one benefit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Eligible,
    NotEligible,
    /// Some fact is missing; `missing` says which.
    NeedsInfo,
}

/// One condition's result, for the officer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The condition's (first) fact.
    pub fact: String,
    pub outcome: Outcome,
    /// The condition's pass or fail text; for unknown ones, what is missing.
    pub reason: String,
}

/// One benefit assessed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub benefit: String,
    pub name: String,
    pub bureau: String,
    pub status: Status,
    /// NT$ (or %, see `unit`) for the period in force on the assessment date.
    pub amount: Option<u32>,
    pub unit: Option<String>,
    pub period: Option<String>,
    pub checks: Vec<Check>,
    /// zh-TW names of the facts still needed.
    pub missing: Vec<String>,
    pub documents: Vec<String>,
    pub source: String,
    /// The rule's values still need the city's confirmation.
    pub verify: bool,
    /// The guide's own sentence on amounts (shown where there is no single amount).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_text: Option<String>,
}

fn compare(fact: &Fact, op: Op, value: &toml::Value) -> bool {
    use toml::Value as V;
    let num = |v: &V| match v {
        V::Integer(i) => Some(*i as f64),
        V::Float(f) => Some(*f),
        _ => None,
    };
    match (op, fact) {
        (Op::In, f) => value
            .as_array()
            .is_some_and(|vals| vals.iter().any(|v| compare(f, Op::Eq, v))),
        (_, Fact::Num(x)) => match num(value) {
            Some(y) => match op {
                Op::Lt => *x < y,
                Op::Le => *x <= y,
                Op::Gt => *x > y,
                Op::Ge => *x >= y,
                Op::Eq => (*x - y).abs() < 1e-9,
                Op::Ne => (*x - y).abs() >= 1e-9,
                Op::In => false,
            },
            None => false,
        },
        (Op::Eq, Fact::Bool(b)) => value.as_bool() == Some(*b),
        (Op::Ne, Fact::Bool(b)) => value.as_bool().is_some_and(|v| v != *b),
        (Op::Eq, Fact::Text(s)) => value.as_str() == Some(s.as_str()),
        (Op::Ne, Fact::Text(s)) => value.as_str().is_some_and(|v| v != s),
        _ => false,
    }
}

fn atoms(c: &Condition) -> Vec<Atom> {
    std::iter::once(Atom {
        fact: c.fact.clone(),
        op: c.op,
        value: c.value.clone(),
    })
    .chain(c.and.iter().cloned())
    .collect()
}

/// A condition on the facts: fails as soon as a known part fails; unknown when a part is missing.
fn evaluate(c: &Condition, facts: &Facts) -> (Outcome, Vec<String>) {
    let mut missing = Vec::new();
    for a in atoms(c) {
        match facts.get(&a.fact) {
            Some(f) if !compare(f, a.op, &a.value) => return (Outcome::Fail, Vec::new()),
            Some(_) => {}
            None => missing.push(a.fact.clone()),
        }
    }
    missing.dedup();
    if missing.is_empty() {
        (Outcome::Pass, missing)
    } else {
        (Outcome::Unknown, missing)
    }
}

/// A condition with its outcome and the facts it missed.
type Evaluated<'a> = (&'a Condition, Outcome, Vec<String>);

/// Assesses one benefit on date `on` (ISO).
pub fn assess(book: &Rulebook, b: &Benefit, facts: &Facts, on: &str) -> Assessment {
    let label = |f: &str| book.facts.get(f).cloned().unwrap_or_else(|| f.to_string());
    let mut checks = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut any_fail = false;
    let mut any_unknown = false;
    // Ungrouped conditions one by one; grouped ones as alternatives.
    let mut groups: BTreeMap<&str, Vec<Evaluated>> = BTreeMap::new();
    for c in &b.conditions {
        let (outcome, miss) = evaluate(c, facts);
        match &c.group {
            Some(g) => groups
                .entry(g.as_str())
                .or_default()
                .push((c, outcome, miss)),
            None => {
                let fact = c.fact.clone();
                match outcome {
                    Outcome::Pass => checks.push(Check {
                        fact,
                        outcome,
                        reason: c.pass.clone(),
                    }),
                    Outcome::Fail => {
                        any_fail = true;
                        checks.push(Check {
                            fact,
                            outcome,
                            reason: c.fail.clone(),
                        });
                    }
                    Outcome::Unknown if c.exclusion => checks.push(Check {
                        fact,
                        outcome,
                        reason: format!("送件時確認：{}", c.pass),
                    }),
                    Outcome::Unknown => {
                        any_unknown = true;
                        let names: Vec<String> = miss.iter().map(|m| label(m)).collect();
                        checks.push(Check {
                            fact,
                            outcome,
                            reason: format!("需要確認：{}", names.join("、")),
                        });
                        missing.extend(names);
                    }
                }
            }
        }
    }
    for members in groups.values() {
        let fact = members
            .first()
            .map(|(c, _, _)| c.fact.clone())
            .unwrap_or_default();
        if let Some((c, _, _)) = members.iter().find(|(_, o, _)| *o == Outcome::Pass) {
            checks.push(Check {
                fact: c.fact.clone(),
                outcome: Outcome::Pass,
                reason: c.pass.clone(),
            });
        } else if members.iter().all(|(_, o, _)| *o == Outcome::Fail) {
            any_fail = true;
            let reason = members
                .iter()
                .map(|(c, _, _)| c.fail.as_str())
                .collect::<Vec<_>>()
                .join("，且");
            checks.push(Check {
                fact,
                outcome: Outcome::Fail,
                reason,
            });
        } else {
            any_unknown = true;
            let mut names: Vec<String> = Vec::new();
            for f in members
                .iter()
                .filter(|(_, o, _)| *o == Outcome::Unknown)
                .flat_map(|(_, _, m)| m)
            {
                let l = label(f);
                if !names.contains(&l) {
                    names.push(l);
                }
            }
            checks.push(Check {
                fact,
                outcome: Outcome::Unknown,
                reason: format!("需要確認：{}", names.join("或")),
            });
            missing.extend(names);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    missing.retain(|m| seen.insert(m.clone()));
    // Alternatives passing with the same words read once.
    let mut said = std::collections::BTreeSet::new();
    checks.retain(|c| said.insert(c.reason.clone()));
    let status = if any_fail {
        Status::NotEligible
    } else if any_unknown {
        Status::NeedsInfo
    } else {
        Status::Eligible
    };
    let period = b
        .periods
        .iter()
        .find(|p| p.from.as_str() <= on && p.to.as_deref().is_none_or(|t| on <= t));
    let key: Option<String> = b
        .amount_key
        .iter()
        .map(|k| match facts.get(k) {
            Some(Fact::Text(s)) => Some(s.clone()),
            Some(Fact::Num(n)) => Some(n.to_string()),
            Some(Fact::Bool(x)) => Some(x.to_string()),
            None => None,
        })
        .collect::<Option<Vec<String>>>()
        .map(|parts| parts.join("/"));
    let amount = match (period, &key) {
        (Some(p), Some(k)) if status != Status::NotEligible => p
            .amounts
            .get(k)
            .or_else(|| p.amounts.get("*"))
            .copied()
            // 0: the guide states no number for this case (see amount_text).
            .filter(|a| *a > 0),
        _ => None,
    };
    Assessment {
        benefit: b.id.clone(),
        name: b.name.clone(),
        bureau: b.bureau.clone(),
        status,
        amount,
        unit: b.unit.clone(),
        period: period.map(|p| p.label.clone()),
        checks,
        missing,
        documents: b.documents.clone(),
        source: b.source.clone(),
        verify: b.verify,
        amount_text: b.amount_text.clone(),
    }
}

/// Whether the facts place the person in the benefit's target group: every anchor condition
/// (and every anchor group) holds. A benefit with no anchors needs one passing condition
/// besides residency.
fn in_target_group(b: &Benefit, facts: &Facts) -> bool {
    let anchors: Vec<&Condition> = b.conditions.iter().filter(|c| c.anchor).collect();
    if anchors.is_empty() {
        return b
            .conditions
            .iter()
            .any(|c| !c.fact.ends_with("resident_here") && evaluate(c, facts).0 == Outcome::Pass);
    }
    let mut groups: BTreeMap<&str, bool> = BTreeMap::new();
    for c in anchors {
        let pass = evaluate(c, facts).0 == Outcome::Pass;
        match &c.group {
            Some(g) => *groups.entry(g.as_str()).or_default() |= pass,
            None if !pass => return false,
            None => {}
        }
    }
    groups.values().all(|p| *p)
}

/// How many missing facts a suggestion asks for at most: the ones that decide it.
const MAX_ASKED: usize = 3;

/// Benefits the facts point to: only those the person could plausibly get (every anchor
/// holds: a child benefit needs a child, a senior benefit a senior), eligible ones first and
/// the larger amounts before smaller; the ones clearly not applicable are left out.
pub fn suggest(book: &Rulebook, facts: &Facts, on: &str) -> Vec<Assessment> {
    let mut out: Vec<Assessment> = book
        .benefits
        .iter()
        .filter(|b| in_target_group(b, facts))
        .map(|b| assess(book, b, facts, on))
        .filter(|a| a.status != Status::NotEligible)
        .map(|mut a| {
            a.missing.truncate(MAX_ASKED);
            a
        })
        .collect();
    out.sort_by_key(|a| {
        (
            a.status != Status::Eligible,
            std::cmp::Reverse(a.amount.unwrap_or(0)),
            a.benefit.clone(),
        )
    });
    out
}

/// Today in Taiwan (UTC+8) as ISO `YYYY-MM-DD`: the date benefits are assessed on.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() + 8 * 3600) / 86_400)
        .unwrap_or_default() as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Benefits offered at most at once (「您可能可以申請」).
const MAX_OFFERED: usize = 5;

/// A benefit offered to a resident who described their situation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offered {
    /// The benefit id, which is its guide's id (for the citation).
    pub benefit: String,
    pub name: String,
    pub bureau: String,
    pub status: Status,
    /// 「每月（新臺幣元）8,329」, or the guide's own words on amounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// What is still needed to tell (zh-TW), at most three.
    pub missing: Vec<String>,
    /// The guide section the conditions come from (where the citation opens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The online application with MyData pre-fill, when the benefit has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_form: Option<String>,
    /// Conditions and amounts still to be confirmed against the city's announcement.
    pub verify: bool,
}

/// A direct ask for what one can apply for.
fn asks_for_benefits(text: &str) -> bool {
    static ASK: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    ASK.get_or_init(|| {
        regex::Regex::new(
            r"((可以|能|可|該)(申請|領|辦)(什麼|哪些|甚麼)|有(什麼|哪些|沒有)[^，。？?]{0,6}(補助|福利|津貼|可以申請|可以領|資源)|符合(什麼|哪些)|什麼補助|哪些補助)",
        )
        .expect("the ask pattern compiles")
    })
    .is_match(text)
}

fn number_with_commas(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What to offer a resident who described themself (「我今年67歲，一個人住在臺北市，是中低收入戶」):
/// nothing for a plain question; the suggestions when the message says at least two things
/// about the person, or one with a direct ask (「可以申請什麼」). `forms` are the application
/// forms (a benefit links to its form when that form pre-fills from MyData).
pub fn offer(
    book: &Rulebook,
    forms: &[knowledge::FormSchema],
    facts: &Facts,
    heard: &speech::Heard,
    text: &str,
    on: &str,
) -> Vec<Offered> {
    let said = heard.said.len();
    if said < 2 && !(said >= 1 && asks_for_benefits(text)) {
        return Vec::new();
    }
    suggest(book, facts, on)
        .into_iter()
        .take(MAX_OFFERED)
        .filter_map(|a| {
            let rule = book.benefits.iter().find(|b| b.id == a.benefit)?;
            let amount = match (a.amount, &a.unit) {
                // 「每月（新臺幣元）」 reads 「每月 8,329 元」.
                (Some(n), Some(u)) if n > 0 => Some(match u.strip_suffix("（新臺幣元）") {
                    Some(per) => format!("{per} {} 元", number_with_commas(n)),
                    None => format!("{u} {}", number_with_commas(n)),
                }),
                (Some(n), None) if n > 0 => Some(format!("新臺幣{}元", number_with_commas(n))),
                _ => a.amount_text.clone(),
            };
            let section = rule.conditions.iter().find_map(|c| c.section.clone());
            let apply_form = rule
                .form
                .clone()
                .filter(|f| forms.iter().any(|s| &s.name == f && !s.mydata.is_empty()));
            Some(Offered {
                benefit: a.benefit,
                name: a.name,
                bureau: a.bureau,
                status: a.status,
                amount,
                missing: a.missing,
                section,
                apply_form,
                verify: a.verify,
            })
        })
        .collect()
}

/// The officer's decision aid for one application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    pub form: String,
    /// `pass` when every rule of every benefit applied for holds; else `needs_review`.
    pub decision: &'static str,
    pub assessments: Vec<Assessment>,
    /// Why it needs review (failed or unknown conditions), for the officer.
    pub reasons: Vec<String>,
}

/// Simple-case review: checks the application's form against each benefit applied with it.
pub fn review(book: &Rulebook, form: &str, facts: &Facts, on: &str) -> Review {
    let assessments: Vec<Assessment> = book
        .benefits
        .iter()
        .filter(|b| b.form.as_deref() == Some(form))
        .map(|b| assess(book, b, facts, on))
        .collect();
    let pass = assessments.iter().any(|a| a.status == Status::Eligible);
    let reasons = if pass {
        Vec::new()
    } else {
        assessments
            .iter()
            .flat_map(|a| {
                a.checks
                    .iter()
                    .filter(|c| c.outcome != Outcome::Pass)
                    .map(move |c| format!("{}：{}", a.name, c.reason))
            })
            .collect()
    };
    Review {
        form: form.to_string(),
        decision: if pass { "pass" } else { "needs_review" },
        assessments,
        reasons,
    }
}

/// Facts from a resident's own description: what the application forms' extractor reads (a
/// birth date gives an age on `on`), overlaid with what [`speech::hear`] reads from how
/// people talk (「今年67歲」「一個人住」「中低收入戶」), which wins where both say something.
pub fn facts_from_text(
    text: &str,
    extractor: &crate::intake::Extractor,
    on: &str,
) -> (Facts, speech::Heard) {
    let cities = &extractor.taxonomy().city_names;
    let mut values = serde_json::Map::new();
    for form in ["childcare_allowance", "senior_card", "student_scholarship"] {
        if let Ok(x) = extractor.extract(form, text) {
            for (k, v) in x.values() {
                // Only what the text gave (not a form's default).
                if !v.is_null() {
                    values.entry(k).or_insert(v);
                }
            }
        }
    }
    let mut facts = Facts::from_values(&values, on, cities);
    let year = on.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2026);
    let month = on.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let heard = speech::hear(text, cities, (year, month));
    for k in &heard.asked {
        facts.0.remove(k);
    }
    for (k, v) in heard.facts().0 {
        facts.set(&k, v);
    }
    (facts, heard)
}

/// Facts for a resident from what every form pre-fills from their records, plus what they
/// declared themself.
pub fn facts_from_records(
    forms: &[knowledge::FormSchema],
    records: &crate::mydata::Records,
    declared: &serde_json::Map<String, serde_json::Value>,
    on: &str,
    city_names: &[String],
) -> Facts {
    let mut values = serde_json::Map::new();
    for form in forms {
        for (k, v) in crate::mydata::prefill(form, records) {
            values.entry(k).or_insert(v.value);
        }
    }
    for (k, v) in declared {
        values.insert(k.clone(), v.clone());
    }
    Facts::from_values(&values, on, city_names)
}
