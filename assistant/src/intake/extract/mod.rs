//! Form-field extraction: free text (typed or transcribed) + a form schema → field values, each
//! with its source span and a confidence, validation problems, and the follow-up questions for
//! required fields still missing. Rules, dictionaries and gazetteers run first; an LLM with
//! schema-constrained decoding ([`llm_fill`]) may fill what they miss, and every value it gives
//! must be found in the text and pass the same validators. Nothing is silently guessed.

pub mod llm_fill;
pub mod scan;

use crate::intake::category;
use knowledge::{FieldKind, FieldSpec, FormSchema, Pick, Taxonomy};
use scan::{Found, Text};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from the text by the rules.
    Text,
    /// Read from the text by the LLM (and found there verbatim).
    Llm,
    /// The schema's default (e.g. no hazard mentioned).
    Default,
    /// Derived from other values (e.g. the applicant is the elder: 本人).
    Derived,
}

/// One field's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldValue {
    pub value: serde_json::Value,
    /// Character span in the input text (start, end), where the value was read.
    pub span: Option<(usize, usize)>,
    /// The text of the span.
    pub evidence: Option<String>,
    pub source: Source,
    pub confidence: f32,
}

/// A value the text gave that is invalid, or a conflict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub field: Option<String>,
    pub span: Option<(usize, usize)>,
    /// zh-TW, for the resident or the agent.
    pub message: String,
}

/// The question to ask for a missing required field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowUp {
    pub field: String,
    pub label: String,
    pub question: String,
}

/// What the extractor read from a text for one form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extraction {
    pub schema: String,
    pub fields: BTreeMap<String, FieldValue>,
    pub problems: Vec<Problem>,
    pub follow_ups: Vec<FollowUp>,
    /// For case reports: the responsible bureau of the category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bureau: Option<String>,
    /// For case reports: the runner-up categories with their scores, for the agent to pick
    /// from when the first is wrong.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<(String, f32)>,
}

impl Extraction {
    /// The values as one flat JSON object (`{"applicant.name": "王小明", …}`).
    pub fn values(&self) -> serde_json::Map<String, serde_json::Value> {
        self.fields
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect()
    }
}

/// Why extraction could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("沒有名為 {0} 的表單（可用：{1}）")]
    UnknownSchema(String, String),
}

/// The extractor: form schemas, the case taxonomy and the category classifier.
pub struct Extractor {
    forms: Vec<FormSchema>,
    taxonomy: Arc<Taxonomy>,
    classifier: category::Classifier,
    llm: Option<llm_fill::LlmFiller>,
}

const RULE_CONFIDENCE: f32 = 0.9;
const FALLBACK_CONFIDENCE: f32 = 0.7;

impl Extractor {
    /// The configured form schemas and taxonomy (rules only; add models with
    /// [`Extractor::with_embedder`] and [`Extractor::with_llm`]).
    pub fn open(forms_dir: &Path, cases_dir: &Path) -> anyhow::Result<Extractor> {
        let forms = knowledge::load_forms(forms_dir)?;
        let taxonomy = Taxonomy::load(cases_dir)?;
        Ok(Extractor::new(forms, Arc::new(taxonomy)))
    }

    pub fn new(forms: Vec<FormSchema>, taxonomy: Arc<Taxonomy>) -> Extractor {
        let classifier = category::Classifier::new(taxonomy.clone());
        Extractor {
            forms,
            taxonomy,
            classifier,
            llm: None,
        }
    }

    /// Lets an LLM fill required fields the rules missed.
    pub fn with_llm(mut self, llm: llm_fill::LlmFiller) -> Extractor {
        self.llm = Some(llm);
        self
    }

    /// Adds dense similarity to the category classifier.
    pub fn with_embedder(
        mut self,
        embedder: Arc<dyn retrieval::Embedder>,
    ) -> anyhow::Result<Extractor> {
        self.classifier = self.classifier.with_embedder(embedder)?;
        Ok(self)
    }

    pub fn forms(&self) -> &[FormSchema] {
        &self.forms
    }

    pub fn taxonomy(&self) -> &Taxonomy {
        &self.taxonomy
    }

    pub fn classifier(&self) -> &category::Classifier {
        &self.classifier
    }

    pub fn form(&self, name: &str) -> Result<&FormSchema, ExtractError> {
        self.forms.iter().find(|f| f.name == name).ok_or_else(|| {
            ExtractError::UnknownSchema(
                name.to_string(),
                self.forms
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join("、"),
            )
        })
    }

    /// Extracts the fields of form `schema` from `text`: typed values assigned to the right
    /// person, then the one-per-form fields, then the LLM for what the rules missed, then the
    /// bounds, defaults and follow-up questions.
    pub fn extract(&self, schema: &str, text: &str) -> Result<Extraction, ExtractError> {
        let form = self.form(schema)?;
        let t = Text::new(text);
        let mut out = Extraction {
            schema: form.name.clone(),
            fields: BTreeMap::new(),
            problems: Vec::new(),
            follow_ups: Vec::new(),
            bureau: None,
            alternatives: Vec::new(),
        };
        self.personal_values(form, &t, text, &mut out);
        self.single_values(form, &t, text, &mut out);
        same_person(form, &mut out);
        if let Some(llm) = &self.llm {
            llm.fill(form, &t, text, &mut out);
        }
        check_bounds(form, &mut out);
        defaults_and_follow_ups(form, &mut out);
        Ok(out)
    }

    /// Typed values that can belong to one of several people (names, IDs, phones, dates,
    /// addresses, e-mails, amounts), each assigned to the field of the person it is said about.
    fn personal_values(&self, form: &FormSchema, t: &Text, text: &str, out: &mut Extraction) {
        let roles = role_mentions(t, form);
        let role_cues: Vec<&str> = form
            .roles
            .iter()
            .flat_map(|r| r.cues.iter().map(String::as_str))
            .collect();
        for kind in [
            FieldKind::Name,
            FieldKind::IdNumber,
            FieldKind::Phone,
            FieldKind::Date,
            FieldKind::Address,
            FieldKind::Email,
            FieldKind::Amount,
        ] {
            let fields: Vec<&FieldSpec> = form.fields.iter().filter(|f| f.kind == kind).collect();
            if fields.is_empty() {
                continue;
            }
            let found = match kind {
                FieldKind::Name => scan::names(t, &role_cues),
                FieldKind::IdNumber => scan::ids(t),
                FieldKind::Phone => scan::phones(t),
                FieldKind::Date => scan::dates(t),
                FieldKind::Address => scan::addresses(t),
                FieldKind::Email => scan::emails(t),
                _ => scan::amounts(t),
            };
            for f in scan::apply_corrections(t, found) {
                let (field, confidence) = assign(&fields, &roles, f.start);
                match (&f.value, &f.problem) {
                    (Some(v), _) => keep_first(out, field, kind, t, text, &f, v, confidence),
                    (None, Some(message)) => out.problems.push(Problem {
                        field: Some(field.name.clone()),
                        span: Some((f.start, f.end)),
                        message: format!("{}：{message}", field.label),
                    }),
                    (None, None) => {}
                }
            }
        }
    }

    /// Fields a form has once: enums, integers, district, road, pole numbers, the case category
    /// (with its bureau and the alternatives) and yes/no fields.
    fn single_values(&self, form: &FormSchema, t: &Text, text: &str, out: &mut Extraction) {
        for field in &form.fields {
            let found: Option<(serde_json::Value, Option<Found>)> = match field.kind {
                FieldKind::Enum => enum_value(t, field).map(|(v, f)| (v.into(), Some(f))),
                FieldKind::Integer => integer_value(t, field).map(|(v, f)| (v.into(), Some(f))),
                FieldKind::District => first_found(scan::apply_corrections(
                    t,
                    scan::districts(t, &self.taxonomy.districts),
                )),
                FieldKind::Road => first_found(scan::apply_corrections(
                    t,
                    scan::roads(t, &self.taxonomy.roads),
                )),
                FieldKind::PoleNumbers => pole_list(t),
                FieldKind::Category => self.category(text, out),
                FieldKind::Bool => {
                    let category = out
                        .fields
                        .get("category")
                        .and_then(|v| v.value.as_str())
                        .and_then(|name| self.taxonomy.category(name));
                    hazard(t, field, category, out.fields.get("fault"))
                        .map(|f| (true.into(), Some(f)))
                }
                _ => None,
            };
            if let Some((value, f)) = found {
                let fv = match f {
                    Some(f) => text_value(text, &f, value, RULE_CONFIDENCE),
                    None => FieldValue {
                        value,
                        span: None,
                        evidence: None,
                        source: Source::Text,
                        confidence: RULE_CONFIDENCE,
                    },
                };
                out.fields.insert(field.name.clone(), fv);
            }
        }
    }

    /// The dispatch category (its bureau and the alternatives go into `out`).
    fn category(
        &self,
        text: &str,
        out: &mut Extraction,
    ) -> Option<(serde_json::Value, Option<Found>)> {
        let ranked = self.classifier.classify(text);
        out.alternatives = ranked
            .iter()
            .take(4)
            .map(|c| (c.name.clone(), c.score))
            .collect();
        ranked.first().map(|c| {
            out.bureau = self.taxonomy.category(&c.name).map(|c| c.bureau.clone());
            (
                c.name.clone().into(),
                c.evidence.map(|(s, e)| Found {
                    start: s,
                    end: e,
                    value: None,
                    problem: None,
                }),
            )
        })
    }
}

/// Keeps the first value said for a field; a different second value becomes a problem to
/// confirm.
#[allow(clippy::too_many_arguments)]
fn keep_first(
    out: &mut Extraction,
    field: &FieldSpec,
    kind: FieldKind,
    t: &Text,
    text: &str,
    f: &Found,
    v: &str,
    confidence: f32,
) {
    if let Some(existing) = out.fields.get(&field.name) {
        if existing.value != serde_json::json!(v) {
            out.problems.push(Problem {
                field: Some(field.name.clone()),
                span: Some((f.start, f.end)),
                message: format!(
                    "{}有兩個不同的值（{}、{}），先採用第一個，請確認",
                    field.label,
                    existing.evidence.clone().unwrap_or_default(),
                    t.slice(f.start, f.end)
                ),
            });
        }
        return;
    }
    let value = match kind {
        FieldKind::Address => serde_json::Value::String(knowledge::validate::address(v)),
        FieldKind::Amount => v
            .parse::<u64>()
            .map(serde_json::Value::from)
            .unwrap_or_default(),
        _ => serde_json::Value::String(v.to_string()),
    };
    out.fields
        .insert(field.name.clone(), text_value(text, f, value, confidence));
}

/// The first match as a field value with its span.
fn first_found(found: Vec<Found>) -> Option<(serde_json::Value, Option<Found>)> {
    found
        .into_iter()
        .next()
        .map(|f| (f.value.clone().unwrap_or_default().into(), Some(f)))
}

/// Every pole number said (once each), spanning from the first to the last.
fn pole_list(t: &Text) -> Option<(serde_json::Value, Option<Found>)> {
    let found = scan::pole_numbers(t);
    let mut list: Vec<String> = Vec::new();
    for f in &found {
        if let Some(v) = &f.value {
            if !list.contains(v) {
                list.push(v.clone());
            }
        }
    }
    let span = found
        .first()
        .map(|f| f.start)
        .zip(found.last().map(|f| f.end));
    (!list.is_empty()).then(|| {
        (
            serde_json::json!(list),
            span.map(|(s, e)| Found {
                start: s,
                end: e,
                value: None,
                problem: None,
            }),
        )
    })
}

/// Defaults for fields still empty, and a follow-up question for each required one.
fn defaults_and_follow_ups(form: &FormSchema, out: &mut Extraction) {
    for field in &form.fields {
        if out.fields.contains_key(&field.name) {
            continue;
        }
        if let Some(d) = &field.default {
            if let Ok(value) = serde_json::to_value(d) {
                out.fields.insert(
                    field.name.clone(),
                    FieldValue {
                        value,
                        span: None,
                        evidence: None,
                        source: Source::Default,
                        confidence: 0.5,
                    },
                );
                continue;
            }
        }
        if field.required {
            out.follow_ups.push(FollowUp {
                field: field.name.clone(),
                label: field.label.clone(),
                question: field
                    .question
                    .clone()
                    .unwrap_or_else(|| format!("請問{}是？", field.label)),
            });
        }
    }
}

fn text_value(text: &str, f: &Found, value: serde_json::Value, confidence: f32) -> FieldValue {
    FieldValue {
        value,
        span: Some((f.start, f.end)),
        evidence: Some(text.chars().skip(f.start).take(f.end - f.start).collect()),
        source: Source::Text,
        confidence,
    }
}

/// Positions where the text switches to talking about a role (longest cue wins).
fn role_mentions(t: &Text, form: &FormSchema) -> Vec<(usize, String)> {
    let mut cues: Vec<(&str, &str)> = form
        .roles
        .iter()
        .flat_map(|r| r.cues.iter().map(move |c| (c.as_str(), r.name.as_str())))
        .collect();
    cues.sort_by_key(|(c, _)| std::cmp::Reverse(c.chars().count()));
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if let Some((c, r)) = cues.iter().find(|(c, _)| t.at(i, c)) {
            // 「我是她兒子」: the relation word names the speaker.
            let speaker = ["我是她", "我是他", "我是", "我是她的", "我是他的", "本人是"]
                .iter()
                .any(|w| t.ends_at(i, w));
            let first = form
                .roles
                .first()
                .map(|r| r.name.as_str())
                .unwrap_or_default();
            let role = if speaker { first } else { r };
            out.push((i, role.to_string()));
            i += c.chars().count();
        } else {
            i += 1;
        }
    }
    out
}

/// Which of several same-typed fields a value at `pos` belongs to: the role talked about last
/// before it, else the form's primary field of that type.
fn assign<'a>(
    fields: &[&'a FieldSpec],
    roles: &[(usize, String)],
    pos: usize,
) -> (&'a FieldSpec, f32) {
    if fields.len() == 1 {
        return (fields[0], RULE_CONFIDENCE);
    }
    if let Some((_, role)) = roles.iter().rev().find(|(p, _)| *p <= pos) {
        if let Some(f) = fields.iter().find(|f| f.role() == Some(role.as_str())) {
            return (f, RULE_CONFIDENCE);
        }
    }
    let f = fields.iter().find(|f| f.primary).unwrap_or(&fields[0]);
    (f, FALLBACK_CONFIDENCE)
}

/// Whether a negation comes right before `pos` (「沒有漏電」).
fn negated(t: &Text, pos: usize) -> bool {
    ["沒有", "沒", "無", "未", "並非", "不是", "非"]
        .iter()
        .any(|n| t.ends_at(pos, n))
}

/// A synonym that is itself a denial (「沒有低收」, 「不是中低收」).
fn is_denial(word: &str) -> bool {
    word.starts_with('沒') || word.starts_with('不') || word.starts_with('非')
}

/// An enum option named in the text, through its synonyms (longest match at each position).
fn enum_value(t: &Text, field: &FieldSpec) -> Option<(String, Found)> {
    let mut words: Vec<(&str, &str)> = Vec::new();
    for o in &field.options {
        words.push((o.as_str(), o.as_str()));
        for s in field.synonyms.get(o).into_iter().flatten() {
            words.push((s.as_str(), o.as_str()));
        }
    }
    words.sort_by_key(|(w, _)| std::cmp::Reverse(w.chars().count()));
    let mut hits: Vec<(usize, usize, &str)> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        match words.iter().find(|(w, _)| t.at(i, w)) {
            Some((w, o)) => {
                let n = w.chars().count();
                if is_denial(w) || !negated(t, i) {
                    hits.push((i, i + n, o));
                }
                i += n;
            }
            None => i += 1,
        }
    }
    // A taken-back mention (「低收，不對，中低收」) does not count.
    let found: Vec<Found> = hits
        .iter()
        .map(|(s, e, o)| Found {
            start: *s,
            end: *e,
            value: Some(o.to_string()),
            problem: None,
        })
        .collect();
    let found = scan::apply_corrections(t, found);
    let negative = |f: &Found| is_denial(&t.slice(f.start, f.end));
    let best = match field.pick {
        // 「不是低收入戶，是中低收入戶」: a denial followed by the real value.
        Pick::First => match found.iter().position(|f| !negative(f)) {
            Some(p) if p > 0 && negative(&found[0]) => found.into_iter().nth(p),
            _ => found.into_iter().next(),
        },
        Pick::Priority => found.into_iter().min_by_key(|f| {
            field
                .options
                .iter()
                .position(|o| Some(o) == f.value.as_ref())
                .unwrap_or(usize::MAX)
        }),
    }?;
    Some((best.value.clone()?, best))
}

/// An integer: a synonym (`老二` → 2), `第N胎/第N個`, or digits after a cue.
fn integer_value(t: &Text, field: &FieldSpec) -> Option<(i64, Found)> {
    let mut words: Vec<(&str, i64)> = Vec::new();
    for (k, ws) in &field.synonyms {
        if let Ok(n) = k.parse::<i64>() {
            words.extend(ws.iter().map(|w| (w.as_str(), n)));
        }
    }
    words.sort_by_key(|(w, _)| std::cmp::Reverse(w.chars().count()));
    let mut found = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if let Some((w, n)) = words.iter().find(|(w, _)| t.at(i, w)) {
            let e = i + w.chars().count();
            found.push(Found {
                start: i,
                end: e,
                value: Some(n.to_string()),
                problem: None,
            });
            i = e;
            continue;
        }
        if t.at(i, "第") {
            let mut e = i + 1;
            while e < t.len()
                && (t.chars[e].is_ascii_digit() || "一二三四五六七八九十".contains(t.chars[e]))
            {
                e += 1;
            }
            if e > i + 1 && (t.at(e, "胎") || t.at(e, "個") || t.at(e, "位")) {
                if let Some(n) = knowledge::text::parse_number(&t.slice(i + 1, e)) {
                    found.push(Found {
                        start: i,
                        end: e + 1,
                        value: Some(n.to_string()),
                        problem: None,
                    });
                    i = e + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    for cue in &field.cues {
        for p in t.find_all(cue) {
            let mut k = p + cue.chars().count();
            while matches!(t.chars.get(k), Some(':' | '：' | ' ' | '是' | '為')) {
                k += 1;
            }
            let d0 = k;
            while k < t.len() && t.chars[k].is_ascii_digit() {
                k += 1;
            }
            if k > d0 && k - d0 <= 3 {
                found.push(Found {
                    start: d0,
                    end: k,
                    value: Some(t.slice(d0, k)),
                    problem: None,
                });
            }
        }
    }
    found.sort_by_key(|f| f.start);
    let found = scan::apply_corrections(t, found);
    let f = found.into_iter().next()?;
    Some((f.value.as_deref()?.parse().ok()?, f))
}

/// A yes/no field is true when one of its `"true"` words (and, for case reports, a
/// category's hazard words) occurs without a negation before it, or the fault is an exposed
/// wire.
fn hazard(
    t: &Text,
    field: &FieldSpec,
    category: Option<&knowledge::Category>,
    fault: Option<&FieldValue>,
) -> Option<Found> {
    if fault.and_then(|f| f.value.as_str()) == Some("電線外露") {
        let span = fault.and_then(|f| f.span).unwrap_or((0, 0));
        return Some(Found {
            start: span.0,
            end: span.1,
            value: None,
            problem: None,
        });
    }
    let mut words: Vec<&str> = field
        .synonyms
        .get("true")
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if let Some(c) = category {
        words.extend(c.hazard_keywords.iter().map(String::as_str));
    }
    words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
    let mut i = 0;
    while i < t.len() {
        if let Some(w) = words.iter().find(|w| t.at(i, w)) {
            let qualified = [
                "沒有",
                "無",
                "不會",
                "沒",
                "並無",
                "無立即",
                "沒什麼",
                "不算",
                "不是",
                "不",
            ]
            .iter()
            .any(|n| t.ends_at(i, n));
            if !qualified {
                return Some(Found {
                    start: i,
                    end: i + w.chars().count(),
                    value: None,
                    problem: None,
                });
            }
            i += w.chars().count();
        } else {
            i += 1;
        }
    }
    None
}

/// When the applicant is the person the form is about (an enum says 本人), their name and ID
/// fill each other's fields.
fn same_person(form: &FormSchema, out: &mut Extraction) {
    let own = out
        .fields
        .values()
        .any(|v| v.value.as_str() == Some("本人") && v.source == Source::Text);
    if !own {
        return;
    }
    for f in &form.fields {
        let Some((role, rest)) = f.name.split_once('.') else {
            continue;
        };
        if role != "applicant" || !matches!(f.kind, FieldKind::Name | FieldKind::IdNumber) {
            continue;
        }
        for g in &form.fields {
            let Some((other, grest)) = g.name.split_once('.') else {
                continue;
            };
            if other == role || grest != rest {
                continue;
            }
            match (
                out.fields.get(&f.name).cloned(),
                out.fields.get(&g.name).cloned(),
            ) {
                (Some(v), None) => {
                    out.fields.insert(
                        g.name.clone(),
                        FieldValue {
                            source: Source::Derived,
                            ..v
                        },
                    );
                }
                (None, Some(v)) => {
                    out.fields.insert(
                        f.name.clone(),
                        FieldValue {
                            source: Source::Derived,
                            ..v
                        },
                    );
                }
                _ => {}
            }
        }
    }
}

/// Integers and amounts outside the schema's bounds are reported and removed.
fn check_bounds(form: &FormSchema, out: &mut Extraction) {
    for f in &form.fields {
        let Some(v) = out.fields.get(&f.name).and_then(|v| v.value.as_f64()) else {
            continue;
        };
        let low = f.min.is_some_and(|m| v < m);
        let high = f.max.is_some_and(|m| v > m);
        if low || high {
            let removed = out.fields.remove(&f.name);
            out.problems.push(Problem {
                field: Some(f.name.clone()),
                span: removed.and_then(|r| r.span),
                message: format!("{}「{v}」超出合理範圍，請再確認", f.label),
            });
        }
    }
}
